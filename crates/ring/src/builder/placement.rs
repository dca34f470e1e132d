//! Placement rules: explicit replica counts per failure domain (issue #12).
//!
//! # The rule `xyz`
//!
//! A rule is three decimal digits `x`, `y`, `z` (each 0-9), read relative to a *first copy*
//! of each partition:
//!
//! - `x` replicas are in regions other than the first copy's region, **one per region**
//!   (so the partition spans exactly `1 + x` regions);
//! - `y` replicas are in the first copy's region but in other zones than the first copy's
//!   zone, **one per zone** (so that region holds `1 + y + z` replicas in exactly `1 + y`
//!   zones);
//! - `z` replicas are in the first copy's zone but on other servers (IP addresses) than the
//!   first copy, **one per server** (so that zone holds `1 + z` replicas on `1 + z`
//!   servers).
//!
//! Hence every replica is on its own server, and the replica count must be exactly
//! `1 + x + y + z` (whole; a builder whose replica count differs refuses to rebalance with
//! the rule, and `validate` reports it). Examples: `001` (2 replicas, the second on another
//! server of the same zone), `010`, `100`, `200` (3 replicas in 3 regions), `110` (3
//! replicas: two in two zones of one region, the third in another region), `011`, `002`.
//!
//! # Which copy is "first"
//!
//! A partition satisfies the rule when its replicas, counted per node of the failure-domain
//! tree, have this shape: one region (the *first region*) holds `1 + y + z`, every other
//! region holding any holds exactly 1, and there are `1 + x` regions; inside the first
//! region one zone (the *first zone*) holds `1 + z`, every other zone holding any holds
//! exactly 1; every server holds at most one. The first region is therefore the region
//! holding the most replicas of the partition (when several hold the same number, `y + z =
//! 0` and any of them will do: the zone and server conditions are then trivially met), and
//! the first zone is the zone of the first region holding the most; the check tries every
//! region (resp. zone) holding the maximum, so ties never cause a false violation.
//!
//! During a rebalance each partition gets an *anchor* (first region, first zone): the
//! capable region (see below) holding most of its surviving replicas, and in it the capable
//! zone holding most (ties: the one with most room; partitions without replicas: at
//! random in proportion to the room left on the devices below, which spreads the anchors
//! by weight). The rule then replaces the dispersion plan's per-partition limits: the
//! anchor region must hold exactly `1 + y + z` (if that exceeds 1) and the anchor zone
//! exactly `1 + z` (if that exceeds 1), every other region and zone at most 1, every
//! server at most 1. (When `y + z = 0`, or `z = 0`, every region, or zone, holds at most
//! one replica and any of them may be "first", so the anchor does not bind.)
//!
//! Balance: a rule can pin replica counts regardless of weight (`200` over three regions
//! puts exactly a third of the part-replicas in each region; `020` gives every zone of
//! the anchor region one replica of each partition). Weights steer only the choices the
//! rule leaves open, so a ring with a rule over an uneven topology may be less balanced
//! than the same ring without it.
//!
//! # Feasibility
//!
//! A region is *capable* when it has a zone with at least `1 + z` servers holding weighted
//! devices (not marked for removal) and at least `1 + y` zones with weighted devices. The
//! topology satisfies the rule when some region is capable and at least `1 + x` regions
//! hold weighted devices. This is checked before a rebalance changes anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::types::Device;

/// A placement rule `xyz` (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRule {
    /// Replicas in other regions than the first copy's, one per region.
    pub regions: u8,
    /// Replicas in other zones of the first copy's region, one per zone.
    pub zones: u8,
    /// Replicas on other servers of the first copy's zone, one per server.
    pub servers: u8,
}

impl PlacementRule {
    /// The replica count the rule requires: `1 + x + y + z`.
    pub fn replicas(&self) -> u32 {
        1 + u32::from(self.regions) + u32::from(self.zones) + u32::from(self.servers)
    }

