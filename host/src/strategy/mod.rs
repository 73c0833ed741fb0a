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
//!   negative index, no candidates) is answered by the native fallback
//!   instead, counted per reason and logged, with wasmtime's message, at most
//!   once a second per reason.
//! * Loading ([`Strategy::replace`], the file watcher in [`reload`]) compiles
//!   and validates off the request path, then swaps atomically; decisions in
//!   flight finish on the old generation, which is freed with its last user.
//!
//! Files: `abi.rs` is the only code that touches guest memory; `engine.rs`
//! compiles and validates; `generation.rs` holds one loaded module and its
//! instance pool; `state.rs` what each store carries; `table.rs` the
//! candidate table an instance keeps between decisions; `fallback.rs` the
//! native decision; `error.rs` the reasons and load errors.

mod abi;
mod audit;
mod engine;
pub(crate) mod engine_config;
mod error;
mod fallback;
mod generation;
mod log;
pub mod reload;
mod source;
mod state;
mod table;
#[cfg(feature = "wasi")]
mod wasi;

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};

pub use abi::Interface;
pub use audit::Audit;
pub use engine::{
    Artifact, BuiltinModule, Floor, StrategyEngine, builtin_names, check_header_names,
    sample_backends, sample_candidates, sample_request,
};
pub use engine_config::Metering;
pub use error::{CallError, FallbackReason, LoadError, part_names};
pub use fallback::FallbackPolicy;
pub use generation::Generation;
pub use source::{StrategySource, StrategySpec};
pub use switchyard_guest::{
    CandidateStats, FLAG_DRAINING, FLAG_HEALTHY, Meta, Protocol, RequestHead,
};
pub use table::CandidateSource;

use crate::metrics::{Counter, Histogram};
use generation::{CIRCUIT_FAILURES, CIRCUIT_OPEN_MS};
use log::RateLimit;

/// Default fuel per decision. The heaviest built-in (resource-aware) uses
/// about 17,000 at 64 candidates (`switchyard strategy check`), so about
/// 70,000 at 256: this leaves ample room for custom strategies while bounding
/// a runaway one at well under a millisecond (`loop {}` burns ~0.5 ns per
/// unit here).
pub const DEFAULT_FUEL: u64 = 500_000;

/// Default cap on a strategy's linear memory, MiB: 256 times what a built-in
/// uses, and small enough that a pool of instances stays cheap.
pub const DEFAULT_MEMORY_MIB: usize = 16;

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

