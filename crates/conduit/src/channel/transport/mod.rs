//! The transport seam: what differs between the ways a channel's frames
//! travel, and nothing else.
//!
//! A channel end is a *link* — [`TxLink`] for senders, [`RxLink`] for the
//! receiver — plus the channel's control block (`ctl`: capacity and
//! credits, the same for every local transport). Everything above —
//! `Sender`, `Receiver`, timeouts, the outbox, port sets, `call`/`ReplyTo`,
//! async, rights — asks the link only for what is named here, and matches
//! on no transport itself:
//!
//! | job | senders' end | receiver's end |
//! |---|---|---|
//! | move one frame | `try_write` (or `NoRoom`), `write_waiting` | `recv` (byte links); shm: its `read` |
//! | flow control | `acquire` (credit or token, waiting the transport's way), `take_wake` | `ring_senders`, `credits_in_ring` |
//! | wait | `wait_room`, `wait_bell`, `write_fd`, `bell_fd` | `wait_data`, `ready_fd`, `ready_now`, `arm`, `needs_nap` |
//! | peer gone | `peer_gone`, `known_gone` | `peer_gone` |
//! | what it carries | `caps` (rights, credentials, inline and frame limits), `checksum`, `direct_max` | `caps` |
//! | pass it on | `to_right`, and [`adopt`] + [`Parts`] on the way in | the same |
//! | short paths | `send_plain` (shm) | `recv_plain` (shm) |
//!
//! One file per transport: [`seqpacket`] (`AF_UNIX` `SOCK_SEQPACKET`:
//! rights and credentials), [`local`] (a socket channel with both ends in
//! this process: a queue in memory until it needs its socket pair),
//! [`pipe`] (ordinary pipes and FIFOs: a byte
//! stream, framed here), and [`shm`] (a ring in shared memory, which keeps
//! a seqpacket socket for three jobs: the *carrier* of descriptors, the
//! *death notice* of the peer, and the *doorbell* for sleepers in `poll`).
//! A new transport adds its file here, a variant to [`TxLink`] and
//! [`RxLink`] with an arm in each of their methods, a [`LinkFds`] variant
//! with its arms in [`adopt`] and [`Parts`], and its right kinds in
//! `rights.rs`.

mod framing;
pub(crate) mod local;
pub mod mqueue;
pub mod pipe;
mod queued;
pub(crate) mod seqpacket;
pub mod shm;
pub(crate) mod stream;
pub mod sysv;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::Serialize;

use super::ctl::{Capacity, Ctl};
use super::error::SendFail;
use super::outbox::Frame;
use crate::error::{Error, WireError};
use crate::memory::Segment;
use crate::memory::ring::Ring;
use crate::rights::RightKind;
use crate::sys::Deadline;
use crate::sys::socket::{self, Ready, Received};
pub(crate) use shm::Waited;

/// What a transport can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Caps {
    /// Descriptors (rights, out-of-line payloads) travel with frames.
    pub rights: bool,
    /// The kernel names the sender of each frame (`SCM_CREDENTIALS`).
    pub credentials: bool,
    /// Largest payload sent inside the frame (larger: out of line, which
    /// needs `rights`).
    pub inline_max: usize,
    /// Largest whole frame one send may write (`None`: no limit of the
    /// transport's own; a FIFO's is `PIPE_BUF`, so that writers of
    /// several processes never interleave).
    pub frame_max: Option<usize>,
}

/// Why a frame was not written.
#[derive(Debug)]
pub(crate) enum WriteFail {
    /// The transport has no room now.
    NoRoom,
    /// No credit (bounded shared-memory channels count them in the ring).
    NoCredit,
    /// The receiver is gone.
    Disconnected,
    /// Anything else.
    Failed(Error),
}

/// The senders' end of a channel's transport.
#[derive(Debug)]
pub(crate) enum TxLink {
    Local(local::LocalTx),
    Seqpacket(seqpacket::Seqpacket),
    Pipe(pipe::PipeTx),
    Shm(shm::ShmTx),
    Stream(stream::StreamTx),
    Mq(mqueue::MqTx),
    Sysv(sysv::SysvTx),
}

