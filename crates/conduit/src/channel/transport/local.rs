//! A socket channel whose two ends are both in this process — what
//! `conduit::bounded`/`unbounded` make. Its frames wait in a queue in
//! memory, and its socket pair is made only the first time it is needed:
//!
//! * an end leaves the process (a right in a message, a child's
//!   inheritance: `to_right`);
//! * someone wants a descriptor to `poll` (a port set, an async task,
//!   `AsFd`, the dead-name watch of `notify`).
//!
//! From then on the channel is exactly a [`seqpacket`](super::seqpacket)
//! channel. The frames still queued go into the socket first, in order;
//! those that do not fit at once (a full socket buffer) are the *backlog*,
//! written by a short-lived thread, or by a sender that comes first, before
//! any later frame (until it is written, later frames wait in the outbox).
//!
//! So a channel that never leaves its process costs one descriptor (its
//! control block) instead of three, and a message a lock and a copy
//! instead of two system calls. The kernel's part is imitated: the
//! receiver gets this process's credentials with each frame, a dropped
//! receiver makes sends fail with `Disconnected`, a dropped sender ends the
//! receiver's stream after the frames already queued, a receiver's bell
//! wakes sleeping senders. A bare `fork()` copies the queue rather than
//! sharing it: ends reach other processes as rights (messages, `Command`),
//! which make the socket pair first.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};

use super::seqpacket::{self, Seqpacket};
use super::{Caps, RxLink, TxLink, WriteFail};
use crate::channel::ctl::{Capacity, Ctl};
use crate::channel::{Receiver, Sender};
use crate::error::Error;
use crate::sys::Deadline;
use crate::sys::socket::{self, Credentials, Ready, Received};

const TX: usize = 0;
const RX: usize = 1;
/// Wakes kept for sleeping senders (a socket, too, keeps only so many
/// wake frames: one is enough to make every sleeper look again).
const MAX_WAKES: u64 = 1024;

