//! The Windows LPC connect handshake, after the notes:
//!
//! 1. the server publishes a **connection port** under a name (the broker
//!    is the name service: `Client::serve`);
//! 2. the client opens a handle to it by name and sends a connection
//!    request (`Client::connect_service`);
//! 3. the server side makes **two private communication ports** and hands
//!    the client its ends;
//! 4. client and server talk over those ports — the broker is no longer
//!    in the path.
//!
//! The broker runs inside this process; the server is a second process.
//!
//! ```text
//! cargo run -p conduit-broker --example lpc
//! ```

use conduit_broker::{Client, NameFlags};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("server") {
        let socket = args.next().ok_or("server SOCKET")?;
        let c = Client::connect_to(socket.as_ref())?;
        // The connection port.
        let connections = c.serve::<String, String>("lpc.subsystem", NameFlags::default())?;
        println!("ready");
        // One client: its private pair of ports.
        let conn = connections.recv()?;
        for request in conn.requests.iter() {
            conn.replies.send(format!("subsystem says: {}", request.to_uppercase()))?;
        }
        return Ok(());
    }
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("conduit-lpc-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("broker.sock");
    let c = Client::connect_or_start_at(&socket)?;
    let mut server = std::process::Command::new(std::env::current_exe()?)
        .args(["server", socket.to_str().ok_or("path")?])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().ok_or("stdout")?).read_line(&mut line)?;
    // Open the connection port by name, send the connection request, get
    // the private ports.
    let (requests, replies) = c.connect_service::<String, String>("lpc.subsystem")?;
    for text in ["hello", "goodbye"] {
        requests.send(text.to_string())?;
        println!("{}", replies.recv()?);
    }
    drop(requests);
    let status = server.wait()?;
    println!("server exited: {}", status.success());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
