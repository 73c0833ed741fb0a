//! `switchyard strategy list | check`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use switchyard::strategy::{
    Strategy, StrategyEngine, StrategyOptions, StrategySource, StrategySpec,
};

use crate::flags::{CheckArgs, EngineArgs, StrategyCommand, config_bytes};

pub fn run(cmd: StrategyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StrategyCommand::List => {
            for (name, about) in switchyard_strategies::BUILTINS {
                println!("builtin:{name:<22} {about}");
            }
            Ok(ExitCode::SUCCESS)
        }
        StrategyCommand::Check(args) => check(args),
    }
}

pub fn engine(args: &EngineArgs) -> anyhow::Result<Arc<StrategyEngine>> {
    let options = StrategyOptions {
        fuel: args.fuel,
        max_memory: args.max_memory_mib << 20,
        ..StrategyOptions::default()
    };
    StrategyEngine::new(options).context("starting the strategy engine")
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let source: StrategySource = args.strategy.parse().map_err(anyhow::Error::msg)?;
    let config = config_bytes(&args.config).context("reading --config")?;
    let engine = engine(&args.engine)?;
    let spec = StrategySpec { source, config };
    match Strategy::load(engine, &spec) {
        Ok(strategy) => {
            let r = strategy.status().report;
            println!("ok: {} (ABI v1)", r.name);
            println!(
                "  load: {} in {} us, validated in {} us",
                r.artifact, r.compile_us, r.validate_us
            );
            println!("  exports: {}", r.interface.exports.join(", "));
            if r.interface.imports.is_empty() {
                println!("  imports: (none)");
            } else {
                println!("  imports: {}", r.interface.imports.join(", "));
            }
            for (n, fuel) in &r.fuel_used {
                println!("  fuel per decision at {n:>3} candidates: {fuel}");
            }
            println!("  fuel budget: {}", args.engine.fuel);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("rejected: {}: {e}", spec.source);
            Ok(ExitCode::FAILURE)
        }
    }
}
