//! Listening sockets and the accept loops in front of the request path.
//!
//! Thread per core: each serving thread runs its own single-threaded tokio
//! runtime around one accept loop on its own `SO_REUSEPORT` listener, so a
//! connection never changes thread and no thread is woken for another's
//! connection. Measured here, one current-thread runtime per core took 3-23%
//! less CPU per request than a work-stealing runtime sharing the cores, and
//! nothing a connection does needs another thread.
//!
//! Accepted when the first bytes are in: unless a listener routes
//! server-speaks-first protocols (`server_first_after_ms`), the kernel holds
//! a new connection until its client has sent something
//! (`TCP_DEFER_ACCEPT`), so the sniffer's first read finds the bytes there
//! and a connection served in one exchange never waits on the reactor (see
//! `proxy/client.rs`). Measured with a connection per request, the first
//! read found nothing for 9 connections in 10 without it: each then cost an
//! extra `recv` and two `epoll_ctl` calls. A client that connects and stays
//! silent is accepted about a second later (when the kernel retries the
//! handshake) and then gets the head timeout; until then it holds no
//! descriptor and no memory of ours. A reload that sets or clears
//! `server_first_after_ms` changes it on every listener (through
//! duplicates of them that the reloader keeps).
//!
//! Backpressure before accept: a permit from `max_connections` is taken
//! *before* `accept`, so overload waits in the kernel backlog, not in
//! memory; accept errors (EMFILE) back off instead of ending the loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::proxy::{self, Acceptor, Context};
use crate::shutdown::Tokens;

