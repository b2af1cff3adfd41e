//! The ring's index protocol, independent of where its memory lives, so
//! that the model checker (`loom`, in `conduit-tests/tests/ring_model.rs`)
//! runs this very file over heap memory while conduit runs it over a
//! shared mapping.
//!
//! A ring of `capacity` bytes (a power of two) holds variable-size
//! records: an 8-byte header word and the payload, padded to 8 bytes.
//! `tail` (bytes ever committed) and `head` (bytes ever released) only
//! grow; the ring is full when `tail - head == capacity`, so every byte is
//! usable — unlike the textbook ring that keeps one slot empty to tell full
//! from empty. A record never wraps: if it does not fit before the end, a
//! padding record fills the end and it starts at 0.
//!
//! **The header word is the commit.** It holds the payload length (bits
//! 0..32), the kind (32..40) and a lap tag (40..64: the record's absolute
//! position divided by the capacity, modulo 2²⁴), and the producer stores
//! it, with Release, after the payload. The consumer waits on the header
//! word at its position, not on `tail`: a message costs the consumer one
//! cache line from the producer (the record's), not two (`tail`'s, then the
//! record's). A word counts as committed only if its kind is set and its tag
//! is the lap the consumer is in, so what lay there before never passes:
//! each commit also zeroes the header slot right after its record (when
//! that slot is free), and when it is not free the ring is full and the
//! slot holds the header of the oldest record, one lap back. Stale payload
//! bytes are therefore never where a consumer looks for a header.
//!
//! `tail` is the producers' own count (room, and a repair after a producer
//! died mid-commit, see [`committed_from`]).
//!
//! One consumer; producers take turns (the caller serializes them), so
//! `tail` has one writer at a time and `head` exactly one.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// A 64-bit atomic counter, whichever implementation backs it.
pub trait Counter {
    /// Load with `order`.
    fn load(&self, order: std::sync::atomic::Ordering) -> u64;
    /// Store with `order`.
    fn store(&self, value: u64, order: std::sync::atomic::Ordering);
}

/// Where a ring lives.
pub trait RingMemory {
    /// The counter type.
    type C: Counter;
    /// Bytes ever committed by producers.
    fn tail(&self) -> &Self::C;
    /// Bytes ever released by the consumer.
    fn head(&self) -> &Self::C;
    /// Size of the data area, a power of two.
    fn capacity(&self) -> u64;
    /// The 8-byte word of the data area at `pos` (a multiple of 8), as an
    /// atomic: record headers are read and written through it. (Payloads
    /// are the caller's: conduit writes and reads them in place.)
    fn data_word(&self, pos: u64) -> &Self::C;
    /// Producer: a `head` this handle saw before (0 if it keeps none).
    /// `head` only grows, so room computed from an old value is never more
    /// than there is; a producer reloads `head` only when it seems full,
    /// and leaves the consumer's line alone otherwise.
    fn known_head(&self) -> u64 {
        0
    }
    /// Producer: remember a `head` just loaded.
    fn remember_head(&self, _head: u64) {}
}

/// Bytes of a record header.
pub const RECORD_HEADER: u64 = 8;
/// Record kind: a message.
pub const KIND_DATA: u32 = 1;
/// Record kind: padding to the end of the data area.
pub const KIND_PAD: u32 = 2;
/// Record kind: a message the consumer took out of turn (see [`take`]);
/// its space returns when every record before it is released.
pub const KIND_TAKEN: u32 = 3;

/// Space a record of `len` payload bytes takes.
#[inline]
pub fn record_size(len: usize) -> u64 {
    RECORD_HEADER + ((len as u64 + 7) & !7)
}

/// Largest payload that always fits once the ring drains (half the
/// capacity, less a header: a padding record can take the other half).
#[inline]
pub fn max_payload(capacity: u64) -> usize {
    (capacity / 2 - RECORD_HEADER) as usize
}

/// The lap tag of absolute position `at` (see the module docs).
#[inline]
fn lap_tag(at: u64, cap: u64) -> u64 {
    (at >> cap.trailing_zeros()) & 0xFF_FFFF
}

/// The header word of a record at absolute position `at`.
#[inline]
fn header(len: u64, kind: u32, at: u64, cap: u64) -> u64 {
    (len & 0xFFFF_FFFF) | (kind as u64) << 32 | lap_tag(at, cap) << 40
}

