//! `conduit tour`: every mechanism conduit has, shown between real
//! processes (this binary, spawned as `conduit __tour-child ROLE`), one
//! line each. Exits 0 only if every step worked.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use conduit::channel::{Bytes, pipe, shm};
use conduit::process::{Command, Linked};
use conduit::{PortSet, Receiver, RecvTimeoutError, ReplyTo, SendTimeoutError, Sender, TrySendError};
use serde::{Deserialize, Serialize};

/// What the tour hands a child.
#[derive(Serialize, Deserialize)]
enum Give {
    Segment(conduit::memory::Segment),
    Blocks(Receiver<Bytes>),
    Numbers(Sender<u64>),
    NumbersIn(Receiver<u64>),
    Bytes(Sender<Vec<u8>>, u64),
    Inbox(Receiver<String>),
    Outbox(Sender<String>),
    Service(Receiver<Question>),
    /// A remote object, and where to pass a copy of the reference.
    PassRemote(conduit::rpc::Remote, Sender<conduit::rpc::Remote>),
    /// Where a reference to a remote object will come from.
    TakeRemote(Receiver<conduit::rpc::Remote>),
}

/// A request carrying a send-once reply right.
#[derive(Serialize, Deserialize)]
enum Question {
    Square(u64, ReplyTo<u64>),
}

/// What a child tells the tour.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Tell {
    Ready,
    Full,
    Blocking,
    Done(u64),
    Heard(String, u32),
}

type Kid = Linked<Give, Tell>;
type Step = Result<String, String>;
type StepFn = fn() -> Step;

fn e(x: impl std::fmt::Display) -> String {
    x.to_string()
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn spawn(role: &str) -> Result<Kid, String> {
    spawn_with(role, &[])
}

fn spawn_with(role: &str, args: &[&str]) -> Result<Kid, String> {
    let exe = std::env::current_exe().map_err(e)?;
    Command::new(exe)
        .args(["__tour-child", role])
        .args(args)
        .spawn::<Give, Tell>()
        .map_err(|x| format!("spawn {role}: {x}"))
}

fn give(kid: &Kid, g: Give) -> Result<(), String> {
    kid.tx.send(g).map_err(e)
}

fn expect(kid: &Kid, want: Tell) -> Result<(), String> {
    match kid.rx.recv_timeout(Duration::from_secs(10)) {
        Ok(got) if got == want => Ok(()),
        Ok(got) => Err(format!("expected {want:?}, the child said {got:?}")),
        Err(x) => Err(format!("expected {want:?}: {x}")),
    }
}

/// The child has not said anything for a while (it is blocked).
fn silent(kid: &Kid) -> Result<(), String> {
    match kid.rx.recv_timeout(Duration::from_millis(100)) {
        Err(RecvTimeoutError::Timeout) => Ok(()),
        other => Err(format!("the child should be blocked, yet: {other:?}")),
    }
}

fn finish(mut kid: Kid) -> Result<(), String> {
    let exit = kid.child.wait().map_err(e)?;
    if exit.success() { Ok(()) } else { Err(format!("child ended with {exit:?}")) }
}

fn spawn_with_link() -> Step {
    let kid = spawn("exit")?;
    let pid = kid.child.id();
    let exit = kid.child.exits().recv_timeout(Duration::from_secs(10)).map_err(e)?;
    if exit.code != Some(3) {
        return Err(format!("expected exit code 3, got {exit:?}"));
    }
    if std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(format!("pid {pid} was not reaped"));
    }
    Ok(format!(
        "spawned pid {pid} with a linked channel pair; its exit (code 3) arrived as a message; reaped, no zombie"
    ))
}

/// `n` round trips through a `double` child over the given channels;
/// returns p50 and p99.
fn ping_pong(pairs: [(Sender<u64>, Receiver<u64>); 2], n: u64) -> Result<(Duration, Duration), String> {
    let [(to_tx, to_rx), (back_tx, back_rx)] = pairs;
    let kid = spawn("double")?;
    give(&kid, Give::NumbersIn(to_rx))?;
    give(&kid, Give::Numbers(back_tx))?;
    let mut rtts = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t = Instant::now();
        to_tx.send(i).map_err(e)?;
        let got = back_rx.recv().map_err(e)?;
        rtts.push(t.elapsed());
        if got != i * 2 {
            return Err(format!("sent {i}, got {got}"));
        }
    }
    drop(to_tx);
    finish(kid)?;
    rtts.sort();
    Ok((rtts[rtts.len() / 2], rtts[rtts.len() * 99 / 100]))
}

