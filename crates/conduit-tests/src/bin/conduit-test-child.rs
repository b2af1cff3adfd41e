//! The child process of conduit's cross-process tests. `argv[1]` names a
//! role; the link to the test comes from `conduit::process::parent`.

use std::io::IoSlice;
use std::os::fd::AsFd;
use std::time::Duration;

use conduit::wire::{self, Kind};
use conduit::{Sender, TrySendError};
use conduit_tests::{FromChild, Request, ToChild};
use rustix::net::{SendAncillaryBuffer, SendFlags};

type Up = Sender<FromChild>;

fn report(up: &Up, m: FromChild) {
    up.send(m).expect("report to the test");
}

fn outcome(up: &Up, s: &str) {
    report(up, FromChild::Outcome(s.to_string()));
}

/// The bounded-sender script: three sends, then the fourth refused,
/// timed out, and finally blocking until the test receives one.
fn bounded_script(up: &Up, tx: &Sender<u64>) {
    for i in 0..3 {
        tx.send(i).unwrap();
    }
    report(up, FromChild::Sent(3));
    match tx.try_send(3) {
        Err(TrySendError::Full(3)) => outcome(up, "Full"),
        other => outcome(up, &format!("{other:?}")),
    }
    match tx.send_timeout(3, Duration::from_millis(20)) {
        Err(conduit::SendTimeoutError::Timeout(3)) => outcome(up, "Timeout"),
        other => outcome(up, &format!("{other:?}")),
    }
    report(up, FromChild::Blocking);
    tx.send(3).unwrap();
    report(up, FromChild::Sent(4));
}

/// The rendezvous-sender script: refused and timed out with nobody
/// receiving, then blocking until the test receives.
fn rendezvous_script(up: &Up, tx: &Sender<u64>) {
    match tx.try_send(42) {
        Err(TrySendError::Full(42)) => outcome(up, "Full"),
        other => outcome(up, &format!("{other:?}")),
    }
    match tx.send_timeout(42, Duration::from_millis(20)) {
        Err(conduit::SendTimeoutError::Timeout(42)) => outcome(up, "Timeout"),
        other => outcome(up, &format!("{other:?}")),
    }
    report(up, FromChild::Blocking);
    tx.send(42).unwrap();
    report(up, FromChild::Sent(1));
}

/// `argv[2]`: the address a `net-*` role connects to.
fn addr_arg() -> String {
    std::env::args().nth(2).expect("address")
}

