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

// ---------------------------------------------------------------- message queues

/// `IPC_PRIVATE`: a key that makes a new queue nobody else can find.
pub const IPC_PRIVATE: i32 = libc::IPC_PRIVATE;

fn cpath(path: &std::path::Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// `ftok(path, proj)`: the key the classic programs derive from a file
/// and a project number.
pub fn ftok(path: &std::path::Path, proj: u8) -> io::Result<i32> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid NUL-terminated string for the call.
    let key = unsafe { libc::ftok(c.as_ptr(), libc::c_int::from(proj)) };
    if key == -1 { Err(io::Error::last_os_error()) } else { Ok(key) }
}

/// `msgget(key, flags)`.
pub fn msgget(key: i32, flags: i32) -> io::Result<i32> {
    // SAFETY: integer arguments only.
    let id = unsafe { libc::msgget(key, flags) };
    if id == -1 { Err(io::Error::last_os_error()) } else { Ok(id) }
}

/// `msgsnd`: a message of type `mtype` (> 0) with `text`; `nowait` is
/// `IPC_NOWAIT` (`WouldBlock` when the queue is full).
pub fn msgsnd(id: i32, mtype: i64, text: &[u8], nowait: bool) -> io::Result<()> {
    // `struct msgbuf { long mtype; char mtext[]; }`, built in one buffer.
    let mut buf = Vec::with_capacity(8 + text.len());
    buf.extend_from_slice(&(mtype as libc::c_long).to_ne_bytes());
    buf.extend_from_slice(text);
    let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    loop {
        // SAFETY: `buf` holds the type and `text.len()` bytes after it, as
        // msgsnd reads them; it is not kept after the call.
        let r = unsafe { libc::msgsnd(id, buf.as_ptr().cast(), text.len(), flags) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `msgrcv` of at most `max` bytes by the `selector` rules (0: the first;
/// positive: the first of that type; negative: the first of the lowest
/// type up to its absolute value). Returns the type and the text. `nowait`: `IPC_NOWAIT`
/// (`ENOMSG` when none). A longer message is `E2BIG` and stays queued.
pub fn msgrcv(id: i32, max: usize, selector: i64, nowait: bool) -> io::Result<(i64, Vec<u8>)> {
    let mut buf = vec![0u8; 8 + max];
    let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    loop {
        // SAFETY: `buf` has room for the type and `max` bytes, all msgrcv
        // writes; it stays ours.
        let n = unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), max, selector as libc::c_long, flags) };
        if n >= 0 {
            let mtype = libc::c_long::from_ne_bytes(buf[..8].try_into().expect("8 bytes")) as i64;
            buf.truncate(8 + n as usize);
            buf.drain(..8);
            return Ok((mtype, buf));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `MSG_COPY` (Linux): copy the message at a position, leave it queued.
const MSG_COPY: libc::c_int = 0o40000;

/// `msgrcv` into `buf` (resized to `max`): the message's text starts at
/// `buf[0]`; returns its type and length. `nowait`: `IPC_NOWAIT`.
pub fn msgrcv_into(id: i32, buf: &mut Vec<u8>, max: usize, selector: i64, nowait: bool) -> io::Result<(i64, usize)> {
    buf.resize(8 + max, 0);
    let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    loop {
        // SAFETY: `buf` has room for the type and `max` bytes, all msgrcv
        // writes.
        let n = unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), max, selector as libc::c_long, flags) };
        if n >= 0 {
            let n = n as usize;
            let mtype: i64 = libc::c_long::from_ne_bytes(buf[..8].try_into().expect("8 bytes"));
            buf.copy_within(8..8 + n, 0);
            return Ok((mtype, n));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A copy of the message at `index` (0: the oldest) without taking it
/// (`MSG_COPY`): its type and text.
pub fn msg_copy(id: i32, index: usize, max: usize) -> io::Result<(i64, Vec<u8>)> {
    let mut buf = vec![0u8; 8 + max];
    // SAFETY: as in `msgrcv_into`; MSG_COPY writes the same layout.
    let n =
        unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), max, index as libc::c_long, libc::IPC_NOWAIT | MSG_COPY) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mtype: i64 = libc::c_long::from_ne_bytes(buf[..8].try_into().expect("8 bytes"));
    buf.truncate(8 + n as usize);
    buf.drain(..8);
    Ok((mtype, buf))
}

/// A message queue's `msqid_ds` (`IPC_STAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgStat {
    /// The key it was made with.
    pub key: i32,
    /// Owner uid and gid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Creator uid.
    pub cuid: u32,
    /// Creator gid.
    pub cgid: u32,
    /// Permission bits.
    pub mode: u32,
    /// Messages queued.
    pub messages: u64,
    /// Bytes queued.
    pub bytes: u64,
    /// Most bytes it holds (`msg_qbytes`).
    pub max_bytes: u64,
    /// Pid of the last `msgsnd`.
    pub last_send_pid: i32,
    /// Pid of the last `msgrcv`.
    pub last_recv_pid: i32,
    /// Time of the last `msgsnd` (seconds since the epoch; 0: never).
    pub last_send: i64,
    /// Time of the last `msgrcv`.
    pub last_recv: i64,
    /// Time of the last change.
    pub changed: i64,
}

fn msqid_ds(id: i32) -> io::Result<libc::msqid_ds> {
    // SAFETY: an all-zero msqid_ds is a valid value to be overwritten.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a valid out-pointer for IPC_STAT.
    let r = unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) };
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(ds) }
}

