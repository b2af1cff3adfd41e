//! The second process of every case: this same binary, run as
//! `conduit __bench-peer CASE ARGS...`, linked to the bench by a conduit
//! channel pair that carries the rights a case needs.

use std::io;
use std::sync::OnceLock;

use conduit::process::{Command, Linked};

use crate::Give;

/// A running peer process.
pub struct Running {
    linked: Linked<Give, ()>,
}

static PEER_CPU: OnceLock<usize> = OnceLock::new();

/// Pin every peer spawned from now on to `cpu`.
pub fn set_peer_cpu(cpu: usize) {
    let _ = PEER_CPU.set(cpu);
}

/// Spawn the peer for `case` (pinned to the CPU set by [`set_peer_cpu`]).
pub fn spawn_peer(case: &str, args: &[String]) -> io::Result<Running> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("__bench-peer").arg(case).args(args);
    if let Some(cpu) = PEER_CPU.get() {
        cmd.env(crate::PEER_CPU_VAR, cpu.to_string());
    }
    let linked = cmd.spawn::<Give, ()>().map_err(io::Error::other)?;
    Ok(Running { linked })
}

impl Running {
    /// The peer's pid.
    pub fn pid(&self) -> u32 {
        self.linked.child.id()
    }

    /// Hand the peer a right.
    pub fn give(&self, g: Give) -> io::Result<()> {
        self.linked.tx.send(g).map_err(|e| io::Error::other(e.to_string()))
    }

    /// Wait until the peer says it is ready.
    pub fn wait_ready(&self) -> io::Result<()> {
        self.linked
            .rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| io::Error::other(format!("peer not ready: {e}")))
    }

    /// Stop a peer that serves until killed (a server of a peer framework):
    /// kill it, reap it, pass `m` through.
    pub fn stop<T>(mut self, m: io::Result<T>) -> io::Result<T> {
        let _ = self.linked.child.kill();
        let _ = self.linked.child.wait();
        m
    }

    /// Wait for the peer to end; pass `m` through if it ended well.
    pub fn finish<T>(mut self, m: io::Result<T>) -> io::Result<T> {
        if m.is_err() {
            let _ = self.linked.child.kill();
        }
        let exit = self.linked.child.wait().map_err(io::Error::other)?;
        let m = m?;
        if !exit.success() {
            return Err(io::Error::other(format!("bench peer failed: {exit:?}")));
        }
        Ok(m)
    }
}

/// What a peer process gets.
pub struct Peer {
    args: Vec<String>,
    up: conduit::Sender<()>,
    given: conduit::Receiver<Give>,
}

impl Peer {
    pub(crate) fn new(args: &[String]) -> io::Result<Peer> {
        let (up, given) = conduit::process::parent::<(), Give>().map_err(io::Error::other)?;
        Ok(Peer { args: args.to_vec(), up, given })
    }

    /// Tell the bench this peer is ready.
    pub fn ready(&self) -> io::Result<()> {
        self.up.send(()).map_err(|e| io::Error::other(e.to_string()))
    }

    /// Argument `i` after the case name.
    pub fn arg(&self, i: usize) -> io::Result<&str> {
        self.args.get(i).map(String::as_str).ok_or_else(|| io::Error::other("missing peer argument"))
    }

    /// The next right the bench hands over.
    pub fn take(&self) -> io::Result<Give> {
        self.given.recv().map_err(|e| io::Error::other(e.to_string()))
    }
}
