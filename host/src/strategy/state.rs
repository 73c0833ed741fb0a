//! What each wasmtime store carries: the memory cap, the guest's log, and a
//! WASI context for modules that import WASI. Built in one place
//! ([`HostState::new`]) for the load-time dry run and for every pooled
//! instance alike.

use wasmtime::ResourceLimiter;

use super::log::GuestLog;

/// Per-store state.
pub struct HostState {
    /// Memory cap; remembers whether it refused a grow.
    pub limits: Limits,
    /// Rate-limited sink for the guest's log lines.
    pub log: GuestLog,
    /// WASI context, present only for modules that import WASI.
    #[cfg(feature = "wasi")]
    pub wasi: Option<wasmtime_wasi::p1::WasiP1Ctx>,
    /// Set for the load-time check of what a module reads: `random_u64` and
    /// `clock_ns` then answer the same in every run, so two runs differ
    /// only by their input.
    pub replay: Option<u64>,
    /// The module's last error-level log line, kept so that a refused
    /// configuration is shown with the module's own reason.
    pub last_error: Option<String>,
}

impl HostState {
    /// `random_u64` for the guest.
    pub fn random(&mut self) -> u64 {
        match &mut self.replay {
            // xorshift64: any fixed sequence will do.
            Some(x) => {
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                *x
            }
            None => crate::clock::random_u64(),
        }
    }

    /// `clock_ns` for the guest.
    pub fn clock_ns(&self) -> u64 {
        if self.replay.is_some() {
            1_000_000_000
        } else {
            crate::clock::now_ns()
        }
    }
}

impl HostState {
    /// State for one instance of a module that may grow its memory to
    /// `max_memory` bytes and logs to `log`; `uses_wasi` gives it an empty
    /// WASI context.
    pub fn new(max_memory: usize, log: GuestLog, uses_wasi: bool) -> HostState {
        #[cfg(not(feature = "wasi"))]
        let _ = uses_wasi;
        HostState {
            limits: Limits {
                max_memory,
                hit: false,
            },
            log,
            #[cfg(feature = "wasi")]
            wasi: uses_wasi.then(super::wasi::context),
            replay: None,
            last_error: None,
        }
    }
}

/// Linear-memory and table cap for one store.
pub struct Limits {
    /// Bytes one memory may grow to.
    pub max_memory: usize,
    /// Set when a `memory.grow` was refused, to name the reason of a later trap.
    pub hit: bool,
}

/// Most table elements a strategy may have: far above anything a routing
/// function needs, low enough that a table-grow bomb is refused.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.max_memory;
        self.hit |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
