//! The receiving side of the DB replication RPC (`PROTOCOLS.md`, "DB replication
//! protocol" → "The exchange"): `REPLICATE /DEV/PART/HASH` with a JSON array body
//! `[op, args…]`. Shared by the container and account servers (generic over [`Kind`]);
//! the servers only parse the path, check the device and read the body.
//!
//! * `sync` → 200 with our replication info plus `point` (404 if no DB);
//! * `merge_items [rows, source_id]` → 202; `merge_syncs [[{remote_id, sync_point}…]]` → 202;
//! * `complete_rsync [tmp_name, final_name?]` → 204 (404 if the DB exists or the upload is
//!   missing): the upload `DEV/tmp/tmp_name` gets a new id and is renamed into place;
//! * `rsync_then_merge [tmp_name, db_name]` → 204 (404 if either is missing): our rows,
//!   sync points and metadata are merged into the upload, whose content then replaces our
//!   DB's (through SQLite's backup API: the DB is live and in WAL mode, so it is not
//!   renamed over).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::broker::{create_dirs_durable, Broker, Kind, Metadata, SyncPoint};
use crate::error::{DbError, Result};
use crate::util::fsync_dir;

/// Rows per batch when merging an existing DB into an uploaded copy.
pub const MERGE_BATCH: usize = 1000;

/// An RPC answer: HTTP status and an optional JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcReply {
    pub status: u16,
    pub body: Option<String>,
}

impl RpcReply {
    fn status(status: u16) -> Self {
        RpcReply { status, body: None }
    }

    fn bad(msg: &str) -> Self {
        RpcReply {
            status: 400,
            body: Some(msg.to_string()),
        }
    }
}

/// Handle one REPLICATE call for the DB `HASH` in partition `partition` of `device`.
/// Blocking (SQLite and file I/O): run it on a blocking pool.
pub fn replicate<K: Kind>(
    devices: &Path,
    device: &str,
    partition: u32,
    hash: &str,
    body: &[u8],
) -> RpcReply {
    let args: Vec<Value> = match serde_json::from_slice(body) {
        Ok(Value::Array(a)) if !a.is_empty() => a,
        _ => return RpcReply::bad("Invalid object type"),
    };
    let op = args[0].as_str().unwrap_or("").to_string();
    let args = &args[1..];
    let db_file = crate::util::db_path(devices, device, K::DATADIR, partition, hash);
    let tmp_dir = devices.join(device).join("tmp");
    let res = match op.as_str() {
        "complete_rsync" => complete_rsync::<K>(&tmp_dir, &db_file, args),
        "rsync_then_merge" => rsync_then_merge::<K>(&tmp_dir, &db_file, args),
        "sync" | "merge_items" | "merge_syncs" => {
            // someone may be about to upload a DB to us: make sure tmp exists
            if let Err(e) = std::fs::create_dir_all(&tmp_dir) {
                return error_reply(DbError::Io(e));
            }
            match Broker::<K>::open(&db_file) {
                Err(DbError::NotFound(_)) | Err(DbError::Quarantined(_)) => {
                    Ok(RpcReply::status(404))
                }
                Err(e) => Err(e),
                Ok(b) => match op.as_str() {
                    "sync" => sync(&b, args),
                    "merge_items" => merge_items(&b, args),
                    _ => merge_syncs(&b, args),
                },
            }
        }
        _ => Ok(RpcReply::bad("Invalid op")),
    };
    res.unwrap_or_else(error_reply)
}

fn error_reply(e: DbError) -> RpcReply {
    match e {
        DbError::BadInput(m) => RpcReply::bad(&m),
        DbError::NotFound(_) | DbError::Quarantined(_) => RpcReply::status(404),
        other => {
            tracing::error!(error = %other, "REPLICATE failed");
            RpcReply::status(other.http_status())
        }
    }
}

