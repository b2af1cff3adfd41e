//! The measurement every case runs, over a byte-message [`Link`] between
//! two processes.
//!
//! The peer ([`serve`]) echoes 8-byte messages, counts longer ones, answers
//! a 1-byte "end of batch" with the count (8 bytes), and stops on a 2-byte
//! "quit". Both sides only look at what they receive ([`Link::recv_view`]:
//! in place where the link can read in place). The driver ([`measure`])
//! times round trips of 8 bytes, a stream of 64-byte messages, and a stream
//! of 1 MiB messages (in pieces of at most [`Link::max_message`]).

use std::io;
use std::time::Instant;

/// One side of a two-process message link.
pub trait Link {
    /// Send one message.
    fn send(&mut self, data: &[u8]) -> io::Result<()>;
    /// Receive one message into `buf` (resized to its length).
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()>;
    /// Receive one message and look at it without keeping it (links that
    /// can read in place override this; the default copies into `scratch`).
    fn recv_view(&mut self, scratch: &mut Vec<u8>, look: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        self.recv(scratch)?;
        look(scratch);
        Ok(())
    }
    /// Send `whole`, a message the caller holds that is `head` followed by
    /// zeros. Links that write in place (loans) override this to build it
    /// where it will be read — its head, then zeros — instead of copying
    /// the caller's buffer; the default sends `whole`.
    fn send_built(&mut self, head: &[u8], whole: &[u8]) -> io::Result<()> {
        debug_assert!(whole.starts_with(head));
        self.send(whole)
    }
    /// Make every send so far (links that hold sends back to send them
    /// together: before each receive, and here after the last send).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Largest message the link carries in one piece.
    fn max_message(&self) -> usize {
        usize::MAX
    }
}

const ECHO: usize = 8;
const END: usize = 1;
const QUIT: usize = 2;
/// Size of the bulk messages.
pub const MIB: usize = 1 << 20;

/// How much to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Round trips (after as many again of warm-up / 10).
    pub round_trips: usize,
    /// 64-byte messages in the stream.
    pub small: usize,
    /// 1 MiB messages in the stream.
    pub large: usize,
    /// Each phase also stops after this long (slow cases send fewer).
    pub budget: std::time::Duration,
}

/// What one case measured (`None`, JSON `null`: does not apply, e.g.
/// round trips of `floor/memcpy`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Measurement {
    /// Case name, e.g. `floor/uds`.
    pub name: String,
    /// Median round trip of an 8-byte message, ns.
    pub rtt_p50_ns: Option<f64>,
    /// 99th percentile round trip, ns.
    pub rtt_p99_ns: Option<f64>,
    /// One-way 64-byte messages per second.
    pub msgs_per_s_64b: Option<f64>,
    /// One-way GB/s (10⁹ bytes) with 1 MiB messages.
    pub gb_per_s_1mib: Option<f64>,
    /// RPC cases: calls per second with 64 calls in flight from one client.
    pub calls_per_s: Option<f64>,
    /// RPC cases: CPU time of both processes per call, one call at a time
    /// (ns): what spinning before sleeping costs.
    pub cpu_per_call_ns: Option<f64>,
    /// Mailbox cases: 64-byte messages per second from 16 concurrent
    /// senders (a connection each, one send at a time, each answered).
    pub msgs_per_s_64b_16: Option<f64>,
    /// Scale cases: one row per number of channels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scale: Vec<crate::scale::ScaleRow>,
}

impl Measurement {
    /// A case that times round trips only: p50 and p99 of `rtts` (ns),
    /// every other field `None`.
    pub fn round_trips_only(name: &str, rtts: &[u64]) -> Measurement {
        Measurement {
            rtt_p50_ns: Some(percentile(rtts, 0.50)),
            rtt_p99_ns: Some(percentile(rtts, 0.99)),
            ..Measurement::empty(name)
        }
    }

    /// A case that measured nothing yet: every field `None`.
    pub fn empty(name: &str) -> Measurement {
        Measurement {
            name: name.to_string(),
            rtt_p50_ns: None,
            rtt_p99_ns: None,
            msgs_per_s_64b: None,
            gb_per_s_1mib: None,
            calls_per_s: None,
            cpu_per_call_ns: None,
            msgs_per_s_64b_16: None,
            scale: Vec::new(),
        }
    }
}

fn median_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values.flatten().collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

