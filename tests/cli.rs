//! The `switchyard` command line: names and exit codes users script against.

mod support;

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env_remove("HOST")
        .env_remove("PORT")
        .output()
        .expect("run switchyard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn strategy_list_names_every_builtin() {
    let (code, out, _) = run(&["strategy", "list"]);
    assert_eq!(code, 0);
    for name in [
        "round-robin",
        "weighted-round-robin",
        "least-connections",
        "power-of-two",
        "resource-aware",
        "consistent-hash",
        "random",
    ] {
        assert!(
            out.contains(&format!("builtin:{name} ")),
            "{name} missing:\n{out}"
        );
    }
}

#[test]
fn strategy_check_reports_fuel_and_rejects_with_reasons() {
    let (code, out, err) = run(&["strategy", "check", "builtin:least-connections"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("precompiled"), "{out}");
    assert!(out.contains("fuel per decision at   4 candidates"), "{out}");
    assert!(out.contains("fuel per decision at  64 candidates"), "{out}");
    let wat = |n: &str| support::wat(n).to_str().unwrap().to_string();
    // Bytes that are neither binary WebAssembly nor text.
    let dir = support::TempDir::new("check");
    let garbage = dir.0.join("garbage.wasm");
    std::fs::write(&garbage, [0xff, 0xfe, 0x00, 0x9c, 0x01, 0x80, 0x7f]).unwrap();
    let empty = dir.0.join("empty.wasm");
    std::fs::write(&empty, b"").unwrap();
    let (garbage, empty) = (
        garbage.to_str().unwrap().to_string(),
        empty.to_str().unwrap().to_string(),
    );
    for (file, config, reason) in [
        (
            garbage,
            None,
            "neither a binary module (which starts with the bytes \\0asm) nor WAT text",
        ),
        (empty, None, "the module is empty"),
        (wat("loop"), Some("always"), "ran out of fuel"),
        (wat("unreachable"), Some("always"), "unreachable"),
        (wat("grow_bomb"), Some("always"), "memory cap"),
        (wat("out_of_range"), Some("always"), "out of range"),
        (
            wat("missing_export"),
            None,
            "missing export `switchyard_decide`",
        ),
        (wat("wrong_abi"), None, "wrong ABI version 2"),
        (
            wat("forbidden_import"),
            None,
            "forbidden import `env.open_socket`",
        ),
        ("no-such-file.wasm".into(), None, "cannot read"),
        (
            wat("null_buffer"),
            None,
            "returned 0: address 0 means \"no buffer\"",
        ),
        (wat("as_abort"), None, "abort: boom at canary.ts:3:5"),
        // What only the audit of `check` finds.
        (
            wat("stride64"),
            None,
            "in a later-v1 layout of the same input (80-byte header, 80-byte candidate stride",
        ),
        (
            wat("long_header_trap"),
            None,
            "with a request with an 8 KiB cookie: trap",
        ),
        (wat("leak"), None, "its memory kept growing"),
    ] {
        let mut args = vec!["strategy", "check", file.as_str()];
        if let Some(c) = config {
            args.extend(["--strategy-config", c]);
        }
        let (code, _, err) = run(&args);
        assert_eq!(code, 1, "{file}");
        assert!(err.contains(reason), "{file}: {err}");
    }
}

#[test]
fn config_check_prints_the_effective_config_or_names_the_bad_key() {
    let dir = support::TempDir::new("config");
    let good = dir.0.join("good.toml");
    std::fs::write(
        &good,
        "port = 8080\nworkers = 3\nstrategy = \"builtin:least-connections\"\n",
    )
    .unwrap();
    // A bad flag is named as it is spelled.
    let (code, _, err) = run(&["serve", "--backend", "nonsense", "--port", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("switchyard: --backend: "), "{err}");
    let (code, out, err) = run(&["config", "check", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("port = 8080") && out.contains("workers = 3"),
        "{out}"
    );
    assert!(
        out.contains("head_timeout_ms = 10000") && out.contains("server_first_after_ms = 0"),
        "defaults are shown:\n{out}"
    );

    let typo = dir.0.join("typo.toml");
    std::fs::write(&typo, "port = 8080\nwrokers = 3\n").unwrap();
    let (code, _, err) = run(&["config", "check", typo.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("typo.toml:2: unknown key `wrokers` (did you mean `workers`?)"),
        "{err}"
    );

    // What the file names must load, as `serve` would load it.
    for (text, reason) in [
        ("strategy = \"nope.wasm\"\n", "cannot read nope.wasm"),
        ("backends_file = \"nope.txt\"\n", "nope.txt"),
        (
            "tls_cert = [\"nope.pem\"]\ntls_key = [\"nope.key\"]\n",
            "TLS: nope.pem",
        ),
    ] {
        let f = dir.0.join("names.toml");
        std::fs::write(&f, text).unwrap();
        let (code, out, err) = run(&["config", "check", f.to_str().unwrap()]);
        assert_eq!(code, 1, "{text}: {out}");
        assert!(err.contains(reason), "{text}: {err}");
    }

    // A value that parses but makes no sense: key and line, from
    // `config check` and from `serve` alike.
    let bad = dir.0.join("bad.toml");
    std::fs::write(
        &bad,
        "port = 8080\n\n# probe\nhealth_check = \"ping\"\nworkers = 1\n",
    )
    .unwrap();
    let bad = bad.to_str().unwrap();
    let (code, _, err) = run(&["config", "check", bad]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{bad}:4: `health_check`")), "{err}");
    let (code, _, err) = run(&["serve", "--config", bad]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("{bad}:4: `health_check`")), "{err}");
    // The same key set badly by a flag: the flag is named, the file's line
    // is not blamed.
    let ok = dir.0.join("ok.toml");
    std::fs::write(&ok, "health_check = \"tcp\"\nworkers = 1\n").unwrap();
    let (code, _, err) = run(&[
        "serve",
        "--config",
        ok.to_str().unwrap(),
        "--health-check",
        "ping",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains(
            "'--health-check <HEALTH_CHECK>': expected `tcp`, `none` or `http:/path`, got `ping`"
        ) && !err.contains("ok.toml:"),
        "{err}"
    );
    // A flag whose value parses but makes no sense with the rest: named too.
    let (code, _, err) = run(&[
        "serve",
        "--config",
        ok.to_str().unwrap(),
        "--max-head-bytes",
        "10",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--max-head-bytes: `max_head_bytes`: must be between 64 and 1048576"),
        "{err}"
    );
}

#[test]
fn builtins_load_embedded_with_an_empty_cache_and_say_so() {
    let cache = support::TempDir::new("empty-cache");
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["strategy", "check", "builtin:round-robin"])
        .env("SWITCHYARD_CACHE_DIR", &cache.0)
        .output()
        .expect("run switchyard");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("load: precompiled (embedded in the binary)"),
        "{text}"
    );
    // Nothing was compiled, so nothing was cached.
    assert_eq!(std::fs::read_dir(&cache.0).unwrap().count(), 0);
}

#[test]
fn strategy_bench_prints_floor_and_native_rows_for_every_builtin() {
    for (name, _) in switchyard_strategies::BUILTINS {
        let spec = format!("builtin:{name}");
        let (code, out, err) = run(&["strategy", "bench", &spec, "--candidates", "4,16"]);
        assert_eq!(code, 0, "{spec}: {out}{err}");
        assert!(out.contains("| candidates | strategy ns | fuel | input bytes | floor ns | vs floor | whole table ns | native ns |"), "{out}");
        for n in ["4", "16"] {
            let row = out
                .lines()
                .find(|l| l.starts_with(&format!("| {n} |")))
                .unwrap_or_else(|| panic!("{spec}: no row for {n}:\n{out}"));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            // strategy, floor, whole table and native each a number with a
            // spread.
            for c in [cells[2], cells[5], cells[7], cells[8]] {
                let median: f64 = c.split_whitespace().next().unwrap().parse().unwrap_or(-1.0);
                assert!(median > 0.0, "{spec}: {row}");
            }
            assert!(cells[6].ends_with('x'), "{row}");
        }
        assert!(out.contains("reads candidates, request"), "{out}");
        assert!(out.contains("(declared)"), "{out}");
    }
    // A module file with a request from a file, on two threads.
    let dir = support::TempDir::new("bench");
    let req = dir.0.join("req.http");
    std::fs::write(&req, "GET /x HTTP/1.1\r\nHost: a\r\nX-User-Id: 7\r\n\r\n").unwrap();
    let wat = support::wat("first_eligible");
    let (code, out, err) = run(&[
        "strategy",
        "bench",
        wat.to_str().unwrap(),
        "--candidates",
        "4",
        "--threads",
        "2",
        "--request",
        req.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 threads"), "{out}");
    let row = out.lines().find(|l| l.starts_with("| 4 |")).unwrap();
    assert!(
        row.trim_end().ends_with("| - |"),
        "no native row for a file: {row}"
    );
}

/// A header list the load check cannot vouch for is said so by `check`;
/// `bench` says when its request has none of the listed headers; and a
/// failing `test` case marks the headers the module was not given (what
/// shows a misspelt list).
#[test]
fn header_lists_the_check_cannot_vary_are_pointed_out() {
    let ch = |key: &str| ["builtin:consistent-hash", "--strategy-config", key].map(String::from);
    let args = |cmd: &[&str], key: &str| -> Vec<String> {
        let mut a: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        a.splice(2..2, ch(key));
        a
    };
    let go = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run(&a)
    };
    let (code, out, err) = go(args(&["strategy", "check"], "header:x-tenent"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("reads: candidates, request, headers (x-tenent)"),
        "{out}"
    );
    assert!(
        out.contains("note: the load check sends no x-tenent header"),
        "{out}"
    );
    // A header the check's requests carry gets no note.
    let (_, out, _) = go(args(&["strategy", "check"], "header:x-user-id"));
    assert!(!out.contains("note:"), "{out}");

    let (code, out, err) = go(args(
        &["strategy", "bench", "--candidates", "4"],
        "header:x-tenant",
    ));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("note: the request carries none of the headers the strategy lists (x-tenant)"),
        "{out}"
    );

    let dir = support::TempDir::new("cases-list");
    let cases = dir.0.join("c.toml");
    std::fs::write(
        &cases,
        "[[case]]\nname = \"sticky\"\ncandidates = 3\nheaders = { x-tenant = \"acme\", x-tenent = \"b\" }\nexpect = 7\n",
    )
    .unwrap();
    let (code, out, _) = go(args(
        &["strategy", "test", "--cases", cases.to_str().unwrap()],
        "header:x-tenent",
    ));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("[x-tenant: acme (not given to the module: not in what it reads)]")
            && out.contains("[x-tenent: b]"),
        "{out}"
    );
}

#[test]
fn a_reactor_is_initialized_before_anything_else() {
    let wasm = support::wat("reactor");
    let (code, out, err) = run(&["strategy", "check", wasm.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("_initialize (func)"), "{out}");
}

#[test]
fn strategy_test_prints_each_failure_and_counts_them_in_the_exit_code() {
    let cases = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/strategies/canary.cases.toml"
    );
    // Least-connections is not the canary: its answers differ on some cases.
    let (code, out, _) = run(&[
        "strategy",
        "test",
        "builtin:least-connections",
        "--cases",
        cases,
    ]);
    let failures = out.matches("\nFAIL  ").count() + usize::from(out.starts_with("FAIL"));
    assert!(failures > 0, "{out}");
    assert_eq!(code as usize, failures, "{out}");
    assert!(out.contains(&format!("{} failed", failures)), "{out}");
    assert!(
        out.contains("FAIL  x-canary: 1 goes to the last candidate")
            && out.contains("expected: 3")
            && out.contains("got:      1")
            && out.contains(
                "input:    Http1 GET / host=example.com [x-canary: 1 (not given to the module: not in what it reads)]; candidates: #0 active=9"
            ),
        "{out}"
    );

    let dir = support::TempDir::new("cases");
    let write = |name: &str, text: &str| {
        let p = dir.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let pass = write(
        "pass.toml",
        "[defaults]\ncandidates = 3\n[[case]]\nexpect = [0, 1, 2]\n[[case]]\ncandidates = [{ healthy = false }, { active = 2 }]\nexpect = 1\n",
    );
    let (code, out, err) = run(&[
        "strategy",
        "test",
        "builtin:least-connections",
        "--cases",
        &pass,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 passed, 0 failed"), "{out}");
    for (text, says) in [
        (
            "[[case]]\nexpect = 1\nheader = { a = \"b\" }\n",
            "unknown field `header`",
        ),
        ("[[case]]\nname = \"x\"\n", "x: no `expect`"),
        (
            "[[case]]\nexpect = 1\nprotocol = \"gopher\"\n",
            "unknown protocol `gopher`",
        ),
        (
            "[[case]]\nexpect = 1\ncandidates = 0\n",
            "`candidates` must be a count",
        ),
        ("expect = 1\n", "unknown top-level key `expect`"),
    ] {
        let bad = write("bad.toml", text);
        let (code, _, err) = run(&["strategy", "test", "builtin:random", "--cases", &bad]);
        assert_eq!(code, 120, "{text}: {err}");
        assert!(err.contains(says), "{text}: {err}");
    }
}

#[test]
fn precompiled_artifacts_load_only_where_they_fit() {
    use switchyard::strategy::{Metering, StrategyEngine, StrategyOptions, StrategySpec};
    let dir = support::TempDir::new("cwasm");
    let wat = support::wat("first_eligible");
    let ours = dir.0.join("ours.cwasm");
    let (code, out, err) = run(&[
        "strategy",
        "compile",
        wat.to_str().unwrap(),
        "-o",
        ours.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&["strategy", "check", ours.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("precompiled (a .cwasm file)"), "{out}");
    // `serve` routes with it.
    let s = support::Serve::start(2, &["--strategy", ours.to_str().unwrap()]);
    for _ in 0..4 {
        let (status, body) = support::get(s.port, "/");
        assert_eq!(status, 200, "{body}");
        // first_eligible: every request goes to worker 0.
        assert!(body.contains("worker 0"), "{body}");
    }
    drop(s);

    // Made by an engine with other settings (epoch metering), as a program
    // embedding the library might: refused, saying why and what to do.
    let epoch = StrategyEngine::new(StrategyOptions {
        metering: Metering::Epoch,
        ..StrategyOptions::default()
    })
    .unwrap();
    let spec = StrategySpec {
        source: switchyard::strategy::StrategySource::File(wat.clone()),
        config: vec![],
    };
    let other = dir.0.join("other.cwasm");
    std::fs::write(&other, epoch.precompile(&spec).unwrap()).unwrap();
    let (code, _, err) = run(&["strategy", "check", other.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is a precompiled module this switchyard cannot use")
            && err.contains("switchyard strategy compile"),
        "{err}"
    );

    let bytes = std::fs::read(&ours).unwrap();
    let damaged = dir.0.join("damaged.cwasm");
    std::fs::write(&damaged, &bytes[..bytes.len() / 3]).unwrap();
    let (code, _, err) = run(&["strategy", "check", damaged.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot use"), "{err}");
}

#[test]
fn check_warns_about_a_pin_that_ignores_eligibility_but_accepts_it() {
    let wasm = support::wat("unchecked_pin");
    let (code, out, err) = run(&["strategy", "check", wasm.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("warning: with 5 candidates, the first unhealthy")
            && out.contains("picked candidate 0, which is unhealthy"),
        "{out}"
    );
    assert!(
        out.contains("audit: 15 inputs in two layouts, 10030 decisions"),
        "{out}"
    );
}
