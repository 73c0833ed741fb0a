//! What can go wrong with a strategy: why a decision was not the module's own
//! ([`FallbackReason`], [`CallError`]), and why a module was refused
//! ([`LoadError`]). wasmtime's errors are kept whole, so a message always
//! carries its full chain (`{:#}`) and callers can still downcast to a
//! [`wasmtime::Trap`].

use std::fmt;
use std::path::PathBuf;

/// Why a decision was not the module's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    /// No candidates at all.
    NoCandidates,
    /// No candidate was healthy (the fallback then tries unhealthy ones).
    NoHealthy,
    /// The module trapped.
    Trap,
    /// The module ran out of fuel (or past its epoch deadline).
    OutOfFuel,
    /// The module trapped after its memory hit the cap.
    MemoryCap,
    /// The module returned an index outside the candidate list, or one that
    /// already failed for this request.
    BadIndex,
    /// The module returned a negative value: no opinion.
    NoOpinion,
    /// The module's input buffer was missing or too small.
    BadBuffer,
    /// The request head and candidate list exceed the host's input cap.
    InputTooLarge,
    /// A fresh instance could not be created.
    Instantiate,
    /// The module failed so often that it is skipped for a second.
    CircuitOpen,
    /// The module picked a candidate that takes no new work (draining,
    /// down or unhealthy, weight 0) while another one does: operators'
    /// drains and health checks hold whatever a module answers.
    Ineligible,
}

impl FallbackReason {
    /// Every reason, in counter order.
    pub const ALL: [FallbackReason; 12] = [
        FallbackReason::NoCandidates,
        FallbackReason::NoHealthy,
        FallbackReason::Trap,
        FallbackReason::OutOfFuel,
        FallbackReason::MemoryCap,
        FallbackReason::BadIndex,
        FallbackReason::NoOpinion,
        FallbackReason::BadBuffer,
        FallbackReason::InputTooLarge,
        FallbackReason::Instantiate,
        FallbackReason::CircuitOpen,
        FallbackReason::Ineligible,
    ];

    /// Stable snake_case name, used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::NoCandidates => "no_candidates",
            FallbackReason::NoHealthy => "no_healthy",
            FallbackReason::Trap => "trap",
            FallbackReason::OutOfFuel => "out_of_fuel",
            FallbackReason::MemoryCap => "memory_cap",
            FallbackReason::BadIndex => "bad_index",
            FallbackReason::NoOpinion => "no_opinion",
            FallbackReason::BadBuffer => "bad_buffer",
            FallbackReason::InputTooLarge => "input_too_large",
            FallbackReason::Instantiate => "instantiate",
            FallbackReason::CircuitOpen => "circuit_open",
            FallbackReason::Ineligible => "ineligible",
        }
    }

    /// True if the module misbehaved (as opposed to having nothing to choose
    /// from, or no opinion).
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            FallbackReason::NoCandidates
                | FallbackReason::NoHealthy
                | FallbackReason::NoOpinion
                | FallbackReason::Ineligible
        )
    }

    /// Position in [`FallbackReason::ALL`], for counter arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A guest call that did not produce an answer: the reason, and what
/// wasmtime said (the trap message), when it said anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// Why, as counted.
    pub reason: FallbackReason,
    /// wasmtime's message with its chain, for the log.
    pub message: Option<Box<str>>,
}