/// Binds a listening socket with SO_REUSEADDR (so a restart does not wait
/// for TIME_WAIT) and a deep backlog; with `reuseport`, one of a group the
/// kernel spreads new connections over.
pub fn bind(addr: SocketAddr, reuseport: bool) -> std::io::Result<std::net::TcpListener> {
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

/// Listeners taken over from a running balancer (binary upgrade): one per
/// serving thread, set up as [`listeners`] sets up its own.
pub fn adopt(
    all: Vec<std::net::TcpListener>,
    defer: bool,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    prepare(&all, defer)?;
    Ok(all)
}

fn prepare(all: &[std::net::TcpListener], defer: bool) -> std::io::Result<()> {
    for l in all {
        l.set_nonblocking(true)?;
        // Accepted sockets inherit both from the listener on Linux: no
        // setsockopt per connection. Keepalive (system timings) lets the
        // kernel end connections to clients that vanished without a FIN.
        let s = socket2::SockRef::from(l);
        s.set_tcp_nodelay(true)?;
        s.set_keepalive(true)?;
        defer_accept(std::os::fd::AsFd::as_fd(l), defer);
    }
    Ok(())
}

/// One non-blocking listener per serving thread. Bound here: a group of
/// `SO_REUSEPORT` sockets, so each thread accepts only its own share. Given
/// by the embedder: that socket, shared (each thread polls its own
/// duplicate). `defer`: accept connections once their first bytes are in
/// (see the module doc).
pub fn listeners(
    given: Option<std::net::TcpListener>,
    addr: SocketAddr,
    threads: usize,
    defer: bool,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let threads = threads.max(1);
    let mut all = Vec::with_capacity(threads);
    match given {
        Some(l) => {
            for _ in 1..threads {
                all.push(l.try_clone()?);
            }
            all.insert(0, l);
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
    prepare(&all, defer)?;
    Ok(all)
}

/// What every accept loop shares.
pub struct Serving {
    /// The request path's context; a configuration reload replaces it, and
    /// each connection keeps the one it started with.
    pub ctx: Arc<arc_swap::ArcSwapOption<Context>>,
    /// Open client connections allowed at once, across threads.
    pub limit: Arc<Semaphore>,
    /// Shutdown.
    pub(crate) tokens: Tokens,
    /// How long open connections may take to finish after a graceful stop.
    pub graceful_timeout: Duration,
}

/// Serves `listeners`: the first on the caller's runtime, each other on a
/// thread of its own. Returns once every loop has drained.
pub async fn serve(listeners: Vec<std::net::TcpListener>, s: Arc<Serving>) -> std::io::Result<()> {
    let mut it = listeners.into_iter();
    let first = it.next().expect("at least one listener");
    let mut others = Vec::new();
    for (i, l) in it.enumerate() {
        let (s, (done_tx, done_rx)) = (s.clone(), tokio::sync::oneshot::channel::<()>());
        std::thread::Builder::new()
            .name(format!("switchyard-{}", i + 1))
            .spawn(move || serve_thread(l, s, done_tx))?;
        others.push(done_rx);
    }
    let first = Acceptor::new(first)?;
    // A task of its own rather than part of the caller's future: when that
    // is a runtime's `block_on` future (as in the binary), each wake-up of
    // the loop would otherwise write the runtime's eventfd.
    if let Err(e) = tokio::spawn(accept_loop(first, s)).await {
        tracing::error!(error = %e, "an accept loop failed");
    }
    for done in others {
        // An error only means the thread ended without saying so.
        let _ = done.await;
    }
    Ok(())
}

/// A serving thread: its own single-threaded runtime around one accept loop.
fn serve_thread(l: std::net::TcpListener, s: Arc<Serving>, done: tokio::sync::oneshot::Sender<()>) {
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
        match Acceptor::new(l) {
            Ok(l) => {
                if let Err(e) = tokio::spawn(accept_loop(l, s)).await {
                    tracing::error!(error = %e, "an accept loop failed");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot register a listener"),
        }
    });
    let _ = done.send(());
}

/// Accepts until a graceful stop, then waits up to the graceful timeout for
/// open connections (or until a forced stop) and aborts the rest.
async fn accept_loop(listener: Acceptor, s: Arc<Serving>) {
    let mut conns = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    let stop = &s.tokens.graceful;
    loop {
        let permit = tokio::select! {
            p = s.limit.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = stop.cancelled() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => break,
        };
        match accepted {
            Ok((socket, peer)) => {
                backoff = Duration::from_millis(5);
                let ctx = s.ctx.load_full().expect("set before serving");
                // Boxed: a connection's future is a few KiB, and tokio moves
                // a task's whole stage on spawn and on completion; a box makes
                // those moves a pointer's (measured: 4% of the instructions
                // per connection in close mode were these copies).
                conns.spawn(Box::pin(async move {
                    proxy::handle(ctx, socket, peer).await;
                    drop(permit);
                }));
                while conns.try_join_next().is_some() {}
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    drop(listener);
    while conns.try_join_next().is_some() {}
    if !conns.is_empty() {
        tracing::info!(open = conns.len(), "draining open connections");
    }
    let drained = tokio::select! {
        r = tokio::time::timeout(s.graceful_timeout, async {
            while conns.join_next().await.is_some() {}
        }) => r.is_ok(),
        _ = s.tokens.force.cancelled() => false,
    };
    if !drained {
        tracing::warn!(open = conns.len(), "closing connections still open");
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

/// Sets or clears `TCP_DEFER_ACCEPT` on the listening socket `l` (any
/// descriptor of it: a reload sets it through duplicates). Off where
/// server-first protocols are routed: their clients send nothing until the
/// server has spoken. A failure is logged and leaves accepts as they were.
pub(crate) fn defer_accept(l: std::os::fd::BorrowedFd<'_>, on: bool) {
    use std::os::fd::AsRawFd;
    // Seconds before the kernel retries the handshake and then accepts a
    // connection that is still silent: its smallest setting.
    let secs: libc::c_int = on.into();
    // SAFETY: a valid descriptor (borrowed) and an int option of the size
    // given.
    let r = unsafe {
        libc::setsockopt(
            l.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(error = %e, on, "cannot set TCP_DEFER_ACCEPT");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A runtime because binding goes through tokio's TcpSocket. Accepts are
    // not deferred: these clients send nothing.
    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_and_keepalive_from_every_listener() {
        let all = listeners(None, "127.0.0.1:0".parse().unwrap(), 3, false).unwrap();
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
