//! The `[server]` table shared by every server-role file (`object-server.toml`,
//! `container-server.toml`, `account-server.toml`, `proxy-server.toml`; `DESIGN.md`,
//! "Configuration"), and the loader for role files.
//!
//! A role file is `{ server: ServerSection, <role tables…> }`. Each role owner defines its
//! own file struct and implements [`RoleConfig`] for it, e.g.:
//!
//! ```text
//! #[derive(Debug, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! pub struct ObjectServerFile {
//!     #[serde(default)]
//!     pub server: ServerSection,
//!     #[serde(default, rename = "object-server")]
//!     pub object: ObjectSection,
//!     #[serde(default, rename = "object-replicator")]
//!     pub replicator: ReplicatorSection,
//! }
//! impl RoleConfig for ObjectServerFile {
//!     fn server(&self) -> &ServerSection { &self.server }
//!     fn server_mut(&mut self) -> &mut ServerSection { &mut self.server }
//!     fn validate(&self) -> Result<(), String> { Ok(()) } // role-specific checks
//! }
//! let cfg: ObjectServerFile = load_role_config(path)?;
//! ```
//!
//! Every table must use `deny_unknown_fields` and `default`s so that a typo is an error
//! and an empty table works. [`ServerOnlyFile`] serves a role with no tables of its own.
//!
//! Defaults follow Swift except `bind_ip`: Swift listens on `0.0.0.0`; Cairn defaults to
//! `127.0.0.1` so that a fresh node exposes nothing until the operator chooses an address.
//! `mount_check` defaults to `false` (development-friendly; production sets `true`).
//! `workers` is the number of tokio worker threads (0: one per core), not processes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::{ClusterConfig, ConfigError};
use crate::http::{ServeOptions, Timeouts};
use crate::recon::OpsConfig;

/// Swift's default ports per role.
pub const DEFAULT_OBJECT_PORT: u16 = 6200;
pub const DEFAULT_CONTAINER_PORT: u16 = 6201;
pub const DEFAULT_ACCOUNT_PORT: u16 = 6202;
pub const DEFAULT_PROXY_PORT: u16 = 8080;

/// Headers a server accepts beyond `max_header_count`: room for what the proxy adds
/// (`X-Timestamp`, `X-Backend-*`, container update headers, …).
pub const BACKEND_HEADER_ROOM: usize = 64;

/// The `[server]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address to listen on (default `127.0.0.1`; see the module doc).
    pub bind_ip: IpAddr,
    /// Port to listen on; `None` means the role's default ([`ServerSection::bind_addr`]).
    pub bind_port: Option<u16>,
    /// Root of the device mount points (`/srv/node`).
    pub devices: PathBuf,
    /// Require each device to be a mount point (507 otherwise).
    pub mount_check: bool,
    /// Tokio worker threads (0: one per core).
    pub workers: usize,
    /// Seconds to connect to a backend server.
    pub conn_timeout: f64,
    /// Seconds to wait for a backend server's response (headers, then each body read).
    pub node_timeout: f64,
    /// Seconds to wait for a client's request headers and each read of its body.
    pub client_timeout: f64,
    /// While this file exists `/healthcheck` answers 503 (take a node out of a balancer).
    pub disable_file: Option<PathBuf>,
    /// Directory of the `*.recon` cache files.
    pub recon_cache_path: PathBuf,
    /// Log filter (`info`, `debug`, `cairn_object=debug,info`); `RUST_LOG` overrides it.
    pub log_level: String,
    /// The cluster file; relative paths resolve against the role file's directory.
    pub cluster_config: PathBuf,
    /// `true`: serve only replication traffic; `false`: only the rest; unset: both.
    pub replication_server: Option<bool>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            bind_port: None,
            devices: PathBuf::from("/srv/node"),
            mount_check: false,
            workers: 0,
            conn_timeout: 0.5,
            node_timeout: 10.0,
            client_timeout: 60.0,
            disable_file: None,
            recon_cache_path: PathBuf::from("/var/cache/cairn"),
            log_level: "info".to_string(),
            cluster_config: PathBuf::from("cairn.toml"),
            replication_server: None,
        }
    }
}

fn secs(v: f64) -> Duration {
    Duration::try_from_secs_f64(v).unwrap_or(Duration::from_secs(1))
}

impl ServerSection {
    /// `bind_ip:bind_port`, with the role's default port when none is configured.
    pub fn bind_addr(&self, default_port: u16) -> SocketAddr {
        SocketAddr::new(self.bind_ip, self.bind_port.unwrap_or(default_port))
    }

    /// Serve `handler` on this section's address (the role's default port when none is
    /// set), with the operator endpoints (`/healthcheck`, `/metrics`, `/recon/...` of
    /// this node's devices and of the cluster's `ring_dir`), until SIGTERM/SIGINT. The one
    /// way every storage server starts.
    pub async fn serve<H: crate::http::Handler>(
        &self,
        name: &str,
        default_port: u16,
        cluster: &ClusterConfig,
        handler: H,
    ) -> std::io::Result<()> {
        let mut opts = self.serve_options(name);
        opts.ops = Some(std::sync::Arc::new(crate::recon::Ops::new(
            self.ops_config(Some(cluster.ring_dir())),
        )));
        // The proxy forwards up to `max_header_count` client headers plus its own backend
        // headers; a lower limit here would answer 431 to requests the proxy accepted.
        opts.max_headers = opts
            .max_headers
            .max(cluster.constraints.max_header_count() + BACKEND_HEADER_ROOM);
        crate::daemon::run_server(
            self.bind_addr(default_port),
            std::sync::Arc::new(handler),
            opts,
        )
        .await
    }

