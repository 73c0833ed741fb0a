//! A TLS ClientHello is routed by its SNI (consistent hash on `sni`) to a TLS
//! backend, and the bytes arrive untouched: the client completes a real
//! handshake with the backend's own certificate. Uses the `openssl` command
//! for backends and client, so the test needs no TLS stack of its own.

mod support;

use std::process::{Command, Stdio};

use support::{Serve, TempDir, cert_pair, eventually, free_ports};

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One worker in HTTP mode terminating TLS with one certificate pair, and
/// `extra` flags.
fn serve_https(crt: &str, key: &str, extra: &[&str]) -> Serve {
    let mut args = vec!["--mode", "http", "--tls-cert", crt, "--tls-key", key];
    args.extend_from_slice(extra);
    Serve::start(1, &args)
}

/// Which backend's certificate a handshake through port `port` with `sni` saw.
fn handshake(port: u16, sni: &str) -> Option<String> {
    // Bounded: a handshake that never completes fails the test, not CI.
    let out = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-servername", sni])
        .stdin(Stdio::null())
        .output()
        .expect("timeout and openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("subject=CN = ")
                .or_else(|| l.strip_prefix("subject=CN="))
        })
        .map(str::to_string)
}

#[test]
fn tls_is_routed_by_sni_and_passed_through_untouched() {
    let dir = TempDir::new("tls");
    let base = free_ports(1);
    let mut servers = Vec::new();
    let mut backends = Vec::new();
    for i in 0..2u16 {
        let (cert, key) = cert_pair(&dir.0, &format!("c{i}"), &format!("backend{i}"));
        let port = base + i;
        let child = Command::new("openssl")
            .args([
                "s_server",
                "-accept",
                &format!("127.0.0.1:{port}"),
                "-www",
                "-quiet",
            ])
            .args(["-cert", &cert, "-key", &key])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        servers.push(Kill(child));
        backends.push(format!("127.0.0.1:{port}"));
    }
    for b in &backends {
        eventually("the TLS backends to listen", 10, || {
            std::net::TcpStream::connect(b).is_ok()
        });
    }
    let s = Serve::start(
        0,
        &[
            "--backend",
            &backends[0],
            "--backend",
            &backends[1],
            "--strategy",
            "builtin:consistent-hash",
            "--strategy-config",
            // A loose load bound: a connection still closing must not move
            // a name, this test is about the SNI key.
            "sni,load=1000",
        ],
    );
    // Backend ids hash their addresses, and the ports are random, so which
    // names share a backend changes from run to run: 32 names all landing
    // on one of two backends has odds of 2^-31 (8 names failed once in CI).
    let names: Vec<String> = (0..32).map(|i| format!("tenant{i}.example.com")).collect();
    let mut seen = std::collections::HashSet::new();
    for name in &names {
        let first = handshake(s.port, name).expect("a complete handshake through the balancer");
        assert_eq!(
            handshake(s.port, name).as_deref(),
            Some(first.as_str()),
            "{name} moved"
        );
        seen.insert(first);
    }
    assert_eq!(
        seen.len(),
        2,
        "SNI hashing should use both backends: {seen:?}"
    );
}

/// `curl` over TLS to `name` (resolved to loopback), bounded; stdout.
fn curl_tls(port: u16, name: &str, args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "--resolve"])
        .arg(format!("{name}:{port}:127.0.0.1"))
        .args(args)
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tls_is_terminated_with_certificates_by_sni_and_alpn_picks_http2() {
    let dir = TempDir::new("tls-term");
    let (a_crt, a_key) = cert_pair(&dir.0, "a", "a.test");
    let (b_crt, b_key) = cert_pair(&dir.0, "b", "b.test");
    let s = Serve::start(
        2,
        &[
            "--mode",
            "auto",
            "--tls-cert",
            &a_crt,
            "--tls-key",
            &a_key,
            "--tls-cert",
            &b_crt,
            "--tls-key",
            &b_key,
        ],
    );
    // SNI chooses the pair; an unknown name gets the first.
    assert_eq!(handshake(s.port, "b.test").as_deref(), Some("b.test"));
    assert_eq!(handshake(s.port, "a.test").as_deref(), Some("a.test"));
    assert_eq!(handshake(s.port, "other.test").as_deref(), Some("a.test"));
    // ALPN: HTTP/2 and HTTP/1.1 both get a decision per request on one
    // connection.
    for proto in ["--http2", "--http1.1"] {
        let url = format!("https://b.test:{}/", s.port);
        let mut args = vec![proto, "-w", "\nv=%{http_version} c=%{num_connects}\n"];
        args.extend(std::iter::repeat_n(url.as_str(), 4));
        let out = curl_tls(s.port, "b.test", &args);
        let workers: Vec<u32> = out
            .lines()
            .filter(|l| l.starts_with("worker "))
            .map(|l| support::worker_of(l).0)
            .collect();
        assert_eq!(workers.len(), 4, "{out}");
        assert_eq!(
            workers.iter().filter(|&&w| w == 0).count(),
            2,
            "{proto}: {out}"
        );
        let want = if proto == "--http2" { "v=2" } else { "v=1.1" };
        assert!(out.contains(want), "{proto}: {out}");
        let connects: usize = out.matches("c=1").count();
        assert_eq!(connects, 1, "one connection: {out}");
    }
}

