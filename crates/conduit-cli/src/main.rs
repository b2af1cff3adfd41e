//! `conduit`: the command-line face of conduit. Thin: each subcommand
//! lives in its own module and calls the library.

#![forbid(unsafe_code)]

mod broker_cmd;
mod chaos;
mod kernel_cmd;
mod net_cmd;
mod top;
mod tour;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "conduit",
    version,
    about = "Inter-process communication for Linux: channels, ports with rights, shared memory, a broker."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show every mechanism conduit has, between real processes, one line each.
    Tour,
    /// Measure conduit against the hardware floor and its peers.
    Bench(conduit_bench::Options),
    /// Run the broker (names, mailboxes) until SIGTERM.
    Daemon(broker_cmd::DaemonArgs),
    /// Mailboxes owned by the broker.
    #[command(subcommand)]
    Mailbox(MailboxCommand),
    /// Send a message to a mailbox or a socket (tcp:, udp:, unix:).
    Send(broker_cmd::SendArgs),
    /// Receive a message from a mailbox or a socket (printed to standard output).
    Recv(broker_cmd::RecvArgs),
    /// Listen at a socket address and print what arrives (conduit frames, or lines with --raw).
    Listen(net_cmd::ListenArgs),
    /// Send a process a signal (by name or number; --value: sigqueue).
    Signal(kernel_cmd::SignalArgs),
    /// List every live IPC object: conduit's and the kernel's.
    Ls(broker_cmd::LsArgs),
    /// Remove an IPC object.
    Rm(broker_cmd::RmArgs),
    /// A live view of every IPC object, with mailboxes' messages per second (--once [--json]: one snapshot).
    Top(top::TopArgs),
    /// Carry this host's mailboxes to other hosts over Zenoh (--listen ENDPOINT | --connect ENDPOINT [--only PATTERN]).
    /// Runs `conduit-bridge`, built apart (crates/conduit-zenoh), found next to this program or on PATH.
    #[command(disable_help_flag = true)]
    Bridge {
        /// Passed to `conduit-bridge` (`conduit bridge --help` shows its options).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Kill -9 a random side of a random transport at a random moment, many times; check nothing is lost, duplicated, corrupted or leaked.
    Chaos(chaos::ChaosArgs),
    /// (internal) A child process of `tour`.
    #[command(name = "__tour-child", hide = true)]
    TourChild { role: String, args: Vec<String> },
    /// (internal) A child process of `bench`.
    #[command(name = "__bench-peer", hide = true)]
    BenchPeer { case: String, args: Vec<String> },
    /// (internal) A child process of `chaos`.
    #[command(name = "__chaos-child", hide = true)]
    ChaosChild,
}

#[derive(Subcommand)]
enum MailboxCommand {
    /// Create a mailbox.
    Create(broker_cmd::CreateArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Tour => tour::run(),
        Command::TourChild { role, .. } => tour::child(&role),
        Command::Bench(opts) => conduit_bench::run(&opts),
        Command::BenchPeer { case, args } => conduit_bench::peer(&case, &args),
        Command::Daemon(a) => broker_cmd::daemon(&a),
        Command::Mailbox(MailboxCommand::Create(a)) => broker_cmd::create(&a),
        Command::Send(a) => broker_cmd::send(&a),
        Command::Recv(a) => broker_cmd::recv(&a),
        Command::Listen(a) => net_cmd::listen(&a),
        Command::Signal(a) => kernel_cmd::signal(&a),
        Command::Ls(a) => broker_cmd::ls(&a),
        Command::Rm(a) => broker_cmd::rm(&a),
        Command::Top(a) => top::run(&a),
        Command::Chaos(a) => chaos::run(&a),
        Command::Bridge { args } => bridge(&args),
        Command::ChaosChild => chaos::child(),
    }
}

/// `conduit bridge`: run `conduit-bridge` (next to this program, else on
/// PATH) in this process's place, with the same arguments. The bridge is
/// its own crate so that conduit's default build does not build Zenoh.
fn bridge(args: &[std::ffi::OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let beside = std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join("conduit-bridge")));
    let program = beside.filter(|p| p.is_file()).unwrap_or_else(|| "conduit-bridge".into());
    let e = std::process::Command::new(&program).args(args).exec();
    eprintln!(
        "conduit bridge: cannot run {}: {e}\n\
         The bridge is built apart, so that conduit's default build stays free of Zenoh:\n  \
         cargo build --release --manifest-path crates/conduit-zenoh/Cargo.toml --target-dir target",
        program.display()
    );
    ExitCode::from(2)
}
