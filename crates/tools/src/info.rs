//! `cairn info PATH`: what an object file or a container/account database holds and where
//! it belongs (Swift's `swift-object-info`, `swift-container-info`, `swift-account-info`).

use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use cairn_common::config::ClusterConfig;
use cairn_common::Timestamp;
use cairn_object::layout::{parse_file_name, parse_policy_dir_name, split_object_name, FileKind};
use cairn_object::metadata::read_metadata;
use cairn_ring::Ring;
use md5::{Digest, Md5};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags};

use crate::get_nodes::{load_cluster, load_ring};
use crate::placement::Placement;
use crate::{ToolError, DEFAULT_CLUSTER_CONFIG};

/// `cairn info PATH`.
#[derive(Debug, Clone, clap::Args)]
pub struct InfoArgs {
    /// An object file (`.data`, `.ts`, `.meta`) or a container/account database (`.db`).
    pub path: PathBuf,
    /// The cluster file with the hash path secrets and the ring directory.
    #[arg(long, default_value = DEFAULT_CLUSTER_CONFIG)]
    pub cluster_config: PathBuf,
    /// The devices root on the storage nodes, for the on-disk paths of the other copies.
    #[arg(long, default_value = "/srv/node")]
    pub devices: PathBuf,
    /// Do not read a `.data` file's body to check its MD5 against the `ETag`.
    #[arg(long)]
    pub no_etag_check: bool,
}

/// The report `cairn info` prints.
pub fn info_report(args: &InfoArgs) -> Result<String, ToolError> {
    let path = &args.path;
    let meta =
        std::fs::metadata(path).map_err(|e| ToolError(format!("{}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(ToolError(format!("{}: not a file", path.display())));
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| ToolError(format!("{}: not a UTF-8 file name", path.display())))?;
    if name.ends_with(".db") {
        return db_info(args, meta.len());
    }
    if parse_file_name(name).is_some() {
        return object_info(args, name, meta.len());
    }
    Err(ToolError(format!(
        "{}: not an object file (.data, .ts, .meta) nor a database (.db)",
        path.display()
    )))
}

/// `secs.fffff (2023-11-14T22:13:20.000000)`.
fn show_ts(raw: &str) -> String {
    match Timestamp::parse(raw) {
        Ok(t) => format!("{} ({})", t.internal(), t.iso_listing()),
        Err(_) => raw.to_string(),
    }
}

/// The names of the directories above a file: `[parent, grandparent, …]`.
fn ancestors(path: &Path) -> Vec<String> {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    abs.ancestors()
        .skip(1)
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
        .collect()
}

/// Where the file sits on disk: `DEV/DATADIR/PART/SUFFIX/HASH/file`, each part if present.
#[derive(Debug, Default)]
struct Location {
    hash_dir: Option<String>,
    partition: Option<u32>,
    datadir: Option<String>,
    device: Option<String>,
}

fn location(path: &Path) -> Location {
    let a = ancestors(path);
    Location {
        hash_dir: a.first().cloned(),
        partition: a.get(2).and_then(|p| p.parse().ok()),
        datadir: a.get(3).cloned(),
        device: a.get(4).cloned(),
    }
}

fn hash_check(computed: &str, dir: Option<&str>) -> String {
    match dir {
        Some(d) if d == computed => format!("{computed} (matches the directory)"),
        Some(d) => {
            format!("{computed} (does NOT match the directory {d}: misplaced or a collision)")
        }
        None => computed.to_string(),
    }
}

fn object_ring_name(policy: u32) -> String {
    if policy == 0 {
        "object.ring".to_string()
    } else {
        format!("object-{policy}.ring")
    }
}

/// Every device of the ring with its role for `part`: primary, handoff, or unused.
fn device_roles(o: &mut String, ring: &Ring, part: u32, here: Option<&str>) {
    let primaries: Vec<(u32, usize)> = ring.get_part_nodes(part).map(|n| (n.id, n.index)).collect();
    let handoffs: Vec<(u32, usize)> = ring
        .get_more_nodes(part)
        .map(|h| (h.id, h.handoff_index))
        .collect();
    let _ = writeln!(o, "Devices of the ring for partition {part}:");
    for d in ring.iter_devs() {
        let role = if let Some((_, i)) = primaries.iter().find(|(id, _)| *id == d.id) {
            format!("primary (replica {i})")
        } else if let Some((_, i)) = handoffs.iter().find(|(id, _)| *id == d.id) {
            format!("handoff {i}")
        } else {
            "not used (no partitions)".to_string()
        };
        let mark = if here == Some(d.device.as_str()) {
            "  <- same device name as this file's"
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "  id {:>4}  {}/{}  region {} zone {}: {role}{mark}",
            d.id,
            cairn_common::http::authority(&d.ip, d.port),
            d.device,
            d.region,
            d.zone
        );
    }
}

/// The placement section: ring, partition check, device roles, curl and disk lines.
#[allow(clippy::too_many_arguments)]
fn placement_section(
    o: &mut String,
    cluster: &ClusterConfig,
    ring_name: &str,
    names: (&str, Option<&str>, Option<&str>),
    policy: u32,
    loc: &Location,
    devices: &Path,
) {
    let ring_path = cluster.ring_dir().join(ring_name);
    let _ = writeln!(o);
    let ring = match load_ring(&ring_path) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(o, "Ring: unavailable ({e})");
            return;
        }
    };
    let _ = writeln!(o, "Ring: {}", ring_path.display());
    let p = Placement::compute(
        &ring,
        &cluster.hash_path_secret(),
        names.0,
        names.1,
        names.2,
        policy,
        ring.replica_count().ceil() as usize,
    );
    match loc.partition {
        Some(dp) if dp == p.partition => {
            let _ = writeln!(o, "Partition: {} (matches the directory)", p.partition);
        }
        Some(dp) => {
            let _ = writeln!(
                o,
                "Partition: {} (the file is under partition {dp}: not where the ring puts it)",
                p.partition
            );
        }
        None => {
            let _ = writeln!(o, "Partition: {}", p.partition);
        }
    }
    device_roles(o, &ring, p.partition, loc.device.as_deref());
    let _ = writeln!(o);
    o.push_str(&p.text(devices));
}

