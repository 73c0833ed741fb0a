//! Command-line flags (clap derive). `serve`'s option flags are
//! `switchyard::RawConfig` itself: each option is declared once, in the
//! library, and its flag, TOML key, default and help come from that one
//! declaration. Each subcommand's logic lives in `commands/`.

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
    /// Talk to a running balancer's admin API: status, swap the strategy,
    /// drain and undrain backends.
    Ctl(CtlArgs),
    /// Run the built-in demo worker (what `serve` starts by default); reads
    /// HOST, PORT and SWITCHYARD_WORKER_INDEX.
    DemoWorker,
}

/// `switchyard ctl ...`
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The admin API's address.
    #[arg(long, global = true, default_value = "127.0.0.1:9901")]
    pub admin: String,
    /// A file whose first line is the admin token (else
    /// SWITCHYARD_ADMIN_TOKEN, if set).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// `switchyard ctl` commands.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Workers, backends, the strategy and its fallbacks.
    Status,
    /// Restart the workers one at a time with no request lost: each
    /// replacement starts on the worker's other port, takes new work once
    /// it accepts connections, and the old one drains, then stops.
    Reload,
    /// Change the strategy.
    #[command(subcommand)]
    Strategy(StrategySetCommand),
    /// Set or remove the shadow strategy: run on every decision's inputs,
    /// never routing, its agreement counted (`ctl status` shows it).
    #[command(subcommand)]
    Shadow(ShadowCommand),
    /// Stop sending new work to a backend (by id, name or address; a
    /// worker is `worker N` or its index as id); open connections finish.
    Drain {
        /// Backend id, name or address.
        id: String,
    },
    /// Send a drained backend new work again.
    Undrain {
        /// Backend id, name or address.
        id: String,
    },
}

/// `switchyard ctl shadow ...`
#[derive(Debug, Subcommand)]
pub enum ShadowCommand {
    /// Upload a module or name a built-in as the shadow.
    Set {
        /// The module file, or `builtin:NAME`.
        module: String,
        /// Its configuration (for `switchyard_init`).
        #[arg(long)]
        config: Option<String>,
        /// Its own fuel budget per decision (default: the real one's).
        #[arg(long)]
        fuel: Option<u64>,
    },
    /// Remove the shadow.
    Off,
}

/// `switchyard ctl strategy ...`
#[derive(Debug, Subcommand)]
pub enum StrategySetCommand {
    /// Upload a module (`.wasm`, `.wat`, `.cwasm`) or name a built-in
    /// (`builtin:NAME`); it is validated, then swapped in. A rejected one
    /// leaves the running one serving and prints the reason.
    Set {
        /// The module file, or `builtin:NAME`.
        module: String,
        /// Its configuration (for `switchyard_init`).
        #[arg(long)]
        config: Option<String>,
    },
}

/// `switchyard config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file and print the effective configuration (with
    /// HOST/PORT from the environment applied); exits non-zero naming the
    /// key, and the line, on error.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

/// `switchyard serve`: every option flag overrides the same key of
/// `--config`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (HOST/PORT from the environment override it,
    /// and flags override both).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Log filter (`info`, `debug`, `switchyard=debug`, ...); RUST_LOG also works.
    #[arg(long)]
    pub log: Option<String>,
    /// `text` (for people) or `json` (one object per line, for log
    /// pipelines).
    #[arg(long, value_enum, default_value_t = switchyard::telemetry::LogFormat::Text)]
    pub log_format: switchyard::telemetry::LogFormat,
    /// Take over from the switchyard running on the same port: its
    /// listening sockets are handed over, this one starts its workers and
    /// serves, and the old one drains and exits. (SIGUSR2 to a running
    /// switchyard starts one like this from its binary's path.)
    #[arg(long)]
    pub upgrade: bool,
    /// The options.
    #[command(flatten)]
    pub options: switchyard::RawConfig,
}

/// `switchyard strategy ...`
#[derive(Debug, Subcommand)]
pub enum StrategyCommand {
    /// List the built-in strategies.
    List,
    /// Load, validate and dry-run a strategy, as the balancer would before
    /// serving it; exits non-zero naming the reason if it would be rejected.
    Check(CheckArgs),
    /// Measure a strategy's cost per decision beside two reference rows
    /// from the same run: the floor (an empty module's call with the same
    /// budget, plus a copy of the same input bytes) and, for built-ins, the
    /// same strategy run natively.
    Bench(BenchArgs),
    /// Run a strategy on the cases of a TOML file and compare its own
    /// answers with the expected ones; the exit code counts the failures
    /// (120: the cases could not run).
    Test(TestArgs),
    /// Precompile a strategy for this switchyard (same version, same
    /// engine settings) into a `.cwasm` that `serve` and `check` load
    /// without compiling. The module is validated first, as by `check`.
    Compile(CompileArgs),
    /// Create a strategy project: source, SDK, build script and a cases
    /// file. It builds, passes `check` and passes its cases as it is.
    New(NewArgs),
}

/// `switchyard strategy new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// Directory to create; its last part names the strategy.
    pub name: PathBuf,
    /// The language.
    #[arg(long, value_enum)]
    pub lang: Lang,
}

/// Languages `strategy new` has a template for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the switchyard-guest SDK.
    Rust,
    /// C with no libc (clang and wasm-ld).
    C,
    /// Zig, wasm32-freestanding.
    Zig,
    /// AssemblyScript (npm's assemblyscript).
    Assemblyscript,
    /// Go, wasip1 reactor (Go 1.24 or later).
    Go,
    /// Hand-written WebAssembly text.
    Wat,
}

impl Lang {
    /// The language's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::C => "C",
            Lang::Zig => "Zig",
            Lang::Assemblyscript => "AssemblyScript",
            Lang::Go => "Go",
            Lang::Wat => "WAT",
        }
    }
}

/// `switchyard strategy test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The strategy and its options, as for `check`.
    #[command(flatten)]
    pub check: CheckArgs,
    /// The cases (docs/strategies.md describes the format).
    #[arg(long, value_name = "CASES.toml")]
    pub cases: PathBuf,
}

/// `switchyard strategy compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The strategy and its options, as for `check`.
    #[command(flatten)]
    pub check: CheckArgs,
    /// Where to write the artifact; default: the input with `.cwasm`.
    #[arg(long, short, value_name = "FILE.cwasm")]
    pub output: Option<PathBuf>,
}

/// `switchyard strategy bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The strategy and its options, as for `check`.
    #[command(flatten)]
    pub check: CheckArgs,
    /// Candidate counts to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "4,16,64,256")]
    pub candidates: Vec<usize>,
    /// A request head (HTTP/1, as sent on the wire) to decide on; default:
    /// a 307-byte browser GET with a dozen headers.
    #[arg(long, value_name = "FILE.http")]
    pub request: Option<PathBuf>,
    /// Threads deciding at once on the same strategy.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// `switchyard strategy check`: the strategy options of `serve`, under the
/// same names, taken from `--config` when given.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// `FILE.wasm`, `FILE.wat`, `FILE.cwasm` or `builtin:NAME`.
    pub strategy: String,
    /// TOML configuration file to take the strategy options from.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Configuration for the strategy's `switchyard_init`: text, or `@FILE`.
    #[arg(long)]
    pub strategy_config: Option<String>,
    /// Fuel per decision.
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Cap on the strategy's linear memory, MiB.
    #[arg(long, alias = "max-memory-mib")]
    pub strategy_memory_mib: Option<usize>,
}
