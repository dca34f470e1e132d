//! Rebalance: (re)assign part-replicas to devices (`PROTOCOLS.md`, "Rebalance algorithm").
//!
//! # Steps
//!
//! 1. Refuse when fewer devices have weight than there are replicas. Age `last_part_moves`
//!    by the whole hours since `last_part_moves_epoch`.
//! 2. Resize the replica rows to the replica count (new slots start unassigned).
//! 3. Build the failure-domain tree and the plan (`builder/plan.rs`): per node a
//!    replica plan `{min, max}` for one partition, per device `parts_wanted` = its integer
//!    share minus what it holds (zero-weight devices want to shed everything).
//! 4. **Forced gather**: unassigned slots, replicas on devices marked for removal (the
//!    operator said the data there is going away: `min_part_hours` does not apply) and a
//!    device's second replica of one partition.
//! 5. **Dispersion gather**: for every partition that may move, one replica sitting in a
//!    node over its plan `max` (the one on the most overweight device).
//! 6. **Place** the gathered replicas, partitions in random order: walk from the root; at
//!    each level the candidates are the children below their plan `max` for this partition
//!    (so never two replicas on one device) and, if some child is below its `min`, only
//!    those (so a domain keeps its minimum share of every partition). Among candidates
//!    with room the walk picks one at random in proportion to `parts_available` (Σ positive
//!    `parts_wanted` below it); without room, the least overweight. It ends on a device
//!    that still wants parts if one is reachable (depth-first with backtracking), else on
//!    the best device the plan allows.
//! 7. **Balance rounds** (up to [`MAX_ROUNDS`]): scan partitions from a random start; for
//!    each, try its movable replicas on overweight devices, most overweight first, and move
//!    the first for which a walk finds an underweight device. Every such move goes from a
//!    device with too much to one with too little, so their number is the minimum the new
//!    weights require. When dispersion rules block all direct moves while a device is
//!    still clearly (> 0.5 %) over, a *diffusing* round also lets a replica move to a
//!    device at least two parts less overweight, whose partitions may reach the
//!    underweight devices; an original (not fresh) slot only diffuses off a device more
//!    than 1 % over its share, as such moves cost data movement.
//! 8. **Tidy** (`rebalance/tidy.rs`): take back moves that turned out needless, since
//!    greedy placement and balance rounds often reach a device through a detour (a
//!    replica that could not go where parts were wanted went elsewhere, and a second
//!    move fed the wanting device). Reverts, swap-backs and, on rings of up to 256
//!    devices, negative cycles of moves between devices are undone without changing any
//!    device's count or breaking any limit. Then a device that only changed rows inside
//!    a partition goes back to its old row. Checked against the exact minimum (a
//!    min-cost flow in the property tests): equal in all but a handful of thousands of
//!    random changes.
//! 9. Count changed slots, reset `last_part_moves` of changed partitions, drop the devices
//!    that were marked for removal, bump `version`, record the seed and dispersion.
//!
//! # With a placement rule (`super::placement`)
//!
//! Step 1 also refuses a replica count or topology that cannot satisfy the rule. After
//! step 4 each partition with surviving replicas gets its anchor (the capable region, then
//! zone, holding most of them); partitions without any get one when placed (at random in
//! proportion to `parts_available`). From then on `Engine::limits` gives the rule's
//! `{min, max}` instead of the plan's for regions, zones and servers (anchor region
//! exactly `1 + y + z` when that exceeds 1, anchor zone exactly `1 + z` when that exceeds
//! 1, any other domain at most 1), so steps 5-7 use the same walk: step 5 also lifts a
//! replica sitting outside a short anchor domain. The last-resort `any_home` is disabled
//! (it would ignore the rule). Diffusing rounds may also move replicas between devices
//! that are not overweight (`Engine::equalize_margin`), since the plan's shares ignore
//! the rule. The rule can only be repaired by one replica per partition per rebalance,
//! like any other change.
//!
//! # Why one replica per partition per `min_part_hours`
//!
//! A partition "may move" when its `last_part_moves` ≥ `min_part_hours` and none of its
//! slots has changed in this rebalance yet. Lifting a slot that has *already* changed in
//! this rebalance (a "fresh" slot, e.g. every slot of a brand-new ring) is always allowed:
//! its data has not been copied anywhere yet, so re-choosing its destination moves nothing
//! more. Hence, compared with the ring before the rebalance, each partition has at most one
//! changed replica, except for forced changes (removed devices, added replicas).
//!
//! # Cost
//!
//! Every step scans partitions once (O(parts × replicas)), balance rounds at most
//! [`MAX_ROUNDS`] times and usually once or twice; each placement walks 4 levels over the
//! children of one node (per-node `parts_available` and `best_pw` are kept up to date on
//! every move, so no walk sums anything), so a 2^18-partition, 3-replica, 1,200-device
//! rebalance is a few million node visits. No step scans all devices per partition.
//! Tidying is linear in the changed slots, except the cycle search, which is capped by
//! a fixed work budget (it is cubic in the devices).

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::placement::PlacementRule;
use super::plan::{Tree, DEVICE_LEVEL};
use super::{row_lengths, unix_now, BuilderError, RingBuilder, SeedRecord, NONE_DEV};
use crate::types::Device;

