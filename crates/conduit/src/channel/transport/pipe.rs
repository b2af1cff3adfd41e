//! The pipe transport: ordinary pipes (`pipe2`) and named pipes (FIFOs).
//!
//! A pipe carries a byte stream, one way; conduit frames it with the
//! wire header (see `docs/WIRE.md`), checksum always on. What the kernel
//! gives and does not give, and what conduit does about it:
//!
//! * **Atomic writes up to `PIPE_BUF` (4096 bytes).** A frame of at most
//!   that size is written with one `write`, whole or not at all, never
//!   interleaved with another writer's. A larger frame is cut into
//!   *fragments* (kind 4), each at most `PIPE_BUF` and written atomically,
//!   tagged with the writer and the message: several writers' fragments
//!   may interleave in the pipe, and the receiver puts each writer's frame
//!   back together. No lock is taken, nothing waits for another writer,
//!   and a writer killed halfway leaves a partial message that the
//!   receiver drops (it was never sent). This holds for FIFOs too.
//! * **No descriptors, no credentials.** Sending a right is
//!   [`Error::Unsupported`] at the send (nothing lost); `recv_from` is
//!   [`Error::NoCredentials`]. Payloads never go out of line.
//! * **Flow control.** Bounded and rendezvous channels count credits in
//!   the control block, like every local transport; since a pipe runs one
//!   way, a second pipe (the *bell*) carries "look again" from the
//!   receiver to sleeping senders.
//! * **Peer death.** Every writer gone: end of stream (`Disconnected`
//!   once the frames before it are read). The reader gone: `EPIPE` and
//!   `POLLERR` for writers (`Disconnected`), never `SIGPIPE`.
//! * **Framing lost.** A header that breaks the format means nothing after
//!   it can be trusted: the receiver reports it once as a typed
//!   [`WireError`](crate::WireError) and then `Disconnected`. A frame (or a fragmented
//!   message) declaring more than the receiver's limit is skipped as it
//!   arrives (never kept) and reported as [`WireError::TooLarge`](crate::WireError::TooLarge); the
//!   stream goes on.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;

use rustix::event::{PollFd, PollFlags};

use super::framing::{self, Stream};
use super::{Caps, WriteFail};
use crate::error::Error;
use crate::sys::Deadline;
use crate::sys::pipe::{self as sys, End, PIPE_BUF};
use crate::sys::socket::{self, Ready, Received};
use crate::wire;

const CAPS: Caps = Caps { rights: false, credentials: false, inline_max: wire::MAX_PAYLOAD, frame_max: None };

/// Writers of pipes made in this process get distinct numbers.
static WRITERS: AtomicU32 = AtomicU32::new(0);

/// Check the two pipe ends of a received right: the data end (read end
/// for a receive right) and the bell (the other way round).
pub(crate) fn check(receive: bool, data: OwnedFd, bell: OwnedFd) -> Result<(OwnedFd, OwnedFd), &'static str> {
    let (want_data, want_bell) = if receive { (End::Read, End::Write) } else { (End::Write, End::Read) };
    if sys::end_of(data.as_fd()) != Some(want_data) {
        return Err("not the right end of a pipe");
    }
    if sys::end_of(bell.as_fd()) != Some(want_bell) {
        return Err("the bell is not the right end of a pipe");
    }
    sys::set_nonblocking(data.as_fd()).map_err(|_| "pipe cannot be made non-blocking")?;
    sys::set_nonblocking(bell.as_fd()).map_err(|_| "pipe cannot be made non-blocking")?;
    Ok((data, bell))
}

fn write_fail(e: io::Error) -> WriteFail {
    match e.kind() {
        io::ErrorKind::WouldBlock => WriteFail::NoRoom,
        io::ErrorKind::BrokenPipe => WriteFail::Disconnected,
        _ => WriteFail::Failed(e.into()),
    }
}

