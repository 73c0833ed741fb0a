//! Where a configuration comes from: defaults, then a TOML file, then the
//! `HOST` and `PORT` environment variables (as defuss-express reads them),
//! then flags given on the command line. [`Layered`] keeps where each key's
//! value came from, so every error names its source: the file and line, the
//! flag, or the variable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Config, RawConfig};

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Nobody set it.
    Default,
    /// A config file, at this 1-based line.
    File(usize),
    /// An environment variable.
    Env(&'static str),
    /// A flag on the command line.
    Flag,
}

/// A configuration error that names where the bad value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {error}", path = .0.display(), error = .1)]
    Read(PathBuf, std::io::Error),
    /// TOML syntax, an unknown key or a value of the wrong type.
    #[error("{}:{line}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A value that parses but makes no sense.
    #[error("`{key}`: {message}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An invalid value, with where it was set: `file:line`, `--flag` or
    /// `$VAR`.
    #[error("{place}: {error}")]
    At {
        /// Where the value was set.
        place: String,
        /// The error.
        error: Box<ConfigError>,
    },
}

/// Options given on a command line: their values, and which were given
/// explicitly (only those override the file).
#[derive(Clone, Copy)]
pub struct Flags<'a> {
    /// Every option, defaults for those not given.
    pub values: &'a RawConfig,
    /// True for an option given explicitly.
    pub given: &'a dyn Fn(&str) -> bool,
}

/// An effective configuration and where each of its values came from.
#[derive(Debug, Clone)]
pub struct Layered {
    /// The effective options.
    pub raw: RawConfig,
    file: Option<PathBuf>,
    origins: HashMap<String, Origin>,
}

/// Edit distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Turns a TOML error into `file:line: message`, naming the key.
fn file_error(path: &Path, text: &str, e: toml::de::Error) -> ConfigError {
    let at = e.span().map_or(0, |s| s.start.min(text.len()));
    let line = text[..at].matches('\n').count() + 1;
    let line_text = text.lines().nth(line - 1).unwrap_or("");
    let key = line_text.split('=').next().unwrap_or("").trim();
    let msg = e.message().trim();
    let message = if let Some(rest) = msg.strip_prefix("unknown field `") {
        let unknown = rest.split('`').next().unwrap_or("");
        let near = RawConfig::options()
            .into_iter()
            .map(|(k, _)| k)
            .min_by_key(|k| distance(k, unknown))
            .filter(|k| distance(k, unknown) <= 3);
        match near {
            Some(k) => format!("unknown key `{unknown}` (did you mean `{k}`?)"),
            None => format!("unknown key `{unknown}`"),
        }
    } else if key.is_empty() || key.starts_with('[') {
        msg.to_string()
    } else {
        format!("`{key}`: {msg}")
    };
    ConfigError::File {
        path: path.into(),
        line,
        message,
    }
}

impl Layered {
    /// Merges the sources. `env` looks up an environment variable; `flags`
    /// is the command line's options with a test for "given explicitly".
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        flags: Option<Flags<'_>>,
    ) -> Result<Layered, ConfigError> {
        let mut origins = HashMap::new();
        let base = match file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
                let raw: RawConfig =
                    toml::from_str(&text).map_err(|e| file_error(path, &text, e))?;
                if let Ok(t) = toml::de::DeTable::parse(&text) {
                    for (k, _) in t.get_ref().iter() {
                        let at = k.span().start.min(text.len());
                        let line = text[..at].matches('\n').count() + 1;
                        let key = k.get_ref().to_string();
                        let key = if key == "inspection_timeout_ms" {
                            "server_first_after_ms".to_string()
                        } else {
                            key
                        };
                        origins.insert(key, Origin::File(line));
                    }
                }
                raw
            }
            None => RawConfig::default(),
        };
        let mut table = toml::Table::try_from(&base).map_err(|e| ConfigError::Invalid {
            key: "config",
            message: e.to_string(),
        })?;
        for (var, key) in [("HOST", "host"), ("PORT", "port")] {
            let Some(v) = env(var).filter(|v| !v.is_empty()) else {
                continue;
            };
            let value = match key {
                "port" => toml::Value::Integer(v.parse::<u16>().map_err(|_| ConfigError::At {
                    place: format!("${var}"),
                    error: Box::new(ConfigError::Invalid {
                        key: "port",
                        message: format!("not a port number: `{v}`"),
                    }),
                })? as i64),
                _ => toml::Value::String(v),
            };
            table.insert(key.into(), value);
            origins.insert(key.into(), Origin::Env(var));
        }
        if let Some(Flags { values, given }) = flags {
            let cli = toml::Table::try_from(values).map_err(|e| ConfigError::Invalid {
                key: "flags",
                message: e.to_string(),
            })?;
            for (k, v) in cli {
                if given(&k) {
                    origins.insert(k.clone(), Origin::Flag);
                    table.insert(k, v);
                }
            }
        }
        let raw = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid {
                key: "config",
                message: e.to_string(),
            })?;
        Ok(Layered {
            raw,
            file: file.map(Path::to_path_buf),
            origins,
        })
    }

    /// Where `key`'s value came from.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// Adds where the bad value was set to an [`ConfigError::Invalid`].
    pub fn locate(&self, error: ConfigError) -> ConfigError {
        let ConfigError::Invalid { key, .. } = &error else {
            return error;
        };
        let place = match self.origin(key) {
            Origin::Default => return error,
            Origin::File(line) => match &self.file {
                Some(p) => format!("{}:{line}", p.display()),
                None => return error,
            },
            Origin::Env(var) => format!("${var}"),
            // As spelled on the command line (`backends` is `--backend`).
            Origin::Flag => super::RawConfig::options()
                .into_iter()
                .find_map(|(k, flag)| (k == *key).then_some(flag).flatten())
                .unwrap_or_else(|| format!("--{}", key.replace('_', "-"))),
        };
        ConfigError::At {
            place,
            error: Box::new(error),
        }
    }

    /// Validates, naming where a bad value was set.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        self.raw.validate().map_err(|e| self.locate(e))
    }
}