fn round_trip() -> Step {
    let pairs = [conduit::bounded::<u64>(1).map_err(e)?, conduit::bounded::<u64>(1).map_err(e)?];
    let (p50, p99) = ping_pong(pairs, 5000)?;
    Ok(format!(
        "8-byte request/response between two processes: p50 {}, p99 {} over 5000 round trips",
        micros(p50),
        micros(p99)
    ))
}

fn bounded() -> Step {
    let kid = spawn("fill")?;
    let (tx, rx) = conduit::bounded::<u64>(3).map_err(e)?;
    give(&kid, Give::Numbers(tx))?;
    expect(&kid, Tell::Full)?;
    expect(&kid, Tell::Blocking)?;
    silent(&kid)?;
    let queued = rx.len();
    let first = rx.recv().map_err(e)?;
    expect(&kid, Tell::Done(4))?;
    let rest: Vec<u64> = rx.iter().collect();
    finish(kid)?;
    if (queued, first, &rest[..]) != (3, 0, &[1, 2, 3][..]) {
        return Err(format!("queued {queued}, got {first} then {rest:?}"));
    }
    Ok("bounded(3): 3 sent, the 4th try_send said Full and send blocked until we took one; all 4 arrived in order"
        .into())
}

fn rendezvous() -> Step {
    let kid = spawn("rendezvous")?;
    let (tx, rx) = conduit::bounded::<u64>(0).map_err(e)?;
    give(&kid, Give::Numbers(tx))?;
    expect(&kid, Tell::Full)?;
    expect(&kid, Tell::Blocking)?;
    silent(&kid)?;
    // (A try_recv now could take the blocked sender's message: that is a
    // receive too. The point: nothing was buffered while nobody received.)
    let got = rx.recv().map_err(e)?;
    expect(&kid, Tell::Done(1))?;
    finish(kid)?;
    if got != 42 {
        return Err(format!("got {got}"));
    }
    Ok("rendezvous (bounded(0)): try_send said Full with nobody receiving; send completed only when we received".into())
}

fn unbounded() -> Step {
    const N: u64 = 10_000;
    let kid = spawn("flood")?;
    let (tx, rx) = conduit::unbounded::<Vec<u8>>().map_err(e)?;
    give(&kid, Give::Bytes(tx, N))?;
    // We read nothing until the child says it sent everything.
    expect(&kid, Tell::Done(N))?;
    let mut n = 0u64;
    for m in rx.iter() {
        if m != n.to_le_bytes().repeat(128) {
            return Err(format!("message {n} damaged or out of order"));
        }
        n += 1;
    }
    finish(kid)?;
    if n != N {
        return Err(format!("received {n} of {N}"));
    }
    Ok(format!(
        "unbounded: the child sent {N} × 1 KiB (~50× the kernel socket buffer) without blocking while we were not reading; all arrived"
    ))
}

fn pipes() -> Step {
    let pairs = [pipe::bounded::<u64>(1).map_err(e)?, pipe::bounded::<u64>(1).map_err(e)?];
    let (p50, _) = ping_pong(pairs, 2000)?;
    // The textbook's parent/child pipe: a child linked by two pipes.
    let exe = std::env::current_exe().map_err(e)?;
    let mut kid = Command::new(exe)
        .args(["__tour-child", "pipe-hello"])
        .pipes(true)
        .spawn::<Give, Tell>()
        .map_err(|x| format!("spawn pipe-hello: {x}"))?;
    let heard = kid.rx.recv_timeout(Duration::from_secs(10)).map_err(e)?;
    let pid = kid.child.id();
    if heard != Tell::Heard("hello through a pipe".into(), pid) {
        return Err(format!("the pipe-linked child said {heard:?}"));
    }
    drop(kid.tx);
    kid.child.wait().map_err(e)?;
    Ok(format!(
        "typed bounded channels over ordinary pipes (ends passed as rights): round trip p50 {}; a child linked by pipes said hello",
        micros(p50)
    ))
}