/// A frame in the queue.
struct Queued {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Queued {
    fn send(&self, sock: &Seqpacket) -> Result<(), WriteFail> {
        let fds: Vec<BorrowedFd<'_>> = self.fds.iter().map(|f| f.as_fd()).collect();
        sock.try_send(&self.bytes, &fds)
    }
}

/// One side's socket, once the pair is made.
#[derive(Debug, Default)]
struct End {
    sock: OnceLock<Seqpacket>,
}

struct State {
    made: bool,
    ends: [Weak<End>; 2],
    dropped: [bool; 2],
    /// Frames sent and not yet received (before the pair is made).
    queue: VecDeque<Queued>,
    /// Rings of the senders' bell not yet taken.
    wakes: u64,
    /// The receiver wants the sender's credentials with each frame.
    credentials: bool,
    /// Threads asleep: senders on the bell, the receiver for data.
    waiting: [u32; 2],
    /// Queued frames that did not fit the socket when it was made.
    backlog: VecDeque<Queued>,
}

struct Pair {
    st: Mutex<State>,
    /// Senders sleep on the first, the receiver on the second.
    cv: [Condvar; 2],
    /// The backlog is not written yet (read without the lock by senders).
    backlog: AtomicBool,
    me: Credentials,
}

/// What writing the backlog came to.
enum Pushed {
    All,
    NoRoom,
    Gone,
}

impl Pair {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleep as `who` until woken or `until`.
    fn wait<'a>(&self, mut st: MutexGuard<'a, State>, who: usize, until: Deadline) -> MutexGuard<'a, State> {
        st.waiting[who] += 1;
        let mut st = match until.remaining() {
            None => self.cv[who].wait(st).unwrap_or_else(|p| p.into_inner()),
            Some(d) => self.cv[who].wait_timeout(st, d).unwrap_or_else(|p| p.into_inner()).0,
        };
        st.waiting[who] -= 1;
        st
    }

    fn wake(&self, st: &State, who: usize) {
        if st.waiting[who] > 0 {
            self.cv[who].notify_all();
        }
    }

    /// Make the socket pair (once): the queued frames go into it, the
    /// rest into the backlog, and each living side gets its socket.
    fn make(self: &Arc<Self>) -> io::Result<()> {
        let mut st = self.lock();
        if st.made {
            return Ok(());
        }
        let (a, b) = socket::seqpacket_pair()?;
        if st.credentials {
            socket::set_passcred(b.as_fd())?;
        }
        let (a, b) = (Seqpacket::new(a), Seqpacket::new(b));
        let mut backlog = VecDeque::new();
        while let Some(q) = st.queue.pop_front() {
            if !backlog.is_empty() {
                backlog.push_back(q);
                continue;
            }
            match q.send(&a) {
                Ok(()) => {}
                // The receiver's socket is `b`, held here: a failure is
                // no room (or no kernel memory): later, by the backlog.
                Err(_) => backlog.push_back(q),
            }
        }
        // Rings not yet taken by senders become wake frames.
        if !st.dropped[RX] {
            for _ in 0..st.wakes.min(64) {
                b.ring_senders();
            }
        }
        st.wakes = 0;
        let pushing = !backlog.is_empty();
        if pushing {
            self.backlog.store(true, Release);
            st.backlog = backlog;
        }
        st.made = true;
        // The senders' socket: their side's, or (senders all gone, frames
        // left to write) the writer thread's own, closed when it is done.
        let writer = match st.ends[TX].upgrade() {
            Some(end) if !st.dropped[TX] => end,
            _ => Arc::new(End::default()),
        };
        let _ = writer.sock.set(a);
        match st.ends[RX].upgrade() {
            Some(end) if !st.dropped[RX] => {
                let _ = end.sock.set(b);
            }
            // A side already dropped gets none: its socket closes here, so
            // the other side's shows the hang-up, as it would have.
            _ => drop(b),
        }
        self.cv[TX].notify_all();
        self.cv[RX].notify_all();
        drop(st);
        if pushing {
            let pair = Arc::clone(self);
            // Without a thread, a later send (or the outbox's flusher)
            // writes it: each first writes the backlog.
            let _ =
                std::thread::Builder::new().name("conduit-backlog".into()).spawn(move || pair.write_backlog(&writer));
        }
        Ok(())
    }

    /// The writer thread: the backlog into the socket, as room comes.
    fn write_backlog(&self, end: &End) {
        let Some(sock) = end.sock.get() else { return };
        loop {
            if !matches!(self.push(sock), Pushed::NoRoom) {
                return;
            }
            if socket::wait_writable(sock.fd()).is_err() {
                let mut st = self.lock();
                st.backlog.clear();
                self.done(&st);
                return;
            }
        }
    }

    /// Write as much of the backlog as fits now.
    fn push(&self, sock: &Seqpacket) -> Pushed {
        let mut st = self.lock();
        while let Some(q) = st.backlog.front() {
            match q.send(sock) {
                Ok(()) => {
                    st.backlog.pop_front();
                }
                Err(WriteFail::NoRoom) => return Pushed::NoRoom,
                Err(_) => {
                    // The receiver is gone, or the socket broken: nobody
                    // can ever take these frames (the outbox's rule).
                    st.backlog.clear();
                    self.done(&st);
                    return Pushed::Gone;
                }
            }
        }
        self.done(&st);
        Pushed::All
    }

    fn done(&self, st: &State) {
        self.backlog.store(false, Release);
        self.wake(st, TX);
    }
}

/// One side of a channel made here (what both ends do alike).
pub(crate) struct Side {
    end: Arc<End>,
    pair: Arc<Pair>,
    /// The control block, whose memfd stands in for `poll` if the socket
    /// pair cannot be made (see [`Side::poll_fd`]).
    ctl: Ctl,
    which: usize,
}

impl fmt::Debug for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("local::Side").field("made", &self.end.sock.get().is_some()).finish_non_exhaustive()
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        let mut st = self.pair.lock();
        st.dropped[self.which] = true;
        if !st.made {
            if self.which == RX {
                // Nobody can take them: their descriptors close now.
                st.queue.clear();
            }
            self.pair.wake(&st, 1 - self.which);
        }
    }
}

impl Side {
    /// This side's socket if the pair is made.
    #[inline]
    fn sock_if_made(&self) -> Option<&Seqpacket> {
        self.end.sock.get()
    }

