//! `conduit send` / `conduit recv` to socket targets (`tcp:HOST:PORT`,
//! `udp:HOST:PORT`, `unix:PATH`), and `conduit listen ADDR`: a netcat that
//! speaks conduit's frames (a message is one `Bytes`/`String`) and, with
//! `--raw`, plain bytes and lines.
//!
//! Exit codes as for mailboxes: 0 done, 1 error (refused, unreachable,
//! bad frames), 2 usage, 5 timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use conduit::Bytes;
use conduit::net::{self, Conn, Listener, udp};

/// True if `target` names a socket rather than a mailbox.
pub fn is_socket(target: &str) -> bool {
    ["tcp:", "udp:", "unix:"].iter().any(|p| target.starts_with(p))
}

fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("conduit: {what}: {e}");
    ExitCode::FAILURE
}

fn timeout_code(e: &conduit::Error) -> ExitCode {
    match e {
        conduit::Error::Io(io)
            if matches!(io.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) =>
        {
            eprintln!("conduit: timed out");
            ExitCode::from(5)
        }
        other => fail("socket", other),
    }
}

/// `HOST:PORT` of a `udp:` target.
fn udp_addr(target: &str) -> &str {
    target.strip_prefix("udp:").unwrap_or(target)
}

fn out(bytes: &[u8], newline: bool) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(bytes)?;
    if newline && !bytes.ends_with(b"\n") {
        o.write_all(b"\n")?;
    }
    o.flush()
}

/// A plain stream, like `nc`: connect, write `data` (then say no more),
/// print what the server sends until it closes.
fn plain(target: &str, connect: Duration, read: Option<Duration>, data: Option<&[u8]>) -> ExitCode {
    let run = || -> Result<(), conduit::Error> {
        let mut s = net::connect_stream(target, connect)?;
        if let Some(data) = data {
            s.write_all(data)?;
            s.shutdown_write()?;
        }
        s.set_read_timeout(read)?;
        let mut all = Vec::new();
        s.read_to_end(&mut all)?;
        out(&all, false)?;
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => timeout_code(&e),
    }
}

/// `conduit send TARGET DATA` to a socket.
pub fn send(target: &str, data: &[u8], raw: bool, timeout: Option<u64>) -> ExitCode {
    let wait = Duration::from_millis(timeout.unwrap_or(10_000));
    if target.starts_with("udp:") {
        let to = udp_addr(target);
        let local = if to.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" };
        let sent = udp::Socket::bind(local).and_then(|s| {
            if raw {
                s.as_std().send_to(data, to)?;
                Ok(())
            } else {
                s.send_to(&Bytes(data.to_vec()), to)
            }
        });
        return match sent {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(target, e),
        };
    }
    if raw {
        // Like nc: the bytes, the end of our side, then whatever the
        // server answers until it closes.
        return plain(target, wait, Some(wait), Some(data));
    }
    let conn = match net::Connect::new(target).timeout(wait).open::<Bytes, Bytes>() {
        Ok(c) => c,
        Err(e) => return timeout_code(&e),
    };
    match conn.tx.send_timeout(Bytes(data.to_vec()), wait) {
        Ok(()) => {
            conn.tx.flush();
            ExitCode::SUCCESS
        }
        Err(e) => fail(target, e),
    }
}

/// `conduit recv TARGET`: one message from a server (TCP, Unix), or the
/// next datagram to a UDP address (bound here).
pub fn recv(target: &str, raw: bool, timeout: Option<u64>) -> ExitCode {
    let wait = timeout.map(Duration::from_millis);
    if target.starts_with("udp:") {
        let run = || -> Result<(), conduit::Error> {
            let s = udp::Socket::bind(udp_addr(target))?;
            if raw {
                let mut buf = vec![0u8; udp::MAX_DATAGRAM];
                s.as_std().set_read_timeout(wait)?;
                let (n, _) = s.as_std().recv_from(&mut buf)?;
                out(&buf[..n], false)?;
            } else {
                let (m, _) = match wait {
                    Some(w) => s.recv_from_timeout::<Bytes>(w)?,
                    None => s.recv_from::<Bytes>()?,
                };
                out(&m.0, false)?;
            }
            Ok(())
        };
        return match run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => timeout_code(&e),
        };
    }
    let connect_wait = wait.unwrap_or(Duration::from_secs(10));
    if raw {
        return plain(target, connect_wait, wait, None);
    }
    let conn = match net::Connect::new(target).timeout(connect_wait).open::<Bytes, Bytes>() {
        Ok(c) => c,
        Err(e) => return timeout_code(&e),
    };
    let got = match wait {
        Some(w) => conn.rx.recv_timeout(w).map_err(|e| e.to_string()),
        None => conn.rx.recv().map_err(|e| e.to_string()),
    };
    match got {
        Ok(m) => match out(&m.0, false) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("standard output", e),
        },
        Err(e) if e.contains("timed out") || e.contains("timeout") => {
            eprintln!("conduit: timed out");
            ExitCode::from(5)
        }
        Err(e) => fail(target, e),
    }
}

