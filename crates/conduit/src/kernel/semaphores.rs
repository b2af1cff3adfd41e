//! System V semaphore sets, safely: `semget`, `semop` applied all at once
//! or not at all, `SEM_UNDO` (the kernel gives back what a process held
//! when it dies, `kill -9` included), and `semtimedop` timeouts.
//!
//! As with every System V object, a set lives until it is removed and
//! anyone its mode admits may use it.

use std::io;
use std::time::Duration;

use super::message_queue::{IpcError, ipc_error};
use crate::sys::sysv as sys;

fn sem_error(e: io::Error) -> IpcError {
    match e.raw_os_error() {
        // Without waiting, or when the time ran out.
        Some(libc::EAGAIN) => IpcError::WouldWait,
        Some(libc::EINVAL) => IpcError::NotFound,
        _ => ipc_error(e),
    }
}

/// A System V semaphore set (a handle: dropping it leaves the set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Semaphores {
    id: i32,
    count: u16,
}

/// How long an operation may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Not at all (`IPC_NOWAIT`): [`IpcError::WouldWait`].
    No,
    /// At most this long (`semtimedop`): [`IpcError::WouldWait`].
    For(Duration),
    /// As long as it takes.
    Forever,
}

impl Semaphores {
    /// Create a set of `count` semaphores (all 0) under `key`, exclusively.
    pub fn create(key: i32, count: u16, mode: u32) -> Result<Semaphores, IpcError> {
        let id = sys::semget(key, i32::from(count), libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32)
            .map_err(sem_error)?;
        Ok(Semaphores { id, count })
    }

    /// A new set only its id reaches.
    pub fn private(count: u16, mode: u32) -> Result<Semaphores, IpcError> {
        let id = sys::semget(sys::IPC_PRIVATE, i32::from(count), libc::IPC_CREAT | (mode & 0o777) as i32)
            .map_err(sem_error)?;
        Ok(Semaphores { id, count })
    }

    /// The existing set under `key`, of at least `count` semaphores.
    pub fn open(key: i32, count: u16) -> Result<Semaphores, IpcError> {
        Ok(Semaphores { id: sys::semget(key, i32::from(count), 0).map_err(sem_error)?, count })
    }

    /// The set with this id, of `count` semaphores (as `ipcs -s` shows).
    pub fn from_id(id: i32, count: u16) -> Result<Semaphores, IpcError> {
        if count > 0 {
            sys::sem_getval(id, i32::from(count) - 1).map_err(sem_error)?;
        }
        Ok(Semaphores { id, count })
    }

    /// Its id.
    pub fn id(&self) -> i32 {
        self.id
    }

    fn check(&self, index: u16) -> Result<(), IpcError> {
        if index >= self.count {
            return Err(IpcError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("semaphore {index} of a set of {}", self.count),
            )));
        }
        Ok(())
    }

    /// Set semaphore `index` to `value` (`SETVAL`; clears every process's
    /// pending undo for it).
    pub fn set(&self, index: u16, value: i32) -> Result<(), IpcError> {
        self.check(index)?;
        sys::sem_setval(self.id, i32::from(index), value).map_err(sem_error)
    }

    /// The value of semaphore `index` (`GETVAL`).
    pub fn get(&self, index: u16) -> Result<i32, IpcError> {
        self.check(index)?;
        sys::sem_getval(self.id, i32::from(index)).map_err(sem_error)
    }

    /// Apply every `(index, delta)` at once or not at all (`semop`),
    /// waiting as `wait` says. `undo`: `SEM_UNDO` — what this process
    /// takes is given back by the kernel when it ends, however it ends.
    pub fn apply(&self, ops: &[(u16, i16)], undo: bool, wait: Wait) -> Result<(), IpcError> {
        for &(i, _) in ops {
            self.check(i)?;
        }
        let nowait = wait == Wait::No;
        let ops: Vec<_> = ops.iter().map(|&(i, d)| (i, d, undo, nowait)).collect();
        let timeout = match wait {
            Wait::For(t) => Some(t),
            _ => None,
        };
        sys::semtimedop(self.id, &ops, timeout).map_err(sem_error)
    }

    /// Take one from semaphore `index` (P, wait), with `SEM_UNDO`: if this
    /// process dies holding it, the kernel gives it back.
    pub fn acquire(&self, index: u16, wait: Wait) -> Result<(), IpcError> {
        self.apply(&[(index, -1)], true, wait)
    }

    /// Give one back to semaphore `index` (V, signal), with `SEM_UNDO`
    /// (balancing [`acquire`](Self::acquire)).
    pub fn release(&self, index: u16) -> Result<(), IpcError> {
        self.apply(&[(index, 1)], true, Wait::No)
    }

    /// Remove the set (`IPC_RMID`); waiters get [`IpcError::Removed`].
    pub fn remove(self) -> Result<(), IpcError> {
        sys::remove_sysv(sys::SysvKind::Sem, self.id).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => IpcError::NotFound,
            _ => sem_error(e),
        })
    }
}
