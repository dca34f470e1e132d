//! The ring builder: devices, weights and the partition → device assignment that
//! `cairn ring … rebalance` computes (`PROTOCOLS.md`, "Builder (`cairn ring …`)").
//!
//! # What the builder keeps
//!
//! A [`RingBuilder`] holds everything the *next* rebalance needs, and is saved as
//! `NAME.builder` (the [`crate::file`] envelope with [`BUILDER_MAGIC`], zstd
//! compressed): part power, replica count (fractional allowed), `min_part_hours`, overload,
//! the devices by id (holes for removed ids), the ids marked for removal, the list of removed
//! devices, the assignment table `replica2part2dev`, `last_part_moves` with its epoch, the
//! version counter, the last dispersion figure and the seed used by every rebalance. The
//! servers only load the much smaller [`RingData`] (`NAME.ring`, [`RingBuilder::to_ring_data`]).
//!
//! # Rebalance in one paragraph
//!
//! Devices form a tree of failure domains: region → zone → server (the IP address only, so
//! several ports of one host are one domain) → device. From the weights the builder derives,
//! for every node of that tree, how many replicas of an *average* partition it should hold
//! (its *target*, a real number: "replicanths"), blending the weight-proportional share with
//! the most dispersed share according to `overload`. Each node's *replica plan* is
//! `{min: floor(target), max: ceil(target)}` replicas of any one partition, and each
//! device's `parts_wanted` is its integer share of all part-replicas minus what it holds.
//! A rebalance then lifts part-replicas that must move (new replica rows, removed devices)
//! and those that break some node's `max` (dispersion), and places each by walking down the
//! tree: never into a node already at its `max` for that partition, into a node below its
//! `min` if there is one, else into a node with room (`parts_available`, chosen at random in
//! proportion to it). Then balance rounds move replicas from devices holding more than they
//! want to devices wanting more, only where the walk allows, and a last step takes back
//! the moves that turned out needless (detours through a device that did not need the
//! part). See [`rebalance`] for the details and why each step terminates and moves
//! little.
//!
//! # Placement rules
//!
//! Optionally a builder carries a [`PlacementRule`] `xyz` (`cairn ring B set-placement
//! 110`): explicit replica counts per failure domain relative to a first copy, defined in
//! [`placement`]. With a rule, `rebalance` first checks that the replica count is
//! `1 + x + y + z` and that the weighted devices can satisfy it (refusing otherwise,
//! before any change), then gives each partition an anchor (first region and zone) and
//! replaces the plan's per-partition `min`/`max` of regions, zones and servers with the
//! rule's; gathering lifts replicas that break it, placement and balance rounds never
//! break it. Because at most one replica of a partition moves per `min_part_hours`, a
//! ring that does not yet satisfy a newly set rule may need several rebalances;
//! `validate` lists the partitions that still break it.
//!
//! # Invariants
//!
//! - After a successful rebalance every partition has exactly its replica count of
//!   assignments, all to existing, weighted devices, and no device appears twice in one
//!   partition (a rebalance is refused when there are fewer weighted devices than replicas).
//! - **At most one replica of a partition moves per `min_part_hours` window**, except when
//!   its device was removed (the data is gone from there anyway) or replicas were added. Why:
//!   a moved replica is only *eventually* copied to its new home by the replicators; until
//!   then its old holder still serves it. Moving a second replica of the same partition
//!   before the first copy finished could leave a majority of the replicas on devices that
//!   do not have the data yet, and reads and quorum writes would fail. `min_part_hours`
//!   should exceed the time a full replication pass takes.
//! - The same builder, operations and seed give the same ring (the random choices come from
//!   a ChaCha generator seeded with the recorded seed; no hash map order is used).

pub mod placement;
mod plan;
pub mod rebalance;
mod report;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::devspec::InfoChange;
use crate::file::{self, FileError, BUILDER_MAGIC, RING_MAGIC};
use crate::types::{Device, RingData};

