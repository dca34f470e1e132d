//! Node selection: error limiting, primaries-then-handoffs lists, and the assignment of
//! container (and expirer-queue) updates to object requests (`PROTOCOLS.md`, "Container
//! update", "Error limiting").

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_common::http::authority;
use cairn_ring::{Device, Ring};

/// A storage node as the proxy addresses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: u32,
    pub ip: String,
    pub port: u16,
    pub device: String,
    /// Position among the primaries; `None` for a handoff.
    pub index: Option<usize>,
    pub region: u32,
    pub zone: u32,
}

impl Node {
    pub fn from_dev(d: &Device, index: Option<usize>) -> Self {
        Node {
            id: d.id,
            ip: d.ip.clone(),
            port: d.port,
            device: d.device.clone(),
            index,
            region: d.region,
            zone: d.zone,
        }
    }
    /// `ip:port` (brackets for IPv6).
    pub fn authority(&self) -> String {
        authority(&self.ip, self.port)
    }
    /// The error-limiting key: `ip:port/device`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.authority(), self.device)
    }
}

/// Per-node error counts (Swift's `error_limit` / `error_occurred`).
#[derive(Debug)]
pub struct ErrorLimiter {
    limit: u32,
    interval: Duration,
    nodes: Mutex<HashMap<String, (u32, Instant)>>,
}

impl ErrorLimiter {
    pub fn new(limit: u32, interval: Duration) -> Self {
        ErrorLimiter {
            limit,
            interval,
            nodes: Mutex::new(HashMap::new()),
        }
    }

    /// Is the node skipped now? (More than `limit` errors, the last one within `interval`.)
    pub fn is_limited(&self, node: &Node) -> bool {
        let mut map = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let key = node.key();
        match map.get(&key) {
            None => false,
            Some((_, last)) if last.elapsed() > self.interval => {
                map.remove(&key);
                false
            }
            Some((count, _)) => *count > self.limit,
        }
    }

    /// Count one error (5xx, timeout, connection failure).
    pub fn error_occurred(&self, node: &Node, why: &str) {
        let mut map = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(node.key()).or_insert((0, Instant::now()));
        e.0 += 1;
        e.1 = Instant::now();
        tracing::warn!(node = %node.key(), errors = e.0, "{why}");
        backend_errors().with(&[&node.key(), "error"]).inc();
    }

    /// Limit the node at once (507 Insufficient Storage).
    pub fn error_limit(&self, node: &Node, why: &str) {
        let mut map = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(node.key(), (self.limit + 1, Instant::now()));
        tracing::warn!(node = %node.key(), "node error limited: {why}");
        backend_errors().with(&[&node.key(), "limited"]).inc();
    }
}

/// `cairn_proxy_backend_errors_total{node, kind}`: errors by backend node, for `/metrics`.
fn backend_errors() -> std::sync::Arc<cairn_common::metrics::CounterVec> {
    cairn_common::metrics::global().counter_vec(
        "cairn_proxy_backend_errors_total",
        "Backend errors seen by the proxy, by node (ip:port/device) and kind (error, limited)",
        &["node", "kind"],
    )
}

/// The primaries of `part`.
pub fn primaries(ring: &Ring, part: u32) -> Vec<Node> {
    ring.get_part_nodes(part)
        .map(|n| Node::from_dev(n.dev, Some(n.index)))
        .collect()
}

/// Swift's `NodeIter`: primaries then handoffs, skipping error-limited nodes, at most
/// `limit` nodes.
pub fn iter_nodes(ring: &Ring, part: u32, limiter: &ErrorLimiter, limit: usize) -> Vec<Node> {
    let mut out = Vec::new();
    for n in ring.get_part_nodes(part) {
        let node = Node::from_dev(n.dev, Some(n.index));
        if !limiter.is_limited(&node) {
            out.push(node);
            if out.len() >= limit {
                return out;
            }
        }
    }
    for h in ring.get_more_nodes(part) {
        let node = Node::from_dev(h.dev, None);
        if !limiter.is_limited(&node) {
            out.push(node);
            if out.len() >= limit {
                break;
            }
        }
    }
    out
}