/// The receiver's end of a channel's transport.
#[derive(Debug)]
pub(crate) enum RxLink {
    Local(local::LocalRx),
    Seqpacket(seqpacket::Seqpacket),
    Pipe(pipe::PipeRx),
    Shm(shm::ShmRx),
    Stream(stream::StreamRx),
    Mq(mqueue::MqRx),
    Sysv(sysv::SysvRx),
}

impl TxLink {
    /// Write one frame now (bounded shared memory: with a credit), or say
    /// why not.
    #[inline]
    pub fn try_write<T: Serialize + ?Sized>(&self, ctl: &Ctl, frame: &Frame<'_, T>) -> Result<(), WriteFail> {
        let encoded = || frame.out().expect("frames for a byte link are encoded, never direct");
        let fds = || frame.fds().iter().map(|f| f.as_fd()).collect::<Vec<BorrowedFd<'_>>>();
        match self {
            // Counted first: a receiver spinning on the count starts its
            // `recvmsg` while this `sendmsg` is under way.
            TxLink::Seqpacket(l) => counted(ctl, || l.try_send(&encoded().bytes, &fds())),
            TxLink::Local(l) => counted(ctl, || l.try_send(&encoded().bytes, &fds())),
            TxLink::Pipe(l) => l.try_send(&encoded().bytes, &fds()),
            TxLink::Shm(s) => s.try_write(ctl, frame),
            TxLink::Stream(l) => l.try_send(&encoded().bytes, &fds()),
            TxLink::Mq(l) => l.try_send(&encoded().bytes, &fds()),
            TxLink::Sysv(l) => l.try_send(&encoded().bytes, &fds()),
        }
    }

    /// Wait for the right to write one message (a credit or a rendezvous
    /// token). Byte links sleep in `poll` on their bell, so that the
    /// receiver's death ends the wait at once; shared memory on the ring's
    /// futex words.
    pub fn acquire(&self, ctl: &Ctl, wait: Deadline) -> Result<(), SendFail> {
        match self {
            TxLink::Shm(s) => return s.acquire(ctl, wait),
            TxLink::Stream(l) => return l.acquire(ctl, wait),
            _ => {}
        }
        let no = |link: &Self| if link.peer_gone() { SendFail::Disconnected } else { SendFail::Full };
        loop {
            if ctl.try_acquire() {
                return Ok(());
            }
            if wait == Deadline::Never {
                return Err(no(self));
            }
            let guard = ctl.wait_guard();
            if ctl.try_acquire() {
                return Ok(());
            }
            if wait.expired() {
                return Err(no(self));
            }
            let ready = self.wait_bell(wait).map_err(|e| SendFail::Failed(e.into()))?;
            drop(guard);
            if ready.hangup {
                return Err(SendFail::Disconnected);
            }
            if ready.readable {
                self.take_wake(ctl)?;
            }
        }
    }

    /// Take one ring of the bell off the link (a stream link: the credits
    /// that came, into `ctl`).
    pub fn take_wake(&self, ctl: &Ctl) -> Result<(), SendFail> {
        let got = match self {
            TxLink::Local(l) => l.consume_wake(),
            TxLink::Seqpacket(l) => l.consume_wake(),
            TxLink::Pipe(l) => l.consume_wake(),
            TxLink::Shm(s) => s.sock().and_then(|k| k.consume_wake()),
            TxLink::Stream(l) => l.take_credits(ctl),
            TxLink::Mq(l) => l.sock().consume_wake(),
            TxLink::Sysv(l) => l.sock().consume_wake(),
        };
        match got {
            Ok(true) => Ok(()),
            Ok(false) => Err(SendFail::Disconnected),
            Err(e) => Err(SendFail::Failed(e.into())),
        }
    }

