//! Binary upgrade without dropping a connection: the running balancer hands
//! its listening sockets to a new one over a Unix socket (`SCM_RIGHTS`), as
//! HAProxy, Envoy and Pingora do.
//!
//! 1. Each running balancer listens on a handover socket,
//!    `$XDG_RUNTIME_DIR/switchyard-PORT.sock` (else `/tmp/...`).
//! 2. `switchyard serve --upgrade` (started by hand, or by the old process
//!    on SIGUSR2) connects and asks; the old process sends duplicates of
//!    its listening sockets (each serving thread's, and the admin API's).
//! 3. The new process starts its own workers, then serves from the same
//!    sockets: both accept from the same queues for a moment, so no
//!    connection waits in a queue nobody reads, which closing a listener
//!    and binding a new one would risk.
//! 4. Once it serves, the new process says so; the old one stops accepting,
//!    lets its open connections finish (the graceful timeout), stops its
//!    workers and exits. If the new process fails or gives up first, the
//!    old one never stopped serving and goes on.
//!
//! HTTP/3's UDP socket is handed over too. QUIC has no accept queue: both
//! processes read the one socket until the old one exits, so a datagram of
//! an old QUIC connection may reach the new process, which does not know
//! it. Such connections can end early (their clients reconnect); new ones
//! work from the start.
//!
//! Workers are rolled, not taken over: a worker dies with the process that
//! started it (`PR_SET_PDEATHSIG`), which is what keeps workers from
//! outliving a crashed balancer. The new process's workers listen on free
//! loopback ports, since the old workers still hold theirs.

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Most sockets one handover carries (serving threads plus the admin API).
const MAX_FDS: usize = 256;

/// The handover socket of the balancer listening on `port`.
pub fn socket_path(port: u16) -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    dir.join(format!("switchyard-{port}.sock"))
}

/// What a new process took over.
pub struct Inherited {
    /// One listening socket per serving thread of the old process.
    pub tcp: Vec<std::net::TcpListener>,
    /// The admin API's, if the old process had one.
    pub admin: Option<std::net::TcpListener>,
    /// HTTP/3's UDP socket, if the old process had one.
    pub udp: Option<std::net::UdpSocket>,
    conn: UnixStream,
}

impl std::fmt::Debug for Inherited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inherited")
            .field("tcp", &self.tcp.len())
            .field("admin", &self.admin.is_some())
            .field("udp", &self.udp.is_some())
            .finish()
    }
}

impl Inherited {
    /// Tells the old process that this one serves: it stops accepting and
    /// drains.
    pub fn serving(mut self) -> std::io::Result<()> {
        self.conn.write_all(b"SERVING\n")
    }
}

/// Asks the balancer behind `path` for its sockets.
pub fn take_over(path: &Path) -> std::io::Result<Inherited> {
    let mut conn = UnixStream::connect(path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "no running switchyard to take over at {} ({e})",
                path.display()
            ),
        )
    })?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    conn.write_all(b"UPGRADE\n")?;
    let mut header = [0u8; 64];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        &conn,
        &mut [IoSliceMut::new(&mut header)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(r) = msg {
            fds.extend(r);
        }
    }
    // "tcp=N admin=0|1 udp=0|1\n"
    let text = String::from_utf8_lossy(&header[..got.bytes]).into_owned();
    let field = |name: &str| {
        text.split_whitespace().find_map(|kv| {
            kv.strip_prefix(name)?
                .strip_prefix('=')?
                .parse::<usize>()
                .ok()
        })
    };
    let (Some(tcp), Some(admin), Some(udp)) = (field("tcp"), field("admin"), field("udp")) else {
        return Err(std::io::Error::other(format!(
            "the running switchyard sent no sockets ({})",
            text.trim()
        )));
    };
    if fds.len() != tcp + admin + udp || tcp == 0 {
        return Err(std::io::Error::other(format!(
            "the running switchyard announced {tcp} listeners, {admin} admin and {udp} UDP socket, sent {} descriptors",
            fds.len()
        )));
    }
    let mut fds = fds.into_iter();
    let tcp = fds
        .by_ref()
        .take(tcp)
        .map(std::net::TcpListener::from)
        .collect();
    let admin = (admin == 1)
        .then(|| fds.next().map(std::net::TcpListener::from))
        .flatten();
    let udp = fds.next().map(std::net::UdpSocket::from);
    Ok(Inherited {
        tcp,
        admin,
        udp,
        conn,
    })
}

