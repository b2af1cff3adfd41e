//! The senders' side of a channel in one process: the link (see
//! [`super::transport`]), the control block, the bulk buffers for large
//! payloads, and the outbox.
//!
//! Sends never block on the transport's buffer (kernel socket buffer or
//! ring bytes) for unbounded channels: when it is full, the frame waits in
//! this process's outbox, in order, and a flusher thread writes it as soon
//! as there is room. Capacity is enforced by credits (see [`super::ctl`]),
//! not by how much the transport happens to buffer, so a
//! `bounded(100_000)` channel holds 100 000 messages and `unbounded()`
//! never blocks its sender. (Bounded shared-memory channels whose ring is
//! momentarily full wait for room within the send's time limit instead,
//! which is faster than a hand-off to another thread: see
//! `TxLink::write_waiting`.)
//!
//! Frames in an outbox belong to the sending process: if it exits before
//! they are flushed, they are gone, as with any user-space buffer. Call
//! [`Sender::flush`](super::Sender::flush) before exiting to be sure. (So
//! do the frames a channel made in this process had queued when it got its
//! socket pair and that did not fit it at once: its link's *backlog*,
//! which `flush` waits for too; see `transport::local`.)

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex};

use serde::Serialize;

use super::bulk::BulkPool;
use super::codec::{self, Encoding, OutFrame};
use super::ctl::{Capacity, Ctl};
use super::error::SendFail;
pub(crate) use super::transport::WriteFail;
use super::transport::{Caps, TxLink};
use crate::error::Error;
use crate::sys::Deadline;
use crate::wire::{self, Kind};

#[derive(Debug, Default)]
struct Outbox {
    pending: VecDeque<OutFrame>,
    flushing: bool,
    dead: bool,
}

/// Shared by every `Sender` clone in this process.
#[derive(Debug)]
pub struct SenderCore {
    pub link: TxLink,
    pub ctl: Ctl,
    /// Reusable memory files for large payloads (see `bulk`).
    pub bulk: BulkPool,
    outbox: Mutex<Outbox>,
    drained: Condvar,
}

/// A frame to write: encoded already, or (shared memory, no rights) a
/// message to serialize straight into the ring — one copy, no allocation.
pub(crate) enum Frame<'a, T: ?Sized> {
    /// Encoded, owned.
    Encoded(OutFrame),
    /// Encoded, borrowed from the outbox.
    Borrowed(&'a OutFrame),
    /// To serialize in place: `size` bytes of postcard payload.
    Direct { msg: &'a T, size: usize },
}

impl<T: Serialize + ?Sized> Frame<'_, T> {
    pub(crate) fn out(&self) -> Option<&OutFrame> {
        match self {
            Frame::Encoded(o) => Some(o),
            Frame::Borrowed(o) => Some(o),
            Frame::Direct { .. } => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Frame::Direct { size, .. } => wire::HEADER_LEN + size,
            _ => self.out().map_or(0, |o| o.bytes.len()),
        }
    }

    pub(crate) fn fds(&self) -> &[OwnedFd] {
        self.out().map_or(&[], |o| &o.fds)
    }

    /// Write the whole frame into `buf` (exactly `len()` bytes), with a
    /// checksum if `checked`.
    pub(crate) fn fill(&self, buf: &mut [u8], checked: bool) -> Result<(), Error> {
        match self {
            Frame::Direct { msg, size } => {
                let (head, payload) = buf.split_at_mut(wire::HEADER_LEN);
                let used = postcard::to_slice(*msg, payload).map_err(Error::Encode)?.len();
                if used != *size {
                    return Err(Error::Encode(postcard::Error::SerializeBufferFull));
                }
                let flags = if checked { 0 } else { wire::UNCHECKED };
                wire::write_header(head, Kind::Data, flags, payload, &[]);
                Ok(())
            }
            _ => {
                buf.copy_from_slice(&self.out().expect("encoded").bytes);
                Ok(())
            }
        }
    }
}

impl SenderCore {
    pub fn new(link: TxLink, ctl: Ctl) -> Arc<SenderCore> {
        Arc::new(SenderCore { link, ctl, bulk: BulkPool::default(), outbox: Mutex::default(), drained: Condvar::new() })
    }

