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

/// `scale/socket`: socket channels.
pub fn socket(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    case("socket", plan, tick)
}

/// `scale/shm`: shared-memory channels.
pub fn shm(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    case("shm", plan, tick)
}

fn fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0)
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
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
    let (fd0, rss0) = (fds(), rss_bytes());
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
    let made = held.len() as u64;
    let per = |x: u64| if made == 0 { 0.0 } else { x as f64 / made as f64 };
    times.sort_by(f64::total_cmp);
    let row = ScaleRow {
        channels: n,
        made,
        fds_per_channel: per(fds().saturating_sub(fd0)),
        rss_bytes_per_channel: per(rss_bytes().saturating_sub(rss0)),
        create_ns_p50: times.get(times.len() / 2).copied().unwrap_or(0.0),
        fd_limit: fd_limit(),
        error,
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
        "{:<14} {:>9} {:>9} {:>10} {:>12} {:>12}  (bounded(16) of u64, both ends in one process)",
        "scale", "channels", "made", "fds each", "resident", "create p50"
    );
    for (name, r) in rows {
        println!(
            "{:<14} {:>9} {:>9} {:>10.2} {:>8.1} KiB {:>9.1} µs{}",
            name,
            r.channels,
            r.made,
            r.fds_per_channel,
            r.rss_bytes_per_channel / 1024.0,
            r.create_ns_p50 / 1e3,
            r.error.as_ref().map_or(String::new(), |e| format!("  stopped: {e} (limit {} fds)", r.fd_limit)),
        );
    }
}
