//! Daemon loops shared by the container and account roles (generic over [`Kind`]):
//!
//! * [`run_replicator`]: one [`DbReplicator::run_once`] per pass under
//!   `cairn_common::daemon::run_daemon`, with the ring file reloaded when it changes;
//!   each pass's stats are logged and written to the recon cache
//!   (`<kind>.recon`, section `replication`: `replication_time`, `replication_last`,
//!   `replication_stats`), which `/recon/replication/<kind>` serves, and to the
//!   process's metrics registry (`cairn_<kind>_replicator_*`). [`DbReplicatorSection`]
//!   is the `[container-replicator]` / `[account-replicator]` config table.
//! * [`run_auditor`]: every DB on every device gets SQLite's `quick_check` at a bounded
//!   rate (`databases_per_second`); a damaged DB is quarantined (moved to
//!   `DEV/quarantined/<datadir>/HASH`) so that replication restores a good copy. Stats go
//!   to the recon cache, section `auditor`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_common::daemon::{run_daemon, Stop};
use cairn_common::http::check_device;
use cairn_common::recon::ReconCache;
use cairn_ring::RingWatcher;
use serde_json::json;

use cairn_common::http::Timeouts;
use cairn_common::server_config::ServerSection;
use serde::Deserialize;

use crate::broker::{Broker, Kind};
use crate::error::DbError;
use crate::replicator::{list_dbs, DbReplicator, ReplicationStats, ReplicatorSettings};

/// A DB replicator table (`[account-replicator]`, `[container-replicator]`), Swift's
/// defaults.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DbReplicatorSection {
    /// Seconds between the starts of two passes.
    pub interval: f64,
    /// DBs replicated at once.
    pub concurrency: usize,
    /// Rows per `merge_items` batch.
    pub per_diff: usize,
    /// Batches per DB and pass.
    pub max_diffs: usize,
    /// Seconds deleted rows (and deleted DBs, stale temp files) are kept.
    pub reclaim_age: u64,
    /// Seconds to connect to a peer.
    pub conn_timeout: f64,
    /// Seconds per request to a peer.
    pub node_timeout: f64,
    /// Seconds between checks of the ring file for changes (checked once per pass).
    pub ring_check_interval: f64,
    /// At most this many DBs started per second (0: unlimited).
    pub databases_per_second: f64,
}

impl Default for DbReplicatorSection {
    fn default() -> Self {
        DbReplicatorSection {
            interval: 30.0,
            concurrency: 8,
            per_diff: 1000,
            max_diffs: 100,
            reclaim_age: 604_800,
            conn_timeout: 0.5,
            node_timeout: 10.0,
            ring_check_interval: 15.0,
            databases_per_second: 50.0,
        }
    }
}

/// Seconds of a config value as a `Duration` (1 s if out of range).
pub fn secs(v: f64) -> Duration {
    Duration::try_from_secs_f64(v).unwrap_or(Duration::from_secs(1))
}

/// `v` must be a positive number of seconds; the message names `table.key`.
pub fn check_secs(table: &str, key: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v > 0.0 && v < 1e9 {
        Ok(())
    } else {
        Err(format!(
            "{table}.{key} must be a positive number of seconds, not {v}"
        ))
    }
}

impl DbReplicatorSection {
    /// Checks serde cannot express; `table` names the table in messages.
    pub fn validate(&self, table: &str) -> Result<(), String> {
        for (key, v) in [
            ("interval", self.interval),
            ("conn_timeout", self.conn_timeout),
            ("node_timeout", self.node_timeout),
            ("ring_check_interval", self.ring_check_interval),
        ] {
            check_secs(table, key, v)?;
        }
        for (key, v) in [
            ("concurrency", self.concurrency),
            ("per_diff", self.per_diff),
            ("max_diffs", self.max_diffs),
        ] {
            if v == 0 {
                return Err(format!("{table}.{key} must be at least 1"));
            }
        }
        let dps = self.databases_per_second;
        if !(dps.is_finite() && dps >= 0.0) {
            return Err(format!(
                "{table}.databases_per_second must be >= 0, not {dps}"
            ));
        }
        Ok(())
    }

