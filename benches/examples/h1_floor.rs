//! The floor of a hand-written HTTP/1.1 path, for #9's question: how much of
//! HTTP mode's CPU per request is hyper's, and could a path of our own reach
//! 0.9x HAProxy `mode http`? Not a proxy to use: GET and HEAD without bodies,
//! responses framed by `Content-Length` only, no timeouts, no retries, no
//! access log or metrics. What it does per request is what any HTTP/1 path
//! must: parse the head (httparse), one WebAssembly decision (the balancer's
//! engine, `builtin:round-robin`), rewrite the head (hop-by-hop out,
//! `X-Forwarded-For`, `-Proto`, `-Host` and `Forwarded` in), a keep-alive
//! connection from a per-backend pool, the response head parsed and
//! rewritten, the body copied.
//!
//! `cargo build --release -p switchyard-benches --example h1_floor`, then
//! `h1_floor 127.0.0.1:9300 127.0.0.1:9001 127.0.0.1:9002` (one thread, as
//! the e2e bench runs every proxy). `benches/http_cpu_split.sh` measures it
//! beside HAProxy and Switchyard when `FLOOR=path/to/h1_floor` is set.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use switchyard::backends::{BackendSpec, Backends};
use switchyard::strategy::{
    Protocol, RequestHead, Strategy, StrategyEngine, StrategyOptions, StrategySpec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_HEADERS: usize = 64;

/// Idle upstream connections, one list per backend.
type Pool = Rc<RefCell<Vec<Vec<TcpStream>>>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen: SocketAddr = args[0].parse().expect("a listen address");
    let specs: Vec<BackendSpec> = args[1..]
        .iter()
        .map(|a| a.parse().expect("a backend address"))
        .collect();
    let engine = StrategyEngine::new(StrategyOptions::default()).expect("an engine");
    let strategy =
        Rc::new(Strategy::load(engine, &StrategySpec::builtin("round-robin")).expect("a built-in"));
    let backends = Rc::new(Backends::new());
    backends.set_static(&specs);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(listen).await.expect("the listen address");
        let pool: Pool = Rc::new(RefCell::new((0..specs.len()).map(|_| Vec::new()).collect()));
        loop {
            let (client, peer) = listener.accept().await.expect("accept");
            let _ = client.set_nodelay(true);
            let (strategy, backends, pool) = (strategy.clone(), backends.clone(), pool.clone());
            tokio::task::spawn_local(async move {
                let _ = serve(client, peer, &strategy, &backends, &pool).await;
            });
        }
    });
}

