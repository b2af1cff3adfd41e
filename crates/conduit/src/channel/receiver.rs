//! The receive right.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::codec;
use super::ctl::{Capacity, Ctl};
use super::error::{RecvError, RecvFail, RecvTimeoutError, TryRecvError};
use super::transport::shm::ShmRx;
use super::transport::{Parts, RxLink, Waited};
use crate::error::{Error, WireError};
use crate::rights::{self, RightKind};
use crate::sys::Deadline;
use crate::sys::socket::{Credentials, Received};
use crate::wire::{self, MAX_FRAME};

/// How long a rendezvous receiver that gave up waits for a message whose
/// sender had already taken its token (normally microseconds).
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(1);

thread_local! {
    static RECV_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; MAX_FRAME]);
}

/// The receive right: the one receiving half of a channel.
///
/// There is exactly one; it can be moved (also into a message, to another
/// process) but not cloned. When it is dropped, or its process dies, every
/// sender gets [`Disconnected`](super::SendError::Disconnected).
pub struct Receiver<T> {
    link: RxLink,
    ctl: Ctl,
    /// Rendezvous only: we have a token out (offered, or taken by a sender
    /// whose message has not been read yet).
    token: AtomicBool,
    /// Largest payload this receiver accepts (see `set_max_message`).
    max_message: AtomicUsize,
    /// Its mappings of senders' bulk buffers (unmapped with it).
    bulk: super::bulk::Owner,
    _t: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("capacity", &self.capacity())
            .field("shared_memory", &self.is_shared_memory())
            .finish_non_exhaustive()
    }
}

/// The descriptor that is readable when a message (or the end of the
/// channel) may be there (for use with `poll` or an event loop; on
/// shared-memory channels only while a port set or async task armed the
/// doorbell). A channel whose ends were both made in this process gets its
/// socket pair here, if it has none yet (see the [`channel`](super) module).
impl<T> AsFd for Receiver<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.link.ready_fd()
    }
}

type Got<T> = (T, Option<Credentials>);

impl<T> Receiver<T> {
    pub(crate) fn from_link(link: RxLink, ctl: Ctl) -> Self {
        Receiver {
            link,
            ctl,
            token: AtomicBool::new(false),
            max_message: AtomicUsize::new(wire::MAX_PAYLOAD),
            bulk: super::bulk::Owner::new(),
            _t: PhantomData,
        }
    }

    pub(crate) fn from_received(parts: Parts) -> std::io::Result<Self> {
        let (link, ctl) = parts.into_rx()?;
        Ok(Receiver::from_link(link, ctl))
    }

    /// The link, for port sets.
    pub(crate) fn link(&self) -> &RxLink {
        &self.link
    }

    /// The shared-memory end, for in-place receives.
    pub(crate) fn shm(&self) -> Option<&ShmRx> {
        self.link.shm()
    }

    /// The channel's capacity: `Some(0)` for a rendezvous, `Some(n)` when
    /// bounded, `None` when unbounded.
    pub fn capacity(&self) -> Option<usize> {
        match self.ctl.capacity() {
            Capacity::Zero => Some(0),
            Capacity::Bounded(n) => Some(n as usize),
            Capacity::Unbounded => None,
        }
    }

    /// Refuse messages whose encoded payload is larger than `bytes`
    /// (default and most: [`wire::MAX_PAYLOAD`]). The size a frame declares
    /// is checked against it before anything of the payload is mapped or
    /// read, so a peer cannot make this process allocate more; such a
    /// frame is a [`WireError::TooLarge`] and the channel goes on.
    pub fn set_max_message(&self, bytes: usize) {
        self.max_message.store(bytes.min(wire::MAX_PAYLOAD), SeqCst);
    }

    /// Stop receiving the sender's credentials with each message. A
    /// socket channel has them by default (for
    /// [`recv_from`](Self::recv_from), which then fails with
    /// `Error::NoCredentials`); without them the kernel does less per
    /// message (~0.1 µs here). RPC connections, which identify their peer
    /// otherwise, do this. Other transports never carry credentials.
    pub fn without_credentials(&self) -> Result<(), Error> {
        Ok(self.link.drop_credentials()?)
    }

    /// The limit set by [`set_max_message`](Self::set_max_message).
    pub fn max_message(&self) -> usize {
        self.max_message.load(SeqCst)
    }

    /// True if this channel runs over shared memory.
    pub fn is_shared_memory(&self) -> bool {
        self.link.shm().is_some()
    }

    /// Messages sent and not yet received (bounded channels, and any
    /// shared-memory channel; 0 otherwise).
    pub fn len(&self) -> usize {
        self.link.queued().unwrap_or(self.ctl.queued() as usize)
    }

