//! Errors of channel operations. Every send error hands the message back.

use std::fmt;

use crate::error::Error;

macro_rules! send_error {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub enum $name<T> {
            $($(#[$vdoc])* $variant(T),)*
            /// The receiver is gone: nobody will ever take the message.
            Disconnected(T),
            /// The message could not be sent (encoding, size, system error).
            Failed(T, Error),
        }

        impl<T> $name<T> {
            /// The message that was not sent.
            pub fn into_inner(self) -> T {
                match self {
                    $($name::$variant(t) => t,)*
                    $name::Disconnected(t) | $name::Failed(t, _) => t,
                }
            }

            /// True if the receiver is gone.
            pub fn is_disconnected(&self) -> bool {
                matches!(self, $name::Disconnected(_))
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$variant(_) => f.write_str($text),)*
                    $name::Disconnected(_) => f.write_str("sending on a disconnected channel"),
                    $name::Failed(_, e) => write!(f, "send failed: {e}"),
                }
            }
        }

        impl<T: fmt::Debug> std::error::Error for $name<T> {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $name::Failed(_, e) => Some(e),
                    _ => None,
                }
            }
        }
    };
}

send_error! {
    /// Error of [`Sender::send`](super::Sender::send).
    SendError {}
}

send_error! {
    /// Error of [`Sender::try_send`](super::Sender::try_send).
    TrySendError {
        /// The channel is full (or, for a rendezvous, no receiver is waiting).
        Full => "sending on a full channel",
    }
}

send_error! {
    /// Error of [`Sender::send_timeout`](super::Sender::send_timeout) and
    /// [`Sender::send_deadline`](super::Sender::send_deadline).
    SendTimeoutError {
        /// No room (or no receiver) came before the time limit.
        Timeout => "timed out sending on a full channel",
    }
}

macro_rules! recv_error {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, thiserror::Error)]
        pub enum $name {
            $($(#[$vdoc])* #[error($text)] $variant,)*
            /// Every sender is gone and the queue is empty.
            #[error("receiving on an empty and disconnected channel")]
            Disconnected,
            /// A frame arrived but was rejected (malformed, corrupted, not a
            /// `T`). It was dropped; the channel keeps working.
            #[error("receive failed: {0}")]
            Failed(#[from] Error),
        }
    };
}

recv_error! {
    /// Error of [`Receiver::recv`](super::Receiver::recv).
    RecvError {}
}

recv_error! {
    /// Error of [`Receiver::try_recv`](super::Receiver::try_recv).
    TryRecvError {
        /// Nothing to receive right now.
        Empty => "receiving on an empty channel",
    }
}

recv_error! {
    /// Error of [`Receiver::recv_timeout`](super::Receiver::recv_timeout) and
    /// [`Receiver::recv_deadline`](super::Receiver::recv_deadline).
    RecvTimeoutError {
        /// Nothing came before the time limit.
        Timeout => "timed out waiting on a channel",
    }
}

/// Internal outcome of a send, mapped onto the public error of each method.
pub(crate) enum SendFail {
    Full,
    Disconnected,
    Failed(Error),
}

/// Internal outcome of a receive.
pub(crate) enum RecvFail {
    Empty,
    Disconnected,
    Failed(Error),
}

impl SendFail {
    pub(crate) fn send<T>(self, t: T) -> SendError<T> {
        match self {
            SendFail::Full | SendFail::Disconnected => SendError::Disconnected(t),
            SendFail::Failed(e) => SendError::Failed(t, e),
        }
    }
    pub(crate) fn try_send<T>(self, t: T) -> TrySendError<T> {
        match self {
            SendFail::Full => TrySendError::Full(t),
            SendFail::Disconnected => TrySendError::Disconnected(t),
            SendFail::Failed(e) => TrySendError::Failed(t, e),
        }
    }
    pub(crate) fn send_timeout<T>(self, t: T) -> SendTimeoutError<T> {
        match self {
            SendFail::Full => SendTimeoutError::Timeout(t),
            SendFail::Disconnected => SendTimeoutError::Disconnected(t),
            SendFail::Failed(e) => SendTimeoutError::Failed(t, e),
        }
    }
}

impl RecvFail {
    pub(crate) fn recv(self) -> RecvError {
        match self {
            RecvFail::Empty | RecvFail::Disconnected => RecvError::Disconnected,
            RecvFail::Failed(e) => RecvError::Failed(e),
        }
    }
    pub(crate) fn try_recv(self) -> TryRecvError {
        match self {
            RecvFail::Empty => TryRecvError::Empty,
            RecvFail::Disconnected => TryRecvError::Disconnected,
            RecvFail::Failed(e) => TryRecvError::Failed(e),
        }
    }
    pub(crate) fn recv_timeout(self) -> RecvTimeoutError {
        match self {
            RecvFail::Empty => RecvTimeoutError::Timeout,
            RecvFail::Disconnected => RecvTimeoutError::Disconnected,
            RecvFail::Failed(e) => RecvTimeoutError::Failed(e),
        }
    }
}
