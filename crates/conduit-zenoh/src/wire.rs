//! What bridges say to each other over Zenoh: postcard, like the broker's
//! own protocol. Decoders are pure functions over bytes that check every
//! size against this bridge's limit first (`fuzz`-style hostile input: a
//! peer bridge may send anything; a bad payload is a typed error and the
//! bridge goes on).
//!
//! Key expressions (`HOST` is a bridge's `--name`):
//!
//! | key | what |
//! |---|---|
//! | `conduit/alive/HOST` | the bridge's liveliness token: its death or a cut link is seen by the others |
//! | `conduit/bridge/HOST/exports` | queryable: the mailboxes HOST exports ([`Exports`]) |
//! | `conduit/bridge/HOST/call` | queryable: an operation on one of them ([`Call`] → [`Answers`]) |
//! | `conduit/bridge/HOST/rpc-open` | queryable: connect to an RPC service registered there ([`RpcOpen`] → [`Answers`]) |
//! | `conduit/bridge/HOST/rpc` | subscriber: calls, answers and ends of the RPC connections relayed with HOST ([`RpcFrame`]) |
//! | `conduit/bridge/HOST/port` | queryable: a message for the port registered under a name there ([`PortSend`] → [`Answers`]) |

use conduit_broker::protocol::{BrokerError, Caller, RemoteOp};
use serde::{Deserialize, Serialize};

/// The liveliness key of a bridge.
pub fn alive_key(host: &str) -> String {
    format!("conduit/alive/{host}")
}

/// Every bridge's liveliness key.
pub const ALIVE_ALL: &str = "conduit/alive/*";

/// The host a liveliness key names.
pub fn alive_host(key: &str) -> Option<&str> {
    key.strip_prefix("conduit/alive/")
}

/// The key a bridge answers calls on.
pub fn call_key(host: &str) -> String {
    format!("conduit/bridge/{host}/call")
}

/// The key a bridge answers its export list on.
pub fn exports_key(host: &str) -> String {
    format!("conduit/bridge/{host}/exports")
}

/// The key a bridge takes RPC connections on.
pub fn rpc_open_key(host: &str) -> String {
    format!("conduit/bridge/{host}/rpc-open")
}

/// The key a bridge takes RPC frames on.
pub fn rpc_key(host: &str) -> String {
    format!("conduit/bridge/{host}/rpc")
}

/// The key a bridge takes messages for its names' ports on.
pub fn port_key(host: &str) -> String {
    format!("conduit/bridge/{host}/port")
}

/// Every bridge's export list.
pub const EXPORTS_ALL: &str = "conduit/bridge/*/exports";

/// Is `host` usable as a bridge's name (one key-expression chunk)?
pub fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 64
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// One operation, and who asked for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Who asked, as the calling host's broker knows them.
    pub caller: Caller,
    /// What.
    pub op: RemoteOp,
}

/// Operations on mailboxes of the answering host, run there in order.
/// Sends to one mailbox travel together (up to [`MAX_OPS`], or
/// [`BATCH_BYTES`] beyond the first), so that a stream of sends costs one
/// round trip per batch, not per message, and stays in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The calling bridge's host.
    pub origin: String,
    /// The calling bridge's incarnation (random at its start): ids of an
    /// earlier life are not duplicates of this one's.
    pub session: u64,
    /// The call's id in that incarnation: a retry carries the same id and
    /// is answered from the first execution's answers, never run twice.
    pub id: u64,
    /// The operations (at least one).
    pub ops: Vec<Op>,
}

/// Operations a call carries at most.
pub const MAX_OPS: usize = 256;

/// Bytes of messages a call carries beyond its first operation's.
pub const BATCH_BYTES: usize = 1 << 20;

/// The answer to one operation of a [`Call`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// Sent (`Reply::Sent`).
    Sent {
        /// A receiver it was handed to directly, by pid on the mailbox's host.
        receiver: Option<u32>,
    },
    /// A message, held on the mailbox's host until settled by `token`.
    Message {
        /// Its type.
        mtype: i64,
        /// Its bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// The sender's pid on the mailbox's host.
        sender: u32,
        /// What `RemoteOp::Settle` names.
        token: u64,
        /// From a durable mailbox.
        durable: bool,
    },
    /// Settled.
    Done,
    /// The mailbox's broker refused.
    Refused(BrokerError),
}

/// What a host answers to a [`Call`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answers {
    /// One answer per operation, in order.
    All(Vec<Answer>),
    /// The same call is still running there: ask again shortly.
    Busy,
    /// The call itself was refused (malformed); none of it ran.
    Refused(BrokerError),
}

