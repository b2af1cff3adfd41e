//! A message queue in shared memory, the storage of a system mailbox: any
//! number of senders and receivers in any processes that were handed its
//! segment, typed messages (System V `mtype`) and receive-by-type, a
//! capacity counted in messages, and waiting as in [`super::ring`]
//! (spin, then sleep on a futex; no system call when nobody sleeps).
//!
//! It is a [`Ring`] with two additions: a consumers' lock (like the
//! producers' one: a thread-id word taken over from a dead owner), and records
//! taken out of turn ([`ring_core::take`](super::ring_core::take)), so that a receive by type
//! need not take the oldest message. A record is
//!
//! ```text
//! | mtype: i64 | sender pid: u32 | sender uid: u32 | data … |
//! ```
//!
//! A receiver killed while it holds the consumers' lock leaves at most
//! its count of messages behind; the next receiver recounts (under the
//! producers' lock). A message is either still queued or was taken whole:
//! nothing is lost or duplicated by a crash of a sender or a receiver
//! inside the queue's code.
//!
//! **Claims** make the hand-over to the application safe too:
//! [`Queue::claim`] copies a message out but leaves it queued, marked as
//! held by the calling process (a table of 128 entries in the
//! ring's header); other receivers skip it. [`Queue::ack`] then takes it
//! for good, [`Queue::give_back`] returns it, and if the holder dies first
//! the next receiver that looks finds its claim dead and takes the message
//! (at-least-once: a process killed after it handled a message but before
//! its `ack` sees that message handed to another receiver). A claimed
//! message still counts toward the capacity.
//!
//! Whoever owns the queue (the broker) closes it when the mailbox is
//! removed: everyone waiting returns [`QueueError::Closed`].

use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::SeqCst;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ring::RingLock;
use super::ring::{
    CLAIM_SLOTS, OFF_USER_BEHIND, OFF_USER_CLAIM_TABLE, OFF_USER_CLAIMS, OFF_USER_CLOSED, OFF_USER_FRONT,
    OFF_USER_KIND, OFF_USER_LIMIT, OFF_USER_RETURNED, Ring,
};
use super::ring_core::Record;
use super::{Segment, WaitStrategy};
use crate::error::{Error, WireError};
pub use crate::sys::Deadline;

/// Marks a ring as a queue (in the ring header's user words).
const QUEUE_KIND: u32 = 0x5155_4555;
/// Bytes before a message's data.
pub const MESSAGE_HEADER: usize = 16;

/// A message taken from a [`Queue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Its type (≥ 0).
    pub mtype: i64,
    /// The sender's pid and uid, as the sender's process wrote them.
    pub sender_pid: u32,
    /// See `sender_pid`.
    pub sender_uid: u32,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// Why a queue operation did not happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// Full, and the caller would not wait.
    #[error("the queue is full")]
    Full,
    /// Nothing (of the wanted type), and the caller would not wait.
    #[error("the queue is empty")]
    Empty,
    /// The time limit passed.
    #[error("timed out")]
    Timeout,
    /// The queue's owner closed it (the mailbox was removed).
    #[error("the queue was closed")]
    Closed,
    /// The message can never fit.
    #[error("a message of {size} bytes exceeds this queue's limit of {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The largest that fits.
        limit: usize,
    },
    /// A negative message type.
    #[error("message types are ≥ 0")]
    BadType,
    /// The shared memory breaks the queue's format (a hostile process).
    #[error("the queue's memory is corrupt: {0}")]
    Corrupt(&'static str),
    /// The `*_or_busy` operations only: another live process holds the
    /// queue's lock right now (perhaps stopped); try again later.
    #[error("the queue is locked by another process")]
    Busy,
    /// A claim that is no longer ours: it was given back (its holder was
    /// taken for dead), and the message may have gone to another receiver.
    #[error("the claim was given back; the message may have gone to another receiver")]
    ClaimLost,
}

/// A message held by [`Queue::claim`]: settle it with [`Queue::ack`] or
/// [`Queue::give_back`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimId {
    slot: usize,
    at: u64,
}

impl From<super::ring::Corrupt> for QueueError {
    fn from(c: super::ring::Corrupt) -> Self {
        QueueError::Corrupt(c.0)
    }
}

/// Whether an operation waits for the queue's locks.
#[derive(Clone, Copy)]
enum Locking {
    Deadline,
    /// Fail with `Busy` if a live process holds one.
    OrBusy,
}