fn object_info(args: &InfoArgs, file_name: &str, size: u64) -> Result<String, ToolError> {
    let path = &args.path;
    let on_disk = parse_file_name(file_name)
        .ok_or_else(|| ToolError(format!("{}: not an object file name", path.display())))?;
    let file = File::open(path).map_err(|e| ToolError(format!("{}: {e}", path.display())))?;
    let md = read_metadata(&file)
        .map_err(|e| ToolError(format!("{}: cannot read metadata: {e}", path.display())))?;
    let cluster = load_cluster(&args.cluster_config)?;
    let loc = location(path);
    let policy = loc
        .datadir
        .as_deref()
        .and_then(|d| parse_policy_dir_name("objects", d));
    let mut o = String::new();
    let names = md.get("name").and_then(split_object_name);
    match (md.get("name"), names) {
        (Some(n), Some((a, c, obj))) => {
            let hash = cluster.hash_path_secret().hash_path(a, Some(c), Some(obj));
            let _ = writeln!(o, "Path: {n}");
            let _ = writeln!(o, "  Account: {a}");
            let _ = writeln!(o, "  Container: {c}");
            let _ = writeln!(o, "  Object: {obj}");
            let _ = writeln!(
                o,
                "  Object hash: {}",
                hash_check(&hash, loc.hash_dir.as_deref())
            );
        }
        (Some(n), None) => {
            let _ = writeln!(o, "Path: {n} (not a valid /ACCOUNT/CONTAINER/OBJECT name)");
        }
        (None, _) => {
            let _ = writeln!(o, "Path: Not found in metadata");
        }
    }
    let kind = match on_disk.kind {
        FileKind::Data => "object data (.data)",
        FileKind::Ts => "tombstone (.ts): the object was deleted",
        FileKind::Meta => "metadata update (.meta)",
    };
    let _ = writeln!(o, "File: {}", path.display());
    let _ = writeln!(o, "  Kind: {kind}");
    let _ = writeln!(o, "  Timestamp: {}", show_ts(&on_disk.ts.internal()));
    if let Some(c) = on_disk.ctype_ts {
        let _ = writeln!(o, "  Content-Type timestamp: {}", show_ts(&c.internal()));
    }
    match md.get("X-Timestamp") {
        Some(t) if Timestamp::parse(t).ok() == Some(on_disk.ts) => {}
        Some(t) => {
            let _ = writeln!(
                o,
                "  X-Timestamp in metadata: {t} (differs from the file name)"
            );
        }
        None => {
            let _ = writeln!(o, "  X-Timestamp: missing from metadata");
        }
    }
    if let Some(p) = policy {
        let _ = writeln!(
            o,
            "  Storage policy: {p} (from the directory {})",
            loc.datadir.as_deref().unwrap_or("")
        );
    }
    if let Some(ct) = md.get("Content-Type") {
        let _ = writeln!(o, "Content-Type: {ct}");
    }
    if let Some(at) = md.get("X-Delete-At") {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let when = at
            .trim()
            .parse::<u64>()
            .ok()
            .map(|s| {
                let t = Timestamp::from_secs(s.min(9_999_999_999));
                format!(
                    " ({}{})",
                    t.iso_listing(),
                    if s <= now { ", expired" } else { "" }
                )
            })
            .unwrap_or_default();
        let _ = writeln!(o, "X-Delete-At: {at}{when}");
    }
    let titles = [
        "System Metadata",
        "Transient System Metadata",
        "User Metadata",
        "Other Metadata",
    ];
    for (group, title) in titles.iter().enumerate() {
        let mut rows: Vec<(&str, &str)> = md
            .iter()
            .filter(|(k, _)| metadata_group(&k.to_ascii_lowercase()) == Some(group))
            .collect();
        rows.sort();
        let _ = writeln!(o, "{title}:");
        if rows.is_empty() {
            let _ = writeln!(o, "  No metadata found");
        }
        for (k, v) in rows {
            let _ = writeln!(o, "  {k}: {v}");
        }
    }
    if on_disk.kind == FileKind::Data {
        match md.get("ETag") {
            Some(etag) if !args.no_etag_check => {
                let computed = md5_file(path)?;
                if computed.eq_ignore_ascii_case(etag) {
                    let _ = writeln!(o, "ETag: {etag} (valid)");
                } else {
                    let _ = writeln!(
                        o,
                        "ETag: {etag} (INVALID: the body's MD5 is {computed}; the auditor will quarantine it)"
                    );
                }
            }
            Some(etag) => {
                let _ = writeln!(o, "ETag: {etag} (not checked)");
            }
            None => {
                let _ = writeln!(o, "ETag: missing from metadata");
            }
        }
        match md.get("Content-Length").map(|l| l.trim().parse::<u64>()) {
            Some(Ok(l)) if l == size => {
                let _ = writeln!(o, "Content-Length: {l} (valid)");
            }
            Some(Ok(l)) => {
                let _ = writeln!(
                    o,
                    "Content-Length: {l} (INVALID: the file holds {size} bytes)"
                );
            }
            Some(Err(_)) => {
                let _ = writeln!(o, "Content-Length: not a number");
            }
            None => {
                let _ = writeln!(o, "Content-Length: missing from metadata");
            }
        }
    }
    if let Some(dir) = path.parent() {
        if let Ok(rd) = std::fs::read_dir(dir) {
            let mut others: Vec<String> = rd
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n != file_name)
                .collect();
            others.sort();
            if !others.is_empty() {
                let _ = writeln!(o, "Other files in the directory: {}", others.join(", "));
            }
        }
    }
    match names {
        Some((a, c, obj)) => {
            let policy = policy.unwrap_or(0);
            placement_section(
                &mut o,
                &cluster,
                &object_ring_name(policy),
                (a, Some(c), Some(obj)),
                policy,
                &loc,
                &args.devices,
            );
        }
        None => {
            let _ = writeln!(o);
            let _ = writeln!(o, "Ring: not looked up (no valid name in the metadata)");
        }
    }
    Ok(o)
}

