//! Lookups on hand-built rings: primaries, handoff order (checked against numbers produced
//! by Swift's own `Ring.get_more_nodes`), handoff properties, and reloading on change.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use cairn_ring::file::{self, RING_MAGIC};
use cairn_ring::{Device, Ring, RingData, RingError, RingWatcher};

fn dev(id: u32, region: u32, zone: u32, ip: &str, port: u16, weight: f64) -> Device {
    Device {
        id,
        region,
        zone,
        ip: ip.to_string(),
        port,
        replication_ip: ip.to_string(),
        replication_port: port + 100,
        device: format!("sd{id}"),
        weight,
        meta: String::new(),
    }
}

/// Three regions holding partitions (plus a fourth whose only device is weightless and
/// holds none), zones and servers of uneven size, two ports on one server (one failure
/// domain), a removed id (5), a draining zero-weight device that still holds partitions
/// (14), and 3 + 1/4 replicas. Assignment is a fixed hash so the Python reference can
/// rebuild the identical ring.
fn fixture(part_power: u8) -> RingData {
    let list = [
        dev(0, 1, 1, "10.1.1.1", 6200, 100.0),
        dev(1, 1, 1, "10.1.1.1", 6200, 100.0),
        dev(2, 1, 1, "10.1.1.2", 6200, 100.0),
        dev(3, 1, 2, "10.1.2.1", 6200, 100.0),
        dev(4, 1, 2, "10.1.2.1", 6200, 100.0),
        dev(6, 2, 1, "10.2.1.1", 6200, 100.0),
        dev(7, 2, 1, "10.2.1.1", 6200, 100.0),
        dev(8, 2, 3, "10.2.3.1", 6200, 100.0),
        dev(9, 2, 3, "10.2.3.2", 6200, 100.0),
        dev(10, 3, 1, "10.3.1.1", 6200, 100.0),
        dev(11, 3, 1, "10.3.1.1", 6200, 100.0),
        dev(12, 1, 1, "10.1.1.1", 6201, 100.0),
        dev(13, 4, 9, "10.4.9.9", 6200, 0.0),
        dev(14, 2, 1, "10.2.1.2", 6200, 0.0),
        dev(15, 1, 2, "10.1.2.2", 6200, 100.0),
    ];
    let mut devs = vec![None; 16];
    for d in list {
        let id = d.id as usize;
        devs[id] = Some(d);
    }
    const ASSIGNED: [u16; 14] = [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 14, 15];
    let parts = 1u64 << part_power;
    let mut rows = Vec::new();
    for r in 0..4u64 {
        let n = if r < 3 { parts } else { parts / 4 + 1 };
        rows.push(
            (0..n)
                .map(|p| {
                    let mut x = (p * 2_654_435_761 + r * 97 + 12_345) % (1 << 32);
                    x ^= x >> 13;
                    ASSIGNED[(x % 14) as usize]
                })
                .collect(),
        );
    }
    RingData {
        part_power,
        replica2part2dev: rows,
        devs,
        version: 3,
    }
}

/// `(part_power, part, primaries, handoffs)` printed by Swift's `Ring._get_part_nodes` and
/// `Ring.get_more_nodes` (methods taken verbatim from openstack/swift master,
/// swift/common/ring/ring.py) on the ring built by [`fixture`].
const SWIFT_REFERENCE: &[(u8, u32, &[u32], &[u32])] = &[
    (6, 0, &[11, 12, 9, 10], &[15, 6, 4, 8, 2, 14, 1, 7, 3, 0]),
    (6, 1, &[15, 2, 12, 14], &[10, 8, 9, 4, 6, 1, 0, 11, 7, 3]),
    (6, 2, &[0, 6, 7, 1], &[10, 8, 15, 9, 4, 2, 14, 11, 12, 3]),
    (6, 7, &[2, 8, 0, 6], &[11, 3, 14, 15, 9, 7, 12, 1, 10, 4]),
    (6, 33, &[12, 0, 6], &[11, 15, 8, 2, 4, 14, 9, 7, 10, 1, 3]),
    (6, 16, &[12, 9, 1, 2], &[10, 15, 6, 8, 4, 14, 0, 11, 7, 3]),
    (6, 63, &[12, 7, 1], &[11, 9, 15, 2, 14, 8, 4, 10, 0, 6, 3]),
    (17, 0, &[11, 12, 9, 10], &[15, 6, 8, 2, 14, 3, 1, 7, 0, 4]),
    (17, 1, &[15, 2, 12, 14], &[11, 9, 6, 3, 8, 0, 7, 1, 4, 10]),
    (17, 2, &[0, 6, 7, 1], &[11, 3, 8, 14, 9, 15, 2, 12, 10, 4]),
    (17, 7, &[2, 8, 0, 6], &[10, 4, 9, 14, 15, 1, 12, 7, 3, 11]),
    (17, 33, &[12, 0, 6], &[11, 15, 8, 3, 14, 2, 9, 10, 1, 4, 7]),
    (
        17,
        32768,
        &[9, 6, 0, 12],
        &[10, 3, 14, 15, 8, 2, 7, 4, 1, 11],
    ),
    (
        17,
        131071,
        &[15, 9, 1],
        &[10, 7, 8, 4, 14, 2, 0, 3, 11, 12, 6],
    ),
];

