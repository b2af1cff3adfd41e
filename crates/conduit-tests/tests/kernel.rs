//! The kernel's own IPC objects, shared with real C programs: System V
//! message queues (`msgget`/`msgsnd`/`msgrcv`), byte for byte, both ways.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{TempDir, finish, outcome, report, spawn_with_args};
use conduit::kernel::{IpcError, MessageQueue, Select, Semaphores, Wait, ftok};
use conduit_tests::FromChild;

/// A queue removed when the test ends, whatever happens.
struct Queue(MessageQueue);

impl Drop for Queue {
    fn drop(&mut self) {
        let _ = self.0.remove();
    }
}

/// A POSIX queue unlinked when the test ends, whatever happens.
struct Unlink(String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = conduit::kernel::PosixQueue::unlink(&self.0);
    }
}

/// Build the C program `c/NAME.c` with `cc` into `dir`.
fn build_c(name: &str, dir: &TempDir) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("c").join(format!("{name}.c"));
    let exe = dir.0.join(name);
    let out =
        Command::new("cc").arg("-O2").arg("-o").arg(&exe).arg(&src).output().expect("cc (a C compiler) is needed");
    assert!(out.status.success(), "cc {}: {}", src.display(), String::from_utf8_lossy(&out.stderr));
    exe
}

/// A key from `ftok` on a file of its own, and the queue made under it.
fn keyed_queue(dir: &TempDir, proj: u8) -> (PathBuf, Queue) {
    let keyfile = dir.0.join("key");
    std::fs::write(&keyfile, b"").unwrap();
    let key = ftok(&keyfile, proj).unwrap();
    (keyfile, Queue(MessageQueue::create(key, 0o600).unwrap()))
}

#[test]
fn a_c_programs_msgsnd_is_received_by_the_three_type_rules() {
    let dir = TempDir::new("c-to-conduit");
    let c = build_c("sysv_msg", &dir);
    let (keyfile, q) = keyed_queue(&dir, b'A');
    let st = Command::new(&c).args(["send", keyfile.to_str().unwrap(), "A"]).status().unwrap();
    assert!(st.success());
    let stat = q.0.stat().unwrap();
    assert_eq!(stat.messages, 3);
    assert_ne!(stat.last_send_pid, std::process::id() as i32, "the C program sent them");
    // `msgtyp` 2: the first of type 2; −3: the lowest type ≤ 3; 0: the first.
    assert_eq!(q.0.recv(Select::Type(2)).unwrap(), (2, b"two".to_vec()));
    assert_eq!(q.0.recv(Select::from_msgtyp(-3)).unwrap(), (1, b"one".to_vec()));
    assert_eq!(q.0.recv(Select::First).unwrap(), (3, b"three".to_vec()));
    assert!(matches!(q.0.try_recv(Select::First), Err(IpcError::Empty)));
    assert_eq!(q.0.stat().unwrap().last_recv_pid, std::process::id() as i32);
}

