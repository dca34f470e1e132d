//! Read and write affinity (Swift's `sorting_method`, `read_affinity`, `write_affinity`,
//! `write_affinity_node_count` of `proxy-server.conf`).
//!
//! * `sorting_method = "shuffle"`: primaries in random order for every read;
//!   `"timing"`: fastest recent answer first (nodes without a recent timing first);
//!   `"affinity"`: by `read_affinity` priority, lower first, ties (and nodes matching no
//!   entry, last) in ring order — ring order throughout when `read_affinity` is empty.
//! * `read_affinity = "r1z1=100, r1=200"`: a node's priority is the lowest value of the
//!   entries it matches (`rR` matches a region, `rRzZ` a zone of it).
//! * `write_affinity = "r1, r2z1"` and `write_affinity_node_count = "2 * replicas"`:
//!   an object PUT first uses the first `count` local nodes among primaries then
//!   handoffs, then every other node in ring order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_common::metrics::Counter;
use rand::seq::SliceRandom;

use crate::nodes::Node;

/// A region, or a zone of a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locality {
    pub region: u32,
    pub zone: Option<u32>,
}

impl Locality {
    pub fn matches(&self, node: &Node) -> bool {
        node.region == self.region && self.zone.is_none_or(|z| z == node.zone)
    }
}

fn parse_locality(s: &str) -> Result<Locality, String> {
    let bad = || format!("invalid locality {s:?} (expected rN or rNzM)");
    let rest = s.strip_prefix('r').ok_or_else(bad)?;
    let (r, z) = match rest.split_once('z') {
        Some((r, z)) => (r, Some(z)),
        None => (rest, None),
    };
    let num = |t: &str| {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            Err(bad())
        } else {
            t.parse::<u32>().map_err(|_| bad())
        }
    };
    Ok(Locality {
        region: num(r)?,
        zone: z.map(num).transpose()?,
    })
}

/// `"r1z1=100, r1=200"` → entries sorted by priority (stable).
pub fn parse_read_affinity(s: &str) -> Result<Vec<(Locality, u32)>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (loc, prio) = item
            .split_once('=')
            .ok_or_else(|| format!("invalid entry {item:?} (expected rN[zM]=PRIORITY)"))?;
        let prio = prio
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("invalid priority in {item:?}"))?;
        out.push((parse_locality(loc.trim())?, prio));
    }
    out.sort_by_key(|(_, p)| *p);
    Ok(out)
}

/// `"r1, r2z1"` → the local regions/zones.
pub fn parse_write_affinity(s: &str) -> Result<Vec<Locality>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(parse_locality)
        .collect()
}

/// `write_affinity_node_count`: `"N"` or `"N * replicas"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeCount {
    Fixed(usize),
    TimesReplicas(usize),
}

impl NodeCount {
    pub fn of(self, replicas: usize) -> usize {
        match self {
            NodeCount::Fixed(n) => n,
            NodeCount::TimesReplicas(k) => k * replicas,
        }
    }
}

pub fn parse_node_count(s: &str) -> Result<NodeCount, String> {
    let bad = || format!("invalid {s:?} (expected N or N * replicas)");
    let t = s.trim();
    if let Some((n, rest)) = t.split_once('*') {
        if rest.trim() != "replicas" {
            return Err(bad());
        }
        return n
            .trim()
            .parse()
            .map(NodeCount::TimesReplicas)
            .map_err(|_| bad());
    }
    t.parse().map(NodeCount::Fixed).map_err(|_| bad())
}

/// Priority of a node under `read_affinity` (lowest matching entry; `u64` above every
/// `u32` when none matches).
pub fn read_priority(affinity: &[(Locality, u32)], node: &Node) -> u64 {
    affinity
        .iter()
        .filter(|(l, _)| l.matches(node))
        .map(|(_, p)| u64::from(*p))
        .min()
        .unwrap_or(1 << 32)
}

/// How reads order the primaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sorting {
    Shuffle,
    Timing,
    Affinity,
}

/// The proxy's affinity settings and node timings.
#[derive(Debug)]
pub struct Affinity {
    pub sorting: Sorting,
    pub read: Vec<(Locality, u32)>,
    pub write: Vec<Locality>,
    pub write_count: NodeCount,
    timing_expiry: Duration,
    timings: Mutex<HashMap<String, (f64, Instant)>>,
    /// `cairn_proxy_read_affinity_hits_total`: reads served by a `read_affinity` node.
    pub hits: Arc<Counter>,
}

