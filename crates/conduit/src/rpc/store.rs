//! The durable reply cache: answers to exactly-once calls in a `redb`
//! database, each committed (`fsync`) before the answer is sent.

use std::collections::HashMap;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::Outcome;
use super::server::Replies;
use crate::error::Error;

/// (client, call) → the answer, postcard.
const REPLIES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("replies");
/// client → (forgotten below, last seen, seconds since the epoch).
const CLIENTS: TableDefinition<u64, (u64, u64)> = TableDefinition::new("clients");

fn e(x: impl std::fmt::Display) -> Error {
    Error::Io(std::io::Error::other(format!("durable reply cache: {x}")))
}

#[derive(Debug)]
pub(crate) struct Store {
    db: Database,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let db = Database::create(path).map_err(e)?;
        let txn = db.begin_write().map_err(e)?;
        txn.open_table(REPLIES).map_err(e)?;
        txn.open_table(CLIENTS).map_err(e)?;
        txn.commit().map_err(e)?;
        Ok(Store { db })
    }

    /// Every client seen since `since` (seconds since the epoch), with its
    /// answers.
    pub fn load(&self, since: u64) -> Result<HashMap<u64, Replies>, Error> {
        let txn = self.db.begin_read().map_err(e)?;
        let clients = txn.open_table(CLIENTS).map_err(e)?;
        let replies = txn.open_table(REPLIES).map_err(e)?;
        let mut out = HashMap::new();
        for row in clients.iter().map_err(e)? {
            let (client, v) = row.map_err(e)?;
            let (forgotten_below, last_seen) = v.value();
            if last_seen < since {
                continue;
            }
            let mut r = Replies::default();
            r.forgotten_below = forgotten_below;
            r.last_seen = last_seen;
            for row in replies.range((client.value(), forgotten_below)..=(client.value(), u64::MAX)).map_err(e)? {
                let (k, v) = row.map_err(e)?;
                let outcome: Outcome = postcard::from_bytes(v.value()).map_err(e)?;
                r.remember(k.value().1, outcome);
            }
            out.insert(client.value(), r);
        }
        Ok(out)
    }

    /// Keep `outcome` as the answer to (`client`, `id`), forget the
    /// client's answers below `forgotten_below`; committed on return.
    pub fn put(&self, client: u64, id: u64, forgotten_below: u64, now: u64, outcome: &Outcome) -> Result<(), Error> {
        let bytes = postcard::to_stdvec(outcome).map_err(Error::Encode)?;
        let txn = self.db.begin_write().map_err(e)?;
        {
            let mut replies = txn.open_table(REPLIES).map_err(e)?;
            replies.insert((client, id), bytes.as_slice()).map_err(e)?;
            if forgotten_below > 0 {
                replies.retain_in((client, 0)..(client, forgotten_below), |_, _| false).map_err(e)?;
            }
            let mut clients = txn.open_table(CLIENTS).map_err(e)?;
            clients.insert(client, (forgotten_below, now)).map_err(e)?;
        }
        txn.commit().map_err(e)?;
        Ok(())
    }
}
