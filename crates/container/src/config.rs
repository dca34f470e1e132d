//! `container-server.toml` (`DESIGN.md`, "Configuration"): the shared `[server]` table
//! plus `[container-server]`, `[container-replicator]`, `[container-updater]` and
//! `[container-auditor]`, and the functions the binary calls:
//! [`run_container_server`] (`cairn container-server --config FILE`),
//! [`run_container_replicator`] (`cairn container-replicator --config FILE [--once]`),
//! [`run_container_updater`] (`cairn container-updater --config FILE [--once]`) and
//! [`run_container_auditor`] (`cairn container-auditor --config FILE [--once]`).
//!
//! ```toml
//! [server]
//! bind_port = 6201
//! devices = "/srv/node"
//!
//! [container-server]
//! auto_create_account_prefix = "."
//!
//! [container-replicator]
//! interval = 30
//! concurrency = 8
//! per_diff = 1000
//! max_diffs = 100
//! reclaim_age = 604800
//! databases_per_second = 50
//!
//! [container-updater]
//! interval = 300
//! concurrency = 4
//! node_timeout = 3
//! account_suppression_time = 60
//!
//! [container-auditor]
//! interval = 1800
//! containers_per_second = 200
//! ```
//!
//! The replicator's local devices are the container ring's devices whose `ip:port` or
//! `replication_ip:replication_port` is this server's `bind_ip:bind_port` (an unspecified
//! `bind_ip` matches any address). The container server's account updates use the
//! `[server]` `conn_timeout`/`node_timeout`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_common::config::{ClusterConfig, ConfigError};
use cairn_common::fs::FallocateReserve;
use cairn_common::http::Timeouts;
use cairn_common::recon::ReconCache;
use cairn_common::server_config::{
    load_role_config, RoleConfig, ServerSection, DEFAULT_CONTAINER_PORT,
};
use cairn_db::daemon::{check_secs, secs, AuditorSettings, DbReplicatorSection};
use cairn_db::replicator::ReplicatorSettings;
use cairn_db::ContainerKind;
use cairn_ring::RingWatcher;
use serde::Deserialize;
use serde_json::json;

use crate::server::{ContainerServer, ContainerServerSettings};
use crate::updater::{ContainerUpdater, UpdaterSettings};

/// The `[container-server]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerSection {
    /// Containers of accounts starting with this prefix are created on first use.
    pub auto_create_account_prefix: String,
    /// PUT, POST and REPLICATE answer 507 below this free space on a device: bytes
    /// (`"1073741824"`) or a percentage of its size (`"1%"`), as Swift.
    pub fallocate_reserve: String,
}

impl Default for ContainerSection {
    fn default() -> Self {
        ContainerSection {
            auto_create_account_prefix: ".".to_string(),
            fallocate_reserve: "1%".to_string(),
        }
    }
}

impl ContainerSection {
    /// The parsed `fallocate_reserve` (the object server's parser).
    pub fn fallocate_reserve(&self) -> Result<FallocateReserve, String> {
        FallocateReserve::parse(
            "container-server.fallocate_reserve",
            &self.fallocate_reserve,
        )
    }
}

/// The `[container-updater]` table (Swift's defaults).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpdaterSection {
    /// Seconds between the starts of two passes.
    pub interval: f64,
    /// Containers reported at once.
    pub concurrency: usize,
    /// Seconds to connect to an account server.
    pub conn_timeout: f64,
    /// Seconds per request to an account server.
    pub node_timeout: f64,
    /// After a failed report, skip that account's containers this many seconds.
    pub account_suppression_time: f64,
    /// At most this many containers per second (0: unlimited).
    pub containers_per_second: f64,
    /// Seconds between checks of the account ring file for changes (once per pass).
    pub ring_check_interval: f64,
}

impl Default for UpdaterSection {
    fn default() -> Self {
        UpdaterSection {
            interval: 300.0,
            concurrency: 4,
            conn_timeout: 0.5,
            node_timeout: 3.0,
            account_suppression_time: 60.0,
            containers_per_second: 50.0,
            ring_check_interval: 15.0,
        }
    }
}

