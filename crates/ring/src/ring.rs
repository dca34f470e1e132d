//! The loaded ring: what proxy, storage servers and daemons consult to find where a name
//! lives (`PROTOCOLS.md`, "Hash paths and rings" → "Lookups").
//!
//! - [`Ring`] wraps a validated [`RingData`] with everything lookups need precomputed:
//!   the partition shift, the replica count, each device's failure-domain tiers interned to
//!   small integers, and the number of regions/zones/servers/devices that actually hold
//!   partitions. Validation happens once at load so that a bad ring file is an error, not a
//!   panic in the middle of a request.
//! - [`Ring::get_part_nodes`] yields the primaries of a partition without allocating;
//!   [`Ring::get_more_nodes`] is a lazy iterator over handoffs that reproduces Swift's
//!   `Ring.get_more_nodes` *exactly* (every node of a cluster, Swift's or Cairn's, must agree
//!   on where handoffs go, and callers usually take only the first one or two).
//! - [`RingWatcher`] holds the current `Arc<Ring>` and swaps in a new one when the file on
//!   disk changes (checked at most every `ring_check_interval`); a corrupt or unreadable new
//!   file leaves the old ring in service and reports the error.
//!
//! A ring also remembers the MD5 of the whole file (`/recon/ringmd5`) and its mtime.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, Metadata};
use std::io::Read;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use md5::{Digest, Md5};

use crate::file::{self, FileError, RING_MAGIC};
use crate::hash::{partition_of, to_hex, HashPathSecret};
use crate::types::{Device, RingData};

/// How often servers look at the ring file's mtime by default (`ring_check_interval`).
pub const DEFAULT_RING_CHECK_INTERVAL: Duration = Duration::from_secs(15);

/// Why a ring could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// Unreadable file, bad magic/version, checksum mismatch, undecodable body.
    #[error(transparent)]
    File(#[from] FileError),
    #[error("ring has no devices")]
    NoDevices,
    #[error("ring has no replica rows")]
    NoReplicas,
    #[error("ring part_power {0} is out of range (0..=32)")]
    PartPower(u8),
    #[error("ring replica row {row} covers {len} partitions; expected {expected}")]
    RowLength {
        row: usize,
        len: usize,
        expected: usize,
    },
    #[error("ring assigns replica {replica} of partition {part} to device {dev_id}, which is not in the ring")]
    UnknownDevice {
        replica: usize,
        part: usize,
        dev_id: u16,
    },
    #[error("ring device at index {index} claims id {id}")]
    DeviceIdMismatch { index: usize, id: u32 },
}

/// A primary node of a partition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeRef<'a> {
    pub dev: &'a Device,
    /// Position among the partition's primaries (0, 1, 2, …).
    pub index: usize,
}

impl Deref for NodeRef<'_> {
    type Target = Device;
    fn deref(&self) -> &Device {
        self.dev
    }
}

/// A handoff node of a partition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Handoff<'a> {
    pub dev: &'a Device,
    /// Position among the partition's handoffs (0, 1, 2, … across all passes).
    pub handoff_index: usize,
}

impl Deref for Handoff<'_> {
    type Target = Device;
    fn deref(&self) -> &Device {
        self.dev
    }
}

/// Identity of the file a ring was loaded from, to notice replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    mtime: Option<SystemTime>,
    size: u64,
    /// (st_dev, st_ino) on Unix: rings are replaced by rename, which changes the inode even
    /// when mtime granularity and size would not tell.
    inode: (u64, u64),
}

impl FileStamp {
    fn of(meta: &Metadata) -> FileStamp {
        #[cfg(unix)]
        let inode = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let inode = (0, 0);
        FileStamp {
            mtime: meta.modified().ok(),
            size: meta.len(),
            inode,
        }
    }
}

/// A device's failure-domain tiers, interned: indices into the ring's tier tables.
#[derive(Debug, Clone, Copy)]
struct DevTiers {
    region: u32,
    zone: u32,
    ip: u32,
}

/// A validated ring ready for lookups.
#[derive(Debug, Clone)]
pub struct Ring {
    data: RingData,
    part_shift: u32,
    parts: usize,
    replica_count: f64,
    /// Indexed by device id.
    dev_tiers: Vec<Option<DevTiers>>,
    /// Part-replicas held by each device id.
    dev_parts: Vec<u32>,
    regions: Vec<u32>,
    zones: Vec<(u32, u32)>,
    ips: Vec<(u32, u32, String)>,
    num_devs: usize,
    num_weighted_devs: usize,
    num_assigned_devs: usize,
    num_assigned_regions: usize,
    num_assigned_zones: usize,
    num_assigned_ips: usize,
    md5_hex: Option<String>,
    stamp: Option<FileStamp>,
}

