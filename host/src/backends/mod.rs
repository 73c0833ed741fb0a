//! The backends a strategy chooses among, with the live stats it sees: the
//! set ([`Backends`]), each backend and what happens to it ([`Backend`]),
//! where they come from ([`spec`] for static ones, [`supervisor`] for
//! workers), and how their health and load are learned ([`health`],
//! [`telemetry`]).
//!
//! A [`Backend`] is shared by the listener threads (connection counts), the
//! supervisor (process state, telemetry) and the health checker, so its state
//! is atomics behind methods that name events: a connect failed, a response
//! started, a health check passed, a drain began. The request path never
//! takes a lock. The set sits behind an `ArcSwap` and is replaced whole when
//! the backends file changes; a connection keeps its `Arc<Backend>` until it
//! closes, so a removed backend drains: its open connections finish and it
//! gets no new ones.

pub mod health;
pub mod spec;
pub mod supervisor;
pub mod telemetry;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::clock;
use crate::strategy::{CandidateStats, FLAG_DRAINING, FLAG_HEALTHY};
pub use spec::BackendSpec;

/// A backend's stable id, reported to strategies (consistent hashing keys on
/// it). Workers use their index; static backends a hash of their name (the
/// `name=` given in the file, else the address as written), so reordering
/// the backends file or restarting moves no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(pub u32);

impl BackendId {
    /// Worker `index`'s id.
    pub fn worker(index: u32) -> BackendId {
        BackendId(index)
    }

    /// A static backend's id: FNV-1a of `name`, in the upper half of the id
    /// space so it never meets a worker's.
    pub fn named(name: &str) -> BackendId {
        let mut h: u32 = 0x811c_9dc5;
        for &b in name.as_bytes() {
            h ^= b as u32;
            h = h.wrapping_mul(0x0100_0193);
        }
        BackendId(0x8000_0000 | (h & 0x7fff_ffff))
    }
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a health check result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    /// Nothing.
    None,
    /// It was unhealthy and passed.
    Recovered,
    /// It failed this many checks in a row (or its last pass is stale) and is
    /// now unhealthy.
    Failed(u32),
}

/// One backend server.
#[derive(Debug)]
pub struct Backend {
    id: BackendId,
    addr: SocketAddr,
    /// For logs: the address as written, or the name given.
    name: Box<str>,
    /// Supervised worker index.
    worker: Option<u32>,
    weight: u32,
    /// The process is up and its port accepted a connection (always true for
    /// static backends).
    alive: AtomicBool,
    /// Active health checks pass and passive ejection has not tripped.
    healthy: AtomicBool,
    /// Taking no new work; open connections finish.
    draining: AtomicBool,
    /// Open client connections.
    active: AtomicU32,
    /// Requests in flight (equal to `active` in TCP mode).
    in_flight: AtomicU32,
    /// Connections or requests routed here.
    total: AtomicU64,
    /// Failures (connect, or closed before responding) since the last
    /// response or passing check.
    consecutive_failures: AtomicU32,
    /// Failures in the recent window (decays on success).
    recent_failures: AtomicU32,
    /// EWMA of connect latency, microseconds.
    ewma_us: AtomicU32,
    /// Worker CPU, permille of one core.
    cpu_permille: AtomicU32,
    /// Worker RSS, bytes.
    rss_bytes: AtomicU64,
    /// Clock (ms) of the last telemetry sample or passing health check.
    last_heartbeat_ms: AtomicU64,
    /// Clock (ms) of the last passing health check.
    last_check_ok_ms: AtomicU64,
    /// Active health checks failed in a row.
    check_failures: AtomicU32,
    /// Worker process id, 0 when none runs.
    pid: AtomicU32,
    /// Woken when a draining backend's last connection closes.
    drained: Notify,
    /// Failures counted since start (connects, responses never started).
    failures_total: AtomicU64,
    /// Times its worker process started (the first start included).
    starts: AtomicU64,
    /// Bumped after every change a strategy can see, except the heartbeat
    /// age (which the clock changes): an instance that wrote this backend's
    /// record at version v rewrites it only when the version moved.
    version: AtomicU64,
}

