//! The object disk file API (`PROTOCOLS.md`, "Object storage on disk"): open an object's
//! hash directory and read its current state, write `.data`/`.ts`/`.meta` files crash-safely,
//! stream and verify object bodies, quarantine damaged objects.
//!
//! Everything here blocks: the object server and the replicator call it from
//! `spawn_blocking` or a per-device pool. [`DiskFileManager`] is cheap to clone.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_common::fs as cfs;
use cairn_common::{suffix_of, to_hex, HashPathSecret, Timestamp};
use md5::{Digest, Md5};

use crate::error::{DiskError, Result};
use crate::hashes::{append_invalidation, lock_partition};
use crate::layout::{self, make_file_name, split_object_name, FileKind, PolicyPaths};
use crate::metadata::{read_metadata, write_metadata, Metadata};
use crate::ondisk::{cleanup_hash_dir, remove_dir_if_empty, OnDiskInfo};

/// Number of objects quarantined by this process (for `/recon` and metrics).
pub static QUARANTINE_COUNT: AtomicU64 = AtomicU64::new(0);

/// Keys of a `.data` file that stay visible when a `.meta` overlays it (besides
/// `X-Object-Sysmeta-*` and, unless a content-type overlay applies, `Content-Type`).
const DATA_KEYS_KEPT: [&str; 4] = ["name", "Content-Length", "ETag", "X-Static-Large-Object"];

/// Settings of the disk layer (from `object-server.toml`).
#[derive(Debug, Clone)]
pub struct DiskConfig {
    /// The `devices` root (`/srv/node`).
    pub devices: PathBuf,
    /// Require each device to be a mount point.
    pub mount_check: bool,
    /// Seconds after which tombstones and stray `.meta` files are reclaimed.
    pub reclaim_age: u64,
    /// `fdatasync` every this many bytes of a PUT body (512 MiB).
    pub bytes_per_sync: u64,
    /// Refuse writes when free space would drop below this (1 %).
    pub fallocate_reserve: cfs::FallocateReserve,
    /// How long to wait for a partition lock.
    pub lock_timeout: Duration,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            devices: PathBuf::from("/srv/node"),
            mount_check: true,
            reclaim_age: 604_800,
            bytes_per_sync: 512 * 1024 * 1024,
            fallocate_reserve: cfs::FallocateReserve::default(),
            lock_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
struct ManagerInner {
    cfg: DiskConfig,
    secret: HashPathSecret,
}

/// Entry point of the disk layer: resolves devices and builds [`DiskFile`]s.
#[derive(Debug, Clone)]
pub struct DiskFileManager {
    inner: Arc<ManagerInner>,
}

impl DiskFileManager {
    pub fn new(cfg: DiskConfig, secret: HashPathSecret) -> Self {
        DiskFileManager {
            inner: Arc::new(ManagerInner { cfg, secret }),
        }
    }

    pub fn config(&self) -> &DiskConfig {
        &self.inner.cfg
    }

    pub fn secret(&self) -> &HashPathSecret {
        &self.inner.secret
    }

    /// `DEVICES/DEV`, if the device is available (mounted when `mount_check`, else a
    /// directory); otherwise `DiskUnavailable` (507).
    pub fn device_root(&self, dev: &str) -> Result<PathBuf> {
        let cfg = &self.inner.cfg;
        let path = layout::device_path(&cfg.devices, dev)
            .ok_or_else(|| DiskError::DiskUnavailable(format!("invalid device name {dev:?}")))?;
        let ok = if cfg.mount_check {
            cfs::is_mount(&path).unwrap_or(false)
        } else {
            fs::metadata(&path).map(|m| m.is_dir()).unwrap_or(false)
        };
        if ok {
            Ok(path)
        } else {
            Err(DiskError::DiskUnavailable(format!(
                "{} is not available",
                path.display()
            )))
        }
    }

    /// The directories of `policy` on `dev` (checks the device).
    pub fn policy_paths(&self, dev: &str, policy: u32) -> Result<PolicyPaths> {
        Ok(PolicyPaths::new(self.device_root(dev)?, policy))
    }

    /// Suffix hashes of a partition (REPLICATE), see [`crate::hashes::get_hashes`].
    pub fn get_hashes(
        &self,
        dev: &str,
        policy: u32,
        part: u32,
        recalculate: &[String],
        do_listdir: bool,
    ) -> Result<crate::hashes::GetHashes> {
        let paths = self.policy_paths(dev, policy)?;
        let cfg = self.config();
        crate::hashes::get_hashes(
            &paths,
            part,
            recalculate,
            do_listdir,
            cfg.reclaim_age,
            cfg.lock_timeout,
        )
    }