/// `msgctl(IPC_STAT)`.
pub fn msg_stat(id: i32) -> io::Result<MsgStat> {
    let ds = msqid_ds(id)?;
    Ok(MsgStat {
        key: ds.msg_perm.__key,
        uid: ds.msg_perm.uid,
        gid: ds.msg_perm.gid,
        cuid: ds.msg_perm.cuid,
        cgid: ds.msg_perm.cgid,
        mode: u32::from(ds.msg_perm.mode) & 0o777,
        messages: ds.msg_qnum as u64,
        bytes: ds.__msg_cbytes as u64,
        max_bytes: ds.msg_qbytes as u64,
        last_send_pid: ds.msg_lspid,
        last_recv_pid: ds.msg_lrpid,
        last_send: ds.msg_stime,
        last_recv: ds.msg_rtime,
        changed: ds.msg_ctime,
    })
}

/// `msgctl(IPC_SET)`: owner, mode bits and the byte limit.
pub fn msg_set(id: i32, uid: u32, gid: u32, mode: u32, max_bytes: u64) -> io::Result<()> {
    let mut ds = msqid_ds(id)?;
    ds.msg_perm.uid = uid;
    ds.msg_perm.gid = gid;
    ds.msg_perm.mode = (mode & 0o777) as _;
    ds.msg_qbytes = max_bytes as _;
    // SAFETY: `ds` is a valid msqid_ds read by IPC_SET.
    let r = unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) };
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

// ---------------------------------------------------------------- semaphores

/// `semget(key, nsems, flags)`.
pub fn semget(key: i32, count: i32, flags: i32) -> io::Result<i32> {
    // SAFETY: integer arguments only.
    let id = unsafe { libc::semget(key, count, flags) };
    if id == -1 { Err(io::Error::last_os_error()) } else { Ok(id) }
}

