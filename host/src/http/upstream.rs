//! HTTP/1.1 to backends over hyper's `client::conn`, with a pool of our
//! own.
//!
//! hyper-util's legacy client did the same job through a general-purpose
//! pool (a mutex, connector machinery, absolute-form URIs rewritten back)
//! and a request future of several kilobytes that is moved on every
//! request; a profile showed those moves among the proxy's top memcpy
//! callers. Here each connection's dispatcher still runs in a task of its
//! own (hyper's design: it reads the next response while the body is being
//! read), and the pool is a per-thread list of senders per backend: take one
//! that is ready, or connect.
//!
//! Pools are per thread and per backend, like the runtime that owns the
//! sockets; a backend that leaves the set or drains takes its pool with it.
//! Upgrades (the connection must be handed over) and HTTP/2 backends keep
//! hyper-util's client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpStream;

use tokio::task::AbortHandle;

use super::ReqBody;
use crate::backends::{Backend, BackendList};

/// Senders of one backend on this thread: idle or busy (a response still
/// being read), each with when it was last handed out.
struct Senders {
    backend: Arc<Backend>,
    /// Each with the coarse clock's millisecond (`clock::now_ms`) of its
    /// checkin: the pool is pruned on every checkout, and a precise clock
    /// read per pooled connection was 3% of the proxy's CPU under load.
    list: Vec<Pooled>,
}

/// A pooled connection: its sender, its checkin time in coarse
/// milliseconds, and its task.
type Pooled = (SendRequest<ReqBody>, u64, Arc<ConnTask>);

/// An upstream connection's task, and how many requests were sent on it.
pub(crate) struct ConnTask {
    abort: AbortHandle,
    uses: AtomicU64,
}

/// One request's use of an upstream connection: see [`Lease::abandon`].
pub(crate) struct Lease {
    task: Arc<ConnTask>,
    use_no: u64,
}

impl Lease {
    /// The response's client left before the body's end: ends the
    /// connection's task (and closes the connection), unless a later
    /// request took the connection meanwhile (hyper makes it ready again
    /// once the last chunk is in the body's channel, which may be before
    /// that chunk reached the client). Pools are per thread and so is the
    /// response body's drop, so nothing takes it between the check and the
    /// abort.
    ///
    /// Without it the task could wait for ever on a backend that waits for
    /// it: a request body still streaming while the backend's answer, which
    /// nobody reads, fills the socket.
    pub(crate) fn abandon(&self) {
        if self.task.uses.load(Ordering::Relaxed) == self.use_no {
            self.task.abort.abort();
        }
    }
}

#[derive(Default)]
struct Pools {
    /// The backend list the pools were last pruned against.
    list: u64,
    senders: Vec<Senders>,
}

thread_local! {
    static POOLS: std::cell::RefCell<Pools> = std::cell::RefCell::default();
}

/// Why no connection could be had.
pub(crate) enum ConnectError {
    /// The connect failed.
    Io(std::io::Error),
    /// It did not complete in time.
    Timeout,
}

/// A sender to `backend` ready for a request: an idle one of this thread's
/// (unless `fresh`), else a new connection (its dispatcher spawned on this
/// thread's runtime).
pub(crate) async fn checkout(
    list: &BackendList,
    backend: &Arc<Backend>,
    opts: &super::HttpOptions,
    connect_timeout: Duration,
    fresh: bool,
) -> Result<Checkout, ConnectError> {
    let idle = (!fresh)
        .then(|| {
            POOLS.with(|p| {
                let mut p = p.borrow_mut();
                let p = &mut *p;
                super::prune_pools(&mut p.list, list, &mut p.senders, |s| &s.backend);
                let pool = p
                    .senders
                    .iter_mut()
                    .find(|s| Arc::ptr_eq(&s.backend, backend))?;
                // Closed and expired ones go; a busy one stays for later.
                let oldest = crate::clock::now_ms()
                    .saturating_sub(opts.pool_idle_timeout.as_millis() as u64);
                pool.list
                    .retain(|(s, since, _)| !s.is_closed() && (!s.is_ready() || *since >= oldest));
                let k = pool.list.iter().rposition(|(s, _, _)| s.is_ready())?;
                let (sender, _, task) = pool.list.swap_remove(k);
                Some((sender, task))
            })
        })
        .flatten();
    if let Some((sender, task)) = idle {
        let use_no = task.uses.fetch_add(1, Ordering::Relaxed) + 1;
        return Ok(Checkout {
            sender,
            reused: true,
            lease: Lease { task, use_no },
        });
    }
    let started = Instant::now();
    let stream =
        match tokio::time::timeout(connect_timeout, TcpStream::connect(backend.addr())).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(ConnectError::Io(e)),
            Err(_) => return Err(ConnectError::Timeout),
        };
    // The connect latency strategies and metrics see (only new
    // connections have one).
    backend.connected(started.elapsed().as_micros() as u64);
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ConnectError::Io(std::io::Error::other(e)))?;
    let abort = tokio::spawn(async move {
        let _ = conn.await;
    })
    .abort_handle();
    Ok(Checkout {
        sender,
        reused: false,
        lease: Lease {
            task: Arc::new(ConnTask {
                abort,
                uses: AtomicU64::new(1),
            }),
            use_no: 1,
        },
    })
}

/// A connection to send one request on.
pub(crate) struct Checkout {
    pub sender: SendRequest<ReqBody>,
    /// It served earlier requests and sat idle in the pool: a failure before
    /// any response byte may be the backend closing it at that moment (its
    /// keep-alive timeout), not the backend failing.
    pub reused: bool,
    /// This request's use of the connection.
    pub lease: Lease,
}

/// Keeps `sender` for later requests to `backend` (its connection is still
/// reading this response; it is ready again once that is done), unless the
/// pool is full.
pub(crate) fn checkin(
    backend: &Arc<Backend>,
    sender: SendRequest<ReqBody>,
    lease: &Lease,
    max: usize,
) {
    if sender.is_closed() || backend.is_draining() {
        return;
    }
    POOLS.with(|p| {
        let mut p = p.borrow_mut();
        let pool = match p
            .senders
            .iter()
            .position(|s| Arc::ptr_eq(&s.backend, backend))
        {
            Some(k) => &mut p.senders[k],
            None => {
                p.senders.push(Senders {
                    backend: backend.clone(),
                    list: Vec::new(),
                });
                p.senders.last_mut().expect("just pushed")
            }
        };
        if pool.list.len() < max {
            pool.list
                .push((sender, crate::clock::now_ms(), lease.task.clone()));
        }
    });
}
