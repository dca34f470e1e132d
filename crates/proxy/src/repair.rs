//! Read repair: when an object GET missed on a primary (a 404 with no tombstone at least
//! as new, or a 5xx other than 507; a node that did not answer is left to the
//! replicator) and a later node served it (a whole-object 200, not a range), a
//! background job copies the object from the node that served it to each primary that
//! missed it: a backend PUT with the served copy's data timestamp and metadata. The
//! object server's timestamp rule makes this safe: a node holding anything newer or
//! equal (data or tombstone) answers 409 and keeps it.
//!
//! Jobs go through a bounded queue to a small pool of workers (started with the first
//! job); a full queue drops the job. Counters in the global metrics registry:
//! `cairn_proxy_read_repair_{queued,done,failed,dropped}_total`.

use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderValue, Method};
use tokio::sync::mpsc;

use cairn_common::http::{empty, BackendClient};
use cairn_common::metrics::{self, Counter};

use crate::backend::node_path;
use crate::nodes::Node;

/// One object to push back to the primaries that missed it.
#[derive(Debug, Clone)]
pub struct RepairJob {
    pub part: u32,
    pub account: String,
    pub container: String,
    pub object: String,
    pub policy_index: u32,
    /// The node that served the read.
    pub source: Node,
    /// The primaries that missed.
    pub targets: Vec<Node>,
    pub trans_id: String,
}

struct Counters {
    queued: Arc<Counter>,
    done: Arc<Counter>,
    failed: Arc<Counter>,
    dropped: Arc<Counter>,
}

impl Counters {
    fn new() -> Self {
        let r = metrics::global();
        Counters {
            queued: r.counter(
                "cairn_proxy_read_repair_queued_total",
                "Read repairs queued after a GET missed on a primary.",
            ),
            done: r.counter(
                "cairn_proxy_read_repair_done_total",
                "Objects pushed back to a primary by read repair (201, or 409: newer there).",
            ),
            failed: r.counter(
                "cairn_proxy_read_repair_failed_total",
                "Read repair pushes that failed.",
            ),
            dropped: r.counter(
                "cairn_proxy_read_repair_dropped_total",
                "Read repairs dropped because the queue was full.",
            ),
        }
    }
}

/// The read-repair queue.
pub struct ReadRepair {
    enabled: bool,
    workers: usize,
    tx: mpsc::Sender<RepairJob>,
    rx: Mutex<Option<mpsc::Receiver<RepairJob>>>,
    client: BackendClient,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for ReadRepair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadRepair")
            .field("enabled", &self.enabled)
            .field("workers", &self.workers)
            .finish()
    }
}

/// Headers of a served object that a repair PUT carries over.
fn carried(name: &str) -> bool {
    name.starts_with("x-object-meta-")
        || name.starts_with("x-object-sysmeta-")
        || name.starts_with("x-object-transient-sysmeta-")
        || matches!(
            name,
            "content-type"
                | "content-length"
                | "content-encoding"
                | "content-disposition"
                | "content-language"
                | "cache-control"
                | "expires"
                | "etag"
                | "x-delete-at"
                | "x-object-manifest"
                | "x-static-large-object"
                | "x-content-type-timestamp"
        )
}

/// The backend PUT headers repeating a served object: its metadata and its data
/// timestamp (`X-Backend-Data-Timestamp`, else `X-Timestamp`).
pub fn repair_headers(src: &HeaderMap, policy_index: u32, trans_id: &str) -> Option<HeaderMap> {
    let ts = src
        .get("x-backend-data-timestamp")
        .or_else(|| src.get("x-backend-timestamp"))
        .or_else(|| src.get("x-timestamp"))?
        .clone();
    let mut h = HeaderMap::new();
    for (k, v) in src {
        if carried(k.as_str()) {
            h.append(k.clone(), v.clone());
        }
    }
    if !h.contains_key("content-length") {
        return None;
    }
    h.insert("x-timestamp", ts);
    h.insert(
        "x-backend-storage-policy-index",
        HeaderValue::from(policy_index),
    );
    h.insert("x-trans-id", crate::auth::hv(trans_id));
    h.insert(
        "user-agent",
        crate::auth::hv(&format!("proxy-server {} read-repair", std::process::id())),
    );
    Some(h)
}

