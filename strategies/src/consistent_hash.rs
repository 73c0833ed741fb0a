//! `consistent-hash`: sticky routing by rendezvous hashing of a request key,
//! with bounded load.

use switchyard_guest::hash::{hash_bytes, mix64};
use switchyard_guest::{Input, Strategy, reject};

use crate::config;
use crate::least_connections::LeastConnections;

/// What a consistent-hash strategy hashes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HashKey {
    /// A request header (lower-case name).
    Header([u8; 64], usize),
    /// A cookie.
    Cookie([u8; 64], usize),
    /// The client IP address.
    ClientIp,
    /// The TLS server name.
    Sni,
    /// The request path.
    Path,
    /// Host / :authority.
    Authority,
}

/// Sticky routing: rendezvous (highest-random-weight) hashing of a request key,
/// with bounded load.
///
/// Rendezvous rather than a ring or Maglev table: every pooled instance gives
/// the same answer with no table to rebuild when backends change, and adding or
/// removing a backend moves only the keys it wins or held. The cost is O(n)
/// cheap mixes per decision (measured in the benchmarks). With `load=L` (a
/// percentage, default 125) no backend takes more than L% of the mean open
/// connections; a key whose first choice is over that moves to its next choice,
/// and back when the load falls. A request without the key is routed by least
/// connections.
pub struct ConsistentHash {
    key: HashKey,
    load_percent: u64,
}

impl Default for ConsistentHash {
    fn default() -> Self {
        ConsistentHash {
            key: HashKey::ClientIp,
            load_percent: 125,
        }
    }
}

fn name_buf(v: &[u8]) -> Result<([u8; 64], usize), i32> {
    if v.is_empty() || v.len() > 64 {
        return Err(reject(
            5,
            "a header or cookie name must have 1 to 64 characters",
        ));
    }
    let mut b = [0u8; 64];
    b[..v.len()].copy_from_slice(v);
    Ok((b, v.len()))
}

impl ConsistentHash {
    fn key<'a>(&self, input: &Input<'a>) -> Option<&'a [u8]> {
        let req = input.request();
        let k = match &self.key {
            HashKey::Header(name, len) => req.header(&name[..*len])?,
            HashKey::Cookie(name, len) => req.cookie(&name[..*len])?,
            HashKey::ClientIp => req.client_ip(),
            HashKey::Sni => req.sni(),
            HashKey::Path => req.path(),
            HashKey::Authority => req.authority(),
        };
        (!k.is_empty()).then_some(k)
    }
}

impl Strategy for ConsistentHash {
    // The stats, the failed table, and the part that holds the key.
    fn reads(&self) -> u32 {
        use switchyard_guest::{READS_CANDIDATES, READS_HEADERS, READS_REQUEST, READS_TARGET, READS_TLS};
        READS_CANDIDATES
            | READS_REQUEST
            | match self.key {
                HashKey::Header(..) | HashKey::Cookie(..) => READS_HEADERS,
                HashKey::ClientIp => 0,
                HashKey::Sni => READS_TLS,
                HashKey::Path | HashKey::Authority => READS_TARGET,
            }
    }

    fn configure(&mut self, config: &[u8]) -> Result<(), i32> {
        for item in config.split(|&b| b == b',') {
            let item = config::trim(item);
            if item.is_empty() {
                continue;
            }
            if let Some(v) = item.strip_prefix(b"load=") {
                self.load_percent = config::number(v)
                    .ok_or_else(|| reject(2, "load=N: N must be a whole number"))?;
                if self.load_percent < 100 {
                    return Err(reject(
                        6,
                        "load=N: N is a percentage of the mean load and must be at least 100",
                    ));
                }
                continue;
            }
            self.key = match item {
                b"client-ip" | b"client" => HashKey::ClientIp,
                b"sni" => HashKey::Sni,
                b"path" => HashKey::Path,
                b"authority" | b"host" => HashKey::Authority,
                _ => {
                    if let Some(v) = item.strip_prefix(b"header:") {
                        let (mut b, n) = name_buf(v)?;
                        b[..n].make_ascii_lowercase();
                        HashKey::Header(b, n)
                    } else if let Some(v) = item.strip_prefix(b"cookie:") {
                        let (b, n) = name_buf(v)?;
                        HashKey::Cookie(b, n)
                    } else {
                        return Err(reject(
                            3,
                            "unknown key; expected header:NAME, cookie:NAME, client-ip, sni, path, authority or load=N",
                        ));
                    }
                }
            };
        }
        Ok(())
    }

    fn decide(&mut self, input: &Input<'_>) -> Option<usize> {
        let Some(key) = self.key(input) else {
            return LeastConnections.decide(input);
        };
        let kh = hash_bytes(key);
        let (mut m, mut load) = (0u64, 0u64);
        input.scan_eligible_from(0, |_, c| {
            m += 1;
            load += c.active() as u64;
        });
        if m == 0 {
            return None;
        }
        // Bounded load: ceil(L% of the mean, counting this connection).
        let bound = ((load + 1) * self.load_percent).div_ceil(100 * m).max(1);
        // (index, score) of the top scorer under the bound and of the top
        // scorer overall. No "none yet" flags: every score is at least 0, and
        // two candidates never tie (distinct ids give distinct scores, as
        // `mix64` is a bijection), so `>=` takes the first one seen and then
        // only a higher one.
        let (mut best, mut best_s) = (usize::MAX, 0u64);
        let (mut any, mut any_s) = (usize::MAX, 0u64);
        input.scan_eligible_from(0, |i, c| {
            let score = mix64(kh ^ mix64(c.id() as u64));
            if score >= any_s {
                (any, any_s) = (i, score);
            }
            if score >= best_s && (c.active() as u64) < bound {
                (best, best_s) = (i, score);
            }
        });
        if best != usize::MAX { Some(best) } else { (any != usize::MAX).then_some(any) }
    }
}
