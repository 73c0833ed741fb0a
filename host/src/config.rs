//! Configuration: [`RawConfig`] is what a TOML file (or the command line)
//! says, checked only for shape; [`Config`] is the validated result the
//! balancer runs on. Unknown keys and bad values are errors that name the key
//! (and, from a file, the line).
//!
//! Defaults follow defuss-express where it has one (listen port 3000, workers
//! from 3001 on 127.0.0.1, 10 ms inspection window, 16 KiB head cap, 10 s
//! graceful timeout, respawn on, round-robin), except the heartbeat: worker
//! telemetry is sampled every second, not every minute, because a
//! resource-aware strategy is only as good as its data.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::strategy::{DEFAULT_FUEL, FallbackPolicy, StrategySource, StrategySpec};

/// How many workers to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Workers {
    /// A fixed number (0: no supervised workers, only static backends).
    Count(u32),
    /// `"auto"`: one per core.
    #[serde(with = "auto")]
    Auto,
}

mod auto {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("auto")
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        let s = String::deserialize(d)?;
        if s == "auto" {
            Ok(())
        } else {
            Err(serde::de::Error::custom(format!(
                "expected \"auto\" or a number, got {s:?}"
            )))
        }
    }
}

impl std::str::FromStr for Workers {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            Ok(Workers::Auto)
        } else {
            s.parse()
                .map(Workers::Count)
                .map_err(|_| format!("expected `auto` or a number, got `{s}`"))
        }
    }
}

/// What to do with connections that are neither HTTP nor TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpaquePolicy {
    /// Route them with an empty head.
    #[default]
    Route,
    /// Close them.
    Reject,
}

impl std::str::FromStr for OpaquePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "route" => Ok(OpaquePolicy::Route),
            "reject" => Ok(OpaquePolicy::Reject),
            _ => Err(format!("expected `route` or `reject`, got `{s}`")),
        }
    }
}

/// How bytes are moved between client and backend once routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Forward {
    /// `read`/`write` through a user-space buffer; a burst that fills the
    /// buffer continues with `splice(2)`. The default: the cheapest of both
    /// on small and on large messages (README, Performance).
    #[default]
    Auto,
    /// `read`/`write` through a user-space buffer only.
    Copy,
    /// `splice(2)` through a pipe per direction only (Linux).
    Splice,
}

impl std::str::FromStr for Forward {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Forward::Auto),
            "copy" => Ok(Forward::Copy),
            "splice" => Ok(Forward::Splice),
            _ => Err(format!("expected `auto`, `copy` or `splice`, got `{s}`")),
        }
    }
}

