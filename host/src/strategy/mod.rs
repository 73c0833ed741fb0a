//! The strategy engine: every routing decision is made by a WebAssembly module.
//!
//! * [`StrategyEngine`] is built once per process: the wasmtime `Engine`, the
//!   host imports and the limits every decision runs under.
//! * A [`Strategy`] is the hot-swappable handle the balancer asks. It holds the
//!   current [`Generation`] (one loaded module, its configuration and a pool of
//!   instances) behind an `ArcSwap`, so the request path reads it with one
//!   atomic load and no lock.
//! * [`Strategy::decide`] writes the request head and candidate stats into an
//!   instance (ABI v1, `docs/abi.md`), calls it under the fuel budget and
//!   checks the answer. Anything wrong (trap, out of fuel, memory cap, bad or
//!   negative index, no candidates) is answered by a native decision instead,
//!   counted per reason and logged at most once a second per reason.
//! * Loading ([`Strategy::replace`], the file watcher in [`reload`]) compiles
//!   and validates off the request path, then swaps atomically; decisions in
//!   flight finish on the old generation, which is freed with its last user.
//!
//! Instance pool: each generation keeps `pool_size` slots (default twice the
//! cores), each a `Mutex<Option<Slot>>`. A thread starts at its own home slot
//! and takes the first whose `try_lock` succeeds, so threads never queue on one
//! lock; an uncontended `try_lock` costs about as much as the atomic increment
//! a lock-free queue would. A slot whose instance trapped is emptied and
//! instantiated again on next use: a trapped instance is never reused.

mod abi;
mod engine;
pub(crate) mod engine_config;
mod fallback;
mod log;
pub mod reload;
#[cfg(feature = "wasi")]
mod wasi;

use std::cell::Cell;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use arc_swap::ArcSwap;
use wasmtime::InstancePre;

pub use abi::Interface;
pub use engine::{BuiltinModule, StrategyEngine, builtin_names, sample_candidates, sample_request};
pub use engine_config::Metering;
pub use fallback::FallbackPolicy;
pub use switchyard_guest::{
    CandidateStats, FLAG_DRAINING, FLAG_HEALTHY, Meta, Protocol, RequestHead,
};

use abi::{HostState, Limits, Slot};
use log::{GuestLog, RateLimit};

/// The process-wide monotonic clock origin.
pub(crate) fn clock() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Milliseconds on the process-wide monotonic clock.
pub fn clock_ms() -> u64 {
    clock().elapsed().as_millis() as u64
}

/// Fast per-thread random numbers (wyrand); strategies get them in the input
/// header so they need no import to be random.
pub(crate) fn random_u64() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = clock().elapsed().as_nanos() as u64;
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

/// Limits and policies every decision runs under.
#[derive(Debug, Clone)]
pub struct StrategyOptions {
    /// Fuel per decision. Under epoch metering, `ceil(fuel / 1_000_000) + 1`
    /// ticks of 1 ms (one fuel unit is roughly a nanosecond of guest code here).
    pub fuel: u64,
    /// Fuel for instantiation and `switchyard_init`.
    pub init_fuel: u64,
    /// Cap on a guest's linear memory, bytes.
    pub max_memory: usize,
    /// What decides when the module cannot.
    pub fallback: FallbackPolicy,
    /// Fuel or epochs.
    pub metering: Metering,
    /// Instances per generation; 0 means twice the number of cores.
    pub pool_size: usize,
}

/// Default fuel per decision. The heaviest built-in (resource-aware) uses
/// about 17,000 at 64 candidates (`switchyard strategy check`), so about
/// 70,000 at 256: this leaves ample room for custom strategies while bounding
/// a runaway one at well under a millisecond (`loop {}` burns ~0.5 ns per
/// unit here).
pub const DEFAULT_FUEL: u64 = 500_000;

impl Default for StrategyOptions {
    fn default() -> Self {
        StrategyOptions {
            fuel: DEFAULT_FUEL,
            init_fuel: 50_000_000,
            max_memory: 16 << 20,
            fallback: FallbackPolicy::LeastConnections,
            metering: Metering::Fuel,
            pool_size: 0,
        }
    }
}

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
}

