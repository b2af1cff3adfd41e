//! Asymmetric memory barriers (`membarrier(2)`).
//!
//! Every sleeper protocol on a ring is a Dekker pair: the fast side (a
//! producer that commits, a consumer that releases, an owner that unlocks)
//! stores, then loads a sleepers' count; the slow side (a waiter about to
//! sleep) stores its count, then loads the ring's state. Each side needs a
//! full fence between its store and its load, or both may read old values
//! and the sleeper is never woken. A full fence drains the store buffer,
//! which, on the message path, waits for the message's cache lines: that
//! is most of what a send costs.
//!
//! So the fence is made asymmetric. The fast side ([`light`]) keeps only a
//! compiler fence: program order. The slow side ([`heavy`]) calls
//! `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which makes every CPU
//! running a thread of a registered process pass a full barrier before it
//! returns (a thread not running passed one when it was switched out).
//! Whatever point of the fast side's program the barrier hits, either its
//! store is visible to the sleeper's load, or the sleeper's store is
//! visible to its load. A sleeper pays about a microsecond, once, before
//! it sleeps — it was going to sleep for tens anyway.
//!
//! A process takes part by registering ([`register`], done when it first
//! maps a ring). If membarrier does not work there (a kernel before 4.16,
//! a seccomp filter), [`light`] is a full fence in that process, which is
//! correct against any slow side, and its [`heavy`] says it could not
//! order the others: its sleepers then cap each sleep at
//! [`UNORDERED_NAP`] and look again (a fast side in another, registered
//! process may have missed them).

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicU8, compiler_fence, fence};
use std::time::{Duration, Instant};

use rustix::thread::{MembarrierCommand, membarrier};

use super::Deadline;

const UNKNOWN: u8 = 0;
const REGISTERED: u8 = 1;
const UNAVAILABLE: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// How long a sleeper sleeps at most when [`heavy`] could not order
/// memory (its wake-up may have been missed).
pub const UNORDERED_NAP: Duration = Duration::from_millis(1);

/// `wait`, cut to [`UNORDERED_NAP`] from now (for a sleeper whose
/// wake-up a waker may miss).
pub fn nap(wait: Deadline) -> Deadline {
    let soon = Instant::now() + UNORDERED_NAP;
    match wait {
        Deadline::Until(t) if t < soon => wait,
        Deadline::Never => wait,
        _ => Deadline::Until(soon),
    }
}

/// Take part in asymmetric fences (once per process; later calls are a
/// load). Call before this process's first [`light`] on shared memory.
pub fn register() {
    if STATE.load(Acquire) != UNKNOWN {
        return;
    }
    // Both commands must work here: registering makes our fast sides
    // cheap, and this process's sleepers rely on the expedited barrier.
    let works = membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok()
        && membarrier(MembarrierCommand::GlobalExpedited).is_ok();
    let state = if works { REGISTERED } else { UNAVAILABLE };
    STATE.store(state, Release);
}

/// True if this process's [`heavy`] fences order memory (it registered).
#[inline]
pub fn trusted() -> bool {
    STATE.load(Relaxed) == REGISTERED
}

/// The fast side's fence between a store and a load of a Dekker pair.
#[inline]
pub fn light() {
    if trusted() {
        compiler_fence(SeqCst);
    } else {
        fence(SeqCst);
    }
}

/// The slow side's fence: a full barrier here and on every CPU running a
/// registered process. `false` if the kernel refused (then a sleeper must
/// not trust a fast side to wake it: see [`UNORDERED_NAP`]).
pub fn heavy() -> bool {
    fence(SeqCst);
    let ok = trusted() && membarrier(MembarrierCommand::GlobalExpedited).is_ok();
    fence(SeqCst);
    ok
}