    /// Backend request timeouts (`conn_timeout`, `node_timeout`).
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            conn: secs(self.conn_timeout),
            node: secs(self.node_timeout),
        }
    }

    pub fn client_timeout_duration(&self) -> Duration {
        secs(self.client_timeout)
    }

    /// Make relative paths absolute against `base_dir` (the role file's directory).
    pub fn resolve_paths(&mut self, base_dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base_dir.join(&*p);
            }
        };
        fix(&mut self.devices);
        fix(&mut self.recon_cache_path);
        fix(&mut self.cluster_config);
        if let Some(d) = self.disable_file.as_mut() {
            fix(d);
        }
    }

    /// Checks serde cannot express; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("conn_timeout", self.conn_timeout),
            ("node_timeout", self.node_timeout),
            ("client_timeout", self.client_timeout),
        ] {
            if !(v.is_finite() && v > 0.0 && v < 1e9) {
                return Err(format!(
                    "server.{key} must be a positive number of seconds, not {v}"
                ));
            }
        }
        if self.bind_port == Some(0) {
            return Err("server.bind_port must not be 0".to_string());
        }
        if self.log_level.trim().is_empty() {
            return Err("server.log_level must not be empty".to_string());
        }
        Ok(())
    }

    /// Load the cluster file this server uses.
    pub fn load_cluster(&self) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::load(&self.cluster_config)
    }

    /// Operator endpoints for a storage server (recon on) with this section's paths.
    pub fn ops_config(&self, ring_dir: Option<PathBuf>) -> OpsConfig {
        OpsConfig {
            devices: self.devices.clone(),
            mount_check: self.mount_check,
            disable_file: self.disable_file.clone(),
            recon_cache_path: self.recon_cache_path.clone(),
            ring_dir,
            version: env!("CARGO_PKG_VERSION").to_string(),
            recon: true,
        }
    }

    /// [`ServeOptions`] named `name` with this section's `client_timeout`.
    pub fn serve_options(&self, name: &str) -> ServeOptions {
        let mut o = ServeOptions::new(name);
        o.client_timeout = self.client_timeout_duration();
        o
    }
}

/// A parsed role file: gives access to its `[server]` table.
pub trait RoleConfig: DeserializeOwned {
    fn server(&self) -> &ServerSection;
    fn server_mut(&mut self) -> &mut ServerSection;
    /// Role-specific checks, after paths are resolved; the message names the key.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A role file with only a `[server]` table.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerOnlyFile {
    #[serde(default)]
    pub server: ServerSection,
}

impl RoleConfig for ServerOnlyFile {
    fn server(&self) -> &ServerSection {
        &self.server
    }
    fn server_mut(&mut self) -> &mut ServerSection {
        &mut self.server
    }
}

/// Read, parse and check a role file; relative paths resolve against its directory.
pub fn load_role_config<T: RoleConfig>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse_role_config(&text, &path.display().to_string(), &base)
}

/// Parse and check the text of a role file; `name` appears in errors.
pub fn parse_role_config<T: RoleConfig>(
    text: &str,
    name: &str,
    base_dir: &Path,
) -> Result<T, ConfigError> {
    let mut cfg: T = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: name.to_string(),
        message: crate::config::toml_error(text, &e),
    })?;
    cfg.server_mut().resolve_paths(base_dir);
    let invalid = |message: String| ConfigError::Invalid {
        path: name.to_string(),
        message,
    };
    cfg.server().validate().map_err(invalid)?;
    cfg.validate().map_err(invalid)?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServerOnlyFile, ConfigError> {
        parse_role_config(text, "object-server.toml", Path::new("/etc/cairn"))
    }

    #[test]
    fn defaults_and_paths() {
        let c = parse("").unwrap().server;
        assert_eq!(
            c.bind_addr(DEFAULT_OBJECT_PORT),
            "127.0.0.1:6200".parse().unwrap()
        );
        assert_eq!(c.cluster_config, PathBuf::from("/etc/cairn/cairn.toml"));
        assert_eq!(c.devices, PathBuf::from("/srv/node"));
        assert_eq!(c.timeouts(), Timeouts::default());
        assert_eq!(c.client_timeout_duration(), Duration::from_secs(60));
        assert!(!c.mount_check);
        let c = parse(
            "[server]\nbind_ip = \"::1\"\nbind_port = 6210\ndevices = \"srv\"\nmount_check = true\n\
             conn_timeout = 0.25\ndisable_file = \"off\"\n",
        )
        .unwrap()
        .server;
        assert_eq!(c.bind_addr(1).to_string(), "[::1]:6210");
        assert_eq!(c.devices, PathBuf::from("/etc/cairn/srv"));
        assert_eq!(c.disable_file, Some(PathBuf::from("/etc/cairn/off")));
        assert_eq!(c.timeouts().conn, Duration::from_millis(250));
        assert!(c.ops_config(None).recon);
    }

    #[test]
    fn unknown_and_bad_keys_are_named() {
        let e = parse("[server]\nbind_prot = 1\n").unwrap_err().to_string();
        assert!(
            e.contains("bind_prot") && e.starts_with("object-server.toml: "),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let e = parse("[servr]\n").unwrap_err().to_string();
        assert!(e.contains("servr"), "{e}");
        let e = parse("[server]\nnode_timeout = -1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.node_timeout"), "{e}");
        let e = parse("[server]\nbind_ip = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bind_ip") || e.contains("line 2"), "{e}");
        let e = parse("[server]\nworkers = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn load_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("account-server.toml");
        std::fs::write(&p, "[server]\nbind_port = 6202\n").unwrap();
        let c: ServerOnlyFile = load_role_config(&p).unwrap();
        assert_eq!(c.server.cluster_config, dir.path().join("cairn.toml"));
        assert!(load_role_config::<ServerOnlyFile>(&dir.path().join("missing.toml")).is_err());
    }
}