    /// What the transport carries.
    pub fn caps(&self) -> Caps {
        self.link.caps()
    }

    /// How messages are encoded for this transport.
    pub fn encoding(&self) -> Encoding {
        Encoding { inline_max: self.caps().inline_max, checksum: self.link.checksum() }
    }

    /// Write one frame now if the transport has room.
    #[inline]
    fn try_write<T: Serialize + ?Sized>(&self, frame: &Frame<'_, T>) -> Result<(), WriteFail> {
        self.link.try_write(&self.ctl, frame)
    }

    /// The short send path of the transport, if it has one (shared
    /// memory: a bounded channel's plain message serialized in place).
    /// `None` hands the send to the full path.
    #[inline]
    pub(crate) fn send_plain(&self, msg: &impl Plain, wait: Deadline) -> Option<()> {
        self.link.shm()?.send_plain(&self.ctl, msg, wait)
    }

    /// Frames wait in this process's outbox.
    pub fn outbox_busy(&self) -> bool {
        !self.outbox.lock().unwrap_or_else(|p| p.into_inner()).pending.is_empty() || self.link.backlog()
    }

    /// An async sender on a socket: write `frame` now if nothing waits in
    /// this process's outbox before it. `Err(frame)`: the socket is full
    /// (the task should wait for it to drain and try again) or the outbox
    /// is busy (the frame must go behind it, by [`write`](Self::write)).
    /// So a task waits for the receiver instead of queueing without bound
    /// in this process, and no flush thread is started for it.
    pub fn write_now_or_return(self: &Arc<Self>, frame: OutFrame) -> Result<Result<(), SendFail>, OutFrame> {
        if self.link.shm().is_some() || self.link.must_queue(frame.bytes.len()) {
            return Err(frame);
        }
        let mut ob = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        if ob.dead {
            return Ok(Err(SendFail::Disconnected));
        }
        if !ob.pending.is_empty() {
            return Err(frame);
        }
        match self.try_write::<()>(&Frame::Borrowed(&frame)) {
            Ok(()) => Ok(self.finish_backlog(&mut ob).map_err(SendFail::Failed)),
            Err(WriteFail::NoRoom | WriteFail::NoCredit) => Err(frame),
            Err(WriteFail::Disconnected) => {
                ob.dead = true;
                Ok(Err(SendFail::Disconnected))
            }
            Err(WriteFail::Failed(e)) => Ok(Err(SendFail::Failed(e))),
        }
    }

    /// Write a frame whose credit is already taken. Unbounded channels (and
    /// socket channels) never block here: a full transport sends the frame
    /// to the outbox. Bounded shared-memory channels wait for ring room
    /// until `wait` runs out, and then give the credit back.
    pub fn write<T: Serialize + ?Sized>(self: &Arc<Self>, frame: Frame<'_, T>, wait: Deadline) -> Result<(), SendFail> {
        if let Some(done) = self.link.write_waiting(&self.ctl, &frame, wait) {
            return done;
        }
        let _turn = self.link.local_turn();
        let mut ob = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        if ob.dead {
            return Err(SendFail::Disconnected);
        }
        if ob.pending.is_empty() {
            // A bounded channel's frame that takes several writes (a pipe's
            // fragments) is finished here, waiting for the pipe to drain:
            // its credit says the receiver takes it, and a send that
            // returns has its message in the channel.
            let finish = self.ctl.capacity() != Capacity::Unbounded
                && (self.link.must_queue(frame.len()) || self.link.bounded_send_waits());
            loop {
                match self.try_write(&frame) {
                    Ok(()) => return self.finish_backlog(&mut ob).map_err(SendFail::Failed),
                    Err(WriteFail::NoRoom | WriteFail::NoCredit) if finish => {
                        self.link.wait_room(frame.len()).map_err(|e| SendFail::Failed(e.into()))?
                    }
                    Err(WriteFail::NoRoom | WriteFail::NoCredit) => break,
                    Err(WriteFail::Disconnected) => {
                        ob.dead = true;
                        return Err(SendFail::Disconnected);
                    }
                    Err(WriteFail::Failed(e)) => return Err(SendFail::Failed(e)),
                }
            }
        }
        let out = match frame {
            Frame::Encoded(out) => out,
            Frame::Direct { msg, .. } => {
                codec::encode(msg, self.encoding(), Some(&self.bulk)).map_err(SendFail::Failed)?
            }
            Frame::Borrowed(_) => unreachable!("borrowed frames are already in the outbox"),
        };
        ob.pending.push_back(out);
        if let Err(e) = self.start_flusher(&mut ob) {
            ob.pending.pop_back();
            return Err(SendFail::Failed(e));
        }
        Ok(())
    }