    /// About to wait for a credit: a stream link tells its receiver (which
    /// then returns credits at once rather than with its next receive).
    pub fn ask_for_credit(&self) {
        if let TxLink::Stream(l) = self {
            l.ask();
        }
    }

    /// Block until a frame of `len` bytes may fit (or the receiver is
    /// gone): the outbox's flusher.
    pub fn wait_room(&self, len: usize) -> io::Result<()> {
        match self {
            TxLink::Local(l) => l.wait_room(),
            TxLink::Seqpacket(l) => l.wait_writable(),
            TxLink::Pipe(l) => l.wait_writable(),
            TxLink::Shm(s) => {
                s.wait_room(len);
                Ok(())
            }
            TxLink::Stream(l) => l.wait_writable(),
            TxLink::Mq(l) => l.wait_writable(),
            TxLink::Sysv(l) => l.wait_writable(),
        }
    }

    /// Sleep until the receiver rings (`readable`) or goes (`hangup`).
    pub fn wait_bell(&self, wait: Deadline) -> io::Result<Ready> {
        match self {
            TxLink::Local(l) => l.wait_bell(wait),
            TxLink::Seqpacket(l) => l.wait_bell(wait),
            TxLink::Pipe(l) => l.wait_bell(wait),
            TxLink::Shm(s) => s.sock()?.wait_bell(wait),
            TxLink::Stream(l) => l.wait_bell(wait),
            TxLink::Mq(l) => l.sock().wait_bell(wait),
            TxLink::Sysv(l) => l.sock().wait_bell(wait),
        }
    }

    /// True if the receiver is gone.
    pub fn peer_gone(&self) -> bool {
        match self {
            TxLink::Local(l) => l.peer_gone(),
            TxLink::Seqpacket(l) => l.peer_gone(),
            TxLink::Pipe(l) => l.peer_gone(),
            TxLink::Shm(s) => s.peer_gone(),
            TxLink::Stream(l) => l.peer_gone(),
            TxLink::Mq(l) => l.sock().peer_gone(),
            TxLink::Sysv(l) => l.sock().peer_gone(),
        }
    }

    /// The receiver is known gone without asking the kernel (the monitor
    /// thread said so): an outbox stops waiting.
    pub fn known_gone(&self) -> bool {
        match self {
            TxLink::Shm(s) => s.end.is_gone(),
            TxLink::Local(l) => l.known_gone(),
            _ => false,
        }
    }

