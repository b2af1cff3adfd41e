//! The channel's control block: one sealed 4 KiB memfd shared by the
//! receiver and every sender, wherever they live.
//!
//! It holds the capacity and the credit counter, so that capacity is exact
//! across processes without a round trip per message:
//!
//! * `bounded(n)`: `count` = messages sent and not yet received. A sender
//!   takes a credit by raising it while it is below `n`; the receiver gives
//!   one back after taking a message.
//! * `bounded(0)` (rendezvous): `count` = receivers waiting right now. A
//!   receiver entering `recv` offers a token; a sender may send only by
//!   taking one, so a message is written only when a receiver is there.
//! * `unbounded()`: `count` is unused.
//!
//! A sender that finds no credit registers in `waiters` and sleeps in
//! `poll` on its link's bell (the socket itself, or a pipe's bell pipe);
//! whoever makes a credit available while `waiters` is non-zero rings it
//! (`release` and `offer` say when: the caller rings its link). `poll`
//! wakes every sleeping sender, and a sender consumes a wake only after a
//! failed check, so no wake-up is lost; and since it sleeps on the link,
//! it also sees the receiver die (`POLLHUP`/`POLLERR`) at once. When
//! nobody waits, no syscall is made for flow control at all.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicU32, AtomicU64};

use std::sync::Arc;

use crate::error::WireError;
use crate::memory::Segment;
use crate::memory::ring::{OFF_CTL, Ring};
use crate::sys::memfd::{self, Mapping, SIZE_SEALS};

const CTL_MAGIC: u32 = 0xC0D1_C7A1;
const CTL_VERSION: u32 = 1;
const CTL_LEN: usize = 4096;
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_CAPACITY: usize = 8;
// Hot counters on cache lines of their own.
const OFF_COUNT: usize = 64;
const OFF_WAITERS: usize = 128;
/// Messages senders put into a socket link, counted by senders that share
/// this block (`OFF_COUNTED` = 1 says they do): a spinning receiver reads
/// it instead of calling `recvmsg` again and again.
const OFF_SENT: usize = 192;
const OFF_COUNTED: usize = 200;
/// 24 bytes a link may keep here (a System V channel: its queue's id and
/// the cookie that proves it).
const OFF_LINK: usize = 256;
const UNBOUNDED: u64 = u64::MAX;

/// How many messages a channel buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capacity {
    /// Rendezvous: a send completes only when a receiver takes it.
    Zero,
    /// At most `n` unreceived messages.
    Bounded(u64),
    /// No limit: `send` never blocks.
    Unbounded,
}

/// Check a control block's first 16 bytes (magic, version, capacity):
/// pure, for any bytes.
pub fn parse_header(head: &[u8; 16]) -> Result<Capacity, &'static str> {
    let word = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().expect("4 bytes"));
    if word(OFF_MAGIC) != CTL_MAGIC || word(OFF_VERSION) != CTL_VERSION {
        return Err("control block has a bad magic or version");
    }
    Ok(match u64::from_le_bytes(head[OFF_CAPACITY..OFF_CAPACITY + 8].try_into().expect("8 bytes")) {
        0 => Capacity::Zero,
        UNBOUNDED => Capacity::Unbounded,
        n => Capacity::Bounded(n),
    })
}

/// A mapped control block.
#[derive(Debug)]
pub struct Ctl {
    mem: Mem,
    capacity: Capacity,
}

/// Where a control block lives.
#[derive(Debug)]
enum Mem {
    /// A memfd of its own (socket, pipe and queue channels), shared by
    /// the ends made in this process.
    Own(Arc<(OwnedFd, Mapping)>),
    /// In a shared-memory channel's ring header, at `base`: one memfd
    /// for both, so an end costs two descriptors (its socket, its ring).
    InRing { seg: Arc<Segment>, base: usize },
}

impl Ctl {
    /// A new control block for a channel of `capacity`.
    pub fn create(capacity: Capacity) -> io::Result<Ctl> {
        let fd = memfd::memfd("conduit-ctl", CTL_LEN as u64)?;
        memfd::seal(fd.as_fd(), SIZE_SEALS)?;
        let map = Mapping::new(fd.as_fd(), CTL_LEN)?;
        let ctl = Ctl { mem: Mem::Own(Arc::new((fd, map))), capacity };
        ctl.write_header(capacity);
        Ok(ctl)
    }

