//! # cairn-common
//!
//! The shared floor under every Cairn server (`shared/DESIGN.md`, "Layout"): timestamps,
//! hash paths (re-exported from `cairn-ring`), configuration loading, constraints, and the
//! HTTP plumbing the roles share. It sits beside `cairn-ring` at the bottom of the map;
//! every role crate depends on it, it depends on no role.

pub mod config;
pub mod constraints;
pub mod daemon;
pub mod fs;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod recon;
pub mod server_config;
pub mod timestamp;

pub use cairn_ring::hash::{partition_of, suffix_of, to_hex, HashPathSecret};
pub use timestamp::{Timestamp, TimestampError};
