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
//! **The wire.** A call is a [`Call`] — an id, the method's name, the time
//! left to its deadline, and its arguments as one postcard tuple — and its
//! answer an [`Answer`] with the same id. Methods go by name, so a newer
//! server serves older clients and a client calling a method the server
//! does not have gets [`RpcError::UnknownMethod`] while the server goes on.
//! postcard is independent of endianness and word size (`docs/RPC.md`
//! gives the bytes of each type).
//!
//! **Semantics: at most once.** Each call has a fresh id on its
//! connection; the server answers a duplicate of a call it executed from
//! its reply cache (the last [`REPLY_CACHE`] answers) and refuses one older
//! than that ([`RpcError::Duplicate`]) — a call is never executed twice. A
//! call whose deadline passed before the server took it is not executed
//! ([`RpcError::DeadlineExceeded`]). If the server dies, or its side of the
//! connection closes, a waiting call ends with [`RpcError::ServerDied`] —
//! never a hang; whether the call ran is then unknown (at most once).
//!
//! **Deadlines travel**: a call made inside a handler gets at most the time
//! left to the call being handled ([`deadline`]), so deadlines shrink
//! across nested calls.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use crate::error::Error;

/// Answers a server keeps per connection to answer duplicates.
pub const REPLY_CACHE: usize = 1024;

/// A call on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Unique on its connection, increasing.
    pub id: u64,
    /// The method's name.
    pub method: String,
    /// Microseconds left to the deadline when sent (`None`: no deadline).
    pub budget_us: Option<u64>,
    /// The arguments: one postcard tuple.
    pub args: Vec<u8>,
}

/// An answer on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The call's id.
    pub id: u64,
    /// What came of it.
    pub outcome: Outcome,
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
    /// The channel failed otherwise.
    #[error("transport: {0}")]
    Transport(#[from] Error),
}

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// While a handler runs: the deadline of the call it handles (calls it
/// makes get no more time than that).
pub fn deadline() -> Option<Instant> {
    DEADLINE.with(Cell::get)
}

/// The client's side of a connection: sends [`Call`]s, receives
/// [`Answer`]s. One call at a time per client; open more connections for
/// calls in parallel.
#[derive(Debug)]
pub struct Client {
    link: Mutex<Link>,
    timeout: Mutex<Option<Duration>>,
}

#[derive(Debug)]
struct Link {
    tx: Sender<Call>,
    rx: Receiver<Answer>,
    next: u64,
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

/// A connection over a fresh pair of socket channels (in one process, or
/// to hand the server's side to another process inside a message).
pub fn pair() -> Result<(Client, Connection), Error> {
    let (call_tx, call_rx) = unbounded::<Call>()?;
    let (ans_tx, ans_rx) = unbounded::<Answer>()?;
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

impl Client {
    /// A client over any pair of channels to a server.
    pub fn new(tx: Sender<Call>, rx: Receiver<Answer>) -> Client {
        Client { link: Mutex::new(Link { tx, rx, next: 1 }), timeout: Mutex::new(None) }
    }

    /// Give every call at most `timeout` (`None`: no limit but an
    /// enclosing handler's deadline).
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        *self.timeout.lock().unwrap_or_else(|p| p.into_inner()) = timeout;
    }

    fn deadline(&self) -> Option<Instant> {
        let own = self.timeout.lock().unwrap_or_else(|p| p.into_inner()).map(|t| Instant::now() + t);
        match (own, deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Call `method` with `args` (a tuple) and decode its return value.
    pub fn call<A: Serialize, R: DeserializeOwned>(&self, method: &str, args: &A) -> Result<R, RpcError> {
        let args = postcard::to_stdvec(args).map_err(|e| RpcError::Transport(Error::Encode(e)))?;
        let bytes = self.call_raw(method, args)?;
        postcard::from_bytes(&bytes).map_err(|e| RpcError::CorruptReply(e.to_string()))
    }

    /// Call with arguments already encoded; the return value's bytes.
    pub fn call_raw(&self, method: &str, args: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        let deadline = self.deadline();
        let mut link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        let id = link.next;
        link.next += 1;
        let budget_us = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left.as_micros().min(u128::from(u64::MAX)) as u64),
                _ => return Err(RpcError::DeadlineExceeded),
            },
            None => None,
        };
        let call = Call { id, method: method.to_string(), budget_us, args };
        link.tx.send(call).map_err(|_| RpcError::ServerDied)?;
        loop {
            let answer = match deadline {
                Some(d) => match link.rx.recv_deadline(d) {
                    Ok(a) => a,
                    Err(RecvTimeoutError::Timeout) => return Err(RpcError::DeadlineExceeded),
                    Err(RecvTimeoutError::Disconnected) => return Err(RpcError::ServerDied),
                    Err(RecvTimeoutError::Failed(e)) => return Err(RpcError::Transport(e)),
                },
                None => match link.rx.recv() {
                    Ok(a) => a,
                    Err(crate::RecvError::Disconnected) => return Err(RpcError::ServerDied),
                    Err(crate::RecvError::Failed(e)) => return Err(RpcError::Transport(e)),
                },
            };
            // An answer to an earlier call that timed out here: late, skip.
            if answer.id != id {
                continue;
            }
            return match answer.outcome {
                Outcome::Returned(bytes) => Ok(bytes),
                Outcome::UnknownMethod(m) => Err(RpcError::UnknownMethod(m)),
                Outcome::BadArguments(e) => Err(RpcError::BadArguments(e)),
                Outcome::DeadlineExceeded => Err(RpcError::DeadlineExceeded),
                Outcome::Duplicate => Err(RpcError::Duplicate),
                Outcome::Panicked(m) => Err(RpcError::Panicked(m)),
            };
        }
    }
}

