//! Property tests of the ring builder (issue #3): random topologies, weights and device
//! changes must give a valid, dispersed, balanced ring with minimal movement, respecting
//! `min_part_hours`, and the same seed must give the same ring.
//!
//! Case counts are modest so that the suite stays well under a minute in debug builds.
//! Figures (worst balance error, worst movement ratio) are printed with `--nocapture`.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

use cairn_ring::builder::{RebalanceOptions, RingBuilder, NONE_DEV};
use cairn_ring::types::Device;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// A device in a generated topology: region, zone, server, weight.
type Spec = (u32, u32, u32, u32);

/// A runner with `cases` cases and no failure-persistence file (these tests are not
/// `proptest!` macros, so there is no source file to persist next to).
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

fn device(i: usize, (region, zone, server, weight): Spec) -> Device {
    let ip = format!("10.{region}.{zone}.{server}");
    Device {
        id: 0,
        region,
        zone,
        ip: ip.clone(),
        port: 6200,
        replication_ip: ip,
        replication_port: 6200,
        device: format!("sd{i}"),
        weight: f64::from(weight),
        meta: String::new(),
    }
}

fn build(part_power: i64, replicas: f64, hours: u8, specs: &[Spec]) -> RingBuilder {
    let mut b = RingBuilder::new(part_power, replicas, hours).expect("valid parameters");
    for (i, &s) in specs.iter().enumerate() {
        b.add_device(device(i, s)).expect("distinct devices");
    }
    b
}

fn opts(seed: u64, now: u64) -> RebalanceOptions {
    RebalanceOptions {
        seed: Some(seed),
        now: Some(now),
    }
}

/// Irregular topologies: 3–24 devices scattered over ≤ 2 regions, ≤ 3 zones, ≤ 3 servers.
fn topology() -> impl Strategy<Value = Vec<Spec>> {
    prop::collection::vec((1..=2u32, 1..=3u32, 1..=3u32, 50..=150u32), 3..24)
}

fn replicas() -> impl Strategy<Value = f64> {
    prop::sample::select(vec![1.0, 2.0, 3.0, 3.0, 2.5])
}

/// No partition holds a device twice; every slot is assigned to an existing device.
fn check_assignment(b: &RingBuilder) -> Result<(), TestCaseError> {
    b.validate()
        .map_err(|e| TestCaseError::fail(format!("validate: {e}")))?;
    for p in 0..b.parts() {
        let devs: Vec<u16> = b.part_devs(p).collect();
        let distinct: BTreeSet<u16> = devs.iter().copied().collect();
        prop_assert_eq!(distinct.len(), devs.len(), "partition {} has {:?}", p, devs);
        prop_assert!(!devs.contains(&NONE_DEV));
    }
    Ok(())
}

/// Weight-proportional share of each device id, or `None` when some device would need more
/// than one replica of every partition (the topology does not allow exact balance).
fn ideal_shares(b: &RingBuilder) -> Option<Vec<f64>> {
    let total_weight: f64 = b.devices().map(|d| d.weight).sum();
    let total = b.replica2part2dev().iter().map(Vec::len).sum::<usize>() as f64;
    let mut ideal = vec![0.0; b.devs().len()];
    for d in b.devices() {
        ideal[d.id as usize] = total * d.weight / total_weight;
        if ideal[d.id as usize] > b.parts() as f64 {
            return None;
        }
    }
    Some(ideal)
}

fn weighted_count(specs: &[Spec]) -> usize {
    specs.iter().filter(|s| s.3 > 0).count()
}

