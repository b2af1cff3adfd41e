//! The broker process's side: take the lock, listen, serve every client
//! connection as a task on a runtime of a fixed number of threads.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conduit::RecvError;
use rustix::fs::FlockOperation;
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use rustix::pipe::PipeFlags;

use crate::paths;
use crate::protocol::{
    BrokerError, Caller, Delivered, OnFull, PROTOCOL, REMOTE_SLICE_MS, RemoteOp, Reply, Request, WaitFor, hung_up,
};
use crate::state::{Held, Limits, Peer, Rules};
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
    /// Read end of the stop pipe: the accept loop waits on it and on the
    /// listener, so stopping never depends on the socket file.
    wake: OwnedFd,
    /// Write end, shared with every [`Stopper`].
    waker: Arc<OwnedFd>,
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
        let (wake, waker) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        Ok(Some(Server {
            rules: Arc::new(rules),
            listener,
            _lock: lock,
            socket: config.socket.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            wake,
            waker: Arc::new(waker),
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
        Stopper { stop: Arc::clone(&self.stop), waker: Arc::clone(&self.waker) }
    }

    /// Accept and serve clients until stopped.
    ///
    /// This thread accepts; every client is a task on a small runtime
    /// ([`WORKER_THREADS`] threads, whatever the number of clients), and a
    /// waiting send or receive waits as a task. Out of descriptors
    /// (`EMFILE`, `ENFILE`) or memory, accepting backs off (1 ms, doubling
    /// to 100 ms) and logs once per episode instead of spinning on the
    /// pending connection. When it stops, every connection is closed and
    /// what its clients held goes back to the mailboxes.
    pub fn run(&self) {
        tracing::info!(socket = %self.socket.display(), pid = std::process::id(), "broker listening");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .max_blocking_threads(1)
            .thread_name("conduit-broker")
            .enable_all()
            .build();
        let runtime = match runtime {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the broker's runtime");
                return;
            }
        };
        let mut backoff: Option<Duration> = None;
        while !self.stop.load(Ordering::SeqCst) {
            if !self.wait_for_client(backoff) {
                continue;
            }
            let sock = match rustix::net::accept_with(&self.listener, SocketFlags::CLOEXEC) {
                Ok(s) => s,
                Err(Errno::INTR | Errno::AGAIN | Errno::CONNABORTED) => continue,
                Err(e @ (Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)) => {
                    if backoff.is_none() {
                        resource_warning("cannot accept a client; backing off", &e);
                    }
                    backoff =
                        Some(backoff.map_or(Duration::from_millis(1), |b| (b * 2).min(Duration::from_millis(100))));
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            if backoff.take().is_some() {
                tracing::debug!("accepting clients again");
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            self.start_client(&runtime, sock);
        }
        tracing::info!("broker stopping");
        // Dropping the runtime ends every client's task (and so its
        // connection, giving back what it held).
        runtime.shutdown_timeout(Duration::from_secs(1));
    }

    /// Wait until a client is at the door (true) or the stop pipe was
    /// written (false); during a back-off, wait that long at most.
    fn wait_for_client(&self, backoff: Option<Duration>) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(&self.listener, PollFlags::IN), PollFd::new(&self.wake, PollFlags::IN)];
        let pause = backoff.map(|b| Timespec { tv_sec: 0, tv_nsec: b.as_nanos() as i64 });
        if backoff.is_some() {
            // The listener stays readable while we cannot accept: sleep
            // on the stop pipe alone.
            fds[0] = PollFd::new(&self.listener, PollFlags::empty());
        }
        match rustix::event::poll(&mut fds, pause.as_ref()) {
            Ok(_) if !fds[1].revents().is_empty() => false,
            Ok(_) => backoff.is_some() || fds[0].revents().contains(PollFlags::IN),
            Err(_) => false,
        }
    }

    /// Serve one accepted connection as a task.
    fn start_client(&self, runtime: &tokio::runtime::Runtime, sock: OwnedFd) {
        let cred = match rustix::net::sockopt::socket_peercred(&sock) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "no peer credentials; closing");
                return;
            }
        };
        let peer = Peer {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            pid: cred.pid.as_raw_nonzero().get() as u32,
            uid: cred.uid.as_raw(),
            gid: cred.gid.as_raw(),
        };
        runtime.spawn(serve_client(Arc::clone(&self.rules), sock, peer));
    }
}

