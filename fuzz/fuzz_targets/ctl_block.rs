//! A channel's control block against a peer that writes anything into it.
//! The control block (a sealed 4 KiB memfd every end of a channel maps)
//! holds the capacity, the credit or token count, the sleeping senders'
//! count and, for a System V channel, its queue's id and cookie. A peer
//! holding any end can write any of it at any time. Here a real channel
//! (socket or System V, bounded, rendezvous or unbounded) runs a script
//! of non-blocking sends and receives while the script also writes words
//! into its control block, and moves the sender through another channel
//! (the receiving side checks the block's header: `parse_header`). Every
//! operation must return without waiting or panicking, and what arrives
//! must be what was sent, in order, once: the block steers flow control,
//! never the messages.
#![no_main]

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;

/// The descriptors of this process that are control blocks.
fn ctl_fds() -> Vec<i32> {
    let mut fds = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").into_iter().flatten().flatten() {
        if std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("conduit-ctl"))
            && let Some(fd) = e.file_name().to_str().and_then(|s| s.parse().ok())
        {
            fds.push(fd);
        }
    }
    fds
}

/// A shared writable view of a control block, as the peer has it.
struct Block(*mut u8);

impl Block {
    fn map(fd: BorrowedFd<'_>) -> Option<Block> {
        use rustix::mm::{MapFlags, ProtFlags, mmap};
        // SAFETY: a fresh 4 KiB shared mapping of a memfd of that size
        // (sealed against shrinking); only written through `write`.
        let p = unsafe {
            mmap(std::ptr::null_mut(), 4096, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, fd, 0).ok()?
        };
        Some(Block(p.cast()))
    }

    fn write(&self, word: usize, value: u64) {
        // SAFETY: `word * 8 + 8 <= 4096`, inside the mapping; volatile:
        // the channel's ends read it concurrently.
        unsafe { std::ptr::write_volatile(self.0.add((word % 512) * 8).cast::<u64>(), value) }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        let _ = unsafe { rustix::mm::munmap(self.0.cast(), 4096) };
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, script)) = data.split_first() else { return };
    let before = ctl_fds();
    let made = match shape % 8 {
        0 => conduit::bounded::<u64>(0),
        1..=3 => conduit::bounded::<u64>(usize::from(shape % 8)),
        4 => conduit::unbounded::<u64>(),
        5 => conduit::channel::sysv::bounded::<u64>(2),
        _ => conduit::channel::sysv::bounded::<u64>(0),
    };
    let rendezvous = matches!(shape % 8, 0 | 6 | 7);
    let Ok((mut tx, rx)) = made else { return };
    let Some(fd) = ctl_fds().into_iter().find(|fd| !before.contains(fd)) else { return };
    // SAFETY: an open descriptor of this process, borrowed while `tx` and
    // `rx` (which own it) live.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let Some(block) = Block::map(fd.as_fd()) else { return };
    let Ok((carry_tx, carry_rx)) = conduit::unbounded::<conduit::Sender<u64>>() else { return };
    let (mut next, mut expected) = (0u64, 0u64);
    let mut got = |v: u64| {
        assert_eq!(v, expected, "a message out of order, twice, or not one that was sent");
        expected += 1;
    };
    for op in script.chunks(10) {
        let arg = |i: usize| op.get(i).copied().unwrap_or(0);
        let value = u64::from_le_bytes(std::array::from_fn(|i| arg(2 + i)));
        match arg(0) % 8 {
            0 => {
                if tx.try_send(next).is_ok() {
                    next += 1;
                }
            }
            1 => {
                if let Ok(v) = rx.try_recv() {
                    got(v);
                }
            }
            2 => {
                if let Ok(v) = rx.recv_timeout(Duration::ZERO) {
                    got(v);
                }
            }
            3 => {
                if tx.send_timeout(next, Duration::ZERO).is_ok() {
                    next += 1;
                }
            }
            // The peer: a word of the header, the counters or the link's
            // area (the first 48 words), mostly small values. Not a
            // rendezvous channel's token count: a receiver whose token a
            // forged count took waits 1 s (its grace for a sender in
            // flight) — known and documented, and it would slow the run
            // a thousandfold.
            4..=6 if rendezvous && usize::from(arg(1)) % 48 == 8 => {}
            4 | 5 => block.write(usize::from(arg(1)) % 48, value % 4),
            6 => block.write(usize::from(arg(1)) % 48, value),
            _ => {
                // Move the sender through another channel: the receiving
                // side adopts the control block, checking its header.
                if carry_tx.send(tx).is_err() {
                    return;
                }
                match carry_rx.recv() {
                    Ok(t) => tx = t,
                    Err(_) => return,
                }
            }
        }
    }
    drop(tx);
    while let Ok(v) = rx.try_recv() {
        got(v);
    }
});