fn fifo() -> Step {
    let dir = std::env::temp_dir().join(format!("conduit-tour-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(e)?;
    let path = dir.join("requests.fifo");
    conduit::fifo::create(&path, 0o600).map_err(e)?;
    let rx = conduit::fifo::receiver::<Vec<u64>>(&path).map_err(e)?;
    let p = path.to_str().ok_or("temp path is not UTF-8")?;
    let kids = [spawn_with("fifo-writer", &[p])?, spawn_with("fifo-writer", &[p])?];
    let mut next = std::collections::HashMap::new();
    for _ in 0..2000 {
        let m = rx.recv_timeout(Duration::from_secs(10)).map_err(e)?;
        let (tag, i) = (m[0] >> 32, m[0] & 0xffff_ffff);
        if m.len() != 1 + (i % 400) as usize || m.iter().any(|&x| x != m[0]) {
            return Err(format!("message {i} of writer {tag} arrived torn or mixed"));
        }
        let want = next.entry(tag).or_insert(0u64);
        if i != *want {
            return Err(format!("writer {tag}: got message {i}, expected {want}"));
        }
        *want += 1;
    }
    for kid in kids {
        expect(&kid, Tell::Done(1000))?;
        finish(kid)?;
    }
    conduit::fifo::remove(&path).map_err(e)?;
    Ok("a FIFO made by path; two unrelated writers sent 1000 messages each: all whole, none interleaved, each in order"
        .into())
}

fn tcp() -> Step {
    let mut listener = conduit::net::Listener::bind("tcp:127.0.0.1:0").map_err(e)?;
    listener.set_capacity(Some(3));
    let addr = listener.local_addr().to_string();
    let kid = spawn_with("tcp-client", &[&addr])?;
    let conn = listener
        .accept_timeout::<String, String>(Duration::from_secs(10))
        .map_err(e)?
        .ok_or("the client did not connect")?;
    let hello = conn.rx.recv_timeout(Duration::from_secs(10)).map_err(e)?;
    conn.tx.send(hello.to_uppercase()).map_err(e)?;
    let pid = kid.child.id();
    expect(&kid, Tell::Heard("HELLO OVER TCP".into(), pid))?;
    finish(kid)?;
    Ok(format!(
        "a client process (pid {pid}) connected to {addr} from {}; typed messages both ways, bounded(3) by credits in band",
        conn.peer
    ))
}

fn udp() -> Step {
    let kid = spawn("udp-echo")?;
    let Tell::Heard(addr, _) = kid.rx.recv_timeout(Duration::from_secs(10)).map_err(e)? else {
        return Err("want the child's address".into());
    };
    let sock = conduit::net::udp::Socket::bind("127.0.0.1:0").map_err(e)?;
    // A corrupt datagram first: dropped and counted by the child.
    sock.as_std().send_to(b"not a frame", &addr).map_err(e)?;
    sock.send_to(&"ping".to_string(), addr.as_str()).map_err(e)?;
    let (answer, _) = sock.recv_from_timeout::<(String, u64)>(Duration::from_secs(10)).map_err(e)?;
    finish(kid)?;
    if answer != ("PING".to_string(), 1) {
        return Err(format!("unexpected answer {answer:?}"));
    }
    Ok(format!("a typed datagram to {addr} and its answer back; the corrupt one before it was dropped and counted"))
}

fn rights() -> Step {
    let b = spawn("relay-b")?;
    let c = spawn("relay-c")?;
    let (tx, rx) = conduit::unbounded::<String>().map_err(e)?;
    give(&c, Give::Inbox(rx))?;
    expect(&c, Tell::Ready)?;
    give(&b, Give::Outbox(tx))?;
    expect(&b, Tell::Done(1))?;
    let b_pid = b.child.id();
    expect(&c, Tell::Heard("hello from B".into(), b_pid))?;
    finish(b)?;
    finish(c)?;
    Ok(format!(
        "rights in messages: we gave C the receive right and B a send right; B (pid {b_pid}) reached C directly"
    ))
}

fn port_set_and_identity() -> Step {
    let kid = spawn("ident")?;
    let (_a_tx, a) = conduit::unbounded::<String>().map_err(e)?;
    let (b_tx, b) = conduit::bounded::<u64>(1).map_err(e)?;
    let (_c_tx, c) = conduit::bounded::<u64>(0).map_err(e)?;
    let mut set = PortSet::new();
    set.add(&a);
    let ib = set.add(&b);
    set.add(&c);
    give(&kid, Give::Numbers(b_tx))?;
    let ready = set.ready_timeout(Duration::from_secs(10));
    if ready != Some(ib) {
        return Err(format!("port set said {ready:?}, expected Some({ib})"));
    }
    let (pid, who) = b.recv_from().map_err(e)?;
    finish(kid)?;
    if who.pid as u64 != pid {
        return Err(format!("kernel says pid {}, child says {pid}", who.pid));
    }
    Ok(format!(
        "port set of 3 receivers woke on #{ib}; the kernel names the sender: pid {} uid {} gid {}",
        who.pid, who.uid, who.gid
    ))
}

fn call() -> Step {
    let kid = spawn("server")?;
    let (tx, rx) = conduit::bounded::<Question>(4).map_err(e)?;
    give(&kid, Give::Service(rx))?;
    let t = Instant::now();
    let sq = tx.call(|reply| Question::Square(12, reply)).map_err(e)?;
    let took = t.elapsed();
    drop(tx);
    finish(kid)?;
    if sq != 144 {
        return Err(format!("12² = {sq}?"));
    }
    Ok(format!("call with a send-once reply right: 12² = {sq} from the server process in {}", micros(took)))
}

fn dead_peer() -> Step {
    let mut kid = spawn("hold")?;
    let (tx, rx) = conduit::bounded::<u64>(1).map_err(e)?;
    give(&kid, Give::NumbersIn(rx))?;
    expect(&kid, Tell::Ready)?;
    tx.send(1).map_err(e)?;
    let blocked = std::thread::spawn(move || (tx.send_timeout(2, Duration::from_secs(10)), Instant::now()));
    let killed = Instant::now();
    kid.child.kill().map_err(e)?;
    let (got, at) = blocked.join().map_err(|_| "sender thread panicked".to_string())?;
    let exit = kid.child.wait().map_err(e)?;
    match got {
        Err(SendTimeoutError::Disconnected(2)) => Ok(format!(
            "dead peer: receiver killed with SIGKILL (signal {:?}); our blocked send said Disconnected after {}",
            exit.signal.unwrap_or(0),
            micros(at.saturating_duration_since(killed))
        )),
        other => Err(format!("blocked send after kill -9: {other:?}")),
    }
}

fn shared_memory() -> Step {
    let pairs = [shm::bounded::<u64>(1).map_err(e)?, shm::bounded::<u64>(1).map_err(e)?];
    let (p50, p99) = ping_pong(pairs, 20_000)?;
    Ok(format!(
        "shared-memory channels (sealed memfd ring, adaptive wait): p50 {}, p99 {} over 20000 round trips",
        micros(p50),
        micros(p99)
    ))
}

fn zero_copy() -> Step {
    const LEN: usize = 1 << 20;
    let kid = spawn("in-place")?;
    let (tx, rx) = shm::Builder::new().bounded(2).ring_bytes(4 << 20).build::<Bytes>().map_err(e)?;
    give(&kid, Give::Blocks(rx))?;
    let t = Instant::now();
    for round in 0..64u8 {
        let mut loan = tx.loan(LEN).map_err(e)?;
        loan.fill(round);
        loan.send();
    }
    drop(tx);
    expect(&kid, Tell::Done(64))?;
    let took = t.elapsed();
    finish(kid)?;
    Ok(format!(
        "zero copy: 64 × 1 MiB written in place in the ring (a loan) and read in place by the child: {:.1} GB/s",
        64.0 * LEN as f64 / took.as_secs_f64() / 1e9
    ))
}

fn segment() -> Step {
    let kid = spawn("segment")?;
    let seg = conduit::memory::Segment::new(4096).map_err(e)?;
    seg.write_at(0, b"from the parent").map_err(e)?;
    give(&kid, Give::Segment(seg.try_clone().map_err(e)?))?;
    expect(&kid, Tell::Done(15))?;
    finish(kid)?;
    let mut back = [0u8; 14];
    seg.read_at(100, &mut back).map_err(e)?;
    if &back != b"from the child" {
        return Err(format!("read back {:?}", String::from_utf8_lossy(&back)));
    }
    let leftovers = std::fs::read_dir("/dev/shm").map(|d| d.flatten().count()).unwrap_or(0);
    Ok(format!(
        "segment: a sealed anonymous memfd passed as a right; the child read ours and wrote back; no name anywhere ({leftovers} entries in /dev/shm, none ours)"
    ))
}

/// CPU time of a process so far (ns, from /proc/PID/schedstat).
fn cpu_ns(pid: u32) -> Result<u64, String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).map_err(e)?;
    s.split_whitespace().next().and_then(|v| v.parse().ok()).ok_or_else(|| "bad schedstat".to_string())
}

