//! The `conduit` command, run as a user would.

use std::process::Command;

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
    ] {
        assert!(text.lines().any(|l| l.trim_start().starts_with("ok") && l.contains(step)), "step {step}:\n{text}");
    }
    assert!(!text.contains("FAIL"));
}

/// Every case `conduit bench` has.
const NAMES: [&str; 15] = [
    "floor/spin",
    "floor/futex",
    "floor/pipe",
    "floor/uds",
    "floor/tcp",
    "floor/posix-mq",
    "floor/memcpy",
    "conduit/shm-spin",
    "conduit/shm",
    "conduit/shm-loan",
    "conduit/uds",
    "conduit/mailbox",
    "peer/iceoryx2",
    "peer/ipc-channel",
    "peer/dbus",
];

#[test]
fn bench_writes_every_case_to_json() {
    let dir = std::env::temp_dir().join(format!("conduit-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let svg = dir.join("out.svg");
    // peer/dbus needs a dbus-daemon (.ci/run installs it); without one the
    // other cases still run.
    let dbus = std::process::Command::new("dbus-daemon").arg("--version").output().is_ok_and(|o| o.status.success());
    let mut cmd = conduit();
    cmd.args(["bench", "--smoke", "--json"]).arg(&json).arg("--svg").arg(&svg);
    if !dbus {
        eprintln!("dbus-daemon not installed: bench without peer/dbus");
        let all: Vec<&str> = NAMES.iter().copied().filter(|n| *n != "peer/dbus").collect();
        cmd.arg("--only").arg(all.join(","));
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = std::fs::read_to_string(&json).unwrap();
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("conduit/shm-loan"), "{chart}");
    std::fs::remove_dir_all(&dir).unwrap();
    for name in NAMES.iter().filter(|n| dbus || **n != "peer/dbus") {
        assert!(doc.contains(&format!("\"name\": \"{name}\"")), "{name} in {doc}");
    }
    for field in ["rtt_p50_ns", "rtt_p99_ns", "msgs_per_s_64b", "gb_per_s_1mib"] {
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
        let dir = std::env::temp_dir().join(format!("conduit-cli-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let child = conduit()
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
        std::thread::spawn(move || lines.for_each(drop));
        d
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
            // one is waited on in the receiver's own process.
            if opts != &["--capacity", "4"] {
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