impl Backend {
    fn new(
        id: BackendId,
        addr: SocketAddr,
        name: String,
        worker: Option<u32>,
        weight: u32,
    ) -> Backend {
        let now = clock::now_ms();
        Backend {
            id,
            addr,
            name: name.into(),
            worker,
            weight,
            alive: AtomicBool::new(worker.is_none()),
            healthy: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            active: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            total: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            recent_failures: AtomicU32::new(0),
            ewma_us: AtomicU32::new(0),
            cpu_permille: AtomicU32::new(0),
            rss_bytes: AtomicU64::new(0),
            last_heartbeat_ms: AtomicU64::new(now),
            last_check_ok_ms: AtomicU64::new(now),
            check_failures: AtomicU32::new(0),
            pid: AtomicU32::new(0),
            drained: Notify::new(),
            version: AtomicU64::new(0),
            failures_total: AtomicU64::new(0),
            starts: AtomicU64::new(0),
        }
    }

    /// Supervised worker `index` at `addr`; not alive until its supervisor
    /// says it is ready.
    pub fn worker(index: u32, addr: SocketAddr) -> Backend {
        Backend::new(
            BackendId::worker(index),
            addr,
            format!("worker {index}"),
            Some(index),
            1,
        )
    }

    /// A static backend, alive from the start.
    pub fn from_spec(spec: &BackendSpec) -> Backend {
        Backend::new(spec.id, spec.addr, spec.name.clone(), None, spec.weight)
    }

    // ---- what it is ------------------------------------------------------

    /// Stable id.
    pub fn id(&self) -> BackendId {
        self.id
    }
    /// Where to connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Its name in logs (`worker 2`, or a static backend's name or address).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Supervised worker index, `None` for a static backend.
    pub fn worker_index(&self) -> Option<u32> {
        self.worker
    }
    /// Configured weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    // ---- what state it is in --------------------------------------------

