//! One column of `switchyard strategy bench`, alone, for a fixed number of
//! decisions: what `perf stat`, `perf record` and callgrind need to say where
//! one decision's cycles and instructions go, without the other columns
//! mixed in.
//!
//! Run: `cargo build --profile profiling -p switchyard-benches --example
//! decide_loop`, then for example `perf stat -e cycles,instructions
//! target/profiling/examples/decide_loop least-connections 16 1000000 kept`.
//! Columns: `kept` (the live backend list, one backend changed per
//! decision), `floor` (the empty module on the same number of bytes),
//! `native` (the built-in run natively on the encoded input).
//! A fifth argument is the strategy's configuration (`--strategy-config`),
//! for example `header:x-user-id` for consistent-hash.
//! Guest code shows in `perf report` as `[JIT]`.

use std::hint::black_box;

use switchyard::strategy::{
    Strategy, StrategyEngine, StrategyOptions, StrategySpec, sample_backends, sample_candidates,
    sample_request,
};
use switchyard_guest::encode::{as_declared, encode_parts};
use switchyard_guest::{Input, Meta, Strategy as _};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("least-connections", String::as_str);
    let n: usize = args.get(1).map_or(16, |s| s.parse().expect("a count"));
    let iters: u64 = args
        .get(2)
        .map_or(1_000_000, |s| s.parse().expect("a count"));
    let column = args.get(3).map_or("kept", String::as_str);
    let config = args.get(4).map_or(&[][..], |s| s.as_bytes());

    let engine = StrategyEngine::new(StrategyOptions::default()).expect("an engine");
    let spec = StrategySpec {
        config: config.to_vec(),
        ..StrategySpec::builtin(name)
    };
    let strategy = Strategy::load(engine.clone(), &spec).expect("a built-in");
    let request = sample_request();
    let candidates = sample_candidates(n);

    let (backends, open) = sample_backends(n);
    let list = backends.load();

    let meta = Meta::default();
    let report = strategy.status().report;
    let reads = report.reads;
    let mut input = report.input_for(&request, &candidates, &meta);
    let names = report.header_names.as_deref().map(str::as_bytes);

    match column {
        "kept" => {
            for turn in 0..iters as usize {
                list[turn % n].connected(100);
                black_box(strategy.decide(black_box(&request), &*list));
            }
        }
        "floor" => {
            let mut floor = engine.floor().expect("the floor module");
            for _ in 0..iters {
                black_box(floor.call(black_box(&input)));
            }
        }
        "native" => {
            let kind = switchyard_strategies::BuiltinKind::from_name(name).expect("a built-in");
            let mut s = kind.instantiate();
            s.configure(config).expect("the strategy's configuration");
            for _ in 0..iters {
                as_declared(black_box(&request), reads, names, |req, parts| {
                    encode_parts(&mut input, &meta, req, &candidates, parts)
                });
                if let Ok(parsed) = Input::parse(&input) {
                    black_box(s.decide(&parsed));
                }
            }
        }
        other => panic!("unknown column {other}: kept, floor or native"),
    }
    drop(open);
}