pub use placement::PlacementRule;
pub use rebalance::{RebalanceOptions, RebalanceReport};
pub use report::{DispersionReport, PartDispersion, TierDispersion, MAX_BALANCE, TIER_NAMES};

/// Marks an unassigned part-replica slot during a rebalance; never present in a saved ring.
pub const NONE_DEV: u16 = u16::MAX;
/// Largest part power the builder accepts (2^23 partitions; the tables stay < 100 MB).
pub const MAX_PART_POWER: u8 = 23;
/// Largest replica count the builder accepts.
pub const MAX_REPLICAS: f64 = 32.0;
/// Device ids must fit the ring's `u16` table and leave [`NONE_DEV`] free.
pub const MAX_DEVICES: usize = NONE_DEV as usize;

/// Why a builder operation was refused. `Display` is one line, fit for the CLI.
#[derive(Debug, thiserror::Error)]
pub enum BuilderError {
    #[error("part power {0} is out of range (0 to {MAX_PART_POWER})")]
    PartPower(i64),
    #[error("replica count {0} is out of range (1 to {MAX_REPLICAS})")]
    Replicas(f64),
    #[error("overload {0} is invalid: it must be a finite number ≥ 0")]
    Overload(f64),
    #[error("weight {0} is invalid: it must be a finite number ≥ 0")]
    Weight(f64),
    #[error("device {0} already exists (id {1})")]
    DuplicateDevice(String, u32),
    #[error("no device with id {0}")]
    NoSuchDevice(u32),
    #[error("device id {0} is already marked for removal")]
    AlreadyRemoving(u32),
    #[error("too many devices (at most {MAX_DEVICES})")]
    TooManyDevices,
    #[error("invalid device: {0}")]
    InvalidDevice(String),
    #[error(
        "not enough devices: {weighted} device(s) with weight > 0 for {replicas} replicas; \
         add devices or lower the replica count"
    )]
    NotEnoughDevices { weighted: usize, replicas: f64 },
    #[error("the builder has never been rebalanced: run `rebalance` first")]
    NeverRebalanced,
    #[error("{0}")]
    Placement(String),
    #[error("invalid ring: {0}")]
    Invalid(String),
    #[error("inconsistent builder: {0}")]
    Corrupt(String),
    #[error("{0}")]
    File(#[from] FileError),
}

/// Which seed produced which builder version (so a ring can be reproduced).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeedRecord {
    pub version: u64,
    pub seed: u64,
}

/// Everything needed to continue building a ring. See the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RingBuilder {
    part_power: u8,
    replicas: f64,
    min_part_hours: u8,
    overload: f64,
    /// Indexed by device id; `None` is the hole left by a removed device.
    devs: Vec<Option<Device>>,
    /// Ids marked for removal: weight 0, drained and dropped at the next rebalance.
    pending_removal: Vec<u32>,
    /// Devices dropped by past rebalances, oldest first.
    removed_devs: Vec<Device>,
    /// `replica2part2dev[r][p]`; empty until the first rebalance.
    replica2part2dev: Vec<Vec<u16>>,
    /// Hours since each partition last moved, saturating at 255.
    last_part_moves: Vec<u8>,
    /// Unix time (seconds) up to which `last_part_moves` has been aged.
    last_part_moves_epoch: u64,
    version: u64,
    /// Dispersion (percent) after the last rebalance.
    dispersion: f64,
    seeds: Vec<SeedRecord>,
    /// Devices were changed since the last rebalance (the ring file is stale).
    devs_changed: bool,
    /// Explicit replica counts per failure domain ([`placement`]); `None`: spread as
    /// widely as the plan allows. Last field on purpose: files written before it existed
    /// decode as [`LegacyRingBuilderV1`] (see [`RingBuilder::load`]).
    #[serde(default)]
    placement: Option<PlacementRule>,
}

