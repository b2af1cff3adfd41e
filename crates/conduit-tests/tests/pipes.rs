//! Ordinary pipes and named pipes (FIFOs) between real processes: what
//! the conformance suite cannot say about them — the byte stream's
//! framing under hostile bytes, atomicity with several writers, FIFO
//! opening rules, parent/child pipe links, SIGPIPE.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

use common::{TempDir, finish, outcome, report, spawn, spawn_with_args};
use conduit::channel::pipe;
use conduit::{Error, RecvError, RecvTimeoutError, WireError, fifo};
use conduit_tests::{FromChild, ToChild};

/// Raw bytes straight into a pipe channel's write end, as a hostile peer
/// holding it would write them.
fn write_raw(tx: &impl AsFd, bytes: &[u8]) {
    let mut f = std::fs::File::from(tx.as_fd().try_clone_to_owned().unwrap());
    f.write_all(bytes).unwrap();
}

#[test]
fn two_fifo_writers_in_unrelated_processes_never_interleave_a_message() {
    // Messages up to 12 KiB: those above PIPE_BUF go in fragments, which
    // interleave in the FIFO; each arrives whole all the same.
    const N: u64 = 3000;
    let dir = TempDir::new("two-writers");
    let path = dir.0.join("fifo");
    fifo::create(&path, 0o600).unwrap();
    let rx = fifo::receiver::<Vec<u64>>(&path).unwrap();
    let p = path.to_str().unwrap();
    let a = spawn_with_args("fifo-writer", &[p, "1", &N.to_string()]);
    let b = spawn_with_args("fifo-writer", &[p, "2", &N.to_string()]);
    let mut next: HashMap<u64, u64> = HashMap::new();
    for _ in 0..2 * N {
        let m = rx.recv_timeout(Duration::from_secs(20)).expect("a whole message");
        let (tag, i) = (m[0] >> 48, m[0] & 0xffff_ffff_ffff);
        let want = 1 + ((i * 7919 + tag * 31) % 1500) as usize;
        assert_eq!(m.len(), want, "message {i} of writer {tag} whole");
        assert!(m.iter().all(|&x| x == m[0]), "message {i} of writer {tag} not mixed with another");
        let expected = next.entry(tag).or_insert(0);
        assert_eq!(i, *expected, "writer {tag}'s messages in order");
        *expected += 1;
    }
    assert_eq!(report(&a), FromChild::Sent(N));
    assert_eq!(report(&b), FromChild::Sent(N));
    finish(a);
    finish(b);
    // The FIFO outlives its writers: the receiver waits for the next one.
    assert!(matches!(rx.recv_timeout(Duration::from_millis(50)), Err(RecvTimeoutError::Timeout)));
    assert!(path.exists(), "a FIFO stays until removed");
    fifo::remove(&path).unwrap();
    assert!(!path.exists());
}

#[test]
fn a_large_fifo_message_goes_in_fragments_and_a_refused_one_is_skipped() {
    let dir = TempDir::new("large");
    let path = dir.0.join("fifo");
    fifo::create(&path, 0o600).unwrap();
    let rx = fifo::receiver::<Vec<u8>>(&path).unwrap();
    let tx = fifo::try_sender::<Vec<u8>>(&path).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    tx.send(big.clone()).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), big);
    // Over the receiver's limit: refused at the first fragment, the rest
    // skipped as it comes, and the next message arrives.
    rx.set_max_message(10_000);
    tx.send(big).unwrap();
    tx.send(vec![1, 2, 3]).unwrap();
    match rx.recv_timeout(Duration::from_secs(10)) {
        Err(RecvTimeoutError::Failed(Error::Wire(WireError::TooLarge { limit: 10_000, .. }))) => {}
        other => panic!("expected TooLarge: {other:?}"),
    }
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), vec![1, 2, 3]);
}

#[test]
fn opening_a_fifo_follows_the_blocking_nonblocking_and_timeout_rules() {
    let dir = TempDir::new("open-rules");
    let path = dir.0.join("fifo");
    fifo::create(&path, 0o640).unwrap();
    let made = std::fs::metadata(&path).unwrap();
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    assert!(made.file_type().is_fifo());
    assert_eq!(made.permissions().mode() & 0o7777 & !0o640, 0, "no bit beyond the mode asked for");
    let again = fifo::create(&path, 0o600);
    assert!(matches!(again, Err(Error::Io(ref e)) if e.kind() == std::io::ErrorKind::AlreadyExists), "{again:?}");
    // No receiver: at once, or after a time limit, a typed error.
    assert!(matches!(fifo::try_sender::<u64>(&path), Err(Error::NoReader(ref p)) if *p == path));
    assert!(matches!(fifo::sender_timeout::<u64>(&path, Duration::from_millis(30)), Err(Error::NoReader(_))));
    // Blocking: waits until a receiver opens it (another process here).
    let p = path.clone();
    let opener = std::thread::spawn(move || fifo::sender::<u64>(&p).map(|tx| tx.send(5).is_ok()));
    let holder = spawn_with_args("fifo-reader-hold", &[path.to_str().unwrap()]);
    assert_eq!(report(&holder), FromChild::Ready);
    assert!(opener.join().unwrap().unwrap(), "the blocked open returned once a reader came");
    // Not a FIFO: refused by name.
    let file = dir.0.join("plain");
    std::fs::write(&file, b"").unwrap();
    assert!(
        matches!(fifo::receiver::<u64>(&file), Err(Error::Io(ref e)) if e.kind() == std::io::ErrorKind::InvalidInput)
    );
    holder.child.kill().unwrap();
}