    /// This side's socket, making the pair if need be.
    fn sock(&self) -> io::Result<&Seqpacket> {
        if let Some(s) = self.sock_if_made() {
            return Ok(s);
        }
        self.pair.make()?;
        self.sock_if_made().ok_or_else(|| io::Error::other("a channel end without its socket"))
    }

    /// The descriptor for `poll`: the socket, made if need be. If it
    /// cannot be made (no descriptor left) the control block's memfd
    /// stands in, which `poll` always shows ready: callers then find
    /// nothing to take and look again, busier but never stuck.
    pub fn poll_fd(&self) -> BorrowedFd<'_> {
        match self.sock() {
            Ok(s) => s.fd(),
            Err(_) => self.ctl.fd().expect("a socket channel's control block has its own memfd"),
        }
    }

    pub fn caps(&self) -> Caps {
        seqpacket::CAPS
    }

    pub fn dup_fds(&self) -> io::Result<Vec<OwnedFd>> {
        self.sock()?.dup_fds()
    }

    fn other_dropped(&self) -> Option<bool> {
        let st = self.pair.lock();
        (!st.made).then_some(st.dropped[1 - self.which])
    }

    pub fn peer_gone(&self) -> bool {
        if let Some(s) = self.sock_if_made() {
            return s.peer_gone();
        }
        match self.other_dropped() {
            Some(gone) => gone,
            // Made just now.
            None => self.sock_if_made().is_none_or(|s| s.peer_gone()),
        }
    }
}

/// The senders' side.
#[derive(Debug)]
pub(crate) struct LocalTx(Side);

/// The receiver's side.
#[derive(Debug)]
pub(crate) struct LocalRx(Side);

impl std::ops::Deref for LocalTx {
    type Target = Side;
    fn deref(&self) -> &Side {
        &self.0
    }
}

impl std::ops::Deref for LocalRx {
    type Target = Side;
    fn deref(&self) -> &Side {
        &self.0
    }
}

impl LocalTx {
    /// The receiver was dropped before the socket pair was made.
    pub fn known_gone(&self) -> bool {
        self.0.sock_if_made().is_none() && self.0.other_dropped() == Some(true)
    }

    /// Write one frame: into the queue, or (the pair made) into the
    /// socket once the backlog is written.
    #[inline]
    pub fn try_send(&self, frame: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), WriteFail> {
        if let Some(s) = self.0.sock_if_made() {
            if self.backlog() {
                self.flush_backlog()?;
            }
            return s.try_send(frame, fds);
        }
        let mut st = self.0.pair.lock();
        if st.made {
            drop(st);
            return self.try_send(frame, fds);
        }
        if st.dropped[RX] {
            return Err(WriteFail::Disconnected);
        }
        let fds =
            fds.iter().map(socket::dup).collect::<io::Result<Vec<_>>>().map_err(|e| WriteFail::Failed(e.into()))?;
        st.queue.push_back(Queued { bytes: frame.to_vec(), fds });
        self.0.pair.wake(&st, RX);
        Ok(())
    }

    /// Frames of the queue wait to go into the new socket.
    #[inline]
    pub fn backlog(&self) -> bool {
        self.0.pair.backlog.load(Acquire)
    }

    /// Write what of the backlog fits now (`NoRoom`: some is left).
    pub fn flush_backlog(&self) -> Result<(), WriteFail> {
        let Some(s) = self.0.sock_if_made() else { return Ok(()) };
        match self.0.pair.push(s) {
            Pushed::All => Ok(()),
            Pushed::NoRoom => Err(WriteFail::NoRoom),
            Pushed::Gone => Err(WriteFail::Disconnected),
        }
    }

    /// Block until a frame may fit (a queue in memory always has room; a
    /// socket: once the backlog is written and the socket has room).
    pub fn wait_room(&self) -> io::Result<()> {
        let Some(s) = self.0.sock_if_made() else { return Ok(()) };
        loop {
            if !self.0.pair.backlog.load(Acquire) || !matches!(self.0.pair.push(s), Pushed::NoRoom) {
                return s.wait_writable();
            }
            s.wait_writable()?;
        }
    }

