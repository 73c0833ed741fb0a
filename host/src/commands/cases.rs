//! `switchyard strategy test FILE --cases cases.toml`: runs a strategy on
//! hand-written inputs and compares its own answers (no fallback, no
//! retries) with the expected ones.
//!
//! A case is a few lines because everything has a default: an HTTP/1.1
//! `GET /` for `example.com` from 127.0.0.1, four healthy idle candidates.
//! `[defaults]` changes the defaults for the whole file; a case overrides any
//! field. The format is documented in docs/strategies.md.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;
use switchyard::strategy::{CandidateStats, FLAG_DRAINING, FLAG_HEALTHY, Meta, Protocol};
use switchyard::strategy::{RequestHead, Strategy, StrategyEngine};

use crate::flags::TestArgs;

/// Exit code when the cases could not run at all (bad cases file, module
/// refused); below it, the number of failing cases.
const CANNOT_RUN: u8 = 120;

pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let cases = match load_cases(&args.cases) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e:#}", args.cases.display());
            return Ok(ExitCode::from(CANNOT_RUN));
        }
    };
    let cfg = super::strategy::strategy_config(&args.check)?;
    let engine = StrategyEngine::new(cfg.engine.clone()).context("starting the strategy engine")?;
    let strategy = match Strategy::load(engine, &cfg.strategy) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rejected: {}: {e}", cfg.strategy.source);
            return Ok(ExitCode::from(CANNOT_RUN));
        }
    };
    // Which of a case's headers the module is given: none if it does not
    // read headers, and only the ones it lists if it lists them. A failing
    // case says which it was not given (a misspelt list shows here).
    let report = strategy.status().report;
    let sent = |name: &[u8]| -> bool {
        report.reads & switchyard_guest::READS_HEADERS != 0
            && report
                .header_names
                .as_deref()
                .is_none_or(|list| switchyard_guest::encode::is_named(list.as_bytes(), name, false))
    };
    let mut failed = 0usize;
    for (k, case) in cases.iter().enumerate() {
        let headers: Vec<(&[u8], &[u8])> = case
            .input
            .headers
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect();
        let head = case.input.head(&headers);
        let meta = Meta {
            sequence: case.input.sequence,
            random: case.input.random,
            now_ms: case.input.now_ms,
        };
        let trial = strategy.trial(&meta, &head, &case.input.candidates);
        let got = match &trial.answer {
            Ok(i) => Answer::Index(*i),
            Err(e) => Answer::Failed(e.to_string()),
        };
        let fuel = trial
            .fuel
            .map(|f| format!(" (fuel {f})"))
            .unwrap_or_default();
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("case {}", k + 1));
        if case.expect.accepts(&got) {
            println!("ok    {name}{fuel}");
        } else {
            failed += 1;
            println!("FAIL  {name}{fuel}");
            println!("      input:    {}", case.input.describe(&sent));
            println!("      expected: {}", case.expect);
            println!("      got:      {got}");
        }
    }
    println!(
        "{} passed, {failed} failed ({})",
        cases.len() - failed,
        strategy.status().name
    );
    Ok(ExitCode::from(failed.min(CANNOT_RUN as usize - 1) as u8))
}

enum Answer {
    Index(i32),
    Failed(String),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Index(i) if *i < 0 => write!(f, "{i} (no opinion)"),
            Answer::Index(i) => write!(f, "{i}"),
            Answer::Failed(e) => write!(f, "no answer: {e}"),
        }
    }
}

enum Expect {
    /// Exactly this index.
    Index(i32),
    /// Any of these indexes.
    AnyOf(Vec<i32>),
    /// A negative answer.
    NoOpinion,
}

impl Expect {
    fn accepts(&self, got: &Answer) -> bool {
        match (self, got) {
            (Expect::Index(want), Answer::Index(i)) => want == i,
            (Expect::AnyOf(set), Answer::Index(i)) => set.contains(i),
            (Expect::NoOpinion, Answer::Index(i)) => *i < 0,
            (_, Answer::Failed(_)) => false,
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Index(i) => write!(f, "{i}"),
            Expect::AnyOf(set) => write!(f, "one of {set:?}"),
            Expect::NoOpinion => f.write_str("no opinion (a negative answer)"),
        }
    }
}

struct Case {
    name: Option<String>,
    input: Input,
    expect: Expect,
}

/// The fields of a case or of `[defaults]`, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    protocol: Option<String>,
    method: Option<String>,
    path: Option<String>,
    authority: Option<String>,
    sni: Option<String>,
    alpn: Option<String>,
    client: Option<String>,
    headers: Option<toml::Value>,
    attempt: Option<u32>,
    failed: Option<Vec<u32>>,
    candidates: Option<toml::Value>,
    sequence: Option<u64>,
    random: Option<u64>,
    now_ms: Option<u64>,
}

