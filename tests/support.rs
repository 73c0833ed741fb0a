//! Helpers shared by the end-to-end tests (each test crate uses a part).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use switchyard::strategy::{
    Strategy, StrategyEngine, StrategyOptions, StrategySource, StrategySpec,
};

/// Builds `examples/canary-strategy` for `wasm32-unknown-unknown` as its
/// README line says, in a target directory of its own (the outer cargo may
/// still hold the main one), and returns the module's path.
pub fn build_canary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target/examples-wasm");
    let status = std::process::Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "-p",
            "canary-strategy",
            "--target",
            "wasm32-unknown-unknown",
            "--release",
        ])
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("cargo");
    assert!(status.success(), "building the canary strategy failed");
    target.join("wasm32-unknown-unknown/release/canary_strategy.wasm")
}

/// Path of a fixture under `tests/wat/`.
pub fn wat(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/wat")
        .join(format!("{name}.wat"))
}

/// A spec for a WAT fixture with a configuration.
pub fn wat_spec(name: &str, config: &str) -> StrategySpec {
    StrategySpec {
        source: StrategySource::File(wat(name)),
        config: config.as_bytes().to_vec(),
    }
}

/// An engine with default options.
pub fn engine() -> Arc<StrategyEngine> {
    StrategyEngine::new(StrategyOptions::default()).expect("engine")
}

/// Loads a spec on a fresh default engine.
pub fn load(spec: &StrategySpec) -> Strategy {
    Strategy::load(engine(), spec).unwrap_or_else(|e| panic!("{:?}: {e}", spec.source))
}

/// A fresh temporary directory under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `target/tmp/<name>-<pid>-<n>`.
    pub fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "switchyard-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `switchyard serve` process on loopback, killed on drop.
pub struct Serve {
    /// The process.
    pub child: std::process::Child,
    /// Balancer port.
    pub port: u16,
    /// Port of worker 0.
    pub base: u16,
    /// The admin API's port (each balancer gets its own, so that parallel
    /// tests never compete for the default one).
    pub admin: u16,
    /// Everything it logged.
    pub log: Arc<std::sync::Mutex<String>>,
}

/// `n + 1` consecutive free loopback ports (balancer, then workers).
///
/// Taken below the kernel's ephemeral range, so that no client socket of a
/// test running alongside can be given one of them between this check and
/// the bind, and never handed out twice by one test process.
pub fn free_ports(n: u16) -> u16 {
    use std::net::TcpListener;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, span) = (
        10_000u16,
        ephemeral_low.saturating_sub(10_000 + n + 1).max(1000),
    );
    for attempt in 0..200u32 {
        let seed = (std::process::id() as u64).wrapping_mul(2_654_435_761)
            ^ (attempt as u64).wrapping_mul(40_503)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() as u64)
                .unwrap_or(0);
        let base = low + (seed % span as u64) as u16;
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if (0..=n).any(|k| given.contains(&(base + k))) {
            continue;
        }
        let held: Vec<_> = (0..=n)
            .map_while(|k| TcpListener::bind(("127.0.0.1", base + k)).ok())
            .collect();
        if held.len() == n as usize + 1 {
            given.extend(base..=base + n);
            return base;
        }
    }
    panic!("no free port range");
}

impl Serve {
    /// Starts `switchyard serve` with `workers` demo workers (or the command
    /// in `args` after `--`) plus `args`, and waits until it answers.
    pub fn start(workers: u16, args: &[&str]) -> Serve {
        Serve::start_on("127.0.0.1", workers, args)
    }

    /// The same, listening on `host`.
    pub fn start_on(host: &str, workers: u16, args: &[&str]) -> Serve {
        let s = Serve::spawn(host, workers, args);
        s.wait_for_log("switchyard is serving", 30);
        s
    }

    /// [`Serve::start`] with extra environment variables.
    pub fn start_with_env(workers: u16, args: &[&str], env: &[(&str, &str)]) -> Serve {
        let s = Serve::spawn_with_env("127.0.0.1", workers, args, env);
        s.wait_for_log("switchyard is serving", 30);
        s
    }

    fn spawn(host: &str, workers: u16, args: &[&str]) -> Serve {
        Serve::spawn_with_env(host, workers, args, &[])
    }