    /// Invalidate suffixes of a partition (REPLICATE `/DEV/PART/SUF1-SUF2`); a missing
    /// partition is skipped, invalid suffixes are `BadRequest`.
    pub fn invalidate_suffixes(
        &self,
        dev: &str,
        policy: u32,
        part: u32,
        suffixes: &[&str],
    ) -> Result<()> {
        if let Some(bad) = suffixes.iter().find(|s| !layout::is_valid_suffix(s)) {
            return Err(DiskError::BadRequest(format!("invalid suffix {bad:?}")));
        }
        let paths = self.policy_paths(dev, policy)?;
        let part_dir = paths.partition_dir(part);
        let Some(_lock) = lock_partition(&part_dir, false, self.config().lock_timeout)? else {
            return Ok(());
        };
        for s in suffixes {
            append_invalidation(&part_dir, s)?;
        }
        Ok(())
    }

    /// The partitions present for `policy` on `dev` (replicator's job list).
    pub fn list_partitions(&self, dev: &str, policy: u32) -> Result<Vec<u32>> {
        let paths = self.policy_paths(dev, policy)?;
        let names = match crate::ondisk::list_names(&paths.objects_dir()) {
            Ok(n) => n,
            Err(e) if cfs::is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut parts: Vec<u32> = names
            .iter()
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|n| n.parse().ok())
            .collect();
        parts.sort_unstable();
        Ok(parts)
    }

