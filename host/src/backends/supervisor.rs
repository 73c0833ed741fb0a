//! Workers: spawn, readiness, respawn with backoff, and termination. One
//! supervisor for both kinds of worker: processes (the built-in demo worker
//! or any program) and in-process tasks given by an embedding program.
//!
//! Each worker slot has one task that owns its worker for its whole life, so
//! there is exactly one place that decides whether a worker runs. A worker is
//! published to the strategy (alive) only once its port accepts a
//! connection, and unpublished the moment it exits. Respawns back off
//! exponentially ([`Backoff`]) and a crash loop is reported once per streak
//! rather than on every exit.
//!
//! Process workers never outlive the balancer: each is started with
//! `PR_SET_PDEATHSIG = SIGKILL` (the kernel kills it if the balancer dies,
//! even by SIGKILL) and in its own process group, which is what termination
//! signals, so a worker's own children go too.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::Backend;

/// Serves one in-process worker: called with the worker index and a listener
/// bound to its loopback port; runs until the balancer stops.
pub type WorkerFn = Arc<
    dyn Fn(u32, tokio::net::TcpListener) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync,
>;

/// What a worker runs.
#[derive(Clone)]
pub enum WorkerCommand {
    /// `switchyard demo-worker` from this very binary.
    Demo,
    /// Any program and its arguments.
    Program(Vec<String>),
    /// A task in this process (see [`WorkerFn`]).
    InProcess(WorkerFn),
}

impl std::fmt::Debug for WorkerCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerCommand::Demo => f.write_str("Demo"),
            WorkerCommand::Program(argv) => f.debug_tuple("Program").field(argv).finish(),
            WorkerCommand::InProcess(_) => f.write_str("InProcess"),
        }
    }
}

/// How workers are run.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// What each worker runs.
    pub command: WorkerCommand,
    /// `HOST` in each process worker's environment.
    pub host: String,
    /// Extra environment for process workers.
    pub env: BTreeMap<String, String>,
    /// Restart workers that exit.
    pub respawn: bool,
    /// How long a new worker may take to accept connections.
    pub ready_timeout: Duration,
    /// Grace between SIGTERM and SIGKILL when workers are stopped.
    pub stop_timeout: Duration,
    /// How long a rolling reload waits for a replaced worker's open
    /// connections to finish before stopping it anyway.
    pub drain_timeout: Duration,
}

/// Respawn delays: 100 ms doubling to 30 s; a worker that stayed up 30 s
/// starts the schedule over.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    streak: u32,
}

impl Backoff {
    /// First delay.
    pub const START: Duration = Duration::from_millis(100);
    /// Longest delay.
    pub const MAX: Duration = Duration::from_secs(30);
    /// Up this long and the schedule starts over.
    pub const RESET_AFTER: Duration = Duration::from_secs(30);

    /// A fresh schedule.
    pub fn new() -> Backoff {
        Backoff {
            next: Backoff::START,
            streak: 0,
        }
    }

    /// The delay before restarting a worker that ran for `uptime`.
    pub fn after(&mut self, uptime: Duration) -> Duration {
        if uptime >= Backoff::RESET_AFTER {
            *self = Backoff::new();
        }
        let d = self.next;
        self.next = (d * 2).min(Backoff::MAX);
        self.streak += 1;
        d
    }

    /// Restarts in a row without a long enough run in between.
    pub fn streak(&self) -> u32 {
        self.streak
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// One worker slot.
pub struct Worker {
    /// Its index (also its backend id).
    pub index: u32,
    /// Its backend, published while it is ready.
    pub backend: Arc<Backend>,
    /// For in-process workers, the port they serve, bound once by the
    /// balancer and kept across restarts (each run gets a duplicate).
    pub listener: Option<std::net::TcpListener>,
    /// Where a replacement starts during a rolling reload while this one
    /// still serves (a process worker's other port; the two alternate).
    /// `None`: an in-process worker's replacement gets a fresh loopback
    /// port.
    pub other_addr: Option<SocketAddr>,
}

/// A request to replace a worker with a fresh one; answered once the
/// replacement serves and the old one stopped, or with why not.
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<ReloadDone, ReloadError>>;

/// Why a rolling reload stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadError {
    /// A replacement worker failed: it exited, or did not accept
    /// connections in time. The worker it was to replace keeps serving.
    Replacement(String),
    /// Nothing to replace now: the worker is down and restarting on its
    /// own, or the balancer is stopping. Worth asking again later.
    Unavailable(String),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Replacement(s) | ReloadError::Unavailable(s) => f.write_str(s),
        }
    }
}

