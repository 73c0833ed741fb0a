//! The only code that touches guest memory: checks a module's exports and
//! imports against ABI v1, defines the host imports, and runs one decision in
//! one instance.
//!
//! The wire layout itself lives in `switchyard-guest` (`encode`), shared with
//! the SDK's readers, so it is defined exactly once.

use std::sync::Arc;

use switchyard_guest::encode::{self, Meta, RequestHead};
use wasmtime::{
    AsContextMut, Caller, ExternType, Instance, InstancePre, Linker, Memory, Module, Store, Trap,
    TypedFunc, ValType,
};

use super::error::{CallError, FallbackReason, LoadError};
use super::state::HostState;
use super::table::{CandidateSource, TableCache};
use switchyard_guest::layout::{CANDIDATE_LEN, HEADER_LEN};

/// Module name of the host imports a strategy may use.
pub const HOST_MODULE: &str = "switchyard";
/// WASI preview 1's module name.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// `env.abort(message, file, line, column)`: AssemblyScript's abort hook.
pub const ABORT_MODULE: &str = "env";
/// See [`ABORT_MODULE`].
pub const ABORT_NAME: &str = "abort";

/// Largest input the host will write, so a hostile head or candidate list
/// cannot make it ask the guest for unbounded memory.
pub const MAX_INPUT: usize = 4 << 20;

/// What a module exports and imports, for `strategy check` and the status API.
#[derive(Debug, Clone, Default)]
pub struct Interface {
    /// Exported names with their kinds.
    pub exports: Vec<String>,
    /// `module.name` of each import.
    pub imports: Vec<String>,
    /// Whether `switchyard_init` is exported.
    pub has_init: bool,
    /// Whether the module imports WASI preview 1.
    pub uses_wasi: bool,
    /// Whether `switchyard_reads` is exported.
    pub declares_reads: bool,
    /// Whether `switchyard_headers` is exported.
    pub declares_headers: bool,
    /// Whether `_initialize` is exported: a WASI reactor (C, Zig, Go) whose
    /// constructors and runtime start there, so the host calls it first.
    pub has_initialize: bool,
}

fn func_sig(ty: &ExternType) -> Option<(Vec<ValType>, Vec<ValType>)> {
    match ty {
        ExternType::Func(f) => Some((f.params().collect(), f.results().collect())),
        _ => None,
    }
}

fn is_sig(ty: &ExternType, params: &[ValType], results: &[ValType]) -> bool {
    func_sig(ty).is_some_and(|(p, r)| {
        p.len() == params.len()
            && r.len() == results.len()
            && p.iter().zip(params).all(|(a, b)| ValType::eq(a, b))
            && r.iter().zip(results).all(|(a, b)| ValType::eq(a, b))
    })
}

