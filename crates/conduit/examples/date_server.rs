//! The notes' Date server: a client connects, gets one line of text — the
//! date — and the connection closes. Plain TCP, so any line-based client
//! can ask it (`nc localhost 6013`, Python's `socket`, a C program, or
//! `cargo run --example date_client`).
//!
//! ```text
//! cargo run --example date_server              # tcp:0.0.0.0:6013
//! cargo run --example date_server -- tcp:127.0.0.1:0 --once
//! ```
//!
//! An iterative server: one client at a time, each served at once.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use conduit::net::Listener;

/// The date as `date` prints it in UTC: `Sun Nov 29 23:45:01 UTC 2026`.
fn date_line(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's method).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} UTC {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        year
    )
}

fn main() -> Result<(), conduit::Error> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "tcp:0.0.0.0:6013".into());
    let once = args.any(|a| a == "--once");
    let listener = Listener::bind(addr.as_str())?;
    // The address on standard output, so that a script can find the port.
    println!("{}", listener.local_addr());
    std::io::stdout().flush()?;
    loop {
        let (mut client, peer) = listener.accept_stream()?;
        // A client that goes before reading its line costs only itself.
        if let Err(e) = writeln!(client, "{}", date_line(SystemTime::now())) {
            eprintln!("date_server: {peer}: {e}");
        }
        drop(client);
        if once {
            return Ok(());
        }
    }
}
