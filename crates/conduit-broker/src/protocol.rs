//! What clients and the broker say to each other: typed conduit messages
//! over a connection to the broker's socket (rights ride along).

use std::time::{Duration, Instant};

use conduit::Sender;
use conduit::memory::queue::{Deadline, Queue, QueueError};
use serde::{Deserialize, Serialize};

/// Version of this protocol.
/// 2: deliveries are acknowledged (`Reply::Message::delivery`,
/// `Request::Settle`).
pub const PROTOCOL: u32 = 3;

/// A send right whose message type the broker does not know.
pub type AnyPort = Sender<Opaque>;

/// The message type of a port the broker only passes on.
#[derive(Debug, Serialize, Deserialize)]
pub struct Opaque;

/// How many messages a mailbox holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Capacity {
    /// At most this many (0: a send waits for a receiver).
    Bounded(u32),
    /// No limit but the owner's byte quota.
    Unbounded,
}

/// Who may receive from a mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Policy {
    /// One receiver at a time: the first to receive holds the mailbox until
    /// its connection ends.
    Exclusive,
    /// Any number; the broker picks one waiting receiver per message and
    /// tells the sender which.
    Any,
}

/// What a sender does when a mailbox is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnFull {
    /// Wait as long as it takes.
    Block,
    /// Wait at most this many milliseconds.
    Timeout(u64),
    /// Return at once with `Full`.
    NoWait,
    /// Leave the message with the broker, to be queued as soon as there is
    /// room (one such message per sender and mailbox, after Mach).
    Leave,
}

impl OnFull {
    /// How long a sender waits for room, from now (`Leave`: not at all —
    /// the message is left instead).
    pub fn wait(self) -> Deadline {
        match self {
            OnFull::Block => Deadline::Forever,
            OnFull::Timeout(ms) => Deadline::Until(Instant::now() + Duration::from_millis(ms)),
            OnFull::NoWait | OnFull::Leave => Deadline::Never,
        }
    }
}

/// How long a receiver waits for a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaitFor {
    /// As long as it takes.
    Forever,
    /// At most this many milliseconds.
    Millis(u64),
    /// Not at all.
    NoWait,
}

impl WaitFor {
    /// The same, from now.
    pub fn wait(self) -> Deadline {
        match self {
            WaitFor::Forever => Deadline::Forever,
            WaitFor::Millis(ms) => Deadline::Until(Instant::now() + Duration::from_millis(ms)),
            WaitFor::NoWait => Deadline::Never,
        }
    }
}

/// Rules for registering a name (after D-Bus well-known names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameFlags {
    /// Others may take the name from us with `replace_existing`.
    pub allow_replacement: bool,
    /// Take the name from its owner if the owner allows it.
    pub replace_existing: bool,
    /// If the name is taken (and cannot be replaced), wait in line for it.
    pub queue: bool,
}

/// Mailbox names that start with this are processes' inboxes
/// (`pid:1234`): only the broker makes them ([`Request::OpenInbox`]).
pub const INBOX_PREFIX: &str = "pid:";

/// Outcome of a registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NameReply {
    /// We own the name now.
    PrimaryOwner,
    /// We are in line for it.
    InQueue,
    /// It is taken and we did not queue.
    Exists,
    /// We already owned it.
    AlreadyOwner,
}

/// A change of a name's owner, sent to watchers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameEvent {
    /// The name.
    pub name: String,
    /// The new owner's pid, or `None` if nobody owns it now.
    pub owner: Option<u32>,
}

/// Options of a new mailbox.
///
/// Where its messages live follows from them: a bounded mailbox (1 ≤ n)
/// that is not durable keeps them in a queue in shared memory, which
/// clients allowed to read and write it use directly (a round trip in
/// microseconds); an unbounded one too, in a queue of 512 messages (its
/// front), with what does not fit kept by the broker behind it;
/// rendezvous (0) and durable mailboxes keep them in the broker, each
/// operation a request to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxOptions {
    /// How many messages it holds (default 64).
    pub capacity: Capacity,
    /// Who may receive.
    pub policy: Policy,
    /// Permission bits (like `ipc_perm`): read = receive, write = send.
    pub mode: u32,
    /// Survives a broker crash and restart.
    pub durable: bool,
    /// The largest message a shared-memory mailbox must take, in bytes
    /// (0, the default: what the capacity gives — its queue is 4 KiB a
    /// message, at least 256 KiB, and a message may take half of it, so
    /// 131,048 bytes for up to 64 messages). Sizes its queue to hold at
    /// least two such messages; at most the broker's limit (16 MiB by
    /// default). Mailboxes the broker keeps take anything up to that.
    pub max_message: u64,
}