/// Log a failure to serve a client for want of descriptors or memory at
/// most once a second: a flood of clients must not become a flood of log
/// lines (the rest are counted into the next warning).
fn resource_warning(what: &str, e: &dyn std::fmt::Display) {
    static LAST: std::sync::Mutex<Option<(std::time::Instant, u64)>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    match &mut *last {
        Some((at, quiet)) if at.elapsed() < Duration::from_secs(1) => *quiet += 1,
        other => {
            let quiet = other.map_or(0, |(_, q)| q);
            tracing::warn!(error = %e, not_logged_before = quiet, "{what}");
            *other = Some((std::time::Instant::now(), 0));
        }
    }
}

/// Threads of the broker's runtime: the clients are served by these,
/// however many there are.
pub const WORKER_THREADS: usize = 2;

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
    waker: Arc<OwnedFd>,
}

impl Stopper {
    /// Ask the server to stop, and wake its accept loop (through a pipe
    /// of its own: whatever happened to the socket file, it stops).
    /// Async-signal-safe apart from the `Arc`: one store, one `write`.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = rustix::io::write(&*self.waker, &[1]);
    }
}

async fn serve_client(rules: Arc<Rules>, sock: OwnedFd, peer: Peer) {
    let alive_fd = match rustix::io::fcntl_dupfd_cloexec(&sock, 0) {
        Ok(fd) => Arc::new(fd),
        Err(e) => return resource_warning("cannot serve a client", &e),
    };
    let (tx, rx) = match conduit::channel::connection::<Reply, Request>(sock) {
        Ok(pair) => pair,
        Err(e) => return resource_warning("cannot serve a client", &e),
    };
    rx.set_max_message(rules.limits().max_message + REQUEST_OVERHEAD);
    if let Err(e) = rules.connect(peer) {
        refuse(&tx, &rx, &alive_fd, e).await;
        return;
    }
    tracing::debug!(pid = peer.pid, uid = peer.uid, "client connected");
    // Whatever this client was handed and did not acknowledge goes back
    // when the connection ends, however it ends (`Conn`'s drop): a
    // receiver that dies holding a message loses nothing.
    let mut conn = Conn { rules: Arc::clone(&rules), peer, held: HashMap::new(), next_delivery: 0 };
    // Replies go out in the order of the requests, each once what it says
    // is on disk; meanwhile the next requests are read and served, so a
    // client may have many durable sends in flight, and their store ops
    // join the same commits.
    let (out, mut replies) = tokio::sync::mpsc::channel::<Pending>(PIPELINE);
    let writer = {
        let rules = Arc::clone(&rules);
        tokio::spawn(async move {
            while let Some(Pending { seq, reply, later }) = replies.recv().await {
                let reply = match later {
                    Some(task) => task.await.unwrap_or_else(|e| Reply::Error(BrokerError::Invalid(e.to_string()))),
                    None => reply,
                };
                let reply = match rules.stored(seq).await {
                    Ok(()) => reply,
                    Err(e) => Reply::Error(e),
                };
                if tx.send_async(reply).await.is_err() {
                    break;
                }
            }
        })
    };
    loop {
        let req = match rx.recv_async().await {
            Ok(r) => r,
            Err(RecvError::Disconnected) => break,
            Err(RecvError::Failed(conduit::Error::Io(e))) => {
                // Not the client's fault (out of descriptors, say): hang up.
                resource_warning("cannot wait for a client's request; closing its connection", &e);
                break;
            }
            Err(RecvError::Failed(e)) => {
                // Malformed or hostile: say why, then hang up on it only.
                tracing::warn!(pid = peer.pid, error = %e, "malformed request; closing the connection");
                let _ = out.send(Pending::now(Reply::Error(BrokerError::Invalid(e.to_string())))).await;
                break;
            }
        };
        let Some(reply) = dispatch(&rules, &peer, req, &alive_fd, &mut conn).await else { continue };
        if out.send(reply).await.is_err() {
            break;
        }
    }
    // The replies already due go out (or fail: the client is gone).
    drop(out);
    let _ = writer.await;
}

/// Requests of one client served ahead of their replies at most.
const PIPELINE: usize = 128;