impl FallbackReason {
    /// Every reason, in counter order.
    pub const ALL: [FallbackReason; 11] = [
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
        }
    }

    /// True if the module misbehaved (as opposed to having nothing to choose
    /// from, or no opinion).
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            FallbackReason::NoCandidates | FallbackReason::NoHealthy | FallbackReason::NoOpinion
        )
    }

    fn index(self) -> usize {
        FallbackReason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or(0)
    }
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Chosen candidate, or `None` if there is nothing to route to.
    pub index: Option<usize>,
    /// Set when the module's answer was not used, and why.
    pub fallback: Option<FallbackReason>,
}

/// Why a module was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, String),
    /// No built-in of that name.
    #[error("unknown built-in strategy `{0}`; `switchyard strategy list` shows them")]
    UnknownBuiltin(String),
    /// Not valid WebAssembly (or WAT).
    #[error("not a valid WebAssembly module: {0}")]
    Compile(String),
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
        "forbidden import `{0}`: a strategy may import only switchyard.log, switchyard.clock_ns, switchyard.random_u64 and wasi_snapshot_preview1.*"
    )]
    ForbiddenImport(String),
    /// `switchyard_abi_version` returned something other than 1.
    #[error("wrong ABI version {0}: this host speaks ABI version 1")]
    AbiVersion(i32),
    /// Instantiation failed (for example an initial memory over the cap).
    #[error("instantiation failed: {0}")]
    Instantiate(String),
    /// A call during loading failed.
    #[error("`{0}` failed ({1}): {2}")]
    Trapped(&'static str, FallbackReason, String),
    /// `switchyard_init` returned non-zero.
    #[error("`switchyard_init` rejected the configuration with code {0}")]
    InitRejected(i32),
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
    /// Anything else.
    #[error("{0}")]
    Invalid(String),
}

/// Where a module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrategySource {
    /// `builtin:NAME`, shipped precompiled inside the binary.
    Builtin(String),
    /// A `.wasm` or `.wat` file.
    File(PathBuf),
    /// Bytes from an API call.
    Bytes {
        /// Name for logs.
        name: String,
        /// WebAssembly or WAT.
        bytes: Vec<u8>,
    },
}

impl FromStr for StrategySource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(name) = s.strip_prefix("builtin:") {
            Ok(StrategySource::Builtin(name.to_string()))
        } else if s.is_empty() {
            Err("empty strategy".into())
        } else if builtin_names().any(|n| n == s) {
            Ok(StrategySource::Builtin(s.to_string()))
        } else {
            Ok(StrategySource::File(PathBuf::from(s)))
        }
    }
}

impl fmt::Display for StrategySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrategySource::Builtin(n) => write!(f, "builtin:{n}"),
            StrategySource::File(p) => write!(f, "{}", p.display()),
            StrategySource::Bytes { name, .. } => f.write_str(name),
        }
    }
}

/// A module and its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrategySpec {
    /// The module.
    pub source: StrategySource,
    /// Bytes passed to `switchyard_init`.
    pub config: Vec<u8>,
}

impl StrategySpec {
    /// A built-in without configuration.
    pub fn builtin(name: &str) -> Self {
        StrategySpec {
            source: StrategySource::Builtin(name.into()),
            config: Vec::new(),
        }
    }
}

/// What loading a module found.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Display name.
    pub name: String,
    /// Exports and imports.
    pub interface: Interface,
    /// `(candidates, fuel used)` from the dry runs (fuel metering only).
    pub fuel_used: Vec<(usize, u64)>,
    /// True if a precompiled artifact was used (no compilation).
    pub precompiled: bool,
    /// Time to compile or deserialize, microseconds.
    pub compile_us: u64,
    /// Time for instantiation, init and dry runs, microseconds.
    pub validate_us: u64,
}

/// One loaded module: compiled code, resolved imports, configuration and its
/// instance pool. Immutable except for the pool and counters.
pub struct Generation {
    id: u64,
    name: String,
    spec: StrategySpec,
    pre: InstancePre<HostState>,
    uses_wasi: bool,
    log: GuestLog,
    report: LoadReport,
    /// Shared decision counter so round-robin is exact across instances.
    sequence: AtomicU64,
    slots: Box<[Mutex<Option<Slot>>]>,
    /// Failures in a row; resets on a good answer.
    consecutive_failures: AtomicU64,
    /// While `clock ms < open_until_ms`, the module is skipped.
    open_until_ms: AtomicU64,
}

