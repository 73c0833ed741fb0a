//! Where a decision's time goes, natively: encoding the candidate table, the
//! request section and the header, and the decision itself, for
//! least-connections on the sample request (307 bytes, 12 headers).
//!
//! Run: `cargo run --release -p switchyard-benches --example breakdown`
//! (plain timing loops; numbers move with machine noise, run it twice).

use std::hint::black_box;
use std::time::Instant;

use switchyard::strategy::{sample_candidates, sample_request};
use switchyard_guest::encode::{
    encode, encode_candidates, encode_header, encode_request, encoded_len,
};
use switchyard_guest::{Input, Meta, Strategy};

fn per_iter(iters: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn main() {
    let req = sample_request();
    let meta = Meta::default();
    let mut no_lower = req;
    // The same head with header names already lower-case and no raw block,
    // to show what lower-casing and per-string copies cost.
    let lowered: Vec<(Vec<u8>, &[u8])> = req
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), *v))
        .collect();
    let lowered: Vec<(&[u8], &[u8])> = lowered.iter().map(|(n, v)| (&n[..], *v)).collect();
    no_lower.headers = &lowered;
    no_lower.raw = &[];
    println!("| N | candidates | request | header | total encode | decide (native) |");
    println!("|---|---|---|---|---|---|");
    for n in [4usize, 16, 64, 256] {
        let cands = sample_candidates(n);
        let mut buf = vec![0u8; encoded_len(&req, n).max(encoded_len(&no_lower, n))];
        let iters = 1_000_000;
        let c = per_iter(iters, || {
            encode_candidates(black_box(&mut buf[64..]), black_box(&cands))
        });
        let r = per_iter(iters, || {
            black_box(encode_request(
                black_box(&mut buf),
                64 + n * 64,
                black_box(&req),
            ));
        });
        let h = per_iter(iters, || {
            black_box(encode_header(black_box(&mut buf), n, 400, &meta));
        });
        let all = per_iter(iters, || {
            black_box(encode(
                black_box(&mut buf),
                &meta,
                black_box(&req),
                black_box(&cands),
            ));
        });
        let len = encode(&mut buf, &meta, &req, &cands);
        let mut s = switchyard_strategies::least_connections::LeastConnections;
        let d = per_iter(iters, || {
            let input = Input::parse(black_box(&buf[..len])).expect("valid input");
            black_box(s.decide(&input));
        });
        println!("| {n} | {c:.0} ns | {r:.0} ns | {h:.0} ns | {all:.0} ns | {d:.0} ns |");
    }
    let mut buf = vec![0u8; 4096];
    let r = per_iter(1_000_000, || {
        black_box(encode_request(
            black_box(&mut buf),
            64,
            black_box(&no_lower),
        ));
    });
    println!("\nrequest section with names already lower-case and no raw block: {r:.0} ns");
}
