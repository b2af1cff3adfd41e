//! A client of `echo_server`: sends each argument as a message and prints
//! the answers.
//!
//! ```text
//! cargo run --example echo_client -- tcp:127.0.0.1:7007 hello world
//! ```

fn main() -> Result<(), conduit::Error> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "tcp:127.0.0.1:7007".into());
    let conn = conduit::net::connect::<String, String>(addr.as_str())?;
    for word in args {
        conn.tx.send(word).map_err(|e| conduit::Error::Link(e.to_string()))?;
        match conn.rx.recv() {
            Ok(answer) => println!("{answer}"),
            Err(e) => return Err(conduit::Error::Link(e.to_string())),
        }
    }
    Ok(())
}
