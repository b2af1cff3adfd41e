//! The shared-memory flavor of the channel API (B1, M3.2–M3.4).
//!
//! Same [`Sender`]/[`Receiver`], same capacity, timeout, disconnection and
//! rights semantics; messages travel through a [`Ring`] in a sealed memfd
//! instead of the socket. The channel's socket pair stays, for three jobs:
//! carrying descriptors (rights and out-of-line segments inside messages,
//! sent just before their ring record is committed), telling each side
//! that the other is gone (the process's monitor thread watches it, so a
//! futex sleeper learns of a `kill -9` at once), and passing the channel
//! on as a right.
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
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::seqpacket::Seqpacket;
use super::{RxLink, TxLink};
use crate::channel::ctl::{Capacity, Ctl};
use crate::channel::{Receiver, Sender};
use crate::error::Error;
use crate::shm::WaitStrategy;
use crate::shm::ring::Ring;
use crate::sys::monitor::{self, PeerGone, Watch};
use crate::sys::socket;

/// Default size of a channel's ring.
pub const DEFAULT_RING_BYTES: usize = 256 * 1024;

/// One process's view of a shared-memory channel end.
pub(crate) struct RingEnd {
    pub ring: Ring,
    pub strategy: WaitStrategy,
    /// Frames carry a checksum and are copied out before they are read
    /// (read from the ring once, when this end was made).
    pub checked: bool,
    /// The other side is gone (set by the monitor thread).
    pub gone: AtomicBool,
    /// Unbounded channels: this process's threads take turns with the
    /// outbox (bounded ones take turns by the producers' lock alone).
    pub local: Mutex<()>,
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
    /// Wrap `ring` and start watching `sock` for the peer's death.
    pub fn new(ring: Ring, sock: BorrowedFd<'_>) -> io::Result<Arc<RingEnd>> {
        let strategy = ring.strategy();
        let checked = ring.checked();
        let end = Arc::new(RingEnd {
            ring,
            strategy,
            checked,
            gone: AtomicBool::new(false),
            local: Mutex::new(()),
            watch: Mutex::new(None),
        });
        let weak: Weak<dyn PeerGone> = Arc::downgrade(&end) as Weak<dyn PeerGone>;
        let w = monitor::watch(sock, weak)?;
        *end.watch.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
        Ok(end)
    }

    /// Stop watching; call before the socket closes.
    pub fn unwatch(&self, sock: BorrowedFd<'_>) {
        if let Some(w) = self.watch.lock().unwrap_or_else(|p| p.into_inner()).take() {
            w.end(sock);
        }
    }

    pub fn is_gone(&self) -> bool {
        self.gone.load(SeqCst)
    }
}

/// Builds a shared-memory channel.
#[derive(Clone, Copy, Debug)]
pub struct Builder {
    capacity: Capacity,
    ring_bytes: usize,
    wait: WaitStrategy,
    checked: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            capacity: Capacity::Unbounded,
            ring_bytes: DEFAULT_RING_BYTES,
            wait: WaitStrategy::default(),
            checked: false,
        }
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

    /// Bytes of the ring (rounded up to a power of two, at least 4 KiB).
    /// Messages up to half of it travel through the ring; larger ones as
    /// their own sealed segment.
    pub fn ring_bytes(mut self, bytes: usize) -> Self {
        self.ring_bytes = bytes;
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
        let (send_end, recv_end) = socket::seqpacket_pair()?;
        let ctl = Ctl::create(self.capacity)?;
        let ctl2 = Ctl::adopt(socket::dup(ctl.fd())?, 0)?;
        let ring = Ring::new(self.ring_bytes)?;
        ring.set_strategy(self.wait);
        ring.set_checked(self.checked);
        let ring2 = Ring::adopt(crate::shm::Segment::adopt_with(socket::dup(ring.segment().fd())?, 0, true)?, 0)?;
        let tx_end = RingEnd::new(ring, send_end.as_fd())?;
        let rx_end = RingEnd::new(ring2, recv_end.as_fd())?;
        Ok((
            Sender::from_ring(TxLink::Seqpacket(Seqpacket::new(send_end)), ctl, tx_end),
            Receiver::from_ring(RxLink::Seqpacket(Seqpacket::new(recv_end)), ctl2, rx_end),
        ))
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