impl Affinity {
    /// From the `[proxy]` strings (already validated; bad values fall back to defaults).
    pub fn new(p: &crate::config::ProxySection) -> Self {
        let sorting = match p.sorting_method.as_str() {
            "timing" => Sorting::Timing,
            "affinity" => Sorting::Affinity,
            _ => Sorting::Shuffle,
        };
        Affinity {
            sorting,
            read: parse_read_affinity(&p.read_affinity).unwrap_or_default(),
            write: parse_write_affinity(&p.write_affinity).unwrap_or_default(),
            write_count: parse_node_count(&p.write_affinity_node_count)
                .unwrap_or(NodeCount::TimesReplicas(2)),
            timing_expiry: Duration::try_from_secs_f64(p.timing_expiry)
                .unwrap_or(Duration::from_secs(300)),
            timings: Mutex::new(HashMap::new()),
            hits: cairn_common::metrics::global().counter(
                "cairn_proxy_read_affinity_hits_total",
                "Reads served by a node matching read_affinity.",
            ),
        }
    }

    /// Order the primaries of a read (handoffs are left alone).
    pub fn sort_primaries(&self, nodes: &mut [Node]) {
        match self.sorting {
            Sorting::Shuffle => nodes.shuffle(&mut rand::thread_rng()),
            Sorting::Timing => {
                let now = Instant::now();
                let map = self.timings.lock().unwrap_or_else(|e| e.into_inner());
                let key = |n: &Node| match map.get(&n.key()) {
                    Some((t, at)) if now.duration_since(*at) < self.timing_expiry => *t,
                    _ => -1.0,
                };
                nodes.sort_by(|a, b| key(a).total_cmp(&key(b)));
            }
            Sorting::Affinity => {
                if !self.read.is_empty() {
                    nodes.sort_by_key(|n| read_priority(&self.read, n));
                }
            }
        }
    }

    /// Does `node` match `read_affinity`? (What `read_affinity_hits` counts.)
    pub fn is_read_local(&self, node: &Node) -> bool {
        self.sorting == Sorting::Affinity && read_priority(&self.read, node) < 1 << 32
    }

    /// Record how long a node took to answer (for `timing`).
    pub fn record_timing(&self, node: &Node, elapsed: Duration) {
        if self.sorting != Sorting::Timing {
            return;
        }
        let mut map = self.timings.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(node.key(), (elapsed.as_secs_f64(), Instant::now()));
    }

    /// A node that failed sorts last under `timing` until its timing expires.
    pub fn record_failure(&self, node: &Node) {
        self.record_timing(node, Duration::from_secs(3600));
    }

    /// Write nodes with write affinity: the first `write_affinity_node_count` local
    /// nodes (primaries, then handoffs, in order), then the others in order.
    pub fn order_writes(&self, nodes: Vec<Node>, replicas: usize) -> Vec<Node> {
        if self.write.is_empty() {
            return nodes;
        }
        let want = self.write_count.of(replicas);
        let mut first = Vec::new();
        let mut rest = Vec::new();
        for n in nodes {
            if first.len() < want && self.write.iter().any(|l| l.matches(&n)) {
                first.push(n);
            } else {
                rest.push(n);
            }
        }
        first.extend(rest);
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u32, region: u32, zone: u32, index: Option<usize>) -> Node {
        Node {
            id,
            ip: "127.0.0.1".into(),
            port: 6000 + id as u16,
            device: format!("d{id}"),
            index,
            region,
            zone,
        }
    }

    fn section(extra: &str) -> crate::config::ProxySection {
        let text = format!("[tempauth]\ntoken_secret = \"0123456789\"\n[proxy]\n{extra}");
        crate::config::ProxyConfig::parse(&text, "p.toml", std::path::Path::new("/"))
            .unwrap()
            .proxy
    }

