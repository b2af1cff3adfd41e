//! The RPC envelope as a server and a client read it: a `Call` (and a
//! batch, a `Vec<Call>` in a call's arguments), an `Answer` (and a batch of
//! answers in its outcome) — from any bytes, bare and inside a frame.
#![no_main]

use conduit::rpc::{Answer, Call, Outcome};
use conduit::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(call) = postcard::from_bytes::<Call>(data) {
        // A batch's arguments are decoded as calls in turn.
        let _ = postcard::from_bytes::<Vec<Call>>(&call.args);
        // What decodes re-encodes to bytes that decode to the same call.
        let again = postcard::to_allocvec(&call).expect("encode");
        assert_eq!(postcard::from_bytes::<Call>(&again).expect("decode"), call);
    }
    if let Ok(answer) = postcard::from_bytes::<Answer>(data)
        && let Outcome::Batch(bytes) = &answer.outcome
    {
        let _ = postcard::from_bytes::<Vec<Answer>>(bytes);
    }
    let _ = postcard::from_bytes::<Vec<Call>>(data);
    let framed = wire::simple_frame(wire::Kind::Data, data);
    let _ = wire::decode_frame::<Call>(&framed, wire::MAX_PAYLOAD);
    let _ = wire::decode_frame::<Answer>(&framed, wire::MAX_PAYLOAD);
});
