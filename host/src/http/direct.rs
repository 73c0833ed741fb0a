//! HTTP/1.1 without hyper, for the requests that are most of the traffic:
//! no body or a small one (`Content-Length` up to 64 KiB, held whole), no
//! upgrade, no `Expect`, an origin-form target, from an HTTP/1.1 client
//! (plain, or TLS with ALPN `http/1.1`). Everything else on the connection
//! (a large or chunked body, an upgrade, HTTP/1.0, a head that arrives in
//! pieces, anything the head checks refuse, trusted forwarded headers)
//! hands the connection with its unread bytes to the hyper path
//! (`serve_io`) for the rest of its life, and that path answers exactly as
//! before.
//!
//! Why: hyper serves each connection with a dispatcher per side, a task per
//! upstream connection, header maps built and dropped on every request, and
//! #9 measured HTTP mode at 1.2-1.4x HAProxy `mode http`'s CPU per request.
//! The floor of a hand-written path (`benches/examples/h1_floor.rs`) measured
//! 0.71-0.88x in the same rounds, with user time a third of Switchyard's.
//! This path is that floor with what the balancer owes every request: the
//! head checks of the guard (parsed once, by them), the decision, the
//! forwarded headers and request id, a per-thread pool of upstream
//! connections, retries, timeouts and the answers `502`/`503`/`504`, the
//! access log and the metrics.
//!
//! A request is read whole from the client's buffer, its head rewritten
//! into one write to the backend, the response head parsed (httparse) and
//! rewritten into one write to the client together with the body bytes that
//! came with it; the rest of the body is copied as it comes, its end found
//! by `Content-Length` or the chunked framing (followed, never re-encoded,
//! so trailers pass), or the backend's close.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::ConnInfo;
use super::guard::{self, Checked, Chunk, State};
use crate::backends::{Backend, BackendList, health};
use crate::clock::now_ms;
use crate::error::{Error, Kind};
use crate::metrics::{HttpVersion, METRICS};
use crate::proxy::Context;
use crate::strategy::{Protocol, RequestHead};

/// The `502` answer's text, as the hyper path's.
const FAILED: &str = "the backend failed to answer\n";
/// Read buffer for each side; a body larger than this is copied through it.
const BUF: usize = 16 * 1024;
/// Largest response head taken from a backend: hyper's client's buffer
/// limit, so both paths take the same heads.
const MAX_RESPONSE_HEAD: usize = 400 * 1024;
/// Headers a response may have.
const MAX_RESPONSE_HEADERS: usize = 100;
/// Largest request body this path takes (held whole); a larger one, or a
/// chunked one, goes to the hyper path, which streams it.
const MAX_BODY: usize = 64 * 1024;
/// Tokens of `Connection` kept track of (names of headers to drop); a
/// request with more goes to the hyper path.
const MAX_NAMED: usize = 8;

/// How a client connection ends.
pub(crate) trait ClientEnd {
    /// Makes the close that follows an error for the client: a response
    /// cut short must not look whole.
    fn abort(&mut self);

    /// Whether dropping the connection ends it as cleanly as a shutdown
    /// first would (a TCP socket: the FIN follows the data either way), so
    /// the shutdown's system call can be left out.
    fn drop_ends_cleanly(&self) -> bool {
        false
    }
}

impl<IO> ClientEnd for tokio_rustls::server::TlsStream<IO> {
    // Dropped without close_notify, which a TLS client reads as a cut.
    fn abort(&mut self) {}
}

/// Serves `client` until it closes, or hands it to the hyper path.
pub(super) async fn serve<S>(
    ctx: Arc<Context>,
    prefix: &[u8],
    mut client: S,
    peer: SocketAddr,
    info: ConnInfo,
) where
    S: AsyncRead + AsyncWrite + ClientEnd + Unpin + Send + 'static,
{
    let mut conn = Conn {
        ctx: &ctx,
        info: &info,
        peer,
        buf: Vec::with_capacity(BUF.max(prefix.len())),
        out: Vec::with_capacity(2048),
        resp: Vec::with_capacity(BUF),
        spans: Vec::new(),
        deadline: Deadline::new(),
    };
    conn.buf.extend_from_slice(prefix);
    let rest = match conn.run(&mut client).await {
        Ok(Some(rest)) => rest,
        Ok(None) => return,
        Err(e) => {
            return tracing::debug!(client = %peer, error = %e, "HTTP connection ended with an error");
        }
    };
    drop(conn);
    // Boxed: hyper's connection state would otherwise size this future for
    // every connection, including those that never need it.
    Box::pin(super::serve_io(
        ctx.clone(),
        &rest,
        client,
        peer,
        hyper::Version::HTTP_11,
        info,
    ))
    .await
}

/// One client connection's state between requests.
struct Conn<'a> {
    ctx: &'a Context,
    info: &'a ConnInfo,
    peer: SocketAddr,
    /// Client bytes read and not yet served.
    buf: Vec<u8>,
    /// The head going out (to the backend, then to the client).
    out: Vec<u8>,
    /// Backend bytes.
    resp: Vec<u8>,
    /// Where each header of the head in `out` is, for the strategy.
    spans: Vec<Span>,
    deadline: Deadline,
}

