//! `least-connections`: fewest open connections per unit of weight. Also
//! the host's default fallback, run natively.

use switchyard_guest::{Input, Strategy};

use crate::lighter;

/// Fewest open connections per unit of weight.
///
/// The scan starts at a random index so that ties do not always go to the
/// first backend (which is what a naive `min_by_key` does).
#[derive(Default)]
pub struct LeastConnections;

impl Strategy for LeastConnections {
    // The stats, and the failed table `eligible` reads; no request strings.
    fn reads(&self) -> u32 {
        switchyard_guest::READS_CANDIDATES | switchyard_guest::READS_REQUEST
    }

    fn decide(&mut self, input: &Input<'_>) -> Option<usize> {
        let cands = input.candidates();
        let n = cands.len();
        if n == 0 {
            return None;
        }
        let start = (input.random() % n as u64) as usize;
        // (index, active, weight) of the lightest so far.
        let mut best: Option<(usize, u32, u32)> = None;
        cands.scan_from(start, |i, c| {
            if !c.usable() || input.has_failed(i) {
                return;
            }
            let (a, w) = (c.active(), c.weight());
            match best {
                Some((_, ba, bw)) if !lighter(a, w, ba, bw) => {}
                _ => best = Some((i, a, w)),
            }
        });
        best.map(|(i, _, _)| i)
    }
}