fn main() {
    let role = std::env::args().nth(1).expect("role");
    if role == "pending-check" {
        // Before any thread exists: every thread started later inherits
        // the mask, so a signal to the process stays pending.
        conduit::signal::block(&[conduit::signal::SIGWINCH]).unwrap();
    }
    if role.starts_with("rpc-") {
        // Serve the test calculator: on a connection the test hands over
        // (rpc-server), on TCP (rpc-tcp-server: the address is reported),
        // or under a broker name (rpc-named-server SOCKET NAME).
        use conduit_tests::{Calc, CalculatorServer};
        let (up, down) = conduit::process::parent::<FromChild, ToChild>().expect("link to the test");
        match role.as_str() {
            "rpc-server" => {
                let ToChild::Rpc(conn) = down.recv().unwrap() else { panic!("want Rpc") };
                report(&up, FromChild::Ready);
                conduit::rpc::serve(&CalculatorServer(Calc::new(down)), conn).unwrap();
            }
            "rpc-durable-server" => {
                // argv: the reply cache's file. Exactly-once answers kept on disk.
                let path = std::env::args().nth(2).unwrap();
                let cache = conduit::rpc::ReplyCache::durable(&path).unwrap();
                let ToChild::Rpc(conn) = down.recv().unwrap() else { panic!("want Rpc") };
                report(&up, FromChild::Ready);
                let stats = conduit::rpc::ServeStats::default();
                conduit::rpc::serve_with(&CalculatorServer(Calc::new(down)), conn, &cache, &stats).unwrap();
            }
            "rpc-tcp-server" => {
                let listener = conduit::net::Listener::bind("tcp:127.0.0.1:0").unwrap();
                outcome(&up, &listener.local_addr().to_string());
                let conn = listener.accept::<conduit::rpc::Answer, conduit::rpc::Call>().unwrap();
                let conn = conduit::rpc::Connection { calls: conn.rx, answers: conn.tx };
                conduit::rpc::serve(&CalculatorServer(Calc::new(down)), conn).unwrap();
            }
            "rpc-named-server" => {
                let path = std::env::args().nth(2).unwrap();
                let name = std::env::args().nth(3).unwrap();
                let c = conduit_broker::Client::connect_to(path.as_ref()).unwrap();
                let (_go_tx, go_rx) = conduit::unbounded::<ToChild>().unwrap();
                let service = std::sync::Arc::new(CalculatorServer(Calc::new(go_rx)));
                let flags = conduit_broker::NameFlags { queue: true, ..Default::default() };
                let _accepting = c.serve_rpc(&name, flags, service).unwrap();
                report(&up, FromChild::Ready);
                let _ = down.recv();
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    if role == "net-echo-process" {
        // A child of `net::serve_processes`: its link is the client's
        // connection. Echo upper-cased lines until the client goes.
        let (tx, rx) = conduit::process::parent::<String, String>().expect("the client's connection");
        for line in rx.iter() {
            if tx.send(line.to_uppercase()).is_err() {
                break;
            }
        }
        return;
    }
    let (up, down) = conduit::process::parent::<FromChild, ToChild>().expect("link to the test");
    let next = || down.recv().expect("instruction from the test");
    match role.as_str() {
        "bounded-sender" => {
            let ToChild::SendU64(tx) = next() else { panic!("want SendU64") };
            bounded_script(&up, &tx);
        }
        "rendezvous-sender" => {
            let ToChild::SendU64(tx) = next() else { panic!("want SendU64") };
            rendezvous_script(&up, &tx);
        }
        "net-bounded-sender" => {
            let conn = conduit::net::connect::<u64, ()>(addr_arg()).expect("connect");
            bounded_script(&up, &conn.tx);
        }
        "net-rendezvous-sender" => {
            let conn = conduit::net::connect::<u64, ()>(addr_arg()).expect("connect");
            rendezvous_script(&up, &conn.tx);
        }
        "net-flood" => {
            // argv: address, count. An unbounded sender never blocks,
            // whatever the kernel buffers.
            let n: u64 = std::env::args().nth(3).unwrap().parse().unwrap();
            let conn = conduit::net::connect::<Vec<u8>, ()>(addr_arg()).expect("connect");
            for i in 0..n {
                conn.tx.try_send(i.to_le_bytes().repeat(128)).expect("unbounded send never blocks");
            }
            report(&up, FromChild::Sent(n));
            conn.tx.flush();
        }
        "net-echo-client" => {
            // argv: address, messages, client number. Each reply must be
            // the upper-cased message, in order.
            let n: u64 = std::env::args().nth(3).unwrap().parse().unwrap();
            let id = std::env::args().nth(4).unwrap();
            let conn = conduit::net::connect::<String, String>(addr_arg()).expect("connect");
            for i in 0..n {
                conn.tx.send(format!("client {id} message {i}")).unwrap();
                let back = conn.rx.recv_timeout(Duration::from_secs(30)).expect("echo");
                assert_eq!(back, format!("CLIENT {id} MESSAGE {i}"));
            }
            outcome(&up, "ok");
        }
        "net-client-hold" => {
            // Connect, send one message, then wait to be killed.
            let conn = conduit::net::connect::<u64, u64>(addr_arg()).expect("connect");
            conn.tx.send(1).unwrap();
            report(&up, FromChild::Ready);
            let _ = down.recv();
            drop(conn);
        }
        "net-server-hold" => {
            // Listen, report the address, accept one client, send it one
            // message, then wait to be killed.
            let mut l = conduit::net::Listener::bind("tcp:127.0.0.1:0").expect("listen");
            l.set_capacity(Some(1));
            outcome(&up, &l.local_addr().to_string());
            let conn = l.accept::<u64, u64>().expect("accept");
            conn.tx.send(7).unwrap();
            report(&up, FromChild::Ready);
            let _ = down.recv();
            drop(conn);
        }
        "udp-multicast-receiver" => {
            // argv: group, port. Join, say so, take one message, report it.
            let group: std::net::Ipv4Addr = addr_arg().parse().unwrap();
            let port: u16 = std::env::args().nth(3).unwrap().parse().unwrap();
            let sock = conduit::net::udp::Socket::multicast(group, port, std::net::Ipv4Addr::LOCALHOST)
                .expect("join the group");
            report(&up, FromChild::Ready);
            let (msg, from) = sock.recv_from_timeout::<String>(Duration::from_secs(20)).expect("a datagram");
            report(&up, FromChild::Received(msg, u32::from(from.port())));
        }
        "flood" => {
            let ToChild::SendBytes(tx, n) = next() else { panic!("want SendBytes") };
            for i in 0..n {
                // try_send: an unbounded channel must never say Full.
                tx.try_send(i.to_le_bytes().repeat(128)).expect("unbounded send never blocks");
            }
            report(&up, FromChild::Sent(n));
            tx.flush();
        }
        "fifo-writer" => {
            // argv: path, tag, count. Opens the FIFO by path alone (nothing
            // inherited) and sends self-checking messages of 8 bytes to
            // 12 KiB: the larger ones go in fragments.
            let args: Vec<String> = std::env::args().skip(2).collect();
            let (tag, count): (u64, u64) = (args[1].parse().unwrap(), args[2].parse().unwrap());
            let tx = conduit::fifo::sender_timeout::<Vec<u64>>(&args[0], Duration::from_secs(10)).unwrap();
            for i in 0..count {
                let len = 1 + ((i * 7919 + tag * 31) % 1500) as usize;
                tx.send(vec![tag << 48 | i; len]).unwrap();
            }
            tx.flush();
            report(&up, FromChild::Sent(count));
        }
        "fifo-reader-hold" => {
            // argv: path. Hold the FIFO open for reading until killed.
            let path = std::env::args().nth(2).unwrap();
            let _rx = conduit::fifo::receiver::<u64>(&path).unwrap();
            report(&up, FromChild::Ready);
            let _ = down.recv();
        }
        "big-tagged-writer" => {
            // argv: count. Messages of 200 KiB, far above PIPE_BUF.
            let count: u64 = std::env::args().nth(2).unwrap().parse().unwrap();
            let ToChild::SendTaggedStream(tx, tag) = next() else { panic!("want SendTaggedStream") };
            for i in 0..count {
                tx.send(vec![tag << 48 | i; 25_600]).unwrap();
            }
            tx.flush();
            report(&up, FromChild::Sent(count));
        }
        "pipe-link" => {
            // Linked by pipes: answer with our pid and the descriptors we
            // hold (as `readlink` names them), then wait for the end.
            let ToChild::Go = next() else { panic!("want Go") };
            let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|t| t.display().to_string())
                .collect();
            fds.sort();
            report(&up, FromChild::Received(fds.join(" "), std::process::id()));
            match down.recv() {
                Err(conduit::RecvError::Disconnected) => {}
                other => panic!("expected the end of the link: {other:?}"),
            }
        }
        "sigpipe-writer" => {
            // A host that left SIGPIPE at its default (as a C program
            // does): writing to a pipe whose reader died must be an error,
            // not our death.
            // SAFETY: restoring the default action of SIGPIPE installs no
            // handler code.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            let ToChild::SendU64(tx) = next() else { panic!("want SendU64") };
            report(&up, FromChild::Ready);
            let ToChild::Go = next() else { panic!("want Go") };
            let got = (0..100_000u64).map(|i| tx.send_timeout(i, Duration::from_secs(10))).find(|r| r.is_err());
            match got {
                Some(Err(conduit::SendTimeoutError::Disconnected(_))) => outcome(&up, "Disconnected"),
                other => outcome(&up, &format!("{other:?}")),
            }
        }
        "relay-sender" => {
            let ToChild::SendString(tx) = next() else { panic!("want SendString") };
            tx.send("hello from B".to_string()).unwrap();
            report(&up, FromChild::Sent(1));
        }
        "relay-receiver" => {
            let ToChild::RecvString(rx) = next() else { panic!("want RecvString") };
            report(&up, FromChild::Ready);
            // Shared-memory channels carry no credentials: report u32::MAX.
            let (msg, pid) = match rx.recv_from() {
                Ok((msg, who)) => (msg, who.pid),
                Err(conduit::RecvError::Failed(conduit::Error::NoCredentials)) => (rx.recv().unwrap(), u32::MAX),
                Err(e) => panic!("{e}"),
            };
            report(&up, FromChild::Received(msg, pid));
            match rx.recv() {
                Err(conduit::RecvError::Disconnected) => outcome(&up, "Disconnected"),
                other => outcome(&up, &format!("{other:?}")),
            }
        }
        "hold" => {
            // Keep whatever right we were given until killed.
            let _held = next();
            report(&up, FromChild::Ready);
            let _ = down.recv();
        }
        "loan-holder" => {
            // Hold the producers' lock (a loan, half written) until killed.
            let ToChild::SendBytesRight(tx) = next() else { panic!("want SendBytesRight") };
            let mut loan = tx.loan(64).unwrap();
            loan[..32].fill(0xAA);
            report(&up, FromChild::Ready);
            let _ = down.recv();
        }
        "identity" => {
            let ToChild::SendU64(tx) = next() else { panic!("want SendU64") };
            tx.send(std::process::id() as u64).unwrap();
        }
        "identity-twice" => {
            // With credentials, then after the receiver asked for none.
            let ToChild::SendU64(tx) = next() else { panic!("want SendU64") };
            tx.send(std::process::id() as u64).unwrap();
            tx.send(std::process::id() as u64).unwrap();
        }
        "garbage" => {
            let ToChild::SendU64(tx) = next() else { panic!("want SendU64") };
            let fd = tx.as_fd();
            let raw = |bytes: &[u8]| {
                let mut control = SendAncillaryBuffer::default();
                rustix::net::sendmsg(fd, &[IoSlice::new(bytes)], &mut control, SendFlags::empty()).unwrap();
            };
            let good = wire::simple_frame(Kind::Data, &[7]);
            raw(b"not a conduit frame at all"); // bad magic
            raw(&good[..9]); // truncated
            let mut corrupt = good.clone();
            corrupt[16] ^= 0xff;
            raw(&corrupt); // checksum
            let mut version = good.clone();
            version[2] = 99;
            raw(&version); // version
            let mut long = good.clone();
            long[8] = 200;
            raw(&long); // length field lies
            raw(&[0xC0; 100_000]); // oversized
            let mut kind = good.clone();
            kind[3] = 2;
            raw(&kind); // a wake frame sent to the receiver
            let mut rights = vec![0u8; wire::HEADER_LEN];
            rights.extend_from_slice(&[7, 1]); // payload [7], rights table [1]
            let (head, rest) = rights.split_at_mut(wire::HEADER_LEN);
            wire::write_header(head, Kind::Data, 0, &rest[..1], &rest[1..]);
            raw(&rights); // declares a right (checksum right), carries no descriptor
            raw(&wire::simple_frame(Kind::Data, &[0xff, 0xff, 0xff])); // not a u64
            tx.send(99).unwrap();
            report(&up, FromChild::Sent(1));
        }
        "garbage-any" => {
            // Hostile frames any byte link must survive, written raw to the
            // channel's descriptor (one datagram each on a socket; one
            // after another on a pipe's stream), then a good message.
            let ToChild::SendU64(tx) = next() else { panic!("want SendU64") };
            let sysv = conduit::channel::sysv::queue_id(&tx);
            let raw = |bytes: &[u8]| match sysv {
                // A System V channel's frames go on its queue, as type 1.
                Some(id) => {
                    let mut msg = (1 as libc::c_long).to_ne_bytes().to_vec();
                    msg.extend_from_slice(bytes);
                    // SAFETY: a valid msgbuf (type, then the bytes).
                    let r = unsafe { libc::msgsnd(id, msg.as_ptr().cast(), bytes.len(), 0) };
                    assert_eq!(r, 0, "msgsnd: {}", std::io::Error::last_os_error());
                }
                None => raw_write(&tx, bytes),
            };
            fn raw_write(tx: &conduit::Sender<u64>, bytes: &[u8]) {
                match rustix::io::write(tx.as_fd(), bytes) {
                    Ok(n) => assert_eq!(n, bytes.len()),
                    // A message queue takes messages, not writes.
                    Err(rustix::io::Errno::INVAL) => {
                        use std::os::fd::AsRawFd;
                        loop {
                            // SAFETY: the queue's descriptor and a valid buffer.
                            let r =
                                unsafe { libc::mq_send(tx.as_fd().as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
                            let e = std::io::Error::last_os_error();
                            if r == 0 {
                                break;
                            }
                            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "mq_send: {e}");
                            // Full (the queue holds a few): wait for room.
                            let mut fds = [rustix::event::PollFd::new(tx, rustix::event::PollFlags::OUT)];
                            rustix::event::poll(&mut fds, None).unwrap();
                        }
                    }
                    Err(e) => panic!("write: {e}"),
                }
            }
            let good = wire::simple_frame(Kind::Data, &[7]);
            let mut corrupt = good.clone();
            corrupt[16] ^= 0xff;
            raw(&corrupt); // checksum
            raw(&wire::simple_frame(Kind::Data, &[1u8; 1000])); // over the receiver's limit
            let mut kind = good.clone();
            kind[3] = 2;
            let (head, body) = kind.split_at_mut(wire::HEADER_LEN);
            wire::write_header(head, Kind::Wake, 0, body, &[]);
            raw(&kind); // a wake frame sent to the receiver
            let mut rights = vec![0u8; wire::HEADER_LEN];
            rights.extend_from_slice(&[7, 1]); // payload [7], rights table [1]
            let (head, rest) = rights.split_at_mut(wire::HEADER_LEN);
            wire::write_header(head, Kind::Data, 0, &rest[..1], &rest[1..]);
            raw(&rights); // declares a right, carries no descriptor
            raw(&wire::simple_frame(Kind::Data, &[0xff, 0xff, 0xff])); // not a u64
            tx.send(99).unwrap();
            report(&up, FromChild::Sent(1));
        }
        "exit-code" => std::process::exit(7),
        "server" => {
            let ToChild::Serve(rx) = next() else { panic!("want Serve") };
            for req in rx.iter() {
                match req {
                    Request::Upper(s, reply) => reply.send(s.to_uppercase()).unwrap(),
                    Request::Ignore(reply) => drop(reply),
                }
            }
        }
        "double" => {
            let ToChild::RecvU64(rx) = next() else { panic!("want RecvU64") };
            let ToChild::SendU64(tx) = next() else { panic!("want SendU64") };
            for x in rx.iter() {
                tx.send(x * 2).unwrap();
            }
        }
        "big" => {
            let ToChild::SendBytes(tx, n) = next() else { panic!("want SendBytes") };
            let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            tx.send(data).unwrap();
        }
        "big-stream" => {
            // argv: count. Messages of 2 MiB, each filled with its number,
            // sent without waiting for the receiver (unbounded).
            let count: u64 = std::env::args().nth(2).unwrap().parse().unwrap();
            let ToChild::SendBytes(tx, n) = next() else { panic!("want SendBytes") };
            for i in 0..count {
                tx.send(vec![i as u8; n as usize]).unwrap();
            }
            report(&up, FromChild::Sent(count));
            tx.flush();
        }
        "garbage-bulk" => {
            // Frames that claim a bulk buffer but bring a bad one, then a
            // good message.
            let ToChild::SendU64(tx) = next() else { panic!("want SendU64") };
            let frame = |len: usize| {
                let mut f = vec![0u8; wire::HEADER_LEN];
                wire::write_header_sized(&mut f, Kind::Data, wire::OUT_OF_LINE | wire::BULK, len, &[]);
                f
            };
            let send = |bytes: &[u8], fd: &std::os::fd::OwnedFd| {
                let fds = [fd.as_fd()];
                let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
                let mut control = SendAncillaryBuffer::new(&mut space);
                assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)));
                rustix::net::sendmsg(tx.as_fd(), &[IoSlice::new(bytes)], &mut control, SendFlags::empty()).unwrap();
            };
            // Not sealed at all.
            let loose = rustix::fs::memfd_create("loose", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
            rustix::fs::ftruncate(&loose, 1 << 20).unwrap();
            send(&frame(100_000), &loose);
            // Sealed, but smaller than the payload it claims.
            let small = rustix::fs::memfd_create(
                "small",
                rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
            )
            .unwrap();
            rustix::fs::ftruncate(&small, 4096).unwrap();
            rustix::fs::fcntl_add_seals(&small, rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::GROW).unwrap();
            send(&frame(100_000), &small);
            tx.send(99).unwrap();
            report(&up, FromChild::Sent(1));
        }
        "stream" => {
            // Sends self-checking messages until killed.
            let (tx, tag) = match next() {
                ToChild::SendStream(tx) => (tx, 0),
                ToChild::SendTaggedStream(tx, tag) => (tx, tag),
                _ => panic!("want SendStream"),
            };
            for i in 0.. {
                tx.send(conduit_tests::tagged_stream_message(tag, i)).unwrap();
                if i == 1000 {
                    report(&up, FromChild::Ready);
                }
            }
        }
        "drain" => {
            let ToChild::RecvU64(rx) = next() else { panic!("want RecvU64") };
            let mut n = 0u64;
            for x in rx.iter() {
                assert_eq!(x, n, "messages in order");
                n += 1;
                if n == 100 {
                    report(&up, FromChild::Ready);
                }
            }
        }
        "consume" => {
            // argv[2]: how many to receive; then stop reading (say so) and
            // wait to be killed with the rest unread.
            let n: u64 = std::env::args().nth(2).unwrap().parse().unwrap();
            let ToChild::RecvU64(rx) = next() else { panic!("want RecvU64") };
            report(&up, FromChild::Ready);
            for _ in 0..n {
                rx.recv().unwrap();
            }
            report(&up, FromChild::Sent(n));
            let _ = down.recv();
        }
        "per-thread" => {
            // Messages `thread << 32 | seq` from several threads: each
            // thread's must arrive whole, in order, none lost; report the
            // count when the senders are gone.
            let ToChild::RecvU64(rx) = next() else { panic!("want RecvU64") };
            let mut next_seq = std::collections::HashMap::new();
            let mut total = 0u64;
            for x in rx.iter() {
                let want = next_seq.entry(x >> 32).or_insert(0u64);
                assert_eq!(x & 0xffff_ffff, *want, "thread {} in order", x >> 32);
                *want += 1;
                total += 1;
            }
            report(&up, FromChild::Sent(total));
        }
        "idle" => {
            let ToChild::RecvU64(rx) = next() else { panic!("want RecvU64") };
            report(&up, FromChild::Ready);
            let got = rx.recv().unwrap();
            report(&up, FromChild::Sent(got));
        }
        "echo-u64" => {
            // Answer each number with its successor, until disconnected.
            let ToChild::RecvU64(rx) = next() else { panic!("want RecvU64") };
            let ToChild::SendU64(tx) = next() else { panic!("want SendU64") };
            for m in rx.iter() {
                tx.send(m + 1).unwrap();
            }
        }
        "in-place" => {
            let ToChild::RecvBytes(mut rx) = next() else { panic!("want RecvBytes") };
            {
                let got = rx.recv_in_place().unwrap();
                let ok = got.iter().enumerate().all(|(i, &b)| b == i as u8);
                outcome(&up, &format!("in place: {} bytes {}", got.len(), if ok { "intact" } else { "DAMAGED" }));
            }
            let second = rx.recv().unwrap();
            outcome(&up, &format!("then: {}", String::from_utf8_lossy(&second.0)));
            let _ = rx.recv();
        }
        "segment-reader" => {
            let ToChild::Segment(seg) = next() else { panic!("want Segment") };
            let mut buf = [0u8; 6];
            seg.read_at(0, &mut buf).unwrap();
            assert_eq!(&buf, b"secret");
            seg.write_at(6, b"+reply").unwrap();
            report(&up, FromChild::Outcome(format!("read {} bytes", seg.len())));
        }
        "sysv-typed-sender" => {
            // argv: queue id. Two typed messages of types 4 and 9.
            let q = conduit::kernel::MessageQueue::from_id(addr_arg().parse().unwrap()).expect("the queue");
            q.send_msg(9, &vec![9u64; 3]).unwrap();
            q.send_msg(4, &vec![4u64, 5, 6]).unwrap();
            report(&up, FromChild::Sent(2));
        }
        "signal-sender" => {
            // Signal the parent: SIGUSR1 by kill, SIGUSR2 by sigqueue with 77.
            let parent = rustix::process::getppid().unwrap().as_raw_nonzero().get() as u32;
            conduit::signal::send(parent, conduit::signal::SIGUSR1).unwrap();
            conduit::signal::queue(parent, conduit::signal::SIGUSR2, 77).unwrap();
            report(&up, FromChild::Sent(2));
        }
        "pending-check" => {
            report(&up, FromChild::Ready);
            let _ = next();
            let pending = conduit::signal::pending().unwrap().contains(&conduit::signal::SIGWINCH);
            outcome(&up, if pending { "pending" } else { "not pending" });
            conduit::signal::unblock(&[conduit::signal::SIGWINCH]).unwrap();
            let pending = conduit::signal::pending().unwrap().contains(&conduit::signal::SIGWINCH);
            outcome(&up, if pending { "still pending" } else { "delivered" });
        }
        "remote-passer" => {
            // Call the object, pass a copy of the reference on, let go.
            let ToChild::PassRemote(remote, to) = next() else { panic!("want PassRemote") };
            let greeter = conduit_tests::GreeterClient::new(remote.client());
            report(&up, FromChild::Received(greeter.greet("B".into()).unwrap(), std::process::id()));
            to.send(remote).unwrap();
        }
        "remote-holder" => {
            // Take a reference, call the object, hold it until killed.
            let ToChild::TakeRemote(from) = next() else { panic!("want TakeRemote") };
            let remote = from.recv().unwrap();
            let greeter = conduit_tests::GreeterClient::new(remote.client());
            report(&up, FromChild::Received(greeter.greet("C".into()).unwrap(), std::process::id()));
            let _ = down.recv();
            drop(remote);
        }
        "cascader" => {
            // Start two shells, each with two background sleeps: one with
            // cascading termination, one without. Report every pid:
            // "CASCADE_SH A B PLAIN_SH C D", then wait to be killed.
            let mut pids = Vec::new();
            let mut kids = Vec::new();
            for cascade in [true, false] {
                let (child, lines) = shell_with_pids(cascade);
                pids.push(child.id().to_string());
                pids.extend(lines);
                kids.push(child);
            }
            outcome(&up, &pids.join(" "));
            let _ = down.recv();
            drop(kids);
        }
        "adopter" => {
            // Adopt orphans; start a shell that leaves a background sleep
            // behind and exits; the sleep becomes our child. Kill it, and
            // report what the notify port said and whether it was reaped.
            let events = conduit::notify().unwrap();
            conduit::process::adopt_orphans().unwrap();
            let (mut sh, lines) = shell_with_pids_script("sleep 1000 & echo $!");
            let orphan: u32 = lines[0].parse().unwrap();
            let sh_exit = sh.wait().unwrap();
            let mut seen = Vec::new();
            // The shell's end arrives on the notify port.
            loop {
                match events.recv_timeout(Duration::from_secs(10)).unwrap() {
                    conduit::notify::Event::ChildExited(e) if e.pid == sh_exit.pid => {
                        seen.push("child-exited".to_string());
                        break;
                    }
                    _ => {}
                }
            }
            let stat = std::fs::read_to_string(format!("/proc/{orphan}/stat")).unwrap();
            let ppid: u32 = stat.rsplit(')').next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
            seen.push(if ppid == std::process::id() { "adopted".into() } else { format!("ppid {ppid}") });
            conduit::signal::send(orphan, libc::SIGKILL).unwrap();
            loop {
                match events.recv_timeout(Duration::from_secs(10)).unwrap() {
                    conduit::notify::Event::OrphanExited(e) if e.pid == orphan => {
                        seen.push(format!("orphan-exited signal {:?}", e.signal));
                        break;
                    }
                    _ => {}
                }
            }
            let zombie = std::path::Path::new(&format!("/proc/{orphan}")).exists();
            seen.push(if zombie { "zombie".into() } else { "reaped".into() });
            outcome(&up, &seen.join(", "));
        }
        "sem-holder" => {
            // argv: set id. Take semaphore 0 with SEM_UNDO, say so, hold it
            // until killed.
            let set = conduit::kernel::Semaphores::from_id(addr_arg().parse().unwrap(), 1).expect("the set");
            set.acquire(0, conduit::kernel::Wait::Forever).unwrap();
            report(&up, FromChild::Ready);
            let _ = down.recv();
        }
        "sysv-intruder" => {
            // argv: queue id, as user nobody.
            let id: i32 = addr_arg().parse().unwrap();
            conduit_tests::become_nobody();
            let q = conduit::kernel::MessageQueue::from_id(id);
            let r = q.and_then(|q| q.try_send(1, b"intrusion"));
            outcome(&up, &format!("{r:?}"));
        }
        "intruder" => {
            // argv[2]: a path to open as user nobody.
            let path = std::env::args().nth(2).expect("path");
            conduit_tests::become_nobody();
            match std::fs::OpenOptions::new().read(true).write(true).open(&path) {
                Ok(_) => outcome(&up, "opened"),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => outcome(&up, "denied"),
                Err(e) => outcome(&up, &format!("error: {e}")),
            }
        }
        "named-intruder" => {
            let name = std::env::args().nth(2).expect("name");
            conduit_tests::become_nobody();
            match conduit::memory::NamedSegment::open(&name) {
                Ok(_) => outcome(&up, "opened"),
                Err(conduit::Error::Io(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    outcome(&up, "denied")
                }
                Err(e) => outcome(&up, &format!("error: {e}")),
            }
        }
        "broker" => {
            // argv[2]: socket; argv[3]: max objects per user; argv[4]: data dir.
            let args: Vec<String> = std::env::args().collect();
            let mut config = conduit_broker::Config::at(args[2].clone().into());
            config.dir_mode = 0o755; // the tests reach it as other users too
            if let Some(n) = args.get(3) {
                config.limits.max_objects = n.parse().unwrap();
            }
            config.data_dir = args.get(4).filter(|d| !d.is_empty()).map(Into::into);
            if let Some(n) = args.get(5) {
                config.limits.max_connections = n.parse().unwrap();
            }
            conduit_broker::raise_fd_limit();
            let server = conduit_broker::Server::bind(&config).unwrap().expect("no other broker");
            report(&up, FromChild::Ready);
            server.run();
        }
        "mailbox-creator" => {
            let path = std::env::args().nth(2).unwrap();
            let c = conduit_broker::Client::connect_to(path.as_ref()).unwrap();
            c.create_mailbox("outlives", conduit_broker::MailboxOptions::default()).unwrap();
            c.send("outlives", 7, b"left behind", conduit_broker::OnFull::Block).unwrap();
            report(&up, FromChild::Sent(1));
        }
        "blocked-sender" => {
            let path = std::env::args().nth(2).unwrap();
            let c = conduit_broker::Client::connect_to(path.as_ref()).unwrap();
            report(&up, FromChild::Blocking);
            let sent = c.send("full", 1, b"blocked", conduit_broker::OnFull::Block).unwrap();
            report(&up, FromChild::Sent(sent.receiver.unwrap_or(0) as u64));
        }
        "mailbox-user" => {
            // argv[2]: socket; argv[3]: mailbox. As nobody: try to send, then receive.
            let args: Vec<String> = std::env::args().collect();
            conduit_tests::become_nobody();
            let c = conduit_broker::Client::connect_to(args[2].as_ref()).unwrap();
            let outcome_of = |r: Result<(), conduit_broker::ClientError>| match r {
                Ok(()) => "ok".to_string(),
                Err(conduit_broker::ClientError::Broker(conduit_broker::BrokerError::Denied(_))) => "denied".into(),
                Err(conduit_broker::ClientError::Broker(conduit_broker::BrokerError::Quota(_))) => "quota".into(),
                Err(e) => format!("error: {e}"),
            };
            outcome(&up, &outcome_of(c.send(&args[3], 1, b"from nobody", conduit_broker::OnFull::NoWait).map(|_| ())));
            outcome(&up, &outcome_of(c.recv(&args[3], 0, conduit_broker::WaitFor::NoWait).map(|_| ())));
            // Then own objects until the quota says no.
            let mut made = 0;
            let last = loop {
                let r = c.create_mailbox(&format!("nobody-{made}"), conduit_broker::MailboxOptions::default());
                if r.is_err() || made == 100 {
                    break outcome_of(r);
                }
                made += 1;
            };
            outcome(&up, &format!("created {made}, then {last}"));
            // Still served after hitting the quota.
            outcome(&up, &outcome_of(c.send("nobody-0", 1, b"mine", conduit_broker::OnFull::NoWait).map(|_| ())));
        }
        "mailbox-drain" => {
            // argv[2]: socket; argv[3]: mailbox. Receive (from the shared
            // queue) forever; say so after the first 100.
            let args: Vec<String> = std::env::args().collect();
            let c = conduit_broker::Client::connect_to(args[2].as_ref()).unwrap();
            for i in 1.. {
                c.recv(&args[3], 0, conduit_broker::WaitFor::Forever).unwrap();
                if i == 100 {
                    report(&up, FromChild::Sent(i));
                }
            }
        }
        "shm-fds" | "socket-fds" => {
            // Channels with both ends here, used for a message each: the
            // descriptors they hold, all together.
            let make = || match role.as_str() {
                "shm-fds" => conduit::channel::shm::bounded::<u64>(16).unwrap(),
                _ => conduit::bounded::<u64>(16).unwrap(),
            };
            let fds = || std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
            let warm = make();
            let base = fds();
            let held: Vec<_> = (0..1000u64)
                .map(|i| {
                    let (tx, rx) = make();
                    tx.send(i).unwrap();
                    assert_eq!(rx.recv().unwrap(), i);
                    (tx, rx)
                })
                .collect();
            let used = fds() - base;
            drop(held);
            let after = fds() - base;
            drop(warm);
            outcome(&up, &format!("1000 channels: {used} descriptors; after dropping them: {after}"));
        }
        "exhaust" => {
            // Make each kind of channel with only 0, 1, 2, ... descriptors
            // left to this process, so that its constructor fails at each
            // of its steps in turn; after each attempt, nothing it made
            // may be left: descriptors back at their count, no System V
            // queue last touched by this process.
            use rustix::process::{Resource, getrlimit, setrlimit};
            type Made = Result<(), conduit::Error>;
            type Kind = (&'static str, fn() -> Made);
            fn make<T>(r: Result<(conduit::Sender<T>, conduit::Receiver<T>), conduit::Error>) -> Made {
                r.map(drop)
            }
            let kinds: [Kind; 6] = [
                ("socket", || make(conduit::bounded::<u64>(4))),
                ("shm", || make(conduit::channel::shm::bounded::<u64>(4))),
                ("pipe", || make(conduit::channel::pipe::bounded::<u64>(4))),
                ("mqueue", || make(conduit::channel::mqueue::bounded::<u64>(4))),
                ("sysv", || make(conduit::channel::sysv::bounded::<u64>(4))),
                ("segment", || conduit::memory::Segment::new(4096).map(drop)),
            ];
            let fds = || std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
            let me = std::process::id().to_string();
            let my_queues = || {
                std::fs::read_to_string("/proc/sysvipc/msg")
                    .unwrap_or_default()
                    .lines()
                    .skip(1)
                    .filter(|l| l.split_whitespace().nth(5) == Some(me.as_str()))
                    .count()
            };
            let limit = getrlimit(Resource::Nofile);
            // The limit is on descriptor numbers: fill the holes below the
            // highest one, so that the next descriptor is the next number.
            let highest = || {
                std::fs::read_dir("/proc/self/fd")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
                    .max()
                    .unwrap_or(0)
            };
            let mut fillers = Vec::new();
            let top = highest();
            loop {
                let f = std::fs::File::open("/dev/null").unwrap();
                if std::os::fd::AsRawFd::as_raw_fd(&f) as u64 >= top {
                    break;
                }
                fillers.push(f);
            }
            let mut report_lines = Vec::new();
            for (name, f) in kinds {
                // Once first: what a process sets up once is not a leak.
                f().unwrap();
                let (mut failed, mut leaks) = (0, Vec::new());
                for extra in 0..12 {
                    // `read_dir` itself takes one descriptor while it counts.
                    let base = fds() - 1;
                    let next = {
                        let f = std::fs::File::open("/dev/null").unwrap();
                        std::os::fd::AsRawFd::as_raw_fd(&f) as u64
                    };
                    setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(next + extra), ..limit })
                        .unwrap();
                    let r = f();
                    setrlimit(Resource::Nofile, limit).unwrap();
                    if r.is_err() {
                        failed += 1;
                    }
                    if fds() - 1 != base {
                        leaks.push(format!("{} descriptors with {extra} free", fds() - 1 - base));
                    }
                    if my_queues() != 0 {
                        leaks.push(format!("a System V queue with {extra} free"));
                    }
                }
                report_lines.push(format!("{name}: {failed} failed, leaks {leaks:?}"));
            }
            drop(fillers);
            outcome(&up, &report_lines.join("; "));
        }
        "attacker" => {
            // argv[2]: broker socket; argv[3]: a root-owned 0600 mailbox
            // ("-": only connect); argv[4]: a name root owns; argv[5]: a
            // root-owned 0600 FIFO; argv[6]: the key of a root-owned 0600
            // System V queue. As nobody, try everything on them; one
            // outcome each: "denied", or what happened instead.
            use conduit_broker::{BrokerError, ClientError, MailboxOptions, NameFlags, OnFull, WaitFor};
            let args: Vec<String> = std::env::args().collect();
            conduit_tests::become_nobody();
            let said = |r: Result<String, ClientError>| match r {
                Err(ClientError::Broker(BrokerError::Denied(_))) => "denied".to_string(),
                Err(ClientError::NoBroker { source, .. }) if source.kind() == std::io::ErrorKind::PermissionDenied => {
                    "denied".to_string()
                }
                Err(e) => format!("error: {e}"),
                Ok(s) => s,
            };
            let c = match conduit_broker::Client::connect_to(args[2].as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    outcome(&up, &said(Err(e)));
                    return;
                }
            };
            if args[3] == "-" {
                outcome(&up, "connected");
                return;
            }
            let (mb, name) = (&args[3], &args[4]);
            let ok = |_| "done".to_string();
            outcome(&up, &said(c.send(mb, 1, b"forged", OnFull::NoWait).map(|_| "sent".into())));
            outcome(&up, &said(c.recv(mb, 0, WaitFor::NoWait).map(|m| format!("read {:?}", m.data))));
            outcome(&up, &said(c.recv_held(mb, 0, WaitFor::NoWait).map(|d| format!("held {:?}", d.message().data))));
            outcome(&up, &said(c.chown(mb, 65534, 65534).map(ok)));
            outcome(&up, &said(c.remove_mailbox(mb).map(ok)));
            // Its name is taken: a create is refused (not a takeover).
            outcome(&up, &said(c.create_mailbox(mb, MailboxOptions { mode: 0o666, ..Default::default() }).map(ok)));
            let (port, _keep) = conduit::bounded::<u64>(1).unwrap();
            let take = NameFlags { replace_existing: true, ..NameFlags::default() };
            outcome(&up, &said(c.register(name, port, take).map(|r| format!("{r:?}"))));
            outcome(&up, &said(c.release(name).map(ok)));
            let fifo = conduit::fifo::try_sender::<u64>(&args[5]);
            outcome(
                &up,
                &match fifo {
                    Err(conduit::Error::Io(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => "denied".into(),
                    other => format!("{other:?}"),
                },
            );
            let key: i32 = args[6].parse().unwrap();
            let q = conduit::kernel::MessageQueue::open(key).and_then(|q| q.send(1, b"forged"));
            outcome(
                &up,
                &match q {
                    Err(conduit::kernel::IpcError::Denied) => "denied".into(),
                    other => format!("{other:?}"),
                },
            );
        }
        "mailbox-writer" => {
            // argv[2]: socket; argv[3]: mailbox. As nobody, who may send
            // but not receive: three sends (through the broker), one receive.
            let args: Vec<String> = std::env::args().collect();
            conduit_tests::become_nobody();
            let c = conduit_broker::Client::connect_to(args[2].as_ref()).unwrap();
            for i in 0..3 {
                c.send(&args[3], 1, format!("n{i}").as_bytes(), conduit_broker::OnFull::Block).unwrap();
            }
            let r = c.recv(&args[3], 0, conduit_broker::WaitFor::NoWait);
            let denied = matches!(r, Err(conduit_broker::ClientError::Broker(conduit_broker::BrokerError::Denied(_))));
            outcome(&up, if denied { "denied" } else { "received" });
        }
        "mailbox-waiter" | "mailbox-holder" => {
            // argv[2]: socket; argv[3]: mailbox; argv[4] "nobody": drop to
            // nobody first (a brokered receive from a shared mailbox).
            // The waiter blocks in `recv` (and is killed there); the holder
            // receives with `recv_held`, says what it holds and waits to be
            // killed holding it.
            let args: Vec<String> = std::env::args().collect();
            if args.get(4).is_some_and(|a| a == "nobody") {
                conduit_tests::become_nobody();
            }
            let c = conduit_broker::Client::connect_to(args[2].as_ref()).unwrap();
            report(&up, FromChild::Blocking);
            if role == "mailbox-waiter" {
                let m = c.recv(&args[3], 0, conduit_broker::WaitFor::Forever).unwrap();
                report(&up, FromChild::Received(String::from_utf8_lossy(&m.data).into(), m.sender));
            } else {
                let d = c.recv_held(&args[3], 0, conduit_broker::WaitFor::Forever).unwrap();
                report(&up, FromChild::Received(String::from_utf8_lossy(&d.message().data).into(), 0));
                let _ = down.recv();
                let _ = d.ack();
            }
        }
        "ool-bomb" => {
            // argv[2]: socket. As nobody, connect to the broker and send a
            // 16-byte frame whose payload is declared out of line: a
            // sealed, sparse memfd of 512 MiB (no memory behind it here).
            let args: Vec<String> = std::env::args().collect();
            conduit_tests::become_nobody();
            use rustix::fs::{MemfdFlags, SealFlags};
            use rustix::net::{AddressFamily, SendAncillaryMessage, SocketAddrUnix, SocketType};
            let sock = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
            rustix::net::connect(&sock, &SocketAddrUnix::new(args[2].as_str()).unwrap()).unwrap();
            let size: u32 = 512 << 20;
            let fd = rustix::fs::memfd_create("bomb", MemfdFlags::ALLOW_SEALING | MemfdFlags::CLOEXEC).unwrap();
            rustix::fs::ftruncate(&fd, u64::from(size)).unwrap();
            rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL)
                .unwrap();
            let mut frame = [0u8; wire::HEADER_LEN];
            wire::write_header(&mut frame, Kind::Data, wire::OUT_OF_LINE, &[], &[]);
            frame[8..12].copy_from_slice(&size.to_le_bytes());
            let fds = [fd.as_fd()];
            let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
            rustix::net::sendmsg(&sock, &[IoSlice::new(&frame)], &mut control, SendFlags::empty()).unwrap();
            // The broker answers (a refusal) and hangs up.
            let mut buf = vec![0u8; 70_000];
            let n = rustix::net::recv(&sock, &mut buf, rustix::net::RecvFlags::empty()).map(|(n, _)| n).unwrap_or(0);
            outcome(&up, if n > 0 { "refused" } else { "closed" });
        }
        "connector" => {
            // argv[2]: socket; argv[3]: connections to open (and hold). As
            // nobody, unless argv[4] is "root" (then hold them until told).
            // Reports how many were accepted, refused for the quota, and
            // failed otherwise.
            let args: Vec<String> = std::env::args().collect();
            let root = args.get(4).is_some_and(|a| a == "root");
            conduit_broker::raise_fd_limit();
            if !root {
                conduit_tests::become_nobody();
            }
            let n: usize = args[3].parse().unwrap();
            let (mut held, mut quota, mut other) = (Vec::new(), 0, Vec::new());
            for _ in 0..n {
                match conduit_broker::Client::connect_to(args[2].as_ref()) {
                    Ok(c) => held.push(c),
                    Err(conduit_broker::ClientError::Broker(conduit_broker::BrokerError::Quota(_))) => quota += 1,
                    Err(e) => other.push(e.to_string()),
                }
            }
            outcome(&up, &format!("ok {}, quota {quota}, other {other:?}", held.len()));
            if root {
                let _ = down.recv();
            }
        }
        "scribbler" => {
            // A hostile sender: send a self-checking stream from one thread
            // while another writes random bytes at random offsets into
            // every shared memory file this process holds (the channel's
            // ring and control block), until killed.
            let ToChild::SendStream(tx) = next() else { panic!("want SendStream") };
            let maps = map_own_memfds("memfd:conduit");
            assert!(maps.len() >= 2, "the ring and the control block: {maps:?}");
            std::thread::spawn(move || {
                for i in 0.. {
                    match tx.send_timeout(conduit_tests::stream_message(i), Duration::from_millis(50)) {
                        Err(conduit::SendTimeoutError::Disconnected(_)) => break,
                        _ => continue,
                    }
                }
            });
            report(&up, FromChild::Ready);
            let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
            let mut rand = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            for scribbles in 1u64.. {
                if scribbles % (1 << 14) == 0 {
                    // Counted for the test; dropped if it is not reading yet.
                    let _ = up.try_send(FromChild::Scribbled(scribbles));
                }
                let (base, len) = maps[(rand() % maps.len() as u64) as usize];
                let off = (rand() % len as u64) as usize;
                let n = (1 + rand() % 8).min((len - off) as u64) as usize;
                let bytes = rand().to_le_bytes();
                for (k, b) in bytes.iter().take(n).enumerate() {
                    // SAFETY: `off + n <= len`, inside a mapping of this
                    // process; volatile because others read it concurrently.
                    unsafe { std::ptr::write_volatile((base + off + k) as *mut u8, *b) };
                }
                // Bursts, then a breath, so messages still flow.
                if rand() % 64 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        "mailbox-waiter-timeout" => {
            // argv[2]: socket; argv[3]: mailbox; argv[4] "nobody": as nobody.
            // One receive with a 300 ms timeout; report how it ended.
            let args: Vec<String> = std::env::args().collect();
            if args.get(4).is_some_and(|a| a == "nobody") {
                conduit_tests::become_nobody();
            }
            let c = conduit_broker::Client::connect_to(args[2].as_ref()).unwrap();
            let r = c.recv(&args[3], 0, conduit_broker::WaitFor::Millis(300));
            let said = match r {
                Err(conduit_broker::ClientError::Broker(conduit_broker::BrokerError::Timeout)) => "timed out".into(),
                other => format!("{other:?}"),
            };
            outcome(&up, &said);
        }
        "queue-locker" => {
            // argv[2]: socket; argv[3]: mailbox. Open the mailbox's shared
            // queue, take both of its locks (our tid in the lock words, as
            // a sender or receiver does for a moment), and stop: a client
            // frozen (Ctrl-Z, a debugger) in the middle of an operation.
            let args: Vec<String> = std::env::args().collect();
            let c = conduit_broker::Client::connect_to(args[2].as_ref()).unwrap();
            c.send(&args[3], 1, b"opened", conduit_broker::OnFull::Block).unwrap();
            let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
            let maps = map_own_memfds("memfd:conduit-segment");
            for &(base, _) in &maps {
                // The producers' and the consumers' lock words (ring format 2).
                for off in [384usize, 1024] {
                    // SAFETY: 4-byte aligned, inside the mapping (a ring's header is 4 KiB).
                    let word = unsafe { &*((base + off) as *const std::sync::atomic::AtomicU32) };
                    word.store(tid, std::sync::atomic::Ordering::SeqCst);
                }
            }
            let locked = maps.len();
            outcome(&up, &format!("locked {locked}"));
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP).unwrap();
            let _ = down.recv();
        }
        "mailbox-flood" => {
            // argv: socket, mailbox, count. Send "I" of type I % 3 + 1 for
            // I in 0..count without waiting; report how many were taken.
            let args: Vec<String> = std::env::args().collect();
            let count: u64 = args[4].parse().unwrap();
            let c = conduit_broker::Client::connect_to(args[2].as_ref()).unwrap();
            let mut sent = 0;
            for i in 0..count {
                let data = i.to_string();
                if c.send(&args[3], (i % 3 + 1) as i64, data.as_bytes(), conduit_broker::OnFull::NoWait).is_ok() {
                    sent += 1;
                }
            }
            report(&up, FromChild::Sent(sent));
        }
        "durable-sender" => {
            // argv: socket, mailbox, sender number, count. Send "S:I" for
            // I = 0, 1, ... in pipelined batches of 8 until count or the
            // broker goes; report how many were acknowledged (all of them
            // in order: the first refused or unanswered one ends it).
            let args: Vec<String> = std::env::args().collect();
            let count: u64 = args[5].parse().unwrap();
            let c = conduit_broker::Client::connect_to(args[2].as_ref()).unwrap();
            report(&up, FromChild::Ready);
            let mut acked = 0u64;
            'stream: while acked < count {
                let batch: Vec<Vec<u8>> = (acked..acked + 8).map(|i| format!("{}:{i}", args[4]).into_bytes()).collect();
                let Ok(results) =
                    c.send_batch(&args[3], 1, batch.iter().map(Vec::as_slice), conduit_broker::OnFull::NoWait)
                else {
                    break;
                };
                for r in results {
                    if r.is_err() {
                        break 'stream;
                    }
                    acked += 1;
                }
            }
            report(&up, FromChild::Sent(acked));
        }
        "embedded" => {
            // Race to start a broker; report which process serves.
            let path = std::env::args().nth(2).unwrap();
            let c = conduit_broker::Client::connect_or_start_at(path.as_ref()).unwrap();
            c.create_mailbox(&format!("from-{}", std::process::id()), conduit_broker::MailboxOptions::default())
                .unwrap();
            report(&up, FromChild::Sent(c.broker_pid() as u64));
            let _ = down.recv();
        }
        "service" => {
            // Offer "echo" by name; answer each connection's requests.
            let path = std::env::args().nth(2).unwrap();
            let c = conduit_broker::Client::connect_to(path.as_ref()).unwrap();
            let conns = c.serve::<String, String>("echo", conduit_broker::NameFlags::default()).unwrap();
            report(&up, FromChild::Ready);
            let conn = conns.recv().unwrap();
            for req in conn.requests.iter() {
                conn.replies.send(req.to_uppercase()).unwrap();
            }
        }
        "pid-sender" => {
            // argv: socket, pid, tag. Send "TAG 0".."TAG 2" to that
            // process's inbox; then try to read its inbox (refused).
            let path = std::env::args().nth(2).unwrap();
            let to: u32 = std::env::args().nth(3).unwrap().parse().unwrap();
            let tag = std::env::args().nth(4).unwrap();
            let c = conduit_broker::Client::connect_to(path.as_ref()).unwrap();
            for i in 0..3 {
                c.send_to_pid(to, format!("{tag} {i}").as_bytes()).unwrap();
            }
            report(&up, FromChild::Sent(3));
            let theft = c.recv(&format!("pid:{to}"), 0, conduit_broker::WaitFor::NoWait);
            outcome(&up, &format!("{:?}", theft.map(|m| m.data)));
        }
        "name-holder" => {
            // argv: socket. Own "held" (replaceable); report what the
            // notify port says when it is taken over.
            let events = conduit::notify().unwrap();
            let path = std::env::args().nth(2).unwrap();
            let c = conduit_broker::Client::connect_to(path.as_ref()).unwrap();
            let (port, _rx) = conduit::unbounded::<u8>().unwrap();
            let flags = conduit_broker::NameFlags { allow_replacement: true, ..Default::default() };
            assert_eq!(c.register("held", port, flags).unwrap(), conduit_broker::NameReply::PrimaryOwner);
            report(&up, FromChild::Ready);
            match events.recv_timeout(Duration::from_secs(10)).unwrap() {
                conduit::notify::Event::NameLost { name, by } => outcome(&up, &format!("{name} lost to {by:?}")),
                other => outcome(&up, &format!("{other:?}")),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Map, shared and writable, every memory file this process holds whose
/// link names `prefix` (a hostile peer's view of what it was handed):
/// (address, length) of each mapping, kept for the process's life.
fn map_own_memfds(prefix: &str) -> Vec<(usize, usize)> {
    use rustix::mm::{MapFlags, ProtFlags};
    let mut maps = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let target = std::fs::read_link(e.path()).unwrap_or_default();
        if !target.to_string_lossy().contains(prefix) {
            continue;
        }
        let fd: i32 = e.file_name().to_string_lossy().parse().unwrap();
        // SAFETY: a descriptor this process holds, for this call only.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let len = rustix::fs::fstat(fd).unwrap().st_size as usize;
        // SAFETY: a fresh shared mapping at an address the kernel picks; it
        // aliases nothing of Rust's and is written only through raw
        // pointers and atomics.
        let mapped = unsafe {
            rustix::mm::mmap(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, fd, 0)
        };
        if let Ok(p) = mapped {
            maps.push((p as usize, len));
        }
    }
    maps
}

/// `sh -c SCRIPT` started with conduit's `Command`, and the pids it
/// printed (one line per `echo $!` in the script).
fn shell_with_pids_script(script: &str) -> (conduit::process::Child, Vec<String>) {
    shell(script, false)
}

/// A shell with two background sleeps, their pids printed.
fn shell_with_pids(cascade: bool) -> (conduit::process::Child, Vec<String>) {
    shell("sleep 1000 & echo $!; sleep 1000 & echo $!; wait", cascade)
}

fn shell(script: &str, cascade: bool) -> (conduit::process::Child, Vec<String>) {
    use std::io::BufRead;
    let (out_r, out_w) = std::io::pipe().unwrap();
    let mut cmd = conduit::process::Command::new("sh");
    cmd.args(["-c", script]).cascade(cascade).stdout(out_w);
    let linked = cmd.spawn::<(), ()>().unwrap();
    drop(cmd);
    let want = script.matches("echo $!").count();
    let mut lines = Vec::new();
    let mut reader = std::io::BufReader::new(out_r);
    while lines.len() < want {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        lines.push(line.trim().to_string());
    }
    (linked.child, lines)
}