    /// The process is up (always, for a static backend).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
    /// Alive and healthy.
    #[inline]
    pub fn is_up(&self) -> bool {
        self.is_alive() && self.healthy.load(Ordering::Relaxed)
    }
    /// Taking no new work.
    #[inline]
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
    /// Open client connections.
    #[inline]
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }
    /// Connections or requests routed here in total.
    #[inline]
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
    /// Worker process id, 0 when none runs.
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Relaxed)
    }
    /// Failures since start.
    pub fn failures_total(&self) -> u64 {
        self.failures_total.load(Ordering::Relaxed)
    }
    /// Times its worker process was started again after the first.
    pub fn restarts(&self) -> u64 {
        self.starts.load(Ordering::Relaxed).saturating_sub(1)
    }
    /// Failures in a row.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// The version of what [`Backend::stats`] returns, but for the
    /// heartbeat age. Load it before the stats: a change made meanwhile
    /// moves it again, so the next reader rewrites.
    #[inline]
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Milliseconds since the last heartbeat, at clock `now_ms`.
    #[inline]
    pub fn heartbeat_age_ms(&self, now_ms: u64) -> u32 {
        now_ms
            .saturating_sub(self.last_heartbeat_ms.load(Ordering::Relaxed))
            .min(u32::MAX as u64) as u32
    }

    /// After the fields changed: see `version`.
    #[inline]
    fn changed(&self) {
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The stats a strategy sees, at clock `now_ms`.
    #[inline]
    pub fn stats(&self, now_ms: u64) -> CandidateStats {
        let mut flags = 0;
        if self.is_up() {
            flags |= FLAG_HEALTHY;
        }
        if self.is_draining() {
            flags |= FLAG_DRAINING;
        }
        CandidateStats {
            id: self.id.0,
            worker: self.worker.unwrap_or(u32::MAX),
            flags,
            weight: self.weight,
            active: self.active(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            total: self.total(),
            failures: self.recent_failures.load(Ordering::Relaxed),
            ewma_us: self.ewma_us.load(Ordering::Relaxed),
            cpu_permille: self.cpu_permille.load(Ordering::Relaxed),
            heartbeat_age_ms: self.heartbeat_age_ms(now_ms),
            rss_bytes: self.rss_bytes.load(Ordering::Relaxed),
            reserved: 0,
        }
    }

    // ---- what happens to it ---------------------------------------------

    /// A connect succeeded after `us` microseconds.
    pub fn connected(&self, us: u64) {
        // EWMA with alpha = 1/8; races between threads only lose a sample.
        let old = self.ewma_us.load(Ordering::Relaxed) as u64;
        let new = if old == 0 { us } else { (old * 7 + us) / 8 };
        self.ewma_us
            .store(new.min(u32::MAX as u64) as u32, Ordering::Relaxed);
        self.changed();
    }

    /// Its first response byte arrived: it works.
    pub fn responded(&self) {
        // Load first: an unconditional store would bounce the cache line
        // between serving threads on every connection.
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if self.recent_failures.load(Ordering::Relaxed) != 0 {
            let _ = self
                .recent_failures
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                    (f > 0).then(|| f - 1)
                });
            self.changed();
        }
    }

    /// A connect failed, or the backend closed before its first response
    /// byte. Returns the failures in a row if this one ejected it (it reached
    /// `eject_after` and the backend was healthy until now).
    pub fn failed(&self, eject_after: u32) -> Option<u32> {
        self.recent_failures.fetch_add(1, Ordering::Relaxed);
        self.failures_total.fetch_add(1, Ordering::Relaxed);
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let ejected = n >= eject_after && self.healthy.swap(false, Ordering::Relaxed);
        self.changed();
        ejected.then_some(n)
    }

    /// An active health check's result. `fall` failures in a row, or a last
    /// pass older than `stale_after_ms`, make it unhealthy; one pass makes it
    /// healthy again.
    pub fn health_checked(&self, ok: bool, fall: u32, stale_after_ms: u64) -> HealthChange {
        let now = clock::now_ms();
        if ok {
            self.check_failures.store(0, Ordering::Relaxed);
            self.last_check_ok_ms.store(now, Ordering::Relaxed);
            self.last_heartbeat_ms.fetch_max(now, Ordering::Relaxed);
            self.consecutive_failures.store(0, Ordering::Relaxed);
            let was = self.healthy.swap(true, Ordering::Relaxed);
            // The heartbeat moved too: a cached age would be off until the
            // clock's next millisecond.
            self.changed();
            return match was {
                false => HealthChange::Recovered,
                true => HealthChange::None,
            };
        }
        let fails = self.check_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let stale =
            now.saturating_sub(self.last_check_ok_ms.load(Ordering::Relaxed)) > stale_after_ms;
        if (fails >= fall || stale) && self.healthy.swap(false, Ordering::Relaxed) {
            self.changed();
            HealthChange::Failed(fails)
        } else {
            HealthChange::None
        }
    }

    /// A telemetry sample of its worker process.
    pub fn sampled(&self, cpu_permille: u32, rss_bytes: u64) {
        self.cpu_permille.store(cpu_permille, Ordering::Relaxed);
        self.rss_bytes.store(rss_bytes, Ordering::Relaxed);
        self.last_heartbeat_ms
            .store(clock::now_ms(), Ordering::Relaxed);
        self.changed();
    }

    /// Takes over the counts that belong to the worker slot rather than to
    /// one process (a rolling reload's replacement of `old`).
    pub fn carry_over(&self, old: &Backend) {
        // The replacement's own start is a deploy, not a restart: it
        // counts once `process_started` adds it.
        self.starts.store(
            old.starts.load(Ordering::Relaxed).saturating_sub(1),
            Ordering::Relaxed,
        );
        self.failures_total.store(
            old.failures_total.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }

    /// Its worker process `pid` started (not yet ready).
    pub fn process_started(&self, pid: u32) {
        self.starts.fetch_add(1, Ordering::Relaxed);
        self.pid.store(pid, Ordering::Relaxed);
    }

    /// Its worker accepts connections: publish it to the strategy.
    pub fn ready(&self) {
        self.healthy.store(true, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.check_failures.store(0, Ordering::Relaxed);
        let now = clock::now_ms();
        self.last_heartbeat_ms.store(now, Ordering::Relaxed);
        self.last_check_ok_ms.store(now, Ordering::Relaxed);
        self.alive.store(true, Ordering::Relaxed);
        self.changed();
    }

    /// Its worker stopped: unpublish it at once.
    pub fn exited(&self) {
        self.alive.store(false, Ordering::Relaxed);
        self.pid.store(0, Ordering::Relaxed);
        self.changed();
    }

    /// Stop sending it new work; open connections finish.
    pub fn drain(&self) {
        // SeqCst with the guard's decrement: one of the two sees the other,
        // so "drained" is never missed (no cost on x86: a locked op either way).
        self.draining.store(true, Ordering::SeqCst);
        self.changed();
        if self.active.load(Ordering::SeqCst) == 0 {
            self.drained.notify_waiters();
        }
    }

    /// Send it new work again.
    pub fn undrain(&self) {
        self.draining.store(false, Ordering::Relaxed);
        self.changed();
    }

    /// Resolves once it is draining and its last connection has closed.
    pub async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            if self.is_draining() && self.active() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Counts a new connection (and request, in TCP mode) until the guard
    /// drops: RAII, so every exit path, panics and cancellation included,
    /// gives it back.
    pub fn open_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        self.changed();
        ConnectionGuard(self.clone())
    }
}

