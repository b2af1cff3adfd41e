//! Spawning processes with a link already set up (M9.1, M9.2).
//!
//! The safe form of `fork` + ordinary pipe: [`Command::spawn`] starts a
//! program with a pair of typed channels to it already connected; the
//! child picks up its ends with one call to [`parent`]. Every child is
//! reaped by a reaper thread, so none lingers as a zombie, and its exit
//! status arrives as a message ([`Child::exits`]), which a
//! [`PortSet`](crate::PortSet) can wait on alongside other ports.
//!
//! ```no_run
//! use conduit::process::{self, Command};
//! // parent
//! let mut linked = Command::new("/proc/self/exe").arg("child").spawn::<String, usize>()?;
//! linked.tx.send("hello".into()).unwrap();
//! let len: usize = linked.rx.recv().unwrap();
//! let exit = linked.child.wait()?;
//! // child (in its main)
//! let (tx, rx) = process::parent::<usize, String>()?;
//! tx.send(rx.recv().unwrap().len()).unwrap();
//! # Ok::<(), conduit::Error>(())
//! ```

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::channel::transport::Parts;
use crate::channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, unbounded};
use crate::error::Error;
use crate::rights::RightKind;
use crate::sys::process as sysproc;

/// The environment variable naming the inherited link descriptors:
/// `PARENT_PID:KIND,FD,FD...;KIND,FD,FD...` — the child's receive right,
/// then its send right, each as its right kind (the byte of the wire's
/// rights table) and its descriptors in wire order.
pub const LINK_VAR: &str = "CONDUIT_LINK";

/// How a child ended, delivered as a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// The child's pid.
    pub pid: u32,
    /// Exit code, if it exited normally.
    pub code: Option<i32>,
    /// Signal number, if a signal killed it.
    pub signal: Option<i32>,
}

impl Exit {
    /// True for a normal exit with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A builder for a child process with a link to this one.
#[derive(Debug)]
pub struct Command {
    cmd: std::process::Command,
    pre: std::sync::Arc<sysproc::PreExec>,
    kill_on_parent_death: bool,
    cascade: bool,
    pipes: bool,
}

/// A spawned child and this side's ends of the link.
#[derive(Debug)]
pub struct Linked<Tx, Rx> {
    /// The child process.
    pub child: Child,
    /// Sends to the child (its [`parent`] receiver).
    pub tx: Sender<Tx>,
    /// Receives from the child (its [`parent`] sender).
    pub rx: Receiver<Rx>,
}

impl Command {
    /// A command running `program`.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        let mut cmd = std::process::Command::new(program);
        cmd.env_remove(LINK_VAR);
        let pre = sysproc::PreExec::install(&mut cmd);
        Command { cmd, pre, kill_on_parent_death: false, cascade: false, pipes: false }
    }

    /// Add an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    /// Add arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Set an environment variable for the child.
    pub fn env(&mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> &mut Self {
        self.cmd.env(key, val);
        self
    }

    /// Set the child's working directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cmd.current_dir(dir);
        self
    }