/// The `[container-auditor]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditorSection {
    /// Seconds between the starts of two passes.
    pub interval: f64,
    /// At most this many container DBs checked per second (0: unlimited).
    pub containers_per_second: f64,
}

impl Default for AuditorSection {
    fn default() -> Self {
        AuditorSection {
            interval: 1800.0,
            containers_per_second: 200.0,
        }
    }
}

/// The whole `container-server.toml`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContainerServerFile {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default, rename = "container-server")]
    pub container: ContainerSection,
    #[serde(default, rename = "container-replicator")]
    pub replicator: DbReplicatorSection,
    #[serde(default, rename = "container-updater")]
    pub updater: UpdaterSection,
    #[serde(default, rename = "container-auditor")]
    pub auditor: AuditorSection,
}

fn non_negative(table: &str, key: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("{table}.{key} must be >= 0, not {v}"))
    }
}

impl RoleConfig for ContainerServerFile {
    fn server(&self) -> &ServerSection {
        &self.server
    }
    fn server_mut(&mut self) -> &mut ServerSection {
        &mut self.server
    }
    fn validate(&self) -> Result<(), String> {
        self.container.fallocate_reserve()?;
        self.replicator.validate("container-replicator")?;
        let u = &self.updater;
        for (key, v) in [
            ("interval", u.interval),
            ("conn_timeout", u.conn_timeout),
            ("node_timeout", u.node_timeout),
            ("ring_check_interval", u.ring_check_interval),
        ] {
            check_secs("container-updater", key, v)?;
        }
        non_negative(
            "container-updater",
            "account_suppression_time",
            u.account_suppression_time,
        )?;
        non_negative(
            "container-updater",
            "containers_per_second",
            u.containers_per_second,
        )?;
        if u.concurrency == 0 {
            return Err("container-updater.concurrency must be at least 1".to_string());
        }
        check_secs("container-auditor", "interval", self.auditor.interval)?;
        non_negative(
            "container-auditor",
            "containers_per_second",
            self.auditor.containers_per_second,
        )
    }
}

impl ContainerServerFile {
    /// The handler settings this file describes (policies from the cluster file).
    pub fn settings(&self, cluster: &ClusterConfig) -> Result<ContainerServerSettings, String> {
        let mut s = ContainerServerSettings::new(self.server.devices.clone());
        s.mount_check = self.server.mount_check;
        s.fallocate_reserve = self.container.fallocate_reserve()?;
        s.auto_create_account_prefix = self.container.auto_create_account_prefix.clone();
        s.policies = cluster.policies.iter().map(|p| p.index).collect();
        s.default_policy = cluster.default_policy().index;
        s.account_update_timeouts = self.server.timeouts();
        s.replication_server = self.server.replication_server;
        s.constraints = cluster.constraints.clone();
        Ok(s)
    }

    /// The container-replicator's settings.
    pub fn replicator_settings(&self) -> ReplicatorSettings {
        self.replicator
            .settings(&self.server, DEFAULT_CONTAINER_PORT)
    }

    /// The container-updater's settings.
    pub fn updater_settings(&self) -> UpdaterSettings {
        let u = &self.updater;
        let mut s = UpdaterSettings::new(self.server.devices.clone());
        s.mount_check = self.server.mount_check;
        s.interval = secs(u.interval);
        s.concurrency = u.concurrency;
        s.timeouts = Timeouts {
            conn: secs(u.conn_timeout),
            node: secs(u.node_timeout),
        };
        s.account_suppression_time =
            Duration::try_from_secs_f64(u.account_suppression_time).unwrap_or_default();
        s.containers_per_second = u.containers_per_second;
        s
    }

    /// The container-auditor's settings.
    pub fn auditor_settings(&self) -> AuditorSettings {
        AuditorSettings {
            devices: self.server.devices.clone(),
            mount_check: self.server.mount_check,
            interval: secs(self.auditor.interval),
            databases_per_second: self.auditor.containers_per_second,
        }
    }
}

/// Why a container daemon could not start (or stopped with an error).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn load_ring(cluster: &ClusterConfig, name: &str, check: f64) -> Result<RingWatcher, RunError> {
    let path = cluster.ring_dir().join(name);
    RingWatcher::with_interval(&path, secs(check))
        .map_err(|e| RunError::Invalid(format!("{}: {e}", path.display())))
}

