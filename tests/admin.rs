//! The admin API and `switchyard ctl` against a real balancer process:
//! status, Prometheus metrics that add up, tokens, strategy swaps over the
//! API (a broken one refused, 100 good ones under load with no failed
//! request), drains.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::{Serve, TempDir, exchange, get, worker_of};

/// `switchyard serve` with the admin API on a port of its own (as
/// every test balancer has).
fn serve_with_admin(workers: u16, args: &[&str]) -> (Serve, u16) {
    let s = Serve::start(workers, args);
    let admin = s.admin;
    (s, admin)
}

/// A configuration file's text: the listener, worker ports and admin
/// address on loopback, then `extra`.
fn config_file(port: u16, base: u16, admin: u16, extra: &str) -> String {
    format!(
        "port = {port}\nhost = \"127.0.0.1\"\nbase_worker_port = {base}\nadmin = \"127.0.0.1:{admin}\"\n{extra}\n"
    )
}

/// One admin call: (status, body).
fn call(port: u16, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let (status, text) = exchange(port, &req);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The Prometheus text as `name{labels}` -> value; checks each line's
/// shape on the way.
fn scrape(port: u16) -> HashMap<String, f64> {
    let (status, text) = call(port, "GET", "/metrics", None, b"");
    assert_eq!(status, 200, "{text}");
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP ") || rest.starts_with("TYPE "),
                "{line}"
            );
            continue;
        }
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("not a number: {line}")),
        };
        assert!(key.starts_with("switchyard_"), "{line}");
        out.insert(key.to_string(), value);
    }
    out
}

