//! The floors: what the kernel and the hardware can do with no library in
//! the way, written here in a few lines each. Every floor moves the same
//! messages as the other cases: one copy in, one copy out.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::time::Instant;

use conduit::memory::Segment;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};
use rustix::thread::futex;

use crate::Give;
use crate::driver::{self, Link, MIB, Measurement, Plan};
use crate::peer::{Peer, spawn_peer};

fn run(
    name: &str,
    args: &[String],
    link: impl FnOnce(&crate::peer::Running) -> io::Result<Box<dyn Link>>,
    plan: Plan,
    tick: &mut dyn FnMut(),
) -> io::Result<Measurement> {
    let peer = spawn_peer(name, args)?;
    let m = link(&peer).and_then(|mut l| driver::measure(name, &mut *l, plan, tick));
    peer.finish(m)
}

fn unique(case: &str) -> String {
    format!("conduit-bench-{}-{}", std::process::id(), case.replace('/', "-"))
}

// ---------------------------------------------------------------- uds

/// A Unix-domain `SOCK_SEQPACKET` socket: conduit's own transport, raw.
pub struct Seqpacket(OwnedFd);

/// Largest datagram the floor sends (the kernel's socket buffer bounds it).
const DATAGRAM_MAX: usize = 64 * 1024;

impl Link for Seqpacket {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        rustix::net::send(&self.0, data, SendFlags::NOSIGNAL)?;
        Ok(())
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.resize(DATAGRAM_MAX, 0);
        let (n, _) = rustix::net::recv(&self.0, &mut buf[..], RecvFlags::empty())?;
        buf.truncate(n);
        Ok(())
    }
    fn max_message(&self) -> usize {
        DATAGRAM_MAX
    }
}

/// `floor/uds`: raw `SOCK_SEQPACKET` ping-pong and streams.
pub fn uds(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let name = unique("floor/uds");
    let addr = SocketAddrUnix::new_abstract_name(name.as_bytes())?;
    let listener = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
    rustix::net::bind(&listener, &addr)?;
    rustix::net::listen(&listener, 1)?;
    run(
        "floor/uds",
        &[name],
        |_| Ok(Box::new(Seqpacket(rustix::net::accept_with(&listener, SocketFlags::CLOEXEC)?))),
        plan,
        tick,
    )
}

/// The peer of `floor/uds`.
pub fn uds_peer(p: &Peer) -> io::Result<()> {
    let addr = SocketAddrUnix::new_abstract_name(p.arg(0)?.as_bytes())?;
    let sock = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
    rustix::net::connect(&sock, &addr)?;
    driver::serve(&mut Seqpacket(sock))
}

// ---------------------------------------------------------- streams

/// A byte stream with a 4-byte length before each message.
pub struct Framed<R, W> {
    r: std::io::BufReader<R>,
    w: W,
}

impl<R: Read, W: Write> Framed<R, W> {
    /// The byte-stream floor at its best: one `writev` per message (length
    /// prefix and payload together), reads buffered (many small messages
    /// per `read`, large ones straight into the caller's buffer).
    pub fn new(r: R, w: W) -> Self {
        Framed { r: std::io::BufReader::with_capacity(64 * 1024, r), w }
    }
}

impl<R: Read, W: Write> Link for Framed<R, W> {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let len = (data.len() as u32).to_le_bytes();
        let mut iov = [std::io::IoSlice::new(&len), std::io::IoSlice::new(data)];
        let mut left = &mut iov[..];
        while !left.is_empty() {
            let n = self.w.write_vectored(left)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            std::io::IoSlice::advance_slices(&mut left, n);
        }
        Ok(())
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        let mut len = [0u8; 4];
        self.r.read_exact(&mut len)?;
        buf.resize(u32::from_le_bytes(len) as usize, 0);
        self.r.read_exact(buf)
    }
}

/// `floor/pipe`: two ordinary pipes.
pub fn pipe(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let (down_r, down_w) = rustix::pipe::pipe()?;
    let (up_r, up_w) = rustix::pipe::pipe()?;
    // The peer opens its ends through /proc (same user), so no descriptor
    // has to be inherited.
    let args = vec![down_r.as_raw_fd().to_string(), up_w.as_raw_fd().to_string()];
    let peer = spawn_peer("floor/pipe", &args)?;
    // Wait until the peer holds its ends, then close ours.
    peer.wait_ready()?;
    drop((down_r, up_w));
    let mut link = Framed::new(File::from(up_r), File::from(down_w));
    let m = driver::measure("floor/pipe", &mut link, plan, tick);
    peer.finish(m)
}

