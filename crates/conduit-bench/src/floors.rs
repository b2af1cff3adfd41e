//! The floors: what the kernel and the hardware can do with no library in
//! the way, written here in a few lines each.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

use crate::driver::{self, Link, Measurement, Plan};
use crate::peer::{Peer, spawn_peer};

/// A Unix-domain `SOCK_SEQPACKET` socket: conduit's own transport, raw.
pub struct Seqpacket(OwnedFd);

/// Largest datagram the floor sends (the kernel's socket buffer bounds it).
const DATAGRAM_MAX: usize = 64 * 1024;

impl Link for Seqpacket {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        rustix::net::send(&self.0, data, SendFlags::NOSIGNAL)?;
        Ok(())
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.resize(DATAGRAM_MAX, 0);
        let (n, _) = rustix::net::recv(&self.0, &mut buf[..], RecvFlags::empty())?;
        buf.truncate(n);
        Ok(())
    }
    fn max_message(&self) -> usize {
        DATAGRAM_MAX
    }
}

fn abstract_name(case: &str) -> String {
    format!("conduit-bench-{}-{}", std::process::id(), case.replace('/', "-"))
}

/// `floor/uds`: raw `SOCK_SEQPACKET` ping-pong and streams.
pub fn uds(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let name = abstract_name("floor/uds");
    let addr = SocketAddrUnix::new_abstract_name(name.as_bytes())?;
    let listener = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
    rustix::net::bind(&listener, &addr)?;
    rustix::net::listen(&listener, 1)?;
    let peer = spawn_peer("floor/uds", &[name])?;
    let sock = rustix::net::accept_with(&listener, SocketFlags::CLOEXEC)?;
    let mut link = Seqpacket(sock);
    let m = driver::measure("floor/uds", &mut link, plan, tick);
    peer.finish(m)
}

/// The peer of `floor/uds`.
pub fn uds_peer(p: &Peer) -> io::Result<()> {
    let addr = SocketAddrUnix::new_abstract_name(p.arg(0)?.as_bytes())?;
    let sock = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
    rustix::net::connect(&sock, &addr)?;
    let _ = sock.as_fd();
    driver::serve(&mut Seqpacket(sock))
}
