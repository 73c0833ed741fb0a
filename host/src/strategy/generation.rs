//! One loaded module: compiled code with its imports resolved, its
//! configuration, and a pool of instances ready to decide.
//!
//! Instance pool: each generation keeps `pool_size` slots (default twice the
//! cores), each a `Mutex<Option<Slot>>`. A thread starts at its own home slot
//! and takes the first whose `try_lock` succeeds, so threads never queue on one
//! lock; an uncontended `try_lock` costs about as much as the atomic increment
//! a lock-free queue would. A slot whose instance trapped is emptied and
//! instantiated again on next use: a trapped instance is never reused.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use wasmtime::InstancePre;

use super::abi::{CallResult, Slot};
use super::error::{CallError, FallbackReason};
use super::log::GuestLog;
use super::state::HostState;
use super::{LoadReport, StrategyOptions, StrategySpec};

/// Failures in a row that open the circuit for [`CIRCUIT_OPEN_MS`].
pub(crate) const CIRCUIT_FAILURES: u64 = 16;
/// How long a failing module is skipped before it is tried again.
pub(crate) const CIRCUIT_OPEN_MS: u64 = 1000;

/// One pool slot on cache lines of its own. Unpadded, neighbouring slots
/// (about 100 bytes each) shared lines, so two threads deciding at once on
/// their own slots still bounced a line between cores on every lock and
/// unlock (128: two lines, for the adjacent-line prefetcher).
#[repr(align(128))]
struct PaddedSlot(Mutex<Option<Slot>>);

/// One loaded module. Immutable except for the pool and counters.
pub struct Generation {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) spec: StrategySpec,
    pre: InstancePre<HostState>,
    uses_wasi: bool,
    log: GuestLog,
    pub(crate) report: LoadReport,
    /// Shared decision counter so round-robin is exact across instances.
    pub(crate) sequence: AtomicU64,
    slots: Box<[PaddedSlot]>,
    /// Failures in a row; resets on a good answer.
    pub(crate) consecutive_failures: AtomicU64,
    /// While the clock (ms) is below this, the module is skipped.
    pub(crate) open_until_ms: AtomicU64,
    /// `native:NAME`: decide with this built-in natively.
    pub(crate) native: Option<switchyard_strategies::BuiltinKind>,
    /// When it was made (loaded and validated).
    pub(crate) loaded_at: std::time::SystemTime,
}

impl Generation {
    /// A generation around a validated module, with an empty pool of
    /// `pool_size` slots (instances are made on first use).
    pub(crate) fn new(
        spec: StrategySpec,
        pre: InstancePre<HostState>,
        uses_wasi: bool,
        log: GuestLog,
        report: LoadReport,
        pool_size: usize,
    ) -> Generation {
        Generation {
            id: 1,
            name: report.name.clone(),
            spec,
            pre,
            uses_wasi,
            log,
            report,
            sequence: AtomicU64::new(0),
            slots: (0..pool_size.max(1))
                .map(|_| PaddedSlot(Mutex::new(None)))
                .collect(),
            consecutive_failures: AtomicU64::new(0),
            open_until_ms: AtomicU64::new(0),
            native: None,
            loaded_at: std::time::SystemTime::now(),
        }
    }

    /// Runs `f` on a pooled instance (see the module doc for the pool design).
    pub(crate) fn with_slot(
        &self,
        opts: &StrategyOptions,
        budget: u64,
        init_budget: u64,
        f: impl FnOnce(&mut Slot) -> CallResult,
    ) -> CallResult {
        thread_local! {
            static HOME: usize = {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed)
            };
        }
        let n = self.slots.len();
        // Thread numbers are small and pools at least 4: skip the division
        // in the common case (it is about 10 ns on every decision).
        let home = match HOME.with(|h| *h) {
            h if h < n => h,
            h => h % n,
        };
        let mut guard = (0..n)
            .find_map(|k| {
                let i = if home + k >= n {
                    home + k - n
                } else {
                    home + k
                };
                match self.slots[i].0.try_lock() {
                    Ok(g) => Some(g),
                    Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                    Err(std::sync::TryLockError::WouldBlock) => None,
                }
            })
            // More threads than slots: wait for our own (a decision is bounded
            // by its fuel budget, so the wait is too).
            .unwrap_or_else(|| {
                self.slots[home]
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
            });
        if guard.is_none() {
            let state = HostState::new(opts.max_memory, self.log.clone(), self.uses_wasi);
            match Slot::new(&self.pre, state, &self.spec.config, budget, init_budget) {
                Ok(slot) => *guard = Some(slot),
                Err(e) => {
                    return Err(CallError {
                        reason: FallbackReason::Instantiate,
                        message: Some(e.to_string().into()),
                    });
                }
            }
        }
        let slot = guard.as_mut().expect("filled above");
        let result = f(slot);
        if let Err(e) = &result
            && matches!(
                e.reason,
                FallbackReason::Trap
                    | FallbackReason::OutOfFuel
                    | FallbackReason::MemoryCap
                    | FallbackReason::BadBuffer
            )
        {
            *guard = None;
        }
        result
    }

    /// The compiled module.
    pub(crate) fn module(&self) -> &wasmtime::Module {
        self.pre.module()
    }

    /// A new instance outside the pool, in a fixed state: the same clock and
    /// random sequence every time, logs muted (the load-time checks).
    pub(crate) fn fresh_slot(
        &self,
        opts: &StrategyOptions,
        budget: u64,
        init_budget: u64,
    ) -> Result<Slot, super::LoadError> {
        let mut state =
            HostState::new(opts.max_memory, GuestLog::muted(&self.name), self.uses_wasi);
        state.replay = Some(0x9e37_79b9_7f4a_7c15);
        Slot::new(&self.pre, state, &self.spec.config, budget, init_budget)
    }

    /// Name (`builtin:round-robin`, a path, ...).
    pub fn name(&self) -> &str {
        &self.name
    }
}
