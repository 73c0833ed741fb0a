//! Benchmarks live in `decision.rs` (criterion) and `e2e.sh` (the proxy
//! against direct and HAProxy); this library only holds what both share.

use switchyard_guest::encode::{encode, encoded_len};
use switchyard_guest::{CandidateStats, Input, Meta, RequestHead, Strategy};

/// One native decision including the same serialization the host does for a
/// WebAssembly one, so the comparison is like for like.
pub fn native_decide<S: Strategy>(
    s: &mut S,
    buf: &mut Vec<u8>,
    meta: &Meta,
    req: &RequestHead<'_>,
    candidates: &[CandidateStats],
) -> Option<usize> {
    let need = encoded_len(req, candidates.len());
    if buf.len() < need {
        buf.resize(need, 0);
    }
    let len = encode(buf, meta, req, candidates);
    let input = Input::parse(&buf[..len]).ok()?;
    s.decide(&input)
}
