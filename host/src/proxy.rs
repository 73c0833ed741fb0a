//! The TCP listener and each connection's phases, in order:
//!
//! 1. **accept** – a permit from the connection limit is taken *before*
//!    `accept`, so overload waits in the kernel backlog, not in memory; accept
//!    errors (EMFILE) back off instead of killing the listener.
//! 2. **sniff** – read the first bytes within the inspection window:
//!    nothing at all means a server-speaks-first protocol (opaque); otherwise
//!    [`crate::sniff::classify`] tells HTTP/1, HTTP/2 preface, TLS or opaque.
//! 3. **head** – HTTP/1: a complete head within the head timeout and size cap,
//!    or `408`/`431`/`400` and close. TLS: the whole ClientHello (SNI, ALPN).
//! 4. **pick → connect** – the strategy decides; a failed connect is retried
//!    with the failed candidate marked, up to `retries` times. Nothing to
//!    route to: `503` (HTTP) or a close.
//! 5. **forward** – optional PROXY v2 header, the bytes read so far, then both
//!    directions copied until each side closes (half-close respected, so
//!    WebSockets and other long-lived streams just work).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::backends::Backends;
use crate::config::{Config, OpaquePolicy};
use crate::forward::Buffer;
use crate::health;
use crate::sniff::{self, Class, Head, HeadError, Hello};
use crate::strategy::{CandidateStats, Protocol, RequestHead, Strategy};

/// Everything a connection task needs.
pub struct Shared {
    /// Validated configuration.
    pub cfg: Arc<Config>,
    /// The backend set.
    pub backends: Arc<Backends>,
    /// The strategy.
    pub strategy: Arc<Strategy>,
}

fn response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Accepts until `stop` turns true, then waits up to the graceful timeout for
/// open connections (or until `force` turns true) and aborts the rest.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut force: watch::Receiver<bool>,
    limit: Arc<Semaphore>,
) {
    let mut conns = JoinSet::new();
    let mut accept_backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = stop.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        match accepted {
            Ok((socket, peer)) => {
                accept_backoff = Duration::from_millis(5);
                let shared = shared.clone();
                conns.spawn(async move {
                    handle(&shared, socket, peer).await;
                    drop(permit);
                });
                while conns.try_join_next().is_some() {}
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(accept_backoff).await;
                accept_backoff = (accept_backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    drop(listener);
    while conns.try_join_next().is_some() {}
    let open = conns.len();
    if open > 0 {
        tracing::info!(open, "draining open connections");
    }
    let drained = tokio::select! {
        r = tokio::time::timeout(shared.cfg.graceful_timeout(), async {
            while conns.join_next().await.is_some() {}
        }) => r.is_ok(),
        _ = force.wait_for(|f| *f) => false,
    };
    if !drained {
        tracing::warn!(open = conns.len(), "closing connections still open");
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

/// Reads more bytes into `buf` (at most `cap` in total); `Ok(0)` is EOF.
/// Reads into the vector's spare capacity: nothing is zeroed first.
async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>, cap: usize) -> std::io::Result<usize> {
    let room = cap.saturating_sub(buf.len()).clamp(1, 16 * 1024);
    buf.reserve(room);
    let start = buf.len();
    let n = {
        let mut rb = tokio::io::ReadBuf::uninit(&mut buf.spare_capacity_mut()[..room]);
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut *s).poll_read(cx, &mut rb)).await?;
        rb.filled().len()
    };
    // SAFETY: `ReadBuf` guarantees its first `n` bytes were initialized by
    // the read, and they lie within the capacity reserved above.
    unsafe { buf.set_len(start + n) };
    Ok(n)
}

/// What the first bytes said.
enum Sniffed {
    Http1(usize),
    Http2,
    Tls(sniff::ClientHello),
    Opaque,
}

/// Phases 2 and 3. `Err` carries the bytes to answer with (possibly none)
/// before closing.
async fn read_head(
    cfg: &Config,
    client: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<Sniffed, &'static [u8]> {
    let started = Instant::now();
    let sniff_deadline = started + cfg.inspection_timeout();
    let head_deadline = tokio::time::Instant::from_std(started + cfg.head_timeout());
    let max = cfg.raw.max_head_bytes;
    let tls_cap = 64 * 1024 + 5;
    // Phase 2: classify within the inspection window.
    let class = loop {
        match sniff::classify(buf) {
            Class::Unknown => {}
            c => break c,
        }
        let deadline = if buf.is_empty() {
            tokio::time::Instant::from_std(sniff_deadline)
        } else {
            // Something arrived but too little to tell (a slow "GE..."):
            // keep waiting up to the head timeout.
            head_deadline
        };
        match tokio::time::timeout_at(deadline, read_more(client, buf, max + 1)).await {
            Err(_) if buf.is_empty() => break Class::Opaque,
            Err(_) => return Err(b""),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(b""),
            Ok(Ok(_)) => {}
        }
    };
    // Phase 3: the rest of the head.
    match class {
        Class::Http1 => loop {
            match sniff::http_head(buf, max) {
                Ok(Head::Complete(n)) => return Ok(Sniffed::Http1(n)),
                Ok(Head::Partial) => {}
                Err(HeadError::TooLarge) => return Err(TOO_LARGE.as_slice()),
                Err(HeadError::Malformed) => return Err(BAD_REQUEST.as_slice()),
            }
            match tokio::time::timeout_at(head_deadline, read_more(client, buf, max + 1)).await {
                Err(_) => return Err(TIMEOUT.as_slice()),
                Ok(Ok(0)) | Ok(Err(_)) => return Err(b""),
                Ok(Ok(_)) => {}
            }
        },
        Class::Tls => loop {
            match sniff::client_hello(buf) {
                Hello::Complete(h) => return Ok(Sniffed::Tls(h)),
                Hello::Invalid => return Ok(Sniffed::Tls(sniff::ClientHello::default())),
                Hello::Partial if buf.len() >= tls_cap => {
                    return Ok(Sniffed::Tls(sniff::ClientHello::default()));
                }
                Hello::Partial => {}
            }
            match tokio::time::timeout_at(head_deadline, read_more(client, buf, tls_cap)).await {
                Err(_) | Ok(Ok(0)) | Ok(Err(_)) => return Err(b""),
                Ok(Ok(_)) => {}
            }
        },
        Class::Http2 => Ok(Sniffed::Http2),
        Class::Opaque | Class::Unknown => match cfg.raw.opaque {
            OpaquePolicy::Route => Ok(Sniffed::Opaque),
            OpaquePolicy::Reject => Err(b""),
        },
    }
}

static BAD_REQUEST: std::sync::LazyLock<Vec<u8>> =
    std::sync::LazyLock::new(|| response("400 Bad Request", "malformed request head\n"));
static TIMEOUT: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    response("408 Request Timeout", "request head not received in time\n")
});
static TOO_LARGE: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    response(
        "431 Request Header Fields Too Large",
        "request head too large\n",
    )
});
static UNAVAILABLE: std::sync::LazyLock<Vec<u8>> =
    std::sync::LazyLock::new(|| response("503 Service Unavailable", "no backend available\n"));

