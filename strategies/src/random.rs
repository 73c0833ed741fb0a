//! `random`: uniform by weight.

use switchyard_guest::{Input, Strategy};

/// Uniformly random by weight.
#[derive(Default)]
pub struct Random;

impl Strategy for Random {
    // The stats, and the failed table `eligible` reads; no request strings.
    fn reads(&self) -> u32 {
        switchyard_guest::READS_CANDIDATES | switchyard_guest::READS_REQUEST
    }

    fn decide(&mut self, input: &Input<'_>) -> Option<usize> {
        let cands = input.candidates();
        let mut total = 0u64;
        input.scan_eligible_from(0, |_, c| total += c.weight() as u64);
        if total == 0 {
            return None;
        }
        let mut r = input.random() % total;
        for (i, c) in cands.iter() {
            if !input.eligible_with(i, &c) {
                continue;
            }
            let w = c.weight() as u64;
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        None
    }
}
