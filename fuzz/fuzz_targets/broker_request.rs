//! A whole broker request (and reply) from bytes, as the broker decodes
//! what a client sends: bare postcard and inside a frame.
#![no_main]

use conduit::wire;
use conduit_broker::protocol::{Reply, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = postcard::from_bytes::<Request>(data);
    let _ = postcard::from_bytes::<Reply>(data);
    let framed = wire::simple_frame(wire::Kind::Data, data);
    let _ = wire::decode_frame::<Request>(&framed, wire::MAX_PAYLOAD);
    let _ = wire::decode_frame::<Reply>(&framed, wire::MAX_PAYLOAD);
});