/// What to do with the head at the front of the buffer.
enum Plan {
    /// Send `out` to the backend chosen.
    Send(Planned),
    /// Not a request for this path: hyper takes the connection.
    Handover,
}

struct Planned {
    head_len: usize,
    /// A `Content-Length` body, held whole before the backend is engaged.
    body_len: usize,
    /// The head's length in `out` (the body follows it there).
    out_head: usize,
    /// Where the method, target and `Host` value are in `out`.
    method_len: usize,
    target_len: usize,
    host_at: (usize, usize),
    /// The client asked to close after this response.
    close: bool,
    /// `HEAD`: the response has no body whatever its head says.
    head_only: bool,
    /// RFC 9110 9.2.2, and no body: may be sent again after a failure that
    /// may have reached the backend.
    idempotent: bool,
    /// Method and path, for the access log (when one is kept).
    logged: Option<(Box<str>, Box<str>)>,
}

/// How a response's body ends (RFC 9112 6.3).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// At the backend's close; the client connection closes after it.
    Close,
}

/// How the client connection goes on after a response.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    Keep,
    Close,
    /// The response was cut short: ended so the client can tell it from a
    /// whole one.
    Cut,
}

/// A final response head, as the client gets it (in `out`).
struct Head {
    /// Its length in `resp`.
    len: usize,
    status: u16,
    framing: Framing,
    /// The backend keeps the connection.
    keep: bool,
}

/// Why no usable response head came.
enum HeadError {
    /// The backend closed or failed before sending a byte of it.
    Nothing(std::io::Error),
    /// The upstream header timeout passed.
    Late,
    /// What came is no HTTP/1 response head.
    Bad(&'static str),
    /// The client failed while an informational head went to it.
    Client(std::io::Error),
}

/// What one request came to, for the access log.
struct Trace {
    attempts: u32,
    fallback: Option<&'static str>,
    backend: Option<SocketAddr>,
    status: Option<u16>,
    bytes_out: u64,
}

/// The access log's line for one request, written when dropped: after the
/// response, or with `cut_before_response` if the request ends first.
struct Line<'a> {
    log: &'a Arc<crate::access::AccessLog>,
    start: std::time::SystemTime,
    started: std::time::Instant,
    client: SocketAddr,
    method: Option<Box<str>>,
    path: Option<Box<str>>,
    bytes_in: u64,
    trace: Trace,
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        let t = &self.trace;
        self.log.log(crate::access::Entry {
            start: self.start,
            mode: "http1",
            client: self.client,
            method: self.method.take(),
            path: self.path.take(),
            status: t.status,
            backend: t.backend,
            attempts: t.attempts,
            fallback: t.fallback,
            bytes_in: self.bytes_in,
            bytes_out: t.bytes_out,
            duration: self.started.elapsed(),
            error: t.status.is_none().then_some("cut_before_response"),
        });
    }
}

/// The access log's line for `send`, when a log is kept.
fn access_line<'a>(ctx: &'a Context, client: SocketAddr, send: &mut Planned) -> Option<Line<'a>> {
    let (log, (method, path)) = (ctx.access.as_ref()?, send.logged.take()?);
    Some(Line {
        log,
        start: std::time::SystemTime::now(),
        started: std::time::Instant::now(),
        client,
        method: Some(method),
        path: Some(path),
        bytes_in: send.body_len as u64,
        trace: Trace {
            attempts: 0,
            fallback: None,
            backend: None,
            status: None,
            bytes_out: 0,
        },
    })
}