    /// The descriptor that is writable when a frame may fit.
    pub fn write_fd(&self) -> BorrowedFd<'_> {
        match self {
            TxLink::Local(l) => l.poll_fd(),
            TxLink::Seqpacket(l) => l.write_fd(),
            TxLink::Pipe(l) => l.write_fd(),
            TxLink::Shm(s) => s.poll_fd(),
            TxLink::Stream(l) => l.fd(),
            TxLink::Mq(l) => l.write_fd(),
            TxLink::Sysv(l) => l.write_fd(),
        }
    }

    /// The descriptor that shows the receiver's going (hang-up or error):
    /// the dead-name watch of `notify`.
    pub fn death_fd(&self) -> BorrowedFd<'_> {
        match self {
            TxLink::Mq(l) => l.sock().fd(),
            TxLink::Sysv(l) => l.sock().fd(),
            _ => self.write_fd(),
        }
    }

    /// The descriptor that is readable when the receiver rang.
    pub fn bell_fd(&self) -> BorrowedFd<'_> {
        match self {
            TxLink::Local(l) => l.poll_fd(),
            TxLink::Seqpacket(l) => l.bell_fd(),
            TxLink::Pipe(l) => l.bell_fd(),
            TxLink::Shm(s) => s.poll_fd(),
            TxLink::Stream(l) => l.fd(),
            TxLink::Mq(l) => l.sock().fd(),
            TxLink::Sysv(l) => l.sock().fd(),
        }
    }

    /// What this transport carries.
    pub fn caps(&self) -> Caps {
        match self {
            TxLink::Local(l) => l.caps(),
            TxLink::Seqpacket(l) => l.caps(),
            TxLink::Pipe(l) => l.caps(),
            TxLink::Shm(s) => s.caps(),
            TxLink::Stream(l) => l.caps(),
            TxLink::Mq(l) => l.caps(),
            TxLink::Sysv(l) => l.caps(),
        }
    }

    /// The end may go inside a message (stream-socket ends stay: they are
    /// handed to a child process only).
    pub fn travels(&self) -> bool {
        !matches!(self, TxLink::Stream(_))
    }

    /// Frames wait in the link itself (a stream socket took one in part;
    /// a channel made here whose queue did not all fit its new socket):
    /// the outbox's flusher finishes them, and nothing overtakes them.
    pub fn backlog(&self) -> bool {
        match self {
            TxLink::Stream(l) => l.backlog(),
            TxLink::Local(l) => l.backlog(),
            _ => false,
        }
    }

    /// Write the link's backlog now if there is room (`NoRoom` if not).
    pub fn flush_backlog(&self) -> Result<(), WriteFail> {
        match self {
            TxLink::Stream(l) => l.flush_backlog(),
            TxLink::Local(l) => l.flush_backlog(),
            _ => Ok(()),
        }
    }

    /// Frames carry their checksum.
    pub fn checksum(&self) -> bool {
        !matches!(self, TxLink::Shm(s) if !s.end.checked)
    }

    /// Largest frame a message may be serialized straight into (no
    /// intermediate buffer): shared memory, its ring's limit. Not on a
    /// checked ring: its checksum must be computed over the sender's own
    /// copy, which the peer cannot change while it is summed.
    pub fn direct_max(&self) -> Option<usize> {
        match self {
            TxLink::Shm(s) if !s.end.checked => Some(s.end.ring.max_message()),
            _ => None,
        }
    }

    /// Messages sent and not yet received, if the transport counts them.
    pub fn queued(&self) -> Option<usize> {
        match self {
            TxLink::Shm(s) => Some(s.end.ring.messages() as usize),
            _ => None,
        }
    }

    /// A bounded channel's write on a transport that waits for room
    /// within the send's deadline rather than handing the frame to the
    /// outbox (shared memory: faster than a hand-off to another thread).
    /// `None`: the outbox's way.
    pub fn write_waiting<T: Serialize + ?Sized>(
        &self,
        ctl: &Ctl,
        frame: &Frame<'_, T>,
        wait: Deadline,
    ) -> Option<Result<(), SendFail>> {
        match self {
            TxLink::Shm(s) if ctl.capacity() != Capacity::Unbounded => Some(s.write_waiting(ctl, frame, wait)),
            _ => None,
        }
    }

    /// This process's threads take turns with the outbox by this lock
    /// (shared memory; byte links take turns by the outbox's own).
    pub fn local_turn(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        match self {
            TxLink::Shm(s) => Some(s.end.local.lock().unwrap_or_else(|p| p.into_inner())),
            _ => None,
        }
    }

    /// A bounded channel's send waits here for the transport to take the
    /// frame rather than leave it in the outbox: the kernel queues, whose
    /// own depth is smaller than the channel's capacity — so a send that
    /// returned has its message in the kernel, not in this process.
    pub fn bounded_send_waits(&self) -> bool {
        matches!(self, TxLink::Mq(_) | TxLink::Sysv(_))
    }

    /// A frame this long may take several calls (a pipe's fragments):
    /// only the outbox, which retries the same frame, writes it.
    pub fn must_queue(&self, len: usize) -> bool {
        matches!(self, TxLink::Pipe(p) if p.must_queue(len))
    }

    /// The shared-memory end, for loans.
    pub fn shm(&self) -> Option<&shm::ShmTx> {
        match self {
            TxLink::Shm(s) => Some(s),
            _ => None,
        }
    }

    /// The descriptors of a right, in wire order, and its kind.
    pub fn to_right(&self, ctl: &Ctl) -> io::Result<(RightKind, Vec<OwnedFd>)> {
        match self {
            TxLink::Local(l) => right(RightKind::Send, l.dup_fds()?, ctl, None),
            TxLink::Seqpacket(l) => right(RightKind::Send, l.dup_fds()?, ctl, None),
            TxLink::Pipe(l) => right(RightKind::PipeSend, l.dup_fds()?, ctl, None),
            TxLink::Shm(s) => right(RightKind::ShmSend, s.sock()?.dup_fds()?, ctl, Some(&s.end.ring)),
            TxLink::Stream(l) => {
                if !l.can_move() {
                    return Err(io::Error::other("a stream sender holding part of a frame cannot be moved"));
                }
                right(RightKind::StreamSend, l.dup_fds()?, ctl, None)
            }
            TxLink::Mq(l) => right(RightKind::MqSend, l.dup_fds()?, ctl, None),
            TxLink::Sysv(l) => right(RightKind::SysvSend, l.dup_fds()?, ctl, None),
        }
    }
}

