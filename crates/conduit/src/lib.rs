//! # conduit
//!
//! Inter-process communication for Linux, the way the operating-systems
//! textbook describes it and the way production systems need it.
//!
//! * [`channel`]: typed channels between processes — Mach-style ports with
//!   rights. [`bounded`], [`unbounded`], rendezvous (`bounded(0)`); send
//!   rights ([`Sender`]) and the receive right ([`Receiver`]) travel inside
//!   messages; [`PortSet`] waits on many; [`Sender::call`] with a
//!   send-once [`ReplyTo`]; [`Receiver::recv_from`] names the sender.
//! * [`channel::shm`]: the same channels over a ring in sealed shared
//!   memory, with spin / park / adaptive waiting and zero-copy loans;
//!   [`memory`] has what is shared itself: segments, the ring, the queue.
//! * [`channel::pipe`] and [`fifo`]: the same channels over ordinary and
//!   named pipes.
//! * [`net`]: the same channels over TCP and Unix stream sockets between
//!   a client and a server (listen, accept, connect; iterative, threaded
//!   and process-per-client servers), typed UDP datagrams and multicast.
//! * [`kernel`]: the kernel's own IPC objects — System V message queues
//!   ([`kernel::MessageQueue`], byte-exact with C's `msgsnd`/`msgrcv`),
//!   and listing and removing System V and POSIX objects.
//! * [`signal`]: send signals, and receive them as messages
//!   ([`signal::subscribe`]), in a port set or async, never in a handler.
//! * [`process`]: spawn a child with a link already connected; children
//!   are reaped and their exit arrives as a message.
//! * [`wire`]: the frame format (also in `docs/WIRE.md`).
//!
//! ```
//! use conduit::{bounded, Sender};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! enum Request { Add(i64, i64, conduit::ReplyTo<i64>) }
//!
//! let (tx, rx) = bounded::<Request>(8)?;
//! let server = std::thread::spawn(move || {
//!     for Request::Add(a, b, reply) in rx.iter() {
//!         reply.send(a + b).unwrap();
//!     }
//! });
//! assert_eq!(tx.call(|reply| Request::Add(2, 3, reply)).unwrap(), 5);
//! drop(tx);
//! server.join().unwrap();
//! # Ok::<(), conduit::Error>(())
//! ```
#![warn(missing_docs)]

pub mod channel;
pub mod error;
pub mod memory;
pub mod net;
pub mod notify;
pub mod process;
mod rights;
pub mod rpc;
pub mod signal;
/// The former name of [`memory`].
#[doc(hidden)]
pub use memory as shm;
mod sys;
pub mod wire;

pub use channel::pipe::fifo;
pub use channel::{
    Bytes, CallError, Opaque, PortSet, Receiver, RecvError, RecvTimeoutError, ReplyTo, SendError, SendTimeoutError,
    Sender, TryRecvError, TrySendError, bounded, unbounded,
};
pub use error::{Error, WireError};
pub use notify::notify;

/// Generate an RPC client and server stub from a trait: see [`rpc`].
pub use conduit_macros::service;
pub use sys::socket::Credentials;

pub mod kernel;
