//! The object replicator (`PROTOCOLS.md`, "Object sync protocol"; Swift's
//! `obj/replicator.py` with `sync_method = ssync`): every pass, for every local device and
//! every partition directory of every storage policy,
//!
//! - **update job** (the device is a primary): compare suffix hashes with every other
//!   primary (`REPLICATE /DEV/PART`), recompute the differing suffixes, compare again and
//!   SSYNC what still differs. A peer answering 507 or not answering at all is replaced by
//!   the next handoff (up to the number of peers plus the unavailable ones).
//! - **revert job** (a handoff): SSYNC every suffix to every primary, then delete the
//!   objects every primary confirmed (`handoff_delete = "auto"`; or after N successes),
//!   under the partition lock with a short timeout, and the partition directory once empty.
//!
//! A pass with nothing to do costs one `hashes.cache` read per partition (a listdir on
//! every 10th pass per partition) and one REPLICATE per peer. Tombstones are reclaimed by
//! the cleanup that hashing runs; temp files older than `reclaim_age` are removed each pass.
//! Per-pass stats go to the log, `object.recon` (`replication` section) and the metrics
//! registry; a device whose last clean pass is older than `reclaim_age` is warned about
//! (deleted objects could come back).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_common::daemon::Stop;
use cairn_common::http::{authority, quote, BackendClient, ClientError, Timeouts};
use cairn_common::recon::ReconCache;
use cairn_common::server_config::{load_role_config, DEFAULT_OBJECT_PORT};
use cairn_common::{HashPathSecret, Timestamp};
use cairn_ring::{Device, Ring, RingWatcher};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use rand::seq::SliceRandom;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{HandoffDelete, ObjectServerFile, ReplicatorSection, RunError};
use crate::diskfile::{cleanup_tmp_dirs, DiskConfig, DiskFileManager, HashEntry};
use crate::hashes::{append_invalidation, lock_partition, should_listdir};
use crate::layout::{is_valid_hash, is_valid_suffix, PolicyPaths};
use crate::ondisk::{cleanup_hash_dir, list_names, remove_dir_if_empty};
use crate::ssync_sender::{RateLimiter, SsyncConfig, SsyncSender};

/// Largest REPLICATE answer read.
const MAX_REPLICATE_BODY: usize = 16 * 1024 * 1024;

/// Everything a replicator needs besides its rings.
#[derive(Debug, Clone)]
pub struct ReplicatorSettings {
    /// Devices root, mount check, `reclaim_age`, lock timeout.
    pub disk: DiskConfig,
    /// This server's address: ring devices whose `ip:port` or
    /// `replication_ip:replication_port` match are local (`0.0.0.0`/`::`: any ip).
    pub bind_ip: IpAddr,
    pub bind_port: u16,
    pub conf: ReplicatorSection,
    /// Where `object.recon` is written (`None`: not written).
    pub recon_cache_path: Option<PathBuf>,
    /// Only these devices (`--devices`).
    pub only_devices: Option<Vec<String>>,
    /// Only these partitions (`--partitions`).
    pub only_partitions: Option<Vec<u32>>,
}

impl ReplicatorSettings {
    /// The settings `object-server.toml` describes.
    pub fn from_file(file: &ObjectServerFile) -> Result<Self, String> {
        let disk = file.settings(Vec::new())?.disk;
        Ok(ReplicatorSettings {
            disk,
            bind_ip: file.server.bind_ip,
            bind_port: file.server.bind_port.unwrap_or(DEFAULT_OBJECT_PORT),
            conf: file.replicator.clone(),
            recon_cache_path: Some(file.server.recon_cache_path.clone()),
            only_devices: None,
            only_partitions: None,
        })
    }
}

/// Counters of one job; summed into [`PassStats`].
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct JobStats {
    /// Partitions processed.
    pub attempted: u64,
    /// Nodes synced or found in sync.
    pub success: u64,
    /// Nodes (or local disks) that failed.
    pub failure: u64,
    /// Peers whose suffix hashes matched (no SSYNC).
    pub hashmatch: u64,
    /// Local suffixes compared.
    pub suffix_count: u64,
    /// Local suffixes (re)hashed.
    pub suffix_hash: u64,
    /// Suffixes sent with SSYNC.
    pub suffix_sync: u64,
    /// SSYNC sessions.
    pub ssync: u64,
    /// PUT/POST/DELETE subrequests sent.
    pub objects_pushed: u64,
    /// Body bytes sent.
    pub bytes_pushed: u64,
    /// Handoff partitions deleted after reverting.
    pub handoffs_removed: u64,
    /// Handoff partitions still here after their revert job.
    pub handoffs_remaining: u64,
    /// Objects deleted locally after reverting.
    pub objects_removed: u64,
    /// Failures of the local device itself (hashing, listing; included in `failure`).
    pub local_failure: u64,
}

