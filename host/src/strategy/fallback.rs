//! The native decision used whenever a module's answer cannot be: one of the
//! built-in strategies (least-connections by default), the very code that
//! ships as WebAssembly, run natively on the same input view. There is no
//! second copy of any algorithm.
//!
//! When nothing is eligible it "fails open": it asks again as if every
//! candidate that is only unhealthy (not draining, not weighted to 0, not
//! already failed for this request) were healthy, because a health checker
//! that is wrong about every backend should not turn into a total outage.
//! Draining and weight 0 are an operator's word, and stand.

use std::cell::RefCell;

use switchyard_guest::encode::{encode_parts, encoded_len};
use switchyard_guest::{
    CandidateStats, FLAG_HEALTHY, Input, Meta, READS_ALL, RequestHead, Strategy,
};
use switchyard_strategies::{Builtin, BuiltinKind};

/// Which built-in answers, natively, when the module cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct FallbackPolicy(pub BuiltinKind);

impl Default for FallbackPolicy {
    fn default() -> Self {
        FallbackPolicy(BuiltinKind::LeastConnections)
    }
}

impl std::str::FromStr for FallbackPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let name = s.strip_prefix("builtin:").unwrap_or(s);
        BuiltinKind::from_name(name)
            .map(FallbackPolicy)
            .ok_or_else(|| {
                let names: Vec<&str> = BuiltinKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fallback `{s}`: one of {}", names.join(", "))
            })
    }
}

impl TryFrom<String> for FallbackPolicy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<FallbackPolicy> for String {
    fn from(p: FallbackPolicy) -> String {
        p.0.name().to_string()
    }
}

impl std::fmt::Display for FallbackPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name())
    }
}

/// Per thread: the input buffer and the instance of each built-in used so
/// far (stateful ones, such as smooth weighted round-robin, keep their
/// schedule between fallbacks).
struct Scratch {
    buf: Vec<u8>,
    instances: Vec<Builtin>,
    relaxed: Vec<CandidateStats>,
    /// `native:NAME` strategies, by built-in and configuration, with the
    /// header names each lists (as its WebAssembly twin declares them).
    configured: Vec<(Vec<u8>, Builtin, Option<Vec<u8>>)>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch {
            buf: Vec::new(),
            instances: Vec::new(),
            relaxed: Vec::new(),
            configured: Vec::new(),
        })
    };
}

/// A `native:NAME` decision: the built-in `kind` configured with `config`,
/// on the input the WebAssembly module would get (the parts in `reads`), so
/// that the two differ only by the sandbox.
pub fn native(
    kind: switchyard_strategies::BuiltinKind,
    config: &[u8],
    reads: u32,
    req: &RequestHead<'_>,
    candidates: &[CandidateStats],
    meta: &Meta,
) -> Option<usize> {
    SCRATCH.with(|s| {
        let s = &mut *s.borrow_mut();
        let k = match s
            .configured
            .iter()
            .position(|(c, b, _)| b.kind() == kind && c == config)
        {
            Some(k) => k,
            None => {
                let mut b = kind.instantiate();
                // The module's init accepted this configuration already.
                let _ = b.configure(config);
                // Read as the host reads the module's export (trimmed,
                // lower-case, without repeats); a list it would refuse
                // means every header, as for a module with none.
                let names = b.headers().and_then(|n| {
                    let list = [n, &[0]].concat();
                    super::abi::header_names(&list).ok().map(|l| l.to_vec())
                });
                s.configured.push((config.to_vec(), b, names));
                s.configured.len() - 1
            }
        };
        let (_, strategy, names) = &mut s.configured[k];
        switchyard_guest::encode::as_declared(req, reads, names.as_deref(), |req, parts| {
            decide_on(strategy, &mut s.buf, req, candidates, meta, parts)
        })
    })
}

/// The native decision.
pub fn decide(
    policy: FallbackPolicy,
    req: &RequestHead<'_>,
    candidates: &[CandidateStats],
    meta: &Meta,
) -> Option<usize> {
    if candidates.is_empty() {
        return None;
    }
    SCRATCH.with(|s| {
        let s = &mut *s.borrow_mut();
        let k = match s.instances.iter().position(|b| b.kind() == policy.0) {
            Some(k) => k,
            None => {
                s.instances.push(policy.0.instantiate());
                s.instances.len() - 1
            }
        };
        if let Some(i) = run(&mut s.instances[k], &mut s.buf, req, candidates, meta) {
            return Some(i);
        }
        // Fail open: candidates that are only unhealthy count as healthy.
        s.relaxed.clear();
        s.relaxed.extend(candidates.iter().map(|c| CandidateStats {
            flags: c.flags | FLAG_HEALTHY,
            ..*c
        }));
        run(&mut s.instances[k], &mut s.buf, req, &s.relaxed, meta)
    })
}