/// A service's dispatcher (generated by `#[conduit::service]`): run the
/// method named `method` on `args`.
pub trait Dispatch {
    /// Decode the arguments, call the method, encode what it returned.
    fn dispatch(&self, method: &str, args: &[u8]) -> Outcome;
}

/// Decode a method's arguments (for generated dispatchers).
pub fn decode_args<A: DeserializeOwned>(args: &[u8]) -> Result<A, Outcome> {
    postcard::from_bytes(args).map_err(|e| Outcome::BadArguments(e.to_string()))
}

/// Encode a method's return value (for generated dispatchers).
pub fn returned<R: Serialize>(value: &R) -> Outcome {
    match postcard::to_stdvec(value) {
        Ok(bytes) => Outcome::Returned(bytes),
        Err(e) => Outcome::Panicked(format!("the return value did not encode: {e}")),
    }
}

/// The reply cache of one connection (at most once).
#[derive(Default)]
struct Replies {
    answers: BTreeMap<u64, Outcome>,
    order: VecDeque<u64>,
    /// Every id up to this one was seen, or is older than the cache.
    forgotten_below: u64,
}

impl Replies {
    fn remember(&mut self, id: u64, outcome: &Outcome) {
        self.answers.insert(id, outcome.clone());
        self.order.push_back(id);
        while self.order.len() > REPLY_CACHE {
            if let Some(old) = self.order.pop_front() {
                self.answers.remove(&old);
                self.forgotten_below = self.forgotten_below.max(old + 1);
            }
        }
    }

    /// `Some`: the answer to give a call already seen.
    fn seen(&self, id: u64) -> Option<Outcome> {
        if let Some(o) = self.answers.get(&id) {
            return Some(o.clone());
        }
        (id < self.forgotten_below).then_some(Outcome::Duplicate)
    }
}

/// Serve one connection until the client goes: each call dispatched in
/// turn (a duplicate answered from the reply cache, a call past its
/// deadline refused, a panicking handler answered `Panicked`).
pub fn serve<D: Dispatch + ?Sized>(service: &D, conn: Connection) -> Result<(), Error> {
    let mut replies = Replies::default();
    for call in conn.calls.iter() {
        let taken = Instant::now();
        let outcome = match replies.seen(call.id) {
            Some(o) => o,
            None => {
                let outcome = match call.budget_us {
                    Some(0) => Outcome::DeadlineExceeded,
                    budget => run(service, &call, budget.map(|us| taken + Duration::from_micros(us))),
                };
                replies.remember(call.id, &outcome);
                outcome
            }
        };
        if conn.answers.send(Answer { id: call.id, outcome }).is_err() {
            break;
        }
    }
    Ok(())
}

fn run<D: Dispatch + ?Sized>(service: &D, call: &Call, deadline: Option<Instant>) -> Outcome {
    let before = DEADLINE.with(|d| d.replace(deadline));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| service.dispatch(&call.method, &call.args)))
        .unwrap_or_else(|p| {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Outcome::Panicked(what)
        });
    DEADLINE.with(|d| d.set(before));
    outcome
}

/// Run a blocking call off the async runtime (the `async` twins of
/// generated client methods): on tokio's blocking pool.
#[cfg(feature = "tokio")]
pub async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, RpcError> + Send + 'static,
) -> Result<R, RpcError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(RpcError::Panicked(e.to_string())),
    }
}

/// Run a blocking call off the async runtime (the `async` twins of
/// generated client methods): on a thread of its own, waking the task
/// when done (any executor).
#[cfg(not(feature = "tokio"))]
pub async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, RpcError> + Send + 'static,
) -> Result<R, RpcError> {
    use std::sync::Arc;
    use std::task::{Poll, Waker};
    type Slot<R> = Arc<Mutex<(Option<Result<R, RpcError>>, Option<Waker>)>>;
    let slot: Slot<R> = Arc::default();
    let theirs = Arc::clone(&slot);
    std::thread::spawn(move || {
        let r = f();
        let mut s = theirs.lock().unwrap_or_else(|p| p.into_inner());
        s.0 = Some(r);
        if let Some(w) = s.1.take() {
            w.wake();
        }
    });
    std::future::poll_fn(move |cx| {
        let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
        match s.0.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    })
    .await
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
        let call = Call { id: 300, method: "add".into(), budget_us: Some(1000), args };
        assert_eq!(postcard::to_stdvec(&call).unwrap(), [0xac, 0x02, 3, b'a', b'd', b'd', 1, 0xe8, 0x07, 2, 4, 5]);
        let answer = Answer { id: 300, outcome: Outcome::Returned(vec![0x02]) };
        assert_eq!(postcard::to_stdvec(&answer).unwrap(), [0xac, 0x02, 0, 1, 0x02]);
        let unknown = Answer { id: 1, outcome: Outcome::UnknownMethod("mul".into()) };
        assert_eq!(postcard::to_stdvec(&unknown).unwrap(), [1, 1, 3, b'm', b'u', b'l']);
    }

    #[test]
    fn the_reply_cache_answers_a_duplicate_and_refuses_a_forgotten_one() {
        let mut r = Replies::default();
        for id in 1..=(REPLY_CACHE as u64 + 10) {
            r.remember(id, &Outcome::Returned(vec![id as u8]));
        }
        assert_eq!(r.seen(REPLY_CACHE as u64 + 10), Some(Outcome::Returned(vec![(REPLY_CACHE + 10) as u8])));
        assert_eq!(r.seen(1), Some(Outcome::Duplicate));
        assert_eq!(r.seen(REPLY_CACHE as u64 + 11), None);
    }
}
