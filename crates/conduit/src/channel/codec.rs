//! From a typed message to a frame and back: serialization with rights,
//! out-of-line payloads, header and checksum, and every check on receipt —
//! first those the bytes allow ([`wire::parse_frame`], pure), then the
//! descriptors (count, seals, the out-of-line payload's mapping).

use std::os::fd::{AsFd, OwnedFd};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::bulk::{self, BulkPool};
use crate::error::{Error, WireError};
use crate::memory::Segment;
use crate::rights::{self, Incoming, RightKind};
use crate::sys::memfd::{self, CONTENT_SEALS};
use crate::sys::socket::Received;
use crate::wire::{self, HEADER_LEN, Kind, MAX_FRAME, MAX_PAYLOAD, MAX_RIGHTS, OUT_OF_LINE};

/// An encoded message ready to write: the datagram and its descriptors.
#[derive(Debug)]
pub struct OutFrame {
    pub bytes: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

/// How to encode for a transport.
#[derive(Clone, Copy, Debug)]
pub struct Encoding {
    /// Larger payloads go out of line.
    pub inline_max: usize,
    /// Compute the CRC32C (sockets) or not (shared-memory rings).
    pub checksum: bool,
}

/// Encode `msg` into a frame; a large payload goes into one of `bulk`'s
/// buffers if one is free.
pub fn encode<T: Serialize + ?Sized>(msg: &T, how: Encoding, bulk: Option<&BulkPool>) -> Result<OutFrame, Error> {
    let flags = if how.checksum { 0 } else { wire::UNCHECKED };
    // A large message without rights (sizing fails on rights: they can
    // only be serialized inside `collect`) is serialized straight into its
    // memory file: one copy, no buffer of its size in this process.
    if let Ok(size) = postcard::experimental::serialized_size(msg)
        && size > how.inline_max
    {
        if size > MAX_PAYLOAD {
            return Err(Error::TooLarge { size, limit: MAX_PAYLOAD });
        }
        let mut buf = vec![0u8; HEADER_LEN];
        if let Some(fd) = bulk.and_then(|b| b.write(size, |w| postcard::to_io(msg, w).map(drop))) {
            write_ool_header(&mut buf, size, flags | wire::BULK, &[]);
            return Ok(OutFrame { bytes: buf, fds: vec![fd?] });
        }
        let ool = memfd::sealed_with("conduit-ool", size, |w| postcard::to_io(msg, w).map(drop))?;
        write_ool_header(&mut buf, size, flags, &[]);
        return Ok(OutFrame { bytes: buf, fds: vec![ool] });
    }
    let (res, rights) = rights::collect(|| postcard::to_extend(msg, vec![0u8; HEADER_LEN]));
    // A right that refused to travel says why (postcard keeps no message).
    let mut buf = res.map_err(|e| rights::refusal().unwrap_or(Error::Encode(e)))?;
    let len = buf.len() - HEADER_LEN;
    if rights.len() > MAX_RIGHTS {
        return Err(Error::TooManyRights { count: rights.len(), limit: MAX_RIGHTS });
    }
    if len > MAX_PAYLOAD {
        return Err(Error::TooLarge { size: len, limit: MAX_PAYLOAD });
    }
    let kinds: Vec<u8> = rights.iter().map(|(k, _)| *k as u8).collect();
    let mut fds = Vec::new();
    for (_, port_fds) in rights {
        fds.extend(port_fds);
    }
    if len > how.inline_max {
        // Out of line: the payload moves as its own sealed memfd.
        let ool = memfd::sealed_copy("conduit-ool", &buf[HEADER_LEN..])?;
        buf.truncate(HEADER_LEN);
        write_ool_header(&mut buf, len, flags, &kinds);
        fds.push(ool);
    } else {
        buf.extend_from_slice(&kinds);
        let (head, rest) = buf.split_at_mut(HEADER_LEN);
        let (payload, kinds) = rest.split_at(len);
        wire::write_header(head, Kind::Data, flags, payload, kinds);
    }
    Ok(OutFrame { bytes: buf, fds })
}

/// A frame whose payload is in its sender's bulk buffer: copied out into
/// this thread's buffer (so a sender writing the buffer meanwhile changes
/// nothing decoded), handed back, then decoded. Such frames carry no rights.
fn decode_bulk<R>(
    frame: &[u8],
    header: &wire::Header,
    fds: &mut Vec<OwnedFd>,
    (from_ring, limit, owner): (bool, usize, u64),
    plain: impl FnOnce(&[u8]) -> Result<R, Error>,
) -> Result<R, Error> {
    let view = wire::parse_frame(frame, from_ring, limit)?;
    if fds.len() != view.descriptors || !view.rights.is_empty() {
        return Err(WireError::Descriptors { declared: view.descriptors, actual: fds.len() }.into());
    }
    BULK_BUF.with(|b| {
        let mut buf = b.borrow_mut();
        let fd = fds.last().expect("counted above");
        bulk::take(owner, fd, header.len, &mut buf).map_err(|why| WireError::BadRight { index: 0, why })?;
        fds.clear();
        let got = plain(&buf);
        if buf.capacity() > 64 << 20 {
            // Do not keep a huge buffer for the thread's life.
            *buf = Vec::new();
        }
        got
    })
}

thread_local! {
    static BULK_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The header and rights table of an out-of-line frame into `buf` (the
/// header's 16 bytes, then the rights appended). Its checksum covers the
/// header and the rights: the payload is in a memory file sealed against
/// writes, which no one can change on the way.
fn write_ool_header(buf: &mut Vec<u8>, len: usize, flags: u16, kinds: &[u8]) {
    buf.extend_from_slice(kinds);
    let (head, kinds) = buf.split_at_mut(HEADER_LEN);
    wire::write_header_sized(head, Kind::Data, OUT_OF_LINE | flags, len, kinds);
}

/// Check and decode a received frame (`frame` = the bytes that arrived,
/// from the socket or, if `from_ring`, from a shared-memory ring). A
/// payload declared larger than `limit` (the receiver's own limit) is
/// refused before anything of it is mapped or read.
/// `bulk_owner`: the receiver whose cache of bulk-buffer mappings to use.
/// `on_data` runs as soon as the header is known to be a data frame,
/// before the payload is checked, so the channel's accounting stays right
/// even when the payload is then rejected.
pub fn decode<T: DeserializeOwned>(
    frame: &[u8],
    rec: Received,
    from_ring: bool,
    limit: usize,
    bulk_owner: u64,
    on_data: impl FnOnce(),
) -> Result<T, Error> {
    let plain = |p: &[u8]| postcard::from_bytes(p).map_err(Error::Decode);
    decode_as(frame, rec, (from_ring, limit, bulk_owner), on_data, plain, |p| postcard::from_bytes(p))
}

/// [`decode`], but a frame that carries no rights is not decoded: its
/// payload comes as an [`Opaque`] (a relay that does not know the type).
pub fn decode_or_opaque<T: DeserializeOwned>(
    frame: &[u8],
    rec: Received,
    limit: usize,
    bulk_owner: u64,
    on_data: impl FnOnce(),
) -> Result<Result<T, Opaque>, Error> {
    let plain = |p: &[u8]| Ok(Err(Opaque(p.to_vec())));
    decode_as(frame, rec, (false, limit, bulk_owner), on_data, plain, |p| postcard::from_bytes(p).map(Ok))
}

/// The checks and the rights of [`decode`]; the payload is finished by
/// `plain` (no rights) or by `rich` (with the rights provided).
fn decode_as<R>(
    frame: &[u8],
    rec: Received,
    (from_ring, limit, bulk_owner): (bool, usize, u64),
    on_data: impl FnOnce(),
    plain: impl FnOnce(&[u8]) -> Result<R, Error>,
    rich: impl FnOnce(&[u8]) -> Result<R, postcard::Error>,
) -> Result<R, Error> {
    if rec.truncated {
        return Err(WireError::TooLarge { size: rec.len, limit: MAX_FRAME }.into());
    }
    if rec.fds_truncated {
        return Err(WireError::DescriptorsTruncated.into());
    }
    // The header alone first: a data frame's credit is accounted for
    // (`on_data`) even when the rest of it is then refused.
    let (header, _) = wire::parse(frame)?;
    if header.kind != Kind::Data {
        return Err(WireError::Kind(header.kind as u8).into());
    }
    if header.unchecked() && !from_ring {
        return Err(WireError::Flags(header.flags).into());
    }
    on_data();
    let mut fds = rec.fds;
    if header.bulk() {
        // Whatever becomes of this frame, its sender gets the buffer back.
        return match decode_bulk(frame, &header, &mut fds, (from_ring, limit, bulk_owner), plain) {
            Err(e) => {
                if let Some(fd) = fds.last() {
                    bulk::hand_back(fd);
                }
                Err(e)
            }
            ok => ok,
        };
    }
    // Every check the bytes allow (the pure step), then the descriptors.
    let view = wire::parse_frame(frame, from_ring, limit)?;
    if fds.len() != view.descriptors {
        return Err(WireError::Descriptors { declared: view.descriptors, actual: fds.len() }.into());
    }
    let kinds: Vec<RightKind> = view.rights.iter().filter_map(|&k| RightKind::from_byte(k)).collect();
    let ool_payload;
    let payload = match view.inline {
        Some(p) => p,
        None => {
            let fd = fds.pop().expect("counted above");
            match memfd::size_if_sealed(fd.as_fd(), CONTENT_SEALS) {
                Ok(Some(n)) if n == header.len as u64 => {}
                _ => {
                    return Err(WireError::BadRight {
                        index: header.rights,
                        why: "out-of-line payload is not a sealed memfd of the declared size",
                    }
                    .into());
                }
            }
            ool_payload = memfd::map_sealed(fd, header.len)?;
            ool_payload.as_slice()
        }
    };
    if kinds.is_empty() {
        // No rights (the common case): nothing to hand the deserializer.
        return plain(payload);
    }
    let mut incoming = Vec::with_capacity(header.rights);
    let mut fds = fds.into_iter();
    for (index, kind) in kinds.into_iter().enumerate() {
        let mut next = || fds.next().expect("counted above");
        if kind == RightKind::Segment {
            incoming.push(Incoming::Segment(Segment::adopt(next(), index)?));
            continue;
        }
        incoming.push(Incoming::Port(super::transport::adopt(kind, index, &mut next)?));
    }
    rights::provide(incoming, || rich(payload)).map_err(Error::Decode)
}

/// A message without its type: its payload as encoded (postcard). Sent
/// on a `Sender<Opaque>` (a send right looked up or cast as such), its
/// bytes are written as they are, so the receiver decodes them as its own
/// type — what a relay between hosts needs, which carries messages it
/// cannot decode
/// ([`Receiver::recv_timeout_or_opaque`](crate::Receiver::recv_timeout_or_opaque)
/// takes them). It holds no rights: descriptors do not travel as bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opaque(pub Vec<u8>);

impl Serialize for Opaque {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // A tuple of bytes: postcard writes each byte as it is, with no
        // length before them.
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(self.0.len())?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

#[cfg(test)]
mod opaque_tests {
    use std::time::Duration;

    use super::Opaque;

    #[test]
    fn an_opaque_payload_is_sent_as_it_is_and_decodes_as_its_type() {
        let (tx, rx) = crate::bounded::<(u32, String)>(4).unwrap();
        let raw = postcard::to_stdvec(&(7u32, "seven".to_string())).unwrap();
        tx.clone().cast::<Opaque>().send(Opaque(raw.clone())).unwrap();
        assert_eq!(rx.recv().unwrap(), (7, "seven".to_string()));
        // Taken back as bytes, without the type.
        tx.send((8, "eight".into())).unwrap();
        let back = rx.recv_timeout_or_opaque(Duration::from_secs(5)).unwrap();
        assert_eq!(back, Err(Opaque(postcard::to_stdvec(&(8u32, "eight")).unwrap())));
        // A large one goes out of line, and still arrives as it was.
        let big = vec![3u8; 200_000];
        let (btx, brx) = crate::bounded::<Vec<u8>>(1).unwrap();
        btx.cast::<Opaque>().send(Opaque(postcard::to_stdvec(&big).unwrap())).unwrap();
        assert_eq!(brx.recv().unwrap(), big);
    }

    #[test]
    fn a_message_with_rights_is_decoded_by_an_opaque_receive() {
        let (tx, rx) = crate::unbounded::<crate::Sender<u64>>().unwrap();
        let (itx, irx) = crate::unbounded::<u64>().unwrap();
        tx.send(itx).unwrap();
        let Ok(Ok(itx)) = rx.recv_timeout_or_opaque(Duration::from_secs(5)) else { panic!("want the sender") };
        itx.send(5).unwrap();
        assert_eq!(irx.recv().unwrap(), 5);
        // Anything else on the same port comes as bytes.
        tx.clone().cast::<u64>().send(9).unwrap();
        assert_eq!(rx.recv_timeout_or_opaque(Duration::from_secs(5)).unwrap().err(), Some(Opaque(vec![9])));
        assert!(matches!(rx.recv_timeout_or_opaque(Duration::from_millis(10)), Err(crate::RecvTimeoutError::Timeout)));
        drop(tx);
        assert!(matches!(
            rx.recv_timeout_or_opaque(Duration::from_secs(5)),
            Err(crate::RecvTimeoutError::Disconnected)
        ));
    }
}
