//! Phase 3: one attempt at one backend. Connect, send what the client sent
//! so far, and wait for the backend's first response byte while the client's
//! further bytes keep flowing to it (a GET whose body arrives after its head
//! must not wait on a response that needs that body).
//!
//! Until that first byte, the attempt can still fail cleanly: nothing has
//! reached the client. A backend that closes then counts as failed, and a
//! safe request whose every byte is still held ([`Sent`]) may go to another
//! backend. The hold is bounded (`replay_limit`) and covers one request: a
//! byte past its end (a pipelined request) or past the limit gives up the
//! replay, never the client's bytes.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::forward::{Buffer, Start};
use super::idle::Idle;
use super::{Context, proxy_v2};
use crate::backends::{Backend, ConnectionGuard, health};
use crate::error::{Error, Kind};
use crate::sniff::{Sniffed, http1::Body};

/// The client's bytes read so far, held while the request may still be
/// replayed, and how far the request got.
pub(super) struct Sent {
    buf: Buffer,
    /// Replay is still possible: every byte read from the client is in `buf`.
    replay: bool,
    /// Where the HTTP request ends (head and `Content-Length` body), when
    /// its framing says; a byte past it ends replay.
    expected: Option<usize>,
    /// Bytes read from the client so far.
    received: usize,
    /// The client half-closed (and the backend was told).
    client_done: bool,
    /// The bytes are an HTTP/1 request (its response is waited for at most
    /// the upstream header timeout).
    http: bool,
    /// An HTTP/1 request whose body is framed by the client (chunked), which
    /// nothing here checks: a backend that closes on it may be refusing
    /// bad framing, so the close is not blamed on the backend (else a
    /// client could eject healthy backends with a few broken uploads).
    unchecked_body: bool,
}

impl Sent {
    /// What was read while sniffing; replayable if it is one safe request,
    /// whole or in part, within `cap` bytes.
    pub(super) fn new(sniffed: &Sniffed, buf: Buffer, cap: usize) -> Sent {
        let (expected, safe, unchecked_body) = match sniffed {
            Sniffed::Http1(h) => {
                let end = match h.body(&buf) {
                    Body::None => Some(h.len),
                    Body::Length(n) => {
                        Some(h.len.saturating_add(n.min(usize::MAX as u64) as usize))
                    }
                    Body::Other => None,
                };
                (end, h.is_safe(&buf), end.is_none())
            }
            _ => (None, false, false),
        };
        let replay = safe && expected.is_some_and(|end| end <= cap && buf.len() <= end);
        Sent {
            http: matches!(sniffed, Sniffed::Http1(_)),
            received: buf.len(),
            buf,
            replay,
            expected,
            client_done: false,
            unchecked_body,
        }
    }

