//! The embeddable balancer: [`Balancer::builder`] → [`Balancer::run`].
//!
//! `build` does everything that can fail up front (validate the
//! configuration, bind the listener, load and validate the strategy), so a
//! running balancer has nothing left to reject. `run` starts the workers, the
//! health checker, telemetry and file watchers, serves until the
//! [`ShutdownHandle`] says stop, drains, then terminates the workers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::backends::{Backend, Backends};
use crate::config::{Config, ConfigError, RawConfig, read_backends_file};
use crate::proxy::{self, Shared};
use crate::shutdown::ShutdownHandle;
use crate::strategy::{
    LoadError, Strategy, StrategyEngine, StrategyOptions, StrategySource, reload,
};
use crate::supervisor::{self, Control, WorkerCommand};

/// Why a balancer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The strategy was rejected.
    #[error("strategy {0}: {1}")]
    Strategy(String, LoadError),
    /// The listener could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

/// Serves one in-process worker: called with the worker index and a listener
/// bound to an ephemeral loopback port; runs until the balancer stops.
pub type WorkerFn = Arc<
    dyn Fn(u32, tokio::net::TcpListener) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// Builds a [`Balancer`].
#[derive(Default)]
pub struct BalancerBuilder {
    raw: RawConfig,
    listener: Option<std::net::TcpListener>,
    in_process: Option<(u32, WorkerFn)>,
}

impl std::fmt::Debug for BalancerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BalancerBuilder")
            .field("raw", &self.raw)
            .field("in_process_workers", &self.in_process.as_ref().map(|w| w.0))
            .finish()
    }
}

impl BalancerBuilder {
    /// Uses `raw` as the configuration (defaults otherwise).
    pub fn config(mut self, raw: RawConfig) -> Self {
        self.raw = raw;
        self
    }

    /// Serves on an already bound listener (tests bind `127.0.0.1:0`).
    pub fn listener(mut self, listener: std::net::TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Runs `n` workers as tasks in this process instead of as processes:
    /// each gets its index and a loopback listener, and is restarted (with
    /// backoff) if its future ends or panics. Replaces `workers` and
    /// `worker_command`.
    pub fn in_process_workers<F, Fut>(mut self, n: u32, serve: F) -> Self
    where
        F: Fn(u32, tokio::net::TcpListener) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.raw.workers = crate::config::Workers::Count(0);
        self.raw.worker_command.clear();
        let f: WorkerFn = Arc::new(move |i, l| Box::pin(serve(i, l)));
        self.in_process = Some((n, f));
        self
    }

    /// Validates, binds and loads the strategy.
    pub fn build(self) -> Result<Balancer, BuildError> {
        // In-process workers are backends too: zero process workers and no
        // static backends is then fine.
        let cfg = Arc::new(self.raw.validate_with(self.in_process.is_some())?);
        let listeners = listeners(self.listener, cfg.listen, cfg.threads)
            .map_err(|e| BuildError::Listen(cfg.listen, e))?;
        let engine = StrategyEngine::new(StrategyOptions {
            fuel: cfg.raw.fuel,
            max_memory: cfg.raw.strategy_memory_mib << 20,
            fallback: cfg.raw.fallback,
            ..StrategyOptions::default()
        })
        .map_err(|e| BuildError::Strategy(cfg.raw.strategy.clone(), e))?;
        let strategy = Strategy::load(engine, &cfg.strategy)
            .map_err(|e| BuildError::Strategy(cfg.raw.strategy.clone(), e))?;
        Ok(Balancer {
            cfg,
            listeners,
            strategy: Arc::new(strategy),
            backends: Arc::new(Backends::new()),
            shutdown: ShutdownHandle::new(),
            in_process: self.in_process,
        })
    }
}

