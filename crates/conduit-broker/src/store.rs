//! Durable mailboxes, in an embedded database (redb).
//!
//! Fsync policy: every change to a durable mailbox — its creation, each
//! accepted message, each acknowledged delivery — is committed with redb's
//! default durability (`fsync` before the commit returns) *before* the
//! broker replies. So a message the sender saw accepted survives a
//! `kill -9` of the broker. A delivered message leaves the disk when its
//! receiver acknowledges it: a broker killed between handing a message
//! out and that acknowledgement delivers it again after its restart
//! (at-least-once). Non-durable mailboxes never touch the disk.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::protocol::{Capacity, Policy};
use crate::state::{Mailbox, Msg, State};

const MAILBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("mailboxes");
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");

#[derive(Serialize, Deserialize)]
struct Meta {
    owner: u32,
    group: u32,
    mode: u32,
    capacity: Capacity,
    policy: Policy,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    mtype: i64,
    data: Vec<u8>,
    sender_pid: u32,
    sender_uid: u32,
}

/// The database file of a broker's data directory.
pub struct Store {
    db: Database,
}

fn e(x: impl std::fmt::Display) -> String {
    format!("durable store: {x}")
}

impl Store {
    /// Open (or create) `dir/durable.redb`.
    pub fn open(dir: &Path) -> Result<Store, String> {
        std::fs::create_dir_all(dir).map_err(e)?;
        let db = Database::create(dir.join("durable.redb")).map_err(e)?;
        let txn = db.begin_write().map_err(e)?;
        txn.open_table(MAILBOXES).map_err(e)?;
        txn.open_table(MESSAGES).map_err(e)?;
        txn.commit().map_err(e)?;
        Ok(Store { db })
    }

    /// Fill `state` with the durable mailboxes and their messages.
    pub(crate) fn load(&self, state: &mut State) -> Result<(), String> {
        let txn = self.db.begin_read().map_err(e)?;
        let boxes = txn.open_table(MAILBOXES).map_err(e)?;
        let msgs = txn.open_table(MESSAGES).map_err(e)?;
        for row in boxes.iter().map_err(e)? {
            let (name, meta) = row.map_err(e)?;
            let meta: Meta = postcard::from_bytes(meta.value()).map_err(e)?;
            let name = name.value().to_string();
            let mut mb = Mailbox::new(meta.owner, meta.group, meta.mode, meta.capacity, meta.policy, true);
            for row in msgs.range((name.as_str(), 0)..=(name.as_str(), u64::MAX)).map_err(e)? {
                let (k, m) = row.map_err(e)?;
                let m: Stored = postcard::from_bytes(m.value()).map_err(e)?;
                mb.queue.push_back(Msg {
                    mtype: m.mtype,
                    data: m.data,
                    sender_pid: m.sender_pid,
                    sender_uid: m.sender_uid,
                    key: Some(k.value().1),
                });
            }
            state.charge_mailbox(&mb);
            state.mailboxes.insert(name, mb);
        }
        Ok(())
    }

    pub(crate) fn put_mailbox(&self, name: &str, mb: &Mailbox) -> Result<(), String> {
        let meta = Meta { owner: mb.owner, group: mb.group, mode: mb.mode, capacity: mb.capacity, policy: mb.policy };
        let bytes = postcard::to_stdvec(&meta).map_err(e)?;
        let txn = self.db.begin_write().map_err(e)?;
        txn.open_table(MAILBOXES).map_err(e)?.insert(name, bytes.as_slice()).map_err(e)?;
        txn.commit().map_err(e)
    }

    pub(crate) fn remove_mailbox(&self, name: &str) -> Result<(), String> {
        let txn = self.db.begin_write().map_err(e)?;
        txn.open_table(MAILBOXES).map_err(e)?.remove(name).map_err(e)?;
        {
            let mut msgs = txn.open_table(MESSAGES).map_err(e)?;
            msgs.retain_in((name, 0)..=(name, u64::MAX), |_, _| false).map_err(e)?;
        }
        txn.commit().map_err(e)
    }

    /// Append a message (committed before returning); its key.
    pub(crate) fn push(&self, name: &str, msg: &Msg) -> Result<u64, String> {
        let stored =
            Stored { mtype: msg.mtype, data: msg.data.clone(), sender_pid: msg.sender_pid, sender_uid: msg.sender_uid };
        let bytes = postcard::to_stdvec(&stored).map_err(e)?;
        let txn = self.db.begin_write().map_err(e)?;
        let next;
        {
            let mut msgs = txn.open_table(MESSAGES).map_err(e)?;
            next = msgs
                .range((name, 0)..=(name, u64::MAX))
                .map_err(e)?
                .next_back()
                .transpose()
                .map_err(e)?
                .map_or(0, |(k, _)| k.value().1 + 1);
            msgs.insert((name, next), bytes.as_slice()).map_err(e)?;
        }
        txn.commit().map_err(e)?;
        Ok(next)
    }

    /// Remove the message stored under `key` (delivered and acknowledged).
    pub(crate) fn pop(&self, name: &str, key: u64) -> Result<(), String> {
        let txn = self.db.begin_write().map_err(e)?;
        txn.open_table(MESSAGES).map_err(e)?.remove((name, key)).map_err(e)?;
        txn.commit().map_err(e)
    }
}
