//! HTTP/1 request heads: whether bytes are HTTP at all (the request line),
//! whether the head is complete, and where its parts are.
//!
//! Bytes are HTTP only once the request line holds a method token, a target
//! and an `HTTP/1.x` version. Redis and memcached inline commands
//! (`SET foo bar`, `get foo`) look like a method and a target, but their line
//! ends without a version, so they are opaque.
//!
//! The head is parsed once, by `httparse`, when it is complete: [`Http1Head`]
//! keeps the offsets of its parts, and the strategy's request view borrows
//! from the buffer through them, with no second parse.

use switchyard_guest::{Protocol, RequestHead};

/// Most headers a head may have (more is `431`).
pub const MAX_HEADERS: usize = 128;
/// Longest method token waited for.
const MAX_METHOD: usize = 24;

/// What the first line says so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// Consistent with a request line so far; more bytes needed. `http_like`
    /// once the line can only be HTTP (a target that starts with `/`, `*`
    /// or `http(s)://`, or the method `CONNECT`): a line that is cut there
    /// by the size cap or the head timeout is answered as HTTP (`431`,
    /// `408`).
    Need {
        /// The bytes already look like an HTTP request line.
        http_like: bool,
    },
    /// A complete HTTP/1.x request line.
    Http,
    /// A line that can only be HTTP but is not valid (a CR or LF in the
    /// target, no version, another version): `400`.
    Malformed,
    /// Not an HTTP/1.x request line.
    NotHttp,
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// True if a request line with this method and target (so far) can only be
/// HTTP.
fn only_http(method: &[u8], target: &[u8]) -> bool {
    let starts = |p: &[u8]| target.len() >= p.len() && target[..p.len()].eq_ignore_ascii_case(p);
    method == b"CONNECT"
        || matches!(target.first(), Some(b'/' | b'*'))
        || starts(b"http://")
        || starts(b"https://")
}

/// Checks the request line at the start of `buf`:
/// `method SP target SP HTTP/1.d (CR)LF`.
pub fn request_line(buf: &[u8]) -> Line {
    let need = |http_like| Line::Need { http_like };
    let mut i = 0;
    while i < buf.len() && is_tchar(buf[i]) {
        i += 1;
        if i > MAX_METHOD {
            return Line::NotHttp;
        }
    }
    if i == buf.len() {
        return need(false);
    }
    if i == 0 || buf[i] != b' ' {
        return Line::NotHttp;
    }
    let method = &buf[..i];
    i += 1;
    let target = i;
    // Visible bytes; a CR or LF here means the line ended without a version.
    while i < buf.len() && buf[i] > b' ' && buf[i] != 0x7f {
        i += 1;
    }
    let http_like = i > target && only_http(method, &buf[target..i]);
    // Past this point a line that can only be HTTP and goes wrong is a bad
    // HTTP request, not another protocol.
    let wrong = if http_like {
        Line::Malformed
    } else {
        Line::NotHttp
    };
    if i == buf.len() {
        return need(http_like);
    }
    if i == target || buf[i] != b' ' {
        return wrong;
    }
    i += 1;
    for &want in b"HTTP/1." {
        match buf.get(i) {
            None => return need(true),
            Some(&b) if b == want => i += 1,
            Some(_) => return wrong,
        }
    }
    match buf.get(i) {
        None => return need(true),
        Some(b) if b.is_ascii_digit() => i += 1,
        Some(_) => return wrong,
    }
    match (buf.get(i), buf.get(i + 1)) {
        (None, _) | (Some(b'\r'), None) => need(true),
        (Some(b'\n'), _) | (Some(b'\r'), Some(b'\n')) => Line::Http,
        _ => wrong,
    }
}

/// `(offset, length)` of a part of the head, in the connection's buffer.
type Span = (u32, u32);

/// A complete HTTP/1 request head, parsed once: the offsets of its parts in
/// the buffer it was read into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http1Head {
    /// Bytes of the head, blank line included.
    pub len: usize,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub minor_version: u8,
    method: Span,
    path: Span,
    /// The first `Host` header's value, `(0, 0)` if none.
    authority: Span,
    /// Name and value of each header, in order.
    headers: Box<[(Span, Span)]>,
}

/// Outcome of parsing a head.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Need more bytes.
    Partial,
    /// A complete head.
    Complete(Http1Head),
    /// Over the size or header-count cap (`431`).
    TooLarge,
    /// Not valid HTTP/1.x (`400`).
    Malformed,
}

/// How the request's body is framed, for deciding how much of the client's
/// bytes belong to this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body: the next byte starts the next request.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked, or framing we do not follow.
    Other,
}

fn span(buf: &[u8], part: &[u8]) -> Span {
    let off = part.as_ptr() as usize - buf.as_ptr() as usize;
    (off as u32, part.len() as u32)
}

/// Parses the head at the start of `buf` within `max_bytes`.
pub fn parse(buf: &[u8], max_bytes: usize) -> Parsed {
    let mut store = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut store);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= max_bytes => n,
        Ok(httparse::Status::Complete(_)) => return Parsed::TooLarge,
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => return Parsed::TooLarge,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::TooLarge,
        Err(_) => return Parsed::Malformed,
    };
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Parsed::Malformed;
    };
    let mut authority = (0, 0);
    let headers: Box<[(Span, Span)]> = req
        .headers
        .iter()
        .map(|h| {
            if authority == (0, 0) && h.name.eq_ignore_ascii_case("host") {
                authority = span(buf, h.value);
            }
            (span(buf, h.name.as_bytes()), span(buf, h.value))
        })
        .collect();
    Parsed::Complete(Http1Head {
        len,
        minor_version: minor,
        method: span(buf, method.as_bytes()),
        path: span(buf, path.as_bytes()),
        authority,
        headers,
    })
}

