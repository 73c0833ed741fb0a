//! `weighted-round-robin`: smooth weighted round-robin, as NGINX does it.

use switchyard_guest::{Input, Strategy};

use crate::random::Random;

/// Most backends the smooth weighted round-robin tracks; above that it picks at
/// random by weight (no allocator, so its table is fixed).
pub const SWRR_MAX: usize = 1024;

/// Smooth weighted round-robin (NGINX's algorithm): each pick adds every
/// backend's weight to its running score, takes the highest and subtracts the
/// total from it, which interleaves heavy backends instead of bursting them.
pub struct WeightedRoundRobin {
    current: [i64; SWRR_MAX],
    ids: [u32; SWRR_MAX],
    len: usize,
}

impl Default for WeightedRoundRobin {
    fn default() -> Self {
        WeightedRoundRobin {
            current: [0; SWRR_MAX],
            ids: [0; SWRR_MAX],
            len: 0,
        }
    }
}

impl Strategy for WeightedRoundRobin {
    // The stats, and the failed table `eligible` reads; no request strings.
    fn reads(&self) -> u32 {
        switchyard_guest::READS_CANDIDATES | switchyard_guest::READS_REQUEST
    }

    fn decide(&mut self, input: &Input<'_>) -> Option<usize> {
        let cands = input.candidates();
        let n = cands.len();
        if n > SWRR_MAX {
            return Random.decide(input);
        }
        // A changed backend set restarts the schedule.
        let same = self.len == n && cands.iter().all(|(i, c)| self.ids[i] == c.id());
        if !same {
            for (i, c) in cands.iter() {
                self.ids[i] = c.id();
                self.current[i] = 0;
            }
            self.len = n;
        }
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        let current = &mut self.current;
        input.scan_eligible_from(0, |i, c| {
            let w = c.weight() as i64;
            current[i] += w;
            total += w;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        });
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }
}
