//! # conduit-zenoh
//!
//! conduit across hosts, on Zenoh: `conduit bridge` (this crate's
//! `conduit-bridge`) runs next to a host's broker and carries its mailboxes
//! to the other hosts' brokers, so that `conduit send jobs` on host B
//! delivers to host A's mailbox `jobs`, and `conduit recv jobs` on B takes
//! from it, through the same client API ([`conduit_broker::Client`], the
//! CLI, typed `send_value`/`recv_value`); and `connect_rpc("calc")` on B
//! reaches the RPC service registered as `calc` on A, through the same
//! stubs (the bridge relays its calls and answers).
//!
//! * [`wire`]: what bridges say to each other (pure decoders, typed errors).
//! * [`bridge`]: the bridge itself — exports, imports, calls, lanes, the
//!   reply cache, the RPC relay, liveliness.
//! * [`testbed`]: two hosts on one machine (network namespaces), for the
//!   tests and `conduit bench`.
//!
//! Guarantees, stated in `docs/BRIDGE.md` and tested between two network
//! namespaces (`tests/two_hosts.rs`):
//! * a send is answered only when the mailbox's host took it; a call lost
//!   on the way (a cut link) is retried with the same id and run once;
//! * a received message stays held on its host until the receiver settles
//!   it; a receiver's death, its bridge's death, or a link cut longer than
//!   the lease gives it back (at-least-once, as on one host);
//! * permissions are checked on the mailbox's host, with the caller's uid
//!   and gid (uids are taken to mean the same user on every host, as NFS
//!   without an id map does);
//! * what cannot cross — descriptors, shared memory — stays home: an
//!   imported mailbox is always used through the broker, a name's port is
//!   replaced by the bridge's own, rights in RPC arguments are refused
//!   (`BadArguments`), and a message left with the broker (`OnFull::Leave`)
//!   is refused there.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod bridge;
pub mod testbed;
pub mod wire;

pub use bridge::{BridgeError, Options, run};
