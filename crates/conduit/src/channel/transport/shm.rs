//! The shared-memory flavor of the channel API (B1, M3.2–M3.4).
//!
//! Same [`Sender`]/[`Receiver`], same capacity, timeout, disconnection and
//! rights semantics; messages travel through a [`Ring`] in a sealed memfd
//! instead of the socket. The channel's socket pair stays, for three jobs:
//! carrying descriptors (rights and out-of-line segments inside messages,
//! sent just before their ring record is committed), telling each side
//! that the other is gone (the process's monitor thread watches it, so a
//! futex sleeper learns of a `kill -9` at once), and passing the channel
//! on as a right. A channel made here gets its socket pair only when one
//! of those jobs (or `poll`: a port set, an async receive, [`AsFd`]) first
//! needs it; until then its two ends, both in this process, are linked by
//! the ring alone and cost one descriptor together, the ring's memfd.
//!
//! [`AsFd`]: std::os::fd::AsFd
//!
//! ```
//! use conduit::channel::shm;
//! let (tx, rx) = shm::bounded::<String>(16)?;
//! tx.send("through shared memory".into()).unwrap();
//! assert_eq!(rx.recv().unwrap(), "through shared memory");
//! # Ok::<(), conduit::Error>(())
//! ```
//!
//! Per-message sender credentials do not exist here (the kernel sees no
//! message), so [`Receiver::recv_from`] fails on these channels with
//! [`Error::NoCredentials`].

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::seqpacket::Seqpacket;
use super::{Caps, RxLink, TxLink, WriteFail};
use crate::channel::codec;
use crate::channel::ctl::{Capacity, Ctl};
use crate::channel::error::{RecvFail, SendFail};
use crate::channel::outbox::{Frame, Plain};
use crate::channel::{Receiver, Sender};
use crate::error::{Error, WireError};
use crate::memory::WaitStrategy;
use crate::memory::ring::{Ring, TooLarge};
use crate::sys::Deadline;
use crate::sys::monitor::{self, PeerGone, Watch};
use crate::sys::socket::{self, Received};
use crate::wire::{self, Kind};

/// Default size of an unbounded channel's ring, and the most a bounded
/// channel's ring gets by default.
pub const DEFAULT_RING_BYTES: usize = 256 * 1024;

/// The ring a channel gets when [`Builder::ring_bytes`] is not set: 256
/// KiB, but for a bounded channel of a type that owns no heap memory (no
/// drop glue: numbers, arrays, plain structs, whose encoding is at most
/// about their size) room for its `n` messages — twice the type's size
/// and 64 bytes of record and frame headers each, rounded up to a power
/// of two, from 4 KiB to 256 KiB. So a `bounded(16)` of `u64` has a 4 KiB
/// ring; a channel of `Vec`s, `String`s or `Bytes` (sizes unknown until
/// sent) keeps 256 KiB.
pub(crate) fn default_ring_bytes<T>(capacity: Capacity) -> usize {
    match capacity {
        Capacity::Bounded(n) if !std::mem::needs_drop::<T>() => {
            let each = 64 + 2 * std::mem::size_of::<T>();
            (n as usize)
                .saturating_mul(each)
                .clamp(crate::memory::ring::MIN_CAPACITY, DEFAULT_RING_BYTES)
                .next_power_of_two()
        }
        _ => DEFAULT_RING_BYTES,
    }
}

/// One process's view of a shared-memory channel end.
pub(crate) struct RingEnd {
    pub ring: Ring,
    pub strategy: WaitStrategy,
    /// Frames carry a checksum and are copied out before they are read
    /// (read from the ring once, when this end was made).
    pub checked: bool,
    /// The other side is gone (set by the monitor thread, or by the other
    /// side's drop while both are in this process without sockets).
    pub gone: AtomicBool,
    /// Unbounded channels: this process's threads take turns with the
    /// outbox (bounded ones take turns by the producers' lock alone).
    pub local: Mutex<()>,
    /// This side's socket: set when the end came from elsewhere, or when a
    /// channel made here first needs its socket pair (see [`Pair`]).
    sock: OnceLock<Seqpacket>,
    watch: Mutex<Option<Watch>>,
}