    /// `switchyard serve --config FILE` and nothing else on the command
    /// line (so a reload of the file changes everything it sets); the
    /// file must set `port`, `base_worker_port` and `admin` to the ports
    /// given here.
    pub fn start_config(file: &std::path::Path, port: u16, base: u16, admin: u16) -> Serve {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.args(["serve", "--log", "info,switchyard=debug", "--config"])
            .arg(file);
        let s = Serve::spawn_cmd(cmd, port, base, admin);
        s.wait_for_log("switchyard is serving", 30);
        s
    }

    fn spawn_with_env(host: &str, workers: u16, args: &[&str], env: &[(&str, &str)]) -> Serve {
        // Balancer, workers, their other ports (rolling reloads), then
        // the admin API.
        let w = workers.max(1);
        let port = free_ports(2 * w + 1);
        let base = port + 1;
        let admin = base + 2 * w;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.args(["serve", "--host", host, "--log", "info,switchyard=debug"])
            .args(["--port", &port.to_string()])
            .args(["--workers", &workers.to_string()]);
        if !args.contains(&"--base-worker-port") {
            cmd.args(["--base-worker-port", &base.to_string()]);
        }
        // #4's tests pin TCP mode (which #9 keeps exactly as it was); HTTP
        // and auto mode have their own tests.
        if !args.contains(&"--mode") {
            cmd.args(["--mode", "tcp"]);
        }
        if !args.contains(&"--admin") {
            cmd.args(["--admin", &format!("127.0.0.1:{admin}")]);
        }
        cmd.args(args).envs(env.iter().copied());
        Serve::spawn_cmd(cmd, port, base, admin)
    }

    fn spawn_cmd(mut cmd: std::process::Command, port: u16, base: u16, admin: u16) -> Serve {
        use std::io::BufRead;
        cmd.env_remove("HOST")
            .env_remove("PORT")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn switchyard");
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Serve {
            child,
            port,
            base,
            admin,
            log,
        }
    }