    /// Whether `replicas` (the builder's, possibly fractional) matches the rule.
    pub fn fits_replicas(&self, replicas: f64) -> bool {
        replicas == f64::from(self.replicas())
    }

    /// Check one partition's replicas, given as `(region, zone, server ip)` of each
    /// replica's device. `Err` says why the partition breaks the rule.
    pub fn check_part<'a>(
        &self,
        replicas: impl IntoIterator<Item = (u32, u32, &'a str)>,
    ) -> Result<(), String> {
        let locs: Vec<(u32, u32, &str)> = replicas.into_iter().collect();
        let want = self.replicas() as usize;
        if locs.len() != want {
            return Err(format!("{} replicas, the rule needs {want}", locs.len()));
        }
        let mut servers: BTreeSet<(u32, u32, &str)> = BTreeSet::new();
        for &loc in &locs {
            if !servers.insert(loc) {
                return Err(format!("two replicas on server {}", loc.2));
            }
        }
        let mut by_region: BTreeMap<u32, usize> = BTreeMap::new();
        for &(r, _, _) in &locs {
            *by_region.entry(r).or_default() += 1;
        }
        let first_count = 1 + usize::from(self.zones) + usize::from(self.servers);
        if by_region.len() != 1 + usize::from(self.regions) {
            return Err(format!(
                "{} regions, the rule needs {}",
                by_region.len(),
                1 + self.regions
            ));
        }
        let firsts: Vec<u32> = by_region
            .iter()
            .filter(|(_, &c)| c == first_count)
            .map(|(&r, _)| r)
            .collect();
        if firsts.is_empty() || by_region.values().filter(|&&c| c != 1).count() > 1 {
            return Err(format!(
                "replicas per region {:?}, the rule needs one region with {first_count} and \
                 the others with 1",
                by_region.values().collect::<Vec<_>>()
            ));
        }
        let mut last_err = String::new();
        for region in firsts {
            let mut by_zone: BTreeMap<u32, usize> = BTreeMap::new();
            for &(r, z, _) in &locs {
                if r == region {
                    *by_zone.entry(z).or_default() += 1;
                }
            }
            let zone_first = 1 + usize::from(self.servers);
            let ok = by_zone.len() == 1 + usize::from(self.zones)
                && by_zone.values().any(|&c| c == zone_first)
                && by_zone.values().filter(|&&c| c != 1).count() <= 1;
            if ok {
                return Ok(());
            }
            last_err = format!(
                "replicas per zone of region {region} {:?}, the rule needs one zone with \
                 {zone_first} and {} other zone(s) with 1",
                by_zone.values().collect::<Vec<_>>(),
                self.zones
            );
        }
        Err(last_err)
    }

    /// Check that devices that may receive replicas (weight > 0, not `removing`) can
    /// satisfy the rule (module docs, "Feasibility"). `Err` is a one-line explanation.
    pub fn check_topology<'a>(
        &self,
        devs: impl IntoIterator<Item = &'a Device>,
    ) -> Result<(), String> {
        let topo = Topology::of(devs);
        let need_regions = 1 + usize::from(self.regions);
        if topo.regions.len() < need_regions {
            return Err(format!(
                "placement rule {self} needs {need_regions} regions with weighted devices, \
                 there are {}",
                topo.regions.len()
            ));
        }
        if !topo
            .regions
            .values()
            .any(|zones| self.region_capable(zones))
        {
            return Err(format!(
                "placement rule {self} needs a region with {} zones with weighted devices, \
                 one of them with {} servers (distinct IPs) with weighted devices; no region \
                 has that",
                1 + self.zones,
                1 + self.servers
            ));
        }
        Ok(())
    }

    /// `zones`: for each zone of a region, its number of servers with weighted devices.
    pub(crate) fn region_capable(&self, zones: &BTreeMap<u32, usize>) -> bool {
        zones.len() > usize::from(self.zones) && zones.values().any(|&s| self.zone_capable(s))
    }

    /// A zone with `servers` weighted servers can be a first zone.
    pub(crate) fn zone_capable(&self, servers: usize) -> bool {
        servers > usize::from(self.servers)
    }
}