/// One open connection's share of a backend's `active` and `in_flight`.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<Backend>);

impl ConnectionGuard {
    /// The backend.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let b = &self.0;
        b.in_flight.fetch_sub(1, Ordering::Relaxed);
        let last = b.active.fetch_sub(1, Ordering::SeqCst) == 1;
        b.changed();
        if last && b.draining.load(Ordering::SeqCst) {
            tracing::info!(backend = %b.name, addr = %b.addr, "backend drained");
            b.drained.notify_waiters();
        }
    }
}

/// One version of the backend set, in id order. Its `id` is unique in the
/// process: an instance that wrote the candidate table for one list knows a
/// different list when it sees one (see `strategy::table`).
#[derive(Debug)]
pub struct BackendList {
    id: u64,
    list: Vec<Arc<Backend>>,
}

impl BackendList {
    fn new(list: Vec<Arc<Backend>>) -> BackendList {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        BackendList {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            list,
        }
    }

    /// Unique in the process; never 0.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Default for BackendList {
    fn default() -> BackendList {
        BackendList::new(Vec::new())
    }
}

impl std::ops::Deref for BackendList {
    type Target = [Arc<Backend>];
    fn deref(&self) -> &[Arc<Backend>] {
        &self.list
    }
}

/// A strategy reads a list's stats straight from the backends: only the
/// records whose version moved are encoded again.
impl crate::strategy::CandidateSource for BackendList {
    fn len(&self) -> usize {
        self.list.len()
    }
    fn set_id(&self) -> u64 {
        self.id
    }
    #[inline]
    fn version(&self, i: usize) -> u64 {
        self.list[i].version()
    }
    #[inline]
    fn stats(&self, i: usize, now_ms: u64) -> CandidateStats {
        self.list[i].stats(now_ms)
    }
    #[inline]
    fn heartbeat_age_ms(&self, i: usize, now_ms: u64) -> u32 {
        self.list[i].heartbeat_age_ms(now_ms)
    }
    #[inline]
    fn usable(&self, i: usize) -> bool {
        let b = &self.list[i];
        b.weight > 0 && b.is_up() && !b.is_draining()
    }
}

/// The current backend set, in id order.
#[derive(Debug, Default)]
pub struct Backends {
    set: ArcSwap<BackendList>,
}

impl Backends {
    /// An empty set.
    pub fn new() -> Backends {
        Backends::default()
    }

    /// The current list (one atomic load).
    pub fn load(&self) -> Arc<BackendList> {
        self.set.load_full()
    }

    /// The backend with `id`, if in the set.
    pub fn get(&self, id: BackendId) -> Option<Arc<Backend>> {
        self.set.load().iter().find(|b| b.id == id).cloned()
    }

    /// Adds a backend, or replaces the one with its id.
    pub fn add(&self, backend: Arc<Backend>) {
        self.set.rcu(|cur| {
            let mut v: Vec<Arc<Backend>> =
                cur.iter().filter(|b| b.id != backend.id).cloned().collect();
            v.push(backend.clone());
            v.sort_by_key(|b| b.id);
            BackendList::new(v)
        });
    }

    /// Takes the backend with `id` out of the set (it gets no new work);
    /// returns it.
    pub fn remove(&self, id: BackendId) -> Option<Arc<Backend>> {
        let found = self.get(id)?;
        self.set
            .rcu(|cur| BackendList::new(cur.iter().filter(|b| b.id != id).cloned().collect()));
        Some(found)
    }

