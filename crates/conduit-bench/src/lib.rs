//! `conduit bench`: conduit measured side by side with the floors (what the
//! kernel and hardware do with no library in the way) and its peers, in
//! one run, each case between two processes pinned to different CPUs.
//!
//! Every case reports the round trip (p50, p99) of an 8-byte message,
//! one-way 64-byte messages per second, and one-way GB/s with 1 MiB
//! messages (see [`driver`]). Compare ratios within one run: these
//! machines are shared and noisy.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod broker_cases;
pub mod conduit_cases;
pub mod driver;
pub mod floors;
pub mod peer;
pub mod peers;
pub mod redis;
pub mod rpc_cases;
pub mod rpc_peers;
pub mod scale;
pub mod svg;
pub mod zenoh_cases;

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use conduit::channel::Bytes;
use conduit::memory::Segment;
use conduit::{Receiver, Sender};
use driver::{Measurement, Plan};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

/// Options of `conduit bench`.
#[derive(clap::Args, Debug, Default)]
pub struct Options {
    /// A short run (the whole bench in well under a minute).
    #[arg(long)]
    pub quick: bool,
    /// Only these cases (comma-separated names, e.g. `floor/uds,conduit/uds`).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw the results as an SVG bar chart in this file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// A tiny run that only checks every case works (for tests).
    #[arg(long, hide = true)]
    pub smoke: bool,
}

/// Rights a case hands its peer.
#[derive(Serialize, Deserialize)]
pub enum Give {
    /// Receive and send ends of a byte link.
    Bytes(Receiver<Bytes>, Sender<Bytes>),
    /// Two shared segments (down, up).
    Segments(Segment, Segment),
    /// The server's side of an RPC connection.
    Rpc(conduit::rpc::Connection),
}

type CaseFn = fn(Plan, &mut dyn FnMut()) -> io::Result<Measurement>;
type PeerFn = fn(&peer::Peer) -> io::Result<()>;

/// Every case: name, driver, peer.
pub const CASES: &[(&str, CaseFn, PeerFn)] = &[
    ("floor/line", floors::line, floors::line_peer),
    ("floor/spin", floors::spin, floors::spin_peer),
    ("floor/futex", floors::futex, floors::futex_peer),
    ("floor/pipe", floors::pipe, floors::pipe_peer),
    ("floor/uds", floors::uds, floors::uds_peer),
    ("floor/tcp", floors::tcp, floors::tcp_peer),
    ("floor/udp", floors::udp, floors::udp_peer),
    ("floor/posix-mq", floors::posix_mq, floors::posix_mq_peer),
    ("floor/sysv-msg", floors::sysv_msg, floors::sysv_msg_peer),
    ("floor/memcpy", floors::memcpy, floors::no_peer),
    ("scale/socket", scale::socket, floors::no_peer),
    ("scale/shm", scale::shm, floors::no_peer),
    ("scale/broker", scale::broker, floors::no_peer),
    ("conduit/shm-spin", conduit_cases::shm_spin, conduit_cases::peer),
    ("conduit/shm", conduit_cases::shm_adaptive, conduit_cases::peer),
    ("conduit/shm-loan", conduit_cases::shm_loan, conduit_cases::peer),
    ("conduit/uds", conduit_cases::uds, conduit_cases::peer),
    ("conduit/pipe", conduit_cases::pipe_case, conduit_cases::peer),
    ("conduit/fifo", conduit_cases::fifo_case, conduit_cases::fifo_peer),
    ("conduit/tcp", conduit_cases::tcp_case, conduit_cases::stream_peer),
    ("conduit/unix-stream", conduit_cases::unix_stream_case, conduit_cases::stream_peer),
    ("conduit/udp", conduit_cases::udp_case, conduit_cases::udp_peer),
    ("conduit/sysv", floors::conduit_sysv, floors::conduit_sysv_peer),
    ("conduit/posix-mq-typed", floors::posix_mq_typed, floors::posix_mq_typed_peer),
    ("conduit/mailbox", broker_cases::mailbox, broker_cases::mailbox_peer),
    ("conduit/mailbox-unbounded", broker_cases::mailbox_unbounded, broker_cases::brokered_peer),
    ("conduit/mailbox-durable", broker_cases::mailbox_durable, broker_cases::brokered_peer),
    ("conduit/rpc", rpc_cases::rpc_shm, rpc_cases::rpc_peer),
    ("conduit/rpc-uds", rpc_cases::rpc_uds, rpc_cases::rpc_peer),
    ("conduit/rpc-tcp", rpc_cases::rpc_tcp, rpc_cases::rpc_tcp_peer),
    ("peer/iceoryx2", peers::iceoryx2, peers::iceoryx2_peer),
    ("peer/ipc-channel", peers::ipc_channel, peers::ipc_channel_peer),
    ("peer/dbus", peers::dbus_case, peers::dbus_peer),
    ("peer/redis", redis::redis, redis::redis_peer),
    ("peer/redis-aof", redis::redis_aof, redis::redis_peer),
    ("peer/tarpc", rpc_peers::tarpc_case, rpc_peers::tarpc_peer),
    ("peer/tonic", rpc_peers::tonic_case, rpc_peers::tonic_peer),
    ("conduit/zenoh", zenoh_cases::conduit_zenoh, floors::no_peer),
    ("peer/zenoh", zenoh_cases::peer_zenoh, floors::no_peer),
];