    fn write_header(&self, capacity: Capacity) {
        let raw = match capacity {
            Capacity::Zero => 0,
            Capacity::Bounded(n) => n,
            Capacity::Unbounded => UNBOUNDED,
        };
        self.u64_at(OFF_CAPACITY).store(raw, SeqCst);
        self.u32_at(OFF_VERSION).store(CTL_VERSION, SeqCst);
        self.u32_at(OFF_MAGIC).store(CTL_MAGIC, SeqCst);
    }

    /// A new control block in the header of a shared-memory channel's
    /// ring (before the ring is shared).
    pub fn create_in_ring(ring: &Ring, capacity: Capacity) -> Ctl {
        let ctl = Ctl { mem: Mem::InRing { seg: ring.shared_segment(), base: OFF_CTL }, capacity };
        ctl.write_header(capacity);
        ctl
    }

    /// The control block in the header of a ring received from another
    /// process, its header checked like [`adopt`](Self::adopt)'s.
    pub fn adopt_in_ring(ring: &Ring, index: usize) -> Result<Ctl, WireError> {
        let seg = ring.shared_segment();
        let mut head = [0u8; 16];
        seg.read_at(OFF_CTL, &mut head).map_err(|_| WireError::BadRight { index, why: "ring segment is too small" })?;
        let capacity = parse_header(&head).map_err(|why| WireError::BadRight { index, why })?;
        Ok(Ctl { mem: Mem::InRing { seg, base: OFF_CTL }, capacity })
    }

    /// Another handle on the same control block, for the other end of a
    /// channel made in this process: the same descriptor and mapping.
    pub fn share(&self) -> io::Result<Ctl> {
        let mem = match &self.mem {
            Mem::Own(own) => Mem::Own(Arc::clone(own)),
            Mem::InRing { seg, base } => Mem::InRing { seg: Arc::clone(seg), base: *base },
        };
        Ok(Ctl { mem, capacity: self.capacity })
    }

    #[inline]
    fn u64_at(&self, off: usize) -> &AtomicU64 {
        match &self.mem {
            Mem::Own(own) => own.1.atomic_u64(off),
            Mem::InRing { seg, base } => seg.atomic_u64(base + off),
        }
    }