/// A worker replaced by a rolling reload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadDone {
    /// Its index.
    pub worker: u32,
    /// The old process id and address.
    pub old_pid: u32,
    /// The old address.
    pub old_addr: String,
    /// The new process id.
    pub new_pid: u32,
    /// The new address.
    pub new_addr: String,
    /// Connections still open on the old one when it was stopped (0
    /// unless the drain timed out).
    pub cut: u32,
}

/// The worker slots of a running balancer: starts their supervisors,
/// replaces workers one at a time (rolling reload), and adds or retires
/// slots when the worker count changes.
pub struct WorkerSet {
    opts: Arc<WorkerOptions>,
    backends: Arc<super::Backends>,
    stop: CancellationToken,
    force: CancellationToken,
    slots: std::sync::Mutex<Vec<Slot>>,
    /// Workers built but not started yet (before `start`).
    pending: std::sync::Mutex<Vec<Worker>>,
    /// One reload or resize at a time.
    busy: tokio::sync::Mutex<()>,
}

/// One running slot.
struct Slot {
    index: u32,
    reloads: tokio::sync::mpsc::UnboundedSender<ReloadRequest>,
    /// Cancelled to retire the slot (a child of the balancer's stop).
    retire: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for WorkerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSet").finish_non_exhaustive()
    }
}

impl WorkerSet {
    /// A set of `workers`, started by [`WorkerSet::start`].
    pub fn new(
        workers: Vec<Worker>,
        opts: Arc<WorkerOptions>,
        backends: Arc<super::Backends>,
        stop: CancellationToken,
        force: CancellationToken,
    ) -> WorkerSet {
        WorkerSet {
            opts,
            backends,
            stop,
            force,
            slots: std::sync::Mutex::new(Vec::new()),
            pending: std::sync::Mutex::new(workers),
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// Starts a supervisor for every worker (on the current runtime).
    pub fn start(&self) {
        let workers = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for w in workers {
            self.spawn(w);
        }
    }

    fn spawn(&self, w: Worker) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let retire = self.stop.child_token();
        let index = w.index;
        let task = tokio::spawn(supervise(
            w,
            self.opts.clone(),
            self.backends.clone(),
            rx,
            retire.clone(),
            self.force.clone(),
        ));
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Slot {
                index,
                reloads: tx,
                retire,
                task,
            });
    }

    /// Number of worker slots.
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
            + self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until every supervisor returned (after the balancer's stop).
    pub async fn join(&self) {
        let slots = std::mem::take(&mut *self.slots.lock().unwrap_or_else(|e| e.into_inner()));
        for s in slots {
            let _ = s.task.await;
        }
    }

    /// Replaces every worker, one at a time: start the replacement, wait
    /// until it accepts connections, route new work to it, drain the old
    /// one, stop it. A worker whose replacement fails keeps running, and
    /// the reload stops there with the reason.
    pub async fn reload(&self) -> Result<Vec<ReloadDone>, (Vec<ReloadDone>, ReloadError)> {
        let _one = self.busy.lock().await;
        let slots: Vec<_> = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| (s.index, s.reloads.clone()))
            .collect();
        let mut done = Vec::new();
        for (i, slot) in slots {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if slot.send(tx).is_err() {
                return Err((
                    done,
                    ReloadError::Unavailable(format!(
                        "worker {i} is not supervised (the balancer is stopping)"
                    )),
                ));
            }
            match rx.await {
                Ok(Ok(d)) => done.push(d),
                Ok(Err(e)) => return Err((done, e)),
                Err(_) => {
                    return Err((
                        done,
                        ReloadError::Unavailable(format!("worker {i}'s supervisor stopped")),
                    ));
                }
            }
        }
        Ok(done)
    }

