//! The broker's durable write-ahead log from bytes, as it reads its own
//! file at start after a crash tore it, or a disk flipped it: the records
//! of the generation, up to the first that fails, never a panic and never
//! an allocation a declared length asked for before it was checked.
#![no_main]

use conduit_broker::fuzzing::read_durable_log;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The generation from the first byte, so stale and current records
    // both occur.
    let Some((&generation, log)) = data.split_first() else { return };
    let _ = read_durable_log(log, u64::from(generation));
});
