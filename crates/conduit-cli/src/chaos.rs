//! `conduit chaos`: randomized `kill -9` trials over every transport and
//! object kind.
//!
//! A trial picks a kind (a channel of one transport, a broker mailbox, a
//! name, an RPC connection, the broker itself), a side to kill, a moment
//! (after a random number of messages) and message sizes, starts a child
//! process of this binary (`conduit __chaos-child`), streams self-checking
//! messages between it and this process, and kills the chosen side with
//! `SIGKILL`. This process is always the survivor; it checks:
//!
//! - it learns of the death (a disconnection, an error, an event) and how
//!   long that took (`detect_*_ms`; over 5 s is a **hang**);
//! - every message it got is one that was sent, whole (else **corrupt**),
//!   in order and once (else **duplicates**; a gap is **lost**); the child,
//!   when it receives, checks the same and exits with a code that says so;
//! - nothing acknowledged is lost: a mailbox holds every message its
//!   killed sender was told was queued, a message a killed receiver took
//!   without acknowledging is given back, and a durable mailbox holds every
//!   acknowledged message after the broker is killed and restarted;
//! - nothing is left behind (**leaks**): no child process or zombie, no
//!   entry in `/dev/shm` or `/dev/mqueue`, no System V object, no socket
//!   file, and this process's descriptors and shared mappings are back at
//!   their count before the trial (given up to a second to settle: a
//!   monitor thread may close a descriptor just after the call returns).

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conduit::process::{Command, Linked};
use conduit::rpc::{self, Answer, Call, Connection};
use conduit::{Bytes, Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use conduit_broker::{BrokerError, Capacity, Client, ClientError, MailboxOptions, NameFlags, OnFull, WaitFor};
use serde::{Deserialize, Serialize};

/// `conduit chaos` arguments.
#[derive(clap::Args)]
pub struct ChaosArgs {
    /// How many trials.
    #[arg(long, default_value_t = 200)]
    trials: u64,
    /// Seed of every random choice (default: from the clock); the same
    /// seed makes the same choices.
    #[arg(long)]
    seed: Option<u64>,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Only these kinds (comma-separated; default all): socket, shm, pipe,
    /// fifo, tcp, unix-stream, sysv, mqueue, mailbox-shm, mailbox-durable,
    /// name, rpc, broker.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Print every trial.
    #[arg(long, short)]
    verbose: bool,
}

/// Every kind a trial can be of.
const KINDS: &[&str] = &[
    "socket",
    "shm",
    "pipe",
    "fifo",
    "tcp",
    "unix-stream",
    "sysv",
    "mqueue",
    "mailbox-shm",
    "mailbox-durable",
    "name",
    "rpc",
    "broker",
];

/// How long the survivor waits to learn of a death before it is a hang.
const HANG: Duration = Duration::from_secs(5);

/// Capacity of the channels and mailboxes of a trial.
const CAPACITY: usize = 16;

/// Child exit codes.
const EXIT_CORRUPT: i32 = 3;
const EXIT_ORDER: i32 = 4;
const EXIT_SETUP: i32 = 5;

// ------------------------------------------------------------ randomness

/// splitmix64: every choice of a run follows from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// A message size up to `max`: mostly small, some middling, a few large.
    fn size(&mut self, max: usize) -> usize {
        let cap = match self.below(100) {
            0..70 => 256,
            70..95 => 8192,
            _ => max,
        };
        (self.below(cap.min(max) as u64 + 1)) as usize
    }
}

// ------------------------------------------------------------ messages

/// A self-checking message: `seq` (8 bytes), length (4), a checksum (8),
/// then the body, every byte a function of `seq` and its position.
fn message(seq: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(20 + len);
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    body(seq, len, &mut v);
    let sum = checksum(&v[20..]) ^ seq;
    v[12..20].copy_from_slice(&sum.to_le_bytes());
    v
}

fn body(seq: u64, len: usize, out: &mut Vec<u8>) {
    let mut r = Rng(seq ^ 0x5eed);
    let mut word = 0;
    for i in 0..len {
        if i % 8 == 0 {
            word = r.next();
        }
        out.push((word >> ((i % 8) * 8)) as u8);
    }
}

fn checksum(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3))
}