    /// True if no message waits (bounded channels; always true otherwise).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rendezvous: tell senders a receiver is here (once per message).
    pub(crate) fn begin(&self) {
        if self.ctl.capacity() == Capacity::Zero && !self.token.swap(true, SeqCst) {
            if self.link.credits_in_band() {
                self.link.grant(1, 1);
                return;
            }
            // (Shared memory: senders sleep on the ring, not counted in
            // the control block: ring them always.)
            if self.ctl.offer() || self.link.credits_in_ring() {
                self.link.ring_senders();
            }
        }
    }

    /// Rendezvous: take back an unused token. Returns `false` if a sender
    /// took it, so its message is on the way and must be read.
    pub(crate) fn retract(&self) -> bool {
        if self.ctl.capacity() != Capacity::Zero || !self.token.load(SeqCst) {
            return true;
        }
        if self.link.credits_in_band() {
            // A token sent cannot be taken back: it stays ours, and the
            // message sent with it (if any) is the next one received.
            return false;
        }
        if self.ctl.retract() {
            self.token.store(false, SeqCst);
            true
        } else {
            false
        }
    }

    /// A message left the queue by a path other than `read` (in place).
    pub(crate) fn credit_taken(&self) {
        self.on_data();
    }

    fn on_data(&self) {
        match self.ctl.capacity() {
            // Shared memory: the ring's release returns the credit.
            Capacity::Bounded(_) if self.link.credits_in_ring() => {}
            // Small capacities return each credit at once; larger ones in
            // batches of up to half the window (see `transport::stream`).
            Capacity::Bounded(n) if self.link.credits_in_band() => {
                let batch = if n < super::transport::stream::DEFER_CREDITS_FROM { 1 } else { n / 2 };
                self.link.grant(1, batch.min(u64::from(u32::MAX)) as u32)
            }
            Capacity::Bounded(_) => {
                if self.ctl.release() {
                    self.link.ring_senders();
                }
            }
            Capacity::Zero => self.token.store(false, SeqCst),
            Capacity::Unbounded => {}
        }
    }
}

impl<T: DeserializeOwned> Receiver<T> {
    /// Read one message if there is one (`Ok(None)` = nothing yet).
    fn read(&self, block: bool) -> Result<Option<Got<T>>, RecvFail> {
        if let Some(shm) = self.link.shm() {
            return Ok(shm.read(self.max_message(), self.bulk.id(), || self.on_data())?.map(|m| (m, None)));
        }
        self.read_link(block, |frame, rec| {
            codec::decode(frame, rec, false, self.max_message(), self.bulk.id(), || self.on_data())
        })
    }

    /// Take one frame from a byte link into this thread's buffer and
    /// `decode` it; with the sender's credentials, if the link has them.
    fn read_link<R>(
        &self,
        block: bool,
        decode: impl FnOnce(&[u8], Received) -> Result<R, Error>,
    ) -> Result<Option<(R, Option<Credentials>)>, RecvFail> {
        let mut buf = RECV_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
        let out = match self.link.recv(&mut buf, block, self.max_message()) {
            Ok(Some(rec)) if rec.len == 0 && rec.fds.is_empty() => {
                // End of stream, or a (hostile) empty datagram.
                Err(if self.link.peer_gone() {
                    RecvFail::Disconnected
                } else {
                    RecvFail::Failed(WireError::Empty.into())
                })
            }
            Ok(Some(rec)) => {
                let creds = rec.creds;
                let n = rec.len.min(buf.len());
                decode(&buf[..n], rec).map(|msg| Some((msg, creds))).map_err(RecvFail::Failed)
            }
            Ok(None) => Ok(None),
            Err(e) => {
                if let Error::Wire(WireError::TooLarge { .. }) = e {
                    // A refused message still took its credit.
                    self.on_data();
                }
                Err(RecvFail::Failed(e))
            }
        };
        if buf.capacity() > 2 * MAX_FRAME {
            // A large pipe frame: do not keep its buffer.
            buf = Vec::new();
        }
        RECV_BUF.with(|b| *b.borrow_mut() = buf);
        out
    }

