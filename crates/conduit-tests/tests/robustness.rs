//! Dead peers, malformed frames, and process hygiene.

mod common;

use std::time::{Duration, Instant};

use common::{Flavor, finish, report, spawn};
use conduit::{Error, RecvError, SendError, WireError};
use conduit_tests::{FromChild, Rng, ToChild};

/// Run `scenario` (which returns how long detection took) and require
/// detection within 100 ms; one re-run is allowed, because this shared
/// two-core machine can stall any process for a moment.
fn within_100ms(scenario: impl Fn() -> Duration) {
    let first = scenario();
    if first <= Duration::from_millis(100) {
        return;
    }
    let second = scenario();
    assert!(second <= Duration::from_millis(100), "detected after {first:?}, then {second:?}");
}

fn blocked_sender_sees_disconnected_within_100ms_of_kill_9_of_the_receiver(f: Flavor) {
    within_100ms(|| {
        let mut kid = spawn("hold");
        let (tx, rx) = f.bounded::<u64>(1);
        kid.tx.send(ToChild::RecvU64(rx)).unwrap();
        assert_eq!(report(&kid), FromChild::Ready);
        tx.send(1).unwrap(); // the channel is now full
        let blocked = std::thread::spawn(move || {
            let got = tx.send_timeout(2, Duration::from_secs(10));
            (got, Instant::now(), tx)
        });
        let killed_at = Instant::now();
        kid.child.kill().unwrap();
        let (got, returned_at, tx) = blocked.join().unwrap();
        let took = returned_at.saturating_duration_since(killed_at);
        assert!(matches!(got, Err(conduit::SendTimeoutError::Disconnected(2))), "{got:?}");
        assert!(matches!(tx.send(3), Err(SendError::Disconnected(3))));
        assert_eq!(kid.child.wait().unwrap().signal, Some(9));
        took
    });
}

fn blocked_receiver_sees_disconnected_within_100ms_of_kill_9_of_the_sender(f: Flavor) {
    within_100ms(|| {
        let mut kid = spawn("hold");
        let (tx, rx) = f.bounded::<u64>(1);
        kid.tx.send(ToChild::SendU64(tx)).unwrap();
        assert_eq!(report(&kid), FromChild::Ready);
        let killed_at = Instant::now();
        kid.child.kill().unwrap();
        let got = rx.recv();
        let took = killed_at.elapsed();
        assert!(matches!(got, Err(RecvError::Disconnected)), "{got:?}");
        assert_eq!(kid.child.wait().unwrap().signal, Some(9));
        took
    });
}

#[test]
fn malformed_frames_are_rejected_by_name_and_the_channel_keeps_serving() {
    let kid = spawn("garbage");
    let (tx, rx) = conduit::bounded::<u64>(16).unwrap();
    let (other_tx, other_rx) = conduit::unbounded::<u64>().unwrap();
    kid.tx.send(ToChild::SendU64(tx)).unwrap();
    let wire_err = |what: &str| match rx.recv() {
        Err(RecvError::Failed(Error::Wire(e))) => e,
        other => panic!("{what}: expected a wire error, got {other:?}"),
    };
    assert!(matches!(wire_err("magic"), WireError::BadMagic(_)));
    assert_eq!(wire_err("truncated"), WireError::Truncated(9));
    assert!(matches!(wire_err("checksum"), WireError::Checksum { .. }));
    assert_eq!(wire_err("version"), WireError::Version(99));
    assert!(matches!(wire_err("length"), WireError::Length { .. }));
    assert!(matches!(wire_err("oversized"), WireError::TooLarge { size: 100_000, .. }));
    assert_eq!(wire_err("kind"), WireError::Kind(2));
    assert_eq!(wire_err("rights"), WireError::Descriptors { declared: 2, actual: 0 });
    match rx.recv() {
        Err(RecvError::Failed(Error::Decode(_))) => {}
        other => panic!("payload that is not a u64: {other:?}"),
    }
    // Still serving: the valid message after the garbage arrives...
    assert_eq!(rx.recv().unwrap(), 99);
    assert_eq!(report(&kid), FromChild::Sent(1));
    // ...and so do other channels of this process.
    other_tx.send(5).unwrap();
    assert_eq!(other_rx.recv().unwrap(), 5);
    finish(kid);
}

#[test]
fn exit_status_arrives_as_a_message_and_no_zombie_remains() {
    let mut kid = spawn("exit-code");
    let pid = kid.child.id();
    let exit = kid.child.exits().recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!((exit.pid, exit.code, exit.signal), (pid, Some(7), None));
    assert!(!exit.success());
    // Reaped before the message was sent: no /proc entry, not even a zombie.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} still present");
    // wait() after the message still answers.
    assert_eq!(kid.child.wait().unwrap_or(exit).code, Some(7));
}

#[test]
fn a_child_killed_by_a_signal_reports_it() {
    let mut kid = spawn("hold");
    kid.child.kill().unwrap();
    let exit = kid.child.wait().unwrap();
    assert_eq!(exit.signal, Some(9));
    assert!(matches!(kid.rx.recv(), Err(RecvError::Disconnected)), "link closes with the child");
}

#[test]
fn parent_link_is_refused_outside_a_linked_child() {
    let err = conduit::process::parent::<u8, u8>().unwrap_err();
    assert!(err.to_string().contains("CONDUIT_LINK"), "{err}");
}

