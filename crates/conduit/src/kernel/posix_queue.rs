//! POSIX message queues (`mq_open`, `mq_send`, `mq_receive`), through the
//! `nix` crate: named `/NAME`, messages with priorities (the highest is
//! received first, in order within a priority), a capacity in messages and
//! a largest message size fixed at creation. The descriptor is pollable:
//! every wait here is a `poll` on it, so sends and receives take a
//! deadline, and a queue can sit in any event loop ([`AsFd`]).
//!
//! Typed conduit messages go on a queue too ([`PosixQueue::send_msg`],
//! [`PosixQueue::recv_msg`]): the message is then one whole conduit frame,
//! and the priority keeps its meaning.
//!
//! **Notices** ([`PosixQueue::notices`]): `mq_notify` turned into a
//! message — a [`QueueNotice`] on a conduit receiver, which sits in a
//! [`PortSet`](crate::PortSet) with channels, each time a message arrives
//! on the empty queue.
//!
//! What the kernel does: a queue lives until unlinked (`unlink`,
//! `conduit rm mqueue NAME`) and closed by everyone; anyone its mode
//! admits may open it by name.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use nix::errno::Errno;
use nix::mqueue::{MQ_OFlag, MqAttr as NixAttr, MqdT};
use nix::sys::stat::Mode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::message_queue::IpcError;
use crate::channel::{Receiver, Sender};
use crate::sys::Deadline;
use crate::sys::socket;

fn mq_error(e: Errno) -> IpcError {
    match e {
        Errno::EACCES | Errno::EPERM => IpcError::Denied,
        Errno::ENOENT => IpcError::NotFound,
        Errno::EEXIST => IpcError::Exists,
        Errno::EMSGSIZE => IpcError::TooLarge { size: 0, limit: 0 },
        e => IpcError::Io(e.into()),
    }
}

fn name_of(name: &str) -> String {
    if name.starts_with('/') { name.to_string() } else { format!("/{name}") }
}

/// A POSIX message queue, open (closed on drop; the queue stays until
/// unlinked).
#[derive(Debug)]
pub struct PosixQueue {
    mq: Option<MqdT>,
    name: String,
    message_size: usize,
}

impl PosixQueue {
    fn open_with(name: &str, flags: MQ_OFlag, mode: u32, attr: Option<(usize, usize)>) -> Result<PosixQueue, IpcError> {
        let name = name_of(name);
        let attr = attr.map(|(cap, size)| NixAttr::new(0, cap as _, size as _, 0));
        let flags = flags | MQ_OFlag::O_RDWR | MQ_OFlag::O_NONBLOCK | MQ_OFlag::O_CLOEXEC;
        let mq = nix::mqueue::mq_open(name.as_str(), flags, Mode::from_bits_truncate(mode & 0o777), attr.as_ref())
            .map_err(mq_error)?;
        let message_size = nix::mqueue::mq_getattr(&mq).map_err(mq_error)?.msgsize() as usize;
        Ok(PosixQueue { mq: Some(mq), name, message_size })
    }

    /// Create `/NAME` holding at most `capacity` messages of at most
    /// `message_size` bytes, exclusively (the kernel's limits apply:
    /// `/proc/sys/fs/mqueue/msg_max` and `msgsize_max` without privilege).
    pub fn create(name: &str, capacity: usize, message_size: usize, mode: u32) -> Result<PosixQueue, IpcError> {
        PosixQueue::open_with(name, MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL, mode, Some((capacity, message_size)))
    }

    /// Open the existing queue `/NAME` to send and receive.
    pub fn open(name: &str) -> Result<PosixQueue, IpcError> {
        PosixQueue::open_with(name, MQ_OFlag::empty(), 0, None)
    }

    /// Remove the name `/NAME` (the queue goes when everyone closed it).
    pub fn unlink(name: &str) -> Result<(), IpcError> {
        nix::mqueue::mq_unlink(name_of(name).as_str()).map_err(mq_error)
    }

    fn mq(&self) -> &MqdT {
        self.mq.as_ref().expect("open until dropped")
    }

    /// Its name, with the leading `/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The largest message it takes.
    pub fn message_size(&self) -> usize {
        self.message_size
    }

    /// Messages queued now.
    pub fn len(&self) -> usize {
        nix::mqueue::mq_getattr(self.mq()).map_or(0, |a| a.curmsgs() as usize)
    }