impl Default for MailboxOptions {
    fn default() -> Self {
        MailboxOptions {
            capacity: Capacity::Bounded(64),
            policy: Policy::Any,
            mode: 0o600,
            durable: false,
            max_message: 0,
        }
    }
}

/// A request to the broker.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// First message on a connection.
    Hello {
        /// The client's [`PROTOCOL`].
        protocol: u32,
    },
    /// Create a mailbox.
    Create {
        /// Its name (1 to 255 bytes).
        name: String,
        /// Its capacity, policy, mode, durability and largest message.
        opts: MailboxOptions,
    },
    /// Remove a mailbox (its owner or root).
    Remove {
        /// The mailbox.
        name: String,
    },
    /// Give a mailbox to another owner (its owner or root).
    Chown {
        /// The mailbox.
        name: String,
        /// The new owner.
        uid: u32,
        /// The new group.
        gid: u32,
    },
    /// Send to a mailbox.
    Send {
        /// The mailbox.
        name: String,
        /// The message's type (System V `mtype`, ≥ 0).
        mtype: i64,
        /// Its bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// What to do if the mailbox is full.
        full: OnFull,
    },
    /// Receive from a mailbox.
    Recv {
        /// The mailbox.
        name: String,
        /// After System V `msgrcv`: 0 = the first message, > 0 = the first
        /// of that type, < 0 = the first of the lowest type ≤ |select|.
        select: i64,
        /// How long to wait for one.
        wait: WaitFor,
    },
    /// Open a mailbox to send to it or to receive from it (which claims an
    /// exclusive mailbox). The reply is its shared-memory queue, or
    /// `None`: use `Send`/`Recv` through the broker.
    Open {
        /// The mailbox.
        name: String,
        /// To receive (true) or to send (false).
        receive: bool,
    },
    /// Register a name for a port.
    Register {
        /// The name.
        name: String,
        /// The port (a send right) that lookups get.
        port: AnyPort,
        /// Replacement and queueing rules.
        flags: NameFlags,
    },
    /// The port registered under a name.
    Lookup {
        /// The name.
        name: String,
    },
    /// Give up a name (or our place in its queue).
    Release {
        /// The name.
        name: String,
    },
    /// Be told when a name's owner changes.
    Watch {
        /// The name.
        name: String,
        /// Where the events go.
        events: Sender<NameEvent>,
    },
    /// Every object the broker holds.
    List,
    /// Open this process's **inbox** for direct addressing: the mailbox
    /// `pid:PID` (see [`INBOX_PREFIX`]), unbounded, kept by the broker;
    /// anyone may send to it, only this process receive from it; the
    /// broker stamps each message's type with its sender's pid (as the
    /// kernel names it), and removes the inbox when this connection ends.
    OpenInbox,
    /// Settle a delivery. A delivery not settled when the connection ends
    /// is given back.
    Settle {
        /// `Reply::Message::delivery`.
        delivery: u64,
        /// True: the receiver has it; false: give it back to the mailbox.
        ack: bool,
        /// For a durable delivery: answer `Done` once the acknowledgement
        /// is on disk (otherwise there is no answer).
        confirm: bool,
    },
    /// Receive up to `max` messages: wait as `wait` says for the first,
    /// then take those there already (at most [`BATCH_BYTES`] in all,
    /// beyond the first). Answered by `Reply::Messages`, each held until
    /// settled (`SettleMany`).
    RecvBatch {
        /// The mailbox.
        name: String,
        /// As in `Recv`.
        select: i64,
        /// Messages at most (the broker takes at most 1024).
        max: u32,
        /// How long to wait for the first.
        wait: WaitFor,
    },
    /// Settle several deliveries alike: one answer (with `confirm`: once
    /// all their acknowledgements are on disk).
    SettleMany {
        /// `Delivered::delivery` of each.
        deliveries: Vec<u64>,
        /// As in `Settle`.
        ack: bool,
        /// As in `Settle`.
        confirm: bool,
    },
    /// Every mailbox's messages in and out since it was made
    /// (`Reply::Traffic`), for `conduit top`.
    Traffic,
    /// Run a mailbox request (`Open`, `Send`, `Recv`, `RecvBatch`,
    /// `Settle`, `SettleMany`) with the permissions of another user: how a
    /// bridge (`conduit bridge`) checks a remote caller where the mailbox
    /// lives. Root only. What the request holds (deliveries, an exclusive
    /// claim) belongs to this connection, as for its own requests.
    As {
        /// The caller's user.
        uid: u32,
        /// The caller's group.
        gid: u32,
        /// The request.
        request: Box<Request>,
    },
    /// Make this connection a bridge to other hosts (root only): the
    /// broker sends on `calls` the operations on the mailboxes this
    /// connection imports, and the bridge answers each with `Answer`.
    Bridge {
        /// This host's name on the bridge.
        host: String,
        /// Where the broker sends calls.
        calls: Sender<Forward>,
    },
    /// Make a remote mailbox known here under `name` (a bridge only):
    /// sends to it and receives from it are forwarded to the bridge. It
    /// goes when the bridge's connection ends or with `Unimport`.
    Import {
        /// The mailbox's name, here and on its host.
        name: String,
        /// The host it lives on.
        host: String,
        /// Its capacity there (`None`: unbounded), for listings.
        capacity: Option<u64>,
    },
    /// Forget an imported mailbox (a bridge only; its own imports).
    Unimport {
        /// The mailbox.
        name: String,
    },
    /// A bridge's answer to `Forward::call` (no reply).
    Answer {
        /// The call.
        call: u64,
        /// What the mailbox's host said.
        reply: Reply,
    },
    /// The hosts a bridge is connected to now, for listings (no reply).
    BridgePeers {
        /// Their names.
        hosts: Vec<String>,
    },
}

