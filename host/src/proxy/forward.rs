//! Moving bytes between a client and its backend once routed, both ways,
//! until each side has closed.
//!
//! Three modes (`forward` in the config):
//! - `auto` (default): every burst starts as `read`/`write` through a user
//!   buffer; a read that fills the whole buffer means bulk data, and the rest
//!   of that burst goes through `splice(2)` (kernel pipe, no user-space copy).
//!   Small messages cost exactly one `read` and one `write` each way, like
//!   HAProxy; large ones cost 2.8x less CPU than copying (README,
//!   Performance).
//! - `copy`: only `read`/`write`.
//! - `splice`: only `splice(2)`.
//!
//! Syscalls per message are what a proxy's CPU goes to on loopback, so:
//! - Reads go through tokio's `poll_read`, which treats a short read as
//!   "socket drained" and clears readiness without the extra `read` that
//!   would return `EAGAIN` (`try_read`/`try_io` only clear on `EAGAIN`).
//! - A direction holds no buffer while idle (it waits for readability first),
//!   so ten thousand idle WebSockets cost no buffer memory.
//! - An EOF is passed on with `shutdown(SHUT_WR)` only while the other
//!   direction is still open; when both are done (or the other peer's FIN
//!   is already in) the sockets are just closed, as HAProxy does.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::time::Sleep;

use super::idle::Idle;

/// How bytes are moved between client and backend once routed.
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
pub enum Forward {
    /// `read`/`write` through a user-space buffer; a burst that fills the
    /// buffer continues with `splice(2)`. The default: the cheapest of both
    /// on small and on large messages (README, Performance).
    #[default]
    Auto,
    /// `read`/`write` through a user-space buffer only.
    Copy,
    /// `splice(2)` through a pipe per direction only (Linux).
    Splice,
}

/// What happened before forwarding starts: bytes already read that go first,
/// and whether the client's side already ended (its FIN was passed on).
/// The buffers are owned so that each goes back to the free list as soon as
/// it is written, not when the connection ends.
#[derive(Default)]
pub struct Start {
    /// Response bytes already read from the backend.
    pub to_client: Buffer,
    /// Client bytes read but not yet all written to the backend...
    pub to_upstream: Buffer,
    /// ...from this offset on.
    pub to_upstream_from: usize,
    /// The client half-closed and the backend was told.
    pub client_done: bool,
}

/// User buffer per direction during a burst: big enough for a typical HTTP
/// response in one read (HAProxy's default `bufsize` too).
pub const BUF: usize = 16 * 1024;
/// Bytes moved per splice call (a pipe's default capacity).
const CHUNK: usize = 64 * 1024;

/// Forwards both ways until both directions reached EOF, or until either
/// fails, or until nothing moved either way for the idle limit
/// (`TimedOut`). `start` says what goes first. Returns the bytes moved
/// (client to backend, backend to client).
pub async fn bidirectional(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    mode: Forward,
    (activity, timer): (&Idle, Option<Pin<&mut Sleep>>),
    start: Start,
) -> io::Result<(u64, u64)> {
    let done = [AtomicBool::new(start.client_done), AtomicBool::new(false)];
    let (cr, cw) = client.split();
    let (ur, uw) = upstream.split();
    let up_first = (start.to_upstream, start.to_upstream_from);
    let up = async {
        if start.client_done {
            Ok(0)
        } else {
            one_way(cr, uw, mode, &done, 0, activity, up_first).await
        }
    };
    let down = one_way(ur, cw, mode, &done, 1, activity, (start.to_client, 0));
    tokio::select! {
        r = async { tokio::try_join!(up, down) } => r,
        _ = activity.expired(timer) => Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")),
    }
}

