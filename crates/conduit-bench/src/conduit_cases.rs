//! conduit's own cases: typed channels over Unix sockets, over shared
//! memory (spinning, adaptive, zero-copy loans), over ordinary pipes and
//! over FIFOs.

use std::io;
use std::time::Duration;

use conduit::channel::{Bytes, pipe, shm};
use conduit::fifo;
use conduit::memory::WaitStrategy;
use conduit::{Receiver, Sender};

use crate::Give;
use crate::driver::{self, Link, MIB, Measurement, Plan};
use crate::peer::{Peer, spawn_peer};

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// A pair of conduit channels carrying [`Bytes`], as a byte link.
pub struct Channels {
    tx: Sender<Bytes>,
    rx: Receiver<Bytes>,
    /// Send with loans and receive in place (shared memory only).
    zero_copy: bool,
    /// Largest message the transport takes whole (FIFOs: `PIPE_BUF`).
    max: usize,
}

impl Link for Channels {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if self.zero_copy {
            let mut loan = self.tx.loan(data.len()).map_err(err)?;
            loan.copy_from_slice(data);
            loan.send();
            Ok(())
        } else {
            self.tx.send_slice(data).map_err(err)
        }
    }
    fn send_built(&mut self, head: &[u8], whole: &[u8]) -> io::Result<()> {
        if !self.zero_copy {
            return self.send(whole);
        }
        // Zero copy: build the message in the ring.
        let mut loan = self.tx.loan(whole.len()).map_err(err)?;
        loan[..head.len()].copy_from_slice(head);
        loan[head.len()..].fill(0);
        loan.send();
        Ok(())
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        if self.zero_copy {
            let got = self.rx.recv_in_place().map_err(err)?;
            buf.clear();
            buf.extend_from_slice(&got);
        } else {
            *buf = self.rx.recv().map_err(err)?.0;
        }
        Ok(())
    }
    fn max_message(&self) -> usize {
        self.max
    }
    fn recv_view(&mut self, scratch: &mut Vec<u8>, look: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        // A receiver that only looks reads shared memory where it lies,
        // whichever way the message was sent (one copy in all, not two).
        if self.rx.is_shared_memory() {
            look(&self.rx.recv_in_place().map_err(err)?);
            Ok(())
        } else {
            self.recv(scratch)?;
            look(scratch);
            Ok(())
        }
    }
}

/// Messages a channel holds in the streams.
const CAPACITY: usize = 256;
/// Ring size of the shared-memory cases: 1 MiB messages fit in the ring.
const RING: usize = 4 * MIB;

#[derive(Clone, Copy)]
enum Kind {
    Uds,
    Shm(WaitStrategy, bool),
    Pipe,
}

fn pair(kind: Kind) -> Result<(Sender<Bytes>, Receiver<Bytes>), conduit::Error> {
    match kind {
        Kind::Uds => conduit::bounded(CAPACITY),
        Kind::Shm(wait, _) => shm::Builder::new().bounded(CAPACITY).ring_bytes(RING).wait(wait).build(),
        Kind::Pipe => pipe::bounded(CAPACITY),
    }
}

fn case(name: &str, kind: Kind, plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let (to_tx, to_rx) = pair(kind).map_err(err)?;
    let (back_tx, back_rx) = pair(kind).map_err(err)?;
    let zero_copy = matches!(kind, Kind::Shm(_, true));
    let peer = spawn_peer(name, &[zero_copy.to_string()])?;
    peer.give(Give::Bytes(to_rx, back_tx))?;
    let mut link = Channels { tx: to_tx, rx: back_rx, zero_copy, max: usize::MAX };
    let m = driver::measure(name, &mut link, plan, tick);
    drop(link);
    peer.finish(m)
}

/// `conduit/uds`: typed bounded channels over Unix sockets.
pub fn uds(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    case("conduit/uds", Kind::Uds, plan, tick)
}

