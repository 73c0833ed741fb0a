//! What a connection's first bytes are, read within the head timeout and
//! size cap: an HTTP/1 request head (parsed once, [`http1`]), the HTTP/2
//! prior-knowledge preface, a TLS ClientHello with its SNI and ALPN
//! ([`tls`]), or opaque bytes.
//!
//! [`read_head`] owns the read loop and returns one type, [`Sniffed`]. The
//! pure functions under it ([`classify`], [`http1::parse`],
//! [`tls::client_hello`]) work on byte slices, so they are unit-tested and
//! fuzzed without sockets; "not enough bytes yet" is an answer, not an error.
//!
//! Silence is not a protocol. A client whose first bytes come late (a slow
//! network, a preconnected browser socket) is sniffed whenever they arrive,
//! with every HTTP check. Only `server_first_after_ms`, set for listeners in
//! front of server-speaks-first protocols (SMTP, MySQL, ...), routes a silent
//! connection as opaque.

pub mod http1;
pub mod tls;

use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::time::Instant;

use crate::error::{Error, Kind};
pub use http1::{Http1Head, Line};
pub use tls::ClientHello;

/// What to do with connections that are neither HTTP nor TLS.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum OpaquePolicy {
    /// Route them with an empty head.
    #[default]
    Route,
    /// Close them.
    Reject,
}

/// Limits on reading a head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// First bytes and the whole head (or ClientHello) must arrive within this.
    pub head_timeout: Duration,
    /// Largest HTTP head; more is `431`.
    pub max_head_bytes: usize,
    /// Route a connection that stays silent this long as opaque (server
    /// speaks first); `None`: wait for the client up to the head timeout.
    pub server_first_after: Option<Duration>,
    /// Neither HTTP nor TLS: route or reject.
    pub opaque: OpaquePolicy,
}

impl Limits {
    /// Whether listeners may hold a connection until its first bytes are in
    /// (`TCP_DEFER_ACCEPT`): not where server-first protocols are routed,
    /// whose clients send nothing until the server has spoken.
    pub fn defer_accept(&self) -> bool {
        self.server_first_after.is_none()
    }
}

/// What a connection turned out to be.
#[derive(Debug)]
pub enum Sniffed {
    /// A complete HTTP/1 head (the buffer may hold more after it).
    Http1(Http1Head),
    /// The HTTP/2 prior-knowledge preface.
    Http2Prior,
    /// A TLS ClientHello (empty names if it did not parse; the bytes go
    /// through untouched either way).
    Tls(ClientHello),
    /// Bytes that are neither (routed with an empty head).
    Opaque,
    /// Nothing yet after `server_first_after`: the server speaks first.
    ServerFirst,
}

/// What the first bytes look like so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Too few bytes to tell; see [`Line::Need`] for `http_like`.
    Need {
        /// The bytes already look like an HTTP request line.
        http_like: bool,
    },
    /// An HTTP/1.x request line.
    Http1,
    /// The HTTP/2 prior-knowledge preface (`PRI * HTTP/2.0`).
    Http2Prior,
    /// A TLS handshake record.
    Tls,
    /// A request line that can only be HTTP, and is not valid.
    Malformed,
    /// Anything else.
    Opaque,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Classifies a connection by its first bytes.
pub fn classify(buf: &[u8]) -> Class {
    match buf {
        [] => return Class::Need { http_like: false },
        [0x16] => return Class::Need { http_like: false },
        [0x16, 3, ..] => return Class::Tls,
        [0x16, ..] => return Class::Opaque,
        _ => {}
    }
    // RFC 9112 2.2: empty lines before a request line are ignored (httparse
    // skips them too), so "\r\nGET / ..." is HTTP, not opaque bytes that
    // would pass every HTTP check untouched.
    if matches!(buf[0], b'\r' | b'\n') {
        return match buf.iter().position(|&b| b != b'\r' && b != b'\n') {
            None => Class::Need { http_like: true },
            Some(start) => line_class(&buf[start..]),
        };
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Class::Http2Prior
        } else {
            Class::Need { http_like: true }
        };
    }
    line_class(buf)
}

/// The class of bytes that start with what may be an HTTP/1 request line.
fn line_class(buf: &[u8]) -> Class {
    match http1::request_line(buf) {
        Line::Http => Class::Http1,
        Line::Malformed => Class::Malformed,
        Line::NotHttp => Class::Opaque,
        Line::Need { http_like } => Class::Need { http_like },
    }
}

