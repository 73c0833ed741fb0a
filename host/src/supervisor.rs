//! Worker processes: spawn, readiness, respawn with backoff, telemetry, and
//! termination.
//!
//! Each worker slot has one task that owns its child process for its whole
//! life, so there is exactly one place that decides whether a worker runs.
//! A worker is published to the strategy (alive) only once its port accepts a
//! connection, and unpublished the moment it exits. Respawns back off
//! exponentially (100 ms doubling to 30 s, reset after 30 s up) and a crash
//! loop is reported once per streak rather than on every exit.
//!
//! Workers never outlive the balancer: each is started with
//! `PR_SET_PDEATHSIG = SIGKILL` (the kernel kills it if the balancer dies,
//! even by SIGKILL) and in its own process group, which is what graceful
//! termination signals, so a worker's own children go too.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::backends::{Backend, Backends};
use crate::clock::now_ms as clock_ms;
use crate::config::Config;

/// First respawn delay.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest respawn delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Up this long and the backoff starts over.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(30);
/// Grace between SIGTERM and SIGKILL for workers at shutdown.
pub const WORKER_KILL_AFTER: Duration = Duration::from_secs(5);

/// What a worker runs.
#[derive(Debug, Clone)]
pub enum WorkerCommand {
    /// `switchyard demo-worker` from this very binary.
    Demo,
    /// Any program and its arguments.
    Program(Vec<String>),
}

impl WorkerCommand {
    fn command(&self) -> std::io::Result<Command> {
        Ok(match self {
            WorkerCommand::Demo => {
                let mut c = Command::new(std::env::current_exe()?);
                c.arg("demo-worker");
                c
            }
            WorkerCommand::Program(argv) => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        })
    }
}

/// Spawns worker `index` listening on `port`.
fn spawn(cfg: &Config, cmd: &WorkerCommand, index: u32, port: u16) -> std::io::Result<Child> {
    let mut c = cmd.command()?;
    c.env("PORT", port.to_string())
        .env("HOST", &cfg.worker_host)
        .env("SWITCHYARD_WORKER_INDEX", index.to_string())
        .envs(&cfg.raw.worker_env)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    // SAFETY: between fork and exec only async-signal-safe calls are made
    // (prctl, setpgid, getppid, kill); nothing allocates or takes a lock.
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
    c.spawn()
}

/// Signals for the worker tasks.
#[derive(Clone)]
pub struct Control {
    /// Becomes true when workers should terminate.
    pub stop: watch::Receiver<bool>,
    /// Becomes true when they should be killed without waiting.
    pub force: watch::Receiver<bool>,
}

/// Runs worker slot `index` until `control.stop`; the worker is published in
/// `backend`.
pub async fn run_worker(
    cfg: Arc<Config>,
    cmd: WorkerCommand,
    index: u32,
    backend: Arc<Backend>,
    mut control: Control,
) {
    let port = backend.addr.port();
    let mut backoff = BACKOFF_START;
    let mut streak = 0u32;
    loop {
        if *control.stop.borrow() {
            return;
        }
        let started = Instant::now();
        let mut child = match spawn(&cfg, &cmd, index, port) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(worker = index, error = %e, "cannot start worker");
                if !cfg.raw.respawn || sleep_or_stop(&mut control, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let pid = child.id().unwrap_or(0);
        tracing::debug!(worker = index, pid, port, "worker started");
        let ready = tokio::select! {
            r = wait_ready(backend.addr, Duration::from_millis(cfg.raw.ready_timeout_ms)) => r,
            _ = child.wait() => false,
            _ = control.stop.changed() => false,
        };
        if ready {
            backend.pid.store(pid, Ordering::Relaxed);
            backend.healthy.store(true, Ordering::Relaxed);
            backend.consecutive_failures.store(0, Ordering::Relaxed);
            backend
                .last_heartbeat_ms
                .store(clock_ms(), Ordering::Relaxed);
            backend.alive.store(true, Ordering::Relaxed);
            tracing::info!(worker = index, pid, port, "worker ready");
        } else if !*control.stop.borrow() {
            tracing::warn!(worker = index, pid, "worker did not become ready");
        }
        let status = if ready {
            tokio::select! {
                s = child.wait() => Some(s),
                _ = control.stop.changed() => None,
            }
        } else {
            None
        };
        backend.alive.store(false, Ordering::Relaxed);
        backend.pid.store(0, Ordering::Relaxed);
        if *control.stop.borrow() {
            terminate(&mut child, index, &mut control.force).await;
            return;
        }
        if status.is_none() {
            // Not ready in time: kill it and try again.
            let _ = child.kill().await;
        }
        if let Some(s) = status {
            tracing::warn!(worker = index, pid, status = %s.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()), "worker exited");
        }
        if !cfg.raw.respawn {
            return;
        }
        if started.elapsed() >= BACKOFF_RESET_AFTER {
            backoff = BACKOFF_START;
            streak = 0;
        }
        streak += 1;
        if streak == 5 {
            tracing::error!(
                worker = index,
                restarts = streak,
                next_delay_ms = backoff.as_millis() as u64,
                "worker is crash-looping; backing off up to 30 s between restarts"
            );
        }
        if sleep_or_stop(&mut control, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Sleeps; true if told to stop meanwhile.
async fn sleep_or_stop(control: &mut Control, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *control.stop.borrow(),
        _ = control.stop.changed() => true,
    }
}

/// Polls until the port accepts a connection.
async fn wait_ready(addr: std::net::SocketAddr, timeout: Duration) -> bool {
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

/// SIGTERM to the worker's process group, SIGKILL after
/// [`WORKER_KILL_AFTER`].
async fn terminate(child: &mut Child, index: u32, force: &mut watch::Receiver<bool>) {
    if let Some(pid) = child.id() {
        // SAFETY: plain syscall; the group id is the worker's pid (setpgid).
        unsafe {
            libc::kill(-(pid as i32), libc::SIGTERM);
            libc::kill(pid as i32, libc::SIGTERM);
        }
        let exited = tokio::select! {
            r = tokio::time::timeout(WORKER_KILL_AFTER, child.wait()) => r.is_ok(),
            _ = force.wait_for(|f| *f) => false,
        };
        if exited {
            return;
        }
        tracing::warn!(worker = index, pid, "worker still running; killing it");
        // SAFETY: as above.
        unsafe {
            libc::kill(-(pid as i32), libc::SIGKILL);
        }
    }
    let _ = child.kill().await;
}

/// Samples every worker's CPU and RSS each `interval`.
pub async fn telemetry(
    backends: Arc<Backends>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
    let mut sys = System::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let list = backends.load();
        let pids: Vec<Pid> = list
            .iter()
            .map(|b| b.pid.load(Ordering::Relaxed))
            .filter(|&p| p != 0)
            .map(Pid::from_u32)
            .collect();
        if pids.is_empty() {
            continue;
        }
        sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        let now = clock_ms();
        for b in list.iter() {
            let pid = b.pid.load(Ordering::Relaxed);
            if pid == 0 {
                continue;
            }
            if let Some(p) = sys.process(Pid::from_u32(pid)) {
                b.cpu_permille
                    .store((p.cpu_usage() * 10.0) as u32, Ordering::Relaxed);
                b.rss_bytes.store(p.memory(), Ordering::Relaxed);
                b.last_heartbeat_ms.store(now, Ordering::Relaxed);
            }
        }
    }
}
