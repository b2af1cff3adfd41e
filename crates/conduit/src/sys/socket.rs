//! `AF_UNIX` `SOCK_SEQPACKET` sockets: pairs, framed send/receive with
//! `SCM_RIGHTS` and `SCM_CREDENTIALS`, and `poll`.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

use super::Deadline;

/// Most descriptors that one frame may carry (the kernel's `SCM_MAX_FD` is 253).
pub const MAX_FDS: usize = 200;

/// Kernel-verified identity of the process that sent a message
/// (`SCM_CREDENTIALS`, filled in by the kernel, not by the sender).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    /// Process id of the sender at the time of sending.
    pub pid: u32,
    /// User id (real) of the sender, as the kernel attaches it.
    pub uid: u32,
    /// Group id (real) of the sender.
    pub gid: u32,
}

/// This process's credentials as the kernel attaches them to a message
/// (`SCM_CREDENTIALS` without explicit ones: the process id and the real
/// user and group ids).
pub fn own_credentials() -> Credentials {
    Credentials {
        pid: rustix::process::getpid().as_raw_nonzero().get() as u32,
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
    }
}

/// A connected pair of `SOCK_SEQPACKET` sockets, close-on-exec and blocking.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
    Ok((a, b))
}

/// Ask the kernel to attach the sender's credentials to every message
/// received on `fd`.
pub fn set_passcred(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::sockopt::set_socket_passcred(fd, true)?)
}

/// Stop attaching the sender's credentials to messages received on `fd`.
pub fn clear_passcred(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::sockopt::set_socket_passcred(fd, false)?)
}

/// Send one datagram, with `fds` attached, never blocking and never
/// raising `SIGPIPE`. `WouldBlock` means the socket buffer is full.
pub fn send_frame(fd: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let iov = [IoSlice::new(bytes)];
    let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
    let sent = if fds.is_empty() {
        // No descriptors: `send`, which copies no message header.
        rustix::net::send(fd, bytes, flags)?
    } else {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors"));
        }
        rustix::net::sendmsg(fd, &iov, &mut control, flags)?
    };
    if sent != bytes.len() {
        // SOCK_SEQPACKET sends whole records or fails; this cannot happen.
        return Err(io::Error::other("short write on a seqpacket socket"));
    }
    Ok(())
}

/// What one `recvmsg` brought.
#[derive(Debug, Default)]
pub struct Received {
    /// Bytes of the datagram (the whole datagram length, even if truncated).
    pub len: usize,
    /// The datagram was longer than the buffer.
    pub truncated: bool,
    /// Descriptors did not fit in the control buffer (they were closed).
    pub fds_truncated: bool,
    /// Descriptors that came with it, already owned (closed on drop).
    pub fds: Vec<OwnedFd>,
    /// The sender, if the socket has `SO_PASSCRED`.
    pub creds: Option<Credentials>,
}

/// Receive one datagram into `buf`. `block` chooses a blocking receive;
/// otherwise `WouldBlock` means "nothing there".
pub fn recv_frame(fd: BorrowedFd<'_>, buf: &mut [u8], block: bool) -> io::Result<Received> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS), ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let mut flags = RecvFlags::CMSG_CLOEXEC | RecvFlags::TRUNC;
    if !block {
        flags |= RecvFlags::DONTWAIT;
    }
    let msg = loop {
        match rustix::net::recvmsg(fd, &mut iov, &mut control, flags) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other?,
        }
    };
    let mut out = Received {
        len: msg.bytes,
        truncated: msg.flags.contains(ReturnFlags::TRUNC),
        fds_truncated: msg.flags.contains(ReturnFlags::CTRUNC),
        ..Received::default()
    };
    for m in control.drain() {
        match m {
            RecvAncillaryMessage::ScmRights(fds) => out.fds.extend(fds),
            RecvAncillaryMessage::ScmCredentials(c) => {
                out.creds = Some(Credentials {
                    pid: c.pid.as_raw_nonzero().get() as u32,
                    uid: c.uid.as_raw(),
                    gid: c.gid.as_raw(),
                })
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Readiness reported by [`poll`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Data (or end of stream) can be read.
    pub readable: bool,
    /// The peer has gone (`POLLHUP`/`POLLERR`).
    pub hangup: bool,
}

fn timespec(d: Duration) -> Timespec {
    Timespec { tv_sec: d.as_secs().min(i64::MAX as u64) as i64, tv_nsec: d.subsec_nanos() as _ }
}

/// Wait until one of `fds` is readable or hung up, or `wait` runs out.
/// Returns one entry per descriptor; all `false` on timeout.
pub fn poll(fds: &[BorrowedFd<'_>], wait: Deadline) -> io::Result<Vec<Ready>> {
    let mut pfds: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(fd, PollFlags::IN)).collect();
    loop {
        let ts = wait.remaining().map(timespec);
        match rustix::event::poll(&mut pfds, ts.as_ref()) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => break,
        }
    }
    Ok(pfds
        .iter()
        .map(|p| {
            let r = p.revents();
            Ready { readable: r.contains(PollFlags::IN), hangup: r.intersects(PollFlags::HUP | PollFlags::ERR) }
        })
        .collect())
}

/// `poll` on prepared entries until one has an event or `wait` runs out.
pub fn poll_fds(pfds: &mut [PollFd<'_>], wait: Deadline) -> io::Result<()> {
    loop {
        let ts = wait.remaining().map(timespec);
        match rustix::event::poll(pfds, ts.as_ref()) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => return Ok(()),
        }
    }
}

/// Wait until `fd` can take more data (`POLLOUT`) or has hung up.
pub fn wait_writable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut pfd = [PollFd::new(&fd, PollFlags::OUT)];
    loop {
        match rustix::event::poll(&mut pfd, None) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => return Ok(()),
        }
    }
}

