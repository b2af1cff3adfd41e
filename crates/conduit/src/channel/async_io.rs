//! The async face of channels, for tokio: `send_async`, `recv_async`.
//!
//! Socket channels: waiting registers a duplicate of the socket with
//! tokio's reactor, so a task never blocks a runtime thread; the fast path
//! (room, or a message already there) makes no registration at all.
//!
//! Shared-memory channels: a receiving task arms the ring's doorbell, so
//! producers also write a wake frame to the socket, and sleeps on the
//! socket like above. A sending task that finds the channel full polls,
//! yielding and then sleeping with a backoff of up to 1 ms (this needs
//! tokio's time driver, e.g. `enable_all()`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{RecvError, RecvFail, SendError, SendFail};
use super::outbox::Frame;
use super::transport::shm::async_backoff;
use super::{Receiver, Sender};
use crate::error::Error;
use crate::sys::socket::{self, Credentials};
use crate::sys::{Deadline, barrier};

use socket::readable_async as readable;

async fn pause(step: &mut u32) {
    if *step < 4 {
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(async_backoff(*step - 4)).await;
    }
    *step += 1;
}

impl<T: Serialize> Sender<T> {
    /// Send without blocking the async runtime: waits (as a task) for room
    /// or for a rendezvous receiver, like [`send`](Self::send).
    pub async fn send_async(&self, msg: T) -> Result<(), SendError<T>> {
        if self.is_shared_memory() {
            let mut step = 0;
            loop {
                match self.send_with(&msg, Deadline::Never) {
                    Ok(()) => return Ok(()),
                    Err(SendFail::Full) => pause(&mut step).await,
                    Err(f) => return Err(f.send(msg)),
                }
            }
        }
        let mut frame = match self.encode(&msg) {
            Ok(f) => f,
            Err(f) => return Err(f.send(msg)),
        };
        if self.capacity().is_none() {
            // Unbounded: the task waits for room in the socket rather than
            // leaving the frame in this process's outbox.
            loop {
                match self.core.write_now_or_return(frame) {
                    Ok(r) => return r.map_err(|f| f.send(msg)),
                    Err(back) if self.core.outbox_busy() || self.core.link.must_queue(back.bytes.len()) => {
                        return self.core.write::<T>(Frame::Encoded(back), Deadline::Never).map_err(|f| f.send(msg));
                    }
                    Err(back) => {
                        frame = back;
                        if let Err(e) = socket::writable_async(std::os::fd::AsFd::as_fd(self)).await {
                            return Err(SendError::Failed(msg, e.into()));
                        }
                    }
                }
            }
        }
        loop {
            if self.try_acquire_now() {
                return self.core.write::<T>(Frame::Encoded(frame), Deadline::Never).map_err(|f| f.send(msg));
            }
            let guard = self.wait_guard();
            if self.try_acquire_now() {
                drop(guard);
                return self.core.write::<T>(Frame::Encoded(frame), Deadline::Never).map_err(|f| f.send(msg));
            }
            self.core.link.ask_for_credit();
            if let Err(e) = readable(self.core.link.bell_fd()).await {
                return Err(SendError::Failed(msg, e.into()));
            }
            drop(guard);
            if self.is_disconnected() {
                return Err(SendError::Disconnected(msg));
            }
            if let Err(f) = self.consume_wake() {
                return Err(f.send(msg));
            }
        }
    }
}

impl<T: DeserializeOwned> Receiver<T> {
    /// Receive without blocking the async runtime, like [`recv`](Self::recv).
    pub async fn recv_async(&self) -> Result<T, RecvError> {
        self.recv_async_inner().await.map(|(m, _)| m)
    }

    /// Receive with the sender's credentials, without blocking the runtime.
    pub async fn recv_from_async(&self) -> Result<(T, Credentials), RecvError> {
        match self.recv_async_inner().await? {
            (m, Some(c)) => Ok((m, c)),
            (_, None) => Err(RecvError::Failed(Error::NoCredentials)),
        }
    }

    async fn recv_async_inner(&self) -> Result<(T, Option<Credentials>), RecvError> {
        self.begin();
        let mut step = 0;
        loop {
            match self.poll_read() {
                Ok(Some(got)) => return Ok(got),
                Ok(None) => {
                    let link = self.link();
                    if link.needs_nap() && link.peer_gone() {
                        return self.poll_read().map_err(RecvFail::recv)?.ok_or(RecvError::Disconnected);
                    }
                    if link.needs_nap() && !barrier::trusted() {
                        // Without membarrier here a producer may miss our
                        // doorbell (see `sys::barrier`): look again later.
                        pause(&mut step).await;
                        continue;
                    }
                    // Sleep on the descriptor (shared memory: producers
                    // ring the doorbell while we are armed).
                    link.arm(true);
                    let woke = if link.ready_now() { Ok(()) } else { readable(link.ready_fd()).await };
                    link.arm(false);
                    if let Err(e) = woke {
                        return Err(RecvError::Failed(e.into()));
                    }
                }
                Err(f) => return Err(f.recv()),
            }
        }
    }
}