impl ReadRepair {
    pub fn new(cfg: &crate::config::ProxySection, client: BackendClient) -> Self {
        let (tx, rx) = mpsc::channel(cfg.read_repair_queue.max(1));
        ReadRepair {
            enabled: cfg.read_repair,
            workers: cfg.read_repair_workers.max(1),
            tx,
            rx: Mutex::new(Some(rx)),
            client,
            counters: Arc::new(Counters::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Queue a job without waiting; a full queue drops it. Must run inside a runtime
    /// (the workers start with the first job).
    pub fn enqueue(&self, job: RepairJob) {
        if !self.enabled || job.targets.is_empty() {
            return;
        }
        self.start_workers();
        match self.tx.try_send(job) {
            Ok(()) => self.counters.queued.inc(),
            Err(e) => {
                self.counters.dropped.inc();
                tracing::warn!(error = %e, "read repair queue full: dropped");
            }
        }
    }

    fn start_workers(&self) {
        let Some(rx) = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..self.workers {
            let rx = rx.clone();
            let client = self.client.clone();
            let counters = self.counters.clone();
            tokio::spawn(async move {
                loop {
                    let job = { rx.lock().await.recv().await };
                    let Some(job) = job else { break };
                    for target in &job.targets {
                        if repair_one(&client, &job, target).await {
                            counters.done.inc();
                        } else {
                            counters.failed.inc();
                        }
                    }
                }
            });
        }
    }
}

/// Copy the object from `job.source` to `target`; true when the target now holds it or
/// something newer (201 or 409).
async fn repair_one(client: &BackendClient, job: &RepairJob, target: &Node) -> bool {
    let (a, c, o) = (&job.account, &job.container, &job.object);
    let mut get_headers = HeaderMap::new();
    get_headers.insert(
        "x-backend-storage-policy-index",
        HeaderValue::from(job.policy_index),
    );
    get_headers.insert("x-trans-id", crate::auth::hv(&job.trans_id));
    let src_path = node_path(&job.source, job.part, a, Some(c), Some(o), None);
    let src = match client
        .request(
            Method::GET,
            &job.source.authority(),
            &src_path,
            get_headers,
            empty(),
        )
        .await
    {
        Ok(r) if r.status.as_u16() == 200 => r,
        Ok(r) => {
            tracing::info!(status = r.status.as_u16(), node = %job.source.key(), path = %src_path, "read repair: source no longer serves the object");
            return false;
        }
        Err(e) => {
            tracing::info!(error = %e, node = %job.source.key(), "read repair: source GET failed");
            return false;
        }
    };
    // Large objects' manifests are plain objects here: copied as they are.
    let Some(headers) = repair_headers(&src.headers, job.policy_index, &job.trans_id) else {
        return false;
    };
    let path = node_path(target, job.part, a, Some(c), Some(o), None);
    match client
        .request(Method::PUT, &target.authority(), &path, headers, src.body)
        .await
    {
        Ok(r) if r.status.is_success() || r.status.as_u16() == 409 => {
            tracing::info!(node = %target.key(), path = %path, status = r.status.as_u16(), "read repair");
            true
        }
        Ok(r) => {
            tracing::warn!(node = %target.key(), path = %path, status = r.status.as_u16(), "read repair PUT refused");
            false
        }
        Err(e) => {
            tracing::warn!(node = %target.key(), path = %path, error = %e, "read repair PUT failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let text = "[tempauth]\ntoken_secret = \"0123456789\"\n[proxy]\nread_repair_queue = 1\nread_repair_workers = 1\n";
        let cfg =
            crate::config::ProxyConfig::parse(text, "p.toml", std::path::Path::new("/")).unwrap();
        let rr = ReadRepair::new(
            &cfg.proxy,
            BackendClient::new(cairn_common::http::Timeouts::default()),
        );
        let node = Node {
            id: 0,
            ip: "127.0.0.1".into(),
            port: 1,
            device: "sda".into(),
            index: Some(0),
            region: 1,
            zone: 1,
        };
        let job = RepairJob {
            part: 0,
            account: "a".into(),
            container: "c".into(),
            object: "o".into(),
            policy_index: 0,
            source: node.clone(),
            targets: vec![node],
            trans_id: "tx".into(),
        };
        let dropped = rr.counters.dropped.get();
        // No await in between: the worker cannot take a job, one fits, the rest drop.
        for _ in 0..10 {
            rr.enqueue(job.clone());
        }
        assert_eq!(rr.counters.dropped.get() - dropped, 9);
        // Jobs without targets, or with read repair off, are not queued at all.
        rr.enqueue(RepairJob {
            targets: Vec::new(),
            ..job.clone()
        });
        assert_eq!(rr.counters.dropped.get() - dropped, 9);
        let off = crate::config::ProxyConfig::parse(
            &format!("{text}read_repair = false\n"),
            "p.toml",
            std::path::Path::new("/"),
        )
        .unwrap();
        let rr_off = ReadRepair::new(&off.proxy, BackendClient::new(Default::default()));
        assert!(!rr_off.enabled());
        rr_off.enqueue(job);
        assert_eq!(rr.counters.dropped.get() - dropped, 9);
    }

    #[test]
    fn headers_of_a_repair() {
        let mut src = HeaderMap::new();
        for (k, v) in [
            ("x-timestamp", "1700000001.00000"),
            ("x-backend-data-timestamp", "1700000000.00000"),
            ("x-backend-timestamp", "1700000001.00000"),
            ("content-length", "11"),
            ("content-type", "text/plain"),
            ("etag", "5eb63bbbe01eeed093cb22bb8f5acdc3"),
            ("x-object-meta-color", "blue"),
            ("last-modified", "Tue, 14 Nov 2023 22:13:20 GMT"),
            ("accept-ranges", "bytes"),
        ] {
            src.insert(
                http::HeaderName::from_static(k),
                HeaderValue::from_static(v),
            );
        }
        let h = repair_headers(&src, 1, "tx1").unwrap();
        assert_eq!(h["x-timestamp"], "1700000000.00000");
        assert_eq!(h["x-backend-storage-policy-index"], "1");
        assert_eq!(h["x-object-meta-color"], "blue");
        assert_eq!(h["content-length"], "11");
        assert!(!h.contains_key("last-modified"));
        assert!(!h.contains_key("accept-ranges"));
        src.remove("content-length");
        assert!(repair_headers(&src, 0, "tx").is_none());
    }
}