impl Default for StrategyOptions {
    fn default() -> Self {
        StrategyOptions {
            fuel: DEFAULT_FUEL,
            init_fuel: 50_000_000,
            max_memory: DEFAULT_MEMORY_MIB << 20,
            fallback: FallbackPolicy::default(),
            metering: Metering::Fuel,
            pool_size: 0,
        }
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

/// One decision as the module made it: see [`Strategy::trial`].
#[derive(Debug, Clone)]
pub struct Trial {
    /// What `switchyard_decide` returned, or why it returned nothing.
    pub answer: Result<i32, CallError>,
    /// Fuel the call took (fuel metering only).
    pub fuel: Option<u64>,
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
    /// Where the compiled code came from.
    pub artifact: Artifact,
    /// Time to compile or deserialize, microseconds.
    pub compile_us: u64,
    /// Time for instantiation, init and dry runs, microseconds.
    pub validate_us: u64,
    /// The parts of the input it reads (`READS_*`), as it declared them.
    pub reads: u32,
    /// The header names it listed in `switchyard_headers`, lower-case and
    /// comma-separated, if it listed them: only those headers are written.
    pub header_names: Option<String>,
    /// sha256 of the module's bytes (the `.wasm`, `.wat` or `.cwasm` as
    /// given; a built-in's embedded `.wasm`), hex.
    pub sha256: String,
}

impl LoadReport {
    /// The parts it reads as docs/abi.md names them, with the header names
    /// after `headers` when it listed them: `candidates, request, headers
    /// (x-user-id)`.
    pub fn reads_text(&self) -> String {
        let parts = part_names(self.reads);
        match &self.header_names {
            Some(names) if self.reads & switchyard_guest::READS_HEADERS != 0 => {
                let names = if names.is_empty() {
                    "none listed".into()
                } else {
                    names.replace(',', ", ")
                };
                parts.replacen("headers", &format!("headers ({names})"), 1)
            }
            _ => parts,
        }
    }
}

impl LoadReport {
    /// The input the module is sent for `req` and `candidates`, whole: the
    /// parts it reads and, if it listed them, only its headers.
    pub fn input_for(
        &self,
        req: &RequestHead<'_>,
        candidates: &[CandidateStats],
        meta: &Meta,
    ) -> Vec<u8> {
        use switchyard_guest::encode::{as_declared, encode_parts, encoded_len};
        let names = self.header_names.as_deref().map(str::as_bytes);
        as_declared(req, self.reads, names, |req, parts| {
            let mut buf = vec![0u8; encoded_len(req, candidates.len())];
            encode_parts(&mut buf, meta, req, candidates, parts);
            buf
        })
    }
}

/// Counters that outlive generations.
struct Counters {
    wasm: Counter,
    fallbacks: [AtomicU64; FallbackReason::ALL.len()],
    log_limits: [RateLimit; FallbackReason::ALL.len()],
    swaps: AtomicU64,
    rejections: AtomicU64,
    /// Decision time, one decision in [`LATENCY_SAMPLE`] per thread.
    latency: Histogram,
    /// The latest swaps and rejections, oldest first.
    recent: Mutex<VecDeque<SwapEvent>>,
}

/// Every this-many decisions a thread times one: two clock reads cost
/// about a sixth of a small decision, an average over 1 in 16 nothing.
const LATENCY_SAMPLE: u32 = 16;

/// Swaps and rejections kept for the status page.
const RECENT_SWAPS: usize = 20;

/// A module swapped in or refused.
#[derive(Debug, Clone)]
pub struct SwapEvent {
    /// When.
    pub at: SystemTime,
    /// The module's name.
    pub name: String,
    /// Its sha256 (empty when it could not be read).
    pub sha256: String,
    /// Why it was refused; `None`: swapped in.
    pub error: Option<String>,
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
    /// sha256 of the current module's bytes, hex.
    pub sha256: String,
    /// When the current module was swapped in (or loaded at start).
    pub loaded_at: SystemTime,
    /// Modules swapped in since start.
    pub swaps: u64,
    /// Modules refused since start.
    pub rejections: u64,
    /// Decision time, sampled.
    pub latency: crate::metrics::HistogramSnapshot,
    /// The latest swaps and rejections, oldest first.
    pub recent: Vec<SwapEvent>,
    /// The shadow module, if one is set.
    pub shadow: Option<ShadowStatus>,
}

/// The hot-swappable strategy the balancer asks for every decision.
pub struct Strategy {
    engine: Arc<StrategyEngine>,
    current: ArcSwap<Generation>,
    counters: Counters,
    next_id: AtomicU64,
    /// A second module run on the same inputs after each decision, to be
    /// judged on live traffic; it never routes.
    shadow: ArcSwapOption<Shadow>,
    /// Whether `shadow` is set: one relaxed load on the request path
    /// instead of an `ArcSwap` guard when there is none.
    has_shadow: AtomicBool,
}

/// `text` cut to at most `max` bytes (at a character boundary), with the
/// length left out said, and control characters but newlines and tabs
/// shown as `?`: a rejected upload's parse error can quote a whole line of
/// the upload, binary or not.
pub fn shorten(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out: String = text[..end]
        .chars()
        .map(|c| match c {
            '\n' | '\t' => c,
            c if c.is_control() => '?',
            c => c,
        })
        .collect();
    if end < text.len() {
        out.push_str(&format!("... ({} more bytes)", text.len() - end));
    }
    out
}

/// A module loaded and validated, not yet serving: see
/// [`Strategy::prepare`].
pub struct Prepared(Generation);

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Prepared").field(&self.0.name).finish()
    }
}