/// The message's sequence number, if it is whole.
fn check(m: &[u8]) -> Result<u64, String> {
    if m.len() < 20 {
        return Err(format!("a message of {} bytes (at least 20)", m.len()));
    }
    let seq = u64::from_le_bytes(m[..8].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(m[8..12].try_into().expect("4 bytes")) as usize;
    if len != m.len() - 20 {
        return Err(format!("message {seq}: says {len} bytes, has {}", m.len() - 20));
    }
    let sum = u64::from_le_bytes(m[12..20].try_into().expect("8 bytes"));
    let mut want = Vec::with_capacity(len);
    body(seq, len, &mut want);
    if want != m[20..] || sum != checksum(&m[20..]) ^ seq {
        return Err(format!("message {seq}: its body is not the one sent"));
    }
    Ok(seq)
}

// ------------------------------------------------------------ the child

/// What a child is told to do.
#[derive(Serialize, Deserialize)]
enum Order {
    /// Send a stream on this channel until killed.
    Send { tx: Sender<Bytes>, seed: u64, max: usize },
    /// Receive and check a stream.
    Recv { rx: Receiver<Bytes> },
    /// Open the FIFO at `path` and send on it.
    FifoSend { path: PathBuf, seed: u64, max: usize },
    /// Open the FIFO at `path` and receive from it.
    FifoRecv { path: PathBuf },
    /// Connect to `addr` (tcp:, unix:) and send.
    ConnectSend { addr: String, seed: u64, max: usize },
    /// Connect to `addr` and receive.
    ConnectRecv { addr: String },
    /// Send to a broker mailbox, reporting each message queued.
    MailboxSend { socket: PathBuf, name: String, seed: u64, max: usize },
    /// Receive from a broker mailbox, reporting each message before acknowledging it.
    MailboxRecv { socket: PathBuf, name: String },
    /// Own a name at the broker.
    Register { socket: PathBuf, name: String },
    /// Serve the counter.
    Serve { conn: Connection },
    /// Call the counter, reporting each answer.
    Call { tx: Sender<Call>, rx: Receiver<Answer> },
}

/// What a child reports.
#[derive(Debug, Serialize, Deserialize)]
enum Up {
    Ready,
    Done(u64),
}

/// The trials' service: a counter, so a call that ran twice shows.
#[conduit::service]
pub trait Counter {
    /// The next number (1, 2, 3, ...).
    fn next(&self) -> u64;
}

struct Count(AtomicU64);

impl Counter for Count {
    fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// `conduit __chaos-child`: do what the parent orders, until killed.
pub fn child() -> ExitCode {
    let Ok((up, orders)) = conduit::process::parent::<Up, Order>() else { return ExitCode::from(EXIT_SETUP as u8) };
    let Ok(order) = orders.recv() else { return ExitCode::from(EXIT_SETUP as u8) };
    let code = match run_order(order, &up) {
        Ok(()) => 0,
        Err(code) => code,
    };
    ExitCode::from(code as u8)
}

fn setup<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, i32> {
    r.map_err(|e| {
        eprintln!("conduit chaos child: {e}");
        EXIT_SETUP
    })
}

fn send_stream(tx: &Sender<Bytes>, up: &Sender<Up>, seed: u64, max: usize) -> Result<(), i32> {
    let _ = up.send(Up::Ready);
    let mut rng = Rng(seed);
    for seq in 0.. {
        if tx.send(Bytes(message(seq, rng.size(max)))).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

fn recv_stream(rx: &Receiver<Bytes>, up: &Sender<Up>) -> Result<(), i32> {
    let _ = up.send(Up::Ready);
    let mut expected = 0;
    loop {
        match rx.recv() {
            Ok(Bytes(m)) => match check(&m) {
                Ok(seq) if seq == expected => expected += 1,
                Ok(seq) => {
                    eprintln!("conduit chaos child: got message {seq}, expected {expected}");
                    return Err(EXIT_ORDER);
                }
                Err(e) => {
                    eprintln!("conduit chaos child: {e}");
                    return Err(EXIT_CORRUPT);
                }
            },
            Err(conduit::RecvError::Disconnected) => return Ok(()),
            Err(e) => {
                eprintln!("conduit chaos child: {e}");
                return Err(EXIT_CORRUPT);
            }
        }
    }
}

fn run_order(order: Order, up: &Sender<Up>) -> Result<(), i32> {
    match order {
        Order::Send { tx, seed, max } => send_stream(&tx, up, seed, max),
        Order::Recv { rx } => recv_stream(&rx, up),
        Order::FifoSend { path, seed, max } => {
            let tx = setup(conduit::fifo::sender_timeout::<Bytes>(&path, HANG))?;
            send_stream(&tx, up, seed, max)
        }
        Order::FifoRecv { path } => {
            let rx = setup(conduit::fifo::receiver::<Bytes>(&path))?;
            recv_stream(&rx, up)
        }
        Order::ConnectSend { addr, seed, max } => {
            let c = setup(conduit::net::Connect::new(addr.as_str()).capacity(CAPACITY).open::<Bytes, Bytes>())?;
            send_stream(&c.tx, up, seed, max)
        }
        Order::ConnectRecv { addr } => {
            let c = setup(conduit::net::Connect::new(addr.as_str()).capacity(CAPACITY).open::<Bytes, Bytes>())?;
            recv_stream(&c.rx, up)
        }
        Order::MailboxSend { socket, name, seed, max } => {
            let c = setup(Client::connect_to(&socket))?;
            let _ = up.send(Up::Ready);
            let mut rng = Rng(seed);
            for seq in 0.. {
                setup(c.send(&name, 1, &message(seq, rng.size(max)), OnFull::Block))?;
                let _ = up.send(Up::Done(seq));
            }
            Ok(())
        }
        Order::MailboxRecv { socket, name } => {
            let c = setup(Client::connect_to(&socket))?;
            let _ = up.send(Up::Ready);
            let mut seen = BTreeSet::new();
            loop {
                let d = setup(c.recv_held(&name, 0, WaitFor::Forever))?;
                match check(&d.message().data) {
                    Ok(seq) if seen.insert(seq) => {
                        let _ = up.send(Up::Done(seq));
                        setup(d.ack())?;
                    }
                    Ok(seq) => {
                        eprintln!("conduit chaos child: message {seq} came twice");
                        return Err(EXIT_ORDER);
                    }
                    Err(e) => {
                        eprintln!("conduit chaos child: {e}");
                        return Err(EXIT_CORRUPT);
                    }
                }
            }
        }
        Order::Register { socket, name } => {
            let c = setup(Client::connect_to(&socket))?;
            let (port, _keep) = setup(conduit::bounded::<()>(1))?;
            setup(c.register(&name, port, NameFlags::default()))?;
            let _ = up.send(Up::Ready);
            loop {
                std::thread::park();
            }
        }
        Order::Serve { conn } => {
            let _ = up.send(Up::Ready);
            setup(rpc::serve(&CounterServer(Count(AtomicU64::new(0))), conn))
        }
        Order::Call { tx, rx } => {
            let counter = CounterClient::new(rpc::Client::new(tx, rx));
            let _ = up.send(Up::Ready);
            let mut last = 0;
            loop {
                let v = setup(counter.next())?;
                if v != last + 1 {
                    eprintln!("conduit chaos child: the counter said {v} after {last}");
                    return Err(EXIT_ORDER);
                }
                last = v;
                let _ = up.send(Up::Done(v));
            }
        }
    }
}

// ------------------------------------------------------------ a trial

/// What one trial found.
#[derive(Default)]
struct Trial {
    kind: &'static str,
    /// Which side was killed.
    killed: &'static str,
    detect: Option<Duration>,
    hang: bool,
    corrupt: u64,
    duplicates: u64,
    lost: u64,
    leaks: Vec<String>,
    /// Anything else that went wrong (a setup error, an unexpected exit).
    failures: Vec<String>,
    /// Messages that crossed before the kill.
    messages: u64,
}

impl Trial {
    fn fail(&mut self, what: impl Into<String>) {
        self.failures.push(what.into());
    }

    fn ok(&self) -> bool {
        !self.hang
            && self.corrupt == 0
            && self.duplicates == 0
            && self.lost == 0
            && self.leaks.is_empty()
            && self.failures.is_empty()
    }

    /// One message received in a stream that should go on from `expected`.
    fn got(&mut self, m: &[u8], expected: &mut u64) {
        match check(m) {
            Ok(seq) if seq == *expected => *expected += 1,
            Ok(seq) if seq < *expected => {
                self.duplicates += 1;
                self.fail(format!("message {seq} again (or out of order) after {}", *expected - 1));
            }
            Ok(seq) => {
                self.lost += seq - *expected;
                self.fail(format!("messages {}..{seq} never came", *expected));
                *expected = seq + 1;
            }
            Err(e) => {
                self.corrupt += 1;
                self.fail(e);
            }
        }
    }

    /// How the killed child ended: by the signal, or by an exit code
    /// saying what it found.
    fn ended(&mut self, exit: Result<conduit::process::Exit, conduit::Error>) {
        match exit {
            Ok(e) if e.signal == Some(9) => {}
            Ok(e) if e.code == Some(EXIT_CORRUPT) => {
                self.corrupt += 1;
                self.fail("the child received a corrupt message");
            }
            Ok(e) if e.code == Some(EXIT_ORDER) => {
                self.duplicates += 1;
                self.fail("the child received a message twice or out of order");
            }
            Ok(e) => self.fail(format!("the child ended before it was killed: {e:?}")),
            Err(e) => self.fail(format!("waiting for the child: {e}")),
        }
    }
}

/// The random choices of one trial.
struct Plan {
    kill_child_sender: bool,
    kill_after: u64,
    seed: u64,
    max: usize,
}

type Kid = Linked<Order, Up>;

fn spawn_child() -> Result<Kid, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    Command::new(exe).arg("__chaos-child").spawn::<Order, Up>().map_err(|e| format!("spawning the child: {e}"))
}

fn ready(kid: &Kid) -> Result<(), String> {
    match kid.rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Up::Ready) => Ok(()),
        other => Err(format!("the child did not get ready: {other:?}")),
    }
}

fn kill(kid: &Kid) -> Instant {
    let at = Instant::now();
    let _ = kid.child.kill();
    at
}

/// The survivor receives a stream from the child, killing it after
/// `plan.kill_after` messages; then the end must report the death.
fn receive_stream(rx: &Receiver<Bytes>, kid: &Kid, plan: &Plan, t: &mut Trial) {
    let mut expected = 0;
    let mut killed = None;
    let mut last = Instant::now();
    loop {
        if killed.is_none() && expected >= plan.kill_after {
            killed = Some(kill(kid));
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Bytes(m)) => {
                last = Instant::now();
                t.got(&m, &mut expected);
            }
            Err(RecvTimeoutError::Disconnected) => {
                match killed {
                    Some(at) => t.detect = Some(at.elapsed()),
                    None => t.fail("the sender went away before it was killed"),
                }
                break;
            }
            Err(RecvTimeoutError::Timeout) => {}
            // A stream cut inside a frame is a typed error, then the end.
            Err(RecvTimeoutError::Failed(_)) if killed.is_some() => {}
            Err(RecvTimeoutError::Failed(e)) => {
                t.fail(format!("receive failed before the kill: {e}"));
                break;
            }
        }
        if killed.map_or(last, |k| k.max(last)).elapsed() > HANG {
            t.hang = true;
            break;
        }
    }
    t.messages = expected;
}

