//! `account-server.toml` (`DESIGN.md`, "Configuration"): the shared `[server]` table plus
//! `[account-server]`, `[account-replicator]`, `[account-auditor]` and `[account-reaper]`,
//! and the functions the binary calls: [`run_account_server`] (`cairn account-server
//! --config FILE`), [`run_account_replicator`] (`cairn account-replicator --config FILE
//! [--once]`), [`run_account_auditor`] (`cairn account-auditor --config FILE [--once]`)
//! and [`run_account_reaper`] (`cairn account-reaper --config FILE [--once]`).
//!
//! ```toml
//! [server]
//! bind_port = 6202
//! devices = "/srv/node"
//!
//! [account-server]
//! auto_create_account_prefix = "."
//!
//! [account-replicator]
//! interval = 30
//! concurrency = 8
//! per_diff = 1000
//! max_diffs = 100
//! reclaim_age = 604800
//! databases_per_second = 50
//!
//! [account-auditor]
//! interval = 1800
//! accounts_per_second = 200
//!
//! [account-reaper]
//! interval = 3600
//! concurrency = 25
//! delay_reaping = 0
//! reap_warn_after = 2592000
//! ```
//!
//! The replicator's local devices are the account ring's devices whose `ip:port` or
//! `replication_ip:replication_port` is this server's `bind_ip:bind_port` (an unspecified
//! `bind_ip` matches any address).

use std::path::Path;
use std::sync::Arc;

use cairn_common::config::{ClusterConfig, ConfigError};
use cairn_common::fs::FallocateReserve;
use cairn_common::server_config::{
    load_role_config, RoleConfig, ServerSection, DEFAULT_ACCOUNT_PORT,
};
use cairn_db::daemon::{check_secs, secs, AuditorSettings, DbReplicatorSection};
use cairn_db::replicator::ReplicatorSettings;
use cairn_db::AccountKind;
use cairn_ring::RingWatcher;
use serde::Deserialize;

use crate::reaper::{AccountReaper, ReaperRings, ReaperSection};
use crate::server::{AccountServer, AccountServerSettings};

/// The `[account-server]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccountSection {
    /// Accounts starting with this prefix are created by their first container report.
    pub auto_create_account_prefix: String,
    /// PUT, POST and REPLICATE answer 507 below this free space on a device: bytes
    /// (`"1073741824"`) or a percentage of its size (`"1%"`), as Swift.
    pub fallocate_reserve: String,
}

impl Default for AccountSection {
    fn default() -> Self {
        AccountSection {
            auto_create_account_prefix: ".".to_string(),
            fallocate_reserve: "1%".to_string(),
        }
    }
}

impl AccountSection {
    /// The parsed `fallocate_reserve` (the object server's parser).
    pub fn fallocate_reserve(&self) -> Result<FallocateReserve, String> {
        FallocateReserve::parse("account-server.fallocate_reserve", &self.fallocate_reserve)
    }
}

/// The `[account-auditor]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccountAuditorSection {
    /// Seconds between the starts of two passes.
    pub interval: f64,
    /// At most this many account DBs checked per second (0: unlimited).
    pub accounts_per_second: f64,
}

impl Default for AccountAuditorSection {
    fn default() -> Self {
        AccountAuditorSection {
            interval: 1800.0,
            accounts_per_second: 200.0,
        }
    }
}

/// The whole `account-server.toml`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccountServerFile {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default, rename = "account-server")]
    pub account: AccountSection,
    #[serde(default, rename = "account-replicator")]
    pub replicator: DbReplicatorSection,
    #[serde(default, rename = "account-auditor")]
    pub auditor: AccountAuditorSection,
    #[serde(default, rename = "account-reaper")]
    pub reaper: ReaperSection,
}

