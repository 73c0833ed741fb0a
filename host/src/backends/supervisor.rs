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
    let argv_command = |argv: &[String]| {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    };
    let mut c = match &opts.command {
        WorkerCommand::InProcess(serve) => {
            let listener = w
                .listener
                .as_ref()
                .ok_or_else(|| std::io::Error::other("an in-process worker has no listener"))?
                .try_clone()?;
            listener.set_nonblocking(true)?;
            let l = tokio::net::TcpListener::from_std(listener)?;
            return Ok(Running::Task(tokio::spawn(serve(w.index, l))));
        }
        WorkerCommand::Demo => {
            let mut c = Command::new(std::env::current_exe()?);
            c.arg("demo-worker");
            c
        }
        WorkerCommand::Program(argv) => argv_command(argv),
    };
    c.env("PORT", w.backend.addr().port().to_string())
        .env("HOST", &opts.host)
        .env("SWITCHYARD_WORKER_INDEX", w.index.to_string())
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

/// Runs worker slot `w` until `stop`, then terminates it (SIGKILL without
/// waiting once `force` fires).
pub async fn supervise(
    w: Worker,
    opts: Arc<WorkerOptions>,
    stop: CancellationToken,
    force: CancellationToken,
) {
    let (index, b) = (w.index, w.backend.clone());
    let mut backoff = Backoff::new();
    while !stop.is_cancelled() {
        let started = Instant::now();
        let exit = match start(&w, &opts) {
            Err(e) => {
                tracing::error!(worker = index, error = %e, "cannot start worker");
                None
            }
            Ok(mut running) => {
                let pid = running.pid();
                b.process_started(pid);
                tracing::debug!(worker = index, pid, addr = %b.addr(), "worker started");
                let startup = tokio::select! {
                    r = running.startup(b.addr(), opts.ready_timeout) => r,
                    _ = stop.cancelled() => Startup::Stopped,
                };
                let status = match startup {
                    Startup::Ready => {
                        b.ready();
                        tracing::info!(worker = index, pid, addr = %b.addr(), "worker ready");
                        tokio::select! {
                            s = running.exited() => Some(s),
                            _ = stop.cancelled() => None,
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
                b.exited();
                if stop.is_cancelled() {
                    running.terminate(index, opts.stop_timeout, &force).await;
                    return;
                }
                status.map(|s| (pid, s))
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
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return,
        }
    }
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
