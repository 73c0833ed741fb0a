//! The admin API: a small HTTP/1.1 server, by default on `127.0.0.1:9901`,
//! for operators and `switchyard ctl`.
//!
//! | route | does |
//! |---|---|
//! | `GET /` | the status page (self-contained HTML that refreshes itself) |
//! | `GET /status` | workers, backends, strategy, traffic and the effective config, as JSON |
//! | `GET /metrics` | every figure in the Prometheus text format |
//! | `PUT /strategy` | a `.wasm`, `.wat` or `.cwasm` body (or `?builtin=NAME`) checked as `strategy check` does (the audit included), then swapped in |
//! | `PUT /shadow`, `DELETE /shadow` | the same for the shadow module, which is run on every decision's inputs and never routes |
//! | `POST /reload` | a rolling restart of the workers, one at a time (502 when a replacement fails, 503 when a worker is down) |
//! | `POST /backends/{id}/drain`, `/undrain` | a backend by id, name or address |
//! | `POST /workers/{index}/drain`, `/undrain` | a worker's backend |
//!
//! With a token (`admin_token_file`, or `SWITCHYARD_ADMIN_TOKEN`), every
//! route wants `Authorization: Bearer TOKEN` (or HTTP Basic with the token
//! as the password, which a browser asks for), compared in constant time.
//! A non-loopback address without a token is refused when the
//! configuration is validated: the API changes routing.
//!
//! It runs on the main runtime, off the serving threads: a scrape or a
//! module upload never delays a request. Loading a module runs on a
//! blocking thread, as a file hot swap does.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::backends::{Backend, Backends};
use crate::metrics::{HttpVersion, METRICS, Path};
use crate::strategy::{Strategy, StrategySource, StrategySpec};

/// The largest module `PUT /strategy` takes.
pub const MAX_MODULE_BYTES: usize = 64 << 20;

/// Where the admin API listens and who may use it.
#[derive(Clone, Default)]
pub struct AdminOptions {
    /// Its address; `None`: off.
    pub listen: Option<SocketAddr>,
    /// True if the address is the default one: a busy port is then a
    /// warning, not an error (a second balancer on one machine still
    /// starts).
    pub default_address: bool,
    /// The bearer token, if one is required.
    pub token: Option<Arc<str>>,
    /// Where the token came from, for the status (never the token).
    pub token_source: Option<String>,
}

impl std::fmt::Debug for AdminOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminOptions")
            .field("listen", &self.listen)
            .field("default_address", &self.default_address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_source", &self.token_source)
            .finish()
    }
}

/// What the admin API serves from.
pub struct Admin {
    /// The strategy, to report and swap.
    pub strategy: Arc<Strategy>,
    /// The backends, to report and drain.
    pub backends: Arc<Backends>,
    /// The workers, to reload.
    pub workers: Arc<crate::backends::supervisor::WorkerSet>,
    /// The configuration in force (a SIGHUP reload replaces it).
    pub config: Arc<arc_swap::ArcSwap<crate::config::Config>>,
    /// The token, if one is required.
    pub token: Option<Arc<str>>,
    /// When the balancer started.
    pub started: SystemTime,
    /// Where clients connect (for the page and `ctl`).
    pub listen: SocketAddr,
    /// Serving mode, as configured.
    pub mode: String,
}

type Body = Full<Bytes>;

/// Serves the admin API on `listener` until `stop`.
pub async fn serve(listener: tokio::net::TcpListener, admin: Arc<Admin>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let admin = admin.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
}