impl std::fmt::Debug for RingEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingEnd").field("capacity", &self.ring.capacity()).finish_non_exhaustive()
    }
}

impl PeerGone for RingEnd {
    fn peer_gone(&self) {
        self.gone.store(true, SeqCst);
        self.ring.wake_all();
    }
}

impl RingEnd {
    fn new(ring: Ring) -> Arc<RingEnd> {
        let strategy = ring.strategy();
        let checked = ring.checked();
        Arc::new(RingEnd {
            ring,
            strategy,
            checked,
            gone: AtomicBool::new(false),
            local: Mutex::new(()),
            sock: OnceLock::new(),
            watch: Mutex::new(None),
        })
    }

    /// Give this side its socket and start watching it for the peer's
    /// death (the monitor thread).
    fn attach(self: &Arc<Self>, sock: Seqpacket) -> io::Result<()> {
        let sock = self.sock.get_or_init(|| sock);
        let weak: Weak<dyn PeerGone> = Arc::downgrade(self) as Weak<dyn PeerGone>;
        let w = monitor::watch(sock.fd(), weak)?;
        *self.watch.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
        Ok(())
    }

    /// Stop watching; call before the socket closes.
    fn unwatch(&self) {
        if let (Some(w), Some(sock)) = (self.watch.lock().unwrap_or_else(|p| p.into_inner()).take(), self.sock.get()) {
            w.end(sock.fd());
        }
    }

    pub fn is_gone(&self) -> bool {
        self.gone.load(SeqCst)
    }
}

// ---- both sides made here ----

/// The two sides of a channel made in this process, until its socket pair
/// is made. While both ends stay here the ring alone links them: sleepers
/// wait on its futex words, and a side that is dropped tells the other
/// directly. The pair of sockets — for descriptors in messages, for `poll`
/// (port sets, async tasks, [`AsFd`]) and for an end that leaves the
/// process — is made the first time one of those is asked for, so a
/// channel that never needs it costs one descriptor (its memfd), not three.
#[derive(Debug)]
struct Pair {
    state: Mutex<PairState>,
}

#[derive(Debug)]
struct PairState {
    made: bool,
    /// 0: the senders' side, 1: the receiver's.
    ends: [Weak<RingEnd>; 2],
    dropped: [bool; 2],
}

impl Pair {
    fn lock(&self) -> std::sync::MutexGuard<'_, PairState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make the socket pair (once) and give each living side its end.
    fn make(&self) -> io::Result<()> {
        let mut st = self.lock();
        if st.made {
            return Ok(());
        }
        let (a, b) = socket::seqpacket_pair()?;
        st.made = true;
        let mut failed = Ok(());
        for (i, fd) in [a, b].into_iter().enumerate() {
            // A side already dropped gets none: its socket closes here, so
            // the other side's end shows the hang-up, as it would have.
            if st.dropped[i] {
                continue;
            }
            if let Some(end) = st.ends[i].upgrade()
                && let Err(e) = end.attach(Seqpacket::new(fd))
            {
                failed = Err(e);
            }
        }
        failed
    }
}

// ---- either end ----

/// One side of a shared-memory channel in this process: the ring, and the
/// socket for its three jobs (carrier, death notice, doorbell), watched by
/// the monitor thread while this lives — made only when first needed if
/// both sides were made here ([`Pair`]).
#[derive(Debug)]
pub(crate) struct Side {
    pub end: Arc<RingEnd>,
    /// Made here with the other side: the pair and which side this is.
    pair: Option<(Arc<Pair>, usize)>,
}

impl Drop for Side {
    fn drop(&mut self) {
        if let Some((pair, i)) = &self.pair {
            let mut st = pair.lock();
            st.dropped[*i] = true;
            if !st.made
                && let Some(other) = st.ends[1 - *i].upgrade()
            {
                other.peer_gone();
            }
        }
        self.end.unwatch();
    }
}

impl Side {
    /// A side put together from a received socket and ring.
    fn adopted(sock: Seqpacket, ring: Ring) -> io::Result<Side> {
        let end = RingEnd::new(ring);
        end.attach(sock)?;
        Ok(Side { end, pair: None })
    }

