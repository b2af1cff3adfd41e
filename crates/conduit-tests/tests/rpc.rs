//! RPC between real processes: stubs generated from a trait
//! (`conduit_tests::Calculator`), served by `conduit-test-child` on every
//! transport and over TCP; unknown methods, duplicates, deadlines, a
//! panicking handler and a server killed mid-call.

mod common;

use std::time::{Duration, Instant};

use common::{Flavor, Kid, finish, report, spawn};
use conduit::rpc::{self, Answer, Call, Outcome, RpcError};
use conduit_tests::{CalculatorClient, CalculatorV2Client, FromChild, ToChild};

/// A calculator served by a child, on channels of flavor `f`; the raw
/// channels are the test's when `raw` is asked for.
fn served(f: Flavor) -> (Kid, rpc::Client) {
    let kid = spawn("rpc-server");
    let (call_tx, call_rx) = f.unbounded::<Call>();
    let (ans_tx, ans_rx) = f.unbounded::<Answer>();
    let (client, conn) = rpc::connect(call_tx, call_rx, ans_tx, ans_rx);
    kid.tx.send(ToChild::Rpc(conn)).unwrap();
    assert_eq!(report(&kid), FromChild::Ready);
    (kid, client)
}

fn calls_run_across_processes_on_this_transport(f: Flavor) {
    let (kid, client) = served(f);
    let calc = CalculatorClient::new(client);
    assert_eq!(calc.add(2, 3).unwrap(), 5);
    assert_eq!(calc.add(-7, 3).unwrap(), -4);
    assert_eq!(calc.bump().unwrap(), 1);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_eq!(rt.block_on(calc.add_async(40, 2)).unwrap(), 42);
    assert_eq!(rt.block_on(calc.count_async()).unwrap(), 1);
    // Dropping the client closes the connection: the server's loop ends.
    drop(calc);
    finish(kid);
}

conformance!(calls_run_across_processes_on_this_transport);

#[test]
fn calls_run_over_tcp() {
    let kid = spawn("rpc-tcp-server");
    let FromChild::Outcome(addr) = report(&kid) else { panic!("want the address") };
    let conn = conduit::net::connect::<Call, Answer>(addr.as_str()).unwrap();
    let calc = CalculatorClient::new(rpc::Client::new(conn.tx, conn.rx));
    assert_eq!(calc.add(20, 22).unwrap(), 42);
    assert_eq!(calc.bump().unwrap(), 1);
    drop(calc);
    finish(kid);
}

#[test]
fn a_method_the_server_lacks_is_a_typed_error_and_the_server_goes_on() {
    let (kid, client) = served(Flavor::Socket);
    // A newer client (one method more) against the older server.
    let v2 = CalculatorV2Client::new(client);
    match v2.mul(6, 7) {
        Err(RpcError::UnknownMethod(m)) => assert_eq!(m, "mul"),
        other => panic!("want UnknownMethod, got {other:?}"),
    }
    assert_eq!(v2.add(6, 7).unwrap(), 13, "the server goes on");
    drop(v2);
    finish(kid);
}

#[test]
fn a_duplicate_call_is_answered_from_the_reply_cache_never_run_twice() {
    let kid = spawn("rpc-server");
    let (call_tx, call_rx) = conduit::unbounded::<Call>().unwrap();
    let (ans_tx, ans_rx) = conduit::unbounded::<Answer>().unwrap();
    kid.tx.send(ToChild::Rpc(rpc::Connection { calls: call_rx, answers: ans_tx })).unwrap();
    assert_eq!(report(&kid), FromChild::Ready);
    let call = |id: u64, method: &str| {
        call_tx
            .send(Call {
                client: 0,
                id,
                done_below: 0,
                method: method.into(),
                budget_us: None,
                args: vec![],
                rights: Default::default(),
            })
            .unwrap();
        let a = ans_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(a.id, id);
        a.outcome
    };
    let first = call(7, "bump");
    assert_eq!(first, Outcome::Returned(vec![1]));
    assert_eq!(call(7, "bump"), first, "the same answer, from the cache");
    assert_eq!(call(8, "count"), Outcome::Returned(vec![1]), "bump ran once");
    // So many calls later that id 7 is forgotten: refused, not run.
    for id in 9..9 + rpc::REPLY_CACHE as u64 {
        call(id, "count");
    }
    assert_eq!(call(7, "bump"), Outcome::Duplicate);
    assert_eq!(call(9 + rpc::REPLY_CACHE as u64, "count"), Outcome::Returned(vec![1]));
    drop(call_tx);
    finish(kid);
}

