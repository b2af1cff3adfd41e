//! System V message queues as a transport: conduit's typed channels over
//! a kernel `msgget` queue, with the same capacity, rendezvous, timeout,
//! disconnection and port-set behaviour as every other transport (the
//! conformance suite runs on it).
//!
//! A channel is a **private queue** (`IPC_PRIVATE`, mode 0600: a channel
//! between processes of one user) plus, beside it, a seqpacket socket pair
//! that carries no data — the senders' bell (wake frames when a credit or
//! a rendezvous token opens) and the death notice — and an `eventfd` in
//! semaphore mode that counts the messages sent: a System V queue has no
//! descriptor to wait on, so the counter is what the receiver (and a
//! `PortSet`, and async code) sleeps on. A sender writes the frame
//! (`msgsnd`, **mtype 1**), then counts it; the receiver takes a frame
//! (`msgrcv` of type 1), then uncounts it. A receiver always looks at the
//! queue before it sleeps, so it never sleeps past a message; a sender
//! killed between its two calls leaves a message a port set learns of only
//! with the next one (or the sender's death). Messages of other types on
//! the queue are not the channel's and are left alone.
//!
//! **The queue's lifetime.** A System V queue lives until removed. The
//! receiver removes it when its end is dropped for good (not when it is
//! moved to another process); if the receiver dies without that (`kill -9`),
//! the first sender to see it gone removes it (at a send, or when dropped).
//! Only if the receiver and every sender are killed does the queue stay —
//! listed by `conduit ls` (kind `sysv-msg`, with its creator's pid) for
//! `conduit rm msg ID`. **Rights.** An end travels inside messages (kinds
//! 12 and 13: socket, counter, control block); the queue's id rides in the
//! control block with a random 16-byte **cookie** that the queue also
//! holds (a message of type [`COOKIE_TYPE`] at its head): an end put
//! together from a right is accepted only if the queue it names holds that
//! cookie (read with `MSG_COPY`), so a hostile peer cannot hand over an
//! end that points at another queue this process may read.
//!
//! Limits: frames up to the kernel's `msgmax` (8 KiB by default; larger:
//! `Error::TooLarge` at the send, the message handed back); no rights inside
//! messages (`Error::Unsupported`); the queue holds `msgmnb` bytes (16 KiB
//! by default; conduit asks for more where it may): a bounded channel's
//! send waits for room there (so a send that returned has its message in
//! the kernel); an unbounded channel's frames wait in the sender's outbox
//! (`Sender::flush` before exiting). Either looks again every millisecond
//! while the queue is full (the kernel offers no wait for room that does
//! not also send).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use super::queued::QueueRx;
use super::seqpacket::Seqpacket;
use super::{Caps, RxLink, TxLink, WriteFail};
use crate::channel::ctl::{Capacity, Ctl};
use crate::channel::{Receiver, Sender};
use crate::error::{Error, WireError};
use crate::sys::Deadline;
use crate::sys::socket::{self, Received};
use crate::sys::sysv as sys;
use crate::wire;

/// The type of every frame.
pub const MTYPE: i64 = 1;

/// The type of the cookie message at the queue's head.
pub const COOKIE_TYPE: i64 = 0x7fff_ffff_ffff_fff0;

/// What the control block holds for the link: the queue's id and cookie.
fn link_data(id: i32, cookie: [u8; 16]) -> [u8; 24] {
    let mut d = [0u8; 24];
    d[..4].copy_from_slice(&id.to_ne_bytes());
    d[8..].copy_from_slice(&cookie);
    d
}

/// The queue named in `ctl`, if it proves itself (see the module
/// documentation).
pub(crate) fn verify(ctl: &Ctl) -> Result<i32, &'static str> {
    let d = ctl.link_data();
    let id = i32::from_ne_bytes(d[..4].try_into().expect("4 bytes"));
    let (mtype, text) = sys::msg_copy(id, 0, 64).map_err(|_| "no System V queue this process may read")?;
    if mtype != COOKIE_TYPE || text.as_slice() != &d[8..] {
        return Err("a System V queue that does not hold the channel's cookie");
    }
    Ok(id)
}

fn caps() -> Caps {
    Caps { rights: false, credentials: false, inline_max: wire::MAX_PAYLOAD, frame_max: Some(max_frame()) }
}

/// The largest frame: the kernel's `msgmax`, at most a socket frame.
fn max_frame() -> usize {
    crate::kernel::msgmax().min(wire::MAX_FRAME)
}

/// Remove the queue (already gone: fine).
fn remove(id: i32) {
    let _ = sys::remove_sysv(sys::SysvKind::Msg, id);
}

fn gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EIDRM | libc::EINVAL))
}

