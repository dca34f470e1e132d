//! The object-expirer (`PROTOCOLS.md`, "Async pendings" → "X-Delete-At queue"): deletes
//! objects whose `X-Delete-At` has passed, driven by the queue rows object servers write
//! into the hidden account `.expiring_objects`.
//!
//! A pass:
//! 1. lists the queue containers of `.expiring_objects` from an account primary (`GET
//!    /DEV/PART/.expiring_objects?format=json`, paginated with `marker`; primaries are
//!    tried in order until one answers 2xx) and keeps those whose name (a `%010d` time)
//!    is ≤ now;
//! 2. lists each such container from a container primary the same way; rows are named
//!    `%010d-ACCT/CONT/OBJ` (delete_at, then the target). The listing of a container stops
//!    at the first row whose delete_at is in the future (names sort by time). With
//!    `processes = N > 0`, a row belongs to process `int(md5("QCONT/ROW"), 16) % N` (as in
//!    Swift), so that N expirers (`process = 0..N-1`, usually on different nodes) share the
//!    work; `processes = 0` (the default) means one expirer handles the whole cluster;
//! 3. for each due task (at most `concurrency` at once, `tasks_per_second` started per
//!    second): finds the target container's storage policy (`HEAD` of the container on its
//!    primaries, cached for the pass; a container that is gone everywhere counts as policy
//!    0), then sends `DELETE /DEV/PART/ACCT/CONT/OBJ` to every primary of the object ring
//!    of that policy with `X-Timestamp` = delete_at (normal form), `X-If-Delete-At` =
//!    delete_at, `X-Backend-Clean-Expiring-Object-Queue: no` (the expirer pops the row
//!    itself, so the object server must not queue a second queue-row delete), and the
//!    container-update headers `X-Container-Host/Partition/Device` for the target
//!    container, assigned to the object requests exactly as the proxy does (assignment `k`
//!    of `max(Rc, Qc + Ro − Qo)` puts container node `k mod Rc` into request `k mod Ro`),
//!    so that the listing row goes away. The task is done when a quorum (`Ro / 2 + 1`) of
//!    the object primaries answered 2xx, 404 (no object), 409 (a newer write) or 412 (the
//!    object now carries another `X-Delete-At`: the task is obsolete and the newer object
//!    is left alone). **Cairn:** as `PROTOCOLS.md` says, 404 and 412 are final at once;
//!    Swift retries them until `reclaim_age`.
//! 4. a done task's queue row is deleted (`DELETE
//!    /DEV/PART/.expiring_objects/QCONT/ROW` with `X-Timestamp` now, on every primary of
//!    the queue container; done when a quorum answered 2xx/404). Tasks that are not done
//!    stay queued for the next pass.
//! 5. once every task of the pass is finished, each listed queue container is deleted
//!    (`DELETE` with `X-Timestamp` now and the account-update headers, so the account row
//!    goes too); 409 (not empty yet: tasks in the future or failed ones) and 404 are normal.
//!
//! Reporting: a log line per pass and progress every `report_interval`; recon
//! `object.recon` section `expirer` (`object_expiration_pass` seconds,
//! `expired_last_pass` tasks completed, plus `object_expiration_last` unix time and the
//! pass counters) served at `/recon/expirer/object`; Prometheus counters
//! `cairn_object_expirer_*_total`.
//!
//! Not implemented: Swift's round-robin ordering of tasks across target containers (tasks
//! run in listing order), general task queues other than `.expiring_objects`, and
//! `X-Backend-Open-Expired`/async (bulk) deletes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_common::daemon::{run_daemon, Stop};
use cairn_common::http::{self as chttp, authority, BackendClient, Timeouts};
use cairn_common::metrics::{self, Counter, Gauge};
use cairn_common::recon::ReconCache;
use cairn_common::server_config::load_role_config;
use cairn_common::{HashPathSecret, Timestamp};
use cairn_ring::{NodeRef, Ring, RingWatcher};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{ObjectServerFile, RunError};
use crate::server::EXPIRER_ACCOUNT;
use crate::updater::RateLimiter;

/// Largest listing page read from a container or account server.
const LISTING_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// The `[object-expirer]` table of `object-server.toml`.
///
/// ```toml
/// [object-expirer]
/// interval = 300            # seconds between passes
/// concurrency = 1           # tasks (object deletes) in flight
/// tasks_per_second = 50     # tasks started per second (0: unlimited)
/// processes = 0             # 0: this expirer does every task of the cluster; N > 0: the
/// process = 0               #   tasks are split N ways and this one does share `process`
/// node_timeout = 10.0       # seconds for a storage server's answer
/// conn_timeout = 0.5        # seconds to connect
/// report_interval = 300     # seconds between progress lines
/// ```
///
/// Run one expirer per cluster (on any node that has `cairn.toml` and the rings), or N of
/// them with `processes = N` and distinct `process = 0..N-1`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExpirerSection {
    pub interval: f64,
    pub concurrency: usize,
    pub tasks_per_second: f64,
    pub processes: u32,
    pub process: u32,
    pub node_timeout: f64,
    pub conn_timeout: f64,
    pub report_interval: f64,
}

