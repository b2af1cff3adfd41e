//! The bridge: one Zenoh session next to one broker.
//!
//! **Exports.** Every mailbox of this host (not processes' inboxes, not
//! mailboxes imported from elsewhere) whose name `--only` admits is
//! listed at `conduit/bridge/HOST/exports`, and served at
//! `conduit/bridge/HOST/call`: a [`Call`] is run on the local broker with
//! the remote caller's uid and gid (`Request::As`, so the broker checks
//! the mailbox's mode for that user), on a connection from a pool. A
//! received message stays held on that connection under a token until the
//! caller's host settles it; the tokens of a host whose bridge disappears
//! (its liveliness token goes: death or a cut link past the lease) are
//! given back to their mailboxes.
//!
//! **Imports.** Once a second, and whenever a bridge appears, this bridge
//! asks every bridge for its exports and `Import`s them into the local
//! broker (a name this host has already stays local). The broker forwards
//! operations on them here (`Forward`); each becomes one Zenoh query to
//! the mailbox's host, retried with the same id while that host is alive
//! (the answer is cached there: a retry is never run twice), answered to
//! the broker with `Request::Answer`.
//!
//! **Names: RPC services and plain ports.** The names of this host are
//! exported too; a bridge registers the other hosts' names with its broker
//! as its own, on a port of its own, and serves what arrives there:
//! * a connection a client makes (`connect_rpc`) is relayed to the service
//!   on its host: there the bridge connects through its broker (the
//!   matchmaker) and both carry calls and answers as Zenoh `put`s on
//!   `conduit/bridge/HOST/rpc`. Either side's end is a `Close` frame.
//! * any other message (a typed `Sender` looked up by the name: `lookup`)
//!   is carried as its encoded bytes, without its type, to the name's port
//!   on its host (`conduit/bridge/HOST/port`), one at a time and in order,
//!   each answered only once that port took it: a full port there holds
//!   the messages back here, and its senders here wait once this bridge's
//!   own port ([`PORT_DEPTH`]) is full too. Messages carrying descriptors
//!   cannot cross: they are dropped here with a warning.
//!
//! Nothing is buffered here: a send is answered only when the mailbox's
//! host has taken it (bounded capacity holds end to end: a full mailbox
//! there makes the sender here wait, or fail, as it asked).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use conduit_broker::protocol::{BrokerError, Forward, RemoteOp, Reply, Request};
use conduit_broker::{Client, ClientError, OnFull, WaitFor};
use zenoh::sample::SampleKind;

use conduit::rpc::Call;
use conduit_broker::Connect;
use zenoh::qos::CongestionControl;

use crate::wire::{
    self, Answer, Answers, Call as BridgeCall, Export, Exports, Op, PortSend, RpcAnswer, RpcCall, RpcFrame, RpcOpen,
};

/// How a bridge runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// This host's name among the bridges (a key-expression chunk).
    pub host: String,
    /// Zenoh endpoints to listen on (`tcp/ADDR:PORT`).
    pub listen: Vec<String>,
    /// Zenoh endpoints to connect to.
    pub connect: Vec<String>,
    /// Only mailboxes whose names match (`*` matches any run of bytes).
    pub only: Option<String>,
    /// The local broker's socket.
    pub socket: PathBuf,
    /// Zenoh's lease, in milliseconds: how long a silent link is kept
    /// before its peer is declared gone (Zenoh's default: 10 s).
    pub lease_ms: Option<u64>,
}

/// Why a bridge could not run.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The options make no sense.
    #[error("{0}")]
    Options(String),
    /// The local broker.
    #[error("the local broker: {0}")]
    Broker(#[from] ClientError),
    /// Zenoh.
    #[error("zenoh: {0}")]
    Zenoh(String),
}

fn zerr(e: impl std::fmt::Display) -> BridgeError {
    BridgeError::Zenoh(e.to_string())
}

/// Does `name` match `pattern` (`*`: any run of bytes)?
pub fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Calls remembered per calling host, to answer retries: a duplicate older
/// than this many calls from the same host would run again.
pub const REPLY_CACHE: usize = 16384;

/// Bytes of received messages the reply cache keeps at most, all hosts
/// together: past it, the oldest answers go first (their calls could then
/// run again if repeated: a receive would hand out the next message).
pub const REPLY_CACHE_BYTES: usize = 64 << 20;

/// How long a call waits for its answer beyond its own wait before it is
/// asked again (with the same id, so never run twice).
pub const ANSWER_WITHIN_MS: u64 = 1000;

/// Messages the port a bridge registers for an imported name holds (plus
/// the one on its way): beyond it, senders here wait for the name's host.
pub const PORT_DEPTH: usize = 16;

