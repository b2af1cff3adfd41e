//! Ordinary pipes and named pipes (FIFOs): creating, opening, checking,
//! and whole-frame writes that never raise `SIGPIPE`.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Once;

use rustix::event::{PollFd, PollFlags};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;

/// Writes of at most this many bytes to a pipe are atomic: they are never
/// interleaved with another writer's (POSIX `PIPE_BUF`, 4096 on Linux).
pub const PIPE_BUF: usize = rustix::pipe::PIPE_BUF;

/// A pipe, both ends close-on-exec and non-blocking: `(read, write)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    ignore_sigpipe();
    Ok(rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?)
}

/// Make sure a write to a pipe whose reader is gone fails with `EPIPE`
/// instead of killing the process: if `SIGPIPE` still has its default
/// action (Rust programs ignore it already; C hosts may not), ignore it.
pub fn ignore_sigpipe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `old` is a zeroed `sigaction`, valid for the kernel to
        // write the current action into (a null new action changes
        // nothing); setting SIG_IGN installs no handler code — it is the
        // state Rust's own runtime sets up for programs. (A handler another
        // thread installs between the two calls is left alone only if it
        // came first: this runs once, at the first pipe.)
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_DFL {
                libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            }
        }
    });
}

/// Write all of `bytes` to a non-blocking pipe now, or nothing:
/// `WouldBlock` when the pipe has no room for it. Only frames of at most
/// [`PIPE_BUF`] bytes get this all-or-nothing (and never-interleaved)
/// guarantee from the kernel; the caller checks the size.
pub fn write_whole(fd: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<()> {
    debug_assert!(bytes.len() <= PIPE_BUF);
    loop {
        match rustix::io::write(fd, bytes) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(_) => return Err(io::Error::other("short write of an atomic pipe frame")),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Read what is there into `buf` without blocking. `Ok(0)` is end of
/// stream (every writer gone); `WouldBlock`: nothing yet.
pub fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Err(Errno::INTR) => continue,
            other => return Ok(other?),
        }
    }
}

/// Wait until the write end `fd` has room, or its reader is gone.
pub fn wait_writable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut pfd = [PollFd::new(&fd, PollFlags::OUT)];
    loop {
        match rustix::event::poll(&mut pfd, None) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => return Ok(()),
        }
    }
}

/// True if the write end `fd` has lost its last reader (`POLLERR`).
pub fn reader_gone(fd: BorrowedFd<'_>) -> bool {
    let mut pfd = [PollFd::new(&fd, PollFlags::empty())];
    matches!(rustix::event::poll(&mut pfd, Some(&rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 })), Ok(n) if n > 0)
        && pfd[0].revents().intersects(PollFlags::ERR | PollFlags::HUP)
}

/// Which end of a pipe a descriptor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Opened for reading.
    Read,
    /// Opened for writing.
    Write,
    /// Opened for both (a FIFO's reader holding its own write end).
    Both,
}

/// The end `fd` is, if it is a pipe or FIFO; `None` for anything else.
pub fn end_of(fd: BorrowedFd<'_>) -> Option<End> {
    let st = rustix::fs::fstat(fd).ok()?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Fifo {
        return None;
    }
    let flags = rustix::fs::fcntl_getfl(fd).ok()?;
    Some(match flags & OFlags::RWMODE {
        OFlags::RDONLY => End::Read,
        OFlags::WRONLY => End::Write,
        _ => End::Both,
    })
}

/// Set `O_NONBLOCK` on `fd` (shared by every holder of the open file).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | OFlags::NONBLOCK)?;
    Ok(())
}

/// Create a FIFO at `path` with permission bits `mode` (the umask applies,
/// as for `mkfifo(3)`).
pub fn mkfifo(path: &Path, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::mknodat(rustix::fs::CWD, path, FileType::Fifo, Mode::from_raw_mode(mode & 0o7777), 0)?)
}

/// True if `path` is a FIFO.
pub fn is_fifo(path: &Path) -> io::Result<bool> {
    let st = rustix::fs::stat(path)?;
    Ok(FileType::from_raw_mode(st.st_mode) == FileType::Fifo)
}

/// Open a FIFO's read side without waiting for a writer, holding a write
/// end of our own as well (`O_RDWR`), so the reader never sees end of
/// stream between writers.
pub fn open_fifo_reader(path: &Path) -> io::Result<OwnedFd> {
    ignore_sigpipe();
    Ok(rustix::fs::open(path, OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY, Mode::empty())?)
}

/// Open a FIFO's write side without waiting: `Ok(None)` if no reader has
/// it open (`ENXIO`).
pub fn try_open_fifo_writer(path: &Path) -> io::Result<Option<OwnedFd>> {
    ignore_sigpipe();
    match rustix::fs::open(path, OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Open a FIFO's write side, waiting in the kernel until a reader has it
/// open (a blocking `open`, interrupted only by signals we retry).
pub fn open_fifo_writer_blocking(path: &Path) -> io::Result<OwnedFd> {
    ignore_sigpipe();
    loop {
        match rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOCTTY, Mode::empty()) {
            Err(Errno::INTR) => continue,
            other => return Ok(other?),
        }
    }
}
