//! What the two kernel-queue links share on the receiver's side (`mqueue`
//! and `sysv`): a queue that holds the frames, a socket beside it whose
//! hang-up says every sender is gone, and one epoll descriptor that is
//! readable when either has something to say — the descriptor a receiver,
//! a port set or an async task waits on.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::epoll;

use super::seqpacket::Seqpacket;
use crate::error::Error;
use crate::sys::Deadline;
use crate::sys::socket::{self, Received};

/// The receiver's side: the socket and the wait set.
#[derive(Debug)]
pub(crate) struct QueueRx {
    pub sock: Seqpacket,
    /// Readable when `data` is, or every sender is gone.
    ready: OwnedFd,
}

impl QueueRx {
    /// Wait on `data` (readable when a frame is there) and `sock`'s hang-up.
    pub fn new(sock: OwnedFd, data: BorrowedFd<'_>) -> io::Result<QueueRx> {
        let ready = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(&ready, data, epoll::EventData::new_u64(0), epoll::EventFlags::IN)?;
        let gone = epoll::EventFlags::RDHUP | epoll::EventFlags::HUP;
        epoll::add(&ready, &sock, epoll::EventData::new_u64(1), gone)?;
        Ok(QueueRx { sock: Seqpacket::new(sock), ready })
    }

    pub fn ready_fd(&self) -> BorrowedFd<'_> {
        self.ready.as_fd()
    }

    /// One frame by `take` (`Ok(None)`: the queue has none now); a
    /// zero-length one when every sender is gone and the queue is empty
    /// (the end of the stream); waiting on the set if `block`.
    pub fn recv(
        &self,
        buf: &mut Vec<u8>,
        block: bool,
        mut take: impl FnMut(&mut Vec<u8>) -> Result<Option<usize>, Error>,
    ) -> Result<Option<Received>, Error> {
        let got = |len| Received { len, truncated: false, fds_truncated: false, fds: Vec::new(), creds: None };
        loop {
            if let Some(n) = take(buf)? {
                return Ok(Some(got(n)));
            }
            if self.sock.peer_gone() {
                // What the last sender sent before it went is queued by now.
                return Ok(Some(got(take(buf)?.unwrap_or(0))));
            }
            if !block {
                return Ok(None);
            }
            socket::poll(&[self.ready.as_fd()], Deadline::Forever)?;
        }
    }
}
