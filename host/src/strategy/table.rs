//! The candidate table an instance keeps between decisions.
//!
//! A decision's input is the header, the candidate table and the request
//! section. The table is most of it (64 bytes per backend) and changes
//! little between two decisions of one instance: a few backends opened or
//! closed a connection. So each instance remembers, per record, the
//! backend's version it last wrote (`Backend::version`, bumped after every
//! change a strategy can see) and rewrites only records whose version
//! moved, plus the heartbeat ages when the clock moved. Anything that
//! could make the remembered table wrong starts it over: another backend
//! list (backends added or removed), another buffer, another candidate
//! count, a raw call, or a change of the parts written.
//!
//! The guest's input buffer is the host's to write: ABI v1 says a module
//! must not write into it (`docs/abi.md`).

use std::cell::RefCell;

use switchyard_guest::CandidateStats;
use switchyard_guest::layout::{C_HEARTBEAT_AGE_MS, CANDIDATE_LEN};

/// The candidates of one decision, read on demand.
///
/// Implemented by the balancer's backend list (versioned, so an instance
/// rewrites only what changed) and by a plain slice of stats (no versions:
/// every record is written, as one copy).
pub trait CandidateSource {
    /// How many candidates.
    fn len(&self) -> usize;
    /// True if there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Identifies this list of candidates in the process; 0 means "no
    /// versions: write every record every time".
    fn set_id(&self) -> u64 {
        0
    }
    /// Moves whenever `stats(i, _)` changes other than in
    /// `heartbeat_age_ms`. Read before the stats.
    fn version(&self, _i: usize) -> u64 {
        0
    }
    /// Candidate `i`'s stats at clock `now_ms`.
    fn stats(&self, i: usize, now_ms: u64) -> CandidateStats;
    /// Candidate `i`'s heartbeat age at clock `now_ms`, as `stats` has it.
    fn heartbeat_age_ms(&self, i: usize, now_ms: u64) -> u32 {
        self.stats(i, now_ms).heartbeat_age_ms
    }
    /// Healthy, not draining, weight above zero.
    fn usable(&self, i: usize) -> bool;
    /// The stats as a slice, when they already are one (one copy to write).
    fn as_slice(&self) -> Option<&[CandidateStats]> {
        None
    }
}

/// Stats already gathered (a slice, a vector, an array): no versions, so
/// every record is written, as one copy.
impl<T: AsRef<[CandidateStats]> + ?Sized> CandidateSource for T {
    fn len(&self) -> usize {
        self.as_ref().len()
    }
    fn stats(&self, i: usize, _now_ms: u64) -> CandidateStats {
        self.as_ref()[i]
    }
    fn usable(&self, i: usize) -> bool {
        self.as_ref()[i].usable()
    }
    fn as_slice(&self) -> Option<&[CandidateStats]> {
        Some(self.as_ref())
    }
}

/// Runs `f` on the stats of every candidate at `now_ms`, as a slice (the
/// native decision and the fallback read slices). Reuses a per-thread
/// vector, so it allocates only when the list grows.
pub(crate) fn with_stats<S: CandidateSource + ?Sized, R>(
    src: &S,
    now_ms: u64,
    f: impl FnOnce(&[CandidateStats]) -> R,
) -> R {
    if let Some(slice) = src.as_slice() {
        return f(slice);
    }
    thread_local! {
        static STATS: RefCell<Vec<CandidateStats>> = const { RefCell::new(Vec::new()) };
    }
    STATS.with(|cell| {
        // Taken out, so a nested call (none today) would get its own.
        let mut v = cell.take();
        v.clear();
        v.extend((0..src.len()).map(|i| src.stats(i, now_ms)));
        let r = f(&v);
        *cell.borrow_mut() = v;
        r
    })
}

/// What one instance last wrote into its candidate table.
#[derive(Debug, Default)]
pub(crate) struct TableCache {
    /// Valid only while all of these match.
    set_id: u64,
    at: usize,
    count: usize,
    now_ms: u64,
    valid: bool,
    /// The version each record was written at.
    versions: Vec<u64>,
}

impl TableCache {
    /// Forgets the table: the next write is whole.
    pub(crate) fn invalidate(&mut self) {
        self.valid = false;
    }

