//! What the fuzz targets and the seed writer share.

use std::sync::atomic::AtomicU64;

use conduit::memory::ring_core::RingMemory;

/// A ring in plain memory: its counters and data-area words, each of
/// which a test may set to anything.
pub struct WordRing {
    /// Bytes ever released by the consumer.
    pub head: AtomicU64,
    /// Bytes ever committed by producers.
    pub tail: AtomicU64,
    /// The data area, 8 bytes a word (a power of two of them).
    pub words: Vec<AtomicU64>,
}

impl WordRing {
    /// A ring of `words` data words, counters and words from `value(i)`
    /// (`i` = 0 head, 1 tail, 2.. the words).
    pub fn new(words: usize, value: impl Fn(usize) -> u64) -> WordRing {
        WordRing {
            head: AtomicU64::new(value(0)),
            tail: AtomicU64::new(value(1)),
            words: (0..words).map(|i| AtomicU64::new(value(2 + i))).collect(),
        }
    }
}

impl RingMemory for WordRing {
    type C = AtomicU64;
    fn tail(&self) -> &AtomicU64 {
        &self.tail
    }
    fn head(&self) -> &AtomicU64 {
        &self.head
    }
    fn capacity(&self) -> u64 {
        self.words.len() as u64 * 8
    }
    fn data_word(&self, pos: u64) -> &AtomicU64 {
        &self.words[(pos / 8) as usize]
    }
}
