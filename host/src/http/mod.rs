//! HTTP mode: every request is a decision. hyper serves the client
//! connection (HTTP/1.1, or HTTP/2 with prior knowledge); each request's
//! head goes to the strategy as hyper parsed it (no second parse: HTTP/2
//! names are lower-case already, and `http`'s `HeaderName` always is), and
//! goes out over a per-thread pool of keep-alive connections to the chosen
//! backend. Bodies stream both ways; upgrades (WebSocket) are spliced once
//! the backend answers `101`.
//!
//! The first request of a connection arrives through the sniffer, which has
//! read its head already (`io::Prefixed` hands those bytes to hyper first).

mod body;
pub mod headers;
mod io;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{Either, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::backends::{Backends, health};
use crate::error::{Error, Kind};
use crate::proxy::{Buffer, Context};
use crate::sniff::http1::MAX_HEADERS;
use crate::strategy::{CandidateStats, Protocol, RequestHead, Strategy};
pub use io::Prefixed;

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
    #[default]
    Tcp,
    /// A decision per HTTP request (HTTP/1.1, HTTP/2); anything else is
    /// refused.
    Http,
    /// HTTP/1 and HTTP/2 as `http`, everything else as `tcp`.
    Auto,
}

/// HTTP mode's settings.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// How bytes are routed.
    pub mode: Mode,
    /// A backend must send its response head within this (else `504`).
    pub upstream_header_timeout: Duration,
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

type ReqBody = Either<Incoming, Empty<Bytes>>;
type ResBody = Either<body::Guarded<Incoming>, Full<Bytes>>;

thread_local! {
    /// One pool per serving thread: a connection is used only by the
    /// runtime whose reactor it is registered with.
    static CLIENT: std::cell::OnceCell<Client<HttpConnector, ReqBody>> = const { std::cell::OnceCell::new() };
}

fn client(opts: &HttpOptions, connect_timeout: Duration) -> Client<HttpConnector, ReqBody> {
    CLIENT.with(|c| {
        c.get_or_init(|| {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(connect_timeout));
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_max_idle_per_host(opts.pool_max_idle)
                .pool_idle_timeout(opts.pool_idle_timeout)
                .build(connector)
        })
        .clone()
    })
}

/// Serves one client connection in HTTP mode until it closes, or until a
/// graceful shutdown lets its current requests finish.
pub async fn serve(ctx: Arc<Context>, io: Prefixed, peer: SocketAddr, version: Version) {
    let graceful = ctx.graceful.clone();
    let svc = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(&ctx, req, peer).await) }
    });
    let io = TokioIo::new(io);
    let result = if version == Version::HTTP_2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .serve_connection(io, svc);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            _ = graceful.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    } else {
        let conn = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .timer(TokioTimer::new())
            .serve_connection(io, svc)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            _ = graceful.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %peer, error = %e, "HTTP connection ended with an error");
    }
}

