//! The object-auditor (`DESIGN.md`, "Updaters, auditors, expirer"; `PROTOCOLS.md`,
//! "Quarantine"): re-reads every object on the node's devices at a bounded rate and
//! quarantines damaged ones, so that replication restores a good copy.
//!
//! A pass walks `DEV/objects[-N]/PART/SUFFIX/HASH` on every available device and
//! configured policy. Each hash dir is opened through [`DiskFile::open`], which already
//! validates the metadata (readable, CRC, `name` hashing to the directory,
//! `Content-Length` equal to the file size, `X-Delete-At`) and quarantines on failure. In
//! [`AuditMode::All`] the whole body is then read (chunks of `disk_chunk_size`, paced by
//! `bytes_per_second`) and its MD5 compared with the stored `ETag`; a mismatch (or a
//! missing `ETag`) quarantines the hash dir (moved to `DEV/quarantined/objects[-N]/`, its
//! suffix invalidated). Before quarantining the auditor re-checks, after running cleanup
//! on the hash dir, that the `.data` it read is still the current one (same name and same
//! inode): an object replaced or deleted while it was being read is left alone.
//! [`AuditMode::ZeroByteFiles`] (Swift's ZBF pass, `zero_byte_files_per_second`) only
//! opens objects: it catches the truncated files a crash can leave (size ≠
//! `Content-Length`) and bad metadata quickly, without reading bodies. Files are paced
//! by `files_per_second` (ALL) or `zero_byte_files_per_second` (ZBF). Expired objects
//! are skipped, as in Swift; a hash dir that cleanup emptied (a reclaimed tombstone) gets
//! its suffix invalidated so the replicator rehashes it.
//!
//! Disk work runs on the blocking pool: `concurrency` workers (default 1), each auditing
//! its share of the devices with its own rate limiters (like Swift's forked workers).
//! [`run_object_auditor`] in `All` mode also runs the ZBF pass beside the ALL pass
//! (unless `zero_byte_files_per_second` is 0), as Swift's auditor does.
//!
//! Reporting: a log line every `log_time` and per pass; recon `object.recon` section
//! `auditor` with Swift's `object_auditor_stats_ALL|ZBF` (`errors`, `passes`,
//! `quarantined`, `bytes_processed`, `start_time`, `audit_time` since the last report,
//! nested by device when `concurrency` > 1) and `object_auditor_last_pass_ALL|ZBF`
//! (totals of the last complete pass: `files`, `bytes`, `quarantined`, `errors`,
//! `pass_time`, `completed`); Prometheus `cairn_object_auditor_*` families labelled by
//! `type`.
//!
//! Not implemented: Swift's audit watchers, `object_size_stats`, resuming a pass where a
//! restarted auditor left off, `--devices` overrides, rsync temp file cleanup (Cairn uses
//! SSYNC).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cairn_common::daemon::{run_daemon_with, Stop};
use cairn_common::metrics::{self, CounterVec, GaugeVec};
use cairn_common::recon::ReconCache;
use cairn_common::server_config::load_role_config;
use cairn_common::{suffix_of, to_hex, HashPathSecret, Timestamp};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::config::{ObjectServerFile, RunError};
use crate::diskfile::{DiskConfig, DiskFile, DiskFileManager, DiskFileState, OpenObject};
use crate::error::DiskError;
use crate::layout::{is_valid_hash, is_valid_suffix, parse_policy_dir_name, PolicyPaths};
use crate::ondisk::list_names;
use crate::updater::RateLimiter;

/// MD5 of the empty string.
const EMPTY_ETAG: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// What a pass checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditMode {
    /// Open every object and verify its whole body (Swift's `ALL`).
    All,
    /// Open every object, validating metadata and size only (Swift's `ZBF`, `-z`).
    ZeroByteFiles,
}