    /// Makes the static backends exactly `specs`, keeping the workers. An
    /// unchanged entry (same id, address and weight) keeps its live
    /// counters; a removed one drains. Returns the removed ones.
    pub fn set_static(&self, specs: &[BackendSpec]) -> Vec<Arc<Backend>> {
        let current = self.load();
        let mut next: Vec<Arc<Backend>> = current
            .iter()
            .filter(|b| b.worker.is_some())
            .cloned()
            .collect();
        for s in specs {
            match current
                .iter()
                .find(|b| b.id == s.id && b.addr == s.addr && b.weight == s.weight)
            {
                Some(b) => next.push(b.clone()),
                None => next.push(Arc::new(Backend::from_spec(s))),
            }
        }
        next.sort_by_key(|b| b.id);
        let removed: Vec<Arc<Backend>> = current
            .iter()
            .filter(|b| !next.iter().any(|n| Arc::ptr_eq(n, b)))
            .cloned()
            .collect();
        self.set.store(Arc::new(BackendList::new(next)));
        for b in &removed {
            b.drain();
            tracing::info!(
                backend = %b.name,
                addr = %b.addr,
                open = b.active(),
                "backend removed; draining its open connections"
            );
        }
        removed
    }

    /// Fills `out` with every backend's stats.
    pub fn snapshot(list: &[Arc<Backend>], out: &mut Vec<CandidateStats>) {
        let now = clock::now_ms();
        out.clear();
        out.extend(list.iter().map(|b| b.stats(now)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(line: &str) -> BackendSpec {
        line.parse().unwrap()
    }

    #[test]
    fn static_ids_come_from_the_name_not_the_position() {
        let a = spec("127.0.0.1:9001");
        let b = spec("127.0.0.1:9002 3");
        let named = spec("127.0.0.1:9003 name=blue");
        assert_eq!(a.id, BackendId::named("127.0.0.1:9001"));
        assert_eq!(named.id, BackendId::named("blue"));
        assert!(a.id.0 >= 0x8000_0000, "never a worker's id");
        let set = Backends::new();
        set.set_static(&[a.clone(), b.clone()]);
        let ids: Vec<BackendId> = set.load().iter().map(|x| x.id()).collect();
        set.set_static(&[b, a]);
        let again: Vec<BackendId> = set.load().iter().map(|x| x.id()).collect();
        assert_eq!(ids, again);
    }

    #[test]
    fn removed_backends_drain_and_kept_ones_keep_their_counters() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let set = Backends::new();
        set.set_static(&[spec("127.0.0.1:9001"), spec("127.0.0.1:9002")]);
        let list = set.load();
        let (a, b) = (list[0].clone(), list[1].clone());
        let guard_a = a.open_connection();
        let _guard_b = b.open_connection();
        let removed = set.set_static(&[spec(b.name())]);
        assert_eq!(removed.len(), 1);
        assert!(Arc::ptr_eq(&removed[0], &a));
        assert!(a.is_draining() && a.stats(0).flags & FLAG_DRAINING != 0);
        assert!(Arc::ptr_eq(&set.load()[0], &b), "kept, with its counters");
        assert_eq!(b.active(), 1);
        rt.block_on(async {
            let waiter = tokio::spawn({
                let a = a.clone();
                async move { a.drained().await }
            });
            tokio::task::yield_now().await;
            assert!(!waiter.is_finished());
            drop(guard_a);
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("drained once its last connection closed")
                .unwrap();
        });
    }

    #[test]
    fn failures_in_a_row_eject_once_and_a_response_resets_them() {
        let b = Backend::from_spec(&spec("127.0.0.1:9001"));
        assert_eq!(b.failed(3), None);
        b.responded();
        assert_eq!(b.failed(3), None);
        assert_eq!(b.failed(3), None);
        assert_eq!(b.failed(3), Some(3), "the third in a row ejects");
        assert!(!b.is_up());
        assert_eq!(b.failed(3), None, "ejected once");
        assert_eq!(b.health_checked(true, 2, 10_000), HealthChange::Recovered);
        assert!(b.is_up());
    }
}
