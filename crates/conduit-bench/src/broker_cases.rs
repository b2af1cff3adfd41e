//! The broker's cases: system-owned mailboxes — bounded (the default: kept
//! in shared memory, opened through the broker once, then used directly),
//! compared with the kernel's own mailbox (`floor/posix-mq`); unbounded
//! and durable (every send and receive a request to the broker), compared
//! with Redis lists (`peer/redis`, `peer/redis-aof`).

use std::io;
use std::path::PathBuf;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use conduit_broker::{Capacity, Client, Config, MailboxOptions, OnFull, SEND_WINDOW, Server, WaitFor};

use crate::driver::{self, Link, Measurement, Plan};
use crate::peer::{Peer, spawn_peer};

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Two mailboxes, one each way, through the broker.
pub struct Mailboxes {
    client: Client,
    out: &'static str,
    inn: &'static str,
    /// Sends not yet made: with `pipelined`, sends go out in batches of
    /// [`SEND_WINDOW`] in flight ([`Client::send_batch`]), each answered
    /// (for a durable mailbox: on disk) before the link receives; and
    /// receives take what is there, up to 64 at once, acknowledged
    /// together ([`Client::recv_batch`]).
    pending: Vec<Vec<u8>>,
    pipelined: bool,
    /// Received, acknowledged, not yet looked at.
    inbox: std::collections::VecDeque<Vec<u8>>,
}

impl Mailboxes {
    fn new(client: Client, out: &'static str, inn: &'static str, pipelined: bool) -> Mailboxes {
        Mailboxes { client, out, inn, pending: Vec::new(), pipelined, inbox: Default::default() }
    }
}

impl Link for Mailboxes {
    fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let sent = self.client.send_batch(self.out, 1, self.pending.iter().map(Vec::as_slice), OnFull::Block);
        self.pending.clear();
        sent.map_err(err)?.into_iter().try_for_each(|r| r.map(|_| ()).map_err(err))
    }
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if !self.pipelined {
            return self.client.send(self.out, 1, data, OnFull::Block).map(|_| ()).map_err(err);
        }
        self.pending.push(data.to_vec());
        if self.pending.len() >= SEND_WINDOW {
            self.flush()?;
        }
        Ok(())
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        self.flush()?;
        // Bounded: a peer that died must fail the case, not hang it.
        let wait = WaitFor::Millis(30_000);
        if !self.pipelined {
            *buf = self.client.recv(self.inn, 0, wait).map_err(err)?.data;
            return Ok(());
        }
        if self.inbox.is_empty() {
            self.inbox.extend(self.client.recv_batch(self.inn, 0, 64, wait).map_err(err)?.into_iter().map(|m| m.data));
        }
        *buf = self.inbox.pop_front().expect("a batch has a message");
        Ok(())
    }
    fn max_message(&self) -> usize {
        // A default mailbox (64 messages) takes up to 128 KiB a message.
        64 << 10
    }
}

