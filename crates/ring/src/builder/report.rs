//! Balance, dispersion and validation of a built ring (`PROTOCOLS.md`, "Builder",
//! definitions of balance and dispersion).

use serde::Serialize;

use super::plan::Tree;
use super::rebalance::count_held;
use super::{row_lengths, BuilderError, RingBuilder, NONE_DEV};
use crate::types::Device;

/// Tier names of levels 1..=4 of the failure-domain tree.
pub const TIER_NAMES: [&str; 4] = ["region", "zone", "server", "device"];

/// Balance shown for a zero-weight device that still holds partitions ("infinity").
pub const MAX_BALANCE: f64 = 999.99;

/// Partitions whose replicas are less spread than the topology allows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DispersionReport {
    /// 100 × (part-replicas beyond some node's most-dispersed maximum, counted once per
    /// partition at its worst tier) / (parts × replicas). 0 = perfectly spread.
    pub dispersion: f64,
    /// One entry per tier: region, zone, server, device.
    pub tiers: Vec<TierDispersion>,
    /// Every undispersed partition.
    pub parts: Vec<PartDispersion>,
}

/// How many partitions exceed, at one tier, the replicas a node may hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierDispersion {
    pub tier: &'static str,
    /// Partitions with some node of this tier over its maximum.
    pub parts: u64,
    /// Part-replicas beyond the maxima at this tier.
    pub replicas: u64,
}

/// One undispersed partition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartDispersion {
    pub part: u32,
    /// Device ids, in row order.
    pub devices: Vec<u16>,
    /// Replicas beyond the maximum at the worst tier.
    pub excess: u32,
    /// `(node label, replicas held, most allowed)` for every node over its maximum.
    pub over: Vec<(String, u16, u16)>,
}

impl RingBuilder {
    /// Part-replicas assigned to each device id.
    pub fn device_parts(&self) -> Vec<u64> {
        count_held(&self.replica2part2dev, self.devs.len())
    }

    /// `parts × replicas / Σ weight`: part-replicas per unit of weight.
    pub fn weight_of_one_part(&self) -> f64 {
        let total: f64 = self.devices().map(|d| d.weight).sum();
        if total > 0.0 {
            self.parts() as f64 * self.replicas / total
        } else {
            0.0
        }
    }

    /// Signed balance of one device holding `parts` part-replicas: percent above (+) or
    /// below (−) its weight share; [`MAX_BALANCE`] for a zero-weight device with parts.
    pub fn device_balance(&self, dev: &Device, parts: u64) -> f64 {
        let wanted = dev.weight * self.weight_of_one_part();
        if wanted <= 0.0 {
            return if parts > 0 { MAX_BALANCE } else { 0.0 };
        }
        100.0 * parts as f64 / wanted - 100.0
    }

    /// Ring balance: the largest |balance| of any device.
    pub fn balance(&self) -> f64 {
        let held = self.device_parts();
        self.devices()
            .map(|d| {
                let parts = held.get(d.id as usize).copied().unwrap_or(0);
                self.device_balance(d, parts).abs()
            })
            .fold(0.0, f64::max)
    }

    /// Which partitions are less dispersed than the topology (without regard to weights'
    /// pull, i.e. as with unlimited overload) allows, per tier.
    pub fn dispersion_report(&self) -> DispersionReport {
        let mut tiers: Vec<TierDispersion> = TIER_NAMES
            .iter()
            .map(|&tier| TierDispersion {
                tier,
                parts: 0,
                replicas: 0,
            })
            .collect();
        let parts = self.parts();
        let total = row_lengths(self.replicas, parts).iter().sum::<usize>();
        if self.replica2part2dev.is_empty() || total == 0 || self.weighted_devices() == 0 {
            return DispersionReport {
                dispersion: 0.0,
                tiers,
                parts: Vec::new(),
            };
        }
        let mut tree = Tree::build(&self.devs);
        let replicas = self.replicas.min(self.weighted_devices() as f64);
        tree.plan(replicas, 0.0, parts);
        let mut undispersed = Vec::new();
        let mut excess_total = 0u64;
        let mut counts: Vec<(u32, u16)> = Vec::new();
        for p in 0..parts {
            counts.clear();
            let devices: Vec<u16> = self.part_devs(p).collect();
            for &d in &devices {
                if let Some(path) = tree.dev_path.get(usize::from(d)).copied().flatten() {
                    for n in path {
                        match counts.iter_mut().find(|(m, _)| *m == n) {
                            Some((_, c)) => *c += 1,
                            None => counts.push((n, 1)),
                        }
                    }
                }
            }
            let mut level_excess = [0u32; 4];
            let mut over = Vec::new();
            for &(n, c) in &counts {
                let node = &tree.nodes[n as usize];
                // Zero-weight nodes are draining, not badly dispersed.
                if node.n_devs == 0 || c <= node.disp_max {
                    continue;
                }
                level_excess[usize::from(node.level - 1)] += u32::from(c - node.disp_max);
                over.push((node.label.clone(), c, node.disp_max));
            }
            let worst = level_excess.iter().copied().max().unwrap_or(0);
            if worst == 0 {
                continue;
            }
            for (tier, &e) in tiers.iter_mut().zip(&level_excess) {
                if e > 0 {
                    tier.parts += 1;
                    tier.replicas += u64::from(e);
                }
            }
            excess_total += u64::from(worst);
            undispersed.push(PartDispersion {
                part: p as u32,
                devices,
                excess: worst,
                over,
            });
        }
        DispersionReport {
            dispersion: 100.0 * excess_total as f64 / total as f64,
            tiers,
            parts: undispersed,
        }
    }

    /// Check the assignment: every partition has its replica count of existing devices and
    /// no device twice (when there are enough devices). Returns the first problem found.
    pub fn validate(&self) -> Result<(), BuilderError> {
        let invalid = |m: String| Err(BuilderError::Invalid(m));
        if self.replica2part2dev.is_empty() {
            return Err(BuilderError::NeverRebalanced);
        }
        self.check_consistency()?;
        let parts = self.parts();
        let lengths = row_lengths(self.replicas, parts);
        let actual: Vec<usize> = self.replica2part2dev.iter().map(Vec::len).collect();
        if actual != lengths {
            return invalid(format!(
                "replica rows have lengths {actual:?} but {} replicas need {lengths:?}; \
                 rebalance to apply the replica count",
                self.replicas
            ));
        }
        let n_devs = self.devices().count();
        for p in 0..parts {
            let devs: Vec<u16> = self.part_devs(p).collect();
            if let Some(r) = devs.iter().position(|&d| d == NONE_DEV) {
                return invalid(format!("partition {p} replica {r} is not assigned"));
            }
            if n_devs >= devs.len() {
                for (i, d) in devs.iter().enumerate() {
                    if devs[..i].contains(d) {
                        return invalid(format!("partition {p} has device {d} twice"));
                    }
                }
            }
        }
        let violations = self.placement_violations();
        if let (Some(rule), false) = (self.placement(), violations.is_empty()) {
            const SHOWN: usize = 20;
            let listed: Vec<String> = violations
                .iter()
                .take(SHOWN)
                .map(|(p, why)| format!("{p} ({why})"))
                .collect();
            let more = violations.len().saturating_sub(SHOWN);
            return invalid(format!(
                "{} partition(s) violate placement rule {rule}: {}{}",
                violations.len(),
                listed.join(", "),
                if more > 0 {
                    format!(", and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        Ok(())
    }
}