async fn one_way(
    mut src: ReadHalf<'_>,
    mut dst: WriteHalf<'_>,
    mode: Forward,
    done: &[AtomicBool; 2],
    me: usize,
    activity: &Idle,
    (first, from): (Buffer, usize),
) -> io::Result<u64> {
    let mut total = 0u64;
    if first.len() > from {
        dst.write_all(&first[from..]).await?;
        activity.touch();
        total += (first.len() - from) as u64;
    }
    drop(first);
    let mut pipe: Option<Pipe> = None;
    'idle: loop {
        src.as_ref().readable().await?;
        if mode != Forward::Splice {
            let mut buf = Buffer::take();
            loop {
                buf.clear();
                let n = src.read_buf(&mut *buf).await?;
                if n == 0 {
                    break 'idle;
                }
                dst.write_all(&buf).await?;
                activity.touch();
                total += n as u64;
                if n < buf.capacity() {
                    // Short read: the socket is drained (tokio cleared its
                    // readiness); drop the buffer while idle.
                    continue 'idle;
                }
                if mode == Forward::Auto {
                    break;
                }
            }
        }
        // Bulk: splice until the socket would block.
        let pipe = match &mut pipe {
            Some(p) => p,
            None => pipe.insert(Pipe::new()?),
        };
        let burst = splice_burst(src.as_ref(), dst.as_ref(), pipe).await?;
        activity.touch();
        match burst {
            Burst::Drained(n) => total += n,
            Burst::Eof(n) => {
                total += n;
                break 'idle;
            }
        }
    }
    done[me].store(true, Ordering::Relaxed);
    if !closing(&done[1 - me], dst.as_ref()) {
        // Give the peer's own FIN, usually already on its way when one side
        // closes, the chance to arrive: tokio runs a yielded task again only
        // after its next look at I/O events.
        tokio::task::yield_now().await;
        if !closing(&done[1 - me], dst.as_ref()) {
            // Pass the half-close on; the other direction may still carry data.
            dst.shutdown().await?;
        }
    }
    Ok(total)
}

/// True when the other direction is over or about to be: it ended, or
/// `dst`'s peer has sent its FIN (so that direction reads its EOF next).
/// Then both sockets are closed together in a moment, and a `shutdown`
/// first would be a wasted syscall.
fn closing(other_done: &AtomicBool, dst: &TcpStream) -> bool {
    use futures_util::FutureExt;
    other_done.load(Ordering::Relaxed)
        || dst
            .ready(Interest::READABLE)
            .now_or_never()
            .is_some_and(|r| r.is_ok_and(|r| r.is_read_closed()))
}

enum Burst {
    /// The source would block; bytes moved.
    Drained(u64),
    /// The source reached EOF; bytes moved.
    Eof(u64),
}

/// Splices from `src` to `dst` through `pipe` until `src` would block or ends.
/// The pipe is empty again on return.
async fn splice_burst(src: &TcpStream, dst: &TcpStream, pipe: &Pipe) -> io::Result<Burst> {
    let mut total = 0u64;
    loop {
        src.readable().await?;
        let n = match src.try_io(Interest::READABLE, || {
            splice(src.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK)
        }) {
            Ok(0) => return Ok(Burst::Eof(total)),
            Ok(n) => n,
            // `try_io` cleared readiness: the next `readable()` waits.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Burst::Drained(total)),
            Err(e) => return Err(e),
        };
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(pipe.read.as_raw_fd(), dst.as_raw_fd(), left)
            }) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
    }
}

/// A 16 KiB vector from a small per-thread free list. A connection takes one
/// for its head and one per direction per burst; glibc's malloc of blocks
/// this size (beyond its per-thread cache) was 3% of a close-mode profile.
#[derive(Default)]
pub struct Buffer(Vec<u8>);

thread_local! {
    static FREE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers kept per thread: enough for the bursts in flight at once on one
/// thread, bounded so a spike does not pin memory.
const FREE_MAX: usize = 256;

impl Buffer {
    /// A 16 KiB (capacity) empty buffer.
    pub fn take() -> Buffer {
        let v = FREE
            .with(|f| f.borrow_mut().pop())
            .unwrap_or_else(|| Vec::with_capacity(BUF));
        Buffer(v)
    }
}

impl std::ops::Deref for Buffer {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let mut v = std::mem::take(&mut self.0);
        if v.capacity() == BUF {
            v.clear();
            // Ignore a thread being torn down: the buffer is simply freed.
            let _ = FREE.try_with(|f| {
                let mut f = f.borrow_mut();
                if f.len() < FREE_MAX {
                    f.push(v);
                }
            });
        }
    }
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid two-element array for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and ours.
        Ok(unsafe {
            Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            }
        })
    }
}

