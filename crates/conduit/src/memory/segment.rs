//! Shared-memory segments.
//!
//! [`Segment`] is the default: an anonymous memfd, sized and sealed
//! against shrinking or growing *before* anyone else sees it, mapped, and
//! shared only by passing it inside a message (a right, like a port). It
//! has no name anywhere, so a process that was not handed it cannot attach
//! it, and nothing is left behind when the last holder exits, even after
//! `kill -9`.
//!
//! [`NamedSegment`] is POSIX `shm_open` for interoperating with programs
//! that use it: explicit permission bits, explicit [`NamedSegment::unlink`].

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, WireError};
use crate::rights::{self, RightKind};
use crate::sys::memfd::{self, Mapping, SIZE_SEALS};
use crate::sys::socket;

/// A sealed, anonymous shared-memory segment.
///
/// Pass it to another process inside a message: only a process handed it
/// can map it (no name anywhere).
///
/// ```
/// use conduit::memory::Segment;
/// let seg = Segment::new(4096)?;
/// seg.write_at(0, b"shared")?;
/// let (tx, rx) = conduit::unbounded::<Segment>()?;
/// tx.send(seg).unwrap(); // travels as its descriptor
/// let got = rx.recv().unwrap();
/// let mut out = [0u8; 6];
/// got.read_at(0, &mut out)?;
/// assert_eq!(&out, b"shared");
/// # Ok::<(), conduit::Error>(())
/// ```
pub struct Segment {
    fd: OwnedFd,
    map: Mapping,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment").field("len", &self.len()).finish_non_exhaustive()
    }
}

impl Segment {
    /// A new zero-filled segment of `len` bytes, sealed against resizing.
    pub fn new(len: usize) -> Result<Segment, Error> {
        Segment::create(len, false)
    }

    /// A new segment with every page faulted in now (no first-touch
    /// faults later, at the price of committing the memory at once).
    pub fn new_populated(len: usize) -> Result<Segment, Error> {
        Segment::create(len, true)
    }

    fn create(len: usize, populate: bool) -> Result<Segment, Error> {
        if len == 0 {
            return Err(Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty segment")));
        }
        let fd = memfd::memfd("conduit-segment", len as u64)?;
        memfd::seal(fd.as_fd(), SIZE_SEALS)?;
        let map = if populate { Mapping::new_populated(fd.as_fd(), len)? } else { Mapping::new(fd.as_fd(), len)? };
        Ok(Segment { fd, map })
    }

    /// Map a segment received from elsewhere, after checking its seals:
    /// a sender cannot shrink it under us (which would make reads fault).
    pub(crate) fn adopt(fd: OwnedFd, index: usize) -> Result<Segment, WireError> {
        Segment::adopt_with(fd, index, false)
    }

    /// [`adopt`](Self::adopt), optionally faulting every page in now.
    pub(crate) fn adopt_with(fd: OwnedFd, index: usize, populate: bool) -> Result<Segment, WireError> {
        let bad = |why| WireError::BadRight { index, why };
        let len = match memfd::size_if_sealed(fd.as_fd(), SIZE_SEALS) {
            Ok(Some(0)) => return Err(bad("segment is empty")),
            Ok(Some(n)) => n as usize,
            _ => return Err(bad("segment is not a memfd sealed against resizing")),
        };
        let map = if populate { Mapping::new_populated(fd.as_fd(), len) } else { Mapping::new(fd.as_fd(), len) };
        let map = map.map_err(|_| bad("segment cannot be mapped"))?;
        Ok(Segment { fd, map })
    }

    /// Another handle to the same memory (a duplicated descriptor and a
    /// second mapping).
    pub fn try_clone(&self) -> Result<Segment, Error> {
        let fd = socket::dup(&self.fd)?;
        let map = Mapping::new(fd.as_fd(), self.len())?;
        Ok(Segment { fd, map })
    }

    /// Size in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never true: segments are at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Copy bytes out of the segment. Fails if the range is outside it.
    pub fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<(), Error> {
        if self.map.read_at(offset, out) { Ok(()) } else { Err(out_of_bounds(offset, out.len(), self.len())) }
    }

    /// Copy bytes into the segment. Fails if the range is outside it.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), Error> {
        if self.map.write_at(offset, data) { Ok(()) } else { Err(out_of_bounds(offset, data.len(), self.len())) }
    }

