//! The ring's index protocol, independent of where its memory lives, so
//! that the model checker (`loom`, in `conduit-tests/tests/ring_model.rs`)
//! runs this very file over heap memory while conduit runs it over a
//! shared mapping.
//!
//! A ring of `capacity` bytes (a power of two) holds variable-size
//! records: an 8-byte header (`len: u32`, `kind: u32`) and the payload,
//! padded to 8 bytes. `tail` (bytes ever committed) and `head` (bytes ever
//! released) only grow; the ring is full when `tail - head == capacity`,
//! so every byte is usable — unlike the textbook ring that keeps one slot
//! empty to tell full from empty. A record never wraps: if it does not fit
//! before the end, a padding record fills the end and it starts at 0.
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
    /// Copy `data` into the data area at `pos` (`pos + len <= capacity`).
    fn write(&self, pos: u64, data: &[u8]);
    /// Copy from the data area at `pos` into `out`.
    fn read(&self, pos: u64, out: &mut [u8]);
    /// Producer: a `head` this handle saw before (0 if it keeps none).
    /// `head` only grows, so room computed from an old value is never more
    /// than there is; a producer reloads `head` only when it seems full,
    /// and leaves the consumer's line alone otherwise.
    fn known_head(&self) -> u64 {
        0
    }
    /// Producer: remember a `head` just loaded.
    fn remember_head(&self, _head: u64) {}
    /// Consumer: a `tail` this handle loaded (with Acquire) before (0 if
    /// it keeps none). Records below it are committed and visible.
    fn known_tail(&self) -> u64 {
        0
    }
    /// Consumer: remember a `tail` just loaded.
    fn remember_tail(&self, _tail: u64) {}
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

#[inline]
fn header(len: u64, kind: u32) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4..].copy_from_slice(&kind.to_le_bytes());
    h
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
    let pos = t & (cap - 1);
    let contiguous = cap - pos;
    let pad = if size <= contiguous { 0 } else { contiguous };
    let fits = |h: u64| h <= t && t + pad + size - h <= cap;
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
    if r.pad > 0 {
        m.write(r.at & (cap - 1), &header(r.pad - RECORD_HEADER, KIND_PAD));
    }
    m.write(r.pos, &header(r.len as u64, KIND_DATA));
    // Release: payload and headers are visible before the new tail.
    m.tail().store(r.at + r.pad + r.size, Release);
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
    find(m, m.head().load(Relaxed), true)
}

/// Consumer: the committed record after `r`, without releasing anything
/// (to look past the oldest message, e.g. for one of a given type).
#[inline]
pub fn next_after<M: RingMemory>(m: &M, r: &Record) -> Result<Option<Record>, Corrupt> {
    find(m, r.at + r.size, false)
}

/// The first message record at or after `at`; with `consume`, `at` is the
/// head and skipped records are released.
#[inline]
fn find<M: RingMemory>(m: &M, mut at: u64, consume: bool) -> Result<Option<Record>, Corrupt> {
    let cap = m.capacity();
    loop {
        let known = m.known_tail();
        let t = if at < known {
            known
        } else {
            // Acquire: the record's bytes are visible once its tail is.
            let t = m.tail().load(Acquire);
            m.remember_tail(t);
            t
        };
        if at == t {
            return Ok(None);
        }
        if t < at || t - at > cap {
            return Err(Corrupt("tail is out of range"));
        }
        let pos = at & (cap - 1);
        let mut hdr = [0u8; 8];
        m.read(pos, &mut hdr);
        let len = u32::from_le_bytes(hdr[..4].try_into().expect("4 bytes")) as u64;
        let kind = u32::from_le_bytes(hdr[4..].try_into().expect("4 bytes"));
        let skip = match kind {
            KIND_PAD if len + RECORD_HEADER == cap - pos && cap - pos <= t - at => cap - pos,
            KIND_DATA | KIND_TAKEN => {
                let size = record_size(len as usize);
                if size > cap - pos || size > t - at {
                    return Err(Corrupt("record runs past the committed data"));
                }
                if kind == KIND_DATA {
                    return Ok(Some(Record { at, pos, len: len as usize, size }));
                }
                size
            }
            _ => return Err(Corrupt("bad record header")),
        };
        at += skip;
        if consume {
            m.head().store(at, Release);
        }
    }
}

/// Consumer: done with `r`, which need not be the oldest record. The
/// oldest is released at once; a later one is marked taken where it lies
/// and released when the records before it are.
#[inline]
pub fn take<M: RingMemory>(m: &M, r: Record) {
    if r.at == m.head().load(Relaxed) {
        release(m, r);
    } else {
        m.write(r.pos, &header(r.len as u64, KIND_TAKEN));
    }
}

/// Consumer: done with `r`; its space goes back to the producers.
#[inline]
pub fn release<M: RingMemory>(m: &M, r: Record) {
    // Release: our reads of the record happen before producers reuse it.
    m.head().store(r.at + r.size, Release);
}

/// Bytes committed and not yet released.
pub fn used<M: RingMemory>(m: &M) -> u64 {
    m.tail().load(Acquire).wrapping_sub(m.head().load(Acquire))
}