    /// Wait for a message at most `timeout`, decoding it only if it
    /// carries rights: one that carries none comes as its encoded payload,
    /// an [`Opaque`](super::Opaque) — for a relay that serves a port
    /// whose senders may send any type (the bridge between hosts: RPC
    /// connections, which carry rights, are decoded; plain messages are
    /// carried on as bytes). Socket and pipe channels; on shared memory,
    /// [`Error::Unsupported`].
    pub fn recv_timeout_or_opaque(&self, timeout: Duration) -> Result<Result<T, super::Opaque>, RecvTimeoutError> {
        if self.link.shm().is_some() {
            return Err(RecvTimeoutError::Failed(Error::Unsupported(
                "an opaque receive on shared memory (its frames are decoded in place)",
            )));
        }
        let wait = Deadline::Until(Instant::now() + timeout);
        let failed = |e: RecvFail| RecvFail::recv_timeout(e);
        self.begin();
        let mut grace = false;
        loop {
            if let Some(got) = self.read_opaque().map_err(failed)? {
                return Ok(got);
            }
            if grace {
                return Err(RecvTimeoutError::Timeout);
            }
            match self.link.wait_data(wait).map_err(|e| failed(RecvFail::Failed(e)))? {
                Waited::Data => continue,
                Waited::Gone => {
                    return self.read_opaque().map_err(failed)?.ok_or(RecvTimeoutError::Disconnected);
                }
                Waited::TimedOut => {
                    if self.retract() {
                        return Err(RecvTimeoutError::Timeout);
                    }
                    // A sender took our rendezvous token: its message is on
                    // the way.
                    let _ = self.link.wait_data(Deadline::Until(Instant::now() + IN_FLIGHT_GRACE));
                    grace = true;
                }
            }
        }
    }

    fn read_opaque(&self) -> Result<Option<Result<T, super::Opaque>>, RecvFail> {
        let got = self.read_link(false, |frame, rec| {
            codec::decode_or_opaque(frame, rec, self.max_message(), self.bulk.id(), || self.on_data())
        })?;
        Ok(got.map(|(msg, _)| msg))
    }

    /// Stop waiting: retract a rendezvous token, or read the message of
    /// the sender who took it.
    fn give_up(&self) -> Result<Got<T>, RecvFail> {
        if self.retract() {
            return Err(RecvFail::Empty);
        }
        if self.link.credits_in_band() {
            // The token stays out; whatever comes with it is the next
            // receive's.
            return self.read(false)?.ok_or(RecvFail::Empty);
        }
        let grace = Deadline::Until(Instant::now() + IN_FLIGHT_GRACE);
        let _ = self.link.wait_data(grace);
        // If it has still not come, the token stays ours: the next receive
        // gets that message.
        self.read(false)?.ok_or(RecvFail::Empty)
    }

    /// The transport's short receive path, if it has one (shared memory:
    /// a plain message decoded where it lies). `None`: use the full path
    /// (`recv_with`), which then reports timeouts, disconnection and bad
    /// frames.
    #[inline]
    fn recv_plain(&self, wait: Deadline) -> Option<Result<T, Error>> {
        self.link.shm()?.recv_plain(self.ctl.capacity(), wait, &mut || self.on_data())
    }

    pub(crate) fn recv_with(&self, wait: Deadline) -> Result<Got<T>, RecvFail> {
        self.begin();
        loop {
            // Byte links block in the read itself when waiting forever.
            if let Some(got) = self.read(wait == Deadline::Forever)? {
                return Ok(got);
            }
            match self.link.wait_data(wait).map_err(RecvFail::Failed)? {
                Waited::Data => continue,
                // Everything committed before the last sender went is
                // still delivered.
                Waited::Gone => return self.read(false)?.map(Ok).unwrap_or(Err(RecvFail::Disconnected)),
                Waited::TimedOut => return self.give_up(),
            }
        }
    }

    /// Wait for a message as long as it takes. Returns
    /// [`RecvError::Disconnected`] once every sender is gone and the queue
    /// is empty.
    pub fn recv(&self) -> Result<T, RecvError> {
        if let Some(got) = self.recv_plain(Deadline::Forever) {
            return got.map_err(RecvError::Failed);
        }
        self.recv_with(Deadline::Forever).map(|g| g.0).map_err(RecvFail::recv)
    }

