//! What the first bytes of a connection are: an HTTP/1 request head, a TLS
//! ClientHello (with its SNI and ALPN), or opaque bytes. Pure functions over
//! byte slices, so they are unit-tested and fuzzed without sockets.
//!
//! "Not enough bytes yet" is an answer, not an error: the listener reads more
//! and asks again, within its timeouts and size cap.

/// What a connection's first bytes look like so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Too few bytes to tell.
    Unknown,
    /// An HTTP/1.x request line is starting.
    Http1,
    /// The HTTP/2 prior-knowledge preface (`PRI * HTTP/2.0`).
    Http2,
    /// A TLS handshake record.
    Tls,
    /// Anything else.
    Opaque,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Longest method token we wait for before calling the bytes opaque.
const MAX_METHOD: usize = 24;

/// Classifies a connection by its first bytes.
pub fn classify(buf: &[u8]) -> Class {
    if buf.is_empty() {
        return Class::Unknown;
    }
    if buf[0] == 0x16 {
        return match buf.get(1) {
            None => Class::Unknown,
            Some(3) => Class::Tls,
            Some(_) => Class::Opaque,
        };
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Class::Http2
        } else {
            Class::Unknown
        };
    }
    // An HTTP method is a token of upper-case letters (in practice) followed by
    // a space.
    for (i, &b) in buf.iter().enumerate().take(MAX_METHOD + 1) {
        match b {
            b'A'..=b'Z' | b'-' | b'_' => continue,
            b' ' if i > 0 => return Class::Http1,
            _ => return Class::Opaque,
        }
    }
    if buf.len() > MAX_METHOD {
        Class::Opaque
    } else {
        Class::Unknown
    }
}

/// Why an HTTP head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not valid HTTP/1.x (answered with 400).
    Malformed,
    /// Over the size or header-count limit (answered with 431).
    TooLarge,
}

/// Outcome of trying to parse a complete HTTP/1 head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Need more bytes.
    Partial,
    /// A complete head of this many bytes.
    Complete(usize),
}

/// Most headers a head may have.
pub const MAX_HEADERS: usize = 128;

/// Checks whether `buf` holds a complete, valid HTTP/1 head within `max_bytes`.
pub fn http_head(buf: &[u8], max_bytes: usize) -> Result<Head, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= max_bytes => Ok(Head::Complete(n)),
        Ok(httparse::Status::Complete(_)) => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(Head::Partial),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(_) => Err(HeadError::Malformed),
    }
}

/// What a strategy sees of a complete HTTP/1 head `raw` (as [`http_head`]
/// found it): method, path, authority (the first `Host`) and headers, all
/// slices of `raw`, which the encoder then copies in one block. The caller
/// lends the tables (`MAX_HEADERS` long), so the listener keeps them on its
/// stack. `None` if the head does not parse.
pub fn http1_request<'a>(
    raw: &'a [u8],
    store: &mut [httparse::Header<'a>],
    pairs: &'a mut [(&'a [u8], &'a [u8])],
) -> Option<crate::strategy::RequestHead<'a>> {
    let mut parsed = httparse::Request::new(store);
    parsed.parse(raw).ok()?;
    let mut req = crate::strategy::RequestHead {
        protocol: crate::strategy::Protocol::Http1,
        method: parsed.method.unwrap_or("").as_bytes(),
        path: parsed.path.unwrap_or("").as_bytes(),
        raw,
        ..crate::strategy::RequestHead::EMPTY
    };
    let count = parsed.headers.len().min(pairs.len());
    for (h, slot) in parsed.headers.iter().zip(pairs.iter_mut()) {
        if req.authority.is_empty() && h.name.eq_ignore_ascii_case("host") {
            req.authority = h.value;
        }
        *slot = (h.name.as_bytes(), h.value);
    }
    req.headers = &pairs[..count];
    Some(req)
}

/// SNI and ALPN from a ClientHello, as byte ranges into the buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// Server name (host name), empty if absent.
    pub sni: Vec<u8>,
    /// ALPN protocols, comma separated.
    pub alpn: Vec<u8>,
}

/// Outcome of reading a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// Need more bytes.
    Partial,
    /// Parsed.
    Complete(ClientHello),
    /// Not a well-formed ClientHello (the bytes are still forwarded untouched;
    /// routing just gets no SNI).
    Invalid,
}

/// Largest ClientHello we reassemble (post-quantum key shares make them ~2 KB;
/// 16 KiB is a full record).
const MAX_HELLO: usize = 1 << 16;

/// Reads the ClientHello from the TLS records at the start of `buf`, which
/// may span several records.
pub fn client_hello(buf: &[u8]) -> Hello {
    // Reassemble the handshake message from consecutive handshake records.
    let mut msg: Vec<u8> = Vec::new();
    let mut at = 0;
    loop {
        let Some(hdr) = buf.get(at..at + 5) else {
            return Hello::Partial;
        };
        if hdr[0] != 0x16 || hdr[1] != 3 {
            return Hello::Invalid;
        }
        let len = u16::from_be_bytes([hdr[3], hdr[4]]) as usize;
        if len == 0 || len > 18432 {
            return Hello::Invalid;
        }
        let Some(body) = buf.get(at + 5..at + 5 + len) else {
            return Hello::Partial;
        };
        msg.extend_from_slice(body);
        at += 5 + len;
        if msg.len() >= 4 {
            if msg[0] != 1 {
                return Hello::Invalid;
            }
            let need = 4 + u32::from_be_bytes([0, msg[1], msg[2], msg[3]]) as usize;
            if need > MAX_HELLO {
                return Hello::Invalid;
            }
            if msg.len() >= need {
                return match parse_hello_body(&msg[4..need]) {
                    Some(h) => Hello::Complete(h),
                    None => Hello::Invalid,
                };
            }
        }
    }
}

