//! The client connection as hyper reads it in HTTP/1 mode, with every
//! request head checked before hyper sees it.
//!
//! hyper is lenient where a proxy must not be: it accepts `Transfer-Encoding`
//! together with `Content-Length` (dropping the length) and repeated equal
//! `Content-Length`s, and once it has parsed them the evidence is gone from
//! the header map. Those are the seeds of request smuggling (a backend or a
//! proxy behind us that frames the body differently), so each head is held
//! back here until it is complete, checked with the same parser as TCP mode,
//! and only then handed to hyper. This also gives the later heads of a
//! keep-alive connection the same `408`/`431`/`400` as the first one.
//!
//! To find where the next head starts, the body framing is followed
//! (`Content-Length` counted down; chunked sizes read, data skipped), so
//! body bytes go to hyper without being copied or held.
//!
//! A refusal is written when hyper lets go of the connection, after every
//! response it owes the client: hyper sees a clean end of input where the bad
//! head began, finishes the requests before it, and drops us.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::error::Kind;
use crate::sniff::http1;

/// What hyper and the request handler share about one client connection.
#[derive(Debug, Default)]
pub struct ConnState {
    /// Requests whose response has not been sent whole.
    busy: AtomicUsize,
    /// When the last response finished ([`crate::clock::now_ms`]).
    done_ms: AtomicU64,
    /// The request handler already answered the refusal (a body the guard
    /// cut short): the guard writes no second answer.
    answered: std::sync::atomic::AtomicBool,
    /// The answer to an upgrade or CONNECT request, which the guard holds
    /// the connection's next bytes for: 0 not yet, 1 switched (101), 2 not.
    upgrade: std::sync::atomic::AtomicU8,
    /// A request has begun on this connection.
    started: std::sync::atomic::AtomicBool,
    /// The access log and the client, when a log is kept: a head the guard
    /// refuses gets its line here.
    access: std::sync::OnceLock<(Arc<crate::access::AccessLog>, std::net::SocketAddr)>,
}

impl ConnState {
    /// State for a connection opened now (it starts idle).
    pub fn new() -> Arc<ConnState> {
        let s = ConnState::default();
        s.done_ms.store(crate::clock::now_ms(), Ordering::Relaxed);
        Arc::new(s)
    }

    /// Says how an upgrade or CONNECT request was answered. Called before
    /// the response goes to hyper, so the guard knows by the time hyper
    /// reads again whether the bytes that follow are another protocol
    /// (passed through) or the next HTTP/1 head (checked as any other).
    pub fn upgrade_answered(&self, switched: bool) {
        self.upgrade
            .store(if switched { 1 } else { 2 }, Ordering::Release);
    }

    /// Writes this connection's refused heads to `log`.
    pub fn log_to(&self, log: Arc<crate::access::AccessLog>, client: std::net::SocketAddr) {
        let _ = self.access.set((log, client));
    }

    /// Whether any request has begun on this connection.
    pub fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// How long the connection has had no request in flight, or `None`
    /// while one is.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let done = self.done_ms.load(Ordering::Relaxed);
        Some(Duration::from_millis(
            crate::clock::now_ms().saturating_sub(done),
        ))
    }

    /// Counts a request until the token drops (its response body ended).
    pub fn begin(self: &Arc<Self>) -> Busy {
        if !self.started.load(Ordering::Relaxed) {
            self.started.store(true, Ordering::Relaxed);
        }
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }
}

/// One request in flight on a client connection.
#[derive(Debug)]
pub struct Busy(Arc<ConnState>);