/// Duplicates of an end's pipe and bell, for a right (a FIFO's end, with
/// no bell, is opened by path instead).
fn dup_ends(data: &OwnedFd, bell: Option<&OwnedFd>) -> io::Result<Vec<OwnedFd>> {
    let bell =
        bell.ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "a FIFO's end is not a right: pass its path"))?;
    Ok(vec![socket::dup(data)?, socket::dup(bell)?])
}

/// The senders' end: the pipe's write end, and the bell's read end
/// (ordinary pipes; a FIFO has none).
#[derive(Debug)]
pub(crate) struct PipeTx {
    data: OwnedFd,
    bell: Option<OwnedFd>,
    /// This end's number among the pipe's writers (pid, then a count).
    writer: u64,
    messages: AtomicU32,
    /// The fragments of the frame being written, and how far.
    partial: Mutex<Option<Partial>>,
}

/// A fragmented frame on its way: which frame (its buffer), its
/// fragments, and the bytes of them written.
#[derive(Debug)]
struct Partial {
    key: (usize, usize),
    fragments: Vec<u8>,
    sent: usize,
}

impl PipeTx {
    pub fn new(data: OwnedFd, bell: Option<OwnedFd>) -> PipeTx {
        // Whatever way this end came (made here, received, inherited).
        sys::ignore_sigpipe();
        let writer = u64::from(crate::sys::process::getpid()) << 32 | u64::from(WRITERS.fetch_add(1, Relaxed));
        PipeTx { data, bell, writer, messages: AtomicU32::new(0), partial: Mutex::default() }
    }

    pub fn caps(&self) -> Caps {
        CAPS
    }

    pub fn dup_fds(&self) -> io::Result<Vec<OwnedFd>> {
        dup_ends(&self.data, self.bell.as_ref())
    }

    pub fn peer_gone(&self) -> bool {
        sys::reader_gone(self.data.as_fd())
    }

    /// A frame larger than `PIPE_BUF` goes in fragments that may need
    /// several calls: only the outbox, which retries the same frame until
    /// it is through, may write it.
    pub fn must_queue(&self, len: usize) -> bool {
        len > PIPE_BUF
    }

    /// Write one frame now, or as much of its fragments as the pipe takes
    /// (`NoRoom`: call again with the same frame to go on).
    pub fn try_send(&self, frame: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), WriteFail> {
        if !fds.is_empty() {
            return Err(WriteFail::Failed(Error::Unsupported("descriptors cannot travel through a pipe")));
        }
        if frame.len() <= PIPE_BUF {
            return sys::write_whole(self.data.as_fd(), frame).map_err(write_fail);
        }
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        let key = (frame.as_ptr() as usize, frame.len());
        if partial.as_ref().is_none_or(|p| p.key != key) {
            let mut fragments = Vec::with_capacity(frame.len() + frame.len() / 64 + PIPE_BUF);
            let message = self.messages.fetch_add(1, Relaxed);
            wire::fragment(frame, self.writer, message, PIPE_BUF, &mut fragments);
            *partial = Some(Partial { key, fragments, sent: 0 });
        }
        let p = partial.as_mut().expect("set above");
        while p.sent < p.fragments.len() {
            let rest = &p.fragments[p.sent..];
            let len = match wire::stream_frame_len(rest) {
                Ok(Some((len, _))) => len,
                _ => unreachable!("fragments made here are well formed"),
            };
            match sys::write_whole(self.data.as_fd(), &rest[..len]) {
                Ok(()) => p.sent += len,
                Err(e) => {
                    let fail = write_fail(e);
                    if !matches!(fail, WriteFail::NoRoom) {
                        *partial = None;
                    }
                    return Err(fail);
                }
            }
        }
        *partial = None;
        Ok(())
    }

    pub fn wait_writable(&self) -> io::Result<()> {
        sys::wait_writable(self.data.as_fd())
    }

    pub fn wait_bell(&self, wait: Deadline) -> io::Result<Ready> {
        let mut fds = vec![PollFd::new(&self.data, PollFlags::empty())];
        if let Some(bell) = &self.bell {
            fds.push(PollFd::new(bell, PollFlags::IN));
        }
        socket::poll_fds(&mut fds, wait)?;
        let gone = fds.iter().any(|p| p.revents().intersects(PollFlags::ERR | PollFlags::HUP));
        let rang = fds.get(1).is_some_and(|p| p.revents().contains(PollFlags::IN));
        Ok(Ready { readable: rang, hangup: gone })
    }