fn idle() -> Step {
    let kid = spawn("idle")?;
    let (tx, rx) = shm::bounded::<u64>(1).map_err(e)?;
    give(&kid, Give::NumbersIn(rx))?;
    expect(&kid, Tell::Ready)?;
    let pid = kid.child.id();
    let (c0, t0) = (cpu_ns(pid)?, Instant::now());
    // A window to measure over (nothing waits on it).
    std::thread::sleep(Duration::from_millis(300));
    let (c1, window) = (cpu_ns(pid)?, t0.elapsed());
    tx.send(1).map_err(e)?;
    expect(&kid, Tell::Done(1))?;
    finish(kid)?;
    let share = (c1 - c0) as f64 / window.as_nanos() as f64 * 100.0;
    if share > 5.0 {
        return Err(format!("an idle adaptive receiver used {share:.2}% of a core"));
    }
    Ok(format!(
        "idle: a receiver blocked on a shared-memory channel used {share:.3}% of a core (spins 20 µs, then sleeps on a futex)"
    ))
}

/// A broker inside this process, on a private socket, for the tour.
fn tour_broker() -> Result<(conduit_broker::Client, std::path::PathBuf), String> {
    let dir = std::env::temp_dir().join(format!("conduit-tour-{}", std::process::id()));
    let socket = dir.join("broker.sock");
    let client = conduit_broker::Client::connect_or_start_at(&socket).map_err(e)?;
    Ok((client, socket))
}