impl RxLink {
    /// Take one frame into `buf` (the frame is `buf[..len]`): `None` if
    /// there is none yet (and `block` is false). A zero-length frame
    /// without descriptors is the end of the stream (or, if the peer is
    /// still there, a hostile empty frame). Byte links only.
    #[inline]
    pub fn recv(&self, buf: &mut Vec<u8>, block: bool, limit: usize) -> Result<Option<Received>, Error> {
        match self {
            RxLink::Local(l) => l.recv(buf, block, limit),
            RxLink::Seqpacket(l) => l.recv(buf, block, limit),
            RxLink::Pipe(l) => l.recv(buf, block, limit),
            RxLink::Stream(l) => l.recv(buf, block, limit),
            RxLink::Mq(l) => l.recv(buf, block, limit),
            RxLink::Sysv(l) => l.recv(buf, block, limit),
            RxLink::Shm(_) => unreachable!("a ring is read by its own flavor"),
        }
    }

    /// Wait for data: a byte link polls its descriptor (`Deadline::Forever`
    /// reads block instead, so it returns at once); shared memory sleeps
    /// by the ring's strategy.
    pub fn wait_data(&self, wait: Deadline) -> Result<Waited, Error> {
        if let RxLink::Shm(s) = self {
            return Ok(s.wait_data(wait));
        }
        if let RxLink::Local(l) = self
            && let Some(data) = l.wait_data(wait)
        {
            return Ok(if data { Waited::Data } else { Waited::TimedOut });
        }
        if wait == Deadline::Forever {
            return Ok(Waited::Data);
        }
        if wait == Deadline::Never || wait.expired() {
            return Ok(Waited::TimedOut);
        }
        let ready = socket::poll(&[self.ready_fd()], wait)?[0];
        Ok(if ready.readable || ready.hangup { Waited::Data } else { Waited::TimedOut })
    }

    /// The descriptor that is readable when a frame (or the end) is there
    /// (shared memory: while armed, the doorbell).
    /// Stop the kernel attaching the sender's credentials to each message
    /// (Unix seqpacket sockets; the other links never have them).
    pub fn drop_credentials(&self) -> io::Result<()> {
        match self {
            RxLink::Local(l) => l.drop_credentials(),
            RxLink::Seqpacket(l) => crate::sys::socket::clear_passcred(l.ready_fd()),
            _ => Ok(()),
        }
    }