impl Ring {
    /// Load and validate a ring file (`NAME.ring`).
    pub fn load(path: &Path) -> Result<Ring, RingError> {
        let name = path.display().to_string();
        let io = |source| {
            RingError::File(FileError::Io {
                path: name.clone(),
                source,
            })
        };
        // Stat the handle we read from, so that the stamp describes exactly these bytes.
        let mut f = File::open(path).map_err(io)?;
        let meta = f.metadata().map_err(io)?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(io)?;
        let data: RingData = file::decode(RING_MAGIC, &bytes, &name)?;
        let mut ring = Ring::from_data(data)?;
        ring.md5_hex = Some(to_hex(&Md5::digest(&bytes)));
        ring.stamp = Some(FileStamp::of(&meta));
        Ok(ring)
    }

    /// Validate ring data and precompute lookup tables.
    pub fn from_data(data: RingData) -> Result<Ring, RingError> {
        if data.part_power > 32 {
            return Err(RingError::PartPower(data.part_power));
        }
        let Some(first) = data.replica2part2dev.first() else {
            return Err(RingError::NoReplicas);
        };
        let parts = 1usize
            .checked_shl(u32::from(data.part_power))
            .unwrap_or(usize::MAX);
        if first.len() != parts {
            return Err(RingError::RowLength {
                row: 0,
                len: first.len(),
                expected: parts,
            });
        }
        for (row, r2p) in data.replica2part2dev.iter().enumerate().skip(1) {
            if r2p.len() > parts {
                return Err(RingError::RowLength {
                    row,
                    len: r2p.len(),
                    expected: parts,
                });
            }
        }
        for (index, dev) in data.devs.iter().enumerate() {
            if let Some(dev) = dev {
                if usize::try_from(dev.id).ok() != Some(index) {
                    return Err(RingError::DeviceIdMismatch { index, id: dev.id });
                }
            }
        }
        if data.devs.iter().all(Option::is_none) {
            return Err(RingError::NoDevices);
        }

        let mut dev_parts = vec![0u32; data.devs.len()];
        for (replica, r2p) in data.replica2part2dev.iter().enumerate() {
            for (part, &dev_id) in r2p.iter().enumerate() {
                let id = usize::from(dev_id);
                match data.devs.get(id) {
                    Some(Some(_)) => dev_parts[id] = dev_parts[id].saturating_add(1),
                    _ => {
                        return Err(RingError::UnknownDevice {
                            replica,
                            part,
                            dev_id,
                        })
                    }
                }
            }
        }

        // Intern tiers in sorted order so the tables double as sorted tier lists.
        let live = || data.devs.iter().flatten();
        let regions: Vec<u32> = live()
            .map(|d| d.region)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let zones: Vec<(u32, u32)> = live()
            .map(|d| (d.region, d.zone))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let ips: Vec<(u32, u32, String)> = live()
            .map(|d| (d.region, d.zone, d.ip.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let region_idx: HashMap<u32, u32> = index_of(&regions);
        let zone_idx: HashMap<(u32, u32), u32> = index_of(&zones);
        let ip_idx: HashMap<(&u32, &u32, &str), u32> = ips
            .iter()
            .enumerate()
            .map(|(i, (r, z, ip))| ((r, z, ip.as_str()), i as u32))
            .collect();

        let mut dev_tiers = vec![None; data.devs.len()];
        let mut assigned_regions = BTreeSet::new();
        let mut assigned_zones = BTreeSet::new();
        let mut assigned_ips = BTreeSet::new();
        let (mut num_devs, mut num_weighted_devs, mut num_assigned_devs) = (0, 0, 0);
        for dev in live() {
            let id = dev.id as usize;
            let tiers = DevTiers {
                region: region_idx.get(&dev.region).copied().unwrap_or(0),
                zone: zone_idx.get(&(dev.region, dev.zone)).copied().unwrap_or(0),
                ip: ip_idx
                    .get(&(&dev.region, &dev.zone, dev.ip.as_str()))
                    .copied()
                    .unwrap_or(0),
            };
            dev_tiers[id] = Some(tiers);
            num_devs += 1;
            if dev.weight > 0.0 {
                num_weighted_devs += 1;
            }
            if dev_parts[id] > 0 {
                num_assigned_devs += 1;
                assigned_regions.insert(tiers.region);
                assigned_zones.insert(tiers.zone);
                assigned_ips.insert(tiers.ip);
            }
        }

        let rows = data.replica2part2dev.len();
        let last_len = data.replica2part2dev.last().map_or(0, Vec::len);
        let replica_count = (rows - 1) as f64 + last_len as f64 / parts as f64;

        Ok(Ring {
            part_shift: 32 - u32::from(data.part_power),
            parts,
            replica_count,
            dev_tiers,
            dev_parts,
            regions,
            zones,
            ips,
            num_devs,
            num_weighted_devs,
            num_assigned_devs,
            num_assigned_regions: assigned_regions.len(),
            num_assigned_zones: assigned_zones.len(),
            num_assigned_ips: assigned_ips.len(),
            md5_hex: None,
            stamp: None,
            data,
        })
    }

    /// The partition of `/account[/container[/object]]`.
    pub fn get_part(
        &self,
        secret: &HashPathSecret,
        account: &str,
        container: Option<&str>,
        object: Option<&str>,
    ) -> u32 {
        partition_of(
            &secret.digest(account, container, object),
            self.data.part_power,
        )
    }

    /// The partition and primaries of a name.
    pub fn get_nodes(
        &self,
        secret: &HashPathSecret,
        account: &str,
        container: Option<&str>,
        object: Option<&str>,
    ) -> (u32, Vec<NodeRef<'_>>) {
        let part = self.get_part(secret, account, container, object);
        (part, self.get_part_nodes_vec(part))
    }

    /// The primaries of `part`, in replica-row order, each device at most once. Rows that
    /// do not cover `part` (the short last row of a fractional replica count) are skipped.
    /// Does not allocate.
    pub fn get_part_nodes(&self, part: u32) -> PartNodes<'_> {
        PartNodes {
            ring: self,
            part: part as usize,
            row: 0,
            index: 0,
        }
    }

    /// [`Ring::get_part_nodes`] collected.
    pub fn get_part_nodes_vec(&self, part: u32) -> Vec<NodeRef<'_>> {
        self.get_part_nodes(part).collect()
    }