impl Conn<'_> {
    /// Serves requests until the client leaves (`None`) or one needs the
    /// hyper path (`Some`, the bytes it has to read first).
    async fn run<S: AsyncRead + AsyncWrite + ClientEnd + Unpin>(
        &mut self,
        client: &mut S,
    ) -> std::io::Result<Option<Vec<u8>>> {
        let ctx = self.ctx;
        let keepalive = ctx.http.keepalive_timeout.as_millis() as u64;
        let head_timeout = ctx.http.head_timeout.as_millis() as u64;
        let cancelled = ctx.graceful.cancelled();
        tokio::pin!(cancelled);
        let mut done_ms = now_ms();
        // Nothing was read before (TLS, whose handshake the sniffer saw):
        // the first request gets the head timeout, as a plain connection's
        // first bytes do, and a graceful stop does not close it before then
        // (a binary upgrade hands the queue over at that moment).
        let silent_start = self.buf.is_empty();
        let mut served = 0u64;
        loop {
            if self.buf.is_empty() {
                // Idle between requests: the keep-alive timeout, or a
                // graceful stop, ends the connection.
                if self.buf.capacity() < BUF {
                    self.buf.reserve(BUF);
                }
                let first = silent_start && served == 0;
                let due = done_ms + if first { head_timeout } else { keepalive };
                let n = tokio::select! {
                    biased;
                    r = client.read_buf(&mut self.buf) => r?,
                    _ = &mut cancelled, if !first => return Ok(None),
                    _ = self.deadline.until(due) => {
                        if first {
                            METRICS.error(Kind::ClientSilent);
                        }
                        return Ok(None);
                    }
                };
                if n == 0 {
                    return Ok(None);
                }
            }
            let list = ctx.backends.load();
            let mut send = match plan(self) {
                Ok(Plan::Send(s)) => s,
                // A head in pieces (whose timing the guard keeps), a
                // refusal (which the guard answers), or a request of
                // another kind.
                Ok(Plan::Handover) | Err(_) => return Ok(Some(std::mem::take(&mut self.buf))),
            };
            let whole = send.head_len + send.body_len;
            let mut line = access_line(ctx, self.peer, &mut send);
            if send.body_len > 0 {
                // The body, held whole (it is small): then the request can
                // go again as it is, and nothing waits on the client once a
                // backend is engaged.
                if let Err(why) = self.read_body(client, whole, head_timeout).await {
                    let (status, text) = why;
                    METRICS.request(HttpVersion::Http1);
                    METRICS.error(Kind::ClientIo);
                    if let Some(l) = &mut line {
                        l.bytes_in = self.buf.len().saturating_sub(send.head_len) as u64;
                    }
                    self.answer(client, &mut line, status, text, true).await?;
                    let _ = client.shutdown().await;
                    return Ok(None);
                }
                self.out.extend_from_slice(&self.buf[send.head_len..whole]);
            }
            let after = self.exchange(client, send, &list, line).await?;
            self.buf.drain(..whole);
            // A large head or body does not stay held by an idle connection.
            for v in [&mut self.buf, &mut self.resp] {
                if v.capacity() > 2 * BUF && v.len() <= BUF {
                    v.shrink_to(BUF);
                }
            }
            served += 1;
            done_ms = now_ms();
            if after == After::Cut {
                // No clean end for a body cut short: a close-delimited one
                // would look whole. TLS ends without close_notify, TCP with
                // a reset.
                client.abort();
                return Ok(None);
            }
            if after == After::Close || ctx.graceful.is_cancelled() {
                if !client.drop_ends_cleanly() {
                    let _ = client.shutdown().await;
                }
                return Ok(None);
            }
        }
    }

    /// Reads until `buf` holds `whole` bytes, each read within `gap_ms` of
    /// the last: else the answer the client gets (`408`, or `400` for a
    /// body cut short).
    async fn read_body<S: AsyncRead + Unpin>(
        &mut self,
        client: &mut S,
        whole: usize,
        gap_ms: u64,
    ) -> Result<(), (u16, &'static str)> {
        self.buf.reserve(whole.saturating_sub(self.buf.len()));
        while self.buf.len() < whole {
            let due = now_ms() + gap_ms;
            let n = tokio::select! {
                biased;
                r = client.read_buf(&mut self.buf) => r,
                _ = self.deadline.until(due) => {
                    return Err((408, "the request body did not arrive in time\n"));
                }
            };
            if !matches!(n, Ok(n) if n > 0) {
                return Err((400, "malformed or incomplete request body\n"));
            }
        }
        Ok(())
    }

    /// One request: decide, send, answer. Returns how the client
    /// connection goes on.
    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        client: &mut S,
        send: Planned,
        list: &Arc<BackendList>,
        mut line: Option<Line<'_>>,
    ) -> std::io::Result<After> {
        let ctx = self.ctx;
        METRICS.request(HttpVersion::Http1);
        let close = send.close;
        let (mut index, mut fallback) = self.decide(&send, list, 0, &[]);
        let mut failed: Vec<u32> = Vec::new();
        let mut last = Error::new(Kind::NoBackend);
        let mut attempt = 0;
        let mut fresh = false;
        loop {
            if let Some(l) = &mut line {
                l.trace.attempts = attempt + 1;
                l.trace.fallback = fallback;
            }
            let Some(i) = index else {
                break;
            };
            let backend = &list[i];
            if let Some(l) = &mut line {
                l.trace.backend = Some(backend.addr());
            }
            let _in_flight = backend.open_connection();
            let idle = if fresh {
                None
            } else {
                pool::checkout(list, backend, &ctx.http)
            };
            let reused = idle.is_some();
            let mut up = match idle {
                Some(s) => s,
                None => match pool::connect(backend, ctx.proxy.connect_timeout).await {
                    Ok(s) => s,
                    Err(err) => {
                        health::failed(ctx.proxy.eject_after_failures, backend, &err);
                        tracing::debug!(client = %self.peer, attempt, error = %err, "backend attempt failed");
                        failed.push(i as u32);
                        last = err;
                        match self.next_attempt(&send, list, &mut attempt, &failed) {
                            Some((n, f)) => {
                                (index, fallback, fresh) = (n, f, false);
                                continue;
                            }
                            None => break,
                        }
                    }
                },
            };
            // The response head is due within the upstream header timeout
            // of the request's last byte; the write is bounded by it too.
            let limit = ctx.http.upstream_header_timeout.as_millis() as u64;
            let due = now_ms() + limit;
            let written = tokio::select! {
                biased;
                r = up.write_all(&self.out) => r.map_err(HeadError::Nothing),
                _ = self.deadline.until(due) => Err(HeadError::Late),
            };
            let head = match written {
                Ok(()) => self.response_head(&mut up, client, now_ms() + limit).await,
                Err(e) => Err(e),
            };
            let head = match head {
                Ok(h) => h,
                Err(HeadError::Client(e)) => return Err(e),
                Err(HeadError::Late) => {
                    METRICS.error(Kind::ResponseTimeout);
                    tracing::debug!(client = %self.peer, backend = %backend.addr(), "no response head in time");
                    return self
                        .answer(
                            client,
                            &mut line,
                            504,
                            "the backend did not answer in time\n",
                            close,
                        )
                        .await;
                }
                Err(HeadError::Bad(why)) => {
                    let err = Error::new(Kind::ClosedBeforeResponse)
                        .at(backend.addr())
                        .because(std::io::Error::other(why));
                    health::failed(ctx.proxy.eject_after_failures, backend, &err);
                    tracing::debug!(client = %self.peer, error = %err, "bad response head");
                    return self.answer(client, &mut line, 502, FAILED, close).await;
                }
                Err(HeadError::Nothing(e)) => {
                    if reused && send.idempotent {
                        // Most likely the backend closed the idle connection
                        // (its keep-alive timeout) as the request went out:
                        // nothing against the backend; the same backend once
                        // more, on a new connection, whose failure counts.
                        tracing::debug!(client = %self.peer, backend = %backend.addr(), error = %e, "a pooled connection failed before answering; sending again on a new one");
                        fresh = true;
                        continue;
                    }
                    let err = Error::new(Kind::ClosedBeforeResponse)
                        .at(backend.addr())
                        .because(e)
                        .retryable(send.idempotent);
                    health::failed(ctx.proxy.eject_after_failures, backend, &err);
                    tracing::debug!(client = %self.peer, attempt, error = %err, "backend attempt failed");
                    failed.push(i as u32);
                    if !send.idempotent {
                        return self.answer(client, &mut line, 502, FAILED, close).await;
                    }
                    last = err;
                    match self.next_attempt(&send, list, &mut attempt, &failed) {
                        Some((n, f)) => {
                            (index, fallback, fresh) = (n, f, false);
                            continue;
                        }
                        None => break,
                    }
                }
            };
            backend.responded();
            let framing = if send.head_only {
                Framing::Length(0)
            } else {
                head.framing
            };
            let close_client = close || framing == Framing::Close || ctx.graceful.is_cancelled();
            if let Some(l) = &mut line {
                l.trace.status = Some(head.status);
            }
            let mut sent = 0;
            let copied = self
                .copy_response(client, &mut up, head.len, framing, close_client, &mut sent)
                .await;
            if let Some(l) = &mut line {
                l.trace.bytes_out = sent;
            }
            let (whole, reusable) = copied?;
            if head.keep && reusable {
                pool::checkin(backend, up, ctx.http.pool_max_idle);
            }
            // A cut body leaves the client nothing to tell it from a whole
            // one but how the connection ends (`run`).
            return Ok(match (whole, close_client) {
                (false, _) => After::Cut,
                (true, true) => After::Close,
                (true, false) => After::Keep,
            });
        }
        // As in TCP mode: nothing could be reached is 503, a backend that
        // took the request and failed it is 502.
        if last.kind() == Kind::NoBackend {
            METRICS.error(Kind::NoBackend);
        }
        match last.kind() {
            Kind::NoBackend | Kind::Connect | Kind::ConnectTimeout => {
                self.answer(client, &mut line, 503, "no backend available\n", close)
                    .await
            }
            _ => self.answer(client, &mut line, 502, FAILED, close).await,
        }
    }

    /// The next attempt's decision, if retries are left.
    #[allow(clippy::type_complexity)]
    fn next_attempt(
        &self,
        send: &Planned,
        list: &BackendList,
        attempt: &mut u32,
        failed: &[u32],
    ) -> Option<(Option<usize>, Option<&'static str>)> {
        if *attempt >= self.ctx.proxy.retries {
            return None;
        }
        *attempt += 1;
        Some(self.decide(send, list, *attempt, failed))
    }

    /// Reads the response head into `resp`, passing any informational
    /// (1xx) heads before it to the client, and writes the client's head
    /// into `out`.
    async fn response_head<S: AsyncWrite + Unpin>(
        &mut self,
        up: &mut TcpStream,
        client: &mut S,
        due: u64,
    ) -> Result<Head, HeadError> {
        self.resp.clear();
        let mut got_any = false;
        // Where the search for the head's end resumes: a head trickled in
        // small pieces is parsed once it is whole, not once per piece.
        let mut scanned = 0usize;
        loop {
            if self.resp.capacity() - self.resp.len() < 1024 {
                if self.resp.len() >= MAX_RESPONSE_HEAD {
                    return Err(HeadError::Bad("response head too large"));
                }
                self.resp.reserve(BUF);
            }
            let n = tokio::select! {
                biased;
                r = up.read_buf(&mut self.resp) => r,
                _ = self.deadline.until(due) => return Err(HeadError::Late),
            };
            let n = match n {
                Ok(n) => n,
                Err(e) if !got_any => return Err(HeadError::Nothing(e)),
                Err(_) => return Err(HeadError::Bad("the backend failed inside a response head")),
            };
            if n == 0 {
                if !got_any {
                    return Err(HeadError::Nothing(std::io::ErrorKind::UnexpectedEof.into()));
                }
                return Err(HeadError::Bad("the backend closed inside a response head"));
            }
            got_any = true;
            let from = scanned.saturating_sub(3);
            scanned = self.resp.len();
            if !self.resp[from..]
                .windows(2)
                .any(|w| w == b"\n\n" || w == b"\n\r")
            {
                continue;
            }
            loop {
                match self.client_head() {
                    Ok(Some(Parsed::Final(head))) => return Ok(head),
                    Ok(Some(Parsed::Informational(len))) => {
                        // `103 Early Hints` and the like go on as they are.
                        let sent = match client.write_all(&self.resp[..len]).await {
                            Ok(()) => client.flush().await,
                            Err(e) => Err(e),
                        };
                        sent.map_err(HeadError::Client)?;
                        self.resp.drain(..len);
                        scanned = 0;
                        if self.resp.is_empty() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(why) => return Err(HeadError::Bad(why)),
                }
            }
        }
    }

    /// Parses the response head at the front of `resp`; for a final one,
    /// writes the head the client gets into `out`.
    fn client_head(&mut self) -> Result<Option<Parsed>, &'static str> {
        let mut store = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut r = httparse::Response::new(&mut store);
        let len = match r.parse(&self.resp) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err("malformed response head"),
        };
        let (Some(code), Some(minor)) = (r.code, r.version) else {
            return Err("malformed response head");
        };
        if code == 101 {
            return Err("101 to a request that asked for no upgrade");
        }
        if code < 100 {
            return Err("a status code below 100");
        }
        if (100..200).contains(&code) {
            return Ok(Some(Parsed::Informational(len)));
        }
        // What `Connection` names, and whether the backend keeps the
        // connection.
        let mut named: [&[u8]; MAX_NAMED] = [b""; MAX_NAMED];
        let mut n_named = 0;
        let mut keep = minor == 1;
        let mut lengths: Option<u64> = None;
        let mut bad_length = false;
        let mut codings: Option<&[u8]> = None;
        for h in r.headers.iter() {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"connection") {
                for t in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if t.eq_ignore_ascii_case(b"close") {
                        keep = false;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        keep |= minor == 0;
                    } else if KEPT.iter().any(|k| t.eq_ignore_ascii_case(k)) {
                        // The framing stays: the body is passed as framed.
                    } else if n_named < MAX_NAMED {
                        named[n_named] = t;
                        n_named += 1;
                    } else {
                        return Err("too many Connection options");
                    }
                }
            } else if name.eq_ignore_ascii_case(b"content-length") {
                // RFC 9110 8.6: a list of one value repeated is that value.
                for v in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    let v = std::str::from_utf8(v)
                        .ok()
                        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|v| v.parse::<u64>().ok());
                    match (v, lengths) {
                        (Some(v), None) => lengths = Some(v),
                        (Some(v), Some(l)) if v == l => {}
                        _ => bad_length = true,
                    }
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // Two lines are a list ending where the last line ends; not
                // a backend connection to keep.
                keep &= codings.is_none();
                codings = Some(h.value);
            }
        }
        let no_body = code == 204 || code == 304;
        let framing = if no_body {
            Framing::Length(0)
        } else if let Some(c) = codings {
            let last = c.rsplit(|&b| b == b',').next().unwrap_or(b"").trim_ascii();
            if last.eq_ignore_ascii_case(b"chunked") {
                Framing::Chunked
            } else {
                Framing::Close
            }
        } else if bad_length {
            return Err("invalid or conflicting Content-Length");
        } else {
            match lengths {
                Some(l) => Framing::Length(l),
                None => Framing::Close,
            }
        };
        if framing == Framing::Close {
            keep = false;
        }
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa3(code).as_slice());
        out.push(b' ');
        out.extend_from_slice(r.reason.unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for h in r.headers.iter() {
            let name = h.name.as_bytes();
            let drop = HOP_BY_HOP.iter().any(|n| name.eq_ignore_ascii_case(n))
                || named[..n_named]
                    .iter()
                    .any(|n| name.eq_ignore_ascii_case(n))
                || (self.info.alt_svc.is_some() && name.eq_ignore_ascii_case(b"alt-svc"))
                || (name.eq_ignore_ascii_case(b"content-length")
                    && (codings.is_some() || lengths.is_some()));
            if !drop {
                header(out, name, &[h.value]);
            }
        }
        if let (Some(l), None) = (lengths, codings) {
            // One value, written once: a list of one value repeated is valid
            // but some clients read it as no length at all.
            out.extend_from_slice(b"content-length: ");
            // Formatted into the buffer: no allocation per response.
            let _ = std::io::Write::write_fmt(out, format_args!("{l}"));
            out.extend_from_slice(b"\r\n");
        }
        if let Some(alt) = &self.info.alt_svc {
            header(out, b"alt-svc", &[alt.as_bytes()]);
        }
        Ok(Some(Parsed::Final(Head {
            len,
            status: code,
            framing,
            keep,
        })))
    }

    /// Writes the response head (`out`) and body to the client, counting
    /// the body's payload into `sent` (for the access log, also when the
    /// client fails). Returns whether the body went whole, and whether the
    /// backend connection can be reused (whole, and nothing after it).
    async fn copy_response<S: AsyncWrite + Unpin>(
        &mut self,
        client: &mut S,
        up: &mut TcpStream,
        head_len: usize,
        framing: Framing,
        close_client: bool,
        sent: &mut u64,
    ) -> std::io::Result<(bool, bool)> {
        if close_client {
            self.out.extend_from_slice(b"connection: close\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        let after = &self.resp[head_len..];
        let mut state = match framing {
            Framing::Length(0) => State::Idle,
            Framing::Length(n) => State::Body(n),
            Framing::Chunked => State::Chunked(
                Chunk::Size {
                    digits: 0,
                    ext: false,
                    len: 0,
                },
                0,
            ),
            Framing::Close => State::Passthrough,
        };
        let (body, data, ok) = body_part(&mut state, after);
        let mut extra = ok && body < after.len();
        self.out.extend_from_slice(&after[..body]);
        *sent += data;
        client.write_all(&self.out).await?;
        if !ok {
            client.flush().await?;
            return Ok((false, false));
        }
        let body_timeout = self.ctx.http.upstream_body_timeout;
        while !matches!(state, State::Idle) {
            self.resp.clear();
            if self.resp.capacity() < BUF {
                self.resp.reserve(BUF);
            }
            let n = match body_timeout {
                Some(t) => {
                    let due = now_ms() + t.as_millis() as u64;
                    tokio::select! {
                        biased;
                        r = up.read_buf(&mut self.resp) => r,
                        _ = self.deadline.until(due) => {
                            tracing::debug!(client = %self.peer, "the backend stopped sending the body");
                            return Ok((false, false));
                        }
                    }
                }
                None => up.read_buf(&mut self.resp).await,
            };
            let n = match n {
                Ok(n) => n,
                Err(_) => return Ok((false, false)),
            };
            if n == 0 {
                // The end of a body that runs to the close; a cut one
                // otherwise.
                return Ok((matches!(state, State::Passthrough), false));
            }
            let (body, data, ok) = body_part(&mut state, &self.resp);
            *sent += data;
            client.write_all(&self.resp[..body]).await?;
            if !ok {
                return Ok((false, false));
            }
            extra = body < self.resp.len();
        }
        // TLS holds written bytes until a flush; TCP does nothing here.
        client.flush().await?;
        Ok((true, !extra))
    }

    /// Writes an answer of Switchyard's own. Returns how the connection
    /// goes on.
    async fn answer<S: AsyncWrite + Unpin>(
        &mut self,
        client: &mut S,
        line: &mut Option<Line<'_>>,
        status: u16,
        text: &str,
        close: bool,
    ) -> std::io::Result<After> {
        if let Some(l) = line {
            l.trace.status = Some(status);
            l.trace.bytes_out = text.len() as u64;
        }
        let close = close || self.ctx.graceful.is_cancelled();
        let reason = hyper::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        self.out.clear();
        crate::proxy::answer::write(
            &mut self.out,
            format_args!("{status} {reason}"),
            text,
            close,
        );
        client.write_all(&self.out).await?;
        client.flush().await?;
        Ok(if close { After::Close } else { After::Keep })
    }
}

/// A response head parsed.
enum Parsed {
    /// 1xx, this long.
    Informational(usize),
    /// The final head.
    Final(Head),
}

/// How much of `bytes` belongs to the body whose framing is `state`
/// (`Passthrough`: everything, to the close), how much of that is payload
/// (not chunk framing or trailers), and whether the framing held. Fewer
/// than all with the framing held: the body ended, and the backend sent
/// more than it framed.
fn body_part(state: &mut State, bytes: &[u8]) -> (usize, u64, bool) {
    if matches!(state, State::Passthrough) {
        return (bytes.len(), bytes.len() as u64, true);
    }
    match guard::advance_counting(state, bytes) {
        Ok((n, data)) => (n, data, true),
        Err(_) => (0, 0, false),
    }
}

/// A three-digit status code's text.
fn itoa3(code: u16) -> [u8; 3] {
    let c = code.min(999);
    [
        b'0' + (c / 100) as u8,
        b'0' + (c / 10 % 10) as u8,
        b'0' + (c % 10) as u8,
    ]
}

/// Headers that describe one connection (RFC 9110 7.6.1), besides those
/// `Connection` names. `Transfer-Encoding` is not among them here: bodies
/// pass with their framing as it came.
const HOP_BY_HOP: [&[u8]; 7] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"upgrade",
];