/// A name imported from another host, served by a thread of its own.
struct Imported {
    host: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Imported {
    /// Stop serving it: the thread ends and drops the port (senders here
    /// see `Disconnected`).
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A message received here for another host, held until it settles.
struct HeldHere {
    origin: String,
    client: Arc<Client>,
    delivery: u64,
}

enum Cached {
    Running,
    Done(Answers),
}

impl Cached {
    /// Message bytes it holds.
    fn bytes(&self) -> usize {
        match self {
            Cached::Done(Answers::All(all)) => all
                .iter()
                .map(|a| match a {
                    Answer::Message { data, .. } => data.len(),
                    _ => 0,
                })
                .sum(),
            _ => 0,
        }
    }
}

/// The sends to one mailbox of one host not yet carried, in order; one
/// batch of them on the way at a time.
#[derive(Default)]
struct Lane {
    queue: VecDeque<(u64, Op)>,
    busy: bool,
}

#[derive(Default)]
struct ReplyCache {
    by_call: HashMap<(String, u64, u64), Cached>,
    /// Message bytes in the cached answers.
    bytes: usize,
    order: HashMap<String, VecDeque<(u64, u64)>>,
}

struct Shared {
    host: String,
    session_id: u64,
    only: Option<String>,
    socket: PathBuf,
    max_message: usize,
    z: zenoh::Session,
    control: Arc<Client>,
    pool: Mutex<Vec<Arc<Client>>>,
    held: Mutex<HashMap<u64, HeldHere>>,
    next_token: AtomicU64,
    cache: Mutex<ReplyCache>,
    /// Imported mailbox → its host.
    imports: Mutex<HashMap<String, String>>,
    /// Bridges alive now.
    alive: Mutex<HashSet<String>>,
    /// Changes the liveliness subscriber made to `alive` (counted under its
    /// lock), so that a liveliness query's older answer cannot undo them.
    alive_changes: AtomicU64,
    /// Tokens given to the local broker → (host, that host's token).
    tokens: Mutex<HashMap<u64, (String, u64)>>,
    next_call: AtomicU64,
    /// Sends waiting, by (host, mailbox).
    lanes: Mutex<HashMap<(String, String), Lane>>,
    /// Names imported (registered here by this bridge): name → its host,
    /// and the thread serving its port.
    services: Mutex<HashMap<String, Imported>>,
    /// Ports of names here that other hosts sent to: one send right each,
    /// so that their messages stay in order (looked up again when its
    /// receiver is gone: the name may have a new owner).
    ports: Mutex<HashMap<String, conduit::Sender<conduit::Opaque>>>,
    /// Relayed RPC connections of clients here: (service host, session)
    /// → where their answers go.
    clients: Mutex<HashMap<(String, u64), conduit::Sender<conduit::rpc::Answer>>>,
    /// Relayed RPC connections to services here: (client host, session)
    /// → where their calls go.
    servers: Mutex<HashMap<(String, u64), conduit::Sender<conduit::rpc::Call>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run a bridge until the process ends (or the local broker does).
pub async fn run(opts: Options) -> Result<(), BridgeError> {
    if !wire::valid_host(&opts.host) {
        return Err(BridgeError::Options(format!(
            "--name {:?}: a host name is 1 to 64 letters, digits, '-', '_' or '.'",
            opts.host
        )));
    }
    if opts.listen.is_empty() && opts.connect.is_empty() {
        return Err(BridgeError::Options("give --listen ENDPOINT or --connect ENDPOINT (or both)".into()));
    }
    let mut config = zenoh::Config::default();
    let json = |v: &[String]| serde_json_array(v);
    config.insert_json5("mode", "\"peer\"").map_err(zerr)?;
    // Explicit endpoints only: no multicast scouting, no gossip.
    config.insert_json5("scouting/multicast/enabled", "false").map_err(zerr)?;
    config.insert_json5("listen/endpoints", &json(&opts.listen)).map_err(zerr)?;
    config.insert_json5("connect/endpoints", &json(&opts.connect)).map_err(zerr)?;
    if let Some(ms) = opts.lease_ms {
        config.insert_json5("transport/link/tx/lease", &ms.to_string()).map_err(zerr)?;
        config.insert_json5("transport/link/tx/keep_alive", "4").map_err(zerr)?;
    }
    let z = zenoh::open(config).await.map_err(zerr)?;

    let socket = opts.socket.clone();
    let control = tokio::task::spawn_blocking(move || Client::connect_to(&socket))
        .await
        .map_err(|e| BridgeError::Options(e.to_string()))??;
    let control = Arc::new(control);
    let (calls_tx, calls) = conduit::unbounded::<Forward>().map_err(|e| BridgeError::Options(e.to_string()))?;
    control.request(Request::Bridge { host: opts.host.clone(), calls: calls_tx })?;

    // An incarnation number: time and pid (calls of an earlier life are not
    // duplicates of this one's).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let session_id = (now.as_nanos() as u64) ^ (u64::from(std::process::id()) << 40);
    let shared = Arc::new(Shared {
        host: opts.host.clone(),
        session_id,
        only: opts.only.clone(),
        socket: opts.socket.clone(),
        max_message: conduit_broker::Limits::default().max_message,
        z,
        control,
        pool: Mutex::default(),
        held: Mutex::default(),
        next_token: AtomicU64::new(1),
        cache: Mutex::default(),
        imports: Mutex::default(),
        alive: Mutex::default(),
        alive_changes: AtomicU64::new(0),
        tokens: Mutex::default(),
        next_call: AtomicU64::new(1),
        lanes: Mutex::default(),
        services: Mutex::default(),
        ports: Mutex::default(),
        clients: Mutex::default(),
        servers: Mutex::default(),
    });

    // Two bridges under one name would mix their mailboxes: refuse to be
    // the second (as far as the peers reachable now can tell).
    let twins = shared.z.liveliness().get(wire::alive_key(&shared.host)).timeout(Duration::from_secs(1)).await;
    if let Ok(twins) = twins
        && let Ok(reply) = twins.recv_async().await
        && reply.result().is_ok()
    {
        return Err(BridgeError::Options(format!(
            "a bridge named {} already runs among the peers; give this one another --name",
            shared.host
        )));
    }
    let _token = shared.z.liveliness().declare_token(wire::alive_key(&shared.host)).await.map_err(zerr)?;
    let calls_q = shared.z.declare_queryable(wire::call_key(&shared.host)).await.map_err(zerr)?;
    let exports_q = shared.z.declare_queryable(wire::exports_key(&shared.host)).await.map_err(zerr)?;
    let alive_sub = shared.z.liveliness().declare_subscriber(wire::ALIVE_ALL).history(true).await.map_err(zerr)?;
    let rpc_open_q = shared.z.declare_queryable(wire::rpc_open_key(&shared.host)).await.map_err(zerr)?;
    let rpc_sub = shared.z.declare_subscriber(wire::rpc_key(&shared.host)).await.map_err(zerr)?;
    let port_q = shared.z.declare_queryable(wire::port_key(&shared.host)).await.map_err(zerr)?;
    tracing::info!(host = %shared.host, listen = ?opts.listen, connect = ?opts.connect, "bridge up");

    // Calls from the local broker.
    let (broker_gone_tx, broker_gone) = tokio::sync::oneshot::channel::<()>();
    {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Ok(f) = calls.recv_async().await {
                tokio::spawn(forward(Arc::clone(&shared), f));
            }
            let _ = broker_gone_tx.send(());
        });
    }
    // RPC connections relayed from other hosts, and their frames.
    {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Ok(q) = rpc_open_q.recv_async().await {
                tokio::spawn(rpc_open(Arc::clone(&shared), q));
            }
        });
    }
    {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Ok(sample) = rpc_sub.recv_async().await {
                rpc_frame(&shared, &sample.payload().to_bytes());
            }
        });
    }
    // Messages from other hosts for the ports of names here.
    {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Ok(q) = port_q.recv_async().await {
                tokio::spawn(serve_port(Arc::clone(&shared), q));
            }
        });
    }
    // Calls from other hosts.
    {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Ok(q) = calls_q.recv_async().await {
                tokio::spawn(serve_call(Arc::clone(&shared), q));
            }
        });
    }
    {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Ok(q) = exports_q.recv_async().await {
                let list = exports(&shared).await;
                let _ = q.reply(q.key_expr().clone(), wire::encode(&list)).await;
            }
        });
    }
    let (resync_tx, mut resync) = tokio::sync::mpsc::unbounded_channel::<()>();
    {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Ok(s) = alive_sub.recv_async().await {
                let Some(host) = wire::alive_host(s.key_expr().as_str()).map(str::to_string) else {
                    continue;
                };
                if host == shared.host {
                    continue;
                }
                // (Counted under the lock: see `recheck_alive`.)
                match s.kind() {
                    SampleKind::Put => {
                        tracing::info!(peer = %host, "bridge appeared");
                        let mut alive = lock(&shared.alive);
                        alive.insert(host);
                        shared.alive_changes.fetch_add(1, Ordering::Relaxed);
                    }
                    SampleKind::Delete => {
                        tracing::warn!(peer = %host, "bridge gone");
                        {
                            let mut alive = lock(&shared.alive);
                            alive.remove(&host);
                            shared.alive_changes.fetch_add(1, Ordering::Relaxed);
                        }
                        host_gone(&shared, &host).await;
                    }
                }
                let _ = resync_tx.send(());
            }
        });
    }
    // The imports follow the others' exports.
    let sync = {
        let shared = Arc::clone(&shared);
        async move {
            loop {
                recheck_alive(&shared).await;
                sync_imports(&shared).await;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = resync.recv() => {}
                }
            }
        }
    };
    tokio::select! {
        _ = sync => Ok(()),
        _ = broker_gone => Err(BridgeError::Broker(ClientError::Broken("the broker closed the bridge's connection".into()))),
    }
}