    /// The 32-bit atomic at `offset`, for protocols of your own over the
    /// segment (e.g. a futex word). Panics if misaligned or out of bounds.
    #[inline]
    pub fn atomic_u32(&self, offset: usize) -> &std::sync::atomic::AtomicU32 {
        self.map.atomic_u32(offset)
    }

    /// The 64-bit atomic at `offset`. Panics if misaligned or out of bounds.
    #[inline]
    pub fn atomic_u64(&self, offset: usize) -> &std::sync::atomic::AtomicU64 {
        self.map.atomic_u64(offset)
    }

    /// The start of the mapping, for code that shares memory by hand.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// The whole segment as a byte slice.
    ///
    /// # Safety
    /// No process may write the segment while the slice lives.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is valid for `len` bytes while `self` lives;
        // the caller guarantees nobody writes meanwhile.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }

    /// The whole segment as a mutable byte slice.
    ///
    /// # Safety
    /// No other process or thread may read or write the segment while the
    /// slice lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: as for `as_slice`, with exclusive access guaranteed by
        // the caller.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len()) }
    }

    #[inline]
    pub(crate) fn mapping(&self) -> &Mapping {
        &self.map
    }

    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn out_of_bounds(offset: usize, len: usize, size: usize) -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("range {offset}..{} is outside the {size}-byte segment", offset.saturating_add(len)),
    ))
}

impl AsFd for Segment {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fd = socket::dup(&self.fd).map_err(serde::ser::Error::custom)?;
        let index = rights::push(RightKind::Segment, vec![fd]).map_err(serde::ser::Error::custom)?;
        s.serialize_u32(index)
    }
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(d)?;
        rights::take_segment(index).map_err(serde::de::Error::custom)
    }
}

/// A POSIX named shared-memory object (`shm_open`), for interoperating
/// with programs that use names. It persists until [`unlink`](Self::unlink)ed.
#[derive(Debug)]
pub struct NamedSegment {
    name: String,
    seg: Segment,
}

impl NamedSegment {
    /// Create `name` (e.g. `/my-seg`) with `len` bytes and permission bits
    /// `mode`; fails if it exists.
    pub fn create(name: &str, len: usize, mode: u32) -> Result<NamedSegment, Error> {
        use rustix::fs::Mode;
        use rustix::shm::OFlags;
        let fd = rustix::shm::open(name, OFlags::CREATE | OFlags::EXCL | OFlags::RDWR, Mode::from_raw_mode(mode))?;
        // The umask may have cleared bits: set exactly what was asked.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        let map = Mapping::new(fd.as_fd(), len)?;
        Ok(NamedSegment { name: name.to_string(), seg: Segment { fd, map } })
    }

    /// Open an existing `name` read-write.
    pub fn open(name: &str) -> Result<NamedSegment, Error> {
        use rustix::fs::Mode;
        use rustix::shm::OFlags;
        let fd = rustix::shm::open(name, OFlags::RDWR, Mode::empty())?;
        let len = rustix::fs::fstat(&fd)?.st_size as usize;
        let map = Mapping::new(fd.as_fd(), len)?;
        Ok(NamedSegment { name: name.to_string(), seg: Segment { fd, map } })
    }

    /// Remove the name (the memory lives on while mapped).
    pub fn unlink(name: &str) -> Result<(), Error> {
        Ok(rustix::shm::unlink(name)?)
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The mapped memory.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}
