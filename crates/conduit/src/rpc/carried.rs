//! Rights inside a call's arguments or its return value: a method may take
//! a `Sender<T>` (a stream the server writes to), return a `Receiver<T>`,
//! or take and return a [`Remote`](super::Remote).
//!
//! Arguments and return values are encoded on their own (postcard bytes
//! inside the [`Call`](super::Call) or [`Answer`](super::Answer)), apart
//! from the frame that carries them. The rights they meet while encoding
//! are collected here ([`encode`]), with indices into this list; when the
//! call is sent they join the frame's own rights table and the call says
//! which entries are its own (`rights`, a list of table indices). The
//! receiver claims those entries while it decodes the call, and provides
//! them, in the same order, when the arguments or return value are
//! decoded ([`decode`]). Every right a hostile peer names must exist in
//! the frame's table and is claimed once (the frame parser's rules).

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::rights::{self, Incoming, Outgoing};

#[derive(Default)]
enum Held {
    #[default]
    None,
    /// Collected while encoding; sent with every send of the call (a
    /// resend duplicates the descriptors again).
    Out(Outgoing),
    /// Claimed from a received frame, waiting to be decoded.
    In(Vec<Incoming>),
}

/// The rights a call's arguments or an answer's return value hold (see the
/// module documentation). Clones share them; equality ignores them. Most
/// calls hold none: then nothing is allocated.
#[derive(Clone, Default)]
pub struct Carried(Option<Arc<Mutex<Held>>>);

impl Carried {
    fn new(held: Held) -> Carried {
        Carried(Some(Arc::new(Mutex::new(held))))
    }

    fn held(&self) -> Option<std::sync::MutexGuard<'_, Held>> {
        self.0.as_ref().map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// How many rights are held.
    pub fn len(&self) -> usize {
        match self.held().as_deref() {
            None | Some(Held::None) => 0,
            Some(Held::Out(o)) => o.len(),
            Some(Held::In(i)) => i.len(),
        }
    }

    /// True if no right is held (most calls).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn take_incoming(&self) -> Vec<Incoming> {
        let Some(mut held) = self.held() else { return Vec::new() };
        match std::mem::take(&mut *held) {
            Held::In(v) => v,
            other => {
                *held = other;
                Vec::new()
            }
        }
    }
}

impl std::fmt::Debug for Carried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Carried({} rights)", self.len())
    }
}

impl PartialEq for Carried {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Carried {}

/// Encode `value` (postcard), collecting the rights it holds.
pub fn encode<A: Serialize + ?Sized>(value: &A) -> Result<(Vec<u8>, Carried), postcard::Error> {
    let (bytes, out) = rights::collect(|| postcard::to_stdvec(value));
    let bytes = bytes?;
    let carried = if out.is_empty() { Carried::default() } else { Carried::new(Held::Out(out)) };
    Ok((bytes, carried))
}

/// Decode `bytes` with the rights that came with them (each claimed at
/// most once; unclaimed ones are closed).
pub fn decode<R: DeserializeOwned>(bytes: &[u8], carried: &Carried) -> Result<R, postcard::Error> {
    if carried.0.is_none() {
        return postcard::from_bytes(bytes);
    }
    rights::provide(carried.take_incoming(), || postcard::from_bytes(bytes))
}

impl Serialize for Carried {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let held = self.held();
        let Some(Held::Out(out)) = held.as_deref() else {
            // Nothing to send (a received call is not forwarded with its
            // rights: the fault relay, a cached answer).
            return s.collect_seq(std::iter::empty::<u32>());
        };
        let mut indices = Vec::with_capacity(out.len());
        for (kind, fds) in out {
            let dup: Vec<OwnedFd> =
                fds.iter().map(OwnedFd::try_clone).collect::<Result<_, _>>().map_err(serde::ser::Error::custom)?;
            indices.push(rights::push(*kind, dup).map_err(serde::ser::Error::custom)?);
        }
        indices.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Carried {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let indices = Vec::<u32>::deserialize(d)?;
        if indices.is_empty() {
            return Ok(Carried::default());
        }
        let claimed =
            indices.into_iter().map(rights::take).collect::<Result<Vec<_>, _>>().map_err(serde::de::Error::custom)?;
        Ok(Carried::new(Held::In(claimed)))
    }
}
