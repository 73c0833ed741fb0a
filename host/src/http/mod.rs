//! HTTP mode: every request is a decision. hyper serves the client
//! connection (HTTP/1.1, or HTTP/2 with prior knowledge); each request's
//! head goes to the strategy as hyper parsed it (no second parse: HTTP/2
//! names are lower-case already, and `http`'s `HeaderName` always is), and
//! goes out over a per-thread pool of keep-alive connections to the chosen
//! backend. Bodies stream both ways; upgrades (WebSocket) are spliced once
//! the backend answers `101`.
//!
//! The first request of a connection arrives through the sniffer, which has
//! read its head already (`guard::ClientIo` hands those bytes to hyper
//! first, and checks every later head before hyper sees it).

mod body;
mod direct;
pub mod guard;
pub mod headers;
mod upstream;

pub(crate) use direct::ClientEnd;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{Either, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::backends::{Backend, BackendList, health};
use crate::error::{Error, Kind};
use crate::metrics::{HttpVersion, METRICS};
use crate::proxy::Context;
use crate::sniff::http1::MAX_HEADERS;
use crate::strategy::{Protocol, RequestHead, Strategy};
use body::Tracked;
use guard::{Busy, ClientIo, ConnState, HeadLimits};

/// How bytes are routed.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A decision per connection; bytes spliced through untouched.
    Tcp,
    /// A decision per HTTP request (HTTP/1.1, HTTP/2); anything else is
    /// refused.
    Http,
    /// HTTP/1 and HTTP/2 as `http`, everything else as `tcp`.
    #[default]
    Auto,
}

/// The protocol HTTP mode speaks to backends.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum BackendProtocol {
    /// HTTP/1.1 over pooled keep-alive connections.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (gRPC backends), requests multiplexed.
    H2,
}

/// HTTP mode's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// How bytes are routed.
    pub mode: Mode,
    /// A backend must send its response head within this (else `504`).
    pub upstream_header_timeout: Duration,
    /// A backend that sends no body byte for this long fails the response.
    pub upstream_body_timeout: Option<Duration>,
    /// An idle client connection is closed after this.
    pub keepalive_timeout: Duration,
    /// Each request head must arrive within this of its first byte.
    pub head_timeout: Duration,
    /// Largest request head.
    pub max_head_bytes: usize,
    /// HTTP/1.1 or HTTP/2 to backends.
    pub backend_protocol: BackendProtocol,
    /// Keep `X-Forwarded-*` and `Forwarded` from the client (extend them)
    /// instead of replacing them.
    pub trust_forwarded: bool,
    /// Add `X-Request-Id` to requests that have none.
    pub request_id: bool,
    /// Idle keep-alive connections kept per backend and thread.
    pub pool_max_idle: usize,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
}

/// What goes upstream: a client's body from hyper, none, or an HTTP/3
/// stream's.
pub(crate) type ReqBody = Either<body::Watched<ClientBody>, Empty<Bytes>>;
/// A client's request body: from hyper, or from an HTTP/3 stream.
pub(crate) type ClientBody = Either<Incoming, crate::h3::RequestBody>;
pub(crate) type ResBody = Tracked;
type Upstream = Client<HttpConnector, ReqBody>;

/// This thread's pools, one per backend: a connection is used only by the
/// runtime whose reactor it is registered with, and a backend that leaves
/// the set (or drains) takes its idle connections with it.
#[derive(Default)]
struct Pools {
    /// The backend list the map was last pruned against.
    list: u64,
    clients: Vec<(Arc<Backend>, Upstream, hyper::http::uri::Authority)>,
}

thread_local! {
    static POOLS: std::cell::RefCell<Pools> = std::cell::RefCell::default();
}

fn new_client(opts: &HttpOptions, connect_timeout: Duration) -> Upstream {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_max_idle_per_host(opts.pool_max_idle)
        .pool_idle_timeout(opts.pool_idle_timeout)
        .http2_only(opts.backend_protocol == BackendProtocol::H2)
        .build(connector)
}