impl AuditMode {
    /// Swift's auditor type name.
    pub fn label(self) -> &'static str {
        match self {
            AuditMode::All => "ALL",
            AuditMode::ZeroByteFiles => "ZBF",
        }
    }
}

/// The `[object-auditor]` table of `object-server.toml`.
///
/// ```toml
/// [object-auditor]
/// interval = 30                       # seconds between passes
/// files_per_second = 20               # ALL pass
/// bytes_per_second = 10485760         # ALL pass (10 MiB/s)
/// zero_byte_files_per_second = 50     # ZBF pass (0: no ZBF pass beside ALL)
/// log_time = 3600                     # seconds between progress reports
/// concurrency = 1                     # parallel workers, devices split among them
/// disk_chunk_size = 65536             # bytes per read
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditorSection {
    pub interval: f64,
    pub files_per_second: f64,
    pub bytes_per_second: f64,
    pub zero_byte_files_per_second: f64,
    pub log_time: f64,
    pub concurrency: usize,
    pub disk_chunk_size: usize,
}

impl Default for AuditorSection {
    fn default() -> Self {
        AuditorSection {
            interval: 30.0,
            files_per_second: 20.0,
            bytes_per_second: 10.0 * 1024.0 * 1024.0,
            zero_byte_files_per_second: 50.0,
            log_time: 3600.0,
            concurrency: 1,
            disk_chunk_size: 65_536,
        }
    }
}

impl AuditorSection {
    /// Checks serde cannot express; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("interval", self.interval),
            ("files_per_second", self.files_per_second),
            ("bytes_per_second", self.bytes_per_second),
            (
                "zero_byte_files_per_second",
                self.zero_byte_files_per_second,
            ),
            ("log_time", self.log_time),
        ] {
            if !(v.is_finite() && (0.0..1e15).contains(&v)) {
                return Err(format!(
                    "object-auditor.{key} must be a non-negative number, not {v}"
                ));
            }
        }
        if self.concurrency == 0 {
            return Err("object-auditor.concurrency must be at least 1".to_string());
        }
        if self.disk_chunk_size < 4096 {
            return Err("object-auditor.disk_chunk_size must be at least 4096".to_string());
        }
        Ok(())
    }
}

/// Settings of the object-auditor.
#[derive(Debug, Clone)]
pub struct AuditorSettings {
    pub devices: PathBuf,
    pub mount_check: bool,
    /// Tombstone reclaim age (cleanup runs when objects are opened).
    pub reclaim_age: u64,
    pub lock_timeout: Duration,
    pub interval: Duration,
    /// Files per second of the ALL pass (0 = unlimited).
    pub files_per_second: f64,
    /// Body bytes per second of the ALL pass (0 = unlimited).
    pub bytes_per_second: f64,
    /// Files per second of the ZBF pass (0 = unlimited, and no ZBF pass beside ALL in
    /// [`run_object_auditor`]).
    pub zero_byte_files_per_second: f64,
    /// Time between progress reports.
    pub log_time: Duration,
    /// Parallel workers (devices are split among them).
    pub concurrency: usize,
    pub disk_chunk_size: usize,
    /// Where `object.recon` lives; `None` skips recon.
    pub recon_cache_path: Option<PathBuf>,
    /// Policy indexes to audit; empty audits every `objects[-N]` dir found.
    pub policies: Vec<u32>,
}

impl AuditorSettings {
    /// Swift's defaults for the devices root `devices`.
    pub fn new(devices: impl Into<PathBuf>) -> Self {
        let s = AuditorSection::default();
        AuditorSettings {
            devices: devices.into(),
            mount_check: false,
            reclaim_age: 604_800,
            lock_timeout: Duration::from_secs(10),
            interval: Duration::from_secs_f64(s.interval),
            files_per_second: s.files_per_second,
            bytes_per_second: s.bytes_per_second,
            zero_byte_files_per_second: s.zero_byte_files_per_second,
            log_time: Duration::from_secs_f64(s.log_time),
            concurrency: s.concurrency,
            disk_chunk_size: s.disk_chunk_size,
            recon_cache_path: None,
            policies: Vec::new(),
        }
    }

