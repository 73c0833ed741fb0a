//! The built-in demo worker (`switchyard demo-worker`): a small hyper server
//! that the embedded default runs one copy of per core, and that the tests and
//! benchmarks use as a backend.
//!
//! - `GET /` answers `worker N (pid P)`,
//! - `POST /echo` echoes the body,
//! - `GET /ws` is a WebSocket echo,
//! - `GET /slow?ms=N` answers after N ms (at most 60 s),
//! - `GET /bytes?n=N` answers N bytes (at most 4 GiB), streamed in 64 KiB
//!   chunks so a large answer costs the worker no memory,
//! - `GET /healthz` answers `ok`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

type Body = BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, s: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(s.into()).map_err(|never| match never {}).boxed())
        .expect("static response parts are valid")
}

fn query_num(req: &Request<Incoming>, key: &str, max: u64) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .min(max)
}

/// Identity of a demo worker.
#[derive(Debug, Clone)]
pub struct DemoWorker {
    /// Worker index (from `SWITCHYARD_WORKER_INDEX`).
    pub index: u32,
}

async fn route(me: Arc<DemoWorker>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    // HEAD is GET without the body (hyper drops it).
    let method = match req.method().as_str() {
        "HEAD" => "GET",
        m => m,
    };
    Ok(match (method, path.as_str()) {
        ("GET", "/") => text(
            StatusCode::OK,
            format!("worker {} (pid {})\n", me.index, std::process::id()),
        ),
        ("GET", "/healthz") => text(StatusCode::OK, "ok\n"),
        ("POST", "/echo") => {
            let body = req.into_body().boxed();
            Response::new(body)
        }
        ("GET", "/slow") => {
            let ms = query_num(&req, "ms", 60_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(
                StatusCode::OK,
                format!("slept {ms} ms on worker {}\n", me.index),
            )
        }
        ("GET", "/bytes") => {
            const CHUNK: usize = 64 * 1024;
            static XS: [u8; CHUNK] = [b'x'; CHUNK];
            let n = query_num(&req, "n", 4 << 30);
            let chunks = (0..n.div_ceil(CHUNK as u64)).map(move |i| {
                let len = (n - i * CHUNK as u64).min(CHUNK as u64) as usize;
                Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from_static(&XS[..len])))
            });
            Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, n)
                .body(
                    http_body_util::StreamBody::new(futures_util::stream::iter(chunks))
                        .map_err(|never| match never {})
                        .boxed(),
                )
                .expect("static response parts are valid")
        }
        ("GET", "/ws") => websocket(req),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    })
}

fn websocket(mut req: Request<Incoming>) -> Response<Body> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return text(StatusCode::BAD_REQUEST, "not a websocket request\n");
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        // A Close from the client is answered by tungstenite on the next
        // poll, which then ends the stream: not breaking here is what sends
        // the closing handshake's reply.
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(
            Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("static response parts are valid")
}

/// Serves the demo worker on `listener` until `stop` turns true; open
/// connections then get to finish their current request.
pub async fn serve(listener: TcpListener, me: DemoWorker, mut stop: watch::Receiver<bool>) {
    let me = Arc::new(me);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (socket, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = socket.set_nodelay(true);
        let me = me.clone();
        let mut stop = stop.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| route(me.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                // Above the balancer's 128, plus the headers it adds.
                .max_headers(256)
                .serve_connection(TokioIo::new(socket), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        while conns.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

/// `switchyard demo-worker`: reads `HOST`, `PORT` and
/// `SWITCHYARD_WORKER_INDEX`, serves until SIGTERM or SIGINT. SIGHUP and
/// SIGUSR2 are the balancer's (reload, upgrade), and a worker runs the same
/// binary, so `kill -HUP $(pidof switchyard)` reaches it too: it ignores
/// them rather than die (they used to end every worker at once).
pub async fn main_from_env() -> std::io::Result<()> {
    for sig in [libc::SIGHUP, libc::SIGUSR2] {
        // SAFETY: setting a signal's disposition to "ignore" before any
        // thread of ours depends on it; no handler code runs.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3001);
    let index = std::env::var("SWITCHYARD_WORKER_INDEX")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let addr: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("cannot resolve {host}")))?;
    let listener = crate::listener::bind(addr, false)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        crate::shutdown::signal().await;
        let _ = tx.send(true);
    });
    serve(listener, DemoWorker { index }, rx).await;
    Ok(())
}
