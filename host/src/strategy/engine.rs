//! Process-wide wasmtime state and module loading: built-ins (precompiled at
//! build time, with an on-disk cache when the artifact does not fit this
//! engine), files and bytes; ABI checks and the dry run that every module must
//! pass before it may serve.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use switchyard_guest::{CandidateStats, Meta, RequestHead};
use wasmtime::{Linker, Module};

use super::abi::{self, Slot};
use super::audit::Audit;
use super::engine_config::{Metering, engine_config};
use super::error::{FallbackReason, LoadError};
use super::generation::Generation;
use super::log::GuestLog;
use super::state::HostState;
use super::{LoadReport, StrategyOptions, StrategySource, StrategySpec};

/// Where the compiled code of a module came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artifact {
    /// Precompiled at build time and embedded in the binary: nothing was
    /// compiled.
    Embedded,
    /// Read from the on-disk cache (compiled by an earlier run on a machine
    /// whose CPU features differ from the build machine's).
    DiskCache,
    /// Compiled now (a file, bytes, or a built-in whose embedded artifact does
    /// not fit this engine).
    Compiled,
    /// A `.cwasm` file made by `switchyard strategy compile`.
    Precompiled,
}

impl Artifact {
    /// True if no compilation happened.
    pub fn is_precompiled(self) -> bool {
        self != Artifact::Compiled
    }
}

impl std::fmt::Display for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Artifact::Embedded => "precompiled (embedded in the binary)",
            Artifact::DiskCache => "precompiled (from the disk cache)",
            Artifact::Compiled => "compiled",
            Artifact::Precompiled => "precompiled (a .cwasm file)",
        })
    }
}

/// A built-in strategy embedded in the binary.
pub struct BuiltinModule {
    /// Name, as in `builtin:NAME`.
    pub name: &'static str,
    /// The WebAssembly module.
    pub wasm: &'static [u8],
    /// The same, precompiled by `host/build.rs` for [`PRECOMPILED_HASH`].
    pub cwasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// Names of the built-in strategies.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN_MODULES.iter().map(|b| b.name)
}

/// The built-in called `name`.
pub fn builtin(name: &str) -> Option<&'static BuiltinModule> {
    BUILTIN_MODULES.iter().find(|b| b.name == name)
}

