//! `conduit daemon`, `mailbox create`, `send`, `recv`, `ls`, `rm`.
//!
//! Exit codes (stable, for scripts): 0 done; 1 other error; 2 usage;
//! 3 empty; 4 full; 5 timeout; 6 permission denied; 7 not found;
//! 8 quota exceeded; 9 busy (exclusive mailbox held); 10 exists;
//! 11 message too large.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use conduit_broker::{
    BrokerError, Capacity, Client, ClientError, Config, Limits, MailboxOptions, OnFull, Policy, Server, WaitFor,
};
use serde::Serialize;

fn code(e: &ClientError) -> u8 {
    match e {
        ClientError::Broker(b) => match b {
            BrokerError::Empty => 3,
            BrokerError::Full => 4,
            BrokerError::Timeout => 5,
            BrokerError::Denied(_) => 6,
            BrokerError::NotFound(_) => 7,
            BrokerError::Quota(_) => 8,
            BrokerError::Busy => 9,
            BrokerError::Exists(_) => 10,
            BrokerError::Invalid(_) => 1,
            BrokerError::TooLarge { .. } => 11,
            BrokerError::Unreachable(_) => 12,
        },
        ClientError::NoBroker { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => 6,
        _ => 1,
    }
}

pub fn fail(e: ClientError) -> ExitCode {
    eprintln!("conduit: {e}");
    ExitCode::from(code(&e))
}

/// Options of `conduit daemon`.
#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// The socket (default: $CONDUIT_BROKER, $XDG_RUNTIME_DIR/conduit/broker.sock, /tmp/conduit-$UID/broker.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Where durable mailboxes are kept (default: `data` next to the socket).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Objects (mailboxes, names) one user may own.
    #[arg(long, default_value_t = Limits::default().max_objects)]
    max_objects: usize,
    /// Bytes one user's messages may occupy.
    #[arg(long, default_value_t = Limits::default().max_bytes)]
    max_bytes: u64,
    /// Connections one user may hold (root is not held to it).
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Connections the broker holds in all, root's included.
    #[arg(long, default_value_t = Limits::default().max_total_connections)]
    max_total_connections: usize,
    /// Make the socket's directory 0750 (for a group) instead of 0700.
    #[arg(long)]
    group: bool,
}

/// Run the broker until SIGTERM or SIGINT.
pub fn daemon(a: &DaemonArgs) -> ExitCode {
    let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).try_init();
    let socket = a.socket.clone().unwrap_or_else(conduit_broker::paths::socket_path);
    let mut config = Config::at(socket.clone());
    if let Some(d) = &a.data {
        config.data_dir = Some(d.clone());
    }
    config.limits = Limits {
        max_objects: a.max_objects,
        max_bytes: a.max_bytes,
        max_connections: a.max_connections,
        max_total_connections: a.max_total_connections,
        ..Limits::default()
    };
    if a.group {
        config.dir_mode = 0o750;
    }
    // About five descriptors per client: take what the hard limit allows.
    let fds = conduit_broker::raise_fd_limit();
    tracing::debug!(limit = fds, "open descriptors");
    let server = match Server::bind(&config) {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!("conduit: a broker is already running at {}", socket.display());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("conduit: cannot start the broker at {}: {e}", socket.display());
            return ExitCode::FAILURE;
        }
    };
    let stopper = server.stopper();
    match signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    tracing::info!(signal = sig, "stopping");
                    stopper.stop();
                }
            });
        }
        Err(e) => eprintln!("conduit: no signal handling: {e}"),
    }
    server.run();
    ExitCode::SUCCESS
}

