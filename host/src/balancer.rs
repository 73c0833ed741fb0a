//! The embeddable balancer: [`Balancer::builder`] → [`BalancerBuilder::build`]
//! → [`Balancer::run`]. This file only wires the parts together.
//!
//! `build` does everything that can fail: validate the configuration, bind
//! the listeners and the in-process workers' ports, load and validate the
//! strategy, read the backends file and start the file watchers. `run` only
//! runs: it starts the workers, health checks and telemetry, serves until the
//! [`ShutdownHandle`] says stop, drains, then stops the workers.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backends::spec::{self, BackendSpec, ListError};
use crate::backends::supervisor::{self, Worker, WorkerCommand, WorkerFn};
use crate::backends::{Backend, Backends, health, telemetry};
use crate::config::{Config, ConfigError, RawConfig};
use crate::listener::{self, Serving};
use crate::proxy::Context;
use crate::shutdown::ShutdownHandle;
use crate::strategy::{LoadError, Strategy, StrategyEngine, StrategySource, reload};
use crate::watch::{WatchError, WatchGuard};
use arc_swap::{ArcSwap, ArcSwapOption};

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
    /// HTTP/3's UDP socket could not be bound.
    #[error("cannot listen for HTTP/3 on UDP {0} (`h3_port`; 0 is the TCP port): {1}")]
    ListenUdp(SocketAddr, std::io::Error),
    /// An in-process worker's port could not be bound.
    #[error("cannot bind an in-process worker's port: {0}")]
    Worker(std::io::Error),
    /// Another process listens on a worker's port.
    #[error(
        "worker port {0} is already in use by another process (another switchyard?); set --base-worker-port to move the workers"
    )]
    WorkerPortTaken(SocketAddr),
    /// The backends file is unreadable or wrong.
    #[error(transparent)]
    Backends(#[from] ListError),
    /// A file cannot be watched.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// A certificate or key is unusable.
    // Not `#[from]`: that makes it the source too, and an error chain
    // printed whole (`{:#}`) would say it twice.
    #[error("TLS: {0}")]
    Tls(crate::tls::CertError),
    /// The access log could not be opened.
    #[error("cannot open the access log {0}: {1}")]
    AccessLog(String, std::io::Error),
    /// The admin API's address could not be bound.
    #[error(
        "cannot listen for the admin API on {0}: {1} (set `admin` to another address, or `off`)"
    )]
    Admin(SocketAddr, std::io::Error),
}

/// Duplicates of the serving listeners, for a reload (see `Balancer`).
pub(crate) type ListenerFds = Arc<std::sync::Mutex<Vec<std::os::fd::OwnedFd>>>;

/// Builds a [`Balancer`].
#[derive(Default)]
pub struct BalancerBuilder {
    raw: RawConfig,
    inherited: Option<crate::upgrade::Inherited>,
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

    /// Serves on the sockets a running balancer handed over
    /// ([`upgrade::take_over`](crate::upgrade::take_over)); its workers
    /// listen on free loopback ports (the old ones hold theirs), and the
    /// old process is told once this one serves.
    pub fn inherit(mut self, inherited: crate::upgrade::Inherited) -> Self {
        self.inherited = Some(inherited);
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
        let f: WorkerFn = Arc::new(move |i, l| Box::pin(serve(i, l)));
        self.in_process = Some((n, f));
        self
    }