/// The peer of `floor/pipe`.
pub fn pipe_peer(p: &Peer) -> io::Result<()> {
    let ppid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    let open = |fd: &str, write: bool| File::options().read(!write).write(write).open(format!("/proc/{ppid}/fd/{fd}"));
    let r = open(p.arg(0)?, false)?;
    let w = open(p.arg(1)?, true)?;
    p.ready()?;
    driver::serve(&mut Framed::new(r, w))
}

/// `floor/tcp`: TCP over loopback, `TCP_NODELAY`.
pub fn tcp(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port().to_string();
    run(
        "floor/tcp",
        &[port],
        |_| {
            let (s, _) = listener.accept()?;
            s.set_nodelay(true)?;
            Ok(Box::new(Framed::new(s.try_clone()?, s)))
        },
        plan,
        tick,
    )
}

/// The peer of `floor/tcp`.
pub fn tcp_peer(p: &Peer) -> io::Result<()> {
    let s = TcpStream::connect(("127.0.0.1", p.arg(0)?.parse::<u16>().map_err(io::Error::other)?))?;
    s.set_nodelay(true)?;
    driver::serve(&mut Framed::new(s.try_clone()?, s))
}

// ---------------------------------------------------------------- udp

/// A raw UDP socket: one datagram per message.
impl crate::conduit_cases::Datagrams for std::net::UdpSocket {
    fn send_to(&self, data: &[u8], to: std::net::SocketAddr) -> io::Result<()> {
        std::net::UdpSocket::send_to(self, data, to)?;
        Ok(())
    }
    fn recv_from(&self, buf: &mut Vec<u8>) -> io::Result<std::net::SocketAddr> {
        buf.resize(64 * 1024, 0);
        let (n, from) = std::net::UdpSocket::recv_from(self, buf)?;
        buf.truncate(n);
        Ok(from)
    }
}

/// `floor/udp`: raw datagrams over loopback UDP (round trips only).
pub fn udp(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let peer = spawn_peer("floor/udp", &[sock.local_addr()?.to_string()])?;
    let m = crate::conduit_cases::datagram_case("floor/udp", &sock, plan, tick);
    peer.finish(m)
}

/// The peer of `floor/udp`.
pub fn udp_peer(p: &Peer) -> io::Result<()> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let to = p.arg(0)?.parse().map_err(io::Error::other)?;
    crate::conduit_cases::datagram_peer(&sock, to)
}

// -------------------------------------------------------- posix mq

/// A pair of POSIX message queues. Their descriptors are closed on drop
/// (`nix`'s `MqdT` does not close itself): a queue's memory counts against
/// the user's `RLIMIT_MSGQUEUE` until it is unlinked *and* closed.
pub struct PosixMq {
    tx: Option<nix::mqueue::MqdT>,
    rx: Option<nix::mqueue::MqdT>,
}

impl Drop for PosixMq {
    fn drop(&mut self) {
        for q in [self.tx.take(), self.rx.take()].into_iter().flatten() {
            let _ = nix::mqueue::mq_close(q);
        }
    }
}

const MQ_MSG: usize = 8192;

fn open_end(q: &Option<nix::mqueue::MqdT>) -> io::Result<&nix::mqueue::MqdT> {
    q.as_ref().ok_or_else(|| io::Error::other("queue closed"))
}

impl Link for PosixMq {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        nix::mqueue::mq_send(open_end(&self.tx)?, data, 0).map_err(io::Error::from)
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.resize(MQ_MSG, 0);
        let mut prio = 0;
        let n = nix::mqueue::mq_receive(open_end(&self.rx)?, buf, &mut prio).map_err(io::Error::from)?;
        buf.truncate(n);
        Ok(())
    }
    fn max_message(&self) -> usize {
        MQ_MSG
    }
}

/// A queue's name, unlinked when dropped (on every path, failures too).
struct MqName(String);

impl Drop for MqName {
    fn drop(&mut self) {
        let _ = nix::mqueue::mq_unlink(self.0.as_str());
    }
}

fn mq_open(name: &str, create: bool) -> io::Result<nix::mqueue::MqdT> {
    use nix::mqueue::{MQ_OFlag, MqAttr};
    use nix::sys::stat::Mode;
    let attr = MqAttr::new(0, 10, MQ_MSG as _, 0);
    let flags = if create { MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_RDWR } else { MQ_OFlag::O_RDWR };
    nix::mqueue::mq_open(name, flags, Mode::from_bits_truncate(0o600), Some(&attr)).map_err(io::Error::from)
}