impl Admin {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if let Some(token) = &self.token
            && !authorized(req.headers(), token)
        {
            let mut r = text(
                StatusCode::UNAUTHORIZED,
                "a valid admin token is required\n",
            );
            let h = r.headers_mut();
            h.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"switchyard\""),
            );
            h.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"switchyard\""),
            );
            return r;
        }
        let path = req.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (req.method().clone(), segments.as_slice()) {
            (Method::GET, [""]) => self.page(),
            (Method::GET, ["status"]) => json(StatusCode::OK, &self.status()),
            (Method::GET, ["metrics"]) => {
                let mut out = String::with_capacity(16 * 1024);
                crate::metrics::render(&mut out, &self.strategy.status(), &self.backends.load());
                let mut r = Response::new(Full::new(Bytes::from(out)));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            (Method::POST, ["reload"]) => self.reload().await,
            (Method::PUT, ["strategy"]) => self.put_strategy(req, false).await,
            (Method::PUT, ["shadow"]) => self.put_strategy(req, true).await,
            (Method::DELETE, ["shadow"]) => {
                let strategy = self.strategy.clone();
                match tokio::task::spawn_blocking(move || strategy.set_shadow(None, 0)).await {
                    Ok(_) => json(StatusCode::OK, &strategy_status(&self.strategy)),
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
            (Method::POST, ["backends", id, action]) => {
                let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
                let list = self.backends.load();
                let found = list.iter().find(|b| {
                    b.id().to_string() == id || b.name() == id || b.addr().to_string() == id
                });
                self.drain_action(found.cloned(), action, &format!("backend `{id}`"))
            }
            (Method::POST, ["workers", index, action]) => {
                let found = index.parse::<u32>().ok().and_then(|i| {
                    self.backends
                        .load()
                        .iter()
                        .find(|b| b.worker_index() == Some(i))
                        .cloned()
                });
                self.drain_action(found, action, &format!("worker `{index}`"))
            }
            (_, [route @ ("" | "status" | "metrics" | "strategy" | "shadow" | "reload")])
            | (_, ["backends" | "workers", _, route @ ("drain" | "undrain")]) => {
                // RFC 9110 15.5.6: a 405 says what is allowed.
                let allow = match *route {
                    "" | "status" | "metrics" => "GET",
                    "strategy" => "PUT",
                    "shadow" => "PUT, DELETE",
                    _ => "POST",
                };
                let mut r = error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{} is not allowed on {path}; use {allow}", req.method()),
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
                r
            }
            _ => error(StatusCode::NOT_FOUND, format!("no admin route {path}")),
        }
    }

    /// The page, with the status inlined so that it shows without a
    /// second request (and without script timing in a headless browser).
    fn page(&self) -> Response<Body> {
        let status = serde_json::to_string(&self.status())
            .unwrap_or_else(|_| "null".into())
            // Inside a <script>: no `</script>` may appear in the data.
            .replace("</", "<\\/");
        html(PAGE.replacen("/*STATUS*/null", &status, 1))
    }

    /// `POST /reload`: a rolling restart of the workers, one at a time.
    async fn reload(&self) -> Response<Body> {
        #[derive(Serialize)]
        struct Reloaded {
            reloaded: Vec<crate::backends::supervisor::ReloadDone>,
            error: Option<String>,
        }
        if self.workers.is_empty() {
            return error(
                StatusCode::CONFLICT,
                "there are no supervised workers to reload".into(),
            );
        }
        tracing::info!(workers = self.workers.len(), "rolling reload");
        match self.workers.reload().await {
            Ok(reloaded) => json(
                StatusCode::OK,
                &Reloaded {
                    reloaded,
                    error: None,
                },
            ),
            Err((reloaded, e)) => {
                use crate::backends::supervisor::ReloadError;
                tracing::error!(error = %e, "rolling reload stopped");
                // Not this server's fault: a worker (an upstream) that
                // failed to start is 502, a worker that cannot be replaced
                // right now 503.
                let status = match e {
                    ReloadError::Replacement(_) => StatusCode::BAD_GATEWAY,
                    ReloadError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                };
                json(
                    status,
                    &Reloaded {
                        reloaded,
                        error: Some(e.to_string()),
                    },
                )
            }
        }
    }

    fn drain_action(
        &self,
        backend: Option<Arc<Backend>>,
        action: &str,
        what: &str,
    ) -> Response<Body> {
        let Some(b) = backend else {
            return error(StatusCode::NOT_FOUND, format!("no {what}"));
        };
        match action {
            "drain" => b.drain(),
            "undrain" => b.undrain(),
            _ => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("unknown action `{action}`: drain or undrain"),
                );
            }
        }
        tracing::info!(backend = %b.name(), addr = %b.addr(), action, "admin API");
        let mut body =
            serde_json::to_value(backend_status(&b, crate::clock::now_ms())).unwrap_or_default();
        // Allowed (an operator may mean it), but said: with nothing left to
        // take new work every request gets 503.
        if action == "drain"
            && !self
                .backends
                .load()
                .iter()
                .any(|b| b.is_up() && !b.is_draining())
        {
            let warning = "no backend is left taking new work: new requests get 503 until one is undrained or added";
            tracing::warn!(backend = %b.name(), "{warning}");
            if let Some(o) = body.as_object_mut() {
                o.insert("warning".into(), warning.into());
            }
        }
        json(StatusCode::OK, &body)
    }

    /// `PUT /strategy` (and `PUT /shadow` with `shadow`): the body is the
    /// module; `?builtin=NAME` names a built-in instead; `?config=TEXT` is
    /// its configuration; for a shadow, `?fuel=N` its own budget.
    async fn put_strategy(&self, req: Request<Incoming>, shadow: bool) -> Response<Body> {
        let query = req.uri().query().unwrap_or("").to_string();
        let param = |name: &str| query_param(&query, name);
        let config = param("config").unwrap_or_default().into_bytes();
        let source = match param("builtin") {
            Some(name) => StrategySource::Builtin(name),
            None => {
                let body = match Limited::new(req.into_body(), MAX_MODULE_BYTES)
                    .collect()
                    .await
                {
                    Ok(b) => b.to_bytes(),
                    Err(e) => {
                        return error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("reading the module: {e} (at most {MAX_MODULE_BYTES} bytes)"),
                        );
                    }
                };
                if body.is_empty() {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "the body must be a .wasm, .wat or .cwasm module (or give ?builtin=NAME)"
                            .into(),
                    );
                }
                let name = param("name").unwrap_or_else(|| "admin upload".into());
                StrategySource::Bytes {
                    name,
                    bytes: body.to_vec(),
                }
            }
        };
        let spec = StrategySpec { source, config };
        let strategy = self.strategy.clone();
        let fuel = param("fuel").and_then(|f| f.parse().ok()).unwrap_or(0);
        // Checked as `switchyard strategy check` checks: the load-time dry
        // run, then the audit (a few milliseconds for a small module).
        let outcome = tokio::task::spawn_blocking(move || match shadow {
            false => strategy.replace_checked(&spec, true).map(|_| ()),
            true => strategy.set_shadow(Some(&spec), fuel).map(|_| ()),
        })
        .await;
        match outcome {
            Ok(Ok(())) => json(StatusCode::OK, &strategy_status(&self.strategy)),
            Ok(Err(e)) => {
                let e = e.to_string();
                let e = crate::strategy::shorten(&e, 2048);
                tracing::error!(error = %e, "strategy from the admin API rejected; the previous one keeps serving");
                error(StatusCode::UNPROCESSABLE_ENTITY, format!("rejected: {e}"))
            }
            Err(e) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("loading failed: {e}"),
            ),
        }
    }

    fn status(&self) -> Status {
        let now = crate::clock::now_ms();
        let list = self.backends.load();
        Status {
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            started_unix: unix(self.started),
            uptime_seconds: self.started.elapsed().map_or(0, |d| d.as_secs()),
            listen: self.listen.to_string(),
            mode: self.mode.clone(),
            workers: list
                .iter()
                .filter_map(|b| {
                    Some(WorkerStatus {
                        index: b.worker_index()?,
                        pid: b.pid(),
                        state: worker_state(b),
                        backend: backend_status(b, now),
                    })
                })
                .collect(),
            backends: list.iter().map(|b| backend_status(b, now)).collect(),
            strategy: strategy_status(&self.strategy),
            traffic: Traffic {
                connections: Path::ALL
                    .iter()
                    .map(|p| (p.as_str(), METRICS.connections(*p)))
                    .collect(),
                open: Path::ALL
                    .iter()
                    .map(|p| (p.as_str(), METRICS.open(*p)))
                    .collect(),
                requests: HttpVersion::ALL
                    .iter()
                    .map(|v| (v.as_str(), METRICS.requests(*v)))
                    .collect(),
                errors: crate::error::Kind::ALL
                    .iter()
                    .map(|k| (k.as_str(), METRICS.errors(*k)))
                    .filter(|(_, n)| *n > 0)
                    .collect(),
            },
            config: self.config.load().raw().to_json_redacted(),
            config_reload: crate::reload::last(),
        }
    }
}