/// The wasmtime engine, host imports and limits shared by every strategy in
/// the process.
pub struct StrategyEngine {
    engine: wasmtime::Engine,
    linker: Linker<HostState>,
    options: StrategyOptions,
    compat_hash: u64,
    /// Built-ins already loaded, so swapping back to one is instant.
    builtin_cache: Mutex<Vec<(&'static str, Module, Artifact)>>,
    /// Stops the epoch ticker when the engine goes away.
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for StrategyEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl StrategyEngine {
    /// Builds the engine. With epoch metering this starts a 1 ms ticker thread.
    pub fn new(mut options: StrategyOptions) -> Result<Arc<StrategyEngine>, LoadError> {
        if options.pool_size == 0 {
            options.pool_size = (2 * crate::sys::cores()).max(4);
        }
        let engine = wasmtime::Engine::new(&engine_config(options.metering))
            .map_err(|e| LoadError::Engine("creating the wasmtime engine", e))?;
        let linker =
            abi::base_linker(&engine).map_err(|e| LoadError::Engine("defining host imports", e))?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let ticker_stop = Arc::new(AtomicBool::new(false));
        if options.metering == Metering::Epoch {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("switchyard-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(1));
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| LoadError::Engine("starting the epoch ticker", e.into()))?;
        }
        Ok(Arc::new(StrategyEngine {
            engine,
            linker,
            options,
            compat_hash: hasher.finish(),
            builtin_cache: Mutex::new(Vec::new()),
            ticker_stop,
        }))
    }

    /// The options decisions run under.
    pub fn options(&self) -> &StrategyOptions {
        &self.options
    }

    /// The per-call budget in the metering's unit. An epoch deadline of N
    /// ticks expires after between N-1 and N tick periods (the ticker does not
    /// start with the call), so one tick is added.
    pub(crate) fn budget(&self) -> u64 {
        match self.options.metering {
            Metering::Fuel => self.options.fuel,
            Metering::Epoch => self.options.fuel.div_ceil(1_000_000) + 1,
        }
    }

    pub(crate) fn init_budget(&self) -> u64 {
        match self.options.metering {
            Metering::Fuel => self.options.init_fuel,
            Metering::Epoch => self.options.init_fuel.div_ceil(1_000_000) + 1,
        }
    }

    /// Compiles or deserializes the module for `source`; returns it and
    /// where its code came from.
    fn module(&self, source: &StrategySource) -> Result<(Module, Artifact, String), LoadError> {
        use super::source::sha256_hex;
        match source {
            StrategySource::Builtin(name) | StrategySource::Native(name) => {
                let b = builtin(name).ok_or_else(|| LoadError::UnknownBuiltin(name.clone()))?;
                let mut cache = self.builtin_cache.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((_, m, from)) = cache.iter().find(|(n, _, _)| *n == b.name) {
                    return Ok((m.clone(), *from, sha256_hex(b.wasm)));
                }
                let (module, from) = self.builtin_module(b)?;
                cache.push((b.name, module.clone(), from));
                Ok((module, from, sha256_hex(b.wasm)))
            }
            StrategySource::File(path) => {
                let bytes = std::fs::read(path).map_err(|e| LoadError::Read(path.clone(), e))?;
                let sha = sha256_hex(&bytes);
                // ELF is what wasmtime's artifacts are; one it does not
                // recognise is damaged or from something else.
                if bytes.starts_with(b"\x7fELF")
                    || wasmtime::Engine::detect_precompiled(&bytes).is_some()
                {
                    return self.precompiled(path, &bytes).map(|(m, a)| (m, a, sha));
                }
                self.compile(&bytes).map(|m| (m, Artifact::Compiled, sha))
            }
            StrategySource::Bytes { bytes, .. } => {
                if bytes.starts_with(b"\x7fELF")
                    || wasmtime::Engine::detect_precompiled(bytes).is_some()
                {
                    let name = std::path::PathBuf::from(source.to_string());
                    return self
                        .precompiled(&name, bytes)
                        .map(|(m, a)| (m, a, sha256_hex(bytes)));
                }
                self.compile(bytes)
                    .map(|m| (m, Artifact::Compiled, sha256_hex(bytes)))
            }
        }
    }

    /// A `.cwasm` from `switchyard strategy compile`. wasmtime refuses one
    /// made by another wasmtime version or engine configuration (metering,
    /// CPU features); the message says which and how to remake it.
    fn precompiled(&self, path: &Path, bytes: &[u8]) -> Result<(Module, Artifact), LoadError> {
        let problem = match wasmtime::Engine::detect_precompiled(bytes) {
            Some(wasmtime::Precompiled::Module) => None,
            Some(wasmtime::Precompiled::Component) => {
                Some("it holds a component, not a core module")
            }
            None => Some("it is an ELF file but not a wasmtime artifact, or it is damaged"),
        };
        if let Some(problem) = problem {
            return Err(LoadError::Precompiled {
                path: path.to_path_buf(),
                error: wasmtime::Error::msg(problem),
            });
        }
        // SAFETY: a `.cwasm` is native code and is trusted like the binary
        // itself (docs/strategies.md says so: load only artifacts you built).
        // wasmtime checks its header, version and engine settings first.
        unsafe { Module::deserialize(&self.engine, bytes) }
            .map(|m| (m, Artifact::Precompiled))
            .map_err(|error| LoadError::Precompiled {
                path: path.to_path_buf(),
                error,
            })
    }

    /// Validates `spec` exactly as loading would, then returns its compiled
    /// code for this engine (`switchyard strategy compile`).
    pub fn precompile(&self, spec: &StrategySpec) -> Result<Vec<u8>, LoadError> {
        let generation = self.prepare(spec)?;
        generation
            .module()
            .serialize()
            .map_err(|e| LoadError::Engine("serializing the compiled module", e))
    }

    fn compile(&self, bytes: &[u8]) -> Result<Module, LoadError> {
        // `Module::new` also accepts the text format (the `wat` feature),
        // so bytes that are neither would be reported as bad text ("not
        // valid utf-8", "expected a module field"): say what is wrong first.
        if bytes.trim_ascii().is_empty() {
            return Err(LoadError::Compile(wasmtime::Error::msg(
                "the module is empty",
            )));
        }
        if !bytes.starts_with(b"\0asm") && std::str::from_utf8(bytes).is_err() {
            return Err(LoadError::Compile(wasmtime::Error::msg(
                "neither a binary module (which starts with the bytes \\0asm) nor WAT text",
            )));
        }
        Module::new(&self.engine, bytes).map_err(LoadError::Compile)
    }

    /// A built-in: the artifact from build time if this engine matches it,
    /// else one from the on-disk cache, else compiled now and cached.
    fn builtin_module(&self, b: &BuiltinModule) -> Result<(Module, Artifact), LoadError> {
        if self.compat_hash == PRECOMPILED_HASH {
            // SAFETY: the artifact was produced by `Engine::precompile_module`
            // in this crate's build script from our own strategy sources, with
            // the same engine configuration (checked by the hash above, and
            // again by wasmtime itself).
            if let Ok(m) = unsafe { Module::deserialize(&self.engine, b.cwasm) } {
                return Ok((m, Artifact::Embedded));
            }
        }
        let cached = cache_path(self.compat_hash, b);
        if let Some(path) = &cached
            && path.exists()
        {
            // SAFETY: written below by this program from the embedded
            // module for this engine hash, under a unique name and renamed
            // into place whole, so no reader sees a partial file; the cache
            // directory is the user's own, as trusted as the binary. A
            // corrupt or foreign file fails wasmtime's header checks and is
            // recompiled.
            if let Ok(m) = unsafe { Module::deserialize_file(&self.engine, path) } {
                return Ok((m, Artifact::DiskCache));
            }
        }
        let module = self.compile(b.wasm)?;
        if let Some(path) = cached
            && let Ok(bytes) = module.serialize()
            && let Err(e) = write_atomically(&path, &bytes)
        {
            tracing::debug!(path = %path.display(), error = %e, "cannot cache a compiled built-in");
        }
        Ok((module, Artifact::Compiled))
    }

    /// An instance of a module that does nothing (returns 0): the floor a
    /// decision is measured against in `strategy bench`.
    pub fn floor(&self) -> Result<Floor, LoadError> {
        const EMPTY: &str = r#"(module
            (memory (export "memory") 1)
            (func (export "switchyard_abi_version") (result i32) (i32.const 1))
            (func (export "switchyard_input") (param $cap i32) (result i32)
              (local $pages i32)
              (local.set $pages (i32.add (i32.shr_u (local.get $cap) (i32.const 16)) (i32.const 2)))
              (if (i32.lt_u (memory.size) (local.get $pages))
                (then (drop (memory.grow (i32.sub (local.get $pages) (memory.size))))))
              (i32.const 65536))
            (func (export "switchyard_decide") (param i32) (result i32) (i32.const 0)))"#;
        let module = self.compile(EMPTY.as_bytes())?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(LoadError::Instantiate)?;
        let state = HostState::new(self.options.max_memory, GuestLog::muted("floor"), false);
        Ok(Floor {
            slot: Slot::new(&pre, state, &[], self.budget(), self.init_budget())?,
            budget: self.budget(),
        })
    }

    /// Everything before a module may serve: compile, check exports and
    /// imports, instantiate, check the ABI version, run `init`, and dry-run
    /// decisions on 1, 4 and 64 candidates that must each return a valid
    /// index within the budget.
    pub(crate) fn prepare(&self, spec: &StrategySpec) -> Result<Generation, LoadError> {
        let started = Instant::now();
        let (module, artifact, sha256) = self.module(&spec.source)?;
        let compile_us = started.elapsed().as_micros() as u64;
        let validating = Instant::now();
        let interface = abi::check_interface(&module)?;
        let linker = abi::module_linker(&self.linker, &module)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(LoadError::Instantiate)?;
        let name = spec.source.to_string();
        let log = GuestLog::new(&name);
        let state = HostState::new(self.options.max_memory, log.clone(), interface.uses_wasi);
        let mut slot = Slot::new(&pre, state, &spec.config, self.budget(), self.init_budget())?;
        let mut fuel_used = Vec::new();
        for n in [1usize, 4, 64] {
            let used = dry_run(&mut slot, n, self.budget())?;
            if let Some(used) = used {
                fuel_used.push((n, used));
            }
        }
        let reads = slot.reads();
        let header_names = slot.header_names().cloned();
        let report = LoadReport {
            name,
            interface: interface.clone(),
            fuel_used,
            artifact,
            compile_us,
            validate_us: validating.elapsed().as_micros() as u64,
            reads,
            header_names: header_names
                .as_deref()
                .map(|n| String::from_utf8_lossy(n).into_owned()),
            sha256,
        };
        let mut generation = Generation::new(
            spec.clone(),
            pre,
            interface.uses_wasi,
            log,
            report,
            self.options.pool_size,
        );
        if reads != switchyard_guest::READS_ALL || header_names.is_some() {
            check_reads(
                || self.fresh_slot(&generation),
                reads,
                header_names,
                self.budget(),
            )?;
        }
        if let StrategySource::Native(name) = &spec.source {
            generation.native = switchyard_strategies::BuiltinKind::from_name(name);
        }
        Ok(generation)
    }

    fn fresh_slot(&self, generation: &Generation) -> Result<Slot, LoadError> {
        generation.fresh_slot(&self.options, self.budget(), self.init_budget())
    }

    /// Loads `spec` as [`Strategy::load`](super::Strategy::load) would, then
    /// audits it (`switchyard strategy check`): varied inputs, a later-v1
    /// layout, and 10,000 decisions
    /// with memory watched. See `audit.rs`.
    pub fn audit(&self, spec: &StrategySpec) -> Result<(LoadReport, Audit), LoadError> {
        let generation = self.prepare(spec)?;
        let audit = self.audit_generation(&generation)?;
        Ok((generation.report.clone(), audit))
    }

    /// The audit of [`StrategyEngine::audit`] on a module already prepared.
    pub(crate) fn audit_generation(&self, generation: &Generation) -> Result<Audit, LoadError> {
        super::audit::audit(
            || self.fresh_slot(generation),
            self.budget(),
            self.options.max_memory,
        )
    }
}

/// The empty module of [`StrategyEngine::floor`].
pub struct Floor {
    slot: Slot,
    budget: u64,
}

impl Floor {
    /// The instance itself (tests read what the host wrote into it).
    #[cfg(test)]
    pub(crate) fn into_slot(self) -> Slot {
        self.slot
    }