/// One client connection, start to end.
async fn handle(shared: &Shared, mut client: TcpStream, peer: SocketAddr) {
    // TCP_NODELAY and SO_KEEPALIVE come from the listener (see `balancer`).
    let mut buf = Buffer::take();
    let sniffed = match read_head(&shared.cfg, &mut client, &mut buf).await {
        Ok(s) => s,
        Err(answer) => {
            if !answer.is_empty() {
                let _ = client.write_all(answer).await;
                let _ = client.shutdown().await;
            }
            return;
        }
    };
    // Only PROXY v2 needs our own address: skip the getsockname otherwise.
    let local = match shared.cfg.raw.proxy_protocol {
        true => Some(client.local_addr().unwrap_or(peer)),
        false => None,
    };
    let Some(mut upstream) = connect(shared, &sniffed, &buf, peer, local).await else {
        if matches!(sniffed, Sniffed::Http1(_)) {
            let _ = client.write_all(&UNAVAILABLE).await;
            let _ = client.shutdown().await;
        }
        return;
    };
    drop(buf);
    if !upstream.first.is_empty() && client.write_all(&upstream.first).await.is_err() {
        return;
    }
    drop(upstream.first);
    let cfg = &shared.cfg;
    let moved = crate::forward::bidirectional(
        &mut client,
        &mut upstream.stream,
        cfg.raw.forward,
        cfg.idle_timeout(),
    )
    .await;
    if let Err(e) = moved
        && e.kind() == std::io::ErrorKind::TimedOut
    {
        tracing::debug!(client = %peer, "closed after the idle timeout");
    }
}

/// A backend connection that took the buffered bytes.
struct Upstream {
    stream: TcpStream,
    /// Response bytes already read (when the request was replayable).
    first: Buffer,
    _guard: crate::backends::ConnectionGuard,
}

/// True for a request that may be sent again to another backend if the first
/// one closes without answering: a complete idempotent HTTP/1 head with no
/// bytes after it.
fn replayable(sniffed: &Sniffed, buf: &[u8]) -> bool {
    match sniffed {
        Sniffed::Http1(n) if *n == buf.len() => {
            buf.starts_with(b"GET ") || buf.starts_with(b"HEAD ") || buf.starts_with(b"OPTIONS ")
        }
        _ => false,
    }
}

