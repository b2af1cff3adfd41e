//! Framing a byte stream: what pipes, FIFOs and stream sockets (TCP, Unix
//! stream) share on the receiver's side. The kernel hands over bytes in
//! any cut; frames are found by their header (`wire::stream_frame_len`,
//! pure), a frame declaring more than the receiver's limit is skipped as
//! it arrives (never kept), and a header that breaks the format means the
//! framing is lost: reported once, then the end of the stream.

use std::collections::HashMap;
use std::io;
use std::os::fd::BorrowedFd;

use crate::error::{Error, WireError};
use crate::sys::Deadline;
use crate::sys::pipe as sys;
use crate::sys::socket::{self, Received};
use crate::wire::{self, Kind};

/// Bytes read at a time.
const CHUNK: usize = 64 * 1024;

/// Writers whose fragmented messages a receiver holds at once at most.
const WRITERS_MOST: usize = 64;

/// What a receiver has read of the stream and not yet handed out.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    /// Read bytes live in `bytes[start..end]`; the rest is room.
    bytes: Vec<u8>,
    start: usize,
    end: usize,
    /// Whole frames before this index were looked at by `saw_ahead`.
    scanned: usize,
    /// Bytes of a refused frame still to throw away as they come.
    skip: usize,
    /// Every writer is gone.
    pub eof: bool,
    /// The framing was lost.
    pub broken: bool,
    /// Fragmented messages being put back together, by writer: the
    /// message number and what came of it (`None`: refused, skipping).
    pieces: HashMap<u64, (u32, Option<Vec<u8>>)>,
}

impl Stream {
    pub fn unread(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.scanned = self.scanned.max(self.start);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.scanned = 0;
        }
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        self.scanned = 0;
        self.skip = 0;
    }

    /// True if a whole frame of `kind` waits behind the first, among the
    /// frames not looked at before (each header is read once).
    pub fn saw_ahead(&mut self, kind: Kind) -> bool {
        let mut seen = false;
        if self.skip > 0 {
            return false;
        }
        while let Ok(Some((total, _))) = wire::stream_frame_len(&self.bytes[self.scanned..self.end]) {
            if self.end - self.scanned < total {
                break;
            }
            seen |= self.bytes[self.scanned + 3] == kind as u8;
            self.scanned += total;
        }
        seen
    }

    /// Nothing is held: the end may move to another process.
    pub fn is_idle(&self) -> bool {
        self.unread().is_empty() && self.skip == 0
    }

    /// A whole frame waits here (already read from the kernel).
    pub fn has_frame(&self) -> bool {
        let s = self.unread();
        wire::stream_frame_len(s).is_ok_and(|l| l.is_some_and(|(total, _)| s.len() >= total))
    }

    /// Every writer is gone and everything was handed out, or the framing
    /// was lost.
    pub fn gone(&self) -> bool {
        self.broken || (self.eof && self.unread().is_empty())
    }

    /// A whole frame at the front, if there is one; refuses (and starts
    /// skipping) a frame over `limit`, and breaks on a bad header.
    fn next_frame(&mut self, limit: usize) -> Result<Option<usize>, WireError> {
        if self.skip > 0 {
            let n = self.skip.min(self.unread().len());
            self.skip -= n;
            self.consume(n);
            if self.skip > 0 {
                return Ok(None);
            }
        }
        match wire::stream_frame_len(self.unread()) {
            Ok(None) => Ok(None),
            Ok(Some((total, len))) if len > limit => {
                self.skip = total;
                Err(WireError::TooLarge { size: len, limit })
            }
            Ok(Some((total, _))) => Ok((self.unread().len() >= total).then_some(total)),
            Err(e) => {
                self.broken = true;
                self.bytes = Vec::new();
                self.clear();
                Err(e)
            }
        }
    }

    /// Take a fragment: `Some(frame)` when it completes its message.
    fn fragment(&mut self, frame: &[u8], limit: usize) -> Result<Option<Vec<u8>>, WireError> {
        let (f, piece) = wire::parse_fragment(frame)?;
        let most = limit.saturating_add(wire::HEADER_LEN + wire::MAX_RIGHTS);
        if f.offset == 0 {
            if self.pieces.len() >= WRITERS_MOST && !self.pieces.contains_key(&f.writer) {
                // A writer gone halfway: its message was never sent.
                let old = *self.pieces.keys().next().expect("full");
                self.pieces.remove(&old);
            }
            if f.total as usize > most {
                self.pieces.insert(f.writer, (f.message, None));
                return Err(WireError::TooLarge { size: (f.total as usize).saturating_sub(wire::HEADER_LEN), limit });
            }
            self.pieces.insert(f.writer, (f.message, Some(Vec::with_capacity(piece.len()))));
        }
        let Some((message, Some(bytes))) = self.pieces.get_mut(&f.writer) else { return Ok(None) };
        if *message != f.message || bytes.len() != f.offset as usize {
            // Not the piece that follows (its writer gave the message up).
            self.pieces.remove(&f.writer);
            return Ok(None);
        }
        bytes.extend_from_slice(piece);
        if bytes.len() < f.total as usize {
            return Ok(None);
        }
        Ok(self.pieces.remove(&f.writer).and_then(|(_, b)| b))
    }

    /// Read what the kernel has (at most one chunk): `Ok(false)` if
    /// nothing now. The end of the stream (or a reset connection: the
    /// peer died) sets `eof`.
    fn fill(&mut self, fd: BorrowedFd<'_>) -> io::Result<bool> {
        if self.start > 0 && self.bytes.len() - self.end < CHUNK {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scanned -= self.start;
            self.start = 0;
        }
        if self.bytes.len() - self.end < CHUNK {
            // Zeroed only when the buffer grows.
            let want = (self.end + CHUNK).max(self.bytes.len() * 2);
            self.bytes.resize(want, 0);
        }
        match sys::read_some(fd, &mut self.bytes[self.end..]) {
            Ok(0) => {
                self.eof = true;
                Ok(true)
            }
            Ok(n) => {
                self.end += n;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                self.eof = true;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }
}

/// Take the next frame of the stream read from `fd` into `out` (the frame
/// is `out[..len]`); `None` if none is whole yet and `block` is false. A
/// zero-length frame is the end of the stream. `fragments`: put pipe
/// fragments back together (else a fragment is handed on, and refused by
/// the decoder as a frame of the wrong kind).
pub(crate) fn recv(
    fd: BorrowedFd<'_>,
    s: &mut Stream,
    out: &mut Vec<u8>,
    block: bool,
    limit: usize,
    fragments: bool,
) -> Result<Option<Received>, Error> {
    loop {
        if s.broken {
            return Ok(Some(Received::default()));
        }
        if let Some(total) = s.next_frame(limit)? {
            out.clear();
            out.extend_from_slice(&s.unread()[..total]);
            s.consume(total);
            if fragments && out.get(3) == Some(&(Kind::Fragment as u8)) {
                match s.fragment(out, limit)? {
                    Some(whole) => *out = whole,
                    None => continue,
                }
            }
            return Ok(Some(Received { len: out.len(), ..Received::default() }));
        }
        if s.eof {
            let partial = s.unread().len();
            if partial == 0 && s.skip == 0 {
                return Ok(Some(Received::default()));
            }
            // The last writer died inside a frame.
            s.clear();
            return Err(WireError::Truncated(partial).into());
        }
        if !s.fill(fd)? {
            if !block {
                return Ok(None);
            }
            socket::poll(&[fd], Deadline::Forever)?;
        }
    }
}
