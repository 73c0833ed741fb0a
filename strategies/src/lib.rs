//! Switchyard's built-in routing strategies.
//!
//! Each is a plain [`Strategy`] written with the guest SDK. The host ships them
//! compiled to WebAssembly (see `modules/`), runs the least-connections one
//! natively as its fallback, and the benchmarks run all of them both ways.
//!
//! Every strategy skips candidates that are unhealthy, draining, weighted to 0
//! or already failed for this request ([`Input::eligible`]), and answers
//! `None` when nothing is eligible so the host's fallback decides.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

use switchyard_guest::hash::{hash_bytes, mix64};
use switchyard_guest::{Candidate, Input, Strategy};

mod config;

/// Name and one-line description of every built-in, in `strategy list` order.
pub const BUILTINS: &[(&str, &str)] = &[
    (
        "round-robin",
        "each eligible backend in turn; exact across threads (uses the shared decision sequence)",
    ),
    (
        "weighted-round-robin",
        "smooth weighted round-robin as NGINX does it: weights honoured without bursts",
    ),
    (
        "least-connections",
        "fewest open connections per unit of weight; ties broken at random",
    ),
    (
        "power-of-two",
        "least in-flight of two random choices: near least-loaded at O(1) cost",
    ),
    (
        "resource-aware",
        "lowest weighted score of CPU, memory and connections (config: cpu=50,mem=30,conn=20)",
    ),
    (
        "consistent-hash",
        "sticky: rendezvous hash of a header, cookie, client IP, SNI or path, with bounded load (config: header:x-user-id,load=125)",
    ),
    ("random", "uniform by weight"),
];

/// Number of eligible candidates.
fn eligible_count(input: &Input<'_>) -> usize {
    (0..input.candidates().len())
        .filter(|&i| input.eligible(i))
        .count()
}

/// The `k`-th eligible candidate (0-based).
fn nth_eligible(input: &Input<'_>, k: usize) -> Option<usize> {
    (0..input.candidates().len())
        .filter(|&i| input.eligible(i))
        .nth(k)
}

/// Each eligible backend in turn.
///
/// The turn comes from the host's decision sequence rather than a counter in
/// the instance, because the host runs several instances of a module in
/// parallel and each would otherwise rotate on its own.
#[derive(Default)]
pub struct RoundRobin;

impl Strategy for RoundRobin {
    fn decide(&mut self, input: &Input<'_>) -> Option<usize> {
        let m = eligible_count(input);
        if m == 0 {
            return None;
        }
        nth_eligible(input, (input.sequence() % m as u64) as usize)
    }
}

/// Most backends the smooth weighted round-robin tracks; above that it picks at
/// random by weight (no allocator, so its table is fixed).
pub const SWRR_MAX: usize = 1024;

/// Smooth weighted round-robin (NGINX's algorithm): each pick adds every
/// backend's weight to its running score, takes the highest and subtracts the
/// total from it, which interleaves heavy backends instead of bursting them.
pub struct WeightedRoundRobin {
    current: [i64; SWRR_MAX],
    ids: [u32; SWRR_MAX],
    len: usize,
}

impl Default for WeightedRoundRobin {
    fn default() -> Self {
        WeightedRoundRobin {
            current: [0; SWRR_MAX],
            ids: [0; SWRR_MAX],
            len: 0,
        }
    }
}

