//! The balancer's own counters and histograms, and their Prometheus text.
//!
//! The request path only adds to per-thread shards of atomics: each thread
//! writes its own cache line, and readers (a scrape, the status API, the
//! OTLP exporter) sum the shards. Nothing on the request path locks,
//! allocates or formats.
//!
//! What lives where: process-wide figures (connections, requests, proxy
//! errors, sniff time) are in [`METRICS`]; the strategy counts its own
//! decisions, fallbacks, swaps and latency (`strategy::Strategy`); each
//! backend its connections and failures (`backends::Backend`). [`render`]
//! reads all three into the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::backends::BackendList;
use crate::error::Kind;
use crate::strategy::{FallbackReason, StrategyStatus};

const SHARDS: usize = 16;

/// This thread's shard: threads are numbered as they first count.
#[inline]
fn shard() -> usize {
    thread_local! {
        static SHARD: usize = {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
        };
    }
    SHARD.with(|k| *k)
}

/// One shard's value on cache lines of its own (two lines: the
/// adjacent-line prefetcher pairs them).
#[repr(align(128))]
struct Padded<T>(T);

/// A monotonic counter, summed over per-thread shards.
pub struct Counter {
    shards: [Padded<AtomicU64>; SHARDS],
}

impl Counter {
    /// Zero.
    pub const fn new() -> Counter {
        Counter {
            shards: [const { Padded(AtomicU64::new(0)) }; SHARDS],
        }
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.shards[shard()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The sum of every shard.
    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }
}

impl Default for Counter {
    fn default() -> Counter {
        Counter::new()
    }
}

/// A value that goes up and down (open connections), summed over shards:
/// a connection may close on another thread than opened it, so one shard
/// can go negative; the sum cannot.
pub struct Gauge {
    shards: [Padded<AtomicI64>; SHARDS],
}

impl Gauge {
    /// Zero.
    pub const fn new() -> Gauge {
        Gauge {
            shards: [const { Padded(AtomicI64::new(0)) }; SHARDS],
        }
    }

    /// Adds `n` (negative to lower it).
    #[inline]
    pub fn add(&self, n: i64) {
        self.shards[shard()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The sum of every shard (never below 0).
    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum::<i64>()
            .max(0) as u64
    }
}

impl Default for Gauge {
    fn default() -> Gauge {
        Gauge::new()
    }
}

/// Most buckets a histogram may have (its bounds, plus +Inf).
const MAX_BUCKETS: usize = 24;

struct HistogramShard {
    counts: [AtomicU64; MAX_BUCKETS],
    sum_ns: AtomicU64,
}

/// A histogram of durations over fixed bucket bounds (nanoseconds), with
/// per-thread shards.
pub struct Histogram {
    /// Upper bounds, ascending; a last bucket above them is +Inf.
    bounds_ns: &'static [u64],
    shards: [Padded<HistogramShard>; SHARDS],
}

/// What a histogram holds at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, cumulative count)`, then +Inf.
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Their sum, seconds.
    pub sum_seconds: f64,
}

impl Histogram {
    /// An empty histogram with `bounds_ns` (ascending, at most 23).
    pub const fn new(bounds_ns: &'static [u64]) -> Histogram {
        assert!(bounds_ns.len() < MAX_BUCKETS);
        Histogram {
            bounds_ns,
            shards: [const {
                Padded(HistogramShard {
                    counts: [const { AtomicU64::new(0) }; MAX_BUCKETS],
                    sum_ns: AtomicU64::new(0),
                })
            }; SHARDS],
        }
    }