/// Who asked for a forwarded operation, as its broker knows them
/// (`SO_PEERCRED` there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Process id (on its host).
    pub pid: u32,
}

/// An operation on an imported mailbox, sent by the broker to the bridge
/// that imported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteOp {
    /// Send: answered by `Reply::Sent` or an error.
    Send {
        /// The mailbox.
        name: String,
        /// The message's type.
        mtype: i64,
        /// Its bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// What to do if it is full (never `Block`: the broker waits in
        /// slices of at most [`REMOTE_SLICE_MS`]).
        full: OnFull,
    },
    /// Receive and hold: answered by `Reply::Message` (its `delivery` is
    /// the remote host's token) or an error.
    Recv {
        /// The mailbox.
        name: String,
        /// As in `Request::Recv`.
        select: i64,
        /// As in `Request::Recv` (at most [`REMOTE_SLICE_MS`]).
        wait: WaitFor,
    },
    /// Settle a delivery of a `Recv` (not answered).
    Settle {
        /// `Reply::Message::delivery` of the remote host.
        token: u64,
        /// True: taken; false: give it back.
        ack: bool,
    },
}

/// An operation forwarded to a bridge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    /// What `Request::Answer` names (0: no answer expected).
    pub call: u64,
    /// Who asked.
    pub caller: Caller,
    /// What.
    pub op: RemoteOp,
}

/// The longest wait, in milliseconds, of one forwarded operation: a send
/// that may block, or a receive that may wait, longer is forwarded again
/// until its own limit (so that a caller that goes away stops waiting on
/// the remote host within this time).
pub const REMOTE_SLICE_MS: u64 = 1000;

/// Bytes of messages one `Reply::Messages` carries beyond its first.
pub const BATCH_BYTES: usize = 1 << 20;

/// One message of a `Reply::Messages`, held until settled.
#[derive(Debug, Serialize, Deserialize)]
pub struct Delivered {
    /// Its type.
    pub mtype: i64,
    /// Its bytes.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// The sender's pid.
    pub sender: u32,
    /// What `Request::SettleMany` names.
    pub delivery: u64,
    /// From a durable mailbox.
    pub durable: bool,
}

/// The broker's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// Greeting.
    Hello {
        /// The broker's pid.
        pid: u32,
        /// The broker's [`PROTOCOL`].
        protocol: u32,
    },
    /// Done.
    Done,
    /// A send was accepted.
    Sent {
        /// The pid of the waiting receiver it was handed to, if any.
        receiver: Option<u32>,
        /// Left with the broker, to be queued when there is room.
        deferred: bool,
    },
    /// A message, held for this connection until it settles `delivery`.
    Message {
        /// Its type.
        mtype: i64,
        /// Its bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// The sender's pid.
        sender: u32,
        /// What `Request::Settle` names.
        delivery: u64,
        /// From a durable mailbox: settle it with `confirm`.
        durable: bool,
    },
    /// A mailbox's queue, to use directly (or `None`, see `Request::Open`).
    Queue(Option<Queue>),
    /// A registration's outcome.
    Name(NameReply),
    /// A port.
    Port(AnyPort),
    /// The objects.
    Listing(Vec<ObjectInfo>),
    /// A refusal.
    Error(BrokerError),
    /// Messages (`Request::RecvBatch`), in the order they were taken.
    Messages(Vec<Delivered>),
    /// Answer to `Request::Traffic`, by mailbox name.
    Traffic(Vec<MailboxTraffic>),
}

