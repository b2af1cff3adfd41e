//! Round trips of an 8-byte message between two processes (profiling aid).
use std::time::Instant;
fn main() {
    if conduit::process::is_linked() {
        let (tx, rx) = conduit::process::parent::<[u8; 8], [u8; 8]>().unwrap();
        for m in rx.iter() {
            tx.send(m).unwrap();
        }
        return;
    }
    let mut l = conduit::process::Command::new(std::env::current_exe().unwrap()).spawn::<[u8; 8], [u8; 8]>().unwrap();
    let n = 200_000;
    let mut v = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t = Instant::now();
        l.tx.send(i.to_le_bytes()).unwrap();
        l.rx.recv().unwrap();
        v.push(t.elapsed().as_nanos());
    }
    v.sort();
    println!("p50 {} ns p99 {} ns", v[n / 2], v[n * 99 / 100]);
    drop(l.tx);
    l.child.wait().unwrap();
}