impl Busy {
    /// The handler answered a request whose body the client broke: the
    /// connection's refusal, if any, is said.
    pub fn answered_refusal(&self) {
        self.0.answered.store(true, Ordering::Relaxed);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0
            .done_ms
            .store(crate::clock::now_ms(), Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Limits on each request head after the first.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// A head must arrive whole within this of its first byte (`408`).
    pub head_timeout: Duration,
    /// A head may be at most this long (`431`).
    pub max_head_bytes: usize,
    /// An idle keep-alive connection (no request in flight, no byte of the
    /// next head) is closed after this.
    pub keepalive_timeout: Duration,
}

/// Longest chunk-size line (size, extensions) or trailer section followed.
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    /// In the size line; `digits` read so far, `ext` once past them.
    Size { digits: u8, ext: bool, len: usize },
    /// After the size line's CR.
    SizeLf,
    /// Data bytes left in this chunk.
    Data(u64),
    /// The CR after the data.
    DataCr,
    /// The LF after the data.
    DataLf,
    /// Trailer section after the last chunk: `at_start` when a line just
    /// began (an empty line ends the message).
    Trailers {
        at_start: bool,
        cr: bool,
        len: usize,
    },
}

/// What the connection's timer is set for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Armed {
    /// Keep-alive idleness, checked against the last response when it fires.
    Idle,
    /// The head being read must be whole by then.
    Head,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Between messages.
    Idle,
    /// Part of a head held back.
    Head,
    /// Bytes left of a `Content-Length` body.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk, u64),
    /// After an upgrade or CONNECT request without a body, until its
    /// answer is known ([`ConnState::upgrade_answered`]): nothing is read.
    AwaitUpgrade,
    /// Not checked any more: HTTP/2, after a switch of protocols, or after
    /// an upgrade request with a body.
    Passthrough,
    /// Nothing more is read: a refusal, a timeout or the client's end.
    Closed,
}

