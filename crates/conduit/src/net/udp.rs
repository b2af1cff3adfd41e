//! Typed datagrams over UDP, and multicast.
//!
//! Each message is one datagram holding one whole conduit frame (the wire
//! header, CRC32C always on). What UDP gives, and what conduit adds:
//!
//! * **No delivery, order or duplicate guarantee.** A datagram may be
//!   lost, reordered or duplicated by the network; conduit does not hide
//!   it (use a stream [`Conn`](super::Conn) for that).
//! * **Largest message.** A frame must fit one datagram: at most
//!   [`MAX_DATAGRAM`] bytes (65,507, IPv4's limit), so a payload of at
//!   most `MAX_DATAGRAM - 16` bytes; larger is [`Error::TooLarge`] at the
//!   send, nothing sent. Beyond loopback, datagrams above the path's MTU
//!   (about 1,400 bytes) are fragmented by IP and lost more often.
//! * **Corrupt or truncated datagrams** (bad header, wrong length, bad
//!   checksum, or a payload that is not a `T`) are **dropped and counted**
//!   ([`Socket::dropped`]), never delivered; the receive waits for the
//!   next good one.
//! * **Who sent it** is the datagram's source address, as the kernel
//!   reports it (`recv_from`).
//!
//! Multicast: [`Socket::multicast`] binds a group's port (shared by every
//! receiver on the host) and joins the group; a sender sets the TTL and
//! whether its own host's members hear it (loopback).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ToAddr;
use crate::error::Error;
use crate::wire::{self, HEADER_LEN};

/// Largest datagram (and so largest frame) a UDP socket sends over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

/// A UDP socket that sends and receives typed messages.
#[derive(Debug)]
pub struct Socket {
    sock: UdpSocket,
    dropped: AtomicU64,
    /// A receive timeout is set on the socket (by `recv_from_timeout`).
    timed: std::sync::atomic::AtomicBool,
}

/// What an iterative datagram server's handler answers.
#[derive(Debug)]
pub enum Answer<A> {
    /// Send this back to the client.
    Reply(A),
    /// Send nothing.
    Nothing,
    /// Stop serving.
    Stop,
}

fn socket_addr(addr: impl ToAddr) -> Result<SocketAddr, Error> {
    match addr.to_addr()? {
        super::Addr::Tcp(a) => Ok(a),
        super::Addr::Unix(_) => {
            Err(Error::Io(io::Error::new(io::ErrorKind::InvalidInput, "UDP needs HOST:PORT, not a Unix path")))
        }
    }
}

/// Encode `msg` as one datagram (header, payload; checksummed).
pub fn encode<T: Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, Error> {
    let frame = wire::encode_frame(msg)?;
    if frame.len() > MAX_DATAGRAM {
        return Err(Error::TooLarge { size: frame.len() - HEADER_LEN, limit: MAX_DATAGRAM - HEADER_LEN });
    }
    Ok(frame)
}

/// Decode one datagram: pure, for any bytes.
pub fn decode<T: DeserializeOwned>(datagram: &[u8]) -> Result<T, Error> {
    wire::decode_frame(datagram, MAX_DATAGRAM)
}

impl Socket {
    /// A socket bound to `addr` (`HOST:PORT`; port 0: the kernel picks).
    pub fn bind(addr: impl ToAddr) -> Result<Socket, Error> {
        Ok(Socket::from_std(UdpSocket::bind(socket_addr(addr)?)?))
    }

    /// Wrap a bound `std` UDP socket.
    pub fn from_std(sock: UdpSocket) -> Socket {
        Socket { sock, dropped: AtomicU64::new(0), timed: std::sync::atomic::AtomicBool::new(false) }
    }