fn serde_json_array(v: &[String]) -> String {
    let quoted: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(","))
}

/// This host's exports now.
async fn exports(shared: &Arc<Shared>) -> Exports {
    let control = Arc::clone(&shared.control);
    let listing = tokio::task::spawn_blocking(move || control.list()).await;
    let objects = match listing {
        Ok(Ok(objects)) => objects,
        _ => vec![],
    };
    let admitted = |id: &str| shared.only.as_deref().is_none_or(|p| matches(p, id));
    let mailboxes = objects
        .iter()
        .filter(|o| o.kind == "mailbox" && !o.id.starts_with(conduit_broker::INBOX_PREFIX) && admitted(&o.id))
        .map(|o| Export { name: o.id.clone(), capacity: o.capacity })
        .collect();
    // Names, but not those this bridge registered for other hosts.
    let imported = lock(&shared.services).keys().cloned().collect::<HashSet<String>>();
    let services = objects
        .iter()
        .filter(|o| o.kind == "name" && admitted(&o.id) && !imported.contains(&o.id))
        .map(|o| o.id.clone())
        .collect();
    Exports { host: shared.host.clone(), mailboxes, services }
}

/// Add the bridges a liveliness query finds that `alive` lacks: the
/// subscriber's notices are the main source, but a start-up race must not
/// leave a live peer unseen for good. Only adds, and only if the subscriber
/// changed nothing meanwhile (its `Delete` is never undone by an older
/// answer); a bridge that goes is noticed by the subscriber alone.
async fn recheck_alive(shared: &Shared) {
    let before = shared.alive_changes.load(Ordering::Relaxed);
    let Ok(replies) = shared.z.liveliness().get(wire::ALIVE_ALL).timeout(Duration::from_secs(1)).await else {
        return;
    };
    let mut found = Vec::new();
    while let Ok(reply) = replies.recv_async().await {
        if let Ok(sample) = reply.result()
            && let Some(host) = wire::alive_host(sample.key_expr().as_str())
            && host != shared.host
        {
            found.push(host.to_string());
        }
    }
    let mut alive = lock(&shared.alive);
    if shared.alive_changes.load(Ordering::Relaxed) != before {
        return;
    }
    for host in found {
        if !alive.contains(&host) {
            tracing::warn!(peer = %host, "bridge found by a liveliness query, not by its notice");
            alive.insert(host);
        }
    }
}

/// Ask every bridge for its exports; import what is new, drop what went.
async fn sync_imports(shared: &Arc<Shared>) {
    let replies = match shared.z.get(wire::EXPORTS_ALL).timeout(Duration::from_secs(2)).await {
        Ok(r) => r,
        Err(e) => return tracing::warn!(error = %e, "cannot ask for exports"),
    };
    let mut want: HashMap<String, (String, Option<u64>)> = HashMap::new();
    let mut want_services: HashMap<String, String> = HashMap::new();
    let mut hosts = Vec::new();
    while let Ok(reply) = replies.recv_async().await {
        let Ok(sample) = reply.result() else { continue };
        let e = match wire::decode_exports(&sample.payload().to_bytes()) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(key = %sample.key_expr(), error = %e, "a bad export list; ignored");
                continue;
            }
        };
        if e.host == shared.host || !lock(&shared.alive).contains(&e.host) {
            continue;
        }
        hosts.push(e.host.clone());
        for m in e.mailboxes {
            if shared.only.as_deref().is_none_or(|p| matches(p, &m.name)) {
                want.entry(m.name).or_insert((e.host.clone(), m.capacity));
            }
        }
        for name in e.services {
            if shared.only.as_deref().is_none_or(|p| matches(p, &name)) {
                want_services.entry(name).or_insert(e.host.clone());
            }
        }
    }
    hosts.sort();
    let answered: HashSet<String> = hosts.iter().cloned().collect();
    sync_services(shared, &answered, want_services);
    let have: HashMap<String, String> = lock(&shared.imports).clone();
    let control = Arc::clone(&shared.control);
    let shared2 = Arc::clone(shared);
    let _ = tokio::task::spawn_blocking(move || {
        // A host that did not answer this round keeps its imports while it
        // is alive (a slow answer must not make mailboxes flap).
        for (name, host) in &have {
            let answered = answered.contains(host);
            let alive = lock(&shared2.alive).contains(host);
            if (answered || !alive) && want.get(name).is_none_or(|(h, _)| h != host) {
                let _ = control.request(Request::Unimport { name: name.clone() });
                lock(&shared2.imports).remove(name);
            }
        }
        for (name, (host, capacity)) in want {
            if lock(&shared2.imports).get(&name) == Some(&host) {
                continue;
            }
            match control.request(Request::Import { name: name.clone(), host: host.clone(), capacity }) {
                Ok(_) => {
                    tracing::info!(mailbox = %name, %host, "imported");
                    lock(&shared2.imports).insert(name, host);
                }
                Err(e) => tracing::debug!(mailbox = %name, %host, error = %e, "not imported"),
            }
        }
        let mut peers: Vec<String> = lock(&shared2.alive).iter().cloned().collect();
        peers.sort();
        let _ = control.post(Request::BridgePeers { hosts: peers });
    })
    .await;
}