/// Request headers the forwarded headers replace.
const FORWARDED: [&[u8]; 4] = [
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"forwarded",
];

/// Names a `Connection` header may not take off the message here: the
/// framing and the target are this path's to write, and the request id is
/// the balancer's. A request naming one goes to the hyper path (which
/// frames bodies itself); a response's are ignored.
const KEPT: [&[u8]; 4] = [
    b"content-length",
    b"transfer-encoding",
    b"host",
    b"x-request-id",
];

/// A byte hyper's URI parser refuses in a path or query, or `#` (a
/// fragment it would cut off): such targets go to the hyper path.
fn odd_target_byte(b: u8) -> bool {
    !(0x21..0x7f).contains(&b)
        || matches!(
            b,
            b'"' | b'#' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
        )
}

/// Checks the head at the front of `conn.buf` (the guard's checks) and, for
/// a request this path serves, writes the head the backend gets into
/// `conn.out`, with where its strings are (`conn.spans`): the strategy
/// decides on the head as the backend gets it, as in the hyper path
/// (forwarded headers replaced, hop-by-hop ones gone, the request id in).
fn plan(conn: &mut Conn<'_>) -> Result<Plan, Checked> {
    let ctx = conn.ctx;
    let info = conn.info;
    let out = &mut conn.out;
    let spans = &mut conn.spans;
    let buf = &conn.buf;
    guard::check_with(buf, ctx.http.max_head_bytes, |req, len, state| {
        let body_len = match state {
            State::Idle => 0,
            State::Body(n) if n <= MAX_BODY as u64 => n as usize,
            _ => return Plan::Handover,
        };
        if req.version != Some(1) || ctx.http.trust_forwarded {
            return Plan::Handover;
        }
        let (Some(method), Some(target)) = (req.method, req.path) else {
            return Plan::Handover;
        };
        if !target.starts_with('/') || target.bytes().any(odd_target_byte) {
            return Plan::Handover;
        }
        let mut host: Option<&[u8]> = None;
        let mut close = false;
        let mut has_id = false;
        let mut named: [&[u8]; MAX_NAMED] = [b""; MAX_NAMED];
        let mut n_named = 0;
        for h in req.headers.iter() {
            let name = h.name.as_bytes();
            match name.len() {
                4 if name.eq_ignore_ascii_case(b"host") => host = Some(h.value),
                6 if name.eq_ignore_ascii_case(b"expect") => return Plan::Handover,
                7 if name.eq_ignore_ascii_case(b"upgrade") => return Plan::Handover,
                10 if name.eq_ignore_ascii_case(b"connection") => {
                    for t in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                        if t.eq_ignore_ascii_case(b"close") {
                            close = true;
                        } else if t.eq_ignore_ascii_case(b"keep-alive") || t.is_empty() {
                        } else if n_named < MAX_NAMED
                            && !KEPT.iter().any(|k| t.eq_ignore_ascii_case(k))
                        {
                            named[n_named] = t;
                            n_named += 1;
                        } else {
                            return Plan::Handover;
                        }
                    }
                }
                12 if name.eq_ignore_ascii_case(b"x-request-id") => has_id = true,
                _ => {}
            }
        }
        let Some(host) = host else {
            return Plan::Handover;
        };
        out.clear();
        spans.clear();
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut host_at = (0, 0);
        for h in req.headers.iter() {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"te") {
                // `TE: trailers` is end to end in practice (gRPC).
                if h.value
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
                {
                    line(out, spans, b"te", &[b"trailers"]);
                }
                continue;
            }
            if HOP_BY_HOP.iter().any(|n| name.eq_ignore_ascii_case(n))
                || FORWARDED.iter().any(|n| name.eq_ignore_ascii_case(n))
                || named[..n_named]
                    .iter()
                    .any(|n| name.eq_ignore_ascii_case(n))
            {
                continue;
            }
            line(out, spans, name, &[h.value]);
            if name.len() == 4 && name.eq_ignore_ascii_case(b"host") {
                host_at = spans[spans.len() - 1].1;
            }
        }
        info.forwarded
            .h1_headers(host, |name, value| line(out, spans, name, value));
        if ctx.http.request_id && !has_id {
            let mut id = [0u8; 16];
            let _ = std::io::Write::write_fmt(
                &mut &mut id[..],
                format_args!("{:016x}", crate::clock::random_u64()),
            );
            line(out, spans, b"x-request-id", &[&id]);
        }
        out.extend_from_slice(b"\r\n");
        let out_head = out.len();
        // As the hyper path: only a request without a body goes again
        // after a failure that may have reached the backend.
        let idempotent = body_len == 0
            && matches!(
                method,
                "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
            );
        Plan::Send(Planned {
            head_len: len,
            body_len,
            out_head,
            method_len: method.len(),
            target_len: target.len(),
            host_at,
            close,
            head_only: method == "HEAD",
            idempotent,
            logged: ctx
                .access
                .as_ref()
                .map(|_| (Box::from(method), Box::from(target))),
        })
    })
}