    pub fn ready_fd(&self) -> BorrowedFd<'_> {
        match self {
            RxLink::Local(l) => l.poll_fd(),
            RxLink::Seqpacket(l) => l.ready_fd(),
            RxLink::Pipe(l) => l.ready_fd(),
            RxLink::Shm(s) => s.poll_fd(),
            RxLink::Stream(l) => l.ready_fd(),
            RxLink::Mq(l) => l.ready_fd(),
            RxLink::Sysv(l) => l.ready_fd(),
        }
    }

    /// Something can be taken now that the descriptor does not show (a
    /// whole frame buffered from a pipe, data in a ring), or the senders
    /// are gone.
    pub fn ready_now(&self) -> bool {
        match self {
            RxLink::Local(l) => l.ready_now(),
            RxLink::Seqpacket(_) => false,
            RxLink::Pipe(p) => p.has_buffered(),
            RxLink::Shm(s) => s.ready_now(),
            RxLink::Stream(l) => l.has_buffered(),
            RxLink::Mq(_) | RxLink::Sysv(_) => false,
        }
    }

    /// Shared memory: have producers ring the doorbell while we sleep in
    /// `poll` (`on`), or stop and drop its wakes.
    pub fn arm(&self, on: bool) {
        if let RxLink::Shm(s) = self {
            s.arm(on);
        }
    }

    /// A blocking read spins before it sleeps (shared memory's adaptive
    /// wait); other links sleep in the kernel at once.
    pub fn spins_before_sleep(&self) -> bool {
        matches!(self, RxLink::Shm(_))
    }

    /// Readiness of the descriptor alone may be missed (shared memory
    /// without a working membarrier): look again every nap.
    pub fn needs_nap(&self) -> bool {
        matches!(self, RxLink::Shm(_))
    }

    /// Tell sleeping senders to look at their credits again.
    pub fn ring_senders(&self) {
        match self {
            RxLink::Local(l) => l.ring_senders(),
            RxLink::Seqpacket(l) => l.ring_senders(),
            RxLink::Pipe(l) => l.ring_senders(),
            RxLink::Shm(s) => s.ring_senders(),
            RxLink::Mq(l) => l.sock().ring_senders(),
            RxLink::Sysv(l) => l.sock().ring_senders(),
            // Stream senders are woken by the credits themselves.
            RxLink::Stream(_) => {}
        }
    }

    /// The link carries credits in band (a stream socket: the senders'
    /// control block is theirs alone): every message taken is granted
    /// back with [`grant`](Self::grant), every rendezvous receive grants a
    /// token, and a token once sent cannot be taken back.
    pub fn credits_in_band(&self) -> bool {
        matches!(self, RxLink::Stream(_))
    }

    /// Grant the senders `n` more (credits or tokens): stream links. They
    /// go at once if `batch` is 1, else when `batch` are owed or the
    /// receiver catches up (see `stream`).
    pub fn grant(&self, n: u32, batch: u32) {
        if let RxLink::Stream(l) = self {
            l.grant(n, batch);
        }
    }

    /// The peer as the kernel knows it (stream links).
    pub fn stream_peer(&self) -> Option<crate::sys::net::PeerOf> {
        match self {
            RxLink::Stream(l) => l.peer(),
            _ => None,
        }
    }

    /// The ring itself returns bounded channels' credits (on release).
    pub fn credits_in_ring(&self) -> bool {
        matches!(self, RxLink::Shm(_))
    }

    /// True if every sender is gone (or the link is broken).
    pub fn peer_gone(&self) -> bool {
        match self {
            RxLink::Local(l) => l.peer_gone(),
            RxLink::Seqpacket(l) => l.peer_gone(),
            RxLink::Pipe(l) => l.peer_gone(),
            RxLink::Shm(s) => s.peer_gone(),
            RxLink::Stream(l) => l.peer_gone(),
            RxLink::Mq(l) => l.sock().peer_gone(),
            RxLink::Sysv(l) => l.sock().peer_gone(),
        }
    }

    /// What this transport carries.
    pub fn caps(&self) -> Caps {
        match self {
            RxLink::Local(l) => l.caps(),
            RxLink::Seqpacket(l) => l.caps(),
            RxLink::Pipe(l) => l.caps(),
            RxLink::Shm(s) => s.caps(),
            RxLink::Stream(l) => l.caps(),
            RxLink::Mq(l) => l.caps(),
            RxLink::Sysv(l) => l.caps(),
        }
    }

    /// Messages sent and not yet received, if the transport counts them.
    pub fn queued(&self) -> Option<usize> {
        match self {
            RxLink::Shm(s) => Some(s.end.ring.messages() as usize),
            _ => None,
        }
    }

    /// The shared-memory end (its own receive paths, loans, in place).
    pub fn shm(&self) -> Option<&shm::ShmRx> {
        match self {
            RxLink::Shm(s) => Some(s),
            _ => None,
        }
    }

    /// The descriptors of a right, in wire order, and its kind.
    pub fn to_right(&self, ctl: &Ctl) -> io::Result<(RightKind, Vec<OwnedFd>)> {
        match self {
            RxLink::Local(l) => right(RightKind::Receive, l.dup_fds()?, ctl, None),
            RxLink::Seqpacket(l) => right(RightKind::Receive, l.dup_fds()?, ctl, None),
            RxLink::Pipe(l) => {
                if !l.can_move() {
                    return Err(io::Error::other("a pipe receiver holding part of a frame cannot be moved"));
                }
                right(RightKind::PipeReceive, l.dup_fds()?, ctl, None)
            }
            RxLink::Shm(s) => right(RightKind::ShmReceive, s.sock()?.dup_fds()?, ctl, Some(&s.end.ring)),
            RxLink::Stream(l) => {
                if !l.can_move() {
                    return Err(io::Error::other("a stream receiver holding part of a frame cannot be moved"));
                }
                right(RightKind::StreamReceive, l.dup_fds()?, ctl, None)
            }
            RxLink::Mq(l) => right(RightKind::MqReceive, l.dup_fds()?, ctl, None),
            RxLink::Sysv(l) => right(RightKind::SysvReceive, l.dup_fds()?, ctl, None),
        }
    }
}