fn mailbox() -> Step {
    use conduit_broker::{MailboxOptions, OnFull, WaitFor};
    let (client, socket) = tour_broker()?;
    let kid = spawn_with("mailbox-writer", &[socket.to_str().unwrap_or_default()])?;
    expect(&kid, Tell::Done(3))?;
    let writer = kid.child.id();
    finish(kid)?;
    let lowest = client.recv("tour", -9, WaitFor::NoWait).map_err(e)?;
    let typed = client.recv("tour", 7, WaitFor::NoWait).map_err(e)?;
    let rest = client.recv("tour", 0, WaitFor::NoWait).map_err(e)?;
    client.remove_mailbox("tour").map_err(e)?;
    let gone = client.send("tour", 1, b"x", OnFull::NoWait);
    let _ = MailboxOptions::default();
    if (lowest.mtype, typed.mtype, rest.mtype) != (2, 7, 9) || lowest.sender != writer {
        return Err(format!("got types {}, {}, {}", lowest.mtype, typed.mtype, rest.mtype));
    }
    Ok(format!(
        "mailbox: pid {writer} created \"tour\" (3 messages; its queue in shared memory, held by the broker), sent types 9, 2, 7 straight into it and exited; we received by type (lowest ≤ 9: 2, then 7, then any: 9); removed, so a send now says: {}",
        gone.err().map_or("ok?".into(), |x| x.to_string())
    ))
}

fn names() -> Step {
    let (client, socket) = tour_broker()?;
    let kid = spawn_with("echo-service", &[socket.to_str().unwrap_or_default()])?;
    expect(&kid, Tell::Ready)?;
    let (tx, rx) = client.connect_service::<String, String>("tour.echo").map_err(e)?;
    tx.send("matchmaker".into()).map_err(e)?;
    let answer = rx.recv().map_err(e)?;
    drop(tx);
    finish(kid)?;
    Ok(format!(
        "names: a child registered \"tour.echo\"; we looked it up and got a private pair of ports (the broker, pid {}, left the path): {answer}",
        client.broker_pid()
    ))
}