/// Writes one header line, its value in pieces. Returns the value's length.
fn header(out: &mut Vec<u8>, name: &[u8], value: &[&[u8]]) -> usize {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    let at = out.len();
    value.iter().for_each(|v| out.extend_from_slice(v));
    let len = out.len() - at;
    out.extend_from_slice(b"\r\n");
    len
}

/// [`header`], noting where its name and value are.
fn line(out: &mut Vec<u8>, spans: &mut Vec<Span>, name: &[u8], value: &[&[u8]]) {
    let at = out.len();
    let value_len = header(out, name, value);
    spans.push(((at, name.len()), (at + name.len() + 2, value_len)));
}

/// Where a header's name and value are in `out`: (start, length) each.
type Span = ((usize, usize), (usize, usize));

impl Conn<'_> {
    /// A decision on the head in `out` (see [`plan`]).
    fn decide(
        &self,
        p: &Planned,
        list: &BackendList,
        attempt: u32,
        failed: &[u32],
    ) -> (Option<usize>, Option<&'static str>) {
        let out = &self.out[..];
        let at = |(start, len): (usize, usize)| &out[start..start + len];
        let mut small: [(&[u8], &[u8]); 24] = [(&[], &[]); 24];
        let mut large: Vec<(&[u8], &[u8])> = Vec::new();
        let pairs: &mut [(&[u8], &[u8])] = if self.spans.len() <= small.len() {
            &mut small[..self.spans.len()]
        } else {
            large.resize(self.spans.len(), (&[], &[]));
            &mut large
        };
        for (&(name, value), slot) in self.spans.iter().zip(pairs.iter_mut()) {
            *slot = (at(name), at(value));
        }
        let head = RequestHead {
            protocol: Protocol::Http1,
            method: &out[..p.method_len],
            path: &out[p.method_len + 1..p.method_len + 1 + p.target_len],
            authority: at(p.host_at),
            headers: &*pairs,
            sni: self.info.sni.as_deref().map_or(b"", str::as_bytes),
            alpn: self.info.alpn.as_deref().map_or(b"", str::as_bytes),
            client: Some(self.peer),
            attempt,
            failed,
            raw: &out[..p.out_head],
            names_lowercase: false,
        };
        let d = self.ctx.strategy.decide(&head, list);
        (d.index, d.fallback.map(|r| r.as_str()))
    }
}