/// A response Switchyard writes itself.
fn answer(status: StatusCode, text: &'static str) -> Response<ResBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// One request: decide, send, and try another backend if the connect
/// failed and the request can be sent again.
async fn handle(ctx: &Context, mut req: Request<Incoming>, peer: SocketAddr) -> Response<ResBody> {
    let client_upgrade = headers::is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let protocol = match parts.version {
        Version::HTTP_2 => Protocol::Http2,
        _ => Protocol::Http1,
    };
    // Authority before the head is rewritten: HTTP/2 carries it in the URI.
    if !parts.headers.contains_key(header::HOST)
        && let Some(a) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(header::HOST, a);
    }
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::add_forwarded(&mut parts.headers, peer, "http", ctx.http.trust_forwarded);
    if ctx.http.request_id {
        headers::add_request_id(&mut parts.headers);
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    // A request without a body can be sent again as it is.
    let resendable = hyper::body::Body::is_end_stream(&body);
    let mut body = Some(body);
    let client = client(&ctx.http, ctx.proxy.connect_timeout);
    let list = ctx.backends.load();
    let mut candidates: Vec<CandidateStats> = Vec::with_capacity(list.len());
    let mut failed: Vec<u32> = Vec::new();
    let mut last = Error::new(Kind::NoBackend);
    for attempt in 0..=ctx.proxy.retries {
        Backends::snapshot(&list, &mut candidates);
        let Some(i) = pick(
            &ctx.strategy,
            protocol,
            &parts,
            &path,
            peer,
            attempt,
            &failed,
            &candidates,
        ) else {
            break;
        };
        let backend = &list[i];
        let guard = backend.open_connection();
        let Ok(uri) = Uri::try_from(format!("http://{}{path}", backend.addr())) else {
            return answer(StatusCode::BAD_REQUEST, "bad request target\n");
        };
        let out_body = match body.take() {
            Some(b) => Either::Left(b),
            None => Either::Right(Empty::new()),
        };
        let mut out = Request::new(out_body);
        *out.method_mut() = parts.method.clone();
        *out.uri_mut() = uri;
        *out.headers_mut() = parts.headers.clone();
        let sent = tokio::time::timeout(ctx.http.upstream_header_timeout, client.request(out));
        match sent.await {
            Err(_) => {
                tracing::debug!(client = %peer, backend = %backend.addr(), "no response head in time");
                return answer(
                    StatusCode::GATEWAY_TIMEOUT,
                    "the backend did not answer in time\n",
                );
            }
            Ok(Ok(resp)) => {
                backend.responded();
                return respond(resp, guard, client_upgrade);
            }
            Ok(Err(e)) => {
                // Nothing reached a backend that refused the connect; a
                // reused connection that failed before answering may have
                // taken the request, so only idempotent ones go again.
                let retry = e.is_connect() || (resendable && idempotent(&parts.method));
                let kind = if e.is_connect() {
                    Kind::Connect
                } else {
                    Kind::ClosedBeforeResponse
                };
                let err = Error::new(kind)
                    .at(backend.addr())
                    .because(std::io::Error::other(e))
                    .retryable(retry);
                health::failed(ctx.proxy.eject_after_failures, backend, &err);
                tracing::debug!(client = %peer, attempt, error = %err, "backend attempt failed");
                failed.push(i as u32);
                if !(retry && (resendable || body.is_some())) {
                    return answer(StatusCode::BAD_GATEWAY, "the backend failed to answer\n");
                }
                last = err;
            }
        }
    }
    // As in TCP mode: nothing could be reached is 503, a backend that took
    // the request and failed it is 502.
    match last.kind() {
        Kind::NoBackend | Kind::Connect | Kind::ConnectTimeout => {
            answer(StatusCode::SERVICE_UNAVAILABLE, "no backend available\n")
        }
        _ => answer(StatusCode::BAD_GATEWAY, "the backend failed to answer\n"),
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
        return Response::from_parts(parts, Either::Right(Full::new(Bytes::new())));
    }
    headers::strip_hop_by_hop(resp.headers_mut());
    resp.map(|b| Either::Left(body::Guarded::new(b, guard)))
}

/// One decision, from hyper's parse of the request head.
#[allow(clippy::too_many_arguments)]
fn pick(
    strategy: &Strategy,
    protocol: Protocol,
    parts: &hyper::http::request::Parts,
    path: &str,
    peer: SocketAddr,
    attempt: u32,
    failed: &[u32],
    candidates: &[CandidateStats],
) -> Option<usize> {
    let mut pairs: [(&[u8], &[u8]); MAX_HEADERS] = [(&[], &[]); MAX_HEADERS];
    let mut n = 0;
    for (name, value) in parts.headers.iter().take(MAX_HEADERS) {
        pairs[n] = (name.as_str().as_bytes(), value.as_bytes());
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
        client: Some(peer),
        attempt,
        failed,
        ..RequestHead::EMPTY
    };
    strategy.decide(&req, candidates).index
}

/// The bytes the sniffer read, put back in front of the client socket.
pub fn prefixed(buf: Buffer, client: tokio::net::TcpStream) -> Prefixed {
    Prefixed::new(buf, client)
}
