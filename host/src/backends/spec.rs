//! Static backends as written in the config (`backends`) or the backends
//! file: `host:port [weight] [name=NAME]`, one per line in the file, with
//! `#` comments.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::BackendId;

/// One static backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// Where to connect (resolved once, when read).
    pub addr: SocketAddr,
    /// Share of the traffic relative to the others (default 1; 0 takes no
    /// new work).
    pub weight: u32,
    /// `name=` if given, else the address as written.
    pub name: String,
    /// Stable id, from the name.
    pub id: BackendId,
}

/// Why a backend line was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Nothing on the line.
    #[error("empty backend")]
    Empty,
    /// The address does not resolve.
    #[error("cannot resolve `{0}`: {1}")]
    Resolve(String, std::io::Error),
    /// The address resolves to nothing.
    #[error("`{0}` has no address")]
    NoAddress(String),
    /// A weight that is not a number.
    #[error("bad weight `{0}`: expected a whole number")]
    Weight(String),
    /// An empty `name=`.
    #[error("empty name")]
    Name,
    /// A word that is neither a weight nor `name=`.
    #[error("unexpected `{0}`: expected `host:port [weight] [name=NAME]`")]
    Unexpected(String),
}

impl FromStr for BackendSpec {
    type Err = SpecError;

    fn from_str(line: &str) -> Result<BackendSpec, SpecError> {
        let mut words = line.split_whitespace();
        let addr_text = words.next().ok_or(SpecError::Empty)?;
        let (mut weight, mut name) = (1, None);
        for w in words {
            if let Some(n) = w.strip_prefix("name=") {
                if n.is_empty() {
                    return Err(SpecError::Name);
                }
                name = Some(n.to_string());
            } else {
                let v = w.strip_prefix("weight=").unwrap_or(w);
                if v.len() == w.len() && !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SpecError::Unexpected(w.into()));
                }
                weight = v.parse().map_err(|_| SpecError::Weight(v.into()))?;
            }
        }
        let addr = addr_text
            .to_socket_addrs()
            .map_err(|e| SpecError::Resolve(addr_text.into(), e))?
            .next()
            .ok_or_else(|| SpecError::NoAddress(addr_text.into()))?;
        let name = name.unwrap_or_else(|| addr_text.to_string());
        Ok(BackendSpec {
            addr,
            weight,
            id: BackendId::named(&name),
            name,
        })
    }
}

/// Why a list of backends was refused.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The file could not be read.
    #[error("{path}: {error}", path = .0.display(), error = .1)]
    Read(PathBuf, std::io::Error),
    /// A bad line (1-based).
    #[error("{}:{line}: {error}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// Its line.
        line: usize,
        /// What is wrong.
        error: SpecError,
    },
    /// Two entries with one id: the same address twice, or a name clash.
    #[error("`{0}` and `{1}` have the same id; give one of them a different `name=`")]
    Duplicate(String, String),
    /// Two lines of a file with one id.
    #[error(
        "{}:{line}: `{name}` has the same id as line {first}; give one of them a different `name=`",
        path.display()
    )]
    DuplicateLine {
        /// The file.
        path: PathBuf,
        /// The later line.
        line: usize,
        /// The earlier one.
        first: usize,
        /// The later line's name.
        name: String,
    },
}

/// Checks that no two specs share an id.
pub fn check_unique(specs: &[BackendSpec]) -> Result<(), ListError> {
    for (i, a) in specs.iter().enumerate() {
        if let Some(b) = specs[..i].iter().find(|b| b.id == a.id) {
            return Err(ListError::Duplicate(b.name.clone(), a.name.clone()));
        }
    }
    Ok(())
}

/// Reads a backends file: one `host:port [weight] [name=NAME]` per line,
/// `#` comments, blank lines ignored.
pub fn read_file(path: &Path) -> Result<Vec<BackendSpec>, ListError> {
    let text = std::fs::read_to_string(path).map_err(|e| ListError::Read(path.into(), e))?;
    let specs = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty())
        .map(|(line, l)| {
            l.parse::<BackendSpec>()
                .map(|s| (line, s))
                .map_err(|error| ListError::Line {
                    path: path.into(),
                    line,
                    error,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (i, (line, a)) in specs.iter().enumerate() {
        if let Some((first, _)) = specs[..i].iter().find(|(_, b)| b.id == a.id) {
            return Err(ListError::DuplicateLine {
                path: path.into(),
                line: *line,
                first: *first,
                name: a.name.clone(),
            });
        }
    }
    Ok(specs.into_iter().map(|(_, s)| s).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse() {
        let s: BackendSpec = "127.0.0.1:9000 5".parse().unwrap();
        assert_eq!((s.weight, s.name.as_str()), (5, "127.0.0.1:9000"));
        let s: BackendSpec = "127.0.0.1:9000 weight=2 name=blue".parse().unwrap();
        assert_eq!((s.weight, s.name.as_str()), (2, "blue"));
        assert!(matches!("".parse::<BackendSpec>(), Err(SpecError::Empty)));
        assert!(matches!(
            "127.0.0.1:1 heavy".parse::<BackendSpec>(),
            Err(SpecError::Unexpected(_))
        ));
        assert!(matches!(
            "127.0.0.1:1 weight=x".parse::<BackendSpec>(),
            Err(SpecError::Weight(_))
        ));
        assert!(matches!(
            "nonsense".parse::<BackendSpec>(),
            Err(SpecError::Resolve(..))
        ));
    }

    #[test]
    fn files_name_the_line_and_refuse_duplicates() {
        let dir = std::env::temp_dir().join(format!("switchyard-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("backends");
        std::fs::write(&f, "# two\n127.0.0.1:1\n\n127.0.0.1:2 x\n").unwrap();
        let e = read_file(&f).unwrap_err().to_string();
        assert!(
            e.ends_with("backends:4: unexpected `x`: expected `host:port [weight] [name=NAME]`"),
            "{e}"
        );
        std::fs::write(&f, "127.0.0.1:1\n127.0.0.1:1 2\n").unwrap();
        let e = read_file(&f).unwrap_err().to_string();
        assert!(
            e.ends_with("backends:2: `127.0.0.1:1` has the same id as line 1; give one of them a different `name=`"),
            "{e}"
        );
        std::fs::write(&f, "127.0.0.1:1\n127.0.0.1:1 2 name=other\n").unwrap();
        assert_eq!(read_file(&f).unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