/// Servers with weighted devices per zone per region.
pub(crate) struct Topology {
    pub regions: BTreeMap<u32, BTreeMap<u32, usize>>,
}

impl Topology {
    /// Callers pass only devices that may receive replicas; weight 0 is skipped here too.
    pub fn of<'a>(devs: impl IntoIterator<Item = &'a Device>) -> Topology {
        let mut servers: BTreeMap<u32, BTreeMap<u32, BTreeSet<&str>>> = BTreeMap::new();
        for d in devs {
            if d.weight > 0.0 {
                servers
                    .entry(d.region)
                    .or_default()
                    .entry(d.zone)
                    .or_default()
                    .insert(d.ip.as_str());
            }
        }
        let regions = servers
            .into_iter()
            .map(|(r, zones)| (r, zones.into_iter().map(|(z, s)| (z, s.len())).collect()))
            .collect();
        Topology { regions }
    }
}

impl fmt::Display for PlacementRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.regions, self.zones, self.servers)
    }
}

impl FromStr for PlacementRule {
    type Err = String;

    /// Exactly three digits, e.g. `110`.
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let digits: Vec<u8> = t
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| b - b'0')
            .collect();
        if t.len() != 3 || digits.len() != 3 {
            return Err(format!(
                "invalid placement rule {s:?}: expected three digits xyz (x replicas in \
                 other regions, y in other zones, z on other servers), e.g. 110, or none"
            ));
        }
        Ok(PlacementRule {
            regions: digits[0],
            zones: digits[1],
            servers: digits[2],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> PlacementRule {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_displays() {
        assert_eq!(rule("110").to_string(), "110");
        assert_eq!(rule("110").replicas(), 3);
        assert_eq!(rule("001").replicas(), 2);
        assert!("11".parse::<PlacementRule>().is_err());
        assert!("1a0".parse::<PlacementRule>().is_err());
        assert!("1100".parse::<PlacementRule>().is_err());
        assert!(rule("200").fits_replicas(3.0));
        assert!(!rule("200").fits_replicas(2.5));
    }

    #[test]
    fn checks_partitions() {
        let ok = |r: &str, locs: &[(u32, u32, &str)]| rule(r).check_part(locs.iter().copied());
        assert!(ok("110", &[(1, 1, "a"), (1, 2, "b"), (2, 1, "c")]).is_ok());
        assert!(ok("110", &[(2, 1, "c"), (1, 1, "a"), (1, 2, "b")]).is_ok());
        assert!(ok("110", &[(1, 1, "a"), (2, 2, "b"), (3, 1, "c")]).is_err());
        assert!(ok("110", &[(1, 1, "a"), (1, 1, "b"), (2, 1, "c")]).is_err());
        assert!(ok("200", &[(1, 1, "a"), (2, 1, "a"), (3, 1, "a")]).is_ok());
        assert!(ok("200", &[(1, 1, "a"), (1, 2, "b"), (3, 1, "c")]).is_err());
        assert!(ok("001", &[(1, 1, "a"), (1, 1, "b")]).is_ok());
        assert!(ok("001", &[(1, 1, "a"), (1, 1, "a")]).is_err());
        assert!(ok("001", &[(1, 1, "a"), (1, 2, "b")]).is_err());
        assert!(ok("011", &[(1, 1, "a"), (1, 1, "b"), (1, 2, "c")]).is_ok());
        assert!(ok("011", &[(1, 1, "a"), (1, 2, "b"), (1, 3, "c")]).is_err());
        assert!(ok("111", &[(1, 1, "a"), (1, 1, "b"), (1, 2, "c"), (2, 5, "d")]).is_ok());
        assert!(ok("000", &[(1, 1, "a")]).is_ok());
        assert!(ok("010", &[(1, 1, "a")]).is_err());
    }
}