#[test]
fn random_topologies_give_valid_dispersed_rings() {
    let mut runner = runner(160);
    runner
        .run(
            &(topology(), replicas(), 4..=8i64, any::<u64>()),
            |(specs, replicas, part_power, seed)| {
                prop_assume!(weighted_count(&specs) as f64 >= replicas);
                // Unlimited overload: the plan is the most dispersed placement.
                let mut b = build(part_power, replicas, 0, &specs);
                b.set_overload(100.0).expect("valid overload");
                b.rebalance(&opts(seed, 0))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                check_assignment(&b)?;
                let report = b.dispersion_report();
                prop_assert_eq!(
                    report.dispersion,
                    0.0,
                    "undispersed: {:?}",
                    report.parts.first()
                );
                Ok(())
            },
        )
        .expect("property holds");
}

/// In a regular grid with equal weights, each partition uses as many distinct regions,
/// zones, servers and devices as it has replicas (or as exist): an independent check of
/// "as dispersed as the topology allows".
#[test]
fn regular_grids_use_distinct_failure_domains() {
    let mut runner = runner(96);
    runner
        .run(
            &(
                1..=3u32,
                1..=3u32,
                1..=3u32,
                1..=2u32,
                1..=4u32,
                any::<u64>(),
            ),
            |(regions, zones, servers, disks, replicas, seed)| {
                let mut specs = Vec::new();
                for r in 1..=regions {
                    for z in 1..=zones {
                        for s in 1..=servers {
                            for _ in 0..disks {
                                specs.push((r, z, s, 100));
                            }
                        }
                    }
                }
                let replicas = f64::from(replicas);
                prop_assume!(specs.len() as f64 >= replicas);
                let mut b = build(7, replicas, 0, &specs);
                b.rebalance(&opts(seed, 0))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                check_assignment(&b)?;
                let r = replicas as usize;
                let n_regions = regions as usize;
                let n_zones = n_regions * zones as usize;
                let n_servers = n_zones * servers as usize;
                for p in 0..b.parts() {
                    let devs: Vec<&Device> = b
                        .part_devs(p)
                        .filter_map(|d| b.device(u32::from(d)))
                        .collect();
                    let regions: BTreeSet<u32> = devs.iter().map(|d| d.region).collect();
                    let zones: BTreeSet<(u32, u32)> =
                        devs.iter().map(|d| (d.region, d.zone)).collect();
                    let ips: BTreeSet<&str> = devs.iter().map(|d| d.ip.as_str()).collect();
                    prop_assert_eq!(regions.len(), r.min(n_regions));
                    prop_assert_eq!(zones.len(), r.min(n_zones));
                    prop_assert_eq!(ips.len(), r.min(n_servers));
                }
                prop_assert_eq!(b.dispersion(), 0.0);
                Ok(())
            },
        )
        .expect("property holds");
}

/// With overload 0 every device's share is within 1 % of its weight share when the
/// topology allows it (no device needing more than one replica of every partition, and
/// ≥ 100 part-replicas per device so that 1 % is at least one part-replica).
#[test]
fn shares_follow_weights_within_one_percent() {
    let mut runner = runner(96);
    let worst = Cell::new(0.0f64);
    runner
        .run(
            &(topology(), replicas(), any::<u64>()),
            |(specs, replicas, seed)| {
                prop_assume!(weighted_count(&specs) as f64 >= replicas);
                let mut b = build(12, replicas, 0, &specs);
                b.rebalance(&opts(seed, 0))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                check_assignment(&b)?;
                let Some(ideal) = ideal_shares(&b) else {
                    return Ok(());
                };
                let held = b.device_parts();
                for d in b.devices() {
                    let want = ideal[d.id as usize];
                    prop_assume!(want >= 100.0);
                    let err = (held[d.id as usize] as f64 - want).abs() / want;
                    worst.set(worst.get().max(err));
                    prop_assert!(
                        err <= 0.01,
                        "device {} holds {} for a share of {want:.1} ({:.2}%)",
                        d.id,
                        held[d.id as usize],
                        err * 100.0
                    );
                }
                Ok(())
            },
        )
        .expect("property holds");
    eprintln!("worst device share error: {:.3}%", worst.get() * 100.0);
}

