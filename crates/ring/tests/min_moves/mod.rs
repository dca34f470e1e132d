//! The exact minimum number of part-replica moves between two rings: a min-cost flow,
//! used as the oracle of the builder's "moves as little as possible" property tests.
//!
//! # The network
//!
//! One unit of flow is one part-replica. For every partition `p` the flow goes
//! `source → p → (p, region) → (p, zone) → (p, server) → device → sink`, where the edge
//! into each `(p, domain)` node has the capacity "most replicas of one partition this
//! domain may hold" (the dispersion limit), an edge `(p, server) → device` has capacity 1
//! (never two replicas on one device) and costs 0 when the device held `p` before and 1
//! when it did not (a moved part-replica), and `device → sink` has the capacity the
//! device must end up holding. Because the per-partition limits nest (a laminar family:
//! region ⊃ zone ⊃ server ⊃ device), every assignment of replicas to devices that keeps
//! them is exactly an integral flow of this network, and its cost is the number of
//! part-replicas placed on a device that did not hold that partition: the data that has to
//! move. A min-cost maximum flow is therefore the true minimum, whatever made moves
//! necessary (removed devices, new weights, dispersion limits, or a device that cannot
//! take a replica of a partition it already holds).
//!
//! # The algorithm
//!
//! Primal-dual: costs are 0 or 1 (all ≥ 0, so zero potentials start feasible); each phase
//! computes shortest distances under reduced costs (Dijkstra), updates the potentials,
//! then pushes a blocking flow (Dinic) through the edges of reduced cost 0. Distances are
//! bounded by the number of moves one unit can cause, so there are few phases.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// A flow network with integer capacities and costs (edges stored in pairs: `e ^ 1` is
/// the reverse of `e`).
pub struct Network {
    head: Vec<usize>,
    next: Vec<usize>,
    to: Vec<usize>,
    cap: Vec<i64>,
    cost: Vec<i64>,
}

const NIL: usize = usize::MAX;

impl Network {
    pub fn new(nodes: usize) -> Network {
        Network {
            head: vec![NIL; nodes],
            next: Vec::new(),
            to: Vec::new(),
            cap: Vec::new(),
            cost: Vec::new(),
        }
    }

    pub fn add_node(&mut self) -> usize {
        self.head.push(NIL);
        self.head.len() - 1
    }

    pub fn add_edge(&mut self, from: usize, to: usize, cap: i64, cost: i64) {
        for (a, b, c, k) in [(from, to, cap, cost), (to, from, 0, -cost)] {
            self.to.push(b);
            self.cap.push(c);
            self.cost.push(k);
            self.next.push(self.head[a]);
            self.head[a] = self.to.len() - 1;
        }
    }

    /// Min-cost maximum flow from `s` to `t`: `(flow, cost)`.
    pub fn min_cost_max_flow(&mut self, s: usize, t: usize) -> (i64, i64) {
        let n = self.head.len();
        let mut potential = vec![0i64; n];
        let (mut flow, mut cost) = (0, 0);
        loop {
            let dist = self.reduced_distances(s, &potential);
            if dist[t] == i64::MAX {
                break;
            }
            for v in 0..n {
                if dist[v] != i64::MAX {
                    potential[v] += dist[v];
                }
            }
            let pushed = self.blocking_flows(s, t, &potential);
            if pushed == 0 {
                break;
            }
            flow += pushed;
            cost += pushed * (potential[t] - potential[s]);
        }
        (flow, cost)
    }

    fn reduced_cost(&self, e: usize, from: usize, potential: &[i64]) -> i64 {
        self.cost[e] + potential[from] - potential[self.to[e]]
    }

    /// Dijkstra over residual edges with reduced costs (≥ 0 by the potentials' invariant).
    fn reduced_distances(&self, s: usize, potential: &[i64]) -> Vec<i64> {
        let mut dist = vec![i64::MAX; self.head.len()];
        let mut heap = BinaryHeap::new();
        dist[s] = 0;
        heap.push(Reverse((0i64, s)));
        while let Some(Reverse((d, v))) = heap.pop() {
            if d > dist[v] {
                continue;
            }
            let mut e = self.head[v];
            while e != NIL {
                if self.cap[e] > 0 {
                    let rc = self.reduced_cost(e, v, potential);
                    assert!(rc >= 0, "negative reduced cost: potentials broken");
                    let w = self.to[e];
                    if d + rc < dist[w] {
                        dist[w] = d + rc;
                        heap.push(Reverse((d + rc, w)));
                    }
                }
                e = self.next[e];
            }
        }
        dist
    }

    /// Dinic on the admissible edges (residual, reduced cost 0): repeated level graphs and
    /// augmenting depth-first searches until `t` is unreachable through them.
    fn blocking_flows(&mut self, s: usize, t: usize, potential: &[i64]) -> i64 {
        let mut total = 0;
        loop {
            let level = self.admissible_levels(s, potential);
            if level[t] == usize::MAX {
                return total;
            }
            let mut cursor = self.head.clone();
            loop {
                let pushed = self.augment(s, t, i64::MAX, &level, &mut cursor, potential);
                if pushed == 0 {
                    break;
                }
                total += pushed;
            }
        }
    }

