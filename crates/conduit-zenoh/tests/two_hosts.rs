//! Two hosts on one machine: two network namespaces joined by a veth pair,
//! a broker (`conduit daemon`) and a bridge (`conduit bridge`) in each;
//! real `conduit send`/`recv` processes, and streaming helpers (this test
//! binary, run again inside a namespace), on opposite sides. Needs root
//! (`ip netns`), as CI has; elsewhere it says why and passes without
//! checking anything.

use std::io::{BufRead, BufReader};

use conduit_zenoh::testbed::{self, TwoHosts};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use conduit_broker::{Client, OnFull, WaitFor};

/// The `conduit` command of the workspace (built if the root's tests have
/// not built it yet).
fn conduit_bin() -> PathBuf {
    let bridge = PathBuf::from(env!("CARGO_BIN_EXE_conduit-bridge"));
    let dir = bridge.parent().unwrap().to_path_buf();
    let bin = dir.join("conduit");
    if !bin.is_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target = dir.parent().unwrap();
        let ok = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-q", "-p", "conduit-ipc-cli", "--target-dir"])
            .arg(target)
            .current_dir(&root)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot build the conduit command");
    }
    bin
}

/// Two hosts with their bridges up, or `None` (and why) without root.
fn hosts(tag: &str) -> Option<TwoHosts> {
    hosts_with(tag, |_| {})
}

/// The same, `set` first (bridges' options).
fn hosts_with(tag: &str, set: impl FnOnce(&mut TwoHosts)) -> Option<TwoHosts> {
    let bridge = PathBuf::from(env!("CARGO_BIN_EXE_conduit-bridge"));
    match TwoHosts::new(tag, &conduit_bin(), &bridge) {
        Ok(mut h) => {
            set(&mut h);
            h.start_bridges().unwrap();
            Some(h)
        }
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            eprintln!("SKIPPED: {e}");
            None
        }
        Err(e) => panic!("cannot set up two hosts: {e}"),
    }
}