/// The senders' end.
#[derive(Debug)]
pub(crate) struct SysvTx {
    sock: Seqpacket,
    count: OwnedFd,
    id: i32,
    moved: AtomicBool,
}

impl SysvTx {
    pub fn new(sock: OwnedFd, count: OwnedFd, id: i32) -> SysvTx {
        SysvTx { sock: Seqpacket::new(sock), count, id, moved: AtomicBool::new(false) }
    }

    pub fn caps(&self) -> Caps {
        caps()
    }

    pub fn sock(&self) -> &Seqpacket {
        &self.sock
    }

    pub fn try_send(&self, frame: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), WriteFail> {
        if !fds.is_empty() {
            return Err(WriteFail::Failed(Error::Unsupported("rights cannot travel through a System V queue")));
        }
        // The kernel takes a message nobody will read: ask first, so that a
        // send to a dead receiver fails with its message (and clean up).
        if self.sock.peer_gone() {
            remove(self.id);
            return Err(WriteFail::Disconnected);
        }
        match sys::msgsnd(self.id, MTYPE, frame, true) {
            Ok(()) => {
                let _ = rustix::io::write(&self.count, &1u64.to_ne_bytes());
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(WriteFail::NoRoom),
            Err(e) if gone(&e) => Err(WriteFail::Disconnected),
            Err(e) => Err(WriteFail::Failed(e.into())),
        }
    }

    /// Until the queue may have room or the receiver is gone (no
    /// descriptor says: a look every millisecond).
    pub fn wait_writable(&self) -> io::Result<()> {
        let _ = self.sock.wait_bell(Deadline::Until(std::time::Instant::now() + std::time::Duration::from_millis(1)));
        Ok(())
    }

    pub fn write_fd(&self) -> BorrowedFd<'_> {
        self.sock.fd()
    }

    pub fn dup_fds(&self) -> io::Result<Vec<OwnedFd>> {
        self.moved.store(true, Ordering::Relaxed);
        Ok(vec![socket::dup(self.sock.fd())?, socket::dup(&self.count)?])
    }
}

impl Drop for SysvTx {
    fn drop(&mut self) {
        // The receiver died without removing it: the last word is ours.
        if !self.moved.load(Ordering::Relaxed) && self.sock.peer_gone() {
            remove(self.id);
        }
    }
}

/// The receiver's end.
#[derive(Debug)]
pub(crate) struct SysvRx {
    /// The socket, and the wait set: the counter (readable when a message
    /// is counted) and the socket's hang-up.
    q: QueueRx,
    count: OwnedFd,
    id: i32,
    moved: AtomicBool,
}

impl SysvRx {
    pub fn new(sock: OwnedFd, count: OwnedFd, id: i32) -> io::Result<SysvRx> {
        Ok(SysvRx { q: QueueRx::new(sock, count.as_fd())?, count, id, moved: AtomicBool::new(false) })
    }

    pub fn caps(&self) -> Caps {
        caps()
    }

    pub fn sock(&self) -> &Seqpacket {
        &self.q.sock
    }

    /// Take one frame of type 1, then uncount it.
    fn take(&self, buf: &mut Vec<u8>) -> Result<Option<usize>, Error> {
        match sys::msgrcv_into(self.id, buf, max_frame(), MTYPE, true) {
            Ok((_, n)) => {
                let mut one = [0u8; 8];
                let _ = rustix::io::read(&self.count, &mut one);
                Ok(Some(n))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOMSG) => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::E2BIG) => {
                Err(WireError::TooLarge { size: max_frame() + 1, limit: max_frame() }.into())
            }
            Err(e) if gone(&e) => Err(Error::Io(io::Error::other("the channel's System V queue was removed"))),
            Err(e) => Err(e.into()),
        }
    }

    /// One message into `buf`; a zero-length one when every sender is gone
    /// and the queue holds none of the channel's.
    pub fn recv(&self, buf: &mut Vec<u8>, block: bool, _limit: usize) -> Result<Option<Received>, Error> {
        self.q.recv(buf, block, |buf| self.take(buf))
    }

    pub fn ready_fd(&self) -> BorrowedFd<'_> {
        self.q.ready_fd()
    }

    pub fn dup_fds(&self) -> io::Result<Vec<OwnedFd>> {
        self.moved.store(true, Ordering::Relaxed);
        Ok(vec![socket::dup(self.q.sock.fd())?, socket::dup(&self.count)?])
    }
}

impl Drop for SysvRx {
    fn drop(&mut self) {
        // Dropped for good (not moved on): nobody will read the queue.
        if !self.moved.load(Ordering::Relaxed) {
            remove(self.id);
        }
    }
}