/// The rule of every per-thread pool of upstream connections: once per new
/// backend list, the entries of backends that left it or drain go, and
/// their idle connections with them. `seen`: the list last pruned against.
pub(crate) fn prune_pools<T>(
    seen: &mut u64,
    list: &BackendList,
    entries: &mut Vec<T>,
    backend: impl Fn(&T) -> &Arc<Backend>,
) {
    if *seen != list.id() {
        *seen = list.id();
        entries.retain(|e| {
            let b = backend(e);
            !b.is_draining() && list.iter().any(|l| Arc::ptr_eq(l, b))
        });
    }
}

/// The pool for `backend` and its address as a URI authority, after
/// dropping the pools of backends that left `list` or drain.
fn client(
    opts: &HttpOptions,
    connect_timeout: Duration,
    list: &BackendList,
    backend: &Arc<Backend>,
) -> (Upstream, hyper::http::uri::Authority) {
    POOLS.with(|p| {
        let mut p = p.borrow_mut();
        let p = &mut *p;
        prune_pools(&mut p.list, list, &mut p.clients, |(b, ..)| b);
        if let Some((_, c, a)) = p.clients.iter().find(|(b, ..)| Arc::ptr_eq(b, backend)) {
            return (c.clone(), a.clone());
        }
        let c = new_client(opts, connect_timeout);
        let a = hyper::http::uri::Authority::try_from(backend.addr().to_string())
            .expect("a socket address is a valid authority");
        p.clients.push((backend.clone(), c.clone(), a.clone()));
        (c, a)
    })
}

/// How the client reached us, for the strategy and the forwarded headers.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// TLS terminated here.
    pub tls: bool,
    /// The TLS server name the client asked for.
    pub sni: Option<Arc<str>>,
    /// The ALPN protocol agreed.
    pub alpn: Option<Arc<str>>,
    /// The UDP port HTTP/3 listens on, for `Alt-Svc`.
    pub alt_svc: Option<HeaderValue>,
    /// What the forwarded headers say of this client, made once per
    /// connection.
    pub forwarded: headers::Forwarded,
}

/// Serves one client connection in HTTP mode until it closes, or until a
/// graceful shutdown lets its current requests finish. `prefix`: what the
/// sniffer read.
pub async fn serve(
    ctx: Arc<Context>,
    prefix: &[u8],
    client: crate::proxy::ClientStream,
    peer: SocketAddr,
    version: Version,
) {
    let info = ConnInfo {
        alt_svc: ctx.alt_svc.clone(),
        forwarded: headers::Forwarded::new(peer, false),
        // Spelled out: `..ConnInfo::default()` would make (and drop) a
        // default `Forwarded` for every connection.
        tls: false,
        sni: None,
        alpn: None,
    };
    if version == Version::HTTP_11 && ctx.http.backend_protocol == BackendProtocol::Http1 {
        // Requests without a body, over HTTP/1.1 to HTTP/1.1 backends, skip
        // hyper (`direct.rs`); anything else hands the connection back here.
        return direct::serve(ctx, prefix, client, peer, info).await;
    }
    serve_io(ctx, prefix, client, peer, version, info).await
}

/// Terminates TLS on a client whose ClientHello the sniffer read, then
/// serves HTTP/2 or HTTP/1.1 as ALPN chose.
pub async fn serve_tls(
    ctx: Arc<Context>,
    acceptor: tokio_rustls::TlsAcceptor,
    prefix: &[u8],
    client: crate::proxy::ClientStream,
    peer: SocketAddr,
) {
    let io = ClientIo::plain(prefix, client);
    let tls = match tokio::time::timeout(ctx.http.head_timeout, acceptor.accept(io)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            return tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
        }
        Err(_) => return tracing::debug!(client = %peer, "TLS handshake timed out"),
    };
    let session = tls.get_ref().1;
    let alpn = session
        .alpn_protocol()
        .map(|a| Arc::from(String::from_utf8_lossy(a).as_ref()));
    let version = match session.alpn_protocol() {
        Some(b"h2") => Version::HTTP_2,
        _ => Version::HTTP_11,
    };
    let info = ConnInfo {
        tls: true,
        sni: session.server_name().map(Arc::from),
        alpn,
        alt_svc: ctx.alt_svc.clone(),
        forwarded: headers::Forwarded::new(peer, true),
    };
    if version == Version::HTTP_11 && ctx.http.backend_protocol == BackendProtocol::Http1 {
        return direct::serve(ctx, &[], tls, peer, info).await;
    }
    serve_io(ctx, &[], tls, peer, version, info).await
}

