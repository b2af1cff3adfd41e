//! The async face of channels, for tokio: `send_async`, `recv_async`.
//!
//! Waiting registers a duplicate of the socket with tokio's reactor, so a
//! task never blocks a runtime thread; the fast path (room, or a message
//! already there) makes no registration at all.

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec;
use super::error::{RecvError, SendError};
use super::{Receiver, Sender};
use crate::error::Error;
use crate::sys::socket::{self, Credentials};

use socket::readable_async as readable;

impl<T: Serialize> Sender<T> {
    /// Send without blocking the async runtime: waits (as a task) for room
    /// or for a rendezvous receiver, like [`send`](Self::send).
    pub async fn send_async(&self, msg: T) -> Result<(), SendError<T>> {
        let frame = match codec::encode(&msg) {
            Ok(f) => f,
            Err(e) => return Err(SendError::Failed(msg, e)),
        };
        loop {
            if self.try_acquire_now() {
                return self.core.write(frame).map_err(|f| f.send(msg));
            }
            let guard = self.wait_guard();
            if self.try_acquire_now() {
                drop(guard);
                return self.core.write(frame).map_err(|f| f.send(msg));
            }
            if let Err(e) = readable(std::os::fd::AsFd::as_fd(self)).await {
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
        self.recv_from_async().await.map(|(m, _)| m)
    }

    /// Receive with the sender's credentials, without blocking the runtime.
    pub async fn recv_from_async(&self) -> Result<(T, Credentials), RecvError> {
        self.begin();
        loop {
            match self.poll_read() {
                Ok(Some((m, Some(c)))) => return Ok((m, c)),
                Ok(Some((_, None))) => {
                    return Err(RecvError::Failed(Error::Io(io::Error::other("no credentials"))));
                }
                Ok(None) => {
                    if let Err(e) = readable(std::os::fd::AsFd::as_fd(self)).await {
                        return Err(RecvError::Failed(e.into()));
                    }
                }
                Err(f) => return Err(f.recv()),
            }
        }
    }
}
