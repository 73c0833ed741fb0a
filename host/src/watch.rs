//! Debounced watching of one file, shared by the strategy hot swap and the
//! backends file.
//!
//! Both editors' in-place writes and atomic rename-into-place (how build tools
//! and `cp`-then-`mv` deployments replace files) work: we watch the parent
//! directory, not the file's inode. So does a swap of a directory symlink
//! the path goes through, as Kubernetes updates a mounted Secret or
//! ConfigMap: `cert.pem -> ..data/cert.pem`, with `..data` renamed to point
//! at a new directory. No event then names the file itself, so any event in
//! the directory counts, and the callback runs only when the file's content
//! (followed through links) differs from what it last saw. Events are
//! debounced ([`DEBOUNCE`]) so a write in several chunks is handled once,
//! after it is complete. Events that say a file is complete (closed after
//! writing, renamed into place, a link created) wait only [`SETTLED`], to
//! gather the rest of their burst: a rename swaps a strategy within a few
//! milliseconds, not after the debounce.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

/// Quiet time after the last change before the callback runs.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// Quiet time after an event that says a file is complete.
pub const SETTLED: Duration = Duration::from_millis(5);

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
    // `true`: the event says a file is complete.
    let (tx, rx) = mpsc::channel::<bool>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        use notify::EventKind as K;
        use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
        let Ok(ev) = ev else { return };
        let complete = match ev.kind {
            K::Access(AccessKind::Close(AccessMode::Write)) => true,
            K::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => true,
            K::Create(_) => true,
            K::Access(_) => return,
            _ => false,
        };
        let _ = tx.send(complete);
    })
    .map_err(|e| WatchError::Notify(path.clone(), e))?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| WatchError::Notify(dir.clone(), e))?;
    let shown = path.clone();
    let mut seen = fingerprint(&path);
    std::thread::Builder::new()
        .name("switchyard-watch".into())
        .spawn(move || {
            loop {
                let mut wait = match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(complete) => quiet(complete),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if stop_rx.try_recv().is_ok() {
                            return;
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                };
                while let Ok(complete) = rx.recv_timeout(wait) {
                    wait = quiet(complete);
                }
                if stop_rx.try_recv().is_ok() {
                    return;
                }
                let now = fingerprint(&path);
                if now.is_some() && now != seen {
                    seen = now;
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

fn quiet(complete: bool) -> Duration {
    if complete { SETTLED } else { DEBOUNCE }
}

/// Length and hash of the file's content, following links; `None` while it
/// is missing or unreadable (as in the middle of a rename).
fn fingerprint(path: &Path) -> Option<(usize, u64)> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some((bytes.len(), h.finish()))
}