/// Register the services other hosts offer (as this bridge's names), and
/// release those that went. A host that did not answer this round keeps
/// its services while it is alive.
fn sync_services(shared: &Arc<Shared>, answered: &HashSet<String>, want: HashMap<String, String>) {
    let have: Vec<(String, String)> = lock(&shared.services).iter().map(|(n, i)| (n.clone(), i.host.clone())).collect();
    for (name, host) in have {
        let alive = lock(&shared.alive).contains(&host);
        if (answered.contains(&host) || !alive) && want.get(&name) != Some(&host) {
            if let Some(i) = lock(&shared.services).remove(&name) {
                i.stop();
            }
            let _ = tokio::task::block_in_place(|| shared.control.release(&name));
        }
    }
    for (name, host) in want {
        if lock(&shared.services).contains_key(&name) {
            continue;
        }
        let Ok((port, arrivals)) = conduit::bounded::<Connect<Call, conduit::rpc::Answer>>(PORT_DEPTH) else {
            continue;
        };
        let flags = conduit_broker::NameFlags::default();
        match tokio::task::block_in_place(|| shared.control.register(&name, port, flags)) {
            Ok(conduit_broker::NameReply::PrimaryOwner | conduit_broker::NameReply::AlreadyOwner) => {}
            // Taken here (a local name stays local).
            _ => continue,
        }
        tracing::info!(%name, %host, "imported");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let serving = {
            let (shared, host, name, stop) = (Arc::clone(shared), host.clone(), name.clone(), Arc::clone(&stop));
            let rt = tokio::runtime::Handle::current();
            std::thread::Builder::new()
                .name(format!("bridge-{name}"))
                .spawn(move || serve_import(&shared, &rt, &host, &name, &arrivals, &stop))
        };
        if let Err(e) = serving {
            tracing::warn!(%name, error = %e, "no thread to serve an imported name");
            let _ = tokio::task::block_in_place(|| shared.control.release(&name));
            continue;
        }
        lock(&shared.services).insert(name, Imported { host, stop });
    }
}

/// Serve an imported name's port: RPC connections are relayed, any other
/// message is carried to the name's port on its host, in order.
fn serve_import(
    shared: &Arc<Shared>,
    rt: &tokio::runtime::Handle,
    host: &str,
    name: &str,
    arrivals: &conduit::Receiver<Connect<Call, conduit::rpc::Answer>>,
    stop: &std::sync::atomic::AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        match arrivals.recv_timeout_or_opaque(Duration::from_millis(200)) {
            Ok(Ok(c)) => {
                rt.spawn(relay_client(Arc::clone(shared), host.to_string(), name.to_string(), c));
            }
            Ok(Err(msg)) => {
                if let Err(why) = rt.block_on(port_send(shared, host, name, msg.0)) {
                    tracing::warn!(%name, %host, %why, "a message for the name's port was not delivered");
                }
            }
            Err(conduit::RecvTimeoutError::Timeout) => {}
            Err(conduit::RecvTimeoutError::Disconnected) => break,
            // Anyone here may send anything to the name's port: a message
            // carrying descriptors (they cannot cross) or a bad frame is
            // dropped, and the import goes on serving the others.
            Err(e) => tracing::warn!(%name, %host, error = %e,
                "a message that cannot cross hosts (descriptors, or not well formed); dropped"),
        }
    }
}