    /// Take a message if one is there, without waiting.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        if let Some(got) = self.recv_plain(Deadline::Never) {
            return got.map_err(TryRecvError::Failed);
        }
        self.recv_with(Deadline::Never).map(|g| g.0).map_err(RecvFail::try_recv)
    }

    /// Wait for a message at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_deadline(Instant::now() + timeout)
    }

    /// Wait for a message until `deadline` at most.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        if let Some(got) = self.recv_plain(Deadline::Until(deadline)) {
            return got.map_err(RecvTimeoutError::Failed);
        }
        self.recv_with(Deadline::Until(deadline)).map(|g| g.0).map_err(RecvFail::recv_timeout)
    }

    /// Like [`recv`](Self::recv), and also say who sent the message: the
    /// pid, uid and gid the kernel attached to it (`SCM_CREDENTIALS`).
    /// Socket channels only: on shared memory the kernel sees no message.
    pub fn recv_from(&self) -> Result<(T, Credentials), RecvError> {
        if !self.has_credentials() {
            return Err(RecvError::Failed(Error::NoCredentials));
        }
        let (msg, creds) = self.recv_with(Deadline::Forever).map_err(RecvFail::recv)?;
        Ok((msg, creds.ok_or_else(no_creds)?))
    }

    /// Like [`recv_timeout`](Self::recv_timeout), with the sender's credentials.
    pub fn recv_from_timeout(&self, timeout: Duration) -> Result<(T, Credentials), RecvTimeoutError> {
        if !self.has_credentials() {
            return Err(RecvTimeoutError::Failed(Error::NoCredentials));
        }
        let wait = Deadline::Until(Instant::now() + timeout);
        let (msg, creds) = self.recv_with(wait).map_err(RecvFail::recv_timeout)?;
        Ok((msg, creds.ok_or_else(no_creds)?))
    }

    /// Like [`recv`](Self::recv), and say who sent the message as the
    /// kernel knows it, on every channel where it does: a socket
    /// channel's sender process (`SCM_CREDENTIALS`, per message), a Unix
    /// stream peer's process (`SO_PEERCRED`), a TCP peer's address.
    /// Shared memory and pipes: [`Error::NoCredentials`].
    pub fn recv_with_peer(&self) -> Result<(T, crate::net::Peer), RecvError> {
        if let Some(peer) = self.peer() {
            return self.recv().map(|m| (m, peer));
        }
        self.recv_from().map(|(m, c)| (m, crate::net::Peer::Process(c)))
    }

    /// A blocking iterator; it ends when the channel is disconnected.
    /// Frames that fail to decode are skipped.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || {
            loop {
                match self.recv() {
                    Ok(m) => return Some(m),
                    Err(RecvError::Disconnected) => return None,
                    Err(RecvError::Failed(Error::Wire(WireError::BadRing(_)))) => return None,
                    Err(RecvError::Failed(_)) => continue,
                }
            }
        })
    }

    /// An iterator over the messages there now; it never waits.
    pub fn try_iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || {
            loop {
                match self.try_recv() {
                    Ok(m) => return Some(m),
                    Err(TryRecvError::Failed(Error::Wire(WireError::BadRing(_)))) => return None,
                    Err(TryRecvError::Failed(_)) => continue,
                    Err(_) => return None,
                }
            }
        })
    }

    /// The senders' count of messages sent (or being sent) into a socket
    /// link, if they keep one (see `Ctl::sent_hint`): a spinning receiver
    /// looks at it instead of calling `recvmsg` again and again.
    #[inline]
    pub(crate) fn sent_hint(&self) -> Option<u64> {
        match self.link {
            RxLink::Seqpacket(_) | RxLink::Local(_) => self.ctl.sent_hint(),
            _ => None,
        }
    }

    /// True if a blocking receive spins before it sleeps by itself.
    pub(crate) fn spins_before_sleep(&self) -> bool {
        self.link.spins_before_sleep()
    }

    /// Non-blocking read used by the async API (no token handling).
    pub(crate) fn poll_read(&self) -> Result<Option<Got<T>>, RecvFail> {
        self.read(false)
    }
}

fn no_creds() -> Error {
    Error::NoCredentials
}

impl RecvTimeoutError {
    pub(crate) fn from_recv(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => RecvTimeoutError::Disconnected,
            RecvError::Failed(e) => RecvTimeoutError::Failed(e),
        }
    }
}

impl<T> Receiver<T> {
    /// This receive right as a right's kind and descriptors (duplicates).
    pub(crate) fn to_right(&self) -> std::io::Result<(RightKind, Vec<OwnedFd>)> {
        if !self.retract() {
            return Err(std::io::Error::other("a rendezvous receiver with a message in flight cannot be moved"));
        }
        self.link.to_right(&self.ctl)
    }

    /// The peer of a channel over a stream socket ([`crate::net`]), as the
    /// kernel knows it: a TCP peer's address, a Unix peer's process
    /// (`SO_PEERCRED`, the process that connected). `None` for other
    /// channels (use [`recv_from`](Self::recv_from)).
    pub fn peer(&self) -> Option<crate::net::Peer> {
        self.link.stream_peer().map(Into::into)
    }

    /// True if the transport names the sender of each message.
    fn has_credentials(&self) -> bool {
        self.link.caps().credentials
    }
}

impl<T> Serialize for Receiver<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.link.credits_in_band() {
            return Err(serde::ser::Error::custom(crate::rights::refuse(super::sender::STAYS)));
        }
        let (kind, fds) = self.to_right().map_err(|e| serde::ser::Error::custom(crate::rights::refuse_io(e)))?;
        let index = rights::push(kind, fds).map_err(serde::ser::Error::custom)?;
        s.serialize_u32(index)
    }
}

impl<'de, T> Deserialize<'de> for Receiver<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(d)?;
        let parts = rights::take_port(index, true).map_err(serde::de::Error::custom)?;
        Receiver::from_received(parts).map_err(serde::de::Error::custom)
    }
}