/// A peer claims its payload is in a bulk buffer and passes a memfd that
/// is not sealed, or too small: refused by name before anything of it is
/// read, and the channel goes on.
#[test]
fn a_bad_bulk_buffer_is_refused_and_the_channel_goes_on() {
    let kid = spawn("garbage-bulk");
    let (tx, rx) = conduit::bounded::<u64>(8).unwrap();
    kid.tx.send(ToChild::SendU64(tx)).unwrap();
    for what in ["not sealed", "too small"] {
        match rx.recv() {
            Err(RecvError::Failed(Error::Wire(WireError::BadRight { .. }))) => {}
            other => panic!("{what}: expected BadRight, got {other:?}"),
        }
    }
    assert_eq!(rx.recv().unwrap(), 99);
    assert_eq!(report(&kid), FromChild::Sent(1));
    finish(kid);
}

/// A peer holding a send right writes hostile frames straight to the
/// link: each is a typed error naming what was wrong, and the channel goes
/// on serving. (Shared memory has no byte link to write to: its hostile
/// peer scribbles into the ring instead, in `hostile.rs`.)
fn hostile_frames_are_typed_errors_and_the_channel_goes_on(f: Flavor) {
    if f == Flavor::Shm {
        return;
    }
    let kid = spawn("garbage-any");
    let (tx, rx) = f.bounded::<u64>(16);
    rx.set_max_message(64);
    kid.tx.send(ToChild::SendU64(tx)).unwrap();
    let wire_err = |what: &str| match rx.recv() {
        Err(RecvError::Failed(Error::Wire(e))) => e,
        other => panic!("{what}: expected a wire error, got {other:?}"),
    };
    assert!(matches!(wire_err("checksum"), WireError::Checksum { .. }));
    assert_eq!(wire_err("over the limit"), WireError::TooLarge { size: 1000, limit: 64 });
    assert_eq!(wire_err("kind"), WireError::Kind(2));
    assert_eq!(wire_err("rights"), WireError::Descriptors { declared: 2, actual: 0 });
    match rx.recv() {
        Err(RecvError::Failed(Error::Decode(_))) => {}
        other => panic!("payload that is not a u64: {other:?}"),
    }
    assert_eq!(rx.recv().unwrap(), 99, "the good message after the garbage arrives");
    assert_eq!(report(&kid), FromChild::Sent(1));
    finish(kid);
    assert!(matches!(rx.recv(), Err(RecvError::Disconnected)));
}

conformance!(
    hostile_frames_are_typed_errors_and_the_channel_goes_on,
    blocked_sender_sees_disconnected_within_100ms_of_kill_9_of_the_receiver,
    blocked_receiver_sees_disconnected_within_100ms_of_kill_9_of_the_sender,
);

/// A consumer killed at a random moment of a stream, 1,000 times — while
/// it reads, or after it stopped reading with the sender blocked on a
/// full channel and messages unread: the sender always learns it as
/// `Disconnected`, never as another error.
#[test]
fn a_killed_consumer_is_always_disconnected_for_its_sender() {
    // Seed 2 hit the old ECONNRESET (trial 469); CONDUIT_SEED picks another.
    let seed = std::env::var("CONDUIT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let mut rng = Rng(seed);
    for trial in 0..1000 {
        let reads = rng.next() % 16;
        let capacity = 1 + (rng.next() % 8) as usize;
        let blocked = rng.next().is_multiple_of(2);
        let mut kid = common::spawn_with_args("consume", &[&reads.to_string()]);
        let (tx, rx) = conduit::bounded::<u64>(capacity).unwrap();
        kid.tx.send(ToChild::RecvU64(rx)).unwrap();
        assert_eq!(report(&kid), FromChild::Ready);
        let sender = std::thread::spawn(move || {
            let mut i = 0;
            loop {
                match tx.send_timeout(i, Duration::from_secs(10)) {
                    Ok(()) => i += 1,
                    Err(e) => return e,
                }
            }
        });
        if blocked {
            // It stopped reading: the sender fills the channel and waits.
            assert_eq!(report(&kid), FromChild::Sent(reads));
        }
        kid.child.kill().unwrap();
        let err = sender.join().unwrap();
        assert!(
            matches!(err, conduit::SendTimeoutError::Disconnected(_)),
            "trial {trial} (seed {seed:#x}, capacity {capacity}, {reads} read, blocked {blocked}): {err:?}"
        );
        assert_eq!(kid.child.wait().unwrap().signal, Some(9));
    }
}

/// Every constructor that makes several kernel objects cleans up those it
/// made when a later one fails: each kind of channel made with 0, 1, 2, …
/// descriptors left (so it fails at each of its steps in turn) leaves no
/// descriptor and no System V queue behind.
#[test]
fn a_constructor_that_fails_half_way_leaves_nothing_behind() {
    let kid = common::spawn_with_args("exhaust", &[]);
    let FromChild::Outcome(said) = report(&kid) else { panic!("want an outcome") };
    eprintln!("{said}");
    for part in said.split("; ") {
        let (name, rest) = part.split_once(": ").unwrap();
        assert!(rest.ends_with("leaks []"), "{name} left something behind: {rest}");
        let failed: u32 = rest.split(' ').next().unwrap().parse().unwrap();
        // Enough descriptors in the end: some attempts worked, the first
        // (none free) did not.
        assert!((1..12).contains(&failed), "{name}: {failed} of 12 attempts failed ({said})");
    }
    finish(kid);
}