/// Options of `conduit listen`.
#[derive(Args, Debug)]
pub struct ListenArgs {
    /// Where: `tcp:HOST:PORT` (port 0: any), `unix:PATH`, `udp:HOST:PORT`.
    addr: String,
    /// Plain bytes: print lines (TCP, Unix) or datagrams (UDP) as they
    /// come, no conduit frames.
    #[arg(long)]
    raw: bool,
    /// Exit after this many messages (lines with `--raw`).
    #[arg(long)]
    count: Option<u64>,
}

/// Counts what was printed; stops the listener at the limit.
struct Tally {
    seen: Mutex<u64>,
    limit: Option<u64>,
    stop: Option<net::Stopper>,
}

impl Tally {
    /// Print one message; `false` once the limit is reached.
    fn print(&self, bytes: &[u8]) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if self.limit.is_some_and(|l| *seen >= l) {
            return false;
        }
        let _ = out(bytes, true);
        *seen += 1;
        if self.limit.is_some_and(|l| *seen >= l) {
            if let Some(s) = &self.stop {
                s.stop();
            }
            return false;
        }
        true
    }
}

/// `conduit listen ADDR`.
pub fn listen(a: &ListenArgs) -> ExitCode {
    if !is_socket(&a.addr) {
        eprintln!("conduit: listen needs tcp:HOST:PORT, unix:PATH or udp:HOST:PORT");
        return ExitCode::from(2);
    }
    if a.addr.starts_with("udp:") {
        return listen_udp(a);
    }
    let listener = match Listener::bind(a.addr.as_str()) {
        Ok(l) => l,
        Err(e) => return fail(&a.addr, e),
    };
    // Standard output is for what arrives; the address goes to stderr.
    eprintln!("listening on {}", listener.local_addr());
    let tally = Arc::new(Tally { seen: Mutex::new(0), limit: a.count, stop: Some(listener.stopper()) });
    let served = if a.raw {
        // A thread per connection, printing whole lines.
        let mut threads = Vec::new();
        loop {
            match listener.accept_stream() {
                Ok((s, _peer)) => {
                    let t = Arc::clone(&tally);
                    threads.push(std::thread::spawn(move || {
                        let mut r = BufReader::new(s);
                        let mut line = Vec::new();
                        while r.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                            if !t.print(line.strip_suffix(b"\n").unwrap_or(&line)) {
                                return;
                            }
                            line.clear();
                        }
                    }));
                }
                Err(conduit::Error::Shutdown) => break Ok(()),
                Err(e) => break Err(e),
            }
        }
    } else {
        let t = Arc::clone(&tally);
        net::serve_threads(&listener, move |c: Conn<Bytes, Bytes>| {
            for m in c.rx.iter() {
                if !t.print(&m.0) {
                    return;
                }
            }
        })
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&a.addr, e),
    }
}

fn listen_udp(a: &ListenArgs) -> ExitCode {
    let s = match udp::Socket::bind(udp_addr(&a.addr)) {
        Ok(s) => s,
        Err(e) => return fail(&a.addr, e),
    };
    match s.local_addr() {
        Ok(addr) => eprintln!("listening on udp:{addr}"),
        Err(e) => return fail(&a.addr, e),
    }
    let tally = Tally { seen: Mutex::new(0), limit: a.count, stop: None };
    let mut buf = vec![0u8; udp::MAX_DATAGRAM];
    loop {
        let msg = if a.raw {
            match s.as_std().recv_from(&mut buf) {
                Ok((n, _)) => buf[..n].to_vec(),
                Err(e) => return fail(&a.addr, e),
            }
        } else {
            match s.recv_from::<Bytes>() {
                Ok((m, _)) => m.0,
                Err(e) => return fail(&a.addr, e),
            }
        };
        if !tally.print(&msg) {
            return ExitCode::SUCCESS;
        }
    }
}
