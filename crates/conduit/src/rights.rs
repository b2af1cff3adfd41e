//! Rights inside messages.
//!
//! A `Sender`, `Receiver` or `Segment` inside a message serializes as a
//! small index; its descriptors go into a per-thread table that the frame
//! encoder sends with `SCM_RIGHTS`. On receipt, the decoder checks every
//! descriptor and fills the table; deserializing a right takes its entry.
//! Entries nobody took are closed when decoding ends: nothing leaks.

use std::cell::RefCell;
use std::os::fd::OwnedFd;

use crate::channel::transport::Parts;
use crate::memory::Segment;

/// What a right is; the byte in the frame's rights table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RightKind {
    /// A send right of a socket channel: socket, control block.
    Send = 1,
    /// The receive right of a socket channel: socket, control block.
    Receive = 2,
    /// A send right of a shared-memory channel: socket, ring (its header
    /// holds the control block).
    ShmSend = 3,
    /// The receive right of a shared-memory channel: socket, ring (its
    /// header holds the control block).
    ShmReceive = 4,
    /// A shared-memory segment: one sealed memfd.
    Segment = 5,
    /// A send right of a pipe channel: the pipe's write end, the bell's
    /// read end, control block.
    PipeSend = 6,
    /// The receive right of a pipe channel: the pipe's read end, the
    /// bell's write end, control block.
    PipeReceive = 7,
    /// A send right of a stream-socket channel (TCP, Unix stream): the
    /// socket, control block. Handed to a child process only
    /// (`process::Command::spawn_with`), never inside a message.
    StreamSend = 8,
    /// The receive right of a stream-socket channel: the socket, control
    /// block (as [`StreamSend`](Self::StreamSend)).
    StreamReceive = 9,
    /// A send right of a message-queue channel: the socket (bell and death
    /// notice), the POSIX queue, control block.
    MqSend = 10,
    /// The receive right of a message-queue channel (as
    /// [`MqSend`](Self::MqSend)).
    MqReceive = 11,
    /// A send right of a System V channel: the socket (bell and death
    /// notice), the message counter (an eventfd), control block (which
    /// names the queue and its cookie).
    SysvSend = 12,
    /// The receive right of a System V channel (as
    /// [`SysvSend`](Self::SysvSend)).
    SysvReceive = 13,
}

impl RightKind {
    pub(crate) fn from_byte(b: u8) -> Option<RightKind> {
        Some(match b {
            1 => RightKind::Send,
            2 => RightKind::Receive,
            3 => RightKind::ShmSend,
            4 => RightKind::ShmReceive,
            5 => RightKind::Segment,
            6 => RightKind::PipeSend,
            7 => RightKind::PipeReceive,
            8 => RightKind::StreamSend,
            9 => RightKind::StreamReceive,
            10 => RightKind::MqSend,
            11 => RightKind::MqReceive,
            12 => RightKind::SysvSend,
            13 => RightKind::SysvReceive,
            _ => return None,
        })
    }

    /// Descriptors that travel with a right of this kind.
    pub(crate) fn fds(self) -> usize {
        match self {
            RightKind::Send
            | RightKind::Receive
            | RightKind::StreamSend
            | RightKind::StreamReceive
            | RightKind::ShmSend
            | RightKind::ShmReceive => 2,
            RightKind::PipeSend
            | RightKind::PipeReceive
            | RightKind::MqSend
            | RightKind::MqReceive
            | RightKind::SysvSend
            | RightKind::SysvReceive => 3,
            RightKind::Segment => 1,
        }
    }

    pub(crate) fn is_receive(self) -> bool {
        matches!(
            self,
            RightKind::Receive
                | RightKind::ShmReceive
                | RightKind::PipeReceive
                | RightKind::StreamReceive
                | RightKind::MqReceive
                | RightKind::SysvReceive
        )
    }
}

