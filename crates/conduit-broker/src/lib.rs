//! # conduit-broker
//!
//! The broker plays the kernel's part of the textbook, in user space:
//!
//! * **names** — the matchmaker (M7.3, M9.3): a process registers a port
//!   under a name with D-Bus-like ownership rules (allow replacement,
//!   replace, queue); others look it up and get a send right, or connect
//!   and get a private pair of ports; the broker then steps out of the
//!   data path. Watchers learn when a name's owner changes or dies.
//! * **system-owned mailboxes** (M1.4–M1.6, M1.10, M1.11): created by
//!   name with a capacity, a receive policy and `ipc_perm`-like owner,
//!   group and mode; they outlive their creator, can change owner, and
//!   optionally survive a broker crash (durable, in redb). Receive by
//!   System V `mtype` rules; when full, the sender chooses to block, wait
//!   a while, return at once, or leave the message with the broker.
//! * **permissions and quotas** (B5): every request is checked against the
//!   peer's kernel-verified credentials (`SO_PEERCRED`); per-user limits
//!   on objects, queued bytes and connections.
//!
//! The broker listens on a Unix socket ([`paths::socket_path`]). A client
//! uses [`Client::connect_or_start`]: if no broker runs, one starts inside
//! that process (`flock` makes concurrent starts end with one broker).
//! `conduit daemon` runs one explicitly.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod client;
pub mod paths;
pub mod protocol;
mod remote;
pub mod server;
mod state;
mod store;

/// Hooks for conduit's fuzz targets (`fuzz/`): the durable log's pure
/// decoder. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    /// How many ops a durable log's bytes hold for `generation` (its
    /// error, for a record that passes its check but is not an op).
    pub fn read_durable_log(bytes: &[u8], generation: u64) -> Result<usize, String> {
        crate::store::read_log(bytes, generation).map(|ops| ops.len())
    }

    /// A durable log of generation 1 with a few ops of every kind (a seed).
    pub fn sample_durable_log() -> Vec<u8> {
        crate::store::sample_log()
    }
}

pub use client::{Client, ClientError, Connect, Delivery, MAX_RPC_CONNECTIONS, Message, SEND_WINDOW, Sent};
pub use protocol::{
    BrokerError, Capacity, INBOX_PREFIX, MailboxOptions, MailboxTraffic, NameEvent, NameFlags, NameReply, ObjectInfo,
    OnFull, Policy, WaitFor,
};
pub use server::{Config, Server, Stopper, WORKER_THREADS, raise_fd_limit};
pub use state::Limits;
