//! Remote procedure calls over any conduit channel (M7): the runtime under
//! the stubs that [`#[conduit::service]`](crate::service) generates from a
//! trait.
//!
//! ```
//! #[conduit::service]
//! pub trait Calculator {
//!     fn add(&self, a: i64, b: i64) -> i64;
//! }
//!
//! struct Adder;
//! impl Calculator for Adder {
//!     fn add(&self, a: i64, b: i64) -> i64 { a + b }
//! }
//!
//! // A connection: any pair of conduit channels (shared memory, sockets,
//! // pipes, TCP); the server side usually lives in another process.
//! let (client, server) = conduit::rpc::pair()?;
//! std::thread::spawn(move || conduit::rpc::serve(&CalculatorServer(Adder), server));
//! let calc = CalculatorClient::new(client);
//! assert_eq!(calc.add(2, 3)?, 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **The wire.** A call is a [`Call`] — its client's id (0: none), a
//! sequence number, the method's name, the time left to its deadline, the
//! client's "every call below this one is done", and the arguments as one
//! postcard tuple — and its answer an [`Answer`] with the same number.
//! Methods go by name, so a newer server serves older clients and a client
//! calling a method the server does not have gets
//! [`RpcError::UnknownMethod`] while the server goes on (`docs/RPC.md`
//! gives the bytes).
//!
//! **Semantics** ([`Semantics`], chosen per client):
//!
//! * **at most once** (the default): the server answers a duplicate of a
//!   call it executed from its reply cache (the last [`REPLY_CACHE`]
//!   answers of the connection) and refuses one older than that
//!   ([`RpcError::Duplicate`]) — a call never runs twice. If the server
//!   dies, a waiting call ends with [`RpcError::ServerDied`] (whether it
//!   ran is unknown).
//! * **exactly once**: the client has an id of its own (random, 64 bits)
//!   that outlives connections ([`Client::reconnect`]); the server keeps
//!   answers by (client, sequence) in a [`ReplyCache`] shared by all its
//!   connections — durably on disk when asked
//!   ([`ReplyCache::durable`], `redb`, feature `durable`), so a call
//!   answered before a crash is answered again, not run again, after the
//!   restart. The client resends a call that got no answer in time
//!   ([`Client::set_retry`]) until it is answered or its deadline passes.
//!   Retention and the window where a duplicate could run again:
//!   [`ReplyCache`].
//!
//! **Deadlines travel**: a call made inside a handler gets at most the time
//! left to the call being handled ([`deadline`]), so deadlines shrink
//! across nested calls. **Corruption**: a frame that fails its checksum is
//! counted ([`Client::corrupted`], [`ServeStats`]) and dropped; the resend
//! recovers the call. **Faults on purpose**: [`faults`] relays calls and
//! answers through a seeded injector of drops, duplicates, reorderings,
//! corruptions and delays.

mod carried;
pub mod faults;
mod pipeline;
mod remote;
mod server;
#[cfg(feature = "durable")]
mod store;

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use crate::error::Error;

pub use carried::Carried;
pub use remote::{ObjectCall, Remote};
pub use server::{CLIENT_LEASE, Dispatch, ReplyCache, ServeStats, cancelled, decode_args, returned, serve, serve_with};

/// The method name of a cancellation: the call it names (`id`) need not
/// be finished; its handler learns it from [`cancelled`]. (No Rust method
/// has this name.)
pub const CANCEL: &str = "!cancel";

/// The method name of a batch: its arguments are a postcard `Vec<Call>`
/// (with the rights they hold), its call number 0; the server handles each
/// call as if it came alone and sends their answers in one `Answer`
/// numbered 0 with the outcome `Batch`. A client sends an empty batch
/// first: a server that answers it with an empty `Batch` takes batches; an older one
/// answers `UnknownMethod` and gets single calls. (No Rust method has this
/// name.)
pub const BATCH: &str = "!batch";

/// Answers a server keeps per client (or per connection, for clients
/// without an id) to answer duplicates.
pub const REPLY_CACHE: usize = 1024;

