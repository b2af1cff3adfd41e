//! Zero-copy messages of bytes (M2.6).
//!
//! [`Bytes`] is a message that is just bytes. On a shared-memory channel a
//! sender can [`loan`](Sender::loan) room for one in the ring, write it in
//! place and [`send`](Loan::send) it; the receiver can
//! [`recv_in_place`](Receiver::recv_in_place) and read it where it lies.
//! No byte is copied by conduit on either side. Large payloads on any
//! channel travel as their own sealed segment instead of through the
//! transport (see `docs/WIRE.md`, out-of-line payloads).
//!
//! ```
//! use conduit::channel::{shm, Bytes};
//! let (tx, mut rx) = shm::bounded::<Bytes>(4)?;
//! let mut loan = tx.loan(5).unwrap();
//! loan.copy_from_slice(b"hello");
//! loan.send();
//! let got = rx.recv_in_place().unwrap();
//! assert_eq!(&*got, b"hello");
//! # Ok::<(), conduit::Error>(())
//! ```

use std::ops::{Deref, DerefMut};
use std::sync::MutexGuard;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{RecvError, SendFail};
use super::outbox::Plain;
use super::shm::RingEnd;
use super::{Receiver, Sender};
use crate::error::{Error, WireError};
use crate::memory::ring::{Record, Reservation, RingLock, TooLarge};
use crate::sys::Deadline;
use crate::wire::{self, HEADER_LEN, Kind};

/// A message that is a byte string (encoded as one, not as a sequence).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

struct BytesRef<'a>(&'a [u8]);

impl Serialize for BytesRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// A byte string for the short send path: postcard's encoding of bytes
/// (a varint length, then the bytes), written without serde.
struct RawBytes<'a>(&'a [u8]);

impl Plain for RawBytes<'_> {
    #[inline]
    fn size(&self) -> Option<usize> {
        Some(varint_len(self.0.len()) + self.0.len())
    }
    #[inline]
    fn write(&self, out: &mut [u8]) -> bool {
        let mut vi = [0u8; 10];
        let vn = varint(self.0.len(), &mut vi);
        if out.len() != vn + self.0.len() {
            return false;
        }
        let (len, body) = out.split_at_mut(vn);
        len.copy_from_slice(&vi[..vn]);
        body.copy_from_slice(self.0);
        true
    }
}

#[inline]
fn varint_len(n: usize) -> usize {
    (usize::BITS - (n | 1).leading_zeros()).div_ceil(7) as usize
}

#[inline]
fn varint(mut n: usize, out: &mut [u8; 10]) -> usize {
    let mut i = 0;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out[i] = b;
            return i + 1;
        }
        out[i] = b | 0x80;
        i += 1;
    }
}

#[inline]
fn read_varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut n = 0usize;
    for (i, &byte) in b.iter().enumerate().take(10) {
        n |= ((byte & 0x7f) as usize).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

impl Sender<Bytes> {
    /// Send bytes from a slice (no intermediate `Vec`).
    pub fn send_slice(&self, data: &[u8]) -> Result<(), Error> {
        if self.core.send_plain(&RawBytes(data), Deadline::Forever).is_some() {
            return Ok(());
        }
        match self.send_full(&BytesRef(data), Deadline::Forever) {
            Ok(()) => Ok(()),
            Err(SendFail::Failed(e)) => Err(e),
            Err(_) => Err(Error::Io(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "disconnected"))),
        }
    }

    /// Loan room for a `len`-byte message in the channel's ring, to write
    /// in place; [`Loan::send`] publishes it, dropping the loan abandons it.
    /// Waits for a credit and for room like [`send`](Sender::send). While a
    /// loan is out, other producers of the channel wait.
    pub fn loan(&self, len: usize) -> Result<Loan<'_>, Error> {
        let end = &self
            .core
            .link
            .shm()
            .ok_or_else(|| {
                Error::Io(std::io::Error::new(std::io::ErrorKind::Unsupported, "loans need a shared-memory channel"))
            })?
            .end;
        let mut vi = [0u8; 10];
        let vn = varint(len, &mut vi);
        let frame_len = HEADER_LEN + vn + len;
        if frame_len > end.ring.max_message() {
            return Err(Error::TooLarge { size: len, limit: end.ring.max_message() - HEADER_LEN - 10 });
        }
        match self.acquire_for_loan() {
            Ok(()) => {}
            Err(SendFail::Failed(e)) => return Err(e),
            Err(_) => return Err(Error::Io(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "disconnected"))),
        }
        let bounded = match self.core.ctl.capacity() {
            crate::channel::ctl::Capacity::Bounded(n) => Some(n),
            _ => None,
        };
        // Unbounded: after the frames waiting in this process's outbox.
        let local = bounded.is_none().then(|| end.local.lock().unwrap_or_else(|p| p.into_inner()));
        let (lock, mut r) = loop {
            let lock = end.ring.lock_producers(&end.gone);
            let credit = bounded.is_none_or(|n| end.ring.below(n));
            if credit {
                match end.ring.try_reserve(frame_len) {
                    Ok(Some(r)) => break (lock, r),
                    Ok(None) => {}
                    Err(TooLarge) => unreachable!("size checked above"),
                }
            }
            drop(lock);
            // Wait for a credit or for room (producers of other processes
            // may take them between our check and our lock: loop).
            let ready =
                || bounded.is_none_or(|n| end.ring.below(n)) && matches!(end.ring.try_reserve(frame_len), Ok(Some(_)));
            let bell = if credit { end.ring.space_bell() } else { end.ring.credit_bell() };
            if !bell.wait(end.strategy, Deadline::Forever, &end.gone, ready) {
                self.core.ctl.give_back();
                return Err(Error::Io(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "disconnected")));
            }
        };
        let buf = end.ring.reserved_mut(&mut r);
        wire::write_plain_header(buf, vn + len);
        buf[HEADER_LEN..HEADER_LEN + vn].copy_from_slice(&vi[..vn]);
        let start = HEADER_LEN + vn;
        Ok(Loan { sender: self, reservation: Some(r), start, _lock: lock, _local: local })
    }
}

