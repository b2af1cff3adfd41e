//! The send right.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::codec;
use super::ctl::{Capacity, Ctl};
use super::error::{SendError, SendFail, SendTimeoutError, TrySendError};
use super::outbox::{Frame, SenderCore};
use super::transport::{Parts, TxLink};
use crate::error::Error;
use crate::rights::{self, RightKind};
use crate::sys::Deadline;
use crate::wire;

/// A send right: the sending half of a channel.
///
/// Clone it to get more send rights to the same port (clones in one
/// process share one socket); put it inside a message to give another
/// process a way to reach the receiver. When every send right, in every
/// process, is gone, the receiver sees [`Disconnected`](super::RecvError::Disconnected)
/// once it has drained the queue.
pub struct Sender<T> {
    pub(crate) core: Arc<SenderCore>,
    _t: PhantomData<fn(T)>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender { core: Arc::clone(&self.core), _t: PhantomData }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("capacity", &self.capacity()).finish_non_exhaustive()
    }
}

/// The descriptor that is writable when the channel's link may take a
/// frame (for use with `poll` or an event loop). A channel whose ends were
/// both made in this process gets its socket pair here, if it has none
/// yet (see the [`channel`](super) module).
impl<T> AsFd for Sender<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.core.link.write_fd()
    }
}

impl<T> Sender<T> {
    pub(crate) fn from_link(link: TxLink, ctl: Ctl) -> Self {
        Sender { core: SenderCore::new(link, ctl), _t: PhantomData }
    }

    pub(crate) fn from_received(parts: Parts) -> std::io::Result<Self> {
        let (link, ctl) = parts.into_tx()?;
        Ok(Sender::from_link(link, ctl))
    }

    /// The same send right, for messages of type `U`. Types are a promise
    /// between the two ends (checked only by decoding): use this to hand
    /// on a right whose message type the middle does not know (a broker).
    pub fn cast<U>(self) -> Sender<U> {
        Sender { core: self.core, _t: PhantomData }
    }

    /// True if this channel runs over shared memory.
    pub fn is_shared_memory(&self) -> bool {
        self.core.link.shm().is_some()
    }

    pub(crate) fn encoding(&self) -> codec::Encoding {
        self.core.encoding()
    }

    /// The channel's capacity: `Some(0)` for a rendezvous, `Some(n)` when
    /// bounded, `None` when unbounded.
    pub fn capacity(&self) -> Option<usize> {
        match self.core.ctl.capacity() {
            Capacity::Zero => Some(0),
            Capacity::Bounded(n) => Some(n as usize),
            Capacity::Unbounded => None,
        }
    }

    /// Messages sent and not yet received (bounded channels, and any
    /// shared-memory channel; 0 otherwise).
    pub fn len(&self) -> usize {
        self.core.link.queued().unwrap_or(self.core.ctl.queued() as usize)
    }

    /// True if no message waits (bounded channels; always true otherwise).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Block until every message this process sent has left its outbox for
    /// the kernel (see the `outbox` module); useful before exiting.
    pub fn flush(&self) {
        self.core.flush();
    }

    /// True if the receiver is gone.
    pub fn is_disconnected(&self) -> bool {
        self.core.link.peer_gone()
    }

    /// True if a send usually makes no system call (shared memory): then
    /// there is nothing to gain from putting messages together.
    pub(crate) fn sends_without_syscall(&self) -> bool {
        matches!(self.core.link, super::transport::TxLink::Shm(_))
    }

    /// The link (for transport-specific accessors).
    pub(crate) fn tx_link(&self) -> &super::transport::TxLink {
        &self.core.link
    }

    /// A duplicate of the descriptor on which the receiver's going shows
    /// (hang-up or error): for the dead-name watch of `notify`.
    pub(crate) fn gone_fd(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        self.core.link.death_fd().try_clone_to_owned()
    }

    /// Wait for the right to write one message (a credit or a rendezvous
    /// token), the transport's way (see `TxLink::acquire`).
    fn acquire(&self, wait: Deadline) -> Result<(), SendFail> {
        self.core.link.acquire(&self.core.ctl, wait)
    }

    /// Take one wake off the senders' side of the link.
    pub(crate) fn consume_wake(&self) -> Result<(), SendFail> {
        self.core.link.take_wake(&self.core.ctl)
    }

    pub(crate) fn try_acquire_now(&self) -> bool {
        self.core.ctl.try_acquire()
    }

    pub(crate) fn wait_guard(&self) -> super::ctl::WaitGuard<'_> {
        self.core.ctl.wait_guard()
    }
}