/// A reply, to go out once the store op `seq` is on disk (0: at once).
struct Pending {
    seq: u64,
    reply: Reply,
    /// A reply still being worked out (a send to another host's mailbox,
    /// in flight while the next requests are served): it replaces `reply`.
    later: Option<tokio::task::JoinHandle<Reply>>,
}

impl Pending {
    fn now(reply: Reply) -> Pending {
        Pending { seq: 0, reply, later: None }
    }

    fn after(seq: u64, reply: Reply) -> Pending {
        Pending { seq, reply, later: None }
    }
}

/// Room for a request's framing around its largest message.
const REQUEST_OVERHEAD: usize = 64 << 10;

/// Refuse a connection so that the client hears why: read its first
/// request (closing with it unread would reset the connection, and the
/// client would see the reset instead of the refusal), answer, stop
/// writing, and wait a moment for it to hang up.
async fn refuse(tx: &conduit::Sender<Reply>, rx: &conduit::Receiver<Request>, sock: &OwnedFd, e: BrokerError) {
    let linger = Duration::from_secs(2);
    let _ = tokio::time::timeout(linger, rx.recv_async()).await;
    let _ = tx.send_async(Reply::Error(e)).await;
    let _ = rustix::net::shutdown(sock, rustix::net::Shutdown::Write);
    // Until it hangs up (what it sends meanwhile is read and dropped; a
    // failure to even wait ends this at once rather than in a spin).
    let _ = tokio::time::timeout(linger, async {
        while let Ok(_) | Err(RecvError::Failed(conduit::Error::Wire(_) | conduit::Error::Decode(_))) =
            rx.recv_async().await
        {}
    })
    .await;
}

/// What a connection holds between requests.
struct Conn {
    rules: Arc<Rules>,
    peer: Peer,
    /// Deliveries handed out and not settled yet, by id.
    held: HashMap<u64, Held>,
    next_delivery: u64,
}

impl Drop for Conn {
    fn drop(&mut self) {
        for (_, held) in self.held.drain() {
            self.rules.settle(held, false);
        }
        self.rules.disconnect(&self.peer);
        tracing::debug!(pid = self.peer.pid, "client gone");
    }
}

