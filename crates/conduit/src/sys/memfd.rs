//! Anonymous, sealed memory files (`memfd`) and shared mappings.

use std::ffi::c_void;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

/// Seals that fix a memfd's size for good.
pub const SIZE_SEALS: SealFlags = SealFlags::SHRINK.union(SealFlags::GROW).union(SealFlags::SEAL);

/// Seals that also make its content immutable.
pub const CONTENT_SEALS: SealFlags = SIZE_SEALS.union(SealFlags::WRITE);

/// A new anonymous memory file of `len` bytes, zero-filled, close-on-exec,
/// sealable. Nothing appears in any file system.
pub fn memfd(name: &str, len: u64) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    rustix::fs::ftruncate(&fd, len)?;
    Ok(fd)
}

/// Add `seals` to a memfd.
pub fn seal(fd: BorrowedFd<'_>, seals: SealFlags) -> io::Result<()> {
    Ok(rustix::fs::fcntl_add_seals(fd, seals)?)
}

/// Size of a file and whether it carries all of `seals`.
pub fn size_if_sealed(fd: BorrowedFd<'_>, seals: SealFlags) -> io::Result<Option<u64>> {
    let have = match rustix::fs::fcntl_get_seals(fd) {
        Ok(s) => s,
        Err(rustix::io::Errno::INVAL) => return Ok(None), // not a memfd
        Err(e) => return Err(e.into()),
    };
    if !have.contains(seals) {
        return Ok(None);
    }
    Ok(Some(rustix::fs::fstat(fd)?.st_size as u64))
}

/// Size and identity (device, inode) of a memfd carrying all of `seals`.
pub fn sealed_identity(fd: BorrowedFd<'_>, seals: SealFlags) -> Option<(u64, (u64, u64))> {
    let have = rustix::fs::fcntl_get_seals(fd).ok()?;
    if !have.contains(seals) {
        return None;
    }
    let st = rustix::fs::fstat(fd).ok()?;
    Some((st.st_size as u64, (st.st_dev, st.st_ino)))
}

/// A memfd holding exactly `data`, sealed against any change.
pub fn sealed_copy(name: &str, data: &[u8]) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    let mut file = File::from(fd);
    file.write_all(data)?;
    let fd = OwnedFd::from(file);
    seal(fd.as_fd(), CONTENT_SEALS)?;
    Ok(fd)
}

/// A memfd of `len` bytes for a sender's bulk buffer: sealed against
/// resizing (so a receiver can trust its size), not against writes.
pub fn bulk_buffer(len: u64) -> io::Result<OwnedFd> {
    let fd = memfd("conduit-bulk", len)?;
    seal(fd.as_fd(), SIZE_SEALS)?;
    Ok(fd)
}

/// Write all of `data` to `fd` at `offset` (`pwrite`).
pub fn write_all_at(fd: BorrowedFd<'_>, mut offset: u64, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::pwrite(fd, data, offset) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => {
                data = &data[n..];
                offset += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A memfd of exactly `len` bytes written by `fill` (through a buffered
/// writer, large writes going straight to the file), then sealed against
/// any change. Fails if `fill` wrote another number of bytes.
pub fn sealed_with<E: std::fmt::Display>(
    name: &str,
    len: usize,
    fill: impl FnOnce(&mut io::BufWriter<&File>) -> Result<(), E>,
) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    let file = File::from(fd);
    let mut w = io::BufWriter::with_capacity(64 * 1024, &file);
    fill(&mut w).map_err(|e| io::Error::other(e.to_string()))?;
    w.flush()?;
    drop(w);
    if file.metadata()?.len() != len as u64 {
        return Err(io::Error::other("the message encoded to another size than measured"));
    }
    let fd = OwnedFd::from(file);
    seal(fd.as_fd(), CONTENT_SEALS)?;
    Ok(fd)
}

/// Map `len` bytes of a sealed memory file read-only (the caller checked
/// its seals and size with [`size_if_sealed`]).
pub fn map_sealed(fd: OwnedFd, len: usize) -> io::Result<SealedView> {
    if len == 0 {
        return Ok(SealedView { map: None });
    }
    let map = Mapping::map_with(fd.as_fd(), len, ProtFlags::READ, MapFlags::SHARED | MapFlags::POPULATE)?;
    Ok(SealedView { map: Some(map) })
}

/// A read-only mapping of a memory file whose content is sealed
/// ([`CONTENT_SEALS`]: no write, no shrink): its bytes cannot change, so
/// it can be read as a plain slice. Pages are read from the file as they
/// are touched; nothing is copied into the heap.
#[derive(Debug)]
pub struct SealedView {
    map: Option<Mapping>,
}

impl SealedView {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.map {
            None => &[],
            // SAFETY: `map_sealed`'s callers check CONTENT_SEALS and the
            // size first: the memory file can neither be written (through
            // any descriptor or writable mapping) nor shrunk, so these
            // `len` bytes stay mapped and unchanged while `self` lives.
            Some(m) => unsafe { std::slice::from_raw_parts(m.as_ptr(), m.len) },
        }
    }
}