impl Default for ExpirerSection {
    fn default() -> Self {
        ExpirerSection {
            interval: 300.0,
            concurrency: 1,
            tasks_per_second: 50.0,
            processes: 0,
            process: 0,
            node_timeout: 10.0,
            conn_timeout: 0.5,
            report_interval: 300.0,
        }
    }
}

impl ExpirerSection {
    /// Checks serde cannot express; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        for (key, v, min) in [
            ("interval", self.interval, 0.0),
            ("tasks_per_second", self.tasks_per_second, 0.0),
            ("node_timeout", self.node_timeout, f64::MIN_POSITIVE),
            ("conn_timeout", self.conn_timeout, f64::MIN_POSITIVE),
            ("report_interval", self.report_interval, 0.0),
        ] {
            if !(v.is_finite() && v >= min && v < 1e9) {
                return Err(format!(
                    "object-expirer.{key} must be a non-negative number, not {v}"
                ));
            }
        }
        if self.concurrency == 0 {
            return Err("object-expirer.concurrency must be at least 1".to_string());
        }
        if self.processes > 0 && self.process >= self.processes {
            return Err(format!(
                "object-expirer.process ({}) must be less than processes ({})",
                self.process, self.processes
            ));
        }
        Ok(())
    }
}

/// Settings of the object-expirer (Swift's defaults in [`ExpirerSettings::default`]).
#[derive(Debug, Clone)]
pub struct ExpirerSettings {
    pub interval: Duration,
    /// Tasks in flight (1).
    pub concurrency: usize,
    /// Tasks started per second (50; 0 = unlimited).
    pub tasks_per_second: f64,
    /// 0: do every task; N: do the tasks of share `process` of N.
    pub processes: u32,
    pub process: u32,
    /// Connect/node timeouts of backend requests (0.5 s / 10 s).
    pub timeouts: Timeouts,
    /// Seconds between progress log lines (300).
    pub report_interval: Duration,
    /// Where `object.recon` lives; `None` skips recon.
    pub recon_cache_path: Option<PathBuf>,
}

impl Default for ExpirerSettings {
    fn default() -> Self {
        ExpirerSettings {
            interval: Duration::from_secs(300),
            concurrency: 1,
            tasks_per_second: 50.0,
            processes: 0,
            process: 0,
            timeouts: Timeouts::default(),
            report_interval: Duration::from_secs(300),
            recon_cache_path: None,
        }
    }
}

impl ExpirerSettings {
    /// The settings `object-server.toml` describes.
    pub fn from_file(file: &ObjectServerFile) -> Self {
        let e = &file.expirer;
        let secs = |v: f64| Duration::try_from_secs_f64(v).unwrap_or(Duration::from_secs(1));
        ExpirerSettings {
            interval: secs(e.interval),
            concurrency: e.concurrency.max(1),
            tasks_per_second: e.tasks_per_second,
            processes: e.processes,
            process: e.process,
            timeouts: Timeouts {
                conn: secs(e.conn_timeout),
                node: secs(e.node_timeout),
            },
            report_interval: secs(e.report_interval),
            recon_cache_path: Some(file.server.recon_cache_path.clone()),
        }
    }
}

/// A ring that is either fixed (tests, embedding) or followed on disk.
#[derive(Debug, Clone)]
pub enum RingRef {
    Fixed(Arc<Ring>),
    Watched(Arc<RingWatcher>),
}

impl RingRef {
    /// The current ring (a watched one is reloaded when its file changed).
    pub fn current(&self) -> Arc<Ring> {
        match self {
            RingRef::Fixed(r) => r.clone(),
            RingRef::Watched(w) => {
                if let Err(e) = w.check_reload() {
                    tracing::warn!(ring = %w.path().display(), error = %e, "ring reload failed");
                }
                w.current()
            }
        }
    }
}

impl From<Arc<Ring>> for RingRef {
    fn from(r: Arc<Ring>) -> Self {
        RingRef::Fixed(r)
    }
}

impl From<Ring> for RingRef {
    fn from(r: Ring) -> Self {
        RingRef::Fixed(Arc::new(r))
    }
}

impl From<Arc<RingWatcher>> for RingRef {
    fn from(w: Arc<RingWatcher>) -> Self {
        RingRef::Watched(w)
    }
}

/// The rings the expirer needs: accounts (to list queue containers), containers (queue
/// containers and target containers) and the object ring of each storage policy.
#[derive(Debug, Clone)]
pub struct ExpirerRings {
    pub account: RingRef,
    pub container: RingRef,
    pub objects: Vec<(u32, RingRef)>,
}

/// One queue row: delete `/account/container/obj` at `delete_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The queue container holding the row.
    pub queue_container: String,
    /// The row's name, `%010d-ACCT/CONT/OBJ`.
    pub name: String,
    pub delete_at: u64,
    pub account: String,
    pub container: String,
    pub obj: String,
}

impl Task {
    /// Parse a queue row name; `None` when it is not `DIGITS-ACCT/CONT/OBJ` with three
    /// non-empty parts (the object part may hold `/`).
    pub fn parse(queue_container: &str, name: &str) -> Option<Task> {
        let (at, target) = name.split_once('-')?;
        if at.is_empty() || !at.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let delete_at: u64 = at.parse().ok()?;
        let mut parts = target.splitn(3, '/');
        let (a, c, o) = (parts.next()?, parts.next()?, parts.next()?);
        if a.is_empty() || c.is_empty() || o.is_empty() {
            return None;
        }
        Some(Task {
            queue_container: queue_container.to_string(),
            name: name.to_string(),
            delete_at,
            account: a.to_string(),
            container: c.to_string(),
            obj: o.to_string(),
        })
    }
}

