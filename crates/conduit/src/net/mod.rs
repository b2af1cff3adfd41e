//! Client and server over sockets: TCP (IPv4, IPv6) and Unix stream
//! sockets carrying conduit's typed channels, typed datagrams over UDP,
//! and multicast.
//!
//! An endpoint is an address ([`Addr`]: `tcp:HOST:PORT`, `unix:PATH`). A
//! server binds a [`Listener`] (with a backlog) and accepts; a client
//! [`connect`]s within a timeout. Each accepted client is a [`Conn`]: a
//! typed [`Sender`] and [`Receiver`] with the same capacity, timeout and
//! disconnection rules as every conduit channel — `bounded(n)` exact over
//! TCP too, by credits carried in band (see `docs/WIRE.md`), rendezvous,
//! `Disconnected` when the peer dies. [`serve_iterative`],
//! [`serve_threads`] and [`serve_processes`] run a handler as the notes'
//! three kinds of server. [`udp`] has datagrams and multicast.
//!
//! ```no_run
//! use conduit::net::{self, Listener};
//!
//! let listener = Listener::bind("tcp:127.0.0.1:7000")?;
//! std::thread::spawn(move || {
//!     net::serve_threads(&listener, |conn: net::Conn<String, String>| {
//!         for line in conn.rx.iter() {
//!             if conn.tx.send(line).is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! });
//! let client = net::connect::<String, String>("tcp:127.0.0.1:7000")?;
//! client.tx.send("hello".into()).unwrap();
//! assert_eq!(client.rx.recv().unwrap(), "hello");
//! # Ok::<(), conduit::Error>(())
//! ```
//!
//! What crosses a network and what does not: messages do; rights
//! (channel ends, segments) and out-of-line payloads do not — sending one
//! is [`Error::Unsupported`] at the send, nothing lost. A message whose
//! `send` returned is in the kernel's hands: on loopback already in the
//! receiver's socket buffer unless that is full. The receiver taking a
//! message is what returns its credit.

mod server;
pub mod udp;

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use server::{serve_iterative, serve_processes, serve_threads};

use crate::channel::ctl::{Capacity, Ctl};
use crate::channel::transport::stream::{self, HELLO_LEN, Hello, Role, StreamRx, StreamTx};
use crate::channel::transport::{RxLink, TxLink};
use crate::channel::{Receiver, Sender};
use crate::error::Error;
use crate::sys::Deadline;
use crate::sys::net::{self as sys, PeerOf, Place};
use crate::sys::pipe::{pipe, read_some, write_whole};
use crate::sys::socket::{self, Credentials};

/// A stream endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// TCP: an IPv4 or IPv6 address and port.
    Tcp(SocketAddr),
    /// A Unix stream socket's path.
    Unix(PathBuf),
}

impl Addr {
    fn place(&self) -> Place<'_> {
        match self {
            Addr::Tcp(a) => Place::Tcp(*a),
            Addr::Unix(p) => Place::Unix(p),
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "tcp:{a}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Resolve `HOST:PORT` (a name, an IPv4 address or a bracketed IPv6 one)
/// to its first address.
pub(crate) fn resolve(hostport: &str) -> Result<SocketAddr, Error> {
    hostport
        .to_socket_addrs()
        .map_err(|e| Error::Io(io::Error::new(io::ErrorKind::InvalidInput, format!("{hostport:?}: {e}"))))?
        .next()
        .ok_or_else(|| Error::Io(io::Error::new(io::ErrorKind::InvalidInput, format!("{hostport:?}: no address"))))
}

impl FromStr for Addr {
    type Err = Error;

    /// `tcp:HOST:PORT`, `unix:PATH`, or a plain `HOST:PORT` (TCP).
    fn from_str(s: &str) -> Result<Addr, Error> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(Error::Io(io::Error::new(io::ErrorKind::InvalidInput, "unix: needs a path")));
            }
            return Ok(Addr::Unix(PathBuf::from(path)));
        }
        Ok(Addr::Tcp(resolve(s.strip_prefix("tcp:").unwrap_or(s))?))
    }
}

/// Anything that names an endpoint.
pub trait ToAddr {
    /// The endpoint.
    fn to_addr(&self) -> Result<Addr, Error>;
}

impl ToAddr for Addr {
    fn to_addr(&self) -> Result<Addr, Error> {
        Ok(self.clone())
    }
}

impl ToAddr for &Addr {
    fn to_addr(&self) -> Result<Addr, Error> {
        Ok((*self).clone())
    }
}

impl ToAddr for str {
    fn to_addr(&self) -> Result<Addr, Error> {
        self.parse()
    }
}