/// A right that arrived, already checked.
#[derive(Debug)]
pub enum Incoming {
    /// A channel end, its descriptors checked.
    Port(Parts),
    /// A segment.
    Segment(Segment),
}

/// Rights met while serializing: kind and descriptors, in table order.
pub type Outgoing = Vec<(RightKind, Vec<OwnedFd>)>;

thread_local! {
    /// Why a right refused to be serialized (postcard keeps no message).
    static REFUSED: RefCell<Option<crate::Error>> = const { RefCell::new(None) };
    static OUTGOING: RefCell<Option<Outgoing>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<Option<Incoming>>>> = const { RefCell::new(None) };
}

/// A right cannot be serialized, for this reason (returned, to give to
/// serde; [`refusal`] gives it back to the encoder).
pub(crate) fn refuse(why: &'static str) -> &'static str {
    REFUSED.with(|r| *r.borrow_mut() = Some(crate::Error::Unsupported(why)));
    why
}

/// A right could not make its descriptors (returned as text, for serde;
/// [`refusal`] gives the error itself back to the encoder).
pub(crate) fn refuse_io(e: std::io::Error) -> String {
    let text = e.to_string();
    REFUSED.with(|r| *r.borrow_mut() = Some(crate::Error::Io(e)));
    text
}

/// Why the last serialization on this thread was refused by a right.
pub(crate) fn refusal() -> Option<crate::Error> {
    REFUSED.with(|r| r.borrow_mut().take())
}

/// Run `f` (a serialization) collecting the rights it meets.
pub fn collect<R>(f: impl FnOnce() -> R) -> (R, Outgoing) {
    REFUSED.with(|r| *r.borrow_mut() = None);
    let saved = OUTGOING.with(|o| o.borrow_mut().replace(Vec::new()));
    let r = f();
    let rights = OUTGOING.with(|o| std::mem::replace(&mut *o.borrow_mut(), saved)).unwrap_or_default();
    (r, rights)
}

/// Record a right met during serialization; returns its index.
pub fn push(kind: RightKind, fds: Vec<OwnedFd>) -> Result<u32, &'static str> {
    OUTGOING.with(|o| match o.borrow_mut().as_mut() {
        None => Err("conduit rights can only be serialized inside a conduit message"),
        Some(v) => {
            v.push((kind, fds));
            Ok((v.len() - 1) as u32)
        }
    })
}

/// Run `f` (a deserialization) with `rights` available to it. Rights left
/// unclaimed are closed.
pub fn provide<R>(rights: Vec<Incoming>, f: impl FnOnce() -> R) -> R {
    let table = rights.into_iter().map(Some).collect();
    let saved = INCOMING.with(|i| i.borrow_mut().replace(table));
    let r = f();
    INCOMING.with(|i| *i.borrow_mut() = saved);
    r
}

pub(crate) fn take(index: u32) -> Result<Incoming, &'static str> {
    INCOMING.with(|i| {
        let mut table = i.borrow_mut();
        let table = table.as_mut().ok_or("conduit rights can only be deserialized from a conduit message")?;
        let slot = table.get_mut(index as usize).ok_or("right index out of range")?;
        slot.take().ok_or("right claimed twice")
    })
}

/// Claim channel end `index`: a receive right if `receive`, else a send right.
pub fn take_port(index: u32, receive: bool) -> Result<Parts, &'static str> {
    match take(index)? {
        Incoming::Port(parts) if matches!(parts.kind, RightKind::StreamSend | RightKind::StreamReceive) => {
            Err("a stream-socket channel end cannot arrive inside a message")
        }
        Incoming::Port(parts) if parts.kind.is_receive() == receive => Ok(parts),
        _ => Err(if receive { "expected a receive right" } else { "expected a send right" }),
    }
}

/// Claim segment `index`.
pub fn take_segment(index: u32) -> Result<Segment, &'static str> {
    match take(index)? {
        Incoming::Segment(s) => Ok(s),
        _ => Err("expected a segment"),
    }
}
