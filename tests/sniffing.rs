//! What the balancer does with a connection's first bytes, seen from real
//! clients on loopback: late clients get every HTTP check, slowloris gets
//! 408 and never reaches a backend, Redis inline commands pass through,
//! garbage is routed or rejected as configured. Every loop is bounded.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{FakeBackend, Serve};

fn connect(port: u16) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

/// Waits `delay`, sends `bytes`, half-closes when asked, reads to the end.
fn late(port: u16, delay: Duration, bytes: &[u8], half_close: bool) -> String {
    let mut c = connect(port);
    std::thread::sleep(delay);
    c.write_all(bytes).unwrap();
    if half_close {
        c.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn clients_whose_first_bytes_come_late_get_every_http_check() {
    // 100 ms of silence first: far past the old 10 ms inspection window.
    let s = Serve::start(1, &["--head-timeout-ms", "1500"]);
    let wait = Duration::from_millis(100);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert!(late(s.port, wait, big.as_bytes(), false).starts_with("HTTP/1.1 431 "));
    let bad = late(s.port, wait, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", false);
    assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
    let started = Instant::now();
    let slow = late(s.port, wait, b"GET / HTTP/1.1\r\nHost: x\r\n", false);
    assert!(slow.starts_with("HTTP/1.1 408 "), "{slow}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A CRLF-injected path: a line that can only be HTTP, broken: 400.
    let injected = late(s.port, wait, b"GET /a\r\nX: y HTTP/1.1\r\n\r\n", true);
    assert!(injected.starts_with("HTTP/1.1 400 "), "{injected}");
    // An absolute-form request line that trickles in is HTTP too: 408.
    let absolute = late(s.port, wait, b"GET http://a.example/x HTT", false);
    assert!(absolute.starts_with("HTTP/1.1 408 "), "{absolute}");
    let ok = late(
        s.port,
        wait,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        false,
    );
    assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
    // Silence to the end: closed without an answer after the head timeout.
    let mut c = connect(s.port);
    let started = Instant::now();
    let mut buf = [0u8; 64];
    assert_eq!(c.read(&mut buf).unwrap(), 0);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1300) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

#[test]
fn reject_still_serves_a_late_http_client() {
    let s = Serve::start(1, &["--opaque", "reject"]);
    let ok = late(
        s.port,
        Duration::from_millis(100),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        false,
    );
    assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
    let closed = late(
        s.port,
        Duration::from_millis(100),
        b"\x00\x01\x02garbage\r\n",
        true,
    );
    assert_eq!(closed, "", "opaque bytes are closed without an answer");
}

#[test]
fn slowloris_gets_408_and_never_reaches_a_backend() {
    let backend = FakeBackend::echo();
    let s = Serve::start(
        0,
        &[
            "--backend",
            &backend.arg(),
            "--health-check",
            "none",
            "--head-timeout-ms",
            "1200",
        ],
    );
    // 200 clients, each a request line and then a header every 200 ms,
    // never finishing the head.
    let mut clients: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut c = connect(s.port);
            c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
            c
        })
        .collect();
    for k in 0..4 {
        std::thread::sleep(Duration::from_millis(200));
        for c in &mut clients {
            let _ = c.write_all(format!("X-{k}: y\r\n").as_bytes());
        }
    }
    let mut timeouts = 0;
    for mut c in clients {
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        timeouts += usize::from(out.starts_with(b"HTTP/1.1 408 "));
    }
    assert_eq!(timeouts, 200, "every slow client gets 408");
    assert_eq!(
        backend.accepted.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "none of them reached the backend"
    );
}

/// A Redis server on a free loopback port, stopped on drop.
struct Redis(std::process::Child, u16);

impl Redis {
    fn start() -> Redis {
        let port = support::free_ports(0);
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server; scripts/test.sh installs it)");
        support::eventually("redis to listen", 10, || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Redis(child, port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("timeout")
        .args(["10", "redis-cli", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (Debian's redis-tools; scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn redis_clients_and_inline_commands_pass_through() {
    let redis = Redis::start();
    {
        let s = Serve::start(0, &["--backend", &format!("127.0.0.1:{}", redis.1)]);
        // The real client (RESP arrays).
        assert_eq!(redis_cli(s.port, &["SET", "foo", "bar"]), "OK");
        assert_eq!(redis_cli(s.port, &["GET", "foo"]), "bar");
        // Inline commands, as telnet-style tools send them: an upper-case
        // word and a space, but no HTTP version, so not HTTP.
        let mut c = connect(s.port);
        let read = |c: &mut TcpStream, want: &str| {
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            while !got.ends_with(b"\r\n") || got.len() < want.len() {
                let n = c.read(&mut buf).unwrap();
                assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(String::from_utf8_lossy(&got), want);
        };
        c.write_all(b"SET foo baz\r\n").unwrap();
        read(&mut c, "+OK\r\n");
        c.write_all(b"GET foo\r\n").unwrap();
        read(&mut c, "$3\r\nbaz\r\n");
        c.write_all(b"DEL foo\r\n").unwrap();
        read(&mut c, ":1\r\n");
    }
}

#[test]
fn garbage_bytes_are_routed_untouched_or_rejected_per_config() {
    let echo = FakeBackend::echo();
    let s = Serve::start(0, &["--backend", &echo.arg(), "--health-check", "none"]);
    let garbage = b"\x00\x01\x02garbage\r\n\r\n\xff";
    let back = late(s.port, Duration::ZERO, garbage, true);
    assert_eq!(
        back.as_bytes(),
        String::from_utf8_lossy(garbage).as_bytes(),
        "the backend saw them untouched"
    );
    drop(s);
    let s = Serve::start(
        0,
        &[
            "--backend",
            &echo.arg(),
            "--health-check",
            "none",
            "--opaque",
            "reject",
        ],
    );
    assert_eq!(late(s.port, Duration::ZERO, garbage, true), "");
    assert_eq!(echo.accepted.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn refused_opaque_connects_are_retried_and_the_cause_is_logged() {
    let dead = support::free_ports(0);
    let echo = FakeBackend::echo();
    // A server-speaks-first backend: greets, then echoes.
    let greeter = FakeBackend::start("127.0.0.1:0", |mut s| {
        let _ = s.write_all(b"220 hello\r\n");
        let mut r = s.try_clone().unwrap();
        let _ = std::io::copy(&mut r, &mut s);
    });
    let dead_arg = format!("127.0.0.1:{dead}");
    // Opaque bytes: the refusal shows on the first write.
    let s = Serve::start(
        0,
        &[
            "--backend",
            &dead_arg,
            "--backend",
            &echo.arg(),
            "--health-check",
            "none",
        ],
    );
    for i in 0..6 {
        let msg = format!("\x01opaque {i}");
        assert_eq!(late(s.port, Duration::ZERO, msg.as_bytes(), true), msg);
    }
    s.wait_for_log(&format!("connect {dead_arg}: Connection refused"), 5);
    drop(s);
    // Nothing to write (server speaks first): the refusal is asked of the
    // socket.
    let s = Serve::start(
        0,
        &[
            "--backend",
            &dead_arg,
            "--backend",
            &greeter.arg(),
            "--health-check",
            "none",
            "--server-first-after-ms",
            "50",
        ],
    );
    for _ in 0..6 {
        let mut c = connect(s.port);
        let mut buf = [0u8; 11];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"220 hello\r\n");
    }
    s.wait_for_log("backend attempt failed", 5);
}

/// The kernel holds a new connection until its client has sent something
/// (`TCP_DEFER_ACCEPT`): a silent one stays half-open on the balancer's side
/// and takes nothing of it, and is served as soon as it speaks. Where
/// server-first protocols are routed, whose clients wait for the server,
/// connections are accepted at once.
#[test]
fn connections_are_accepted_once_their_clients_speak_unless_servers_speak_first() {
    // A few at once: under a parallel test run some silent connections
    // were seen established early (cause not found), so deferral shows as
    // any of them half-open (`03`), and its absence as none.
    let half_open = |conns: &[TcpStream]| {
        let got: Vec<_> = conns.iter().map(support::server_side_state).collect();
        (got.iter().any(|g| g.as_deref() == Some("03")), got)
    };
    let s = Serve::start(1, &[]);
    let mut silent: Vec<TcpStream> = (0..4).map(|_| connect(s.port)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let (deferred, got) = half_open(&silent);
    assert!(deferred, "{got:?}");
    let mut c = silent.pop().unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    drop(s);

    let s = Serve::start(1, &["--server-first-after-ms", "50"]);
    let conns: Vec<TcpStream> = (0..4).map(|_| connect(s.port)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let (deferred, got) = half_open(&conns);
    assert!(!deferred && got.iter().all(Option::is_some), "{got:?}");
}
