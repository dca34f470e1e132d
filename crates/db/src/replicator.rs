//! The DB replicator (`PROTOCOLS.md`, "DB replication protocol"), the sending side, for
//! containers and accounts alike (generic over [`Kind`]). The receiving side is
//! [`crate::rpc`].
//!
//! Per DB on a local device: commit pending rows, reclaim, read the replication info; if
//! the DB is reclaimable remove it; otherwise push it to the other primaries (a primary
//! at index *i* pushes to `nodes[i+1..] + nodes[..i]`, a handoff to all primaries; a 507
//! moves on to the next handoff node): `sync`, then nothing (in sync), `merge_items`
//! batches plus `merge_syncs` (usync), or a whole-file copy (`PUT /DEV/tmp/ID` with a
//! SHA-256 checksum, from a backup-API snapshot) followed by `complete_rsync` (remote has
//! no DB) or `rsync_then_merge` (remote far behind). A handoff DB is removed once every
//! primary took it and no rows arrived during the pass.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_common::daemon::Stop;
use cairn_common::http::{self as chttp, authority, check_device, BackendClient, Timeouts};
use cairn_common::Timestamp;
use cairn_ring::types::Device;
use cairn_ring::Ring;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::broker::{Broker, Kind, ReplicationInfo};
use crate::util::DirLock;

/// Settings (Swift's defaults).
#[derive(Debug, Clone)]
pub struct ReplicatorSettings {
    pub devices: PathBuf,
    pub mount_check: bool,
    /// This node's addresses: ring devices whose `(replication_ip, replication_port)` or
    /// `(ip, port)` match one of them with `bind_port` are local (`0.0.0.0`/`::` match
    /// any address).
    pub bind_ips: Vec<String>,
    pub bind_port: u16,
    /// Time between passes (30 s).
    pub interval: Duration,
    /// DBs replicated in parallel (8).
    pub concurrency: usize,
    /// Rows per `merge_items` batch (1000).
    pub per_diff: usize,
    /// Batches per DB and pass (100).
    pub max_diffs: usize,
    /// Tombstone and DB reclaim age (604800 s).
    pub reclaim_age: u64,
    pub timeouts: Timeouts,
    /// At most this many DBs started per second (50; 0: unlimited).
    pub databases_per_second: f64,
}

impl ReplicatorSettings {
    pub fn new(devices: impl Into<PathBuf>, bind_ips: Vec<String>, bind_port: u16) -> Self {
        ReplicatorSettings {
            devices: devices.into(),
            mount_check: false,
            bind_ips,
            bind_port,
            interval: Duration::from_secs(30),
            concurrency: 8,
            per_diff: 1000,
            max_diffs: 100,
            reclaim_age: 604_800,
            timeouts: Timeouts::default(),
            databases_per_second: 50.0,
        }
    }
}

/// Counters of one pass (Swift's replication stats, for recon).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationStats {
    pub attempted: u64,
    pub success: u64,
    pub failure: u64,
    pub no_change: u64,
    pub hashmatch: u64,
    pub diff: u64,
    pub diff_capped: u64,
    pub rsync: u64,
    pub remote_merge: u64,
    pub remove: u64,
}

#[derive(Default)]
struct Counters([AtomicU64; 10]);

impl Counters {
    fn inc(&self, i: usize) {
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }
    fn get(&self) -> ReplicationStats {
        let g = |i: usize| self.0[i].load(Ordering::Relaxed);
        ReplicationStats {
            attempted: g(0),
            success: g(1),
            failure: g(2),
            no_change: g(3),
            hashmatch: g(4),
            diff: g(5),
            diff_capped: g(6),
            rsync: g(7),
            remote_merge: g(8),
            remove: g(9),
        }
    }
}

const ATTEMPTED: usize = 0;
const SUCCESS: usize = 1;
const FAILURE: usize = 2;
const NO_CHANGE: usize = 3;
const HASHMATCH: usize = 4;
const DIFF: usize = 5;
const DIFF_CAPPED: usize = 6;
const RSYNC: usize = 7;
const REMOTE_MERGE: usize = 8;
const REMOVE: usize = 9;

/// The replicator for one DB kind and its ring.
pub struct DbReplicator<K: Kind> {
    settings: ReplicatorSettings,
    ring: Arc<Ring>,
    client: BackendClient,
    counters: Counters,
    _k: std::marker::PhantomData<K>,
}