    /// The replicator settings for a server section (devices, bind address).
    pub fn settings(&self, server: &ServerSection, default_port: u16) -> ReplicatorSettings {
        let mut s = ReplicatorSettings::new(
            server.devices.clone(),
            vec![server.bind_ip.to_string()],
            server.bind_port.unwrap_or(default_port),
        );
        s.mount_check = server.mount_check;
        s.interval = secs(self.interval);
        s.concurrency = self.concurrency;
        s.per_diff = self.per_diff;
        s.max_diffs = self.max_diffs;
        s.reclaim_age = self.reclaim_age;
        s.timeouts = Timeouts {
            conn: secs(self.conn_timeout),
            node: secs(self.node_timeout),
        };
        s.databases_per_second = self.databases_per_second;
        s
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The recon `replication_stats` object of one pass (Swift's names).
pub fn stats_json(s: &ReplicationStats) -> serde_json::Value {
    json!({
        "attempted": s.attempted,
        "success": s.success,
        "failure": s.failure,
        "no_change": s.no_change,
        "hashmatch": s.hashmatch,
        "diff": s.diff,
        "diff_capped": s.diff_capped,
        "rsync": s.rsync,
        "remote_merge": s.remote_merge,
        "remove": s.remove,
    })
}

/// The kind name of a recon file: `container` or `account`.
fn recon_kind<K: Kind>() -> &'static str {
    K::DATADIR.trim_end_matches('s')
}

/// Run the DB replicator for `K` until SIGTERM/SIGINT (or one pass with `once`).
/// `ring` is the container or account ring (reloaded when its file changes);
/// `recon_dir` is where `<kind>.recon` lives (`None`: not written).
pub async fn run_replicator<K: Kind>(
    name: &str,
    settings: ReplicatorSettings,
    ring: Arc<RingWatcher>,
    recon_dir: Option<PathBuf>,
    once: bool,
) -> io::Result<()> {
    let interval = settings.interval;
    let recon = recon_dir.map(|d| ReconCache::new(&d, recon_kind::<K>()));
    let current = Arc::new(std::sync::Mutex::new(DbReplicator::<K>::new(
        settings.clone(),
        ring.current(),
    )));
    run_daemon(name, interval, once, move |stop| {
        let (ring, settings, current, recon) =
            (ring.clone(), settings.clone(), current.clone(), recon.clone());
        async move {
            let replicator = {
                let mut cur = current.lock().unwrap_or_else(|e| e.into_inner());
                match ring.check_reload() {
                    Ok(true) => {
                        tracing::info!(ring = %ring.path().display(), "ring reloaded");
                        *cur = DbReplicator::<K>::new(settings, ring.current());
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(ring = %ring.path().display(), error = %e, "ring reload failed; keeping the old ring")
                    }
                }
                Arc::clone(&cur)
            };
            run_replication_pass(&replicator, &stop, recon.as_ref()).await;
        }
    })
    .await
}

/// One replication pass: run it, log it and write its stats to `recon`.
pub async fn run_replication_pass<K: Kind>(
    replicator: &Arc<DbReplicator<K>>,
    stop: &Stop,
    recon: Option<&ReconCache>,
) -> ReplicationStats {
    let begin = Instant::now();
    let stats = replicator.run_once(stop).await;
    let elapsed = begin.elapsed().as_secs_f64();
    tracing::info!(
        kind = recon_kind::<K>(),
        attempted = stats.attempted,
        success = stats.success,
        failure = stats.failure,
        no_change = stats.no_change,
        hashmatch = stats.hashmatch,
        diff = stats.diff,
        rsync = stats.rsync,
        remote_merge = stats.remote_merge,
        remove = stats.remove,
        elapsed_s = elapsed,
        "replication pass complete"
    );
    let reg = cairn_common::metrics::global();
    let kind = recon_kind::<K>();
    for (name, v) in [
        ("attempted", stats.attempted),
        ("success", stats.success),
        ("failure", stats.failure),
        ("no_change", stats.no_change),
        ("hashmatch", stats.hashmatch),
        ("diff", stats.diff),
        ("rsync", stats.rsync),
        ("remote_merge", stats.remote_merge),
        ("remove", stats.remove),
    ] {
        reg.counter(
            &format!("cairn_{kind}_replicator_{name}_total"),
            &format!("{kind} DB replicator: {name} count"),
        )
        .inc_by(v);
    }
    reg.gauge(
        &format!("cairn_{kind}_replicator_last_pass_seconds"),
        "Duration of the last pass",
    )
    .set(elapsed);
    reg.gauge(
        &format!("cairn_{kind}_replicator_last_pass_timestamp"),
        "Unix time the last pass ended",
    )
    .set(unix_now());
    if let Some(recon) = recon {
        let value = json!({
            "replication_time": elapsed,
            "replication_last": unix_now(),
            "replication_stats": stats_json(&stats),
        });
        if let Err(e) = recon.update_async("replication", value).await {
            tracing::warn!(error = %e, "cannot write the recon cache");
        }
    }
    stats
}

/// Settings of a DB auditor.
#[derive(Debug, Clone)]
pub struct AuditorSettings {
    pub devices: PathBuf,
    pub mount_check: bool,
    /// Time between passes (Swift: 1800 s).
    pub interval: Duration,
    /// At most this many DBs checked per second (0: unlimited).
    pub databases_per_second: f64,
}

/// Counters of one auditor pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AuditStats {
    pub passed: u64,
    pub failed: u64,
    pub quarantined: u64,
}

/// Check one DB; `Ok(true)` healthy, `Ok(false)` damaged and quarantined.
pub fn audit_db<K: Kind>(db_file: &Path) -> Result<bool, DbError> {
    let broker = match Broker::<K>::open(db_file) {
        Ok(b) => b,
        // damaged at open: already moved aside by `open`
        Err(DbError::Quarantined(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
    match broker.quick_check() {
        Ok(()) => Ok(true),
        Err(DbError::Corrupt(msg)) => {
            tracing::error!(db = %db_file.display(), "quick_check failed: {msg}");
            broker.quarantine()?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// One auditor pass over every DB of `K` on every device.
pub async fn run_audit_pass<K: Kind>(settings: &AuditorSettings, stop: &Stop) -> AuditStats {
    let (root, mc) = (settings.devices.clone(), settings.mount_check);
    let dbs = tokio::task::spawn_blocking(move || {
        let mut v = Vec::new();
        let Ok(rd) = std::fs::read_dir(&root) else {
            return v;
        };
        for e in rd.flatten() {
            let dev = e.file_name().to_string_lossy().into_owned();
            if check_device(&root, &dev, mc).is_err() {
                continue;
            }
            v.extend(
                list_dbs(&root.join(&dev).join(K::DATADIR))
                    .into_iter()
                    .map(|(_, db)| db),
            );
        }
        v
    })
    .await
    .unwrap_or_default();
    let gap = if settings.databases_per_second > 0.0 {
        Duration::from_secs_f64(1.0 / settings.databases_per_second)
    } else {
        Duration::ZERO
    };
    let mut s = AuditStats::default();
    for db in dbs {
        if stop.is_stopped() {
            break;
        }
        let started = Instant::now();
        let path = db.clone();
        match tokio::task::spawn_blocking(move || audit_db::<K>(&path)).await {
            Ok(Ok(true)) => s.passed += 1,
            Ok(Ok(false)) => {
                s.failed += 1;
                s.quarantined += 1;
            }
            Ok(Err(DbError::NotFound(_))) => {} // removed meanwhile
            Ok(Err(e)) => {
                tracing::warn!(db = %db.display(), error = %e, "cannot audit DB");
                s.failed += 1;
            }
            Err(_) => s.failed += 1,
        }
        let spent = started.elapsed();
        if gap > spent && !stop.sleep(gap - spent).await {
            break;
        }
    }
    s
}

/// Run the DB auditor for `K` until SIGTERM/SIGINT (or one pass with `once`).
pub async fn run_auditor<K: Kind>(
    name: &str,
    settings: AuditorSettings,
    recon_dir: Option<PathBuf>,
    once: bool,
) -> io::Result<()> {
    let recon = recon_dir.map(|d| ReconCache::new(&d, recon_kind::<K>()));
    let interval = settings.interval;
    run_daemon(name, interval, once, move |stop| {
        let (settings, recon) = (settings.clone(), recon.clone());
        async move {
            let begin = Instant::now();
            let s = run_audit_pass::<K>(&settings, &stop).await;
            let kind = recon_kind::<K>();
            tracing::info!(
                kind,
                passed = s.passed,
                failed = s.failed,
                quarantined = s.quarantined,
                elapsed_s = begin.elapsed().as_secs_f64(),
                "audit pass complete"
            );
            if let Some(recon) = recon {
                let value = json!({
                    format!("{kind}_audits_passed"): s.passed,
                    format!("{kind}_audits_failed"): s.failed,
                    format!("{kind}_audits_quarantined"): s.quarantined,
                    format!("{kind}_auditor_pass_completed"): begin.elapsed().as_secs_f64(),
                    format!("{kind}_audits_since"): unix_now(),
                });
                if let Err(e) = recon.update_async("auditor", value).await {
                    tracing::warn!(error = %e, "cannot write the recon cache");
                }
            }
        }
    })
    .await
}
