//! `switchyard serve` and `switchyard demo-worker`.

use std::process::ExitCode;

use anyhow::Context;
use clap::ArgMatches;
use switchyard::config::{Count, Flags, Layered};
use switchyard::{Balancer, BuildError, sys};

use crate::flags::ServeArgs;

pub fn serve(args: ServeArgs, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    let filter = args
        .log
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    switchyard::telemetry::init_logging(&filter, args.log_format);
    let given = |id: &str| super::given(matches, id);
    let env = |v: &str| std::env::var(v).ok();
    let flags = Flags {
        values: &args.options,
        given: &given,
    };
    let mut layered = Layered::load(args.config.as_deref(), &env, Some(flags))?;
    // Static backends on the command line and no explicit worker count mean
    // "balance these", not "these plus a demo worker per core".
    if given("backends")
        && !given("workers")
        && args.config.is_none()
        && layered.raw.worker_command.is_empty()
    {
        layered.raw.workers = Count::Fixed(0);
    }
    // Before the config is resolved: `max_connections = "auto"` follows it.
    let limit = sys::raise_nofile_limit();
    // Supervision, health checks and the first listener run here; the
    // balancer starts one more single-threaded runtime per extra thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let balancer = match Balancer::builder().config(layered.raw.clone()).build() {
            Ok(b) => b,
            Err(BuildError::Config(e)) => return Err(layered.locate(e).into()),
            Err(e) => return Err(e.into()),
        };
        let cfg = balancer.config();
        if cfg.max_connections_set && sys::fds_for(cfg.max_connections) > limit {
            tracing::warn!(
                limit,
                need = sys::fds_for(cfg.max_connections),
                "the open-file limit is below what max_connections needs; raise the hard limit (ulimit -Hn) or lower max_connections"
            );
        }
        tokio::spawn(switchyard::shutdown::on_signals(balancer.shutdown_handle()));
        balancer.run().await?;
        Ok(ExitCode::SUCCESS)
    })
}

pub fn demo_worker() -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(switchyard::demo::main_from_env())?;
    Ok(ExitCode::SUCCESS)
}