    /// Sleep until the receiver rings (`readable`) or goes (`hangup`).
    pub fn wait_bell(&self, wait: Deadline) -> io::Result<Ready> {
        if let Some(s) = self.0.sock_if_made() {
            return s.wait_bell(wait);
        }
        let pair = &self.0.pair;
        let mut st = pair.lock();
        loop {
            if st.made {
                drop(st);
                return self.0.sock()?.wait_bell(wait);
            }
            if st.dropped[RX] {
                return Ok(Ready { readable: false, hangup: true });
            }
            if st.wakes > 0 {
                return Ok(Ready { readable: true, hangup: false });
            }
            if wait.expired() {
                return Ok(Ready::default());
            }
            st = pair.wait(st, TX, wait);
        }
    }

    /// Take one ring of the bell. `Ok(false)`: the receiver is gone.
    pub fn consume_wake(&self) -> io::Result<bool> {
        if let Some(s) = self.0.sock_if_made() {
            return s.consume_wake();
        }
        let mut st = self.0.pair.lock();
        if st.made {
            drop(st);
            return self.0.sock()?.consume_wake();
        }
        if st.dropped[RX] {
            return Ok(false);
        }
        st.wakes = st.wakes.saturating_sub(1);
        Ok(true)
    }
}

impl LocalRx {
    /// Take one frame (see `RxLink::recv`): from the queue, or from the
    /// socket once it is made.
    #[inline]
    pub fn recv(&self, buf: &mut Vec<u8>, block: bool, limit: usize) -> Result<Option<Received>, Error> {
        if let Some(s) = self.0.sock_if_made() {
            return s.recv(buf, block, limit);
        }
        let pair = &self.0.pair;
        let mut st = pair.lock();
        loop {
            if st.made {
                drop(st);
                return self.0.sock()?.recv(buf, block, limit);
            }
            if let Some(q) = st.queue.pop_front() {
                let creds = st.credentials.then_some(pair.me);
                drop(st);
                let len = q.bytes.len();
                if buf.len() < len {
                    buf.resize(len, 0);
                }
                buf[..len].copy_from_slice(&q.bytes);
                return Ok(Some(Received { len, fds: q.fds, creds, ..Received::default() }));
            }
            if st.dropped[TX] {
                // The end of the stream, as a socket says it.
                return Ok(Some(Received::default()));
            }
            if !block {
                return Ok(None);
            }
            st = pair.wait(st, RX, Deadline::Forever);
        }
    }

    /// Wait for a frame or the senders' going. `None`: the pair is made,
    /// wait on the socket.
    pub fn wait_data(&self, wait: Deadline) -> Option<bool> {
        if self.0.sock_if_made().is_some() {
            return None;
        }
        let pair = &self.0.pair;
        let mut st = pair.lock();
        loop {
            if st.made {
                return None;
            }
            if !st.queue.is_empty() || st.dropped[TX] || wait == Deadline::Forever {
                return Some(true);
            }
            if wait.expired() {
                return Some(false);
            }
            st = pair.wait(st, RX, wait);
        }
    }

    /// A frame (or the end) can be taken now without the socket.
    pub fn ready_now(&self) -> bool {
        let st = self.0.pair.lock();
        !st.made && (!st.queue.is_empty() || st.dropped[TX])
    }

    /// Ring the senders' bell.
    pub fn ring_senders(&self) {
        if let Some(s) = self.0.sock_if_made() {
            return s.ring_senders();
        }
        let mut st = self.0.pair.lock();
        if st.made {
            drop(st);
            if let Ok(s) = self.0.sock() {
                s.ring_senders();
            }
            return;
        }
        st.wakes = (st.wakes + 1).min(MAX_WAKES);
        self.0.pair.wake(&st, TX);
    }

    /// Stop attaching credentials to frames.
    pub fn drop_credentials(&self) -> io::Result<()> {
        let mut st = self.0.pair.lock();
        st.credentials = false;
        drop(st);
        match self.0.sock_if_made() {
            Some(s) => socket::clear_passcred(s.fd()),
            None => Ok(()),
        }
    }
}

