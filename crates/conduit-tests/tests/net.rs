//! Sockets between real processes: typed channels over TCP (IPv4, IPv6)
//! and Unix stream sockets with exact capacity, peer death, the three
//! kinds of server under 50 concurrent clients, hostile clients, typed
//! UDP datagrams and multicast.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{Kid, finish, outcome, report, spawn_with_args};
use conduit::net::{self, Addr, Conn, Listener, Peer, udp};
use conduit::{Error, RecvError, RecvTimeoutError, SendError, WireError};
use conduit_tests::FromChild;
use serde::{Deserialize, Serialize};

fn tcp_listener(capacity: Option<usize>) -> Listener {
    let mut l = Listener::bind("tcp:127.0.0.1:0").expect("listen");
    l.set_capacity(capacity);
    l
}

fn bounded_script_over(l: &Listener) {
    let kid = spawn_with_args("net-bounded-sender", &[&l.local_addr().to_string()]);
    let conn: Conn<(), u64> = l.accept().expect("accept");
    assert_eq!(report(&kid), FromChild::Sent(3));
    assert_eq!(report(&kid), outcome("Full"), "try_send of the 4th");
    assert_eq!(report(&kid), outcome("Timeout"), "send_timeout of the 4th");
    assert_eq!(report(&kid), FromChild::Blocking);
    // The child is now inside send(3): it must not get through while the
    // channel holds three unreceived messages.
    assert!(matches!(kid.rx.recv_timeout(Duration::from_millis(300)), Err(RecvTimeoutError::Timeout)));
    assert_eq!(conn.rx.recv().unwrap(), 0);
    assert_eq!(report(&kid), FromChild::Sent(4), "taking one message unblocks the sender");
    let rest: Vec<u64> = conn.rx.iter().collect();
    assert_eq!(rest, vec![1, 2, 3]);
    finish(kid);
}

#[test]
fn bounded_3_over_tcp_blocks_the_fourth_send_until_one_is_received() {
    bounded_script_over(&tcp_listener(Some(3)));
}

#[test]
fn bounded_3_over_tcp_on_ipv6() {
    let mut l = match Listener::bind("tcp:[::1]:0") {
        Ok(l) => l,
        Err(e) => {
            // Said loudly: a machine without IPv6 loopback cannot run it.
            eprintln!("NOT RUN: this machine has no IPv6 loopback ([::1]): {e}");
            assert!(matches!("tcp:[::1]:7".parse::<Addr>(), Ok(Addr::Tcp(a)) if a.is_ipv6()));
            return;
        }
    };
    l.set_capacity(Some(3));
    assert!(matches!(l.local_addr(), Addr::Tcp(a) if a.is_ipv6()));
    bounded_script_over(&l);
}