/// Load `container-server.toml` and its cluster file and serve until SIGTERM/SIGINT.
/// Call inside a tokio runtime.
pub async fn run_container_server(config: &Path) -> Result<(), RunError> {
    let file: ContainerServerFile = load_role_config(config)?;
    let cluster = file.server.load_cluster()?;
    let settings = file.settings(&cluster).map_err(RunError::Invalid)?;
    let server = ContainerServer::new(settings, cluster.hash_path_secret());
    file.server
        .serve("container-server", DEFAULT_CONTAINER_PORT, &cluster, server)
        .await?;
    Ok(())
}

/// `cairn container-replicator --config container-server.toml [--once]`: replicate every
/// container DB on the local devices of `container.ring` every `interval` (or once)
/// until SIGTERM/SIGINT. Call inside a tokio runtime.
pub async fn run_container_replicator(config: &Path, once: bool) -> Result<(), RunError> {
    let file: ContainerServerFile = load_role_config(config)?;
    let cluster = file.server.load_cluster()?;
    let ring = load_ring(
        &cluster,
        "container.ring",
        file.replicator.ring_check_interval,
    )?;
    cairn_db::daemon::run_replicator::<ContainerKind>(
        "container-replicator",
        file.replicator_settings(),
        Arc::new(ring),
        Some(file.server.recon_cache_path.clone()),
        once,
    )
    .await?;
    Ok(())
}

/// `cairn container-updater --config container-server.toml [--once]`: report changed
/// container stats to the account servers (`account.ring`) every `interval` (or once).
/// Stats go to the log and to `container.recon`, section `updater`.
pub async fn run_container_updater(config: &Path, once: bool) -> Result<(), RunError> {
    let file: ContainerServerFile = load_role_config(config)?;
    let cluster = file.server.load_cluster()?;
    let ring = Arc::new(load_ring(
        &cluster,
        "account.ring",
        file.updater.ring_check_interval,
    )?);
    let settings = file.updater_settings();
    let secret = cluster.hash_path_secret();
    let recon = ReconCache::new(&file.server.recon_cache_path, "container");
    let interval = settings.interval;
    let current = Arc::new(std::sync::Mutex::new(ContainerUpdater::new(
        settings.clone(),
        ring.current(),
        secret.clone(),
    )));
    cairn_common::daemon::run_daemon("container-updater", interval, once, move |stop| {
        let (ring, settings, secret, current, recon) = (
            ring.clone(),
            settings.clone(),
            secret.clone(),
            current.clone(),
            recon.clone(),
        );
        async move {
            let updater = {
                let mut cur = current.lock().unwrap_or_else(|e| e.into_inner());
                match ring.check_reload() {
                    Ok(true) => {
                        tracing::info!(ring = %ring.path().display(), "account ring reloaded");
                        // keeps nothing worth keeping but the suppression list
                        *cur = ContainerUpdater::new(settings, ring.current(), secret);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(ring = %ring.path().display(), error = %e, "ring reload failed; keeping the old ring")
                    }
                }
                cur.clone()
            };
            let begin = Instant::now();
            let s = updater.run_once(&stop).await;
            let elapsed = begin.elapsed().as_secs_f64();
            let value = json!({
                "container_updater_sweep": elapsed,
                "successes": s.successes,
                "failures": s.failures,
                "no_changes": s.no_changes,
            });
            if let Err(e) = recon.update_async("updater", value).await {
                tracing::warn!(error = %e, "cannot write the recon cache");
            }
        }
    })
    .await?;
    Ok(())
}

