//! Switchyard's built-in routing strategies.
//!
//! Each is a plain [`Strategy`] written with the guest SDK, in its own file,
//! and listed once in `builtins.list`. From that list the build scripts make
//! [`Builtin`] (any of them, run natively: the host's fallback, the tests and
//! the benchmarks) and one WebAssembly module per strategy, which the host
//! embeds precompiled.
//!
//! Every strategy skips candidates that are unhealthy, draining, weighted to 0
//! or already failed for this request ([`Input::eligible`]), and answers
//! `None` when nothing is eligible so the host's fallback decides.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

use switchyard_guest::{Input, Strategy};

mod config;

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// Name and one-line description of every built-in, in `strategy list` order.
pub const BUILTINS: &[(&str, &str)] = &{
    let mut out = [("", ""); BuiltinKind::ALL.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = (BuiltinKind::ALL[i].name(), BuiltinKind::ALL[i].about());
        i += 1;
    }
    out
};

impl BuiltinKind {
    /// The built-in called `name` (without the `builtin:` prefix).
    pub fn from_name(name: &str) -> Option<BuiltinKind> {
        BuiltinKind::ALL.iter().copied().find(|k| k.name() == name)
    }
}

/// Number of eligible candidates.
pub(crate) fn eligible_count(input: &Input<'_>) -> usize {
    (0..input.candidates().len())
        .filter(|&i| input.eligible(i))
        .count()
}

/// The `k`-th eligible candidate (0-based).
pub(crate) fn nth_eligible(input: &Input<'_>, k: usize) -> Option<usize> {
    (0..input.candidates().len())
        .filter(|&i| input.eligible(i))
        .nth(k)
}

/// `a/wa < b/wb` without division.
#[inline]
pub(crate) fn lighter(a: u32, wa: u32, b: u32, wb: u32) -> bool {
    (a as u64) * (wb as u64) < (b as u64) * (wa as u64)
}

/// The eligible candidate at or after `from`, wrapping.
pub(crate) fn eligible_from(input: &Input<'_>, from: usize, skip: Option<usize>) -> Option<usize> {
    let n = input.candidates().len();
    (0..n)
        .map(|k| (from + k) % n)
        .find(|&i| Some(i) != skip && input.eligible(i))
}

#[cfg(test)]
mod tests;