    /// A receiver of multicast group `group` on `port`: binds the port on
    /// every interface with `SO_REUSEADDR` (other receivers on this host
    /// may bind it too) and joins the group on `interface` (`0.0.0.0`:
    /// the kernel's choice).
    pub fn multicast(group: Ipv4Addr, port: u16, interface: Ipv4Addr) -> Result<Socket, Error> {
        if !group.is_multicast() {
            return Err(Error::Io(io::Error::new(io::ErrorKind::InvalidInput, format!("{group} is not multicast"))));
        }
        let fd = crate::sys::net::udp_reusable(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))?;
        let sock = UdpSocket::from(fd);
        sock.join_multicast_v4(&group, &interface)?;
        Ok(Socket::from_std(sock))
    }

    /// Join multicast `group` on `interface`.
    pub fn join(&self, group: Ipv4Addr, interface: Ipv4Addr) -> Result<(), Error> {
        Ok(self.sock.join_multicast_v4(&group, &interface)?)
    }

    /// Leave multicast `group` on `interface`.
    pub fn leave(&self, group: Ipv4Addr, interface: Ipv4Addr) -> Result<(), Error> {
        Ok(self.sock.leave_multicast_v4(&group, &interface)?)
    }

    /// How many routers a multicast datagram may cross (default 1: this
    /// network only).
    pub fn set_multicast_ttl(&self, ttl: u32) -> Result<(), Error> {
        Ok(self.sock.set_multicast_ttl_v4(ttl)?)
    }

    /// Send multicast datagrams out of the interface whose address is
    /// `interface` (`127.0.0.1`: this host only).
    pub fn set_multicast_interface(&self, interface: Ipv4Addr) -> Result<(), Error> {
        Ok(crate::sys::net::set_multicast_if(self.sock.as_fd(), interface)?)
    }

    /// Whether members on this host hear this socket's multicast
    /// datagrams (default: yes).
    pub fn set_multicast_loop(&self, on: bool) -> Result<(), Error> {
        Ok(self.sock.set_multicast_loop_v4(on)?)
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.sock.local_addr()?)
    }

    /// Datagrams dropped so far: corrupt, truncated, or not a message of
    /// the type asked for.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Send `msg` as one datagram to `to`.
    pub fn send_to<T: Serialize + ?Sized>(&self, msg: &T, to: impl ToAddr) -> Result<(), Error> {
        let frame = encode(msg)?;
        self.sock.send_to(&frame, socket_addr(to)?)?;
        Ok(())
    }

    /// Wait for the next good datagram; corrupt ones are dropped and
    /// counted.
    pub fn recv_from<T: DeserializeOwned>(&self) -> Result<(T, SocketAddr), Error> {
        if self.timed.swap(false, Relaxed) {
            self.sock.set_read_timeout(None)?;
        }
        self.next()
    }

    /// Like [`recv_from`](Self::recv_from), for `timeout` at most
    /// (`Err(Io(WouldBlock or TimedOut))` when it passes).
    pub fn recv_from_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<(T, SocketAddr), Error> {
        let until = std::time::Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(Error::Io(io::ErrorKind::TimedOut.into()));
            }
            self.timed.store(true, Relaxed);
            self.sock.set_read_timeout(Some(left))?;
            match self.next() {
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    fn next<T: DeserializeOwned>(&self) -> Result<(T, SocketAddr), Error> {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with(|b| {
            let mut buf = b.borrow_mut();
            if buf.len() < MAX_DATAGRAM + 1 {
                buf.resize(MAX_DATAGRAM + 1, 0);
            }
            loop {
                let (n, from) = self.sock.recv_from(&mut buf)?;
                match decode(&buf[..n]) {
                    Ok(msg) => return Ok((msg, from)),
                    Err(_) => {
                        self.dropped.fetch_add(1, Relaxed);
                    }
                }
            }
        })
    }

    /// The notes' iterative connectionless server: take each datagram in
    /// turn, hand it to `handler` with its source, and send the answer
    /// back to that source. Returns when the handler says
    /// [`Answer::Stop`].
    pub fn serve<Q, A>(&self, mut handler: impl FnMut(Q, SocketAddr) -> Answer<A>) -> Result<(), Error>
    where
        Q: DeserializeOwned,
        A: Serialize,
    {
        loop {
            let (q, from) = self.recv_from::<Q>()?;
            match handler(q, from) {
                Answer::Reply(a) => {
                    // A reply that cannot go (too large, unreachable) is
                    // that client's loss only.
                    let _ = self.send_to(&a, from);
                }
                Answer::Nothing => {}
                Answer::Stop => return Ok(()),
            }
        }
    }

    /// The `std` socket (for raw datagrams).
    pub fn as_std(&self) -> &UdpSocket {
        &self.sock
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl From<Socket> for OwnedFd {
    fn from(s: Socket) -> OwnedFd {
        s.sock.into()
    }
}
