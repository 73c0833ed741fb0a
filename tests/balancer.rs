//! `switchyard serve` as a user runs it: a real process with real worker
//! processes, on loopback, with real clients. Every loop is bounded.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{DemoWorker, Serve, TempDir, constant, eventually, exchange, get, worker_of};

#[test]
fn round_robin_spreads_over_workers_and_echoes() {
    let s = Serve::start(2, &[]);
    let mut counts = [0; 2];
    for _ in 0..20 {
        let (status, body) = get(s.port, "/");
        assert_eq!(status, 200, "{body}");
        counts[worker_of(&body).0 as usize] += 1;
    }
    assert_eq!(counts, [10, 10]);
    let (status, text) = exchange(
        s.port,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(status, 200);
    assert!(text.ends_with("hello"), "{text}");
}

#[test]
fn websocket_echo_through_the_balancer() {
    use tokio_tungstenite::tungstenite::{Message, client};
    let s = Serve::start(1, &[]);
    let stream = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut ws, resp) = client(format!("ws://127.0.0.1:{}/ws", s.port), stream).expect("upgrade");
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        ws.send(Message::text(format!("ping {i}"))).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(format!("ping {i}")));
    }
    // The closing handshake: the worker answers Close with Close.
    ws.close(None).unwrap();
    let reply = (0..10).find_map(|_| match ws.read() {
        Ok(Message::Close(_)) => Some(true),
        Ok(_) => None,
        Err(_) => Some(false),
    });
    assert_eq!(reply, Some(true), "no Close frame came back");
}

#[test]
fn killed_worker_is_respawned_and_requests_keep_succeeding() {
    let s = Serve::start(2, &[]);
    let mut pids = [0u32; 2];
    for _ in 0..4 {
        let (w, p) = worker_of(&get(s.port, "/").1);
        pids[w as usize] = p;
    }
    assert!(pids.iter().all(|&p| p != 0));
    // SAFETY: plain syscall on a worker pid we just learned.
    unsafe {
        libc::kill(pids[0] as i32, libc::SIGKILL);
    }
    // Every request succeeds: connects to the dead worker are retried on the
    // other one, then it is ejected, then respawned.
    let mut respawned = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    for _ in 0..2000 {
        let (status, body) = get(s.port, "/");
        assert_eq!(status, 200, "a request failed after the kill: {body}");
        let (w, p) = worker_of(&body);
        if w == 0 && p != pids[0] {
            respawned = Some(p);
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        respawned.is_some(),
        "worker 0 was not respawned; log:\n{}",
        s.log.lock().unwrap()
    );
    s.wait_for_log("worker exited", 1);
}

#[test]
fn no_backends_gives_503_and_the_balancer_stays_up() {
    let closed = support::free_ports(0);
    let mut s = Serve::start(0, &["--backend", &format!("127.0.0.1:{closed}")]);
    for _ in 0..3 {
        let (status, body) = get(s.port, "/");
        assert_eq!(status, 503, "{body}");
    }
    assert!(s.child.try_wait().unwrap().is_none(), "balancer died");
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(15).success());
}

/// A worker port another process listens on (say, a second switchyard
/// with the default ports): the start fails and names the port, rather
/// than pass the worker's readiness check on the other process's port and
/// route traffic there.
#[test]
fn a_worker_port_taken_by_another_process_stops_the_start() {
    let port = support::free_ports(1);
    let stranger = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let mut s = Serve::start_no_wait(1, &["--base-worker-port", &port.to_string()]);
    let status = s.wait_exit(15);
    assert!(!status.success(), "{status}");
    let log = s.log();
    assert!(
        log.contains(&format!(
            "worker port 127.0.0.1:{port} is already in use by another process"
        )),
        "{log}"
    );
    stranger.set_nonblocking(true).unwrap();
    assert!(
        stranger.accept().is_err(),
        "a connection reached the stranger"
    );
}

