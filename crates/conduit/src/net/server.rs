//! The three kinds of server of the notes: iterative (one client at a
//! time), concurrent with a thread per connection, and concurrent with a
//! process per connection (the fork-per-client server, done with
//! `process::Command`: the child execs, inherits only its two sockets,
//! and is reaped by this process).
//!
//! Each runs until its listener's [`Stopper`](super::Stopper) is used,
//! then returns `Ok(())` once what it started has finished (threads
//! joined, children reaped). A client that dies mid-message or sends
//! garbage only ends its own connection: the handler sees a typed error
//! or `Disconnected` on that client's channel, and the server goes on.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Conn, Listener};
use crate::error::Error;
use crate::process::{Child, Command};

/// An accept that failed for this one client (or for want of a
/// descriptor for a moment) rather than for the listener.
fn passing(e: &Error) -> bool {
    match e {
        Error::Io(e) => {
            matches!(
                e.raw_os_error(),
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ECONNABORTED | libc::EPERM)
            ) || matches!(e.kind(), io::ErrorKind::NotConnected | io::ErrorKind::ConnectionReset)
        }
        Error::Handshake(_) => true,
        _ => false,
    }
}

/// Accept the next client, going past failures that concern one client.
fn next<S: Serialize, R: DeserializeOwned>(listener: &Listener) -> Result<Option<Conn<S, R>>, Error> {
    loop {
        match listener.accept() {
            Ok(c) => return Ok(Some(c)),
            Err(Error::Shutdown) => return Ok(None),
            Err(e) if passing(&e) => {
                // Out of descriptors (or one client's failure): give the
                // others a moment to close theirs rather than spin.
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Serve one client at a time: accept, run `handler` to the end, accept
/// the next. Clients that connect meanwhile wait (their `connect` returns
/// when their turn comes, or times out). A client that stops reading holds
/// an iterative server as long as the handler waits for it: handlers of
/// untrusted clients send with `send_timeout`.
pub fn serve_iterative<S, R>(listener: &Listener, mut handler: impl FnMut(Conn<S, R>)) -> Result<(), Error>
where
    S: Serialize,
    R: DeserializeOwned,
{
    while let Some(conn) = next(listener)? {
        handler(conn);
    }
    Ok(())
}

/// Serve each client on a thread of its own. Returns when stopped, after
/// every handler has returned.
pub fn serve_threads<S, R>(
    listener: &Listener,
    handler: impl Fn(Conn<S, R>) + Send + Sync + 'static,
) -> Result<(), Error>
where
    S: Serialize + Send + 'static,
    R: DeserializeOwned + Send + 'static,
{
    let handler = Arc::new(handler);
    let mut running: Vec<JoinHandle<()>> = Vec::new();
    let out = loop {
        let conn = match next(listener) {
            Ok(Some(c)) => c,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        running.retain(|t| !t.is_finished());
        let h = Arc::clone(&handler);
        match std::thread::Builder::new().name("conduit-client".into()).spawn(move || h(conn)) {
            Ok(t) => running.push(t),
            // No thread for this client: its connection closes.
            Err(_) => continue,
        }
    };
    for t in running {
        let _ = t.join();
    }
    out
}

/// Serve each client in a process of its own: for every connection,
/// `command()` makes the child's command, and the child receives the
/// connection as its link (`conduit::process::parent::<R2, S2>()` in the
/// child, where it sends what this side would send and receives what it
/// would receive). This process keeps no copy of the client's sockets;
/// every child is reaped when it ends (no zombies). Returns when stopped,
/// after every child has ended.
pub fn serve_processes<S, R>(listener: &Listener, mut command: impl FnMut() -> Command) -> Result<(), Error>
where
    S: Serialize,
    R: DeserializeOwned,
{
    let mut children: Vec<Child> = Vec::new();
    let out = loop {
        let conn: Conn<S, R> = match next(listener) {
            Ok(Some(c)) => c,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        // A child that cannot start costs its client the connection only.
        if let Ok(child) = command().spawn_with(conn.tx, conn.rx) {
            children.push(child);
        }
    };
    for mut c in children {
        let _ = c.wait();
    }
    out
}
