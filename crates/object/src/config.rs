//! `object-server.toml` (`DESIGN.md`, "Configuration"): the shared `[server]` table plus
//! `[object-server]`, and [`run_object_server`] which the binary calls for
//! `cairn object-server --config FILE`.
//!
//! ```toml
//! [server]
//! bind_port = 6200
//! devices = "/srv/node"
//! mount_check = true
//!
//! [object-server]
//! reclaim_age = 604800
//! mb_per_sync = 512
//! fallocate_reserve = "1%"
//! container_update_timeout = 1.0
//! device_concurrency = 16       # blocking disk operations at once per device (0: no limit)
//! device_wait_timeout = 10.0    # seconds to wait for one of them, then 503
//! device_error_backoff = 60.0   # seconds a device answers 507 after an EIO-class error
//!
//! [object-replicator]
//! interval = 30
//! concurrency = 1
//! handoff_delete = "auto"     # or a number of successful primaries
//! ```
//!
//! `[object-replicator]` is [`ReplicatorSection`] (`cairn object-replicator --config FILE`,
//! [`crate::replicator::run_object_replicator`]). `[object-updater]` is
//! [`crate::updater::UpdaterSection`] ([`crate::updater::run_object_updater`]),
//! `[object-auditor]` is [`crate::auditor::AuditorSection`]
//! ([`crate::auditor::run_object_auditor`]) and `[object-expirer]` is
//! [`crate::expirer::ExpirerSection`] ([`crate::expirer::run_object_expirer`]).

use std::path::Path;
use std::time::Duration;

use cairn_common::config::ConfigError;
use cairn_common::fs::FallocateReserve;
use cairn_common::server_config::{
    load_role_config, RoleConfig, ServerSection, DEFAULT_OBJECT_PORT,
};
use serde::Deserialize;

use crate::diskfile::{cleanup_tmp_dirs, DiskConfig};
use crate::server::device_pool::DevicePoolConfig;
use crate::server::{ObjectServer, ObjectServerSettings, DEFAULT_ALLOWED_HEADERS};

/// The `[object-server]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectSection {
    /// Seconds a tombstone (and a stray `.meta`, a temp file) is kept.
    pub reclaim_age: u64,
    /// `fdatasync` a PUT body every this many MiB.
    pub mb_per_sync: u64,
    /// Refuse writes below this free space: bytes (`"1073741824"`) or a percentage (`"1%"`).
    pub fallocate_reserve: String,
    /// Seconds a write waits for its container updates.
    pub container_update_timeout: f64,
    /// Seconds to wait for a partition lock.
    pub lock_timeout: f64,
    /// Headers stored with objects besides metadata (lowercase).
    pub allowed_headers: Vec<String>,
    /// Bytes per read of a GET.
    pub disk_chunk_size: usize,
    /// Blocking disk operations running at once per device (0: unlimited).
    pub device_concurrency: usize,
    /// Seconds a request waits for a device slot before answering 503.
    pub device_wait_timeout: f64,
    /// Seconds a device answers 507 after an EIO-class error.
    pub device_error_backoff: f64,
}

impl Default for ObjectSection {
    fn default() -> Self {
        ObjectSection {
            reclaim_age: 604_800,
            mb_per_sync: 512,
            fallocate_reserve: "1%".to_string(),
            container_update_timeout: 1.0,
            lock_timeout: 10.0,
            allowed_headers: DEFAULT_ALLOWED_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            disk_chunk_size: 65_536,
            device_concurrency: 16,
            device_wait_timeout: 10.0,
            device_error_backoff: 60.0,
        }
    }
}

impl ObjectSection {
    /// The parsed `fallocate_reserve` (bytes or a percentage, as Swift).
    pub fn fallocate_reserve(&self) -> Result<FallocateReserve, String> {
        FallocateReserve::parse("object-server.fallocate_reserve", &self.fallocate_reserve)
    }
}

/// The whole `object-server.toml`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ObjectServerFile {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default, rename = "object-server")]
    pub object: ObjectSection,
    #[serde(default, rename = "object-replicator")]
    pub replicator: ReplicatorSection,
    #[serde(default, rename = "object-updater")]
    pub updater: crate::updater::UpdaterSection,
    #[serde(default, rename = "object-auditor")]
    pub auditor: crate::auditor::AuditorSection,
    #[serde(default, rename = "object-expirer")]
    pub expirer: crate::expirer::ExpirerSection,
}

/// `handoff_delete`: `"auto"` (delete a reverted handoff partition only when every primary
/// took it) or a number of successful primaries after which it is deleted (emergency only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HandoffDelete {
    #[default]
    Auto,
    After(usize),
}