/// Outcome of pushing one DB to one node.
enum NodeResult {
    Ok,
    Failed,
    /// 507: try another node.
    Unavailable,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

impl<K: Kind> DbReplicator<K> {
    pub fn new(settings: ReplicatorSettings, ring: Arc<Ring>) -> Arc<Self> {
        let client = BackendClient::new(settings.timeouts);
        Arc::new(DbReplicator {
            settings,
            ring,
            client,
            counters: Counters::default(),
            _k: std::marker::PhantomData,
        })
    }

    /// `ip:port` is this node's: the port is `bind_port` and the address is one of
    /// `bind_ips` (compared as addresses; an unspecified bind address `0.0.0.0`/`::`
    /// matches any).
    fn addr_matches(&self, ip: &str, port: u16) -> bool {
        if port != self.settings.bind_port {
            return false;
        }
        let ip = ip.trim_matches(['[', ']']);
        let parsed = ip.parse::<std::net::IpAddr>().ok();
        self.settings.bind_ips.iter().any(|b| {
            let b = b.trim_matches(['[', ']']);
            match (b.parse::<std::net::IpAddr>(), parsed) {
                (Ok(a), _) if a.is_unspecified() => true,
                (Ok(a), Some(p)) => a == p,
                _ => b == ip,
            }
        })
    }

    /// A ring device is local when its replication address or its address is ours.
    fn is_local(&self, d: &Device) -> bool {
        self.addr_matches(&d.replication_ip, d.replication_port) || self.addr_matches(&d.ip, d.port)
    }

    /// `(device id, device name)` of every local ring device that is usable.
    fn local_devices(&self) -> Vec<(u32, String)> {
        let mut out: Vec<(u32, String)> = self
            .ring
            .iter_devs()
            .filter(|d| self.is_local(d))
            .filter(|d| {
                check_device(&self.settings.devices, &d.device, self.settings.mount_check).is_ok()
            })
            .map(|d| (d.id, d.device.clone()))
            .collect();
        out.sort();
        out.dedup_by(|a, b| a.1 == b.1);
        out
    }

    /// One pass over every DB of every local device. Returns this pass's stats.
    pub async fn run_once(self: &Arc<Self>, stop: &Stop) -> ReplicationStats {
        let before = self.counters.get();
        let devices = self.local_devices();
        let root = self.settings.devices.clone();
        let max_age = Duration::from_secs(self.settings.reclaim_age);
        let dbs = blocking(move || {
            let mut v = Vec::new();
            for (id, dev) in devices {
                let dev_dir = root.join(&dev);
                remove_old_files(&dev_dir.join("tmp"), max_age, |_| true);
                for (part, db) in list_dbs(&dev_dir.join(K::DATADIR)) {
                    if let Some(hash_dir) = db.parent() {
                        remove_old_files(hash_dir, max_age, |n| n.ends_with(".tmp"));
                    }
                    v.push((id, part, db));
                }
            }
            v
        })
        .await
        .unwrap_or_default();
        let sem = Arc::new(tokio::sync::Semaphore::new(
            self.settings.concurrency.max(1),
        ));
        let mut tasks = tokio::task::JoinSet::new();
        let rate = self.settings.databases_per_second;
        let gap = if rate.is_finite() && rate > 0.0 {
            Duration::from_secs_f64(1.0 / rate)
        } else {
            Duration::ZERO
        };
        for (dev_id, part, db) in dbs {
            if stop.is_stopped() {
                break;
            }
            let Ok(permit) = sem.clone().acquire_owned().await else {
                break;
            };
            let this = self.clone();
            tasks.spawn(async move {
                this.replicate_db(dev_id, part, db).await;
                drop(permit);
            });
            if !gap.is_zero() && !stop.sleep(gap).await {
                break;
            }
        }
        while tasks.join_next().await.is_some() {}
        let after = self.counters.get();
        let d = |a: u64, b: u64| a - b;
        let s = ReplicationStats {
            attempted: d(after.attempted, before.attempted),
            success: d(after.success, before.success),
            failure: d(after.failure, before.failure),
            no_change: d(after.no_change, before.no_change),
            hashmatch: d(after.hashmatch, before.hashmatch),
            diff: d(after.diff, before.diff),
            diff_capped: d(after.diff_capped, before.diff_capped),
            rsync: d(after.rsync, before.rsync),
            remote_merge: d(after.remote_merge, before.remote_merge),
            remove: d(after.remove, before.remove),
        };
        tracing::info!(kind = K::DATADIR, ?s, "db replication pass");
        s
    }

