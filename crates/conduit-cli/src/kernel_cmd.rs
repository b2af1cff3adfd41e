//! `conduit send` / `conduit recv` to the kernel's System V message queues
//! (`sysv:ID`, `sysv-key:PATH:PROJ` — the `ftok` pair), with `--type` as
//! the `mtype` (send) or the `msgrcv` selector (receive); and
//! `conduit signal PID SIG [--value N]`.
//!
//! Exit codes as for mailboxes: 3 empty, 4 full, 5 timeout, 6 denied,
//! 7 not found, 11 too large.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use conduit::kernel::{IpcError, MessageQueue, Select, ftok};

/// True if `target` names a System V queue.
pub fn is_kernel(target: &str) -> bool {
    target.starts_with("sysv:") || target.starts_with("sysv-key:")
}

fn code(e: &IpcError) -> u8 {
    match e {
        IpcError::Empty => 3,
        IpcError::Full => 4,
        IpcError::Denied => 6,
        IpcError::NotFound | IpcError::Removed => 7,
        IpcError::TooLarge { .. } => 11,
        _ => 1,
    }
}

fn fail(target: &str, e: IpcError) -> ExitCode {
    eprintln!("conduit: {target}: {e}");
    ExitCode::from(code(&e))
}

fn queue(target: &str) -> Result<MessageQueue, IpcError> {
    if let Some(id) = target.strip_prefix("sysv:") {
        let id = id.parse().map_err(|_| IpcError::NotFound)?;
        return MessageQueue::from_id(id);
    }
    let spec = target.strip_prefix("sysv-key:").unwrap_or(target);
    let (path, proj) = spec.rsplit_once(':').ok_or(IpcError::NotFound)?;
    // The project is one character (as C passes it) or a number.
    let proj = match proj.parse::<u8>() {
        Ok(n) => n,
        Err(_) if proj.len() == 1 => proj.as_bytes()[0],
        Err(_) => return Err(IpcError::NotFound),
    };
    MessageQueue::open(ftok(path, proj)?)
}

/// Without waiting, then again until `timeout` (System V has no timed
/// send or receive): `Err(None)` when the time ran out.
fn retry<T>(timeout: Duration, mut once: impl FnMut() -> Result<T, IpcError>) -> Result<T, Option<IpcError>> {
    let until = Instant::now() + timeout;
    loop {
        match once() {
            Err(IpcError::Empty | IpcError::Full) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(IpcError::Empty | IpcError::Full) => return Err(None),
            other => return other.map_err(Some),
        }
    }
}

fn timed_out() -> ExitCode {
    eprintln!("conduit: timed out");
    ExitCode::from(5)
}

/// `conduit send sysv:… DATA`.
pub fn send(target: &str, mtype: i64, data: &[u8], nowait: bool, timeout: Option<u64>) -> ExitCode {
    let q = match queue(target) {
        Ok(q) => q,
        Err(e) => return fail(target, e),
    };
    let sent = match (nowait, timeout) {
        (true, _) => q.try_send(mtype, data).map_err(Some),
        (_, Some(ms)) => retry(Duration::from_millis(ms), || q.try_send(mtype, data)),
        _ => q.send(mtype, data).map_err(Some),
    };
    match sent {
        Ok(()) => ExitCode::SUCCESS,
        Err(Some(e)) => fail(target, e),
        Err(None) => timed_out(),
    }
}

/// `conduit recv sysv:…`: the message `--type` selects, its text on
/// standard output (its type on standard error).
pub fn recv(target: &str, select: i64, nowait: bool, timeout: Option<u64>) -> ExitCode {
    let q = match queue(target) {
        Ok(q) => q,
        Err(e) => return fail(target, e),
    };
    let select = Select::from_msgtyp(select);
    let got = match (nowait, timeout) {
        (true, _) => q.try_recv(select).map_err(Some),
        (_, Some(ms)) => retry(Duration::from_millis(ms), || q.try_recv(select)),
        _ => q.recv(select).map_err(Some),
    };
    match got {
        Ok((mtype, text)) => {
            eprintln!("type {mtype}");
            let mut out = std::io::stdout();
            match out.write_all(&text).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("conduit: standard output: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(Some(e)) => fail(target, e),
        Err(None) => timed_out(),
    }
}

/// Options of `conduit signal`.
#[derive(Args, Debug)]
pub struct SignalArgs {
    /// The process.
    pid: u32,
    /// The signal: a name (`TERM`, `SIGUSR1`) or a number.
    signal: String,
    /// Send it with this value (`sigqueue`), which a conduit subscriber
    /// reads as `SignalInfo::value`.
    #[arg(long)]
    value: Option<i32>,
}

/// The number of a signal given by name or number.
fn signal_number(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    (1..=64).find(|&n| {
        signal_hook::low_level::signal_name(n).is_some_and(|full| full.strip_prefix("SIG").unwrap_or(full) == name)
    })
}

/// `conduit signal PID SIG [--value N]`.
pub fn signal(a: &SignalArgs) -> ExitCode {
    let Some(sig) = signal_number(&a.signal) else {
        eprintln!("conduit: no signal named {}", a.signal);
        return ExitCode::from(2);
    };
    let sent = match a.value {
        Some(v) => conduit::signal::queue(a.pid, sig, v),
        None => conduit::signal::send(a.pid, sig),
    };
    match sent {
        Ok(()) => ExitCode::SUCCESS,
        Err(conduit::Error::Io(e)) if e.raw_os_error() == Some(libc::ESRCH) => {
            eprintln!("conduit: no process {}", a.pid);
            ExitCode::from(7)
        }
        Err(conduit::Error::Io(e)) if e.raw_os_error() == Some(libc::EPERM) => {
            eprintln!("conduit: not allowed to signal process {}", a.pid);
            ExitCode::from(6)
        }
        Err(e) => {
            eprintln!("conduit: {e}");
            ExitCode::FAILURE
        }
    }
}
