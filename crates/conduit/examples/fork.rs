//! The notes' fork examples, done with `process::Command` (a new process
//! runs this program again; nothing is duplicated by accident):
//!
//! * `fork pid` — print this process's id;
//! * `fork parent-child` — one parent and one child, each saying who it is;
//! * `fork four` — "two forks make four processes": a child that spawns a
//!   child, beside a second child of the parent that does the same;
//! * `fork shell` — the shell's loop: read a command, create a process to
//!   run it, wait for it, print its exit status (with `std`'s `Command`:
//!   a program that is not conduit's needs no link, and inherits none).
//!
//! ```text
//! cargo run --example fork -- four
//! echo "true; false; echo hi" | cargo run --example fork -- shell
//! ```

use std::io::BufRead;

use conduit::process::{self, Command};

/// Spawn this program again as `role`; its link reports its pid.
fn spawn(role: &str) -> Result<process::Linked<(), Vec<u32>>, conduit::Error> {
    Command::new(std::env::current_exe()?).arg(role).spawn::<(), Vec<u32>>()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let role = std::env::args().nth(1).unwrap_or_else(|| "pid".into());
    match role.as_str() {
        "pid" => println!("my pid is {}", std::process::id()),
        "parent-child" => {
            let mut child = spawn("child")?;
            let pids = child.rx.recv()?;
            child.child.wait()?;
            println!("parent {} has child {}", std::process::id(), pids[0]);
        }
        "child" => {
            let (up, _) = process::parent::<Vec<u32>, ()>()?;
            up.send(vec![std::process::id()])?;
        }
        "four" => {
            // The first "fork" makes two processes; the second, done by
            // both, makes four: this one, two children, one grandchild.
            let mut a = spawn("forks-once")?;
            let mut b = spawn("child")?;
            let mut all = vec![std::process::id()];
            all.extend(a.rx.recv()?);
            all.extend(b.rx.recv()?);
            a.child.wait()?;
            b.child.wait()?;
            all.sort_unstable();
            all.dedup();
            println!("{} processes: {:?}", all.len(), all);
        }
        "forks-once" => {
            let (up, _) = process::parent::<Vec<u32>, ()>()?;
            let mut c = spawn("child")?;
            let mut pids = vec![std::process::id()];
            pids.extend(c.rx.recv()?);
            c.child.wait()?;
            up.send(pids)?;
        }
        "shell" => {
            for line in std::io::stdin().lock().lines() {
                for cmd in line?.split(';').map(str::trim).filter(|c| !c.is_empty()) {
                    let mut words = cmd.split_whitespace();
                    let program = words.next().expect("not empty");
                    let status = std::process::Command::new(program).args(words).status();
                    match status {
                        Ok(s) => println!("[{cmd}] exited with {}", s.code().unwrap_or(-1)),
                        Err(e) => println!("[{cmd}] could not run: {e}"),
                    }
                }
            }
        }
        other => return Err(format!("unknown role {other}").into()),
    }
    Ok(())
}