impl ToAddr for &str {
    fn to_addr(&self) -> Result<Addr, Error> {
        self.parse()
    }
}

impl ToAddr for String {
    fn to_addr(&self) -> Result<Addr, Error> {
        self.parse()
    }
}

impl ToAddr for SocketAddr {
    fn to_addr(&self) -> Result<Addr, Error> {
        Ok(Addr::Tcp(*self))
    }
}

/// The peer of a connection, as the kernel knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A TCP peer: its address and port.
    Addr(SocketAddr),
    /// A Unix-socket peer: the process that connected or accepted
    /// (`SO_PEERCRED`).
    Process(Credentials),
}

impl From<PeerOf> for Peer {
    fn from(p: PeerOf) -> Peer {
        match p {
            PeerOf::Addr(a) => Peer::Addr(a),
            PeerOf::Process(c) => Peer::Process(c),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Addr(a) => write!(f, "{a}"),
            Peer::Process(c) => write!(f, "pid {} uid {} gid {}", c.pid, c.uid, c.gid),
        }
    }
}

/// One connection: what this side sends (`S`) and receives (`R`).
#[derive(Debug)]
pub struct Conn<S, R> {
    /// Sends to the peer.
    pub tx: Sender<S>,
    /// Receives from the peer.
    pub rx: Receiver<R>,
    /// Who the peer is.
    pub peer: Peer,
}

fn capacity(c: Option<usize>) -> Capacity {
    match c {
        None => Capacity::Unbounded,
        Some(0) => Capacity::Zero,
        Some(n) => Capacity::Bounded(n as u64),
    }
}

/// The largest message a receiver of a network connection takes unless
/// told otherwise (`Listener::set_max_message`, `Connect::max_message`,
/// `Receiver::set_max_message`): a peer on the network may be anyone, and
/// a frame is kept whole until it is decoded.
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// Make the pair from two greeted connections.
fn pair<S, R>(
    send: OwnedFd,
    send_cap: Capacity,
    recv: OwnedFd,
    recv_cap: Capacity,
    max_message: usize,
) -> Result<Conn<S, R>, Error> {
    let peer = sys::peer(recv.as_fd())?.into();
    let tx = Sender::from_link(TxLink::Stream(StreamTx::new(send)), Ctl::create(send_cap)?);
    let rx = Receiver::from_link(RxLink::Stream(StreamRx::new(recv)), Ctl::create(recv_cap)?);
    rx.set_max_message(max_message);
    Ok(Conn { tx, rx, peer })
}

