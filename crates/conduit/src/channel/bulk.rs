//! Bulk buffers: the sender's reusable memory files for large payloads.
//!
//! A payload too large for the frame travels out of line, in a memfd
//! passed with the frame. A fresh memfd per message costs the kernel a
//! page allocation and a free for every 4 KiB of it, and the receiver a
//! mapping; for a stream of large messages that is most of the cost. So
//! each sender keeps a few memfds of its own — its *bulk buffers* — and
//! writes large payloads into one that its receiver has handed back:
//!
//! ```text
//!  offset 0   u32  state: 0 = free (the receiver is done), 1 = in use
//!  offset 64       the payload (the frame's `length` bytes)
//! ```
//!
//! The frame carries the `OUT_OF_LINE | BULK` flags. The receiver checks
//! the memfd (sealed against resizing, large enough), **copies** the
//! payload into its own memory before reading any of it — the sender can
//! still write the buffer, so nothing is decoded in place — and then
//! writes 0 to the state word. A buffer whose receiver never hands it back
//! (it died, or refused the frame) is simply not reused; when no buffer is
//! free, the payload goes the old way, in a memfd of its own sealed
//! against writes. Sending never waits for a buffer.

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::{Arc, Mutex};

use crate::sys::memfd::{self, Mapping};

/// Where the payload starts in a bulk buffer.
pub const PAYLOAD_AT: u64 = 64;
/// Buffers a sender keeps at most, and their bytes at most.
const MOST: usize = 32;
const MOST_BYTES: u64 = 64 << 20;
/// Smallest buffer made (larger payloads get a buffer their size).
const SMALLEST: u64 = 1 << 20;
const FREE: u32 = 0;
const IN_USE: u32 = 1;

/// One buffer: the file, its size, and its mapping (the payload is
/// copied in, the state word read and set, without a system call).
#[derive(Debug)]
struct Buf {
    file: OwnedFd,
    len: u64,
    map: Arc<Mapping>,
}

impl Buf {
    fn new(len: u64) -> io::Result<Buf> {
        let file = memfd::bulk_buffer(len)?;
        let map = Arc::new(Mapping::new_populated(file.as_fd(), len as usize)?);
        Ok(Buf { file, len, map })
    }

    fn state(&self) -> &AtomicU32 {
        self.map.atomic_u32(0)
    }
}

/// One sender's bulk buffers.
#[derive(Debug, Default)]
pub(crate) struct BulkPool {
    bufs: Mutex<Vec<Buf>>,
}

impl BulkPool {
    /// Write a `len`-byte payload (by `fill`) into a free buffer, or make
    /// one; `None` if none is free and the pool is full (the caller sends
    /// the payload in a memfd of its own). Returns a duplicate descriptor
    /// of the buffer, to go with the frame.
    pub fn write<E: std::fmt::Display>(
        &self,
        len: usize,
        fill: impl FnOnce(&mut At) -> Result<(), E>,
    ) -> Option<io::Result<OwnedFd>> {
        let need = PAYLOAD_AT + len as u64;
        let (file, state) = {
            let mut bufs = self.bufs.lock().unwrap_or_else(|p| p.into_inner());
            let free = |b: &Buf| b.state().load(Acquire) == FREE;
            let at = match bufs.iter().position(|b| free(b) && b.len >= need) {
                Some(i) => i,
                None => {
                    // Replace a free buffer that is too small, or add one,
                    // within the pool's limits.
                    let small = bufs.iter().position(free);
                    let size = need.max(SMALLEST).next_power_of_two();
                    let held: u64 = bufs.iter().map(|b| b.len).sum::<u64>() - small.map_or(0, |i| bufs[i].len);
                    if (small.is_none() && bufs.len() >= MOST) || held + size > MOST_BYTES {
                        return None;
                    }
                    let made = match Buf::new(size) {
                        Ok(b) => b,
                        Err(e) => return Some(Err(e)),
                    };
                    match small {
                        Some(i) => {
                            bufs[i] = made;
                            i
                        }
                        None => {
                            bufs.push(made);
                            bufs.len() - 1
                        }
                    }
                }
            };
            bufs[at].state().store(IN_USE, Release);
            match bufs[at].file.try_clone() {
                Ok(f) => ((f, Arc::clone(&bufs[at].map)), at),
                Err(e) => {
                    bufs[at].state().store(FREE, Release);
                    return Some(Err(e));
                }
            }
        };
        let (file, map) = file;
        let mut w = At { map, pos: PAYLOAD_AT as usize };
        let filled = fill(&mut w).map_err(|e| io::Error::other(e.to_string()));
        let end = w.pos as u64;
        drop(w);
        let checked = filled.and_then(|()| {
            if end == need {
                Ok(())
            } else {
                Err(io::Error::other("the message encoded to another size than measured"))
            }
        });
        Some(match checked {
            Ok(()) => Ok(file),
            Err(e) => {
                // Never sent: free again.
                let bufs = self.bufs.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(b) = bufs.get(state) {
                    b.state().store(FREE, Release);
                }
                Err(e)
            }
        })
    }
}

/// Writes into a bulk buffer's mapping at an advancing offset.
pub(crate) struct At {
    map: Arc<Mapping>,
    pos: usize,
}

