//! The wire format: one `SOCK_SEQPACKET` datagram per frame.
//!
//! ```text
//!  0      2     3     4       6        8          12        16
//!  +------+-----+-----+-------+--------+----------+---------+---------------+----------+
//!  |magic | ver |kind | flags | rights |  length  | crc32c  | payload (len) | rights   |
//!  |C0D1  |  1  |     |       |  (n)   |  (u32)   |         | postcard      | n bytes  |
//!  +------+-----+-----+-------+--------+----------+---------+---------------+----------+
//! ```
//!
//! All integers little-endian. `crc32c` covers header bytes 0..12, the
//! payload and the rights table. With the `OUT_OF_LINE` flag the payload is
//! not in the datagram but in a memfd sealed against writes, passed as the
//! last descriptor, and the checksum covers the header and rights only.
//! Each right travels as one to three descriptors (`SCM_RIGHTS`), by kind.
//! Shared-memory channels put the same frames in their ring. See
//! `docs/WIRE.md`.

use crate::error::WireError;

/// First two bytes of every frame.
pub const MAGIC: u16 = 0xC0D1;
/// The wire-format version this build speaks.
pub const VERSION: u8 = 1;
/// Bytes in the fixed header.
pub const HEADER_LEN: usize = 16;
/// Payloads up to this size travel inside the datagram.
pub const INLINE_MAX: usize = 64 * 1024;
/// Largest payload a message may have (out of line above [`INLINE_MAX`]).
pub const MAX_PAYLOAD: usize = 1 << 30;
/// Most rights (ports) one message may carry.
pub const MAX_RIGHTS: usize = 64;
/// Largest datagram a receiver accepts.
pub const MAX_FRAME: usize = HEADER_LEN + INLINE_MAX + MAX_RIGHTS;

/// Frame kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A message, receiver-bound.
    Data = 1,
    /// "Look again": receiver to senders, when room or a rendezvous opened.
    Wake = 2,
    /// Shared-memory channels: the descriptors of the next ring record
    /// that carries rights or an out-of-line payload.
    Carrier = 3,
    /// Pipes and FIFOs: one piece of a frame larger than `PIPE_BUF`
    /// (see [`Fragment`]).
    Fragment = 4,
    /// Stream links (TCP, Unix stream sockets): the receiver grants its
    /// senders more messages — a bounded channel's credits returned, or a
    /// rendezvous receiver's tokens. Payload: the count, u32 LE (see
    /// [`credit_frame`]).
    Credit = 5,
}

/// Flag: the payload is in a sealed memfd, the last descriptor.
pub const OUT_OF_LINE: u16 = 1;
/// Flag: no checksum was computed (`crc32c` is 0). Accepted only from a
/// shared-memory ring, where nothing is transmitted that could corrupt it.
pub const UNCHECKED: u16 = 2;
/// Flag (with `OUT_OF_LINE`): the payload is in the sender's reusable
/// bulk buffer, at offset 64; the receiver copies it out, then writes 0 to
/// the buffer's first word to hand it back (see `docs/WIRE.md`).
pub const BULK: u16 = 4;
const KNOWN_FLAGS: u16 = OUT_OF_LINE | UNCHECKED | BULK;

/// A parsed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Frame kind.
    pub kind: Kind,
    /// Flag bits.
    pub flags: u16,
    /// Number of rights carried.
    pub rights: usize,
    /// Payload length.
    pub len: usize,
    /// Checksum of header bytes 0..12, payload and rights table.
    pub crc: u32,
}

impl Header {
    /// True if the payload is out of line.
    #[inline]
    pub fn out_of_line(&self) -> bool {
        self.flags & OUT_OF_LINE != 0
    }

    /// True if the payload is in the sender's bulk buffer.
    #[inline]
    pub fn bulk(&self) -> bool {
        self.flags & BULK != 0
    }

    /// True if the frame carries no checksum.
    #[inline]
    pub fn unchecked(&self) -> bool {
        self.flags & UNCHECKED != 0
    }
}

