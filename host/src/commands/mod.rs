//! One file per subcommand, each calling the library.

mod bench;
mod cases;
mod config;
mod ctl;
mod new;
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
        Command::Strategy(cmd) => {
            default_sigpipe();
            strategy::run(cmd)
        }
        Command::Config(ConfigCommand::Check { file }) => {
            default_sigpipe();
            config::check(&file)
        }
        Command::Ctl(args) => {
            default_sigpipe();
            ctl::run(args)
        }
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

/// Lets a report piped into `head` end quietly, as other command-line tools
/// do, instead of panicking on a closed stdout. Only for commands that write
/// no sockets: `serve` keeps Rust's ignored SIGPIPE, or a client closing
/// early would kill the balancer.
fn default_sigpipe() {
    // SAFETY: called on the main thread before any other thread exists;
    // restoring the default disposition of a signal has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
