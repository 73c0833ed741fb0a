//! `switchyard strategy list | check | bench | test | compile | new`.

use std::process::ExitCode;

use anyhow::Context;
use switchyard::RawConfig;
use switchyard::config::{Flags, Layered};
use switchyard::strategy::{StrategyEngine, StrategySource};

use crate::flags::{CheckArgs, CompileArgs, StrategyCommand};

pub fn run(cmd: StrategyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StrategyCommand::List => {
            for (name, about) in switchyard_strategies::BUILTINS {
                println!("builtin:{name:<22} {about}");
            }
            Ok(ExitCode::SUCCESS)
        }
        StrategyCommand::Check(args) => check(args),
        StrategyCommand::Bench(args) => super::bench::run(args),
        StrategyCommand::Test(args) => super::cases::run(args),
        StrategyCommand::Compile(args) => compile(args),
        StrategyCommand::New(args) => super::new::run(args),
    }
}

fn compile(args: CompileArgs) -> anyhow::Result<ExitCode> {
    let cfg = strategy_config(&args.check)?;
    let engine = StrategyEngine::new(cfg.engine.clone()).context("starting the strategy engine")?;
    let output = match (&args.output, &cfg.strategy.source) {
        (Some(o), _) => o.clone(),
        (None, StrategySource::File(p)) => p.with_extension("cwasm"),
        (None, _) => anyhow::bail!("give the output file with -o FILE.cwasm"),
    };
    match engine.precompile(&cfg.strategy) {
        Ok(bytes) => {
            std::fs::write(&output, &bytes)
                .with_context(|| format!("writing {}", output.display()))?;
            println!(
                "wrote {} ({} bytes; loads only in this switchyard version with these engine settings)",
                output.display(),
                bytes.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("rejected: {}: {e}", cfg.strategy.source);
            Ok(ExitCode::FAILURE)
        }
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let cfg = strategy_config(&args)?;
    let engine = StrategyEngine::new(cfg.engine.clone()).context("starting the strategy engine")?;
    let spec = cfg.strategy.clone();
    report(&engine, &spec, cfg.engine.fuel)
}

/// The configuration `serve` would use for the strategy: the file's,
/// overridden by these flags.
pub fn strategy_config(args: &CheckArgs) -> anyhow::Result<switchyard::Config> {
    // The options `serve` would use: the file's, overridden by these flags.
    let mut flags = RawConfig {
        strategy: args.strategy.clone(),
        ..RawConfig::default()
    };
    let mut set = vec!["strategy"];
    if let Some(c) = &args.strategy_config {
        flags.strategy_config = c.clone();
        set.push("strategy_config");
    }
    if let Some(f) = args.fuel {
        flags.fuel = f;
        set.push("fuel");
    }
    if let Some(m) = args.strategy_memory_mib {
        flags.strategy_memory_mib = m;
        set.push("strategy_memory_mib");
    }
    let given = |k: &str| set.contains(&k);
    let flags = Flags {
        values: &flags,
        given: &given,
    };
    let layered = Layered::load(args.config.as_deref(), &|_| None, Some(flags))?;
    Ok(layered.validate()?)
}

fn report(
    engine: &StrategyEngine,
    spec: &switchyard::strategy::StrategySpec,
    fuel: u64,
) -> anyhow::Result<ExitCode> {
    let (r, audit) = match engine.audit(spec) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("rejected: {}: {e}", spec.source);
            return Ok(ExitCode::FAILURE);
        }
    };
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
    println!(
        "  reads: {}{}",
        r.reads_text(),
        if r.interface.declares_reads {
            " (declared, checked)"
        } else {
            " (no switchyard_reads: everything)"
        }
    );
    if let Some(list) = r.header_names.as_deref()
        && r.reads & switchyard_guest::READS_HEADERS != 0
    {
        // The check varies only the headers its requests carry: a listed
        // name outside them (a typo of the one the module reads, say) is
        // one it cannot vouch for.
        let carried = switchyard::strategy::check_header_names();
        let unvaried: Vec<&str> = list
            .split(',')
            .filter(|n| !carried.iter().any(|c| c == n.as_bytes()))
            .collect();
        if !unvaried.is_empty() {
            println!(
                "  note: the load check sends no {} header, so it cannot tell whether the list is right for {}: a `strategy test` case that sends {} can",
                unvaried.join(" or "),
                if unvaried.len() == 1 { "it" } else { "them" },
                if unvaried.len() == 1 { "it" } else { "them" },
            );
        }
    }
    for (n, fuel) in &r.fuel_used {
        println!("  fuel per decision at {n:>3} candidates: {fuel}");
    }
    println!("  fuel budget: {fuel}");
    println!(
        "  audit: {} inputs in two layouts, {} decisions{}; memory {} KiB before, {} KiB after",
        audit.inputs,
        audit.decisions,
        audit
            .fuel
            .map(|(lo, hi)| format!(", fuel {lo} to {hi}"))
            .unwrap_or_default(),
        audit.memory.0 >> 10,
        audit.memory.1 >> 10,
    );
    for w in &audit.warnings {
        println!("  warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}