    /// Validates, binds, loads the strategy and the backends file, and
    /// starts watching files.
    pub fn build(mut self) -> Result<Balancer, BuildError> {
        let upgrading = self.inherited.is_some();
        let (cfg, workers) = match self.in_process {
            None => {
                let cfg = self.raw.validate()?;
                let workers = (0..cfg.worker_count() as u32)
                    .map(|i| {
                        // Taking over from a running balancer: its workers
                        // still hold the configured ports.
                        let (addr, other_addr) = if upgrading {
                            let l = std::net::TcpListener::bind((cfg.workers.host.as_str(), 0))
                                .map_err(BuildError::Worker)?;
                            (l.local_addr().map_err(BuildError::Worker)?, None)
                        } else {
                            let addr = cfg.worker_addrs[i as usize];
                            // Its readiness check would pass on the other
                            // process's port and route traffic there.
                            if crate::backends::supervisor::port_taken(addr) {
                                return Err(BuildError::WorkerPortTaken(addr));
                            }
                            (addr, cfg.worker_reload_addrs.get(i as usize).copied())
                        };
                        Ok(Worker {
                            index: i,
                            backend: Arc::new(Backend::worker(i, addr)),
                            listener: None,
                            other_addr,
                        })
                    })
                    .collect::<Result<Vec<_>, BuildError>>()?;
                (cfg, workers)
            }
            Some((n, serve)) => {
                let raw = RawConfig {
                    workers: crate::config::Count::Fixed(0),
                    ..self.raw
                };
                let cfg = raw.validate_with(true, Some(WorkerCommand::InProcess(serve)))?;
                (cfg, in_process_workers(n).map_err(BuildError::Worker)?)
            }
        };
        let cfg = Arc::new(cfg);
        let shutdown = ShutdownHandle::new();
        let inherited_admin = self.inherited.as_mut().and_then(|i| i.admin.take());
        let inherited_udp = self.inherited.as_mut().and_then(|i| i.udp.take());
        let defer = cfg.sniff.defer_accept();
        let listeners = match self.inherited.as_mut() {
            Some(i) => listener::adopt(std::mem::take(&mut i.tcp), defer),
            None => listener::listeners(self.listener, cfg.listen, cfg.threads, defer),
        }
        .map_err(|e| BuildError::Listen(cfg.listen, e))?;
        // Duplicates to hand over to the next binary (see `upgrade`).
        let dup = |l: &std::net::TcpListener| l.try_clone().map(std::os::fd::OwnedFd::from);
        let handover = (
            listeners
                .iter()
                .map(dup)
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| BuildError::Listen(cfg.listen, e))?,
            None::<std::os::fd::OwnedFd>,
        );
        // And for a reload that changes whether accepts are deferred.
        let listener_fds = Arc::new(std::sync::Mutex::new(
            listeners
                .iter()
                .map(dup)
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| BuildError::Listen(cfg.listen, e))?,
        ));
        // The old process's admin socket only where the admin API stays:
        // a new address is bound anew (the old one goes with that process).
        let inherited_admin = inherited_admin.filter(|l| {
            l.local_addr().is_ok_and(|a| {
                cfg.admin
                    .listen
                    .is_some_and(|want| want == a || want.port() == 0)
            })
        });
        let admin = match (cfg.admin.listen, inherited_admin) {
            (_, Some(l)) => Some(l),
            (None, None) => None,
            (Some(addr), None) => match std::net::TcpListener::bind(addr) {
                Ok(l) => Some(l),
                // The default address is shared by every balancer on the
                // machine: a second one still starts, without the API.
                Err(e) if cfg.admin.default_address => {
                    tracing::warn!(
                        %addr,
                        error = %e,
                        "admin API not started: its default address is taken; set `admin` to another address, or `off`"
                    );
                    None
                }
                Err(e) => return Err(BuildError::Admin(addr, e)),
            },
        };
        let handover = (
            handover.0,
            admin
                .as_ref()
                .map(dup)
                .transpose()
                .map_err(|e| BuildError::Listen(cfg.listen, e))?,
        );
        let access = match &cfg.access_log {
            None => None,
            Some(target) => Some(Arc::new(
                crate::access::AccessLog::open(target)
                    .map_err(|e| BuildError::AccessLog(cfg.raw().access_log.clone(), e))?,
            )),
        };
        let named = |e| BuildError::Strategy(cfg.strategy.source.to_string(), e);
        let engine = StrategyEngine::new(cfg.engine.clone()).map_err(named)?;
        let strategy = Arc::new(Strategy::load(engine, &cfg.strategy).map_err(named)?);
        if let Some((spec, fuel)) = &cfg.shadow {
            strategy
                .set_shadow(Some(spec), *fuel)
                .map_err(|e| BuildError::Strategy(format!("shadow {}", spec.source), e))?;
        }
        let backends = Arc::new(Backends::new());
        for w in &workers {
            backends.add(w.backend.clone());
        }
        backends.set_static(&static_backends(&cfg, cfg.backends_file.as_deref())?);
        let cfg_cell = Arc::new(ArcSwap::new(cfg.clone()));
        let mut reloadable = crate::reload::Watchers::default();
        if let Some(path) = &cfg.backends_file {
            reloadable.backends_file = Some(watch_backends_file(
                path,
                cfg_cell.clone(),
                backends.clone(),
            )?);
        }
        if let StrategySource::File(_) = strategy.spec().source {
            reloadable.strategy = Some(reload::watch(strategy.clone(), |_, _| {})?);
        }
        let mut watchers = Vec::new();
        let tokens = shutdown.tokens();
        let workers = Arc::new(supervisor::WorkerSet::new(
            workers,
            Arc::new(cfg.workers.clone()),
            backends.clone(),
            tokens.stop.clone(),
            tokens.force.clone(),
        ));
        let certs = match (cfg.tls.is_empty(), cfg.h3) {
            (true, None) => None,
            _ => Some(crate::tls::Certs::new(cfg.tls.clone())?),
        };
        if let Some(certs) = &certs {
            for file in certs.files() {
                let c = certs.clone();
                watchers.push(crate::watch::watch_file(file, move |p| match c.reload() {
                    Ok(()) => tracing::info!(file = %p.display(), "certificates reloaded"),
                    // Replacing a pair is two writes: the first may leave a
                    // key that does not match yet; the second reload fixes it.
                    Err(e) => tracing::error!(
                        error = %e,
                        "certificates rejected; the previous ones keep serving"
                    ),
                })?);
            }
        }
        // Settings that do nothing in this combination: said, not silent.
        if !cfg.tls.is_empty() && cfg.http.mode == crate::http::Mode::Tcp {
            tracing::warn!(
                "tls_cert is set but mode is tcp: TLS passes through untouched (routed by SNI); use mode http or auto to terminate it"
            );
        }
        if cfg.h3.is_none() && cfg.raw().h3_port != 0 {
            tracing::warn!("h3_port is set but h3 is off: no HTTP/3 listener");
        }
        let udp = match (cfg.h3, inherited_udp) {
            (Some(_), Some(u)) => Some(u),
            (Some(addr), None) => {
                Some(std::net::UdpSocket::bind(addr).map_err(|e| BuildError::ListenUdp(addr, e))?)
            }
            (None, _) => None,
        };
        let handover_udp = match &udp {
            Some(u) => Some(
                u.try_clone()
                    .map(std::os::fd::OwnedFd::from)
                    .map_err(|e| BuildError::Listen(cfg.listen, e))?,
            ),
            None => None,
        };
        Ok(Balancer {
            handover: (handover.0, handover.1, handover_udp),
            inherited: self.inherited,
            access,
            admin,
            certs,
            udp,
            cfg,
            listeners,
            strategy,
            backends,
            workers,
            shutdown,
            tokens,
            cfg_cell,
            ctx_cell: Arc::new(ArcSwapOption::empty()),
            reloadable: Arc::new(std::sync::Mutex::new(reloadable)),
            listener_fds,
            _watchers: watchers,
        })
    }
}

