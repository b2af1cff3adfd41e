//! The stream-socket transport: TCP (IPv4 and IPv6, `TCP_NODELAY`) and
//! Unix stream sockets, for channels between programs that find each
//! other by an address (see [`crate::net`]).
//!
//! * **Framing.** A stream carries bytes in any cut; frames are the wire
//!   header's (`docs/WIRE.md`), checksum always on, found and checked by
//!   the pure `wire::stream_frame_len` before anything of the payload is
//!   kept (see `framing`). A frame the kernel takes only in part is
//!   finished by this end (its rest is the link's *backlog*, written
//!   before any later frame, by the outbox's flusher if nobody sends).
//! * **Flow control in band.** Nothing is shared between the two
//!   machines, so each end counts for itself: the sender's control block
//!   (private) counts messages sent and not yet granted back; the
//!   receiver sends a **credit frame** (kind 5, a count) on the same
//!   connection for the messages it takes (a bounded channel), or for
//!   each receive it starts (a rendezvous token, at once). No more than
//!   `n` messages are ever unreceived. With `n` below
//!   [`DEFER_CREDITS_FROM`] (16) each credit goes back as its message is
//!   taken: the `n + 1`-th send waits exactly until one is received. With
//!   larger `n` (the throughput case) credits go back in batches — when
//!   `n / 2` are owed, when a receive finds no frame already read (the
//!   receiver has caught up), or at once when the sender is waiting: a
//!   sender out of credit says so with a credit frame of count 0 (an
//!   *ask*) in its data stream, noticed as soon as the receiver has read
//!   it, even behind other frames. A credit frame costs a loopback segment
//!   (about 6 µs here): batching keeps it off the path of a request and
//!   its reply and out of most of a stream's messages.
//! * **One connection, one direction.** The data of a link runs one way
//!   and its credits the other, so each socket is read by one side only:
//!   the sender's side reads credits, the receiver's side reads frames. A
//!   [`crate::net`] connection is two such links (two connections paired
//!   by a cookie at accept).
//! * **No descriptors.** Rights and out-of-line payloads cannot cross a
//!   machine boundary: sending one is [`Error::Unsupported`] at the send,
//!   nothing lost. `recv_from` names the peer process on a Unix stream
//!   (`SO_PEERCRED`, fixed at connect); a TCP peer is an address
//!   (`Receiver::peer`).
//! * **Peer death.** The kernel closes a dead peer's socket: the other
//!   side reads the end of the stream (or a reset) at once, which is
//!   `Disconnected` after the frames before it are read. A frame cut by
//!   the death is `WireError::Truncated`, never delivered.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::framing::{self, Stream};
use super::seqpacket::{is_disconnect, write_fail};
use super::{Caps, WriteFail};
use crate::channel::ctl::{Capacity, Ctl};
use crate::channel::error::SendFail;
use crate::error::Error;
use crate::sys::Deadline;
use crate::sys::net::{self as sys, PeerOf};
use crate::sys::pipe::read_some;
use crate::sys::socket::{self, Ready, Received};
use crate::wire::{self, CREDIT_LEN, Kind};

/// Bounded capacities from this size on return credits with the next
/// receive (see the module doc); below it, at once.
pub(crate) const DEFER_CREDITS_FROM: u64 = 16;

const CAPS: Caps = Caps { rights: false, credentials: false, inline_max: wire::MAX_PAYLOAD, frame_max: None };

/// A sender waiting for credits looks again at least this often (a
/// credit read by another task of this process wakes nobody else).
const CREDIT_NAP: Duration = Duration::from_millis(20);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Check a received stream socket.
pub(crate) fn check(fd: OwnedFd) -> Result<OwnedFd, &'static str> {
    if !sys::is_stream(fd.as_fd()) {
        return Err("not a stream socket");
    }
    sys::set_nonblocking(fd.as_fd()).map_err(|_| "socket cannot be made non-blocking")?;
    Ok(fd)
}

// ---------------------------------------------------------------- hello

/// Bytes of the greeting that opens each connection (see `docs/WIRE.md`).
pub const HELLO_LEN: usize = 40;
const HELLO_MAGIC: &[u8; 8] = b"CONDUIT\0";
const HELLO_VERSION: u8 = 1;

/// What a connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Client to server: the client's messages (the client is the sender).
    ClientSends = 0,
    /// Server to client: the server's messages; `capacity` is the client
    /// receiver's.
    ServerSends = 1,
    /// Server to client on the first connection: accepted; `capacity` is
    /// the server receiver's.
    Welcome = 2,
}

/// A parsed greeting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// What the connection is for.
    pub role: Role,
    /// The receiving side's capacity.
    pub capacity: Capacity,
    /// Pairs a client's two connections.
    pub cookie: [u8; 16],
}