#[test]
fn a_deadline_ends_the_call_and_travels_to_the_handler() {
    let (kid, client) = served(Flavor::Shm);
    let calc = CalculatorClient::new(client);
    assert_eq!(calc.budget_left_ms().unwrap(), None, "no deadline, none seen");
    calc.rpc().set_timeout(Some(Duration::from_secs(5)));
    let left = calc.budget_left_ms().unwrap().expect("the handler sees the deadline");
    assert!(left > 0 && left <= 5000, "{left}");
    // A handler that waits past the deadline: the caller is told so.
    calc.rpc().set_timeout(Some(Duration::from_millis(100)));
    let t = Instant::now();
    assert!(matches!(calc.hold(), Err(RpcError::DeadlineExceeded)));
    assert!(t.elapsed() >= Duration::from_millis(100));
    // Release the handler; its late answer is skipped, the next call's
    // answer is the next call's.
    kid.tx.send(ToChild::Go).unwrap();
    calc.rpc().set_timeout(None);
    assert_eq!(calc.add(1, 1).unwrap(), 2);
    drop(calc);
    finish(kid);
}

#[test]
fn a_panicking_handler_is_reported_and_the_server_goes_on() {
    let (kid, client) = served(Flavor::Socket);
    let calc = CalculatorClient::new(client);
    match calc.boom() {
        Err(RpcError::Panicked(m)) => assert_eq!(m, "boom"),
        other => panic!("want Panicked, got {other:?}"),
    }
    assert_eq!(calc.add(2, 2).unwrap(), 4);
    drop(calc);
    finish(kid);
}

#[test]
fn a_server_killed_mid_call_is_server_died_never_a_hang() {
    for f in [Flavor::Socket, Flavor::Shm] {
        let (mut kid, client) = served(f);
        let calc = CalculatorClient::new(client);
        assert_eq!(calc.bump().unwrap(), 1);
        let waiting = std::thread::spawn(move || calc.hold());
        kid.child.kill().unwrap();
        assert_eq!(kid.child.wait().unwrap().signal, Some(libc::SIGKILL));
        match waiting.join().unwrap() {
            Err(RpcError::ServerDied) => {}
            other => panic!("{f:?}: want ServerDied, got {other:?}"),
        }
    }
}

/// A calculator served by a child behind a fault injector in each
/// direction: the client's calls and the server's answers both go
/// through a relay in this process.
fn served_through_faults(
    semantics: rpc::Semantics,
    faults: rpc::faults::Faults,
) -> (Kid, rpc::Client, [std::sync::Arc<rpc::faults::Injected>; 2]) {
    use rpc::faults::relay;
    let kid = spawn("rpc-server");
    let (c_tx, c_rx) = conduit::unbounded::<Call>().unwrap();
    let (s_tx, s_rx) = conduit::unbounded::<Call>().unwrap();
    let (a_tx, a_rx) = conduit::unbounded::<Answer>().unwrap();
    let (b_tx, b_rx) = conduit::unbounded::<Answer>().unwrap();
    kid.tx.send(ToChild::Rpc(rpc::Connection { calls: s_rx, answers: a_tx })).unwrap();
    assert_eq!(report(&kid), FromChild::Ready);
    let calls = relay(c_rx, s_tx, faults);
    let answers = relay(a_rx, b_tx, rpc::faults::Faults { seed: faults.seed ^ 0x9e37_79b9, ..faults });
    (kid, rpc::Client::with_semantics(c_tx, b_rx, semantics), [calls, answers])
}

fn many_faults(seed: u64) -> rpc::faults::Faults {
    rpc::faults::Faults {
        seed,
        drop: 0.1,
        duplicate: 0.15,
        reorder: 0.1,
        corrupt: 0.05,
        delay: 0.02,
        max_delay: Duration::from_millis(2),
    }
}

