//! RPC cases: `add(a, b)` calls through `#[conduit::service]` stubs, one
//! at a time (round trips only: `rtt_p50_ns` is one call), the server in
//! the peer process — `conduit/rpc` over shared-memory channels (the
//! adaptive wait: spin, then sleep), `conduit/rpc-uds` over Unix sockets,
//! `conduit/rpc-tcp` over loopback TCP.

use std::io;
use std::time::Duration;

use conduit::rpc::{self, Answer, Call, Connection};

use crate::Give;
use crate::driver::{self, Measurement, Plan};
use crate::peer::{Peer, spawn_peer};

/// The benchmark's service.
#[conduit::service]
pub trait Adder {
    /// a + b.
    fn add(&self, a: i64, b: i64) -> i64;
}

struct Add;

impl Adder for Add {
    fn add(&self, a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }
}

pub(crate) fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// CPU time (ns) every thread of process `pid` has run, from
/// `/proc/PID/task/*/schedstat` (nanoseconds, unlike `stat`'s ticks).
pub(crate) fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// Measures a service's `add` both ways: one call at a time (`rtt_p50_ns`,
/// then `cpu_per_call_ns` over more such calls) and [`IN_FLIGHT`] calls in
/// flight from one client (`calls_per_s`). `call` makes one blocking call;
/// `in_flight(n)` makes `n` calls from each of [`IN_FLIGHT`] tasks and
/// returns how many it made. Every RPC case and RPC peer goes through here,
/// so they are measured alike.
pub(crate) fn measure_calls(
    name: &str,
    peer: u32,
    plan: Plan,
    tick: &mut dyn FnMut(),
    mut call: impl FnMut(i64) -> io::Result<i64>,
    in_flight: impl FnOnce(usize) -> io::Result<usize>,
) -> io::Result<Measurement> {
    let mut i = 0i64;
    let rtts = driver::round_trips(plan, || {
        i += 1;
        if call(i)? == i + 1 { Ok(()) } else { Err(err("a wrong sum")) }
    })?;
    tick();
    let me = std::process::id();
    let (a, b) = (cpu_ns(me), cpu_ns(peer));
    let n = plan.round_trips.clamp(1000, 20_000);
    for i in 0..n as i64 {
        if call(i)? != i + 1 {
            return Err(err("a wrong sum"));
        }
    }
    let used = cpu_ns(me).saturating_sub(a) + cpu_ns(peer).saturating_sub(b);
    let cpu_per_call_ns = used as f64 / n as f64;
    let t = std::time::Instant::now();
    let done = in_flight((plan.round_trips / IN_FLIGHT).max(50))?;
    let calls_per_s = done as f64 / t.elapsed().as_secs_f64();
    tick();
    Ok(Measurement {
        calls_per_s: Some(calls_per_s),
        cpu_per_call_ns: Some(cpu_per_call_ns),
        ..Measurement::round_trips_only(name, &rtts)
    })
}

/// Calls in flight together from one client.
pub(crate) const IN_FLIGHT: usize = 64;

/// Runs [`IN_FLIGHT`] tasks on `rt`, each making `per_task` calls of
/// `call(i)` (which must answer `i + 1`) one after another; how many
/// calls were made.
pub(crate) fn in_flight_on<F, Fut>(rt: &tokio::runtime::Runtime, per_task: usize, call: F) -> io::Result<usize>
where
    F: Fn(i64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = io::Result<i64>> + Send + 'static,
{
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..IN_FLIGHT {
            let call = call.clone();
            set.spawn(async move {
                for i in 0..per_task as i64 {
                    if call(i).await? != i + 1 {
                        return Err(err("a wrong sum"));
                    }
                }
                Ok::<usize, io::Error>(per_task)
            });
        }
        let mut total = 0;
        while let Some(r) = set.join_next().await {
            total += r.map_err(err)??;
        }
        Ok(total)
    })
}

fn measure(name: &str, client: rpc::Client, peer: u32, plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let calc = AdderClient::new(client);
    // `async` calls share the client's pipeline: one reader thread hands
    // out the answers; the tasks run on a one-thread runtime.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let c = calc.clone();
    measure_calls(
        name,
        peer,
        plan,
        tick,
        |i| calc.add(i, 1).map_err(err),
        |per_task| {
            in_flight_on(&rt, per_task, move |i| {
                let c = c.clone();
                async move { c.add_async(i, 1).await.map_err(err) }
            })
        },
    )
}

fn channel_case(name: &str, transport: rpc::Transport, plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    // What a user gets from `rpc::pair_over`: a bounded shared-memory
    // pair, or two unbounded socket channels.
    let (client, conn) = rpc::pair_over(transport).map_err(err)?;
    let peer = spawn_peer(name, &[])?;
    peer.give(Give::Rpc(conn))?;
    let m = measure(name, client, peer.pid(), plan, tick);
    peer.finish(m)
}

/// `conduit/rpc`: calls over shared-memory channels.
pub fn rpc_shm(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    channel_case("conduit/rpc", rpc::Transport::SharedMemory, plan, tick)
}

/// `conduit/rpc-uds`: calls over Unix-socket channels.
pub fn rpc_uds(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    channel_case("conduit/rpc-uds", rpc::Transport::Socket, plan, tick)
}

/// The peer of `conduit/rpc` and `conduit/rpc-uds`: serve the connection.
pub fn rpc_peer(p: &Peer) -> io::Result<()> {
    match p.take()? {
        Give::Rpc(conn) => rpc::serve(&AdderServer(Add), conn).map_err(err),
        _ => Err(err("expected an RPC connection")),
    }
}

/// `conduit/rpc-tcp`: calls over a TCP connection (`TCP_NODELAY`).
pub fn rpc_tcp(plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let listener = conduit::net::Listener::bind("tcp:127.0.0.1:0").map_err(err)?;
    let peer = spawn_peer("conduit/rpc-tcp", &[listener.local_addr().to_string()])?;
    let pid = peer.pid();
    let m = listener.accept_timeout::<Call, Answer>(Duration::from_secs(30)).map_err(err).and_then(|c| {
        let c = c.ok_or_else(|| err("the peer did not connect"))?;
        measure("conduit/rpc-tcp", rpc::Client::new(c.tx, c.rx), pid, plan, tick)
    });
    peer.finish(m)
}

/// The peer of `conduit/rpc-tcp`: connects and serves.
pub fn rpc_tcp_peer(p: &Peer) -> io::Result<()> {
    let c = conduit::net::connect::<Answer, Call>(p.arg(0)?).map_err(err)?;
    rpc::serve(&AdderServer(Add), Connection { calls: c.rx, answers: c.tx }).map_err(err)
}
