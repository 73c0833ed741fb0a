//! The HTTP/3 listener: QUIC (quinn) on UDP, HTTP/3 (h3) on top. Every
//! request is one strategy decision (protocol 3) and goes out through the
//! same per-backend pools as HTTP mode over TCP, so a strategy, a retry or a
//! forwarded header behaves the same whichever way the client came.
//!
//! One endpoint on its own thread: QUIC routes packets by connection ID,
//! which `SO_REUSEPORT` cannot follow when a client's address changes, and
//! one thread moves far more QUIC traffic than the demo workers can answer.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Response;
use hyper::body::{Body, Buf, Bytes, Frame, SizeHint};
use hyper::header::{self, HeaderMap};
use tokio::task::JoinSet;

use crate::http::ConnInfo;
use crate::proxy::Context;
use crate::tls::Certs;

type H3Send = ::h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
type H3Recv = ::h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// Binds the QUIC endpoint (on the calling runtime, which drives it).
pub fn endpoint(
    socket: std::net::UdpSocket,
    certs: &Arc<Certs>,
) -> std::io::Result<quinn::Endpoint> {
    let mut tls = certs.quic_config();
    // 0-RTT data can be replayed by an attacker: not accepted.
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(256u32.into())
        .max_idle_timeout(Some(
            Duration::from_secs(30)
                .try_into()
                .expect("30 s is a valid QUIC idle timeout"),
        ));
    cfg.transport_config(Arc::new(transport));
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(cfg),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// Accepts QUIC connections until the graceful shutdown, then lets each
/// send GOAWAY and finish its requests (bounded by `drain`).
pub async fn serve(endpoint: quinn::Endpoint, ctx: Arc<Context>, drain: Duration) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                conns.spawn(connection(incoming, ctx.clone(), drain));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = ctx.graceful.cancelled() => break,
        }
    }
    endpoint.set_server_config(None);
    let _ = tokio::time::timeout(drain + Duration::from_secs(1), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
    // 0x100: H3_NO_ERROR.
    endpoint.close(quinn::VarInt::from_u32(0x100), b"");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
}

async fn connection(incoming: quinn::Incoming, ctx: Arc<Context>, drain: Duration) {
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => return tracing::debug!(error = %e, "QUIC handshake failed"),
    };
    let peer = conn.remote_address();
    let _open = crate::metrics::METRICS.connection(crate::metrics::Path::H3);
    let sni = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.server_name)
        .map(Arc::from);
    let info = Arc::new(ConnInfo {
        tls: true,
        sni,
        alpn: Some(Arc::from("h3")),
        alt_svc: None,
        forwarded: crate::http::headers::Forwarded::new(peer, true),
    });
    let mut h3 = match ::h3::server::builder()
        .max_field_section_size(ctx.http.max_head_bytes as u64)
        .build::<_, Bytes>(h3_quinn::Connection::new(conn))
        .await
    {
        Ok(c) => c,
        Err(e) => return tracing::debug!(client = %peer, error = %e, "HTTP/3 setup failed"),
    };
    let mut requests = JoinSet::new();
    let draining = loop {
        tokio::select! {
            r = h3.accept() => match r {
                Ok(Some(resolver)) => {
                    requests.spawn(request(resolver, peer, ctx.clone(), info.clone()));
                }
                Ok(None) => break false,
                Err(e) => {
                    if !e.is_h3_no_error() {
                        tracing::debug!(client = %peer, error = %e, "HTTP/3 connection ended");
                    }
                    break false;
                }
            },
            Some(_) = requests.join_next(), if !requests.is_empty() => {}
            _ = ctx.graceful.cancelled() => break true,
        }
    };
    if draining {
        // GOAWAY naming the stream after the last accepted one: RFC 9114
        // 5.2 treats ids at or above it as unprocessed, so every accepted
        // request is promised an answer.
        let _ = h3.shutdown(1).await;
        let deadline = tokio::time::sleep(drain);
        tokio::pin!(deadline);
        while !requests.is_empty() {
            tokio::select! {
                r = h3.accept() => match r {
                    Ok(Some(resolver)) => {
                        requests.spawn(request(resolver, peer, ctx.clone(), info.clone()));
                    }
                    _ => break,
                },
                _ = requests.join_next() => {}
                _ = &mut deadline => break,
            }
        }
    }
    while tokio::time::timeout(drain, requests.join_next())
        .await
        .ok()
        .flatten()
        .is_some()
    {}
    requests.abort_all();
    // Dropping `h3` closes the connection with H3_NO_ERROR.
}