/// A socket link's send, counted in the control block just before it
/// (and the count taken back if it did not go).
#[inline]
fn counted(ctl: &Ctl, send: impl FnOnce() -> Result<(), WriteFail>) -> Result<(), WriteFail> {
    ctl.note_sent();
    let sent = send();
    if sent.is_err() {
        ctl.unnote_sent();
    }
    sent
}

/// A right of `kind`: the link's descriptors, then a duplicate of the
/// control block's memfd, or (shared memory) of the ring's, which holds
/// the control block in its header: the order `adopt` takes.
fn right(
    kind: RightKind,
    mut fds: Vec<OwnedFd>,
    ctl: &Ctl,
    ring: Option<&Ring>,
) -> io::Result<(RightKind, Vec<OwnedFd>)> {
    match (ring, ctl.fd()) {
        (Some(ring), _) => fds.push(socket::dup(ring.segment().fd())?),
        (None, Some(fd)) => fds.push(socket::dup(fd)?),
        (None, None) => return Err(io::Error::other("a control block in a ring, without its ring")),
    }
    Ok((kind, fds))
}

/// A link's descriptors, checked, before they become a channel end.
#[derive(Debug)]
pub(crate) enum LinkFds {
    Seqpacket(OwnedFd),
    Pipe { data: OwnedFd, bell: OwnedFd },
    Stream(OwnedFd),
    Mq { sock: OwnedFd, mq: OwnedFd },
    Sysv { sock: OwnedFd, count: OwnedFd, id: i32 },
}

/// A channel end put together from received or inherited descriptors.
#[derive(Debug)]
pub(crate) struct Parts {
    pub kind: RightKind,
    pub link: LinkFds,
    pub ctl: Ctl,
    pub ring: Option<Ring>,
}