/// `floor/posix-mq`: the kernel's own mailbox (messages of at most 8 KiB).
pub fn posix_mq(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    // A fresh pair of names each round; both unlinked however this ends.
    static ROUND: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let round = ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let down = MqName(format!("/{}-{round}-down", unique("mq")));
    let up = MqName(format!("/{}-{round}-up", unique("mq")));
    let mut link = PosixMq { tx: Some(mq_open(&down.0, true)?), rx: None };
    link.rx = Some(mq_open(&up.0, true)?);
    let peer = spawn_peer("floor/posix-mq", &[down.0.clone(), up.0.clone()])?;
    peer.wait_ready()?;
    drop((down, up)); // both ends are open: the names are no longer needed
    let m = driver::measure("floor/posix-mq", &mut link, plan, tick);
    peer.finish(m)
}

/// The peer of `floor/posix-mq`.
pub fn posix_mq_peer(p: &Peer) -> io::Result<()> {
    let mut link = PosixMq { rx: Some(mq_open(p.arg(0)?, false)?), tx: Some(mq_open(p.arg(1)?, false)?) };
    p.ready()?;
    driver::serve(&mut link)
}

// ------------------------------------------------------------ memcpy

/// `floor/memcpy`: copying 1 MiB within one process (bandwidth only).
pub fn memcpy(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let src = vec![0x5au8; MIB];
    let mut dst = vec![0u8; MIB];
    let reps = plan.large.max(1) * 4;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for i in 0..reps {
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&mut dst)[0] = i as u8;
        }
        best = best.min(t.elapsed().as_secs_f64());
        tick();
    }
    Ok(Measurement { gb_per_s_1mib: Some((reps * MIB) as f64 / best / 1e9), ..Measurement::empty("floor/memcpy") })
}

// ---------------------------------------------------------------- line

/// The word `floor/line` bounces (the first of its segment: a cache line
/// of its own). The driver writes odd values, the peer answers with the
/// next even one; `u64::MAX` says stop.
const LINE_STOP: u64 = u64::MAX;

/// `floor/line`: one cache line bounced between two pinned processes —
/// each round trip is the line moving to the peer's core and back, with
/// nothing else: the physical limit of a cross-core round trip here, below
/// `floor/spin` (which moves a flag and a slot each way). Round trips
/// only.
pub fn line(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let seg = Segment::new(4096).map_err(io::Error::other)?;
    let peer = spawn_peer("floor/line", &[])?;
    let give = Give::Segments(seg.try_clone().map_err(io::Error::other)?, seg.try_clone().map_err(io::Error::other)?);
    let m = peer.give(give).and_then(|()| {
        let word = seg.atomic_u64(0);
        let mut next = 1u64;
        let rtts = driver::round_trips(plan, || {
            word.store(next, Release);
            while word.load(Acquire) != next + 1 {
                std::hint::spin_loop();
            }
            next += 2;
            Ok(())
        });
        word.store(LINE_STOP, Release);
        let rtts = rtts?;
        tick();
        Ok(Measurement::round_trips_only("floor/line", &rtts))
    });
    peer.finish(m)
}

/// The peer of `floor/line`.
pub fn line_peer(p: &Peer) -> io::Result<()> {
    let Give::Segments(seg, _) = p.take()? else { return Err(io::Error::other("expected a segment")) };
    let word = seg.atomic_u64(0);
    loop {
        let v = word.load(Acquire);
        if v == LINE_STOP {
            return Ok(());
        }
        if !v.is_multiple_of(2) {
            word.store(v + 1, Release);
        } else {
            std::hint::spin_loop();
        }
    }
}

// ------------------------------------------------- spin and futex

/// A single-producer, single-consumer ring of fixed slots in a shared
/// segment, hand-written: the least a shared-memory transport can do.
/// `park` makes every wait a futex sleep and every publish a futex wake.
pub struct SlotRing {
    seg: Segment,
    park: bool,
}

const SLOTS: u64 = 4;
const SLOT: usize = MIB + 64;
// Each hot word in a 128-byte block of its own: adjacent-line prefetchers
// pair 64-byte lines, which would make neighbours share falsely.
const TAIL: usize = 0;
const HEAD: usize = 128;
const DATA_SEQ: usize = 256;
const SPACE_SEQ: usize = 384;
const BASE: usize = 4096;

