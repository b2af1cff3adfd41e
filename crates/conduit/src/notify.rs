//! The **notify port** of a process (M2.7): one receiver where the system
//! posts events about this process, after Mach's notification port.
//!
//! [`notify()`] returns it (once per process; again only after the
//! previous receiver was dropped). What arrives, as [`Event`]s:
//!
//! | event | posted when | by |
//! |---|---|---|
//! | [`Event::ChildExited`] | a child started by [`process::Command`](crate::process::Command) ended (also on its own `Child::exits` port) | the child's reaper thread |
//! | [`Event::OrphanExited`] | an orphan adopted by [`process::adopt_orphans`](crate::process::adopt_orphans) ended, reaped | the orphan reaper |
//! | [`Event::DeadName`] | the receiver of a port watched with [`watch_port`] is gone (it died or dropped its last handle) | the monitor thread (`epoll`) |
//! | [`Event::Signal`] | a signal named in [`watch_signals`] arrived | a signal thread (`signal-hook`) |
//! | [`Event::NameLost`] | a name this process registered with the broker was taken over | the broker client (`conduit-broker`) |
//!
//! Events that happen while nobody holds the receiver are dropped: the
//! notify port reports what happens from the moment it is taken. It is an
//! unbounded channel: a burst of events never blocks the thread posting.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde::{Deserialize, Serialize};

use crate::channel::{Receiver, Sender, unbounded};
use crate::error::Error;
use crate::process::Exit;
use crate::signal::SignalInfo;
use crate::sys::monitor;

/// An event about this process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// A child started by conduit ended (it has been reaped).
    ChildExited(Exit),
    /// An adopted orphan ended (it has been reaped).
    OrphanExited(Exit),
    /// The receiver of a watched port is gone: sends to it fail from now on
    /// (Mach's *dead name*). `port` is what [`watch_port`] returned.
    DeadName {
        /// The watch's id.
        port: u64,
    },
    /// A watched signal arrived.
    Signal(SignalInfo),
    /// A name this process owned in the broker now belongs to another
    /// process.
    NameLost {
        /// The name.
        name: String,
        /// The new owner's pid, if the broker says.
        by: Option<u32>,
    },
}

fn slot() -> MutexGuard<'static, Option<Sender<Event>>> {
    static SLOT: OnceLock<Mutex<Option<Sender<Event>>>> = OnceLock::new();
    SLOT.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner())
}

/// This process's notify port. Fails if a receiver taken before is still
/// alive (a port has one receiver).
pub fn notify() -> Result<Receiver<Event>, Error> {
    let mut slot = slot();
    if slot.as_ref().is_some_and(|tx| !tx.is_disconnected()) {
        return Err(Error::Link("the notify port's receiver is already taken".into()));
    }
    let (tx, rx) = unbounded::<Event>()?;
    *slot = Some(tx);
    Ok(rx)
}

/// Post `event` on the notify port (dropped if nobody holds it). For
/// libraries built on conduit that report about the process (the broker
/// client posts [`Event::NameLost`]).
pub fn post(event: Event) {
    let mut slot = slot();
    if let Some(tx) = slot.as_ref()
        && tx.send(event).is_err()
    {
        *slot = None;
    }
}

/// Deliver `signals` as [`Event::Signal`] on the notify port (as
/// [`signal::subscribe`](crate::signal::subscribe) does on a port of its
/// own, with the same rules).
pub fn watch_signals(signals: &[i32]) -> Result<(), Error> {
    let rx = crate::signal::subscribe(signals)?;
    std::thread::Builder::new().name("conduit-notify-signals".into()).spawn(move || {
        while let Ok(info) = rx.recv() {
            post(Event::Signal(info));
        }
    })?;
    Ok(())
}

/// Post [`Event::DeadName`] when the receiver of `port` is gone — at once,
/// from the monitor thread, whatever this process is doing. Returns the id
/// the event will carry. Works on every transport whose sender sees the
/// receiver go (sockets, pipes, shared memory, TCP); the watch holds a
/// duplicate of one descriptor of the port until the event is posted.
pub fn watch_port<T>(port: &Sender<T>) -> Result<u64, Error> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let fd = port.gone_fd()?;
    let watcher = Arc::new(DeadName { id, fd, watch: Mutex::new(None) });
    let weak: std::sync::Weak<dyn monitor::PeerGone> = Arc::downgrade(&watcher) as _;
    let watch = monitor::watch(std::os::fd::AsFd::as_fd(&watcher.fd), weak)?;
    *watcher.watch.lock().unwrap_or_else(|p| p.into_inner()) = Some(watch);
    watches().push(watcher);
    Ok(id)
}

/// A dead-name watch, kept until it fires.
struct DeadName {
    id: u64,
    fd: OwnedFd,
    watch: Mutex<Option<monitor::Watch>>,
}

fn watches() -> MutexGuard<'static, Vec<Arc<DeadName>>> {
    static WATCHES: OnceLock<Mutex<Vec<Arc<DeadName>>>> = OnceLock::new();
    WATCHES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner())
}

impl monitor::PeerGone for DeadName {
    fn peer_gone(&self) {
        post(Event::DeadName { port: self.id });
        // The monitor removed the registration (one shot).
        self.watch.lock().unwrap_or_else(|p| p.into_inner()).take();
        watches().retain(|w| w.id != self.id);
    }
}
