//! # cairn-ring
//!
//! The bottom of Cairn's map (see `shared/DESIGN.md`, "The parts"): everything that decides
//! *where* an account, container or object lives.
//!
//! - [`hash`]: hash paths and partitions (`PROTOCOLS.md`, "Hash paths and rings");
//! - [`types`]: devices and the partition → device table that servers load;
//! - [`file`](mod@file): the versioned, checksummed ring and builder file envelope;
//! - [`builder`]: the ring builder and rebalance (`cairn ring …`, [`cli`]): how partitions
//!   are spread over regions, zones, servers and devices by weight, moving as little as
//!   possible and at most one replica of a partition per `min_part_hours`;
//! - [`ring`]: the loaded ring servers use (primaries, handoffs, reload on change);
//! - [`devspec`]: `swift-ring-builder`-style device add/search/change strings.
//!
//! No async and no I/O beyond reading and writing ring files.

pub mod builder;
pub mod cli;
pub mod devspec;
pub mod file;
pub mod hash;
pub mod ring;
pub mod types;

pub use devspec::{DevSpecError, DeviceSpec, InfoChange, SearchValue};
pub use hash::HashPathSecret;
pub use ring::{Handoff, MoreNodes, NodeRef, PartNodes, Ring, RingError, RingWatcher};
pub use types::{Device, RingData};
