//! Applying a changed configuration to a running balancer (SIGHUP in
//! `switchyard serve`), without dropping a connection.
//!
//! Everything is validated before anything is applied: the options, the
//! static backends (and the backends file), the strategy and the shadow
//! (compiled and dry-run off the request path). A configuration that fails
//! any of it is rejected whole, with the reason, and the running one stays.
//!
//! Then, live: static backends (removed ones drain), the strategy and its
//! configuration, the shadow, the number of workers (new ones start, removed
//! ones drain and stop), and every limit and timeout of the request path
//! (head limits, retries, timeouts, HTTP mode's options, `mode` itself). New
//! connections get the new limits; open ones finish under the ones they
//! started with. What is bound or built once at start (listen address,
//! threads, HTTP/3, TLS files, the admin API, the strategy engine's fuel,
//! memory and fallback, the access log, how workers are started) is
//! reported as needing a restart and left as it is.

use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::backends::Backends;
use crate::backends::supervisor::WorkerSet;
use crate::config::{Config, RawConfig};
use crate::proxy::Context;
use crate::strategy::{Strategy, StrategySource};
use crate::watch::WatchGuard;

/// What a reload did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Reloaded {
    /// Keys whose new values now apply.
    pub applied: Vec<&'static str>,
    /// Keys that changed but only take effect after a restart.
    pub need_restart: Vec<&'static str>,
}

/// How the last configuration reload ended, for `/status` and `/metrics`:
/// a reload's outcome was only in the log, so a rejected file or a change
/// waiting for a restart went unseen by anything that scrapes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastReload {
    /// When it ended, seconds since the Unix epoch.
    pub unix: u64,
    /// `applied` (or nothing changed) or `rejected`.
    pub result: &'static str,
    /// Why it was rejected.
    pub error: Option<String>,
    /// Keys whose new values apply.
    pub applied: Vec<&'static str>,
    /// Keys changed in the file that wait for a restart.
    pub need_restart: Vec<&'static str>,
}

static LAST: Mutex<Option<LastReload>> = Mutex::new(None);
static RELOADS: [crate::metrics::Counter; 2] = [const { crate::metrics::Counter::new() }; 2];

/// Records a reload's outcome (the SIGHUP handler calls it).
pub fn record(outcome: &Result<Reloaded, String>) {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = match outcome {
        Ok(r) => LastReload {
            unix,
            result: "applied",
            error: None,
            applied: r.applied.clone(),
            need_restart: r.need_restart.clone(),
        },
        Err(e) => LastReload {
            unix,
            result: "rejected",
            error: Some(e.clone()),
            applied: Vec::new(),
            // What a restart would still change is as before.
            need_restart: last().map(|l| l.need_restart).unwrap_or_default(),
        },
    };
    RELOADS[usize::from(outcome.is_err())].inc();
    *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some(last);
}