/// A message queue in a sealed shared-memory segment. Pass it to another
/// process inside a message (it travels as its segment).
#[derive(Debug)]
pub struct Queue {
    ring: Ring,
    limit: u64,
}

impl Queue {
    /// A queue of at most `capacity` messages (≥ 1) in a data area of
    /// `bytes` (rounded up to a power of two, see [`Ring::new`]). Its
    /// pages are taken as messages first reach them: an idle queue holds
    /// about one page of memory, whatever its size.
    pub fn new(capacity: u32, bytes: usize) -> Result<Queue, Error> {
        let ring = Ring::new_lazy(bytes)?;
        let limit = u64::from(capacity.max(1));
        let m = ring.segment().mapping();
        m.atomic_u64(OFF_USER_LIMIT).store(limit, SeqCst);
        m.atomic_u32(OFF_USER_KIND).store(QUEUE_KIND, SeqCst);
        Ok(Queue { ring, limit })
    }

    fn adopt(seg: Segment) -> Result<Queue, WireError> {
        let ring = Ring::adopt(seg, 0)?;
        let m = ring.segment().mapping();
        let limit = m.atomic_u64(OFF_USER_LIMIT).load(SeqCst);
        if m.atomic_u32(OFF_USER_KIND).load(SeqCst) != QUEUE_KIND || limit == 0 {
            return Err(WireError::BadRight { index: 0, why: "segment is not a message queue" });
        }
        Ok(Queue { ring, limit })
    }

    /// The shared memory behind the queue: what every process it was
    /// handed to maps, and may write anything into (the fuzz target
    /// `queue_records` plays such a process).
    pub fn segment(&self) -> &Segment {
        self.ring.segment()
    }

    /// Another handle on the same queue (to pass on while keeping this one).
    pub fn try_clone(&self) -> Result<Queue, Error> {
        let ring = Ring::adopt(self.ring.segment().try_clone()?, 0)?;
        Ok(Queue { ring, limit: self.limit })
    }

    fn closed(&self) -> &AtomicU32 {
        self.ring.word(OFF_USER_CLOSED)
    }

    /// How many messages it holds at most.
    pub fn capacity(&self) -> u64 {
        self.limit
    }

    /// Messages queued now.
    pub fn len(&self) -> u64 {
        self.ring.messages()
    }

    /// Messages ever sent into it (a count in its header, which its
    /// writers can change: for a view, not an audit).
    pub fn sent(&self) -> u64 {
        self.ring.sent()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the data area in use.
    pub fn bytes_used(&self) -> usize {
        self.ring.used()
    }

    /// Size of the data area.
    pub fn bytes(&self) -> usize {
        self.ring.capacity()
    }

    /// Largest message data.
    pub fn max_message(&self) -> usize {
        self.ring.max_message() - MESSAGE_HEADER
    }

    /// How waiters wait (default adaptive).
    pub fn set_strategy(&self, w: WaitStrategy) {
        self.ring.set_strategy(w)
    }

    /// Close: every waiter and every later call returns
    /// [`QueueError::Closed`]. Queued messages are dropped with the memory.
    pub fn close(&self) {
        self.closed().store(1, SeqCst);
        self.ring.wake_all();
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.closed().load(SeqCst) != 0
    }

    /// Make this queue the **front** of an unbounded mailbox: when it is
    /// full, senders hand their messages to its owner (the broker), who
    /// keeps them behind the queue, in order, and moves them in as room
    /// appears. Set by the owner before the queue is handed out.
    pub fn make_front(&self) {
        self.ring.word(OFF_USER_FRONT).store(1, SeqCst);
    }

    /// Whether this queue is the front of an unbounded mailbox
    /// ([`make_front`](Self::make_front)).
    pub fn is_front(&self) -> bool {
        self.ring.word(OFF_USER_FRONT).load(SeqCst) == 1
    }

    /// Tell the queue's users how many messages its owner holds behind it
    /// (the owner's count; 0 once all are in the queue). While it is not
    /// 0, senders give their messages to the owner too, so that none
    /// overtakes a message of its own sender that waits behind the queue;
    /// a receiver that finds nothing it wants in the queue asks the owner.
    pub fn set_behind(&self, n: usize) {
        self.ring.word(OFF_USER_BEHIND).store(u32::try_from(n).unwrap_or(u32::MAX), SeqCst);
    }

    /// Messages the owner holds behind the queue, as the owner last said.
    /// (Any process that may write the queue may write this word: a hint,
    /// never a size anything is read or allocated by.)
    pub fn behind(&self) -> u32 {
        self.ring.word(OFF_USER_BEHIND).load(SeqCst)
    }

    /// Like [`send`](Self::send) with [`Deadline::Never`], but without waiting
    /// for the lock either: [`QueueError::Busy`] if another live process
    /// holds it. For a server that must never block on its clients (the
    /// broker: a client stopped while holding the lock stalls only itself).
    pub fn send_or_busy(&self, mtype: i64, data: &[u8], sender: (u32, u32)) -> Result<(), QueueError> {
        self.send_with(mtype, data, sender, Deadline::Never, Locking::OrBusy)
    }

    /// Queue a message of type `mtype` (≥ 0), waiting for room as `wait`
    /// allows. `sender` is (pid, uid) as the receiver will see it.
    pub fn send(&self, mtype: i64, data: &[u8], sender: (u32, u32), wait: Deadline) -> Result<(), QueueError> {
        self.send_with(mtype, data, sender, wait, Locking::Deadline)
    }

    fn producers(&self, locking: Locking) -> Result<RingLock<'_>, QueueError> {
        match locking {
            Locking::Deadline => Ok(self.ring.lock_producers(self.closed())),
            Locking::OrBusy => self.ring.try_lock_producers().ok_or(QueueError::Busy),
        }
    }

