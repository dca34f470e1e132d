//! `proxy-server.toml`: the `[server]` table shared with every role, `[proxy]` and
//! `[tempauth]` (`DESIGN.md`, "Configuration"; `PROTOCOLS.md`, "Authentication").
//!
//! ```toml
//! [server]
//! bind_port = 8080
//! cluster_config = "cairn.toml"
//!
//! [proxy]
//! account_autocreate = true
//! sorting_method = "affinity"              # shuffle (default) | timing | affinity
//! read_affinity = "r1z1=100, r1=200"       # lower first; ties keep ring order
//! write_affinity = "r1"                    # object PUTs: local nodes first…
//! write_affinity_node_count = "2 * replicas"  # …this many of them
//! read_repair = true                       # push a GET's object to primaries that missed it
//! read_repair_queue = 1024                 # bounded; more are dropped (and counted)
//! read_repair_workers = 2
//!
//! [tempauth]
//! token_secret = "long random string"      # or token_secret_file = "secret"
//! [[tempauth.user]]
//! account = "test"
//! user = "tester"
//! key = "testing"
//! groups = [".admin"]
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use cairn_common::config::ConfigError;
use cairn_common::server_config::{load_role_config, parse_role_config, RoleConfig, ServerSection};

/// The whole proxy role file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub proxy: ProxySection,
    #[serde(default)]
    pub tempauth: TempAuthSection,
    #[serde(default)]
    pub slo: SloSection,
    #[serde(default)]
    pub tempurl: TempUrlSection,
}

/// `[tempurl]`: Swift's `[filter:tempurl]` options; `allowed_digests` also bounds the
/// signatures FormPost accepts (Swift's formpost reads the same setting). Header
/// patterns are lowercase names, a trailing `*` matching any suffix.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TempUrlSection {
    /// Methods a temp URL may be signed for.
    pub methods: Vec<String>,
    /// Request headers dropped from temp-URL requests.
    pub incoming_remove_headers: Vec<String>,
    /// Exceptions to `incoming_remove_headers`.
    pub incoming_allow_headers: Vec<String>,
    /// Response headers dropped from temp-URL answers (object metadata by default).
    pub outgoing_remove_headers: Vec<String>,
    /// Exceptions to `outgoing_remove_headers`.
    pub outgoing_allow_headers: Vec<String>,
    /// Digests a signature may use: `sha1`, `sha256`, `sha512`.
    pub allowed_digests: Vec<String>,
}

impl Default for TempUrlSection {
    fn default() -> Self {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        TempUrlSection {
            methods: owned(&crate::tempurl::METHODS),
            incoming_remove_headers: owned(&crate::tempurl::INCOMING_REMOVE_HEADERS),
            incoming_allow_headers: owned(&crate::tempurl::INCOMING_ALLOW_HEADERS),
            outgoing_remove_headers: owned(&crate::tempurl::OUTGOING_REMOVE_HEADERS),
            outgoing_allow_headers: owned(&crate::tempurl::OUTGOING_ALLOW_HEADERS),
            allowed_digests: owned(&crate::signature::ALLOWED_DIGESTS),
        }
    }
}

impl TempUrlSection {
    fn validate(&self) -> Result<(), String> {
        let known = crate::tempurl::METHODS;
        if self.methods.is_empty() {
            return Err("tempurl.methods must name at least one method".into());
        }
        if let Some(m) = self.methods.iter().find(|m| !known.contains(&m.as_str())) {
            return Err(format!("tempurl.methods: {m:?} is not one of {known:?}"));
        }
        let digests = crate::signature::ALLOWED_DIGESTS;
        if self.allowed_digests.is_empty() {
            return Err("tempurl.allowed_digests must name at least one digest".into());
        }
        if let Some(d) = self
            .allowed_digests
            .iter()
            .find(|d| !digests.contains(&d.as_str()))
        {
            return Err(format!(
                "tempurl.allowed_digests: {d:?} is not one of {digests:?}"
            ));
        }
        for (key, patterns) in [
            (
                "tempurl.incoming_remove_headers",
                &self.incoming_remove_headers,
            ),
            (
                "tempurl.incoming_allow_headers",
                &self.incoming_allow_headers,
            ),
            (
                "tempurl.outgoing_remove_headers",
                &self.outgoing_remove_headers,
            ),
            (
                "tempurl.outgoing_allow_headers",
                &self.outgoing_allow_headers,
            ),
        ] {
            if let Some(bad) = patterns.iter().find(|p| !header_pattern(p)) {
                return Err(format!(
                    "{key}: {bad:?} is not a lowercase header name (optionally ending in *)"
                ));
            }
        }
        Ok(())
    }
}