/// The builder body as written before placement rules existed (the same fields, in the
/// same order, without `placement`). postcard is not self-describing: a struct is its
/// fields back to back, so an old body simply ends where `placement` would start and
/// decoding it as [`RingBuilder`] fails with an unexpected end. [`RingBuilder::load`] then
/// decodes it as this and converts it with `placement: None`. A new body decoded as this
/// would succeed (postcard ignores trailing bytes), which is why the new layout is tried
/// first; an old body can never decode as the new layout (it is one `Option` tag short).
/// The envelope's format version stays 1 (a bump would make every existing file
/// unreadable: the envelope accepts exactly one version). Caveat: a binary that predates
/// placement rules ignores the trailing bytes, so it reads a new file but silently loses
/// the rule if it saves it; do not edit rule-bearing builders with old binaries.
#[derive(Deserialize)]
struct LegacyRingBuilderV1 {
    part_power: u8,
    replicas: f64,
    min_part_hours: u8,
    overload: f64,
    devs: Vec<Option<Device>>,
    pending_removal: Vec<u32>,
    removed_devs: Vec<Device>,
    replica2part2dev: Vec<Vec<u16>>,
    last_part_moves: Vec<u8>,
    last_part_moves_epoch: u64,
    version: u64,
    dispersion: f64,
    seeds: Vec<SeedRecord>,
    devs_changed: bool,
}

impl From<LegacyRingBuilderV1> for RingBuilder {
    fn from(b: LegacyRingBuilderV1) -> Self {
        RingBuilder {
            part_power: b.part_power,
            replicas: b.replicas,
            min_part_hours: b.min_part_hours,
            overload: b.overload,
            devs: b.devs,
            pending_removal: b.pending_removal,
            removed_devs: b.removed_devs,
            replica2part2dev: b.replica2part2dev,
            last_part_moves: b.last_part_moves,
            last_part_moves_epoch: b.last_part_moves_epoch,
            version: b.version,
            dispersion: b.dispersion,
            seeds: b.seeds,
            devs_changed: b.devs_changed,
            placement: None,
        }
    }
}

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn check_part_power(part_power: i64) -> Result<u8, BuilderError> {
    u8::try_from(part_power)
        .ok()
        .filter(|p| *p <= MAX_PART_POWER)
        .ok_or(BuilderError::PartPower(part_power))
}

fn check_replicas(replicas: f64) -> Result<f64, BuilderError> {
    if replicas.is_finite() && (1.0..=MAX_REPLICAS).contains(&replicas) {
        Ok(replicas)
    } else {
        Err(BuilderError::Replicas(replicas))
    }
}

fn check_weight(weight: f64) -> Result<f64, BuilderError> {
    if weight.is_finite() && weight >= 0.0 {
        Ok(weight)
    } else {
        Err(BuilderError::Weight(weight))
    }
}

/// The length of every replica row for `replicas` over `parts` partitions: whole rows, then
/// a shorter row for the fraction (dropped when it would be empty).
pub(crate) fn row_lengths(replicas: f64, parts: usize) -> Vec<usize> {
    let whole = replicas.floor() as usize;
    let mut rows = vec![parts; whole];
    let last = ((replicas - replicas.floor()) * parts as f64).floor() as usize;
    if last > 0 {
        rows.push(last.min(parts));
    }
    rows
}

fn dev_key(dev: &Device) -> String {
    format!("{}:{}/{}", dev.ip, dev.port, dev.device)
}

impl RingBuilder {
    /// A new, empty builder. `part_power` 0..=23, `replicas` 1..=32 (fractions allowed).
    pub fn new(part_power: i64, replicas: f64, min_part_hours: u8) -> Result<Self, BuilderError> {
        Ok(RingBuilder {
            part_power: check_part_power(part_power)?,
            replicas: check_replicas(replicas)?,
            min_part_hours,
            overload: 0.0,
            devs: Vec::new(),
            pending_removal: Vec::new(),
            removed_devs: Vec::new(),
            replica2part2dev: Vec::new(),
            last_part_moves: Vec::new(),
            last_part_moves_epoch: 0,
            version: 0,
            dispersion: 0.0,
            seeds: Vec::new(),
            devs_changed: false,
            placement: None,
        })
    }

    // ----- accessors -------------------------------------------------------------------