fn primary_ids(ring: &Ring, part: u32) -> Vec<u32> {
    ring.get_part_nodes(part).map(|n| n.dev.id).collect()
}

fn handoff_ids(ring: &Ring, part: u32) -> Vec<u32> {
    ring.get_more_nodes(part).map(|h| h.dev.id).collect()
}

#[test]
fn matches_swift_reference() {
    let small = Ring::from_data(fixture(6)).unwrap();
    let big = Ring::from_data(fixture(17)).unwrap();
    assert_eq!(small.replica_count(), 3.0 + 17.0 / 64.0);
    for &(pp, part, primaries, handoffs) in SWIFT_REFERENCE {
        let ring = if pp == 6 { &small } else { &big };
        assert_eq!(
            primary_ids(ring, part),
            primaries,
            "primaries pp={pp} part={part}"
        );
        assert_eq!(
            handoff_ids(ring, part),
            handoffs,
            "handoffs pp={pp} part={part}"
        );
    }
}

#[test]
fn counts_only_assigned_devices() {
    let ring = Ring::from_data(fixture(6)).unwrap();
    assert_eq!(ring.device_count(), 15);
    assert_eq!(ring.weighted_device_count(), 13);
    assert_eq!(ring.assigned_device_count(), 14);
    // regions 1..=3; zones (1,1) (1,2) (2,1) (2,3) (3,1); servers by ip, not ip:port
    assert_eq!(ring.assigned_tier_counts(), (3, 5, 9));
    assert_eq!(ring.regions(), &[1, 2, 3, 4]);
    assert_eq!(ring.dev_part_count(13), 0);
    assert_eq!(ring.dev_part_count(5), 0);
    assert!(ring.dev(5).is_none());
}

/// Region, zone, server of a device.
fn tiers(d: &Device) -> (u32, (u32, u32), (u32, u32, String)) {
    (
        d.region,
        (d.region, d.zone),
        (d.region, d.zone, d.ip.clone()),
    )
}

/// The partitions Swift's handoff scan visits for `part`: `range(start, parts, inc)` then
/// `range(inc - ((parts - start) % inc), start, inc)`. Note the quirk this reproduces: with
/// `inc == 1` and `start > 0` the second range begins at 1, so partition 0 is never scanned.
fn scanned_parts(ring: &Ring, part: u32) -> Vec<usize> {
    use md5::Digest;
    let parts = ring.partition_count();
    let digest = md5::Md5::digest(part.to_string().as_bytes());
    let top = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let start = top.checked_shr(ring.part_shift()).unwrap_or(0) as usize;
    let inc = (parts / 65536).max(1);
    let mut out: Vec<usize> = (start..parts).step_by(inc).collect();
    out.extend((inc - ((parts - start) % inc)..start).step_by(inc));
    out
}