/// `cairn container-auditor --config container-server.toml [--once]`: `quick_check`
/// every container DB at `containers_per_second`, quarantining damaged ones.
pub async fn run_container_auditor(config: &Path, once: bool) -> Result<(), RunError> {
    let file: ContainerServerFile = load_role_config(config)?;
    cairn_db::daemon::run_auditor::<ContainerKind>(
        "container-auditor",
        file.auditor_settings(),
        Some(file.server.recon_cache_path.clone()),
        once,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_common::server_config::parse_role_config;

    fn parse(text: &str) -> Result<ContainerServerFile, ConfigError> {
        parse_role_config(text, "container-server.toml", Path::new("/etc/cairn"))
    }

    #[test]
    fn defaults() {
        let f = parse("").unwrap();
        assert_eq!(f.container.auto_create_account_prefix, ".");
        let r = f.replicator_settings();
        assert_eq!(r.bind_port, DEFAULT_CONTAINER_PORT);
        assert_eq!(r.interval, Duration::from_secs(30));
        assert_eq!((r.concurrency, r.per_diff, r.max_diffs), (8, 1000, 100));
        assert_eq!(r.reclaim_age, 604_800);
        assert_eq!(r.timeouts.node, Duration::from_secs(10));
        assert_eq!(r.databases_per_second, 50.0);
        let u = f.updater_settings();
        assert_eq!(u.interval, Duration::from_secs(300));
        assert_eq!(u.concurrency, 4);
        assert_eq!(u.timeouts.node, Duration::from_secs(3));
        assert_eq!(u.account_suppression_time, Duration::from_secs(60));
        assert_eq!(f.auditor_settings().interval, Duration::from_secs(1800));
        assert_eq!(f.auditor_settings().databases_per_second, 200.0);
    }

    #[test]
    fn values_and_errors() {
        let f = parse(
            "[server]\nbind_port = 6211\n[container-server]\nauto_create_account_prefix = \"_\"\n\
             [container-replicator]\nconcurrency = 2\nreclaim_age = 60\n\
             [container-updater]\ninterval = 1.5\ncontainers_per_second = 0\n",
        )
        .unwrap();
        assert_eq!(f.container.auto_create_account_prefix, "_");
        let r = f.replicator_settings();
        assert_eq!((r.concurrency, r.reclaim_age, r.bind_port), (2, 60, 6211));
        assert_eq!(f.updater_settings().interval, Duration::from_millis(1500));
        assert_eq!(f.updater_settings().containers_per_second, 0.0);

        for (text, needle) in [
            (
                "[container-server]\nallow_version = true\n",
                "allow_version",
            ),
            ("[container-replicator]\nper_dif = 1\n", "per_dif"),
            ("[container-updater]\nbogus = 1\n", "bogus"),
            ("[container-auditor]\nnope = 1\n", "nope"),
            ("[container-replicatr]\n", "container-replicatr"),
            (
                "[container-replicator]\nmax_diffs = 0\n",
                "container-replicator.max_diffs",
            ),
            (
                "[container-updater]\nnode_timeout = 0\n",
                "container-updater.node_timeout",
            ),
            (
                "[container-updater]\nconcurrency = 0\n",
                "container-updater.concurrency",
            ),
            (
                "[container-replicator]\ndatabases_per_second = -1\n",
                "container-replicator.databases_per_second",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.starts_with("container-server.toml"), "{e}");
        }
    }

    #[test]
    fn fallocate_reserve_bytes_or_percent() {
        let cluster =
            ClusterConfig::parse("[cluster]\nhash_path_suffix = \"s\"\n", "c", "/".into()).unwrap();
        let parse = |text: &str| {
            parse_role_config::<ContainerServerFile>(text, "container-server.toml", Path::new("/"))
        };
        let f = parse("").unwrap();
        let s = f.settings(&cluster).unwrap();
        assert_eq!(s.fallocate_reserve, FallocateReserve::Percent(1.0));
        let f = parse("[container-server]\nfallocate_reserve = \"1048576\"\n").unwrap();
        let s = f.settings(&cluster).unwrap();
        assert_eq!(s.fallocate_reserve, FallocateReserve::Bytes(1 << 20));
        let f = parse("[container-server]\nfallocate_reserve = \"100%\"\n").unwrap();
        let s = f.settings(&cluster).unwrap();
        assert_eq!(s.fallocate_reserve, FallocateReserve::Percent(100.0));
        for bad in ["\"1GB\"", "\"150%\"", "\"-1\"", "1"] {
            let text = format!("[container-server]\nfallocate_reserve = {bad}\n");
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains("fallocate_reserve"), "{bad}: {e}");
        }
    }
}
