//! Hot swap from a file: watch a strategy file and swap in each new version
//! that validates. A version that does not is logged with its reason and the
//! running one keeps serving.
//!
//! Both editors' in-place writes and atomic rename-into-place (how most build
//! tools and `cp`-then-`mv` deployments replace files) work: we watch the
//! parent directory, not the file's inode, and react to any event naming the
//! file. Events are debounced (`DEBOUNCE`) so a write in several chunks loads
//! once, after it is complete.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::{LoadError, LoadReport, Strategy, StrategySource, StrategySpec};

/// Quiet time after the last change before the file is loaded.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// Stops the watcher when dropped.
pub struct WatchGuard {
    _watcher: notify::RecommendedWatcher,
    stop: mpsc::Sender<()>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

/// Watches `strategy`'s file (it must be serving a [`StrategySource::File`])
/// and calls `on_reload` with each outcome.
pub fn watch(
    strategy: Arc<Strategy>,
    on_reload: impl Fn(&Path, Result<LoadReport, LoadError>) + Send + 'static,
) -> Result<WatchGuard, String> {
    let spec = strategy.spec();
    let StrategySource::File(path) = &spec.source else {
        return Err("only a strategy loaded from a file can be watched".into());
    };
    let path = std::path::absolute(path).map_err(|e| e.to_string())?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let (tx, rx) = mpsc::channel::<()>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let target = path.clone();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            let ours = ev.paths.iter().any(|p| p == &target);
            let relevant = !matches!(ev.kind, notify::EventKind::Access(_));
            if ours && relevant {
                let _ = tx.send(());
            }
        }
    })
    .map_err(|e| e.to_string())?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| format!("watching {}: {e}", dir.display()))?;
    std::thread::Builder::new()
        .name("switchyard-strategy-watch".into())
        .spawn(move || {
            loop {
                // Wait for a change (or stop), then for quiet.
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(()) => {}
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if stop_rx.try_recv().is_ok() {
                            return;
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                while rx.recv_timeout(DEBOUNCE).is_ok() {}
                if stop_rx.try_recv().is_ok() {
                    return;
                }
                if !path.exists() {
                    // Mid-rename, or deleted: keep serving the loaded module.
                    continue;
                }
                let spec = StrategySpec {
                    source: StrategySource::File(path.clone()),
                    config: strategy.spec().config,
                };
                let result = strategy.replace(&spec);
                if let Err(e) = &result {
                    tracing::error!(file = %path.display(), error = %e, "strategy rejected; the previous one keeps serving");
                }
                on_reload(&path, result);
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(WatchGuard {
        _watcher: watcher,
        stop: stop_tx,
    })
}
