//! `switchyard strategy check`'s audit: what the load-time dry run is too
//! quick to catch. A module that passes loading can still be wrong: answer 0
//! whatever the stats say, hard-code the 64-byte record stride, trap on a
//! long header value, or leak memory on every decision until it hits the cap.
//! The audit shows each of these:
//!
//! - **Varied inputs.** The least-loaded candidate moves; the would-be
//!   choice is unhealthy, draining, weighted 0 or already failed; headers
//!   are large, empty, binary or many. A trap, running out of fuel or an
//!   index out of range refuses the module, naming the input. Picking an
//!   ineligible candidate is only a warning: a strategy may mean it.
//! - **A later-v1 layout.** Every input is also sent as a later host could
//!   send it: an 80-byte header, an 80-byte candidate stride with unknown
//!   bytes in the tail of each record, the request section before the
//!   candidates. The same input must get the same answer, from an instance
//!   in the same state; a module that assumes offsets instead of reading
//!   them answers differently.
//! - **Many decisions.** At least 10,000, with fuel min and max reported and
//!   memory watched: a module whose memory keeps growing is refused with the
//!   rate and when it would hit the cap.

use std::fmt::Write as _;

use switchyard_guest::encode::{encode_parts, encoded_len};
use switchyard_guest::layout::*;
use switchyard_guest::{CandidateStats, Meta, Protocol, RequestHead};

use super::abi::Slot;
use super::engine::{sample_candidates, sample_request};
use super::error::{CallError, FallbackReason, LoadError};

/// Decisions the endurance part runs (the floor).
pub const DECISIONS: usize = 10_000;

/// What the audit found in a module that it did not refuse.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    /// Inputs tried, each in both layouts.
    pub inputs: usize,
    /// Decisions made in all.
    pub decisions: usize,
    /// Least and most fuel one decision took (fuel metering only).
    pub fuel: Option<(u64, u64)>,
    /// Linear memory before and after the endurance run, bytes.
    pub memory: (usize, usize),
    /// Answers that may be deliberate but usually are not.
    pub warnings: Vec<String>,
}

/// Makes a candidate ineligible in one way.
type Spoil = fn(&mut CandidateStats);
/// Owned header pairs.
type Headers = Vec<(Vec<u8>, Vec<u8>)>;

/// One input: a description for messages, and the input itself.
struct Input {
    what: String,
    meta: Meta,
    headers: Headers,
    failed: Vec<u32>,
    candidates: Vec<CandidateStats>,
    protocol: Protocol,
}

impl Input {
    fn plain(what: impl Into<String>, candidates: Vec<CandidateStats>) -> Input {
        Input {
            what: what.into(),
            meta: Meta::default(),
            headers: Vec::new(),
            failed: Vec::new(),
            candidates,
            protocol: Protocol::Http1,
        }
    }

    fn request<'a>(&'a self, headers: &'a [(&'a [u8], &'a [u8])]) -> RequestHead<'a> {
        let base = sample_request();
        RequestHead {
            protocol: self.protocol,
            headers: if self.headers.is_empty() {
                base.headers
            } else {
                headers
            },
            raw: if self.headers.is_empty() {
                base.raw
            } else {
                b""
            },
            attempt: u32::from(!self.failed.is_empty()),
            failed: &self.failed,
            ..base
        }
    }
}

/// Candidates whose least-loaded member (by every stat) is `best`.
fn loaded(n: usize, best: usize) -> Vec<CandidateStats> {
    let mut c = sample_candidates(n);
    for (i, s) in c.iter_mut().enumerate() {
        let far = (i + n - best) % n + 1;
        s.active = 10 + far as u32 * 3;
        s.in_flight = s.active;
        s.cpu_permille = 100 + far as u32 * 50;
        s.rss_bytes = (64 + far as u64 * 8) << 20;
        s.ewma_us = 200 + far as u32 * 20;
    }
    c[best].active = 0;
    c[best].in_flight = 0;
    c
}