impl SlotRing {
    /// A new ring.
    pub fn create(park: bool) -> io::Result<SlotRing> {
        Ok(SlotRing { seg: Segment::new(BASE + SLOTS as usize * SLOT).map_err(io::Error::other)?, park })
    }

    fn wait(&self, word: usize, done: impl Fn() -> bool) {
        while !done() {
            if self.park {
                let seq = self.seg.atomic_u32(word);
                let s = seq.load(SeqCst);
                if !done() {
                    let _ = futex::wait(seq, futex::Flags::empty(), s, None);
                }
            } else {
                std::hint::spin_loop();
            }
        }
    }

    fn wake(&self, word: usize) {
        if self.park {
            let seq = self.seg.atomic_u32(word);
            seq.fetch_add(1, SeqCst);
            let _ = futex::wake(seq, futex::Flags::empty(), 1);
        }
    }

    fn send(&self, data: &[u8]) -> io::Result<()> {
        let (tail, head) = (self.seg.atomic_u64(TAIL), self.seg.atomic_u64(HEAD));
        let t = tail.load(Relaxed);
        self.wait(SPACE_SEQ, || t - head.load(Acquire) < SLOTS);
        let at = BASE + (t % SLOTS) as usize * SLOT;
        self.seg.write_at(at, &(data.len() as u64).to_le_bytes()).map_err(io::Error::other)?;
        self.seg.write_at(at + 8, data).map_err(io::Error::other)?;
        tail.store(t + 1, Release);
        self.wake(DATA_SEQ);
        Ok(())
    }

    fn recv(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        let (tail, head) = (self.seg.atomic_u64(TAIL), self.seg.atomic_u64(HEAD));
        let h = head.load(Relaxed);
        self.wait(DATA_SEQ, || tail.load(Acquire) != h);
        let at = BASE + (h % SLOTS) as usize * SLOT;
        let mut len = [0u8; 8];
        self.seg.read_at(at, &mut len).map_err(io::Error::other)?;
        buf.resize(u64::from_le_bytes(len) as usize, 0);
        self.seg.read_at(at + 8, buf).map_err(io::Error::other)?;
        head.store(h + 1, Release);
        self.wake(SPACE_SEQ);
        Ok(())
    }
}

/// Two slot rings, one each way.
pub struct SlotLink {
    tx: SlotRing,
    rx: SlotRing,
}

impl Link for SlotLink {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.tx.send(data)
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        self.rx.recv(buf)
    }
    fn max_message(&self) -> usize {
        MIB
    }
}

fn shared_rings(name: &str, park: bool, plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let (down, up) = (SlotRing::create(park)?, SlotRing::create(park)?);
    let clone = |r: &SlotRing| r.seg.try_clone().map_err(io::Error::other);
    let give = Give::Segments(clone(&down)?, clone(&up)?);
    run(
        name,
        &[],
        move |peer| {
            peer.give(give)?;
            Ok(Box::new(SlotLink { tx: down, rx: up }))
        },
        plan,
        tick,
    )
}

/// `floor/spin`: two processes spinning on shared flags.
pub fn spin(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    shared_rings("floor/spin", false, plan, tick)
}

/// `floor/futex`: the same, sleeping on futexes (every wait a syscall).
pub fn futex(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    shared_rings("floor/futex", true, plan, tick)
}

/// The peer of `floor/spin` and `floor/futex`.
pub fn shared_rings_peer(p: &Peer, park: bool) -> io::Result<()> {
    match p.take()? {
        Give::Segments(down, up) => {
            let _ = down.as_fd();
            driver::serve(&mut SlotLink { rx: SlotRing { seg: down, park }, tx: SlotRing { seg: up, park } })
        }
        _ => Err(io::Error::other("expected segments")),
    }
}

/// The peer of `floor/spin`.
pub fn spin_peer(p: &Peer) -> io::Result<()> {
    shared_rings_peer(p, false)
}

/// The peer of `floor/futex`.
pub fn futex_peer(p: &Peer) -> io::Result<()> {
    shared_rings_peer(p, true)
}

/// The peer of `floor/memcpy` (none runs).
pub fn no_peer(_: &Peer) -> io::Result<()> {
    Ok(())
}

// ------------------------------------------------------------ sysv msg

/// One System V message queue, both directions by `mtype` (1: to the
/// peer, 2: back), raw bytes (`floor/sysv-msg`) or conduit frames
/// (`conduit/sysv`).
pub struct SysvQueue {
    q: conduit::kernel::MessageQueue,
    send_type: i64,
    recv_type: i64,
    typed: bool,
}