/// Binds a listening socket with SO_REUSEADDR (so a restart does not wait
/// for TIME_WAIT) and a deep backlog; with `reuseport`, one of a group the
/// kernel spreads new connections over.
pub(crate) fn bind(addr: SocketAddr, reuseport: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuseport {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    let l = socket.listen(4096)?;
    l.into_std()
}

/// One non-blocking listener per serving thread. Bound here: a group of
/// `SO_REUSEPORT` sockets, so each thread accepts only its own share and no
/// thread is woken for another's connection. Given by the embedder: that
/// socket, shared (each thread polls its own duplicate).
fn listeners(
    given: Option<std::net::TcpListener>,
    addr: SocketAddr,
    threads: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let threads = threads.max(1);
    let mut all = Vec::with_capacity(threads);
    match given {
        Some(l) => {
            all.push(l);
            for _ in 1..threads {
                let dup = all[0].try_clone()?;
                all.push(dup);
            }
        }
        None if threads == 1 => all.push(bind(addr, false)?),
        None => {
            // A reuseport group would silently share the port with another
            // instance's group (same user) instead of failing: bind once
            // without it first, so "address in use" still says so.
            let addr = bind(addr, false)?.local_addr()?;
            for _ in 0..threads {
                all.push(bind(addr, true)?);
            }
        }
    }
    for l in &all {
        l.set_nonblocking(true)?;
        // Accepted sockets inherit both from the listener on Linux: no
        // setsockopt per connection. Keepalive (system timings) lets the
        // kernel end connections to clients that vanished without a FIN.
        let s = socket2::SockRef::from(l);
        s.set_tcp_nodelay(true)?;
        s.set_keepalive(true)?;
    }
    Ok(all)
}

/// A configured balancer, ready to run.
pub struct Balancer {
    cfg: Arc<Config>,
    /// One per serving thread; the first is served on `run`'s runtime.
    listeners: Vec<std::net::TcpListener>,
    strategy: Arc<Strategy>,
    backends: Arc<Backends>,
    shutdown: ShutdownHandle,
    in_process: Option<(u32, WorkerFn)>,
}

impl Balancer {
    /// A builder with the default configuration.
    pub fn builder() -> BalancerBuilder {
        BalancerBuilder::default()
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.listeners[0].local_addr().unwrap_or(self.cfg.listen)
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The strategy (to inspect or hot-swap).
    pub fn strategy(&self) -> Arc<Strategy> {
        self.strategy.clone()
    }

    /// The backend set with live stats.
    pub fn backends(&self) -> Arc<Backends> {
        self.backends.clone()
    }

    /// Stops the balancer from another task.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Runs until shut down; returns after connections drained and workers
    /// exited.
    pub async fn run(self) -> std::io::Result<()> {
        let Balancer {
            cfg,
            listeners,
            strategy,
            backends,
            shutdown,
            in_process,
        } = self;
        let mut listeners = listeners.into_iter();
        let listener = tokio::net::TcpListener::from_std(listeners.next().expect("one listener"))?;
        let (stop_tx, stop_rx) = watch::channel(false);

        // Backends: supervised workers first (ids 0..workers), then static.
        let cmd = if cfg.worker_command.is_empty() {
            WorkerCommand::Demo
        } else {
            WorkerCommand::Program(cfg.worker_command.clone())
        };
        let mut workers = tokio::task::JoinSet::new();
        for i in 0..cfg.workers {
            let addr = crate::config::parse_backend(&format!(
                "{}:{}",
                cfg.worker_host,
                cfg.raw.base_worker_port as u32 + i
            ))
            .map_err(std::io::Error::other)?
            .addr;
            let b = Arc::new(Backend::new(i, addr, Some(i), 1));
            backends.upsert(b.clone());
            let control = Control {
                stop: stop_rx.clone(),
                force: shutdown.force.subscribe(),
            };
            workers.spawn(supervisor::run_worker(
                cfg.clone(),
                cmd.clone(),
                i,
                b,
                control,
            ));
        }
        if let Some((n, serve)) = in_process {
            for i in 0..n {
                let l = std::net::TcpListener::bind("127.0.0.1:0")?;
                let b = Arc::new(Backend::new(i, l.local_addr()?, Some(i), 1));
                // Bound already: connections wait in its backlog until the
                // task accepts, so it is up from now on.
                b.alive.store(true, std::sync::atomic::Ordering::Relaxed);
                backends.upsert(b.clone());
                workers.spawn(run_in_process(i, l, b, serve.clone(), stop_rx.clone()));
            }
        }
        set_static(&backends, &cfg.backends);
        let _backends_watch = cfg.raw.backends_file.as_ref().and_then(|path| {
            let (backends, cfg2) = (backends.clone(), cfg.clone());
            let load = move |p: &std::path::Path| match read_backends_file(p) {
                Ok(list) => {
                    let mut all = cfg2.backends.clone();
                    all.extend(list);
                    set_static(&backends, &all);
                    tracing::info!(file = %p.display(), "backends file reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "backends file rejected; keeping the previous list")
                }
            };
            load(path);
            crate::watch::watch_file(path, load)
                .inspect_err(|e| tracing::error!(error = %e, "cannot watch the backends file"))
                .ok()
        });
        let _strategy_watch = match strategy.spec().source {
            StrategySource::File(_) => reload::watch(strategy.clone(), |_, _| {})
                .inspect_err(|e| tracing::error!(error = %e, "cannot watch the strategy file"))
                .ok(),
            _ => None,
        };
        let background = [
            tokio::spawn(crate::health::run(
                cfg.clone(),
                backends.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(supervisor::telemetry(
                backends.clone(),
                Duration::from_millis(cfg.raw.heartbeat_interval_ms),
                stop_rx.clone(),
            )),
        ];

        // Accept once the workers are up (or the ready timeout passed);
        // clients that connect meanwhile wait in the backlog.
        let ready_by = Instant::now() + Duration::from_millis(cfg.raw.ready_timeout_ms);
        let mut graceful = shutdown.graceful.subscribe();
        while cfg.workers > 0
            && Instant::now() < ready_by
            && !*graceful.borrow()
            && backends
                .load()
                .iter()
                .any(|b| b.worker != u32::MAX && !b.is_up())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(
            listen = %listener.local_addr()?,
            workers = cfg.workers,
            threads = cfg.threads,
            backends = backends.load().len(),
            strategy = %strategy.spec().source,
            "switchyard is serving"
        );

        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            backends: backends.clone(),
            strategy,
        });
        let stop_accepting = {
            let mut g = shutdown.graceful.subscribe();
            let (tx, rx) = watch::channel(false);
            tokio::spawn(async move {
                let _ = g.wait_for(|v| *v).await;
                let _ = tx.send(true);
            });
            rx
        };
        let _ = graceful.borrow_and_update();
        let limit = Arc::new(tokio::sync::Semaphore::new(cfg.raw.max_connections));
        let mut others = Vec::new();
        for (i, l) in listeners.enumerate() {
            let (shared, stop, force, limit) = (
                shared.clone(),
                stop_accepting.clone(),
                shutdown.force.subscribe(),
                limit.clone(),
            );
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("switchyard-{}", i + 1))
                .spawn(move || serve_thread(l, shared, stop, force, limit, done_tx))?;
            others.push(done_rx);
        }
        accept(
            listener,
            shared,
            stop_accepting,
            shutdown.force.subscribe(),
            limit,
        )
        .await;
        for done in others {
            // An error only means the thread ended without saying so.
            let _ = done.await;
        }

        // Connections are done: stop workers and background tasks.
        let _ = stop_tx.send(true);
        while workers.join_next().await.is_some() {}
        for t in background {
            t.abort();
        }
        tracing::info!("switchyard stopped");
        Ok(())
    }
}

/// A serving thread: its own single-threaded runtime around one accept loop.
/// Thread-per-core measured 3-23% less CPU per request than a work-stealing
/// runtime sharing the cores (`shared/reference`), and nothing a connection
/// does needs another thread.
fn serve_thread(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    force: watch::Receiver<bool>,
    limit: Arc<tokio::sync::Semaphore>,
    done: tokio::sync::oneshot::Sender<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a serving thread's runtime");
            return;
        }
    };
    runtime.block_on(async move {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => accept(l, shared, stop, force, limit).await,
            Err(e) => tracing::error!(error = %e, "cannot register a listener"),
        }
    });
    let _ = done.send(());
}

