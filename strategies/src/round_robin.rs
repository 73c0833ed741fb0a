//! `round-robin`: each eligible backend in turn.

use switchyard_guest::{Input, Strategy};

use crate::{eligible_count, nth_eligible};

/// Each eligible backend in turn.
///
/// The turn comes from the host's decision sequence rather than a counter in
/// the instance, because the host runs several instances of a module in
/// parallel and each would otherwise rotate on its own.
#[derive(Default)]
pub struct RoundRobin;

impl Strategy for RoundRobin {
    // The stats, the failed table `eligible` reads, and the shared turn.
    fn reads(&self) -> u32 {
        use switchyard_guest::{READS_CANDIDATES, READS_REQUEST, READS_SEQUENCE};
        READS_CANDIDATES | READS_REQUEST | READS_SEQUENCE
    }

    fn decide(&mut self, input: &Input<'_>) -> Option<usize> {
        let m = eligible_count(input);
        if m == 0 {
            return None;
        }
        nth_eligible(input, (input.sequence() % m as u64) as usize)
    }
}