impl<T> Sender<T> {
    /// Send any value that encodes like a `T` (e.g. a borrowed form).
    #[inline]
    pub(crate) fn send_ref<U: Serialize + ?Sized>(&self, msg: &U, wait: Deadline) -> Result<(), SendFail> {
        if self.core.send_plain(&super::outbox::Serde(msg), wait).is_some() {
            return Ok(());
        }
        self.send_full(msg, wait)
    }

    /// Every send the fast path (`SenderCore::send_plain`) leaves: rights,
    /// other capacities, sockets, large messages, errors and timeouts.
    pub(crate) fn send_full<U: Serialize + ?Sized>(&self, msg: &U, wait: Deadline) -> Result<(), SendFail> {
        let frame = match self.core.link.direct_max() {
            // Shared memory: a message without rights that fits the ring is
            // serialized straight into it. (Sizing fails on a message with
            // rights: they can only be serialized inside `encode`.)
            Some(max) => match postcard::experimental::serialized_size(msg) {
                Ok(size) if wire::HEADER_LEN + size <= max => Frame::Direct { msg, size },
                _ => Frame::Encoded(self.encode(msg)?),
            },
            None => Frame::Encoded(self.encode(msg)?),
        };
        self.acquire(wait)?;
        self.core.write(frame, wait)
    }

    /// Encode for this channel's transport, refusing at once what it
    /// cannot carry (rights on a pipe, a frame over a FIFO's atomic size).
    pub(crate) fn encode<U: Serialize + ?Sized>(&self, msg: &U) -> Result<codec::OutFrame, SendFail> {
        let caps = self.core.caps();
        let out =
            codec::encode(msg, self.encoding(), caps.rights.then_some(&self.core.bulk)).map_err(SendFail::Failed)?;
        if !caps.rights && !out.fds.is_empty() {
            return Err(SendFail::Failed(Error::Unsupported(
                "rights cannot travel through this transport (pipes and stream sockets carry bytes only)",
            )));
        }
        if let Some(max) = caps.frame_max
            && out.bytes.len() > max
        {
            return Err(SendFail::Failed(Error::TooLarge { size: out.bytes.len(), limit: max }));
        }
        Ok(out)
    }

    pub(crate) fn acquire_for_loan(&self) -> Result<(), SendFail> {
        self.acquire(Deadline::Forever)
    }
}

impl<T: Serialize> Sender<T> {
    pub(crate) fn send_with(&self, msg: &T, wait: Deadline) -> Result<(), SendFail> {
        self.send_ref(msg, wait)
    }

    /// Send, waiting for room (bounded) or for a receiver (rendezvous) as
    /// long as it takes. Fails only if the receiver is gone or the message
    /// cannot be encoded; the error gives the message back.
    pub fn send(&self, msg: T) -> Result<(), SendError<T>> {
        self.send_with(&msg, Deadline::Forever).map_err(|f| f.send(msg))
    }

