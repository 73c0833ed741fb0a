//! HTTP mode (#9, first slice): a decision for every request, over one
//! keep-alive connection, HTTP/1.1 and HTTP/2 with prior knowledge, with
//! real clients (curl, a WebSocket client) and real workers on loopback.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{FakeBackend, Serve, worker_of};

/// `curl` with `args`, bounded; returns stdout.
fn curl(args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl (scripts/test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Worker indexes of the answers to `n` requests on ONE connection.
fn keep_alive_workers(port: u16, n: usize, extra: &[&str]) -> Vec<u32> {
    let url = format!("http://127.0.0.1:{port}/");
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(std::iter::repeat_n(url.as_str(), n));
    // -w prints after each response: count the connections curl opened.
    let out = curl(&[&args[..], &["-w", "\nconnects=%{num_connects}\n"]].concat());
    let workers: Vec<u32> = out
        .lines()
        .filter(|l| l.starts_with("worker "))
        .map(|l| worker_of(l).0)
        .collect();
    let connects: u32 = out
        .lines()
        .filter_map(|l| l.strip_prefix("connects="))
        .map(|v| v.parse::<u32>().unwrap())
        .sum();
    assert_eq!(connects, 1, "one connection for all requests:\n{out}");
    workers
}

#[test]
fn one_keep_alive_connection_is_spread_over_the_workers_in_http_and_auto_mode() {
    for mode in ["http", "auto"] {
        let s = Serve::start(2, &["--mode", mode]);
        let workers = keep_alive_workers(s.port, 10, &[]);
        assert_eq!(workers.len(), 10, "{mode}");
        let zeros = workers.iter().filter(|&&w| w == 0).count();
        assert_eq!(zeros, 5, "{mode}: round-robin per request: {workers:?}");
    }
    // TCP mode: the whole connection stays on its first backend.
    let s = Serve::start(2, &["--mode", "tcp"]);
    let workers = keep_alive_workers(s.port, 6, &[]);
    assert!(workers.iter().all(|&w| w == workers[0]), "{workers:?}");
}

/// Bodies of `n` GETs sent as streams of ONE HTTP/2 connection with prior
/// knowledge (hyper's client; curl 7.88 will not reuse a prior-knowledge
/// connection for a second URL).
fn h2_bodies(port: u16, n: usize) -> Vec<String> {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        let mut bodies = Vec::new();
        for _ in 0..n {
            let req = hyper::Request::get(format!("http://127.0.0.1:{port}/"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
                .await
                .expect("an answer in time")
                .expect("a response");
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            bodies.push(String::from_utf8_lossy(&body).into_owned());
        }
        bodies
    })
}

#[test]
fn http2_with_prior_knowledge_is_a_decision_per_request() {
    let s = Serve::start(2, &["--mode", "http"]);
    let workers: Vec<u32> = h2_bodies(s.port, 6)
        .iter()
        .map(|b| worker_of(b).0)
        .collect();
    assert_eq!(
        workers.iter().filter(|&&w| w == 1).count(),
        3,
        "{workers:?}"
    );
}

#[test]
fn bodies_stream_both_ways_and_websockets_upgrade() {
    use tokio_tungstenite::tungstenite::{Message, client};
    let s = Serve::start(1, &["--mode", "http"]);
    let payload = "p".repeat(300 * 1024);
    let dir = support::TempDir::new("http-body");
    let file = dir.0.join("payload");
    std::fs::write(&file, &payload).unwrap();
    let body = curl(&[
        "--data-binary",
        &format!("@{}", file.display()),
        "-H",
        "Content-Type: application/octet-stream",
        &format!("http://127.0.0.1:{}/echo", s.port),
    ]);
    assert_eq!(body.len(), payload.len());
    let stream = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut ws, resp) = client(format!("ws://127.0.0.1:{}/ws", s.port), stream).expect("upgrade");
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        ws.send(Message::text(format!("ping {i}"))).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(format!("ping {i}")));
    }
}

#[test]
fn the_backend_learns_who_the_client_is_and_hop_by_hop_headers_stop_here() {
    // Answers with the request head it received.
    let mirror = FakeBackend::start("127.0.0.1:0", |mut s| {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap_or(0);
            if n == 0 {
                return;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            head.len()
        );
        let _ = s.write_all(resp.as_bytes());
        let _ = s.write_all(&head);
    });
    let s = Serve::start(
        0,
        &["--mode", "http", "--backend", &mirror.arg(), "--request-id"],
    );
    let seen = curl(&[
        "-H",
        "X-Forwarded-For: 6.6.6.6",
        "-H",
        "Connection: keep-alive, X-Secret",
        "-H",
        "X-Secret: 1",
        &format!("http://127.0.0.1:{}/who", s.port),
    ])
    .to_ascii_lowercase();
    assert!(
        seen.contains("x-forwarded-for: 127.0.0.1\r\n"),
        "replaced, not trusted:\n{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http\r\n"), "{seen}");
    assert!(
        seen.contains("forwarded: for=127.0.0.1;proto=http;host="),
        "{seen}"
    );
    assert!(seen.contains("x-request-id: "), "{seen}");
    assert!(
        !seen.contains("x-secret"),
        "a header named in Connection is hop-by-hop:\n{seen}"
    );
}

#[test]
fn no_backend_is_503_and_a_backend_that_closes_is_502() {
    let dead = support::free_ports(0);
    let s = Serve::start(
        0,
        &[
            "--mode",
            "http",
            "--backend",
            &format!("127.0.0.1:{dead}"),
            "--health-check",
            "none",
        ],
    );
    let code = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://127.0.0.1:{}/", s.port),
    ]);
    assert_eq!(code, "503");
    drop(s);
    let closer = FakeBackend::closer();
    let s = Serve::start(
        0,
        &[
            "--mode",
            "http",
            "--backend",
            &closer.arg(),
            "--health-check",
            "none",
        ],
    );
    let code = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--data",
        "x=1",
        &format!("http://127.0.0.1:{}/", s.port),
    ]);
    assert_eq!(code, "502");
}