impl Strategy for WeightedRoundRobin {
    fn decide(&mut self, input: &Input<'_>) -> Option<usize> {
        let cands = input.candidates();
        let n = cands.len();
        if n > SWRR_MAX {
            return Random.decide(input);
        }
        // A changed backend set restarts the schedule.
        let same = self.len == n && cands.iter().all(|(i, c)| self.ids[i] == c.id());
        if !same {
            for (i, c) in cands.iter() {
                self.ids[i] = c.id();
                self.current[i] = 0;
            }
            self.len = n;
        }
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for (i, c) in cands.iter() {
            if !input.eligible(i) {
                continue;
            }
            let w = c.weight() as i64;
            self.current[i] += w;
            total += w;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }
}

/// `a/wa < b/wb` without division.
#[inline]
fn lighter(a: u32, wa: u32, b: u32, wb: u32) -> bool {
    (a as u64) * (wb as u64) < (b as u64) * (wa as u64)
}

/// Fewest open connections per unit of weight.
///
/// The scan starts at a random index so that ties do not always go to the
/// first backend (which is what a naive `min_by_key` does).
#[derive(Default)]
pub struct LeastConnections;

impl Strategy for LeastConnections {
    fn decide(&mut self, input: &Input<'_>) -> Option<usize> {
        let cands = input.candidates();
        let n = cands.len();
        if n == 0 {
            return None;
        }
        let start = (input.random() % n as u64) as usize;
        // (index, active, weight) of the lightest so far.
        let mut best: Option<(usize, u32, u32)> = None;
        for i in (start..n).chain(0..start) {
            let Some(c) = cands.get(i) else { continue };
            if !c.usable() || input.has_failed(i) {
                continue;
            }
            let (a, w) = (c.active(), c.weight());
            match best {
                Some((_, ba, bw)) if !lighter(a, w, ba, bw) => {}
                _ => best = Some((i, a, w)),
            }
        }
        best.map(|(i, _, _)| i)
    }
}

/// The eligible candidate at or after `from`, wrapping.
fn eligible_from(input: &Input<'_>, from: usize, skip: Option<usize>) -> Option<usize> {
    let n = input.candidates().len();
    (0..n)
        .map(|k| (from + k) % n)
        .find(|&i| Some(i) != skip && input.eligible(i))
}

/// Least in-flight of two random choices ("the power of two choices").
///
/// Within a whisker of least-loaded for large sets, at constant cost, and it
/// avoids the herd effect of every balancer thread chasing the same minimum.
#[derive(Default)]
pub struct PowerOfTwo;

impl Strategy for PowerOfTwo {
    fn decide(&mut self, input: &Input<'_>) -> Option<usize> {
        let cands = input.candidates();
        let n = cands.len();
        if n == 0 {
            return None;
        }
        let r = input.random();
        let a = eligible_from(input, (r % n as u64) as usize, None)?;
        let Some(b) = eligible_from(input, ((r >> 32) % n as u64) as usize, Some(a)) else {
            return Some(a);
        };
        let (ca, cb) = (cands.get(a)?, cands.get(b)?);
        let load = |c: &Candidate<'_>| c.in_flight().max(c.active());
        if lighter(load(&cb), cb.weight(), load(&ca), ca.weight()) {
            Some(b)
        } else {
            Some(a)
        }
    }
}

/// Lowest weighted score of CPU, memory and open connections, each normalised
/// to the busiest eligible backend.
pub struct ResourceAware {
    /// Weight of CPU in the score.
    pub cpu: u64,
    /// Weight of resident memory.
    pub mem: u64,
    /// Weight of open connections.
    pub conn: u64,
}

impl Default for ResourceAware {
    fn default() -> Self {
        ResourceAware {
            cpu: 50,
            mem: 30,
            conn: 20,
        }
    }
}

impl Strategy for ResourceAware {
    fn configure(&mut self, config: &[u8]) -> Result<(), i32> {
        for (key, value) in config::pairs(config) {
            let v = config::number(value).ok_or(2)?;
            match key {
                b"cpu" => self.cpu = v,
                b"mem" => self.mem = v,
                b"conn" => self.conn = v,
                _ => return Err(3),
            }
        }
        if self.cpu + self.mem + self.conn == 0 {
            return Err(4);
        }
        Ok(())
    }

    fn decide(&mut self, input: &Input<'_>) -> Option<usize> {
        let cands = input.candidates();
        let n = cands.len();
        let (mut max_cpu, mut max_rss, mut max_conn) = (1u64, 1u64, 1u64);
        for (i, c) in cands.iter() {
            if input.eligible(i) {
                max_cpu = max_cpu.max(c.cpu_permille() as u64);
                max_rss = max_rss.max(c.rss_bytes());
                max_conn = max_conn.max(c.active() as u64);
            }
        }
        // Scores in 1/1000ths so that integer math keeps resolution.
        let score = |c: &Candidate<'_>| {
            self.cpu * (c.cpu_permille() as u64 * 1000 / max_cpu)
                + self.mem * (c.rss_bytes().saturating_mul(1000) / max_rss)
                + self.conn * (c.active() as u64 * 1000 / max_conn)
        };
        let start = if n == 0 {
            0
        } else {
            (input.random() % n as u64) as usize
        };
        let mut best: Option<(usize, u64)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if !input.eligible(i) {
                continue;
            }
            let s = score(&cands.get(i)?) * 1000 / cands.get(i)?.weight().max(1) as u64;
            if best.is_none_or(|(_, b)| s < b) {
                best = Some((i, s));
            }
        }
        best.map(|(i, _)| i)
    }
}

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
        return Err(5);
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
    fn configure(&mut self, config: &[u8]) -> Result<(), i32> {
        for item in config.split(|&b| b == b',') {
            let item = config::trim(item);
            if item.is_empty() {
                continue;
            }
            if let Some(v) = item.strip_prefix(b"load=") {
                self.load_percent = config::number(v).ok_or(2)?;
                if self.load_percent < 100 {
                    return Err(6);
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
                        return Err(3);
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
        let cands = input.candidates();
        let (mut m, mut load) = (0u64, 0u64);
        for (i, c) in cands.iter() {
            if input.eligible(i) {
                m += 1;
                load += c.active() as u64;
            }
        }
        if m == 0 {
            return None;
        }
        // Bounded load: ceil(L% of the mean, counting this connection).
        let bound = ((load + 1) * self.load_percent).div_ceil(100 * m).max(1);
        let mut best: Option<(usize, u64)> = None;
        let mut best_any: Option<(usize, u64)> = None;
        for (i, c) in cands.iter() {
            if !input.eligible(i) {
                continue;
            }
            let score = mix64(kh ^ mix64(c.id() as u64));
            if best_any.is_none_or(|(_, s)| score > s) {
                best_any = Some((i, score));
            }
            if (c.active() as u64) < bound && best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        best.or(best_any).map(|(i, _)| i)
    }
}

/// Uniformly random by weight.
#[derive(Default)]
pub struct Random;

impl Strategy for Random {
    fn decide(&mut self, input: &Input<'_>) -> Option<usize> {
        let cands = input.candidates();
        let total: u64 = cands
            .iter()
            .filter(|(i, _)| input.eligible(*i))
            .map(|(_, c)| c.weight() as u64)
            .sum();
        if total == 0 {
            return None;
        }
        let mut r = input.random() % total;
        for (i, c) in cands.iter() {
            if !input.eligible(i) {
                continue;
            }
            let w = c.weight() as u64;
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        None
    }
}

#[cfg(test)]
mod tests;
