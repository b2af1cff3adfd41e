//! The bounded buffer across processes (M3.2): a byte ring in a sealed
//! memfd segment, for variable-size messages, one consumer and any number
//! of producers, using its whole capacity.
//!
//! ```text
//! segment: | 4 KiB header                                   | data: capacity bytes (2^k) |
//! header:  magic·version·capacity·user words | tail·sent·journal | head·taken |
//!          producers' lock | data waiters·seq | space waiters·seq |
//!          credit waiters·seq | doorbell | consumers' lock | closed (user)
//!          (each in a 128-byte block of its own: adjacent-line prefetchers
//!          pair 64-byte lines, so neighbours would share falsely; the user
//!          words are a mailbox queue's, see `queue.rs`)
//! ```
//!
//! The index protocol is in `ring_core.rs` (model-checked with loom).
//! Producers take turns through a lock word in the header holding the
//! owner's thread id; a producer that finds the owner dead (`kill -9` while
//! writing) takes the lock over, and the dead producer's uncommitted
//! record simply never appears — no corrupt message is ever delivered.
//!
//! Waiting ([`WaitStrategy`]): spin for a budget, then sleep on a futex
//! word, counting sleepers so that a waker makes no system call when
//! nobody sleeps — and no fence either: a waker's store and its look at the
//! sleepers' count are ordered by an asymmetric fence (`sys::barrier`), the
//! heavy half of which a sleeper pays once before it sleeps.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ring_core::{self, Counter, RingMemory};
pub use super::ring_core::{Corrupt, Record, Reservation, TooLarge};
use super::{Segment, WaitStrategy};
use crate::error::{Error, WireError};
use crate::sys::{self, Deadline, barrier, futex};

const MAGIC: u32 = 0xC0D1_4149;
/// 2: the record header word is the commit (it carries a lap tag).
const VERSION: u32 = 2;
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_CAPACITY: usize = 8;
const OFF_WAIT_MODE: usize = 16;
const OFF_WAIT_BUDGET_NS: usize = 24;
/// 1: frames in this ring carry a checksum (see `channel::shm::Builder::checked`).
const OFF_CHECKED: usize = 48;
const OFF_TAIL: usize = 128;
/// Messages ever committed (next to `tail`: written by producers only).
const OFF_SENT: usize = 136;
/// The commit in progress: `tail` and `sent` as they will be after it (a
/// redo record for a producer that takes the lock over from a dead one).
const OFF_JOURNAL_TAIL: usize = 144;
const OFF_JOURNAL_SENT: usize = 152;
const OFF_HEAD: usize = 256;
/// Messages ever released (next to `head`: written by the consumer only).
const OFF_TAKEN: usize = 264;
pub(crate) const OFF_LOCK: usize = 384;
const OFF_LOCK_WAITERS: usize = 388;
const OFF_DATA_WAITERS: usize = 512;
const OFF_DATA_SEQ: usize = 516;
const OFF_SPACE_WAITERS: usize = 640;
const OFF_SPACE_SEQ: usize = 644;
const OFF_CREDIT_WAITERS: usize = 768;
const OFF_CREDIT_SEQ: usize = 772;
const OFF_DOORBELL: usize = 896;
/// The consumers' lock (rings with several consumers: mailbox queues).
pub(crate) const OFF_CONSUMER_LOCK: usize = 1024;
const OFF_CONSUMER_LOCK_WAITERS: usize = 1028;
/// Words for the ring's user (a mailbox queue): kind, limit, closed flag.
pub(crate) const OFF_USER_KIND: usize = 32;
pub(crate) const OFF_USER_LIMIT: usize = 40;
pub(crate) const OFF_USER_CLOSED: usize = 1152;
/// Messages given back by receivers (a mailbox queue's claims, see
/// `queue`): a change wakes receivers waiting for a type.
pub(crate) const OFF_USER_RETURNED: usize = 1160;
/// Claims held now (a hint: the table below is the truth).
pub(crate) const OFF_USER_CLAIMS: usize = 1168;
/// A mailbox queue that is the front of an unbounded mailbox: 1.
pub(crate) const OFF_USER_FRONT: usize = 1176;
/// Messages the queue's owner holds behind it (a front's overflow).
pub(crate) const OFF_USER_BEHIND: usize = 1180;
/// The claims table: `CLAIM_SLOTS` entries of (owner pid: u32, pad,
/// record position: u64).
pub(crate) const OFF_USER_CLAIM_TABLE: usize = 2048;
/// Entries in the claims table.
pub(crate) const CLAIM_SLOTS: usize = 128;
/// A channel's control block, when it lives in its ring's header (a
/// shared-memory channel: one memfd for both): 384 bytes from here. The
/// claims table of a mailbox queue uses the same words (a queue has no
/// control block).
pub(crate) const OFF_CTL: usize = 2048;
/// Where the data area starts.
pub const DATA_OFFSET: usize = 4096;
/// Smallest data area.
pub const MIN_CAPACITY: usize = 4096;
/// Largest data area.
pub const MAX_CAPACITY: usize = 1 << 32;

