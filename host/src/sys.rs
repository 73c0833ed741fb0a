//! What the host learns from the operating system: how many cores it may use
//! and how many files it may open. Each is asked in one place so that every
//! default derived from it agrees.

/// The cores this process may run on (its CPU affinity, as
/// `std::thread::available_parallelism` reports it), at least 1.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Descriptors the process keeps for itself besides client and backend
/// sockets: listeners, workers' pipes, watchers, the runtime's own.
pub const RESERVED_FDS: u64 = 64;

/// Raises the open-file soft limit to the hard one (as nginx and HAProxy do)
/// and returns the limit in force afterwards. A routed connection holds two
/// descriptors, and the soft default of many systems (1024) would quietly
/// cap the balancer near 500 connections. Capped at 2^20: some programs
/// (workers included, which inherit it) walk every possible descriptor.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        let want = lim.rlim_max.min(1 << 20);
        if lim.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                tracing::debug!(from = lim.rlim_cur, to = want, "raised the open-file limit");
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

/// The open-file soft limit now in force.
pub fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscall on a valid rlimit struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    lim.rlim_cur
}

/// Client connections that `limit` open files can carry: two descriptors
/// each, after [`RESERVED_FDS`].
pub fn connections_for(limit: u64) -> usize {
    (limit.saturating_sub(RESERVED_FDS) / 2).max(1) as usize
}

/// Open files `connections` client connections need.
pub fn fds_for(connections: usize) -> u64 {
    2 * connections as u64 + RESERVED_FDS
}
