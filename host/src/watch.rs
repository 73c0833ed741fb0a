//! Debounced watching of one file, shared by the strategy hot swap and the
//! backends file.
//!
//! Both editors' in-place writes and atomic rename-into-place (how build tools
//! and `cp`-then-`mv` deployments replace files) work: we watch the parent
//! directory, not the file's inode, and react to any event naming the file.
//! Events are debounced ([`DEBOUNCE`]) so a write in several chunks is handled
//! once, after it is complete.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

/// Quiet time after the last change before the callback runs.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// Why a file cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The path cannot be made absolute.
    #[error("watching {path}: {error}", path = .0.display(), error = .1)]
    Path(PathBuf, std::io::Error),
    /// The watcher could not start or watch the directory.
    #[error("watching {path}: {error}", path = .0.display(), error = .1)]
    Notify(PathBuf, notify::Error),
    /// Its thread could not start.
    #[error("watching {path}: {error}", path = .0.display(), error = .1)]
    Thread(PathBuf, std::io::Error),
}

/// Stops the watcher when dropped.
pub struct WatchGuard {
    /// `None` for a guard that watches nothing.
    _watcher: Option<notify::RecommendedWatcher>,
    stop: Option<mpsc::Sender<()>>,
}

impl WatchGuard {
    /// A guard with nothing to stop.
    pub fn none() -> WatchGuard {
        WatchGuard {
            _watcher: None,
            stop: None,
        }
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            let _ = stop.send(());
        }
    }
}

/// Calls `on_change(path)` on a background thread after each settled change
/// of `path` (not while it is missing, as in the middle of a rename).
pub fn watch_file(
    path: &Path,
    on_change: impl Fn(&Path) + Send + 'static,
) -> Result<WatchGuard, WatchError> {
    let path = std::path::absolute(path).map_err(|e| WatchError::Path(path.into(), e))?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let (tx, rx) = mpsc::channel::<()>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let target = path.clone();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev
            && !matches!(ev.kind, notify::EventKind::Access(_))
            && ev.paths.iter().any(|p| p == &target)
        {
            let _ = tx.send(());
        }
    })
    .map_err(|e| WatchError::Notify(path.clone(), e))?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| WatchError::Notify(dir.clone(), e))?;
    let shown = path.clone();
    std::thread::Builder::new()
        .name("switchyard-watch".into())
        .spawn(move || {
            loop {
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
                if path.exists() {
                    on_change(&path);
                }
            }
        })
        .map_err(|e| WatchError::Thread(shown, e))?;
    Ok(WatchGuard {
        _watcher: Some(watcher),
        stop: Some(stop_tx),
    })
}
