//! A TLS ClientHello is routed by its SNI (consistent hash on `sni`) to a TLS
//! backend, and the bytes arrive untouched: the client completes a real
//! handshake with the backend's own certificate. Uses the `openssl` command
//! for backends and client, so the test needs no TLS stack of its own.

mod support;

use std::process::{Command, Stdio};

use support::{Serve, TempDir, eventually, free_ports};

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the openssl command")
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
        let (cert, key) = (
            dir.0.join(format!("c{i}.pem")),
            dir.0.join(format!("k{i}.pem")),
        );
        let out = openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN=backend{i}"),
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = base + i;
        let child = Command::new("openssl")
            .args([
                "s_server",
                "-accept",
                &format!("127.0.0.1:{port}"),
                "-www",
                "-quiet",
            ])
            .args([
                "-cert",
                cert.to_str().unwrap(),
                "-key",
                key.to_str().unwrap(),
            ])
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
            "sni",
        ],
    );
    let names: Vec<String> = (0..8).map(|i| format!("tenant{i}.example.com")).collect();
    let mut seen = std::collections::HashSet::new();
    for name in &names {
        let first = handshake(s.port, name).expect("a complete handshake through the balancer");
        for _ in 0..2 {
            assert_eq!(
                handshake(s.port, name).as_deref(),
                Some(first.as_str()),
                "{name} moved"
            );
        }
        seen.insert(first);
    }
    assert_eq!(
        seen.len(),
        2,
        "SNI hashing should use both backends: {seen:?}"
    );
}