/// This test binary, run again inside host `i` as helper `role`.
fn run_helper(h: &TwoHosts, i: usize, role: &str, args: &str) -> Child {
    let me = std::env::current_exe().unwrap();
    h.command(i, &me)
        .args(["--exact", "helper", "--nocapture", "--test-threads=1"])
        .env("CONDUIT_ZENOH_HELPER", role)
        .env("CONDUIT_ZENOH_ARGS", args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Run helper `role` in host `i` to its end; it must succeed. Its lines.
fn run_helper_to_end(h: &TwoHosts, i: usize, role: &str, args: &str) -> Vec<String> {
    let mut child = run_helper(h, i, role, args);
    let said: Vec<String> = lines(&mut child).collect();
    assert!(child.wait().unwrap().success(), "helper {role}: {said:?}");
    said
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Lines a helper prints, as they come.
fn lines(child: &mut Child) -> impl Iterator<Item = String> + use<> {
    // (libtest may print "test helper ... " before the first, on its line.)
    BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| Some(l[l.find("> ")?..].to_string()))
}

#[test]
fn mailboxes_cross_hosts_through_the_bridges() {
    let Some(h) = hosts("m") else { return };
    // A mailbox of host a, seen on host b.
    assert!(h.conduit(0, &["mailbox", "create", "jobs", "--capacity", "3"]).status.success());
    h.wait_listed(1, "remote", "jobs@a", true).unwrap();
    h.wait_listed(1, "bridge-peer", "b→a", true).unwrap();
    // `conduit top` shows the bridge, its peer and the remote mailbox.
    let top = h.conduit(1, &["top", "--once", "--json", "--interval", "0.1"]);
    let v: serde_json::Value = serde_json::from_slice(&top.stdout).unwrap();
    for (kind, id) in [("bridge", "b"), ("bridge-peer", "b→a"), ("remote", "jobs@a")] {
        let seen = v["objects"].as_array().unwrap().iter().any(|o| o["kind"] == kind && o["id"] == id);
        assert!(seen, "top lists {kind} {id}: {v}");
    }

    // b sends, a receives; a sends, b receives.
    assert!(h.conduit(1, &["send", "jobs", "hello from b"]).status.success());
    assert_eq!(text(&h.conduit(0, &["recv", "--nowait", "jobs"])), "hello from b");
    assert!(h.conduit(0, &["send", "jobs", "hello from a"]).status.success());
    assert_eq!(text(&h.conduit(1, &["recv", "--nowait", "jobs"])), "hello from a");
    assert_eq!(h.conduit(1, &["recv", "--nowait", "jobs"]).status.code(), Some(3), "empty");
    let t = Instant::now();
    assert_eq!(h.conduit(1, &["recv", "--timeout", "1500", "jobs"]).status.code(), Some(5), "timed out");
    assert!(t.elapsed() >= Duration::from_millis(1500), "a wait longer than one forwarded slice");

    // Bounded capacity holds end to end: the bridge buffers nothing.
    for n in 0..3 {
        assert!(h.conduit(1, &["send", "jobs", &format!("m{n}")]).status.success());
    }
    assert_eq!(h.conduit(1, &["send", "--nowait", "jobs", "m3"]).status.code(), Some(4), "full");
    assert_eq!(h.conduit(1, &["send", "--timeout", "300", "jobs", "m3"]).status.code(), Some(5), "full for 300 ms");
    assert_eq!(h.conduit(1, &["send", "--leave", "jobs", "m3"]).status.code(), Some(1), "cannot be left here");
    for n in 0..3 {
        assert_eq!(text(&h.conduit(0, &["recv", "--nowait", "jobs"])), format!("m{n}"), "in order, once");
    }
    assert_eq!(h.conduit(0, &["recv", "--nowait", "jobs"]).status.code(), Some(3), "nothing more");

    // Permissions are checked on a, for b's caller: nobody may not send to
    // root's 0600 mailbox, and may to a 0622 one.
    let o = h.conduit_as_nobody(1, &["send", "jobs", "x"]);
    assert_eq!(o.status.code(), Some(6), "denied on host a: {o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("uid 65534"), "{o:?}");
    assert!(h.conduit(0, &["mailbox", "create", "open", "--mode", "0622"]).status.success());
    h.wait_listed(1, "remote", "open@a", true).unwrap();
    assert!(h.conduit_as_nobody(1, &["send", "open", "from nobody"]).status.success());
    assert_eq!(text(&h.conduit(0, &["recv", "--nowait", "open"])), "from nobody");
    // Names are each host's: b cannot make its own `jobs` while a's is seen.
    assert_eq!(h.conduit(1, &["mailbox", "create", "jobs"]).status.code(), Some(10));
    assert_eq!(h.conduit(1, &["rm", "mailbox", "jobs"]).status.code(), Some(6), "removed where it lives");

    // A receiver on b that dies holding a message (received, not
    // acknowledged): the message goes back to a's mailbox.
    assert!(h.conduit(0, &["send", "jobs", "held"]).status.success());
    let mut holder = run_helper(&h, 1, "hold", "jobs");
    assert_eq!(lines(&mut holder).next().as_deref(), Some("> holding held"));
    holder.kill().unwrap();
    holder.wait().unwrap();
    let back =
        h.wait_for(0, "the held message to come back", |o| o.status.success(), &["recv", "--nowait", "jobs"]).unwrap();
    assert_eq!(text(&back), "held");

    // A second bridge under a name already taken is refused.
    let bridge = PathBuf::from(env!("CARGO_BIN_EXE_conduit-bridge"));
    let twin = h.command(1, &bridge).args(["--name", "a", "--connect", &testbed::endpoint_a()]).output().unwrap();
    assert_eq!(twin.status.code(), Some(1), "{twin:?}");
    assert!(String::from_utf8_lossy(&twin.stderr).contains("already runs"), "{twin:?}");
}

#[test]
fn a_stream_crosses_a_cut_link_and_a_dead_bridge_is_noticed() {
    let Some(mut h) = hosts("s") else { return };
    assert!(h.conduit(0, &["mailbox", "create", "stream", "--capacity", "8"]).status.success());
    h.wait_listed(1, "remote", "stream@a", true).unwrap();
    const N: u32 = 3000;
    // A consumer on a, a producer on b (blocking sends into 8 slots).
    let mut consumer = run_helper(&h, 0, "consume", &N.to_string());
    let mut producer = run_helper(&h, 1, "produce", &N.to_string());
    let mut progress = lines(&mut producer);
    assert_eq!(progress.next().as_deref(), Some("> sent 100"));
    // Cut the link for 4 s: twice as long as a call waits for its answer
    // (2 s for a blocking send: its 1 s slice and 1 s more), so that a
    // call started in the first half of the cut is asked again even on a
    // busy machine, and shorter than the 12 s lease, with room for TCP's
    // retransmission backoff. The calls on the way are lost and retried
    // with their ids; nothing is lost, nothing runs twice.
    h.link(false).unwrap();
    std::thread::sleep(Duration::from_millis(4000));
    h.link(true).unwrap();
    assert!(producer.try_wait().unwrap().is_none(), "the producer was still sending when the link came back");
    assert_eq!(progress.last().as_deref(), Some(&*format!("> sent {N}")));
    assert!(producer.wait().unwrap().success());
    let got: Vec<String> = lines(&mut consumer).collect();
    assert_eq!(got.last().map(String::as_str), Some(&*format!("> received {N} in order, no duplicate")), "{got:?}");
    assert!(consumer.wait().unwrap().success());
    let log = std::fs::read_to_string(h.host_dir(1).join("bridge.log")).unwrap();
    assert!(log.contains("asking again with the same id"), "a call was lost in the cut and retried: {log}");

    // The bridge of a dies: b sees it (liveliness, within the lease) and
    // its import goes; a send from b then fails as not found.
    let mut bridge = h.bridges[0].take().unwrap();
    bridge.kill().unwrap();
    bridge.wait().unwrap();
    h.wait_listed(1, "remote", "stream@a", false).unwrap();
    assert_eq!(h.conduit(1, &["send", "--nowait", "stream", "x"]).status.code(), Some(7));
    // A new bridge on a: the mailbox is back on b.
    h.bridges[0] = Some(h.start_bridge(0).unwrap());
    h.wait_listed(1, "remote", "stream@a", true).unwrap();
    assert!(h.conduit(1, &["send", "stream", "again"]).status.success());
    assert_eq!(text(&h.conduit(0, &["recv", "--nowait", "stream"])), "again");
}

#[conduit::service]
pub trait Calculator {
    fn add(&self, a: i64, b: i64) -> i64;
    fn pid(&self) -> u32;
}

struct Adder;

impl Calculator for Adder {
    fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
    fn pid(&self) -> u32 {
        std::process::id()
    }
}

#[test]
fn an_rpc_client_calls_a_service_of_the_other_host_through_the_same_stubs() {
    let Some(h) = hosts("r") else { return };
    // The service on a, registered with a's broker under "calc".
    let mut server = run_helper(&h, 0, "serve", "calc");
    let mut said = lines(&mut server);
    let pid = said.next().unwrap();
    assert!(pid.starts_with("> serving as "), "{pid}");
    h.wait_listed(1, "name", "calc", true).unwrap();
    // Something that is not an RPC connection, sent on b to the imported
    // name's port: carried to a's port like any message (where the
    // service's accepting thread skips what is not a connection), and b's
    // bridge goes on serving the name.
    let said_garbage = run_helper_to_end(&h, 1, "garbage", "calc");
    assert_eq!(said_garbage, ["> sent 3 frames that are not connections"]);
    // A client on b: the same `connect_rpc` and stubs, 200 calls.
    let got = run_helper_to_end(&h, 1, "call", "calc");
    assert_eq!(got.first().map(String::as_str), Some("> 200 calls right"), "{got:?}");
    assert_eq!(got.get(1).map(|l| l.replace("answered by", "serving as")), Some(pid.clone()), "a's process ran them");
    // The service killed: a client on b gets ServerDied, never a hang.
    let mut waiting = run_helper(&h, 1, "call-until-died", "calc");
    let mut progress = lines(&mut waiting);
    assert_eq!(progress.next().as_deref(), Some("> calling"));
    server.kill().unwrap();
    server.wait().unwrap();
    let rest: Vec<String> = progress.collect();
    assert!(waiting.wait().unwrap().success(), "{rest:?}");
    assert_eq!(rest.last().map(String::as_str), Some("> ServerDied"), "{rest:?}");
}

#[test]
fn a_typed_sender_on_one_host_sends_to_a_receiver_on_the_other() {
    let Some(h) = hosts("p") else { return };
    assert!(h.conduit(0, &["mailbox", "create", "go"]).status.success());
    // A receiver on a, its port registered with a's broker as "numbers",
    // bounded(4); it reads nothing until told to.
    let mut receiver = run_helper(&h, 0, "port-recv", "numbers");
    let mut heard = lines(&mut receiver);
    assert_eq!(heard.next().as_deref(), Some("> registered"));
    h.wait_listed(1, "name", "numbers", true).unwrap();
    // A sender on b: `lookup::<(u32, String)>("numbers")`, the same API as
    // on one host. Capacity holds end to end: a's port (4), the one on its
    // way, b's bridge's port (PORT_DEPTH) — then the sender waits.
    let mut sender = run_helper(&h, 1, "port-send", "numbers");
    let mut said = lines(&mut sender);
    let full = 4 + 1 + conduit_zenoh::bridge::PORT_DEPTH;
    assert_eq!(said.next(), Some(format!("> full after {full}")));
    assert!(h.conduit(0, &["send", "go", "now"]).status.success());
    let rest: Vec<String> = said.collect();
    assert!(sender.wait().unwrap().success(), "{rest:?}");
    assert_eq!(rest, ["> sent 301 and one with a right"]);
    // Every message once, in order; the one holding a right (descriptors
    // cannot cross) was dropped on b, and what followed it still came.
    let got: Vec<String> = heard.collect();
    assert!(receiver.wait().unwrap().success(), "{got:?}");
    assert_eq!(got, ["> received 301 in order, nothing else"]);
    // The receiver's process has exited: its name goes on a, then on b,
    // and a sender on b learns it (Disconnected), never a hang.
    let said = run_helper_to_end(&h, 1, "port-send-until-gone", "numbers");
    assert_eq!(said.last().map(String::as_str), Some("> Disconnected"), "{said:?}");
}

#[test]
fn a_bridge_serves_only_what_it_exports_whatever_another_bridge_asks() {
    let Some(h) = hosts_with("o", |h| h.only[0] = Some("pub*".into())) else { return };
    for name in ["pub-jobs", "secret", "go"] {
        assert!(h.conduit(0, &["mailbox", "create", name, "--mode", "0666"]).status.success());
    }
    // A port registered on a as "secret-port" (its helper holds it while
    // it waits for `go`, which never comes).
    let mut port = run_helper(&h, 0, "port-recv", "secret-port");
    assert_eq!(lines(&mut port).next().as_deref(), Some("> registered"));
    h.wait_listed(1, "remote", "pub-jobs@a", true).unwrap();
    assert!(!h.listed(1, "remote", "secret@a"), "not exported, not imported");
    // A bridge that asks a's bridge directly, past what a exports: a send
    // and a receive on the mailbox `secret`, a message for the name
    // `secret-port`. All refused as if they did not exist; nothing reached.
    let said = run_helper_to_end(&h, 1, "ask-past-only", "");
    assert_eq!(said, ["> call: not found, not found", "> port: not found"]);
    assert_eq!(h.conduit(0, &["recv", "--nowait", "secret"]).status.code(), Some(3), "nothing sent there");
    port.kill().unwrap();
    port.wait().unwrap();
}

/// Not a test: the helpers the tests above run inside a namespace.
#[test]
fn helper() {
    let Ok(role) = std::env::var("CONDUIT_ZENOH_HELPER") else { return };
    let args = std::env::var("CONDUIT_ZENOH_ARGS").unwrap();
    let c = Client::connect().unwrap();
    match role.as_str() {
        "hold" => {
            let d = c.recv_held(&args, 0, WaitFor::Millis(10_000)).unwrap();
            println!("> holding {}", String::from_utf8_lossy(&d.message().data));
            // Killed here, before the acknowledgement.
            std::thread::sleep(Duration::from_secs(60));
        }
        "produce" => {
            let n: u32 = args.parse().unwrap();
            for i in 1..=n {
                c.send("stream", 1, &i.to_le_bytes(), OnFull::Block).unwrap();
                if i % 100 == 0 {
                    println!("> sent {i}");
                }
            }
        }
        "consume" => {
            let n: u32 = args.parse().unwrap();
            for want in 1..=n {
                let m = c.recv("stream", 0, WaitFor::Millis(30_000)).unwrap();
                let got = u32::from_le_bytes(m.data[..4].try_into().unwrap());
                assert_eq!(got, want, "in order, once");
            }
            assert!(c.recv("stream", 0, WaitFor::Millis(500)).is_err(), "no duplicate after the last");
            println!("> received {n} in order, no duplicate");
        }
        "serve" => {
            let _thread = c.serve_rpc(&args, Default::default(), std::sync::Arc::new(CalculatorServer(Adder))).unwrap();
            println!("> serving as {}", std::process::id());
            std::thread::sleep(Duration::from_secs(120));
        }
        "call" => {
            let calc = CalculatorClient::new(c.connect_rpc(&args).unwrap());
            for i in 0..200 {
                assert_eq!(calc.add(i, 1000).unwrap(), i + 1000);
            }
            println!("> 200 calls right");
            println!("> answered by {}", calc.pid().unwrap());
        }
        "garbage" => {
            let port = c.lookup::<u64>(&args).unwrap();
            for v in [7u64, u64::MAX, 0] {
                port.send(v).unwrap();
            }
            println!("> sent 3 frames that are not connections");
        }
        "port-recv" => {
            let (tx, rx) = conduit::bounded::<(u32, String)>(4).unwrap();
            c.register(&args, tx, Default::default()).unwrap();
            println!("> registered");
            c.recv("go", 0, WaitFor::Millis(60_000)).unwrap();
            for want in 0..=300u32 {
                let got = rx.recv_timeout(Duration::from_secs(30)).unwrap();
                assert_eq!(got, (want, format!("m{want}")), "in order, once");
            }
            let more = rx.recv_timeout(Duration::from_secs(1));
            assert!(matches!(more, Err(conduit::RecvTimeoutError::Timeout)), "{more:?}");
            println!("> received 301 in order, nothing else");
        }
        "port-send" => {
            let port = c.lookup::<(u32, String)>(&args).unwrap();
            let msg = |i: u32| (i, format!("m{i}"));
            // Until a send has waited 2 s in vain: everything on the way
            // is full.
            let mut i = 0u32;
            loop {
                match port.try_send(msg(i)) {
                    Ok(()) => i += 1,
                    Err(conduit::TrySendError::Full(m)) => match port.send_timeout(m, Duration::from_secs(2)) {
                        Ok(()) => i += 1,
                        Err(conduit::SendTimeoutError::Timeout(_)) => break,
                        Err(e) => panic!("{e:?}"),
                    },
                    Err(e) => panic!("{e:?}"),
                }
            }
            println!("> full after {i}");
            while i < 300 {
                port.send(msg(i)).unwrap();
                i += 1;
            }
            // A message holding a right: it cannot cross.
            let (right, _keep) = conduit::unbounded::<u64>().unwrap();
            c.lookup::<conduit::Sender<u64>>(&args).unwrap().send(right).unwrap();
            port.send(msg(300)).unwrap();
            println!("> sent 301 and one with a right");
        }
        "port-send-until-gone" => {
            // The name may still be listed here for a moment: a lookup that
            // fails says the same.
            let Ok(port) = c.lookup::<(u32, String)>(&args) else { return println!("> Disconnected") };
            let t = Instant::now();
            loop {
                match port.send_timeout((0, "late".into()), Duration::from_secs(1)) {
                    Ok(()) | Err(conduit::SendTimeoutError::Timeout(_)) if t.elapsed() < Duration::from_secs(30) => {}
                    Err(conduit::SendTimeoutError::Disconnected(_)) => break println!("> Disconnected"),
                    other => panic!("{other:?}"),
                }
            }
        }
        "ask-past-only" => {
            use conduit_broker::protocol::{BrokerError, Caller, RemoteOp};
            use conduit_zenoh::wire::{self, Answer, Answers, Call, Op, PortSend};
            let rt = tokio::runtime::Runtime::new().unwrap();
            let answers = rt.block_on(async {
                let mut config = zenoh::Config::default();
                config.insert_json5("mode", "\"peer\"").unwrap();
                config.insert_json5("scouting/multicast/enabled", "false").unwrap();
                config.insert_json5("connect/endpoints", &format!("[\"{}\"]", testbed::endpoint_a())).unwrap();
                let z = zenoh::open(config).await.unwrap();
                let ask = async |key: String, payload: Vec<u8>| {
                    let replies = z.get(key).payload(payload).timeout(Duration::from_secs(10)).await.unwrap();
                    let reply = replies.recv_async().await.unwrap();
                    wire::decode_answers(&reply.result().unwrap().payload().to_bytes(), 1 << 20).unwrap()
                };
                let root = Caller { uid: 0, gid: 0, pid: 1 };
                let send =
                    RemoteOp::Send { name: "secret".into(), mtype: 1, data: b"x".to_vec(), full: OnFull::NoWait };
                let recv = RemoteOp::Recv { name: "secret".into(), select: 0, wait: WaitFor::NoWait };
                let ops = vec![Op { caller: root, op: send }, Op { caller: root, op: recv }];
                let call = Call { origin: "evil".into(), session: 1, id: 1, ops };
                let c = ask(wire::call_key("a"), wire::encode(&call)).await;
                let p =
                    PortSend { origin: "evil".into(), session: 1, id: 2, name: "secret-port".into(), data: vec![1] };
                let p = ask(wire::port_key("a"), wire::encode(&p)).await;
                (c, p)
            });
            let say = |a: &Answer| match a {
                Answer::Refused(BrokerError::NotFound(_)) => "not found".to_string(),
                other => format!("{other:?}"),
            };
            let (Answers::All(c), Answers::All(p)) = answers else { panic!("{answers:?}") };
            println!("> call: {}", c.iter().map(say).collect::<Vec<_>>().join(", "));
            println!("> port: {}", p.iter().map(say).collect::<Vec<_>>().join(", "));
        }
        "call-until-died" => {
            let calc = CalculatorClient::new(c.connect_rpc(&args).unwrap());
            calc.add(1, 2).unwrap();
            println!("> calling");
            let t = Instant::now();
            loop {
                match calc.add(1, 2) {
                    Ok(3) if t.elapsed() < Duration::from_secs(30) => {}
                    Err(conduit::rpc::RpcError::ServerDied) => break println!("> ServerDied"),
                    other => panic!("{other:?}"),
                }
            }
        }
        r => panic!("no helper {r}"),
    }
}
