//! One file per subcommand, each calling the library.

mod bench;
mod config;
mod serve;
mod strategy;

use std::process::ExitCode;

use clap::ArgMatches;

use crate::flags::{Cli, Command, ConfigCommand};

/// Runs the parsed command line.
pub fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    let sub = |name: &str| matches.subcommand_matches(name);
    match cli.command {
        Command::Serve(args) => serve::serve(*args, sub("serve").unwrap_or(matches)),
        Command::Strategy(cmd) => strategy::run(cmd),
        Command::Config(ConfigCommand::Check { file }) => config::check(&file),
        Command::DemoWorker => serve::demo_worker(),
    }
}

/// True if `id` was given on the command line (not defaulted).
pub fn given(matches: &ArgMatches, id: &str) -> bool {
    // `value_source` insists on known ids; the options include some that are
    // not flags (`worker_env`).
    matches.ids().any(|i| i.as_str() == id)
        && matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
}