/// A TLS client that trusts any certificate (the test checks which one).
mod insecure {
    use std::sync::Arc;

    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    #[derive(Debug)]
    pub struct AnyCert(pub Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            msg: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                msg,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            msg: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                msg,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    pub fn config(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Arc::new(cfg)
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

fn tls_connect(port: u16, name: &str) -> Tls {
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let conn = rustls::ClientConnection::new(
        insecure::config(&[b"http/1.1"]),
        name.to_string().try_into().unwrap(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// One keep-alive GET on `tls`; the status line.
fn tls_get(tls: &mut Tls) -> String {
    use std::io::{BufRead, Read, Write};
    tls.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    let mut r = std::io::BufReader::new(tls);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let mut len = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    status
}

fn leaf(tls: &Tls) -> Vec<u8> {
    tls.conn.peer_certificates().unwrap()[0].to_vec()
}

/// An expired certificate loads (clients that accept it are served) with
/// a warning that names the file and the date.
#[test]
fn an_expired_certificate_is_served_with_a_warning() {
    let dir = TempDir::new("tls-expired");
    let mut params = rcgen::CertificateParams::new(vec!["old.test".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (crt, pem) = (dir.0.join("old.crt"), dir.0.join("old.key"));
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&pem, key.serialize_pem()).unwrap();
    let s = serve_https(crt.to_str().unwrap(), pem.to_str().unwrap(), &[]);
    s.wait_for_log("certificate has expired; clients will refuse it", 10);
    assert!(s.log().contains("old.crt"), "{}", s.log());
    let mut tls = tls_connect(s.port, "old.test");
    assert!(tls_get(&mut tls).starts_with("HTTP/1.1 200"));
}

/// A TLS client that completes its handshake and then says nothing is
/// closed after the head timeout, as a silent plain client is, not kept
/// for the keep-alive timeout of a connection that was served.
#[test]
fn a_silent_client_after_the_tls_handshake_gets_the_head_timeout() {
    use std::io::Read;
    let dir = TempDir::new("tls-silent");
    let (crt, key) = cert_pair(&dir.0, "a", "a.test");
    let s = serve_https(
        &crt,
        &key,
        &[
            "--head-timeout-ms",
            "700",
            "--keepalive-timeout-ms",
            "30000",
        ],
    );
    let mut silent = tls_connect(s.port, "a.test");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    // The close: end of stream or an error, well before 10 s.
    let n = silent.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "nothing but the close");
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(8),
        "closed after {waited:?}"
    );
    // A client that was served waits for the keep-alive timeout instead.
    let mut served = tls_connect(s.port, "a.test");
    assert!(tls_get(&mut served).starts_with("HTTP/1.1 200"));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(tls_get(&mut served).starts_with("HTTP/1.1 200"));
}

#[test]
fn a_certificate_replaced_on_disk_is_served_while_open_connections_stay() {
    let dir = TempDir::new("tls-reload");
    let (crt, key) = cert_pair(&dir.0, "a", "a.test");
    let s = serve_https(&crt, &key, &[]);
    let mut open = tls_connect(s.port, "a.test");
    assert!(tls_get(&mut open).starts_with("HTTP/1.1 200"));
    let first = leaf(&open);
    cert_pair(&dir.0, "a", "a.test");
    eventually("the new certificate to be served", 15, || {
        leaf(&tls_connect(s.port, "a.test")) != first
    });
    let second = leaf(&tls_connect(s.port, "a.test"));
    // The connection opened before the swap still serves requests.
    assert!(tls_get(&mut open).starts_with("HTTP/1.1 200"));
    // A broken file is refused with the reason; the last good one serves.
    std::fs::write(&crt, "not a certificate").unwrap();
    s.wait_for_log("certificates rejected", 15);
    s.wait_for_log("a.crt", 1);
    assert_eq!(leaf(&tls_connect(s.port, "a.test")), second);
    assert!(tls_get(&mut open).starts_with("HTTP/1.1 200"));
}

#[test]
fn http3_routes_each_request_of_one_quic_connection() {
    use hyper::body::{Buf, Bytes};
    let s = Serve::start(2, &["--mode", "auto", "--h3"]);
    s.wait_for_log("HTTP/3 listening", 10);
    // TCP responses point browsers to HTTP/3.
    let head = curl_tls(
        s.port,
        "localhost",
        &["-I", &format!("http://localhost:{}/", s.port)],
    );
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("alt-svc: h3=\":{}\"", s.port)),
        "{head}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = s.port;
    let workers: Vec<u32> = rt.block_on(async move {
        let mut tls = (*insecure::config(&[b"h3"])).clone();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(quic)));
        let conn = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            endpoint
                .connect(([127, 0, 0, 1], port).into(), "localhost")
                .unwrap(),
        )
        .await
        .expect("QUIC handshake in time")
        .unwrap();
        let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn))
            .await
            .unwrap();
        tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
        let mut workers = Vec::new();
        for _ in 0..6 {
            let req = hyper::Request::get(format!("https://localhost:{port}/"))
                .body(())
                .unwrap();
            let mut stream = send.send_request(req).await.unwrap();
            stream.finish().await.unwrap();
            let resp =
                tokio::time::timeout(std::time::Duration::from_secs(10), stream.recv_response())
                    .await
                    .expect("an answer in time")
                    .unwrap();
            assert_eq!(resp.status(), 200);
            let mut body = Vec::new();
            while let Some(mut chunk) = stream.recv_data().await.unwrap() {
                body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
            }
            workers.push(support::worker_of(&String::from_utf8_lossy(&body)).0);
        }
        // And a body goes up and comes back.
        let req = hyper::Request::post(format!("https://localhost:{port}/echo"))
            .body(())
            .unwrap();
        let mut stream = send.send_request(req).await.unwrap();
        stream
            .send_data(Bytes::from_static(b"over quic"))
            .await
            .unwrap();
        stream.finish().await.unwrap();
        let resp = stream.recv_response().await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await.unwrap() {
            body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
        }
        assert_eq!(body, b"over quic");
        workers
    });
    assert_eq!(
        workers.iter().filter(|&&w| w == 0).count(),
        3,
        "{workers:?}"
    );
}

