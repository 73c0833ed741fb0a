//! `switchyard serve` and `switchyard config check`.

use std::process::ExitCode;

use anyhow::Context;
use switchyard::config::{ConfigError, FileOrigin};
use switchyard::{Balancer, BuildError, RawConfig};

use crate::flags::ServeArgs;

/// Defaults < config file < HOST/PORT environment < flags; with where the
/// file wrote each key.
pub fn effective_config(args: &ServeArgs) -> anyhow::Result<(RawConfig, Option<FileOrigin>)> {
    let (mut raw, origin) = match &args.config {
        Some(path) => {
            let (raw, origin) = RawConfig::load(path)?;
            (raw, Some(origin))
        }
        None => (RawConfig::default(), None),
    };
    raw.apply_env()?;
    macro_rules! set {
        ($($field:ident),*) => {$(
            if let Some(v) = args.$field.clone() {
                raw.$field = v;
            }
        )*};
    }
    set!(
        host,
        port,
        workers,
        worker_host,
        base_worker_port,
        strategy,
        strategy_config,
        fuel,
        fallback,
        inspection_timeout_ms,
        head_timeout_ms,
        max_head_bytes,
        opaque,
        connect_timeout_ms,
        retries,
        health_check,
        graceful_timeout_ms,
        idle_timeout_ms,
        max_connections,
        forward,
        threads
    );
    if args.backends_file.is_some() {
        raw.backends_file = args.backends_file.clone();
    }
    if !args.backends.is_empty() {
        raw.backends = args.backends.clone();
        // Static backends on the command line and no explicit worker count
        // mean "balance these", not "these plus a demo worker per core".
        if args.workers.is_none() && args.config.is_none() && args.command.is_empty() {
            raw.workers = switchyard::config::Workers::Count(0);
        }
    }
    if args.no_respawn {
        raw.respawn = false;
    }
    if args.proxy_protocol {
        raw.proxy_protocol = true;
    }
    if !args.command.is_empty() {
        raw.worker_command = args.command.clone();
    }
    Ok((raw, origin))
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let filter = args
        .log
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let (raw, origin) = effective_config(&args)?;
    raise_fd_limit(raw.max_connections);
    // Supervision, health checks and the first listener run here; the
    // balancer starts one more single-threaded runtime per extra `threads`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let balancer = match Balancer::builder().config(raw.clone()).build() {
            Ok(b) => b,
            Err(BuildError::Config(e)) => match &origin {
                Some(o) => return Err(o.locate(&raw, e).into()),
                None => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        };
        tokio::spawn(switchyard::shutdown::on_signals(balancer.shutdown_handle()));
        balancer.run().await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Raises the open-file soft limit to the hard one (as nginx and HAProxy
/// do): a routed connection holds two descriptors, and the soft default of
/// many systems (1024) would quietly cap the balancer near 500 connections,
/// with accept failing (and backing off) past that.
fn raise_fd_limit(max_connections: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        // Capped: some programs (workers included, which inherit it) walk
        // every possible descriptor.
        let want = lim.rlim_max.min(1 << 20);
        if lim.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                tracing::debug!(from = lim.rlim_cur, to = want, "raised the open-file limit");
                lim = raised;
            }
        }
    }
    let need = 2 * max_connections as u64 + 64;
    if lim.rlim_cur < need {
        tracing::warn!(
            limit = lim.rlim_cur,
            need,
            "the open-file limit is below what max_connections needs; raise the hard limit (ulimit -Hn) or lower max_connections"
        );
    }
}

pub fn config_check(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let (mut raw, origin) = match RawConfig::load(file) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("invalid: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Err(e) = raw.apply_env() {
        eprintln!("invalid: {e}");
        return Ok(ExitCode::FAILURE);
    }
    match raw.clone().validate() {
        Ok(cfg) => {
            println!(
                "# {}: valid ({} workers, listening on {})",
                file.display(),
                cfg.workers,
                cfg.listen
            );
            print!("{}", raw.to_toml());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            match origin.locate(&raw, e) {
                e @ ConfigError::At { .. } => eprintln!("invalid: {e}"),
                e => eprintln!("invalid: {}: {e}", file.display()),
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

pub fn demo_worker() -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(switchyard::demo::main_from_env())?;
    Ok(ExitCode::SUCCESS)
}