/// Wait until `fd` can be written (or failed), at most until `wait`:
/// `false` on timeout.
pub fn poll_out(fd: BorrowedFd<'_>, wait: Deadline) -> io::Result<bool> {
    let mut pfd = [PollFd::new(&fd, PollFlags::OUT)];
    poll_fds(&mut pfd, wait)?;
    Ok(!pfd[0].revents().is_empty())
}

/// Wait until `out` is writable or `watch` hangs up (its peer closed), or
/// `wait` runs out: true if `out` is writable.
pub fn poll_out_or_hangup(out: BorrowedFd<'_>, watch: BorrowedFd<'_>, wait: Deadline) -> io::Result<bool> {
    // No events asked on `watch`: a hang-up and an error are always told.
    let mut pfd = [PollFd::new(&out, PollFlags::OUT), PollFd::new(&watch, PollFlags::empty())];
    poll_fds(&mut pfd, wait)?;
    Ok(pfd[0].revents().contains(PollFlags::OUT))
}

/// True if the peer of a stream socket closed its end (`POLLRDHUP`) or the
/// connection failed, without waiting.
pub fn poll_rdhup(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut pfd = [PollFd::new(&fd, PollFlags::RDHUP)];
    poll_fds(&mut pfd, Deadline::Never)?;
    Ok(pfd[0].revents().intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR))
}

/// True if the peer of `fd` has closed its end.
pub fn peer_gone(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(poll(&[fd], Deadline::Never)?[0].hangup)
}

/// Duplicate a descriptor (close-on-exec).
pub fn dup(fd: impl AsFd) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 0)?)
}

/// True if `fd` is a Unix-domain `SOCK_SEQPACKET` socket.
pub fn is_unix_seqpacket(fd: BorrowedFd<'_>) -> bool {
    matches!(rustix::net::sockopt::socket_type(fd), Ok(SocketType::SEQPACKET))
        && matches!(rustix::net::sockopt::socket_domain(fd), Ok(AddressFamily::UNIX))
}

/// Wait, as an async task on the current tokio runtime, until `fd` is
/// readable or hung up.
#[cfg(feature = "tokio")]
pub async fn readable_async(fd: BorrowedFd<'_>) -> io::Result<()> {
    ready_async(fd, tokio::io::Interest::READABLE).await
}

/// Wait (as a task) until `fd` can be written (or has hung up).
#[cfg(feature = "tokio")]
pub async fn writable_async(fd: BorrowedFd<'_>) -> io::Result<()> {
    ready_async(fd, tokio::io::Interest::WRITABLE).await
}

#[cfg(feature = "tokio")]
async fn ready_async(fd: BorrowedFd<'_>, interest: tokio::io::Interest) -> io::Result<()> {
    use tokio::io::unix::AsyncFd;
    // A private duplicate: the reactor registration is ours alone.
    let own = dup(fd)?;
    // SAFETY: `own` is an open descriptor owned by the AsyncFd for its whole
    // life; nobody else can close or replace it.
    let afd = unsafe { AsyncFd::register_with_interest(own, interest) }.map_err(|e| e.into_parts().1)?;
    let _guard = afd.ready(interest).await?;
    Ok(())
}

/// Consume the wake frames (kind 2) at the head of `fd`'s queue, leaving
/// any other frame in place.
pub fn drain_wakes(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; crate::wire::HEADER_LEN];
    loop {
        let peek = rustix::net::recv(fd, &mut buf, RecvFlags::PEEK | RecvFlags::DONTWAIT);
        match peek {
            Ok((n, _)) if n == buf.len() && buf[3] == crate::wire::Kind::Wake as u8 => {
                let _ = rustix::net::recv(fd, &mut buf, RecvFlags::DONTWAIT);
            }
            _ => return,
        }
    }
}

/// True if `fd` is an eventfd (its `/proc/self/fd` link says so).
pub fn is_eventfd(fd: BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .is_ok_and(|l| l.as_os_str() == "anon_inode:[eventfd]")
}
