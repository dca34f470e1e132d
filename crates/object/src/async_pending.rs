//! Async pendings (`PROTOCOLS.md`, "Async pendings"): container updates that failed, saved
//! as `DEV/async_pending[-N]/SUFFIX/HASH-TIMESTAMP` for the object-updater.
//!
//! File: `b"CAP" | version u8 (=1) | CRC32C(body) u32 LE | postcard AsyncPending`, written
//! with temp-in-`DEV/tmp[-N]`, fsync, rename, fsync of the directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use cairn_common::fs as cfs;
use cairn_common::{suffix_of, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{DiskError, Result};
use crate::layout::{is_valid_hash, is_valid_suffix, parse_policy_dir_name, PolicyPaths};
use crate::ondisk::remove_dir_if_empty;

const MAGIC: &[u8; 3] = b"CAP";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 3 + 1 + 4;

/// The container operation to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AsyncOp {
    Put,
    Delete,
}

impl AsyncOp {
    pub fn method(self) -> &'static str {
        match self {
            AsyncOp::Put => "PUT",
            AsyncOp::Delete => "DELETE",
        }
    }
}

/// One saved container update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncPending {
    pub op: AsyncOp,
    pub account: String,
    pub container: String,
    pub obj: String,
    /// `x-timestamp`, `x-size`, `x-content-type`, `x-etag`, `x-meta-timestamp`,
    /// `x-content-type-timestamp`, `x-trans-id`, `referer`,
    /// `X-Backend-Storage-Policy-Index`.
    pub headers: Vec<(String, String)>,
    /// Container node ids already updated.
    pub successes: Vec<u32>,
}