fn inputs() -> Vec<Input> {
    let mut all = Vec::new();
    for (n, best) in [(2, 1), (5, 3), (5, 0), (17, 11), (64, 63)] {
        all.push(Input::plain(
            format!("{n} candidates, the least loaded at {best}"),
            loaded(n, best),
        ));
    }
    let ineligible: [(&str, Spoil); 3] = [
        ("unhealthy", |c| c.flags &= !FLAG_HEALTHY),
        ("draining", |c| c.flags |= FLAG_DRAINING),
        ("weighted 0", |c| c.weight = 0),
    ];
    for (how, make) in ineligible {
        let mut c = loaded(6, 2);
        make(&mut c[2]);
        all.push(Input::plain(
            format!("6 candidates, the least loaded (2) {how}"),
            c,
        ));
    }
    let mut first_down = loaded(5, 3);
    first_down[0].flags &= !FLAG_HEALTHY;
    all.push(Input::plain(
        "5 candidates, the first unhealthy and the least loaded at 3",
        first_down,
    ));
    let mut failed = Input::plain(
        "a retry: the least loaded (4) already failed for this request",
        loaded(8, 4),
    );
    failed.failed = vec![4];
    all.push(failed);
    let header_sets: [(&str, Headers); 4] = [
        (
            "an 8 KiB cookie",
            vec![
                (b"host".to_vec(), b"shop.example.com".to_vec()),
                (
                    b"cookie".to_vec(),
                    [b"sid=".as_slice(), &[b'x'; 8192]].concat(),
                ),
            ],
        ),
        (
            "empty and binary header values",
            vec![
                (b"x-empty".to_vec(), Vec::new()),
                (b"x-binary".to_vec(), (0u8..=255).rev().collect()),
                (b"x-user-id".to_vec(), Vec::new()),
            ],
        ),
        (
            "100 headers with a 1 KiB name",
            (0..100)
                .map(|i| {
                    let name = if i == 50 {
                        vec![b'n'; 1024]
                    } else {
                        format!("x-h{i}").into_bytes()
                    };
                    (name, format!("value-{i}").into_bytes())
                })
                .collect(),
        ),
        (
            "a 16 KiB header value",
            vec![(b"x-user-id".to_vec(), vec![b'7'; 16 << 10])],
        ),
    ];
    for (what, headers) in header_sets {
        let mut i = Input::plain(format!("a request with {what}"), loaded(4, 1));
        i.headers = headers;
        all.push(i);
    }
    let mut opaque = Input::plain("opaque bytes (no HTTP head)", loaded(3, 2));
    opaque.protocol = Protocol::Opaque;
    all.push(opaque);
    for (k, i) in all.iter_mut().enumerate() {
        i.meta = Meta {
            sequence: 1000 + k as u64,
            random: 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(k as u64 + 1),
            now_ms: 60_000 + k as u64,
        };
    }
    all
}

