//! Step 8 of a rebalance: take back moves that turned out to be needless.
//!
//! Placement and balance rounds are greedy: a replica lifted from a removed device or a
//! crowded domain goes to the best device the walk finds *at that moment*, and balance
//! rounds then move replicas from overweight to underweight devices wherever the
//! dispersion limits allow. Compared with the exact minimum (a min-cost flow, see the
//! property tests' oracle), the waste takes two shapes, and both are undone here:
//!
//! - **Revert**: a changed slot whose original device could take it back (the partition
//!   does not hold that device any more, the limits allow it) and wants it at least as
//!   much as the current device (`pw[original] ≥ pw[current] + 1`, so Σ parts_wanted²
//!   does not grow: balance never gets worse). One moved part-replica fewer.
//! - **Swap back**: a changed slot `s` (partition `p`, from `X` to `Y`) whose revert
//!   is allowed but would leave `X` one over, and another changed slot `t` (partition
//!   `q ≠ p`) now on `X` that may go to `Y`. Doing both keeps every device's count and
//!   saves one move (two when `Y` was `t`'s original device). These are the two-step
//!   detours that placement creates when the device with room cannot take the replica
//!   directly.
//! - **Negative cycles** (rings of at most [`MAX_CYCLE_DEVICES`] devices, within
//!   [`CYCLE_WORK_BUDGET`]): the general case of both. In the graph whose nodes are the
//!   devices and whose arcs are the cheapest single moves of a part-replica (cost −1 for
//!   a revert, 0 for re-choosing a changed slot, +1 for moving an untouched one from a
//!   partition that may still move), a cycle of negative total cost keeps every count
//!   and saves moves; Bellman-Ford finds one. Compound arcs add the moves no single
//!   step can make: inside one partition, "this replica leaves the crowded domain
//!   instead of that one" (see [`Arc::partner`]). This is the cycle-cancelling
//!   algorithm of min-cost flow, restricted to one partition per arc.
//!
//! # Invariants
//!
//! Only *changed* ("fresh") slots are touched, so a partition never gets more changed
//! replicas than it already had (`min_part_hours` keeps holding), device counts never
//! drift away from the plan, every step respects the same `(min, max)` limits as
//! placement (a domain at its minimum keeps it; no domain goes over its maximum; a
//! device never holds a partition twice), and every step lowers the number of changed
//! slots, so the passes end.

use super::{Counts, Engine, NONE_DEV};

/// A changed slot: replica row and partition.
type Slot = (usize, usize);