#[test]
fn a_fifo_reader_killed_disconnects_its_writers() {
    let dir = TempDir::new("reader-killed");
    let path = dir.0.join("fifo");
    fifo::create(&path, 0o600).unwrap();
    let mut holder = spawn_with_args("fifo-reader-hold", &[path.to_str().unwrap()]);
    assert_eq!(report(&holder), FromChild::Ready);
    let tx = fifo::try_sender::<u64>(&path).unwrap();
    tx.send(1).unwrap();
    // A FIFO's end is opened by path, not passed as a right: refused, and
    // the message (holding the end) comes back.
    let (carrier, _keep) = conduit::unbounded::<conduit::Sender<u64>>().unwrap();
    let tx = match carrier.send(tx) {
        Err(conduit::SendError::Failed(back, Error::Io(e)))
            if e.kind() == std::io::ErrorKind::Unsupported && e.to_string().contains("FIFO") =>
        {
            back
        }
        other => panic!("expected an encoding refusal: {other:?}"),
    };
    holder.child.kill().unwrap();
    holder.child.wait().unwrap();
    assert!(tx.is_disconnected());
    assert!(matches!(tx.send(2), Err(conduit::SendError::Disconnected(2))));
}

#[test]
fn garbage_in_a_pipe_is_a_typed_error_and_a_refused_size_is_skipped() {
    let (tx, rx) = pipe::unbounded::<u64>().unwrap();
    rx.set_max_message(64);
    // A frame declaring more than the receiver accepts: skipped as it
    // comes (never kept), reported, and the stream goes on.
    let mut huge = conduit::wire::simple_frame(conduit::wire::Kind::Data, &vec![0u8; 1000]);
    huge.truncate(huge.len());
    write_raw(&tx, &huge);
    tx.send(41).unwrap();
    match rx.recv() {
        Err(RecvError::Failed(Error::Wire(WireError::TooLarge { size: 1000, limit: 64 }))) => {}
        other => panic!("expected TooLarge: {other:?}"),
    }
    assert_eq!(rx.recv().unwrap(), 41);
    // A frame with a bad checksum: that frame is refused, the next comes.
    let mut bad = conduit::wire::simple_frame(conduit::wire::Kind::Data, &[1]);
    *bad.last_mut().unwrap() ^= 0xff;
    write_raw(&tx, &bad);
    tx.send(42).unwrap();
    assert!(matches!(rx.recv(), Err(RecvError::Failed(Error::Wire(WireError::Checksum { .. })))));
    assert_eq!(rx.recv().unwrap(), 42);
    // Bytes that are no header at all: the framing is lost, said once,
    // then the channel ends — though the sender is still there.
    write_raw(&tx, b"this is not a conduit frame at all");
    assert!(matches!(rx.recv(), Err(RecvError::Failed(Error::Wire(WireError::BadMagic(_))))));
    assert!(matches!(rx.recv(), Err(RecvError::Disconnected)));
    drop(tx);
}

#[test]
fn a_writer_that_dies_inside_a_frame_leaves_a_typed_error_then_disconnected() {
    let (tx, rx) = pipe::unbounded::<Vec<u8>>().unwrap();
    tx.send(vec![1, 2, 3]).unwrap();
    let frame = conduit::wire::simple_frame(conduit::wire::Kind::Data, &[5u8; 100]);
    write_raw(&tx, &frame[..50]);
    drop(tx);
    assert_eq!(rx.recv().unwrap(), vec![1, 2, 3], "what came whole is delivered");
    assert!(matches!(rx.recv(), Err(RecvError::Failed(Error::Wire(WireError::Truncated(50))))));
    assert!(matches!(rx.recv(), Err(RecvError::Disconnected)));
}