mod tidy;

/// Balance rounds per rebalance (each is one scan over the partitions).
pub const MAX_ROUNDS: usize = 64;
/// Progress is reported every this many partitions.
const PROGRESS_EVERY: usize = 4096;
/// No anchor node chosen yet.
const NO_NODE: u32 = u32::MAX;

/// Knobs of one rebalance.
#[derive(Debug, Clone, Default)]
pub struct RebalanceOptions {
    /// Seed of the random choices; `None` picks (and records) a random one.
    pub seed: Option<u64>,
    /// "Now" in Unix seconds for aging `last_part_moves`; `None` = the system clock.
    pub now: Option<u64>,
}

/// What a rebalance did.
#[derive(Debug, Clone, PartialEq)]
pub struct RebalanceReport {
    pub seed: u64,
    /// Part-replicas whose device changed (or that were newly assigned).
    pub changed_part_replicas: u64,
    /// Partitions with at least one changed replica.
    pub changed_partitions: u64,
    /// Ring balance after the rebalance (percent, see [`RingBuilder::balance`]).
    pub balance: f64,
    /// Dispersion after the rebalance (percent).
    pub dispersion: f64,
    /// Devices dropped by this rebalance (they had been marked for removal).
    pub removed_devices: Vec<Device>,
}

/// Replica counts of one partition per tree node (a handful of entries, linear search).
#[derive(Debug, Default)]
struct Counts {
    entries: Vec<(u32, u16)>,
    /// The partition counted (selects its placement anchor).
    part: usize,
}

impl Counts {
    fn get(&self, node: u32) -> u16 {
        self.entries
            .iter()
            .find(|(n, _)| *n == node)
            .map_or(0, |(_, c)| *c)
    }

    fn add(&mut self, path: &[u32; 4]) {
        for &node in path {
            match self.entries.iter_mut().find(|(n, _)| *n == node) {
                Some((_, c)) => *c += 1,
                None => self.entries.push((node, 1)),
            }
        }
    }
}

/// Working state of one rebalance.
struct Engine<'a> {
    tree: Tree,
    min: Vec<u16>,
    max: Vec<u16>,
    /// Σ max(parts_wanted, 0) of the devices below each node.
    available: Vec<i64>,
    /// Largest `parts_wanted` of a placeable device below each node (`i64::MIN`: none);
    /// prunes walks that look for a device wanting at least some amount.
    best_pw: Vec<i64>,
    /// Each device's integer share from the plan (`parts_wanted` + held at the start).
    share: Vec<i64>,
    /// Random per-rebalance tie-break.
    rank: Vec<u32>,
    /// `parts_wanted` by device id.
    pw: Vec<i64>,
    /// Weight > 0 and not marked for removal.
    placeable: Vec<bool>,
    /// Marked for removal: every replica leaves now.
    removing: Vec<bool>,
    /// Σ max(−parts_wanted, 0): part-replicas still sitting on overweight devices.
    excess: i64,
    rows: &'a mut [Vec<u16>],
    original: Vec<Vec<u16>>,
    /// Some slot of the partition differs from `original`.
    moved: Vec<bool>,
    hours: &'a [u8],
    min_part_hours: u8,
    rng: ChaCha8Rng,
    progress: &'a mut dyn FnMut(&str, u64, u64),
    /// The placement rule, which replaces the plan's limits above the devices.
    rule: Option<PlacementRule>,
    /// Per partition with a rule: its anchor (first region node, first zone node).
    anchor: Vec<(u32, u32)>,
    /// Per node with a rule: a region or zone that may be an anchor.
    capable: Vec<bool>,
}

impl RingBuilder {
    /// Rebalance (see the module docs). On error the builder is unchanged.
    pub fn rebalance(&mut self, opts: &RebalanceOptions) -> Result<RebalanceReport, BuilderError> {
        self.rebalance_with_progress(opts, &mut |_, _, _| {})
    }