/// Connect to the broker; if none runs, start `conduit daemon` in the
/// background (so a new user needs no set-up) and connect to it.
fn client() -> Result<Client, ClientError> {
    match Client::connect() {
        // Nobody listens (no socket, or a stale one): start a broker.
        Err(ClientError::NoBroker { source, .. })
            if matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {}
        // Anything else (a socket we may not open) a new broker cannot fix.
        other => return other,
    }
    if let Ok(exe) = std::env::current_exe() {
        use std::os::unix::process::CommandExt;
        let _ = std::process::Command::new(exe)
            .arg("daemon")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut pause = Duration::from_millis(1);
    loop {
        match Client::connect() {
            Err(ClientError::NoBroker { .. }) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PolicyArg {
    Exclusive,
    Any,
}

/// Options of `conduit mailbox create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The mailbox's name.
    name: String,
    /// How many messages it holds: a number (0 = a send waits for a receiver) or `unbounded`.
    /// Bounded mailboxes (n ≥ 1, not durable) keep their messages in shared memory.
    #[arg(long, default_value = "64")]
    capacity: String,
    /// Permission bits, octal (read = receive, write = send).
    #[arg(long, default_value = "0600")]
    mode: String,
    /// Who receives: one receiver at a time, or any (the broker picks).
    #[arg(long, value_enum, default_value = "any")]
    policy: PolicyArg,
    /// Keep it, and its messages, across broker crashes and restarts.
    #[arg(long)]
    durable: bool,
    /// The largest message it must take, in bytes (bounded mailboxes size their shared-memory
    /// queue for it; default: what the capacity gives, 131048 bytes for up to 64 messages).
    #[arg(long, default_value_t = 0)]
    max_message: u64,
}

pub fn create(a: &CreateArgs) -> ExitCode {
    let capacity = match a.capacity.as_str() {
        "unbounded" => Capacity::Unbounded,
        n => match n.parse() {
            Ok(n) => Capacity::Bounded(n),
            Err(_) => {
                eprintln!("conduit: --capacity takes a number or `unbounded`");
                return ExitCode::from(2);
            }
        },
    };
    let Ok(mode) = u32::from_str_radix(a.mode.trim_start_matches("0o"), 8) else {
        eprintln!("conduit: --mode takes octal permission bits, e.g. 0600");
        return ExitCode::from(2);
    };
    let policy = match a.policy {
        PolicyArg::Exclusive => Policy::Exclusive,
        PolicyArg::Any => Policy::Any,
    };
    let opts = MailboxOptions { capacity, policy, mode, durable: a.durable, max_message: a.max_message };
    match client().and_then(|c| c.create_mailbox(&a.name, opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// Options of `conduit send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// The mailbox, or a socket: `tcp:HOST:PORT`, `udp:HOST:PORT`,
    /// `unix:PATH` (one conduit message; `--raw`: plain bytes), or a kernel
    /// object: a System V queue `sysv:ID`, `sysv-key:PATH:PROJ` (`--type`
    /// is the `mtype`), a POSIX queue `mq:/NAME` (`--type` is the
    /// priority, default 0), a named pipe `fifo:PATH` (plain bytes).
    name: String,
    /// Socket targets: send the bytes as they are, no conduit frame (TCP
    /// and Unix: then print what the server answers until it closes).
    #[arg(long)]
    raw: bool,
    /// The message's type (System V `mtype`, ≥ 0; default 1), or a POSIX
    /// queue's priority (default 0).
    #[arg(long = "type")]
    mtype: Option<i64>,
    /// If the mailbox is full, fail at once (exit 4).
    #[arg(long, conflicts_with_all = ["timeout", "leave"])]
    nowait: bool,
    /// If the mailbox is full, wait at most this many milliseconds (exit 5).
    #[arg(long, conflicts_with = "leave")]
    timeout: Option<u64>,
    /// If the mailbox is full, leave the message with the broker.
    #[arg(long)]
    leave: bool,
    /// The message; `-` or nothing reads standard input.
    data: Option<String>,
}

pub fn send(a: &SendArgs) -> ExitCode {
    let data = match a.data.as_deref() {
        Some("-") | None => {
            let mut buf = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
                eprintln!("conduit: reading standard input: {e}");
                return ExitCode::FAILURE;
            }
            buf
        }
        Some(s) => s.as_bytes().to_vec(),
    };
    if crate::net_cmd::is_socket(&a.name) {
        return crate::net_cmd::send(&a.name, &data, a.raw, a.timeout);
    }
    if crate::kernel_cmd::is_kernel(&a.name) {
        return crate::kernel_cmd::send(&a.name, a.mtype, &data, a.nowait, a.timeout);
    }
    let mtype = a.mtype.unwrap_or(1);
    let full = match (a.nowait, a.timeout, a.leave) {
        (true, _, _) => OnFull::NoWait,
        (_, Some(ms), _) => OnFull::Timeout(ms),
        (_, _, true) => OnFull::Leave,
        _ => OnFull::Block,
    };
    match client().and_then(|c| c.send(&a.name, mtype, &data, full)) {
        Ok(sent) => {
            if let Some(pid) = sent.receiver {
                eprintln!("delivered to pid {pid}");
            } else if sent.deferred {
                eprintln!("left with the broker (the mailbox is full)");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Options of `conduit recv`.
#[derive(Args, Debug)]
pub struct RecvArgs {
    /// The mailbox, or a socket: `tcp:HOST:PORT` or `unix:PATH` (connect,
    /// print the first message), `udp:HOST:PORT` (bind, print the next
    /// datagram), or a kernel object: a System V queue `sysv:ID`,
    /// `sysv-key:PATH:PROJ` (`--type` selects as `msgrcv` does; the type
    /// goes to stderr), a POSIX queue `mq:/NAME` (the highest priority
    /// first; the priority goes to stderr), a named pipe `fifo:PATH` (what
    /// the writers write, until the last closes).
    name: String,
    /// Socket targets: plain bytes, no conduit frames (TCP and Unix: print
    /// everything until the server closes).
    #[arg(long)]
    raw: bool,
    /// Which message: 0 = the first, N > 0 = the first of type N, N < 0 =
    /// the first of the lowest type ≤ |N|.
    #[arg(long = "type", default_value_t = 0, allow_hyphen_values = true)]
    select: i64,
    /// If the mailbox is empty, fail at once (exit 3).
    #[arg(long, conflicts_with = "timeout")]
    nowait: bool,
    /// Wait at most this many milliseconds (exit 5).
    #[arg(long)]
    timeout: Option<u64>,
}

pub fn recv(a: &RecvArgs) -> ExitCode {
    if crate::net_cmd::is_socket(&a.name) {
        return crate::net_cmd::recv(&a.name, a.raw, a.timeout);
    }
    if crate::kernel_cmd::is_kernel(&a.name) {
        return crate::kernel_cmd::recv(&a.name, a.select, a.nowait, a.timeout);
    }
    let wait = match (a.nowait, a.timeout) {
        (true, _) => WaitFor::NoWait,
        (_, Some(ms)) => WaitFor::Millis(ms),
        _ => WaitFor::Forever,
    };
    let client = match client() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    // Held until it is on standard output: killed before that (or with
    // standard output gone), the message goes back to the mailbox.
    match client.recv_held(&a.name, a.select, wait) {
        Ok(d) => {
            let mut out = std::io::stdout();
            if let Err(e) = out.write_all(&d.message().data).and_then(|()| out.flush()) {
                eprintln!("conduit: cannot write the message ({e}); it stays in {}", a.name);
                return ExitCode::FAILURE;
            }
            match d.ack() {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Err(e) => fail(e),
    }
}

/// One object of `conduit ls`.
#[derive(Debug, Default, Serialize)]
pub struct Object {
    /// `conduit` or `kernel`.
    pub source: &'static str,
    /// `mailbox`, `segment`, `name`, `peer`, `sysv-msg`, `sysv-sem`, `sysv-shm`, `mqueue`, `posix-shm`.
    pub kind: String,
    /// Name or id.
    pub id: String,
    /// System V objects: the key, as `ipcs` prints it (`0x0000162e`;
    /// `0x00000000` for `IPC_PRIVATE`). `null` for others.
    pub key: Option<String>,
    /// Owner uid.
    pub owner: u32,
    /// Owner gid.
    pub group: u32,
    /// Permission bits, octal.
    pub mode: String,
    /// Bytes held.
    pub size: u64,
    /// Messages queued.
    pub depth: u64,
    /// Capacity in messages, if bounded.
    pub capacity: Option<u64>,
    /// Processes involved.
    pub pids: Vec<u32>,
    /// System V objects: the creator's uid and gid (`ipcs -c`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creator: Option<Creator>,
    /// System V objects: the pids of the last operations, by role, as
    /// `ipcs -p` shows them (`last_send`/`last_recv` for queues,
    /// `creator`/`last` for segments; 0: none yet).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub last_pids: std::collections::BTreeMap<&'static str, u32>,
    /// System V objects: the times of the last operations, seconds since
    /// the epoch (0: never), as `ipcs -t` shows them (`send`, `recv`,
    /// `change` for queues; `op`, `change` for semaphores; `attach`,
    /// `detach`, `change` for segments).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub times: std::collections::BTreeMap<&'static str, i64>,
}

/// The creator of a System V object.
#[derive(Serialize, Debug, Clone, Copy)]
pub struct Creator {
    /// Creator uid.
    pub uid: u32,
    /// Creator gid.
    pub gid: u32,
}

/// The kernel's objects, and why some could not be listed.
fn kernel_objects() -> (Vec<Object>, Vec<String>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    // Columns are decimal (the key signed), except `perms` (the third),
    // printed in octal.
    let table = |file: &str| -> Vec<Vec<u64>> {
        std::fs::read_to_string(format!("/proc/sysvipc/{file}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .map(|l| {
                l.split_whitespace()
                    .enumerate()
                    .map(|(i, f)| {
                        if i == 2 {
                            u64::from_str_radix(f, 8).unwrap_or(0)
                        } else {
                            f.parse::<i64>().map_or(0, |v| v as u64)
                        }
                    })
                    .collect()
            })
            .collect()
    };
    // Where each field sits in the kernel's three tables (after
    // `key id perms`): size, depth (if any), uid, gid, pids.
    struct Cols {
        file: &'static str,
        kind: &'static str,
        size: usize,
        depth: Option<usize>,
        uid: usize,
        gid: usize,
        pids: &'static [(&'static str, usize)],
        times: &'static [(&'static str, usize)],
    }
    const TABLES: [Cols; 3] = [
        // key msqid perms cbytes qnum lspid lrpid uid gid cuid cgid stime rtime ctime
        Cols {
            file: "msg",
            kind: "sysv-msg",
            size: 3,
            depth: Some(4),
            uid: 7,
            gid: 8,
            pids: &[("last_send", 5), ("last_recv", 6)],
            times: &[("send", 11), ("recv", 12), ("change", 13)],
        },
        // key semid perms nsems uid gid cuid cgid otime ctime
        Cols {
            file: "sem",
            kind: "sysv-sem",
            size: 3,
            depth: None,
            uid: 4,
            gid: 5,
            pids: &[],
            times: &[("op", 8), ("change", 9)],
        },
        // key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime
        Cols {
            file: "shm",
            kind: "sysv-shm",
            size: 3,
            depth: Some(6),
            uid: 7,
            gid: 8,
            pids: &[("creator", 4), ("last", 5)],
            times: &[("attach", 11), ("detach", 12), ("change", 13)],
        },
    ];
    for c in &TABLES {
        for r in table(c.file).iter().filter(|r| r.len() > c.gid) {
            out.push(Object {
                source: "kernel",
                kind: c.kind.into(),
                id: r[1].to_string(),
                key: Some(format!("{:#010x}", r[0] as u32)),
                owner: r[c.uid] as u32,
                group: r[c.gid] as u32,
                mode: format!("{:o}", r[2] & 0o777),
                size: r[c.size],
                depth: c.depth.map_or(0, |i| r[i]),
                capacity: None,
                pids: c.pids.iter().map(|&(_, i)| r[i] as u32).filter(|p| *p != 0).collect(),
                creator: r.get(c.gid + 2).map(|&cgid| Creator { uid: r[c.gid + 1] as u32, gid: cgid as u32 }),
                last_pids: c.pids.iter().filter_map(|&(n, i)| Some((n, *r.get(i)? as u32))).collect(),
                times: c.times.iter().filter_map(|&(n, i)| Some((n, *r.get(i)? as i64))).collect(),
            });
        }
    }
    match conduit::kernel::list_mqueues() {
        Ok(queues) => {
            for q in queues {
                // Depth and capacity from mq_getattr (the file only has bytes).
                let attr = conduit::kernel::mqueue_attr(&q.name).ok();
                out.push(Object {
                    source: "kernel",
                    kind: "mqueue".into(),
                    id: q.name,
                    key: None,
                    owner: q.uid,
                    group: q.gid,
                    mode: format!("{:o}", q.mode),
                    size: q.bytes,
                    depth: attr.map_or(0, |a| a.depth),
                    capacity: attr.map(|a| a.capacity),
                    pids: vec![],
                    ..Object::default()
                });
            }
        }
        Err(why) => warnings.push(why),
    }
    // POSIX shared memory (shm_open): the files of /dev/shm.
    match std::fs::read_dir("/dev/shm") {
        Ok(dir) => {
            use std::os::unix::fs::MetadataExt;
            for e in dir.flatten() {
                let Ok(meta) = e.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                out.push(Object {
                    source: "kernel",
                    kind: "posix-shm".into(),
                    id: format!("/{}", e.file_name().to_string_lossy()),
                    key: None,
                    owner: meta.uid(),
                    group: meta.gid(),
                    mode: format!("{:o}", meta.mode() & 0o777),
                    size: meta.len(),
                    depth: 0,
                    capacity: None,
                    pids: vec![],
                    ..Object::default()
                });
            }
        }
        Err(e) => warnings.push(format!("POSIX shared memory is not listed: cannot read /dev/shm ({e})")),
    }
    (out, warnings)
}

/// Options of `conduit ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Print JSON (`{"objects":[…]}`) for scripts.
    #[arg(long)]
    json: bool,
}

/// Every live IPC object, conduit's (from a running broker, if one runs:
/// this never starts one) and the kernel's, with warnings about what could
/// not be read.
pub fn objects(broker: Option<&Client>) -> Result<(Vec<Object>, Vec<String>), ClientError> {
    let mut objects: Vec<Object> = match broker {
        Some(c) => c
            .list()?
            .into_iter()
            .map(|o| Object {
                source: "conduit",
                kind: o.kind,
                id: o.id,
                key: None,
                owner: o.owner,
                group: o.group,
                mode: format!("{:o}", o.mode),
                size: o.bytes,
                depth: o.depth,
                capacity: o.capacity,
                pids: o.pids,
                ..Object::default()
            })
            .collect(),
        None => Vec::new(),
    };
    let (kernel, warnings) = kernel_objects();
    objects.extend(kernel);
    Ok((objects, warnings))
}

pub fn ls(a: &LsArgs) -> ExitCode {
    // Only ask a running broker: listing must not start one.
    let broker = Client::connect().ok();
    let (objects, warnings) = match objects(broker.as_ref()) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    for w in &warnings {
        eprintln!("conduit: {w}");
    }
    if a.json {
        println!("{}", serde_json::json!({ "objects": objects, "warnings": warnings }));
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<8} {:<9} {:<28} {:>10} {:>6} {:>6} {:>5} {:>10} {:>6} {:>9}",
        "source", "kind", "id", "key", "owner", "group", "mode", "bytes", "depth", "capacity"
    );
    for o in &objects {
        println!(
            "{:<8} {:<9} {:<28} {:>10} {:>6} {:>6} {:>5} {:>10} {:>6} {:>9}",
            o.source,
            o.kind,
            o.id,
            o.key.as_deref().unwrap_or("-"),
            o.owner,
            o.group,
            o.mode,
            o.size,
            o.depth,
            o.capacity.map_or("-".into(), |c| c.to_string())
        );
    }
    ExitCode::SUCCESS
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RmKind {
    /// A conduit mailbox, by name.
    Mailbox,
    /// A conduit name (the matchmaker's): its owner loses it, the next in
    /// line (if any) gets it, watchers are told.
    Name,
    /// A System V message queue, by id.
    Msg,
    /// A System V semaphore set, by id.
    Sem,
    /// A System V shared-memory segment, by id.
    Shm,
    /// A POSIX message queue, by name.
    Mqueue,
    /// A POSIX shared-memory object (`shm_open`), by name.
    PosixShm,
}

/// Options of `conduit rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// What kind of object.
    #[arg(value_enum)]
    kind: RmKind,
    /// Its name or id.
    id: String,
}

pub fn rm(a: &RmArgs) -> ExitCode {
    use conduit::kernel::{SysvKind, remove_mqueue, remove_sysv};
    let sysv = |k: SysvKind| match a.id.parse::<i32>() {
        Ok(id) => remove_sysv(k, id),
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "a System V id is a number")),
    };
    let result = match a.kind {
        RmKind::Mailbox => {
            return Client::connect().and_then(|c| c.remove_mailbox(&a.id)).map_or_else(fail, |()| ExitCode::SUCCESS);
        }
        RmKind::Name => {
            return Client::connect().and_then(|c| c.release(&a.id)).map_or_else(fail, |()| ExitCode::SUCCESS);
        }
        RmKind::Msg => sysv(SysvKind::Msg),
        RmKind::Sem => sysv(SysvKind::Sem),
        RmKind::Shm => sysv(SysvKind::Shm),
        RmKind::Mqueue => remove_mqueue(&a.id),
        RmKind::PosixShm => conduit::kernel::remove_posix_shm(&a.id),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conduit: {e}");
            ExitCode::from(match e.kind() {
                std::io::ErrorKind::PermissionDenied => 6,
                std::io::ErrorKind::NotFound => 7,
                _ => 1,
            })
        }
    }
}
