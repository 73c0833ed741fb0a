//! The accepted client socket, registered with the reactor only when a wait
//! needs it.
//!
//! Registering a socket with tokio costs an `epoll_ctl(ADD)` when it is made
//! and an `epoll_ctl(DEL)` when it is dropped, plus the reactor's own entry.
//! A client that sends its whole request with the handshake, reads a small
//! response and is closed (a connection per request) never has to be waited
//! for: its request is already there when it is accepted, and the response
//! fits the socket buffer. Measured here in HTTP mode with
//! `Connection: close` (`strace -c`), those two calls were 2 of Switchyard's
//! 9.5 system calls per request, against 0.05 for HAProxy, which reads and
//! writes a new connection before it ever asks epoll about it.
//!
//! So [`ClientStream`] starts as a bare non-blocking socket: reads, writes
//! and shutdowns are tried at once, and only an operation that would block
//! registers the socket (once, for the rest of its life) and waits as tokio
//! does. A connection that never waits is closed by the drop without any
//! epoll call.
//!
//! Bare operations spend tokio's cooperative budget as registered ones do:
//! a client that keeps both directions busy (pipelined requests answered by
//! Switchyard itself, say) never meets `WouldBlock`, and without the budget
//! its task would never yield its thread to the other connections.

use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A client connection: a bare socket until an operation would block, then
/// a tokio `TcpStream`.
#[derive(Debug)]
pub struct ClientStream {
    state: State,
}

#[derive(Debug)]
enum State {
    /// Non-blocking and unknown to the reactor.
    Bare(std::net::TcpStream),
    /// Registered.
    Waiting(TcpStream),
    /// Registration failed (the error was returned); nothing is left.
    Gone,
}

impl ClientStream {
    /// Wraps a socket accepted non-blocking.
    pub fn new(socket: std::net::TcpStream) -> ClientStream {
        ClientStream {
            state: State::Bare(socket),
        }
    }

    /// The socket as a tokio stream, registered now if it was not yet.
    pub fn into_tokio(self) -> io::Result<TcpStream> {
        match self.state {
            State::Bare(s) => TcpStream::from_std(s),
            State::Waiting(s) => Ok(s),
            State::Gone => Err(gone()),
        }
    }

    /// Whether the reactor knows the socket.
    #[cfg(test)]
    fn is_registered(&self) -> bool {
        matches!(self.state, State::Waiting(_))
    }

    /// The registered stream, registering it first if needed.
    fn waiting(&mut self) -> io::Result<&mut TcpStream> {
        if let State::Bare(_) = self.state {
            let State::Bare(s) = std::mem::replace(&mut self.state, State::Gone) else {
                unreachable!("checked above")
            };
            self.state = State::Waiting(TcpStream::from_std(s)?);
        }
        match &mut self.state {
            State::Waiting(s) => Ok(s),
            _ => Err(gone()),
        }
    }

    /// The bare socket, while there is one.
    fn bare(&self) -> Option<&std::net::TcpStream> {
        match &self.state {
            State::Bare(s) => Some(s),
            _ => None,
        }
    }
}

fn gone() -> io::Error {
    io::Error::other("the client socket could not be registered with the reactor")
}

/// The outcome of an operation tried on the bare socket: done, or it would
/// block (then the caller registers and waits).
fn tried<T>(r: io::Result<T>) -> Option<io::Result<T>> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        r => Some(r),
    }
}