    /// Both sides of a channel made here, without sockets yet.
    fn both(tx_ring: Ring, rx_ring: Ring) -> (Side, Side) {
        let (tx, rx) = (RingEnd::new(tx_ring), RingEnd::new(rx_ring));
        let pair = Arc::new(Pair {
            state: Mutex::new(PairState {
                made: false,
                ends: [Arc::downgrade(&tx), Arc::downgrade(&rx)],
                dropped: [false; 2],
            }),
        });
        (Side { end: tx, pair: Some((Arc::clone(&pair), 0)) }, Side { end: rx, pair: Some((pair, 1)) })
    }

    /// This side's socket, making the pair if it is not made yet.
    pub fn sock(&self) -> io::Result<&Seqpacket> {
        if let Some(s) = self.end.sock.get() {
            return Ok(s);
        }
        if let Some((pair, _)) = &self.pair {
            pair.make()?;
        }
        self.end.sock.get().ok_or_else(|| io::Error::other("this shared-memory channel end has no socket"))
    }

    /// This side's socket if it is made (nothing is made here).
    pub fn sock_if_made(&self) -> Option<&Seqpacket> {
        self.end.sock.get()
    }

    /// The descriptor for `poll`: the socket, made if need be. If it cannot
    /// be made (no descriptor left) the ring's memfd stands in, which
    /// `poll` always shows ready: callers then find nothing to take and
    /// look again, busier but never stuck.
    pub fn poll_fd(&self) -> BorrowedFd<'_> {
        match self.sock() {
            Ok(s) => s.fd(),
            Err(_) => self.end.ring.segment().fd(),
        }
    }

    /// What a shared-memory end carries (its ring bounds the inline size).
    pub fn caps(&self) -> Caps {
        Caps {
            rights: true,
            credentials: false,
            inline_max: self.end.ring.max_message() - wire::HEADER_LEN - wire::MAX_RIGHTS,
            frame_max: None,
        }
    }

    pub fn peer_gone(&self) -> bool {
        self.end.is_gone() || self.sock_if_made().is_some_and(|s| s.peer_gone())
    }
}

// ---- the senders' end ----

/// The senders' end of a shared-memory channel.
#[derive(Debug)]
pub(crate) struct ShmTx(Side);

impl std::ops::Deref for ShmTx {
    type Target = Side;
    fn deref(&self) -> &Side {
        &self.0
    }
}

impl ShmTx {
    pub fn new(sock: Seqpacket, ring: Ring) -> io::Result<ShmTx> {
        Side::adopted(sock, ring).map(ShmTx)
    }

    /// The right to write one message: bounded channels count credits in
    /// the ring (in `try_write`); a rendezvous waits, by the ring's
    /// strategy, for a receiver's token, woken by the monitor thread if the
    /// receiver dies.
    pub fn acquire(&self, ctl: &Ctl, wait: Deadline) -> Result<(), SendFail> {
        let end = &self.end;
        if let Capacity::Bounded(_) = ctl.capacity() {
            return Ok(());
        }
        if end.ring.credit_bell().wait(end.strategy, wait, &end.gone, || ctl.try_acquire()) {
            return Ok(());
        }
        Err(if self.peer_gone() { SendFail::Disconnected } else { SendFail::Full })
    }