/// Runs one accept loop until it has drained. A task of its own rather than
/// part of the caller's future: when that is a runtime's `block_on` future
/// (as in the binary and every serving thread), each wake-up of the loop
/// would otherwise write the runtime's eventfd.
async fn accept(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    force: watch::Receiver<bool>,
    limit: Arc<tokio::sync::Semaphore>,
) {
    if let Err(e) = tokio::spawn(proxy::serve(listener, shared, stop, force, limit)).await {
        tracing::error!(error = %e, "an accept loop failed");
    }
}

/// Supervises one in-process worker task: publishes it while it runs,
/// restarts it on the same port with backoff if it ends or panics.
async fn run_in_process(
    index: u32,
    listener: std::net::TcpListener,
    backend: Arc<Backend>,
    serve: WorkerFn,
    mut stop: watch::Receiver<bool>,
) {
    let addr = backend.addr;
    let mut listener = Some(listener);
    let mut backoff = Duration::from_millis(100);
    loop {
        let std_listener = match listener.take() {
            Some(l) => l,
            None => match std::net::TcpListener::bind(addr) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(worker = index, error = %e, "cannot rebind in-process worker");
                    return;
                }
            },
        };
        let Ok(l) = std_listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(std_listener))
        else {
            return;
        };
        backend
            .alive
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let task = tokio::spawn(serve(index, l));
        let abort = task.abort_handle();
        tokio::select! {
            r = task => {
                backend.alive.store(false, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(worker = index, panicked = r.is_err(), "in-process worker ended; restarting");
            }
            _ = stop.wait_for(|s| *s) => {
                abort.abort();
                backend.alive.store(false, std::sync::atomic::Ordering::Relaxed);
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Replaces the static backends (ids from 100000 on, in list order), keeping
/// the workers.
fn set_static(backends: &Backends, list: &[crate::config::StaticBackend]) {
    let current = backends.load();
    let mut next: Vec<Arc<Backend>> = current
        .iter()
        .filter(|b| b.worker != u32::MAX)
        .cloned()
        .collect();
    for (k, s) in list.iter().enumerate() {
        let id = 100_000 + k as u32;
        // Keep the live counters of an unchanged entry.
        match current
            .iter()
            .find(|b| b.id == id && b.addr == s.addr && b.weight == s.weight)
        {
            Some(b) => next.push(b.clone()),
            None => next.push(Arc::new(Backend::new(id, s.addr, None, s.weight))),
        }
    }
    backends.store(next);
}

#[cfg(test)]
mod tests {
    use super::*;

    // A runtime because binding goes through tokio's TcpSocket.
    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_and_keepalive_from_every_listener() {
        let all = listeners(None, "127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_eq!(all.len(), 3);
        let port = all[0].local_addr().unwrap().port();
        assert!(all.iter().all(|l| l.local_addr().unwrap().port() == port));
        // Enough connections that each listener of the group gets some.
        let clients: Vec<_> = (0..24)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        let mut accepted = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while accepted < clients.len() && std::time::Instant::now() < deadline {
            for l in &all {
                if let Ok((s, _)) = l.accept() {
                    let s = socket2::SockRef::from(&s);
                    assert!(s.tcp_nodelay().unwrap());
                    assert!(s.keepalive().unwrap());
                    accepted += 1;
                }
            }
        }
        assert_eq!(accepted, clients.len());
    }
}