/// Write a header in place into `buf[..16]`. The checksum is computed over
/// `buf[..12]`, then `payload`, then `rights`.
#[inline]
pub fn write_header(buf: &mut [u8], kind: Kind, flags: u16, payload: &[u8], rights: &[u8]) {
    write_header_len(buf, kind, flags, payload.len(), rights.len());
    let crc = if flags & UNCHECKED != 0 { 0 } else { checksum(&buf[..12], payload, rights) };
    buf[12..16].copy_from_slice(&crc.to_le_bytes());
}

/// Write the header of an out-of-line frame (payload of `len` bytes in a
/// sealed memory file) into `buf[..16]`: its checksum covers header bytes
/// 0..12 and `rights` only.
pub fn write_header_sized(buf: &mut [u8], kind: Kind, flags: u16, len: usize, rights: &[u8]) {
    write_header_len(buf, kind, flags, len, rights.len());
    let crc = if flags & UNCHECKED != 0 { 0 } else { checksum(&buf[..12], &[], rights) };
    buf[12..16].copy_from_slice(&crc.to_le_bytes());
}

/// Write the header of a plain ring frame (data, unchecked, inline, no
/// rights: what [`plain_ring_payload`] recognizes) into `buf[..16]`.
#[inline]
pub fn write_plain_header(buf: &mut [u8], len: usize) {
    write_header_len(buf, Kind::Data, UNCHECKED, len, 0);
    buf[12..16].copy_from_slice(&0u32.to_le_bytes());
}

/// The first eight header bytes: magic, version, kind, flags, rights.
const fn head8(kind: Kind, flags: u16, rights: u16) -> [u8; 8] {
    let (m, f, r) = (MAGIC.to_le_bytes(), flags.to_le_bytes(), rights.to_le_bytes());
    [m[0], m[1], VERSION, kind as u8, f[0], f[1], r[0], r[1]]
}

#[inline]
fn write_header_len(buf: &mut [u8], kind: Kind, flags: u16, len: usize, rights: usize) {
    buf[..8].copy_from_slice(&head8(kind, flags, rights as u16));
    buf[8..12].copy_from_slice(&(len as u32).to_le_bytes());
}

/// The payload of the commonest shared-memory frame — data, unchecked,
/// inline, no rights, its length exactly the rest of `frame` — or `None`
/// for anything else (which then takes the full path: [`parse`] and its
/// typed errors). One compare of the first eight header bytes.
#[inline]
pub fn plain_ring_payload(frame: &[u8]) -> Option<&[u8]> {
    let (head, payload) = frame.split_first_chunk::<HEADER_LEN>()?;
    const EXPECT: [u8; 8] = head8(Kind::Data, UNCHECKED, 0);
    let len = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) as usize;
    (head[..8] == EXPECT && len == payload.len()).then_some(payload)
}

/// The frame checksum.
pub fn checksum(head: &[u8], payload: &[u8], rights: &[u8]) -> u32 {
    let c = crc32c::crc32c(head);
    let c = crc32c::crc32c_append(c, payload);
    crc32c::crc32c_append(c, rights)
}

/// A whole frame for a message without rights and with an inline payload
/// (used for wake frames and by tests that forge frames).
pub fn simple_frame(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; HEADER_LEN + payload.len()];
    buf[HEADER_LEN..].copy_from_slice(payload);
    let (head, body) = buf.split_at_mut(HEADER_LEN);
    write_header(head, kind, 0, body, &[]);
    buf
}

/// Bytes of a fragment's own header, at the start of its payload.
pub const FRAGMENT_HEADER: usize = 20;