    /// Replicate one DB file found in partition `dir_part` of local device `dev_id`.
    pub async fn replicate_db(self: &Arc<Self>, dev_id: u32, dir_part: u32, db_file: PathBuf) {
        self.counters.inc(ATTEMPTED);
        let reclaim_age = self.settings.reclaim_age;
        let path = db_file.clone();
        let prep = blocking(move || -> crate::Result<(ReplicationInfo, bool)> {
            let b = Broker::<K>::open(&path)?;
            let now = Timestamp::now();
            b.reclaim(now, reclaim_age)?;
            let info = b.get_replication_info()?;
            let reclaimable = K::is_reclaimable(&b, now, reclaim_age)?;
            Ok((info, reclaimable))
        })
        .await;
        let (info, reclaimable) = match prep {
            Some(Ok(x)) => x,
            Some(Err(e)) => {
                tracing::error!(db = %db_file.display(), "cannot replicate: {e}");
                self.counters.inc(FAILURE);
                return;
            }
            None => return,
        };
        if reclaimable {
            if remove_db(&db_file).await {
                self.counters.inc(REMOVE);
            }
            return;
        }
        let Some(hash) = db_file
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
        else {
            return;
        };
        // The ring's partition for this DB (a DB in the wrong partition dir is a handoff).
        let part = partition_of_hash(&hash, self.ring.part_power()).unwrap_or(dir_part);
        let primaries: Vec<Device> = self
            .ring
            .get_part_nodes(part)
            .map(|n| n.dev.clone())
            .collect();
        let my_index = primaries.iter().position(|d| d.id == dev_id);
        let should_be_here = my_index.is_some() && part == dir_part;
        let mut targets: Vec<Device> = match my_index {
            Some(i) => primaries[i + 1..]
                .iter()
                .chain(primaries[..i].iter())
                .cloned()
                .collect(),
            None => primaries.clone(),
        };
        if !should_be_here {
            // A handoff pushes to every primary. A copy in the wrong partition directory
            // also goes to its own device's right place (through our own server).
            targets = primaries
                .iter()
                .filter(|d| d.id != dev_id || part != dir_part)
                .cloned()
                .collect();
        }
        let mut handoffs = self
            .ring
            .get_more_nodes(part)
            .map(|h| h.dev.clone())
            .filter(|d| d.id != dev_id)
            .collect::<Vec<_>>()
            .into_iter();
        let mut all_ok = true;
        let mut i = 0;
        while i < targets.len() {
            let node = targets[i].clone();
            i += 1;
            match self.push_to_node(&node, part, &hash, &db_file, &info).await {
                NodeResult::Ok => self.counters.inc(SUCCESS),
                NodeResult::Failed => {
                    all_ok = false;
                    self.counters.inc(FAILURE);
                }
                NodeResult::Unavailable => {
                    all_ok = false;
                    self.counters.inc(FAILURE);
                    if let Some(h) = handoffs.next() {
                        targets.push(h);
                    }
                }
            }
        }
        if !should_be_here && all_ok {
            // delete the handoff copy unless rows arrived meanwhile
            let path = db_file.clone();
            let unchanged = blocking(move || {
                Broker::<K>::open(&path)
                    .and_then(|b| {
                        b.commit_puts()?;
                        b.max_row()
                    })
                    .ok()
            })
            .await
            .flatten()
                == Some(info.max_row);
            if unchanged && remove_db(&db_file).await {
                self.counters.inc(REMOVE);
            }
        }
    }

    async fn rpc(
        &self,
        node: &Device,
        part: u32,
        hash: &str,
        body: Value,
    ) -> Option<(StatusCode, Bytes)> {
        let auth = authority(&node.replication_ip, node.replication_port);
        let path = format!("/{}/{part}/{hash}", chttp::quote(&node.device));
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let method = Method::from_bytes(b"REPLICATE").ok()?;
        match self
            .client
            .request(method, &auth, &path, h, chttp::full(body.to_string()))
            .await
        {
            Ok(r) => {
                let status = r.status;
                let body = r.bytes(64 << 20).await.unwrap_or_default();
                Some((status, body))
            }
            Err(e) => {
                tracing::warn!("REPLICATE to {auth}{path} failed: {e}");
                None
            }
        }
    }