/// The survivor sends a stream to the child, killing it after
/// `plan.kill_after` messages; then a send must fail as disconnected.
fn send_stream_to(tx: &Sender<Bytes>, kid: &Kid, plan: &Plan, t: &mut Trial) {
    let mut rng = Rng(plan.seed);
    let mut seq = 0;
    let mut killed = None;
    let mut last = Instant::now();
    loop {
        if killed.is_none() && seq >= plan.kill_after {
            killed = Some(kill(kid));
        }
        match tx.send_timeout(Bytes(message(seq, rng.size(plan.max))), Duration::from_millis(100)) {
            Ok(()) => {
                seq += 1;
                last = Instant::now();
            }
            Err(SendTimeoutError::Disconnected(_)) => {
                match killed {
                    Some(at) => t.detect = Some(at.elapsed()),
                    None => t.fail("the receiver went away before it was killed"),
                }
                break;
            }
            Err(SendTimeoutError::Timeout(_)) => {}
            Err(SendTimeoutError::Failed(_, e)) => {
                t.fail(format!("send failed: {e}"));
                break;
            }
        }
        if killed.map_or(last, |k| k.max(last)).elapsed() > HANG {
            t.hang = true;
            break;
        }
    }
    t.messages = seq;
}

/// A channel of `kind`'s transport (bounded, except FIFOs which are not).
fn channel(kind: &str) -> Result<(Sender<Bytes>, Receiver<Bytes>), conduit::Error> {
    match kind {
        "socket" => conduit::bounded(CAPACITY),
        "shm" => conduit::channel::shm::bounded(CAPACITY),
        "pipe" => conduit::channel::pipe::bounded(CAPACITY),
        "sysv" => conduit::channel::sysv::bounded(CAPACITY),
        "mqueue" => conduit::channel::mqueue::bounded(CAPACITY),
        other => unreachable!("not a channel kind: {other}"),
    }
}

/// The largest message of a trial of `kind` (the queues' own limits; a
/// mailbox's default queue takes half of 256 KiB).
fn max_size(kind: &str) -> usize {
    match kind {
        "sysv" | "mqueue" => 4000,
        "mailbox-shm" | "mailbox-durable" | "broker" => 16 << 10,
        "fifo" => 64 << 10,
        _ => 256 << 10,
    }
}

fn channel_trial(kind: &str, plan: &Plan, t: &mut Trial) -> Result<(), String> {
    let (tx, rx) = channel(kind).map_err(|e| format!("creating the channel: {e}"))?;
    let kid = spawn_child()?;
    if plan.kill_child_sender {
        kid.tx.send(Order::Send { tx, seed: plan.seed, max: plan.max }).map_err(|e| e.to_string())?;
        ready(&kid)?;
        receive_stream(&rx, &kid, plan, t);
    } else {
        kid.tx.send(Order::Recv { rx }).map_err(|e| e.to_string())?;
        ready(&kid)?;
        send_stream_to(&tx, &kid, plan, t);
    }
    finish(kid, t);
    Ok(())
}

fn finish(mut kid: Kid, t: &mut Trial) {
    let _ = kid.child.kill();
    t.ended(kid.child.wait());
}