    fn consumers(&self, locking: Locking) -> Result<RingLock<'_>, QueueError> {
        match locking {
            Locking::Deadline => Ok(self.ring.lock_consumers(self.closed())),
            Locking::OrBusy => self.ring.try_lock_consumers().ok_or(QueueError::Busy),
        }
    }

    fn send_with(
        &self,
        mtype: i64,
        data: &[u8],
        sender: (u32, u32),
        wait: Deadline,
        locking: Locking,
    ) -> Result<(), QueueError> {
        if mtype < 0 {
            return Err(QueueError::BadType);
        }
        if data.len() > self.max_message() {
            return Err(QueueError::TooLarge { size: data.len(), limit: self.max_message() });
        }
        let len = MESSAGE_HEADER + data.len();
        let strategy = self.ring.strategy();
        loop {
            let credit = {
                let _lock = self.producers(locking)?;
                if self.is_closed() {
                    return Err(QueueError::Closed);
                }
                let credit = self.ring.below(self.limit);
                if credit && let Ok(Some(mut r)) = self.ring.try_reserve(len) {
                    let out = self.ring.reserved_mut(&mut r);
                    out[..8].copy_from_slice(&mtype.to_le_bytes());
                    out[8..12].copy_from_slice(&sender.0.to_le_bytes());
                    out[12..16].copy_from_slice(&sender.1.to_le_bytes());
                    out[MESSAGE_HEADER..].copy_from_slice(data);
                    self.ring.commit(r);
                    return Ok(());
                }
                credit
            };
            // Wait without the lock, so that other senders with other
            // deadlines are not held up behind us.
            let ready = if credit {
                self.ring
                    .space_bell()
                    .wait(strategy, wait, self.closed(), || matches!(self.ring.try_reserve(len), Ok(Some(_))))
            } else {
                self.ring.credit_bell().wait(strategy, wait, self.closed(), || self.ring.below(self.limit))
            };
            if self.is_closed() {
                return Err(QueueError::Closed);
            }
            if !ready {
                return Err(if wait == Deadline::Never { QueueError::Full } else { QueueError::Timeout });
            }
        }
    }

    /// Take a message by the System V `msgrcv` rule: `select` 0 = the
    /// oldest, > 0 = the oldest of that type, < 0 = the oldest of the
    /// lowest type ≤ |select|; waiting as `wait` allows.
    pub fn recv(&self, select: i64, wait: Deadline) -> Result<QueuedMessage, QueueError> {
        let strategy = self.ring.strategy();
        loop {
            if self.is_closed() {
                return Err(QueueError::Closed);
            }
            // A message that arrives (or is given back) after this count
            // was read wakes us.
            let seen = self.generation();
            if let Some(m) = self.try_take(select, false, Locking::Deadline)? {
                return Ok(m.0);
            }
            let ready = self.ring.data_bell().wait(strategy, wait, self.closed(), || {
                if select == 0 { self.ring.messages() > self.claims_hint() } else { self.generation() != seen }
            });
            if !ready && !self.is_closed() {
                // One last look: a message may have come at the deadline.
                if let Some(m) = self.try_take(select, false, Locking::Deadline)? {
                    return Ok(m.0);
                }
                return Err(if wait == Deadline::Never { QueueError::Empty } else { QueueError::Timeout });
            }
        }
    }

    /// Like [`recv`](Self::recv), but the message stays queued, held by
    /// this process, until [`ack`](Self::ack) takes it or
    /// [`give_back`](Self::give_back) returns it; if this process dies
    /// first, it goes to the next receiver. With all claim slots in use,
    /// waits as for an empty queue.
    pub fn claim(&self, select: i64, wait: Deadline) -> Result<(QueuedMessage, ClaimId), QueueError> {
        let strategy = self.ring.strategy();
        loop {
            if self.is_closed() {
                return Err(QueueError::Closed);
            }
            let seen = self.generation();
            if let Some((m, Some(id))) = self.try_take(select, true, Locking::Deadline)? {
                return Ok((m, id));
            }
            // (With every claim slot taken, wait for a change rather than
            // look again at once.)
            let slots_full = self.claims_hint() >= CLAIM_SLOTS as u64;
            let ready = self.ring.data_bell().wait(strategy, wait, self.closed(), || {
                if select == 0 && !slots_full {
                    self.ring.messages() > self.claims_hint()
                } else {
                    self.generation() != seen
                }
            });
            if !ready && !self.is_closed() {
                if let Some((m, Some(id))) = self.try_take(select, true, Locking::Deadline)? {
                    return Ok((m, id));
                }
                return Err(if wait == Deadline::Never { QueueError::Empty } else { QueueError::Timeout });
            }
        }
    }

    /// Like [`claim`](Self::claim) with [`Deadline::Never`], without waiting
    /// for the lock either ([`QueueError::Busy`]; see
    /// [`send_or_busy`](Self::send_or_busy)).
    pub fn claim_or_busy(&self, select: i64) -> Result<(QueuedMessage, ClaimId), QueueError> {
        if self.is_closed() {
            return Err(QueueError::Closed);
        }
        match self.try_take(select, true, Locking::OrBusy)? {
            Some((m, Some(id))) => Ok((m, id)),
            _ => Err(QueueError::Empty),
        }
    }

    /// Take a claimed message for good.
    pub fn ack(&self, id: ClaimId) -> Result<(), QueueError> {
        self.settle(id, true, Locking::Deadline)
    }

    /// Return a claimed message to the queue (receivers waiting for it
    /// are woken).
    pub fn give_back(&self, id: ClaimId) -> Result<(), QueueError> {
        self.settle(id, false, Locking::Deadline)
    }

    /// [`ack`](Self::ack) (`ack` true) or [`give_back`](Self::give_back)
    /// without waiting for the lock ([`QueueError::Busy`]).
    pub fn settle_or_busy(&self, id: ClaimId, ack: bool) -> Result<(), QueueError> {
        self.settle(id, ack, Locking::OrBusy)
    }

    fn settle(&self, id: ClaimId, ack: bool, locking: Locking) -> Result<(), QueueError> {
        if !ack {
            {
                let _lock = self.consumers(locking)?;
                if !self.owns(id) {
                    return Err(QueueError::ClaimLost);
                }
                self.clear_claim(id.slot);
            }
            self.returned();
            return Ok(());
        }
        let _lock = self.consumers(locking)?;
        if self.is_closed() {
            return Err(QueueError::Closed);
        }
        if !self.owns(id) {
            return Err(QueueError::ClaimLost);
        }
        let mut cur = self.ring.peek()?;
        while let Some(r) = cur {
            if r.position() == id.at {
                self.clear_claim(id.slot);
                self.ring.take(r);
                return Ok(());
            }
            cur = self.ring.next_after(&r)?;
        }
        self.clear_claim(id.slot);
        Err(QueueError::Corrupt("a claimed message is not in the queue"))
    }

    /// Messages committed plus messages given back: changes whenever a
    /// message may have become available.
    fn generation(&self) -> u64 {
        self.ring.sent().wrapping_add(self.ring.segment().mapping().atomic_u64(OFF_USER_RETURNED).load(SeqCst))
    }

    fn returned(&self) {
        self.ring.segment().mapping().atomic_u64(OFF_USER_RETURNED).fetch_add(1, SeqCst);
        self.ring.data_bell().ring_always();
    }

    fn claims_hint(&self) -> u64 {
        u64::from(self.ring.word(OFF_USER_CLAIMS).load(SeqCst))
    }

    fn claim_slot(&self, slot: usize) -> (&AtomicU32, &std::sync::atomic::AtomicU64) {
        let m = self.ring.segment().mapping();
        let at = OFF_USER_CLAIM_TABLE + slot * 16;
        (m.atomic_u32(at), m.atomic_u64(at + 8))
    }

    fn owns(&self, id: ClaimId) -> bool {
        let (owner, at) = self.claim_slot(id.slot);
        owner.load(SeqCst) == crate::sys::process::getpid() && at.load(SeqCst) == id.at
    }

    /// Holding the consumers' lock.
    fn clear_claim(&self, slot: usize) {
        self.claim_slot(slot).0.store(0, SeqCst);
        let n = self.ring.word(OFF_USER_CLAIMS);
        n.store(n.load(SeqCst).saturating_sub(1), SeqCst);
    }

    /// Holding the consumers' lock: the positions of live claims, after
    /// freeing those whose holder died (their messages are receivable
    /// again). Empty at once when nobody holds a claim.
    fn live_claims(&self) -> Vec<u64> {
        if self.claims_hint() == 0 {
            return Vec::new();
        }
        let mut live = Vec::new();
        let mut freed = false;
        for slot in 0..CLAIM_SLOTS {
            let (owner, at) = self.claim_slot(slot);
            let pid = owner.load(SeqCst);
            if pid == 0 {
                continue;
            }
            if crate::sys::process::alive(pid) {
                live.push(at.load(SeqCst));
            } else {
                owner.store(0, SeqCst);
                freed = true;
            }
        }
        // The hint is recounted here, so a holder that died half-way
        // through claiming leaves no lasting error in it.
        self.ring.word(OFF_USER_CLAIMS).store(live.len() as u32, SeqCst);
        if freed {
            self.ring.segment().mapping().atomic_u64(OFF_USER_RETURNED).fetch_add(1, SeqCst);
        }
        live
    }

    /// Holding the consumers' lock: claim `at` for this process.
    fn add_claim(&self, at: u64) -> Option<ClaimId> {
        for slot in 0..CLAIM_SLOTS {
            let (owner, pos) = self.claim_slot(slot);
            if owner.load(SeqCst) == 0 {
                pos.store(at, SeqCst);
                owner.store(crate::sys::process::getpid(), SeqCst);
                let n = self.ring.word(OFF_USER_CLAIMS);
                n.store(n.load(SeqCst) + 1, SeqCst);
                return Some(ClaimId { slot, at });
            }
        }
        None
    }

    /// The first wanted message not claimed by anyone alive: taken, or
    /// (`claim`) claimed — `None` beside it if every slot is in use, and
    /// then nothing is taken.
    fn try_take(
        &self,
        select: i64,
        claim: bool,
        locking: Locking,
    ) -> Result<Option<(QueuedMessage, Option<ClaimId>)>, QueueError> {
        let lock = self.consumers(locking)?;
        if self.is_closed() {
            return Err(QueueError::Closed);
        }
        if lock.inherited {
            // Rare (a receiver died holding the lock): count what is queued
            // under the producers' lock. In `OrBusy` mode, if a live
            // process holds it (a stopped or hostile one, maybe for good),
            // do not wait: pass the consumers' lock on as inherited, so the
            // next receiver does the recount.
            match self.recount(locking) {
                Err(QueueError::Busy) => {
                    lock.pass_on_inherited();
                    return Err(QueueError::Busy);
                }
                other => other?,
            }
        }
        let claimed = self.live_claims();
        let mut best: Option<(Record, i64)> = None;
        let mut cur = self.ring.peek()?;
        while let Some(r) = cur {
            if claimed.contains(&r.position()) {
                cur = self.ring.next_after(&r)?;
                continue;
            }
            let mtype = parse_message(self.ring.payload(&r))?.mtype;
            let next = self.ring.next_after(&r)?;
            let wanted = match select {
                0 => true,
                t if t > 0 => mtype == t,
                t => {
                    mtype >= 0 && mtype.unsigned_abs() <= t.unsigned_abs() && best.as_ref().is_none_or(|b| mtype < b.1)
                }
            };
            if wanted {
                best = Some((r, mtype));
                if select >= 0 || mtype == 0 {
                    break;
                }
            }
            cur = next;
        }
        let Some((r, mtype)) = best else { return Ok(None) };
        // Parsed again (a peer may have changed the record since); the type
        // stays the one the selection saw.
        let view = parse_message(self.ring.payload(&r))?;
        let msg =
            QueuedMessage { mtype, sender_pid: view.sender_pid, sender_uid: view.sender_uid, data: view.data.to_vec() };
        if claim {
            return match self.add_claim(r.position()) {
                Some(id) => Ok(Some((msg, Some(id)))),
                None => Ok(None),
            };
        }
        self.ring.take(r);
        Ok(Some((msg, None)))
    }

    /// After a receiver died holding the consumers' lock: count what is
    /// really queued, with the producers held off.
    fn recount(&self, locking: Locking) -> Result<(), QueueError> {
        let _producers = self.producers(locking)?;
        let mut live = 0;
        let mut cur = self.ring.peek()?;
        while let Some(r) = cur {
            live += 1;
            cur = self.ring.next_after(&r)?;
        }
        self.ring.recount(live);
        Ok(())
    }
}