fn splice(from: i32, to: i32, len: usize) -> io::Result<usize> {
    // SAFETY: plain syscall on descriptors owned by the caller for the
    // duration of the call; null offsets mean "current position".
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A connected pair over loopback.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    /// client <-> [proxy_c | proxy_u] <-> server, forwarding in `mode`;
    /// sends `up` bytes up and `down` bytes down, each followed by a
    /// half-close, and checks both arrive whole and the byte counts.
    async fn round_trip(mode: Forward, up: usize, down: usize) {
        let (mut client, mut proxy_c) = pair().await;
        let (mut proxy_u, mut server) = pair().await;
        let fwd = tokio::spawn(async move {
            bidirectional(
                &mut proxy_c,
                &mut proxy_u,
                mode,
                (&Idle::new(None), None),
                Start::default(),
            )
            .await
        });
        let up_data: Vec<u8> = (0..up).map(|i| (i % 251) as u8).collect();
        let down_data: Vec<u8> = (0..down).map(|i| (i % 241) as u8).collect();
        let (ud, dd) = (up_data.clone(), down_data.clone());
        let srv = tokio::spawn(async move {
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            server.write_all(&dd).await.unwrap();
            server.shutdown().await.unwrap();
            got
        });
        client.write_all(&ud).await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert!(got == down_data, "{mode:?}: downstream bytes differ");
        assert!(
            srv.await.unwrap() == up_data,
            "{mode:?}: upstream bytes differ"
        );
        let (u, d) = fwd.await.unwrap().unwrap();
        assert_eq!((u, d), (up as u64, down as u64));
    }

    #[tokio::test]
    async fn every_mode_moves_small_and_bulk_data_and_passes_half_closes() {
        for mode in [Forward::Auto, Forward::Copy, Forward::Splice] {
            round_trip(mode, 0, 0).await;
            round_trip(mode, 100, 5000).await;
            // Exactly one buffer, then bulk (switches to splice in auto).
            round_trip(mode, BUF, 3 * CHUNK + 17).await;
            round_trip(mode, 1 << 20, 1 << 20).await;
        }
    }

    fn forward_in_background(
        mut c: TcpStream,
        mut u: TcpStream,
        start: Start,
    ) -> tokio::task::JoinHandle<io::Result<(u64, u64)>> {
        tokio::spawn(async move {
            let idle = Idle::new(None);
            bidirectional(&mut c, &mut u, Forward::Auto, (&idle, None), start).await
        })
    }

    #[tokio::test]
    async fn bytes_read_before_forwarding_go_first_and_a_passed_half_close_holds() {
        let (mut client, proxy_c) = pair().await;
        let (mut proxy_u, mut server) = pair().await;
        let mut to_client = Buffer::take();
        to_client.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let mut to_upstream = Buffer::take();
        to_upstream.extend_from_slice(b"xxbody");
        // The client already sent its FIN, and the backend was told.
        proxy_u.shutdown().await.unwrap();
        let start = Start {
            to_client,
            to_upstream,
            to_upstream_from: 2,
            client_done: true,
        };
        let fwd = forward_in_background(proxy_c, proxy_u, start);
        server.write_all(b"rest").await.unwrap();
        server.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty(), "a done client sends nothing more: {got:?}");
        let mut down = Vec::new();
        client.read_to_end(&mut down).await.unwrap();
        assert_eq!(down, b"HTTP/1.1 200 OK\r\nrest");
        let (up, down) = fwd.await.unwrap().unwrap();
        assert_eq!((up, down), (0, 21));

        // Not done: the pending client bytes go first, from their offset.
        let (mut client, proxy_c) = pair().await;
        let (proxy_u, mut server) = pair().await;
        let mut to_upstream = Buffer::take();
        to_upstream.extend_from_slice(b"xxbody");
        let start = Start {
            to_upstream,
            to_upstream_from: 2,
            ..Start::default()
        };
        let fwd = forward_in_background(proxy_c, proxy_u, start);
        client.write_all(b"+more").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"body+more");
        server.shutdown().await.unwrap();
        let mut down = Vec::new();
        client.read_to_end(&mut down).await.unwrap();
        assert_eq!(fwd.await.unwrap().unwrap(), (9, 0));
    }
}
