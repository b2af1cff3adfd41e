//! Signals as messages between real processes (a test binary of their
//! own: a subscription changes the whole process's signal dispositions).

mod common;

use std::time::Duration;

use common::{finish, report, spawn};
use conduit::signal::{self, SIGUSR1, SIGUSR2, SignalInfo};
use conduit_tests::FromChild;

#[test]
fn signals_from_another_process_arrive_as_messages_with_its_pid_in_a_port_set() {
    let signals = signal::subscribe(&[SIGUSR1, SIGUSR2]).unwrap();
    let (work_tx, work_rx) = conduit::unbounded::<u64>().unwrap();
    let kid = spawn("signal-sender");
    assert_eq!(report(&kid), FromChild::Sent(2));
    let pid = kid.child.id();
    let uid = rustix::process::getuid().as_raw();
    let mut set = conduit::PortSet::new();
    let s = set.add(&signals);
    let w = set.add(&work_rx);
    work_tx.send(1).unwrap();
    let mut got: Vec<SignalInfo> = Vec::new();
    let mut work = 0;
    while got.len() < 2 || work < 1 {
        match set.ready_timeout(Duration::from_secs(10)) {
            Some(i) if i == s => got.push(signals.try_recv().unwrap()),
            Some(i) if i == w => work += work_rx.try_recv().unwrap(),
            other => panic!("nothing ready: {other:?} (got {got:?})"),
        }
    }
    got.sort_by_key(|i| i.signal);
    assert_eq!(got[0], SignalInfo { signal: SIGUSR1, pid: Some(pid), uid: Some(uid), value: None });
    assert_eq!(got[1], SignalInfo { signal: SIGUSR2, pid: Some(pid), uid: Some(uid), value: Some(77) });
    finish(kid);
}

#[test]
fn uncatchable_signals_are_refused_and_a_blocked_signal_stays_pending() {
    assert!(matches!(signal::subscribe(&[libc::SIGKILL]), Err(conduit::Error::Unsupported(_))));
    assert!(signal::subscribe(&[0]).is_err());
    // Blocked in every thread of a child: a signal to it stays pending
    // until unblocked.
    let kid = spawn("pending-check");
    assert_eq!(report(&kid), FromChild::Ready);
    signal::send(kid.child.id(), signal::SIGWINCH).unwrap();
    kid.tx.send(conduit_tests::ToChild::Go).unwrap();
    assert_eq!(report(&kid), common::outcome("pending"));
    assert_eq!(report(&kid), common::outcome("delivered"));
    finish(kid);
}

#[test]
fn a_child_is_signalled_through_its_pidfd() {
    let mut kid = spawn("hold");
    kid.child.signal(libc::SIGTERM).unwrap();
    assert_eq!(kid.child.wait().unwrap().signal, Some(libc::SIGTERM));
}
