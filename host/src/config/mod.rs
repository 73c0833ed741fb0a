//! Configuration in two stages: [`RawConfig`] is what the user wrote (a TOML
//! file, flags, `HOST`/`PORT`), checked only for shape; [`Config`] is the
//! validated, typed result the balancer runs on, resolved once. Nothing reads
//! a raw value at run time.
//!
//! Each option is declared once, as a field of [`RawConfig`]: its name is the
//! TOML key, its `#[arg]` the flag and its default, its doc comment the help
//! text. [`RawConfig::default`] is the flags parsed from an empty command
//! line, so no default is written twice. [`layers`] merges the sources
//! (defaults < file < environment < flags) and remembers where each value
//! came from, so that an error names the file and line, the flag or the
//! variable that set it.
//!
//! Defaults follow defuss-express where it has one (listen port 3000, workers
//! from 3001 on 127.0.0.1, 16 KiB head cap, 10 s graceful timeout, respawn on,
//! round-robin), except two: worker telemetry is sampled every second, not
//! every minute, because a resource-aware strategy is only as good as its
//! data; and a silent client is waited for instead of being routed as opaque
//! after 10 ms (`server_first_after_ms`), because silence is not a protocol.

pub mod layers;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{ArgAction, Args, CommandFactory, FromArgMatches};
use serde::{Deserialize, Serialize};

use crate::backends::health::{HealthCheck, HealthOptions};
use crate::backends::spec::{self, BackendSpec};
use crate::backends::supervisor::{WorkerCommand, WorkerOptions};
use crate::http::{BackendProtocol, HttpOptions, Mode};
use crate::proxy::{Forward, ProxyOptions};
use crate::sniff::{self, OpaquePolicy};
use crate::strategy::{
    DEFAULT_FUEL, DEFAULT_MEMORY_MIB, FallbackPolicy, StrategyOptions, StrategySource, StrategySpec,
};
pub use layers::{ConfigError, Flags, Layered};

/// `"auto"` or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Derived from the machine (cores, or the open-file limit).
    Auto,
    /// This many.
    Fixed(u32),
}