fn sum(m: &HashMap<String, f64>, prefix: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

/// Requests `GET /` on a fresh connection each time until the flag is set
/// (at most 120 s), each of which must get `200`; returns the flag and the
/// loop, which gives the count made and the worker pids that answered.
fn request_loop(
    port: u16,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<(u64, std::collections::BTreeSet<u32>)>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let load = std::thread::spawn(move || {
        let started = Instant::now();
        let mut pids = std::collections::BTreeSet::new();
        let mut made = 0;
        // At least one request, however late this thread gets to run.
        loop {
            let (status, body) = get(port, "/");
            assert_eq!(status, 200, "request {made}: {body}");
            pids.insert(worker_of(&body).1);
            made += 1;
            if flag.load(std::sync::atomic::Ordering::Relaxed)
                || started.elapsed() > Duration::from_secs(120)
            {
                break;
            }
        }
        (made, pids)
    });
    (stop, load)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The worker pids a `/status` answer lists, in order.
fn worker_pids(status: &serde_json::Value) -> Vec<u64> {
    status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_u64().unwrap())
        .collect()
}

#[test]
fn status_and_metrics_add_up_to_the_requests_made() {
    let (s, admin) = serve_with_admin(2, &["--mode", "http"]);
    // Scrape while requests run: every scrape must parse.
    let port = s.port;
    let load = std::thread::spawn(move || {
        for _ in 0..60 {
            let (status, body) = get(port, "/");
            assert_eq!(status, 200, "{body}");
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !load.is_finished() && Instant::now() < deadline {
        scrape(admin);
    }
    load.join().unwrap();
    let m = scrape(admin);
    assert_eq!(m["switchyard_requests_total{protocol=\"http1\"}"], 60.0);
    assert_eq!(m["switchyard_connections_total{path=\"http\"}"], 60.0);
    assert_eq!(sum(&m, "switchyard_backend_requests_total{"), 60.0);
    assert_eq!(
        m["switchyard_strategy_decisions_total{by=\"wasm\"}"]
            + m["switchyard_strategy_decisions_total{by=\"fallback\"}"],
        60.0
    );
    assert_eq!(m["switchyard_backends_healthy"], 2.0);
    assert_eq!(sum(&m, "switchyard_worker_up{"), 2.0);
    // Every connection was sniffed, and each closed.
    assert_eq!(m["switchyard_sniff_duration_seconds_count"], 60.0);
    // The count drops just after the client saw its close.
    support::eventually("every connection counted closed", 5, || {
        scrape(admin)["switchyard_connections_active{path=\"http\"}"] == 0.0
    });
    // Decisions are timed one in 16, per serving thread.
    assert!(m["switchyard_strategy_decision_duration_seconds_count"] >= 1.0);
    assert_eq!(
        m["switchyard_strategy_decision_duration_seconds_bucket{le=\"+Inf\"}"],
        m["switchyard_strategy_decision_duration_seconds_count"]
    );

    let (status, body) = call(admin, "GET", "/status", None, b"");
    assert_eq!(status, 200, "{body}");
    let st = json(&body);
    let workers = st["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{body}");
    for w in workers {
        assert_eq!(w["state"], "up", "{w}");
        assert!(w["pid"].as_u64().unwrap() > 0, "{w}");
        assert!(w["rss_bytes"].as_u64().is_some(), "{w}");
    }
    let total: u64 = workers.iter().map(|w| w["total"].as_u64().unwrap()).sum();
    assert_eq!(total, 60);
    assert_eq!(st["strategy"]["name"], "builtin:round-robin");
    assert_eq!(st["strategy"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(st["traffic"]["requests"]["http1"], 60);
    assert_eq!(st["config"]["mode"], "http");

    // The same through `switchyard ctl`, as a table and as JSON.
    let addr = format!("127.0.0.1:{admin}");
    let (code, out, err) = ctl(&["--admin", &addr, "status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("WORKER") && out.contains("builtin:round-robin"),
        "{out}"
    );
    let (code, out, _) = ctl(&["--admin", &addr, "--json", "status"]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["workers"].as_array().unwrap().len(), 2);
}

fn ctl(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("ctl")
        .args(args)
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .output()
        .expect("run switchyard ctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_token_is_required_when_set_and_remote_addresses_need_one() {
    let dir = TempDir::new("admin-token");
    let token_file = dir.0.join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let (_s, admin) = serve_with_admin(1, &["--admin-token-file", token_file.to_str().unwrap()]);
    let (status, _) = call(admin, "GET", "/status", None, b"");
    assert_eq!(status, 401);
    let (status, _) = call(admin, "GET", "/metrics", Some("s3cret-tokeN"), b"");
    assert_eq!(status, 401);
    let (status, _) = call(admin, "PUT", "/strategy?builtin=random", Some("wrong"), b"");
    assert_eq!(status, 401);
    let (status, body) = call(admin, "GET", "/status", Some("s3cret-token"), b"");
    assert_eq!(status, 200, "{body}");
    // HTTP Basic with the token as the password, as a browser sends it:
    // base64("admin:s3cret-token").
    let (status, _) = exchange(
        admin,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nAuthorization: Basic YWRtaW46czNjcmV0LXRva2Vu\r\n\r\n",
    );
    assert_eq!(status, 200);
    let addr = format!("127.0.0.1:{admin}");
    let (code, _, err) = ctl(&["--admin", &addr, "status"]);
    assert_eq!(code, 1, "refused, not unreachable: {err}");
    assert!(err.contains("token"), "{err}");
    let (code, out, err) = ctl(&[
        "--admin",
        &addr,
        "--token-file",
        token_file.to_str().unwrap(),
        "status",
    ]);
    assert_eq!(code, 0, "{out}{err}");

    // Any address but loopback without a token: refused at start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--workers", "1", "--admin", "0.0.0.0:0"])
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reachable from other hosts"), "{err}");
    // The default is loopback.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["config", "check", "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("admin = \"127.0.0.1:9901\""), "{text}");
}

#[test]
fn a_broken_strategy_is_refused_with_its_reason_and_the_old_one_keeps_serving() {
    let (s, admin) = serve_with_admin(2, &["--mode", "http"]);
    let (status, body) = call(admin, "PUT", "/strategy", None, b"\0asm garbage");
    assert_eq!(status, 422, "{body}");
    assert!(
        json(&body)["error"].as_str().unwrap().contains("rejected"),
        "{body}"
    );
    let (status, body) = call(admin, "PUT", "/strategy", None, b"");
    assert_eq!(status, 400, "{body}");
    // A large garbage upload: the reason quotes a line of it, shortened.
    let (status, body) = call(admin, "PUT", "/strategy", None, &vec![0u8; 200_000]);
    assert_eq!(status, 422, "{}", &body[..body.len().min(500)]);
    assert!(body.len() < 8192, "the reason is {} bytes", body.len());
    // One that passes the load-time dry run but not `check`'s audit (its
    // memory grows with every decision).
    let leak = std::fs::read(support::wat("leak")).unwrap();
    let (status, body) = call(admin, "PUT", "/strategy", None, &leak);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("memory"), "{body}");
    let st = json(&call(admin, "GET", "/status", None, b"").1);
    assert_eq!(st["strategy"]["name"], "builtin:round-robin");
    assert_eq!(st["strategy"]["rejections"], 3);
    assert_eq!(st["strategy"]["recent"][0]["outcome"], "rejected");
    for _ in 0..4 {
        assert_eq!(get(s.port, "/").0, 200);
    }

    // A good module through ctl: everything goes to worker 1.
    let dir = TempDir::new("admin-put");
    let module = dir.0.join("one.wat");
    std::fs::write(&module, support::constant(1)).unwrap();
    let addr = format!("127.0.0.1:{admin}");
    let (code, out, err) = ctl(&[
        "--admin",
        &addr,
        "strategy",
        "set",
        module.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("generation 2"), "{out}");
    for _ in 0..6 {
        let (status, body) = get(s.port, "/");
        assert_eq!(status, 200);
        assert_eq!(worker_of(&body).0, 1, "{body}");
    }
    // A broken file through ctl: exit 1 with the reason.
    let broken = dir.0.join("broken.wat");
    std::fs::write(&broken, "(module (func (export \"nope\")))").unwrap();
    let (code, _, err) = ctl(&[
        "--admin",
        &addr,
        "strategy",
        "set",
        broken.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("switchyard_abi_version"), "{err}");
    assert_eq!(worker_of(&get(s.port, "/").1).0, 1);

    // Drain worker 1 by its id: everything goes to worker 0 (the module
    // answers 1, and the fallback takes over); undrain it again.
    let (code, out, err) = ctl(&["--admin", &addr, "drain", "1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("draining"), "{out}");
    assert!(!err.contains("warning"), "one is left: {err}");
    for _ in 0..4 {
        assert_eq!(worker_of(&get(s.port, "/").1).0, 0);
    }
    // Draining the last one is allowed, but said.
    let (code, out, err) = ctl(&["--admin", &addr, "drain", "0"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning: no backend is left taking new work"),
        "{err}"
    );
    let (status, _) = call(admin, "POST", "/workers/0/undrain", None, b"");
    assert_eq!(status, 200);
    let (status, _) = call(admin, "POST", "/workers/1/undrain", None, b"");
    assert_eq!(status, 200);
    assert_eq!(worker_of(&get(s.port, "/").1).0, 1);
    let (status, _) = call(admin, "POST", "/backends/nope/drain", None, b"");
    assert_eq!(status, 404);
    let (status, text) = exchange(
        admin,
        b"DELETE /strategy HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405);
    assert!(
        text.to_ascii_lowercase().contains("\r\nallow: put\r\n"),
        "{text}"
    );
    // A built-in by its bare name, as `serve --strategy` takes it.
    let (code, out, err) = ctl(&["--admin", &addr, "strategy", "set", "round-robin"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("round-robin"), "{out}");
    // The balancer's port by mistake: said so.
    let (code, _, err) = ctl(&["--admin", &format!("127.0.0.1:{}", s.port), "status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not its --port"), "{err}");
}

#[test]
fn a_hundred_swaps_during_a_request_loop_fail_no_request() {
    let (s, admin) = serve_with_admin(2, &["--mode", "http"]);
    let (stop, load) = request_loop(s.port);
    let names = ["round-robin", "least-connections", "random", "power-of-two"];
    for k in 0..100 {
        let path = format!("/strategy?builtin={}", names[k % names.len()]);
        let (status, body) = call(admin, "PUT", &path, None, b"");
        assert_eq!(status, 200, "swap {k}: {body}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (made, _) = load.join().unwrap();
    assert!(made > 0);
    let st = json(&call(admin, "GET", "/status", None, b"").1);
    assert_eq!(st["strategy"]["swaps"], 100);
    assert_eq!(st["strategy"]["generation"], 101);
    let m = scrape(admin);
    assert_eq!(m["switchyard_strategy_swaps_total"], 100.0);
    assert_eq!(sum(&m, "switchyard_proxy_errors_total{"), 0.0);
}

/// The status page in a real headless browser (Debian's chromium, which
/// `scripts/test-deps.sh` installs): it renders and shows the workers.
#[test]
fn the_status_page_renders_the_workers_in_a_browser() {
    let (s, admin) = serve_with_admin(2, &["--mode", "http"]);
    for _ in 0..6 {
        assert_eq!(get(s.port, "/").0, 200);
    }
    let profile = TempDir::new("chromium");
    let mut child = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.0.display()),
            "--virtual-time-budget=3000",
            "--dump-dom",
            &format!("http://127.0.0.1:{admin}/"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromium (scripts/test-deps.sh installs it)");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut dom);
        dom
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let dom = reader.join().unwrap();
    // Rendered by the page's script: the tables are filled in.
    let up = dom.matches("<td class=\"state\">up</td>").count();
    assert_eq!(up, 4, "two workers, each also a backend, all up:\n{dom}");
    assert!(dom.contains("builtin:round-robin"), "{dom}");
    assert!(dom.contains("127.0.0.1:"), "{dom}");
    assert!(dom.contains(">6<"), "the request count:\n{dom}");
}

#[test]
fn shadow_agreement_counts_add_up_to_the_decisions_made() {
    // The real strategy spreads over both workers; the shadow always
    // answers worker 1, so it agrees exactly when worker 1 served.
    let dir = TempDir::new("shadow");
    let one = dir.0.join("one.wat");
    std::fs::write(&one, support::constant(1)).unwrap();
    let (s, admin) = serve_with_admin(
        2,
        &["--mode", "http", "--shadow-strategy", one.to_str().unwrap()],
    );
    let mut to_one = 0;
    for _ in 0..40 {
        let (status, body) = get(s.port, "/");
        assert_eq!(status, 200);
        to_one += (worker_of(&body).0 == 1) as u64;
    }
    assert!(to_one > 0 && to_one < 40, "round-robin spreads: {to_one}");
    let st = json(&call(admin, "GET", "/status", None, b"").1);
    let sh = &st["strategy"]["shadow"];
    assert_eq!(sh["compared"], 40, "{sh}");
    assert_eq!(sh["agreed"], to_one, "{sh}");
    assert_eq!(sh["disagreed"], 40 - to_one, "{sh}");
    assert_eq!(sh["failed"], 0, "{sh}");
    let m = scrape(admin);
    assert_eq!(
        m["switchyard_shadow_decisions_total{result=\"agreed\"}"],
        to_one as f64
    );
    assert_eq!(m["switchyard_shadow_decision_duration_seconds_count"], 40.0);
    let addr = format!("127.0.0.1:{admin}");
    let (code, out, err) = ctl(&["--admin", &addr, "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("agreed on {to_one} of 40 decisions")),
        "{out}"
    );

    // Replaced through ctl: the counts start again; then removed.
    let (code, out, err) = ctl(&[
        "--admin",
        &addr,
        "shadow",
        "set",
        "builtin:round-robin",
        "--fuel",
        "100000",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    for _ in 0..10 {
        assert_eq!(get(s.port, "/").0, 200);
    }
    let st = json(&call(admin, "GET", "/status", None, b"").1);
    assert_eq!(st["strategy"]["shadow"]["compared"], 10);
    assert_eq!(st["strategy"]["shadow"]["fuel"], 100000);
    let (code, _, err) = ctl(&["--admin", &addr, "shadow", "off"]);
    assert_eq!(code, 0, "{err}");
    let st = json(&call(admin, "GET", "/status", None, b"").1);
    assert!(st["strategy"]["shadow"].is_null(), "{st}");
    assert_eq!(get(s.port, "/").0, 200);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let s = Serve::start(1, &["--log-format", "json"]);
    assert_eq!(get(s.port, "/").0, 200);
    let log = s.log();
    let mut serving = false;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v = json(line);
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        serving |= v["message"] == "switchyard is serving";
    }
    assert!(serving, "{log}");
}

/// Sends `GET /` on one keep-alive connection and reads the response
/// (Content-Length framed); returns (status, body).
fn keepalive_get(conn: &mut std::net::TcpStream) -> (u16, String) {
    use std::io::{Read, Write};
    conn.write_all(b"GET / HTTP/1.1\r\nHost: reload\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).unwrap_or(0) == 0 {
            return (0, String::from_utf8_lossy(&head).into_owned());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn a_replacement_that_exits_stops_the_reload_with_502_and_the_old_worker_serves() {
    // The first start serves; every later one (the replacement) exits.
    let dir = TempDir::new("reload-fail");
    let marker = dir.0.join("started");
    let script = format!(
        "if [ -e {m} ]; then exit 3; fi; touch {m}; exec python3 -m http.server \"$PORT\" --bind \"$HOST\"",
        m = marker.display()
    );
    let s = Serve::start(1, &["--", "sh", "-c", &script]);
    let before = json(&call(s.admin, "GET", "/status", None, b"").1);
    let pids = worker_pids(&before);
    let (status, body) = call(s.admin, "POST", "/reload", None, b"");
    assert_eq!(status, 502, "{body}");
    let answer = json(&body);
    assert_eq!(
        answer["reloaded"].as_array().map(Vec::len),
        Some(0),
        "{body}"
    );
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("exit"), "the reason: {body}");
    // The old worker was never unpublished: it still serves, same pid.
    assert_eq!(get(s.port, "/").0, 200);
    let after = json(&call(s.admin, "GET", "/status", None, b"").1);
    assert_eq!(worker_pids(&after), pids, "{after}");
    // And ctl says so, exiting 1.
    let (code, out, err) = ctl(&["--admin", &format!("127.0.0.1:{}", s.admin), "reload"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(format!("{out}{err}").contains("exit"), "{out}{err}");
}

#[test]
fn a_rolling_reload_during_request_loops_fails_no_request() {
    let (s, admin) = serve_with_admin(2, &["--mode", "http"]);
    let before = json(&call(admin, "GET", "/status", None, b"").1);
    let series = |prefix: &str| {
        let mut keys: Vec<String> = scrape(admin)
            .into_keys()
            .filter(|k| k.starts_with(prefix))
            .collect();
        keys.sort();
        keys
    };
    let requests_series = series("switchyard_backend_requests_total{");
    let info_before = series("switchyard_backend_info{");
    let pids = worker_pids(&before);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = s.port;
    // One loop with a connection per request, one on a single keep-alive
    // connection (its upstream connections are pooled).
    let loops: Vec<_> = (0..2)
        .map(|k| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                // (Only the keep-alive loop opens it: an unused connection
                // would count as a client that closed without a request.)
                let mut conn = (k == 1).then(|| {
                    let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    c
                });
                let mut seen = std::collections::BTreeSet::new();
                let mut made = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && started.elapsed() < Duration::from_secs(120)
                {
                    let (status, body) = match conn.as_mut() {
                        None => get(port, "/"),
                        Some(c) => keepalive_get(c),
                    };
                    assert_eq!(status, 200, "loop {k}, request {made}: {body}");
                    seen.insert(worker_of(&body).1);
                    made += 1;
                }
                (made, seen)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let addr = format!("127.0.0.1:{admin}");
    let (code, out, err) = ctl(&["--admin", &addr, "reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("WORKER") && out.contains("->"), "{out}");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in loops {
        let (made, seen) = l.join().unwrap();
        assert!(made > 0);
        // Served by old and new processes alike.
        assert!(seen.len() >= 2, "{seen:?}");
    }
    let after = json(&call(admin, "GET", "/status", None, b"").1);
    let workers = after["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{after}");
    for w in workers {
        assert_eq!(w["state"], "up", "{w}");
        assert!(!pids.contains(&w["pid"].as_u64().unwrap()), "{w}");
        assert_eq!(w["restarts"], 0, "a replacement is no restart: {w}");
        // On the other bank of ports.
        let port: u16 = w["addr"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(port >= s.base + 2 && port < s.base + 4, "{w}");
    }
    let m = scrape(admin);
    let errors: Vec<_> = m
        .iter()
        .filter(|(k, v)| k.starts_with("switchyard_proxy_errors_total{") && **v > 0.0)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    // The same series go on (the address moved, on the info metric only).
    assert_eq!(
        series("switchyard_backend_requests_total{"),
        requests_series
    );
    assert_ne!(series("switchyard_backend_info{"), info_before);
    // A second reload goes back to the first ports.
    let (status, body) = call(admin, "POST", "/reload", None, b"");
    assert_eq!(status, 200, "{body}");
    let again = json(&call(admin, "GET", "/status", None, b"").1);
    for w in again["workers"].as_array().unwrap() {
        let port: u16 = w["addr"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(port >= s.base && port < s.base + 2, "{w}");
    }
    assert_eq!(get(s.port, "/").0, 200);
}

/// A collector stub: an HTTP/1.1 server that takes OTLP/HTTP posts and
/// hands each (path, content type, body) to the test.
fn collector() -> (u16, std::sync::mpsc::Receiver<(String, String, Vec<u8>)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(64) {
            let Ok(conn) = conn else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut out = conn;
                // Keep-alive: several posts per connection, each bounded.
                for _ in 0..1000 {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let (mut len, mut kind) = (0usize, String::new());
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            match k.to_ascii_lowercase().as_str() {
                                "content-length" => len = v.trim().parse().unwrap_or(0),
                                "content-type" => kind = v.trim().to_string(),
                                _ => {}
                            }
                        }
                    }
                    let mut body = vec![0u8; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                    if tx.send((path, kind, body)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

#[test]
fn metrics_reach_an_otlp_collector() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use prost::Message;
    let (collector_port, posts) = collector();
    let endpoint = format!("http://127.0.0.1:{collector_port}");
    let s = Serve::start_with_env(
        2,
        &["--mode", "http"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
            ("OTEL_SERVICE_NAME", "switchyard-test"),
        ],
    );
    for _ in 0..10 {
        assert_eq!(get(s.port, "/").0, 200);
    }
    // Exports are cumulative: wait for one that has all ten requests.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < deadline {
        let Ok((path, kind, body)) = posts.recv_timeout(Duration::from_secs(5)) else {
            continue;
        };
        assert_eq!(path, "/v1/metrics");
        assert_eq!(kind, "application/x-protobuf");
        let req = ExportMetricsServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
        let rm = &req.resource_metrics[0];
        let service = rm
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .find(|a| a.key == "service.name");
        assert!(
            format!("{service:?}").contains("switchyard-test"),
            "{service:?}"
        );
        let metrics: Vec<_> = rm.scope_metrics.iter().flat_map(|s| &s.metrics).collect();
        let requests = metrics
            .iter()
            .find(|m| m.name == "switchyard.requests")
            .expect("switchyard.requests");
        let Some(Data::Sum(sum)) = &requests.data else {
            panic!("a sum: {requests:?}")
        };
        assert!(sum.is_monotonic);
        let http1: i64 = sum
            .data_points
            .iter()
            .filter(|p| format!("{:?}", p.attributes).contains("http1"))
            .map(|p| match p.value {
                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(
                    v,
                )) => v,
                _ => 0,
            })
            .sum();
        assert!(
            metrics
                .iter()
                .any(|m| m.name == "switchyard.backend.requests")
        );
        assert!(metrics.iter().any(|m| m.name == "switchyard.worker.memory"));
        last = Some(http1);
        if http1 == 10 {
            return;
        }
    }
    panic!("no export with 10 requests within 30 s (last saw {last:?})");
}

#[test]
fn the_access_log_has_a_line_per_request_and_per_spliced_connection() {
    let dir = TempDir::new("access");
    let file = dir.0.join("access.log");
    let s = Serve::start(
        2,
        &["--mode", "auto", "--access-log", file.to_str().unwrap()],
    );
    for path in ["/", "/?x=1", "/healthz"] {
        assert_eq!(get(s.port, path).0, 200);
    }
    // Not HTTP: spliced to a backend as is, one line for the connection.
    {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"\x16\x00garbage\r\n\r\n").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    }
    let mut lines = Vec::new();
    support::eventually("four access log lines", 10, || {
        lines = std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .map(json)
            .collect();
        lines.len() >= 4
    });
    let http: Vec<_> = lines.iter().filter(|l| l["mode"] == "http1").collect();
    assert_eq!(http.len(), 3, "{lines:?}");
    let paths: Vec<_> = http.iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/", "/?x=1", "/healthz"]);
    for l in &http {
        assert_eq!(l["method"], "GET", "{l}");
        assert_eq!(l["status"], 200, "{l}");
        assert_eq!(l["attempts"], 1, "{l}");
        assert!(l["fallback"].is_null(), "{l}");
        assert!(
            l["backend"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{l}"
        );
        assert!(l["bytes_out"].as_u64().unwrap() > 0, "{l}");
        assert!(l["duration_ms"].as_f64().unwrap() >= 0.0, "{l}");
        assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l}");
    }
    let tcp: Vec<_> = lines.iter().filter(|l| l["mode"] == "tcp").collect();
    assert_eq!(tcp.len(), 1, "{lines:?}");
    assert_eq!(tcp[0]["bytes_in"], 13, "{}", tcp[0]);
    assert_eq!(tcp[0]["attempts"], 1, "{}", tcp[0]);
    // A second head on a kept-alive connection that the head guard refuses
    // (two Content-Lengths): its 400 gets a line too.
    let (status, text) = exchange(
        s.port,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("HTTP/1.1 400"), "{text}");
    support::eventually("the refusal's line", 10, || {
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .map(json)
            .any(|l| l["status"] == 400 && l["error"] == "head_malformed" && l["mode"] == "http1")
    });
}

/// Accepts wait for a client's first bytes unless server-first protocols
/// are routed; a reload that sets `server_first_after_ms` changes that on
/// every serving thread's listener at once, and one that clears it changes
/// it back.
#[test]
fn a_reload_of_server_first_changes_whether_accepts_wait_for_the_first_bytes() {
    let dir = TempDir::new("defer");
    let file = dir.0.join("switchyard.toml");
    let port = support::free_ports(7);
    let (base, admin) = (port + 1, port + 7);
    let config = |extra: &str| config_file(port, base, admin, &format!("threads = 2\n{extra}"));
    std::fs::write(&file, config("")).unwrap();
    let s = Serve::start_config(&file, port, base, admin);
    // Six connections a batch, each batch kept open to the end (a closed
    // one's port could be taken again by the next batch while the
    // balancer's end of it is still listed). Deferring, the balancer's end
    // of a silent connection stays half-open (`03`); when the suite runs
    // in parallel some are nevertheless established early, so a batch
    // shows deferral when any is half-open, and its absence when none is.
    let batch = |deferring: bool| {
        let conns: Vec<_> = (0..6)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let got: Vec<_> = conns.iter().map(support::server_side_state).collect();
        let half_open = got.iter().any(|g| g.as_deref() == Some("03"));
        assert_eq!(half_open, deferring, "{got:?}");
        conns
    };
    let _first = batch(true);
    std::fs::write(&file, config("server_first_after_ms = 50")).unwrap();
    s.signal(libc::SIGHUP);
    s.wait_for_log("configuration reloaded", 30);
    let _second = batch(false);
    std::fs::write(&file, config("")).unwrap();
    s.signal(libc::SIGHUP);
    support::eventually("a second reload", 30, || {
        s.log().matches("configuration reloaded").count() >= 2
    });
    let _third = batch(true);
}

#[test]
fn sighup_applies_a_good_file_without_a_failed_request_and_keeps_the_old_one_for_a_bad_file() {
    let dir = TempDir::new("sighup");
    let file = dir.0.join("switchyard.toml");
    let module = dir.0.join("two.wat");
    std::fs::write(&module, support::constant(2)).unwrap();
    let port = support::free_ports(7);
    let (base, admin) = (port + 1, port + 7);
    let config = |extra: &str| config_file(port, base, admin, &format!("mode = \"http\"\n{extra}"));
    std::fs::write(&file, config("workers = 2")).unwrap();
    let mut s = Serve::start_config(&file, port, base, admin);
    let (stop, load) = request_loop(port);
    // A good file: a third worker, a strategy that wants it, a smaller
    // head limit.
    std::fs::write(
        &file,
        config(&format!(
            "workers = 3\nstrategy = \"{}\"\nmax_head_bytes = 1024",
            module.display()
        )),
    )
    .unwrap();
    s.signal(libc::SIGHUP);
    s.wait_for_log("configuration reloaded", 30);
    assert!(
        s.log()
            .contains("applied=[\"strategy\", \"workers\", \"limits\"]"),
        "{}",
        s.log()
    );
    support::eventually("the third worker serving", 30, || {
        worker_of(&get(port, "/").1).0 == 2
    });
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "x".repeat(2000)
    );
    assert_eq!(exchange(port, big.as_bytes()).0, 431, "the new head limit");
    // What scrapes see of it.
    let st = json(&call(admin, "GET", "/status", None, b"").1);
    assert_eq!(st["config_reload"]["result"], "applied", "{st}");
    assert!(st["config_reload"]["unix"].as_u64().unwrap() > 0, "{st}");
    let m = scrape(admin);
    assert_eq!(
        m["switchyard_config_reloads_total{result=\"applied\"}"],
        1.0
    );
    assert_eq!(m["switchyard_config_last_reload_successful"], 1.0);
    // A bad file: rejected with the reason; nothing changes.
    std::fs::write(&file, config("workers = 1\nretries = \"many\"")).unwrap();
    s.signal(libc::SIGHUP);
    s.wait_for_log("configuration rejected", 30);
    assert!(s.log().contains("retries"), "{}", s.log());
    let st = json(&call(admin, "GET", "/status", None, b"").1);
    assert_eq!(st["workers"].as_array().unwrap().len(), 3);
    assert_eq!(worker_of(&get(port, "/").1).0, 2);
    assert_eq!(st["config_reload"]["result"], "rejected", "{st}");
    assert!(
        st["config_reload"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("retries")),
        "{st}"
    );
    let m = scrape(admin);
    assert_eq!(
        m["switchyard_config_reloads_total{result=\"rejected\"}"],
        1.0
    );
    assert_eq!(m["switchyard_config_last_reload_successful"], 0.0);
    // Back to two workers: the third drains and stops.
    std::fs::write(&file, config("workers = 2")).unwrap();
    s.signal(libc::SIGHUP);
    support::eventually("two workers again", 30, || {
        json(&call(admin, "GET", "/status", None, b"").1)["workers"]
            .as_array()
            .unwrap()
            .len()
            == 2
    });
    // What only a restart changes: said (a warning), not shown as in
    // effect, and said again by the next reload.
    let fuel = st["config"]["fuel"].clone();
    assert!(fuel.is_u64(), "{st}");
    std::fs::write(&file, config("workers = 2\nfuel = 123456")).unwrap();
    for k in 1..=2 {
        s.signal(libc::SIGHUP);
        support::eventually("the restart notice", 30, || {
            s.log().matches("take effect only after a restart").count() == k
        });
    }
    assert!(s.log().contains("need_restart=[\"fuel\"]"), "{}", s.log());
    let st = json(&call(admin, "GET", "/status", None, b"").1);
    assert_eq!(st["config_reload"]["need_restart"][0], "fuel", "{st}");
    assert_eq!(scrape(admin)["switchyard_config_restart_pending"], 1.0);
    assert_eq!(st["config"]["fuel"], fuel, "the fuel in effect");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (made, _) = load.join().unwrap();
    assert!(made > 0);
    assert_eq!(get(port, "/").0, 200);
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(30).success());
}

#[test]
fn a_binary_upgrade_during_a_request_loop_fails_no_request() {
    // With HTTP/3 on: its UDP socket is handed over too.
    let old = Serve::start(2, &["--mode", "http", "--h3"]);
    let old_pid = old.child.id();
    let port = old.port;
    // A fresh connection each time: any of them could land in the accept
    // queue the two processes share.
    let (stop, load) = request_loop(port);
    std::thread::sleep(Duration::from_millis(200));
    // The new binary, started as an operator would: the same arguments
    // plus --upgrade.
    let mut new = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
    new.args([
        "serve",
        "--upgrade",
        "--log",
        "info",
        "--mode",
        "http",
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--base-worker-port",
        &old.base.to_string(),
        "--workers",
        "2",
        "--admin",
        &format!("127.0.0.1:{}", old.admin),
        "--h3",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    // Killed if the test fails before it ends on its own.
    // Its upgrade handover socket goes with it (killed, it cannot remove it).
    struct Reaped(std::process::Child, u16);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_file(switchyard::upgrade::socket_path(self.1));
        }
    }
    let mut new = Reaped(new.spawn().unwrap(), port);
    let mut old = old;
    let status = old.wait_exit(60);
    assert!(
        status.success(),
        "the old process drained and exited: {status}"
    );
    assert!(
        old.log().contains("took over the listening sockets"),
        "{}",
        old.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (made, pids) = load.join().unwrap();
    assert!(made > 0);
    // The new process serves, with workers of its own, on the same port
    // and admin port.
    let st = json(&call(old.admin, "GET", "/status", None, b"").1);
    assert_ne!(st["pid"].as_u64().unwrap(), old_pid as u64, "{st}");
    let new_workers = worker_pids(&st);
    let (status, body) = get(port, "/");
    assert_eq!(status, 200);
    assert!(new_workers.contains(&(worker_of(&body).1 as u64)), "{body}");
    assert!(pids.len() >= 2, "{pids:?}");
    // SIGUSR2 to the new one starts a third from the same binary path,
    // which takes over in turn.
    let new_pid = new.0.id();
    unsafe {
        libc::kill(new_pid as i32, libc::SIGUSR2);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while new.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the second process did not hand over"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = json(&call(old.admin, "GET", "/status", None, b"").1);
    let third = st["pid"].as_u64().unwrap();
    assert_ne!(third, new_pid as u64);
    assert_eq!(get(port, "/").0, 200);
    unsafe {
        libc::kill(third as i32, libc::SIGTERM);
    }
    support::eventually("the third process to exit", 30, || {
        std::fs::metadata(format!("/proc/{third}")).is_err()
            || std::fs::read_to_string(format!("/proc/{third}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
}

/// Demo workers are named `switchyard-worker`, so `ps` and `pgrep -af
/// switchyard` find them (they were an anonymous `exe`) and `pidof
/// switchyard` does not.
#[test]
fn demo_workers_are_named_switchyard_worker() {
    let (s, admin) = serve_with_admin(1, &[]);
    let status = json(&call(admin, "GET", "/status", None, b"").1);
    let pid = worker_pids(&status)[0];
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let argv: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert_eq!(argv[0], "switchyard-worker", "{argv:?}");
    // And `pidof switchyard` (the README's reload command) is not them.
    let pidof = std::process::Command::new("pidof")
        .arg("switchyard")
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&pidof.stdout).into_owned();
    assert!(
        !found.split_whitespace().any(|p| p == pid.to_string()),
        "{found}"
    );
    assert_eq!(
        argv.get(1).map(String::as_str),
        Some("demo-worker"),
        "{argv:?}"
    );
    // So `kill -HUP $(pidof switchyard)` reaches the workers too: they
    // ignore the balancer's reload and upgrade signals instead of dying.
    for sig in [libc::SIGHUP, libc::SIGUSR2] {
        unsafe {
            libc::kill(pid as i32, sig);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let status = json(&call(admin, "GET", "/status", None, b"").1);
    assert_eq!(worker_pids(&status), [pid], "{status}");
    assert_eq!(status["workers"][0]["restarts"], 0, "{status}");
    assert_eq!(get(s.port, "/").0, 200);
}

/// An upgrade whose new process fails (here its configuration file broke
/// since the start) is said as an error by the old process, which goes on
/// serving, and the failed process is reaped (it stayed a zombie).
#[test]
fn a_failed_sigusr2_upgrade_is_reported_and_leaves_no_zombie() {
    let dir = TempDir::new("usr2-fail");
    let file = dir.0.join("switchyard.toml");
    let port = support::free_ports(4);
    let (base, admin) = (port + 1, port + 3);
    let config = |extra: &str| config_file(port, base, admin, &format!("workers = 1\n{extra}"));
    std::fs::write(&file, config("")).unwrap();
    let s = Serve::start_config(&file, port, base, admin);
    std::fs::write(&file, config("retries = \"many\"")).unwrap();
    s.signal(libc::SIGUSR2);
    s.wait_for_log("the new switchyard exited without taking over", 60);
    let log = s.log();
    let started = log
        .lines()
        .find(|l| l.contains("started a new switchyard"))
        .unwrap_or_else(|| panic!("{log}"));
    let pid: u32 = started
        .split("pid=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{started}"));
    support::eventually("the failed process to be reaped", 10, || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_err()
    });
    assert_eq!(get(port, "/").0, 200, "the old one still serves");
}

/// A request cut by a shutdown before its response has a line too, with
/// its error (it had none).
#[test]
fn a_request_cut_at_shutdown_gets_an_access_log_line() {
    let dir = TempDir::new("access-cut");
    let file = dir.0.join("access.log");
    let mut s = Serve::start(
        1,
        &[
            "--mode",
            "http",
            "--access-log",
            file.to_str().unwrap(),
            "--graceful-timeout-ms",
            "300",
        ],
    );
    let port = s.port;
    let slow = std::thread::spawn(move || get(port, "/slow?ms=5000"));
    support::eventually("the slow request to be open", 10, || {
        json(&call(s.admin, "GET", "/status", None, b"").1)["workers"][0]["in_flight"]
            .as_u64()
            .is_some_and(|n| n > 0)
    });
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(15).success());
    let _ = slow.join();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .map(json)
        .collect();
    assert!(
        lines.iter().any(|l| l["path"] == "/slow?ms=5000"
            && l["error"] == "cut_before_response"
            && l["status"].is_null()),
        "{lines:?}"
    );
}