/// `n` in-process workers, each on a loopback port bound now: connections
/// wait in its backlog until the task accepts.
fn in_process_workers(n: u32) -> std::io::Result<Vec<Worker>> {
    (0..n)
        .map(|i| {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            Ok(Worker {
                index: i,
                backend: Arc::new(Backend::worker(i, l.local_addr()?)),
                listener: Some(l),
                other_addr: None,
            })
        })
        .collect()
}

impl From<crate::tls::CertError> for BuildError {
    fn from(e: crate::tls::CertError) -> Self {
        BuildError::Tls(e)
    }
}

/// Loads what `cfg` names the way `serve` would, without serving: the
/// strategy and shadow (compiled and dry-run), the backends file, the TLS
/// pairs and the access log's directory. `switchyard config check` runs it,
/// so that a file it calls valid is one `serve` starts with.
pub fn check_files(cfg: &Config) -> Result<(), BuildError> {
    let named = |e| BuildError::Strategy(cfg.strategy.source.to_string(), e);
    let engine = StrategyEngine::new(cfg.engine.clone()).map_err(named)?;
    let strategy = Strategy::load(engine, &cfg.strategy).map_err(named)?;
    if let Some((spec, fuel)) = &cfg.shadow {
        strategy
            .set_shadow(Some(spec), *fuel)
            .map_err(|e| BuildError::Strategy(format!("shadow {}", spec.source), e))?;
    }
    static_backends(cfg, cfg.backends_file.as_deref())?;
    if !cfg.tls.is_empty() {
        crate::tls::Certs::new(cfg.tls.clone())?;
    }
    Ok(())
}

