//! Spawning the test child.
#![allow(dead_code)]

use std::time::Duration;

use conduit::process::{Command, Linked};
use conduit_tests::{FromChild, ToChild};

pub type Kid = Linked<ToChild, FromChild>;

/// Spawn `conduit-test-child ROLE` with a link.
pub fn spawn(role: &str) -> Kid {
    Command::new(env!("CARGO_BIN_EXE_conduit-test-child"))
        .arg(role)
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