/// A cursor over big-endian TLS fields; `None` on any overrun.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| b[0] as usize)
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

fn parse_hello_body(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    let mut hello = ClientHello::default();
    if r.0.is_empty() {
        return Some(hello); // no extensions
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let ty = exts.u16()?;
        let mut data = Reader(exts.vec16()?);
        match ty {
            0 => {
                let mut list = Reader(data.vec16()?);
                while !list.0.is_empty() {
                    let kind = list.u8()?;
                    let name = list.vec16()?;
                    if kind == 0 && hello.sni.is_empty() {
                        hello.sni = name.to_vec();
                    }
                }
            }
            16 => {
                let mut list = Reader(data.vec16()?);
                while !list.0.is_empty() {
                    let proto = list.vec8()?;
                    if !hello.alpn.is_empty() {
                        hello.alpn.push(b',');
                    }
                    hello.alpn.extend_from_slice(proto);
                }
            }
            _ => {}
        }
    }
    Some(hello)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_prefixes() {
        assert_eq!(classify(b""), Class::Unknown);
        assert_eq!(classify(b"GE"), Class::Unknown);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Class::Http1);
        assert_eq!(classify(b"M-SEARCH * HTTP/1.1\r\n"), Class::Http1);
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Class::Http2);
        assert_eq!(classify(b"PRI * HT"), Class::Unknown);
        assert_eq!(classify(&[0x16, 3, 1, 0, 5]), Class::Tls);
        assert_eq!(classify(&[0x16]), Class::Unknown);
        assert_eq!(classify(b"\x00\x01garbage"), Class::Opaque);
        assert_eq!(classify(b"get / HTTP/1.1"), Class::Opaque);
        assert_eq!(classify(b" GET"), Class::Opaque);
        assert_eq!(classify(&[b'A'; 40]), Class::Opaque);
    }

    #[test]
    fn http_heads() {
        let max = 16 * 1024;
        assert_eq!(
            http_head(b"GET / HTTP/1.1\r\nHost: a\r\n", max),
            Ok(Head::Partial)
        );
        assert_eq!(
            http_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody", max),
            Ok(Head::Complete(27))
        );
        assert_eq!(
            http_head(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", max),
            Err(HeadError::Malformed)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        assert_eq!(http_head(big.as_bytes(), max), Err(HeadError::TooLarge));
        assert_eq!(
            http_head(&big.as_bytes()[..17_000], max),
            Err(HeadError::TooLarge)
        );
        let many: String = (0..200).map(|i| format!("X{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(http_head(many.as_bytes(), max), Err(HeadError::TooLarge));
    }

    /// A ClientHello like a browser's, built field by field.
    pub fn hello_bytes(sni: &str, alpn: &[&str], split_records: bool) -> Vec<u8> {
        let mut ext = Vec::new();
        // server_name
        let name = sni.as_bytes();
        let mut list = vec![0u8];
        list.extend_from_slice(&(name.len() as u16).to_be_bytes());
        list.extend_from_slice(name);
        let mut sn = (list.len() as u16).to_be_bytes().to_vec();
        sn.extend_from_slice(&list);
        ext.extend_from_slice(&0u16.to_be_bytes());
        ext.extend_from_slice(&(sn.len() as u16).to_be_bytes());
        ext.extend_from_slice(&sn);
        // alpn
        let mut protos = Vec::new();
        for p in alpn {
            protos.push(p.len() as u8);
            protos.extend_from_slice(p.as_bytes());
        }
        let mut al = (protos.len() as u16).to_be_bytes().to_vec();
        al.extend_from_slice(&protos);
        ext.extend_from_slice(&16u16.to_be_bytes());
        ext.extend_from_slice(&(al.len() as u16).to_be_bytes());
        ext.extend_from_slice(&al);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut msg = vec![1];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        let chunks: Vec<&[u8]> = if split_records {
            let mid = msg.len() / 2;
            vec![&msg[..mid], &msg[mid..]]
        } else {
            vec![&msg[..]]
        };
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&[0x16, 3, 1]);
            out.extend_from_slice(&(c.len() as u16).to_be_bytes());
            out.extend_from_slice(c);
        }
        out
    }

    /// The fuzz target (`fuzz/`) in miniature, so CI exercises it too:
    /// random and mutated inputs never panic.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let hello = hello_bytes("a.example", &["h2"], true);
        for round in 0..20_000 {
            let len = (next() % 600) as usize;
            let mut data: Vec<u8> = if round % 2 == 0 {
                (0..len).map(|_| next() as u8).collect()
            } else {
                hello.clone()
            };
            // Mutate a few bytes of the valid hello.
            for _ in 0..(next() % 4) {
                if !data.is_empty() {
                    let i = (next() as usize) % data.len();
                    data[i] = next() as u8;
                }
            }
            let _ = classify(&data);
            let _ = http_head(&data, 16 * 1024);
            let _ = client_hello(&data);
        }
    }

    #[test]
    fn client_hello_sni_and_alpn() {
        for split in [false, true] {
            let b = hello_bytes("api.example.com", &["h2", "http/1.1"], split);
            let want = Hello::Complete(ClientHello {
                sni: b"api.example.com".to_vec(),
                alpn: b"h2,http/1.1".to_vec(),
            });
            assert_eq!(client_hello(&b), want);
            for cut in 0..b.len() {
                assert_eq!(client_hello(&b[..cut]), Hello::Partial, "cut at {cut}");
            }
        }
        assert_eq!(
            client_hello(&[0x16, 3, 1, 0, 4, 2, 0, 0, 0]),
            Hello::Invalid
        );
        assert_eq!(client_hello(&[0x16, 3, 1, 0, 0]), Hello::Invalid);
    }
}