impl Engine<'_> {
    /// Revert and swap back until neither finds anything. Returns the moves saved.
    pub(super) fn tidy(&mut self) -> u64 {
        let mut saved = 0;
        let mut budget = CYCLE_WORK_BUDGET;
        loop {
            let mut found = self.revert_pass() + self.swap_back_pass();
            if found == 0 {
                found = self.cancel_cycles(&mut budget);
            }
            let spent = CYCLE_WORK_BUDGET - budget;
            if found == 0 {
                (self.progress)("tidying", CYCLE_WORK_BUDGET, CYCLE_WORK_BUDGET);
                return saved;
            }
            // The cycle search is what can take a while: report its share of the budget.
            (self.progress)("tidying", spent, CYCLE_WORK_BUDGET);
            saved += found;
        }
    }

    /// Put every device that stayed in a partition back in the replica row it had: a
    /// device that only changed rows moved no data, but would count as two changed
    /// part-replicas (and move its row's primary index).
    pub(super) fn align_rows(&mut self) {
        for p in 0..self.parts() {
            for r in 0..self.rows.len() {
                let Some(&dev) = self.rows[r].get(p) else {
                    continue;
                };
                if dev == self.original_at(r, p) {
                    continue;
                }
                let home = (0..self.rows.len()).find(|&o| {
                    o != r && self.original_at(o, p) == dev && self.rows[o].get(p).is_some()
                });
                if let Some(o) = home {
                    let other = self.rows[o][p];
                    self.rows[o][p] = dev;
                    self.rows[r][p] = other;
                }
            }
        }
    }

    /// The original device of a changed slot, when it could hold a replica again.
    fn original_home(&self, (r, p): Slot) -> Option<u16> {
        let orig = self.original_at(r, p);
        let usable = orig != NONE_DEV
            && self
                .placeable
                .get(usize::from(orig))
                .copied()
                .unwrap_or(false)
            && self.path(orig).is_some();
        (usable && self.is_fresh(r, p)).then_some(orig)
    }

    /// Would replacing slot `(r, p)`'s device by `dev` keep partition `p` within its
    /// limits? `counts` must be `p`'s counts *without* that slot.
    fn fits(&self, counts: &Counts, (r, p): Slot, dev: u16) -> bool {
        let (Some(new_path), Some(old_path)) = (self.path(dev), self.path(self.rows[r][p])) else {
            return false;
        };
        let holds = self.rows.iter().any(|row| row.get(p) == Some(&dev));
        let room = new_path
            .iter()
            .all(|&n| counts.get(n) < self.limits(counts, n).1);
        // Under a placement rule a domain left by the slot must not fall below its
        // minimum (the anchor domains hold an exact count). Without one the plan's
        // minimums are only a placement preference, as in Swift: the maximums alone
        // bound dispersion (what the dispersion report checks), and honouring the
        // minimums here blocks most of the moves this step exists to take back.
        let keeps_min = self.rule.is_none()
            || old_path
                .iter()
                .filter(|n| !new_path.contains(n))
                .all(|&n| counts.get(n) + 1 != self.limits(counts, n).0);
        !holds && room && keeps_min
    }

    /// `p`'s counts without slot `r` (its device stays in the row).
    fn counts_without(&self, (r, p): Slot, counts: &mut Counts) {
        counts.entries.clear();
        counts.part = p;
        for (i, row) in self.rows.iter().enumerate() {
            if i == r {
                continue;
            }
            if let Some(path) = row.get(p).and_then(|&d| self.path(d)) {
                counts.add(&path);
            }
        }
    }

    /// Move slot `(r, p)` to `dev`, keeping `parts_wanted` and `moved` in step.
    fn reassign(&mut self, (r, p): Slot, dev: u16) {
        self.lift(r, p);
        self.put(r, p, dev);
        self.refresh_moved(p);
    }

    /// `moved[p]` again from the rows: after undoing changes, it may be false again.
    fn refresh_moved(&mut self, p: usize) {
        self.moved[p] =
            (0..self.rows.len()).any(|r| self.rows[r].get(p).is_some() && self.is_fresh(r, p));
    }

    fn fresh_slots(&self) -> Vec<Slot> {
        let mut slots = Vec::new();
        for (r, row) in self.rows.iter().enumerate() {
            for p in 0..row.len() {
                if self.is_fresh(r, p) {
                    slots.push((r, p));
                }
            }
        }
        slots
    }

    fn revert_pass(&mut self) -> u64 {
        let mut counts = Counts::default();
        let mut reverted = 0;
        for slot in self.fresh_slots() {
            let Some(orig) = self.original_home(slot) else {
                continue;
            };
            let current = self.rows[slot.0][slot.1];
            if self.pw[usize::from(orig)] < self.pw[usize::from(current)] + 1 {
                continue;
            }
            self.counts_without(slot, &mut counts);
            if self.fits(&counts, slot, orig) {
                self.reassign(slot, orig);
                reverted += 1;
            }
        }
        reverted
    }

    fn swap_back_pass(&mut self) -> u64 {
        let fresh = self.fresh_slots();
        let mut on_device: Vec<Vec<Slot>> = vec![Vec::new(); self.pw.len()];
        for &(r, p) in &fresh {
            if let Some(list) = on_device.get_mut(usize::from(self.rows[r][p])) {
                list.push((r, p));
            }
        }
        let mut counts = Counts::default();
        let mut saved = 0;
        for s in fresh {
            let Some(x) = self.original_home(s) else {
                continue;
            };
            self.counts_without(s, &mut counts);
            if !self.fits(&counts, s, x) {
                continue;
            }
            let y = self.rows[s.0][s.1];
            let Some(t) = self.swap_partner(s, x, y, &on_device[usize::from(x)]) else {
                continue;
            };
            self.reassign(s, x);
            self.reassign(t, y);
            on_device[usize::from(x)].retain(|&u| u != t);
            saved += 1;
        }
        saved
    }

    /// A changed slot of another partition, now on `x`, that may move to `y`.
    fn swap_partner(&self, s: Slot, x: u16, y: u16, on_x: &[Slot]) -> Option<Slot> {
        let mut counts = Counts::default();
        on_x.iter().copied().find(|&t| {
            if t.1 == s.1 || self.rows[t.0][t.1] != x || !self.is_fresh(t.0, t.1) {
                return false;
            }
            self.counts_without(t, &mut counts);
            self.fits(&counts, t, y)
        })
    }
}