    /// Makes the worker count `n`: new slots start on free loopback ports
    /// (their workers join the backends once ready); the highest-numbered
    /// slots beyond `n` leave the backends, drain (up to the drain
    /// timeout) and stop.
    pub async fn resize(&self, n: usize) -> Result<(), String> {
        let _one = self.busy.lock().await;
        let have = self.slots.lock().unwrap_or_else(|e| e.into_inner()).len();
        for index in have..n {
            let index = index as u32;
            let listener = std::net::TcpListener::bind((self.opts.host.as_str(), 0))
                .map_err(|e| format!("a port for worker {index}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            let listener = match self.opts.command {
                WorkerCommand::InProcess(_) => Some(listener),
                // A process binds it itself: a free port, let go.
                _ => None,
            };
            let backend = Arc::new(Backend::worker(index, addr));
            self.backends.add(backend.clone());
            tracing::info!(worker = index, %addr, "worker added");
            self.spawn(Worker {
                index,
                backend,
                listener,
                other_addr: None,
            });
        }
        loop {
            let slot = {
                let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                if slots.len() <= n {
                    break;
                }
                slots.pop().expect("more than n")
            };
            let id = super::BackendId::worker(slot.index);
            if let Some(b) = self.backends.remove(id) {
                b.drain();
                let _ = tokio::time::timeout(self.opts.drain_timeout, b.drained()).await;
            }
            slot.retire.cancel();
            let _ = slot.task.await;
            tracing::info!(worker = slot.index, "worker retired");
        }
        Ok(())
    }
}

/// How a worker's start ended.
enum Startup {
    /// It accepts connections.
    Ready,
    /// It exited first, with this status.
    Exited(String),
    /// It did not accept connections in time.
    TimedOut,
    /// The balancer is stopping.
    Stopped,
}

/// A running worker.
enum Running {
    Process(Child),
    Task(tokio::task::JoinHandle<()>),
}

impl Running {
    fn pid(&self) -> u32 {
        match self {
            Running::Process(c) => c.id().unwrap_or(0),
            Running::Task(_) => 0,
        }
    }

    /// Resolves when it exits, with how.
    async fn exited(&mut self) -> String {
        match self {
            Running::Process(c) => match c.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            },
            Running::Task(t) => match t.await {
                Ok(()) => "returned".into(),
                Err(e) if e.is_panic() => "panicked".into(),
                Err(e) => e.to_string(),
            },
        }
    }

    /// Waits until it accepts connections, exits, or `timeout` passes.
    async fn startup(&mut self, addr: SocketAddr, timeout: Duration) -> Startup {
        match self {
            // Bound already: connections wait in its backlog until the task
            // accepts, so it is up from the start.
            Running::Task(_) => Startup::Ready,
            Running::Process(child) => tokio::select! {
                r = wait_ready(addr, timeout) => if r { Startup::Ready } else { Startup::TimedOut },
                s = child.wait() => Startup::Exited(match s {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                }),
            },
        }
    }

    /// Stops it: SIGTERM to a process's group, SIGKILL after `grace` (or at
    /// once when `force` fires); a task is aborted.
    async fn terminate(&mut self, index: u32, grace: Duration, force: &CancellationToken) {
        let child = match self {
            Running::Task(t) => {
                t.abort();
                let _ = t.await;
                return;
            }
            Running::Process(c) => c,
        };
        if let Some(pid) = child.id() {
            // SAFETY: plain syscalls; the group id is the worker's pid (setpgid).
            unsafe {
                libc::kill(-(pid as i32), libc::SIGTERM);
                libc::kill(pid as i32, libc::SIGTERM);
            }
            let exited = tokio::select! {
                r = tokio::time::timeout(grace, child.wait()) => r.is_ok(),
                _ = force.cancelled() => false,
            };
            if exited {
                // Its children may outlive it in the group; they got the
                // SIGTERM too, and now the SIGKILL.
                // SAFETY: as above.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                return;
            }
            tracing::warn!(worker = index, pid, "worker still running; killing it");
            // SAFETY: as above.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        }
        let _ = child.kill().await;
    }
}

/// Starts worker `w` once.
fn start(w: &Worker, opts: &WorkerOptions) -> std::io::Result<Running> {
    start_at(w.index, &w.backend, w.listener.as_ref(), opts)
}

/// Starts worker `index` once, serving `backend`'s address (an in-process
/// one on `listener`).
fn start_at(
    index: u32,
    backend: &Backend,
    listener: Option<&std::net::TcpListener>,
    opts: &WorkerOptions,
) -> std::io::Result<Running> {
    let argv_command = |argv: &[String]| {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    };
    let mut c = match &opts.command {
        WorkerCommand::InProcess(serve) => {
            let listener = listener
                .ok_or_else(|| std::io::Error::other("an in-process worker has no listener"))?
                .try_clone()?;
            listener.set_nonblocking(true)?;
            let l = tokio::net::TcpListener::from_std(listener)?;
            return Ok(Running::Task(tokio::spawn(serve(index, l))));
        }
        WorkerCommand::Demo => {
            // This very binary, even after a new one replaced its file
            // (a deploy before a binary upgrade): the path would name the
            // new file, or nothing while it is being swapped.
            let exe = std::path::Path::new("/proc/self/exe");
            let mut c = if exe.exists() {
                Command::new(exe)
            } else {
                Command::new(std::env::current_exe()?)
            };
            // Named so that `ps` and `pgrep -af switchyard` show the
            // workers (they were an anonymous `exe`), but not `switchyard`
            // itself: `kill -HUP $(pidof switchyard)`, as the README says to
            // reload, must find only the balancer (`pidof` matches argv[0]).
            c.arg0("switchyard-worker");
            c.arg("demo-worker");
            c
        }
        WorkerCommand::Program(argv) => argv_command(argv),
    };
    // Another process listening on this port would pass the readiness check
    // (it accepts connections) and be sent this worker's traffic: refuse to
    // start the worker instead, and say which port.
    if port_taken(backend.addr()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "worker port {} is already in use by another process (set --base-worker-port to move the workers)",
                backend.addr()
            ),
        ));
    }
    c.env("PORT", backend.addr().port().to_string())
        .env("HOST", &opts.host)
        .env("SWITCHYARD_WORKER_INDEX", index.to_string())
        .envs(&opts.env)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    // SAFETY: between fork and exec only async-signal-safe calls are made
    // (prctl, setpgid, getppid, _exit); nothing allocates or takes a lock.
    unsafe {
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // If the balancer died between fork and prctl, PDEATHSIG will
            // never fire: exit now.
            if libc::getppid() == 1 {
                libc::_exit(1);
            }
            libc::setpgid(0, 0);
            Ok(())
        });
    }
    c.spawn().map(Running::Process)
}