#[test]
fn exactly_once_under_a_thousand_injected_faults_runs_each_call_once() {
    let (kid, client, injected) = served_through_faults(rpc::Semantics::ExactlyOnce, many_faults(42));
    client.set_retry(Some(Duration::from_millis(5)));
    let calc = CalculatorClient::new(client);
    let mut succeeded = 0u64;
    while injected.iter().map(|i| i.total()).sum::<u64>() < 1000 {
        // Each bump runs once: the count it returns is the next number.
        assert_eq!(calc.bump().unwrap(), succeeded + 1, "exactly once");
        succeeded += 1;
    }
    assert_eq!(calc.count().unwrap(), succeeded);
    let (c, a) = (&injected[0], &injected[1]);
    use std::sync::atomic::Ordering::Relaxed;
    for (what, n) in [
        ("dropped", c.dropped.load(Relaxed) + a.dropped.load(Relaxed)),
        ("duplicated", c.duplicated.load(Relaxed) + a.duplicated.load(Relaxed)),
        ("reordered", c.reordered.load(Relaxed) + a.reordered.load(Relaxed)),
        ("corrupted", c.corrupted.load(Relaxed) + a.corrupted.load(Relaxed)),
    ] {
        assert!(n > 10, "{what}: {n} — every kind of fault happened");
    }
    assert!(calc.rpc().resent() > 0 && calc.rpc().corrupted() > 0);
    drop(calc);
    finish(kid);
}

/// Async calls resend too: eight tasks in flight together, 1,000 faults
/// injected; every bump ran once (the counts the tasks saw are exactly
/// 1..=N, none twice, none missing) and the server's count is N.
#[test]
fn exactly_once_async_calls_in_flight_under_a_thousand_faults_run_each_call_once() {
    let (kid, client, injected) = served_through_faults(rpc::Semantics::ExactlyOnce, many_faults(4242));
    client.set_retry(Some(Duration::from_millis(5)));
    let calc = CalculatorClient::new(client);
    let injected = std::sync::Arc::new(injected);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut seen: Vec<u64> = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (c, inj) = (calc.clone(), std::sync::Arc::clone(&injected));
            set.spawn(async move {
                let mut got = Vec::new();
                while inj.iter().map(|i| i.total()).sum::<u64>() < 1000 {
                    got.push(c.bump_async().await.expect("a resent call is answered"));
                }
                got
            });
        }
        let mut all = Vec::new();
        while let Some(r) = set.join_next().await {
            all.extend(r.unwrap());
        }
        all
    });
    seen.sort_unstable();
    let n = seen.len() as u64;
    assert_eq!(seen, (1..=n).collect::<Vec<_>>(), "each bump ran exactly once");
    assert!(calc.rpc().resent() > 0, "the async calls whose call or answer was lost were resent");
    assert_eq!(calc.count().unwrap(), n);
    drop(calc);
    finish(kid);
}

#[test]
fn at_most_once_under_faults_never_runs_a_call_twice() {
    let (kid, client, _injected) = served_through_faults(rpc::Semantics::AtMostOnce, many_faults(7));
    // No resends: a lost call or answer is a timeout for the caller.
    client.set_timeout(Some(Duration::from_millis(20)));
    let calc = CalculatorClient::new(client);
    let (mut attempts, mut succeeded, mut last) = (0u64, 0u64, 0u64);
    while attempts < 400 {
        attempts += 1;
        match calc.bump() {
            Ok(n) => {
                assert!(n > last, "a count never repeats: no call ran twice");
                last = n;
                succeeded += 1;
            }
            Err(RpcError::DeadlineExceeded) => {}
            Err(e) => panic!("{e}"),
        }
    }
    calc.rpc().set_retry(Some(Duration::from_millis(5)));
    calc.rpc().set_timeout(None);
    let ran = calc.count().unwrap();
    assert!(ran >= succeeded && ran <= attempts, "ran {ran}, succeeded {succeeded}, attempted {attempts}");
    drop(calc);
    finish(kid);
}

