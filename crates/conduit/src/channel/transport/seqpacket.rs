//! The Unix seqpacket transport: one `AF_UNIX` `SOCK_SEQPACKET` datagram
//! per frame, descriptors by `SCM_RIGHTS`, the sender named by
//! `SCM_CREDENTIALS`.
//!
//! Both directions of flow control use the one socket: frames go to the
//! receiver, wake frames (a header, no payload) come back to the senders'
//! side when a credit or a rendezvous token opens. A peer's death is a
//! hang-up on the socket, seen by `poll` at once.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::{Caps, WriteFail};
use crate::error::{Error, WireError};
use crate::sys::Deadline;
use crate::sys::socket::{self, Ready, Received};
use crate::wire::{self, MAX_FRAME};

/// One end of a seqpacket link (either side: the socket is bidirectional).
#[derive(Debug)]
pub(crate) struct Seqpacket {
    sock: OwnedFd,
}

/// What seqpacket channels carry.
pub(crate) const CAPS: Caps = Caps { rights: true, credentials: true, inline_max: wire::INLINE_MAX, frame_max: None };

/// True for a broken connection: the peer is gone.
pub(crate) fn is_disconnect(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected)
}

/// Why a write to a socket did not go: no room, the peer gone, or else.
pub(crate) fn write_fail(e: io::Error) -> WriteFail {
    if e.kind() == io::ErrorKind::WouldBlock {
        WriteFail::NoRoom
    } else if is_disconnect(&e) {
        WriteFail::Disconnected
    } else {
        WriteFail::Failed(e.into())
    }
}

/// Accept `fd` as a conduit socket, or say why not.
pub(crate) fn check(fd: OwnedFd) -> Result<OwnedFd, &'static str> {
    if socket::is_unix_seqpacket(fd.as_fd()) { Ok(fd) } else { Err("not a conduit socket") }
}

impl Seqpacket {
    pub fn new(sock: OwnedFd) -> Seqpacket {
        Seqpacket { sock }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    pub fn caps(&self) -> Caps {
        CAPS
    }

    pub fn dup_fds(&self) -> io::Result<Vec<OwnedFd>> {
        Ok(vec![socket::dup(&self.sock)?])
    }

    pub fn peer_gone(&self) -> bool {
        socket::peer_gone(self.fd()).unwrap_or(true)
    }

    // ---- senders' side ----

    #[inline]
    pub fn try_send(&self, frame: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), WriteFail> {
        socket::send_frame(self.fd(), frame, fds).map_err(write_fail)
    }

    pub fn wait_writable(&self) -> io::Result<()> {
        socket::wait_writable(self.fd())
    }

    pub fn wait_bell(&self, wait: Deadline) -> io::Result<Ready> {
        Ok(socket::poll(&[self.fd()], wait)?[0])
    }

    /// `Ok(false)`: the receiver is gone.
    pub fn consume_wake(&self) -> io::Result<bool> {
        let mut buf = [0u8; 64];
        match socket::recv_frame(self.fd(), &mut buf, false) {
            Ok(r) if r.len == 0 && r.fds.is_empty() => Ok(false),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
            // A receiver that died with our frames unread resets the
            // connection: that is its death, reported as everywhere else.
            Err(e) if is_disconnect(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn write_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }

    pub fn bell_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }

    // ---- receiver's side ----

    #[inline]
    pub fn recv(&self, buf: &mut Vec<u8>, block: bool, _limit: usize) -> Result<Option<Received>, Error> {
        if buf.len() < MAX_FRAME {
            buf.resize(MAX_FRAME, 0);
        }
        loop {
            match socket::recv_frame(self.fd(), buf, block) {
                Ok(rec) => {
                    if rec.truncated {
                        return Err(WireError::TooLarge { size: rec.len, limit: MAX_FRAME }.into());
                    }
                    return Ok(Some(rec));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                // The last sender closed with wake frames unread: the kernel
                // reports that once; the queued messages are still there.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => continue,
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    pub fn ready_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }

    pub fn ring_senders(&self) {
        // A full socket means wakes are already pending: fine to drop.
        let _ = socket::send_frame(self.fd(), wire::wake_frame(), &[]);
    }
}

// ---- making channels ----

use super::{RxLink, TxLink};
use crate::channel::ctl::{Capacity, Ctl};
use crate::channel::{Receiver, Sender};

/// Both directions of a connected seqpacket socket, unbounded.
pub(crate) fn connection<Tx, Rx>(sock: OwnedFd) -> Result<(Sender<Tx>, Receiver<Rx>), Error> {
    if !socket::is_unix_seqpacket(sock.as_fd()) {
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a connection needs a Unix SOCK_SEQPACKET socket",
        )));
    }
    socket::set_passcred(sock.as_fd())?;
    let dup = socket::dup(&sock)?;
    let ctl_tx = Ctl::create(Capacity::Unbounded)?;
    let ctl_rx = Ctl::create(Capacity::Unbounded)?;
    Ok((
        Sender::from_link(TxLink::Seqpacket(Seqpacket::new(sock)), ctl_tx),
        Receiver::from_link(RxLink::Seqpacket(Seqpacket::new(dup)), ctl_rx),
    ))
}