impl RoleConfig for AccountServerFile {
    fn server(&self) -> &ServerSection {
        &self.server
    }
    fn server_mut(&mut self) -> &mut ServerSection {
        &mut self.server
    }
    fn validate(&self) -> Result<(), String> {
        self.account.fallocate_reserve()?;
        self.replicator.validate("account-replicator")?;
        check_secs("account-auditor", "interval", self.auditor.interval)?;
        let aps = self.auditor.accounts_per_second;
        if !(aps.is_finite() && aps >= 0.0) {
            return Err(format!(
                "account-auditor.accounts_per_second must be >= 0, not {aps}"
            ));
        }
        self.reaper.validate()
    }
}

impl AccountServerFile {
    /// The handler settings this file describes (policy names from the cluster file).
    pub fn settings(&self, cluster: &ClusterConfig) -> Result<AccountServerSettings, String> {
        let mut s = AccountServerSettings::new(self.server.devices.clone());
        s.mount_check = self.server.mount_check;
        s.fallocate_reserve = self.account.fallocate_reserve()?;
        s.auto_create_account_prefix = self.account.auto_create_account_prefix.clone();
        s.policies = cluster
            .policies
            .iter()
            .map(|p| (p.index, p.name.clone()))
            .collect();
        s.replication_server = self.server.replication_server;
        s.constraints = cluster.constraints.clone();
        Ok(s)
    }

    /// The account-replicator's settings.
    pub fn replicator_settings(&self) -> ReplicatorSettings {
        self.replicator.settings(&self.server, DEFAULT_ACCOUNT_PORT)
    }

    /// The account-auditor's settings.
    pub fn auditor_settings(&self) -> AuditorSettings {
        AuditorSettings {
            devices: self.server.devices.clone(),
            mount_check: self.server.mount_check,
            interval: secs(self.auditor.interval),
            databases_per_second: self.auditor.accounts_per_second,
        }
    }
}

/// Why an account daemon could not start (or stopped with an error).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Reaper(#[from] crate::reaper::ReapError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Load `account-server.toml` and its cluster file and serve until SIGTERM/SIGINT.
/// Call inside a tokio runtime.
pub async fn run_account_server(config: &Path) -> Result<(), RunError> {
    let file: AccountServerFile = load_role_config(config)?;
    let cluster = file.server.load_cluster()?;
    let settings = file.settings(&cluster).map_err(RunError::Invalid)?;
    let server = AccountServer::new(settings, cluster.hash_path_secret());
    file.server
        .serve("account-server", DEFAULT_ACCOUNT_PORT, &cluster, server)
        .await?;
    Ok(())
}

/// `cairn account-replicator --config account-server.toml [--once]`: replicate every
/// account DB on the local devices of `account.ring` every `interval` (or once) until
/// SIGTERM/SIGINT. Call inside a tokio runtime.
pub async fn run_account_replicator(config: &Path, once: bool) -> Result<(), RunError> {
    let file: AccountServerFile = load_role_config(config)?;
    let cluster = file.server.load_cluster()?;
    let ring_path = cluster.ring_dir().join("account.ring");
    let ring = RingWatcher::with_interval(&ring_path, secs(file.replicator.ring_check_interval))
        .map_err(|e| RunError::Invalid(format!("{}: {e}", ring_path.display())))?;
    cairn_db::daemon::run_replicator::<AccountKind>(
        "account-replicator",
        file.replicator_settings(),
        Arc::new(ring),
        Some(file.server.recon_cache_path.clone()),
        once,
    )
    .await?;
    Ok(())
}

/// `cairn account-auditor --config account-server.toml [--once]`: `quick_check` every
/// account DB at `accounts_per_second`, quarantining damaged ones.
pub async fn run_account_auditor(config: &Path, once: bool) -> Result<(), RunError> {
    let file: AccountServerFile = load_role_config(config)?;
    cairn_db::daemon::run_auditor::<AccountKind>(
        "account-auditor",
        file.auditor_settings(),
        Some(file.server.recon_cache_path.clone()),
        once,
    )
    .await?;
    Ok(())
}

