//! The idle timeout of a routed connection: closed when no byte moved either
//! way for `idle_timeout_ms`. One timer per connection, shared by the wait
//! for the first response and by forwarding, and re-armed only when it
//! fires: moving bytes just records the time, instead of resetting a timer
//! for every read (a timer's registration costs more than the rest of a
//! small request's user-space work).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

// tokio's clock, so that tests with paused time see the same one the timer uses.
use tokio::time::{Instant, Sleep};

/// When bytes last moved on a connection, against its idle limit.
pub struct Idle {
    limit: Option<Duration>,
    start: Instant,
    /// Milliseconds after `start` of the last movement.
    last_ms: AtomicU64,
}

impl Idle {
    /// Starts counting now; `None` never expires.
    pub fn new(limit: Option<Duration>) -> Idle {
        Idle {
            limit,
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// The connection's one timer, first due after `first` (the wait for
    /// a response, when it is bounded more tightly) or a full limit.
    pub fn timer(&self, first: Option<Duration>) -> Option<Sleep> {
        let due = match (first, self.limit) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(tokio::time::sleep_until(self.start + due))
    }

    /// Bytes moved.
    pub fn touch(&self) {
        if self.limit.is_some() {
            let ms = self.start.elapsed().as_millis() as u64;
            self.last_ms.store(ms, Ordering::Relaxed);
        }
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Resolves once nothing has moved for the idle limit (never without
    /// one).
    pub async fn expired(&self, timer: Option<Pin<&mut Sleep>>) {
        match self.limit {
            Some(limit) => self.quiet_for(limit, timer).await,
            None => std::future::pending().await,
        }
    }

    /// Resolves once nothing has moved for `limit`.
    pub async fn quiet_for(&self, limit: Duration, timer: Option<Pin<&mut Sleep>>) {
        let Some(mut timer) = timer else {
            return std::future::pending().await;
        };
        if timer.deadline() > self.last() + limit {
            timer.as_mut().reset(self.last() + limit);
        }
        loop {
            timer.as_mut().await;
            let last = self.last();
            if last.elapsed() >= limit {
                return;
            }
            timer.as_mut().reset(last + limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn activity_postpones_expiry_and_silence_ends_it() {
        let idle = Idle::new(Some(Duration::from_secs(10)));
        let timer = idle.timer(None);
        tokio::pin!(timer);
        let started = tokio::time::Instant::now();
        let expired = idle.expired(timer.as_mut().as_pin_mut());
        tokio::pin!(expired);
        tokio::time::sleep(Duration::from_secs(6)).await;
        idle.touch();
        tokio::select! {
            _ = &mut expired => {}
            _ = tokio::time::sleep(Duration::from_secs(60)) => panic!("never expired"),
        }
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(16) && waited < Duration::from_secs(17),
            "{waited:?}"
        );
        let never = Idle::new(None);
        tokio::select! {
            _ = never.expired(None) => panic!("no limit, no expiry"),
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}