/// `semctl(id, index, SETVAL, value)`.
pub fn sem_setval(id: i32, index: i32, value: i32) -> io::Result<()> {
    // SAFETY: SETVAL takes the `int val` member of `union semun`, passed
    // as an int in the variadic position.
    let r = unsafe { libc::semctl(id, index, libc::SETVAL, value) };
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `semctl(id, index, GETVAL)`.
pub fn sem_getval(id: i32, index: i32) -> io::Result<i32> {
    // SAFETY: GETVAL takes no fourth argument.
    let r = unsafe { libc::semctl(id, index, libc::GETVAL) };
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// `semtimedop` (or `semop` when `timeout` is `None`): apply every
/// `(index, delta, undo, nowait)` at once, or none. A timeout is
/// `EAGAIN`, like `IPC_NOWAIT`.
pub fn semtimedop(id: i32, ops: &[(u16, i16, bool, bool)], timeout: Option<std::time::Duration>) -> io::Result<()> {
    let mut sops: Vec<libc::sembuf> = ops
        .iter()
        .map(|&(num, op, undo, nowait)| {
            let mut flg = 0;
            if undo {
                flg |= libc::SEM_UNDO;
            }
            if nowait {
                flg |= libc::IPC_NOWAIT;
            }
            libc::sembuf { sem_num: num, sem_op: op, sem_flg: flg as libc::c_short }
        })
        .collect();
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let r = match deadline {
            None => {
                // SAFETY: `sops` holds `sops.len()` valid sembuf entries.
                unsafe { libc::semop(id, sops.as_mut_ptr(), sops.len()) }
            }
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                let ts = libc::timespec { tv_sec: left.as_secs() as _, tv_nsec: left.subsec_nanos() as _ };
                // SAFETY: the raw semtimedop(2): `sops` holds `sops.len()`
                // valid entries and `ts` a valid timespec, both alive for
                // the call.
                unsafe {
                    libc::syscall(libc::SYS_semtimedop, id, sops.as_mut_ptr(), sops.len(), &ts as *const libc::timespec)
                        as i32
                }
            }
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

// ---------------------------------------------------------------- shared memory

/// `shmget(key, size, flags)`.
pub fn shmget(key: i32, size: usize, flags: i32) -> io::Result<i32> {
    // SAFETY: integer arguments only.
    let id = unsafe { libc::shmget(key, size, flags) };
    if id == -1 { Err(io::Error::last_os_error()) } else { Ok(id) }
}

/// A System V segment's `shmid_ds` (`IPC_STAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShmStat {
    /// The key it was made with.
    pub key: i32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Creator uid.
    pub cuid: u32,
    /// Permission bits.
    pub mode: u32,
    /// Size in bytes.
    pub size: usize,
    /// Processes attached now.
    pub attached: u64,
    /// Pid of the creator.
    pub creator_pid: i32,
    /// Pid of the last attach or detach.
    pub last_pid: i32,
}

/// `shmctl(IPC_STAT)`.
pub fn shm_stat(id: i32) -> io::Result<ShmStat> {
    // SAFETY: an all-zero shmid_ds is a valid value to be overwritten.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a valid out-pointer for IPC_STAT.
    if unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(ShmStat {
        key: ds.shm_perm.__key,
        uid: ds.shm_perm.uid,
        gid: ds.shm_perm.gid,
        cuid: ds.shm_perm.cuid,
        mode: u32::from(ds.shm_perm.mode) & 0o777,
        size: ds.shm_segsz,
        attached: ds.shm_nattch as u64,
        creator_pid: ds.shm_cpid,
        last_pid: ds.shm_lpid,
    })
}

/// A System V segment attached to this process (`shmat`); detached on
/// drop (`shmdt`). Every access is a bounds-checked copy: other processes
/// may write the memory at any time, which can only make bytes stale.
#[derive(Debug)]
pub struct Attached {
    ptr: std::ptr::NonNull<libc::c_void>,
    len: usize,
    readonly: bool,
}

// SAFETY: the memory is shared with other processes anyway; this type
// only copies in and out of it, never hands out references.
unsafe impl Send for Attached {}
// SAFETY: as above.
unsafe impl Sync for Attached {}

impl Attached {
    /// `shmat(id)`, read-only or read-write.
    pub fn attach(id: i32, readonly: bool) -> io::Result<Attached> {
        let len = shm_stat(id)?.size;
        let flags = if readonly { libc::SHM_RDONLY } else { 0 };
        // SAFETY: the kernel chooses the address (null); nothing else is
        // mapped there, and the mapping is released only by `Drop`.
        let p = unsafe { libc::shmat(id, std::ptr::null(), flags) };
        if p as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(p).ok_or_else(|| io::Error::other("shmat returned null"))?;
        Ok(Attached { ptr, len, readonly })
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a segment of no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True for a read-only attachment.
    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// Copy `out.len()` bytes at `offset` out; `false` if out of bounds.
    pub fn read_at(&self, offset: usize, out: &mut [u8]) -> bool {
        if offset.checked_add(out.len()).is_none_or(|end| end > self.len) {
            return false;
        }
        // SAFETY: in bounds (checked); any bytes are valid u8, and a
        // concurrent writer can only make them stale.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().cast::<u8>().add(offset), out.as_mut_ptr(), out.len())
        };
        true
    }

    /// Copy `data` in at `offset`; `false` if out of bounds or read-only.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> bool {
        if self.readonly || offset.checked_add(data.len()).is_none_or(|end| end > self.len) {
            return false;
        }
        // SAFETY: in bounds (checked), attached writable; no Rust reference
        // to this memory exists.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().cast::<u8>().add(offset), data.len()) };
        true
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // SAFETY: `ptr` is the address shmat returned, detached once.
        unsafe { libc::shmdt(self.ptr.as_ptr()) };
    }
}
