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
    let static_only = given("backends")
        && !given("workers")
        && args.config.is_none()
        && layered.raw.worker_command.is_empty();
    if static_only {
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
    // The path, not /proc/self/exe: after a new binary replaced the file,
    // SIGUSR2 must start the new one.
    let exe = std::env::current_exe().ok();
    let inherited = match args.upgrade {
        true => {
            let path = switchyard::upgrade::socket_path(layered.raw.port);
            Some(
                switchyard::upgrade::take_over(&path)
                    .context("taking over from the running switchyard")?,
            )
        }
        false => None,
    };
    runtime.block_on(async move {
        let mut builder = Balancer::builder().config(layered.raw.clone());
        if let Some(i) = inherited {
            builder = builder.inherit(i);
        }
        let balancer = match builder.build() {
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
        let balancer_shutdown = balancer.shutdown_handle();
        let reloader = balancer.reloader();
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("listening for SIGHUP")?;
        let mut usr2 =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
                .context("listening for SIGUSR2")?;
        let run = balancer.run();
        tokio::pin!(run);
        loop {
            tokio::select! {
                r = &mut run => {
                    r?;
                    return Ok(ExitCode::SUCCESS);
                }
                _ = usr2.recv() => start_upgrade(exe.as_deref(), balancer_shutdown.clone()),
                _ = hangup.recv() => {
                    // The same layers as at start: the file again, then the
                    // environment, then the flags given.
                    let raw = Layered::load(args.config.as_deref(), &env, Some(Flags {
                        values: &args.options,
                        given: &given,
                    }))
                    .map(|mut l| {
                        if static_only {
                            l.raw.workers = Count::Fixed(0);
                        }
                        l.raw
                    });
                    let outcome = match raw {
                        Ok(raw) => reloader.apply(raw).await,
                        Err(e) => Err(e.to_string()),
                    };
                    switchyard::reload::record(&outcome);
                    match outcome {
                        Ok(r) if r.applied.is_empty() && r.need_restart.is_empty() => {
                            tracing::info!("configuration reloaded: nothing changed")
                        }
                        Ok(r) if r.need_restart.is_empty() => tracing::info!(
                            applied = ?r.applied,
                            "configuration reloaded"
                        ),
                        Ok(r) => tracing::warn!(
                            applied = ?r.applied,
                            need_restart = ?r.need_restart,
                            "configuration reloaded, but some changes take effect only after a restart"
                        ),
                        Err(e) => tracing::error!(
                            error = %e,
                            "configuration rejected; the running one stays"
                        ),
                    }
                }
            }
        }
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

/// SIGUSR2: starts the binary at this one's path with the same arguments
/// and `--upgrade`, in a process group of its own (a signal to this one's
/// group must not reach it); it takes the listening sockets over.
fn start_upgrade(exe: Option<&std::path::Path>, shutdown: switchyard::shutdown::ShutdownHandle) {
    use std::os::unix::process::CommandExt;
    let Some(exe) = exe else {
        return tracing::error!(
            "SIGUSR2: the path of this binary is unknown; run `switchyard serve --upgrade` by hand"
        );
    };
    let args: Vec<std::ffi::OsString> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--upgrade")
        .chain([std::ffi::OsString::from("--upgrade")])
        .collect();
    match std::process::Command::new(exe)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .spawn()
    {
        Ok(mut child) => {
            let pid = child.id();
            tracing::info!(
                pid,
                binary = %exe.display(),
                "SIGUSR2: started a new switchyard to take over"
            );
            // Reaped here, and a new process that exits while this one
            // still serves is an upgrade that did not happen: said as an
            // error here, not only in its own stderr (and no zombie stays).
            let spawned = std::thread::Builder::new()
                .name("switchyard-upgrade-wait".into())
                .spawn(move || {
                    let status = child.wait();
                    if shutdown.is_shutting_down() {
                        return;
                    }
                    match status {
                        Ok(status) => tracing::error!(
                            pid,
                            %status,
                            "SIGUSR2: the new switchyard exited without taking over; this one still serves (its reason is on stderr above)"
                        ),
                        Err(e) => tracing::error!(pid, error = %e, "SIGUSR2: waiting for the new switchyard"),
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "SIGUSR2: cannot watch the new switchyard");
            }
        }
        Err(e) => {
            tracing::error!(binary = %exe.display(), error = %e, "SIGUSR2: cannot start a new switchyard")
        }
    }
}
