//! System V message queues, safely: `msgget`, `msgsnd`, `msgrcv` with its
//! three type rules, `IPC_NOWAIT`, `msgctl` (stat, set, remove) and
//! `ftok` keys — the kernel's own objects, so a C program's
//! `struct msgbuf { long mtype; char mtext[N]; }` is exactly
//! `(mtype, bytes)` here, both ways.
//!
//! Typed conduit messages go on a queue too ([`MessageQueue::send_msg`],
//! [`MessageQueue::recv_msg`]): the `mtext` is then one whole conduit
//! frame (header, postcard payload, CRC32C; see `docs/WIRE.md`), and
//! `mtype` keeps its meaning — the receiver still selects by it. A
//! message that is not such a frame, or not a `T`, is a typed error and
//! was taken off the queue (other programs' messages are not yours to
//! read as `T`: select their types away).
//!
//! What the kernel does and conduit does not hide: anyone whose
//! credentials the queue's mode admits can send to it, read from it or
//! remove it (the notes: "anyone with the id can attach"); a queue lives
//! until it is removed (`remove`, `conduit rm msg ID`, or `ipcrm`) — it
//! outlives every process, which is its point and its leak.

use std::io;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::sys::sysv::{self as sys, MsgStat};

/// What went wrong with a kernel IPC object, by the kernel's own reasons.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// `EIDRM`: the object was removed (maybe while this call waited).
    #[error("the queue was removed")]
    Removed,
    /// `EACCES`/`EPERM`: its mode does not admit this process.
    #[error("permission denied")]
    Denied,
    /// `ENOENT`/`EINVAL` on lookup: no object with this key or id.
    #[error("no such queue")]
    NotFound,
    /// `EEXIST`: created exclusively, and one exists already.
    #[error("a queue with this key exists already")]
    Exists,
    /// `ENOMSG` without waiting: no message matches.
    #[error("no message of the type asked for")]
    Empty,
    /// `EAGAIN` without waiting: the queue is full (`msg_qbytes`).
    #[error("the queue is full")]
    Full,
    /// The message is larger than the kernel's `msgmax` (sending), or
    /// than the receive buffer (receiving: it stays queued).
    #[error("message of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The size (receiving: unknown, 0).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// `EAGAIN` on a semaphore operation: it would have to wait, and was
    /// told not to (or not longer than its timeout).
    #[error("the operation would wait (no waiting, or the time ran out)")]
    WouldWait,
    /// A type ≤ 0 was given to send (System V types are positive).
    #[error("message type {0} is not positive")]
    BadType(i64),
    /// A typed receive found bytes that are not a conduit frame of the
    /// expected type (the message was taken off the queue).
    #[error(transparent)]
    Message(Error),
    /// Any other error of the system call.
    #[error(transparent)]
    Io(io::Error),
}

pub(super) fn ipc_error(e: io::Error) -> IpcError {
    match e.raw_os_error() {
        Some(libc::EIDRM) => IpcError::Removed,
        Some(libc::EACCES | libc::EPERM) => IpcError::Denied,
        Some(libc::ENOENT) => IpcError::NotFound,
        Some(libc::EEXIST) => IpcError::Exists,
        Some(libc::ENOMSG) => IpcError::Empty,
        Some(libc::EAGAIN) => IpcError::Full,
        _ => IpcError::Io(e),
    }
}

/// A call on an id: with its arguments checked, `EINVAL` means the id
/// names no queue (any more).
fn gone_or(e: io::Error) -> IpcError {
    match e.raw_os_error() {
        Some(libc::EINVAL) => IpcError::NotFound,
        _ => ipc_error(e),
    }
}

/// The key `ftok(path, proj)` gives: how unrelated programs agree on a
/// queue without passing its id (the file must exist; `proj` is the low
/// 8 bits C uses).
pub fn ftok(path: impl AsRef<Path>, proj: u8) -> Result<i32, IpcError> {
    sys::ftok(path.as_ref(), proj).map_err(ipc_error)
}

/// Which message `recv` takes (`msgrcv`'s `msgtyp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    /// The first message (0).
    First,
    /// The first message of this type (> 0).
    Type(i64),
    /// The first message of the lowest type ≤ this bound (< 0 in C).
    UpTo(i64),
}

impl Select {
    /// From C's `msgtyp`: 0, > 0, < 0.
    pub fn from_msgtyp(t: i64) -> Select {
        match t {
            0 => Select::First,
            t if t > 0 => Select::Type(t),
            t => Select::UpTo(t.saturating_neg()),
        }
    }

    fn msgtyp(self) -> i64 {
        match self {
            Select::First => 0,
            Select::Type(t) => t,
            Select::UpTo(t) => -t.abs(),
        }
    }
}

/// The kernel's limit on one message's text (`/proc/sys/kernel/msgmax`),
/// read once per process: sends and receives check against it without a
/// file read each.
pub fn msgmax() -> usize {
    static MSGMAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MSGMAX.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/msgmax").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(8192)
    })
}

/// A System V message queue (a handle: dropping it leaves the queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageQueue {
    id: i32,
}

