//! Behaviour of every built-in, run natively on inputs encoded exactly as the
//! host encodes them. The same strategies run as WebAssembly in the host's
//! tests; here we check the algorithms.

use super::*;
use crate::consistent_hash::ConsistentHash;
use crate::least_connections::LeastConnections;
use crate::power_of_two::PowerOfTwo;
use crate::random::Random;
use crate::resource_aware::ResourceAware;
use crate::round_robin::RoundRobin;
use crate::weighted_round_robin::WeightedRoundRobin;
use switchyard_guest::encode::{encode, encoded_len};
use switchyard_guest::hash::mix64;
use switchyard_guest::{CandidateStats, FLAG_HEALTHY, Meta, Protocol, RequestHead};

struct Case<'a> {
    cands: Vec<CandidateStats>,
    req: RequestHead<'a>,
    seq: u64,
    rng: u64,
}

impl<'a> Case<'a> {
    fn new(n: u32) -> Self {
        Case {
            cands: (0..n).map(CandidateStats::healthy).collect(),
            req: RequestHead::EMPTY,
            seq: 0,
            rng: 0x1234_5678_9abc_def0,
        }
    }

    fn run<S: Strategy>(&mut self, s: &mut S) -> Option<usize> {
        let mut buf = vec![0u8; encoded_len(&self.req, self.cands.len())];
        self.rng = mix64(self.rng);
        let meta = Meta {
            sequence: self.seq,
            random: self.rng,
            now_ms: 0,
        };
        self.seq += 1;
        let len = encode(&mut buf, &meta, &self.req, &self.cands);
        let input = Input::parse(&buf[..len]).unwrap();
        s.decide(&input)
    }

    fn histogram<S: Strategy>(&mut self, s: &mut S, rounds: usize) -> Vec<usize> {
        let mut h = vec![0; self.cands.len()];
        for _ in 0..rounds {
            h[self.run(s).expect("a decision")] += 1;
        }
        h
    }
}

/// Every built-in, fresh, by name: the list comes from `builtins.list`, so a
/// new built-in is held to every test below without an edit here.
fn all_builtins() -> Vec<(&'static str, Builtin)> {
    BuiltinKind::ALL
        .iter()
        .map(|k| (k.name(), k.instantiate()))
        .collect()
}

#[test]
fn every_builtin_is_listed() {
    assert_eq!(BUILTINS.len(), BuiltinKind::ALL.len());
    for ((name, about), kind) in BUILTINS.iter().zip(BuiltinKind::ALL) {
        assert_eq!(*name, kind.name());
        assert!(!about.is_empty(), "{name} has no summary");
        assert_eq!(BuiltinKind::from_name(name), Some(*kind));
        assert_eq!(kind.instantiate().kind(), *kind);
    }
}

#[test]
fn every_builtin_skips_unhealthy_draining_and_zero_weight() {
    for (name, mut s) in all_builtins() {
        let mut case = Case::new(4);
        case.cands[0].flags = 0;
        case.cands[1].flags = FLAG_HEALTHY | switchyard_guest::FLAG_DRAINING;
        case.cands[2].weight = 0;
        for _ in 0..50 {
            assert_eq!(case.run(&mut s), Some(3), "{name}");
        }
    }
}

#[test]
fn every_builtin_skips_candidates_that_failed_for_this_request() {
    for (name, mut s) in all_builtins() {
        let mut case = Case::new(3);
        case.req.failed = &[0, 2];
        case.req.attempt = 2;
        for _ in 0..50 {
            assert_eq!(case.run(&mut s), Some(1), "{name}");
        }
    }
}

#[test]
fn every_builtin_has_no_opinion_when_nothing_is_eligible() {
    for (name, mut s) in all_builtins() {
        let mut case = Case::new(0);
        assert_eq!(case.run(&mut s), None, "{name}: empty");
        let mut case = Case::new(3);
        for c in &mut case.cands {
            c.flags = 0;
        }
        assert_eq!(case.run(&mut s), None, "{name}: all unhealthy");
    }
}

#[test]
fn round_robin_is_exact_and_skips_holes() {
    let mut case = Case::new(3);
    assert_eq!(case.histogram(&mut RoundRobin, 300), vec![100, 100, 100]);
    case.cands[1].flags = 0;
    assert_eq!(case.histogram(&mut RoundRobin, 300), vec![150, 0, 150]);
}

#[test]
fn smooth_weighted_round_robin_interleaves_by_weight() {
    let mut case = Case::new(3);
    case.cands[0].weight = 5;
    let mut s = WeightedRoundRobin::default();
    let picks: Vec<usize> = (0..7).map(|_| case.run(&mut s).unwrap()).collect();
    // NGINX's documented sequence for weights 5,1,1: a a b a c a a.
    assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(case.histogram(&mut s, 700), vec![500, 100, 100]);
}