/// Every option, as written in `switchyard.toml`. Field docs are the manual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Address the balancer listens on.
    pub host: String,
    /// Port the balancer listens on.
    pub port: u16,
    /// `"auto"` (one per core) or a number; 0 runs no workers.
    pub workers: Workers,
    /// Address workers listen on.
    pub worker_host: String,
    /// Port of worker 0; worker i listens on `base_worker_port + i`.
    pub base_worker_port: u16,
    /// Program and arguments to run as each worker; empty runs the built-in
    /// demo worker.
    pub worker_command: Vec<String>,
    /// Extra environment for workers.
    pub worker_env: BTreeMap<String, String>,
    /// Static backends (`host:port`), not spawned by Switchyard.
    pub backends: Vec<String>,
    /// A file of static backends, one `host:port [weight]` per line; watched.
    pub backends_file: Option<PathBuf>,
    /// `builtin:NAME` or a path to a `.wasm`/`.wat` strategy (watched).
    pub strategy: String,
    /// Configuration bytes for the strategy's `switchyard_init`.
    pub strategy_config: String,
    /// Fuel per decision.
    pub fuel: u64,
    /// Cap on a strategy's memory, MiB.
    pub strategy_memory_mib: usize,
    /// Native decision when the strategy cannot decide.
    pub fallback: FallbackPolicy,
    /// How long to wait for first bytes before treating a connection as
    /// opaque (server-speaks-first protocols), ms.
    pub inspection_timeout_ms: u64,
    /// How long a client may take to send a complete HTTP head or
    /// ClientHello before it gets 408 (HTTP) or is closed, ms.
    pub head_timeout_ms: u64,
    /// Largest request head; larger gets 431.
    pub max_head_bytes: usize,
    /// Connections that are neither HTTP nor TLS: `route` or `reject`.
    pub opaque: OpaquePolicy,
    /// Backend connect timeout, ms.
    pub connect_timeout_ms: u64,
    /// How many other backends to try after a connect failure.
    pub retries: u32,
    /// Worker telemetry interval, ms.
    pub heartbeat_interval_ms: u64,
    /// Telemetry older than this marks a worker unhealthy, ms.
    pub heartbeat_stale_after_ms: u64,
    /// Active health check: `tcp`, `http:/path` or `none`.
    pub health_check: String,
    /// Active health check interval, ms.
    pub health_interval_ms: u64,
    /// Connect failures in a row that eject a backend until it passes a check.
    pub eject_after_failures: u32,
    /// How long open connections may take to finish on shutdown, ms.
    pub graceful_timeout_ms: u64,
    /// Restart workers that exit.
    pub respawn: bool,
    /// How long a new worker may take to accept connections, ms.
    pub ready_timeout_ms: u64,
    /// Most concurrent client connections.
    pub max_connections: usize,
    /// Send a PROXY protocol v2 header to backends.
    pub proxy_protocol: bool,
    /// How bytes are forwarded: `auto`, `copy` or `splice`.
    pub forward: Forward,
    /// Threads serving connections, each a single-threaded runtime with its
    /// own `SO_REUSEPORT` listener; 0 = one per core.
    pub threads: u32,
    /// Close a routed connection when no byte has moved either way for
    /// this long, ms; 0 = never. One hour by default, as Envoy's TCP proxy:
    /// WebSockets that ping live on, and connections to a backend host that
    /// vanished without a FIN do not hold their permits forever.
    pub idle_timeout_ms: u64,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            host: "0.0.0.0".into(),
            port: 3000,
            workers: Workers::Auto,
            worker_host: "127.0.0.1".into(),
            base_worker_port: 3001,
            worker_command: Vec::new(),
            worker_env: BTreeMap::new(),
            backends: Vec::new(),
            backends_file: None,
            strategy: "builtin:round-robin".into(),
            strategy_config: String::new(),
            fuel: DEFAULT_FUEL,
            strategy_memory_mib: 16,
            fallback: FallbackPolicy::default(),
            inspection_timeout_ms: 10,
            head_timeout_ms: 10_000,
            max_head_bytes: 16 * 1024,
            opaque: OpaquePolicy::Route,
            connect_timeout_ms: 2_000,
            retries: 2,
            heartbeat_interval_ms: 1_000,
            heartbeat_stale_after_ms: 10_000,
            health_check: "tcp".into(),
            health_interval_ms: 2_000,
            eject_after_failures: 3,
            graceful_timeout_ms: 10_000,
            respawn: true,
            ready_timeout_ms: 30_000,
            max_connections: 10_000,
            proxy_protocol: false,
            forward: Forward::Auto,
            threads: 0,
            idle_timeout_ms: 3_600_000,
        }
    }
}

/// An active health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// None: backends are healthy while alive.
    None,
    /// The port accepts a connection.
    Tcp,
    /// `GET path` answers 2xx or 3xx.
    Http(String),
}

/// A static backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticBackend {
    /// Where.
    pub addr: SocketAddr,
    /// Weight.
    pub weight: u32,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What it was made from (printed by `config check`).
    pub raw: RawConfig,
    /// Listen address.
    pub listen: SocketAddr,
    /// Number of supervised workers.
    pub workers: u32,
    /// Threads serving connections (`threads`, resolved).
    pub threads: usize,
    /// Worker listen host.
    pub worker_host: String,
    /// Worker command; empty = built-in demo worker.
    pub worker_command: Vec<String>,
    /// Static backends.
    pub backends: Vec<StaticBackend>,
    /// Strategy to load.
    pub strategy: StrategySpec,
    /// Health check.
    pub health_check: HealthCheck,
}

/// A configuration error naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// TOML syntax, unknown key or wrong type (the message has the line).
    #[error("{0}: {1}")]
    Parse(PathBuf, String),
    /// A value that parses but makes no sense.
    #[error("`{key}`: {message}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An error in a value written in a config file, with where it is written.
    #[error("{}:{line}: {error}", path.display())]
    At {
        /// The file.
        path: PathBuf,
        /// 1-based line of the key.
        line: usize,
        /// The error.
        error: Box<ConfigError>,
    },
}