/// A mailbox a bridge exports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    /// Its name.
    pub name: String,
    /// Its capacity (`None`: unbounded).
    pub capacity: Option<u64>,
}

/// A bridge's export list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exports {
    /// The bridge's host.
    pub host: String,
    /// Its mailboxes.
    pub mailboxes: Vec<Export>,
    /// Its names: RPC services (the matchmaker's connect handshake:
    /// `Client::serve_rpc` / `connect_rpc`) and plain ports
    /// (`Client::register` / `lookup`) alike — the importing bridge tells
    /// them apart by what arrives on its port for the name.
    pub services: Vec<String>,
}

/// Open an RPC connection to the service `name` of the answering host,
/// relayed as `session` of `origin` (answered `Answers::All([Done])`, or
/// `Answers::Refused`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcOpen {
    /// The calling bridge's host.
    pub origin: String,
    /// The connection's number there.
    pub session: u64,
    /// The service's name.
    pub name: String,
}

/// A call relayed to a service on another host: `conduit::rpc::Call`
/// without rights (they are descriptors: they cannot cross, and a call
/// that holds some is answered `BadArguments` where it was made).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcCall {
    /// As `Call::client`.
    pub client: u64,
    /// As `Call::id`.
    pub id: u64,
    /// As `Call::done_below`.
    pub done_below: u64,
    /// As `Call::method`.
    pub method: String,
    /// As `Call::budget_us`.
    pub budget_us: Option<u64>,
    /// As `Call::args`.
    #[serde(with = "serde_bytes")]
    pub args: Vec<u8>,
}

/// An answer relayed back (`conduit::rpc::Answer` without rights).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcAnswer {
    /// As `Answer::id`.
    pub id: u64,
    /// As `Answer::outcome`.
    pub outcome: conduit::rpc::Outcome,
}

/// What travels on a relayed RPC connection, both ways.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcFrame {
    /// A call, client's host → service's host.
    Call {
        /// The client's host.
        origin: String,
        /// Its connection number.
        session: u64,
        /// The call.
        call: RpcCall,
    },
    /// An answer, service's host → client's host.
    Answer {
        /// The service's host.
        origin: String,
        /// The connection number (the client host's).
        session: u64,
        /// The answer.
        answer: RpcAnswer,
    },
    /// The connection ended on the sender's side.
    Close {
        /// The sender's host.
        origin: String,
        /// The connection number (the client host's).
        session: u64,
    },
}

/// A message sent on another host to a name of the answering host (a
/// plain port, not an RPC service: `Client::register` / `lookup`), its
/// payload as its sender encoded it. Answered `Answers::All([Sent])` once
/// the port there took it, `[Refused(Full)]` if it stayed full for
/// [`PORT_SLICE_MS`] (asked again, with a new id), or `[Refused(_)]`. A
/// retry with the same id is answered from the first run: never run
/// twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSend {
    /// The calling bridge's host.
    pub origin: String,
    /// Its incarnation (as in [`Call`]).
    pub session: u64,
    /// This attempt's id there.
    pub id: u64,
    /// The name.
    pub name: String,
    /// The message's payload, as encoded.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// How long a port send waits for room on the port's host before it is
/// answered `Full` (and asked again).
pub const PORT_SLICE_MS: u64 = 200;

/// Why a payload from another bridge was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Larger than this bridge takes.
    #[error("a payload of {size} bytes exceeds this bridge's limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a well-formed message of its kind.
    #[error("a malformed {what}: {why}")]
    Malformed {
        /// What it should have been.
        what: &'static str,
        /// The decoder's complaint.
        why: String,
    },
    /// Well-formed but meaningless (a bad host name, say).
    #[error("an invalid {what}: {why}")]
    Invalid {
        /// What it is.
        what: &'static str,
        /// Why.
        why: String,
    },
}

/// Room for a call's framing around its largest message.
pub const OVERHEAD: usize = 4096;

/// Encode anything of this module.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("postcard encodes these types into a Vec without failing")
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], limit: usize, what: &'static str) -> Result<T, WireError> {
    if bytes.len() > limit {
        return Err(WireError::TooLarge { size: bytes.len(), limit });
    }
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(WireError::Malformed { what, why: format!("{} bytes after its end", rest.len()) }),
        Err(e) => Err(WireError::Malformed { what, why: e.to_string() }),
    }
}