impl Counter for AtomicU64 {
    #[inline]
    fn load(&self, order: std::sync::atomic::Ordering) -> u64 {
        AtomicU64::load(self, order)
    }
    #[inline]
    fn store(&self, value: u64, order: std::sync::atomic::Ordering) {
        AtomicU64::store(self, value, order)
    }
}

/// Whether the other side is gone (a peer died, a queue was closed): a
/// waiter stops waiting.
pub(crate) trait Gone {
    fn is_gone(&self) -> bool;
}

impl Gone for AtomicBool {
    #[inline]
    fn is_gone(&self) -> bool {
        self.load(SeqCst)
    }
}

impl Gone for AtomicU32 {
    #[inline]
    fn is_gone(&self) -> bool {
        self.load(SeqCst) != 0
    }
}

/// A futex word and a count of its sleepers.
pub(crate) struct Bell<'a> {
    seq: &'a AtomicU32,
    waiters: &'a AtomicU32,
    /// This handle's learned spin budget (ns; see [`Bell::wait`]).
    learned: &'a AtomicU64,
}

/// An adaptive waiter spins at most this many times its budget.
const SPIN_STRETCH: u32 = 8;

thread_local! {
    /// This thread sleeps at once whatever the ring's strategy (see
    /// [`never_spin_on_this_thread`]).
    static NEVER_SPIN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// From now on, every wait of this thread on a ring sleeps at once instead
/// of spinning first: for a helper thread that shares its process's cores
/// with the threads it serves (the RPC pipeline's reader), where a spin
/// only keeps them from running.
pub(crate) fn never_spin_on_this_thread() {
    NEVER_SPIN.with(|c| c.set(true));
}

impl Bell<'_> {
    /// Wake every sleeper, if there is any, after the caller's store that
    /// made them ready. Cheap when nobody sleeps: no locked instruction, no
    /// fence (the fast side of an asymmetric fence, see `sys::barrier`;
    /// sleepers pay for it in [`wait`](Self::wait)).
    #[inline]
    pub(crate) fn ring(&self) {
        barrier::light();
        if self.waiters.load(Relaxed) > 0 {
            self.seq.fetch_add(1, SeqCst);
            futex::wake(self.seq, u32::MAX);
        }
    }

    /// Ring even if nobody seems to sleep (peer death).
    pub(crate) fn ring_always(&self) {
        self.seq.fetch_add(1, SeqCst);
        futex::wake(self.seq, u32::MAX);
    }

    /// Wait until `ready()` returns true (→ `true`), `gone` is set or the
    /// deadline passes (→ `ready()` once more). `ready` may act (take a
    /// credit): it is never called again after it returned true.
    pub(crate) fn wait(
        &self,
        strategy: WaitStrategy,
        wait: Deadline,
        gone: &impl Gone,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        if ready() {
            return true;
        }
        if wait == Deadline::Never {
            return false;
        }
        let strategy = if NEVER_SPIN.with(std::cell::Cell::get) { WaitStrategy::Park } else { strategy };
        // Adaptive waiting learns: a waiter that parked and was woken soon
        // after (a steady stream slower than the budget: large messages)
        // spins about that long next time, up to `SPIN_STRETCH` times the
        // budget, and saves the waker a system call per message; a long
        // sleep (idle) brings it back to the budget.
        let base = match strategy {
            WaitStrategy::Adaptive(d) => Some(d),
            _ => None,
        };
        let learn = |start: Option<Instant>| {
            if let (Some(d), Some(t)) = (base, start) {
                let waited = t.elapsed();
                let next = if waited <= d * SPIN_STRETCH { waited * 3 / 2 } else { Duration::ZERO };
                self.learned.store(next.min(d * SPIN_STRETCH).as_nanos() as u64, Relaxed);
            }
        };
        let spin_for = match strategy {
            WaitStrategy::Spin => None,
            WaitStrategy::Park => Some(Duration::ZERO),
            WaitStrategy::Adaptive(d) => Some(d.max(Duration::from_nanos(self.learned.load(Relaxed)))),
        };
        // The clock is read only every 64 turns: a spinning waiter makes
        // no system call and hardly any vDSO call.
        let mut start = None;
        let mut i = 0u32;
        loop {
            if ready() {
                learn(start);
                return true;
            }
            if gone.is_gone() {
                return ready();
            }
            i = i.wrapping_add(1);
            if i.is_multiple_of(64) {
                if wait.expired() {
                    return ready();
                }
                let now = Instant::now();
                if spin_for.is_some_and(|d| now.duration_since(*start.get_or_insert(now)) >= d) {
                    break;
                }
            }
            if spin_for == Some(Duration::ZERO) {
                break;
            }
            std::hint::spin_loop();
        }
        loop {
            let seq = self.seq.load(SeqCst);
            self.waiters.fetch_add(1, SeqCst);
            // The slow side of the fence: a waker either sees us counted or
            // its store is visible to `ready()` below.
            let ordered = barrier::heavy();
            if ready() {
                self.waiters.fetch_sub(1, SeqCst);
                learn(start);
                return true;
            }
            if gone.is_gone() {
                self.waiters.fetch_sub(1, SeqCst);
                return ready();
            }
            futex::wait(self.seq, seq, if ordered { wait } else { barrier::nap(wait) });
            self.waiters.fetch_sub(1, SeqCst);
            if ready() {
                learn(start);
                return true;
            }
            if gone.is_gone() || wait.expired() {
                return ready();
            }
        }
    }
}

