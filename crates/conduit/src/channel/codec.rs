//! From a typed message to a frame and back: serialization with rights,
//! out-of-line payloads, header and checksum, and every check on receipt.

use std::os::fd::{AsFd, OwnedFd};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ctl::Ctl;
use crate::error::{Error, WireError};
use crate::rights::{self, Incoming, RightKind};
use crate::sys::memory::{self, CONTENT_SEALS};
use crate::sys::socket::{self, Received};
use crate::wire::{self, HEADER_LEN, INLINE_MAX, Kind, MAX_FRAME, MAX_PAYLOAD, MAX_RIGHTS, OUT_OF_LINE};

/// An encoded message ready to write: the datagram and its descriptors.
#[derive(Debug)]
pub struct OutFrame {
    pub bytes: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

/// Encode `msg` into a frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<OutFrame, Error> {
    let (res, rights) = rights::collect(|| postcard::to_extend(msg, vec![0u8; HEADER_LEN]));
    let mut buf = res.map_err(Error::Encode)?;
    let len = buf.len() - HEADER_LEN;
    if rights.len() > MAX_RIGHTS {
        return Err(Error::TooManyRights { count: rights.len(), limit: MAX_RIGHTS });
    }
    if len > MAX_PAYLOAD {
        return Err(Error::TooLarge { size: len, limit: MAX_PAYLOAD });
    }
    let kinds: Vec<u8> = rights.iter().map(|(k, _)| *k as u8).collect();
    let mut fds = Vec::with_capacity(rights.len() * 2 + 1);
    for (_, port) in rights {
        fds.push(port.sock);
        fds.push(port.ctl);
    }
    if len > INLINE_MAX {
        // Out of line: the payload moves as its own sealed memfd.
        let ool = memory::sealed_copy("conduit-ool", &buf[HEADER_LEN..])?;
        let (head, payload) = buf.split_at_mut(HEADER_LEN);
        wire::write_header(head, Kind::Data, OUT_OF_LINE, payload, &kinds);
        buf.truncate(HEADER_LEN);
        buf.extend_from_slice(&kinds);
        fds.push(ool);
    } else {
        buf.extend_from_slice(&kinds);
        let (head, rest) = buf.split_at_mut(HEADER_LEN);
        let (payload, kinds) = rest.split_at(len);
        wire::write_header(head, Kind::Data, 0, payload, kinds);
    }
    Ok(OutFrame { bytes: buf, fds })
}

/// Check and decode a received datagram (`frame` = the bytes that
/// arrived). `on_data` runs as soon as the header is known to be a data
/// frame, before the payload is checked, so the channel's accounting stays
/// right even when the payload is then rejected.
pub fn decode<T: DeserializeOwned>(frame: &[u8], rec: Received, on_data: impl FnOnce()) -> Result<T, Error> {
    if rec.truncated {
        return Err(WireError::TooLarge { size: rec.len, limit: MAX_FRAME }.into());
    }
    if rec.fds_truncated {
        return Err(WireError::DescriptorsTruncated.into());
    }
    let (header, body) = wire::parse(frame)?;
    if header.kind != Kind::Data {
        return Err(WireError::Kind(header.kind as u8).into());
    }
    on_data();
    let mut fds = rec.fds;
    if fds.len() != header.expected_fds() {
        return Err(WireError::Descriptors { declared: header.expected_fds(), actual: fds.len() }.into());
    }
    let ool_payload;
    let (payload, kinds) = if header.out_of_line() {
        let fd = fds.pop().expect("counted above");
        match memory::size_if_sealed(fd.as_fd(), CONTENT_SEALS) {
            Ok(Some(n)) if n == header.len as u64 => {}
            _ => {
                return Err(WireError::BadRight {
                    index: header.rights,
                    why: "out-of-line payload is not a sealed memfd of the declared size",
                }
                .into());
            }
        }
        ool_payload = memory::read_all(fd, header.len)?;
        (&ool_payload[..], body)
    } else {
        body.split_at(header.len)
    };
    wire::verify(frame, &header, payload, kinds)?;
    let mut incoming = Vec::with_capacity(header.rights);
    let mut fds = fds.into_iter();
    for (index, &k) in kinds.iter().enumerate() {
        let kind = RightKind::from_byte(k).ok_or(WireError::BadRight { index, why: "unknown right kind" })?;
        let (sock, ctl) = (fds.next().expect("counted"), fds.next().expect("counted"));
        if !socket::is_unix_seqpacket(sock.as_fd()) {
            return Err(WireError::BadRight { index, why: "not a conduit socket" }.into());
        }
        let ctl = Ctl::adopt(ctl, index)?;
        incoming.push(Incoming { kind, sock, ctl });
    }
    rights::provide(incoming, || postcard::from_bytes(payload)).map_err(Error::Decode)
}
