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