async fn serve_io<S>(
    ctx: Arc<Context>,
    prefix: &[u8],
    client: S,
    peer: SocketAddr,
    version: Version,
    info: ConnInfo,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let graceful = ctx.graceful.clone();
    let conn = ConnState::new();
    if let Some(log) = &ctx.access {
        conn.log_to(log.clone(), peer);
    }
    let idle_state = conn.clone();
    let keepalive = ctx.http.keepalive_timeout;
    let limits = HeadLimits {
        head_timeout: ctx.http.head_timeout,
        max_head_bytes: ctx.http.max_head_bytes,
        keepalive_timeout: ctx.http.keepalive_timeout,
    };
    let h1 = version != Version::HTTP_2;
    let io = TokioIo::new(ClientIo::new(prefix, client, h1, limits, conn.clone()));
    let max_head = ctx.http.max_head_bytes;
    let info = Arc::new(info);
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let ctx = ctx.clone();
        let info = info.clone();
        let busy = conn.begin();
        // The guard holds what follows an upgrade request until it knows
        // whether the protocol switched.
        let upgrade = headers::is_upgrade(req.headers());
        let switching = (upgrade || req.method() == hyper::Method::CONNECT).then(|| conn.clone());
        async move {
            let resp = handle(&ctx, req, upgrade, peer, Some(busy), &info).await;
            if let Some(conn) = switching {
                conn.upgrade_answered(resp.status() == StatusCode::SWITCHING_PROTOCOLS);
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let result = if !h1 {
        // h2's own bounds, set here so they are stated: a rapid-reset flood
        // (CVE-2023-44487) is cut off after 20 resets pending accept and
        // 1024 streams reset for local errors; CONTINUATION frames cannot
        // grow a header list past `max_head_bytes` (h2 0.4 counts them).
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(1024)
            .max_header_list_size(max_head as u32)
            .max_concurrent_streams(256)
            .serve_connection(io, svc);
        tokio::pin!(conn);
        // An HTTP/2 connection with no stream open for the keep-alive
        // timeout gets a GOAWAY, as an HTTP/1 one gets closed: checked a
        // few times per timeout, never per request.
        let idle = async {
            let mut tick = tokio::time::interval(keepalive / 4);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if idle_state.idle_for().is_some_and(|d| d >= keepalive) {
                    return;
                }
            }
        };
        tokio::select! {
            r = conn.as_mut() => r,
            _ = graceful.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            _ = idle => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    } else {
        // Heads are timed and bounded by `ClientIo`, which also answers
        // 408/431/400: hyper's own header timer would close instead.
        let conn = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_headers(MAX_HEADERS)
            .serve_connection(io, svc)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            _ = graceful.cancelled() => {
                // A connection accepted just before the stop may not have
                // sent its first request yet (a binary upgrade hands the
                // queue to the next process from this moment): closing it
                // now would lose that request. It gets the head timeout.
                let ended = if idle_state.started() {
                    None
                } else {
                    let first = async {
                        while !idle_state.started() {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    };
                    tokio::select! {
                        r = conn.as_mut() => Some(r),
                        _ = tokio::time::timeout(limits.head_timeout, first) => None,
                    }
                };
                match ended {
                    Some(r) => r,
                    None => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %peer, error = %e, "HTTP connection ended with an error");
    }
}

/// A response Switchyard writes itself.
fn answer(status: StatusCode, text: &'static str, busy: Option<Busy>) -> Response<ResBody> {
    let mut r = Response::new(Tracked::full(Bytes::from_static(text.as_bytes()), busy));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// [`answer`] that also ends the client connection: the request body is
/// unread or broken, so nothing after it on the connection can be trusted
/// to start a request.
fn answer_and_close(
    status: StatusCode,
    text: &'static str,
    busy: Option<Busy>,
) -> Response<ResBody> {
    let mut r = answer(status, text, busy);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// One request from hyper: the upgrade is taken before the head is.
async fn handle(
    ctx: &Context,
    mut req: Request<Incoming>,
    upgrade: bool,
    peer: SocketAddr,
    busy: Option<Busy>,
    info: &ConnInfo,
) -> Response<ResBody> {
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    // A request without a body can be sent again as it is.
    let resendable = hyper::body::Body::is_end_stream(&body);
    let body = (!resendable).then_some(Either::Left(body));
    forward(ctx, parts, body, peer, busy, info, client_upgrade).await
}

/// What one request's decisions came to, for the access log.
#[derive(Default)]
struct Trace {
    attempts: u32,
    fallback: Option<&'static str>,
    backend: Option<SocketAddr>,
}

/// What the access log keeps of a request until its line is written.
type Logged = (
    std::sync::Arc<crate::access::AccessLog>,
    (std::time::SystemTime, std::time::Instant),
    &'static str,
    Box<str>,
    Box<str>,
    u64,
);

/// One request: decide, send, and try another backend if the connect
/// failed and the request can be sent again. `body`: `None` if it has
/// none (then it can be sent again). With an access log, its line is
/// written when the response body ends.
pub(crate) async fn forward(
    ctx: &Context,
    parts: hyper::http::request::Parts,
    body: Option<ClientBody>,
    peer: SocketAddr,
    busy: Option<Busy>,
    info: &ConnInfo,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<ResBody> {
    // What the access log needs from the head, taken before the head
    // goes upstream; nothing when no log is kept.
    let logged = ctx.access.as_ref().map(|log| {
        let mode = match parts.version {
            Version::HTTP_2 => "http2",
            Version::HTTP_3 => "http3",
            _ => "http1",
        };
        let method: Box<str> = parts.method.as_str().into();
        let path: Box<str> = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .into();
        let bytes_in = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        let now = (std::time::SystemTime::now(), std::time::Instant::now());
        (log.clone(), now, mode, method, path, bytes_in)
    });
    // Writes a line if this request is dropped before its response (a
    // shutdown that cut it, the client gone): such requests had none.
    struct Unanswered {
        logged: Option<Logged>,
        peer: SocketAddr,
    }
    impl Drop for Unanswered {
        fn drop(&mut self) {
            if let Some((log, (start, started), mode, method, path, bytes_in)) = self.logged.take()
            {
                log.log(crate::access::Entry {
                    start,
                    mode,
                    client: self.peer,
                    method: Some(method),
                    path: Some(path),
                    status: None,
                    backend: None,
                    attempts: 0,
                    fallback: None,
                    bytes_in,
                    bytes_out: 0,
                    duration: started.elapsed(),
                    error: Some("cut_before_response"),
                });
            }
        }
    }
    let mut unanswered = Unanswered { logged, peer };
    let mut trace = Trace::default();
    let resp = forward_inner(
        ctx,
        parts,
        body,
        peer,
        busy,
        info,
        client_upgrade,
        &mut trace,
    )
    .await;
    let Some((log, (start, started), mode, method, path, bytes_in)) = unanswered.logged.take()
    else {
        return resp;
    };
    let entry = crate::access::Entry {
        start,
        mode,
        client: peer,
        method: Some(method),
        path: Some(path),
        status: Some(resp.status().as_u16()),
        backend: trace.backend,
        attempts: trace.attempts,
        fallback: trace.fallback,
        bytes_in,
        bytes_out: 0,
        duration: Duration::ZERO,
        error: None,
    };
    let pending = Box::new(body::Pending {
        log,
        entry,
        started,
    });
    resp.map(|b| b.with_access(pending))
}

#[allow(clippy::too_many_arguments)]
async fn forward_inner(
    ctx: &Context,
    mut parts: hyper::http::request::Parts,
    body: Option<ClientBody>,
    peer: SocketAddr,
    busy: Option<Busy>,
    info: &ConnInfo,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    trace: &mut Trace,
) -> Response<ResBody> {
    let (protocol, counted) = match parts.version {
        Version::HTTP_2 => (Protocol::Http2, HttpVersion::Http2),
        Version::HTTP_3 => (Protocol::Http3, HttpVersion::Http3),
        _ => (Protocol::Http1, HttpVersion::Http1),
    };
    METRICS.request(counted);
    // Authority before the head is rewritten: HTTP/2 carries it in the URI.
    match (parts.headers.get(header::HOST), parts.uri.authority()) {
        (None, Some(a)) => {
            // Host and port only: an absolute-form target's userinfo is no
            // part of Host (and is not sent on).
            let host = match a.port() {
                Some(p) => format!("{}:{}", a.host(), p.as_str()),
                None => a.host().to_string(),
            };
            if let Ok(a) = HeaderValue::from_str(&host) {
                parts.headers.insert(header::HOST, a);
            }
        }
        // RFC 9113 8.3.1 and RFC 9114 4.3.1: a `host` that differs from
        // `:authority` makes the request malformed (the backend and the
        // strategy would see one name, and the TLS layer another). HTTP/1's
        // absolute form is the guard's (which allows the default port).
        (Some(h), Some(a))
            if protocol != Protocol::Http1
                && !guard::same_host(
                    h.as_bytes(),
                    a.as_str().as_bytes(),
                    match parts.uri.scheme_str() {
                        Some("http") => b":80",
                        _ => b":443",
                    },
                ) =>
        {
            return answer(
                StatusCode::BAD_REQUEST,
                "host differs from :authority\n",
                busy,
            );
        }
        _ => {}
    }
    // HTTP/1 heads were checked by the guard; HTTP/2 and HTTP/3 are here.
    if parts
        .headers
        .get(header::HOST)
        .is_some_and(|h| !guard::valid_host(h.as_bytes()))
    {
        return answer(
            StatusCode::BAD_REQUEST,
            "Host is not a valid host[:port]\n",
            busy,
        );
    }
    headers::strip_hop_by_hop(&mut parts.headers);
    info.forwarded
        .apply(&mut parts.headers, ctx.http.trust_forwarded);
    if ctx.http.request_id {
        headers::add_request_id(&mut parts.headers);
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/"));
    let path = path_and_query.as_str();
    if parts.method == hyper::Method::CONNECT {
        // A reverse proxy has no tunnel to offer: say so rather than send
        // the backend a CONNECT for its own address.
        return answer(
            StatusCode::NOT_IMPLEMENTED,
            "CONNECT is not supported\n",
            busy,
        );
    }
    let resendable = body.is_none();
    let upload = body.as_ref().map(|_| body::Upload::new());
    let mut body = body;
    // A body the failed connect never read comes back here for the next
    // attempt.
    let unsent: body::Unsent<ClientBody> = Arc::default();
    let list = ctx.backends.load();
    let mut failed: Vec<u32> = Vec::new();
    let mut last = Error::new(Kind::NoBackend);
    'attempts: for attempt in 0..=ctx.proxy.retries {
        let decision = pick(
            &ctx.strategy,
            info,
            protocol,
            &parts,
            path,
            peer,
            attempt,
            &failed,
            &list,
        );
        trace.attempts = attempt + 1;
        trace.fallback = decision.fallback.map(|r| r.as_str());
        let Some(i) = decision.index else {
            break;
        };
        let backend = &list[i];
        trace.backend = Some(backend.addr());
        let guard = backend.open_connection();
        // HTTP/1.1 backends go through this module's own pool
        // (`upstream.rs`); upgrades (whose connection must be handed over)
        // and HTTP/2 backends through hyper-util's client.
        let local = ctx.http.backend_protocol == BackendProtocol::Http1 && client_upgrade.is_none();
        // Set when a pooled connection failed before answering and the
        // request goes to the same backend again on a new one (below).
        let mut fresh = false;
        loop {
            let mut reused = false;
            let mut via = if local {
                match upstream::checkout(
                    &list,
                    backend,
                    &ctx.http,
                    ctx.proxy.connect_timeout,
                    fresh,
                )
                .await
                {
                    Ok(c) => {
                        reused = c.reused;
                        Via::Own(c.sender, c.lease)
                    }
                    Err(e) => {
                        let (kind, cause) = match e {
                            upstream::ConnectError::Io(e) => (Kind::Connect, e),
                            upstream::ConnectError::Timeout => (
                                Kind::ConnectTimeout,
                                std::io::Error::from(std::io::ErrorKind::TimedOut),
                            ),
                        };
                        let err = Error::new(kind)
                            .at(backend.addr())
                            .because(cause)
                            .retryable(true);
                        health::failed(ctx.proxy.eject_after_failures, backend, &err);
                        tracing::debug!(client = %peer, attempt, error = %err, "backend attempt failed");
                        failed.push(i as u32);
                        last = err;
                        continue 'attempts;
                    }
                }
            } else {
                let (c, authority) = client(&ctx.http, ctx.proxy.connect_timeout, &list, backend);
                Via::Pooled(c, authority)
            };
            let mut uri = hyper::http::uri::Parts::default();
            if let Via::Pooled(_, authority) = &via {
                uri.scheme = Some(hyper::http::uri::Scheme::HTTP);
                uri.authority = Some(authority.clone());
            }
            uri.path_and_query = Some(path_and_query.clone());
            let Ok(uri) = Uri::from_parts(uri) else {
                return answer(StatusCode::BAD_REQUEST, "bad request target\n", busy);
            };
            let out_body = match body.take() {
                Some(b) => Either::Left(body::Watched::new(
                    b,
                    upload.clone().expect("made with the body"),
                    unsent.clone(),
                )),
                None => Either::Right(Empty::new()),
            };
            let mut out = Request::new(out_body);
            *out.method_mut() = parts.method.clone();
            *out.uri_mut() = uri;
            // Any request may go again (one with a body after a refused
            // connect, or on a new connection after a reused one failed), so
            // the head is kept for the next attempt.
            *out.headers_mut() = if attempt < ctx.proxy.retries || reused {
                parts.headers.clone()
            } else {
                std::mem::take(&mut parts.headers)
            };
            if !out.headers().contains_key(header::HOST)
                && let Ok(v) = HeaderValue::from_str(&backend.addr().to_string())
            {
                // An HTTP/1.0 request may have no Host, but it goes upstream
                // as HTTP/1.1, which must: the backend's own address, as
                // nginx sends by default.
                out.headers_mut().insert(header::HOST, v);
            }
            let sent = match &mut via {
                Via::Pooled(client, _) => {
                    wait_for_head(ctx, client.request(out), upload.as_deref())
                        .await
                        .map(|r| r.map_err(UpstreamError::Pooled))
                }
                Via::Own(c, _) => wait_for_head(ctx, c.send_request(out), upload.as_deref())
                    .await
                    .map(|r| r.map_err(UpstreamError::Local)),
            };
            match sent {
                Err(Late::Backend) => {
                    METRICS.error(Kind::ResponseTimeout);
                    tracing::debug!(client = %peer, backend = %backend.addr(), "no response head in time");
                    return answer(
                        StatusCode::GATEWAY_TIMEOUT,
                        "the backend did not answer in time\n",
                        busy,
                    );
                }
                Err(Late::Client) => {
                    METRICS.error(Kind::ClientIo);
                    tracing::debug!(client = %peer, "request body stalled");
                    return answer_and_close(
                        StatusCode::REQUEST_TIMEOUT,
                        "the request body did not arrive in time\n",
                        busy,
                    );
                }
                Ok(Err(_)) if upload.as_ref().is_some_and(|u| u.failed()) => {
                    // The client's body broke (cut short, bad chunk framing):
                    // the client's fault, not the backend's.
                    tracing::debug!(client = %peer, "request body failed");
                    if let Some(b) = &busy {
                        b.answered_refusal();
                    }
                    return answer_and_close(
                        StatusCode::BAD_REQUEST,
                        "malformed or incomplete request body\n",
                        busy,
                    );
                }
                Ok(Ok(resp)) => {
                    backend.responded();
                    let body_timeout = ctx.http.upstream_body_timeout;
                    let lease = match via {
                        Via::Own(c, lease) => {
                            // Ready again once this response is read.
                            upstream::checkin(backend, c, &lease, ctx.http.pool_max_idle);
                            Some(lease)
                        }
                        Via::Pooled(..) => None,
                    };
                    let mut resp = respond(resp, guard, client_upgrade, busy, body_timeout, lease);
                    if let Some(alt) = &info.alt_svc {
                        resp.headers_mut().insert(header::ALT_SVC, alt.clone());
                    }
                    return resp;
                }
                Ok(Err(e)) => {
                    let unsent_request = e.never_sent();
                    if reused && (unsent_request || (resendable && idempotent(&parts.method))) {
                        // A connection that sat idle in the pool failed before
                        // any response byte: most likely the backend closed it
                        // (its keep-alive timeout) as the request went out. That
                        // says nothing about the backend, so it is not counted
                        // against it; the request goes to the same backend once
                        // more, on a new connection, whose failure would count.
                        tracing::debug!(client = %peer, backend = %backend.addr(), error = %e.describe(), "a pooled connection failed before answering; sending again on a new one");
                        if body.is_none() {
                            body = unsent.lock().unwrap_or_else(|e| e.into_inner()).take();
                        }
                        if resendable || body.is_some() {
                            fresh = true;
                            continue;
                        }
                    }
                    // Nothing reached a backend that refused the connect; a
                    // reused connection that failed before answering may have
                    // taken the request, so only idempotent ones go again.
                    // A pooled connection the backend closed (its keep-alive
                    // ran out) before the request was written: nothing was
                    // sent and the backend did nothing wrong, so it may take
                    // the request again on a new connection.
                    let retry = e.is_connect()
                        || unsent_request
                        || (resendable && idempotent(&parts.method));
                    let kind = if e.is_connect() {
                        Kind::Connect
                    } else {
                        Kind::ClosedBeforeResponse
                    };
                    let err = Error::new(kind)
                        .at(backend.addr())
                        .because(e.into_io())
                        .retryable(retry);
                    if !unsent_request {
                        health::failed(ctx.proxy.eject_after_failures, backend, &err);
                        failed.push(i as u32);
                    }
                    tracing::debug!(client = %peer, attempt, error = %err, "backend attempt failed");
                    if body.is_none() {
                        body = unsent.lock().unwrap_or_else(|e| e.into_inner()).take();
                    }
                    if !(retry && (resendable || body.is_some())) {
                        return answer(
                            StatusCode::BAD_GATEWAY,
                            "the backend failed to answer\n",
                            busy,
                        );
                    }
                    last = err;
                    break;
                }
            }
        }
    }
    // As in TCP mode: nothing could be reached is 503, a backend that took
    // the request and failed it is 502.
    if last.kind() == Kind::NoBackend {
        METRICS.error(Kind::NoBackend);
    }
    match last.kind() {
        Kind::NoBackend | Kind::Connect | Kind::ConnectTimeout => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "no backend available\n",
            busy,
        ),
        _ => answer(
            StatusCode::BAD_GATEWAY,
            "the backend failed to answer\n",
            busy,
        ),
    }
}

/// How one attempt reaches its backend. It lives on the stack for one
/// attempt; boxing the larger variant would allocate on every request.
#[allow(clippy::large_enum_variant)]
enum Via {
    /// A sender from this thread's own HTTP/1.1 pool (`upstream.rs`).
    Own(
        hyper::client::conn::http1::SendRequest<ReqBody>,
        upstream::Lease,
    ),
    /// hyper-util's client (HTTP/2 backends, upgrades) and the backend's
    /// authority for the absolute URI it wants.
    Pooled(Upstream, hyper::http::uri::Authority),
}

/// Why an upstream request got no response head.
enum UpstreamError {
    /// From hyper-util's client (HTTP/2 backends, upgrades).
    Pooled(hyper_util::client::legacy::Error),
    /// From a connection driven here (the connect was done before).
    Local(hyper::Error),
}

impl UpstreamError {
    fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Pooled(e) if e.is_connect())
    }

    fn describe(&self) -> String {
        match self {
            UpstreamError::Pooled(e) => e.to_string(),
            UpstreamError::Local(e) => e.to_string(),
        }
    }

    /// The request was never written (hyper-util retries these itself).
    fn never_sent(&self) -> bool {
        matches!(self, UpstreamError::Local(e) if e.is_canceled())
    }

    fn into_io(self) -> std::io::Error {
        match self {
            UpstreamError::Pooled(e) => std::io::Error::other(e),
            UpstreamError::Local(e) => std::io::Error::other(e),
        }
    }
}

/// Who made the response head late.
enum Late {
    /// The backend, after the request's last byte.
    Backend,
    /// The client, which stopped sending its body.
    Client,
}

/// Waits for the response head. The upstream header timeout runs from the
/// request's last byte, not its first: a long upload is not the backend's
/// delay. While the body is still coming, a gap of `head_timeout` in it
/// is the client's (`408`).
async fn wait_for_head<F: std::future::Future>(
    ctx: &Context,
    response: F,
    upload: Option<&body::Upload>,
) -> Result<F::Output, Late> {
    let limit = ctx.http.upstream_header_timeout;
    let gap = ctx.http.head_timeout;
    let first = match upload {
        Some(_) => limit.min(gap),
        None => limit,
    };
    let started = crate::clock::now_ms();
    let timer = tokio::time::sleep(first);
    tokio::pin!(response, timer);
    loop {
        tokio::select! {
            r = &mut response => return Ok(r),
            _ = &mut timer => {
                let now = crate::clock::now_ms();
                let ms = |d: Duration| d.as_millis() as u64;
                let next = match upload {
                    None => return Err(Late::Backend),
                    Some(u) => match u.done_ms() {
                        Some(done) => {
                            let waited = now.saturating_sub(done.max(started));
                            if waited >= ms(limit) {
                                return Err(Late::Backend);
                            }
                            ms(limit) - waited
                        }
                        None => {
                            let idle = now.saturating_sub(u.last_ms().max(started));
                            if idle >= ms(gap) {
                                return Err(Late::Client);
                            }
                            ms(gap) - idle
                        }
                    },
                };
                timer.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(next.max(1)));
            }
        }
    }
}

/// RFC 9110 9.2.2: sending it twice means the same as sending it once.
fn idempotent(m: &hyper::Method) -> bool {
    use hyper::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(m)
}

/// The backend's response, as the client gets it.
fn respond(
    mut resp: Response<Incoming>,
    guard: crate::backends::ConnectionGuard,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    busy: Option<Busy>,
    body_timeout: Option<Duration>,
    lease: Option<upstream::Lease>,
) -> Response<ResBody> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let backend_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let _guard = guard;
            if let (Ok(c), Ok(b)) = tokio::join!(client_upgrade, backend_upgrade) {
                let (mut c, mut b) = (TokioIo::new(c), TokioIo::new(b));
                let _ = tokio::io::copy_bidirectional(&mut c, &mut b).await;
            }
        });
        let (parts, _) = resp.into_parts();
        // The upgraded stream is no request in flight: idleness is the
        // splice's business (its own connection), not keep-alive's.
        return Response::from_parts(parts, Tracked::full(Bytes::new(), busy));
    }
    // RFC 9112 6.3: with both, the length is not the body's (hyper read it
    // chunked); passed on, it would have the client wait for bytes that
    // never come.
    if resp.headers().contains_key(header::TRANSFER_ENCODING) {
        resp.headers_mut().remove(header::CONTENT_LENGTH);
    }
    headers::strip_hop_by_hop(resp.headers_mut());
    resp.map(|b| Tracked::upstream(b, busy, guard, body_timeout, lease))
}