impl<'de> Deserialize<'de> for HandoffDelete {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::S(s) if s.eq_ignore_ascii_case("auto") => Ok(HandoffDelete::Auto),
            Raw::S(s) => s
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .map(HandoffDelete::After)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "handoff_delete must be \"auto\" or a positive number, not {s:?}"
                    ))
                }),
            Raw::N(n) if n > 0 => Ok(HandoffDelete::After(n as usize)),
            Raw::N(n) => Err(serde::de::Error::custom(format!(
                "handoff_delete must be \"auto\" or a positive number, not {n}"
            ))),
        }
    }
}

/// The `[object-replicator]` table (Swift's defaults). `reclaim_age` is shared with
/// `[object-server]` (one value per node: the disk layer reclaims with it).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicatorSection {
    /// Seconds between the starts of two passes.
    pub interval: f64,
    /// Partitions replicated at once.
    pub concurrency: usize,
    /// Seconds to connect to a peer.
    pub conn_timeout: f64,
    /// Seconds per request to a peer (REPLICATE answer, each SSYNC send).
    pub node_timeout: f64,
    /// Seconds to wait for each SSYNC reply line.
    pub http_timeout: f64,
    /// Run revert (handoff) jobs before update jobs.
    pub handoffs_first: bool,
    /// `"auto"` or a number of successes (see [`HandoffDelete`]).
    pub handoff_delete: HandoffDelete,
    /// SSYNC rate limit in objects per second per job stream (0: unlimited).
    pub objects_per_second: f64,
    /// SSYNC rate limit in body bytes per second (0: unlimited).
    pub max_bytes_per_second: u64,
    /// Seconds between progress log lines during a pass.
    pub stats_interval: f64,
    /// Seconds between checks of the ring files for changes.
    pub ring_check_interval: f64,
    /// Seconds a partition lock is waited for before deleting a reverted handoff.
    pub revert_lock_timeout: f64,
}

impl Default for ReplicatorSection {
    fn default() -> Self {
        ReplicatorSection {
            interval: 30.0,
            concurrency: 1,
            conn_timeout: 0.5,
            node_timeout: 10.0,
            http_timeout: 60.0,
            handoffs_first: false,
            handoff_delete: HandoffDelete::Auto,
            objects_per_second: 0.0,
            max_bytes_per_second: 0,
            stats_interval: 300.0,
            ring_check_interval: 15.0,
            revert_lock_timeout: 0.2,
        }
    }
}

impl ReplicatorSection {
    fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("interval", self.interval),
            ("conn_timeout", self.conn_timeout),
            ("node_timeout", self.node_timeout),
            ("http_timeout", self.http_timeout),
            ("stats_interval", self.stats_interval),
            ("ring_check_interval", self.ring_check_interval),
            ("revert_lock_timeout", self.revert_lock_timeout),
        ] {
            if !(v.is_finite() && v > 0.0 && v < 1e7) {
                return Err(format!(
                    "object-replicator.{key} must be a positive number of seconds, not {v}"
                ));
            }
        }
        if self.concurrency == 0 {
            return Err("object-replicator.concurrency must be at least 1".to_string());
        }
        if !(self.objects_per_second.is_finite() && self.objects_per_second >= 0.0) {
            return Err("object-replicator.objects_per_second must be >= 0".to_string());
        }
        Ok(())
    }
}

impl RoleConfig for ObjectServerFile {
    fn server(&self) -> &ServerSection {
        &self.server
    }
    fn server_mut(&mut self) -> &mut ServerSection {
        &mut self.server
    }
    fn validate(&self) -> Result<(), String> {
        let o = &self.object;
        self.object.fallocate_reserve()?;
        self.updater.validate()?;
        self.auditor.validate()?;
        self.expirer.validate()?;
        for (key, v) in [
            ("container_update_timeout", o.container_update_timeout),
            ("lock_timeout", o.lock_timeout),
            ("device_wait_timeout", o.device_wait_timeout),
            ("device_error_backoff", o.device_error_backoff),
        ] {
            if !(v.is_finite() && v > 0.0 && v < 1e6) {
                return Err(format!(
                    "object-server.{key} must be a positive number of seconds, not {v}"
                ));
            }
        }
        if o.disk_chunk_size < 4096 {
            return Err("object-server.disk_chunk_size must be at least 4096".to_string());
        }
        self.replicator.validate()
    }
}