/// A FIFO's reader holds a write end of its own (writers come and go: it
/// never sees end of stream), so it has no notice of a writer's death.
/// When the writer is killed, the reader must still have every message
/// the writer finished, in order, and a writer after it must get through
/// whole (a dead writer's half-written message blocks nothing).
fn fifo_trial(dir: &Path, plan: &Plan, t: &mut Trial) -> Result<(), String> {
    let path = dir.join("fifo");
    conduit::fifo::create(&path, 0o600).map_err(|e| format!("mkfifo: {e}"))?;
    let r = (|| {
        let mut kid = spawn_child()?;
        if plan.kill_child_sender {
            let rx = conduit::fifo::receiver::<Bytes>(&path).map_err(|e| e.to_string())?;
            kid.tx
                .send(Order::FifoSend { path: path.clone(), seed: plan.seed, max: plan.max })
                .map_err(|e| e.to_string())?;
            ready(&kid)?;
            fifo_writer_killed(&rx, &path, &mut kid, plan, t);
        } else {
            kid.tx.send(Order::FifoRecv { path: path.clone() }).map_err(|e| e.to_string())?;
            let tx = conduit::fifo::sender_timeout::<Bytes>(&path, HANG).map_err(|e| e.to_string())?;
            ready(&kid)?;
            send_stream_to(&tx, &kid, plan, t);
            finish(kid, t);
        }
        Ok(())
    })();
    let _ = conduit::fifo::remove(&path);
    r
}

/// The sequence number of the message a new FIFO writer sends after the
/// killed one.
const PROBE: u64 = u64::MAX;

fn fifo_writer_killed(rx: &Receiver<Bytes>, path: &Path, kid: &mut Kid, plan: &Plan, t: &mut Trial) {
    let mut expected = 0;
    while expected < plan.kill_after {
        match rx.recv_timeout(HANG) {
            Ok(Bytes(m)) => t.got(&m, &mut expected),
            Err(e) => {
                t.hang = matches!(e, RecvTimeoutError::Timeout);
                t.fail(format!("before the kill: {e}"));
                let _ = kill(kid);
                t.ended(kid.child.wait());
                return;
            }
        }
    }
    let _ = kill(kid);
    // Dead and reaped: all it wrote is in the pipe.
    t.ended(kid.child.wait());
    if t.hang || !t.failures.is_empty() {
        return;
    }
    loop {
        match rx.try_recv() {
            Ok(Bytes(m)) => t.got(&m, &mut expected),
            Err(conduit::TryRecvError::Empty) => break,
            Err(e) => {
                t.fail(format!("after the writer was killed: {e}"));
                return;
            }
        }
    }
    t.messages = expected;
    let probe = conduit::fifo::sender::<Bytes>(path).and_then(|tx| {
        tx.send(Bytes(message(PROBE, 100 << 10))).map_err(|e| conduit::Error::Io(io::Error::other(e.to_string())))
    });
    if let Err(e) = probe {
        t.fail(format!("a new writer: {e}"));
        return;
    }
    match rx.recv_timeout(HANG) {
        Ok(Bytes(m)) if check(&m) == Ok(PROBE) => {}
        Ok(Bytes(m)) => {
            t.corrupt += 1;
            t.fail(format!("the new writer's message came as another: {:?}", check(&m)));
        }
        Err(e) => {
            t.hang = matches!(e, RecvTimeoutError::Timeout);
            t.fail(format!("the new writer's message did not come: {e}"));
        }
    }
}

fn connection_trial(kind: &str, dir: &Path, plan: &Plan, t: &mut Trial) -> Result<(), String> {
    let listen = match kind {
        "tcp" => "tcp:127.0.0.1:0".to_string(),
        _ => format!("unix:{}", dir.join("stream.sock").display()),
    };
    let mut listener = conduit::net::Listener::bind(listen.as_str()).map_err(|e| format!("listen: {e}"))?;
    listener.set_capacity(Some(CAPACITY));
    let addr = listener.local_addr().to_string();
    let kid = spawn_child()?;
    let order = if plan.kill_child_sender {
        Order::ConnectSend { addr, seed: plan.seed, max: plan.max }
    } else {
        Order::ConnectRecv { addr }
    };
    kid.tx.send(order).map_err(|e| e.to_string())?;
    let c = listener
        .accept_timeout::<Bytes, Bytes>(Duration::from_secs(30))
        .map_err(|e| format!("accept: {e}"))?
        .ok_or("the child did not connect")?;
    drop(listener);
    ready(&kid)?;
    if plan.kill_child_sender {
        receive_stream(&c.rx, &kid, plan, t);
    } else {
        send_stream_to(&c.tx, &kid, plan, t);
    }
    drop(c);
    finish(kid, t);
    Ok(())
}

// ------------------------------------------------------------ the broker

/// The broker the mailbox, name and broker trials use: `conduit daemon`,
/// a child of this process.
struct Broker {
    socket: PathBuf,
    process: std::process::Child,
}

impl Broker {
    fn start(dir: &Path) -> Result<Broker, String> {
        let socket = dir.join("broker").join("broker.sock");
        let data = dir.join("data");
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let process = std::process::Command::new(exe)
            .arg("daemon")
            .arg("--socket")
            .arg(&socket)
            .arg("--data")
            .arg(&data)
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the broker: {e}"))?;
        let b = Broker { socket, process };
        // Up when it answers (the socket appears after the bind).
        let until = Instant::now() + Duration::from_secs(30);
        while Client::connect_to(&b.socket).is_err() {
            if Instant::now() > until {
                return Err("the broker did not come up in 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(b)
    }

    fn pid(&self) -> u32 {
        self.process.id()
    }

    fn client(&self) -> Result<Client, String> {
        Client::connect_to(&self.socket).map_err(|e| format!("connecting to the broker: {e}"))
    }

    fn stop(mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.process.id() as i32).expect("a child's pid"),
            rustix::process::Signal::TERM,
        );
        let _ = self.process.wait();
    }
}

fn mailbox_options(durable: bool) -> MailboxOptions {
    MailboxOptions {
        capacity: if durable { Capacity::Unbounded } else { Capacity::Bounded(CAPACITY as u32) },
        durable,
        ..MailboxOptions::default()
    }
}

/// Watches a child's reports on a thread: the numbers it reported and
/// when its link broke; waiters sleep on a condition variable.
struct Reports {
    seen: Arc<(Mutex<Seen>, std::sync::Condvar)>,
    thread: std::thread::JoinHandle<Receiver<Up>>,
}

#[derive(Default)]
struct Seen {
    done: Vec<u64>,
    gone: Option<Instant>,
}

fn watch_reports(rx: Receiver<Up>) -> Reports {
    let seen = Arc::new((Mutex::new(Seen::default()), std::sync::Condvar::new()));
    let s = Arc::clone(&seen);
    let thread = std::thread::spawn(move || {
        while let Ok(up) = rx.recv() {
            if let Up::Done(n) = up {
                s.0.lock().expect("reports").done.push(n);
                s.1.notify_all();
            }
        }
        s.0.lock().expect("reports").gone = Some(Instant::now());
        s.1.notify_all();
        rx
    });
    Reports { seen, thread }
}

impl Reports {
    fn gone(&self) -> Option<Instant> {
        self.seen.0.lock().expect("reports").gone
    }