/// One timer per connection for all its waits. It is re-armed only when a
/// wait needs it earlier than it is set, or when it fires before the wait's
/// own deadline: a request that waits as long as the last one costs no
/// timer operation (hyper's path armed one per request).
struct Deadline {
    sleep: Pin<Box<Sleep>>,
    /// When it is set for, on [`now_ms`].
    at_ms: u64,
}

impl Deadline {
    fn new() -> Deadline {
        let far = Duration::from_secs(24 * 3600);
        Deadline {
            sleep: Box::pin(tokio::time::sleep(far)),
            at_ms: now_ms() + far.as_millis() as u64,
        }
    }

    fn set(&mut self, due_ms: u64) {
        let wait = due_ms.saturating_sub(now_ms());
        self.sleep
            .as_mut()
            .reset(Instant::now() + Duration::from_millis(wait));
        self.at_ms = due_ms;
    }

    /// Completes once [`now_ms`] reaches `due_ms`.
    async fn until(&mut self, due_ms: u64) {
        loop {
            if self.at_ms > due_ms {
                self.set(due_ms);
            }
            self.sleep.as_mut().await;
            if now_ms() >= due_ms {
                return;
            }
            self.set(due_ms);
        }
    }
}

/// This thread's idle upstream connections, per backend, like the runtime
/// that owns their sockets. A backend that leaves the set or drains takes
/// its idle connections with it.
mod pool {
    use super::*;