/// A random change to a ring: add devices, remove some, reweight some.
#[derive(Debug, Clone)]
struct Change {
    add: Vec<Spec>,
    remove: Vec<prop::sample::Index>,
    reweight: Vec<(prop::sample::Index, u32)>,
}

fn change() -> impl Strategy<Value = Change> {
    (
        prop::collection::vec((1..=2u32, 1..=3u32, 1..=4u32, 50..=150u32), 0..4),
        prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        prop::collection::vec((any::<prop::sample::Index>(), 50..=150u32), 0..3),
    )
        .prop_map(|(add, remove, reweight)| Change {
            add,
            remove,
            reweight,
        })
}

/// Apply `change`; returns false if it would leave too few devices.
fn apply(b: &mut RingBuilder, change: &Change) -> bool {
    let start = b.devs().len();
    for (i, &s) in change.add.iter().enumerate() {
        b.add_device(device(1000 + start + i, s))
            .expect("distinct devices");
    }
    for (idx, w) in &change.reweight {
        let ids: Vec<u32> = b.devices().map(|d| d.id).collect();
        let id = ids[idx.index(ids.len())];
        if !b.is_pending_removal(id) {
            b.set_weight(id, f64::from(*w)).expect("valid weight");
        }
    }
    for idx in &change.remove {
        let ids: Vec<u32> = b
            .devices()
            .filter(|d| !b.is_pending_removal(d.id))
            .map(|d| d.id)
            .collect();
        if (b.weighted_devices() as f64) <= b.replicas() + 1.0 {
            break;
        }
        let _ = b.remove_device(ids[idx.index(ids.len())]);
    }
    b.weighted_devices() as f64 >= b.replicas()
}

/// The most replicas of one partition each region, zone and server may hold under
/// overload 0: `ceil(replicas × weight share)` (Swift's replica plan), computed here
/// independently of the builder.
fn tier_maxima(b: &RingBuilder) -> BTreeMap<String, usize> {
    let total_weight: f64 = b.devices().map(|d| d.weight).sum();
    let mut weights: BTreeMap<String, f64> = BTreeMap::new();
    for d in b.devices() {
        for key in tier_keys(d) {
            *weights.entry(key).or_default() += d.weight;
        }
    }
    weights
        .into_iter()
        .map(|(k, w)| {
            (
                k,
                (b.replicas() * w / total_weight - 1e-9).ceil().max(0.0) as usize,
            )
        })
        .collect()
}

fn tier_keys(d: &Device) -> [String; 3] {
    [
        format!("r{}", d.region),
        format!("r{}z{}", d.region, d.zone),
        format!("r{}z{}-{}", d.region, d.zone, d.ip),
    ]
}

/// Partitions of the assignment `rows` that hold more replicas in some region, zone or
/// server than `maxima` allow: each needs at least one move whatever the weights say.
fn forced_by_dispersion(
    b: &RingBuilder,
    rows: &[Vec<u16>],
    devs: &[Option<Device>],
    maxima: &BTreeMap<String, usize>,
) -> usize {
    (0..b.parts())
        .filter(|&p| {
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for row in rows {
                if let Some(Some(d)) = row.get(p).and_then(|&d| devs.get(usize::from(d))) {
                    for key in tier_keys(d) {
                        *counts.entry(key).or_default() += 1;
                    }
                }
            }
            counts
                .iter()
                .any(|(k, &c)| c > maxima.get(k).copied().unwrap_or(0))
        })
        .count()
}

/// What one "change an existing ring" case measured.
struct MoveCase {
    moved: f64,
    /// Σ over devices of what they hold beyond their new weight share.
    minimum: f64,
    /// Partitions that must move a replica because the change lowered some domain's plan.
    forced: usize,
    slack: f64,
}

