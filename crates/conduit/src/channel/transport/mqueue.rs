//! POSIX message queues as a transport: conduit's typed channels over a
//! kernel `mq_*` queue, with the same capacity, rendezvous, timeout,
//! disconnection and port-set behaviour as every other transport (the
//! conformance suite runs on it).
//!
//! A channel is an **anonymous queue** (created under a random name and
//! unlinked at once, so it lives as long as a descriptor of it: nothing is
//! left behind, `kill -9` included) plus a seqpacket socket pair that
//! carries no data — only the senders' bell (wake frames when a credit or a
//! rendezvous token opens) and the death notice (a hang-up when the last
//! end of the other side closes). Each frame is one queue message, sent at
//! **priority 0**: the queue stays first-in first-out like every conduit
//! channel (a message some other program sends at a higher priority is
//! read first, and must be a conduit frame, else the receive is a typed
//! `WireError`). Capacity is conduit's control block, exact across
//! processes; the kernel queue holds at most a few messages (a bounded
//! channel's send waits for room there, so a send that returned has its
//! message in the kernel; an unbounded channel's wait in the sender's
//! outbox — `Sender::flush` before exiting), because each
//! queue's memory counts against the user's `RLIMIT_MSGQUEUE` (800 KiB by
//! default: `ulimit -q`).
//!
//! What a queue cannot carry is refused at the send with a typed error,
//! the message handed back: rights (`Error::Unsupported`) and frames over
//! the queue's message size (`Error::TooLarge`; 8 KiB by default,
//! [`Builder::message_size`]). The receiver polls one descriptor (an
//! epoll set of the queue and the socket), so it joins a `PortSet` and
//! async code like any other. A channel end travels inside messages as a
//! right (kinds 10 and 11: socket, queue, control block).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::queued::QueueRx;
use super::seqpacket::Seqpacket;
use super::{Caps, RxLink, TxLink, WriteFail};
use crate::channel::ctl::{Capacity, Ctl};
use crate::channel::{Receiver, Sender};
use crate::error::{Error, WireError};
use crate::sys::Deadline;
use crate::sys::mqueue as sys;
use crate::sys::socket::{self, Received};
use crate::wire;

/// The priority of every frame (first in, first out).
pub const PRIORITY: u32 = 0;

/// The queue's message size unless asked otherwise (Linux's default
/// `msgsize_max`, which an unprivileged process may not exceed).
pub const DEFAULT_MESSAGE_SIZE: usize = 8192;

/// At most this many messages in the kernel queue itself.
const KERNEL_DEPTH: usize = 4;

/// Accept `fd` as a queue a conduit end may use: a POSIX message queue
/// whose message size this process will allocate for (at most a socket
/// frame), or say why not.
pub(crate) fn check(fd: OwnedFd) -> Result<OwnedFd, &'static str> {
    match sys::attr(fd.as_fd()) {
        None => Err("not a POSIX message queue"),
        Some(a) if a.msgsize < wire::HEADER_LEN || a.msgsize > wire::MAX_FRAME => {
            Err("a message queue whose message size is out of bounds")
        }
        Some(_) => Ok(fd),
    }
}

fn caps(msgsize: usize) -> Caps {
    Caps { rights: false, credentials: false, inline_max: wire::MAX_PAYLOAD, frame_max: Some(msgsize) }
}

/// The senders' end.
#[derive(Debug)]
pub(crate) struct MqTx {
    sock: Seqpacket,
    mq: OwnedFd,
    msgsize: usize,
}

impl MqTx {
    pub fn new(sock: OwnedFd, mq: OwnedFd) -> io::Result<MqTx> {
        let a = sys::attr(mq.as_fd()).ok_or_else(|| io::Error::other("not a message queue"))?;
        Ok(MqTx { sock: Seqpacket::new(sock), mq, msgsize: a.msgsize })
    }

    pub fn caps(&self) -> Caps {
        caps(self.msgsize)
    }

    /// The socket: the bell and the death notice.
    pub fn sock(&self) -> &Seqpacket {
        &self.sock
    }

    pub fn try_send(&self, frame: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), WriteFail> {
        if !fds.is_empty() {
            return Err(WriteFail::Failed(Error::Unsupported("rights cannot travel through a message queue")));
        }
        // The kernel takes a message for a queue nobody reads: ask first,
        // so that a send to a dead receiver fails with its message.
        if self.sock.peer_gone() {
            return Err(WriteFail::Disconnected);
        }
        match sys::send(self.mq.as_fd(), frame, PRIORITY) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(WriteFail::NoRoom),
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                Err(WriteFail::Failed(Error::TooLarge { size: frame.len(), limit: self.msgsize }))
            }
            Err(e) => Err(WriteFail::Failed(e.into())),
        }
    }

    /// Until the queue has room or the receiver is gone (a queue's
    /// descriptor does not say: one `poll` watches it and the socket
    /// beside it, which hangs up when the receiver's last end closes).
    pub fn wait_writable(&self) -> io::Result<()> {
        loop {
            if socket::poll_out_or_hangup(self.mq.as_fd(), self.sock.fd(), Deadline::Forever)? {
                return Ok(());
            }
            if self.sock.peer_gone() {
                return Ok(());
            }
        }
    }

    pub fn write_fd(&self) -> BorrowedFd<'_> {
        self.mq.as_fd()
    }

    pub fn dup_fds(&self) -> io::Result<Vec<OwnedFd>> {
        Ok(vec![socket::dup(self.sock.fd())?, socket::dup(&self.mq)?])
    }
}

