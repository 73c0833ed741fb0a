//! The backends a strategy chooses among, with the live stats it sees.
//!
//! A [`Backend`] is shared by the listener (connection counters), the
//! supervisor (telemetry, liveness) and the health checker, so every field is
//! an atomic: the request path never takes a lock. The set itself sits behind
//! an `ArcSwap` and is replaced whole when workers come and go or the backends
//! file changes; a connection keeps its `Arc<Backend>` until it closes, so its
//! counters stay exact across such changes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::clock::now_ms as clock_ms;
use crate::strategy::{CandidateStats, FLAG_DRAINING, FLAG_HEALTHY};

/// One backend server.
#[derive(Debug)]
pub struct Backend {
    /// Stable id (worker slot or position in the static list), reported to
    /// strategies so hashing survives reordering and respawns.
    pub id: u32,
    /// Where to connect.
    pub addr: SocketAddr,
    /// Supervised worker index, `u32::MAX` for a static backend.
    pub worker: u32,
    /// Configured weight.
    pub weight: u32,
    /// The process is up and its port accepted a connection (always true for
    /// static backends).
    pub alive: AtomicBool,
    /// Active health checks pass and passive ejection has not tripped.
    pub healthy: AtomicBool,
    /// Being drained: no new work.
    pub draining: AtomicBool,
    /// Open client connections.
    pub active: AtomicU32,
    /// Requests in flight (HTTP mode; equals `active` in TCP mode).
    pub in_flight: AtomicU32,
    /// Connections or requests routed here.
    pub total: AtomicU64,
    /// Connect failures since the last success.
    pub consecutive_failures: AtomicU32,
    /// Failures in the recent window (decays on success).
    pub recent_failures: AtomicU32,
    /// EWMA of connect latency, microseconds.
    pub ewma_us: AtomicU32,
    /// Worker CPU, permille of one core.
    pub cpu_permille: AtomicU32,
    /// Worker RSS, bytes.
    pub rss_bytes: AtomicU64,
    /// Host clock (ms) of the last telemetry sample or health check.
    pub last_heartbeat_ms: AtomicU64,
    /// Host clock (ms) of the last passing health check.
    pub last_check_ok_ms: AtomicU64,
    /// Active health checks failed in a row.
    pub check_failures: AtomicU32,
    /// Worker process id, 0 when none runs.
    pub pid: AtomicU32,
}

impl Backend {
    /// A backend that is not yet known to be up.
    pub fn new(id: u32, addr: SocketAddr, worker: Option<u32>, weight: u32) -> Backend {
        Backend {
            id,
            addr,
            worker: worker.unwrap_or(u32::MAX),
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
            last_heartbeat_ms: AtomicU64::new(clock_ms()),
            last_check_ok_ms: AtomicU64::new(clock_ms()),
            check_failures: AtomicU32::new(0),
            pid: AtomicU32::new(0),
        }
    }

    /// Alive and healthy.
    pub fn is_up(&self) -> bool {
        self.alive.load(Ordering::Relaxed) && self.healthy.load(Ordering::Relaxed)
    }

    /// The stats a strategy sees.
    pub fn stats(&self, now_ms: u64) -> CandidateStats {
        let mut flags = 0;
        if self.is_up() {
            flags |= FLAG_HEALTHY;
        }
        if self.draining.load(Ordering::Relaxed) {
            flags |= FLAG_DRAINING;
        }
        let active = self.active.load(Ordering::Relaxed);
        CandidateStats {
            id: self.id,
            worker: self.worker,
            flags,
            weight: self.weight,
            active,
            in_flight: self.in_flight.load(Ordering::Relaxed).max(active),
            total: self.total.load(Ordering::Relaxed),
            failures: self.recent_failures.load(Ordering::Relaxed),
            ewma_us: self.ewma_us.load(Ordering::Relaxed),
            cpu_permille: self.cpu_permille.load(Ordering::Relaxed),
            heartbeat_age_ms: now_ms
                .saturating_sub(self.last_heartbeat_ms.load(Ordering::Relaxed))
                .min(u32::MAX as u64) as u32,
            rss_bytes: self.rss_bytes.load(Ordering::Relaxed),
            reserved: 0,
        }
    }

    /// Records a successful connect that took `us` microseconds.
    pub fn connect_ok(&self, us: u64) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        let _ = self
            .recent_failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                (f > 0).then(|| f - 1)
            });
        // EWMA with alpha = 1/8; races between threads only lose a sample.
        let old = self.ewma_us.load(Ordering::Relaxed) as u64;
        let new = if old == 0 { us } else { (old * 7 + us) / 8 };
        self.ewma_us
            .store(new.min(u32::MAX as u64) as u32, Ordering::Relaxed);
    }

    /// Records a failed connect; returns failures in a row.
    pub fn connect_failed(&self) -> u32 {
        self.recent_failures.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts a new connection until the guard drops (RAII, so every exit
    /// path, including panics and cancellation, decrements it).
    pub fn open_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }
}

/// Holds one unit of a backend's `active` count.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<Backend>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The current backend set.
#[derive(Debug, Default)]
pub struct Backends {
    set: ArcSwap<Vec<Arc<Backend>>>,
}

impl Backends {
    /// An empty set.
    pub fn new() -> Backends {
        Backends::default()
    }

    /// The current list (one atomic load).
    pub fn load(&self) -> Arc<Vec<Arc<Backend>>> {
        self.set.load_full()
    }

    /// Replaces the list.
    pub fn store(&self, list: Vec<Arc<Backend>>) {
        self.set.store(Arc::new(list));
    }

    /// Adds or replaces the backend with `backend.id`, keeping order by id.
    pub fn upsert(&self, backend: Arc<Backend>) {
        self.set.rcu(|cur| {
            let mut v: Vec<Arc<Backend>> =
                cur.iter().filter(|b| b.id != backend.id).cloned().collect();
            v.push(backend.clone());
            v.sort_by_key(|b| b.id);
            v
        });
    }

    /// Fills `out` with every backend's stats.
    pub fn snapshot(list: &[Arc<Backend>], out: &mut Vec<CandidateStats>) {
        let now = clock_ms();
        out.clear();
        out.extend(list.iter().map(|b| b.stats(now)));
    }
}