impl JobStats {
    fn add(&mut self, o: &JobStats) {
        self.attempted += o.attempted;
        self.success += o.success;
        self.failure += o.failure;
        self.hashmatch += o.hashmatch;
        self.suffix_count += o.suffix_count;
        self.suffix_hash += o.suffix_hash;
        self.suffix_sync += o.suffix_sync;
        self.ssync += o.ssync;
        self.objects_pushed += o.objects_pushed;
        self.bytes_pushed += o.bytes_pushed;
        self.handoffs_removed += o.handoffs_removed;
        self.handoffs_remaining += o.handoffs_remaining;
        self.objects_removed += o.objects_removed;
        self.local_failure += o.local_failure;
    }
}

/// The result of one pass.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PassStats {
    #[serde(flatten)]
    pub totals: JobStats,
    /// Update and revert jobs of the pass.
    pub update_jobs: u64,
    pub revert_jobs: u64,
    /// Temp files removed.
    pub tmp_removed: u64,
    /// Unix time the pass started.
    pub start: f64,
    /// Seconds the pass took.
    pub duration: f64,
    /// `replication_ip/device` → failures.
    pub failure_nodes: BTreeMap<String, u64>,
    /// Local devices whose pass did not count as successful: a local failure, or peers
    /// tried and none reached (what the `reclaim_age` resurrection warning watches).
    pub failed_devices: Vec<String>,
}

/// One partition to replicate.
#[derive(Debug, Clone)]
struct Job {
    policy: u32,
    part: u32,
    local: Device,
    /// Update: the other primaries; revert: all primaries.
    nodes: Vec<Device>,
    revert: bool,
    ring: Arc<Ring>,
}

/// Why a REPLICATE failed.
enum RpcError {
    /// 507, timeout, unreachable: try a handoff instead.
    Unavailable(String),
    Other(String),
}

/// The object replicator of one node. Cheap to share (`Arc`).
pub struct ObjectReplicator {
    settings: ReplicatorSettings,
    mgr: DiskFileManager,
    client: BackendClient,
    sender: SsyncSender,
    rings: Vec<(u32, Arc<RingWatcher>)>,
    cycle: AtomicU64,
    recon: Option<ReconCache>,
}

impl std::fmt::Debug for ObjectReplicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReplicator")
            .field("settings", &self.settings)
            .finish()
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn secs(v: f64) -> Duration {
    Duration::try_from_secs_f64(v).unwrap_or(Duration::from_secs(1))
}

impl ObjectReplicator {
    /// A replicator for `rings` (`(policy index, ring)`).
    pub fn new(
        settings: ReplicatorSettings,
        secret: HashPathSecret,
        rings: Vec<(u32, Arc<RingWatcher>)>,
    ) -> Arc<Self> {
        let c = &settings.conf;
        let timeouts = Timeouts {
            conn: secs(c.conn_timeout),
            node: secs(c.node_timeout),
        };
        let client = BackendClient::new(timeouts);
        let mgr = DiskFileManager::new(settings.disk.clone(), secret);
        let limiter = RateLimiter::new(c.objects_per_second, c.max_bytes_per_second).map(Arc::new);
        let sender = SsyncSender::new(
            client.clone(),
            mgr.clone(),
            SsyncConfig {
                conn_timeout: timeouts.conn,
                node_timeout: timeouts.node,
                http_timeout: secs(c.http_timeout),
            },
            limiter,
        );
        let recon = settings
            .recon_cache_path
            .as_deref()
            .map(|p| ReconCache::new(p, "object"));
        Arc::new(ObjectReplicator {
            settings,
            mgr,
            client,
            sender,
            rings,
            cycle: AtomicU64::new(0),
            recon,
        })
    }

    pub fn settings(&self) -> &ReplicatorSettings {
        &self.settings
    }

    fn ip_matches(&self, ip: &str, port: u16) -> bool {
        port == self.settings.bind_port
            && (self.settings.bind_ip.is_unspecified()
                || ip
                    .trim_matches(['[', ']'])
                    .parse::<IpAddr>()
                    .is_ok_and(|a| a == self.settings.bind_ip))
    }

    fn is_local(&self, d: &Device) -> bool {
        self.ip_matches(&d.ip, d.port) || self.ip_matches(&d.replication_ip, d.replication_port)
    }