impl Parts {
    /// The senders' end these descriptors make.
    pub fn into_tx(self) -> io::Result<(TxLink, Ctl)> {
        let Parts { link, ctl, ring, .. } = self;
        let link = match (link, ring) {
            (LinkFds::Seqpacket(s), None) => TxLink::Seqpacket(seqpacket::Seqpacket::new(s)),
            (LinkFds::Seqpacket(s), Some(ring)) => TxLink::Shm(shm::ShmTx::new(seqpacket::Seqpacket::new(s), ring)?),
            (LinkFds::Pipe { data, bell }, _) => TxLink::Pipe(pipe::PipeTx::new(data, Some(bell))),
            (LinkFds::Stream(s), _) => TxLink::Stream(stream::StreamTx::new(s)),
            (LinkFds::Mq { sock, mq }, _) => TxLink::Mq(mqueue::MqTx::new(sock, mq)?),
            (LinkFds::Sysv { sock, count, id }, _) => TxLink::Sysv(sysv::SysvTx::new(sock, count, id)),
        };
        Ok((link, ctl))
    }

    /// The receiver's end these descriptors make.
    pub fn into_rx(self) -> io::Result<(RxLink, Ctl)> {
        let Parts { link, ctl, ring, .. } = self;
        let link = match (link, ring) {
            (LinkFds::Seqpacket(s), None) => RxLink::Seqpacket(seqpacket::Seqpacket::new(s)),
            (LinkFds::Seqpacket(s), Some(ring)) => RxLink::Shm(shm::ShmRx::new(seqpacket::Seqpacket::new(s), ring)?),
            (LinkFds::Pipe { data, bell }, _) => RxLink::Pipe(pipe::PipeRx::new(data, Some(bell))),
            (LinkFds::Stream(s), _) => RxLink::Stream(stream::StreamRx::new(s)),
            (LinkFds::Mq { sock, mq }, _) => RxLink::Mq(mqueue::MqRx::new(sock, mq)?),
            (LinkFds::Sysv { sock, count, id }, _) => RxLink::Sysv(sysv::SysvRx::new(sock, count, id)?),
        };
        Ok((link, ctl))
    }
}

/// Check the descriptors of a channel-end right of `kind` (taken in order
/// from `next`) and put them together. `index`: the right's place in its
/// frame, for errors.
pub(crate) fn adopt(kind: RightKind, index: usize, next: &mut dyn FnMut() -> OwnedFd) -> Result<Parts, WireError> {
    let bad = |why| WireError::BadRight { index, why };
    let link = match kind {
        RightKind::Send | RightKind::Receive | RightKind::ShmSend | RightKind::ShmReceive => {
            LinkFds::Seqpacket(seqpacket::check(next()).map_err(bad)?)
        }
        RightKind::PipeSend | RightKind::PipeReceive => {
            let data = next();
            let (data, bell) = pipe::check(kind == RightKind::PipeReceive, data, next()).map_err(bad)?;
            LinkFds::Pipe { data, bell }
        }
        RightKind::StreamSend | RightKind::StreamReceive => LinkFds::Stream(stream::check(next()).map_err(bad)?),
        RightKind::MqSend | RightKind::MqReceive => {
            let sock = seqpacket::check(next()).map_err(bad)?;
            LinkFds::Mq { sock, mq: mqueue::check(next()).map_err(bad)? }
        }
        RightKind::SysvSend | RightKind::SysvReceive => {
            let sock = seqpacket::check(next()).map_err(bad)?;
            // The queue's id comes with the control block, below.
            LinkFds::Sysv { sock, count: sysv::check_counter(next()).map_err(bad)?, id: -1 }
        }
        RightKind::Segment => return Err(bad("a segment is not a channel end")),
    };
    let (ctl, ring) = match kind {
        // The ring, its header holding the control block.
        RightKind::ShmSend | RightKind::ShmReceive => {
            let ring = Ring::adopt(Segment::adopt_with(next(), index, true)?, index)?;
            (Ctl::adopt_in_ring(&ring, index)?, Some(ring))
        }
        _ => (Ctl::adopt(next(), index)?, None),
    };
    let mut link = link;
    if let LinkFds::Sysv { id, .. } = &mut link {
        *id = sysv::verify(&ctl).map_err(bad)?;
    }
    Ok(Parts { kind, link, ctl, ring })
}