#[test]
fn bounded_3_over_a_unix_stream_socket_and_recv_from_names_the_process() {
    let path = std::env::temp_dir().join(format!("conduit-net-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut l = Listener::bind(format!("unix:{}", path.display())).expect("listen");
    l.set_capacity(Some(3));
    let kid = spawn_with_args("net-bounded-sender", &[&l.local_addr().to_string()]);
    let conn: Conn<(), u64> = l.accept().expect("accept");
    let Peer::Process(creds) = conn.peer else { panic!("a Unix peer is a process") };
    assert_eq!(creds.pid, kid.child.id(), "SO_PEERCRED names the child");
    assert_eq!(report(&kid), FromChild::Sent(3));
    assert_eq!(report(&kid), outcome("Full"));
    assert_eq!(report(&kid), outcome("Timeout"));
    assert_eq!(report(&kid), FromChild::Blocking);
    assert_eq!(conn.rx.recv_from().unwrap(), (0, creds), "recv_from names the peer process");
    assert_eq!(report(&kid), FromChild::Sent(4));
    assert_eq!(conn.rx.iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    finish(kid);
    drop(l);
    assert!(!path.exists(), "the listener removes its socket file");
}

#[test]
fn rendezvous_over_tcp_returns_only_once_the_receiver_takes_it() {
    let l = tcp_listener(Some(0));
    let kid = spawn_with_args("net-rendezvous-sender", &[&l.local_addr().to_string()]);
    let conn: Conn<(), u64> = l.accept().expect("accept");
    assert_eq!(conn.rx.capacity(), Some(0));
    assert_eq!(report(&kid), outcome("Full"), "try_send with no receiver waiting");
    assert_eq!(report(&kid), outcome("Timeout"), "send_timeout with no receiver waiting");
    assert_eq!(report(&kid), FromChild::Blocking);
    assert!(matches!(kid.rx.recv_timeout(Duration::from_millis(300)), Err(RecvTimeoutError::Timeout)));
    assert_eq!(conn.rx.recv().unwrap(), 42);
    assert_eq!(report(&kid), FromChild::Sent(1));
    assert!(matches!(conn.rx.recv(), Err(RecvError::Disconnected)));
    finish(kid);
}

#[test]
fn an_unbounded_tcp_sender_never_blocks_while_the_receiver_sleeps() {
    // 20 000 messages of 1 KiB: far more than the kernel buffers, so
    // frames go in part and wait in the sender's outbox.
    const N: u64 = 20_000;
    let l = tcp_listener(None);
    let kid = spawn_with_args("net-flood", &[&l.local_addr().to_string(), &N.to_string()]);
    let conn: Conn<(), Vec<u8>> = l.accept().expect("accept");
    assert_eq!(report(&kid), FromChild::Sent(N), "nothing received yet");
    for i in 0..N {
        assert_eq!(conn.rx.recv().unwrap(), i.to_le_bytes().repeat(128), "message {i} whole and in order");
    }
    assert!(matches!(conn.rx.recv(), Err(RecvError::Disconnected)));
    finish(kid);
}

#[test]
fn timeouts_large_messages_and_a_receivers_limit_over_tcp() {
    let mut l = tcp_listener(Some(2));
    l.set_capacity(Some(2));
    let addr = l.local_addr().clone();
    let server = std::thread::spawn(move || l.accept::<Vec<u8>, Vec<u8>>().unwrap());
    let client = net::Connect::new(&addr).capacity(2).open::<Vec<u8>, Vec<u8>>().unwrap();
    let server = server.join().unwrap();
    assert!(matches!(client.rx.try_recv(), Err(conduit::TryRecvError::Empty)));
    assert!(matches!(client.rx.recv_timeout(Duration::from_millis(20)), Err(RecvTimeoutError::Timeout)));
    // 4 MiB each way: written in part, finished by the link.
    let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    client.tx.send(big.clone()).unwrap();
    assert_eq!(server.rx.recv().unwrap(), big);
    server.tx.send(big.clone()).unwrap();
    assert_eq!(client.rx.recv().unwrap(), big);
    // A receiver's own limit: refused by its declared size, the stream
    // goes on.
    server.rx.set_max_message(1024);
    client.tx.send(vec![1; 4096]).unwrap();
    client.tx.send(vec![2; 10]).unwrap();
    assert!(matches!(server.rx.recv(), Err(RecvError::Failed(Error::Wire(WireError::TooLarge { .. })))));
    assert_eq!(server.rx.recv().unwrap(), vec![2; 10]);
}

#[test]
fn a_large_bounded_tcp_channel_is_never_over_full_and_a_waiting_sender_gets_its_credit() {
    // n = 32: credits go back with the next receive, or at once when the
    // sender asks (it does as it starts to wait).
    let l = tcp_listener(Some(32));
    let addr = l.local_addr().clone();
    let server = std::thread::spawn(move || l.accept::<(), u64>().unwrap());
    let client = net::connect::<u64, ()>(&addr).unwrap();
    let server = server.join().unwrap();
    for i in 0..32 {
        client.tx.try_send(i).unwrap();
    }
    assert!(matches!(client.tx.try_send(32), Err(conduit::TrySendError::Full(32))), "33 would be over full");
    let (done_tx, done_rx) = conduit::unbounded::<u64>().unwrap();
    let sender = std::thread::spawn(move || {
        client.tx.send(32).unwrap();
        done_tx.send(32).unwrap();
        client
    });
    assert!(matches!(done_rx.recv_timeout(Duration::from_millis(200)), Err(RecvTimeoutError::Timeout)));
    assert_eq!(server.rx.recv().unwrap(), 0);
    assert_eq!(done_rx.recv_timeout(Duration::from_secs(10)).unwrap(), 32, "one taken: the waiting send goes");
    let _client = sender.join().unwrap();
    for i in 1..=32 {
        assert_eq!(server.rx.recv().unwrap(), i);
    }
}

/// A connected pair over loopback TCP, in this process.
fn loopback<S, R>(capacity: Option<usize>) -> (Conn<S, R>, Conn<R, S>)
where
    S: Serialize + serde::de::DeserializeOwned + Send + 'static,
    R: Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let l = tcp_listener(capacity);
    let addr = l.local_addr().clone();
    let server = std::thread::spawn(move || l.accept::<R, S>().unwrap());
    let mut c = net::Connect::new(&addr);
    if let Some(n) = capacity {
        c = c.capacity(n);
    }
    let client = c.open::<S, R>().unwrap();
    (client, server.join().unwrap())
}

#[test]
fn tcp_receivers_work_in_a_port_set_and_in_async() {
    let (a, a_srv) = loopback::<u64, u64>(Some(4));
    let (b, b_srv) = loopback::<u64, u64>(Some(0));
    let (_local_tx, local_rx) = conduit::unbounded::<u64>().unwrap();
    let mut set = conduit::PortSet::new();
    set.add(&local_rx);
    let ia = set.add(&a_srv.rx);
    let ib = set.add(&b_srv.rx);
    assert_eq!(set.ready_timeout(Duration::from_millis(20)), None);
    a.tx.send(5).unwrap();
    assert_eq!(set.ready_timeout(Duration::from_secs(10)), Some(ia));
    assert_eq!(a_srv.rx.try_recv().unwrap(), 5);
    // A rendezvous member: the set's wait offers the token, so the send
    // goes through and the member is ready.
    let t = std::thread::spawn(move || {
        b.tx.send(6).unwrap();
        b
    });
    assert_eq!(set.ready_timeout(Duration::from_secs(10)), Some(ib));
    assert_eq!(b_srv.rx.try_recv().unwrap(), 6);
    let _b = t.join().unwrap();
    // Async, both ways.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for i in 0..50u64 {
            a.tx.send_async(i).await.unwrap();
            let got = a_srv.rx.recv_async().await.unwrap();
            a_srv.tx.send_async(got * 2).await.unwrap();
            assert_eq!(a.rx.recv_async().await.unwrap(), i * 2);
        }
    });
}