/// A shadow module and how often it agreed.
struct Shadow {
    generation: Generation,
    budget: u64,
    agreed: Counter,
    disagreed: Counter,
    failed: Counter,
    latency: Histogram,
}

/// What the shadow module did, for the status API and metrics.
#[derive(Debug, Clone)]
pub struct ShadowStatus {
    /// Its name.
    pub name: String,
    /// sha256 of its bytes, hex.
    pub sha256: String,
    /// Its fuel budget per decision.
    pub fuel: u64,
    /// Decisions where it answered the index the real decision used.
    pub agreed: u64,
    /// Decisions where it answered another index, or no opinion.
    pub disagreed: u64,
    /// Decisions where it trapped, ran out of fuel or answered out of range.
    pub failed: u64,
    /// Time of each of its decisions.
    pub latency: crate::metrics::HistogramSnapshot,
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
                wasm: Counter::new(),
                fallbacks: Default::default(),
                log_limits: std::array::from_fn(|_| RateLimit::new(1)),
                swaps: AtomicU64::new(0),
                rejections: AtomicU64::new(0),
                latency: Histogram::new(&crate::metrics::DECISION_BOUNDS_NS),
                recent: Mutex::new(VecDeque::new()),
            },
            next_id: AtomicU64::new(2),
            shadow: ArcSwapOption::empty(),
            has_shadow: AtomicBool::new(false),
        })
    }

    /// Loads and validates `spec` as the shadow module (replacing any), or
    /// removes the shadow with `None`. `fuel`: its own budget per decision
    /// (0: the same as the real one's). Blocking, like [`Strategy::replace`].
    pub fn set_shadow(
        &self,
        spec: Option<&StrategySpec>,
        fuel: u64,
    ) -> Result<Option<LoadReport>, LoadError> {
        let Some(spec) = spec else {
            self.has_shadow.store(false, Ordering::Relaxed);
            self.shadow.store(None);
            tracing::info!("shadow strategy removed");
            return Ok(None);
        };
        let generation = self.engine.prepare(spec)?;
        let report = generation.report.clone();
        self.set_shadow_generation(generation, fuel);
        Ok(Some(report))
    }

    fn set_shadow_generation(&self, generation: Generation, fuel: u64) {
        let budget = match (fuel, self.engine.options().metering) {
            (0, _) | (_, Metering::Epoch) => self.engine.budget(),
            (f, Metering::Fuel) => f,
        };
        let report = generation.report.clone();
        tracing::info!(shadow = %report.name, fuel = budget, "shadow strategy set");
        self.shadow.store(Some(Arc::new(Shadow {
            generation,
            budget,
            agreed: Counter::new(),
            disagreed: Counter::new(),
            failed: Counter::new(),
            latency: Histogram::new(&crate::metrics::DECISION_BOUNDS_NS),
        })));
        self.has_shadow.store(true, Ordering::Relaxed);
    }

    /// The shadow module's counts, if one is set.
    pub fn shadow_status(&self) -> Option<ShadowStatus> {
        let guard = self.shadow.load();
        let sh = guard.as_ref()?;
        Some(ShadowStatus {
            name: sh.generation.name.clone(),
            sha256: sh.generation.report.sha256.clone(),
            fuel: sh.budget,
            agreed: sh.agreed.get(),
            disagreed: sh.disagreed.get(),
            failed: sh.failed.get(),
            latency: sh.latency.snapshot(),
        })
    }

    /// Runs the shadow on the inputs of the decision just made, which
    /// chose `chosen`, and counts whether it agreed.
    #[cold]
    fn run_shadow<S: CandidateSource + ?Sized>(
        &self,
        meta: &Meta,
        req: &RequestHead<'_>,
        candidates: &S,
        chosen: Option<usize>,
    ) {
        let guard = self.shadow.load();
        let Some(sh) = guard.as_ref() else { return };
        let g = &sh.generation;
        // Its own turn number when it reads one, so a round-robin shadow
        // turns as it would serving.
        let meta = Meta {
            sequence: if g.report.reads & switchyard_guest::READS_SEQUENCE != 0 {
                g.sequence.fetch_add(1, Ordering::Relaxed)
            } else {
                meta.sequence
            },
            ..*meta
        };
        let started = std::time::Instant::now();
        let answer = g.with_slot(
            self.engine.options(),
            sh.budget,
            self.engine.init_budget(),
            |slot| slot.decide(&meta, req, candidates, sh.budget),
        );
        sh.latency.observe(started.elapsed());
        match answer {
            Ok(i) if i >= 0 && (i as usize) < candidates.len() => {
                if Some(i as usize) == chosen {
                    sh.agreed.inc();
                } else {
                    sh.disagreed.inc();
                }
            }
            Ok(i) if i < 0 => sh.disagreed.inc(),
            _ => sh.failed.inc(),
        }
    }

    /// Loads and validates `spec` without swapping it in (blocking), for
    /// [`Strategy::install`]: a configuration reload validates everything
    /// before it applies anything.
    pub fn prepare(&self, spec: &StrategySpec) -> Result<Prepared, LoadError> {
        self.engine.prepare(spec).map(Prepared)
    }

    /// Swaps in a module [`Strategy::prepare`] validated.
    pub fn install(&self, prepared: Prepared) -> LoadReport {
        self.swap_in(prepared.0)
    }

    /// Makes a module [`Strategy::prepare`] validated the shadow, with its
    /// own `fuel` budget (0: the real one's).
    pub fn install_shadow(&self, prepared: Prepared, fuel: u64) {
        self.set_shadow_generation(prepared.0, fuel);
    }

    /// Loads, validates and swaps in a new module; blocking, so call it from
    /// `spawn_blocking` or a plain thread. On error the current one keeps
    /// serving.
    pub fn replace(&self, spec: &StrategySpec) -> Result<LoadReport, LoadError> {
        self.replace_checked(spec, false).map(|(r, _)| r)
    }

    /// [`Strategy::replace`], with `strategy check`'s audit first when
    /// `audit` (varied inputs, a later-v1 layout, 10,000 decisions with
    /// memory watched): what the admin API does with an uploaded module.
    pub fn replace_checked(
        &self,
        spec: &StrategySpec,
        audit: bool,
    ) -> Result<(LoadReport, Option<Audit>), LoadError> {
        let checked = self.engine.prepare(spec).and_then(|g| match audit {
            true => self.engine.audit_generation(&g).map(|a| (g, Some(a))),
            false => Ok((g, None)),
        });
        let (generation, audited) = match checked {
            Ok(g) => g,
            Err(e) => {
                self.counters.rejections.fetch_add(1, Ordering::Relaxed);
                self.record(SwapEvent {
                    at: SystemTime::now(),
                    name: spec.source.to_string(),
                    sha256: spec.source.sha256().unwrap_or_default(),
                    error: Some(shorten(&e.to_string(), 2048)),
                });
                return Err(e);
            }
        };
        Ok((self.swap_in(generation), audited))
    }

    fn swap_in(&self, mut generation: Generation) -> LoadReport {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        generation.id = id;
        let report = generation.report.clone();
        let old = self.current.swap(Arc::new(generation));
        self.counters.swaps.fetch_add(1, Ordering::Relaxed);
        self.record(SwapEvent {
            at: SystemTime::now(),
            name: report.name.clone(),
            sha256: report.sha256.clone(),
            error: None,
        });
        tracing::info!(
            strategy = %report.name,
            generation = id,
            previous = %old.name,
            "strategy swapped in"
        );
        report
    }

    fn record(&self, event: SwapEvent) {
        let mut recent = self
            .counters
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT_SWAPS {
            recent.pop_front();
        }
        recent.push_back(event);
    }

    /// The module and configuration now serving.
    pub fn spec(&self) -> StrategySpec {
        self.current.load().spec.clone()
    }

    /// The engine this strategy runs on.
    pub fn engine(&self) -> &Arc<StrategyEngine> {
        &self.engine
    }

    /// Fuel one decision of `req` over `candidates` takes, with the input
    /// the module declared it reads (fuel metering only; for
    /// `strategy bench`).
    pub fn fuel_for(&self, req: &RequestHead<'_>, candidates: &[CandidateStats]) -> Option<u64> {
        self.trial(&Meta::default(), req, candidates).fuel
    }

    /// The module's own answer to one decision, unchecked and with no
    /// fallback, and the fuel it took: what `strategy test` compares with
    /// a case's expectation. Counters are not touched.
    pub fn trial(
        &self,
        meta: &Meta,
        req: &RequestHead<'_>,
        candidates: &[CandidateStats],
    ) -> Trial {
        let generation = self.current.load();
        if let Some(kind) = generation.native {
            let i = fallback::native(
                kind,
                &generation.spec.config,
                generation.report.reads,
                req,
                candidates,
                meta,
            );
            return Trial {
                answer: Ok(i.map_or(-1, |i| i as i32)),
                fuel: None,
            };
        }
        let (budget, init_budget) = (self.engine.budget(), self.engine.init_budget());
        let mut fuel = None;
        let answer = generation.with_slot(self.engine.options(), budget, init_budget, |slot| {
            let r = slot.decide(meta, req, candidates, budget);
            fuel = slot.fuel_left().map(|left| budget - left);
            r
        });
        Trial { answer, fuel }
    }

    /// Chooses a backend for `req` among `candidates` (the balancer's
    /// backend list, or a slice of stats). Never fails and never blocks
    /// longer than one fuel budget.
    pub fn decide<S: CandidateSource + ?Sized>(
        &self,
        req: &RequestHead<'_>,
        candidates: &S,
    ) -> Decision {
        thread_local! {
            static TICK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
        let timed = TICK.with(|t| {
            let n = t.get().wrapping_add(1);
            t.set(n);
            n % LATENCY_SAMPLE == 0
        });
        let mut meta = None;
        let decision = if !timed {
            self.decide_now(req, candidates, &mut meta)
        } else {
            let started = std::time::Instant::now();
            let decision = self.decide_now(req, candidates, &mut meta);
            self.counters.latency.observe(started.elapsed());
            decision
        };
        if self.has_shadow.load(Ordering::Relaxed)
            && let Some(meta) = meta
        {
            self.run_shadow(&meta, req, candidates, decision.index);
        }
        decision
    }

    #[inline]
    fn decide_now<S: CandidateSource + ?Sized>(
        &self,
        req: &RequestHead<'_>,
        candidates: &S,
        meta_out: &mut Option<Meta>,
    ) -> Decision {
        let now_ms = crate::clock::now_ms();
        if candidates.is_empty() {
            return self.fall_back(FallbackReason::NoCandidates.into(), req, candidates, 0);
        }
        // Whether any candidate is usable is asked only when the answer is
        // not one (below): asking first cost a walk over every backend's
        // state on every decision, to find what the strategy finds anyway.
        // So with every backend down the module still runs; a well-made one
        // answers -1 at once, and one that fails is counted as failing (and
        // its circuit opens) as at any other time.
        let none_usable = || !(0..candidates.len()).any(|i| candidates.usable(i));
        let generation = self.current.load();
        if generation.open_until_ms.load(Ordering::Relaxed) > now_ms {
            let reason = if none_usable() {
                FallbackReason::NoHealthy
            } else {
                FallbackReason::CircuitOpen
            };
            return self.fall_back(reason.into(), req, candidates, 0);
        }
        // The shared sequence is a cache line every deciding thread
        // writes: only strategies that read it pay for it.
        let sequence = if generation.report.reads & switchyard_guest::READS_SEQUENCE != 0 {
            generation.sequence.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        let meta = Meta {
            sequence,
            random: crate::clock::random_u64(),
            now_ms,
        };
        *meta_out = Some(meta);
        let (budget, init_budget) = (self.engine.budget(), self.engine.init_budget());
        let result = match generation.native {
            Some(kind) => table::with_stats(candidates, now_ms, |stats| {
                fallback::native(
                    kind,
                    &generation.spec.config,
                    generation.report.reads,
                    req,
                    stats,
                    &meta,
                )
            })
            .map_or(Ok(-1), |i| Ok(i as i32)),
            None => generation.with_slot(self.engine.options(), budget, init_budget, |slot| {
                slot.decide(&meta, req, candidates, budget)
            }),
        };
        let n = candidates.len();
        let error = match result {
            Ok(i)
                if i >= 0
                    && (i as usize) < n
                    && !req.failed.contains(&(i as u32))
                    && candidates.usable(i as usize) =>
            {
                // Load first: an unconditional store would bounce this cache
                // line between cores on every decision.
                if generation.consecutive_failures.load(Ordering::Relaxed) != 0 {
                    generation.consecutive_failures.store(0, Ordering::Relaxed);
                }
                self.counters.wasm.add(1);
                return Decision {
                    index: Some(i as usize),
                    fallback: None,
                };
            }
            Err(e) => e,
            // Not the module's fault: there was nothing to pick. No shadow
            // comparison either, as before the module ran in this case.
            _ if none_usable() => {
                *meta_out = None;
                return self.fall_back(
                    FallbackReason::NoHealthy.into(),
                    req,
                    candidates,
                    meta.sequence,
                );
            }
            Ok(i) if i < 0 => FallbackReason::NoOpinion.into(),
            Ok(i) if (i as usize) < n && !candidates.usable(i as usize) => CallError {
                reason: FallbackReason::Ineligible,
                message: Some(format!("picked candidate {i}, which takes no new work").into()),
            },
            Ok(i) => CallError {
                reason: FallbackReason::BadIndex,
                message: Some(format!("returned {i} for {n} candidates").into()),
            },
        };
        if error.reason.is_failure() {
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
        self.fall_back(error, req, candidates, meta.sequence)
    }

    fn fall_back<S: CandidateSource + ?Sized>(
        &self,
        error: CallError,
        req: &RequestHead<'_>,
        candidates: &S,
        sequence: u64,
    ) -> Decision {
        let reason = error.reason;
        let k = reason.index();
        self.counters.fallbacks[k].fetch_add(1, Ordering::Relaxed);
        if reason != FallbackReason::NoCandidates
            && let Some(suppressed) = self.counters.log_limits[k].allow()
        {
            let name = &self.current.load().name;
            tracing::warn!(
                strategy = %name,
                reason = reason.as_str(),
                error = error.message.as_deref().unwrap_or(""),
                suppressed,
                "strategy fell back to the native decision"
            );
        }
        // The native decision takes its turn from the shared sequence even
        // when the module does not read it (fallbacks are rare).
        let sequence = match sequence {
            0 => self.current.load().sequence.fetch_add(1, Ordering::Relaxed),
            s => s,
        };
        let meta = Meta {
            sequence,
            random: crate::clock::random_u64(),
            now_ms: crate::clock::now_ms(),
        };
        let policy = self.engine.options().fallback;
        Decision {
            index: table::with_stats(candidates, meta.now_ms, |stats| {
                fallback::decide(policy, req, stats, &meta)
            }),
            fallback: Some(reason),
        }
    }

    /// Counters and the current module's report.
    pub fn status(&self) -> StrategyStatus {
        let generation = self.current.load();
        let now_ms = crate::clock::now_ms();
        StrategyStatus {
            name: generation.name.clone(),
            generation: generation.id,
            wasm_decisions: self.counters.wasm.get(),
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
            sha256: generation.report.sha256.clone(),
            loaded_at: generation.loaded_at,
            report: generation.report.clone(),
            swaps: self.counters.swaps.load(Ordering::Relaxed),
            rejections: self.counters.rejections.load(Ordering::Relaxed),
            latency: self.counters.latency.snapshot(),
            recent: self
                .counters
                .recent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect(),
            shadow: self.shadow_status(),
        }
    }
}
