//! Two hosts on one machine, for tests and `conduit bench`: two network
//! namespaces joined by a veth pair (host `a` at 10.213.7.1, host `b` at
//! 10.213.7.2), each with its own broker (`conduit daemon`) and, if asked,
//! its own bridge. Needs root. Everything — processes, namespaces (the
//! veth pair goes with them), the directory — is removed on drop, however
//! the caller ends (a failed assertion included).
//!
//! For debugging: `CONDUIT_BRIDGE_LOG` sets the bridges' `RUST_LOG`
//! (default `warn,conduit_zenoh=info`; their logs are `bridge.log` in each host's directory),
//! and `CONDUIT_TESTBED_KEEP` keeps that directory after the drop.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Host addresses: `a`, `b`.
pub const ADDR: [&str; 2] = ["10.213.7.1", "10.213.7.2"];

/// The Zenoh endpoint host `a`'s bridge listens on.
pub fn endpoint_a() -> String {
    format!("tcp/{}:7447", ADDR[0])
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn check(ok: bool, what: &str) -> io::Result<()> {
    if ok { Ok(()) } else { Err(io::Error::other(format!("cannot {what}"))) }
}

/// Two hosts.
pub struct TwoHosts {
    ns: [String; 2],
    veth: [String; 2],
    dir: PathBuf,
    daemons: Vec<Child>,
    /// The bridges of `a` and `b`, while they run.
    pub bridges: [Option<Child>; 2],
    conduit: PathBuf,
    bridge: PathBuf,
    lease_ms: u64,
    /// Each bridge's `--only` (none by default), set before they start.
    pub only: [Option<String>; 2],
}

impl TwoHosts {
    /// Make the namespaces and the link; start a broker in each (the
    /// programs `conduit` and `conduit-bridge` given). `Unsupported` when
    /// not root or without network namespaces.
    pub fn new(tag: &str, conduit: &Path, bridge: &Path) -> io::Result<TwoHosts> {
        if !rustix::process::geteuid().is_root() {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "needs root for network namespaces"));
        }
        let id = format!("{}{}", tag, std::process::id() % 100_000);
        let ns = [format!("cza-{id}"), format!("czb-{id}")];
        let veth = [format!("za{id}"), format!("zb{id}")];
        if !ip(&["netns", "add", &ns[0]]) {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "`ip netns add` failed (no network namespaces)"));
        }
        let dir = std::env::temp_dir().join(format!("conduit-zenoh-{id}"));
        let mut h = TwoHosts {
            ns,
            veth,
            dir,
            daemons: vec![],
            bridges: [None, None],
            conduit: conduit.to_path_buf(),
            bridge: bridge.to_path_buf(),
            lease_ms: 12_000,
            only: [None, None],
        };
        check(ip(&["netns", "add", &h.ns[1]]), "add a namespace")?;
        check(ip(&["link", "add", &h.veth[0], "type", "veth", "peer", "name", &h.veth[1]]), "add a veth pair")?;
        for (i, addr) in ADDR.iter().enumerate() {
            check(ip(&["link", "set", &h.veth[i], "netns", &h.ns[i]]), "move a veth")?;
            check(ip(&["-n", &h.ns[i], "addr", "add", &format!("{addr}/24"), "dev", &h.veth[i]]), "address")?;
            check(ip(&["-n", &h.ns[i], "link", "set", &h.veth[i], "up"]), "link up")?;
            check(ip(&["-n", &h.ns[i], "link", "set", "lo", "up"]), "loopback up")?;
            // Open to nobody: the permission checks are the mailboxes' own.
            let d = h.host_dir(i);
            std::fs::create_dir_all(&d)?;
            std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
            let log = std::fs::File::create(d.join("broker.log"))?;
            let daemon = h.command(i, &h.conduit.clone()).arg("daemon").stderr(log).spawn()?;
            h.daemons.push(daemon);
        }
        for i in 0..2 {
            h.wait_for(i, "the broker to listen", |o| o.status.success(), &["ls"])?;
        }
        Ok(h)
    }

    /// Start both bridges (`a` listens, `b` connects; lease 12 s) and wait
    /// until each lists the other as its peer: the link is up, each has
    /// the other's liveliness, and each has synchronised at least once.
    /// (Up to 60 s: a Zenoh connect retried while the machine is slow; the
    /// error says what each side had.)
    pub fn start_bridges(&mut self) -> io::Result<()> {
        for i in 0..2 {
            self.bridges[i] = Some(self.start_bridge(i)?);
        }
        for (i, peer) in [(0, "a→b"), (1, "b→a")] {
            self.wait_listed_for(Duration::from_secs(60), i, "bridge-peer", peer, true)?;
        }
        Ok(())
    }

    /// Start host `i`'s bridge (its log: `bridge.log` in its directory).
    pub fn start_bridge(&self, i: usize) -> io::Result<Child> {
        let mut c = self.command(i, &self.bridge.clone());
        c.args(["--name", ["a", "b"][i], "--lease-ms", &self.lease_ms.to_string()]);
        if let Some(only) = &self.only[i] {
            c.args(["--only", only]);
        }
        if i == 0 {
            c.args(["--listen", &endpoint_a()]);
        } else {
            c.args(["--connect", &endpoint_a()]);
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.host_dir(i).join("bridge.log"))?;
        c.env("RUST_LOG", std::env::var("CONDUIT_BRIDGE_LOG").unwrap_or_else(|_| "warn,conduit_zenoh=info".into()))
            .stderr(log)
            .spawn()
    }

    /// Host `i`'s directory (its broker's socket, its bridge's log).
    pub fn host_dir(&self, i: usize) -> PathBuf {
        self.dir.join(["a", "b"][i])
    }

    /// Host `i`'s broker socket.
    pub fn socket(&self, i: usize) -> PathBuf {
        self.host_dir(i).join("broker.sock")
    }

    /// `program` run inside host `i`, with its broker.
    pub fn command(&self, i: usize, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns[i]]).arg(program).env("CONDUIT_BROKER", self.socket(i)).env("NO_COLOR", "1");
        c
    }

    /// `conduit ARGS` on host `i`.
    pub fn conduit(&self, i: usize, args: &[&str]) -> Output {
        self.command(i, &self.conduit).args(args).output().expect("run conduit")
    }

    /// `conduit ARGS` on host `i`, as nobody.
    pub fn conduit_as_nobody(&self, i: usize, args: &[&str]) -> Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns[i], "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&self.conduit)
            .args(args)
            .env("CONDUIT_BROKER", self.socket(i));
        c.output().expect("run conduit as nobody")
    }

    /// Run `conduit ARGS` on host `i` until `ok` (at most 20 s).
    pub fn wait_for(&self, i: usize, what: &str, ok: impl Fn(&Output) -> bool, args: &[&str]) -> io::Result<Output> {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let o = self.conduit(i, args);
            if ok(&o) {
                return Ok(o);
            }
            if Instant::now() > until {
                eprintln!("waited 20 s for {what}: {o:?}{}", self.report());
                return Err(io::Error::other(format!("waited 20 s for {what} (what each host had: above)")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Does `conduit ls --json` on host `i` list this object?
    pub fn listed(&self, i: usize, kind: &str, id: &str) -> bool {
        let o = self.conduit(i, &["ls", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["objects"].as_array().is_some_and(|a| a.iter().any(|x| x["kind"] == kind && x["id"] == id))
    }

    /// Wait (at most 20 s) until host `i` lists the object, or no longer.
    pub fn wait_listed(&self, i: usize, kind: &str, id: &str, present: bool) -> io::Result<()> {
        self.wait_listed_for(Duration::from_secs(20), i, kind, id, present)
    }

    /// The same, waiting at most `limit`.
    pub fn wait_listed_for(&self, limit: Duration, i: usize, kind: &str, id: &str, present: bool) -> io::Result<()> {
        let until = Instant::now() + limit;
        while self.listed(i, kind, id) != present {
            if Instant::now() > until {
                let ls = self.conduit(i, &["ls", "--json"]);
                let what = format!("waited {limit:?} for {kind} {id} listed={present} on host {i}");
                eprintln!(
                    "{what}\n-- `conduit ls --json` there: {}, {}{}{}",
                    ls.status,
                    String::from_utf8_lossy(&ls.stdout),
                    String::from_utf8_lossy(&ls.stderr),
                    self.report()
                );
                return Err(io::Error::other(format!("{what} (what each host had: above)")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// What a failed wait prints (to the test's output) before it returns
    /// its error: each host's broker and bridge, running or ended, and the
    /// ends of their logs.
    pub fn report(&self) -> String {
        // (Read from /proc, so that the child is not reaped here: an ended
        // one is a zombie until the drop waits for it.)
        let state = |c: Option<&Child>| match c {
            None => "not started".to_string(),
            Some(c) => match std::fs::read_to_string(format!("/proc/{}/stat", c.id())) {
                Ok(stat) if stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z')) => "ended".into(),
                Ok(_) => "running".into(),
                Err(_) => "gone".into(),
            },
        };
        let mut r = String::new();
        for i in 0..2 {
            let host = ["a", "b"][i];
            let broker = state(self.daemons.get(i));
            let bridge = state(self.bridges[i].as_ref());
            r += &format!("\n-- host {host}: broker {broker}, bridge {bridge}");
            for log in ["broker.log", "bridge.log"] {
                let text = std::fs::read_to_string(self.host_dir(i).join(log)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                r += &format!("\n-- {host}/{log} (last {} lines):", tail.len());
                for l in tail.iter().rev() {
                    r += "\n";
                    r += l;
                }
            }
        }
        r
    }

    /// Cut (`false`) or restore the link.
    pub fn link(&self, up: bool) -> io::Result<()> {
        check(ip(&["-n", &self.ns[1], "link", "set", &self.veth[1], if up { "up" } else { "down" }]), "set the link")
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for c in self.bridges.iter_mut().flatten().chain(self.daemons.iter_mut()) {
            if let Some(pid) = rustix::process::Pid::from_raw(c.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let _ = c.wait();
        }
        for ns in &self.ns {
            ip(&["netns", "del", ns]);
        }
        if std::env::var_os("CONDUIT_TESTBED_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