/// Which report group a (lowercase) metadata key belongs to: system, transient system,
/// user, other; `None` for the keys shown on their own lines.
fn metadata_group(k: &str) -> Option<usize> {
    if k.starts_with("x-object-sysmeta-") {
        Some(0)
    } else if k.starts_with("x-object-transient-sysmeta-") {
        Some(1)
    } else if k.starts_with("x-object-meta-") {
        Some(2)
    } else if matches!(
        k,
        "name" | "x-timestamp" | "content-type" | "etag" | "content-length" | "x-delete-at"
    ) {
        None
    } else {
        Some(3)
    }
}

fn md5_file(path: &Path) -> Result<String, ToolError> {
    let mut f = File::open(path).map_err(|e| ToolError(format!("{}: {e}", path.display())))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| ToolError(format!("{}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(cairn_common::to_hex(&h.finalize()))
}

fn sql_text(v: &SqlValue) -> String {
    match v {
        SqlValue::Null => "NULL".to_string(),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(r) => r.to_string(),
        SqlValue::Text(t) => t.clone(),
        SqlValue::Blob(b) => format!("<{} bytes>", b.len()),
    }
}

/// All columns of the first row of `sql`.
fn first_row(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<(String, SqlValue)>> {
    let mut stmt = conn.prepare(sql)?;
    let cols: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    stmt.query_row([], |r| {
        cols.iter()
            .enumerate()
            .map(|(i, c)| Ok((c.clone(), r.get::<_, SqlValue>(i)?)))
            .collect()
    })
}

fn db_info(args: &InfoArgs, size: u64) -> Result<String, ToolError> {
    let path = &args.path;
    let bad = |e: rusqlite::Error| ToolError(format!("{}: {e}", path.display()));
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(bad)?;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(bad)?;
    let is_container = tables.iter().any(|t| t == "container_stat");
    let is_account = tables.iter().any(|t| t == "account_stat");
    let (kind, stat, items) = match (is_container, is_account) {
        (true, _) => ("container", "container_stat", "object"),
        (false, true) => ("account", "account_stat", "container"),
        _ => {
            return Err(ToolError(format!(
                "{}: not a Cairn container or account database",
                path.display()
            )))
        }
    };
    let row = first_row(&conn, &format!("SELECT * FROM {stat} LIMIT 1")).map_err(bad)?;
    let get = |k: &str| {
        row.iter()
            .find(|(c, _)| c == k)
            .map(|(_, v)| sql_text(v))
            .unwrap_or_default()
    };
    let account = get("account");
    let container = (kind == "container").then(|| get("container"));
    let cluster = load_cluster(&args.cluster_config)?;
    let loc = location(path);
    let hash = cluster
        .hash_path_secret()
        .hash_path(&account, container.as_deref(), None);
    let mut o = String::new();
    match &container {
        Some(c) => {
            let _ = writeln!(o, "Path: /{account}/{c}");
            let _ = writeln!(o, "  Account: {account}");
            let _ = writeln!(o, "  Container: {c}");
            let _ = writeln!(
                o,
                "  Container hash: {}",
                hash_check(&hash, loc.hash_dir.as_deref())
            );
        }
        None => {
            let _ = writeln!(o, "Path: /{account}");
            let _ = writeln!(o, "  Account: {account}");
            let _ = writeln!(
                o,
                "  Account hash: {}",
                hash_check(&hash, loc.hash_dir.as_deref())
            );
        }
    }
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if stem != hash {
        let _ = writeln!(o, "  File name {stem}.db does not match the hash");
    }
    let _ = writeln!(o, "File: {} ({size} bytes)", path.display());
    let _ = writeln!(o, "Metadata:");
    for (col, v) in &row {
        if matches!(col.as_str(), "account" | "container" | "metadata") {
            continue;
        }
        let text = sql_text(v);
        let shown = if col.ends_with("_at") || col.ends_with("timestamp") {
            show_ts(&text)
        } else {
            text
        };
        let _ = writeln!(o, "  {col}: {shown}");
    }
    let put = get("put_timestamp");
    let delete = get("delete_timestamp");
    let newer_delete = match (Timestamp::parse(&delete), Timestamp::parse(&put)) {
        (Ok(d), Ok(p)) => d > p,
        _ => false,
    };
    let deleted = match kind {
        "container" => get("object_count") == "0" && newer_delete,
        _ => get("status") == "DELETED" || (get("container_count") == "0" && newer_delete),
    };
    let _ = writeln!(o, "  Deleted: {}", if deleted { "yes" } else { "no" });
    let user_md = get("metadata");
    let _ = writeln!(o, "User and system metadata:");
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&user_md) {
        Ok(m) if !m.is_empty() => {
            for (k, v) in m {
                let value = v
                    .get(0)
                    .and_then(|x| x.as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                if value.is_empty() {
                    continue; // a deleted metadata item
                }
                let _ = writeln!(o, "  {k}: {value}");
            }
        }
        Ok(_) => {
            let _ = writeln!(o, "  No metadata found");
        }
        Err(_) if user_md.is_empty() => {
            let _ = writeln!(o, "  No metadata found");
        }
        Err(_) => {
            let _ = writeln!(o, "  (unparsable) {user_md}");
        }
    }
    if tables.iter().any(|t| t == "policy_stat") {
        let mut stmt = conn
            .prepare("SELECT * FROM policy_stat ORDER BY storage_policy_index")
            .map_err(bad)?;
        let cols: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let rows: Vec<String> = stmt
            .query_map([], |r| {
                let parts: rusqlite::Result<Vec<String>> = cols
                    .iter()
                    .enumerate()
                    .map(|(i, c)| Ok(format!("{c}={}", sql_text(&r.get::<_, SqlValue>(i)?))))
                    .collect();
                Ok(parts?.join(" "))
            })
            .map_err(bad)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(bad)?;
        let _ = writeln!(o, "Policy stats:");
        for r in rows {
            let _ = writeln!(o, "  {r}");
        }
    }
    let counts: rusqlite::Result<(i64, i64)> = conn.query_row(
        &format!(
            "SELECT COALESCE(SUM(deleted = 0), 0), COALESCE(SUM(deleted != 0), 0) FROM {items}"
        ),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    );
    if let Ok((live, dead)) = counts {
        let _ = writeln!(o, "Rows: {live} {items}s, {dead} deleted (tombstone rows)");
    }
    let pending = PathBuf::from(format!("{}.pending", path.display()));
    if let Ok(m) = std::fs::metadata(&pending) {
        if m.len() > 0 {
            let _ = writeln!(
                o,
                "Pending: {} holds {} bytes of rows not merged yet",
                pending.display(),
                m.len()
            );
        }
    }
    let ring_name = if kind == "container" {
        "container.ring"
    } else {
        "account.ring"
    };
    placement_section(
        &mut o,
        &cluster,
        ring_name,
        (&account, container.as_deref(), None),
        0,
        &loc,
        &args.devices,
    );
    Ok(o)
}
