//! The `conduit` command, run as a user would.

use std::process::Command;
use std::time::Duration;

fn conduit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conduit"))
}

#[test]
fn version_and_help() {
    let out = conduit().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("conduit "));
    let out = conduit().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for sub in ["tour", "bench"] {
        assert!(help.contains(sub), "help lists {sub}: {help}");
    }
    assert!(!help.contains("__tour-child"), "internal subcommands stay hidden");
}

#[test]
fn tour_runs_every_step_and_exits_0() {
    let out = conduit().arg("tour").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tour failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for step in [
        "spawn",
        "round-trip",
        "bounded",
        "rendezvous",
        "unbounded",
        "rights",
        "port-set",
        "call",
        "dead-peer",
        "async",
        "tcp",
        "udp",
        "rpc",
        "remote",
    ] {
        assert!(text.lines().any(|l| l.trim_start().starts_with("ok") && l.contains(step)), "step {step}:\n{text}");
    }
    assert!(!text.contains("FAIL"));
}

/// Every case `conduit bench` has.
const NAMES: [&str; 34] = [
    "floor/line",
    "floor/spin",
    "floor/futex",
    "floor/pipe",
    "floor/uds",
    "floor/tcp",
    "floor/udp",
    "floor/posix-mq",
    "floor/sysv-msg",
    "floor/memcpy",
    "conduit/shm-spin",
    "conduit/shm",
    "conduit/shm-loan",
    "conduit/uds",
    "conduit/pipe",
    "conduit/fifo",
    "conduit/tcp",
    "conduit/unix-stream",
    "conduit/udp",
    "conduit/sysv",
    "conduit/posix-mq-typed",
    "conduit/mailbox",
    "conduit/mailbox-unbounded",
    "conduit/mailbox-durable",
    "conduit/rpc",
    "conduit/rpc-uds",
    "conduit/rpc-tcp",
    "peer/iceoryx2",
    "peer/ipc-channel",
    "peer/dbus",
    "peer/redis",
    "peer/redis-aof",
    "peer/tarpc",
    "peer/tonic",
];