    /// Copies `input` into the instance, sets the budget and calls
    /// `switchyard_decide`: what any decision costs besides encoding and
    /// the strategy's own work.
    pub fn call(&mut self, input: &[u8]) -> i32 {
        self.slot.call_raw(input, self.budget).unwrap_or(-1)
    }
}

/// A realistic request head for dry runs, `strategy check` and benchmarks:
/// 307 bytes, a dozen headers, parsed the way the listener parses one (its
/// strings are slices of the raw head).
pub fn sample_request() -> RequestHead<'static> {
    static SAMPLE: OnceLock<RequestHead<'static>> = OnceLock::new();
    *SAMPLE.get_or_init(|| {
        const RAW: &[u8] = b"GET /products/42?ref=home HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/140.0\r\n\
Accept: text/html,application/xhtml+xml\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Cookie: sid=8f14e45fceea167a; theme=dark\r\n\
X-User-Id: user-4242\r\n\
X-Request-Id: 5d41402abc4b2a76\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Mode: navigate\r\n\
Cache-Control: max-age=0\r\n\r\n";
        // Parsed by the listener's own code; the header table is kept for good.
        let crate::sniff::http1::Parsed::Complete(parsed) =
            crate::sniff::http1::parse(RAW, RAW.len())
        else {
            unreachable!("the sample head parses")
        };
        let pairs = Box::leak(Box::new(
            [(&b""[..], &b""[..]); crate::sniff::http1::MAX_HEADERS],
        ));
        let head = parsed.request(RAW, pairs);
        RequestHead {
            client: Some("127.0.0.1:50000".parse().expect("literal address")),
            ..head
        }
    })
}

