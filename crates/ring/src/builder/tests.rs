use super::*;

fn dev(region: u32, zone: u32, ip: &str, name: &str, weight: f64) -> Device {
    Device {
        id: 0,
        region,
        zone,
        ip: ip.into(),
        port: 6200,
        replication_ip: ip.into(),
        replication_port: 6200,
        device: name.into(),
        weight,
        meta: String::new(),
    }
}

fn opts(seed: u64) -> RebalanceOptions {
    RebalanceOptions {
        seed: Some(seed),
        now: Some(1_000_000),
    }
}

/// 2 regions × 2 zones × 2 servers × 2 devices, all weight 100.
fn small_cluster(part_power: i64, replicas: f64) -> RingBuilder {
    let mut b = RingBuilder::new(part_power, replicas, 1).unwrap();
    for r in 1..=2 {
        for z in 1..=2 {
            for s in 1..=2 {
                for d in 1..=2 {
                    let ip = format!("10.{r}.{z}.{s}");
                    b.add_device(dev(r, z, &ip, &format!("sd{d}"), 100.0))
                        .unwrap();
                }
            }
        }
    }
    b
}

#[test]
fn create_rejects_bad_parameters() {
    assert!(matches!(
        RingBuilder::new(24, 3.0, 1),
        Err(BuilderError::PartPower(24))
    ));
    assert!(matches!(
        RingBuilder::new(-1, 3.0, 1),
        Err(BuilderError::PartPower(-1))
    ));
    assert!(matches!(
        RingBuilder::new(8, 0.5, 1),
        Err(BuilderError::Replicas(_))
    ));
    assert!(matches!(
        RingBuilder::new(8, f64::NAN, 1),
        Err(BuilderError::Replicas(_))
    ));
    assert!(RingBuilder::new(0, 1.0, 0).is_ok());
}

#[test]
fn add_assigns_ids_and_refuses_duplicates() {
    let mut b = RingBuilder::new(4, 3.0, 1).unwrap();
    assert_eq!(b.add_device(dev(1, 1, "a", "sdb", 1.0)).unwrap(), 0);
    assert_eq!(b.add_device(dev(1, 1, "a", "sdc", 1.0)).unwrap(), 1);
    assert!(matches!(
        b.add_device(dev(1, 2, "a", "sdb", 1.0)),
        Err(BuilderError::DuplicateDevice(_, 0))
    ));
    assert!(matches!(
        b.add_device(dev(1, 2, "b", "sdb", -1.0)),
        Err(BuilderError::Weight(_))
    ));
    assert!(matches!(
        b.set_weight(1, -3.0),
        Err(BuilderError::Weight(_))
    ));
    assert!(matches!(
        b.set_weight(7, 3.0),
        Err(BuilderError::NoSuchDevice(7))
    ));
}

#[test]
fn refuses_fewer_devices_than_replicas() {
    let mut b = RingBuilder::new(4, 3.0, 1).unwrap();
    b.add_device(dev(1, 1, "a", "sdb", 1.0)).unwrap();
    b.add_device(dev(1, 1, "a", "sdc", 1.0)).unwrap();
    b.add_device(dev(1, 1, "a", "sdd", 0.0)).unwrap();
    let before = b.clone();
    assert!(matches!(
        b.rebalance(&opts(1)),
        Err(BuilderError::NotEnoughDevices { weighted: 2, .. })
    ));
    assert_eq!(b, before);
}

#[test]
fn first_rebalance_is_balanced_and_dispersed() {
    let mut b = small_cluster(10, 3.0);
    let report = b.rebalance(&opts(7)).unwrap();
    assert_eq!(report.changed_part_replicas, 3 * 1024);
    assert_eq!(report.changed_partitions, 1024);
    b.validate().unwrap();
    assert!(report.balance < 1.0, "balance {}", report.balance);
    assert_eq!(report.dispersion, 0.0);
    assert_eq!(b.version(), 1);
    assert_eq!(
        b.seeds(),
        &[SeedRecord {
            version: 1,
            seed: 7
        }]
    );
}

#[test]
fn same_seed_same_ring_and_nothing_to_do_twice() {
    let mut a = small_cluster(8, 3.0);
    let mut b = a.clone();
    a.rebalance(&opts(42)).unwrap();
    b.rebalance(&opts(42)).unwrap();
    assert_eq!(a.replica2part2dev(), b.replica2part2dev());
    a.pretend_min_part_hours_passed();
    let again = a.rebalance(&opts(43)).unwrap();
    assert_eq!(again.changed_part_replicas, 0);
}