/// Check a ring's first 16 header bytes (magic, version, capacity) against
/// the length of its segment: pure, for any bytes. Returns the capacity.
pub fn parse_header(head: &[u8; 16], segment_len: usize) -> Result<u64, &'static str> {
    let word = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().expect("4 bytes"));
    if word(OFF_MAGIC) != MAGIC || word(OFF_VERSION) != VERSION {
        return Err("ring has a bad magic or version");
    }
    let cap = u64::from_le_bytes(head[OFF_CAPACITY..OFF_CAPACITY + 8].try_into().expect("8 bytes"));
    if !cap.is_power_of_two() || (cap as usize).checked_add(DATA_OFFSET) != Some(segment_len) {
        return Err("ring capacity does not match its segment");
    }
    Ok(cap)
}

/// A ring in a shared-memory segment.
#[derive(Debug)]
pub struct Ring {
    /// Shared by the handles of one process ([`Ring::share`]) and by a
    /// control block kept in the header ([`OFF_CTL`]).
    seg: std::sync::Arc<Segment>,
    capacity: u64,
    /// What this handle last loaded of the other side's counters (lower
    /// bounds: they only grow), so that the hot path does not pull the
    /// other side's cache line over for every message.
    known: Known,
}

#[derive(Debug, Default)]
struct Known {
    head: AtomicU64,
    taken: AtomicU64,
    /// Learned spin budget of this handle's adaptive waits (ns).
    spin: AtomicU64,
}

impl RingMemory for Ring {
    type C = AtomicU64;
    #[inline]
    fn tail(&self) -> &AtomicU64 {
        self.seg.mapping().atomic_u64(OFF_TAIL)
    }
    #[inline]
    fn head(&self) -> &AtomicU64 {
        self.seg.mapping().atomic_u64(OFF_HEAD)
    }
    #[inline]
    fn capacity(&self) -> u64 {
        self.capacity
    }
    #[inline]
    fn data_word(&self, pos: u64) -> &AtomicU64 {
        // In bounds and aligned whatever `pos` is: positions come from
        // words a peer can write (`head`, `tail`), and a bad one must read
        // a wrong word (which fails its lap tag), never panic. Legitimate
        // positions are multiples of 8 below the capacity: unchanged.
        self.seg.mapping().atomic_u64(DATA_OFFSET + (pos & (self.capacity - 1) & !7) as usize)
    }
    #[inline]
    fn known_head(&self) -> u64 {
        self.known.head.load(Relaxed)
    }
    #[inline]
    fn remember_head(&self, head: u64) {
        self.known.head.store(head, Relaxed)
    }
}

impl Ring {
    /// A new ring with a data area of at least `capacity` bytes (rounded up
    /// to a power of two, at least [`MIN_CAPACITY`]).
    pub fn new(capacity: usize) -> Result<Ring, Error> {
        // Faulted in at once: a channel's ring is reused forever, and a
        // first-touch fault on the hot path costs microseconds.
        Ring::with_pages(capacity, true)
    }

    /// A new ring whose pages are taken only as they are first written
    /// (what a mailbox's queue needs: a broker holds thousands, most of
    /// them idle or nearly empty).
    pub fn new_lazy(capacity: usize) -> Result<Ring, Error> {
        Ring::with_pages(capacity, false)
    }