/// A fragment (kind 4): a piece of one frame too large to be written with
/// one atomic `write` to a pipe. Its payload starts with this header
/// (little-endian), then the piece. Pieces of one frame share `writer`
/// and `message`; pieces of different writers may interleave in the pipe,
/// and the receiver puts each writer's back together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// The writing end (unique among the writers of a pipe).
    pub writer: u64,
    /// The message's number, for that writer.
    pub message: u32,
    /// Where this piece goes in the whole frame.
    pub offset: u32,
    /// Bytes of the whole frame.
    pub total: u32,
}

impl Fragment {
    /// The header at the start of a fragment's payload.
    pub fn encode(&self) -> [u8; FRAGMENT_HEADER] {
        let mut b = [0u8; FRAGMENT_HEADER];
        b[..8].copy_from_slice(&self.writer.to_le_bytes());
        b[8..12].copy_from_slice(&self.message.to_le_bytes());
        b[12..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..20].copy_from_slice(&self.total.to_le_bytes());
        b
    }
}

/// Parse a fragment frame (pure): its header checked like any frame's,
/// its checksum verified, then the fragment header and the piece.
pub fn parse_fragment(frame: &[u8]) -> Result<(Fragment, &[u8]), WireError> {
    let (header, body) = parse(frame)?;
    if header.kind != Kind::Fragment || header.rights != 0 || header.out_of_line() || header.unchecked() {
        return Err(WireError::Kind(header.kind as u8));
    }
    verify(frame, &header, body, &[])?;
    let (head, piece) = body.split_first_chunk::<FRAGMENT_HEADER>().ok_or(WireError::Truncated(frame.len()))?;
    let word = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().expect("4 bytes"));
    let f = Fragment {
        writer: u64::from_le_bytes(head[..8].try_into().expect("8 bytes")),
        message: word(8),
        offset: word(12),
        total: word(16),
    };
    let end = f.offset as u64 + piece.len() as u64;
    if end > f.total as u64 {
        return Err(WireError::Length { declared: f.total as usize, actual: end as usize });
    }
    Ok((f, piece))
}

/// Split `frame` into fragment frames of at most `max` bytes each,
/// appended to `out` (for a pipe: `max` = `PIPE_BUF`).
pub fn fragment(frame: &[u8], writer: u64, message: u32, max: usize, out: &mut Vec<u8>) {
    let piece_max = max - HEADER_LEN - FRAGMENT_HEADER;
    for (k, piece) in frame.chunks(piece_max).enumerate() {
        let f = Fragment { writer, message, offset: (k * piece_max) as u32, total: frame.len() as u32 };
        let start = out.len();
        out.resize(start + HEADER_LEN, 0);
        out.extend_from_slice(&f.encode());
        out.extend_from_slice(piece);
        let (head, body) = out[start..].split_at_mut(HEADER_LEN);
        write_header(head, Kind::Fragment, 0, body, &[]);
    }
}

/// The wake frame (kind 2, no payload), made once.
pub fn wake_frame() -> &'static [u8] {
    static WAKE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    WAKE.get_or_init(|| simple_frame(Kind::Wake, &[]))
}

/// A whole data frame (header, postcard payload, checksum) holding `msg`:
/// what a datagram or a kernel queue's message carries.
pub fn encode_frame<T: serde::Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, crate::Error> {
    let payload = postcard::to_allocvec(msg).map_err(crate::Error::Encode)?;
    Ok(simple_frame(Kind::Data, &payload))
}

/// The message in a whole data frame without rights: pure, for any bytes
/// (checked by [`parse_frame`], then decoded).
pub fn decode_frame<T: serde::de::DeserializeOwned>(frame: &[u8], limit: usize) -> Result<T, crate::Error> {
    let view = parse_frame(frame, false, limit)?;
    if !view.rights.is_empty() || view.header.out_of_line() {
        return Err(crate::Error::Unsupported("this frame may not carry rights or out-of-line payloads"));
    }
    postcard::from_bytes(view.inline.unwrap_or(&[])).map_err(crate::Error::Decode)
}

/// Bytes in a credit frame: the header and a u32 count.
pub const CREDIT_LEN: usize = HEADER_LEN + 4;