/// The configured static backends plus the backends file's.
pub(crate) fn static_backends(
    cfg: &Config,
    file: Option<&Path>,
) -> Result<Vec<BackendSpec>, ListError> {
    let mut all = cfg.backends.clone();
    if let Some(path) = file {
        all.extend(spec::read_file(path)?);
    }
    spec::check_unique(&all)?;
    Ok(all)
}

/// Reloads the backends file on every change, with the static backends of
/// the configuration in force; a bad file is logged and the previous list
/// kept.
pub(crate) fn watch_backends_file(
    path: &Path,
    cfg: Arc<ArcSwap<Config>>,
    backends: Arc<Backends>,
) -> Result<WatchGuard, WatchError> {
    crate::watch::watch_file(path, move |p| match static_backends(&cfg.load(), Some(p)) {
        Ok(list) => {
            backends.set_static(&list);
            tracing::info!(file = %p.display(), backends = list.len(), "backends file reloaded");
        }
        Err(e) => {
            tracing::error!(error = %e, "backends file rejected; keeping the previous list")
        }
    })
}

/// A configured balancer, ready to run.
pub struct Balancer {
    cfg: Arc<Config>,
    /// One per serving thread; the first is served on `run`'s runtime.
    listeners: Vec<std::net::TcpListener>,
    strategy: Arc<Strategy>,
    backends: Arc<Backends>,
    workers: Arc<supervisor::WorkerSet>,
    /// The access log, if kept.
    access: Option<Arc<crate::access::AccessLog>>,
    /// Duplicates of the listening sockets (serving threads', admin's), for
    /// the next binary.
    handover: (
        Vec<std::os::fd::OwnedFd>,
        Option<std::os::fd::OwnedFd>,
        Option<std::os::fd::OwnedFd>,
    ),
    /// The balancer this one took over from, to tell once serving.
    inherited: Option<crate::upgrade::Inherited>,
    shutdown: ShutdownHandle,
    /// The run's tokens, made with the workers' (each `tokens()` call makes
    /// a new `stop`).
    tokens: crate::shutdown::Tokens,
    /// The configuration in force (a reload replaces it).
    cfg_cell: Arc<ArcSwap<Config>>,
    /// The request path's context, once serving (a reload replaces it).
    ctx_cell: Arc<ArcSwapOption<Context>>,
    /// The watchers a reload replaces.
    reloadable: Arc<std::sync::Mutex<crate::reload::Watchers>>,
    /// Duplicates of the serving listeners, on which a reload sets whether
    /// accepts are deferred; closed when a graceful stop begins.
    listener_fds: ListenerFds,
    /// Certificates, when TLS is terminated or HTTP/3 listens.
    certs: Option<Arc<crate::tls::Certs>>,
    /// HTTP/3's socket.
    udp: Option<std::net::UdpSocket>,
    /// The admin API's socket.
    admin: Option<std::net::TcpListener>,
    /// Stop watching files when the balancer goes.
    _watchers: Vec<WatchGuard>,
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