/// One decision, from hyper's parse of the request head.
#[allow(clippy::too_many_arguments)]
fn pick(
    strategy: &Strategy,
    info: &ConnInfo,
    protocol: Protocol,
    parts: &hyper::http::request::Parts,
    path: &str,
    peer: SocketAddr,
    attempt: u32,
    failed: &[u32],
    candidates: &BackendList,
) -> crate::strategy::Decision {
    // Most requests carry a few headers: a small table on the stack, a
    // vector for the rest.
    let mut small: [(&[u8], &[u8]); 24] = [(&[], &[]); 24];
    let mut large: Vec<(&[u8], &[u8])> = Vec::new();
    let count = parts.headers.len().min(MAX_HEADERS);
    let pairs: &mut [(&[u8], &[u8])] = if count <= small.len() {
        &mut small[..count]
    } else {
        large.resize(count, (&[], &[]));
        &mut large
    };
    let mut n = 0;
    for ((name, value), slot) in parts.headers.iter().zip(pairs.iter_mut()) {
        *slot = (name.as_str().as_bytes(), value.as_bytes());
        n += 1;
    }
    let authority = parts
        .headers
        .get(header::HOST)
        .map(|h| h.as_bytes())
        .or_else(|| parts.uri.authority().map(|a| a.as_str().as_bytes()))
        .unwrap_or(b"");
    let req = RequestHead {
        protocol,
        method: parts.method.as_str().as_bytes(),
        path: path.as_bytes(),
        authority,
        headers: &pairs[..n],
        sni: info.sni.as_deref().map_or(b"", str::as_bytes),
        alpn: info.alpn.as_deref().map_or(b"", str::as_bytes),
        client: Some(peer),
        attempt,
        failed,
        // `http::HeaderName` is always lower-case.
        names_lowercase: true,
        ..RequestHead::EMPTY
    };
    strategy.decide(&req, candidates)
}
