//! Suffix hashes (`PROTOCOLS.md`, "Suffix hashes"): the per-partition cache
//! `hashes.cache`, the invalidation log `hashes.invalid` under the partition lock, and
//! `get_hashes` with Swift's "write only if the on-disk cache is unchanged, else retry"
//! rule.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_common::fs::{self as cfs, FileLock};
use cairn_common::Timestamp;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::diskfile::quarantine_path;
use crate::error::{DiskError, Result};
use crate::layout::{
    is_valid_suffix, parse_policy_dir_name, policy_dir_name, PolicyPaths, HASHES_CACHE,
    HASHES_INVALID, PART_LOCK,
};
use crate::ondisk::{cleanup_hash_dir, list_names, remove_dir_if_empty};

/// `suffix → Some(md5)` or `None` (= must be recomputed).
pub type SuffixHashes = BTreeMap<String, Option<[u8; 16]>>;

/// The body of `hashes.cache`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HashesCache {
    /// Unix time of the last write (f64 seconds).
    pub updated: f64,
    /// False when the cache was missing/corrupt and has not been rebuilt by a full listdir.
    pub valid: bool,
    pub hashes: SuffixHashes,
}

const MAGIC: &[u8; 4] = b"CHSH";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 4;
/// Give up after this many "cache changed under us" retries.
const MAX_RETRIES: usize = 100;