/// `recv` into the unfilled part of `buf` (which may be uninitialised, as
/// the request path's buffers are).
fn recv(s: &std::net::TcpStream, buf: &mut ReadBuf<'_>) -> io::Result<()> {
    loop {
        // SAFETY: `recv` only writes to the slice it is given, and the
        // bytes it reports are initialised before `assume_init` says so.
        let unfilled = unsafe { buf.unfilled_mut() };
        let n = unsafe {
            libc::recv(
                s.as_raw_fd(),
                unfilled.as_mut_ptr().cast(),
                unfilled.len(),
                0,
            )
        };
        if n >= 0 {
            let n = n as usize;
            // SAFETY: the kernel wrote `n` bytes at the start of `unfilled`.
            unsafe { buf.assume_init(n) };
            buf.advance(n);
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl ClientStream {
    /// One operation: tried on the bare socket (spending tokio's budget as
    /// a registered one does), or, once it would block or the socket is
    /// registered already, `waiting` on the tokio stream. `arg` is what
    /// both ways need mutably (a read's buffer).
    fn poll_op<A: ?Sized, T>(
        &mut self,
        cx: &mut Context<'_>,
        arg: &mut A,
        bare: impl FnOnce(&std::net::TcpStream, &mut A) -> io::Result<T>,
        waiting: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>, &mut A) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if let Some(s) = self.bare() {
            let coop = ready!(tokio::task::coop::poll_proceed(cx));
            if let Some(r) = tried(bare(s, arg)) {
                coop.made_progress();
                return Poll::Ready(r);
            }
        }
        waiting(Pin::new(self.waiting()?), cx, arg)
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().poll_op(
            cx,
            buf,
            |s, buf| recv(s, buf),
            |s, cx, buf| s.poll_read(cx, buf),
        )
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        // `Write for &TcpStream` sends with MSG_NOSIGNAL.
        self.get_mut().poll_op(
            cx,
            &mut (),
            |mut s, _| s.write(data),
            |s, cx, _| s.poll_write(cx, data),
        )
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_op(
            cx,
            &mut (),
            |mut s, _| s.write_vectored(bufs),
            |s, cx, _| s.poll_write_vectored(cx, bufs),
        )
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Bare(_) => Poll::Ready(Ok(())),
            State::Waiting(s) => Pin::new(s).poll_flush(cx),
            State::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Bare(s) => Poll::Ready(s.shutdown(Shutdown::Write)),
            State::Waiting(s) => Pin::new(s).poll_shutdown(cx),
            State::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl crate::http::ClientEnd for ClientStream {
    fn drop_ends_cleanly(&self) -> bool {
        // `close` sends the FIN after what is queued, as `shutdown` would;
        // with unread bytes left, both end in a reset.
        true
    }

    fn abort(&mut self) {
        // A reset instead of a FIN.
        match &self.state {
            State::Bare(s) => {
                let _ = socket2::SockRef::from(s).set_linger(Some(std::time::Duration::ZERO));
            }
            State::Waiting(s) => {
                let _ = s.set_zero_linger();
            }
            State::Gone => {}
        }
    }
}

/// Accepts connections from a listener without registering them: each comes
/// non-blocking (`accept4` with `SOCK_NONBLOCK`, so no `fcntl` follows) and
/// bare.
pub struct Acceptor {
    listener: AsyncFd<std::net::TcpListener>,
}

impl Acceptor {
    /// Registers `listener` (non-blocking already) with the current runtime.
    pub fn new(listener: std::net::TcpListener) -> io::Result<Acceptor> {
        // SAFETY: the listener owns its descriptor and the `AsyncFd` owns
        // the listener, so the descriptor stays open and the same for the
        // registration's whole life.
        let listener =
            unsafe { AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE) }?;
        Ok(Acceptor { listener })
    }

    /// The next connection.
    pub async fn accept(&self) -> io::Result<(ClientStream, SocketAddr)> {
        loop {
            let mut ready = self.listener.readable().await?;
            match ready.try_io(|l| accept4(l.get_ref())) {
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(r) => return r,
                // Drained: wait for the next edge.
                Err(_) => continue,
            }
        }
    }
}

fn accept4(l: &std::net::TcpListener) -> io::Result<(ClientStream, SocketAddr)> {
    // SAFETY: `try_init` hands over zeroed storage of the right size and its
    // length; `accept4` writes at most that much and sets the length.
    let (fd, addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let fd = libc::accept4(
                l.as_raw_fd(),
                storage.cast(),
                len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            );
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(fd)
            }
        })
    }?;
    // SAFETY: `accept4` returned a new descriptor that nothing else owns.
    let socket = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let addr = addr
        .as_socket()
        .ok_or_else(|| io::Error::other("accepted a connection that is not TCP/IP"))?;
    Ok((ClientStream::new(socket), addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (Acceptor, std::net::SocketAddr) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        (Acceptor::new(l).unwrap(), addr)
    }

    /// Bytes that are there are read and answered without the reactor; a
    /// read that has to wait registers the socket and still gets its bytes.
    #[tokio::test]
    async fn waits_register_and_ready_operations_do_not() {
        let (acceptor, addr) = pair().await;
        let mut peer = tokio::net::TcpStream::connect(addr).await.unwrap();
        peer.write_all(b"hello").await.unwrap();
        let (mut client, from) = acceptor.accept().await.unwrap();
        assert_eq!(from, peer.local_addr().unwrap());
        // Let the bytes arrive before the first read.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let mut buf = [0u8; 16];
        let n = client.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        client.write_all(b"world").await.unwrap();
        assert!(!client.is_registered(), "nothing had to wait");
        let mut got = [0u8; 5];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"world");
        // Nothing there yet: the read waits, registered, for the late bytes.
        let late = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            peer.write_all(b"late").await.unwrap();
            peer
        });
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("the late bytes wake the read")
            .unwrap();
        assert_eq!(&buf[..n], b"late");
        assert!(client.is_registered());
        let mut peer = late.await.unwrap();
        client.shutdown().await.unwrap();
        assert_eq!(
            peer.read(&mut buf).await.unwrap(),
            0,
            "a FIN after shutdown"
        );
    }

    /// A write that fills the socket buffer registers and waits for the
    /// reader; every byte arrives.
    #[tokio::test]
    async fn a_write_larger_than_the_buffers_waits_for_the_reader() {
        let (acceptor, addr) = pair().await;
        let mut peer = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut client, _) = acceptor.accept().await.unwrap();
        let data: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&data).await.unwrap();
            client.shutdown().await.unwrap();
            client.is_registered()
        });
        let mut got = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            peer.read_to_end(&mut got),
        )
        .await
        .expect("the whole write arrives")
        .unwrap();
        assert!(got == expected, "{} bytes of {}", got.len(), expected.len());
        assert!(writer.await.unwrap(), "a full buffer made the write wait");
    }

    /// Reads that never wait still let the thread's other tasks run: the
    /// bare socket spends tokio's cooperative budget.
    #[tokio::test(flavor = "current_thread")]
    async fn reads_that_never_wait_still_yield_the_thread() {
        let (acceptor, addr) = pair().await;
        let mut peer = std::net::TcpStream::connect(addr).unwrap();
        let (mut client, _) = acceptor.accept().await.unwrap();
        std::io::Write::write_all(&mut peer, &[7u8; 64 * 1024]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let other_ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = other_ran.clone();
        tokio::spawn(async move { flag.store(true, std::sync::atomic::Ordering::Relaxed) });
        let mut byte = [0u8; 1];
        let mut seen_at = None;
        for i in 0..64 * 1024 {
            assert_eq!(client.read(&mut byte).await.unwrap(), 1);
            if seen_at.is_none() && other_ran.load(std::sync::atomic::Ordering::Relaxed) {
                seen_at = Some(i);
            }
        }
        assert!(!client.is_registered(), "every byte was there");
        let at = seen_at.expect("the other task ran during the reads");
        assert!(at < 1024, "the other task waited for {at} reads");
    }

    /// A client gone before its first read: the error or end comes at once.
    #[tokio::test]
    async fn a_reset_peer_is_an_error_or_an_end_not_a_wait() {
        let (acceptor, addr) = pair().await;
        let peer = std::net::TcpStream::connect(addr).unwrap();
        socket2::SockRef::from(&peer)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        let (mut client, _) = acceptor.accept().await.unwrap();
        drop(peer);
        let mut buf = [0u8; 8];
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("no hang");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    }
}
