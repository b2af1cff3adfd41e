//! Client and server over sockets: TCP (IPv4, IPv6) and Unix stream
//! sockets carrying conduit's typed channels, typed datagrams over UDP,
//! and multicast.
//!
//! An endpoint is an address ([`Addr`]: `tcp:HOST:PORT`, `unix:PATH`). A
//! server binds a [`Listener`] (with a backlog) and accepts; a client
//! [`connect`]s within a timeout. Each accepted client is a [`Conn`]: a
//! typed [`Sender`](crate::Sender) and [`Receiver`](crate::Receiver) with the same capacity, timeout and
//! disconnection rules as every conduit channel — `bounded(n)` exact over
//! TCP too, by credits carried in band (see `docs/WIRE.md`), rendezvous,
//! `Disconnected` when the peer dies. [`serve_iterative`],
//! [`serve_threads`] and [`serve_processes`] run a handler as the notes'
//! three kinds of server. [`udp`] has datagrams and multicast.
//!
//! ```no_run
//! use conduit::net::{self, Listener};
//!
//! let listener = Listener::bind("tcp:127.0.0.1:7000")?;
//! std::thread::spawn(move || {
//!     net::serve_threads(&listener, |conn: net::Conn<String, String>| {
//!         for line in conn.rx.iter() {
//!             if conn.tx.send(line).is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! });
//! let client = net::connect::<String, String>("tcp:127.0.0.1:7000")?;
//! client.tx.send("hello".into()).unwrap();
//! assert_eq!(client.rx.recv().unwrap(), "hello");
//! # Ok::<(), conduit::Error>(())
//! ```
//!
//! What crosses a network and what does not: messages do; rights
//! (channel ends, segments) and out-of-line payloads do not — sending one
//! is [`Error::Unsupported`](crate::Error::Unsupported) at the send, nothing lost.
//!
//! What holds when a peer dies:
//!
//! * **Before a send**: the send fails with `Disconnected` and hands the
//!   message back (the link asks the kernel whether the peer closed before
//!   it writes — in a burst of sends, at most every 100 µs: a receiver
//!   that dies within that window loses what was sent meanwhile, as it
//!   loses what it had not read).
//! * **After a send returned**: the message is the kernel's. On loopback it
//!   is already in the receiver's socket buffer (unless that was full: then
//!   in the sender's, or in its outbox). A sender that exits or drops its
//!   end normally lets its kernel deliver all of it; a sender killed while
//!   the network still holds some of its bytes and the receiver's credits
//!   wait unread on its socket is reset by its kernel, and those bytes are
//!   lost — the kernel's rule, not conduit's (on loopback nothing is in the
//!   network). A frame cut short by that is `WireError::Truncated`, never
//!   a message.
//! * **The receiver dies**: the messages it had not taken die with it, as
//!   on every transport; its senders see `Disconnected` at once, also when
//!   blocked waiting for a credit.

mod addr;
mod connect;
mod listener;
mod plain;
mod server;
pub mod udp;

pub use addr::{Addr, Peer, ToAddr};
pub use connect::{Conn, Connect, DEFAULT_MAX_MESSAGE, connect};
pub use listener::{GREETING_TIME, Listener, PENDING_MOST, Stopper};
pub use plain::{Stream, connect_stream};
pub use server::{serve_iterative, serve_processes, serve_threads};
