//! Shutdown, one mechanism for everything: a tree of cancellation tokens.
//!
//! ```text
//! force ─┬─ graceful   listeners stop accepting and drain open connections;
//!        │             HTTP connections finish their current requests
//!        └─ stop       workers, health checks and telemetry stop
//! ```
//!
//! (File watchers are threads of their own; they stop when the balancer,
//! which holds their guards, is dropped.)
//!
//! [`ShutdownHandle::graceful`] cancels `graceful`; once connections have
//! drained (or the graceful timeout passed) the balancer cancels `stop`.
//! [`ShutdownHandle::force`] cancels the root, so everything stops at once:
//! open connections are closed and workers get SIGKILL without waiting. The
//! binary maps the first SIGINT/SIGTERM to graceful and a second one to
//! forced.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Tells a running balancer to stop.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    force: CancellationToken,
    graceful: CancellationToken,
}

/// The tokens the balancer's parts watch.
#[derive(Debug, Clone)]
pub(crate) struct Tokens {
    /// Fired by a forced shutdown.
    pub force: CancellationToken,
    /// Fired by any shutdown: stop accepting.
    pub graceful: CancellationToken,
    /// Fired after connections drained: stop everything else.
    pub stop: CancellationToken,
}

impl ShutdownHandle {
    pub(crate) fn new() -> ShutdownHandle {
        let force = CancellationToken::new();
        ShutdownHandle {
            graceful: force.child_token(),
            force,
        }
    }

    /// The tokens for one balancer run.
    pub(crate) fn tokens(&self) -> Tokens {
        Tokens {
            force: self.force.clone(),
            graceful: self.graceful.clone(),
            stop: self.force.child_token(),
        }
    }

    /// Stop accepting and drain.
    pub fn graceful(&self) {
        self.graceful.cancel();
    }

    /// Close everything now.
    pub fn force(&self) {
        self.force.cancel();
    }

    /// True once a shutdown was asked for.
    pub fn is_shutting_down(&self) -> bool {
        self.graceful.is_cancelled()
    }
}

/// Calls `tick` every `period` (the first at once) until `stop`; a tick that
/// is running when `stop` fires is dropped. The loop health checks and
/// telemetry share.
pub async fn every<F, Fut>(period: Duration, stop: &CancellationToken, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.cancelled() => return,
        }
        tokio::select! {
            _ = tick() => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// First signal: graceful; second: forced.
pub async fn on_signals(handle: ShutdownHandle) {
    signal().await;
    tracing::info!("shutting down gracefully (send the signal again to force)");
    handle.graceful();
    signal().await;
    tracing::warn!("forcing shutdown");
    handle.force();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn force_reaches_every_token_and_graceful_only_its_own() {
        let h = ShutdownHandle::new();
        let t = h.tokens();
        h.graceful();
        assert!(t.graceful.is_cancelled() && !t.stop.is_cancelled() && !t.force.is_cancelled());
        assert!(h.is_shutting_down());
        let h = ShutdownHandle::new();
        let t = h.tokens();
        h.force();
        assert!(t.graceful.is_cancelled() && t.stop.is_cancelled() && t.force.is_cancelled());
    }
}
