//! The broker process's side: take the lock, listen, serve each client
//! connection on a thread of its own.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use conduit::RecvError;
use rustix::fs::FlockOperation;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::paths;
use crate::protocol::{BrokerError, PROTOCOL, Reply, Request};
use crate::state::{Limits, Peer, Rules};
use crate::store::Store;

/// How a broker runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The socket to listen on.
    pub socket: PathBuf,
    /// Per-user limits.
    pub limits: Limits,
    /// Where durable mailboxes live (`None`: no durable mailboxes).
    pub data_dir: Option<PathBuf>,
    /// Mode of the socket's directory when the broker creates it.
    pub dir_mode: u32,
}

impl Config {
    /// Defaults for a socket path: default limits, data next to the socket,
    /// directory mode 0700.
    pub fn at(socket: PathBuf) -> Config {
        let data_dir = socket.parent().map(|d| d.join("data"));
        Config { socket, limits: Limits::default(), data_dir, dir_mode: 0o700 }
    }
}

/// A bound broker, holding the lock that makes it the only one.
pub struct Server {
    rules: Arc<Rules>,
    listener: OwnedFd,
    _lock: File,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    next_id: AtomicU64,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl Server {
    /// Become the broker for `config.socket`: take its lock file
    /// (non-blocking `flock`), replace any stale socket, bind and listen.
    /// `Ok(None)` if another process holds the lock (a broker is running
    /// or starting). The kernel drops the lock if this process dies, so a
    /// crashed broker never blocks the next.
    pub fn bind(config: &Config) -> io::Result<Option<Server>> {
        paths::ensure_dir(&config.socket, config.dir_mode)?;
        let lock = File::options().create(true).truncate(false).write(true).open(paths::lock_path(&config.socket))?;
        match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        match std::fs::remove_file(&config.socket) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let store = config.data_dir.as_deref().map(Store::open).transpose().map_err(io_err)?;
        let rules = Rules::new(config.limits, store).map_err(io_err)?;
        let listener =
            rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
        rustix::net::bind(&listener, &SocketAddrUnix::new(&config.socket)?)?;
        // Who may connect is decided by the directory's mode (0700 unless
        // configured for a group); what they may do, by each object's mode.
        std::fs::set_permissions(&config.socket, std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
        rustix::net::listen(&listener, 128)?;
        Ok(Some(Server {
            rules: Arc::new(rules),
            listener,
            _lock: lock,
            socket: config.socket.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            next_id: AtomicU64::new(1),
        }))
    }

    /// The socket path.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// A handle that stops [`run`](Self::run) from any thread (or a signal
    /// handler thread).
    pub fn stopper(&self) -> Stopper {
        Stopper { stop: Arc::clone(&self.stop), socket: self.socket.clone() }
    }

    /// Accept and serve clients until stopped.
    pub fn run(&self) {
        tracing::info!(socket = %self.socket.display(), pid = std::process::id(), "broker listening");
        while !self.stop.load(Ordering::SeqCst) {
            let sock = match rustix::net::accept_with(&self.listener, SocketFlags::CLOEXEC) {
                Ok(s) => s,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let cred = match rustix::net::sockopt::socket_peercred(&sock) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "no peer credentials; closing");
                    continue;
                }
            };
            let peer = Peer {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                pid: cred.pid.as_raw_nonzero().get() as u32,
                uid: cred.uid.as_raw(),
                gid: cred.gid.as_raw(),
            };
            let rules = Arc::clone(&self.rules);
            let spawned = std::thread::Builder::new()
                .name(format!("conduit-broker-{}", peer.id))
                .spawn(move || serve_client(&rules, sock, peer));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start a client thread");
            }
        }
        tracing::info!("broker stopping");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // We hold the lock: the socket file is ours to remove.
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Stops a running [`Server`].
#[derive(Clone, Debug)]
pub struct Stopper {
    stop: Arc<AtomicBool>,
    socket: PathBuf,
}

impl Stopper {
    /// Ask the server to stop, and wake its accept loop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(s) = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
            && let Ok(addr) = SocketAddrUnix::new(&self.socket)
        {
            let _ = rustix::net::connect(&s, &addr);
        }
    }
}