/// A queue record as its bytes describe it.
#[derive(Debug, PartialEq, Eq)]
pub struct MessageView<'a> {
    /// The message type.
    pub mtype: i64,
    /// The sender's pid, as the sender wrote it.
    pub sender_pid: u32,
    /// The sender's uid, as the sender wrote it.
    pub sender_uid: u32,
    /// The message's bytes.
    pub data: &'a [u8],
}

/// Parse a queue record (`mtype` i64, pid u32, uid u32, then the data, all
/// little-endian): pure, no system call, no allocation; a record too short
/// for its header is [`QueueError::Corrupt`]. Any bytes give a view or an
/// error, never a panic.
pub fn parse_message(record: &[u8]) -> Result<MessageView<'_>, QueueError> {
    let (head, data) = record
        .split_first_chunk::<MESSAGE_HEADER>()
        .ok_or(QueueError::Corrupt("a record shorter than a message header"))?;
    let word = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().expect("4 bytes"));
    Ok(MessageView {
        mtype: i64::from_le_bytes(head[..8].try_into().expect("8 bytes")),
        sender_pid: word(8),
        sender_uid: word(12),
        data,
    })
}

impl Serialize for Queue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.ring.segment().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Queue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let seg = Segment::deserialize(d)?;
        Queue::adopt(seg).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::dead_tid;
    use std::sync::atomic::Ordering::SeqCst;

    #[test]
    fn types_are_selected_by_the_system_v_rules_and_taken_out_of_turn() {
        let q = Queue::new(8, 4096).unwrap();
        for t in [5, 3, 9, 3, 1] {
            q.send(t, &[t as u8], (1, 2), Deadline::Never).unwrap();
        }
        assert_eq!(q.recv(3, Deadline::Never).unwrap().mtype, 3);
        assert_eq!(q.recv(-4, Deadline::Never).unwrap().mtype, 1, "lowest type ≤ 4");
        assert_eq!(q.recv(0, Deadline::Never).unwrap().mtype, 5, "the oldest left");
        assert_eq!(q.recv(7, Deadline::Never), Err(QueueError::Empty));
        assert_eq!(q.len(), 2);
        assert_eq!(q.recv(0, Deadline::Never).unwrap().mtype, 9);
        assert_eq!(q.recv(0, Deadline::Never).unwrap().mtype, 3);
        assert_eq!(q.bytes_used(), 0, "records taken out of turn give their room back");
    }

    #[test]
    fn a_receiver_that_died_holding_the_lock_is_recounted_after() {
        let q = Queue::new(4, 4096).unwrap();
        for i in 0..4 {
            q.send(1, &[i], (1, 2), Deadline::Never).unwrap();
        }
        assert_eq!(q.send(1, b"x", (1, 2), Deadline::Never), Err(QueueError::Full));
        // A receiver took the oldest (head moved) and was killed before it
        // counted it, holding the consumers' lock.
        let r = q.ring.peek().unwrap().unwrap();
        super::super::ring_core::release(&q.ring, r);
        q.ring.word(super::super::ring::OFF_CONSUMER_LOCK).store(dead_tid(), SeqCst);
        assert_eq!(q.len(), 4, "the count is one too many");
        // The next receiver takes the lock over and recounts.
        assert_eq!(q.recv(0, Deadline::Never).unwrap().data, [1]);
        assert_eq!(q.len(), 2);
        for _ in 0..2 {
            q.send(1, b"y", (1, 2), Deadline::Never).unwrap();
        }
        assert_eq!(q.send(1, b"z", (1, 2), Deadline::Never), Err(QueueError::Full), "exactly the capacity again");
    }

    /// The broker never waits: a receiver that takes over a dead
    /// receiver's lock while a live process holds the producers' lock says
    /// `Busy` and passes the recount on; the next one, once the producers'
    /// lock is free, does it.
    #[test]
    fn a_recount_that_would_wait_is_passed_on_in_never_wait_mode() {
        let q = Queue::new(4, 4096).unwrap();
        for i in 0..4 {
            q.send(1, &[i], (1, 2), Deadline::Never).unwrap();
        }
        let r = q.ring.peek().unwrap().unwrap();
        super::super::ring_core::release(&q.ring, r);
        q.ring.word(super::super::ring::OFF_CONSUMER_LOCK).store(dead_tid(), SeqCst);
        // A live process (init) holds the producers' lock.
        q.ring.word(super::super::ring::OFF_LOCK).store(1, SeqCst);
        assert_eq!(q.claim_or_busy(0).map(|(m, _)| m.data), Err(QueueError::Busy));
        assert_eq!(q.claim_or_busy(0).map(|(m, _)| m.data), Err(QueueError::Busy), "still owed, still Busy");
        q.ring.word(super::super::ring::OFF_LOCK).store(0, SeqCst);
        let (m, id) = q.claim_or_busy(0).unwrap();
        assert_eq!(m.data, [1]);
        q.settle_or_busy(id, true).unwrap();
        assert_eq!(q.len(), 2, "recounted: the released record is not counted");
    }

    #[test]
    fn claims_hold_a_message_until_acked_given_back_or_their_holder_dies() {
        let q = Queue::new(4, 4096).unwrap();
        for i in 0..3u8 {
            q.send(1, &[i], (1, 2), Deadline::Never).unwrap();
        }
        let (m0, c0) = q.claim(0, Deadline::Never).unwrap();
        assert_eq!(m0.data, [0]);
        // Another receiver skips the claimed message.
        let (m1, c1) = q.claim(0, Deadline::Never).unwrap();
        assert_eq!(m1.data, [1]);
        assert_eq!(q.len(), 3, "claimed messages are still queued");
        q.give_back(c0).unwrap();
        assert_eq!(q.give_back(c0), Err(QueueError::ClaimLost), "settled once only");
        assert_eq!(q.recv(0, Deadline::Never).unwrap().data, [0], "given back, received again");
        q.ack(c1).unwrap();
        assert_eq!(q.len(), 1);
        // A holder that died: its claim is freed by the next receiver.
        let (m2, c2) = q.claim(0, Deadline::Never).unwrap();
        assert_eq!(m2.data, [2]);
        assert_eq!(q.recv(0, Deadline::Never), Err(QueueError::Empty), "held by a live process");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        q.claim_slot(c2.slot).0.store(dead, SeqCst);
        assert_eq!(q.recv(0, Deadline::Never).unwrap().data, [2], "the dead holder's message goes to the next");
        assert_eq!(q.ack(c2), Err(QueueError::ClaimLost));
        assert!(q.is_empty());
        assert_eq!(q.bytes_used(), 0);
    }

    #[test]
    fn a_claimed_message_is_not_received_and_its_give_back_wakes_a_waiter() {
        let q = Queue::new(4, 4096).unwrap();
        q.send(1, b"a", (1, 2), Deadline::Never).unwrap();
        let (_, c) = q.claim(0, Deadline::Never).unwrap();
        let t = std::time::Instant::now();
        let until = Deadline::Until(t + std::time::Duration::from_millis(50));
        assert_eq!(q.recv(0, until), Err(QueueError::Timeout));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| q.recv(0, Deadline::Forever));
            q.give_back(c).unwrap();
            assert_eq!(waiter.join().unwrap().unwrap().data, b"a", "a give-back wakes the waiter");
        });
    }
}
