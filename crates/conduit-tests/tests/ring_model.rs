//! The ring's index protocol (`conduit/src/memory/ring_core.rs`, this very
//! file) checked two ways on heap memory:
//!
//! * `loom` explores every interleaving (and weak-memory reordering) of a
//!   producer and a consumer. Each 8-byte word of the data area is a
//!   tracked atomic (record headers are atomics, and a word is a header in
//!   one lap and payload in the next); payload goes through them `Relaxed`,
//!   so a consumer that reads a record before it is published can see the
//!   old bytes, and the content check fails the model;
//! * a property test runs long random sequences against a `VecDeque`
//!   model, checking order, content and that room is refused exactly when
//!   the ring is full.

#[allow(dead_code)]
#[path = "../../conduit/src/memory/ring_core.rs"]
mod ring_core;

use ring_core::{Counter, RingMemory};
use std::sync::atomic::Ordering::Relaxed;

/// Payload bytes into the data area's words (`Relaxed`: ordered by the
/// record headers, like conduit's plain copies).
fn write_words<M: RingMemory>(m: &M, pos: u64, data: &[u8]) {
    assert!(pos.is_multiple_of(8));
    for (i, chunk) in data.chunks(8).enumerate() {
        let w = m.data_word(pos + 8 * i as u64);
        let mut bytes = w.load(Relaxed).to_le_bytes();
        bytes[..chunk.len()].copy_from_slice(chunk);
        w.store(u64::from_le_bytes(bytes), Relaxed);
    }
}

/// Payload bytes out of the data area's words.
fn read_words<M: RingMemory>(m: &M, pos: u64, out: &mut [u8]) {
    assert!(pos.is_multiple_of(8));
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let n = chunk.len();
        chunk.copy_from_slice(&m.data_word(pos + 8 * i as u64).load(Relaxed).to_le_bytes()[..n]);
    }
}

mod model {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicU64;
    use std::sync::atomic::Ordering;

    pub struct LoomCounter(AtomicU64);
    impl Counter for LoomCounter {
        fn load(&self, o: Ordering) -> u64 {
            self.0.load(o)
        }
        fn store(&self, v: u64, o: Ordering) {
            self.0.store(v, o)
        }
    }

    pub struct LoomRing {
        tail: LoomCounter,
        head: LoomCounter,
        words: Vec<LoomCounter>,
    }

    impl LoomRing {
        pub fn new(capacity: usize) -> Self {
            LoomRing {
                tail: LoomCounter(AtomicU64::new(0)),
                head: LoomCounter(AtomicU64::new(0)),
                words: (0..capacity / 8).map(|_| LoomCounter(AtomicU64::new(0))).collect(),
            }
        }
    }

    impl RingMemory for LoomRing {
        type C = LoomCounter;
        fn tail(&self) -> &LoomCounter {
            &self.tail
        }
        fn head(&self) -> &LoomCounter {
            &self.head
        }
        fn capacity(&self) -> u64 {
            (self.words.len() * 8) as u64
        }
        fn data_word(&self, pos: u64) -> &LoomCounter {
            assert!(pos.is_multiple_of(8));
            &self.words[pos as usize / 8]
        }
    }

    fn push(ring: &LoomRing, msg: &[u8]) {
        loop {
            if let Some(r) = ring_core::try_reserve(ring, msg.len()).unwrap() {
                write_words(ring, r.payload_pos(), msg);
                ring_core::commit(ring, r);
                return;
            }
            loom::thread::yield_now();
        }
    }

    fn pop(ring: &LoomRing) -> Vec<u8> {
        loop {
            if let Some(rec) = ring_core::peek(ring).unwrap() {
                let mut out = vec![0; rec.len()];
                read_words(ring, rec.payload_pos(), &mut out);
                ring_core::release(ring, rec);
                return out;
            }
            loom::thread::yield_now();
        }
    }

    /// Three messages of different sizes through a 64-byte ring: the third
    /// cannot fit before the end and must wrap behind a padding record,
    /// while the consumer frees room concurrently.
    #[test]
    fn producer_and_consumer_in_every_interleaving() {
        loom::model(|| {
            let ring = Arc::new(LoomRing::new(64));
            let msgs: [&[u8]; 3] = [&[1; 20], &[2; 9], &[3; 24]];
            let producer = {
                let ring = Arc::clone(&ring);
                loom::thread::spawn(move || {
                    for m in msgs {
                        push(&ring, m);
                    }
                })
            };
            for m in msgs {
                assert_eq!(pop(&ring), m);
            }
            producer.join().unwrap();
            assert_eq!(ring_core::used(&*ring), 0);
        });
    }
}