impl MessageQueue {
    /// Create a new queue under `key` with permission bits `mode`; fails
    /// with [`IpcError::Exists`] if there is one.
    pub fn create(key: i32, mode: u32) -> Result<MessageQueue, IpcError> {
        let id = sys::msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32).map_err(ipc_error)?;
        Ok(MessageQueue { id })
    }

    /// A new queue only its id reaches (`IPC_PRIVATE`): hand the id on.
    pub fn private(mode: u32) -> Result<MessageQueue, IpcError> {
        let id = sys::msgget(sys::IPC_PRIVATE, libc::IPC_CREAT | (mode & 0o777) as i32).map_err(ipc_error)?;
        Ok(MessageQueue { id })
    }

    /// The queue under `key`, created with `mode` if there is none.
    pub fn open_or_create(key: i32, mode: u32) -> Result<MessageQueue, IpcError> {
        let id = sys::msgget(key, libc::IPC_CREAT | (mode & 0o777) as i32).map_err(ipc_error)?;
        Ok(MessageQueue { id })
    }

    /// The existing queue under `key`.
    pub fn open(key: i32) -> Result<MessageQueue, IpcError> {
        Ok(MessageQueue { id: sys::msgget(key, 0).map_err(ipc_error)? })
    }

    /// The queue with this id (as `ipcs` shows it), checked to exist and
    /// to be readable.
    pub fn from_id(id: i32) -> Result<MessageQueue, IpcError> {
        sys::msg_stat(id).map_err(|e| match e.raw_os_error() {
            Some(libc::EINVAL) => IpcError::NotFound,
            _ => ipc_error(e),
        })?;
        Ok(MessageQueue { id })
    }

    /// Its id.
    pub fn id(&self) -> i32 {
        self.id
    }

    fn check_send(&self, mtype: i64, len: usize) -> Result<(), IpcError> {
        if mtype <= 0 {
            return Err(IpcError::BadType(mtype));
        }
        let limit = msgmax();
        if len > limit {
            return Err(IpcError::TooLarge { size: len, limit });
        }
        Ok(())
    }

    fn send_with(&self, mtype: i64, text: &[u8], nowait: bool) -> Result<(), IpcError> {
        self.check_send(mtype, text.len())?;
        sys::msgsnd(self.id, mtype, text, nowait).map_err(gone_or)
    }

    /// `msgsnd`: put `text` on the queue as a message of type `mtype`
    /// (> 0), waiting while the queue is full.
    pub fn send(&self, mtype: i64, text: &[u8]) -> Result<(), IpcError> {
        self.send_with(mtype, text, false)
    }

    /// Like [`send`](Self::send) without waiting: [`IpcError::Full`].
    pub fn try_send(&self, mtype: i64, text: &[u8]) -> Result<(), IpcError> {
        self.send_with(mtype, text, true)
    }

    fn recv_with(&self, select: Select, nowait: bool) -> Result<(i64, Vec<u8>), IpcError> {
        let limit = msgmax();
        sys::msgrcv(self.id, limit, select.msgtyp(), nowait).map_err(|e| match e.raw_os_error() {
            Some(libc::E2BIG) => IpcError::TooLarge { size: 0, limit },
            _ => gone_or(e),
        })
    }

    /// `msgrcv`: take the message `select` names, waiting for one;
    /// returns its type and text.
    pub fn recv(&self, select: Select) -> Result<(i64, Vec<u8>), IpcError> {
        self.recv_with(select, false)
    }

    /// Like [`recv`](Self::recv) without waiting: [`IpcError::Empty`].
    pub fn try_recv(&self, select: Select) -> Result<(i64, Vec<u8>), IpcError> {
        self.recv_with(select, true)
    }

    /// Send a typed message: one whole conduit frame as the text.
    pub fn send_msg<T: Serialize + ?Sized>(&self, mtype: i64, msg: &T) -> Result<(), IpcError> {
        let frame = crate::wire::encode_frame(msg).map_err(IpcError::Message)?;
        self.send(mtype, &frame)
    }

    /// Take a typed message (see [`send_msg`](Self::send_msg)); returns
    /// its type and the message.
    pub fn recv_msg<T: DeserializeOwned>(&self, select: Select) -> Result<(i64, T), IpcError> {
        let (mtype, text) = self.recv(select)?;
        let msg = crate::wire::decode_frame(&text, text.len()).map_err(IpcError::Message)?;
        Ok((mtype, msg))
    }

    /// `msgctl(IPC_STAT)`: owner, mode, depth, last pids and times.
    pub fn stat(&self) -> Result<MsgStat, IpcError> {
        sys::msg_stat(self.id).map_err(ipc_error)
    }

    /// `msgctl(IPC_SET)`: change owner, mode bits and the byte limit
    /// (raising it above `msgmnb` needs privilege).
    pub fn set(&self, uid: u32, gid: u32, mode: u32, max_bytes: u64) -> Result<(), IpcError> {
        sys::msg_set(self.id, uid, gid, mode, max_bytes).map_err(ipc_error)
    }

    /// `msgctl(IPC_RMID)`: remove the queue; waiting senders and receivers
    /// get [`IpcError::Removed`].
    pub fn remove(self) -> Result<(), IpcError> {
        sys::remove_sysv(sys::SysvKind::Msg, self.id).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => IpcError::NotFound,
            _ => ipc_error(e),
        })
    }
}