    /// The child's link is gone: the watcher's end, then every number reported.
    fn finish(self) -> Vec<u64> {
        let _ = self.thread.join();
        std::mem::take(&mut self.seen.0.lock().expect("reports").done)
    }

    /// Sleep until `ready` holds or the child's link breaks (true), or
    /// `limit` passes (false).
    fn wait(&self, limit: Duration, ready: impl Fn(&Seen) -> bool) -> bool {
        let (lock, cv) = &*self.seen;
        let seen = lock.lock().expect("reports");
        let (seen, timed_out) = cv.wait_timeout_while(seen, limit, |s| !ready(s) && s.gone.is_none()).expect("reports");
        drop(seen);
        !timed_out.timed_out()
    }
}

fn is_empty(e: &ClientError) -> bool {
    matches!(e, ClientError::Broker(BrokerError::Empty | BrokerError::Timeout))
}

fn mailbox_trial(broker: &Broker, n: u64, durable: bool, plan: &Plan, t: &mut Trial) -> Result<(), String> {
    let c = broker.client()?;
    let name = format!("chaos-{n}");
    c.create_mailbox(&name, mailbox_options(durable)).map_err(|e| format!("create: {e}"))?;
    let r = if plan.kill_child_sender {
        mailbox_killed_sender(broker, &c, &name, plan, t)
    } else {
        mailbox_killed_receiver(broker, &c, &name, plan, t)
    };
    c.remove_mailbox(&name).map_err(|e| format!("remove: {e}"))?;
    r
}

/// The child sends; after its death the mailbox must hold every message
/// it was told was queued, in order, once.
fn mailbox_killed_sender(broker: &Broker, c: &Client, name: &str, plan: &Plan, t: &mut Trial) -> Result<(), String> {
    let Linked { mut child, tx, rx } = spawn_child()?;
    let order = Order::MailboxSend { socket: broker.socket.clone(), name: name.into(), seed: plan.seed, max: plan.max };
    tx.send(order).map_err(|e| e.to_string())?;
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Up::Ready) => {}
        other => return Err(format!("the child did not get ready: {other:?}")),
    }
    let reports = watch_reports(rx);
    let mut expected = 0;
    let mut killed = None;
    loop {
        if killed.is_none() && expected >= plan.kill_after {
            killed = Some(Instant::now());
            let _ = child.kill();
        }
        if let (Some(k), Some(g)) = (killed, reports.gone()) {
            t.detect = Some(g.saturating_duration_since(k));
            break;
        }
        match c.recv(name, 0, WaitFor::Millis(20)) {
            Ok(m) => t.got(&m.data, &mut expected),
            Err(e) if is_empty(&e) => {}
            Err(e) => {
                t.fail(format!("receive: {e}"));
                break;
            }
        }
        if killed.is_some_and(|k| k.elapsed() > HANG) {
            t.hang = true;
            break;
        }
    }
    loop {
        match c.recv(name, 0, WaitFor::NoWait) {
            Ok(m) => t.got(&m.data, &mut expected),
            Err(e) if is_empty(&e) => break,
            Err(e) => {
                t.fail(format!("receive: {e}"));
                break;
            }
        }
    }
    t.messages = expected;
    let acked = reports.finish().last().copied();
    if let Some(a) = acked
        && expected <= a
    {
        t.lost += a + 1 - expected;
        t.fail(format!("messages {expected}..={a} were queued, then not in the mailbox"));
    }
    drop(tx);
    t.ended(child.wait());
    Ok(())
}

/// The child receives, reporting each message before acknowledging it;
/// after its death every message it did not acknowledge is back.
fn mailbox_killed_receiver(broker: &Broker, c: &Client, name: &str, plan: &Plan, t: &mut Trial) -> Result<(), String> {
    let mut rng = Rng(plan.seed);
    let total = 1 + plan.kill_after % CAPACITY as u64;
    for seq in 0..total {
        c.send(name, 1, &message(seq, rng.size(plan.max)), OnFull::NoWait).map_err(|e| format!("send: {e}"))?;
    }
    let Linked { mut child, tx, rx } = spawn_child()?;
    tx.send(Order::MailboxRecv { socket: broker.socket.clone(), name: name.into() }).map_err(|e| e.to_string())?;
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Up::Ready) => {}
        other => return Err(format!("the child did not get ready: {other:?}")),
    }
    let reports = watch_reports(rx);
    let kill_at = plan.kill_after % (total + 1);
    if !reports.wait(HANG, |s| s.done.len() as u64 >= kill_at) {
        t.hang = true;
    }
    let killed = Instant::now();
    let _ = child.kill();
    if !reports.wait(HANG, |_| false) {
        t.hang = true;
    }
    if let Some(g) = reports.gone() {
        t.detect = Some(g.saturating_duration_since(killed));
    }
    let taken = reports.finish();
    t.messages = taken.len() as u64;
    // Acknowledged: every one reported but the last (which the child may
    // have been killed before acknowledging).
    let acked: BTreeSet<u64> = taken.iter().copied().take(taken.len().saturating_sub(1)).collect();
    let mut want: BTreeSet<u64> = (0..total).filter(|s| !acked.contains(s)).collect();
    if let Some(&last) = taken.last() {
        // Either back in the mailbox or acknowledged: not wanted, not a duplicate.
        want.remove(&last);
    }
    let mut found = BTreeSet::new();
    // The broker gives back what the dead connection held when it sees the
    // connection close: wait for what is missing, then for nothing more.
    loop {
        let wait = if want.is_empty() { WaitFor::NoWait } else { WaitFor::Millis(HANG.as_millis() as u64) };
        match c.recv(name, 0, wait) {
            Ok(m) => match check(&m.data) {
                Ok(seq) if acked.contains(&seq) || !found.insert(seq) => {
                    t.duplicates += 1;
                    t.fail(format!("message {seq} was acknowledged or seen, and came again"));
                }
                Ok(seq) => {
                    want.remove(&seq);
                }
                Err(e) => {
                    t.corrupt += 1;
                    t.fail(e);
                }
            },
            Err(e) if is_empty(&e) => break,
            Err(e) => {
                t.fail(format!("receive: {e}"));
                break;
            }
        }
    }
    if !want.is_empty() {
        t.lost += want.len() as u64;
        t.fail(format!("never acknowledged, and not given back: {want:?}"));
    }
    drop(tx);
    t.ended(child.wait());
    Ok(())
}