/// Kubernetes updates a mounted Secret by renaming a directory symlink:
/// `tls.crt -> ..data/tls.crt`, `..data -> ..v1`, then `..data -> ..v2`.
/// No event names `tls.crt`; the new certificate must be served anyway.
#[test]
fn a_certificate_swapped_by_a_directory_symlink_is_served() {
    use std::os::unix::fs::symlink;
    let dir = TempDir::new("tls-k8s");
    let mount = dir.0.join("mount");
    for v in ["..v1", "..v2"] {
        std::fs::create_dir_all(mount.join(v)).unwrap();
        cert_pair(&mount.join(v), "tls", "a.test");
    }
    symlink("..v1", mount.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        symlink(format!("..data/{f}"), mount.join(f)).unwrap();
    }
    let (crt, key) = (mount.join("tls.crt"), mount.join("tls.key"));
    let s = serve_https(crt.to_str().unwrap(), key.to_str().unwrap(), &[]);
    let first = leaf(&tls_connect(s.port, "a.test"));
    // What the kubelet does: a new link, renamed over the old one.
    symlink("..v2", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    eventually("the swapped-in certificate to be served", 15, || {
        leaf(&tls_connect(s.port, "a.test")) != first
    });
    let mut tls = tls_connect(s.port, "a.test");
    assert!(tls_get(&mut tls).starts_with("HTTP/1.1 200"));
}

/// Over TLS with ALPN `http/1.1`, requests skip hyper (`http/direct.rs`),
/// and TLS holds written bytes until they are flushed: a 3 MB answer and a
/// small one after it on the same connection both arrive whole, at once.
#[test]
fn tls_http1_keep_alive_answers_arrive_whole() {
    let dir = TempDir::new("tls-h1");
    let (crt, key) = cert_pair(&dir.0, "a", "a.test");
    let s = serve_https(&crt, &key, &[]);
    let url = |p: &str| format!("https://a.test:{}{p}", s.port);
    let started = std::time::Instant::now();
    let out = curl_tls(
        s.port,
        "a.test",
        &[
            "--http1.1",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{size_download} %{num_connects}\n",
            &url("/bytes?n=3000000"),
            &url("/bytes?n=5"),
        ],
    );
    assert_eq!(out, "1.1 3000000 1\n1.1 5 0\n");
    // Not held until the keep-alive timeout closed the connection.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
