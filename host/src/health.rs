//! Active health checks (TCP connect or HTTP GET) and the passive ejection the
//! proxy applies after connect failures.
//!
//! A backend turns unhealthy after two failed checks in a row, or when its
//! last passing check is older than `heartbeat_stale_after_ms` (a check that
//! hangs counts as failing), or when the proxy sees `eject_after_failures`
//! connect failures in a row; one passing check makes it healthy again. With
//! `health_check = "none"`, an ejected backend is let back after one interval.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::backends::{Backend, Backends};
use crate::clock::now_ms as clock_ms;
use crate::config::{Config, HealthCheck};

/// Failed checks in a row that mark a backend unhealthy.
const FALL: u32 = 2;

/// Runs one check.
async fn check(b: &Backend, kind: &HealthCheck, timeout: Duration) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(b.addr).await?;
        if let HealthCheck::Http(path) = kind {
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: switchyard-health\r\nConnection: close\r\n\r\n",
                b.addr
            );
            s.write_all(req.as_bytes()).await?;
            let mut buf = [0u8; 16];
            let mut n = 0;
            while n < 12 {
                let k = s.read(&mut buf[n..]).await?;
                if k == 0 {
                    break;
                }
                n += k;
            }
            // "HTTP/1.1 2xx" or "3xx".
            return Ok::<bool, std::io::Error>(
                n >= 12 && buf.starts_with(b"HTTP/1.") && matches!(buf[9], b'2' | b'3'),
            );
        }
        Ok(true)
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Ok(true)))
}

/// Checks every alive backend each interval until `stop`.
pub async fn run(cfg: Arc<Config>, backends: Arc<Backends>, mut stop: watch::Receiver<bool>) {
    let interval = Duration::from_millis(cfg.raw.health_interval_ms);
    let timeout = interval.min(Duration::from_secs(2));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let mut checks = tokio::task::JoinSet::new();
        for b in backends
            .load()
            .iter()
            .filter(|b| b.alive.load(Ordering::Relaxed))
        {
            let (cfg, b) = (cfg.clone(), b.clone());
            checks.spawn(async move {
                let ok = match &cfg.health_check {
                    HealthCheck::None => true,
                    kind => check(&b, kind, timeout).await,
                };
                record(&cfg, &b, ok);
            });
        }
        while checks.join_next().await.is_some() {}
    }
}

fn record(cfg: &Config, b: &Backend, ok: bool) {
    let now = clock_ms();
    if ok {
        b.check_failures.store(0, Ordering::Relaxed);
        b.last_check_ok_ms.store(now, Ordering::Relaxed);
        b.last_heartbeat_ms.fetch_max(now, Ordering::Relaxed);
        b.consecutive_failures.store(0, Ordering::Relaxed);
        if !b.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!(backend = %b.addr, "backend healthy again");
        }
        return;
    }
    let fails = b.check_failures.fetch_add(1, Ordering::Relaxed) + 1;
    let stale = now.saturating_sub(b.last_check_ok_ms.load(Ordering::Relaxed))
        > cfg.raw.heartbeat_stale_after_ms;
    if (fails >= FALL || stale) && b.healthy.swap(false, Ordering::Relaxed) {
        tracing::warn!(backend = %b.addr, failures = fails, "backend failed health checks");
    }
}

/// Passive ejection: called by the proxy after a failed connect.
pub fn connect_failed(cfg: &Config, b: &Backend) {
    let fails = b.connect_failed();
    if fails >= cfg.raw.eject_after_failures && b.healthy.swap(false, Ordering::Relaxed) {
        tracing::warn!(backend = %b.addr, failures = fails, "backend ejected after connect failures");
    }
}
