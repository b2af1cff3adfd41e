//! Channels across real processes: capacity, rendezvous, unbounded,
//! timeouts, rights passing, identity, port sets, call/reply, async.

mod common;

use std::time::Duration;

use common::{Flavor, finish, outcome, report, spawn, spawn_with_args};
use conduit::{PortSet, RecvError, RecvTimeoutError, TryRecvError};
use conduit_tests::{FromChild, Request, ToChild};

fn bounded_3_blocks_the_fourth_send_until_one_is_received(f: Flavor) {
    let kid = spawn("bounded-sender");
    let (tx, rx) = f.bounded::<u64>(3);
    kid.tx.send(ToChild::SendU64(tx)).unwrap();
    assert_eq!(report(&kid), FromChild::Sent(3));
    assert_eq!(report(&kid), outcome("Full"), "try_send of the 4th");
    assert_eq!(report(&kid), outcome("Timeout"), "send_timeout of the 4th");
    assert_eq!(report(&kid), FromChild::Blocking);
    assert_eq!(rx.len(), 3);
    // The child is now inside send(3): it must not get through while the
    // channel holds three unreceived messages.
    assert!(matches!(kid.rx.recv_timeout(Duration::from_millis(300)), Err(RecvTimeoutError::Timeout)));
    assert_eq!(rx.recv().unwrap(), 0);
    assert_eq!(report(&kid), FromChild::Sent(4), "taking one message unblocks the sender");
    let rest: Vec<u64> = rx.iter().collect();
    assert_eq!(rest, vec![1, 2, 3]);
    finish(kid);
}

fn rendezvous_send_returns_only_once_the_receiver_takes_it(f: Flavor) {
    let kid = spawn("rendezvous-sender");
    let (tx, rx) = f.bounded::<u64>(0);
    kid.tx.send(ToChild::SendU64(tx)).unwrap();
    assert_eq!(report(&kid), outcome("Full"), "try_send with no receiver waiting");
    assert_eq!(report(&kid), outcome("Timeout"), "send_timeout with no receiver waiting");
    assert_eq!(report(&kid), FromChild::Blocking);
    assert!(matches!(kid.rx.recv_timeout(Duration::from_millis(300)), Err(RecvTimeoutError::Timeout)));
    // The child is still inside send: nothing was buffered while nobody
    // received (a try_recv here may take its message: that is a receive).
    assert_eq!(rx.recv().unwrap(), 42);
    assert_eq!(report(&kid), FromChild::Sent(1));
    let last = rx.recv();
    assert!(matches!(last, Err(RecvError::Disconnected)), "{last:?}");
    finish(kid);
}

fn unbounded_never_blocks_the_sender_while_the_receiver_sleeps(f: Flavor) {
    // 20 000 messages of 1 KiB: about 100 times what the kernel buffers.
    const N: u64 = 20_000;
    let kid = spawn("flood");
    let (tx, rx) = f.unbounded::<Vec<u8>>();
    kid.tx.send(ToChild::SendBytes(tx, N)).unwrap();
    // We receive nothing until the child says it has sent everything.
    assert_eq!(report(&kid), FromChild::Sent(N));
    for i in 0..N {
        let m = rx.recv().unwrap();
        assert_eq!(m, i.to_le_bytes().repeat(128), "message {i} intact and in order");
    }
    assert!(matches!(rx.recv(), Err(RecvError::Disconnected)));
    finish(kid);
}

fn try_and_timeout_variants_report_empty_timeout_and_disconnected(f: Flavor) {
    let kid = spawn("identity");
    let (tx, rx) = f.bounded::<u64>(4);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    assert!(matches!(rx.recv_timeout(Duration::from_millis(20)), Err(RecvTimeoutError::Timeout)));
    kid.tx.send(ToChild::SendU64(tx)).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), kid.child.id() as u64);
    // The child's send right died with it.
    assert!(matches!(rx.recv_timeout(Duration::from_secs(10)), Err(RecvTimeoutError::Disconnected)));
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Disconnected)));
    finish(kid);
}