#[test]
fn least_connections_picks_the_least_loaded_and_spreads_ties() {
    let mut case = Case::new(4);
    for (i, c) in case.cands.iter_mut().enumerate() {
        c.active = 10 - i as u32;
    }
    assert_eq!(case.run(&mut LeastConnections), Some(3));
    // Weighted: 8 connections on weight 4 is lighter than 3 on weight 1.
    case.cands[0].active = 8;
    case.cands[0].weight = 4;
    assert_eq!(case.run(&mut LeastConnections), Some(0));
    // Ties are not always broken toward index 0.
    let mut case = Case::new(4);
    let h = case.histogram(&mut LeastConnections, 400);
    assert!(h.iter().all(|&n| n > 40), "{h:?}");
}

#[test]
fn power_of_two_avoids_the_most_loaded() {
    let mut case = Case::new(8);
    case.cands[5].in_flight = 1000;
    let h = case.histogram(&mut PowerOfTwo, 4000);
    // The loaded backend wins only when both random choices land on it, which
    // the distinct-choice rule prevents.
    assert_eq!(h[5], 0, "{h:?}");
    assert!(
        h.iter().enumerate().all(|(i, &n)| i == 5 || n > 300),
        "{h:?}"
    );
}

#[test]
fn resource_aware_prefers_idle_backends_and_takes_weights() {
    let mut case = Case::new(3);
    case.cands[0].cpu_permille = 900;
    case.cands[1].cpu_permille = 100;
    case.cands[2].cpu_permille = 500;
    assert_eq!(case.run(&mut ResourceAware::default()), Some(1));
    // Memory only: the smallest RSS wins whatever the CPU.
    let mut s = ResourceAware::default();
    s.configure(b"cpu=0,mem=100,conn=0").unwrap();
    case.cands[0].rss_bytes = 10 << 20;
    case.cands[1].rss_bytes = 900 << 20;
    case.cands[2].rss_bytes = 500 << 20;
    assert_eq!(case.run(&mut s), Some(0));
    assert_eq!(ResourceAware::default().configure(b"gpu=1"), Err(3));
    assert_eq!(ResourceAware::default().configure(b"cpu=x"), Err(2));
    assert_eq!(
        ResourceAware::default().configure(b"cpu=0,mem=0,conn=0"),
        Err(4)
    );
}

fn hash_on_header(case: &mut Case<'_>, s: &mut ConsistentHash, user: &[u8]) -> usize {
    let headers = [(&b"x-user"[..], user)];
    let mut c = Case {
        cands: case.cands.clone(),
        req: RequestHead {
            protocol: Protocol::Http1,
            headers: &headers,
            ..RequestHead::EMPTY
        },
        seq: 0,
        rng: case.rng,
    };
    c.run(s).unwrap()
}

#[test]
fn consistent_hash_is_sticky_and_moves_few_keys() {
    let mut case = Case::new(5);
    let mut s = ConsistentHash::default();
    s.configure(b"header:X-User").unwrap();
    let keys: Vec<String> = (0..500).map(|k| format!("user-{k}")).collect();
    let before: Vec<usize> = keys
        .iter()
        .map(|k| hash_on_header(&mut case, &mut s, k.as_bytes()))
        .collect();
    // Sticky: the same key lands on the same backend every time.
    for (k, b) in keys.iter().zip(&before) {
        assert_eq!(hash_on_header(&mut case, &mut s, k.as_bytes()), *b);
    }
    // Spread: every backend gets a share.
    let mut h = [0; 5];
    before.iter().for_each(|&b| h[b] += 1);
    assert!(h.iter().all(|&n| n > 50), "{h:?}");
    // Removing backend 2 moves only the keys it held.
    case.cands[2].flags = 0;
    for (k, b) in keys.iter().zip(&before) {
        let after = hash_on_header(&mut case, &mut s, k.as_bytes());
        if *b != 2 {
            assert_eq!(after, *b, "key {k} moved without reason");
        } else {
            assert_ne!(after, 2);
        }
    }
}