/// The header at absolute position `at`: `(len, kind)` if one is committed
/// there for this lap, `None` if the record is not there yet. Acquire: the
/// record's bytes are visible once its header is.
#[inline]
fn header_at<M: RingMemory>(m: &M, at: u64) -> Option<(u64, u32)> {
    let cap = m.capacity();
    let word = m.data_word(at & (cap - 1)).load(Acquire);
    let kind = (word >> 32) as u8 as u32;
    (kind != 0 && word >> 40 == lap_tag(at, cap)).then_some((word & 0xFFFF_FFFF, kind))
}

/// Room a producer has claimed (not yet visible to the consumer). Not
/// `Clone`: one reservation, one writer.
#[derive(Debug, PartialEq, Eq)]
pub struct Reservation {
    at: u64,
    pad: u64,
    pos: u64,
    len: usize,
    size: u64,
}

impl Reservation {
    /// `tail` once this record is committed.
    #[inline]
    pub fn end(&self) -> u64 {
        self.at.wrapping_add(self.pad).wrapping_add(self.size)
    }
    /// Offset of the payload in the data area.
    #[inline]
    pub fn payload_pos(&self) -> u64 {
        self.pos + RECORD_HEADER
    }
    /// Payload length.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }
    /// True for an empty payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The payload is larger than [`max_payload`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge;

/// Producer: claim room for `len` payload bytes, if there is room now.
#[inline]
pub fn try_reserve<M: RingMemory>(m: &M, len: usize) -> Result<Option<Reservation>, TooLarge> {
    let cap = m.capacity();
    if len > max_payload(cap) {
        return Err(TooLarge);
    }
    let size = record_size(len);
    let t = m.tail().load(Relaxed);
    if !t.is_multiple_of(8) {
        // Only a peer's write makes `tail` other than a multiple of 8
        // (every record is): the ring is broken and takes nothing more,
        // as if full (the sender's timeout ends its wait).
        return Ok(None);
    }
    let pos = t & (cap - 1);
    let contiguous = cap - pos;
    let pad = if size <= contiguous { 0 } else { contiguous };
    // (`tail` and `head` are words a peer can write: no overflow here.)
    let fits = |h: u64| h <= t && t.checked_add(pad + size).is_some_and(|end| end - h <= cap);
    if !fits(m.known_head()) {
        // Acquire: the consumer's reads of the space we are about to reuse
        // happened before it released it.
        let h = m.head().load(Acquire);
        m.remember_head(h);
        if !fits(h) {
            return Ok(None);
        }
    }
    Ok(Some(Reservation { at: t, pad, pos: if pad > 0 { 0 } else { pos }, len, size }))
}

/// Producer: publish a reserved record whose payload has been written.
#[inline]
pub fn commit<M: RingMemory>(m: &M, r: Reservation) {
    let cap = m.capacity();
    let end = r.end();
    // Zero the next header slot, so that the consumer, arriving there,
    // never takes what lay there for a header. Only if it is free: if it is
    // not, the ring is full and the slot holds the oldest record's header,
    // one lap back, which does not pass either. (A `head` that only seems
    // full is reloaded: stale payload must not stay behind.)
    let free = |h: u64| h <= end && end - h < cap;
    if free(m.known_head()) || {
        let h = m.head().load(Acquire);
        m.remember_head(h);
        free(h)
    } {
        m.data_word(end & (cap - 1)).store(0, Relaxed);
    }
    // Release: the payload and the zeroed slot are visible before a header
    // is. The padding first: a producer that dies between the two stores
    // leaves the record at 0 unpublished, never a header of a future lap.
    if r.pad > 0 {
        m.data_word(r.at & (cap - 1)).store(header(r.pad - RECORD_HEADER, KIND_PAD, r.at, cap), Release);
    }
    m.data_word(r.pos).store(header(r.len as u64, KIND_DATA, r.at.wrapping_add(r.pad), cap), Release);
    m.tail().store(end, Release);
}

/// Producer, after taking over the lock from a producer that died: the
/// records from `tail` up to `until` that it committed (header stored)
/// before `tail`. Returns where `tail` belongs and how many messages are
/// among them. Records past `tail` are visible to the consumer as soon as
/// their header is, so `tail` must catch up with them.
pub fn committed_from<M: RingMemory>(m: &M, until: u64) -> (u64, u64) {
    let cap = m.capacity();
    let mut at = m.tail().load(Acquire);
    let mut messages = 0;
    while at < until && until - at <= cap {
        let pos = at & (cap - 1);
        let Some((len, kind)) = header_at(m, at) else { break };
        let size = match kind {
            KIND_PAD => cap - pos,
            _ => record_size(len as usize),
        };
        if size > cap - pos || size > until - at {
            break;
        }
        messages += u64::from(kind != KIND_PAD);
        at += size;
    }
    (at, messages)
}

/// A record the consumer is looking at.
#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    at: u64,
    pos: u64,
    len: usize,
    size: u64,
}

