//! Hostile and broken modules against the real engine: each ends in a fallback
//! or a rejection with the right reason, and the engine keeps deciding.

use switchyard::strategy::{
    CandidateStats, FallbackReason, LoadError, Protocol, RequestHead, Strategy, StrategyEngine,
    StrategyOptions, StrategySpec,
};
mod support;
use support::{engine, load, wat_spec};

fn cands(n: u32) -> Vec<CandidateStats> {
    (0..n).map(CandidateStats::healthy).collect()
}

/// Loads a fixture that behaves except with 5 candidates, checks that 5
/// candidates give a fallback for `reason`, and that the engine then goes on
/// answering with the module itself.
fn misbehaves_live(name: &str, reason: FallbackReason) {
    let s = load(&wat_spec(name, ""));
    for round in 0..3 {
        let d = s.decide(&RequestHead::EMPTY, &cands(5));
        assert_eq!(d.fallback, Some(reason), "{name} round {round}");
        let i = d.index.expect("the fallback still routes");
        assert!(i < 5);
        let ok = s.decide(&RequestHead::EMPTY, &cands(4));
        assert_eq!(ok.fallback, None, "{name}: the engine keeps deciding");
        assert_eq!(ok.index, Some(0));
    }
    let status = s.status();
    assert_eq!(status.fallbacks, vec![(reason, 3)], "{name}");
    assert_eq!(status.wasm_decisions, 3);
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    misbehaves_live("loop", FallbackReason::OutOfFuel);
}

#[test]
fn unreachable_traps() {
    misbehaves_live("unreachable", FallbackReason::Trap);
}

#[test]
fn out_of_bounds_read_traps() {
    misbehaves_live("oob_read", FallbackReason::Trap);
}

#[test]
fn memory_grow_bomb_hits_the_cap() {
    misbehaves_live("grow_bomb", FallbackReason::MemoryCap);
}

#[test]
fn out_of_range_index_is_refused() {
    misbehaves_live("out_of_range", FallbackReason::BadIndex);
}

#[test]
fn negative_index_means_no_opinion() {
    misbehaves_live("negative", FallbackReason::NoOpinion);
}

fn rejected(spec: &StrategySpec) -> LoadError {
    match Strategy::load(engine(), spec) {
        Ok(_) => panic!("{:?} should be rejected", spec.source),
        Err(e) => e,
    }
}

#[test]
fn always_misbehaving_modules_are_rejected_at_load_with_the_reason() {
    for (name, want) in [
        ("loop", "ran out of fuel"),
        ("unreachable", "unreachable"),
        ("oob_read", "out of bounds"),
        ("grow_bomb", "memory cap"),
        ("out_of_range", "out of range"),
        ("negative", "no opinion"),
    ] {
        let e = rejected(&wat_spec(name, "always"));
        assert!(matches!(e, LoadError::DryRun { .. }), "{name}: {e}");
        assert!(e.to_string().contains(want), "{name}: {e}");
    }
}

#[test]
fn interface_errors_name_the_problem() {
    let e = rejected(&wat_spec("missing_export", ""));
    assert!(e.to_string().contains("switchyard_decide"), "{e}");
    let e = rejected(&wat_spec("wrong_abi", ""));
    assert!(matches!(e, LoadError::AbiVersion(2)), "{e}");
    let e = rejected(&wat_spec("forbidden_import", ""));
    assert!(e.to_string().contains("env.open_socket"), "{e}");
    let e = rejected(&StrategySpec {
        source: switchyard::strategy::StrategySource::Bytes {
            name: "garbage".into(),
            bytes: b"\0asm\x01\0\0\0garbage".to_vec(),
        },
        config: vec![],
    });
    assert!(matches!(e, LoadError::Compile(_)), "{e}");
    let e = rejected(&StrategySpec::builtin("no-such-thing"));
    assert!(matches!(e, LoadError::UnknownBuiltin(_)), "{e}");
}