/// `GET /status`.
#[derive(Serialize)]
struct Status {
    version: &'static str,
    pid: u32,
    started_unix: u64,
    uptime_seconds: u64,
    listen: String,
    mode: String,
    workers: Vec<WorkerStatus>,
    backends: Vec<BackendStatus>,
    strategy: StrategyView,
    traffic: Traffic,
    config: serde_json::Value,
    /// How the last SIGHUP reload ended (`null` before the first).
    config_reload: Option<crate::reload::LastReload>,
}

#[derive(Serialize)]
struct WorkerStatus {
    index: u32,
    pid: u32,
    /// `up`, `draining`, `unhealthy`, `starting` or `down`.
    state: &'static str,
    #[serde(flatten)]
    backend: BackendStatus,
}

#[derive(Serialize)]
struct BackendStatus {
    id: String,
    name: String,
    addr: String,
    worker: Option<u32>,
    weight: u32,
    alive: bool,
    up: bool,
    draining: bool,
    active: u32,
    in_flight: u32,
    total: u64,
    failures_total: u64,
    recent_failures: u32,
    connect_latency_us: u32,
    heartbeat_age_ms: u32,
    cpu_ratio: f64,
    rss_bytes: u64,
    restarts: u64,
}

#[derive(Serialize)]
struct StrategyView {
    name: String,
    sha256: String,
    generation: u64,
    loaded_unix: u64,
    artifact: String,
    reads: String,
    wasm_decisions: u64,
    fallbacks: std::collections::BTreeMap<&'static str, u64>,
    degraded: bool,
    swaps: u64,
    rejections: u64,
    /// The latest swaps and rejections, newest last.
    recent: Vec<SwapView>,
    /// The shadow module, judged on live traffic.
    shadow: Option<ShadowView>,
}