impl Measurement {
    /// The median of several rounds of one case, metric by metric. (Not
    /// the best round: a shared machine has fast and slow spells, and a
    /// case that met a fast one would be compared with a floor that did
    /// not.)
    pub fn median(rounds: &[Measurement]) -> Option<Measurement> {
        let first = rounds.first()?;
        Some(Measurement {
            name: first.name.clone(),
            rtt_p50_ns: median_of(rounds.iter().map(|m| m.rtt_p50_ns)),
            rtt_p99_ns: median_of(rounds.iter().map(|m| m.rtt_p99_ns)),
            msgs_per_s_64b: median_of(rounds.iter().map(|m| m.msgs_per_s_64b)),
            gb_per_s_1mib: median_of(rounds.iter().map(|m| m.gb_per_s_1mib)),
            calls_per_s: median_of(rounds.iter().map(|m| m.calls_per_s)),
            cpu_per_call_ns: median_of(rounds.iter().map(|m| m.cpu_per_call_ns)),
            msgs_per_s_64b_16: median_of(rounds.iter().map(|m| m.msgs_per_s_64b_16)),
            scale: first.scale.clone(),
        })
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::other(what.to_string())
}

/// The peer's side: serve until told to quit.
pub fn serve(link: &mut dyn Link) -> io::Result<()> {
    let mut buf = Vec::with_capacity(MIB);
    let mut count = 0u64;
    let mut echo = [0u8; ECHO];
    loop {
        let mut len = 0;
        link.recv_view(&mut buf, &mut |m| {
            len = m.len();
            if len == ECHO {
                echo.copy_from_slice(m);
            } else if len > ECHO {
                // Touch the message like a consumer would (first and last byte).
                std::hint::black_box((m[0], m[len - 1]));
            }
        })?;
        match len {
            ECHO => link.send(&echo)?,
            END => {
                link.send(&count.to_le_bytes())?;
                count = 0;
            }
            QUIT => return Ok(()),
            _ => count += 1,
        }
    }
}

/// The `p` quantile (0..=1) of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64
}

fn end_batch(link: &mut dyn Link, buf: &mut Vec<u8>, expect: u64) -> io::Result<()> {
    link.send(&[0u8; END])?;
    let mut got = None;
    link.recv_view(buf, &mut |m| got = m.try_into().ok().map(u64::from_le_bytes))?;
    let got = got.ok_or_else(|| bad("bad batch ack"))?;
    if got != expect {
        return Err(bad(&format!("peer counted {got} messages, {expect} were sent")));
    }
    Ok(())
}

/// Time round trips (`one`), after an untimed warm-up (a tenth of them,
/// or of the budget): each in ns, sorted.
pub fn round_trips(plan: Plan, mut one: impl FnMut() -> io::Result<()>) -> io::Result<Vec<u64>> {
    let warm = Instant::now();
    for i in 0..plan.round_trips / 10 {
        if i >= 10 && warm.elapsed() > plan.budget / 10 {
            break;
        }
        one()?;
    }
    let mut rtts = Vec::with_capacity(plan.round_trips);
    let start = Instant::now();
    for i in 0..plan.round_trips {
        if i >= 100 && start.elapsed() > plan.budget {
            break;
        }
        let t = Instant::now();
        one()?;
        rtts.push(t.elapsed().as_nanos() as u64);
    }
    rtts.sort_unstable();
    Ok(rtts)
}

/// The driver's side: measure, then tell the peer to quit.
pub fn measure(name: &str, link: &mut dyn Link, plan: Plan, tick: &mut dyn FnMut()) -> io::Result<Measurement> {
    let mut buf = Vec::with_capacity(MIB);
    // Round trips.
    // The driver only looks at each echo, so it reads it in place where
    // the link can (like the peer), and copies it where it cannot.
    let ping = 0x0123_4567_89ab_cdefu64.to_le_bytes();
    let rtts = round_trips(plan, || {
        let mut same = false;
        link.send(&ping)?;
        link.recv_view(&mut buf, &mut |m| same = m == ping)?;
        if same { Ok(()) } else { Err(bad("echo differs")) }
    })?;
    tick();
    // 64-byte stream.
    let small = [0x5au8; 64];
    let t = Instant::now();
    let mut n = 0u64;
    while (n as usize) < plan.small && (n < 100 || t.elapsed() < plan.budget) {
        link.send(&small)?;
        n += 1;
    }
    end_batch(link, &mut buf, n)?;
    let msgs_per_s_64b = n as f64 / t.elapsed().as_secs_f64();
    tick();
    // 1 MiB stream; each message is written anew, as a producer would: its
    // index, then zeros (the buffer keeps the zeros, so a copying link
    // copies it; a loan writes the message in its place).
    let piece = link.max_message().min(MIB);
    let mut big = vec![0u8; MIB];
    let mut send_big = |link: &mut dyn Link, i: usize| -> io::Result<u64> {
        big[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let mut pieces = 0;
        for (k, chunk) in big.chunks(piece).enumerate() {
            let head = if k == 0 { &chunk[..8] } else { &[][..] };
            link.send_built(head, chunk)?;
            pieces += 1;
        }
        Ok(pieces)
    };
    // Warm-up (a cold transport, a peer still asleep), not timed.
    let mut sent = 0u64;
    for i in 0..(plan.large / 10).clamp(1, 8) {
        sent += send_big(link, i)?;
    }
    end_batch(link, &mut buf, sent)?;
    let t = Instant::now();
    let mut sent = 0u64;
    let mut large = 0usize;
    for i in 0..plan.large {
        if i >= 4 && t.elapsed() > plan.budget {
            break;
        }
        large += 1;
        sent += send_big(link, i)?;
    }
    end_batch(link, &mut buf, sent)?;
    let gb_per_s_1mib = (large * MIB) as f64 / t.elapsed().as_secs_f64() / 1e9;
    tick();
    link.send(&[0u8; QUIT])?;
    link.flush()?;
    Ok(Measurement {
        rtt_p50_ns: Some(percentile(&rtts, 0.50)),
        rtt_p99_ns: Some(percentile(&rtts, 0.99)),
        msgs_per_s_64b: Some(msgs_per_s_64b),
        gb_per_s_1mib: Some(gb_per_s_1mib),
        ..Measurement::empty(name)
    })
}
