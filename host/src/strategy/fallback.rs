//! The native decision used whenever a module's answer cannot be.
//!
//! It mirrors the built-ins' eligibility rule (healthy, not draining, weight
//! above zero, not already failed for this request). When nothing is eligible
//! it "fails open": it tries candidates that are merely marked unhealthy
//! (never ones that already failed for this request), because a health checker
//! that is wrong about every backend should not turn into a total outage.

use switchyard_guest::{CandidateStats, FLAG_DRAINING, FLAG_HEALTHY};

/// Which native algorithm answers when the module cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FallbackPolicy {
    /// Fewest open connections per unit of weight, ties at random.
    #[default]
    LeastConnections,
    /// Uniform at random.
    Random,
    /// In turn, by the strategy's decision sequence.
    RoundRobin,
}

impl std::str::FromStr for FallbackPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "least-connections" => Ok(FallbackPolicy::LeastConnections),
            "random" => Ok(FallbackPolicy::Random),
            "round-robin" => Ok(FallbackPolicy::RoundRobin),
            _ => Err(format!(
                "unknown fallback `{s}` (least-connections, random, round-robin)"
            )),
        }
    }
}

/// The native decision.
pub fn decide(
    policy: FallbackPolicy,
    failed: &[u32],
    candidates: &[CandidateStats],
    random: u64,
    sequence: u64,
) -> Option<usize> {
    let not_failed = |i: usize| !failed.contains(&(i as u32));
    let usable = |c: &CandidateStats| {
        c.flags & (FLAG_HEALTHY | FLAG_DRAINING) == FLAG_HEALTHY && c.weight > 0
    };
    let strict = |i: usize| not_failed(i) && usable(&candidates[i]);
    if (0..candidates.len()).any(strict) {
        pick(policy, candidates, strict, random, sequence)
    } else {
        pick(policy, candidates, not_failed, random, sequence)
    }
}

fn pick(
    policy: FallbackPolicy,
    candidates: &[CandidateStats],
    ok: impl Fn(usize) -> bool,
    random: u64,
    sequence: u64,
) -> Option<usize> {
    let n = candidates.len();
    if n == 0 {
        return None;
    }
    let count = (0..n).filter(|&i| ok(i)).count() as u64;
    if count == 0 {
        return None;
    }
    match policy {
        FallbackPolicy::Random => (0..n).filter(|&i| ok(i)).nth((random % count) as usize),
        FallbackPolicy::RoundRobin => (0..n).filter(|&i| ok(i)).nth((sequence % count) as usize),
        FallbackPolicy::LeastConnections => {
            let start = (random % n as u64) as usize;
            let load = |i: usize| {
                let c = &candidates[i];
                (c.active as u64, c.weight.max(1) as u64)
            };
            (0..n)
                .map(|k| (start + k) % n)
                .filter(|&i| ok(i))
                .reduce(|best, i| {
                    let ((a, wa), (b, wb)) = (load(i), load(best));
                    if a * wb < b * wa { i } else { best }
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(n: u32) -> Vec<CandidateStats> {
        (0..n).map(CandidateStats::healthy).collect()
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
                decide(FallbackPolicy::LeastConnections, &[], &c, r, 0),
                Some(1)
            );
        }
    }

    #[test]
    fn fails_open_to_unhealthy_but_never_to_failed() {
        let mut c = cands(2);
        c[0].flags = 0;
        c[1].flags = 0;
        assert_eq!(
            decide(FallbackPolicy::LeastConnections, &[0], &c, 3, 0),
            Some(1)
        );
        assert_eq!(decide(FallbackPolicy::Random, &[0, 1], &c, 3, 0), None);
        assert_eq!(decide(FallbackPolicy::RoundRobin, &[], &[], 3, 0), None);
    }

    #[test]
    fn round_robin_and_random_cover_all() {
        let c = cands(3);
        let mut seen = [0; 3];
        for s in 0..30 {
            seen[decide(FallbackPolicy::RoundRobin, &[], &c, 0, s).unwrap()] += 1;
        }
        assert_eq!(seen, [10, 10, 10]);
        let mut seen = [0; 3];
        for r in 0..300u64 {
            seen[decide(FallbackPolicy::Random, &[], &c, r * 7919, 0).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&k| k > 50), "{seen:?}");
    }
}