#[test]
fn remove_moves_only_that_devices_replicas() {
    let mut b = small_cluster(8, 3.0);
    b.rebalance(&opts(1)).unwrap();
    let held = b.device_parts()[5];
    b.remove_device(5).unwrap();
    let report = b.rebalance(&opts(2)).unwrap();
    assert_eq!(report.removed_devices.len(), 1);
    assert!(b.device(5).is_none());
    // Removed replicas move (min_part_hours ignored); rebalancing the rest may move a few.
    assert!(report.changed_part_replicas >= held);
    b.validate().unwrap();
    assert!(b.part_devs(0).all(|d| d != 5));
    // The hole is reused.
    assert_eq!(b.add_device(dev(3, 1, "z", "sdq", 100.0)).unwrap(), 5);
}

#[test]
fn min_part_hours_limits_moves_to_one_replica_per_partition() {
    let mut b = small_cluster(8, 3.0);
    b.rebalance(&opts(1)).unwrap();
    let before = b.replica2part2dev().to_vec();
    for id in 0..4 {
        b.set_weight(id, 400.0).unwrap();
    }
    // Within the hour nothing may move.
    let report = b.rebalance(&opts(2)).unwrap();
    assert_eq!(report.changed_part_replicas, 0);
    b.pretend_min_part_hours_passed();
    b.rebalance(&opts(3)).unwrap();
    let after = b.replica2part2dev();
    for p in 0..b.parts() {
        let changed = before
            .iter()
            .zip(after)
            .filter(|(old, new)| old[p] != new[p])
            .count();
        assert!(changed <= 1, "partition {p} moved {changed} replicas");
    }
}

#[test]
fn fractional_replicas_and_replica_changes() {
    let mut b = small_cluster(8, 2.5);
    b.rebalance(&opts(1)).unwrap();
    let rows: Vec<usize> = b.replica2part2dev().iter().map(Vec::len).collect();
    assert_eq!(rows, vec![256, 256, 128]);
    b.validate().unwrap();
    b.set_replicas(3.0).unwrap();
    assert!(b.validate().is_err());
    b.rebalance(&opts(2)).unwrap();
    b.validate().unwrap();
    assert_eq!(b.replica2part2dev().len(), 3);
}

#[test]
fn save_load_round_trip_and_ring_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("object.builder");
    let mut b = small_cluster(6, 3.0);
    b.rebalance(&opts(1)).unwrap();
    b.save(&path).unwrap();
    let back = RingBuilder::load(&path).unwrap();
    assert_eq!(back, b);
    let ring_path = RingBuilder::ring_path_for(&path);
    assert_eq!(ring_path, dir.path().join("object.ring"));
    b.write_ring(&ring_path).unwrap();
    let ring: RingData = file::read_file(RING_MAGIC, &ring_path).unwrap();
    assert_eq!(ring, b.to_ring_data());
}

#[test]
fn corrupt_builder_state_is_rejected() {
    let mut b = small_cluster(4, 3.0);
    b.rebalance(&opts(1)).unwrap();
    b.replica2part2dev[0][3] = 999;
    assert!(matches!(
        b.check_consistency(),
        Err(BuilderError::Corrupt(_))
    ));
}

#[test]
fn zero_weight_device_drains() {
    let mut b = small_cluster(8, 3.0);
    b.rebalance(&opts(1)).unwrap();
    b.set_weight(0, 0.0).unwrap();
    b.pretend_min_part_hours_passed();
    b.rebalance(&opts(2)).unwrap();
    assert_eq!(b.device_parts()[0], 0);
    b.validate().unwrap();
}

#[test]
fn overload_trades_balance_for_dispersion() {
    // Zone 1 is much heavier; 3 replicas over 3 zones want one per zone.
    let mut b = RingBuilder::new(8, 3.0, 0).unwrap();
    for (z, w) in [(1, 300.0), (2, 100.0), (3, 100.0)] {
        for s in 0..2 {
            b.add_device(dev(1, z, &format!("10.0.{z}.{s}"), "sdb", w))
                .unwrap();
        }
    }
    b.rebalance(&opts(1)).unwrap();
    assert!(
        b.dispersion() > 0.0,
        "weights pull 1.8 replicas into zone 1"
    );
    b.set_overload(10.0).unwrap();
    b.pretend_min_part_hours_passed();
    for seed in 2..6 {
        b.rebalance(&opts(seed)).unwrap();
    }
    assert_eq!(b.dispersion(), 0.0);
    b.validate().unwrap();
}