    #[inline]
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        match &self.mem {
            Mem::Own(own) => own.1.atomic_u32(off),
            Mem::InRing { seg, base } => seg.atomic_u32(base + off),
        }
    }

    /// Map a control block received from another process, checking that it
    /// is a sealed memfd of the right size and layout.
    pub fn adopt(fd: OwnedFd, index: usize) -> Result<Ctl, WireError> {
        let bad = |why| WireError::BadRight { index, why };
        match memfd::size_if_sealed(fd.as_fd(), SIZE_SEALS) {
            Ok(Some(n)) if n == CTL_LEN as u64 => {}
            Ok(Some(_)) => return Err(bad("control block has the wrong size")),
            _ => return Err(bad("control block is not a sealed memfd")),
        }
        let map = Mapping::new(fd.as_fd(), CTL_LEN).map_err(|_| bad("control block cannot be mapped"))?;
        // A copy of the header, then the pure check of its bytes.
        let mut head = [0u8; 16];
        map.read_at(OFF_MAGIC, &mut head);
        let capacity = parse_header(&head).map_err(bad)?;
        Ok(Ctl { mem: Mem::Own(Arc::new((fd, map))), capacity })
    }

    /// The link's 24 bytes (written once by the channel's creator; a peer
    /// may have written anything: the link checks what it reads).
    pub fn link_data(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        for (i, chunk) in out.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&self.u64_at(OFF_LINK + 8 * i).load(SeqCst).to_ne_bytes());
        }
        out
    }

    /// Set the link's 24 bytes (at creation, before the channel is shared).
    pub fn set_link_data(&self, data: &[u8; 24]) {
        for (i, chunk) in data.chunks(8).enumerate() {
            let word = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
            self.u64_at(OFF_LINK + 8 * i).store(word, SeqCst);
        }
    }

    /// The descriptor, to pass along with a right (`None` for a control
    /// block in a ring: it travels with the ring).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.mem {
            Mem::Own(own) => Some(own.0.as_fd()),
            Mem::InRing { .. } => None,
        }
    }

    /// The channel's capacity.
    #[inline]
    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    #[inline]
    fn count(&self) -> &AtomicU64 {
        self.u64_at(OFF_COUNT)
    }

    fn waiters(&self) -> &AtomicU32 {
        self.u32_at(OFF_WAITERS)
    }

    /// Messages sent and not yet received (bounded channels).
    pub fn queued(&self) -> u64 {
        match self.capacity {
            Capacity::Bounded(_) => self.count().load(SeqCst),
            _ => 0,
        }
    }

    /// Sender: take the right to write one message, if there is one now.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        let count = self.count();
        match self.capacity {
            Capacity::Unbounded => true,
            Capacity::Bounded(n) => count.fetch_update(SeqCst, SeqCst, |c| (c < n).then(|| c + 1)).is_ok(),
            Capacity::Zero => count.fetch_update(SeqCst, SeqCst, |c| c.checked_sub(1)).is_ok(),
        }
    }

    /// Sender: register as sleeping; the guard unregisters.
    pub fn wait_guard(&self) -> WaitGuard<'_> {
        self.waiters().fetch_add(1, SeqCst);
        WaitGuard(self)
    }

    /// Sender: return a credit or token taken but not used.
    pub fn give_back(&self) {
        match self.capacity {
            Capacity::Bounded(_) => {
                let _ = self.count().fetch_update(SeqCst, SeqCst, |c| c.checked_sub(1));
            }
            Capacity::Zero => {
                self.count().fetch_add(1, SeqCst);
            }
            Capacity::Unbounded => {}
        }
    }

    /// Receiver: one message was taken from a bounded channel. `true`:
    /// senders sleep, ring the link.
    #[must_use]
    pub fn release(&self) -> bool {
        if let Capacity::Bounded(_) = self.capacity {
            // Saturating: a hostile sender may write without a credit.
            let _ = self.count().fetch_update(SeqCst, SeqCst, |c| c.checked_sub(1));
            return self.senders_wait();
        }
        false
    }

    /// Receiver of a rendezvous channel: offer one token. `true`: senders
    /// sleep, ring the link.
    #[must_use]
    pub fn offer(&self) -> bool {
        self.count().fetch_add(1, SeqCst);
        self.senders_wait()
    }

    /// Receiver of a rendezvous channel: take the token back. `false` means
    /// a sender already took it, so its message is on the way.
    pub fn retract(&self) -> bool {
        self.count().fetch_update(SeqCst, SeqCst, |c| c.checked_sub(1)).is_ok()
    }

    /// Sender of a stream link (a private control block): the receiver
    /// granted `k` more — credits returned (bounded) or tokens offered
    /// (rendezvous).
    pub fn grant(&self, k: u64) {
        match self.capacity {
            Capacity::Bounded(_) => {
                let _ = self.count().fetch_update(SeqCst, SeqCst, |c| Some(c.saturating_sub(k)));
            }
            Capacity::Zero => {
                let _ = self.count().fetch_update(SeqCst, SeqCst, |c| Some(c.saturating_add(k)));
            }
            Capacity::Unbounded => {}
        }
    }

    /// At creation: every sender of this channel counts what it puts in
    /// its socket ([`note_sent`](Self::note_sent)).
    pub fn count_sends(&self) {
        self.u32_at(OFF_COUNTED).store(1, SeqCst);
    }

    /// Sender: one more message is on its way into the link (counted just
    /// before the send, so that a spinning receiver starts its receive
    /// while the send is under way).
    #[inline]
    pub fn note_sent(&self) {
        self.u64_at(OFF_SENT).fetch_add(1, Release);
    }

    /// Sender: the message just counted did not go (the link was full, or
    /// failed): take the count back.
    #[inline]
    pub fn unnote_sent(&self) {
        self.u64_at(OFF_SENT).fetch_sub(1, Release);
    }

    /// Receiver: the senders' count, if they keep one — a hint only (a
    /// hostile sender may not count, or count wrong): a receiver that sees
    /// it unchanged still sleeps on its link in the end.
    #[inline]
    pub fn sent_hint(&self) -> Option<u64> {
        (self.u32_at(OFF_COUNTED).load(Relaxed) == 1).then(|| self.u64_at(OFF_SENT).load(Acquire))
    }

    fn senders_wait(&self) -> bool {
        self.waiters().load(SeqCst) > 0
    }
}

/// Keeps a sender counted in `waiters` while it sleeps.
pub struct WaitGuard<'a>(&'a Ctl);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.waiters().fetch_sub(1, SeqCst);
    }
}
