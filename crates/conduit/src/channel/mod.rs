//! Typed channels between processes: ports with rights.
//!
//! One API, after crossbeam-channel: [`Sender`] (a send right, clonable)
//! and [`Receiver`] (the receive right, unique), with `send`, `try_send`,
//! `send_timeout`, `send_deadline` and `recv`, `try_recv`, `recv_timeout`,
//! `recv_deadline`, `iter`, `try_iter`; errors give the message back.
//!
//! Both halves work in any process: put one inside a message and the
//! process that receives it can use it directly. The capacity is a
//! property of the channel, enforced exactly across all processes:
//!
//! | constructor | capacity | `send` blocks while |
//! |---|---|---|
//! | [`bounded(0)`](bounded) | rendezvous | no receiver is waiting in `recv` |
//! | [`bounded(n)`](bounded) | n messages | n messages are unreceived |
//! | [`unbounded()`] | no limit | never |
//!
//! Underneath, a channel is a *link* — by default an `AF_UNIX`
//! `SOCK_SEQPACKET` socket pair; [`shm`] a ring in shared memory; [`pipe`]
//! ordinary pipes; [`crate::fifo`] named pipes — plus a small sealed memfd
//! control block (`ctl`) holding the credits. The path of a message:
//! encode (`codec`) → take a credit (`ctl`) → write the frame, or queue
//! it in the process's `outbox` if the link is full → the receiver reads
//! it, returns the credit, decodes. What differs between links is in
//! `transport` (one file each).
//!
//! A socket channel (or a shared-memory one) whose two ends are both in
//! the process that made it has no socket pair yet: its frames wait in a
//! queue in memory (shared memory: in its ring), so it costs one
//! descriptor. The pair is made, the queue going into it first and in
//! order, when an end leaves the process (inside a message, or handed to
//! a child by [`crate::process::Command`]) or a descriptor is asked for
//! (`AsFd`, a [`PortSet`], an async task). Ends reach other processes
//! that way: a bare `fork()` would copy the queue, not share it.
//!
//! ```
//! let (tx, rx) = conduit::bounded::<String>(4)?;
//! tx.send("hello".to_string()).unwrap();
//! assert_eq!(rx.recv().unwrap(), "hello");
//! # Ok::<(), conduit::Error>(())
//! ```

#[cfg(feature = "tokio")]
mod async_io;
pub(crate) mod bulk;
pub(crate) mod codec;
pub(crate) mod ctl;
mod error;
mod loan;
pub(crate) mod outbox;
mod receiver;
mod select;
mod sender;
pub(crate) mod transport;

pub use transport::{mqueue, pipe, shm, sysv};

use serde::{Deserialize, Serialize};

pub use codec::Opaque;
pub(crate) use error::SendFail;
pub use error::{RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError};
pub use loan::{Bytes, InPlace, Loan};
pub use receiver::Receiver;
pub use select::PortSet;
pub use sender::{CallError, Sender};

use crate::error::Error;
use ctl::Capacity;

fn with_capacity<T>(capacity: Capacity) -> Result<(Sender<T>, Receiver<T>), Error> {
    transport::local::channel(capacity)
}

/// The capacity `bounded(n)` means.
fn bounded_capacity(n: usize) -> Capacity {
    if n == 0 { Capacity::Zero } else { Capacity::Bounded(n as u64) }
}

/// A channel that holds at most `cap` unreceived messages; `bounded(0)` is
/// a rendezvous, where `send` returns only once a receiver takes the
/// message.
///
/// ```
/// let (tx, rx) = conduit::bounded::<u32>(2)?;
/// tx.send(1).unwrap();
/// tx.send(2).unwrap();
/// // Full: a third waits for room (here it gives up at once).
/// assert!(matches!(tx.try_send(3), Err(conduit::TrySendError::Full(3))));
/// assert_eq!(rx.recv().unwrap(), 1);
/// tx.try_send(3).unwrap();
/// # Ok::<(), conduit::Error>(())
/// ```
pub fn bounded<T>(cap: usize) -> Result<(Sender<T>, Receiver<T>), Error> {
    with_capacity(bounded_capacity(cap))
}

/// A channel without a limit: `send` never blocks, whatever the receiver
/// does. Messages the kernel cannot buffer yet wait in the sending
/// process's outbox (see [`Sender::flush`]).
///
/// ```
/// let (tx, rx) = conduit::unbounded::<String>()?;
/// for i in 0..1000 {
///     tx.send(format!("message {i}")).unwrap(); // never blocks
/// }
/// drop(tx);
/// assert_eq!(rx.iter().count(), 1000); // then Disconnected ends the loop
/// # Ok::<(), conduit::Error>(())
/// ```
pub fn unbounded<T>() -> Result<(Sender<T>, Receiver<T>), Error> {
    with_capacity(Capacity::Unbounded)
}

/// Both directions of an already-connected `AF_UNIX` `SOCK_SEQPACKET`
/// socket (e.g. one accepted from a listener) as a typed link: a
/// [`Sender<Tx>`] and a [`Receiver<Rx>`], both unbounded, both using the
/// same socket. Rights travel as usual; [`Receiver::recv_from`] names the
/// peer. The peer must speak the same wire format (another `connection`).
pub fn connection<Tx, Rx>(sock: std::os::fd::OwnedFd) -> Result<(Sender<Tx>, Receiver<Rx>), Error> {
    transport::seqpacket::connection(sock)
}

/// A send-once right: the reply half of a request/reply exchange
/// ([`Sender::call`]). It can be used once ([`ReplyTo::send`] consumes
/// it); dropping it unanswered tells the caller
/// [`CallError::NoReply`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ReplyTo<R> {
    tx: Sender<R>,
}

impl<R> ReplyTo<R> {
    pub(crate) fn new(tx: Sender<R>) -> Self {
        ReplyTo { tx }
    }
}

impl<R: Serialize> ReplyTo<R> {
    /// Answer the call. Fails with `Disconnected` if the caller gave up.
    pub fn send(self, reply: R) -> Result<(), SendError<R>> {
        self.tx.send(reply)
    }
}