/// Some other socket listens on `addr` (a worker could not bind it).
pub(crate) fn port_taken(addr: SocketAddr) -> bool {
    std::net::TcpListener::bind(addr).is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
}

/// Runs worker slot `w` until `stop`, then terminates it (SIGKILL without
/// waiting once `force` fires). `reloads` asks it to replace its worker
/// (see [`WorkerControl::reload`]); the replacement is published in
/// `backends` in place of the old one.
pub async fn supervise(
    mut w: Worker,
    opts: Arc<WorkerOptions>,
    backends: Arc<super::Backends>,
    mut reloads: tokio::sync::mpsc::UnboundedReceiver<ReloadRequest>,
    stop: CancellationToken,
    force: CancellationToken,
) {
    let index = w.index;
    let mut backoff = Backoff::new();
    while !stop.is_cancelled() {
        let started = Instant::now();
        let exit = match start(&w, &opts) {
            Err(e) => {
                tracing::error!(worker = index, error = %e, "cannot start worker");
                None
            }
            Ok(mut running) => {
                let b = w.backend.clone();
                let pid = running.pid();
                b.process_started(pid);
                tracing::debug!(worker = index, pid, addr = %b.addr(), "worker started");
                let startup = tokio::select! {
                    r = running.startup(b.addr(), opts.ready_timeout) => r,
                    _ = stop.cancelled() => Startup::Stopped,
                };
                let mut current_pid = pid;
                let status = match startup {
                    Startup::Ready => {
                        b.ready();
                        tracing::info!(worker = index, pid, addr = %b.addr(), "worker ready");
                        loop {
                            tokio::select! {
                                s = running.exited() => break Some(s),
                                _ = stop.cancelled() => break None,
                                Some(reply) = reloads.recv() => {
                                    let r = replace(&mut w, &mut running, &opts, &backends, &stop, &force)
                                        .await
                                        .map_err(ReloadError::Replacement);
                                    if let Ok(done) = &r {
                                        current_pid = done.new_pid;
                                    }
                                    let _ = reply.send(r);
                                }
                            }
                        }
                    }
                    Startup::Exited(s) => Some(s),
                    Startup::TimedOut => {
                        tracing::warn!(
                            worker = index,
                            pid,
                            "worker did not become ready in time; restarting it"
                        );
                        running.terminate(index, Duration::ZERO, &force).await;
                        None
                    }
                    Startup::Stopped => None,
                };
                let b = w.backend.clone();
                b.exited();
                if stop.is_cancelled() {
                    running.terminate(index, opts.stop_timeout, &force).await;
                    return;
                }
                status.map(|s| (current_pid, s))
            }
        };
        if let Some((pid, status)) = exit {
            tracing::warn!(worker = index, pid, %status, "worker exited");
        }
        if !opts.respawn {
            return;
        }
        let delay = backoff.after(started.elapsed());
        if backoff.streak() == 5 {
            tracing::error!(
                worker = index,
                restarts = backoff.streak(),
                next_delay_ms = delay.as_millis() as u64,
                "worker is crash-looping; backing off up to 30 s between restarts"
            );
        }
        // A reload asked for while the worker is down has nothing to
        // replace: say so rather than leave the caller waiting.
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                _ = stop.cancelled() => return,
                Some(reply) = reloads.recv() => {
                    let _ = reply.send(Err(ReloadError::Unavailable(format!(
                        "worker {index} is not running (it restarts on its own)"
                    ))));
                }
            }
        }
    }
}