/// Where a config file wrote each top-level key, so that an error found by
/// [`RawConfig::validate`] (after flags and environment were applied) can
/// name the file and line when the bad value came from the file.
#[derive(Debug, Clone)]
pub struct FileOrigin {
    path: PathBuf,
    lines: std::collections::HashMap<String, usize>,
    values: toml::Table,
}

impl FileOrigin {
    fn new(path: &Path, text: &str) -> FileOrigin {
        let line_of = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
        let lines = toml::de::DeTable::parse(text)
            .map(|t| {
                t.get_ref()
                    .iter()
                    .map(|(k, _)| (k.get_ref().to_string(), line_of(k.span().start)))
                    .collect()
            })
            .unwrap_or_default();
        FileOrigin {
            path: path.into(),
            lines,
            values: toml::from_str(text).unwrap_or_default(),
        }
    }

    /// Adds file and line to an [`ConfigError::Invalid`] whose key the file
    /// wrote, unless a flag or the environment replaced the file's value
    /// (then the line would point at the wrong culprit).
    pub fn locate(&self, raw: &RawConfig, error: ConfigError) -> ConfigError {
        let ConfigError::Invalid { key, .. } = &error else {
            return error;
        };
        let Some(&line) = self.lines.get(*key) else {
            return error;
        };
        let effective = toml::Table::try_from(raw).ok();
        let now = effective.as_ref().and_then(|t| t.get(*key));
        if now.is_none() || now != self.values.get(*key) {
            return error;
        }
        ConfigError::At {
            path: self.path.clone(),
            line,
            error: Box::new(error),
        }
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl RawConfig {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        Self::load(path).map(|(raw, _)| raw)
    }

    /// Reads a TOML file and remembers where each key is written, for
    /// [`FileOrigin::locate`].
    pub fn load(path: &Path) -> Result<(RawConfig, FileOrigin), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
        let raw =
            toml::from_str(&text).map_err(|e| ConfigError::Parse(path.into(), e.to_string()))?;
        Ok((raw, FileOrigin::new(path, &text)))
    }

    /// Applies `HOST` and `PORT` from the environment, as defuss-express does.
    pub fn apply_env(&mut self) -> Result<(), ConfigError> {
        if let Ok(h) = std::env::var("HOST")
            && !h.is_empty()
        {
            self.host = h;
        }
        if let Ok(p) = std::env::var("PORT")
            && !p.is_empty()
        {
            self.port = p
                .parse()
                .map_err(|_| invalid("PORT", format!("not a port number: `{p}`")))?;
        }
        Ok(())
    }

    /// Validates and resolves.
    pub fn validate(self) -> Result<Config, ConfigError> {
        self.validate_with(false)
    }

    /// Validates; `other_backends` says backends come from elsewhere (the
    /// builder's in-process workers).
    pub(crate) fn validate_with(self, other_backends: bool) -> Result<Config, ConfigError> {
        let listen = resolve(&self.host, self.port).map_err(|e| invalid("host", e))?;
        let workers = match self.workers {
            Workers::Count(n) => n,
            Workers::Auto => cores() as u32,
        };
        if workers > 1024 {
            return Err(invalid("workers", "at most 1024"));
        }
        if workers > 0 && self.base_worker_port as u32 + workers > 65536 {
            return Err(invalid(
                "base_worker_port",
                "workers would run past port 65535",
            ));
        }
        let mut backends = Vec::new();
        for b in &self.backends {
            backends.push(parse_backend(b).map_err(|e| invalid("backends", e))?);
        }
        if workers == 0 && backends.is_empty() && self.backends_file.is_none() && !other_backends {
            return Err(invalid(
                "workers",
                "0 workers and no `backends`: there would be nothing to route to",
            ));
        }
        let source: StrategySource = self.strategy.parse().map_err(|e| invalid("strategy", e))?;
        let health_check = match self.health_check.as_str() {
            "none" => HealthCheck::None,
            "tcp" => HealthCheck::Tcp,
            s => match s.strip_prefix("http:") {
                Some(path) if path.starts_with('/') => HealthCheck::Http(path.to_string()),
                _ => {
                    return Err(invalid(
                        "health_check",
                        format!("expected `tcp`, `none` or `http:/path`, got `{s}`"),
                    ));
                }
            },
        };
        for (key, v) in [
            ("inspection_timeout_ms", self.inspection_timeout_ms),
            ("head_timeout_ms", self.head_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("health_interval_ms", self.health_interval_ms),
            ("fuel", self.fuel),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be above 0"));
            }
        }
        if self.max_head_bytes < 64 || self.max_head_bytes > 1 << 20 {
            return Err(invalid("max_head_bytes", "must be between 64 and 1048576"));
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections", "must be above 0"));
        }
        let threads = match self.threads {
            0 => cores(),
            n if n > 1024 => return Err(invalid("threads", "at most 1024")),
            n => n as usize,
        };
        if self.worker_command.first().is_some_and(|c| c.is_empty()) {
            return Err(invalid("worker_command", "the program name is empty"));
        }
        Ok(Config {
            listen,
            workers,
            threads,
            worker_host: self.worker_host.clone(),
            worker_command: self.worker_command.clone(),
            backends,
            strategy: StrategySpec {
                source,
                config: self.strategy_config.clone().into_bytes(),
            },
            health_check,
            raw: self,
        })
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print: {e}"))
    }
}

