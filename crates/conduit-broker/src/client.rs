//! The client side: a connection to the broker, started on first use if
//! none is running.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conduit::memory::queue::{ClaimId, Deadline, Queue, QueueError, QueuedMessage};
use conduit::{Receiver, Sender};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::paths;
use crate::protocol::{
    BrokerError, MailboxOptions, MailboxTraffic, NameEvent, NameFlags, NameReply, ObjectInfo, OnFull, PROTOCOL, Reply,
    Request, WaitFor, hung_up,
};
use crate::server::{Config, Server};

/// Sends [`Client::send_batch`] has in flight at once through the broker
/// (below what the broker serves ahead of its replies, so that neither
/// side's socket fills while the other waits for it).
pub const SEND_WINDOW: usize = 32;

/// Connections one [`Client::serve_rpc`] serves at once (a thread each).
pub const MAX_RPC_CONNECTIONS: usize = 256;

/// Ask the broker and take the one kind of reply the request has (its
/// refusal is already an error, from `call`); anything else is a protocol
/// error. One request, one reply, in order on the connection.
macro_rules! ask {
    ($client:expr, $req:expr, $pat:pat => $val:expr) => {
        match $client.call($req)? {
            $pat => $val,
            other => return Err(unexpected(other)),
        }
    };
}

/// A reply of the wrong kind.
fn unexpected(reply: Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected reply from the broker: {reply:?}"))
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The broker refused.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// No broker answers at the socket.
    #[error("no broker at {path}: {source}")]
    NoBroker {
        /// The socket path tried.
        path: String,
        /// Why the connection failed.
        source: io::Error,
    },
    /// The connection to the broker broke.
    #[error("the connection to the broker broke: {0}")]
    Broken(String),
    /// The broker answered something unexpected.
    #[error("unexpected reply from the broker: {0}")]
    Protocol(String),
}

/// A received mailbox message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its type (System V `mtype`).
    pub mtype: i64,
    /// Its bytes.
    pub data: Vec<u8>,
    /// The sender's pid: kernel-verified (`SO_PEERCRED`) for a message that
    /// went through the broker; written by the sender's library for one it
    /// put straight into a shared-memory queue (a process the broker let
    /// read and write the mailbox).
    pub sender: u32,
}

/// A message received with [`Client::recv_held`]: still the mailbox's
/// until [`ack`](Self::ack)ed. Dropped unacknowledged, it goes back.
#[derive(Debug)]
pub struct Delivery<'c> {
    client: &'c Client,
    message: Message,
    hold: Option<Hold>,
}

#[derive(Debug)]
enum Hold {
    /// Claimed in the mailbox's shared-memory queue by this process.
    Queue(Arc<Queue>, ClaimId),
    /// Held by the broker for this connection (a durable one is
    /// acknowledged with a confirmation: on disk before `ack` returns).
    Broker { delivery: u64, durable: bool },
}

impl Delivery<'_> {
    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Take the message for good. From a durable mailbox, the broker
    /// confirms that the message left the disk before this returns; if the
    /// broker dies first, this fails and the message is delivered again
    /// after its restart (so a message an application handled is never
    /// handed out twice, and one it did not is never lost).
    ///
    /// Also fails with [`BrokerError::Invalid`] if a shared-memory claim
    /// was lost (this process was taken for dead and the message went to
    /// another receiver) — it cannot happen to a live process.
    pub fn ack(mut self) -> Result<Message, ClientError> {
        self.settle(true)?;
        Ok(std::mem::replace(&mut self.message, Message { mtype: 0, data: Vec::new(), sender: 0 }))
    }

    /// Return the message to its mailbox, for the next receiver.
    pub fn give_back(mut self) -> Result<(), ClientError> {
        self.settle(false)
    }

    fn settle(&mut self, ack: bool) -> Result<(), ClientError> {
        match self.hold.take() {
            None => Ok(()),
            Some(Hold::Queue(q, id)) => {
                let r = if ack { q.ack(id) } else { q.give_back(id) };
                r.map_err(|e| ClientError::Broker(BrokerError::Invalid(e.to_string())))
            }
            Some(Hold::Broker { delivery, durable: false }) => {
                self.client.tell(Request::Settle { delivery, ack, confirm: false })
            }
            Some(Hold::Broker { delivery, durable: true }) => {
                ask!(self.client, Request::Settle { delivery, ack, confirm: true }, Reply::Done => ());
                Ok(())
            }
        }
    }
}

impl Drop for Delivery<'_> {
    fn drop(&mut self) {
        let _ = self.settle(false);
    }
}

/// How a send went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The pid of the receiver it was handed to directly, if one waited
    /// (mailboxes kept by the broker; a message to a shared-memory queue
    /// is taken later by whichever receiver comes first).
    pub receiver: Option<u32>,
    /// Left with the broker (the mailbox was full), to be queued later.
    pub deferred: bool,
}