    pub fn part_power(&self) -> u8 {
        self.part_power
    }
    /// Number of partitions, `2^part_power`.
    pub fn parts(&self) -> usize {
        1usize << self.part_power
    }
    pub fn replicas(&self) -> f64 {
        self.replicas
    }
    pub fn min_part_hours(&self) -> u8 {
        self.min_part_hours
    }
    pub fn overload(&self) -> f64 {
        self.overload
    }
    pub fn version(&self) -> u64 {
        self.version
    }
    /// Dispersion (percent) recorded by the last rebalance.
    pub fn dispersion(&self) -> f64 {
        self.dispersion
    }
    pub fn seeds(&self) -> &[SeedRecord] {
        &self.seeds
    }
    /// Devices by id, holes included.
    pub fn devs(&self) -> &[Option<Device>] {
        &self.devs
    }
    /// Existing devices (including those marked for removal), by id.
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devs.iter().flatten()
    }
    pub fn device(&self, id: u32) -> Option<&Device> {
        self.devs.get(id as usize).and_then(Option::as_ref)
    }
    /// Ids marked for removal at the next rebalance.
    pub fn pending_removal(&self) -> &[u32] {
        &self.pending_removal
    }
    pub fn is_pending_removal(&self, id: u32) -> bool {
        self.pending_removal.contains(&id)
    }
    pub fn removed_devs(&self) -> &[Device] {
        &self.removed_devs
    }
    pub fn replica2part2dev(&self) -> &[Vec<u16>] {
        &self.replica2part2dev
    }
    pub fn last_part_moves(&self) -> &[u8] {
        &self.last_part_moves
    }
    /// The placement rule, if any ([`placement`]).
    pub fn placement(&self) -> Option<PlacementRule> {
        self.placement
    }
    /// Devices changed since the last rebalance (the ring file would differ).
    pub fn devs_changed(&self) -> bool {
        self.devs_changed
    }
    /// Number of devices with weight > 0 (the ones a rebalance may use).
    pub fn weighted_devices(&self) -> usize {
        self.devices().filter(|d| d.weight > 0.0).count()
    }

    // ----- device operations -----------------------------------------------------------

    /// Add a device; its id is the lowest free one (holes of removed devices are reused).
    /// `dev.id` is ignored. Refuses a second device with the same `ip:port/device`.
    pub fn add_device(&mut self, mut dev: Device) -> Result<u32, BuilderError> {
        check_weight(dev.weight)?;
        if dev.ip.is_empty() || dev.device.is_empty() {
            return Err(BuilderError::InvalidDevice(
                "ip and device name must not be empty".into(),
            ));
        }
        if let Some(other) = self.find_duplicate(&dev, None) {
            return Err(BuilderError::DuplicateDevice(dev_key(&dev), other));
        }
        let id = match self.devs.iter().position(Option::is_none) {
            Some(hole) => hole,
            None if self.devs.len() < MAX_DEVICES => self.devs.len(),
            None => return Err(BuilderError::TooManyDevices),
        };
        dev.id = id as u32;
        if id == self.devs.len() {
            self.devs.push(Some(dev));
        } else {
            self.devs[id] = Some(dev);
        }
        self.devs_changed = true;
        Ok(id as u32)
    }

    /// Id of another existing device with the same `ip:port/device` as `dev`.
    fn find_duplicate(&self, dev: &Device, except: Option<u32>) -> Option<u32> {
        self.devices()
            .find(|d| {
                Some(d.id) != except
                    && d.ip == dev.ip
                    && d.port == dev.port
                    && d.device == dev.device
            })
            .map(|d| d.id)
    }

    fn device_mut(&mut self, id: u32) -> Result<&mut Device, BuilderError> {
        self.devs
            .get_mut(id as usize)
            .and_then(Option::as_mut)
            .ok_or(BuilderError::NoSuchDevice(id))
    }

    /// Mark a device for removal: its weight becomes 0 and the next rebalance moves all its
    /// part-replicas away (ignoring `min_part_hours`) and then drops it.
    pub fn remove_device(&mut self, id: u32) -> Result<(), BuilderError> {
        if self.is_pending_removal(id) {
            return Err(BuilderError::AlreadyRemoving(id));
        }
        self.device_mut(id)?.weight = 0.0;
        self.pending_removal.push(id);
        self.devs_changed = true;
        Ok(())
    }

    /// Change a device's weight (≥ 0; 0 drains it gradually, respecting `min_part_hours`).
    pub fn set_weight(&mut self, id: u32, weight: f64) -> Result<(), BuilderError> {
        let weight = check_weight(weight)?;
        if self.is_pending_removal(id) {
            return Err(BuilderError::AlreadyRemoving(id));
        }
        self.device_mut(id)?.weight = weight;
        self.devs_changed = true;
        Ok(())
    }

    /// Change a device's addresses, name or meta. Refuses a change that would make it a
    /// duplicate of another device. Placement does not change (the next ring file does).
    pub fn set_info(&mut self, id: u32, change: &InfoChange) -> Result<(), BuilderError> {
        let mut updated = self.device_mut(id)?.clone();
        change.apply(&mut updated);
        if updated.ip.is_empty() || updated.device.is_empty() {
            return Err(BuilderError::InvalidDevice(
                "ip and device name must not be empty".into(),
            ));
        }
        if let Some(other) = self.find_duplicate(&updated, Some(id)) {
            return Err(BuilderError::DuplicateDevice(dev_key(&updated), other));
        }
        *self.device_mut(id)? = updated;
        self.devs_changed = true;
        Ok(())
    }

    /// Set the overload factor (0.1 = a device may take 10 % more than its weight share to
    /// improve dispersion).
    pub fn set_overload(&mut self, overload: f64) -> Result<(), BuilderError> {
        if !overload.is_finite() || overload < 0.0 {
            return Err(BuilderError::Overload(overload));
        }
        self.overload = overload;
        self.devs_changed = true;
        Ok(())
    }

    pub fn set_min_part_hours(&mut self, hours: u8) {
        self.min_part_hours = hours;
    }

    /// Change the replica count; the next rebalance adds or drops replica rows.
    pub fn set_replicas(&mut self, replicas: f64) -> Result<(), BuilderError> {
        self.replicas = check_replicas(replicas)?;
        self.devs_changed = true;
        Ok(())
    }

    /// Set or clear the placement rule; the next rebalance enforces it. The replica count
    /// is not checked here (change both, in either order, then rebalance, which refuses a
    /// mismatch): see [`RingBuilder::placement_problem`].
    pub fn set_placement(&mut self, rule: Option<PlacementRule>) {
        self.placement = rule;
        self.devs_changed = true;
    }

    /// Why the current replica count and devices cannot satisfy the placement rule
    /// (`None` when there is no rule or they can). Devices marked for removal do not count.
    pub fn placement_problem(&self) -> Option<String> {
        let rule = self.placement?;
        if !rule.fits_replicas(self.replicas) {
            return Some(format!(
                "placement rule {rule} needs exactly {} replicas, the builder has {}; \
                 change the replica count or the rule",
                rule.replicas(),
                self.replicas
            ));
        }
        rule.check_topology(
            self.devices()
                .filter(|d| !self.is_pending_removal(d.id) && d.weight > 0.0),
        )
        .err()
    }

    /// Partitions whose replicas break the placement rule, with the reason (empty without
    /// a rule or before the first rebalance).
    pub fn placement_violations(&self) -> Vec<(usize, String)> {
        let Some(rule) = self.placement else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for p in 0..self.parts() {
            if self.replicas_of(p) == 0 {
                continue;
            }
            let locs: Vec<(u32, u32, &str)> = self
                .part_devs(p)
                .filter_map(|d| self.device(u32::from(d)))
                .map(|d| (d.region, d.zone, d.ip.as_str()))
                .collect();
            if let Err(why) = rule.check_part(locs) {
                out.push((p, why));
            }
        }
        out
    }

    /// Pretend every partition last moved long ago, so the next rebalance may move any.
    pub fn pretend_min_part_hours_passed(&mut self) {
        self.last_part_moves.iter_mut().for_each(|h| *h = u8::MAX);
    }

    // ----- files -----------------------------------------------------------------------

    /// What servers load.
    pub fn to_ring_data(&self) -> RingData {
        RingData {
            part_power: self.part_power,
            replica2part2dev: self.replica2part2dev.clone(),
            devs: self.devs.clone(),
            version: self.version,
        }
    }

    /// `NAME.ring` beside `NAME.builder`.
    pub fn ring_path_for(builder_path: &Path) -> PathBuf {
        builder_path.with_extension("ring")
    }

    /// Save the builder (compressed, crash-safe).
    pub fn save(&self, path: &Path) -> Result<(), BuilderError> {
        file::write_file(BUILDER_MAGIC, path, self, true)?;
        Ok(())
    }

    /// Load a builder and check that its contents are consistent (a decodable but
    /// inconsistent file is rejected rather than trusted).
    pub fn load(path: &Path) -> Result<Self, BuilderError> {
        let builder: RingBuilder = match file::read_file(BUILDER_MAGIC, path) {
            Ok(b) => b,
            // A body from before placement rules: see `LegacyRingBuilderV1`.
            Err(FileError::Decode(..)) => {
                match file::read_file::<LegacyRingBuilderV1>(BUILDER_MAGIC, path) {
                    Ok(old) => old.into(),
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        builder.check_consistency()?;
        Ok(builder)
    }

    /// Write the ring file (requires a rebalanced builder).
    pub fn write_ring(&self, path: &Path) -> Result<(), BuilderError> {
        if self.replica2part2dev.is_empty() {
            return Err(BuilderError::NeverRebalanced);
        }
        file::write_file(RING_MAGIC, path, &self.to_ring_data(), true)?;
        Ok(())
    }

    /// Structural checks that make every index used by the builder safe.
    pub fn check_consistency(&self) -> Result<(), BuilderError> {
        let corrupt = |m: String| Err(BuilderError::Corrupt(m));
        check_part_power(i64::from(self.part_power))?;
        check_replicas(self.replicas)?;
        if !self.overload.is_finite() || self.overload < 0.0 {
            return Err(BuilderError::Overload(self.overload));
        }
        if self.devs.len() > MAX_DEVICES {
            return Err(BuilderError::TooManyDevices);
        }
        for (i, dev) in self.devs.iter().enumerate() {
            if let Some(dev) = dev {
                if dev.id as usize != i {
                    return corrupt(format!("device in slot {i} has id {}", dev.id));
                }
                check_weight(dev.weight)?;
            }
        }
        for &id in &self.pending_removal {
            if self.device(id).is_none() {
                return corrupt(format!("device {id} marked for removal does not exist"));
            }
        }
        let parts = self.parts();
        if self.replica2part2dev.is_empty() {
            return Ok(());
        }
        if self.last_part_moves.len() != parts {
            return corrupt(format!(
                "last_part_moves has {} entries for {parts} partitions",
                self.last_part_moves.len()
            ));
        }
        for (r, row) in self.replica2part2dev.iter().enumerate() {
            if row.len() > parts || (r + 1 < self.replica2part2dev.len() && row.len() != parts) {
                return corrupt(format!("replica row {r} has {} entries", row.len()));
            }
            if let Some(&bad) = row
                .iter()
                .find(|&&d| d != NONE_DEV && self.device(u32::from(d)).is_none())
            {
                return corrupt(format!("replica row {r} refers to missing device {bad}"));
            }
        }
        Ok(())
    }

    /// Number of replicas partition `part` has (rows covering it).
    pub fn replicas_of(&self, part: usize) -> usize {
        self.replica2part2dev
            .iter()
            .filter(|row| part < row.len())
            .count()
    }

    /// The device ids of partition `part`, in row order.
    pub fn part_devs(&self, part: usize) -> impl Iterator<Item = u16> + '_ {
        self.replica2part2dev
            .iter()
            .filter_map(move |row| row.get(part).copied())
    }
}

#[cfg(test)]
mod tests;
