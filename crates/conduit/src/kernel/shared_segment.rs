//! System V shared-memory segments, safely: `shmget`, `shmat` into a
//! bounds-checked view ([`Attached`]: copies in and out, never a
//! reference into memory another process may change), `shmctl`.
//!
//! What the kernel does: a segment lives until removed *and* detached by
//! every process; anyone its mode admits may attach (the notes: "anyone
//! with the id can attach"). For memory only the processes you choose
//! reach, prefer `memory::Segment` (a sealed memfd passed as a right).

use std::io;

use super::message_queue::{IpcError, ipc_error};
use crate::sys::sysv as sys;
pub use crate::sys::sysv::{Attached, ShmStat};

fn shm_error(e: io::Error) -> IpcError {
    match e.raw_os_error() {
        Some(libc::EINVAL) => IpcError::NotFound,
        _ => ipc_error(e),
    }
}

/// A System V shared-memory segment (a handle: dropping it leaves the
/// segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedSegment {
    id: i32,
}

impl SharedSegment {
    /// Create a segment of `size` bytes (zeroed) under `key`, exclusively.
    pub fn create(key: i32, size: usize, mode: u32) -> Result<SharedSegment, IpcError> {
        let id = sys::shmget(key, size, libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32).map_err(shm_error)?;
        Ok(SharedSegment { id })
    }

    /// A new segment only its id reaches.
    pub fn private(size: usize, mode: u32) -> Result<SharedSegment, IpcError> {
        let id = sys::shmget(sys::IPC_PRIVATE, size, libc::IPC_CREAT | (mode & 0o777) as i32).map_err(shm_error)?;
        Ok(SharedSegment { id })
    }

    /// The existing segment under `key`.
    pub fn open(key: i32) -> Result<SharedSegment, IpcError> {
        Ok(SharedSegment { id: sys::shmget(key, 0, 0).map_err(shm_error)? })
    }

    /// The segment with this id (as `ipcs -m` shows).
    pub fn from_id(id: i32) -> Result<SharedSegment, IpcError> {
        sys::shm_stat(id).map_err(shm_error)?;
        Ok(SharedSegment { id })
    }

    /// Its id.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// Attach it (`shmat`), read-write or read-only: a bounds-checked view,
    /// detached when dropped.
    pub fn attach(&self, readonly: bool) -> Result<Attached, IpcError> {
        Attached::attach(self.id, readonly).map_err(shm_error)
    }

    /// `shmctl(IPC_STAT)`: size, owner, mode, attachments, pids.
    pub fn stat(&self) -> Result<ShmStat, IpcError> {
        sys::shm_stat(self.id).map_err(shm_error)
    }

    /// Mark it for removal (`IPC_RMID`): it goes when the last process
    /// detaches; nobody can attach it any more.
    pub fn remove(self) -> Result<(), IpcError> {
        sys::remove_sysv(sys::SysvKind::Shm, self.id).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => IpcError::NotFound,
            _ => shm_error(e),
        })
    }
}