async fn serve(
    mut client: TcpStream,
    peer: SocketAddr,
    strategy: &Strategy,
    backends: &Backends,
    pool: &Pool,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut have = 0;
    let mut out = Vec::with_capacity(4096);
    let mut resp_buf = vec![0u8; 16 * 1024];
    let forwarded_for = peer.ip().to_string();
    loop {
        // A whole head.
        let (head_len, target) = loop {
            let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut hs);
            match req.parse(&buf[..have]) {
                Ok(httparse::Status::Complete(n)) => {
                    let list = backends.load();
                    let mut pairs = [(&b""[..], &b""[..]); MAX_HEADERS];
                    let mut host: &[u8] = b"";
                    for (p, h) in pairs.iter_mut().zip(req.headers.iter()) {
                        *p = (h.name.as_bytes(), h.value);
                        if h.name.eq_ignore_ascii_case("host") {
                            host = h.value;
                        }
                    }
                    let nh = req.headers.len();
                    let head = RequestHead {
                        protocol: Protocol::Http1,
                        method: req.method.unwrap_or("").as_bytes(),
                        path: req.path.unwrap_or("").as_bytes(),
                        authority: host,
                        client: Some(peer),
                        headers: &pairs[..nh],
                        raw: &buf[..n],
                        ..RequestHead::EMPTY
                    };
                    let Some(i) = strategy.decide(&head, &*list).index else {
                        return Ok(());
                    };
                    // The head as it goes upstream.
                    out.clear();
                    out.extend_from_slice(req.method.unwrap_or("GET").as_bytes());
                    out.push(b' ');
                    out.extend_from_slice(req.path.unwrap_or("/").as_bytes());
                    out.extend_from_slice(b" HTTP/1.1\r\n");
                    for h in req.headers.iter() {
                        let n = h.name.as_bytes();
                        if n.eq_ignore_ascii_case(b"connection")
                            || n.eq_ignore_ascii_case(b"keep-alive")
                            || n.eq_ignore_ascii_case(b"x-forwarded-for")
                            || n.eq_ignore_ascii_case(b"forwarded")
                        {
                            continue;
                        }
                        out.extend_from_slice(n);
                        out.extend_from_slice(b": ");
                        out.extend_from_slice(h.value);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"x-forwarded-for: ");
                    out.extend_from_slice(forwarded_for.as_bytes());
                    out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\nx-forwarded-host: ");
                    out.extend_from_slice(host);
                    out.extend_from_slice(b"\r\nforwarded: for=");
                    out.extend_from_slice(forwarded_for.as_bytes());
                    out.extend_from_slice(b";proto=http\r\n\r\n");
                    let head_only = req.method == Some("HEAD");
                    break (n, (i, head_only));
                }
                Ok(httparse::Status::Partial) => {
                    if have == buf.len() {
                        return Ok(());
                    }
                    let n = client.read(&mut buf[have..]).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    have += n;
                }
                Err(_) => return Ok(()),
            }
        };
        buf.copy_within(head_len..have, 0);
        have -= head_len;
        let (i, head_only) = target;
        let list = backends.load();
        let backend = &list[i];
        let idle = pool.borrow_mut()[i].pop();
        let mut up = match idle {
            Some(c) => c,
            None => {
                let c = TcpStream::connect(backend.addr()).await?;
                c.set_nodelay(true)?;
                c
            }
        };
        let _guard = backend.open_connection();
        up.write_all(&out).await?;
        // The response head.
        let mut got = 0;
        let (rhead, body_len, keep) = loop {
            let n = up.read(&mut resp_buf[got..]).await?;
            if n == 0 {
                return Ok(());
            }
            got += n;
            let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut hs);
            if let httparse::Status::Complete(n) = resp.parse(&resp_buf[..got]).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "response head")
            })? {
                out.clear();
                out.extend_from_slice(b"HTTP/1.1 ");
                out.extend_from_slice(resp.code.unwrap_or(502).to_string().as_bytes());
                out.push(b' ');
                out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
                out.extend_from_slice(b"\r\n");
                let mut len = None;
                let mut keep = true;
                for h in resp.headers.iter() {
                    let name = h.name.as_bytes();
                    if name.eq_ignore_ascii_case(b"connection") {
                        keep = !h.value.eq_ignore_ascii_case(b"close");
                        continue;
                    }
                    if name.eq_ignore_ascii_case(b"keep-alive") {
                        continue;
                    }
                    if name.eq_ignore_ascii_case(b"content-length") {
                        len = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.parse::<u64>().ok());
                    }
                    out.extend_from_slice(name);
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(h.value);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"\r\n");
                let Some(len) = len else {
                    return Ok(());
                };
                break (n, if head_only { 0 } else { len }, keep);
            }
        };
        // The body: what came with the head goes out in the same write.
        let with_head = (got - rhead).min(body_len as usize);
        out.extend_from_slice(&resp_buf[rhead..rhead + with_head]);
        client.write_all(&out).await?;
        let mut left = body_len - with_head as u64;
        while left > 0 {
            let n = up.read(&mut resp_buf).await?;
            if n == 0 {
                return Ok(());
            }
            let n = (n as u64).min(left) as usize;
            client.write_all(&resp_buf[..n]).await?;
            left -= n as u64;
        }
        if keep {
            pool.borrow_mut()[i].push(up);
        }
    }
}