pub fn encode(p: &AsyncPending) -> Vec<u8> {
    let body = postcard::to_allocvec(p).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decode; any defect is `DiskError::Corrupt` (the caller quarantines the file).
pub fn decode(b: &[u8]) -> Result<AsyncPending> {
    if b.len() < HEADER_LEN || &b[..3] != MAGIC {
        return Err(DiskError::Corrupt("async pending: bad magic".into()));
    }
    if b[3] != VERSION {
        return Err(DiskError::Corrupt(format!(
            "async pending: unknown version {}",
            b[3]
        )));
    }
    let crc = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let body = &b[HEADER_LEN..];
    if crc32c::crc32c(body) != crc {
        return Err(DiskError::Corrupt("async pending: CRC mismatch".into()));
    }
    match postcard::take_from_bytes::<AsyncPending>(body) {
        Ok((p, [])) => Ok(p),
        _ => Err(DiskError::Corrupt("async pending: undecodable".into())),
    }
}

/// `DEV/async_pending[-N]/SUFFIX/HASH-TIMESTAMP`.
pub fn pending_path(paths: &PolicyPaths, hash: &str, ts: Timestamp) -> PathBuf {
    paths
        .async_dir()
        .join(suffix_of(hash))
        .join(format!("{hash}-{}", ts.internal()))
}

/// Write an async pending durably (temp in `DEV/tmp[-N]`). `ts` is the internal form of
/// `X-Meta-Timestamp` if present, else `X-Timestamp`.
pub fn write_pending(
    paths: &PolicyPaths,
    hash: &str,
    ts: Timestamp,
    p: &AsyncPending,
) -> Result<PathBuf> {
    if !is_valid_hash(hash) {
        return Err(DiskError::BadRequest(format!("invalid hash {hash:?}")));
    }
    let path = pending_path(paths, hash, ts);
    write_at(paths, &path, p)?;
    Ok(path)
}

fn write_at(paths: &PolicyPaths, path: &Path, p: &AsyncPending) -> Result<()> {
    let tmp = paths.tmp_dir();
    let dir = path.parent().unwrap_or(Path::new("."));
    for d in [&tmp, &dir.to_path_buf()] {
        cfs::create_dir_all_durable(d)
            .map_err(|e| DiskError::from_write(e, "mkdir async_pending"))?;
    }
    let bytes = encode(p);
    let mut tries = 0;
    loop {
        match cfs::write_file_durable(path, Some(&tmp), &bytes) {
            Ok(()) => return Ok(()),
            // The updater removed the empty suffix dir under us.
            Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 => {
                tries += 1;
                cfs::create_dir_all_durable(dir)
                    .map_err(|e| DiskError::from_write(e, "mkdir async_pending"))?;
            }
            Err(e) => return Err(DiskError::from_write(e, "write async pending")),
        }
    }
}

/// Read and decode one file.
pub fn read_pending(path: &Path) -> Result<AsyncPending> {
    decode(&fs::read(path)?)
}

/// Rewrite a file atomically (the updater records new successes).
pub fn update_pending(paths: &PolicyPaths, path: &Path, p: &AsyncPending) -> Result<()> {
    write_at(paths, path, p)
}

/// Remove a file (and its suffix dir if that is now empty).
pub fn unlink_pending(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    if let Some(dir) = path.parent() {
        remove_dir_if_empty(dir);
    }
    Ok(())
}

/// Move an undecodable file to `DEV/quarantined/objects[-N]/`.
pub fn quarantine_pending(paths: &PolicyPaths, path: &Path) -> Result<PathBuf> {
    let qdir = paths.quarantine_dir();
    cfs::create_dir_all_durable(&qdir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut dest = qdir.join(&name);
    if fs::symlink_metadata(&dest).is_ok() {
        dest = qdir.join(format!("{name}-{}", uuid::Uuid::new_v4().simple()));
    }
    cfs::rename_durable(path, &dest)?;
    if let Some(dir) = path.parent() {
        remove_dir_if_empty(dir);
    }
    tracing::warn!(from = %path.display(), to = %dest.display(), "quarantined async pending");
    Ok(dest)
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    pub path: PathBuf,
    pub suffix: String,
    pub hash: String,
    pub ts: Timestamp,
}

/// Parse `HASH-TIMESTAMP`.
pub fn parse_pending_name(name: &str) -> Option<(String, Timestamp)> {
    let (hash, ts) = name.split_once('-')?;
    if !is_valid_hash(hash) {
        return None;
    }
    Some((hash.to_string(), Timestamp::parse(ts).ok()?))
}

/// The suffix dirs of one policy's async dir (in directory order; the updater shuffles).
pub fn list_suffixes(paths: &PolicyPaths) -> Result<Vec<String>> {
    match fs::read_dir(paths.async_dir()) {
        Ok(rd) => {
            let mut out = Vec::new();
            for e in rd {
                if let Ok(name) = e?.file_name().into_string() {
                    if is_valid_suffix(&name) {
                        out.push(name);
                    }
                }
            }
            Ok(out)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// The files of one suffix dir, sorted by name **descending** (newest first per hash).
/// Names that do not parse are skipped (and logged).
pub fn list_suffix(paths: &PolicyPaths, suffix: &str) -> Result<Vec<PendingEntry>> {
    let dir = paths.async_dir().join(suffix);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if cfs::is_not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        match parse_pending_name(&name) {
            Some((hash, ts)) => out.push(PendingEntry {
                path: e.path(),
                suffix: suffix.to_string(),
                hash,
                ts,
            }),
            None => tracing::warn!(file = %e.path().display(), "unexpected file in async_pending"),
        }
    }
    out.sort_by(|a, b| b.path.cmp(&a.path));
    Ok(out)
}

/// The policies that have an `async_pending[-N]` dir on this device.
pub fn list_policies(device: &Path) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    match fs::read_dir(device) {
        Ok(rd) => {
            for e in rd {
                if let Ok(name) = e?.file_name().into_string() {
                    if let Some(p) = parse_policy_dir_name("async_pending", &name) {
                        out.push(p);
                    }
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AsyncPending {
        AsyncPending {
            op: AsyncOp::Put,
            account: "AUTH_test".into(),
            container: "c".into(),
            obj: "o/x".into(),
            headers: vec![
                ("x-timestamp".into(), "1700000000.00000".into()),
                ("x-size".into(), "3".into()),
            ],
            successes: vec![1],
        }
    }

    #[test]
    fn roundtrip_update_list_unlink() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PolicyPaths::new(dir.path(), 1);
        let hash = "0123456789abcdef0123456789abcdef";
        let t1 = Timestamp::parse("1700000000").unwrap();
        let t2 = Timestamp::parse("1700000001").unwrap();
        let p1 = write_pending(&paths, hash, t1, &sample()).unwrap();
        assert!(
            p1.ends_with("async_pending-1/def/0123456789abcdef0123456789abcdef-1700000000.00000")
        );
        let mut s2 = sample();
        s2.op = AsyncOp::Delete;
        let p2 = write_pending(&paths, hash, t2, &s2).unwrap();
        assert_eq!(read_pending(&p1).unwrap(), sample());
        assert_eq!(list_policies(dir.path()).unwrap(), vec![1]);
        assert_eq!(list_suffixes(&paths).unwrap(), vec!["def".to_string()]);
        let l = list_suffix(&paths, "def").unwrap();
        assert_eq!(l.iter().map(|e| e.ts).collect::<Vec<_>>(), vec![t2, t1]);
        s2.successes.push(7);
        update_pending(&paths, &p2, &s2).unwrap();
        assert_eq!(read_pending(&p2).unwrap().successes, vec![1, 7]);
        // no temp files left behind
        assert_eq!(fs::read_dir(paths.tmp_dir()).unwrap().count(), 0);
        unlink_pending(&p1).unwrap();
        unlink_pending(&p2).unwrap();
        assert!(!paths.async_dir().join("def").exists());
    }

    #[test]
    fn corruption_is_detected_and_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PolicyPaths::new(dir.path(), 0);
        let hash = "0123456789abcdef0123456789abcdef";
        let p = write_pending(&paths, hash, Timestamp::parse("1").unwrap(), &sample()).unwrap();
        let good = fs::read(&p).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(decode(&bad), Err(DiskError::Corrupt(_))),
                "byte {i}"
            );
        }
        assert!(decode(&good[..good.len() - 1]).is_err());
        let mut bad = good.clone();
        bad[10] ^= 0xff;
        fs::write(&p, &bad).unwrap();
        assert!(matches!(read_pending(&p), Err(DiskError::Corrupt(_))));
        let q = quarantine_pending(&paths, &p).unwrap();
        assert!(q.starts_with(dir.path().join("quarantined/objects")));
        assert!(!p.exists());
    }
}
