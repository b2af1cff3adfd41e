//! The notes' System V message-queue program: a key from `ftok`, a queue
//! from `msgget`, messages of several types with `msgsnd`, and `msgrcv`
//! choosing by type — here a parent and a child process, the child
//! receiving the lowest type first (`msgtyp` negative).
//!
//! ```text
//! cargo run --example sysv_queue
//! ```

use conduit::kernel::{MessageQueue, Select, ftok};
use conduit::process::{self, Command};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keyfile = std::env::temp_dir().join(format!("conduit-sysv-example-{}", std::process::id()));
    if process::is_linked() {
        // The child: the same key from the same file, then receive by type.
        let (up, down) = process::parent::<String, String>()?;
        let path = down.recv()?;
        let q = MessageQueue::open(ftok(&path, b'Q')?)?;
        for _ in 0..3 {
            let (mtype, text) = q.recv(Select::UpTo(10))?;
            up.send(format!("type {mtype}: {}", String::from_utf8_lossy(&text)))?;
        }
        return Ok(());
    }
    std::fs::write(&keyfile, b"")?;
    let q = MessageQueue::create(ftok(&keyfile, b'Q')?, 0o600)?;
    for (mtype, text) in [(3, "third"), (1, "first"), (2, "second")] {
        q.send(mtype, text.as_bytes())?;
    }
    let mut child = Command::new(std::env::current_exe()?).spawn::<String, String>()?;
    child.tx.send(keyfile.display().to_string())?;
    for _ in 0..3 {
        println!("{}", child.rx.recv()?);
    }
    child.child.wait()?;
    q.remove()?;
    std::fs::remove_file(&keyfile)?;
    Ok(())
}
