//! `least-connections`: fewest open connections per unit of weight. Also
//! the host's default fallback, run natively.

use switchyard_guest::{Input, Strategy};

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
        let start = crate::below(input.random() as u32, n);
        // The lightest so far as (index, active, weight), starting from a
        // load above any u32 count, so the scan needs no "none yet" test:
        // `a / w < ba / bw`, cross-multiplied in 64 bits.
        let (mut best, mut ba, mut bw) = (usize::MAX, 1u64 << 32, 1u64);
        input.scan_eligible_from(start, |i, c| {
            let (a, w) = (c.active() as u64, c.weight() as u64);
            if a * bw < ba * w {
                (best, ba, bw) = (i, a, w);
            }
        });
        (best != usize::MAX).then_some(best)
    }
}
