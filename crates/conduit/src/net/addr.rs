//! Endpoints (`tcp:HOST:PORT`, `unix:PATH`) and peers.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Error;
use crate::sys::net::{PeerOf, Place};
use crate::sys::socket::Credentials;

/// A stream endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// TCP: an IPv4 or IPv6 address and port.
    Tcp(SocketAddr),
    /// A Unix stream socket's path.
    Unix(PathBuf),
}

impl Addr {
    pub(crate) fn place(&self) -> Place<'_> {
        match self {
            Addr::Tcp(a) => Place::Tcp(*a),
            Addr::Unix(p) => Place::Unix(p),
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "tcp:{a}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Resolve `HOST:PORT` (a name, an IPv4 address or a bracketed IPv6 one)
/// to its first address.
fn resolve(hostport: &str) -> Result<SocketAddr, Error> {
    hostport
        .to_socket_addrs()
        .map_err(|e| Error::Io(io::Error::new(io::ErrorKind::InvalidInput, format!("{hostport:?}: {e}"))))?
        .next()
        .ok_or_else(|| Error::Io(io::Error::new(io::ErrorKind::InvalidInput, format!("{hostport:?}: no address"))))
}

impl FromStr for Addr {
    type Err = Error;

    /// `tcp:HOST:PORT`, `unix:PATH`, or a plain `HOST:PORT` (TCP).
    fn from_str(s: &str) -> Result<Addr, Error> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(Error::Io(io::Error::new(io::ErrorKind::InvalidInput, "unix: needs a path")));
            }
            return Ok(Addr::Unix(PathBuf::from(path)));
        }
        Ok(Addr::Tcp(resolve(s.strip_prefix("tcp:").unwrap_or(s))?))
    }
}

/// Anything that names an endpoint.
pub trait ToAddr {
    /// The endpoint.
    fn to_addr(&self) -> Result<Addr, Error>;
}

impl ToAddr for Addr {
    fn to_addr(&self) -> Result<Addr, Error> {
        Ok(self.clone())
    }
}

impl ToAddr for &Addr {
    fn to_addr(&self) -> Result<Addr, Error> {
        Ok((*self).clone())
    }
}

impl ToAddr for str {
    fn to_addr(&self) -> Result<Addr, Error> {
        self.parse()
    }
}

impl ToAddr for &str {
    fn to_addr(&self) -> Result<Addr, Error> {
        self.parse()
    }
}

impl ToAddr for String {
    fn to_addr(&self) -> Result<Addr, Error> {
        self.parse()
    }
}

impl ToAddr for SocketAddr {
    fn to_addr(&self) -> Result<Addr, Error> {
        Ok(Addr::Tcp(*self))
    }
}

/// The peer of a connection, as the kernel knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A TCP peer: its address and port.
    Addr(SocketAddr),
    /// A Unix-socket peer: the process that connected or accepted
    /// (`SO_PEERCRED`).
    Process(Credentials),
}

impl From<PeerOf> for Peer {
    fn from(p: PeerOf) -> Peer {
        match p {
            PeerOf::Addr(a) => Peer::Addr(a),
            PeerOf::Process(c) => Peer::Process(c),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Addr(a) => write!(f, "{a}"),
            Peer::Process(c) => write!(f, "pid {} uid {} gid {}", c.pid, c.uid, c.gid),
        }
    }
}
