//! Helpers shared by the end-to-end tests.

use std::path::PathBuf;
use std::sync::Arc;

use switchyard::strategy::{
    Strategy, StrategyEngine, StrategyOptions, StrategySource, StrategySpec,
};

/// Path of a fixture under `tests/wat/`.
pub fn wat(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("wat")
        .join(format!("{name}.wat"))
}

/// A spec for a WAT fixture with a configuration.
pub fn wat_spec(name: &str, config: &str) -> StrategySpec {
    StrategySpec {
        source: StrategySource::File(wat(name)),
        config: config.as_bytes().to_vec(),
    }
}

/// An engine with default options.
pub fn engine() -> Arc<StrategyEngine> {
    StrategyEngine::new(StrategyOptions::default()).expect("engine")
}

/// Loads a spec on a fresh default engine.
pub fn load(spec: &StrategySpec) -> Strategy {
    Strategy::load(engine(), spec).unwrap_or_else(|e| panic!("{:?}: {e}", spec.source))
}

/// A fresh temporary directory under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `target/tmp/<name>-<pid>-<n>`.
    pub fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "switchyard-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