fn name_trial(broker: &Broker, n: u64, t: &mut Trial) -> Result<(), String> {
    let c = broker.client()?;
    let name = format!("chaos.name.{n}");
    let events = c.watch(&name).map_err(|e| format!("watch: {e}"))?;
    let mut kid = spawn_child()?;
    kid.tx.send(Order::Register { socket: broker.socket.clone(), name: name.clone() }).map_err(|e| e.to_string())?;
    ready(&kid)?;
    let pid = kid.child.id();
    // The watcher sees the child take the name, then lose it.
    let until = Instant::now() + HANG;
    loop {
        match events.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(e) if e.owner == Some(pid) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("the name was never owned: {e}")),
        }
    }
    let killed = kill(&kid);
    loop {
        match events.recv_timeout(HANG.saturating_sub(killed.elapsed())) {
            Ok(e) if e.owner.is_none() => {
                t.detect = Some(killed.elapsed());
                break;
            }
            Ok(_) => {}
            Err(_) => {
                t.hang = true;
                break;
            }
        }
    }
    if c.lookup::<()>(&name).is_ok() {
        t.fail("the dead owner's name still resolves");
    }
    let _ = kid.child.kill();
    t.ended(kid.child.wait());
    Ok(())
}

/// RPC: kill the server in a stream of calls (the call in flight must end
/// `ServerDied`, no call runs twice), or the client (the server's loop
/// must end).
fn rpc_trial(plan: &Plan, t: &mut Trial) -> Result<(), String> {
    let transport = match plan.seed % 3 {
        0 => rpc::Transport::SharedMemory,
        1 => rpc::Transport::Socket,
        _ => rpc::Transport::Pipe,
    };
    let e = |e: conduit::Error| e.to_string();
    if plan.kill_child_sender {
        // The child serves; this process calls.
        let (client, conn) = rpc::pair_over(transport).map_err(e)?;
        client.set_timeout(Some(HANG));
        let counter = CounterClient::new(client);
        let kid = spawn_child()?;
        kid.tx.send(Order::Serve { conn }).map_err(|e| e.to_string())?;
        ready(&kid)?;
        let mut last = 0;
        let mut killed = None;
        loop {
            if killed.is_none() && last >= plan.kill_after {
                killed = Some(kill(&kid));
            }
            match counter.next() {
                Ok(v) if v == last + 1 => last = v,
                Ok(v) => {
                    t.duplicates += 1;
                    t.fail(format!("the counter said {v} after {last}: a call ran twice or not at all"));
                    last = v;
                }
                Err(rpc::RpcError::DeadlineExceeded) => {
                    t.hang = true;
                    break;
                }
                Err(err) => {
                    match killed {
                        Some(at) => t.detect = Some(at.elapsed()),
                        None => t.fail(format!("a call failed before the kill: {err}")),
                    }
                    break;
                }
            }
        }
        t.messages = last;
        finish(kid, t);
    } else {
        // The child calls; this process serves until the client is gone.
        let ((call_tx, call_rx), (ans_tx, ans_rx)) = match transport {
            rpc::Transport::SharedMemory => (
                conduit::channel::shm::bounded::<Call>(64).map_err(e)?,
                conduit::channel::shm::bounded::<Answer>(64).map_err(e)?,
            ),
            rpc::Transport::Socket => (conduit::unbounded().map_err(e)?, conduit::unbounded().map_err(e)?),
            _ => (conduit::channel::pipe::unbounded().map_err(e)?, conduit::channel::pipe::unbounded().map_err(e)?),
        };
        let Linked { mut child, tx, rx } = spawn_child()?;
        tx.send(Order::Call { tx: call_tx, rx: ans_rx }).map_err(|e| e.to_string())?;
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Up::Ready) => {}
            other => return Err(format!("the child did not get ready: {other:?}")),
        }
        let (ended_tx, ended_rx) = std::sync::mpsc::channel();
        let server = std::thread::spawn(move || {
            let r =
                rpc::serve(&CounterServer(Count(AtomicU64::new(0))), Connection { calls: call_rx, answers: ans_tx });
            let _ = ended_tx.send((Instant::now(), r.map_err(|e| e.to_string())));
        });
        let reports = watch_reports(rx);
        if !reports.wait(HANG, |s| s.done.len() as u64 >= plan.kill_after) {
            t.hang = true;
        }
        let killed = Instant::now();
        let _ = child.kill();
        match ended_rx.recv_timeout(HANG) {
            Ok((at, r)) => {
                t.detect = Some(at.saturating_duration_since(killed));
                if let Err(err) = r {
                    t.fail(format!("the server ended with an error: {err}"));
                }
                let _ = server.join();
            }
            Err(_) => t.hang = true,
        }
        t.messages = reports.finish().len() as u64;
        drop(tx);
        t.ended(child.wait());
    }
    Ok(())
}

/// Kill the broker while this process sends to a durable mailbox; after a
/// restart the mailbox holds every message the broker acknowledged.
fn broker_trial(broker: &mut Broker, dir: &Path, n: u64, plan: &Plan, t: &mut Trial) -> Result<(), String> {
    let c = broker.client()?;
    let name = format!("chaos-durable-{n}");
    c.create_mailbox(&name, mailbox_options(true)).map_err(|e| format!("create: {e}"))?;
    let mut rng = Rng(plan.seed);
    let mut acked = None;
    let mut killed = None;
    for seq in 0.. {
        if killed.is_none() && seq >= plan.kill_after {
            killed = Some(Instant::now());
            let _ = broker.process.kill();
        }
        match c.send(&name, 1, &message(seq, rng.size(plan.max)), OnFull::Block) {
            Ok(_) => acked = Some(seq),
            Err(err) => {
                match killed {
                    Some(at) => t.detect = Some(at.elapsed()),
                    None => t.fail(format!("a send failed before the kill: {err}")),
                }
                break;
            }
        }
        if killed.is_some_and(|k| k.elapsed() > HANG) {
            t.hang = true;
            break;
        }
    }
    drop(c);
    match broker.process.wait() {
        Ok(s) if s.code().is_none() => {}
        other => t.fail(format!("the broker ended before it was killed: {other:?}")),
    }
    *broker = Broker::start(dir)?;
    let c = broker.client()?;
    let mut expected = 0;
    loop {
        match c.recv(&name, 0, WaitFor::NoWait) {
            Ok(m) => t.got(&m.data, &mut expected),
            Err(e) if is_empty(&e) => break,
            Err(e) => {
                t.fail(format!("receive after the restart: {e}"));
                break;
            }
        }
    }
    t.messages = expected;
    if let Some(a) = acked
        && expected <= a
    {
        t.lost += a + 1 - expected;
        t.fail(format!("acknowledged messages {expected}..={a} were gone after the restart"));
    }
    c.remove_mailbox(&name).map_err(|e| format!("remove: {e}"))?;
    Ok(())
}

