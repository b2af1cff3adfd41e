//! Durable mailboxes, in an embedded database (redb), committed in groups.
//!
//! Every change to a durable mailbox — its creation, each accepted
//! message, each acknowledged delivery, its removal — is an [`Op`] with a
//! sequence number, handed to one committer thread. The committer takes
//! every op that has arrived, appends them to a write-ahead log and
//! syncs it (one `pwritev2` with `RWF_DSYNC`); ops that arrive while that sync runs wait for the
//! next one, which commits them all together (group commit). So one sync
//! serves as many clients as were waiting, and one client may have many
//! sends in flight.
//!
//! The log (`durable.log`, 8 MiB written with zeros once, so that a sync
//! of a record is a sync of data in place, with no file metadata to
//! journal) is in front of the database (`durable.redb`): the committer
//! keeps the ops logged since the last checkpoint in memory, netted (a
//! message pushed and popped in that time is in neither), and when the log
//! is full it writes them into redb and commits it with a sync (a
//! checkpoint; durable requests wait for it), then starts the log again
//! from its beginning under a new generation number. The log's size
//! bounds that memory. A broker that stops cleanly checkpoints. A record is its length, a CRC-32C, the generation and the op;
//! at open, the records of the database's current generation are replayed
//! from the start of the log up to the first that is torn, stale or
//! fails its check, and the database is checkpointed. Replay is safe to
//! repeat: every op sets what it touches to a value of its own (a message
//! under its key, a key removed, a mailbox's record, a mailbox removed
//! with all its messages).
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

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::protocol::{BrokerError, Capacity, Policy};
use crate::state::{Mailbox, Msg, State};

const MAILBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("mailboxes");
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
/// `"generation"`: the log records the database does not hold yet carry it.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const GENERATION: &str = "generation";

/// The write-ahead log's size: it is full (and the database checkpointed)
/// when a batch's records would go past it.
const LOG_BYTES: u64 = 8 << 20;
/// A log record's header: length (u32), CRC-32C (u32), generation (u64).
const RECORD_HEAD: usize = 16;

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
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
    sender_pid: u32,
    sender_uid: u32,
}