/// The order cases run in within a round: each next to the cases its
/// targets compare it with (the table keeps the order of [`CASES`]).
const RUN_ORDER: &[&str] = &[
    "floor/line",
    "floor/spin",
    "conduit/shm-spin",
    "conduit/shm",
    "conduit/rpc",
    "peer/iceoryx2",
    "floor/memcpy",
    "conduit/shm-loan",
    "floor/uds",
    "conduit/uds",
    "conduit/rpc-uds",
    "peer/tarpc",
    "peer/tonic",
    "floor/posix-mq",
    "conduit/posix-mq-typed",
    "floor/sysv-msg",
    "conduit/sysv",
    "conduit/mailbox",
    "peer/dbus",
    "conduit/mailbox-unbounded",
    "peer/redis",
    "conduit/mailbox-durable",
    "peer/redis-aof",
    "floor/futex",
    "floor/pipe",
    "conduit/pipe",
    "conduit/fifo",
    "floor/tcp",
    "conduit/tcp",
    "conduit/rpc-tcp",
    "conduit/unix-stream",
    "floor/udp",
    "conduit/udp",
    "peer/ipc-channel",
    "scale/socket",
    "scale/shm",
    "scale/broker",
    "conduit/zenoh",
    "peer/zenoh",
];

/// The CPUs this process may run on, before any pinning.
fn allowed_cpus() -> Vec<usize> {
    let set = rustix::thread::sched_getaffinity(None).unwrap_or_else(|_| rustix::thread::CpuSet::new());
    (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect()
}

fn pin_to(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

/// The environment variable telling a peer which CPU to pin itself to.
pub const PEER_CPU_VAR: &str = "CONDUIT_BENCH_PEER_CPU";

fn plan(opts: &Options) -> Plan {
    if opts.smoke {
        Plan { round_trips: 200, small: 1_000, large: 4, budget: Duration::from_millis(200) }
    } else if opts.quick {
        Plan { round_trips: 100_000, small: 500_000, large: 500, budget: Duration::from_millis(150) }
    } else {
        Plan { round_trips: 300_000, small: 2_000_000, large: 2_000, budget: Duration::from_secs(1) }
    }
}

fn human_rate(x: f64) -> String {
    if x >= 1e9 {
        return format!("{:.2} G/s", x / 1e9);
    }
    if x >= 1e6 { format!("{:.2} M/s", x / 1e6) } else { format!("{:.0} k/s", x / 1e3) }
}

/// Run the bench.
pub fn run(opts: &Options) -> ExitCode {
    // Driver and peer on two different CPUs when there are two.
    let cpus = allowed_cpus();
    if let [first, second, ..] = cpus[..] {
        pin_to(first);
        peer::set_peer_cpu(second);
    }
    let mut cases: Vec<_> =
        CASES.iter().filter(|(n, _, _)| opts.only.is_empty() || opts.only.iter().any(|o| o == n)).collect();
    if cases.is_empty() {
        eprintln!(
            "no case matches {:?}; cases: {}",
            opts.only,
            CASES.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
        );
        return ExitCode::FAILURE;
    }
    // Many short rounds: this machine has fast and slow spells lasting
    // seconds, and each case's median over rounds spread across the whole
    // run is what it does typically, wherever its neighbours' spells fell.
    let rounds = match (opts.smoke, opts.quick) {
        (true, _) => 1,
        (_, true) => 7,
        _ => 9,
    };
    let bar = ProgressBar::new((cases.len() * 3 * rounds) as u64);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    // Run each case next to what its targets compare it with.
    cases.sort_by_key(|(n, _, _)| RUN_ORDER.iter().position(|r| r == n));
    // Rounds interleave the cases, so that a noisy moment of this shared
    // machine hits them alike; each metric reports its median round.
    let mut done: Vec<Vec<Measurement>> = vec![Vec::new(); cases.len()];
    let mut failed = false;
    let mut skipped: Vec<&str> = Vec::new();
    for round in 1..=rounds {
        for (slot, (name, case, _)) in done.iter_mut().zip(&cases) {
            // Scale cases count, they do not time: one round is enough.
            if round > 1 && name.starts_with("scale/") || skipped.contains(name) {
                continue;
            }
            bar.set_message(format!("{name} (round {round}/{rounds})"));
            let mut tick = || bar.inc(1);
            match case(plan(opts), &mut tick) {
                Ok(m) => slot.push(m),
                // Cases that need what this machine or build lacks (the
                // bridge's rows: conduit-zenoh-bench, root).
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    skipped.push(name);
                    bar.suspend(|| eprintln!("{name}: skipped: {e}"));
                }
                Err(e) => {
                    failed = true;
                    bar.suspend(|| eprintln!("{name}: FAILED: {e}"));
                }
            }
        }
    }
    let mut results: Vec<Measurement> = done.iter().filter_map(|r| Measurement::median(r)).collect();
    results.sort_by_key(|m| CASES.iter().position(|c| c.0 == m.name));
    bar.finish_and_clear();
    print_table(&results);
    scale::print(&results);
    if let Some(path) = &opts.svg
        && let Err(e) = std::fs::write(path, svg::chart(&results))
    {
        eprintln!("cannot write {}: {e}", path.display());
        failed = true;
    }
    if let Some(path) = &opts.json {
        let doc = serde_json::json!({ "results": results });
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&doc).expect("json")) {
            eprintln!("cannot write {}: {e}", path.display());
            failed = true;
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn fmt_opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or("-".into(), f)
}

fn get<'a>(results: &'a [Measurement], name: &str) -> Option<&'a Measurement> {
    results.iter().find(|m| m.name == name)
}

