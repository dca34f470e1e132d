//! The failure-domain tree and the replica plan (`PROTOCOLS.md`, "Builder", definitions).
//!
//! Nodes are the root, regions, zones, servers (IP only) and devices, numbered so that the
//! tree can be walked with plain indices. For each node the plan computes, in replicas of
//! an average partition ("replicanths"):
//!
//! - `weighted`: its share by weight, each device capped at one replica and the excess
//!   handed to the others in proportion to weight (heaviest first, "water filling");
//! - `wanted`: the most dispersed share: replicas spread over the children of each node as
//!   evenly as their weights allow, each child between `floor` and `ceil` of an even split
//!   and never more than its device count (Swift's `_build_wanted_replicas_by_tier`);
//! - `target = weighted + (wanted − weighted) · min(overload, required) / required`, where
//!   `required` is the largest relative increase any device needs to be fully dispersed.
//!
//! Every child's values sum to its parent's value, so `max = ceil(target)` satisfies
//! `Σ max(children) ≥ max(parent)`: a partition with fewer replicas than `max` below some
//! node always has a child below its own `max`. That is why placement can always find a home
//! without breaking the plan.
//!
//! Devices with weight 0 (including those marked for removal) are in the tree, because the
//! replicas they still hold count towards their parents, but get a target of 0: nothing is
//! ever placed on them.

use std::collections::BTreeMap;

use crate::types::Device;

/// Depth of the device level (root 0, region 1, zone 2, server 3, device 4).
pub(crate) const DEVICE_LEVEL: u8 = 4;
/// Slack for comparisons of sums of floating point shares.
const EPS: f64 = 1e-10;

/// One failure domain.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub level: u8,
    pub children: Vec<u32>,
    /// Device id for leaves.
    pub dev: Option<u32>,
    /// Weighted devices below (a device counts itself).
    pub n_devs: u32,
    pub weight: f64,
    pub weighted: f64,
    pub wanted: f64,
    pub target: f64,
    /// Replica plan for one partition.
    pub min: u16,
    pub max: u16,
    /// The most replicas of one partition this node holds when perfectly dispersed
    /// (`ceil(wanted)`), used by the dispersion report.
    pub disp_max: u16,
    /// Integer share of all part-replicas (the device's `parts_wanted` before subtracting
    /// what it holds).
    pub parts: u64,
    /// Human label: `r1`, `r1z2`, `r1z2-10.0.0.1`, `d7`.
    pub label: String,
}

/// The tree plus, for each device id, its path of node indices (region, zone, server,
/// device).
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub nodes: Vec<Node>,
    /// Indexed by device id; `None` for holes.
    pub dev_path: Vec<Option<[u32; 4]>>,
}

fn node(level: u8, label: String) -> Node {
    Node {
        level,
        children: Vec::new(),
        dev: None,
        n_devs: 0,
        weight: 0.0,
        weighted: 0.0,
        wanted: 0.0,
        target: 0.0,
        min: 0,
        max: 0,
        disp_max: 0,
        parts: 0,
        label,
    }
}

fn floor_eps(x: f64) -> u16 {
    (x + EPS).floor().max(0.0) as u16
}

fn ceil_eps(x: f64) -> u16 {
    (x - EPS).ceil().max(0.0) as u16
}

impl Tree {
    /// Build the tree of all existing devices (sorted by region, zone, ip, id so that the
    /// node numbering, and thus every decision, is deterministic).
    pub fn build(devs: &[Option<Device>]) -> Tree {
        type Servers<'a> = BTreeMap<&'a str, Vec<&'a Device>>;
        let mut by_region: BTreeMap<u32, BTreeMap<u32, Servers>> = BTreeMap::new();
        for dev in devs.iter().flatten() {
            by_region
                .entry(dev.region)
                .or_default()
                .entry(dev.zone)
                .or_default()
                .entry(dev.ip.as_str())
                .or_default()
                .push(dev);
        }
        let mut nodes = vec![node(0, String::new())];
        let mut dev_path = vec![None; devs.len()];
        for (region, zones) in by_region {
            let r = push_child(&mut nodes, 0, 1, format!("r{region}"));
            for (zone, servers) in zones {
                let z = push_child(&mut nodes, r, 2, format!("r{region}z{zone}"));
                for (ip, server_devs) in servers {
                    let s = push_child(&mut nodes, z, 3, format!("r{region}z{zone}-{ip}"));
                    for dev in server_devs {
                        let d = push_child(&mut nodes, s, DEVICE_LEVEL, format!("d{}", dev.id));
                        nodes[d as usize].dev = Some(dev.id);
                        nodes[d as usize].weight = dev.weight;
                        if let Some(slot) = dev_path.get_mut(dev.id as usize) {
                            *slot = Some([r, z, s, d]);
                        }
                    }
                }
            }
        }
        let mut tree = Tree { nodes, dev_path };
        tree.sum_up(0);
        tree
    }