    /// [`rebalance`](Self::rebalance), calling `progress(stage, done, total)` now and then.
    pub fn rebalance_with_progress(
        &mut self,
        opts: &RebalanceOptions,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<RebalanceReport, BuilderError> {
        self.check_consistency()?;
        let weighted = self.weighted_devices();
        if (weighted as f64) < self.replicas {
            return Err(BuilderError::NotEnoughDevices {
                weighted,
                replicas: self.replicas,
            });
        }
        if let Some(problem) = self.placement_problem() {
            return Err(BuilderError::Placement(problem));
        }
        let seed = opts.seed.unwrap_or_else(rand::random);
        let now = opts.now.unwrap_or_else(unix_now);
        // Work on a copy so that an error leaves `self` untouched.
        let mut work = self.clone();
        let report = work.rebalance_inner(seed, now, progress)?;
        *self = work;
        Ok(report)
    }

    fn rebalance_inner(
        &mut self,
        seed: u64,
        now: u64,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<RebalanceReport, BuilderError> {
        let parts = self.parts();
        self.age_part_moves(now);
        let original = self.replica2part2dev.clone();
        self.resize_rows();
        let mut tree = Tree::build(&self.devs);
        tree.plan(self.replicas, self.overload, parts);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let rank: Vec<u32> = (0..tree.nodes.len()).map(|_| rng.gen()).collect();
        let removing = self.removing_flags();
        let placeable: Vec<bool> = self
            .devs
            .iter()
            .zip(&removing)
            .map(|(d, &gone)| !gone && d.as_ref().is_some_and(|d| d.weight > 0.0))
            .collect();
        let held = count_held(&self.replica2part2dev, self.devs.len());
        let min_part_hours = self.min_part_hours;
        let rule = self.placement;
        let capable = match rule {
            Some(rule) => capable_nodes(&tree, rule),
            None => Vec::new(),
        };
        let anchor = if rule.is_some() {
            vec![(NO_NODE, NO_NODE); parts]
        } else {
            Vec::new()
        };
        let mut engine = Engine {
            min: tree.nodes.iter().map(|n| n.min).collect(),
            max: tree.nodes.iter().map(|n| n.max).collect(),
            available: vec![0; tree.nodes.len()],
            best_pw: vec![i64::MIN; tree.nodes.len()],
            share: vec![0; self.devs.len()],
            rank,
            pw: vec![0; self.devs.len()],
            placeable,
            removing,
            excess: 0,
            tree,
            rows: &mut self.replica2part2dev,
            original,
            moved: vec![false; parts],
            hours: &self.last_part_moves,
            min_part_hours,
            rng,
            progress,
            rule,
            anchor,
            capable,
        };
        engine.init_wants(&held);
        engine.run()?;
        let changed = engine.changed_slots();
        let moved_parts = engine.changed_partitions();
        drop(engine);
        for (p, moved) in moved_parts.iter().enumerate() {
            if *moved {
                self.last_part_moves[p] = 0;
            }
        }
        let removed_devices = self.drop_removed_devices();
        self.version += 1;
        self.seeds.push(SeedRecord {
            version: self.version,
            seed,
        });
        self.devs_changed = false;
        self.dispersion = self.dispersion_report().dispersion;
        Ok(RebalanceReport {
            seed,
            changed_part_replicas: changed,
            changed_partitions: moved_parts.iter().filter(|m| **m).count() as u64,
            balance: self.balance(),
            dispersion: self.dispersion,
            removed_devices,
        })
    }

    /// For each device id: marked for removal.
    fn removing_flags(&self) -> Vec<bool> {
        let mut removing = vec![false; self.devs.len()];
        for &id in &self.pending_removal {
            if let Some(flag) = removing.get_mut(id as usize) {
                *flag = true;
            }
        }
        removing
    }

    /// Add the whole hours elapsed since the epoch to every counter (saturating), keeping
    /// the remainder so that frequent rebalances still age partitions.
    fn age_part_moves(&mut self, now: u64) {
        let parts = self.parts();
        if self.last_part_moves.len() != parts {
            // First rebalance: nothing has ever moved, so everything may.
            self.last_part_moves = vec![u8::MAX; parts];
            self.last_part_moves_epoch = now;
            return;
        }
        let hours = now.saturating_sub(self.last_part_moves_epoch) / 3600;
        if hours == 0 {
            return;
        }
        let add = u8::try_from(hours).unwrap_or(u8::MAX);
        for h in &mut self.last_part_moves {
            *h = h.saturating_add(add);
        }
        self.last_part_moves_epoch += hours * 3600;
    }

    /// Grow or shrink the replica rows to the current replica count.
    fn resize_rows(&mut self) {
        let lengths = row_lengths(self.replicas, self.parts());
        self.replica2part2dev.truncate(lengths.len());
        for (r, &len) in lengths.iter().enumerate() {
            match self.replica2part2dev.get_mut(r) {
                Some(row) => row.resize(len, NONE_DEV),
                None => self.replica2part2dev.push(vec![NONE_DEV; len]),
            }
        }
    }

    /// Turn devices marked for removal (now drained) into holes.
    fn drop_removed_devices(&mut self) -> Vec<Device> {
        let mut removed = Vec::new();
        for id in std::mem::take(&mut self.pending_removal) {
            if let Some(dev) = self.devs.get_mut(id as usize).and_then(Option::take) {
                removed.push(dev.clone());
                self.removed_devs.push(dev);
            }
        }
        // Trailing holes need no slot.
        while matches!(self.devs.last(), Some(None)) {
            self.devs.pop();
        }
        removed
    }
}

/// Regions and zones that may anchor a partition under `rule` (placement module docs,
/// "Feasibility"; devices with weight 0 do not count, as in `n_devs`).
fn capable_nodes(tree: &Tree, rule: PlacementRule) -> Vec<bool> {
    let nodes = &tree.nodes;
    let weighted_kids = |n: u32| -> Vec<u32> {
        nodes[n as usize]
            .children
            .iter()
            .copied()
            .filter(|&c| nodes[c as usize].n_devs > 0)
            .collect()
    };
    let zone_ok = |z: u32| rule.zone_capable(weighted_kids(z).len());
    (0..nodes.len() as u32)
        .map(|n| match nodes[n as usize].level {
            1 => {
                let zones = weighted_kids(n);
                zones.len() > usize::from(rule.zones) && zones.iter().any(|&z| zone_ok(z))
            }
            2 => zone_ok(n),
            _ => false,
        })
        .collect()
}

/// Part-replicas held by each device id.
pub(crate) fn count_held(rows: &[Vec<u16>], n_devs: usize) -> Vec<u64> {
    let mut held = vec![0u64; n_devs];
    for row in rows {
        for &d in row {
            if let Some(h) = held.get_mut(usize::from(d)) {
                *h += 1;
            }
        }
    }
    held
}

impl Engine<'_> {
    fn parts(&self) -> usize {
        self.moved.len()
    }

    fn path(&self, dev: u16) -> Option<[u32; 4]> {
        self.tree.dev_path.get(usize::from(dev)).copied().flatten()
    }

    /// `parts_wanted` and `available` from the plan and the current holdings.
    fn init_wants(&mut self, held: &[u64]) {
        for (_, node) in self.tree.device_nodes() {
            let Some(dev) = node.dev else { continue };
            let d = dev as usize;
            let have = held.get(d).copied().unwrap_or(0) as i64;
            let want = if self.placeable.get(d).copied().unwrap_or(false) {
                node.parts as i64
            } else {
                0
            };
            self.pw[d] = want - have;
            self.share[d] = want;
        }
        for d in 0..self.pw.len() {
            let pw = self.pw[d];
            if pw < 0 {
                self.excess -= pw;
            } else if pw > 0 {
                if let Some(path) = self.path(d as u16) {
                    for n in path {
                        self.available[n as usize] += pw;
                    }
                }
            }
        }
        // Children always have larger indices than their parent: fill bottom-up.
        for n in (0..self.tree.nodes.len()).rev() {
            self.best_pw[n] = self.node_best(n as u32);
        }
    }

    /// `best_pw` of a node from its children (or, for a device, its own `parts_wanted`).
    fn node_best(&self, n: u32) -> i64 {
        let node = &self.tree.nodes[n as usize];
        match node.dev {
            Some(dev) if self.placeable[dev as usize] => self.pw[dev as usize],
            Some(_) => i64::MIN,
            None => node
                .children
                .iter()
                .map(|&c| self.best_pw[c as usize])
                .max()
                .unwrap_or(i64::MIN),
        }
    }

    /// Change a device's `parts_wanted` by `delta`, keeping `excess`, `available` and
    /// `best_pw` in step.
    fn adjust(&mut self, dev: u16, delta: i64) {
        let d = usize::from(dev);
        let Some(&before) = self.pw.get(d) else {
            return;
        };
        let after = before + delta;
        self.pw[d] = after;
        self.excess += (-after).max(0) - (-before).max(0);
        let Some(path) = self.path(dev) else {
            return;
        };
        let gain = after.max(0) - before.max(0);
        for &n in path.iter().rev() {
            self.available[n as usize] += gain;
            self.best_pw[n as usize] = self.node_best(n);
        }
    }

    /// Device `dev` with `parts_wanted` `pw` holds more than 1 % (and 2 parts) beyond its
    /// share.
    fn far_over(&self, dev: u16, pw: i64) -> bool {
        let share = self.share.get(usize::from(dev)).copied().unwrap_or(0);
        -pw > (share / 100).max(1)
    }

    /// A device holds more than its share by a noticeable margin (0.5 %, at least 2).
    /// With a placement rule, also a device wanting that many more: the rule can leave
    /// no overweight device able to feed it (see [`Self::equalize_margin`]).
    fn clearly_unbalanced(&self) -> bool {
        let under = self.rule.is_some();
        self.pw.iter().zip(&self.share).any(|(&pw, &share)| {
            let margin = (share / 200).max(1);
            -pw > margin || (under && pw > margin)
        })
    }

    /// With a placement rule, a diffusing round may also move a replica off a device that
    /// is *not* overweight to one wanting at least this many more parts than it does. Why:
    /// the plan's shares ignore the rule, which may pin part-replicas to a domain (with
    /// `200` over three regions, each region holds exactly one replica of every partition
    /// whatever its weight); the devices of such a domain then all want parts that no
    /// overweight device may hand them, and only moves among themselves even out their
    /// shortfall. Each such move still lowers Σ parts_wanted² (the rounds terminate).
    /// `None` without a rule. Original slots need a 1 % (of the device's share) gap.
    fn equalize_margin(&self, r: usize, p: usize, dev: u16) -> Option<i64> {
        self.rule?;
        let share = self.share.get(usize::from(dev)).copied().unwrap_or(0);
        Some(if self.is_fresh(r, p) {
            2
        } else {
            2 + share / 100
        })
    }

    fn run(&mut self) -> Result<(), BuilderError> {
        let mut todo = self.gather_forced();
        if self.rule.is_some() {
            let mut counts = Counts::default();
            for p in 0..self.parts() {
                self.counts_for(p, &mut counts);
                if !counts.entries.is_empty() {
                    self.ensure_anchor(&counts);
                }
            }
        }
        self.gather_dispersion(&mut todo);
        self.place_all(todo)?;
        // Direct rounds until they stop helping; then, if still clearly unbalanced, a
        // diffusing round, and again.
        let mut diffuse = false;
        for _ in 0..MAX_ROUNDS {
            if self.excess == 0 {
                break;
            }
            let moves = self.balance_round(diffuse);
            if moves == 0 && (diffuse || !self.clearly_unbalanced()) {
                break;
            }
            diffuse = moves == 0;
        }
        // A first rebalance (or one that only fills new replica rows) has nothing to
        // take back.
        if self.original.iter().flatten().any(|&d| d != NONE_DEV) {
            self.tidy();
            self.align_rows();
        }
        if self.rows.iter().any(|row| row.contains(&NONE_DEV)) {
            return Err(BuilderError::Corrupt(
                "internal error: a part-replica could not be placed".into(),
            ));
        }
        Ok(())
    }

    fn original_at(&self, r: usize, p: usize) -> u16 {
        self.original
            .get(r)
            .and_then(|row| row.get(p))
            .copied()
            .unwrap_or(NONE_DEV)
    }

    /// The slot already changed in this rebalance: changing it again moves no more data.
    fn is_fresh(&self, r: usize, p: usize) -> bool {
        self.rows[r][p] != self.original_at(r, p)
    }

    fn may_move(&self, p: usize) -> bool {
        !self.moved[p] && self.hours.get(p).copied().unwrap_or(u8::MAX) >= self.min_part_hours
    }

    fn counts_for(&self, p: usize, counts: &mut Counts) {
        counts.entries.clear();
        counts.part = p;
        for row in self.rows.iter() {
            if let Some(&d) = row.get(p) {
                if let Some(path) = self.path(d) {
                    counts.add(&path);
                }
            }
        }
    }

    fn lift(&mut self, r: usize, p: usize) {
        let dev = self.rows[r][p];
        self.rows[r][p] = NONE_DEV;
        self.adjust(dev, 1);
    }

    fn put(&mut self, r: usize, p: usize, dev: u16) {
        self.rows[r][p] = dev;
        if dev != self.original_at(r, p) {
            self.moved[p] = true;
        }
        self.adjust(dev, -1);
    }

    /// `(min, max)` replicas of the counted partition node `n` may hold: the plan's, or
    /// with a placement rule the rule's (anchor region exactly `1 + y + z`, anchor zone
    /// exactly `1 + z`, any other region, zone, server or device at most 1).
    fn limits(&self, counts: &Counts, n: u32) -> (u16, u16) {
        let i = n as usize;
        let Some(rule) = self.rule else {
            return (self.min[i], self.max[i]);
        };
        let node = &self.tree.nodes[i];
        if node.level == 0 {
            return (self.min[i], self.max[i]);
        }
        if node.n_devs == 0 {
            return (0, 0);
        }
        let (region, zone) = self.anchor[counts.part];
        let exact = |k: u16| (k, k);
        // An anchor only binds when its domain must hold more than one replica: with
        // `y + z = 0` every region holds at most one, with `z = 0` every zone does, and
        // any of them may then be the "first".
        let (y, z) = (u16::from(rule.zones), u16::from(rule.servers));
        match node.level {
            1 if n == region && y + z > 0 => exact(1 + y + z),
            2 if n == zone && z > 0 => exact(1 + z),
            l if l <= DEVICE_LEVEL => (0, 1),
            _ => (0, 0),
        }
    }

    /// With a rule, a replica at `path` must make room for the anchor: the anchor region
    /// is short and the replica is outside it, or the anchor zone is short and the replica
    /// is in the anchor region but outside that zone.
    fn short_elsewhere(&self, counts: &Counts, path: &[u32; 4]) -> bool {
        if self.rule.is_none() {
            return false;
        }
        let (region, zone) = self.anchor[counts.part];
        let short = |n: u32| n != NO_NODE && counts.get(n) < self.limits(counts, n).0;
        (path[0] != region && short(region))
            || (path[0] == region && path[1] != zone && short(zone))
    }

    /// With a rule, give the counted partition an anchor if it has none: the capable
    /// region holding most of its replicas, then in it the capable zone holding most; ties
    /// and empty domains at random in proportion to `parts_available`.
    fn ensure_anchor(&mut self, counts: &Counts) {
        if self.rule.is_none() || self.anchor[counts.part].0 != NO_NODE {
            return;
        }
        let region = self.choose_capable(counts, 0);
        let zone = region.map_or(NO_NODE, |r| {
            self.choose_capable(counts, r).unwrap_or(NO_NODE)
        });
        self.anchor[counts.part] = (region.unwrap_or(NO_NODE), zone);
    }

    /// Among the capable children of `n`: most replicas of the counted partition, or when
    /// none holds any, random in proportion to `parts_available`.
    fn choose_capable(&mut self, counts: &Counts, n: u32) -> Option<u32> {
        let kids: Vec<u32> = self.tree.nodes[n as usize]
            .children
            .iter()
            .copied()
            .filter(|&c| self.capable[c as usize])
            .collect();
        let most = kids.iter().map(|&c| counts.get(c)).max()?;
        let best = |e: &Self, pool: &[u32]| {
            pool.iter()
                .copied()
                .max_by_key(|&c| (e.available[c as usize], e.rank[c as usize]))
        };
        if most > 0 {
            let pool: Vec<u32> = kids
                .into_iter()
                .filter(|&c| counts.get(c) == most)
                .collect();
            return best(self, &pool);
        }
        let total: i64 = kids
            .iter()
            .map(|&c| self.available[c as usize].max(0))
            .sum();
        if total <= 0 {
            return best(self, &kids);
        }
        let mut ticket = self.rng.gen_range(0..total);
        for &c in &kids {
            let a = self.available[c as usize].max(0);
            if ticket < a {
                return Some(c);
            }
            ticket -= a;
        }
        best(self, &kids)
    }

    /// Step 4: empty slots, removed devices, duplicate devices. Returns (part, row) pairs.
    fn gather_forced(&mut self) -> Vec<(u32, u8)> {
        let mut todo = Vec::new();
        let mut seen: Vec<u16> = Vec::new();
        for p in 0..self.parts() {
            seen.clear();
            for r in 0..self.rows.len() {
                let Some(&d) = self.rows[r].get(p) else {
                    continue;
                };
                let gone = d == NONE_DEV || self.path(d).is_none() || self.removing[usize::from(d)];
                if gone || seen.contains(&d) {
                    if d != NONE_DEV {
                        self.lift(r, p);
                    }
                    self.moved[p] = true;
                    todo.push((p as u32, r as u8));
                } else {
                    seen.push(d);
                }
            }
        }
        todo
    }

    /// Step 5: one replica of each movable partition that breaks a node's `max`.
    fn gather_dispersion(&mut self, todo: &mut Vec<(u32, u8)>) {
        let mut counts = Counts::default();
        for p in 0..self.parts() {
            if !self.may_move(p) {
                continue;
            }
            self.counts_for(p, &mut counts);
            let mut worst: Option<(i64, usize)> = None;
            for r in 0..self.rows.len() {
                let Some(&d) = self.rows[r].get(p) else {
                    continue;
                };
                let Some(path) = self.path(d) else { continue };
                let over = path
                    .iter()
                    .any(|&n| counts.get(n) > self.limits(&counts, n).1)
                    || self.short_elsewhere(&counts, &path);
                let pw = self.pw[usize::from(d)];
                if over && worst.is_none_or(|(w, _)| pw < w) {
                    worst = Some((pw, r));
                }
            }
            if let Some((_, r)) = worst {
                self.lift(r, p);
                self.moved[p] = true;
                todo.push((p as u32, r as u8));
            }
        }
    }

    /// Step 6: place gathered replicas, partitions in random order.
    fn place_all(&mut self, todo: Vec<(u32, u8)>) -> Result<(), BuilderError> {
        // Group consecutive entries of one partition (`todo` is in partition order).
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut start = 0;
        for i in 1..=todo.len() {
            if i == todo.len() || todo[i].0 != todo[start].0 {
                groups.push((start, i));
                start = i;
            }
        }
        groups.shuffle(&mut self.rng);
        let total = groups.len() as u64;
        let mut counts = Counts::default();
        for (done, &(a, b)) in groups.iter().enumerate() {
            if done % PROGRESS_EVERY == 0 {
                (self.progress)("placing", done as u64, total);
            }
            let p = todo[a].0 as usize;
            self.counts_for(p, &mut counts);
            self.ensure_anchor(&counts);
            for &(_, r) in &todo[a..b] {
                let dev = self
                    .find_home(&counts, 0, 1)
                    .or_else(|| self.find_home(&counts, 0, i64::MIN))
                    .or_else(|| self.any_home(p))
                    .ok_or_else(|| {
                        BuilderError::Corrupt(format!("no device can take partition {p}"))
                    })?;
                self.put(usize::from(r), p, dev);
                if let Some(path) = self.path(dev) {
                    counts.add(&path);
                }
            }
        }
        (self.progress)("placing", total, total);
        Ok(())
    }

    /// Order key of a candidate child: below its `min` first, then most room
    /// (`parts_available`), then the least overweight device below (`best_pw`: what
    /// matters once no device has room), then the random rank.
    fn key(&self, counts: &Counts, c: u32) -> (bool, i64, i64, u32) {
        let i = c as usize;
        (
            counts.get(c) < self.limits(counts, c).0,
            self.available[i],
            self.best_pw[i],
            self.rank[i],
        )
    }

    /// Walk down from `n` choosing children below their plan `max`, only through subtrees
    /// holding a device that wants at least `min_pw` parts, to such a device (backtracking
    /// when that device already holds the partition or sits in a node at its `max`).
    fn find_home(&mut self, counts: &Counts, n: u32, min_pw: i64) -> Option<u16> {
        let node = &self.tree.nodes[n as usize];
        if let Some(dev) = node.dev {
            let d = dev as usize;
            let ok = self.placeable[d] && self.pw[d] >= min_pw;
            return ok.then_some(dev as u16);
        }
        let below_min = self.any_below_min(counts, n);
        let first = self.pick(counts, n, min_pw, below_min)?;
        if let Some(dev) = self.find_home(counts, first, min_pw) {
            return Some(dev);
        }
        // Rare: backtrack through the others, best first.
        let mut rest: Vec<u32> = self.tree.nodes[n as usize]
            .children
            .iter()
            .copied()
            .filter(|&c| c != first && self.candidate(counts, c, min_pw, below_min))
            .collect();
        rest.sort_by_key(|&c| std::cmp::Reverse(self.key(counts, c)));
        rest.into_iter()
            .find_map(|c| self.find_home(counts, c, min_pw))
    }

    /// Some child of `n` holds fewer replicas of this partition than its plan `min`.
    fn any_below_min(&self, counts: &Counts, n: u32) -> bool {
        self.tree.nodes[n as usize]
            .children
            .iter()
            .any(|&c| counts.get(c) < self.limits(counts, c).0)
    }

    /// A child may take the replica: below its plan `max` for this partition, holding a
    /// device that wants at least `min_pw`, and, when some sibling is below its `min`,
    /// itself below its `min`. That last rule keeps every domain's minimum: a replica
    /// lifted from a domain that then falls below its minimum can only go back into it
    /// (to another device there), never to a domain that already has its share.
    fn candidate(&self, counts: &Counts, c: u32, min_pw: i64, below_min: bool) -> bool {
        let i = c as usize;
        let count = counts.get(c);
        let (min, max) = self.limits(counts, c);
        count < max && self.best_pw[i] >= min_pw && (!below_min || count < min)
    }

    /// The child of `n` to try first. When looking for room (`min_pw` ≥ 1) the choice is
    /// random in proportion to `parts_available`: always taking the roomiest child makes
    /// placement cycle through the domains in a fixed order, which pairs domains
    /// systematically (every partition of one device sharing a zone with another), and
    /// such rings cannot later shed parts to new devices without breaking dispersion.
    /// Balance rounds even out the randomness. Otherwise the best child by [`Self::key`].
    fn pick(&mut self, counts: &Counts, n: u32, min_pw: i64, below_min: bool) -> Option<u32> {
        let children = &self.tree.nodes[n as usize].children;
        let mut total = 0i64;
        let mut best: Option<u32> = None;
        for &c in children {
            if !self.candidate(counts, c, min_pw, below_min) {
                continue;
            }
            total += self.available[c as usize].max(0);
            if best.is_none_or(|b| self.key(counts, c) > self.key(counts, b)) {
                best = Some(c);
            }
        }
        if min_pw < 1 || total <= 0 {
            return best;
        }
        let mut ticket = self.rng.gen_range(0..total);
        for &c in &self.tree.nodes[n as usize].children {
            if !self.candidate(counts, c, min_pw, below_min) {
                continue;
            }
            let a = self.available[c as usize].max(0);
            if ticket < a {
                return Some(c);
            }
            ticket -= a;
        }
        best
    }

    /// Last resort (the plan is inconsistent through rounding): any placeable device not
    /// yet holding the partition, the one wanting most parts.
    fn any_home(&self, p: usize) -> Option<u16> {
        if self.rule.is_some() {
            return None; // it would ignore the rule
        }
        let used: Vec<u16> = self
            .rows
            .iter()
            .filter_map(|row| row.get(p).copied())
            .collect();
        (0..self.pw.len())
            .filter(|&d| self.placeable[d] && !used.contains(&(d as u16)))
            .max_by_key(|&d| (self.pw[d], std::cmp::Reverse(d)))
            .map(|d| d as u16)
    }

    /// Step 7: one scan moving replicas from overweight to underweight devices. With
    /// `diffuse`, a replica that cannot reach an underweight device may instead move to a
    /// device at least two parts less overweight than its own: that spreads the excess to
    /// devices whose partitions *can* reach the underweight ones (dispersion limits can
    /// make direct moves impossible). Both kinds of move strictly reduce Σ parts_wanted², so
    /// the rounds terminate. Returns the number of moves.
    fn balance_round(&mut self, diffuse: bool) -> u64 {
        let parts = self.parts();
        let start = self.rng.gen_range(0..parts);
        let mut counts = Counts::default();
        let mut candidates: Vec<(i64, usize)> = Vec::new();
        let mut moves = 0;
        for off in 0..parts {
            if self.excess == 0 {
                break;
            }
            if off % (PROGRESS_EVERY * 16) == 0 {
                (self.progress)("balancing", off as u64, parts as u64);
            }
            let p = (start + off) % parts;
            self.overweight_movable(p, diffuse, &mut candidates);
            // Most overweight first; the first replica that finds a home moves.
            for &(_, r) in &candidates {
                if self.try_move(p, r, diffuse, &mut counts) {
                    moves += 1;
                    break;
                }
            }
        }
        (self.progress)("balancing", parts as u64, parts as u64);
        moves
    }

    /// Lift replica `r` of partition `p` and place it on an underweight device (or, when
    /// diffusing, a less overweight one); put it back if there is none.
    fn try_move(&mut self, p: usize, r: usize, diffuse: bool, counts: &mut Counts) -> bool {
        let old = self.rows[r][p];
        let old_pw = self.pw[usize::from(old)];
        let fresh = self.is_fresh(r, p);
        self.lift(r, p);
        self.counts_for(p, counts);
        // A fresh slot moves no data when re-chosen; an original one only diffuses off a
        // device more than 1 % over its share, so that diffusion's extra moves are spent
        // where balance really is off.
        let may_diffuse = diffuse && (fresh || self.far_over(old, old_pw));
        let home = if old_pw >= 0 {
            // Only offered by `overweight_movable` when equalizing under a rule.
            let gap = self.equalize_margin(r, p, old).unwrap_or(i64::MAX / 4);
            self.find_home(counts, 0, old_pw + gap)
        } else {
            self.find_home(counts, 0, 1).or_else(|| {
                may_diffuse
                    .then(|| self.find_home(counts, 0, old_pw + 2))
                    .flatten()
            })
        };
        match home {
            Some(dev) if dev != old => {
                self.put(r, p, dev);
                true
            }
            _ => {
                self.put(r, p, old);
                false
            }
        }
    }

    /// Rows of partition `p` on overweight devices that may move, most overweight first.
    /// With `diffuse` under a placement rule, also rows on other devices that some device
    /// wants clearly more parts than ([`Self::equalize_margin`]), after the overweight ones.
    fn overweight_movable(&self, p: usize, diffuse: bool, out: &mut Vec<(i64, usize)>) {
        out.clear();
        let may_move = self.may_move(p);
        let most_wanted = self.best_pw[0];
        for r in 0..self.rows.len() {
            let Some(&d) = self.rows[r].get(p) else {
                continue;
            };
            if !(may_move || self.is_fresh(r, p)) {
                continue;
            }
            let pw = self.pw.get(usize::from(d)).copied().unwrap_or(0);
            let equalize = || {
                diffuse
                    && self
                        .equalize_margin(r, p, d)
                        .is_some_and(|gap| most_wanted >= pw.saturating_add(gap))
            };
            if pw < 0 || equalize() {
                out.push((pw, r));
            }
        }
        out.sort_unstable();
    }

    fn changed_slots(&self) -> u64 {
        let mut changed = 0;
        for (r, row) in self.rows.iter().enumerate() {
            for (p, &d) in row.iter().enumerate() {
                if d != self.original_at(r, p) {
                    changed += 1;
                }
            }
        }
        changed
    }

    fn changed_partitions(&self) -> Vec<bool> {
        let mut moved = vec![false; self.parts()];
        for (r, row) in self.rows.iter().enumerate() {
            for (p, &d) in row.iter().enumerate() {
                if d != self.original_at(r, p) {
                    moved[p] = true;
                }
            }
        }
        moved
    }
}