#[test]
fn a_network_receiver_refuses_by_default_what_is_over_64_mib_and_goes_on() {
    let (c, s) = loopback::<Vec<u8>, Vec<u8>>(None);
    assert_eq!(s.rx.max_message(), net::DEFAULT_MAX_MESSAGE);
    // Who sent it, as the kernel knows it: a TCP peer is its address.
    c.tx.send(vec![1]).unwrap();
    let (m, peer) = s.rx.recv_with_peer().unwrap();
    assert_eq!((m, peer), (vec![1], s.peer));
    assert!(matches!(peer, Peer::Addr(a) if a.ip().is_loopback()));
    assert!(matches!(s.rx.recv_from(), Err(RecvError::Failed(Error::NoCredentials))));
    c.tx.send(vec![0; net::DEFAULT_MAX_MESSAGE + 1]).unwrap();
    c.tx.send(vec![7; 3]).unwrap();
    assert!(matches!(s.rx.recv(), Err(RecvError::Failed(Error::Wire(WireError::TooLarge { .. })))));
    assert_eq!(s.rx.recv().unwrap(), vec![7; 3]);
}

fn kill_and_reap(mut kid: Kid) -> Instant {
    kid.child.kill().unwrap();
    let exit = kid.child.wait().unwrap();
    assert_eq!(exit.signal, Some(9));
    Instant::now()
}

#[test]
fn kill_9_of_the_client_is_disconnected_at_once_on_the_server() {
    let l = tcp_listener(None);
    let kid = spawn_with_args("net-client-hold", &[&l.local_addr().to_string()]);
    let conn: Conn<u64, u64> = l.accept().expect("accept");
    assert_eq!(report(&kid), FromChild::Ready);
    assert_eq!(conn.rx.recv().unwrap(), 1, "what was sent before the death is delivered");
    let dead = kill_and_reap(kid);
    assert!(matches!(conn.rx.recv(), Err(RecvError::Disconnected)));
    assert!(matches!(conn.tx.send(2), Err(SendError::Disconnected(2))), "the message comes back");
    let took = dead.elapsed();
    assert!(took < Duration::from_millis(100), "Disconnected {took:?} after the client was reaped");
}