    /// Fill `weight` and `n_devs` bottom-up.
    fn sum_up(&mut self, n: u32) -> (f64, u32) {
        let node = &self.nodes[n as usize];
        if node.level == DEVICE_LEVEL {
            let w = node.weight;
            let count = u32::from(w > 0.0);
            self.nodes[n as usize].n_devs = count;
            return (w, count);
        }
        let children = node.children.clone();
        let (mut w, mut c) = (0.0, 0);
        for child in children {
            let (cw, cc) = self.sum_up(child);
            w += cw;
            c += cc;
        }
        let node = &mut self.nodes[n as usize];
        node.weight = w;
        node.n_devs = c;
        (w, c)
    }

    /// Children of `n` that hold weighted devices (the only ones replicas are planned on).
    fn weighted_children(&self, n: u32) -> Vec<u32> {
        self.nodes[n as usize]
            .children
            .iter()
            .copied()
            .filter(|&c| self.nodes[c as usize].n_devs > 0)
            .collect()
    }

    /// Compute weighted, wanted and target replicanths and the replica plan of every node,
    /// then the integer `parts` share. `replicas` ≤ weighted device count is the caller's
    /// precondition (it is checked before a rebalance).
    pub fn plan(&mut self, replicas: f64, overload: f64, parts: usize) {
        self.plan_weighted(replicas);
        self.plan_wanted(replicas);
        self.plan_target(overload);
        let total = row_total(replicas, parts);
        self.assign_parts(0, total, parts as u64);
    }