    pub fn consume_wake(&self) -> io::Result<bool> {
        let Some(bell) = &self.bell else { return Ok(!self.peer_gone()) };
        let mut b = [0u8; 1];
        match sys::read_some(bell.as_fd(), &mut b) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
            Err(e) => Err(e),
        }
    }

    pub fn write_fd(&self) -> BorrowedFd<'_> {
        self.data.as_fd()
    }

    pub fn bell_fd(&self) -> BorrowedFd<'_> {
        self.bell.as_ref().unwrap_or(&self.data).as_fd()
    }
}

/// The receiver's end: the pipe's read end (a FIFO's, opened for reading
/// and writing), and the bell's write end.
#[derive(Debug)]
pub(crate) struct PipeRx {
    data: OwnedFd,
    bell: Option<OwnedFd>,
    stream: Mutex<Stream>,
}

impl PipeRx {
    pub fn new(data: OwnedFd, bell: Option<OwnedFd>) -> PipeRx {
        PipeRx { data, bell, stream: Mutex::default() }
    }

    fn stream(&self) -> std::sync::MutexGuard<'_, Stream> {
        self.stream.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn caps(&self) -> Caps {
        CAPS
    }

    pub fn dup_fds(&self) -> io::Result<Vec<OwnedFd>> {
        dup_ends(&self.data, self.bell.as_ref())
    }

    pub fn can_move(&self) -> bool {
        self.stream().is_idle()
    }

    /// A whole frame waits in this process (already read from the pipe).
    pub fn has_buffered(&self) -> bool {
        self.stream().has_frame()
    }

    pub fn peer_gone(&self) -> bool {
        self.stream().gone()
    }

    pub fn recv(&self, out: &mut Vec<u8>, block: bool, limit: usize) -> Result<Option<Received>, Error> {
        framing::recv(self.data.as_fd(), &mut self.stream(), out, block, limit, true)
    }

    pub fn ready_fd(&self) -> BorrowedFd<'_> {
        self.data.as_fd()
    }

    pub fn ring_senders(&self) {
        if let Some(bell) = &self.bell {
            // A full bell already holds wakes: fine to drop.
            let _ = sys::write_whole(bell.as_fd(), &[1]);
        }
    }
}

// ---- the public face: `conduit::channel::pipe` and `conduit::fifo` ----

use crate::channel::ctl::{Capacity, Ctl};
use crate::channel::{Receiver, Sender, bounded_capacity};

fn pipe_channel<T>(capacity: Capacity) -> Result<(Sender<T>, Receiver<T>), Error> {
    let (data_r, data_w) = sys::pipe()?;
    let (bell_r, bell_w) = sys::pipe()?;
    let ctl = Ctl::create(capacity)?;
    let ctl2 = ctl.share()?;
    let tx = Sender::from_link(super::TxLink::Pipe(PipeTx::new(data_w, Some(bell_r))), ctl);
    let rx = Receiver::from_link(super::RxLink::Pipe(PipeRx::new(data_r, Some(bell_w))), ctl2);
    Ok((tx, rx))
}

/// A typed channel over an ordinary pipe (`pipe2`), holding at most `n`
/// unreceived messages; `bounded(0)` is a rendezvous. Same API and rules
/// as [`crate::bounded`]; what a pipe cannot do is said in
/// [`Error::Unsupported`] (rights) and [`Error::NoCredentials`]
/// (`recv_from`). Either end can be passed to another process inside a
/// message on a socket channel, or to a child by
/// [`Command::pipes`](crate::process::Command::pipes).
///
/// ```
/// let (tx, rx) = conduit::channel::pipe::bounded::<String>(4)?;
/// tx.send("through a pipe".into()).unwrap();
/// assert_eq!(rx.recv().unwrap(), "through a pipe");
/// # Ok::<(), conduit::Error>(())
/// ```
pub fn bounded<T>(n: usize) -> Result<(Sender<T>, Receiver<T>), Error> {
    pipe_channel(bounded_capacity(n))
}

