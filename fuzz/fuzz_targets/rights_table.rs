//! The codec with forged rights tables: a peer on a Unix socket sends a
//! frame with a correct checksum whose rights table, flags and payload come
//! from the input, with descriptors of the input's choosing attached (of
//! the wrong kind, too few, too many). The receiver, a real
//! `Receiver<Msg>` whose message holds channel ends and a segment, must
//! answer every such frame with a message or a typed error — never a panic
//! — keep serving (a well-formed message sent after each one arrives), and
//! leak no descriptor: after each input this process holds exactly the
//! descriptors it held before.
#![no_main]

use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};

use conduit::wire::{self, HEADER_LEN, Kind};
use conduit::{Receiver, Sender};
use libfuzzer_sys::fuzz_target;
use rustix::net::{AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType};

type Msg = (u64, Option<Sender<u64>>, Option<Receiver<u64>>, Option<conduit::memory::Segment>, Vec<u8>);

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// A descriptor of kind `k` (any kind a hostile peer could attach).
fn descriptor(k: u8) -> OwnedFd {
    match k % 5 {
        0 => rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).expect("eventfd"),
        1 => rustix::fs::memfd_create("fuzz", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd"),
        2 => rustix::pipe::pipe().expect("pipe").0,
        3 => {
            rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
                .expect("socketpair")
                .0
        }
        _ => rustix::fs::open("/dev/null", rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, 0.into())
            .expect("/dev/null"),
    }
}

fuzz_target!(|data: &[u8]| {
    let before = open_fds();
    {
        let (mine, theirs) =
            rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
                .expect("socketpair");
        let (_tx, rx) = conduit::channel::connection::<(), Msg>(mine).expect("connection");
        // Input: flags, how many rights, their kinds, how many descriptors
        // and of which kinds, then the payload.
        let mut it = data.iter().copied();
        let flags = u16::from(it.next().unwrap_or(0)) & (wire::OUT_OF_LINE | wire::BULK);
        let n_rights = usize::from(it.next().unwrap_or(0) % 8);
        let rights: Vec<u8> = (0..n_rights).map(|_| it.next().unwrap_or(0) % 16).collect();
        let n_fds = usize::from(it.next().unwrap_or(0) % 8);
        let fds: Vec<OwnedFd> = (0..n_fds).map(|_| descriptor(it.next().unwrap_or(0))).collect();
        let payload: Vec<u8> = it.collect();
        let mut frame = vec![0u8; HEADER_LEN];
        if flags & wire::OUT_OF_LINE != 0 {
            // An out-of-line frame: the payload's length in the header, the
            // payload itself in a memory file (one of the descriptors).
            wire::write_header_sized(&mut frame, Kind::Data, flags, payload.len(), &rights);
        } else {
            wire::write_header(&mut frame, Kind::Data, flags, &payload, &rights);
            frame.extend_from_slice(&payload);
        }
        frame.extend_from_slice(&rights);
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        let mut space = vec![std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(8))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !borrowed.is_empty() {
            assert!(control.push(SendAncillaryMessage::ScmRights(&borrowed)));
        }
        let sent = rustix::net::sendmsg(&theirs, &[IoSlice::new(&frame)], &mut control, SendFlags::DONTWAIT);
        drop(fds);
        if sent.is_ok() {
            // A message or a typed error; never a panic.
            let _ = rx.try_recv();
        }
        // The channel goes on: a well-formed message arrives whole.
        let good: Msg = (7, None, None, None, b"after".to_vec());
        let frame = wire::encode_frame(&good).expect("encode");
        rustix::net::send(&theirs, &frame, SendFlags::DONTWAIT).expect("send");
        match rx.try_recv() {
            Ok((7, None, None, None, v)) => assert_eq!(v, b"after"),
            other => panic!("the channel stopped serving after a hostile frame: {:?}", other.map(|m| m.0)),
        }
    }
    assert_eq!(open_fds(), before, "a descriptor leaked");
});