fn arg_str(args: &[Value], i: usize) -> String {
    match args.get(i) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn sync<K: Kind>(b: &Broker<K>, args: &[Value]) -> Result<RpcReply> {
    if args.len() < 7 {
        return Ok(RpcReply::bad("sync needs 7 arguments"));
    }
    let remote_max_row = args[0].as_i64().unwrap_or(-1);
    let remote_hash = arg_str(args, 1);
    let remote_id = arg_str(args, 2);
    let metadata = arg_str(args, 6);
    if !metadata.is_empty() {
        match serde_json::from_str::<Metadata>(&metadata) {
            Ok(md) => b.update_metadata(&md, None)?,
            Err(e) => tracing::error!("unable to decode remote metadata {metadata:?}: {e}"),
        }
    }
    b.merge_timestamps(&arg_str(args, 3), &arg_str(args, 4), &arg_str(args, 5))?;
    let info = b.get_replication_info()?;
    let mut point = b.get_sync(&remote_id, true)?;
    if remote_hash == info.hash && point < remote_max_row {
        b.merge_syncs(
            &[SyncPoint {
                remote_id,
                sync_point: remote_max_row,
            }],
            true,
        )?;
        point = remote_max_row;
    }
    let mut v = serde_json::to_value(&info).map_err(|e| DbError::Corrupt(e.to_string()))?;
    if let Value::Object(m) = &mut v {
        m.insert("point".into(), Value::from(point));
    }
    Ok(RpcReply {
        status: 200,
        body: Some(v.to_string()),
    })
}

fn merge_items<K: Kind>(b: &Broker<K>, args: &[Value]) -> Result<RpcReply> {
    let rows: Vec<K::Record> = match args.first().cloned().map(serde_json::from_value) {
        Some(Ok(r)) => r,
        _ => return Ok(RpcReply::bad("merge_items needs a list of rows")),
    };
    let source = args.get(1).and_then(Value::as_str);
    b.merge_items(&rows, source)?;
    Ok(RpcReply::status(202))
}

fn merge_syncs<K: Kind>(b: &Broker<K>, args: &[Value]) -> Result<RpcReply> {
    let points: Vec<SyncPoint> = match args.first().cloned().map(serde_json::from_value) {
        Some(Ok(p)) => p,
        _ => return Ok(RpcReply::bad("merge_syncs needs a list of sync points")),
    };
    b.merge_syncs(&points, true)?;
    Ok(RpcReply::status(202))
}

/// A tmp-dir name from an RPC argument (no path separators, no dot files).
fn tmp_file(tmp_dir: &Path, name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.starts_with('.') || name.contains('/') || name.contains('\0') {
        return None;
    }
    Some(tmp_dir.join(name))
}

/// Rename `from` to `to` (creating `to`'s directories) and fsync both directories.
fn rename_into_place(from: &Path, to: &Path) -> Result<()> {
    let dir = to
        .parent()
        .ok_or_else(|| DbError::BadInput("bad DB path".into()))?;
    create_dirs_durable(dir)?;
    std::fs::rename(from, to)?;
    fsync_dir(dir)?;
    if let Some(p) = from.parent() {
        fsync_dir(p)?;
    }
    Ok(())
}

fn complete_rsync<K: Kind>(tmp_dir: &Path, db_file: &Path, args: &[Value]) -> Result<RpcReply> {
    let name = arg_str(args, 0);
    let Some(tmp) = tmp_file(tmp_dir, &name) else {
        return Ok(RpcReply::bad("bad tmp name"));
    };
    let target = match args.get(1).and_then(Value::as_str) {
        Some(final_name) if !final_name.is_empty() => {
            if final_name.contains('/') || final_name.starts_with('.') {
                return Ok(RpcReply::bad("bad DB name"));
            }
            db_file.with_file_name(final_name)
        }
        _ => db_file.to_path_buf(),
    };
    if target.exists() || !tmp.is_file() {
        return Ok(RpcReply::status(404));
    }
    {
        let b = Broker::<K>::open(&tmp)?;
        b.quick_check()?;
        b.newid(&name)?;
        b.checkpoint()?;
    }
    rename_into_place(&tmp, &target)?;
    Ok(RpcReply::status(204))
}

fn rsync_then_merge<K: Kind>(tmp_dir: &Path, db_file: &Path, args: &[Value]) -> Result<RpcReply> {
    let name = arg_str(args, 0);
    let Some(tmp) = tmp_file(tmp_dir, &name) else {
        return Ok(RpcReply::bad("bad tmp name"));
    };
    if !db_file.is_file() || !tmp.is_file() {
        return Ok(RpcReply::status(404));
    }
    {
        let new = Broker::<K>::open(&tmp)?;
        new.quick_check()?;
        // New id first: `incoming_sync[sender]` must be the upload's own last ROWID. Our
        // rows merged below get higher ROWIDs the sender never had; counting them would
        // make the sender skip its next rows up to there.
        new.newid(&name)?;
        let existing = Broker::<K>::open(db_file)?;
        existing.commit_puts()?;
        let mut point = -1;
        loop {
            let rows = existing.get_items_since(point, MERGE_BATCH)?;
            let Some(last) = rows.last().and_then(K::rowid) else {
                break;
            };
            new.merge_items(&rows, None)?;
            point = last;
        }
        new.merge_syncs(&existing.get_syncs(true)?, true)?;
        new.update_metadata(&existing.metadata()?, None)?;
        new.checkpoint()?;
        drop(new);
        // The existing DB is live (WAL mode, maybe open elsewhere): replace its content
        // through the backup API instead of renaming over it.
        existing.restore_from(&tmp)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut p = tmp.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    if let Some(d) = tmp.parent() {
        fsync_dir(d)?;
    }
    Ok(RpcReply::status(204))
}