/// Write a greeting to a fresh socket (it has room for 40 bytes; waits
/// until `wait` at most otherwise).
fn greet(fd: &OwnedFd, hello: &Hello, wait: Deadline) -> Result<(), Error> {
    let bytes = hello.encode();
    let mut sent = 0;
    while sent < bytes.len() {
        match sys::send_some(fd.as_fd(), &bytes[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !socket::poll_out(fd.as_fd(), wait)? {
                    return Err(Error::Io(io::ErrorKind::TimedOut.into()));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// How a client connects: see [`Connect::new`].
#[derive(Clone, Debug)]
pub struct Connect {
    addr: Result<Addr, String>,
    capacity: Option<usize>,
    timeout: Duration,
    max_message: usize,
}

impl Connect {
    /// Connect to `addr`; this side receives on an unbounded channel and
    /// gives up after 10 s, unless told otherwise.
    pub fn new(addr: impl ToAddr) -> Connect {
        Connect {
            addr: addr.to_addr().map_err(|e| e.to_string()),
            capacity: None,
            timeout: Duration::from_secs(10),
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }

    /// This side's receiver holds at most `n` messages (`0`: rendezvous);
    /// the peer's sends wait for room.
    pub fn capacity(mut self, n: usize) -> Connect {
        self.capacity = Some(n);
        self
    }

    /// This side's receiver refuses messages over `bytes` (default
    /// [`DEFAULT_MAX_MESSAGE`]), by their declared size, before reading
    /// them.
    pub fn max_message(mut self, bytes: usize) -> Connect {
        self.max_message = bytes;
        self
    }

    /// Give up connecting (and waiting for the server to accept) after
    /// `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Connect {
        self.timeout = timeout;
        self
    }

    /// Connect: two connections (one per direction), greeted, paired by a
    /// random cookie; returns when the server has accepted.
    pub fn open<S, R>(self) -> Result<Conn<S, R>, Error>
    where
        S: Serialize,
        R: DeserializeOwned,
    {
        let addr = self.addr.map_err(|e| Error::Io(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        let wait = Deadline::Until(Instant::now() + self.timeout);
        let mut cookie = [0u8; 16];
        rustix::rand::getrandom(&mut cookie, rustix::rand::GetRandomFlags::empty())?;
        let mine = capacity(self.capacity);
        let up = sys::connect(addr.place(), wait)?;
        sys::set_nodelay(up.as_fd())?;
        greet(&up, &Hello { role: Role::ClientSends, capacity: Capacity::Unbounded, cookie }, wait)?;
        let down = sys::connect(addr.place(), wait)?;
        sys::set_nodelay(down.as_fd())?;
        greet(&down, &Hello { role: Role::ServerSends, capacity: mine, cookie }, wait)?;
        // The server's welcome: its receiver's capacity.
        let mut got = Vec::with_capacity(HELLO_LEN);
        while got.len() < HELLO_LEN {
            let mut buf = [0u8; HELLO_LEN];
            match read_some(up.as_fd(), &mut buf[..HELLO_LEN - got.len()]) {
                Ok(0) => return Err(Error::Handshake("the server closed the connection before accepting it")),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !socket::poll(&[up.as_fd()], wait)?[0].readable && wait.expired() {
                        return Err(Error::Io(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the server did not accept the connection in time",
                        )));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let welcome = stream::parse_hello(&got).map_err(Error::Handshake)?;
        if welcome.role != Role::Welcome || welcome.cookie != cookie {
            return Err(Error::Handshake("the server's welcome does not answer this connection"));
        }
        pair(up, welcome.capacity, down, mine, self.max_message)
    }
}

/// Connect to `addr` (`tcp:HOST:PORT`, `unix:PATH`) with the defaults of
/// [`Connect`]: `S` is what this side sends, `R` what it receives.
pub fn connect<S: Serialize, R: DeserializeOwned>(addr: impl ToAddr) -> Result<Conn<S, R>, Error> {
    Connect::new(addr).open()
}

/// A plain byte stream — no greeting, no frames: what the notes'
/// programs (and any `nc`, Python or C client) speak. `Read` and `Write`
/// block.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection.
    Tcp(std::net::TcpStream),
    /// A Unix stream connection.
    Unix(std::os::unix::net::UnixStream),
}

impl Stream {
    fn from_fd(fd: OwnedFd) -> Result<Stream, Error> {
        sys::set_blocking(fd.as_fd())?;
        Ok(match sys::local_addr(fd.as_fd())? {
            Some(_) => Stream::Tcp(fd.into()),
            None => Stream::Unix(fd.into()),
        })
    }

    /// The peer, as the kernel knows it.
    pub fn peer(&self) -> Result<Peer, Error> {
        let fd = match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        };
        Ok(sys::peer(fd)?.into())
    }

    /// Say "no more from me" (the peer reads the end of the stream) and
    /// keep reading.
    pub fn shutdown_write(&self) -> Result<(), Error> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write)?,
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write)?,
        }
        Ok(())
    }

    /// Give up a blocking read after `timeout` (`None`: never).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), Error> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(timeout)?,
            Stream::Unix(s) => s.set_read_timeout(timeout)?,
        }
        Ok(())
    }
}

impl io::Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl io::Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Connect a plain byte stream to `addr`, within `timeout`.
pub fn connect_stream(addr: impl ToAddr, timeout: Duration) -> Result<Stream, Error> {
    let addr = addr.to_addr()?;
    let fd = sys::connect(addr.place(), Deadline::Until(Instant::now() + timeout))?;
    sys::set_nodelay(fd.as_fd())?;
    Stream::from_fd(fd)
}

/// How long an accepted connection may take to greet before it is dropped
/// (a half-open or silent client costs nothing longer).
pub const GREETING_TIME: Duration = Duration::from_secs(5);
/// Connections a listener holds while they greet, at most (the oldest
/// goes first).
pub const PENDING_MOST: usize = 1024;

/// A server's listening socket.
#[derive(Debug)]
pub struct Listener {
    sock: OwnedFd,
    addr: Addr,
    capacity: Option<usize>,
    max_message: usize,
    pending: Mutex<Pending>,
    stop_r: OwnedFd,
    stop_w: std::sync::Arc<OwnedFd>,
    /// Remove the socket file when dropped (Unix).
    unlink: bool,
}

#[derive(Debug, Default)]
struct Pending {
    /// Accepted, greeting not yet whole.
    greeting: Vec<(OwnedFd, Vec<u8>, Instant)>,
    /// Greeted, waiting for the other connection of the same client.
    halves: Vec<(OwnedFd, Hello, Instant)>,
    /// Connections dropped for a bad greeting or for taking too long.
    refused: u64,
}

/// Stops a listener's `accept` (and the servers running on it) from
/// another thread.
#[derive(Clone, Debug)]
pub struct Stopper(std::sync::Arc<OwnedFd>);

impl Stopper {
    /// Make every `accept` on the listener return [`Error::Shutdown`],
    /// now and from now on.
    pub fn stop(&self) {
        let _ = write_whole(self.0.as_fd(), &[1]);
    }
}

impl Listener {
    /// Listen at `addr` with a backlog of 128.
    pub fn bind(addr: impl ToAddr) -> Result<Listener, Error> {
        Listener::bind_with_backlog(addr, 128)
    }

    /// Listen at `addr`; the kernel queues up to `backlog` connections
    /// not yet accepted.
    pub fn bind_with_backlog(addr: impl ToAddr, backlog: u32) -> Result<Listener, Error> {
        let addr = addr.to_addr()?;
        let sock = sys::listen(addr.place(), backlog.min(i32::MAX as u32) as i32)?;
        let addr = match addr {
            Addr::Tcp(_) => Addr::Tcp(sys::local_addr(sock.as_fd())?.expect("a TCP socket has an address")),
            unix => unix,
        };
        let (stop_r, stop_w) = pipe()?;
        let unlink = matches!(addr, Addr::Unix(_));
        Ok(Listener {
            sock,
            addr,
            capacity: None,
            max_message: DEFAULT_MAX_MESSAGE,
            pending: Mutex::default(),
            stop_r,
            stop_w: std::sync::Arc::new(stop_w),
            unlink,
        })
    }

    /// The address it listens at (with the port the kernel chose for
    /// `tcp:HOST:0`).
    pub fn local_addr(&self) -> &Addr {
        &self.addr
    }

    /// The capacity of the receiver of each accepted connection: `None`
    /// (the default) unbounded, `Some(0)` rendezvous, `Some(n)` bounded.
    pub fn set_capacity(&mut self, capacity: Option<usize>) {
        self.capacity = capacity;
    }

    /// The receiver of each accepted connection refuses messages over
    /// `bytes` (default [`DEFAULT_MAX_MESSAGE`]), by their declared size,
    /// before reading them.
    pub fn set_max_message(&mut self, bytes: usize) {
        self.max_message = bytes;
    }

    /// A handle that stops this listener from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.stop_w.clone())
    }

    /// Connections dropped so far for a bad greeting or for taking longer
    /// than [`GREETING_TIME`] (port scanners, half-open or hostile clients).
    pub fn refused(&self) -> u64 {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).refused
    }

    /// Wait for the next client and hand over its connection as a plain
    /// byte stream, with no greeting (for plain TCP clients: `nc`, a C or
    /// Python program). A listener serves plain streams or conduit
    /// connections, not both.
    pub fn accept_stream(&self) -> Result<(Stream, Peer), Error> {
        loop {
            let ready = socket::poll(&[self.sock.as_fd(), self.stop_r.as_fd()], Deadline::Forever)?;
            if ready[1].readable {
                return Err(Error::Shutdown);
            }
            if let Some(fd) = sys::accept(self.sock.as_fd())? {
                let _ = sys::set_nodelay(fd.as_fd());
                let peer = match sys::peer(fd.as_fd()) {
                    Ok(p) => p.into(),
                    // Gone already.
                    Err(_) => continue,
                };
                return Ok((Stream::from_fd(fd)?, peer));
            }
        }
    }

    /// Wait for the next client. Many clients may be connecting at once;
    /// one slow or silent client delays nobody.
    pub fn accept<S: Serialize, R: DeserializeOwned>(&self) -> Result<Conn<S, R>, Error> {
        loop {
            if let Some(c) = self.accept_until(Deadline::Forever)? {
                return Ok(c);
            }
        }
    }

    /// Like [`accept`](Self::accept), waiting `timeout` at most.
    pub fn accept_timeout<S: Serialize, R: DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<Option<Conn<S, R>>, Error> {
        self.accept_until(Deadline::Until(Instant::now() + timeout))
    }

    fn accept_until<S, R>(&self, wait: Deadline) -> Result<Option<Conn<S, R>>, Error> {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            // A client whose two connections are both in already.
            if let Some(conn) = self.read_greetings(&mut p)? {
                return Ok(Some(conn));
            }
            let now = Instant::now();
            let before = p.greeting.len() + p.halves.len();
            p.greeting.retain(|(_, _, t)| now.duration_since(*t) < GREETING_TIME);
            // A client's two connections, both greeted, wait for their
            // turn as long as it takes (the client's own timeout bounds
            // that); a half alone goes after the greeting time.
            let paired = |h: &Hello, all: &[(OwnedFd, Hello, Instant)]| {
                all.iter().any(|o| o.1.cookie == h.cookie && o.1.role != h.role)
            };
            let keep: Vec<bool> = p
                .halves
                .iter()
                .map(|(_, h, t)| paired(h, &p.halves) || now.duration_since(*t) < GREETING_TIME)
                .collect();
            let mut it = keep.into_iter();
            p.halves.retain(|_| it.next().unwrap_or(true));
            p.refused += (before - p.greeting.len() - p.halves.len()) as u64;
            // Wait for a connection, a greeting, the stopper or the time.
            let lonely = p.halves.iter().filter(|(_, h, _)| !paired(h, &p.halves)).map(|h| h.2);
            let oldest = p.greeting.iter().map(|g| g.2).chain(lonely).min();
            let expiry = oldest.map(|t| t + GREETING_TIME);
            let until = match (wait, expiry) {
                (Deadline::Until(a), Some(b)) => Deadline::Until(a.min(b)),
                (Deadline::Forever, Some(b)) => Deadline::Until(b),
                (w, _) => w,
            };
            let mut fds = vec![self.sock.as_fd(), self.stop_r.as_fd()];
            fds.extend(p.greeting.iter().map(|g| g.0.as_fd()));
            let ready = socket::poll(&fds, until)?;
            if ready[1].readable {
                return Err(Error::Shutdown);
            }
            if ready[0].readable {
                while let Some(fd) = sys::accept(self.sock.as_fd())? {
                    if p.greeting.len() >= PENDING_MOST {
                        p.greeting.remove(0);
                        p.refused += 1;
                    }
                    let _ = sys::set_nodelay(fd.as_fd());
                    p.greeting.push((fd, Vec::with_capacity(HELLO_LEN), Instant::now()));
                }
            }
            if let Some(conn) = self.read_greetings(&mut p)? {
                return Ok(Some(conn));
            }
            if wait == Deadline::Never || wait.expired() {
                return Ok(None);
            }
        }
    }

    /// Read what the greeting connections sent; pair a client's two.
    fn read_greetings<S, R>(&self, p: &mut Pending) -> Result<Option<Conn<S, R>>, Error> {
        let mut i = 0;
        while i < p.greeting.len() {
            let (fd, buf, _) = &mut p.greeting[i];
            let mut chunk = [0u8; HELLO_LEN];
            let want = HELLO_LEN - buf.len();
            match read_some(fd.as_fd(), &mut chunk[..want]) {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed or failed before greeting.
                _ => {
                    p.greeting.swap_remove(i);
                    p.refused += 1;
                    continue;
                }
            }
            if buf.len() < HELLO_LEN {
                i += 1;
                continue;
            }
            let (fd, buf, since) = p.greeting.swap_remove(i);
            match stream::parse_hello(&buf) {
                Ok(h) if h.role != Role::Welcome => {
                    if p.halves.len() >= 2 * PENDING_MOST {
                        p.halves.remove(0);
                        p.refused += 1;
                    }
                    p.halves.push((fd, h, since))
                }
                _ => p.refused += 1,
            }
        }
        // A client's two connections: the first carries its messages, the
        // second ours.
        let found = p.halves.iter().enumerate().find_map(|(k, h)| {
            let up = p.halves.iter().position(|u| u.1.role == Role::ClientSends && u.1.cookie == h.1.cookie);
            if h.1.role == Role::ServerSends { up.map(|u| (u, k)) } else { None }
        });
        let Some((up, down)) = found else { return Ok(None) };
        // The later index first, so that the other stays where it is.
        let (first, second) = if up > down { (up, down) } else { (down, up) };
        let a = p.halves.swap_remove(first);
        let b = p.halves.swap_remove(second);
        let ((up_fd, _, _), (down_fd, down_hello, _)) = if a.1.role == Role::ClientSends { (a, b) } else { (b, a) };
        let mine = capacity(self.capacity);
        let welcome = Hello { role: Role::Welcome, capacity: mine, cookie: down_hello.cookie };
        if greet(&up_fd, &welcome, Deadline::Never).is_err() {
            p.refused += 1;
            return Ok(None);
        }
        match pair(down_fd, down_hello.capacity, up_fd, mine, self.max_message) {
            Ok(c) => Ok(Some(c)),
            // The client went away meanwhile.
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::NotConnected => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if self.unlink
            && let Addr::Unix(path) = &self.addr
        {
            let _ = std::fs::remove_file(path);
        }
    }
}