    /// Write one frame now if the ring has room (and, bounded, a credit).
    pub fn try_write<T: Serialize + ?Sized>(&self, ctl: &Ctl, frame: &Frame<'_, T>) -> Result<(), WriteFail> {
        let end = &self.end;
        if end.is_gone() {
            return Err(WriteFail::Disconnected);
        }
        let _lock = end.ring.lock_producers(&end.gone);
        // Bounded shared-memory channels count credits in the ring, under
        // the producers' lock (see `Ring::below`).
        if let Capacity::Bounded(n) = ctl.capacity()
            && !end.ring.below(n)
        {
            return Err(WriteFail::NoCredit);
        }
        let mut r = match end.ring.try_reserve(frame.len()) {
            Ok(Some(r)) => r,
            Ok(None) => return Err(WriteFail::NoRoom),
            Err(TooLarge) => {
                return Err(WriteFail::Failed(Error::TooLarge { size: frame.len(), limit: end.ring.max_message() }));
            }
        };
        let fds: Vec<BorrowedFd<'_>> = frame.fds().iter().map(|f| f.as_fd()).collect();
        if !fds.is_empty() {
            // The carrier: descriptors go first, by the socket, in ring
            // order (we hold the producers' lock); the receiver picks them
            // up when it reaches this record.
            let carrier = wire::simple_frame(Kind::Carrier, &[]);
            let sock = self.sock().map_err(|e| WriteFail::Failed(e.into()))?;
            loop {
                match sock.try_send(&carrier, &fds) {
                    Ok(()) => break,
                    Err(WriteFail::NoRoom) => sock.wait_writable().map_err(|e| WriteFail::Failed(e.into()))?,
                    Err(e) => return Err(e),
                }
            }
        }
        frame.fill(end.ring.reserved_mut(&mut r), end.checked).map_err(WriteFail::Failed)?;
        end.ring.commit(r);
        self.ring_doorbell();
        Ok(())
    }

    /// The fast path of a bounded send: a message without rights that
    /// fits the ring is written straight into it under the producers'
    /// lock, waiting (by the ring's strategy) for a credit or room. `None`
    /// hands the send to the full path, which owns every other case and
    /// every error report (nothing was published then).
    #[inline]
    pub fn send_plain(&self, ctl: &Ctl, msg: &impl Plain, wait: Deadline) -> Option<()> {
        let end = &self.end;
        if end.checked {
            return None;
        }
        let Capacity::Bounded(limit) = ctl.capacity() else { return None };
        let size = msg.size()?;
        let len = wire::HEADER_LEN + size;
        if len > end.ring.max_message() {
            return None;
        }
        loop {
            if end.is_gone() {
                return None;
            }
            let lock = end.ring.lock_producers(&end.gone);
            let credit = end.ring.below(limit);
            if credit && let Ok(Some(mut r)) = end.ring.try_reserve(len) {
                let (head, body) = end.ring.reserved_mut(&mut r).split_at_mut(wire::HEADER_LEN);
                // A failed write is not committed, so never seen; the full
                // path reports it.
                if !msg.write(body) {
                    return None;
                }
                wire::write_plain_header(head, size);
                end.ring.commit(r);
                drop(lock);
                self.ring_doorbell();
                return Some(());
            }
            drop(lock);
            let ready = if credit {
                end.ring
                    .space_bell()
                    .wait(end.strategy, wait, &end.gone, || matches!(end.ring.try_reserve(len), Ok(Some(_))))
            } else {
                end.ring.credit_bell().wait(end.strategy, wait, &end.gone, || end.ring.below(limit))
            };
            if !ready {
                return None;
            }
        }
    }

    /// After a commit: the doorbell — a wake frame on the socket, if a
    /// consumer sleeps in `poll` (a port set, an async task) and asked for
    /// it. A full socket already holds a wake, so a failed write is fine.
    #[inline(always)]
    pub(crate) fn ring_doorbell(&self) {
        if self.end.ring.doorbell_wanted()
            && let Some(sock) = self.sock_if_made()
        {
            let _ = socket::send_frame(sock.fd(), wire::wake_frame(), &[]);
        }
    }

    /// Block until the ring may have room for `len` bytes (or the
    /// receiver is gone): for the outbox's flusher.
    pub fn wait_room(&self, len: usize) {
        let end = &self.end;
        let room = || matches!(end.ring.try_reserve(len), Ok(Some(_)) | Err(_));
        end.ring.space_bell().wait(WaitStrategy::Park, Deadline::Forever, &end.gone, room);
    }