/// Does the row `name` of `queue_container` belong to share `process` of `processes`?
/// (`int(md5("QCONT/NAME"), 16) % processes`, Swift's `hash_mod`; always true for
/// `processes == 0`.)
pub fn task_is_mine(queue_container: &str, name: &str, processes: u32, process: u32) -> bool {
    if processes == 0 {
        return true;
    }
    let digest = Md5::digest(format!("{queue_container}/{name}").as_bytes());
    let n = u128::from_be_bytes(digest.into());
    n % u128::from(processes) == u128::from(process)
}

/// `U = max(Rc, Qc + Ro − Qo)` assignments of `rc` update targets to `ro` requests:
/// assignment `k` puts target `k mod rc` into request `k mod ro` (the proxy's rule for
/// container updates, `PROTOCOLS.md` "Container update"). Returns, per request, the
/// target indexes.
pub fn assign_targets(ro: usize, rc: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); ro];
    if ro == 0 || rc == 0 {
        return out;
    }
    let qo = ro / 2 + 1;
    let qc = rc.div_ceil(2);
    let u = rc.max((qc + ro).saturating_sub(qo));
    for k in 0..u {
        let t = k % rc;
        let r = &mut out[k % ro];
        if !r.contains(&t) {
            r.push(t);
        }
    }
    out
}

/// Counters of one pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExpirerStats {
    /// Due tasks this expirer took on.
    pub tasks: u64,
    /// Tasks completed: the object is gone (or the task obsolete) and the row popped.
    pub expired: u64,
    /// Of those, tasks where some primary actually deleted the object.
    pub deleted: u64,
    /// Tasks left for the next pass (no quorum, or the row could not be popped).
    pub failures: u64,
    /// Listing failures and unparsable queue rows.
    pub errors: u64,
    /// Empty queue containers deleted.
    pub containers_deleted: u64,
}

impl std::fmt::Display for ExpirerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} tasks, {} expired ({} deleted), {} failures, {} errors, {} queue containers deleted",
            self.tasks,
            self.expired,
            self.deleted,
            self.failures,
            self.errors,
            self.containers_deleted
        )
    }
}

#[derive(Debug, Default)]
struct Counters {
    tasks: AtomicU64,
    expired: AtomicU64,
    deleted: AtomicU64,
    failures: AtomicU64,
    errors: AtomicU64,
    containers_deleted: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ExpirerStats {
        ExpirerStats {
            tasks: self.tasks.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            deleted: self.deleted.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            containers_deleted: self.containers_deleted.load(Ordering::Relaxed),
        }
    }

    fn add(which: &AtomicU64, metric: &Counter) {
        which.fetch_add(1, Ordering::Relaxed);
        metric.inc();
    }
}

struct Metrics {
    tasks: Arc<Counter>,
    expired: Arc<Counter>,
    deleted: Arc<Counter>,
    failures: Arc<Counter>,
    errors: Arc<Counter>,
    containers_deleted: Arc<Counter>,
    pass_seconds: Arc<Gauge>,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let r = metrics::global();
        Metrics {
            tasks: r.counter(
                "cairn_object_expirer_tasks_total",
                "Due expiry tasks taken on by the object-expirer.",
            ),
            expired: r.counter(
                "cairn_object_expirer_expired_total",
                "Expiry tasks completed (object gone, queue row popped).",
            ),
            deleted: r.counter(
                "cairn_object_expirer_deleted_total",
                "Expiry tasks that deleted an object.",
            ),
            failures: r.counter(
                "cairn_object_expirer_failures_total",
                "Expiry tasks left for a later pass.",
            ),
            errors: r.counter(
                "cairn_object_expirer_errors_total",
                "Listing failures and bad queue rows of the object-expirer.",
            ),
            containers_deleted: r.counter(
                "cairn_object_expirer_containers_deleted_total",
                "Empty expirer queue containers deleted.",
            ),
            pass_seconds: r.gauge(
                "cairn_object_expirer_pass_seconds",
                "Duration of the last object-expirer pass.",
            ),
        }
    })
}

/// A storage node, owned (so that no ring borrow crosses an await).
#[derive(Debug, Clone)]
struct Node {
    authority: String,
    device: String,
}

impl From<&NodeRef<'_>> for Node {
    fn from(n: &NodeRef<'_>) -> Self {
        Node {
            authority: authority(&n.ip, n.port),
            device: n.device.clone(),
        }
    }
}

/// Partition and primaries of a name.
fn placement(
    ring: &Ring,
    secret: &HashPathSecret,
    a: &str,
    c: Option<&str>,
    o: Option<&str>,
) -> (u32, Vec<Node>) {
    let (part, nodes) = ring.get_nodes(secret, a, c, o);
    (part, nodes.iter().map(Node::from).collect())
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn set(h: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        h.insert(n, v);
    }
}