    /// True if no message is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn send_until(&self, priority: u32, data: &[u8], wait: Deadline) -> Result<(), IpcError> {
        if data.len() > self.message_size {
            return Err(IpcError::TooLarge { size: data.len(), limit: self.message_size });
        }
        loop {
            match nix::mqueue::mq_send(self.mq(), data, priority) {
                Ok(()) => return Ok(()),
                Err(Errno::EAGAIN) => {
                    if wait == Deadline::Never || !socket::poll_out(self.mq().as_fd(), wait).map_err(IpcError::Io)? {
                        return Err(IpcError::Full);
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(mq_error(e)),
            }
        }
    }

    /// Send `data` with `priority` (0 lowest; receivers take the highest
    /// first), waiting while the queue is full.
    pub fn send(&self, priority: u32, data: &[u8]) -> Result<(), IpcError> {
        self.send_until(priority, data, Deadline::Forever)
    }

    /// Like [`send`](Self::send) without waiting: [`IpcError::Full`].
    pub fn try_send(&self, priority: u32, data: &[u8]) -> Result<(), IpcError> {
        self.send_until(priority, data, Deadline::Never)
    }

    /// Like [`send`](Self::send), waiting `timeout` at most:
    /// [`IpcError::Full`].
    pub fn send_timeout(&self, priority: u32, data: &[u8], timeout: Duration) -> Result<(), IpcError> {
        self.send_until(priority, data, Deadline::Until(std::time::Instant::now() + timeout))
    }

    fn recv_until(&self, wait: Deadline) -> Result<(u32, Vec<u8>), IpcError> {
        let mut buf = vec![0u8; self.message_size];
        loop {
            let mut priority = 0;
            match nix::mqueue::mq_receive(self.mq(), &mut buf, &mut priority) {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok((priority, buf));
                }
                Err(Errno::EAGAIN) => {
                    let ready = wait != Deadline::Never
                        && socket::poll(&[self.mq().as_fd()], wait).map_err(IpcError::Io)?[0].readable;
                    if !ready && (wait == Deadline::Never || wait.expired()) {
                        return Err(IpcError::Empty);
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(mq_error(e)),
            }
        }
    }

    /// Take the oldest message of the highest priority, waiting for one;
    /// returns its priority and bytes.
    pub fn recv(&self) -> Result<(u32, Vec<u8>), IpcError> {
        self.recv_until(Deadline::Forever)
    }

    /// Like [`recv`](Self::recv) without waiting: [`IpcError::Empty`].
    pub fn try_recv(&self) -> Result<(u32, Vec<u8>), IpcError> {
        self.recv_until(Deadline::Never)
    }

    /// Like [`recv`](Self::recv), waiting `timeout` at most:
    /// [`IpcError::Empty`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<(u32, Vec<u8>), IpcError> {
        self.recv_until(Deadline::Until(std::time::Instant::now() + timeout))
    }

    /// Notices, as messages: a [`QueueNotice`] each time a message arrives
    /// on this queue while it is empty (`mq_notify` with a signal conduit
    /// catches, [`notice_signal`]; the registration is renewed after each
    /// notice). A notice means *look*: take with [`try_recv`](Self::try_recv)
    /// until [`IpcError::Empty`]. The receiver can sit in a
    /// [`PortSet`](crate::PortSet) with channels.
    ///
    /// The kernel's rules: one process per queue may take notices
    /// (`IpcError::Exists` — EBUSY — for a second); none is raised while a
    /// receiver is blocked in `mq_receive` on the queue; and **closing any
    /// descriptor of the queue in this process ends the registration** —
    /// keep this handle (and no other of the same queue) open while
    /// notices are wanted. Dropping the receiver ends them at the next
    /// notice.
    pub fn notices(&self) -> Result<Receiver<QueueNotice>, IpcError> {
        start_notices()?;
        static NEXT: AtomicI32 = AtomicI32::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) =
            crate::channel::unbounded::<QueueNotice>().map_err(|e| IpcError::Io(std::io::Error::other(e)))?;
        let mut all = registered();
        if all.values().any(|r| r.queue == self.name) {
            // Ours already (and a duplicate closed now would end it).
            return Err(IpcError::Exists);
        }
        let mq = self.mq().as_fd().try_clone_to_owned().map_err(IpcError::Io)?;
        match crate::sys::signal::mq_notify(mq.as_fd(), Some((notice_signal(), id))) {
            Ok(()) => {}
            // Another process takes this queue's notices (closing our
            // duplicate ends nothing: we have no registration).
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Err(IpcError::Exists),
            Err(e) => return Err(IpcError::Io(e)),
        }
        all.insert(id, Registered { mq, queue: self.name.clone(), tx });
        Ok(rx)
    }

