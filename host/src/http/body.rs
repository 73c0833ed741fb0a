//! The body of every response HTTP mode sends. It holds what must live
//! exactly as long as the response does: the backend's request count (so
//! `in_flight` counts requests really in flight) and the client
//! connection's busy mark (so keep-alive idleness starts when the response
//! ends). A backend that stops sending mid-body for longer than the body
//! timeout fails the response instead of holding the client forever.

use std::pin::Pin;
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
}

impl Tracked {
    /// A backend's body.
    pub fn upstream(
        body: Incoming,
        busy: Option<Busy>,
        backend: ConnectionGuard,
        idle: Option<Duration>,
    ) -> Self {
        Tracked {
            inner: Either::Left(body),
            _busy: busy,
            _backend: Some(backend),
            idle: idle.map(|d| (d, None)),
        }
    }

    /// A body Switchyard wrote.
    pub fn full(bytes: Bytes, busy: Option<Busy>) -> Self {
        Tracked {
            inner: Either::Right(Full::new(bytes)),
            _busy: busy,
            _backend: None,
            idle: None,
        }
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
                if let Some((d, Some(sleep))) = &mut this.idle {
                    sleep.as_mut().reset(Instant::now() + *d);
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