    /// Where the admin API listens, if it does.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
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

    /// The workers: rolling reloads, resizing (see
    /// [`WorkerSet`](supervisor::WorkerSet)).
    pub fn workers(&self) -> Arc<supervisor::WorkerSet> {
        self.workers.clone()
    }

    /// Applies changed configurations to this balancer while it runs
    /// (what SIGHUP does in `switchyard serve`).
    pub fn reloader(&self) -> crate::reload::Reloader {
        crate::reload::Reloader {
            cfg: self.cfg_cell.clone(),
            ctx: self.ctx_cell.clone(),
            strategy: self.strategy.clone(),
            backends: self.backends.clone(),
            workers: self.workers.clone(),
            watchers: self.reloadable.clone(),
            listeners: self.listener_fds.clone(),
            busy: Arc::new(tokio::sync::Mutex::new(())),
        }
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
            workers,
            shutdown,
            certs,
            udp,
            admin,
            access,
            handover,
            inherited,
            cfg_cell,
            tokens,
            ctx_cell,
            reloadable: _reloadable,
            listener_fds,
            _watchers,
        } = self;
        {
            // Copies keep a socket listening: a stop closes them, as the
            // accept loops close theirs, so new connections are refused at
            // once instead of queueing until the exit resets them.
            let graceful = tokens.graceful.clone();
            tokio::spawn(async move {
                graceful.cancelled().await;
                listener_fds
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clear();
            });
        }
        workers.start();
        tokio::spawn(health::run(
            backends.clone(),
            cfg.health.clone(),
            tokens.stop.clone(),
        ));
        tokio::spawn(telemetry::run(
            backends.clone(),
            cfg.heartbeat_interval,
            tokens.stop.clone(),
        ));
        if let Some(l) = admin {
            let addr = l.local_addr()?;
            l.set_nonblocking(true)?;
            let state = Arc::new(crate::admin::Admin {
                strategy: strategy.clone(),
                backends: backends.clone(),
                workers: workers.clone(),
                config: cfg_cell.clone(),
                token: cfg.admin.token.clone(),
                started: std::time::SystemTime::now(),
                listen: listeners[0].local_addr()?,
                mode: format!("{:?}", cfg.http.mode).to_lowercase(),
            });
            tracing::info!(
                listen = %addr,
                token = cfg.admin.token_source.as_deref().unwrap_or("none"),
                "admin API listening"
            );
            tokio::spawn(crate::admin::serve(
                tokio::net::TcpListener::from_std(l)?,
                state,
                tokens.stop.clone(),
            ));
        }
        let otel = crate::otel::start(strategy.clone(), backends.clone());
        wait_for_workers(&cfg, &backends, &shutdown).await;
        tracing::info!(
            listen = %listeners[0].local_addr()?,
            workers = workers.len(),
            threads = listeners.len(),
            backends = backends.load().len(),
            strategy = %strategy.spec().source,
            "switchyard is serving"
        );
        let tls = certs
            .as_ref()
            .filter(|c| c.from_files() && cfg.http.mode != crate::http::Mode::Tcp)
            .map(|c| tokio_rustls::TlsAcceptor::from(c.tcp_config()));
        let h3_port = udp
            .as_ref()
            .and_then(|u| u.local_addr().ok())
            .map(|a| a.port());
        let ctx = Arc::new(Context {
            sniff: cfg.sniff.clone(),
            proxy: cfg.proxy.clone(),
            http: cfg.http.clone(),
            graceful: tokens.graceful.clone(),
            backends,
            strategy: strategy.clone(),
            tls,
            alt_svc: h3_port.and_then(|p| {
                hyper::header::HeaderValue::from_str(&format!("h3=\":{p}\"; ma=86400")).ok()
            }),
            access,
        });
        let h3 = match (udp, &certs) {
            (Some(udp), Some(certs)) => {
                Some(spawn_h3(udp, certs, ctx.clone(), cfg.graceful_timeout)?)
            }
            _ => None,
        };
        ctx_cell.store(Some(ctx));
        let last_ctx = ctx_cell.clone();
        let serving = Arc::new(Serving {
            ctx: ctx_cell,
            limit: Arc::new(tokio::sync::Semaphore::new(cfg.max_connections)),
            tokens: tokens.clone(),
            graceful_timeout: cfg.graceful_timeout,
        });
        // The next binary takes over from this socket (SIGUSR2, or `serve
        // --upgrade`); then this one drains and exits.
        let path = crate::upgrade::socket_path(listeners[0].local_addr()?.port());
        let graceful = shutdown.clone();
        let _handover = match crate::upgrade::offer(
            &path,
            handover.0,
            handover.1,
            handover.2,
            inherited.is_some(),
            cfg.workers.ready_timeout + Duration::from_secs(30),
            move || graceful.graceful(),
        ) {
            Ok(h) => {
                let h = Arc::new(h);
                // A stop (or a takeover) closes the copies kept for a
                // successor, so new connections are refused at once.
                let (withdraw, graceful) = (h.clone(), tokens.graceful.clone());
                tokio::spawn(async move {
                    graceful.cancelled().await;
                    withdraw.withdraw();
                });
                Some(h)
            }
            Err(e) => {
                tracing::warn!(socket = %path.display(), error = %e, "binary upgrades are not available");
                None
            }
        };
        if let Some(old) = inherited {
            match old.serving() {
                Ok(()) => tracing::info!("took over from the running switchyard, which now drains"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot tell the previous switchyard to drain")
                }
            }
        }
        listener::serve(listeners, serving).await?;
        if let Some(h3) = h3 {
            // It drains within the graceful timeout too.
            let _ = tokio::task::spawn_blocking(move || h3.join()).await;
        }
        // Connections are done: stop workers and background tasks.
        tokens.stop.cancel();
        workers.join().await;
        if let Some(provider) = otel {
            // The last figures go out before the process does; the SDK's
            // shutdown blocks on its export thread.
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
        // The access log's last lines (a shutdown's cut requests among
        // them) reach the file before the process ends.
        if let Some(log) = last_ctx.load_full().and_then(|c| c.access.clone()) {
            let _ = tokio::task::spawn_blocking(move || log.sync(Duration::from_secs(2))).await;
        }
        let status = strategy.status();
        tracing::info!(
            strategy = %status.name,
            wasm_decisions = status.wasm_decisions,
            fallbacks = status.fallbacks.iter().map(|(_, n)| n).sum::<u64>(),
            "switchyard stopped"
        );
        Ok(())
    }
}

