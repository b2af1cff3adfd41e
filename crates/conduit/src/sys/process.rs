//! Process-level calls: handing descriptors to a child across `exec`,
//! pidfds, signals.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

use rustix::io::FdFlags;
use rustix::process::{Pid, PidfdFlags, Signal};

/// What a child does between `fork` and `exec`: set by the parent before
/// each spawn, read by the hook in the forked child (atomics only: the
/// hook may take no lock). One per `Command`, so that a command spawned
/// twice runs one hook with the second spawn's values.
#[derive(Debug)]
pub struct PreExec {
    fds: [AtomicI32; MAX_INHERITED],
    nfds: AtomicUsize,
    parent_death_signal: AtomicBool,
    new_group: AtomicBool,
    report_pid: AtomicI32,
}

/// Most descriptors a child inherits as its link (two ends of three).
const MAX_INHERITED: usize = 8;

impl PreExec {
    /// Install the hook on `cmd` (once per command).
    pub fn install(cmd: &mut std::process::Command) -> Arc<PreExec> {
        let state = Arc::new(PreExec {
            fds: std::array::from_fn(|_| AtomicI32::new(-1)),
            nfds: AtomicUsize::new(0),
            parent_death_signal: AtomicBool::new(false),
            new_group: AtomicBool::new(false),
            report_pid: AtomicI32::new(-1),
        });
        let st = Arc::clone(&state);
        let hook = move || -> io::Result<()> { st.run() };
        // SAFETY: the hook runs between fork and exec; it reads atomics and
        // makes async-signal-safe system calls (fcntl, prctl, setpgid,
        // write); it allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(hook);
        }
        state
    }

    /// For the next spawn: keep `fds` (close-on-exec in this process)
    /// open across the child's `exec`, and only in that child; kill it when
    /// the spawning thread ends (`PR_SET_PDEATHSIG`); start a process group
    /// of its own; write its pid (4 bytes) to `report_pid`.
    pub fn set(
        &self,
        fds: &[RawFd],
        parent_death_signal: bool,
        new_group: bool,
        report_pid: Option<RawFd>,
    ) -> io::Result<()> {
        if fds.len() > MAX_INHERITED {
            return Err(io::Error::other("too many descriptors for a child's link"));
        }
        for (slot, &fd) in self.fds.iter().zip(fds) {
            slot.store(fd, Ordering::Relaxed);
        }
        self.nfds.store(fds.len(), Ordering::Relaxed);
        self.parent_death_signal.store(parent_death_signal, Ordering::Relaxed);
        self.new_group.store(new_group, Ordering::Relaxed);
        self.report_pid.store(report_pid.unwrap_or(-1), Ordering::Relaxed);
        Ok(())
    }

    fn run(&self) -> io::Result<()> {
        for slot in &self.fds[..self.nfds.load(Ordering::Relaxed)] {
            // SAFETY: the parent keeps every listed descriptor open for the
            // whole spawn, so it is open in the forked child too.
            let fd = unsafe { BorrowedFd::borrow_raw(slot.load(Ordering::Relaxed)) };
            rustix::io::fcntl_setfd(fd, FdFlags::empty())?;
        }
        if self.parent_death_signal.load(Ordering::Relaxed) {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
        }
        if self.new_group.load(Ordering::Relaxed) {
            rustix::process::setpgid(None, None)?;
        }
        let report = self.report_pid.load(Ordering::Relaxed);
        if report >= 0 {
            // SAFETY: as above: the parent keeps the pipe open until `spawn`
            // returns.
            let fd = unsafe { BorrowedFd::borrow_raw(report) };
            let pid = rustix::process::getpid().as_raw_nonzero().get();
            rustix::io::write(fd, &pid.to_ne_bytes())?;
        }
        Ok(())
    }
}

