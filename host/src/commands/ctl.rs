//! `switchyard ctl`: the admin API from the command line. A readable table
//! for people, the API's own JSON with `--json` for scripts. Exit codes: 0
//! done, 1 refused by the balancer (the reason is printed), 2 the API
//! could not be reached.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::flags::{CtlArgs, CtlCommand, ShadowCommand, StrategySetCommand};

pub fn run(args: CtlArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: CtlArgs) -> anyhow::Result<ExitCode> {
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
        ),
        None => std::env::var("SWITCHYARD_ADMIN_TOKEN").ok(),
    };
    let client = Client {
        addr: args.admin.trim_start_matches("http://").to_string(),
        token,
    };
    let (method, path, body) = match &args.command {
        CtlCommand::Status => (Method::GET, "/status".to_string(), Vec::new()),
        CtlCommand::Reload => (Method::POST, "/reload".to_string(), Vec::new()),
        CtlCommand::Strategy(StrategySetCommand::Set { module, config }) => {
            let (query, body) = upload(module, config.as_deref(), None)?;
            (Method::PUT, format!("/strategy?{query}"), body)
        }
        CtlCommand::Shadow(ShadowCommand::Set {
            module,
            config,
            fuel,
        }) => {
            let (query, body) = upload(module, config.as_deref(), *fuel)?;
            (Method::PUT, format!("/shadow?{query}"), body)
        }
        CtlCommand::Shadow(ShadowCommand::Off) => (Method::DELETE, "/shadow".into(), Vec::new()),
        CtlCommand::Drain { id } => (
            Method::POST,
            format!("/backends/{}/drain", encode(id)),
            Vec::new(),
        ),
        CtlCommand::Undrain { id } => (
            Method::POST,
            format!("/backends/{}/undrain", encode(id)),
            Vec::new(),
        ),
    };
    let (status, value) = match client.call(method, &path, body).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "switchyard ctl: cannot reach the admin API at {}: {e:#}",
                client.addr
            );
            return Ok(ExitCode::from(2));
        }
    };
    if !status.is_success() {
        if matches!(args.command, CtlCommand::Reload) && !args.json {
            print_reloaded(&value);
        }
        let why = value
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        if args.json {
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        eprintln!("switchyard ctl: {status}: {why}");
        if !value.is_object() {
            // Every answer of the admin API is a JSON object.
            eprintln!(
                "switchyard ctl: {} does not answer like switchyard's admin API; is it the balancer's --admin address (default 127.0.0.1:9901), not its --port?",
                client.addr
            );
        }
        return Ok(ExitCode::FAILURE);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &args.command {
        CtlCommand::Status => print_status(&value),
        CtlCommand::Strategy(_) | CtlCommand::Shadow(_) => print_strategy(&value),
        CtlCommand::Drain { .. } | CtlCommand::Undrain { .. } => {
            if let Some(w) = value.get("warning").and_then(Value::as_str) {
                eprintln!("switchyard ctl: warning: {w}");
            }
            print_backends(&[value])
        }
        CtlCommand::Reload => print_reloaded(&value),
    }
    Ok(ExitCode::SUCCESS)
}

struct Client {
    addr: String,
    token: Option<String>,
}

impl Client {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(&self.addr),
        )
        .await
        .context("connect timed out")??;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.addr);
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        // A module upload is validated (compiled, dry-run) before the
        // answer, and a reload waits for each worker in turn: allow for
        // both.
        let resp = tokio::time::timeout(Duration::from_secs(900), send.send_request(req))
            .await
            .context("no answer within 900 s")??;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).trim().to_string()));
        if status == StatusCode::UNAUTHORIZED {
            let why = match self.token {
                None => {
                    "the admin API wants a token: give --token-file FILE or set SWITCHYARD_ADMIN_TOKEN"
                }
                Some(_) => "the admin API refused the token",
            };
            return Ok((status, serde_json::json!({ "error": why })));
        }
        Ok((status, value))
    }
}

