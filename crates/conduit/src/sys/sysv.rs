//! The kernel's System V and POSIX IPC objects: removal by id or name.
//! (Listing reads `/proc/sysvipc` and `/dev/mqueue`, which need no calls.)

use std::ffi::CString;
use std::io;

/// Which System V object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysvKind {
    /// A message queue (`msgget`).
    Msg,
    /// A semaphore set (`semget`).
    Sem,
    /// A shared-memory segment (`shmget`).
    Shm,
}

/// `IPC_RMID` a System V object by id.
pub fn remove_sysv(kind: SysvKind, id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer (a null pointer is allowed); the
    // calls only read their integer arguments.
    let r = unsafe {
        match kind {
            SysvKind::Msg => libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()),
            SysvKind::Sem => libc::semctl(id, 0, libc::IPC_RMID),
            SysvKind::Shm => libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()),
        }
    };
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `mq_unlink` a POSIX message queue (`name` with or without the leading `/`).
pub fn remove_mqueue(name: &str) -> io::Result<()> {
    let name = if name.starts_with('/') { name.to_string() } else { format!("/{name}") };
    let c = CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    let r = unsafe { libc::mq_unlink(c.as_ptr()) };
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}