    fn with_pages(capacity: usize, populate: bool) -> Result<Ring, Error> {
        barrier::register();
        let cap = capacity.clamp(MIN_CAPACITY, MAX_CAPACITY).next_power_of_two();
        let seg = if populate { Segment::new_populated(DATA_OFFSET + cap)? } else { Segment::new(DATA_OFFSET + cap)? };
        let m = seg.mapping();
        m.atomic_u64(OFF_CAPACITY).store(cap as u64, SeqCst);
        m.atomic_u32(OFF_VERSION).store(VERSION, SeqCst);
        m.atomic_u32(OFF_MAGIC).store(MAGIC, SeqCst);
        Ok(Ring { seg: std::sync::Arc::new(seg), capacity: cap as u64, known: Known::default() })
    }

    /// Another handle on this ring in this process (the other end of a
    /// channel made here): the same mapping, its own view of the counters.
    pub(crate) fn share(&self) -> Ring {
        Ring { seg: std::sync::Arc::clone(&self.seg), capacity: self.capacity, known: Known::default() }
    }

    /// The segment, shared (a control block kept in the header holds it).
    pub(crate) fn shared_segment(&self) -> std::sync::Arc<Segment> {
        std::sync::Arc::clone(&self.seg)
    }

    /// Use a segment received from another process as a ring, after
    /// checking its header.
    pub(crate) fn adopt(seg: Segment, index: usize) -> Result<Ring, WireError> {
        barrier::register();
        let bad = |why| WireError::BadRight { index, why };
        if seg.len() < DATA_OFFSET + MIN_CAPACITY {
            return Err(bad("ring segment is too small"));
        }
        // A copy of the header, then the pure check of its bytes.
        let mut head = [0u8; 16];
        if !seg.mapping().read_at(OFF_MAGIC, &mut head) {
            return Err(bad("ring segment is too small"));
        }
        let cap = parse_header(&head, seg.len()).map_err(bad)?;
        Ok(Ring { seg: std::sync::Arc::new(seg), capacity: cap, known: Known::default() })
    }

    /// How the ends of this ring wait (chosen by its creator).
    pub fn strategy(&self) -> WaitStrategy {
        let m = self.seg.mapping();
        match m.atomic_u32(OFF_WAIT_MODE).load(SeqCst) {
            1 => WaitStrategy::Spin,
            2 => WaitStrategy::Park,
            _ => match m.atomic_u64(OFF_WAIT_BUDGET_NS).load(SeqCst) {
                0 => WaitStrategy::default(),
                ns => WaitStrategy::Adaptive(Duration::from_nanos(ns)),
            },
        }
    }

    /// Choose how the ends of this ring wait.
    pub fn set_strategy(&self, w: WaitStrategy) {
        let m = self.seg.mapping();
        let (mode, ns) = match w {
            WaitStrategy::Spin => (1, 0),
            WaitStrategy::Park => (2, 0),
            WaitStrategy::Adaptive(d) => (0, d.as_nanos().clamp(1, u64::MAX as u128) as u64),
        };
        m.atomic_u64(OFF_WAIT_BUDGET_NS).store(ns, SeqCst);
        m.atomic_u32(OFF_WAIT_MODE).store(mode, SeqCst);
    }

    /// Whether frames in this ring carry a checksum (a snapshot: a peer
    /// can change the word; ends read it once, when they are made).
    pub fn checked(&self) -> bool {
        self.seg.mapping().atomic_u32(OFF_CHECKED).load(SeqCst) == 1
    }

    /// Set whether frames carry a checksum (before the ring is shared).
    pub fn set_checked(&self, on: bool) {
        self.seg.mapping().atomic_u32(OFF_CHECKED).store(u32::from(on), SeqCst);
    }

    /// Bytes in the data area.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Largest message the ring carries.
    #[inline]
    pub fn max_message(&self) -> usize {
        ring_core::max_payload(self.capacity)
    }

    /// Bytes committed and not yet released.
    pub fn used(&self) -> usize {
        ring_core::used(self) as usize
    }

    /// Consumer: is a record committed at the head? (One header word: a
    /// waiting consumer's condition.)
    #[inline]
    pub fn has_data(&self) -> bool {
        ring_core::ready(self)
    }

    /// The segment (to pass the ring to another process).
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    #[inline]
    pub(crate) fn word(&self, off: usize) -> &AtomicU32 {
        self.seg.mapping().atomic_u32(off)
    }