/// The old process's side: serves the handover socket until a new process
/// took over (then calls `on_taken_over`) or this guard is dropped.
pub struct Handover {
    path: PathBuf,
    ino: u64,
    /// This process's copies of the sockets a successor takes; `None`
    /// once withdrawn.
    fds: Arc<Mutex<Offered>>,
}

/// The copies offered, and whether they were withdrawn.
struct Offered {
    fds: Option<Fds>,
    withdrawn: bool,
}

/// Copies of the listening sockets, for a successor.
struct Fds {
    tcp: Vec<OwnedFd>,
    admin: Option<OwnedFd>,
    udp: Option<OwnedFd>,
}

impl Handover {
    /// Closes this process's copies of the listening sockets and the
    /// handover socket: a stopping balancer then refuses new connections at
    /// once. While a copy stayed open the kernel went on queueing
    /// connections that nobody would accept, until the process exited and
    /// reset them. After a takeover the successor holds its own copies.
    pub fn withdraw(&self) {
        let mut offered = self.fds.lock().unwrap_or_else(|e| e.into_inner());
        offered.fds = None;
        offered.withdrawn = true;
        drop(offered);
        self.remove_file();
    }

    fn remove_file(&self) {
        // Only our own file: after an upgrade, the path is the new
        // process's.
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        self.remove_file();
    }
}

/// Starts serving `path` with duplicates of `tcp` (and `admin`). A stale
/// file (nobody listening) is replaced; a live one is another balancer's,
/// which is an error unless `replace` (a process that just took over from
/// it).
pub fn offer(
    path: &Path,
    tcp: Vec<OwnedFd>,
    admin: Option<OwnedFd>,
    udp: Option<OwnedFd>,
    replace: bool,
    wait_for_serving: Duration,
    on_taken_over: impl Fn() + Send + 'static,
) -> std::io::Result<Handover> {
    if path.exists() {
        if !replace && UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{} belongs to a running switchyard (upgrade it with `switchyard serve --upgrade`)",
                    path.display()
                ),
            ));
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path)?;
    let ino = std::fs::metadata(path)?.ino();
    let shown = path.to_path_buf();
    let fds = Arc::new(Mutex::new(Offered {
        fds: Some(Fds { tcp, admin, udp }),
        withdrawn: false,
    }));
    let offered = fds.clone();
    std::thread::Builder::new()
        .name("switchyard-handover".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                // Out of the lock for the handover (it waits for the new
                // process), put back if it fails and nothing withdrew them.
                let taken = offered.lock().unwrap_or_else(|e| e.into_inner()).fds.take();
                let Some(f) = taken else {
                    tracing::warn!("upgrade refused: this switchyard is stopping");
                    continue;
                };
                match hand_over(
                    conn,
                    &f.tcp,
                    f.admin.as_ref(),
                    f.udp.as_ref(),
                    wait_for_serving,
                ) {
                    Ok(()) => {
                        tracing::info!(
                            socket = %shown.display(),
                            "a new switchyard took over the listening sockets and serves; draining"
                        );
                        drop(f);
                        on_taken_over();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(
                            error = %e,
                            "upgrade abandoned; this process goes on serving"
                        );
                        let mut o = offered.lock().unwrap_or_else(|e| e.into_inner());
                        if !o.withdrawn {
                            o.fds = Some(f);
                        }
                    }
                }
            }
        })?;
    Ok(Handover {
        path: path.to_path_buf(),
        ino,
        fds,
    })
}

fn hand_over(
    conn: UnixStream,
    tcp: &[OwnedFd],
    admin: Option<&OwnedFd>,
    udp: Option<&OwnedFd>,
    wait_for_serving: Duration,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line.trim() != "UPGRADE" {
        return Err(std::io::Error::other(format!(
            "unknown request {:?}",
            line.trim()
        )));
    }
    let header = format!(
        "tcp={} admin={} udp={}\n",
        tcp.len(),
        admin.is_some() as u8,
        udp.is_some() as u8
    );
    let fds: Vec<_> = tcp
        .iter()
        .chain(admin)
        .chain(udp)
        .map(|f| f.as_fd())
        .collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(std::io::Error::other("too many sockets for one handover"));
    }
    rustix::net::sendmsg(
        &conn,
        &[IoSlice::new(header.as_bytes())],
        &mut control,
        SendFlags::empty(),
    )?;
    // The new process starts its workers before it serves.
    conn.set_read_timeout(Some(wait_for_serving))?;
    line.clear();
    reader.read_line(&mut line)?;
    match line.trim() {
        "SERVING" => Ok(()),
        "" => Err(std::io::Error::other(
            "the new process went away before it served",
        )),
        other => Err(std::io::Error::other(format!(
            "the new process said {other:?}"
        ))),
    }
}
