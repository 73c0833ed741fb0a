//! ns per routing decision, native vs WebAssembly (fuel and epoch metering),
//! for every built-in at 4, 16, 64 and 256 candidates. Every variant includes
//! serializing a realistic request head (~300 bytes, 12 headers) and the
//! candidate table, and the WebAssembly ones the whole host path (pool slot,
//! budget, call, answer checks).
//!
//! Run: `cargo bench -p switchyard-benches --bench decision`, then
//! `python3 benches/report.py` for the table in the README.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use switchyard::strategy::{
    Metering, Strategy, StrategyEngine, StrategyOptions, StrategySpec, sample_candidates,
    sample_request,
};
use switchyard_benches::native_decide;
use switchyard_guest::Meta;
use switchyard_strategies::BuiltinKind;

const SIZES: [usize; 4] = [4, 16, 64, 256];

fn native<S: switchyard_guest::Strategy>(c: &mut Criterion, name: &str, mut s: S) {
    let mut group = c.benchmark_group(format!("{name}/native"));
    let req = sample_request();
    for n in SIZES {
        let cands = sample_candidates(n);
        let mut buf = Vec::new();
        let mut seq = 0u64;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                seq += 1;
                let meta = Meta {
                    sequence: seq,
                    random: seq.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    now_ms: 0,
                };
                black_box(native_decide(&mut s, &mut buf, &meta, &req, &cands))
            })
        });
    }
    group.finish();
}

fn wasm(c: &mut Criterion, name: &str, metering: Metering, label: &str) {
    let engine = StrategyEngine::new(StrategyOptions {
        metering,
        ..StrategyOptions::default()
    })
    .expect("engine");
    let s = Strategy::load(engine, &StrategySpec::builtin(name)).expect("load");
    let mut group = c.benchmark_group(format!("{name}/{label}"));
    let req = sample_request();
    for n in SIZES {
        let cands = sample_candidates(n);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| black_box(s.decide(black_box(&req), black_box(&cands))))
        });
    }
    group.finish();
    let fallbacks = s.status().fallbacks;
    match metering {
        // Fuel is deterministic: any fallback is a bug.
        Metering::Fuel => assert!(fallbacks.is_empty(), "{name}: {fallbacks:?}"),
        // An epoch deadline is wall-clock time, so a decision whose thread is
        // preempted past it is interrupted: count those, they are a finding.
        Metering::Epoch => {
            if !fallbacks.is_empty() {
                eprintln!("{name}/{label}: spurious epoch interruptions: {fallbacks:?}");
            }
        }
    }
}

/// The pool under contention: two threads deciding at once on one strategy
/// (ns per decision per thread; equal to the one-thread figure if the pool
/// never makes them wait).
fn contended(c: &mut Criterion) {
    let engine = StrategyEngine::new(StrategyOptions::default()).expect("engine");
    let s = Strategy::load(engine, &StrategySpec::builtin("least-connections")).expect("load");
    let req = sample_request();
    let cands = sample_candidates(16);
    let mut group = c.benchmark_group("least-connections/wasm-fuel-2-threads");
    group.bench_function(BenchmarkId::from_parameter(16), |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..2 {
                    let (s, req, cands) = (&s, &req, &cands);
                    scope.spawn(move || {
                        for _ in 0..iters {
                            black_box(s.decide(black_box(req), black_box(cands)));
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    group.finish();
}

fn decisions(c: &mut Criterion) {
    for kind in BuiltinKind::ALL {
        native(c, kind.name(), kind.instantiate());
    }
    for name in switchyard::strategy::builtin_names() {
        wasm(c, name, Metering::Fuel, "wasm-fuel");
        wasm(c, name, Metering::Epoch, "wasm-epoch");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1200))
        .sample_size(30);
    targets = decisions, contended
}
criterion_main!(benches);