/// What a listing request found.
enum Listing {
    Names(Vec<String>),
    /// Every node that answered said 404.
    NotFound,
}

struct Inner {
    settings: ExpirerSettings,
    rings: ExpirerRings,
    secret: HashPathSecret,
    client: BackendClient,
}

/// The object-expirer. Cheap to clone.
#[derive(Clone)]
pub struct ObjectExpirer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ObjectExpirer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectExpirer")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// Per-pass state shared by the task workers.
struct Pass {
    now: u64,
    counters: Counters,
    /// Storage policy of target containers (`ACCT/CONT` → index).
    policies: Mutex<HashMap<(String, String), u32>>,
}

enum Outcome {
    /// Done; `true` when some primary deleted the object.
    Done(bool),
    Retry,
}

impl ObjectExpirer {
    pub fn new(settings: ExpirerSettings, rings: ExpirerRings, secret: HashPathSecret) -> Self {
        let client = BackendClient::new(settings.timeouts);
        ObjectExpirer {
            inner: Arc::new(Inner {
                settings,
                rings,
                secret,
                client,
            }),
        }
    }

    pub fn settings(&self) -> &ExpirerSettings {
        &self.inner.settings
    }

    fn user_agent() -> String {
        format!("object-expirer {}", std::process::id())
    }