#[test]
fn consistent_hash_bounds_load_and_reads_cookies() {
    let mut case = Case::new(4);
    let mut s = ConsistentHash::default();
    s.configure(b"header:x-user,load=125").unwrap();
    let home = hash_on_header(&mut case, &mut s, b"alice");
    case.cands[home].active = 100;
    let moved = hash_on_header(&mut case, &mut s, b"alice");
    assert_ne!(moved, home, "an overloaded home must shed the key");

    // Cookies: the backend is the one the cookie's value hashes to (the same
    // as that value in a header), whichever other cookies come with it.
    let mut by_cookie = ConsistentHash::default();
    by_cookie.configure(b"cookie:sid").unwrap();
    let mut by_header = ConsistentHash::default();
    by_header.configure(b"header:x-user").unwrap();
    let mut c = Case::new(8);
    let mut homes = std::collections::HashSet::new();
    for k in 0..64 {
        let sid = format!("session-{k}");
        let want = hash_on_header(&mut c, &mut by_header, sid.as_bytes());
        homes.insert(want);
        for other in ["a=1", "a=2; theme=dark", "sidx=zzz"] {
            let cookie = format!("{other}; sid={sid}; b=2");
            let headers = [(&b"cookie"[..], cookie.as_bytes())];
            let mut case = Case::new(8);
            case.req = RequestHead {
                headers: &headers,
                ..RequestHead::EMPTY
            };
            assert_eq!(case.run(&mut by_cookie), Some(want), "{cookie}");
        }
    }
    assert!(homes.len() >= 6, "sessions spread: {homes:?}");
    assert_eq!(ConsistentHash::default().configure(b"load=50"), Err(6));
    assert_eq!(ConsistentHash::default().configure(b"nonsense"), Err(3));
    assert_eq!(
        ConsistentHash::default().configure(b"header:x/user"),
        Err(7)
    );
}

#[test]
fn random_follows_weights() {
    let mut case = Case::new(2);
    case.cands[1].weight = 3;
    let h = case.histogram(&mut Random, 4000);
    assert!((800..1200).contains(&h[0]), "{h:?}");
}

/// The one-pass decision with kept id mixes answers exactly as the plain
/// two-pass rendezvous with bounded load does, on one instance reused over
/// changing candidate lists (ids moving between indexes, more candidates
/// than it keeps mixes for, unusable and overloaded ones).
#[test]
fn consistent_hash_matches_the_two_pass_reference() {
    use switchyard_guest::hash::hash_bytes;
    fn reference(cands: &[CandidateStats], key: &[u8], load_percent: u64) -> Option<usize> {
        let kh = hash_bytes(key);
        let usable: Vec<usize> = (0..cands.len())
            .filter(|&i| switchyard_guest::usable(cands[i].flags, cands[i].weight))
            .collect();
        if usable.is_empty() {
            return None;
        }
        let m = usable.len() as u64;
        let load: u64 = usable.iter().map(|&i| cands[i].active as u64).sum();
        let bound = ((load + 1) * load_percent).div_ceil(100 * m).max(1);
        let score = |i: usize| mix64(kh ^ mix64(cands[i].id as u64));
        let top = *usable.iter().max_by_key(|&&i| score(i)).unwrap();
        let under = usable
            .iter()
            .copied()
            .filter(|&i| (cands[i].active as u64) < bound)
            .max_by_key(|&i| score(i));
        Some(under.unwrap_or(top))
    }
    let mut s = ConsistentHash::default();
    s.configure(b"header:x-user,load=150").unwrap();
    let mut r = 0x5eed_u64;
    let mut next = |below: u64| {
        r = mix64(r);
        r % below
    };
    for round in 0..1500 {
        let n = 1 + next(if round % 10 == 0 { 90 } else { 20 }) as u32;
        let cands: Vec<CandidateStats> = (0..n)
            .map(|i| CandidateStats {
                active: next(8) as u32 * if next(6) == 0 { 20 } else { 1 },
                flags: if next(9) == 0 { 0 } else { FLAG_HEALTHY },
                weight: if next(15) == 0 { 0 } else { 1 },
                // Few distinct ids, so the same id shows up at other indexes.
                ..CandidateStats::healthy(if next(3) == 0 { i } else { next(40) as u32 })
            })
            .collect();
        // Distinct ids, as the host's are.
        let mut seen = std::collections::HashSet::new();
        let cands: Vec<CandidateStats> = cands.into_iter().filter(|c| seen.insert(c.id)).collect();
        let user = format!("user-{}", next(1000));
        let headers = [(&b"x-user"[..], user.as_bytes())];
        let mut case = Case::new(0);
        case.cands = cands.clone();
        case.req = RequestHead {
            protocol: Protocol::Http1,
            headers: &headers,
            ..RequestHead::EMPTY
        };
        let got = case.run(&mut s);
        assert_eq!(
            got,
            reference(&cands, user.as_bytes(), 150),
            "round {round}, {user}"
        );
    }
}
