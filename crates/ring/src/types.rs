//! The data a ring file carries: devices and the replica → partition → device table.

use serde::{Deserialize, Serialize};

/// One storage device on the ring (`PROTOCOLS.md`, "Ring contents").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: u32,
    pub region: u32,
    pub zone: u32,
    pub ip: String,
    pub port: u16,
    pub replication_ip: String,
    pub replication_port: u16,
    /// The device's directory name under the node's `devices` root (`sdb1`).
    pub device: String,
    pub weight: f64,
    pub meta: String,
}

/// What servers load: the partition power, the assignment table and the devices.
///
/// `replica2part2dev[r][p]` is the device id holding replica `r` of partition `p`. With
/// fractional replica counts the last row is shorter than the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RingData {
    pub part_power: u8,
    pub replica2part2dev: Vec<Vec<u16>>,
    /// Indexed by device id; `None` marks the hole left by a removed device.
    pub devs: Vec<Option<Device>>,
    /// The builder's version counter when this ring was written.
    pub version: u64,
}
