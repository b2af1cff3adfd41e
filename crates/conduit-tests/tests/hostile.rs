//! A peer that shares a ring writes anything into it at any time: the
//! receiver never panics, never waits past its timeout, and (on a checked
//! channel) never delivers a message that is not one the sender sent.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{report, spawn};
use conduit::RecvTimeoutError;
use conduit_tests::{FromChild, ToChild};

static PANICKED: AtomicBool = AtomicBool::new(false);

/// How long the scribbler runs (`CONDUIT_HOSTILE_SECS`, default 30).
fn duration() -> Duration {
    let secs = std::env::var("CONDUIT_HOSTILE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    Duration::from_secs(secs)
}

/// What a receive under attack gave.
#[derive(Debug, Default)]
struct Tally {
    good: u64,
    torn: u64,
    errors: u64,
    timeouts: u64,
    /// Scribbles the peer wrote (at least: it reports now and then).
    scribbles: u64,
}

fn is_stream_message(v: &[u64]) -> bool {
    v.first().is_some_and(|&x| v == conduit_tests::stream_message(x))
}

fn under_attack(checked: bool) -> Tally {
    // Any panic, on any thread of this process (monitor threads too), fails.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        default(info);
    }));
    let mut kid = spawn("scribbler");
    let (tx, rx) = conduit::channel::shm::Builder::new()
        .bounded(64)
        .ring_bytes(16 << 10)
        .checked(checked)
        .build::<Vec<u64>>()
        .unwrap();
    kid.tx.send(ToChild::SendStream(tx)).unwrap();
    assert_eq!(report(&kid), FromChild::Ready);
    // A watchdog: no receive may take much longer than its timeout.
    let beat = std::sync::Arc::new(AtomicU64::new(0));
    let watched = std::sync::Arc::clone(&beat);
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let finished = std::sync::Arc::clone(&done);
    std::thread::spawn(move || {
        let mut last = (0, Instant::now());
        while !finished.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            let now = watched.load(Ordering::SeqCst);
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(20) {
                eprintln!("a receive with a 100 ms timeout has not returned in 20 s");
                std::process::abort();
            }
        }
    });
    let mut t = Tally::default();
    let until = Instant::now() + duration();
    while Instant::now() < until {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(v) if is_stream_message(&v) => t.good += 1,
            Ok(_) => t.torn += 1,
            Err(RecvTimeoutError::Timeout) => t.timeouts += 1,
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Failed(_)) => t.errors += 1,
        }
        beat.fetch_add(1, Ordering::SeqCst);
    }
    done.store(true, Ordering::SeqCst);
    while let Ok(m) = kid.rx.try_recv() {
        if let FromChild::Scribbled(n) = m {
            t.scribbles = t.scribbles.max(n);
        }
    }
    kid.child.kill().unwrap();
    kid.child.wait().unwrap();
    drop(rx);
    assert!(!PANICKED.load(Ordering::SeqCst), "a thread of the receiving process panicked: {t:?}");
    eprintln!("under attack for {:?} (checked {checked}): {t:?}", duration());
    t
}

/// A checked channel: whatever the peer writes, every message accepted is
/// one the sender sent, whole.
#[test]
fn a_scribbling_peer_never_crashes_or_fools_a_checked_receiver() {
    let t = under_attack(true);
    assert_eq!(t.torn, 0, "a message that fails its check was delivered: {t:?}");
    // The attack was real: the peer wrote at least 100,000 times into the
    // ring and the control block (the default 30 s run writes millions).
    let least = if duration() >= Duration::from_secs(10) { 100_000 } else { 1 };
    assert!(t.scribbles >= least, "only {} scribbles: {t:?}", t.scribbles);
    // What flows depends on where the scribbles land: one in a record's
    // header can break the ring for good (every receive then says
    // `BadRing`), one in the indices can make it look empty for good (the
    // peer has stopped sending, as any peer may: every receive then times
    // out). All that is sure is an answer to every call, in time: the
    // watchdog aborts a receive that hangs; here, the receives kept
    // returning (on average well within 400 ms each, slow spells included).
    let answered = t.good + t.torn + t.errors + t.timeouts;
    let floor = duration().as_millis() as u64 / 100 / 4;
    assert!(answered >= floor, "the receiver answered {answered} calls (at least {floor}): {t:?}");
}

/// The default (trusting) channel: the receiver survives too; what the
/// peer wrote may arrive as garbage (it could have sent it).
#[test]
fn a_scribbling_peer_never_crashes_an_unchecked_receiver() {
    under_attack(false);
}