fn check_handoff_properties(ring: &Ring, part: u32) {
    // Devices the handoff walk can reach: primaries and those on scanned partitions.
    let mut assigned: BTreeSet<u32> = ring.get_part_nodes(part).map(|n| n.dev.id).collect();
    for p in scanned_parts(ring, part) {
        for row in ring.replica2part2dev() {
            if let Some(&id) = row.get(p) {
                assigned.insert(u32::from(id));
            }
        }
    }
    let all_regions: HashSet<u32> = assigned
        .iter()
        .map(|&id| ring.dev(id).unwrap().region)
        .collect();
    let all_zones: HashSet<(u32, u32)> = assigned
        .iter()
        .map(|&id| tiers(ring.dev(id).unwrap()).1)
        .collect();
    let all_ips: HashSet<(u32, u32, String)> = assigned
        .iter()
        .map(|&id| tiers(ring.dev(id).unwrap()).2)
        .collect();

    let mut seen = BTreeSet::new();
    let (mut regions, mut zones, mut ips) = (HashSet::new(), HashSet::new(), HashSet::new());
    for n in ring.get_part_nodes(part) {
        assert!(seen.insert(n.dev.id));
        let (r, z, i) = tiers(n.dev);
        regions.insert(r);
        zones.insert(z);
        ips.insert(i);
    }
    for (k, h) in ring.get_more_nodes(part).enumerate() {
        assert_eq!(h.handoff_index, k);
        assert!(seen.insert(h.dev.id), "device {} repeated", h.dev.id);
        assert!(
            ring.dev_part_count(h.dev.id) > 0,
            "partless device returned"
        );
        let (r, z, i) = tiers(h.dev);
        // Greedy dispersion: a new region while one is left, else a new zone, else a new
        // server (every partition is scanned when inc == 1, so nothing is missed).
        if regions.len() < all_regions.len() {
            assert!(
                !regions.contains(&r),
                "part {part} handoff {k}: region reused"
            );
        } else if zones.len() < all_zones.len() {
            assert!(!zones.contains(&z), "part {part} handoff {k}: zone reused");
        } else if ips.len() < all_ips.len() {
            assert!(!ips.contains(&i), "part {part} handoff {k}: server reused");
        }
        regions.insert(r);
        zones.insert(z);
        ips.insert(i);
    }
    assert_eq!(
        seen, assigned,
        "primaries + handoffs = every assigned device once"
    );
}

#[test]
fn handoff_properties_hold_for_every_partition() {
    let ring = Ring::from_data(fixture(6)).unwrap();
    for part in 0..64 {
        check_handoff_properties(&ring, part);
        // Here every device sits on many partitions, so all 14 assigned ones are reached
        // and the weightless, partless device 13 never is.
        let mut all: Vec<u32> = primary_ids(&ring, part);
        all.extend(handoff_ids(&ring, part));
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 14, 15]);
    }
}

#[test]
fn handoff_properties_hold_on_a_large_ring() {
    let ring = Ring::from_data(fixture(17)).unwrap();
    for part in (0..131_072).step_by(4099) {
        check_handoff_properties(&ring, part);
    }
}

#[test]
fn handoffs_are_lazy_and_deterministic() {
    let a = Ring::from_data(fixture(17)).unwrap();
    let b = Ring::from_data(fixture(17)).unwrap();
    for part in [0, 5, 99_999] {
        assert_eq!(handoff_ids(&a, part), handoff_ids(&b, part));
        let first: Vec<u32> = a.get_more_nodes(part).take(2).map(|h| h.dev.id).collect();
        assert_eq!(first, handoff_ids(&a, part)[..2]);
    }
}

#[test]
fn single_zone_ring_hands_off_to_other_servers_then_devices() {
    let devs: Vec<Option<Device>> = vec![
        Some(dev(0, 1, 1, "10.0.0.1", 6200, 1.0)),
        Some(dev(1, 1, 1, "10.0.0.1", 6201, 1.0)),
        Some(dev(2, 1, 1, "10.0.0.2", 6200, 1.0)),
        Some(dev(3, 1, 1, "10.0.0.3", 6200, 1.0)),
        Some(dev(4, 1, 1, "10.0.0.9", 6200, 0.0)),
    ];
    let data = RingData {
        part_power: 3,
        replica2part2dev: vec![vec![0, 1, 2, 3, 0, 1, 2, 3], vec![2, 3, 0, 1, 2, 3, 0, 1]],
        devs,
        version: 1,
    };
    let ring = Ring::from_data(data).unwrap();
    for part in 0..8 {
        let primaries = primary_ids(&ring, part);
        let handoffs = handoff_ids(&ring, part);
        assert_eq!(handoffs.len(), 2, "part {part}");
        assert!(!handoffs.contains(&4));
        if primaries.contains(&0) && primaries.contains(&2) {
            // 10.0.0.3 is the only unused server: it must come before device 1, which
            // shares 10.0.0.1 with primary device 0
            assert_eq!(handoffs, vec![3, 1], "part {part}");
        }
    }
}

fn write_ring(path: &std::path::Path, data: &RingData) {
    file::write_file(RING_MAGIC, path, data, true).unwrap();
}

#[test]
fn load_records_md5_and_mtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("object.ring");
    write_ring(&path, &fixture(6));
    let ring = Ring::load(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    use md5::Digest;
    let want = cairn_ring::hash::to_hex(&md5::Md5::digest(&bytes));
    assert_eq!(ring.md5_hex(), Some(want.as_str()));
    assert!(ring.mtime().is_some());
    assert_eq!(ring.version(), 3);
    assert!(Ring::from_data(fixture(6)).unwrap().md5_hex().is_none());
}