#[test]
fn large_pipe_frames_from_two_processes_never_interleave() {
    const N: u64 = 40;
    let (tx, rx) = pipe::bounded::<Vec<u64>>(4).unwrap();
    let a = spawn_with_args("big-tagged-writer", &[&N.to_string()]);
    let b = spawn_with_args("big-tagged-writer", &[&N.to_string()]);
    a.tx.send(ToChild::SendTaggedStream(tx.clone(), 1)).unwrap();
    b.tx.send(ToChild::SendTaggedStream(tx, 2)).unwrap();
    let mut next: HashMap<u64, u64> = HashMap::new();
    for _ in 0..2 * N {
        let m = rx.recv_timeout(Duration::from_secs(20)).expect("a whole message");
        assert_eq!(m.len(), 25_600);
        assert!(m.iter().all(|&x| x == m[0]), "200 KiB written in pieces, never mixed");
        let (tag, i) = (m[0] >> 48, m[0] & 0xffff_ffff_ffff);
        let expected = next.entry(tag).or_insert(0);
        assert_eq!(i, *expected);
        *expected += 1;
    }
    assert_eq!(report(&a), FromChild::Sent(N));
    assert_eq!(report(&b), FromChild::Sent(N));
    finish(a);
    finish(b);
    assert!(matches!(rx.recv(), Err(RecvError::Disconnected)));
}

#[test]
fn a_child_linked_by_pipes_inherits_its_four_ends_and_nothing_else() {
    let ls = || {
        let out = std::process::Command::new("ls").arg("-l").arg("/proc/self/fd").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines()
            .filter_map(|l| l.split_once(" -> ").map(|(_, t)| t.to_string()))
            .filter(|t| t.contains("pipe:"))
            .count()
    };
    let before = ls();
    // The pipes this test process already had (cargo's, stdio).
    let ours: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|t| t.display().to_string())
        .filter(|t| t.starts_with("pipe:"))
        .collect();
    let mut kid = conduit::process::Command::new(env!("CARGO_BIN_EXE_conduit-test-child"))
        .arg("pipe-link")
        .pipes(true)
        .kill_on_parent_death(true)
        .spawn::<ToChild, FromChild>()
        .unwrap();
    // Another child spawned meanwhile by plain std gets none of them.
    assert_eq!(ls(), before, "an unrelated child inherits no end of the link");
    kid.tx.send(ToChild::Go).unwrap();
    let FromChild::Received(fds, pid) = report(&kid) else { panic!("want the child's descriptors") };
    assert_eq!(pid, kid.child.id());
    let link: Vec<&str> = fds.split(' ').filter(|t| t.starts_with("pipe:") && !ours.iter().any(|o| o == t)).collect();
    assert_eq!(link.len(), 4, "two pipes each way (data and bell), one end each: {fds}");
    assert!(!fds.contains("socket:"), "no socket when linked by pipes: {fds}");
    // Rights cannot cross a pipe link: typed, nothing sent.
    let (tx, _rx) = conduit::unbounded::<u64>().unwrap();
    match kid.tx.send(ToChild::SendU64(tx)) {
        Err(conduit::SendError::Failed(_, Error::Unsupported(_))) => {}
        other => panic!("expected Unsupported: {other:?}"),
    }
    drop(kid.tx);
    let exit = kid.child.wait().unwrap();
    assert!(exit.success(), "the child saw the end of the link: {exit:?}");
}

#[test]
fn a_writer_with_sigpipe_at_its_default_gets_disconnected_not_killed() {
    let kid = spawn("sigpipe-writer");
    let (tx, rx) = pipe::unbounded::<u64>().unwrap();
    kid.tx.send(ToChild::SendU64(tx)).unwrap();
    assert_eq!(report(&kid), FromChild::Ready);
    drop(rx);
    kid.tx.send(ToChild::Go).unwrap();
    assert_eq!(report(&kid), outcome("Disconnected"));
    finish(kid);
}

#[test]
fn a_pipe_receive_right_moves_to_another_process() {
    let kid = spawn("drain");
    let (tx, rx) = pipe::bounded::<u64>(8).unwrap();
    kid.tx.send(ToChild::RecvU64(rx)).unwrap();
    for i in 0..1000 {
        tx.send(i).unwrap();
    }
    assert_eq!(report(&kid), FromChild::Ready);
    drop(tx);
    finish(kid);
}

#[test]
fn raw_pipe_ends_speak_bytes_and_become_typed_ends() {
    use std::io::Read;
    // A program that writes the wire format by hand (as a C program
    // would with write(2)): a data frame whose payload is postcard's 42u64.
    let (r, mut w) = pipe::raw().unwrap();
    let rx = pipe::receiver_from::<u64>(r.into()).unwrap();
    w.write_all(&conduit::wire::simple_frame(conduit::wire::Kind::Data, &[42])).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 42);
    drop(w);
    assert!(matches!(rx.recv(), Err(RecvError::Disconnected)), "the raw writer closed: end of stream");
    // And the other way: a typed sender, a raw reader that sees the frame.
    let (mut r, w) = pipe::raw().unwrap();
    let tx = pipe::sender_from::<u64>(w.into()).unwrap();
    tx.send(7).unwrap();
    drop(tx);
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes).unwrap();
    let view = conduit::wire::parse_frame(&bytes, false, 1024).unwrap();
    assert_eq!(view.inline, Some(&[7u8][..]));
    // Not a pipe: refused by name.
    let file = std::fs::File::open("/proc/self/status").unwrap();
    assert!(pipe::receiver_from::<u64>(file.into()).is_err());
}