/// How long a client waiting for an answer, and a server waiting for the
/// next call, look again and again (non-blocking receives) before they
/// sleep in the kernel, on links that do not spin by themselves (sockets,
/// pipes, kernel queues; shared memory has its own adaptive spin). A
/// kernel wake-up across cores costs tens of microseconds on a virtual
/// machine; an answer that comes within this window is taken without one.
/// The price is CPU: at most this long per call on each side, reported by
/// `conduit bench` as `cpu_per_call_ns`.
pub const SPIN: Duration = Duration::from_micros(50);

/// The spin half of spin-then-park: the next message if one comes within
/// [`SPIN`] (or by `until`), its error, or `None` (go to sleep). Links that
/// spin by themselves are not spun on here.
pub(crate) fn spin_recv<T: DeserializeOwned>(
    rx: &Receiver<T>,
    until: Option<Instant>,
) -> Option<Result<T, RecvTimeoutError>> {
    if rx.spins_before_sleep() {
        return None;
    }
    let start = Instant::now();
    // Senders count a message just before they send it: once the count
    // moved, receive again and again for a moment, until it lands.
    let mut landing: Option<Instant> = None;
    loop {
        // Read before the receive: a message sent after it moves the count.
        let sent = rx.sent_hint();
        match rx.try_recv() {
            Ok(m) => return Some(Ok(m)),
            Err(crate::TryRecvError::Empty) => {}
            Err(crate::TryRecvError::Disconnected) => return Some(Err(RecvTimeoutError::Disconnected)),
            Err(crate::TryRecvError::Failed(e)) => return Some(Err(RecvTimeoutError::Failed(e))),
        }
        let over = |now: Instant| now.duration_since(start) >= SPIN || until.is_some_and(|u| now >= u);
        if let Some(t) = landing {
            let now = Instant::now();
            if over(now) {
                return None;
            }
            if now < t {
                std::hint::spin_loop();
                continue;
            }
            landing = None;
        }
        // Look again once the senders' count moved (a load from shared
        // memory, not a system call that also contends for the socket's
        // lock with the sender), or at once on links without one.
        loop {
            let now = Instant::now();
            if over(now) {
                return None;
            }
            std::hint::spin_loop();
            if sent.is_none() {
                break;
            }
            if rx.sent_hint() != sent {
                landing = Some(now + LANDING);
                break;
            }
        }
    }
}

/// How long a spinning receiver keeps receiving after the senders' count
/// moved, for the message counted just before its send (a send takes a
/// microsecond or two here; a count that moved for nothing — a send that
/// failed, a hostile sender — costs this much, then the count is watched
/// again).
const LANDING: Duration = Duration::from_micros(10);

/// A call on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The client's id (exactly once), or 0 (at most once, per connection).
    pub client: u64,
    /// The call's sequence number: unique for its client (or connection),
    /// increasing.
    pub id: u64,
    /// Every call of this client numbered below this is answered and will
    /// not be resent: the server may forget their answers.
    pub done_below: u64,
    /// The method's name.
    pub method: String,
    /// Microseconds left to the deadline when sent (`None`: no deadline).
    pub budget_us: Option<u64>,
    /// The arguments: one postcard tuple.
    pub args: Vec<u8>,
    /// The rights the arguments hold (channel ends, remote objects): on
    /// the wire, their indices in the frame's rights table.
    pub rights: Carried,
}

/// A [`Call`] borrowed for sending: the same fields, the same bytes.
#[derive(Serialize)]
struct CallRef<'a> {
    client: u64,
    id: u64,
    done_below: u64,
    method: &'a str,
    budget_us: Option<u64>,
    args: &'a [u8],
    rights: &'a Carried,
}

/// An answer on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The call's sequence number.
    pub id: u64,
    /// What came of it.
    pub outcome: Outcome,
    /// The rights the return value holds (as [`Call::rights`]).
    pub rights: Carried,
}