    /// Every object hash dir of a partition (or of the given suffixes), after cleanup, with
    /// its current timestamps: what SSYNC's missing-check offers (Swift's `yield_hashes`).
    /// Hash dirs without a `.data` or `.ts` are skipped.
    pub fn yield_hashes(
        &self,
        dev: &str,
        policy: u32,
        part: u32,
        suffixes: Option<&[String]>,
    ) -> Result<Vec<HashEntry>> {
        let paths = self.policy_paths(dev, policy)?;
        let part_dir = paths.partition_dir(part);
        let suffixes: Vec<String> = match suffixes {
            Some(s) => s.to_vec(),
            None => match crate::ondisk::list_names(&part_dir) {
                Ok(n) => n
                    .into_iter()
                    .filter(|s| layout::is_valid_suffix(s))
                    .collect(),
                Err(e) if cfs::is_not_found(&e) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            },
        };
        let now = Timestamp::now();
        let mut out = Vec::new();
        for suffix in suffixes {
            let sdir = part_dir.join(&suffix);
            let mut hashes = match crate::ondisk::list_names(&sdir) {
                Ok(n) => n,
                Err(e) if cfs::is_not_found(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            hashes.sort();
            for hash in hashes.into_iter().filter(|h| layout::is_valid_hash(h)) {
                let hdir = sdir.join(&hash);
                let info = match cleanup_hash_dir(&hdir, now, self.config().reclaim_age) {
                    Ok(i) => i,
                    Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                        quarantine_path(
                            &paths,
                            part,
                            &hdir,
                            "hash directory is a file",
                            self.config().lock_timeout,
                        )?;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let ts_data = match (&info.data, &info.ts) {
                    (Some(d), _) => d.ts,
                    (None, Some(t)) => t.ts,
                    (None, None) => continue,
                };
                out.push(HashEntry {
                    hash,
                    ts_data,
                    deleted: info.data.is_none(),
                    ts_meta: info
                        .meta
                        .as_ref()
                        .map(|m| m.ts)
                        .filter(|_| info.data.is_some()),
                    ts_ctype: info.ctype_ts(),
                });
            }
        }
        Ok(out)
    }

    /// The disk file of `/account/container/obj` in partition `part`.
    pub fn diskfile(
        &self,
        dev: &str,
        policy: u32,
        part: u32,
        account: &str,
        container: &str,
        obj: &str,
    ) -> Result<DiskFile> {
        let paths = self.policy_paths(dev, policy)?;
        let hash = self
            .inner
            .secret
            .hash_path(account, Some(container), Some(obj));
        Ok(DiskFile {
            mgr: self.clone(),
            paths,
            part,
            hash,
            name: Some(format!("/{account}/{container}/{obj}")),
        })
    }

    /// The disk file of a known hash (replication, auditing): any stored name that hashes
    /// to `hash` is accepted.
    pub fn diskfile_by_hash(
        &self,
        dev: &str,
        policy: u32,
        part: u32,
        hash: &str,
    ) -> Result<DiskFile> {
        if !layout::is_valid_hash(hash) {
            return Err(DiskError::BadRequest(format!("invalid hash {hash:?}")));
        }
        let paths = self.policy_paths(dev, policy)?;
        Ok(DiskFile {
            mgr: self.clone(),
            paths,
            part,
            hash: hash.to_string(),
            name: None,
        })
    }
}

/// One object of [`DiskFileManager::yield_hashes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashEntry {
    pub hash: String,
    /// The `.data` timestamp, or the tombstone's when `deleted`.
    pub ts_data: Timestamp,
    pub deleted: bool,
    /// The newest `.meta` over the `.data`.
    pub ts_meta: Option<Timestamp>,
    /// The content-type overlay's timestamp.
    pub ts_ctype: Option<Timestamp>,
}

/// One object's hash directory.
#[derive(Debug, Clone)]
pub struct DiskFile {
    mgr: DiskFileManager,
    paths: PolicyPaths,
    part: u32,
    hash: String,
    name: Option<String>,
}

/// The current state of an object on this device.
#[derive(Debug)]
pub enum DiskFileState {
    /// No `.data` and no `.ts`.
    Missing,
    /// The newest file is a tombstone written at `ts`.
    Deleted { ts: Timestamp },
    /// An object, opened (the file stays readable even if a newer write replaces it).
    Exists(OpenObject),
    /// An object whose `X-Delete-At` has passed: reads as 404, still on disk.
    Expired(OpenObject),
}

impl DiskFileState {
    /// The newest timestamp of the state (tombstone, or `.meta`/`.data`), if any.
    pub fn timestamp(&self) -> Option<Timestamp> {
        match self {
            DiskFileState::Missing => None,
            DiskFileState::Deleted { ts } => Some(*ts),
            DiskFileState::Exists(o) | DiskFileState::Expired(o) => Some(o.info.timestamp()),
        }
    }
}

/// What a reader sees of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Merged metadata (`.data` overlaid by `.meta` per the overlay rules).
    pub metadata: Metadata,
    /// The `/ACCT/CONT/OBJ` name stored with the object.
    pub name: String,
    pub data_ts: Timestamp,
    pub meta_ts: Option<Timestamp>,
    /// The content-type timestamp when a `.meta` overlay changed it.
    pub ctype_ts: Option<Timestamp>,
    pub content_length: u64,
    /// Lowercase hex MD5 of the body (empty if the metadata lacks it).
    pub etag: String,
    /// Integer seconds, when set.
    pub delete_at: Option<u64>,
    /// The `.data` file's own metadata (what SSYNC sends with a PUT).
    pub data_metadata: Metadata,
    /// The newest `.meta`'s own metadata, with `Content-Type` and
    /// `Content-Type-Timestamp` of a separate content-type `.meta` merged in (what SSYNC
    /// sends with a POST).
    pub meta_metadata: Option<Metadata>,
    pub data_file: PathBuf,
}

impl ObjectInfo {
    /// The newest of the data and meta timestamps (`X-Backend-Timestamp`).
    pub fn timestamp(&self) -> Timestamp {
        self.meta_ts.map_or(self.data_ts, |m| m.max(self.data_ts))
    }
}

/// A `.data` file opened by [`DiskFile::open`], ready to be read.
#[derive(Debug)]
pub struct OpenObject {
    pub info: ObjectInfo,
    file: File,
    df: DiskFile,
}

impl OpenObject {
    /// A reader of the whole body that verifies the MD5 at EOF.
    pub fn reader(self) -> ObjectReader {
        let len = self.info.content_length;
        let expected = self.info.etag.clone();
        ObjectReader {
            file: self.file,
            remaining: len,
            md5: (!expected.is_empty()).then(Md5::new),
            expected_etag: expected,
            df: self.df,
            data_file: self.info.data_file,
            done: false,
        }
    }

