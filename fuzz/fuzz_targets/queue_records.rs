//! A mailbox's shared queue against a process that writes anything into
//! it: a real `Queue` (the broker's storage for a shared-memory mailbox),
//! and a script of honest operations — sends, receives by type (claim,
//! then acknowledge or give back) — between which the peer writes any
//! bytes at any offset of the queue's segment: record headers, `head`,
//! `tail`, lock words, the claim table, the message count. Every operation
//! must return a message or a typed `QueueError`, without panicking or
//! waiting (the `_or_busy` forms never wait; a live thread id the peer
//! writes into a lock word makes them `Busy`), and a message handed out
//! must fit the queue's own limit.
#![no_main]

use conduit::memory::queue::{ClaimId, Queue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&shape, script)) = data.split_first() else { return };
    let capacity = 1 + u32::from(shape % 16);
    let q = Queue::new(capacity, 4096).expect("a queue");
    let seg = q.segment();
    let limit = q.max_message();
    let me = (std::process::id(), 0);
    // A few honest messages first, so records are there to forge.
    for i in 0..u64::from(shape % 5) {
        let _ = q.send_or_busy(1 + (i % 3) as i64, &i.to_le_bytes(), me);
    }
    let mut claims: Vec<ClaimId> = Vec::new();
    for op in script.chunks(11) {
        let arg = |i: usize| op.get(i).copied().unwrap_or(0);
        let word = u64::from_le_bytes(std::array::from_fn(|i| arg(3 + i)));
        let select = i64::from(arg(1) % 5) - 2; // -2..=2: by type, any, lowest up to
        match arg(0) % 8 {
            0 => {
                let len = usize::from(arg(1)) * 4;
                let _ = q.send_or_busy(i64::from(arg(2) % 4), &op.repeat(len / op.len().max(1) + 1)[..len], me);
            }
            1 => {
                if let Ok((m, id)) = q.claim_or_busy(select) {
                    assert!(m.data.len() <= limit, "a message over the queue's limit");
                    claims.push(id);
                }
            }
            2 => {
                if let Some(id) = claims.pop() {
                    let _ = q.settle_or_busy(id, arg(1) % 2 == 0);
                }
            }
            3 => {
                let _ = (q.len(), q.bytes_used(), q.is_closed());
            }
            // The peer: one word anywhere (aligned), or a byte.
            4..=6 => {
                let at = (usize::from(u16::from_le_bytes([arg(1), arg(2)])) * 8) % seg.len();
                let _ = seg.write_at(at, &word.to_le_bytes()[..(seg.len() - at).min(8)]);
            }
            _ => {
                let at = usize::from(u16::from_le_bytes([arg(1), arg(2)])) % seg.len();
                let _ = seg.write_at(at, &[arg(3)]);
            }
        }
    }
});
