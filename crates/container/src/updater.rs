//! The container-updater (`PROTOCOLS.md`, "Container → account reporting"): walks every
//! container DB on the node's devices and, when the container's put/delete timestamps or
//! counts differ from what was last reported, sends `PUT /DEV/PART/ACCT/CONT` with
//! `X-Put-Timestamp`, `X-Delete-Timestamp`, `X-Object-Count`, `X-Bytes-Used`,
//! `X-Account-Override-Deleted: yes` and the policy index to every account primary. On a
//! quorum of 2xx the four `reported_*` columns are written; otherwise the container is
//! retried next pass (and its account is not retried for `account_suppression_time`).
//!
//! Run one pass with [`ContainerUpdater::run_once`]; loop with
//! `cairn_common::daemon::run_daemon`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_common::daemon::Stop;
use cairn_common::http::{self as chttp, authority, check_device, BackendClient, Timeouts};
use cairn_common::{HashPathSecret, Timestamp};
use cairn_db::ContainerBroker;
use cairn_ring::Ring;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// Settings of the container-updater (Swift's defaults).
#[derive(Debug, Clone)]
pub struct UpdaterSettings {
    pub devices: PathBuf,
    pub mount_check: bool,
    /// Time between passes (300 s).
    pub interval: Duration,
    /// Containers reported in parallel (4).
    pub concurrency: usize,
    /// Connect/node timeouts of account requests.
    pub timeouts: Timeouts,
    /// After a failed report, skip that account's containers this long (60 s).
    pub account_suppression_time: Duration,
    /// At most this many containers per second (0 = unlimited).
    pub containers_per_second: f64,
}

impl UpdaterSettings {
    pub fn new(devices: impl Into<PathBuf>) -> Self {
        UpdaterSettings {
            devices: devices.into(),
            mount_check: false,
            interval: Duration::from_secs(300),
            concurrency: 4,
            timeouts: Timeouts {
                conn: Duration::from_millis(500),
                node: Duration::from_secs(3),
            },
            account_suppression_time: Duration::from_secs(60),
            containers_per_second: 50.0,
        }
    }
}

/// Counters of one pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UpdaterStats {
    /// Reports accepted by a quorum of account replicas.
    pub successes: u64,
    /// Reports that did not reach a quorum (or DBs that could not be read).
    pub failures: u64,
    /// Containers whose stats were already reported.
    pub no_changes: u64,
}

/// The container-updater. Cheap to clone.
#[derive(Clone)]
pub struct ContainerUpdater {
    settings: Arc<UpdaterSettings>,
    account_ring: Arc<Ring>,
    secret: HashPathSecret,
    client: BackendClient,
    suppressed: Arc<Mutex<HashMap<String, Instant>>>,
}

fn set(h: &mut HeaderMap, name: &str, value: impl ToString) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(&value.to_string()),
    ) {
        h.insert(n, v);
    }
}

/// Every `DEV/containers/PART/SUF/HASH/HASH.db` below `devices` (devices failing the
/// mount check are skipped).
pub fn container_dbs(devices: &Path, mount_check: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(devs) = std::fs::read_dir(devices) else {
        return out;
    };
    let ls = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    for dev in devs.filter_map(|e| e.ok()) {
        let name = dev.file_name().to_string_lossy().into_owned();
        if let Err(e) = check_device(devices, &name, mount_check) {
            tracing::warn!(device = %name, "skipping device: {e}");
            continue;
        }
        for part in ls(&dev.path().join("containers")) {
            for suffix in ls(&part) {
                for hash_dir in ls(&suffix) {
                    let Some(hash) = hash_dir.file_name().and_then(|n| n.to_str()) else {
                        continue;
                    };
                    let db = hash_dir.join(format!("{hash}.db"));
                    if db.is_file() {
                        out.push(db);
                    }
                }
            }
        }
    }
    out
}

enum Outcome {
    Success,
    Failure,
    NoChange,
}

impl ContainerUpdater {
    pub fn new(settings: UpdaterSettings, account_ring: Arc<Ring>, secret: HashPathSecret) -> Self {
        let client = BackendClient::new(settings.timeouts);
        ContainerUpdater {
            settings: Arc::new(settings),
            account_ring,
            secret,
            client,
            suppressed: Arc::default(),
        }
    }

    pub fn settings(&self) -> &UpdaterSettings {
        &self.settings
    }

