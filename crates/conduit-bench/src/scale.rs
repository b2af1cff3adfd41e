//! Scale: what one channel costs a process, when it holds thousands.
//!
//! `scale/socket` and `scale/shm` each run a fresh process (this binary,
//! `conduit __bench-peer scale/KIND N`) that makes `N` channels — both
//! ends in that process, a `bounded(16)` of `u64`, one message through
//! each so that its memory is in use — for `N` = 100, 1,000 and 10,000,
//! and reports: descriptors and resident bytes per channel (the process's
//! growth divided by `N`), and the median time to create one. A process
//! that cannot make `N` (descriptors, memory) reports how many it made and
//! the error. The process runs with the default descriptor limit it was
//! given (`ulimit -n`), never raised.

use std::io;
use std::process::ExitCode;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::driver::{Measurement, Plan};

/// One size of a scale case.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScaleRow {
    /// Channels asked for.
    pub channels: u64,
    /// Channels made (fewer if a limit was hit: see `error`).
    pub made: u64,
    /// Descriptors per channel (both ends).
    pub fds_per_channel: f64,
    /// Resident bytes per channel (both ends, one message sent through).
    pub rss_bytes_per_channel: f64,
    /// Median time to create one channel, ns.
    pub create_ns_p50: f64,
    /// The process's descriptor limit.
    pub fd_limit: u64,
    /// Why fewer than asked were made.
    pub error: Option<String>,
    /// `scale/broker`: clients connected at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clients: Option<u64>,
    /// `scale/broker`: median of one request (half a send-and-receive
    /// round trip on one mailbox), ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_ns_p50: Option<f64>,
}

fn sizes(plan: &Plan) -> &'static [u64] {
    // `--smoke` (a handful of round trips): the smallest size only.
    if plan.round_trips < 1000 { &[100] } else { &[100, 1000, 10_000] }
}

fn case(kind: &str, plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    for &n in sizes(&plan) {
        let out = std::process::Command::new(&exe)
            .args(["__bench-peer", &format!("scale/{kind}"), &n.to_string()])
            .stderr(std::process::Stdio::inherit())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!("scale/{kind} {n}: the process failed: {:?}", out.status)));
        }
        let row: ScaleRow = serde_json::from_slice(&out.stdout).map_err(io::Error::other)?;
        rows.push(row);
        tick();
    }
    tick();
    tick();
    Ok(Measurement { scale: rows, ..Measurement::empty(&format!("scale/{kind}")) })
}

/// `scale/broker`: a broker (`conduit daemon`, its own process) holding
/// 100, 1,000 and 10,000 `unbounded` mailboxes (each a queue in shared
/// memory, its front, and the broker's list behind it), then 1,000
/// connected clients besides: per object (or client) its descriptors and
/// resident bytes, the median time to create a mailbox, and the median
/// request on one mailbox served by the broker, which must not grow with
/// the objects.
pub fn broker(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    use conduit_broker::protocol::{Reply, Request};
    use conduit_broker::{Capacity, Client, MailboxOptions, OnFull, WaitFor};
    let err = |e: conduit_broker::ClientError| io::Error::other(e.to_string());
    let dir = std::env::temp_dir().join(format!("conduit-bench-{}-scale-broker", std::process::id()));
    let socket = dir.join("broker.sock");
    let mut daemon = std::process::Command::new(std::env::current_exe()?)
        .arg("daemon")
        .arg("--socket")
        .arg(&socket)
        .arg("--data")
        .arg(dir.join("data"))
        .args(["--max-objects", "100000", "--max-connections", "5000", "--max-total-connections", "10000"])
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let pid = daemon.id();
    let result = (|| {
        let until = Instant::now() + std::time::Duration::from_secs(30);
        let c = loop {
            match Client::connect_to(&socket) {
                Ok(c) => break c,
                Err(_) if Instant::now() < until => std::thread::sleep(std::time::Duration::from_millis(2)),
                Err(e) => return Err(err(e)),
            }
        };
        let kept = MailboxOptions { capacity: Capacity::Unbounded, ..MailboxOptions::default() };
        c.create_mailbox("probe", kept).map_err(err)?;
        // Sent as requests, so that the broker serves them: `Client::send`
        // and `recv` would write the probe's queue in shared memory
        // themselves, with no broker in the path.
        let request = |c: &Client| -> io::Result<f64> {
            let mut t = Vec::with_capacity(2000);
            for i in 0..2000u32 {
                let at = Instant::now();
                let data = i.to_le_bytes().to_vec();
                c.request(Request::Send { name: "probe".into(), mtype: 1, data, full: OnFull::NoWait }).map_err(err)?;
                match c
                    .request(Request::Recv { name: "probe".into(), select: 0, wait: WaitFor::NoWait })
                    .map_err(err)?
                {
                    // Acknowledged as `Client::recv` does (no reply).
                    Reply::Message { delivery, .. } => {
                        c.post(Request::Settle { delivery, ack: true, confirm: false }).map_err(err)?
                    }
                    r => return Err(io::Error::other(format!("scale/broker: a receive answered {r:?}"))),
                }
                t.push(at.elapsed().as_nanos() as f64 / 2.0);
            }
            t.sort_by(f64::total_cmp);
            Ok(t[t.len() / 2])
        };
        let (fd0, rss0) = (proc_fds(pid), proc_rss(pid));
        let mut rows = Vec::new();
        let mut made = 0u64;
        for &n in sizes(&plan) {
            let mut times = Vec::new();
            while made < n {
                let at = Instant::now();
                c.create_mailbox(&format!("m{made}"), kept).map_err(err)?;
                times.push(at.elapsed().as_nanos() as f64);
                made += 1;
            }
            times.sort_by(f64::total_cmp);
            rows.push(ScaleRow {
                channels: n,
                made,
                fds_per_channel: proc_fds(pid).saturating_sub(fd0) as f64 / made as f64,
                rss_bytes_per_channel: proc_rss(pid).saturating_sub(rss0) as f64 / made as f64,
                create_ns_p50: times.get(times.len() / 2).copied().unwrap_or(0.0),
                fd_limit: fd_limit(),
                error: None,
                clients: Some(1),
                request_ns_p50: Some(request(&c)?),
            });
            tick();
        }
        // Then clients, connected and idle, besides the objects.
        let clients: u64 = if sizes(&plan).len() > 1 { 1000 } else { 10 };
        let (fd1, rss1) = (proc_fds(pid), proc_rss(pid));
        let mut held = Vec::new();
        for _ in 0..clients {
            held.push(Client::connect_to(&socket).map_err(err)?);
        }
        rows.push(ScaleRow {
            channels: made,
            made,
            fds_per_channel: proc_fds(pid).saturating_sub(fd1) as f64 / clients as f64,
            rss_bytes_per_channel: proc_rss(pid).saturating_sub(rss1) as f64 / clients as f64,
            create_ns_p50: 0.0,
            fd_limit: fd_limit(),
            error: None,
            clients: Some(clients + 1),
            request_ns_p50: Some(request(&c)?),
        });
        tick();
        Ok(Measurement { scale: rows, ..Measurement::empty("scale/broker") })
    })();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn proc_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0)
}

