//! The broker across processes: mailboxes that outlive their creator,
//! System V receive rules, the four full-mailbox choices, permissions for
//! another user, quotas, durability across `kill -9`, the race to start an
//! embedded broker, names and the connect handshake, hostile clients.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Kid, finish, outcome, report, spawn_with_args};
use conduit_broker::{
    BrokerError, Capacity, Client, ClientError, MailboxOptions, NameFlags, NameReply, OnFull, Policy, WaitFor,
};
use conduit_tests::FromChild;

/// A broker in a child process, on a socket of its own.
struct Broker {
    kid: Kid,
    dir: PathBuf,
    socket: PathBuf,
}

impl Broker {
    fn start(tag: &str, extra: &[&str]) -> Broker {
        let dir = std::env::temp_dir().join(format!("conduit-broker-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Broker::start_in(dir, extra)
    }

    fn start_in(dir: PathBuf, extra: &[&str]) -> Broker {
        let socket = dir.join("broker.sock");
        let mut args = vec![socket.to_str().unwrap()];
        args.extend_from_slice(extra);
        let kid = spawn_with_args("broker", &args);
        assert_eq!(report(&kid), FromChild::Ready);
        Broker { kid, dir, socket }
    }

    fn client(&self) -> Client {
        Client::connect_to(&self.socket).unwrap()
    }

    fn stop(mut self) -> PathBuf {
        self.kid.child.kill().unwrap();
        self.kid.child.wait().unwrap();
        self.dir.clone()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.kid.child.kill();
    }
}

fn depth(c: &Client, name: &str) -> u64 {
    c.list().unwrap().into_iter().find(|o| o.kind == "mailbox" && o.id == name).expect("listed").depth
}

fn cleanup(dir: PathBuf) {
    let _ = std::fs::remove_dir_all(dir);
}

fn refused(r: Result<impl std::fmt::Debug, ClientError>) -> BrokerError {
    match r {
        Err(ClientError::Broker(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_mailbox_outlives_its_creator() {
    let b = Broker::start("outlives", &[]);
    let creator = spawn_with_args("mailbox-creator", &[b.socket.to_str().unwrap()]);
    assert_eq!(report(&creator), FromChild::Sent(1));
    let creator_pid = creator.child.id();
    finish(creator);
    let m = b.client().recv("outlives", 0, WaitFor::Millis(10_000)).unwrap();
    assert_eq!((m.mtype, &m.data[..], m.sender), (7, &b"left behind"[..], creator_pid));
    cleanup(b.stop());
}

#[test]
fn receive_by_type_follows_the_three_system_v_rules() {
    let b = Broker::start("mtype", &[]);
    let c = b.client();
    c.create_mailbox("typed", MailboxOptions::default()).unwrap();
    for t in [3, 1, 4, 2, 5] {
        c.send("typed", t, t.to_string().as_bytes(), OnFull::NoWait).unwrap();
    }
    let take = |select| c.recv("typed", select, WaitFor::NoWait).unwrap().mtype;
    assert_eq!(take(4), 4, "> 0: the first of that type");
    assert_eq!(take(-3), 1, "< 0: the lowest type ≤ 3");
    assert_eq!(take(-3), 2);
    assert_eq!(take(0), 3, "0: the first message");
    assert_eq!(refused(c.recv("typed", 9, WaitFor::NoWait)), BrokerError::Empty, "no type 9");
    assert_eq!(take(0), 5);
    cleanup(b.stop());
}

#[test]
fn a_full_mailbox_lets_the_sender_block_time_out_fail_or_leave_it() {
    let b = Broker::start("full", &[]);
    let c = b.client();
    let opts = MailboxOptions { capacity: Capacity::Bounded(1), ..MailboxOptions::default() };
    c.create_mailbox("full", opts).unwrap();
    c.send("full", 1, b"first", OnFull::NoWait).unwrap();
    assert_eq!(refused(c.send("full", 1, b"x", OnFull::NoWait)), BrokerError::Full, "return at once");
    assert_eq!(refused(c.send("full", 1, b"x", OnFull::Timeout(30))), BrokerError::Timeout, "wait a while");
    let left = c.send("full", 1, b"left", OnFull::Leave).unwrap();
    assert!(left.deferred, "left with the broker");
    assert_eq!(refused(c.send("full", 1, b"again", OnFull::Leave)), BrokerError::Full, "one per sender");
    // Block: another process waits until there is room.
    let blocked = spawn_with_args("blocked-sender", &[b.socket.to_str().unwrap()]);
    assert_eq!(report(&blocked), FromChild::Blocking);
    assert!(blocked.rx.recv_timeout(Duration::from_millis(200)).is_err(), "still blocked");
    let take = || c.recv("full", 0, WaitFor::Millis(10_000)).unwrap().data;
    assert_eq!(take(), b"first");
    // The left message and the blocked sender compete for the freed room
    // (a queue in shared memory has no favourite); both arrive, once.
    let mut next = [take(), take()];
    next.sort();
    assert_eq!(next, [b"blocked".to_vec(), b"left".to_vec()]);
    assert_eq!(refused(c.recv("full", 0, WaitFor::NoWait)), BrokerError::Empty);
    assert!(matches!(report(&blocked), FromChild::Sent(_)));
    finish(blocked);
    cleanup(b.stop());
}

#[test]
fn rendezvous_mailbox_hands_over_and_tells_the_sender_who_took_it() {
    let b = Broker::start("rendezvous", &[]);
    let c = b.client();
    let opts = MailboxOptions { capacity: Capacity::Bounded(0), policy: Policy::Any, ..MailboxOptions::default() };
    c.create_mailbox("full", opts).unwrap();
    assert_eq!(refused(c.send("full", 1, b"x", OnFull::NoWait)), BrokerError::Full, "nobody receiving");
    let sender = spawn_with_args("blocked-sender", &[b.socket.to_str().unwrap()]);
    assert_eq!(report(&sender), FromChild::Blocking);
    let m = c.recv("full", 0, WaitFor::Millis(10_000)).unwrap();
    assert_eq!(m.data, b"blocked");
    assert_eq!(report(&sender), FromChild::Sent(std::process::id() as u64), "the sender learns the receiver");
    finish(sender);
    cleanup(b.stop());
}

#[test]
fn exclusive_mailbox_has_one_receiver_at_a_time() {
    let b = Broker::start("exclusive", &[]);
    let (first, second) = (b.client(), b.client());
    let opts = MailboxOptions { policy: Policy::Exclusive, ..MailboxOptions::default() };
    first.create_mailbox("excl", opts).unwrap();
    assert_eq!(refused(first.recv("excl", 0, WaitFor::NoWait)), BrokerError::Empty);
    assert_eq!(refused(second.recv("excl", 0, WaitFor::NoWait)), BrokerError::Busy);
    drop(first); // the hold ends with the connection
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match second.recv("excl", 0, WaitFor::NoWait) {
            Err(ClientError::Broker(BrokerError::Empty)) => break,
            Err(ClientError::Broker(BrokerError::Busy)) if std::time::Instant::now() < deadline => {
                std::thread::yield_now()
            }
            other => panic!("{other:?}"),
        }
    }
    cleanup(b.stop());
}

/// Another user, trying everything on root's 0600 objects: every broker
/// operation on a mailbox and a name, a FIFO, a System V queue, then a
/// broker behind a 0700 directory. Each is refused with a typed error; the
/// broker goes on serving; nothing of root's changed.
#[test]
fn an_attacker_as_nobody_is_refused_every_operation_on_roots_objects() {
    let b = Broker::start("attacker", &[]);
    let c = b.client();
    c.create_mailbox("secret", MailboxOptions { mode: 0o600, ..MailboxOptions::default() }).unwrap();
    c.send("secret", 1, b"root's", OnFull::NoWait).unwrap();
    let (port, owned) = conduit::bounded::<u64>(1).unwrap();
    assert_eq!(c.register("root.service", port, NameFlags::default()).unwrap(), NameReply::PrimaryOwner);
    let fifo = b.dir.join("root.fifo");
    conduit::fifo::create(&fifo, 0o600).unwrap();
    let _reader = conduit::fifo::receiver::<u64>(&fifo).unwrap();
    let key = 0x5ec0_0000 | (std::process::id() as i32 & 0xffff);
    // Removed however the test ends (a failed assertion included).
    struct Removed(Option<conduit::kernel::MessageQueue>);
    impl Drop for Removed {
        fn drop(&mut self) {
            if let Some(q) = self.0.take() {
                let _ = q.remove();
            }
        }
    }
    let q = Removed(Some(conduit::kernel::MessageQueue::create(key, 0o600).unwrap()));
    let s = b.socket.to_str().unwrap();
    let kid = spawn_with_args("attacker", &[s, "secret", "root.service", fifo.to_str().unwrap(), &key.to_string()]);
    for what in [
        "send",
        "receive",
        "receive held",
        "chown",
        "remove",
        "create over it",
        "take the name",
        "release the name",
        "open the FIFO",
        "send to the queue",
    ] {
        let got = report(&kid);
        let want = match what {
            "create over it" => outcome("error: mailbox secret exists already"),
            // Root did not allow replacement: taken, refused as such.
            "take the name" => outcome("Exists"),
            _ => outcome("denied"),
        };
        assert_eq!(got, want, "{what} as nobody");
    }
    finish(kid);
    // Nothing of root's changed; the broker serves on.
    let m = c.recv("secret", 0, WaitFor::NoWait).unwrap();
    assert_eq!(m.data, b"root's");
    let found: conduit::Sender<u64> = c.lookup("root.service").unwrap();
    found.send(5).unwrap();
    assert_eq!(owned.recv().unwrap(), 5, "the name still leads to root's port");
    assert_eq!(q.0.as_ref().unwrap().stat().unwrap().messages, 0, "nothing forged in the queue");
    drop(q);
    // A broker whose directory is 0700: another user cannot even connect.
    std::fs::set_permissions(&b.dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let kid = spawn_with_args("attacker", &[s, "-"]);
    assert_eq!(report(&kid), outcome("denied"), "connect through a 0700 directory");
    finish(kid);
    assert!(b.client().list().is_ok(), "the broker still serves root");
    cleanup(b.stop());
}

#[test]
fn another_user_is_refused_by_0600_admitted_by_0666_and_held_to_its_quota() {
    let b = Broker::start("perms", &["3"]);
    let c = b.client();
    c.create_mailbox("private", MailboxOptions { mode: 0o600, ..MailboxOptions::default() }).unwrap();
    c.create_mailbox("public", MailboxOptions { mode: 0o666, ..MailboxOptions::default() }).unwrap();
    let s = b.socket.to_str().unwrap();
    let private = spawn_with_args("mailbox-user", &[s, "private"]);
    assert_eq!(report(&private), outcome("denied"), "send to 0600 as nobody");
    assert_eq!(report(&private), outcome("denied"), "receive from 0600 as nobody");
    assert_eq!(report(&private), outcome("created 3, then quota"));
    assert_eq!(report(&private), outcome("ok"), "still served after its quota");
    finish(private);
    let public = spawn_with_args("mailbox-user", &[s, "public"]);
    assert_eq!(report(&public), outcome("ok"), "send to 0666 as nobody");
    assert_eq!(report(&public), outcome("ok"), "receive from 0666 as nobody");
    // nobody's objects from the first run still count.
    assert_eq!(report(&public), outcome("created 0, then error: mailbox nobody-0 exists already"));
    assert_eq!(report(&public), outcome("ok"));
    finish(public);
    // The quota was nobody's alone: root creates on.
    for i in 0..5 {
        c.create_mailbox(&format!("root-{i}"), MailboxOptions::default()).unwrap();
    }
    cleanup(b.stop());
}

#[test]
fn a_durable_mailbox_survives_kill_9_of_the_broker() {
    let dir = std::env::temp_dir().join(format!("conduit-broker-test-{}-durable", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    let data = data.to_str().unwrap().to_string();
    let b = Broker::start_in(dir.clone(), &["100", &data]);
    let c = b.client();
    let opts = MailboxOptions { durable: true, ..MailboxOptions::default() };
    c.create_mailbox("kept", opts).unwrap();
    c.create_mailbox("lost", MailboxOptions::default()).unwrap();
    for i in 0..3u8 {
        c.send("kept", 1 + i as i64, &[i; 3], OnFull::NoWait).unwrap();
    }
    let _ = c.recv("kept", 0, WaitFor::NoWait).unwrap(); // delivered: gone for good
    drop(c);
    b.stop(); // kill -9
    let b = Broker::start_in(dir, &["100", &data]);
    let c = b.client();
    let got: Vec<i64> = (0..2).map(|_| c.recv("kept", 0, WaitFor::NoWait).unwrap().mtype).collect();
    assert_eq!(got, vec![2, 3], "acknowledged messages survive, delivered ones are not redelivered");
    assert_eq!(refused(c.recv("lost", 0, WaitFor::NoWait)), BrokerError::NotFound("mailbox lost".into()));
    cleanup(b.stop());
}

#[test]
fn two_processes_racing_to_start_the_embedded_broker_end_with_one() {
    let dir = std::env::temp_dir().join(format!("conduit-broker-test-{}-race", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let socket = dir.join("broker.sock");
    let s = socket.to_str().unwrap();
    let (a, b) = (spawn_with_args("embedded", &[s]), spawn_with_args("embedded", &[s]));
    let (FromChild::Sent(pa), FromChild::Sent(pb)) = (report(&a), report(&b)) else { panic!("no broker pid") };
    assert_eq!(pa, pb, "one broker for both");
    assert!(pa == a.child.id() as u64 || pa == b.child.id() as u64, "it runs inside one of them");
    // Both mailboxes are in that one broker.
    let listing = Client::connect_to(&socket).unwrap().list().unwrap();
    let boxes: Vec<_> = listing.iter().filter(|o| o.kind == "mailbox").collect();
    assert_eq!(boxes.len(), 2, "{listing:?}");
    for kid in [a, b] {
        kid.tx.send(conduit_tests::ToChild::Go).unwrap();
        finish(kid);
    }
    cleanup(dir);
}

#[test]
fn names_match_clients_to_services_with_private_ports() {
    let b = Broker::start("names", &[]);
    let s = b.socket.to_str().unwrap();
    let service = spawn_with_args("service", &[s]);
    assert_eq!(report(&service), FromChild::Ready);
    let c = b.client();
    let events = c.watch("echo").unwrap();
    assert_eq!(events.recv().unwrap().owner, Some(service.child.id()));
    // The connect handshake: a private pair; the broker is not in the path.
    let (tx, rx) = c.connect_service::<String, String>("echo").unwrap();
    tx.send("hello".into()).unwrap();
    assert_eq!(rx.recv().unwrap(), "HELLO");
    // Someone else in line for the name gets it when the owner dies.
    let (my_port, _my_rx) = conduit::unbounded::<u8>().unwrap();
    let queued = NameFlags { queue: true, ..NameFlags::default() };
    assert_eq!(c.register("echo", my_port.clone(), queued).unwrap(), NameReply::InQueue);
    assert_eq!(c.register("echo", my_port, NameFlags::default()).unwrap(), NameReply::Exists);
    let mut service = service;
    service.child.kill().unwrap();
    service.child.wait().unwrap();
    let ev = events.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(ev.owner, Some(std::process::id()), "the queued registrant owns it now");
    // An administrator (root, on another connection: `conduit rm name`)
    // takes it away from its owner.
    let admin = b.client();
    admin.release("echo").unwrap();
    assert_eq!(events.recv_timeout(Duration::from_secs(10)).unwrap().owner, None);
    assert!(matches!(admin.lookup::<u8>("echo"), Err(ClientError::Broker(BrokerError::NotFound(_)))));
    cleanup(b.stop());
}

#[test]
fn a_hostile_client_is_cut_off_and_the_broker_serves_on() {
    use std::io::IoSlice;
    let b = Broker::start("hostile", &[]);
    let good = b.client();
    good.create_mailbox("still", MailboxOptions::default()).unwrap();
    let sock = rustix::net::socket_with(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    rustix::net::connect(&sock, &rustix::net::SocketAddrUnix::new(&b.socket).unwrap()).unwrap();
    let mut control = rustix::net::SendAncillaryBuffer::default();
    rustix::net::sendmsg(
        &sock,
        &[IoSlice::new(b"GET / HTTP/1.1\r\n\r\n")],
        &mut control,
        rustix::net::SendFlags::empty(),
    )
    .unwrap();
    // The broker answers with an error frame, then hangs up on it.
    let mut buf = [0u8; 512];
    let mut hung_up = false;
    for _ in 0..4 {
        match rustix::net::recv(&sock, &mut buf, rustix::net::RecvFlags::empty()) {
            Ok((0, _)) | Err(_) => {
                hung_up = true;
                break;
            }
            Ok(_) => continue,
        }
    }
    assert!(hung_up, "the hostile connection is closed");
    good.send("still", 1, b"fine", OnFull::NoWait).unwrap();
    assert_eq!(good.recv("still", 0, WaitFor::NoWait).unwrap().data, b"fine");
    cleanup(b.stop());
}

#[test]
fn a_shared_mailbox_takes_direct_and_brokered_senders_in_one_order() {
    let b = Broker::start("mixed", &[]);
    let c = b.client();
    // Others may send (through the broker: they may not read, so they
    // do not get the memory); root reads and writes the queue directly.
    let opts = MailboxOptions { mode: 0o622, ..MailboxOptions::default() };
    c.create_mailbox("mixed", opts).unwrap();
    c.send("mixed", 1, b"r0", OnFull::NoWait).unwrap();
    let nobody = spawn_with_args("mailbox-writer", &[b.socket.to_str().unwrap(), "mixed"]);
    assert_eq!(report(&nobody), outcome("denied"), "nobody may not receive");
    let nobody_pid = nobody.child.id();
    finish(nobody);
    c.send("mixed", 1, b"r1", OnFull::NoWait).unwrap();
    assert_eq!(depth(&c, "mixed"), 5);
    let got: Vec<(Vec<u8>, u32)> =
        (0..5).map(|_| c.recv("mixed", 0, WaitFor::NoWait).map(|m| (m.data, m.sender)).unwrap()).collect();
    let me = std::process::id();
    let want = [(b"r0", me), (b"n0", nobody_pid), (b"n1", nobody_pid), (b"n2", nobody_pid), (b"r1", me)];
    assert_eq!(got, want.map(|(d, p)| (d.to_vec(), p)), "one order; the broker names its senders");
    assert_eq!(refused(c.recv("mixed", 0, WaitFor::NoWait)), BrokerError::Empty);
    cleanup(b.stop());
}

#[test]
fn a_receiver_killed_mid_stream_loses_the_queue_nothing() {
    let b = Broker::start("drain", &[]);
    let c = b.client();
    c.create_mailbox("stream", MailboxOptions::default()).unwrap(); // 64 messages
    let drain = spawn_with_args("mailbox-drain", &[b.socket.to_str().unwrap(), "stream"]);
    const N: u64 = 100_000;
    let socket = b.socket.clone();
    let sender = std::thread::spawn(move || {
        let c = Client::connect_to(&socket).unwrap();
        for i in 0..N {
            c.send("stream", 1, &i.to_le_bytes(), OnFull::Block).unwrap();
        }
    });
    assert_eq!(report(&drain), FromChild::Sent(100));
    let mut drain = drain;
    drain.child.kill().unwrap(); // SIGKILL, mid-stream (as a rule: the sender is far ahead)
    drain.child.wait().unwrap();
    // What the dead receiver had not taken arrives here: in order, none
    // twice, none skipped, up to the last one sent.
    let mut rest = Vec::new();
    loop {
        match c.recv("stream", 0, WaitFor::Millis(100)) {
            Ok(m) => rest.push(u64::from_le_bytes(m.data.try_into().unwrap())),
            Err(ClientError::Broker(BrokerError::Timeout)) if sender.is_finished() => break,
            Err(ClientError::Broker(BrokerError::Timeout)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    sender.join().unwrap();
    if let (Some(&first), Some(&last)) = (rest.first(), rest.last()) {
        assert!(first >= 100, "the dead receiver had taken at least 100");
        assert_eq!(rest, (first..=last).collect::<Vec<_>>(), "in order, none twice, none lost");
        assert_eq!(last, N - 1);
    }
    // The count is right and every credit is back: exactly 64 fit again.
    assert_eq!(depth(&c, "stream"), 0);
    for i in 0..64 {
        c.send("stream", 1, &[i], OnFull::NoWait).unwrap();
    }
    assert_eq!(refused(c.send("stream", 1, b"x", OnFull::NoWait)), BrokerError::Full);
    assert_eq!(depth(&c, "stream"), 64);
    cleanup(b.stop());
}

#[test]
fn a_receiver_waiting_on_shared_memory_learns_that_the_broker_died() {
    let b = Broker::start("dies", &[]);
    let c = b.client();
    c.create_mailbox("orphan", MailboxOptions::default()).unwrap();
    assert_eq!(refused(c.recv("orphan", 0, WaitFor::NoWait)), BrokerError::Empty, "opened: the queue is mapped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(c.recv("orphan", 0, WaitFor::Forever).map(|m| m.data));
    });
    let dir = b.stop(); // SIGKILL
    let r = rx.recv_timeout(Duration::from_secs(30)).expect("the waiter returned");
    assert!(r.is_err(), "no message can come from a dead broker's mailbox: {r:?}");
    cleanup(dir);
}

/// The kinds of mailbox, as a receiver meets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Bounded, in shared memory, the receiver using the queue directly.
    Shared,
    /// The same, the receiver (nobody, read-only) going through the broker.
    SharedBrokered,
    Unbounded,
    Rendezvous,
    Durable,
}

const KINDS: [Kind; 5] = [Kind::Shared, Kind::SharedBrokered, Kind::Unbounded, Kind::Rendezvous, Kind::Durable];

impl Kind {
    fn options(self) -> MailboxOptions {
        let mut o = MailboxOptions::default();
        match self {
            Kind::Shared => {}
            // Others may read, not write: nobody's receives go through the broker.
            Kind::SharedBrokered => o.mode = 0o604,
            Kind::Unbounded => o.capacity = Capacity::Unbounded,
            Kind::Rendezvous => o.capacity = Capacity::Bounded(0),
            Kind::Durable => o.durable = true,
        }
        o
    }

    fn receiver_args(self, b: &Broker) -> Vec<String> {
        let mut a = vec![b.socket.to_str().unwrap().to_string(), "m".to_string()];
        if self == Kind::SharedBrokered {
            a.push("nobody".into());
        }
        a
    }

    /// The broker lists the receivers waiting on its own queues (an
    /// unbounded mailbox's receivers wait on its front in shared memory).
    fn lists_waiters(self) -> bool {
        matches!(self, Kind::Rendezvous | Kind::Durable)
    }
}

fn broker_with_data(tag: &str) -> Broker {
    let dir = std::env::temp_dir().join(format!("conduit-broker-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data").to_str().unwrap().to_string();
    Broker::start_in(dir, &["100", &data])
}

/// Send `text` (from a thread: a rendezvous send waits for a receiver)
/// and receive it with a fresh client: it must arrive.
fn send_and_receive_again(b: &Broker, text: &str) {
    std::thread::scope(|s| {
        s.spawn(|| b.client().send("m", 1, text.as_bytes(), OnFull::Block).unwrap());
        let m = b.client().recv("m", 0, WaitFor::Millis(10_000)).expect("the message reaches the next receiver");
        assert_eq!(m.data, text.as_bytes());
    });
}

#[test]
fn a_receiver_killed_while_waiting_never_takes_the_next_message_with_it() {
    for kind in KINDS {
        let b = broker_with_data(&format!("deadwait-{kind:?}"));
        let c = b.client();
        c.create_mailbox("m", kind.options()).unwrap();
        // Sent 0 to 100 ms after the receiver's death: inside the window
        // where the broker had not noticed it yet.
        for (round, delay) in [0u64, 10, 40, 100].into_iter().enumerate() {
            let args = kind.receiver_args(&b);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut w = spawn_with_args("mailbox-waiter", &args);
            assert_eq!(report(&w), FromChild::Blocking);
            if kind.lists_waiters() {
                let pid = w.child.id();
                let listed = |c: &Client| {
                    c.list().unwrap().iter().any(|o| o.kind == "mailbox" && o.id == "m" && o.pids.contains(&pid))
                };
                while !listed(&c) {
                    std::thread::yield_now();
                }
            }
            w.child.kill().unwrap();
            w.child.wait().unwrap();
            std::thread::sleep(Duration::from_millis(delay));
            send_and_receive_again(&b, &format!("{kind:?} round {round}"));
        }
        assert_eq!(depth(&c, "m"), 0, "{kind:?}: nothing left over, nothing duplicated");
        cleanup(b.stop());
    }
}

#[test]
fn a_receiver_killed_holding_a_message_gives_it_back() {
    for kind in KINDS {
        let b = broker_with_data(&format!("held-{kind:?}"));
        let c = b.client();
        c.create_mailbox("m", kind.options()).unwrap();
        let args = kind.receiver_args(&b);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut h = spawn_with_args("mailbox-holder", &args);
        assert_eq!(report(&h), FromChild::Blocking);
        let text = format!("{kind:?} held");
        std::thread::scope(|s| {
            s.spawn(|| b.client().send("m", 1, text.as_bytes(), OnFull::Block).unwrap());
            assert_eq!(report(&h), FromChild::Received(text.clone(), 0), "{kind:?}");
        });
        // Killed after it received, before it acknowledged: the message
        // is the mailbox's again.
        h.child.kill().unwrap();
        h.child.wait().unwrap();
        let m = c.recv("m", 0, WaitFor::Millis(10_000)).expect("the held message comes back");
        assert_eq!(m.data, text.as_bytes(), "{kind:?}");
        assert_eq!(refused(c.recv("m", 0, WaitFor::NoWait)), BrokerError::Empty, "{kind:?}: exactly once more");
        cleanup(b.stop());
    }
}

#[test]
fn an_acknowledged_durable_message_is_not_delivered_again_after_a_broker_crash() {
    let b = broker_with_data("durable-ack");
    let dir = b.dir.clone();
    let c = b.client();
    c.create_mailbox("m", Kind::Durable.options()).unwrap();
    for t in ["acked", "held", "queued"] {
        c.send("m", 1, t.as_bytes(), OnFull::NoWait).unwrap();
    }
    assert_eq!(c.recv("m", 0, WaitFor::NoWait).unwrap().data, b"acked");
    let held = c.recv_held("m", 0, WaitFor::NoWait).unwrap();
    assert_eq!(held.message().data, b"held");
    std::mem::forget(held);
    let data = dir.join("data").to_str().unwrap().to_string();
    b.stop();
    // Restarted: the held message was never acknowledged, so it is
    // delivered again (at-least-once); the acknowledged one is gone.
    let b = Broker::start_in(dir, &["100", &data]);
    let c = b.client();
    assert_eq!(c.recv("m", 0, WaitFor::NoWait).unwrap().data, b"held");
    assert_eq!(c.recv("m", 0, WaitFor::NoWait).unwrap().data, b"queued");
    assert_eq!(refused(c.recv("m", 0, WaitFor::NoWait)), BrokerError::Empty);
    cleanup(b.stop());
}

#[test]
fn batched_sends_and_receives_are_each_answered_and_a_confirmed_batch_is_not_delivered_again() {
    let b = broker_with_data("batches");
    let dir = b.dir.clone();
    let data = dir.join("data").to_str().unwrap().to_string();
    let c = b.client();
    let bounded = MailboxOptions { capacity: Capacity::Bounded(3), ..Kind::Durable.options() };
    c.create_mailbox("d", bounded).unwrap();
    c.create_mailbox("u", MailboxOptions { capacity: Capacity::Unbounded, ..MailboxOptions::default() }).unwrap();
    let texts: Vec<Vec<u8>> = (0..5).map(|i| format!("m{i}").into_bytes()).collect();
    // One answer per message, in order: three fit, two are refused.
    let sent = c.send_batch("d", 1, texts.iter().map(Vec::as_slice), OnFull::NoWait).unwrap();
    assert_eq!(sent.iter().map(Result::is_ok).collect::<Vec<_>>(), [true, true, true, false, false]);
    assert_eq!(sent[3].as_ref().unwrap_err(), &BrokerError::Full);
    // Kept by the broker, not durable: the same, none refused.
    let sent = c.send_batch("u", 1, texts.iter().map(Vec::as_slice), OnFull::NoWait).unwrap();
    assert!(sent.iter().all(Result::is_ok));
    let got = c.recv_batch("u", 0, 64, WaitFor::NoWait).unwrap();
    assert_eq!(got.iter().map(|m| m.data.clone()).collect::<Vec<_>>(), texts);
    assert_eq!(refused(c.recv_batch("u", 0, 64, WaitFor::NoWait)), BrokerError::Empty);
    // Two of the durable three, acknowledged together and confirmed.
    let got = c.recv_batch("d", 0, 2, WaitFor::NoWait).unwrap();
    assert_eq!(got.iter().map(|m| m.data.clone()).collect::<Vec<_>>(), &texts[..2]);
    drop(c);
    b.stop(); // kill -9
    let b = Broker::start_in(dir, &["100", &data]);
    let c = b.client();
    let got = c.recv_batch("d", 0, 64, WaitFor::NoWait).unwrap();
    assert_eq!(got.iter().map(|m| m.data.clone()).collect::<Vec<_>>(), &texts[2..3], "only the third is left");
    cleanup(b.stop());
}

#[test]
fn an_unbounded_mailbox_takes_everything_through_its_shared_front_and_keeps_each_types_order() {
    const N: u64 = 3000;
    let b = Broker::start("front", &[]);
    let c = b.client();
    c.create_mailbox("u", MailboxOptions { capacity: Capacity::Unbounded, ..MailboxOptions::default() }).unwrap();
    // Far more than the front holds: the rest waits in the broker, and
    // the sender never waits.
    let flood = spawn_with_args("mailbox-flood", &[b.socket.to_str().unwrap(), "u", &N.to_string()]);
    assert_eq!(report(&flood), FromChild::Sent(N), "every send taken at once");
    finish(flood);
    assert_eq!(depth(&c, "u"), N, "all of them there: in the front and behind it");
    // A receive by type finds its messages behind the front too (the
    // front is full of the other types), in order.
    let threes: Vec<u64> = (0..N / 3)
        .map(|_| String::from_utf8(c.recv("u", 3, WaitFor::Millis(10_000)).unwrap().data).unwrap().parse().unwrap())
        .collect();
    assert_eq!(threes, (0..N).filter(|i| i % 3 == 2).collect::<Vec<_>>());
    // The rest in the order sent, some held and given back on the way.
    let held = c.recv_held("u", 0, WaitFor::NoWait).unwrap();
    assert_eq!(held.message().data, b"0");
    held.give_back().unwrap();
    let rest: Vec<u64> = (0..N - N / 3)
        .map(|_| String::from_utf8(c.recv("u", 0, WaitFor::Millis(10_000)).unwrap().data).unwrap().parse().unwrap())
        .collect();
    assert_eq!(rest, (0..N).filter(|i| i % 3 != 2).collect::<Vec<_>>());
    // Larger than the front takes: kept behind it, delivered whole, and
    // the message after it still comes after it.
    let big = vec![7u8; 300_000];
    c.send("u", 1, &big, OnFull::NoWait).unwrap();
    c.send("u", 1, b"after", OnFull::NoWait).unwrap();
    assert_eq!(c.recv("u", 0, WaitFor::Millis(10_000)).unwrap().data, big);
    assert_eq!(c.recv("u", 0, WaitFor::Millis(10_000)).unwrap().data, b"after");
    assert_eq!(refused(c.recv("u", 0, WaitFor::NoWait)), BrokerError::Empty);
    // A message the broker claimed in the front for this client is
    // acknowledged without an answer; if the mover held the queue's lock
    // just then, the broker settles it a moment later (a task that looks
    // again after 1 ms): the depth reaches 0 within that.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while depth(&c, "u") != 0 {
        assert!(std::time::Instant::now() < until, "depth {} after all was received", depth(&c, "u"));
        std::thread::yield_now();
    }
    cleanup(b.stop());
}

/// Sender and number of a "S:I" message of the `durable-sender` role.
fn sender_and_number(data: &[u8]) -> (usize, u64) {
    let text = std::str::from_utf8(data).expect("text");
    let (s, i) = text.split_once(':').expect("S:I");
    (s.parse().unwrap(), i.parse().unwrap())
}

#[test]
fn sixteen_pipelined_senders_lose_no_acknowledged_durable_message_through_a_broker_kill_9() {
    const SENDERS: usize = 16;
    const EACH: u64 = 4000;
    let b = broker_with_data("durable-16");
    let dir = b.dir.clone();
    let data = dir.join("data").to_str().unwrap().to_string();
    let c = b.client();
    let opts = MailboxOptions { capacity: Capacity::Unbounded, ..Kind::Durable.options() };
    c.create_mailbox("m", opts).unwrap();
    let socket = b.socket.to_str().unwrap().to_string();
    let senders: Vec<Kid> = (0..SENDERS)
        .map(|i| spawn_with_args("durable-sender", &[&socket, "m", &i.to_string(), &EACH.to_string()]))
        .collect();
    for k in &senders {
        assert_eq!(report(k), FromChild::Ready);
    }
    // Mid-stream: receive (each acknowledgement confirmed on disk) while
    // all sixteen send; every sender's messages arrive in its order.
    let mut next = [0u64; SENDERS];
    for _ in 0..200 {
        let m = c.recv("m", 0, WaitFor::Millis(10_000)).expect("a message while the senders run");
        let (s, i) = sender_and_number(&m.data);
        assert_eq!(i, next[s], "sender {s}'s messages in order");
        next[s] += 1;
    }
    // One more, handed out and not acknowledged when the broker dies:
    // the at-least-once window.
    let held = c.recv_held("m", 0, WaitFor::Millis(10_000)).unwrap();
    let unconfirmed = sender_and_number(&held.message().data);
    assert_eq!(unconfirmed.1, next[unconfirmed.0]);
    std::mem::forget(held);
    drop(c);
    b.stop(); // kill -9, the senders mid-batch
    let acked: Vec<u64> = senders
        .into_iter()
        .map(|k| {
            let FromChild::Sent(n) = report(&k) else { panic!("no count") };
            finish(k);
            n
        })
        .collect();
    assert!(acked.iter().all(|&n| n > 0), "every sender was acknowledged before the kill: {acked:?}");
    assert!(acked.iter().any(|&n| n < EACH), "the kill came mid-stream: {acked:?}");
    // Restarted: take everything (held, not acknowledged: no disk write
    // per message), and check it against what each side was told.
    let b = Broker::start_in(dir, &["100", &data]);
    let c = b.client();
    let mut after = [0u64; SENDERS];
    let mut kept = Vec::new();
    loop {
        match c.recv_held("m", 0, WaitFor::NoWait) {
            Ok(d) => {
                let (s, i) = sender_and_number(&d.message().data);
                assert!(i >= next[s], "sender {s}'s message {i} was received and acknowledged before: a duplicate");
                assert_eq!(i, next[s] + after[s], "sender {s}'s messages in order, none missing, after the restart");
                after[s] += 1;
                kept.push(d);
            }
            Err(e) => {
                assert!(matches!(e, ClientError::Broker(BrokerError::Empty)), "{e}");
                break;
            }
        }
    }
    let mut stored_unanswered = 0;
    for s in 0..SENDERS {
        let total = next[s] + after[s];
        assert!(total >= acked[s], "sender {s}: {} acknowledged, {total} there", acked[s]);
        // Stored, but the broker died before its answer left (at most
        // the sender's batch in flight).
        stored_unanswered += total - acked[s];
        assert!(total - acked[s] <= 8, "sender {s}: more stored than it had in flight");
    }
    assert!(after[unconfirmed.0] >= 1, "the unacknowledged delivery comes again");
    eprintln!(
        "acknowledged {} messages; received before the kill {}; after {}; stored but unanswered {stored_unanswered}",
        acked.iter().sum::<u64>(),
        next.iter().sum::<u64>(),
        after.iter().sum::<u64>()
    );
    drop(kept);
    cleanup(b.stop());
}

/// Peak resident memory of a process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Resident memory of a process now (`VmRSS`), in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_mailboxs_queue_takes_memory_as_messages_use_it_not_as_it_is_sized() {
    // An unbounded mailbox's front is a 2 MiB queue in shared memory, a
    // default bounded one 256 KiB: a broker with thousands of idle
    // mailboxes must not hold all of that (it did, every page faulted in
    // at creation).
    let b = Broker::start("lazy-queues", &[]);
    let c = b.client();
    let pid = b.kid.child.id();
    c.create_mailbox("warm-up", MailboxOptions::default()).unwrap();
    let before = rss_kib(pid);
    let unbounded = MailboxOptions { capacity: Capacity::Unbounded, ..MailboxOptions::default() };
    for i in 0..200 {
        c.create_mailbox(&format!("u{i}"), unbounded).unwrap();
        c.create_mailbox(&format!("b{i}"), MailboxOptions::default()).unwrap();
    }
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(grown < 400 * 32, "400 idle mailboxes took {grown} KiB in the broker (over 32 KiB each)");
    // Each works, and a message in each takes only the pages it touches.
    for i in 0..200 {
        for name in [format!("u{i}"), format!("b{i}")] {
            c.send(&name, 1, name.as_bytes(), OnFull::NoWait).unwrap();
        }
    }
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(grown < 400 * 32, "400 mailboxes holding a message each took {grown} KiB in the broker");
    for i in 0..200 {
        for name in [format!("u{i}"), format!("b{i}")] {
            assert_eq!(c.recv(&name, 0, WaitFor::NoWait).unwrap().data, name.as_bytes());
        }
    }
    cleanup(b.stop());
}

#[test]
fn an_out_of_line_memory_bomb_is_refused_before_it_is_read() {
    let b = Broker::start("bomb", &[]);
    let c = b.client();
    c.create_mailbox("m", MailboxOptions::default()).unwrap();
    let pid = b.kid.child.id();
    let before = peak_rss_kib(pid);
    let bomb = spawn_with_args("ool-bomb", &[b.socket.to_str().unwrap()]);
    assert_eq!(report(&bomb), outcome("refused"), "the broker says why it hangs up");
    finish(bomb);
    let grown = peak_rss_kib(pid).saturating_sub(before);
    assert!(grown < 32 << 10, "the broker's peak memory grew by {grown} KiB for a 512 MiB declaration");
    // And it serves on.
    c.send("m", 1, b"still here", OnFull::NoWait).unwrap();
    assert_eq!(c.recv("m", 0, WaitFor::NoWait).unwrap().data, b"still here");
    cleanup(b.stop());
}

#[test]
fn every_connection_over_the_quota_is_told_so() {
    let dir = std::env::temp_dir().join(format!("conduit-broker-test-{}-connquota", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let b = Broker::start_in(dir, &["100", "", "20"]);
    let kid = spawn_with_args("connector", &[b.socket.to_str().unwrap(), "300"]);
    assert_eq!(report(&kid), outcome("ok 20, quota 280, other []"));
    finish(kid);
    // Root is not held to it, and the broker serves on.
    b.client().create_mailbox("after", MailboxOptions::default()).unwrap();
    cleanup(b.stop());
}

#[test]
fn a_message_too_large_for_a_mailbox_is_refused_with_its_limit_and_the_way_to_raise_it() {
    let b = Broker::start("toolarge", &[]);
    let c = b.client();
    c.create_mailbox("small", MailboxOptions::default()).unwrap();
    let big = vec![7u8; 131_049];
    match refused(c.send("small", 1, &big, OnFull::NoWait)) {
        BrokerError::TooLarge { size, limit, how } => {
            assert_eq!((size, limit), (131_049, 131_048));
            assert!(how.contains("--max-message"), "{how}");
        }
        other => panic!("{other:?}"),
    }
    // Raised: a mailbox made for it takes it, through shared memory.
    let opts = MailboxOptions { max_message: 1 << 20, ..MailboxOptions::default() };
    c.create_mailbox("large", opts).unwrap();
    let huge = vec![9u8; 1 << 20];
    c.send("large", 1, &huge, OnFull::NoWait).unwrap();
    assert_eq!(c.recv("large", 0, WaitFor::NoWait).unwrap().data, huge);
    // More than the broker's own limit cannot be asked for.
    let opts = MailboxOptions { max_message: 1 << 30, ..MailboxOptions::default() };
    assert!(matches!(refused(c.create_mailbox("too", opts)), BrokerError::Invalid(_)));
    cleanup(b.stop());
}

/// Threads of a process.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count()
}

#[test]
fn two_thousand_connections_are_served_by_a_fixed_number_of_threads() {
    let b = Broker::start("many", &[]);
    let pid = b.kid.child.id();
    let before = threads(pid);
    let kid = spawn_with_args("connector", &[b.socket.to_str().unwrap(), "2000", "root"]);
    assert_eq!(report(&kid), outcome("ok 2000, quota 0, other []"));
    let during = threads(pid);
    // The accepting thread, the runtime's workers, and what the process
    // had before (its link to the test): nothing per client.
    assert!(
        during <= before + conduit_broker::WORKER_THREADS + 2,
        "{during} threads serving 2000 clients (before: {before})"
    );
    // And they are served: one more client works alongside them.
    let c = b.client();
    c.create_mailbox("busy", MailboxOptions::default()).unwrap();
    let peers = c.list().unwrap().iter().filter(|o| o.kind == "peer").count();
    assert_eq!(peers, 2001);
    drop(kid);
    cleanup(b.stop());
}

/// A client stopped while it holds a shared mailbox's lock stalls nobody
/// but itself: the broker never waits on it (it looks again later), so
/// brokered operations on that mailbox time out as asked, and everything
/// else goes on.
#[test]
fn a_client_frozen_holding_a_queue_lock_does_not_stall_the_broker() {
    let b = Broker::start("frozen", &[]);
    let c = b.client();
    // Others may read and write: nobody's operations go through the broker.
    c.create_mailbox("locked", MailboxOptions { mode: 0o604, ..MailboxOptions::default() }).unwrap();
    c.create_mailbox("other", MailboxOptions::default()).unwrap();
    let mut kid = spawn_with_args("queue-locker", &[b.socket.to_str().unwrap(), "locked"]);
    assert_eq!(report(&kid), outcome("locked 1"));
    // Brokered receives (as nobody) on the locked mailbox, several at once
    // (more than the broker's runtime has threads): each times out.
    let waiters: Vec<_> = (0..4)
        .map(|_| spawn_with_args("mailbox-waiter-timeout", &[b.socket.to_str().unwrap(), "locked", "nobody"]))
        .collect();
    for w in &waiters {
        assert_eq!(report(w), outcome("timed out"));
    }
    // Meanwhile the broker serves everyone else.
    c.send("other", 1, b"fine", OnFull::NoWait).unwrap();
    assert_eq!(c.recv("other", 0, WaitFor::NoWait).unwrap().data, b"fine");
    assert!(c.list().unwrap().iter().any(|o| o.id == "locked"));
    // The frozen client dies: its locks are taken over, the message it
    // sent is there.
    kid.child.kill().unwrap();
    kid.child.wait().unwrap();
    for w in waiters {
        finish(w);
    }
    assert_eq!(c.recv("locked", 0, WaitFor::Millis(5000)).unwrap().data, b"opened");
    cleanup(b.stop());
}

/// A watcher that never reads its events costs the broker neither memory
/// nor threads: once its socket is full it is dropped, and learns it as
/// `Disconnected` after the events that did arrive.
#[test]
fn a_watcher_that_does_not_read_is_dropped_not_queued_for() {
    let b = Broker::start("lazywatcher", &[]);
    let pid = b.kid.child.id();
    let c = b.client();
    let events = c.watch("flapping").unwrap();
    let owner = b.client();
    let before = threads(pid);
    let (tx, _rx) = conduit::unbounded::<u8>().unwrap();
    for _ in 0..3000 {
        owner.register("flapping", tx.clone(), NameFlags::default()).unwrap();
        owner.release("flapping").unwrap();
    }
    assert!(threads(pid) <= before, "no thread per watcher: {} > {before}", threads(pid));
    let got = events.iter().count();
    assert!(got > 1 && got < 6001, "{got} events, then Disconnected");
    cleanup(b.stop());
}

#[test]
fn direct_addressing_sends_to_a_pid_and_receives_by_sender_between_three_processes() {
    let b = Broker::start("direct", &[]);
    let s = b.socket.to_str().unwrap();
    let me = std::process::id().to_string();
    let c = b.client();
    // Nobody makes an inbox by hand; a process without one is not found.
    assert!(matches!(refused(c.create_mailbox("pid:1", MailboxOptions::default())), BrokerError::Invalid(_)));
    assert!(matches!(refused(c.send_to_pid(1, b"x")), BrokerError::NotFound(_)));
    c.open_inbox().unwrap();
    // A sends first, then B.
    let a = spawn_with_args("pid-sender", &[s, &me, "A"]);
    assert_eq!(report(&a), FromChild::Sent(3));
    let b_kid = spawn_with_args("pid-sender", &[s, &me, "B"]);
    assert_eq!(report(&b_kid), FromChild::Sent(3));
    // Neither may read this process's inbox, root as they are.
    for kid in [&a, &b_kid] {
        let FromChild::Outcome(theft) = report(kid) else { panic!("want the theft's outcome") };
        assert!(theft.contains("Denied"), "{theft}");
    }
    let (pa, pb) = (a.child.id(), b_kid.child.id());
    // receive(B, m) takes only B's messages, in order, though A's are older.
    for i in 0..3 {
        let m = c.recv_from_pid(pb, WaitFor::NoWait).unwrap();
        assert_eq!((m.data, m.sender), (format!("B {i}").into_bytes(), pb));
    }
    assert!(matches!(refused(c.recv_from_pid(pb, WaitFor::NoWait)), BrokerError::Empty));
    // receive(id, m): A's, with A's pid (the kernel's word, not A's).
    for i in 0..3 {
        let m = c.recv_from_any(WaitFor::NoWait).unwrap();
        assert_eq!((m.data, m.sender), (format!("A {i}").into_bytes(), pa));
    }
    finish(a);
    finish(b_kid);
    // The inbox goes with its connection: once the broker has seen the
    // hang-up (it serves connections concurrently, so a new client may ask
    // first), sends to this pid are refused.
    drop(c);
    let c = b.client();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match c.send_to_pid(std::process::id(), b"late") {
            Err(ClientError::Broker(BrokerError::NotFound(_))) => break,
            Ok(_) if std::time::Instant::now() < deadline => std::thread::yield_now(),
            other => panic!("the inbox outlived its connection: {other:?}"),
        }
    }
    cleanup(b.stop());
}

#[test]
fn a_name_taken_over_is_reported_on_the_former_owners_notify_port() {
    let b = Broker::start("namelost", &[]);
    let holder = spawn_with_args("name-holder", &[b.socket.to_str().unwrap()]);
    assert_eq!(report(&holder), FromChild::Ready);
    let c = b.client();
    let (port, _rx) = conduit::unbounded::<u8>().unwrap();
    let take = NameFlags { replace_existing: true, ..NameFlags::default() };
    assert_eq!(c.register("held", port, take).unwrap(), NameReply::PrimaryOwner);
    assert_eq!(report(&holder), outcome(&format!("held lost to Some({})", std::process::id())));
    finish(holder);
    cleanup(b.stop());
}

#[test]
fn the_matchmaker_connects_an_rpc_client_to_a_named_server_and_a_queued_one_takes_over() {
    let b = Broker::start("rpc", &[]);
    let s = b.socket.to_str().unwrap();
    let mut first = spawn_with_args("rpc-named-server", &[s, "calc"]);
    assert_eq!(report(&first), FromChild::Ready);
    let second = spawn_with_args("rpc-named-server", &[s, "calc"]);
    assert_eq!(report(&second), FromChild::Ready);
    let c = b.client();
    // Each transport, chosen by the client; shared memory by default.
    for t in [conduit::rpc::Transport::Socket, conduit::rpc::Transport::Pipe] {
        let other = conduit_tests::CalculatorClient::new(c.connect_rpc_over("calc", t).unwrap());
        assert_eq!(other.add(20, 22).unwrap(), 42, "{t:?}");
    }
    let calc = conduit_tests::CalculatorClient::new(c.connect_rpc("calc").unwrap());
    assert_eq!(calc.add(2, 3).unwrap(), 5);
    assert_eq!(calc.bump().unwrap(), 1);
    assert_eq!(calc.bump().unwrap(), 2);
    // The owner dies: its client is told, and the server in line serves
    // the next connection (a fresh count: another process).
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(matches!(calc.bump(), Err(conduit::rpc::RpcError::ServerDied)));
    let events = c.watch("calc").unwrap();
    while events.recv_timeout(Duration::from_secs(10)).unwrap().owner != Some(second.child.id()) {}
    let calc = conduit_tests::CalculatorClient::new(c.connect_rpc("calc").unwrap());
    assert_eq!(calc.bump().unwrap(), 1);
    drop(second);
    cleanup(b.stop());
}