impl Config {
    /// Inspection window.
    pub fn inspection_timeout(&self) -> Duration {
        Duration::from_millis(self.raw.inspection_timeout_ms)
    }
    /// Head timeout.
    pub fn head_timeout(&self) -> Duration {
        Duration::from_millis(self.raw.head_timeout_ms)
    }
    /// Connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.raw.connect_timeout_ms)
    }
    /// Graceful shutdown timeout.
    pub fn graceful_timeout(&self) -> Duration {
        Duration::from_millis(self.raw.graceful_timeout_ms)
    }
    /// Idle timeout of routed connections, if any.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.raw.idle_timeout_ms > 0).then(|| Duration::from_millis(self.raw.idle_timeout_ms))
    }
}

/// What `"auto"` workers and `threads = 0` mean: one per core.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{host}` has no address"))
}

/// Parses `host:port` or `host:port weight`.
pub fn parse_backend(s: &str) -> Result<StaticBackend, String> {
    let mut parts = s.split_whitespace();
    let addr = parts.next().ok_or("empty backend")?;
    let weight = match parts.next() {
        Some(w) => w
            .strip_prefix("weight=")
            .unwrap_or(w)
            .parse()
            .map_err(|_| format!("bad weight in `{s}`"))?,
        None => 1,
    };
    let addr = addr
        .to_socket_addrs()
        .map_err(|e| format!("`{addr}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{addr}` has no address"))?;
    Ok(StaticBackend { addr, weight })
}

/// Reads a backends file: one `host:port [weight]` per line, `#` comments.
pub fn read_backends_file(path: &Path) -> Result<Vec<StaticBackend>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| (i, l.split('#').next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| parse_backend(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let c = RawConfig::default().validate().unwrap();
        assert_eq!(c.listen.port(), 3000);
        assert!(c.workers >= 1);
        assert_eq!(c.strategy, StrategySpec::builtin("round-robin"));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = toml::from_str::<RawConfig>("port = 1\nwrokers = 2\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("wrokers") && msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let raw: RawConfig = toml::from_str("workers = \"many\"").unwrap_or_default();
        assert_eq!(
            raw.workers,
            Workers::Auto,
            "untagged enum falls through to error"
        );
        assert!(toml::from_str::<RawConfig>("workers = \"many\"").is_err());
        let e = RawConfig {
            health_check: "ping".into(),
            ..RawConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("health_check"), "{e}");
        let e = RawConfig {
            workers: Workers::Count(0),
            ..RawConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("workers"), "{e}");
    }

    #[test]
    fn workers_and_backends_parse() {
        let raw: RawConfig =
            toml::from_str("workers = 3\nbackends = [\"127.0.0.1:9000 5\"]").unwrap();
        let c = raw.validate().unwrap();
        assert_eq!(c.workers, 3);
        assert_eq!(c.backends[0].weight, 5);
        let raw: RawConfig = toml::from_str("workers = \"auto\"").unwrap();
        assert_eq!(raw.workers, Workers::Auto);
        assert!(parse_backend("nonsense").is_err());
    }
}