/// A lowercase header name, optionally ending in `*`.
fn header_pattern(p: &str) -> bool {
    let name = p.strip_suffix('*').unwrap_or(p);
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// `[slo]`: Swift's `[filter:slo]` options that Cairn honours.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SloSection {
    /// Seconds between the whitespace bytes of a `heartbeat=on` manifest PUT (Swift's
    /// default 10); `/info` reports it.
    pub yield_frequency: u64,
}

impl Default for SloSection {
    fn default() -> Self {
        SloSection {
            yield_frequency: 10,
        }
    }
}

/// `[proxy]`: Swift's `[app:proxy-server]` options. `conn_timeout`, `node_timeout` and
/// `client_timeout` here override the `[server]` ones when set.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    /// A missing account behaves as an empty one; the first container PUT creates it.
    pub account_autocreate: bool,
    /// Reseller admins may PUT/DELETE accounts.
    pub allow_account_management: bool,
    pub conn_timeout: Option<f64>,
    pub node_timeout: Option<f64>,
    pub client_timeout: Option<f64>,
    /// After a quorum answered, how long to wait for the other backends.
    pub post_quorum_timeout: f64,
    /// Errors within `error_suppression_interval` after which a node is skipped.
    pub error_suppression_limit: u32,
    pub error_suppression_interval: f64,
    /// Nodes a read may try, primaries included; `None`: 2 × replicas.
    pub request_node_count: Option<usize>,
    /// Origins allowed for CORS in addition to each container's own list.
    pub cors_allow_origin: Vec<String>,
    /// Force `http` or `https` in storage URLs (`default`: as the request came).
    pub storage_url_scheme: String,
    /// How long account/container existence answers are cached (seconds).
    pub recheck_existence: f64,
    /// Cap on segments of one SLO/DLO GET (defensive; Swift has none for DLO).
    pub max_large_object_segments: usize,
    /// How reads order the primaries: `shuffle` (Swift's default), `timing` (fastest
    /// recent answer first) or `affinity` (by `read_affinity`; ring order without it).
    pub sorting_method: String,
    /// `affinity` priorities, lower first: `"r1z1=100, r1=200"` (Swift's syntax).
    pub read_affinity: String,
    /// Object PUTs prefer these regions/zones (`"r1, r2z1"`) for their first
    /// `write_affinity_node_count` nodes (primaries or handoffs).
    pub write_affinity: String,
    /// `"2 * replicas"`, `"N * replicas"` or a plain number.
    pub write_affinity_node_count: String,
    /// How long (seconds) a node's last response time counts for `timing`.
    pub timing_expiry: f64,
    /// Queue a background PUT of an object read from a later node to the primaries
    /// that missed it.
    pub read_repair: bool,
    /// Read repairs waiting at most (more are dropped and counted).
    pub read_repair_queue: usize,
    /// Concurrent read repairs.
    pub read_repair_workers: usize,
    /// Seconds between checks of the ring files for a new version (Swift's name and
    /// default; 0 checks on every request).
    pub ring_check_interval: f64,
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            account_autocreate: true,
            allow_account_management: false,
            conn_timeout: None,
            node_timeout: None,
            client_timeout: None,
            post_quorum_timeout: 0.5,
            error_suppression_limit: 10,
            error_suppression_interval: 60.0,
            request_node_count: None,
            cors_allow_origin: Vec::new(),
            storage_url_scheme: "default".to_string(),
            recheck_existence: 10.0,
            max_large_object_segments: 100_000,
            sorting_method: "shuffle".to_string(),
            read_affinity: String::new(),
            write_affinity: String::new(),
            write_affinity_node_count: "2 * replicas".to_string(),
            timing_expiry: 300.0,
            read_repair: true,
            read_repair_queue: 1024,
            read_repair_workers: 2,
            ring_check_interval: 15.0,
        }
    }
}

