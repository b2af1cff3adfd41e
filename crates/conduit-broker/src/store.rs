//! Durable mailboxes, in an embedded database (redb), committed in groups.
//!
//! Every change to a durable mailbox — its creation, each accepted
//! message, each acknowledged delivery, its removal — is an [`Op`] with a
//! sequence number, handed to one committer thread. The committer takes
//! every op that has arrived, writes them in one redb transaction and
//! commits it with redb's default durability (`fsync` before the commit
//! returns); ops that arrive while that `fsync` runs wait for the next
//! one, which commits them all together (group commit). So one `fsync`
//! serves as many clients as were waiting, and one client may have many
//! sends in flight.
//!
//! What a reply promises: the broker answers a durable send (and a
//! confirmed acknowledgement, and a create, remove or chown of a durable
//! mailbox) only once the commit that holds it returned. A message is
//! visible to receivers only once it is committed, so no receiver sees a
//! message a crash could take back. A delivered message leaves the disk
//! when its receiver's acknowledgement is committed: a broker killed
//! between handing a message out and that commit delivers it again after
//! its restart (at-least-once; the window is from the hand-out to the
//! confirmed acknowledgement). If a commit fails (a full disk, an I/O
//! error), that batch and every later op fail with the error, and their
//! messages never become visible: the store is broken until the broker
//! restarts. Non-durable mailboxes never touch the disk.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::protocol::{BrokerError, Capacity, Policy};
use crate::state::{Mailbox, Msg, State};

const MAILBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("mailboxes");
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");

/// Ops one transaction takes at most (the rest wait for the next).
const MAX_BATCH: usize = 4096;

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

/// One change to the durable state.
enum Op {
    PutMailbox { name: String, meta: Vec<u8> },
    RemoveMailbox { name: String },
    Push { name: String, key: u64, bytes: Vec<u8> },
    Pop { name: String, key: u64 },
}

/// How far the committer got.
struct Progress {
    /// Every op with a sequence number up to this one is committed (or
    /// failed, see `failed_from`).
    committed: AtomicU64,
    /// The first op of the first batch whose commit failed (`u64::MAX`:
    /// none has).
    failed_from: AtomicU64,
    failure: Mutex<Option<String>>,
    /// `committed`, for tasks that wait for it.
    watch: watch::Sender<u64>,
}

/// Ops not yet handed to the committer get their sequence numbers here,
/// in the order they are sent.
struct Submit {
    next_seq: u64,
    tx: Option<mpsc::Sender<(u64, Op)>>,
}