    /// A frame went in part (a stream socket's backlog): have the flusher
    /// finish it, so that it is written even if nothing else is sent.
    fn finish_backlog(self: &Arc<Self>, ob: &mut Outbox) -> Result<(), Error> {
        if self.link.backlog() { self.start_flusher(ob) } else { Ok(()) }
    }

    fn start_flusher(self: &Arc<Self>, ob: &mut Outbox) -> Result<(), Error> {
        if !ob.flushing {
            ob.flushing = true;
            let core = Arc::clone(self);
            let spawned = std::thread::Builder::new().name("conduit-flush".into()).spawn(move || core.flush_loop());
            if let Err(e) = spawned {
                ob.flushing = false;
                return Err(Error::Io(e));
            }
        }
        Ok(())
    }

    fn flush_loop(&self) {
        loop {
            let front = {
                let ob = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
                ob.pending.front().map(|f| f.bytes.len())
            };
            // Sleep until the transport may take the oldest frame (or the
            // rest of a frame it took in part).
            let waited = match front {
                Some(len) => self.link.wait_room(len),
                None if self.link.backlog() => self.link.wait_room(0),
                None => Ok(()),
            };
            let _turn = self.link.local_turn();
            let mut ob = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
            match self.link.flush_backlog() {
                Err(WriteFail::NoRoom) if waited.is_ok() => continue,
                Err(WriteFail::NoRoom) | Ok(()) => {}
                Err(_) => {
                    ob.dead = true;
                    ob.pending.clear();
                }
            }
            while let Some(frame) = ob.pending.front() {
                match self.try_write::<()>(&Frame::Borrowed(frame)) {
                    Ok(()) => {
                        ob.pending.pop_front();
                    }
                    Err(WriteFail::NoRoom) if waited.is_ok() && !self.link.known_gone() => {
                        break;
                    }
                    Err(_) => {
                        // Receiver gone (or the transport broken): nobody
                        // can ever take these frames.
                        ob.dead = true;
                        ob.pending.clear();
                    }
                }
            }
            if ob.pending.is_empty() && (ob.dead || !self.link.backlog()) {
                ob.flushing = false;
                self.drained.notify_all();
                return;
            }
        }
    }

    /// Block until this process's outbox is empty.
    pub fn flush(&self) {
        let mut ob = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        while ob.flushing {
            ob = self.drained.wait(ob).unwrap_or_else(|p| p.into_inner());
        }
        drop(ob);
        // Frames waiting in the link itself (written by a thread of its
        // own, or here).
        while self.link.backlog() {
            match self.link.flush_backlog() {
                Err(WriteFail::NoRoom) => {
                    if self.link.wait_room(0).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    /// Frames of this process still wait in the outbox (a flusher is on
    /// them) or in the link.
    pub fn has_pending(&self) -> bool {
        let ob = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        ob.flushing || !ob.pending.is_empty() || self.link.backlog()
    }
}

/// A message the short send path (`SenderCore::send_plain`) writes
/// straight into the ring: its encoded size, then its bytes in place.
pub(crate) trait Plain {
    /// Encoded size; `None` if it cannot take the short path (a message
    /// with rights: only `codec::encode` takes them).
    fn size(&self) -> Option<usize>;
    /// Encode into `out` (exactly `size()` bytes); `false` on failure.
    fn write(&self, out: &mut [u8]) -> bool;
}

/// Any serializable message, encoded by postcard.
pub(crate) struct Serde<'a, U: ?Sized>(pub &'a U);

impl<U: Serialize + ?Sized> Plain for Serde<'_, U> {
    #[inline]
    fn size(&self) -> Option<usize> {
        postcard::experimental::serialized_size(self.0).ok()
    }
    #[inline]
    fn write(&self, out: &mut [u8]) -> bool {
        let want = out.len();
        postcard::to_slice(self.0, out).is_ok_and(|used| used.len() == want)
    }
}