mod property {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU64, Ordering};

    pub struct StdCounter(AtomicU64);
    impl Counter for StdCounter {
        fn load(&self, o: Ordering) -> u64 {
            self.0.load(o)
        }
        fn store(&self, v: u64, o: Ordering) {
            self.0.store(v, o)
        }
    }

    /// A ring on the heap that, like conduit's shared one, remembers the
    /// other side's counters (so the tests cover the stale-value paths).
    struct HeapRing {
        tail: StdCounter,
        head: StdCounter,
        words: Vec<StdCounter>,
        known: std::cell::Cell<u64>,
    }

    impl HeapRing {
        /// An empty ring of `cap` bytes whose data area starts as `fill`.
        fn new(cap: u64, fill: u8) -> HeapRing {
            HeapRing {
                tail: StdCounter(AtomicU64::new(0)),
                head: StdCounter(AtomicU64::new(0)),
                words: (0..cap / 8).map(|_| StdCounter(AtomicU64::new(u64::from_ne_bytes([fill; 8])))).collect(),
                known: Default::default(),
            }
        }
    }

    impl RingMemory for HeapRing {
        type C = StdCounter;
        fn tail(&self) -> &StdCounter {
            &self.tail
        }
        fn head(&self) -> &StdCounter {
            &self.head
        }
        fn capacity(&self) -> u64 {
            self.words.len() as u64 * 8
        }
        fn data_word(&self, pos: u64) -> &StdCounter {
            &self.words[pos as usize / 8]
        }
        fn known_head(&self) -> u64 {
            self.known.get()
        }
        fn remember_head(&self, head: u64) {
            self.known.set(head);
        }
    }

    use conduit_tests::Rng;

    /// A message of `len` bytes made of words that would read as committed
    /// record headers of the ring's next lap, numbered `n` (as its length
    /// field): stale payload where a consumer looks for a header must never
    /// pass for one (each commit zeroes the next header slot).
    fn forged(ring: &HeapRing, n: u8, len: usize) -> Vec<u8> {
        let cap = ring.capacity();
        let lap = (ring.tail.load(Ordering::Relaxed) / cap + 1) as u32;
        let t = lap.to_le_bytes();
        let word = [n, 0, 0, 0, 1, t[0], t[1], t[2]];
        word.iter().copied().cycle().take(len).collect()
    }

    /// Would a record of `len` fit, computed independently of the ring
    /// code from the model's view of the ring?
    fn fits(cap: u64, tail: u64, used: u64, len: usize) -> bool {
        let size = 8 + ((len as u64 + 7) & !7);
        let contiguous = cap - (tail % cap);
        let need = if size <= contiguous { size } else { contiguous + size };
        used + need <= cap
    }

    #[test]
    fn random_sequences_match_a_queue_model_and_refuse_room_exactly_when_full() {
        for seed in 1..=200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let cap = 1u64 << (6 + rng.below(6)); // 64 B .. 2 KiB
            let ring = HeapRing::new(cap, 0xEE);
            let mut model: VecDeque<Vec<u8>> = VecDeque::new();
            let mut counter = 0u8;
            for _ in 0..2000 {
                if rng.below(100) < 55 {
                    let len = rng.below(ring_core::max_payload(cap) as u64 + 1) as usize;
                    let tail = ring.tail.load(Ordering::Relaxed);
                    let used = ring_core::used(&ring);
                    let expect = fits(cap, tail, used, len);
                    match ring_core::try_reserve(&ring, len).unwrap() {
                        Some(r) => {
                            assert!(expect, "seed {seed}: reserved {len} B with no room");
                            counter = counter.wrapping_add(1);
                            let msg = forged(&ring, counter, len);
                            write_words(&ring, r.payload_pos(), &msg);
                            ring_core::commit(&ring, r);
                            model.push_back(msg);
                        }
                        None => assert!(!expect, "seed {seed}: refused {len} B with room"),
                    }
                    assert!(ring_core::used(&ring) <= cap);
                } else {
                    match ring_core::peek(&ring).unwrap() {
                        Some(rec) => {
                            let mut out = vec![0; rec.len()];
                            read_words(&ring, rec.payload_pos(), &mut out);
                            ring_core::release(&ring, rec);
                            assert_eq!(Some(out), model.pop_front(), "seed {seed}: order and content");
                        }
                        None => assert!(model.is_empty(), "seed {seed}: ring empty, model not"),
                    }
                }
            }
        }
    }

    #[test]
    fn taking_records_out_of_turn_matches_a_list_model_and_frees_all_space() {
        for seed in 1..=200u64 {
            let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
            let cap = 1u64 << (6 + rng.below(6));
            let ring = HeapRing::new(cap, 0xEE);
            let mut model: Vec<Vec<u8>> = Vec::new();
            let mut counter = 0u8;
            for _ in 0..2000 {
                if rng.below(100) < 55 {
                    let len = rng.below(ring_core::max_payload(cap) as u64 + 1) as usize;
                    if let Some(r) = ring_core::try_reserve(&ring, len).unwrap() {
                        counter = counter.wrapping_add(1);
                        let msg = forged(&ring, counter, len);
                        write_words(&ring, r.payload_pos(), &msg);
                        ring_core::commit(&ring, r);
                        model.push(msg);
                    }
                } else if model.is_empty() {
                    assert_eq!(ring_core::peek(&ring).unwrap(), None, "seed {seed}: ring empty, model not");
                } else {
                    // Walk to the k-th message, as a receive by type does.
                    let k = rng.below(model.len() as u64) as usize;
                    let mut rec = ring_core::peek(&ring).unwrap().expect("model not empty");
                    for _ in 0..k {
                        rec = ring_core::next_after(&ring, &rec).unwrap().expect("model has more");
                    }
                    let mut out = vec![0; rec.len()];
                    read_words(&ring, rec.payload_pos(), &mut out);
                    ring_core::take(&ring, rec);
                    assert_eq!(out, model.remove(k), "seed {seed}: the k-th message");
                }
            }
            while let Some(rec) = ring_core::peek(&ring).unwrap() {
                ring_core::take(&ring, rec);
                model.remove(0);
            }
            assert!(model.is_empty());
            assert_eq!(ring_core::used(&ring), 0, "seed {seed}: every byte comes back");
        }
    }

    #[test]
    fn a_hostile_producer_cannot_make_the_consumer_read_out_of_bounds() {
        let cap = 256u64;
        let ring = HeapRing::new(cap, 0);
        // A header (kind 1, lap 0) claiming more than the ring holds.
        write_words(&ring, 0, &[0xff, 0, 0, 0, 1, 0, 0, 0]);
        assert!(ring_core::peek(&ring).is_err());
        // An unknown kind.
        write_words(&ring, 0, &[8, 0, 0, 0, 9, 0, 0, 0]);
        assert!(ring_core::peek(&ring).is_err());
        // Padding that does not reach the end.
        write_words(&ring, 0, &[8, 0, 0, 0, 2, 0, 0, 0]);
        assert!(ring_core::peek(&ring).is_err());
        // A header of another lap is not there yet.
        write_words(&ring, 0, &[8, 0, 0, 0, 1, 1, 0, 0]);
        assert_eq!(ring_core::peek(&ring).unwrap(), None);
    }

    /// A producer killed between its header store and its `tail` store has
    /// published the record (the header is the commit): the next producer
    /// finds it (and only what was published) with `committed_from`.
    #[test]
    fn a_commit_cut_short_is_found_from_the_headers() {
        let cap = 256u64;
        let ring = HeapRing::new(cap, 0);
        let r = ring_core::try_reserve(&ring, 100).unwrap().unwrap();
        let end = r.end();
        ring_core::commit(&ring, r);
        ring.tail.store(0, Ordering::Release);
        assert_eq!(ring_core::committed_from(&ring, end), (end, 1));
        ring.tail.store(end, Ordering::Release);
        let rec = ring_core::peek(&ring).unwrap().unwrap();
        ring_core::release(&ring, rec);
        // Padding published, the record at 0 not.
        let r = ring_core::try_reserve(&ring, 100).unwrap().unwrap();
        let end = r.end();
        ring_core::commit(&ring, r);
        let rec = ring_core::peek(&ring).unwrap().unwrap();
        ring_core::release(&ring, rec);
        let r = ring_core::try_reserve(&ring, 100).unwrap().unwrap();
        let until = r.end();
        ring_core::commit(&ring, r);
        ring.data_word(0).store(0, Ordering::Release);
        ring.tail.store(end, Ordering::Release);
        assert_eq!(ring_core::committed_from(&ring, until), (cap, 0));
        // Nothing published.
        ring.data_word(end).store(0, Ordering::Release);
        assert_eq!(ring_core::committed_from(&ring, until), (end, 0));
    }
}