/// A typed channel over an ordinary pipe without a limit: `send` never
/// blocks (frames the pipe cannot take yet wait in the sending process's
/// outbox, as on sockets).
pub fn unbounded<T>() -> Result<(Sender<T>, Receiver<T>), Error> {
    pipe_channel(Capacity::Unbounded)
}

/// An ordinary pipe as two raw byte ends (`Read` and `Write`,
/// close-on-exec), for programs that speak bytes. A write to a pipe whose
/// reader is gone fails with `BrokenPipe` (`SIGPIPE` is ignored, as Rust
/// programs do). Either end can become typed: [`receiver_from`],
/// [`sender_from`].
pub fn raw() -> io::Result<(std::io::PipeReader, std::io::PipeWriter)> {
    sys::ignore_sigpipe();
    std::io::pipe()
}

/// A typed receiver on the read end of any pipe or FIFO — one from
/// [`raw`], one a parent left open, one a C program made with `pipe(2)`.
/// Unbounded (nothing shared tells senders about credits); a writer
/// speaks the wire format (`docs/WIRE.md`): frames with their checksum.
pub fn receiver_from<T>(read_end: OwnedFd) -> Result<Receiver<T>, Error> {
    if !matches!(sys::end_of(read_end.as_fd()), Some(End::Read | End::Both)) {
        return Err(Error::Io(io::Error::new(io::ErrorKind::InvalidInput, "not the read end of a pipe")));
    }
    sys::set_nonblocking(read_end.as_fd())?;
    Ok(Receiver::from_link(super::RxLink::Pipe(PipeRx::new(read_end, None)), Ctl::create(Capacity::Unbounded)?))
}

/// A typed sender on the write end of any pipe or FIFO (see
/// [`receiver_from`]). Unbounded.
pub fn sender_from<T>(write_end: OwnedFd) -> Result<Sender<T>, Error> {
    if !matches!(sys::end_of(write_end.as_fd()), Some(End::Write | End::Both)) {
        return Err(Error::Io(io::Error::new(io::ErrorKind::InvalidInput, "not the write end of a pipe")));
    }
    sys::set_nonblocking(write_end.as_fd())?;
    Ok(Sender::from_link(super::TxLink::Pipe(PipeTx::new(write_end, None)), Ctl::create(Capacity::Unbounded)?))
}

pub mod fifo {
    //! Named pipes (FIFOs): typed channels between unrelated processes that
    //! meet at a path in the file system.
    //!
    //! * [`create`] makes the FIFO (`mkfifo`) with a mode; it stays until
    //!   [`remove`]d, whoever opens and closes it.
    //! * [`receiver`] opens it for reading. It never waits for a writer, and
    //!   it also holds the FIFO open for writing itself, so it is never
    //!   disconnected by writers coming and going: a server reads from one
    //!   writer after another (use `recv_timeout` to stop waiting).
    //! * [`sender`] opens it for writing, waiting as long as it takes for a
    //!   receiver (the kernel's blocking open); [`try_sender`] fails at once
    //!   with [`Error::NoReader`], [`sender_timeout`] after a time limit.
    //! * Any number of writers, in any processes, never mix their messages:
    //!   a message up to `PIPE_BUF` (4096 bytes) framed is one atomic
    //!   `write`; a larger one goes as fragments, each atomic and tagged
    //!   with its writer, put back together by the receiver (see the
    //!   module `pipe`). The channel is unbounded (`send` never blocks; the
    //!   outbox holds what the FIFO cannot take yet). When the receiver is
    //!   gone, senders get `Disconnected`.
    //!
    //! ```
    //! # let dir = std::env::temp_dir().join(format!("conduit-doc-fifo-{}", std::process::id()));
    //! # std::fs::create_dir_all(&dir)?;
    //! let path = dir.join("requests");
    //! conduit::fifo::create(&path, 0o600)?;
    //! let rx = conduit::fifo::receiver::<String>(&path)?;
    //! let tx = conduit::fifo::try_sender::<String>(&path)?; // a receiver is there
    //! tx.send("hello".into()).unwrap();
    //! assert_eq!(rx.recv().unwrap(), "hello");
    //! conduit::fifo::remove(&path)?;
    //! # std::fs::remove_dir(&dir)?;
    //! # Ok::<(), conduit::Error>(())
    //! ```