    /// Weight-proportional replicanths, devices capped at 1 (heaviest first, so once one
    /// device is under the cap all lighter ones are too), then summed up the tree.
    fn plan_weighted(&mut self, replicas: f64) {
        let mut leaves: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&n| {
                let node = &self.nodes[n as usize];
                node.level == DEVICE_LEVEL && node.weight > 0.0
            })
            .collect();
        leaves.sort_by(|&a, &b| {
            let (na, nb) = (&self.nodes[a as usize], &self.nodes[b as usize]);
            nb.weight.total_cmp(&na.weight).then(na.dev.cmp(&nb.dev))
        });
        let mut remaining_replicas = replicas;
        let mut remaining_weight: f64 = leaves.iter().map(|&n| self.nodes[n as usize].weight).sum();
        for n in leaves {
            let w = self.nodes[n as usize].weight;
            let share = if remaining_weight > 0.0 {
                (remaining_replicas * w / remaining_weight).min(1.0)
            } else {
                0.0
            };
            self.nodes[n as usize].weighted = share;
            remaining_replicas -= share;
            remaining_weight -= w;
        }
        self.sum_weighted(0);
    }

    fn sum_weighted(&mut self, n: u32) -> f64 {
        if self.nodes[n as usize].level == DEVICE_LEVEL {
            return self.nodes[n as usize].weighted;
        }
        let children = self.nodes[n as usize].children.clone();
        let total = children.iter().map(|&c| self.sum_weighted(c)).sum();
        self.nodes[n as usize].weighted = total;
        total
    }

    /// The most dispersed placement that still follows the weights where it can.
    fn plan_wanted(&mut self, replicas: f64) {
        self.place_wanted(0, replicas, replicas);
    }

    /// `bound` is the even-split share of this node (Swift's "max replicas by tier" with a
    /// float bound); `replicas` is what it actually gets.
    fn place_wanted(&mut self, n: u32, replicas: f64, bound: f64) {
        self.nodes[n as usize].wanted = replicas;
        let kids = self.weighted_children(n);
        if kids.is_empty() {
            return;
        }
        let child_bound = bound / kids.len() as f64;
        let dmin: Vec<f64> = kids
            .iter()
            .map(|&c| f64::from(floor_eps(self.bound_for(c, child_bound))))
            .collect();
        let dmax: Vec<f64> = kids
            .iter()
            .map(|&c| f64::from(ceil_eps(self.bound_for(c, child_bound))))
            .collect();
        let cap: Vec<f64> = kids
            .iter()
            .map(|&c| f64::from(self.nodes[c as usize].n_devs))
            .collect();
        let weighted: Vec<f64> = kids
            .iter()
            .map(|&c| self.nodes[c as usize].weighted)
            .collect();
        let to_place = spread(replicas, &weighted, &dmin, &dmax, &cap);
        for (i, &c) in kids.iter().enumerate() {
            let b = self.bound_for(c, child_bound);
            self.place_wanted(c, to_place[i], b);
        }
    }

    /// A device never holds more than one replica of a partition.
    fn bound_for(&self, n: u32, bound: f64) -> f64 {
        if self.nodes[n as usize].level == DEVICE_LEVEL {
            bound.min(1.0)
        } else {
            bound
        }
    }

    /// Blend weighted and wanted by the overload, then derive each node's plan.
    fn plan_target(&mut self, overload: f64) {
        let required = self
            .nodes
            .iter()
            .filter(|n| n.level == DEVICE_LEVEL && n.weighted > 0.0)
            .map(|n| (n.wanted - n.weighted) / n.weighted)
            .fold(0.0, f64::max);
        let factor = if required <= 0.0 {
            1.0
        } else {
            overload.min(required) / required
        };
        for node in &mut self.nodes {
            node.target = if node.n_devs == 0 {
                0.0
            } else {
                node.weighted + (node.wanted - node.weighted) * factor
            };
            node.min = floor_eps(node.target);
            node.max = ceil_eps(node.target);
            node.disp_max = ceil_eps(node.wanted);
        }
    }

    /// Hand `total` part-replicas down the tree: each child first gets
    /// `floor(target × parts)` (capped at one per partition per device), the leftovers go one
    /// at a time to the children with the largest fractional remainders.
    fn assign_parts(&mut self, n: u32, total: u64, parts: u64) {
        self.nodes[n as usize].parts = total;
        let kids = self.weighted_children(n);
        if kids.is_empty() {
            return;
        }
        let mut share: Vec<u64> = Vec::with_capacity(kids.len());
        let mut order: Vec<(f64, f64, usize)> = Vec::with_capacity(kids.len());
        for (i, &c) in kids.iter().enumerate() {
            let node = &self.nodes[c as usize];
            let exact = node.target * parts as f64;
            let cap = u64::from(node.n_devs) * parts;
            share.push((exact.floor().max(0.0) as u64).min(cap));
            order.push((exact - exact.floor(), node.target, i));
        }
        // Largest remainder first; ties to the bigger target, then tree order.
        order.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(b.1.total_cmp(&a.1))
                .then(a.2.cmp(&b.2))
        });
        let mut left = total.saturating_sub(share.iter().sum());
        while left > 0 {
            let before = left;
            for &(_, _, i) in &order {
                let cap = u64::from(self.nodes[kids[i] as usize].n_devs) * parts;
                if left > 0 && share[i] < cap {
                    share[i] += 1;
                    left -= 1;
                }
            }
            if left == before {
                break; // every child is full: cannot happen with replicas ≤ devices
            }
        }
        for (i, &c) in kids.iter().enumerate() {
            self.assign_parts(c, share[i], parts);
        }
    }

    /// Node indices of the devices, in tree order.
    pub fn device_nodes(&self) -> impl Iterator<Item = (u32, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.level == DEVICE_LEVEL)
            .map(|(i, n)| (i as u32, n))
    }
}

fn push_child(nodes: &mut Vec<Node>, parent: u32, level: u8, label: String) -> u32 {
    let id = nodes.len() as u32;
    nodes.push(node(level, label));
    nodes[parent as usize].children.push(id);
    id
}

/// Total part-replicas: the sum of the replica row lengths.
pub(crate) fn row_total(replicas: f64, parts: usize) -> u64 {
    super::row_lengths(replicas, parts).iter().sum::<usize>() as u64
}