    #[inline]
    pub(crate) fn data_bell(&self) -> Bell<'_> {
        Bell { seq: self.word(OFF_DATA_SEQ), waiters: self.word(OFF_DATA_WAITERS), learned: &self.known.spin }
    }

    #[inline]
    pub(crate) fn space_bell(&self) -> Bell<'_> {
        Bell { seq: self.word(OFF_SPACE_SEQ), waiters: self.word(OFF_SPACE_WAITERS), learned: &self.known.spin }
    }

    #[inline]
    pub(crate) fn credit_bell(&self) -> Bell<'_> {
        Bell { seq: self.word(OFF_CREDIT_SEQ), waiters: self.word(OFF_CREDIT_WAITERS), learned: &self.known.spin }
    }

    /// Consumer: ask producers to also ring the socket on each commit (for
    /// waiters that sleep in `poll`: port sets, async tasks). Undo with
    /// [`doorbell_off`](Self::doorbell_off).
    pub(crate) fn doorbell_on(&self) {
        self.word(OFF_DOORBELL).fetch_add(1, SeqCst);
        // Slow side of the producers' `light` fence in `commit`.
        barrier::heavy();
    }

    pub(crate) fn doorbell_off(&self) {
        self.word(OFF_DOORBELL).fetch_sub(1, SeqCst);
    }

    /// Producer, right after a commit (whose `light` fence orders this
    /// load after the new header): does a consumer want the socket rung?
    #[inline]
    pub(crate) fn doorbell_wanted(&self) -> bool {
        self.word(OFF_DOORBELL).load(Relaxed) > 0
    }

    /// Wake everyone sleeping on this ring (a peer died).
    pub(crate) fn wake_all(&self) {
        self.data_bell().ring_always();
        self.space_bell().ring_always();
        self.credit_bell().ring_always();
        futex::wake(self.word(OFF_LOCK), u32::MAX);
        futex::wake(self.word(OFF_CONSUMER_LOCK), u32::MAX);
    }

    /// Producer: room for `len` bytes now?
    #[inline]
    pub fn try_reserve(&self, len: usize) -> Result<Option<Reservation>, TooLarge> {
        ring_core::try_reserve(self, len)
    }

    /// Producer: the reserved payload, to write in place.
    #[inline]
    pub fn reserved_mut<'a>(&'a self, r: &'a mut Reservation) -> &'a mut [u8] {
        let start = DATA_OFFSET + r.payload_pos() as usize;
        assert!(start + r.len() <= self.seg.len());
        // SAFETY: in bounds (asserted). A reservation is exclusive (not
        // Clone, borrowed mutably here): only its holder touches these bytes
        // until `commit`, and the consumer does not read a record before its
        // header word is stored.
        unsafe { std::slice::from_raw_parts_mut(self.seg.as_ptr().add(start), r.len()) }
    }

    /// Producer: the reserved payload, to read back.
    #[inline]
    pub fn reserved<'a>(&'a self, r: &'a Reservation) -> &'a [u8] {
        let start = DATA_OFFSET + r.payload_pos() as usize;
        assert!(start + r.len() <= self.seg.len());
        // SAFETY: in bounds (asserted); see `reserved_mut`.
        unsafe { std::slice::from_raw_parts(self.seg.as_ptr().add(start), r.len()) }
    }

    /// Producer: publish a written reservation and wake the consumer.
    #[inline]
    pub fn commit(&self, r: Reservation) {
        let m = self.seg.mapping();
        // One producer at a time (the caller holds the producers' lock).
        let sent = m.atomic_u64(OFF_SENT);
        let now_sent = sent.load(Relaxed).wrapping_add(1);
        // The journal first (the header's Release store orders it): a
        // producer that takes the lock over finishes what we started.
        m.atomic_u64(OFF_JOURNAL_TAIL).store(r.end(), Relaxed);
        m.atomic_u64(OFF_JOURNAL_SENT).store(now_sent, Relaxed);
        ring_core::commit(self, r);
        sent.store(now_sent, Release);
        self.data_bell().ring();
    }

    /// Producer, holding a lock taken over from a dead producer: finish the
    /// commit it was in (the consumer may already see its record: the
    /// header word is the commit), or leave it unpublished if its header
    /// was not stored.
    fn finish_commit(&self) {
        let m = self.seg.mapping();
        let (tail, sent) = (m.atomic_u64(OFF_TAIL), m.atomic_u64(OFF_SENT));
        let until = m.atomic_u64(OFF_JOURNAL_TAIL).load(Acquire);
        let journal_sent = m.atomic_u64(OFF_JOURNAL_SENT).load(Acquire);
        let (reached, messages) = ring_core::committed_from(self, until);
        if reached > tail.load(Acquire) {
            tail.store(reached, Release);
            sent.store(sent.load(Acquire).wrapping_add(messages), Release);
        } else if reached == until && sent.load(Acquire).wrapping_add(1) == journal_sent {
            // It died between storing `tail` and `sent`.
            sent.store(journal_sent, Release);
        }
        self.data_bell().ring();
    }

    /// Messages committed and not yet released.
    pub fn messages(&self) -> u64 {
        let m = self.seg.mapping();
        m.atomic_u64(OFF_SENT).load(Acquire).saturating_sub(m.atomic_u64(OFF_TAKEN).load(Acquire))
    }

    /// Producer (holding the lock): fewer than `limit` messages queued?
    /// Reads the consumer's line that `try_reserve` reads anyway.
    #[inline]
    pub(crate) fn below(&self, limit: u64) -> bool {
        let m = self.seg.mapping();
        let sent = m.atomic_u64(OFF_SENT).load(Relaxed);
        if sent.wrapping_sub(self.known.taken.load(Relaxed)) < limit {
            return true;
        }
        let taken = m.atomic_u64(OFF_TAKEN).load(Acquire);
        self.known.taken.store(taken, Relaxed);
        sent.wrapping_sub(taken) < limit
    }

    /// Consumer: the oldest message, if any.
    #[inline]
    pub fn peek(&self) -> Result<Option<Record>, Corrupt> {
        ring_core::peek(self)
    }

    /// Consumer: the payload of `r`, in place.
    #[inline]
    pub fn payload(&self, r: &Record) -> &[u8] {
        let start = DATA_OFFSET + r.payload_pos() as usize;
        assert!(start + r.len() <= self.seg.len());
        // SAFETY: in bounds (asserted). A committed record is not written by
        // producers until the consumer releases it, which needs `&Record`
        // moved into `release`, after this borrow ends. (A hostile producer
        // can scribble on it anyway; then we read garbage bytes, which the
        // frame checks reject.)
        unsafe { std::slice::from_raw_parts(self.seg.as_ptr().add(start), r.len()) }
    }

    /// Consumer: done with `r`; wake producers waiting for room or credit.
    #[inline]
    pub fn release(&self, r: Record) {
        ring_core::release(self, r);
        self.count_taken();
    }

    /// Consumer, after releasing a message: count it, and wake producers
    /// waiting for room or credit.
    #[inline]
    fn count_taken(&self) {
        let taken = self.seg.mapping().atomic_u64(OFF_TAKEN);
        taken.store(taken.load(Relaxed).wrapping_add(1), Release);
        self.space_bell().ring();
        self.credit_bell().ring();
    }

    /// Consumer: the message after `r` (to look past the oldest).
    pub(crate) fn next_after(&self, r: &Record) -> Result<Option<Record>, Corrupt> {
        ring_core::next_after(self, r)
    }

    /// Consumer: done with `r`, the oldest message or a later one (see
    /// [`ring_core::take`]); wake producers waiting for room or credit.
    pub(crate) fn take(&self, r: Record) {
        ring_core::take(self, r);
        // Skip records taken earlier that are now at the head.
        let _ = ring_core::peek(self);
        self.count_taken();
    }

    /// Messages ever committed.
    pub(crate) fn sent(&self) -> u64 {
        self.seg.mapping().atomic_u64(OFF_SENT).load(SeqCst)
    }

    /// Consumer, holding the producers' lock: `live` messages are queued
    /// (after a consumer died between taking a message and counting it).
    pub(crate) fn recount(&self, live: u64) {
        let m = self.seg.mapping();
        let sent = m.atomic_u64(OFF_SENT).load(SeqCst);
        m.atomic_u64(OFF_TAKEN).store(sent.saturating_sub(live), SeqCst);
        self.credit_bell().ring();
    }

    /// Take the producers' lock for this thread (its id), taking it over
    /// from a dead owner (and finishing its commit). Sleeps on the lock
    /// word when contended.
    #[inline]
    pub(crate) fn lock_producers(&self, gone: &impl Gone) -> RingLock<'_> {
        let lock = self.lock(Which::Producers, gone);
        if lock.inherited {
            self.finish_commit();
        }
        lock
    }

    /// Take the consumers' lock (rings with several consumers), like
    /// [`lock_producers`](Self::lock_producers).
    pub(crate) fn lock_consumers(&self, gone: &impl Gone) -> RingLock<'_> {
        self.lock(Which::Consumers, gone)
    }

    /// The producers' lock if it can be had now: free, or held by a thread
    /// that is gone (then taken over, its commit finished). `None`: a live
    /// thread holds it (possibly a stopped process): the caller does not
    /// wait.
    pub(crate) fn try_lock_producers(&self) -> Option<RingLock<'_>> {
        let lock = self.try_lock(Which::Producers)?;
        if lock.inherited {
            self.finish_commit();
        }
        Some(lock)
    }

    /// The consumers' lock if it can be had now (see
    /// [`try_lock_producers`](Self::try_lock_producers)).
    pub(crate) fn try_lock_consumers(&self) -> Option<RingLock<'_>> {
        self.try_lock(Which::Consumers)
    }

    fn try_lock(&self, which: Which) -> Option<RingLock<'_>> {
        let me = sys::process::gettid();
        let word = self.word(which.off());
        let held = |inherited| RingLock { ring: self, which, inherited, owned: true };
        match word.compare_exchange(0, me, SeqCst, Relaxed) {
            Ok(_) => Some(held(false)),
            Err(owner) if owner == me || !sys::process::alive(owner) => {
                word.compare_exchange(owner, me, SeqCst, Relaxed).ok().map(|_| held(true))
            }
            Err(_) => None,
        }
    }

    /// Free: one compare-and-swap, inline. Otherwise [`lock_slow`].
    #[inline]
    fn lock(&self, which: Which, gone: &impl Gone) -> RingLock<'_> {
        let me = sys::process::gettid();
        if self.word(which.off()).compare_exchange(0, me, SeqCst, Relaxed).is_ok() {
            return RingLock { ring: self, which, inherited: false, owned: true };
        }
        self.lock_slow(which, me, gone)
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self, which: Which, me: u32, gone: &impl Gone) -> RingLock<'_> {
        let word = self.word(which.off());
        let waiters = self.word(which.off_waiters());
        let held = |inherited| RingLock { ring: self, which, inherited, owned: true };
        let mut spins = 0u32;
        loop {
            match word.compare_exchange(0, me, SeqCst, Relaxed) {
                Ok(_) => return held(false),
                Err(owner) if owner == me => {
                    // Left locked by an earlier thread with our id (not
                    // us: we do not nest), which is gone.
                    if word.compare_exchange(owner, me, SeqCst, Relaxed).is_ok() {
                        return held(true);
                    }
                }
                Err(owner) => {
                    spins += 1;
                    if spins < 200 {
                        std::hint::spin_loop();
                        continue;
                    }
                    if !sys::process::alive(owner) {
                        // The owner died holding it: a record it had not
                        // published (header) stays unseen, one it had is
                        // finished (`finish_commit`); nothing half-written
                        // is ever visible.
                        if word.compare_exchange(owner, me, SeqCst, Relaxed).is_ok() {
                            return held(true);
                        }
                        continue;
                    }
                    if gone.is_gone() {
                        // Nobody will read what we write; do not wait forever
                        // (and do not unlock what we never held).
                        return RingLock { owned: false, ..held(false) };
                    }
                    waiters.fetch_add(1, SeqCst);
                    // Slow side of the owner's `light` fence in `drop`.
                    let nap = if barrier::heavy() { 50 } else { 1 };
                    futex::wait(word, owner, Deadline::Until(Instant::now() + Duration::from_millis(nap)));
                    waiters.fetch_sub(1, SeqCst);
                }
            }
        }
    }
}

