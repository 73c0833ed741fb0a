//! The request path in TCP mode, one connection at a time, in phases:
//!
//! 1. **sniff** ([`crate::sniff::read_head`]): the first bytes, within the
//!    head timeout and size cap: an HTTP/1 head, the HTTP/2 preface, a TLS
//!    ClientHello or opaque bytes. Bad heads get `408`, `431` or `400`.
//! 2. **route** (`route.rs`): the strategy picks a backend from the head and
//!    the live stats; a failed attempt marks that candidate failed and asks
//!    again, up to `retries` times. Nothing to route to: `503` for HTTP.
//! 3. **first response** (`upstream.rs`): connect, send what was read, and
//!    let the client's further bytes flow while waiting for the backend's
//!    first byte. A backend that closes before it counts as failed (passive
//!    ejection), and a safe request (GET, HEAD, OPTIONS, TRACE) whose bytes
//!    are all still held is replayed to another backend; others get `502`.
//! 4. **forward** ([`forward`]): both directions until each side closes,
//!    half-closes passed on, so WebSockets and other long-lived streams just
//!    work.
//!
//! Every failure is an [`Error`] naming who caused it and why.

pub(crate) mod answer;
mod client;
pub mod forward;
mod idle;
pub mod proxy_v2;
mod route;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::backends::Backends;
use crate::error::{Error, Side};
use crate::http::Mode;
use crate::metrics::{METRICS, Path};
use crate::sniff::{self, Sniffed};
use crate::strategy::Strategy;
use crate::telemetry::RateLimit;
pub use client::{Acceptor, ClientStream};
pub use forward::{Buffer, Forward};

/// How connections are proxied once sniffed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyOptions {
    /// Backend connect timeout.
    pub connect_timeout: Duration,
    /// Other backends to try after a failed attempt.
    pub retries: u32,
    /// Send a PROXY protocol v2 header to backends.
    pub proxy_protocol: bool,
    /// How bytes move once routed.
    pub forward: Forward,
    /// Close a connection when nothing moved either way for this long.
    pub idle_timeout: Option<Duration>,
    /// Most bytes of a safe request held for a replay.
    pub replay_limit: usize,
    /// Failures in a row that eject a backend.
    pub eject_after_failures: u32,
    /// An HTTP request's backend must start its response within this of
    /// the client's last byte (`504`).
    pub response_timeout: Duration,
}

/// Everything a connection task needs, shared by all of them.
pub struct Context {
    /// Head limits.
    pub sniff: sniff::Limits,
    /// Proxy settings.
    pub proxy: ProxyOptions,
    /// HTTP mode's settings.
    pub http: crate::http::HttpOptions,
    /// Fired by a graceful shutdown: HTTP connections finish their current
    /// requests and close.
    pub graceful: tokio_util::sync::CancellationToken,
    /// The backend set.
    pub backends: Arc<Backends>,
    /// The strategy.
    pub strategy: Arc<Strategy>,
    /// Terminates TLS in HTTP mode, when certificates are configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// `Alt-Svc` for HTTP responses when HTTP/3 listens.
    pub alt_svc: Option<hyper::header::HeaderValue>,
    /// The access log, if one is kept.
    pub access: Option<Arc<crate::access::AccessLog>>,
}

/// What a TCP-mode connection's decisions came to, for the access log.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    attempts: u32,
    fallback: Option<&'static str>,
    backend: Option<SocketAddr>,
}

/// Writes a TCP-mode connection's access log line, if a log is kept.
fn access(
    ctx: &Context,
    start: Option<(std::time::SystemTime, std::time::Instant)>,
    peer: SocketAddr,
    trace: &Trace,
    (bytes_in, bytes_out): (u64, u64),
    error: Option<&Error>,
) {
    let (Some(log), Some((start, started))) = (&ctx.access, start) else {
        return;
    };
    log.log(crate::access::Entry {
        start,
        mode: "tcp",
        client: peer,
        method: None,
        path: None,
        status: None,
        backend: trace.backend,
        attempts: trace.attempts,
        fallback: trace.fallback,
        bytes_in,
        bytes_out,
        duration: started.elapsed(),
        error: error.map(|e| e.kind().as_str()),
    });
}

