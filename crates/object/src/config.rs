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
//! ```
//!
//! The daemons that share this file (`[object-replicator]`, `[object-updater]`,
//! `[object-auditor]`) add their tables here when they land.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn_common::config::ConfigError;
use cairn_common::recon::Ops;
use cairn_common::server_config::{
    load_role_config, RoleConfig, ServerSection, DEFAULT_OBJECT_PORT,
};
use serde::Deserialize;

use crate::diskfile::{cleanup_tmp_dirs, DiskConfig};
use crate::server::{ObjectServer, ObjectServerSettings, DEFAULT_ALLOWED_HEADERS};

/// The `[object-server]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectSection {
    /// Seconds a tombstone (and a stray `.meta`, a temp file) is kept.
    pub reclaim_age: u64,
    /// `fdatasync` a PUT body every this many MiB.
    pub mb_per_sync: u64,
    /// Refuse writes below this free space, as a percentage: `"1%"`.
    pub fallocate_reserve: String,
    /// Seconds a write waits for its container updates.
    pub container_update_timeout: f64,
    /// Seconds to wait for a partition lock.
    pub lock_timeout: f64,
    /// Headers stored with objects besides metadata (lowercase).
    pub allowed_headers: Vec<String>,
    /// Bytes per read of a GET.
    pub disk_chunk_size: usize,
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
        }
    }
}

impl ObjectSection {
    /// `"1%"` → 1.0.
    pub fn fallocate_reserve_pct(&self) -> Result<f64, String> {
        let v = self.fallocate_reserve.trim();
        v.strip_suffix('%')
            .and_then(|n| n.trim().parse::<f64>().ok())
            .filter(|p| p.is_finite() && (0.0..100.0).contains(p))
            .ok_or_else(|| {
                format!(
                    "object-server.fallocate_reserve must be a percentage like \"1%\", not {v:?}"
                )
            })
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
        self.object.fallocate_reserve_pct()?;
        for (key, v) in [
            ("container_update_timeout", o.container_update_timeout),
            ("lock_timeout", o.lock_timeout),
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
        Ok(())
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
                fallocate_reserve_pct: o.fallocate_reserve_pct()?,
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
    let settings = file.settings(policies).map_err(RunError::Invalid)?;
    let devices = settings.disk.devices.clone();
    let reclaim = Duration::from_secs(settings.disk.reclaim_age);
    tokio::task::spawn_blocking(move || startup_cleanup(&devices, reclaim))
        .await
        .map_err(|e| RunError::Invalid(format!("startup cleanup failed: {e}")))?;
    let server = ObjectServer::new(settings, cluster.hash_path_secret());
    let mut opts = file.server.serve_options("object-server");
    opts.ops = Some(Arc::new(Ops::new(
        file.server.ops_config(Some(cluster.ring_dir())),
    )));
    cairn_common::daemon::run_server(
        file.server.bind_addr(DEFAULT_OBJECT_PORT),
        Arc::new(server),
        opts,
    )
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
        assert_eq!(s.disk.fallocate_reserve_pct, 1.0);
        assert_eq!(s.disk.bytes_per_sync, 512 * 1024 * 1024);
        let f: ObjectServerFile = parse_role_config(
            "[object-server]\nreclaim_age = 10\nfallocate_reserve = \"2.5%\"\n",
            "t",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(f.settings(vec![]).unwrap().disk.reclaim_age, 10);
        assert!(parse_role_config::<ObjectServerFile>(
            "[object-server]\nbogus = 1\n",
            "t",
            Path::new("/")
        )
        .is_err());
        assert!(parse_role_config::<ObjectServerFile>(
            "[object-server]\nfallocate_reserve = \"10\"\n",
            "t",
            Path::new("/")
        )
        .is_err());
    }
}