#[test]
fn load_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("object.ring");
    assert!(matches!(Ring::load(&path), Err(RingError::File(_))));
    std::fs::write(
        &path,
        b"not a ring at all, just some bytes long enough for a header....",
    )
    .unwrap();
    assert!(matches!(Ring::load(&path), Err(RingError::File(_))));
    let mut bad = fixture(6);
    bad.replica2part2dev[2][9] = 5; // the removed id
    write_ring(&path, &bad);
    let err = Ring::load(&path).unwrap_err();
    assert!(matches!(err, RingError::UnknownDevice { dev_id: 5, .. }));
    assert!(!err.to_string().contains('\n'));
}

#[test]
fn watcher_reloads_changed_file_and_keeps_old_ring_on_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("object.ring");
    let mut data = fixture(6);
    write_ring(&path, &data);

    let watcher = RingWatcher::with_interval(&path, Duration::ZERO).unwrap();
    let first = watcher.current();
    assert_eq!(first.version(), 3);
    assert!(!watcher.check_reload().unwrap(), "unchanged file");

    data.version = 4;
    data.replica2part2dev[0].swap(0, 1);
    write_ring(&path, &data);
    assert!(watcher.check_reload().unwrap());
    let second = watcher.current();
    assert_eq!(second.version(), 4);
    assert_ne!(first.md5_hex(), second.md5_hex());
    // Holders of the old Arc keep a consistent ring.
    assert_eq!(first.version(), 3);

    file::write_atomic(&path, b"CAIRNRNG garbage").unwrap();
    assert!(watcher.check_reload().is_err());
    assert_eq!(watcher.current().version(), 4);

    std::fs::remove_file(&path).unwrap();
    assert!(watcher.check_reload().is_err());
    assert_eq!(watcher.current().version(), 4);

    data.version = 5;
    write_ring(&path, &data);
    assert!(watcher.check_reload().unwrap());
    assert_eq!(watcher.current().version(), 5);
}

#[test]
fn watcher_checks_at_most_every_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("object.ring");
    let mut data = fixture(6);
    write_ring(&path, &data);
    let watcher = RingWatcher::new(&path).unwrap();
    assert_eq!(watcher.interval(), Duration::from_secs(15));
    data.version = 9;
    write_ring(&path, &data);
    assert!(!watcher.check_reload().unwrap(), "interval not yet passed");
    assert_eq!(watcher.current().version(), 3);
    assert!(watcher.force_check_reload().unwrap());
    assert_eq!(watcher.current().version(), 9);
}

mod random_rings {
    use super::*;
    use proptest::prelude::*;

    /// Devices with random tiers (few distinct values, so tiers collide), some removed ids,
    /// and a random assignment that may put two replicas of a partition on one device.
    fn ring_data() -> impl Strategy<Value = RingData> {
        (
            0u8..=6,
            1usize..=4,
            prop::collection::vec((1u32..=3, 1u32..=3, 1u8..=3, 0u8..4, any::<bool>()), 1..24),
            any::<u64>(),
            0usize..=100,
        )
            .prop_map(|(part_power, rows, devs, seed, frac)| {
                let devs: Vec<Option<Device>> = devs
                    .into_iter()
                    .enumerate()
                    .map(|(id, (region, zone, host, port, present))| {
                        (present || id == 0).then(|| {
                            dev(
                                id as u32,
                                region,
                                zone,
                                &format!("10.{region}.{zone}.{host}"),
                                6200 + u16::from(port),
                                1.0,
                            )
                        })
                    })
                    .collect();
                let live: Vec<u16> = devs.iter().flatten().map(|d| d.id as u16).collect();
                let parts = 1usize << part_power;
                let mut x = seed | 1;
                let mut next = || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                let replica2part2dev = (0..rows)
                    .map(|r| {
                        let len = if r + 1 == rows && rows > 1 {
                            parts * frac / 100
                        } else {
                            parts
                        };
                        (0..len)
                            .map(|_| live[(next() % live.len() as u64) as usize])
                            .collect()
                    })
                    .collect();
                RingData {
                    part_power,
                    replica2part2dev,
                    devs,
                    version: 1,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn handoff_properties_on_random_rings(data in ring_data()) {
            let ring = Ring::from_data(data).unwrap();
            for part in 0..ring.partition_count() as u32 {
                check_handoff_properties(&ring, part);
            }
        }
    }
}