#[test]
fn conduit_sends_are_received_by_a_c_programs_msgrcv() {
    let dir = TempDir::new("conduit-to-c");
    let c = build_c("sysv_msg", &dir);
    let (keyfile, q) = keyed_queue(&dir, b'B');
    q.0.send(5, b"hello").unwrap();
    q.0.try_send(7, b"from conduit").unwrap();
    let out = Command::new(&c).args(["recv", keyfile.to_str().unwrap(), "B", "2"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "5 hello\n7 from conduit\n");
}

#[test]
fn typed_messages_travel_on_a_queue_between_processes_selected_by_type() {
    let q = Queue(MessageQueue::private(0o600).unwrap());
    let kid = spawn_with_args("sysv-typed-sender", &[&q.0.id().to_string()]);
    assert_eq!(report(&kid), FromChild::Sent(2));
    finish(kid);
    assert_eq!(q.0.recv_msg::<Vec<u64>>(Select::Type(4)).unwrap(), (4, vec![4, 5, 6]));
    assert_eq!(q.0.recv_msg::<Vec<u64>>(Select::First).unwrap(), (9, vec![9, 9, 9]));
    // Bytes that are not a conduit frame: a typed error, taken off.
    q.0.send(1, b"plain bytes").unwrap();
    assert!(matches!(q.0.recv_msg::<Vec<u64>>(Select::First), Err(IpcError::Message(_))));
    assert!(matches!(q.0.try_recv(Select::First), Err(IpcError::Empty)));
}

#[test]
fn kernel_errors_are_typed() {
    let q = Queue(MessageQueue::private(0o600).unwrap());
    assert!(matches!(q.0.send(0, b"x"), Err(IpcError::BadType(0))));
    let limit = conduit::kernel::msgmax();
    assert!(matches!(q.0.send(1, &vec![0; limit + 1]), Err(IpcError::TooLarge { .. })));
    // A full queue (its byte limit lowered): without waiting, Full.
    let st = q.0.stat().unwrap();
    q.0.set(st.uid, st.gid, 0o600, 16).unwrap();
    assert_eq!(q.0.stat().unwrap().max_bytes, 16);
    q.0.try_send(1, &[1; 16]).unwrap();
    assert!(matches!(q.0.try_send(1, &[2; 1]), Err(IpcError::Full)));
    // Exclusive creation under a key in use; an unknown key.
    let dir = TempDir::new("errors");
    let (keyfile, kq) = keyed_queue(&dir, b'C');
    assert!(matches!(MessageQueue::create(ftok(&keyfile, b'C').unwrap(), 0o600), Err(IpcError::Exists)));
    assert!(matches!(MessageQueue::open(ftok(&keyfile, b'D').unwrap()), Err(IpcError::NotFound)));
    assert!(matches!(ftok(dir.0.join("absent"), b'C'), Err(IpcError::NotFound)));
    // Another user, and a queue of mode 0600: denied.
    let kid = spawn_with_args("sysv-intruder", &[&kq.0.id().to_string()]);
    assert_eq!(report(&kid), outcome("Err(Denied)"));
    finish(kid);
    // Removed while a receiver waits: it is told.
    let id = q.0.id();
    let handle = q.0;
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        tid_tx.send(rustix::thread::gettid().as_raw_nonzero().get()).unwrap();
        handle.recv(Select::Type(99))
    });
    // The kernel says when the thread sleeps in msgrcv.
    let wchan = format!("/proc/self/task/{}/wchan", tid_rx.recv().unwrap());
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(&wchan).unwrap_or_default().contains("msg") {
        assert!(t0.elapsed() < Duration::from_secs(10), "the receiver never waited");
        std::thread::yield_now();
    }
    let Queue(inner) = q;
    let inner = std::mem::ManuallyDrop::new(inner);
    inner.remove().unwrap();
    assert!(matches!(waiter.join().unwrap(), Err(IpcError::Removed)));
    assert!(matches!(MessageQueue::from_id(id), Err(IpcError::NotFound)));
}

#[test]
fn sem_undo_gives_back_what_a_killed_holder_took_and_semtimedop_times_out() {
    let set = Semaphores::private(1, 0o600).unwrap();
    struct Remove(Semaphores);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = self.0.remove();
        }
    }
    let set = Remove(set);
    set.0.set(0, 1).unwrap();
    let mut kid = spawn_with_args("sem-holder", &[&set.0.id().to_string()]);
    assert_eq!(report(&kid), FromChild::Ready);
    assert_eq!(set.0.get(0).unwrap(), 0, "the child holds it");
    assert!(matches!(set.0.acquire(0, Wait::No), Err(IpcError::WouldWait)));
    assert!(matches!(set.0.acquire(0, Wait::For(Duration::from_millis(20))), Err(IpcError::WouldWait)));
    kid.child.kill().unwrap();
    assert_eq!(kid.child.wait().unwrap().signal, Some(9));
    // The kernel undid the dead holder's take.
    set.0.acquire(0, Wait::For(Duration::from_secs(10))).unwrap();
    assert_eq!(set.0.get(0).unwrap(), 0);
    set.0.release(0).unwrap();
    assert_eq!(set.0.get(0).unwrap(), 1);
    // Both at once or neither: the second would wait, so the first is not
    // applied either.
    assert!(matches!(set.0.apply(&[(0, -1), (0, -1)], false, Wait::No), Err(IpcError::WouldWait)));
    assert_eq!(set.0.get(0).unwrap(), 1);
}

#[test]
fn a_system_v_segment_is_shared_with_a_c_program_both_ways_through_a_bounds_checked_view() {
    let dir = TempDir::new("shm");
    let c = build_c("sysv_shm", &dir);
    let keyfile = dir.0.join("key");
    std::fs::write(&keyfile, b"").unwrap();
    let seg = conduit::kernel::SharedSegment::create(ftok(&keyfile, b'S').unwrap(), 4096, 0o600).unwrap();
    struct Remove(conduit::kernel::SharedSegment);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = self.0.remove();
        }
    }
    let seg = Remove(seg);
    let view = seg.0.attach(false).unwrap();
    assert_eq!(view.len(), 4096);
    let k = keyfile.to_str().unwrap();
    assert!(Command::new(&c).args(["write", k, "S", "hello from C"]).status().unwrap().success());
    let mut got = [0u8; 12];
    assert!(view.read_at(0, &mut got));
    assert_eq!(&got, b"hello from C");
    assert!(view.write_at(100, b"and from conduit"));
    let out = Command::new(&c).args(["read", k, "S", "116"]).output().unwrap();
    assert_eq!(&out.stdout[100..], b"and from conduit");
    // Bounds and read-only are refused, not a crash.
    assert!(!view.read_at(4090, &mut got));
    assert!(!view.write_at(usize::MAX, b"x"));
    let ro = seg.0.attach(true).unwrap();
    assert!(!ro.write_at(0, b"x"));
    let st = seg.0.stat().unwrap();
    assert_eq!((st.size, st.attached, st.creator_pid), (4096, 2, std::process::id() as i32));
    drop(ro);
    assert_eq!(seg.0.stat().unwrap().attached, 1);
}