/// Which of a ring's two locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Producers,
    Consumers,
}

impl Which {
    #[inline]
    fn off(self) -> usize {
        match self {
            Which::Producers => OFF_LOCK,
            Which::Consumers => OFF_CONSUMER_LOCK,
        }
    }
    #[inline]
    fn off_waiters(self) -> usize {
        match self {
            Which::Producers => OFF_LOCK_WAITERS,
            Which::Consumers => OFF_CONSUMER_LOCK_WAITERS,
        }
    }
}

/// Holds the producers' or the consumers' lock of a ring. (16 bytes: it
/// comes back from the inline fast path in registers.)
pub struct RingLock<'a> {
    ring: &'a Ring,
    which: Which,
    /// Taken over from a dead owner (or an earlier thread with our id):
    /// what it was doing may be half done.
    pub(crate) inherited: bool,
    /// False when the other side is gone and we went on without the lock.
    owned: bool,
}

/// A lock word no live thread has (tids are below `pid_max` ≤ 2²²): a
/// lock left with it is taken over as from a dead owner.
const NO_THREAD: u32 = u32::MAX;

impl RingLock<'_> {
    /// Let go so that the next taker inherits the lock as from a dead owner
    /// (and does the repair an inherited lock asks for): for a holder that
    /// inherited it and could not finish that repair without waiting.
    pub(crate) fn pass_on_inherited(mut self) {
        if !self.owned {
            return;
        }
        self.owned = false;
        let word = self.ring.word(self.which.off());
        word.store(NO_THREAD, Release);
        barrier::light();
        if self.ring.word(self.which.off_waiters()).load(Relaxed) > 0 {
            futex::wake(word, 1);
        }
    }
}