/// One client connection, start to end.
pub async fn handle(ctx: Arc<Context>, mut client: ClientStream, peer: SocketAddr) {
    // The clock is read for the access log only when one is kept.
    let began = ctx
        .access
        .is_some()
        .then(|| (std::time::SystemTime::now(), std::time::Instant::now()));
    let mut trace = Trace::default();
    // TCP_NODELAY and SO_KEEPALIVE come from the listener (see `listener`).
    let mut buf = Buffer::take();
    let started = std::time::Instant::now();
    let sniffed = sniff::read_head(&mut client, &mut buf, &ctx.sniff).await;
    METRICS.sniff.observe(started.elapsed());
    let sniffed = match sniffed {
        Ok(s) => s,
        Err(e) => {
            access(&ctx, began, peer, &trace, (0, 0), Some(&e));
            return refuse(&mut client, peer, &e, true).await;
        }
    };
    let http = matches!(sniffed, Sniffed::Http1(_));
    // HTTP mode takes HTTP from here: a decision per request.
    let version = match (&sniffed, ctx.http.mode) {
        (_, Mode::Tcp) => None,
        (Sniffed::Tls(_), _) if ctx.tls.is_some() => {
            let acceptor = ctx.tls.clone().expect("checked");
            let _open = METRICS.connection(Path::Tls);
            // Boxed, as below: a TLS session and hyper's connection state
            // would otherwise size every TCP-mode connection's future.
            return Box::pin(crate::http::serve_tls(ctx, acceptor, &buf, client, peer)).await;
        }
        (Sniffed::Http1(_), _) => Some(hyper::Version::HTTP_11),
        (Sniffed::Http2Prior, _) => Some(hyper::Version::HTTP_2),
        (_, Mode::Http) => {
            let e = Error::new(crate::error::Kind::NotHttp);
            access(&ctx, began, peer, &trace, (0, 0), Some(&e));
            return refuse(&mut client, peer, &e, false).await;
        }
        (_, Mode::Auto) => None,
    };
    if let Some(version) = version {
        let _open = METRICS.connection(Path::Http);
        // Boxed: hyper's connection state is kilobytes, and an unboxed
        // branch would make every TCP-mode connection's future that large
        // (2,000 idle TCP connections measured 20 MiB against 5 MiB).
        return Box::pin(crate::http::serve(ctx, &buf, client, peer, version)).await;
    }
    let ctx = &*ctx;
    // TCP mode waits on both sides at once: the reactor must know the
    // client.
    let mut client = match client.into_tokio() {
        Ok(c) => c,
        Err(e) => {
            return tracing::debug!(client = %peer, error = %e, "cannot register the client socket");
        }
    };
    let _open = METRICS.connection(Path::Tcp);
    let idle = idle::Idle::new(ctx.proxy.idle_timeout);
    let timer = idle.timer(http.then_some(ctx.proxy.response_timeout));
    tokio::pin!(timer);
    let routed = route::route(
        ctx,
        &mut client,
        &sniffed,
        buf,
        peer,
        (&idle, timer.as_mut().as_pin_mut()),
        &mut trace,
    );
    let routed = match routed.await {
        Ok(r) => r,
        Err(e) => {
            access(ctx, began, peer, &trace, (0, 0), Some(&e));
            return refuse(&mut client, peer, &e, http).await;
        }
    };
    let before = routed.written_before();
    let (mut upstream, start, _guard) = routed.into_parts();
    let moved = forward::bidirectional(
        &mut client,
        &mut upstream,
        ctx.proxy.forward,
        (&idle, timer.as_mut().as_pin_mut()),
        start,
    )
    .await;
    access(
        ctx,
        began,
        peer,
        &trace,
        moved
            .as_ref()
            .map_or((before, 0), |(i, o)| (before + i, *o)),
        None,
    );
    match moved {
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            tracing::debug!(client = %peer, "closed after the idle timeout");
        }
        Err(e) => tracing::debug!(client = %peer, error = %e, "connection ended with an error"),
        Ok(_) => {}
    }
}

/// Ends a connection that cannot be served: the HTTP answer for `e` when the
/// client spoke HTTP, and a log line naming the cause.
async fn refuse<S: tokio::io::AsyncWrite + Unpin>(
    client: &mut S,
    peer: SocketAddr,
    e: &Error,
    http: bool,
) {
    // Clients misbehave all the time: debug. Backends failing matters, but
    // an outage must not write a line per connection: one a second, with
    // the count of those left out.
    static BACKEND_ERRORS: RateLimit = RateLimit::new(1);
    // A backend's own failures were counted when its attempt failed.
    if e.side() != Side::Backend || e.kind() == crate::error::Kind::NoBackend {
        METRICS.error(e.kind());
    }
    match e.side() {
        Side::Client => {
            tracing::debug!(client = %peer, kind = e.kind().as_str(), error = %e, "connection refused")
        }
        _ => {
            if let Some(suppressed) = BACKEND_ERRORS.allow() {
                tracing::warn!(
                    client = %peer,
                    kind = e.kind().as_str(),
                    error = %e,
                    suppressed,
                    "connection not served"
                );
            }
        }
    }
    if http && let Some(answer) = answer::for_kind(e.kind()) {
        let _ = client.write_all(answer).await;
        let _ = client.shutdown().await;
    }
}
