//! What one bridge receives from another over Zenoh (`conduit bridge`): a
//! call, the answers to its own, an export list, an RPC connection and its
//! frames, a message for a name's port — decoded by the pure
//! functions of `conduit_zenoh::wire`, compiled here from their source so
//! that the fuzz build does not build Zenoh. Typed errors, never a panic,
//! never an allocation a declared length asked for before it was checked;
//! a call that decodes encodes back to what decodes to it again.
#![no_main]

#[path = "../../crates/conduit-zenoh/src/wire.rs"]
#[allow(dead_code)]
mod wire;

use libfuzzer_sys::fuzz_target;

/// This host's largest message, small, so that the size check is reached.
const MAX: usize = 1 << 12;

fuzz_target!(|data: &[u8]| {
    if let Ok(call) = wire::decode_call(data, MAX) {
        let again = wire::encode(&call);
        assert_eq!(wire::decode_call(&again, MAX).ok(), Some(call));
    }
    let _ = wire::decode_answers(data, MAX);
    let _ = wire::decode_exports(data);
    let _ = wire::decode_rpc_open(data);
    if let Ok(frame) = wire::decode_rpc_frame(data, MAX) {
        assert_eq!(wire::decode_rpc_frame(&wire::encode(&frame), MAX).ok(), Some(frame));
    }
    if let Ok(p) = wire::decode_port_send(data, MAX) {
        assert_eq!(wire::decode_port_send(&wire::encode(&p), MAX).ok(), Some(p));
    }
});