    fn base_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        set(&mut h, "User-Agent", &Self::user_agent());
        set(&mut h, "X-Trans-Id", &chttp::new_trans_id());
        h
    }

    /// Send one request; `Err` is a transport failure (logged by the caller).
    async fn send(
        &self,
        method: Method,
        node: &Node,
        path: &str,
        headers: HeaderMap,
        limit: usize,
    ) -> Result<(StatusCode, HeaderMap, Bytes), String> {
        let resp = self
            .inner
            .client
            .request_with_timeouts(
                method,
                &node.authority,
                path,
                headers,
                chttp::empty(),
                self.inner.settings.timeouts,
            )
            .await
            .map_err(|e| e.to_string())?;
        let (status, headers) = (resp.status, resp.headers.clone());
        let body = resp.bytes(limit).await.map_err(|e| e.to_string())?;
        Ok((status, headers, body))
    }

    /// One listing page (`format=json`, after `marker`) of an account or container from the
    /// first primary that answers 2xx.
    async fn list_page(
        &self,
        nodes: &[Node],
        part: u32,
        account: &str,
        container: Option<&str>,
        marker: &str,
    ) -> Result<Listing, String> {
        let mut not_found = false;
        let mut last_err = String::from("no primaries");
        for node in nodes {
            let path = format!(
                "{}?format=json&marker={}",
                chttp::backend_path(&node.device, part, account, container, None),
                chttp::quote(marker)
            );
            match self
                .send(
                    Method::GET,
                    node,
                    &path,
                    self.base_headers(),
                    LISTING_LIMIT_BYTES,
                )
                .await
            {
                Ok((StatusCode::NO_CONTENT, _, _)) => return Ok(Listing::Names(Vec::new())),
                Ok((s, _, body)) if s.is_success() => {
                    let rows: Vec<serde_json::Value> = match serde_json::from_slice(&body) {
                        Ok(r) => r,
                        Err(e) => {
                            last_err = format!("{}: bad listing: {e}", node.authority);
                            continue;
                        }
                    };
                    return Ok(Listing::Names(
                        rows.iter()
                            .filter_map(|r| r.get("name").and_then(|n| n.as_str()))
                            .map(str::to_string)
                            .collect(),
                    ));
                }
                Ok((StatusCode::NOT_FOUND, _, _)) => not_found = true,
                Ok((s, _, _)) => last_err = format!("{}/{}: {s}", node.authority, node.device),
                Err(e) => last_err = e,
            }
        }
        if not_found {
            Ok(Listing::NotFound)
        } else {
            Err(last_err)
        }
    }

    /// The due queue containers (names ≤ `now`), in order.
    async fn queue_containers(&self, now: u64) -> Result<Vec<String>, String> {
        let (part, nodes) = placement(
            &self.inner.rings.account.current(),
            &self.inner.secret,
            EXPIRER_ACCOUNT,
            None,
            None,
        );
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let names = match self
                .list_page(&nodes, part, EXPIRER_ACCOUNT, None, &marker)
                .await?
            {
                Listing::Names(n) => n,
                Listing::NotFound => break,
            };
            let Some(last) = names.last() else { break };
            marker = last.clone();
            for name in names {
                match name.parse::<u64>() {
                    Ok(t) if t > now => return Ok(out),
                    Ok(_) => out.push(name),
                    Err(_) => {
                        tracing::warn!(container = %name, "queue container with a non-numeric name skipped")
                    }
                }
            }
        }
        Ok(out)
    }

    /// One pass. Returns early (with what was done) once `stop` is raised; tasks in flight
    /// are finished first.
    pub async fn run_once(&self, stop: &Stop) -> ExpirerStats {
        let begin = Instant::now();
        let m = metrics();
        let pass = Arc::new(Pass {
            now: unix_now() as u64,
            counters: Counters::default(),
            policies: Mutex::new(HashMap::new()),
        });
        let settings = &self.inner.settings;
        tracing::info!(
            processes = settings.processes,
            process = settings.process,
            "expiration pass beginning"
        );
        let containers = match self.queue_containers(pass.now).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(account = EXPIRER_ACCOUNT, error = %e, "cannot list the expirer queue");
                Counters::add(&pass.counters.errors, &m.errors);
                Vec::new()
            }
        };
        let sem = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut limiter = RateLimiter::new(settings.tasks_per_second);
        let mut last_report = Instant::now();
        let mut listed = Vec::new();
        'containers: for qc in &containers {
            let (part, nodes) = placement(
                &self.inner.rings.container.current(),
                &self.inner.secret,
                EXPIRER_ACCOUNT,
                Some(qc),
                None,
            );
            let mut marker = String::new();
            loop {
                if stop.is_stopped() {
                    break 'containers;
                }
                let names = match self
                    .list_page(&nodes, part, EXPIRER_ACCOUNT, Some(qc), &marker)
                    .await
                {
                    Ok(Listing::Names(n)) => n,
                    Ok(Listing::NotFound) => {
                        listed.push(qc.clone());
                        break;
                    }
                    Err(e) => {
                        tracing::error!(container = %qc, error = %e, "cannot list expirer queue container");
                        Counters::add(&pass.counters.errors, &m.errors);
                        break;
                    }
                };
                let Some(last) = names.last() else {
                    listed.push(qc.clone());
                    break;
                };
                marker = last.clone();
                for name in names {
                    let Some(task) = Task::parse(qc, &name) else {
                        tracing::error!(container = %qc, row = %name, "unparsable expirer queue row skipped");
                        Counters::add(&pass.counters.errors, &m.errors);
                        continue;
                    };
                    if task.delete_at > pass.now {
                        listed.push(qc.clone());
                        continue 'containers;
                    }
                    if !task_is_mine(qc, &name, settings.processes, settings.process) {
                        continue;
                    }
                    let wait = limiter.delay(1.0);
                    if !wait.is_zero() && !stop.sleep(wait).await {
                        break 'containers;
                    }
                    let Ok(permit) = sem.clone().acquire_owned().await else {
                        break 'containers;
                    };
                    Counters::add(&pass.counters.tasks, &m.tasks);
                    let (me, shared) = (self.clone(), pass.clone());
                    tasks.spawn(async move {
                        me.process(&task, &shared).await;
                        drop(permit);
                    });
                    while tasks.try_join_next().is_some() {}
                    if last_report.elapsed() >= settings.report_interval {
                        last_report = Instant::now();
                        tracing::info!(
                            elapsed_s = begin.elapsed().as_secs_f64(),
                            "expiration pass so far: {}",
                            pass.counters.snapshot()
                        );
                    }
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        if !stop.is_stopped() {
            for qc in &listed {
                self.delete_queue_container(qc, &pass).await;
            }
        }
        let stats = pass.counters.snapshot();
        let elapsed = begin.elapsed().as_secs_f64();
        m.pass_seconds.set(elapsed);
        tracing::info!(elapsed_s = elapsed, "expiration pass completed: {stats}");
        if stop.is_stopped() {
            return stats;
        }
        if let Some(dir) = &settings.recon_cache_path {
            let cache = ReconCache::new(dir, "object");
            let value = json!({
                "object_expiration_pass": elapsed,
                "expired_last_pass": stats.expired,
                "object_expiration_last": unix_now(),
                "object_expiration_stats": {
                    "tasks": stats.tasks,
                    "expired": stats.expired,
                    "deleted": stats.deleted,
                    "failures": stats.failures,
                    "errors": stats.errors,
                    "containers_deleted": stats.containers_deleted,
                },
            });
            if let Err(e) = cache.update_async("expirer", value).await {
                tracing::warn!(error = %e, "cannot write recon cache");
            }
        }
        stats
    }

    /// Expire one task and pop its queue row when done.
    async fn process(&self, task: &Task, pass: &Pass) {
        let m = metrics();
        let c = &pass.counters;
        let deleted = match self.delete_object(task, pass).await {
            Outcome::Done(deleted) => deleted,
            Outcome::Retry => {
                Counters::add(&c.failures, &m.failures);
                return;
            }
        };
        if !self.pop_queue(task).await {
            Counters::add(&c.failures, &m.failures);
            return;
        }
        Counters::add(&c.expired, &m.expired);
        if deleted {
            Counters::add(&c.deleted, &m.deleted);
        }
        tracing::debug!(
            obj = %format!("/{}/{}/{}", task.account, task.container, task.obj),
            delete_at = task.delete_at,
            deleted,
            "expiry task done"
        );
    }

    /// The storage policy of the target container (`None`: no primary answered).
    async fn container_policy(&self, task: &Task, pass: &Pass) -> Option<u32> {
        let key = (task.account.clone(), task.container.clone());
        if let Some(p) = pass.policies.lock().ok().and_then(|m| m.get(&key).copied()) {
            return Some(p);
        }
        let (part, nodes) = placement(
            &self.inner.rings.container.current(),
            &self.inner.secret,
            &task.account,
            Some(&task.container),
            None,
        );
        let mut from_404: Option<Option<u32>> = None;
        let mut found = None;
        for node in &nodes {
            let path = chttp::backend_path(
                &node.device,
                part,
                &task.account,
                Some(&task.container),
                None,
            );
            match self
                .send(Method::HEAD, node, &path, self.base_headers(), 64 * 1024)
                .await
            {
                Ok((s, h, _)) if s.is_success() || s == StatusCode::NOT_FOUND => {
                    let policy = chttp::header_str(&h, "x-backend-storage-policy-index")
                        .and_then(|v| v.trim().parse::<u32>().ok());
                    if s.is_success() {
                        found = Some(policy.unwrap_or(0));
                        break;
                    }
                    if from_404.flatten().is_none() {
                        from_404 = Some(policy);
                    }
                }
                Ok((s, _, _)) => {
                    tracing::debug!(node = %node.authority, status = s.as_u16(), "container HEAD failed")
                }
                Err(e) => {
                    tracing::warn!(node = %node.authority, error = %e, "container HEAD failed")
                }
            }
        }
        let policy = found.or_else(|| from_404.map(|p| p.unwrap_or(0)))?;
        if let Ok(mut m) = pass.policies.lock() {
            m.insert(key, policy);
        }
        Some(policy)
    }

    /// `DELETE` the target object on its primaries with `X-If-Delete-At`.
    async fn delete_object(&self, task: &Task, pass: &Pass) -> Outcome {
        let obj_desc = format!("/{}/{}/{}", task.account, task.container, task.obj);
        let Some(policy) = self.container_policy(task, pass).await else {
            tracing::warn!(obj = %obj_desc, "no container primary answered; task retried later");
            return Outcome::Retry;
        };
        let Some(ring) = self
            .inner
            .rings
            .objects
            .iter()
            .find(|(i, _)| *i == policy)
            .map(|(_, r)| r.current())
        else {
            tracing::error!(obj = %obj_desc, policy, "no object ring for the container's storage policy");
            return Outcome::Retry;
        };
        let secret = &self.inner.secret;
        let (part, nodes) = placement(
            &ring,
            secret,
            &task.account,
            Some(&task.container),
            Some(&task.obj),
        );
        let (cpart, cnodes) = placement(
            &self.inner.rings.container.current(),
            secret,
            &task.account,
            Some(&task.container),
            None,
        );
        if nodes.is_empty() {
            tracing::error!(obj = %obj_desc, policy, "object ring has no primaries");
            return Outcome::Retry;
        }
        let assignments = assign_targets(nodes.len(), cnodes.len());
        let ts = Timestamp::from_secs(task.delete_at);
        let txn = chttp::new_trans_id();
        let mut sends = JoinSet::new();
        for (node, targets) in nodes.iter().zip(assignments) {
            let mut h = HeaderMap::new();
            set(&mut h, "X-Timestamp", &ts.normal());
            set(&mut h, "X-If-Delete-At", &format!("{:010}", task.delete_at));
            set(&mut h, "X-Backend-Clean-Expiring-Object-Queue", "no");
            set(
                &mut h,
                "X-Backend-Storage-Policy-Index",
                &policy.to_string(),
            );
            set(&mut h, "User-Agent", &Self::user_agent());
            set(&mut h, "X-Trans-Id", &txn);
            if !targets.is_empty() {
                let hosts: Vec<&str> = targets
                    .iter()
                    .map(|&t| cnodes[t].authority.as_str())
                    .collect();
                let devs: Vec<&str> = targets.iter().map(|&t| cnodes[t].device.as_str()).collect();
                set(&mut h, "X-Container-Host", &hosts.join(","));
                set(&mut h, "X-Container-Device", &devs.join(","));
                set(&mut h, "X-Container-Partition", &cpart.to_string());
            }
            let path = chttp::backend_path(
                &node.device,
                part,
                &task.account,
                Some(&task.container),
                Some(&task.obj),
            );
            let (me, node) = (self.clone(), node.clone());
            sends.spawn(async move {
                let r = me.send(Method::DELETE, &node, &path, h, 64 * 1024).await;
                (node, r)
            });
        }
        let quorum = nodes.len() / 2 + 1;
        let (mut done, mut deleted) = (0usize, false);
        while let Some(res) = sends.join_next().await {
            let Ok((node, r)) = res else { continue };
            match r {
                Ok((s, _, _)) if s.is_success() => {
                    done += 1;
                    deleted = true;
                }
                Ok((
                    StatusCode::NOT_FOUND | StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED,
                    _,
                    _,
                )) => done += 1,
                Ok((s, _, _)) => {
                    tracing::warn!(obj = %obj_desc, node = %node.authority, device = %node.device, status = s.as_u16(), "expiring DELETE refused")
                }
                Err(e) => {
                    tracing::warn!(obj = %obj_desc, node = %node.authority, error = %e, "expiring DELETE failed")
                }
            }
        }
        if done >= quorum {
            Outcome::Done(deleted)
        } else {
            tracing::info!(obj = %obj_desc, done, quorum, "expiring DELETE without quorum; task retried later");
            Outcome::Retry
        }
    }

    /// Delete the queue row on every queue container primary; `true` on a quorum of
    /// 2xx/404.
    async fn pop_queue(&self, task: &Task) -> bool {
        let (part, nodes) = placement(
            &self.inner.rings.container.current(),
            &self.inner.secret,
            EXPIRER_ACCOUNT,
            Some(&task.queue_container),
            None,
        );
        if nodes.is_empty() {
            return false;
        }
        let ts = Timestamp::now();
        let txn = chttp::new_trans_id();
        let mut sends = JoinSet::new();
        for node in nodes.iter().cloned() {
            let mut h = HeaderMap::new();
            set(&mut h, "X-Timestamp", &ts.internal());
            set(&mut h, "X-Backend-Storage-Policy-Index", "0");
            set(&mut h, "User-Agent", &Self::user_agent());
            set(&mut h, "X-Trans-Id", &txn);
            let path = chttp::backend_path(
                &node.device,
                part,
                EXPIRER_ACCOUNT,
                Some(&task.queue_container),
                Some(&task.name),
            );
            let me = self.clone();
            sends.spawn(async move {
                let r = me.send(Method::DELETE, &node, &path, h, 64 * 1024).await;
                (node, r)
            });
        }
        let mut ok = 0usize;
        while let Some(res) = sends.join_next().await {
            let Ok((node, r)) = res else { continue };
            match r {
                Ok((s, _, _)) if s.is_success() || s == StatusCode::NOT_FOUND => ok += 1,
                Ok((s, _, _)) => {
                    tracing::warn!(row = %task.name, node = %node.authority, status = s.as_u16(), "queue row DELETE refused")
                }
                Err(e) => {
                    tracing::warn!(row = %task.name, node = %node.authority, error = %e, "queue row DELETE failed")
                }
            }
        }
        let quorum = nodes.len() / 2 + 1;
        ok >= quorum
    }

    /// Delete a due queue container (409 while it still holds rows), telling the account.
    async fn delete_queue_container(&self, qc: &str, pass: &Pass) {
        let m = metrics();
        let secret = &self.inner.secret;
        let (part, nodes) = placement(
            &self.inner.rings.container.current(),
            secret,
            EXPIRER_ACCOUNT,
            Some(qc),
            None,
        );
        let (apart, anodes) = placement(
            &self.inner.rings.account.current(),
            secret,
            EXPIRER_ACCOUNT,
            None,
            None,
        );
        let assignments = assign_targets(nodes.len(), anodes.len());
        let ts = Timestamp::now();
        let txn = chttp::new_trans_id();
        let mut sends = JoinSet::new();
        for (node, targets) in nodes.iter().cloned().zip(assignments) {
            let mut h = HeaderMap::new();
            set(&mut h, "X-Timestamp", &ts.internal());
            set(&mut h, "User-Agent", &Self::user_agent());
            set(&mut h, "X-Trans-Id", &txn);
            if !targets.is_empty() {
                let hosts: Vec<&str> = targets
                    .iter()
                    .map(|&t| anodes[t].authority.as_str())
                    .collect();
                let devs: Vec<&str> = targets.iter().map(|&t| anodes[t].device.as_str()).collect();
                set(&mut h, "X-Account-Host", &hosts.join(","));
                set(&mut h, "X-Account-Device", &devs.join(","));
                set(&mut h, "X-Account-Partition", &apart.to_string());
            }
            let path = chttp::backend_path(&node.device, part, EXPIRER_ACCOUNT, Some(qc), None);
            let me = self.clone();
            sends.spawn(async move {
                let r = me.send(Method::DELETE, &node, &path, h, 64 * 1024).await;
                (node, r)
            });
        }
        let mut deleted = 0usize;
        while let Some(res) = sends.join_next().await {
            let Ok((node, r)) = res else { continue };
            match r {
                Ok((s, _, _)) if s.is_success() => deleted += 1,
                Ok((StatusCode::NOT_FOUND | StatusCode::CONFLICT, _, _)) => {}
                Ok((s, _, _)) => {
                    tracing::warn!(container = %qc, node = %node.authority, status = s.as_u16(), "queue container DELETE refused")
                }
                Err(e) => {
                    tracing::warn!(container = %qc, node = %node.authority, error = %e, "queue container DELETE failed")
                }
            }
        }
        if deleted > 0 {
            tracing::debug!(container = %qc, "empty expirer queue container deleted");
            Counters::add(&pass.counters.containers_deleted, &m.containers_deleted);
        }
    }
}

