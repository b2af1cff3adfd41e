//! Mach's three message calls, done with conduit's ports:
//!
//! * `msg_send` — [`Sender::send`](conduit::Sender::send) to a port;
//! * `msg_receive` — [`Receiver::recv`](conduit::Receiver::recv) on a port
//!   this task holds the receive right of;
//! * `msg_rpc` — [`Sender::call`](conduit::Sender::call): send a message
//!   carrying a **send-once reply right** and wait for exactly one
//!   return message; a server that drops the right without answering (or
//!   dies) ends the call with `CallError::NoReply`, never a hang.
//!
//! The task's port is created here (`port_allocate`) and its receive right
//! moved into the server process inside a message.
//!
//! ```text
//! cargo run --example msg_rpc
//! ```

use conduit::process::{self, Command};
use conduit::{CallError, Receiver, ReplyTo, Sender};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum Msg {
    /// One way: no answer (msg_send).
    Log(String),
    /// msg_rpc: the length of a string, answered once.
    Length(String, ReplyTo<usize>),
    /// msg_rpc that the server declines (it drops the reply right).
    Refused(ReplyTo<usize>),
}

fn server() -> Result<(), conduit::Error> {
    let (up, down) = process::parent::<String, Receiver<Msg>>()?;
    let port = down.recv().expect("the receive right");
    // msg_receive, until every sender is gone.
    for msg in port.iter() {
        match msg {
            Msg::Log(text) => up.send(format!("server logged: {text}")).expect("the parent listens"),
            Msg::Length(s, reply) => {
                let _ = reply.send(s.len());
            }
            Msg::Refused(reply) => drop(reply),
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if process::is_linked() {
        return Ok(server()?);
    }
    // port_allocate: a port; its receive right goes to the server task.
    let (port, receive_right): (Sender<Msg>, Receiver<Msg>) = conduit::bounded(8)?;
    let mut task = Command::new(std::env::current_exe()?).spawn::<Receiver<Msg>, String>()?;
    task.tx.send(receive_right).map_err(|_| "the server is gone")?;

    port.send(Msg::Log("hello".into())).map_err(|_| "msg_send")?;
    println!("{}", task.rx.recv()?);
    let n = port.call(|reply| Msg::Length("message passing".into(), reply))?;
    println!("msg_rpc: length {n}");
    match port.call(Msg::Refused) {
        Err(CallError::NoReply) => println!("msg_rpc: the server dropped the reply right: NoReply"),
        other => println!("msg_rpc: unexpected {other:?}"),
    }
    drop(port);
    task.child.wait()?;
    Ok(())
}
