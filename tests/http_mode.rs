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

/// A balancer in HTTP mode in front of `backend` alone (no workers, no
/// health checks, so it is always chosen), with `extra` flags.
fn serve_http_in_front_of(backend: &str, extra: &[&str]) -> Serve {
    let mut args = vec![
        "--mode",
        "http",
        "--backend",
        backend,
        "--health-check",
        "none",
    ];
    args.extend_from_slice(extra);
    Serve::start(0, &args)
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

/// Sends `requests` as streams of ONE HTTP/2 connection with prior
/// knowledge (hyper's client; curl 7.88 will not reuse a prior-knowledge
/// connection for a second URL), in turn; each answer's status and body.
fn h2_exchange(
    port: u16,
    requests: Vec<hyper::Request<http_body_util::Empty<hyper::body::Bytes>>>,
) -> Vec<(u16, String)> {
    use http_body_util::BodyExt;
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
        let mut answers = Vec::new();
        for req in requests {
            let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
                .await
                .expect("an answer in time")
                .expect("a response");
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            answers.push((status, String::from_utf8_lossy(&body).into_owned()));
        }
        answers
    })
}

/// Bodies of `n` GETs on one HTTP/2 connection, each answered `200`.
fn h2_bodies(port: u16, n: usize) -> Vec<String> {
    let requests = (0..n)
        .map(|_| {
            hyper::Request::get(format!("http://127.0.0.1:{port}/"))
                .body(http_body_util::Empty::new())
                .unwrap()
        })
        .collect();
    h2_exchange(port, requests)
        .into_iter()
        .map(|(status, body)| {
            assert_eq!(status, 200);
            body
        })
        .collect()
}

/// The status of one HTTP/2 GET whose `:authority` is `authority` and
/// which carries `host` as a header too, if given.
fn h2_status(port: u16, authority: &str, host: Option<&str>) -> u16 {
    let mut req = hyper::Request::get(format!("http://{authority}/"));
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let req = req.body(http_body_util::Empty::new()).unwrap();
    h2_exchange(port, vec![req])[0].0
}

#[test]
fn http2_host_must_agree_with_authority() {
    let s = Serve::start(1, &["--mode", "http"]);
    assert_eq!(h2_status(s.port, "localhost", None), 200);
    assert_eq!(h2_status(s.port, "localhost", Some("LocalHost")), 200);
    assert_eq!(h2_status(s.port, "localhost", Some("localhost:80")), 200);
    assert_eq!(h2_status(s.port, "localhost", Some("evil.example")), 400);
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
    let id = seen
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap_or_else(|| panic!("a request id in {seen}"));
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "16 hex digits: {id:?}"
    );
    assert!(
        !seen.contains("x-secret"),
        "a header named in Connection is hop-by-hop:\n{seen}"
    );
}

#[test]
fn no_backend_is_503_and_a_backend_that_closes_is_502() {
    let dead = support::free_ports(0);
    let s = serve_http_in_front_of(&format!("127.0.0.1:{dead}"), &[]);
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
    let s = serve_http_in_front_of(&closer.arg(), &[]);
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

/// A request with a body whose first backend refuses the connect goes to
/// another backend, body and all: nothing was sent, so nothing can be
/// duplicated.
#[test]
fn a_body_request_whose_connect_is_refused_goes_to_another_backend() {
    let dead = support::free_ports(0);
    let s = Serve::start(
        1,
        &[
            "--mode",
            "http",
            "--strategy",
            "builtin:round-robin",
            "--backend",
            &format!("127.0.0.1:{dead}"),
            "--health-check",
            "none",
        ],
    );
    for k in 0..6 {
        let body = format!("payload-{k}");
        let out = curl(&[
            "-s",
            "-w",
            " %{http_code}",
            "--data-binary",
            &body,
            &format!("http://127.0.0.1:{}/echo", s.port),
        ]);
        assert_eq!(out, format!("{body} 200"), "request {k}");
    }
}

/// Upstream HTTP/1.1 connections are kept and reused; one the backend
/// closed while idle is noticed when next taken, not sent on.
#[test]
fn upstream_connections_are_reused_and_ones_closed_by_the_backend_are_not() {
    use std::sync::atomic::Ordering;
    // `n` GETs on one keep-alive connection through a balancer in front of
    // `backend` alone; each answer's body and status.
    let through = |backend: &FakeBackend, n: usize| {
        let s = serve_http_in_front_of(&backend.arg(), &[]);
        let mut args = vec!["-w".to_string(), " %{http_code}\n".to_string()];
        args.extend((0..n).map(|_| format!("http://127.0.0.1:{}/", s.port)));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&args)
    };
    let keep = FakeBackend::body_reader();
    let out = through(&keep, 20);
    assert_eq!(out.matches(" 200").count(), 20, "{out}");
    assert_eq!(
        keep.accepted.load(Ordering::Relaxed),
        1,
        "one upstream connection"
    );

    // Answers, then closes without saying so (no `Connection: close`).
    let once = FakeBackend::start("127.0.0.1:0", |s| {
        use std::io::{BufRead, Write};
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
            line.clear();
        }
        let _ = (&s).write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce");
    });
    let out = through(&once, 10);
    assert_eq!(out.matches("once 200").count(), 10, "{out}");
    // One connection per request; one more for each request that met its
    // connection's close on the way (when this backend's thread was slow
    // to close, it goes again on a new one: the next test).
    let n = once.accepted.load(Ordering::Relaxed);
    assert!((10..=20).contains(&n), "{n} connections");
}