/// The client connection in HTTP mode (a socket, or TLS over one).
pub struct ClientIo<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    inner: Option<S>,
    /// Client bytes read but not yet looked at (the sniffer's, or what
    /// followed a head).
    unread: Vec<u8>,
    unread_at: usize,
    /// A checked head, going to hyper.
    ready: Vec<u8>,
    ready_at: usize,
    /// The head being read.
    head: Vec<u8>,
    state: State,
    limits: HeadLimits,
    /// One timer for the connection, armed for what it is waiting on
    /// (`armed`) and re-armed only when that changes: a head that arrives
    /// whole in one read costs no timer operation.
    timer: Pin<Box<Sleep>>,
    armed: Armed,
    conn: Arc<ConnState>,
    refusal: Option<(Kind, &'static str)>,
    /// Nothing was read before this guard (TLS, whose handshake the
    /// sniffer saw, not a request): until a request begins, the wait is the
    /// head timeout, as for a plain connection's first bytes, not the
    /// keep-alive timeout of a connection that was served.
    silent_start: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> ClientIo<S> {
    /// `inner` with `prefix` (already read from it) put back in front, and
    /// nothing checked: what TLS reads its handshake from.
    pub fn plain(prefix: &[u8], inner: S) -> ClientIo<S> {
        let limits = HeadLimits {
            head_timeout: Duration::from_secs(3600),
            max_head_bytes: 0,
            keepalive_timeout: Duration::from_secs(3600),
        };
        ClientIo::new(prefix, inner, false, limits, Arc::default())
    }

    /// `inner`, which already gave up `prefix`. `checked`: follow HTTP/1
    /// framing and check heads (false for HTTP/2).
    pub fn new(
        prefix: &[u8],
        inner: S,
        checked: bool,
        limits: HeadLimits,
        conn: Arc<ConnState>,
    ) -> ClientIo<S> {
        ClientIo {
            inner: Some(inner),
            unread: prefix.to_vec(),
            unread_at: 0,
            ready: Vec::new(),
            ready_at: 0,
            head: Vec::new(),
            state: if checked {
                State::Idle
            } else {
                State::Passthrough
            },
            limits,
            timer: Box::pin(tokio::time::sleep(if prefix.is_empty() && checked {
                limits.head_timeout
            } else {
                limits.keepalive_timeout
            })),
            armed: Armed::Idle,
            conn,
            refusal: None,
            silent_start: prefix.is_empty() && checked,
        }
    }

    fn refuse(&mut self, kind: Kind, why: &'static str) {
        crate::metrics::METRICS.error(kind);
        self.refusal = Some((kind, why));
        self.state = State::Closed;
        self.head = Vec::new();
    }

    /// Bytes from `unread`, else from the socket, into `dst`.
    fn fill(&mut self, cx: &mut Context<'_>, dst: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.unread_at < self.unread.len() {
            let n = (self.unread.len() - self.unread_at).min(dst.remaining());
            dst.put_slice(&self.unread[self.unread_at..self.unread_at + n]);
            // Kept until the next read from the socket: the caller may
            // give back what follows a body (`unread_at` moves back).
            self.unread_at += n;
            return Poll::Ready(Ok(()));
        }
        if !self.unread.is_empty() {
            self.unread = Vec::new();
            self.unread_at = 0;
        }
        let inner = self.inner.as_mut().expect("socket taken only on drop");
        Pin::new(inner).poll_read(cx, dst)
    }

    /// Puts `bytes` back in front of what is still unread.
    fn unread_front(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut v = bytes.to_vec();
        v.extend_from_slice(&self.unread[self.unread_at..]);
        self.unread = v;
        self.unread_at = 0;
    }

    /// Nothing to read now: has a deadline passed? Returns true if the
    /// state changed (read again).
    fn on_pending(&mut self, cx: &mut Context<'_>) -> bool {
        let now = Instant::now();
        match (self.state, self.armed) {
            (State::Head, Armed::Idle) => {
                // Measured from the first wait, within a read of the first
                // byte: a head that arrives whole never gets here.
                self.timer.as_mut().reset(now + self.limits.head_timeout);
                self.armed = Armed::Head;
            }
            (State::Idle, Armed::Head) => {
                self.timer
                    .as_mut()
                    .reset(now + self.limits.keepalive_timeout);
                self.armed = Armed::Idle;
            }
            (State::Head | State::Idle, _) => {}
            _ => return false,
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        if self.state == State::Head {
            self.refuse(Kind::HeadTimeout, "request head not received in time");
            return true;
        }
        if self.silent_start && !self.conn.started() {
            // Closed as a plain client that says nothing is.
            crate::metrics::METRICS.error(Kind::ClientSilent);
            self.state = State::Closed;
            return true;
        }
        let keep = self.limits.keepalive_timeout;
        if self.conn.busy.load(Ordering::Relaxed) > 0 {
            // A response is still going: the connection is not idle. Look
            // again later.
            self.timer.as_mut().reset(now + keep);
        } else {
            let idle =
                crate::clock::now_ms().saturating_sub(self.conn.done_ms.load(Ordering::Relaxed));
            let idle = Duration::from_millis(idle);
            if idle >= keep {
                self.state = State::Closed;
                return true;
            }
            self.timer.as_mut().reset(now + (keep - idle));
        }
        // Register with the new deadline.
        let _ = self.timer.as_mut().poll(cx);
        false
    }

    /// Reads the next head into `self.head` until it is complete, then
    /// checks it. Returns `Ready(Ok(true))` when there is something for
    /// hyper (or the state changed), `Ready(Ok(false))` at the client's end.
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            // Read straight into the head's spare room: no staging copy.
            let mut head = std::mem::take(&mut self.head);
            head.reserve(2048);
            let len = head.len();
            let mut rb = ReadBuf::uninit(head.spare_capacity_mut());
            let polled = self.fill(cx, &mut rb);
            let n = rb.filled().len();
            // SAFETY: `fill` initialised the first `n` bytes of the spare
            // capacity (ReadBuf tracks what was written).
            unsafe { head.set_len(len + n) };
            self.head = head;
            match polled {
                Poll::Pending => {
                    if self.on_pending(cx) {
                        return Poll::Ready(Ok(true));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            if n == 0 {
                // The client's end, between requests or inside a head: there
                // is nobody to answer.
                self.state = State::Closed;
                return Poll::Ready(Ok(false));
            }
            self.state = State::Head;
            match check(&self.head, self.limits.max_head_bytes) {
                Checked::Partial => continue,
                Checked::Refuse(kind, why) => {
                    self.refuse(kind, why);
                    return Poll::Ready(Ok(true));
                }
                Checked::Complete(len, next) => {
                    if self.head.len() > len {
                        let rest = self.head[len..].to_vec();
                        self.unread_front(&rest);
                        self.head.truncate(len);
                    }
                    // Swap rather than move: both buffers keep their room
                    // for the next request.
                    std::mem::swap(&mut self.ready, &mut self.head);
                    self.head.clear();
                    self.ready_at = 0;
                    self.state = next;
                    return Poll::Ready(Ok(true));
                }
            }
        }
    }

    /// Follows body framing over `bytes`; see [`advance`].
    fn advance(&mut self, bytes: &[u8]) -> Result<usize, &'static str> {
        advance(&mut self.state, bytes)
    }
}

/// Follows body framing over `bytes` (already in hyper's buffer). Returns
/// how many belong to the body; the state is `Idle` if the body ended
/// before the rest.
pub(super) fn advance(state: &mut State, bytes: &[u8]) -> Result<usize, &'static str> {
    advance_counting(state, bytes).map(|(n, _)| n)
}

