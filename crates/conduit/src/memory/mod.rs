//! Shared memory: sealed segments, the ring, and waiting.
//!
//! * [`Segment`] / [`NamedSegment`]: memory to share, safely.
//! * [`ring`]: the bounded producer/consumer buffer across processes.
//! * [`queue`]: a typed message queue with receive-by-type on a ring, any
//!   number of senders and receivers (the storage of the broker's mailboxes).
//! * [`WaitStrategy`]: how a side that must wait does so — spin,
//!   park on a futex, or spin briefly and then park (the default).
//!
//! The shared-memory flavor of the channel API is in
//! [`crate::channel::shm`].

pub mod queue;
pub mod ring;
pub mod ring_core;
mod segment;

pub use segment::{NamedSegment, Segment};

use std::time::Duration;

/// A thread id that no live thread has (a lock "held" by a dead owner).
#[cfg(test)]
pub(crate) fn dead_tid() -> u32 {
    std::thread::spawn(crate::sys::process::gettid).join().unwrap()
}

/// How a channel end waits when it must (no message, no room, no credit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Spin, never sleep: the lowest latency, and a core kept busy.
    Spin,
    /// Sleep on a futex at once: no spinning at all.
    Park,
    /// Spin for up to this long, then sleep on a futex (the default, with
    /// 20 µs). A waker makes no system call when nobody sleeps. The budget
    /// stretches with the traffic: an end that slept and was woken soon
    /// after (a steady stream whose messages come a little slower than the
    /// budget, e.g. large ones) spins half as long again as that wait the
    /// next time, up to 8 times the budget; a long sleep (idle) resets it.
    Adaptive(Duration),
}

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy::Adaptive(Duration::from_micros(20))
    }
}
