//! The process clock and fast randomness, shared by every part of the host.
//!
//! One monotonic origin for the whole process, so that a heartbeat age the
//! supervisor writes, the `now_ms` a strategy reads and the deadlines the
//! health checker compares all count from the same instant.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Instant;

/// The origin as an `Instant` and as nanoseconds of `CLOCK_MONOTONIC` (the
/// clock `Instant` reads on Linux), taken together.
fn origins() -> &'static (Instant, u64) {
    static START: OnceLock<(Instant, u64)> = OnceLock::new();
    START.get_or_init(|| (Instant::now(), clock_ns(Clock::Precise)))
}

/// The process-wide monotonic clock origin.
pub fn origin() -> Instant {
    origins().0
}

/// Milliseconds on the process-wide monotonic clock, read from the kernel's
/// coarse clock: it moves at the scheduler tick (1 to 4 ms), which every
/// reader of milliseconds here (heartbeat ages, idle and body timeouts, the
/// circuit breaker, a strategy's `now_ms`) is well within, and it costs about
/// 8 ns against about 28 ns for the precise clock on this machine kind. It is
/// read on every decision, where 20 ns is a tenth of the whole.
///
/// The coarse clock is the precise one as of the last tick, so counted from
/// the same origin it is never ahead of [`now_ns`].
pub fn now_ms() -> u64 {
    clock_ns(Clock::Coarse).saturating_sub(origins().1) / 1_000_000
}

/// Nanoseconds on the process-wide monotonic clock.
pub fn now_ns() -> u64 {
    clock_ns(Clock::Precise).saturating_sub(origins().1)
}

#[derive(Clone, Copy)]
enum Clock {
    Precise,
    Coarse,
}

#[cfg(target_os = "linux")]
fn clock_ns(clock: Clock) -> u64 {
    // libc's, not rustix's: glibc's vDSO call is what valgrind knows how to
    // follow (rustix parses the vDSO itself, which crashes under callgrind,
    // and callgrind is how this project counts a decision's instructions).
    let id = match clock {
        Clock::Precise => libc::CLOCK_MONOTONIC,
        Clock::Coarse => libc::CLOCK_MONOTONIC_COARSE,
    };
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write; both clock ids exist on
    // every Linux since 2.6.32.
    unsafe { libc::clock_gettime(id, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

#[cfg(not(target_os = "linux"))]
fn clock_ns(_: Clock) -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
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
