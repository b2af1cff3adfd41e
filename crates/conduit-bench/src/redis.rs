//! `peer/redis` and `peer/redis-aof`: Redis lists as mailboxes, the tool
//! people reach for instead of a durable local mailbox. A `redis-server`
//! is started for the case on a Unix socket in a directory of its own (no
//! TCP port, no snapshots); `peer/redis-aof` runs it with `appendonly
//! yes` and `appendfsync always`: an `fsync` of the append-only file
//! before each reply, as a durable mailbox commits before it answers.
//!
//! The client speaks RESP itself, one command and its reply at a time
//! (like `redis-benchmark -P 1`): `LPUSH` to send, `BRPOP` to receive.
//! Unlike `conduit/mailbox-durable`, it does not pipeline sends: one
//! client's pushes wait for their replies one by one, as the issue's
//! `redis-benchmark -c 1 -P 1` figures do.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::broker_cases::{SendOne, sixteen_senders};
use crate::driver::{self, Link, Measurement, Plan};
use crate::peer::{Peer, spawn_peer};

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// A connection to a `redis-server`.
pub struct Redis {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    out: &'static str,
    inn: &'static str,
    line: Vec<u8>,
}

impl Redis {
    fn connect(socket: &Path, out: &'static str, inn: &'static str) -> io::Result<Redis> {
        let writer = UnixStream::connect(socket)?;
        let reader = BufReader::new(writer.try_clone()?);
        Ok(Redis { reader, writer, out, inn, line: Vec::new() })
    }

    /// Send one command (its arguments as RESP bulk strings).
    fn command(&mut self, args: &[&[u8]]) -> io::Result<()> {
        let mut req = Vec::with_capacity(64 + args.iter().map(|a| a.len() + 16).sum::<usize>());
        write!(req, "*{}\r\n", args.len())?;
        for a in args {
            write!(req, "${}\r\n", a.len())?;
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&req)
    }

    /// One reply line, without its `\r\n`.
    fn read_line(&mut self) -> io::Result<&[u8]> {
        self.line.clear();
        self.reader.read_until(b'\n', &mut self.line)?;
        if !self.line.ends_with(b"\r\n") {
            return Err(err("redis: the connection ended mid-reply"));
        }
        let n = self.line.len() - 2;
        Ok(&self.line[..n])
    }

    fn number(line: &[u8]) -> io::Result<i64> {
        std::str::from_utf8(line).ok().and_then(|s| s.parse().ok()).ok_or_else(|| err("redis: a bad number"))
    }

    /// A reply's header: its kind byte and the rest of its line.
    fn header(&mut self) -> io::Result<(u8, i64)> {
        let line = self.read_line()?;
        match line.split_first() {
            Some((b'-', why)) => Err(err(format!("redis: {}", String::from_utf8_lossy(why)))),
            Some((&kind @ (b':' | b'$' | b'*'), n)) => Ok((kind, Self::number(n)?)),
            Some((b'+', _)) => Ok((b'+', 0)),
            _ => Err(err("redis: a reply of an unknown kind")),
        }
    }

    /// A bulk string's bytes into `buf`.
    fn bulk(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        let (kind, n) = self.header()?;
        if kind != b'$' || n < 0 {
            return Err(err("redis: expected a bulk string"));
        }
        buf.resize(n as usize + 2, 0);
        self.reader.read_exact(buf)?;
        buf.truncate(n as usize);
        Ok(())
    }

    fn push(&mut self, list: &str, data: &[u8]) -> io::Result<()> {
        self.command(&[b"LPUSH", list.as_bytes(), data])?;
        match self.header()? {
            (b':', _) => Ok(()),
            _ => Err(err("redis: LPUSH answered something else")),
        }
    }
}

impl Link for Redis {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.push(self.out, data)
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        // Waits at most 30 s: a peer that died fails the case.
        self.command(&[b"BRPOP", self.inn.as_bytes(), b"30"])?;
        match self.header()? {
            (b'*', 2) => {}
            _ => return Err(err("redis: BRPOP timed out or answered something else")),
        }
        let mut key = Vec::new();
        self.bulk(&mut key)?;
        self.bulk(buf)
    }
}

/// A `redis-server` for one case; killed (and its directory removed) on
/// drop.
struct Server {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl Server {
    fn start(aof: bool) -> io::Result<Server> {
        let dir = std::env::temp_dir().join(format!("conduit-bench-{}-redis", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("redis.sock");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", "0", "--save", "", "--daemonize", "no", "--unixsocketperm", "700"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(&dir)
            .args(if aof {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "no"]
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("redis-server: {e} (install the redis-server package)")))?;
        let server = Server { child, dir, socket };
        // Ready when it answers PING.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut r) = Redis::connect(&server.socket, "", "")
                && r.command(&[b"PING"]).is_ok()
                && r.header().is_ok()
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(err("redis-server did not answer within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn case(name: &'static str, aof: bool, plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let server = Server::start(aof)?;
    let mut link = Redis::connect(&server.socket, "down", "up")?;
    let peer = spawn_peer(name, &[server.socket.display().to_string()])?;
    let m = driver::measure(name, &mut link, plan, tick);
    let mut m = peer.finish(m)?;
    let socket = server.socket.clone();
    m.msgs_per_s_64b_16 = Some(sixteen_senders(plan, move || {
        let mut r = Redis::connect(&socket, "many", "")?;
        let send: SendOne = Box::new(move |data: &[u8]| r.push("many", data));
        Ok(send)
    })?);
    Ok(m)
}

/// `peer/redis`: in memory.
pub fn redis(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    case("peer/redis", false, plan, tick)
}

/// `peer/redis-aof`: `appendfsync always`.
pub fn redis_aof(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    case("peer/redis-aof", true, plan, tick)
}

/// The peer of both.
pub fn redis_peer(p: &Peer) -> io::Result<()> {
    driver::serve(&mut Redis::connect(Path::new(p.arg(0)?), "up", "down")?)
}