/// The database file of a broker's data directory, and its committer.
pub struct Store {
    db: Arc<Database>,
    submit: Mutex<Submit>,
    progress: Arc<Progress>,
    /// Until [`start`](Store::start): the receiving end for the committer.
    pending: Mutex<Option<mpsc::Receiver<(u64, Op)>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
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
        let (tx, rx) = mpsc::channel();
        Ok(Store {
            db: Arc::new(db),
            submit: Mutex::new(Submit { next_seq: 1, tx: Some(tx) }),
            progress: Arc::new(Progress {
                committed: AtomicU64::new(0),
                failed_from: AtomicU64::new(u64::MAX),
                failure: Mutex::new(None),
                watch: watch::Sender::new(0),
            }),
            pending: Mutex::new(Some(rx)),
            thread: Mutex::new(None),
        })
    }

    /// Start the committer; after each commit it wakes `changed`'s waiters
    /// (receivers waiting for the messages it made visible).
    pub(crate) fn start(&self, changed: Arc<Notify>) -> Result<(), String> {
        let Some(rx) = self.pending.lock().unwrap_or_else(|p| p.into_inner()).take() else { return Ok(()) };
        let db = Arc::clone(&self.db);
        let progress = Arc::clone(&self.progress);
        let thread = std::thread::Builder::new()
            .name("conduit-commit".into())
            .spawn(move || commit_loop(&db, &rx, &progress, &changed))
            .map_err(e)?;
        *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        Ok(())
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
                let key = k.value().1;
                mb.next_key = key + 1;
                mb.queue.push_back(Msg {
                    mtype: m.mtype,
                    data: m.data,
                    sender_pid: m.sender_pid,
                    sender_uid: m.sender_uid,
                    key: Some(key),
                    seq: 0,
                });
            }
            state.charge_mailbox(&mb);
            state.mailboxes.insert(name, mb);
        }
        Ok(())
    }

    /// Hand an op to the committer; its sequence number.
    fn submit(&self, op: Op) -> u64 {
        let mut s = self.submit.lock().unwrap_or_else(|p| p.into_inner());
        let seq = s.next_seq;
        s.next_seq += 1;
        let sent = s.tx.as_ref().is_some_and(|tx| tx.send((seq, op)).is_ok());
        if !sent {
            // The committer is gone (the broker is stopping): this op
            // fails like one whose commit failed.
            self.progress.failed_from.fetch_min(seq, Ordering::SeqCst);
            self.progress.watch.send_modify(|_| {});
        }
        seq
    }

    /// Record a mailbox (created, or its owner changed).
    pub(crate) fn put_mailbox(&self, name: &str, mb: &Mailbox) -> u64 {
        let meta = Meta { owner: mb.owner, group: mb.group, mode: mb.mode, capacity: mb.capacity, policy: mb.policy };
        let meta = postcard::to_stdvec(&meta).expect("a Meta always serializes");
        self.submit(Op::PutMailbox { name: name.into(), meta })
    }

    /// Forget a mailbox and its messages.
    pub(crate) fn remove_mailbox(&self, name: &str) -> u64 {
        self.submit(Op::RemoveMailbox { name: name.into() })
    }

    /// Store a message under the mailbox's next key (set in `msg.key`).
    pub(crate) fn push(&self, name: &str, mb: &mut Mailbox, msg: &mut Msg) -> u64 {
        let stored =
            Stored { mtype: msg.mtype, data: msg.data.clone(), sender_pid: msg.sender_pid, sender_uid: msg.sender_uid };
        let bytes = postcard::to_stdvec(&stored).expect("a Stored always serializes");
        let key = mb.next_key;
        mb.next_key += 1;
        msg.key = Some(key);
        msg.seq = self.submit(Op::Push { name: name.into(), key, bytes });
        msg.seq
    }

    /// Remove the message stored under `key` (delivered and acknowledged).
    pub(crate) fn pop(&self, name: &str, key: u64) -> u64 {
        self.submit(Op::Pop { name: name.into(), key })
    }

    /// Ops up to this sequence number are on disk (messages with a
    /// sequence number up to it may be handed out).
    pub(crate) fn visible_upto(&self) -> u64 {
        let committed = self.progress.committed.load(Ordering::SeqCst);
        committed.min(self.progress.failed_from.load(Ordering::SeqCst).saturating_sub(1))
    }

    /// Wait until op `seq` is committed; its failure, if it failed.
    pub(crate) async fn committed(&self, seq: u64) -> Result<(), BrokerError> {
        let failed = || seq >= self.progress.failed_from.load(Ordering::SeqCst);
        let mut rx = self.progress.watch.subscribe();
        let reached = failed() || rx.wait_for(|c| *c >= seq || failed()).await.is_ok();
        if reached && !failed() {
            return Ok(());
        }
        let why = self.progress.failure.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Err(BrokerError::Invalid(why.unwrap_or_else(|| e("the broker is stopping; not stored"))))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Everything submitted is committed before the store closes.
        self.submit.lock().unwrap_or_else(|p| p.into_inner()).tx = None;
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// The committer: one transaction for whatever has arrived, then wake.
fn commit_loop(db: &Database, rx: &mpsc::Receiver<(u64, Op)>, progress: &Progress, changed: &Notify) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let (from, last) = (batch[0].0, batch[batch.len() - 1].0);
        if let Err(why) = apply(db, &batch) {
            tracing::error!(error = %why, ops = batch.len(), "a durable commit failed; durable mailboxes fail until the broker restarts");
            let mut failure = progress.failure.lock().unwrap_or_else(|p| p.into_inner());
            failure.get_or_insert(why);
            progress.failed_from.fetch_min(from, Ordering::SeqCst);
        }
        progress.committed.store(last, Ordering::SeqCst);
        progress.watch.send_replace(last);
        changed.notify_waiters();
    }
}

/// Write a batch of ops in one transaction and commit it (fsync).
fn apply(db: &Database, batch: &[(u64, Op)]) -> Result<(), String> {
    let txn = db.begin_write().map_err(e)?;
    {
        let mut boxes = txn.open_table(MAILBOXES).map_err(e)?;
        let mut msgs = txn.open_table(MESSAGES).map_err(e)?;
        for (_, op) in batch {
            match op {
                Op::PutMailbox { name, meta } => drop(boxes.insert(name.as_str(), meta.as_slice()).map_err(e)?),
                Op::RemoveMailbox { name } => {
                    boxes.remove(name.as_str()).map_err(e)?;
                    let name = name.as_str();
                    msgs.retain_in((name, 0)..=(name, u64::MAX), |_, _| false).map_err(e)?;
                }
                Op::Push { name, key, bytes } => drop(msgs.insert((name.as_str(), *key), bytes.as_slice()).map_err(e)?),
                Op::Pop { name, key } => drop(msgs.remove((name.as_str(), *key)).map_err(e)?),
            }
        }
    }
    txn.commit().map_err(e)
}