/// `conduit/mailbox`: a broker (in this process, on its own socket) and
/// two mailboxes.
pub fn mailbox(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let dir = std::env::temp_dir().join(format!("conduit-bench-{}-broker", std::process::id()));
    let socket = dir.join("broker.sock");
    let mut config = Config::at(socket.clone());
    config.data_dir = None;
    let server = Server::bind(&config)?.ok_or_else(|| err("a broker already runs there"))?;
    let stopper = server.stopper();
    let running = std::thread::spawn(move || server.run());
    let result = (|| {
        let client = Client::connect_to(&socket).map_err(err)?;
        client.create_mailbox("down", MailboxOptions::default()).map_err(err)?;
        client.create_mailbox("up", MailboxOptions::default()).map_err(err)?;
        let peer = spawn_peer("conduit/mailbox", &[socket.display().to_string()])?;
        let mut link = Mailboxes::new(client, "down", "up", false);
        let m = driver::measure("conduit/mailbox", &mut link, plan, tick);
        peer.finish(m)
    })();
    stopper.stop();
    let _ = running.join();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The peer of `conduit/mailbox`.
pub fn mailbox_peer(p: &Peer) -> io::Result<()> {
    let client = Client::connect_to(&PathBuf::from(p.arg(0)?)).map_err(err)?;
    driver::serve(&mut Mailboxes::new(client, "up", "down", false))
}

/// A broker in this process on its own socket (and data directory), for
/// one case; stopped and removed on drop.
struct Broker {
    dir: std::path::PathBuf,
    socket: std::path::PathBuf,
    stopper: conduit_broker::Stopper,
    running: Option<std::thread::JoinHandle<()>>,
}

impl Broker {
    fn start(tag: &str) -> io::Result<Broker> {
        let dir = std::env::temp_dir().join(format!("conduit-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let socket = dir.join("broker.sock");
        let mut config = Config::at(socket.clone());
        config.data_dir = Some(dir.join("data"));
        let server = Server::bind(&config)?.ok_or_else(|| err("a broker already runs there"))?;
        let stopper = server.stopper();
        let running = Some(std::thread::spawn(move || server.run()));
        Ok(Broker { dir, socket, stopper, running })
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(r) = self.running.take() {
            let _ = r.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Options of the mailboxes of `conduit/mailbox-durable` and
/// `conduit/mailbox-unbounded`.
fn brokered_options(durable: bool) -> MailboxOptions {
    MailboxOptions { capacity: Capacity::Unbounded, durable, ..MailboxOptions::default() }
}

/// `conduit/mailbox-durable` and `conduit/mailbox-unbounded`: unbounded
/// mailboxes kept by the broker (durable: in redb, committed in groups),
/// sends pipelined ([`SEND_WINDOW`] in flight), receives in batches of
/// what is there (up to 64; durable: their acknowledgement confirmed on
/// disk together). Then
/// `msgs_per_s_64b_16`: sixteen clients (threads, a connection each) send
/// 64-byte messages one at a time, each waiting for its answer.
fn brokered(name: &'static str, durable: bool, plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let broker = Broker::start(if durable { "durable" } else { "unbounded" })?;
    let client = Client::connect_to(&broker.socket).map_err(err)?;
    for mb in ["down", "up", "many"] {
        client.create_mailbox(mb, brokered_options(durable)).map_err(err)?;
    }
    let peer = spawn_peer(name, &[broker.socket.display().to_string()])?;
    let mut link = Mailboxes::new(client, "down", "up", true);
    let m = driver::measure(name, &mut link, plan, tick);
    let mut m = peer.finish(m)?;
    let socket = broker.socket.clone();
    m.msgs_per_s_64b_16 = Some(sixteen_senders(plan, move || {
        let c = Client::connect_to(&socket).map_err(err)?;
        Ok(Box::new(move |data: &[u8]| c.send("many", 1, data, OnFull::Block).map(|_| ()).map_err(err)))
    })?);
    Ok(m)
}

/// `conduit/mailbox-durable`.
pub fn mailbox_durable(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    brokered("conduit/mailbox-durable", true, plan, tick)
}

/// `conduit/mailbox-unbounded`.
pub fn mailbox_unbounded(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    brokered("conduit/mailbox-unbounded", false, plan, tick)
}

/// The peer of `conduit/mailbox-durable` and `conduit/mailbox-unbounded`.
pub fn brokered_peer(p: &Peer) -> io::Result<()> {
    let client = Client::connect_to(&PathBuf::from(p.arg(0)?)).map_err(err)?;
    driver::serve(&mut Mailboxes::new(client, "up", "down", true))
}

/// A sender of 64-byte messages, one per call, answered before it returns.
pub type SendOne = Box<dyn FnMut(&[u8]) -> io::Result<()> + Send>;

/// Sixteen senders (threads, a connection each, made by `connect`) send
/// 64-byte messages, one at a time, for the plan's budget (at least
/// 300 ms): messages per second, all together.
pub fn sixteen_senders(
    plan: Plan,
    connect: impl Fn() -> io::Result<SendOne> + Send + Sync + 'static,
) -> io::Result<f64> {
    const SENDERS: usize = 16;
    let run = plan.budget.max(Duration::from_millis(300));
    let start = Arc::new(Barrier::new(SENDERS + 1));
    let connect = Arc::new(connect);
    let threads: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (start, connect) = (Arc::clone(&start), Arc::clone(&connect));
            std::thread::spawn(move || -> io::Result<(u64, Instant)> {
                let sender = connect();
                start.wait();
                let mut sender = sender?;
                let began = Instant::now();
                let data = [7u8; 64];
                let mut sent = 0;
                while began.elapsed() < run {
                    sender(&data)?;
                    sent += 1;
                }
                Ok((sent, Instant::now()))
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let mut total = 0;
    let mut last = began;
    for t in threads {
        let (sent, ended) = t.join().map_err(|_| err("a sender thread panicked"))??;
        total += sent;
        last = last.max(ended);
    }
    Ok(total as f64 / last.duration_since(began).as_secs_f64())
}
