//! Plain byte streams: no greeting, no frames.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use super::{Peer, ToAddr};
use crate::error::Error;
use crate::sys::Deadline;
use crate::sys::net as sys;

/// A plain byte stream — no greeting, no frames: what the notes'
/// programs (and any `nc`, Python or C client) speak. `Read` and `Write`
/// block.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection.
    Tcp(std::net::TcpStream),
    /// A Unix stream connection.
    Unix(std::os::unix::net::UnixStream),
}

impl Stream {
    pub(crate) fn from_fd(fd: OwnedFd) -> Result<Stream, Error> {
        sys::set_blocking(fd.as_fd())?;
        Ok(match sys::local_addr(fd.as_fd())? {
            Some(_) => Stream::Tcp(fd.into()),
            None => Stream::Unix(fd.into()),
        })
    }

    /// The peer, as the kernel knows it.
    pub fn peer(&self) -> Result<Peer, Error> {
        let fd = match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        };
        Ok(sys::peer(fd)?.into())
    }

    /// Say "no more from me" (the peer reads the end of the stream) and
    /// keep reading.
    pub fn shutdown_write(&self) -> Result<(), Error> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write)?,
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write)?,
        }
        Ok(())
    }

    /// Give up a blocking read after `timeout` (`None`: never).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), Error> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(timeout)?,
            Stream::Unix(s) => s.set_read_timeout(timeout)?,
        }
        Ok(())
    }
}

impl io::Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl io::Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Connect a plain byte stream to `addr`, within `timeout`.
pub fn connect_stream(addr: impl ToAddr, timeout: Duration) -> Result<Stream, Error> {
    let addr = addr.to_addr()?;
    let fd = sys::connect(addr.place(), Deadline::Until(Instant::now() + timeout))?;
    sys::set_nodelay(fd.as_fd())?;
    Stream::from_fd(fd)
}