/// The v1 encoding of `input` with the parts `reads` names.
fn encode(input: &Input, reads: u32) -> Vec<u8> {
    let pairs: Vec<(&[u8], &[u8])> = input
        .headers
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect();
    let req = input.request(&pairs).only(reads);
    let mut buf = vec![0u8; encoded_len(&req, input.candidates.len())];
    let n = encode_parts(&mut buf, &input.meta, &req, &input.candidates, reads);
    buf.truncate(n);
    buf
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Longer header and stride of the later-v1 layout.
const LATER_HEADER: usize = 80;
const LATER_STRIDE: usize = 80;

/// `v1` re-laid as a later v1 host may lay it: an 80-byte header, then the
/// request section (every absolute offset in it moved with it), then the
/// candidates with an 80-byte stride whose extra tail bytes are 0xA5.
fn later_layout(v1: &[u8]) -> Vec<u8> {
    let n = u32_at(v1, H_CANDIDATE_COUNT) as usize;
    let cand_at = u32_at(v1, H_CANDIDATES_OFFSET) as usize;
    let req_at = u32_at(v1, H_REQUEST_OFFSET) as usize;
    let mut request = v1[req_at..].to_vec();
    let new_req_at = LATER_HEADER;
    let shift = |off: u32| (off as usize - req_at + new_req_at) as u32;
    // Absolute offsets inside the request section: the tables and strings.
    let headers = u32_at(&request, R_HEADER_COUNT) as usize;
    let headers_at = u32_at(&request, R_HEADERS_OFFSET);
    let failed_at = u32_at(&request, R_FAILED_OFFSET);
    put_u32(&mut request, R_HEADERS_OFFSET, shift(headers_at));
    put_u32(&mut request, R_FAILED_OFFSET, shift(failed_at));
    for field in [R_METHOD, R_PATH, R_AUTHORITY, R_SNI, R_ALPN] {
        if u32_at(&request, field + 4) != 0 {
            let off = u32_at(&request, field);
            put_u32(&mut request, field, shift(off));
        }
    }
    let table = headers_at as usize - req_at;
    for k in 0..headers {
        let e = table + k * HEADER_ENTRY_LEN;
        for (off, len) in [(0, 4), (8, 12)] {
            if u32_at(&request, e + len) != 0 {
                let v = u32_at(&request, e + off);
                put_u32(&mut request, e + off, shift(v));
            }
        }
    }
    let new_cand_at = (new_req_at + request.len()).next_multiple_of(8);
    let total = new_cand_at + n * LATER_STRIDE;
    let mut out = vec![0u8; total];
    out[..HEADER_LEN].copy_from_slice(&v1[..HEADER_LEN]);
    out[H_HEADER_LEN..H_HEADER_LEN + 2].copy_from_slice(&(LATER_HEADER as u16).to_le_bytes());
    out[H_CANDIDATE_STRIDE..H_CANDIDATE_STRIDE + 2]
        .copy_from_slice(&(LATER_STRIDE as u16).to_le_bytes());
    put_u32(&mut out, H_TOTAL_LEN, total as u32);
    put_u32(&mut out, H_CANDIDATES_OFFSET, new_cand_at as u32);
    put_u32(&mut out, H_REQUEST_OFFSET, new_req_at as u32);
    out[new_req_at..new_req_at + request.len()].copy_from_slice(&request);
    for i in 0..n {
        let from = cand_at + i * CANDIDATE_LEN;
        let to = new_cand_at + i * LATER_STRIDE;
        out[to..to + CANDIDATE_LEN].copy_from_slice(&v1[from..from + CANDIDATE_LEN]);
        out[to + CANDIDATE_LEN..to + LATER_STRIDE].fill(0xA5);
    }
    out
}

/// Why a candidate may not take new work, if it may not.
fn ineligible(input: &Input, i: usize) -> Option<&'static str> {
    let c = &input.candidates[i];
    if input.failed.contains(&(i as u32)) {
        Some("already failed for this request")
    } else if c.flags & FLAG_HEALTHY == 0 {
        Some("unhealthy")
    } else if c.flags & FLAG_DRAINING != 0 {
        Some("draining")
    } else if c.weight == 0 {
        Some("weighted 0")
    } else {
        None
    }
}

fn refused(input: &str, what: String) -> LoadError {
    LoadError::Audit(format!("with {input}: {what}"))
}

fn failure(e: &CallError, budget: u64) -> String {
    match e.reason {
        FallbackReason::OutOfFuel => {
            format!("ran out of fuel (budget {budget}); raise --fuel or fix the loop")
        }
        _ => e.to_string(),
    }
}