    /// A bounded or rendezvous send whose credit is taken: wait for room
    /// (and, bounded, a credit in the ring) until `wait` runs out; then a
    /// rendezvous token goes back. Threads of this process take turns by
    /// the producers' lock (its owner is a thread), like other processes'
    /// senders.
    pub fn write_waiting<T: Serialize + ?Sized>(
        &self,
        ctl: &Ctl,
        frame: &Frame<'_, T>,
        wait: Deadline,
    ) -> Result<(), SendFail> {
        let end = &self.end;
        let capacity = ctl.capacity();
        loop {
            let len = frame.len();
            let waited = match self.try_write(ctl, frame) {
                Ok(()) => return Ok(()),
                Err(WriteFail::NoCredit) => {
                    let Capacity::Bounded(n) = capacity else { unreachable!("credits are for bounded channels") };
                    end.ring.credit_bell().wait(end.strategy, wait, &end.gone, || end.ring.below(n))
                }
                Err(WriteFail::NoRoom) => {
                    let room = || matches!(end.ring.try_reserve(len), Ok(Some(_)));
                    end.ring.space_bell().wait(end.strategy, wait, &end.gone, room)
                }
                Err(WriteFail::Disconnected) => return Err(SendFail::Disconnected),
                Err(WriteFail::Failed(e)) => return Err(SendFail::Failed(e)),
            };
            if !waited {
                if capacity == Capacity::Zero {
                    // The rendezvous token we took goes back.
                    ctl.give_back();
                    end.ring.credit_bell().ring();
                }
                return Err(if end.is_gone() { SendFail::Disconnected } else { SendFail::Full });
            }
        }
    }
}

// ---- the receiver's end ----

/// The receiver's end of a shared-memory channel.
#[derive(Debug)]
pub(crate) struct ShmRx(Side);

impl std::ops::Deref for ShmRx {
    type Target = Side;
    fn deref(&self) -> &Side {
        &self.0
    }
}

/// What came of waiting for data.
pub(crate) enum Waited {
    /// Something may be there: read again.
    Data,
    /// The senders are gone: read what is left, then `Disconnected`.
    Gone,
    /// The time ran out.
    TimedOut,
}

impl ShmRx {
    pub fn new(sock: Seqpacket, ring: Ring) -> io::Result<ShmRx> {
        Side::adopted(sock, ring).map(ShmRx)
    }

    /// Something to take without waiting (or the senders are gone).
    pub fn ready_now(&self) -> bool {
        self.end.is_gone() || self.end.ring.has_data()
    }

    /// Ask producers to ring the doorbell (a wake frame on the socket)
    /// while this process sleeps in `poll`; disarming drops the wakes.
    /// Arming makes the socket pair if it is not made yet (a producer rings
    /// only a socket it has).
    pub fn arm(&self, on: bool) {
        if on {
            let _ = self.sock();
            self.end.ring.doorbell_on();
        } else {
            self.end.ring.doorbell_off();
            if let Some(sock) = self.sock_if_made() {
                socket::drain_wakes(sock.fd());
            }
        }
    }

    /// Sleep, by the ring's strategy, until data comes, the senders go, or
    /// `wait` runs out.
    pub fn wait_data(&self, wait: Deadline) -> Waited {
        let end = &self.end;
        if end.is_gone() {
            return Waited::Gone;
        }
        if end.ring.data_bell().wait(end.strategy, wait, &end.gone, || end.ring.has_data()) {
            return Waited::Data;
        }
        if end.is_gone() {
            return Waited::Gone;
        }
        // The monitor thread may not have seen a hang-up yet.
        if self.sock_if_made().is_some_and(|s| s.peer_gone()) {
            end.gone.store(true, SeqCst);
            return Waited::Gone;
        }
        Waited::TimedOut
    }