#[derive(Serialize)]
struct ShadowView {
    name: String,
    sha256: String,
    fuel: u64,
    /// Decisions it was run on.
    compared: u64,
    agreed: u64,
    disagreed: u64,
    failed: u64,
    /// `agreed / compared`, 0 before any.
    agreement: f64,
}

#[derive(Serialize)]
struct SwapView {
    at_unix: u64,
    name: String,
    sha256: String,
    outcome: &'static str,
    reason: Option<String>,
}

#[derive(Serialize)]
struct Traffic {
    connections: std::collections::BTreeMap<&'static str, u64>,
    open: std::collections::BTreeMap<&'static str, u64>,
    requests: std::collections::BTreeMap<&'static str, u64>,
    errors: std::collections::BTreeMap<&'static str, u64>,
}

fn worker_state(b: &Backend) -> &'static str {
    match (b.is_alive(), b.is_up(), b.is_draining()) {
        (true, _, true) => "draining",
        (true, true, false) => "up",
        (true, false, false) => "unhealthy",
        (false, ..) if b.pid() != 0 => "starting",
        (false, ..) => "down",
    }
}

fn backend_status(b: &Backend, now_ms: u64) -> BackendStatus {
    let s = b.stats(now_ms);
    BackendStatus {
        id: b.id().to_string(),
        name: b.name().to_string(),
        addr: b.addr().to_string(),
        worker: b.worker_index(),
        weight: b.weight(),
        alive: b.is_alive(),
        up: b.is_up(),
        draining: b.is_draining(),
        active: s.active,
        in_flight: s.in_flight,
        total: s.total,
        failures_total: b.failures_total(),
        recent_failures: s.failures,
        connect_latency_us: s.ewma_us,
        heartbeat_age_ms: s.heartbeat_age_ms,
        cpu_ratio: s.cpu_permille as f64 / 1000.0,
        rss_bytes: s.rss_bytes,
        restarts: b.restarts(),
    }
}