/// A `MAP_SHARED`, read-write mapping of a whole memory file.
///
/// The mapping stays valid for the life of this value, whatever happens to
/// the descriptor it came from; it is unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<c_void>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; all access from this crate
// goes through atomics (`atomic_u32`/`atomic_u64`), which are Sync.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

#[allow(clippy::len_without_is_empty)]
impl Mapping {
    /// Map `len` bytes of `fd` shared and read-write.
    pub fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        Mapping::map(fd, len, MapFlags::SHARED)
    }

    /// Like [`new`](Self::new), with every page faulted in now
    /// (`MAP_POPULATE`), so that first touches on a hot path cost nothing.
    pub fn new_populated(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        Mapping::map(fd, len, MapFlags::SHARED | MapFlags::POPULATE)
    }

    fn map(fd: BorrowedFd<'_>, len: usize, flags: MapFlags) -> io::Result<Mapping> {
        Mapping::map_with(fd, len, ProtFlags::READ | ProtFlags::WRITE, flags)
    }

    fn map_with(fd: BorrowedFd<'_>, len: usize, prot: ProtFlags, flags: MapFlags) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        // SAFETY: a fresh mapping at an address the kernel picks; it aliases
        // no Rust object. Callers reach it through atomics and bounds-checked
        // copies (and the ring's documented raw views).
        let ptr = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0)? };
        let ptr = NonNull::new(ptr).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Base address. Writing through it is the caller's business (see
    /// `Segment` and the ring, which keep to their bounds).
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr().cast()
    }

    /// Copy `out.len()` bytes from `offset` (bounds-checked).
    #[inline]
    pub fn read_at(&self, offset: usize, out: &mut [u8]) -> bool {
        if offset.checked_add(out.len()).is_none_or(|end| end > self.len) {
            return false;
        }
        // SAFETY: in bounds (checked); the source is shared memory that
        // other processes may write concurrently, which can only make the
        // copied bytes stale, never invalid (any bytes are valid u8).
        unsafe { std::ptr::copy_nonoverlapping(self.as_ptr().add(offset), out.as_mut_ptr(), out.len()) };
        true
    }

    /// Copy `data` to `offset` (bounds-checked).
    #[inline]
    pub fn write_at(&self, offset: usize, data: &[u8]) -> bool {
        if offset.checked_add(data.len()).is_none_or(|end| end > self.len) {
            return false;
        }
        // SAFETY: in bounds (checked); the mapping is writable; no Rust
        // reference to this memory exists outside the unsafe accessors.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.as_ptr().add(offset), data.len()) };
        true
    }

    #[inline(always)]
    fn check(&self, offset: usize, size: usize) {
        if !offset.is_multiple_of(size) || offset + size > self.len {
            bad_atomic(offset, self.len);
        }
    }

    /// The 32-bit atomic at `offset` (aligned, inside the mapping).
    #[inline]
    pub fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4);
        // SAFETY: in bounds and aligned (checked above); page-aligned base;
        // the memory lives as long as `self`; other processes touch it only
        // atomically as well, so no data race in the Rust sense.
        unsafe { &*(self.ptr.as_ptr().cast::<u8>().add(offset).cast::<AtomicU32>()) }
    }

    /// The 64-bit atomic at `offset` (aligned, inside the mapping).
    #[inline]
    pub fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        self.check(offset, 8);
        // SAFETY: as for `atomic_u32`.
        unsafe { &*(self.ptr.as_ptr().cast::<u8>().add(offset).cast::<AtomicU64>()) }
    }
}

/// A misaligned or out-of-bounds atomic: a bug in conduit (offsets are
/// constants or checked), so a panic. Out of line: the hot accessors only
/// compare and branch.
#[cold]
#[inline(never)]
fn bad_atomic(offset: usize, len: usize) -> ! {
    panic!("atomic at offset {offset} is misaligned or outside the {len}-byte mapping")
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own this mapping and no reference into it outlives
        // `self` (accessors borrow `self`).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr(), self.len) };
    }
}