/// A credit frame granting `count` messages (kind 5).
pub fn credit_frame(count: u32) -> [u8; CREDIT_LEN] {
    let mut out = [0u8; CREDIT_LEN];
    let (head, body) = out.split_at_mut(HEADER_LEN);
    body.copy_from_slice(&count.to_le_bytes());
    let payload = count.to_le_bytes();
    write_header(head, Kind::Credit, 0, &payload, &[]);
    out
}

/// Check a credit frame and return its count: pure, for any bytes.
pub fn parse_credit(frame: &[u8]) -> Result<u32, WireError> {
    let (header, body) = parse(frame)?;
    if header.kind != Kind::Credit {
        return Err(WireError::Kind(header.kind as u8));
    }
    if header.rights != 0 || header.out_of_line() || header.unchecked() || body.len() != 4 {
        return Err(WireError::Flags(header.flags));
    }
    verify(frame, &header, body, &[])?;
    Ok(u32::from_le_bytes(body.try_into().expect("4 bytes")))
}

/// Parse and check the header of a received datagram of `bytes`. Returns
/// the header and the inline body (payload then rights table).
#[inline]
pub fn parse(bytes: &[u8]) -> Result<(Header, &[u8]), WireError> {
    if bytes.is_empty() {
        return Err(WireError::Empty);
    }
    if bytes.len() < HEADER_LEN {
        return Err(WireError::Truncated(bytes.len()));
    }
    let magic = u16::from_le_bytes([bytes[0], bytes[1]]);
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    if bytes[2] != VERSION {
        return Err(WireError::Version(bytes[2]));
    }
    let kind = match bytes[3] {
        1 => Kind::Data,
        2 => Kind::Wake,
        3 => Kind::Carrier,
        4 => Kind::Fragment,
        5 => Kind::Credit,
        k => return Err(WireError::Kind(k)),
    };
    let flags = u16::from_le_bytes([bytes[4], bytes[5]]);
    if flags & !KNOWN_FLAGS != 0 {
        return Err(WireError::Flags(flags));
    }
    let rights = u16::from_le_bytes([bytes[6], bytes[7]]) as usize;
    if rights > MAX_RIGHTS {
        return Err(WireError::TooLarge { size: rights, limit: MAX_RIGHTS });
    }
    let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let header = Header { kind, flags, rights, len, crc };
    let body = &bytes[HEADER_LEN..];
    let inline = if header.out_of_line() { 0 } else { len };
    if header.out_of_line() && len > MAX_PAYLOAD {
        return Err(WireError::TooLarge { size: len, limit: MAX_PAYLOAD });
    }
    if flags & BULK != 0 && !header.out_of_line() {
        return Err(WireError::Flags(flags));
    }
    if body.len() != inline + rights {
        return Err(WireError::Length { declared: inline + rights, actual: body.len() });
    }
    Ok((header, body))
}

/// The length of the frame whose first bytes are `head`, for transports
/// that carry a byte stream (pipes, FIFOs) and must find where one frame
/// ends: `Ok(None)` until a whole header is there, then the header's own
/// checks and `(total frame bytes, declared payload bytes)`. Pure: the
/// receiver compares the payload size with its limit before it reads or
/// keeps any of it. A header that fails these checks means the stream
/// lost its framing (nothing after it can be trusted).
pub fn stream_frame_len(head: &[u8]) -> Result<Option<(usize, usize)>, WireError> {
    if head.len() < HEADER_LEN {
        return Ok(None);
    }
    let magic = u16::from_le_bytes([head[0], head[1]]);
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    if head[2] != VERSION {
        return Err(WireError::Version(head[2]));
    }
    if !(1..=5).contains(&head[3]) {
        return Err(WireError::Kind(head[3]));
    }
    let flags = u16::from_le_bytes([head[4], head[5]]);
    if flags & !KNOWN_FLAGS != 0 {
        return Err(WireError::Flags(flags));
    }
    let rights = u16::from_le_bytes([head[6], head[7]]) as usize;
    if rights > MAX_RIGHTS {
        return Err(WireError::TooLarge { size: rights, limit: MAX_RIGHTS });
    }
    let len = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) as usize;
    let inline = if flags & OUT_OF_LINE != 0 { 0 } else { len };
    Ok(Some((HEADER_LEN + inline + rights, len)))
}

