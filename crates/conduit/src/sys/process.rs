//! Process-level calls: handing descriptors to a child across `exec`,
//! pidfds, signals.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;

use rustix::io::FdFlags;
use rustix::process::{Pid, PidfdFlags, Signal};

/// Arrange for `fds` (close-on-exec in this process) to stay open across
/// the `exec` of the child that `cmd` spawns, and only in that child.
pub fn inherit_fds(cmd: &mut std::process::Command, fds: Vec<RawFd>, parent_death_signal: bool) {
    let hook = move || -> io::Result<()> {
        for &raw in &fds {
            // SAFETY: `raw` is open in the parent for the whole spawn (the
            // caller keeps it alive until `spawn` returns), so it is open in
            // the forked child too.
            let fd = unsafe { BorrowedFd::borrow_raw(raw) };
            rustix::io::fcntl_setfd(fd, FdFlags::empty())?;
        }
        if parent_death_signal {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec; it only makes
    // async-signal-safe system calls (fcntl, prctl) and allocates nothing.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Take ownership of a descriptor inherited from the parent.
///
/// Fails unless `raw` is an open descriptor; the caller must make sure
/// nothing else in this process owns it (conduit only calls this once per
/// number, on numbers the parent named in the link variable).
pub fn adopt_inherited(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "negative descriptor"));
    }
    // SAFETY: used only to ask whether `raw` is open (F_GETFD).
    let probe = unsafe { BorrowedFd::borrow_raw(raw) };
    rustix::io::fcntl_getfd(probe)?;
    // Re-arm close-on-exec so our own children do not inherit it.
    rustix::io::fcntl_setfd(probe, FdFlags::CLOEXEC)?;
    // SAFETY: the descriptor is open (checked) and, by the link protocol,
    // owned by nobody else in this process.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

/// A pidfd for `pid`.
pub fn pidfd(pid: u32) -> io::Result<OwnedFd> {
    let pid = i32::try_from(pid).ok().and_then(Pid::from_raw).ok_or_else(|| io::Error::other("not a pid"))?;
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// Send SIGKILL through a pidfd (no pid-reuse race).
pub fn pidfd_kill(fd: BorrowedFd<'_>) -> io::Result<()> {
    match rustix::process::pidfd_send_signal(fd, Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The raw number of a descriptor (for the link variable).
pub fn raw(fd: &impl AsFd) -> RawFd {
    fd.as_fd().as_raw_fd()
}

/// This process's id.
pub fn getpid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// The calling thread's id, cached per thread (it is read for every
/// message): owners of the locks in shared memory are threads, so that two
/// threads of one process (with separate handles on one ring) exclude each
/// other too. [`alive`] works on it: a thread's id dies with the thread.
/// (A bare `fork` without `exec` would inherit the cache: conduit starts
/// processes with `exec`.)
#[inline]
pub fn gettid() -> u32 {
    use std::cell::Cell;
    thread_local! {
        static TID: Cell<u32> = const { Cell::new(0) };
    }
    TID.with(|t| match t.get() {
        0 => {
            let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
            t.set(tid);
            tid
        }
        tid => tid,
    })
}

/// The parent's pid, if any.
pub fn getppid() -> Option<u32> {
    rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32)
}

/// True if a process with this pid exists (signal 0). Any value is
/// accepted (lock owners are read from memory a peer can write): one that
/// is no valid pid is no live process.
pub fn alive(pid: u32) -> bool {
    match i32::try_from(pid).ok().and_then(Pid::from_raw) {
        None => false,
        Some(p) => !matches!(rustix::process::test_kill_process(p), Err(rustix::io::Errno::SRCH)),
    }
}