/// Build and rebalance, apply `change`, rebalance again and measure. `None` when the case
/// does not apply (too few devices, a device needing more than one replica of every
/// partition).
fn move_case(
    specs: &[Spec],
    change: &Change,
    seed: u64,
) -> Result<Option<MoveCase>, TestCaseError> {
    let replicas = 3.0;
    if weighted_count(specs) < 4 {
        return Ok(None);
    }
    let mut b = build(10, replicas, 0, specs);
    b.rebalance(&opts(seed, 0))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    if ideal_shares(&b).is_none() {
        return Ok(None);
    }
    let before_held = b.device_parts();
    let before_rows = b.replica2part2dev().to_vec();
    let before_devs = b.devs().to_vec();
    if !apply(&mut b, change) {
        return Ok(None);
    }
    // Shares after the change (removed devices: 0).
    let total_weight: f64 = b.devices().map(|d| d.weight).sum();
    let total = (b.parts() as f64) * replicas;
    let mut minimum = 0.0;
    for (id, &held) in before_held.iter().enumerate() {
        let share = match b.device(id as u32) {
            Some(d) => total * d.weight / total_weight,
            None => 0.0,
        };
        if share > b.parts() as f64 {
            return Ok(None);
        }
        minimum += (held as f64 - share).max(0.0);
    }
    let forced = forced_by_dispersion(&b, &before_rows, &before_devs, &tier_maxima(&b));
    let report = b
        .rebalance(&opts(seed ^ 1, 0))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    check_assignment(&b)?;
    Ok(Some(MoveCase {
        moved: report.changed_part_replicas as f64,
        minimum,
        forced,
        slack: b.devs().len() as f64 + 2.0,
    }))
}

/// Flat topologies (one zone, every device its own server), where nothing but "one
/// replica per device" limits placement: after adding, removing and reweighting devices,
/// moved part-replicas ≤ 1.05 × the theoretical minimum + slack.
///
/// At least 10 devices with weights 50–150 keep every device's share ≤ 3/4 of a replica
/// (at most 3 × 150 / (150 + 9 × 50)), so a quarter of the partitions can always take a
/// replica of any device. With shares close to a whole replica (say 6 devices for 3
/// replicas) nearly every partition already holds the device that needs parts, and
/// balance needs chains of two moves: see `moves_stay_bounded_in_any_topology`.
///
/// The minimum is Σ over devices of what they hold beyond their new weight share (it has
/// to leave). The slack of one part-replica per device plus 2 covers integer rounding: the
/// builder gives each device an integer share, which can differ from the real-valued share
/// by < 1 on either side.
#[test]
fn moves_are_close_to_minimal() {
    let mut runner = runner(160);
    let worst = Cell::new(0.0f64);
    let flat = prop::collection::vec(50..=150u32, 10..24).prop_map(|weights| {
        weights
            .into_iter()
            .enumerate()
            .map(|(i, w)| (1, 1, i as u32 + 1, w))
            .collect::<Vec<Spec>>()
    });
    let flat_change = change().prop_map(|mut c| {
        for (i, spec) in c.add.iter_mut().enumerate() {
            *spec = (1, 1, 100 + i as u32, spec.3);
        }
        c
    });
    runner
        .run(
            &(flat, flat_change, any::<u64>()),
            |(specs, change, seed)| {
                let Some(case) = move_case(&specs, &change, seed)? else {
                    return Ok(());
                };
                if case.minimum > 0.0 {
                    worst.set(worst.get().max(case.moved / case.minimum));
                }
                prop_assert!(
                    case.moved <= 1.05 * case.minimum + case.slack,
                    "moved {} part-replicas; minimum {:.1}",
                    case.moved,
                    case.minimum
                );
                Ok(())
            },
        )
        .expect("property holds");
    eprintln!("flat topologies: worst moved / minimum {:.3}", worst.get());
}

