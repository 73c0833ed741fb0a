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

/// Calls `on_change(path)` on a background thread after each settled change
/// of `path` (not while it is missing, as in the middle of a rename).
pub fn watch_file(
    path: &Path,
    on_change: impl Fn(&Path) + Send + 'static,
) -> Result<WatchGuard, String> {
    let path = std::path::absolute(path).map_err(|e| e.to_string())?;
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
    .map_err(|e| e.to_string())?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| format!("watching {}: {e}", dir.display()))?;
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
        .map_err(|e| e.to_string())?;
    Ok(WatchGuard {
        _watcher: watcher,
        stop: stop_tx,
    })
}