    /// Writes the table for `src` at clock `now_ms` into `out` (exactly
    /// `src.len()` records), found at guest address `at`: every record the
    /// first time, then only those whose version moved (and heartbeat ages
    /// when the clock did). Returns how many records were written whole.
    pub(crate) fn write<S: CandidateSource + ?Sized>(
        &mut self,
        out: &mut [u8],
        at: usize,
        src: &S,
        now_ms: u64,
    ) -> usize {
        let n = src.len();
        debug_assert_eq!(out.len(), n * CANDIDATE_LEN);
        let set_id = src.set_id();
        if let Some(slice) = src.as_slice() {
            switchyard_guest::encode::encode_candidates(out, slice);
            self.valid = false;
            return n;
        }
        let records = out.chunks_exact_mut(CANDIDATE_LEN);
        if set_id == 0 || !self.valid || self.set_id != set_id || self.at != at || self.count != n {
            self.versions.clear();
            for (i, rec) in records.enumerate() {
                let v = src.version(i);
                self.versions.push(v);
                put(rec, &src.stats(i, now_ms));
            }
            *self = TableCache {
                set_id,
                at,
                count: n,
                now_ms,
                valid: set_id != 0,
                versions: std::mem::take(&mut self.versions),
            };
            return n;
        }
        let clock_moved = self.now_ms != now_ms;
        let versions = &mut self.versions[..n];
        let mut written = 0;
        // Indexes, not zipped iterators: this loop runs over every backend
        // on every decision, and a version load and compare is all most
        // records need (about 6 instructions, where the zip took 16).
        for (i, seen) in versions.iter_mut().enumerate() {
            let v = src.version(i);
            if v != *seen {
                *seen = v;
                let rec = &mut out[i * CANDIDATE_LEN..(i + 1) * CANDIDATE_LEN];
                put(rec, &src.stats(i, now_ms));
                written += 1;
            } else if clock_moved {
                let age = src.heartbeat_age_ms(i, now_ms);
                let at = i * CANDIDATE_LEN + C_HEARTBEAT_AGE_MS;
                out[at..at + 4].copy_from_slice(&age.to_le_bytes());
            }
        }
        self.now_ms = now_ms;
        written
    }
}

#[inline]
fn put(rec: &mut [u8], stats: &CandidateStats) {
    switchyard_guest::encode::encode_candidates(rec, std::slice::from_ref(stats));
}

#[cfg(test)]
mod tests {
    //! The incremental table against the full encoder: after any sequence
    //! of stat changes, backends added and removed, raw calls and swaps
    //! between instances, each instance's input is byte for byte what a
    //! whole encode of the same stats gives.

    use std::net::SocketAddr;
    use std::sync::Arc;

    use proptest::prelude::*;
    use switchyard_guest::encode::{encode_parts, encoded_len};
    use switchyard_guest::{Meta, READS_ALL, READS_CANDIDATES, RequestHead};

    use super::*;
    use crate::backends::{Backend, BackendSpec, Backends, ConnectionGuard};
    use crate::strategy::abi::Slot;
    use crate::strategy::{StrategyEngine, StrategyOptions};