/// Runs the audit. `fresh` makes an instance in a fixed state (same clock,
/// same random sequence), so two of them answer alike when the module is
/// right.
pub(crate) fn audit(
    fresh: impl Fn() -> Result<Slot, LoadError>,
    budget: u64,
    memory_cap: usize,
) -> Result<Audit, LoadError> {
    let inputs = inputs();
    let mut v1 = fresh()?;
    let mut later = fresh()?;
    let reads = v1.reads();
    let mut report = Audit {
        inputs: inputs.len(),
        ..Audit::default()
    };
    let mut fuel: Option<(u64, u64)> = None;
    let mut note_fuel = |slot: &Slot| {
        if let Some(left) = slot.fuel_left() {
            let used = budget - left;
            fuel = Some(fuel.map_or((used, used), |(lo, hi)| (lo.min(used), hi.max(used))));
        }
    };
    // Each input encoded once, for both parts.
    let encoded: Vec<Vec<u8>> = inputs.iter().map(|i| encode(i, reads)).collect();
    for (input, bytes) in inputs.iter().zip(&encoded) {
        let n = input.candidates.len();
        let a = v1
            .call_raw(bytes, budget)
            .map_err(|e| refused(&input.what, failure(&e, budget)))?;
        note_fuel(&v1);
        let b = later.call_raw(&later_layout(bytes), budget).map_err(|e| {
            refused(
                &input.what,
                format!(
                    "in a later-v1 layout (80-byte header and stride, request first): {}",
                    failure(&e, budget)
                ),
            )
        })?;
        report.decisions += 2;
        if a != b {
            return Err(refused(
                &input.what,
                format!(
                    "answered {a} in the v1 layout but {b} in a later-v1 layout of the same input \
                     (80-byte header, 80-byte candidate stride, request before candidates): locate \
                     records with candidate_stride and sections through the header's offsets, never \
                     by assuming 64 or an order"
                ),
            ));
        }
        if a >= n as i32 {
            return Err(refused(
                &input.what,
                format!("returned index {a}, out of range 0..{n}"),
            ));
        }
        if a >= 0
            && let Some(why) = ineligible(input, a as usize)
        {
            report.warnings.push(format!(
                "with {}: picked candidate {a}, which is {why} (the host then falls back, unless that is meant)",
                input.what
            ));
        }
    }
    // Endurance: cycle through the inputs on one instance, watching memory
    // after the first tenth (by then every buffer it needs is grown).
    let warm = DECISIONS / 10;
    let mut marks = Vec::new();
    for k in 0..DECISIONS {
        let input = &inputs[k % inputs.len()];
        v1.call_raw(&encoded[k % encoded.len()], budget)
            .map_err(|e| {
                refused(
                    &input.what,
                    format!("decision {} of {DECISIONS}: {}", k + 1, failure(&e, budget)),
                )
            })?;
        note_fuel(&v1);
        if k + 1 == warm || k + 1 == (warm + DECISIONS) / 2 || k + 1 == DECISIONS {
            marks.push(v1.memory_bytes());
        }
    }
    report.decisions += DECISIONS;
    report.memory = (marks[0], marks[2]);
    if marks[1] > marks[0] && marks[2] > marks[1] {
        let per = (marks[2] - marks[0]) as f64 / (DECISIONS - warm) as f64;
        let mut msg = format!(
            "its memory kept growing, from {} to {} KiB over {} decisions (about {per:.0} bytes a decision): ",
            marks[0] >> 10,
            marks[2] >> 10,
            DECISIONS - warm,
        );
        let left = memory_cap.saturating_sub(marks[2]);
        if left < 64 << 10 {
            let _ = write!(
                msg,
                "it reached the {} MiB cap during the check",
                memory_cap >> 20
            );
        } else {
            let _ = write!(
                msg,
                "it would hit the {} MiB cap after about {:.0} more decisions and trap",
                memory_cap >> 20,
                left as f64 / per.max(1.0),
            );
        }
        msg.push_str(". Allocate the input views once, or free what a decision allocates");
        return Err(LoadError::Audit(msg));
    }
    report.fuel = fuel;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_guest::Input as View;

    /// The later layout is a faithful re-lay: the SDK's views read the same
    /// request strings, headers, failed table and candidates from both.
    #[test]
    fn the_later_layout_carries_the_same_input() {
        for input in inputs() {
            let v1 = encode(&input, READS_ALL);
            let later = later_layout(&v1);
            let (a, b) = (View::parse(&v1).unwrap(), View::parse(&later).unwrap());
            assert_eq!(a.candidates().len(), b.candidates().len(), "{}", input.what);
            for i in 0..a.candidates().len() {
                let (x, y) = (
                    a.candidates().get(i).unwrap(),
                    b.candidates().get(i).unwrap(),
                );
                assert_eq!(
                    (x.id(), x.active(), x.flags()),
                    (y.id(), y.active(), y.flags())
                );
                assert_eq!(a.eligible(i), b.eligible(i));
            }
            let (ra, rb) = (a.request(), b.request());
            assert_eq!(ra.path(), rb.path());
            assert_eq!(ra.method(), rb.method());
            assert_eq!(ra.authority(), rb.authority());
            let ha: Vec<_> = ra.headers().collect();
            let hb: Vec<_> = rb.headers().collect();
            assert_eq!(ha, hb, "{}", input.what);
        }
    }
}
