//! The client's side: two connections, greeted, paired by a cookie; and
//! the pair both sides make of them.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Addr, Peer, ToAddr};
use crate::channel::ctl::{Capacity, Ctl};
use crate::channel::transport::stream::{self, HELLO_LEN, Hello, Role, StreamRx, StreamTx};
use crate::channel::transport::{RxLink, TxLink};
use crate::channel::{Receiver, Sender};
use crate::error::Error;
use crate::sys::Deadline;
use crate::sys::net as sys;
use crate::sys::pipe::read_some;
use crate::sys::socket;

/// One connection: what this side sends (`S`) and receives (`R`).
#[derive(Debug)]
pub struct Conn<S, R> {
    /// Sends to the peer.
    pub tx: Sender<S>,
    /// Receives from the peer.
    pub rx: Receiver<R>,
    /// Who the peer is.
    pub peer: Peer,
}

pub(crate) fn capacity(c: Option<usize>) -> Capacity {
    match c {
        None => Capacity::Unbounded,
        Some(0) => Capacity::Zero,
        Some(n) => Capacity::Bounded(n as u64),
    }
}

/// The largest message a receiver of a network connection takes unless
/// told otherwise (`Listener::set_max_message`, `Connect::max_message`,
/// `Receiver::set_max_message`): a peer on the network may be anyone, and
/// a frame is kept whole until it is decoded.
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// Make the pair from two greeted connections.
pub(crate) fn pair<S, R>(
    send: OwnedFd,
    send_cap: Capacity,
    recv: OwnedFd,
    recv_cap: Capacity,
    max_message: usize,
) -> Result<Conn<S, R>, Error> {
    let peer = sys::peer(recv.as_fd())?.into();
    let tx = Sender::from_link(TxLink::Stream(StreamTx::new(send)), Ctl::create(send_cap)?);
    let rx = Receiver::from_link(RxLink::Stream(StreamRx::new(recv)), Ctl::create(recv_cap)?);
    rx.set_max_message(max_message);
    Ok(Conn { tx, rx, peer })
}

/// Write a greeting to a fresh socket (it has room for 40 bytes; waits
/// until `wait` at most otherwise).
pub(crate) fn greet(fd: &OwnedFd, hello: &Hello, wait: Deadline) -> Result<(), Error> {
    let bytes = hello.encode();
    let mut sent = 0;
    while sent < bytes.len() {
        match sys::send_some(fd.as_fd(), &bytes[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !socket::poll_out(fd.as_fd(), wait)? {
                    return Err(Error::Io(io::ErrorKind::TimedOut.into()));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// How a client connects: see [`Connect::new`].
#[derive(Clone, Debug)]
pub struct Connect {
    addr: Result<Addr, String>,
    capacity: Option<usize>,
    timeout: Duration,
    max_message: usize,
}

impl Connect {
    /// Connect to `addr`; this side receives on an unbounded channel and
    /// gives up after 10 s, unless told otherwise.
    pub fn new(addr: impl ToAddr) -> Connect {
        Connect {
            addr: addr.to_addr().map_err(|e| e.to_string()),
            capacity: None,
            timeout: Duration::from_secs(10),
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }

    /// This side's receiver holds at most `n` messages (`0`: rendezvous);
    /// the peer's sends wait for room.
    pub fn capacity(mut self, n: usize) -> Connect {
        self.capacity = Some(n);
        self
    }

    /// This side's receiver refuses messages over `bytes` (default
    /// [`DEFAULT_MAX_MESSAGE`]), by their declared size, before reading
    /// them.
    pub fn max_message(mut self, bytes: usize) -> Connect {
        self.max_message = bytes;
        self
    }

    /// Give up connecting (and waiting for the server to accept) after
    /// `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Connect {
        self.timeout = timeout;
        self
    }

    /// Connect: two connections (one per direction), greeted, paired by a
    /// random cookie; returns when the server has accepted.
    pub fn open<S, R>(self) -> Result<Conn<S, R>, Error>
    where
        S: Serialize,
        R: DeserializeOwned,
    {
        let addr = self.addr.map_err(|e| Error::Io(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        let wait = Deadline::Until(Instant::now() + self.timeout);
        let mut cookie = [0u8; 16];
        rustix::rand::getrandom(&mut cookie, rustix::rand::GetRandomFlags::empty())?;
        let mine = capacity(self.capacity);
        let up = sys::connect(addr.place(), wait)?;
        sys::set_nodelay(up.as_fd())?;
        greet(&up, &Hello { role: Role::ClientSends, capacity: Capacity::Unbounded, cookie }, wait)?;
        let down = sys::connect(addr.place(), wait)?;
        sys::set_nodelay(down.as_fd())?;
        greet(&down, &Hello { role: Role::ServerSends, capacity: mine, cookie }, wait)?;
        // The server's welcome: its receiver's capacity.
        let mut got = Vec::with_capacity(HELLO_LEN);
        while got.len() < HELLO_LEN {
            let mut buf = [0u8; HELLO_LEN];
            match read_some(up.as_fd(), &mut buf[..HELLO_LEN - got.len()]) {
                Ok(0) => return Err(Error::Handshake("the server closed the connection before accepting it")),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !socket::poll(&[up.as_fd()], wait)?[0].readable && wait.expired() {
                        return Err(Error::Io(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the server did not accept the connection in time",
                        )));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let welcome = stream::parse_hello(&got).map_err(Error::Handshake)?;
        if welcome.role != Role::Welcome || welcome.cookie != cookie {
            return Err(Error::Handshake("the server's welcome does not answer this connection"));
        }
        pair(up, welcome.capacity, down, mine, self.max_message)
    }
}

/// Connect to `addr` (`tcp:HOST:PORT`, `unix:PATH`) with the defaults of
/// [`Connect`]: `S` is what this side sends, `R` what it receives.
pub fn connect<S: Serialize, R: DeserializeOwned>(addr: impl ToAddr) -> Result<Conn<S, R>, Error> {
    Connect::new(addr).open()
}