impl Drop for RingLock<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        // We own it (nobody takes a live owner's lock over): a plain store,
        // then the fast side of an asymmetric fence before looking for
        // sleepers (they pay with `barrier::heavy`).
        let word = self.ring.word(self.which.off());
        word.store(0, Release);
        barrier::light();
        if self.ring.word(self.which.off_waiters()).load(Relaxed) > 0 {
            futex::wake(word, 1);
        }
    }
}

impl Serialize for Ring {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.seg.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ring {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let seg = Segment::deserialize(d)?;
        Ring::adopt(seg, 0).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::dead_tid;

    /// A producer killed in the middle of `Ring::commit`, after `stage`
    /// stores: 1 = journal and header (the consumer can take the record),
    /// 2 = and `tail`, not `sent`. The next producer takes the lock over and
    /// finishes the commit, so room and credits stay exact.
    fn died_mid_commit(stage: u32) {
        let ring = Ring::new(4096).unwrap();
        let not_gone = AtomicBool::new(false);
        let m = ring.seg.mapping();
        {
            let _lock = ring.lock_producers(&not_gone);
            let mut r = ring.try_reserve(100).unwrap().unwrap();
            ring.reserved_mut(&mut r).fill(7);
            let end = r.end();
            m.atomic_u64(OFF_JOURNAL_TAIL).store(end, SeqCst);
            m.atomic_u64(OFF_JOURNAL_SENT).store(1, SeqCst);
            ring_core::commit(&ring, r);
            if stage == 1 {
                m.atomic_u64(OFF_TAIL).store(0, SeqCst);
            }
            std::mem::forget(_lock);
        }
        ring.word(OFF_LOCK).store(dead_tid(), SeqCst);
        // The consumer sees the record already (its header is the commit).
        let rec = ring.peek().unwrap().expect("the record is visible");
        assert_eq!(ring.payload(&rec), [7; 100]);
        ring.release(rec);
        assert_eq!(ring.messages(), 0);
        // The next producer takes over and finishes the commit.
        let lock = ring.lock_producers(&not_gone);
        assert!(lock.inherited);
        assert_eq!(ring.sent(), 1, "stage {stage}: the message is counted");
        assert_eq!(m.atomic_u64(OFF_TAIL).load(SeqCst), 8 + 104, "stage {stage}: tail caught up");
        assert!(ring.below(1), "stage {stage}: the credit came back");
        let mut r = ring.try_reserve(8).unwrap().expect("room");
        ring.reserved_mut(&mut r).fill(9);
        ring.commit(r);
        drop(lock);
        let rec = ring.peek().unwrap().expect("the next record");
        assert_eq!(ring.payload(&rec), [9; 8]);
        ring.release(rec);
        assert_eq!((ring.used(), ring.messages()), (0, 0));
    }

