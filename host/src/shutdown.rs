//! Shutdown: a [`ShutdownHandle`] moves the balancer from running to
//! graceful (stop accepting, let connections finish up to the graceful
//! timeout, then terminate workers) to forced (close everything now, SIGKILL
//! workers). The binary maps the first SIGINT/SIGTERM to graceful and a second
//! one to forced.

use tokio::sync::watch;

/// Tells a running balancer to stop.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    pub(crate) graceful: watch::Sender<bool>,
    pub(crate) force: watch::Sender<bool>,
}

impl ShutdownHandle {
    pub(crate) fn new() -> ShutdownHandle {
        ShutdownHandle {
            graceful: watch::channel(false).0,
            force: watch::channel(false).0,
        }
    }

    /// Stop accepting and drain.
    pub fn graceful(&self) {
        self.graceful.send_replace(true);
    }

    /// Close everything now.
    pub fn force(&self) {
        self.graceful.send_replace(true);
        self.force.send_replace(true);
    }

    /// True once a shutdown was asked for.
    pub fn is_shutting_down(&self) -> bool {
        *self.graceful.borrow()
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