    struct Idle {
        backend: Arc<Backend>,
        /// Each with the coarse clock's millisecond of its checkin.
        conns: Vec<(TcpStream, u64)>,
    }

    #[derive(Default)]
    struct Pools {
        /// The backend list the pools were last pruned against.
        list: u64,
        idle: Vec<Idle>,
    }

    thread_local! {
        static POOLS: std::cell::RefCell<Pools> = std::cell::RefCell::default();
    }

    /// An idle connection to `backend` that still looks open, if any.
    pub(super) fn checkout(
        list: &BackendList,
        backend: &Arc<Backend>,
        opts: &super::super::HttpOptions,
    ) -> Option<TcpStream> {
        POOLS.with(|p| {
            let mut p = p.borrow_mut();
            let p = &mut *p;
            super::super::prune_pools(&mut p.list, list, &mut p.idle, |i| &i.backend);
            let idle = p
                .idle
                .iter_mut()
                .find(|i| Arc::ptr_eq(&i.backend, backend))?;
            let oldest = now_ms().saturating_sub(opts.pool_idle_timeout.as_millis() as u64);
            idle.conns.retain(|(_, since)| *since >= oldest);
            while let Some((s, _)) = idle.conns.pop() {
                if open(&s) {
                    return Some(s);
                }
            }
            None
        })
    }

