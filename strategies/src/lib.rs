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

/// Declares each built-in's module and the enums over all of them; called
/// once, by the file `build.rs` writes from `builtins.list`.
macro_rules! builtins {
    ($($name:literal $module:ident $ty:ident $file:literal $about:literal;)*) => {
        $(
            #[path = $file]
            pub mod $module;
        )*

        /// Every built-in strategy, in `strategy list` order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum BuiltinKind {
            $(#[doc = $about] $ty,)*
        }

        impl BuiltinKind {
            /// Every built-in, in list order.
            pub const ALL: &'static [BuiltinKind] = &[$(BuiltinKind::$ty,)*];

            /// Its name, as in `builtin:NAME`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(BuiltinKind::$ty => $name,)*
                }
            }

            /// One line on what it does.
            pub const fn about(self) -> &'static str {
                match self {
                    $(BuiltinKind::$ty => $about,)*
                }
            }

            /// A fresh instance with its default configuration.
            pub fn instantiate(self) -> Builtin {
                match self {
                    $(BuiltinKind::$ty => Builtin::$ty(<$module::$ty as Default>::default()),)*
                }
            }
        }

        /// Any built-in, run natively (the host's fallback, tests,
        /// benchmarks). Sized as its largest variant: there is no allocator
        /// to box with, and instances live in statics and thread-locals,
        /// never on a hot stack.
        #[allow(clippy::large_enum_variant)]
        pub enum Builtin {
            $(#[doc = $name] $ty($module::$ty),)*
        }

        impl Builtin {
            /// Which built-in this is.
            pub fn kind(&self) -> BuiltinKind {
                match self {
                    $(Builtin::$ty(_) => BuiltinKind::$ty,)*
                }
            }
        }

        impl Strategy for Builtin {
            fn configure(&mut self, config: &[u8]) -> Result<(), i32> {
                match self {
                    $(Builtin::$ty(s) => s.configure(config),)*
                }
            }

            fn decide(&mut self, input: &Input<'_>) -> Option<usize> {
                match self {
                    $(Builtin::$ty(s) => s.decide(input),)*
                }
            }

            fn reads(&self) -> u32 {
                match self {
                    $(Builtin::$ty(s) => s.reads(),)*
                }
            }

            fn headers(&self) -> Option<&[u8]> {
                match self {
                    $(Builtin::$ty(s) => s.headers(),)*
                }
            }
        }
    };
}

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

impl Default for Builtin {
    fn default() -> Self {
        BuiltinKind::ALL[0].instantiate()
    }
}

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
    let mut m = 0;
    input.scan_eligible_from(0, |_, _| m += 1);
    m
}

/// The `k`-th eligible candidate (0-based).
pub(crate) fn nth_eligible(input: &Input<'_>, k: usize) -> Option<usize> {
    input
        .candidates()
        .iter()
        .filter(|(i, c)| input.eligible_with(*i, c))
        .nth(k)
        .map(|(i, _)| i)
}

/// A uniform index below `n` from 32 random bits, by multiplying instead of
/// dividing (Lemire's reduction; the bias is below `n / 2^32`). A 64-bit
/// remainder is one of the slowest WebAssembly instructions, and it ran on
/// every decision.
#[inline]
pub(crate) fn below(random32: u32, n: usize) -> usize {
    ((random32 as u64 * n as u64) >> 32) as usize
}

/// `a/wa < b/wb` without division.
#[inline]
pub(crate) fn lighter(a: u32, wa: u32, b: u32, wb: u32) -> bool {
    (a as u64) * (wb as u64) < (b as u64) * (wa as u64)
}

/// The eligible candidate at or after `from`, wrapping.
pub(crate) fn eligible_from(input: &Input<'_>, from: usize, skip: Option<usize>) -> Option<usize> {
    let n = input.candidates().len();
    // `from < n`: wrap by a compare, not a remainder per step.
    debug_assert!(from < n, "eligible_from({from}) over {n} candidates");
    (0..n)
        .map(|k| if from + k < n { from + k } else { from + k - n })
        .find(|&i| Some(i) != skip && input.eligible(i))
}

#[cfg(test)]
mod tests;
