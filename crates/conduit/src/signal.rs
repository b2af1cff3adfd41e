//! Signals: sent to a process, and **delivered as messages**.
//!
//! [`subscribe`] turns signals into messages on a [`Receiver<SignalInfo>`]
//! — signal number, sending process and its uid, the value `sigqueue`
//! attached — so a program handles them in its own loop, in a
//! [`PortSet`](crate::PortSet) with its channels, or in async code; no
//! code of the program ever runs inside a signal handler.
//!
//! How, and what it means for threads: the handler is the `signal-hook`
//! crate's (a few async-signal-safe writes to its own pipe); a thread of
//! conduit reads that pipe and sends each signal on the channel. Any
//! thread of the process may take the signal; nothing needs to be blocked
//! in every thread (which a library cannot arrange: threads started
//! before it, or by other libraries, would still take it). While a
//! subscription lives, the signals it names no longer have their default
//! action (a subscribed `SIGTERM` does not end the process). Standard
//! signals that arrive together are merged by the kernel, as always; a
//! second one of a kind arriving before the first is read reports the
//! later sender. Dropping the receiver ends the subscription at the next
//! such signal.
//!
//! Sending: [`send`] (`kill`), [`queue`] (`sigqueue`, with a value the
//! receiver reads), and `process::Child::signal` (`pidfd_send_signal`:
//! never a process that reused the pid). [`block`], [`unblock`] and
//! [`pending`] act on the calling thread's mask.

use serde::{Deserialize, Serialize};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithRawSiginfo;

use crate::channel::{Receiver, unbounded};
use crate::error::Error;
use crate::sys::signal as sys;

pub use libc::{SIGALRM, SIGCHLD, SIGHUP, SIGINT, SIGPIPE, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};

/// The first real-time signal (`SIGRTMIN`).
pub fn sigrtmin() -> i32 {
    libc::SIGRTMIN()
}

/// A signal, delivered as a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalInfo {
    /// The signal number (`SIGUSR1`, …).
    pub signal: i32,
    /// The process that sent it, as the kernel says (`kill`, `sigqueue`);
    /// `None` when the kernel raised it.
    pub pid: Option<u32>,
    /// That process's real uid.
    pub uid: Option<u32>,
    /// The value `sigqueue` sent with it.
    pub value: Option<i32>,
}

/// Deliver `signals` as messages on the receiver returned (see the module
/// documentation). Signals that cannot be caught (`SIGKILL`, `SIGSTOP`) or
/// must not be (`SIGSEGV`, `SIGILL`, `SIGFPE`) are refused with an error.
pub fn subscribe(signals: &[i32]) -> Result<Receiver<SignalInfo>, Error> {
    if signals.iter().any(|s| signal_hook::consts::FORBIDDEN.contains(s)) {
        return Err(Error::Unsupported("SIGKILL and SIGSTOP cannot be caught; SIGSEGV, SIGILL and SIGFPE must not be"));
    }
    if let Some(bad) = signals.iter().find(|&&s| s <= 0 || s > libc::SIGRTMAX()) {
        return Err(Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("no signal {bad}"))));
    }
    let mut caught = SignalsInfo::<WithRawSiginfo>::new(signals)?;
    let (tx, rx) = unbounded::<SignalInfo>()?;
    let handle = caught.handle();
    std::thread::Builder::new().name("conduit-signals".into()).spawn(move || {
        for raw in caught.forever() {
            let i = sys::info(&raw);
            let info = SignalInfo { signal: i.signal, pid: i.pid, uid: i.uid, value: i.value };
            if tx.send(info).is_err() {
                // Nobody receives any more: give the signals up.
                handle.close();
                return;
            }
        }
    })?;
    Ok(rx)
}

/// Send `signal` to process `pid` (`kill`).
pub fn send(pid: u32, signal: i32) -> Result<(), Error> {
    Ok(sys::kill(pid, signal)?)
}

/// Send `signal` with `value` to process `pid` (`sigqueue`); a subscriber
/// reads it as [`SignalInfo::value`].
pub fn queue(pid: u32, signal: i32, value: i32) -> Result<(), Error> {
    Ok(sys::queue(pid, signal, value)?)
}

/// Block `signals` in the calling thread (they stay pending).
pub fn block(signals: &[i32]) -> Result<(), Error> {
    Ok(sys::mask(signals, true)?)
}

/// Unblock `signals` in the calling thread (pending ones are delivered).
pub fn unblock(signals: &[i32]) -> Result<(), Error> {
    Ok(sys::mask(signals, false)?)
}

/// The signals pending for the calling thread or the process.
pub fn pending() -> Result<Vec<i32>, Error> {
    Ok(sys::pending()?)
}