// ------------------------------------------------------------ leaks

/// What a trial must leave as it found it.
#[derive(Clone, PartialEq, Eq)]
struct Snapshot {
    fds: usize,
    /// The shared mappings' names (a memfd's, a segment's), sorted.
    shared_maps: Vec<String>,
    dev_shm: BTreeSet<String>,
    mqueue: BTreeSet<String>,
    sysv: BTreeSet<String>,
    sockets: BTreeSet<PathBuf>,
    children: BTreeSet<u32>,
}

fn names_in(dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn sysv_ids() -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for kind in ["msg", "shm", "sem"] {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/sysvipc/{kind}")) {
            for line in s.lines().skip(1) {
                if let Some(id) = line.split_whitespace().nth(1) {
                    ids.insert(format!("{kind} {id}"));
                }
            }
        }
    }
    ids
}

fn sockets_in(dirs: &[&Path]) -> BTreeSet<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut found = BTreeSet::new();
    for dir in dirs {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_socket() || t.is_fifo()) {
                found.insert(e.path());
            }
        }
    }
    found
}

/// This process's children (zombies too), but the broker.
fn children(broker: Option<u32>) -> BTreeSet<u32> {
    let me = std::process::id();
    let mut kids = BTreeSet::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // pid (comm) state ppid ...: comm may hold spaces, so after the last ')'.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(me) && Some(pid) != broker {
            kids.insert(pid);
        }
    }
    kids
}

fn snapshot(dir: &Path, broker: Option<u32>) -> Snapshot {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    Snapshot {
        fds: std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
        shared_maps: {
            let mut m: Vec<String> = maps
                .lines()
                .filter(|l| l.contains("memfd:") || l.contains("/dev/shm/") || l.contains("SYSV"))
                .map(|l| l.split_whitespace().skip(5).collect::<Vec<_>>().join(" "))
                .collect();
            m.sort();
            m
        },
        dev_shm: names_in("/dev/shm"),
        mqueue: names_in("/dev/mqueue"),
        sysv: sysv_ids(),
        sockets: sockets_in(&[dir, &dir.join("broker"), &std::env::temp_dir()]),
        children: children(broker),
    }
}

fn differences(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut d = Vec::new();
    // Only growth is a leak: something the trial before this one let go
    // of a moment late (a monitor thread's last reference) may go during
    // this one.
    if after.fds > before.fds {
        d.push(format!("descriptors {} → {}", before.fds, after.fds));
    }
    let mut extra = after.shared_maps.clone();
    for m in &before.shared_maps {
        if let Some(i) = extra.iter().position(|x| x == m) {
            extra.swap_remove(i);
        }
    }
    if !extra.is_empty() {
        d.push(format!("shared mappings {} → {} (new: {extra:?})", before.shared_maps.len(), after.shared_maps.len()));
    }
    let mut new = |what: &str, a: Vec<String>| {
        if !a.is_empty() {
            d.push(format!("{what}: {}", a.join(", ")));
        }
    };
    new("/dev/shm", after.dev_shm.difference(&before.dev_shm).cloned().collect());
    new("/dev/mqueue", after.mqueue.difference(&before.mqueue).cloned().collect());
    new("System V", after.sysv.difference(&before.sysv).cloned().collect());
    new("files", after.sockets.difference(&before.sockets).map(|p| p.display().to_string()).collect());
    new("child processes", after.children.difference(&before.children).map(u32::to_string).collect());
    d
}

