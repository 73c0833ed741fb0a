//! The few answers Switchyard writes itself, each a complete HTTP/1.1
//! response with a short plain-text body, `Cache-Control: no-store` (an
//! error about this moment must not be cached) and `Connection: close`.
//! Only connections that spoke HTTP get one; anything else is just closed.
//! HTTP mode's direct path writes its answers with [`write`] too, keeping
//! the connection when it can.

use std::sync::LazyLock;

use crate::error::Kind;

/// Writes an answer of Switchyard's own into `out`: `status` is the code
/// and reason (`502 Bad Gateway`), `body` a short text; with `close`, the
/// connection ends after it.
pub fn write(out: &mut Vec<u8>, status: std::fmt::Arguments<'_>, body: &str, close: bool) {
    use std::io::Write as _;
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}\r\n{body}",
        body.len(),
        if close { "Connection: close\r\n" } else { "" },
    );
}

fn response(status: &str, body: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, format_args!("{status}"), body, true);
    out
}

static BAD_REQUEST: LazyLock<Vec<u8>> =
    LazyLock::new(|| response("400 Bad Request", "malformed request head\n"));
static TIMEOUT: LazyLock<Vec<u8>> =
    LazyLock::new(|| response("408 Request Timeout", "request head not received in time\n"));
static TOO_LARGE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    response(
        "431 Request Header Fields Too Large",
        "request head too large\n",
    )
});
static BAD_GATEWAY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    response(
        "502 Bad Gateway",
        "the backend closed the connection without answering\n",
    )
});
static GATEWAY_TIMEOUT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    response(
        "504 Gateway Timeout",
        "the backend did not answer in time\n",
    )
});
static UNAVAILABLE: LazyLock<Vec<u8>> =
    LazyLock::new(|| response("503 Service Unavailable", "no backend available\n"));

static NOT_IMPLEMENTED: LazyLock<Vec<u8>> = LazyLock::new(|| {
    response(
        "501 Not Implemented",
        "only the chunked transfer coding is supported\n",
    )
});

/// The answer to a request whose transfer codings cannot be passed on.
pub fn unsupported_coding() -> &'static [u8] {
    NOT_IMPLEMENTED.as_slice()
}

/// The answer to an HTTP client for an error of `kind`, if there is one.
pub fn for_kind(kind: Kind) -> Option<&'static [u8]> {
    let r: &LazyLock<Vec<u8>> = match kind {
        Kind::HeadMalformed => &BAD_REQUEST,
        Kind::HeadTimeout => &TIMEOUT,
        Kind::HeadTooLarge => &TOO_LARGE,
        Kind::ClosedBeforeResponse => &BAD_GATEWAY,
        Kind::ResponseTimeout => &GATEWAY_TIMEOUT,
        Kind::NoBackend | Kind::Connect | Kind::ConnectTimeout => &UNAVAILABLE,
        _ => return None,
    };
    Some(r.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_complete_uncacheable_responses() {
        for (kind, code) in [
            (Kind::HeadMalformed, "400"),
            (Kind::HeadTimeout, "408"),
            (Kind::HeadTooLarge, "431"),
            (Kind::ClosedBeforeResponse, "502"),
            (Kind::ResponseTimeout, "504"),
            (Kind::NoBackend, "503"),
        ] {
            let r = String::from_utf8(for_kind(kind).unwrap().to_vec()).unwrap();
            assert!(r.starts_with(&format!("HTTP/1.1 {code} ")), "{r}");
            assert!(r.contains("\r\nCache-Control: no-store\r\n"), "{r}");
            let (head, body) = r.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("Content-Length: {}", body.len())));
        }
        assert!(for_kind(Kind::ClientSilent).is_none());
    }
}
