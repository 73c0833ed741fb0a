//! Worker processes end with the balancer, whatever they do: one that
//! ignores SIGTERM is killed after the stop timeout, a worker's own children
//! go with it, and a crash-looping worker is restarted with backoff.

mod support;

use std::time::{Duration, Instant};

use support::{Serve, TempDir, eventually, get};

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn read_pid(path: &std::path::Path) -> i32 {
    let mut pid = 0;
    eventually("the worker to write its child's pid", 10, || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        pid > 0
    });
    pid
}

#[test]
fn a_worker_that_ignores_sigterm_is_killed_after_the_stop_timeout() {
    let dir = TempDir::new("stubborn");
    let pidfile = dir.0.join("pid");
    let script = format!(
        "trap '' TERM; echo $$ > {}; exec python3 -m http.server \"$PORT\" --bind \"$HOST\"",
        pidfile.display()
    );
    let mut s = Serve::start(
        1,
        &["--worker-stop-timeout-ms", "700", "--", "sh", "-c", &script],
    );
    let pid = read_pid(&pidfile);
    assert_eq!(get(s.port, "/").0, 200);
    let started = Instant::now();
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(15).success());
    s.wait_for_log("worker still running; killing it", 1);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(600),
        "killed before the timeout: {took:?}"
    );
    eventually("the stubborn worker to be gone", 5, || !alive(pid));
}

#[test]
fn graceful_termination_reaches_the_workers_own_children() {
    let dir = TempDir::new("children");
    let pidfile = dir.0.join("pid");
    let script = format!(
        "sleep 300 & echo $! > {}; exec python3 -m http.server \"$PORT\" --bind \"$HOST\"",
        pidfile.display()
    );
    let mut s = Serve::start(1, &["--", "sh", "-c", &script]);
    let child = read_pid(&pidfile);
    assert!(alive(child));
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(15).success());
    eventually("the worker's child to be gone", 5, || !alive(child));
}

#[test]
fn a_crash_looping_worker_is_restarted_with_backoff() {
    let dir = TempDir::new("crash");
    let count = dir.0.join("starts");
    let script = format!("echo x >> {}; exit 3", count.display());
    let s = Serve::start_no_wait(
        1,
        &["--ready-timeout-ms", "5000", "--", "sh", "-c", &script],
    );
    // Restarts after 100, 200, 400, 800 ms: the fifth start comes after about
    // 1.5 s, and the sixth not before 3.1 s.
    s.wait_for_log("worker is crash-looping", 10);
    let starts = std::fs::read_to_string(&count).unwrap().lines().count();
    assert!((5..=6).contains(&starts), "{starts} starts");
    let log = s.log.lock().unwrap().clone();
    assert!(
        log.contains("worker exited") && log.contains("exit status: 3"),
        "{log}"
    );
}