/// One candidate as written: every field optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidateFields {
    id: Option<u32>,
    worker: Option<u32>,
    healthy: Option<bool>,
    draining: Option<bool>,
    weight: Option<u32>,
    active: Option<u32>,
    in_flight: Option<u32>,
    total: Option<u64>,
    failures: Option<u32>,
    ewma_us: Option<u32>,
    cpu_permille: Option<u32>,
    heartbeat_age_ms: Option<u32>,
    rss_mib: Option<u64>,
}

/// One case's input, resolved.
struct Input {
    protocol: Protocol,
    method: String,
    path: String,
    authority: String,
    sni: String,
    alpn: String,
    client: Option<SocketAddr>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    attempt: u32,
    failed: Vec<u32>,
    candidates: Vec<CandidateStats>,
    sequence: u64,
    random: u64,
    now_ms: u64,
}

impl Input {
    fn head<'a>(&'a self, headers: &'a [(&'a [u8], &'a [u8])]) -> RequestHead<'a> {
        RequestHead {
            protocol: self.protocol,
            method: self.method.as_bytes(),
            path: self.path.as_bytes(),
            authority: self.authority.as_bytes(),
            sni: self.sni.as_bytes(),
            alpn: self.alpn.as_bytes(),
            client: self.client,
            headers,
            attempt: self.attempt,
            failed: &self.failed,
            raw: b"",
            // Lower-cased when the file was read.
            names_lowercase: true,
        }
    }

    /// One line: the request, then each candidate's non-default fields.
    fn describe(&self, sent: &dyn Fn(&[u8]) -> bool) -> String {
        let mut s = format!(
            "{:?} {} {} host={}",
            self.protocol, self.method, self.path, self.authority
        );
        if !self.sni.is_empty() {
            let _ = write!(s, " sni={}", self.sni);
        }
        for (n, v) in &self.headers {
            let _ = write!(
                s,
                " [{}: {}{}]",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v),
                if sent(n) {
                    ""
                } else {
                    " (not given to the module: not in what it reads)"
                }
            );
        }
        if !self.failed.is_empty() {
            let _ = write!(s, " failed={:?}", self.failed);
        }
        s.push_str("; candidates:");
        for (i, c) in self.candidates.iter().enumerate() {
            let _ = write!(s, " #{i}");
            let mut field = |name: &str, v: u64, default: u64| {
                if v != default {
                    let _ = write!(s, " {name}={v}");
                }
            };
            field("id", c.id as u64, i as u64);
            field("weight", c.weight as u64, 1);
            field("active", c.active as u64, 0);
            field("in_flight", c.in_flight as u64, 0);
            field("failures", c.failures as u64, 0);
            field("cpu_permille", c.cpu_permille as u64, 0);
            field("rss_mib", c.rss_bytes >> 20, 0);
            if c.flags & FLAG_HEALTHY == 0 {
                s.push_str(" unhealthy");
            }
            if c.flags & FLAG_DRAINING != 0 {
                s.push_str(" draining");
            }
        }
        s
    }
}

fn load_cases(path: &Path) -> anyhow::Result<Vec<Case>> {
    let text = std::fs::read_to_string(path).context("cannot read the cases file")?;
    let mut doc: toml::Table = toml::from_str(&text)?;
    let defaults = match doc.remove("defaults") {
        Some(toml::Value::Table(t)) => t,
        Some(_) => bail!("`defaults` must be a table"),
        None => toml::Table::new(),
    };
    let cases = doc.remove("case");
    if let Some(key) = doc.keys().next() {
        bail!("unknown top-level key `{key}`: only [defaults] and [[case]] are allowed");
    }
    let cases = match cases {
        Some(toml::Value::Array(a)) => a,
        Some(_) => bail!("`case` must be an array of tables: write each as [[case]]"),
        None => bail!("no cases: write each as a [[case]] table"),
    };
    parse_fields(defaults.clone()).context("[defaults]")?;
    cases
        .into_iter()
        .enumerate()
        .map(|(k, case)| {
            let toml::Value::Table(mut case) = case else {
                bail!("case {}: not a table", k + 1);
            };
            let name = match case.remove("name") {
                Some(toml::Value::String(s)) => Some(s),
                Some(_) => bail!("case {}: `name` must be a string", k + 1),
                None => None,
            };
            let label = name.clone().unwrap_or_else(|| format!("case {}", k + 1));
            let expect = case
                .remove("expect")
                .ok_or_else(|| anyhow!("{label}: no `expect`"))
                .and_then(parse_expect)
                .with_context(|| label.clone())?;
            let mut merged = defaults.clone();
            merged.extend(case);
            let input = parse_fields(merged).with_context(|| label.clone())?;
            Ok(Case {
                name,
                input,
                expect,
            })
        })
        .collect()
}