#[test]
fn tiny_rings_work() {
    // Part power 0: a single partition.
    let mut b = small_cluster(0, 3.0);
    b.rebalance(&opts(1)).unwrap();
    b.validate().unwrap();
    assert_eq!(b.part_devs(0).count(), 3);
    // A fraction too small to give the last row any partition is dropped.
    let mut b = small_cluster(1, 2.25);
    b.rebalance(&opts(1)).unwrap();
    assert_eq!(b.replica2part2dev().len(), 2);
    b.validate().unwrap();
}

#[test]
fn written_ring_loads_and_matches_the_builder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("object.ring");
    let mut b = small_cluster(8, 3.0);
    b.rebalance(&opts(9)).unwrap();
    b.write_ring(&path).unwrap();
    let ring = crate::ring::Ring::load(&path).unwrap();
    assert_eq!(ring.version(), 1);
    assert_eq!(ring.replica2part2dev(), b.replica2part2dev());
    for part in [0u32, 17, 255] {
        let mut from_ring: Vec<u32> = ring.get_part_nodes_vec(part).iter().map(|n| n.id).collect();
        let mut from_builder: Vec<u32> = b.part_devs(part as usize).map(u32::from).collect();
        from_ring.sort_unstable();
        from_builder.sort_unstable();
        assert_eq!(from_ring, from_builder);
    }
}

#[test]
fn removing_a_whole_zone_keeps_everything_placed() {
    let mut b = small_cluster(8, 3.0);
    b.rebalance(&opts(1)).unwrap();
    let zone_devs: Vec<u32> = b
        .devices()
        .filter(|d| d.region == 1 && d.zone == 1)
        .map(|d| d.id)
        .collect();
    for id in zone_devs {
        b.remove_device(id).unwrap();
    }
    let report = b.rebalance(&opts(2)).unwrap();
    assert_eq!(report.removed_devices.len(), 4);
    b.validate().unwrap();
    assert!(b.balance() < 2.0, "balance {}", b.balance());
}

/// A builder body from before placement rules (no trailing `placement` field) still loads,
/// with no rule; a body with a rule round-trips.
#[test]
fn legacy_builder_body_without_placement_loads() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.builder");
    let mut b = small_cluster(5, 3.0);
    b.rebalance(&opts(1)).unwrap();
    let mut body = postcard::to_stdvec(&b).unwrap();
    // `placement: None` is the single trailing tag byte 0; an old body ends before it.
    assert_eq!(body.pop(), Some(0));
    let mut bytes = Vec::new();
    bytes.extend_from_slice(BUILDER_MAGIC);
    bytes.extend_from_slice(&file::FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(Sha256::digest(&body).as_slice());
    bytes.extend_from_slice(&body);
    std::fs::write(&path, &bytes).unwrap();
    let back = RingBuilder::load(&path).unwrap();
    assert_eq!(back, b);
    assert_eq!(back.placement(), None);

    b.set_placement(Some("110".parse().unwrap()));
    b.save(&path).unwrap();
    assert_eq!(RingBuilder::load(&path).unwrap(), b);
    // A truncated-but-checksummed body that fits neither layout is still refused.
    let mut short = postcard::to_stdvec(&b).unwrap();
    short.truncate(short.len() - 8);
    let mut bytes = Vec::new();
    bytes.extend_from_slice(BUILDER_MAGIC);
    bytes.extend_from_slice(&file::FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    bytes.extend_from_slice(&(short.len() as u64).to_le_bytes());
    bytes.extend_from_slice(Sha256::digest(&short).as_slice());
    bytes.extend_from_slice(&short);
    std::fs::write(&path, &bytes).unwrap();
    assert!(RingBuilder::load(&path).is_err());
}

#[test]
fn placement_rule_is_enforced_and_validated() {
    let mut b = small_cluster(6, 3.0);
    b.set_placement(Some("110".parse().unwrap()));
    b.rebalance(&opts(4)).unwrap();
    assert!(b.placement_violations().is_empty());
    b.validate().unwrap();
    // 200 needs 3 regions: refused before any change.
    b.set_placement(Some("200".parse().unwrap()));
    let before = b.clone();
    let err = b.rebalance(&opts(5)).unwrap_err();
    assert!(matches!(err, BuilderError::Placement(_)), "{err}");
    assert_eq!(b, before);
    // The 110 ring breaks 200 in every partition (two replicas share a region).
    let bad = b.placement_violations();
    assert_eq!(bad.len(), b.parts());
    let msg = b.validate().unwrap_err().to_string();
    assert!(msg.contains("violate placement rule 200"), "{msg}");
}
