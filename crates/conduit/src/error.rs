//! Error types shared by every part of conduit.

use std::io;

/// Something went wrong below the message level: a bad frame, a message
/// that cannot be encoded or decoded, or an operating-system error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A frame arrived that breaks the wire format (see `docs/WIRE.md`).
    /// The frame was dropped; the channel keeps working.
    #[error("malformed frame: {0}")]
    Wire(#[from] WireError),
    /// The message could not be serialized.
    #[error("cannot encode message: {0}")]
    Encode(postcard::Error),
    /// The payload is well-formed on the wire but is not a valid `T`.
    #[error("cannot decode message: {0}")]
    Decode(postcard::Error),
    /// The message is larger than [`crate::wire::MAX_PAYLOAD`].
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Encoded size of the message.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The message carries more rights than one frame can.
    #[error("message carries {count} rights, the limit is {limit}")]
    TooManyRights {
        /// Rights in the message.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// Per-message credentials are not available on this channel.
    #[error(
        "no sender credentials on this channel: only Unix socket channels carry them (on shared memory and pipes the kernel names no sender; a TCP peer is an address: Receiver::peer)"
    )]
    NoCredentials,
    /// The transport cannot do this (e.g. carry a right through a pipe).
    /// Nothing was sent.
    #[error("not supported by this transport: {0}")]
    Unsupported(&'static str),
    /// A FIFO has no reader (opening it for sending without waiting).
    #[error("no process has the FIFO {} open for reading", .0.display())]
    NoReader(std::path::PathBuf),
    /// The listener was shut down ([`crate::net::Stopper::stop`]).
    #[error("the listener was shut down")]
    Shutdown,
    /// A peer on the network broke the connection protocol (a bad
    /// greeting, a greeting for another kind of connection).
    #[error("connection refused by protocol: {0}")]
    Handshake(&'static str),
    /// The link to a parent or child process could not be set up.
    #[error("process link: {0}")]
    Link(String),
    /// An operating-system error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Error::Io(e.into())
    }
}

/// What exactly was wrong with a received frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than a header.
    #[error("truncated frame: {0} bytes, shorter than the {len}-byte header", len = crate::wire::HEADER_LEN)]
    Truncated(usize),
    /// A zero-length datagram (conduit never sends one).
    #[error("empty frame")]
    Empty,
    /// The first two bytes are not conduit's magic number.
    #[error("bad magic {0:#06x} (expected {m:#06x})", m = crate::wire::MAGIC)]
    BadMagic(u16),
    /// A wire-format version this build does not speak.
    #[error("unsupported wire version {0} (this build speaks {v})", v = crate::wire::VERSION)]
    Version(u8),
    /// A frame kind this build does not know, or one not valid here.
    #[error("unexpected frame kind {0}")]
    Kind(u8),
    /// Flag bits this build does not know.
    #[error("unknown flag bits {0:#06x}")]
    Flags(u16),
    /// The length field disagrees with the bytes that arrived.
    #[error("length field says {declared} bytes but the frame carries {actual}")]
    Length {
        /// What the header claims.
        declared: usize,
        /// What arrived.
        actual: usize,
    },
    /// The frame is bigger than the receiver accepts.
    #[error("oversized frame: {size} bytes, limit {limit}")]
    TooLarge {
        /// Size of the frame (or out-of-line payload).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The CRC32C does not match: the frame was corrupted.
    #[error("checksum mismatch: header says {expected:#010x}, content gives {actual:#010x}")]
    Checksum {
        /// Checksum in the header.
        expected: u32,
        /// Checksum of what arrived.
        actual: u32,
    },
    /// The number of descriptors does not match the rights declared.
    #[error("frame declares {declared} descriptors but {actual} arrived")]
    Descriptors {
        /// Descriptors the header implies.
        declared: usize,
        /// Descriptors received.
        actual: usize,
    },
    /// The kernel dropped descriptors (control buffer too small).
    #[error("descriptors were truncated by the kernel")]
    DescriptorsTruncated,
    /// A shared-memory ring holds data that breaks its protocol.
    #[error("corrupt ring: {0}")]
    BadRing(&'static str),
    /// A right in the frame is not a usable conduit port.
    #[error("right #{index} is invalid: {why}")]
    BadRight {
        /// Position in the frame's rights table.
        index: usize,
        /// What was wrong with it.
        why: &'static str,
    },
}
