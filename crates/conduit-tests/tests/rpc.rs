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
        call_tx.send(Call { id, method: method.into(), budget_us: None, args: vec![] }).unwrap();
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