    /// Handoffs for `part`, lazily, in Swift's exact deterministic order: first devices in
    /// regions holding no primary, then in new zones, then on new servers (ip), then any
    /// remaining device holding partitions. Never yields a primary or the same device twice.
    ///
    /// Faithful to Swift down to its quirks: only every `inc`-th partition is scanned, and
    /// with `inc == 1` and `start > 0` the wrap-around range begins at 1, so partition 0's
    /// devices are not scanned. On real rings every device holds many partitions and all are
    /// reached; on toy rings a device may be missing from the handoffs.
    pub fn get_more_nodes(&self, part: u32) -> MoreNodes<'_> {
        MoreNodes::new(self, part)
    }

    /// `replica2part2dev` rows as a fractional count (3.25 = three full rows and a quarter).
    pub fn replica_count(&self) -> f64 {
        self.replica_count
    }

    /// Number of replica rows (the ceiling of [`Ring::replica_count`]).
    pub fn replica_rows(&self) -> usize {
        self.data.replica2part2dev.len()
    }

    /// `2^part_power`.
    pub fn partition_count(&self) -> usize {
        self.parts
    }

    pub fn part_power(&self) -> u8 {
        self.data.part_power
    }

    /// `32 − part_power`: a digest's first four bytes shifted right by this give the partition.
    pub fn part_shift(&self) -> u32 {
        self.part_shift
    }

    /// The builder's version counter when the ring was written.
    pub fn version(&self) -> u64 {
        self.data.version
    }

    /// Devices indexed by id; `None` for removed ids.
    pub fn devs(&self) -> &[Option<Device>] {
        &self.data.devs
    }

    /// The device with this id, if any.
    pub fn dev(&self, id: u32) -> Option<&Device> {
        self.data.devs.get(id as usize)?.as_ref()
    }

    /// All present devices in id order.
    pub fn iter_devs(&self) -> impl Iterator<Item = &Device> + '_ {
        self.data.devs.iter().flatten()
    }

    /// Part-replicas assigned to device `id` (0 for unknown ids).
    pub fn dev_part_count(&self, id: u32) -> u32 {
        self.dev_parts.get(id as usize).copied().unwrap_or(0)
    }

    pub fn replica2part2dev(&self) -> &[Vec<u16>] {
        &self.data.replica2part2dev
    }

    pub fn data(&self) -> &RingData {
        &self.data
    }

    /// Devices present (not removed).
    pub fn device_count(&self) -> usize {
        self.num_devs
    }

    /// Devices with weight > 0.
    pub fn weighted_device_count(&self) -> usize {
        self.num_weighted_devs
    }

    /// Devices holding at least one partition.
    pub fn assigned_device_count(&self) -> usize {
        self.num_assigned_devs
    }

    /// Regions / zones / servers with at least one device holding partitions.
    pub fn assigned_tier_counts(&self) -> (usize, usize, usize) {
        (
            self.num_assigned_regions,
            self.num_assigned_zones,
            self.num_assigned_ips,
        )
    }

    /// Sorted distinct regions of all devices.
    pub fn regions(&self) -> &[u32] {
        &self.regions
    }

    /// Sorted distinct (region, zone) of all devices.
    pub fn zones(&self) -> &[(u32, u32)] {
        &self.zones
    }

    /// Sorted distinct (region, zone, ip) servers of all devices.
    pub fn ips(&self) -> &[(u32, u32, String)] {
        &self.ips
    }

    /// Lowercase hex MD5 of the whole ring file (`/recon/ringmd5`); `None` if not loaded
    /// from a file.
    pub fn md5_hex(&self) -> Option<&str> {
        self.md5_hex.as_deref()
    }

    /// The ring file's mtime when loaded.
    pub fn mtime(&self) -> Option<SystemTime> {
        self.stamp.and_then(|s| s.mtime)
    }

    fn dev_by_id(&self, id: u16) -> Option<(&Device, DevTiers)> {
        let i = usize::from(id);
        let dev = self.data.devs.get(i)?.as_ref()?;
        let tiers = (*self.dev_tiers.get(i)?)?;
        Some((dev, tiers))
    }
}