/// Checks exports and imports against ABI v1 before anything is instantiated,
/// so the error names the exact problem.
pub fn check_interface(module: &Module) -> Result<Interface, LoadError> {
    use ValType::{I32, I64};
    let mut iface = Interface::default();
    let seen = |name: &str| module.exports().any(|e| e.name() == name);
    for (name, params, results) in [
        ("switchyard_abi_version", &[][..], &[I32][..]),
        ("switchyard_input", &[I32][..], &[I32][..]),
        ("switchyard_decide", &[I32][..], &[I32][..]),
    ] {
        if !seen(name) {
            return Err(LoadError::MissingExport(name.into()));
        }
        let ty = module.get_export(name).unwrap();
        if !is_sig(&ty, params, results) {
            return Err(LoadError::BadExport(format!(
                "`{name}` must be ({}) -> i32",
                if params.is_empty() { "" } else { "i32" }
            )));
        }
    }
    match module.get_export("memory") {
        Some(ExternType::Memory(m)) if !m.is_64() => {}
        Some(_) => {
            return Err(LoadError::BadExport(
                "`memory` must be a 32-bit memory".into(),
            ));
        }
        None => return Err(LoadError::MissingExport("memory".into())),
    }
    if let Some(ty) = module.get_export("switchyard_reads") {
        if !is_sig(&ty, &[], &[I32]) {
            return Err(LoadError::BadExport(
                "`switchyard_reads` must be () -> i32".into(),
            ));
        }
        iface.declares_reads = true;
    }
    if let Some(ty) = module.get_export("switchyard_headers") {
        if !is_sig(&ty, &[], &[I32]) {
            return Err(LoadError::BadExport(
                "`switchyard_headers` must be () -> i32".into(),
            ));
        }
        iface.declares_headers = true;
    }
    if let Some(ty) = module.get_export("_initialize") {
        if !is_sig(&ty, &[], &[]) {
            return Err(LoadError::BadExport(
                "`_initialize` (the WASI reactor entry) must be () -> ()".into(),
            ));
        }
        iface.has_initialize = true;
    }
    if let Some(ty) = module.get_export("switchyard_init") {
        if !is_sig(&ty, &[I32], &[I32]) {
            return Err(LoadError::BadExport(
                "`switchyard_init` must be (i32) -> i32".into(),
            ));
        }
        iface.has_init = true;
    }
    for e in module.exports() {
        let kind = match e.ty() {
            ExternType::Func(_) => "func",
            ExternType::Memory(_) => "memory",
            ExternType::Table(_) => "table",
            ExternType::Global(_) => "global",
            ExternType::Tag(_) => "tag",
        };
        iface.exports.push(format!("{} ({kind})", e.name()));
    }
    for i in module.imports() {
        let full = format!("{}.{}", i.module(), i.name());
        let ty = i.ty();
        let allowed = match (i.module(), i.name()) {
            (HOST_MODULE, "log") => is_sig(&ty, &[I32, I32, I32], &[]),
            (HOST_MODULE, "clock_ns") => is_sig(&ty, &[], &[I64]),
            (HOST_MODULE, "random_u64") => is_sig(&ty, &[], &[I64]),
            // AssemblyScript's runtime imports it for every `abort`, `assert`
            // and failed bounds check; the host turns it into a trap that
            // says where.
            (ABORT_MODULE, ABORT_NAME) => is_sig(&ty, &[I32, I32, I32, I32], &[]),
            (WASI_MODULE, _) if cfg!(feature = "wasi") => {
                iface.uses_wasi = true;
                matches!(ty, ExternType::Func(_))
            }
            _ => false,
        };
        if !allowed {
            return Err(LoadError::ForbiddenImport(full));
        }
        iface.imports.push(full);
    }
    Ok(iface)
}

/// Host imports every strategy may use (`switchyard.*`), plus WASI preview 1
/// when that feature is on.
pub fn base_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    linker.func_wrap(
        HOST_MODULE,
        "log",
        |mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| {
            let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
                return;
            };
            let (data, state) = mem.data_and_store_mut(&mut caller);
            let start = ptr as u32 as usize;
            let end = start.saturating_add((len as u32 as usize).min(4096));
            if let Some(bytes) = data.get(start..end) {
                state.log.line(level, bytes);
                if level == 0 {
                    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]);
                    state.last_error = Some(text.trim_end().to_string());
                }
            }
        },
    )?;
    linker.func_wrap(
        ABORT_MODULE,
        ABORT_NAME,
        |mut caller: Caller<'_, HostState>,
         msg: i32,
         file: i32,
         line: i32,
         col: i32|
         -> wasmtime::Result<()> {
            let text = caller
                .get_export("memory")
                .and_then(|e| e.into_memory())
                .map(|mem| {
                    let data = mem.data(&caller);
                    (as_string(data, msg), as_string(data, file))
                });
            let (msg, file) = text.unwrap_or_default();
            Err(wasmtime::Error::msg(format!(
                "abort: {} at {}:{line}:{col}",
                if msg.is_empty() { "(no message)" } else { &msg },
                if file.is_empty() { "?" } else { &file },
            )))
        },
    )?;
    linker.func_wrap(
        HOST_MODULE,
        "clock_ns",
        |caller: Caller<'_, HostState>| -> i64 { caller.data().clock_ns() as i64 },
    )?;
    linker.func_wrap(
        HOST_MODULE,
        "random_u64",
        |mut caller: Caller<'_, HostState>| -> i64 { caller.data_mut().random() as i64 },
    )?;
    #[cfg(feature = "wasi")]
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut HostState| {
        s.wasi
            .as_mut()
            .expect("a WASI context exists for every module that imports WASI")
    })?;
    Ok(linker)
}