    use std::os::fd::AsFd;
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::{PipeRx, PipeTx, sys};
    use crate::channel::ctl::{Capacity, Ctl};
    use crate::channel::transport::{RxLink, TxLink};
    use crate::channel::{Receiver, Sender};
    use crate::error::Error;

    /// Create a FIFO at `path` with permission bits `mode` (less the
    /// umask, as `mkfifo(3)`). Fails with `AlreadyExists` if the path is
    /// taken.
    pub fn create(path: impl AsRef<Path>, mode: u32) -> Result<(), Error> {
        Ok(sys::mkfifo(path.as_ref(), mode)?)
    }

    /// Remove the FIFO at `path` (open ends keep working).
    pub fn remove(path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        require_fifo(path)?;
        Ok(std::fs::remove_file(path)?)
    }

    fn require_fifo(path: &Path) -> Result<(), Error> {
        if sys::is_fifo(path)? {
            Ok(())
        } else {
            Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is not a FIFO", path.display()),
            )))
        }
    }

    /// Open the FIFO at `path` for receiving (never waits; see the module
    /// documentation).
    pub fn receiver<T>(path: impl AsRef<Path>) -> Result<Receiver<T>, Error> {
        let path = path.as_ref();
        require_fifo(path)?;
        let fd = sys::open_fifo_reader(path)?;
        Ok(Receiver::from_link(RxLink::Pipe(PipeRx::new(fd, None)), Ctl::create(Capacity::Unbounded)?))
    }

    fn sender_from<T>(fd: std::os::fd::OwnedFd) -> Result<Sender<T>, Error> {
        sys::set_nonblocking(fd.as_fd())?;
        Ok(Sender::from_link(TxLink::Pipe(PipeTx::new(fd, None)), Ctl::create(Capacity::Unbounded)?))
    }

    /// Open the FIFO at `path` for sending, waiting as long as it takes
    /// for a receiver to open it.
    pub fn sender<T>(path: impl AsRef<Path>) -> Result<Sender<T>, Error> {
        let path = path.as_ref();
        require_fifo(path)?;
        sender_from(sys::open_fifo_writer_blocking(path)?)
    }

    /// Open the FIFO at `path` for sending if a receiver has it open now;
    /// [`Error::NoReader`] otherwise.
    pub fn try_sender<T>(path: impl AsRef<Path>) -> Result<Sender<T>, Error> {
        let path = path.as_ref();
        require_fifo(path)?;
        match sys::try_open_fifo_writer(path)? {
            Some(fd) => sender_from(fd),
            None => Err(Error::NoReader(path.to_path_buf())),
        }
    }

    /// Open the FIFO at `path` for sending, waiting at most `timeout` for
    /// a receiver ([`Error::NoReader`] then). The kernel cannot wait for a
    /// FIFO's reader with a time limit: this looks again with a backoff
    /// of 1 to 50 ms.
    pub fn sender_timeout<T>(path: impl AsRef<Path>, timeout: Duration) -> Result<Sender<T>, Error> {
        let path = path.as_ref();
        require_fifo(path)?;
        let deadline = Instant::now() + timeout;
        let mut nap = Duration::from_millis(1);
        loop {
            if let Some(fd) = sys::try_open_fifo_writer(path)? {
                return sender_from(fd);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::NoReader(path.to_path_buf()));
            }
            std::thread::sleep(nap.min(left));
            nap = (nap * 2).min(Duration::from_millis(50));
        }
    }
}
