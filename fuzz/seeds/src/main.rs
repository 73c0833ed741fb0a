//! Seed corpora for the fuzz targets: valid HTTP/1 heads, TLS ClientHellos
//! and ABI v1 guest inputs built with the SDK's own encoder, so libFuzzer
//! starts from inputs that reach the parsers' inner code.
//!
//! Usage: `cargo run --manifest-path seeds/Cargo.toml [CORPUS_DIR]` (default:
//! `fuzz/corpus`). Writes `sniff/`, `http1_request/` and `guest_views/`.

use std::path::{Path, PathBuf};
use std::{env, fs};

use switchyard_guest::encode::{self, CandidateStats, Meta, RequestHead};
use switchyard_guest::{FLAG_DRAINING, FLAG_HEALTHY, Input, Protocol};

const HEADS: &[(&str, &[u8])] = &[
    (
        "get-browser",
        b"GET /products/42?ref=home HTTP/1.1\r\nHost: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/140.0\r\n\
Accept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\n\
Cookie: sid=8f14e45fceea167a; theme=dark\r\nX-User-Id: user-4242\r\n\
Connection: keep-alive\r\n\r\n",
    ),
    (
        "post-length-body",
        b"POST /api/orders HTTP/1.1\r\nHost: api.example\r\nContent-Type: application/json\r\n\
Content-Length: 13\r\n\r\n{\"qty\": 1234}",
    ),
    (
        "post-chunked",
        b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    ("http10-lf-only", b"GET / HTTP/1.0\nHost: old.example\n\n"),
    ("options-star", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
    (
        "absolute-form",
        b"GET http://proxy.example/x?y=1 HTTP/1.1\r\nHost: proxy.example\r\n\r\n",
    ),
    (
        "two-hosts-empty-value",
        b"HEAD /h HTTP/1.1\r\nhost: first.example\r\nX-Empty:\r\nHOST: second.example\r\n\r\n",
    ),
    (
        "pipelined",
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
    ),
    (
        "cookies-many",
        b"GET /c HTTP/1.1\r\nHost: c\r\nCookie: a=1; b = 2 ;sid=xyz\r\nCookie: sid=second; =x; novalue\r\n\r\n",
    ),
    (
        "websocket-upgrade",
        b"GET /ws HTTP/1.1\r\nHost: ws.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    ),
    ("partial", b"GET /partial HTTP/1.1\r\nHost: a\r\n"),
];

/// A ClientHello built field by field, like `host/src/sniff/tls.rs`'s test
/// helper; `records` splits the handshake message over that many records.
fn hello(snis: &[&str], alpn: &[&str], records: usize, extra_ext: bool) -> Vec<u8> {
    let mut ext = Vec::new();
    if extra_ext {
        // supported_versions (43): TLS 1.3, TLS 1.2.
        ext.extend_from_slice(&[0, 43, 0, 5, 4, 3, 4, 3, 3]);
    }
    if !snis.is_empty() {
        let mut list = Vec::new();
        for name in snis {
            list.push(0u8);
            list.extend_from_slice(&(name.len() as u16).to_be_bytes());
            list.extend_from_slice(name.as_bytes());
        }
        ext.extend_from_slice(&0u16.to_be_bytes());
        ext.extend_from_slice(&(list.len() as u16 + 2).to_be_bytes());
        ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
        ext.extend_from_slice(&list);
    }
    if !alpn.is_empty() {
        let mut protos = Vec::new();
        for p in alpn {
            protos.push(p.len() as u8);
            protos.extend_from_slice(p.as_bytes());
        }
        ext.extend_from_slice(&16u16.to_be_bytes());
        ext.extend_from_slice(&(protos.len() as u16 + 2).to_be_bytes());
        ext.extend_from_slice(&(protos.len() as u16).to_be_bytes());
        ext.extend_from_slice(&protos);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(32);
    body.extend_from_slice(&[9; 32]); // session id
    body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut msg = vec![1];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(&body);
    let per = msg.len().div_ceil(records.max(1));
    let mut out = Vec::new();
    for chunk in msg.chunks(per) {
        out.extend_from_slice(&[0x16, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// Splits a (well-formed) head into method, path, Host and headers, as
/// slices of `raw`, the way the host's `Http1Head::request` does.
fn split_head(raw: &[u8]) -> (&[u8], &[u8], &[u8], Vec<(&[u8], &[u8])>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |p| p + 4);
    let mut lines = raw[..end]
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().unwrap();
    let mut words = first.split(|&b| b == b' ');
    let (method, path) = (words.next().unwrap(), words.next().unwrap());
    let mut headers = Vec::new();
    let mut host: &[u8] = b"";
    for line in lines.filter(|l| !l.is_empty()) {
        let colon = line.iter().position(|&b| b == b':').unwrap();
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if host.is_empty() && name.eq_ignore_ascii_case(b"host") {
            host = value;
        }
        headers.push((name, value));
    }
    (method, path, host, headers)
}

fn encoded(req: &RequestHead<'_>, cands: &[CandidateStats], meta: &Meta) -> Vec<u8> {
    let mut buf = vec![0u8; encode::encoded_len(req, cands.len())];
    let n = encode::encode(&mut buf, meta, req, cands);
    buf.truncate(n);
    Input::parse(&buf).expect("an encoded input parses");
    buf
}

fn guest_inputs() -> Vec<(String, Vec<u8>)> {
    let meta = Meta {
        sequence: 41,
        random: 0x9e37_79b9_7f4a_7c15,
        now_ms: 123_456,
    };
    let loaded: Vec<CandidateStats> = (0..4u32)
        .map(|i| CandidateStats {
            flags: match i {
                2 => FLAG_HEALTHY | FLAG_DRAINING,
                3 => 0,
                _ => FLAG_HEALTHY,
            },
            weight: if i == 1 { 0 } else { 1 + i },
            active: i * 7 % 13,
            in_flight: i * 5 % 11,
            total: 1000 + u64::from(i),
            failures: i,
            ewma_us: 100 + i,
            cpu_permille: i * 37 % 1000,
            heartbeat_age_ms: 250 * i,
            rss_bytes: (64 + u64::from(i)) << 20,
            ..CandidateStats::healthy(i)
        })
        .collect();
    let mut out = Vec::new();
    out.push((
        "opaque-none".into(),
        encoded(&RequestHead::EMPTY, &[], &meta),
    ));
    for &(name, raw) in HEADS.iter().filter(|(n, _)| *n != "partial") {
        let (method, path, authority, headers) = split_head(raw);
        let req = RequestHead {
            protocol: Protocol::Http1,
            method,
            path,
            authority,
            headers: &headers,
            client: Some("203.0.113.9:51234".parse().unwrap()),
            raw,
            ..RequestHead::EMPTY
        };
        out.push((format!("http1-{name}"), encoded(&req, &loaded, &meta)));
    }
    // Strings not in a raw block, an IPv6 client, a retry with failures.
    let headers: [(&[u8], &[u8]); 3] = [
        (b"Cookie", b"sid=abc; lang=en"),
        (b"X-User-Id", b"u-1"),
        (b"cookie", b"sid=later"),
    ];
    let req = RequestHead {
        protocol: Protocol::Http2,
        method: b"GET",
        path: b"/h2?x=1",
        authority: b"h2.example",
        headers: &headers,
        client: Some("[2001:db8::1]:443".parse().unwrap()),
        attempt: 2,
        failed: &[0, 3],
        ..RequestHead::EMPTY
    };
    out.push(("http2-retry-ipv6".into(), encoded(&req, &loaded, &meta)));
    let req = RequestHead {
        protocol: Protocol::Tls,
        sni: b"api.example.com",
        alpn: b"h2,http/1.1",
        client: Some("198.51.100.1:60000".parse().unwrap()),
        ..RequestHead::EMPTY
    };
    out.push(("tls-sni-alpn".into(), encoded(&req, &loaded[..2], &meta)));
    let many: Vec<CandidateStats> = (0..40).map(CandidateStats::healthy).collect();
    out.push((
        "many-candidates".into(),
        encoded(&RequestHead::EMPTY, &many, &meta),
    ));
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
}

fn main() {
    let root = env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus"));
    let dirs = ["sniff", "http1_request", "guest_views"].map(|t| root.join(t));
    for d in &dirs {
        fs::create_dir_all(d).unwrap();
    }
    let [sniff, http1, guest] = &dirs;
    let mut counts = [0usize; 3];
    for &(name, raw) in HEADS {
        write(sniff, &format!("http1-{name}"), raw);
        write(http1, name, raw);
        counts[0] += 1;
        counts[1] += 1;
    }
    let hellos = [
        (
            "tls-hello-sni-alpn",
            hello(&["api.example.com"], &["h2", "http/1.1"], 1, true),
        ),
        (
            "tls-hello-split",
            hello(&["b.example"], &["http/1.1"], 2, false),
        ),
        (
            "tls-hello-three-records",
            hello(&["c.example"], &[], 3, true),
        ),
        (
            "tls-hello-two-names",
            hello(&["first.example", "second.example"], &["h2"], 1, false),
        ),
        ("tls-hello-no-ext", hello(&[], &[], 1, false)),
    ];
    for (name, bytes) in &hellos {
        write(sniff, name, bytes);
        counts[0] += 1;
    }
    for (name, bytes) in [
        ("h2-preface", &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..]),
        ("redis-inline", b"SET foo bar\r\nGET foo\r\n"),
        ("memcached", b"get foo\r\n"),
        ("binary", b"\x00\x01\x02garbage\xff"),
    ] {
        write(sniff, name, bytes);
        counts[0] += 1;
    }
    for (name, bytes) in guest_inputs() {
        write(guest, &name, &bytes);
        counts[2] += 1;
    }
    for (d, n) in dirs.iter().zip(counts) {
        println!("{n:3} seeds in {}", d.display());
    }
}
