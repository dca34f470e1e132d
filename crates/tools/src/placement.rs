//! Where a name lives: partition, hash, primaries, handoffs, and how to look at each
//! copy (`curl` against the backend API, the path on the node's disk).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cairn_common::http::{authority, backend_path};
use cairn_common::HashPathSecret;
use cairn_ring::{Device, Ring};
use serde_json::{json, Value};

/// One node of a placement.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLine {
    pub id: u32,
    pub ip: String,
    pub port: u16,
    pub device: String,
    pub region: u32,
    pub zone: u32,
    /// Primary: the replica index; handoff: the handoff index.
    pub index: usize,
    pub handoff: bool,
}

impl NodeLine {
    fn new(d: &Device, index: usize, handoff: bool) -> Self {
        NodeLine {
            id: d.id,
            ip: d.ip.clone(),
            port: d.port,
            device: d.device.clone(),
            region: d.region,
            zone: d.zone,
            index,
            handoff,
        }
    }

    pub fn authority(&self) -> String {
        authority(&self.ip, self.port)
    }
}

/// The placement of `/account[/container[/object]]` on one ring.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub account: String,
    pub container: Option<String>,
    pub object: Option<String>,
    /// The storage policy (object placements only).
    pub policy: Option<u32>,
    pub partition: u32,
    pub hash: String,
    pub primaries: Vec<NodeLine>,
    pub handoffs: Vec<NodeLine>,
}

impl Placement {
    /// Look a name up; `handoffs` is how many handoffs to list. `policy` is used (and
    /// required) when `object` is set.
    pub fn compute(
        ring: &Ring,
        secret: &HashPathSecret,
        account: &str,
        container: Option<&str>,
        object: Option<&str>,
        policy: u32,
        handoffs: usize,
    ) -> Placement {
        let (partition, nodes) = ring.get_nodes(secret, account, container, object);
        let primaries = nodes
            .iter()
            .map(|n| NodeLine::new(n.dev, n.index, false))
            .collect();
        let handoffs = ring
            .get_more_nodes(partition)
            .take(handoffs)
            .map(|h| NodeLine::new(h.dev, h.handoff_index, true))
            .collect();
        Placement {
            account: account.to_string(),
            container: container.map(str::to_string),
            object: object.map(str::to_string),
            policy: object.map(|_| policy),
            partition,
            hash: secret.hash_path(account, container, object),
            primaries,
            handoffs,
        }
    }

    /// `objects[-N]`, `containers` or `accounts`.
    pub fn datadir(&self) -> String {
        match (self.object.is_some(), self.container.is_some()) {
            (true, _) => match self.policy.unwrap_or(0) {
                0 => "objects".to_string(),
                n => format!("objects-{n}"),
            },
            (false, true) => "containers".to_string(),
            (false, false) => "accounts".to_string(),
        }
    }

    /// `DEVICES/DEV/DATADIR/PART/SUFFIX/HASH` (+ `/HASH.db` for databases).
    pub fn disk_path(&self, devices: &Path, node: &NodeLine) -> PathBuf {
        let suffix = &self.hash[self.hash.len().saturating_sub(3)..];
        let mut p = devices
            .join(&node.device)
            .join(self.datadir())
            .join(self.partition.to_string())
            .join(suffix)
            .join(&self.hash);
        if self.object.is_none() {
            p = p.join(format!("{}.db", self.hash));
        }
        p
    }

    /// `curl -g -I -XHEAD "http://IP:PORT/DEV/PART/ACCT/CONT/OBJ"` (with the policy
    /// header for objects).
    pub fn curl(&self, node: &NodeLine) -> String {
        let path = backend_path(
            &node.device,
            self.partition,
            &self.account,
            self.container.as_deref(),
            self.object.as_deref(),
        );
        let mut line = format!("curl -g -I -XHEAD \"http://{}{path}\"", node.authority());
        if let Some(p) = self.policy {
            let _ = write!(line, " -H \"X-Backend-Storage-Policy-Index: {p}\"");
        }
        line
    }

    fn all(&self) -> impl Iterator<Item = &NodeLine> {
        self.primaries.iter().chain(self.handoffs.iter())
    }

    /// The text report: names, partition and hash, nodes, curl lines, disk paths.
    pub fn text(&self, devices: &Path) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "Account  \t{}", self.account);
        if let Some(c) = &self.container {
            let _ = writeln!(o, "Container\t{c}");
        }
        if let Some(obj) = &self.object {
            let _ = writeln!(o, "Object   \t{obj}");
        }
        if let Some(p) = self.policy {
            let _ = writeln!(o, "Policy   \t{p}");
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "Partition\t{}", self.partition);
        let _ = writeln!(o, "Hash     \t{}", self.hash);
        let _ = writeln!(o);
        for n in self.all() {
            let _ = writeln!(
                o,
                "Server:Port Device\t{} {}\t(id {}, region {}, zone {}){}",
                n.authority(),
                n.device,
                n.id,
                n.region,
                n.zone,
                if n.handoff {
                    format!("\t [Handoff {}]", n.index)
                } else {
                    format!("\t [Primary {}]", n.index)
                }
            );
        }
        let _ = writeln!(o);
        for n in self.all() {
            let tag = if n.handoff { " # [Handoff]" } else { "" };
            let _ = writeln!(o, "{}{tag}", self.curl(n));
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "On disk (devices root {}; use --devices if yours differs):",
            devices.display()
        );
        for n in self.all() {
            let tag = if n.handoff { " # [Handoff]" } else { "" };
            let _ = writeln!(
                o,
                "ssh {} \"ls -lah {}\"{tag}",
                n.ip,
                self.disk_path(devices, n).display()
            );
        }
        if !self.handoffs.is_empty() {
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "note: handoff nodes hold data only while a primary is unavailable \
                 (or until the replicator moves it home)"
            );
        }
        o
    }

    /// The JSON form of the report.
    pub fn json(&self, devices: &Path) -> Value {
        let node = |n: &NodeLine| {
            let mut v = json!({
                "id": n.id,
                "ip": n.ip,
                "port": n.port,
                "device": n.device,
                "region": n.region,
                "zone": n.zone,
                "curl": self.curl(n),
                "path": self.disk_path(devices, n).display().to_string(),
            });
            let key = if n.handoff { "handoff_index" } else { "index" };
            v[key] = json!(n.index);
            v
        };
        json!({
            "account": self.account,
            "container": self.container,
            "object": self.object,
            "policy_index": self.policy,
            "partition": self.partition,
            "hash": self.hash,
            "primaries": self.primaries.iter().map(node).collect::<Vec<_>>(),
            "handoffs": self.handoffs.iter().map(node).collect::<Vec<_>>(),
        })
    }
}