    /// Records one observation.
    #[inline]
    pub fn observe(&self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        let k = self.bounds_ns.partition_point(|&b| b < ns);
        let s = &self.shards[shard()].0;
        s.counts[k].fetch_add(1, Ordering::Relaxed);
        s.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The buckets summed over shards, cumulative as Prometheus wants them.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut counts = [0u64; MAX_BUCKETS];
        let mut sum_ns = 0u64;
        for s in &self.shards {
            for (c, a) in counts.iter_mut().zip(&s.0.counts) {
                *c += a.load(Ordering::Relaxed);
            }
            sum_ns = sum_ns.wrapping_add(s.0.sum_ns.load(Ordering::Relaxed));
        }
        let mut running = 0;
        let mut buckets = Vec::with_capacity(self.bounds_ns.len() + 1);
        for (k, &b) in self.bounds_ns.iter().enumerate() {
            running += counts[k];
            buckets.push((b as f64 / 1e9, running));
        }
        running += counts[self.bounds_ns.len()];
        buckets.push((f64::INFINITY, running));
        HistogramSnapshot {
            buckets,
            count: running,
            sum_seconds: sum_ns as f64 / 1e9,
        }
    }
}

/// How a client connection was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Spliced byte for byte after one decision (TCP mode, or opaque and
    /// passed-through TLS bytes in `auto`).
    Tcp,
    /// Served as HTTP in the clear, a decision per request.
    Http,
    /// TLS terminated here, then served as HTTP.
    Tls,
    /// A QUIC connection (HTTP/3).
    H3,
}

impl Path {
    /// Every path, in label order.
    pub const ALL: [Path; 4] = [Path::Tcp, Path::Http, Path::Tls, Path::H3];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Tcp => "tcp",
            Path::Http => "http",
            Path::Tls => "tls",
            Path::H3 => "h3",
        }
    }
}

/// The HTTP version of a request served in HTTP mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// HTTP/1.x.
    Http1,
    /// HTTP/2.
    Http2,
    /// HTTP/3.
    Http3,
}

impl HttpVersion {
    /// Every version, in label order.
    pub const ALL: [HttpVersion; 3] = [HttpVersion::Http1, HttpVersion::Http2, HttpVersion::Http3];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpVersion::Http1 => "http1",
            HttpVersion::Http2 => "http2",
            HttpVersion::Http3 => "http3",
        }
    }
}

/// Sniffing: 10 us to 10 s, doubling (a slow client can take up to the
/// head timeout).
const SNIFF_BOUNDS_NS: [u64; 21] = {
    let mut b = [0u64; 21];
    let mut k = 0;
    while k < 21 {
        b[k] = 10_000 << k;
        k += 1;
    }
    b
};

/// Decisions: 64 ns to about 1 ms, doubling.
pub(crate) const DECISION_BOUNDS_NS: [u64; 15] = {
    let mut b = [0u64; 15];
    let mut k = 0;
    while k < 15 {
        b[k] = 64 << k;
        k += 1;
    }
    b
};

/// Process-wide figures of the request path.
pub struct Metrics {
    connections: [Counter; 4],
    open: [Gauge; 4],
    requests: [Counter; 3],
    errors: [Counter; Kind::ALL.len()],
    /// Time from accept to a complete head (or to giving up on one).
    pub sniff: Histogram,
}

impl Metrics {
    const fn new() -> Metrics {
        Metrics {
            connections: [const { Counter::new() }; 4],
            open: [const { Gauge::new() }; 4],
            requests: [const { Counter::new() }; 3],
            errors: [const { Counter::new() }; Kind::ALL.len()],
            sniff: Histogram::new(&SNIFF_BOUNDS_NS),
        }
    }

    /// A connection now served by `path`; it counts as open until the
    /// guard drops.
    pub fn connection(&'static self, path: Path) -> OpenConnection {
        self.connections[path as usize].inc();
        self.open[path as usize].add(1);
        OpenConnection {
            metrics: self,
            path,
        }
    }

    /// One request in HTTP mode.
    #[inline]
    pub fn request(&self, version: HttpVersion) {
        self.requests[version as usize].inc();
    }

    /// One failure, by kind (a connection refused, a backend attempt that
    /// failed, a request answered with an error).
    #[inline]
    pub fn error(&self, kind: Kind) {
        self.errors[kind as usize].inc();
    }

    /// Connections served by `path` so far.
    pub fn connections(&self, path: Path) -> u64 {
        self.connections[path as usize].get()
    }

    /// Connections open on `path`.
    pub fn open(&self, path: Path) -> u64 {
        self.open[path as usize].get()
    }

    /// Requests of `version` so far.
    pub fn requests(&self, version: HttpVersion) -> u64 {
        self.requests[version as usize].get()
    }

    /// Failures of `kind` so far.
    pub fn errors(&self, kind: Kind) -> u64 {
        self.errors[kind as usize].get()
    }
}

/// The process's figures.
pub static METRICS: Metrics = Metrics::new();