    /// Everything read so far (while replayable), or at least what was read
    /// while sniffing.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Records client bytes as they are read, before they are written on:
    /// a replay must resend them whether or not this backend took them.
    fn record(&mut self, chunk: &[u8]) {
        self.received += chunk.len();
        if !self.replay {
            return;
        }
        if self
            .expected
            .is_none_or(|end| self.buf.len() + chunk.len() > end)
        {
            self.replay = false;
        } else {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// The client sent its whole request (as far as its framing tells).
    fn complete(&self) -> bool {
        self.expected.is_none_or(|end| self.received >= end)
    }
}

/// A backend connection whose response has started.
pub(super) struct Routed {
    stream: TcpStream,
    response: Buffer,
    pending: Buffer,
    pending_from: usize,
    client_done: bool,
    guard: ConnectionGuard,
    /// Client bytes already written to this backend before forwarding
    /// (the head, and what followed while the response was awaited).
    written_before: u64,
}

impl Routed {
    /// Client bytes written to the backend before forwarding starts.
    pub(super) fn written_before(&self) -> u64 {
        self.written_before
    }

    /// The stream, what forwarding starts with, and the connection count
    /// to hold until the end.
    pub(super) fn into_parts(self) -> (TcpStream, Start, ConnectionGuard) {
        let start = Start {
            to_client: self.response,
            to_upstream: self.pending,
            to_upstream_from: self.pending_from,
            client_done: self.client_done,
        };
        (self.stream, start, self.guard)
    }
}

/// One attempt at `backend`. Failures it blames on the backend count
/// towards its ejection.
pub(super) async fn attempt(
    ctx: &Context,
    backend: &Arc<Backend>,
    (client, peer, local): (&mut TcpStream, SocketAddr, Option<SocketAddr>),
    sent: &mut Sent,
    idle: (&Idle, Option<Pin<&mut Sleep>>),
) -> Result<Routed, Error> {
    let eject_after = ctx.proxy.eject_after_failures;
    let blame = |e: Error| {
        health::failed(eject_after, backend, &e);
        e
    };
    let started = Instant::now();
    let addr = backend.addr();
    // With bytes to send, the first write reports a refused connect; with
    // none, the socket is asked.
    let ask = sent.bytes().is_empty() && local.is_none();
    let mut stream = connect(addr, ctx.proxy.connect_timeout, ask)
        .await
        .map_err(blame)?;
    let guard = backend.open_connection();
    let replay = sent.replay;
    send_prelude(&mut stream, sent.bytes(), peer, local)
        .await
        .map_err(|e| blame(prelude_failed(e, addr, replay)))?;
    backend.connected(started.elapsed().as_micros() as u64);
    if sent.client_done {
        let _ = stream.shutdown().await;
    }
    // An HTTP request waits for its response at most the upstream header
    // timeout after its last byte; anything else, the idle timeout.
    let limit = sent.http.then_some(ctx.proxy.response_timeout);
    let mut phase = FirstResponse {
        client,
        upstream: &mut stream,
        sent,
        response: Buffer::take(),
        chunk: Buffer::take(),
        written: 0,
    };
    let outcome = phase.run(idle, limit).await;
    let FirstResponse {
        response,
        chunk,
        written,
        ..
    } = phase;
    match outcome {
        Ok(()) => {
            backend.responded();
            Ok(Routed {
                stream,
                response,
                written_before: (sent.received - (chunk.len() - written.min(chunk.len()))) as u64,
                pending: chunk,
                pending_from: written,
                client_done: sent.client_done,
                guard,
            })
        }
        Err(e) if e.kind() == Kind::ClosedBeforeResponse => {
            // Only a backend that had the whole request and the client
            // still there failed: a client that left, or that never sent
            // the body it announced, is not the backend's fault (and must
            // not get its request replayed on every backend). Nor is a
            // close after a chunked body, which may have been malformed.
            let whole = sent.complete();
            let e = e.at(addr).retryable(sent.replay && whole);
            Err(if sent.client_done || !whole || sent.unchecked_body {
                e
            } else {
                blame(e)
            })
        }
        Err(e) => Err(e),
    }
}

/// Starts a non-blocking connect and waits until the socket is writable. It
/// completes (or fails) on the first write, which tells which: one
/// `getsockopt` fewer per connection than `TcpStream::connect`. With `ask`
/// (nothing to write), the socket's error is read instead.
async fn connect(addr: SocketAddr, timeout: Duration, ask: bool) -> Result<TcpStream, Error> {
    let failed = |e: io::Error| {
        Error::new(Kind::Connect)
            .at(addr)
            .because(e)
            .retryable(true)
    };
    let stream = start_connect(addr).map_err(failed)?;
    match tokio::time::timeout(timeout, stream.writable()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(failed(e)),
        Err(_) => {
            return Err(Error::new(Kind::ConnectTimeout).at(addr).retryable(true));
        }
    }
    if ask {
        match stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return Err(failed(e)),
        }
    }
    Ok(stream)
}

fn start_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        None,
    )?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    TcpStream::from_std(socket.into())
}

/// A failed first write. The connect completes on it, so a refusal shows
/// here and nothing reached the backend: another may be tried. Any other
/// error may come after part of the request was taken: only a replayable
/// request goes again.
fn prelude_failed(e: io::Error, addr: SocketAddr, replay: bool) -> Error {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::ETIMEDOUT) => {
            Error::new(Kind::Connect)
                .at(addr)
                .because(e)
                .retryable(true)
        }
        _ => Error::new(Kind::ClosedBeforeResponse)
            .at(addr)
            .because(e)
            .retryable(replay),
    }
}