    /// The settings `object-server.toml` describes (`policies` from the cluster file).
    pub fn from_file(file: &ObjectServerFile, policies: Vec<u32>) -> Self {
        let a = &file.auditor;
        let secs = |v: f64| Duration::try_from_secs_f64(v).unwrap_or(Duration::from_secs(1));
        AuditorSettings {
            devices: file.server.devices.clone(),
            mount_check: file.server.mount_check,
            reclaim_age: file.object.reclaim_age,
            lock_timeout: secs(file.object.lock_timeout),
            interval: secs(a.interval),
            files_per_second: a.files_per_second,
            bytes_per_second: a.bytes_per_second,
            zero_byte_files_per_second: a.zero_byte_files_per_second,
            log_time: secs(a.log_time),
            concurrency: a.concurrency.max(1),
            disk_chunk_size: a.disk_chunk_size.max(4096),
            recon_cache_path: Some(file.server.recon_cache_path.clone()),
            policies,
        }
    }
}

/// Counters of a pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AuditStats {
    /// Hash dirs audited (whatever the outcome).
    pub files: u64,
    /// Body bytes read and verified.
    pub bytes: u64,
    /// Objects quarantined.
    pub quarantined: u64,
    /// Objects that could not be audited (I/O errors other than damage).
    pub errors: u64,
}

impl AuditStats {
    fn add(&mut self, o: &AuditStats) {
        self.files += o.files;
        self.bytes += o.bytes;
        self.quarantined += o.quarantined;
        self.errors += o.errors;
    }
}

struct Metrics {
    files: Arc<CounterVec>,
    bytes: Arc<CounterVec>,
    quarantines: Arc<CounterVec>,
    errors: Arc<CounterVec>,
    pass_seconds: Arc<GaugeVec>,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let r = metrics::global();
        Metrics {
            files: r.counter_vec(
                "cairn_object_auditor_files_total",
                "Objects audited.",
                &["type"],
            ),
            bytes: r.counter_vec(
                "cairn_object_auditor_bytes_total",
                "Object body bytes verified by the auditor.",
                &["type"],
            ),
            quarantines: r.counter_vec(
                "cairn_object_auditor_quarantines_total",
                "Objects quarantined by the auditor.",
                &["type"],
            ),
            errors: r.counter_vec(
                "cairn_object_auditor_errors_total",
                "Objects the auditor could not audit.",
                &["type"],
            ),
            pass_seconds: r.gauge_vec(
                "cairn_object_auditor_pass_seconds",
                "Duration of the last complete auditor pass.",
                &["type"],
            ),
        }
    })
}

/// What became of one audited hash dir.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Fine, gone, deleted, expired, or replaced while being read.
    Passed,
    Quarantined(String),
    Error(String),
    /// The stop flag was raised while reading.
    Stopped,
}

/// One worker's progress: rate limiters and the counters since the last report.
struct Worker<'a> {
    mode: AuditMode,
    stop: &'a Stop,
    files_limiter: RateLimiter,
    bytes_limiter: RateLimiter,
    /// Counters since the last report (Swift's windowed recon stats).
    window: AuditStats,
    window_start: f64,
    window_audit_time: Duration,
    last_report: Instant,
    total: AuditStats,
    /// `Some(key)`: nest recon stats under this device key (concurrency > 1).
    device_key: Option<String>,
}

/// The object-auditor. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ObjectAuditor {
    settings: Arc<AuditorSettings>,
    mgr: DiskFileManager,
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Sleep `d` in short slices so that a stop is noticed; `false` when stopped.
fn sleep_blocking(stop: &Stop, d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if stop.is_stopped() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
}