/// The pipe on which a cascading child tells its keeper its pid
/// (blocking, close-on-exec): (read end, write end).
pub fn pid_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Start the keeper of a cascading child: a fork of this process (no
/// `exec`) that reads the child's pid from `pid_pipe` (the child writes it
/// before its `exec`; end of file: no child, the keeper leaves), then
/// sleeps in `poll` on two pidfds — this process's and the child's — and
/// when either ends kills the child's process group with SIGKILL.
///
/// Between `fork` and `_exit` the keeper makes only system calls (rustix's
/// raw ones: no allocation, no lock), as a fork of a threaded process must.
/// It closes every descriptor it does not need first (stdio included), so
/// it holds no channel, pipe or terminal open; it blocks every signal, so
/// a Ctrl-C meant for this process's group cannot take the keeper first.
/// Returns its pid; the caller reaps it.
pub fn start_keeper(pid_pipe: OwnedFd) -> io::Result<u32> {
    let parent = rustix::process::getpid();
    let keep = pid_pipe.as_raw_fd();
    // SAFETY: fork in a threaded process: the child below calls only
    // async-signal-safe system calls and leaves by `_exit`, never returning
    // into Rust code that could take a lock another thread held at the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        drop(pid_pipe);
        return Ok(pid as u32);
    }
    keeper(parent, keep)
}

/// The keeper's whole life (see [`start_keeper`]).
fn keeper(parent: Pid, pid_pipe: RawFd) -> ! {
    let leave = || -> ! {
        // SAFETY: `_exit` ends the process without running anything.
        unsafe { libc::_exit(0) }
    };
    // SAFETY: sigfillset/sigprocmask on a local set: async-signal-safe.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
    let _ = rustix::thread::set_name(c"conduit-keeper");
    let _ = rustix::process::set_parent_process_death_signal(None);
    // Every descriptor but the pid pipe goes (stdio too).
    // SAFETY: close_range closes descriptors this fork owns and will not use.
    unsafe {
        if pid_pipe > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, (pid_pipe - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (pid_pipe + 1) as u32, u32::MAX, 0u32);
    }
    // SAFETY: `pid_pipe` is open (kept above) and owned by this fork alone.
    let pipe = unsafe { BorrowedFd::borrow_raw(pid_pipe) };
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match rustix::io::read(pipe, &mut buf[got..]) {
            Ok(0) => leave(),
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => leave(),
        }
    }
    let Some(child) = Pid::from_raw(i32::from_ne_bytes(buf)) else { leave() };
    let kill_group = || {
        let _ = rustix::process::kill_process_group(child, Signal::KILL);
    };
    // The parent's pidfd names the parent only if it is still our parent
    // after it was opened (else it died, and the pid may be reused).
    let parent_fd = rustix::process::pidfd_open(parent, PidfdFlags::empty());
    let parent_fd = match parent_fd {
        Ok(fd) if rustix::process::getppid() == Some(parent) => fd,
        _ => {
            kill_group();
            leave()
        }
    };
    let Ok(child_fd) = rustix::process::pidfd_open(child, PidfdFlags::empty()) else {
        kill_group();
        leave()
    };
    loop {
        let mut fds = [
            rustix::event::PollFd::new(&parent_fd, rustix::event::PollFlags::IN),
            rustix::event::PollFd::new(&child_fd, rustix::event::PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(n) if n > 0 => break,
            Err(rustix::io::Errno::INTR) | Ok(_) => {}
            Err(_) => break,
        }
    }
    kill_group();
    leave()
}

/// Wait for the process `pid` (a child of this one) to end and reap it.
pub fn reap(pid: u32) {
    let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) else { return };
    loop {
        match rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty()) {
            Err(rustix::io::Errno::INTR) => {}
            _ => return,
        }
    }
}

/// Reap the child `pid` if it has ended: `Some((code, signal))`.
pub fn try_reap(pid: u32) -> Option<(Option<i32>, Option<i32>)> {
    let p = i32::try_from(pid).ok().and_then(Pid::from_raw)?;
    match rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG) {
        Ok(Some((_, st))) => Some((st.exit_status(), st.terminating_signal())),
        _ => None,
    }
}

/// Make this process the reaper of its orphaned descendants
/// (`PR_SET_CHILD_SUBREAPER`).
pub fn set_subreaper() -> io::Result<()> {
    Ok(rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?)
}

/// The children of this process, from `/proc/self/task/*/children`.
pub fn children() -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")? {
        let path = task?.path().join("children");
        if let Ok(list) = std::fs::read_to_string(path) {
            out.extend(list.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    Ok(out)
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
