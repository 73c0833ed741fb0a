//! The `switchyard` binary: a thin client of the library. `main` only maps the
//! outcome of [`commands::run`] to an exit code.

mod commands;
mod flags;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

// See the workspace Cargo.toml: measured in `benches/e2e.sh`, HTTP mode.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // The matches are kept: `serve` asks them which flags were given, so that
    // only those override the config file.
    let matches = flags::Cli::command().get_matches();
    let cli = flags::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match commands::run(cli, &matches) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("switchyard: {err:#}");
            ExitCode::from(2)
        }
    }
}