    /// Take the oldest record of the ring, if any. `limit`: the receiver's
    /// largest payload; `bulk_owner`: its cache of bulk-buffer mappings;
    /// `on_data`: a data frame left the queue.
    pub fn read<T: DeserializeOwned>(
        &self,
        limit: usize,
        bulk_owner: u64,
        on_data: impl FnOnce(),
    ) -> Result<Option<T>, RecvFail> {
        let end = &self.end;
        let mut on_data = Some(on_data);
        if let Some(got) = self.take_plain(&mut || {
            if let Some(f) = on_data.take() {
                f()
            }
        }) {
            return got.map(Some).map_err(RecvFail::Failed);
        }
        let record = match end.ring.peek() {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(corrupt) => return Err(RecvFail::Failed(WireError::BadRing(corrupt.0).into())),
        };
        // A checked channel reads a copy: what the peer writes into the
        // ring after this cannot change what is checked and decoded.
        let copy;
        let frame = if end.checked {
            copy = end.ring.payload(&record).to_vec();
            &copy[..]
        } else {
            end.ring.payload(&record)
        };
        let needs_fds = wire::parse(frame).is_ok_and(|(h, _)| h.rights > 0 || h.out_of_line());
        let fds = if needs_fds { self.recv_carrier() } else { Ok(Vec::new()) };
        let got = fds.and_then(|fds| {
            let rec = Received { len: frame.len(), fds, ..Received::default() };
            // (An unchecked frame is accepted only from an unchecked ring.)
            codec::decode(frame, rec, !end.checked, limit, bulk_owner, || {
                if let Some(f) = on_data.take() {
                    f()
                }
            })
            .map_err(RecvFail::Failed)
        });
        end.ring.release(record);
        got.map(Some)
    }

    /// The carrier: the descriptors of the record being read, which its
    /// producer sent by the socket before committing it.
    fn recv_carrier(&self) -> Result<Vec<OwnedFd>, RecvFail> {
        let mut buf = [0u8; 64];
        // Without a socket nobody can have sent descriptors.
        let no_fds = || RecvFail::Failed(WireError::Descriptors { declared: 1, actual: 0 }.into());
        let sock = self.sock_if_made().ok_or_else(no_fds)?;
        loop {
            let rec = match socket::recv_frame(sock.fd(), &mut buf, true) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => continue,
                Err(e) => return Err(RecvFail::Failed(Error::Io(e))),
            };
            if rec.len == 0 && rec.fds.is_empty() {
                return Err(no_fds());
            }
            match wire::parse(&buf[..rec.len.min(buf.len())]) {
                Ok((h, _)) if h.kind == Kind::Carrier => return Ok(rec.fds),
                Ok((h, _)) if h.kind == Kind::Wake => continue,
                Ok((h, _)) => return Err(RecvFail::Failed(WireError::Kind(h.kind as u8).into())),
                Err(e) => return Err(RecvFail::Failed(e.into())),
            }
        }
    }

    /// The oldest message if it is a plain frame (no rights, inline),
    /// decoded where it lies. `None` leaves it for the rest of `read`,
    /// which owns every other case (and reports a corrupt ring).
    #[inline]
    fn take_plain<T: DeserializeOwned>(&self, on_data: &mut dyn FnMut()) -> Option<Result<T, Error>> {
        let end = &self.end;
        if end.checked {
            return None;
        }
        let record = end.ring.peek().ok()??;
        let payload = wire::plain_ring_payload(end.ring.payload(&record))?;
        on_data();
        let got = postcard::from_bytes(payload).map_err(Error::Decode);
        end.ring.release(record);
        Some(got)
    }

    /// The fast path of a receive on a bounded or unbounded channel (a
    /// rendezvous has tokens to keep): a plain message, now or after
    /// waiting for data. `None`: use the full path, which then reports
    /// timeouts, disconnection and bad frames.
    #[inline]
    pub fn recv_plain<T: DeserializeOwned>(
        &self,
        capacity: Capacity,
        wait: Deadline,
        on_data: &mut dyn FnMut(),
    ) -> Option<Result<T, Error>> {
        let end = &self.end;
        if end.checked || capacity == Capacity::Zero {
            return None;
        }
        if let Some(got) = self.take_plain(on_data) {
            return Some(got);
        }
        if wait == Deadline::Never || end.is_gone() {
            return None;
        }
        if end.ring.data_bell().wait(end.strategy, wait, &end.gone, || end.ring.has_data()) {
            return self.take_plain(on_data);
        }
        None
    }

    /// Tell senders sleeping for a credit or a token to look again.
    pub fn ring_senders(&self) {
        self.end.ring.credit_bell().ring();
    }
}

/// Builds a shared-memory channel.
#[derive(Clone, Copy, Debug)]
pub struct Builder {
    capacity: Capacity,
    ring_bytes: Option<usize>,
    wait: WaitStrategy,
    checked: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder { capacity: Capacity::Unbounded, ring_bytes: None, wait: WaitStrategy::default(), checked: false }
    }
}