/// A private connection offered to a service registered by name (the
/// connect handshake, M9.3): the client's requests and the way back.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Connect<Req, Resp> {
    /// Requests from this client.
    pub requests: Receiver<Req>,
    /// Replies to it.
    pub replies: Sender<Resp>,
}

/// A connection to the broker. Calls are serialized per connection; a
/// thread that wants to block in `recv` while others work opens its own.
///
/// ```
/// use conduit_broker::{Client, MailboxOptions, OnFull, WaitFor};
/// # let dir = std::env::temp_dir().join(format!("conduit-doc-{}", std::process::id()));
/// # let socket = dir.join("broker.sock");
/// // (`Client::connect_or_start()` uses the default socket.)
/// let c = Client::connect_or_start_at(&socket)?;
/// c.create_mailbox("jobs", MailboxOptions::default())?;
/// c.send("jobs", 2, b"compile", OnFull::Block)?;
/// let m = c.recv("jobs", 0, WaitFor::NoWait)?;
/// assert_eq!((m.mtype, &m.data[..]), (2, &b"compile"[..]));
/// // Held until handled: dropped (or the process killed) before `ack`,
/// // it goes back to the mailbox.
/// c.send("jobs", 1, b"test", OnFull::Block)?;
/// let job = c.recv_held("jobs", 0, WaitFor::NoWait)?;
/// assert_eq!(job.message().data, b"test");
/// job.ack()?;
/// # let _ = std::fs::remove_dir_all(&dir);
/// # Ok::<(), conduit_broker::ClientError>(())
/// ```
pub struct Client {
    link: Mutex<(Sender<Request>, Receiver<Reply>)>,
    broker_pid: u32,
    /// The connection, to notice the broker's death while waiting on a
    /// queue in shared memory.
    watch: OwnedFd,
    /// Opened mailboxes, to send (`[0]`) and to receive (`[1]`), by name:
    /// their queue, or `None` for "through the broker".
    queues: Mutex<[HashMap<String, Opened>; 2]>,
    /// Names this client gave up itself (not a loss to report).
    released: Arc<Mutex<HashSet<String>>>,
    /// One per name watched for a loss: dropped with the client, which
    /// ends those watches.
    stops: Mutex<Vec<Sender<()>>>,
}

/// An opened mailbox: its queue, or `None` for "through the broker".
type Opened = Option<Arc<Queue>>;

impl Drop for Client {
    fn drop(&mut self) {
        // Before the connection closes: the watches of our names end first.
        self.stops.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("broker_pid", &self.broker_pid).finish_non_exhaustive()
    }
}

fn queue_error(name: &str, e: QueueError) -> ClientError {
    ClientError::Broker(BrokerError::from_queue(name, e))
}

fn broken(e: impl std::fmt::Display) -> ClientError {
    ClientError::Broken(e.to_string())
}

impl Client {
    /// Connect to the broker at the default socket ([`paths::socket_path`]).
    pub fn connect() -> Result<Client, ClientError> {
        Client::connect_to(&paths::socket_path())
    }

    /// Connect to the broker listening at `path`.
    pub fn connect_to(path: &Path) -> Result<Client, ClientError> {
        let no = |source: io::Error| ClientError::NoBroker { path: path.display().to_string(), source };
        let sock = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
            .map_err(|e| no(e.into()))?;
        let addr = SocketAddrUnix::new(path).map_err(|e| no(e.into()))?;
        rustix::net::connect(&sock, &addr).map_err(|e| no(e.into()))?;
        let watch = rustix::io::fcntl_dupfd_cloexec(&sock, 0).map_err(|e| no(e.into()))?;
        let (tx, rx) = conduit::channel::connection::<Request, Reply>(sock).map_err(broken)?;
        let mut client = Client {
            link: Mutex::new((tx, rx)),
            broker_pid: 0,
            watch,
            queues: Mutex::default(),
            released: Arc::default(),
            stops: Mutex::default(),
        };
        client.broker_pid = ask!(client, Request::Hello { protocol: PROTOCOL }, Reply::Hello { pid, .. } => pid);
        Ok(client)
    }

    /// Connect to the default broker, starting one inside this process if
    /// none runs (race-free: of several processes starting at once, one
    /// takes the lock and serves, the others connect to it). An embedded
    /// broker lives as long as this process.
    pub fn connect_or_start() -> Result<Client, ClientError> {
        Client::connect_or_start_at(&paths::socket_path())
    }