/// The tour's RPC service.
#[conduit::service]
pub trait TourCalc {
    /// a + b.
    fn add(&self, a: i64, b: i64) -> i64;
    /// The process serving.
    fn pid(&self) -> u32;
}

struct TourAdder;

impl TourCalc for TourAdder {
    fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
    fn pid(&self) -> u32 {
        std::process::id()
    }
}

fn rpc() -> Step {
    let (client, socket) = tour_broker()?;
    let kid = spawn_with("rpc-service", &[socket.to_str().unwrap_or_default()])?;
    expect(&kid, Tell::Ready)?;
    let calc = TourCalcClient::new(client.connect_rpc("tour.calc").map_err(e)?);
    let sum = calc.add(40, 2).map_err(e)?;
    let server = calc.pid().map_err(e)?;
    let t = Instant::now();
    let n = 1000;
    for i in 0..n {
        if calc.add(i, 1).map_err(e)? != i + 1 {
            return Err("a wrong sum".into());
        }
    }
    let per_call = t.elapsed() / n as u32;
    drop(calc);
    drop(kid.tx);
    let mut child = kid.child;
    child.wait().map_err(e)?;
    if server != child.id() || sum != 42 {
        return Err(format!("add(40, 2) = {sum} from pid {server}"));
    }
    Ok(format!(
        "rpc: stubs from a trait; the matchmaker found \"tour.calc\" in pid {server} over shared memory; add(40, 2) = {sum}; {n} calls at {} each",
        micros(per_call)
    ))
}

/// The tour's remote object: counts the calls, and says when it is dropped.
struct Tally {
    calls: std::sync::atomic::AtomicU32,
    dropped: Sender<u32>,
}

impl TourCalc for Tally {
    fn add(&self, a: i64, b: i64) -> i64 {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        a + b
    }
    fn pid(&self) -> u32 {
        std::process::id()
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        let _ = self.dropped.send(self.calls.load(std::sync::atomic::Ordering::SeqCst));
    }
}

fn remote() -> Step {
    let (dropped_tx, dropped) = conduit::unbounded::<u32>().map_err(e)?;
    let object = Tally { calls: Default::default(), dropped: dropped_tx };
    let reference = conduit::rpc::Remote::serve(TourCalcServer(object)).map_err(e)?;
    let b = spawn("remote-b")?;
    let c = spawn("remote-c")?;
    let (pass_tx, pass_rx) = conduit::unbounded::<conduit::rpc::Remote>().map_err(e)?;
    give(&c, Give::TakeRemote(pass_rx))?;
    give(&b, Give::PassRemote(reference.clone(), pass_tx))?;
    let me = std::process::id();
    expect(&b, Tell::Heard("called".into(), me))?;
    expect(&c, Tell::Heard("called".into(), me))?;
    let (b_pid, c_pid) = (b.child.id(), c.child.id());
    finish(b)?;
    finish(c)?;
    drop(reference);
    let calls =
        dropped.recv_timeout(Duration::from_secs(10)).map_err(|x| format!("the object was not dropped: {x}"))?;
    Ok(format!(
        "remote object: served here (pid {me}); pid {b_pid} called it and passed the reference to pid {c_pid}, which called it too ({calls} calls); dropped here when the last reference went"
    ))
}

fn async_tokio() -> Step {
    let kid = spawn("double")?;
    let (to_tx, to_rx) = conduit::bounded::<u64>(1).map_err(e)?;
    let (back_tx, back_rx) = conduit::bounded::<u64>(1).map_err(e)?;
    give(&kid, Give::NumbersIn(to_rx))?;
    give(&kid, Give::Numbers(back_tx))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(e)?;
    let sum = rt.block_on(async {
        let mut sum = 0;
        for i in 0..100u64 {
            to_tx.send_async(i).await.map_err(e)?;
            sum += back_rx.recv_async().await.map_err(e)?;
        }
        Ok::<u64, String>(sum)
    })?;
    drop(to_tx);
    finish(kid)?;
    Ok(format!("async: 100 round trips with send_async/recv_async inside tokio (sum {sum})"))
}

