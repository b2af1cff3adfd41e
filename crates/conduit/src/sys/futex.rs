//! Futexes on shared memory (not `FUTEX_PRIVATE`: waiters and wakers may
//! be different processes).

use std::sync::atomic::AtomicU32;

use rustix::thread::futex;

use super::Deadline;

/// Sleep while `word == expected`, until woken or `wait` runs out. Spurious
/// returns are possible; callers re-check their condition.
pub fn wait(word: &AtomicU32, expected: u32, wait: Deadline) {
    let ts = match wait.remaining() {
        None => None,
        Some(d) if d.is_zero() => return,
        Some(d) => Some(rustix::time::Timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: d.subsec_nanos() as _,
        }),
    };
    // EAGAIN (value changed), EINTR and ETIMEDOUT all mean "look again".
    let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
}

/// Wake up to `n` sleepers on `word`.
pub fn wake(word: &AtomicU32, n: u32) {
    let _ = futex::wake(word, futex::Flags::empty(), n);
}
