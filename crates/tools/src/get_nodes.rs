//! `cairn get-nodes`: where a name lives (Swift's `swift-get-nodes`).

use std::path::{Path, PathBuf};

use cairn_common::config::ClusterConfig;
use cairn_ring::Ring;

use crate::placement::Placement;
use crate::{ToolError, DEFAULT_CLUSTER_CONFIG};

/// `cairn get-nodes RING_FILE ACCOUNT [CONTAINER [OBJECT]]`.
///
/// The kind of name (account, container, object) is given by the number of names; it must
/// agree with the ring file's name (`account.ring`, `container.ring`, `object[-N].ring`)
/// when that is one of the standard names. `ACCOUNT` may also be a whole path
/// `ACCT/CONT/OBJ` (a leading `/` is ignored).
#[derive(Debug, Clone, clap::Args)]
pub struct GetNodesArgs {
    /// The ring file: `object.ring`, `object-N.ring`, `container.ring` or `account.ring`.
    pub ring_file: PathBuf,
    /// The account (or a whole `ACCT/CONT/OBJ` path).
    pub account: String,
    pub container: Option<String>,
    pub object: Option<String>,
    /// The cluster file with the hash path secrets.
    #[arg(long, default_value = DEFAULT_CLUSTER_CONFIG)]
    pub cluster_config: PathBuf,
    /// How many handoff nodes to list (default: the ring's replica count).
    #[arg(long)]
    pub handoffs: Option<usize>,
    /// The storage policy of an object ring (default: N of `object-N.ring`, else 0).
    #[arg(long)]
    pub policy_index: Option<u32>,
    /// The devices root on the storage nodes, for the on-disk paths.
    #[arg(long, default_value = "/srv/node")]
    pub devices: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What a standard ring file name says: `Some(3, N)` object ring of policy N, `Some(2, 0)`
/// container ring, `Some(1, 0)` account ring; `None` for other names.
fn ring_kind(path: &Path) -> Option<(usize, u32)> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".ring")?;
    match stem {
        "account" => Some((1, 0)),
        "container" => Some((2, 0)),
        "object" => Some((3, 0)),
        _ => {
            let n = stem.strip_prefix("object-")?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            n.parse().ok().map(|p| (3, p))
        }
    }
}

fn kind_name(n: usize) -> &'static str {
    match n {
        1 => "account",
        2 => "container",
        _ => "object",
    }
}

/// The names of the request: `(account, container, object)`.
fn names(args: &GetNodesArgs) -> Result<(String, Option<String>, Option<String>), ToolError> {
    let mut account = args.account.clone();
    let mut container = args.container.clone();
    let mut object = args.object.clone();
    if container.is_none() && account.trim_start_matches('/').contains('/') {
        let path = account.trim_start_matches('/').to_string();
        let mut parts = path.splitn(3, '/');
        account = parts.next().unwrap_or("").to_string();
        container = parts.next().map(str::to_string);
        object = parts.next().map(str::to_string);
    }
    if object.is_some() && container.is_none() {
        return Err(ToolError("an object needs a container".into()));
    }
    for (what, v) in [
        ("account", Some(&account)),
        ("container", container.as_ref()),
        ("object", object.as_ref()),
    ] {
        if v.is_some_and(|s| s.is_empty()) {
            return Err(ToolError(format!("empty {what} name")));
        }
    }
    Ok((account, container, object))
}

/// Load the cluster file and a ring file, with one-line errors.
pub(crate) fn load_cluster(path: &Path) -> Result<ClusterConfig, ToolError> {
    ClusterConfig::load(path).map_err(|e| ToolError(format!("cluster file: {e}")))
}

pub(crate) fn load_ring(path: &Path) -> Result<Ring, ToolError> {
    Ring::load(path).map_err(|e| ToolError(format!("ring {}: {e}", path.display())))
}

/// The report `cairn get-nodes` prints (text or JSON).
pub fn get_nodes_report(args: &GetNodesArgs) -> Result<String, ToolError> {
    let (account, container, object) = names(args)?;
    let given = 1 + usize::from(container.is_some()) + usize::from(object.is_some());
    let file_kind = ring_kind(&args.ring_file);
    if let Some((kind, _)) = file_kind {
        if kind != given {
            return Err(ToolError(format!(
                "{} ring ({}) does not match the {} name(s) given ({} placement)",
                kind_name(kind),
                args.ring_file.display(),
                given,
                kind_name(given)
            )));
        }
    }
    let cluster = load_cluster(&args.cluster_config)?;
    let ring = load_ring(&args.ring_file)?;
    let policy = args.policy_index.or(file_kind.map(|(_, p)| p)).unwrap_or(0);
    if object.is_some() && cluster.policy_by_index(policy).is_none() {
        return Err(ToolError(format!(
            "storage policy {policy} is not configured in {}",
            args.cluster_config.display()
        )));
    }
    let handoffs = args
        .handoffs
        .unwrap_or_else(|| ring.replica_count().ceil() as usize);
    let p = Placement::compute(
        &ring,
        &cluster.hash_path_secret(),
        &account,
        container.as_deref(),
        object.as_deref(),
        policy,
        handoffs,
    );
    if args.json {
        let mut s = serde_json::to_string_pretty(&p.json(&args.devices))
            .map_err(|e| ToolError(e.to_string()))?;
        s.push('\n');
        Ok(s)
    } else {
        Ok(p.text(&args.devices))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_kinds_from_file_names() {
        assert_eq!(ring_kind(Path::new("/etc/cairn/object.ring")), Some((3, 0)));
        assert_eq!(ring_kind(Path::new("object-12.ring")), Some((3, 12)));
        assert_eq!(ring_kind(Path::new("container.ring")), Some((2, 0)));
        assert_eq!(ring_kind(Path::new("account.ring")), Some((1, 0)));
        assert_eq!(ring_kind(Path::new("object-x.ring")), None);
        assert_eq!(ring_kind(Path::new("my.ring")), None);
        assert_eq!(ring_kind(Path::new("object.builder")), None);
    }
}
