//! The notes' Date client: connect to a Date server (port 6013 by
//! default), print the line it sends, and end when the server closes.
//! Plain TCP: it reads any line-based server.
//!
//! ```text
//! cargo run --example date_client                   # tcp:127.0.0.1:6013
//! cargo run --example date_client -- tcp:HOST:PORT
//! ```

use std::io::{BufRead, BufReader};
use std::time::Duration;

fn main() -> Result<(), conduit::Error> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "tcp:127.0.0.1:6013".into());
    let stream = conduit::net::connect_stream(addr.as_str(), Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    for line in BufReader::new(stream).lines() {
        println!("{}", line?);
    }
    Ok(())
}
