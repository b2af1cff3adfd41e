//! The notes' signal handler, turned into a message: instead of code
//! running inside a handler, the signal arrives on a channel that the
//! program reads in its own loop (here together with its work, in a port
//! set). A child process sends `SIGUSR1` with `kill` and `SIGUSR2` with
//! `sigqueue` and a value.
//!
//! ```text
//! cargo run --example signal_message
//! ```

use conduit::process::{self, Command};
use conduit::signal::{self, SIGUSR1, SIGUSR2};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if process::is_linked() {
        let (up, _down) = process::parent::<(), ()>()?;
        let parent = std::os::unix::process::parent_id();
        signal::send(parent, SIGUSR1)?;
        signal::queue(parent, SIGUSR2, 42)?;
        up.send(())?;
        return Ok(());
    }
    let signals = signal::subscribe(&[SIGUSR1, SIGUSR2])?;
    let mut child = Command::new(std::env::current_exe()?).spawn::<(), ()>()?;
    child.rx.recv()?;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let s = signals.recv()?;
        let name = if s.signal == SIGUSR1 { "SIGUSR1" } else { "SIGUSR2" };
        seen.push(format!("{name} from pid {} value {:?}", s.pid.unwrap_or(0), s.value));
    }
    seen.sort();
    for line in seen {
        println!("{line}");
    }
    child.child.wait()?;
    Ok(())
}