impl From<FallbackReason> for CallError {
    fn from(reason: FallbackReason) -> Self {
        CallError {
            reason,
            message: None,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(m) => write!(f, "{}: {m}", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

/// Why a module was refused. Each variant that wraps a wasmtime error prints
/// its whole chain.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {error}", path = .0.display(), error = .1)]
    Read(PathBuf, std::io::Error),
    /// No built-in of that name.
    #[error("unknown built-in strategy `{0}`; `switchyard strategy list` shows them")]
    UnknownBuiltin(String),
    /// Not valid WebAssembly (or WAT).
    #[error("not a valid WebAssembly module: {0:#}")]
    Compile(wasmtime::Error),
    /// A `.cwasm` that this engine cannot run.
    #[error(
        "{path} is a precompiled module this switchyard cannot use: it must be made by the same switchyard version with the same engine settings (metering); rebuild it with `switchyard strategy compile`, or load the .wasm: {error:#}",
        path = .path.display()
    )]
    Precompiled {
        /// The file.
        path: PathBuf,
        /// What wasmtime said.
        error: wasmtime::Error,
    },
    /// An ABI v1 export is missing.
    #[error(
        "missing export `{0}`: ABI v1 needs `memory`, `switchyard_abi_version`, `switchyard_input` and `switchyard_decide`"
    )]
    MissingExport(String),
    /// An export has the wrong type.
    #[error("bad export: {0}")]
    BadExport(String),
    /// An import outside the allow-list.
    #[error(
        "forbidden import `{0}`: a strategy may import only switchyard.log, switchyard.clock_ns, switchyard.random_u64, env.abort (AssemblyScript's) and wasi_snapshot_preview1.*"
    )]
    ForbiddenImport(String),
    /// `switchyard_abi_version` returned something other than 1.
    #[error("wrong ABI version {0}: this host speaks ABI version 1")]
    AbiVersion(i32),
    /// Instantiation failed (for example an initial memory over the cap).
    #[error("instantiation failed: {0:#}")]
    Instantiate(wasmtime::Error),
    /// A call during loading failed.
    #[error("`{0}` failed ({1}): {2:#}")]
    Trapped(&'static str, FallbackReason, wasmtime::Error),
    /// `switchyard_init` returned non-zero.
    #[error(
        "`switchyard_init` rejected the configuration with code {0}{why}",
        why = .1.as_deref().map(|w| format!(": {w}")).unwrap_or_default()
    )]
    InitRejected(i32, Option<String>),
    /// Configuration problem.
    #[error("init: {0}")]
    Init(String),
    /// The dry run did not produce a valid index.
    #[error("dry run with {candidates} candidates: {reason}")]
    DryRun {
        /// Candidate count of the failing dry run.
        candidates: usize,
        /// What went wrong.
        reason: String,
    },
    /// The module's answers depend on parts of the input it did not
    /// declare in `switchyard_reads`.
    #[error(
        "`switchyard_reads` leaves out {parts}, but the answers change with {it}: declare {it} (or drop `switchyard_reads` to get everything)",
        it = if .parts.contains(", ") { "them" } else { "it" }
    )]
    UndeclaredRead {
        /// The parts, named as in docs/abi.md.
        parts: String,
    },
    /// The module's answers depend on headers its `switchyard_headers`
    /// list leaves out.
    #[error(
        "`switchyard_headers` lists {listed}, but the answers change with {seen}: list every header the strategy reads (or drop `switchyard_headers` to get them all)"
    )]
    UnlistedHeader {
        /// The names it listed.
        listed: String,
        /// The headers left out that change answers.
        seen: String,
    },
    /// `strategy check`'s audit found the module wrong (see `audit.rs`).
    #[error("{0}")]
    Audit(String),
    /// The engine itself could not be set up.
    #[error("{0}: {1:#}")]
    Engine(&'static str, wasmtime::Error),
}

/// The names of the `READS_*` bits in `parts`, as docs/abi.md names them.
pub fn part_names(parts: u32) -> String {
    use switchyard_guest::layout::*;
    let names: Vec<&str> = [
        (READS_CANDIDATES, "candidates"),
        (READS_REQUEST, "request"),
        (READS_TARGET, "target"),
        (READS_HEADERS, "headers"),
        (READS_TLS, "tls"),
        (READS_SEQUENCE, "sequence"),
    ]
    .iter()
    .filter(|(bit, _)| parts & bit != 0)
    .map(|(_, name)| *name)
    .collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_are_unique_and_indexed() {
        let names: std::collections::HashSet<_> =
            FallbackReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), FallbackReason::ALL.len());
        for (i, r) in FallbackReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn load_errors_keep_the_whole_chain() {
        let inner = wasmtime::Error::msg("root cause").context("middle");
        let e = LoadError::Compile(inner);
        assert_eq!(
            e.to_string(),
            "not a valid WebAssembly module: middle: root cause"
        );
    }
}