/// [`advance`], also counting the body's payload among the bytes (its data,
/// without chunk framing or trailers).
pub(super) fn advance_counting(
    state: &mut State,
    bytes: &[u8],
) -> Result<(usize, u64), &'static str> {
    let mut i = 0;
    let mut data = 0u64;
    while i < bytes.len() {
        match *state {
            State::Body(left) => {
                let n = (left.min((bytes.len() - i) as u64)) as usize;
                i += n;
                data += n as u64;
                *state = if left == n as u64 {
                    State::Idle
                } else {
                    State::Body(left - n as u64)
                };
            }
            State::Chunked(Chunk::Data(left), size) => {
                let n = (left.min((bytes.len() - i) as u64)) as usize;
                i += n;
                data += n as u64;
                *state = State::Chunked(
                    if left == n as u64 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left - n as u64)
                    },
                    size,
                );
            }
            State::Chunked(c, size) => {
                let b = bytes[i];
                i += 1;
                *state = chunk_byte(c, size, b)?;
            }
            _ => break,
        }
        if *state == State::Idle {
            break;
        }
    }
    Ok((i, data))
}

/// One byte of chunked framing outside data.
fn chunk_byte(c: Chunk, size: u64, b: u8) -> Result<State, &'static str> {
    const BAD: &str = "malformed chunked body";
    let next = match c {
        Chunk::Size { digits, ext, len } => {
            if len >= MAX_CHUNK_LINE {
                return Err("chunk size line too long");
            }
            let len = len + 1;
            match b {
                b'\r' if digits > 0 => return Ok(State::Chunked(Chunk::SizeLf, size)),
                // An extension is text: a bare LF or another control byte
                // would let a reader that ends lines at LF see another
                // message boundary than this one (hyper refuses them too).
                _ if ext && (b == b'\t' || (b >= 0x20 && b != 0x7f)) => {
                    Chunk::Size { digits, ext, len }
                }
                _ if ext => return Err("control byte in a chunk extension"),
                b';' | b' ' | b'\t' if digits > 0 => Chunk::Size {
                    digits,
                    ext: true,
                    len,
                },
                _ => {
                    let d = (b as char).to_digit(16).ok_or(BAD)?;
                    // 16 hex digits fill a u64.
                    if digits >= 16 {
                        return Err("chunk size too large");
                    }
                    return Ok(State::Chunked(
                        Chunk::Size {
                            digits: digits + 1,
                            ext,
                            len,
                        },
                        (size << 4) | u64::from(d),
                    ));
                }
            }
        }
        Chunk::SizeLf if b == b'\n' => {
            if size == 0 {
                Chunk::Trailers {
                    at_start: true,
                    cr: false,
                    len: 0,
                }
            } else {
                Chunk::Data(size)
            }
        }
        Chunk::DataCr if b == b'\r' => Chunk::DataLf,
        Chunk::DataLf if b == b'\n' => {
            return Ok(State::Chunked(
                Chunk::Size {
                    digits: 0,
                    ext: false,
                    len: 0,
                },
                0,
            ));
        }
        Chunk::Trailers { at_start, cr, len } => {
            if len >= MAX_CHUNK_LINE {
                return Err("chunked trailers too long");
            }
            match (b, cr) {
                (b'\n', true) if at_start => return Ok(State::Idle),
                (b'\n', true) => Chunk::Trailers {
                    at_start: true,
                    cr: false,
                    len: len + 1,
                },
                (b'\r', false) => Chunk::Trailers {
                    at_start,
                    cr: true,
                    len: len + 1,
                },
                (_, false) if b != b'\n' => Chunk::Trailers {
                    at_start: false,
                    cr: false,
                    len: len + 1,
                },
                _ => return Err(BAD),
            }
        }
        _ => return Err(BAD),
    };
    // `size` carries across the size line only; data and after reset it.
    let size = if matches!(next, Chunk::Size { .. }) {
        size
    } else {
        0
    };
    Ok(State::Chunked(next, size))
}

