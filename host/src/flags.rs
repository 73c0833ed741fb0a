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
    /// Inspect and check strategies.
    #[command(subcommand)]
    Strategy(StrategyCommand),
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