fn a_right_passed_to_a_third_process_is_used_directly(f: Flavor) {
    // A (this test) gives C the receive right and B a send right; B then
    // talks to C without A in the path.
    let b = spawn("relay-sender");
    let c = spawn("relay-receiver");
    let (tx, rx) = f.unbounded::<String>();
    c.tx.send(ToChild::RecvString(rx)).unwrap();
    assert_eq!(report(&c), FromChild::Ready);
    b.tx.send(ToChild::SendString(tx)).unwrap();
    assert_eq!(report(&b), FromChild::Sent(1));
    let b_pid = if f.has_credentials() { b.child.id() } else { u32::MAX };
    assert_eq!(report(&c), FromChild::Received("hello from B".into(), b_pid), "C names B as the sender");
    finish(b);
    // B exited and A's copy went into the message: C sees no senders left.
    assert_eq!(report(&c), outcome("Disconnected"));
    finish(c);
}

fn recv_from_names_the_sending_process(f: Flavor) {
    let kid = spawn("identity-twice");
    let (tx, rx) = f.unbounded::<u64>();
    kid.tx.send(ToChild::SendU64(tx)).unwrap();
    if !f.has_credentials() {
        // The kernel names no sender on shared memory or pipes: said so.
        let err = rx.recv_from().unwrap_err();
        assert!(matches!(err, RecvError::Failed(conduit::Error::NoCredentials)), "{err:?}");
        finish(kid);
        return;
    }
    let (pid, who) = rx.recv_from().unwrap();
    assert_eq!(pid, kid.child.id() as u64);
    assert_eq!(who.pid, kid.child.id());
    assert_eq!(who.uid, rustix::process::getuid().as_raw());
    assert_eq!(who.gid, rustix::process::getgid().as_raw());
    // Asked not to: the next message comes without its sender (and whole).
    rx.without_credentials().unwrap();
    let err = rx.recv_from().unwrap_err();
    assert!(matches!(err, RecvError::Failed(conduit::Error::NoCredentials)), "{err:?}");
    finish(kid);
}

fn port_set_says_which_receiver_is_ready(f: Flavor) {
    let kid = spawn("identity");
    let (_tx_a, rx_a) = f.unbounded::<String>();
    let (tx_b, rx_b) = f.bounded::<u64>(1);
    let (_tx_c, rx_c) = f.bounded::<u64>(0);
    let mut set = PortSet::new();
    let a = set.add(&rx_a);
    let b = set.add(&rx_b);
    let c = set.add(&rx_c);
    assert_eq!(set.try_ready(), None);
    assert_eq!(set.ready_timeout(Duration::from_millis(20)), None);
    kid.tx.send(ToChild::SendU64(tx_b)).unwrap();
    assert_eq!(set.ready(), b);
    assert_eq!(rx_b.try_recv().unwrap(), kid.child.id() as u64);
    // The child is gone: its channel is ready with Disconnected; the others stay quiet.
    assert_eq!(set.ready_timeout(Duration::from_secs(10)), Some(b));
    assert!(matches!(rx_b.try_recv(), Err(TryRecvError::Disconnected)));
    assert!(matches!(rx_a.try_recv(), Err(TryRecvError::Empty)));
    assert_ne!(a, c);
    finish(kid);
}

fn port_set_serves_a_rendezvous_member(f: Flavor) {
    let kid = spawn("rendezvous-sender");
    let (_tx_a, rx_a) = f.unbounded::<u64>();
    let (tx, rx) = f.bounded::<u64>(0);
    kid.tx.send(ToChild::SendU64(tx)).unwrap();
    assert_eq!(report(&kid), outcome("Full"));
    assert_eq!(report(&kid), outcome("Timeout"));
    assert_eq!(report(&kid), FromChild::Blocking);
    let mut set = PortSet::new();
    set.add(&rx_a);
    let r = set.add(&rx);
    assert_eq!(set.ready_timeout(Duration::from_secs(10)), Some(r));
    assert_eq!(rx.try_recv().unwrap(), 42);
    assert_eq!(report(&kid), FromChild::Sent(1));
    finish(kid);
}

