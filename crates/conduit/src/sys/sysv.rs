//! The kernel's System V and POSIX IPC objects: removal by id or name,
//! POSIX queue attributes, and a listing of POSIX queues that works
//! without `/dev/mqueue` mounted. (System V objects are listed from
//! `/proc/sysvipc`, POSIX shared memory from `/dev/shm`: no calls.)

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
    if r == -1 {
        let e = io::Error::last_os_error();
        // EINVAL: no object has this id (EIDRM: it is being removed).
        if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EIDRM)) {
            let what = match kind {
                SysvKind::Msg => "message queue",
                SysvKind::Sem => "semaphore set",
                SysvKind::Shm => "shared-memory segment",
            };
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no System V {what} with id {id}")));
        }
        return Err(e);
    }
    Ok(())
}

/// `mq_unlink` a POSIX message queue (`name` with or without the leading `/`).
pub fn remove_mqueue(name: &str) -> io::Result<()> {
    let name = if name.starts_with('/') { name.to_string() } else { format!("/{name}") };
    let c = CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    let r = unsafe { libc::mq_unlink(c.as_ptr()) };
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `shm_unlink` a POSIX shared-memory object (`name` with or without the
/// leading `/`).
pub fn remove_posix_shm(name: &str) -> io::Result<()> {
    let name = if name.starts_with('/') { name.to_string() } else { format!("/{name}") };
    Ok(rustix::shm::unlink(name.as_str())?)
}

/// A POSIX message queue's attributes (`mq_getattr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MqAttr {
    /// Messages queued now.
    pub depth: u64,
    /// Most messages it holds.
    pub capacity: u64,
    /// Largest message.
    pub message_size: u64,
}

fn mq_name(name: &str) -> io::Result<CString> {
    let name = if name.starts_with('/') { name.to_string() } else { format!("/{name}") };
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

/// Open a POSIX queue just to read its attributes (the queue's messages
/// are not touched; needs read permission).
pub fn mqueue_attr(name: &str) -> io::Result<MqAttr> {
    let c = mq_name(name)?;
    // SAFETY: `c` is a valid NUL-terminated string; O_RDONLY without
    // O_CREAT takes no further arguments.
    let mq = unsafe { libc::mq_open(c.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if mq == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: an all-zero mq_attr is a valid value to be overwritten.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: `mq` is the descriptor opened above, `attr` a valid out-pointer.
    let r = unsafe { libc::mq_getattr(mq, &mut attr) };
    let err = io::Error::last_os_error();
    // SAFETY: `mq` is ours and closed once.
    unsafe { libc::mq_close(mq) };
    if r == -1 {
        return Err(err);
    }
    Ok(MqAttr { depth: attr.mq_curmsgs as u64, capacity: attr.mq_maxmsg as u64, message_size: attr.mq_msgsize as u64 })
}

/// A POSIX message queue as its file system shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MqEntry {
    /// Its name, with the leading `/`.
    pub name: String,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    /// Bytes queued (`QSIZE`).
    pub bytes: u64,
}

const MQUEUE_DIR: &str = "/dev/mqueue";

fn is_mqueue_mount(dir: &str) -> bool {
    std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
        m.lines().any(|l| l.split_whitespace().nth(1) == Some(dir) && l.split_whitespace().nth(2) == Some("mqueue"))
    })
}

fn read_mqueue_dir(dir: &std::path::Path) -> io::Result<Vec<MqEntry>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        let info = std::fs::read_to_string(e.path()).unwrap_or_default();
        let bytes = info.split_whitespace().find_map(|f| f.strip_prefix("QSIZE:")).and_then(|v| v.parse().ok());
        out.push(MqEntry {
            name: format!("/{}", e.file_name().to_string_lossy()),
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o777,
            bytes: bytes.unwrap_or(0),
        });
    }
    Ok(out)
}

/// Every POSIX message queue of this IPC namespace. Read from
/// `/dev/mqueue` when an mqueue file system is mounted there; otherwise
/// (as root) from one mounted privately, in a thread of its own that
/// unshares its mount namespace, so nothing is mounted for anyone else
/// and nothing is left behind. `Err` says why they cannot be listed.
pub fn list_mqueues() -> Result<Vec<MqEntry>, String> {
    if is_mqueue_mount(MQUEUE_DIR) {
        return read_mqueue_dir(MQUEUE_DIR.as_ref()).map_err(|e| format!("cannot read {MQUEUE_DIR}: {e}"));
    }
    std::thread::spawn(private_mqueue_listing).join().unwrap_or_else(|_| Err("the listing thread failed".into()))
}

fn private_mqueue_listing() -> Result<Vec<MqEntry>, String> {
    use rustix::mount::{MountFlags, MountPropagationFlags, mount, mount_change};
    use rustix::thread::UnshareFlags;
    let why = |e: rustix::io::Errno| {
        format!(
            "POSIX message queues are not listed: no mqueue file system is mounted at {MQUEUE_DIR}, and one \
             could not be mounted privately ({e}); `mount -t mqueue none {MQUEUE_DIR}` as root shows them"
        )
    };
    // SAFETY: a mount namespace of its own implies CLONE_FS for this
    // thread alone: its root, working directory and umask become a copy,
    // which no other thread shares or relies on; the thread ends after
    // the listing, and its namespace (with the mounts below) with it.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }.map_err(why)?;
    // Nothing mounted here may propagate back to the host's namespace.
    mount_change("/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE).map_err(why)?;
    let base = std::env::temp_dir();
    mount("conduit", &base, "tmpfs", MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC, None).map_err(why)?;
    let dir = base.join("mqueue");
    std::fs::create_dir(&dir).map_err(|e| format!("cannot list POSIX queues: {e}"))?;
    mount("mqueue", &dir, "mqueue", MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC, None).map_err(why)?;
    read_mqueue_dir(&dir).map_err(|e| format!("cannot list POSIX queues: {e}"))
}
