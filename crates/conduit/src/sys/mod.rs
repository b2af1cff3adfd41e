//! The only place where conduit talks to the kernel.
//!
//! Every system call goes through [`rustix`]; every `unsafe` block of the
//! crate lives in this module tree and carries a `// SAFETY:` comment. The
//! rest of the crate sees typed, safe functions over `OwnedFd`/`BorrowedFd`.

pub mod barrier;
pub mod futex;
pub mod memfd;
pub mod monitor;
pub mod mqueue;
pub mod net;
pub mod pipe;
pub mod process;
pub mod signal;
pub mod socket;
pub mod sysv;

use std::time::{Duration, Instant};

/// How long a blocking operation may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// Return at once.
    Never,
    /// Wait until this instant.
    Until(Instant),
    /// Wait as long as it takes.
    Forever,
}

impl Deadline {
    /// The time left, `None` meaning "no limit"; `Some(ZERO)` once passed.
    pub fn remaining(self) -> Option<Duration> {
        match self {
            Deadline::Never => Some(Duration::ZERO),
            Deadline::Until(t) => Some(t.saturating_duration_since(Instant::now())),
            Deadline::Forever => None,
        }
    }

    /// True when the deadline has passed (never true for `Forever`).
    pub fn expired(self) -> bool {
        self.remaining() == Some(Duration::ZERO)
    }
}
