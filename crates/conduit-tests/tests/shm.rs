//! Shared memory across processes: kill -9 mid-stream, segment access,
//! named segments, the ring's exact capacity, zero-copy loans.

mod common;

use std::os::fd::AsFd;
use std::time::Duration;

use common::{finish, outcome, report, spawn};
use conduit::channel::{Bytes, shm};
use conduit::memory::ring::Ring;
use conduit::memory::{NamedSegment, Segment, WaitStrategy};
use conduit::{RecvTimeoutError, SendTimeoutError, TrySendError};
use conduit_tests::{FromChild, ToChild, stream_message, tagged_stream_message};

/// The named segment `named_segments_obey_their_mode_for_other_users`
/// makes while it runs (it checks its own removal).
fn named_test_segment() -> String {
    format!("conduit-test-{}", std::process::id())
}

fn no_conduit_objects_in_dev_shm() {
    let left: Vec<_> = std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    // Tests run in parallel: the named-segment test's object may exist now.
    let ours = named_test_segment();
    assert!(!left.iter().any(|n| n.contains("conduit") && *n != ours), "left in /dev/shm: {left:?}");
}

fn kill_9_of_the_producer_mid_stream(wait: WaitStrategy) {
    let mut kid = spawn("stream");
    let (tx, rx) = shm::Builder::new().bounded(64).ring_bytes(16 * 1024).wait(wait).build::<Vec<u64>>().unwrap();
    kid.tx.send(ToChild::SendStream(tx)).unwrap();
    let mut next = 0u64;
    let check = |next: &mut u64, m: Vec<u64>| {
        assert_eq!(m, stream_message(*next), "message {next} whole and in order");
        *next += 1;
    };
    // Let it stream, then kill it while it is writing.
    while next < 500 {
        check(&mut next, rx.recv_timeout(Duration::from_secs(10)).unwrap());
    }
    kid.child.kill().unwrap();
    loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(m) => check(&mut next, m),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(e) => panic!("after the producer's death: {e:?}"),
        }
    }
    assert!(next >= 500);
    assert_eq!(kid.child.wait().unwrap().signal, Some(9));
    drop(rx);
    no_conduit_objects_in_dev_shm();
}

#[test]
fn kill_9_of_the_producer_mid_stream_delivers_only_whole_messages_then_disconnected() {
    kill_9_of_the_producer_mid_stream(WaitStrategy::default());
}

#[test]
fn kill_9_of_the_producer_mid_stream_with_parked_waiting() {
    kill_9_of_the_producer_mid_stream(WaitStrategy::Park);
}

#[test]
fn kill_9_of_the_producer_mid_stream_with_spinning() {
    kill_9_of_the_producer_mid_stream(WaitStrategy::Spin);
}

/// Two producers stream into one ring and one is killed with kill -9
/// mid-stream, wherever it is (waiting for a credit, or holding the lock
/// and perhaps mid-commit; the takeover itself is pinned down by
/// `a_producer_killed_holding_the_lock_is_taken_over`). The other goes on;
/// the consumer sees only whole messages, each producer's in order and
/// without gaps, and the ring's credits stay exact.
#[test]
fn kill_9_of_one_of_two_producers_leaves_the_other_streaming() {
    const CAPACITY: u64 = 16;
    let (tx, rx) = shm::Builder::new().bounded(CAPACITY as usize).ring_bytes(8 * 1024).build::<Vec<u64>>().unwrap();
    let mut kids = [spawn("stream"), spawn("stream")];
    for (tag, kid) in [1, 2].into_iter().zip(&kids) {
        kid.tx.send(ToChild::SendTaggedStream(tx.clone(), tag)).unwrap();
    }
    let mut next = [0u64; 3];
    let mut check = |m: Vec<u64>| {
        let tag = (m[0] >> 48) as usize;
        assert!(tag == 1 || tag == 2, "a message from a producer: {:?}", &m[..1]);
        assert_eq!(m, tagged_stream_message(tag as u64, next[tag]), "producer {tag}'s next message, whole");
        next[tag] += 1;
        next
    };
    let mut seen = [0u64; 3];
    while seen[1] < 2000 || seen[2] < 2000 {
        seen = check(rx.recv_timeout(Duration::from_secs(10)).unwrap());
    }
    kids[0].child.kill().unwrap();
    assert_eq!(kids[0].child.wait().unwrap().signal, Some(9));
    let after = seen[2];
    while seen[2] < after + 5000 {
        seen = check(rx.recv_timeout(Duration::from_secs(10)).expect("the survivor goes on"));
    }
    kids[1].child.kill().unwrap();
    assert_eq!(kids[1].child.wait().unwrap().signal, Some(9));
    while let Ok(m) = rx.try_recv() {
        check(m);
    }
    // Nothing queued: exactly `CAPACITY` credits, whatever the dead left.
    for k in 0..CAPACITY {
        tx.try_send(vec![k]).unwrap_or_else(|e| panic!("credit {k} of {CAPACITY}: {e:?}"));
    }
    assert!(matches!(tx.try_send(vec![0]), Err(TrySendError::Full(_))), "one more than the capacity");
    drop((tx, rx));
    no_conduit_objects_in_dev_shm();
}