/// `part` in decimal ASCII (Swift hashes `str(part)`), without allocating.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

fn index_of<T: Clone + Eq + std::hash::Hash>(sorted: &[T]) -> HashMap<T, u32> {
    sorted
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect()
}

/// Iterator over a partition's primaries ([`Ring::get_part_nodes`]).
#[derive(Debug, Clone)]
pub struct PartNodes<'a> {
    ring: &'a Ring,
    part: usize,
    row: usize,
    index: usize,
}

impl<'a> Iterator for PartNodes<'a> {
    type Item = NodeRef<'a>;

    fn next(&mut self) -> Option<NodeRef<'a>> {
        let rows = &self.ring.data.replica2part2dev;
        while self.row < rows.len() {
            let row = self.row;
            self.row += 1;
            let Some(&id) = rows[row].get(self.part) else {
                continue;
            };
            // A device holding two replicas of one partition is listed once. Replica counts
            // are small, so looking back beats keeping a set.
            if rows[..row].iter().any(|r| r.get(self.part) == Some(&id)) {
                continue;
            }
            let Some(Some(dev)) = self.ring.data.devs.get(usize::from(id)) else {
                continue; // unreachable: validated at load
            };
            let index = self.index;
            self.index += 1;
            return Some(NodeRef { dev, index });
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.ring.data.replica2part2dev.len() - self.row))
    }
}

impl std::iter::FusedIterator for PartNodes<'_> {}

/// The walk over "handoff partitions": `start, start+inc, …` below `parts`, then
/// `inc − ((parts − start) mod inc), …` below `start`; within each, every replica row.
#[derive(Debug, Clone, Copy)]
struct Scan {
    part: usize,
    row: usize,
    wrapped: bool,
    done: bool,
}

impl Scan {
    fn new(start: usize, inc: usize, parts: usize) -> Scan {
        let mut scan = Scan {
            part: start,
            row: 0,
            wrapped: false,
            done: false,
        };
        scan.settle(start, inc, parts);
        scan
    }

    fn settle(&mut self, start: usize, inc: usize, parts: usize) {
        if !self.wrapped && self.part >= parts {
            self.wrapped = true;
            self.part = inc - (parts.saturating_sub(start) % inc);
        }
        if self.wrapped && self.part >= start {
            self.done = true;
        }
    }