/// Reads more bytes into `buf` (at most `cap` in total) by `deadline`.
/// Reads into the vector's spare capacity: nothing is zeroed first.
async fn read_more<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    cap: usize,
    deadline: Instant,
) -> Result<(), Read> {
    let room = cap.saturating_sub(buf.len()).clamp(1, 16 * 1024);
    buf.reserve(room);
    let start = buf.len();
    let read = async {
        let mut rb = tokio::io::ReadBuf::uninit(&mut buf.spare_capacity_mut()[..room]);
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut *s).poll_read(cx, &mut rb)).await?;
        Ok::<usize, std::io::Error>(rb.filled().len())
    };
    let n = match tokio::time::timeout_at(deadline, read).await {
        Err(_) => return Err(Read::Timeout),
        Ok(Err(e)) => return Err(Read::Closed(Some(e))),
        Ok(Ok(0)) => return Err(Read::Closed(None)),
        Ok(Ok(n)) => n,
    };
    // SAFETY: `ReadBuf` guarantees its first `n` bytes were initialized by
    // the read, and they lie within the capacity reserved above.
    unsafe { buf.set_len(start + n) };
    Ok(())
}

/// Why a read for the head ended without bytes.
enum Read {
    Timeout,
    Closed(Option<std::io::Error>),
}

fn closed(e: Option<std::io::Error>) -> Error {
    match e {
        Some(e) => Error::new(Kind::ClientClosed).because(e),
        None => Error::new(Kind::ClientClosed),
    }
}

/// Reads and classifies the connection's head into `buf`. An `Err` names why
/// the connection cannot be routed (the proxy answers `408`, `431` or `400`
/// for the HTTP ones and closes).
pub async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    limits: &Limits,
) -> Result<Sniffed, Error> {
    let started = Instant::now();
    let head_deadline = started + limits.head_timeout;
    let max = limits.max_head_bytes;
    // First bytes: waited for up to the head timeout, or routed as
    // server-first after `server_first_after`.
    if buf.is_empty() {
        let first_deadline = match limits.server_first_after {
            Some(d) => (started + d).min(head_deadline),
            None => head_deadline,
        };
        match read_more(stream, buf, max + 1, first_deadline).await {
            Ok(()) => {}
            Err(Read::Timeout) if limits.server_first_after.is_some() => {
                return Ok(Sniffed::ServerFirst);
            }
            Err(Read::Timeout) => return Err(Error::new(Kind::ClientSilent)),
            Err(Read::Closed(e)) => return Err(closed(e)),
        }
    }
    let class = loop {
        match classify(buf) {
            // Still undecided at the cap: a request line that long is HTTP
            // over the cap; anything else is not HTTP.
            Class::Need { http_like: true } if buf.len() > max => {
                return Err(Error::new(Kind::HeadTooLarge));
            }
            Class::Need { http_like: false } if buf.len() > max => break Class::Opaque,
            Class::Need { http_like } => {
                match read_more(stream, buf, max + 1, head_deadline).await {
                    Ok(()) => {}
                    Err(Read::Timeout) if http_like => return Err(Error::new(Kind::HeadTimeout)),
                    Err(Read::Timeout) => break Class::Opaque,
                    Err(Read::Closed(e)) => return Err(closed(e)),
                }
            }
            c => break c,
        }
    };
    match class {
        Class::Http1 => http1_head(stream, buf, max, head_deadline).await,
        Class::Tls => tls_hello(stream, buf, head_deadline).await,
        Class::Http2Prior => Ok(Sniffed::Http2Prior),
        Class::Malformed => Err(Error::new(Kind::HeadMalformed)),
        Class::Opaque | Class::Need { .. } => match limits.opaque {
            OpaquePolicy::Route => Ok(Sniffed::Opaque),
            OpaquePolicy::Reject => Err(Error::new(Kind::OpaqueRejected)),
        },
    }
}

async fn http1_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    max: usize,
    deadline: Instant,
) -> Result<Sniffed, Error> {
    loop {
        match http1::parse(buf, max) {
            http1::Parsed::Complete(head) => return Ok(Sniffed::Http1(head)),
            http1::Parsed::TooLarge => return Err(Error::new(Kind::HeadTooLarge)),
            http1::Parsed::Malformed => return Err(Error::new(Kind::HeadMalformed)),
            http1::Parsed::Partial => {}
        }
        match read_more(stream, buf, max + 1, deadline).await {
            Ok(()) => {}
            Err(Read::Timeout) => return Err(Error::new(Kind::HeadTimeout)),
            Err(Read::Closed(e)) => return Err(closed(e)),
        }
    }
}