#[test]
fn bad_configuration_is_rejected_by_init() {
    let e = rejected(&StrategySpec {
        source: "builtin:consistent-hash".parse().unwrap(),
        config: b"nonsense".to_vec(),
    });
    assert!(matches!(e, LoadError::InitRejected(3, _)), "{e}");
    // The module's own reason comes with the code.
    assert!(
        e.to_string().ends_with(
            "code 3: unknown key; expected header:NAME, cookie:NAME, client-ip, sni, path, authority or load=N"
        ),
        "{e}"
    );
    let e = rejected(&StrategySpec {
        source: "builtin:resource-aware".parse().unwrap(),
        config: b"cpu=0,mem=0,conn=0".to_vec(),
    });
    assert!(
        e.to_string()
            .ends_with("code 4: the weights cpu, mem and conn are all 0"),
        "{e}"
    );
    // A strategy that takes no configuration refuses one instead of
    // ignoring it.
    let e = rejected(&StrategySpec {
        source: "builtin:round-robin".parse().unwrap(),
        config: b"nonsense".to_vec(),
    });
    assert!(
        e.to_string()
            .ends_with("code 1: this strategy takes no configuration"),
        "{e}"
    );
}

#[test]
fn huge_input_is_handled() {
    // 1,024 candidates and a 64 KiB head: decided by the module itself.
    let s = load(&wat_spec("first_eligible", ""));
    let big = vec![b'x'; 64 * 1024];
    let headers: Vec<(&[u8], &[u8])> = vec![(b"x-big", &big[..]), (b"Host", b"example.com")];
    let mut c = cands(1024);
    for x in c.iter_mut().take(700) {
        x.flags = 0;
    }
    let failed = [700u32, 701];
    let req = RequestHead {
        protocol: Protocol::Http1,
        method: b"GET",
        path: b"/",
        headers: &headers,
        failed: &failed,
        attempt: 2,
        ..RequestHead::EMPTY
    };
    let d = s.decide(&req, &c);
    assert_eq!(d.fallback, None);
    assert_eq!(d.index, Some(702), "first healthy, not failed");
    // Past the host's input cap (4 MiB): a fallback, never a stall.
    let c = cands(70_000);
    let d = s.decide(&RequestHead::EMPTY, &c);
    assert_eq!(d.fallback, Some(FallbackReason::InputTooLarge));
    assert!(d.index.is_some());
}

#[test]
fn no_candidates_and_none_healthy_fall_back() {
    let s = load(&StrategySpec::builtin("round-robin"));
    let d = s.decide(&RequestHead::EMPTY, &[]);
    assert_eq!(
        d,
        switchyard::strategy::Decision {
            index: None,
            fallback: Some(FallbackReason::NoCandidates)
        }
    );
    let mut c = cands(3);
    c.iter_mut().for_each(|c| c.flags = 0);
    let d = s.decide(&RequestHead::EMPTY, &c);
    assert_eq!(d.fallback, Some(FallbackReason::NoHealthy));
    assert!(d.index.is_some(), "fails open rather than refusing");
}

#[test]
fn a_module_that_keeps_failing_is_skipped_and_marked_degraded() {
    let s = load(&wat_spec("unreachable", ""));
    let mut reasons = Vec::new();
    for _ in 0..20 {
        reasons.push(s.decide(&RequestHead::EMPTY, &cands(5)).fallback.unwrap());
    }
    assert_eq!(reasons[..16], [FallbackReason::Trap; 16]);
    assert_eq!(reasons[16..], [FallbackReason::CircuitOpen; 4]);
    assert!(s.status().degraded);
}

#[test]
fn every_builtin_loads_precompiled_and_decides() {
    let engine = engine();
    for name in switchyard::strategy::builtin_names() {
        let s = Strategy::load(engine.clone(), &StrategySpec::builtin(name)).unwrap();
        let status = s.status();
        assert!(
            status.report.artifact.is_precompiled(),
            "{name} was compiled at load"
        );
        for n in [1u32, 2, 16, 256] {
            let d = s.decide(&RequestHead::EMPTY, &cands(n));
            assert_eq!(d.fallback, None, "{name} with {n}");
            assert!(d.index.unwrap() < n as usize);
        }
    }
}

