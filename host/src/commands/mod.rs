//! One file per subcommand, each calling the library.

mod serve;
mod strategy;

use std::process::ExitCode;

use crate::flags::{Cli, Command, ConfigCommand};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::serve(*args),
        Command::Strategy(cmd) => strategy::run(cmd),
        Command::Config(ConfigCommand::Check { file }) => serve::config_check(&file),
        Command::DemoWorker => serve::demo_worker(),
    }
}
