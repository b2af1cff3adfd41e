//! The broker's case: system-owned mailboxes (bounded, the default: kept
//! in shared memory, opened through the broker once, then used directly),
//! compared with the kernel's own mailbox (`floor/posix-mq`).

use std::io;
use std::path::PathBuf;

use conduit_broker::{Client, Config, MailboxOptions, OnFull, Server, WaitFor};

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
}

impl Link for Mailboxes {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.client.send(self.out, 1, data, OnFull::Block).map(|_| ()).map_err(err)
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        // Bounded: a peer that died must fail the case, not hang it.
        *buf = self.client.recv(self.inn, 0, WaitFor::Millis(30_000)).map_err(err)?.data;
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
        let mut link = Mailboxes { client, out: "down", inn: "up" };
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
    driver::serve(&mut Mailboxes { client, out: "up", inn: "down" })
}