fn serve_client(rules: &Rules, sock: OwnedFd, peer: Peer) {
    let alive_fd = match rustix::io::fcntl_dupfd_cloexec(&sock, 0) {
        Ok(fd) => fd,
        Err(_) => return,
    };
    let (tx, rx) = match conduit::channel::connection::<Reply, Request>(sock) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(error = %e, "bad connection");
            return;
        }
    };
    if let Err(e) = rules.connect(peer) {
        let _ = tx.send(Reply::Error(e));
        return;
    }
    tracing::debug!(pid = peer.pid, uid = peer.uid, "client connected");
    let alive = || !peer_gone(&alive_fd);
    loop {
        let req = match rx.recv() {
            Ok(r) => r,
            Err(RecvError::Disconnected) => break,
            Err(RecvError::Failed(e)) => {
                // Malformed or hostile: say why, then hang up on it only.
                tracing::warn!(pid = peer.pid, error = %e, "malformed request; closing the connection");
                let _ = tx.send(Reply::Error(BrokerError::Invalid(e.to_string())));
                break;
            }
        };
        let reply = dispatch(rules, &peer, req, &alive);
        if tx.send(reply).is_err() {
            break;
        }
    }
    rules.disconnect(&peer);
    tracing::debug!(pid = peer.pid, "client gone");
}

fn peer_gone(fd: &OwnedFd) -> bool {
    let mut pfd = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::empty())];
    let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
    matches!(rustix::event::poll(&mut pfd, Some(&zero)), Ok(n) if n > 0)
        && pfd[0].revents().intersects(rustix::event::PollFlags::HUP | rustix::event::PollFlags::ERR)
}

fn dispatch(rules: &Rules, peer: &Peer, req: Request, alive: &dyn Fn() -> bool) -> Reply {
    let done = |r: Result<(), BrokerError>| r.map_or_else(Reply::Error, |()| Reply::Done);
    match req {
        Request::Hello { protocol } if protocol == PROTOCOL => {
            Reply::Hello { pid: std::process::id(), protocol: PROTOCOL }
        }
        Request::Hello { protocol } => {
            Reply::Error(BrokerError::Invalid(format!("protocol {protocol}; this broker speaks {PROTOCOL}")))
        }
        Request::Create { name, capacity, policy, mode, durable } => {
            done(rules.create(peer, name, capacity, policy, mode, durable))
        }
        Request::Remove { name } => done(rules.remove(peer, &name)),
        Request::Chown { name, uid, gid } => done(rules.chown(peer, &name, uid, gid)),
        Request::Send { name, mtype, data, full } => match rules.send(peer, &name, mtype, data, full, alive) {
            Ok((receiver, deferred)) => Reply::Sent { receiver, deferred },
            Err(e) => Reply::Error(e),
        },
        Request::Recv { name, select, wait } => match rules.recv(peer, &name, select, wait, alive) {
            Ok(m) => Reply::Message { mtype: m.mtype, data: m.data, sender: m.sender_pid },
            Err(e) => Reply::Error(e),
        },
        Request::Open { name, receive } => rules.open(peer, &name, receive).map_or_else(Reply::Error, Reply::Queue),
        Request::Register { name, port, flags } => match rules.register(peer, name, port, flags) {
            Ok(r) => Reply::Name(r),
            Err(e) => Reply::Error(e),
        },
        Request::Lookup { name } => rules.lookup(&name).map_or_else(Reply::Error, Reply::Port),
        Request::Release { name } => done(rules.release(peer, &name)),
        Request::Watch { name, events } => {
            rules.watch(name, events);
            Reply::Done
        }
        Request::List => Reply::Listing(rules.list()),
    }
}