fn capacity_word(c: Capacity) -> u64 {
    match c {
        Capacity::Zero => 0,
        Capacity::Bounded(n) => n,
        Capacity::Unbounded => u64::MAX,
    }
}

impl Hello {
    /// The greeting's bytes.
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[..8].copy_from_slice(HELLO_MAGIC);
        b[8] = HELLO_VERSION;
        b[9] = self.role as u8;
        b[16..24].copy_from_slice(&capacity_word(self.capacity).to_le_bytes());
        b[24..40].copy_from_slice(&self.cookie);
        b
    }
}

/// Check a greeting: pure, for any bytes.
pub fn parse_hello(b: &[u8]) -> Result<Hello, &'static str> {
    let b: &[u8; HELLO_LEN] = b.first_chunk().ok_or("greeting too short")?;
    if &b[..8] != HELLO_MAGIC {
        return Err("not a conduit stream (bad greeting)");
    }
    if b[8] != HELLO_VERSION {
        return Err("unknown greeting version");
    }
    let role = match b[9] {
        0 => Role::ClientSends,
        1 => Role::ServerSends,
        2 => Role::Welcome,
        _ => return Err("unknown connection role"),
    };
    if b[10..16].iter().any(|&x| x != 0) {
        return Err("reserved greeting bytes are not zero");
    }
    let capacity = match u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")) {
        0 => Capacity::Zero,
        u64::MAX => Capacity::Unbounded,
        n => Capacity::Bounded(n),
    };
    let cookie = b[24..40].try_into().expect("16 bytes");
    Ok(Hello { role, capacity, cookie })
}

// ---------------------------------------------------------------- sender

/// The senders' end: writes frames, reads credits.
#[derive(Debug)]
pub(crate) struct StreamTx {
    sock: OwnedFd,
    /// The unsent rest of a frame the kernel took in part.
    tail: Mutex<Vec<u8>>,
    credit: Mutex<CreditIn>,
    credited: Condvar,
    /// The socket was duplicated for another process (a right).
    handed: AtomicBool,
    /// When the peer was last asked about (`since_start`, ns).
    checked: AtomicU64,
}

/// A burst of sends asks the kernel whether the receiver closed at most
/// this often.
const PEER_CHECK: Duration = Duration::from_micros(100);

/// Nanoseconds since the first call (a clock for `PEER_CHECK`).
fn since_start() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Credits read so far: part of a frame, and who is reading.
#[derive(Debug, Default)]
struct CreditIn {
    buf: Vec<u8>,
    /// A thread of this process sleeps in `poll` for credits.
    reading: bool,
    /// The receiver's end is closed (or spoke nonsense).
    gone: bool,
}