/// The receiver's end.
#[derive(Debug)]
pub(crate) struct MqRx {
    q: QueueRx,
    mq: OwnedFd,
    msgsize: usize,
}

impl MqRx {
    pub fn new(sock: OwnedFd, mq: OwnedFd) -> io::Result<MqRx> {
        let a = sys::attr(mq.as_fd()).ok_or_else(|| io::Error::other("not a message queue"))?;
        Ok(MqRx { q: QueueRx::new(sock, mq.as_fd())?, mq, msgsize: a.msgsize })
    }

    pub fn caps(&self) -> Caps {
        caps(self.msgsize)
    }

    pub fn sock(&self) -> &Seqpacket {
        &self.q.sock
    }

    /// One message into `buf`; a zero-length one when every sender is gone
    /// and the queue is empty (the end of the stream).
    pub fn recv(&self, buf: &mut Vec<u8>, block: bool, _limit: usize) -> Result<Option<Received>, Error> {
        if buf.len() < self.msgsize {
            buf.resize(self.msgsize, 0);
        }
        self.q.recv(buf, block, |buf| match sys::receive(self.mq.as_fd(), buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                Err(WireError::TooLarge { size: self.msgsize, limit: buf.len() }.into())
            }
            Err(e) => Err(e.into()),
        })
    }

    pub fn ready_fd(&self) -> BorrowedFd<'_> {
        self.q.ready_fd()
    }

    pub fn dup_fds(&self) -> io::Result<Vec<OwnedFd>> {
        Ok(vec![socket::dup(self.q.sock.fd())?, socket::dup(&self.mq)?])
    }
}

// ---- making channels ----

/// Options of a message-queue channel.
#[derive(Clone, Copy, Debug)]
pub struct Builder {
    capacity: Capacity,
    message_size: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Builder { capacity: Capacity::Unbounded, message_size: DEFAULT_MESSAGE_SIZE }
    }
}

impl Builder {
    /// Unbounded, 8 KiB messages.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `n` unreceived messages (0: a rendezvous).
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = if n == 0 { Capacity::Zero } else { Capacity::Bounded(n as u64) };
        self
    }

    /// The queue's message size: the largest frame (header included) a
    /// send may write. Above the kernel's `msgsize_max` (8 KiB) only with
    /// privilege; at most a socket frame (about 64 KiB).
    pub fn message_size(mut self, bytes: usize) -> Self {
        self.message_size = bytes;
        self
    }

    /// The channel.
    pub fn build<T>(self) -> Result<(Sender<T>, Receiver<T>), Error> {
        if self.message_size < wire::HEADER_LEN + 1 || self.message_size > wire::MAX_FRAME {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a message size of {} to {} bytes", wire::HEADER_LEN + 1, wire::MAX_FRAME),
            )));
        }
        let depth = match self.capacity {
            Capacity::Bounded(n) => (n as usize).clamp(1, KERNEL_DEPTH),
            _ => KERNEL_DEPTH,
        };
        let mq = sys::anonymous(depth, self.message_size).map_err(|e| {
            if e.raw_os_error() == Some(libc::EMFILE) {
                Error::Io(io::Error::other(
                    "this user's POSIX message queues are at RLIMIT_MSGQUEUE (see `ulimit -q`), or too many are open",
                ))
            } else {
                Error::Io(e)
            }
        })?;
        let (send_end, recv_end) = socket::seqpacket_pair()?;
        let ctl = Ctl::create(self.capacity)?;
        let ctl2 = ctl.share()?;
        let mq2 = socket::dup(&mq)?;
        Ok((
            Sender::from_link(TxLink::Mq(MqTx::new(send_end, mq)?), ctl),
            Receiver::from_link(RxLink::Mq(MqRx::new(recv_end, mq2)?), ctl2),
        ))
    }
}

/// A typed channel over an anonymous POSIX message queue that holds at
/// most `n` unreceived messages (`0`: a rendezvous), as
/// [`crate::bounded`] (see the module documentation for what differs).
///
/// ```
/// let (tx, rx) = conduit::channel::mqueue::bounded::<String>(4)?;
/// tx.send("through a message queue".into()).unwrap();
/// assert_eq!(rx.recv().unwrap(), "through a message queue");
/// # Ok::<(), conduit::Error>(())
/// ```
pub fn bounded<T>(n: usize) -> Result<(Sender<T>, Receiver<T>), Error> {
    Builder::new().capacity(n).build()
}

/// A typed channel over an anonymous POSIX message queue without a limit:
/// `send` never blocks (messages the queue cannot take yet wait in the
/// sending process's outbox).
pub fn unbounded<T>() -> Result<(Sender<T>, Receiver<T>), Error> {
    Builder::new().build()
}