fn parse_expect(v: toml::Value) -> anyhow::Result<Expect> {
    let index = |v: &toml::Value| {
        v.as_integer()
            .and_then(|i| i32::try_from(i).ok())
            .ok_or_else(|| {
                anyhow!("`expect` must be an index, a list of indexes or \"no-opinion\"")
            })
    };
    match &v {
        toml::Value::Integer(_) => Ok(Expect::Index(index(&v)?)),
        toml::Value::Array(a) if !a.is_empty() => Ok(Expect::AnyOf(
            a.iter().map(index).collect::<Result<_, _>>()?,
        )),
        toml::Value::String(s) if s == "no-opinion" => Ok(Expect::NoOpinion),
        _ => Err(index(&toml::Value::Boolean(false)).unwrap_err()),
    }
}

fn parse_fields(table: toml::Table) -> anyhow::Result<Input> {
    let f: Fields = toml::Value::Table(table).try_into()?;
    let protocol = match f.protocol.as_deref().unwrap_or("http1") {
        "opaque" => Protocol::Opaque,
        "http1" => Protocol::Http1,
        "http2" => Protocol::Http2,
        "http3" => Protocol::Http3,
        "tls" => Protocol::Tls,
        other => bail!("unknown protocol `{other}`: opaque, http1, http2, http3 or tls"),
    };
    let http = matches!(
        protocol,
        Protocol::Http1 | Protocol::Http2 | Protocol::Http3
    );
    let or =
        |v: Option<String>, d: &str| v.unwrap_or_else(|| if http { d.into() } else { "".into() });
    let client = match f.client.as_deref() {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 40000))),
        Some("") => None,
        Some(c) => Some(
            c.parse()
                .map_err(|_| anyhow!("`client` must be ADDRESS:PORT, not `{c}`"))?,
        ),
    };
    let headers: Vec<(Vec<u8>, Vec<u8>)> = match f.headers {
        None => Vec::new(),
        Some(toml::Value::Table(t)) => t
            .into_iter()
            .map(|(k, v)| match v {
                toml::Value::String(v) => Ok((k.to_ascii_lowercase().into_bytes(), v.into_bytes())),
                _ => Err(anyhow!("header `{k}`: the value must be a string")),
            })
            .collect::<Result<_, _>>()?,
        Some(toml::Value::Array(a)) => a
            .into_iter()
            .map(|pair| match pair.as_array().map(Vec::as_slice) {
                Some([toml::Value::String(n), toml::Value::String(v)]) => {
                    Ok((n.to_ascii_lowercase().into_bytes(), v.clone().into_bytes()))
                }
                _ => Err(anyhow!(
                    "each entry of `headers = [...]` must be [\"name\", \"value\"]"
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => bail!("`headers` must be a table (name = \"value\") or a list of [name, value]"),
    };
    let candidates = match f.candidates {
        None => (0..4).map(CandidateStats::healthy).collect(),
        Some(toml::Value::Integer(n)) if (1..=4096).contains(&n) => {
            (0..n as u32).map(CandidateStats::healthy).collect()
        }
        Some(toml::Value::Array(a)) if !a.is_empty() => a
            .into_iter()
            .enumerate()
            .map(|(i, c)| candidate(i as u32, c).with_context(|| format!("candidate {i}")))
            .collect::<Result<_, _>>()?,
        Some(_) => bail!("`candidates` must be a count (1 to 4096) or a non-empty list of tables"),
    };
    Ok(Input {
        protocol,
        method: or(f.method, "GET"),
        path: or(f.path, "/"),
        authority: or(f.authority, "example.com"),
        sni: f.sni.unwrap_or_default(),
        alpn: f.alpn.unwrap_or_default(),
        client,
        headers,
        attempt: f.attempt.unwrap_or(0),
        failed: f.failed.unwrap_or_default(),
        candidates,
        sequence: f.sequence.unwrap_or(0),
        random: f.random.unwrap_or(0x5eed_5eed_5eed_5eed),
        now_ms: f.now_ms.unwrap_or(1000),
    })
}

fn candidate(i: u32, v: toml::Value) -> anyhow::Result<CandidateStats> {
    let c: CandidateFields = v.try_into()?;
    let mut flags = 0;
    if c.healthy.unwrap_or(true) {
        flags |= FLAG_HEALTHY;
    }
    if c.draining.unwrap_or(false) {
        flags |= FLAG_DRAINING;
    }
    Ok(CandidateStats {
        id: c.id.unwrap_or(i),
        worker: c.worker.unwrap_or(i),
        flags,
        weight: c.weight.unwrap_or(1),
        active: c.active.unwrap_or(0),
        in_flight: c.in_flight.unwrap_or(0),
        total: c.total.unwrap_or(0),
        failures: c.failures.unwrap_or(0),
        ewma_us: c.ewma_us.unwrap_or(0),
        cpu_permille: c.cpu_permille.unwrap_or(0),
        heartbeat_age_ms: c.heartbeat_age_ms.unwrap_or(0),
        rss_bytes: c.rss_mib.unwrap_or(0) << 20,
        reserved: 0,
    })
}