/// `conduit/shm-spin`: shared-memory channels, waiting by spinning.
pub fn shm_spin(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    case("conduit/shm-spin", Kind::Shm(WaitStrategy::Spin, false), plan, tick)
}

/// `conduit/shm`: shared-memory channels, adaptive waiting (the default).
pub fn shm_adaptive(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    case("conduit/shm", Kind::Shm(WaitStrategy::Adaptive(Duration::from_micros(20)), false), plan, tick)
}

/// `conduit/shm-loan`: zero-copy loans out, in-place reads in.
pub fn shm_loan(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    case("conduit/shm-loan", Kind::Shm(WaitStrategy::default(), true), plan, tick)
}

/// `conduit/pipe`: typed bounded channels over ordinary pipes.
pub fn pipe_case(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    case("conduit/pipe", Kind::Pipe, plan, tick)
}

/// `conduit/fifo`: typed channels over two named pipes, opened by path
/// (1 MiB messages go in `PIPE_BUF`-sized fragments, put back together by
/// the receiver).
pub fn fifo_case(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let dir = std::env::temp_dir().join(format!("conduit-bench-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (down, up) = (dir.join("down"), dir.join("up"));
    let mut run = || -> io::Result<Measurement> {
        fifo::create(&down, 0o600).map_err(err)?;
        fifo::create(&up, 0o600).map_err(err)?;
        let rx = fifo::receiver::<Bytes>(&up).map_err(err)?;
        let args = [down.display().to_string(), up.display().to_string()];
        let peer = spawn_peer("conduit/fifo", &args)?;
        let tx = fifo::sender_timeout::<Bytes>(&down, Duration::from_secs(10)).map_err(err)?;
        let mut link = Channels { tx, rx, zero_copy: false, max: usize::MAX };
        let m = driver::measure("conduit/fifo", &mut link, plan, tick);
        drop(link);
        peer.finish(m)
    };
    let m = run();
    let _ = std::fs::remove_dir_all(&dir);
    m
}

/// The peer of `conduit/fifo`.
pub fn fifo_peer(p: &Peer) -> io::Result<()> {
    let rx = fifo::receiver::<Bytes>(p.arg(0)?).map_err(err)?;
    let tx = fifo::sender_timeout::<Bytes>(p.arg(1)?, Duration::from_secs(10)).map_err(err)?;
    driver::serve(&mut Channels { tx, rx, zero_copy: false, max: usize::MAX })
}

/// The peer of every other conduit case.
pub fn peer(p: &Peer) -> io::Result<()> {
    let zero_copy = p.arg(0)? == "true";
    match p.take()? {
        Give::Bytes(rx, tx) => driver::serve(&mut Channels { tx, rx, zero_copy, max: usize::MAX }),
        _ => Err(io::Error::other("expected byte channels")),
    }
}

// ------------------------------------------------------------ sockets

/// `conduit/tcp` and `conduit/unix-stream`: typed bounded channels over a
/// [`conduit::net`] connection (two sockets, credits in band), the peer a
/// client that connects.
fn stream_case(name: &str, listen: &str, plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let mut listener = conduit::net::Listener::bind(listen).map_err(err)?;
    listener.set_capacity(Some(CAPACITY));
    let peer = spawn_peer(name, &[listener.local_addr().to_string()])?;
    let m = listener.accept_timeout::<Bytes, Bytes>(Duration::from_secs(30)).map_err(err).and_then(|c| {
        let c = c.ok_or_else(|| err("the peer did not connect"))?;
        let mut link = Channels { tx: c.tx, rx: c.rx, zero_copy: false, max: usize::MAX };
        driver::measure(name, &mut link, plan, tick)
    });
    peer.finish(m)
}

/// `conduit/tcp`: TCP over loopback, `TCP_NODELAY`.
pub fn tcp_case(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    stream_case("conduit/tcp", "tcp:127.0.0.1:0", plan, tick)
}

/// `conduit/unix-stream`: Unix stream sockets.
pub fn unix_stream_case(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let path = std::env::temp_dir().join(format!("conduit-bench-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    stream_case("conduit/unix-stream", &format!("unix:{}", path.display()), plan, tick)
}

/// The peer of `conduit/tcp` and `conduit/unix-stream`: connects.
pub fn stream_peer(p: &Peer) -> io::Result<()> {
    let c = conduit::net::Connect::new(p.arg(0)?).capacity(CAPACITY).open::<Bytes, Bytes>().map_err(err)?;
    driver::serve(&mut Channels { tx: c.tx, rx: c.rx, zero_copy: false, max: usize::MAX })
}

/// One datagram each way, typed (conduit) or raw (the floor).
pub(crate) trait Datagrams {
    fn send_to(&self, data: &[u8], to: std::net::SocketAddr) -> io::Result<()>;
    fn recv_from(&self, buf: &mut Vec<u8>) -> io::Result<std::net::SocketAddr>;
}

/// Bytes serialized as one byte string (what [`Bytes`] decodes), borrowed.
struct Slice<'a>(&'a [u8]);

impl serde::Serialize for Slice<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl Datagrams for conduit::net::udp::Socket {
    fn send_to(&self, data: &[u8], to: std::net::SocketAddr) -> io::Result<()> {
        conduit::net::udp::Socket::send_to(self, &Slice(data), to).map_err(err)
    }
    fn recv_from(&self, buf: &mut Vec<u8>) -> io::Result<std::net::SocketAddr> {
        let (m, from) = conduit::net::udp::Socket::recv_from::<Bytes>(self).map_err(err)?;
        *buf = m.0;
        Ok(from)
    }
}

/// Round trips only: datagrams carry no flow control, so a stream would
/// measure losses, not the transport (`msgs_per_s_64b` and
/// `gb_per_s_1mib` are `null`).
pub(crate) fn datagram_case(
    name: &str,
    sock: &dyn Datagrams,
    plan: Plan,
    tick: &mut dyn FnMut(),
) -> io::Result<Measurement> {
    let mut buf = Vec::new();
    // The peer says hello: that is its address.
    let to = sock.recv_from(&mut buf)?;
    let ping = 0x0123_4567_89ab_cdefu64.to_le_bytes();
    let rtts = driver::round_trips(plan, || {
        sock.send_to(&ping, to)?;
        sock.recv_from(&mut buf)?;
        if buf == ping { Ok(()) } else { Err(io::Error::other("echo differs")) }
    })?;
    tick();
    sock.send_to(b"quit", to)?;
    Ok(Measurement::round_trips_only(name, &rtts))
}

/// The peer of a datagram case: hello, then echo until "quit".
pub(crate) fn datagram_peer(sock: &dyn Datagrams, to: std::net::SocketAddr) -> io::Result<()> {
    sock.send_to(b"hello", to)?;
    let mut buf = Vec::new();
    loop {
        let from = sock.recv_from(&mut buf)?;
        if buf == b"quit" {
            return Ok(());
        }
        sock.send_to(&buf, from)?;
    }
}

/// `conduit/udp`: typed datagrams over loopback UDP.
pub fn udp_case(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let sock = conduit::net::udp::Socket::bind("127.0.0.1:0").map_err(err)?;
    sock.as_std().set_read_timeout(Some(Duration::from_secs(10)))?;
    let peer = spawn_peer("conduit/udp", &[sock.local_addr().map_err(err)?.to_string()])?;
    let m = datagram_case("conduit/udp", &sock, plan, tick);
    peer.finish(m)
}

/// The peer of `conduit/udp`.
pub fn udp_peer(p: &Peer) -> io::Result<()> {
    let sock = conduit::net::udp::Socket::bind("127.0.0.1:0").map_err(err)?;
    sock.as_std().set_read_timeout(Some(Duration::from_secs(30)))?;
    let to = p.arg(0)?.parse().map_err(err)?;
    datagram_peer(&sock, to)
}