/// The keep-alive race: a backend closes an idle pooled connection just as
/// a request is written on it. A GET goes again on a new connection to the
/// same backend, and the backend is not counted as failing; a POST, which
/// the backend may have acted on, gets 502.
#[test]
fn a_request_that_meets_a_pooled_connections_close_goes_again_on_a_new_one() {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    // Answers the first request of each connection; reads the second and
    // closes without answering.
    let racy = FakeBackend::start("127.0.0.1:0", |s| {
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        for k in 0..2 {
            if read_request(&mut r).is_none() {
                return;
            }
            if k == 1 {
                return;
            }
            let _ = (&s).write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
        }
    });
    let s = serve_http_in_front_of(&racy.arg(), &["--eject-after-failures", "1"]);
    let url = format!("http://127.0.0.1:{}/", s.port);
    let out = curl(&["-w", " %{http_code}\n", &url, &url, &url]);
    assert_eq!(out.matches("first 200").count(), 3, "{out}");
    // A new connection for each request after the first: the second and
    // third each met a close on the reused one.
    assert_eq!(racy.accepted.load(Ordering::Relaxed), 3);
    let (code, body) = support::get(s.admin, "/status");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let b = &status["backends"][0];
    assert_eq!(b["up"], true, "not ejected: {b}");
    assert_eq!(b["failures_total"], 0, "not counted: {b}");

    // A POST meeting the same close is not sent again: one without a body
    // (served without hyper, `http/direct.rs`, as a small body would be)...
    let out = curl(&[
        "-w",
        " %{http_code}\n",
        &url,
        "--next",
        "-w",
        " %{http_code}\n",
        "-X",
        "POST",
        &url,
    ]);
    assert!(out.starts_with("first 200\n"), "{out}");
    assert!(out.ends_with(" 502\n"), "{out}");
    // ...and one with a body larger than that path holds, which hyper
    // serves from its own pool: the first opens a connection there, the
    // second meets its close.
    let large = "x".repeat(70 * 1024);
    let post = ["-w", " %{http_code}\n", "--data-binary", &large, &url];
    let mut args = post.to_vec();
    args.push("--next");
    args.extend(post);
    let out = curl(&args);
    assert!(out.starts_with("first 200\n"), "{out}");
    assert!(out.ends_with(" 502\n"), "{out}");
}

