//! Phase 2: asking the strategy, and asking again after a failed attempt.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::Context;
use super::idle::Idle;
use super::upstream::{self, Routed, Sent};
use crate::backends::BackendList;
use crate::error::{Error, Kind};
use crate::sniff::{Sniffed, http1};
use crate::strategy::{Protocol, RequestHead, Strategy};

/// Picks a backend and gets its first response byte, trying others (with
/// the failed ones marked) while the failure allows it.
pub(super) async fn route(
    ctx: &Context,
    client: &mut TcpStream,
    sniffed: &Sniffed,
    buf: super::Buffer,
    peer: SocketAddr,
    (idle, mut timer): (&Idle, Option<Pin<&mut Sleep>>),
    trace: &mut super::Trace,
) -> Result<Routed, Error> {
    // Only PROXY v2 needs our own address: skip the getsockname otherwise.
    let local = match ctx.proxy.proxy_protocol {
        true => Some(client.local_addr().unwrap_or(peer)),
        false => None,
    };
    let list = ctx.backends.load();
    let mut failed: Vec<u32> = Vec::new();
    let mut sent = Sent::new(sniffed, buf, ctx.proxy.replay_limit);
    let mut last = None;
    for attempt in 0..=ctx.proxy.retries {
        let decision = pick(
            &ctx.strategy,
            sniffed,
            sent.bytes(),
            peer,
            attempt,
            &failed,
            &list,
        );
        trace.attempts = attempt + 1;
        trace.fallback = decision.fallback.map(|r| r.as_str());
        let Some(i) = decision.index else { break };
        let backend: &Arc<_> = &list[i];
        trace.backend = Some(backend.addr());
        let idle = (idle, timer.as_mut().map(|t| t.as_mut()));
        match upstream::attempt(ctx, backend, (&mut *client, peer, local), &mut sent, idle).await {
            Ok(routed) => return Ok(routed),
            Err(e) => {
                tracing::debug!(client = %peer, attempt, error = %e, "backend attempt failed");
                failed.push(i as u32);
                let retry = e.is_retryable();
                last = Some(e);
                if !retry {
                    break;
                }
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::new(Kind::NoBackend)))
}

/// One decision. Synchronous on purpose: the header table lives on this
/// stack frame, not in the connection's future (which would carry 4 KiB of
/// it across every await).
fn pick(
    strategy: &Strategy,
    sniffed: &Sniffed,
    buf: &[u8],
    peer: SocketAddr,
    attempt: u32,
    failed: &[u32],
    candidates: &BackendList,
) -> crate::strategy::Decision {
    let mut pairs: [(&[u8], &[u8]); http1::MAX_HEADERS] = [(&[], &[]); http1::MAX_HEADERS];
    let head = match sniffed {
        Sniffed::Http1(h) => h.request(buf, &mut pairs),
        Sniffed::Http2Prior => RequestHead {
            protocol: Protocol::Http2,
            ..RequestHead::EMPTY
        },
        Sniffed::Tls(hello) => RequestHead {
            protocol: Protocol::Tls,
            sni: &hello.sni,
            alpn: &hello.alpn,
            ..RequestHead::EMPTY
        },
        Sniffed::Opaque | Sniffed::ServerFirst => RequestHead::EMPTY,
    };
    let req = RequestHead {
        client: Some(peer),
        attempt,
        failed,
        ..head
    };
    strategy.decide(&req, candidates)
}