    /// A reader of bytes `start..end` (exclusive; clamped to the length). No MD5 check.
    pub fn range_reader(mut self, start: u64, end: u64) -> Result<ObjectReader> {
        let end = end.min(self.info.content_length);
        let start = start.min(end);
        self.file.seek(SeekFrom::Start(start))?;
        Ok(ObjectReader {
            file: self.file,
            remaining: end - start,
            md5: None,
            expected_etag: String::new(),
            df: self.df,
            data_file: self.info.data_file,
            done: false,
        })
    }
}

/// Streams an object body; a whole-body reader checks the MD5 at EOF and quarantines the
/// object on mismatch (the caller then aborts the response).
#[derive(Debug)]
pub struct ObjectReader {
    file: File,
    remaining: u64,
    md5: Option<Md5>,
    expected_etag: String,
    df: DiskFile,
    data_file: PathBuf,
    done: bool,
}

impl ObjectReader {
    /// Bytes still to be read.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Read the next bytes into `buf`; `Ok(0)` at the end (after verification). A
    /// mismatch, a short file or an I/O error quarantines the object and returns
    /// `DiskError::Quarantined`.
    pub fn read_chunk(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.remaining == 0 {
            self.finish()?;
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = loop {
            match self.file.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    return Err(self.quarantine(&format!("read error: {e}")));
                }
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 && want > 0 {
            return Err(self.quarantine("data file shorter than Content-Length"));
        }
        if let Some(md5) = &mut self.md5 {
            md5.update(&buf[..n]);
        }
        self.remaining -= n as u64;
        if self.remaining == 0 {
            self.finish()?;
        }
        Ok(n)
    }

    /// Continue with bytes `start..end` (clamped to the object): seeks, and stops any MD5
    /// verification (multi-range reads).
    pub fn seek_range(&mut self, start: u64, end: u64) -> Result<()> {
        let len = self.file.metadata()?.len();
        let end = end.min(len);
        let start = start.min(end);
        self.file.seek(SeekFrom::Start(start))?;
        self.remaining = end - start;
        self.md5 = None;
        self.done = false;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        if let Some(md5) = self.md5.take() {
            let got = to_hex(&md5.finalize());
            if !got.eq_ignore_ascii_case(&self.expected_etag) {
                return Err(self.quarantine(&format!(
                    "MD5 {got} does not match ETag {}",
                    self.expected_etag
                )));
            }
        }
        Ok(())
    }

    fn quarantine(&mut self, reason: &str) -> DiskError {
        self.done = true;
        self.remaining = 0;
        // Only if our file is still the one on disk: a newer write may have replaced it
        // (and its hash dir must not be quarantined for the old file's fault).
        let same = match (self.file.metadata(), fs::metadata(&self.data_file)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if !same {
            return DiskError::Corrupt(format!("{reason} (file already replaced)"));
        }
        match self.df.quarantine(reason) {
            Ok(to) => DiskError::Quarantined {
                reason: reason.to_string(),
                to,
            },
            Err(e) => e,
        }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_chunk(buf).map_err(|e| match e {
            DiskError::Io(e) => e,
            other => io::Error::other(other),
        })
    }
}

impl DiskFile {
    pub fn hash(&self) -> &str {
        &self.hash
    }
    pub fn partition(&self) -> u32 {
        self.part
    }
    pub fn paths(&self) -> &PolicyPaths {
        &self.paths
    }
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    pub fn hash_dir(&self) -> PathBuf {
        self.paths.hash_dir(self.part, &self.hash)
    }
    fn cfg(&self) -> &DiskConfig {
        self.mgr.config()
    }

    /// Read the current state now (runs cleanup on the hash directory).
    pub fn open(&self) -> Result<DiskFileState> {
        self.open_at(Timestamp::now())
    }

    /// Read the current state as of `now` (reclaim and expiry are judged against it).
    pub fn open_at(&self, now: Timestamp) -> Result<DiskFileState> {
        // A newer write may remove the file we chose between listing and opening: retry.
        let mut last_err = None;
        for _ in 0..5 {
            match self.try_open(now) {
                Err(DiskError::Io(e)) if e.kind() == io::ErrorKind::NotFound => last_err = Some(e),
                other => return other,
            }
        }
        Err(DiskError::Io(last_err.unwrap_or_else(|| {
            io::Error::from(io::ErrorKind::NotFound)
        })))
    }

    /// The on-disk info after cleanup (no metadata read).
    pub fn ondisk_info(&self, now: Timestamp) -> Result<OnDiskInfo> {
        let dir = self.hash_dir();
        match cleanup_hash_dir(&dir, now, self.cfg().reclaim_age) {
            Ok(info) => Ok(info),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                Err(self.quarantined("hash directory is not a directory"))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn try_open(&self, now: Timestamp) -> Result<DiskFileState> {
        let info = self.ondisk_info(now)?;
        let dir = self.hash_dir();
        let Some(data) = &info.data else {
            return Ok(match &info.ts {
                Some(ts) => DiskFileState::Deleted { ts: ts.ts },
                None => DiskFileState::Missing,
            });
        };
        let data_path = dir.join(&data.name);
        let file = File::open(&data_path)?;
        let data_md = self.read_md(&file)?;
        let name = self.check_name(&data_md)?;
        let content_length = match data_md.get("Content-Length").map(str::parse::<u64>) {
            Some(Ok(n)) => n,
            _ => return Err(self.quarantined("metadata lacks a valid Content-Length")),
        };
        let size = file.metadata()?.len();
        if size != content_length {
            return Err(self.quarantined(&format!(
                "file size {size} != Content-Length {content_length}"
            )));
        }
        let mut merged = data_md.clone();
        let mut meta_ts = None;
        let mut ctype_ts = None;
        let mut meta_metadata = None;
        if let Some(meta) = &info.meta {
            let meta_md = self.read_file_md(&dir.join(&meta.name))?;
            meta_ts = Some(meta.ts);
            let ctype_md = match &info.ctype {
                Some(c) if c.name == meta.name => Some(meta_md.clone()),
                Some(c) => Some(self.read_file_md(&dir.join(&c.name))?),
                None => None,
            };
            merged = overlay(&data_md, &meta_md, ctype_md.as_ref());
            let mut own = meta_md;
            if let Some(c) = &ctype_md {
                ctype_ts = info.ctype_ts();
                for key in ["Content-Type", "Content-Type-Timestamp"] {
                    if let Some(v) = c.get(key) {
                        own.set(key, v);
                    }
                }
            }
            meta_metadata = Some(own);
        }
        let delete_at = match merged.get("X-Delete-At") {
            None => None,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => return Err(self.quarantined(&format!("bad X-Delete-At {v:?}"))),
            },
        };
        let etag = merged.get("ETag").unwrap_or_default().to_ascii_lowercase();
        let obj = OpenObject {
            info: ObjectInfo {
                metadata: merged,
                name,
                data_ts: data.ts,
                meta_ts,
                ctype_ts,
                content_length,
                etag,
                delete_at,
                data_file: data_path,
                data_metadata: data_md,
                meta_metadata,
            },
            file,
            df: self.clone(),
        };
        Ok(match delete_at {
            Some(at) if at <= now.secs() => DiskFileState::Expired(obj),
            _ => DiskFileState::Exists(obj),
        })
    }

    fn read_md(&self, file: &File) -> Result<Metadata> {
        match read_metadata(file) {
            Err(DiskError::Corrupt(why)) => Err(self.quarantined(&why)),
            other => other,
        }
    }

    fn read_file_md(&self, path: &Path) -> Result<Metadata> {
        let file = File::open(path)?;
        let md = self.read_md(&file)?;
        self.check_name(&md)?;
        Ok(md)
    }

    /// The stored name must hash to this directory (else quarantine) and equal the
    /// requested name (else a collision).
    fn check_name(&self, md: &Metadata) -> Result<String> {
        let Some(stored) = md.get("name") else {
            return Err(self.quarantined("metadata lacks name"));
        };
        let hashes_here = split_object_name(stored)
            .map(|(a, c, o)| self.mgr.secret().hash_path(a, Some(c), Some(o)) == self.hash)
            .unwrap_or(false);
        if !hashes_here {
            return Err(
                self.quarantined(&format!("name {stored:?} does not hash to the directory"))
            );
        }
        if let Some(want) = &self.name {
            if want != stored {
                return Err(DiskError::Collision {
                    stored: stored.to_string(),
                });
            }
        }
        Ok(stored.to_string())
    }

    /// Quarantine and return the error to report.
    fn quarantined(&self, reason: &str) -> DiskError {
        match self.quarantine(reason) {
            Ok(to) => DiskError::Quarantined {
                reason: reason.to_string(),
                to,
            },
            Err(e) => e,
        }
    }

    /// Move the hash directory to `quarantined/objects[-N]/HASH[-UUID]` and invalidate its
    /// suffix. Returns where it went.
    pub fn quarantine(&self, reason: &str) -> Result<PathBuf> {
        quarantine_path(
            &self.paths,
            self.part,
            &self.hash_dir(),
            reason,
            self.cfg().lock_timeout,
        )
    }

    /// Start a PUT: a temp file in `DEV/tmp[-N]/`, preallocated when the size is known.
    pub fn create(&self, size: Option<u64>) -> Result<DiskFileWriter> {
        let (file, tmp_path) = self.create_tmp(size.unwrap_or(0))?;
        if let Some(len) = size {
            cfs::fallocate_keep_size(&file, len)
                .map_err(|e| DiskError::from_write(e, "fallocate"))?;
        }
        Ok(DiskFileWriter {
            df: self.clone(),
            file: Some(file),
            tmp_path,
            md5: Md5::new(),
            written: 0,
            since_sync: 0,
            prealloc: size.unwrap_or(0),
        })
    }

    fn create_tmp(&self, size: u64) -> Result<(File, PathBuf)> {
        let tmp_dir = self.paths.tmp_dir();
        let cfg = self.cfg();
        if let Some(reason) = cfg.fallocate_reserve.shortfall(&self.paths.device, size)? {
            return Err(DiskError::DiskFull(reason));
        }
        match cfs::create_tmp_file(&tmp_dir, "obj") {
            Ok(r) => Ok(r),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                cfs::create_dir_all_durable(&tmp_dir)
                    .map_err(|e| DiskError::from_write(e, "mkdir tmp"))?;
                cfs::create_tmp_file(&tmp_dir, "obj")
                    .map_err(|e| DiskError::from_write(e, "create temp"))
            }
            Err(e) => Err(DiskError::from_write(e, "create temp")),
        }
    }

    /// The metadata every file gets: `name` (the requested one, or the caller's for a
    /// hash-addressed disk file) and `X-Timestamp`.
    fn base_metadata(&self, ts: Timestamp, mut md: Metadata) -> Result<Metadata> {
        match &self.name {
            Some(n) => md.set("name", n.clone()),
            None if md.contains("name") => {}
            None => return Err(DiskError::BadRequest("metadata lacks name".into())),
        }
        md.set("X-Timestamp", ts.internal());
        Ok(md)
    }

    /// Write a tombstone `T.ts` (metadata `name`, `X-Timestamp` plus `extra`).
    pub fn write_tombstone(&self, ts: Timestamp, extra: Metadata) -> Result<PathBuf> {
        let md = self.base_metadata(ts, extra)?;
        let (file, tmp) = self.create_tmp(0)?;
        self.finalize(file, tmp, FileKind::Ts, ts, None, &md)
    }

    /// Write a `.meta` (a POST). `ctype_ts` is set when the metadata carries a
    /// `Content-Type` (and is recorded as `Content-Type-Timestamp` and in the file name).
    pub fn write_meta(
        &self,
        ts: Timestamp,
        metadata: Metadata,
        ctype_ts: Option<Timestamp>,
    ) -> Result<PathBuf> {
        let mut md = self.base_metadata(ts, metadata)?;
        if let Some(c) = ctype_ts {
            md.set("Content-Type-Timestamp", c.internal());
        }
        let (file, tmp) = self.create_tmp(0)?;
        self.finalize(file, tmp, FileKind::Meta, ts, ctype_ts, &md)
    }

    /// Steps 3–6 of the write sequence: xattr, fsync, invalidate the suffix, mkdir -p,
    /// rename, fsync the directory, cleanup.
    fn finalize(
        &self,
        file: File,
        tmp: PathBuf,
        kind: FileKind,
        ts: Timestamp,
        ctype_ts: Option<Timestamp>,
        md: &Metadata,
    ) -> Result<PathBuf> {
        let res = self.finalize_inner(file, &tmp, kind, ts, ctype_ts, md);
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    fn finalize_inner(
        &self,
        file: File,
        tmp: &Path,
        kind: FileKind,
        ts: Timestamp,
        ctype_ts: Option<Timestamp>,
        md: &Metadata,
    ) -> Result<PathBuf> {
        write_metadata(&file, md)?;
        file.sync_all()
            .map_err(|e| DiskError::from_write(e, "fsync"))?;
        drop(file);
        let hash_dir = self.hash_dir();
        let part_dir = self.paths.partition_dir(self.part);
        let target = hash_dir.join(make_file_name(kind, ts, ctype_ts));
        // Steps 4-5 under the partition lock: invalidate the suffix, then make the file
        // visible, so that no consolidation can slip in between (see `invalidate_hash`).
        // The directories are made (and made durable) before taking the lock; inside it
        // they are only made again if a concurrent cleanup removed them.
        mkdirs_retrying(&hash_dir)?;
        let lock = lock_partition(&part_dir, true, self.cfg().lock_timeout)?;
        append_invalidation(&part_dir, suffix_of(&self.hash))?;
        let mut attempt = 0;
        loop {
            match fs::rename(tmp, &target) {
                Ok(()) => break,
                Err(e) if cfs::is_not_found(&e) && attempt < 10 => {
                    attempt += 1;
                    mkdirs_retrying(&hash_dir)?;
                }
                Err(e) => return Err(DiskError::from_write(e, "rename into place")),
            }
        }
        drop(lock);
        match cfs::fsync_dir(&hash_dir) {
            Ok(()) => {}
            // Our file was already obsolete (e.g. a reclaimable tombstone) and a concurrent
            // cleanup removed it together with the directory.
            Err(e) if cfs::is_not_found(&e) => return Ok(target),
            Err(e) => return Err(DiskError::from_write(e, "fsync dir")),
        }
        if let Err(e) = cleanup_hash_dir(&hash_dir, Timestamp::now(), self.cfg().reclaim_age) {
            tracing::warn!(dir = %hash_dir.display(), error = %e, "cleanup after write failed");
        }
        Ok(target)
    }
}

/// `mkdir -p` (durable) of a hash dir, again if a concurrent cleanup removes a parent
/// (an empty suffix or hash dir) while we create or fsync it.
fn mkdirs_retrying(dir: &Path) -> Result<()> {
    let mut attempt = 0;
    loop {
        match cfs::create_dir_all_durable(dir) {
            Ok(_) => return Ok(()),
            Err(e) if cfs::is_not_found(&e) && attempt < 10 => attempt += 1,
            Err(e) => return Err(DiskError::from_write(e, "mkdir hash dir")),
        }
    }
}

/// Metadata seen by readers when `.meta` (`meta`) overlays `.data` (`data`): everything of
/// the `.meta`, plus `name`, `Content-Length`, `ETag`, `X-Static-Large-Object`,
/// `X-Object-Sysmeta-*` of the `.data`; `Content-Type` from the ctype overlay if one
/// applies, else from the `.data`.
pub fn overlay(data: &Metadata, meta: &Metadata, ctype: Option<&Metadata>) -> Metadata {
    let mut out = meta.clone();
    out.remove("Content-Type");
    out.remove("Content-Type-Timestamp");
    for (k, v) in data.iter() {
        let keep = DATA_KEYS_KEPT.iter().any(|d| d.eq_ignore_ascii_case(k))
            || k.to_ascii_lowercase().starts_with("x-object-sysmeta-");
        if keep {
            out.set(k, v);
        }
    }
    match ctype.and_then(|c| {
        c.get("Content-Type")
            .map(|t| (t, c.get("Content-Type-Timestamp")))
    }) {
        Some((t, ts)) => {
            out.set("Content-Type", t);
            if let Some(ts) = ts {
                out.set("Content-Type-Timestamp", ts);
            }
        }
        None => {
            if let Some(t) = data.get("Content-Type") {
                out.set("Content-Type", t);
            }
        }
    }
    out
}

/// Move `path` (a hash dir, or a file where a hash dir should be) to
/// `DEV/quarantined/objects[-N]/NAME[-UUIDHEX]`, then invalidate its suffix.
pub fn quarantine_path(
    paths: &PolicyPaths,
    part: u32,
    path: &Path,
    reason: &str,
    lock_timeout: Duration,
) -> Result<PathBuf> {
    let qdir = paths.quarantine_dir();
    cfs::create_dir_all_durable(&qdir).map_err(|e| DiskError::from_write(e, "mkdir quarantine"))?;
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unknown".to_string());
    let mut dest = qdir.join(&base);
    let suffix = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|s| s.to_str())
        .filter(|s| layout::is_valid_suffix(s))
        .map(str::to_string);
    let part_dir = paths.partition_dir(part);
    // Move and invalidate under the partition lock (no consolidation in between).
    let _lock = match &suffix {
        Some(_) => lock_partition(&part_dir, false, lock_timeout)?,
        None => None,
    };
    let mut tries = 0;
    loop {
        if fs::symlink_metadata(&dest).is_ok() {
            dest = qdir.join(format!("{base}-{}", uuid::Uuid::new_v4().simple()));
        }
        match fs::rename(path, &dest) {
            Ok(()) => break,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EEXIST)
                        | Some(libc::ENOTEMPTY)
                        | Some(libc::ENOTDIR)
                        | Some(libc::EISDIR)
                ) && tries < 3 =>
            {
                tries += 1;
                dest = qdir.join(format!("{base}-{}", uuid::Uuid::new_v4().simple()));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let (Some(suffix), Some(_)) = (&suffix, &_lock) {
        append_invalidation(&part_dir, suffix)?;
    }
    drop(_lock);
    cfs::fsync_dir(&qdir)?;
    if let Some(parent) = path.parent() {
        let _ = cfs::fsync_dir(parent);
        remove_dir_if_empty(parent);
    }
    QUARANTINE_COUNT.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(from = %path.display(), to = %dest.display(), reason, "quarantined object");
    Ok(dest)
}

/// An in-progress PUT. Dropping it without [`DiskFileWriter::commit`] removes the temp.
#[derive(Debug)]
pub struct DiskFileWriter {
    df: DiskFile,
    file: Option<File>,
    tmp_path: PathBuf,
    md5: Md5,
    written: u64,
    since_sync: u64,
    prealloc: u64,
}

impl DiskFileWriter {
    /// Append a chunk of the body.
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(DiskError::Io(io::Error::other("writer already finished")));
        };
        file.write_all(chunk)
            .map_err(|e| DiskError::from_write(e, "write"))?;
        self.md5.update(chunk);
        self.written += chunk.len() as u64;
        self.since_sync += chunk.len() as u64;
        let every = self.df.cfg().bytes_per_sync;
        if every > 0 && self.since_sync >= every {
            cfs::fdatasync(file).map_err(|e| DiskError::from_write(e, "fdatasync"))?;
            self.since_sync = 0;
        }
        Ok(())
    }

    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Lowercase hex MD5 of the bytes written so far.
    pub fn etag(&self) -> String {
        to_hex(&self.md5.clone().finalize())
    }

    /// The temp file's path (tests, diagnostics).
    pub fn tmp_path(&self) -> &Path {
        &self.tmp_path
    }

    /// Make the object durable and visible as `HASH/T.data`. `metadata` gets `name`,
    /// `X-Timestamp`, `Content-Length` (bytes written) and `ETag` (computed) set.
    pub fn commit(mut self, ts: Timestamp, metadata: Metadata) -> Result<PathBuf> {
        let file = self
            .file
            .take()
            .ok_or_else(|| DiskError::Io(io::Error::other("writer already finished")))?;
        let res = (|| {
            let mut md = self.df.base_metadata(ts, metadata)?;
            md.set("Content-Length", self.written.to_string());
            md.set("ETag", self.etag());
            if self.written < self.prealloc {
                // Release preallocated blocks past the end (KEEP_SIZE leaves them).
                let _ = file.set_len(self.written);
            }
            self.df
                .finalize_inner(file, &self.tmp_path, FileKind::Data, ts, None, &md)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&self.tmp_path);
        }
        // Either renamed away or removed: nothing left for Drop to do.
        self.tmp_path = PathBuf::new();
        res
    }
}

impl Drop for DiskFileWriter {
    fn drop(&mut self) {
        if !self.tmp_path.as_os_str().is_empty() {
            self.file.take();
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

/// Prefix of the temp files of object writes (`create_tmp_file(_, "obj")`).
const OBJECT_TMP_PREFIX: &str = ".obj";

/// Remove the temp files of object writes, of any age, from every `tmp[-N]` directory of
/// a device: safe at object-server start (no PUT is in flight), and leaves other servers'
/// temp files (DB copies) alone.
pub fn cleanup_object_tmp_files(device: &Path) -> io::Result<usize> {
    remove_tmp_files(device, |name, _| name.starts_with(OBJECT_TMP_PREFIX))
}

/// Remove temp files older than `older_than` (zero: all) from every `tmp[-N]` directory
/// of a device. Returns how many were removed. Note that DB whole-file copies also land
/// in `DEV/tmp/`: call with a zero age only when no other server writes to the device.
pub fn cleanup_tmp_dirs(device: &Path, older_than: Duration) -> io::Result<usize> {
    remove_tmp_files(device, |_, meta| {
        older_than.is_zero() || cfs::file_age(meta) >= older_than
    })
}

fn remove_tmp_files(
    device: &Path,
    pick: impl Fn(&str, &fs::Metadata) -> bool,
) -> io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(device) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if layout::parse_policy_dir_name("tmp", &name).is_none() {
            continue;
        }
        let Ok(files) = fs::read_dir(entry.path()) else {
            continue;
        };
        for f in files {
            let f = f?;
            let Ok(meta) = f.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let fname = f.file_name();
            if pick(&fname.to_string_lossy(), &meta) {
                match fs::remove_file(f.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_hash_different_name_is_a_collision() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sda")).unwrap();
        let cfg = DiskConfig {
            devices: dir.path().to_path_buf(),
            mount_check: false,
            fallocate_reserve: cfs::FallocateReserve::NONE,
            ..DiskConfig::default()
        };
        let mgr = DiskFileManager::new(cfg, HashPathSecret::new("", "x"));
        let real = mgr.diskfile("sda", 0, 0, "a", "c", "o").unwrap();
        let mut w = real.create(None).unwrap();
        w.write(b"abc").unwrap();
        w.commit(Timestamp::from_secs(1), Metadata::new()).unwrap();
        // A different name that (pretend) hashes to the same directory.
        let other = DiskFile {
            name: Some("/a/c/other".into()),
            ..real.clone()
        };
        match other.open() {
            Err(e @ DiskError::Collision { .. }) => assert_eq!(e.http_status(), 403),
            other => panic!("{other:?}"),
        }
        assert!(real.hash_dir().exists(), "a collision is not quarantined");
        // A hash-addressed open accepts the stored name.
        let by_hash = mgr.diskfile_by_hash("sda", 0, 0, real.hash()).unwrap();
        assert!(matches!(by_hash.open().unwrap(), DiskFileState::Exists(_)));
    }

    #[test]
    fn fallocate_reserve_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sda")).unwrap();
        let cfg = DiskConfig {
            devices: dir.path().to_path_buf(),
            mount_check: false,
            fallocate_reserve: cfs::FallocateReserve::Percent(100.0),
            ..DiskConfig::default()
        };
        let mgr = DiskFileManager::new(cfg, HashPathSecret::new("", "x"));
        let d = mgr.diskfile("sda", 0, 0, "a", "c", "o").unwrap();
        let e = d.create(Some(1)).unwrap_err();
        assert_eq!(e.http_status(), 507);
    }
}
