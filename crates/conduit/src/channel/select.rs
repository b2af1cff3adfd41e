//! Port sets: wait on many receivers at once.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use super::Receiver;
use super::transport::RxLink;
use crate::sys::{Deadline, barrier, socket};

/// What a port set needs of a member, whatever its message type.
trait Member {
    fn link(&self) -> &RxLink;
    fn begin(&self);
    fn retract(&self) -> bool;
}

impl<T> Member for Receiver<T> {
    fn link(&self) -> &RxLink {
        Receiver::link(self)
    }
    fn begin(&self) {
        Receiver::begin(self)
    }
    fn retract(&self) -> bool {
        Receiver::retract(self)
    }
}

/// A set of receivers (of any message types) to wait on together, like a
/// Mach port set or crossbeam's `Select::ready`.
///
/// `ready*` returns the index (as returned by [`add`](Self::add)) of a
/// receiver on which `try_recv` will not find the channel empty: a message
/// is there, or the channel is disconnected. When several are ready, the
/// choice rotates so that none starves.
///
/// ```
/// use conduit::PortSet;
/// let (tx_a, rx_a) = conduit::unbounded::<u32>()?;
/// let (_tx_b, rx_b) = conduit::unbounded::<String>()?;
/// let mut set = PortSet::new();
/// let a = set.add(&rx_a);
/// let _b = set.add(&rx_b);
/// tx_a.send(7).unwrap();
/// assert_eq!(set.ready(), a);
/// assert_eq!(rx_a.try_recv().unwrap(), 7);
/// # Ok::<(), conduit::Error>(())
/// ```
#[derive(Default)]
pub struct PortSet<'a> {
    members: Vec<&'a dyn Member>,
    next: usize,
}

impl<'a> PortSet<'a> {
    /// An empty set.
    pub fn new() -> Self {
        PortSet { members: Vec::new(), next: 0 }
    }

    /// Add a receiver; returns its index in the set.
    pub fn add<T>(&mut self, rx: &'a Receiver<T>) -> usize {
        self.members.push(rx);
        self.members.len() - 1
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True if the set has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Wait until a member is ready.
    pub fn ready(&mut self) -> usize {
        loop {
            if let Some(i) = self.wait(Deadline::Forever) {
                return i;
            }
        }
    }

    /// A ready member, if one is ready now.
    pub fn try_ready(&mut self) -> Option<usize> {
        self.wait(Deadline::Never)
    }

    /// Wait at most `timeout` for a ready member.
    pub fn ready_timeout(&mut self, timeout: Duration) -> Option<usize> {
        self.wait(Deadline::Until(Instant::now() + timeout))
    }

    /// Wait until `deadline` at most for a ready member.
    pub fn ready_deadline(&mut self, deadline: Instant) -> Option<usize> {
        self.wait(Deadline::Until(deadline))
    }

    fn wait(&mut self, wait: Deadline) -> Option<usize> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        // Rendezvous members tell their senders we are listening;
        // shared-memory members ask their producers for a doorbell.
        for m in &self.members {
            m.begin();
            m.link().arm(true);
        }
        let start = self.next;
        let order = || (0..n).map(|k| (start + k) % n);
        let fds: Vec<BorrowedFd<'_>> = self.members.iter().map(|m| m.link().ready_fd()).collect();
        let mut chosen;
        loop {
            // What the descriptors do not show: data in a ring, a frame
            // already read from a pipe.
            chosen = order().find(|&i| self.members[i].link().ready_now());
            if chosen.is_some() {
                break;
            }
            // Without working membarrier here, a producer's doorbell may
            // be missed (see `sys::barrier`): look again every nap.
            let nap_needed = self.members.iter().any(|m| m.link().needs_nap());
            let nap = if nap_needed && !barrier::trusted() { barrier::nap(wait) } else { wait };
            // poll fails only on ENOMEM; treat that like a timeout.
            let ready = socket::poll(&fds, nap).unwrap_or_default();
            chosen = order().find(|&i| {
                let (link, r) = (self.members[i].link(), ready.get(i).copied().unwrap_or_default());
                // A doorbell on a shared-memory member's socket is only a
                // hint: what counts is its ring.
                if link.needs_nap() { link.ready_now() || r.hangup } else { r.readable || r.hangup }
            });
            if chosen.is_some() || wait == Deadline::Never || wait.expired() {
                break;
            }
            // Only doorbells of shared-memory members woke us: drop them.
            for m in &self.members {
                m.link().arm(false);
                m.link().arm(true);
            }
        }
        for m in &self.members {
            m.link().arm(false);
        }
        // Take back the tokens of the others; a token a sender already
        // took means its message is coming, so that member is ready too.
        for (i, m) in self.members.iter().enumerate() {
            if Some(i) != chosen && !m.retract() && chosen.is_none() && !m.link().credits_in_band() {
                chosen = Some(i);
            }
        }
        if let Some(i) = chosen {
            self.next = (i + 1) % n;
        }
        chosen
    }
}
