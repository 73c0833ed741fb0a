//! Command-line flags (clap derive). Each subcommand's logic lives in
//! `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A load balancer whose every routing decision is a hot-swappable
/// WebAssembly module.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the balancer: workers (the built-in demo worker unless a command
    /// follows `--`), health checks, and the listener.
    Serve(Box<ServeArgs>),
    /// Inspect and check strategies.
    #[command(subcommand)]
    Strategy(StrategyCommand),
    /// Check configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run the built-in demo worker (what `serve` starts by default); reads
    /// HOST, PORT and SWITCHYARD_WORKER_INDEX.
    DemoWorker,
}

/// `switchyard config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file and print the effective configuration (with
    /// HOST/PORT from the environment applied); exits non-zero naming the
    /// key on error.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

/// `switchyard serve`: every flag overrides the same key of `--config`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (flags override it; HOST/PORT env override it too).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Listen address.
    #[arg(long)]
    pub host: Option<String>,
    /// Listen port.
    #[arg(long, short)]
    pub port: Option<u16>,
    /// Workers: `auto` (one per core) or a number; 0 for static backends only.
    #[arg(long, short)]
    pub workers: Option<switchyard::config::Workers>,
    /// Address workers listen on.
    #[arg(long)]
    pub worker_host: Option<String>,
    /// Port of worker 0 (worker i gets base + i).
    #[arg(long)]
    pub base_worker_port: Option<u16>,
    /// A static backend `HOST:PORT` (repeatable).
    #[arg(long = "backend")]
    pub backends: Vec<String>,
    /// A file of static backends (`HOST:PORT [WEIGHT]` per line), watched.
    #[arg(long)]
    pub backends_file: Option<PathBuf>,
    /// `builtin:NAME` or a `.wasm`/`.wat` file (watched and hot-swapped).
    #[arg(long, short)]
    pub strategy: Option<String>,
    /// Configuration passed to the strategy's `switchyard_init`.
    #[arg(long)]
    pub strategy_config: Option<String>,
    /// Fuel per decision.
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Native decision when the strategy cannot decide:
    /// least-connections, random or round-robin.
    #[arg(long)]
    pub fallback: Option<switchyard::strategy::FallbackPolicy>,
    /// Wait this long for first bytes before treating a connection as opaque, ms.
    #[arg(long)]
    pub inspection_timeout_ms: Option<u64>,
    /// A client must send its complete head within this, ms (else 408).
    #[arg(long)]
    pub head_timeout_ms: Option<u64>,
    /// Largest request head in bytes (else 431).
    #[arg(long)]
    pub max_head_bytes: Option<usize>,
    /// Connections that are neither HTTP nor TLS: route or reject.
    #[arg(long)]
    pub opaque: Option<switchyard::config::OpaquePolicy>,
    /// Backend connect timeout, ms.
    #[arg(long)]
    pub connect_timeout_ms: Option<u64>,
    /// Other backends to try after a connect failure.
    #[arg(long)]
    pub retries: Option<u32>,
    /// Active health check: tcp, none or http:/path.
    #[arg(long)]
    pub health_check: Option<String>,
    /// Open connections may take this long to finish at shutdown, ms.
    #[arg(long)]
    pub graceful_timeout_ms: Option<u64>,
    /// Close a routed connection idle (no byte either way) this long, ms; 0 = never.
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
    /// Do not restart workers that exit.
    #[arg(long)]
    pub no_respawn: bool,
    /// Send a PROXY protocol v2 header to backends.
    #[arg(long)]
    pub proxy_protocol: bool,
    /// How bytes are forwarded once routed: auto, copy or splice.
    #[arg(long)]
    pub forward: Option<switchyard::config::Forward>,
    /// Most concurrent client connections.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Threads serving connections, each a single-threaded runtime with its
    /// own SO_REUSEPORT listener (0 = one per core).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Log filter (`info`, `debug`, `switchyard=debug`, ...); RUST_LOG also works.
    #[arg(long)]
    pub log: Option<String>,
    /// Worker command: everything after `--` (each worker gets PORT, HOST and
    /// SWITCHYARD_WORKER_INDEX).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `switchyard strategy ...`
#[derive(Debug, Subcommand)]
pub enum StrategyCommand {
    /// List the built-in strategies.
    List,
    /// Load, validate and dry-run a strategy, as the balancer would before
    /// serving it; exits non-zero naming the reason if it would be rejected.
    Check(CheckArgs),
}

/// Limits a strategy runs under.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Fuel per decision (a runaway strategy is cut off after this much).
    #[arg(long, default_value_t = switchyard::strategy::DEFAULT_FUEL)]
    pub fuel: u64,
    /// Cap on a strategy's linear memory, MiB.
    #[arg(long, default_value_t = 16)]
    pub max_memory_mib: usize,
}

/// `switchyard strategy check`
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// `FILE.wasm`, `FILE.wat` or `builtin:NAME`.
    pub strategy: String,
    /// Configuration for `switchyard_init`: literal text, or `@FILE` to read a
    /// file.
    #[arg(long)]
    pub config: Option<String>,
    /// Engine limits.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Reads `--config`: `@path` means a file, anything else is literal.
pub fn config_bytes(config: &Option<String>) -> std::io::Result<Vec<u8>> {
    match config.as_deref() {
        None => Ok(Vec::new()),
        Some(s) => match s.strip_prefix('@') {
            Some(path) => std::fs::read(PathBuf::from(path)),
            None => Ok(s.as_bytes().to_vec()),
        },
    }
}
