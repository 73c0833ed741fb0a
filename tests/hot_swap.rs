//! Hot swap: under concurrent decisions no decision fails or is lost, a broken
//! module is rejected while the old one keeps answering, and the file watcher
//! picks up both in-place writes and atomic renames.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchyard::strategy::{CandidateStats, RequestHead, StrategySource, StrategySpec, reload};
mod support;
use support::{TempDir, constant, load, wat_spec};

fn cands(n: u32) -> Vec<CandidateStats> {
    (0..n).map(CandidateStats::healthy).collect()
}

#[test]
fn swapping_under_concurrent_decisions_loses_nothing() {
    let s = Arc::new(load(&StrategySpec::builtin("round-robin")));
    let stop = Arc::new(AtomicBool::new(false));
    let decided = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (s, stop, decided) = (s.clone(), stop.clone(), decided.clone());
            std::thread::spawn(move || {
                let c = cands(8);
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let d = s.decide(&RequestHead::EMPTY, &c);
                    assert_eq!(d.fallback, None, "a decision fell back during a swap");
                    assert!(d.index.unwrap() < 8);
                    decided.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let names = ["least-connections", "power-of-two", "random", "round-robin"];
    for round in 0..12 {
        let spec = StrategySpec::builtin(names[round % names.len()]);
        s.replace(&spec).expect("a good module swaps in");
        // A broken module pushed mid-run is rejected; the old one keeps going.
        assert!(s.replace(&wat_spec("loop", "always")).is_err());
        assert_eq!(s.spec(), spec);
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("no decision thread panicked");
    }
    assert!(decided.load(Ordering::Relaxed) > 100);
    let status = s.status();
    assert!(status.fallbacks.is_empty(), "{:?}", status.fallbacks);
    assert_eq!(status.generation, 13);
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn file_watcher_swaps_on_rename_and_in_place_write_and_rejects_broken() {
    let dir = TempDir::new("watch");
    let path = dir.0.join("strategy.wat");
    std::fs::write(&path, constant(0)).unwrap();
    let s = Arc::new(load(&StrategySpec {
        source: StrategySource::File(path.clone()),
        config: vec![],
    }));
    let outcomes = Arc::new(std::sync::Mutex::new(Vec::<bool>::new()));
    let seen = outcomes.clone();
    let _guard =
        reload::watch(s.clone(), move |_, r| seen.lock().unwrap().push(r.is_ok())).expect("watch");
    let c = cands(3);
    let answer = || s.decide(&RequestHead::EMPTY, &c).index;
    assert_eq!(answer(), Some(0));

    // Atomic rename into place.
    let tmp = dir.0.join("strategy.wat.tmp");
    std::fs::write(&tmp, constant(1)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    wait_for("rename to swap", || answer() == Some(1));

    // In-place write.
    std::fs::write(&path, constant(2)).unwrap();
    wait_for("in-place write to swap", || answer() == Some(2));

    // A broken module is rejected and the old one keeps serving.
    std::fs::write(&path, "(module (this is not wat").unwrap();
    wait_for("rejection", || {
        outcomes.lock().unwrap().last() == Some(&false)
    });
    for _ in 0..10 {
        assert_eq!(answer(), Some(2));
    }
}