/// A head checked by [`check`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Checked {
    /// More bytes needed.
    Partial,
    /// The head is this long; then the connection is in this state.
    Complete(usize, State),
    /// Answer with this and close.
    Refuse(Kind, &'static str),
}

/// Parses the head at the start of `buf` (httparse, as hyper will, with no
/// allocation) and checks it.
fn check(buf: &[u8], max_bytes: usize) -> Checked {
    match check_with(buf, max_bytes, |_, len, state| {
        Checked::Complete(len, state)
    }) {
        Ok(c) | Err(c) => c,
    }
}

/// [`check`], then `f` on the parsed head if it is whole and passes (with
/// its length and the state after it): what the direct path reads a head
/// with, so the head is parsed once. `Err` is any other outcome.
pub(super) fn check_with<R>(
    buf: &[u8],
    max_bytes: usize,
    f: impl FnOnce(&httparse::Request<'_, '_>, usize, State) -> R,
) -> Result<R, Checked> {
    let mut store =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; http1::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let too_large = Checked::Refuse(Kind::HeadTooLarge, "request head too large");
    let len = match req.parse_with_uninit_headers(buf, &mut store) {
        Ok(httparse::Status::Complete(n)) if n <= max_bytes => n,
        Ok(httparse::Status::Complete(_)) => return Err(too_large),
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => return Err(too_large),
        Ok(httparse::Status::Partial) => return Err(Checked::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(too_large),
        Err(_) => {
            return Err(Checked::Refuse(
                Kind::HeadMalformed,
                "malformed request head",
            ));
        }
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(Checked::Refuse(
            Kind::HeadMalformed,
            "malformed request head",
        ));
    };
    match framing(method.as_bytes(), target.as_bytes(), minor, req.headers) {
        Ok(state) => Ok(f(&req, len, state)),
        Err(why) => Err(Checked::Refuse(Kind::HeadMalformed, why)),
    }
}

/// The checks a proxy owes the servers behind it (RFC 9112 6.1, 6.3, 3.2),
/// and where the message's body ends.
fn framing(
    method: &[u8],
    target: &[u8],
    minor_version: u8,
    headers: &[httparse::Header<'_>],
) -> Result<State, &'static str> {
    let mut lengths = 0;
    let mut length = 0u64;
    let mut codings: Option<&[u8]> = None;
    let mut hosts = 0;
    let mut host: &[u8] = b"";
    let mut upgrade = false;
    let mut connection_upgrade = false;
    for h in headers {
        let (name, value) = (h.name.as_bytes(), h.value);
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths += 1;
            if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                return Err("Content-Length is not a number");
            }
            length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or("Content-Length is not a number")?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if let Some(prev) = codings {
                if prev
                    .split(|&b| b == b',')
                    .any(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"))
                {
                    return Err("chunked applied twice");
                }
                // Another coding on an earlier line (`gzip`, then
                // `chunked`): a list of two, whatever the line breaks.
                return Err(UNSUPPORTED_CODING);
            }
            codings = Some(value);
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            host = value;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection_upgrade |= value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
        }
    }
    if lengths > 1 {
        return Err("more than one Content-Length");
    }
    if hosts > 1 {
        return Err("more than one Host");
    }
    if hosts == 0 && minor_version == 1 {
        // RFC 9112 3.2: the backend would otherwise learn its own address.
        return Err("HTTP/1.1 request without Host");
    }
    if hosts == 1 && !valid_host(host) {
        return Err("Host is not a valid host[:port]");
    }
    match absolute_form_authority(target) {
        Some((authority, default_port)) => {
            if hosts == 1 && !same_host(authority, host, default_port) {
                return Err("the target's host differs from Host");
            }
        }
        // RFC 9112 3.2: origin-form, or `*` for OPTIONS, or authority-form
        // for CONNECT; anything else would reach the backend as `/`.
        None if target.first() == Some(&b'/') => {}
        None if target == b"*" && method == b"OPTIONS" => {}
        None if method == b"CONNECT" => {}
        None => return Err("the request target is not a path or an absolute URI"),
    }
    let chunked = match codings {
        None => false,
        Some(_) if lengths > 0 => return Err("Transfer-Encoding with Content-Length"),
        Some(_) if minor_version == 0 => return Err("Transfer-Encoding in HTTP/1.0"),
        Some(v) => {
            let mut codings = v.split(|&b| b == b',').map(<[u8]>::trim_ascii);
            let last = codings.next_back().unwrap_or(b"");
            if codings.any(|c| c.eq_ignore_ascii_case(b"chunked")) {
                return Err("chunked applied twice");
            }
            if !last.eq_ignore_ascii_case(b"chunked") {
                return Err("Transfer-Encoding does not end in chunked");
            }
            // hyper takes the chunks off and the upstream request is chunked
            // again: any other coding would be lost on the way.
            if v.split(|&b| b == b',').count() > 1 {
                return Err(UNSUPPORTED_CODING);
            }
            true
        }
    };
    if method == b"CONNECT" || (upgrade && connection_upgrade) {
        // What follows may be another protocol, or, if the upgrade is
        // declined, the next request: hold it until the answer says which.
        // (One with a body is rare; it is passed through as before.)
        return Ok(if chunked || length > 0 {
            State::Passthrough
        } else {
            State::AwaitUpgrade
        });
    }
    Ok(if chunked {
        State::Chunked(
            Chunk::Size {
                digits: 0,
                ext: false,
                len: 0,
            },
            0,
        )
    } else if length > 0 {
        State::Body(length)
    } else {
        State::Idle
    })
}