fn print_table(results: &[Measurement]) {
    let spin = get(results, "floor/spin").and_then(|m| m.rtt_p50_ns);
    println!("{:<22} {:>12} {:>12} {:>8} {:>12} {:>11}", "case", "rtt p50", "rtt p99", "÷ spin", "64 B msgs", "1 MiB");
    for m in results {
        println!(
            "{:<22} {:>12} {:>12} {:>8} {:>12} {:>11}",
            m.name,
            fmt_opt(m.rtt_p50_ns, |v| format!("{:.2} µs", v / 1e3)),
            fmt_opt(m.rtt_p99_ns, |v| format!("{:.2} µs", v / 1e3)),
            fmt_opt(m.rtt_p50_ns.zip(spin), |(v, s)| format!("{:.2}×", v / s)),
            fmt_opt(m.msgs_per_s_64b, human_rate),
            fmt_opt(m.gb_per_s_1mib, |v| format!("{v:.2} GB/s")),
        );
    }
    let many: Vec<_> = results.iter().filter(|m| m.msgs_per_s_64b_16.is_some()).collect();
    if !many.is_empty() {
        println!("\nmailboxes: 64 B msgs/s from 16 concurrent senders, each send answered (msgs_per_s_64b_16):");
        for m in many {
            println!("  {:<26} {:>10}", m.name, fmt_opt(m.msgs_per_s_64b_16, human_rate));
        }
    }
    let rpc: Vec<_> = results.iter().filter(|m| m.calls_per_s.is_some() || m.cpu_per_call_ns.is_some()).collect();
    if !rpc.is_empty() {
        println!(
            "\nRPC: calls/s with 64 in flight from one client (calls_per_s), CPU of both processes per call (cpu_per_call_ns):"
        );
        for m in rpc {
            println!(
                "  {:<26} {:>10}  {:>10}",
                m.name,
                fmt_opt(m.calls_per_s, human_rate),
                fmt_opt(m.cpu_per_call_ns, |v| format!("{:.2} µs", v / 1e3))
            );
        }
    }
    let ratio = |a: &str, fa: fn(&Measurement) -> Option<f64>, b: &str, fb: fn(&Measurement) -> Option<f64>| {
        get(results, a).and_then(fa).zip(get(results, b).and_then(fb)).map(|(x, y)| x / y)
    };
    let rtt = |m: &Measurement| m.rtt_p50_ns;
    let gbs = |m: &Measurement| m.gb_per_s_1mib;
    let best_floor_64 = results
        .iter()
        .filter(|m| m.name.starts_with("floor/"))
        .filter_map(|m| m.msgs_per_s_64b)
        .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))));
    let shm_64 = get(results, "conduit/shm").and_then(|m| m.msgs_per_s_64b);
    let mbox_64 = get(results, "conduit/mailbox").and_then(|m| m.msgs_per_s_64b);
    let mq_64 = get(results, "floor/posix-mq").and_then(|m| m.msgs_per_s_64b);
    let pipe_64 = get(results, "conduit/pipe").and_then(|m| m.msgs_per_s_64b);
    let floor_pipe_64 = get(results, "floor/pipe").and_then(|m| m.msgs_per_s_64b);
    let tcp_64 = get(results, "conduit/tcp").and_then(|m| m.msgs_per_s_64b);
    let floor_tcp_64 = get(results, "floor/tcp").and_then(|m| m.msgs_per_s_64b);
    let cps = |m: &Measurement| m.calls_per_s;
    let m64 = |m: &Measurement| m.msgs_per_s_64b;
    let m16 = |m: &Measurement| m.msgs_per_s_64b_16;
    let targets: [(&str, Option<f64>, bool, f64); 27] = [
        ("conduit/uds rtt p50 ÷ floor/uds", ratio("conduit/uds", rtt, "floor/uds", rtt), true, 1.3),
        ("conduit/uds 1 MiB GB/s ÷ floor/uds", ratio("conduit/uds", gbs, "floor/uds", gbs), false, 0.7),
        ("conduit/pipe rtt p50 ÷ floor/pipe", ratio("conduit/pipe", rtt, "floor/pipe", rtt), true, 1.2),
        ("conduit/pipe 64 B msgs/s ÷ floor/pipe", pipe_64.zip(floor_pipe_64).map(|(a, b)| a / b), false, 0.8),
        ("conduit/shm-spin rtt p50 ÷ floor/spin", ratio("conduit/shm-spin", rtt, "floor/spin", rtt), true, 1.2),
        ("conduit/shm rtt p50 ÷ floor/spin", ratio("conduit/shm", rtt, "floor/spin", rtt), true, 1.5),
        ("conduit/shm-spin rtt p50 ÷ peer/iceoryx2", ratio("conduit/shm-spin", rtt, "peer/iceoryx2", rtt), true, 1.0),
        ("conduit/shm 64 B msgs/s ÷ best floor", shm_64.zip(best_floor_64).map(|(a, b)| a / b), false, 0.8),
        ("conduit/shm 1 MiB GB/s ÷ floor/memcpy", ratio("conduit/shm", gbs, "floor/memcpy", gbs), false, 0.7),
        ("conduit/shm-loan 1 MiB GB/s ÷ conduit/shm", ratio("conduit/shm-loan", gbs, "conduit/shm", gbs), false, 1.0),
        ("conduit/mailbox 64 B msgs/s ÷ floor/posix-mq", mbox_64.zip(mq_64).map(|(a, b)| a / b), false, 1.0),
        ("conduit/mailbox round trips/s ÷ peer/dbus", ratio("peer/dbus", rtt, "conduit/mailbox", rtt), false, 10.0),
        (
            "conduit/mailbox-durable 64 B msgs/s ÷ peer/redis-aof",
            ratio("conduit/mailbox-durable", m64, "peer/redis-aof", m64),
            false,
            1.0,
        ),
        (
            "mailbox-durable 16 senders ÷ peer/redis-aof",
            ratio("conduit/mailbox-durable", m16, "peer/redis-aof", m16),
            false,
            1.0,
        ),
        (
            "conduit/mailbox-unbounded 64 B msgs/s ÷ peer/redis",
            ratio("conduit/mailbox-unbounded", m64, "peer/redis", m64),
            false,
            20.0,
        ),
        ("conduit/tcp rtt p50 ÷ floor/tcp", ratio("conduit/tcp", rtt, "floor/tcp", rtt), true, 1.2),
        ("conduit/tcp 64 B msgs/s ÷ floor/tcp", tcp_64.zip(floor_tcp_64).map(|(a, b)| a / b), false, 0.8),
        ("conduit/udp rtt p50 ÷ floor/udp", ratio("conduit/udp", rtt, "floor/udp", rtt), true, 1.2),
        ("conduit/rpc rtt p50 ÷ floor/spin", ratio("conduit/rpc", rtt, "floor/spin", rtt), true, 2.0),
        ("conduit/rpc-uds 1/rtt ÷ peer/tarpc", ratio("peer/tarpc", rtt, "conduit/rpc-uds", rtt), false, 3.0),
        ("conduit/rpc-uds calls_per_s ÷ peer/tarpc", ratio("conduit/rpc-uds", cps, "peer/tarpc", cps), false, 3.0),
        ("conduit/rpc-uds 1/rtt ÷ peer/tonic", ratio("peer/tonic", rtt, "conduit/rpc-uds", rtt), false, 10.0),
        ("conduit/rpc-uds calls_per_s ÷ peer/tonic", ratio("conduit/rpc-uds", cps, "peer/tonic", cps), false, 10.0),
        ("conduit/zenoh rtt p50 ÷ peer/zenoh", ratio("conduit/zenoh", rtt, "peer/zenoh", rtt), true, 1.25),
        ("conduit/zenoh 64 B msgs/s ÷ peer/zenoh", ratio("conduit/zenoh", m64, "peer/zenoh", m64), false, 0.8),
        ("conduit/sysv rtt p50 ÷ floor/sysv-msg", ratio("conduit/sysv", rtt, "floor/sysv-msg", rtt), true, 1.2),
        (
            "conduit/posix-mq-typed rtt p50 ÷ floor/posix-mq",
            ratio("conduit/posix-mq-typed", rtt, "floor/posix-mq", rtt),
            true,
            1.2,
        ),
    ];
    let measured: Vec<_> = targets.iter().filter_map(|(n, r, le, t)| r.map(|r| (n, r, le, t))).collect();
    if !measured.is_empty() {
        println!("\ntargets (ratios within this run):");
        for (name, r, le, t) in measured {
            let met = if *le { r <= *t } else { r >= *t };
            let op = if *le { "≤" } else { "≥" };
            println!("  {name:<48} {r:>6.2}  (target {op} {t})  {}", if met { "met" } else { "MISSED" });
        }
    }
    // How far above the physical limit of a cross-core round trip.
    if let Some(r) = ratio("conduit/shm-spin", rtt, "floor/line", rtt) {
        println!(
            "\n  {:<42} {r:>6.2}  (the machine's limit: one cache line there and back)",
            "conduit/shm-spin rtt p50 ÷ floor/line"
        );
    }
}

/// Entry point of a peer process (`conduit __bench-peer CASE ARGS...`).
pub fn peer(case: &str, args: &[String]) -> ExitCode {
    if let Some(cpu) = std::env::var(PEER_CPU_VAR).ok().and_then(|v| v.parse().ok()) {
        pin_to(cpu);
    }
    if let Some(kind) = case.strip_prefix("scale/") {
        return scale::peer(kind, args.first().map_or("", String::as_str));
    }
    let Some((_, _, serve)) = CASES.iter().find(|(n, _, _)| *n == case) else {
        eprintln!("unknown bench case {case}");
        return ExitCode::FAILURE;
    };
    match peer::Peer::new(args).and_then(|p| serve(&p)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench peer {case}: {e}");
            ExitCode::FAILURE
        }
    }
}
