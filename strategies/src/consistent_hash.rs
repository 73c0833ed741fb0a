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
    spread: Spread,
}

impl Default for ConsistentHash {
    fn default() -> Self {
        ConsistentHash {
            key: HashKey::ClientIp,
            load_percent: 125,
            spread: Spread([(0, 0); SPREAD_KEPT]),
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

    // Only the header the key is in: the host then writes that one header,
    // not every header a browser sends.
    fn headers(&self) -> Option<&[u8]> {
        match &self.key {
            HashKey::Header(name, len) => Some(&name[..*len]),
            HashKey::Cookie(..) => Some(b"cookie"),
            _ => None,
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
                        // The name is what the module lists for the host
                        // (`switchyard_headers`): refuse here what the host
                        // would refuse there, as a configuration error.
                        if let Some(bad) = v
                            .iter()
                            .find(|&&b| !(b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)))
                        {
                            // No allocator here for the name: say the byte.
                            let mut why = *b"header:NAME: a header name holds only letters, digits and !#$%&'*+-.^_`|~ (not '?')";
                            let at = why.len() - 3;
                            why[at] = if bad.is_ascii_graphic() || *bad == b' ' { *bad } else { b'?' };
                            return Err(reject(7, core::str::from_utf8(&why).unwrap_or("header:NAME: not a header name")));
                        }
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
        // One pass finds the top scorer (index, score, load) and sums the
        // load for the bound. Every score is at least 0, and two candidates
        // never tie (distinct ids give distinct scores, as `mix64` is a
        // bijection), so `>=` takes the first one seen and then only a
        // higher one: no "none yet" flag.
        let (mut m, mut load) = (0u64, 0u64);
        let (mut top, mut top_s, mut top_a) = (usize::MAX, 0u64, 0u64);
        let spread = &mut self.spread;
        for (i, c) in input.eligible_candidates() {
            let a = c.active() as u64;
            m += 1;
            load += a;
            let score = mix64(kh ^ spread.of(i, c.id()));
            if score >= top_s {
                (top, top_s, top_a) = (i, score, a);
            }
        }
        if m == 0 {
            return None;
        }
        // Bounded load: ceil(L% of the mean, counting this connection).
        let bound = ((load + 1) * self.load_percent).div_ceil(100 * m).max(1);
        if top_a < bound {
            // The usual case: the key's own backend has room.
            return Some(top);
        }
        // Over the bound: the top scorer among those under it, else the top.
        let (mut best, mut best_s) = (usize::MAX, 0u64);
        for (i, c) in input.eligible_candidates() {
            let score = mix64(kh ^ spread.of(i, c.id()));
            if score >= best_s && (c.active() as u64) < bound {
                (best, best_s) = (i, score);
            }
        }
        Some(if best != usize::MAX { best } else { top })
    }
}

/// Candidates whose `mix64(id)` is kept, by index.
const SPREAD_KEPT: usize = 64;

/// `mix64(id)` of the candidate last seen at each index, with its id: a
/// candidate list rarely changes between decisions, so rendezvous scoring
/// mixes each id once rather than on every decision (about a fifth of a
/// candidate's cost). A changed id at an index is mixed again.
struct Spread([(u32, u64); SPREAD_KEPT]);

impl Spread {
    #[inline]
    fn of(&mut self, i: usize, id: u32) -> u64 {
        match self.0.get_mut(i) {
            Some(kept) if kept.0 == id && kept.1 != 0 => kept.1,
            Some(kept) => {
                *kept = (id, mix64(id as u64));
                kept.1
            }
            None => mix64(id as u64),
        }
    }
}