/// Leaks after a trial: what still differs after up to a second.
fn leaks(before: &Snapshot, dir: &Path, broker: Option<u32>) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(1);
    loop {
        let d = differences(before, &snapshot(dir, broker));
        if d.is_empty() || Instant::now() > until {
            return d;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ------------------------------------------------------------ the run

fn run_trial(kind: &'static str, n: u64, plan: &Plan, dir: &Path, broker: Option<&mut Broker>) -> Trial {
    let killed = match kind {
        "broker" => "broker",
        "name" => "owner",
        "rpc" if plan.kill_child_sender => "server",
        "rpc" => "client",
        _ if plan.kill_child_sender => "sender",
        _ => "receiver",
    };
    let mut t = Trial { kind, killed, ..Trial::default() };
    let r = match (kind, broker) {
        ("socket" | "shm" | "pipe" | "sysv" | "mqueue", _) => channel_trial(kind, plan, &mut t),
        ("fifo", _) => fifo_trial(dir, plan, &mut t),
        ("tcp" | "unix-stream", _) => connection_trial(kind, dir, plan, &mut t),
        ("rpc", _) => rpc_trial(plan, &mut t),
        ("mailbox-shm", Some(b)) => mailbox_trial(b, n, false, plan, &mut t),
        ("mailbox-durable", Some(b)) => mailbox_trial(b, n, true, plan, &mut t),
        ("name", Some(b)) => name_trial(b, n, &mut t),
        ("broker", Some(b)) => broker_trial(b, dir, n, plan, &mut t),
        _ => Err(format!("{kind}: no broker")),
    };
    if let Err(e) = r {
        t.fail(e);
    }
    t
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `conduit chaos`.
pub fn run(a: &ChaosArgs) -> ExitCode {
    let kinds: Vec<&'static str> = if a.only.is_empty() {
        KINDS.to_vec()
    } else {
        let mut k = Vec::new();
        for want in &a.only {
            match KINDS.iter().find(|&&k| k == want) {
                Some(&found) => k.push(found),
                None => {
                    eprintln!("conduit chaos: no kind {want:?} (kinds: {})", KINDS.join(", "));
                    return ExitCode::from(2);
                }
            }
        }
        k
    };
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    match run_trials(a, &kinds, seed) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("conduit chaos: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_trials(a: &ChaosArgs, kinds: &[&'static str], seed: u64) -> io::Result<bool> {
    let dir = std::env::temp_dir().join(format!("conduit-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let needs_broker = kinds.iter().any(|k| k.starts_with("mailbox") || *k == "name" || *k == "broker");
    let mut broker = if needs_broker { Some(Broker::start(&dir).map_err(io::Error::other)?) } else { None };
    let mut rng = Rng(seed);
    let plan = |rng: &mut Rng, kind: &str| Plan {
        kill_child_sender: rng.below(2) == 0,
        kill_after: match rng.below(4) {
            0 => 0,
            1 => rng.below(8),
            _ => rng.below(300),
        },
        seed: rng.next(),
        max: max_size(kind),
    };
    // One untimed, unchecked trial of each kind first: the process-wide
    // things a kind sets up once (the monitor thread, the notify port,
    // bulk buffers) are not leaks.
    for (i, &kind) in kinds.iter().enumerate() {
        let p = plan(&mut rng, kind);
        let _ = run_trial(kind, 1_000_000 + i as u64, &p, &dir, broker.as_mut());
    }
    let bar = indicatif::ProgressBar::new(a.trials);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} chaos [{bar:30}] {pos}/{len} trials · {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut trials = Vec::with_capacity(a.trials as usize);
    let mut bad = 0;
    for n in 0..a.trials {
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        let p = plan(&mut rng, kind);
        let before = snapshot(&dir, broker.as_ref().map(Broker::pid));
        let mut t = run_trial(kind, n, &p, &dir, broker.as_mut());
        t.leaks = leaks(&before, &dir, broker.as_ref().map(Broker::pid));
        if !t.ok() {
            bad += 1;
            bar.suspend(|| {
                eprintln!(
                    "trial {n} ({kind}, killed the {}): {}{}",
                    t.killed,
                    if t.hang { "HANG; " } else { "" },
                    t.failures.iter().chain(t.leaks.iter()).cloned().collect::<Vec<_>>().join("; ")
                )
            });
        } else if a.verbose {
            bar.suspend(|| {
                eprintln!(
                    "trial {n} ({kind}, killed the {} after {} messages): detected in {:.2} ms",
                    t.killed,
                    t.messages,
                    t.detect.unwrap_or_default().as_secs_f64() * 1e3
                )
            });
        }
        bar.set_message(format!("{kind} · {bad} failed"));
        bar.inc(1);
        trials.push(t);
    }
    bar.finish_and_clear();
    if let Some(b) = broker {
        b.stop();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let summary = summarize(&trials, seed, kinds);
    print_summary(&summary, &trials, kinds);
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary).expect("JSON") + "\n")?;
    }
    Ok(summary["hangs"] == 0
        && summary["corrupt"] == 0
        && summary["duplicates"] == 0
        && summary["lost"] == 0
        && summary["leaks"] == 0
        && summary["failures"] == 0)
}

/// The run's totals: the fields the issue names, then per kind.
fn summarize(trials: &[Trial], seed: u64, kinds: &[&str]) -> serde_json::Value {
    let mut ms: Vec<f64> = trials.iter().filter_map(|t| t.detect).map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let sum = |f: fn(&Trial) -> u64| trials.iter().map(f).sum::<u64>();
    let mut per_kind = serde_json::Map::new();
    for &k in kinds {
        let of: Vec<&Trial> = trials.iter().filter(|t| t.kind == k).collect();
        let mut d: Vec<f64> = of.iter().filter_map(|t| t.detect).map(|d| d.as_secs_f64() * 1e3).collect();
        d.sort_by(f64::total_cmp);
        per_kind.insert(
            k.to_string(),
            serde_json::json!({
                "trials": of.len(),
                "failed": of.iter().filter(|t| !t.ok()).count(),
                "messages": of.iter().map(|t| t.messages).sum::<u64>(),
                "detect_p50_ms": percentile(&d, 0.5),
                "detect_max_ms": d.last().copied().unwrap_or(0.0),
            }),
        );
    }
    serde_json::json!({
        "trials": trials.len(),
        "seed": seed,
        "hangs": trials.iter().filter(|t| t.hang).count(),
        "corrupt": sum(|t| t.corrupt),
        "duplicates": sum(|t| t.duplicates),
        "lost": sum(|t| t.lost),
        "leaks": trials.iter().filter(|t| !t.leaks.is_empty()).count(),
        "failures": trials.iter().filter(|t| !t.failures.is_empty()).count(),
        "detect_p50_ms": percentile(&ms, 0.5),
        "detect_p99_ms": percentile(&ms, 0.99),
        "detect_max_ms": ms.last().copied().unwrap_or(0.0),
        "late": ms.iter().filter(|&&m| m > 1000.0).count(),
        "kinds": per_kind,
    })
}

fn print_summary(s: &serde_json::Value, trials: &[Trial], kinds: &[&str]) {
    println!(
        "{:<16} {:>7} {:>7} {:>9} {:>12} {:>12}",
        "kind", "trials", "failed", "messages", "detect p50", "detect max"
    );
    for &k in kinds {
        let r = &s["kinds"][k];
        println!(
            "{:<16} {:>7} {:>7} {:>9} {:>9.2} ms {:>9.2} ms",
            k,
            r["trials"].as_u64().unwrap_or(0),
            r["failed"].as_u64().unwrap_or(0),
            r["messages"].as_u64().unwrap_or(0),
            r["detect_p50_ms"].as_f64().unwrap_or(0.0),
            r["detect_max_ms"].as_f64().unwrap_or(0.0)
        );
    }
    println!(
        "{} trials (seed {}): {} hangs, {} corrupt, {} duplicates, {} lost, {} with leaks, {} other failures; \
         the survivor learned of the death in {:.2} ms (p50), {:.2} ms (p99), {:.2} ms (max); {} over 1 s",
        trials.len(),
        s["seed"],
        s["hangs"],
        s["corrupt"],
        s["duplicates"],
        s["lost"],
        s["leaks"],
        s["failures"],
        s["detect_p50_ms"].as_f64().unwrap_or(0.0),
        s["detect_p99_ms"].as_f64().unwrap_or(0.0),
        s["detect_max_ms"].as_f64().unwrap_or(0.0),
        s["late"],
    );
}