/// The largest call or answer for a host whose largest message is
/// `max_message`.
pub fn call_limit(max_message: usize) -> usize {
    max_message + BATCH_BYTES + MAX_OPS * 64 + OVERHEAD
}

/// Decode a call; `max_message` is this host's largest message.
pub fn decode_call(bytes: &[u8], max_message: usize) -> Result<Call, WireError> {
    let call: Call = decode(bytes, call_limit(max_message), "call")?;
    let invalid = |why: String| Err(WireError::Invalid { what: "call", why });
    if !valid_host(&call.origin) {
        return invalid(format!("origin {:?} is not a host name", call.origin));
    }
    if call.ops.is_empty() || call.ops.len() > MAX_OPS {
        return invalid(format!("{} operations (1 to {MAX_OPS})", call.ops.len()));
    }
    Ok(call)
}

/// Decode the answers to a call; `max_message` is this host's largest
/// message.
pub fn decode_answers(bytes: &[u8], max_message: usize) -> Result<Answers, WireError> {
    decode(bytes, call_limit(max_message), "answer")
}

/// Decode an RPC connection request.
pub fn decode_rpc_open(bytes: &[u8]) -> Result<RpcOpen, WireError> {
    let o: RpcOpen = decode(bytes, 4096, "RPC open")?;
    if !valid_host(&o.origin) || o.name.is_empty() || o.name.len() > 255 {
        return Err(WireError::Invalid { what: "RPC open", why: format!("{:?} from {:?}", o.name, o.origin) });
    }
    Ok(o)
}

/// Decode an RPC frame; `max_message` is this host's largest message.
pub fn decode_rpc_frame(bytes: &[u8], max_message: usize) -> Result<RpcFrame, WireError> {
    let f: RpcFrame = decode(bytes, max_message + OVERHEAD, "RPC frame")?;
    let (RpcFrame::Call { origin, .. } | RpcFrame::Answer { origin, .. } | RpcFrame::Close { origin, .. }) = &f;
    if !valid_host(origin) {
        return Err(WireError::Invalid { what: "RPC frame", why: format!("origin {origin:?}") });
    }
    Ok(f)
}

/// Decode a message for a port; `max_message` is this host's largest
/// message.
pub fn decode_port_send(bytes: &[u8], max_message: usize) -> Result<PortSend, WireError> {
    let p: PortSend = decode(bytes, max_message + OVERHEAD, "port message")?;
    if !valid_host(&p.origin) || p.name.is_empty() || p.name.len() > 255 {
        return Err(WireError::Invalid { what: "port message", why: format!("{:?} from {:?}", p.name, p.origin) });
    }
    Ok(p)
}