/// Load the account, container and object rings (one per configured policy; missing
/// object rings are skipped with a warning, none at all is an error) from `ring_dir`.
pub fn load_rings(cluster: &cairn_common::config::ClusterConfig) -> Result<ExpirerRings, RunError> {
    let dir = cluster.ring_dir();
    let watch = |name: &str| -> Result<RingRef, RunError> {
        let path = dir.join(name);
        RingWatcher::new(&path)
            .map(|w| RingRef::Watched(Arc::new(w)))
            .map_err(|e| RunError::Invalid(format!("cannot load {}: {e}", path.display())))
    };
    let account = watch("account.ring")?;
    let container = watch("container.ring")?;
    let mut objects = Vec::new();
    for p in &cluster.policies {
        match watch(&p.ring_name()) {
            Ok(r) => objects.push((p.index, r)),
            Err(e) => {
                tracing::warn!(policy = p.index, error = %e, "no object ring for policy; its objects cannot expire")
            }
        }
    }
    if objects.is_empty() {
        return Err(RunError::Invalid(format!(
            "no object ring found in {}",
            dir.display()
        )));
    }
    Ok(ExpirerRings {
        account,
        container,
        objects,
    })
}

/// `cairn object-expirer --config object-server.toml [--once]`: load the role file (its
/// `[object-expirer]` table) and its cluster file, follow the rings of `ring_dir`, and run
/// a pass every `interval` (or once) until SIGTERM/SIGINT. Call inside a tokio runtime.
pub async fn run_object_expirer(config: &Path, once: bool) -> Result<(), RunError> {
    let file: ObjectServerFile = load_role_config(config)?;
    let cluster = file.server.load_cluster()?;
    let rings = load_rings(&cluster)?;
    let settings = ExpirerSettings::from_file(&file);
    let interval = settings.interval;
    let expirer = ObjectExpirer::new(settings, rings, cluster.hash_path_secret());
    run_daemon("object-expirer", interval, once, |stop| {
        let expirer = expirer.clone();
        async move {
            expirer.run_once(&stop).await;
        }
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_common::server_config::parse_role_config;

    #[test]
    fn parses_task_names() {
        let t = Task::parse("1700000000", "1700006400-AUTH_test/photos/a/b.jpg").unwrap();
        assert_eq!(t.delete_at, 1_700_006_400);
        assert_eq!(
            (t.account.as_str(), t.container.as_str(), t.obj.as_str()),
            ("AUTH_test", "photos", "a/b.jpg")
        );
        assert_eq!(t.queue_container, "1700000000");
        for bad in [
            "",
            "1700006400",
            "1700006400-AUTH_test/photos",
            "1700006400-AUTH_test//o",
            "x1700-a/c/o",
            "-a/c/o",
            "17a-a/c/o",
        ] {
            assert!(Task::parse("q", bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn shares_split_the_tasks() {
        let names: Vec<String> = (0..300).map(|i| format!("{i:010}-a/c/o{i}")).collect();
        let mut counts = [0usize; 3];
        for n in &names {
            assert!(task_is_mine("q", n, 0, 0));
            let mine: Vec<u32> = (0..3).filter(|&p| task_is_mine("q", n, 3, p)).collect();
            assert_eq!(mine.len(), 1, "{n}");
            counts[mine[0] as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
        // Swift's hash_mod: int(md5("q/0000000000-a/c/o0"), 16) % 3, computed by hand.
        let digest = Md5::digest(b"q/0000000000-a/c/o0");
        let n = u128::from_be_bytes(digest.into());
        assert!(task_is_mine("q", &names[0], 3, (n % 3) as u32));
    }

    #[test]
    fn assigns_like_the_proxy() {
        assert_eq!(assign_targets(3, 3), vec![vec![0], vec![1], vec![2]]);
        // 2 container replicas, 3 object requests: U = max(2, 1 + 3 - 2) = 2
        assert_eq!(assign_targets(3, 2), vec![vec![0], vec![1], vec![]]);
        // 4 container replicas, 2 object requests
        assert_eq!(assign_targets(2, 4), vec![vec![0, 2], vec![1, 3]]);
        assert_eq!(assign_targets(0, 3), Vec::<Vec<usize>>::new());
        assert_eq!(assign_targets(2, 0), vec![Vec::<usize>::new(); 2]);
    }

    #[test]
    fn table_parses_and_validates() {
        let f: ObjectServerFile = parse_role_config(
            "[object-expirer]\ninterval = 60\nconcurrency = 4\ntasks_per_second = 0\n\
             processes = 3\nprocess = 2\nnode_timeout = 3\nconn_timeout = 0.25\n",
            "t",
            Path::new("/etc/cairn"),
        )
        .unwrap();
        let s = ExpirerSettings::from_file(&f);
        assert_eq!(s.interval, Duration::from_secs(60));
        assert_eq!((s.concurrency, s.processes, s.process), (4, 3, 2));
        assert_eq!(s.tasks_per_second, 0.0);
        assert_eq!(s.timeouts.node, Duration::from_secs(3));
        assert_eq!(s.timeouts.conn, Duration::from_millis(250));
        let d: ObjectServerFile = parse_role_config("", "t", Path::new("/")).unwrap();
        assert_eq!(d.expirer, ExpirerSection::default());
        // The sample file documents the defaults.
        let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../../etc/object-server.toml");
        if let Ok(text) = std::fs::read_to_string(sample) {
            let f: ObjectServerFile = parse_role_config(&text, sample, Path::new("/")).unwrap();
            assert_eq!(f.expirer, ExpirerSection::default());
        }
        let ds = ExpirerSettings::from_file(&d);
        assert_eq!(ds.interval, Duration::from_secs(300));
        assert_eq!((ds.concurrency, ds.tasks_per_second), (1, 50.0));
        for bad in [
            "[object-expirer]\nbogus = 1\n",
            "[object-expirer]\nconcurrency = 0\n",
            "[object-expirer]\nprocesses = 2\nprocess = 2\n",
            "[object-expirer]\ntasks_per_second = -1\n",
            "[object-expirer]\nnode_timeout = 0\n",
        ] {
            assert!(
                parse_role_config::<ObjectServerFile>(bad, "t", Path::new("/")).is_err(),
                "{bad}"
            );
        }
    }
}