/// What came of a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// It ran: the return value, postcard.
    Returned(Vec<u8>),
    /// The server has no such method.
    UnknownMethod(String),
    /// The arguments did not decode as the method's.
    BadArguments(String),
    /// Its deadline passed before the server took it: not executed.
    DeadlineExceeded,
    /// A duplicate older than the reply cache: refused, not executed.
    Duplicate,
    /// The handler panicked (the server goes on).
    Panicked(String),
    /// The answers to a batch of calls (see [`BATCH`]): a postcard
    /// `Vec<Answer>`, the rights they hand over in this answer's `rights`
    /// (bytes, not a nested type: the common answers' code stays flat).
    Batch(Vec<u8>),
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The server died or closed the connection; the call may or may not
    /// have run (at most once).
    #[error("the server died or closed the connection")]
    ServerDied,
    /// The deadline passed (on the client, or before the server took it).
    #[error("the deadline passed")]
    DeadlineExceeded,
    /// The server has no such method (an older server).
    #[error("the server has no method {0}")]
    UnknownMethod(String),
    /// The server could not decode the arguments (a different signature).
    #[error("the server could not decode the arguments: {0}")]
    BadArguments(String),
    /// The reply did not decode as the method's return type.
    #[error("the reply did not decode: {0}")]
    CorruptReply(String),
    /// The server refused a duplicate it no longer remembers.
    #[error("a duplicate call the server no longer remembers was refused")]
    Duplicate,
    /// The handler panicked.
    #[error("the handler panicked: {0}")]
    Panicked(String),
    /// The caller cancelled the call (dropped its future); the server was
    /// told.
    #[error("the call was cancelled")]
    Cancelled,
    /// The channel failed otherwise.
    #[error("transport: {0}")]
    Transport(#[from] Error),
}

/// A client's call semantics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Semantics {
    /// Per connection: duplicates answered from the cache, never run twice.
    #[default]
    AtMostOnce,
    /// Per client, across connections and (with a durable cache) server
    /// restarts: resent until answered, run once.
    ExactlyOnce,
}

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// While a handler runs: the deadline of the call it handles (calls it
/// makes get no more time than that).
pub fn deadline() -> Option<Instant> {
    DEADLINE.with(Cell::get)
}

pub(crate) fn set_deadline(d: Option<Instant>) -> Option<Instant> {
    DEADLINE.with(|c| c.replace(d))
}

/// The client's side of a connection: sends [`Call`]s, receives
/// [`Answer`]s. Blocking calls go one at a time, each reading its own
/// answer (no thread between); the first `async` call
/// ([`call_async`](Self::call_async)) switches the client to pipelining:
/// a reader thread hands each answer to its call, so any number of calls
/// (async, or blocking from several threads) are in flight together.
#[derive(Debug)]
pub struct Client {
    link: Mutex<Link>,
    settings: Mutex<Settings>,
    client: u64,
    corrupted: std::sync::Arc<AtomicU64>,
    resent: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    timeout: Option<Duration>,
    retry: Option<Duration>,
}

#[derive(Debug)]
struct Link {
    route: Route,
    next: u64,
}

/// Where calls go.
#[derive(Debug)]
enum Route {
    /// A connection: calls one way, answers the other.
    Pair { tx: Sender<Call>, rx: Box<Receiver<Answer>> },
    /// The same, its answers read by a pipeline's thread.
    Pipelined(std::sync::Arc<pipeline::Pipeline>),
    /// Broken (a pipeline could not start).
    Gone,
    /// A remote object's port: each call carries its own reply right.
    Port(Sender<ObjectCall>),
}

/// The server's side of a connection (it can travel inside a message, to
/// a server process).
#[derive(Debug, Serialize, Deserialize)]
pub struct Connection {
    /// Calls from the client.
    pub calls: Receiver<Call>,
    /// Answers to it.
    pub answers: Sender<Answer>,
}

/// The channels a connection made here runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Transport {
    /// Rings in shared memory (one host; the fastest: no system call per
    /// call while both sides are busy).
    #[default]
    SharedMemory,
    /// Unix seqpacket sockets.
    Socket,
    /// Ordinary pipes.
    Pipe,
}

/// A connection over a fresh pair of socket channels (in one process, or
/// to hand the server's side to another process inside a message).
pub fn pair() -> Result<(Client, Connection), Error> {
    pair_over(Transport::Socket)
}

/// Calls (and answers) a shared-memory connection holds: a client has one
/// call out at a time, and a few resends.
const RING_CALLS: usize = 64;

