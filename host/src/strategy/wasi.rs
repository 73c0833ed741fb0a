//! The parts of WASI preview 1 the host implements itself.
//!
//! wasmtime-wasi provides preview 1 (clocks, random, args and environment, both
//! empty, and fd calls that find no preopened directory). Its fd, path and poll
//! calls, though, run by blocking on a tokio runtime, which panics on a runtime
//! thread (where every decision runs) and could sleep in `poll_oneoff`. Those
//! are replaced: `fd_write` to stdout or stderr becomes a rate-limited host log
//! line, and everything else answers `EBADF`.

use wasmtime::{Caller, Val};

use super::state::HostState;

/// `errno::badf`.
pub const EBADF: i32 = 8;

/// The preview 1 functions wasmtime-wasi implements by blocking on tokio.
pub const BLOCKING: &[&str] = &[
    "fd_advise",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_read",
    "fd_pread",
    "fd_seek",
    "fd_sync",
    "fd_readdir",
    "fd_write",
    "fd_pwrite",
    "poll_oneoff",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "fd_renumber",
];

fn arg(params: &[Val], i: usize) -> usize {
    params.get(i).and_then(|v| v.i32()).unwrap_or(0) as u32 as usize
}

/// `fd_write(fd, iovs, iovs_len, nwritten) -> errno` for stdout and stderr.
pub fn fd_write(mut caller: Caller<'_, HostState>, params: &[Val]) -> i32 {
    let (fd, iovs, n, nwritten) = (
        arg(params, 0),
        arg(params, 1),
        arg(params, 2),
        arg(params, 3),
    );
    if fd != 1 && fd != 2 {
        return EBADF;
    }
    let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return EBADF;
    };
    let (data, state) = mem.data_and_store_mut(&mut caller);
    let mut total: usize = 0;
    let mut text = Vec::new();
    for k in 0..n.min(64) {
        let at = iovs + 8 * k;
        let Some(iov) = data.get(at..at + 8) else {
            return EBADF;
        };
        let ptr = u32::from_le_bytes(iov[0..4].try_into().unwrap()) as usize;
        let len = u32::from_le_bytes(iov[4..8].try_into().unwrap()) as usize;
        let Some(bytes) = data.get(ptr..ptr.saturating_add(len)) else {
            return EBADF;
        };
        if text.len() < 4096 {
            text.extend_from_slice(&bytes[..len.min(4096 - text.len())]);
        }
        total += len;
    }
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        state.log.line(if fd == 2 { 1 } else { 2 }, line);
    }
    match data.get_mut(nwritten..nwritten + 4) {
        Some(out) => {
            out.copy_from_slice(&(total as u32).to_le_bytes());
            0
        }
        None => EBADF,
    }
}

/// A preview 1 context with nothing in it: no preopened directories, no
/// environment, no arguments, no network, closed stdin.
pub fn context() -> wasmtime_wasi::p1::WasiP1Ctx {
    let mut b = wasmtime_wasi::WasiCtxBuilder::new();
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    b.build_p1()
}