    async fn push_to_node(
        &self,
        node: &Device,
        part: u32,
        hash: &str,
        db_file: &Path,
        info: &ReplicationInfo,
    ) -> NodeResult {
        let sync = serde_json::json!([
            "sync",
            info.max_row,
            info.hash,
            info.id,
            info.created_at,
            info.put_timestamp,
            info.delete_timestamp,
            info.metadata
        ]);
        let Some((status, body)) = self.rpc(node, part, hash, sync).await else {
            return NodeResult::Failed;
        };
        let db_name = format!("{hash}.db");
        if status == StatusCode::NOT_FOUND {
            self.counters.inc(RSYNC);
            return self
                .whole_copy(
                    node,
                    part,
                    hash,
                    db_file,
                    info,
                    serde_json::json!(["complete_rsync", info.id, db_name]),
                )
                .await;
        }
        if status == StatusCode::INSUFFICIENT_STORAGE {
            return NodeResult::Unavailable;
        }
        if !status.is_success() {
            tracing::warn!(status = %status, device = %node.device, "sync refused");
            return NodeResult::Failed;
        }
        let Ok(rinfo) = serde_json::from_slice::<Value>(&body) else {
            return NodeResult::Failed;
        };
        let r_point = rinfo["point"].as_i64().unwrap_or(-1);
        let r_max = rinfo["max_row"].as_i64().unwrap_or(-1);
        let r_hash = rinfo["hash"].as_str().unwrap_or("").to_string();
        let r_id = rinfo["id"].as_str().unwrap_or("").to_string();
        let r_md = rinfo["metadata"].as_str().unwrap_or("").to_string();
        let path = db_file.to_path_buf();
        let r_id2 = r_id.clone();
        let local_sync = blocking(move || -> crate::Result<i64> {
            let b = Broker::<K>::open(&path)?;
            if !r_md.is_empty() {
                if let Ok(md) = serde_json::from_str::<crate::Metadata>(&r_md) {
                    b.update_metadata(&md, None)?;
                }
            }
            b.get_sync(&r_id2, false)
        })
        .await;
        let Some(Ok(local_sync)) = local_sync else {
            return NodeResult::Failed;
        };
        if r_point.max(local_sync) >= info.max_row {
            self.counters.inc(NO_CHANGE);
            return NodeResult::Ok;
        }
        if r_hash == info.hash {
            self.counters.inc(HASHMATCH);
            let path = db_file.to_path_buf();
            let _ = blocking(move || {
                Broker::<K>::open(&path).and_then(|b| {
                    b.merge_syncs(
                        &[crate::SyncPoint {
                            remote_id: r_id,
                            sync_point: r_point,
                        }],
                        false,
                    )
                })
            })
            .await;
            return NodeResult::Ok;
        }
        let per_diff = self.settings.per_diff as i64;
        if info.max_row > 0
            && (r_max as f64) / (info.max_row as f64) < 0.5
            && info.max_row - r_max > per_diff
        {
            self.counters.inc(REMOTE_MERGE);
            return self
                .whole_copy(
                    node,
                    part,
                    hash,
                    db_file,
                    info,
                    serde_json::json!(["rsync_then_merge", info.id, db_name]),
                )
                .await;
        }
        self.usync(
            node,
            part,
            hash,
            db_file,
            info,
            r_point.max(local_sync),
            r_id,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn usync(
        &self,
        node: &Device,
        part: u32,
        hash: &str,
        db_file: &Path,
        info: &ReplicationInfo,
        mut point: i64,
        remote_id: String,
    ) -> NodeResult {
        self.counters.inc(DIFF);
        let per_diff = self.settings.per_diff;
        let read = |point: i64| {
            let path = db_file.to_path_buf();
            blocking(move || {
                Broker::<K>::open(&path).and_then(|b| b.get_items_since(point, per_diff))
            })
        };
        let path = db_file.to_path_buf();
        let Some(Ok(sync_table)) =
            blocking(move || Broker::<K>::open(&path).and_then(|b| b.get_syncs(true))).await
        else {
            return NodeResult::Failed;
        };
        let mut diffs = 0;
        let mut rows = match read(point).await {
            Some(Ok(r)) => r,
            _ => return NodeResult::Failed,
        };
        while !rows.is_empty() && diffs < self.settings.max_diffs {
            diffs += 1;
            let Some(last) = rows.last().and_then(K::rowid) else {
                return NodeResult::Failed;
            };
            let body = serde_json::json!(["merge_items", rows, info.id]);
            match self.rpc(node, part, hash, body).await {
                Some((s, _)) if s.is_success() => {}
                Some((s, _)) if s == StatusCode::INSUFFICIENT_STORAGE => {
                    return NodeResult::Unavailable
                }
                _ => return NodeResult::Failed,
            }
            point = last;
            rows = match read(point).await {
                Some(Ok(r)) => r,
                _ => return NodeResult::Failed,
            };
        }
        if !rows.is_empty() {
            self.counters.inc(DIFF_CAPPED);
            return NodeResult::Failed;
        }
        match self
            .rpc(
                node,
                part,
                hash,
                serde_json::json!(["merge_syncs", sync_table]),
            )
            .await
        {
            Some((s, _)) if s.is_success() => {}
            _ => return NodeResult::Failed,
        }
        let path = db_file.to_path_buf();
        let done = blocking(move || {
            Broker::<K>::open(&path).and_then(|b| {
                b.merge_syncs(
                    &[crate::SyncPoint {
                        remote_id,
                        sync_point: point,
                    }],
                    false,
                )
            })
        })
        .await;
        match done {
            Some(Ok(())) => NodeResult::Ok,
            _ => NodeResult::Failed,
        }
    }

    /// Upload a snapshot to `DEV/tmp/<local id>` on `node`, then send `then` (the
    /// `complete_rsync` or `rsync_then_merge` call).
    #[allow(clippy::too_many_arguments)]
    async fn whole_copy(
        &self,
        node: &Device,
        part: u32,
        hash: &str,
        db_file: &Path,
        info: &ReplicationInfo,
        then: Value,
    ) -> NodeResult {
        let path = db_file.to_path_buf();
        let tmp_dir = db_file
            .ancestors()
            .nth(5)
            .map(|dev| dev.join("tmp"))
            .unwrap_or_else(std::env::temp_dir);
        let snap = blocking(move || -> crate::Result<(PathBuf, String, u64)> {
            std::fs::create_dir_all(&tmp_dir)?;
            let snap = tmp_dir.join(format!(".snap-{}", uuid::Uuid::new_v4().simple()));
            let b = Broker::<K>::open(&path)?;
            b.backup_to(&snap)?;
            let mut f = std::fs::File::open(&snap)?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut len = 0u64;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                len += n as u64;
            }
            let sum: String = hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            Ok((snap, sum, len))
        })
        .await;
        let Some(Ok((snap, sum, len))) = snap else {
            return NodeResult::Failed;
        };
        // stream the snapshot (DBs can be large)
        let (tx, data) = chttp::channel(4);
        let snap2 = snap.clone();
        let reader = tokio::task::spawn_blocking(move || {
            let mut f = match std::fs::File::open(&snap2) {
                Ok(f) => f,
                Err(e) => return tx.blocking_abort(e),
            };
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                            break;
                        }
                    }
                    Err(e) => return tx.blocking_abort(e),
                }
            }
        });
        let auth = authority(&node.replication_ip, node.replication_port);
        let upath = format!(
            "/{}/tmp/{}",
            chttp::quote(&node.device),
            chttp::quote(&info.id)
        );
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&sum) {
            h.insert("x-backend-db-checksum", v);
        }
        if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
            h.insert("content-length", v);
        }
        let sent = self
            .client
            .request(Method::PUT, &auth, &upath, h, data)
            .await;
        let _ = reader.await;
        let _ = tokio::fs::remove_file(&snap).await;
        match sent {
            Ok(r) if r.status.is_success() => {
                let _ = r.bytes(65_536).await;
            }
            Ok(r) if r.status == StatusCode::INSUFFICIENT_STORAGE => {
                return NodeResult::Unavailable
            }
            Ok(r) => {
                tracing::warn!(status = %r.status, "DB upload refused");
                return NodeResult::Failed;
            }
            Err(e) => {
                tracing::warn!("DB upload to {auth} failed: {e}");
                return NodeResult::Failed;
            }
        }
        match self.rpc(node, part, hash, then).await {
            Some((s, _)) if s.is_success() => NodeResult::Ok,
            Some((s, _)) if s == StatusCode::INSUFFICIENT_STORAGE => NodeResult::Unavailable,
            _ => NodeResult::Failed,
        }
    }
}