    /// The child's standard input.
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.cmd.stdin(cfg);
        self
    }

    /// The child's standard output.
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.cmd.stdout(cfg);
        self
    }

    /// The child's standard error.
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.cmd.stderr(cfg);
        self
    }

    /// Kill the child (SIGKILL) if the thread that spawned it ends
    /// (`PR_SET_PDEATHSIG`). Off by default.
    pub fn kill_on_parent_death(&mut self, yes: bool) -> &mut Self {
        self.kill_on_parent_death = yes;
        self
    }

    /// **Cascading termination**: the child and everything it starts end
    /// when this process ends — however it ends, `kill -9` included — or
    /// when the child itself ends. Off by default.
    ///
    /// How: the child starts a process group of its own (its descendants
    /// stay in it unless they leave by `setsid`/`setpgid`, which shells do
    /// only for interactive job control), and a **keeper** — a small fork
    /// of this process that closes every descriptor and blocks every
    /// signal — sleeps in `poll` on two pidfds, this process's and the
    /// child's. When either ends, the keeper kills the child's process
    /// group with `SIGKILL` and leaves; this process reaps it with the
    /// child. So grandchildren die too, within microseconds of the death,
    /// and an idle keeper costs no CPU.
    ///
    /// Why not the alternatives: `PR_SET_PDEATHSIG` reaches one level and
    /// fires when the spawning *thread* ends ([`kill_on_parent_death`](Self::kill_on_parent_death)
    /// is exactly that); a subreaper adopts orphans but kills nothing,
    /// and after its own `kill -9` there is nobody left to act; a cgroup
    /// reaches even processes that leave the group, but needs a writable
    /// cgroup-v2 subtree (root or delegation) and still a living process to
    /// write `cgroup.kill`. Like systemd's default `KillMode=control-group`,
    /// what is left of the child's tree when the child ends is killed too.
    /// The child is not in the terminal's foreground group: it cannot read
    /// the terminal.
    pub fn cascade(&mut self, yes: bool) -> &mut Self {
        self.cascade = yes;
        self
    }

    /// Link the child by two ordinary pipes (one each way) instead of a
    /// socket: the textbook's parent/child pipe, done safely — only the
    /// child's two ends are inherited, by that child alone; the rest of
    /// the process's descriptors stay close-on-exec. The typed channels
    /// work the same, with what pipes cannot do (rights, credentials)
    /// refused by a typed error. Off by default.
    pub fn pipes(&mut self, yes: bool) -> &mut Self {
        self.pipes = yes;
        self
    }

    /// Spawn the child with a link: `Tx` is what this side sends, `Rx`
    /// what it receives. The child calls [`parent::<Rx, Tx>()`](parent).
    /// Both directions are unbounded channels (over a socket, or over
    /// pipes with [`pipes`](Self::pipes)).
    pub fn spawn<Tx, Rx>(&mut self) -> Result<Linked<Tx, Rx>, Error> {
        let ((tx, child_rx), (child_tx, rx)) = if self.pipes {
            (crate::channel::pipe::unbounded::<Tx>()?, crate::channel::pipe::unbounded::<Rx>()?)
        } else {
            (unbounded::<Tx>()?, unbounded::<Rx>()?)
        };
        let child = self.spawn_with(child_tx, child_rx)?;
        Ok(Linked { child, tx, rx })
    }

    /// Spawn the child with these two ends as its link: the child's
    /// [`parent::<A, B>()`](parent) returns them (it sends on `tx`,
    /// receives on `rx`), and this process lets go of them. Any channel
    /// ends may be handed on this way — a connection accepted from the
    /// network too (the fork-per-client server, see
    /// [`crate::net::serve_processes`]).
    pub fn spawn_with<A, B>(&mut self, tx: Sender<A>, rx: Receiver<B>) -> Result<Child, Error> {
        let (rkind, rfds) = rx.to_right()?;
        let (skind, sfds) = tx.to_right()?;
        // The child's own copies hold its ends; ours go now, so that the
        // child's death (or exit) is the end of the link.
        drop(rx);
        drop(tx);
        let list = |fds: &[OwnedFd]| fds.iter().map(|f| sysproc::raw(f).to_string()).collect::<Vec<_>>().join(",");
        let var = format!("{}:{},{};{},{}", sysproc::getpid(), rkind as u8, list(&rfds), skind as u8, list(&sfds));
        let raws: Vec<_> = rfds.iter().chain(&sfds).map(sysproc::raw).collect();
        self.cmd.env(LINK_VAR, var);
        // Spawn and record under the registry's lock, so that the orphan
        // reaper never takes a child of ours for an orphan.
        let mut ours = registry();
        let keeper = if self.cascade {
            let (read, write) = sysproc::pid_pipe()?;
            let pid = sysproc::start_keeper(read)?;
            ours.insert(pid);
            Some((pid, write))
        } else {
            None
        };
        let report = keeper.as_ref().map(|(_, w)| sysproc::raw(w));
        let spawned =
            self.pre.set(&raws, self.kill_on_parent_death, self.cascade, report).and_then(|()| self.cmd.spawn());
        self.cmd.env_remove(LINK_VAR);
        // Our copies of the child's descriptors close here, spawned or not
        // (and the keeper's pipe: with no child it reads the end and leaves).
        drop((rfds, sfds));
        let keeper = keeper.map(|(pid, _write)| pid);
        let spawned = match spawned {
            Ok(child) => child,
            Err(e) => {
                drop(ours);
                if let Some(k) = keeper {
                    sysproc::reap(k);
                    registry().remove(&k);
                }
                return Err(e.into());
            }
        };
        ours.insert(spawned.id());
        drop(ours);
        Child::adopt(spawned, keeper)
    }
}