fn run(
    strategy: &mut Builtin,
    buf: &mut Vec<u8>,
    req: &RequestHead<'_>,
    candidates: &[CandidateStats],
    meta: &Meta,
) -> Option<usize> {
    decide_on(strategy, buf, req, candidates, meta, READS_ALL)
        .filter(|&i| i < candidates.len() && !req.failed.contains(&(i as u32)))
}

/// Encodes `req` (already as the module is sent it: see
/// `encode::as_declared`) with `parts`, parses it with the SDK's views and
/// decides: a built-in run natively sees exactly the bytes its WebAssembly
/// twin would.
fn decide_on(
    strategy: &mut Builtin,
    buf: &mut Vec<u8>,
    req: &RequestHead<'_>,
    candidates: &[CandidateStats],
    meta: &Meta,
    parts: u32,
) -> Option<usize> {
    let need = encoded_len(req, candidates.len());
    if buf.len() < need {
        buf.resize(need, 0);
    }
    let len = encode_parts(buf, meta, req, candidates, parts);
    let input = Input::parse(&buf[..len]).ok()?;
    strategy.decide(&input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(n: u32) -> Vec<CandidateStats> {
        (0..n).map(CandidateStats::healthy).collect()
    }

    fn meta(random: u64, sequence: u64) -> Meta {
        Meta {
            sequence,
            random,
            now_ms: 0,
        }
    }

    fn with_failed<'a>(failed: &'a [u32]) -> RequestHead<'a> {
        RequestHead {
            failed,
            ..RequestHead::EMPTY
        }
    }

    fn policy(name: &str) -> FallbackPolicy {
        name.parse().unwrap()
    }

    #[test]
    fn picks_least_loaded_eligible() {
        let mut c = cands(3);
        c[0].active = 5;
        c[1].active = 1;
        c[2].active = 0;
        c[2].flags = 0;
        for r in 0..10 {
            assert_eq!(
                decide(
                    FallbackPolicy::default(),
                    &RequestHead::EMPTY,
                    &c,
                    &meta(r, 0)
                ),
                Some(1)
            );
        }
    }

    #[test]
    fn fails_open_to_unhealthy_but_never_to_failed() {
        let mut c = cands(2);
        c[0].flags = 0;
        c[1].flags = 0;
        let p = FallbackPolicy::default();
        assert_eq!(decide(p, &with_failed(&[0]), &c, &meta(3, 0)), Some(1));
        assert_eq!(
            decide(policy("random"), &with_failed(&[0, 1]), &c, &meta(3, 0)),
            None
        );
        assert_eq!(
            decide(policy("round-robin"), &RequestHead::EMPTY, &[], &meta(3, 0)),
            None
        );
    }

    #[test]
    fn failing_open_never_picks_draining_or_weight_zero() {
        let mut c = cands(3);
        c[0].flags = 0;
        c[1].flags = switchyard_guest::FLAG_DRAINING;
        c[2].weight = 0;
        for r in 0..20 {
            assert_eq!(
                decide(
                    FallbackPolicy::default(),
                    &RequestHead::EMPTY,
                    &c,
                    &meta(r, 0)
                ),
                Some(0)
            );
        }
        c[0].weight = 0;
        assert_eq!(
            decide(
                FallbackPolicy::default(),
                &RequestHead::EMPTY,
                &c,
                &meta(1, 0)
            ),
            None
        );
    }

    #[test]
    fn round_robin_and_random_cover_all() {
        let c = cands(3);
        let mut seen = [0; 3];
        for s in 0..30 {
            let i = decide(policy("round-robin"), &RequestHead::EMPTY, &c, &meta(0, s));
            seen[i.unwrap()] += 1;
        }
        assert_eq!(seen, [10, 10, 10]);
        let mut seen = [0; 3];
        for r in 0..300u64 {
            let m = meta(switchyard_guest::hash::mix64(r), 0);
            seen[decide(policy("random"), &RequestHead::EMPTY, &c, &m).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&k| k > 50), "{seen:?}");
    }

    #[test]
    fn any_builtin_can_be_the_fallback_and_names_round_trip() {
        for kind in BuiltinKind::ALL {
            let p: FallbackPolicy = kind.name().parse().unwrap();
            assert_eq!(String::from(p), kind.name());
            let i = decide(p, &RequestHead::EMPTY, &cands(4), &meta(7, 1));
            assert!(i.is_some_and(|i| i < 4), "{kind:?}");
        }
        assert!("nonsense".parse::<FallbackPolicy>().is_err());
    }
}
