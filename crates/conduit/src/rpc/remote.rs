//! Remote objects (M7.6): a [`Remote`] is a reference to an object that
//! lives in its owner's process — a send right to a port the owner serves
//! the object on. Calls on it go to that process, each carrying a
//! send-once reply right (conduit's `ReplyTo`: the request/reply
//! convention of every conduit call). A `Remote` travels inside messages
//! like any right, so a holder can hand it to a third process; clones are
//! more references. When the last reference anywhere is dropped — or
//! every holder has died, `kill -9` included — the port has no senders
//! left (the kernel's no-senders notification: the socket's hang-up), the
//! serving thread ends, and the object is dropped in its owner.
//!
//! ```
//! #[conduit::service]
//! pub trait Counter {
//!     fn next(&self) -> u64;
//! }
//! struct Count(std::sync::atomic::AtomicU64);
//! impl Counter for Count {
//!     fn next(&self) -> u64 { self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 }
//! }
//! let r = conduit::rpc::Remote::serve(CounterServer(Count(Default::default())))?;
//! let counter = CounterClient::new(r.client());
//! assert_eq!(counter.next()?, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Semantics: at most once (each call has its own reply right: one answer
//! or `ServerDied`); deadlines as on any client. References travel on
//! transports that carry rights (sockets, shared memory): in ordinary
//! messages, and as arguments and return values of calls (see
//! [`Carried`](super::Carried)).

use serde::{Deserialize, Serialize};

use super::{Answer, Call, Client, Dispatch, server::run_call};
use crate::channel::{ReplyTo, Sender, bounded};
use crate::error::Error;

/// A call on a remote object, with the right to answer it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ObjectCall {
    /// The call.
    pub call: Call,
    /// Where its answer goes (once).
    pub reply: ReplyTo<Answer>,
}

/// A reference to an object served in its owner's process (see the
/// module documentation). Cloning makes another reference.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Remote {
    port: Sender<ObjectCall>,
}

impl Remote {
    /// Serve `object` (a generated dispatcher, e.g. `CalculatorServer(x)`)
    /// on a thread of this process until the last reference is gone; the
    /// object is dropped then. Returns the first reference.
    pub fn serve<D: Dispatch + Send + 'static>(object: D) -> Result<Remote, Error> {
        let (port, calls) = bounded::<ObjectCall>(64)?;
        std::thread::Builder::new().name("conduit-remote".into()).spawn(move || {
            // Ends when no sender is left anywhere: then `object` drops.
            for ObjectCall { call, reply } in calls.iter() {
                let _ = reply.send(run_call(&object, &call));
            }
        })?;
        Ok(Remote { port })
    }

    /// A client over this reference (wrap it in the service's stub:
    /// `CalculatorClient::new(remote.client())`).
    pub fn client(&self) -> Client {
        Client::over_port(self.port.clone())
    }

    /// True if the object is gone (its owner died).
    pub fn is_gone(&self) -> bool {
        self.port.is_disconnected()
    }
}