impl Write for At {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.map.write_at(self.pos, buf) {
            return Err(io::Error::other("the message outgrew its bulk buffer"));
        }
        self.pos += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The receivers' mappings of bulk buffers they met, by receiver and file
/// identity (a mapping keeps its file, so an identity cannot be reused
/// while here). A receiver's entries go with it ([`Owner`]'s drop): the
/// buffers of a sender that died are not kept mapped for the process's
/// life.
static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

/// A bulk buffer met before: the receiver that met it, its file's
/// (device, inode), and its mapping.
type Seen = (u64, (u64, u64), Arc<Mapping>);
/// Buffers a receiving process keeps mapped at most, and one receiver.
const SEEN_MOST: usize = 64;
const SEEN_EACH: usize = 8;

/// A receiver's claim on the cache of mappings: its entries are unmapped
/// when it drops.
#[derive(Debug)]
pub(crate) struct Owner(u64);

impl Owner {
    pub fn new() -> Owner {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Owner(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }

    pub fn id(&self) -> u64 {
        self.0
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        SEEN.lock().unwrap_or_else(|p| p.into_inner()).retain(|(o, _, _)| *o != self.0);
    }
}

/// Receiver `owner`: copy the `len`-byte payload of bulk buffer `fd` into
/// `out` and hand the buffer back to its sender. The buffer must be a
/// memfd sealed against resizing and large enough (checked first; nothing
/// is read or written otherwise). Buffers met before are read through the
/// mapping made then.
pub(crate) fn take(owner: u64, fd: &OwnedFd, len: usize, out: &mut Vec<u8>) -> Result<(), &'static str> {
    let need = PAYLOAD_AT as usize + len;
    let Some((size, id)) = memfd::sealed_identity(fd.as_fd(), memfd::SIZE_SEALS) else {
        return Err("bulk buffer is not a memfd sealed against resizing");
    };
    if size < need as u64 {
        return Err("bulk buffer is smaller than its payload");
    }
    let map = {
        let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
        match seen.iter().position(|(o, i, m)| *o == owner && *i == id && m.len() >= need) {
            Some(at) => Arc::clone(&seen[at].2),
            None => {
                // Map what this payload needs (a file may be far larger
                // than what it carries: map no more than asked).
                let map = Arc::new(Mapping::new(fd.as_fd(), need).map_err(|_| "bulk buffer cannot be mapped")?);
                seen.retain(|(o, i, _)| !(*o == owner && *i == id));
                // The oldest of this receiver's, else the oldest of all.
                let mine = seen.iter().filter(|(o, _, _)| *o == owner).count();
                if mine >= SEEN_EACH {
                    let at = seen.iter().position(|(o, _, _)| *o == owner).expect("counted");
                    seen.remove(at);
                } else if seen.len() >= SEEN_MOST {
                    seen.remove(0);
                }
                seen.push((owner, id, Arc::clone(&map)));
                map
            }
        }
    };
    out.clear();
    out.resize(len, 0);
    if !map.read_at(PAYLOAD_AT as usize, out) {
        return Err("bulk buffer is smaller than its payload");
    }
    map.atomic_u32(0).store(FREE, Release);
    Ok(())
}

/// Receiver: tell the sender its buffer is free again (a frame refused
/// before its payload was read, too). Only for a sealed memfd.
pub(crate) fn hand_back(fd: &OwnedFd) {
    if let Ok(Some(n)) = memfd::size_if_sealed(fd.as_fd(), memfd::SIZE_SEALS)
        && n >= PAYLOAD_AT
    {
        let _ = memfd::write_all_at(fd.as_fd(), 0, &FREE.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped_by(owner: u64) -> usize {
        SEEN.lock().unwrap().iter().filter(|(o, _, _)| *o == owner).count()
    }

    /// A receiver's mappings of a sender's buffers go with the receiver:
    /// a sender that died (its pool dropped here) leaves nothing mapped.
    #[test]
    fn a_receivers_mappings_of_bulk_buffers_go_with_it() {
        let (a, b) = (Owner::new(), Owner::new());
        let pool = BulkPool::default();
        let payload = vec![7u8; 100 << 10];
        let fd = pool
            .write(payload.len(), |w| w.write_all(&payload).map_err(|e| e.to_string()))
            .expect("a free buffer")
            .unwrap();
        let mut out = Vec::new();
        take(a.id(), &fd, payload.len(), &mut out).unwrap();
        assert_eq!(out, payload);
        take(b.id(), &fd, payload.len(), &mut out).unwrap();
        assert_eq!((mapped_by(a.id()), mapped_by(b.id())), (1, 1));
        drop(pool);
        drop(fd);
        let id = a.id();
        drop(a);
        assert_eq!((mapped_by(id), mapped_by(b.id())), (0, 1), "only the dropped receiver's went");
        // One receiver keeps at most SEEN_EACH, the oldest going first.
        for _ in 0..SEEN_EACH + 3 {
            let fresh = memfd::bulk_buffer(1 << 20).unwrap();
            take(b.id(), &fresh, 10, &mut out).unwrap();
        }
        assert_eq!(mapped_by(b.id()), SEEN_EACH);
        let id = b.id();
        drop(b);
        assert_eq!(mapped_by(id), 0);
    }
}