/// Phase 4: ask the strategy, connect, send what was read; on a connect
/// failure (or, for a replayable request, a backend that closes before its
/// first response byte, as a worker killed mid-connect does) mark the
/// candidate failed and ask again, up to `retries` times.
async fn connect(
    shared: &Shared,
    sniffed: &Sniffed,
    buf: &[u8],
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Option<Upstream> {
    let cfg = &*shared.cfg;
    let list = shared.backends.load();
    let mut candidates: Vec<CandidateStats> = Vec::with_capacity(list.len());
    let mut failed: Vec<u32> = Vec::new();
    let replay = replayable(sniffed, buf);
    for attempt in 0..=cfg.raw.retries {
        Backends::snapshot(&list, &mut candidates);
        let Some(i) = pick(
            &shared.strategy,
            sniffed,
            buf,
            peer,
            attempt,
            &failed,
            &candidates,
        ) else {
            tracing::debug!(client = %peer, attempt, "no backend to route to");
            return None;
        };
        let backend = list[i].clone();
        match try_backend(cfg, &backend, buf, peer, local, replay).await {
            Ok(up) => return Some(up),
            Err(why) => {
                tracing::debug!(backend = %backend.addr, attempt, why, "backend attempt failed");
                health::connect_failed(cfg, &backend);
                failed.push(i as u32);
            }
        }
    }
    tracing::warn!(client = %peer, attempts = cfg.raw.retries + 1, "every attempt to reach a backend failed");
    None
}

/// One decision. Synchronous on purpose: the parsed header table lives on
/// this stack frame, not in the connection's future (which would carry 8 KiB
/// of it across every await and copy it when the task is spawned). Parsing
/// again on a retry is cheaper than keeping it.
fn pick(
    strategy: &Strategy,
    sniffed: &Sniffed,
    buf: &[u8],
    peer: SocketAddr,
    attempt: u32,
    failed: &[u32],
    candidates: &[CandidateStats],
) -> Option<usize> {
    let mut store = [httparse::EMPTY_HEADER; sniff::MAX_HEADERS];
    let mut pairs: [(&[u8], &[u8]); sniff::MAX_HEADERS] = [(&[], &[]); sniff::MAX_HEADERS];
    let head = match sniffed {
        Sniffed::Http1(n) => sniff::http1_request(&buf[..*n], &mut store, &mut pairs),
        Sniffed::Http2 => Some(RequestHead {
            protocol: Protocol::Http2,
            ..RequestHead::EMPTY
        }),
        Sniffed::Tls(hello) => Some(RequestHead {
            protocol: Protocol::Tls,
            sni: &hello.sni,
            alpn: &hello.alpn,
            ..RequestHead::EMPTY
        }),
        Sniffed::Opaque => None,
    };
    let req = RequestHead {
        client: Some(peer),
        attempt,
        failed,
        ..head.unwrap_or(RequestHead::EMPTY)
    };
    strategy.decide(&req, candidates).index
}

/// Starts a non-blocking connect. It completes (or fails) on the socket's
/// first writability, and the first write tells which: one `getsockopt`
/// fewer per connection than `TcpStream::connect`.
fn start_connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        None,
    )?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    TcpStream::from_std(socket.into())
}

async fn try_backend(
    cfg: &Config,
    backend: &std::sync::Arc<crate::backends::Backend>,
    buf: &[u8],
    peer: SocketAddr,
    local: Option<SocketAddr>,
    replay: bool,
) -> Result<Upstream, &'static str> {
    let started = Instant::now();
    let mut stream = start_connect(backend.addr).map_err(|_| "connect failed")?;
    match tokio::time::timeout(cfg.connect_timeout(), stream.writable()).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err("connect failed"),
        Err(_) => return Err("connect timed out"),
    }
    // With bytes to send, the write reports a refused connect; without, ask.
    if buf.is_empty() && local.is_none() && !matches!(stream.take_error(), Ok(None)) {
        return Err("connect failed");
    }
    let guard = backend.open_connection();
    let sent = match local {
        Some(local) => {
            // One write for the PROXY header and the head.
            let mut out = proxy_v2(peer, local);
            out.extend_from_slice(buf);
            stream.write_all(&out).await
        }
        None if !buf.is_empty() => stream.write_all(buf).await,
        None => Ok(()),
    };
    if sent.is_err() {
        return Err("connect failed");
    }
    backend.connect_ok(started.elapsed().as_micros() as u64);
    let mut first = Buffer::take();
    if replay {
        match stream.read_buf(&mut *first).await {
            Ok(0) | Err(_) => return Err("closed before answering"),
            Ok(_) => {}
        }
    }
    Ok(Upstream {
        stream,
        first,
        _guard: guard,
    })
}

/// A PROXY protocol v2 header for a TCP connection from `src` to `dst`.
pub fn proxy_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            h.push(0x11);
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
            h.extend_from_slice(&s.port().to_be_bytes());
            h.extend_from_slice(&d.port().to_be_bytes());
        }
        (s, d) => {
            let v6 = |a: SocketAddr| match a {
                SocketAddr::V4(a) => a.ip().to_ipv6_mapped(),
                SocketAddr::V6(a) => *a.ip(),
            };
            h.push(0x21);
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6(s).octets());
            h.extend_from_slice(&v6(d).octets());
            h.extend_from_slice(&s.port().to_be_bytes());
            h.extend_from_slice(&d.port().to_be_bytes());
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_v2_header_layout() {
        let h = proxy_v2(
            "10.0.0.1:1234".parse().unwrap(),
            "127.0.0.1:3000".parse().unwrap(),
        );
        assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n");
        assert_eq!(h[12], 0x21);
        assert_eq!(h[13], 0x11);
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 12);
        assert_eq!(&h[16..20], &[10, 0, 0, 1]);
        assert_eq!(u16::from_be_bytes([h[24], h[25]]), 1234);
        assert_eq!(h.len(), 28);
    }
}
