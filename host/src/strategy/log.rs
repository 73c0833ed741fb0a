//! A strategy's own log lines, rate-limited: a module can print on every
//! decision, and must not flood the host's log doing it.

use std::sync::Arc;

pub use crate::telemetry::RateLimit;

/// Where a strategy's own log lines (the `switchyard.log` import, WASI stdout
/// and stderr) go: the host's `tracing` output, at most 20 lines a second per
/// strategy generation.
#[derive(Clone, Debug)]
pub struct GuestLog {
    /// Strategy name shown with each line.
    pub name: Arc<str>,
    /// Shared by every instance of one generation.
    pub limit: Arc<RateLimit>,
}

impl GuestLog {
    /// A log for strategy `name`.
    pub fn new(name: &str) -> Self {
        GuestLog {
            name: name.into(),
            limit: Arc::new(RateLimit::new(20)),
        }
    }

    /// A log that writes nothing: for the load-time replays that check a
    /// module's declaration, whose lines would repeat the dry run's.
    pub fn muted(name: &str) -> Self {
        GuestLog {
            name: name.into(),
            limit: Arc::new(RateLimit::new(0)),
        }
    }

    /// Logs one guest line at `level` (0 error, 1 warn, 2 info, 3+ debug).
    pub fn line(&self, level: i32, bytes: &[u8]) {
        let Some(suppressed) = self.limit.allow() else {
            return;
        };
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end();
        let name = &*self.name;
        match level {
            0 => {
                tracing::error!(target: "switchyard::guest", strategy = name, suppressed, "{text}")
            }
            1 => tracing::warn!(target: "switchyard::guest", strategy = name, suppressed, "{text}"),
            2 => tracing::info!(target: "switchyard::guest", strategy = name, suppressed, "{text}"),
            _ => {
                tracing::debug!(target: "switchyard::guest", strategy = name, suppressed, "{text}")
            }
        }
    }
}