    /// One pass over every container DB; returns early (with partial stats) on `stop`.
    pub async fn run_once(&self, stop: &Stop) -> UpdaterStats {
        let (devices, mc) = (self.settings.devices.clone(), self.settings.mount_check);
        let dbs = tokio::task::spawn_blocking(move || container_dbs(&devices, mc))
            .await
            .unwrap_or_default();
        let stats = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
        let sem = Arc::new(tokio::sync::Semaphore::new(
            self.settings.concurrency.max(1),
        ));
        let mut tasks = tokio::task::JoinSet::new();
        let gap = if self.settings.containers_per_second > 0.0 {
            Duration::from_secs_f64(1.0 / self.settings.containers_per_second)
        } else {
            Duration::ZERO
        };
        for db in dbs {
            if stop.is_stopped() {
                break;
            }
            let Ok(permit) = sem.clone().acquire_owned().await else {
                break;
            };
            let (this, stats) = (self.clone(), stats.clone());
            tasks.spawn(async move {
                let i = match this.process_container(&db).await {
                    Outcome::Success => 0,
                    Outcome::Failure => 1,
                    Outcome::NoChange => 2,
                };
                stats[i].fetch_add(1, Ordering::Relaxed);
                drop(permit);
            });
            if !gap.is_zero() && !stop.sleep(gap).await {
                break;
            }
        }
        while tasks.join_next().await.is_some() {}
        let s = UpdaterStats {
            successes: stats[0].load(Ordering::Relaxed),
            failures: stats[1].load(Ordering::Relaxed),
            no_changes: stats[2].load(Ordering::Relaxed),
        };
        tracing::info!(?s, "container-updater pass");
        s
    }

    async fn process_container(&self, db: &Path) -> Outcome {
        let path = db.to_path_buf();
        let info = match tokio::task::spawn_blocking(move || {
            ContainerBroker::open(&path).and_then(|b| b.get_info())
        })
        .await
        {
            Ok(Ok(i)) => i,
            Ok(Err(e)) => {
                tracing::error!(db = %db.display(), "container-updater cannot read DB: {e}");
                return Outcome::Failure;
            }
            Err(_) => return Outcome::Failure,
        };
        // auto-created or never PUT: its stats are not meaningful
        if info.put_timestamp <= Timestamp::ZERO {
            return Outcome::NoChange;
        }
        let changed = info.put_timestamp > info.reported_put_timestamp
            || info.delete_timestamp > info.reported_delete_timestamp
            || info.object_count != info.reported_object_count
            || info.bytes_used != info.reported_bytes_used;
        if !changed {
            return Outcome::NoChange;
        }
        {
            let mut sup = self.suppressed.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(until) = sup.get(&info.account) {
                if *until > Instant::now() {
                    return Outcome::Failure;
                }
                sup.remove(&info.account);
            }
        }
        let (part, nodes) = self
            .account_ring
            .get_nodes(&self.secret, &info.account, None, None);
        let targets: Vec<(String, String)> = nodes
            .iter()
            .map(|n| (authority(&n.ip, n.port), n.device.clone()))
            .collect();
        let mut reqs = tokio::task::JoinSet::new();
        for (auth, device) in &targets {
            let auth = auth.clone();
            let mut h = HeaderMap::new();
            set(&mut h, "x-put-timestamp", info.put_timestamp.internal());
            set(
                &mut h,
                "x-delete-timestamp",
                info.delete_timestamp.internal(),
            );
            set(&mut h, "x-object-count", info.object_count);
            set(&mut h, "x-bytes-used", info.bytes_used);
            set(&mut h, "x-account-override-deleted", "yes");
            set(
                &mut h,
                "x-backend-storage-policy-index",
                info.storage_policy_index,
            );
            set(
                &mut h,
                "user-agent",
                format!("container-updater {}", std::process::id()),
            );
            let path =
                chttp::backend_path(device, part, &info.account, Some(&info.container), None);
            let client = self.client.clone();
            reqs.spawn(async move {
                match client
                    .request(Method::PUT, &auth, &path, h, chttp::empty())
                    .await
                {
                    Ok(r) => {
                        let st = r.status;
                        let _ = r.bytes(65_536).await;
                        st.as_u16()
                    }
                    Err(e) => {
                        tracing::warn!("container report to {auth} failed: {e}");
                        500
                    }
                }
            });
        }
        let mut ok = 0;
        while let Some(r) = reqs.join_next().await {
            if matches!(r, Ok(s) if (200..300).contains(&s)) {
                ok += 1;
            }
        }
        let quorum = targets.len() / 2 + 1;
        if ok >= quorum {
            let path = db.to_path_buf();
            let i = info.clone();
            let res = tokio::task::spawn_blocking(move || {
                ContainerBroker::open(&path).and_then(|b| {
                    b.reported(
                        i.put_timestamp,
                        i.delete_timestamp,
                        i.object_count,
                        i.bytes_used,
                    )
                })
            })
            .await;
            match res {
                Ok(Ok(())) => Outcome::Success,
                _ => Outcome::Failure,
            }
        } else {
            let until = Instant::now() + self.settings.account_suppression_time;
            self.suppressed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(info.account.clone(), until);
            Outcome::Failure
        }
    }
}