/// Carry one message to the port of `name` on `host`: asked again with the
/// same id until answered (never delivered twice), and with a new id while
/// that port is full. `Err`: not delivered, or not known to be.
async fn port_send(shared: &Arc<Shared>, host: &str, name: &str, data: Vec<u8>) -> Result<(), String> {
    let key = wire::port_key(host);
    let mut send = PortSend { origin: shared.host.clone(), session: shared.session_id, id: 0, name: name.into(), data };
    loop {
        send.id = shared.next_call.fetch_add(1, Ordering::Relaxed);
        let payload = wire::encode(&send);
        loop {
            if !lock(&shared.alive).contains(host) {
                return Err(format!("host {host} is gone; the message may or may not have arrived"));
            }
            let within = Duration::from_millis(wire::PORT_SLICE_MS + ANSWER_WITHIN_MS);
            match ask(shared, &key, payload.clone(), within).await {
                Some(Answers::All(a)) => match a.as_slice() {
                    [Answer::Sent { .. }] => return Ok(()),
                    // Still full there: again, as a new attempt.
                    [Answer::Refused(BrokerError::Full)] => break,
                    [Answer::Refused(e)] => return Err(e.to_string()),
                    other => return Err(format!("host {host} answered {other:?}")),
                },
                Some(Answers::Busy) => tokio::time::sleep(Duration::from_millis(20)).await,
                Some(Answers::Refused(e)) => return Err(e.to_string()),
                None => {
                    tracing::warn!(%host, %name, "no answer; asking again with the same id");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A message from another host for the port of one of this host's names:
/// delivered once (a retry gets the first answer).
async fn serve_port(shared: Arc<Shared>, q: zenoh::query::Query) {
    let bytes = q.payload().map(|p| p.to_bytes().into_owned()).unwrap_or_default();
    let a = match wire::decode_port_send(&bytes, shared.max_message) {
        Err(e) => {
            tracing::warn!(error = %e, "a bad port message; refused");
            Answers::Refused(BrokerError::Invalid(e.to_string()))
        }
        Ok(p) => {
            let key = (p.origin.clone(), p.session, p.id);
            match begin_once(&shared, &key) {
                Some(a) => a,
                None => {
                    let s = Arc::clone(&shared);
                    let a = tokio::task::spawn_blocking(move || Answers::All(vec![deliver(&s, p)]))
                        .await
                        .unwrap_or_else(|e| Answers::Refused(BrokerError::Invalid(format!("the bridge failed: {e}"))));
                    end_once(&shared, key, &a);
                    a
                }
            }
        }
    };
    let _ = q.reply(q.key_expr().clone(), wire::encode(&a)).await;
}

/// Send a message from another host into the port registered here under
/// its name.
fn deliver(shared: &Shared, p: PortSend) -> Answer {
    let exported = shared.only.as_deref().is_none_or(|pattern| matches(pattern, &p.name));
    if !exported || lock(&shared.services).contains_key(&p.name) {
        // Not exported (`--only`), or imported here from another host: not
        // ours to serve.
        return Answer::Refused(BrokerError::NotFound(format!("name {}", p.name)));
    }
    let mut msg = conduit::Opaque(p.data);
    for fresh in [false, true] {
        let cached = if fresh { None } else { lock(&shared.ports).get(&p.name).cloned() };
        let port = match cached {
            Some(port) => port,
            None => match shared.control.lookup::<conduit::Opaque>(&p.name) {
                Ok(port) => {
                    lock(&shared.ports).insert(p.name.clone(), port.clone());
                    port
                }
                Err(e) => return refused(e),
            },
        };
        match port.send_timeout(msg, Duration::from_millis(wire::PORT_SLICE_MS)) {
            Ok(()) => return Answer::Sent { receiver: None },
            Err(conduit::SendTimeoutError::Timeout(_)) => return Answer::Refused(BrokerError::Full),
            Err(conduit::SendTimeoutError::Disconnected(back)) => {
                // Its receiver is gone: the name may have a new owner.
                lock(&shared.ports).remove(&p.name);
                msg = back;
            }
            Err(conduit::SendTimeoutError::Failed(_, e)) => {
                return Answer::Refused(BrokerError::Invalid(e.to_string()));
            }
        }
    }
    Answer::Refused(BrokerError::Unreachable(format!("name {}: its receiver is gone", p.name)))
}

/// A client here connected to a service of `host`: open the connection
/// there, then carry its calls (answers come back through `rpc_frame`).
async fn relay_client(shared: Arc<Shared>, host: String, name: String, c: Connect<Call, conduit::rpc::Answer>) {
    let session = shared.next_call.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(service = %name, %host, session, "a client connects");
    let open = wire::encode(&RpcOpen { origin: shared.host.clone(), session, name: name.clone() });
    match ask(&shared, &wire::rpc_open_key(&host), open, Duration::from_millis(ANSWER_WITHIN_MS * 3)).await {
        Some(Answers::All(_)) => {}
        other => {
            // Dropping the connection's ends: the client sees ServerDied.
            return tracing::warn!(service = %name, %host, answer = ?other, "cannot connect to the service");
        }
    }
    // The only holder of the answers' sender: when the service's side
    // ends (`Close`, or its host gone) it is dropped, and the client sees
    // ServerDied.
    let Connect { requests, replies } = c;
    lock(&shared.clients).insert((host.clone(), session), replies);
    let key = wire::rpc_key(&host);
    while let Ok(call) = requests.recv_async().await {
        if !call.rights.is_empty() {
            // Descriptors cannot cross hosts: a typed error, here.
            let outcome = conduit::rpc::Outcome::BadArguments(format!(
                "{}: arguments holding rights (channel ends, remote objects) cannot cross to host {host}",
                call.method
            ));
            if let Some(tx) = lock(&shared.clients).get(&(host.clone(), session)) {
                let _ = tx.send(conduit::rpc::Answer { id: call.id, outcome, rights: Default::default() });
            }
            continue;
        }
        let Call { client, id, done_below, method, budget_us, args, .. } = call;
        let call = RpcCall { client, id, done_below, method, budget_us, args };
        let frame = RpcFrame::Call { origin: shared.host.clone(), session, call };
        if shared.z.put(&key, wire::encode(&frame)).congestion_control(CongestionControl::Block).await.is_err() {
            break;
        }
    }
    lock(&shared.clients).remove(&(host.clone(), session));
    let close = RpcFrame::Close { origin: shared.host.clone(), session };
    let _ = shared.z.put(&key, wire::encode(&close)).congestion_control(CongestionControl::Block).await;
}

/// A client of another host connects to a service here: connect to it
/// through the local broker (the matchmaker), relay its answers back.
async fn rpc_open(shared: Arc<Shared>, q: zenoh::query::Query) {
    let bytes = q.payload().map(|p| p.to_bytes().into_owned()).unwrap_or_default();
    let answer = match wire::decode_rpc_open(&bytes) {
        Err(e) => Answers::Refused(BrokerError::Invalid(e.to_string())),
        Ok(open) => {
            tracing::debug!(service = %open.name, origin = %open.origin, session = open.session, "a remote client connects");
            let admitted = shared.only.as_deref().is_none_or(|p| matches(p, &open.name));
            let s = Arc::clone(&shared);
            let connected = tokio::task::spawn_blocking(move || {
                if !admitted {
                    return Err(ClientError::Broker(BrokerError::NotFound(format!("name {}", open.name))));
                }
                let c = s.client()?;
                let port = c.lookup::<Connect<Call, conduit::rpc::Answer>>(&open.name);
                s.give(c);
                let broken = |e: conduit::Error| ClientError::Broken(e.to_string());
                let (call_tx, call_rx) = conduit::unbounded::<Call>().map_err(broken)?;
                let (answer_tx, answer_rx) = conduit::unbounded::<conduit::rpc::Answer>().map_err(broken)?;
                port?
                    .send(Connect { requests: call_rx, replies: answer_tx })
                    .map_err(|e| ClientError::Broken(e.to_string()))?;
                Ok((open, call_tx, answer_rx))
            })
            .await;
            match connected {
                Ok(Ok((open, call_tx, answers))) => {
                    lock(&shared.servers).insert((open.origin.clone(), open.session), call_tx);
                    tokio::spawn(relay_answers(Arc::clone(&shared), open.origin, open.session, answers));
                    Answers::All(vec![Answer::Done])
                }
                Ok(Err(e)) => Answers::Refused(match e {
                    ClientError::Broker(e) => e,
                    e => BrokerError::Unreachable(e.to_string()),
                }),
                Err(e) => Answers::Refused(BrokerError::Invalid(e.to_string())),
            }
        }
    };
    let _ = q.reply(q.key_expr().clone(), wire::encode(&answer)).await;
}

/// A service here answers a client of `origin`: carry the answers back.
async fn relay_answers(
    shared: Arc<Shared>,
    origin: String,
    session: u64,
    answers: conduit::Receiver<conduit::rpc::Answer>,
) {
    let key = wire::rpc_key(&origin);
    while let Ok(a) = answers.recv_async().await {
        let outcome = if a.rights.is_empty() {
            a.outcome
        } else {
            conduit::rpc::Outcome::Panicked(format!(
                "the return value holds rights (channel ends, remote objects): they cannot cross to host {origin}"
            ))
        };
        let frame = RpcFrame::Answer { origin: shared.host.clone(), session, answer: RpcAnswer { id: a.id, outcome } };
        if shared.z.put(&key, wire::encode(&frame)).congestion_control(CongestionControl::Block).await.is_err() {
            break;
        }
    }
    // The service closed the connection (or died).
    lock(&shared.servers).remove(&(origin.clone(), session));
    let close = RpcFrame::Close { origin: shared.host.clone(), session };
    let _ = shared.z.put(&key, wire::encode(&close)).congestion_control(CongestionControl::Block).await;
}

/// A frame of a relayed RPC connection.
fn rpc_frame(shared: &Shared, bytes: &[u8]) {
    let frame = match wire::decode_rpc_frame(bytes, shared.max_message) {
        Ok(f) => f,
        Err(e) => return tracing::warn!(error = %e, "a bad RPC frame; ignored"),
    };
    tracing::trace!(?frame, "an RPC frame");
    match frame {
        RpcFrame::Call { origin, session, call } => {
            let RpcCall { client, id, done_below, method, budget_us, args } = call;
            let call = Call { client, id, done_below, method, budget_us, args, rights: Default::default() };
            if let Some(tx) = lock(&shared.servers).get(&(origin, session)) {
                let _ = tx.send(call);
            }
        }
        RpcFrame::Answer { origin, session, answer } => {
            let a = conduit::rpc::Answer { id: answer.id, outcome: answer.outcome, rights: Default::default() };
            if let Some(tx) = lock(&shared.clients).get(&(origin, session)) {
                let _ = tx.send(a);
            }
        }
        RpcFrame::Close { origin, session } => {
            // Either side's end: the other sees its peer gone.
            lock(&shared.servers).remove(&(origin.clone(), session));
            lock(&shared.clients).remove(&(origin, session));
        }
    }
}

/// A bridge went (or its link stayed cut past the lease): its imports go,
/// and what it held here goes back to the mailboxes.
async fn host_gone(shared: &Arc<Shared>, host: &str) {
    let held: Vec<HeldHere> = {
        let mut h = lock(&shared.held);
        let tokens: Vec<u64> = h.iter().filter(|(_, x)| x.origin == host).map(|(t, _)| *t).collect();
        tokens.into_iter().filter_map(|t| h.remove(&t)).collect()
    };
    {
        let mut c = lock(&shared.cache);
        let gone: usize = c.by_call.iter().filter(|((origin, _, _), _)| origin == host).map(|(_, a)| a.bytes()).sum();
        c.bytes -= gone;
        c.by_call.retain(|(origin, _, _), _| origin != host);
        c.order.remove(host);
    }
    lock(&shared.tokens).retain(|_, (h, _)| h != host);
    // Its relayed RPC connections end: clients here see ServerDied,
    // services here see their client go.
    lock(&shared.clients).retain(|(h, _), _| h != host);
    lock(&shared.servers).retain(|(h, _), _| h != host);
    let gone_services: Vec<String> = {
        let mut services = lock(&shared.services);
        let names: Vec<String> = services.iter().filter(|(_, i)| i.host == host).map(|(n, _)| n.clone()).collect();
        for n in &names {
            if let Some(i) = services.remove(n) {
                i.stop();
            }
        }
        names
    };
    let gone: Vec<String> = {
        let mut imports = lock(&shared.imports);
        let names: Vec<String> = imports.iter().filter(|(_, h)| *h == host).map(|(n, _)| n.clone()).collect();
        for n in &names {
            imports.remove(n);
        }
        names
    };
    let control = Arc::clone(&shared.control);
    let _ = tokio::task::spawn_blocking(move || {
        for h in held {
            let _ = h.client.request(Request::Settle { delivery: h.delivery, ack: false, confirm: true });
        }
        for name in gone {
            let _ = control.request(Request::Unimport { name });
        }
        for name in gone_services {
            let _ = control.release(&name);
        }
    })
    .await;
}

/// A call from the local broker: carry it to the mailbox's host. Sends go
/// through their mailbox's lane (in order, in batches); receives and
/// settles go at once, each on its own.
async fn forward(shared: Arc<Shared>, f: Forward) {
    let Forward { call, caller, op } = f;
    let (host, op) = match op {
        // A settle names a token this bridge gave; it goes to that host.
        RemoteOp::Settle { token, ack } => {
            let Some((host, theirs)) = lock(&shared.tokens).remove(&token) else { return };
            (host, RemoteOp::Settle { token: theirs, ack })
        }
        RemoteOp::Send { ref name, .. } | RemoteOp::Recv { ref name, .. } => {
            let Some(host) = lock(&shared.imports).get(name).cloned() else {
                let e = BrokerError::Unreachable(format!("mailbox {name}: no bridge exports it now"));
                return answer(&shared, vec![(call, Reply::Error(e))]).await;
            };
            (host, op)
        }
    };
    if let RemoteOp::Send { name, .. } = &op {
        let lane = (host.clone(), name.clone());
        let start = {
            let mut lanes = lock(&shared.lanes);
            let l = lanes.entry(lane.clone()).or_default();
            l.queue.push_back((call, Op { caller, op }));
            !std::mem::replace(&mut l.busy, true)
        };
        if start {
            drain(shared, lane).await;
        }
        return;
    }
    let replies = carry(&shared, &host, vec![Op { caller, op }]).await;
    if call != 0 {
        answer(&shared, vec![(call, replies.into_iter().next().unwrap_or(Reply::Done))]).await;
    }
}

/// Send a lane's queued sends, a batch at a time, until it is empty.
async fn drain(shared: Arc<Shared>, lane: (String, String)) {
    loop {
        let batch: Vec<(u64, Op)> = {
            let mut lanes = lock(&shared.lanes);
            let Some(l) = lanes.get_mut(&lane) else { return };
            let mut batch = Vec::new();
            let mut bytes = 0;
            while let Some((_, Op { op: RemoteOp::Send { data, .. }, .. })) = l.queue.front() {
                if !batch.is_empty() && (batch.len() >= wire::MAX_OPS || bytes + data.len() > wire::BATCH_BYTES) {
                    break;
                }
                bytes += data.len();
                batch.extend(l.queue.pop_front());
            }
            if batch.is_empty() {
                lanes.remove(&lane);
                return;
            }
            batch
        };
        tracing::debug!(host = %lane.0, mailbox = %lane.1, sends = batch.len(), "a batch");
        let (calls, ops): (Vec<u64>, Vec<Op>) = batch.into_iter().unzip();
        let replies = carry(&shared, &lane.0, ops).await;
        answer(&shared, calls.into_iter().zip(replies).collect()).await;
    }
}

/// Run `ops` on `host`: one query, asked again with the same id until
/// answered or the host is gone. One reply per op.
async fn carry(shared: &Arc<Shared>, host: &str, ops: Vec<Op>) -> Vec<Reply> {
    let n = ops.len();
    let wait = ops
        .iter()
        .map(|o| match &o.op {
            RemoteOp::Send { full: OnFull::Timeout(ms), .. } | RemoteOp::Recv { wait: WaitFor::Millis(ms), .. } => *ms,
            _ => 0,
        })
        .sum::<u64>();
    let id = shared.next_call.fetch_add(1, Ordering::Relaxed);
    let payload = wire::encode(&BridgeCall { origin: shared.host.clone(), session: shared.session_id, id, ops });
    let key = wire::call_key(host);
    let all = |e: BrokerError| (0..n).map(|_| Reply::Error(e.clone())).collect::<Vec<Reply>>();
    loop {
        if !lock(&shared.alive).contains(host) {
            return all(BrokerError::Unreachable(format!(
                "host {host} is gone (its bridge, or the link to it); a send may or may not have arrived"
            )));
        }
        match ask(shared, &key, payload.clone(), Duration::from_millis(wait + ANSWER_WITHIN_MS)).await {
            Some(Answers::Busy) => tokio::time::sleep(Duration::from_millis(20)).await,
            None => {
                tracing::warn!(%host, call = id, "no answer; asking again with the same id");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Some(Answers::Refused(e)) => return all(e),
            Some(Answers::All(answers)) if answers.len() != n => {
                let e = format!("host {host} answered {} of {n} operations", answers.len());
                return all(BrokerError::Invalid(e));
            }
            Some(Answers::All(answers)) => {
                return answers
                    .into_iter()
                    .map(|a| match a {
                        Answer::Sent { receiver } => Reply::Sent { receiver, deferred: false },
                        Answer::Done => Reply::Done,
                        Answer::Refused(e) => Reply::Error(e),
                        Answer::Message { mtype, data, sender, token, durable } => {
                            let mine = shared.next_call.fetch_add(1, Ordering::Relaxed);
                            lock(&shared.tokens).insert(mine, (host.to_string(), token));
                            Reply::Message { mtype, data, sender, delivery: mine, durable }
                        }
                    })
                    .collect();
            }
        }
    }
}

/// One query; `None` if no (well-formed) answer came in time.
async fn ask(shared: &Shared, key: &str, payload: Vec<u8>, timeout: Duration) -> Option<Answers> {
    let replies = shared.z.get(key).payload(payload).timeout(timeout).await.ok()?;
    while let Ok(reply) = replies.recv_async().await {
        if let Ok(sample) = reply.result() {
            match wire::decode_answers(&sample.payload().to_bytes(), shared.max_message) {
                Ok(a) => return Some(a),
                Err(e) => tracing::warn!(%key, error = %e, "a bad answer; asking again"),
            }
        }
    }
    None
}

/// Answer the local broker's calls (call 0 expects none).
async fn answer(shared: &Arc<Shared>, replies: Vec<(u64, Reply)>) {
    // A post does not wait for the broker: on this thread, no hop.
    tokio::task::block_in_place(|| {
        for (call, reply) in replies.into_iter().filter(|(c, _)| *c != 0) {
            let _ = shared.control.post(Request::Answer { call, reply });
        }
    });
}

/// A call from another host: run it here once, answer it (again).
async fn serve_call(shared: Arc<Shared>, q: zenoh::query::Query) {
    let bytes = q.payload().map(|p| p.to_bytes().into_owned()).unwrap_or_default();
    let call = match wire::decode_call(&bytes, shared.max_message) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "a bad call; refused");
            let a = Answers::Refused(BrokerError::Invalid(e.to_string()));
            let _ = q.reply(q.key_expr().clone(), wire::encode(&a)).await;
            return;
        }
    };
    let key = (call.origin.clone(), call.session, call.id);
    let cached = begin_once(&shared, &key);
    let a = match cached {
        Some(a) => a,
        None => {
            // Sends and settles take the local broker microseconds: run
            // them on this thread (no hop); a receive may wait (up to a
            // slice), on a blocking thread.
            let waits = call.ops.iter().any(|o| matches!(o.op, RemoteOp::Recv { wait: WaitFor::Millis(_), .. }));
            let a = if waits {
                let s = Arc::clone(&shared);
                tokio::task::spawn_blocking(move || Answers::All(run_call(&s, call)))
                    .await
                    .unwrap_or_else(|e| Answers::Refused(BrokerError::Invalid(format!("the bridge failed: {e}"))))
            } else {
                tokio::task::block_in_place(|| Answers::All(run_call(&shared, call)))
            };
            end_once(&shared, key, &a);
            a
        }
    };
    let _ = q.reply(q.key_expr().clone(), wire::encode(&a)).await;
}

/// The first run of a call `key` (origin, session, id) begins: `None`, and
/// it is marked running; or a retry: the first run's answer (`Busy` while
/// it runs).
fn begin_once(shared: &Shared, key: &(String, u64, u64)) -> Option<Answers> {
    let mut c = lock(&shared.cache);
    match c.by_call.get(key) {
        Some(Cached::Running) => Some(Answers::Busy),
        Some(Cached::Done(a)) => Some(a.clone()),
        None => {
            c.by_call.insert(key.clone(), Cached::Running);
            let order = c.order.entry(key.0.clone()).or_default();
            order.push_back((key.1, key.2));
            if order.len() > REPLY_CACHE
                && let Some((s, i)) = order.pop_front()
                && let Some(old) = c.by_call.remove(&(key.0.clone(), s, i))
            {
                c.bytes -= old.bytes();
            }
            None
        }
    }
}

/// The first run of a call `key` ended with `a`: kept for its retries.
fn end_once(shared: &Shared, key: (String, u64, u64), a: &Answers) {
    let mut c = lock(&shared.cache);
    let done = Cached::Done(a.clone());
    c.bytes += done.bytes();
    if let Some(slot) = c.by_call.get_mut(&key) {
        *slot = done;
    }
    // Over the byte bound: the oldest answers of the host that called go
    // (not the one just made).
    while c.bytes > REPLY_CACHE_BYTES {
        let origin = key.0.clone();
        let Some((s, i)) = c.order.get_mut(&origin).and_then(VecDeque::pop_front) else { break };
        if (s, i) == (key.1, key.2) {
            c.order.entry(origin).or_default().push_back((s, i));
            break;
        }
        if let Some(old) = c.by_call.remove(&(origin, s, i)) {
            c.bytes -= old.bytes();
        }
    }
}

impl Shared {
    fn client(&self) -> Result<Arc<Client>, ClientError> {
        if let Some(c) = lock(&self.pool).pop() {
            return Ok(c);
        }
        Client::connect_to(&self.socket).map(Arc::new)
    }

    fn give(&self, c: Arc<Client>) {
        lock(&self.pool).push(c);
    }
}

fn refused(e: ClientError) -> Answer {
    match e {
        ClientError::Broker(e) => Answer::Refused(e),
        e => Answer::Refused(BrokerError::Unreachable(format!("the broker of the mailbox's host: {e}"))),
    }
}

/// Run a call's operations on the local broker, in order, with each
/// caller's credentials (`Request::As`): the sends pipelined on one
/// connection, a receive holding its message there under a token.
fn run_call(shared: &Shared, call: BridgeCall) -> Vec<Answer> {
    let BridgeCall { origin, ops, .. } = call;
    let n = ops.len();
    let c = match shared.client() {
        Ok(c) => c,
        Err(e) => {
            let a = refused(e);
            return (0..n).map(|_| a.clone()).collect();
        }
    };
    let mut out = Vec::with_capacity(n);
    let mut ops = ops.into_iter().peekable();
    // A mailbox `--only` does not admit is not exported: as if it did not
    // exist, whatever another bridge asks.
    let admitted = |name: &str| shared.only.as_deref().is_none_or(|p| matches(p, name));
    let not_exported = |name: &str| Answer::Refused(BrokerError::NotFound(format!("mailbox {name}")));
    while let Some(Op { caller, op }) = ops.next() {
        let as_caller = |request| Request::As { uid: caller.uid, gid: caller.gid, request: Box::new(request) };
        match op {
            RemoteOp::Send { name, .. } | RemoteOp::Recv { name, .. } if !admitted(&name) => {
                out.push(not_exported(&name));
            }
            RemoteOp::Settle { token, ack } => {
                out.push(match lock(&shared.held).remove(&token) {
                    None => Answer::Done,
                    Some(h) => match h.client.request(Request::Settle { delivery: h.delivery, ack, confirm: true }) {
                        Ok(_) => Answer::Done,
                        Err(e) => refused(e),
                    },
                });
            }
            RemoteOp::Send { name, mtype, data, full } => {
                // This send and the sends right after it, pipelined.
                let mut reqs = vec![as_caller(Request::Send { name, mtype, data, full })];
                while let Some(Op { caller, op: RemoteOp::Send { name, .. } }) = ops.peek()
                    && admitted(name)
                {
                    let caller = *caller;
                    let Some(Op { op: RemoteOp::Send { name, mtype, data, full }, .. }) = ops.next() else { break };
                    let request = Box::new(Request::Send { name, mtype, data, full });
                    reqs.push(Request::As { uid: caller.uid, gid: caller.gid, request });
                }
                let k = reqs.len();
                match c.request_many(reqs) {
                    Ok(replies) => out.extend(replies.into_iter().map(|r| match r {
                        Ok(Reply::Sent { receiver, .. }) => Answer::Sent { receiver },
                        Ok(other) => Answer::Refused(BrokerError::Invalid(format!("the broker answered {other:?}"))),
                        Err(e) => Answer::Refused(e),
                    })),
                    Err(e) => {
                        let a = refused(e);
                        out.extend((0..k).map(|_| a.clone()));
                    }
                }
            }
            RemoteOp::Recv { name, select, wait } => {
                out.push(match c.request(as_caller(Request::Recv { name, select, wait })) {
                    Ok(Reply::Message { mtype, data, sender, delivery, durable }) => {
                        let token = shared.next_token.fetch_add(1, Ordering::Relaxed);
                        let held = HeldHere { origin: origin.clone(), client: Arc::clone(&c), delivery };
                        lock(&shared.held).insert(token, held);
                        Answer::Message { mtype, data, sender, token, durable }
                    }
                    Ok(other) => Answer::Refused(BrokerError::Invalid(format!("the broker answered {other:?}"))),
                    Err(e) => refused(e),
                });
            }
        }
    }
    shared.give(c);
    out
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn only_patterns() {
        assert!(matches("jobs", "jobs"));
        assert!(!matches("jobs", "jobs2"));
        assert!(matches("jobs*", "jobs2"));
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXcYYb"));
        assert!(matches("*.in", "x.in"));
        assert!(!matches("ab*ba", "aba"));
    }
}