/// A channel over a socket pair made when first needed: the default
/// transport.
pub(crate) fn channel<T>(capacity: Capacity) -> Result<(Sender<T>, Receiver<T>), Error> {
    let ctl = Ctl::create(capacity)?;
    ctl.count_sends();
    let (tx_end, rx_end) = (Arc::new(End::default()), Arc::new(End::default()));
    let pair = Arc::new(Pair {
        st: Mutex::new(State {
            made: false,
            ends: [Arc::downgrade(&tx_end), Arc::downgrade(&rx_end)],
            dropped: [false; 2],
            queue: VecDeque::new(),
            wakes: 0,
            credentials: true,
            waiting: [0; 2],
            backlog: VecDeque::new(),
        }),
        cv: [Condvar::new(), Condvar::new()],
        backlog: AtomicBool::new(false),
        me: socket::own_credentials(),
    });
    let tx = Side { end: tx_end, pair: Arc::clone(&pair), ctl: ctl.share()?, which: TX };
    let rx = Side { end: rx_end, pair, ctl: ctl.share()?, which: RX };
    let ctl2 = ctl.share()?;
    Ok((Sender::from_link(TxLink::Local(LocalTx(tx)), ctl), Receiver::from_link(RxLink::Local(LocalRx(rx)), ctl2)))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::time::Duration;

    use super::*;
    use crate::channel::{PortSet, RecvError, RecvTimeoutError, SendError, TrySendError};

    fn made<T>(tx: &Sender<T>) -> bool {
        matches!(tx.tx_link(), TxLink::Local(l) if l.0.sock_if_made().is_some())
    }

    #[test]
    fn a_channel_used_here_makes_no_sockets() {
        let (tx, rx) = crate::bounded::<u64>(2).unwrap();
        tx.send(1).unwrap();
        tx.clone().send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!((rx.recv().unwrap(), rx.recv().unwrap()), (1, 2));
        let (msg, creds) = {
            tx.send(4).unwrap();
            rx.recv_from().unwrap()
        };
        assert_eq!((msg, creds), (4, socket::own_credentials()));
        assert!(!made(&tx));
    }

    #[test]
    fn senders_count_what_they_send_for_a_spinning_receiver() {
        let (tx, rx) = crate::bounded::<u64>(4).unwrap();
        let before = rx.sent_hint().expect("a socket channel's senders count");
        tx.send(1).unwrap();
        tx.clone().send(2).unwrap();
        assert_eq!(rx.sent_hint(), Some(before + 2));
        assert_eq!((rx.recv().unwrap(), rx.recv().unwrap()), (1, 2));
        // A connection's ends have control blocks of their own: no count,
        // and a spinning receiver calls `recvmsg` as before.
        let (a, b) = socket::seqpacket_pair().unwrap();
        let (_tx, rx) = super::seqpacket::connection::<u64, u64>(a).unwrap();
        assert_eq!(rx.sent_hint(), None);
        drop(b);
    }

    #[test]
    fn queued_messages_go_first_when_the_sockets_are_made() {
        // More than a socket buffer holds: part of them is the backlog,
        // written by its thread while later sends wait behind it.
        let (tx, rx) = crate::unbounded::<Vec<u8>>().unwrap();
        let msg = |i: u32| [i.to_le_bytes().to_vec(), vec![7u8; 1000]].concat();
        for i in 0..2000 {
            tx.send(msg(i)).unwrap();
        }
        let _ = rx.as_fd();
        assert!(made(&tx));
        for i in 2000..2100 {
            tx.send(msg(i)).unwrap();
        }
        for i in 0..2100 {
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), msg(i), "message {i}");
        }
        drop(tx);
        assert!(matches!(rx.recv(), Err(RecvError::Disconnected)));
    }

    #[test]
    fn a_sender_gone_before_the_sockets_are_made_still_delivers() {
        let (tx, rx) = crate::unbounded::<Vec<u8>>().unwrap();
        for i in 0..1000u32 {
            tx.send(i.to_le_bytes().repeat(300)).unwrap();
        }
        drop(tx);
        // A port set makes the sockets: the backlog's thread holds the
        // senders' socket until the last frame is in.
        let mut set = PortSet::new();
        set.add(&rx);
        let mut got = 0u32;
        loop {
            assert_eq!(set.ready_timeout(Duration::from_secs(10)), Some(0));
            match rx.try_recv() {
                Ok(m) => {
                    assert_eq!(m, got.to_le_bytes().repeat(300));
                    got += 1;
                }
                Err(crate::channel::TryRecvError::Disconnected) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(got, 1000);
    }

    #[test]
    fn an_end_sent_in_a_message_carries_the_queue() {
        let (tx, rx) = crate::unbounded::<u64>().unwrap();
        for i in 0..10 {
            tx.send(i).unwrap();
        }
        let (ptx, prx) = crate::unbounded::<crate::Receiver<u64>>().unwrap();
        ptx.send(rx).unwrap();
        let rx = prx.recv().unwrap();
        tx.send(10).unwrap();
        for i in 0..=10 {
            assert_eq!(rx.recv().unwrap(), i);
        }
        drop(rx);
        assert!(matches!(tx.send(11), Err(SendError::Disconnected(11))));
    }

    #[test]
    fn sleepers_wake_without_sockets() {
        // A receiver asleep: a send wakes it.
        let (tx, rx) = crate::bounded::<u64>(1).unwrap();
        let t = std::thread::spawn(move || rx.recv().map(|m| (m, rx)));
        tx.send(1).unwrap();
        let (m, rx) = t.join().unwrap().unwrap();
        assert_eq!(m, 1);
        // A sender asleep on a full channel: a receive wakes it.
        tx.send(2).unwrap();
        let t = std::thread::spawn(move || tx.send_timeout(3, Duration::from_secs(10)).map(|()| tx));
        assert_eq!(rx.recv().unwrap(), 2);
        let tx = t.join().unwrap().unwrap();
        assert_eq!(rx.recv().unwrap(), 3);
        // A sender asleep: the receiver's drop ends its wait.
        tx.send(4).unwrap();
        let t = std::thread::spawn(move || tx.send(5));
        std::thread::sleep(Duration::from_millis(20)); // only to let it sleep first; either way it ends
        drop(rx);
        assert!(matches!(t.join().unwrap(), Err(SendError::Disconnected(5))));
        // A receiver asleep: the last sender's drop ends its wait.
        let (tx, rx) = crate::bounded::<u64>(1).unwrap();
        let t = std::thread::spawn(move || rx.recv_timeout(Duration::from_secs(10)));
        drop(tx);
        assert!(matches!(t.join().unwrap(), Err(RecvTimeoutError::Disconnected)));
    }

    #[test]
    fn a_rendezvous_works_without_sockets() {
        let (tx, rx) = crate::bounded::<u64>(0).unwrap();
        let t = std::thread::spawn(move || (0..100).map(|_| rx.recv().unwrap()).sum::<u64>());
        for i in 0..100 {
            tx.send(i).unwrap();
        }
        assert_eq!(t.join().unwrap(), (0..100).sum());
        assert!(!made(&tx));
    }

    #[test]
    fn a_sleeping_sender_woken_as_the_sockets_are_made_sees_its_credit() {
        for _ in 0..50 {
            let (tx, rx) = crate::bounded::<u64>(1).unwrap();
            tx.send(0).unwrap();
            let t = std::thread::spawn(move || tx.send_timeout(1, Duration::from_secs(10)));
            assert_eq!(rx.recv().unwrap(), 0);
            let _ = rx.as_fd();
            t.join().unwrap().unwrap();
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 1);
        }
    }

    #[test]
    fn descriptors_in_queued_messages_arrive() {
        let (tx, rx) = crate::unbounded::<crate::Sender<u64>>().unwrap();
        let (itx, irx) = crate::unbounded::<u64>().unwrap();
        tx.send(itx.clone()).unwrap();
        tx.send(itx).unwrap();
        let (a, b) = (rx.recv().unwrap(), rx.recv().unwrap());
        a.send(1).unwrap();
        b.send(2).unwrap();
        assert_eq!((irx.recv().unwrap(), irx.recv().unwrap()), (1, 2));
        drop((a, b));
        assert!(matches!(irx.recv(), Err(RecvError::Disconnected)));
    }
}
