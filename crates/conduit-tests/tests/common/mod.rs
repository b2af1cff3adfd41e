//! Spawning the test child.
#![allow(dead_code)]

use std::time::Duration;

use conduit::process::{Command, Linked};
use conduit_tests::{FromChild, ToChild};

pub type Kid = Linked<ToChild, FromChild>;

/// Spawn `conduit-test-child ROLE` with a link. Children die with the
/// test thread that spawned them (a failed test leaves none running).
pub fn spawn(role: &str) -> Kid {
    Command::new(env!("CARGO_BIN_EXE_conduit-test-child"))
        .arg(role)
        .kill_on_parent_death(true)
        .spawn::<ToChild, FromChild>()
        .expect("spawn the test child")
}

/// Spawn `conduit-test-child ROLE ARGS...` with a link.
pub fn spawn_with_args(role: &str, args: &[&str]) -> Kid {
    Command::new(env!("CARGO_BIN_EXE_conduit-test-child"))
        .arg(role)
        .args(args)
        .kill_on_parent_death(true)
        .spawn::<ToChild, FromChild>()
        .expect("spawn the test child")
}

/// The next report from a child (fails the test after 10 s: a hang).
pub fn report(kid: &Kid) -> FromChild {
    kid.rx.recv_timeout(Duration::from_secs(10)).expect("report from the child")
}

pub fn outcome(s: &str) -> FromChild {
    FromChild::Outcome(s.to_string())
}

/// Wait for the child and require a clean exit.
pub fn finish(mut kid: Kid) {
    let exit = kid.child.wait().expect("child exit");
    assert!(exit.success(), "child failed: {exit:?}");
}

/// A fresh directory for one test's files, removed with its contents.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("conduit-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The transport a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Socket,
    Shm,
    Pipe,
    /// An anonymous POSIX message queue.
    Mqueue,
    /// A private System V message queue.
    Sysv,
}

impl Flavor {
    pub fn bounded<T>(self, n: usize) -> (conduit::Sender<T>, conduit::Receiver<T>) {
        match self {
            Flavor::Socket => conduit::bounded(n),
            Flavor::Shm => conduit::channel::shm::bounded(n),
            Flavor::Pipe => conduit::channel::pipe::bounded(n),
            Flavor::Mqueue => conduit::channel::mqueue::bounded(n),
            Flavor::Sysv => conduit::channel::sysv::bounded(n),
        }
        .expect("channel")
    }

    pub fn unbounded<T>(self) -> (conduit::Sender<T>, conduit::Receiver<T>) {
        match self {
            Flavor::Socket => conduit::unbounded(),
            Flavor::Shm => conduit::channel::shm::unbounded(),
            Flavor::Pipe => conduit::channel::pipe::unbounded(),
            Flavor::Mqueue => conduit::channel::mqueue::unbounded(),
            Flavor::Sysv => conduit::channel::sysv::unbounded(),
        }
        .expect("channel")
    }

    /// The kernel names the sender of each message.
    pub fn has_credentials(self) -> bool {
        self == Flavor::Socket
    }

    /// Rights (descriptors) travel inside messages.
    pub fn carries_rights(self) -> bool {
        !matches!(self, Flavor::Pipe | Flavor::Mqueue | Flavor::Sysv)
    }

    /// The largest frame one message may be (a message queue's message
    /// size), if the transport has one.
    pub fn max_frame(self) -> Option<usize> {
        match self {
            Flavor::Mqueue => Some(conduit::channel::mqueue::DEFAULT_MESSAGE_SIZE),
            Flavor::Sysv => Some(conduit::kernel::msgmax()),
            _ => None,
        }
    }
}

/// The transport conformance suite: instantiate each named `fn(Flavor)`
/// as a test per transport. A new transport gets every test by adding a
/// variant to [`Flavor`] and one line here.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn socket() {
                    super::$name($crate::common::Flavor::Socket)
                }
                #[test]
                fn shm() {
                    super::$name($crate::common::Flavor::Shm)
                }
                #[test]
                fn pipe() {
                    super::$name($crate::common::Flavor::Pipe)
                }
                #[test]
                fn mqueue() {
                    super::$name($crate::common::Flavor::Mqueue)
                }
                #[test]
                fn sysv() {
                    super::$name($crate::common::Flavor::Sysv)
                }
            }
        )*
    };
}
