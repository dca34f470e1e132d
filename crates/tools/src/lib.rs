//! # cairn-tools
//!
//! Operator tools, the Cairn versions of Swift's `swift-get-nodes`,
//! `swift-object-info` / `swift-container-info` / `swift-account-info`,
//! `swift-dispersion-populate` / `swift-dispersion-report` and `swift-recon`:
//!
//! - [`get_nodes`] (`cairn get-nodes RING_FILE ACCOUNT [CONTAINER [OBJECT]]`): the
//!   partition and hash of a name, its primary nodes and first handoffs, ready-to-run
//!   `curl` lines against the backend API, and where the name lives on each node's disk;
//! - [`info`] (`cairn info PATH`): what an object file (`.data`, `.ts`, `.meta`) or a
//!   container/account database (`.db`) holds, whether it sits where the ring and the
//!   hash path say it should, and which devices are its primaries and handoffs;
//! - [`dispersion`] (`cairn dispersion populate|report`): plant containers and objects
//!   covering a percentage of the rings' partitions through the proxy, then check every
//!   copy directly on its primary nodes (exit 1 below `--threshold`);
//! - [`recon`] (`cairn recon`): every storage server's recon stats in one table —
//!   replication age, failures, async pendings, quarantines, disk, load, clock skew, ring
//!   MD5s against the local rings (exit 1 when a server is unreachable, a ring differs or
//!   replication is stale).
//!
//! `get-nodes` and `info` read only local files (the cluster file `cairn.toml` for the
//! hash path secrets and ring directory, ring files, the inspected file) and never write:
//! databases are opened read-only with plain SQL rather than through `cairn-db`'s
//! broker, which may convert the journal mode or quarantine a damaged file on open.
//!
//! A separate crate because it sits above the role crates (it reads the object disk
//! format of `cairn-object`) and below the binary; the binary wires [`GetNodesArgs`],
//! [`InfoArgs`], [`DispersionArgs`] and [`ReconArgs`] as subcommands. Bad input
//! (unreadable files, unknown names, a cluster file that does not load, a failed login)
//! prints one line on stderr and exits with status 2.

use std::process::ExitCode;

mod client;
mod dispersion;
mod get_nodes;
mod info;
mod placement;
mod recon;

pub use dispersion::{
    dispersion, dispersion_populate, dispersion_report, missing_line, objects_container,
    pick_names, wanted, CommonArgs, DispersionArgs, DispersionCommand, DispersionReport,
    PopulateArgs, PopulateRing, PopulateSummary, ReportArgs, RingReport,
};
pub use get_nodes::{get_nodes_report, GetNodesArgs};
pub use info::{info_report, InfoArgs};
pub use placement::{NodeLine, Placement};
pub use recon::{recon, recon_report, ReconArgs, ReconReport, Replication, ServerRecon};

/// Default location of the cluster file.
pub const DEFAULT_CLUSTER_CONFIG: &str = "/etc/cairn/cairn.toml";

/// Why a tool refused its input: one line for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError(pub String);

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // One line, whatever the cause said.
        f.write_str(&self.0.replace('\n', " "))
    }
}

impl std::error::Error for ToolError {}

impl From<String> for ToolError {
    fn from(s: String) -> Self {
        ToolError(s)
    }
}

fn finish(result: Result<String, ToolError>, tool: &str) -> ExitCode {
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cairn {tool}: {e}");
            ExitCode::from(2)
        }
    }
}

/// `cairn get-nodes`: print the report of [`get_nodes_report`]; exit 2 on bad input.
pub fn get_nodes(args: GetNodesArgs) -> ExitCode {
    finish(get_nodes_report(&args), "get-nodes")
}

/// `cairn info`: print the report of [`info_report`]; exit 2 on bad input.
pub fn info(args: InfoArgs) -> ExitCode {
    finish(info_report(&args), "info")
}