/// Arbitrary topologies. Dispersion limits can make the weight-only minimum unreachable:
/// when a change lowers a domain's replica plan (a zone's share drops from 1.1 to 0.97
/// replicas: no partition may keep 2 there) every partition over the new plan must move
/// even if weights alone would not ask for it; and a part that may not go to the device
/// with room (its partition already uses that server or zone) has to go through a device
/// that has none, which costs a second move. So here the bound is
/// `2 × (minimum + forced) + slack`: at most two moves per part-replica that has to move.
/// The figures printed show how close to the weight-only minimum rebalances stay.
#[test]
fn moves_stay_bounded_in_any_topology() {
    let mut runner = runner(160);
    let (worst, worst_unforced) = (Cell::new(0.0f64), Cell::new(0.0f64));
    runner
        .run(
            &(topology(), change(), any::<u64>()),
            |(specs, change, seed)| {
                let Some(case) = move_case(&specs, &change, seed)? else {
                    return Ok(());
                };
                if case.minimum > 0.0 {
                    let ratio = case.moved / case.minimum;
                    worst.set(worst.get().max(ratio));
                    if case.forced == 0 {
                        worst_unforced.set(worst_unforced.get().max(ratio));
                    }
                }
                let bound = 2.0 * (case.minimum + case.forced as f64) + case.slack;
                prop_assert!(
                    case.moved <= bound,
                    "moved {} part-replicas; minimum {:.1}, {} forced",
                    case.moved,
                    case.minimum,
                    case.forced
                );
                Ok(())
            },
        )
        .expect("property holds");
    eprintln!(
        "any topology: worst moved / minimum {:.3} ({:.3} where the plan did not shrink)",
        worst.get(),
        worst_unforced.get()
    );
}

#[test]
fn same_seed_gives_same_ring() {
    let mut runner = runner(64);
    runner
        .run(
            &(topology(), replicas(), change(), any::<u64>()),
            |(specs, replicas, change, seed)| {
                prop_assume!(weighted_count(&specs) as f64 >= replicas + 2.0);
                let run = || -> Result<RingBuilder, String> {
                    let mut b = build(7, replicas, 1, &specs);
                    b.rebalance(&opts(seed, 0)).map_err(|e| e.to_string())?;
                    if apply(&mut b, &change) {
                        b.rebalance(&opts(seed + 1, 7200))
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(b)
                };
                let (a, b) = (run(), run());
                prop_assert_eq!(a, b);
                Ok(())
            },
        )
        .expect("property holds");
}

/// Within `min_part_hours` only replicas on removed devices move; once it has passed, at
/// most one replica of any partition moves per rebalance (none besides a forced one).
#[test]
fn min_part_hours_is_respected() {
    let mut runner = runner(96);
    runner
        .run(
            &(topology(), change(), any::<u64>()),
            |(specs, change, seed)| {
                prop_assume!(weighted_count(&specs) >= 5);
                let hour = 3600;
                let mut b = build(8, 3.0, 2, &specs);
                b.rebalance(&opts(seed, 10 * hour))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                if !apply(&mut b, &change) {
                    return Ok(());
                }
                for (now, window_passed) in [(11 * hour, false), (13 * hour, true)] {
                    let before = b.replica2part2dev().to_vec();
                    let removing: Vec<u16> =
                        b.pending_removal().iter().map(|&id| id as u16).collect();
                    b.rebalance(&opts(seed + now, now))
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    check_assignment(&b)?;
                    let after = b.replica2part2dev();
                    for p in 0..b.parts() {
                        let (mut forced, mut free) = (0, 0);
                        for r in 0..before.len() {
                            if before[r][p] != after[r][p] {
                                if removing.contains(&before[r][p]) {
                                    forced += 1;
                                } else {
                                    free += 1;
                                }
                            }
                        }
                        let allowed = if window_passed && forced == 0 { 1 } else { 0 };
                        prop_assert!(
                            free <= allowed,
                            "partition {p}: {free} unforced moves ({forced} forced), \
                             window passed: {window_passed}"
                        );
                    }
                }
                Ok(())
            },
        )
        .expect("property holds");
}
