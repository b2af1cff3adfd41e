//! `conduit/zenoh` and `peer/zenoh`: a mailbox round trip across two hosts
//! through the bridges, and plain Zenoh between the same two hosts. Both
//! are measured by `conduit-zenoh-bench` (crates/conduit-zenoh, built apart
//! so that conduit's default build stays free of Zenoh), between two
//! network namespaces it makes, which needs root. Without it, or without
//! root, these rows are skipped (said once, not a failure).

use std::io;
use std::process::Command;

use crate::driver::{Measurement, Plan};

fn external(case: &str, plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let me = std::env::current_exe()?;
    let bench = me.with_file_name("conduit-zenoh-bench");
    if !bench.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "conduit-zenoh-bench is not built: cargo build --release --manifest-path crates/conduit-zenoh/Cargo.toml --target-dir target",
        ));
    }
    if !rustix::process::geteuid().is_root() {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "needs root (two network namespaces)"));
    }
    // Round trips here take hundreds of µs: the budget bounds them.
    let out = Command::new(&bench)
        .arg(case)
        .arg("--conduit")
        .arg(&me)
        .args(["--round-trips", &plan.round_trips.to_string()])
        .args(["--budget-ms", &(plan.budget.as_millis() * 4).max(200).to_string()])
        .output()?;
    tick();
    tick();
    tick();
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "conduit-zenoh-bench {case}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(io::Error::other)?;
    Ok(Measurement {
        rtt_p50_ns: v["rtt_p50_ns"].as_f64(),
        rtt_p99_ns: v["rtt_p99_ns"].as_f64(),
        msgs_per_s_64b: v["msgs_per_s_64b"].as_f64(),
        ..Measurement::empty(case)
    })
}

/// `conduit/zenoh`.
pub fn conduit_zenoh(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    external("conduit/zenoh", plan, tick)
}

/// `peer/zenoh`.
pub fn peer_zenoh(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    external("peer/zenoh", plan, tick)
}