#[test]
fn bench_writes_every_case_to_json() {
    let dir = std::env::temp_dir().join(format!("conduit-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let svg = dir.join("out.svg");
    // peer/dbus needs a dbus-daemon, peer/redis* a redis-server (.ci/run
    // installs both); without one the other cases still run.
    let installed =
        |tool: &str| std::process::Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    let missing: Vec<&str> = [("dbus-daemon", "peer/dbus"), ("redis-server", "peer/redis")]
        .into_iter()
        .filter(|(tool, _)| !installed(tool))
        .map(|(tool, case)| {
            eprintln!("{tool} not installed: bench without {case}*");
            case
        })
        .collect();
    let runs = |n: &&str| !missing.iter().any(|m| n.starts_with(m));
    let runs = &runs;
    let mut cmd = conduit();
    cmd.args(["bench", "--smoke", "--json"]).arg(&json).arg("--svg").arg(&svg);
    if !missing.is_empty() {
        let all: Vec<&str> = NAMES.iter().copied().filter(|n| runs(n)).collect();
        cmd.arg("--only").arg(all.join(","));
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = std::fs::read_to_string(&json).unwrap();
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("conduit/shm-loan"), "{chart}");
    std::fs::remove_dir_all(&dir).unwrap();
    for name in NAMES.iter().filter(|n| runs(n)) {
        assert!(doc.contains(&format!("\"name\": \"{name}\"")), "{name} in {doc}");
    }
    for field in [
        "rtt_p50_ns",
        "rtt_p99_ns",
        "msgs_per_s_64b",
        "gb_per_s_1mib",
        "calls_per_s",
        "cpu_per_call_ns",
        "msgs_per_s_64b_16",
    ] {
        assert!(doc.contains(field), "{field} in {doc}");
    }
}

#[test]
fn bench_rejects_an_unknown_case() {
    let out = conduit().args(["bench", "--only", "no/such"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no case matches"));
}

/// A `conduit daemon` on a private socket, stopped with SIGTERM on drop.
struct Daemon {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Daemon {
    fn start(tag: &str) -> Daemon {
        Daemon::start_logged(tag, &[]).0
    }

    /// A daemon run under `wrapper` (e.g. `prlimit …`), and its log lines
    /// as they come.
    fn start_logged(tag: &str, wrapper: &[&str]) -> (Daemon, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let dir = std::env::temp_dir().join(format!("conduit-cli-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(env!("CARGO_BIN_EXE_conduit"));
                c
            }
            None => conduit(),
        };
        let child = cmd
            .arg("daemon")
            .env("CONDUIT_BROKER", dir.join("broker.sock"))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut d = Daemon { child, dir };
        // Wait for "broker listening" on its log (stderr).
        use std::io::BufRead;
        let err = d.child.stderr.take().unwrap();
        let mut lines = std::io::BufReader::new(err).lines();
        assert!(lines.any(|l| l.unwrap().contains("broker listening")), "daemon did not start");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = std::sync::Arc::clone(&log);
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| keep.lock().unwrap().push(l)));
        (d, log)
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        conduit().args(args).env("CONDUIT_BROKER", self.dir.join("broker.sock")).output().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "daemon stops cleanly on SIGTERM: {status:?}");
        assert!(!self.dir.join("broker.sock").exists(), "socket removed");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn ls_json_shows_a_conduit_mailbox_and_a_system_v_queue() {
    let d = Daemon::start("ls");
    let out = d.run(&["mailbox", "create", "inbox", "--capacity", "4", "--mode", "0640"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(d.run(&["send", "inbox", "--type", "3", "hello"]).status.success());
    // A System V queue, made the classic way.
    // SAFETY: msgget with IPC_PRIVATE only creates a queue; we remove it below.
    let msqid = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    assert!(msqid >= 0);
    let out = d.run(&["ls", "--json"]);
    let _ = conduit().args(["rm", "msg", &msqid.to_string()]).status();
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let objects = doc["objects"].as_array().unwrap();
    let inbox = objects.iter().find(|o| o["kind"] == "mailbox" && o["id"] == "inbox").expect("the mailbox");
    assert_eq!(
        (inbox["depth"].as_u64(), inbox["capacity"].as_u64(), inbox["mode"].as_str()),
        (Some(1), Some(4), Some("640"))
    );
    assert_eq!(inbox["source"], "conduit");
    let seg = objects.iter().find(|o| o["kind"] == "segment" && o["id"] == "mailbox/inbox");
    assert!(seg.is_some_and(|s| s["capacity"].as_u64() >= Some(4096)), "its queue in shared memory: {doc}");
    let q = objects.iter().find(|o| o["kind"] == "sysv-msg" && o["id"] == msqid.to_string().as_str());
    assert!(q.is_some_and(|q| q["source"] == "kernel" && q["mode"] == "600"), "the System V queue: {doc}");
}

#[test]
fn ls_json_agrees_with_ipcs_on_creator_pids_and_times() {
    let q = conduit::kernel::MessageQueue::private(0o640).unwrap();
    // A send from another process (conduit send), a receive from this one.
    let target = format!("sysv:{}", q.id());
    let sender = conduit().args(["send", &target, "--type", "2", "x"]).spawn().unwrap();
    let sender_pid = sender.id();
    assert!(sender.wait_with_output().unwrap().status.success());
    assert_eq!(q.recv(conduit::kernel::Select::First).unwrap().0, 2);
    let out = conduit().args(["ls", "--json"]).output().unwrap();
    let ipcs_p = Command::new("ipcs").args(["-q", "-p"]).output();
    let _ = q.remove();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let o = doc["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "sysv-msg" && o["id"] == q.id().to_string().as_str())
        .expect("the queue")
        .clone();
    assert_eq!(o["last_pids"]["last_send"].as_u64(), Some(u64::from(sender_pid)));
    assert_eq!(o["last_pids"]["last_recv"].as_u64(), Some(u64::from(std::process::id())));
    assert_eq!(o["creator"]["uid"].as_u64(), Some(u64::from(rustix::process::getuid().as_raw())));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for t in ["send", "recv", "change"] {
        let v = o["times"][t].as_i64().unwrap();
        assert!((now - 60..=now + 1).contains(&v), "{t}: {v}");
    }
    // `ipcs -q -p` (util-linux) prints: msqid owner lspid lrpid.
    if let Ok(p) = ipcs_p {
        let text = String::from_utf8_lossy(&p.stdout);
        let row = text.lines().find(|l| l.split_whitespace().next() == Some(q.id().to_string().as_str()));
        let row: Vec<&str> = row.expect("ipcs lists the queue").split_whitespace().collect();
        assert_eq!((row[2], row[3]), (sender_pid.to_string().as_str(), std::process::id().to_string().as_str()));
    }
}

#[test]
fn send_and_recv_exit_codes_tell_empty_full_timeout_denied_and_not_found() {
    let d = Daemon::start("codes");
    assert!(d.run(&["mailbox", "create", "one", "--capacity", "1"]).status.success());
    let code = |o: std::process::Output| o.status.code();
    assert_eq!(code(d.run(&["recv", "one", "--nowait"])), Some(3), "empty");
    assert_eq!(code(d.run(&["send", "one", "a"])), Some(0));
    assert_eq!(code(d.run(&["send", "one", "--nowait", "b"])), Some(4), "full");
    assert_eq!(code(d.run(&["send", "one", "--timeout", "20", "b"])), Some(5), "timeout");
    assert_eq!(code(d.run(&["recv", "nope"])), Some(7), "not found");
    assert_eq!(code(d.run(&["mailbox", "create", "one"])), Some(10), "exists");
    let out = d.run(&["recv", "one"]);
    assert_eq!((out.status.code(), &out.stdout[..]), (Some(0), &b"a"[..]));
    assert_eq!(code(d.run(&["rm", "mailbox", "one"])), Some(0));
    assert_eq!(code(d.run(&["recv", "one", "--nowait"])), Some(7));
}

/// Wait for a child to exit, at most `secs` seconds (`None`: still running).
fn exit_within(child: &mut std::process::Child, secs: u64) -> Option<std::process::ExitStatus> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if std::time::Instant::now() > until {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn the_daemon_stops_on_sigterm_even_with_its_socket_file_gone() {
    let mut d = Daemon::start("nosock");
    std::fs::remove_file(d.dir.join("broker.sock")).unwrap();
    let pid = rustix::process::Pid::from_child(&d.child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = exit_within(&mut d.child, 10);
    if status.is_none() {
        let _ = d.child.kill();
    }
    assert!(status.is_some_and(|s| s.success()), "stopped cleanly: {status:?}");
}

/// The outside report's reproduction: `conduit recv` killed (SIGKILL or
/// Ctrl-C) while it waits, then `conduit send` at once: the message waits
/// for the next `conduit recv`, for every kind of mailbox.
#[test]
fn a_killed_conduit_recv_does_not_take_the_next_message() {
    let d = Daemon::start("deadrecv");
    let kinds: [&[&str]; 4] =
        [&["--capacity", "unbounded"], &["--capacity", "4"], &["--capacity", "0"], &["--durable"]];
    for (k, opts) in kinds.iter().enumerate() {
        for signal in [rustix::process::Signal::KILL, rustix::process::Signal::INT] {
            let name = format!("ub{k}-{}", signal.as_raw());
            let mut create = vec!["mailbox", "create", &name];
            create.extend_from_slice(opts);
            assert!(d.run(&create).status.success());
            let mut recv = conduit()
                .args(["recv", &name])
                .env("CONDUIT_BROKER", d.dir.join("broker.sock"))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let pid = recv.id();
            // Broker-kept mailboxes list their waiting receivers; a shared
            // one (bounded, or an unbounded one's front) is waited on in the
            // receiver's own process.
            if !matches!(opts, ["--capacity", "4" | "unbounded"]) {
                loop {
                    let out = d.run(&["ls", "--json"]);
                    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                    let waiting = doc["objects"].as_array().unwrap().iter().any(|o| {
                        o["id"] == name.as_str() && o["pids"].as_array().is_some_and(|p| p.contains(&pid.into()))
                    });
                    if waiting {
                        break;
                    }
                }
            }
            rustix::process::kill_process(rustix::process::Pid::from_child(&recv), signal).unwrap();
            recv.wait().unwrap();
            let sock = d.dir.join("broker.sock");
            let sender = std::thread::spawn(move || {
                let mut send =
                    conduit().args(["send", &name.clone(), "hi"]).env("CONDUIT_BROKER", sock).spawn().unwrap();
                assert!(send.wait().unwrap().success());
                name
            });
            let name = {
                // The rendezvous send waits for this receive.
                let out = d.run(&["recv", &format!("ub{k}-{}", signal.as_raw()), "--timeout", "10000"]);
                assert_eq!((out.status.code(), &out.stdout[..]), (Some(0), &b"hi"[..]), "{opts:?} {signal:?}");
                sender.join().unwrap()
            };
            assert_eq!(d.run(&["recv", &name, "--nowait"]).status.code(), Some(3), "delivered once");
        }
    }
}

fn ls_objects(d: &Daemon) -> Vec<serde_json::Value> {
    let out = d.run(&["ls", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["warnings"].as_array().is_some_and(|w| w.is_empty()), "nothing missing: {doc}");
    doc["objects"].as_array().unwrap().clone()
}

/// `conduit ls` against the kernel's own tools: System V keys as `ipcs`
/// prints them, POSIX queue depths as `mq_getattr` reports them (listed
/// even where no /dev/mqueue is mounted), POSIX shared memory; `rm` of
/// each, and the exit codes of `rm` for what does not exist.
#[test]
fn ls_agrees_with_ipcs_and_mq_getattr_and_rm_removes_what_it_lists() {
    use std::ffi::CString;
    let d = Daemon::start("kernel");
    let pid = std::process::id();
    // A System V queue with a key, as a C program would make it.
    let key = 0x0c0d_0000 | (pid as i32 & 0xffff);
    // SAFETY: msgget creates a queue; removed below.
    let msqid = unsafe { libc::msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
    assert!(msqid >= 0, "msgget");
    // A POSIX queue holding three messages.
    let mq_name = CString::new(format!("/conduit-cli-test-{pid}")).unwrap();
    // SAFETY: valid name; default attributes (null); closed below.
    let mq =
        unsafe { libc::mq_open(mq_name.as_ptr(), libc::O_CREAT | libc::O_RDWR, 0o600, std::ptr::null_mut::<u8>()) };
    assert!(mq >= 0, "mq_open");
    for m in [b"a", b"b", b"c"] {
        // SAFETY: a valid descriptor and a 1-byte buffer.
        assert_eq!(unsafe { libc::mq_send(mq, m.as_ptr().cast(), 1, 0) }, 0);
    }
    // SAFETY: an all-zero mq_attr is valid to be overwritten.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and out-pointer.
    assert_eq!(unsafe { libc::mq_getattr(mq, &mut attr) }, 0);
    // SAFETY: closed once.
    unsafe { libc::mq_close(mq) };
    // A POSIX shared-memory object.
    let shm_name = format!("/conduit-cli-test-shm-{pid}");
    let shm =
        rustix::shm::open(shm_name.as_str(), rustix::shm::OFlags::CREATE | rustix::shm::OFlags::RDWR, 0o600.into())
            .unwrap();
    rustix::fs::ftruncate(&shm, 8192).unwrap();
    drop(shm);

    let objects = ls_objects(&d);
    let find = |kind: &str, id: &str| objects.iter().find(|o| o["kind"] == kind && o["id"] == id).cloned();
    let q = find("sysv-msg", &msqid.to_string()).expect("the System V queue");
    let ipcs = Command::new("ipcs").arg("-q").output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let want_key = format!("{:#010x}", key as u32);
    assert_eq!(q["key"], want_key.as_str());
    if let Ok(ipcs) = ipcs {
        let line =
            ipcs.lines().find(|l| l.split_whitespace().nth(1) == Some(&msqid.to_string())).expect("ipcs lists it");
        assert_eq!(line.split_whitespace().next(), Some(want_key.as_str()), "the key as ipcs prints it");
    }
    let m = find("mqueue", mq_name.to_str().unwrap()).expect("the POSIX queue");
    assert_eq!((m["depth"].as_i64(), m["capacity"].as_i64()), (Some(attr.mq_curmsgs), Some(attr.mq_maxmsg)));
    assert_eq!(m["depth"], 3);
    let s = find("posix-shm", &shm_name).expect("the POSIX shared memory");
    assert_eq!(s["size"], 8192);

    let code = |args: &[&str]| d.run(args).status.code();
    assert_eq!(code(&["rm", "msg", &msqid.to_string()]), Some(0));
    assert_eq!(code(&["rm", "msg", &msqid.to_string()]), Some(7), "gone: not found");
    assert_eq!(code(&["rm", "sem", "2147483000"]), Some(7));
    assert_eq!(code(&["rm", "mqueue", mq_name.to_str().unwrap()]), Some(0));
    assert_eq!(code(&["rm", "mqueue", mq_name.to_str().unwrap()]), Some(7));
    assert_eq!(code(&["rm", "posix-shm", &shm_name]), Some(0));
    assert_eq!(code(&["rm", "posix-shm", &shm_name]), Some(7));
    let objects = ls_objects(&d);
    assert!(!objects.iter().any(|o| o["id"] == shm_name.as_str() || o["id"] == mq_name.to_str().unwrap()));
}

/// A broker socket this user may not open: permission denied (6) at once,
/// without trying to start a broker of its own.
#[test]
fn a_broker_socket_the_user_may_not_open_is_denied_at_once() {
    use std::os::unix::process::CommandExt;
    let d = Daemon::start("denied"); // its directory is 0700, root's
    let out = conduit()
        .args(["send", "x", "hi"])
        .env("CONDUIT_BROKER", d.dir.join("broker.sock"))
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    // (It used to start a broker of its own, wait 5 s for it, and exit 1.)
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ermission denied"));
}

/// Out of descriptors, the daemon neither spins nor floods its log (it
/// used to log a warning per attempt, hundreds of thousands a second):
/// at most one warning a second, and it serves again once descriptors
/// are free.
#[test]
fn out_of_descriptors_the_daemon_neither_spins_nor_floods_its_log() {
    let (d, log) = Daemon::start_logged("emfile", &["prlimit", "--nofile=40:40"]);
    let warnings = || log.lock().unwrap().iter().filter(|l| l.contains("WARN")).count();
    // A flood of clients that connect and say nothing.
    let addr = rustix::net::SocketAddrUnix::new(d.dir.join("broker.sock")).unwrap();
    let started = std::time::Instant::now();
    let mut idle = Vec::new();
    for _ in 0..100 {
        let s =
            rustix::net::socket(rustix::net::AddressFamily::UNIX, rustix::net::SocketType::SEQPACKET, None).unwrap();
        if rustix::net::connect(&s, &addr).is_ok() {
            idle.push(s);
        }
    }
    // It runs out while it works through them (it says so).
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while warnings() == 0 && std::time::Instant::now() < until {
        std::thread::yield_now();
    }
    assert!(warnings() >= 1, "it ran out: {:?}", log.lock().unwrap());
    // Then watch it for a while (a window, not a wait: the bound holds
    // however far it got): at most about one warning a second.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let w = warnings();
    let seconds = started.elapsed().as_secs() + 1;
    assert!(w as u64 <= 2 * seconds + 1, "{w} warnings in {seconds} s: {:?}", log.lock().unwrap());
    drop(idle);
    // Once it has seen those clients go (their descriptors free again),
    // it serves: a client that comes while it still has none is hung up
    // on, so look until one is served.
    // (A new name each time: an attempt cut off after the broker created
    // its mailbox must not make the next one fail.)
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut attempt = 0;
    let mut out = d.run(&["mailbox", "create", "after-emfile-0"]);
    while !out.status.success() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
        attempt += 1;
        out = d.run(&["mailbox", "create", &format!("after-emfile-{attempt}")]);
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Start `conduit listen ARGS...`; returns it and the address it reports.
fn listening(args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = conduit()
        .arg("listen")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").expect("the address on stderr").to_string();
    (child, addr)
}

#[test]
fn send_and_recv_speak_to_sockets_and_listen_prints_what_arrives() {
    use std::io::{Read, Write};
    // Conduit frames over TCP: two senders, one listener.
    let (mut l, addr) = listening(&["tcp:127.0.0.1:0", "--count", "2"]);
    assert!(conduit().args(["send", &addr, "first"]).status().unwrap().success());
    assert!(conduit().args(["send", &addr, "second"]).status().unwrap().success());
    let mut out = String::new();
    l.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(l.wait().unwrap().success());
    assert_eq!(out, "first\nsecond\n");
    // Plain lines from a plain client (`--raw`).
    let (mut l, addr) = listening(&["tcp:127.0.0.1:0", "--raw", "--count", "2"]);
    let port = addr.rsplit(':').next().unwrap();
    let mut plain = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    plain.write_all(b"one\ntwo\n").unwrap();
    let mut out = String::new();
    l.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(l.wait().unwrap().success());
    assert_eq!(out, "one\ntwo\n");
    // A datagram.
    let (mut l, addr) = listening(&["udp:127.0.0.1:0", "--count", "1"]);
    assert!(conduit().args(["send", &addr, "dgram"]).status().unwrap().success());
    let mut out = String::new();
    l.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(l.wait().unwrap().success());
    assert_eq!(out, "dgram\n");
    // `recv --raw` from a plain line server (the Date server's way).
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = plain.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = plain.accept().unwrap();
        s.write_all(b"Sun Nov 29 12:00:00 UTC 2026\n").unwrap();
    });
    let got = conduit().args(["recv", &format!("tcp:127.0.0.1:{port}"), "--raw"]).output().unwrap();
    t.join().unwrap();
    assert!(got.status.success());
    assert_eq!(got.stdout, b"Sun Nov 29 12:00:00 UTC 2026\n");
    // `recv` from a conduit server: the first message it sends.
    let server = conduit::net::Listener::bind("tcp:127.0.0.1:0").unwrap();
    let target = server.local_addr().to_string();
    let recv =
        conduit().args(["recv", &target, "--timeout", "10000"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let conn = server.accept::<conduit::Bytes, conduit::Bytes>().unwrap();
    conn.tx.send(conduit::Bytes(b"framed".to_vec())).unwrap();
    let got = recv.wait_with_output().unwrap();
    assert!(got.status.success());
    assert_eq!(got.stdout, b"framed");
    // Nobody listening: a clear error, exit 1.
    let refused = conduit().args(["send", &format!("tcp:127.0.0.1:{port}"), "x"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused"), "{refused:?}");
}

#[test]
fn send_and_recv_speak_to_system_v_queues_and_signal_sends_signals() {
    let q = conduit::kernel::MessageQueue::private(0o600).unwrap();
    let target = format!("sysv:{}", q.id());
    assert!(conduit().args(["send", &target, "--type", "3", "three"]).status().unwrap().success());
    assert!(conduit().args(["send", &target, "--type", "1", "one"]).status().unwrap().success());
    // The lowest type up to 5, then type 3 — msgrcv's rules.
    let got = conduit().args(["recv", &target, "--type", "-5"]).output().unwrap();
    assert!(got.status.success());
    assert_eq!((got.stdout.as_slice(), String::from_utf8_lossy(&got.stderr).trim()), (&b"one"[..], "type 1"));
    let got = conduit().args(["recv", &target, "--type", "3"]).output().unwrap();
    assert_eq!(got.stdout, b"three");
    assert_eq!(conduit().args(["recv", &target, "--nowait"]).status().unwrap().code(), Some(3), "empty");
    assert_eq!(conduit().args(["recv", &target, "--timeout", "20"]).status().unwrap().code(), Some(5), "timeout");
    // A C program's view: what conduit sent is a plain (mtype, bytes).
    assert!(conduit().args(["send", &target, "--type", "7", "for C"]).status().unwrap().success());
    assert_eq!(q.recv(conduit::kernel::Select::First).unwrap(), (7, b"for C".to_vec()));
    q.remove().unwrap();
    assert_eq!(conduit().args(["recv", &target, "--nowait"]).status().unwrap().code(), Some(7), "not found");
    // `conduit signal`.
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id().to_string();
    assert!(conduit().args(["signal", &pid, "TERM"]).status().unwrap().success());
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(sleeper.wait().unwrap().signal(), Some(libc::SIGTERM));
    assert_eq!(conduit().args(["signal", &pid, "NOSUCH"]).status().unwrap().code(), Some(2));
    assert_eq!(conduit().args(["signal", "999999999", "USR1"]).status().unwrap().code(), Some(7));
}

#[test]
fn send_and_recv_speak_to_posix_queues_and_fifos() {
    use conduit::kernel::PosixQueue;
    let name = format!("/conduit-cli-{}", std::process::id());
    let q = PosixQueue::create(&name, 4, 128, 0o600).unwrap();
    let target = format!("mq:{name}");
    // --type is the priority: the highest comes first.
    assert!(conduit().args(["send", &target, "--type", "2", "two"]).status().unwrap().success());
    assert!(conduit().args(["send", &target, "--type", "9", "nine"]).status().unwrap().success());
    assert!(conduit().args(["send", &target, "zero"]).status().unwrap().success());
    assert_eq!(q.recv().unwrap(), (9, b"nine".to_vec()));
    let got = conduit().args(["recv", &target]).output().unwrap();
    assert_eq!((got.stdout.as_slice(), String::from_utf8_lossy(&got.stderr).trim()), (&b"two"[..], "priority 2"));
    let got = conduit().args(["recv", &target]).output().unwrap();
    assert_eq!((got.stdout.as_slice(), String::from_utf8_lossy(&got.stderr).trim()), (&b"zero"[..], "priority 0"));
    let code = |args: &[&str]| conduit().args(args).output().unwrap().status.code();
    assert_eq!(code(&["recv", &target, "--nowait"]), Some(3), "empty");
    assert_eq!(code(&["recv", &target, "--timeout", "20"]), Some(5), "timeout");
    assert_eq!(code(&["recv", &target, "--type", "3"]), Some(2), "no selection on a POSIX queue");
    for i in 0..4 {
        q.send(0, &[i]).unwrap();
    }
    assert_eq!(code(&["send", &target, "--nowait", "x"]), Some(4), "full");
    assert_eq!(code(&["send", &target, "--timeout", "20", "x"]), Some(5), "timeout");
    assert_eq!(code(&["send", &target, &"x".repeat(129)]), Some(11), "too large");
    drop(q);
    PosixQueue::unlink(&name).unwrap();
    assert_eq!(code(&["recv", &target, "--nowait"]), Some(7), "not found");

    // A FIFO: plain bytes, as `echo > fifo` and `cat fifo`.
    let dir = std::env::temp_dir().join(format!("conduit-cli-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("f");
    conduit::fifo::create(&fifo, 0o600).unwrap();
    let target = format!("fifo:{}", fifo.display());
    assert_eq!(code(&["recv", &target, "--nowait"]), Some(3), "nothing written");
    assert_eq!(code(&["send", &target, "--nowait", "x"]), Some(7), "no reader");
    let reader = conduit().args(["recv", &target]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    assert!(conduit().args(["send", &target, "through the fifo"]).status().unwrap().success());
    let got = reader.wait_with_output().unwrap();
    assert!(got.status.success());
    assert_eq!(got.stdout, b"through the fifo");
    assert_eq!(code(&["send", dir.to_str().map(|d| format!("fifo:{d}")).as_deref().unwrap(), "x"]), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The row of `ipcs ARGS` whose second column (the id) is `id`.
fn ipcs_row(args: &[&str], id: &str) -> Option<Vec<String>> {
    let out = Command::new("ipcs").args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|r| r.get(1).map(String::as_str) == Some(id))
}

/// A uid as `ipcs` prints it: the user's name (from /etc/passwd), else the
/// number.
fn user_name(uid: &serde_json::Value) -> String {
    let uid = uid.to_string();
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == uid)
        .map_or(uid.clone(), |f| f[0].to_string())
}

/// The row of `ipcs ARGS -c` (id perms cuid cgid uid gid) for `id`.
fn ipcs_creator_row(args: &[&str], id: &str) -> Option<Vec<String>> {
    let out = Command::new("ipcs").args(args).arg("-c").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|r| r.first().map(String::as_str) == Some(id))
}

#[test]
fn ls_json_agrees_with_ipcs_on_every_system_v_kind_and_rm_removes_each() {
    use conduit::kernel::{MessageQueue, Semaphores, SharedSegment};
    if Command::new("ipcs").arg("-V").output().is_err() {
        eprintln!("no ipcs (util-linux) here: nothing to compare with");
        return;
    }
    let q = MessageQueue::private(0o640).unwrap();
    let sems = Semaphores::private(3, 0o600).unwrap();
    let seg = SharedSegment::private(8192, 0o644).unwrap();
    // Removed whatever happens (a failed assertion included).
    struct Cleanup(MessageQueue, i32, i32);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = self.0.remove();
            for (kind, id) in [("sem", self.1), ("shm", self.2)] {
                let _ = conduit().args(["rm", kind, &id.to_string()]).output();
            }
        }
    }
    let _cleanup = Cleanup(q, sems.id(), seg.id());
    q.send(1, b"hello").unwrap();
    q.send(2, b"world!").unwrap();
    let view = seg.attach(false).unwrap();
    let ids =
        [("sysv-msg", "-q", "msg", q.id()), ("sysv-sem", "-s", "sem", sems.id()), ("sysv-shm", "-m", "shm", seg.id())];
    let out = conduit().args(["ls", "--json"]).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<_> = ids.iter().map(|&(_, flag, _, id)| ipcs_row(&[flag], &id.to_string())).collect();
    let creators: Vec<_> = ids.iter().map(|&(_, flag, _, id)| ipcs_creator_row(&[flag], &id.to_string())).collect();
    drop(view);
    for (((kind, _, rm, id), row), creator) in ids.iter().zip(&rows).zip(&creators) {
        let o = doc["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["kind"] == *kind && o["id"] == id.to_string().as_str())
            .unwrap_or_else(|| panic!("{kind} {id} listed: {doc}"))
            .clone();
        let row = row.as_ref().unwrap_or_else(|| panic!("ipcs lists {kind} {id}"));
        let creator = creator.as_ref().unwrap_or_else(|| panic!("ipcs -c lists {kind} {id}"));
        // key, id, perms as ipcs prints them; the owner's uid from -c.
        assert_eq!(o["key"].as_str(), Some(row[0].as_str()), "{kind} key");
        assert_eq!(o["mode"].as_str(), Some(row[3].as_str()), "{kind} perms");
        assert_eq!(user_name(&o["owner"]), creator[4], "{kind} owner");
        assert_eq!(user_name(&o["creator"]["uid"]), creator[2], "{kind} creator");
        match *kind {
            // used-bytes, messages
            "sysv-msg" => assert_eq!((o["size"].to_string(), o["depth"].to_string()), (row[4].clone(), row[5].clone())),
            // nsems
            "sysv-sem" => assert_eq!(o["size"].to_string(), row[4]),
            // bytes, nattch (one attachment: ours, when ls ran)
            _ => assert_eq!((o["size"].to_string(), o["depth"].to_string()), (row[4].clone(), row[5].clone())),
        }
        assert_eq!(conduit().args(["rm", rm, &id.to_string()]).status().unwrap().code(), Some(0), "rm {rm} {id}");
        assert!(
            ipcs_row(&[ids.iter().find(|i| i.0 == *kind).unwrap().1], &id.to_string()).is_none(),
            "{kind} {id} removed"
        );
    }
    assert_eq!(rows[0].as_ref().unwrap()[5], "2");
    assert_eq!(rows[0].as_ref().unwrap()[4], "11");
    assert_eq!(rows[2].as_ref().unwrap()[5], "1");
}

/// Runs `conduit send|recv MAILBOX` again and again on a thread until
/// dropped: a stream through real client processes.
struct Stream {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Stream {
    fn start(d: &Daemon, verb: &'static str, mailbox: &str) -> Stream {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (halt, sock, mailbox) = (std::sync::Arc::clone(&stop), d.dir.join("broker.sock"), mailbox.to_string());
        let thread = std::thread::spawn(move || {
            let mut done = 0;
            while !halt.load(std::sync::atomic::Ordering::SeqCst) {
                let mut c = conduit();
                c.args([verb, &mailbox]).env("CONDUIT_BROKER", &sock);
                if verb == "send" {
                    c.arg("a message");
                } else {
                    c.args(["--timeout", "100"]);
                }
                if c.output().unwrap().status.success() {
                    done += 1;
                }
            }
            done
        });
        Stream { stop, thread: Some(thread) }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `conduit top --once --json`'s row for a conduit mailbox.
fn top_row(d: &Daemon, mailbox: &str) -> serde_json::Value {
    let out = d.run(&["top", "--once", "--json", "--interval", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["interval_s"].as_f64(), Some(1.0));
    let objects = doc["objects"].as_array().unwrap();
    objects.iter().find(|o| o["kind"] == "mailbox" && o["id"] == mailbox).expect("the mailbox").clone()
}

#[test]
fn top_once_json_shows_each_mailboxs_depth_and_messages_per_second_while_streams_flow() {
    let d = Daemon::start("top");
    // Shared memory (its queue's header counts) and durable (the broker's).
    for (name, extra) in [("shm", vec!["--capacity", "100000"]), ("disk", vec!["--capacity", "unbounded", "--durable"])]
    {
        let mut args = vec!["mailbox", "create", name];
        args.extend(extra);
        assert!(d.run(&args).status.success());
    }
    for name in ["shm", "disk"] {
        // A stream in, nobody taking: depth grows, in/s > 0, out/s = 0.
        let s = Stream::start(&d, "send", name);
        let row = top_row(&d, name);
        // (The counts are read just before the list: a send may land
        // between.)
        let (sent_before, depth) = (row["sent"].as_u64().unwrap(), row["depth"].as_u64().unwrap());
        assert!(row["msgs_in_per_s"].as_f64().unwrap() > 0.0, "a stream flows into {name}: {row}");
        assert_eq!((row["msgs_out_per_s"].as_f64(), row["received"].as_u64()), (Some(0.0), Some(0)), "{row}");
        assert!(depth >= sent_before && sent_before > 0, "all it took is queued: {row}");
        let sent = s.stop();
        // Now a stream out: depth falls, out/s > 0, nothing comes in.
        let r = Stream::start(&d, "recv", name);
        let row = top_row(&d, name);
        let received = r.stop();
        assert!(row["msgs_out_per_s"].as_f64().unwrap() > 0.0, "a stream flows out of {name}: {row}");
        assert_eq!(row["msgs_in_per_s"].as_f64(), Some(0.0), "{row}");
        let after = top_row(&d, name);
        assert_eq!(after["sent"].as_u64(), Some(sent), "every send counted once: {after}");
        assert_eq!(after["received"].as_u64(), Some(received.min(sent)), "every receive counted once: {after}");
        assert_eq!(after["depth"].as_u64(), Some(sent - received.min(sent)), "{after}");
    }
}

/// A private tmux server, killed on drop.
struct Tmux(String);

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux").arg("-L").arg(&self.0).args(args).output().unwrap()
    }
    fn pane(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }
    /// The pane once `ok` holds for it (within 20 s).
    fn until(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let t = std::time::Instant::now();
        loop {
            let pane = self.pane();
            if ok(&pane) {
                return pane;
            }
            assert!(t.elapsed() < Duration::from_secs(20), "{what}; the pane:\n{pane}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[test]
fn top_live_view_in_a_real_terminal_shows_sorts_filters_and_quits() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("tmux is not installed (.ci/run installs it): the live view is not checked");
        return;
    }
    let d = Daemon::start("top-live");
    assert!(d.run(&["mailbox", "create", "busy", "--capacity", "100000"]).status.success());
    assert!(d.run(&["mailbox", "create", "idle", "--capacity", "10"]).status.success());
    let tmux = Tmux(format!("conduit-test-{}", std::process::id()));
    let line = format!(
        "CONDUIT_BROKER={} {} top --interval 0.3",
        d.dir.join("broker.sock").display(),
        env!("CARGO_BIN_EXE_conduit")
    );
    let out = tmux.cmd(&["new-session", "-d", "-s", "top", "-x", "150", "-y", "30", &line]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _stream = Stream::start(&d, "send", "busy");
    // The busy mailbox's row, its depth and rate above zero.
    let busy_moving = |pane: &str| {
        pane.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 7 && f[1] == "mailbox" && f[2] == "busy" && f[3] != "0" && f[5] != "0" && f[5] != "-"
        })
    };
    tmux.until("the busy mailbox's depth and messages in per second", busy_moving);
    // Sorted by depth: busy comes before idle.
    tmux.cmd(&["send-keys", "-t", "top", "s"]);
    let pane = tmux.until("sorted by depth", |p| p.contains("sorted by depth"));
    let at = |name: &str| pane.lines().position(|l| l.split_whitespace().nth(2) == Some(name));
    assert!(at("busy") < at("idle") && at("busy").is_some(), "busy first:\n{pane}");
    // A filter that matches only idle.
    tmux.cmd(&["send-keys", "-t", "top", "/", "i", "d", "l", "e", "Enter"]);
    let pane = tmux.until("filtered", |p| p.contains("filter \"idle\"") && !p.contains(" busy "));
    assert!(pane.lines().any(|l| l.split_whitespace().nth(2) == Some("idle")), "{pane}");
    // q quits: the session (whose only program is top) ends.
    tmux.cmd(&["send-keys", "-t", "top", "q"]);
    let t = std::time::Instant::now();
    while tmux.cmd(&["has-session", "-t", "top"]).status.success() {
        assert!(t.elapsed() < Duration::from_secs(10), "top did not quit on q");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn top_without_a_terminal_says_how_to_use_it_from_a_script() {
    let out = conduit().arg("top").stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a terminal") && err.contains("--once"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bridge_runs_conduit_bridge_or_says_how_to_build_it() {
    let beside = std::path::Path::new(env!("CARGO_BIN_EXE_conduit")).with_file_name("conduit-bridge");
    let out = conduit().args(["bridge", "--help"]).output().unwrap();
    if beside.is_file() {
        // Built (crates/conduit-zenoh): its own options, through `conduit bridge`.
        assert!(out.status.success(), "{out:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in ["--listen", "--connect", "--only"] {
            assert!(help.contains(flag), "{flag} in {help}");
        }
    } else if std::process::Command::new("conduit-bridge").arg("--version").output().is_err() {
        // Not built, not on PATH: exit 2, and how to build it.
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("crates/conduit-zenoh/Cargo.toml"), "{out:?}");
    }
}