    /// Starts it without waiting for it to serve (its workers may never be
    /// ready).
    pub fn start_no_wait(workers: u16, args: &[&str]) -> Serve {
        Serve::spawn("127.0.0.1", workers, args)
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded) until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, secs: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if self.log.lock().unwrap().contains(needle) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!(
            "`{needle}` not logged in {secs} s; log:\n{}",
            self.log.lock().unwrap()
        );
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain syscall on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "switchyard did not exit in {secs} s; log:\n{}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A killed balancer leaves its upgrade handover socket behind (a
        // graceful exit removes it). Remove it if nobody listens on it any
        // more: a test that upgraded may have a successor serving there.
        let path = switchyard::upgrade::socket_path(self.port);
        if std::os::unix::net::UnixStream::connect(&path).is_err() {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// A minimal HTTP/1.1 exchange over a fresh connection: writes `request`,
/// reads to EOF (bounded by a 10 s timeout), returns (status, whole response).
pub fn exchange(port: u16, request: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|t| t.get(2..5))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// `GET path` with `Connection: close`; returns (status, body).
pub fn get(port: u16, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let (status, text) = exchange(port, req.as_bytes());
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Polls `f` every 25 ms for at most `secs`.
pub fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("timed out after {secs} s waiting for {what}");
}

/// A module that answers `index` whenever there are more candidates than that
/// (and 0 otherwise, so it passes the dry run with one candidate).
pub fn constant(index: i32) -> String {
    format!(
        r#"(module
  (memory (export "memory") 2)
  (func (export "switchyard_abi_version") (result i32) (i32.const 1))
  (func (export "switchyard_input") (param i32) (result i32) (i32.const 1024))
  (func (export "switchyard_decide") (param i32) (result i32)
    (if (result i32) (i32.gt_u (i32.load offset=8 (i32.const 1024)) (i32.const {index}))
      (then (i32.const {index})) (else (i32.const 0)))))"#
    )
}

/// Runs `f` with a `tracing` subscriber that records every event on this
/// thread (debug and up, no colours), and returns what was logged.
pub fn capture_logs(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = sink.0.lock().unwrap().clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A backend written for one test: a loopback listener served by a thread
/// that runs `serve` on each connection, stopped (and joined) on drop.
pub struct FakeBackend {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeBackend {
    /// Listens on `127.0.0.1:0` (or `bind`) and runs `serve` per connection,
    /// each on its own thread, each socket with a 10 s read timeout.
    pub fn start(
        bind: &str,
        serve: impl Fn(std::net::TcpStream) + Send + Sync + 'static,
    ) -> FakeBackend {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind(bind).expect("bind a fake backend");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let serve = Arc::new(serve);
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        accepted2.fetch_add(1, Ordering::Relaxed);
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                            .unwrap();
                        let serve = serve.clone();
                        std::thread::spawn(move || serve(s));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        FakeBackend {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// Echoes every byte back until the client closes.
    pub fn echo() -> FakeBackend {
        FakeBackend::start("127.0.0.1:0", |mut s| {
            let mut r = s.try_clone().unwrap();
            let _ = std::io::copy(&mut r, &mut s);
        })
    }

    /// Accepts and closes at once, answering nothing.
    pub fn closer() -> FakeBackend {
        FakeBackend::start("127.0.0.1:0", drop)
    }

    /// An HTTP/1.1 server that reads each request's whole body
    /// (`Content-Length`) before answering `got N bytes: BODY`.
    pub fn body_reader() -> FakeBackend {
        FakeBackend::start("127.0.0.1:0", |s| {
            use std::io::{BufRead, Read, Write};
            let mut r = std::io::BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            loop {
                let mut len = 0usize;
                let mut line = String::new();
                let mut first = true;
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" && !first {
                        break;
                    }
                    first = false;
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                let text = format!("got {len} bytes: {}", String::from_utf8_lossy(&body));
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                );
                if w.write_all(resp.as_bytes()).is_err() {
                    return;
                }
            }
        })
    }

    /// `host:port` for `--backend`.
    pub fn arg(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for FakeBackend {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A demo worker process on `port`, killed on drop.
pub struct DemoWorker(pub std::process::Child);

impl DemoWorker {
    /// Starts `switchyard demo-worker` as worker `index` and waits (bounded)
    /// until it listens.
    pub fn start(index: u32, port: u16) -> DemoWorker {
        let c = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("demo-worker")
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("SWITCHYARD_WORKER_INDEX", index.to_string())
            .spawn()
            .expect("demo worker");
        eventually("the demo worker to listen", 10, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        DemoWorker(c)
    }
}

impl Drop for DemoWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The worker index in a demo worker's `worker N (pid P)` answer.
pub fn worker_of(body: &str) -> (u32, u32) {
    let mut it = body.split_whitespace();
    let n = it
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no worker index in {body:?}"));
    let p = it
        .nth(1)
        .and_then(|s| s.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no pid in {body:?}"));
    (n, p)
}

/// Resident set size of process `pid`, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// A self-signed pair for `name` (CN and DNS SAN) in `dir`.
pub fn cert_pair(dir: &std::path::Path, file: &str, name: &str) -> (String, String) {
    let cert = dir.join(format!("{file}.crt"));
    let key = dir.join(format!("{file}.key"));
    let tmp_cert = dir.join(format!("{file}.crt.new"));
    let tmp_key = dir.join(format!("{file}.key.new"));
    let out = std::process::Command::new("openssl")
        .args([
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
            &format!("/CN={name}"),
            "-addext",
            &format!("subjectAltName=DNS:{name}"),
            "-keyout",
            tmp_key.to_str().unwrap(),
            "-out",
            tmp_cert.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the openssl command");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Renamed into place, key first, as a certificate manager would.
    std::fs::rename(&tmp_key, &key).unwrap();
    std::fs::rename(&tmp_cert, &cert).unwrap();
    (
        cert.to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
    )
}

/// The state of the balancer's end of `client`'s connection, from
/// `/proc/net/tcp` (IPv4): `03` half-open (not accepted yet), `01`
/// established.
pub fn server_side_state(client: &std::net::TcpStream) -> Option<String> {
    let (local, remote) = (client.local_addr().ok()?, client.peer_addr().ok()?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // The balancer's end: its local port is the listener's, its remote
        // port the client's.
        (port(f.get(1)?)? == remote.port() && port(f.get(2)?)? == local.port())
            .then(|| f.get(3).map(|s| s.to_string()))?
    })
}
