//! Active health checks (TCP connect or HTTP GET) and passive ejection.
//!
//! A backend turns unhealthy after [`FALL`] failed checks in a row, or when
//! its last passing check is older than `heartbeat_stale_after_ms` (a check
//! that hangs counts as failing), or when the proxy sees
//! `eject_after_failures` failures in a row: connects that fail, or
//! connections it closes before sending a byte. One passing check makes it
//! healthy again. With `health_check = "none"`, an ejected backend is let back
//! after one interval.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{Backend, Backends, HealthChange};

/// Failed checks in a row that mark a backend unhealthy.
pub const FALL: u32 = 2;

/// An active health check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HealthCheck {
    /// None: backends are healthy while alive.
    None,
    /// The port accepts a connection.
    Tcp,
    /// `GET path` answers 2xx or 3xx.
    Http(String),
}

impl FromStr for HealthCheck {
    type Err = String;
    fn from_str(s: &str) -> Result<HealthCheck, String> {
        match s {
            "none" => Ok(HealthCheck::None),
            "tcp" => Ok(HealthCheck::Tcp),
            _ => match s.strip_prefix("http:") {
                Some(path) if path.starts_with('/') => Ok(HealthCheck::Http(path.to_string())),
                _ => Err(format!("expected `tcp`, `none` or `http:/path`, got `{s}`")),
            },
        }
    }
}

impl std::fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealthCheck::None => f.write_str("none"),
            HealthCheck::Tcp => f.write_str("tcp"),
            HealthCheck::Http(p) => write!(f, "http:{p}"),
        }
    }
}

impl TryFrom<String> for HealthCheck {
    type Error = String;
    fn try_from(s: String) -> Result<HealthCheck, String> {
        s.parse()
    }
}

impl From<HealthCheck> for String {
    fn from(h: HealthCheck) -> String {
        h.to_string()
    }
}

/// How health is learned.
#[derive(Debug, Clone)]
pub struct HealthOptions {
    /// The active check.
    pub check: HealthCheck,
    /// How often.
    pub interval: Duration,
    /// A backend whose last pass is older than this is unhealthy.
    pub stale_after: Duration,
    /// Failures in a row seen by the proxy that eject a backend.
    pub eject_after_failures: u32,
}

/// Runs one check.
async fn check(addr: std::net::SocketAddr, kind: &HealthCheck, timeout: Duration) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        if let HealthCheck::Http(path) = kind {
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: switchyard-health\r\nConnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await?;
            let mut buf = [0u8; 16];
            let mut n = 0;
            while n < 12 {
                let k = s.read(&mut buf[n..]).await?;
                if k == 0 {
                    break;
                }
                n += k;
            }
            // "HTTP/1.1 2xx" or "3xx".
            return Ok::<bool, std::io::Error>(
                n >= 12 && buf.starts_with(b"HTTP/1.") && matches!(buf[9], b'2' | b'3'),
            );
        }
        Ok(true)
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Ok(true)))
}

/// Checks every alive backend each interval until `stop`.
pub async fn run(backends: Arc<Backends>, opts: HealthOptions, stop: CancellationToken) {
    let opts = Arc::new(opts);
    let timeout = opts.interval.min(Duration::from_secs(2));
    crate::shutdown::every(opts.interval, &stop, || {
        let (backends, opts) = (backends.clone(), opts.clone());
        async move {
            let mut checks = tokio::task::JoinSet::new();
            for b in backends.load().iter().filter(|b| b.is_alive()) {
                let (opts, b) = (opts.clone(), b.clone());
                checks.spawn(async move {
                    let ok = match &opts.check {
                        HealthCheck::None => true,
                        kind => check(b.addr(), kind, timeout).await,
                    };
                    record(&opts, &b, ok);
                });
            }
            while checks.join_next().await.is_some() {}
        }
    })
    .await;
}

fn record(opts: &HealthOptions, b: &Backend, ok: bool) {
    let stale_ms = opts.stale_after.as_millis() as u64;
    match b.health_checked(ok, FALL, stale_ms) {
        HealthChange::None => {}
        HealthChange::Recovered => {
            tracing::info!(backend = %b.name(), addr = %b.addr(), "backend healthy again")
        }
        HealthChange::Failed(n) => {
            tracing::warn!(backend = %b.name(), addr = %b.addr(), failures = n, "backend failed health checks")
        }
    }
}

/// Passive ejection: the proxy saw `b` fail (a connect, or a close before
/// the first response byte) because of `why`.
pub fn failed(eject_after: u32, b: &Backend, why: &crate::error::Error) {
    crate::metrics::METRICS.error(why.kind());
    if let Some(n) = b.failed(eject_after) {
        tracing::warn!(
            backend = %b.name(),
            addr = %b.addr(),
            failures = n,
            last = %why,
            "backend ejected after failures in a row"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_parse_and_print() {
        for s in ["none", "tcp", "http:/healthz"] {
            let h: HealthCheck = s.parse().unwrap();
            assert_eq!(String::from(h), s);
        }
        let e = "ping".parse::<HealthCheck>().unwrap_err();
        assert_eq!(e, "expected `tcp`, `none` or `http:/path`, got `ping`");
    }
}
