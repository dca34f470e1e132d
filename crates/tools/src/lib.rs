//! # cairn-tools
//!
//! Offline operator tools, the Cairn versions of Swift's `swift-get-nodes` and
//! `swift-object-info` / `swift-container-info` / `swift-account-info`:
//!
//! - [`get_nodes`] (`cairn get-nodes RING_FILE ACCOUNT [CONTAINER [OBJECT]]`): the
//!   partition and hash of a name, its primary nodes and first handoffs, ready-to-run
//!   `curl` lines against the backend API, and where the name lives on each node's disk;
//! - [`info`] (`cairn info PATH`): what an object file (`.data`, `.ts`, `.meta`) or a
//!   container/account database (`.db`) holds, whether it sits where the ring and the
//!   hash path say it should, and which devices are its primaries and handoffs.
//!
//! Both read only local files (the cluster file `cairn.toml` for the hash path secrets
//! and ring directory, ring files, the inspected file) and never write: databases are
//! opened read-only with plain SQL rather than through `cairn-db`'s broker, which may
//! convert the journal mode or quarantine a damaged file on open.
//!
//! A separate crate because it sits above the role crates (it reads the object disk
//! format of `cairn-object`) and below the binary; the binary wires [`GetNodesArgs`] and
//! [`InfoArgs`] as subcommands. Bad input (unreadable files, unknown names, a cluster file
//! that does not load) prints one line on stderr and exits with status 2.

use std::process::ExitCode;

mod get_nodes;
mod info;
mod placement;

pub use get_nodes::{get_nodes_report, GetNodesArgs};
pub use info::{info_report, InfoArgs};
pub use placement::{NodeLine, Placement};

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