async fn request(
    resolver: ::h3::server::RequestResolver<h3_quinn::Connection, Bytes>,
    peer: SocketAddr,
    ctx: Arc<Context>,
    info: Arc<ConnInfo>,
) {
    let (req, stream) =
        match tokio::time::timeout(ctx.http.head_timeout, resolver.resolve_request()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return tracing::debug!(client = %peer, error = %e, "HTTP/3 request head"),
            Err(_) => {
                return tracing::debug!(client = %peer, "HTTP/3 request head not received in time");
            }
        };
    let (mut send, recv) = stream.split();
    let (parts, ()) = req.into_parts();
    let mut body = RequestBody::new(recv, &parts.headers);
    let body = (!body.probe_end()).then(|| http_body_util::Either::Right(body));
    let resp = crate::http::forward(&ctx, parts, body, peer, None, &info, None).await;
    if let Err(e) = respond(&mut send, resp).await {
        tracing::debug!(client = %peer, error = %e, "HTTP/3 response not sent whole");
        send.stop_stream(::h3::error::Code::H3_INTERNAL_ERROR);
    }
}

async fn respond(
    send: &mut H3Send,
    resp: Response<crate::http::ResBody>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (mut parts, mut body) = resp.into_parts();
    // RFC 9114 4.2: connection-specific fields are malformed in HTTP/3;
    // HTTP/3 has no upgrades either.
    crate::http::headers::strip_hop_by_hop(&mut parts.headers);
    for name in [header::UPGRADE, header::CONNECTION, header::TE] {
        parts.headers.remove(name);
    }
    send.send_response(Response::from_parts(parts, ())).await?;
    while let Some(frame) = body.frame().await {
        match frame?.into_data() {
            Ok(data) => send.send_data(data).await?,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.send_trailers(trailers).await?;
                }
            }
        }
    }
    // Needed after trailers too: they do not end the stream.
    send.finish().await?;
    Ok(())
}

/// A request body read from an HTTP/3 stream: DATA frames, then trailers.
pub struct RequestBody {
    recv: H3Recv,
    peeked: Option<Result<Frame<Bytes>, ::h3::error::StreamError>>,
    data_done: bool,
    done: bool,
    /// Bytes still expected, when the client gave a length.
    remaining: Option<u64>,
}

impl RequestBody {
    fn new(recv: H3Recv, headers: &HeaderMap) -> Self {
        let remaining = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        RequestBody {
            recv,
            peeked: None,
            data_done: false,
            done: false,
            remaining,
        }
    }

    /// True if the client already ended the stream (a GET, typically):
    /// then the request goes upstream without a body rather than chunked,
    /// and may be sent again. Looks once; never waits for the client.
    fn probe_end(&mut self) -> bool {
        if self.remaining == Some(0) {
            return true;
        }
        let mut cx = TaskContext::from_waker(std::task::Waker::noop());
        match Pin::new(&mut *self).poll_frame(&mut cx) {
            Poll::Ready(None) => true,
            Poll::Ready(Some(f)) => {
                self.peeked = Some(f);
                false
            }
            Poll::Pending => false,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = ::h3::error::StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(f) = this.peeked.take() {
            return Poll::Ready(Some(f));
        }
        if this.done {
            return Poll::Ready(None);
        }
        while !this.data_done {
            match ready!(this.recv.poll_recv_data(cx)) {
                Ok(Some(mut buf)) => {
                    if buf.has_remaining() {
                        // quinn hands out `Bytes`: this does not copy.
                        let data = buf.copy_to_bytes(buf.remaining());
                        if let Some(r) = &mut this.remaining {
                            *r = r.saturating_sub(data.len() as u64);
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Ok(None) => this.data_done = true,
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
        let r = ready!(this.recv.poll_recv_trailers(cx));
        this.done = true;
        match r {
            Ok(Some(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.peeked.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) if !self.data_done => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