/// An AssemblyScript string at `ptr`: UTF-16LE, its byte length in the
/// `u32` just before it. Anything out of bounds reads as empty; long ones
/// are cut, since it only goes into a log line.
fn as_string(data: &[u8], ptr: i32) -> String {
    let ptr = ptr as u32 as usize;
    let Some(len) = ptr
        .checked_sub(4)
        .and_then(|at| data.get(at..ptr))
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
    else {
        return String::new();
    };
    let Some(bytes) = data.get(ptr..ptr.saturating_add(len.min(512))) else {
        return String::new();
    };
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// A module's linker: the base one, plus overrides for the WASI functions that
/// wasmtime-wasi implements by blocking on a tokio runtime (which would panic on
/// the balancer's runtime threads, and could stall them). Writes to stdout and
/// stderr go to the rate-limited host log; everything else answers `EBADF`.
pub fn module_linker(
    base: &Linker<HostState>,
    module: &Module,
) -> Result<Linker<HostState>, LoadError> {
    #[cfg(not(feature = "wasi"))]
    {
        let _ = module;
        Ok(base.clone())
    }
    #[cfg(feature = "wasi")]
    {
        let mut linker = base.clone();
        linker.allow_shadowing(true);
        for import in module.imports().filter(|i| i.module() == WASI_MODULE) {
            let ExternType::Func(ty) = import.ty() else {
                return Err(LoadError::ForbiddenImport(format!(
                    "{WASI_MODULE}.{}",
                    import.name()
                )));
            };
            if !super::wasi::BLOCKING.contains(&import.name()) {
                continue;
            }
            let name = import.name().to_string();
            let results: Vec<ValType> = ty.results().collect();
            if results.len() != 1 || !ValType::eq(&results[0], &ValType::I32) {
                return Err(LoadError::ForbiddenImport(format!("{WASI_MODULE}.{name}")));
            }
            let is_write = name == "fd_write";
            linker
                .func_new(WASI_MODULE, &name, ty, move |caller, params, out| {
                    out[0] = wasmtime::Val::I32(if is_write {
                        super::wasi::fd_write(caller, params)
                    } else {
                        super::wasi::EBADF
                    });
                    Ok(())
                })
                .map_err(|e| LoadError::Engine("defining a WASI override", e))?;
        }
        Ok(linker)
    }
}

/// One live instance with its store and typed exports.
pub struct Slot {
    store: Store<HostState>,
    memory: Memory,
    input: TypedFunc<i32, i32>,
    decide: TypedFunc<i32, i32>,
    /// Guest address of the input buffer, 0 until asked for.
    buf_ptr: usize,
    /// Capacity the guest promised at `buf_ptr`.
    buf_cap: usize,
    /// The parts of the input the module reads (`READS_*`), from
    /// `switchyard_reads` after init; all when it does not say.
    reads: u32,
    /// The header names the module listed in `switchyard_headers`, lower-case
    /// and comma-separated; `None`: every header.
    header_names: Option<Arc<[u8]>>,
    /// What this instance's candidate table holds (`table.rs`).
    table: TableCache,
}

/// Outcome of one guest call.
pub type CallResult = Result<i32, CallError>;

impl Slot {
    /// Instantiates `pre`, checks the ABI version and runs `switchyard_init`
    /// with `config`.
    pub fn new(
        pre: &InstancePre<HostState>,
        state: HostState,
        config: &[u8],
        fuel: u64,
        init_fuel: u64,
    ) -> Result<Slot, LoadError> {
        let mut store = Store::new(pre.module().engine(), state);
        store.limiter(|s| &mut s.limits);
        set_budget(&mut store, init_fuel);
        let instance: Instance = pre
            .instantiate(&mut store)
            .map_err(LoadError::Instantiate)?;
        // A WASI reactor must have `_initialize` called before any other
        // export: it runs C constructors, Zig's and Go's runtime start.
        if let Ok(start) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            start.call(&mut store, ()).map_err(|e| {
                let reason = call_reason(&store, &e);
                LoadError::Trapped("_initialize", reason, e)
            })?;
        }
        let typed = |store: &mut Store<HostState>, name: &str| {
            instance
                .get_typed_func::<i32, i32>(store, name)
                .map_err(|e| LoadError::BadExport(format!("{name}: {e:#}")))
        };
        let version = instance
            .get_typed_func::<(), i32>(&mut store, "switchyard_abi_version")
            .map_err(|e| LoadError::BadExport(format!("switchyard_abi_version: {e:#}")))?
            .call(&mut store, ())
            .map_err(|e| {
                let reason = call_reason(&store, &e);
                LoadError::Trapped("switchyard_abi_version", reason, e)
            })?;
        if version != switchyard_guest::ABI_VERSION as i32 {
            return Err(LoadError::AbiVersion(version));
        }
        let input = typed(&mut store, "switchyard_input")?;
        let decide = typed(&mut store, "switchyard_decide")?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| LoadError::MissingExport("memory".into()))?;
        let mut slot = Slot {
            store,
            memory,
            input,
            decide,
            buf_ptr: 0,
            buf_cap: 0,
            reads: switchyard_guest::READS_ALL,
            header_names: None,
            table: TableCache::default(),
        };
        if let Ok(init) = instance.get_typed_func::<i32, i32>(&mut slot.store, "switchyard_init") {
            set_budget(&mut slot.store, init_fuel);
            let ptr = slot
                .buffer(config.len().max(1))
                .map_err(|e| LoadError::Init(format!("no input buffer ({e})")))?;
            slot.memory.data_mut(&mut slot.store)[ptr..ptr + config.len()].copy_from_slice(config);
            let code = init
                .call(&mut slot.store, config.len() as i32)
                .map_err(|e| {
                    let reason = call_reason(&slot.store, &e);
                    LoadError::Trapped("switchyard_init", reason, e)
                })?;
            if code != 0 {
                let why = slot.store.data_mut().last_error.take();
                return Err(LoadError::InitRejected(code, why));
            }
        } else if !config.is_empty() {
            return Err(LoadError::Init(
                "a configuration was given but the module exports no `switchyard_init`".into(),
            ));
        }
        if let Ok(reads) = instance.get_typed_func::<(), i32>(&mut slot.store, "switchyard_reads") {
            set_budget(&mut slot.store, init_fuel);
            let r = reads.call(&mut slot.store, ()).map_err(|e| {
                let reason = call_reason(&slot.store, &e);
                LoadError::Trapped("switchyard_reads", reason, e)
            })? as u32;
            if r & !switchyard_guest::READS_ALL != 0 {
                return Err(LoadError::BadExport(format!(
                    "`switchyard_reads` returned {r:#x}, which has bits outside {:#x}",
                    switchyard_guest::READS_ALL
                )));
            }
            slot.reads = r;
        }
        if let Ok(names) = instance.get_typed_func::<(), i32>(&mut slot.store, "switchyard_headers")
        {
            set_budget(&mut slot.store, init_fuel);
            let at = names.call(&mut slot.store, ()).map_err(|e| {
                let reason = call_reason(&slot.store, &e);
                LoadError::Trapped("switchyard_headers", reason, e)
            })? as u32 as usize;
            if at != 0 {
                let mem = slot.memory.data(&slot.store);
                let Some(list) = mem.get(at..).filter(|l| !l.is_empty()) else {
                    return Err(LoadError::BadExport(format!(
                        "`switchyard_headers` returned {at:#x}, past the end of the {}-byte memory",
                        mem.len()
                    )));
                };
                let names = header_names(list).map_err(|why| {
                    LoadError::BadExport(format!("`switchyard_headers` returned {at:#x}: {why}"))
                })?;
                if names.is_empty() && slot.reads & switchyard_guest::READS_HEADERS != 0 {
                    // No header would ever reach it: a mistake, not a wish
                    // (a module that reads none leaves headers out of
                    // `switchyard_reads`).
                    return Err(LoadError::BadExport(
                        "`switchyard_headers` lists no header, but the module reads headers (`switchyard_reads` has them, or is absent): list the headers `switchyard_decide` reads, or leave headers out of `switchyard_reads`".into(),
                    ));
                }
                slot.header_names = Some(names);
            }
        }
        set_budget(&mut slot.store, fuel);
        Ok(slot)
    }

    /// The parts of the input the module reads.
    pub fn reads(&self) -> u32 {
        self.reads
    }

    /// The header names the module reads (lower-case, comma-separated), if
    /// it listed them.
    pub fn header_names(&self) -> Option<&Arc<[u8]>> {
        self.header_names.as_ref()
    }

    /// Writes only the headers `names` lists from now on (every header for
    /// `None`), whatever the module declared (the load-time check).
    pub fn set_header_names(&mut self, names: Option<Arc<[u8]>>) {
        self.header_names = names;
    }

    /// Encodes `parts` from now on, whatever the module declared (the
    /// load-time check of the declaration).
    pub fn set_reads(&mut self, parts: u32) {
        self.reads = parts;
        self.table.invalidate();
    }

    /// A guest buffer of at least `need` bytes; asks the guest for a bigger one
    /// only when the current one is too small.
    fn buffer(&mut self, need: usize) -> Result<usize, CallError> {
        if need <= self.buf_cap && self.buf_ptr != 0 {
            return Ok(self.buf_ptr);
        }
        // A new buffer, or the same one handed out again: either way what
        // it holds is the guest's business now.
        self.table.invalidate();
        let ptr = match self.input.call(&mut self.store, need as i32) {
            Ok(p) => p as u32 as usize,
            Err(e) => return Err(self.failed(&e)),
        };
        let size = self.memory.data_size(&self.store);
        let problem = if ptr == 0 {
            Some(format!(
                "switchyard_input({need}) returned 0: address 0 means \"no buffer\" (a toolchain whose memory starts empty must grow it first; see docs/strategies.md)"
            ))
        } else if ptr.checked_add(need).is_none_or(|end| end > size) {
            Some(format!(
                "switchyard_input({need}) returned {ptr:#x}, but {need} bytes there run past the end of the {size}-byte memory"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(CallError {
                reason: FallbackReason::BadBuffer,
                message: Some(problem.into()),
            });
        }
        self.buf_ptr = ptr;
        self.buf_cap = need;
        Ok(ptr)
    }

    /// Writes the input and calls `switchyard_decide` under `budget`. The
    /// candidate table is updated in place where it can be (`table.rs`).
    pub fn decide<S: CandidateSource + ?Sized>(
        &mut self,
        meta: &Meta,
        req: &RequestHead<'_>,
        candidates: &S,
        budget: u64,
    ) -> CallResult {
        if self.header_names.is_none() {
            let req = req.only(self.reads);
            return self.write_and_call(meta, &req, candidates, budget, self.reads);
        }
        // Lent out for the call, not cloned (an `Arc` clone is two atomic
        // operations a decision), and put back by `Drop` even if the call
        // panics: a pooled slot outlives a panic.
        struct Lent<'s> {
            slot: &'s mut Slot,
            names: Option<Arc<[u8]>>,
        }
        impl Drop for Lent<'_> {
            fn drop(&mut self) {
                self.slot.header_names = self.names.take();
            }
        }
        let lent = Lent {
            names: self.header_names.take(),
            slot: self,
        };
        let reads = lent.slot.reads;
        encode::as_declared(req, reads, lent.names.as_deref(), |req, parts| {
            lent.slot
                .write_and_call(meta, req, candidates, budget, parts)
        })
    }

    #[inline(always)]
    fn write_and_call<S: CandidateSource + ?Sized>(
        &mut self,
        meta: &Meta,
        req: &RequestHead<'_>,
        candidates: &S,
        budget: u64,
        parts: u32,
    ) -> CallResult {
        let n = candidates.len();
        let need = encode::encoded_len(req, n);
        if need > MAX_INPUT {
            return Err(FallbackReason::InputTooLarge.into());
        }
        let ptr = self.buffer(need)?;
        let data = self.memory.data_mut(&mut self.store);
        // The guest may have moved or shrunk nothing (memories never shrink),
        // but check the range again anyway: it costs one compare.
        let Some(buf) = data.get_mut(ptr..ptr + need) else {
            return Err(FallbackReason::BadBuffer.into());
        };
        let table = &mut buf[HEADER_LEN..HEADER_LEN + n * CANDIDATE_LEN];
        if self.reads & switchyard_guest::READS_CANDIDATES != 0 {
            self.table.write(table, ptr, candidates, meta.now_ms);
        } else {
            table.fill(0);
        }
        encode::encode_all_but_candidates(buf, meta, req, n, parts);
        let state = self.store.data_mut();
        state.limits.hit = false;
        // Only what this call logs may explain its failure.
        if state.last_error.is_some() {
            state.last_error = None;
        }
        set_budget(&mut self.store, budget);
        self.decide
            .call(&mut self.store, need as i32)
            .map_err(|e| self.failed(&e))
    }

    /// Copies `input` as it is and calls `switchyard_decide` under `budget`
    /// (the floor measurement of `strategy bench`).
    pub fn call_raw(&mut self, input: &[u8], budget: u64) -> CallResult {
        self.table.invalidate();
        let ptr = self.buffer(input.len())?;
        let data = self.memory.data_mut(&mut self.store);
        let Some(buf) = data.get_mut(ptr..ptr + input.len()) else {
            return Err(FallbackReason::BadBuffer.into());
        };
        buf.copy_from_slice(input);
        set_budget(&mut self.store, budget);
        self.decide
            .call(&mut self.store, input.len() as i32)
            .map_err(|e| self.failed(&e))
    }

    /// Classifies a failed call and keeps wasmtime's message with its
    /// chain, and what the module logged as an error just before (an
    /// AssemblyScript abort handler or a C assert says why there).
    fn failed(&mut self, e: &wasmtime::Error) -> CallError {
        let mut message = format!("{e:#}");
        if let Some(said) = self.store.data_mut().last_error.take() {
            message.push_str(&format!(" (the module logged: {said})"));
        }
        CallError {
            reason: call_reason(&self.store, e),
            message: Some(message.into()),
        }
    }

    /// The first `len` bytes of the input buffer, as the guest sees them.
    #[cfg(test)]
    pub(crate) fn input(&self, len: usize) -> Vec<u8> {
        self.memory.data(&self.store)[self.buf_ptr..self.buf_ptr + len].to_vec()
    }

    /// Size of the instance's linear memory, bytes.
    pub fn memory_bytes(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    /// Fuel left after the last call (fuel metering only).
    pub fn fuel_left(&self) -> Option<u64> {
        self.store.get_fuel().ok()
    }
}