fn proc_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// `scale/socket`: socket channels.
pub fn socket(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    case("socket", plan, tick)
}

/// `scale/shm`: shared-memory channels.
pub fn shm(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    case("shm", plan, tick)
}

fn fd_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or(0)
}

type Pair = (conduit::Sender<u64>, conduit::Receiver<u64>);

/// The process of a scale case: make the channels, print a [`ScaleRow`]
/// as JSON.
pub fn peer(kind: &str, n: &str) -> ExitCode {
    let Ok(n) = n.parse::<u64>() else { return ExitCode::FAILURE };
    let make: fn() -> Result<Pair, conduit::Error> = match kind {
        "socket" => || conduit::bounded(16),
        "shm" => || conduit::channel::shm::bounded(16),
        _ => return ExitCode::FAILURE,
    };
    // One channel first: what a process sets up once (the monitor thread,
    // membarrier registration) is not a channel's cost.
    let warm = make().and_then(|(tx, rx)| {
        tx.send(1).map_err(|e| conduit::Error::Io(io::Error::other(e.to_string())))?;
        rx.recv().map_err(|e| conduit::Error::Io(io::Error::other(e.to_string())))?;
        Ok((tx, rx))
    });
    let me = std::process::id();
    let (fd0, rss0) = (proc_fds(me), proc_rss(me));
    let mut held: Vec<Pair> = Vec::with_capacity(n as usize);
    let mut times = Vec::with_capacity(n as usize);
    let mut error = None;
    for _ in 0..n {
        let t = Instant::now();
        match make() {
            Ok((tx, rx)) => {
                times.push(t.elapsed().as_nanos() as f64);
                if let Err(e) =
                    tx.send(7).map_err(|e| e.to_string()).and_then(|()| rx.recv().map_err(|e| e.to_string()))
                {
                    error = Some(e);
                    break;
                }
                held.push((tx, rx));
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    if error.is_some() {
        // Out of descriptors, likely: free a channel's worth, so that the
        // process can open `/proc/self/fd` to count them.
        held.pop();
        times.pop();
    }
    let made = held.len() as u64;
    let per = |x: u64| if made == 0 { 0.0 } else { x as f64 / made as f64 };
    times.sort_by(f64::total_cmp);
    let row = ScaleRow {
        channels: n,
        made,
        fds_per_channel: per(proc_fds(me).saturating_sub(fd0)),
        rss_bytes_per_channel: per(proc_rss(me).saturating_sub(rss0)),
        create_ns_p50: times.get(times.len() / 2).copied().unwrap_or(0.0),
        fd_limit: fd_limit(),
        error,
        clients: None,
        request_ns_p50: None,
    };
    drop(warm);
    println!("{}", serde_json::to_string(&row).expect("JSON"));
    ExitCode::SUCCESS
}

/// Print the scale rows of `results`, if any.
pub fn print(results: &[Measurement]) {
    let rows: Vec<(&str, &ScaleRow)> =
        results.iter().flat_map(|m| m.scale.iter().map(move |r| (m.name.as_str(), r))).collect();
    if rows.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<14} {:>9} {:>9} {:>10} {:>12} {:>12}  (channels: bounded(16) of u64, both ends in one process; broker: objects, then clients)",
        "scale", "objects", "made", "fds each", "resident", "create p50"
    );
    for (name, r) in rows {
        let tail = match (r.clients, r.request_ns_p50, &r.error) {
            (Some(clients), Some(req), _) => format!("  {clients} client(s); a request {:.1} µs", req / 1e3),
            (_, _, Some(e)) => format!("  stopped: {e} (limit {} fds)", r.fd_limit),
            _ => String::new(),
        };
        println!(
            "{:<14} {:>9} {:>9} {:>10.2} {:>8.1} KiB {:>9.1} µs{tail}",
            name,
            r.channels,
            r.made,
            r.fds_per_channel,
            r.rss_bytes_per_channel / 1024.0,
            r.create_ns_p50 / 1e3,
        );
    }
}