/// A connection over fresh channels of `transport` (sockets and pipes
/// unbounded; shared memory bounded to 64 messages, which a
/// client with one call out at a time never fills: the bounded ring takes
/// the short paths).
pub fn pair_over(transport: Transport) -> Result<(Client, Connection), Error> {
    let ((call_tx, call_rx), (ans_tx, ans_rx)) = match transport {
        Transport::SharedMemory => {
            (crate::channel::shm::bounded(RING_CALLS)?, crate::channel::shm::bounded(RING_CALLS)?)
        }
        Transport::Socket => (unbounded::<Call>()?, unbounded::<Answer>()?),
        Transport::Pipe => (crate::channel::pipe::unbounded()?, crate::channel::pipe::unbounded()?),
    };
    Ok(connect(call_tx, call_rx, ans_tx, ans_rx))
}

/// A connection over two channels of any transport made by the caller
/// (shared memory, pipes, message queues…): the client keeps `call_tx`
/// and `answer_rx`, the server gets the other two.
pub fn connect(
    call_tx: Sender<Call>,
    call_rx: Receiver<Call>,
    answer_tx: Sender<Answer>,
    answer_rx: Receiver<Answer>,
) -> (Client, Connection) {
    (Client::new(call_tx, answer_rx), Connection { calls: call_rx, answers: answer_tx })
}

fn random_id() -> u64 {
    let mut b = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    u64::from_ne_bytes(b).max(1)
}

impl Client {
    /// An at-most-once client over any pair of channels to a server.
    pub fn new(tx: Sender<Call>, rx: Receiver<Answer>) -> Client {
        Client::with_semantics(tx, rx, Semantics::AtMostOnce)
    }

    /// A client with the given semantics. Exactly once: an id of its own,
    /// and calls resent every 100 ms until answered
    /// ([`set_retry`](Self::set_retry)).
    pub fn with_semantics(tx: Sender<Call>, rx: Receiver<Answer>, semantics: Semantics) -> Client {
        // Answers need not say who sent them (the kernel's work per
        // message is less without).
        let _ = rx.without_credentials();
        let (client, retry) = match semantics {
            Semantics::AtMostOnce => (0, None),
            Semantics::ExactlyOnce => (random_id(), Some(Duration::from_millis(100))),
        };
        Client {
            link: Mutex::new(Link { route: Route::Pair { tx, rx: Box::new(rx) }, next: 1 }),
            settings: Mutex::new(Settings { timeout: None, retry }),
            client,
            corrupted: Default::default(),
            resent: AtomicU64::new(0),
        }
    }

    /// A client of a remote object's port (see [`Remote`]).
    pub(crate) fn over_port(port: Sender<ObjectCall>) -> Client {
        Client {
            link: Mutex::new(Link { route: Route::Port(port), next: 1 }),
            settings: Mutex::new(Settings { timeout: None, retry: None }),
            client: 0,
            corrupted: Default::default(),
            resent: AtomicU64::new(0),
        }
    }

    /// The client's id (0: at most once, no id).
    pub fn id(&self) -> u64 {
        self.client
    }

