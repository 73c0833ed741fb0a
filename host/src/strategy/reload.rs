//! Hot swap from a file: watch a strategy file and swap in each new version
//! that validates. A version that does not is logged with its reason and the
//! running one keeps serving. Both in-place writes and atomic renames work
//! (see [`crate::watch`]).

use std::path::Path;
use std::sync::Arc;

use super::{LoadError, LoadReport, Strategy, StrategySource, StrategySpec};
pub use crate::watch::{WatchError, WatchGuard};

/// Watches `strategy`'s file and calls `on_reload` with each outcome. A
/// strategy not loaded from a file has nothing to watch: the guard then
/// watches nothing.
pub fn watch(
    strategy: Arc<Strategy>,
    on_reload: impl Fn(&Path, Result<LoadReport, LoadError>) + Send + 'static,
) -> Result<WatchGuard, WatchError> {
    let spec = strategy.spec();
    let StrategySource::File(path) = &spec.source else {
        return Ok(WatchGuard::none());
    };
    crate::watch::watch_file(path, move |path| {
        let spec = StrategySpec {
            source: StrategySource::File(path.to_path_buf()),
            config: strategy.spec().config,
        };
        let result = strategy.replace(&spec);
        if let Err(e) = &result {
            tracing::error!(file = %path.display(), error = %e, "strategy rejected; the previous one keeps serving");
        }
        on_reload(path, result);
    })
}