    /// Send a typed message: one whole conduit frame.
    pub fn send_msg<T: Serialize + ?Sized>(&self, priority: u32, msg: &T) -> Result<(), IpcError> {
        let frame = crate::wire::encode_frame(msg).map_err(IpcError::Message)?;
        self.send(priority, &frame)
    }

    /// Take a typed message (see [`send_msg`](Self::send_msg)).
    pub fn recv_msg<T: DeserializeOwned>(&self) -> Result<(u32, T), IpcError> {
        let (priority, bytes) = self.recv()?;
        Ok((priority, crate::wire::decode_frame(&bytes, bytes.len()).map_err(IpcError::Message)?))
    }
}

/// A message arrived on an empty POSIX queue (`mq_notify`, delivered as a
/// message by [`PosixQueue::notices`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueNotice {
    /// The queue's name (`/NAME`).
    pub queue: String,
    /// The process that sent the message, as the kernel says.
    pub pid: Option<u32>,
    /// Its real uid.
    pub uid: Option<u32>,
}

/// The signal conduit asks `mq_notify` for: `SIGRTMAX - 1`, caught by
/// conduit's signal thread (`signal-hook`) while any notices are taken. A
/// program that uses this signal for its own ends should not take notices.
pub fn notice_signal() -> i32 {
    libc::SIGRTMAX() - 1
}

/// The queues whose notices are taken, by the value their registration
/// carries.
struct Registered {
    mq: OwnedFd,
    queue: String,
    tx: Sender<QueueNotice>,
}

fn registered() -> MutexGuard<'static, HashMap<i32, Registered>> {
    static REGISTERED: OnceLock<Mutex<HashMap<i32, Registered>>> = OnceLock::new();
    REGISTERED.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner())
}

/// Start the thread that turns notice signals into messages (once).
fn start_notices() -> Result<(), IpcError> {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            let signals = crate::signal::subscribe(&[notice_signal()]).map_err(|e| e.to_string())?;
            std::thread::Builder::new()
                .name("conduit-mq-notices".into())
                .spawn(move || {
                    while let Ok(info) = signals.recv() {
                        if let Some(id) = info.value {
                            deliver(id, info.pid, info.uid);
                        }
                    }
                })
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| IpcError::Io(std::io::Error::other(e)))
}

/// A notice for registration `id`: send it, and register again (the
/// kernel's registration is used up by each notice). A message that came
/// between the notice and the new registration would raise none (the
/// queue was not empty): a second notice is sent then — a notice means
/// "look", and a receiver takes until `Empty`.
fn deliver(id: i32, pid: Option<u32>, uid: Option<u32>) {
    let mut all = registered();
    let Some(reg) = all.get(&id) else { return };
    if reg.tx.send(QueueNotice { queue: reg.queue.clone(), pid, uid }).is_err() {
        // Nobody takes them any more.
        all.remove(&id);
        return;
    }
    if crate::sys::signal::mq_notify(reg.mq.as_fd(), Some((notice_signal(), id))).is_err() {
        all.remove(&id);
        return;
    }
    // (Never a duplicate closed here: closing any descriptor of the queue
    // ends this process's registration — a Linux rule.)
    if crate::sys::signal::mq_waiting(reg.mq.as_fd()).unwrap_or(0) > 0 {
        let _ = reg.tx.send(QueueNotice { queue: reg.queue.clone(), pid: None, uid: None });
    }
}

/// The queue's descriptor: readable when a message is there, writable
/// when there is room.
impl AsFd for PosixQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.mq().as_fd()
    }
}

impl Drop for PosixQueue {
    fn drop(&mut self) {
        if let Some(mq) = self.mq.take() {
            let _ = nix::mqueue::mq_close(mq);
        }
    }
}
