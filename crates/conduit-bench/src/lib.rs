//! `conduit bench`: conduit measured side by side with the floors (what the
//! kernel and hardware do with no library in the way) and its peers, in
//! one run, each case between two processes pinned to different CPUs.
//!
//! Every case reports the round trip (p50, p99) of an 8-byte message,
//! one-way 64-byte messages per second, and one-way GB/s with 1 MiB
//! messages (see [`driver`]). Compare ratios within one run: these
//! machines are shared and noisy.

pub mod conduit_cases;
pub mod driver;
pub mod floors;
pub mod peer;

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use conduit::{Receiver, Sender};
use driver::{Measurement, Plan};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use conduit_cases::Blob;

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
    /// A tiny run that only checks every case works (for tests).
    #[arg(long, hide = true)]
    pub smoke: bool,
}

/// Rights a case hands its peer.
#[derive(Serialize, Deserialize)]
pub enum Give {
    /// Receive and send ends of a byte link.
    Blobs(Receiver<Blob>, Sender<Blob>),
}

type CaseFn = fn(Plan, &mut dyn FnMut()) -> io::Result<Measurement>;
type PeerFn = fn(&peer::Peer) -> io::Result<()>;

/// Every case: name, driver, peer.
pub const CASES: &[(&str, CaseFn, PeerFn)] =
    &[("floor/uds", floors::uds, floors::uds_peer), ("conduit/uds", conduit_cases::uds, conduit_cases::uds_peer)];

fn pin(cpu: usize) {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n >= 2 {
        let mut set = rustix::thread::CpuSet::new();
        set.set(cpu % n);
        let _ = rustix::thread::sched_setaffinity(None, &set);
    }
}

fn plan(opts: &Options) -> Plan {
    if opts.smoke {
        Plan { round_trips: 200, small: 1_000, large: 4 }
    } else if opts.quick {
        Plan { round_trips: 10_000, small: 50_000, large: 100 }
    } else {
        Plan { round_trips: 100_000, small: 500_000, large: 1_000 }
    }
}

fn human_rate(x: f64) -> String {
    if x >= 1e6 { format!("{:.2} M/s", x / 1e6) } else { format!("{:.0} k/s", x / 1e3) }
}

/// Run the bench.
pub fn run(opts: &Options) -> ExitCode {
    pin(0);
    let cases: Vec<_> =
        CASES.iter().filter(|(n, _, _)| opts.only.is_empty() || opts.only.iter().any(|o| o == n)).collect();
    if cases.is_empty() {
        eprintln!(
            "no case matches {:?}; cases: {}",
            opts.only,
            CASES.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
        );
        return ExitCode::FAILURE;
    }
    let rounds = match (opts.smoke, opts.quick) {
        (true, _) => 1,
        (_, true) => 3,
        _ => 5,
    };
    let bar = ProgressBar::new((cases.len() * 3 * rounds) as u64);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    // Rounds interleave the cases, so that a noisy moment of this shared
    // machine hits them alike; each metric keeps its best round.
    let mut best: Vec<Option<Measurement>> = vec![None; cases.len()];
    let mut failed = false;
    for round in 1..=rounds {
        for (slot, (name, case, _)) in best.iter_mut().zip(&cases) {
            bar.set_message(format!("{name} (round {round}/{rounds})"));
            let mut tick = || bar.inc(1);
            match case(plan(opts), &mut tick) {
                Ok(m) => *slot = Some(slot.take().map_or(m.clone(), |b| b.best(&m))),
                Err(e) => {
                    failed = true;
                    bar.println(format!("{name}: FAILED: {e}"));
                }
            }
        }
    }
    let results: Vec<Measurement> = best.into_iter().flatten().collect();
    bar.finish_and_clear();
    print_table(&results);
    if let Some(path) = &opts.json {
        let doc = serde_json::json!({ "results": results });
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&doc).expect("json")) {
            eprintln!("cannot write {}: {e}", path.display());
            failed = true;
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn print_table(results: &[Measurement]) {
    let floor = results.iter().find(|m| m.name == "floor/uds").map(|m| m.rtt_p50_ns);
    println!("{:<18} {:>12} {:>12} {:>10} {:>12} {:>10}", "case", "rtt p50", "rtt p99", "÷ uds", "64 B msgs", "1 MiB");
    for m in results {
        let ratio = floor.map_or("-".into(), |f| format!("{:.2}×", m.rtt_p50_ns / f));
        println!(
            "{:<18} {:>9.2} µs {:>9.2} µs {:>10} {:>12} {:>7.2} GB/s",
            m.name,
            m.rtt_p50_ns / 1e3,
            m.rtt_p99_ns / 1e3,
            ratio,
            human_rate(m.msgs_per_s_64b),
            m.gb_per_s_1mib
        );
    }
}

/// Entry point of a peer process (`conduit __bench-peer CASE ARGS...`).
pub fn peer(case: &str, args: &[String]) -> ExitCode {
    pin(1);
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
