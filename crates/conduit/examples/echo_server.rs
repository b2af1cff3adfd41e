//! An echo server in the notes' three styles, over conduit's typed
//! channels on TCP (or a Unix socket): each line a client sends comes
//! back upper-cased.
//!
//! ```text
//! cargo run --example echo_server -- iterative tcp:127.0.0.1:7007
//! cargo run --example echo_server -- threads   tcp:127.0.0.1:7007
//! cargo run --example echo_server -- processes tcp:127.0.0.1:7007
//! cargo run --example echo_client -- tcp:127.0.0.1:7007 hello world
//! ```
//!
//! * `iterative`: one client at a time (the others wait in the backlog);
//! * `threads`: a thread per connection;
//! * `processes`: a process per connection — this program runs itself
//!   again as the child (`--child`), which gets the connection as its
//!   link; the server keeps no copy of the client's sockets and reaps
//!   every child.

use std::io::Write;

use conduit::net::{self, Conn, Listener};
use conduit::{Receiver, Sender};

/// The service itself, whoever runs it.
fn echo(tx: &Sender<String>, rx: &Receiver<String>) {
    for line in rx.iter() {
        if tx.send(line.to_uppercase()).is_err() {
            return;
        }
    }
}

fn main() -> Result<(), conduit::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        // A child of the process-per-connection server.
        let (tx, rx) = conduit::process::parent::<String, String>()?;
        echo(&tx, &rx);
        return Ok(());
    }
    let style = args.first().map(String::as_str).unwrap_or("threads");
    let addr = args.get(1).map(String::as_str).unwrap_or("tcp:127.0.0.1:7007");
    let listener = Listener::bind(addr)?;
    println!("{}", listener.local_addr());
    std::io::stdout().flush()?;
    match style {
        "iterative" => net::serve_iterative(&listener, |c: Conn<String, String>| echo(&c.tx, &c.rx)),
        "threads" => net::serve_threads(&listener, |c: Conn<String, String>| echo(&c.tx, &c.rx)),
        "processes" => net::serve_processes::<String, String>(&listener, || {
            let mut cmd = conduit::process::Command::new(std::env::current_exe().expect("this program"));
            cmd.arg("--child").kill_on_parent_death(true);
            cmd
        }),
        other => {
            eprintln!("echo_server: unknown style {other:?} (iterative, threads, processes)");
            std::process::exit(2);
        }
    }
}
