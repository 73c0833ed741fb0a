//! The body of every response HTTP mode sends. It holds what must live
//! exactly as long as the response does: the backend's request count (so
//! `in_flight` counts requests really in flight) and the client
//! connection's busy mark (so keep-alive idleness starts when the response
//! ends). A backend that stops sending mid-body for longer than the body
//! timeout fails the response instead of holding the client forever.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{Either, Full};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::guard::Busy;
use crate::backends::ConnectionGuard;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body, from a backend or written by Switchyard.
pub struct Tracked {
    inner: Either<Incoming, Full<Bytes>>,
    _busy: Option<Busy>,
    _backend: Option<ConnectionGuard>,
    /// The body timeout, and its timer once the body first had to wait (a
    /// small body that is there at once never makes one).
    idle: Option<(Duration, Option<Pin<Box<Sleep>>>)>,
    /// The access log's line for this request, written when the body ends
    /// (or is dropped), with the bytes it carried.
    access: Option<Box<Pending>>,
    sent: u64,
    /// The upstream connection's use by this response, abandoned if this
    /// body is dropped before its end (the client left): see
    /// `upstream::Lease::abandon`.
    lease: Option<super::upstream::Lease>,
    /// The body was read to its end.
    ended: bool,
}

/// An access log line waiting for its response body to end.
pub(crate) struct Pending {
    pub(crate) log: std::sync::Arc<crate::access::AccessLog>,
    pub(crate) entry: crate::access::Entry,
    pub(crate) started: std::time::Instant,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.ended
            && !self.inner.is_end_stream()
            && let Some(lease) = self.lease.take()
        {
            lease.abandon();
        }
        if let Some(p) = self.access.take() {
            let Pending {
                log,
                mut entry,
                started,
            } = *p;
            entry.bytes_out = self.sent;
            entry.duration = started.elapsed();
            log.log(entry);
        }
    }
}

impl Tracked {
    /// A backend's body.
    pub fn upstream(
        body: Incoming,
        busy: Option<Busy>,
        backend: ConnectionGuard,
        idle: Option<Duration>,
        lease: Option<super::upstream::Lease>,
    ) -> Self {
        Tracked {
            inner: Either::Left(body),
            _busy: busy,
            _backend: Some(backend),
            idle: idle.map(|d| (d, None)),
            access: None,
            sent: 0,
            lease,
            ended: false,
        }
    }

    /// A body Switchyard wrote.
    pub fn full(bytes: Bytes, busy: Option<Busy>) -> Self {
        Tracked {
            inner: Either::Right(Full::new(bytes)),
            _busy: busy,
            _backend: None,
            idle: None,
            access: None,
            sent: 0,
            lease: None,
            ended: false,
        }
    }

    /// Writes `pending` to the access log when this body ends.
    pub(crate) fn with_access(mut self, pending: Box<Pending>) -> Self {
        self.access = Some(pending);
        self
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                // Trailers are the last frame, and hyper's servers stop
                // asking after them.
                if frame
                    .as_ref()
                    .is_none_or(|f| f.as_ref().is_ok_and(Frame::is_trailers))
                {
                    this.ended = true;
                }
                if let Some((d, Some(sleep))) = &mut this.idle {
                    sleep.as_mut().reset(Instant::now() + *d);
                }
                if this.access.is_some()
                    && let Some(Ok(f)) = &frame
                    && let Some(data) = f.data_ref()
                {
                    this.sent += data.len() as u64;
                }
                Poll::Ready(frame)
            }
            Poll::Pending => {
                if let Some((d, sleep)) = &mut this.idle {
                    let sleep = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(*d)));
                    if sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(Err(
                            "the backend stopped sending the body".into()
                        )));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a request body's upload is going, as the request handler needs to
/// know it: a backend's answer is late only once the client's last byte
/// went out, a client that stops sending is the client's fault, and a body
/// the client broke must not count against the backend.
#[derive(Debug)]
pub struct Upload {
    /// When the last byte went, ms on [`crate::clock::now_ms`]; 0 = not yet.
    done_ms: AtomicU64,
    /// When the last frame came.
    last_ms: AtomicU64,
    /// The client's body failed (reset, malformed framing, cut short).
    failed: AtomicBool,
}

impl Upload {
    /// An upload starting now.
    pub fn new() -> Arc<Upload> {
        Arc::new(Upload {
            done_ms: AtomicU64::new(0),
            last_ms: AtomicU64::new(crate::clock::now_ms()),
            failed: AtomicBool::new(false),
        })
    }

    /// When the last byte went, if it has.
    pub fn done_ms(&self) -> Option<u64> {
        match self.done_ms.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// When the client last sent a frame.
    pub fn last_ms(&self) -> u64 {
        self.last_ms.load(Ordering::Relaxed)
    }

    /// True if the client's body failed.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

/// Where a body that was never read goes back to, so a request whose
/// connect failed can go to another backend with its body.
pub type Unsent<B> = Arc<std::sync::Mutex<Option<B>>>;

/// A client's request body on its way upstream, reporting to [`Upload`].
/// Dropped before its first frame was asked for (the connect failed, so
/// nothing was sent), it puts the body back in its [`Unsent`].
pub struct Watched<B> {
    body: Option<B>,
    upload: Arc<Upload>,
    polled: bool,
    unsent: Unsent<B>,
}

impl<B> Watched<B> {
    /// `body`, reporting to `upload`, returned to `unsent` if never read.
    pub fn new(body: B, upload: Arc<Upload>, unsent: Unsent<B>) -> Self {
        Watched {
            body: Some(body),
            upload,
            polled: false,
            unsent,
        }
    }
}

impl<B> Drop for Watched<B> {
    fn drop(&mut self) {
        if !self.polled
            && let Some(body) = self.body.take()
        {
            *self.unsent.lock().unwrap_or_else(|e| e.into_inner()) = Some(body);
        }
    }
}

impl<B: Body + Unpin> Body for Watched<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        this.polled = true;
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut *body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => {
                this.upload
                    .last_ms
                    .store(crate::clock::now_ms(), Ordering::Relaxed);
                if body.is_end_stream() {
                    this.upload
                        .done_ms
                        .store(crate::clock::now_ms().max(1), Ordering::Relaxed);
                }
            }
            Poll::Ready(Some(Err(_))) => this.upload.failed.store(true, Ordering::Relaxed),
            Poll::Ready(None) => this
                .upload
                .done_ms
                .store(crate::clock::now_ms().max(1), Ordering::Relaxed),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), B::size_hint)
    }
}
