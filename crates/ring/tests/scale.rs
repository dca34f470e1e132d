//! Rebalance time and quality at production scale in awkward topologies. Slow in debug
//! builds, so ignored: `cargo test --release -p cairn-ring --test scale -- --ignored
//! --nocapture` prints the figures.

use std::time::Instant;

use cairn_ring::builder::{RebalanceOptions, RingBuilder};
use cairn_ring::types::Device;

fn dev(region: u32, zone: u32, server: u32, disk: u32, weight: f64) -> Device {
    let ip = format!("10.{region}.{zone}.{server}");
    Device {
        id: 0,
        region,
        zone,
        ip: ip.clone(),
        port: 6200,
        replication_ip: ip,
        replication_port: 6200,
        device: format!("sd{disk}"),
        weight,
        meta: String::new(),
    }
}

fn opts(seed: u64, now: u64) -> RebalanceOptions {
    RebalanceOptions {
        seed: Some(seed),
        now: Some(now),
    }
}

/// Rebalance, print the figures, check validity and time.
fn timed(label: &str, b: &mut RingBuilder, seed: u64) {
    let start = Instant::now();
    let report = match b.rebalance(&opts(seed, 1_700_000_000 + seed * 7200)) {
        Ok(r) => r,
        Err(e) => panic!("{label}: {e}"),
    };
    let elapsed = start.elapsed();
    eprintln!(
        "{label}: {elapsed:.2?}, moved {} in {} partitions, balance {:.2}, dispersion {:.2}",
        report.changed_part_replicas, report.changed_partitions, report.balance, report.dispersion
    );
    if let Err(e) = b.validate() {
        panic!("{label}: {e}");
    }
}

/// 2 regions × 5 zones × 10 servers × 12 devices, mixed weights.
fn standard(part_power: i64) -> RingBuilder {
    let mut b = RingBuilder::new(part_power, 3.0, 1).expect("builder");
    for r in 1..=2 {
        for z in 1..=5 {
            for s in 1..=10 {
                for d in 0..12 {
                    let w = if d < 8 { 4000.0 } else { 8000.0 };
                    b.add_device(dev(r, z, s, d, w)).expect("add");
                }
            }
        }
    }
    b
}

#[test]
#[ignore]
fn drain_a_zone_and_grow_a_region() {
    let mut b = standard(18);
    timed("initial", &mut b, 1);
    // Drain zone r1z1 by weight 0 (respecting min_part_hours), then remove it.
    let ids: Vec<u32> = b
        .devices()
        .filter(|d| d.region == 1 && d.zone == 1)
        .map(|d| d.id)
        .collect();
    for &id in &ids {
        b.set_weight(id, 0.0).expect("weight");
    }
    b.pretend_min_part_hours_passed();
    timed("zone weight 0", &mut b, 2);
    for &id in &ids {
        b.remove_device(id).expect("remove");
    }
    timed("zone removed", &mut b, 3);
    // A third region, small: 1 zone, 2 servers.
    for s in 1..=2 {
        for d in 0..12 {
            b.add_device(dev(3, 1, s, d, 4000.0)).expect("add");
        }
    }
    b.pretend_min_part_hours_passed();
    timed("new small region", &mut b, 4);
    b.pretend_min_part_hours_passed();
    timed("again", &mut b, 5);
}

#[test]
#[ignore]
fn lopsided_topology() {
    // Region 2 is one server holding three times the weight of all of region 1: by weight
    // it would take 2.25 replicas of every partition, dispersion wants at most 2.
    let mut b = RingBuilder::new(18, 3.0, 1).expect("builder");
    for z in 1..=5 {
        for s in 1..=10 {
            for d in 0..12 {
                b.add_device(dev(1, z, s, d, 100.0)).expect("add");
            }
        }
    }
    for d in 0..12 {
        b.add_device(dev(2, 1, 1, d, 15000.0)).expect("add");
    }
    timed("lopsided, overload 0", &mut b, 1);
    b.set_overload(0.1).expect("overload");
    b.pretend_min_part_hours_passed();
    timed("lopsided, overload 10%", &mut b, 2);
    b.set_overload(10.0).expect("overload");
    for seed in 3..6 {
        b.pretend_min_part_hours_passed();
        timed("lopsided, overload 1000%", &mut b, seed);
    }
}

#[test]
#[ignore]
fn fractional_replicas_at_scale() {
    let mut b = standard(16);
    b.set_replicas(3.5).expect("replicas");
    timed("3.5 replicas", &mut b, 1);
    b.set_replicas(4.0).expect("replicas");
    timed("4 replicas", &mut b, 2);
}

/// A ring small enough for the rebalance's cycle search (≤ 256 devices) but with many
/// partitions: 4 zones × 6 servers × 8 devices, part power 18, then a server added, one
/// removed and one reweighted. Shows what the search costs where it is most expensive.
#[test]
#[ignore]
fn cycle_search_on_a_mid_sized_ring() {
    let mut b = RingBuilder::new(18, 3.0, 1).expect("builder");
    for z in 1..=4 {
        for s in 1..=6 {
            for d in 0..8 {
                let w = if (s + d) % 3 == 0 { 6000.0 } else { 4000.0 };
                b.add_device(dev(1, z, s, d, w)).expect("add");
            }
        }
    }
    timed("mid-sized initial", &mut b, 1);
    for d in 0..8 {
        b.add_device(dev(1, 2, 7, d, 5000.0)).expect("add");
    }
    b.set_weight(3, 2500.0).expect("weight");
    let gone: Vec<u32> = b
        .devices()
        .filter(|d| d.zone == 4 && d.ip.ends_with(".6"))
        .map(|d| d.id)
        .collect();
    for id in gone {
        b.remove_device(id).expect("remove");
    }
    b.pretend_min_part_hours_passed();
    timed(
        "mid-sized: server added, server removed, reweight",
        &mut b,
        2,
    );
}
