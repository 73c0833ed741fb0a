//! TLS ClientHellos: the server name (SNI) and the ALPN protocols a client
//! offers, read across records without terminating TLS. The bytes are
//! forwarded untouched; this only tells the strategy where they want to go.

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

/// Largest ClientHello reassembled (post-quantum key shares make them about
/// 2 KB; the TLS length field allows 16 MiB). A larger one is forwarded
/// untouched, without SNI.
pub const MAX_HELLO: usize = 1 << 16;

/// Most bytes read while looking for a complete ClientHello: the largest
/// message plus the record headers around it (one per 16 KiB record).
pub const READ_CAP: usize = MAX_HELLO + 5 * (MAX_HELLO / 16384 + 1);

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
pub(crate) mod tests {
    use super::*;

    /// A ClientHello like a browser's, built field by field.
    pub(crate) fn hello_bytes(sni: &str, alpn: &[&str], split_records: bool) -> Vec<u8> {
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