/// A producer killed while it holds the producers' lock (a loan out, half
/// written) does not stop the others: the next sender, in another
/// process, finds the owner dead and takes the lock over; its message is
/// the next one received, and the dead one's never appears.
#[test]
fn a_producer_killed_holding_the_lock_is_taken_over() {
    let (tx, rx) = shm::Builder::new().bounded(4).ring_bytes(4096).build::<Bytes>().unwrap();
    let mut kid = spawn("loan-holder");
    kid.tx.send(ToChild::SendBytesRight(tx.clone())).unwrap();
    assert_eq!(report(&kid), FromChild::Ready);
    kid.child.kill().unwrap();
    assert_eq!(kid.child.wait().unwrap().signal, Some(9));
    // On a thread: a lock never taken over would block the send for good.
    let (done_tx, done) = std::sync::mpsc::channel();
    let sender = std::thread::spawn(move || {
        tx.send(Bytes(b"after".to_vec())).unwrap();
        let _ = done_tx.send(());
        tx
    });
    done.recv_timeout(Duration::from_secs(10)).expect("the dead producer's lock is taken over");
    let tx = sender.join().unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap().0, b"after");
    assert!(rx.try_recv().is_err(), "nothing of the dead producer's");
    drop((tx, rx));
    no_conduit_objects_in_dev_shm();
}

#[test]
fn kill_9_of_the_consumer_mid_stream_disconnects_the_producer() {
    let kid = spawn("drain");
    let (tx, rx) = shm::bounded::<u64>(16).unwrap();
    kid.tx.send(ToChild::RecvU64(rx)).unwrap();
    let mut i = 0;
    // Stream until the consumer is well into it, then kill it.
    let killer = std::thread::spawn({
        move || {
            let r = report(&kid);
            assert_eq!(r, FromChild::Ready);
            kid.child.kill().unwrap();
            kid
        }
    });
    let err = loop {
        match tx.send_timeout(i, Duration::from_secs(10)) {
            Ok(()) => i += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, SendTimeoutError::Disconnected(_)), "{err:?}");
    assert!(i >= 100);
    let mut kid = killer.join().unwrap();
    assert_eq!(kid.child.wait().unwrap().signal, Some(9));
    no_conduit_objects_in_dev_shm();
}

#[test]
fn a_segment_is_shared_by_passing_it_and_only_so() {
    let seg = Segment::new(4096).unwrap();
    seg.write_at(0, b"secret").unwrap();
    // A process given the segment maps it and sees the same memory.
    let reader = spawn("segment-reader");
    reader.tx.send(ToChild::Segment(seg.try_clone().unwrap())).unwrap();
    assert_eq!(report(&reader), outcome("read 4096 bytes"));
    let mut back = [0u8; 12];
    seg.read_at(0, &mut back).unwrap();
    assert_eq!(&back, b"secret+reply");
    finish(reader);
    // It has no name: nothing in /dev/shm, and another user cannot reach
    // it even through our /proc entry.
    no_conduit_objects_in_dev_shm();
    let fd_path = format!("/proc/{}/fd/{}", std::process::id(), std::os::fd::AsRawFd::as_raw_fd(&seg.as_fd()));
    let intruder = common::spawn_with_args("intruder", &[&fd_path]);
    assert_eq!(report(&intruder), outcome("denied"));
    finish(intruder);
    // Out of bounds is an error, not a crash.
    assert!(seg.read_at(4090, &mut [0u8; 16]).is_err());
    assert!(seg.write_at(usize::MAX, b"x").is_err());
}

#[test]
fn named_segments_obey_their_mode_for_other_users() {
    let name = format!("/{}", named_test_segment());
    for (mode, expect) in [(0o600, "denied"), (0o666, "opened")] {
        let seg = NamedSegment::create(&name, 4096, mode).unwrap();
        seg.segment().write_at(0, b"hi").unwrap();
        let kid = common::spawn_with_args("named-intruder", &[&name]);
        assert_eq!(report(&kid), outcome(expect), "mode {mode:o}");
        finish(kid);
        NamedSegment::unlink(&name).unwrap();
    }
    assert!(NamedSegment::open(&name).is_err(), "unlinked");
    assert!(!std::path::Path::new("/dev/shm").join(named_test_segment()).exists(), "unlinked");
    no_conduit_objects_in_dev_shm();
}