/// Async calls in flight, at most once, through drops, duplicates and
/// reorders: a call whose call or answer was lost ends at its deadline
/// (never a hang: nobody resends it), and no call runs twice — the counts
/// the tasks saw are all different, though calls in flight say which
/// earlier ones are done (a late duplicate of one is refused, not run).
#[test]
fn at_most_once_async_calls_in_flight_under_faults_end_by_their_deadline_and_never_run_twice() {
    let (kid, client, _injected) = served_through_faults(rpc::Semantics::AtMostOnce, many_faults(77));
    client.set_timeout(Some(Duration::from_millis(20)));
    let calc = CalculatorClient::new(client);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (mut seen, late): (Vec<u64>, u64) = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let c = calc.clone();
            set.spawn(async move {
                let (mut got, mut late) = (Vec::new(), 0u64);
                for _ in 0..50 {
                    match c.bump_async().await {
                        Ok(n) => got.push(n),
                        Err(RpcError::DeadlineExceeded) => late += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                (got, late)
            });
        }
        let (mut all, mut late) = (Vec::new(), 0);
        while let Some(r) = set.join_next().await {
            let (got, l) = r.unwrap();
            all.extend(got);
            late += l;
        }
        (all, late)
    });
    let succeeded = seen.len() as u64;
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len() as u64, succeeded, "a count repeated: a call ran twice");
    assert!(late > 0, "some calls or answers were lost, and those calls ended at their deadline");
    calc.rpc().set_retry(Some(Duration::from_millis(5)));
    calc.rpc().set_timeout(None);
    let ran = calc.count().unwrap();
    assert!(ran >= succeeded && ran <= 400, "ran {ran}, succeeded {succeeded}, attempted 400");
    drop(calc);
    finish(kid);
}

#[test]
fn a_durable_reply_cache_answers_after_kill_9_and_restart_without_running_again() {
    let dir = common::TempDir::new("rpc-durable");
    let path = dir.0.join("replies.redb");
    let p = path.to_str().unwrap();
    let start = || {
        let kid = common::spawn_with_args("rpc-durable-server", &[p]);
        let (call_tx, call_rx) = conduit::unbounded::<Call>().unwrap();
        let (ans_tx, ans_rx) = conduit::unbounded::<Answer>().unwrap();
        kid.tx.send(ToChild::Rpc(rpc::Connection { calls: call_rx, answers: ans_tx })).unwrap();
        assert_eq!(report(&kid), FromChild::Ready);
        (kid, call_tx, ans_rx)
    };
    let ask = |tx: &conduit::Sender<Call>, rx: &conduit::Receiver<Answer>, id: u64, method: &str| {
        tx.send(Call {
            client: 77,
            id,
            done_below: id,
            method: method.into(),
            budget_us: None,
            args: vec![],
            rights: Default::default(),
        })
        .unwrap();
        let a = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(a.id, id);
        a.outcome
    };
    let (mut first, tx, rx) = start();
    for id in 1..=3 {
        assert_eq!(ask(&tx, &rx, id, "bump"), Outcome::Returned(vec![id as u8]));
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // A new server process on the same cache: the client resends call 3
    // (its answer lost with the crash, say) — answered, not run; and an
    // older duplicate is refused.
    let (second, tx, rx) = start();
    assert_eq!(ask(&tx, &rx, 3, "bump"), Outcome::Returned(vec![3]));
    assert_eq!(ask(&tx, &rx, 2, "bump"), Outcome::Duplicate);
    assert_eq!(ask(&tx, &rx, 4, "count"), Outcome::Returned(vec![0]), "nothing ran again in the new process");
    drop((tx, rx));
    finish(second);
}

#[test]
fn dropping_an_async_call_cancels_it_and_the_handler_learns_it() {
    let (kid, client) = served(Flavor::Shm);
    let calc = CalculatorClient::new(client);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        // The caller gives up after 50 ms: the future is dropped.
        let gave_up = tokio::time::timeout(Duration::from_millis(50), calc.until_cancelled_async()).await;
        assert!(gave_up.is_err(), "the handler runs until cancelled");
    });
    // The handler saw the cancellation (it added 1000) before the next
    // call was taken.
    assert_eq!(calc.count().unwrap(), 1000);
    drop(calc);
    finish(kid);
}