#[test]
fn kill_9_of_the_server_is_disconnected_at_once_on_the_client() {
    let kid = common::spawn("net-server-hold");
    let FromChild::Outcome(addr) = report(&kid) else { panic!("want the address") };
    let conn = net::connect::<u64, u64>(addr.as_str()).expect("connect");
    assert_eq!(conn.rx.recv().unwrap(), 7);
    assert_eq!(report(&kid), FromChild::Ready);
    let dead = kill_and_reap(kid);
    assert!(matches!(conn.rx.recv(), Err(RecvError::Disconnected)));
    assert!(matches!(conn.tx.send(8), Err(SendError::Disconnected(8))), "the message comes back");
    let took = dead.elapsed();
    assert!(took < Duration::from_millis(100), "Disconnected {took:?} after the server was reaped");
}

#[test]
fn a_blocked_bounded_sender_sees_the_receivers_death() {
    // The server's receiver holds one message and never receives; its
    // process dies while our second send waits for a credit.
    let kid = common::spawn("net-server-hold");
    let FromChild::Outcome(addr) = report(&kid) else { panic!("want the address") };
    let conn = net::connect::<u64, u64>(addr.as_str()).expect("connect");
    assert_eq!(conn.tx.capacity(), Some(1), "the server's capacity came with its welcome");
    assert_eq!(conn.rx.recv().unwrap(), 7);
    assert_eq!(report(&kid), FromChild::Ready);
    conn.tx.send(0).unwrap();
    let waiter = std::thread::spawn(move || conn.tx.send(1));
    kill_and_reap(kid);
    assert!(matches!(waiter.join().unwrap(), Err(SendError::Disconnected(1))));
}

#[derive(Debug, Serialize, Deserialize)]
enum Msg {
    Num(u64),
    Right(conduit::Sender<u64>),
}

#[test]
fn a_right_cannot_cross_tcp_and_comes_back_with_the_error() {
    let l = tcp_listener(None);
    let addr = l.local_addr().clone();
    let server = std::thread::spawn(move || {
        let conn: Conn<(), Msg> = l.accept().unwrap();
        conn.rx.iter().map(|m| matches!(m, Msg::Num(7))).collect::<Vec<_>>()
    });
    let conn = net::connect::<Msg, ()>(&addr).unwrap();
    let (local_tx, local_rx) = conduit::unbounded::<u64>().unwrap();
    match conn.tx.send(Msg::Right(local_tx)) {
        Err(SendError::Failed(Msg::Right(back), Error::Unsupported(_))) => {
            // Nothing lost: the right is ours again and still works.
            back.send(5).unwrap();
            assert_eq!(local_rx.recv().unwrap(), 5);
        }
        other => panic!("sending a right over TCP: {other:?}"),
    }
    conn.tx.send(Msg::Num(7)).unwrap();
    drop(conn);
    assert_eq!(server.join().unwrap(), vec![true], "the connection goes on after the refused send");
}

// ---------------------------------------------------------------- servers

const CLIENTS: usize = 50;
const ROUNDS: &str = "20";

fn echo(conn: Conn<String, String>) {
    for line in conn.rx.iter() {
        if conn.tx.send(line.to_uppercase()).is_err() {
            return;
        }
    }
}

/// 50 client processes at once, each checking its 20 echoes.
fn fifty_clients(addr: &Addr) {
    let a = addr.to_string();
    let kids: Vec<Kid> =
        (0..CLIENTS).map(|i| spawn_with_args("net-echo-client", &[&a, ROUNDS, &i.to_string()])).collect();
    for kid in kids {
        let r = kid.rx.recv_timeout(Duration::from_secs(60)).expect("client report");
        assert_eq!(r, outcome("ok"));
        finish(kid);
    }
}

#[test]
fn an_iterative_server_serves_50_concurrent_clients() {
    let l = tcp_listener(Some(4));
    let (addr, stop) = (l.local_addr().clone(), l.stopper());
    let server = std::thread::spawn(move || net::serve_iterative(&l, echo));
    fifty_clients(&addr);
    stop.stop();
    server.join().unwrap().expect("the server stops cleanly");
}

#[test]
fn a_thread_per_connection_server_serves_50_concurrent_clients() {
    let l = tcp_listener(Some(4));
    let (addr, stop) = (l.local_addr().clone(), l.stopper());
    let server = std::thread::spawn(move || net::serve_threads(&l, echo));
    fifty_clients(&addr);
    stop.stop();
    server.join().unwrap().expect("the server stops cleanly");
}