/// `cairn account-reaper --config account-server.toml [--once]`: delete the contents of
/// accounts marked deleted (see [`crate::reaper`]) every `interval` (or once) until
/// SIGTERM/SIGINT. Call inside a tokio runtime.
pub async fn run_account_reaper(config: &Path, once: bool) -> Result<(), RunError> {
    let file: AccountServerFile = load_role_config(config)?;
    let cluster = file.server.load_cluster()?;
    let rings = ReaperRings::load(&cluster)?;
    let reaper = AccountReaper::new(
        file.reaper.settings(&file.server),
        cluster.hash_path_secret(),
    );
    crate::reaper::run_reaper(
        reaper,
        rings,
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
    use std::time::Duration;

    #[test]
    fn defaults_and_unknown_keys() {
        let f: AccountServerFile = parse_role_config("", "t", Path::new("/etc/cairn")).unwrap();
        assert_eq!(f.account.auto_create_account_prefix, ".");
        assert_eq!(f.replicator, DbReplicatorSection::default());
        let r = f.replicator_settings();
        assert_eq!(r.bind_port, DEFAULT_ACCOUNT_PORT);
        assert_eq!(r.bind_ips, vec!["127.0.0.1".to_string()]);
        assert_eq!(r.interval, Duration::from_secs(30));
        assert_eq!((r.concurrency, r.per_diff, r.max_diffs), (8, 1000, 100));
        assert_eq!(r.reclaim_age, 604_800);
        assert_eq!(f.auditor_settings().interval, Duration::from_secs(1800));

        let f: AccountServerFile = parse_role_config(
            "[server]\nbind_port = 6212\n[account-replicator]\nper_diff = 10\ninterval = 2.5\n",
            "t",
            Path::new("/"),
        )
        .unwrap();
        let r = f.replicator_settings();
        assert_eq!((r.per_diff, r.bind_port), (10, 6212));
        assert_eq!(r.interval, Duration::from_millis(2500));

        let e = parse_role_config::<AccountServerFile>(
            "[account-replicator]\nbogus_key = 1\n",
            "account-server.toml",
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bogus_key"), "{e}");
        let e = parse_role_config::<AccountServerFile>("[account-servr]\n", "t", Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("account-servr"), "{e}");
        let e = parse_role_config::<AccountServerFile>(
            "[account-replicator]\nconcurrency = 0\n",
            "t",
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("account-replicator.concurrency"), "{e}");
        let e = parse_role_config::<AccountServerFile>(
            "[account-auditor]\ninterval = -1\n",
            "t",
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("account-auditor.interval"), "{e}");
    }

    #[test]
    fn fallocate_reserve_bytes_or_percent() {
        let cluster =
            ClusterConfig::parse("[cluster]\nhash_path_suffix = \"s\"\n", "c", "/".into()).unwrap();
        let parse = |text: &str| {
            parse_role_config::<AccountServerFile>(text, "account-server.toml", Path::new("/"))
        };
        let f = parse("").unwrap();
        let s = f.settings(&cluster).unwrap();
        assert_eq!(s.fallocate_reserve, FallocateReserve::Percent(1.0));
        let f = parse("[account-server]\nfallocate_reserve = \"1048576\"\n").unwrap();
        let s = f.settings(&cluster).unwrap();
        assert_eq!(s.fallocate_reserve, FallocateReserve::Bytes(1 << 20));
        let f = parse("[account-server]\nfallocate_reserve = \"100%\"\n").unwrap();
        let s = f.settings(&cluster).unwrap();
        assert_eq!(s.fallocate_reserve, FallocateReserve::Percent(100.0));
        for bad in ["\"1GB\"", "\"150%\"", "\"-1\"", "1"] {
            let text = format!("[account-server]\nfallocate_reserve = {bad}\n");
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains("fallocate_reserve"), "{bad}: {e}");
        }
    }
}