/// The query and body of a module upload: a file's bytes, or a built-in
/// by name.
fn upload(
    module: &str,
    config: Option<&str>,
    fuel: Option<u64>,
) -> anyhow::Result<(String, Vec<u8>)> {
    let mut query = Vec::new();
    // Read as `serve --strategy` reads it: `builtin:NAME`, or a bare
    // built-in name, else a file.
    let builtin = match module.parse::<switchyard::strategy::StrategySource>() {
        Ok(switchyard::strategy::StrategySource::Builtin(name)) => Some(name),
        _ => None,
    };
    let body = match builtin {
        Some(name) => {
            query.push(format!("builtin={}", encode(&name)));
            Vec::new()
        }
        None => {
            query.push(format!("name={}", encode(module)));
            std::fs::read(module).with_context(|| {
                format!("ctl: reading the module {module} (a file, or builtin:NAME)")
            })?
        }
    };
    if let Some(c) = config {
        query.push(format!("config={}", encode(c)));
    }
    if let Some(f) = fuel {
        query.push(format!("fuel={f}"));
    }
    Ok((query.join("&"), body))
}

/// Percent-encodes everything but unreserved characters (RFC 3986 2.3).
fn encode(s: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(s, RESERVED).to_string()
}

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

/// Prints rows as an aligned table.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn print_strategy(st: &Value) {
    let fallbacks = st
        .get("fallbacks")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "none".into());
    println!(
        "strategy   {} (generation {}, sha256 {})",
        s(st, "name"),
        s(st, "generation"),
        s(st, "sha256").chars().take(16).collect::<String>()
    );
    println!(
        "decisions  {} by the module; fallbacks: {fallbacks}{}",
        s(st, "wasm_decisions"),
        if st.get("degraded") == Some(&Value::Bool(true)) {
            "; DEGRADED"
        } else {
            ""
        }
    );
    println!(
        "swaps      {} swapped, {} rejected",
        s(st, "swaps"),
        s(st, "rejections")
    );
    if let Some(shadow) = st.get("shadow").filter(|v| !v.is_null()) {
        let agreement = shadow
            .get("agreement")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        println!(
            "shadow     {}: agreed on {} of {} decisions ({:.1}%), {} failed",
            s(shadow, "name"),
            s(shadow, "agreed"),
            s(shadow, "compared"),
            agreement * 100.0,
            s(shadow, "failed")
        );
    }
}

fn print_backends(list: &[Value]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|b| {
            let state = if b.get("draining") == Some(&Value::Bool(true)) {
                "draining"
            } else if b.get("up") == Some(&Value::Bool(true)) {
                "up"
            } else {
                "down"
            };
            vec![
                s(b, "id"),
                s(b, "name"),
                s(b, "addr"),
                state.into(),
                s(b, "active"),
                s(b, "in_flight"),
                s(b, "total"),
                s(b, "failures_total"),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "ADDR",
            "STATE",
            "ACTIVE",
            "IN-FLIGHT",
            "TOTAL",
            "FAILURES",
        ],
        &rows,
    );
}

fn print_reloaded(v: &Value) {
    let empty = Vec::new();
    let rows: Vec<Vec<String>> = v
        .get("reloaded")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
        .iter()
        .map(|r| {
            vec![
                s(r, "worker"),
                format!("{} -> {}", s(r, "old_pid"), s(r, "new_pid")),
                format!("{} -> {}", s(r, "old_addr"), s(r, "new_addr")),
                s(r, "cut"),
            ]
        })
        .collect();
    if !rows.is_empty() {
        table(&["WORKER", "PID", "ADDR", "CUT"], &rows);
    }
}

fn print_status(v: &Value) {
    println!(
        "switchyard {} (pid {}) on {}, mode {}, up {} s",
        s(v, "version"),
        s(v, "pid"),
        s(v, "listen"),
        s(v, "mode"),
        s(v, "uptime_seconds")
    );
    if let Some(st) = v.get("strategy") {
        print_strategy(st);
    }
    let empty = Vec::new();
    let workers = v.get("workers").and_then(Value::as_array).unwrap_or(&empty);
    if !workers.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = workers
            .iter()
            .map(|w| {
                vec![
                    s(w, "index"),
                    s(w, "pid"),
                    s(w, "state"),
                    s(w, "addr"),
                    s(w, "active"),
                    s(w, "total"),
                    s(w, "restarts"),
                    w.get("cpu_ratio")
                        .and_then(Value::as_f64)
                        .map_or("-".into(), |c| format!("{:.1}%", c * 100.0)),
                    w.get("rss_bytes")
                        .and_then(Value::as_u64)
                        .map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
                ]
            })
            .collect();
        table(
            &[
                "WORKER", "PID", "STATE", "ADDR", "ACTIVE", "TOTAL", "RESTARTS", "CPU", "RSS",
            ],
            &rows,
        );
    }
    let backends = v
        .get("backends")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    println!();
    print_backends(backends);
}