/// Cycle search only on rings with at most this many placeable devices (it is
/// O(devices³) per cycle found).
const MAX_CYCLE_DEVICES: usize = 256;
/// Elementary steps (candidate moves checked, arcs relaxed) the cycle search may spend
/// in one rebalance: it finds every saving on rings of a few dozen devices, while on
/// large rings, where one search costs millions of steps, it stops after a few (about
/// a second at most) and the cheap passes above do the work.
const CYCLE_WORK_BUDGET: u64 = 50_000_000;

/// The cheapest known move from one device to another: its cost in changed slots
/// (−1 a revert, 0 a changed slot re-chosen, +1 an original slot moved) and the slot.
#[derive(Clone, Copy)]
struct Arc {
    cost: i64,
    slot: Slot,
    /// A compound move inside one partition: `slot` takes the device of `partner` (a
    /// changed slot of the same partition), and `partner` goes back to the arc's target,
    /// its original device. That is how a partition swaps which replica left a crowded
    /// domain, which no single move can do.
    partner: Option<Slot>,
}

impl Engine<'_> {
    /// Find and apply one cycle of moves between devices (each device gives one
    /// part-replica and takes one, so every count stays) whose costs sum below zero.
    /// Returns 1 when one was applied. Bellman-Ford on the device graph whose arcs are
    /// the cheapest single moves (and compound ones, see [`Arc::partner`]), while
    /// `budget` lasts.
    fn cancel_cycles(&mut self, budget: &mut u64) -> u64 {
        let devs: Vec<u16> = (0..self.pw.len())
            .filter(|&d| self.placeable[d] && self.path(d as u16).is_some())
            .map(|d| d as u16)
            .collect();
        if devs.len() > MAX_CYCLE_DEVICES {
            return 0;
        }
        let n = devs.len() as u64;
        let search = n * n * n;
        let arcs_cost = (self.changed_count() as u64 + n) * n;
        if arcs_cost + search > *budget {
            return 0;
        }
        *budget -= arcs_cost;
        let mut arcs = self.cheapest_arcs(&devs);
        for _ in 0..8 {
            // Every search is charged, retries included.
            let Some(left) = budget.checked_sub(search) else {
                return 0;
            };
            *budget = left;
            let Some(cycle) = negative_cycle(devs.len(), &arcs) else {
                return 0;
            };
            if self.apply_cycle(&cycle, &arcs, &devs) {
                return 1;
            }
            // Its moves clash (two of them in one partition): try without the first.
            let (i, j) = cycle[0];
            arcs[i * devs.len() + j] = None;
        }
        0
    }

    fn slots_by_device(&self) -> Vec<Vec<Slot>> {
        let mut on: Vec<Vec<Slot>> = vec![Vec::new(); self.pw.len()];
        for (r, row) in self.rows.iter().enumerate() {
            for (p, &d) in row.iter().enumerate() {
                if let Some(list) = on.get_mut(usize::from(d)) {
                    list.push((r, p));
                }
            }
        }
        // Changed slots first: they give the cheaper arcs.
        for list in &mut on {
            list.sort_by_key(|&(r, p)| !self.is_fresh(r, p));
        }
        on
    }

    /// Cost of moving `slot` to `dev`, or `None` when it may not move at all.
    fn move_cost(&self, (r, p): Slot, dev: u16) -> Option<i64> {
        if self.is_fresh(r, p) {
            Some(if self.original_at(r, p) == dev { -1 } else { 0 })
        } else if self.may_move(p) {
            Some(1)
        } else {
            None
        }
    }

    /// `arcs[i * n + j]`: the cheapest move from `devs[i]` to `devs[j]`.
    fn cheapest_arcs(&self, devs: &[u16]) -> Vec<Option<Arc>> {
        let n = devs.len();
        let on = self.slots_by_device();
        let mut arcs: Vec<Option<Arc>> = vec![None; n * n];
        let mut counts = Counts::default();
        for (i, &u) in devs.iter().enumerate() {
            let mut missing = n - 1;
            for &slot in &on[usize::from(u)] {
                if missing == 0 && !self.is_fresh(slot.0, slot.1) {
                    break;
                }
                self.counts_without(slot, &mut counts);
                for (j, &w) in devs.iter().enumerate() {
                    let Some(cost) = self.move_cost(slot, w) else {
                        break;
                    };
                    let known = arcs[i * n + j].map_or(i64::MAX, |a| a.cost);
                    if i == j || known <= cost || !self.fits(&counts, slot, w) {
                        continue;
                    }
                    if known == i64::MAX {
                        missing -= 1;
                    }
                    arcs[i * n + j] = Some(Arc {
                        cost,
                        slot,
                        partner: None,
                    });
                }
            }
        }
        if self.rule.is_none() {
            self.add_compound_arcs(devs, &mut arcs);
        }
        arcs
    }

    /// For every changed slot `s` (partition `p`, original `x`, now on `y`) and every
    /// other slot `t` of `p` (on `v`): "`t` moves to `y`, `s` returns to `x`", an arc
    /// `v → x` (device counts: `v` one less, `x` one more).
    fn add_compound_arcs(&self, devs: &[u16], arcs: &mut [Option<Arc>]) {
        let n = devs.len();
        let mut index = vec![usize::MAX; self.pw.len()];
        for (i, &d) in devs.iter().enumerate() {
            index[usize::from(d)] = i;
        }
        for s in self.fresh_slots() {
            let Some(x) = self.original_home(s) else {
                continue;
            };
            let (r, p) = s;
            let y = self.rows[r][p];
            for r2 in (0..self.rows.len()).filter(|&r2| r2 != r) {
                let Some(&v) = self.rows[r2].get(p) else {
                    continue;
                };
                let t = (r2, p);
                let Some(cost) = self.partner_cost(t, y) else {
                    continue;
                };
                let (vi, xi) = (index[usize::from(v)], index[usize::from(x)]);
                if vi == usize::MAX || xi == usize::MAX || vi == xi {
                    continue;
                }
                let cost = cost - 1;
                let known = arcs[vi * n + xi].map_or(i64::MAX, |a| a.cost);
                if cost < known && self.pair_fits(p, [(s, x), (t, y)]) {
                    arcs[vi * n + xi] = Some(Arc {
                        cost,
                        slot: t,
                        partner: Some(s),
                    });
                }
            }
        }
    }

    /// Cost of slot `t` moving to `y` once its partition's only other change was
    /// undone: it may then move if the partition's `min_part_hours` has passed.
    fn partner_cost(&self, (r, p): Slot, y: u16) -> Option<i64> {
        if self.is_fresh(r, p) {
            return Some(if self.original_at(r, p) == y { -1 } else { 0 });
        }
        let aged = self.hours.get(p).copied().unwrap_or(u8::MAX) >= self.min_part_hours;
        aged.then_some(1)
    }

    /// Would partition `p` be within its limits with both slots moved as given?
    fn pair_fits(&self, p: usize, moves: [(Slot, u16); 2]) -> bool {
        let mut counts = Counts {
            entries: Vec::new(),
            part: p,
        };
        let mut devs: Vec<u16> = Vec::new();
        for r in 0..self.rows.len() {
            let Some(&d) = self.rows[r].get(p) else {
                continue;
            };
            let d = moves.iter().find(|m| m.0 .0 == r).map_or(d, |m| m.1);
            if devs.contains(&d) {
                return false;
            }
            devs.push(d);
            match self.path(d) {
                Some(path) => counts.add(&path),
                None => return false,
            }
        }
        counts
            .entries
            .iter()
            .all(|&(node, c)| c <= self.limits(&counts, node).1)
    }

    /// Apply the moves of `cycle` (pairs of device indices), checking each again
    /// against the partition as it is by then; undo all of them if one no longer fits
    /// or the whole does not save a changed slot.
    fn apply_cycle(
        &mut self,
        cycle: &[(usize, usize)],
        arcs: &[Option<Arc>],
        devs: &[u16],
    ) -> bool {
        let n = devs.len();
        let before = self.changed_count();
        let mut done: Vec<(Slot, u16)> = Vec::new();
        let complete = cycle.iter().all(|&(i, j)| match arcs[i * n + j] {
            Some(arc) => self.apply_arc(arc, devs[i], devs[j], &mut done),
            None => false,
        });
        if complete && self.changed_count() < before {
            return true;
        }
        self.undo(&done);
        false
    }

    /// One arc's move(s), recording each slot's previous device in `done`.
    fn apply_arc(&mut self, arc: Arc, from: u16, to: u16, done: &mut Vec<(Slot, u16)>) -> bool {
        let slot = arc.slot;
        if self.rows[slot.0][slot.1] != from {
            return false;
        }
        let Some(partner) = arc.partner else {
            let mut counts = Counts::default();
            self.counts_without(slot, &mut counts);
            if self.move_cost(slot, to).is_none() || !self.fits(&counts, slot, to) {
                return false;
            }
            done.push((slot, from));
            self.reassign(slot, to);
            return true;
        };
        let p = slot.1;
        let y = self.rows[partner.0][p];
        if !self.is_fresh(partner.0, p) || !self.pair_fits(p, [(partner, to), (slot, y)]) {
            return false;
        }
        done.push((partner, y));
        done.push((slot, from));
        // Through a placeholder, so that no partition ever holds one device twice.
        self.lift(partner.0, p);
        self.reassign(slot, y);
        self.put(partner.0, p, to);
        true
    }

    /// Put every slot in `done` back on the first device recorded for it.
    fn undo(&mut self, done: &[(Slot, u16)]) {
        let mut first: Vec<(Slot, u16)> = Vec::new();
        for &(slot, dev) in done {
            if !first.iter().any(|&(s, _)| s == slot) {
                first.push((slot, dev));
            }
        }
        for &((r, p), _) in &first {
            self.lift(r, p);
        }
        for &((r, p), dev) in &first {
            self.put(r, p, dev);
        }
        for &((_, p), _) in &first {
            self.refresh_moved(p);
        }
    }

    fn changed_count(&self) -> usize {
        self.fresh_slots().len()
    }
}

