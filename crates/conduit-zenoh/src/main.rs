//! `conduit-bridge` (also `conduit bridge`): a bridge of this host's
//! broker to other hosts' over Zenoh.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Carry this host's conduit mailboxes to other hosts over Zenoh, and
/// theirs here (explicit endpoints; no multicast scouting).
#[derive(Parser, Debug)]
#[command(name = "conduit bridge", version)]
struct Args {
    /// Listen for other bridges here (`tcp/ADDR:PORT`; repeatable).
    #[arg(long, required_unless_present = "connect")]
    listen: Vec<String>,
    /// Connect to another bridge here (`tcp/ADDR:PORT`; repeatable).
    #[arg(long)]
    connect: Vec<String>,
    /// Only mailboxes whose names match this pattern (`*`: any run of
    /// bytes), both ways.
    #[arg(long)]
    only: Option<String>,
    /// This host's name among the bridges (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// The local broker's socket (default: as every conduit command finds it).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Declare a silent peer gone after this many milliseconds (Zenoh's lease; default 10000).
    #[arg(long)]
    lease_ms: Option<u64>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,zenoh=warn".into()),
        )
        .init();
    let args = Args::parse();
    let host = args.name.unwrap_or_else(|| rustix::system::uname().nodename().to_string_lossy().into_owned());
    let opts = conduit_zenoh::Options {
        host,
        listen: args.listen,
        connect: args.connect,
        only: args.only,
        socket: args.socket.unwrap_or_else(conduit_broker::paths::socket_path),
        lease_ms: args.lease_ms,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conduit bridge: cannot start a runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = conduit_zenoh::run(opts) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = terminate() => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conduit bridge: {e}");
            ExitCode::from(1)
        }
    }
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