/// `[tempauth]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TempAuthSection {
    /// `AUTH`: accounts are named `AUTH_<account>`.
    pub reseller_prefix: String,
    /// Seconds a token lives.
    pub token_life: u64,
    /// The key tokens are signed with (shared by every proxy of the cluster).
    pub token_secret: Option<String>,
    /// A file holding the key (first line), relative to the config file.
    pub token_secret_file: Option<PathBuf>,
    #[serde(rename = "user")]
    pub users: Vec<UserEntry>,
}

impl Default for TempAuthSection {
    fn default() -> Self {
        TempAuthSection {
            reseller_prefix: "AUTH".to_string(),
            token_life: 86_400,
            token_secret: None,
            token_secret_file: None,
            users: Vec::new(),
        }
    }
}

/// One `[[tempauth.user]]`: Swift's `user_<account>_<user> = key groups… url`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub account: String,
    pub user: String,
    pub key: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Storage URL to hand out; `$HOST` is replaced by the request's scheme and host.
    #[serde(default)]
    pub url: Option<String>,
}

fn positive(key: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && (0.0..1e9).contains(&v) {
        Ok(())
    } else {
        Err(format!(
            "{key} must be a non-negative number of seconds, not {v}"
        ))
    }
}

impl RoleConfig for ProxyConfig {
    fn server(&self) -> &ServerSection {
        &self.server
    }
    fn server_mut(&mut self) -> &mut ServerSection {
        &mut self.server
    }
    fn validate(&self) -> Result<(), String> {
        let p = &self.proxy;
        for (k, v) in [
            ("proxy.conn_timeout", p.conn_timeout),
            ("proxy.node_timeout", p.node_timeout),
            ("proxy.client_timeout", p.client_timeout),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0 && v < 1e9) {
                    return Err(format!("{k} must be a positive number of seconds, not {v}"));
                }
            }
        }
        positive("proxy.post_quorum_timeout", p.post_quorum_timeout)?;
        positive(
            "proxy.error_suppression_interval",
            p.error_suppression_interval,
        )?;
        positive("proxy.recheck_existence", p.recheck_existence)?;
        if p.request_node_count == Some(0) {
            return Err("proxy.request_node_count must be at least 1".into());
        }
        if !["default", "http", "https"].contains(&p.storage_url_scheme.as_str()) {
            return Err(format!(
                "proxy.storage_url_scheme must be default, http or https, not {:?}",
                p.storage_url_scheme
            ));
        }
        if !["shuffle", "timing", "affinity"].contains(&p.sorting_method.as_str()) {
            return Err(format!(
                "proxy.sorting_method must be shuffle, timing or affinity, not {:?}",
                p.sorting_method
            ));
        }
        crate::affinity::parse_read_affinity(&p.read_affinity)
            .map_err(|e| format!("proxy.read_affinity: {e}"))?;
        crate::affinity::parse_write_affinity(&p.write_affinity)
            .map_err(|e| format!("proxy.write_affinity: {e}"))?;
        crate::affinity::parse_node_count(&p.write_affinity_node_count)
            .map_err(|e| format!("proxy.write_affinity_node_count: {e}"))?;
        positive("proxy.timing_expiry", p.timing_expiry)?;
        positive("proxy.ring_check_interval", p.ring_check_interval)?;
        self.tempurl.validate()?;
        if self.slo.yield_frequency == 0 {
            return Err("slo.yield_frequency must be at least 1 (seconds)".into());
        }
        if p.read_repair_queue == 0 || p.read_repair_workers == 0 {
            return Err(
                "proxy.read_repair_queue and read_repair_workers must be at least 1".into(),
            );
        }
        let t = &self.tempauth;
        if t.reseller_prefix.is_empty()
            || !t.reseller_prefix.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err("tempauth.reseller_prefix must be letters and digits".into());
        }
        if t.token_life == 0 {
            return Err("tempauth.token_life must be positive".into());
        }
        match (&t.token_secret, &t.token_secret_file) {
            (Some(_), Some(_)) => {
                return Err("set only one of tempauth.token_secret and token_secret_file".into())
            }
            (None, None) => {
                return Err(
                    "tempauth.token_secret (or token_secret_file) is required to sign tokens"
                        .into(),
                )
            }
            (Some(s), None) if s.len() < 8 => {
                return Err("tempauth.token_secret must be at least 8 characters".into())
            }
            _ => {}
        }
        for u in &t.users {
            if u.account.is_empty() || u.user.is_empty() || u.account.contains(':') {
                return Err(format!(
                    "tempauth.user {:?}:{:?}: account and user must be non-empty (no ':' in account)",
                    u.account, u.user
                ));
            }
            for g in &u.groups {
                if g.contains(',') || g.is_empty() {
                    return Err(format!(
                        "tempauth.user {}:{}: bad group {g:?}",
                        u.account, u.user
                    ));
                }
            }
        }
        Ok(())
    }
}

