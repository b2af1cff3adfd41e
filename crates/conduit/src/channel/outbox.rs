//! The senders' side of a channel in one process: the socket, the control
//! block, and the outbox.
//!
//! Sends never block on the kernel's socket buffer. When it is full, the
//! frame waits in this process's outbox, in order, and a flusher thread
//! writes it as soon as the socket drains. Capacity is enforced by credits
//! (see [`super::ctl`]), not by how much the kernel happens to buffer, so a
//! `bounded(100_000)` channel holds 100 000 messages and `unbounded()`
//! never blocks its sender.
//!
//! Frames in an outbox belong to the sending process: if it exits before
//! they are flushed, they are gone, as with any user-space buffer. Call
//! [`Sender::flush`](super::Sender::flush) before exiting to be sure.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex};

use super::codec::OutFrame;
use super::ctl::Ctl;
use super::error::SendFail;
use crate::error::Error;
use crate::sys::socket;

#[derive(Debug, Default)]
struct Outbox {
    pending: VecDeque<OutFrame>,
    flushing: bool,
    dead: bool,
}

/// Shared by every `Sender` clone in this process.
#[derive(Debug)]
pub struct SenderCore {
    pub sock: OwnedFd,
    pub ctl: Ctl,
    outbox: Mutex<Outbox>,
    drained: Condvar,
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == rustix::io::Errno::PIPE.raw_os_error()
        || code == rustix::io::Errno::CONNRESET.raw_os_error()
        || code == rustix::io::Errno::NOTCONN.raw_os_error())
}

impl SenderCore {
    pub fn new(sock: OwnedFd, ctl: Ctl) -> Arc<SenderCore> {
        Arc::new(SenderCore { sock, ctl, outbox: Mutex::default(), drained: Condvar::new() })
    }

    fn try_write(&self, frame: &OutFrame) -> io::Result<()> {
        let fds: Vec<BorrowedFd<'_>> = frame.fds.iter().map(|f| f.as_fd()).collect();
        socket::send_frame(self.sock.as_fd(), &frame.bytes, &fds)
    }

    /// Write a frame now, or queue it behind earlier ones. Never blocks.
    pub fn write(self: &Arc<Self>, frame: OutFrame) -> Result<(), SendFail> {
        let mut ob = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        if ob.dead {
            return Err(SendFail::Disconnected);
        }
        if ob.pending.is_empty() {
            match self.try_write(&frame) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if is_disconnect(&e) => {
                    ob.dead = true;
                    return Err(SendFail::Disconnected);
                }
                Err(e) => return Err(SendFail::Failed(Error::Io(e))),
            }
        }
        ob.pending.push_back(frame);
        if !ob.flushing {
            ob.flushing = true;
            let core = Arc::clone(self);
            let spawned = std::thread::Builder::new().name("conduit-flush".into()).spawn(move || core.flush_loop());
            if let Err(e) = spawned {
                ob.flushing = false;
                ob.pending.pop_back();
                return Err(SendFail::Failed(Error::Io(e)));
            }
        }
        Ok(())
    }

    fn flush_loop(&self) {
        loop {
            // Blocks until the socket drains or the receiver is gone.
            let waited = socket::wait_writable(self.sock.as_fd());
            let mut ob = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
            while let Some(frame) = ob.pending.front() {
                match self.try_write(frame) {
                    Ok(()) => {
                        ob.pending.pop_front();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && waited.is_ok() => break,
                    Err(_) => {
                        // Receiver gone (or the socket broken): nobody can
                        // ever take these frames.
                        ob.dead = true;
                        ob.pending.clear();
                    }
                }
            }
            if ob.pending.is_empty() {
                ob.flushing = false;
                self.drained.notify_all();
                return;
            }
        }
    }

    /// Block until this process's outbox is empty.
    pub fn flush(&self) {
        let mut ob = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        while !ob.pending.is_empty() {
            ob = self.drained.wait(ob).unwrap_or_else(|p| p.into_inner());
        }
    }
}
