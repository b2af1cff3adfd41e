//! Rights inside messages.
//!
//! A `Sender` or `Receiver` inside a message serializes as a small index;
//! its descriptors go into a per-thread table that the frame encoder sends
//! with `SCM_RIGHTS`. On receipt, the decoder fills the table with the
//! descriptors that arrived, and deserializing a right takes its entry.
//! Entries nobody took are closed when decoding ends: nothing leaks.

use std::cell::RefCell;
use std::os::fd::OwnedFd;

use crate::channel::ctl::Ctl;

/// What a right is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RightKind {
    /// A send right (`Sender`).
    Send = 1,
    /// The receive right (`Receiver`).
    Receive = 2,
}

impl RightKind {
    pub(crate) fn from_byte(b: u8) -> Option<RightKind> {
        match b {
            1 => Some(RightKind::Send),
            2 => Some(RightKind::Receive),
            _ => None,
        }
    }
}

/// The descriptors of one port end: the socket and the control block.
#[derive(Debug)]
pub struct PortFds {
    pub sock: OwnedFd,
    pub ctl: OwnedFd,
}

thread_local! {
    static OUTGOING: RefCell<Option<Vec<(RightKind, PortFds)>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<Option<Incoming>>>> = const { RefCell::new(None) };
}

/// Run `f` (a serialization) collecting the rights it meets.
pub fn collect<R>(f: impl FnOnce() -> R) -> (R, Vec<(RightKind, PortFds)>) {
    let saved = OUTGOING.with(|o| o.borrow_mut().replace(Vec::new()));
    let r = f();
    let rights = OUTGOING.with(|o| std::mem::replace(&mut *o.borrow_mut(), saved)).unwrap_or_default();
    (r, rights)
}

/// Record a right met during serialization; returns its index.
pub fn push(kind: RightKind, fds: PortFds) -> Result<u32, &'static str> {
    OUTGOING.with(|o| match o.borrow_mut().as_mut() {
        None => Err("conduit rights can only be serialized inside a conduit message"),
        Some(v) => {
            v.push((kind, fds));
            Ok((v.len() - 1) as u32)
        }
    })
}

/// A right that arrived, already checked: a conduit socket and a mapped
/// control block.
#[derive(Debug)]
pub struct Incoming {
    pub kind: RightKind,
    pub sock: OwnedFd,
    pub ctl: Ctl,
}

/// Run `f` (a deserialization) with `rights` available to it. Rights left
/// unclaimed are closed.
pub fn provide<R>(rights: Vec<Incoming>, f: impl FnOnce() -> R) -> R {
    let table = rights.into_iter().map(Some).collect();
    let saved = INCOMING.with(|i| i.borrow_mut().replace(table));
    let r = f();
    INCOMING.with(|i| *i.borrow_mut() = saved);
    r
}

/// Claim right `index`, which must be of `kind`.
pub fn take(index: u32, kind: RightKind) -> Result<(OwnedFd, Ctl), &'static str> {
    INCOMING.with(|i| {
        let mut table = i.borrow_mut();
        let table = table.as_mut().ok_or("conduit rights can only be deserialized from a conduit message")?;
        let slot = table.get_mut(index as usize).ok_or("right index out of range")?;
        match slot.take() {
            None => Err("right claimed twice"),
            Some(r) if r.kind != kind => Err("right of the wrong kind (send vs receive)"),
            Some(r) => Ok((r.sock, r.ctl)),
        }
    })
}
