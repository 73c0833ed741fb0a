//! The `switchyard` binary: a thin client of the library. `main` only maps the
//! outcome of [`commands::run`] to an exit code.

mod commands;
mod flags;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = <flags::Cli as clap::Parser>::parse();
    match commands::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("switchyard: {err:#}");
            ExitCode::from(2)
        }
    }
}
