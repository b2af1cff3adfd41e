//! The notes' ordinary pipe between a parent and the child it creates:
//! the parent writes "Greetings", the child reads it and prints
//! `read Greetings` — with `process::Command::pipes(true)`, which makes the
//! two pipes, gives the child its ends only (no stray descriptor to close
//! by hand, the classic bug of the C version) and types the messages. The
//! notes' C program is `examples/c/pipe.c`.
//!
//! ```text
//! cargo run --example pipe
//! ```

use conduit::process::{self, Command};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if process::is_linked() {
        // The child: its read end of the parent's pipe.
        let (_up, down) = process::parent::<(), String>()?;
        let read_msg = down.recv()?;
        println!("read {read_msg}");
        return Ok(());
    }
    let mut child = Command::new(std::env::current_exe()?).pipes(true).spawn::<String, ()>()?;
    child.tx.send("Greetings".to_string())?;
    drop(child.tx); // close(fd[WRITE_END])
    child.child.wait()?; // wait(NULL)
    Ok(())
}
