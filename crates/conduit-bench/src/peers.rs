//! conduit's peers, as real dependencies: iceoryx2 (shared-memory
//! publish-subscribe, polling) and ipc-channel (Servo's channels over Unix
//! sockets).

use std::io;

use iceoryx2::prelude::*;
use ipc_channel::ipc::{IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcSender};

use crate::driver::{self, Link, MIB, Measurement, Plan};
use crate::peer::{Peer, spawn_peer};

fn err(e: impl std::fmt::Debug) -> io::Error {
    io::Error::other(format!("{e:?}"))
}

// ---------------------------------------------------------- iceoryx2

type Publisher = iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>;
type Subscriber = iceoryx2::port::subscriber::Subscriber<ipc::Service, [u8], ()>;
type Loaned = iceoryx2::sample_mut_uninit::SampleMutUninit<ipc::Service, [std::mem::MaybeUninit<u8>], ()>;

/// iceoryx2 publish-subscribe, configured the way iceoryx2's own
/// publish-subscribe benchmark (`benchmarks/publish-subscribe`) runs:
/// 8-byte round trips go through a pair of services with a subscriber
/// buffer of 1 and safe overflow, and the next sample is loaned before
/// waiting for the answer. Streams (every other size, in order with
/// their end-of-batch marker) go through a second pair with a buffer of
/// 64 and no overflow (the publisher retries until delivered), so nothing
/// is dropped. The receiver polls, iceoryx2's own way; the sender writes
/// every payload.
pub struct Iceoryx {
    rtt_pub: Publisher,
    rtt_sub: Subscriber,
    stream_pub: Publisher,
    stream_sub: Subscriber,
    /// The round trip's next sample, loaned ahead.
    next: Option<Loaned>,
    /// The last message came by the stream pair.
    stream_last: bool,
    _node: Node<ipc::Service>,
}

/// Size of the round-trip messages (the driver's echo).
const ECHO: usize = 8;
/// Subscriber buffer of the stream services.
const STREAM_BUFFER: usize = 64;

fn iceoryx(base: &str, driver_side: bool) -> io::Result<Iceoryx> {
    // iceoryx2 logs a warning per node when it finds no config file (the
    // bench uses its defaults on purpose); `IOX2_LOG_LEVEL` still rules.
    set_log_level_from_env_or(LogLevel::Error);
    let node = NodeBuilder::new().create::<ipc::Service>().map_err(err)?;
    let open = |name: String, buffer: usize, overflow: bool| {
        let name: ServiceName = name.as_str().try_into().map_err(err)?;
        node.service_builder(&name)
            .publish_subscribe::<[u8]>()
            .enable_safe_overflow(overflow)
            .subscriber_max_buffer_size(buffer)
            .history_size(0)
            .max_publishers(1)
            .max_subscribers(1)
            .open_or_create()
            .map_err(err)
    };
    let (out_dir, in_dir) = if driver_side { ("down", "up") } else { ("up", "down") };
    let pair = |kind: &str, buffer: usize, overflow: bool, max_len: usize| -> io::Result<(Publisher, Subscriber)> {
        let out = open(format!("{base}/{kind}/{out_dir}"), buffer, overflow)?;
        let inn = open(format!("{base}/{kind}/{in_dir}"), buffer, overflow)?;
        let mut publisher = out.publisher_builder().initial_max_slice_len(max_len).max_loaned_samples(4);
        if !overflow {
            publisher = publisher.backpressure_strategy(BackpressureStrategy::RetryUntilDelivered);
        }
        let subscriber = inn.subscriber_builder().buffer_size(buffer).create().map_err(err)?;
        Ok((publisher.create().map_err(err)?, subscriber))
    };
    let (rtt_pub, rtt_sub) = pair("rtt", 1, true, ECHO)?;
    let (stream_pub, stream_sub) = pair("stream", STREAM_BUFFER, false, MIB)?;
    Ok(Iceoryx { rtt_pub, rtt_sub, stream_pub, stream_sub, next: None, stream_last: false, _node: node })
}

impl Link for Iceoryx {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if data.len() != ECHO {
            let sample = self.stream_pub.loan_slice_uninit(data.len()).map_err(err)?;
            sample.write_from_slice(data).send().map_err(err)?;
            return Ok(());
        }
        let sample = match self.next.take() {
            Some(s) => s,
            None => self.rtt_pub.loan_slice_uninit(ECHO).map_err(err)?,
        };
        sample.write_from_slice(data).send().map_err(err)?;
        // Loan the next one now, before the caller waits for the answer.
        self.next = Some(self.rtt_pub.loan_slice_uninit(ECHO).map_err(err)?);
        Ok(())
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        self.recv_view(&mut Vec::new(), &mut |m| {
            buf.clear();
            buf.extend_from_slice(m);
        })
    }
    fn recv_view(&mut self, _: &mut Vec<u8>, look: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        // Poll first where the last message came from: in a phase, every
        // message comes the same way, so the other look is off the path.
        loop {
            for _ in 0..2 {
                let sub = if self.stream_last { &self.stream_sub } else { &self.rtt_sub };
                if let Some(sample) = sub.receive().map_err(err)? {
                    look(sample.payload());
                    return Ok(());
                }
                self.stream_last = !self.stream_last;
            }
            std::hint::spin_loop();
        }
    }
}

