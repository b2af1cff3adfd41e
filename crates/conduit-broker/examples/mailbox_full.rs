//! Mach's four choices when a mailbox is full, with a broker mailbox of
//! capacity 1 (`conduit_broker::OnFull`):
//!
//! 1. **wait indefinitely** (`OnFull::Block`) — until a receiver takes one;
//! 2. **wait at most n milliseconds** (`OnFull::Timeout(n)`) — then `Timeout`;
//! 3. **return immediately** (`OnFull::NoWait`) — `Full`;
//! 4. **temporarily cache the message** (`OnFull::Leave`) — the broker
//!    keeps it (one per sender) and queues it when there is room.
//!
//! The broker runs inside this process (`Client::connect_or_start_at`); a
//! second process receives, which ends the wait of choice 1.
//!
//! ```text
//! cargo run -p conduit-broker --example mailbox_full
//! ```

use std::time::Instant;

use conduit_broker::{BrokerError, Capacity, Client, ClientError, MailboxOptions, OnFull, WaitFor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("receiver") {
        // The second process: take one message when told the mailbox is full.
        let socket = args.next().ok_or("receiver SOCKET")?;
        let c = Client::connect_to(socket.as_ref())?;
        let m = c.recv("jobs", 0, WaitFor::Forever)?;
        println!("receiver took {:?}", String::from_utf8_lossy(&m.data));
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("conduit-mailbox-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("broker.sock");
    let c = Client::connect_or_start_at(&socket)?;
    let opts = MailboxOptions { capacity: Capacity::Bounded(1), ..MailboxOptions::default() };
    c.create_mailbox("jobs", opts)?;
    c.send("jobs", 1, b"first", OnFull::NoWait)?;
    println!("the mailbox holds 1 of 1");

    // 3. Return immediately.
    match c.send("jobs", 1, b"second", OnFull::NoWait) {
        Err(ClientError::Broker(BrokerError::Full)) => println!("return immediately: Full"),
        other => println!("return immediately: {other:?}"),
    }
    // 2. Wait at most n milliseconds.
    let t = Instant::now();
    match c.send("jobs", 1, b"second", OnFull::Timeout(50)) {
        Err(ClientError::Broker(BrokerError::Timeout)) => {
            println!("wait at most 50 ms: Timeout (after at least 50 ms: {})", t.elapsed().as_millis() >= 50)
        }
        other => println!("wait at most 50 ms: {other:?}"),
    }
    // 1. Wait indefinitely: another process takes "first"; our send
    // returns once there is room.
    let mut receiver = std::process::Command::new(std::env::current_exe()?)
        .args(["receiver", socket.to_str().ok_or("path")?])
        .spawn()?;
    c.send("jobs", 1, b"patient", OnFull::Block)?;
    receiver.wait()?;
    println!("wait indefinitely: sent once there was room");
    // 4. Temporarily cache the message with the broker: the send returns
    // at once; the broker queues it when there is room.
    let sent = c.send("jobs", 1, b"cached", OnFull::Leave)?;
    println!("cache it: left with the broker: {}", sent.deferred);
    for _ in 0..2 {
        let m = c.recv("jobs", 0, WaitFor::Forever)?;
        println!("received {:?}", String::from_utf8_lossy(&m.data));
    }
    c.remove_mailbox("jobs")?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