    #[derive(Debug, Clone)]
    enum Op {
        Open(usize),
        Close(usize),
        Connected(usize, u32),
        Failed(usize),
        Responded(usize),
        Sampled(usize, u32, u32),
        Health(usize, bool),
        Drain(usize),
        Undrain(usize),
        Exited(usize),
        Ready(usize),
        /// Make the static backends the first k of the spec pool.
        Statics(usize),
        Tick(u16),
        /// A raw call into an instance (the floor's measurement, the audit).
        Raw(usize),
        /// A decision by instance k (two instances: a pool).
        Decide(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..16usize).prop_map(Op::Open),
            3 => (0..16usize).prop_map(Op::Close),
            1 => (0..16usize, 0..5000u32).prop_map(|(i, us)| Op::Connected(i, us)),
            1 => (0..16usize).prop_map(Op::Failed),
            1 => (0..16usize).prop_map(Op::Responded),
            1 => (0..16usize, 0..1000u32, 0..1000u32).prop_map(|(i, c, r)| Op::Sampled(i, c, r)),
            1 => (0..16usize, any::<bool>()).prop_map(|(i, ok)| Op::Health(i, ok)),
            1 => (0..16usize).prop_map(Op::Drain),
            1 => (0..16usize).prop_map(Op::Undrain),
            1 => (0..16usize).prop_map(Op::Exited),
            1 => (0..16usize).prop_map(Op::Ready),
            1 => (0..6usize).prop_map(Op::Statics),
            2 => (0..3000u16).prop_map(Op::Tick),
            1 => (0..2usize).prop_map(Op::Raw),
            6 => (0..2usize).prop_map(Op::Decide),
        ]
    }

    fn specs() -> Vec<BackendSpec> {
        (0..6)
            .map(|k| {
                format!("127.0.0.{}:80{k} {}", k + 1, 1 + k % 3)
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    fn slot(engine: &StrategyEngine) -> Slot {
        engine.floor().unwrap().into_slot()
    }

    /// What the guest of `slot` must see for this decision, by the full
    /// encoder over the same stats.
    fn expected(list: &crate::backends::BackendList, meta: &Meta, reads: u32) -> Vec<u8> {
        let stats: Vec<_> = (0..list.len())
            .map(|i| list.stats(i, meta.now_ms))
            .collect();
        let req = RequestHead::EMPTY.only(reads);
        let mut buf = vec![0u8; encoded_len(&req, stats.len())];
        encode_parts(&mut buf, meta, &req, &stats, reads);
        buf
    }

    fn run(ops: &[Op], workers: usize) -> Result<(), TestCaseError> {
        let engine = StrategyEngine::new(StrategyOptions::default()).unwrap();
        let mut slots = [slot(&engine), slot(&engine)];
        let backends = Backends::new();
        for w in 0..workers {
            let addr: SocketAddr = format!("127.0.0.1:{}", 4000 + w).parse().unwrap();
            let b = Arc::new(Backend::worker(w as u32, addr));
            b.ready();
            backends.add(b);
        }
        let specs = specs();
        backends.set_static(&specs[..2]);
        let mut guards: Vec<ConnectionGuard> = Vec::new();
        let mut clock = crate::clock::now_ms();
        let budget = engine.budget();
        for (step, op) in ops.iter().enumerate() {
            let list = backends.load();
            let pick = |i: usize| (!list.is_empty()).then(|| list[i % list.len()].clone());
            match *op {
                Op::Open(i) => guards.extend(pick(i).map(|b| b.open_connection())),
                Op::Close(k) => {
                    if !guards.is_empty() {
                        guards.swap_remove(k % guards.len());
                    }
                }
                Op::Connected(i, us) => pick(i).iter().for_each(|b| b.connected(us as u64)),
                Op::Failed(i) => pick(i).iter().for_each(|b| {
                    let _ = b.failed(3);
                }),
                Op::Responded(i) => pick(i).iter().for_each(|b| b.responded()),
                Op::Sampled(i, c, r) => pick(i).iter().for_each(|b| b.sampled(c, r as u64)),
                Op::Health(i, ok) => pick(i).iter().for_each(|b| {
                    let _ = b.health_checked(ok, 2, 60_000);
                }),
                Op::Drain(i) => pick(i).iter().for_each(|b| b.drain()),
                Op::Undrain(i) => pick(i).iter().for_each(|b| b.undrain()),
                Op::Exited(i) => pick(i).iter().for_each(|b| b.exited()),
                Op::Ready(i) => pick(i).iter().for_each(|b| b.ready()),
                Op::Statics(k) => drop(backends.set_static(&specs[..k])),
                Op::Tick(ms) => clock += ms as u64,
                Op::Raw(k) => {
                    let _ = slots[k].call_raw(&[7u8; 200], budget);
                }
                Op::Decide(k) => {
                    let meta = Meta {
                        sequence: step as u64,
                        random: step as u64 * 31,
                        now_ms: clock,
                    };
                    // Every other decision of instance 1 leaves the
                    // candidates out: the table must come back whole.
                    let reads = if k == 1 && step % 2 == 0 {
                        READS_ALL & !READS_CANDIDATES
                    } else {
                        READS_ALL
                    };
                    let slot = &mut slots[k];
                    if slot.reads() != reads {
                        slot.set_reads(reads);
                    }
                    let answer = slot.decide(&meta, &RequestHead::EMPTY, &*list, budget);
                    prop_assert_eq!(answer.ok(), Some(0));
                    let want = expected(&list, &meta, reads);
                    let got = slot.input(want.len());
                    prop_assert!(
                        got == want,
                        "step {}: {:?}: the guest's input differs from a full encode",
                        step,
                        op
                    );
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn incremental_table_matches_a_full_encode(
            ops in proptest::collection::vec(op(), 1..120),
            workers in 0..4usize,
        ) {
            run(&ops, workers)?;
        }
    }

    #[test]
    fn unchanged_backends_are_not_written_again() {
        let engine = StrategyEngine::new(StrategyOptions::default()).unwrap();
        let mut slot = slot(&engine);
        let backends = Backends::new();
        backends.set_static(&specs());
        let list = backends.load();
        let now = crate::clock::now_ms();
        let mut cache = TableCache::default();
        let mut out = vec![0u8; list.len() * CANDIDATE_LEN];
        assert_eq!(
            cache.write(&mut out, 64, &*list, now),
            6,
            "whole the first time"
        );
        assert_eq!(cache.write(&mut out, 64, &*list, now + 5), 0, "only ages");
        let _g = list[2].open_connection();
        assert_eq!(cache.write(&mut out, 64, &*list, now + 5), 1, "one record");
        assert_eq!(
            cache.write(&mut out, 128, &*list, now + 5),
            6,
            "another buffer"
        );
        // And through a real instance.
        let meta = Meta::default();
        let budget = engine.budget();
        slot.decide(&meta, &RequestHead::EMPTY, &*list, budget)
            .unwrap();
        assert_eq!(
            slot.input(64 * 7)[64..],
            expected(&list, &meta, READS_ALL)[64..64 * 7]
        );
    }
}