/// `b"CHSH" | version | CRC32C(body) LE | postcard body`.
pub fn encode_cache(c: &HashesCache) -> Vec<u8> {
    let body = postcard::to_allocvec(c).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

pub fn decode_cache(b: &[u8]) -> Result<HashesCache> {
    if b.len() < HEADER_LEN || &b[..4] != MAGIC || b[4] != VERSION {
        return Err(DiskError::Corrupt("hashes.cache: bad header".into()));
    }
    let crc = u32::from_le_bytes([b[5], b[6], b[7], b[8]]);
    let body = &b[HEADER_LEN..];
    if crc32c::crc32c(body) != crc {
        return Err(DiskError::Corrupt("hashes.cache: CRC mismatch".into()));
    }
    match postcard::take_from_bytes::<HashesCache>(body) {
        Ok((c, [])) => Ok(c),
        _ => Err(DiskError::Corrupt("hashes.cache: undecodable".into())),
    }
}

/// Read `PART/hashes.cache`; missing or corrupt → an empty, invalid cache.
pub fn read_hashes(part_dir: &Path) -> HashesCache {
    match fs::read(part_dir.join(HASHES_CACHE)) {
        Ok(b) => decode_cache(&b).unwrap_or_else(|e| {
            tracing::warn!(dir = %part_dir.display(), error = %e, "corrupt hashes.cache; full rehash");
            HashesCache::default()
        }),
        Err(_) => HashesCache::default(),
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `DEV/tmp[-N]` for `DEV/objects[-N]/PART` (temp files there are cleaned at startup),
/// created if missing; `None` if the path does not have that shape.
fn tmp_dir_for(part_dir: &Path) -> Option<std::path::PathBuf> {
    let objects = part_dir.parent()?;
    let policy = parse_policy_dir_name("objects", objects.file_name()?.to_str()?)?;
    let tmp = objects.parent()?.join(policy_dir_name("tmp", policy));
    cfs::create_dir_all_durable(&tmp).ok()?;
    Some(tmp)
}

/// Write `PART/hashes.cache` durably (temp in `DEV/tmp[-N]`), stamping `updated`.
pub fn write_hashes(part_dir: &Path, cache: &mut HashesCache) -> Result<()> {
    cache.updated = unix_now();
    let tmp = tmp_dir_for(part_dir);
    cfs::write_file_durable(
        &part_dir.join(HASHES_CACHE),
        tmp.as_deref(),
        &encode_cache(cache),
    )
    .map_err(|e| DiskError::from_write(e, "write hashes.cache"))
}

/// Take the partition lock (`flock` on `PART/.lock`). `create`: create the partition dir
/// if missing; otherwise a missing partition yields `Ok(None)`.
pub fn lock_partition(
    part_dir: &Path,
    create: bool,
    timeout: Duration,
) -> Result<Option<FileLock>> {
    if create {
        cfs::create_dir_all_durable(part_dir)
            .map_err(|e| DiskError::from_write(e, "mkdir partition"))?;
    }
    match FileLock::acquire(&part_dir.join(PART_LOCK), timeout) {
        Ok(l) => Ok(Some(l)),
        Err(e) if cfs::is_not_found(&e) && !create => Ok(None),
        Err(e) => Err(DiskError::from_write(e, "partition lock")),
    }
}

/// Append `suffix` to `PART/hashes.invalid` and `fdatasync` it. The caller holds the
/// partition lock (see [`lock_partition`]).
///
/// Why the `fdatasync` stays although Swift's `invalidate_hash` only appends: a PUT makes
/// its object durable with the `fsync` of the hash dir after the rename. If power fails
/// after that but before the appended line reached the disk, the object survives while
/// `hashes.cache` still holds the suffix's OLD hash as valid. Nothing recomputes it: the
/// every-10th-pass listdir only adds suffixes missing from the cache, and a peer whose
/// copy of the suffix equals our old state (it missed this write, or is a handoff's
/// target) sees equal hashes and never syncs, so the acknowledged object never reaches
/// it. Syncing the line before the rename makes "visible object ⇒ durable invalidation"
/// hold across crashes. Cheaper schemes considered and not taken: skipping the append
/// when the suffix is already listed (almost never the case for fresh names, and a line
/// left by a failed fdatasync would break the invariant); skipping it while the
/// partition has no valid cache (helps new partitions only); relying on ext4 ordering
/// between two files (not guaranteed with delayed allocation).
pub fn append_invalidation(part_dir: &Path, suffix: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(part_dir.join(HASHES_INVALID))
        .map_err(|e| DiskError::from_write(e, "open hashes.invalid"))?;
    f.write_all(format!("{suffix}\n").as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| DiskError::from_write(e, "append hashes.invalid"))
}

/// Append `suffix` to `PART/hashes.invalid` under the partition lock. With
/// `create == false` a missing partition is skipped.
///
/// Writers that change a suffix dir keep the lock from the append until their rename is
/// done (see `DiskFile`): otherwise a `get_hashes` could consolidate the entry and hash the
/// suffix between the two, and cache a hash that misses the new file.
pub fn invalidate_hash(
    part_dir: &Path,
    suffix: &str,
    create: bool,
    timeout: Duration,
) -> Result<()> {
    let Some(_lock) = lock_partition(part_dir, create, timeout)? else {
        return Ok(());
    };
    append_invalidation(part_dir, suffix)
}

/// Fold `hashes.invalid` into `hashes.cache` under the lock (listed suffixes become `None`),
/// then truncate the log. Returns the (possibly updated) cache; an empty, invalid one for a
/// missing partition.
pub fn consolidate_hashes(part_dir: &Path, timeout: Duration) -> Result<HashesCache> {
    let Some(_lock) = lock_partition(part_dir, false, timeout)? else {
        return Ok(HashesCache::default());
    };
    let mut cache = read_hashes(part_dir);
    let inv_path = part_dir.join(HASHES_INVALID);
    let text = match fs::read(&inv_path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut found = false;
    let mut updated = false;
    for line in text.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        found = true;
        if let Ok(s) = std::str::from_utf8(line) {
            let s = s.trim();
            if is_valid_suffix(s) {
                cache.hashes.insert(s.to_string(), None);
                updated = true;
            }
        }
    }
    if updated {
        write_hashes(part_dir, &mut cache)?;
    }
    if found {
        // Every entry is now in the (durable) cache: clear the log.
        fs::File::create(&inv_path)?;
    }
    Ok(cache)
}

/// Hash one suffix dir: MD5 over its hash dirs in ascending order, each after cleanup.
/// `None` when the suffix dir is missing or ended up empty (it is then removed).
pub fn hash_suffix(
    paths: &PolicyPaths,
    part: u32,
    suffix: &str,
    now: Timestamp,
    reclaim_age: u64,
    lock_timeout: Duration,
) -> Result<Option<[u8; 16]>> {
    let dir = paths.suffix_dir(part, suffix);
    let mut names = match list_names(&dir) {
        Ok(n) => n,
        Err(e) if cfs::is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    names.sort();
    let mut md5 = Md5::new();
    for name in &names {
        if name.is_empty() {
            continue;
        }
        let hdir = dir.join(name);
        match cleanup_hash_dir(&hdir, now, reclaim_age) {
            Ok(info) => {
                for s in info.hash_inputs() {
                    md5.update(s.as_bytes());
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                quarantine_path(paths, part, &hdir, "hash directory is a file", lock_timeout)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    match fs::read_dir(&dir).map(|mut d| d.next().is_none()) {
        Ok(true) => {
            remove_dir_if_empty(&dir);
            if fs::symlink_metadata(&dir).is_err() {
                return Ok(None);
            }
        }
        Err(e) if cfs::is_not_found(&e) => return Ok(None),
        _ => {}
    }
    Ok(Some(md5.finalize().into()))
}

/// The result of [`get_hashes`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GetHashes {
    /// How many suffixes were (re)computed.
    pub hashed: usize,
    pub hashes: SuffixHashes,
}

/// Swift's `get_hashes`: consolidate; full listdir if the cache was invalid or
/// `do_listdir`; recompute `None` and `recalculate` suffixes; write the new cache only if
/// the on-disk one is unchanged since it was read, otherwise start over.
pub fn get_hashes(
    paths: &PolicyPaths,
    part: u32,
    recalculate: &[String],
    do_listdir: bool,
    reclaim_age: u64,
    lock_timeout: Duration,
) -> Result<GetHashes> {
    let part_dir = paths.partition_dir(part);
    for _ in 0..MAX_RETRIES {
        if !part_dir.is_dir() {
            return Ok(GetHashes::default());
        }
        let now = Timestamp::now();
        let mut orig = match consolidate_hashes(&part_dir, lock_timeout) {
            Ok(c) => c,
            Err(e @ DiskError::LockTimeout(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(dir = %part_dir.display(), error = %e, "unable to consolidate hashes");
                HashesCache::default()
            }
        };
        let mut listdir = do_listdir;
        let mut hashes = if orig.valid {
            orig.clone()
        } else {
            // Only way to a valid cache: a full listdir from the exact invalid state read.
            listdir = true;
            orig = read_hashes(&part_dir);
            HashesCache {
                valid: true,
                ..HashesCache::default()
            }
        };
        let mut modified = false;
        if listdir {
            match list_names(&part_dir) {
                Ok(names) => {
                    for n in names {
                        if n.len() == 3 {
                            hashes.hashes.entry(n).or_insert(None);
                        }
                    }
                }
                Err(e) if cfs::is_not_found(&e) => return Ok(GetHashes::default()),
                Err(e) => return Err(e.into()),
            }
            modified = true;
        }
        for s in recalculate {
            if is_valid_suffix(s) {
                hashes.hashes.insert(s.clone(), None);
            }
        }
        let mut hashed = 0;
        let todo: Vec<String> = hashes
            .hashes
            .iter()
            .filter(|(_, h)| h.is_none())
            .map(|(s, _)| s.clone())
            .collect();
        for suffix in todo {
            modified = true;
            match hash_suffix(paths, part, &suffix, now, reclaim_age, lock_timeout) {
                Ok(Some(h)) => {
                    hashes.hashes.insert(suffix, Some(h));
                    hashed += 1;
                }
                Ok(None) => {
                    hashes.hashes.remove(&suffix);
                }
                Err(e) => {
                    tracing::error!(suffix, error = %e, "error hashing suffix");
                }
            }
        }
        if !modified {
            return Ok(GetHashes {
                hashed,
                hashes: hashes.hashes,
            });
        }
        let Some(_lock) = lock_partition(&part_dir, false, lock_timeout)? else {
            return Ok(GetHashes::default());
        };
        if read_hashes(&part_dir) == orig {
            write_hashes(&part_dir, &mut hashes)?;
            return Ok(GetHashes {
                hashed,
                hashes: hashes.hashes,
            });
        }
        // The cache changed under us (a concurrent consolidation): start over.
    }
    Err(DiskError::LockTimeout(format!(
        "hashes of {} kept changing",
        part_dir.display()
    )))
}

/// Swift's rule for a full listdir during replication: every 10th cycle per partition.
pub fn should_listdir(part: u32, cycle: u64) -> bool {
    (u64::from(part) + cycle).is_multiple_of(10)
}

/// Hex form of the suffix map (REPLICATE's JSON body).
pub fn hashes_to_hex(h: &SuffixHashes) -> BTreeMap<String, Option<String>> {
    h.iter()
        .map(|(s, v)| (s.clone(), v.map(|d| cairn_common::to_hex(&d))))
        .collect()
}
