//! Where a strategy module comes from, and the configuration it starts with.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrategySource {
    /// `builtin:NAME`, shipped precompiled inside the binary.
    Builtin(String),
    /// `native:NAME`: the built-in run as native code instead of in
    /// WebAssembly, with the same input encoding; for measuring what the
    /// sandbox costs (the module is still loaded and checked).
    Native(String),
    /// A `.wasm`, `.wat` or `.cwasm` file.
    File(PathBuf),
    /// Bytes from an API call.
    Bytes {
        /// Name for logs.
        name: String,
        /// WebAssembly or WAT.
        bytes: Vec<u8>,
    },
}

impl FromStr for StrategySource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(name) = s.strip_prefix("builtin:") {
            Ok(StrategySource::Builtin(name.to_string()))
        } else if let Some(name) = s.strip_prefix("native:") {
            Ok(StrategySource::Native(name.to_string()))
        } else if s.is_empty() {
            Err("empty strategy".into())
        } else if super::builtin_names().any(|n| n == s) {
            Ok(StrategySource::Builtin(s.to_string()))
        } else {
            Ok(StrategySource::File(PathBuf::from(s)))
        }
    }
}

impl fmt::Display for StrategySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrategySource::Builtin(n) => write!(f, "builtin:{n}"),
            StrategySource::Native(n) => write!(f, "native:{n}"),
            StrategySource::File(p) => write!(f, "{}", p.display()),
            StrategySource::Bytes { name, .. } => f.write_str(name),
        }
    }
}

/// sha256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl StrategySource {
    /// sha256 of the module's bytes, if they can be read now.
    pub fn sha256(&self) -> Option<String> {
        match self {
            StrategySource::Builtin(n) | StrategySource::Native(n) => {
                super::engine::builtin(n).map(|b| sha256_hex(b.wasm))
            }
            StrategySource::File(p) => std::fs::read(p).ok().map(|b| sha256_hex(&b)),
            StrategySource::Bytes { bytes, .. } => Some(sha256_hex(bytes)),
        }
    }
}

/// A module and its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrategySpec {
    /// The module.
    pub source: StrategySource,
    /// Bytes passed to `switchyard_init`.
    pub config: Vec<u8>,
}

impl StrategySpec {
    /// A built-in without configuration.
    pub fn builtin(name: &str) -> Self {
        StrategySpec {
            source: StrategySource::Builtin(name.into()),
            config: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_builtins_by_prefix_or_bare_name() {
        assert_eq!(
            "builtin:random".parse::<StrategySource>().unwrap(),
            StrategySource::Builtin("random".into())
        );
        assert_eq!(
            "least-connections".parse::<StrategySource>().unwrap(),
            StrategySource::Builtin("least-connections".into())
        );
        assert_eq!(
            "./my.wasm".parse::<StrategySource>().unwrap(),
            StrategySource::File("./my.wasm".into())
        );
        assert!("".parse::<StrategySource>().is_err());
    }
}