/// A shared queue of nodes several concurrent writers take from: a writer whose node
/// failed takes the next one (Swift's `GreenthreadSafeIterator` over `iter_nodes`).
#[derive(Debug)]
pub struct NodePool {
    nodes: Mutex<VecDeque<Node>>,
}

impl NodePool {
    pub fn new(nodes: Vec<Node>) -> Self {
        NodePool {
            nodes: Mutex::new(nodes.into()),
        }
    }
    pub fn next_node(&self) -> Option<Node> {
        self.nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }
}

/// Which update targets each of `n_requests` backend requests carries: assignment `k` of
/// `max(n_targets, quorum_t + n_requests − quorum_r)` puts target `k mod n_targets` into
/// request `k mod n_requests`. Returns per request the target indexes.
pub fn assign_updates(
    n_requests: usize,
    request_quorum: usize,
    n_targets: usize,
    target_quorum: usize,
) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); n_requests];
    if n_requests == 0 || n_targets == 0 {
        return out;
    }
    let total = n_targets.max((target_quorum + n_requests).saturating_sub(request_quorum));
    for k in 0..total {
        let t = k % n_targets;
        let r = k % n_requests;
        if !out[r].contains(&t) {
            out[r].push(t);
        }
    }
    out
}

/// The expirer-queue assignment: like [`assign_updates`] but into request
/// `n_requests − 1 − (k mod n_requests)`.
pub fn assign_delete_at(
    n_requests: usize,
    request_quorum: usize,
    n_targets: usize,
    target_quorum: usize,
) -> Vec<Vec<usize>> {
    let mut fwd = assign_updates(n_requests, request_quorum, n_targets, target_quorum);
    fwd.reverse();
    fwd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_update_assignment() {
        // 3 object replicas (quorum 2), 3 container replicas (quorum 2): one each.
        assert_eq!(assign_updates(3, 2, 3, 2), vec![vec![0], vec![1], vec![2]]);
        // 5 object replicas (quorum 3), 3 containers: U = max(3, 2+5-3) = 4.
        assert_eq!(
            assign_updates(5, 3, 3, 2),
            vec![vec![0], vec![1], vec![2], vec![0], vec![]]
        );
        // 2 object replicas (quorum 1), 3 containers: U = max(3, 2+2-1) = 3.
        assert_eq!(assign_updates(2, 1, 3, 2), vec![vec![0, 2], vec![1]]);
        // 3 object replicas with write_quorum all, 1 container.
        assert_eq!(assign_updates(3, 3, 1, 1), vec![vec![0], vec![], vec![]]);
        assert_eq!(assign_updates(3, 2, 1, 1), vec![vec![0], vec![0], vec![]]);
        assert_eq!(
            assign_delete_at(3, 2, 3, 2),
            vec![vec![2], vec![1], vec![0]]
        );
        assert!(assign_updates(0, 0, 3, 2).is_empty());
    }

    #[test]
    fn error_limiting() {
        let l = ErrorLimiter::new(2, Duration::from_secs(60));
        let n = Node {
            id: 1,
            ip: "127.0.0.1".into(),
            port: 6200,
            device: "sda".into(),
            index: Some(0),
            region: 1,
            zone: 1,
        };
        assert_eq!(n.key(), "127.0.0.1:6200/sda");
        for _ in 0..2 {
            l.error_occurred(&n, "x");
        }
        assert!(!l.is_limited(&n));
        l.error_occurred(&n, "x");
        assert!(l.is_limited(&n));
        let m = Node {
            device: "sdb".into(),
            ..n.clone()
        };
        assert!(!l.is_limited(&m));
        l.error_limit(&m, "507");
        assert!(l.is_limited(&m));
        let quick = ErrorLimiter::new(0, Duration::from_millis(1));
        quick.error_limit(&n, "507");
        std::thread::sleep(Duration::from_millis(5));
        assert!(!quick.is_limited(&n));
    }
}