/// Accept `fd` as a message counter (an eventfd), or say why not.
pub(crate) fn check_counter(fd: OwnedFd) -> Result<OwnedFd, &'static str> {
    if crate::sys::socket::is_eventfd(fd.as_fd()) { Ok(fd) } else { Err("not an eventfd") }
}

/// The System V queue under a channel's sender (`None` for another
/// transport): for `ipcs`, and for C programs that put frames on it
/// (`msgsnd` of type [`MTYPE`], each one whole conduit frame).
pub fn queue_id<T>(tx: &Sender<T>) -> Option<i32> {
    match tx.tx_link() {
        TxLink::Sysv(l) => Some(l.id),
        _ => None,
    }
}

/// The System V queue under a channel's receiver (`None` for another
/// transport).
pub fn receiver_queue_id<T>(rx: &Receiver<T>) -> Option<i32> {
    match rx.link() {
        RxLink::Sysv(l) => Some(l.id),
        _ => None,
    }
}

// ---- making channels ----

fn channel<T>(capacity: Capacity) -> Result<(Sender<T>, Receiver<T>), Error> {
    let id = sys::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600)?;
    let made = (|| -> Result<(Sender<T>, Receiver<T>), Error> {
        // Room for a few frames where the kernel lets us ask (root, or a
        // raised msgmnb); the outbox holds the rest.
        if let Ok(st) = sys::msg_stat(id) {
            let want = (8 * max_frame() as u64).max(st.max_bytes);
            let _ = sys::msg_set(id, st.uid, st.gid, st.mode, want);
        }
        let mut cookie = [0u8; 16];
        rustix::rand::getrandom(&mut cookie, rustix::rand::GetRandomFlags::empty())?;
        sys::msgsnd(id, COOKIE_TYPE, &cookie, true)?;
        let (send_end, recv_end) = socket::seqpacket_pair()?;
        let count = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::SEMAPHORE
                | rustix::event::EventfdFlags::NONBLOCK
                | rustix::event::EventfdFlags::CLOEXEC,
        )?;
        let count2 = socket::dup(&count)?;
        let ctl = Ctl::create(capacity)?;
        ctl.set_link_data(&link_data(id, cookie));
        let ctl2 = ctl.share()?;
        Ok((
            Sender::from_link(TxLink::Sysv(SysvTx::new(send_end, count, id)), ctl),
            Receiver::from_link(RxLink::Sysv(SysvRx::new(recv_end, count2, id)?), ctl2),
        ))
    })();
    if made.is_err() {
        remove(id);
    }
    made
}

/// A typed channel over a private System V message queue that holds at
/// most `n` unreceived messages (`0`: a rendezvous), as
/// [`crate::bounded`] (see the module documentation for what differs).
///
/// ```
/// let (tx, rx) = conduit::channel::sysv::bounded::<String>(4)?;
/// tx.send("through a System V queue".into()).unwrap();
/// assert_eq!(rx.recv().unwrap(), "through a System V queue");
/// # Ok::<(), conduit::Error>(())
/// ```
pub fn bounded<T>(n: usize) -> Result<(Sender<T>, Receiver<T>), Error> {
    channel(if n == 0 { Capacity::Zero } else { Capacity::Bounded(n as u64) })
}

/// A typed channel over a private System V message queue without a
/// limit: `send` never blocks (what the queue cannot take yet waits in the
/// sending process's outbox).
pub fn unbounded<T>() -> Result<(Sender<T>, Receiver<T>), Error> {
    channel(Capacity::Unbounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_naming_a_queue_without_the_cookie_is_refused() {
        // A queue this process may read, but not the channel's.
        let other = sys::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600).unwrap();
        sys::msgsnd(other, COOKIE_TYPE, &[9u8; 16], true).unwrap();
        let ctl = Ctl::create(Capacity::Unbounded).unwrap();
        ctl.set_link_data(&link_data(other, [7u8; 16]));
        assert_eq!(verify(&ctl), Err("a System V queue that does not hold the channel's cookie"));
        // The right cookie proves it; no queue at all is refused too.
        ctl.set_link_data(&link_data(other, [9u8; 16]));
        assert_eq!(verify(&ctl), Ok(other));
        remove(other);
        assert_eq!(verify(&ctl), Err("no System V queue this process may read"));
    }

    #[test]
    fn the_receiver_dropped_for_good_removes_the_queue_and_senders_are_told() {
        let (tx, rx) = bounded::<u64>(2).unwrap();
        let id = queue_id(&tx).unwrap();
        tx.send(1).unwrap();
        assert_eq!(rx.recv().unwrap(), 1);
        drop(rx);
        assert!(sys::msg_stat(id).is_err(), "removed with its receiver");
        assert!(tx.send(2).is_err());
    }
}
