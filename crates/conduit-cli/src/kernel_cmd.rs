//! `conduit send` / `conduit recv` to the kernel's objects: System V
//! message queues (`sysv:ID`, `sysv-key:PATH:PROJ` — the `ftok` pair),
//! with `--type` as the `mtype` (send) or the `msgrcv` selector (receive);
//! POSIX message queues (`mq:/NAME`), with `--type` as the priority (send;
//! a receive takes the highest first, its priority on stderr); named pipes
//! (`fifo:PATH`): the bytes as they are, as `echo > fifo` and `cat fifo`
//! would. And `conduit signal PID SIG [--value N]`.
//!
//! Exit codes as for mailboxes: 3 empty, 4 full, 5 timeout, 6 denied,
//! 7 not found (a FIFO: also no reader, for `--nowait`), 11 too large.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use conduit::kernel::{IpcError, MessageQueue, PosixQueue, Select, ftok};

/// True if `target` names a kernel object (System V or POSIX queue, FIFO).
pub fn is_kernel(target: &str) -> bool {
    ["sysv:", "sysv-key:", "mq:", "fifo:"].iter().any(|p| target.starts_with(p))
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

/// `conduit send sysv:…|mq:…|fifo:… DATA` (`mtype`: the type or
/// priority; `None`: 1 for System V, 0 for POSIX).
pub fn send(target: &str, mtype: Option<i64>, data: &[u8], nowait: bool, timeout: Option<u64>) -> ExitCode {
    if let Some(name) = target.strip_prefix("mq:") {
        return mq_send(target, name, mtype.unwrap_or(0), data, nowait, timeout);
    }
    if let Some(path) = target.strip_prefix("fifo:") {
        return fifo_send(path, data, nowait, timeout);
    }
    let mtype = mtype.unwrap_or(1);
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
    if let Some(name) = target.strip_prefix("mq:") {
        if select != 0 {
            eprintln!("conduit: a POSIX queue gives the highest priority first; --type cannot select");
            return ExitCode::from(2);
        }
        return mq_recv(target, name, nowait, timeout);
    }
    if let Some(path) = target.strip_prefix("fifo:") {
        return fifo_recv(path, nowait, timeout);
    }
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

fn write_out(data: &[u8]) -> ExitCode {
    let mut out = std::io::stdout();
    match out.write_all(data).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conduit: standard output: {e}");
            ExitCode::FAILURE
        }
    }
}

fn mq_send(target: &str, name: &str, priority: i64, data: &[u8], nowait: bool, timeout: Option<u64>) -> ExitCode {
    let Ok(priority) = u32::try_from(priority) else {
        eprintln!("conduit: a POSIX priority is 0 or more");
        return ExitCode::from(2);
    };
    let q = match PosixQueue::open(name) {
        Ok(q) => q,
        Err(e) => return fail(target, e),
    };
    let sent = match (nowait, timeout) {
        (true, _) => q.try_send(priority, data),
        (_, Some(ms)) => q.send_timeout(priority, data, Duration::from_millis(ms)),
        _ => q.send(priority, data),
    };
    match sent {
        Ok(()) => ExitCode::SUCCESS,
        Err(IpcError::Full) if timeout.is_some() => timed_out(),
        Err(e) => fail(target, e),
    }
}

fn mq_recv(target: &str, name: &str, nowait: bool, timeout: Option<u64>) -> ExitCode {
    let q = match PosixQueue::open(name) {
        Ok(q) => q,
        Err(e) => return fail(target, e),
    };
    let got = match (nowait, timeout) {
        (true, _) => q.try_recv(),
        (_, Some(ms)) => q.recv_timeout(Duration::from_millis(ms)),
        _ => q.recv(),
    };
    match got {
        Ok((priority, data)) => {
            eprintln!("priority {priority}");
            write_out(&data)
        }
        Err(IpcError::Empty) if timeout.is_some() => timed_out(),
        Err(e) => fail(target, e),
    }
}

fn fifo_error(path: &str, e: &std::io::Error) -> ExitCode {
    if e.raw_os_error() == Some(libc::ENXIO) {
        eprintln!("conduit: fifo:{path}: no process has it open for reading");
    } else {
        eprintln!("conduit: fifo:{path}: {e}");
    }
    ExitCode::from(match e.raw_os_error() {
        Some(libc::ENOENT) => 7,
        Some(libc::ENXIO) => 7,
        Some(libc::EACCES | libc::EPERM) => 6,
        _ => 1,
    })
}

/// Open `path` as a FIFO (refusing anything else), non-blocking.
fn fifo_open(path: &str, write: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let not_fifo = || std::io::Error::other("not a FIFO (make one with mkfifo)");
    if !std::fs::metadata(path)?.file_type().is_fifo() {
        return Err(not_fifo());
    }
    let f = std::fs::OpenOptions::new().read(!write).write(write).custom_flags(libc::O_NONBLOCK).open(path)?;
    if !f.metadata()?.file_type().is_fifo() {
        return Err(not_fifo());
    }
    Ok(f)
}

/// Back to blocking I/O on `f`.
fn blocking(f: &std::fs::File) -> std::io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(f)?;
    Ok(rustix::fs::fcntl_setfl(f, flags - rustix::fs::OFlags::NONBLOCK)?)
}

/// `conduit send fifo:PATH DATA`: write the bytes (whole and atomic up to
/// `PIPE_BUF`, 4 KiB). Waits for a reader to open the FIFO (`--nowait`:
/// exit 7 if none; `--timeout`: exit 5).
fn fifo_send(path: &str, data: &[u8], nowait: bool, timeout: Option<u64>) -> ExitCode {
    let until = timeout.map(|ms| Instant::now() + Duration::from_millis(ms));
    let f = loop {
        match fifo_open(path, true) {
            Ok(f) => break f,
            // No reader yet: the kernel offers no wait for one.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && !nowait => {
                if until.is_some_and(|t| Instant::now() >= t) {
                    return timed_out();
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return fifo_error(path, &e),
        }
    };
    match blocking(&f).and_then(|()| (&f).write_all(data)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fifo_error(path, &e),
    }
}

/// `conduit recv fifo:PATH`: print what the writers write, until the last
/// one closes (`--nowait`: what is there now, exit 3 if nothing;
/// `--timeout`: exit 5 if nothing came in time).
fn fifo_recv(path: &str, nowait: bool, timeout: Option<u64>) -> ExitCode {
    use std::io::Read;
    let mut f = match fifo_open(path, false) {
        Ok(f) => f,
        Err(e) => return fifo_error(path, &e),
    };
    let mut data = Vec::new();
    if nowait {
        let mut buf = [0u8; 65536];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return fifo_error(path, &e),
            }
        }
        if data.is_empty() {
            eprintln!("conduit: fifo:{path}: empty");
            return ExitCode::from(3);
        }
        return write_out(&data);
    }
    // Wait for the first bytes (a writer that opens and writes).
    let wait = timeout.map(|ms| rustix::event::Timespec::try_from(Duration::from_millis(ms)).unwrap_or_default());
    let n = loop {
        let mut fds = [rustix::event::PollFd::new(&f, rustix::event::PollFlags::IN)];
        match rustix::event::poll(&mut fds, wait.as_ref()) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return fifo_error(path, &e.into()),
            Ok(n) => break n,
        }
    };
    if n == 0 {
        return timed_out();
    }
    if let Err(e) = blocking(&f).and_then(|()| f.read_to_end(&mut data).map(drop)) {
        return fifo_error(path, &e);
    }
    write_out(&data)
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
