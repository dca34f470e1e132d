//! # cairn-ring
//!
//! The bottom of Cairn's map (see `shared/DESIGN.md`, "The parts"): everything that decides
//! *where* an account, container or object lives.
//!
//! - [`hash`]: hash paths and partitions (`PROTOCOLS.md`, "Hash paths and rings");
//! - [`types`]: devices and the partition → device table that servers load;
//! - [`file`]: the versioned, checksummed ring and builder file envelope.
//!
//! No async and no I/O beyond reading and writing ring files.

pub mod cli;
pub mod file;
pub mod hash;
pub mod types;

pub use hash::HashPathSecret;
pub use types::{Device, RingData};