/// A cycle of negative total cost in the complete graph on `n` nodes with the given
/// arcs, as (from, to) pairs, found by Bellman-Ford from a virtual source.
fn negative_cycle(n: usize, arcs: &[Option<Arc>]) -> Option<Vec<(usize, usize)>> {
    let mut dist = vec![0i64; n];
    let mut pred = vec![usize::MAX; n];
    let mut last = None;
    for _ in 0..n {
        last = None;
        for i in 0..n {
            for j in 0..n {
                if let Some(a) = arcs[i * n + j] {
                    if dist[i] + a.cost < dist[j] {
                        dist[j] = dist[i] + a.cost;
                        pred[j] = i;
                        last = Some(j);
                    }
                }
            }
        }
        last?;
    }
    // A node relaxed in round n lies on or behind a negative cycle: walk back n steps
    // to land on the cycle, then collect it.
    let mut v = last?;
    for _ in 0..n {
        v = pred[v];
    }
    let start = v;
    let mut cycle = Vec::new();
    loop {
        let u = pred[v];
        cycle.push((u, v));
        v = u;
        if v == start {
            break;
        }
    }
    cycle.reverse();
    Some(cycle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arcs(n: usize, list: &[(usize, usize, i64)]) -> Vec<Option<Arc>> {
        let mut arcs = vec![None; n * n];
        for &(i, j, cost) in list {
            arcs[i * n + j] = Some(Arc {
                cost,
                slot: (i, j),
                partner: None,
            });
        }
        arcs
    }

    #[test]
    fn finds_a_negative_cycle_and_only_that() {
        // 0 → 1 (−1), 1 → 2 (0), 2 → 0 (0): total −1. 2 → 3 (−5) leads nowhere.
        let a = arcs(4, &[(0, 1, -1), (1, 2, 0), (2, 0, 0), (2, 3, -5)]);
        let cycle = negative_cycle(4, &a).expect("a negative cycle");
        let mut nodes: Vec<usize> = cycle.iter().map(|&(i, _)| i).collect();
        nodes.sort_unstable();
        assert_eq!(nodes, vec![0, 1, 2]);
        for w in cycle.windows(2) {
            assert_eq!(w[0].1, w[1].0, "consecutive arcs: {cycle:?}");
        }
        assert_eq!(cycle.last().map(|a| a.1), cycle.first().map(|a| a.0));
    }

    #[test]
    fn no_cycle_when_every_cycle_costs_something() {
        let a = arcs(3, &[(0, 1, -1), (1, 2, 0), (2, 0, 1), (1, 0, 1)]);
        assert!(negative_cycle(3, &a).is_none());
    }
}
