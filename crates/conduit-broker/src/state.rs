//! Everything the broker holds, behind one lock, and the rules applied to
//! each request. Waiting operations are tasks: they wait on one `Notify`
//! (mailboxes the broker keeps) or poll a shared queue.

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use conduit::Sender;
use conduit::memory::queue::{ClaimId, Deadline, Queue, QueueError, QueuedMessage};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::protocol::{
    AnyPort, BrokerError, Capacity, INBOX_PREFIX, MailboxOptions, MailboxTraffic, NameEvent, NameFlags, NameReply,
    ObjectInfo, OnFull, Policy, WaitFor, hung_up,
};
use crate::remote::Remotes;
use crate::store::Store;

/// Per-user limits: one client cannot exhaust the broker for others.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Mailboxes and names one user may own.
    pub max_objects: usize,
    /// Bytes one user's messages may occupy in mailboxes.
    pub max_bytes: u64,
    /// Connections one user may hold open (root: no per-user limit).
    pub max_connections: usize,
    /// Connections the broker holds at most, root's included.
    pub max_total_connections: usize,
    /// Largest message.
    pub max_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_objects: 1024,
            max_bytes: 256 << 20,
            max_connections: 256,
            max_total_connections: 16384,
            max_message: 16 << 20,
        }
    }
}