/// Split `replicas` over children in proportion to `weighted`, each clamped to
/// `[dmin, dmax]` and to its device count `cap`; when the even-split bounds cannot hold all
/// replicas (too few devices elsewhere) the `dmax` clamp is dropped ("device limited").
/// Iterates until the shares sum to `replicas` (Swift's `place_replicas`).
fn spread(replicas: f64, weighted: &[f64], dmin: &[f64], dmax: &[f64], cap: &[f64]) -> Vec<f64> {
    let n = weighted.len();
    let mut to_place = vec![0.0; n];
    let mut spread_over: Vec<usize> = (0..n).collect();
    let mut device_limited = false;
    for _ in 0..200 {
        let total_weight: f64 = spread_over.iter().map(|&i| weighted[i]).sum();
        if spread_over.is_empty() || total_weight <= 0.0 {
            break;
        }
        let remaining = replicas - to_place.iter().sum::<f64>();
        let rel = remaining / total_weight;
        for &i in &spread_over {
            let mut r = to_place[i] + weighted[i] * rel;
            if r < dmin[i] {
                r = dmin[i];
            } else if r > dmax[i] && !device_limited {
                r = dmax[i];
            }
            to_place[i] = r.min(cap[i]);
        }
        let remaining = replicas - to_place.iter().sum::<f64>();
        if remaining < -EPS {
            spread_over = (0..n).filter(|&i| to_place[i] > dmin[i]).collect();
        } else if remaining > EPS {
            spread_over = (0..n)
                .filter(|&i| to_place[i] < cap[i] && to_place[i] < dmax[i])
                .collect();
            if spread_over.is_empty() {
                device_limited = true;
                spread_over = (0..n).filter(|&i| to_place[i] < cap[i]).collect();
            }
        } else {
            break;
        }
    }
    to_place
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: u32, region: u32, zone: u32, ip: &str, weight: f64) -> Option<Device> {
        Some(Device {
            id,
            region,
            zone,
            ip: ip.into(),
            port: 6200,
            replication_ip: ip.into(),
            replication_port: 6200,
            device: format!("sd{id}"),
            weight,
            meta: String::new(),
        })
    }

    #[test]
    fn weighted_caps_heavy_device_at_one_replica() {
        let devs = vec![
            dev(0, 1, 1, "a", 1000.0),
            dev(1, 1, 1, "b", 1.0),
            dev(2, 1, 1, "c", 1.0),
            dev(3, 1, 1, "d", 2.0),
        ];
        let mut t = Tree::build(&devs);
        t.plan(3.0, 0.0, 1024);
        let w: Vec<f64> = t.device_nodes().map(|(_, n)| n.weighted).collect();
        assert!((w.iter().sum::<f64>() - 3.0).abs() < 1e-9);
        assert!((w[0] - 1.0).abs() < 1e-12, "{w:?}");
        // The remaining two replicas split 1:1:2.
        assert!((w[3] - 1.0).abs() < 1e-9, "{w:?}");
    }

    #[test]
    fn wanted_spreads_over_zones_and_overload_blends() {
        // Zone 1 is 3x heavier than zone 2; dispersion wants 1.5 replicas in each.
        let devs = vec![
            dev(0, 1, 1, "a", 300.0),
            dev(1, 1, 1, "b", 300.0),
            dev(2, 1, 2, "c", 100.0),
            dev(3, 1, 2, "d", 100.0),
        ];
        let mut t = Tree::build(&devs);
        t.plan(2.0, 0.0, 1024);
        let zones: Vec<&Node> = t.nodes.iter().filter(|n| n.level == 2).collect();
        assert!((zones[0].weighted - 1.5).abs() < 1e-9);
        assert!((zones[0].wanted - 1.0).abs() < 1e-9);
        assert!(
            (zones[0].target - 1.5).abs() < 1e-9,
            "overload 0 follows weights"
        );
        assert_eq!((zones[0].min, zones[0].max), (1, 2));
        t.plan(2.0, 10.0, 1024);
        let zones: Vec<&Node> = t.nodes.iter().filter(|n| n.level == 2).collect();
        assert!(
            (zones[0].target - 1.0).abs() < 1e-9,
            "big overload disperses fully"
        );
        assert_eq!((zones[0].min, zones[0].max), (1, 1));
        assert_eq!(t.nodes[0].parts, 2048);
        let parts: u64 = t.device_nodes().map(|(_, n)| n.parts).sum();
        assert_eq!(parts, 2048);
    }

    #[test]
    fn wanted_is_device_limited() {
        // 4 replicas, zone 1 has a single device: it can hold only one.
        let devs = vec![
            dev(0, 1, 1, "a", 100.0),
            dev(1, 1, 2, "b", 100.0),
            dev(2, 1, 2, "c", 100.0),
            dev(3, 1, 2, "d", 100.0),
            dev(4, 1, 2, "e", 100.0),
        ];
        let mut t = Tree::build(&devs);
        t.plan(4.0, 0.0, 256);
        let zones: Vec<&Node> = t.nodes.iter().filter(|n| n.level == 2).collect();
        assert!((zones[0].wanted - 1.0).abs() < 1e-9);
        assert!((zones[1].wanted - 3.0).abs() < 1e-9);
    }
}
