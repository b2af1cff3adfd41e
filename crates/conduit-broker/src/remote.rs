//! Mailboxes of other hosts, imported by a bridge (`conduit bridge`, the
//! `conduit-zenoh` crate).
//!
//! A bridge is a root client that says `Request::Bridge` with a port for
//! calls, then `Import`s the mailboxes its peers export. A send to, or a
//! receive from, an imported mailbox is a [`Forward`] on that port, with
//! the caller's credentials; the bridge carries it to the mailbox's host,
//! where its own bridge runs it on the caller's behalf (`Request::As`), and
//! answers with `Request::Answer`. A receive holds the message there until
//! the receiver here settles it (the settle is forwarded too), so a
//! receiver that dies gives it back as it would at home. When the bridge's
//! connection ends, its imports go and the calls waiting on it fail with
//! `Unreachable`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use conduit::Sender;
use tokio::sync::{mpsc, oneshot};

use crate::protocol::{BrokerError, Caller, Forward, ObjectInfo, RemoteOp, Reply};
use crate::state::Peer;

/// The imports and the bridges that serve them.
#[derive(Default)]
pub(crate) struct Remotes {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// By connection id.
    bridges: HashMap<u64, Bridge>,
    /// By name.
    mailboxes: HashMap<String, Imported>,
    next_call: u64,
}

struct Bridge {
    host: String,
    pid: u32,
    calls: mpsc::UnboundedSender<Forward>,
    /// Calls waiting for their answer.
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    /// The hosts it is connected to (`Request::BridgePeers`).
    peers: Vec<String>,
}

struct Imported {
    bridge: u64,
    host: String,
    capacity: Option<u64>,
}