/// A child process, reaped by a thread of this process when it ends.
#[derive(Debug)]
pub struct Child {
    pid: u32,
    pidfd: OwnedFd,
    exits: Receiver<Exit>,
    status: Option<Exit>,
}

impl Child {
    fn adopt(mut child: std::process::Child, keeper: Option<u32>) -> Result<Child, Error> {
        let pid = child.id();
        // Opened before the reaper can reap, so it names this very process.
        let pidfd = sysproc::pidfd(pid)?;
        let (exit_tx, exits) = unbounded::<Exit>()?;
        std::thread::Builder::new().name("conduit-reaper".into()).spawn(move || {
            let exit = match child.wait() {
                Ok(st) => Exit { pid, code: st.code(), signal: st.signal() },
                Err(_) => Exit { pid, code: None, signal: None },
            };
            registry().remove(&pid);
            let _ = exit_tx.send(exit);
            crate::notify::post(crate::notify::Event::ChildExited(exit));
            // The keeper saw the child end: it kills the group and leaves.
            if let Some(k) = keeper {
                sysproc::reap(k);
                registry().remove(&k);
            }
        })?;
        Ok(Child { pid, pidfd, exits, status: None })
    }

    /// The child's pid.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Kill the child with SIGKILL (through a pidfd: never another process
    /// that reused the pid).
    pub fn kill(&self) -> Result<(), Error> {
        Ok(sysproc::pidfd_kill(self.pidfd.as_fd())?)
    }

    /// Send the child `signal` (through a pidfd: never another process
    /// that reused the pid).
    pub fn signal(&self, signal: i32) -> Result<(), Error> {
        Ok(crate::sys::signal::pidfd_send(self.pidfd.as_fd(), signal)?)
    }

    /// The port on which the child's [`Exit`] arrives (once), for use in a
    /// [`PortSet`](crate::PortSet).
    pub fn exits(&self) -> &Receiver<Exit> {
        &self.exits
    }

    fn got(&mut self, exit: Exit) -> Exit {
        self.status = Some(exit);
        exit
    }

    /// Wait for the child to end; it has been reaped when this returns.
    pub fn wait(&mut self) -> Result<Exit, Error> {
        if let Some(e) = self.status {
            return Ok(e);
        }
        match self.exits.recv() {
            Ok(e) => Ok(self.got(e)),
            Err(e) => Err(Error::Link(e.to_string())),
        }
    }

    /// The exit, if the child has ended.
    pub fn try_wait(&mut self) -> Result<Option<Exit>, Error> {
        if let Some(e) = self.status {
            return Ok(Some(e));
        }
        match self.exits.try_recv() {
            Ok(e) => Ok(Some(self.got(e))),
            Err(TryRecvError::Empty) => Ok(None),
            Err(e) => Err(Error::Link(e.to_string())),
        }
    }

    /// Wait at most `timeout` for the child to end.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<Exit>, Error> {
        if let Some(e) = self.status {
            return Ok(Some(e));
        }
        match self.exits.recv_deadline(Instant::now() + timeout) {
            Ok(e) => Ok(Some(self.got(e))),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(e) => Err(Error::Link(e.to_string())),
        }
    }
}

/// The pids this process's reaper threads wait for (children and keepers).
fn registry() -> MutexGuard<'static, HashSet<u32>> {
    static OURS: OnceLock<Mutex<HashSet<u32>>> = OnceLock::new();
    OURS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner())
}

