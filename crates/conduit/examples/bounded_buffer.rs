//! The notes' bounded buffer: a producer and a consumer process sharing a
//! buffer of `BUFFER_SIZE` 10 items in shared memory. The textbook ring
//! (`in`, `out`, `(in + 1) % BUFFER_SIZE == out` means full) holds at
//! most 9; conduit's shared-memory channel uses all 10 slots, and its
//! producer sleeps when the buffer is full instead of spinning.
//!
//! ```text
//! cargo run --example bounded_buffer
//! ```
//!
//! Prints how many items the buffer held at most (10), and the sum the
//! consumer computed.

use conduit::channel::shm;
use conduit::process::{self, Command};
use conduit::{Receiver, Sender};

const BUFFER_SIZE: usize = 10;
const ITEMS: u64 = 1000;

fn main() -> Result<(), conduit::Error> {
    if process::is_linked() {
        // The consumer: take the buffer's receiving end, consume, report.
        let (up, down) = process::parent::<u64, Receiver<u64>>()?;
        let buffer = down.recv().expect("the buffer");
        let sum: u64 = buffer.iter().sum();
        up.send(sum).expect("report");
        return Ok(());
    }
    let (producer, consumer): (Sender<u64>, Receiver<u64>) = shm::bounded(BUFFER_SIZE)?;
    let mut child = Command::new(std::env::current_exe()?).spawn::<Receiver<u64>, u64>()?;
    // Fill the buffer before the consumer has it: all 10 slots take an item.
    for item in 0..BUFFER_SIZE as u64 {
        producer.try_send(item).expect("a free slot");
    }
    let full = producer.len();
    assert!(producer.try_send(99).is_err(), "the 11th does not fit");
    child.tx.send(consumer).expect("give the consumer its end");
    for item in BUFFER_SIZE as u64..ITEMS {
        producer.send(item).expect("the consumer is there");
    }
    drop(producer);
    let sum = child.rx.recv().expect("the consumer's sum");
    child.child.wait()?;
    println!("buffer held at most {full} items; consumer summed {sum}");
    assert_eq!(sum, ITEMS * (ITEMS - 1) / 2);
    Ok(())
}