fn secs(v: f64) -> Duration {
    Duration::try_from_secs_f64(v).unwrap_or(Duration::from_secs(1))
}

impl ProxyConfig {
    /// `proxy.ring_check_interval` as a duration (validated non-negative and finite).
    pub fn ring_check_interval(&self) -> Duration {
        Duration::try_from_secs_f64(self.proxy.ring_check_interval)
            .unwrap_or(cairn_ring::ring::DEFAULT_RING_CHECK_INTERVAL)
    }

    /// Read and check `proxy-server.toml`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: ProxyConfig = load_role_config(path)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        cfg.resolve(&base);
        Ok(cfg)
    }

    /// Parse and check the text of a proxy config; relative paths resolve against `base`.
    pub fn parse(text: &str, name: &str, base: &Path) -> Result<Self, ConfigError> {
        let mut cfg: ProxyConfig = parse_role_config(text, name, base)?;
        cfg.resolve(base);
        Ok(cfg)
    }

    fn resolve(&mut self, base: &Path) {
        if let Some(f) = self.tempauth.token_secret_file.as_mut() {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
    }

    /// The token signing key: `token_secret`, or the first line of `token_secret_file`.
    pub fn token_secret(&self) -> Result<Vec<u8>, ConfigError> {
        if let Some(s) = &self.tempauth.token_secret {
            return Ok(s.as_bytes().to_vec());
        }
        let path = self.tempauth.token_secret_file.clone().unwrap_or_default();
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let line = text.lines().next().unwrap_or("").trim().to_string();
        if line.len() < 8 {
            return Err(ConfigError::Invalid {
                path: path.display().to_string(),
                message: "token secret must be at least 8 characters".into(),
            });
        }
        Ok(line.into_bytes())
    }

    pub fn conn_timeout(&self) -> Duration {
        secs(self.proxy.conn_timeout.unwrap_or(self.server.conn_timeout))
    }
    pub fn node_timeout(&self) -> Duration {
        secs(self.proxy.node_timeout.unwrap_or(self.server.node_timeout))
    }
    pub fn client_timeout(&self) -> Duration {
        secs(
            self.proxy
                .client_timeout
                .unwrap_or(self.server.client_timeout),
        )
    }
    pub fn post_quorum_timeout(&self) -> Duration {
        secs(self.proxy.post_quorum_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ProxyConfig, ConfigError> {
        ProxyConfig::parse(text, "proxy-server.toml", Path::new("/etc/cairn"))
    }

    #[test]
    fn defaults_and_users() {
        let c = parse(
            "[tempauth]\ntoken_secret = \"0123456789\"\n[[tempauth.user]]\naccount = \"test\"\n\
             user = \"tester\"\nkey = \"testing\"\ngroups = [\".admin\"]\n",
        )
        .unwrap();
        assert!(c.proxy.account_autocreate);
        assert_eq!(c.tempauth.reseller_prefix, "AUTH");
        assert_eq!(c.tempauth.token_life, 86400);
        assert_eq!(c.tempauth.users[0].groups, vec![".admin"]);
        assert_eq!(c.conn_timeout(), Duration::from_millis(500));
        assert_eq!(c.node_timeout(), Duration::from_secs(10));
        assert_eq!(c.token_secret().unwrap(), b"0123456789");
    }

    #[test]
    fn errors() {
        assert!(parse("").is_err(), "secret required");
        assert!(parse("[tempauth]\ntoken_secret = \"0123456789\"\nbogus = 1\n").is_err());
        assert!(parse(
            "[tempauth]\ntoken_secret = \"0123456789\"\n[proxy]\nstorage_url_scheme = \"ftp\"\n"
        )
        .is_err());
        let c = parse("[tempauth]\ntoken_secret_file = \"secret\"\n").unwrap();
        assert_eq!(
            c.tempauth.token_secret_file,
            Some(PathBuf::from("/etc/cairn/secret"))
        );
    }

    #[test]
    fn tempurl_settings() {
        let secret = "[tempauth]\ntoken_secret = \"0123456789\"\n";
        let c = parse(secret).unwrap();
        assert_eq!(c.tempurl.methods, ["GET", "HEAD", "PUT", "POST", "DELETE"]);
        assert_eq!(c.tempurl.allowed_digests, ["sha1", "sha256", "sha512"]);
        let c = parse(&format!(
            "{secret}[tempurl]\nmethods = [\"GET\"]\nallowed_digests = [\"sha512\"]\n\
             outgoing_allow_headers = [\"x-object-meta-public-*\", \"x-object-meta-color\"]\n"
        ))
        .unwrap();
        assert_eq!(c.tempurl.methods, ["GET"]);
        assert_eq!(c.tempurl.allowed_digests, ["sha512"]);
        for (bad, key) in [
            ("allowed_digests = [\"md5\"]", "tempurl.allowed_digests"),
            ("allowed_digests = []", "tempurl.allowed_digests"),
            ("methods = [\"PATCH\"]", "tempurl.methods"),
            (
                "incoming_remove_headers = [\"X-Timestamp\"]",
                "tempurl.incoming_remove_headers",
            ),
        ] {
            let err = parse(&format!("{secret}[tempurl]\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
        assert!(parse(&format!("{secret}[tempurl]\nbogus = 1\n")).is_err());
    }

    #[test]
    fn slo_yield_frequency() {
        let secret = "[tempauth]\ntoken_secret = \"0123456789\"\n";
        let c = parse(secret).unwrap();
        assert_eq!(c.slo.yield_frequency, 10);
        let c = parse(&format!("{secret}[slo]\nyield_frequency = 2\n")).unwrap();
        assert_eq!(c.slo.yield_frequency, 2);
        let err = parse(&format!("{secret}[slo]\nyield_frequency = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("slo.yield_frequency"), "{err}");
        assert!(parse(&format!("{secret}[slo]\nbogus = 1\n")).is_err());
    }

    #[test]
    fn ring_check_interval() {
        let secret = "[tempauth]\ntoken_secret = \"0123456789\"\n";
        let c = parse(secret).unwrap();
        assert_eq!(c.proxy.ring_check_interval, 15.0);
        assert_eq!(c.ring_check_interval(), Duration::from_secs(15));
        let c = parse(&format!("{secret}[proxy]\nring_check_interval = 2.5\n")).unwrap();
        assert_eq!(c.ring_check_interval(), Duration::from_millis(2500));
        let c = parse(&format!("{secret}[proxy]\nring_check_interval = 0\n")).unwrap();
        assert_eq!(c.ring_check_interval(), Duration::ZERO);
        for bad in ["-1", "1e12", "nan", "\"15\""] {
            let e = parse(&format!("{secret}[proxy]\nring_check_interval = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("ring_check_interval"), "{bad}: {e}");
        }
    }
}
