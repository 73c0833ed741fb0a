//! One file per subcommand, each calling the library.

mod strategy;

use std::process::ExitCode;

use crate::flags::{Cli, Command};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Strategy(cmd) => strategy::run(cmd),
    }
}