impl ObjectAuditor {
    pub fn new(settings: AuditorSettings, secret: HashPathSecret) -> Self {
        let mgr = DiskFileManager::new(
            DiskConfig {
                devices: settings.devices.clone(),
                mount_check: settings.mount_check,
                reclaim_age: settings.reclaim_age,
                lock_timeout: settings.lock_timeout,
                ..DiskConfig::default()
            },
            secret,
        );
        ObjectAuditor {
            settings: Arc::new(settings),
            mgr,
        }
    }

    pub fn settings(&self) -> &AuditorSettings {
        &self.settings
    }

    fn recon(&self) -> Option<ReconCache> {
        self.settings
            .recon_cache_path
            .as_ref()
            .map(|d| ReconCache::new(d, "object"))
    }

    /// Available device names, sorted.
    fn available_devices(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(&self.settings.devices) else {
            tracing::error!(devices = %self.settings.devices.display(), "cannot list devices");
            return Vec::new();
        };
        let mut out: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|d| match self.mgr.device_root(d) {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(device = %d, error = %e, "skipping unavailable device");
                    false
                }
            })
            .collect();
        out.sort();
        out
    }

    /// One pass in `mode` over every available device; returns early (with what was
    /// done) once `stop` is raised.
    pub async fn run_once(&self, mode: AuditMode, stop: &Stop) -> AuditStats {
        let begin = Instant::now();
        let label = mode.label();
        let me = self.clone();
        let devices = tokio::task::spawn_blocking(move || me.available_devices())
            .await
            .unwrap_or_default();
        tracing::info!(mode = label, devices = devices.len(), "begin object audit");
        let workers = self.settings.concurrency.clamp(1, devices.len().max(1));
        if let Some(cache) = self.recon() {
            let clear = json!({ format!("object_auditor_stats_{label}"): null });
            let _ = tokio::task::spawn_blocking(move || cache.merge("auditor", clear)).await;
        }
        let mut groups: Vec<Vec<String>> = vec![Vec::new(); workers];
        for (i, d) in devices.into_iter().enumerate() {
            groups[i % workers].push(d);
        }
        let mut handles = Vec::new();
        for group in groups {
            let (me, stop) = (self.clone(), stop.clone());
            let nested = workers > 1;
            handles.push(tokio::task::spawn_blocking(move || {
                me.audit_devices(mode, &group, nested, &stop)
            }));
        }
        let mut total = AuditStats::default();
        for h in handles {
            match h.await {
                Ok(s) => total.add(&s),
                Err(e) => {
                    tracing::error!(error = %e, "auditor worker failed");
                    total.errors += 1;
                }
            }
        }
        let elapsed = begin.elapsed().as_secs_f64();
        let secs = elapsed.max(1e-6);
        tracing::info!(
            mode = label,
            elapsed_s = elapsed,
            files = total.files,
            bytes = total.bytes,
            quarantined = total.quarantined,
            errors = total.errors,
            files_per_s = total.files as f64 / secs,
            bytes_per_s = total.bytes as f64 / secs,
            "object audit pass {}",
            if stop.is_stopped() {
                "stopped"
            } else {
                "completed"
            }
        );
        if !stop.is_stopped() {
            metrics().pass_seconds.with(&[label]).set(elapsed);
            if let Some(cache) = self.recon() {
                let value = json!({
                    format!("object_auditor_last_pass_{label}"): {
                        "files": total.files,
                        "bytes": total.bytes,
                        "quarantined": total.quarantined,
                        "errors": total.errors,
                        "pass_time": elapsed,
                        "completed": unix_now(),
                    }
                });
                let res = tokio::task::spawn_blocking(move || cache.merge("auditor", value)).await;
                if !matches!(res, Ok(Ok(()))) {
                    tracing::warn!("cannot write the auditor's recon cache");
                }
            }
        }
        total
    }

    /// Audit `devices` one after the other (blocking; one worker).
    pub fn audit_devices(
        &self,
        mode: AuditMode,
        devices: &[String],
        nested: bool,
        stop: &Stop,
    ) -> AuditStats {
        let s = &self.settings;
        let fps = match mode {
            AuditMode::All => s.files_per_second,
            AuditMode::ZeroByteFiles => s.zero_byte_files_per_second,
        };
        let mut w = Worker {
            mode,
            stop,
            files_limiter: RateLimiter::new(fps),
            bytes_limiter: RateLimiter::new(s.bytes_per_second),
            window: AuditStats::default(),
            window_start: unix_now(),
            window_audit_time: Duration::ZERO,
            last_report: Instant::now(),
            total: AuditStats::default(),
            device_key: nested.then(|| {
                let mut d = devices.to_vec();
                d.sort();
                d.join("")
            }),
        };
        'devices: for dev in devices {
            for policy in self.policies_on(dev) {
                let parts = match self.mgr.list_partitions(dev, policy) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(device = %dev, policy, error = %e, "cannot list partitions");
                        w.window.errors += 1;
                        continue;
                    }
                };
                for part in parts {
                    if !self.audit_partition(&mut w, dev, policy, part) {
                        break 'devices;
                    }
                }
            }
        }
        self.report(&mut w);
        w.total
    }

    /// The policies with an `objects[-N]` dir on `dev` (filtered by the configuration).
    fn policies_on(&self, dev: &str) -> Vec<u32> {
        let root = self.settings.devices.join(dev);
        let mut out: Vec<u32> = list_names(&root)
            .unwrap_or_default()
            .iter()
            .filter_map(|n| parse_policy_dir_name("objects", n))
            .filter(|p| {
                let ok = self.settings.policies.is_empty() || self.settings.policies.contains(p);
                if !ok {
                    tracing::warn!(device = %dev, policy = p, "objects directory of an unknown policy skipped");
                }
                ok
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Audit every hash dir of one partition; `false` once stopped.
    fn audit_partition(&self, w: &mut Worker<'_>, dev: &str, policy: u32, part: u32) -> bool {
        let part_dir =
            PolicyPaths::new(self.settings.devices.join(dev), policy).partition_dir(part);
        let mut suffixes: Vec<String> = match list_names(&part_dir) {
            Ok(n) => n.into_iter().filter(|s| is_valid_suffix(s)).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
            Err(e) => {
                tracing::error!(dir = %part_dir.display(), error = %e, "cannot list partition");
                w.window.errors += 1;
                return true;
            }
        };
        suffixes.sort();
        for suffix in suffixes {
            let sdir = part_dir.join(&suffix);
            let mut hashes: Vec<String> = match list_names(&sdir) {
                Ok(n) => n.into_iter().filter(|h| is_valid_hash(h)).collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => continue,
                Err(e) => {
                    tracing::error!(dir = %sdir.display(), error = %e, "cannot list suffix");
                    w.window.errors += 1;
                    continue;
                }
            };
            hashes.sort();
            for hash in hashes {
                if w.stop.is_stopped() {
                    return false;
                }
                let started = Instant::now();
                let outcome = self.audit_object(w, dev, policy, part, &hash);
                w.window_audit_time += started.elapsed();
                let label = w.mode.label();
                let m = metrics();
                match &outcome {
                    Outcome::Passed => {}
                    Outcome::Stopped => return false,
                    Outcome::Quarantined(reason) => {
                        tracing::error!(
                            device = %dev, policy, part, hash = %hash, reason = %reason,
                            "object failed audit and was quarantined"
                        );
                        w.window.quarantined += 1;
                        m.quarantines.with(&[label]).inc();
                    }
                    Outcome::Error(e) => {
                        tracing::error!(device = %dev, policy, part, hash = %hash, error = %e, "cannot audit object");
                        w.window.errors += 1;
                        m.errors.with(&[label]).inc();
                    }
                }
                w.window.files += 1;
                m.files.with(&[label]).inc();
                if w.last_report.elapsed() >= self.settings.log_time {
                    self.report(w);
                }
                let wait = w.files_limiter.delay(1.0);
                if !wait.is_zero() && !sleep_blocking(w.stop, wait) {
                    return false;
                }
            }
        }
        true
    }

    /// Log and publish the window's counters, then start a new window.
    fn report(&self, w: &mut Worker<'_>) {
        let label = w.mode.label();
        let now = unix_now();
        let span = (now - w.window_start).max(1e-6);
        tracing::info!(
            mode = label,
            devices = w.device_key.as_deref().unwrap_or("all"),
            passes = w.window.files,
            quarantined = w.window.quarantined,
            errors = w.window.errors,
            files_per_s = w.window.files as f64 / span,
            bytes_per_s = w.window.bytes as f64 / span,
            audit_time_s = w.window_audit_time.as_secs_f64(),
            "object audit progress"
        );
        if let Some(cache) = self.recon() {
            let entry = json!({
                "errors": w.window.errors,
                "passes": w.window.files,
                "quarantined": w.window.quarantined,
                "bytes_processed": w.window.bytes,
                "start_time": w.window_start,
                "audit_time": w.window_audit_time.as_secs_f64(),
            });
            let entry = match &w.device_key {
                Some(k) => {
                    let mut m = Map::new();
                    m.insert(k.clone(), entry);
                    Value::Object(m)
                }
                None => entry,
            };
            let value = json!({ format!("object_auditor_stats_{label}"): entry });
            if let Err(e) = cache.merge("auditor", value) {
                tracing::warn!(error = %e, "cannot write the auditor's recon cache");
            }
        }
        w.total.add(&w.window);
        w.window = AuditStats::default();
        w.window_start = now;
        w.window_audit_time = Duration::ZERO;
        w.last_report = Instant::now();
    }

    fn audit_object(
        &self,
        w: &mut Worker<'_>,
        dev: &str,
        policy: u32,
        part: u32,
        hash: &str,
    ) -> Outcome {
        let df = match self.mgr.diskfile_by_hash(dev, policy, part, hash) {
            Ok(df) => df,
            Err(e) => return Outcome::Error(e.to_string()),
        };
        let state = match df.open() {
            Ok(s) => s,
            Err(DiskError::Quarantined { reason, .. }) => return Outcome::Quarantined(reason),
            Err(DiskError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Outcome::Passed,
            Err(e) => return Outcome::Error(e.to_string()),
        };
        match state {
            DiskFileState::Missing if df.hash_dir().exists() => Outcome::Passed,
            DiskFileState::Missing => {
                // Cleanup emptied and removed the dir (e.g. reclaimed a tombstone): the
                // suffix hash must be recomputed.
                let paths = df.paths();
                if let Err(e) = crate::hashes::invalidate_hash(
                    &paths.partition_dir(part),
                    suffix_of(hash),
                    false,
                    self.settings.lock_timeout,
                ) {
                    return Outcome::Error(format!("cannot invalidate suffix: {e}"));
                }
                Outcome::Passed
            }
            DiskFileState::Deleted { .. } | DiskFileState::Expired(_) => Outcome::Passed,
            DiskFileState::Exists(obj) => self.verify(w, &df, obj),
        }
    }

    /// Check an open object's ETag against its body (ALL) and quarantine on mismatch.
    fn verify(&self, w: &mut Worker<'_>, df: &DiskFile, obj: OpenObject) -> Outcome {
        let info = obj.info.clone();
        if info.etag.is_empty() {
            return self.checked_quarantine(df, &info.data_file, None, "metadata lacks ETag");
        }
        if w.mode == AuditMode::ZeroByteFiles {
            return Outcome::Passed;
        }
        // Identify the file we read, to re-check it before quarantining.
        let ident = fs::metadata(&info.data_file)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if info.content_length == 0 {
            if info.etag != EMPTY_ETAG {
                return self.checked_quarantine(
                    df,
                    &info.data_file,
                    ident,
                    &format!("MD5 {EMPTY_ETAG} does not match ETag {}", info.etag),
                );
            }
            return Outcome::Passed;
        }
        let mut reader = match obj.range_reader(0, info.content_length) {
            Ok(r) => r,
            Err(e) => return Outcome::Error(e.to_string()),
        };
        let mut md5 = Md5::new();
        let mut buf = vec![0u8; self.settings.disk_chunk_size.max(4096)];
        loop {
            if w.stop.is_stopped() {
                return Outcome::Stopped;
            }
            let n = match reader.read_chunk(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                // The reader quarantines short files and EIO itself (if still current).
                Err(DiskError::Quarantined { reason, .. }) => return Outcome::Quarantined(reason),
                Err(DiskError::Corrupt(why)) if why.contains("already replaced") => {
                    return Outcome::Passed
                }
                Err(e) => return Outcome::Error(e.to_string()),
            };
            md5.update(&buf[..n]);
            w.window.bytes += n as u64;
            metrics().bytes.with(&[w.mode.label()]).inc_by(n as u64);
            let wait = w.bytes_limiter.delay(n as f64);
            if !wait.is_zero() && !sleep_blocking(w.stop, wait) {
                return Outcome::Stopped;
            }
        }
        let got = to_hex(&md5.finalize());
        if got != info.etag {
            return self.checked_quarantine(
                df,
                &info.data_file,
                ident,
                &format!("MD5 {got} does not match ETag {}", info.etag),
            );
        }
        Outcome::Passed
    }

    /// Quarantine `df` for `reason`, unless the `.data` we judged is no longer the
    /// current state of the object (replaced by a newer write, deleted): cleanup runs
    /// first, then the current `.data` must have the same name and (when known) the same
    /// inode as the one read.
    fn checked_quarantine(
        &self,
        df: &DiskFile,
        data_file: &Path,
        ident: Option<(u64, u64)>,
        reason: &str,
    ) -> Outcome {
        let info = match df.ondisk_info(Timestamp::now()) {
            Ok(i) => i,
            Err(DiskError::Quarantined { reason, .. }) => return Outcome::Quarantined(reason),
            Err(e) => return Outcome::Error(e.to_string()),
        };
        let read_name = data_file.file_name().and_then(|n| n.to_str());
        let same_name = info.data.as_ref().map(|d| d.name.as_str()) == read_name;
        let same_file = match ident {
            None => true,
            Some(id) => fs::metadata(data_file)
                .map(|m| (m.dev(), m.ino()) == id)
                .unwrap_or(false),
        };
        if !(same_name && same_file) {
            tracing::info!(
                file = %data_file.display(),
                reason,
                "object changed while being audited; not quarantined"
            );
            return Outcome::Passed;
        }
        match df.quarantine(reason) {
            Ok(_) => Outcome::Quarantined(reason.to_string()),
            Err(e) => Outcome::Error(format!("cannot quarantine: {e}")),
        }
    }
}

/// `cairn object-auditor --config object-server.toml [--once] [--zero-byte]`: load the
/// role file and its cluster file and audit every `interval` (or once) until
/// SIGTERM/SIGINT. `All` also runs the ZBF pass beside the ALL pass when
/// `zero_byte_files_per_second` > 0 (Swift's behaviour); `ZeroByteFiles` runs only the
/// ZBF pass. Call inside a tokio runtime.
pub async fn run_object_auditor(
    config: &Path,
    once: bool,
    mode: AuditMode,
) -> Result<(), RunError> {
    let file: ObjectServerFile = load_role_config(config)?;
    let cluster = file.server.load_cluster()?;
    let policies = cluster.policies.iter().map(|p| p.index).collect();
    let settings = AuditorSettings::from_file(&file, policies);
    let interval = settings.interval;
    let with_zbf = mode == AuditMode::All && settings.zero_byte_files_per_second > 0.0;
    let auditor = ObjectAuditor::new(settings, cluster.hash_path_secret());
    let stop = Stop::on_signals()?;
    let pass = |m: AuditMode| {
        let auditor = auditor.clone();
        move |stop: Stop| {
            let auditor = auditor.clone();
            async move {
                auditor.run_once(m, &stop).await;
            }
        }
    };
    match mode {
        AuditMode::ZeroByteFiles => {
            run_daemon_with(
                "object-auditor-zbf",
                interval,
                once,
                stop,
                pass(AuditMode::ZeroByteFiles),
            )
            .await
        }
        AuditMode::All => {
            let all = run_daemon_with(
                "object-auditor",
                interval,
                once,
                stop.clone(),
                pass(AuditMode::All),
            );
            if with_zbf {
                let zbf = run_daemon_with(
                    "object-auditor-zbf",
                    interval,
                    once,
                    stop,
                    pass(AuditMode::ZeroByteFiles),
                );
                tokio::join!(all, zbf);
            } else {
                all.await;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Metadata;

    fn setup() -> (tempfile::TempDir, ObjectAuditor) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sda")).unwrap();
        let mut s = AuditorSettings::new(dir.path());
        s.files_per_second = 0.0;
        s.bytes_per_second = 0.0;
        s.zero_byte_files_per_second = 0.0;
        (
            dir,
            ObjectAuditor::new(s, HashPathSecret::new("", "changeme")),
        )
    }

    fn put(df: &DiskFile, ts: Timestamp, body: &[u8]) -> PathBuf {
        let mut w = df.create(Some(body.len() as u64)).unwrap();
        w.write(body).unwrap();
        let mut md = Metadata::new();
        md.set("Content-Type", "application/octet-stream");
        w.commit(ts, md).unwrap()
    }

    #[test]
    fn replaced_object_is_not_quarantined() {
        let (_dir, a) = setup();
        let df = a.mgr.diskfile("sda", 0, 1, "AUTH_a", "c", "o").unwrap();
        let t1 = Timestamp::from_secs(Timestamp::now().secs() - 100);
        let old = put(&df, t1, b"old body");
        let ident = fs::metadata(&old).map(|m| (m.dev(), m.ino())).ok();
        // A newer PUT lands while the old version is being judged.
        let new = put(&df, Timestamp::from_secs(t1.secs() + 1), b"new body");
        assert_eq!(
            a.checked_quarantine(&df, &old, ident, "MD5 mismatch"),
            Outcome::Passed
        );
        assert!(new.exists());
        // A deleted object likewise.
        df.write_tombstone(Timestamp::from_secs(t1.secs() + 2), Metadata::new())
            .unwrap();
        let ident = fs::metadata(&new).map(|m| (m.dev(), m.ino())).ok();
        assert_eq!(
            a.checked_quarantine(&df, &new, ident, "MD5 mismatch"),
            Outcome::Passed
        );
        assert!(df.hash_dir().exists());
        // The current file is quarantined.
        let cur = put(&df, Timestamp::from_secs(t1.secs() + 3), b"cur");
        let ident = fs::metadata(&cur).map(|m| (m.dev(), m.ino())).ok();
        assert!(matches!(
            a.checked_quarantine(&df, &cur, ident, "MD5 mismatch"),
            Outcome::Quarantined(_)
        ));
        assert!(!df.hash_dir().exists());
    }

    #[test]
    fn section_defaults_validate() {
        let s = AuditorSection::default();
        assert!(s.validate().is_ok());
        assert_eq!(s.bytes_per_second, 10_485_760.0);
        let bad = AuditorSection {
            files_per_second: -1.0,
            ..AuditorSection::default()
        };
        assert!(bad.validate().is_err());
        let bad = AuditorSection {
            concurrency: 0,
            ..AuditorSection::default()
        };
        assert!(bad.validate().is_err());
    }
}