/// Counts a connection as open until dropped.
#[derive(Debug)]
pub struct OpenConnection {
    metrics: &'static Metrics,
    path: Path,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.open[self.path as usize].add(-1);
    }
}

/// Writes every figure in the Prometheus text format (version 0.0.4):
/// the process's, the strategy's and each backend's.
pub fn render(out: &mut String, strategy: &StrategyStatus, backends: &BackendList) {
    let m = &METRICS;
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
    };
    family(
        out,
        "switchyard_connections_total",
        "counter",
        "Client connections, by how they were served (tcp: spliced; http, tls: HTTP mode; h3: QUIC).",
    );
    for p in Path::ALL {
        let _ = writeln!(
            out,
            "switchyard_connections_total{{path=\"{}\"}} {}",
            p.as_str(),
            m.connections(p)
        );
    }
    family(
        out,
        "switchyard_connections_active",
        "gauge",
        "Client connections open now.",
    );
    for p in Path::ALL {
        let _ = writeln!(
            out,
            "switchyard_connections_active{{path=\"{}\"}} {}",
            p.as_str(),
            m.open(p)
        );
    }
    family(
        out,
        "switchyard_requests_total",
        "counter",
        "Requests served in HTTP mode, by HTTP version (each one a strategy decision).",
    );
    for v in HttpVersion::ALL {
        let _ = writeln!(
            out,
            "switchyard_requests_total{{protocol=\"{}\"}} {}",
            v.as_str(),
            m.requests(v)
        );
    }
    family(
        out,
        "switchyard_proxy_errors_total",
        "counter",
        "Failures by kind: connections refused, backend attempts failed, error answers.",
    );
    for k in Kind::ALL {
        let _ = writeln!(
            out,
            "switchyard_proxy_errors_total{{kind=\"{}\"}} {}",
            k.as_str(),
            m.errors(k)
        );
    }
    family(
        out,
        "switchyard_sniff_duration_seconds",
        "histogram",
        "Time from accept to a complete request head, ClientHello or opaque verdict.",
    );
    histogram(
        out,
        "switchyard_sniff_duration_seconds",
        &m.sniff.snapshot(),
    );

    let s = strategy;
    family(
        out,
        "switchyard_strategy_info",
        "gauge",
        "The strategy serving now (value 1).",
    );
    let _ = writeln!(
        out,
        "switchyard_strategy_info{{name=\"{}\",sha256=\"{}\",generation=\"{}\"}} 1",
        escape(&s.name),
        s.sha256,
        s.generation
    );
    family(
        out,
        "switchyard_strategy_decisions_total",
        "counter",
        "Decisions, by who made them (wasm: the module; fallback: the native fallback).",
    );
    let fallbacks: u64 = s.fallbacks.iter().map(|(_, n)| n).sum();
    let _ = writeln!(
        out,
        "switchyard_strategy_decisions_total{{by=\"wasm\"}} {}",
        s.wasm_decisions
    );
    let _ = writeln!(
        out,
        "switchyard_strategy_decisions_total{{by=\"fallback\"}} {fallbacks}"
    );
    family(
        out,
        "switchyard_strategy_fallbacks_total",
        "counter",
        "Decisions the native fallback made, by why the module's answer was not used.",
    );
    for r in FallbackReason::ALL {
        let n = s
            .fallbacks
            .iter()
            .find(|(x, _)| *x == r)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(
            out,
            "switchyard_strategy_fallbacks_total{{reason=\"{}\"}} {n}",
            r.as_str()
        );
    }
    let (applied, rejected) = crate::reload::reloads();
    family(
        out,
        "switchyard_config_reloads_total",
        "counter",
        "Configuration reloads (SIGHUP), by result.",
    );
    let _ = writeln!(
        out,
        "switchyard_config_reloads_total{{result=\"applied\"}} {applied}"
    );
    let _ = writeln!(
        out,
        "switchyard_config_reloads_total{{result=\"rejected\"}} {rejected}"
    );
    let last = crate::reload::last();
    family(
        out,
        "switchyard_config_last_reload_successful",
        "gauge",
        "1 if the last configuration reload applied (or none was tried), 0 if it was rejected.",
    );
    let _ = writeln!(
        out,
        "switchyard_config_last_reload_successful {}",
        u8::from(last.as_ref().is_none_or(|l| l.error.is_none()))
    );
    family(
        out,
        "switchyard_config_restart_pending",
        "gauge",
        "Settings changed in the configuration that take effect only after a restart.",
    );
    let _ = writeln!(
        out,
        "switchyard_config_restart_pending {}",
        last.as_ref().map_or(0, |l| l.need_restart.len())
    );
    family(
        out,
        "switchyard_strategy_swaps_total",
        "counter",
        "Modules swapped in since start.",
    );
    let _ = writeln!(out, "switchyard_strategy_swaps_total {}", s.swaps);
    family(
        out,
        "switchyard_strategy_rejections_total",
        "counter",
        "Modules refused since start (the old one kept serving).",
    );
    let _ = writeln!(out, "switchyard_strategy_rejections_total {}", s.rejections);
    family(
        out,
        "switchyard_strategy_degraded",
        "gauge",
        "1 while the module fails repeatedly and is skipped or about to be.",
    );
    let _ = writeln!(out, "switchyard_strategy_degraded {}", s.degraded as u8);
    family(
        out,
        "switchyard_strategy_decision_duration_seconds",
        "histogram",
        "Time of one decision (encode, call, checks), sampled: one decision in 16.",
    );
    histogram(
        out,
        "switchyard_strategy_decision_duration_seconds",
        &s.latency,
    );

    if let Some(sh) = &s.shadow {
        family(
            out,
            "switchyard_shadow_info",
            "gauge",
            "The shadow strategy, run on every decision's inputs without routing (value 1).",
        );
        let _ = writeln!(
            out,
            "switchyard_shadow_info{{name=\"{}\",sha256=\"{}\"}} 1",
            escape(&sh.name),
            sh.sha256
        );
        family(
            out,
            "switchyard_shadow_decisions_total",
            "counter",
            "Shadow decisions: agreed (same backend as the real decision), disagreed, failed.",
        );
        for (result, n) in [
            ("agreed", sh.agreed),
            ("disagreed", sh.disagreed),
            ("failed", sh.failed),
        ] {
            let _ = writeln!(
                out,
                "switchyard_shadow_decisions_total{{result=\"{result}\"}} {n}"
            );
        }
        family(
            out,
            "switchyard_shadow_decision_duration_seconds",
            "histogram",
            "Time of each shadow decision.",
        );
        histogram(
            out,
            "switchyard_shadow_decision_duration_seconds",
            &sh.latency,
        );
    }

    let now = crate::clock::now_ms();
    // No `addr` here: a worker's address alternates between two ports on
    // every rolling reload (and changes on upgrades), and each change would
    // start new series for every figure. It is on the info metric below.
    let label = |b: &crate::backends::Backend| {
        format!("backend=\"{}\",id=\"{}\"", escape(b.name()), b.id())
    };
    family(
        out,
        "switchyard_backend_info",
        "gauge",
        "1 per backend, with its current address.",
    );
    for b in backends.iter() {
        let _ = writeln!(
            out,
            "switchyard_backend_info{{{},addr=\"{}\"}} 1",
            label(b),
            b.addr()
        );
    }
    family(
        out,
        "switchyard_backends_healthy",
        "gauge",
        "Backends up and not draining.",
    );
    let healthy = backends
        .iter()
        .filter(|b| b.is_up() && !b.is_draining())
        .count();
    let _ = writeln!(out, "switchyard_backends_healthy {healthy}");
    type Field = fn(&crate::backends::Backend, u64) -> String;
    let per_backend: [(&str, &str, &str, Field); 8] = [
        (
            "switchyard_backend_up",
            "gauge",
            "1 if alive and passing health checks.",
            |b, _| (b.is_up() as u8).to_string(),
        ),
        (
            "switchyard_backend_draining",
            "gauge",
            "1 while taking no new work.",
            |b, _| (b.is_draining() as u8).to_string(),
        ),
        (
            "switchyard_backend_active_connections",
            "gauge",
            "Connections open to it.",
            |b, _| b.active().to_string(),
        ),
        (
            "switchyard_backend_in_flight_requests",
            "gauge",
            "Requests or connections routed to it and not finished.",
            |b, n| b.stats(n).in_flight.to_string(),
        ),
        (
            "switchyard_backend_requests_total",
            "counter",
            "Connections (TCP mode) or requests (HTTP mode) routed to it.",
            |b, _| b.total().to_string(),
        ),
        (
            "switchyard_backend_failures_total",
            "counter",
            "Failed connects and responses that never started.",
            |b, _| b.failures_total().to_string(),
        ),
        (
            "switchyard_backend_connect_latency_seconds",
            "gauge",
            "Connect latency, moving average (alpha 1/8).",
            |b, n| format!("{}", b.stats(n).ewma_us as f64 / 1e6),
        ),
        (
            "switchyard_backend_heartbeat_age_seconds",
            "gauge",
            "Time since its last telemetry sample or passing health check.",
            |b, n| format!("{}", b.heartbeat_age_ms(n) as f64 / 1e3),
        ),
    ];
    for (name, kind, help, value) in per_backend {
        family(out, name, kind, help);
        for b in backends.iter() {
            let _ = writeln!(out, "{name}{{{}}} {}", label(b), value(b, now));
        }
    }
    let workers: Vec<_> = backends
        .iter()
        .filter(|b| b.worker_index().is_some())
        .collect();
    family(
        out,
        "switchyard_worker_info",
        "gauge",
        "A worker slot and the pid of its process (value 1); the other worker series carry no pid, so that a restart does not start a new series.",
    );
    for b in &workers {
        let _ = writeln!(
            out,
            "switchyard_worker_info{{worker=\"{}\",pid=\"{}\",addr=\"{}\"}} 1",
            b.worker_index().unwrap_or(0),
            b.pid(),
            b.addr()
        );
    }
    let per_worker: [(&str, &str, &str, Field); 4] = [
        (
            "switchyard_worker_cpu_ratio",
            "gauge",
            "Worker CPU, share of one core (1 = one core busy).",
            |b, n| format!("{}", b.stats(n).cpu_permille as f64 / 1000.0),
        ),
        (
            "switchyard_worker_resident_memory_bytes",
            "gauge",
            "Worker resident set size.",
            |b, n| b.stats(n).rss_bytes.to_string(),
        ),
        (
            "switchyard_worker_restarts_total",
            "counter",
            "Times the worker process was started again after it exited (a rolling reload's replacement is not a restart).",
            |b, _| b.restarts().to_string(),
        ),
        (
            "switchyard_worker_up",
            "gauge",
            "1 if the worker process runs and accepts connections.",
            |b, _| (b.is_alive() as u8).to_string(),
        ),
    ];
    for (name, kind, help, value) in per_worker {
        family(out, name, kind, help);
        for b in &workers {
            let _ = writeln!(
                out,
                "{name}{{worker=\"{}\"}} {}",
                b.worker_index().unwrap_or(0),
                value(b, now)
            );
        }
    }
}

