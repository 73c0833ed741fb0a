//! The example strategy in `examples/canary-strategy` is built for
//! `wasm32-unknown-unknown` exactly as its README line says and routes as
//! documented, and `switchyard strategy check` accepts it.

mod support;

use switchyard::strategy::{CandidateStats, RequestHead, StrategySource, StrategySpec};

#[test]
fn the_rust_example_strategy_builds_checks_and_routes() {
    let wasm = support::build_canary();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["strategy", "check"])
        .arg(&wasm)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let s = support::load(&StrategySpec {
        source: StrategySource::File(wasm),
        config: vec![],
    });
    let mut cands: Vec<CandidateStats> = (0..4).map(CandidateStats::healthy).collect();
    cands[0].active = 9;
    cands[1].active = 1;
    cands[2].active = 5;
    let canary = [(&b"X-Canary"[..], &b"1"[..])];
    let d = s.decide(
        &RequestHead {
            headers: &canary,
            ..RequestHead::EMPTY
        },
        &cands,
    );
    assert_eq!((d.index, d.fallback), (Some(3), None));
    let d = s.decide(&RequestHead::EMPTY, &cands);
    assert_eq!((d.index, d.fallback), (Some(1), None));
    let cookie = [(&b"cookie"[..], &b"a=b; canary=1"[..])];
    let d = s.decide(
        &RequestHead {
            headers: &cookie,
            ..RequestHead::EMPTY
        },
        &cands,
    );
    assert_eq!(d.index, Some(3));
}
