//! The guest SDK's zero-copy views on hostile bytes: `Input::parse`, then
//! every accessor of the input, its request (strings, client address,
//! headers, header and cookie lookups, failed table) and every candidate.
//! A strategy must never trap on input it does not understand, so nothing
//! here may panic.
//!
//! Two counts are read straight from the buffer and are not checked by
//! `Input::parse`: the request's `header_count` and `failed_count` (up to
//! 2^32 - 1). `headers()`, `header()`, `cookie()` and `Request::has_failed`
//! loop that many times, so a count far larger than the buffer makes one
//! call take seconds (see README.md). Those walks run here only while the
//! count could describe a table inside the buffer (`count <= len`); beyond
//! that the target probes single entries instead, so the fuzzer keeps its
//! speed. No other accessor is skipped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_guest::layout::{CANDIDATE_LEN, H_REQUEST_OFFSET, R_FAILED_COUNT, R_FAILED_OFFSET};
use switchyard_guest::{Input, InputError, Protocol, usable};

fn u32_le(b: &[u8], off: usize) -> Option<usize> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

fn within(whole: &[u8], part: &[u8]) -> bool {
    let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    part.is_empty() || (p >= w && p + part.len() <= w + whole.len())
}

fuzz_target!(|data: &[u8]| {
    let input = match Input::parse(data) {
        Ok(input) => input,
        Err(InputError::Truncated | InputError::Version(_) | InputError::BadCandidateTable) => {
            return;
        }
    };
    let buf = input.bytes();
    assert!(buf.len() <= data.len() && std::ptr::eq(buf.as_ptr(), data.as_ptr()));
    let _ = (input.sequence(), input.random(), input.now_ms());

    // Every candidate: `parse` proved the whole table is inside the buffer.
    let cands = input.candidates();
    let n = cands.len();
    assert_eq!(cands.is_empty(), n == 0);
    assert!(n <= buf.len() / CANDIDATE_LEN);
    let mut seen = 0;
    for (i, c) in cands.iter() {
        assert_eq!(i, seen);
        seen += 1;
        let same = cands.get(i).expect("an in-range candidate");
        assert_eq!(same.id(), c.id());
        let _ = (c.id(), c.worker(), c.active(), c.in_flight(), c.total());
        let _ = (c.failures(), c.ewma_us(), c.cpu_permille());
        let _ = (c.heartbeat_age_ms(), c.rss_bytes());
        let (flags, weight) = (c.flags(), c.weight());
        assert_eq!(c.usable(), usable(flags, weight));
        assert_eq!(c.usable(), c.healthy() && !c.draining() && weight > 0);
        assert_eq!(input.eligible(i), c.usable() && !input.has_failed(i));
    }
    assert_eq!(seen, n);
    for i in [n, n + 1, usize::MAX] {
        assert!(cands.get(i).is_none());
        assert!(!input.eligible(i));
        let _ = input.has_failed(i);
    }

    // The request's fixed fields and strings.
    let req = input.request();
    let proto = req.protocol();
    assert_eq!(Protocol::from_u8(proto as u8), proto);
    let _ = (req.attempt(), req.client_port());
    assert!(matches!(req.client_ip().len(), 0 | 4 | 16));
    for s in [
        req.method(),
        req.path(),
        req.authority(),
        req.sni(),
        req.alpn(),
        req.client_ip(),
    ] {
        assert!(within(buf, s));
    }

    // Headers.
    let count = req.header_count();
    let walkable = count <= buf.len();
    let probes = [
        0,
        1,
        count / 2,
        count.saturating_sub(1),
        count,
        count + 1,
        usize::MAX,
    ];
    for i in probes.into_iter().chain(0..count.min(64)) {
        if let Some((name, value)) = req.header_at(i) {
            assert!(i < count);
            assert!(within(buf, name) && within(buf, value));
        }
        if i >= count {
            assert!(req.header_at(i).is_none());
        }
    }
    if walkable {
        let all: Vec<(&[u8], &[u8])> = req.headers().collect();
        assert!(all.len() <= count);
        let mut cookie_lookups = 0;
        for (i, &(name, value)) in all.iter().enumerate() {
            assert!(within(buf, name) && within(buf, value));
            if i < 16 {
                // Lookups by every (early) name present: the first match wins.
                let first = all.iter().find(|(n, _)| *n == name).map(|p| p.1);
                assert_eq!(req.header(name), first);
                if name == b"cookie" {
                    for pair in value.split(|&b| b == b';') {
                        cookie_lookups += 1;
                        if cookie_lookups > 8 {
                            break;
                        }
                        let key = pair.split(|&b| b == b'=').next().unwrap_or(b"");
                        let key = key.trim_ascii();
                        if let Some(v) = req.cookie(key) {
                            assert!(within(buf, v));
                        }
                    }
                }
            }
        }
        for name in [&b"host"[..], b"cookie", b"x-user-id", b"", b"Cookie"] {
            if let Some(v) = req.header(name) {
                assert!(within(buf, v));
            }
        }
        for name in [&b"sid"[..], b"", b"theme", b"=", b";"] {
            if let Some(v) = req.cookie(name) {
                assert!(within(buf, v));
            }
        }
    }

    // The failed table.
    let failed = req.failed_count();
    if failed <= buf.len() {
        // `Input::has_failed` is documented as the same as
        // `Request::has_failed`; they agree whenever the table the header
        // points at lies inside the buffer (the only case the host writes).
        let base = u32_le(buf, H_REQUEST_OFFSET).unwrap_or(0);
        let at = u32_le(buf, base + R_FAILED_OFFSET).unwrap_or(0);
        let fits = u32_le(buf, base + R_FAILED_COUNT).is_some()
            && at
                .checked_add(4 * failed)
                .is_some_and(|end| end <= buf.len());
        for i in (0..n.min(64)).chain([n, usize::MAX]) {
            let r = req.has_failed(i);
            if fits {
                assert_eq!(r, input.has_failed(i), "candidate {i}");
            }
        }
    }
});
