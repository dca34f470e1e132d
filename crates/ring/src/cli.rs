//! `cairn ring …`: the ring-builder command line (being written).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct RingArgs {
    /// The builder file.
    pub builder: std::path::PathBuf,
}

pub fn run(_args: RingArgs) -> ExitCode {
    eprintln!("cairn ring: not yet implemented");
    ExitCode::from(2)
}