/// `n` healthy candidates with varied load, for dry runs and benchmarks.
pub fn sample_candidates(n: usize) -> Vec<CandidateStats> {
    (0..n as u32)
        .map(|i| CandidateStats {
            active: (i * 7) % 13,
            in_flight: (i * 5) % 11,
            total: 1000 + i as u64,
            cpu_permille: (i * 37) % 1000,
            rss_bytes: (64 + (i as u64 * 13) % 200) << 20,
            ewma_us: 100 + i,
            ..CandidateStats::healthy(i)
        })
        .collect()
}

/// `n` static backends loaded much as [`sample_candidates`] (connections,
/// CPU, memory, connect latency), held as the balancer holds them (a live,
/// versioned backend list); the guards keep their connections open. For
/// `strategy bench` and the decision benchmarks.
pub fn sample_backends(
    n: usize,
) -> (
    crate::backends::Backends,
    Vec<crate::backends::ConnectionGuard>,
) {
    use crate::backends::{BackendSpec, Backends};
    let backends = Backends::new();
    let specs: Vec<BackendSpec> = (0..n)
        .map(|i| {
            format!("127.0.{}.{}:8080", i / 250, 1 + i % 250)
                .parse()
                .expect("a valid backend line")
        })
        .collect();
    backends.set_static(&specs);
    let mut open = Vec::new();
    for (i, b) in backends.load().iter().enumerate() {
        b.sampled((i as u32 * 37) % 1000, (64 + (i as u64 * 13) % 200) << 20);
        b.connected(100 + i as u64);
        open.extend((0..(i * 7) % 13).map(|_| b.open_connection()));
    }
    (backends, open)
}