impl Record {
    /// Its absolute position in the ring (unique while it is queued).
    #[inline]
    pub fn position(&self) -> u64 {
        self.at
    }
    /// Offset of the payload in the data area.
    #[inline]
    pub fn payload_pos(&self) -> u64 {
        self.pos + RECORD_HEADER
    }
    /// Payload length.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }
    /// True for an empty payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The ring's content breaks the protocol (a hostile or broken producer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

/// Consumer: the oldest committed record, if any (padding and records
/// taken out of turn are skipped and released on the way).
#[inline]
pub fn peek<M: RingMemory>(m: &M) -> Result<Option<Record>, Corrupt> {
    let cap = m.capacity();
    let at = m.head().load(Relaxed);
    let pos = at & (cap - 1);
    // The common case inline (a message, or nothing yet); the rest in `find`.
    match header_at(m, at) {
        None => Ok(None),
        Some((len, KIND_DATA)) if record_size(len as usize) <= cap - pos && len as usize <= max_payload(cap) => {
            Ok(Some(Record { at, pos, len: len as usize, size: record_size(len as usize) }))
        }
        Some(_) => find(m, at, true),
    }
}

/// Consumer: the committed record after `r`, without releasing anything
/// (to look past the oldest message, e.g. for one of a given type).
#[inline]
pub fn next_after<M: RingMemory>(m: &M, r: &Record) -> Result<Option<Record>, Corrupt> {
    find(m, r.at.wrapping_add(r.size), false)
}

/// Consumer: is a record (of any kind) committed at the head? A sleeping
/// consumer's condition: it reads one header word, not `tail`.
#[inline]
pub fn ready<M: RingMemory>(m: &M) -> bool {
    header_at(m, m.head().load(Relaxed)).is_some()
}

/// The first message record at or after `at`; with `consume`, `at` is the
/// head and skipped records are released.
#[inline(never)]
fn find<M: RingMemory>(m: &M, mut at: u64, consume: bool) -> Result<Option<Record>, Corrupt> {
    let cap = m.capacity();
    // One lap at most: more records than fit is a peer forging headers.
    for _ in 0..=cap / RECORD_HEADER {
        let pos = at & (cap - 1);
        let Some((len, kind)) = header_at(m, at) else { return Ok(None) };
        let skip = match kind {
            KIND_PAD if len + RECORD_HEADER == cap - pos => cap - pos,
            KIND_DATA | KIND_TAKEN => {
                let size = record_size(len as usize);
                if size > cap - pos {
                    return Err(Corrupt("record runs past the end of the ring"));
                }
                // No producer writes more (`try_reserve`): a forged length.
                if len as usize > max_payload(cap) {
                    return Err(Corrupt("record longer than the ring's largest message"));
                }
                if kind == KIND_DATA {
                    return Ok(Some(Record { at, pos, len: len as usize, size }));
                }
                size
            }
            _ => return Err(Corrupt("bad record header")),
        };
        at = at.wrapping_add(skip);
        if consume {
            m.head().store(at, Release);
        }
    }
    Err(Corrupt("more records than the ring holds"))
}

/// Consumer: done with `r`, which need not be the oldest record. The
/// oldest is released at once; a later one is marked taken where it lies
/// and released when the records before it are.
#[inline]
pub fn take<M: RingMemory>(m: &M, r: Record) {
    if r.at == m.head().load(Relaxed) {
        release(m, r);
    } else {
        m.data_word(r.pos).store(header(r.len as u64, KIND_TAKEN, r.at, m.capacity()), Relaxed);
    }
}

/// Consumer: done with `r`; its space goes back to the producers.
#[inline]
pub fn release<M: RingMemory>(m: &M, r: Record) {
    // Release: our reads of the record happen before producers reuse it.
    m.head().store(r.at.wrapping_add(r.size), Release);
}

/// Bytes committed and not yet released. (The consumer may release a
/// record a moment before its producer stores `tail`: then 0.)
pub fn used<M: RingMemory>(m: &M) -> u64 {
    let head = m.head().load(Acquire);
    m.tail().load(Acquire).saturating_sub(head)
}