/// A mailbox's messages in and out since it was made (or since the broker
/// started, for a durable one): what it accepted, and what receivers took
/// for good (acknowledged). A mailbox in shared memory counts in its
/// queue's header what clients send and take there directly — words its
/// writers can change: a count for a view, not an audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxTraffic {
    /// The mailbox.
    pub name: String,
    /// Messages accepted.
    pub sent: u64,
    /// Messages taken for good.
    pub received: u64,
}

/// One object, as `conduit ls` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// `mailbox`, `segment` (a mailbox's queue in shared memory: capacity
    /// and bytes in bytes), `name`, `peer`.
    pub kind: String,
    /// Its name or id.
    pub id: String,
    /// Owner uid.
    pub owner: u32,
    /// Owner gid.
    pub group: u32,
    /// Permission bits.
    pub mode: u32,
    /// Messages queued (mailboxes).
    pub depth: u64,
    /// Capacity (mailboxes; `None` = unbounded).
    pub capacity: Option<u64>,
    /// Bytes queued, or held.
    pub bytes: u64,
    /// Process ids involved (owner of a name, peers).
    pub pids: Vec<u32>,
}

/// Why the broker refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum BrokerError {
    /// No such object.
    #[error("no such {0}")]
    NotFound(String),
    /// It exists already.
    #[error("{0} exists already")]
    Exists(String),
    /// The caller's credentials do not allow it.
    #[error("permission denied: {0}")]
    Denied(String),
    /// The mailbox is full.
    #[error("the mailbox is full")]
    Full,
    /// Nothing to receive.
    #[error("the mailbox is empty")]
    Empty,
    /// The time limit passed.
    #[error("timed out")]
    Timeout,
    /// Another receiver holds an exclusive mailbox.
    #[error("another receiver holds this exclusive mailbox")]
    Busy,
    /// A per-user limit was reached.
    #[error("quota exceeded: {0}")]
    Quota(String),
    /// A malformed or meaningless request.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The message is larger than the mailbox (or the broker) takes.
    #[error("a message of {size} bytes exceeds the limit of {limit} bytes: {how}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The largest that fits.
        limit: u64,
        /// Whose limit it is, and how to raise it.
        how: String,
    },
    /// The mailbox lives on another host, and that host cannot be reached
    /// now (its bridge is gone or the link is down). A send that fails so
    /// may or may not have arrived.
    #[error("unreachable: {0}")]
    Unreachable(String),
}

impl BrokerError {
    /// The refusal for a failed operation on mailbox `name`'s queue.
    pub(crate) fn from_queue(name: &str, e: QueueError) -> BrokerError {
        match e {
            QueueError::Full => BrokerError::Full,
            QueueError::Empty => BrokerError::Empty,
            QueueError::Timeout => BrokerError::Timeout,
            QueueError::Closed => BrokerError::NotFound(format!("mailbox {name}")),
            QueueError::TooLarge { size, limit } => BrokerError::TooLarge {
                size: size as u64,
                limit: limit as u64,
                how: format!(
                    "mailbox {name}'s queue in shared memory takes messages up to {limit} bytes; \
                     create it with a larger --max-message (MailboxOptions::max_message)"
                ),
            },
            e => BrokerError::Invalid(format!("mailbox {name}: {e}")),
        }
    }
}

/// True when the peer at the other end of the connection `conn` (the
/// broker's client, or a client's broker) has hung up.
pub(crate) fn hung_up(conn: &impl std::os::fd::AsFd) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut pfd = [PollFd::new(conn, PollFlags::empty())];
    let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
    matches!(rustix::event::poll(&mut pfd, Some(&zero)), Ok(n) if n > 0)
        && pfd[0].revents().intersects(PollFlags::HUP | PollFlags::ERR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_bytes_are_a_length_then_the_bytes_as_a_sequence_of_u8_was() {
        #[derive(Serialize)]
        struct AsSequence {
            mtype: i64,
            data: Vec<u8>,
            sender: u32,
            delivery: u64,
            durable: bool,
        }
        let d = Delivered { mtype: 3, data: vec![1, 2, 3, 200], sender: 9, delivery: 5, durable: true };
        let bytes = postcard::to_stdvec(&d).unwrap();
        // mtype 3 (zigzag 6), length 4, the bytes, sender, delivery, true.
        assert_eq!(bytes, [6, 4, 1, 2, 3, 200, 9, 5, 1]);
        let seq = AsSequence { mtype: 3, data: vec![1, 2, 3, 200], sender: 9, delivery: 5, durable: true };
        assert_eq!(bytes, postcard::to_stdvec(&seq).unwrap());
        let back: Delivered = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(
            (back.mtype, back.data, back.sender, back.delivery, back.durable),
            (3, vec![1, 2, 3, 200], 9, 5, true)
        );
    }
}