/// Run the tour.
pub fn run() -> ExitCode {
    let steps: [(&str, StepFn); 22] = [
        ("spawn", spawn_with_link),
        ("round-trip", round_trip),
        ("bounded", bounded),
        ("rendezvous", rendezvous),
        ("unbounded", unbounded),
        ("rights", rights),
        ("port-set", port_set_and_identity),
        ("call", call),
        ("dead-peer", dead_peer),
        ("async", async_tokio),
        ("shm", shared_memory),
        ("zero-copy", zero_copy),
        ("pipe", pipes),
        ("fifo", fifo),
        ("tcp", tcp),
        ("udp", udp),
        ("segment", segment),
        ("idle", idle),
        ("mailbox", mailbox),
        ("names", names),
        ("rpc", rpc),
        ("remote", remote),
    ];
    println!("conduit {} tour: every mechanism, between real processes", env!("CARGO_PKG_VERSION"));
    let mut failed = 0;
    for (name, step) in steps {
        match step() {
            Ok(line) => println!("  ok    {name:<11} {line}"),
            Err(why) => {
                failed += 1;
                println!("  FAIL  {name:<11} {why}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("conduit-tour-{}", std::process::id())));
    if failed == 0 {
        println!("all {} steps worked", steps.len());
        ExitCode::SUCCESS
    } else {
        println!("{failed} of {} steps failed", steps.len());
        ExitCode::FAILURE
    }
}

/// A child process of the tour.
pub fn child(role: &str) -> ExitCode {
    match child_role(role) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("tour child {role}: {why}");
            ExitCode::FAILURE
        }
    }
}

fn child_role(role: &str) -> Result<(), String> {
    let (tell, given) = conduit::process::parent::<Tell, Give>().map_err(e)?;
    let say = |t: Tell| tell.send(t).map_err(e);
    let next = || given.recv().map_err(e);
    let wrong = || Err::<(), String>(format!("{role}: unexpected instruction"));
    if role == "exit" {
        std::process::exit(3);
    }
    let arg = std::env::args().nth(3).unwrap_or_default();
    if role == "mailbox-writer" {
        let c = conduit_broker::Client::connect_to(arg.as_ref()).map_err(e)?;
        let opts =
            conduit_broker::MailboxOptions { capacity: conduit_broker::Capacity::Bounded(3), ..Default::default() };
        c.create_mailbox("tour", opts).map_err(e)?;
        for t in [9, 2, 7] {
            c.send("tour", t, format!("type {t}").as_bytes(), conduit_broker::OnFull::NoWait).map_err(e)?;
        }
        return say(Tell::Done(3));
    }
    if role == "fifo-writer" {
        let tx = conduit::fifo::sender_timeout::<Vec<u64>>(&arg, Duration::from_secs(10)).map_err(e)?;
        let tag = u64::from(std::process::id());
        for i in 0..1000u64 {
            tx.send(vec![tag << 32 | i; 1 + (i % 400) as usize]).map_err(e)?;
        }
        tx.flush();
        return say(Tell::Done(1000));
    }
    if role == "tcp-client" {
        let conn = conduit::net::connect::<String, String>(arg.as_str()).map_err(e)?;
        conn.tx.send("hello over TCP".into()).map_err(e)?;
        let back = conn.rx.recv_timeout(Duration::from_secs(10)).map_err(e)?;
        return say(Tell::Heard(back, std::process::id()));
    }
    if role == "udp-echo" {
        let sock = conduit::net::udp::Socket::bind("127.0.0.1:0").map_err(e)?;
        say(Tell::Heard(sock.local_addr().map_err(e)?.to_string(), std::process::id()))?;
        let (q, from) = sock.recv_from_timeout::<String>(Duration::from_secs(10)).map_err(e)?;
        return sock.send_to(&(q.to_uppercase(), sock.dropped()), from).map_err(e);
    }
    if role == "pipe-hello" {
        return say(Tell::Heard("hello through a pipe".into(), std::process::id()));
    }
    if role == "remote-b" || role == "remote-c" {
        let reference = match next()? {
            Give::PassRemote(r, onward) => {
                let calc = TourCalcClient::new(r.client());
                let server = calc.pid().map_err(e)?;
                calc.add(1, 2).map_err(e)?;
                onward.send(r).map_err(e)?;
                say(Tell::Heard("called".into(), server))?;
                return Ok(());
            }
            Give::TakeRemote(from) => from.recv().map_err(e)?,
            _ => return wrong(),
        };
        let calc = TourCalcClient::new(reference.client());
        let server = calc.pid().map_err(e)?;
        calc.add(3, 4).map_err(e)?;
        return say(Tell::Heard("called".into(), server));
    }
    if role == "rpc-service" {
        let c = conduit_broker::Client::connect_to(arg.as_ref()).map_err(e)?;
        let service = std::sync::Arc::new(TourCalcServer(TourAdder));
        let _serving = c.serve_rpc("tour.calc", conduit_broker::NameFlags::default(), service).map_err(e)?;
        say(Tell::Ready)?;
        // Serve until the tour lets go of us.
        while next().is_ok() {}
        return Ok(());
    }
    if role == "echo-service" {
        let c = conduit_broker::Client::connect_to(arg.as_ref()).map_err(e)?;
        let conns = c.serve::<String, String>("tour.echo", conduit_broker::NameFlags::default()).map_err(e)?;
        say(Tell::Ready)?;
        let conn = conns.recv().map_err(e)?;
        for req in conn.requests.iter() {
            conn.replies.send(format!("hello, {req}")).map_err(e)?;
        }
        return Ok(());
    }
    match (role, next()?) {
        ("double", Give::NumbersIn(rx)) => {
            let Give::Numbers(tx) = next()? else { return wrong() };
            for x in rx.iter() {
                tx.send(x * 2).map_err(e)?;
            }
        }
        ("fill", Give::Numbers(tx)) => {
            for i in 0..3 {
                tx.send(i).map_err(e)?;
            }
            if matches!(tx.try_send(3), Err(TrySendError::Full(3))) {
                say(Tell::Full)?;
            }
            say(Tell::Blocking)?;
            tx.send(3).map_err(e)?;
            say(Tell::Done(4))?;
        }
        ("rendezvous", Give::Numbers(tx)) => {
            if matches!(tx.try_send(42), Err(TrySendError::Full(42))) {
                say(Tell::Full)?;
            }
            say(Tell::Blocking)?;
            tx.send(42).map_err(e)?;
            say(Tell::Done(1))?;
        }
        ("flood", Give::Bytes(tx, n)) => {
            for i in 0..n {
                tx.try_send(i.to_le_bytes().repeat(128)).map_err(e)?;
            }
            say(Tell::Done(n))?;
            tx.flush();
        }
        ("relay-b", Give::Outbox(tx)) => {
            tx.send("hello from B".into()).map_err(e)?;
            say(Tell::Done(1))?;
        }
        ("relay-c", Give::Inbox(rx)) => {
            say(Tell::Ready)?;
            let (msg, who) = rx.recv_from().map_err(e)?;
            say(Tell::Heard(msg, who.pid))?;
        }
        ("ident", Give::Numbers(tx)) => tx.send(std::process::id() as u64).map_err(e)?,
        ("server", Give::Service(rx)) => {
            for Question::Square(x, reply) in rx.iter() {
                reply.send(x * x).map_err(e)?;
            }
        }
        ("in-place", Give::Blocks(mut rx)) => {
            let mut n = 0;
            loop {
                match rx.recv_in_place() {
                    Ok(block) => {
                        if block.len() != 1 << 20 || block.iter().any(|&b| b != n as u8) {
                            return Err(format!("block {n} damaged"));
                        }
                        n += 1;
                    }
                    Err(conduit::RecvError::Disconnected) => break,
                    Err(x) => return Err(x.to_string()),
                }
            }
            say(Tell::Done(n))?;
        }
        ("segment", Give::Segment(seg)) => {
            let mut buf = [0u8; 15];
            seg.read_at(0, &mut buf).map_err(e)?;
            seg.write_at(100, b"from the child").map_err(e)?;
            say(Tell::Done(if &buf == b"from the parent" { 15 } else { 0 }))?;
        }
        ("idle", Give::NumbersIn(rx)) => {
            say(Tell::Ready)?;
            let got = rx.recv().map_err(e)?;
            say(Tell::Done(got))?;
        }
        ("hold", _held) => {
            say(Tell::Ready)?;
            let _ = given.recv();
        }
        _ => return wrong(),
    }
    Ok(())
}
