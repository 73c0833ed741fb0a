//! The HTTP/1 head parser and everything the proxy does with a complete head:
//! every accessor of `Http1Head`, the strategy's `RequestHead` view, and that
//! view encoded into an ABI v1 input and read back by the guest SDK (the path
//! a request takes to a strategy). Spans must stay inside the buffer, and
//! accessors given a shorter buffer than the head came from must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::sniff::http1::{self, Body, Http1Head, MAX_HEADERS, Parsed};
use switchyard_guest::encode::{self, CandidateStats, Meta, RequestHead};
use switchyard_guest::{Input, Protocol};

const MAX: usize = 16 * 1024;

/// True if `part` is a sub-slice of `whole` (by address, not by content).
fn within(whole: &[u8], part: &[u8]) -> bool {
    let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    part.is_empty() || (p >= w && p + part.len() <= w + whole.len())
}

fuzz_target!(|data: &[u8]| {
    let head = match http1::parse(data, MAX) {
        Parsed::Complete(head) => head,
        Parsed::Partial => {
            assert!(data.len() < MAX);
            return;
        }
        Parsed::TooLarge | Parsed::Malformed => return,
    };
    assert!(head.len > 0 && head.len <= data.len() && head.len <= MAX);
    assert!(head.minor_version <= 9);
    assert!(head.header_count() <= MAX_HEADERS);
    let raw = &data[..head.len];

    // The head alone parses to the same head (bytes after it never matter),
    // and the size cap is exact.
    assert_eq!(http1::parse(raw, MAX), Parsed::Complete(head.clone()));
    assert!(matches!(http1::parse(data, head.len), Parsed::Complete(_)));
    assert_eq!(http1::parse(data, head.len - 1), Parsed::TooLarge);

    accessors(&head, data, true);
    // The same offsets against shorter buffers: answers may be empty, but
    // nothing may panic or read past the slice.
    for cut in [0, 1, head.len / 2, head.len.saturating_sub(1)] {
        accessors(&head, &data[..cut.min(data.len())], false);
    }

    let mut pairs = [(&b""[..], &b""[..]); MAX_HEADERS];
    let req = head.request(data, &mut pairs);
    assert_eq!(req.raw.len(), head.len);
    assert!(std::ptr::eq(req.raw.as_ptr(), data.as_ptr()));
    assert_eq!(req.headers.len(), head.header_count());
    assert_eq!(req.protocol, Protocol::Http1);
    assert_eq!(req.method, head.method(data));
    assert!(!req.method.is_empty());
    assert_eq!(req.authority, head.header(data, "host").unwrap_or(b""));
    for s in [req.method, req.path, req.authority] {
        assert!(within(raw, s));
    }
    for (i, (n, v)) in req.headers.iter().enumerate() {
        assert!(within(raw, n) && within(raw, v));
        assert!(!n.is_empty());
        // `header` finds the first header of that name, in any case.
        let first = req.headers.iter().find(|(m, _)| m.eq_ignore_ascii_case(n));
        assert_eq!(
            head.header(data, std::str::from_utf8(n).unwrap()),
            first.map(|p| p.1)
        );
        if i >= 16 {
            break;
        }
    }
    roundtrip(&req);

    // A header table shorter than the head's: truncated, not a panic.
    let short = (data[0] as usize) % 8;
    let mut few = [(&b""[..], &b""[..]); 8];
    let req = head.request(data, &mut few[..short]);
    assert_eq!(req.headers.len(), head.header_count().min(short));
    // And a shorter buffer: the raw block is cut, the spans go empty.
    let mut pairs = [(&b""[..], &b""[..]); MAX_HEADERS];
    let cut = &data[..head.len / 2];
    let req = head.request(cut, &mut pairs);
    assert_eq!(req.raw.len(), cut.len());
    for s in [req.method, req.path, req.authority] {
        assert!(within(cut, s));
    }
});

fn accessors(head: &Http1Head, buf: &[u8], whole: bool) {
    let method = head.method(buf);
    assert!(within(buf, method));
    let safe = head.is_safe(buf);
    assert_eq!(
        safe,
        matches!(method, b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE")
    );
    for name in [
        "host",
        "HOST",
        "content-length",
        "transfer-encoding",
        "cookie",
        "",
        "x",
    ] {
        if let Some(v) = head.header(buf, name) {
            assert!(within(buf, v));
        }
    }
    let body = head.body(buf);
    if whole {
        match body {
            Body::Length(_) => assert!(head.header(buf, "content-length").is_some()),
            Body::None => assert!(
                head.header(buf, "content-length").is_none()
                    && head.header(buf, "transfer-encoding").is_none()
            ),
            Body::Other => {}
        }
    }
}

/// Encodes the request the way the host does for a strategy and reads it back
/// through the guest SDK's views.
fn roundtrip(req: &RequestHead<'_>) {
    let req = RequestHead {
        client: Some("192.0.2.7:40000".parse().unwrap()),
        failed: &[1],
        attempt: 1,
        ..*req
    };
    let candidates = [CandidateStats::healthy(0), CandidateStats::healthy(1)];
    let mut buf = vec![0u8; encode::encoded_len(&req, candidates.len())];
    let meta = Meta {
        sequence: 7,
        random: 9,
        now_ms: 11,
    };
    let n = encode::encode(&mut buf, &meta, &req, &candidates);
    assert_eq!(n, buf.len());
    let input = Input::parse(&buf).expect("the host's own encoding parses");
    let r = input.request();
    assert_eq!(r.protocol(), Protocol::Http1);
    assert_eq!(
        (r.method(), r.path(), r.authority()),
        (req.method, req.path, req.authority)
    );
    assert_eq!(r.header_count(), req.headers.len());
    for (i, (n, v)) in req.headers.iter().enumerate() {
        let (gn, gv) = r.header_at(i).expect("an encoded header");
        assert_eq!(gn, n.to_ascii_lowercase().as_slice());
        assert_eq!(gv, *v);
    }
    assert_eq!(r.client_ip(), &[192, 0, 2, 7]);
    assert_eq!(
        (r.client_port(), r.attempt(), r.failed_count()),
        (40000, 1, 1)
    );
    assert!(input.eligible(0) && !input.eligible(1) && input.has_failed(1));
    assert_eq!(
        (input.sequence(), input.random(), input.now_ms()),
        (7, 9, 11)
    );
}
