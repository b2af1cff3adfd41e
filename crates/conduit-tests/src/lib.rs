//! Messages between the cross-process tests and `conduit-test-child`.

use conduit::{Receiver, ReplyTo, Sender};
use serde::{Deserialize, Serialize};

/// What a test sends to a child.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToChild {
    /// A send right for `u64` messages.
    SendU64(Sender<u64>),
    /// A receive right for `u64` messages.
    RecvU64(Receiver<u64>),
    /// A send right for byte messages, and how many to send.
    SendBytes(Sender<Vec<u8>>, u64),
    /// A send right for strings.
    SendString(Sender<String>),
    /// A receive right for strings.
    RecvString(Receiver<String>),
    /// A receive right for requests.
    Serve(Receiver<Request>),
    /// A shared-memory segment.
    Segment(conduit::memory::Segment),
    /// A receive right for byte messages.
    RecvBytes(Receiver<conduit::Bytes>),
    /// A send right for byte messages.
    SendBytesRight(Sender<conduit::Bytes>),
    /// A send right for a stream of self-checking messages.
    SendStream(Sender<Vec<u64>>),
    /// The same, the stream tagged with a producer number.
    SendTaggedStream(Sender<Vec<u64>>, u64),
    /// The server's side of an RPC connection.
    Rpc(conduit::rpc::Connection),
    /// A reference to a remote object, to call, and where to pass a copy.
    PassRemote(conduit::rpc::Remote, Sender<conduit::rpc::Remote>),
    /// Where a reference to a remote object will come from.
    TakeRemote(Receiver<conduit::rpc::Remote>),
    /// Go on.
    Go,
}

/// What a child reports.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromChild {
    /// Ready, holding what it was given.
    Ready,
    /// About to block in a send.
    Blocking,
    /// Sent this many messages.
    Sent(u64),
    /// The outcome of an operation, by name (`Full`, `Timeout`, ...).
    Outcome(String),
    /// Received a message, with the sender's pid.
    Received(String, u32),
    /// Wrote this many scribbles into shared memory so far.
    Scribbled(u64),
}

/// A request for the `server` role.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Reply with the string upper-cased.
    Upper(String, ReplyTo<String>),
    /// Drop the reply right without answering.
    Ignore(ReplyTo<String>),
}

/// The self-checking message number `i` of a stream: `i` repeated
/// `1 + i % 64` times, so a torn or mixed-up message cannot pass.
pub fn stream_message(i: u64) -> Vec<u64> {
    tagged_stream_message(0, i)
}

/// Message `i` of producer `tag`'s stream (`tag` in the top 16 bits).
pub fn tagged_stream_message(tag: u64, i: u64) -> Vec<u64> {
    vec![tag << 48 | i; 1 + (i % 64) as usize]
}

/// xorshift64*: a small deterministic generator, so a failing seeded
/// case can be run again.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Switch this process to user and group `nobody` (65534).
pub fn become_nobody() {
    let gid = rustix::process::Gid::from_raw(65534);
    let uid = rustix::process::Uid::from_raw(65534);
    rustix::thread::set_thread_groups(&[]).expect("setgroups");
    rustix::thread::set_thread_res_gid(gid, gid, gid).expect("setresgid");
    rustix::thread::set_thread_res_uid(uid, uid, uid).expect("setresuid");
}

/// The calculator the RPC tests serve (`conduit-test-child rpc-server`).
#[conduit::service]
pub trait Calculator {
    /// a + b.
    fn add(&self, a: i64, b: i64) -> i64;
    /// Count one more call; the count after it.
    fn bump(&self) -> u64;
    /// The count.
    fn count(&self) -> u64;
    /// Wait until the test says `Go`; then the count.
    fn hold(&self) -> u64;
    /// Milliseconds left to this call's deadline, if it has one.
    fn budget_left_ms(&self) -> Option<u64>;
    /// Panic.
    fn boom(&self) -> u64;
    /// Work until the caller cancels (10 s at most); then add 1000 to the
    /// count if it was cancelled.
    fn until_cancelled(&self) -> bool;
    /// Send `0..n` into `to` (a stream the caller reads); how many went.
    fn fill(&self, to: Sender<u64>, n: u64) -> u64;
    /// A channel holding `0..n` whose sender is gone: the caller reads the
    /// numbers, then `Disconnected`.
    fn numbers(&self, n: u64) -> Receiver<u64>;
    /// A greeter living in this (the server's) process.
    fn greeter(&self) -> conduit::rpc::Remote;
    /// Ask `greeter` (an object living wherever its owner is) to greet `who`.
    fn greet_via(&self, greeter: conduit::rpc::Remote, who: String) -> String;
}

/// A newer calculator: one method more.
#[conduit::service]
pub trait CalculatorV2 {
    /// a + b.
    fn add(&self, a: i64, b: i64) -> i64;
    /// a × b.
    fn mul(&self, a: i64, b: i64) -> i64;
}

/// The calculator served by the test child.
pub struct Calc {
    count: std::sync::atomic::AtomicU64,
    go: std::sync::Mutex<Receiver<ToChild>>,
}

impl Calc {
    /// A calculator whose `hold` waits for `Go` on `go`.
    pub fn new(go: Receiver<ToChild>) -> Calc {
        Calc { count: Default::default(), go: std::sync::Mutex::new(go) }
    }
}

impl Calculator for Calc {
    fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
    fn bump(&self) -> u64 {
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
    }
    fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn hold(&self) -> u64 {
        let _ = self.go.lock().unwrap().recv();
        self.count()
    }
    fn budget_left_ms(&self) -> Option<u64> {
        conduit::rpc::deadline().map(|d| d.saturating_duration_since(std::time::Instant::now()).as_millis() as u64)
    }
    fn boom(&self) -> u64 {
        panic!("boom")
    }
    fn until_cancelled(&self) -> bool {
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_secs(10) {
            if conduit::rpc::cancelled() {
                self.count.fetch_add(1000, std::sync::atomic::Ordering::SeqCst);
                return true;
            }
            std::thread::yield_now();
        }
        false
    }
    fn fill(&self, to: Sender<u64>, n: u64) -> u64 {
        (0..n).take_while(|i| to.send(*i).is_ok()).count() as u64
    }
    fn numbers(&self, n: u64) -> Receiver<u64> {
        let (tx, rx) = conduit::unbounded().expect("a channel");
        for i in 0..n {
            tx.send(i).expect("the receiver is here");
        }
        rx
    }
    fn greeter(&self) -> conduit::rpc::Remote {
        let (dropped, _) = conduit::unbounded().expect("a channel");
        conduit::rpc::Remote::serve(GreeterServer(Greet { dropped })).expect("a remote object")
    }
    fn greet_via(&self, greeter: conduit::rpc::Remote, who: String) -> String {
        GreeterClient::new(greeter.client()).greet(who).unwrap_or_else(|e| format!("failed: {e}"))
    }
}

/// A remote object's service in the tests.
#[conduit::service]
pub trait Greeter {
    /// "hello, WHO from PID".
    fn greet(&self, who: String) -> String;
}

/// A greeter that says when it is dropped.
pub struct Greet {
    /// Told when the greeter is dropped.
    pub dropped: Sender<()>,
}

impl Greeter for Greet {
    fn greet(&self, who: String) -> String {
        format!("hello, {who}, from {}", std::process::id())
    }
}

impl Drop for Greet {
    fn drop(&mut self) {
        let _ = self.dropped.send(());
    }
}
