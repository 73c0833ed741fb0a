//! The process clock and fast randomness, shared by every part of the host.
//!
//! One monotonic origin for the whole process, so that a heartbeat age the
//! supervisor writes, the `now_ms` a strategy reads and the deadlines the
//! health checker compares all count from the same instant.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Instant;

/// The process-wide monotonic clock origin.
pub fn origin() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Milliseconds on the process-wide monotonic clock.
pub fn now_ms() -> u64 {
    origin().elapsed().as_millis() as u64
}

/// Nanoseconds on the process-wide monotonic clock.
pub fn now_ns() -> u64 {
    origin().elapsed().as_nanos() as u64
}

/// Fast per-thread random numbers (wyrand). Not for secrets: strategies get
/// them in the input header so that they need no import to be random, and the
/// fallback uses them to break ties.
pub fn random_u64() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = origin().elapsed().as_nanos() as u64;
            let here = &t as *const u64 as u64;
            t ^ here.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15
        });
    }
    STATE.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = (x as u128).wrapping_mul((x ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) ^ t) as u64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_numbers_spread() {
        let mut buckets = [0u32; 8];
        for _ in 0..8000 {
            buckets[(random_u64() % 8) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (800..1200).contains(&b)),
            "{buckets:?}"
        );
    }

    #[test]
    fn the_clock_is_monotonic_and_shared() {
        let a = now_ms();
        let b = now_ns() / 1_000_000;
        assert!(b >= a);
    }
}