fn call_waits_for_exactly_one_reply_and_reports_a_dropped_reply_right(f: Flavor) {
    let kid = spawn("server");
    let (tx, rx) = f.bounded::<Request>(4);
    kid.tx.send(ToChild::Serve(rx)).unwrap();
    if !f.carries_rights() {
        // The reply right cannot cross a pipe: a typed error at the call,
        // and the channel still works.
        let err = tx.call(|reply| Request::Upper("mach".into(), reply)).unwrap_err();
        assert!(matches!(err, conduit::CallError::Failed(conduit::Error::Unsupported(_))), "{err:?}");
        drop(tx);
        finish(kid);
        return;
    }
    let up = tx.call(|reply| Request::Upper("mach".into(), reply)).unwrap();
    assert_eq!(up, "MACH");
    let err = tx.call_timeout(Request::Ignore, Duration::from_secs(10)).unwrap_err();
    assert!(matches!(err, conduit::CallError::NoReply), "{err:?}");
    drop(tx);
    finish(kid);
}

/// A transport with a largest message (a message queue): a larger one is
/// refused at the send with its limit, handed back, and the channel works
/// on; one that fits travels.
fn refused_over_the_limit(f: Flavor, max: usize) {
    let (tx, rx) = f.bounded::<Vec<u8>>(1);
    match tx.send(vec![7u8; 4 << 20]) {
        Err(conduit::SendError::Failed(back, conduit::Error::TooLarge { limit, .. })) => {
            assert_eq!((back.len(), limit), (4 << 20, max));
        }
        other => panic!("want TooLarge with the message back, got {:?}", other.map_err(|e| e.to_string())),
    }
    let fits = vec![7u8; max - 64];
    tx.send(fits.clone()).unwrap();
    assert_eq!(rx.recv().unwrap(), fits);
}

fn a_large_message_travels_out_of_line(f: Flavor) {
    const N: u64 = 4 << 20;
    if let Some(max) = f.max_frame() {
        return refused_over_the_limit(f, max);
    }
    let kid = spawn("big");
    let (tx, rx) = f.bounded::<Vec<u8>>(1);
    kid.tx.send(ToChild::SendBytes(tx, N)).unwrap();
    let data = rx.recv().unwrap();
    assert_eq!(data.len() as u64, N);
    assert!(data.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    finish(kid);
}

fn a_stream_of_large_messages_arrives_whole_while_the_receiver_sleeps(f: Flavor) {
    // 48 × 2 MiB, unbounded: far more than a sender's bulk buffers hold,
    // so later messages take the fallback path; all must arrive intact.
    const N: u64 = 48;
    if let Some(max) = f.max_frame() {
        return refused_over_the_limit(f, max);
    }
    let kid = spawn_with_args("big-stream", &[&N.to_string()]);
    let (tx, rx) = f.unbounded::<Vec<u8>>();
    kid.tx.send(ToChild::SendBytes(tx, 2 << 20)).unwrap();
    assert_eq!(report(&kid), FromChild::Sent(N));
    for i in 0..N {
        let m = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(m.len(), 2 << 20);
        assert!(m.iter().all(|&b| b == i as u8), "message {i} intact");
    }
    finish(kid);
    assert!(matches!(rx.recv(), Err(RecvError::Disconnected)));
}

fn async_send_and_recv_inside_tokio(f: Flavor) {
    let kid = spawn("double");
    let (to_tx, to_rx) = f.bounded::<u64>(1);
    let (back_tx, back_rx) = f.bounded::<u64>(1);
    kid.tx.send(ToChild::RecvU64(to_rx)).unwrap();
    kid.tx.send(ToChild::SendU64(back_tx)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // Another task makes progress while ours waits: the runtime is not blocked.
        let ticker = tokio::spawn(async { 7u8 });
        for i in 0..50u64 {
            to_tx.send_async(i).await.unwrap();
            assert_eq!(back_rx.recv_async().await.unwrap(), i * 2);
        }
        assert_eq!(ticker.await.unwrap(), 7);
    });
    drop(to_tx);
    rt.block_on(async {
        assert!(matches!(back_rx.recv_async().await, Err(RecvError::Disconnected)));
    });
    finish(kid);
}

