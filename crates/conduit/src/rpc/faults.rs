//! A seeded fault injector between an RPC client and its server (test
//! support, and a way to watch the semantics hold): a relay thread that
//! drops, duplicates, holds back (reorders), corrupts and delays the
//! messages it forwards, each with its own probability, from one seed —
//! the same seed, the same faults.
//!
//! Corruption is real: the relay writes the message as a frame with one
//! byte of its payload flipped, straight to the next channel's socket, so
//! the receiver's checksum catches it (socket and pipe channels; on other
//! transports a corruption is a drop).

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::channel::{Receiver, Sender};

/// What to inject, per message forwarded.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// The seed of the sequence of choices.
    pub seed: u64,
    /// Probability of dropping a message.
    pub drop: f64,
    /// Of sending it twice.
    pub duplicate: f64,
    /// Of holding it back behind the next one.
    pub reorder: f64,
    /// Of sending it with a corrupted byte.
    pub corrupt: f64,
    /// Of delaying it by up to `max_delay`.
    pub delay: f64,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Faults {
    /// No faults, seed `seed`.
    pub fn none(seed: u64) -> Faults {
        Faults { seed, drop: 0.0, duplicate: 0.0, reorder: 0.0, corrupt: 0.0, delay: 0.0, max_delay: Duration::ZERO }
    }
}

/// Faults injected so far by a relay.
#[derive(Debug, Default)]
pub struct Injected {
    /// Messages forwarded (as sent by the source).
    pub forwarded: AtomicU64,
    /// Dropped.
    pub dropped: AtomicU64,
    /// Sent twice.
    pub duplicated: AtomicU64,
    /// Held back behind the next.
    pub reordered: AtomicU64,
    /// Sent corrupted.
    pub corrupted: AtomicU64,
    /// Delayed.
    pub delayed: AtomicU64,
}

impl Injected {
    /// Every fault of any kind.
    pub fn total(&self) -> u64 {
        [&self.dropped, &self.duplicated, &self.reordered, &self.corrupted, &self.delayed]
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }
}

/// xorshift64*: small, seeded, good enough to pick faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// Forward every message from `from` to `to` on a thread of its own,
/// injecting `faults`; ends when either side goes. Returns the counts.
pub fn relay<T>(from: Receiver<T>, to: Sender<T>, faults: Faults) -> Arc<Injected>
where
    T: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    let injected = Arc::new(Injected::default());
    let counts = Arc::clone(&injected);
    let _ = std::thread::Builder::new().name("conduit-faults".into()).spawn(move || {
        let mut rng = Rng(faults.seed.max(1));
        let mut held: Option<T> = None;
        let n = &counts;
        for msg in from.iter() {
            n.forwarded.fetch_add(1, Ordering::Relaxed);
            if rng.chance(faults.drop) {
                n.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if held.is_none() && rng.chance(faults.reorder) {
                n.reordered.fetch_add(1, Ordering::Relaxed);
                held = Some(msg);
                continue;
            }
            if rng.chance(faults.delay) {
                n.delayed.fetch_add(1, Ordering::Relaxed);
                let us = faults.max_delay.as_micros().max(1) as u64;
                std::thread::sleep(Duration::from_micros(rng.next() % us));
            }
            let ok = if rng.chance(faults.corrupt) {
                n.corrupted.fetch_add(1, Ordering::Relaxed);
                corrupt(&to, &msg, &mut rng)
            } else {
                let twice = rng.chance(faults.duplicate);
                if twice {
                    n.duplicated.fetch_add(1, Ordering::Relaxed);
                    let _ = to.send(msg.clone());
                }
                to.send(msg).is_ok()
            };
            if !ok {
                return;
            }
            if let Some(h) = held.take()
                && to.send(h).is_err()
            {
                return;
            }
        }
        if let Some(h) = held.take() {
            let _ = to.send(h);
        }
    });
    injected
}

/// Send `msg` as a frame with one payload byte flipped (the receiver's
/// checksum fails). False if the receiver is gone.
fn corrupt<T: Serialize>(to: &Sender<T>, msg: &T, rng: &mut Rng) -> bool {
    if to.is_disconnected() {
        return false;
    }
    // Only where a write to the descriptor is the data path.
    if !matches!(
        to.tx_link(),
        crate::channel::transport::TxLink::Seqpacket(_)
            | crate::channel::transport::TxLink::Local(_)
            | crate::channel::transport::TxLink::Pipe(_)
    ) {
        return true;
    }
    let Ok(mut frame) = crate::wire::encode_frame(msg) else { return true };
    if frame.len() > crate::wire::HEADER_LEN {
        let i = crate::wire::HEADER_LEN + (rng.next() as usize) % (frame.len() - crate::wire::HEADER_LEN);
        frame[i] ^= 0x5a;
        let _ = rustix::io::write(to.as_fd(), &frame);
    }
    true
}