fn dry_run(slot: &mut Slot, n: usize, budget: u64) -> Result<Option<u64>, LoadError> {
    let candidates = sample_candidates(n);
    let meta = Meta {
        sequence: n as u64,
        random: 0x5eed_5eed_5eed_5eed ^ n as u64,
        now_ms: 0,
    };
    let fail = |reason: String| LoadError::DryRun {
        candidates: n,
        reason,
    };
    match slot.decide(&meta, &sample_request(), &candidates, budget) {
        Ok(i) if i >= 0 && (i as usize) < n => Ok(slot.fuel_left().map(|left| budget - left)),
        Ok(i) if i < 0 => Err(fail(format!(
            "returned {i} (no opinion) for a plain request with all candidates healthy"
        ))),
        Ok(i) => Err(fail(format!("returned index {i}, out of range 0..{n}"))),
        Err(e) if e.reason == FallbackReason::OutOfFuel => Err(fail(format!(
            "ran out of fuel (budget {budget}); raise --fuel or fix the loop"
        ))),
        Err(e) if e.reason == FallbackReason::MemoryCap => Err(fail(format!(
            "trapped after hitting the memory cap ({})",
            e.message.as_deref().unwrap_or("")
        ))),
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Requests that differ in every part a strategy might read: the sample,
/// and variants with other header values, target, TLS names and client.
fn read_check_requests() -> Vec<RequestHead<'static>> {
    let base = sample_request();
    static HEADERS: [(&[u8], &[u8]); 4] = [
        (b"cookie", b"sid=c0ffee; theme=light"),
        (b"x-user-id", b"user-17"),
        (b"x-request-id", b"ffff0000"),
        (b"accept", b"*/*"),
    ];
    let other = RequestHead {
        protocol: switchyard_guest::Protocol::Http2,
        method: b"POST",
        path: b"/cart/checkout?step=2",
        authority: b"api.example.org",
        sni: b"api.example.org",
        alpn: b"h2",
        client: Some("10.9.8.7:40000".parse().expect("literal address")),
        headers: &HEADERS,
        attempt: 1,
        failed: &[0],
        raw: b"",
        names_lowercase: true,
    };
    let tls_only = RequestHead {
        sni: b"tenant-3.example.net",
        alpn: b"http/1.1",
        ..base
    };
    vec![base, other, tls_only]
}

/// The header names the load-time check's requests carry, lower-case: the
/// only headers the check can vary. A listed name outside these is one the
/// check cannot vouch for (`strategy check` says so).
pub fn check_header_names() -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    for req in read_check_requests() {
        for (n, _) in req.headers {
            let n = n.to_ascii_lowercase();
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    names
}

/// The load-time check of a `switchyard_reads` declaration, and of a
/// `switchyard_headers` list: each check request, with 4 and 64 candidates,
/// is decided by fresh instances (same state, same clock and random
/// sequence) once as the module declared and once with every part and
/// header present. Answers that differ mean the module reads something it
/// left out; each part, then each header it did not list, is tried alone
/// to name it.
fn check_reads(
    fresh: impl Fn() -> Result<Slot, LoadError>,
    declared: u32,
    names: Option<Arc<[u8]>>,
    budget: u64,
) -> Result<(), LoadError> {
    use switchyard_guest::READS_HEADERS;
    let answer = |parts: u32,
                  names: Option<Arc<[u8]>>,
                  req: &RequestHead<'_>,
                  cands: &[CandidateStats],
                  meta: &Meta| {
        let mut slot = fresh()?;
        slot.set_reads(parts);
        slot.set_header_names(names);
        Ok::<_, LoadError>(slot.decide(meta, req, cands, budget).ok())
    };
    let undeclared = switchyard_guest::READS_ALL & !declared;
    // A list matters only with the headers part declared: without it the
    // module gets no header at all, list or not.
    let names = names.filter(|_| declared & READS_HEADERS != 0);
    let filtered = names.is_some();
    let mut culprits = 0;
    // Headers the list leaves out whose presence changes an answer.
    let mut unlisted: Vec<String> = Vec::new();
    let mut unlisted_together = false;
    for n in [4usize, 64] {
        let cands = sample_candidates(n);
        for (k, req) in read_check_requests().iter().enumerate() {
            let meta = Meta {
                sequence: 7 + k as u64,
                random: 0x0123_4567_89ab_cdef ^ (n as u64) << 8 ^ k as u64,
                now_ms: 1000,
            };
            let without = answer(declared, names.clone(), req, &cands, &meta)?;
            if answer(switchyard_guest::READS_ALL, None, req, &cands, &meta)? == without {
                continue;
            }
            // Whether a single part explains (some of) this difference,
            // and whether anything does.
            let mut part_found = false;
            let mut flagged = false;
            for bit in (0..6).map(|b| 1u32 << b).filter(|b| undeclared & b != 0) {
                if answer(declared | bit, names.clone(), req, &cands, &meta)? != without {
                    culprits |= bit;
                    part_found = true;
                    flagged = true;
                }
            }
            if filtered && answer(declared, None, req, &cands, &meta)? != without {
                let listed = names.as_deref().unwrap_or_default();
                let mut changed = false;
                for (name, _) in req.headers {
                    let name = name.to_ascii_lowercase();
                    if switchyard_guest::encode::is_named(listed, &name, true) {
                        continue;
                    }
                    let with: Arc<[u8]> = [listed, b",", &name].concat().into();
                    if answer(declared, Some(with), req, &cands, &meta)? != without {
                        changed = true;
                        let name = String::from_utf8_lossy(&name).into_owned();
                        if !unlisted.contains(&name) {
                            unlisted.push(name);
                        }
                    }
                }
                unlisted_together |= !changed;
                flagged = true;
            }
            if !part_found
                && undeclared != 0
                && answer(
                    switchyard_guest::READS_ALL,
                    names.clone(),
                    req,
                    &cands,
                    &meta,
                )? != without
            {
                // The parts change it, but only together: name them all.
                culprits |= undeclared;
                flagged = true;
            }
            if !flagged {
                // Only parts and unlisted headers together change it.
                culprits |= undeclared;
                unlisted_together |= filtered;
            }
        }
    }
    if culprits != 0 {
        return Err(LoadError::UndeclaredRead {
            parts: super::error::part_names(culprits),
        });
    }
    if !unlisted.is_empty() || unlisted_together {
        let listed = names.as_deref().unwrap_or_default();
        return Err(LoadError::UnlistedHeader {
            listed: if listed.is_empty() {
                "no header".into()
            } else {
                String::from_utf8_lossy(listed).replace(',', ", ")
            },
            seen: if unlisted.is_empty() {
                "the other headers together".into()
            } else {
                unlisted.join(", ")
            },
        });
    }
    Ok(())
}

/// `$SWITCHYARD_CACHE_DIR`, else `$XDG_CACHE_HOME/switchyard`, else
/// `~/.cache/switchyard`; keyed by engine hash and module content.
fn cache_path(engine_hash: u64, b: &BuiltinModule) -> Option<PathBuf> {
    let dir = std::env::var_os("SWITCHYARD_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("switchyard")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/switchyard")))?;
    let mut h = DefaultHasher::new();
    b.wasm.hash(&mut h);
    Some(dir.join(format!("{engine_hash:016x}")).join(format!(
        "{}-{:016x}.cwasm",
        b.name,
        h.finish()
    )))
}