impl FromStr for Count {
    type Err = String;
    fn from_str(s: &str) -> Result<Count, String> {
        match s {
            "auto" => Ok(Count::Auto),
            _ => s
                .parse()
                .map(Count::Fixed)
                .map_err(|_| format!("expected `auto` or a number, got `{s}`")),
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Auto => f.write_str("auto"),
            Count::Fixed(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Count {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Count::Auto => s.serialize_str("auto"),
            Count::Fixed(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(u32),
            Text(String),
        }
        match Repr::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected \"auto\" or a number"))?
        {
            Repr::Number(n) => Ok(Count::Fixed(n)),
            Repr::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Every option, as written in `switchyard.toml` or on the command line of
/// `switchyard serve`. Field docs are the help text and the manual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Address the balancer listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    /// Port the balancer listens on.
    #[arg(long, short, default_value_t = 3000)]
    pub port: u16,
    /// Workers: `auto` (one per core) or a number; 0 runs none (static
    /// backends only).
    #[arg(long, short, default_value_t = Count::Auto)]
    pub workers: Count,
    /// Address workers listen on (each gets it as HOST).
    #[arg(long, default_value = "127.0.0.1")]
    pub worker_host: String,
    /// Port of worker 0; worker i listens on base_worker_port + i (its PORT).
    #[arg(long, default_value_t = 3001)]
    pub base_worker_port: u16,
    /// Program and arguments to run as each worker (everything after `--`);
    /// empty runs the built-in demo worker.
    #[arg(last = true, value_name = "COMMAND")]
    pub worker_command: Vec<String>,
    /// Extra environment for workers (a TOML table; no flag).
    #[arg(skip)]
    pub worker_env: BTreeMap<String, String>,
    /// A static backend `HOST:PORT [WEIGHT] [name=NAME]` (repeatable).
    #[arg(long = "backend", value_name = "BACKEND")]
    pub backends: Vec<String>,
    /// A file of static backends, one `HOST:PORT [WEIGHT] [name=NAME]` per
    /// line; watched and reloaded.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backends_file: Option<PathBuf>,
    /// `builtin:NAME` or a `.wasm`/`.wat` file (watched and hot-swapped).
    #[arg(long, short, default_value = "builtin:round-robin")]
    pub strategy: String,
    /// Configuration for the strategy's `switchyard_init`: text, or `@FILE`.
    #[arg(long, default_value = "")]
    pub strategy_config: String,
    /// Fuel per decision: a runaway strategy is cut off after this much.
    #[arg(long, default_value_t = DEFAULT_FUEL)]
    pub fuel: u64,
    /// Cap on a strategy's linear memory, MiB.
    #[arg(long, default_value_t = DEFAULT_MEMORY_MIB)]
    pub strategy_memory_mib: usize,
    /// Built-in that decides, natively, when the strategy cannot.
    #[arg(long, default_value_t = FallbackPolicy::default())]
    pub fallback: FallbackPolicy,
    /// Route a connection whose client stays silent this long as opaque, for
    /// server-speaks-first protocols (SMTP, MySQL, ...), ms; 0 = never: wait
    /// for the client's first bytes up to the head timeout. Was
    /// `inspection_timeout_ms`.
    #[arg(long, alias = "inspection-timeout-ms", default_value_t = 0)]
    #[serde(alias = "inspection_timeout_ms")]
    pub server_first_after_ms: u64,
    /// A client must send its first bytes and its whole HTTP head (or TLS
    /// ClientHello) within this, ms; else 408 (HTTP) or a close.
    #[arg(long, default_value_t = 10_000)]
    pub head_timeout_ms: u64,
    /// Largest request head in bytes; larger gets 431 (so do more than 128
    /// headers).
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_head_bytes: usize,
    /// How requests are routed: `tcp` (a decision per connection, bytes
    /// passed untouched), `http` (a decision per HTTP request; anything
    /// else refused) or `auto` (HTTP as `http`, the rest as `tcp`).
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,
    /// HTTP mode: the protocol spoken to backends, `http1` (pooled
    /// keep-alive connections) or `h2` (HTTP/2 with prior knowledge, for
    /// gRPC backends).
    #[arg(long, value_enum, default_value_t = BackendProtocol::Http1)]
    pub backend_protocol: BackendProtocol,
    /// A backend must start its response to an HTTP request within this
    /// of the request's last byte, ms (else 504); in HTTP mode, its
    /// response head.
    #[arg(long, default_value_t = 60_000)]
    pub upstream_header_timeout_ms: u64,
    /// HTTP mode: a backend that sends no byte of a response body for this
    /// long has failed (the client's response is cut), ms; 0 = never.
    #[arg(long, default_value_t = 60_000)]
    pub upstream_body_timeout_ms: u64,
    /// HTTP mode: close a client connection with no request in flight and
    /// no byte of the next one for this long, ms.
    #[arg(long, default_value_t = 75_000)]
    pub keepalive_timeout_ms: u64,
    /// HTTP mode: keep and extend X-Forwarded-* and Forwarded from clients
    /// (for clients behind proxies you trust) instead of replacing them.
    #[arg(long, action = ArgAction::SetTrue)]
    pub trust_forwarded: bool,
    /// HTTP mode: add X-Request-Id to requests that have none.
    #[arg(long, action = ArgAction::SetTrue)]
    pub request_id: bool,
    /// HTTP mode: idle keep-alive connections kept per backend and serving
    /// thread.
    #[arg(long, default_value_t = 64)]
    pub pool_max_idle: usize,
    /// HTTP mode: how long an idle pooled connection is kept, ms.
    #[arg(long, default_value_t = 90_000)]
    pub pool_idle_timeout_ms: u64,
    /// TLS certificate chain, PEM (repeatable; paired in order with
    /// `--tls-key`; chosen by SNI, the first is the default). With any, TLS
    /// is terminated in HTTP and auto mode; without, TLS passes through.
    #[arg(long = "tls-cert", value_name = "FILE")]
    pub tls_cert: Vec<PathBuf>,
    /// The private key of the `--tls-cert` at the same position, PEM.
    #[arg(long = "tls-key", value_name = "FILE")]
    pub tls_key: Vec<PathBuf>,
    /// Open an HTTP/3 (QUIC) listener on UDP (with a self-signed
    /// development certificate if no `--tls-cert` is given).
    #[arg(long, action = ArgAction::SetTrue)]
    pub h3: bool,
    /// UDP port for HTTP/3; 0 = the TCP port.
    #[arg(long, default_value_t = 0)]
    pub h3_port: u16,
    /// Connections that are neither HTTP nor TLS: route (with an empty head)
    /// or reject (close).
    #[arg(long, value_enum, default_value_t = OpaquePolicy::Route)]
    pub opaque: OpaquePolicy,
    /// Backend connect timeout, ms.
    #[arg(long, default_value_t = 2_000)]
    pub connect_timeout_ms: u64,
    /// Other backends to try after a failed connect (or, for a safe request
    /// still held whole, a backend that closed before answering).
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// Most bytes of a safe request (GET, HEAD, OPTIONS, TRACE) held so it
    /// can be replayed to another backend; a larger one is not replayed.
    #[arg(long, default_value_t = 64 * 1024)]
    pub replay_limit_bytes: usize,
    /// Worker CPU and memory sampling interval, ms.
    #[arg(long, default_value_t = 1_000)]
    pub heartbeat_interval_ms: u64,
    /// A backend whose last passing health check is older is unhealthy, ms.
    #[arg(long, default_value_t = 10_000)]
    pub heartbeat_stale_after_ms: u64,
    /// Active health check: `tcp`, `none` or `http:/path` (2xx or 3xx passes).
    #[arg(long, default_value_t = HealthCheck::Tcp)]
    pub health_check: HealthCheck,
    /// Active health check interval, ms.
    #[arg(long, default_value_t = 2_000)]
    pub health_interval_ms: u64,
    /// Failures in a row (connects, or closes before the first response
    /// byte) that eject a backend until its next passing check.
    #[arg(long, default_value_t = 3)]
    pub eject_after_failures: u32,
    /// Open connections may take this long to finish on shutdown, ms.
    #[arg(long, default_value_t = 10_000)]
    pub graceful_timeout_ms: u64,
    /// Workers still running this long after SIGTERM get SIGKILL, ms.
    #[arg(long, default_value_t = 5_000)]
    pub worker_stop_timeout_ms: u64,
    /// Restart workers that exit (`--no-respawn` turns it off).
    #[arg(
        long = "no-respawn",
        action = ArgAction::SetFalse,
        help = "Do not restart workers that exit (by default they are restarted, with backoff)"
    )]
    pub respawn: bool,
    /// How long a new worker may take to accept connections, ms.
    #[arg(long, default_value_t = 30_000)]
    pub ready_timeout_ms: u64,
    /// Concurrent client connections (more wait in the kernel backlog);
    /// `auto`: as many as the open-file limit carries (two descriptors each).
    #[arg(long, default_value_t = Count::Auto)]
    pub max_connections: Count,
    /// Send a PROXY protocol v2 header to backends.
    #[arg(long, action = ArgAction::SetTrue)]
    pub proxy_protocol: bool,
    /// How bytes move once routed: auto (read/write, splice for bulk), copy
    /// or splice.
    #[arg(long, value_enum, default_value_t = Forward::Auto)]
    pub forward: Forward,
    /// Threads serving connections, each a single-threaded runtime with its
    /// own SO_REUSEPORT listener; 0 = one per core.
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
    /// Close a routed connection when no byte moved either way for this
    /// long, ms; 0 = never.
    #[arg(long, default_value_t = 3_600_000)]
    pub idle_timeout_ms: u64,
    /// The access log: one JSON line per connection (TCP mode) or request
    /// (HTTP mode), written off the byte path: a file (appended to), `-`
    /// for standard output, or `off`.
    #[arg(long, default_value = "off")]
    pub access_log: String,
    /// A second strategy (`builtin:NAME` or a file) run on the same inputs
    /// after every decision, never routing: its agreement with the real
    /// one is counted (status, metrics), to prove it on live traffic
    /// before swapping it in. Empty: none.
    #[arg(long, default_value = "")]
    pub shadow_strategy: String,
    /// Configuration for the shadow strategy's `switchyard_init`: text, or
    /// `@FILE`.
    #[arg(long, default_value = "")]
    pub shadow_strategy_config: String,
    /// The shadow strategy's own fuel budget per decision; 0 = `fuel`.
    #[arg(long, default_value_t = 0)]
    pub shadow_fuel: u64,
    /// Admin API address (`/status`, `/metrics`, `PUT /strategy`, drains,
    /// the status page; `switchyard ctl` talks to it), or `off`. Loopback
    /// by default; any other address needs a token.
    #[arg(long, default_value = DEFAULT_ADMIN)]
    pub admin: String,
    /// A file whose first line is the admin API's bearer token (else
    /// SWITCHYARD_ADMIN_TOKEN from the environment; else no token).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
}

/// Where the admin API listens unless told otherwise.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

impl Default for RawConfig {
    /// The defaults: the flags parsed from an empty command line.
    fn default() -> Self {
        let cmd = RawConfig::augment_args(clap::Command::new("switchyard"));
        let matches = cmd
            .try_get_matches_from(["switchyard"])
            .expect("every option has a default");
        RawConfig::from_arg_matches(&matches).expect("defaults parse")
    }
}

/// The command whose arguments are [`RawConfig`]'s flags.
#[derive(Debug, clap::Parser)]
#[command(name = "switchyard")]
struct OptionFlags {
    #[command(flatten)]
    raw: RawConfig,
}

impl RawConfig {
    /// Every option's TOML key and flag (`None` for those that cannot be
    /// one), in declaration order.
    pub fn options() -> Vec<(String, Option<String>)> {
        let cmd = OptionFlags::command();
        let keys = match toml::Table::try_from(RawConfig::default()) {
            Ok(t) => t.keys().cloned().collect::<Vec<_>>(),
            Err(_) => Vec::new(),
        };
        let mut out: Vec<(String, Option<String>)> = cmd
            .get_arguments()
            .filter(|a| a.get_id() != "help")
            .map(|a| {
                let flag = a
                    .get_long()
                    .map(|l| format!("--{l}"))
                    .or_else(|| a.is_last_set().then(|| "-- COMMAND".to_string()));
                (a.get_id().to_string(), flag)
            })
            .collect();
        for k in keys {
            if !out.iter().any(|(id, _)| *id == k) {
                out.push((k, None));
            }
        }
        out
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print: {e}"))
    }