    fn advance(&mut self, rows: usize, start: usize, inc: usize, parts: usize) {
        self.row += 1;
        if self.row >= rows {
            self.row = 0;
            self.part += inc;
            self.settle(start, inc, parts);
        }
    }
}

/// Lazy iterator over a partition's handoffs ([`Ring::get_more_nodes`]).
///
/// State is four bitsets (devices used; regions, zones and servers already holding a
/// replica) in a single allocation, plus a cursor into the scan.
#[derive(Debug, Clone)]
pub struct MoreNodes<'a> {
    ring: &'a Ring,
    start: usize,
    inc: usize,
    /// 0 new regions, 1 new zones, 2 new servers, 3 any device, 4 finished.
    pass: u8,
    scan: Option<Scan>,
    bits: Vec<u64>,
    zone_base: usize,
    ip_base: usize,
    region_base: usize,
    used: usize,
    used_regions: usize,
    used_zones: usize,
    used_ips: usize,
    next_index: usize,
}

impl<'a> MoreNodes<'a> {
    fn new(ring: &'a Ring, part: u32) -> MoreNodes<'a> {
        let words = |n: usize| n.div_ceil(64);
        let zone_base = words(ring.data.devs.len());
        let ip_base = zone_base + words(ring.zones.len());
        let region_base = ip_base + words(ring.ips.len());
        let total = region_base + words(ring.regions.len());
        let mut it = MoreNodes {
            ring,
            start: 0,
            inc: 1,
            pass: 0,
            scan: None,
            bits: vec![0; total],
            zone_base,
            ip_base,
            region_base,
            used: 0,
            used_regions: 0,
            used_zones: 0,
            used_ips: 0,
            next_index: 0,
        };
        for node in ring.get_part_nodes(part) {
            let id = node.dev.id as usize;
            if let Some(Some(tiers)) = ring.dev_tiers.get(id) {
                it.mark(id, *tiers, true);
            }
        }
        let mut buf = [0u8; 10];
        let digest = Md5::digest(decimal(part, &mut buf));
        let top = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        it.start = top.checked_shr(ring.part_shift).unwrap_or(0) as usize;
        it.inc = (ring.parts / 65536).max(1);
        it
    }

    fn test(&self, base: usize, i: usize) -> bool {
        self.bits[base + i / 64] & (1u64 << (i % 64)) != 0
    }

    /// Set a bit; true if it was clear.
    fn set(&mut self, base: usize, i: usize) -> bool {
        let word = &mut self.bits[base + i / 64];
        let mask = 1u64 << (i % 64);
        let fresh = *word & mask == 0;
        *word |= mask;
        fresh
    }

    /// Record a taken device. Like Swift, the zone pass does not record regions and the
    /// server pass records only servers; the any-device pass records only the device.
    fn mark(&mut self, id: usize, t: DevTiers, region: bool) {
        if self.set(0, id) {
            self.used += 1;
        }
        if self.pass >= 3 {
            return;
        }
        if self.set(self.ip_base, t.ip as usize) {
            self.used_ips += 1;
        }
        if self.pass >= 2 {
            return;
        }
        if self.set(self.zone_base, t.zone as usize) {
            self.used_zones += 1;
        }
        if region && self.set(self.region_base, t.region as usize) {
            self.used_regions += 1;
        }
    }

    /// Whether the current pass has nothing left to find.
    fn pass_complete(&self) -> bool {
        let r = self.ring;
        match self.pass {
            0 => self.used_regions == r.num_assigned_regions,
            1 => self.used_zones == r.num_assigned_zones,
            2 => self.used_ips == r.num_assigned_ips,
            _ => self.used == r.num_assigned_devs,
        }
    }

    fn wanted(&self, id: usize, t: DevTiers) -> bool {
        if self.test(0, id) {
            return false;
        }
        match self.pass {
            0 => !self.test(self.region_base, t.region as usize),
            1 => !self.test(self.zone_base, t.zone as usize),
            2 => !self.test(self.ip_base, t.ip as usize),
            _ => true,
        }
    }
}

impl<'a> Iterator for MoreNodes<'a> {
    type Item = Handoff<'a>;