    #[test]
    fn a_producer_that_died_after_the_header_is_finished_by_the_next() {
        died_mid_commit(1);
    }

    #[test]
    fn a_producer_that_died_before_counting_is_finished_by_the_next() {
        died_mid_commit(2);
    }

    /// Killed after storing the padding's header, not the record's: the
    /// padding is published (the consumer skips it), the record is not.
    #[test]
    fn a_producer_that_died_between_padding_and_record_leaves_the_record_out() {
        let ring = Ring::new(4096).unwrap();
        let not_gone = AtomicBool::new(false);
        let m = ring.seg.mapping();
        // Fill to 3 KiB and drain, so that 2 KiB no longer fits before the end.
        for _ in 0..3 {
            let mut r = ring.try_reserve(1016).unwrap().unwrap();
            ring.reserved_mut(&mut r).fill(1);
            ring.commit(r);
            let rec = ring.peek().unwrap().unwrap();
            ring.release(rec);
        }
        let start = m.atomic_u64(OFF_TAIL).load(SeqCst);
        {
            let lock = ring.lock_producers(&not_gone);
            let r = ring.try_reserve(2000).unwrap().unwrap();
            m.atomic_u64(OFF_JOURNAL_TAIL).store(r.end(), SeqCst);
            m.atomic_u64(OFF_JOURNAL_SENT).store(4, SeqCst);
            ring_core::commit(&ring, r);
            // Undo the record's header and the tail: it died in between.
            RingMemory::data_word(&ring, 0).store(0, SeqCst);
            m.atomic_u64(OFF_TAIL).store(start, SeqCst);
            std::mem::forget(lock);
        }
        ring.word(OFF_LOCK).store(dead_tid(), SeqCst);
        assert_eq!(ring.peek().unwrap(), None, "the padding is skipped, the record is not there");
        let lock = ring.lock_producers(&not_gone);
        assert_eq!(m.atomic_u64(OFF_TAIL).load(SeqCst), 4096, "tail past the padding only");
        assert_eq!(ring.sent(), 3);
        let mut r = ring.try_reserve(2000).unwrap().expect("room at the start");
        ring.reserved_mut(&mut r).fill(5);
        ring.commit(r);
        drop(lock);
        let rec = ring.peek().unwrap().unwrap();
        assert_eq!(ring.payload(&rec), [5; 2000]);
    }
}