    fn admissible(&self, e: usize, from: usize, potential: &[i64]) -> bool {
        self.cap[e] > 0 && self.reduced_cost(e, from, potential) == 0
    }

    fn admissible_levels(&self, s: usize, potential: &[i64]) -> Vec<usize> {
        let mut level = vec![usize::MAX; self.head.len()];
        let mut queue = std::collections::VecDeque::from([s]);
        level[s] = 0;
        while let Some(v) = queue.pop_front() {
            let mut e = self.head[v];
            while e != NIL {
                let w = self.to[e];
                if level[w] == usize::MAX && self.admissible(e, v, potential) {
                    level[w] = level[v] + 1;
                    queue.push_back(w);
                }
                e = self.next[e];
            }
        }
        level
    }

    /// Iterative would be safer for deep graphs; these paths are at most a few dozen
    /// levels deep (source, partition, three domains, device, sink, and back-and-forth
    /// through devices), so recursion is fine.
    fn augment(
        &mut self,
        v: usize,
        t: usize,
        limit: i64,
        level: &[usize],
        cursor: &mut [usize],
        potential: &[i64],
    ) -> i64 {
        if v == t {
            return limit;
        }
        while cursor[v] != NIL {
            let e = cursor[v];
            let w = self.to[e];
            if level[w] == level[v] + 1 && self.admissible(e, v, potential) {
                let pushed = self.augment(w, t, limit.min(self.cap[e]), level, cursor, potential);
                if pushed > 0 {
                    self.cap[e] -= pushed;
                    self.cap[e ^ 1] += pushed;
                    return pushed;
                }
            }
            cursor[v] = self.next[e];
        }
        0
    }
}

/// One device of the ring after the change: its failure domains (region, zone, server
/// keys) and how many part-replicas it must end up holding.
pub struct Target {
    pub domains: [String; 3],
    pub count: u64,
}

/// The fewest part-replicas that must land on a device not holding their partition
/// before, to go from `before` (device ids per replica row and partition) to any ring
/// where each device `d` with `targets[d] = Some(t)` holds exactly `t.count` part-replicas,
/// no partition holds a device twice, no partition holds more replicas in a domain than
/// `limit(p, domain)`, and partition `p` keeps the devices `pinned[p]` (the builder's rule
/// for a partition that lost a replica with a removed device: nothing else of it moves in
/// that rebalance). `None` when no such ring exists (the maximum flow falls short).
pub fn min_moves(
    before: &[Vec<u16>],
    slots: &[usize],
    targets: &[Option<Target>],
    limit: &dyn Fn(usize, &str) -> i64,
    pinned: &[Vec<u16>],
) -> Option<u64> {
    let mut net = Network::new(2);
    let (source, sink) = (0, 1);
    let mut capacity: Vec<i64> = targets
        .iter()
        .map(|t| t.as_ref().map_or(0, |t| t.count as i64))
        .collect();
    for &d in pinned.iter().flatten() {
        capacity[usize::from(d)] -= 1;
    }
    if capacity.iter().any(|&c| c < 0) {
        return None;
    }
    let dev_node: Vec<Option<usize>> = targets
        .iter()
        .zip(&capacity)
        .map(|(t, &cap)| {
            t.as_ref().map(|_| {
                let n = net.add_node();
                net.add_edge(n, sink, cap, 0);
                n
            })
        })
        .collect();
    let mut total = 0;
    let mut domains: BTreeMap<&str, usize> = BTreeMap::new();
    for (p, &n_slots) in slots.iter().enumerate() {
        let pins = pinned.get(p).map_or(&[][..], Vec::as_slice);
        let free = n_slots.checked_sub(pins.len())?;
        total += free;
        let part = net.add_node();
        net.add_edge(source, part, free as i64, 0);
        // What the pinned devices already use of each domain's limit.
        let pinned_in = |key: &str| {
            pins.iter()
                .filter(|&&d| {
                    targets
                        .get(usize::from(d))
                        .and_then(Option::as_ref)
                        .is_some_and(|t| t.domains.iter().any(|k| k == key))
                })
                .count() as i64
        };
        domains.clear();
        let held: Vec<u16> = before
            .iter()
            .filter_map(|row| row.get(p).copied())
            .collect();
        for (d, target) in targets.iter().enumerate() {
            let (Some(t), Some(dev)) = (target, dev_node[d]) else {
                continue;
            };
            if pins.contains(&(d as u16)) {
                continue;
            }
            let mut parent = part;
            for key in &t.domains {
                parent = *domains.entry(key.as_str()).or_insert_with(|| {
                    let n = net.add_node();
                    net.add_edge(parent, n, (limit(p, key) - pinned_in(key)).max(0), 0);
                    n
                });
            }
            let cost = i64::from(!held.contains(&(d as u16)));
            net.add_edge(parent, dev, 1, cost);
        }
    }
    let (flow, cost) = net.min_cost_max_flow(source, sink);
    (flow == total as i64).then_some(cost as u64)
}
