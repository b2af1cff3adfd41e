//! The transport seam: what differs between the ways a channel's frames
//! travel, and nothing else.
//!
//! A channel end is a *link* (the descriptors its frames cross) plus the
//! channel's control block (`ctl`, credits: the same for every transport)
//! and, on shared memory, a ring. Everything above — `Sender`, `Receiver`,
//! capacity, timeouts, the outbox, port sets, `call`/`ReplyTo`, async —
//! asks the link only for what this module names:
//!
//! | job | [`TxLink`] (senders' end) | [`RxLink`] (receiver's end) |
//! |---|---|---|
//! | move one frame | [`try_send`](TxLink::try_send) | [`recv`](RxLink::recv) |
//! | wait | [`wait_writable`](TxLink::wait_writable), [`wait_bell`](TxLink::wait_bell) | [`ready_fd`](RxLink::ready_fd) (poll, port sets, async) |
//! | flow control | [`consume_wake`](TxLink::consume_wake) | [`ring_senders`](RxLink::ring_senders) |
//! | peer gone | [`peer_gone`](TxLink::peer_gone) | [`peer_gone`](RxLink::peer_gone) |
//! | what it can carry | [`caps`](TxLink::caps) | [`caps`](RxLink::caps) |
//! | pass it on | [`dup_fds`](TxLink::dup_fds) / [`adopt`] | the same |
//!
//! One file per transport: [`seqpacket`] (`AF_UNIX` `SOCK_SEQPACKET`:
//! rights and credentials), [`pipe`] (ordinary pipes and FIFOs: a byte
//! stream, framed here), and [`shm`] (a ring in shared memory, which keeps
//! a seqpacket link for three jobs: the *carrier* of descriptors, the
//! *death notice* of the peer, and the *doorbell* for sleepers in `poll`).
//! A new transport adds a file here, a variant to each enum below, and its
//! right kinds.

pub mod pipe;
pub(crate) mod seqpacket;
pub mod shm;

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use super::ctl::Ctl;
use crate::error::{Error, WireError};
use crate::rights::RightKind;
use crate::shm::Segment;
use crate::shm::ring::Ring;
use crate::sys::Deadline;
use crate::sys::socket::{Ready, Received};

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

/// The senders' end of a link.
#[derive(Debug)]
pub(crate) enum TxLink {
    Seqpacket(seqpacket::Seqpacket),
    Pipe(pipe::PipeTx),
}

/// The receiver's end of a link.
#[derive(Debug)]
pub(crate) enum RxLink {
    Seqpacket(seqpacket::Seqpacket),
    Pipe(pipe::PipeRx),
}

/// Dispatch to the transport of a link.
macro_rules! on_link {
    ($link:expr, $l:ident => $body:expr) => {
        match $link {
            TxLink::Seqpacket($l) => $body,
            TxLink::Pipe($l) => $body,
        }
    };
}
macro_rules! on_rx_link {
    ($link:expr, $l:ident => $body:expr) => {
        match $link {
            RxLink::Seqpacket($l) => $body,
            RxLink::Pipe($l) => $body,
        }
    };
}

impl TxLink {
    /// Write one whole frame now, with its descriptors, or say why not.
    #[inline]
    pub fn try_send(&self, frame: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), WriteFail> {
        on_link!(self, l => l.try_send(frame, fds))
    }
    /// Block until a frame may fit (or the receiver is gone).
    pub fn wait_writable(&self) -> io::Result<()> {
        on_link!(self, l => l.wait_writable())
    }
    /// Sleep until the receiver rings (a credit or a rendezvous token
    /// opened: `readable`) or goes (`hangup`), or `wait` runs out.
    pub fn wait_bell(&self, wait: Deadline) -> io::Result<Ready> {
        on_link!(self, l => l.wait_bell(wait))
    }
    /// Take one ring of the bell off the link.
    pub fn consume_wake(&self) -> io::Result<bool> {
        on_link!(self, l => l.consume_wake())
    }
    /// True if the receiver is gone.
    pub fn peer_gone(&self) -> bool {
        on_link!(self, l => l.peer_gone())
    }
    /// The descriptor that is writable when a frame may fit.
    pub fn write_fd(&self) -> BorrowedFd<'_> {
        on_link!(self, l => l.write_fd())
    }
    /// The descriptor that is readable when the receiver rang.
    pub fn bell_fd(&self) -> BorrowedFd<'_> {
        on_link!(self, l => l.bell_fd())
    }
    /// What this transport carries.
    pub fn caps(&self) -> Caps {
        on_link!(self, l => l.caps())
    }
    /// The link's descriptors, duplicated, to pass the right on.
    pub fn dup_fds(&self) -> io::Result<Vec<OwnedFd>> {
        on_link!(self, l => l.dup_fds())
    }
    /// The socket, for the jobs it does for shared memory.
    pub fn socket(&self) -> Option<BorrowedFd<'_>> {
        match self {
            TxLink::Seqpacket(s) => Some(s.fd()),
            TxLink::Pipe(_) => None,
        }
    }
    /// The kind of a send right over this link (`ring`: with a ring).
    pub fn right_kind(&self, ring: bool) -> RightKind {
        match (self, ring) {
            (TxLink::Seqpacket(_), false) => RightKind::Send,
            (TxLink::Seqpacket(_), true) => RightKind::ShmSend,
            (TxLink::Pipe(_), _) => RightKind::PipeSend,
        }
    }
}