    /// Whether a pooled connection still looks open. The reactor's
    /// readiness says so without a system call: an idle connection has
    /// nothing to read unless the backend closed it (or sent what it should
    /// not have), and then a read says which.
    fn open(s: &TcpStream) -> bool {
        let mut cx = TaskContext::from_waker(Waker::noop());
        match s.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => matches!(
                s.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            ),
        }
    }

    /// A new connection to `backend`.
    pub(super) async fn connect(backend: &Backend, timeout: Duration) -> Result<TcpStream, Error> {
        let started = std::time::Instant::now();
        let fail = |kind, cause| {
            Error::new(kind)
                .at(backend.addr())
                .because(cause)
                .retryable(true)
        };
        let s = match tokio::time::timeout(timeout, TcpStream::connect(backend.addr())).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(fail(Kind::Connect, e)),
            Err(_) => {
                return Err(fail(
                    Kind::ConnectTimeout,
                    std::io::ErrorKind::TimedOut.into(),
                ));
            }
        };
        // The connect latency strategies and metrics see.
        backend.connected(started.elapsed().as_micros() as u64);
        let _ = s.set_nodelay(true);
        Ok(s)
    }

    /// Keeps `s` for the next request to `backend`, unless the pool is full
    /// or the backend drains.
    pub(super) fn checkin(backend: &Arc<Backend>, s: TcpStream, max: usize) {
        if backend.is_draining() {
            return;
        }
        POOLS.with(|p| {
            let mut p = p.borrow_mut();
            let k = match p.idle.iter().position(|i| Arc::ptr_eq(&i.backend, backend)) {
                Some(k) => k,
                None => {
                    p.idle.push(Idle {
                        backend: backend.clone(),
                        conns: Vec::new(),
                    });
                    p.idle.len() - 1
                }
            };
            let conns = &mut p.idle[k].conns;
            if conns.len() < max {
                conns.push((s, now_ms()));
            }
        });
    }
}
