//! `cairn`: the one binary that runs every role. Argument parsing and dispatch only; the
//! work lives in the crates (`shared/DESIGN.md`, "Layout of the repository").

use std::path::PathBuf;
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
    /// A whole cluster on this machine: 4 storage nodes, 3 replicas, one proxy.
    Aio(cairn_aio::AioArgs),
    /// The object server of a storage node.
    ObjectServer(ConfigArg),
    /// Validate a configuration file; prints the bad key and exits 2 when it is wrong.
    CheckConfig {
        /// The file to check (`cairn.toml`).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Ring(args) => cairn_ring::cli::run(args),
        Command::CheckConfig { file } => check_config(&file),
        Command::Aio(args) => cairn_aio::main(args),
        Command::ObjectServer(arg) => serve("object-server", |rt| {
            rt.block_on(cairn_object::config::run_object_server(&arg.config))
                .map_err(|e| e.to_string())
        }),
    }
}

/// `--config FILE` of a server.
#[derive(clap::Args)]
struct ConfigArg {
    /// The server's role file (`object-server.toml`, …).
    #[arg(long)]
    config: PathBuf,
}

/// Run a server to completion on a multi-threaded runtime; exit 2 when it cannot start.
fn serve(
    name: &str,
    body: impl FnOnce(&tokio::runtime::Runtime) -> Result<(), String>,
) -> ExitCode {
    cairn_common::logging::init_logging(name);
    let runtime = match cairn_common::daemon::build_runtime(0) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match body(&runtime) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::from(2)
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match cairn_common::config::ClusterConfig::load(file) {
        Ok(config) => {
            println!(
                "{}: ok ({} storage polic{}, default {:?})",
                file.display(),
                config.policies.len(),
                if config.policies.len() == 1 {
                    "y"
                } else {
                    "ies"
                },
                config.default_policy().name
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