    /// Give every call at most `timeout` (`None`: no limit but an
    /// enclosing handler's deadline).
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        self.settings.lock().unwrap_or_else(|p| p.into_inner()).timeout = timeout;
    }

    /// Resend a call that got no answer within `every` (the server answers
    /// a duplicate from its cache); `None`: never.
    pub fn set_retry(&self, every: Option<Duration>) {
        self.settings.lock().unwrap_or_else(|p| p.into_inner()).retry = every;
    }

    /// Continue on new channels to a server (after the old one died or
    /// restarted): the id and the sequence go on, so an exactly-once call
    /// resent here is answered, not run again, by a server that answered
    /// it before (its reply cache durable).
    pub fn reconnect(&self, tx: Sender<Call>, rx: Receiver<Answer>) {
        let mut link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        link.route = Route::Pair { tx, rx: Box::new(rx) };
    }

    /// Frames that failed their checksum (dropped; the call was resent).
    pub fn corrupted(&self) -> u64 {
        self.corrupted.load(Ordering::Relaxed)
    }

    /// Calls resent for want of an answer in time.
    pub fn resent(&self) -> u64 {
        self.resent.load(Ordering::Relaxed)
    }

    /// Calls that went in batches (several async calls in flight, on a
    /// link where a send is a system call; see [`BATCH`]).
    pub fn batched(&self) -> u64 {
        match &self.link.lock().unwrap_or_else(|p| p.into_inner()).route {
            Route::Pipelined(p) => p.batched.load(Ordering::Relaxed),
            _ => 0,
        }
    }

    fn settings(&self) -> Settings {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Call `method` with `args` (a tuple) and decode its return value.
    /// Arguments may hold rights (a `Sender`, a `Receiver`, a [`Remote`]):
    /// they travel with the call, on transports that carry rights.
    pub fn call<A: Serialize, R: DeserializeOwned>(&self, method: &str, args: &A) -> Result<R, RpcError> {
        let (args, rights) = carried::encode(args).map_err(|e| RpcError::Transport(Error::Encode(e)))?;
        let (bytes, rights) = self.call_inner(method, args, rights, None)?;
        carried::decode(&bytes, &rights).map_err(|e| RpcError::CorruptReply(e.to_string()))
    }

    /// Call with arguments already encoded; the return value's bytes.
    pub fn call_raw(&self, method: &str, args: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        self.call_inner(method, args, Carried::default(), None).map(|(bytes, _)| bytes)
    }

    /// [`call`](Self::call) that ends with [`RpcError::Cancelled`] as soon
    /// as `cancel` has a message or its senders are gone, telling the
    /// server (whose handler sees [`cancelled`]). The `async` twins of
    /// generated methods use this: dropping the future cancels the call.
    pub fn call_cancellable<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
        cancel: &Receiver<()>,
    ) -> Result<R, RpcError> {
        let (args, rights) = carried::encode(args).map_err(|e| RpcError::Transport(Error::Encode(e)))?;
        let (bytes, rights) = self.call_inner(method, args, rights, Some(cancel))?;
        carried::decode(&bytes, &rights).map_err(|e| RpcError::CorruptReply(e.to_string()))
    }

    fn call_inner(
        &self,
        method: &str,
        args: Vec<u8>,
        rights: Carried,
        cancel: Option<&Receiver<()>>,
    ) -> Result<(Vec<u8>, Carried), RpcError> {
        let settings = self.settings();
        let deadline = match (settings.timeout.map(|t| Instant::now() + t), deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        let id = link.next;
        link.next += 1;
        let budget = |now: Instant| match deadline {
            Some(d) => match d.checked_duration_since(now) {
                Some(left) if !left.is_zero() => Ok(Some(left.as_micros().min(u128::from(u64::MAX)) as u64)),
                _ => Err(RpcError::DeadlineExceeded),
            },
            None => Ok(None),
        };
        let mut call =
            Call { client: self.client, id, done_below: id, method: String::new(), budget_us: None, args, rights };
        let (tx, rx) = match &link.route {
            Route::Pair { tx, rx } => (tx, rx),
            Route::Gone => return Err(RpcError::ServerDied),
            Route::Pipelined(p) => {
                let p = std::sync::Arc::clone(p);
                drop(link);
                let answer = p.call_blocking(
                    self.client,
                    method,
                    (call.args, call.rights),
                    deadline,
                    settings.retry,
                    &self.resent,
                )?;
                return answer_result(answer);
            }
            Route::Port(port) => {
                call.method = method.to_string();
                call.budget_us = budget(Instant::now())?;
                let answer = match deadline {
                    Some(d) => port
                        .call_timeout(|reply| ObjectCall { call, reply }, d.saturating_duration_since(Instant::now())),
                    None => port.call(|reply| ObjectCall { call, reply }),
                };
                return match answer {
                    Ok(answer) => answer_result(answer),
                    Err(crate::CallError::Timeout) => Err(RpcError::DeadlineExceeded),
                    Err(crate::CallError::Disconnected | crate::CallError::NoReply) => Err(RpcError::ServerDied),
                    Err(crate::CallError::Failed(e)) => Err(RpcError::Transport(e)),
                };
            }
        };
        loop {
            call.budget_us = if deadline.is_some() { budget(Instant::now())? } else { None };
            // Sent borrowed (the same bytes as a `Call`): a resend sends
            // the same call again.
            let out = CallRef {
                client: call.client,
                id: call.id,
                done_below: call.done_below,
                method,
                budget_us: call.budget_us,
                args: &call.args,
                rights: &call.rights,
            };
            tx.send_ref(&out, crate::sys::Deadline::Forever).map_err(sent_error)?;
            // Until an answer, the deadline, or time to resend.
            let wait_until = match (deadline, settings.retry) {
                (Some(d), Some(r)) => Some(d.min(Instant::now() + r)),
                (d, r) => d.or(r.map(|r| Instant::now() + r)),
            };
            let got = match cancel {
                None => self.await_answer(rx, id, wait_until),
                Some(c) => self.await_answer_or_cancel(rx, id, wait_until, c),
            };
            match got {
                Err(RpcError::Cancelled) => {
                    let _ = tx.send(Call {
                        client: self.client,
                        id,
                        done_below: id,
                        method: CANCEL.into(),
                        budget_us: None,
                        args: Vec::new(),
                        rights: Carried::default(),
                    });
                    return Err(RpcError::Cancelled);
                }
                Err(e) => return Err(e),
                Ok(Some(answer)) => return answer_result(answer),
                Ok(None) if deadline.is_some_and(|d| Instant::now() >= d) => return Err(RpcError::DeadlineExceeded),
                Ok(None) => {
                    self.resent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// As [`await_answer`](Self::await_answer), also waking for `cancel`.
    fn await_answer_or_cancel(
        &self,
        answers_rx: &Receiver<Answer>,
        id: u64,
        until: Option<Instant>,
        cancel: &Receiver<()>,
    ) -> Result<Option<Answer>, RpcError> {
        loop {
            let mut set = crate::PortSet::new();
            let answers = set.add(answers_rx);
            let stop = set.add(cancel);
            let ready = match until {
                Some(t) => set.ready_deadline(t),
                None => Some(set.ready()),
            };
            match ready {
                None => return Ok(None),
                Some(i) if i == stop => return Err(RpcError::Cancelled),
                Some(i) if i == answers => {
                    if let Some(o) = self.await_answer(answers_rx, id, Some(Instant::now()))? {
                        return Ok(Some(o));
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// Call `method` without blocking: the call is sent at once and its
    /// answer wakes the task (any executor). Calls are in flight together
    /// (the first one switches the client to pipelining). Dropping the
    /// future cancels the call and tells the server
    /// ([`cancelled`]). The client's timeout travels as the call's budget;
    /// to stop waiting, drop the future (e.g. `tokio::time::timeout`). With
    /// [`set_retry`](Self::set_retry), a call with no answer in time is
    /// resent, as a blocking one is.
    /// On a remote object's reference the call is made in place.
    pub async fn call_async<A: Serialize, R: DeserializeOwned>(&self, method: &str, args: &A) -> Result<R, RpcError> {
        let pipe = match self.pipeline()? {
            Some(p) => p,
            None => return self.call(method, args),
        };
        let encoded = carried::encode(args).map_err(|e| RpcError::Transport(Error::Encode(e)))?;
        let settings = self.settings();
        let budget = settings.timeout.map(|t| t.as_micros().min(u128::from(u64::MAX)) as u64);
        let answer = pipe.call(self.client, method, budget, encoded, settings.retry, &self.resent).await?;
        let (bytes, rights) = answer_result(answer)?;
        carried::decode(&bytes, &rights).map_err(|e| RpcError::CorruptReply(e.to_string()))
    }

    /// The pipeline, started on first use (`None`: a remote object's
    /// reference, which needs none).
    fn pipeline(&self) -> Result<Option<std::sync::Arc<pipeline::Pipeline>>, RpcError> {
        let mut link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        match &link.route {
            Route::Pipelined(p) => return Ok(Some(std::sync::Arc::clone(p))),
            Route::Port(_) => return Ok(None),
            Route::Gone => return Err(RpcError::ServerDied),
            Route::Pair { .. } => {}
        }
        let Route::Pair { tx, rx } = std::mem::replace(&mut link.route, Route::Gone) else {
            unreachable!("matched above")
        };
        let p = pipeline::Pipeline::start(tx, *rx, link.next, std::sync::Arc::clone(&self.corrupted))?;
        let p = std::sync::Arc::new(p);
        link.route = Route::Pipelined(std::sync::Arc::clone(&p));
        Ok(Some(p))
    }

    /// The answer to call `id`, or `None` at `until`.
    fn await_answer(&self, rx: &Receiver<Answer>, id: u64, until: Option<Instant>) -> Result<Option<Answer>, RpcError> {
        loop {
            let got = match spin_recv(rx, until) {
                Some(got) => got,
                None => match until {
                    Some(t) => rx.recv_deadline(t),
                    None => rx.recv().map_err(|e| match e {
                        crate::RecvError::Disconnected => RecvTimeoutError::Disconnected,
                        crate::RecvError::Failed(e) => RecvTimeoutError::Failed(e),
                    }),
                },
            };
            match got {
                // Answers to earlier calls (a duplicate's second answer, a
                // call that timed out here) are skipped.
                Ok(a) if a.id == id => return Ok(Some(a)),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => return Err(RpcError::ServerDied),
                Err(RecvTimeoutError::Failed(Error::Wire(_))) => {
                    // A frame that failed its checksum (or was malformed):
                    // dropped; the resend recovers the call.
                    self.corrupted.fetch_add(1, Ordering::Relaxed);
                }
                Err(RecvTimeoutError::Failed(e)) => return Err(RpcError::Transport(e)),
            }
        }
    }
}

/// Why a call could not be sent: the server is gone, or the transport
/// refused it (a right on a link that carries none, an encoding error).
pub(crate) fn sent_error(e: crate::channel::SendFail) -> RpcError {
    match e {
        crate::channel::SendFail::Failed(e) => RpcError::Transport(e),
        _ => RpcError::ServerDied,
    }
}

/// The caller's view of an answer: the return value's bytes and rights.
fn answer_result(answer: Answer) -> Result<(Vec<u8>, Carried), RpcError> {
    outcome_result(answer.outcome).map(|bytes| (bytes, answer.rights))
}

/// The caller's view of an outcome.
fn outcome_result(outcome: Outcome) -> Result<Vec<u8>, RpcError> {
    match outcome {
        Outcome::Returned(bytes) => Ok(bytes),
        Outcome::UnknownMethod(m) => Err(RpcError::UnknownMethod(m)),
        Outcome::BadArguments(e) => Err(RpcError::BadArguments(e)),
        Outcome::DeadlineExceeded => Err(RpcError::DeadlineExceeded),
        Outcome::Duplicate => Err(RpcError::Duplicate),
        Outcome::Panicked(m) => Err(RpcError::Panicked(m)),
        Outcome::Batch(_) => Err(RpcError::CorruptReply("a batch's answers as the answer to one call".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a call are pinned: postcard, fields in order, varints
    /// (zigzag for signed integers), strings and byte strings with a
    /// varint length, `Option` as 0 / 1 + value.
    #[test]
    fn a_call_and_an_answer_have_exactly_these_bytes() {
        let args = postcard::to_stdvec(&(2i64, -3i64)).unwrap();
        assert_eq!(args, [4, 5]);
        let rights = Carried::default();
        let call =
            Call { client: 0, id: 300, done_below: 300, method: "add".into(), budget_us: Some(1000), args, rights };
        // The last byte: no rights (an empty list of table indices).
        assert_eq!(
            postcard::to_stdvec(&call).unwrap(),
            [0, 0xac, 0x02, 0xac, 0x02, 3, b'a', b'd', b'd', 1, 0xe8, 0x07, 2, 4, 5, 0]
        );
        // The borrowed form a client sends is the same bytes.
        let borrowed = CallRef {
            client: 0,
            id: 300,
            done_below: 300,
            method: "add",
            budget_us: Some(1000),
            args: &call.args,
            rights: &call.rights,
        };
        assert_eq!(postcard::to_stdvec(&borrowed).unwrap(), postcard::to_stdvec(&call).unwrap());
        let answer = Answer { id: 300, outcome: Outcome::Returned(vec![0x02]), rights: Carried::default() };
        assert_eq!(postcard::to_stdvec(&answer).unwrap(), [0xac, 0x02, 0, 1, 0x02, 0]);
        let unknown = Answer { id: 1, outcome: Outcome::UnknownMethod("mul".into()), rights: Carried::default() };
        assert_eq!(postcard::to_stdvec(&unknown).unwrap(), [1, 1, 3, b'm', b'u', b'l', 0]);
    }
}
