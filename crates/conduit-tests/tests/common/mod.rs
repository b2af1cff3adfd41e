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

/// The transport a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Socket,
    Shm,
}

impl Flavor {
    pub fn bounded<T>(self, n: usize) -> (conduit::Sender<T>, conduit::Receiver<T>) {
        match self {
            Flavor::Socket => conduit::bounded(n),
            Flavor::Shm => conduit::channel::shm::bounded(n),
        }
        .expect("channel")
    }

    pub fn unbounded<T>(self) -> (conduit::Sender<T>, conduit::Receiver<T>) {
        match self {
            Flavor::Socket => conduit::unbounded(),
            Flavor::Shm => conduit::channel::shm::unbounded(),
        }
        .expect("channel")
    }
}

/// Instantiate each named `fn(Flavor)` as a test per transport.
#[macro_export]
macro_rules! on_both_transports {
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
            }
        )*
    };
}
