//! The kernel's own IPC objects, for programs that share them with C
//! programs using the classic calls: System V message queues
//! ([`MessageQueue`]), semaphore sets ([`Semaphores`]) and shared-memory
//! segments ([`SharedSegment`]); POSIX message queues ([`PosixQueue`]);
//! and listing and removing System V and POSIX
//! objects (what `conduit ls` and `conduit rm` use).

mod message_queue;
mod posix_queue;
mod semaphores;
mod shared_segment;

pub use crate::sys::sysv::{
    MqAttr, MqEntry, MsgStat, SysvKind, list_mqueues, mqueue_attr, remove_mqueue, remove_posix_shm, remove_sysv,
};
pub use message_queue::{IpcError, MessageQueue, Select, ftok, msgmax};
pub use posix_queue::{PosixQueue, QueueNotice, notice_signal};
pub use semaphores::{Semaphores, Wait};
pub use shared_segment::{Attached, SharedSegment, ShmStat};
