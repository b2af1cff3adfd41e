//! `conduit`: the command-line face of conduit. Thin: each subcommand
//! lives in its own module and calls the library.

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
    /// (internal) A child process of `tour`.
    #[command(name = "__tour-child", hide = true)]
    TourChild { role: String },
    /// (internal) A child process of `bench`.
    #[command(name = "__bench-peer", hide = true)]
    BenchPeer { case: String, args: Vec<String> },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Tour => tour::run(),
        Command::TourChild { role } => tour::child(&role),
        Command::Bench(opts) => conduit_bench::run(&opts),
        Command::BenchPeer { case, args } => conduit_bench::peer(&case, &args),
    }
}