#[test]
fn oversized_malformed_and_slow_heads_get_clear_errors() {
    let s = Serve::start(1, &["--head-timeout-ms", "300"]);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let (status, _) = exchange(s.port, big.as_bytes());
    assert_eq!(status, 431);
    let (status, _) = exchange(s.port, b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n");
    assert_eq!(status, 400);
    // A slow client: half a head, then nothing.
    let started = Instant::now();
    let (status, text) = exchange(s.port, b"GET / HTTP/1.1\r\nHost: x\r\n");
    assert_eq!(status, 408, "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The balancer still serves.
    assert_eq!(get(s.port, "/").0, 200);
}

/// Waits until the balancer counts `n` open connections over its backends
/// (requests sent from other threads have been routed), bounded.
fn wait_open(s: &Serve, n: u64) {
    eventually(&format!("{n} connections to be open"), 10, || {
        let (_, body) = get(s.admin, "/status");
        serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| {
            v["backends"]
                .as_array()
                .is_some_and(|b| b.iter().filter_map(|b| b["active"].as_u64()).sum::<u64>() >= n)
        })
    });
}

#[test]
fn graceful_shutdown_lets_in_flight_requests_finish_and_stops_workers() {
    let mut s = Serve::start(1, &[]);
    let (_, body) = get(s.port, "/");
    let (_, worker_pid) = worker_of(&body);
    let port = s.port;
    let slow = std::thread::spawn(move || get(port, "/slow?ms=1500"));
    wait_open(&s, 1);
    s.signal(libc::SIGTERM);
    // While it drains, a new connection is refused at once, so a client
    // can go elsewhere (the copies kept for a binary upgrade used to keep
    // the socket listening: connections queued until the exit reset them).
    eventually("new connections to be refused while draining", 5, || {
        TcpStream::connect(("127.0.0.1", port))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    assert!(!slow.is_finished(), "the slow request still in flight");
    let (status, body) = slow.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("slept 1500 ms"), "{body}");
    let status = s.wait_exit(15);
    assert!(status.success(), "{status:?}");
    // New connections are refused once it stopped.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    // SAFETY: signal 0 only checks existence.
    eventually("the worker to exit", 5, || unsafe {
        libc::kill(worker_pid as i32, 0) != 0
    });
}

#[test]
fn workers_die_with_a_sigkilled_balancer() {
    let mut s = Serve::start(2, &[]);
    let mut pids = Vec::new();
    for _ in 0..2 {
        pids.push(worker_of(&get(s.port, "/").1).1);
    }
    s.signal(libc::SIGKILL);
    s.wait_exit(5);
    // SAFETY: signal 0 only checks existence.
    eventually("workers to die with the balancer", 5, || {
        pids.iter()
            .all(|&p| unsafe { libc::kill(p as i32, 0) } != 0)
    });
}

#[test]
fn command_mode_runs_any_program_as_workers() {
    let s = Serve::start(
        2,
        &[
            "--",
            "sh",
            "-c",
            "exec python3 -m http.server \"$PORT\" --bind \"$HOST\"",
        ],
    );
    for _ in 0..4 {
        let (status, body) = get(s.port, "/");
        assert_eq!(status, 200);
        assert!(body.contains("Directory listing"), "{body}");
    }
}

#[test]
fn a_hostile_strategy_never_stops_traffic() {
    // loop.wat spins forever whenever there are 5 candidates: every decision
    // runs out of fuel and falls back, and every request is still served.
    let wat = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/wat/loop.wat");
    let s = Serve::start(5, &["--strategy", wat.to_str().unwrap()]);
    for _ in 0..30 {
        assert_eq!(get(s.port, "/").0, 200);
    }
    s.wait_for_log("out_of_fuel", 5);
}

#[test]
fn replacing_the_strategy_file_changes_routing_without_restart() {
    let dir = TempDir::new("serve-swap");
    let path = dir.0.join("pick.wat");
    std::fs::write(&path, constant(0)).unwrap();
    let s = Serve::start(2, &["--strategy", path.to_str().unwrap()]);
    for _ in 0..5 {
        assert_eq!(worker_of(&get(s.port, "/").1).0, 0);
    }
    let tmp = dir.0.join("pick.wat.new");
    std::fs::write(&tmp, constant(1)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    eventually("routing to change", 10, || {
        worker_of(&get(s.port, "/").1).0 == 1
    });
    // A broken module is rejected; routing stays.
    std::fs::write(&path, "(module broken").unwrap();
    s.wait_for_log("strategy rejected", 10);
    for _ in 0..5 {
        assert_eq!(worker_of(&get(s.port, "/").1).0, 1);
    }
}

#[test]
fn half_close_is_respected() {
    // The client shuts its write side after the request; the response still
    // arrives in full. (With `copy`: every other test runs the default,
    // `splice`.)
    let s = Serve::start(1, &["--forward", "copy"]);
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /bytes?n=100000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    assert!(
        out.ends_with(&[b'x'; 1000]),
        "truncated: {} bytes",
        out.len()
    );
    assert!(out.len() > 100_000);
}

#[test]
fn the_backends_file_is_watched() {
    let dir = TempDir::new("backends-file");
    let base = support::free_ports(1);
    let _w0 = DemoWorker::start(0, base);
    let _w1 = DemoWorker::start(1, base + 1);
    let file = dir.0.join("backends.txt");
    std::fs::write(&file, format!("# static backends\n127.0.0.1:{base}\n")).unwrap();
    let s = Serve::start(0, &["--backends-file", file.to_str().unwrap()]);
    for _ in 0..4 {
        assert_eq!(worker_of(&get(s.port, "/").1).0, 0);
    }
    let tmp = dir.0.join("backends.new");
    std::fs::write(&tmp, format!("127.0.0.1:{} 2\n", base + 1)).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    eventually("the new backend list", 10, || {
        worker_of(&get(s.port, "/").1).0 == 1
    });
    std::fs::write(&file, "not a backend line\n").unwrap();
    s.wait_for_log("backends file rejected", 10);
    for _ in 0..4 {
        assert_eq!(worker_of(&get(s.port, "/").1).0, 1);
    }
}

#[test]
fn a_config_file_drives_serve_and_flags_override_it() {
    let dir = TempDir::new("config-serve");
    let file = dir.0.join("switchyard.toml");
    std::fs::write(
        &file,
        "strategy = \"builtin:least-connections\"\nmax_head_bytes = 1024\n",
    )
    .unwrap();
    let head = |n: usize| format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n", "a".repeat(n));
    // The file alone: its strategy and its 1 KiB cap.
    let s = Serve::start(2, &["--config", file.to_str().unwrap()]);
    s.wait_for_log("strategy=builtin:least-connections", 5);
    assert_eq!(
        exchange(s.port, head(2000).as_bytes()).0,
        431,
        "max_head_bytes from the file"
    );
    assert_eq!(get(s.port, "/").0, 200);
    drop(s);
    // A flag overrides the file's cap; the file's other keys still apply.
    let s = Serve::start(
        2,
        &[
            "--config",
            file.to_str().unwrap(),
            "--max-head-bytes",
            "4096",
        ],
    );
    s.wait_for_log("strategy=builtin:least-connections", 5);
    let (status, text) = exchange(
        s.port,
        head(2000)
            .replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(status, 200, "the flag's 4 KiB cap: {text}");
    assert_eq!(exchange(s.port, head(5000).as_bytes()).0, 431);
}

#[test]
fn a_second_signal_forces_an_immediate_exit() {
    let mut s = Serve::start(1, &[]);
    let port = s.port;
    let slow = std::thread::spawn(move || get(port, "/slow?ms=20000"));
    wait_open(&s, 1);
    let started = Instant::now();
    s.signal(libc::SIGTERM);
    s.wait_for_log("shutting down gracefully", 5);
    s.signal(libc::SIGTERM);
    let status = s.wait_exit(10);
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "forced exit took {:?}",
        started.elapsed()
    );
    let (status, _) = slow.join().unwrap();
    assert_ne!(status, 200, "the slow request was cut, not finished");
}

/// `accept` with a deadline, so a broken balancer fails the test instead of
/// hanging it.
fn accept_within(l: &std::net::TcpListener, limit: Duration) -> TcpStream {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + limit;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                return s;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("no connection within {limit:?}: {e}"),
        }
    }
}

/// One request through a balancer on `host` with `--proxy-protocol`, to a
/// backend on the same host. Returns the PROXY header (`header_len` bytes),
/// the bytes that followed it, the client's own address and the balancer's
/// port.
fn through_proxy_v2(
    host: &str,
    header_len: usize,
) -> (Vec<u8>, Vec<u8>, std::net::SocketAddr, u16) {
    let backend = std::net::TcpListener::bind((host, 0)).unwrap();
    let addr = backend.local_addr().unwrap().to_string();
    let s = Serve::start_on(
        host,
        0,
        &[
            "--backend",
            &addr,
            "--proxy-protocol",
            "--health-check",
            "none",
        ],
    );
    let (port, h) = (s.port, host.to_string());
    let client = std::thread::spawn(move || {
        let mut c = TcpStream::connect((h.as_str(), port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let local = c.local_addr().unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        (local, out)
    });
    let mut conn = accept_within(&backend, Duration::from_secs(10));
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut header = vec![0u8; header_len];
    conn.read_exact(&mut header).unwrap();
    let mut rest = [0u8; 30];
    conn.read_exact(&mut rest).unwrap();
    conn.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        .unwrap();
    drop(conn);
    let (local, out) = client.join().unwrap();
    assert!(out.starts_with(b"HTTP/1.1 204"), "{out:?}");
    (header, rest.to_vec(), local, port)
}

#[test]
fn proxy_protocol_v2_tells_the_backend_who_the_client_is() {
    let (header, rest, client, _) = through_proxy_v2("127.0.0.1", 28);
    assert_eq!(&header[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(
        (header[12], header[13]),
        (0x21, 0x11),
        "v2 PROXY over TCP/IPv4"
    );
    assert_eq!(&header[16..20], &[127, 0, 0, 1]);
    assert_eq!(
        u16::from_be_bytes([header[24], header[25]]),
        client.port(),
        "the client's own port"
    );
    assert_eq!(
        rest, b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n",
        "then the request, untouched"
    );
}

#[test]
fn proxy_protocol_v2_over_ipv6() {
    let (header, rest, client, port) = through_proxy_v2("::1", 52);
    assert_eq!(&header[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(
        (header[12], header[13]),
        (0x21, 0x21),
        "v2 PROXY over TCP/IPv6"
    );
    assert_eq!(u16::from_be_bytes([header[14], header[15]]), 36);
    assert_eq!(
        header[16..32],
        std::net::Ipv6Addr::LOCALHOST.octets(),
        "source"
    );
    assert_eq!(
        header[32..48],
        std::net::Ipv6Addr::LOCALHOST.octets(),
        "destination"
    );
    assert_eq!(u16::from_be_bytes([header[48], header[49]]), client.port());
    assert_eq!(u16::from_be_bytes([header[50], header[51]]), port);
    assert_eq!(rest, b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n");
}

#[test]
fn embedded_balancer_with_in_process_workers() {
    use switchyard::{Balancer, RawConfig, demo};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (_keep, stop) = tokio::sync::watch::channel(false);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let balancer = Balancer::builder()
            .config(RawConfig::default())
            .listener(listener)
            .in_process_workers(2, move |index, l| {
                demo::serve(l, demo::DemoWorker { index }, stop.clone())
            })
            .build()
            .expect("build");
        let port = balancer.local_addr().port();
        let backends = balancer.backends();
        let shutdown = balancer.shutdown_handle();
        let running = tokio::spawn(balancer.run());
        let seen = tokio::task::spawn_blocking(move || {
            let mut seen = [0; 2];
            for _ in 0..10 {
                let (status, body) = get(port, "/");
                assert_eq!(status, 200, "{body}");
                seen[worker_of(&body).0 as usize] += 1;
            }
            seen
        })
        .await
        .unwrap();
        assert_eq!(seen, [5, 5]);
        // Exact counters: every connection counted once, and released on close.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let list = backends.load();
            let active: u32 = list.iter().map(|b| b.active()).sum();
            let total: u64 = list.iter().map(|b| b.total()).sum();
            if active == 0 && total == 10 {
                break;
            }
            assert!(Instant::now() < deadline, "active {active}, total {total}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.graceful();
        tokio::time::timeout(Duration::from_secs(15), running)
            .await
            .expect("stops")
            .unwrap()
            .unwrap();
    });
}

#[test]
fn splice_forwarding_passes_bodies_websockets_and_half_closes() {
    use tokio_tungstenite::tungstenite::{Message, client};
    let s = Serve::start(1, &["--forward", "splice"]);
    // A body larger than a pipe's 64 KiB.
    let (status, body) = get(s.port, "/bytes?n=1000000");
    assert_eq!(status, 200);
    assert_eq!(body.len(), 1_000_000);
    let payload = "p".repeat(200_000);
    let req = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    let (status, text) = exchange(s.port, req.as_bytes());
    assert_eq!(status, 200);
    assert!(text.ends_with(&payload));
    let stream = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut ws, _) = client(format!("ws://127.0.0.1:{}/ws", s.port), stream).expect("upgrade");
    ws.send(Message::text("through splice")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("through splice"));
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /bytes?n=70000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    assert!(
        out.len() > 70_000 && out.ends_with(b"xxxx"),
        "{} bytes",
        out.len()
    );
}

#[test]
fn http_health_checks_mark_failing_backends() {
    // /healthz answers 200: no complaint. A missing path answers 404: the
    // backend fails two checks in a row (interval 2 s) and is marked.
    let ok = Serve::start(1, &["--health-check", "http:/healthz"]);
    let bad = Serve::start(1, &["--health-check", "http:/missing"]);
    bad.wait_for_log("backend failed health checks", 15);
    assert!(
        !ok.log
            .lock()
            .unwrap()
            .contains("backend failed health checks")
    );
    // Failing open: with its only backend unhealthy, the balancer still tries it.
    assert_eq!(get(bad.port, "/").0, 200);
}

#[test]
fn refused_connects_are_retried_on_another_backend() {
    // Health checks off, so the strategy keeps choosing the dead backend:
    // every request that lands on it must be retried on the live one. (The
    // opaque and server-first cases: tests/sniffing.rs.)
    let base = support::free_ports(1);
    let dead = base + 1;
    let _w = DemoWorker::start(0, base);
    let s = Serve::start(
        0,
        &[
            "--backend",
            &format!("127.0.0.1:{dead}"),
            "--backend",
            &format!("127.0.0.1:{base}"),
            "--health-check",
            "none",
        ],
    );
    for _ in 0..6 {
        let (status, body) = get(s.port, "/");
        assert_eq!(status, 200, "{body}");
        assert_eq!(worker_of(&body).0, 0);
    }
    s.wait_for_log("backend attempt failed", 5);
}

#[test]
fn serving_threads_share_the_port_and_all_drain_on_shutdown() {
    let mut s = Serve::start(1, &["--threads", "3"]);
    // One single-threaded runtime per listener, named after it. Polled: a
    // thread names itself once it runs, and the port can answer before
    // that (CI saw the two still called `switchyard`).
    let pid = s.child.id();
    let names = || -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|n| n.trim().to_string())
            .collect()
    };
    eventually("the serving threads to be named", 10, || {
        let names = names();
        ["switchyard-1", "switchyard-2"]
            .iter()
            .all(|want| names.iter().any(|n| n == want))
    });

    // A second balancer on the same port fails instead of quietly joining
    // the first one's SO_REUSEPORT group.
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            &s.port.to_string(),
        ])
        .args([
            "--threads",
            "2",
            "--workers",
            "0",
            "--backend",
            "127.0.0.1:9",
        ])
        .env_remove("HOST")
        .env_remove("PORT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second balancer started on a port in use");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert!(err.contains("cannot listen"), "{err}");

    // Connections land on all three listeners; every in-flight one finishes
    // after SIGTERM, whichever thread serves it.
    let port = s.port;
    let slow: Vec<_> = (0..12)
        .map(|_| std::thread::spawn(move || get(port, "/slow?ms=2000")))
        .collect();
    wait_open(&s, 12);
    s.signal(libc::SIGTERM);
    for t in slow {
        let (status, body) = t.join().unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert!(s.wait_exit(15).success());
}

#[test]
fn idle_routed_connections_are_closed_after_the_idle_timeout() {
    let s = Serve::start(1, &["--idle-timeout-ms", "1500"]);
    let request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 4096];
    // Busy: a request every 100 ms for well over the timeout keeps it open
    // (gaps of 1.4 s to spare on a loaded machine).
    for _ in 0..20 {
        c.write_all(request).unwrap();
        let n = c.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Idle: the balancer closes it (EOF, not our 10 s read timeout).
    let started = Instant::now();
    let n = c.read(&mut buf).unwrap();
    assert_eq!(n, 0);
    assert!(started.elapsed() < Duration::from_secs(5));
    s.wait_for_log("closed after the idle timeout", 5);
}

#[test]
fn the_open_file_limit_is_raised_and_a_short_one_is_reported() {
    use std::os::unix::process::CommandExt;
    let dir = TempDir::new("rlimit");
    let log = dir.0.join("log");
    let port = support::free_ports(1);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--workers", "0", "--backend", "127.0.0.1:9"])
        .args(["--max-connections", "10000"])
        .env_remove("HOST")
        .env_remove("PORT")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    // SAFETY: setrlimit is async-signal-safe; it only touches the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 4096,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = DemoWorker(cmd.spawn().unwrap());
    eventually("the balancer to listen", 30, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.0.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[3..5], ["4096", "4096"], "{line}");
    // 10,000 connections need more than 4,096 descriptors: said so.
    eventually("the warning", 10, || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("open-file limit is below"))
    });
    // Killed, so its upgrade handover socket is left behind: not in /tmp.
    drop(child);
    let _ = std::fs::remove_file(switchyard::upgrade::socket_path(port));
}

/// Resident memory of a process, in KiB.

#[test]
fn memory_stays_bounded_for_slow_readers_and_idle_connections() {
    let s = Serve::start(1, &[]);
    let pid = s.child.id();
    let request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    // Warm up every thread's allocator and buffer free list.
    let warm: Vec<_> = (0..64)
        .map(|_| {
            let port = s.port;
            std::thread::spawn(move || get(port, "/bytes?n=1000000"))
        })
        .collect();
    for t in warm {
        assert_eq!(t.join().unwrap().0, 200);
    }
    let base = support::rss_kib(pid);

    // A client that reads nothing of a 64 MiB response: backpressure, not
    // buffering (16 KiB per direction plus kernel socket buffers).
    let mut slow = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    slow.write_all(b"GET /bytes?n=67108864 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let grown = support::rss_kib(pid).saturating_sub(base);
    assert!(grown < 8 * 1024, "grew {grown} KiB for one stalled reader");
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    while got < 64 << 20 {
        let n = slow.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {got} bytes");
        got += n;
    }
    drop(slow);

    // 2,000 routed keep-alive connections gone quiet hold no buffers. The
    // same 2,000 grew the RSS by 86 MiB with copy_bidirectional forwarding
    // and 45 MiB with the first splice forwarder (zeroed 16 KiB head
    // buffers kept for the connection's life); now about 5 MiB.
    let base = support::rss_kib(pid);
    let mut idle = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..2000 {
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(request).unwrap();
        let n = c.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        idle.push(c);
    }
    let grown = support::rss_kib(pid).saturating_sub(base);
    assert!(
        grown < 16 * 1024,
        "grew {grown} KiB for 2000 idle connections"
    );
}

#[test]
fn the_default_start_warns_about_nothing_and_a_piped_log_has_no_colours() {
    let s = Serve::start(1, &[]);
    assert_eq!(get(s.port, "/").0, 200);
    let log = s.log.lock().unwrap().clone();
    assert!(!log.contains('\x1b'), "ANSI escapes in a piped log:\n{log}");
    let noisy: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(noisy.is_empty(), "{noisy:#?}");
}