/// Room in a shared-memory ring, lent for writing one message in place.
pub struct Loan<'a> {
    sender: &'a Sender<Bytes>,
    reservation: Option<Reservation>,
    start: usize,
    _lock: RingLock<'a>,
    _local: Option<MutexGuard<'a, ()>>,
}

impl Loan<'_> {
    /// Publish the message.
    pub fn send(mut self) {
        let shm = self.sender.core.link.shm().expect("a loan comes from a ring");
        let end = &shm.end;
        if let Some(mut r) = self.reservation.take() {
            if end.checked {
                // The frame was written in place: its checksum now.
                let frame = end.ring.reserved_mut(&mut r);
                let (head, payload) = frame.split_at_mut(HEADER_LEN);
                wire::write_header(head, Kind::Data, 0, payload, &[]);
            }
            end.ring.commit(r);
            shm.ring_doorbell();
        }
    }
}

impl Deref for Loan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let end = &self.sender.core.link.shm().expect("ring").end;
        &end.ring.reserved(self.reservation.as_ref().expect("not sent"))[self.start..]
    }
}

impl DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let end = &self.sender.core.link.shm().expect("ring").end;
        &mut end.ring.reserved_mut(self.reservation.as_mut().expect("not sent"))[self.start..]
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        if self.reservation.take().is_some() {
            // Abandoned: nothing was published; a rendezvous token goes
            // back (bounded credits are counted at commit, so none was taken).
            self.sender.core.ctl.give_back();
            if let Some(shm) = self.sender.core.link.shm() {
                shm.end.ring.credit_bell().ring();
            }
        }
    }
}

/// A received message, read where it lies in the ring; its room goes back
/// to the producers when this is dropped.
pub struct InPlace<'a> {
    end: &'a RingEnd,
    record: Option<Record>,
    /// The message's bytes, in the ring (found once, at receipt).
    data: &'a [u8],
}

impl<'a> InPlace<'a> {
    #[inline]
    fn new(end: &'a RingEnd, record: Record, start: usize, len: usize) -> InPlace<'a> {
        let data = &end.ring.payload(&record)[start..start + len];
        InPlace { end, record: Some(record), data }
    }
}

impl Deref for InPlace<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.data
    }
}

impl Drop for InPlace<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(r) = self.record.take() {
            self.end.ring.release(r);
        }
    }
}

impl Receiver<Bytes> {
    /// Receive a message and read it where it lies in the ring
    /// (shared-memory channels only). Waits like [`recv`](Receiver::recv).
    /// A message with rights or an out-of-line payload is rejected (and
    /// dropped) here: receive those with `recv`.
    pub fn recv_in_place(&mut self) -> Result<InPlace<'_>, RecvError> {
        let end = &self
            .shm()
            .ok_or_else(|| {
                RecvError::Failed(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "in-place receive needs a shared-memory channel",
                )))
            })?
            .end;
        if end.checked {
            return Err(RecvError::Failed(Error::Io(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "a checked channel copies each message out before reading it: receive with recv",
            ))));
        }
        self.begin();
        loop {
            match end.ring.peek() {
                Err(c) => return Err(RecvError::Failed(WireError::BadRing(c.0).into())),
                Ok(Some(record)) => {
                    let frame = end.ring.payload(&record);
                    // A plain frame (the common case) in one compare.
                    if let Some(body) = wire::plain_ring_payload(frame)
                        && let Some((n, vn)) = read_varint(body)
                        && vn + n == body.len()
                    {
                        self.credit_taken();
                        return Ok(InPlace::new(end, record, HEADER_LEN + vn, n));
                    }
                    // Anything else: the pure step every receive path
                    // shares, then what an in-place read needs.
                    let parsed = wire::parse_frame(frame, true, self.max_message()).and_then(|v| {
                        let body = match v.inline {
                            Some(body) if v.descriptors == 0 => body,
                            _ => return Err(WireError::Descriptors { declared: v.descriptors, actual: 0 }),
                        };
                        let (n, vn) = read_varint(body).ok_or(WireError::Truncated(body.len()))?;
                        if vn + n != body.len() {
                            return Err(WireError::Length { declared: body.len(), actual: vn + n });
                        }
                        Ok((HEADER_LEN + vn, n))
                    });
                    self.credit_taken();
                    return match parsed {
                        Ok((start, len)) => Ok(InPlace::new(end, record, start, len)),
                        Err(e) => {
                            end.ring.release(record);
                            Err(RecvError::Failed(e.into()))
                        }
                    };
                }
                Ok(None) => {
                    if end.is_gone() {
                        if end.ring.has_data() {
                            continue;
                        }
                        return Err(RecvError::Disconnected);
                    }
                    end.ring.data_bell().wait(end.strategy, Deadline::Forever, &end.gone, || end.ring.has_data());
                }
            }
        }
    }
}
