//! The ring's index protocol (`conduit/src/shm/ring_core.rs`, this very
//! file) checked two ways on heap memory:
//!
//! * `loom` explores every interleaving (and weak-memory reordering) of a
//!   producer and a consumer, with each 8-byte word of the data area a
//!   tracked cell, so a read that races a write fails the model;
//! * a property test runs long random sequences against a `VecDeque`
//!   model, checking order, content and that room is refused exactly when
//!   the ring is full.

#[allow(dead_code)]
#[path = "../../conduit/src/shm/ring_core.rs"]
mod ring_core;

use ring_core::{Counter, RingMemory};

mod model {
    use super::*;
    use loom::cell::UnsafeCell;
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
        words: Vec<UnsafeCell<[u8; 8]>>,
    }

    impl LoomRing {
        pub fn new(capacity: usize) -> Self {
            LoomRing {
                tail: LoomCounter(AtomicU64::new(0)),
                head: LoomCounter(AtomicU64::new(0)),
                words: (0..capacity / 8).map(|_| UnsafeCell::new([0; 8])).collect(),
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
        fn write(&self, pos: u64, data: &[u8]) {
            assert!(pos.is_multiple_of(8));
            for (i, chunk) in data.chunks(8).enumerate() {
                // SAFETY: loom checks that no other access to this word is
                // concurrent; the pointer is valid for the cell's life.
                self.words[pos as usize / 8 + i]
                    .with_mut(|w| unsafe { (&mut *w)[..chunk.len()].copy_from_slice(chunk) });
            }
        }
        fn read(&self, pos: u64, out: &mut [u8]) {
            assert!(pos.is_multiple_of(8));
            for (i, chunk) in out.chunks_mut(8).enumerate() {
                let n = chunk.len();
                // SAFETY: as above, for reading.
                self.words[pos as usize / 8 + i].with(|w| chunk.copy_from_slice(unsafe { &(&*w)[..n] }));
            }
        }
    }

    fn push(ring: &LoomRing, msg: &[u8]) {
        loop {
            if let Some(r) = ring_core::try_reserve(ring, msg.len()).unwrap() {
                ring.write(r.payload_pos(), msg);
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
                ring.read(rec.payload_pos(), &mut out);
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
    use std::cell::RefCell;
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
        data: RefCell<Vec<u8>>,
        known: std::cell::Cell<(u64, u64)>,
    }

    impl HeapRing {
        /// An empty ring of `cap` bytes whose data area starts as `fill`.
        fn new(cap: u64, fill: u8) -> HeapRing {
            HeapRing {
                tail: StdCounter(AtomicU64::new(0)),
                head: StdCounter(AtomicU64::new(0)),
                data: RefCell::new(vec![fill; cap as usize]),
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
            self.data.borrow().len() as u64
        }
        fn write(&self, pos: u64, data: &[u8]) {
            self.data.borrow_mut()[pos as usize..pos as usize + data.len()].copy_from_slice(data);
        }
        fn read(&self, pos: u64, out: &mut [u8]) {
            out.copy_from_slice(&self.data.borrow()[pos as usize..pos as usize + out.len()]);
        }
        fn known_head(&self) -> u64 {
            self.known.get().0
        }
        fn remember_head(&self, head: u64) {
            self.known.set((head, self.known.get().1));
        }
        fn known_tail(&self) -> u64 {
            self.known.get().1
        }
        fn remember_tail(&self, tail: u64) {
            self.known.set((self.known.get().0, tail));
        }
    }

    /// xorshift64*: a small deterministic generator (seeded per case).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
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
                            let msg = vec![counter; len];
                            ring.write(r.payload_pos(), &msg);
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
                            ring.read(rec.payload_pos(), &mut out);
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
                        let msg = vec![counter; len];
                        ring.write(r.payload_pos(), &msg);
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
                    ring.read(rec.payload_pos(), &mut out);
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
        // A header claiming more than was committed.
        ring.write(0, &[0xff, 0, 0, 0, 1, 0, 0, 0]);
        ring.tail.store(16, Ordering::Release);
        assert!(ring_core::peek(&ring).is_err());
        // An unknown kind.
        ring.write(0, &[8, 0, 0, 0, 9, 0, 0, 0]);
        assert!(ring_core::peek(&ring).is_err());
        // A tail beyond the capacity.
        ring.tail.store(cap + 8, Ordering::Release);
        assert!(ring_core::peek(&ring).is_err());
    }
}