async fn tls_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<Sniffed, Error> {
    loop {
        match tls::client_hello(buf) {
            tls::Hello::Complete(h) => return Ok(Sniffed::Tls(h)),
            tls::Hello::Invalid => return Ok(Sniffed::Tls(ClientHello::default())),
            tls::Hello::Partial if buf.len() >= tls::READ_CAP => {
                return Ok(Sniffed::Tls(ClientHello::default()));
            }
            tls::Hello::Partial => {}
        }
        match read_more(stream, buf, tls::READ_CAP, deadline).await {
            Ok(()) => {}
            Err(Read::Timeout) => return Err(Error::new(Kind::HelloTimeout)),
            Err(Read::Closed(e)) => return Err(closed(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_prefixes() {
        let need = |http_like| Class::Need { http_like };
        assert_eq!(classify(b""), need(false));
        assert_eq!(classify(b"GE"), need(false));
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Class::Http1);
        assert_eq!(classify(b"M-SEARCH * HTTP/1.1\r\n"), Class::Http1);
        assert_eq!(
            classify(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Class::Http2Prior
        );
        assert_eq!(classify(b"PRI * HT"), need(true));
        assert_eq!(classify(&[0x16, 3, 1, 0, 5]), Class::Tls);
        assert_eq!(classify(&[0x16]), need(false));
        assert_eq!(classify(&[0x16, 9]), Class::Opaque);
        assert_eq!(classify(b"\x00\x01garbage"), Class::Opaque);
        assert_eq!(classify(b"SET foo bar\r\n"), Class::Opaque);
        assert_eq!(classify(b" GET"), Class::Opaque);
        assert_eq!(classify(&[b'A'; 40]), Class::Opaque);
    }

    /// Valid inputs of every kind, to mutate.
    fn seeds() -> Vec<Vec<u8>> {
        vec![
            b"GET /products/42?ref=home HTTP/1.1\r\nHost: shop.example\r\nCookie: a=1; sid=x\r\nAccept: */*\r\n\r\n".to_vec(),
            b"POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello".to_vec(),
            b"GET / HTTP/1.0\n\n".to_vec(),
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            H2_PREFACE.to_vec(),
            tls::tests::hello_bytes("a.example", &["h2", "http/1.1"], true),
            tls::tests::hello_bytes("b.example.com", &[], false),
            b"SET foo bar\r\nGET foo\r\n".to_vec(),
        ]
    }

    /// The fuzz targets (`fuzz/`) in miniature, so CI exercises them too:
    /// mutated valid heads and hellos (byte flips, cuts, inserts, repeats)
    /// never panic, and whatever parses has spans inside the buffer.
    #[test]
    fn mutated_heads_and_hellos_never_panic() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds = seeds();
        let (mut http, mut tls_seen, mut complete) = (0, 0, 0);
        for round in 0..20_000 {
            let mut data = seeds[round % seeds.len()].clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % data.len().max(1);
                match next() % 5 {
                    0 if !data.is_empty() => data[i] = next() as u8,
                    1 => data.truncate(i),
                    2 => data.insert(i.min(data.len()), b"\r\n:; \x00\xff"[(next() % 7) as usize]),
                    3 if !data.is_empty() => {
                        let end = (i + (next() as usize) % 64).min(data.len());
                        let chunk = data[i..end].to_vec();
                        data.splice(i..i, chunk);
                    }
                    _ => {}
                }
            }
            match classify(&data) {
                Class::Http1 => http += 1,
                Class::Tls => tls_seen += 1,
                _ => {}
            }
            if let http1::Parsed::Complete(head) = http1::parse(&data, 16 * 1024) {
                complete += 1;
                assert!(head.len <= data.len());
                let mut pairs = [(&b""[..], &b""[..]); http1::MAX_HEADERS];
                let req = head.request(&data, &mut pairs);
                assert_eq!(req.headers.len(), head.header_count());
                let _ = (head.is_safe(&data), head.body(&data));
            }
            let _ = tls::client_hello(&data);
        }
        // Unlike random bytes (rejected at byte 0), these reach the parsers'
        // inner code: about half classify as HTTP or TLS, and one in ten is
        // a complete head.
        assert!(
            http + tls_seen > 8_000 && complete > 2_000,
            "{http} http, {tls_seen} tls, {complete} complete"
        );
    }
}