    /// The local devices of a ring that are available (and selected), one per name.
    fn local_devices(&self, ring: &Ring) -> Vec<Device> {
        let mut seen = HashSet::new();
        ring.iter_devs()
            .filter(|d| self.is_local(d))
            .filter(|d| {
                self.settings
                    .only_devices
                    .as_ref()
                    .is_none_or(|o| o.contains(&d.device))
            })
            .filter(|d| seen.insert(d.device.clone()))
            .cloned()
            .collect()
    }

    /// The jobs of a pass (blocking: lists partition directories) and the local devices.
    fn build_jobs(&self, stats: &mut PassStats) -> (Vec<Job>, Vec<String>) {
        let mut jobs = Vec::new();
        let mut devices = Vec::new();
        for (policy, watcher) in &self.rings {
            let ring = watcher.current();
            for local in self.local_devices(&ring) {
                if let Err(e) = self.mgr.device_root(&local.device) {
                    tracing::warn!(device = %local.device, error = %e, "skipping unavailable device");
                    stats.totals.failure += 1;
                    stats.totals.local_failure += 1;
                    stats.failed_devices.push(local.device.clone());
                    continue;
                }
                if !devices.contains(&local.device) {
                    devices.push(local.device.clone());
                }
                let parts = match self.mgr.list_partitions(&local.device, *policy) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(device = %local.device, policy, error = %e, "cannot list partitions");
                        stats.totals.failure += 1;
                        stats.totals.local_failure += 1;
                        stats.failed_devices.push(local.device.clone());
                        continue;
                    }
                };
                for part in parts {
                    if self
                        .settings
                        .only_partitions
                        .as_ref()
                        .is_some_and(|o| !o.contains(&part))
                    {
                        continue;
                    }
                    if part as usize >= ring.partition_count() {
                        tracing::warn!(device = %local.device, policy, part, "partition beyond the ring; skipped");
                        continue;
                    }
                    let primaries: Vec<Device> =
                        ring.get_part_nodes(part).map(|n| n.dev.clone()).collect();
                    let revert = !primaries.iter().any(|d| d.id == local.id);
                    let nodes = if revert {
                        primaries
                    } else {
                        primaries.into_iter().filter(|d| d.id != local.id).collect()
                    };
                    jobs.push(Job {
                        policy: *policy,
                        part,
                        local: local.clone(),
                        nodes,
                        revert,
                        ring: ring.clone(),
                    });
                }
            }
        }
        (jobs, devices)
    }

    /// One replication pass over every local device. Returns its stats.
    pub async fn run_pass(self: &Arc<Self>, stop: &Stop) -> PassStats {
        let cycle = self.cycle.fetch_add(1, Ordering::Relaxed);
        let begin = Instant::now();
        let mut stats = PassStats {
            start: unix_now(),
            ..PassStats::default()
        };
        for (policy, w) in &self.rings {
            match w.check_reload() {
                Ok(true) => tracing::info!(policy, ring = %w.path().display(), "ring reloaded"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(policy, error = %e, "ring reload failed; keeping the old one")
                }
            }
        }
        let me = self.clone();
        let built = tokio::task::spawn_blocking(move || {
            let mut st = PassStats::default();
            let (mut jobs, devices) = me.build_jobs(&mut st);
            // Temp files of interrupted writes, older than reclaim_age.
            let reclaim = Duration::from_secs(me.settings.disk.reclaim_age);
            for dev in &devices {
                if let Ok(root) = me.mgr.device_root(dev) {
                    match cleanup_tmp_dirs(&root, reclaim) {
                        Ok(n) => st.tmp_removed += n as u64,
                        Err(e) => tracing::warn!(device = %dev, error = %e, "temp cleanup failed"),
                    }
                }
            }
            jobs.shuffle(&mut rand::thread_rng());
            if me.settings.conf.handoffs_first {
                jobs.sort_by_key(|j| !j.revert);
            }
            (jobs, devices, st)
        })
        .await;
        let (jobs, devices, pre) = match built {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "building replication jobs failed");
                return stats;
            }
        };
        stats.totals.add(&pre.totals);
        stats.tmp_removed = pre.tmp_removed;
        stats.failed_devices = pre.failed_devices;
        stats.update_jobs = jobs.iter().filter(|j| !j.revert).count() as u64;
        stats.revert_jobs = jobs.len() as u64 - stats.update_jobs;
        tracing::info!(
            jobs = jobs.len(),
            reverts = stats.revert_jobs,
            devices = devices.len(),
            "replication pass starting"
        );

        let sem = Arc::new(Semaphore::new(self.settings.conf.concurrency.max(1)));
        let mut set: JoinSet<(String, JobStats, BTreeMap<String, u64>)> = JoinSet::new();
        let stats_every = secs(self.settings.conf.stats_interval);
        let mut last_log = Instant::now();
        let mut per_device: HashMap<String, JobStats> = HashMap::new();
        let mut collect =
            |r: Result<(String, JobStats, BTreeMap<String, u64>), tokio::task::JoinError>,
             stats: &mut PassStats| {
                match r {
                    Ok((dev, js, nodes)) => {
                        per_device.entry(dev).or_default().add(&js);
                        stats.totals.add(&js);
                        for (k, v) in nodes {
                            *stats.failure_nodes.entry(k).or_default() += v;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "replication job panicked");
                        stats.totals.failure += 1;
                    }
                }
                if last_log.elapsed() >= stats_every {
                    last_log = Instant::now();
                    tracing::info!(
                        done = stats.totals.attempted,
                        elapsed_s = begin.elapsed().as_secs_f64(),
                        "replication progress"
                    );
                }
            };
        for job in jobs {
            if stop.is_stopped() {
                break;
            }
            let Ok(permit) = sem.clone().acquire_owned().await else {
                break;
            };
            while let Some(r) = set.try_join_next() {
                collect(r, &mut stats);
            }
            let me = self.clone();
            set.spawn(async move {
                let _permit = permit;
                let dev = job.local.device.clone();
                let mut failed = BTreeMap::new();
                let js = if job.revert {
                    me.revert(&job, &mut failed).await
                } else {
                    me.update(&job, cycle, &mut failed).await
                };
                (dev, js, failed)
            });
        }
        while let Some(r) = set.join_next().await {
            collect(r, &mut stats);
        }
        for (dev, js) in per_device {
            let failed = js.local_failure > 0 || (js.success == 0 && js.failure > 0);
            if failed && !stats.failed_devices.contains(&dev) {
                stats.failed_devices.push(dev);
            }
        }

        stats.duration = begin.elapsed().as_secs_f64();
        self.report(&stats, &devices).await;
        stats
    }

    /// Log, recon cache, metrics, and the resurrection warning.
    async fn report(&self, stats: &PassStats, devices: &[String]) {
        let t = &stats.totals;
        tracing::info!(
            partitions = t.attempted,
            update_jobs = stats.update_jobs,
            revert_jobs = stats.revert_jobs,
            suffixes_checked = t.suffix_count,
            suffixes_hashed = t.suffix_hash,
            suffixes_synced = t.suffix_sync,
            hashmatch = t.hashmatch,
            ssync = t.ssync,
            objects_pushed = t.objects_pushed,
            bytes_pushed = t.bytes_pushed,
            success = t.success,
            failure = t.failure,
            handoffs_removed = t.handoffs_removed,
            handoffs_remaining = t.handoffs_remaining,
            tmp_removed = stats.tmp_removed,
            duration_s = stats.duration,
            "object replication pass complete"
        );
        let reg = cairn_common::metrics::global();
        for (name, help, v) in [
            ("partitions", "partitions replicated", t.attempted),
            ("suffixes_checked", "suffixes compared", t.suffix_count),
            ("suffixes_synced", "suffixes sent with SSYNC", t.suffix_sync),
            ("hashmatch", "peers found in sync", t.hashmatch),
            ("objects_pushed", "SSYNC subrequests sent", t.objects_pushed),
            ("bytes_pushed", "object bytes sent", t.bytes_pushed),
            ("failures", "failed node syncs", t.failure),
            (
                "handoffs_removed",
                "handoff partitions removed",
                t.handoffs_removed,
            ),
        ] {
            reg.counter(
                &format!("cairn_object_replicator_{name}_total"),
                &format!("Object replicator: {help}"),
            )
            .inc_by(v);
        }
        reg.gauge(
            "cairn_object_replicator_handoffs_remaining",
            "Handoff partitions left after the last pass",
        )
        .set(t.handoffs_remaining as f64);
        reg.gauge(
            "cairn_object_replicator_last_pass_seconds",
            "Duration of the last pass",
        )
        .set(stats.duration);
        reg.gauge(
            "cairn_object_replicator_last_pass_timestamp",
            "Unix time the last pass ended",
        )
        .set(stats.start + stats.duration);

        let Some(recon) = self.recon.clone() else {
            return;
        };
        let reclaim = self.settings.disk.reclaim_age as f64;
        let stats = stats.clone();
        let devices = devices.to_vec();
        let res = tokio::task::spawn_blocking(move || -> io::Result<()> {
            let prev = recon.get("replication").unwrap_or(json!({}));
            let mut last_ok: BTreeMap<String, f64> = prev
                .get("device_last_success")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            let now = unix_now();
            for dev in &devices {
                if !stats.failed_devices.contains(dev) {
                    last_ok.insert(dev.clone(), stats.start);
                }
            }
            for (dev, at) in &last_ok {
                if now - at > reclaim {
                    tracing::error!(
                        device = %dev,
                        last_success = at,
                        reclaim_age = reclaim,
                        "DEVICE NOT REPLICATED WITHIN reclaim_age: tombstones may be reclaimed \
                         elsewhere and deleted objects may be resurrected; wipe or re-add the device"
                    );
                }
            }
            let end = stats.start + stats.duration;
            recon.update(
                "replication",
                json!({
                    "object_replication_time": stats.duration / 60.0,
                    "object_replication_last": end,
                    "replication_time": stats.duration,
                    "replication_last": end,
                    "replication_stats": stats,
                    "device_last_success": last_ok,
                }),
            )
        })
        .await;
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the recon cache"),
            Err(e) => tracing::warn!(error = %e, "recon writer failed"),
        }
    }

    /// `REPLICATE /DEV/PART` → the node's suffix map.
    async fn replicate_rpc(
        &self,
        node: &Device,
        policy: u32,
        part: u32,
    ) -> Result<HashMap<String, Option<String>>, RpcError> {
        let mut headers = HeaderMap::new();
        headers.insert("X-Backend-Storage-Policy-Index", HeaderValue::from(policy));
        if let Ok(v) = HeaderValue::from_str(&format!("object-replicator {}", std::process::id())) {
            headers.insert(http::header::USER_AGENT, v);
        }
        let method =
            Method::from_bytes(b"REPLICATE").map_err(|e| RpcError::Other(e.to_string()))?;
        let auth = authority(&node.replication_ip, node.replication_port);
        let path = format!("/{}/{part}", quote(&node.device));
        // As in Swift, a REPLICATE may take up to `http_timeout`: the peer may have a
        // whole partition to hash.
        let timeouts = Timeouts {
            conn: self.client.timeouts().conn,
            node: secs(self.settings.conf.http_timeout),
        };
        let resp = match self
            .client
            .request_with_timeouts(
                method,
                &auth,
                &path,
                headers,
                cairn_common::http::empty(),
                timeouts,
            )
            .await
        {
            Ok(r) => r,
            Err(e @ (ClientError::Connect { .. } | ClientError::ConnectTimeout { .. })) => {
                return Err(RpcError::Unavailable(e.to_string()))
            }
            Err(e) if e.is_timeout() => return Err(RpcError::Unavailable(e.to_string())),
            Err(e) => return Err(RpcError::Other(e.to_string())),
        };
        if resp.status == StatusCode::INSUFFICIENT_STORAGE {
            return Err(RpcError::Unavailable(format!(
                "{auth}/{} responded as unmounted",
                node.device
            )));
        }
        if resp.status != StatusCode::OK {
            return Err(RpcError::Other(format!(
                "REPLICATE answered {}",
                resp.status
            )));
        }
        let body = resp.bytes(MAX_REPLICATE_BODY).await.map_err(|e| {
            if e.kind() == io::ErrorKind::TimedOut {
                RpcError::Unavailable(e.to_string())
            } else {
                RpcError::Other(e.to_string())
            }
        })?;
        serde_json::from_slice(&body)
            .map_err(|e| RpcError::Other(format!("bad REPLICATE body: {e}")))
    }

    async fn local_hashes(
        &self,
        job: &Job,
        recalculate: Vec<String>,
        do_listdir: bool,
    ) -> crate::error::Result<crate::hashes::GetHashes> {
        let mgr = self.mgr.clone();
        let (dev, policy, part) = (job.local.device.clone(), job.policy, job.part);
        tokio::task::spawn_blocking(move || {
            mgr.get_hashes(&dev, policy, part, &recalculate, do_listdir)
        })
        .await
        .map_err(|e| crate::error::DiskError::Io(io::Error::other(e)))?
    }

    /// A primary's job: push differing suffixes to the other primaries.
    async fn update(&self, job: &Job, cycle: u64, failed: &mut BTreeMap<String, u64>) -> JobStats {
        let mut st = JobStats {
            attempted: 1,
            ..JobStats::default()
        };
        let dev = &job.local.device;
        let mut local = match self
            .local_hashes(job, Vec::new(), should_listdir(job.part, cycle))
            .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(device = %dev, part = job.part, error = %e, "cannot hash partition");
                st.failure += 1;
                st.local_failure += 1;
                return st;
            }
        };
        st.suffix_hash += local.hashed as u64;
        st.suffix_count += local.hashes.len() as u64;

        let mut peers = job.nodes.clone();
        peers.shuffle(&mut rand::thread_rng());
        let mut candidates = peers.into_iter().chain(
            job.ring
                .get_more_nodes(job.part)
                .map(|h| h.dev.clone())
                .filter(|d| d.id != job.local.id),
        );
        let mut attempts = job.nodes.len();
        let mut synced_regions = HashSet::new();
        while attempts > 0 {
            let Some(node) = candidates.next() else {
                break;
            };
            attempts -= 1;
            if node.region != job.local.region && synced_regions.contains(&node.region) {
                continue;
            }
            let node_key = format!("{}/{}", node.replication_ip, node.device);
            let remote = match self.replicate_rpc(&node, job.policy, job.part).await {
                Ok(r) => r,
                Err(RpcError::Unavailable(why)) => {
                    tracing::warn!(device = %dev, part = job.part, node = %node_key, error = %why, "peer unavailable; trying a handoff");
                    attempts += 1;
                    st.failure += 1;
                    *failed.entry(node_key).or_default() += 1;
                    continue;
                }
                Err(RpcError::Other(why)) => {
                    tracing::error!(device = %dev, part = job.part, node = %node_key, error = %why, "REPLICATE failed");
                    st.failure += 1;
                    *failed.entry(node_key).or_default() += 1;
                    continue;
                }
            };
            let mut suffixes = differing(&local.hashes, &remote);
            if suffixes.is_empty() {
                st.hashmatch += 1;
                st.success += 1;
                continue;
            }
            match self.local_hashes(job, suffixes.clone(), false).await {
                Ok(h) => {
                    st.suffix_hash += h.hashed as u64;
                    local = h;
                }
                Err(e) => {
                    tracing::error!(device = %dev, part = job.part, error = %e, "cannot rehash suffixes");
                    st.failure += 1;
                    st.local_failure += 1;
                    return st;
                }
            }
            suffixes = differing(&local.hashes, &remote);
            if suffixes.is_empty() {
                st.hashmatch += 1;
                st.success += 1;
                continue;
            }
            st.ssync += 1;
            match self
                .sender
                .sync(dev, job.policy, job.part, &suffixes, &node, None)
                .await
            {
                Ok(out) => {
                    st.success += 1;
                    st.suffix_sync += suffixes.len() as u64;
                    st.objects_pushed += out.subrequests;
                    st.bytes_pushed += out.bytes;
                    if node.region != job.local.region {
                        synced_regions.insert(node.region);
                    }
                    tracing::debug!(device = %dev, part = job.part, node = %node_key, suffixes = suffixes.len(), sent = out.subrequests, "synced");
                }
                Err(e) => {
                    tracing::error!(device = %dev, part = job.part, node = %node_key, error = %e, "SSYNC failed");
                    st.failure += 1;
                    *failed.entry(node_key).or_default() += 1;
                }
            }
        }
        st
    }

    /// A handoff's job: push everything to every primary, then delete what they confirmed.
    async fn revert(&self, job: &Job, failed: &mut BTreeMap<String, u64>) -> JobStats {
        let mut st = JobStats {
            attempted: 1,
            ..JobStats::default()
        };
        let dev = job.local.device.clone();
        let paths = match self.mgr.policy_paths(&dev, job.policy) {
            Ok(p) => p,
            Err(e) => {
                st.failure += 1;
                st.local_failure += 1;
                tracing::error!(device = %dev, error = %e, "device unavailable");
                return st;
            }
        };
        let part_dir = paths.partition_dir(job.part);
        let pd = part_dir.clone();
        let suffixes: Vec<String> = tokio::task::spawn_blocking(move || {
            list_names(&pd)
                .map(|n| n.into_iter().filter(|s| is_valid_suffix(s)).collect())
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default();
        st.suffix_count += suffixes.len() as u64;
        let lock_timeout = secs(self.settings.conf.revert_lock_timeout);
        let reclaim = self.settings.disk.reclaim_age;

        if suffixes.is_empty() {
            let p = paths.clone();
            let part = job.part;
            let r = tokio::task::spawn_blocking(move || {
                delete_reverted(&p, part, &HashMap::new(), reclaim, lock_timeout)
            })
            .await;
            match r {
                Ok(Ok((_, true))) => st.handoffs_removed += 1,
                Ok(Ok((_, false))) => st.handoffs_remaining += 1,
                Ok(Err(e)) => {
                    tracing::warn!(device = %dev, part = job.part, error = %e, "cannot remove empty handoff partition");
                    st.handoffs_remaining += 1;
                }
                Err(_) => st.handoffs_remaining += 1,
            }
            return st;
        }

        let mut successes = 0usize;
        let mut confirmed: Option<HashMap<String, HashEntry>> = None;
        let mut region_objs: HashMap<u32, HashSet<String>> = HashMap::new();
        for node in &job.nodes {
            let node_key = format!("{}/{}", node.replication_ip, node.device);
            let check = if node.region != job.local.region {
                region_objs.get(&node.region).cloned()
            } else {
                None
            };
            st.ssync += 1;
            match self
                .sender
                .sync(&dev, job.policy, job.part, &suffixes, node, check.as_ref())
                .await
            {
                Ok(out) => {
                    successes += 1;
                    st.success += 1;
                    st.suffix_sync += suffixes.len() as u64;
                    st.objects_pushed += out.subrequests;
                    st.bytes_pushed += out.bytes;
                    if node.region != job.local.region {
                        region_objs
                            .entry(node.region)
                            .or_insert_with(|| out.in_sync.keys().cloned().collect());
                    }
                    confirmed = Some(match confirmed {
                        None => out.in_sync,
                        Some(mut c) => {
                            c.retain(|h, e| out.in_sync.get(h) == Some(e));
                            c
                        }
                    });
                }
                Err(e) => {
                    tracing::error!(device = %dev, part = job.part, node = %node_key, error = %e, "SSYNC (revert) failed");
                    st.failure += 1;
                    *failed.entry(node_key).or_default() += 1;
                }
            }
        }
        let delete = match self.settings.conf.handoff_delete {
            HandoffDelete::Auto => !job.nodes.is_empty() && successes == job.nodes.len(),
            HandoffDelete::After(n) => successes >= n,
        };
        if !delete {
            st.handoffs_remaining += 1;
            return st;
        }
        let confirmed = confirmed.unwrap_or_default();
        let p = paths.clone();
        let part = job.part;
        let r = tokio::task::spawn_blocking(move || {
            delete_reverted(&p, part, &confirmed, reclaim, lock_timeout)
        })
        .await;
        match r {
            Ok(Ok((n, removed))) => {
                st.objects_removed += n as u64;
                if removed {
                    st.handoffs_removed += 1;
                    tracing::info!(device = %dev, part = job.part, "removed reverted handoff partition");
                } else {
                    st.handoffs_remaining += 1;
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(device = %dev, part = job.part, error = %e, "cannot remove reverted objects (busy?); next pass retries");
                st.handoffs_remaining += 1;
            }
            Err(_) => st.handoffs_remaining += 1,
        }
        st
    }
}

/// Suffixes whose local hash differs from the remote's (suffixes only the remote has are
/// not pulled: the remote pushes them itself).
fn differing(
    local: &crate::hashes::SuffixHashes,
    remote: &HashMap<String, Option<String>>,
) -> Vec<String> {
    local
        .iter()
        .filter(|(s, h)| match remote.get(*s) {
            None => true,
            Some(r) => h.map(|d| cairn_common::to_hex(&d)) != *r,
        })
        .map(|(s, _)| s.clone())
        .collect()
}

/// The [`HashEntry`] of a hash dir's current state (as `yield_hashes` reports it).
fn current_entry(hash: &str, info: &crate::ondisk::OnDiskInfo) -> Option<HashEntry> {
    let ts_data = match (&info.data, &info.ts) {
        (Some(d), _) => d.ts,
        (None, Some(t)) => t.ts,
        (None, None) => return None,
    };
    Some(HashEntry {
        hash: hash.to_string(),
        ts_data,
        deleted: info.data.is_none(),
        ts_meta: info
            .meta
            .as_ref()
            .map(|m| m.ts)
            .filter(|_| info.data.is_some()),
        ts_ctype: info.ctype_ts(),
    })
}

/// After a successful revert: under the partition lock (short timeout, so that a revert
/// never races an SSYNC receiver writing into the partition), delete the hash dirs whose
/// state is still exactly what the primaries confirmed, invalidate their suffixes, and
/// remove the partition directory once no suffix dir is left. Returns (objects removed,
/// partition removed).
pub fn delete_reverted(
    paths: &PolicyPaths,
    part: u32,
    confirmed: &HashMap<String, HashEntry>,
    reclaim_age: u64,
    lock_timeout: Duration,
) -> crate::error::Result<(usize, bool)> {
    let part_dir = paths.partition_dir(part);
    let Some(lock) = lock_partition(&part_dir, false, lock_timeout)? else {
        return Ok((0, true));
    };
    let now = Timestamp::now();
    let mut removed = 0;
    let mut touched = HashSet::new();
    for (hash, want) in confirmed {
        if !is_valid_hash(hash) {
            continue;
        }
        let hdir = paths.hash_dir(part, hash);
        let info = match cleanup_hash_dir(&hdir, now, reclaim_age) {
            Ok(i) => i,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        if current_entry(hash, &info).as_ref() != Some(want) {
            continue; // changed since the sync: keep it for the next pass
        }
        match std::fs::remove_dir_all(&hdir) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(sdir) = hdir.parent() {
            remove_dir_if_empty(sdir);
        }
        touched.insert(cairn_common::suffix_of(hash).to_string());
    }
    let left = match list_names(&part_dir) {
        Ok(n) => n.iter().any(|s| is_valid_suffix(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((removed, true)),
        Err(e) => return Err(e.into()),
    };
    if left {
        // Rehash what changed (a vanished suffix drops out of the cache when rehashed).
        for s in &touched {
            append_invalidation(&part_dir, s)?;
        }
        drop(lock);
        return Ok((removed, false));
    }
    std::fs::remove_dir_all(&part_dir).or_else(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    drop(lock);
    Ok((removed, true))
}

/// Load the object rings of the cluster's policies (missing rings are skipped with a
/// warning; none at all is an error).
fn load_rings(
    cluster: &cairn_common::config::ClusterConfig,
    check_interval: Duration,
) -> Result<Vec<(u32, Arc<RingWatcher>)>, RunError> {
    let dir = cluster.ring_dir();
    let mut rings = Vec::new();
    for p in &cluster.policies {
        let path = dir.join(p.ring_name());
        match RingWatcher::with_interval(&path, check_interval) {
            Ok(w) => rings.push((p.index, Arc::new(w))),
            Err(e) => {
                tracing::warn!(policy = p.index, ring = %path.display(), error = %e, "no object ring for policy; skipped")
            }
        }
    }
    if rings.is_empty() {
        return Err(RunError::Invalid(format!(
            "no object ring found in {}",
            dir.display()
        )));
    }
    Ok(rings)
}

/// `cairn object-replicator --config object-server.toml [--once] [--devices a,b]
/// [--partitions 1,2]`: replicate every `interval` (or once) until SIGTERM/SIGINT.
/// Call inside a tokio runtime.
pub async fn run_object_replicator(
    config: &Path,
    once: bool,
    devices: Option<Vec<String>>,
    partitions: Option<Vec<u32>>,
) -> Result<(), RunError> {
    let file: ObjectServerFile = load_role_config(config)?;
    let cluster = file.server.load_cluster()?;
    let mut settings = ReplicatorSettings::from_file(&file).map_err(RunError::Invalid)?;
    settings.only_devices = devices;
    settings.only_partitions = partitions;
    let rings = load_rings(&cluster, secs(file.replicator.ring_check_interval))?;
    let interval = secs(file.replicator.interval);
    let r = ObjectReplicator::new(settings, cluster.hash_path_secret(), rings);
    cairn_common::daemon::run_daemon("object-replicator", interval, once, move |stop| {
        let r = r.clone();
        async move {
            r.run_pass(&stop).await;
        }
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_suffixes() {
        let mut local = crate::hashes::SuffixHashes::new();
        local.insert("abc".into(), Some([1; 16]));
        local.insert("def".into(), Some([2; 16]));
        local.insert("012".into(), None);
        let mut remote = HashMap::new();
        remote.insert("abc".to_string(), Some(cairn_common::to_hex(&[1; 16])));
        remote.insert("def".to_string(), Some(cairn_common::to_hex(&[3; 16])));
        remote.insert("fff".to_string(), Some(cairn_common::to_hex(&[4; 16])));
        // Same hash: in sync; different: sent; only local: sent; only remote: not pulled;
        // an unhashable local suffix matches only a remote null.
        assert_eq!(differing(&local, &remote), vec!["012", "def"]);
        remote.insert("012".to_string(), None);
        assert_eq!(differing(&local, &remote), vec!["def"]);
    }

    #[tokio::test]
    async fn rate_limiter_paces_objects_and_bytes() {
        assert!(RateLimiter::new(0.0, 0).is_none());
        let l = RateLimiter::new(50.0, 0).unwrap();
        let begin = Instant::now();
        for _ in 0..6 {
            l.object().await;
        }
        // 6 objects at 50/s: the 6th waits until 100 ms.
        assert!(
            begin.elapsed() >= Duration::from_millis(95),
            "{:?}",
            begin.elapsed()
        );
        let l = RateLimiter::new(0.0, 10_000).unwrap();
        let begin = Instant::now();
        l.bytes(1000).await;
        l.bytes(1000).await;
        assert!(
            begin.elapsed() >= Duration::from_millis(95),
            "{:?}",
            begin.elapsed()
        );
        assert!(begin.elapsed() < Duration::from_secs(2));
    }
}
