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

mod min_moves;

/// A device in a generated topology: region, zone, server, weight.
type Spec = (u32, u32, u32, u32);

/// A runner with `cases` cases (or `PROPTEST_CASES`, to explore more) and no
/// failure-persistence file (these tests are not `proptest!` macros, so there is no
/// source file to persist next to).
fn runner(cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
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

/// The exact fewest moves from `before` to a ring with the same device counts as `b`'s,
/// within the dispersion limits of [`tier_maxima`] (raised, per partition, to what `b`
/// itself holds where it breaks them, so that `b` is always one of the candidates), and
/// keeping the builder's one rule about *which* replicas may move: a partition that lost
/// a replica with a removed device keeps its other replicas in that rebalance.
fn exact_minimum(b: &RingBuilder, before: &[Vec<u16>]) -> Result<u64, TestCaseError> {
    let maxima = tier_maxima(b);
    let held = b.device_parts();
    let targets: Vec<Option<min_moves::Target>> = b
        .devs()
        .iter()
        .map(|d| {
            d.as_ref().map(|d| min_moves::Target {
                domains: tier_keys(d),
                count: held[d.id as usize],
            })
        })
        .collect();
    let after_counts: Vec<BTreeMap<String, i64>> = (0..b.parts())
        .map(|p| {
            let mut counts = BTreeMap::new();
            for d in b.part_devs(p).filter_map(|d| b.device(u32::from(d))) {
                for key in tier_keys(d) {
                    *counts.entry(key).or_insert(0) += 1;
                }
            }
            counts
        })
        .collect();
    let limit = |p: usize, key: &str| {
        let planned = maxima.get(key).copied().unwrap_or(0) as i64;
        planned.max(after_counts[p].get(key).copied().unwrap_or(0))
    };
    let slots: Vec<usize> = (0..b.parts()).map(|p| b.replicas_of(p)).collect();
    let pinned: Vec<Vec<u16>> = (0..b.parts())
        .map(|p| {
            let held: Vec<u16> = before
                .iter()
                .filter_map(|row| row.get(p).copied())
                .collect();
            let exists = |d: &u16| b.device(u32::from(*d)).is_some();
            if held.iter().all(exists) {
                Vec::new()
            } else {
                held.into_iter().filter(exists).collect()
            }
        })
        .collect();
    min_moves::min_moves(before, &slots, &targets, &limit, &pinned)
        .ok_or_else(|| TestCaseError::fail("the builder's own ring is not a feasible flow"))
}

/// What one "change an existing ring" case measured.
struct MoveCase {
    /// Part-replicas the rebalance changed.
    moved: u64,
    /// The exact minimum for reaching the builder's balance ([`exact_minimum`]).
    exact: u64,
    /// Σ over devices of what they hold beyond their new weight share: what weights
    /// alone would force, ignoring dispersion and "one replica per device" (a lower
    /// bound that is often out of reach, reported for comparison).
    weight_only: f64,
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
    if !apply(&mut b, change) {
        return Ok(None);
    }
    let total_weight: f64 = b.devices().map(|d| d.weight).sum();
    let total = (b.parts() as f64) * replicas;
    let mut weight_only = 0.0;
    for (id, &held) in before_held.iter().enumerate() {
        let share = match b.device(id as u32) {
            Some(d) => total * d.weight / total_weight,
            None => 0.0,
        };
        if share > b.parts() as f64 {
            return Ok(None);
        }
        weight_only += (held as f64 - share).max(0.0);
    }
    let report = b
        .rebalance(&opts(seed ^ 1, 0))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    check_assignment(&b)?;
    let exact = exact_minimum(&b, &before_rows)?;
    let moved = report.changed_part_replicas;
    prop_assert!(
        exact <= moved,
        "the oracle ({exact}) found more moves than the builder made ({moved})"
    );
    Ok(Some(MoveCase {
        moved,
        exact,
        weight_only,
    }))
}

/// The bound of issue #3: moved part-replicas ≤ 1.05 × the theoretical minimum (plus 2
/// for cases where the minimum is tiny).
fn check_close_to_minimal(case: &MoveCase) -> Result<(), TestCaseError> {
    prop_assert!(
        case.moved as f64 <= 1.05 * case.exact as f64 + 2.0,
        "moved {} part-replicas; the exact minimum is {}",
        case.moved,
        case.exact
    );
    Ok(())
}

/// Worst ratios seen by a property test, printed at its end (`--nocapture`).
#[derive(Default)]
struct Worst {
    exact: Cell<f64>,
    weight_only: Cell<f64>,
}

impl Worst {
    fn record(&self, case: &MoveCase) {
        if case.exact > 0 {
            let ratio = case.moved as f64 / case.exact as f64;
            self.exact.set(self.exact.get().max(ratio));
        }
        if case.weight_only > 0.0 {
            let ratio = case.moved as f64 / case.weight_only;
            self.weight_only.set(self.weight_only.get().max(ratio));
        }
    }

    fn print(&self, label: &str) {
        eprintln!(
            "{label}: worst moved / exact minimum {:.3}, moved / weight-only bound {:.3}",
            self.exact.get(),
            self.weight_only.get()
        );
    }
}

fn moves_property(
    specs: impl Strategy<Value = Vec<Spec>>,
    change: impl Strategy<Value = Change>,
    label: &str,
) {
    let worst = Worst::default();
    runner(160)
        .run(&(specs, change, any::<u64>()), |(specs, change, seed)| {
            let Some(case) = move_case(&specs, &change, seed)? else {
                return Ok(());
            };
            worst.record(&case);
            check_close_to_minimal(&case)
        })
        .expect("property holds");
    worst.print(label);
}

/// Flat topologies (one zone, every device its own server): after adding, removing and
/// reweighting devices, moved part-replicas ≤ 1.05 × the exact minimum ([`min_moves`]).
///
/// The weight-only bound is not reachable even here: a device that must gain parts
/// cannot take a replica of a partition it already holds, so when a removed device's
/// partitions often include it, their replicas go elsewhere and a second move has to
/// feed it. The exact minimum counts that.
#[test]
fn moves_are_close_to_minimal() {
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
    moves_property(flat, flat_change, "flat topologies");
}

/// Arbitrary topologies (regions, zones and servers of any size): the same bound against
/// the exact minimum, which also counts what dispersion limits force (a change that lowers
/// a zone's share from 1.1 to 0.97 replicas must move the second replica of every
/// partition holding two there).
#[test]
fn moves_are_close_to_minimal_in_any_topology() {
    moves_property(topology(), change(), "any topology");
}

/// Regression: a flat ring where the weight-only bound (281) is out of reach; the
/// builder once moved 329 part-replicas here, and now moves the exact minimum.
#[test]
fn removal_next_to_a_device_gaining_weight_moves_the_minimum() {
    let mut specs: Vec<Spec> = vec![(1, 1, 1, 55), (1, 1, 2, 92)];
    specs.extend((0..8).map(|i| (1, 1, 3 + i, 50)));
    assert_change_moves_the_minimum(&specs, 1_499_260_572_956_516, |b| {
        b.set_weight(0, 98.0).expect("weight");
        b.remove_device(9).expect("remove");
    });
}

/// Build `specs` and rebalance with `seed`, apply `change`, rebalance again: the moved
/// part-replicas must equal the exact minimum.
fn assert_change_moves_the_minimum(
    specs: &[Spec],
    seed: u64,
    change: impl FnOnce(&mut RingBuilder),
) {
    let mut b = build(10, 3.0, 0, specs);
    b.rebalance(&opts(seed, 0)).expect("rebalance");
    let before = b.replica2part2dev().to_vec();
    change(&mut b);
    let report = b.rebalance(&opts(seed ^ 1, 0)).expect("rebalance");
    let exact = exact_minimum(&b, &before).expect("oracle");
    assert_eq!(report.changed_part_replicas, exact);
}

/// Regression: two regions, devices added, removed and reweighted at once. Greedy
/// placement moved 12.5 % more than the minimum here before the builder learnt to take
/// back needless moves (swaps inside one partition included).
#[test]
fn mixed_change_across_regions_moves_the_minimum() {
    let specs: Vec<Spec> = vec![
        (1, 3, 2, 114),
        (2, 1, 2, 53),
        (2, 2, 1, 131),
        (1, 2, 2, 88),
        (2, 2, 3, 68),
        (2, 2, 2, 54),
        (2, 3, 3, 62),
        (2, 3, 1, 119),
        (1, 2, 3, 74),
        (1, 3, 2, 70),
        (1, 2, 3, 145),
        (1, 2, 3, 54),
        (2, 2, 3, 141),
        (1, 1, 2, 78),
    ];
    assert_change_moves_the_minimum(&specs, 11_890_332_778_530_163_107, |b| {
        for (i, spec) in [(2, 3, 4, 124), (2, 3, 2, 89), (2, 1, 4, 132)]
            .into_iter()
            .enumerate()
        {
            b.add_device(device(100 + i, spec)).expect("add");
        }
        b.set_weight(13, 60.0).expect("weight");
        b.set_weight(10, 55.0).expect("weight");
        b.remove_device(15).expect("remove");
        b.remove_device(12).expect("remove");
    });
}

/// The oracle itself, against brute force on tiny rings: every assignment of 2 replicas
/// of 3 partitions to 5 devices in 2 zones, under random zone limits, device counts and
/// pins.
#[test]
fn oracle_matches_brute_force() {
    let case = (
        prop::collection::vec(prop::collection::vec(0..5u16, 2), 3),
        // Six part-replicas dealt to the five devices.
        prop::collection::vec(0..5usize, 6).prop_map(|units| {
            let mut counts = vec![0u64; 5];
            for u in units {
                counts[u] += 1;
            }
            counts
        }),
        1..=2i64,
        prop::collection::vec(any::<bool>(), 3),
    );
    runner(256)
        .run(&case, |(before, counts, zone_limit, pin)| {
            let before: Vec<Vec<u16>> = (0..2)
                .map(|r| before.iter().map(|p| p[r]).collect())
                .collect();
            let targets: Vec<Option<min_moves::Target>> = (0..5u16)
                .map(|d| {
                    Some(min_moves::Target {
                        domains: [
                            "r1".into(),
                            format!("r1z{}", d % 2),
                            format!("r1z{}-s{d}", d % 2),
                        ],
                        count: counts[usize::from(d)],
                    })
                })
                .collect();
            let limit = |_: usize, key: &str| {
                if key.contains('-') {
                    1
                } else if key.contains('z') {
                    zone_limit
                } else {
                    2
                }
            };
            // Pin the first replica of chosen partitions (when the two differ).
            let pinned: Vec<Vec<u16>> = (0..3)
                .map(|p| {
                    if pin[p] && before[0][p] != before[1][p] {
                        vec![before[0][p]]
                    } else {
                        Vec::new()
                    }
                })
                .collect();
            let oracle = min_moves::min_moves(&before, &[2, 2, 2], &targets, &limit, &pinned);
            let brute = brute_force_moves(&before, &counts, zone_limit, &pinned);
            prop_assert_eq!(oracle, brute);
            Ok(())
        })
        .expect("oracle is exact");
}

/// Every way to give each of 3 partitions 2 distinct devices out of 5 (zone of a device:
/// `d % 2`); the fewest new placements among those meeting counts, limits and pins.
fn brute_force_moves(
    before: &[Vec<u16>],
    counts: &[u64],
    zone_limit: i64,
    pinned: &[Vec<u16>],
) -> Option<u64> {
    let pairs: Vec<[u16; 2]> = (0..5u16)
        .flat_map(|a| ((a + 1)..5).map(move |b| [a, b]))
        .collect();
    let mut best: Option<u64> = None;
    for &a in &pairs {
        for &b in &pairs {
            for &c in &pairs {
                let parts = [a, b, c];
                let mut held = [0u64; 5];
                let mut cost = 0;
                let mut ok = true;
                for (p, devs) in parts.iter().enumerate() {
                    let same_zone = devs[0] % 2 == devs[1] % 2;
                    ok &= !(same_zone && zone_limit < 2);
                    ok &= pinned[p].iter().all(|d| devs.contains(d));
                    for &d in devs {
                        held[usize::from(d)] += 1;
                        cost += u64::from(before[0][p] != d && before[1][p] != d);
                    }
                }
                if ok && held.as_slice() == counts {
                    best = Some(best.map_or(cost, |b: u64| b.min(cost)));
                }
            }
        }
    }
    best
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