/// Accepting waits until the workers are up (or the ready timeout passed);
/// clients that connect meanwhile wait in the backlog.
async fn wait_for_workers(cfg: &Config, backends: &Backends, shutdown: &ShutdownHandle) {
    let ready_by = Instant::now() + cfg.workers.ready_timeout;
    while Instant::now() < ready_by
        && !shutdown.is_shutting_down()
        && backends
            .load()
            .iter()
            .any(|b| b.worker_index().is_some() && !b.is_up())
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the HTTP/3 listener on its own thread and runtime.
fn spawn_h3(
    udp: std::net::UdpSocket,
    certs: &Arc<crate::tls::Certs>,
    ctx: Arc<Context>,
    drain: std::time::Duration,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let addr = udp.local_addr()?;
    if !certs.from_files() {
        tracing::warn!(
            "HTTP/3 uses a self-signed development certificate for localhost; give --tls-cert and --tls-key for real clients"
        );
    }
    let certs = certs.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let endpoint = {
        let _enter = rt.enter();
        crate::h3::endpoint(udp, &certs)?
    };
    tracing::info!(listen = %addr, "HTTP/3 listening");
    std::thread::Builder::new()
        .name("switchyard-h3".into())
        .spawn(move || rt.block_on(crate::h3::serve(endpoint, ctx, drain)))
}