/// Who is asking: kernel-verified (`SO_PEERCRED` at accept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Connection id, unique for the broker's life.
    pub id: u64,
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Peer {
    fn is_root(&self) -> bool {
        self.uid == 0
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Msg {
    pub mtype: i64,
    pub data: Vec<u8>,
    pub sender_pid: u32,
    pub sender_uid: u32,
    /// Its key in the durable store (durable mailboxes).
    pub key: Option<u64>,
    /// A durable message's op in the store: it is handed out only once
    /// that op is committed (0: at once).
    pub seq: u64,
}

/// A message handed to a receiver that has not acknowledged it yet: it
/// goes back to its mailbox if the receiver's connection ends first.
#[derive(Debug)]
pub(crate) enum Held {
    /// Taken from a mailbox the broker keeps (back to its front).
    Kept { name: String, msg: Msg },
    /// Claimed in a mailbox's shared-memory queue by the broker.
    Claimed { name: String, queue: Arc<Queue>, id: ClaimId },
    /// Held on another host for a receiver here (an imported mailbox):
    /// its token there.
    Remote { name: String, token: u64 },
}

/// A receiver blocked on a mailbox, to whom a sender can hand a message.
struct Waiter {
    peer: Peer,
    select: i64,
    slot: u64,
    /// Its connection: a sender skips a waiter whose client hung up.
    conn: Arc<OwnedFd>,
}

pub(crate) struct Mailbox {
    pub owner: u32,
    pub group: u32,
    pub mode: u32,
    pub capacity: Capacity,
    pub policy: Policy,
    pub durable: bool,
    pub queue: VecDeque<Msg>,
    /// Messages left with the broker while full (one per sender).
    deferred: VecDeque<(u64, Msg)>,
    holder: Option<u64>,
    waiters: VecDeque<Waiter>,
    /// The queue in shared memory, for bounded (n ≥ 1), non-durable
    /// mailboxes: clients allowed to read and write map it and use it
    /// directly; the broker uses it for everyone else. `queue` above
    /// stays empty then — except for an unbounded mailbox, whose shared
    /// queue is its **front** ([`Queue::make_front`]): `queue` holds what
    /// did not fit, in order, moved in by a task (`moving`) as room
    /// appears.
    pub shared: Option<Arc<Queue>>,
    /// A task moves the messages behind the front into it.
    moving: bool,
    /// A process's inbox: its pid and the connection that opened it.
    pub inbox: Option<(u32, u64)>,
    /// A durable mailbox's next key in the store.
    pub next_key: u64,
    /// Messages the broker kept for it (in `queue`, deferred, or handed
    /// to a waiting receiver), ever; messages sent into `shared` are
    /// counted there.
    kept_in: u64,
    /// Of those, moved into the front of an unbounded mailbox (counted
    /// again by the front).
    moved: u64,
    /// Messages kept by the broker that receivers acknowledged.
    kept_out: u64,
}

impl Mailbox {
    /// An empty mailbox.
    pub(crate) fn new(owner: u32, group: u32, mode: u32, capacity: Capacity, policy: Policy, durable: bool) -> Self {
        Mailbox {
            owner,
            group,
            mode,
            capacity,
            policy,
            durable,
            queue: VecDeque::new(),
            deferred: VecDeque::new(),
            holder: None,
            waiters: VecDeque::new(),
            shared: None,
            moving: false,
            inbox: None,
            next_key: 0,
            kept_in: 0,
            moved: 0,
            kept_out: 0,
        }
    }

    /// Messages in and out, ever: the broker's counts, and its shared
    /// queue's (sent into it, taken from it).
    fn traffic(&self) -> (u64, u64) {
        let (q_in, q_out) = self.shared.as_ref().map_or((0, 0), |q| (q.sent(), q.sent().saturating_sub(q.len())));
        ((self.kept_in + q_in).saturating_sub(self.moved), self.kept_out + q_out)
    }

    fn depth(&self) -> u64 {
        self.queue.len() as u64 + self.shared.as_ref().map_or(0, |q| q.len())
    }

    fn full(&self) -> bool {
        match self.capacity {
            Capacity::Bounded(n) => self.queue.len() >= n as usize,
            Capacity::Unbounded => false,
        }
    }

    fn bytes(&self) -> u64 {
        let queued: u64 =
            self.queue.iter().chain(self.deferred.iter().map(|(_, m)| m)).map(|m| m.data.len() as u64).sum();
        queued + self.shared.as_ref().map_or(0, |q| q.bytes_used() as u64)
    }
}

/// The System V `msgrcv` rule: 0 = first, > 0 = first of that type,
/// < 0 = first of the lowest type ≤ |select|; among the messages whose
/// store op is committed (`seq` ≤ `ready`).
pub(crate) fn pick(queue: &VecDeque<Msg>, select: i64, ready: u64) -> Option<usize> {
    let ready = |m: &Msg| m.seq <= ready;
    match select {
        0 => queue.front().filter(|m| ready(m)).map(|_| 0),
        t if t > 0 => queue.iter().position(|m| m.mtype == t && ready(m)),
        t => {
            let limit = t.unsigned_abs();
            queue
                .iter()
                .enumerate()
                .filter(|(_, m)| m.mtype >= 0 && m.mtype.unsigned_abs() <= limit && ready(m))
                .min_by_key(|(i, m)| (m.mtype, *i))
                .map(|(i, _)| i)
        }
    }
}

fn matches(select: i64, mtype: i64) -> bool {
    match select {
        0 => true,
        t if t > 0 => mtype == t,
        t => mtype >= 0 && mtype.unsigned_abs() <= t.unsigned_abs(),
    }
}

struct Owner {
    peer: Peer,
    port: AnyPort,
    allow_replacement: bool,
}

#[derive(Default)]
struct NameEntry {
    owner: Option<Owner>,
    queue: VecDeque<Owner>,
    watchers: Vec<Sender<NameEvent>>,
}

#[derive(Default)]
pub(crate) struct State {
    pub mailboxes: HashMap<String, Mailbox>,
    names: HashMap<String, NameEntry>,
    slots: HashMap<u64, Option<Msg>>,
    next_slot: u64,
    pub peers: HashMap<u64, Peer>,
    /// Bytes charged to each uid (see `Rules::bytes_of`), kept as messages
    /// and queues come and go: a send's quota check does not walk every
    /// mailbox.
    charged: HashMap<u32, u64>,
}

impl State {
    fn charge(&mut self, uid: u32, bytes: u64) {
        *self.charged.entry(uid).or_default() += bytes;
    }

    fn uncharge(&mut self, uid: u32, bytes: u64) {
        if let Some(n) = self.charged.get_mut(&uid) {
            *n = n.saturating_sub(bytes);
            if *n == 0 {
                self.charged.remove(&uid);
            }
        }
    }

    /// Everything a mailbox charges (its messages to their senders, its
    /// shared queue to its owner), to take back when it goes.
    fn uncharge_mailbox(&mut self, mb: &Mailbox) {
        for m in mb.queue.iter().chain(mb.deferred.iter().map(|(_, x)| x)) {
            self.uncharge(m.sender_uid, m.data.len() as u64);
        }
        if let Some(q) = &mb.shared {
            self.uncharge(mb.owner, q.bytes() as u64);
        }
    }

    /// What a mailbox charges, when it comes (created, or loaded).
    pub(crate) fn charge_mailbox(&mut self, mb: &Mailbox) {
        for m in mb.queue.iter().chain(mb.deferred.iter().map(|(_, x)| x)) {
            self.charge(m.sender_uid, m.data.len() as u64);
        }
        if let Some(q) = &mb.shared {
            self.charge(mb.owner, q.bytes() as u64);
        }
    }
}

/// The broker's state and rules.
pub struct Rules {
    state: Arc<Mutex<State>>,
    /// Told of every change a waiting send or receive may be waiting for
    /// (the store's committer tells it too).
    changed: Arc<Notify>,
    limits: Limits,
    store: Option<Store>,
    /// Messages left with the broker for a full shared mailbox: (sender
    /// connection, mailbox), one each; a thread delivers each.
    leaving: Arc<Mutex<HashSet<(u64, String)>>>,
    /// Mailboxes of other hosts, and the bridges that reach them.
    pub(crate) remotes: Remotes,
}

/// Messages the shared-memory front of an unbounded mailbox holds (the
/// rest wait in the broker).
pub const UNBOUNDED_FRONT: u32 = 512;

/// Size of the shared-memory queue of a mailbox of `n` messages of at
/// most `max_message` bytes: 4 KiB a message, between 256 KiB and 16 MiB,
/// and at least room for two of the largest (a record may take half the
/// queue), in a power of two.
pub fn queue_bytes(n: u32, max_message: usize) -> usize {
    let per_message = (n as usize).saturating_mul(4096).clamp(256 << 10, 16 << 20);
    let largest = 2 * (max_message + conduit::memory::queue::MESSAGE_HEADER + 64);
    per_message.max(largest).next_power_of_two()
}

/// Run a queue operation on a client's behalf as a task: try it at once,
/// then again with a backoff (1 ms, doubling to 20 ms) until it succeeds,
/// `wait` runs out or the client hangs up. (The queue's own waiting
/// sleeps on a futex, which would hold a runtime thread; a client the
/// broker serves this way waits at most 20 ms longer than one that uses
/// the queue itself.)
/// `not_now` is what the operation says when it cannot happen yet (`Full`
/// for a send, `Empty` for a receive); a client holding the queue's lock
/// (`Busy`: perhaps a stopped process — the broker never waits on it)
/// counts as that too.
async fn poll_queue<T>(
    name: &str,
    wait: Deadline,
    conn: &OwnedFd,
    not_now: QueueError,
    mut op: impl FnMut() -> Result<T, QueueError>,
) -> Result<T, BrokerError> {
    let mut pause = Duration::from_millis(1);
    loop {
        match op() {
            Err(QueueError::Full | QueueError::Empty | QueueError::Busy) => {}
            r => return r.map_err(|e| BrokerError::from_queue(name, e)),
        }
        let left = match wait {
            Deadline::Never => return Err(BrokerError::from_queue(name, not_now)),
            Deadline::Forever => pause,
            Deadline::Until(t) => match t.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(pause),
                _ => return Err(BrokerError::Timeout),
            },
        };
        if hung_up(conn) {
            return Err(BrokerError::Invalid("the client is gone".into()));
        }
        tokio::time::sleep(left).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// What a send did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sent {
    /// The pid of the receiver it was handed to, if any.
    pub receiver: Option<u32>,
    /// Left with the broker (the mailbox was full).
    pub deferred: bool,
    /// Its store op, to be on disk before the sender hears (0: none).
    pub seq: u64,
}

/// What one look at a mailbox found for a send.
enum SendStep {
    Done(Sent),
    /// Its queue is in shared memory.
    Shared(Arc<Queue>),
    /// Wait for a change, until the instant if any.
    Wait(Option<Instant>),
}

/// A message from the front of an unbounded mailbox: claimed in its
/// queue, or taken from behind it.
enum FromFront {
    Claimed((QueuedMessage, ClaimId)),
    Behind(Msg),
}

/// What one look at a mailbox found for a receive.
enum RecvStep {
    Done(Result<Msg, BrokerError>),
    Shared(Arc<Queue>),
    Wait(Option<Instant>),
}

/// Wait for a change (`notified`, registered before the look that found
/// nothing), until `t` at most, and at most a second (so that a waiter
/// whose client hung up notices).
async fn pause(notified: std::pin::Pin<&mut Notified<'_>>, t: Option<Instant>) {
    let slice = Duration::from_secs(1);
    let left = t.map_or(slice, |t| t.saturating_duration_since(Instant::now()).min(slice));
    let _ = tokio::time::timeout(left, notified).await;
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The access a request needs.
#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
}

fn allowed(mb: &Mailbox, peer: &Peer, access: Access) -> bool {
    // An inbox: anyone sends; only its process receives (root included:
    // direct addressing names a process, not a user).
    if let Some((pid, _)) = mb.inbox {
        return match access {
            Access::Read => peer.pid == pid,
            Access::Write => true,
        };
    }
    if peer.is_root() {
        return true;
    }
    let bits = match access {
        Access::Read => 0o4,
        Access::Write => 0o2,
    };
    let class = if peer.uid == mb.owner {
        mb.mode >> 6
    } else if peer.gid == mb.group {
        mb.mode >> 3
    } else {
        mb.mode
    };
    class & bits != 0
}

/// A wait as the rules below use it: `None` = not at all, else until
/// the instant (if any).
fn deadline(wait: Deadline) -> Option<Option<Instant>> {
    match wait {
        Deadline::Never => None,
        Deadline::Forever => Some(None),
        Deadline::Until(t) => Some(Some(t)),
    }
}
impl Rules {
    /// Empty state (plus durable mailboxes from `store`).
    pub fn new(limits: Limits, store: Option<Store>) -> Result<Rules, String> {
        let mut state = State::default();
        let changed = Arc::new(Notify::new());
        if let Some(s) = &store {
            s.load(&mut state)?;
            s.start(Arc::clone(&changed))?;
        }
        Ok(Rules {
            state: Arc::new(Mutex::new(state)),
            changed,
            limits,
            store,
            leaving: Arc::default(),
            remotes: Remotes::default(),
        })
    }

    /// Wait until the store op `seq` is on disk (0: nothing to wait for).
    pub(crate) async fn stored(&self, seq: u64) -> Result<(), BrokerError> {
        match (&self.store, seq) {
            (Some(store), 1..) => store.committed(seq).await,
            _ => Ok(()),
        }
    }

    /// Messages with a store op up to this one may be handed out.
    fn ready(&self) -> u64 {
        self.store.as_ref().map_or(u64::MAX, Store::visible_upto)
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn objects_of(st: &State, uid: u32) -> usize {
        st.mailboxes.values().filter(|m| m.owner == uid).count()
            + st.names.values().filter(|n| n.owner.as_ref().is_some_and(|o| o.peer.uid == uid)).count()
    }

    /// Bytes charged to `uid`: its messages queued in the broker, and the
    /// shared-memory queues of the mailboxes it owns (kept as they change;
    /// debug builds check the count against a walk of every mailbox).
    fn bytes_of(st: &State, uid: u32) -> u64 {
        let kept = st.charged.get(&uid).copied().unwrap_or(0);
        debug_assert_eq!(kept, Self::bytes_walked(st, uid), "bytes charged to uid {uid}");
        kept
    }

    fn bytes_walked(st: &State, uid: u32) -> u64 {
        let queued: u64 = st
            .mailboxes
            .values()
            .flat_map(|m| m.queue.iter().chain(m.deferred.iter().map(|(_, x)| x)))
            .filter(|m| m.sender_uid == uid)
            .map(|m| m.data.len() as u64)
            .sum();
        let rings: u64 = st
            .mailboxes
            .values()
            .filter(|m| m.owner == uid)
            .filter_map(|m| m.shared.as_ref())
            .map(|q| q.bytes() as u64)
            .sum();
        queued + rings
    }

    /// A new connection, if the user's quota allows it.
    pub fn connect(&self, peer: Peer) -> Result<(), BrokerError> {
        let mut st = lock(&self.state);
        let open = st.peers.values().filter(|p| p.uid == peer.uid).count();
        if !peer.is_root() && open >= self.limits.max_connections {
            return Err(BrokerError::Quota(format!("{open} connections open for uid {}", peer.uid)));
        }
        if st.peers.len() >= self.limits.max_total_connections {
            return Err(BrokerError::Quota(format!("the broker holds {} connections, its limit", st.peers.len())));
        }
        st.peers.insert(peer.id, peer);
        Ok(())
    }

    /// A connection ended: its exclusive holds, waits and names go; the
    /// messages it left with the broker stay and are delivered.
    pub fn disconnect(&self, peer: &Peer) {
        self.remotes.disconnect(peer.id);
        let mut st = lock(&self.state);
        st.peers.remove(&peer.id);
        for mb in st.mailboxes.values_mut() {
            if mb.holder == Some(peer.id) {
                mb.holder = None;
            }
            mb.waiters.retain(|w| w.peer.id != peer.id);
        }
        let names: Vec<String> = st.names.keys().cloned().collect();
        for name in names {
            Self::drop_name_owner(&mut st, &name, peer.id);
        }
        // Its inbox goes with it (the pid may be reused).
        let gone: Vec<String> = st
            .mailboxes
            .iter()
            .filter(|(_, mb)| mb.inbox.is_some_and(|(_, conn)| conn == peer.id))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(mb) = st.mailboxes.remove(&name) {
                st.uncharge_mailbox(&mb);
            }
        }
        self.changed.notify_waiters();
    }

    /// Open the inbox of the process on this connection (`pid:PID`).
    pub fn open_inbox(&self, peer: &Peer) -> Result<(), BrokerError> {
        let name = format!("{INBOX_PREFIX}{}", peer.pid);
        let mut st = lock(&self.state);
        if let Some(mb) = st.mailboxes.get(&name) {
            return match mb.inbox {
                Some((_, conn)) if conn == peer.id => Ok(()),
                _ => Err(BrokerError::Exists(format!("the inbox of pid {} (opened on another connection)", peer.pid))),
            };
        }
        if !peer.is_root() && Self::objects_of(&st, peer.uid) >= self.limits.max_objects {
            return Err(BrokerError::Quota(format!("uid {} owns {} objects", peer.uid, self.limits.max_objects)));
        }
        let mut mb = Mailbox::new(peer.uid, peer.gid, 0o622, Capacity::Unbounded, Policy::Exclusive, false);
        mb.inbox = Some((peer.pid, peer.id));
        st.mailboxes.insert(name, mb);
        Ok(())
    }

    /// Is there a mailbox of this host named so?
    pub(crate) fn has_mailbox(&self, name: &str) -> bool {
        lock(&self.state).mailboxes.contains_key(name)
    }

    /// Create a mailbox; for a durable one, the store op to wait for.
    pub fn create(&self, peer: &Peer, name: String, opts: MailboxOptions) -> Result<u64, BrokerError> {
        let MailboxOptions { capacity, policy, mode, durable, max_message } = opts;
        if name.is_empty() || name.len() > 255 || mode > 0o777 {
            return Err(BrokerError::Invalid("a mailbox needs a name of 1..=255 bytes and a mode ≤ 0777".into()));
        }
        if name.starts_with(INBOX_PREFIX) {
            return Err(BrokerError::Invalid(format!(
                "names {INBOX_PREFIX}… are processes' inboxes, opened by Client::open_inbox"
            )));
        }
        if let Some(host) = self.remotes.host_of(&name) {
            return Err(BrokerError::Exists(format!("mailbox {name} (on host {host}, through the bridge)")));
        }
        let mut st = lock(&self.state);
        if st.mailboxes.contains_key(&name) {
            return Err(BrokerError::Exists(format!("mailbox {name}")));
        }
        if !peer.is_root() && Self::objects_of(&st, peer.uid) >= self.limits.max_objects {
            return Err(BrokerError::Quota(format!("uid {} owns {} objects", peer.uid, self.limits.max_objects)));
        }
        if durable && self.store.is_none() {
            return Err(BrokerError::Invalid("this broker has no data directory for durable mailboxes".into()));
        }
        let mut mb = Mailbox::new(peer.uid, peer.gid, mode, capacity, policy, durable);
        if max_message > self.limits.max_message as u64 {
            return Err(BrokerError::Invalid(format!(
                "a maximum message of {max_message} bytes; this broker takes messages up to {} bytes",
                self.limits.max_message
            )));
        }
        // Bounded mailboxes live in shared memory; so does the front of an
        // unbounded one (what does not fit waits in the broker).
        let front = match (capacity, durable) {
            (Capacity::Bounded(n @ 1..), false) => Some(n),
            (Capacity::Unbounded, false) => Some(UNBOUNDED_FRONT),
            _ => None,
        };
        if let Some(n) = front {
            let bytes = queue_bytes(n, max_message as usize) as u64;
            let used = Self::bytes_of(&st, peer.uid);
            if !peer.is_root() && used + bytes > self.limits.max_bytes {
                return Err(BrokerError::Quota(format!(
                    "uid {} has {used} bytes; a queue of {n} messages needs {bytes} more",
                    peer.uid
                )));
            }
            let q = Queue::new(n, bytes as usize).map_err(|e| BrokerError::Invalid(format!("no memory: {e}")))?;
            if capacity == Capacity::Unbounded {
                q.make_front();
            }
            mb.shared = Some(Arc::new(q));
        }
        let mut seq = 0;
        if let (true, Some(store)) = (durable, &self.store) {
            seq = store.put_mailbox(&name, &mb);
        }
        st.charge_mailbox(&mb);
        st.mailboxes.insert(name, mb);
        Ok(seq)
    }

    fn mailbox<'a>(st: &'a mut State, name: &str) -> Result<&'a mut Mailbox, BrokerError> {
        st.mailboxes.get_mut(name).ok_or_else(|| BrokerError::NotFound(format!("mailbox {name}")))
    }

    /// Remove a mailbox; for a durable one, the store op to wait for.
    pub fn remove(&self, peer: &Peer, name: &str) -> Result<u64, BrokerError> {
        let mut st = lock(&self.state);
        let mb = Self::mailbox(&mut st, name)?;
        if !peer.is_root() && mb.owner != peer.uid {
            return Err(BrokerError::Denied(format!("mailbox {name} belongs to uid {}", mb.owner)));
        }
        let mut seq = 0;
        if mb.durable
            && let Some(store) = &self.store
        {
            seq = store.remove_mailbox(name);
        }
        if let Some(mb) = st.mailboxes.remove(name) {
            st.uncharge_mailbox(&mb);
            if let Some(q) = mb.shared {
                q.close();
            }
        }
        self.changed.notify_waiters();
        Ok(seq)
    }

    /// A client asks for a mailbox's queue, to send (`receive` false) or to
    /// receive. The access is checked (and an exclusive mailbox's receive
    /// claimed) now; the queue itself is handed over only to a client that
    /// may both read and write it (it could do either with the memory);
    /// `None` means: go through the broker.
    pub fn open(&self, peer: &Peer, name: &str, receive: bool) -> Result<Option<Queue>, BrokerError> {
        let mut st = lock(&self.state);
        let mb = Self::mailbox(&mut st, name)?;
        let (access, verb) = if receive { (Access::Read, "receive from") } else { (Access::Write, "send to") };
        if !allowed(mb, peer, access) {
            return Err(BrokerError::Denied(format!("uid {} may not {verb} {name} (mode {:o})", peer.uid, mb.mode)));
        }
        if receive && mb.policy == Policy::Exclusive {
            match mb.holder {
                Some(h) if h != peer.id => return Err(BrokerError::Busy),
                _ => mb.holder = Some(peer.id),
            }
        }
        match &mb.shared {
            Some(q) if allowed(mb, peer, Access::Read) && allowed(mb, peer, Access::Write) => {
                q.try_clone().map(Some).map_err(|e| BrokerError::Invalid(format!("cannot share the queue: {e}")))
            }
            _ => Ok(None),
        }
    }

    /// Send into a shared queue on a client's behalf.
    async fn send_shared(
        &self,
        peer: &Peer,
        name: &str,
        q: Arc<Queue>,
        msg: Msg,
        full: OnFull,
        conn: &OwnedFd,
    ) -> Result<Sent, BrokerError> {
        let from = (msg.sender_pid, msg.sender_uid);
        match poll_queue(name, full.wait(), conn, QueueError::Full, || q.send_or_busy(msg.mtype, &msg.data, from)).await
        {
            Err(BrokerError::Full) if full == OnFull::Leave => {
                let key = (peer.id, name.to_string());
                if !self.leaving.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone()) {
                    return Err(BrokerError::Full);
                }
                let set = Arc::clone(&self.leaving);
                // A task keeps it until there is room, or the mailbox is
                // removed (the queue closes).
                tokio::spawn(async move {
                    let mut pause = Duration::from_millis(1);
                    while let Err(QueueError::Full | QueueError::Busy) = q.send_or_busy(msg.mtype, &msg.data, from) {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(20));
                    }
                    set.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                });
                Ok(Sent { deferred: true, ..Sent::default() })
            }
            r => r.map(|()| Sent::default()),
        }
    }

    /// Give a mailbox to another user; for a durable one, the store op to
    /// wait for.
    pub fn chown(&self, peer: &Peer, name: &str, uid: u32, gid: u32) -> Result<u64, BrokerError> {
        let mut st = lock(&self.state);
        let mb = Self::mailbox(&mut st, name)?;
        if !peer.is_root() && mb.owner != peer.uid {
            return Err(BrokerError::Denied(format!("mailbox {name} belongs to uid {}", mb.owner)));
        }
        mb.owner = uid;
        mb.group = gid;
        match (mb.durable, &self.store) {
            (true, Some(store)) => Ok(store.put_mailbox(name, mb)),
            _ => Ok(0),
        }
    }

    /// Send. Waits (as a task) as `full` says, while the client on `conn`
    /// is there.
    pub(crate) async fn send(
        &self,
        peer: &Peer,
        name: &str,
        mtype: i64,
        data: Vec<u8>,
        full: OnFull,
        conn: &Arc<OwnedFd>,
    ) -> Result<Sent, BrokerError> {
        if data.len() > self.limits.max_message {
            return Err(BrokerError::TooLarge {
                size: data.len() as u64,
                limit: self.limits.max_message as u64,
                how: "the broker's limit (conduit daemon takes no larger message)".into(),
            });
        }
        if mtype < 0 {
            return Err(BrokerError::Invalid("message types are ≥ 0".into()));
        }
        // In an inbox the type is the sender's pid, stamped here from the
        // kernel's word (SO_PEERCRED): what `recv_from_pid` selects on.
        let mtype = if name.starts_with(INBOX_PREFIX) { i64::from(peer.pid) } else { mtype };
        let until = deadline(full.wait());
        let mut msg = Some(Msg { mtype, data, sender_pid: peer.pid, sender_uid: peer.uid, key: None, seq: 0 });
        loop {
            // Registered before the state is looked at: no change is missed.
            let mut notified = std::pin::pin!(self.changed.notified());
            notified.as_mut().enable();
            match self.try_send(peer, name, &mut msg, full, until)? {
                SendStep::Done(r) => return Ok(r),
                SendStep::Shared(q) => {
                    let msg = msg.take().expect("not sent yet");
                    return self.send_shared(peer, name, q, msg, full, conn).await;
                }
                SendStep::Wait(t) => {
                    if hung_up(conn) {
                        return Err(BrokerError::Invalid("the client is gone".into()));
                    }
                    pause(notified, t).await;
                }
            }
        }
    }

    /// One look at the mailbox for a send (under the lock).
    fn try_send(
        &self,
        peer: &Peer,
        name: &str,
        slot: &mut Option<Msg>,
        full: OnFull,
        until: Option<Option<Instant>>,
    ) -> Result<SendStep, BrokerError> {
        let mut st = lock(&self.state);
        let mb = Self::mailbox(&mut st, name)?;
        if !allowed(mb, peer, Access::Write) {
            return Err(BrokerError::Denied(format!("uid {} may not send to {name} (mode {:o})", peer.uid, mb.mode)));
        }
        let front = mb.shared.as_ref().is_some_and(|q| q.is_front());
        if let Some(q) = mb.shared.clone().filter(|_| !front) {
            return Ok(SendStep::Shared(q));
        }
        let size = slot.as_ref().map_or(0, |m| m.data.len() as u64);
        let used = Self::bytes_of(&st, peer.uid);
        let mb = Self::mailbox(&mut st, name)?;
        if !peer.is_root() && used + size > self.limits.max_bytes {
            return Err(BrokerError::Quota(format!("uid {} has {used} bytes queued", peer.uid)));
        }
        if let Some(q) = mb.shared.clone().filter(|_| front) {
            // The front of an unbounded mailbox: into it if nothing waits
            // behind it and it has room, else behind it (also a message
            // larger than the front takes: receivers get it from there).
            // Never waits.
            let msg = slot.take().expect("not sent yet");
            if mb.queue.is_empty() {
                match q.send_or_busy(msg.mtype, &msg.data, (msg.sender_pid, msg.sender_uid)) {
                    Ok(()) => return Ok(SendStep::Done(Sent::default())),
                    Err(QueueError::Full | QueueError::Busy | QueueError::TooLarge { .. }) => {}
                    Err(e) => return Err(BrokerError::from_queue(name, e)),
                }
            }
            let (uid, len) = (msg.sender_uid, msg.data.len() as u64);
            mb.queue.push_back(msg);
            mb.kept_in += 1;
            q.set_behind(mb.queue.len());
            let start = !std::mem::replace(&mut mb.moving, true);
            st.charge(uid, len);
            drop(st);
            if start {
                self.start_mover(name, q);
            }
            return Ok(SendStep::Done(Sent::default()));
        }
        let mtype = slot.as_ref().map_or(0, |m| m.mtype);
        // A receiver waiting for a matching message takes it directly.
        // Receivers whose clients hung up are passed over (if one dies
        // after this look, its connection's end gives the message back).
        // Not a durable one: it goes into the queue, to be handed out once
        // it is on disk (until the receiver acknowledges it, a broker crash
        // must not lose it).
        let store = self.store.as_ref().filter(|_| mb.durable);
        if store.is_none()
            && let Some(i) = mb.waiters.iter().position(|w| matches(w.select, mtype) && !hung_up(&w.conn))
        {
            let msg = slot.take().expect("not sent yet");
            let w = mb.waiters.remove(i).expect("index found");
            mb.kept_in += 1;
            let pid = w.peer.pid;
            st.slots.insert(w.slot, Some(msg));
            self.changed.notify_waiters();
            return Ok(SendStep::Done(Sent { receiver: Some(pid), ..Sent::default() }));
        }
        // A durable rendezvous: queued (until on disk) for a receiver that
        // waits, one message per waiting receiver.
        let rendezvous = store.is_some()
            && mb.capacity == Capacity::Bounded(0)
            && mb.waiters.iter().filter(|w| matches(w.select, mtype) && !hung_up(&w.conn)).count() > mb.queue.len();
        if !mb.full() || rendezvous {
            let mut msg = slot.take().expect("not sent yet");
            let seq = store.map_or(0, |store| store.push(name, mb, &mut msg));
            let (uid, len) = (msg.sender_uid, msg.data.len() as u64);
            mb.queue.push_back(msg);
            mb.kept_in += 1;
            st.charge(uid, len);
            self.changed.notify_waiters();
            return Ok(SendStep::Done(Sent { seq, ..Sent::default() }));
        }
        if full == OnFull::Leave {
            if mb.deferred.iter().any(|(id, _)| *id == peer.id) {
                return Err(BrokerError::Full);
            }
            let msg = slot.take().expect("not sent yet");
            let (uid, len) = (msg.sender_uid, msg.data.len() as u64);
            mb.deferred.push_back((peer.id, msg));
            mb.kept_in += 1;
            st.charge(uid, len);
            return Ok(SendStep::Done(Sent { deferred: true, ..Sent::default() }));
        }
        match until {
            None => Err(BrokerError::Full),
            Some(t) if t.is_some_and(|t| Instant::now() >= t) => Err(BrokerError::Timeout),
            Some(t) => Ok(SendStep::Wait(t)),
        }
    }

    /// Move the messages behind the front of an unbounded mailbox into it
    /// as room appears, in order: a task that looks again after 1 ms,
    /// doubling to 20 ms, and ends when none are left (or the mailbox is
    /// gone, or made again). Called without the state lock held.
    fn start_mover(&self, name: &str, q: Arc<Queue>) {
        let (state, name) = (Arc::clone(&self.state), name.to_string());
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime (the broker is stopping): no mover; the next send
            // behind the front starts one, should there be a next.
            if let Some(mb) = lock(&state).mailboxes.get_mut(&name) {
                mb.moving = false;
            }
            return;
        };
        drop(rt.spawn(async move {
            let mut pause = Duration::from_millis(1);
            loop {
                match Self::move_in(&state, &name, &q) {
                    None => return,
                    Some(true) => pause = Duration::from_millis(1),
                    Some(false) => pause = (pause * 2).min(Duration::from_millis(20)),
                }
                tokio::time::sleep(pause).await;
            }
        }));
    }

    /// Move what fits from behind the front into it; `None` when the
    /// mover's work is done, else whether anything moved.
    fn move_in(state: &Mutex<State>, name: &str, q: &Arc<Queue>) -> Option<bool> {
        let mut st = lock(state);
        let mb = st.mailboxes.get_mut(name).filter(|mb| mb.shared.as_ref().is_some_and(|s| Arc::ptr_eq(s, q)))?;
        let mut freed = Vec::new();
        let mut stuck = false;
        while let Some(m) = mb.queue.front() {
            match q.send_or_busy(m.mtype, &m.data, (m.sender_pid, m.sender_uid)) {
                Ok(()) => {
                    let m = mb.queue.pop_front().expect("a front");
                    mb.moved += 1;
                    freed.push((m.sender_uid, m.data.len() as u64));
                }
                Err(QueueError::Full | QueueError::Busy) => break,
                // Larger than the queue takes: it stays behind, for a
                // receiver through the broker (and so do those after it).
                Err(QueueError::TooLarge { .. }) => {
                    stuck = true;
                    break;
                }
                Err(e) => {
                    // Closed, or written into by a hostile process: what is
                    // behind stays there, for receivers through the broker.
                    tracing::warn!(mailbox = name, error = %e, "cannot move messages into a mailbox's queue");
                    stuck = true;
                    break;
                }
            }
        }
        q.set_behind(mb.queue.len());
        let done = mb.queue.is_empty() || stuck;
        if done {
            mb.moving = false;
        }
        let moved = !freed.is_empty();
        for (uid, len) in freed {
            st.uncharge(uid, len);
        }
        (!done).then_some(moved)
    }

    /// The front of an unbounded mailbox had no message matching
    /// `select`: look again under the lock (the mover moves only under
    /// it, so an older match cannot slip in meanwhile), then behind it.
    fn take_behind(&self, name: &str, q: &Arc<Queue>, select: i64) -> Result<FromFront, QueueError> {
        let mut st = lock(&self.state);
        let Some(mb) = st.mailboxes.get_mut(name).filter(|mb| mb.shared.as_ref().is_some_and(|s| Arc::ptr_eq(s, q)))
        else {
            return Err(QueueError::Empty);
        };
        match q.claim_or_busy(select) {
            Err(QueueError::Empty) => {}
            r => return r.map(FromFront::Claimed),
        }
        let i = pick(&mb.queue, select, u64::MAX).ok_or(QueueError::Empty)?;
        let msg = mb.queue.remove(i).expect("picked");
        q.set_behind(mb.queue.len());
        st.uncharge(msg.sender_uid, msg.data.len() as u64);
        Ok(FromFront::Behind(msg))
    }

    /// Move messages left with the broker into the queue while there is room.
    fn admit_deferred(&self, mb: &mut Mailbox, name: &str) {
        while !mb.full() && mb.capacity != Capacity::Bounded(0) {
            let Some((_, mut msg)) = mb.deferred.pop_front() else { break };
            if mb.durable
                && let Some(store) = &self.store
            {
                store.push(name, mb, &mut msg);
            }
            mb.queue.push_back(msg);
        }
    }

    /// Settle a delivery: `ack` takes it for good (a durable message
    /// leaves the disk: the store op returned), otherwise it goes back to
    /// its mailbox's front (or back into its queue), for the next receiver.
    pub(crate) fn settle(&self, held: Held, ack: bool) -> u64 {
        match held {
            Held::Remote { name, token } => self.remotes.settle(&name, token, ack),
            Held::Claimed { name, queue, id } => match queue.settle_or_busy(id, ack) {
                Ok(()) | Err(QueueError::Closed) => {}
                Err(QueueError::Busy) => {
                    // A client holds the queue's lock: settle from a task
                    // that looks again, never blocking a runtime thread
                    // (without a runtime, at shutdown: wait for the lock).
                    match tokio::runtime::Handle::try_current() {
                        Ok(rt) => drop(rt.spawn(async move {
                            let mut pause = Duration::from_millis(1);
                            while let Err(QueueError::Busy) = queue.settle_or_busy(id, ack) {
                                tokio::time::sleep(pause).await;
                                pause = (pause * 2).min(Duration::from_millis(20));
                            }
                        })),
                        Err(_) => drop(if ack { queue.ack(id) } else { queue.give_back(id) }),
                    }
                }
                Err(e) => tracing::warn!(mailbox = name, error = %e, ack, "cannot settle a delivery"),
            },
            Held::Kept { name, mut msg } => {
                let mut st = lock(&self.state);
                let Some(mb) = st.mailboxes.get_mut(&name) else { return 0 };
                if ack {
                    mb.kept_out += 1;
                    return match (mb.durable, &self.store, msg.key) {
                        (true, Some(store), Some(key)) => store.pop(&name, key),
                        _ => 0,
                    };
                }
                // It was handed out, so it is on disk: at once for the next.
                msg.seq = 0;
                let (uid, len) = (msg.sender_uid, msg.data.len() as u64);
                mb.queue.push_front(msg);
                // Taken from behind a front: back behind it, first.
                let mover = match mb.shared.clone() {
                    Some(q) => {
                        q.set_behind(mb.queue.len());
                        (!std::mem::replace(&mut mb.moving, true)).then_some(q)
                    }
                    None => None,
                };
                st.charge(uid, len);
                drop(st);
                if let Some(q) = mover {
                    self.start_mover(&name, q);
                }
                self.changed.notify_waiters();
            }
        }
        0
    }

    /// Receive: the message, and what to settle once the receiver
    /// acknowledged it (or its connection ended). Waits (as a task) as
    /// `wait` says, while the client on `conn` is there.
    pub(crate) async fn recv(
        &self,
        peer: &Peer,
        name: &str,
        select: i64,
        wait: WaitFor,
        conn: &Arc<OwnedFd>,
    ) -> Result<(Msg, Held), BrokerError> {
        let wait = wait.wait();
        let until = deadline(wait);
        let mut slot: Option<u64> = None;
        let out = loop {
            let mut notified = std::pin::pin!(self.changed.notified());
            notified.as_mut().enable();
            match self.try_recv(peer, name, select, until, &mut slot, conn) {
                RecvStep::Done(r) => break r,
                RecvStep::Shared(q) if slot.is_none() => {
                    // From the queue; for the front of an unbounded
                    // mailbox, from behind it when the queue has nothing
                    // that matches.
                    let got = poll_queue(name, wait, conn, QueueError::Empty, || match q.claim_or_busy(select) {
                        Err(QueueError::Empty) if q.is_front() => self.take_behind(name, &q, select),
                        r => r.map(FromFront::Claimed),
                    })
                    .await?;
                    let (m, id) = match got {
                        FromFront::Claimed(claimed) => claimed,
                        FromFront::Behind(msg) => return Ok((msg.clone(), Held::Kept { name: name.to_string(), msg })),
                    };
                    let msg = Msg {
                        mtype: m.mtype,
                        data: m.data,
                        sender_pid: m.sender_pid,
                        sender_uid: m.sender_uid,
                        key: None,
                        seq: 0,
                    };
                    return Ok((msg, Held::Claimed { name: name.to_string(), queue: q, id }));
                }
                // The mailbox was removed and made again, shared, while
                // we waited: start over without our place in the old one.
                RecvStep::Shared(_) => break Err(BrokerError::NotFound(format!("mailbox {name}"))),
                RecvStep::Wait(t) => {
                    if hung_up(conn) {
                        break Err(BrokerError::Invalid("the client is gone".into()));
                    }
                    pause(notified, t).await;
                }
            }
        };
        let kept = |msg: Msg| (msg.clone(), Held::Kept { name: name.to_string(), msg });
        if let Some(id) = slot {
            // Withdraw; a message handed to us at the last moment is ours.
            let mut st = lock(&self.state);
            if let Some(mb) = st.mailboxes.get_mut(name) {
                mb.waiters.retain(|w| w.slot != id);
            }
            if let Some(Some(msg)) = st.slots.remove(&id) {
                return Ok(kept(msg));
            }
        }
        out.map(kept)
    }

    /// One look at the mailbox for a receive (under the lock); on the first
    /// that must wait, a place among its waiters (`slot`).
    fn try_recv(
        &self,
        peer: &Peer,
        name: &str,
        select: i64,
        until: Option<Option<Instant>>,
        slot: &mut Option<u64>,
        conn: &Arc<OwnedFd>,
    ) -> RecvStep {
        let mut st = lock(&self.state);
        if let Some(id) = *slot
            && let Some(Some(_)) = st.slots.get(&id)
        {
            let msg = st.slots.remove(&id).flatten().expect("looked");
            *slot = None;
            if let Some(mb) = st.mailboxes.get_mut(name) {
                mb.waiters.retain(|w| w.slot != id);
            }
            return RecvStep::Done(Ok(msg));
        }
        let mb = match Self::mailbox(&mut st, name) {
            Ok(mb) => mb,
            Err(e) => return RecvStep::Done(Err(e)),
        };
        if !allowed(mb, peer, Access::Read) {
            return RecvStep::Done(Err(BrokerError::Denied(format!(
                "uid {} may not receive from {name} (mode {:o})",
                peer.uid, mb.mode
            ))));
        }
        if mb.policy == Policy::Exclusive {
            match mb.holder {
                Some(h) if h != peer.id => return RecvStep::Done(Err(BrokerError::Busy)),
                _ => mb.holder = Some(peer.id),
            }
        }
        if let Some(q) = mb.shared.clone() {
            return RecvStep::Shared(q);
        }
        if let Some(i) = pick(&mb.queue, select, self.ready()) {
            let msg = mb.queue.remove(i).expect("picked");
            self.admit_deferred(mb, name);
            st.uncharge(msg.sender_uid, msg.data.len() as u64);
            self.changed.notify_waiters();
            return RecvStep::Done(Ok(msg));
        }
        let Some(t) = until else { return RecvStep::Done(Err(BrokerError::Empty)) };
        if slot.is_none() {
            let id = st.next_slot;
            st.next_slot += 1;
            st.slots.insert(id, None);
            *slot = Some(id);
            let mb = Self::mailbox(&mut st, name).expect("looked up above");
            mb.waiters.push_back(Waiter { peer: *peer, select, slot: id, conn: Arc::clone(conn) });
            // A rendezvous sender may be waiting for us.
            self.changed.notify_waiters();
        }
        if t.is_some_and(|t| Instant::now() >= t) {
            return RecvStep::Done(Err(BrokerError::Timeout));
        }
        RecvStep::Wait(t)
    }

    // ------------------------------------------------------------ names

    /// Tell the watchers. One that does not read its events (its socket
    /// full) is dropped — its receiver sees `Disconnected` — rather than
    /// queued for without bound in the broker.
    fn notify(entry: &mut NameEntry, name: &str) {
        let event = NameEvent { name: name.to_string(), owner: entry.owner.as_ref().map(|o| o.peer.pid) };
        entry.watchers.retain(|w| w.send_now(event.clone()).is_ok());
    }

    fn drop_name_owner(st: &mut State, name: &str, peer_id: u64) {
        let Some(entry) = st.names.get_mut(name) else { return };
        entry.queue.retain(|o| o.peer.id != peer_id);
        if entry.owner.as_ref().is_some_and(|o| o.peer.id == peer_id) {
            entry.owner = entry.queue.pop_front();
            Self::notify(entry, name);
        }
        if entry.owner.is_none() && entry.watchers.is_empty() {
            st.names.remove(name);
        }
    }

    pub fn register(
        &self,
        peer: &Peer,
        name: String,
        port: AnyPort,
        flags: NameFlags,
    ) -> Result<NameReply, BrokerError> {
        if name.is_empty() || name.len() > 255 {
            return Err(BrokerError::Invalid("a name has 1..=255 bytes".into()));
        }
        let mut st = lock(&self.state);
        if !peer.is_root() && Self::objects_of(&st, peer.uid) >= self.limits.max_objects {
            return Err(BrokerError::Quota(format!("uid {} owns {} objects", peer.uid, self.limits.max_objects)));
        }
        let entry = st.names.entry(name.clone()).or_default();
        let me = Owner { peer: *peer, port, allow_replacement: flags.allow_replacement };
        let reply = match &entry.owner {
            None => {
                entry.owner = Some(me);
                NameReply::PrimaryOwner
            }
            Some(o) if o.peer.id == peer.id => {
                entry.owner = Some(me);
                NameReply::AlreadyOwner
            }
            Some(o) if flags.replace_existing && o.allow_replacement => {
                let old = entry.owner.replace(me).expect("owned");
                if old.allow_replacement {
                    // The previous owner goes to the head of the line.
                    entry.queue.push_front(old);
                }
                NameReply::PrimaryOwner
            }
            Some(_) if flags.queue => {
                entry.queue.push_back(me);
                NameReply::InQueue
            }
            Some(_) => NameReply::Exists,
        };
        if reply == NameReply::PrimaryOwner {
            Self::notify(entry, &name);
        }
        Ok(reply)
    }

    pub fn lookup(&self, name: &str) -> Result<AnyPort, BrokerError> {
        let st = lock(&self.state);
        st.names
            .get(name)
            .and_then(|e| e.owner.as_ref())
            .map(|o| o.port.clone())
            .ok_or_else(|| BrokerError::NotFound(format!("name {name}")))
    }

    pub fn release(&self, peer: &Peer, name: &str) -> Result<(), BrokerError> {
        let mut st = lock(&self.state);
        let entry = st.names.get(name).ok_or_else(|| BrokerError::NotFound(format!("name {name}")))?;
        let mine = entry.owner.as_ref().is_some_and(|o| o.peer.id == peer.id)
            || entry.queue.iter().any(|o| o.peer.id == peer.id);
        if mine {
            Self::drop_name_owner(&mut st, name, peer.id);
            return Ok(());
        }
        // Removal by an administrator (`conduit rm name`): root, or a
        // process of the owner's user, takes the name from its owner.
        let owner = entry.owner.as_ref().map(|o| o.peer);
        match owner {
            Some(o) if peer.is_root() || o.uid == peer.uid => Self::drop_name_owner(&mut st, name, o.id),
            _ => return Err(BrokerError::Denied(format!("name {name} is not ours"))),
        }
        Ok(())
    }

    /// Add a watcher of `name`'s owner (told the owner now). It must be
    /// an unbounded socket channel (events are sent without waiting).
    pub fn watch(&self, name: String, events: Sender<NameEvent>) -> Result<(), BrokerError> {
        if events.is_shared_memory() || events.capacity().is_some() {
            return Err(BrokerError::Invalid("a watcher is an unbounded socket channel (conduit::unbounded)".into()));
        }
        let mut st = lock(&self.state);
        let entry = st.names.entry(name.clone()).or_default();
        let now = NameEvent { name, owner: entry.owner.as_ref().map(|o| o.peer.pid) };
        if events.send_now(now).is_ok() {
            entry.watchers.push(events);
        }
        Ok(())
    }

    /// Every mailbox's messages in and out, ever.
    pub fn traffic(&self) -> Vec<MailboxTraffic> {
        let st = lock(&self.state);
        let mut out: Vec<MailboxTraffic> = st
            .mailboxes
            .iter()
            .map(|(name, mb)| {
                let (sent, received) = mb.traffic();
                MailboxTraffic { name: name.clone(), sent, received }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn list(&self) -> Vec<ObjectInfo> {
        let st = lock(&self.state);
        let mut out: Vec<ObjectInfo> = st
            .mailboxes
            .iter()
            .map(|(name, mb)| ObjectInfo {
                kind: "mailbox".into(),
                id: name.clone(),
                owner: mb.owner,
                group: mb.group,
                mode: mb.mode,
                depth: mb.depth(),
                capacity: match mb.capacity {
                    Capacity::Bounded(n) => Some(n as u64),
                    Capacity::Unbounded => None,
                },
                bytes: mb.bytes(),
                pids: mb.waiters.iter().map(|w| w.peer.pid).collect(),
            })
            .collect();
        // The shared memory behind bounded mailboxes: the broker holds it.
        out.extend(st.mailboxes.iter().filter_map(|(name, mb)| {
            let q = mb.shared.as_ref()?;
            Some(ObjectInfo {
                kind: "segment".into(),
                id: format!("mailbox/{name}"),
                owner: mb.owner,
                group: mb.group,
                mode: mb.mode,
                depth: 0,
                capacity: Some(q.bytes() as u64),
                bytes: q.bytes_used() as u64,
                pids: vec![],
            })
        }));
        out.extend(st.names.iter().filter_map(|(name, e)| {
            let o = e.owner.as_ref()?;
            Some(ObjectInfo {
                kind: "name".into(),
                id: name.clone(),
                owner: o.peer.uid,
                group: o.peer.gid,
                mode: 0o644,
                depth: e.queue.len() as u64,
                capacity: None,
                bytes: 0,
                pids: std::iter::once(o.peer.pid).chain(e.queue.iter().map(|q| q.peer.pid)).collect(),
            })
        }));
        out.extend(st.peers.values().map(|p| ObjectInfo {
            kind: "peer".into(),
            id: p.id.to_string(),
            owner: p.uid,
            group: p.gid,
            mode: 0,
            depth: 0,
            capacity: None,
            bytes: 0,
            pids: vec![p.pid],
        }));
        drop(st);
        out.extend(self.remotes.list());
        out.sort_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
        out
    }
}
