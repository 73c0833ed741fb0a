//! What Switchyard tells its operators: the log (a `tracing` subscriber,
//! with colours only on a terminal) and rate limits for events a client or
//! a strategy can trigger on every request, so that nobody can flood the log.

use std::sync::atomic::{AtomicU64, Ordering};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// For people: one line per event, colours only on a terminal.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for
    /// log pipelines.
    Json,
}

/// Installs the log: `filter` as `RUST_LOG` would, to standard error, as
/// text (ANSI colours only when standard error is a terminal; a file or a
/// pipe gets plain text) or one JSON object per line.
pub fn init_logging(filter: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// Allows `per_second` events per wall-clock second and counts the rest.
#[derive(Debug)]
pub struct RateLimit {
    per_second: u64,
    /// `second << 20 | count` in one word so a window switch is one CAS.
    state: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    /// A limiter allowing `per_second` events per second.
    pub const fn new(per_second: u64) -> Self {
        RateLimit {
            per_second,
            state: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some` if this event may be logged. On the first event of a new
    /// second, the number is how many were suppressed since the last one
    /// logged; otherwise 0.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(crate::clock::origin().elapsed().as_secs())
    }

    /// [`RateLimit::allow`] at second `now` of the process clock.
    pub fn allow_at(&self, now: u64) -> Option<u64> {
        // +1 so that second 0 differs from the zeroed initial state.
        let now = now + 1;
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let (sec, count) = (cur >> 20, cur & 0xF_FFFF);
            let next = if sec == now {
                if count >= self.per_second {
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                cur + 1
            } else {
                (now << 20) | 1
            };
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Some(if sec == now {
                        0
                    } else {
                        self.suppressed.swap(0, Ordering::Relaxed)
                    });
                }
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_a_burst_then_counts_the_rest() {
        let limit = RateLimit::new(3);
        let second = |t: u64| (0..10).map(|_| limit.allow_at(t)).collect::<Vec<_>>();
        let burst = |first: u64| {
            let mut v = vec![Some(first), Some(0), Some(0)];
            v.extend([None; 7]);
            v
        };
        // Second 5: three allowed, seven suppressed.
        assert_eq!(second(5), burst(0));
        // The first event of the next second reports the seven.
        assert_eq!(second(6), burst(7));
        // A quiet second in between changes nothing: seven again, then reset.
        assert_eq!(limit.allow_at(8), Some(7));
        assert_eq!(limit.allow_at(9), Some(0));
    }

    #[test]
    fn one_per_second_means_one_per_second() {
        let limit = RateLimit::new(1);
        let logged: usize = (0..5u64)
            .map(|t| (0..1000).filter(|_| limit.allow_at(t).is_some()).count())
            .sum();
        assert_eq!(logged, 5);
    }
}