/// Failures in a row that open the circuit for [`CIRCUIT_OPEN_MS`].
const CIRCUIT_FAILURES: u64 = 16;
/// How long a failing module is skipped before it is tried again.
const CIRCUIT_OPEN_MS: u64 = 1000;

impl Generation {
    fn new_state(&self, max_memory: usize) -> HostState {
        HostState {
            limits: Limits {
                max_memory,
                hit: false,
            },
            log: self.log.clone(),
            #[cfg(feature = "wasi")]
            wasi: self.uses_wasi.then(wasi::context),
        }
    }

    /// Runs `f` on a pooled instance (see the module doc for the pool design).
    fn with_slot(
        &self,
        opts: &StrategyOptions,
        f: impl FnOnce(&mut Slot) -> abi::CallResult,
    ) -> abi::CallResult {
        thread_local! {
            static HOME: usize = {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed)
            };
        }
        let n = self.slots.len();
        let home = HOME.with(|h| *h) % n;
        let mut guard = (0..n)
            .find_map(|k| {
                let i = if home + k >= n {
                    home + k - n
                } else {
                    home + k
                };
                match self.slots[i].try_lock() {
                    Ok(g) => Some(g),
                    Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                    Err(std::sync::TryLockError::WouldBlock) => None,
                }
            })
            // More threads than slots: wait for our own (a decision is bounded
            // by its fuel budget, so the wait is too).
            .unwrap_or_else(|| {
                self.slots[home]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
            });
        if guard.is_none() {
            let state = self.new_state(opts.max_memory);
            match Slot::new(
                &self.pre,
                state,
                &self.spec.config,
                opts.fuel,
                opts.init_fuel,
            ) {
                Ok(slot) => *guard = Some(slot),
                Err(_) => return Err(FallbackReason::Instantiate),
            }
        }
        let slot = guard.as_mut().expect("filled above");
        let result = f(slot);
        if let Err(
            FallbackReason::Trap
            | FallbackReason::OutOfFuel
            | FallbackReason::MemoryCap
            | FallbackReason::BadBuffer,
        ) = result
        {
            *guard = None;
        }
        result
    }

    /// Name (`builtin:round-robin`, a path, ...).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Counters that outlive generations.
struct Counters {
    wasm: AtomicU64,
    fallbacks: [AtomicU64; FallbackReason::ALL.len()],
    log_limits: [RateLimit; FallbackReason::ALL.len()],
}

/// A point-in-time view of a strategy, for `strategy check`, logs and admin.
#[derive(Debug, Clone)]
pub struct StrategyStatus {
    /// Current module.
    pub name: String,
    /// Generation number (1 for the first module, +1 per swap).
    pub generation: u64,
    /// Decisions answered by the module.
    pub wasm_decisions: u64,
    /// Fallbacks per reason (only non-zero ones).
    pub fallbacks: Vec<(FallbackReason, u64)>,
    /// Failing repeatedly: skipped or about to be.
    pub degraded: bool,
    /// Load report of the current module.
    pub report: LoadReport,
}

/// The hot-swappable strategy the balancer asks for every decision.
pub struct Strategy {
    engine: Arc<StrategyEngine>,
    current: ArcSwap<Generation>,
    counters: Counters,
    next_id: AtomicU64,
}

impl fmt::Debug for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Strategy")
            .field("name", &self.current.load().name)
            .finish()
    }
}

impl Strategy {
    /// Loads `spec` (blocking: compile and validate) and returns a handle.
    pub fn load(engine: Arc<StrategyEngine>, spec: &StrategySpec) -> Result<Strategy, LoadError> {
        let generation = engine.prepare(spec)?;
        Ok(Strategy {
            engine,
            current: ArcSwap::from_pointee(generation),
            counters: Counters {
                wasm: AtomicU64::new(0),
                fallbacks: Default::default(),
                log_limits: std::array::from_fn(|_| RateLimit::new(1)),
            },
            next_id: AtomicU64::new(2),
        })
    }

    /// Loads, validates and swaps in a new module; blocking, so call it from
    /// `spawn_blocking` or a plain thread. On error the current one keeps
    /// serving.
    pub fn replace(&self, spec: &StrategySpec) -> Result<LoadReport, LoadError> {
        let mut generation = self.engine.prepare(spec)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        generation.id = id;
        let report = generation.report.clone();
        let old = self.current.swap(Arc::new(generation));
        tracing::info!(
            strategy = %report.name,
            generation = id,
            previous = %old.name,
            "strategy swapped in"
        );
        Ok(report)
    }