/// Verify the checksum of a frame whose payload is `payload` (inline or
/// read from the out-of-line memfd).
pub fn verify(frame: &[u8], header: &Header, payload: &[u8], rights: &[u8]) -> Result<(), WireError> {
    let actual = checksum(&frame[..12], payload, rights);
    if actual != header.crc {
        return Err(WireError::Checksum { expected: header.crc, actual });
    }
    Ok(())
}

/// A data frame as its bytes describe it, every check that needs nothing
/// but the bytes done: what [`parse_frame`] returns.
#[derive(Debug, PartialEq, Eq)]
pub struct FrameView<'a> {
    /// The header.
    pub header: Header,
    /// The payload, when it came in the frame (checksum verified unless
    /// the frame is `UNCHECKED`); `None`: out of line, in a memfd.
    pub inline: Option<&'a [u8]>,
    /// The rights table: one known kind byte per right.
    pub rights: &'a [u8],
    /// How many descriptors must have come with the frame (its rights'
    /// and the out-of-line payload's).
    pub descriptors: usize,
}

/// Check a data frame from its bytes alone — the pure first step of every
/// receive, before any descriptor is adopted, any memory mapped or any
/// payload decoded. No system call, no allocation. `accept_unchecked`:
/// the frame came from a trusted shared-memory ring (`UNCHECKED` frames
/// are refused anywhere else); `limit`: the receiver's largest payload,
/// checked before anything of the payload is touched. A fuzz target can
/// call this on any bytes: it returns a [`WireError`] or a view, never
/// panics.
pub fn parse_frame(frame: &[u8], accept_unchecked: bool, limit: usize) -> Result<FrameView<'_>, WireError> {
    let (header, body) = parse(frame)?;
    if header.kind != Kind::Data {
        return Err(WireError::Kind(header.kind as u8));
    }
    if header.unchecked() && !accept_unchecked {
        return Err(WireError::Flags(header.flags));
    }
    if header.len > limit {
        return Err(WireError::TooLarge { size: header.len, limit });
    }
    let (inline, rights) =
        if header.out_of_line() { (None, body) } else { (Some(&body[..header.len]), &body[header.len..]) };
    let mut descriptors = usize::from(header.out_of_line());
    for (index, &k) in rights.iter().enumerate() {
        let kind =
            crate::rights::RightKind::from_byte(k).ok_or(WireError::BadRight { index, why: "unknown right kind" })?;
        descriptors += kind.fds();
    }
    if !header.unchecked() {
        // Out of line: the checksum covers the header and the rights (the
        // payload is in a memory file sealed against writes).
        verify(frame, &header, inline.unwrap_or(&[]), rights)?;
    }
    Ok(FrameView { header, inline, rights, descriptors })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_rejection() {
        let f = simple_frame(Kind::Data, b"hello");
        let (h, body) = parse(&f).unwrap();
        assert_eq!((h.kind, h.len, h.rights), (Kind::Data, 5, 0));
        verify(&f, &h, &body[..5], &[]).unwrap();

        assert_eq!(parse(&[]), Err(WireError::Empty));
        assert_eq!(parse(&f[..7]), Err(WireError::Truncated(7)));
        let mut bad = f.clone();
        bad[0] = 0;
        assert!(matches!(parse(&bad), Err(WireError::BadMagic(_))));
        let mut bad = f.clone();
        bad[2] = 9;
        assert_eq!(parse(&bad), Err(WireError::Version(9)));
        let mut bad = f.clone();
        bad[3] = 77;
        assert_eq!(parse(&bad), Err(WireError::Kind(77)));
        let mut bad = f.clone();
        bad[4] = 0x80;
        assert_eq!(parse(&bad), Err(WireError::Flags(0x80)));
        assert!(matches!(parse(&f[..f.len() - 1]), Err(WireError::Length { .. })));
        let mut bad = f.clone();
        *bad.last_mut().unwrap() ^= 1;
        let (h, body) = parse(&bad).unwrap();
        assert!(matches!(verify(&bad, &h, &body[..5], &[]), Err(WireError::Checksum { .. })));
    }

    /// Any bytes, and every small mutation of valid frames: `parse_frame`
    /// answers with a view or an error, never a panic (a seeded stand-in
    /// for the fuzz target until one runs in CI).
    #[test]
    fn parse_frame_survives_any_bytes() {
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let valid = [simple_frame(Kind::Data, b"payload"), simple_frame(Kind::Data, &[]), {
            let mut f = simple_frame(Kind::Data, &[1, 2, 3]);
            f[6] = 1;
            f.push(5);
            f
        }];
        for round in 0..200_000u32 {
            let mut f = if round % 4 == 0 {
                (0..next() % 64).map(|_| next() as u8).collect::<Vec<u8>>()
            } else {
                valid[(next() % valid.len() as u64) as usize].clone()
            };
            for _ in 0..(next() % 4) {
                if f.is_empty() {
                    break;
                }
                let at = (next() % f.len() as u64) as usize;
                f[at] = next() as u8;
            }
            if next() % 8 == 0 {
                f.truncate((next() % (f.len() as u64 + 1)) as usize);
            }
            let _ = parse_frame(&f, next() % 2 == 0, (next() % 128) as usize);
        }
        let v = parse_frame(&valid[0], false, 1 << 20).unwrap();
        assert_eq!((v.inline, v.descriptors), (Some(&b"payload"[..]), 0));
        let v = parse_frame(&valid[2], false, 1 << 20);
        assert!(matches!(v, Err(WireError::Checksum { .. })), "the right was added after the checksum: {v:?}");
    }

    /// The other pure parsers, on any bytes: the byte-stream framer, pipe
    /// fragments, the ring's plain-frame check, the mailbox queue's
    /// records, the control block's and the ring's headers answer, never
    /// panic (a seeded stand-in for their fuzz targets).
    #[test]
    fn every_pure_parser_survives_any_bytes() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let valid = simple_frame(Kind::Data, b"payload");
        for round in 0..100_000u32 {
            let mut f = if round % 2 == 0 {
                (0..next() % 48).map(|_| next() as u8).collect::<Vec<u8>>()
            } else {
                valid.clone()
            };
            if !f.is_empty() && next() % 2 == 0 {
                let at = (next() % f.len() as u64) as usize;
                f[at] = next() as u8;
            }
            if let Ok(Some((total, len))) = stream_frame_len(&f) {
                assert!(total >= HEADER_LEN && (total == HEADER_LEN + len + f[6] as usize || total < HEADER_LEN + len));
            }
            let _ = plain_ring_payload(&f);
            let _ = crate::memory::queue::parse_message(&f);
            let _ = parse_fragment(&f);
            let _ = parse_credit(&f);
            let _ = crate::channel::transport::stream::parse_hello(&f);
            let _ = decode_frame::<(u64, String)>(&f, 1 << 20);
            if let Some(head) = f.first_chunk::<16>() {
                let _ = crate::channel::ctl::parse_header(head);
                let _ = crate::memory::ring::parse_header(head, (next() % 70_000) as usize);
            }
        }
        assert_eq!(stream_frame_len(&valid).unwrap(), Some((valid.len(), 7)));
        assert_eq!(stream_frame_len(&valid[..15]).unwrap(), None);
        assert_eq!(parse_credit(&credit_frame(7)).unwrap(), 7);
        assert!(parse_credit(&valid).is_err());
    }
}
