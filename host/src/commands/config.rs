//! `switchyard config check`.

use std::process::ExitCode;

use switchyard::config::Layered;

/// Validates `file` with HOST/PORT from the environment and prints the
/// effective configuration, or the error with where the bad value was set.
pub fn check(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let env = |v: &str| std::env::var(v).ok();
    let checked = Layered::load(Some(file), &env, None)
        .and_then(|l| {
            let cfg = l.validate()?;
            Ok((l, cfg))
        })
        .map_err(anyhow::Error::from)
        .and_then(|(l, cfg)| {
            // What the file names must load too, as `serve` loads it.
            switchyard::balancer::check_files(&cfg)?;
            Ok((l, cfg))
        });
    match checked {
        Ok((layered, cfg)) => {
            println!(
                "# {}: valid ({} workers, listening on {})",
                file.display(),
                cfg.worker_count(),
                cfg.listen
            );
            print!("{}", layered.raw.to_toml());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("invalid: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