/// The last reload's outcome, if there was one.
pub fn last() -> Option<LastReload> {
    LAST.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Reloads so far: (applied, rejected).
pub fn reloads() -> (u64, u64) {
    (RELOADS[0].get(), RELOADS[1].get())
}

/// Applies configurations to a running balancer (see the module doc).
#[derive(Clone)]
pub struct Reloader {
    pub(crate) cfg: Arc<ArcSwap<Config>>,
    pub(crate) ctx: Arc<ArcSwapOption<Context>>,
    pub(crate) strategy: Arc<Strategy>,
    pub(crate) backends: Arc<Backends>,
    pub(crate) workers: Arc<WorkerSet>,
    /// The strategy file's and the backends file's watchers, replaced when
    /// their paths change.
    pub(crate) watchers: Arc<Mutex<Watchers>>,
    /// Duplicates of the serving listeners (whether accepts are deferred
    /// follows `server_first_after_ms`).
    pub(crate) listeners: crate::balancer::ListenerFds,
    /// One reload at a time.
    pub(crate) busy: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

/// The watchers a reload may replace.
#[derive(Default)]
pub(crate) struct Watchers {
    pub(crate) strategy: Option<WatchGuard>,
    pub(crate) backends_file: Option<WatchGuard>,
}

impl Reloader {
    /// Validates `raw` whole, then applies what can change live. On error
    /// nothing changed and the message says why.
    pub async fn apply(&self, raw: RawConfig) -> Result<Reloaded, String> {
        let _one = self.busy.lock().await;
        let old = self.cfg.load_full();
        let new = raw.validate().map_err(|e| e.to_string())?;
        let (o, n) = (old.raw(), new.raw());
        let mut done = Reloaded::default();
        // What will run: the new configuration, but the old values of what
        // only a restart changes (so `/status` shows what is in effect, and
        // the next reload says again that they wait for a restart).
        let mut effective = n.clone();
        macro_rules! restart_if_changed {
            ($($key:ident),*) => {
                $(if o.$key != n.$key {
                    done.need_restart.push(stringify!($key));
                    effective.$key = o.$key.clone();
                })*
            };
        }
        restart_if_changed!(
            host,
            port,
            threads,
            h3,
            h3_port,
            tls_cert,
            tls_key,
            admin,
            admin_token_file,
            max_connections,
            fuel,
            strategy_memory_mib,
            fallback,
            access_log,
            worker_command,
            worker_host,
            worker_env,
            base_worker_port,
            heartbeat_interval_ms,
            health_check,
            health_interval_ms,
            respawn,
            ready_timeout_ms,
            worker_stop_timeout_ms
        );
        // Validate everything that can fail before applying anything.
        let statics = crate::balancer::static_backends(&new, new.backends_file.as_deref())
            .map_err(|e| e.to_string())?;
        let strategy_changed = old.strategy != new.strategy;
        let prepared = if strategy_changed {
            let (s, spec) = (self.strategy.clone(), new.strategy.clone());
            Some(
                tokio::task::spawn_blocking(move || s.prepare(&spec))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("strategy {}: {e}", new.strategy.source))?,
            )
        } else {
            None
        };
        let shadow_changed = old.shadow != new.shadow;
        let shadow = match (&new.shadow, shadow_changed) {
            (Some((spec, _)), true) => {
                let (s, spec) = (self.strategy.clone(), spec.clone());
                Some(
                    tokio::task::spawn_blocking(move || s.prepare(&spec))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("shadow strategy: {e}"))?,
                )
            }
            _ => None,
        };
        let watch_strategy = match (&new.strategy.source, strategy_changed) {
            (StrategySource::File(_), true) => Some(()),
            _ => None,
        };
        // Apply.
        if o.backends != n.backends || o.backends_file != n.backends_file {
            self.backends.set_static(&statics);
            done.applied.push("backends");
            let mut w = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
            w.backends_file = match &new.backends_file {
                Some(path) => Some(
                    crate::balancer::watch_backends_file(
                        path,
                        self.cfg.clone(),
                        self.backends.clone(),
                    )
                    .map_err(|e| e.to_string())?,
                ),
                None => None,
            };
        }
        if let Some(p) = prepared {
            self.strategy.install(p);
            done.applied.push("strategy");
            let mut w = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
            w.strategy = match watch_strategy {
                Some(()) => Some(
                    crate::strategy::reload::watch(self.strategy.clone(), |_, _| {})
                        .map_err(|e| e.to_string())?,
                ),
                None => None,
            };
        }
        if shadow_changed {
            match (shadow, &new.shadow) {
                (Some(p), Some((_, fuel))) => self.strategy.install_shadow(p, *fuel),
                _ => {
                    let _ = self.strategy.set_shadow(None, 0);
                }
            }
            done.applied.push("shadow_strategy");
        } else if let (Some((_, a)), Some((_, b))) = (&old.shadow, &new.shadow)
            && a != b
        {
            done.need_restart.push("shadow_fuel");
            effective.shadow_fuel = o.shadow_fuel;
        }
        if old.worker_count() != new.worker_count() {
            self.workers.resize(new.worker_count()).await?;
            done.applied.push("workers");
        }
        let defer = new.sniff.defer_accept();
        if defer != old.sniff.defer_accept() {
            let listeners = self
                .listeners
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for l in listeners.iter() {
                crate::listener::defer_accept(std::os::fd::AsFd::as_fd(l), defer);
            }
        }
        if let Some(cur) = self.ctx.load_full() {
            let limits_changed =
                (&old.sniff, &old.proxy, &old.http) != (&new.sniff, &new.proxy, &new.http);
            if limits_changed {
                self.ctx.store(Some(Arc::new(Context {
                    sniff: new.sniff.clone(),
                    proxy: new.proxy.clone(),
                    http: new.http.clone(),
                    graceful: cur.graceful.clone(),
                    backends: cur.backends.clone(),
                    strategy: cur.strategy.clone(),
                    tls: cur.tls.clone(),
                    alt_svc: cur.alt_svc.clone(),
                    access: cur.access.clone(),
                })));
                done.applied.push("limits");
            }
        }
        // The old values were valid, and nothing validated depends on two
        // keys of different kinds; should that change, the new one is kept.
        let new = if done.need_restart.is_empty() {
            new
        } else {
            effective.validate().unwrap_or(new)
        };
        self.cfg.store(Arc::new(new));
        Ok(done)
    }
}