/// The PROXY header (if any) and the client's bytes so far, in one write.
async fn send_prelude(
    stream: &mut TcpStream,
    bytes: &[u8],
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> io::Result<()> {
    match local {
        Some(local) => {
            let mut out = proxy_v2::proxy_v2(peer, local);
            out.extend_from_slice(bytes);
            stream.write_all(&out).await
        }
        None if !bytes.is_empty() => stream.write_all(bytes).await,
        None => Ok(()),
    }
}

/// The wait for the first response byte, with client bytes flowing.
struct FirstResponse<'a> {
    client: &'a mut TcpStream,
    upstream: &'a mut TcpStream,
    sent: &'a mut Sent,
    /// The first response bytes, once read.
    response: Buffer,
    /// Client bytes read and not yet all written to the backend.
    chunk: Buffer,
    /// How much of `chunk` the backend took.
    written: usize,
}

impl FirstResponse<'_> {
    /// Resolves when the response starts (`Ok`), the backend closes first
    /// (`ClosedBeforeResponse`), the client fails, or nothing moves for
    /// `idle`.
    async fn run(
        &mut self,
        (idle, timer): (&Idle, Option<Pin<&mut Sleep>>),
        limit: Option<Duration>,
    ) -> Result<(), Error> {
        let step = std::future::poll_fn(|cx| match self.poll_step(cx) {
            Poll::Ready(Some(r)) => Poll::Ready(r),
            Poll::Ready(None) => {
                // Progress: note it and go again.
                idle.touch();
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        });
        let quiet = async {
            match limit {
                Some(l) => {
                    idle.quiet_for(l, timer).await;
                    Kind::ResponseTimeout
                }
                None => {
                    idle.expired(timer).await;
                    Kind::IdleTimeout
                }
            }
        };
        tokio::select! {
            r = step => r,
            kind = quiet => Err(Error::new(kind)),
        }
    }

    /// One round: `Ready(Some)` when done, `Ready(None)` after progress,
    /// `Pending` when waiting on both sides.
    fn poll_step(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Result<(), Error>>> {
        // The backend speaking first wins: everything else can wait.
        match poll_read_into(self.upstream, cx, &mut self.response) {
            Poll::Ready(Ok(0)) => {
                return Poll::Ready(Some(Err(Error::new(Kind::ClosedBeforeResponse))));
            }
            Poll::Ready(Ok(_)) => return Poll::Ready(Some(Ok(()))),
            Poll::Ready(Err(e)) => {
                return Poll::Ready(Some(Err(Error::new(Kind::ClosedBeforeResponse).because(e))));
            }
            Poll::Pending => {}
        }
        if self.written < self.chunk.len() {
            let rest = &self.chunk[self.written..];
            match Pin::new(&mut *self.upstream).poll_write(cx, rest) {
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    if self.written == self.chunk.len() {
                        self.chunk.clear();
                        self.written = 0;
                    }
                    return Poll::Ready(None);
                }
                // It stopped reading: its response (or its close) is next.
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Some(Err(
                        Error::new(Kind::ClosedBeforeResponse).because(e)
                    )));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.sent.client_done {
            return Poll::Pending;
        }
        match ready!(poll_read_into(self.client, cx, &mut self.chunk)) {
            Ok(0) => {
                self.sent.client_done = true;
                // Pass the half-close on; a refused shutdown shows on the read.
                let _ = Pin::new(&mut *self.upstream).poll_shutdown(cx);
                Poll::Ready(None)
            }
            Ok(_) => {
                self.sent.record(&self.chunk);
                Poll::Ready(None)
            }
            Err(e) => Poll::Ready(Some(Err(Error::new(Kind::ClientIo).because(e)))),
        }
    }
}

/// Reads into `buf`'s spare capacity (nothing zeroed first) through
/// `poll_read`, which clears readiness on a short read: no extra `read`
/// that would only say `EAGAIN`.
fn poll_read_into(
    s: &mut TcpStream,
    cx: &mut TaskContext<'_>,
    buf: &mut Buffer,
) -> Poll<io::Result<usize>> {
    let start = buf.len();
    // Callers read only into a buffer with room: 0 must mean EOF.
    buf.reserve(1);
    let room = buf.capacity() - start;
    let mut rb = ReadBuf::uninit(&mut buf.spare_capacity_mut()[..room]);
    ready!(Pin::new(s).poll_read(cx, &mut rb))?;
    let n = rb.filled().len();
    // SAFETY: `ReadBuf` guarantees its first `n` bytes were initialized by
    // the read, and they lie within the vector's capacity.
    unsafe { buf.set_len(start + n) };
    Poll::Ready(Ok(n))
}