impl Builder {
    /// An unbounded channel with a 256 KiB ring and adaptive waiting.
    pub fn new() -> Self {
        Builder::default()
    }

    /// At most `n` unreceived messages; 0 makes a rendezvous.
    pub fn bounded(mut self, n: usize) -> Self {
        self.capacity = crate::channel::bounded_capacity(n);
        self
    }

    /// No limit on unreceived messages (those the ring cannot hold wait in
    /// the sending process's outbox).
    pub fn unbounded(mut self) -> Self {
        self.capacity = Capacity::Unbounded;
        self
    }

    /// Bytes of the ring (rounded up to a power of two, at least 4 KiB;
    /// by default 256 KiB; a bounded channel of a type that owns no heap
    /// memory gets room for its capacity's messages: twice the type's size
    /// and 64 bytes each, from 4 KiB to 256 KiB — a `bounded(16)` of `u64`
    /// gets 4 KiB). Messages up
    /// to half of it travel through the ring; larger ones as their own
    /// sealed segment — set it for large messages on a small bounded
    /// channel.
    pub fn ring_bytes(mut self, bytes: usize) -> Self {
        self.ring_bytes = Some(bytes);
        self
    }

    /// How both ends wait: [`WaitStrategy::Spin`], [`WaitStrategy::Park`]
    /// or [`WaitStrategy::Adaptive`] (the default).
    pub fn wait(mut self, wait: WaitStrategy) -> Self {
        self.wait = wait;
        self
    }

    /// For a sender you do not trust with your memory: every frame carries
    /// its CRC32C (as on sockets), and the receiver copies each frame out
    /// of the ring before it checks and decodes it, so bytes the peer
    /// changes in the shared memory, at any moment, make a typed error
    /// ([`WireError::Checksum`](crate::WireError::Checksum),
    /// [`WireError::BadRing`](crate::WireError::BadRing)), never a message
    /// the sender did not send. Costs the checksum on both sides and one
    /// copy on receipt; loans still work, in-place receives are refused.
    /// Off by default: whatever the setting, the receiver never panics,
    /// reads out of bounds or waits past its timeout because of what a
    /// peer wrote.
    pub fn checked(mut self, on: bool) -> Self {
        self.checked = on;
        self
    }

    /// Create the channel.
    pub fn build<T>(self) -> Result<(Sender<T>, Receiver<T>), Error> {
        let ring = Ring::new(self.ring_bytes.unwrap_or_else(|| default_ring_bytes::<T>(self.capacity)))?;
        ring.set_strategy(self.wait);
        ring.set_checked(self.checked);
        // One memfd: the control block lives in the ring's header, and
        // both ends here share the mapping.
        let ctl = Ctl::create_in_ring(&ring, self.capacity);
        let ctl2 = ctl.share()?;
        let ring2 = ring.share();
        // No sockets yet: they are made when first needed (see `Pair`).
        let (tx, rx) = Side::both(ring, ring2);
        let (tx, rx) = (ShmTx(tx), ShmRx(rx));
        Ok((Sender::from_link(TxLink::Shm(tx), ctl), Receiver::from_link(RxLink::Shm(rx), ctl2)))
    }
}

/// A shared-memory channel holding at most `n` unreceived messages;
/// `bounded(0)` is a rendezvous.
///
/// ```
/// let (tx, rx) = conduit::channel::shm::bounded::<Vec<u8>>(64)?;
/// assert!(rx.is_shared_memory());
/// tx.send(vec![1, 2, 3]).unwrap();
/// assert_eq!(rx.recv().unwrap(), [1, 2, 3]);
/// # Ok::<(), conduit::Error>(())
/// ```
pub fn bounded<T>(n: usize) -> Result<(Sender<T>, Receiver<T>), Error> {
    Builder::new().bounded(n).build()
}

/// A shared-memory channel without a limit: `send` never blocks.
pub fn unbounded<T>() -> Result<(Sender<T>, Receiver<T>), Error> {
    Builder::new().unbounded().build()
}