#[test]
fn a_posix_queue_is_shared_with_a_c_program_by_priority_both_ways() {
    use conduit::kernel::PosixQueue;
    let dir = TempDir::new("mq");
    let c = build_c("posix_mq", &dir);
    let name = format!("/conduit-test-{}", std::process::id());
    let q = PosixQueue::create(&name, 8, 256, 0o600).unwrap();
    let _unlink = Unlink(name.clone());
    assert!(matches!(PosixQueue::create(&name, 8, 256, 0o600), Err(IpcError::Exists)));
    assert!(Command::new(&c).args(["send", &name]).status().unwrap().success());
    assert_eq!(q.len(), 3);
    // The highest priority first.
    assert_eq!(q.recv().unwrap(), (9, b"high".to_vec()));
    assert_eq!(q.recv().unwrap(), (5, b"mid".to_vec()));
    assert_eq!(q.recv().unwrap(), (1, b"low".to_vec()));
    assert!(matches!(q.recv_timeout(Duration::from_millis(20)), Err(IpcError::Empty)));
    q.send(3, b"three").unwrap();
    q.send(7, b"seven").unwrap();
    let out = Command::new(&c).args(["recv", &name, "2"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "7 seven\n3 three\n");
    // Typed, full, too large.
    q.send_msg(2, &(1u32, "typed".to_string())).unwrap();
    assert_eq!(q.recv_msg::<(u32, String)>().unwrap(), (2, (1, "typed".to_string())));
    for i in 0..8 {
        q.try_send(0, &[i]).unwrap();
    }
    assert!(matches!(q.try_send(0, b"x"), Err(IpcError::Full)));
    assert!(matches!(q.send_timeout(0, b"x", Duration::from_millis(20)), Err(IpcError::Full)));
    assert!(matches!(q.try_send(0, &[0; 257]), Err(IpcError::TooLarge { .. })));
}

#[test]
fn mq_notify_arrives_as_a_message_in_a_port_set_with_a_channel_and_is_renewed() {
    use conduit::kernel::PosixQueue;
    let dir = TempDir::new("mqnotice");
    let c = build_c("posix_mq", &dir);
    let name = format!("/conduit-notice-{}", std::process::id());
    let q = PosixQueue::create(&name, 8, 256, 0o600).unwrap();
    let _unlink = Unlink(name.clone());
    let notices = q.notices().unwrap();
    assert!(matches!(q.notices(), Err(IpcError::Exists)), "one registration per queue");
    let (tx, rx) = conduit::unbounded::<u64>().unwrap();
    // A C program sends three messages; a channel has work too.
    let mut sender = Command::new(&c).args(["send", &name]).spawn().unwrap();
    let sender_pid = sender.id();
    tx.send(5).unwrap();
    let mut set = conduit::PortSet::new();
    let n = set.add(&notices);
    let w = set.add(&rx);
    let (mut notice, mut work) = (None, false);
    while notice.is_none() || !work {
        match set.ready_timeout(Duration::from_secs(10)) {
            Some(i) if i == n => notice = Some(notices.try_recv().unwrap()),
            Some(i) if i == w => work = rx.try_recv().unwrap() == 5,
            other => panic!("nothing ready: {other:?}"),
        }
    }
    assert!(sender.wait().unwrap().success());
    let notice = notice.unwrap();
    assert_eq!((notice.queue.as_str(), notice.pid), (name.as_str(), Some(sender_pid)));
    let mut taken = 0;
    while q.try_recv().is_ok() {
        taken += 1;
    }
    assert_eq!(taken, 3);
    // Renewed: the next message on the empty queue raises another — by the
    // kernel (naming this process) or, if it came before the registration
    // was renewed, as a plain "look" (no sender). Either way a notice
    // leads to it.
    q.send(1, b"again").unwrap();
    loop {
        let again = notices.recv_timeout(Duration::from_secs(10)).expect("a renewed notice");
        assert!(again.pid.is_none() || again.pid == Some(std::process::id()), "{again:?}");
        if let Ok((_, m)) = q.try_recv() {
            assert_eq!(m, b"again");
            break;
        }
    }
}