    fn next(&mut self) -> Option<Handoff<'a>> {
        let ring = self.ring;
        let rows = &ring.data.replica2part2dev;
        loop {
            if self.pass > 3 {
                return None;
            }
            let mut scan = match self.scan {
                Some(scan) if !scan.done => scan,
                Some(_) => {
                    // Scan exhausted without completing the pass.
                    self.pass += 1;
                    self.scan = None;
                    continue;
                }
                None => {
                    if self.pass_complete() {
                        self.pass += 1;
                        continue;
                    }
                    Scan::new(self.start, self.inc, ring.parts)
                }
            };
            let mut found = None;
            while !scan.done {
                let (part, row) = (scan.part, scan.row);
                scan.advance(rows.len(), self.start, self.inc, ring.parts);
                let Some(&id) = rows[row].get(part) else {
                    continue;
                };
                let Some((dev, tiers)) = ring.dev_by_id(id) else {
                    continue;
                };
                if self.wanted(usize::from(id), tiers) {
                    found = Some((dev, tiers));
                    break;
                }
            }
            self.scan = Some(scan);
            let Some((dev, tiers)) = found else {
                continue;
            };
            self.mark(dev.id as usize, tiers, self.pass == 0);
            if self.pass_complete() {
                self.pass += 1;
                self.scan = None;
            }
            let handoff_index = self.next_index;
            self.next_index += 1;
            return Some(Handoff { dev, handoff_index });
        }
    }
}

impl std::iter::FusedIterator for MoreNodes<'_> {}

/// The current ring of one file, reloaded when the file changes.
///
/// Servers call [`RingWatcher::check_reload`] from their request path or a timer; it
/// costs one `Instant::now()` between checks and one `stat` per interval.
#[derive(Debug)]
pub struct RingWatcher {
    path: PathBuf,
    interval: Duration,
    ring: RwLock<Arc<Ring>>,
    next_check: Mutex<Instant>,
}

impl RingWatcher {
    /// Load `path` now; check for changes every [`DEFAULT_RING_CHECK_INTERVAL`].
    pub fn new(path: impl Into<PathBuf>) -> Result<RingWatcher, RingError> {
        RingWatcher::with_interval(path, DEFAULT_RING_CHECK_INTERVAL)
    }

    /// Load `path` now; check for changes at most every `interval`.
    pub fn with_interval(
        path: impl Into<PathBuf>,
        interval: Duration,
    ) -> Result<RingWatcher, RingError> {
        let path = path.into();
        let ring = Ring::load(&path)?;
        Ok(RingWatcher {
            path,
            interval,
            ring: RwLock::new(Arc::new(ring)),
            next_check: Mutex::new(Instant::now() + interval),
        })
    }

