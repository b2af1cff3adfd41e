//! POSIX message queues by descriptor (on Linux an `mqd_t` is a file
//! descriptor, so a queue can be polled, duplicated and passed by
//! `SCM_RIGHTS`): anonymous queues for the `mqueue` transport, and the
//! calls its links make.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// A queue's attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Capacity in messages.
    pub maxmsg: usize,
    /// Largest message.
    pub msgsize: usize,
    /// Messages in it now.
    pub curmsgs: usize,
}

/// A new queue that no name leads to: created under a fresh random name
/// (`O_EXCL`, mode 0600, non-blocking, close-on-exec) and unlinked at
/// once, so it lives exactly as long as a descriptor of it is open — like
/// a pipe. (A process killed between the two calls leaves the name
/// `/conduit-anon-…` behind, for `conduit rm mqueue`.)
pub fn anonymous(maxmsg: usize, msgsize: usize) -> io::Result<OwnedFd> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut rand = [0u8; 8];
    rustix::rand::getrandom(&mut rand, rustix::rand::GetRandomFlags::empty())?;
    let name = format!(
        "/conduit-anon-{}-{}-{:016x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        u64::from_ne_bytes(rand)
    );
    let cname = CString::new(name).expect("no NUL in the name");
    // SAFETY: mq_attr is plain data; zeroed, then the two fields mq_open
    // reads are set.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = maxmsg as libc::c_long;
    attr.mq_msgsize = msgsize as libc::c_long;
    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated name, flags, a mode and a valid attribute
    // pointer (mq_open is variadic: mode and attr are passed for O_CREAT).
    let mqd = check(unsafe { libc::mq_open(cname.as_ptr(), flags, 0o600 as libc::mode_t, &attr) })?;
    // SAFETY: mq_open returned a new descriptor, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(mqd) };
    // SAFETY: the same NUL-terminated name.
    check(unsafe { libc::mq_unlink(cname.as_ptr()) })?;
    Ok(fd)
}

/// `mq_getattr`: `None` if `fd` is no message queue.
pub fn attr(fd: BorrowedFd<'_>) -> Option<Attr> {
    // SAFETY: plain data, filled by the kernel.
    let mut a: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: any descriptor; a non-queue fails with EBADF/EINVAL.
    let r = unsafe { libc::mq_getattr(fd.as_raw_fd(), &mut a) };
    (r == 0).then(|| Attr {
        maxmsg: a.mq_maxmsg.max(0) as usize,
        msgsize: a.mq_msgsize.max(0) as usize,
        curmsgs: a.mq_curmsgs.max(0) as usize,
    })
}

/// `mq_send` on a non-blocking queue: `WouldBlock` when full.
pub fn send(fd: BorrowedFd<'_>, frame: &[u8], priority: u32) -> io::Result<()> {
    loop {
        // SAFETY: a valid buffer and its length.
        let r = unsafe { libc::mq_send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), priority) };
        match check(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map(drop),
        }
    }
}

/// `mq_receive` into `buf` (at least the queue's message size) on a
/// non-blocking queue: the length, or `WouldBlock` when empty.
pub fn receive(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut priority = 0u32;
        // SAFETY: a valid buffer and its length; the priority out-pointer.
        let r = unsafe { libc::mq_receive(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), &mut priority) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