impl StreamTx {
    pub fn new(sock: OwnedFd) -> StreamTx {
        crate::sys::pipe::ignore_sigpipe();
        StreamTx {
            sock,
            tail: Mutex::default(),
            credit: Mutex::default(),
            credited: Condvar::new(),
            handed: AtomicBool::new(false),
            checked: AtomicU64::new(0),
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    pub fn caps(&self) -> Caps {
        CAPS
    }

    pub fn dup_fds(&self) -> io::Result<Vec<OwnedFd>> {
        self.handed.store(true, SeqCst);
        Ok(vec![socket::dup(&self.sock)?])
    }

    /// Nothing is held in this process: the end may move elsewhere.
    pub fn can_move(&self) -> bool {
        lock(&self.tail).is_empty() && lock(&self.credit).buf.is_empty()
    }

    pub fn peer_gone(&self) -> bool {
        lock(&self.credit).gone || sys::closed_by_peer(self.fd())
    }

    /// True if the peer is due to be asked about (see `PEER_CHECK`).
    fn peer_check_due(&self) -> bool {
        let now = since_start();
        let last = self.checked.load(SeqCst);
        if last != 0 && now.saturating_sub(last) < PEER_CHECK.as_nanos() as u64 {
            return false;
        }
        self.checked.store(now.max(1), SeqCst);
        true
    }

    /// Part of a frame waits to be written.
    pub fn backlog(&self) -> bool {
        !lock(&self.tail).is_empty()
    }

    fn flush_tail(&self, tail: &mut Vec<u8>) -> Result<(), WriteFail> {
        while !tail.is_empty() {
            let n = sys::send_some(self.fd(), tail).map_err(write_fail)?;
            tail.drain(..n);
        }
        Ok(())
    }

    /// Write the backlog: `Ok` once it is all out, `NoRoom` if not yet.
    pub fn flush_backlog(&self) -> Result<(), WriteFail> {
        self.flush_tail(&mut lock(&self.tail))
    }

    #[inline]
    pub fn try_send(&self, frame: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), WriteFail> {
        if !fds.is_empty() {
            return Err(WriteFail::Failed(Error::Unsupported(
                "descriptors (rights, out-of-line payloads) cannot travel over a TCP or Unix stream link",
            )));
        }
        // TCP takes bytes for a peer that has closed (it answers them with
        // a reset): ask first, so that a send to a dead receiver fails
        // with its message instead of losing it. Asked at most once per
        // `PEER_CHECK` in a burst of sends: a receiver that dies within it
        // loses what was sent meanwhile, as it loses what it had not read.
        if self.peer_check_due() && sys::closed_by_peer(self.fd()) {
            return Err(WriteFail::Disconnected);
        }
        let mut tail = lock(&self.tail);
        self.flush_tail(&mut tail)?;
        let n = sys::send_some(self.fd(), frame).map_err(write_fail)?;
        if n < frame.len() {
            // The frame is ours to finish: nothing may come between its
            // pieces.
            tail.extend_from_slice(&frame[n..]);
        }
        Ok(())
    }

    /// Tell the receiver this side waits for credits (an ask: a credit
    /// frame of count 0 in the data stream), once per wait. Skipped when
    /// part of a frame is still on its way: the receiver then has data to
    /// read, and returns its credits as it receives.
    pub fn ask(&self) {
        let mut tail = lock(&self.tail);
        if !tail.is_empty() && self.flush_tail(&mut tail).is_err() {
            return;
        }
        let frame = wire::credit_frame(0);
        if let Ok(n) = sys::send_some(self.fd(), &frame)
            && n < frame.len()
        {
            tail.extend_from_slice(&frame[n..]);
        }
    }

    pub fn wait_writable(&self) -> io::Result<()> {
        socket::wait_writable(self.fd())
    }

    pub fn wait_bell(&self, wait: Deadline) -> io::Result<Ready> {
        let r = socket::poll(&[self.fd()], wait)?[0];
        // A closed peer is an end of stream to read: `take_wake` finds it.
        Ok(Ready { readable: r.readable || r.hangup, hangup: false })
    }

    /// Read the credits that are there and add them to `ctl`. `Ok(false)`:
    /// the receiver is gone.
    pub fn take_credits(&self, ctl: &Ctl) -> io::Result<bool> {
        let mut c = lock(&self.credit);
        let alive = self.read_credits(&mut c, ctl);
        self.credited.notify_all();
        alive
    }

    fn read_credits(&self, c: &mut CreditIn, ctl: &Ctl) -> io::Result<bool> {
        if c.gone {
            return Ok(false);
        }
        let mut chunk = [0u8; 64 * CREDIT_LEN];
        loop {
            match read_some(self.fd(), &mut chunk) {
                Ok(0) => {
                    c.gone = true;
                    return Ok(false);
                }
                Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if is_disconnect(&e) => {
                    c.gone = true;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
            let whole = c.buf.len() / CREDIT_LEN * CREDIT_LEN;
            let mut granted = 0u64;
            for frame in c.buf[..whole].chunks_exact(CREDIT_LEN) {
                match wire::parse_credit(frame) {
                    Ok(k) => granted += u64::from(k),
                    Err(_) => {
                        // A receiver that breaks the protocol is as good
                        // as gone.
                        c.gone = true;
                        sys::shutdown(&self.sock);
                        return Ok(false);
                    }
                }
            }
            c.buf.drain(..whole);
            ctl.grant(granted);
        }
    }

    /// Wait for the right to write one message: one thread of this process
    /// reads the credits, the others wait for it.
    pub fn acquire(&self, ctl: &Ctl, wait: Deadline) -> Result<(), SendFail> {
        let no = |gone: bool| if gone { SendFail::Disconnected } else { SendFail::Full };
        loop {
            if ctl.try_acquire() {
                return Ok(());
            }
            let mut c = lock(&self.credit);
            if !self.read_credits(&mut c, ctl).map_err(|e| SendFail::Failed(e.into()))? {
                return Err(SendFail::Disconnected);
            }
            if ctl.try_acquire() {
                return Ok(());
            }
            if wait == Deadline::Never || wait.expired() {
                return Err(no(c.gone || sys::closed_by_peer(self.fd())));
            }
            let nap = Deadline::Until(Instant::now() + CREDIT_NAP);
            let slice = match wait {
                Deadline::Until(t) if t < Instant::now() + CREDIT_NAP => wait,
                _ => nap,
            };
            if c.reading {
                let left = slice.remaining().unwrap_or(CREDIT_NAP);
                drop(self.credited.wait_timeout(c, left).unwrap_or_else(|p| p.into_inner()));
                continue;
            }
            c.reading = true;
            drop(c);
            self.ask();
            let polled = socket::poll(&[self.fd()], slice);
            let mut c = lock(&self.credit);
            c.reading = false;
            let alive = self.read_credits(&mut c, ctl);
            self.credited.notify_all();
            drop(c);
            polled.map_err(|e| SendFail::Failed(e.into()))?;
            if !alive.map_err(|e| SendFail::Failed(e.into()))? {
                // Credits granted before the end still count.
                if ctl.try_acquire() {
                    return Ok(());
                }
                return Err(SendFail::Disconnected);
            }
        }
    }
}

impl Drop for StreamTx {
    /// Read the credits that came and were not needed: a TCP socket closed
    /// with unread bytes is reset, and a reset throws away what the kernel
    /// has not yet sent (on a network, messages whose send returned). Not
    /// when the socket went to another process, which reads them itself.
    fn drop(&mut self) {
        if self.handed.load(SeqCst) {
            return;
        }
        let mut sink = [0u8; 64 * CREDIT_LEN];
        for _ in 0..64 {
            match read_some(self.fd(), &mut sink) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }
}

// ---------------------------------------------------------------- receiver

/// The receiver's end: reads frames, writes credits.
#[derive(Debug)]
pub(crate) struct StreamRx {
    sock: OwnedFd,
    peer: Option<PeerOf>,
    stream: Mutex<Stream>,
    /// Credits granted and not yet written.
    owed: AtomicU32,
    /// The sender asked for credits: grant at once.
    hungry: AtomicBool,
}

impl StreamRx {
    pub fn new(sock: OwnedFd) -> StreamRx {
        let peer = sys::peer(sock.as_fd()).ok();
        StreamRx { sock, peer, stream: Mutex::default(), owed: AtomicU32::new(0), hungry: AtomicBool::new(false) }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    pub fn peer(&self) -> Option<PeerOf> {
        self.peer
    }

    pub fn caps(&self) -> Caps {
        Caps { credentials: matches!(self.peer, Some(PeerOf::Process(_))), ..CAPS }
    }

    pub fn dup_fds(&self) -> io::Result<Vec<OwnedFd>> {
        Ok(vec![socket::dup(&self.sock)?])
    }

    pub fn can_move(&self) -> bool {
        lock(&self.stream).is_idle() && self.owed.load(SeqCst) == 0
    }

    pub fn has_buffered(&self) -> bool {
        lock(&self.stream).has_frame()
    }

    pub fn peer_gone(&self) -> bool {
        lock(&self.stream).gone()
    }

    pub fn recv(&self, out: &mut Vec<u8>, block: bool, limit: usize) -> Result<Option<Received>, Error> {
        let mut stream = lock(&self.stream);
        // The credits of the messages taken before go back now unless a
        // whole frame is already here (the sender is ahead of us: they go
        // back together, in a batch, when we catch up).
        if !stream.has_frame() {
            self.flush_owed();
        }
        loop {
            let got = framing::recv(self.fd(), &mut stream, out, block, limit, false)?;
            if stream.saw_ahead(Kind::Credit) {
                self.asked();
            }
            match got {
                // An ask at the head of the stream: already counted.
                Some(r) if r.len > 3 && out[3] == Kind::Credit as u8 => {
                    self.asked();
                    continue;
                }
                Some(mut r) => {
                    if let Some(PeerOf::Process(c)) = self.peer
                        && r.len > 0
                    {
                        r.creds = Some(c);
                    }
                    return Ok(Some(r));
                }
                None => return Ok(None),
            }
        }
    }

    /// The sender waits for credits: send what is owed, and the next
    /// grant at once too.
    fn asked(&self) {
        self.hungry.store(true, SeqCst);
        if self.owed.load(SeqCst) > 0 {
            self.hungry.store(false, SeqCst);
            self.flush_owed();
        }
    }

    pub fn ready_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }

    /// Grant the sender `n` more messages: at once if `batch` is 1 (a
    /// rendezvous token, a small channel) or the sender asked; else when
    /// `batch` are owed, or with the next receive that finds no frame
    /// already read.
    pub fn grant(&self, n: u32, batch: u32) {
        let owed = self.owed.fetch_add(n, SeqCst) + n;
        if owed >= batch || self.hungry.swap(false, SeqCst) {
            self.flush_owed();
        }
    }

    fn flush_owed(&self) {
        let owed = self.owed.swap(0, SeqCst);
        if owed == 0 {
            return;
        }
        let frame = wire::credit_frame(owed);
        let mut sent = sys::send_some(self.fd(), &frame).unwrap_or_default();
        if sent == 0 {
            // The socket is full (the sender reads credits whenever it
            // waits for them): the next receive tries again, coalesced.
            self.owed.fetch_add(owed, SeqCst);
            return;
        }
        // Part went: the rest cannot be taken back, and nothing may come
        // between. The sender drains its credits while it waits.
        while sent < frame.len() {
            if socket::wait_writable(self.fd()).is_err() {
                return;
            }
            match sys::send_some(self.fd(), &frame[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return,
            }
        }
    }
}