/// The reply to a request (`None`: it has none).
async fn dispatch(rules: &Rules, peer: &Peer, req: Request, sock: &Arc<OwnedFd>, conn: &mut Conn) -> Option<Pending> {
    let done = |r: Result<(), BrokerError>| r.map_or_else(Reply::Error, |()| Reply::Done);
    let stored = |r: Result<u64, BrokerError>| match r {
        Ok(seq) => Pending::after(seq, Reply::Done),
        Err(e) => Pending::now(Reply::Error(e)),
    };
    let req = match imported(rules, peer, req, sock, conn).await {
        Ok(reply) => return reply,
        Err(req) => req,
    };
    Some(Pending::now(match req {
        Request::Hello { protocol } if protocol == PROTOCOL => {
            Reply::Hello { pid: std::process::id(), protocol: PROTOCOL }
        }
        Request::Hello { protocol } => {
            Reply::Error(BrokerError::Invalid(format!("protocol {protocol}; this broker speaks {PROTOCOL}")))
        }
        Request::Create { name, opts } => return Some(stored(rules.create(peer, name, opts))),
        Request::Remove { name } => return Some(stored(rules.remove(peer, &name))),
        Request::Chown { name, uid, gid } => return Some(stored(rules.chown(peer, &name, uid, gid))),
        Request::Send { name, mtype, data, full } => match rules.send(peer, &name, mtype, data, full, sock).await {
            Ok(s) => {
                return Some(Pending::after(s.seq, Reply::Sent { receiver: s.receiver, deferred: s.deferred }));
            }
            Err(e) => Reply::Error(e),
        },
        Request::Recv { name, select, wait } => match rules.recv(peer, &name, select, wait, sock).await {
            Ok((m, held)) => {
                conn.next_delivery += 1;
                let durable = m.key.is_some();
                conn.held.insert(conn.next_delivery, held);
                let delivery = conn.next_delivery;
                Reply::Message { mtype: m.mtype, data: m.data, sender: m.sender_pid, delivery, durable }
            }
            Err(e) => Reply::Error(e),
        },
        Request::Settle { delivery, ack, confirm } => {
            let seq = conn.held.remove(&delivery).map_or(0, |held| rules.settle(held, ack));
            if !confirm {
                return None;
            }
            return Some(Pending::after(seq, Reply::Done));
        }
        Request::RecvBatch { name, select, max, wait } => {
            let mut taken = Vec::new();
            let (mut wait, mut bytes) = (wait, 0);
            while taken.len() < max.clamp(1, 1024) as usize && bytes <= crate::protocol::BATCH_BYTES {
                match rules.recv(peer, &name, select, wait, sock).await {
                    Ok((m, held)) => {
                        conn.next_delivery += 1;
                        conn.held.insert(conn.next_delivery, held);
                        bytes += m.data.len();
                        let (delivery, durable) = (conn.next_delivery, m.key.is_some());
                        taken.push(Delivered { mtype: m.mtype, data: m.data, sender: m.sender_pid, delivery, durable });
                        wait = WaitFor::NoWait;
                    }
                    Err(e) if taken.is_empty() => return Some(Pending::now(Reply::Error(e))),
                    Err(_) => break,
                }
            }
            Reply::Messages(taken)
        }
        Request::SettleMany { deliveries, ack, confirm } => {
            let mut seq = 0;
            for d in deliveries {
                if let Some(held) = conn.held.remove(&d) {
                    seq = seq.max(rules.settle(held, ack));
                }
            }
            if !confirm {
                return None;
            }
            return Some(Pending::after(seq, Reply::Done));
        }
        Request::Open { name, receive } => rules.open(peer, &name, receive).map_or_else(Reply::Error, Reply::Queue),
        Request::Register { name, port, flags } => match rules.register(peer, name, port, flags) {
            Ok(r) => Reply::Name(r),
            Err(e) => Reply::Error(e),
        },
        Request::Lookup { name } => rules.lookup(&name).map_or_else(Reply::Error, Reply::Port),
        Request::Release { name } => done(rules.release(peer, &name)),
        Request::Watch { name, events } => done(rules.watch(name, events)),
        Request::List => Reply::Listing(rules.list()),
        Request::Traffic => Reply::Traffic(rules.traffic()),
        Request::OpenInbox => done(rules.open_inbox(peer)),
        Request::As { uid, gid, request } => {
            if peer.uid != 0 {
                Reply::Error(BrokerError::Denied("only root may act for another user (Request::As)".into()))
            } else if !matches!(
                *request,
                Request::Open { .. }
                    | Request::Send { .. }
                    | Request::Recv { .. }
                    | Request::RecvBatch { .. }
                    | Request::Settle { .. }
                    | Request::SettleMany { .. }
            ) {
                Reply::Error(BrokerError::Invalid("Request::As carries mailbox operations only".into()))
            } else {
                let other = Peer { uid, gid, ..*peer };
                return Box::pin(dispatch(rules, &other, *request, sock, conn)).await;
            }
        }
        Request::Bridge { host, calls } => done(rules.remotes.bridge(peer, host, calls)),
        Request::Import { name, host, capacity } => {
            if rules.has_mailbox(&name) {
                Reply::Error(BrokerError::Exists(format!("mailbox {name} (of this host)")))
            } else {
                done(rules.remotes.import(peer, name, host, capacity))
            }
        }
        Request::Unimport { name } => done(rules.remotes.unimport(peer, &name)),
        Request::Answer { call, reply } => {
            rules.remotes.answer(peer, call, reply);
            return None;
        }
        Request::BridgePeers { hosts } => {
            rules.remotes.set_peers(peer, hosts);
            return None;
        }
    }))
}