/// One change to the durable state.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Op {
    PutMailbox {
        name: String,
        #[serde(with = "serde_bytes")]
        meta: Vec<u8>,
    },
    RemoveMailbox {
        name: String,
    },
    Push {
        name: String,
        key: u64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    Pop {
        name: String,
        key: u64,
    },
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
    log: Mutex<Option<Log>>,
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
    /// Open (or create) `dir/durable.redb` and replay `dir/durable.log`
    /// into it.
    pub fn open(dir: &Path) -> Result<Store, String> {
        // The broker's own: no one else reads the messages in it, whatever
        // the mode of the directory clients connect through.
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(e)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(e)?;
        let db = Database::create(dir.join("durable.redb")).map_err(e)?;
        std::fs::set_permissions(dir.join("durable.redb"), std::fs::Permissions::from_mode(0o600)).map_err(e)?;
        let txn = db.begin_write().map_err(e)?;
        txn.open_table(MAILBOXES).map_err(e)?;
        txn.open_table(MESSAGES).map_err(e)?;
        let generation = txn.open_table(META).map_err(e)?.get(GENERATION).map_err(e)?.map_or(0, |g| g.value());
        txn.commit().map_err(e)?;
        let path = dir.join("durable.log");
        let replay = match std::fs::read(&path) {
            Ok(bytes) => read_log(&bytes, generation)?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(err) => return Err(e(format!("{}: {err}", path.display()))),
        };
        if !replay.is_empty() {
            tracing::info!(ops = replay.len(), "replaying the durable log");
        }
        // A checkpoint: what the log held is in the database, and the log
        // starts again under the next generation.
        apply(&db, replay.iter(), Durability::Immediate, Some(generation + 1))?;
        let (tx, rx) = mpsc::channel();
        Ok(Store {
            db: Arc::new(db),
            log: Mutex::new(Some(Log { path, file: None, generation: generation + 1, at: 0, capacity: LOG_BYTES })),
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
        let Some(mut log) = self.log.lock().unwrap_or_else(|p| p.into_inner()).take() else { return Ok(()) };
        let db = Arc::clone(&self.db);
        let progress = Arc::clone(&self.progress);
        let thread = std::thread::Builder::new()
            .name("conduit-commit".into())
            .spawn(move || commit_loop(&db, &mut log, &rx, &progress, &changed))
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

/// The write-ahead log, as the committer holds it.
struct Log {
    path: PathBuf,
    /// Opened (and, the first time, written with zeros) at the first batch.
    file: Option<File>,
    /// The generation its records are written under.
    generation: u64,
    /// Where the next record goes.
    at: u64,
    /// Its size ([`LOG_BYTES`]).
    capacity: u64,
}

impl Log {
    fn file(&mut self) -> Result<&File, String> {
        if self.file.is_none() {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&self.path)
                .map_err(e)?;
            let len = file.metadata().map_err(e)?.len();
            if len < self.capacity {
                // Zeros in every block, so that a record's sync moves no
                // file metadata.
                let zeros = vec![0u8; 1 << 20];
                let mut at = len;
                while at < self.capacity {
                    let n = (self.capacity - at).min(zeros.len() as u64);
                    file.write_all_at(&zeros[..n as usize], at).map_err(e)?;
                    at += n;
                }
                file.sync_all().map_err(e)?;
            }
            self.file = Some(file);
        }
        Ok(self.file.as_ref().expect("opened above"))
    }
}

/// Ops logged since the last checkpoint, netted: a message pushed and
/// popped in that time is in neither (its key was free before the push,
/// as every push takes a fresh key, and is free after the pop).
#[derive(Default)]
struct Unapplied {
    ops: Vec<Option<Op>>,
    /// Where each push not yet popped is in `ops`.
    pushes: HashMap<(String, u64), usize>,
}

impl Unapplied {
    fn add(&mut self, op: Op) {
        match &op {
            Op::Pop { name, key } => {
                if let Some(i) = self.pushes.remove(&(name.clone(), *key)) {
                    self.take(i);
                    return;
                }
            }
            Op::Push { name, key, .. } => {
                self.pushes.insert((name.clone(), *key), self.ops.len());
            }
            Op::RemoveMailbox { name } => {
                let gone: Vec<usize> = self.pushes.extract_if(|(n, _), _| n == name).map(|(_, i)| i).collect();
                for i in gone {
                    self.take(i);
                }
            }
            Op::PutMailbox { .. } => {}
        }
        self.ops.push(Some(op));
    }

    fn take(&mut self, i: usize) {
        self.ops[i] = None;
    }
}

/// The committer: log and sync whatever has arrived, then wake; when the
/// log is full, checkpoint the database instead.
fn commit_loop(db: &Database, log: &mut Log, rx: &mpsc::Receiver<(u64, Op)>, progress: &Progress, changed: &Notify) {
    let mut records = Vec::new();
    let mut unapplied = Unapplied::default();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let (from, last) = (batch[0].0, batch[batch.len() - 1].0);
        if progress.failed_from.load(Ordering::SeqCst) < from {
            // Broken: nothing more is written (these ops fail, like the
            // first that did); their waiters learn it below.
        } else if let Err(why) = commit(db, log, batch, &mut records, &mut unapplied) {
            tracing::error!(error = %why, "a durable commit failed; durable mailboxes fail until the broker restarts");
            let mut failure = progress.failure.lock().unwrap_or_else(|p| p.into_inner());
            failure.get_or_insert(why);
            progress.failed_from.fetch_min(from, Ordering::SeqCst);
        }
        progress.committed.store(last, Ordering::SeqCst);
        progress.watch.send_replace(last);
        changed.notify_waiters();
    }
    // Stopping: everything into the database, nothing left to replay.
    if progress.failed_from.load(Ordering::SeqCst) == u64::MAX {
        let ops = unapplied.ops.iter().flatten();
        if let Err(why) = apply(db, ops, Durability::Immediate, Some(log.generation + 1)) {
            tracing::warn!(error = %why, "the last checkpoint failed; the log is replayed at the next start");
        }
    }
}

/// Make a batch durable: its records appended to the log and synced, or,
/// if they do not fit, a checkpoint: every op since the last one written
/// into the database and committed with a sync, under the next
/// generation, which starts the log again from its beginning.
fn commit(
    db: &Database,
    log: &mut Log,
    batch: Vec<(u64, Op)>,
    records: &mut Vec<u8>,
    unapplied: &mut Unapplied,
) -> Result<(), String> {
    records.clear();
    for (_, op) in &batch {
        encode_record(records, log.generation, op);
    }
    let full = log.at + records.len() as u64 > log.capacity;
    if !full {
        let at = log.at;
        write_synced(log.file()?, records, at)?;
        log.at += records.len() as u64;
    }
    for (_, op) in batch {
        unapplied.add(op);
    }
    if full {
        apply(db, unapplied.ops.iter().flatten(), Durability::Immediate, Some(log.generation + 1))?;
        *unapplied = Unapplied::default();
        log.generation += 1;
        log.at = 0;
    }
    Ok(())
}

/// Write `bytes` at `at` and return once they are on disk: one `pwritev2`
/// with `RWF_DSYNC` (a write and an `fdatasync` in one call).
fn write_synced(file: &File, mut bytes: &[u8], mut at: u64) -> Result<(), String> {
    use rustix::io::{Errno, ReadWriteFlags, pwritev2};
    while !bytes.is_empty() {
        match pwritev2(file, &[std::io::IoSlice::new(bytes)], at, ReadWriteFlags::DSYNC) {
            Ok(0) => return Err(e("the log took no bytes")),
            Ok(n) => {
                bytes = &bytes[n..];
                at += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(why) => return Err(e(why)),
        }
    }
    Ok(())
}

/// Append one record: length, CRC-32C of the generation and the op, the
/// generation, the op.
fn encode_record(out: &mut Vec<u8>, generation: u64, op: &Op) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEAD]);
    out[start + 8..start + 16].copy_from_slice(&generation.to_le_bytes());
    let out_len = out.len();
    let body = postcard::to_extend(op, std::mem::take(out)).expect("an Op always serializes");
    *out = body;
    let len = (out.len() - out_len) as u32;
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The ops a log holds for `generation`: its records from the start, up to
/// the first that is torn (its length runs past the end), stale (another
/// generation), fails its CRC or is all zeros. A record that passes its
/// CRC but is not an op is an error (the log was not written by this
/// code). A pure function of the bytes.
pub(crate) fn read_log(bytes: &[u8], generation: u64) -> Result<Vec<Op>, String> {
    let mut ops = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= RECORD_HEAD {
        let head = &bytes[at..at + RECORD_HEAD];
        let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        let record_generation = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
        if len == 0 || record_generation != generation || len > bytes.len() - at - RECORD_HEAD {
            break;
        }
        let checked = &bytes[at + 8..at + RECORD_HEAD + len];
        if crc32c::crc32c(checked) != crc {
            break;
        }
        let op = postcard::from_bytes(&checked[8..]).map_err(|why| e(format!("log record at {at}: {why}")))?;
        ops.push(op);
        at += RECORD_HEAD + len;
    }
    Ok(ops)
}

/// A log of generation 1 holding one op of each kind (a fuzzing seed).
pub(crate) fn sample_log() -> Vec<u8> {
    let mut out = Vec::new();
    for op in [
        Op::PutMailbox { name: "jobs".into(), meta: vec![0, 0, 0x80, 3, 1, 1] },
        Op::Push { name: "jobs".into(), key: 0, bytes: vec![2, 0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'] },
        Op::Pop { name: "jobs".into(), key: 0 },
        Op::RemoveMailbox { name: "jobs".into() },
    ] {
        encode_record(&mut out, 1, &op);
    }
    out
}

/// Write ops into the database in one transaction and commit it with
/// `durability`; with a generation, record it (a checkpoint).
fn apply<'a>(
    db: &Database,
    ops: impl Iterator<Item = &'a Op>,
    durability: Durability,
    generation: Option<u64>,
) -> Result<(), String> {
    let mut txn = db.begin_write().map_err(e)?;
    txn.set_durability(durability).map_err(e)?;
    {
        let mut boxes = txn.open_table(MAILBOXES).map_err(e)?;
        let mut msgs = txn.open_table(MESSAGES).map_err(e)?;
        for op in ops {
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
        if let Some(generation) = generation {
            txn.open_table(META).map_err(e)?.insert(GENERATION, generation).map_err(e)?;
        }
    }
    txn.commit().map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Capacity, Policy};

    fn ops() -> Vec<Op> {
        vec![
            Op::PutMailbox { name: "jobs".into(), meta: vec![1, 2, 3] },
            Op::Push { name: "jobs".into(), key: 7, bytes: vec![9; 100] },
            Op::Pop { name: "jobs".into(), key: 7 },
            Op::RemoveMailbox { name: "jobs".into() },
        ]
    }

    fn log_of(generation: u64, ops: &[Op]) -> Vec<u8> {
        let mut out = Vec::new();
        for op in ops {
            encode_record(&mut out, generation, op);
        }
        out
    }

    #[test]
    fn a_log_reads_back_its_ops_up_to_zeros_and_skips_other_generations() {
        let mut bytes = log_of(5, &ops());
        let end = bytes.len();
        bytes.resize(end + 4096, 0);
        assert_eq!(read_log(&bytes, 5).unwrap(), ops());
        assert_eq!(read_log(&bytes, 4).unwrap(), vec![]);
        // A newer generation written over the start of an older one: the
        // older records behind it are stale.
        let mut newer = log_of(6, &ops()[..1]);
        newer.extend_from_slice(&bytes[newer.len()..]);
        assert_eq!(read_log(&newer, 6).unwrap(), ops()[..1]);
    }

    /// A broker killed after any batch: what was committed (logged, or
    /// checkpointed when the log was full) is there after the restart, in
    /// order, and nothing popped comes back.
    #[test]
    fn every_committed_op_survives_a_crash_through_replay_and_checkpoints() {
        let dir = std::env::temp_dir().join(format!("conduit-store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let meta = Meta { owner: 0, group: 0, mode: 0o600, capacity: Capacity::Unbounded, policy: Policy::Any };
        let meta = postcard::to_stdvec(&meta).unwrap();
        let (mut seq, mut kept, mut generations) = (0u64, std::collections::VecDeque::new(), Vec::new());
        // Five lives: each commits batches of pushes and pops into a 4 KiB
        // log (so it fills and checkpoints several times), then dies
        // without its last checkpoint; the next opens what it left.
        for life in 0..5u64 {
            let store = Store::open(&dir).unwrap();
            let mut state = State::default();
            store.load(&mut state).unwrap();
            let found: Vec<u64> = state.mailboxes.get("m").map_or(vec![], |mb| {
                mb.queue.iter().map(|m| u64::from_le_bytes(m.data[..8].try_into().unwrap())).collect()
            });
            assert_eq!(found, Vec::from(kept.clone()), "life {life}");
            let mut log = store.log.lock().unwrap().take().unwrap();
            log.capacity = 4096;
            generations.push(log.generation);
            let (mut records, mut unapplied) = (Vec::new(), Unapplied::default());
            let mut next_key = state.mailboxes.get("m").map_or(0, |mb| mb.next_key);
            for _ in 0..37 + life * 2 {
                let mut batch = vec![(0, Op::PutMailbox { name: "m".into(), meta: meta.clone() })];
                for _ in 0..3 {
                    seq += 1;
                    let mut data = seq.to_le_bytes().to_vec();
                    data.resize(100, life as u8);
                    let stored = Stored { mtype: 1, data, sender_pid: 1, sender_uid: 0 };
                    batch.push((
                        0,
                        Op::Push { name: "m".into(), key: next_key, bytes: postcard::to_stdvec(&stored).unwrap() },
                    ));
                    kept.push_back(seq);
                    next_key += 1;
                }
                // Pop the oldest two (some logged in this life, some
                // checkpointed or replayed from an earlier one).
                for _ in 0..2 {
                    kept.pop_front();
                    let key = next_key - 1 - kept.len() as u64;
                    batch.push((0, Op::Pop { name: "m".into(), key }));
                }
                commit(&store.db, &mut log, batch, &mut records, &mut unapplied).unwrap();
            }
            // Killed: no final checkpoint (the committer never ran); what
            // the log holds past the last checkpoint is replayed.
            assert!(log.generation > generations[generations.len() - 1] + 2, "the log filled and was checkpointed");
            assert!(log.at > 0 && !unapplied.ops.is_empty(), "life {life} ends with ops only in the log");
            drop(log);
            drop(store);
        }
        // The broker's own files: no one else reads the messages.
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("durable.redb")), 0o600);
        assert_eq!(mode(&dir.join("durable.log")), 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_or_flipped_record_ends_the_log_there() {
        let bytes = log_of(1, &ops());
        let first = read_log(&bytes, 1).unwrap();
        for cut in 0..bytes.len() {
            let ops = read_log(&bytes[..cut], 1).unwrap();
            assert!(ops.len() < first.len() && first.starts_with(&ops), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x20;
            let ops = read_log(&flipped, 1).unwrap_or_default();
            assert!(ops.len() < first.len() && first.starts_with(&ops), "flip at {at}");
        }
    }
}