    /// The effective configuration as JSON with what may be secret
    /// replaced: worker environment values and the strategy's
    /// configuration (the admin token is never part of it).
    pub fn to_json_redacted(&self) -> serde_json::Value {
        let mut raw = self.clone();
        for v in raw.worker_env.values_mut() {
            *v = "<redacted>".into();
        }
        if !raw.strategy_config.is_empty() {
            raw.strategy_config = "<redacted>".into();
        }
        if !raw.shadow_strategy_config.is_empty() {
            raw.shadow_strategy_config = "<redacted>".into();
        }
        serde_json::to_value(&raw).unwrap_or(serde_json::Value::Null)
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Threads serving connections.
    pub threads: usize,
    /// Concurrent client connections.
    pub max_connections: usize,
    /// True if `max_connections` was set (not derived), so a shortfall of
    /// open files is worth a warning.
    pub max_connections_set: bool,
    /// Open connections' time to finish on shutdown.
    pub graceful_timeout: Duration,
    /// Worker addresses, one per worker.
    pub worker_addrs: Vec<SocketAddr>,
    /// Each worker's other address, where its replacement starts during a
    /// rolling reload (`base_worker_port + workers + i`); empty when those
    /// ports would run past 65535.
    pub worker_reload_addrs: Vec<SocketAddr>,
    /// How workers run.
    pub workers: WorkerOptions,
    /// Worker telemetry interval.
    pub heartbeat_interval: Duration,
    /// Static backends.
    pub backends: Vec<BackendSpec>,
    /// The watched backends file.
    pub backends_file: Option<PathBuf>,
    /// The strategy to load.
    pub strategy: StrategySpec,
    /// Limits every decision runs under.
    pub engine: StrategyOptions,
    /// Head limits.
    pub sniff: sniff::Limits,
    /// Proxy settings.
    pub proxy: ProxyOptions,
    /// Health checks and ejection.
    pub health: HealthOptions,
    /// HTTP mode.
    pub http: HttpOptions,
    /// Certificate and key files, in pairs.
    pub tls: Vec<(PathBuf, PathBuf)>,
    /// Where HTTP/3 listens, if it does.
    pub h3: Option<SocketAddr>,
    /// The admin API.
    pub admin: crate::admin::AdminOptions,
    /// Where the access log goes, if anywhere.
    pub access_log: Option<crate::access::Target>,
    /// The shadow strategy and its fuel budget (0: the real one's).
    pub shadow: Option<(StrategySpec, u64)>,
    /// What it was made from, to print.
    raw: RawConfig,
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{host}` has no address"))
}

impl RawConfig {
    /// Validates and resolves.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        self.validate_with(false, None)
    }

    /// Validates; `other_backends` says backends come from elsewhere (the
    /// builder's in-process workers), `command` overrides what workers run.
    pub(crate) fn validate_with(
        &self,
        other_backends: bool,
        command: Option<WorkerCommand>,
    ) -> Result<Config, ConfigError> {
        self.check_limits()?;
        let listen = resolve(&self.host, self.port).map_err(|e| invalid("host", e))?;
        let (worker_addrs, workers) = self.workers(command)?;
        let backends = self
            .backends
            .iter()
            .map(|b| b.parse::<BackendSpec>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("backends", e.to_string()))?;
        spec::check_unique(&backends).map_err(|e| invalid("backends", e.to_string()))?;
        if worker_addrs.is_empty()
            && backends.is_empty()
            && self.backends_file.is_none()
            && !other_backends
        {
            return Err(invalid(
                "workers",
                "0 workers and no `backends`: there would be nothing to route to",
            ));
        }
        let threads = match self.threads {
            0 => crate::sys::cores(),
            n => n as usize,
        };
        let (max_connections, max_connections_set) = match self.max_connections {
            Count::Fixed(n) => (n as usize, true),
            Count::Auto => {
                let limit = crate::sys::nofile_limit();
                (crate::sys::connections_for(limit), false)
            }
        };
        let n = worker_addrs.len() as u32;
        let worker_reload_addrs = if self.base_worker_port as u32 + 2 * n <= 65536 {
            (0..n)
                .map(|i| resolve(&self.worker_host, self.base_worker_port + (n + i) as u16))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid("worker_host", e))?
        } else {
            Vec::new()
        };
        Ok(Config {
            worker_reload_addrs,
            listen,
            threads,
            max_connections,
            max_connections_set,
            graceful_timeout: ms(self.graceful_timeout_ms),
            worker_addrs,
            workers,
            heartbeat_interval: ms(self.heartbeat_interval_ms),
            backends,
            backends_file: self.backends_file.clone(),
            strategy: self.strategy_spec()?,
            engine: StrategyOptions {
                fuel: self.fuel,
                max_memory: self.strategy_memory_mib << 20,
                fallback: self.fallback,
                ..StrategyOptions::default()
            },
            sniff: sniff::Limits {
                head_timeout: ms(self.head_timeout_ms),
                max_head_bytes: self.max_head_bytes,
                server_first_after: (self.server_first_after_ms > 0)
                    .then(|| ms(self.server_first_after_ms)),
                opaque: self.opaque,
            },
            proxy: ProxyOptions {
                connect_timeout: ms(self.connect_timeout_ms),
                retries: self.retries,
                proxy_protocol: self.proxy_protocol,
                forward: self.forward,
                idle_timeout: (self.idle_timeout_ms > 0).then(|| ms(self.idle_timeout_ms)),
                replay_limit: self.replay_limit_bytes,
                eject_after_failures: self.eject_after_failures,
                response_timeout: ms(self.upstream_header_timeout_ms),
            },
            health: HealthOptions {
                check: self.health_check.clone(),
                interval: ms(self.health_interval_ms),
                stale_after: ms(self.heartbeat_stale_after_ms),
                eject_after_failures: self.eject_after_failures,
            },
            http: HttpOptions {
                mode: self.mode,
                upstream_header_timeout: ms(self.upstream_header_timeout_ms),
                upstream_body_timeout: (self.upstream_body_timeout_ms > 0)
                    .then(|| ms(self.upstream_body_timeout_ms)),
                keepalive_timeout: ms(self.keepalive_timeout_ms),
                backend_protocol: self.backend_protocol,
                head_timeout: ms(self.head_timeout_ms),
                max_head_bytes: self.max_head_bytes,
                trust_forwarded: self.trust_forwarded,
                request_id: self.request_id,
                pool_max_idle: self.pool_max_idle,
                pool_idle_timeout: ms(self.pool_idle_timeout_ms),
            },
            tls: self
                .tls_cert
                .iter()
                .cloned()
                .zip(self.tls_key.iter().cloned())
                .collect(),
            h3: self.h3.then(|| {
                SocketAddr::new(
                    listen.ip(),
                    if self.h3_port == 0 {
                        listen.port()
                    } else {
                        self.h3_port
                    },
                )
            }),
            admin: self.admin_options()?,
            access_log: match self.access_log.as_str() {
                "off" | "" => None,
                "-" => Some(crate::access::Target::Stdout),
                path => Some(crate::access::Target::File(path.into())),
            },
            shadow: self.shadow_spec()?,
            raw: self.clone(),
        })
    }

    /// The admin API's address and token. A token is required for any
    /// address a remote host could reach.
    fn admin_options(&self) -> Result<crate::admin::AdminOptions, ConfigError> {
        if self.admin == "off" {
            return Ok(crate::admin::AdminOptions::default());
        }
        let addr = self
            .admin
            .to_socket_addrs()
            .map_err(|e| {
                invalid(
                    "admin",
                    format!("`{}`: {e} (HOST:PORT or `off`)", self.admin),
                )
            })?
            .next()
            .ok_or_else(|| invalid("admin", format!("`{}` has no address", self.admin)))?;
        let token = crate::admin::read_token(self.admin_token_file.as_ref())
            .map_err(|e| invalid("admin_token_file", e))?;
        if !addr.ip().is_loopback() && token.is_none() {
            return Err(invalid(
                "admin",
                format!(
                    "{addr} is reachable from other hosts: the admin API changes routing, so give it a token (admin_token_file or SWITCHYARD_ADMIN_TOKEN), or keep it on 127.0.0.1"
                ),
            ));
        }
        let (token, token_source) = match token {
            Some((t, source)) => (Some(t), Some(source)),
            None => (None, None),
        };
        Ok(crate::admin::AdminOptions {
            listen: Some(addr),
            default_address: self.admin == DEFAULT_ADMIN,
            token,
            token_source,
        })
    }

    /// Numbers that must be above 0 or within a range.
    fn check_limits(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("head_timeout_ms", self.head_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("keepalive_timeout_ms", self.keepalive_timeout_ms),
            (
                "upstream_header_timeout_ms",
                self.upstream_header_timeout_ms,
            ),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("health_interval_ms", self.health_interval_ms),
            ("fuel", self.fuel),
            ("eject_after_failures", self.eject_after_failures as u64),
            ("strategy_memory_mib", self.strategy_memory_mib as u64),
            (
                "max_connections",
                match self.max_connections {
                    Count::Fixed(n) => n as u64,
                    Count::Auto => 1,
                },
            ),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be above 0"));
            }
        }
        if !(64..=1 << 20).contains(&self.max_head_bytes) {
            return Err(invalid("max_head_bytes", "must be between 64 and 1048576"));
        }
        if self.tls_cert.len() != self.tls_key.len() {
            return Err(invalid(
                "tls_cert",
                "--tls-cert and --tls-key must come in pairs",
            ));
        }
        if self.threads > 1024 {
            return Err(invalid("threads", "at most 1024"));
        }
        Ok(())
    }

    /// Each worker's address, and how workers run (`command` overrides the
    /// configured one).
    fn workers(
        &self,
        command: Option<WorkerCommand>,
    ) -> Result<(Vec<SocketAddr>, WorkerOptions), ConfigError> {
        let n = match self.workers {
            Count::Fixed(n) => n,
            Count::Auto => crate::sys::cores() as u32,
        };
        if n > 1024 {
            return Err(invalid("workers", "at most 1024"));
        }
        if n > 0 && self.base_worker_port as u32 + n > 65536 {
            return Err(invalid(
                "base_worker_port",
                "workers would run past port 65535",
            ));
        }
        let addrs = (0..n)
            .map(|i| resolve(&self.worker_host, self.base_worker_port + i as u16))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("worker_host", e))?;
        let command = match command {
            Some(c) => c,
            None if self.worker_command.is_empty() => WorkerCommand::Demo,
            None if self.worker_command[0].is_empty() => {
                return Err(invalid("worker_command", "the program name is empty"));
            }
            None => WorkerCommand::Program(self.worker_command.clone()),
        };
        let opts = WorkerOptions {
            command,
            host: self.worker_host.clone(),
            env: self.worker_env.clone(),
            respawn: self.respawn,
            ready_timeout: ms(self.ready_timeout_ms),
            stop_timeout: ms(self.worker_stop_timeout_ms),
            drain_timeout: ms(self.graceful_timeout_ms),
        };
        Ok((addrs, opts))
    }

    /// The strategy and its configuration bytes (`@FILE` is read).
    fn strategy_spec(&self) -> Result<StrategySpec, ConfigError> {
        let source: StrategySource = self.strategy.parse().map_err(|e| invalid("strategy", e))?;
        let config = match self.strategy_config.strip_prefix('@') {
            Some(path) => std::fs::read(path)
                .map_err(|e| invalid("strategy_config", format!("{path}: {e}")))?,
            None => self.strategy_config.clone().into_bytes(),
        };
        Ok(StrategySpec { source, config })
    }

    fn shadow_spec(&self) -> Result<Option<(StrategySpec, u64)>, ConfigError> {
        if self.shadow_strategy.is_empty() {
            return Ok(None);
        }
        let source: StrategySource = self
            .shadow_strategy
            .parse()
            .map_err(|e| invalid("shadow_strategy", e))?;
        let config = match self.shadow_strategy_config.strip_prefix('@') {
            Some(path) => std::fs::read(path)
                .map_err(|e| invalid("shadow_strategy_config", format!("{path}: {e}")))?,
            None => self.shadow_strategy_config.clone().into_bytes(),
        };
        Ok(Some((StrategySpec { source, config }, self.shadow_fuel)))
    }
}

impl Config {
    /// The options it was made from (for `config check` and status pages).
    pub fn raw(&self) -> &RawConfig {
        &self.raw
    }

    /// Number of supervised workers.
    pub fn worker_count(&self) -> usize {
        self.worker_addrs.len()
    }
}

#[cfg(test)]
mod tests;