    #[test]
    fn parsing() {
        let a = parse_read_affinity("r1z1=100, r1=200").unwrap();
        assert_eq!(
            a,
            vec![
                (
                    Locality {
                        region: 1,
                        zone: Some(1)
                    },
                    100
                ),
                (
                    Locality {
                        region: 1,
                        zone: None
                    },
                    200
                )
            ]
        );
        // Sorted by priority whatever the order written.
        let b = parse_read_affinity("r2=5,r1z3=1").unwrap();
        assert_eq!(b[0].1, 1);
        assert!(parse_read_affinity("").unwrap().is_empty());
        for bad in ["r1", "x1=1", "r1z=1", "r1=a", "r=1", "r1z1z2=3", "r-1=2"] {
            assert!(parse_read_affinity(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_write_affinity("r1, r2z3").unwrap(),
            vec![
                Locality {
                    region: 1,
                    zone: None
                },
                Locality {
                    region: 2,
                    zone: Some(3)
                }
            ]
        );
        assert!(parse_write_affinity("r1,z2").is_err());
        assert_eq!(
            parse_node_count("2 * replicas"),
            Ok(NodeCount::TimesReplicas(2))
        );
        assert_eq!(parse_node_count("3*replicas").unwrap().of(3), 9);
        assert_eq!(parse_node_count(" 4 "), Ok(NodeCount::Fixed(4)));
        assert!(parse_node_count("2 * nodes").is_err());
        assert!(parse_node_count("many").is_err());
        // The config checks them.
        let ok = "[tempauth]\ntoken_secret = \"0123456789\"\n[proxy]\n";
        let parse = |extra: &str| {
            crate::config::ProxyConfig::parse(
                &format!("{ok}{extra}"),
                "p.toml",
                std::path::Path::new("/"),
            )
        };
        assert!(parse("sorting_method = \"timing\"\n").is_ok());
        assert!(parse("sorting_method = \"random\"\n").is_err());
        assert!(parse("read_affinity = \"r1z1=x\"\n").is_err());
        assert!(parse("write_affinity = \"zone1\"\n").is_err());
        assert!(parse("write_affinity_node_count = \"lots\"\n").is_err());
        assert_eq!(section("").sorting_method, "shuffle");
    }

    #[test]
    fn read_ordering() {
        let aff = Affinity::new(&section(
            "sorting_method = \"affinity\"\nread_affinity = \"r1z1=100, r1=200\"\n",
        ));
        // Ring order: r2, r1z2, r1z1, r1z2 (second), r3.
        let mut nodes = vec![
            node(0, 2, 1, Some(0)),
            node(1, 1, 2, Some(1)),
            node(2, 1, 1, Some(2)),
            node(3, 1, 2, Some(3)),
            node(4, 3, 1, Some(4)),
        ];
        aff.sort_primaries(&mut nodes);
        let ids: Vec<u32> = nodes.iter().map(|n| n.id).collect();
        // r1z1 (100), then the r1 ones (200) in ring order, then the rest in ring order.
        assert_eq!(ids, vec![2, 1, 3, 0, 4]);
        assert!(aff.is_read_local(&nodes[0]));
        assert!(aff.is_read_local(&nodes[2]));
        assert!(!aff.is_read_local(&nodes[3]));
        // Affinity without read_affinity: ring order.
        let plain = Affinity::new(&section("sorting_method = \"affinity\"\n"));
        let mut same = vec![node(5, 2, 1, Some(0)), node(6, 1, 1, Some(1))];
        plain.sort_primaries(&mut same);
        assert_eq!(same[0].id, 5);
        assert!(!plain.is_read_local(&same[1]));
        // Shuffle keeps the same nodes.
        let shuffle = Affinity::new(&section(""));
        let mut s = nodes.clone();
        shuffle.sort_primaries(&mut s);
        s.sort_by_key(|n| n.id);
        assert_eq!(
            s.iter().map(|n| n.id).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn timing_ordering() {
        let aff = Affinity::new(&section("sorting_method = \"timing\"\n"));
        let (a, b, c) = (
            node(0, 1, 1, Some(0)),
            node(1, 1, 2, Some(1)),
            node(2, 1, 3, Some(2)),
        );
        aff.record_timing(&a, Duration::from_millis(50));
        aff.record_timing(&b, Duration::from_millis(5));
        aff.record_failure(&c);
        let mut nodes = vec![a.clone(), b.clone(), c.clone(), node(3, 1, 4, Some(3))];
        aff.sort_primaries(&mut nodes);
        let ids: Vec<u32> = nodes.iter().map(|n| n.id).collect();
        // Unknown first, then fastest; the failed node last.
        assert_eq!(ids, vec![3, 1, 0, 2]);
    }

    #[test]
    fn write_ordering() {
        let aff = Affinity::new(&section(
            "write_affinity = \"r1\"\nwrite_affinity_node_count = \"1 * replicas\"\n",
        ));
        // 3 primaries (r2, r1, r2) and handoffs (r2, r1, r1).
        let nodes = vec![
            node(0, 2, 1, Some(0)),
            node(1, 1, 1, Some(1)),
            node(2, 2, 2, Some(2)),
            node(3, 2, 3, None),
            node(4, 1, 2, None),
            node(5, 1, 3, None),
        ];
        let ids: Vec<u32> = aff
            .order_writes(nodes.clone(), 3)
            .iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(ids, vec![1, 4, 5, 0, 2, 3]);
        let two = Affinity::new(&section(
            "write_affinity = \"r1\"\nwrite_affinity_node_count = \"2\"\n",
        ));
        let ids: Vec<u32> = two
            .order_writes(nodes.clone(), 3)
            .iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(ids, vec![1, 4, 0, 2, 3, 5]);
        let none = Affinity::new(&section(""));
        assert_eq!(none.order_writes(nodes.clone(), 3), nodes);
    }
}
