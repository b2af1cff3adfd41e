//! The server's side: listen, accept many clients' greetings at once,
//! pair each client's two connections, stop cleanly.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::connect::{capacity, greet, pair};
use super::{Addr, Conn, DEFAULT_MAX_MESSAGE, Peer, Stream, ToAddr};
use crate::channel::transport::stream::{self, HELLO_LEN, Hello, Role};
use crate::error::Error;
use crate::sys::Deadline;
use crate::sys::net as sys;
use crate::sys::pipe::{pipe, read_some, write_whole};
use crate::sys::socket;

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
    /// Connections dropped for a bad greeting or for taking too long (not
    /// under `pending`: `accept` holds that while it waits).
    refused: AtomicU64,
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
            refused: AtomicU64::new(0),
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
        self.refused.load(Relaxed)
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
            self.refused.fetch_add((before - p.greeting.len() - p.halves.len()) as u64, Relaxed);
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
                        self.refused.fetch_add(1, Relaxed);
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
                    self.refused.fetch_add(1, Relaxed);
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
                        self.refused.fetch_add(1, Relaxed);
                    }
                    p.halves.push((fd, h, since))
                }
                _ => {
                    self.refused.fetch_add(1, Relaxed);
                }
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
            self.refused.fetch_add(1, Relaxed);
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
