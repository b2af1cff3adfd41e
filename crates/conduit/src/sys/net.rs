//! Stream sockets (TCP over IPv4 and IPv6, Unix stream): listen with a
//! backlog, accept without blocking, connect within a deadline, and the
//! few options conduit sets. Every socket is close-on-exec and
//! non-blocking; waiting is done with `poll`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::net::{AddressFamily, SendFlags, SocketAddrAny, SocketAddrUnix, SocketFlags, SocketType, sockopt};

use super::Deadline;
use super::socket::{self, Credentials};

/// Where a stream socket lives.
#[derive(Clone, Copy, Debug)]
pub enum Place<'a> {
    /// TCP.
    Tcp(SocketAddr),
    /// A Unix stream socket bound to a path.
    Unix(&'a Path),
}

const FLAGS: SocketFlags = SocketFlags::CLOEXEC.union(SocketFlags::NONBLOCK);

fn family(place: &Place<'_>) -> AddressFamily {
    match place {
        Place::Tcp(SocketAddr::V4(_)) => AddressFamily::INET,
        Place::Tcp(SocketAddr::V6(_)) => AddressFamily::INET6,
        Place::Unix(_) => AddressFamily::UNIX,
    }
}

fn new_socket(place: &Place<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(family(place), SocketType::STREAM, FLAGS, None)?)
}

/// A listening socket at `place` with room for `backlog` connections not
/// yet accepted.
pub fn listen(place: Place<'_>, backlog: i32) -> io::Result<OwnedFd> {
    let fd = new_socket(&place)?;
    match place {
        Place::Tcp(addr) => {
            sockopt::set_socket_reuseaddr(&fd, true)?;
            rustix::net::bind(&fd, &addr)?;
        }
        Place::Unix(path) => rustix::net::bind(&fd, &SocketAddrUnix::new(path)?)?,
    }
    rustix::net::listen(&fd, backlog)?;
    Ok(fd)
}

/// A connection waiting on `listener`, if there is one now.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    loop {
        match rustix::net::accept_with(listener, FLAGS) {
            Ok(fd) => return Ok(Some(fd)),
            Err(rustix::io::Errno::AGAIN) => return Ok(None),
            Err(rustix::io::Errno::INTR | rustix::io::Errno::CONNABORTED) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Connect to `place`, waiting until `wait` at most.
pub fn connect(place: Place<'_>, wait: Deadline) -> io::Result<OwnedFd> {
    let fd = new_socket(&place)?;
    let started = match place {
        Place::Tcp(addr) => rustix::net::connect(&fd, &addr),
        Place::Unix(path) => rustix::net::connect(&fd, &SocketAddrUnix::new(path)?),
    };
    match started {
        Ok(()) => return Ok(fd),
        // A Unix listener with a full backlog says EAGAIN: wait as for TCP.
        Err(rustix::io::Errno::INPROGRESS | rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
        Err(e) => return Err(e.into()),
    }
    if let Place::Unix(path) = place {
        // A Unix connect cannot be completed by waiting: try again until
        // the deadline.
        loop {
            if wait.expired() || wait == Deadline::Never {
                return Err(io::ErrorKind::TimedOut.into());
            }
            // The listener's backlog is full: nothing to poll for, so look
            // again shortly.
            std::thread::sleep(std::time::Duration::from_millis(1));
            match rustix::net::connect(&fd, &SocketAddrUnix::new(path)?) {
                Ok(()) | Err(rustix::io::Errno::ISCONN) => return Ok(fd),
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    let ready = socket::poll_out(fd.as_fd(), wait)?;
    if !ready {
        return Err(io::ErrorKind::TimedOut.into());
    }
    match sockopt::socket_error(&fd)? {
        Ok(()) => Ok(fd),
        Err(e) => Err(e.into()),
    }
}

/// Send what the socket takes now (never blocking, never `SIGPIPE`).
pub fn send_some(fd: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match rustix::net::send(fd, bytes, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return Ok(other?),
        }
    }
}

/// Turn off Nagle's algorithm (TCP only; a no-op elsewhere).
pub fn set_nodelay(fd: BorrowedFd<'_>) -> io::Result<()> {
    match sockopt::socket_domain(fd)? {
        AddressFamily::INET | AddressFamily::INET6 => Ok(sockopt::set_tcp_nodelay(fd, true)?),
        _ => Ok(()),
    }
}

/// The peer of a connected stream socket as the kernel knows it.
#[derive(Clone, Copy, Debug)]
pub enum PeerOf {
    /// A TCP peer's address.
    Addr(SocketAddr),
    /// A Unix peer: the process that connected (or accepted), `SO_PEERCRED`.
    Process(Credentials),
}

/// The peer of `fd`.
pub fn peer(fd: BorrowedFd<'_>) -> io::Result<PeerOf> {
    if sockopt::socket_domain(fd)? == AddressFamily::UNIX {
        let c = sockopt::socket_peercred(fd)?;
        return Ok(PeerOf::Process(Credentials {
            pid: c.pid.as_raw_nonzero().get() as u32,
            uid: c.uid.as_raw(),
            gid: c.gid.as_raw(),
        }));
    }
    let addr = rustix::net::getpeername(fd)?.ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
    Ok(PeerOf::Addr(inet(addr)?))
}

fn inet(addr: SocketAddrAny) -> io::Result<SocketAddr> {
    SocketAddr::try_from(addr).map_err(|_| io::Error::other("not an internet address"))
}

/// The TCP address a socket is bound to (`None` for Unix sockets).
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<Option<SocketAddr>> {
    if sockopt::socket_domain(fd)? == AddressFamily::UNIX {
        return Ok(None);
    }
    Ok(Some(inet(rustix::net::getsockname(fd)?)?))
}

/// True if `fd` is a stream socket (TCP or Unix).
pub fn is_stream(fd: BorrowedFd<'_>) -> bool {
    sockopt::socket_type(fd).is_ok_and(|t| t == SocketType::STREAM)
        && sockopt::socket_domain(fd)
            .is_ok_and(|d| matches!(d, AddressFamily::UNIX | AddressFamily::INET | AddressFamily::INET6))
}

/// True if the peer has closed its end (or the connection broke): the
/// socket reports a read hang-up or an error.
pub fn closed_by_peer(fd: BorrowedFd<'_>) -> bool {
    socket::poll_rdhup(fd).unwrap_or(true)
}

/// Make a received stream socket non-blocking.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::io::ioctl_fionbio(fd, true)?)
}

/// Make a socket blocking (for plain `Read`/`Write` streams).
pub fn set_blocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::io::ioctl_fionbio(fd, false)?)
}

/// Shut both directions of a connection (the peer sees the end at once,
/// whoever else holds the socket).
pub fn shutdown(fd: impl AsFd) {
    let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Both);
}

/// A UDP socket bound to `addr` with `SO_REUSEADDR` (several multicast
/// receivers on one host share the port).
pub fn udp_reusable(addr: std::net::SocketAddrV4) -> io::Result<OwnedFd> {
    let fd = rustix::net::socket_with(AddressFamily::INET, SocketType::DGRAM, SocketFlags::CLOEXEC, None)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::bind(&fd, &addr)?;
    Ok(fd)
}

/// Send this socket's multicast datagrams out of the interface with
/// address `iface`.
pub fn set_multicast_if(fd: BorrowedFd<'_>, iface: std::net::Ipv4Addr) -> io::Result<()> {
    Ok(sockopt::set_ip_multicast_if(fd, &iface)?)
}