#[test]
fn the_ring_uses_its_whole_capacity() {
    // 4096 bytes; a 56-byte payload takes 64 bytes: exactly 64 fit — not
    // 63 as in the textbook ring that keeps a slot empty.
    let ring = Ring::new(4096).unwrap();
    let mut n = 0;
    while let Some(mut r) = ring.try_reserve(56).unwrap() {
        ring.reserved_mut(&mut r).fill(n as u8);
        ring.commit(r);
        n += 1;
    }
    assert_eq!(n, 64);
    assert_eq!(ring.used(), 4096);
    // Taking one makes room for exactly one more.
    let first = ring.peek().unwrap().unwrap();
    assert_eq!(ring.payload(&first), &[0u8; 56][..]);
    ring.release(first);
    let r = ring.try_reserve(56).unwrap().expect("room for one");
    ring.commit(r);
    assert!(ring.try_reserve(56).unwrap().is_none());
    // Too large for this ring is said so.
    assert!(ring.try_reserve(4096).is_err());
}

#[test]
fn loans_write_and_read_in_place_across_processes() {
    let (tx, rx) = shm::bounded::<Bytes>(4).unwrap();
    let kid = spawn("in-place");
    kid.tx.send(ToChild::RecvBytes(rx)).unwrap();
    // An abandoned loan publishes nothing and gives its credit back.
    for _ in 0..8 {
        drop(tx.loan(10).unwrap());
    }
    let mut loan = tx.loan(1 << 16).unwrap();
    for (i, b) in loan.iter_mut().enumerate() {
        *b = i as u8;
    }
    loan.send();
    tx.send_slice(b"second").unwrap();
    assert_eq!(report(&kid), outcome("in place: 65536 bytes intact"));
    assert_eq!(report(&kid), outcome("then: second"));
    drop(tx);
    finish(kid);
}

/// CPU time a process has used (ns, `/proc/PID/schedstat`).
fn cpu_ns(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
    s.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn an_idle_adaptive_receiver_sleeps_instead_of_spinning() {
    let kid = spawn("idle");
    let (tx, rx) = shm::bounded::<u64>(1).unwrap();
    kid.tx.send(ToChild::RecvU64(rx)).unwrap();
    assert_eq!(report(&kid), FromChild::Ready);
    let pid = kid.child.id();
    let (c0, t0) = (cpu_ns(pid), std::time::Instant::now());
    // A measuring window (nothing is synchronised by it).
    std::thread::sleep(Duration::from_millis(300));
    let used = (cpu_ns(pid) - c0) as f64 / t0.elapsed().as_nanos() as f64;
    assert!(used < 0.05, "an idle receiver used {:.2}% of a core", used * 100.0);
    tx.send(7).unwrap();
    assert_eq!(report(&kid), FromChild::Sent(7));
    finish(kid);
}

#[test]
fn threads_of_one_process_share_a_sender_and_take_turns_in_the_ring() {
    let kid = spawn("per-thread");
    let (tx, rx) = shm::Builder::new().bounded(8).ring_bytes(4096).build::<u64>().unwrap();
    kid.tx.send(ToChild::RecvU64(rx)).unwrap();
    const THREADS: u64 = 4;
    const EACH: u64 = 5_000;
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    tx.send(t << 32 | i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    for s in senders {
        s.join().unwrap();
    }
    assert_eq!(report(&kid), FromChild::Sent(THREADS * EACH), "every message, each thread's in order");
    finish(kid);
}

/// Every wait parks (no spinning), so every message crosses the sleeper
/// protocol: a producer's commit and a consumer's release are plain
/// stores and a compiler fence (`sys::barrier::light`), the sleepers pay
/// with `membarrier`. A lost wake-up shows as a timeout here.
#[test]
fn parked_waiters_are_always_woken_across_processes() {
    let kid = spawn("echo-u64");
    let build = || shm::Builder::new().bounded(2).ring_bytes(4096).wait(WaitStrategy::Park).build::<u64>().unwrap();
    let (to_tx, to_rx) = build();
    let (back_tx, back_rx) = build();
    kid.tx.send(ToChild::RecvU64(to_rx)).unwrap();
    kid.tx.send(ToChild::SendU64(back_tx)).unwrap();
    let limit = Duration::from_secs(10);
    // Round trips: each side sleeps for data every time.
    for i in 0..3_000u64 {
        to_tx.send_timeout(i, limit).unwrap();
        assert_eq!(back_rx.recv_timeout(limit).unwrap(), i + 1);
    }
    // A pipelined stream through two-message channels: both sides also
    // sleep for credits (a full channel) and are woken by releases.
    const N: u64 = 20_000;
    let sender = std::thread::spawn(move || {
        for i in 0..N {
            to_tx.send_timeout(i, limit).unwrap();
        }
    });
    for i in 0..N {
        assert_eq!(back_rx.recv_timeout(limit).unwrap(), i + 1, "reply {i}");
    }
    sender.join().unwrap();
    finish(kid);
}

#[test]
fn a_channel_with_both_ends_in_one_process_holds_one_descriptor() {
    // Its memfd only: the socket pair is made when first needed (an end
    // leaving, descriptors in a message, poll), and dropping gives all back.
    let kid = spawn("shm-fds");
    let FromChild::Outcome(said) = report(&kid) else { panic!("want an outcome") };
    assert_eq!(said, "1000 channels: 1000 descriptors; after dropping them: 0");
    finish(kid);
}
