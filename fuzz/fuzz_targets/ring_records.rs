//! The ring's consumer against a producer that writes anything: the data
//! area's words, `head` and `tail` come from the input, and the rest of the
//! input is a script of the peer's writes between the consumer's reads (a
//! peer sharing the ring can change any word at any time). The consumer
//! must never hand out a record that runs past the data area, never loop
//! past one lap, and never panic: a forged header is `Corrupt`.
#![no_main]

use std::sync::atomic::Ordering::Relaxed;

use conduit::memory::ring_core::{self, RECORD_HEADER, RingMemory};
use conduit_fuzz::WordRing;
use libfuzzer_sys::fuzz_target;

fn u64_at(data: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    for (k, v) in b.iter_mut().enumerate() {
        *v = data.get(i + k).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else { return };
    // 64 bytes .. 8 KiB of data area, a power of two.
    let words = 8usize << (shape % 8);
    let ring = WordRing::new(words, |i| u64_at(rest, i * 8));
    let cap = ring.capacity();
    let script = rest.get(16 + words * 8..).unwrap_or(&[]);
    let mut ops = script.chunks(9);
    // The consumer's loop, with the peer's writes in between.
    for _ in 0..256 {
        if let Ok(Some(r)) = ring_core::peek(&ring) {
            assert!(r.payload_pos() + r.len() as u64 <= cap, "a record past the data area");
            assert!(r.payload_pos() >= RECORD_HEADER);
            // Look past it too, as a receive by type does.
            if let Ok(Some(n)) = ring_core::next_after(&ring, &r) {
                assert!(n.payload_pos() + n.len() as u64 <= cap, "a later record past the data area");
                ring_core::take(&ring, n);
            }
            ring_core::take(&ring, r);
        }
        let _ = ring_core::ready(&ring);
        let _ = ring_core::used(&ring);
        // The peer writes a word (or head, or tail).
        let Some(op) = ops.next() else { break };
        let value = u64_at(op, 1);
        match op[0] as usize % (words + 2) {
            w if w < words => ring.words[w].store(value, Relaxed),
            w if w == words => ring.tail.store(value, Relaxed),
            _ => ring.head.store(value, Relaxed),
        }
    }
});