/// One step of a rolling reload for the worker running as `running`:
/// start a replacement on the slot's other address, wait until it accepts
/// connections, publish it in place of the old one (which then gets no
/// new work), wait for the old one's connections to finish, stop it. On
/// any failure before the swap, the replacement is stopped and the old
/// worker keeps serving.
async fn replace(
    w: &mut Worker,
    running: &mut Running,
    opts: &WorkerOptions,
    backends: &super::Backends,
    stop: &CancellationToken,
    force: &CancellationToken,
) -> Result<ReloadDone, String> {
    let index = w.index;
    let old = w.backend.clone();
    // In-process workers get a fresh loopback port each time.
    let (addr, listener) = match w.other_addr {
        Some(a) => (a, None),
        None => {
            let l = std::net::TcpListener::bind("127.0.0.1:0")
                .map_err(|e| format!("worker {index}: binding a port for the replacement: {e}"))?;
            let a = l.local_addr().map_err(|e| format!("worker {index}: {e}"))?;
            match opts.command {
                WorkerCommand::InProcess(_) => (a, Some(l)),
                // A process binds it itself: a free port, let go.
                _ => (a, None),
            }
        }
    };
    let new = Arc::new(Backend::worker(index, addr));
    new.carry_over(&old);
    let mut next = start_at(index, &new, listener.as_ref(), opts)
        .map_err(|e| format!("worker {index}: cannot start the replacement: {e}"))?;
    let new_pid = next.pid();
    new.process_started(new_pid);
    let startup = tokio::select! {
        r = next.startup(addr, opts.ready_timeout) => r,
        _ = stop.cancelled() => Startup::Stopped,
    };
    match startup {
        Startup::Ready => {}
        other => {
            next.terminate(index, Duration::ZERO, force).await;
            return Err(match other {
                Startup::Exited(s) => {
                    format!("worker {index}: the replacement on {addr} exited: {s}")
                }
                Startup::TimedOut => format!(
                    "worker {index}: the replacement on {addr} did not accept connections within {} ms",
                    opts.ready_timeout.as_millis()
                ),
                _ => format!("worker {index}: the balancer is stopping"),
            });
        }
    }
    new.ready();
    let old_pid = running.pid();
    // From here new work goes to the replacement; connections already on
    // the old one finish there.
    backends.add(new.clone());
    old.drain();
    tracing::info!(
        worker = index,
        old_pid,
        new_pid,
        old_addr = %old.addr(),
        new_addr = %addr,
        "worker replaced; draining the old one"
    );
    let drained = tokio::time::timeout(opts.drain_timeout, old.drained())
        .await
        .is_ok();
    // A decision made on the list from just before the swap may still be
    // connecting: give it a moment to show up in the count.
    tokio::time::sleep(Duration::from_millis(100)).await;
    if drained && old.active() != 0 {
        let _ = tokio::time::timeout(opts.drain_timeout, old.drained()).await;
    }
    let cut = old.active();
    if cut != 0 {
        tracing::warn!(
            worker = index,
            open = cut,
            "the old worker still had connections after the drain timeout; stopping it anyway"
        );
    }
    old.exited();
    let mut previous = std::mem::replace(running, next);
    previous.terminate(index, opts.stop_timeout, force).await;
    // The slot now serves from the new address; the old one is next
    // time's other address.
    w.other_addr = w.other_addr.map(|_| old.addr());
    if let Some(l) = listener {
        w.listener = Some(l);
    }
    w.backend = new;
    Ok(ReloadDone {
        worker: index,
        old_pid,
        old_addr: old.addr().to_string(),
        new_pid,
        new_addr: addr.to_string(),
        cut,
    })
}

/// Polls until the port accepts a connection.
async fn wait_ready(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let attempt = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr),
        )
        .await;
        if let Ok(Ok(_)) = attempt {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respawn_backoff_doubles_to_thirty_seconds_and_resets_after_a_good_run() {
        let mut b = Backoff::new();
        let quick = Duration::from_millis(50);
        let delays: Vec<u64> = (0..12).map(|_| b.after(quick).as_millis() as u64).collect();
        assert_eq!(
            delays,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000
            ]
        );
        assert_eq!(b.streak(), 12);
        // Up for 30 s: the next restart is quick again.
        assert_eq!(b.after(Duration::from_secs(30)), Duration::from_millis(100));
        assert_eq!(b.streak(), 1);
        assert_eq!(b.after(quick), Duration::from_millis(200));
    }
}