/// Writes `bytes` to a temporary file no other writer can be using (this
/// process, this thread, a counter) and renames it over `path`: readers see
/// the old file or the whole new one, never a half-written one, however many
/// processes or threads compile the same built-in at once.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{:?}-{}",
        std::process::id(),
        std::thread::current().id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A built-in that lists its header gets that header alone (both
    /// cases of it, in order), its flag set, and nothing of the raw head.
    #[test]
    fn a_listed_header_is_all_the_module_gets() {
        let engine = StrategyEngine::new(StrategyOptions::default()).unwrap();
        let spec = StrategySpec {
            config: b"header:x-user-id".to_vec(),
            ..StrategySpec::builtin("consistent-hash")
        };
        let generation = engine.prepare(&spec).unwrap();
        let mut slot = engine.fresh_slot(&generation).unwrap();
        let base = sample_request();
        let headers: [(&[u8], &[u8]); 4] = [
            (b"Cookie", b"sid=1"),
            (b"X-User-Id", b"user-1"),
            (b"accept", b"*/*"),
            (b"x-user-id", b"user-2"),
        ];
        let req = RequestHead {
            headers: &headers,
            raw: b"",
            ..base
        };
        let cands = sample_candidates(4);
        let len = switchyard_guest::encode::encoded_len(&req, 4);
        slot.decide(&Meta::default(), &req, &cands, engine.budget())
            .unwrap();
        let bytes = slot.input(len);
        let input = switchyard_guest::Input::parse(&bytes).unwrap();
        let got: Vec<(&[u8], &[u8])> = input.request().headers().collect();
        assert_eq!(
            got,
            [
                (&b"x-user-id"[..], &b"user-1"[..]),
                (b"x-user-id", b"user-2")
            ]
        );
        assert_ne!(input.flags() & switchyard_guest::FLAG_HEADERS_NAMED, 0);
        assert!(input.request().path().is_empty(), "the target is not read");
        // A request with no headers at all still says the list applies.
        let bare = RequestHead {
            headers: &[],
            raw: b"",
            ..base
        };
        slot.decide(&Meta::default(), &bare, &cands, engine.budget())
            .unwrap();
        let bytes = slot.input(switchyard_guest::encode::encoded_len(
            &bare.only(slot.reads()),
            4,
        ));
        let input = switchyard_guest::Input::parse(&bytes).unwrap();
        assert_eq!(input.request().headers().count(), 0);
        assert_ne!(input.flags() & switchyard_guest::FLAG_HEADERS_NAMED, 0);
        assert!(
            u32::from_le_bytes(bytes[4..8].try_into().unwrap()) < 1024,
            "no raw head copied: {} bytes",
            len
        );
    }

    #[test]
    fn header_lists_are_read_as_the_abi_says() {
        let ok = |s: &[u8]| abi::header_names(s).map(|n| n.to_vec());
        assert_eq!(
            ok(b" X-User-Id , cookie,x-user-id\0junk"),
            Ok(b"x-user-id,cookie".to_vec())
        );
        assert_eq!(ok(b"\0"), Ok(Vec::new()), "an empty list: no header");
        assert_eq!(ok(b",, ,\0"), Ok(Vec::new()));
        assert!(
            ok(b"x-user-id")
                .unwrap_err()
                .contains("no NUL-terminated list")
        );
        let long = [vec![b'a'; 1025], vec![0]].concat();
        assert!(ok(&long).unwrap_err().contains("at most 1024 bytes"));
        assert!(
            ok(b"x-a,x:b\0")
                .unwrap_err()
                .contains("\"x:b\" is not a header name")
        );
        let many: Vec<u8> = (0..33)
            .map(|i| format!("x-{i}"))
            .collect::<Vec<_>>()
            .join(",")
            .into_bytes();
        let many = [many, vec![0]].concat();
        assert!(ok(&many).unwrap_err().contains("more than 32 names"));
    }

    #[test]
    fn concurrent_cache_writers_never_leave_a_partial_file() {
        let dir = std::env::temp_dir().join(format!("switchyard-cache-{}", std::process::id()));
        let path = dir.join("x.cwasm");
        std::thread::scope(|s| {
            for k in 0..8u8 {
                let path = &path;
                s.spawn(move || {
                    let bytes = vec![k; 256 * 1024];
                    for _ in 0..20 {
                        write_atomically(path, &bytes).unwrap();
                        let got = std::fs::read(path).unwrap();
                        assert_eq!(got.len(), bytes.len());
                        assert!(got.iter().all(|&b| b == got[0]), "a torn file");
                    }
                });
            }
        });
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