#[test]
fn a_remote_object_is_called_from_a_third_process_and_dropped_when_its_last_holder_is_killed() {
    use conduit_tests::{Greet, GreeterServer};
    let (dropped_tx, dropped) = conduit::unbounded::<()>().unwrap();
    let remote = rpc::Remote::serve(GreeterServer(Greet { dropped: dropped_tx })).unwrap();
    let me = std::process::id();
    let b = spawn("remote-passer");
    let mut c = spawn("remote-holder");
    let (pass_tx, pass_rx) = conduit::unbounded::<rpc::Remote>().unwrap();
    c.tx.send(ToChild::TakeRemote(pass_rx)).unwrap();
    b.tx.send(ToChild::PassRemote(remote.clone(), pass_tx)).unwrap();
    // Calls from B and from C (which got its reference from B) run here.
    let greeting = |who: &str| format!("hello, {who}, from {me}");
    assert_eq!(report(&b), FromChild::Received(greeting("B"), b.child.id()));
    assert_eq!(report(&c), FromChild::Received(greeting("C"), c.child.id()));
    finish(b);
    drop(remote);
    // C holds the last reference: the object lives.
    assert!(matches!(dropped.try_recv(), Err(conduit::TryRecvError::Empty)));
    c.child.kill().unwrap();
    let killed = Instant::now();
    dropped.recv_timeout(Duration::from_secs(1)).expect("the object is dropped within 1 s of its last holder's death");
    assert!(killed.elapsed() < Duration::from_secs(1));
    c.child.wait().unwrap();
}

#[test]
fn sixty_four_async_calls_fly_together_on_one_client_and_blocking_threads_share_it() {
    let (kid, client) = served(Flavor::Shm);
    let calc = CalculatorClient::new(client);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..64i64 {
            let c = calc.clone();
            set.spawn(async move { (i, c.add_async(i, 1000).await) });
        }
        let mut seen = 0;
        while let Some(r) = set.join_next().await {
            let (i, sum) = r.unwrap();
            assert_eq!(sum.unwrap(), i + 1000, "each call gets its own answer");
            seen += 1;
        }
        assert_eq!(seen, 64);
    });
    // Blocking calls from eight threads, on the same pipelined client:
    // each call's "done below" never covers another thread's call in
    // flight (a call that lost that race was refused as a duplicate).
    std::thread::scope(|s| {
        for t in 0..8i64 {
            let c = &calc;
            s.spawn(move || {
                for i in 0..250 {
                    assert_eq!(c.add(t, i).unwrap(), t + i);
                }
            });
        }
    });
    assert_eq!(calc.bump().unwrap(), 1);
    drop(calc);
    finish(kid);
}

/// Methods take and return rights: a `Sender` the server writes a stream
/// into, a `Receiver` it hands back, a remote object it returns (living in
/// the server) and one it is given (living here: the server calls back).
fn methods_take_and_return_channel_ends_and_remote_objects_on(f: Flavor) {
    use conduit_tests::{Greet, GreeterClient, GreeterServer};
    let (kid, client) = served(f);
    let calc = CalculatorClient::new(client);
    // A stream the server writes into; its copy of the sender is dropped
    // after the call, ours went with the call: the stream ends.
    let (tx, rx) = conduit::unbounded::<u64>().unwrap();
    assert_eq!(calc.fill(tx, 100).unwrap(), 100);
    assert_eq!(rx.iter().collect::<Vec<_>>(), (0..100).collect::<Vec<_>>());
    // A stream the server returns.
    let numbers = calc.numbers(50).unwrap();
    assert_eq!(numbers.iter().collect::<Vec<_>>(), (0..50).collect::<Vec<_>>());
    // The same through the async twin (the pipelined client).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let numbers = rt.block_on(calc.numbers_async(3)).unwrap();
    assert_eq!(numbers.iter().collect::<Vec<_>>(), [0, 1, 2]);
    // A remote object returned: calls on it run in the server's process.
    let theirs = calc.greeter().unwrap();
    let greeting = GreeterClient::new(theirs.client()).greet("T".into()).unwrap();
    assert_eq!(greeting, format!("hello, T, from {}", kid.child.id()));
    // A remote object passed in: the server calls back into this process,
    // and lets its reference go when the call ends.
    let (dropped_tx, dropped) = conduit::unbounded::<()>().unwrap();
    let mine = rpc::Remote::serve(GreeterServer(Greet { dropped: dropped_tx })).unwrap();
    let me = std::process::id();
    assert_eq!(calc.greet_via(mine.clone(), "S".into()).unwrap(), format!("hello, S, from {me}"));
    drop(mine);
    dropped.recv_timeout(Duration::from_secs(5)).expect("the object is dropped with its last reference");
    drop((theirs, calc));
    finish(kid);
}