conformance!(
    bounded_3_blocks_the_fourth_send_until_one_is_received,
    rendezvous_send_returns_only_once_the_receiver_takes_it,
    unbounded_never_blocks_the_sender_while_the_receiver_sleeps,
    try_and_timeout_variants_report_empty_timeout_and_disconnected,
    a_right_passed_to_a_third_process_is_used_directly,
    recv_from_names_the_sending_process,
    port_set_says_which_receiver_is_ready,
    port_set_serves_a_rendezvous_member,
    call_waits_for_exactly_one_reply_and_reports_a_dropped_reply_right,
    a_large_message_travels_out_of_line,
    a_stream_of_large_messages_arrives_whole_while_the_receiver_sleeps,
    async_send_and_recv_inside_tokio,
);

/// A sender whose earlier messages still wait in this process's outbox
/// (the socket's buffer was full) does not move: the new holder's sends
/// would overtake them. The move is refused with the sender handed back;
/// once the receiver has read and the outbox is flushed, it moves, and
/// every message arrives once, in order. (Found by the `ctl_block` fuzz
/// target.)
#[test]
fn a_sender_with_messages_in_its_outbox_does_not_move_until_they_are_out() {
    let (tx, rx) = conduit::unbounded::<u64>().unwrap();
    // Far more than a socket buffer holds: the rest wait in the outbox.
    let n = 20_000u64;
    for i in 0..n {
        tx.send(i).unwrap();
    }
    let (carry_tx, carry_rx) = conduit::unbounded::<conduit::Sender<u64>>().unwrap();
    let tx = match carry_tx.send(tx) {
        Err(conduit::SendError::Failed(tx, e)) => {
            assert!(e.to_string().contains("outbox"), "{e}");
            tx
        }
        other => panic!("a sender with a full outbox moved: {other:?}"),
    };
    for i in 0..n {
        assert_eq!(rx.recv().unwrap(), i);
    }
    tx.flush();
    carry_tx.send(tx).unwrap();
    let moved = carry_rx.recv().unwrap();
    moved.send(n).unwrap();
    assert_eq!(rx.recv().unwrap(), n);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
}

/// A socket channel with both ends in one process holds no socket until
/// it needs one: its control block is its one descriptor, and dropping
/// it gives that back.
#[test]
fn a_socket_channel_with_both_ends_in_one_process_holds_one_descriptor() {
    let kid = spawn("socket-fds");
    let FromChild::Outcome(said) = report(&kid) else { panic!("want an outcome") };
    assert_eq!(said, "1000 channels: 1000 descriptors; after dropping them: 0");
    finish(kid);
}

/// Messages queued in this process before the receiver leaves for
/// another process all reach it there, in order, before any sent after
/// the move — far more of them than a socket buffer holds.
#[test]
fn messages_queued_before_the_receiver_leaves_arrive_first_and_in_order() {
    let kid = spawn("per-thread");
    let (tx, rx) = conduit::unbounded::<u64>().unwrap();
    let n = 30_000u64;
    for i in 0..n {
        tx.send(i).unwrap();
    }
    kid.tx.send(ToChild::RecvU64(rx)).unwrap();
    for i in n..n + 1000 {
        tx.send(i).unwrap();
    }
    // No flush: the backlog's thread and the outbox's flusher finish
    // their work after the last sender is dropped.
    drop(tx);
    assert_eq!(report(&kid), FromChild::Sent(n + 1000));
    finish(kid);
}
