//! `switchyard strategy bench`: what one decision costs, beside the floor
//! (an empty module called with the same budget on the same number of input
//! bytes) and the same built-in run natively, all measured in this run, so
//! the ratios hold on whatever machine it runs on.
//!
//! The decision is made as the balancer makes it: over a live backend list
//! of which one backend changed since the last decision, so each instance
//! rewrites one record of the table it keeps. The "whole table" column reads
//! and writes every record every time instead, for comparison.
//!
//! Each figure is the median of 31 batches of decisions (after a warm-up),
//! with the 10th and 90th percentile batch beside it: the spread says how
//! far to trust the median on a busy machine.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use switchyard::strategy::{
    Strategy, StrategyEngine, sample_backends, sample_candidates, sample_request,
};
use switchyard_guest::encode::{as_declared, encode_parts};
use switchyard_guest::{Input, Meta, RequestHead, Strategy as _};

use switchyard::backends::Backends;

use crate::flags::BenchArgs;

const BATCHES: usize = 31;

/// Nanoseconds per call of `f`, as (median, p10, p90) over batches.
fn measure(mut f: impl FnMut()) -> (f64, f64, f64) {
    // A batch long enough to dwarf the clock read, short enough to give
    // the scheduler's noise several chances to miss.
    let started = Instant::now();
    let mut warm = 0u64;
    while started.elapsed().as_millis() < 50 {
        f();
        warm += 1;
    }
    let per_batch = (warm / 25).clamp(100, 200_000) as usize;
    let mut ns: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            t.elapsed().as_nanos() as f64 / per_batch as f64
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    (ns[BATCHES / 2], ns[BATCHES / 10], ns[BATCHES * 9 / 10])
}

fn cell((median, lo, hi): (f64, f64, f64)) -> String {
    format!("{median:.0} ({lo:.0}-{hi:.0})")
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let cfg = super::strategy::strategy_config(&args.check)?;
    let engine = StrategyEngine::new(cfg.engine.clone()).context("starting the strategy engine")?;
    let spec = cfg.strategy.clone();
    let strategy = match Strategy::load(engine.clone(), &spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rejected: {}: {e}", spec.source);
            return Ok(ExitCode::FAILURE);
        }
    };
    let raw_request = match &args.request {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    let parsed;
    let mut pairs = vec![(&b""[..], &b""[..]); switchyard::sniff::http1::MAX_HEADERS];
    let request: RequestHead<'_> = match &raw_request {
        None => sample_request(),
        Some(raw) => {
            // A file written by hand may end lines in LF alone or lack the
            // blank line; httparse takes both forms of line end.
            parsed = match switchyard::sniff::http1::parse(raw, raw.len() + 4) {
                switchyard::sniff::http1::Parsed::Complete(h) => h,
                other => anyhow::bail!(
                    "{}: not a complete HTTP/1 request head ({other:?})",
                    args.request.as_ref().expect("given").display()
                ),
            };
            RequestHead {
                client: Some("127.0.0.1:50000".parse().expect("literal address")),
                ..parsed.request(raw, &mut pairs)
            }
        }
    };
    let report = strategy.status().report;
    let reads = report.reads;
    let native_kind = match &spec.source {
        switchyard::strategy::StrategySource::Builtin(b) => {
            switchyard_strategies::BuiltinKind::from_name(b)
        }
        _ => None,
    };
    let mut floor = engine.floor().context("loading the floor module")?;
    let threads = args.threads.max(1);
    println!(
        "{}: reads {}{}; fuel budget {}; {} thread{}",
        report.name,
        report.reads_text(),
        if report.interface.declares_reads {
            " (declared)"
        } else {
            ""
        },
        cfg.engine.fuel,
        threads,
        if threads == 1 { "" } else { "s" },
    );
    if let Some(list) = report.header_names.as_deref()
        && reads & switchyard_guest::READS_HEADERS != 0
        && !request
            .headers
            .iter()
            .any(|(n, _)| switchyard_guest::encode::is_named(list.as_bytes(), n, false))
    {
        println!(
            "note: the request carries none of the headers the strategy lists ({}), so this measures its path without them; give one with --request FILE.http",
            list.replace(',', ", ")
        );
    }
    println!("ns per decision: median (10th-90th percentile batch)");
    println!();
    println!(
        "| candidates | strategy ns | fuel | input bytes | floor ns | vs floor | whole table ns | native ns |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &n in &args.candidates {
        let candidates = sample_candidates(n.max(1));
        let meta = Meta::default();
        // What the module is sent: the parts it reads, its headers only.
        let input = report.input_for(&request, &candidates, &meta);
        let bytes = input.len();
        // The balancer's own backend list, as it decides: each instance
        // keeps its candidate table and rewrites only the records that
        // changed, here one per decision (a connect's latency sample).
        let (backends, _open) = sample_backends(n.max(1));
        let list = backends.load();
        let decide = |turn: &mut usize| {
            *turn = turn.wrapping_add(1);
            list[*turn % list.len()].connected(100);
            black_box(strategy.decide(black_box(&request), &*list));
        };
        let wasm = if threads == 1 {
            let mut turn = 0;
            measure(|| decide(&mut turn))
        } else {
            // Each thread measures while the others decide too; the row
            // shows the median thread.
            let mut per: Vec<(f64, f64, f64)> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|k| {
                        s.spawn(move || {
                            let mut turn = k;
                            measure(|| decide(&mut turn))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a bench thread"))
                    .collect()
            });
            per.sort_by(|a, b| a.0.total_cmp(&b.0));
            per[per.len() / 2]
        };
        // The same with every record read from the backends and written
        // again on every decision (what the balancer did before instances
        // kept their tables).
        let mut snapshot = Vec::new();
        let mut turn = 0usize;
        let whole = measure(|| {
            turn = turn.wrapping_add(1);
            list[turn % list.len()].connected(100);
            Backends::snapshot(&list, &mut snapshot);
            black_box(strategy.decide(black_box(&request), &snapshot[..]));
        });
        // The second decision's fuel: a strategy may keep work between
        // decisions (consistent-hash keeps its id mixes), and the first on
        // these candidates pays for it.
        let _ = strategy.fuel_for(&request, &candidates);
        let fuel = strategy
            .fuel_for(&request, &candidates)
            .map_or("-".to_string(), |f| f.to_string());
        let floor_ns = measure(|| {
            black_box(floor.call(black_box(&input)));
        });
        let native = native_kind.map(|kind| {
            let mut s = kind.instantiate();
            let _ = s.configure(&spec.config);
            let mut buf = vec![0u8; bytes];
            let names = report.header_names.as_deref().map(str::as_bytes);
            measure(|| {
                // The same work the host does for the module, then the
                // decision natively: encode, parse, decide.
                as_declared(black_box(&request), reads, names, |req, parts| {
                    encode_parts(&mut buf, &meta, req, &candidates, parts)
                });
                if let Ok(input) = Input::parse(&buf) {
                    black_box(s.decide(&input));
                }
            })
        });
        println!(
            "| {n} | {} | {fuel} | {bytes} | {} | {:.1}x | {} | {} |",
            cell(wasm),
            cell(floor_ns),
            wasm.0 / floor_ns.0,
            cell(whole),
            native.map_or("-".to_string(), cell),
        );
    }
    Ok(ExitCode::SUCCESS)
}