#[test]
fn methods_take_and_return_channel_ends_and_remote_objects_over_sockets() {
    methods_take_and_return_channel_ends_and_remote_objects_on(Flavor::Socket);
}

#[test]
fn methods_take_and_return_channel_ends_and_remote_objects_over_shared_memory() {
    methods_take_and_return_channel_ends_and_remote_objects_on(Flavor::Shm);
}

/// A transport that cannot carry rights refuses such a call with a typed
/// error at once; the connection goes on.
#[test]
fn a_right_in_a_call_over_a_pipe_is_a_typed_error_and_the_connection_goes_on() {
    let (kid, client) = served(Flavor::Pipe);
    let calc = CalculatorClient::new(client);
    let (tx, _rx) = conduit::unbounded::<u64>().unwrap();
    match calc.fill(tx, 1) {
        Err(RpcError::Transport(conduit::Error::Unsupported(_))) => {}
        other => panic!("want Transport(Unsupported), got {other:?}"),
    }
    assert_eq!(calc.add(2, 2).unwrap(), 4);
    drop(calc);
    finish(kid);
}

/// Over sockets, calls in flight together go in batches (one message for
/// many calls, one for their answers): 64 tasks, many rounds, every answer
/// to its own call.
#[test]
fn calls_in_flight_over_sockets_go_in_batches_each_answer_to_its_call() {
    let (kid, client) = served(Flavor::Socket);
    let calc = CalculatorClient::new(client);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for t in 0..64i64 {
            let c = calc.clone();
            set.spawn(async move {
                for i in 0..200i64 {
                    assert_eq!(c.add_async(t * 1000, i).await.unwrap(), t * 1000 + i, "its own answer");
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    });
    assert_eq!(calc.add(1, 2).unwrap(), 3, "a blocking call on the same client");
    let batched = calc.rpc().batched();
    assert!(batched > 64 * 200 / 2, "most calls went in batches: {batched} of {}", 64 * 200);
    drop(calc);
    finish(kid);
}

/// A server that does not know batches (an older conduit) answers the
/// client's question `UnknownMethod`: the client sends its calls one by
/// one, and they are all answered.
#[test]
fn a_server_without_batches_gets_single_calls() {
    let (call_tx, call_rx) = conduit::unbounded::<Call>().unwrap();
    let (ans_tx, ans_rx) = conduit::unbounded::<Answer>().unwrap();
    let old = std::thread::spawn(move || {
        let mut batches = 0;
        for call in call_rx.iter() {
            let outcome = if call.method == rpc::BATCH {
                batches += 1;
                Outcome::UnknownMethod(call.method.clone())
            } else if call.method == rpc::CANCEL {
                continue;
            } else {
                let (a, b): (i64, i64) = postcard::from_bytes(&call.args).unwrap();
                Outcome::Returned(postcard::to_stdvec(&(a + b)).unwrap())
            };
            if ans_tx.send(Answer { id: call.id, outcome, rights: Default::default() }).is_err() {
                break;
            }
        }
        batches
    });
    let calc = CalculatorClient::new(rpc::Client::new(call_tx, ans_rx));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for t in 0..16i64 {
            let c = calc.clone();
            set.spawn(async move {
                for i in 0..50i64 {
                    assert_eq!(c.add_async(t, i).await.unwrap(), t + i);
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    });
    assert_eq!(calc.rpc().batched(), 0);
    drop(calc);
    assert_eq!(old.join().unwrap(), 1, "asked once, then single calls only");
}