/// The ring partition of a 32-hex-digit hash.
fn partition_of_hash(hash: &str, part_power: u8) -> Option<u32> {
    if hash.len() != 32 {
        return None;
    }
    let v = u128::from_str_radix(hash, 16).ok()?;
    Some(cairn_ring::hash::partition_of(&v.to_be_bytes(), part_power))
}

/// `(partition, DB file)` of every DB below a datadir (`DEV/containers`).
pub fn list_dbs(datadir: &Path) -> Vec<(u32, PathBuf)> {
    let ls = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for part_dir in ls(datadir) {
        let Some(part) = part_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        for suffix in ls(&part_dir) {
            for hash_dir in ls(&suffix) {
                let Some(hash) = hash_dir.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let db = hash_dir.join(format!("{hash}.db"));
                if db.is_file() {
                    out.push((part, db));
                }
            }
        }
    }
    out
}

/// Remove regular files in `dir` whose name passes `pick` and which were last modified
/// more than `max_age` ago (abandoned uploads in `DEV/tmp`, `*.tmp` of DB creation).
pub fn remove_old_files(dir: &Path, max_age: Duration, pick: impl Fn(&str) -> bool) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !pick(&name) {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > max_age);
        if meta.is_file() && old {
            tracing::info!(path = %e.path().display(), "removing stale temporary file");
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Remove a DB's hash directory (under its lock), then empty suffix/partition dirs.
async fn remove_db(db_file: &Path) -> bool {
    let path = db_file.to_path_buf();
    blocking(move || {
        let Some(hash_dir) = path.parent() else {
            return false;
        };
        let lock = DirLock::lock_dir(hash_dir, crate::pending::LOCK_TIMEOUT);
        if lock.is_err() {
            return false;
        }
        let ok = std::fs::remove_dir_all(hash_dir).is_ok();
        drop(lock);
        if let Some(suffix) = hash_dir.parent() {
            if std::fs::remove_dir(suffix).is_ok() {
                if let Some(part) = suffix.parent() {
                    let _ = std::fs::remove_dir(part);
                }
            }
        }
        ok
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_ring::types::RingData;

    fn dev(id: u32, ip: &str, port: u16, rip: &str, rport: u16) -> Option<Device> {
        Some(Device {
            id,
            region: 1,
            zone: id + 1,
            ip: ip.into(),
            port,
            replication_ip: rip.into(),
            replication_port: rport,
            device: format!("d{id}"),
            weight: 1.0,
            meta: String::new(),
        })
    }

    fn local_ids(bind_ips: &[&str], port: u16) -> Vec<u32> {
        let dir = tempfile::tempdir().unwrap();
        let devs = vec![
            dev(0, "10.0.0.1", 6201, "10.1.0.1", 6301),
            dev(1, "10.0.0.2", 6201, "10.1.0.2", 6301),
            dev(2, "10.0.0.1", 6202, "10.1.0.1", 6202),
        ];
        for d in devs.iter().flatten() {
            std::fs::create_dir(dir.path().join(&d.device)).unwrap();
        }
        let ring = Ring::from_data(RingData {
            part_power: 0,
            replica2part2dev: vec![vec![0], vec![1], vec![2]],
            devs,
            version: 1,
        })
        .unwrap();
        let r = DbReplicator::<crate::ContainerKind>::new(
            ReplicatorSettings::new(
                dir.path(),
                bind_ips.iter().map(|s| s.to_string()).collect(),
                port,
            ),
            Arc::new(ring),
        );
        r.local_devices().into_iter().map(|(id, _)| id).collect()
    }

    #[test]
    fn local_devices_by_address_or_replication_address() {
        // the server's own address
        assert_eq!(local_ids(&["10.0.0.1"], 6201), vec![0]);
        // the replication address
        assert_eq!(local_ids(&["10.1.0.1"], 6301), vec![0]);
        assert_eq!(local_ids(&["10.1.0.2"], 6301), vec![1]);
        // an unspecified bind address matches any address with the port
        assert_eq!(local_ids(&["0.0.0.0"], 6201), vec![0, 1]);
        assert_eq!(local_ids(&["::"], 6202), vec![2]);
        assert!(local_ids(&["10.0.0.9"], 6201).is_empty());
        assert!(local_ids(&["10.0.0.1"], 6999).is_empty());
    }
}