impl RxLink {
    /// Take one frame into `buf` (the frame is `buf[..len]`): `None` if
    /// there is none yet (and `block` is false). A zero-length frame
    /// without descriptors is the end of the stream (or, if the peer is
    /// still there, a hostile empty frame).
    #[inline]
    pub fn recv(&self, buf: &mut Vec<u8>, block: bool, limit: usize) -> Result<Option<Received>, Error> {
        on_rx_link!(self, l => l.recv(buf, block, limit))
    }
    /// The descriptor that is readable when a frame (or the end) is there.
    pub fn ready_fd(&self) -> BorrowedFd<'_> {
        on_rx_link!(self, l => l.ready_fd())
    }
    /// Tell sleeping senders to look at their credits again.
    pub fn ring_senders(&self) {
        on_rx_link!(self, l => l.ring_senders())
    }
    /// True if every sender is gone (or the link is broken).
    pub fn peer_gone(&self) -> bool {
        on_rx_link!(self, l => l.peer_gone())
    }
    /// What this transport carries.
    pub fn caps(&self) -> Caps {
        on_rx_link!(self, l => l.caps())
    }
    /// The link's descriptors, duplicated, to pass the right on.
    pub fn dup_fds(&self) -> io::Result<Vec<OwnedFd>> {
        on_rx_link!(self, l => l.dup_fds())
    }
    /// A whole frame already read from the link waits in this process
    /// (readiness of the descriptor does not show it).
    pub fn has_buffered(&self) -> bool {
        match self {
            RxLink::Seqpacket(_) => false,
            RxLink::Pipe(p) => p.has_buffered(),
        }
    }
    /// True when nothing of a half-read frame is held in this process (a
    /// receive right can only move then).
    pub fn can_move(&self) -> bool {
        match self {
            RxLink::Seqpacket(_) => true,
            RxLink::Pipe(p) => p.can_move(),
        }
    }
    /// The socket, for the jobs it does for shared memory.
    pub fn socket(&self) -> Option<BorrowedFd<'_>> {
        match self {
            RxLink::Seqpacket(s) => Some(s.fd()),
            RxLink::Pipe(_) => None,
        }
    }
    /// The kind of a receive right over this link (`ring`: with a ring).
    pub fn right_kind(&self, ring: bool) -> RightKind {
        match (self, ring) {
            (RxLink::Seqpacket(_), false) => RightKind::Receive,
            (RxLink::Seqpacket(_), true) => RightKind::ShmReceive,
            (RxLink::Pipe(_), _) => RightKind::PipeReceive,
        }
    }
}

/// A link's descriptors, checked, before they become a channel end.
#[derive(Debug)]
pub(crate) enum LinkFds {
    Seqpacket(OwnedFd),
    Pipe { data: OwnedFd, bell: OwnedFd },
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
    /// The senders' link.
    pub fn tx_link(link: LinkFds, ctl: &Ctl) -> io::Result<TxLink> {
        Ok(match link {
            LinkFds::Seqpacket(s) => TxLink::Seqpacket(seqpacket::Seqpacket::new(s)),
            LinkFds::Pipe { data, bell } => {
                let lock = crate::sys::pipe::reopen_for_lock(ctl.fd())?;
                TxLink::Pipe(pipe::PipeTx::new(data, Some(bell), Some(lock)))
            }
        })
    }

    /// The receiver's link.
    pub fn rx_link(link: LinkFds) -> io::Result<RxLink> {
        Ok(match link {
            LinkFds::Seqpacket(s) => RxLink::Seqpacket(seqpacket::Seqpacket::new(s)),
            LinkFds::Pipe { data, bell } => RxLink::Pipe(pipe::PipeRx::new(data, Some(bell))),
        })
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
        RightKind::Segment => return Err(bad("a segment is not a channel end")),
    };
    let ctl = Ctl::adopt(next(), index)?;
    let ring = match kind {
        RightKind::ShmSend | RightKind::ShmReceive => {
            Some(Ring::adopt(Segment::adopt_with(next(), index, true)?, index)?)
        }
        _ => None,
    };
    Ok(Parts { kind, link, ctl, ring })
}