/// Reads a `switchyard_headers` list from the start of `mem`: names
/// separated by commas (spaces around them allowed) and a NUL, at most
/// [`HEADER_NAMES_MAX_LEN`](switchyard_guest::layout::HEADER_NAMES_MAX_LEN)
/// bytes. Returns the names lower-case, comma-separated, without repeats.
pub fn header_names(mem: &[u8]) -> Result<Arc<[u8]>, String> {
    use switchyard_guest::layout::{HEADER_NAMES_MAX, HEADER_NAMES_MAX_LEN};
    let window = &mem[..mem.len().min(HEADER_NAMES_MAX_LEN + 1)];
    let Some(end) = window.iter().position(|&b| b == 0) else {
        return Err(format!(
            "no NUL-terminated list of at most {HEADER_NAMES_MAX_LEN} bytes starts there"
        ));
    };
    let mut out: Vec<u8> = Vec::new();
    let mut count = 0;
    for name in window[..end].split(|&b| b == b',') {
        let name = name.trim_ascii();
        if name.is_empty() {
            continue;
        }
        if let Some(bad) = name.iter().find(|&&b| !is_tchar(b)) {
            let hint = if name.starts_with(b"cookie:") || name.contains(&b'=') {
                "; a cookie is in the `cookie` header: list `cookie`"
            } else {
                ""
            };
            return Err(format!(
                "{:?} is not a header name (byte {bad:#04x}){hint}",
                String::from_utf8_lossy(name)
            ));
        }
        let lower = name.to_ascii_lowercase();
        if switchyard_guest::encode::is_named(&out, &lower, true) {
            continue;
        }
        count += 1;
        if count > HEADER_NAMES_MAX {
            return Err(format!("more than {HEADER_NAMES_MAX} names"));
        }
        if !out.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(&lower);
    }
    Ok(out.into())
}

/// A token character (RFC 9110), what a header name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Sets the per-call budget: fuel units, or epoch ticks when epochs meter.
fn set_budget(store: &mut Store<HostState>, budget: u64) {
    let mut ctx = store.as_context_mut();
    // `set_fuel` fails only when fuel is off, so it is its own test (asking
    // `get_fuel` first was a second walk into the store on every decision).
    if ctx.set_fuel(budget).is_err() {
        ctx.set_epoch_deadline(budget.max(1));
    }
}

/// Names why a call failed.
fn call_reason(store: &Store<HostState>, err: &wasmtime::Error) -> FallbackReason {
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) | Some(Trap::Interrupt) => FallbackReason::OutOfFuel,
        _ if store.data().limits.hit => FallbackReason::MemoryCap,
        _ => FallbackReason::Trap,
    }
}