impl Remotes {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make `peer`'s connection a bridge that takes calls on `calls`.
    pub(crate) fn bridge(&self, peer: &Peer, host: String, calls: Sender<Forward>) -> Result<(), BrokerError> {
        if peer.uid != 0 {
            return Err(BrokerError::Denied("only root may run a bridge".into()));
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Forward>();
        let mut inner = self.lock();
        if inner.bridges.contains_key(&peer.id) {
            return Err(BrokerError::Exists("a bridge on this connection".into()));
        }
        // The bridge reads its calls in order; a bridge that stops reading
        // holds up only its own calls.
        tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                if calls.send_async(f).await.is_err() {
                    break;
                }
            }
        });
        inner
            .bridges
            .insert(peer.id, Bridge { host, pid: peer.pid, calls: tx, pending: HashMap::new(), peers: vec![] });
        Ok(())
    }

    /// `name` is imported (the bridge of connection `peer` serves it).
    pub(crate) fn import(
        &self,
        peer: &Peer,
        name: String,
        host: String,
        capacity: Option<u64>,
    ) -> Result<(), BrokerError> {
        let mut inner = self.lock();
        if !inner.bridges.contains_key(&peer.id) {
            return Err(BrokerError::Invalid("Import needs a bridge connection (Request::Bridge first)".into()));
        }
        match inner.mailboxes.get(&name) {
            Some(m) if m.bridge != peer.id => {
                Err(BrokerError::Exists(format!("mailbox {name} (imported from host {})", m.host)))
            }
            _ => {
                inner.mailboxes.insert(name, Imported { bridge: peer.id, host, capacity });
                Ok(())
            }
        }
    }

    /// Forget an import of this bridge.
    pub(crate) fn unimport(&self, peer: &Peer, name: &str) -> Result<(), BrokerError> {
        let mut inner = self.lock();
        match inner.mailboxes.get(name) {
            Some(m) if m.bridge == peer.id => {
                inner.mailboxes.remove(name);
                Ok(())
            }
            Some(_) => Err(BrokerError::Denied(format!("mailbox {name} was imported by another bridge"))),
            None => Err(BrokerError::NotFound(format!("imported mailbox {name}"))),
        }
    }

    /// The bridge's list of connected hosts.
    pub(crate) fn set_peers(&self, peer: &Peer, hosts: Vec<String>) {
        if let Some(b) = self.lock().bridges.get_mut(&peer.id) {
            b.peers = hosts;
        }
    }

    /// Is `name` imported? (Its host.)
    pub(crate) fn host_of(&self, name: &str) -> Option<String> {
        self.lock().mailboxes.get(name).map(|m| m.host.clone())
    }

    /// A connection ended: if it was a bridge, its imports go and its
    /// waiting calls fail (their senders are dropped).
    pub(crate) fn disconnect(&self, peer_id: u64) {
        let mut inner = self.lock();
        if inner.bridges.remove(&peer_id).is_some() {
            inner.mailboxes.retain(|_, m| m.bridge != peer_id);
        }
    }

    /// Forward `op` on mailbox `name` and wait for the answer. A
    /// `Reply::Error` is returned as the error.
    pub(crate) async fn call(&self, name: &str, caller: Caller, op: RemoteOp) -> Result<Reply, BrokerError> {
        let (host, answer) = {
            let mut inner = self.lock();
            let Some(m) = inner.mailboxes.get(name) else {
                return Err(BrokerError::NotFound(format!("mailbox {name}")));
            };
            let (bridge, host) = (m.bridge, m.host.clone());
            inner.next_call += 1;
            let call = inner.next_call;
            let (tx, rx) = oneshot::channel();
            let Some(b) = inner.bridges.get_mut(&bridge) else {
                return Err(BrokerError::Unreachable(format!("host {host}: its bridge is gone")));
            };
            b.pending.insert(call, tx);
            if b.calls.send(Forward { call, caller, op }).is_err() {
                b.pending.remove(&call);
                return Err(BrokerError::Unreachable(format!("host {host}: its bridge is gone")));
            }
            (host, rx)
        };
        match answer.await {
            Ok(Reply::Error(e)) => Err(e),
            Ok(r) => Ok(r),
            Err(_) => Err(BrokerError::Unreachable(format!("host {host}: the bridge ended during the call"))),
        }
    }

    /// The bridge of connection `peer` answers `call`. A message that
    /// nobody waits for any more (its receiver went away) is given back.
    pub(crate) fn answer(&self, peer: &Peer, call: u64, reply: Reply) {
        let mut inner = self.lock();
        let Some(b) = inner.bridges.get_mut(&peer.id) else { return };
        let unclaimed = match b.pending.remove(&call) {
            Some(waiter) => waiter.send(reply).err(),
            None => Some(reply),
        };
        if let Some(Reply::Message { delivery, .. }) = unclaimed {
            let back = RemoteOp::Settle { token: delivery, ack: false };
            let _ = b.calls.send(Forward { call: 0, caller: Caller { uid: 0, gid: 0, pid: 0 }, op: back });
        }
    }

    /// Settle a delivery received from mailbox `name` through its bridge
    /// (lost with the bridge: the mailbox's host gives back what a gone
    /// bridge held).
    pub(crate) fn settle(&self, name: &str, token: u64, ack: bool) {
        let inner = self.lock();
        let Some(m) = inner.mailboxes.get(name) else { return };
        if let Some(b) = inner.bridges.get(&m.bridge) {
            let op = RemoteOp::Settle { token, ack };
            let _ = b.calls.send(Forward { call: 0, caller: Caller { uid: 0, gid: 0, pid: 0 }, op });
        }
    }

    /// The imports (`remote`), bridges (`bridge`) and their peers
    /// (`bridge-peer`), as `conduit ls` shows them.
    pub(crate) fn list(&self) -> Vec<ObjectInfo> {
        let inner = self.lock();
        let info = |kind: &str, id: String, capacity, pids| ObjectInfo {
            kind: kind.into(),
            id,
            owner: 0,
            group: 0,
            mode: 0,
            depth: 0,
            capacity,
            bytes: 0,
            pids,
        };
        let mut out: Vec<ObjectInfo> = inner
            .mailboxes
            .iter()
            .map(|(name, m)| {
                let pid = inner.bridges.get(&m.bridge).map(|b| b.pid);
                info("remote", format!("{name}@{}", m.host), m.capacity, pid.into_iter().collect())
            })
            .collect();
        for b in inner.bridges.values() {
            out.push(info("bridge", b.host.clone(), None, vec![b.pid]));
            out.extend(b.peers.iter().map(|p| info("bridge-peer", format!("{}→{p}", b.host), None, vec![b.pid])));
        }
        out
    }
}