#[test]
fn round_robin_is_exact_across_threads() {
    let s = std::sync::Arc::new(load(&StrategySpec::builtin("round-robin")));
    let c = cands(4);
    let counts: Vec<[usize; 4]> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let (s, c) = (s.clone(), c.clone());
                scope.spawn(move || {
                    let mut h = [0usize; 4];
                    for _ in 0..1000 {
                        h[s.decide(&RequestHead::EMPTY, &c).index.unwrap()] += 1;
                    }
                    h
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = [0; 4];
    for h in counts {
        for i in 0..4 {
            total[i] += h[i];
        }
    }
    assert_eq!(total, [1000; 4]);
}

#[test]
fn tight_fuel_budget_rejects_heavy_strategies() {
    let engine = StrategyEngine::new(StrategyOptions {
        fuel: 300,
        ..StrategyOptions::default()
    })
    .unwrap();
    let e = Strategy::load(engine, &StrategySpec::builtin("resource-aware")).unwrap_err();
    assert!(e.to_string().contains("ran out of fuel"), "{e}");
}

#[test]
fn wasi_modules_log_instead_of_blocking_the_runtime() {
    // Decisions run on tokio runtime threads; wasmtime-wasi's own fd_write
    // would block on a runtime there and panic. Ours sends the guest's
    // stdout to the host log, at most 20 lines a second.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let log = support::capture_logs(|| {
        rt.block_on(async {
            let s = load(&wat_spec("wasi_hello", ""));
            for _ in 0..30 {
                let d = s.decide(&RequestHead::EMPTY, &cands(3));
                assert_eq!(d.fallback, None);
                assert!(d.index.unwrap() < 3);
            }
        })
    });
    let lines = log
        .lines()
        .filter(|l| l.contains("hello from wasi") && l.contains("switchyard::guest"))
        .count();
    // The dry run prints too; 30 decisions in well under a second stay
    // within the first second's 20 lines (two seconds at most on a slow run).
    assert!((20..=40).contains(&lines), "{lines} guest lines:\n{log}");
    assert!(
        log.contains("strategy=") && log.contains("wasi_hello.wat"),
        "{log}"
    );
}

#[test]
fn fallback_logs_carry_the_trap_message() {
    let s = load(&wat_spec("unreachable", ""));
    let log = support::capture_logs(|| {
        let d = s.decide(&RequestHead::EMPTY, &cands(5));
        assert_eq!(d.fallback, Some(FallbackReason::Trap));
    });
    assert!(
        log.contains("reason=\"trap\"") || log.contains("reason=trap"),
        "{log}"
    );
    assert!(
        log.contains("unreachable"),
        "the trap message is logged: {log}"
    );
}

#[test]
fn a_skipped_module_is_tried_again_after_a_second() {
    // unreachable.wat traps with 5 candidates and answers 0 with 4.
    let s = load(&wat_spec("unreachable", ""));
    for _ in 0..16 {
        assert_eq!(
            s.decide(&RequestHead::EMPTY, &cands(5)).fallback,
            Some(FallbackReason::Trap)
        );
    }
    // Open: even a request the module would answer well is not sent to it.
    let d = s.decide(&RequestHead::EMPTY, &cands(4));
    assert_eq!(d.fallback, Some(FallbackReason::CircuitOpen));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let d = s.decide(&RequestHead::EMPTY, &cands(4));
    assert_eq!((d.index, d.fallback), (Some(0), None), "tried again");
    assert!(!s.status().degraded);
}

