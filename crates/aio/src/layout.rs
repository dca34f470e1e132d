//! Where everything of an aio cluster lives under its directory, and the cluster's shape.
//!
//! ```text
//! DIR/aio.toml                         the shape (nodes, ports, …) chosen at init
//! DIR/etc/cairn.toml                   cluster file: secrets, ring_dir, policies
//! DIR/etc/rings/{object,container,account}.{builder,ring}
//! DIR/etc/proxy-server.toml            proxy, TempAuth users
//! DIR/etc/nodeN/{object,container,account}-server.toml   one set per storage node
//! DIR/nodeN/devices/sdbN               the node's device (one per node)
//! DIR/nodeN/recon/                     the node's recon cache files
//! DIR/log/<daemon>[-nodeN].log         every child's stdout and stderr
//! DIR/run/<daemon>[-nodeN].pid         pid of each running child
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The shape of a cluster, written to `DIR/aio.toml` at init and read on every start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    pub bind_ip: String,
    pub proxy_port: u16,
    pub port_base: u16,
    pub nodes: u16,
    pub replicas: u16,
    pub part_power: u8,
    pub reclaim_age: u64,
    /// Regions the nodes are spread over (contiguous blocks of nodes); 1 when absent.
    #[serde(default = "one")]
    pub regions: u16,
}

fn one() -> u16 {
    1
}

/// The three storage roles of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Object,
    Container,
    Account,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Object, Role::Container, Role::Account];

    pub fn name(self) -> &'static str {
        match self {
            Role::Object => "object",
            Role::Container => "container",
            Role::Account => "account",
        }
    }

    fn port_offset(self) -> u16 {
        match self {
            Role::Object => 0,
            Role::Container => 1,
            Role::Account => 2,
        }
    }
}

impl Shape {
    /// The port of `role` on node `n` (1-based): BASE + 10n + role offset, as Swift's SAIO.
    pub fn port(&self, n: u16, role: Role) -> u16 {
        self.port_base + 10 * n + role.port_offset()
    }

    /// The region of node `n`: nodes are split into `regions` contiguous blocks.
    pub fn region(&self, n: u16) -> u16 {
        1 + (u32::from(n - 1) * u32::from(self.regions) / u32::from(self.nodes)) as u16
    }

    /// The one device of node `n`.
    pub fn device_name(&self, n: u16) -> String {
        format!("sdb{n}")
    }
}

/// Paths of one aio directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    /// The root is made absolute: config files name paths that other processes, started
    /// from other directories, must find.
    pub fn new(root: &Path) -> Self {
        Layout {
            root: std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()),
        }
    }

    pub fn shape_file(&self) -> PathBuf {
        self.root.join("aio.toml")
    }
    pub fn etc(&self) -> PathBuf {
        self.root.join("etc")
    }
    pub fn cluster_file(&self) -> PathBuf {
        self.etc().join("cairn.toml")
    }
    pub fn ring_dir(&self) -> PathBuf {
        self.etc().join("rings")
    }
    pub fn builder_file(&self, role: Role) -> PathBuf {
        self.ring_dir().join(format!("{}.builder", role.name()))
    }
    pub fn proxy_file(&self) -> PathBuf {
        self.etc().join("proxy-server.toml")
    }
    pub fn node_etc(&self, n: u16) -> PathBuf {
        self.etc().join(format!("node{n}"))
    }
    pub fn server_file(&self, n: u16, role: Role) -> PathBuf {
        self.node_etc(n)
            .join(format!("{}-server.toml", role.name()))
    }
    pub fn devices(&self, n: u16) -> PathBuf {
        self.root.join(format!("node{n}")).join("devices")
    }
    pub fn recon(&self, n: u16) -> PathBuf {
        self.root.join(format!("node{n}")).join("recon")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
}