/// Bytes serialized as one byte string (what [`conduit::Bytes`] decodes).
struct Slice<'a>(&'a [u8]);

impl serde::Serialize for Slice<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl Link for SysvQueue {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let sent =
            if self.typed { self.q.send_msg(self.send_type, &Slice(data)) } else { self.q.send(self.send_type, data) };
        sent.map_err(io::Error::other)
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        let select = conduit::kernel::Select::Type(self.recv_type);
        *buf = if self.typed {
            self.q.recv_msg::<conduit::Bytes>(select).map_err(io::Error::other)?.1.0
        } else {
            self.q.recv(select).map_err(io::Error::other)?.1
        };
        Ok(())
    }
    fn max_message(&self) -> usize {
        // A conduit frame's header and the payload's length prefix.
        conduit::kernel::msgmax() - if self.typed { 32 } else { 0 }
    }
}

/// The queue, removed on every path.
struct QueueGuard(conduit::kernel::MessageQueue);

impl Drop for QueueGuard {
    fn drop(&mut self) {
        let _ = self.0.remove();
    }
}

fn sysv_case(name: &str, typed: bool, plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let q = QueueGuard(conduit::kernel::MessageQueue::private(0o600).map_err(io::Error::other)?);
    run(
        name,
        &[q.0.id().to_string()],
        |_| Ok(Box::new(SysvQueue { q: q.0, send_type: 1, recv_type: 2, typed })),
        plan,
        tick,
    )
}

fn sysv_peer(p: &Peer, typed: bool) -> io::Result<()> {
    let id = p.arg(0)?.parse().map_err(io::Error::other)?;
    let q = conduit::kernel::MessageQueue::from_id(id).map_err(io::Error::other)?;
    driver::serve(&mut SysvQueue { q, send_type: 2, recv_type: 1, typed })
}

/// `floor/sysv-msg`: raw `msgsnd`/`msgrcv` on one System V queue.
pub fn sysv_msg(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    sysv_case("floor/sysv-msg", false, plan, tick)
}

/// The peer of `floor/sysv-msg`.
pub fn sysv_msg_peer(p: &Peer) -> io::Result<()> {
    sysv_peer(p, false)
}

/// `conduit/sysv`: typed messages (checksummed conduit frames) on a
/// System V queue through `kernel::MessageQueue`.
pub fn conduit_sysv(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    sysv_case("conduit/sysv", true, plan, tick)
}

/// The peer of `conduit/sysv`.
pub fn conduit_sysv_peer(p: &Peer) -> io::Result<()> {
    sysv_peer(p, true)
}

// ------------------------------------------------- posix mq (typed)

/// Two POSIX queues through `kernel::PosixQueue`, typed messages
/// (checksummed conduit frames).
pub struct TypedMq {
    tx: conduit::kernel::PosixQueue,
    rx: conduit::kernel::PosixQueue,
}

impl Link for TypedMq {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.tx.send_msg(0, &Slice(data)).map_err(io::Error::other)
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        *buf = self.rx.recv_msg::<conduit::Bytes>().map_err(io::Error::other)?.1.0;
        Ok(())
    }
    fn max_message(&self) -> usize {
        MQ_MSG - 32
    }
}

/// `conduit/posix-mq-typed`: typed messages on two POSIX queues.
pub fn posix_mq_typed(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    static ROUND: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let round = ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let down = MqName(format!("/{}-{round}-down", unique("mqt")));
    let up = MqName(format!("/{}-{round}-up", unique("mqt")));
    let open = |n: &str| conduit::kernel::PosixQueue::create(n, 10, MQ_MSG, 0o600).map_err(io::Error::other);
    let mut link = TypedMq { tx: open(&down.0)?, rx: open(&up.0)? };
    let peer = spawn_peer("conduit/posix-mq-typed", &[down.0.clone(), up.0.clone()])?;
    peer.wait_ready()?;
    drop((down, up));
    let m = driver::measure("conduit/posix-mq-typed", &mut link, plan, tick);
    peer.finish(m)
}

/// The peer of `conduit/posix-mq-typed`.
pub fn posix_mq_typed_peer(p: &Peer) -> io::Result<()> {
    let open = |n: &str| conduit::kernel::PosixQueue::open(n).map_err(io::Error::other);
    let mut link = TypedMq { rx: open(p.arg(0)?)?, tx: open(p.arg(1)?)? };
    p.ready()?;
    driver::serve(&mut link)
}