/// Zombie children of this process (state `Z` in `/proc/*/stat`).
fn zombies() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let Some(tail) = stat.rsplit_once(") ").map(|t| t.1) else { continue };
        let f: Vec<&str> = tail.split(' ').collect();
        if f.first() == Some(&"Z") && f.get(1) == Some(&me.as_str()) {
            out.push(e.file_name().to_string_lossy().parse().unwrap_or(0));
        }
    }
    out
}

#[test]
fn a_process_per_connection_server_serves_50_concurrent_clients_and_leaves_no_zombie() {
    let l = tcp_listener(Some(4));
    let (addr, stop) = (l.local_addr().clone(), l.stopper());
    let server = std::thread::spawn(move || {
        net::serve_processes::<String, String>(&l, || {
            let mut c = conduit::process::Command::new(env!("CARGO_BIN_EXE_conduit-test-child"));
            c.arg("net-echo-process").kill_on_parent_death(true);
            c
        })
    });
    fifty_clients(&addr);
    stop.stop();
    server.join().unwrap().expect("the server stops cleanly, every child reaped");
    // Children of other tests in this binary may be zombies for the
    // moment between their exit and their reaper's wait: a zombie must not
    // stay, so look until none is left (a child nobody reaps stays).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut left = zombies();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        left = zombies();
    }
    assert_eq!(left, Vec::<u32>::new(), "no zombie is left");
}

// ---------------------------------------------------------------- hostile

/// A greeting as the wire document describes it (`docs/WIRE.md`).
fn greeting(role: u8, capacity: u64, cookie: [u8; 16]) -> Vec<u8> {
    let mut g = b"CONDUIT\0".to_vec();
    g.push(1);
    g.push(role);
    g.extend_from_slice(&[0; 6]);
    g.extend_from_slice(&capacity.to_le_bytes());
    g.extend_from_slice(&cookie);
    g
}

#[test]
fn hostile_clients_do_not_disturb_the_others() {
    let l = tcp_listener(Some(8));
    let (addr, stop) = (l.local_addr().clone(), l.stopper());
    let Addr::Tcp(sa) = addr else { unreachable!() };
    let (seen_tx, seen_rx) = conduit::unbounded::<String>().unwrap();
    let server = std::thread::spawn(move || {
        net::serve_threads(&l, move |conn: Conn<String, String>| {
            loop {
                match conn.rx.recv() {
                    Ok(line) => {
                        if conn.tx.send(line.to_uppercase()).is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Disconnected) => return,
                    Err(RecvError::Failed(e)) => {
                        // A typed error for this client alone.
                        let _ = seen_tx.send(format!("{e}"));
                        if matches!(e, Error::Wire(WireError::TooLarge { .. })) {
                            continue;
                        }
                    }
                }
            }
        })
    });
    // 1. Random bytes instead of a greeting.
    let mut junk = TcpStream::connect(sa).unwrap();
    let mut rng = conduit_tests::Rng(0x5eed);
    let bytes: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
    junk.write_all(&bytes).unwrap();
    // 2. Half-open: connects, sends half a greeting, says nothing more.
    let mut half = TcpStream::connect(sa).unwrap();
    half.write_all(&greeting(0, 0, [9; 16])[..20]).unwrap();
    // 3. A well-greeted client that declares a 4 GiB frame, then garbage.
    let mut up = TcpStream::connect(sa).unwrap();
    up.write_all(&greeting(0, u64::MAX, [7; 16])).unwrap();
    let mut down = TcpStream::connect(sa).unwrap();
    down.write_all(&greeting(1, u64::MAX, [7; 16])).unwrap();
    let mut welcome = [0u8; 40];
    up.read_exact(&mut welcome).unwrap();
    assert_eq!(&welcome[..8], b"CONDUIT\0");
    let mut bomb = vec![0xD1, 0xC0, 1, 1, 0, 0, 0, 0];
    bomb.extend_from_slice(&u32::MAX.to_le_bytes());
    bomb.extend_from_slice(&[0; 4]);
    up.write_all(&bomb).unwrap();
    // 4. A client that dies in the middle of a message.
    let mut cut_up = TcpStream::connect(sa).unwrap();
    cut_up.write_all(&greeting(0, u64::MAX, [5; 16])).unwrap();
    let mut cut_down = TcpStream::connect(sa).unwrap();
    cut_down.write_all(&greeting(1, u64::MAX, [5; 16])).unwrap();
    cut_up.read_exact(&mut welcome).unwrap();
    let whole = conduit::net::udp::encode(&"a line that never ends".to_string()).unwrap();
    cut_up.write_all(&whole[..whole.len() / 2]).unwrap();
    drop((cut_up, cut_down));
    // The good clients, meanwhile.
    fifty_clients(&addr);
    let mut errors = vec![
        seen_rx.recv_timeout(Duration::from_secs(10)).expect("a typed error"),
        seen_rx.recv_timeout(Duration::from_secs(10)).expect("a typed error"),
    ];
    errors.sort();
    assert!(errors[0].contains("oversized") && errors[1].contains("truncated"), "{errors:?}");
    // The bomb's client breaks the framing with garbage, then goes.
    up.write_all(&bytes).unwrap();
    drop((up, down, junk, half));
    stop.stop();
    server.join().unwrap().expect("the server survives and stops cleanly");
}