/// `peer/iceoryx2`.
pub fn iceoryx2(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let base = format!("conduit-bench/{}", std::process::id());
    let mut link = iceoryx(&base, true)?;
    let peer = spawn_peer("peer/iceoryx2", &[base])?;
    let m = peer.wait_ready().and_then(|()| driver::measure("peer/iceoryx2", &mut link, plan, tick));
    peer.finish(m)
}

/// The peer of `peer/iceoryx2`.
pub fn iceoryx2_peer(p: &Peer) -> io::Result<()> {
    let mut link = iceoryx(p.arg(0)?, false)?;
    p.ready()?;
    driver::serve(&mut link)
}

// -------------------------------------------------------- ipc-channel

/// A pair of ipc-channel byte channels.
pub struct IpcBytes {
    tx: IpcBytesSender,
    rx: IpcBytesReceiver,
}

impl Link for IpcBytes {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.tx.send(data).map_err(err)
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        *buf = self.rx.recv().map_err(err)?;
        Ok(())
    }
}

/// `peer/ipc-channel`.
pub fn ipc_channel(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let (server, name) = IpcOneShotServer::<(IpcBytesSender, IpcBytesReceiver)>::new()?;
    let peer = spawn_peer("peer/ipc-channel", &[name])?;
    let m = server.accept().map_err(err).and_then(|(_, (tx, rx))| {
        let mut link = IpcBytes { tx, rx };
        driver::measure("peer/ipc-channel", &mut link, plan, tick)
    });
    peer.finish(m)
}

/// The peer of `peer/ipc-channel`.
pub fn ipc_channel_peer(p: &Peer) -> io::Result<()> {
    let (to_peer_tx, to_peer_rx) = ipc_channel::ipc::bytes_channel()?;
    let (to_driver_tx, to_driver_rx) = ipc_channel::ipc::bytes_channel()?;
    let boot = IpcSender::<(IpcBytesSender, IpcBytesReceiver)>::connect(p.arg(0)?.to_string())?;
    boot.send((to_peer_tx, to_driver_rx)).map_err(err)?;
    driver::serve(&mut IpcBytes { tx: to_driver_tx, rx: to_peer_rx })
}

// --------------------------------------------------------------- D-Bus

/// D-Bus through a real `dbus-daemon` started for the run: every message a
/// method call (no reply expected) routed by the daemon, via zbus.
pub struct Dbus {
    rt: tokio::runtime::Runtime,
    conn: zbus::Connection,
    stream: zbus::MessageStream,
    to: &'static str,
}

const DRIVER: &str = "org.conduit.BenchDriver";
const PEER: &str = "org.conduit.BenchPeer";

fn dbus(address: &str, me: &'static str, to: &'static str) -> io::Result<Dbus> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let conn = rt.block_on(async {
        let conn = zbus::connection::Builder::address(address).map_err(err)?.build().await.map_err(err)?;
        conn.request_name(me).await.map_err(err)?;
        Ok::<_, io::Error>(conn)
    })?;
    let stream = zbus::MessageStream::from(&conn);
    Ok(Dbus { rt, conn, stream, to })
}

impl Link for Dbus {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let msg = zbus::Message::method_call("/org/conduit/bench", "Msg")
            .and_then(|b| b.destination(self.to))
            .and_then(|b| b.interface("org.conduit.Bench"))
            .and_then(|b| b.with_flags(zbus::message::Flags::NoReplyExpected))
            .and_then(|b| b.build(&data))
            .map_err(err)?;
        self.rt.block_on(self.conn.send(&msg)).map_err(err)
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        use futures_lite::StreamExt;
        loop {
            let msg = self.rt.block_on(self.stream.next()).ok_or_else(|| err("bus closed"))?.map_err(err)?;
            if msg.header().member().is_some_and(|m| m.as_str() == "Msg") {
                *buf = msg.body().deserialize::<Vec<u8>>().map_err(err)?;
                return Ok(());
            }
        }
    }
}

/// A `dbus-daemon` for the run, on a private socket; killed on drop.
struct BusDaemon {
    child: std::process::Child,
    dir: std::path::PathBuf,
    address: String,
}

impl BusDaemon {
    fn start() -> io::Result<BusDaemon> {
        use std::io::BufRead;
        let dir = std::env::temp_dir().join(format!("conduit-bench-{}-dbus", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut child = std::process::Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address"])
            .arg(format!("--address=unix:path={}", dir.join("bus").display()))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("dbus-daemon: {e} (install the dbus-daemon package)")))?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let address = line.trim().to_string();
        if address.is_empty() {
            let _ = child.kill();
            return Err(err("dbus-daemon printed no address"));
        }
        Ok(BusDaemon { child, dir, address })
    }
}

impl Drop for BusDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `peer/dbus`.
pub fn dbus_case(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let bus = BusDaemon::start()?;
    let mut link = dbus(&bus.address, DRIVER, PEER)?;
    let peer = spawn_peer("peer/dbus", std::slice::from_ref(&bus.address))?;
    let m = peer.wait_ready().and_then(|()| driver::measure("peer/dbus", &mut link, plan, tick));
    peer.finish(m)
}

/// The peer of `peer/dbus`.
pub fn dbus_peer(p: &Peer) -> io::Result<()> {
    let mut link = dbus(p.arg(0)?, PEER, DRIVER)?;
    p.ready()?;
    driver::serve(&mut link)
}