impl ObjectServerFile {
    /// The handler settings this file describes (`policies` from the cluster file).
    pub fn settings(&self, policies: Vec<u32>) -> Result<ObjectServerSettings, String> {
        let o = &self.object;
        Ok(ObjectServerSettings {
            disk: DiskConfig {
                devices: self.server.devices.clone(),
                mount_check: self.server.mount_check,
                reclaim_age: o.reclaim_age,
                bytes_per_sync: o.mb_per_sync.saturating_mul(1024 * 1024),
                fallocate_reserve: o.fallocate_reserve()?,
                lock_timeout: Duration::from_secs_f64(o.lock_timeout),
            },
            allowed_headers: o
                .allowed_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            container_update_timeout: Duration::from_secs_f64(o.container_update_timeout),
            update_timeouts: self.server.timeouts(),
            replication_server: self.server.replication_server,
            policies,
            disk_chunk_size: o.disk_chunk_size,
            device_pool: DevicePoolConfig {
                concurrency: o.device_concurrency,
                wait_timeout: Duration::from_secs_f64(o.device_wait_timeout),
                error_backoff: Duration::from_secs_f64(o.device_error_backoff),
            },
            ..ObjectServerSettings::default()
        })
    }
}

/// Why the object server could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Load `object-server.toml` and its cluster file, remove temp files left by a previous
/// run (object temps of any age are safe to drop at start; others after `reclaim_age`),
/// and serve until SIGTERM/SIGINT. Call inside a tokio runtime.
pub async fn run_object_server(config: &Path) -> Result<(), RunError> {
    let file: ObjectServerFile = load_role_config(config)?;
    let cluster = file.server.load_cluster()?;
    let policies = cluster.policies.iter().map(|p| p.index).collect();
    let mut settings = file.settings(policies).map_err(RunError::Invalid)?;
    settings.constraints = cluster.constraints.clone();
    let devices = settings.disk.devices.clone();
    let reclaim = Duration::from_secs(settings.disk.reclaim_age);
    tokio::task::spawn_blocking(move || startup_cleanup(&devices, reclaim))
        .await
        .map_err(|e| RunError::Invalid(format!("startup cleanup failed: {e}")))?;
    let server = ObjectServer::new(settings, cluster.hash_path_secret());
    file.server
        .serve("object-server", DEFAULT_OBJECT_PORT, &cluster, server)
        .await?;
    Ok(())
}

/// Remove leftover object temp files (any age) and other temp files older than `reclaim`
/// on every device.
pub fn startup_cleanup(devices: &Path, reclaim: Duration) {
    let Ok(entries) = std::fs::read_dir(devices) else {
        return;
    };
    for e in entries.flatten() {
        let dev = e.path();
        match crate::diskfile::cleanup_object_tmp_files(&dev)
            .and_then(|n| Ok(n + cleanup_tmp_dirs(&dev, reclaim)?))
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(device = %dev.display(), removed = n, "removed leftover temp files")
            }
            Err(err) => {
                tracing::warn!(device = %dev.display(), error = %err, "temp cleanup failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_common::server_config::parse_role_config;

    #[test]
    fn parses_defaults_and_rejects_unknown_keys() {
        let f: ObjectServerFile = parse_role_config("", "t", Path::new("/etc/cairn")).unwrap();
        assert_eq!(f.object, ObjectSection::default());
        let s = f.settings(vec![0]).unwrap();
        assert_eq!(s.disk.fallocate_reserve, FallocateReserve::Percent(1.0));
        assert_eq!(s.disk.bytes_per_sync, 512 * 1024 * 1024);
        let f: ObjectServerFile = parse_role_config(
            "[object-server]\nreclaim_age = 10\nfallocate_reserve = \"2.5%\"\n",
            "t",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(f.settings(vec![]).unwrap().disk.reclaim_age, 10);
        assert_eq!(s.device_pool, DevicePoolConfig::default());
        let f: ObjectServerFile = parse_role_config(
            "[object-server]\ndevice_concurrency = 4\ndevice_wait_timeout = 2.5\n\
             device_error_backoff = 30\n",
            "t",
            Path::new("/"),
        )
        .unwrap();
        let pool = f.settings(vec![]).unwrap().device_pool;
        assert_eq!(pool.concurrency, 4);
        assert_eq!(pool.wait_timeout, Duration::from_millis(2500));
        assert_eq!(pool.error_backoff, Duration::from_secs(30));
        assert!(parse_role_config::<ObjectServerFile>(
            "[object-server]\ndevice_wait_timeout = 0\n",
            "t",
            Path::new("/")
        )
        .is_err());
        assert!(parse_role_config::<ObjectServerFile>(
            "[object-server]\nbogus = 1\n",
            "t",
            Path::new("/")
        )
        .is_err());
        // Bytes or a percentage, as Swift (the parser is shared with the DB servers).
        let f: ObjectServerFile = parse_role_config(
            "[object-server]\nfallocate_reserve = \"10\"\n",
            "t",
            Path::new("/"),
        )
        .unwrap();
        let reserve = f.settings(vec![]).unwrap().disk.fallocate_reserve;
        assert_eq!(reserve, FallocateReserve::Bytes(10));
        let e = parse_role_config::<ObjectServerFile>(
            "[object-server]\nfallocate_reserve = \"10x\"\n",
            "t",
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("object-server.fallocate_reserve"), "{e}");
    }
}