/// Serve a request on an imported mailbox (another host's, through its
/// bridge: `remote.rs`), or give it back (`Err`) if it is not one.
/// Waits are forwarded in slices of at most [`REMOTE_SLICE_MS`], so that
/// a caller that hangs up stops waiting there within one slice.
async fn imported(
    rules: &Rules,
    peer: &Peer,
    req: Request,
    sock: &Arc<OwnedFd>,
    conn: &mut Conn,
) -> Result<Option<Pending>, Request> {
    let name = match &req {
        Request::Open { name, .. } | Request::Send { name, .. } | Request::Recv { name, .. } => name,
        Request::RecvBatch { name, .. } | Request::Remove { name } | Request::Chown { name, .. } => name,
        _ => return Err(req),
    };
    let Some(host) = rules.remotes.host_of(name) else { return Err(req) };
    let batch = matches!(req, Request::RecvBatch { .. });
    let caller = Caller { uid: peer.uid, gid: peer.gid, pid: peer.pid };
    let slice = move |until: Option<Instant>| {
        let left = until.map_or(REMOTE_SLICE_MS, |t| t.saturating_duration_since(Instant::now()).as_millis() as u64);
        left.min(REMOTE_SLICE_MS)
    };
    let reply = match req {
        Request::Open { .. } => Reply::Queue(None),
        Request::Remove { name } | Request::Chown { name, .. } => {
            Reply::Error(BrokerError::Denied(format!("mailbox {name} lives on host {host}: remove or change it there")))
        }
        Request::Send { name, mtype, data, full } => {
            let until = match full {
                OnFull::Block => None,
                OnFull::Timeout(ms) => Some(Instant::now() + Duration::from_millis(ms)),
                OnFull::NoWait => Some(Instant::now()),
                OnFull::Leave => {
                    let e = format!("mailbox {name} lives on host {host}: a message cannot be left with this broker");
                    return Ok(Some(Pending::now(Reply::Error(BrokerError::Invalid(e)))));
                }
            };
            // In flight while the client's next requests are served (the
            // bridge keeps one mailbox's sends in order); the reply goes
            // out in its turn.
            let (rules, sock) = (Arc::clone(&conn.rules), Arc::clone(sock));
            let task = tokio::spawn(async move {
                loop {
                    let full = match slice(until) {
                        0 => OnFull::NoWait,
                        ms => OnFull::Timeout(ms),
                    };
                    let op = RemoteOp::Send { name: name.clone(), mtype, data: data.clone(), full };
                    match rules.remotes.call(&name, caller, op).await {
                        Err(BrokerError::Timeout | BrokerError::Full)
                            if until.is_none_or(|t| Instant::now() < t) && !hung_up(&*sock) => {}
                        Err(BrokerError::Full) if full != OnFull::NoWait => break Reply::Error(BrokerError::Timeout),
                        Err(e) => break Reply::Error(e),
                        Ok(r) => break r,
                    }
                }
            });
            return Ok(Some(Pending { seq: 0, reply: Reply::Done, later: Some(task) }));
        }
        Request::Recv { name, select, wait } | Request::RecvBatch { name, select, wait, .. } => {
            // A batch from another host is a batch of one.
            let until = match wait {
                WaitFor::Forever => None,
                WaitFor::Millis(ms) => Some(Instant::now() + Duration::from_millis(ms)),
                WaitFor::NoWait => Some(Instant::now()),
            };
            loop {
                let wait = match slice(until) {
                    0 => WaitFor::NoWait,
                    ms => WaitFor::Millis(ms),
                };
                let op = RemoteOp::Recv { name: name.clone(), select, wait };
                match rules.remotes.call(&name, caller, op).await {
                    Err(BrokerError::Timeout | BrokerError::Empty)
                        if until.is_none_or(|t| Instant::now() < t) && !hung_up(&**sock) => {}
                    Err(BrokerError::Empty) if wait != WaitFor::NoWait => break Reply::Error(BrokerError::Timeout),
                    Err(e) => break Reply::Error(e),
                    Ok(Reply::Message { mtype, data, sender, delivery: token, durable }) => {
                        conn.next_delivery += 1;
                        conn.held.insert(conn.next_delivery, Held::Remote { name: name.clone(), token });
                        let delivery = conn.next_delivery;
                        if batch {
                            break Reply::Messages(vec![Delivered { mtype, data, sender, delivery, durable }]);
                        }
                        break Reply::Message { mtype, data, sender, delivery, durable };
                    }
                    Ok(r) => {
                        break Reply::Error(BrokerError::Invalid(format!("the bridge answered a receive with {r:?}")));
                    }
                }
            }
        }
        other => return Err(other),
    };
    Ok(Some(Pending::now(reply)))
}

/// Raise this process's soft limit on open descriptors to its hard limit
/// (a broker holds about five descriptors per client). `conduit daemon`
/// does this at start; an embedded broker leaves the host process's
/// limits alone unless it calls this. Returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum {
        lim.current = Some(max);
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}