#[test]
fn fallbacks_are_logged_at_most_once_a_second_per_reason() {
    let s = load(&wat_spec("unreachable", ""));
    // The limiter's windows are the process clock's whole seconds, so the
    // bound is the windows the loop touched, not its length rounded up.
    let second = || switchyard::clock::origin().elapsed().as_secs();
    let first = second();
    let log = support::capture_logs(|| {
        // Fewer than the 16 in a row that open the circuit, again and again.
        for _ in 0..10 {
            for _ in 0..12 {
                s.decide(&RequestHead::EMPTY, &cands(5));
            }
            s.decide(&RequestHead::EMPTY, &cands(4));
        }
    });
    let seconds = second() - first + 1;
    let lines = log
        .lines()
        .filter(|l| l.contains("strategy fell back"))
        .count() as u64;
    assert!(
        lines >= 1 && lines <= seconds,
        "{lines} lines in {seconds} s:\n{log}"
    );
    assert_eq!(s.status().fallbacks, vec![(FallbackReason::Trap, 120)]);
}

#[test]
fn a_declared_read_set_is_checked_at_load_and_honoured() {
    // Answers from the headers, the method and the SNI, but declares only
    // the candidates and the request's fixed fields (1 | 2).
    let e = rejected(&wat_spec("reads", "\u{3}a"));
    assert!(matches!(e, LoadError::UndeclaredRead { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("target, headers, tls"),
        "each part named: {msg}"
    );
    // Declaring the headers too (1 | 2 | 8) still leaves two out.
    let msg = rejected(&wat_spec("reads", "\u{b}a")).to_string();
    assert!(msg.contains("leaves out target, tls"), "{msg}");
    // Everything it reads (all but the request's fixed fields, 29) loads.
    load(&wat_spec("reads", "\u{1d}a"));
    // A module that reads only the candidates gets an empty request section.
    let s = load(&wat_spec("reads", "\u{1}l"));
    let log = support::capture_logs(|| {
        let d = s.decide(&switchyard::strategy::sample_request(), &cands(4));
        assert_eq!(d.index, Some(0));
    });
    assert!(log.contains("request empty"), "{log}");
    assert!(!log.contains("request seen"), "{log}");
    let s = load(&wat_spec("reads", "\u{1f}l"));
    let log = support::capture_logs(|| {
        s.decide(&switchyard::strategy::sample_request(), &cands(4));
    });
    assert!(log.contains("request seen"), "{log}");
}

#[test]
fn a_header_list_is_checked_at_load_and_honoured() {
    // Reads the candidates and the headers (1 | 8) and answers 0 whatever
    // they hold: listing one header it never looks at is true. It sees
    // headers only when the request has the one listed.
    let s = load(&wat_spec("reads", "\u{9}lx-none"));
    assert_eq!(
        s.status().report.header_names.as_deref(),
        Some("x-none"),
        "the list as the host keeps it"
    );
    let seen = |s: &switchyard::strategy::Strategy| {
        support::capture_logs(|| {
            s.decide(&switchyard::strategy::sample_request(), &cands(4));
        })
    };
    let log = seen(&s);
    assert!(log.contains("request empty"), "{log}");
    // Listed in another case and with spaces: the sample has X-User-Id.
    let s = load(&wat_spec("reads", "\u{9}l X-USER-ID , x-none"));
    assert_eq!(
        s.status().report.header_names.as_deref(),
        Some("x-user-id,x-none")
    );
    let log = seen(&s);
    assert!(log.contains("request seen"), "{log}");
    // Answers from the header count (and method and SNI, which it declares
    // it does not read: 1 | 2 | 4 | 8 | 16 = 31) but lists one header: the
    // headers it left out that change the answer are named.
    let e = rejected(&wat_spec("reads", "\u{1f}ax-none"));
    assert!(matches!(e, LoadError::UnlistedHeader { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("lists x-none") && msg.contains("x-user-id") && msg.contains("cookie"),
        "{msg}"
    );
    // A list that names no header while the module reads headers can only
    // be a mistake: refused, saying both ways out.
    let msg = rejected(&wat_spec("reads", "\u{9}l,")).to_string();
    assert!(
        msg.contains("lists no header, but the module reads headers"),
        "{msg}"
    );
    // Bytes that are no header name are refused with the reason.
    let msg = rejected(&wat_spec("reads", "\u{9}lx-a,x b")).to_string();
    assert!(msg.contains("\"x b\" is not a header name"), "{msg}");
}

#[test]
fn consistent_hash_on_a_header_gets_that_header_alone() {
    use switchyard::strategy::StrategySpec;
    use switchyard_guest::Strategy as _;
    for (config, names) in [("header:X-User-Id", "x-user-id"), ("cookie:sid", "cookie")] {
        let s = load(&StrategySpec {
            source: "builtin:consistent-hash".parse().unwrap(),
            config: config.as_bytes().to_vec(),
        });
        assert_eq!(s.status().report.header_names.as_deref(), Some(names));
        assert!(
            s.status()
                .report
                .reads_text()
                .contains(&format!("headers ({names})"))
        );
        // The same answers as a native run given every header.
        let c = switchyard::strategy::sample_candidates(16);
        let req = switchyard::strategy::sample_request();
        let mut native = switchyard_strategies::BuiltinKind::ConsistentHash.instantiate();
        native.configure(config.as_bytes()).unwrap();
        let mut buf = vec![0u8; switchyard_guest::encode::encoded_len(&req, c.len())];
        let len = switchyard_guest::encode::encode(&mut buf, &Default::default(), &req, &c);
        let native = native.decide(&switchyard_guest::Input::parse(&buf[..len]).unwrap());
        assert_eq!(s.decide(&req, &c).index, native, "{config}");
    }
}

#[test]
fn every_builtin_declares_what_it_reads_and_passes_the_check() {
    use switchyard::strategy::StrategySpec;
    use switchyard_guest::{
        READS_CANDIDATES, READS_HEADERS, READS_REQUEST, READS_TARGET, READS_TLS,
    };
    let base = READS_CANDIDATES | READS_REQUEST;
    for name in switchyard::strategy::builtin_names() {
        let s = load(&StrategySpec::builtin(name));
        // Only round-robin reads the shared sequence.
        let want = if name == "round-robin" {
            base | switchyard_guest::READS_SEQUENCE
        } else {
            base
        };
        assert_eq!(s.status().report.reads, want, "{name}");
    }
    for (config, extra) in [
        ("header:x-user-id", READS_HEADERS),
        ("cookie:sid", READS_HEADERS),
        ("sni", READS_TLS),
        ("path", READS_TARGET),
        ("host", READS_TARGET),
        ("client-ip", 0),
    ] {
        let s = load(&StrategySpec {
            source: "builtin:consistent-hash".parse().unwrap(),
            config: config.as_bytes().to_vec(),
        });
        assert_eq!(s.status().report.reads, base | extra, "{config}");
    }
}

#[test]
fn native_builtins_decide_as_their_webassembly_twins() {
    use switchyard::strategy::StrategySpec;
    let req = switchyard::strategy::sample_request();
    for (name, config) in [
        ("round-robin", ""),
        ("consistent-hash", "header:x-user-id"),
        ("least-connections", ""),
    ] {
        let spec = |prefix: &str| StrategySpec {
            source: format!("{prefix}:{name}").parse().unwrap(),
            config: config.as_bytes().to_vec(),
        };
        let wasm = load(&spec("builtin"));
        let native = load(&spec("native"));
        let c = switchyard::strategy::sample_candidates(8);
        let a: Vec<_> = (0..8).map(|_| wasm.decide(&req, &c)).collect();
        let b: Vec<_> = (0..8).map(|_| native.decide(&req, &c)).collect();
        assert!(a.iter().chain(&b).all(|d| d.fallback.is_none()), "{name}");
        if name != "least-connections" {
            // Deterministic ones agree decision by decision (ties in
            // least-connections are broken at random).
            let ia: Vec<_> = a.iter().map(|d| d.index).collect();
            let ib: Vec<_> = b.iter().map(|d| d.index).collect();
            assert_eq!(ia, ib, "{name}");
        }
    }
}