fn strategy_status(strategy: &Strategy) -> StrategyView {
    let s = strategy.status();
    StrategyView {
        name: s.name,
        sha256: s.sha256.clone(),
        generation: s.generation,
        loaded_unix: unix(s.loaded_at),
        artifact: s.report.artifact.to_string(),
        reads: s.report.reads_text(),
        wasm_decisions: s.wasm_decisions,
        fallbacks: s.fallbacks.iter().map(|(r, n)| (r.as_str(), *n)).collect(),
        degraded: s.degraded,
        swaps: s.swaps,
        rejections: s.rejections,
        recent: s
            .recent
            .iter()
            .map(|e| SwapView {
                at_unix: unix(e.at),
                name: e.name.clone(),
                sha256: e.sha256.clone(),
                outcome: if e.error.is_none() {
                    "swapped"
                } else {
                    "rejected"
                },
                reason: e.error.clone(),
            })
            .collect(),
        shadow: s.shadow.map(|sh| {
            let compared = sh.agreed + sh.disagreed + sh.failed;
            ShadowView {
                name: sh.name,
                sha256: sh.sha256,
                fuel: sh.fuel,
                compared,
                agreed: sh.agreed,
                disagreed: sh.disagreed,
                failed: sh.failed,
                agreement: if compared == 0 {
                    0.0
                } else {
                    sh.agreed as f64 / compared as f64
                },
            }
        }),
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `Authorization: Bearer TOKEN`, or Basic with TOKEN as the password.
fn authorized(headers: &hyper::HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    // The scheme is case-insensitive (RFC 9110 11.1).
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let given = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") {
        match basic_password(rest.trim()) {
            Some(p) => p,
            None => return false,
        }
    } else {
        return false;
    };
    // Lengths differ: not equal, and the length is no secret worth hiding.
    given.len() == token.len() && bool::from(given.ct_eq(token.as_bytes()))
}

/// The password of HTTP Basic credentials (`user:password`, base64).
fn basic_password(credentials: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let pair = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()?;
    let k = pair.iter().position(|&c| c == b':')?;
    Some(pair[k + 1..].to_vec())
}

/// The value of `name` in a query string, decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_else(|e| {
        format!("{{\"error\":\"cannot serialize the status: {e}\"}}").into_bytes()
    });
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error(status: StatusCode, message: String) -> Response<Body> {
    #[derive(Serialize)]
    struct E {
        error: String,
    }
    json(status, &E { error: message })
}

fn html(page: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(page)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The status page: no external assets; it reads `/status` every two
/// seconds with the same credentials the browser used for the page.
const PAGE: &str = include_str!("admin_page.html");

/// Reads the token: the file's first line, else `SWITCHYARD_ADMIN_TOKEN`.
pub fn read_token(file: Option<&PathBuf>) -> Result<Option<(Arc<str>, String)>, String> {
    let (token, source) = match file {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            path.display().to_string(),
        ),
        None => match std::env::var("SWITCHYARD_ADMIN_TOKEN") {
            Ok(t) => (t, "SWITCHYARD_ADMIN_TOKEN".into()),
            Err(_) => return Ok(None),
        },
    };
    let token = token.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(format!("the admin token from {source} is empty"));
    }
    Ok(Some((token.into(), source)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_as_bearer_or_basic() {
        let mut h = hyper::HeaderMap::new();
        assert!(!authorized(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authorized(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(!authorized(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, "bearer s3cret".parse().unwrap());
        assert!(authorized(&h, "s3cret"), "the scheme is case-insensitive");
        // "admin:s3cret"
        h.insert(
            header::AUTHORIZATION,
            "Basic YWRtaW46czNjcmV0".parse().unwrap(),
        );
        assert!(authorized(&h, "s3cret"));
        h.insert(
            header::AUTHORIZATION,
            "Basic YWRtaW46czNjcmV1".parse().unwrap(),
        );
        assert!(!authorized(&h, "s3cret"));
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(
            query_param("builtin=x&config=header%3Ax-user-id", "config").as_deref(),
            Some("header:x-user-id")
        );
        assert_eq!(query_param("x=a+b%2", "x").as_deref(), Some("a b%2"));
        assert_eq!(basic_password("YWRtaW46czNjcmV0").unwrap(), b"s3cret");
    }
}