/// Reads one request from a fake backend's connection: its target and its
/// `Content-Length` body. `None` at the connection's end.
fn read_request(r: &mut impl std::io::BufRead) -> Option<(String, Vec<u8>)> {
    let mut line = String::new();
    let mut target = String::new();
    let mut length = 0usize;
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if target.is_empty() {
            target = line.split(' ').nth(1).unwrap_or("").to_string();
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    std::io::Read::read_exact(r, &mut body).ok()?;
    Some((target, body))
}

/// Writes `bytes` on a fresh connection and reads until the balancer
/// closes it (bounded): the whole answer.
fn raw(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn every_smuggling_probe_gets_400_and_a_close() {
    let s = Serve::start(1, &["--mode", "http"]);
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let probes = [
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd"
            .to_string(),
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd"
            .to_string(),
        format!(
            "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"
            .to_string(),
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"
            .to_string(),
        "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\0b\r\n\r\n".to_string(),
        "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n".to_string(),
        "GET / HTTP/1.1\r\nHost: a\r\nX\nA: b\r\n\r\n".to_string(),
        "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n folded\r\n\r\n".to_string(),
        "GET http://evil.example/ HTTP/1.1\r\nHost: a\r\n\r\n".to_string(),
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_string(),
        // Targets that are neither a path nor an absolute URI (hyper would
        // pass them on as `/`), and Host values that are no host.
        "GET abc HTTP/1.1\r\nHost: a\r\n\r\n".to_string(),
        "GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n".to_string(),
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n".to_string(),
        "GET / HTTP/1.1\r\nHost: x\\\r\n\r\n".to_string(),
        "GET / HTTP/1.1\r\nHost: x,for=6.6.6.6\r\n\r\n".to_string(),
    ];
    let good = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    // An upgrade the backend declines: the connection goes on as HTTP/1,
    // and what follows is checked like any other head.
    let declined = "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: nothing\r\n\r\n";
    for probe in &probes {
        // As the first request, and after a good one on the same connection.
        for before in ["", good, declined] {
            let answer = raw(s.port, format!("{before}{probe}").as_bytes());
            let answers: Vec<&str> = answer.split("HTTP/1.1 ").skip(1).map(|a| &a[..3]).collect();
            let want: &[&str] = if before.is_empty() {
                &["400"]
            } else {
                &["200", "400"]
            };
            assert_eq!(answers, want, "{probe:?} after {before:?}:\n{answer}");
            assert!(!answer.contains("smuggled"), "{answer}");
        }
    }
    // A request that only looks odd is served: absolute form naming Host,
    // chunked after another coding's name in a list is refused above, but
    // a plain chunked upload passes.
    let ok = raw(
        s.port,
        b"POST http://a/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.ends_with("abc\r\n0\r\n\r\n"), "{ok}");
    // Another coding before chunked would be lost in the re-chunking: 501.
    let answer = raw(
        s.port,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert!(
        answer.starts_with("HTTP/1.1 501 Not Implemented"),
        "{answer}"
    );
}

/// What reaches the backend for requests that are odd but valid: an
/// absolute URI naming Host with its scheme's default port, and an
/// HTTP/1.0 request without Host (which goes upstream as HTTP/1.1 and so
/// gets one: the backend's address).
#[test]
fn odd_but_valid_heads_reach_the_backend_well_formed() {
    use std::io::BufRead;
    // Answers each request with its head.
    let mirror = FakeBackend::start("127.0.0.1:0", |s| {
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        loop {
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
                head.len()
            );
            if (&s).write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
    });
    let s = Serve::start(0, &["--mode", "http", "--backend", &mirror.arg()]);
    let seen = raw(
        s.port,
        b"GET https://x:443/abs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen.contains("GET /abs HTTP/1.1\r\n"), "{seen}");
    let seen = raw(s.port, b"GET /old HTTP/1.0\r\n\r\n");
    assert!(
        seen.starts_with("HTTP/1.0 200") || seen.starts_with("HTTP/1.1 200"),
        "{seen}"
    );
    let host = format!("host: {}\r\n", mirror.addr);
    assert!(seen.to_ascii_lowercase().contains(&host), "{seen}");
    // Userinfo in an absolute target is no part of Host, nor sent on.
    let seen = raw(s.port, b"GET http://u:p@h.test/x HTTP/1.0\r\n\r\n");
    assert!(seen.contains(" 200 "), "{seen}");
    assert!(
        seen.to_ascii_lowercase().contains("host: h.test\r\n"),
        "{seen}"
    );
    assert!(!seen.contains("u:p"), "{seen}");
}

/// A response with trailers leaves its upstream connection in the pool
/// (hyper stops reading a body after its trailers: that is its end).
#[test]
fn responses_with_trailers_keep_their_upstream_connection() {
    use std::io::BufRead;
    let backend = FakeBackend::start("127.0.0.1:0", |s| {
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        loop {
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == "\r\n" {
                    break;
                }
            }
            let answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-t\r\n\r\n5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n";
            if (&s).write_all(answer).is_err() {
                return;
            }
        }
    });
    let s = serve_http_in_front_of(&backend.arg(), &[]);
    let url = format!("http://127.0.0.1:{}/", s.port);
    let out = curl(&["-w", " %{http_code}\n", &url, &url, &url]);
    assert_eq!(out.matches("hello 200").count(), 3, "{out}");
    assert_eq!(
        backend.accepted.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "one upstream connection"
    );
}

#[test]
fn slow_heads_get_408_on_any_request_and_idle_connections_close_quietly() {
    let s = Serve::start(
        1,
        &[
            "--mode",
            "http",
            "--head-timeout-ms",
            "400",
            "--keepalive-timeout-ms",
            "600",
        ],
    );
    // A good request, then a head that never ends.
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHo")
        .unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains("HTTP/1.1 408 Request Timeout"),
        "the second head timed out:\n{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // An idle keep-alive connection: closed after its timeout, no answer.
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    // A response that takes longer than the keep-alive timeout is not cut.
    let slow = raw(s.port, b"GET /slow?ms=1000 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(slow.starts_with("HTTP/1.1 200"), "{slow}");
    assert!(slow.contains("slept 1000 ms"), "{slow}");
}

#[test]
fn pipelined_requests_head_expect_continue_and_chunked_uploads_work() {
    let s = Serve::start(2, &["--mode", "http"]);
    let three = raw(
        s.port,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(three.matches("HTTP/1.1 200").count(), 3, "{three}");
    assert!(three.contains("\r\n\r\nhello"), "{three}");
    let url = format!("http://127.0.0.1:{}/", s.port);
    let head = curl(&["-I", &url]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let dir = support::TempDir::new("http-expect");
    let file = dir.0.join("body");
    let payload = "e".repeat(200 * 1024);
    std::fs::write(&file, &payload).unwrap();
    let echo = format!("http://127.0.0.1:{}/echo", s.port);
    let data = format!("@{}", file.display());
    let body = curl(&["-H", "Expect: 100-continue", "--data-binary", &data, &echo]);
    assert_eq!(body, payload, "Expect: 100-continue");
    let body = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &data,
        &echo,
    ]);
    assert_eq!(body, payload, "chunked upload");
}

#[test]
fn a_backend_killed_with_idle_pooled_connections_fails_over() {
    let ports = support::free_ports(2);
    let mut a = support::DemoWorker::start(0, ports);
    let _b = support::DemoWorker::start(1, ports + 1);
    let s = Serve::start(
        0,
        &[
            "--mode",
            "http",
            "--backend",
            &format!("127.0.0.1:{ports}"),
            "--backend",
            &format!("127.0.0.1:{}", ports + 1),
            "--health-check",
            "none",
        ],
    );
    // Both backends get pooled connections.
    let seen = keep_alive_workers(s.port, 4, &[]);
    assert!(seen.contains(&0) && seen.contains(&1), "{seen:?}");
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    // Each request is a fresh decision; those that pick the dead backend
    // go to the live one.
    let seen = keep_alive_workers(s.port, 6, &[]);
    assert_eq!(seen, vec![1; 6]);
}

#[test]
fn a_100_mib_download_to_a_slow_reader_keeps_memory_bounded() {
    let s = Serve::start(1, &["--mode", "http"]);
    let pid = s.child.id();
    // Warm the pools and allocator.
    let _ = curl(&[
        "-o",
        "/dev/null",
        &format!("http://127.0.0.1:{}/bytes?n=4000000", s.port),
    ]);
    let before = support::rss_kib(pid);
    let total: u64 = 100 << 20;
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(
        format!("GET /bytes?n={total} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    // Read a little, then stall while the backend could send it all.
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    while got < 1 << 20 {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0);
        got += n as u64;
    }
    std::thread::sleep(Duration::from_millis(800));
    let stalled = support::rss_kib(pid);
    loop {
        let n = c.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    assert!(got > total, "head and {total} body bytes, got {got}");
    assert!(
        stalled < before + 24 * 1024,
        "RSS grew from {before} KiB to {stalled} KiB while the client stalled"
    );
}

/// Established TCP connections (IPv4) whose remote port is `port`, from
/// /proc/net/tcp.
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3
                && f[3] == "01"
                && f[2]
                    .rsplit(':')
                    .next()
                    .is_some_and(|p| u16::from_str_radix(p, 16) == Ok(port))
        })
        .count()
}

/// A client that streams a large upload to an echoing backend without
/// reading the echo, then leaves: the upstream connection is closed, not
/// left waiting on a backend that waits on it.
#[test]
fn a_client_leaving_mid_upload_frees_the_upstream_connection() {
    let s = Serve::start(1, &["--mode", "http"]);
    let worker = s.base;
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    c.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 40000000\r\n\r\n")
        .unwrap();
    // Two seconds of writing, never reading: the echo fills this client's
    // buffers, then the balancer's, then the backend's.
    let chunk = vec![b'u'; 64 * 1024];
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        let _ = c.write(&chunk);
    }
    assert!(
        connections_to(worker) >= 1,
        "the upload goes through an upstream connection"
    );
    drop(c);
    support::eventually("the upstream connection to close", 10, || {
        connections_to(worker) == 0
    });
    // And the balancer goes on serving.
    assert_eq!(support::get(s.port, "/").0, 200);
}

/// A gRPC server (grpcio) on `port`, answering as `name`; killed on drop.
struct GrpcPeer(std::process::Child);

impl GrpcPeer {
    fn script() -> String {
        format!("{}/../tests/grpc/peer.py", env!("CARGO_MANIFEST_DIR"))
    }

    fn start(port: u16, name: &str) -> GrpcPeer {
        let child = std::process::Command::new("/usr/bin/python3")
            .args([&Self::script(), "server", &port.to_string(), name])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("python3 with grpcio (scripts/test-deps.sh installs it)");
        support::eventually("the gRPC server to listen", 20, || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        GrpcPeer(child)
    }
}

impl Drop for GrpcPeer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn grpc_unary_and_server_streaming_calls_pass_with_trailers_over_h2_upstream() {
    let ports = support::free_ports(2);
    let _a = GrpcPeer::start(ports, "a");
    let _b = GrpcPeer::start(ports + 1, "b");
    let (a, b) = (
        format!("127.0.0.1:{ports}"),
        format!("127.0.0.1:{}", ports + 1),
    );
    let base = [
        "--mode",
        "http",
        "--backend-protocol",
        "h2",
        "--backend",
        &a,
        "--backend",
        &b,
    ];
    grpc_calls(&Serve::start(0, &base), &[]);
    // The same over TLS terminated here (gRPC's own TLS client, HTTP/2 by
    // ALPN), still a decision per call.
    let dir = support::TempDir::new("grpc-tls");
    let (crt, key) = support::cert_pair(&dir.0, "grpc", "grpc.test");
    let mut tls = base.to_vec();
    tls.extend(["--tls-cert", &crt, "--tls-key", &key]);
    grpc_calls(&Serve::start(0, &tls), &[&crt, "grpc.test"]);
}

/// Runs the gRPC client through `s` (`tls`: the certificate to trust and
/// its name) and checks what it printed.
fn grpc_calls(s: &Serve, tls: &[&str]) {
    let out = std::process::Command::new("timeout")
        .args(["60", "/usr/bin/python3", &GrpcPeer::script(), "client"])
        .arg(s.port.to_string())
        .args(tls)
        .output()
        .expect("the gRPC client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One channel (one HTTP/2 connection), four unary calls: each a
    // decision, so both servers answer; the served-by trailer arrives.
    let unary: Vec<&str> = text.lines().filter(|l| l.starts_with("unary ")).collect();
    assert_eq!(unary.len(), 4, "{text}");
    for (i, line) in unary.iter().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (reply, trailer, code) = (f[1], f[2], f[3]);
        assert_eq!(code, "OK", "{line}");
        assert!(reply.ends_with(&format!(":ping{i}")), "{line}");
        assert_eq!(&reply[..1], trailer, "the trailer names the server: {line}");
    }
    let served: std::collections::HashSet<&str> = unary
        .iter()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(served.len(), 2, "round-robin per call: {text}");
    let stream = text
        .lines()
        .find(|l| l.starts_with("stream "))
        .unwrap_or_else(|| panic!("{text}"));
    let f: Vec<&str> = stream.split_whitespace().collect();
    let server = f[2];
    assert_eq!(
        f[1],
        format!("{server}:0,{server}:1,{server}:2"),
        "{stream}"
    );
    assert_eq!(f[3], "OK", "{stream}");
}

#[test]
fn client_faults_are_the_clients_and_odd_requests_get_clear_answers() {
    let s = Serve::start(
        2,
        &[
            "--mode",
            "auto",
            "--upstream-header-timeout-ms",
            "1500",
            "--head-timeout-ms",
            "1000",
            "--eject-after-failures",
            "2",
        ],
    );
    // A broken chunked body: one 400, and no backend pays for it.
    for _ in 0..6 {
        let a = raw(
            s.port,
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        );
        assert_eq!(a.matches("HTTP/1.1 ").count(), 1, "{a}");
        assert!(a.starts_with("HTTP/1.1 400"), "{a}");
    }
    assert!(!s.log().contains("ejected"), "{}", s.log());
    // Empty lines before the request line are HTTP (RFC 9112 2.2), so the
    // smuggling checks see it: not spliced through as opaque bytes.
    let a = raw(
        s.port,
        b"\r\nPOST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert!(a.starts_with("HTTP/1.1 400"), "{a}");
    let a = raw(
        s.port,
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    // HTTP/1.1 without Host, and CONNECT.
    let a = raw(s.port, b"GET / HTTP/1.1\r\n\r\n");
    assert!(a.starts_with("HTTP/1.1 400"), "{a}");
    let a = raw(
        s.port,
        b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n",
    );
    assert!(a.starts_with("HTTP/1.1 501"), "{a}");
    // A backend that answers only after the whole body.
    let reader = FakeBackend::body_reader();
    let s = Serve::start(
        0,
        &[
            "--mode",
            "http",
            "--backend",
            &reader.arg(),
            "--upstream-header-timeout-ms",
            "1500",
            // Gaps of 400 ms below, with room for a loaded machine.
            "--head-timeout-ms",
            "3000",
        ],
    );
    // An upload longer than the upstream header timeout is no backend
    // delay: 100 bytes every 400 ms for 2.4 s.
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 600\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(400));
        c.write_all(&[b'u'; 100]).unwrap();
    }
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.ends_with(&format!("got 600 bytes: {}", "u".repeat(600))),
        "{out}"
    );
    // A body that stops coming is the client's delay: 408, not 504.
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 600\r\n\r\nhalf")
        .unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
}

#[test]
fn an_idle_http2_connection_gets_a_goaway_and_a_busy_one_does_not() {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let s = Serve::start(1, &["--mode", "http", "--keepalive-timeout-ms", "400"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
            .await
            .unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        let conn = tokio::spawn(conn);
        // A stream open longer than the timeout is not idleness.
        let req = hyper::Request::get(format!("http://127.0.0.1:{}/slow?ms=1000", s.port))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
            .await
            .expect("an answer in time")
            .expect("a response");
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("slept 1000 ms"));
        // Then nothing: the server ends the connection (GOAWAY, close).
        tokio::time::timeout(Duration::from_secs(5), conn)
            .await
            .expect("the idle connection was ended by the server")
            .unwrap()
            .unwrap();
    });
}

#[test]
fn http_mode_closes_what_is_not_http_and_says_why() {
    let s = Serve::start(1, &["--mode", "http"]);
    assert_eq!(raw(s.port, b"PING\r\n"), "", "closed without an answer");
    // A TLS ClientHello with no certificate configured: closed too.
    let hello = [0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00];
    assert_eq!(raw(s.port, &hello), "");
    s.wait_for_log("kind=\"not_http\"", 5);
}

/// Requests without a body, or with a small one, skip hyper
/// (`http/direct.rs`), which follows the backend's framing itself: a body to the close, an HTTP/1.0 answer,
/// informational heads before the final one, 204 and HEAD with no body,
/// chunked with trailers, conflicting lengths (502), bytes after the body
/// (the connection is not reused), a body that stalls (cut after the body
/// timeout); a small body held whole, one cut short (400); `Connection`
/// naming `Content-Length` (no smuggling); and a request with a large body
/// on the same client connection (handed to hyper, which answers it and
/// every later request).
#[test]
fn requests_without_hyper_follow_every_response_framing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // Requests `/drop` took (it reads them and closes without answering).
    let dropped = Arc::new(AtomicUsize::new(0));
    let counter = dropped.clone();
    let backend = FakeBackend::start("127.0.0.1:0", move |s| {
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        // This connection sent bytes after a body: nothing may come on it.
        let mut tainted = false;
        for _ in 0..50 {
            let Some((target, body)) = read_request(&mut r) else {
                return;
            };
            let (answer, close): (&[u8], bool) = match target.as_str() {
                "/close" => (b"HTTP/1.1 200 OK\r\n\r\nuntil-close", true),
                "/http10" => (b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhttp10", true),
                "/early" => (
                    b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly",
                    false,
                ),
                "/empty" => (b"HTTP/1.1 204 No Content\r\n\r\n", false),
                "/head" => (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", false),
                "/chunked" => (
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n3\r\nchu\r\n4\r\nnked\r\n0\r\nx-sum: 7\r\n\r\n",
                    false,
                ),
                "/conflict" => (
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
                    true,
                ),
                "/drop" => {
                    counter.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                "/cl-list" => (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", false),
                "/status-42" => (b"HTTP/1.1 042 Odd\r\nContent-Length: 0\r\n\r\n", true),
                "/trickle" => {
                    // The head in small pieces, its end split across two.
                    let head = b"HTTP/1.1 200 OK\r\nX-Slow: 1\r\nContent-Length: 7\r\n\r";
                    for piece in head.chunks(5) {
                        let _ = (&s).write_all(piece);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    (b"\ntrickle", false)
                }
                "/cut-close" => {
                    let _ = (&s).write_all(b"HTTP/1.1 200 OK\r\n\r\npartial");
                    std::thread::sleep(Duration::from_secs(3));
                    return;
                }
                "/extra" => {
                    tainted = true;
                    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", false)
                }
                _ if tainted => (b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\ntainted", false),
                "/stall" => {
                    let _ = (&s).write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nst");
                    std::thread::sleep(Duration::from_secs(3));
                    return;
                }
                "/echo" => {
                    let mut a = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                        .into_bytes();
                    a.extend_from_slice(&body);
                    let _ = (&s).write_all(&a);
                    continue;
                }
                _ => (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
            };
            let _ = (&s).write_all(answer);
            if close {
                return;
            }
        }
    });
    let dir = support::TempDir::new("direct");
    let log = dir.0.join("access.log");
    let s = serve_http_in_front_of(
        &backend.arg(),
        &[
            "--upstream-body-timeout-ms",
            "500",
            "--head-timeout-ms",
            "1000",
            "--access-log",
            log.to_str().unwrap(),
        ],
    );
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", s.port);
    let fmt = " %{http_code}\n";

    // Chunked passes as it came, trailers and all, over one upstream
    // connection (the
    // first requests of the test: nothing is pooled before them).
    let before = backend.accepted.load(Ordering::Relaxed);
    let out = curl(&["--raw", "-w", fmt, &url("/chunked"), &url("/chunked")]);
    assert_eq!(
        out.matches("3\r\nchu\r\n4\r\nnked\r\n0\r\nx-sum: 7\r\n\r\n 200\n")
            .count(),
        2,
        "{out:?}"
    );
    assert_eq!(backend.accepted.load(Ordering::Relaxed), before + 1);

    let out = curl(&["-w", fmt, &url("/close"), &url("/http10"), &url("/")]);
    assert_eq!(out, "until-close 200\nhttp10 200\nok 200\n");
    let out = curl(&["-i", &url("/close")]);
    assert!(
        out.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{out}"
    );

    let out = curl(&["-i", &url("/early")]);
    let at = |t: &str| out.find(t).unwrap_or_else(|| panic!("{t} in {out}"));
    assert!(at("103 Early Hints") < at("200 OK"), "{out}");
    assert!(
        out.contains("rel=preload") && out.ends_with("early"),
        "{out}"
    );

    let out = curl(&["-w", fmt, &url("/empty"), "-I", &url("/head")]);
    assert!(out.contains("204 No Content\r\n\r\n 204\n"), "{out}");
    assert!(out.ends_with("content-length: 100\r\n\r\n 200\n"), "{out}");

    let out = curl(&[
        "-w",
        fmt,
        &url("/conflict"),
        &url("/cl-list"),
        &url("/status-42"),
    ]);
    assert!(
        out.ends_with(" 502\nok 200\nthe backend failed to answer\n 502\n"),
        "{out}"
    );
    // The list goes on as one value.
    let out = curl(&["-i", &url("/cl-list")]).to_ascii_lowercase();
    assert!(out.contains("\r\ncontent-length: 2\r\n"), "{out}");
    let out = curl(&["-w", fmt, &url("/trickle"), &url("/trickle")]);
    assert_eq!(out, "trickle 200\ntrickle 200\n");
    // A body that runs to the close, cut by the body timeout: the client
    // sees a reset, not an end it could take for the whole body.
    let cut = std::process::Command::new("curl")
        .args(["-s", "--max-time", "5", &url("/cut-close")])
        .output()
        .expect("curl");
    assert_eq!(cut.stdout, b"partial");
    assert_eq!(cut.status.code(), Some(56), "a reset: {cut:?}");
    // A request with a body is not sent again once it may have reached a
    // backend, idempotent or not (as in the hyper path).
    let out = curl(&[
        "-w",
        fmt,
        "-X",
        "PUT",
        "--data-binary",
        "once",
        &url("/drop"),
    ]);
    assert_eq!(out, "the backend failed to answer\n 502\n");
    assert_eq!(dropped.load(Ordering::Relaxed), 1);

    // What followed the body is dropped with the connection.
    let out = curl(&["-w", fmt, &url("/extra"), &url("/"), &url("/"), &url("/")]);
    assert_eq!(out, "ok 200\nok 200\nok 200\nok 200\n");

    let started = std::time::Instant::now();
    let stalled = std::process::Command::new("curl")
        .args(["-s", "--max-time", "5", &url("/stall")])
        .output()
        .expect("curl");
    // Cut short of its length (18), by a reset (56): either way not whole.
    assert!(
        matches!(stalled.status.code(), Some(18 | 56)),
        "a cut body: {stalled:?}"
    );
    assert_eq!(stalled.stdout, b"st");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut by the body timeout"
    );

    // A small body is held whole and goes with its head; a body cut short
    // gets 400, one that stalls 408, and the connection closes.
    let out = curl(&[
        "-w",
        fmt,
        "--data-binary",
        "small",
        &url("/echo"),
        "--next",
        "-w",
        fmt,
        &url("/"),
    ]);
    assert_eq!(out, "small 200\nok 200\n");
    let stalled = raw(
        s.port,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nshort",
    );
    assert!(stalled.starts_with("HTTP/1.1 408 "), "{stalled}");
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nshort")
        .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut c, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");

    // `Connection` may not take the framing off: the body still goes as
    // the body, never as a request of its own.
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let probe = format!(
        "POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close, content-length\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    let out = raw(s.port, probe.as_bytes());
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    assert!(
        out.starts_with("HTTP/1.1 200 ") && out.ends_with(smuggled),
        "{out}"
    );

    // GET, then a POST with a body (hyper takes the connection), then GET.
    let big = "b".repeat(70 * 1024);
    let out = curl(&[
        "-w",
        fmt,
        &url("/"),
        "--next",
        "-w",
        fmt,
        "--data-binary",
        &big,
        &url("/echo"),
        "--next",
        "-w",
        fmt,
        &url("/"),
    ]);
    assert_eq!(out, format!("ok 200\n{big} 200\nok 200\n"));

    // The access log counts a chunked body's payload, not its framing.
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    support::eventually("the access log's lines", 5, || read().contains("\"/echo\""));
    let lines = read();
    let chunked: Vec<&str> = lines
        .lines()
        .filter(|l| l.contains("\"/chunked\""))
        .collect();
    assert_eq!(chunked.len(), 2, "{lines}");
    assert!(
        chunked.iter().all(|l| l.contains("\"bytes_out\":7,")),
        "{lines}"
    );
}

/// Both paths: a backend answering with both `Content-Length` and
/// `Transfer-Encoding` has the length dropped (the body is the chunks; the
/// client would wait for bytes that never come), and `Connection: host`
/// leaves `Host` as the client sent it. HTTP/1.0 (`curl -0`) takes the
/// hyper path, HTTP/1.1 the direct one.
#[test]
fn a_length_beside_chunked_is_dropped_and_connection_cannot_take_host() {
    use std::io::{BufRead, Write};
    let backend = FakeBackend::start("127.0.0.1:0", |s| {
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        for _ in 0..10 {
            let (mut target, mut host) = (String::new(), String::new());
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if target.is_empty() {
                    target = line.split(' ').nth(1).unwrap_or("").to_string();
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("host:") {
                    host = v.trim().to_string();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let answer = match target.as_str() {
                "/both" => "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_string(),
                _ => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{host}", host.len()),
            };
            if (&s).write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
    });
    let s = serve_http_in_front_of(&backend.arg(), &[]);
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", s.port);
    for version in ["-0", "--http1.1"] {
        let out = curl(&[version, "-w", " %{http_code}\n", &url("/both")]);
        assert_eq!(out, "abc 200\n", "{version}");
        let out = curl(&[
            version,
            "-H",
            "Connection: host",
            "-H",
            "Host: app.test",
            &url("/host"),
        ]);
        assert_eq!(out, "app.test", "{version}");
    }
}
