//! Process lifetimes and the notify port, between real processes: cascading
//! termination after a `kill -9`, orphans adopted and reaped, and the
//! events of the notify port (a binary of its own: the notify port and
//! signal subscriptions are the whole process's).

mod common;

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use common::{outcome, report, spawn};
use conduit::notify::{self, Event};
use conduit_tests::{FromChild, ToChild};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags, Signal};

fn pidfd(pid: u32) -> OwnedFd {
    rustix::process::pidfd_open(Pid::from_raw(pid as i32).unwrap(), PidfdFlags::empty())
        .expect("pidfd of a live process")
}

/// True if the process behind `fd` ends before `deadline`.
fn ends_before(fd: &OwnedFd, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = Timespec::try_from(left).unwrap();
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(1) => return true,
            Ok(_) => return false,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("poll: {e}"),
        }
    }
}

fn running(fd: &OwnedFd) -> bool {
    !ends_before(fd, Instant::now())
}

#[test]
fn cascading_termination_ends_children_and_grandchildren_within_a_second_of_a_kill_9() {
    // This process adopts the orphans (else the container's init, which
    // may not reap, would collect zombies).
    conduit::process::adopt_orphans().unwrap();
    // The middle process starts two shells, each with two background
    // sleeps (grandchildren of the middle): one shell with cascade, one
    // without.
    let mut kid = spawn("cascader");
    let FromChild::Outcome(list) = report(&kid) else { panic!("want the pids") };
    let pids: Vec<u32> = list.split(' ').map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids.len(), 6, "{list}");
    let fds: Vec<OwnedFd> = pids.iter().map(|&p| pidfd(p)).collect();
    assert!(fds.iter().all(running));
    kid.child.kill().unwrap();
    let killed = Instant::now();
    assert_eq!(kid.child.wait().unwrap().signal, Some(libc::SIGKILL));
    let deadline = killed + Duration::from_secs(1);
    for (fd, pid) in fds[..3].iter().zip(&pids) {
        assert!(ends_before(fd, deadline), "pid {pid} of the cascading tree outlived its parent by 1 s");
    }
    // Without cascade, the shell and its sleeps live on (orphans): the
    // test is able to fail. Clean them up.
    for (fd, pid) in fds[3..].iter().zip(&pids[3..]) {
        assert!(running(fd), "pid {pid} (no cascade) should have survived");
        rustix::process::pidfd_send_signal(fd, Signal::KILL).unwrap();
        assert!(ends_before(fd, Instant::now() + Duration::from_secs(10)));
    }
}

#[test]
fn a_subreaper_adopts_an_orphaned_grandchild_reaps_it_and_reports_it_on_the_notify_port() {
    let kid = spawn("adopter");
    assert_eq!(report(&kid), outcome("child-exited, adopted, orphan-exited signal Some(9), reaped"));
    common::finish(kid);
}

#[test]
fn the_notify_port_reports_a_dead_child_a_dead_peer_and_signals_with_the_senders_pid() {
    // One test takes the notify port (it is the process's).
    let events = conduit::notify().unwrap();
    assert!(conduit::notify().is_err(), "a port has one receiver");

    // A dead peer: the receiver of a watched port is killed.
    let peer = spawn("hold");
    let (tx, rx) = conduit::bounded::<u64>(4).unwrap();
    peer.tx.send(ToChild::RecvU64(rx)).unwrap();
    assert_eq!(report(&peer), FromChild::Ready);
    let watched = notify::watch_port(&tx).unwrap();
    let peer_pid = peer.child.id();
    peer.child.kill().unwrap();

    // Signals from another process.
    notify::watch_signals(&[libc::SIGUSR1, libc::SIGUSR2]).unwrap();
    let signaller = spawn("signal-sender");
    assert_eq!(report(&signaller), FromChild::Sent(2));
    let signaller_pid = signaller.child.id();

    let (mut dead_name, mut peer_exit, mut signaller_exit, mut signals) = (false, false, false, Vec::new());
    while !(dead_name && peer_exit && signaller_exit && signals.len() == 2) {
        match events.recv_timeout(Duration::from_secs(10)).expect("an event") {
            Event::DeadName { port } if port == watched => dead_name = true,
            Event::ChildExited(e) if e.pid == peer_pid => {
                assert_eq!(e.signal, Some(libc::SIGKILL));
                peer_exit = true;
            }
            Event::ChildExited(e) if e.pid == signaller_pid => {
                assert!(e.success());
                signaller_exit = true;
            }
            Event::Signal(info) => {
                assert_eq!(info.pid, Some(signaller_pid));
                signals.push((info.signal, info.value));
            }
            _ => {}
        }
    }
    signals.sort();
    assert_eq!(signals, vec![(libc::SIGUSR1, None), (libc::SIGUSR2, Some(77))]);
    assert!(tx.send(1).is_err(), "the dead name is dead");
    drop(events);
    // Dropped: the port can be taken again.
    let _again = conduit::notify().unwrap();
}