/// Decode an export list (at most 64 KiB names' worth: 1 MiB).
pub fn decode_exports(bytes: &[u8]) -> Result<Exports, WireError> {
    let e: Exports = decode(bytes, 1 << 20, "export list")?;
    if !valid_host(&e.host) {
        return Err(WireError::Invalid { what: "export list", why: format!("host {:?} is not a host name", e.host) });
    }
    if let Some(m) = e.mailboxes.iter().find(|m| m.name.is_empty() || m.name.len() > 255) {
        return Err(WireError::Invalid { what: "export list", why: format!("mailbox name {:?}", m.name) });
    }
    if let Some(n) = e.services.iter().find(|n| n.is_empty() || n.len() > 255) {
        return Err(WireError::Invalid { what: "export list", why: format!("service name {n:?}") });
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_broker::OnFull;

    fn call() -> Call {
        Call {
            origin: "b".into(),
            session: 7,
            id: 3,
            ops: vec![Op {
                caller: Caller { uid: 1000, gid: 100, pid: 42 },
                op: RemoteOp::Send { name: "jobs".into(), mtype: 1, data: b"hi".to_vec(), full: OnFull::NoWait },
            }],
        }
    }

    #[test]
    fn a_call_is_these_bytes_and_decodes_back() {
        let bytes = encode(&call());
        // "b", session 7, id 3, one op: uid 1000 (varint e8 07), gid 100,
        // pid 42, Send (0), "jobs", mtype 1 (zigzag 2), "hi", NoWait (2).
        assert_eq!(bytes, [1, b'b', 7, 3, 1, 0xe8, 7, 100, 42, 0, 4, b'j', b'o', b'b', b's', 2, 2, b'h', b'i', 2]);
        assert_eq!(decode_call(&bytes, 16).unwrap(), call());
    }

    #[test]
    fn exports_rpc_frames_and_answers_are_these_bytes() {
        // (The same bytes seed the fuzz target bridge_call.)
        let e = Exports {
            host: "a".into(),
            mailboxes: vec![Export { name: "jobs".into(), capacity: Some(3) }],
            services: vec!["calc".into()],
        };
        let bytes = [1u8, b'a', 1, 4, b'j', b'o', b'b', b's', 1, 3, 1, 4, b'c', b'a', b'l', b'c'];
        assert_eq!(encode(&e), bytes);
        assert_eq!(decode_exports(&bytes).unwrap(), e);
        let f = RpcFrame::Call {
            origin: "b".into(),
            session: 1,
            call: RpcCall { client: 0, id: 2, done_below: 2, method: "add".into(), budget_us: None, args: vec![2, 4] },
        };
        let bytes = [0u8, 1, b'b', 1, 0, 2, 2, 3, b'a', b'd', b'd', 0, 2, 2, 4];
        assert_eq!(encode(&f), bytes);
        assert_eq!(decode_rpc_frame(&bytes, 16).unwrap(), f);
        let o = RpcOpen { origin: "b".into(), session: 1, name: "calc".into() };
        assert_eq!(encode(&o), [1u8, b'b', 1, 4, b'c', b'a', b'l', b'c']);
        let a = Answers::All(vec![Answer::Sent { receiver: None }, Answer::Refused(BrokerError::Full)]);
        assert_eq!(encode(&a), [0u8, 2, 0, 0, 3, 3]);
        assert_eq!(decode_answers(&[0u8, 2, 0, 0, 3, 3], 16).unwrap(), a);
    }

    #[test]
    fn hostile_payloads_are_typed_errors() {
        let bytes = encode(&call());
        assert!(decode_call(&bytes, 0).is_ok(), "the limit is the message's, plus the framing");
        let limit = call_limit(10);
        assert_eq!(decode_call(&vec![0; limit + 1], 10), Err(WireError::TooLarge { size: limit + 1, limit }));
        for cut in 0..bytes.len() {
            assert!(matches!(decode_call(&bytes[..cut], 16), Err(WireError::Malformed { .. })), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(decode_call(&long, 16), Err(WireError::Malformed { .. })));
        let mut bad = call();
        bad.origin = "a/b".into();
        assert!(matches!(decode_call(&encode(&bad), 16), Err(WireError::Invalid { .. })));
        // A declared length far beyond the bytes is refused, not allocated.
        let huge = [1, b'b', 7, 3, 1, 0, 0, 0, 0, 4, b'j', b'o', b'b', b's', 2, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(decode_call(&huge, 16), Err(WireError::Malformed { .. })));
        let mut none = call();
        none.ops.clear();
        assert!(matches!(decode_call(&encode(&none), 16), Err(WireError::Invalid { .. })));
        let e = Exports {
            host: "a".into(),
            mailboxes: vec![Export { name: String::new(), capacity: None }],
            services: vec![],
        };
        assert!(matches!(decode_exports(&encode(&e)), Err(WireError::Invalid { .. })));
    }

    #[test]
    fn a_port_message_is_these_bytes_and_hostile_ones_are_typed_errors() {
        let p = PortSend { origin: "b".into(), session: 7, id: 3, name: "n".into(), data: vec![9, 9] };
        let bytes = [1u8, b'b', 7, 3, 1, b'n', 2, 9, 9];
        assert_eq!(encode(&p), bytes);
        assert_eq!(decode_port_send(&bytes, 16).unwrap(), p);
        for cut in 0..bytes.len() {
            assert!(matches!(decode_port_send(&bytes[..cut], 16), Err(WireError::Malformed { .. })), "cut at {cut}");
        }
        let limit = 10 + OVERHEAD;
        assert_eq!(decode_port_send(&vec![0; limit + 1], 10), Err(WireError::TooLarge { size: limit + 1, limit }));
        // A declared length far beyond the bytes is refused, not allocated.
        let huge = [1u8, b'b', 7, 3, 1, b'n', 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(decode_port_send(&huge, 16), Err(WireError::Malformed { .. })));
        let nameless = PortSend { name: String::new(), ..p.clone() };
        assert!(matches!(decode_port_send(&encode(&nameless), 16), Err(WireError::Invalid { .. })));
        let bad = PortSend { origin: "a/b".into(), ..p };
        assert!(matches!(decode_port_send(&encode(&bad), 16), Err(WireError::Invalid { .. })));
    }
}