    /// [`connect_or_start`](Self::connect_or_start) for a given socket.
    pub fn connect_or_start_at(path: &Path) -> Result<Client, ClientError> {
        match Client::connect_to(path) {
            Ok(c) => return Ok(c),
            Err(ClientError::NoBroker { .. }) => {}
            Err(e) => return Err(e),
        }
        let config = Config::at(path.to_path_buf());
        match Server::bind(&config) {
            Ok(Some(server)) => {
                std::thread::Builder::new()
                    .name("conduit-broker".into())
                    .spawn(move || server.run())
                    .map_err(broken)?;
            }
            Ok(None) => {} // someone else is the broker, or becoming it
            Err(e) => return Err(ClientError::NoBroker { path: path.display().to_string(), source: e }),
        }
        // The listener is up as soon as `bind` returned in whichever
        // process won; retry briefly for the others.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut pause = Duration::from_micros(200);
        loop {
            match Client::connect_to(path) {
                Ok(c) => return Ok(c),
                Err(ClientError::NoBroker { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The broker's pid.
    pub fn broker_pid(&self) -> u32 {
        self.broker_pid
    }

    fn call(&self, req: Request) -> Result<Reply, ClientError> {
        let link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        link.0.send(req).map_err(broken)?;
        match link.1.recv().map_err(broken)? {
            Reply::Error(e) => Err(ClientError::Broker(e)),
            r => Ok(r),
        }
    }

    /// Send a request as it is and wait for its reply: for programs that
    /// speak the protocol themselves (`conduit bridge`). A `Reply::Error`
    /// comes back as `ClientError::Broker`.
    pub fn request(&self, req: Request) -> Result<Reply, ClientError> {
        self.call(req)
    }

    /// Send requests that each have a reply, up to [`SEND_WINDOW`] in
    /// flight at once, and return their replies in order (a refusal is
    /// that request's `Err`). Only a broken connection fails the whole call.
    pub fn request_many(&self, reqs: Vec<Request>) -> Result<Vec<Result<Reply, BrokerError>>, ClientError> {
        let link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        let (mut out, mut in_flight) = (Vec::with_capacity(reqs.len()), 0);
        let mut reqs = reqs.into_iter().peekable();
        while reqs.peek().is_some() || in_flight > 0 {
            if in_flight < SEND_WINDOW
                && let Some(r) = reqs.next()
            {
                link.0.send(r).map_err(broken)?;
                in_flight += 1;
                continue;
            }
            in_flight -= 1;
            out.push(match link.1.recv().map_err(broken)? {
                Reply::Error(e) => Err(e),
                r => Ok(r),
            });
        }
        Ok(out)
    }

    /// Send a request that has no reply (`Request::Answer`,
    /// `Request::BridgePeers`, a `Settle` without `confirm`).
    pub fn post(&self, req: Request) -> Result<(), ClientError> {
        self.tell(req)
    }

    fn done(&self, req: Request) -> Result<(), ClientError> {
        ask!(self, req, Reply::Done => ());
        Ok(())
    }

    /// Create a mailbox owned by this process's user.
    pub fn create_mailbox(&self, name: &str, opts: MailboxOptions) -> Result<(), ClientError> {
        self.done(Request::Create { name: name.into(), opts })
    }

    /// Remove a mailbox (its owner or root).
    pub fn remove_mailbox(&self, name: &str) -> Result<(), ClientError> {
        self.done(Request::Remove { name: name.into() })
    }

    /// Give a mailbox to another user and group.
    pub fn chown(&self, name: &str, uid: u32, gid: u32) -> Result<(), ClientError> {
        self.done(Request::Chown { name: name.into(), uid, gid })
    }

    /// Send bytes of type `mtype` (≥ 0) to a mailbox.
    ///
    /// The first send to a mailbox opens it: the broker checks the
    /// permission once and, for a mailbox kept in shared memory (not
    /// durable; bounded, or the front of an unbounded one) that this user
    /// may both read and write, hands over its queue; later sends write
    /// straight into it, with no broker in the path. Like an open file,
    /// the handle keeps the access it was given. Otherwise each send is a
    /// request to the broker. A send to an unbounded mailbox never waits:
    /// when its front is full, or messages already wait behind it, the
    /// message goes to the broker, behind them.
    pub fn send(&self, name: &str, mtype: i64, data: &[u8], full: OnFull) -> Result<Sent, ClientError> {
        for _ in 0..2 {
            let Some(q) = self.open(name, false)? else { break };
            let me = (std::process::id(), rustix::process::getuid().as_raw());
            if q.is_front() {
                // Unbounded: into the queue if nothing waits behind it (a
                // message of this process may) and it has room; otherwise
                // behind it, through the broker. Never waits for room.
                if q.behind() > 0 {
                    break;
                }
                match q.send(mtype, data, me, Deadline::Never) {
                    Ok(()) => return Ok(Sent { receiver: None, deferred: false }),
                    Err(QueueError::Full | QueueError::TooLarge { .. }) => break,
                    Err(QueueError::Closed) => {
                        self.forget(name, false);
                        continue;
                    }
                    Err(e) => return Err(queue_error(name, e)),
                }
            }
            match self.waiting(full.wait(), |w| q.send(mtype, data, me, w)) {
                Ok(()) => return Ok(Sent { receiver: None, deferred: false }),
                // Left with the broker: it delivers when there is room.
                Err(QueueError::Full) if full == OnFull::Leave => break,
                Err(QueueError::Closed) => self.forget(name, false),
                Err(e) => return Err(queue_error(name, e)),
            }
        }
        let req = Request::Send { name: name.into(), mtype, data: data.to_vec(), full };
        Ok(ask!(self, req, Reply::Sent { receiver, deferred } => Sent { receiver, deferred }))
    }

    /// Send several messages of type `mtype` to one mailbox, each with its
    /// own answer, in order: the result of each send, as
    /// [`send`](Self::send) would have given it.
    ///
    /// Through the broker (durable and rendezvous mailboxes),
    /// up to [`SEND_WINDOW`] requests are in flight at once: the broker
    /// serves the next while the earlier ones wait for the disk, and a
    /// durable mailbox commits them together, so one producer is not
    /// bound by one `fsync` per message. Each `Ok` is that message's
    /// acknowledgement (for a durable mailbox: on disk). A message kept in
    /// shared memory goes straight into the queue, one after another.
    /// Only a broken connection fails the whole call; then any of the
    /// messages may or may not have been accepted.
    pub fn send_batch<'a>(
        &self,
        name: &str,
        mtype: i64,
        messages: impl IntoIterator<Item = &'a [u8]>,
        full: OnFull,
    ) -> Result<Vec<Result<Sent, BrokerError>>, ClientError> {
        let mut messages = messages.into_iter().peekable();
        let mut results = Vec::new();
        if self.open(name, false)?.is_some() {
            for data in messages {
                results.push(match self.send(name, mtype, data, full) {
                    Ok(s) => Ok(s),
                    Err(ClientError::Broker(e)) => Err(e),
                    Err(e) => return Err(e),
                });
            }
            return Ok(results);
        }
        let link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        let mut in_flight = 0;
        while messages.peek().is_some() || in_flight > 0 {
            if in_flight < SEND_WINDOW
                && let Some(data) = messages.next()
            {
                link.0.send(Request::Send { name: name.into(), mtype, data: data.to_vec(), full }).map_err(broken)?;
                in_flight += 1;
                continue;
            }
            in_flight -= 1;
            results.push(match link.1.recv().map_err(broken)? {
                Reply::Sent { receiver, deferred } => Ok(Sent { receiver, deferred }),
                Reply::Error(e) => Err(e),
                other => return Err(unexpected(other)),
            });
        }
        Ok(results)
    }

    /// Receive from a mailbox by System V rules (`select`: 0 any, > 0 that
    /// type, < 0 the lowest type ≤ |select|). Opens the mailbox like
    /// [`send`](Self::send): a receiver that may read and write it takes
    /// messages straight from its shared-memory queue.
    ///
    /// The message is acknowledged before this returns. To acknowledge
    /// only once it is handled (so that it goes to another receiver if
    /// this process dies first), use [`recv_held`](Self::recv_held).
    pub fn recv(&self, name: &str, select: i64, wait: WaitFor) -> Result<Message, ClientError> {
        let message = |m: QueuedMessage| Message { mtype: m.mtype, data: m.data, sender: m.sender_pid };
        for _ in 0..2 {
            let Some(q) = self.open(name, true)? else { break };
            let got = if q.is_front() {
                let behind = || self.recv_brokered(name, select, WaitFor::NoWait)?.ack();
                self.take_front(&q, wait, |w| q.recv(select, w).map(message), behind)?
            } else {
                self.waiting(wait.wait(), |w| q.recv(select, w).map(message))
            };
            match got {
                Ok(m) => return Ok(m),
                Err(QueueError::Closed) => self.forget(name, true),
                Err(e) => return Err(queue_error(name, e)),
            }
        }
        self.recv_brokered(name, select, wait)?.ack()
    }

    /// Receive up to `max` messages at once: wait as `wait` says for the
    /// first, then take those already there (through the broker: at most
    /// [`BATCH_BYTES`](crate::protocol::BATCH_BYTES) beyond the first).
    /// All are acknowledged before this returns, together: from a durable
    /// mailbox with one confirmation, their removal on disk in one commit
    /// (so a receiver is not bound by one `fsync` per message). If the
    /// broker dies before that confirmation, this fails and they are
    /// delivered again after its restart, like [`recv`](Self::recv)'s.
    /// An empty mailbox (with `WaitFor::NoWait`) is `Empty`, never an
    /// empty batch.
    pub fn recv_batch(&self, name: &str, select: i64, max: usize, wait: WaitFor) -> Result<Vec<Message>, ClientError> {
        let max = max.max(1);
        for _ in 0..2 {
            let Some(q) = self.open(name, true)? else { break };
            let mut got = Vec::new();
            let mut w = wait.wait();
            let message = |m: QueuedMessage| Message { mtype: m.mtype, data: m.data, sender: m.sender_pid };
            if q.is_front() {
                // The first from the queue or from behind it; the rest from
                // the queue, as long as it has them.
                let behind = || self.recv_brokered(name, select, WaitFor::NoWait)?.ack();
                match self.take_front(&q, wait, |w| q.recv(select, w).map(message), behind)? {
                    Ok(m) => got.push(m),
                    Err(QueueError::Closed) => {
                        self.forget(name, true);
                        continue;
                    }
                    Err(e) => return Err(queue_error(name, e)),
                }
                w = Deadline::Never;
            }
            while got.len() < max {
                match self.waiting(w, |w| q.recv(select, w)) {
                    Ok(m) => got.push(message(m)),
                    Err(QueueError::Empty) if !got.is_empty() => break,
                    Err(QueueError::Closed) if got.is_empty() => {
                        self.forget(name, true);
                        break;
                    }
                    Err(_) if !got.is_empty() => break,
                    Err(e) => return Err(queue_error(name, e)),
                }
                w = Deadline::Never;
            }
            if !got.is_empty() {
                return Ok(got);
            }
        }
        let req = Request::RecvBatch { name: name.into(), select, max: max.min(u32::MAX as usize) as u32, wait };
        let taken = ask!(self, req, Reply::Messages(m) => m);
        let deliveries: Vec<u64> = taken.iter().map(|d| d.delivery).collect();
        let durable = taken.iter().any(|d| d.durable);
        let settle = Request::SettleMany { deliveries, ack: true, confirm: durable };
        if durable {
            self.done(settle)?;
        } else {
            self.tell(settle)?;
        }
        Ok(taken.into_iter().map(|d| Message { mtype: d.mtype, data: d.data, sender: d.sender }).collect())
    }

    /// Receive like [`recv`](Self::recv), but hold the message: it stays
    /// the mailbox's until [`Delivery::ack`]. [`Delivery::give_back`] (or
    /// dropping the delivery) returns it to the mailbox, and so does the
    /// death of this process or of its connection to the broker: the next
    /// receiver gets it (at-least-once; see the README for each kind of
    /// mailbox).
    pub fn recv_held(&self, name: &str, select: i64, wait: WaitFor) -> Result<Delivery<'_>, ClientError> {
        for _ in 0..2 {
            let Some(q) = self.open(name, true)? else { break };
            let claimed = |w| {
                q.claim(select, w).map(|(m, id)| Delivery {
                    client: self,
                    message: Message { mtype: m.mtype, data: m.data, sender: m.sender_pid },
                    hold: Some(Hold::Queue(Arc::clone(&q), id)),
                })
            };
            let got = if q.is_front() {
                self.take_front(&q, wait, claimed, || self.recv_brokered(name, select, WaitFor::NoWait))?
            } else {
                self.waiting(wait.wait(), claimed)
            };
            match got {
                Ok(d) => return Ok(d),
                Err(QueueError::Closed) => self.forget(name, true),
                Err(e) => return Err(queue_error(name, e)),
            }
        }
        self.recv_brokered(name, select, wait)
    }

    fn recv_brokered(&self, name: &str, select: i64, wait: WaitFor) -> Result<Delivery<'_>, ClientError> {
        let req = Request::Recv { name: name.into(), select, wait };
        Ok(ask!(self, req, Reply::Message { mtype, data, sender, delivery, durable } => Delivery {
            client: self,
            message: Message { mtype, data, sender },
            hold: Some(Hold::Broker { delivery, durable }),
        }))
    }

    /// Receive from the front of an unbounded mailbox with `op`: from its
    /// queue, or — when the queue has nothing that matches and the broker
    /// holds messages behind it — through the broker (`behind`, which
    /// does not wait). Waits on the queue in slices of at most 100 ms and
    /// looks behind it between them, so that a receive by type is not
    /// stuck on a queue full of other types.
    fn take_front<T>(
        &self,
        q: &Queue,
        wait: WaitFor,
        mut op: impl FnMut(Deadline) -> Result<T, QueueError>,
        mut behind: impl FnMut() -> Result<T, ClientError>,
    ) -> Result<Result<T, QueueError>, ClientError> {
        let until = wait.wait();
        loop {
            match op(Deadline::Never) {
                Err(QueueError::Empty) => {}
                r => return Ok(r),
            }
            if q.behind() > 0 {
                match behind() {
                    Err(ClientError::Broker(BrokerError::Empty)) => {}
                    r => return r.map(Ok),
                }
            }
            let now = Instant::now();
            let slice = match until {
                Deadline::Never => return Ok(Err(QueueError::Empty)),
                Deadline::Forever => now + Duration::from_millis(100),
                Deadline::Until(t) if t <= now => return Ok(Err(QueueError::Timeout)),
                Deadline::Until(t) => t.min(now + Duration::from_millis(100)),
            };
            match self.waiting(Deadline::Until(slice), &mut op) {
                Err(QueueError::Timeout) => {}
                r => return Ok(r),
            }
        }
    }

    /// Send a request that has no reply.
    fn tell(&self, req: Request) -> Result<(), ClientError> {
        let link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        link.0.send(req).map_err(broken)
    }

    /// The queue of an opened mailbox (opening it on first use), or `None`
    /// to go through the broker.
    fn open(&self, name: &str, receive: bool) -> Result<Opened, ClientError> {
        if let Some(q) = self.queues.lock().unwrap_or_else(|p| p.into_inner())[usize::from(receive)].get(name)
            && q.as_ref().is_none_or(|q| !q.is_closed())
        {
            return Ok(q.clone());
        }
        let q = ask!(self, Request::Open { name: name.into(), receive }, Reply::Queue(q) => q.map(Arc::new));
        self.queues.lock().unwrap_or_else(|p| p.into_inner())[usize::from(receive)].insert(name.into(), q.clone());
        Ok(q)
    }

    fn forget(&self, name: &str, receive: bool) {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())[usize::from(receive)].remove(name);
    }

    /// Run a queue operation that may wait, in slices of at most 100 ms,
    /// checking between them that the broker is alive: its mailboxes die
    /// with it (except durable ones, which never live in shared memory).
    fn waiting<T>(&self, wait: Deadline, op: impl FnMut(Deadline) -> Result<T, QueueError>) -> Result<T, QueueError> {
        in_slices(wait, Duration::from_millis(100), || !hung_up(&self.watch), op).unwrap_or(Err(QueueError::Closed))
    }

    /// Send a typed value (postcard) to a mailbox.
    pub fn send_value<T: Serialize>(
        &self,
        name: &str,
        mtype: i64,
        value: &T,
        full: OnFull,
    ) -> Result<Sent, ClientError> {
        let data = postcard::to_stdvec(value).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.send(name, mtype, &data, full)
    }

    /// Receive a typed value (postcard) from a mailbox.
    pub fn recv_value<T: DeserializeOwned>(&self, name: &str, select: i64, wait: WaitFor) -> Result<T, ClientError> {
        let m = self.recv(name, select, wait)?;
        postcard::from_bytes(&m.data).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Open this process's **inbox** for direct addressing (M1.2): others
    /// then reach it by pid with [`send_to_pid`](Self::send_to_pid), and it
    /// receives with [`recv_from_pid`](Self::recv_from_pid) (symmetric:
    /// from that process only) or [`recv_from_any`](Self::recv_from_any)
    /// (asymmetric: [`Message::sender`] names who sent it). The inbox is
    /// the broker's mailbox `pid:PID`: unbounded, kept by the broker, open
    /// to every sender, readable by this process alone; the sender's pid
    /// on each message is the kernel's (`SO_PEERCRED` of the sender's
    /// connection), never a field the sender wrote. It is removed with
    /// this connection — messages still in it go with the process, as
    /// those in its sockets would — so a reused pid never inherits it.
    pub fn open_inbox(&self) -> Result<(), ClientError> {
        self.done(Request::OpenInbox)
    }

    /// `send(P, message)`: to the inbox of process `pid` (`NotFound` if it
    /// has none).
    pub fn send_to_pid(&self, pid: u32, data: &[u8]) -> Result<Sent, ClientError> {
        self.send(&inbox(pid), 0, data, OnFull::Block)
    }

    /// `receive(Q, message)`: the oldest message in this process's inbox
    /// that process `pid` sent (messages of others stay, in order).
    pub fn recv_from_pid(&self, pid: u32, wait: WaitFor) -> Result<Message, ClientError> {
        if pid == 0 {
            return Err(ClientError::Broker(BrokerError::Invalid("no process has pid 0".into())));
        }
        self.recv(&inbox(std::process::id()), i64::from(pid), wait)
    }

    /// `receive(id, message)`: the oldest message in this process's inbox,
    /// from anyone; [`Message::sender`] is its sender's pid.
    pub fn recv_from_any(&self, wait: WaitFor) -> Result<Message, ClientError> {
        self.recv(&inbox(std::process::id()), 0, wait)
    }

    /// Register `port` under `name` (the matchmaker).
    ///
    /// While this process owns the name, a takeover (another process
    /// registering with `replace_existing`, or an administrator's
    /// `conduit rm name`) is posted on its notify port
    /// ([`conduit::notify()`]) as `Event::NameLost` — unless this client
    /// gave the name up itself ([`release`](Self::release)).
    pub fn register<T>(&self, name: &str, port: Sender<T>, flags: NameFlags) -> Result<NameReply, ClientError> {
        let reply = ask!(self, Request::Register { name: name.into(), port: port.cast(), flags }, Reply::Name(r) => r);
        if reply != NameReply::Exists {
            self.report_loss(name)?;
        }
        Ok(reply)
    }

    /// Watch `name` and post `NameLost` on the notify port when an owner
    /// change takes it from this process (and not by its own release).
    fn report_loss(&self, name: &str) -> Result<(), ClientError> {
        let events = self.watch(name)?;
        // Dropping the client ends the watch (its own end of the name is
        // no loss to report).
        let (stop_tx, stop) = conduit::unbounded::<()>().map_err(broken)?;
        self.stops.lock().unwrap_or_else(|p| p.into_inner()).push(stop_tx);
        let released = Arc::clone(&self.released);
        released.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        let name = name.to_string();
        let me = std::process::id();
        std::thread::Builder::new()
            .name("conduit-name-watch".into())
            .spawn(move || {
                let mut owned = false;
                loop {
                    let mut set = conduit::PortSet::new();
                    let ev = set.add(&events);
                    set.add(&stop);
                    if set.ready() != ev {
                        return;
                    }
                    let Ok(ev) = events.try_recv() else { return };
                    if ev.owner == Some(me) {
                        owned = true;
                    } else if owned {
                        // Our own end (the client dropped) is no loss.
                        if matches!(stop.try_recv(), Err(conduit::TryRecvError::Disconnected)) {
                            return;
                        }
                        if !released.lock().unwrap_or_else(|p| p.into_inner()).remove(&name) {
                            conduit::notify::post(conduit::notify::Event::NameLost { name, by: ev.owner });
                        }
                        return;
                    }
                }
            })
            .map_err(|e| ClientError::Protocol(format!("cannot start a thread: {e}")))?;
        Ok(())
    }

    /// The port registered under `name`; `T` is the caller's promise of its
    /// message type.
    pub fn lookup<T>(&self, name: &str) -> Result<Sender<T>, ClientError> {
        Ok(ask!(self, Request::Lookup { name: name.into() }, Reply::Port(p) => p.cast()))
    }

    /// Give up a name (or a place in its queue). Root, or another process
    /// of the owner's user, may take a name from its owner this way
    /// (`conduit rm name NAME`).
    pub fn release(&self, name: &str) -> Result<(), ClientError> {
        self.released.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string());
        self.done(Request::Release { name: name.into() })
    }

    /// Changes of `name`'s owner, as messages (the current owner first).
    pub fn watch(&self, name: &str) -> Result<Receiver<NameEvent>, ClientError> {
        let (tx, rx) = conduit::unbounded::<NameEvent>().map_err(broken)?;
        self.done(Request::Watch { name: name.into(), events: tx })?;
        Ok(rx)
    }

    /// Offer a service under `name`: each client that connects arrives as
    /// a [`Connect`] with a private pair of ports.
    pub fn serve<Req, Resp>(&self, name: &str, flags: NameFlags) -> Result<Receiver<Connect<Req, Resp>>, ClientError> {
        let (tx, rx) = conduit::unbounded::<Connect<Req, Resp>>().map_err(broken)?;
        match self.register(name, tx, flags)? {
            NameReply::PrimaryOwner | NameReply::AlreadyOwner | NameReply::InQueue => Ok(rx),
            NameReply::Exists => Err(ClientError::Broker(BrokerError::Exists(format!("name {name}")))),
        }
    }

    /// Connect to the service registered under `name`: a private pair of
    /// ports to it; the broker is not in the data path.
    pub fn connect_service<Req, Resp>(&self, name: &str) -> Result<(Sender<Req>, Receiver<Resp>), ClientError>
    where
        Req: Serialize,
        Resp: Serialize,
    {
        let service: Sender<Connect<Req, Resp>> = self.lookup(name)?;
        let (req_tx, req_rx) = conduit::unbounded::<Req>().map_err(broken)?;
        let (resp_tx, resp_rx) = conduit::unbounded::<Resp>().map_err(broken)?;
        service.send(Connect { requests: req_rx, replies: resp_tx }).map_err(broken)?;
        Ok((req_tx, resp_rx))
    }

    /// Offer an RPC service under `name` (the matchmaker, M7.3): each
    /// client that connects ([`connect_rpc`](Self::connect_rpc)) gets a
    /// private pair of channels and a thread of this process serving it
    /// with `service` (a dispatcher generated by `#[conduit::service]`,
    /// e.g. `CalculatorServer(impl)`) — at most [`MAX_RPC_CONNECTIONS`]
    /// at once, all sharing one reply cache (exactly-once clients may
    /// reconnect). Several servers may offer one name
    /// under the broker's rules (`flags`: replacement, a queue of servers
    /// that take over when the owner dies). Returns the thread accepting
    /// connections; it ends when the name is taken away or this client
    /// closes.
    pub fn serve_rpc<D>(
        &self,
        name: &str,
        flags: NameFlags,
        service: Arc<D>,
    ) -> Result<std::thread::JoinHandle<()>, ClientError>
    where
        D: conduit::rpc::Dispatch + Send + Sync + 'static,
    {
        use conduit::rpc::{Answer, Call, Connection};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let connections = self.serve::<Call, Answer>(name, flags)?;
        let open = Arc::new(AtomicUsize::new(0));
        let cache = Arc::new(conduit::rpc::ReplyCache::memory());
        std::thread::Builder::new()
            .name(format!("conduit-rpc-{name}"))
            .spawn(move || {
                for c in connections.iter() {
                    // A thread per connection, at most MAX_RPC_CONNECTIONS:
                    // one over is closed at once (its client's first call
                    // says ServerDied), so clients cannot exhaust the server.
                    if open.load(Ordering::Relaxed) >= MAX_RPC_CONNECTIONS {
                        continue;
                    }
                    open.fetch_add(1, Ordering::Relaxed);
                    let (service, cache, done) = (Arc::clone(&service), Arc::clone(&cache), Arc::clone(&open));
                    let conn = Connection { calls: c.requests, answers: c.replies };
                    let spawned = std::thread::Builder::new().name("conduit-rpc-conn".into()).spawn(move || {
                        let stats = conduit::rpc::ServeStats::default();
                        let _ = conduit::rpc::serve_with(&*service, conn, &cache, &stats);
                        done.fetch_sub(1, Ordering::Relaxed);
                    });
                    if spawned.is_err() {
                        open.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            })
            .map_err(|e| ClientError::Protocol(format!("cannot start a thread: {e}")))
    }

    /// Connect to the RPC service registered under `name`: a private
    /// connection over shared memory (the broker is not in the path);
    /// wrap it in the service's client stub (`CalculatorClient::new(…)`).
    pub fn connect_rpc(&self, name: &str) -> Result<conduit::rpc::Client, ClientError> {
        self.connect_rpc_over(name, conduit::rpc::Transport::SharedMemory)
    }

    /// [`connect_rpc`](Self::connect_rpc) over the channels of
    /// `transport`, chosen here: the server takes whatever it is handed.
    pub fn connect_rpc_over(
        &self,
        name: &str,
        transport: conduit::rpc::Transport,
    ) -> Result<conduit::rpc::Client, ClientError> {
        use conduit::rpc::{Answer, Call};
        let service: Sender<Connect<Call, Answer>> = self.lookup(name)?;
        let (client, conn) = conduit::rpc::pair_over(transport).map_err(broken)?;
        service.send(Connect { requests: conn.calls, replies: conn.answers }).map_err(broken)?;
        Ok(client)
    }

    /// Every object the broker holds.
    pub fn list(&self) -> Result<Vec<ObjectInfo>, ClientError> {
        Ok(ask!(self, Request::List, Reply::Listing(l) => l))
    }

    /// Every mailbox's messages in and out since it was made (what
    /// `conduit top` turns into rates).
    pub fn traffic(&self) -> Result<Vec<MailboxTraffic>, ClientError> {
        Ok(ask!(self, Request::Traffic, Reply::Traffic(t) => t))
    }
}

/// Run a queue operation that may wait as `wait` allows, in slices of at
/// most `slice`, asking `alive()` between them whether to go on (is the
/// broker still there). `None`: `alive()` said no.
fn in_slices<T>(
    wait: Deadline,
    slice: Duration,
    alive: impl Fn() -> bool,
    mut op: impl FnMut(Deadline) -> Result<T, QueueError>,
) -> Option<Result<T, QueueError>> {
    let until = match wait {
        Deadline::Never => return Some(op(Deadline::Never)),
        Deadline::Until(t) => Some(t),
        Deadline::Forever => None,
    };
    loop {
        let end = Instant::now() + slice;
        match op(Deadline::Until(until.map_or(end, |t| t.min(end)))) {
            Err(QueueError::Timeout) if until.is_none_or(|t| Instant::now() < t) => {
                if !alive() {
                    return None;
                }
            }
            r => return Some(r),
        }
    }
}

/// The inbox mailbox of process `pid`.
fn inbox(pid: u32) -> String {
    format!("{}{pid}", crate::protocol::INBOX_PREFIX)
}