    /// The ring in service.
    pub fn current(&self) -> Arc<Ring> {
        Arc::clone(&self.ring.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// If the check interval has passed, reload the file when its mtime, size or inode
    /// changed. `Ok(true)` when a new ring was swapped in. On error the old ring stays.
    pub fn check_reload(&self) -> Result<bool, RingError> {
        {
            let now = Instant::now();
            let mut next = self.next_check.lock().unwrap_or_else(|e| e.into_inner());
            if now < *next {
                return Ok(false);
            }
            *next = now + self.interval;
        }
        self.force_check_reload()
    }

    /// [`RingWatcher::check_reload`] ignoring the interval.
    pub fn force_check_reload(&self) -> Result<bool, RingError> {
        let meta = std::fs::metadata(&self.path).map_err(|source| FileError::Io {
            path: self.path.display().to_string(),
            source,
        })?;
        if Some(FileStamp::of(&meta)) == self.current().stamp {
            return Ok(false);
        }
        let ring = Arc::new(Ring::load(&self.path)?);
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = ring;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn dev(id: u32, region: u32, zone: u32, ip: &str) -> Device {
        Device {
            id,
            region,
            zone,
            ip: ip.to_string(),
            port: 6200,
            replication_ip: ip.to_string(),
            replication_port: 6300,
            device: format!("sd{id}"),
            weight: 100.0,
            meta: String::new(),
        }
    }

    /// 4 devices over 2 zones, 2 replicas, part power 2.
    fn small() -> RingData {
        RingData {
            part_power: 2,
            replica2part2dev: vec![vec![0, 1, 2, 3], vec![2, 3, 0, 1]],
            devs: vec![
                Some(dev(0, 1, 1, "10.0.0.1")),
                Some(dev(1, 1, 1, "10.0.0.2")),
                Some(dev(2, 1, 2, "10.0.1.1")),
                Some(dev(3, 1, 2, "10.0.1.2")),
            ],
            version: 1,
        }
    }

    fn ids<'a>(it: impl Iterator<Item = &'a Device>) -> Vec<u32> {
        it.map(|d| d.id).collect()
    }

    #[test]
    fn decimal_matches_to_string() {
        let mut buf = [0u8; 10];
        for n in [0, 7, 10, 65_535, 1_000_000, u32::MAX] {
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }

    #[test]
    fn primaries_in_row_order() {
        let ring = Ring::from_data(small()).unwrap();
        assert_eq!(ring.partition_count(), 4);
        assert_eq!(ring.replica_count(), 2.0);
        assert_eq!(ring.part_shift(), 30);
        let nodes = ring.get_part_nodes_vec(1);
        assert_eq!(ids(nodes.iter().map(|n| n.dev)), vec![1, 3]);
        assert_eq!(
            nodes.iter().map(|n| n.index).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(ring.get_part_nodes(9).count(), 0);
    }

    #[test]
    fn duplicate_device_listed_once_and_short_row_skipped() {
        let mut data = small();
        data.replica2part2dev = vec![vec![0, 1, 2, 3], vec![0, 2, 3, 1], vec![1, 3]];
        let ring = Ring::from_data(data).unwrap();
        assert_eq!(ring.replica_count(), 2.5);
        let n0 = ring.get_part_nodes_vec(0);
        assert_eq!(ids(n0.iter().map(|n| n.dev)), vec![0, 1]);
        assert_eq!(n0[1].index, 1);
        assert_eq!(ids(ring.get_part_nodes(1).map(|n| n.dev)), vec![1, 2, 3]);
        assert_eq!(ids(ring.get_part_nodes(2).map(|n| n.dev)), vec![2, 3]);
    }

    #[test]
    fn validation_errors() {
        let mut d = small();
        d.replica2part2dev[1][2] = 9;
        assert!(matches!(
            Ring::from_data(d),
            Err(RingError::UnknownDevice {
                replica: 1,
                part: 2,
                dev_id: 9
            })
        ));
        let mut d = small();
        d.devs[0] = None;
        assert!(matches!(
            Ring::from_data(d),
            Err(RingError::UnknownDevice { dev_id: 0, .. })
        ));
        let mut d = small();
        d.replica2part2dev = vec![];
        assert!(matches!(Ring::from_data(d), Err(RingError::NoReplicas)));
        let mut d = small();
        d.part_power = 3;
        assert!(matches!(
            Ring::from_data(d),
            Err(RingError::RowLength { row: 0, .. })
        ));
        let mut d = small();
        d.replica2part2dev[1].push(0);
        assert!(matches!(
            Ring::from_data(d),
            Err(RingError::RowLength { row: 1, .. })
        ));
        let mut d = small();
        d.devs[3].as_mut().unwrap().id = 7;
        assert!(matches!(
            Ring::from_data(d),
            Err(RingError::DeviceIdMismatch { index: 3, id: 7 })
        ));
        let mut d = small();
        d.part_power = 33;
        assert!(matches!(Ring::from_data(d), Err(RingError::PartPower(33))));
        let mut d = small();
        d.devs = vec![None];
        d.replica2part2dev = vec![vec![]; 1];
        d.part_power = 0;
        assert!(Ring::from_data(d).is_err());
    }

    #[test]
    fn get_part_uses_top_bits_of_hash() {
        let ring = Ring::from_data(small()).unwrap();
        let secret = HashPathSecret::new("", "changeme");
        let digest = secret.digest("AUTH_test", Some("c"), Some("o"));
        let expected = u32::from(digest[0] >> 6);
        assert_eq!(
            ring.get_part(&secret, "AUTH_test", Some("c"), Some("o")),
            expected
        );
        let (part, nodes) = ring.get_nodes(&secret, "AUTH_test", Some("c"), Some("o"));
        assert_eq!(part, expected);
        assert_eq!(nodes.len(), 2);
    }

    #[test]
    fn small_ring_handoffs_are_the_other_zone_then_rest() {
        let ring = Ring::from_data(small()).unwrap();
        for part in 0..4 {
            let primaries = ids(ring.get_part_nodes(part).map(|n| n.dev));
            let handoffs: Vec<_> = ring.get_more_nodes(part).collect();
            assert_eq!(handoffs.len(), 2);
            for (i, h) in handoffs.iter().enumerate() {
                assert_eq!(h.handoff_index, i);
                assert!(!primaries.contains(&h.id));
            }
        }
    }
}