/// Backoff for the async methods on shared-memory channels.
pub(crate) fn async_backoff(step: u32) -> Duration {
    Duration::from_micros((1u64 << step.min(10)).min(1000))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::channel::{PortSet, RecvError, SendError};
    use crate::memory::Segment;

    fn made<T>(tx: &Sender<T>) -> bool {
        tx.tx_link().shm().and_then(|s| s.sock_if_made()).is_some()
    }

    #[test]
    fn a_channel_used_here_makes_no_sockets() {
        let (tx, rx) = bounded::<u64>(2).unwrap();
        tx.send(1).unwrap();
        assert_eq!(rx.recv().unwrap(), 1);
        assert!(!made(&tx));
    }

    #[test]
    fn a_blocked_receiver_learns_of_the_senders_drop_without_sockets() {
        for wait in [WaitStrategy::Park, WaitStrategy::default(), WaitStrategy::Spin] {
            let (tx, rx) = Builder::new().bounded(2).wait(wait).build::<u64>().unwrap();
            tx.send(5).unwrap();
            let t = std::thread::spawn(move || (rx.recv(), rx.recv()));
            // The receiver may or may not be asleep yet: either way it ends.
            drop(tx);
            let (first, second) = t.join().unwrap();
            assert!(matches!(first, Ok(5)), "{wait:?}: what was sent before the drop arrives");
            assert!(matches!(second, Err(RecvError::Disconnected)), "{wait:?}");
        }
    }

    #[test]
    fn a_blocked_sender_learns_of_the_receivers_drop_without_sockets() {
        let (tx, rx) = Builder::new().bounded(1).wait(WaitStrategy::Park).build::<u64>().unwrap();
        tx.send(1).unwrap();
        let t = std::thread::spawn(move || tx.send(2));
        drop(rx);
        assert!(matches!(t.join().unwrap(), Err(SendError::Disconnected(2))));
    }

    #[test]
    fn a_port_set_makes_the_sockets_and_sees_an_earlier_drop() {
        let (tx, rx) = bounded::<u64>(2).unwrap();
        drop(tx);
        let mut set = PortSet::new();
        set.add(&rx);
        assert_eq!(set.ready_timeout(Duration::from_secs(5)), Some(0));
        assert!(matches!(rx.recv(), Err(RecvError::Disconnected)));
    }

    #[test]
    fn a_port_set_is_woken_by_a_send_after_it_made_the_sockets() {
        let (tx, rx) = bounded::<u64>(2).unwrap();
        // Whether the send comes before or during the wait, it is seen.
        let t = std::thread::spawn(move || {
            tx.send(9).unwrap();
            tx
        });
        let mut set = PortSet::new();
        set.add(&rx);
        assert_eq!(set.ready_timeout(Duration::from_secs(10)), Some(0));
        assert_eq!(rx.recv().unwrap(), 9);
        let tx = t.join().unwrap();
        assert!(made(&tx), "arming for poll made the pair");
    }

    #[test]
    fn descriptors_in_a_message_make_the_sockets_on_the_way() {
        let (tx, rx) = bounded::<Segment>(2).unwrap();
        let seg = Segment::new(4096).unwrap();
        seg.write_at(0, b"hello").unwrap();
        tx.send(seg).unwrap();
        let got = rx.recv().unwrap();
        let mut back = [0u8; 5];
        got.read_at(0, &mut back).unwrap();
        assert_eq!(&back, b"hello");
        assert!(made(&tx));
    }

    #[test]
    fn an_end_sent_on_after_its_peer_was_dropped_shows_the_drop() {
        // The sender goes before the pair is made; the receiver then
        // travels (here: through another channel), which makes the pair
        // with the sender's socket closed at once.
        let (tx, rx) = bounded::<u64>(2).unwrap();
        tx.send(3).unwrap();
        drop(tx);
        let (carry_tx, carry_rx) = crate::channel::bounded::<Receiver<u64>>(1).unwrap();
        carry_tx.send(rx).unwrap();
        let rx = carry_rx.recv().unwrap();
        assert!(matches!(rx.recv(), Ok(3)));
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(10)),
            Err(crate::channel::RecvTimeoutError::Disconnected)
        ));
    }
}