/// Make this process the **subreaper** of its descendants
/// (`PR_SET_CHILD_SUBREAPER`): a process orphaned anywhere below it (its
/// parent ended first) becomes its child rather than `init`'s, and is
/// reaped here when it ends, so none is left a zombie; each such end is
/// posted on the [notify port](crate::notify()) as
/// [`Event::OrphanExited`](crate::notify::Event::OrphanExited).
///
/// A thread waits for `SIGCHLD` (through `signal-hook`, no code in a
/// handler) and reaps every ended child that is not one conduit's
/// [`Command`] started (those are reaped by their own threads). A child
/// started some other way (`std::process::Command`) is reaped by it too,
/// so that child's own `wait` then fails: start children with [`Command`]
/// in a process that adopts orphans. Calling this twice is harmless.
pub fn adopt_orphans() -> Result<(), Error> {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            let start = || -> Result<(), Error> {
                sysproc::set_subreaper()?;
                let mut chld = signal_hook::iterator::Signals::new([libc::SIGCHLD])?;
                std::thread::Builder::new().name("conduit-orphans".into()).spawn(move || {
                    reap_orphans();
                    for _ in chld.forever() {
                        reap_orphans();
                    }
                })?;
                Ok(())
            };
            start().map_err(|e| e.to_string())
        })
        .clone()
        .map_err(Error::Link)
}

/// Reap every ended child that is not ours.
fn reap_orphans() {
    let ours = registry();
    for pid in sysproc::children().unwrap_or_default() {
        if ours.contains(&pid) {
            continue;
        }
        if let Some((code, signal)) = sysproc::try_reap(pid) {
            crate::notify::post(crate::notify::Event::OrphanExited(Exit { pid, code, signal }));
        }
    }
}

static TAKEN: AtomicBool = AtomicBool::new(false);

/// In a child spawned by [`Command::spawn`]: this side's ends of the link
/// to the parent. `Tx` is what the child sends, `Rx` what it receives. Can
/// be called once per process.
pub fn parent<Tx, Rx>() -> Result<(Sender<Tx>, Receiver<Rx>), Error>
where
    Tx: Serialize,
    Rx: DeserializeOwned,
{
    let var = std::env::var(LINK_VAR)
        .map_err(|_| Error::Link(format!("{LINK_VAR} is not set: not spawned by conduit::process::Command")))?;
    let bad = || Error::Link(format!("{LINK_VAR}={var:?} is malformed"));
    let (ppid, fds) = var.split_once(':').ok_or_else(bad)?;
    if ppid.parse::<u32>().ok() != sysproc::getppid() {
        return Err(Error::Link(format!(
            "{LINK_VAR} was meant for a child of pid {ppid}, not of this process's parent"
        )));
    }
    let mut ends = fds.split(';');
    let (recv_end, send_end) = match (ends.next(), ends.next(), ends.next()) {
        (Some(r), Some(s), None) => (parse_end(r).ok_or_else(bad)?, parse_end(s).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(Error::Link("the parent link was already taken".into()));
    }
    let rx = Receiver::from_received(adopt_end(recv_end, 0)?)?;
    let tx = Sender::from_received(adopt_end(send_end, 1)?)?;
    Ok((tx, rx))
}

/// One end in the link variable: `KIND,FD,FD...`.
fn parse_end(s: &str) -> Option<(RightKind, Vec<i32>)> {
    let mut it = s.split(',');
    let kind = RightKind::from_byte(it.next()?.parse().ok()?)?;
    let fds: Vec<i32> = it.map(str::parse).collect::<Result<_, _>>().ok()?;
    (fds.len() == kind.fds()).then_some((kind, fds))
}

/// Take the inherited descriptors of one end and check them like a right.
fn adopt_end((kind, raws): (RightKind, Vec<i32>), index: usize) -> Result<Parts, Error> {
    let mut owned = Vec::with_capacity(raws.len());
    for fd in raws {
        owned.push(sysproc::adopt_inherited(fd)?);
    }
    let mut it = owned.into_iter();
    let mut next = || it.next().expect("counted by parse_end");
    Ok(crate::channel::transport::adopt(kind, index, &mut next)?)
}

/// True if this process was spawned by [`Command::spawn`] and has a link.
pub fn is_linked() -> bool {
    std::env::var_os(LINK_VAR).is_some()
}