/// Why a request with a transfer coding besides `chunked` is refused: it
/// gets `501`, as RFC 9112 6.1 asks of a coding the recipient cannot pass on.
pub(crate) const UNSUPPORTED_CODING: &str = "a transfer coding other than chunked";

/// A `Host` value is a host and an optional port (RFC 9110 7.2, RFC 3986
/// 3.2.2): letters, digits, `-._~`, `%`-escapes, sub-delimiters but the
/// comma (which would split the list-valued `X-Forwarded-Host`), `:` and
/// the brackets of an IPv6 literal. Empty is allowed (a target with no
/// authority).
pub(crate) fn valid_host(v: &[u8]) -> bool {
    v.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b':'
                    | b'['
                    | b']'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b';'
                    | b'='
            )
    })
}

/// `a` and `b` (each `host[:port]`) name the same host: the same but for
/// case and the scheme's `default_port` (`:80`), so `http://x:80/` names
/// `Host: x`.
pub(crate) fn same_host(a: &[u8], b: &[u8], default_port: &[u8]) -> bool {
    let bare = |v: &[u8]| -> usize { v.strip_suffix(default_port).map_or(v.len(), <[u8]>::len) };
    a[..bare(a)].eq_ignore_ascii_case(&b[..bare(b)])
}

/// The `host[:port]` of an absolute-form target (`http://host/path`), and
/// its scheme's default port as a `:port` suffix.
fn absolute_form_authority(target: &[u8]) -> Option<(&[u8], &'static [u8])> {
    let lower = |n: usize| target.get(..n).map(<[u8]>::to_ascii_lowercase);
    let (rest, default_port): (&[u8], &'static [u8]) = if lower(7).as_deref() == Some(b"http://") {
        (&target[7..], b":80")
    } else if lower(8).as_deref() == Some(b"https://") {
        (&target[8..], b":443")
    } else {
        return None;
    };
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    // Userinfo is not part of the host.
    let host = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    Some((host, default_port))
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for ClientIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ready_at < this.ready.len() {
                let n = (this.ready.len() - this.ready_at).min(buf.remaining());
                buf.put_slice(&this.ready[this.ready_at..this.ready_at + n]);
                this.ready_at += n;
                if this.ready_at == this.ready.len() {
                    // A rare huge head does not stay held by an idle
                    // connection.
                    if this.ready.capacity() > 8192 {
                        this.ready = Vec::new();
                    }
                    this.ready.clear();
                    this.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            match this.state {
                State::Closed => return Poll::Ready(Ok(())),
                State::Passthrough => return this.fill(cx, buf),
                State::AwaitUpgrade => match this.conn.upgrade.swap(0, Ordering::Acquire) {
                    1 => this.state = State::Passthrough,
                    2 => this.state = State::Idle,
                    // hyper reads no further until it has the response, and
                    // the response's arrival wakes this task: nothing to
                    // register.
                    _ => return Poll::Pending,
                },
                State::Idle | State::Head => match this.poll_head(cx) {
                    Poll::Ready(Ok(true)) => continue,
                    Poll::Ready(Ok(false)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                },
                State::Body(_) | State::Chunked(..) => {
                    let before = buf.filled().len();
                    let from_unread = this.unread_at < this.unread.len();
                    match this.fill(cx, buf) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) => {}
                    }
                    let after = buf.filled().len();
                    if after == before {
                        this.state = State::Closed;
                        return Poll::Ready(Ok(()));
                    }
                    let new = &buf.filled()[before..after];
                    match this.advance(new) {
                        Ok(n) => {
                            if before + n < after {
                                // The next head starts here: hold it back.
                                if from_unread {
                                    this.unread_at -= after - before - n;
                                } else {
                                    let rest = new[n..].to_vec();
                                    this.unread_front(&rest);
                                }
                                buf.set_filled(before + n);
                            }
                            if n > 0 {
                                return Poll::Ready(Ok(()));
                            }
                        }
                        Err(why) => {
                            // hyper gets the body up to here and then the
                            // end; the client gets 400 once hyper is done.
                            buf.set_filled(before);
                            this.refuse(Kind::HeadMalformed, why);
                            return Poll::Ready(Ok(()));
                        }
                    }
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for ClientIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.inner.as_mut().expect("socket")).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.inner.as_mut().expect("socket")).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(S::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.inner.as_mut().expect("socket")).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.refusal.is_some() {
            // The answer goes first, from `Drop`.
            return Poll::Ready(Ok(()));
        }
        Pin::new(self.inner.as_mut().expect("socket")).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for ClientIo<S> {
    fn drop(&mut self) {
        let (Some((kind, why)), Some(mut socket)) = (self.refusal.take(), self.inner.take()) else {
            return;
        };
        tracing::debug!(kind = kind.as_str(), why, "request refused");
        if self.conn.answered.load(Ordering::Relaxed) {
            // The request handler answered it already.
            return;
        }
        let answer = if why == UNSUPPORTED_CODING {
            crate::proxy::answer::unsupported_coding()
        } else {
            match crate::proxy::answer::for_kind(kind) {
                Some(a) => a,
                None => return,
            }
        };
        if let Some((log, client)) = self.conn.access.get() {
            log.log(crate::access::Entry {
                start: std::time::SystemTime::now(),
                mode: "http1",
                client: *client,
                method: None,
                path: None,
                status: match kind {
                    Kind::HeadTimeout => Some(408),
                    Kind::HeadTooLarge => Some(431),
                    _ if why == UNSUPPORTED_CODING => Some(501),
                    _ => Some(400),
                },
                backend: None,
                attempts: 0,
                fallback: None,
                bytes_in: 0,
                bytes_out: answer.len() as u64,
                duration: Duration::ZERO,
                error: Some(kind.as_str()),
            });
        }
        // hyper is done with the connection: answer, then read what the
        // client still sends for a moment, so closing with unread bytes
        // does not reset the connection before the answer arrives.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        tokio::spawn(async move {
            let linger = async {
                socket.write_all(answer).await?;
                socket.shutdown().await?;
                let mut sink = [0u8; 4096];
                let mut left: usize = 64 * 1024;
                while left > 0 {
                    match tokio::io::AsyncReadExt::read(&mut socket, &mut sink).await? {
                        0 => break,
                        n => left = left.saturating_sub(n),
                    }
                }
                io::Result::Ok(())
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), linger).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(head: &str) -> Result<State, &'static str> {
        match super::check(head.as_bytes(), 8192) {
            Checked::Complete(n, state) => {
                assert_eq!(n, head.len());
                Ok(state)
            }
            Checked::Refuse(Kind::HeadMalformed, why) => Err(why),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let refused = [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ];
        for head in refused {
            assert!(check(head).is_err(), "{head:?}");
        }
        assert_eq!(
            check("GET http://A:80/x HTTP/1.1\r\nHost: a:80\r\n\r\n"),
            Ok(State::Idle)
        );
        assert_eq!(
            check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Err(UNSUPPORTED_CODING)
        );
        assert_eq!(
            check(
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            Err(UNSUPPORTED_CODING)
        );
        assert_eq!(
            check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n")
                .map(|s| matches!(s, State::Chunked(..))),
            Ok(true)
        );
        // Targets: a path, `*` for OPTIONS, an absolute URI whose host is
        // Host's (the default port or not); nothing else.
        for head in [
            "GET abc HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\\\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x,for=6.6.6.6\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\"y\r\n\r\n",
        ] {
            assert!(check(head).is_err(), "{head:?}");
        }
        for head in [
            "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET https://x:443/abs HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET http://x/abs HTTP/1.1\r\nHost: x:80\r\n\r\n",
            "GET http://[::1]:8080/ HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
            "GET /?q HTTP/1.1\r\nHost: a-b.example_1.com:8080\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
        ] {
            assert_eq!(check(head), Ok(State::Idle), "{head:?}");
        }
        assert_eq!(
            check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n"),
            Ok(State::Body(12))
        );
        // obs-fold, NUL and a bare CR never parse.
        for head in [
            "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        ] {
            assert_eq!(
                super::check(head.as_bytes(), 8192),
                Checked::Refuse(Kind::HeadMalformed, "malformed request head"),
                "{head:?}"
            );
        }
    }

    #[test]
    fn chunked_framing_finds_the_end_of_the_body() {
        let body = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\nGET";
        // In pieces of any size: the same end.
        for step in [1, 3, body.len()] {
            let mut state =
                check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
            let mut taken = 0;
            for piece in body.chunks(step) {
                taken += advance(&mut state, piece).unwrap();
                if state == State::Idle {
                    break;
                }
            }
            assert_eq!(taken, body.len() - 3, "step {step}");
        }
        let mut state = State::Body(4);
        assert_eq!(advance(&mut state, b"abcdGET"), Ok(4));
        assert_eq!(state, State::Idle);
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXY",
            b"11111111111111111\r\n",
            // A bare LF or another control byte in an extension: a reader
            // that ends lines at LF would see another boundary.
            b"0;\n\r\n",
            b"5;a\x00b\r\nhello\r\n",
        ] {
            let mut state =
                check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
            assert!(advance(&mut state, bad).is_err(), "{bad:?}");
        }
    }

    /// Chunked bodies of random shape, fed in random pieces, end exactly
    /// where they were written to end; mutated ones never panic, and
    /// `advance` never claims more than it was given.
    #[test]
    fn random_chunked_bodies_end_where_written_and_mutations_never_panic() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n.max(1)
        };
        let start =
            || check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        for _ in 0..2000 {
            let mut body = Vec::new();
            for _ in 0..rnd(5) {
                let size = 1 + rnd(300) as usize;
                if rnd(2) == 0 {
                    body.extend_from_slice(format!("{size:x}").as_bytes());
                } else {
                    body.extend_from_slice(format!("{size:X};ext=v").as_bytes());
                }
                body.extend_from_slice(b"\r\n");
                body.extend(std::iter::repeat_n(b'd', size));
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n");
            for _ in 0..rnd(3) {
                body.extend_from_slice(b"x-trailer: 1\r\n");
            }
            body.extend_from_slice(b"\r\n");
            let end = body.len();
            body.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let mut state = start();
            let mut taken = 0;
            let mut at = 0;
            while at < body.len() && state != State::Idle {
                let piece = &body[at..(at + 1 + rnd(64) as usize).min(body.len())];
                let n = advance(&mut state, piece).unwrap();
                assert!(n <= piece.len());
                taken += n;
                at += piece.len();
            }
            assert_eq!(state, State::Idle);
            assert_eq!(taken, end);
            // One byte changed: an error or some end, never a panic.
            let k = rnd(end as u64) as usize;
            body[k] = rnd(256) as u8;
            let mut state = start();
            if let Ok(n) = advance(&mut state, &body) {
                assert!(n <= body.len());
            }
        }
        // Heads with a byte changed: checked without a panic, and a
        // complete one never claims more bytes than it has.
        let head = b"POST /a?b=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n";
        for _ in 0..5000 {
            let mut h = head.to_vec();
            for _ in 0..1 + rnd(3) {
                let k = rnd(h.len() as u64) as usize;
                h[k] = rnd(256) as u8;
            }
            if let Checked::Complete(n, _) = super::check(&h, 8192) {
                assert!(n <= h.len());
            }
        }
    }
}