fn slice(buf: &[u8], (off, len): Span) -> &[u8] {
    buf.get(off as usize..(off + len) as usize).unwrap_or(&[])
}

impl Http1Head {
    /// The method.
    pub fn method<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        slice(buf, self.method)
    }

    /// The first header called `name` (any case).
    pub fn header<'a>(&self, buf: &'a [u8], name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| slice(buf, *n).eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| slice(buf, *v))
    }

    /// Number of headers.
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    /// True for methods a client may safely send again (RFC 9110 9.2.1's
    /// safe methods): a request that got no response byte may be replayed.
    pub fn is_safe(&self, buf: &[u8]) -> bool {
        matches!(self.method(buf), b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE")
    }

    /// How the body is framed.
    pub fn body(&self, buf: &[u8]) -> Body {
        if self.header(buf, "transfer-encoding").is_some() {
            return Body::Other;
        }
        match self.header(buf, "content-length") {
            None => Body::None,
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .map_or(Body::Other, Body::Length),
        }
    }

    /// The strategy's view of this head. `pairs` (at least
    /// [`Http1Head::header_count`] long) receives the header table; the
    /// caller keeps it on its stack.
    pub fn request<'a>(
        &self,
        buf: &'a [u8],
        pairs: &'a mut [(&'a [u8], &'a [u8])],
    ) -> RequestHead<'a> {
        let n = self.headers.len().min(pairs.len());
        for ((name, value), slot) in self.headers.iter().zip(pairs.iter_mut()) {
            *slot = (slice(buf, *name), slice(buf, *value));
        }
        RequestHead {
            protocol: Protocol::Http1,
            method: slice(buf, self.method),
            path: slice(buf, self.path),
            authority: slice(buf, self.authority),
            headers: &pairs[..n],
            raw: &buf[..self.len.min(buf.len())],
            ..RequestHead::EMPTY
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        for http in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"M-SEARCH * HTTP/1.1\r\n",
            b"GET http://a/ HTTP/1.0\n",
            b"get /x HTTP/1.1\r\n",
        ] {
            assert_eq!(request_line(http), Line::Http, "{http:?}");
        }
        // Redis and memcached inline commands: a line without a version.
        for not in [
            &b"SET foo bar\r\n"[..],
            b"GET foo\r\n",
            b"DEL foo\r\n",
            b"PING\r\n",
            b"get foo\r\n",
            b" GET / HTTP/1.1\r\n",
            b"GET  / HTTP/1.1\r\n",
            b"\x00\x01garbage",
            &[b'A'; 40],
        ] {
            assert_eq!(request_line(not), Line::NotHttp, "{not:?}");
        }
        // Lines that can only be HTTP, gone wrong: 400, not routed.
        for bad in [
            &b"GET /a\r\nX: y HTTP/1.1\r\n"[..],
            b"GET / HTTP/2.0\r\n",
            b"GET http://a/ FOO\r\n",
            b"CONNECT a:443\r\n",
            b"GET /\r\n",
        ] {
            assert_eq!(request_line(bad), Line::Malformed, "{bad:?}");
        }
        assert_eq!(request_line(b""), Line::Need { http_like: false });
        assert_eq!(request_line(b"GE"), Line::Need { http_like: false });
        assert_eq!(request_line(b"SET foo"), Line::Need { http_like: false });
        assert_eq!(request_line(b"GET /a"), Line::Need { http_like: true });
        assert_eq!(
            request_line(b"GET http://a.example/x"),
            Line::Need { http_like: true }
        );
        assert_eq!(request_line(b"GET htt"), Line::Need { http_like: false });
        assert_eq!(
            request_line(b"CONNECT a.example:443"),
            Line::Need { http_like: true }
        );
        assert_eq!(
            request_line(b"CONNECT a.example:443 HTTP/1.1\r\n"),
            Line::Http
        );
        assert_eq!(request_line(b"GET /a HT"), Line::Need { http_like: true });
        assert_eq!(
            request_line(b"GET /a HTTP/1.1\r"),
            Line::Need { http_like: true }
        );
    }

    #[test]
    fn heads() {
        let max = 16 * 1024;
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\n", max),
            Parsed::Partial
        );
        let buf = b"GET /p?q HTTP/1.1\r\nHost: a.example\r\nX-Y: z\r\n\r\nbody";
        let Parsed::Complete(head) = parse(buf, max) else {
            panic!()
        };
        assert_eq!(head.len, buf.len() - 4);
        assert_eq!(head.method(buf), b"GET");
        assert_eq!(head.header(buf, "x-y"), Some(&b"z"[..]));
        assert!(head.is_safe(buf));
        assert_eq!(head.body(buf), Body::None);
        let mut pairs = [(&b""[..], &b""[..]); MAX_HEADERS];
        let req = head.request(buf, &mut pairs);
        assert_eq!((req.path, req.authority), (&b"/p?q"[..], &b"a.example"[..]));
        assert_eq!(req.headers.len(), 2);
        assert_eq!(req.raw.len(), head.len);
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", max),
            Parsed::Malformed
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        assert_eq!(parse(big.as_bytes(), max), Parsed::TooLarge);
        assert_eq!(parse(&big.as_bytes()[..17_000], max), Parsed::TooLarge);
        let many: String = (0..200).map(|i| format!("X{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(many.as_bytes(), max), Parsed::TooLarge);
        let post = b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n";
        let Parsed::Complete(head) = parse(post, max) else {
            panic!()
        };
        assert!(!head.is_safe(post));
        assert_eq!(head.body(post), Body::Length(12));
    }
}