// ---------------------------------------------------------------- UDP

#[test]
fn udp_corrupt_and_truncated_datagrams_are_dropped_and_counted() {
    let sock = udp::Socket::bind("127.0.0.1:0").unwrap();
    let to = sock.local_addr().unwrap();
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    let good = udp::encode(&"hello".to_string()).unwrap();
    raw.send_to(b"not a frame at all", to).unwrap();
    raw.send_to(&good[..good.len() - 2], to).unwrap();
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 0x20;
    raw.send_to(&flipped, to).unwrap();
    raw.send_to(&[], to).unwrap();
    raw.send_to(&good, to).unwrap();
    let (msg, from) = sock.recv_from_timeout::<String>(Duration::from_secs(10)).unwrap();
    assert_eq!(msg, "hello");
    assert_eq!(from, raw.local_addr().unwrap());
    assert_eq!(sock.dropped(), 4, "junk, truncated, corrupt and empty datagrams are counted");
    // Too large for one datagram: refused at the send, nothing sent.
    let big = vec![0u8; udp::MAX_DATAGRAM];
    assert!(matches!(sock.send_to(&big, to), Err(Error::TooLarge { .. })));
}

#[test]
fn an_iterative_udp_server_answers_each_datagram_to_its_source() {
    let server = udp::Socket::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        server.serve(|q: String, _from| if q == "stop" { udp::Answer::Stop } else { udp::Answer::Reply(q.len()) })
    });
    let client = udp::Socket::bind("127.0.0.1:0").unwrap();
    for word in ["a", "bb", "ccc"] {
        client.send_to(&word.to_string(), addr).unwrap();
        let (n, from) = client.recv_from_timeout::<usize>(Duration::from_secs(10)).unwrap();
        assert_eq!((n, from), (word.len(), addr));
    }
    client.send_to(&"stop".to_string(), addr).unwrap();
    t.join().unwrap().unwrap();
}

#[test]
fn multicast_reaches_three_receiver_processes() {
    // Loopback multicast: the group is joined on 127.0.0.1 and sent out
    // of it, so no network beyond this host is needed.
    let group = Ipv4Addr::new(239, 255, 42, 99);
    // This process's own member holds the port (no other socket of the
    // machine can take it meanwhile) and hears the group too.
    let own = udp::Socket::multicast(group, 0, Ipv4Addr::LOCALHOST).unwrap();
    let port = own.local_addr().unwrap().port();
    let kids: Vec<Kid> =
        (0..3).map(|_| spawn_with_args("udp-multicast-receiver", &[&group.to_string(), &port.to_string()])).collect();
    for kid in &kids {
        assert_eq!(report(kid), FromChild::Ready);
    }
    let sender = udp::Socket::bind("127.0.0.1:0").unwrap();
    sender.set_multicast_interface(Ipv4Addr::LOCALHOST).unwrap();
    sender.set_multicast_loop(true).unwrap();
    sender.set_multicast_ttl(1).unwrap();
    sender.send_to(&"to the group".to_string(), std::net::SocketAddr::from((group, port))).unwrap();
    let from_port = u32::from(sender.local_addr().unwrap().port());
    for kid in kids {
        assert_eq!(report(&kid), FromChild::Received("to the group".into(), from_port));
        finish(kid);
    }
    let (m, _) = own.recv_from_timeout::<String>(Duration::from_secs(10)).unwrap();
    assert_eq!(m, "to the group");
    own.leave(group, Ipv4Addr::LOCALHOST).unwrap();
}
