//! `power-of-two`: the less loaded of two random choices.

use switchyard_guest::{Candidate, Input, Strategy};

use crate::{eligible_from, lighter};

/// Least in-flight of two random choices ("the power of two choices").
///
/// Within a whisker of least-loaded for large sets, at constant cost, and it
/// avoids the herd effect of every balancer thread chasing the same minimum.
#[derive(Default)]
pub struct PowerOfTwo;

impl Strategy for PowerOfTwo {
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
        let r = input.random();
        let a = eligible_from(input, crate::below(r as u32, n), None)?;
        let Some(b) = eligible_from(input, crate::below((r >> 32) as u32, n), Some(a)) else {
            return Some(a);
        };
        let (ca, cb) = (cands.get(a)?, cands.get(b)?);
        let load = |c: &Candidate<'_>| c.in_flight().max(c.active());
        if lighter(load(&cb), cb.weight(), load(&ca), ca.weight()) {
            Some(b)
        } else {
            Some(a)
        }
    }
}