fn histogram(out: &mut String, name: &str, h: &HistogramSnapshot) {
    for (le, n) in &h.buckets {
        if le.is_infinite() {
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        } else {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
        }
    }
    let _ = writeln!(out, "{name}_sum {}", h.sum_seconds);
    let _ = writeln!(out, "{name}_count {}", h.count);
}

/// A label value as the text format wants it: `\`, `"` and newlines
/// escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_sum_across_threads() {
        static C: Counter = Counter::new();
        static G: Gauge = Gauge::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        C.inc();
                        G.add(1);
                    }
                });
            }
        });
        // Opened on four threads, closed on one: the sum is what counts.
        for _ in 0..4000 {
            G.add(-1);
        }
        assert_eq!(C.get(), 4000);
        assert_eq!(G.get(), 0);
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_the_sum() {
        static H: Histogram = Histogram::new(&[1_000, 10_000]);
        H.observe(Duration::from_nanos(500));
        H.observe(Duration::from_nanos(1_000));
        H.observe(Duration::from_nanos(5_000));
        H.observe(Duration::from_secs(1));
        let s = H.snapshot();
        assert_eq!(
            s.buckets,
            vec![(1e-6, 2), (1e-5, 3), (f64::INFINITY, 4)],
            "le is inclusive"
        );
        assert_eq!(s.count, 4);
        assert!((s.sum_seconds - 1.0000065).abs() < 1e-12);
    }
}
