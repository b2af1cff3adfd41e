//! The notes' Mach and LPC programs that need the broker, run as the
//! examples they are: the four choices when a mailbox is full, and the
//! LPC connect handshake.

use std::path::PathBuf;
use std::process::Command;

/// Run an example's binary (cargo builds examples before this test) and
/// return its standard output; it must succeed.
fn run(name: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let path: PathBuf = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    let out = Command::new(path).output().expect("run the example");
    assert!(out.status.success(), "{name}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_full_mailbox_offers_machs_four_choices() {
    assert_eq!(
        run("mailbox_full"),
        "the mailbox holds 1 of 1\n\
         return immediately: Full\n\
         wait at most 50 ms: Timeout (after at least 50 ms: true)\n\
         receiver took \"first\"\n\
         wait indefinitely: sent once there was room\n\
         cache it: left with the broker: true\n\
         received \"patient\"\n\
         received \"cached\"\n"
    );
}

#[test]
fn the_lpc_handshake_gives_the_client_private_ports() {
    assert_eq!(run("lpc"), "subsystem says: HELLO\nsubsystem says: GOODBYE\nserver exited: true\n");
}