    /// The module and configuration now serving.
    pub fn spec(&self) -> StrategySpec {
        self.current.load().spec.clone()
    }

    /// The engine this strategy runs on.
    pub fn engine(&self) -> &Arc<StrategyEngine> {
        &self.engine
    }

    /// Chooses a backend for `req` among `candidates`. Never fails and never
    /// blocks longer than one fuel budget.
    pub fn decide(&self, req: &RequestHead<'_>, candidates: &[CandidateStats]) -> Decision {
        let n = candidates.len();
        if n == 0 {
            return self.fall_back(FallbackReason::NoCandidates, req, candidates, 0);
        }
        if !candidates
            .iter()
            .any(|c| c.flags & (FLAG_HEALTHY | FLAG_DRAINING) == FLAG_HEALTHY && c.weight > 0)
        {
            return self.fall_back(FallbackReason::NoHealthy, req, candidates, 0);
        }
        let generation = self.current.load();
        let opts = self.engine.options();
        let now_ms = clock().elapsed().as_millis() as u64;
        if generation.open_until_ms.load(Ordering::Relaxed) > now_ms {
            return self.fall_back(FallbackReason::CircuitOpen, req, candidates, 0);
        }
        let meta = Meta {
            sequence: generation.sequence.fetch_add(1, Ordering::Relaxed),
            random: random_u64(),
            now_ms,
        };
        let budget = self.engine.budget();
        let result = generation.with_slot(opts, |slot| slot.decide(&meta, req, candidates, budget));
        let reason = match result {
            Ok(i) if i >= 0 && (i as usize) < n && !req.failed.contains(&(i as u32)) => {
                // Load first: an unconditional store would bounce this cache
                // line between cores on every decision.
                if generation.consecutive_failures.load(Ordering::Relaxed) != 0 {
                    generation.consecutive_failures.store(0, Ordering::Relaxed);
                }
                self.counters.wasm.fetch_add(1, Ordering::Relaxed);
                return Decision {
                    index: Some(i as usize),
                    fallback: None,
                };
            }
            Ok(i) if i < 0 => FallbackReason::NoOpinion,
            Ok(_) => FallbackReason::BadIndex,
            Err(reason) => reason,
        };
        if reason.is_failure() {
            let streak = generation
                .consecutive_failures
                .fetch_add(1, Ordering::Relaxed)
                + 1;
            if streak >= CIRCUIT_FAILURES {
                generation
                    .open_until_ms
                    .store(now_ms + CIRCUIT_OPEN_MS, Ordering::Relaxed);
                generation.consecutive_failures.store(0, Ordering::Relaxed);
            }
        }
        self.fall_back(reason, req, candidates, meta.sequence)
    }

    fn fall_back(
        &self,
        reason: FallbackReason,
        req: &RequestHead<'_>,
        candidates: &[CandidateStats],
        sequence: u64,
    ) -> Decision {
        let k = reason.index();
        self.counters.fallbacks[k].fetch_add(1, Ordering::Relaxed);
        if reason != FallbackReason::NoCandidates
            && let Some(suppressed) = self.counters.log_limits[k].allow()
        {
            let name = &self.current.load().name;
            tracing::warn!(
                strategy = %name,
                reason = reason.as_str(),
                suppressed,
                "strategy fell back to the native decision"
            );
        }
        let policy = self.engine.options().fallback;
        Decision {
            index: fallback::decide(policy, req.failed, candidates, random_u64(), sequence),
            fallback: Some(reason),
        }
    }

    /// Counters and the current module's report.
    pub fn status(&self) -> StrategyStatus {
        let generation = self.current.load();
        let now_ms = clock().elapsed().as_millis() as u64;
        StrategyStatus {
            name: generation.name.clone(),
            generation: generation.id,
            wasm_decisions: self.counters.wasm.load(Ordering::Relaxed),
            fallbacks: FallbackReason::ALL
                .iter()
                .map(|r| {
                    (
                        *r,
                        self.counters.fallbacks[r.index()].load(Ordering::Relaxed),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
            degraded: generation.open_until_ms.load(Ordering::Relaxed) > now_ms
                || generation.consecutive_failures.load(Ordering::Relaxed) >= CIRCUIT_FAILURES / 2,
            report: generation.report.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
