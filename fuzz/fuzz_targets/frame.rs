//! The frame parser every receive path goes through (`wire::parse_frame`),
//! the fragment, stream-length and credit parsers, and the decoding of a
//! frame's payload — on any bytes, and on any payload wrapped in a frame
//! with a correct checksum (so the fuzzer gets past the checksum).
#![no_main]

use conduit::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A receiver's own limit, from the first two bytes (so it is small
    // and large both): a declared size above it must be refused before
    // anything is read.
    let limit = data.first().map_or(0, |b| 1usize << (b % 24));
    for unchecked in [false, true] {
        if let Ok(view) = wire::parse_frame(data, unchecked, limit) {
            if let Some(inline) = view.inline {
                assert!(inline.len() <= limit, "a payload over the limit passed");
            }
            assert!(view.header.len <= limit);
        }
    }
    let _ = wire::parse(data);
    let _ = wire::parse_fragment(data);
    let _ = wire::stream_frame_len(data);
    let _ = wire::parse_credit(data);
    let _ = wire::decode_frame::<Vec<u8>>(data, limit);
    let _ = wire::decode_frame::<(u64, String, Vec<u64>)>(data, limit);
    // Past the checksum: the bytes as a frame's payload.
    let framed = wire::simple_frame(wire::Kind::Data, data);
    let _ = wire::decode_frame::<(u64, String, Vec<u64>)>(&framed, wire::MAX_PAYLOAD);
    let _ = wire::decode_frame::<Vec<String>>(&framed, wire::MAX_PAYLOAD);
});
