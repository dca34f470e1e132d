//! `cairn`: the one binary that runs every role. Argument parsing and dispatch only; the
//! work lives in the crates (`shared/DESIGN.md`, "Layout of the repository").

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: a ring-based object store speaking the Swift API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build and inspect rings (`cairn ring BUILDER VERB …`).
    Ring(cairn_ring::cli::RingArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Ring(args) => cairn_ring::cli::run(args),
    }
}
