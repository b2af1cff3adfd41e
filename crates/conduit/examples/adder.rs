//! A parent hands a child the receive right of a request channel, then
//! calls it with a send-once reply right. Run: `cargo run --example adder`.

use conduit::process::{self, Command};
use conduit::{Receiver, ReplyTo};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
enum Request {
    Add(i64, i64, ReplyTo<i64>),
}

fn main() -> Result<(), conduit::Error> {
    if process::is_linked() {
        // The child: take the receive right from the parent and serve.
        let (_up, down) = process::parent::<(), Receiver<Request>>()?;
        let requests = down.recv().expect("a receive right");
        for Request::Add(a, b, reply) in requests.iter() {
            let _ = reply.send(a + b);
        }
        return Ok(());
    }
    // The parent: a bounded channel whose receive right moves to the child.
    let (tx, rx) = conduit::bounded::<Request>(16)?;
    let mut server = Command::new(std::env::current_exe()?).spawn::<Receiver<Request>, ()>()?;
    server.tx.send(rx).expect("the child is alive");
    let sum = tx.call(|reply| Request::Add(2, 3, reply)).expect("a reply");
    println!("2 + 3 = {sum}, computed in process {}", server.child.id());
    drop(tx);
    server.child.wait()?;
    Ok(())
}
