//! conduit's own cases.

use std::io;
use std::sync::Arc;

use conduit::{Receiver, Sender};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Give;
use crate::driver::{self, Link, Measurement, Plan};
use crate::peer::{Peer, spawn_peer};

/// Bytes as one postcard byte string (not a sequence of u8).
#[derive(Clone, Debug, Default)]
pub struct Blob(pub Arc<Vec<u8>>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(Arc::new(v.to_vec())))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A pair of typed conduit channels used as a byte link.
pub struct Channels {
    tx: Sender<Blob>,
    rx: Receiver<Blob>,
}

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl Link for Channels {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.tx.send(Blob(Arc::new(data.to_vec()))).map_err(err)
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        let b = self.rx.recv().map_err(err)?;
        buf.clear();
        buf.extend_from_slice(&b.0);
        Ok(())
    }
}

/// Channel capacity used in the streams.
const CAPACITY: usize = 256;

/// `conduit/uds`: typed bounded channels over Unix sockets.
pub fn uds(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let (to_tx, to_rx) = conduit::bounded::<Blob>(CAPACITY).map_err(err)?;
    let (back_tx, back_rx) = conduit::bounded::<Blob>(CAPACITY).map_err(err)?;
    let peer = spawn_peer("conduit/uds", &[])?;
    peer.give(Give::Blobs(to_rx, back_tx))?;
    let mut link = Channels { tx: to_tx, rx: back_rx };
    let m = driver::measure("conduit/uds", &mut link, plan, tick);
    drop(link);
    peer.finish(m)
}

/// The peer of `conduit/uds`.
pub fn uds_peer(p: &Peer) -> io::Result<()> {
    match p.take()? {
        Give::Blobs(rx, tx) => driver::serve(&mut Channels { tx, rx }),
    }
}
