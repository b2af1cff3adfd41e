//! `conduit bench`'s rows `conduit/zenoh` and `peer/zenoh`, measured
//! between two network namespaces (`conduit_zenoh::testbed`): run by
//! `conduit bench` (which finds this program next to itself) as
//! `conduit-zenoh-bench CASE --conduit PATH --round-trips N --budget-ms MS`;
//! prints one JSON object: `rtt_p50_ns`, `rtt_p99_ns`, `msgs_per_s_64b`.
//!
//! * `conduit/zenoh`: a process on host b sends 8 bytes to host a's
//!   mailbox `ping` (through both bridges: answered once a has it), a
//!   process on a receives it and sends it to b's mailbox `pong`, the
//!   first receives it there: one round trip. Then 64-byte messages from b
//!   into `ping` (`send_batch`, each acknowledged), counted on a.
//! * `peer/zenoh`: the same with plain Zenoh, as its authors' `z_ping` /
//!   `z_pong` and `z_pub_thr` / `z_sub_thr` examples do it: `put` on
//!   `ping`, the other side `put`s it back on `pong` (express, congestion
//!   control `Block`); for throughput, `put`s of 64 bytes (batched, `Block`)
//!   counted by a subscriber. Puts are not acknowledged.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use conduit_broker::{Client, OnFull, WaitFor};
use conduit_zenoh::testbed::{self, TwoHosts};
use zenoh::qos::CongestionControl;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let num = |flag: &str, default: u64| get(flag).and_then(|v| v.parse().ok()).unwrap_or(default);
    let role = args.first().map(String::as_str).unwrap_or("");
    let (rtts, budget) = (num("--round-trips", 1000), Duration::from_millis(num("--budget-ms", 500)));
    let r = match role {
        "conduit/zenoh" | "peer/zenoh" => outer(role, get("--conduit").map(PathBuf::from), rtts, budget),
        "__mailbox-echo" => mailbox_echo(),
        "__mailbox-drive" => mailbox_drive(rtts, budget),
        "__zenoh-echo" => runtime().block_on(zenoh_echo()),
        "__zenoh-drive" => runtime().block_on(zenoh_drive(rtts, budget)),
        _ => {
            Err("usage: conduit-zenoh-bench conduit/zenoh|peer/zenoh --conduit PATH [--round-trips N] [--budget-ms MS]"
                .to_string())
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conduit-zenoh-bench {role}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime")
}

fn s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Set up two hosts, run the echo on a and the driver on b, print what the
/// driver measured.
fn outer(case: &str, conduit: Option<PathBuf>, rtts: u64, budget: Duration) -> Result<(), String> {
    let me = std::env::current_exe().map_err(s)?;
    let conduit = conduit.unwrap_or_else(|| me.with_file_name("conduit"));
    let bridge = me.with_file_name("conduit-bridge");
    let mut h = TwoHosts::new("bench", &conduit, &bridge).map_err(s)?;
    let (echo, drive) = if case == "conduit/zenoh" {
        h.start_bridges().map_err(s)?;
        for (i, name) in [(0, "ping"), (1, "pong")] {
            let o = h.conduit(i, &["mailbox", "create", name, "--capacity", "64"]);
            if !o.status.success() {
                return Err(format!("cannot create {name}: {o:?}"));
            }
        }
        h.wait_listed(1, "remote", "ping@a", true).map_err(s)?;
        h.wait_listed(0, "remote", "pong@b", true).map_err(s)?;
        ("__mailbox-echo", "__mailbox-drive")
    } else {
        ("__zenoh-echo", "__zenoh-drive")
    };
    let mut e = h.command(0, &me).arg(echo).stdout(Stdio::null()).spawn().map_err(s)?;
    let out = h
        .command(1, &me)
        .args([drive, "--round-trips", &rtts.to_string(), "--budget-ms", &budget.as_millis().to_string()])
        .stderr(Stdio::inherit())
        .output()
        .map_err(s)?;
    let _ = e.kill();
    let _ = e.wait();
    if !out.status.success() {
        return Err(format!("the driver failed ({})", out.status));
    }
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

fn report(mut rtts: Vec<u64>, msgs_per_s: f64) {
    rtts.sort_unstable();
    let pct = |p: f64| rtts.get(((rtts.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0) as f64;
    println!(
        "{}",
        serde_json::json!({ "rtt_p50_ns": pct(0.5), "rtt_p99_ns": pct(0.99), "msgs_per_s_64b": msgs_per_s })
    );
}

const RTT: i64 = 1;
const FLOW: i64 = 2;
const END: i64 = 3;

fn mailbox_echo() -> Result<(), String> {
    let c = Client::connect().map_err(s)?;
    let mut count = 0u64;
    loop {
        let m = c.recv("ping", 0, WaitFor::Forever).map_err(s)?;
        match m.mtype {
            RTT => drop(c.send("pong", RTT, &m.data, OnFull::Block).map_err(s)?),
            FLOW => count += 1,
            _ => {
                let total = u64::from_le_bytes(m.data[..8].try_into().map_err(s)?);
                let ok = if count == total { b"ok".as_slice() } else { b"lost".as_slice() };
                c.send("pong", END, ok, OnFull::Block).map_err(s)?;
                count = 0;
            }
        }
    }
}

fn mailbox_drive(n: u64, budget: Duration) -> Result<(), String> {
    let c = Client::connect().map_err(s)?;
    let mut rtts = Vec::new();
    let t = Instant::now();
    while (rtts.len() as u64) < n && (t.elapsed() < budget || rtts.len() < 20) {
        let s0 = Instant::now();
        c.send("ping", RTT, &[7; 8], OnFull::Block).map_err(s)?;
        c.recv("pong", RTT, WaitFor::Millis(10_000)).map_err(s)?;
        rtts.push(s0.elapsed().as_nanos() as u64);
    }
    let payload = [1u8; 64];
    let mut sent = 0u64;
    let t = Instant::now();
    while t.elapsed() < budget || sent < 256 {
        let batch = std::iter::repeat_n(&payload[..], 64);
        for r in c.send_batch("ping", FLOW, batch, OnFull::Block).map_err(s)? {
            r.map_err(s)?;
            sent += 1;
        }
    }
    c.send("ping", END, &sent.to_le_bytes(), OnFull::Block).map_err(s)?;
    let done = c.recv("pong", END, WaitFor::Millis(30_000)).map_err(s)?;
    let elapsed = t.elapsed().as_secs_f64();
    if done.data != b"ok" {
        return Err("the echo counted another number of messages".into());
    }
    report(rtts, sent as f64 / elapsed);
    Ok(())
}

async fn zenoh_session(listen: bool) -> Result<zenoh::Session, String> {
    let mut config = zenoh::Config::default();
    config.insert_json5("mode", "\"peer\"").map_err(s)?;
    config.insert_json5("scouting/multicast/enabled", "false").map_err(s)?;
    let ep = format!("[\"{}\"]", testbed::endpoint_a());
    config.insert_json5(if listen { "listen/endpoints" } else { "connect/endpoints" }, &ep).map_err(s)?;
    zenoh::open(config).await.map_err(s)
}

async fn zenoh_echo() -> Result<(), String> {
    let z = zenoh_session(true).await?;
    let pong = z.declare_publisher("bench/pong").congestion_control(CongestionControl::Block).express(true).await;
    let pong = pong.map_err(s)?;
    let ping = z.declare_subscriber("bench/ping").await.map_err(s)?;
    let flow = z.declare_subscriber("bench/flow").await.map_err(s)?;
    let mut count = 0u64;
    loop {
        tokio::select! {
            m = ping.recv_async() => {
                let m = m.map_err(s)?;
                pong.put(m.payload().to_bytes().into_owned()).await.map_err(s)?;
            }
            m = flow.recv_async() => {
                let m = m.map_err(s)?;
                let bytes = m.payload().to_bytes();
                if bytes.len() == 8 {
                    let total = u64::from_le_bytes(bytes[..8].try_into().map_err(s)?);
                    let ok = if count == total { "ok" } else { "lost" };
                    pong.put(ok).await.map_err(s)?;
                    count = 0;
                } else {
                    count += 1;
                }
            }
        }
    }
}

async fn zenoh_drive(n: u64, budget: Duration) -> Result<(), String> {
    let z = zenoh_session(false).await?;
    let pong = z.declare_subscriber("bench/pong").await.map_err(s)?;
    let ping = z.declare_publisher("bench/ping").congestion_control(CongestionControl::Block).express(true).await;
    let ping = ping.map_err(s)?;
    // Until the echo is there and subscribed: a ping answered.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        ping.put(vec![0u8; 8]).await.map_err(s)?;
        if tokio::time::timeout(Duration::from_millis(100), pong.recv_async()).await.is_ok() {
            break;
        }
        if Instant::now() > until {
            return Err("no echo after 20 s".into());
        }
    }
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), pong.recv_async()).await {}
    let mut rtts = Vec::new();
    let t = Instant::now();
    while (rtts.len() as u64) < n && (t.elapsed() < budget || rtts.len() < 20) {
        let s0 = Instant::now();
        ping.put(vec![7u8; 8]).await.map_err(s)?;
        pong.recv_async().await.map_err(s)?;
        rtts.push(s0.elapsed().as_nanos() as u64);
    }
    let flow = z.declare_publisher("bench/flow").congestion_control(CongestionControl::Block).await.map_err(s)?;
    let mut sent = 0u64;
    let t = Instant::now();
    while t.elapsed() < budget || sent < 256 {
        for _ in 0..64 {
            flow.put(vec![1u8; 64]).await.map_err(s)?;
            sent += 1;
        }
    }
    flow.put(sent.to_le_bytes().to_vec()).await.map_err(s)?;
    let done = tokio::time::timeout(Duration::from_secs(30), pong.recv_async()).await.map_err(s)?.map_err(s)?;
    let elapsed = t.elapsed().as_secs_f64();
    if &*done.payload().to_bytes() != b"ok" {
        return Err("the echo counted another number of messages".into());
    }
    report(rtts, sent as f64 / elapsed);
    Ok(())
}