    /// Send only if it can be done without waiting: returns
    /// [`TrySendError::Full`] when the channel is full, or, for a
    /// rendezvous, when no receiver is waiting.
    pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        self.send_with(&msg, Deadline::Never).map_err(|f| f.try_send(msg))
    }

    /// Send only if the channel takes the message at once, without waiting
    /// and without leaving it in this process's outbox (where
    /// [`try_send`](Self::try_send) on an unbounded channel would queue it
    /// for a flusher thread): `Full` otherwise. For a server that must not
    /// let a client who does not read grow its memory or its threads.
    /// (Unbounded shared-memory channels: like `try_send`. Pipes: a
    /// message that takes more than one atomic write — over `PIPE_BUF`
    /// framed — is `Full`.)
    pub fn send_now(&self, msg: T) -> Result<(), TrySendError<T>> {
        if self.is_shared_memory() || self.capacity().is_some() {
            return self.try_send(msg);
        }
        let frame = match self.encode(&msg) {
            Ok(f) => f,
            Err(f) => return Err(f.try_send(msg)),
        };
        match self.core.write_now_or_return(frame) {
            Ok(r) => r.map_err(|f| f.try_send(msg)),
            Err(_) => Err(TrySendError::Full(msg)),
        }
    }

    /// Send, waiting at most `timeout`.
    pub fn send_timeout(&self, msg: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_deadline(msg, Instant::now() + timeout)
    }

    /// Send, waiting until `deadline` at most.
    pub fn send_deadline(&self, msg: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        self.send_with(&msg, Deadline::Until(deadline)).map_err(|f| f.send_timeout(msg))
    }

    /// Send a request carrying a send-once reply right, and wait for
    /// exactly one reply (Mach's `msg_rpc`). `make` builds the request
    /// around the reply right. If the server drops the right without
    /// answering, or dies, the call fails with [`CallError::NoReply`].
    ///
    /// ```
    /// use conduit::ReplyTo;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// enum Request {
    ///     Square(u64, ReplyTo<u64>),
    /// }
    ///
    /// let (tx, rx) = conduit::bounded::<Request>(8)?;
    /// // The server (another thread here; usually another process).
    /// std::thread::spawn(move || {
    ///     for Request::Square(x, reply) in rx.iter() {
    ///         let _ = reply.send(x * x);
    ///     }
    /// });
    /// assert_eq!(tx.call(|reply| Request::Square(12, reply)).unwrap(), 144);
    /// # Ok::<(), conduit::Error>(())
    /// ```
    pub fn call<R, F>(&self, make: F) -> Result<R, CallError>
    where
        R: Serialize + DeserializeOwned,
        F: FnOnce(super::ReplyTo<R>) -> T,
    {
        self.call_deadline(make, None)
    }

    /// [`call`](Self::call) with a time limit on the whole exchange.
    pub fn call_timeout<R, F>(&self, make: F, timeout: Duration) -> Result<R, CallError>
    where
        R: Serialize + DeserializeOwned,
        F: FnOnce(super::ReplyTo<R>) -> T,
    {
        self.call_deadline(make, Some(Instant::now() + timeout))
    }

    fn call_deadline<R, F>(&self, make: F, deadline: Option<Instant>) -> Result<R, CallError>
    where
        R: Serialize + DeserializeOwned,
        F: FnOnce(super::ReplyTo<R>) -> T,
    {
        let (reply_tx, reply_rx) = super::bounded::<R>(1).map_err(CallError::Failed)?;
        let request = make(super::ReplyTo::new(reply_tx));
        let wait = deadline.map_or(Deadline::Forever, Deadline::Until);
        match self.send_with(&request, wait) {
            Ok(()) => {}
            Err(SendFail::Full) => return Err(CallError::Timeout),
            Err(SendFail::Disconnected) => return Err(CallError::Disconnected),
            Err(SendFail::Failed(e)) => return Err(CallError::Failed(e)),
        }
        // Our copy of the reply right must go, so that a server that drops
        // its copy makes the wait below end.
        drop(request);
        let got = match deadline {
            None => reply_rx.recv().map_err(super::RecvTimeoutError::from_recv),
            Some(d) => reply_rx.recv_deadline(d),
        };
        got.map_err(|e| match e {
            super::RecvTimeoutError::Timeout => CallError::Timeout,
            super::RecvTimeoutError::Disconnected => CallError::NoReply,
            super::RecvTimeoutError::Failed(e) => CallError::Failed(e),
        })
    }
}

/// Why a [`Sender::call`] got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server's port is gone.
    #[error("the server's port is disconnected")]
    Disconnected,
    /// The server dropped the reply right without answering, or died.
    #[error("the server dropped the reply right without answering")]
    NoReply,
    /// The time limit passed.
    #[error("the call timed out")]
    Timeout,
    /// Encoding, decoding or a system error.
    #[error("call failed: {0}")]
    Failed(Error),
}

impl<T> Sender<T> {
    /// This send right as a right's kind and descriptors (duplicates).
    pub(crate) fn to_right(&self) -> std::io::Result<(RightKind, Vec<std::os::fd::OwnedFd>)> {
        if self.core.has_pending() {
            // Its new holder's sends would overtake them.
            return Err(std::io::Error::other(PENDING));
        }
        let right = self.core.link.to_right(&self.core.ctl)?;
        // A channel made here gets its socket now: what of its queue did
        // not fit waits in this process, like an outbox.
        if self.core.has_pending() {
            return Err(std::io::Error::other(PENDING));
        }
        Ok(right)
    }
}

/// Why a sender with messages still in this process's outbox does not
/// move: messages sent after the move would overtake them.
pub(crate) const PENDING: &str = "a sender whose earlier messages still wait in this process's outbox \
     cannot move yet (they would be overtaken): call flush() first";

/// Why a stream-socket or FIFO end does not go inside a message.
pub(crate) const STAYS: &str = "this channel end cannot travel inside a message: a TCP or Unix-stream \
     end is handed to a child with process::Command::spawn_with, a FIFO's is opened by its path";

impl<T> Serialize for Sender<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !self.core.link.travels() {
            return Err(serde::ser::Error::custom(rights::refuse(STAYS)));
        }
        if self.core.has_pending() {
            return Err(serde::ser::Error::custom(rights::refuse(PENDING)));
        }
        let (kind, fds) = self.to_right().map_err(|e| serde::ser::Error::custom(rights::refuse_io(e)))?;
        let index = rights::push(kind, fds).map_err(serde::ser::Error::custom)?;
        s.serialize_u32(index)
    }
}

impl<'de, T> Deserialize<'de> for Sender<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(d)?;
        let parts = rights::take_port(index, false).map_err(serde::de::Error::custom)?;
        Sender::from_received(parts).map_err(serde::de::Error::custom)
    }
}
