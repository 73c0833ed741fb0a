//! A response body that holds its backend's request count until the last
//! byte is sent (or the client goes away), so `in_flight` counts requests
//! that are really in flight.

use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, SizeHint};

use crate::backends::ConnectionGuard;

/// `B`, counting one request of a backend while it lives.
pub struct Guarded<B> {
    body: B,
    _guard: ConnectionGuard,
}

impl<B> Guarded<B> {
    /// `body`, holding `guard`.
    pub fn new(body: B, guard: ConnectionGuard) -> Self {
        Guarded {
            body,
            _guard: guard,
        }
    }
}

impl<B: Body + Unpin> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
