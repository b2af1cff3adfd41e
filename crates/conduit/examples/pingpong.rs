//! Round trips of an 8-byte message between two processes (profiling aid):
//! `pingpong [uds|shm|shm-spin]`.
use std::time::Instant;

use conduit::channel::shm;
use conduit::memory::WaitStrategy;
use conduit::{Receiver, Sender};

type Pair = (Sender<[u8; 8]>, Receiver<[u8; 8]>);

fn pair(kind: &str) -> Pair {
    match kind {
        "uds" => conduit::bounded(16).unwrap(),
        "shm" => shm::bounded(16).unwrap(),
        _ => shm::Builder::new().bounded(16).wait(WaitStrategy::Spin).build().unwrap(),
    }
}

fn main() {
    if conduit::process::is_linked() {
        let (_up, down) = conduit::process::parent::<(), (Receiver<[u8; 8]>, Sender<[u8; 8]>)>().unwrap();
        let (rx, tx) = down.recv().unwrap();
        for m in rx.iter() {
            tx.send(m).unwrap();
        }
        return;
    }
    let kind = std::env::args().nth(1).unwrap_or_else(|| "shm-spin".into());
    let (to_tx, to_rx) = pair(&kind);
    let (back_tx, back_rx) = pair(&kind);
    let mut l = conduit::process::Command::new(std::env::current_exe().unwrap())
        .spawn::<(Receiver<[u8; 8]>, Sender<[u8; 8]>), ()>()
        .unwrap();
    l.tx.send((to_rx, back_tx)).unwrap();
    let n = 200_000;
    let mut v = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t = Instant::now();
        to_tx.send(i.to_le_bytes()).unwrap();
        back_rx.recv().unwrap();
        v.push(t.elapsed().as_nanos());
    }
    v.sort();
    println!("{kind}: p50 {} ns p99 {} ns", v[n / 2], v[n * 99 / 100]);
    drop(to_tx);
    l.child.wait().unwrap();
}
