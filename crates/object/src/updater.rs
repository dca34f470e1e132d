//! The object-updater (`PROTOCOLS.md`, "Async pendings" → "Object updater"): replays the
//! container updates that object writes could not deliver.
//!
//! Every pass walks each local device (every directory under `devices`; unavailable ones
//! are skipped with a warning), each `async_pending[-N]` directory (the policy comes from
//! the suffix), its suffix directories in random order and, within a suffix, the files
//! sorted by name **descending**. Of consecutive files of one object `HASH` only the first
//! (newest) is replayed; the older ones are unlinked at once, since a newer update carries
//! the whole row. For each replayed file the container partition and primaries come from
//! `container.ring` (expirer-queue entries name the `.expiring_objects` queue container, so
//! they are placed the same way); `op` goes to every primary not yet in `successes`, with
//! the saved headers unchanged (the saved `X-Timestamp` lets the container server's merge
//! rule keep a newer row), `User-Agent: object-updater PID` and, unless saved,
//! `X-Backend-Storage-Policy-Index` of the directory. All 2xx → the file is unlinked (and
//! its suffix directory removed when empty); otherwise the new successes are written back
//! atomically and the file waits for the next pass. The updater retries forever.
//! Undecodable files are quarantined to `DEV/quarantined/objects[-N]/`.
//!
//! Limits: `objects_per_second` (files started per second, per device sweep),
//! `concurrency` (files in flight), `conn_timeout`/`node_timeout` per container request.
//!
//! Reporting: a log line per device sweep and per pass (successes, failures, quarantines,
//! unlinks, errors), progress every `report_interval`; recon `object.recon` sections
//! `updater` (`object_updater_sweep` seconds, `object_updater_last` unix time,
//! `object_updater_stats`) and `async_pending` (files left after the pass); Prometheus
//! counters `cairn_object_updater_*_total` and gauges in the process registry.
//!
//! Not implemented: container sharding redirects (`X-Backend-Accept-Redirect`, Swift's
//! `container_path`/`redirect_history`), `updater_workers` (devices are swept one after
//! the other, `concurrency` files at a time within a device).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cairn_common::daemon::{run_daemon, Stop};
use cairn_common::http::{self as chttp, authority, BackendClient, Timeouts};
use cairn_common::metrics::{self, Counter, Gauge};
use cairn_common::recon::ReconCache;
use cairn_common::server_config::load_role_config;
use cairn_common::HashPathSecret;
use cairn_ring::{Ring, RingWatcher};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rand::seq::SliceRandom;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::async_pending::{self, AsyncOp, AsyncPending};
use crate::config::{ObjectServerFile, RunError};
use crate::error::DiskError;
use crate::layout::PolicyPaths;

/// The `[object-updater]` table of `object-server.toml`.
///
/// ```toml
/// [object-updater]
/// interval = 300            # seconds between passes
/// concurrency = 8           # updates in flight per device sweep
/// objects_per_second = 50   # files started per second (0: unlimited)
/// node_timeout = 10.0       # seconds for a container server's answer
/// conn_timeout = 0.5        # seconds to connect
/// report_interval = 300     # seconds between progress lines
/// # slowdown = 0.01         # deprecated: objects_per_second = 1 / (slowdown + 0.01)
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpdaterSection {
    pub interval: f64,
    pub concurrency: usize,
    /// `None`: from `slowdown` if set, else 50.
    pub objects_per_second: Option<f64>,
    pub node_timeout: f64,
    pub conn_timeout: f64,
    /// Deprecated (Swift): seconds to sleep per object; only used when
    /// `objects_per_second` is not set.
    pub slowdown: Option<f64>,
    pub report_interval: f64,
}

impl Default for UpdaterSection {
    fn default() -> Self {
        UpdaterSection {
            interval: 300.0,
            concurrency: 8,
            objects_per_second: None,
            node_timeout: 10.0,
            conn_timeout: 0.5,
            slowdown: None,
            report_interval: 300.0,
        }
    }
}

impl UpdaterSection {
    /// The effective rate (Swift: `1 / (slowdown + 0.01)` when only `slowdown` is set).
    pub fn objects_per_second(&self) -> f64 {
        match (self.objects_per_second, self.slowdown) {
            (Some(v), _) => v,
            (None, Some(s)) => 1.0 / (s + 0.01),
            (None, None) => 50.0,
        }
    }

    /// Checks serde cannot express; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        for (key, v, min) in [
            ("interval", self.interval, 0.0),
            ("node_timeout", self.node_timeout, f64::MIN_POSITIVE),
            ("conn_timeout", self.conn_timeout, f64::MIN_POSITIVE),
            ("report_interval", self.report_interval, 0.0),
            ("slowdown", self.slowdown.unwrap_or(0.0), 0.0),
            ("objects_per_second", self.objects_per_second(), 0.0),
        ] {
            if !(v.is_finite() && v >= min && v < 1e9) {
                return Err(format!(
                    "object-updater.{key} must be a non-negative number, not {v}"
                ));
            }
        }
        if self.concurrency == 0 {
            return Err("object-updater.concurrency must be at least 1".to_string());
        }
        Ok(())
    }
}

/// A "no more than `rate` units per second" pacer (Swift's rate limiters): each call
/// reserves `incr` units and says how long to wait so that the running total stays
/// within the rate. Idle time is not saved up (no bursts after a pause). A rate of 0 (or
/// not finite) means unlimited. Time is passed in, so it is testable without sleeping.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    secs_per_unit: f64,
    next: Option<Instant>,
}

impl RateLimiter {
    pub fn new(rate: f64) -> Self {
        RateLimiter {
            secs_per_unit: if rate.is_finite() && rate > 0.0 {
                1.0 / rate
            } else {
                0.0
            },
            next: None,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.secs_per_unit == 0.0
    }

    /// Reserve `incr` units at `now`; the returned delay is how long to wait before going
    /// on.
    pub fn delay_at(&mut self, now: Instant, incr: f64) -> Duration {
        if self.is_unlimited() {
            return Duration::ZERO;
        }
        let base = match self.next {
            Some(n) if n > now => n,
            _ => now,
        };
        let cost = Duration::try_from_secs_f64(incr.max(0.0) * self.secs_per_unit)
            .unwrap_or(Duration::from_secs(3600));
        let next = base + cost;
        self.next = Some(next);
        next - now
    }

    /// [`RateLimiter::delay_at`] now.
    pub fn delay(&mut self, incr: f64) -> Duration {
        self.delay_at(Instant::now(), incr)
    }
}

/// Settings of the object-updater (Swift's defaults in [`UpdaterSettings::new`]).
#[derive(Debug, Clone)]
pub struct UpdaterSettings {
    pub devices: PathBuf,
    pub mount_check: bool,
    pub interval: Duration,
    /// Updates in flight per device sweep (8).
    pub concurrency: usize,
    /// Files started per second (50; 0 = unlimited).
    pub objects_per_second: f64,
    /// Connect/node timeouts of container requests (0.5 s / 10 s).
    pub timeouts: Timeouts,
    /// Seconds between progress log lines (300).
    pub report_interval: Duration,
    /// Where `object.recon` lives; `None` skips recon.
    pub recon_cache_path: Option<PathBuf>,
    /// Configured policy indexes; `async_pending-N` dirs of other policies are skipped
    /// (with a warning). Empty accepts every policy.
    pub policies: Vec<u32>,
}

impl UpdaterSettings {
    pub fn new(devices: impl Into<PathBuf>) -> Self {
        UpdaterSettings {
            devices: devices.into(),
            mount_check: false,
            interval: Duration::from_secs(300),
            concurrency: 8,
            objects_per_second: 50.0,
            timeouts: Timeouts {
                conn: Duration::from_millis(500),
                node: Duration::from_secs(10),
            },
            report_interval: Duration::from_secs(300),
            recon_cache_path: None,
            policies: Vec::new(),
        }
    }

    /// The settings `object-server.toml` describes (`policies` from the cluster file).
    pub fn from_file(file: &ObjectServerFile, policies: Vec<u32>) -> Self {
        let u = &file.updater;
        let secs = |v: f64| Duration::try_from_secs_f64(v).unwrap_or(Duration::from_secs(1));
        UpdaterSettings {
            devices: file.server.devices.clone(),
            mount_check: file.server.mount_check,
            interval: secs(u.interval),
            concurrency: u.concurrency.max(1),
            objects_per_second: u.objects_per_second(),
            timeouts: Timeouts {
                conn: secs(u.conn_timeout),
                node: secs(u.node_timeout),
            },
            report_interval: secs(u.report_interval),
            recon_cache_path: Some(file.server.recon_cache_path.clone()),
            policies,
        }
    }
}

/// Counters of one pass (or one device sweep).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UpdaterStats {
    /// Updates accepted by every container primary (their files were unlinked).
    pub successes: u64,
    /// Updates some primary did not accept (kept for the next pass).
    pub failures: u64,
    /// Undecodable files moved to `quarantined/objects[-N]/`.
    pub quarantines: u64,
    /// Files removed: delivered ones and superseded older ones.
    pub unlinks: u64,
    /// Local errors (unreadable directories or files, failed rewrites).
    pub errors: u64,
    /// Async pendings left on the swept devices after the pass.
    pub remaining: u64,
}

impl std::fmt::Display for UpdaterStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} successes, {} failures, {} quarantines, {} unlinks, {} errors",
            self.successes, self.failures, self.quarantines, self.unlinks, self.errors
        )
    }
}

#[derive(Debug, Default)]
struct Counters {
    successes: AtomicU64,
    failures: AtomicU64,
    quarantines: AtomicU64,
    unlinks: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> UpdaterStats {
        UpdaterStats {
            successes: self.successes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            quarantines: self.quarantines.load(Ordering::Relaxed),
            unlinks: self.unlinks.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            remaining: 0,
        }
    }

    fn add(&self, which: &AtomicU64, metric: &Counter) {
        which.fetch_add(1, Ordering::Relaxed);
        metric.inc();
    }
}

struct Metrics {
    successes: Arc<Counter>,
    failures: Arc<Counter>,
    quarantines: Arc<Counter>,
    unlinks: Arc<Counter>,
    errors: Arc<Counter>,
    sweep_seconds: Arc<Gauge>,
    async_pending: Arc<Gauge>,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let r = metrics::global();
        Metrics {
            successes: r.counter(
                "cairn_object_updater_successes_total",
                "Async pendings delivered to every container primary.",
            ),
            failures: r.counter(
                "cairn_object_updater_failures_total",
                "Async pending replays that some container primary did not accept.",
            ),
            quarantines: r.counter(
                "cairn_object_updater_quarantines_total",
                "Undecodable async pendings quarantined.",
            ),
            unlinks: r.counter(
                "cairn_object_updater_unlinks_total",
                "Async pendings removed (delivered or superseded).",
            ),
            errors: r.counter(
                "cairn_object_updater_errors_total",
                "Local errors of the object-updater.",
            ),
            sweep_seconds: r.gauge(
                "cairn_object_updater_sweep_seconds",
                "Duration of the last object-updater pass.",
            ),
            async_pending: r.gauge(
                "cairn_object_updater_async_pending",
                "Async pendings left after the last object-updater pass.",
            ),
        }
    })
}

#[derive(Debug)]
enum RingSource {
    Fixed(Arc<Ring>),
    Watched(Arc<RingWatcher>),
}

struct Inner {
    settings: UpdaterSettings,
    ring: RingSource,
    secret: HashPathSecret,
    client: BackendClient,
}

/// The object-updater. Cheap to clone.
#[derive(Clone)]
pub struct ObjectUpdater {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ObjectUpdater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectUpdater")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// Run blocking disk work on the blocking pool.
async fn blocking<T, F>(f: F) -> Result<T, DiskError>
where
    F: FnOnce() -> Result<T, DiskError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DiskError::Io(io::Error::other(e)))?
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A container primary, owned (so that no ring borrow crosses an await).
#[derive(Debug, Clone)]
struct Target {
    id: u32,
    authority: String,
    device: String,
}

impl ObjectUpdater {
    /// An updater with a fixed container ring (tests, embedding).
    pub fn new(
        settings: UpdaterSettings,
        container_ring: Arc<Ring>,
        secret: HashPathSecret,
    ) -> Self {
        Self::build(settings, RingSource::Fixed(container_ring), secret)
    }

    /// An updater that follows `container.ring` as it changes.
    pub fn with_watcher(
        settings: UpdaterSettings,
        container_ring: Arc<RingWatcher>,
        secret: HashPathSecret,
    ) -> Self {
        Self::build(settings, RingSource::Watched(container_ring), secret)
    }

    fn build(settings: UpdaterSettings, ring: RingSource, secret: HashPathSecret) -> Self {
        let client = BackendClient::new(settings.timeouts);
        ObjectUpdater {
            inner: Arc::new(Inner {
                settings,
                ring,
                secret,
                client,
            }),
        }
    }

    pub fn settings(&self) -> &UpdaterSettings {
        &self.inner.settings
    }

    fn ring(&self) -> Arc<Ring> {
        match &self.inner.ring {
            RingSource::Fixed(r) => r.clone(),
            RingSource::Watched(w) => {
                if let Err(e) = w.check_reload() {
                    tracing::warn!(ring = %w.path().display(), error = %e, "container ring reload failed");
                }
                w.current()
            }
        }
    }

    /// The device directories under `devices`, sorted.
    fn device_names(&self) -> Vec<String> {
        let devices = &self.inner.settings.devices;
        match fs::read_dir(devices) {
            Ok(rd) => {
                let mut out: Vec<String> = rd
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect();
                out.sort();
                out
            }
            Err(e) => {
                tracing::error!(devices = %devices.display(), error = %e, "cannot list devices");
                Vec::new()
            }
        }
    }

    fn device_available(&self, path: &Path) -> bool {
        if self.inner.settings.mount_check {
            cairn_common::fs::is_mount(path).unwrap_or(false)
        } else {
            path.is_dir()
        }
    }

    /// One pass over every local device. Returns early (with what was done) once `stop`
    /// is raised; files in flight are finished first.
    pub async fn run_once(&self, stop: &Stop) -> UpdaterStats {
        let begin = Instant::now();
        let counters = Arc::new(Counters::default());
        let mut remaining = 0u64;
        let devices = {
            let me = self.clone();
            tokio::task::spawn_blocking(move || me.device_names())
                .await
                .unwrap_or_default()
        };
        tracing::info!("begin object update sweep");
        for dev in devices {
            if stop.is_stopped() {
                break;
            }
            let path = self.inner.settings.devices.join(&dev);
            if !self.device_available(&path) {
                tracing::warn!(device = %path.display(), "skipping unavailable device");
                continue;
            }
            let dev_begin = Instant::now();
            let before = counters.snapshot();
            remaining += self.sweep_device(&path, &counters, stop).await;
            let after = counters.snapshot();
            let delta = UpdaterStats {
                successes: after.successes - before.successes,
                failures: after.failures - before.failures,
                quarantines: after.quarantines - before.quarantines,
                unlinks: after.unlinks - before.unlinks,
                errors: after.errors - before.errors,
                remaining: 0,
            };
            tracing::info!(
                device = %dev,
                elapsed_s = dev_begin.elapsed().as_secs_f64(),
                "object update sweep of device completed: {delta}"
            );
        }
        let mut stats = counters.snapshot();
        stats.remaining = remaining;
        let elapsed = begin.elapsed().as_secs_f64();
        let m = metrics();
        m.sweep_seconds.set(elapsed);
        tracing::info!(
            elapsed_s = elapsed,
            "object update sweep completed: {stats}"
        );
        if stop.is_stopped() {
            return stats;
        }
        m.async_pending.set(remaining as f64);
        if let Some(dir) = &self.inner.settings.recon_cache_path {
            let cache = ReconCache::new(dir, "object");
            let value = json!({
                "object_updater_sweep": elapsed,
                "object_updater_last": unix_now(),
                "object_updater_stats": {
                    "successes": stats.successes,
                    "failures": stats.failures,
                    "quarantines": stats.quarantines,
                    "unlinks": stats.unlinks,
                    "errors": stats.errors,
                },
            });
            if let Err(e) = cache.update_async("updater", value).await {
                tracing::warn!(error = %e, "cannot write recon cache");
            }
            if let Err(e) = cache.update_async("async_pending", json!(remaining)).await {
                tracing::warn!(error = %e, "cannot write recon cache");
            }
        }
        stats
    }

    /// Sweep one device; returns the number of async pendings left on it (counted after
    /// the sweep).
    async fn sweep_device(&self, dev: &Path, counters: &Arc<Counters>, stop: &Stop) -> u64 {
        let m = metrics();
        let settings = &self.inner.settings;
        let begin = Instant::now();
        let mut last_report = begin;
        let dev_buf = dev.to_path_buf();
        let policies = match blocking(move || async_pending::list_policies(&dev_buf)).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(device = %dev.display(), error = %e, "cannot list async pending dirs");
                counters.add(&counters.errors, &m.errors);
                return 0;
            }
        };
        let sem = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut limiter = RateLimiter::new(settings.objects_per_second);
        'policies: for policy in policies {
            if !settings.policies.is_empty() && !settings.policies.contains(&policy) {
                tracing::warn!(
                    device = %dev.display(),
                    policy,
                    "async_pending directory of an unknown storage policy skipped"
                );
                continue;
            }
            let paths = PolicyPaths::new(dev, policy);
            let p = paths.clone();
            let mut suffixes = match blocking(move || async_pending::list_suffixes(&p)).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(dir = %paths.async_dir().display(), error = %e, "cannot list async pendings");
                    counters.add(&counters.errors, &m.errors);
                    continue;
                }
            };
            suffixes.shuffle(&mut rand::thread_rng());
            for suffix in suffixes {
                if stop.is_stopped() {
                    break 'policies;
                }
                let todo = match self.list_and_prune(&paths, &suffix, counters).await {
                    Some(t) => t,
                    None => continue,
                };
                for path in todo {
                    if stop.is_stopped() {
                        break 'policies;
                    }
                    let wait = limiter.delay(1.0);
                    if !wait.is_zero() && !stop.sleep(wait).await {
                        break 'policies;
                    }
                    let Ok(permit) = sem.clone().acquire_owned().await else {
                        break 'policies;
                    };
                    let (me, paths, c) = (self.clone(), paths.clone(), counters.clone());
                    tasks.spawn(async move {
                        me.process(&paths, path, &c).await;
                        drop(permit);
                    });
                    while tasks.try_join_next().is_some() {}
                    if last_report.elapsed() >= settings.report_interval {
                        last_report = Instant::now();
                        tracing::info!(
                            device = %dev.display(),
                            elapsed_s = begin.elapsed().as_secs_f64(),
                            "object update sweep progress: {}",
                            counters.snapshot()
                        );
                    }
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        let dev_buf = dev.to_path_buf();
        blocking(move || Ok(count_pendings(&dev_buf)))
            .await
            .unwrap_or(0)
    }

    /// List one suffix dir (newest first), unlink superseded older files of each hash and
    /// return the files to replay.
    async fn list_and_prune(
        &self,
        paths: &PolicyPaths,
        suffix: &str,
        counters: &Arc<Counters>,
    ) -> Option<Vec<PathBuf>> {
        let (p, s, c) = (paths.clone(), suffix.to_string(), counters.clone());
        let res = blocking(move || {
            let m = metrics();
            let entries = async_pending::list_suffix(&p, &s)?;
            let mut todo = Vec::new();
            let mut last: Option<String> = None;
            for e in entries {
                if last.as_deref() == Some(e.hash.as_str()) {
                    match fs::remove_file(&e.path) {
                        Ok(()) => {
                            tracing::debug!(file = %e.path.display(), "superseded async pending unlinked");
                            c.add(&c.unlinks, &m.unlinks);
                        }
                        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                        Err(err) => {
                            tracing::error!(file = %e.path.display(), error = %err, "cannot unlink superseded async pending");
                            c.add(&c.errors, &m.errors);
                        }
                    }
                } else {
                    last = Some(e.hash.clone());
                    todo.push(e.path);
                }
            }
            Ok(todo)
        })
        .await;
        match res {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(dir = %paths.async_dir().join(suffix).display(), error = %e, "cannot list async pendings");
                counters.add(&counters.errors, &metrics().errors);
                None
            }
        }
    }

    /// Replay one file.
    async fn process(&self, paths: &PolicyPaths, path: PathBuf, counters: &Counters) {
        let m = metrics();
        let p = path.clone();
        let mut update = match blocking(move || async_pending::read_pending(&p)).await {
            Ok(u) => u,
            Err(DiskError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return,
            Err(DiskError::Corrupt(why)) => {
                tracing::error!(file = %path.display(), reason = %why, "undecodable async pending; quarantining");
                let (pp, p) = (paths.clone(), path.clone());
                match blocking(move || async_pending::quarantine_pending(&pp, &p)).await {
                    Ok(_) => counters.add(&counters.quarantines, &m.quarantines),
                    Err(e) => {
                        tracing::error!(file = %path.display(), error = %e, "cannot quarantine async pending");
                        counters.add(&counters.errors, &m.errors);
                    }
                }
                return;
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot read async pending");
                counters.add(&counters.errors, &m.errors);
                return;
            }
        };
        let (part, targets, all_primaries) = {
            let ring = self.ring();
            let part = ring.get_part(
                &self.inner.secret,
                &update.account,
                Some(&update.container),
                None,
            );
            let mut n = 0usize;
            let targets: Vec<Target> = ring
                .get_part_nodes(part)
                .inspect(|_| n += 1)
                .filter(|node| !update.successes.contains(&node.id))
                .map(|node| Target {
                    id: node.id,
                    authority: authority(&node.ip, node.port),
                    device: node.device.clone(),
                })
                .collect();
            (part, targets, n)
        };
        let obj_desc = format!("/{}/{}/{}", update.account, update.container, update.obj);
        if all_primaries == 0 {
            tracing::warn!(obj = %obj_desc, part, "container ring has no primaries for the partition");
            counters.add(&counters.failures, &m.failures);
            return;
        }
        let headers = self.headers(&update, paths.policy);
        let method = match update.op {
            AsyncOp::Put => Method::PUT,
            AsyncOp::Delete => Method::DELETE,
        };
        let mut sends = JoinSet::new();
        for t in targets {
            let client = self.inner.client.clone();
            let timeouts = self.inner.settings.timeouts;
            let headers = headers.clone();
            let method = method.clone();
            let path = chttp::backend_path(
                &t.device,
                part,
                &update.account,
                Some(&update.container),
                Some(&update.obj),
            );
            sends.spawn(async move {
                let ok = send(&client, timeouts, method, &t, &path, headers).await;
                (t.id, ok)
            });
        }
        let mut success = true;
        let mut new_successes = false;
        while let Some(res) = sends.join_next().await {
            match res {
                Ok((id, true)) => {
                    update.successes.push(id);
                    new_successes = true;
                }
                _ => success = false,
            }
        }
        if success {
            let p = path.clone();
            match blocking(move || async_pending::unlink_pending(&p)).await {
                Ok(()) => {
                    tracing::debug!(obj = %obj_desc, file = %path.display(), "update sent");
                    counters.add(&counters.successes, &m.successes);
                    counters.add(&counters.unlinks, &m.unlinks);
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "cannot unlink delivered async pending");
                    counters.add(&counters.errors, &m.errors);
                }
            }
            return;
        }
        tracing::debug!(obj = %obj_desc, file = %path.display(), "update failed");
        counters.add(&counters.failures, &m.failures);
        if new_successes {
            update.successes.sort_unstable();
            update.successes.dedup();
            let (pp, p) = (paths.clone(), path.clone());
            if let Err(e) = blocking(move || rewrite(&pp, &p, &update)).await {
                tracing::error!(file = %path.display(), error = %e, "cannot record successes in async pending");
                counters.add(&counters.errors, &m.errors);
            }
        }
    }

    /// The saved headers (unchanged, `X-Timestamp` included), `User-Agent`, and the
    /// policy index of the directory unless one was saved.
    fn headers(&self, update: &AsyncPending, policy: u32) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in &update.headers {
            match (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                (Ok(name), Ok(value)) => {
                    h.insert(name, value);
                }
                _ => tracing::warn!(header = %k, "unusable header in async pending skipped"),
            }
        }
        if let Ok(v) = HeaderValue::from_str(&format!("object-updater {}", std::process::id())) {
            h.insert(http::header::USER_AGENT, v);
        }
        let pol = HeaderName::from_static("x-backend-storage-policy-index");
        if !h.contains_key(&pol) {
            h.insert(pol, HeaderValue::from(policy));
        }
        h
    }
}

/// Rewrite a file with new successes, unless it vanished meanwhile (another updater
/// delivered it): the rewrite must not resurrect it.
fn rewrite(paths: &PolicyPaths, path: &Path, update: &AsyncPending) -> Result<(), DiskError> {
    match fs::symlink_metadata(path) {
        Ok(_) => async_pending::update_pending(paths, path, update),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn send(
    client: &BackendClient,
    timeouts: Timeouts,
    method: Method,
    t: &Target,
    path: &str,
    headers: HeaderMap,
) -> bool {
    match client
        .request_with_timeouts(
            method,
            &t.authority,
            path,
            headers,
            chttp::empty(),
            timeouts,
        )
        .await
    {
        Ok(resp) => {
            let status = resp.status;
            // Drain the (small) body so the connection can be reused.
            let _ = resp.bytes(64 * 1024).await;
            if !status.is_success() {
                tracing::debug!(
                    node = %t.authority,
                    device = %t.device,
                    status = status.as_u16(),
                    "container update refused"
                );
            }
            status.is_success()
        }
        Err(e) => {
            tracing::warn!(node = %t.authority, device = %t.device, error = %e, "container update failed");
            false
        }
    }
}

/// Files under `DEV/async_pending*/SUFFIX/`.
fn count_pendings(dev: &Path) -> u64 {
    let mut n = 0u64;
    let Ok(policies) = async_pending::list_policies(dev) else {
        return 0;
    };
    for policy in policies {
        let paths = PolicyPaths::new(dev, policy);
        for suffix in async_pending::list_suffixes(&paths).unwrap_or_default() {
            if let Ok(rd) = fs::read_dir(paths.async_dir().join(suffix)) {
                n += rd.flatten().count() as u64;
            }
        }
    }
    n
}

/// `cairn object-updater --config object-server.toml [--once]`: load the role file and
/// its cluster file, follow `RING_DIR/container.ring`, and sweep every `interval` (or
/// once) until SIGTERM/SIGINT. Call inside a tokio runtime.
pub async fn run_object_updater(config: &Path, once: bool) -> Result<(), RunError> {
    let file: ObjectServerFile = load_role_config(config)?;
    let cluster = file.server.load_cluster()?;
    let ring_path = cluster.ring_dir().join("container.ring");
    let watcher = RingWatcher::new(&ring_path).map_err(|e| {
        RunError::Invalid(format!(
            "cannot load the container ring {}: {e}",
            ring_path.display()
        ))
    })?;
    let policies = cluster.policies.iter().map(|p| p.index).collect();
    let settings = UpdaterSettings::from_file(&file, policies);
    let interval = settings.interval;
    let updater =
        ObjectUpdater::with_watcher(settings, Arc::new(watcher), cluster.hash_path_secret());
    run_daemon("object-updater", interval, once, |stop| {
        let updater = updater.clone();
        async move {
            updater.run_once(&stop).await;
        }
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_paces_without_sleeping() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut r = RateLimiter::new(10.0);
        assert_eq!(r.delay_at(t0, 1.0), ms(100));
        assert_eq!(r.delay_at(t0, 1.0), ms(200));
        // time passed: only the outstanding reservation is waited for
        assert_eq!(r.delay_at(t0 + ms(150), 1.0), ms(150));
        // idle time is not saved up
        assert_eq!(r.delay_at(t0 + ms(5000), 1.0), ms(100));
        // units: 5 units at 10/s = 0.5 s
        assert_eq!(r.delay_at(t0 + ms(10_000), 5.0), ms(500));
        let mut u = RateLimiter::new(0.0);
        assert!(u.is_unlimited());
        for _ in 0..1000 {
            assert_eq!(u.delay_at(t0, 1e9), Duration::ZERO);
        }
    }

    #[test]
    fn tables_parse_from_the_role_file() {
        use cairn_common::server_config::parse_role_config;
        let f: ObjectServerFile = parse_role_config(
            "[object-updater]\ninterval = 60\nconcurrency = 2\nobjects_per_second = 5\n\
             node_timeout = 3\nconn_timeout = 0.25\n\
             [object-auditor]\nfiles_per_second = 7\nbytes_per_second = 1000\n\
             zero_byte_files_per_second = 0\nlog_time = 60\n",
            "t",
            Path::new("/etc/cairn"),
        )
        .unwrap();
        let s = UpdaterSettings::from_file(&f, vec![0]);
        assert_eq!(s.interval, Duration::from_secs(60));
        assert_eq!(s.concurrency, 2);
        assert_eq!(s.objects_per_second, 5.0);
        assert_eq!(s.timeouts.node, Duration::from_secs(3));
        assert_eq!(s.timeouts.conn, Duration::from_millis(250));
        let a = crate::auditor::AuditorSettings::from_file(&f, vec![0]);
        assert_eq!(a.files_per_second, 7.0);
        assert_eq!(a.bytes_per_second, 1000.0);
        assert_eq!(a.zero_byte_files_per_second, 0.0);
        assert_eq!(a.interval, Duration::from_secs(30));
        let d: ObjectServerFile = parse_role_config("", "t", Path::new("/")).unwrap();
        assert_eq!(d.updater, UpdaterSection::default());
        for bad in [
            "[object-updater]\nbogus = 1\n",
            "[object-auditor]\nbogus = 1\n",
            "[object-updater]\nconcurrency = 0\n",
            "[object-auditor]\nbytes_per_second = -1\n",
        ] {
            assert!(
                parse_role_config::<ObjectServerFile>(bad, "t", Path::new("/")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn section_defaults_and_slowdown() {
        let s = UpdaterSection::default();
        assert_eq!(s.objects_per_second(), 50.0);
        assert!(s.validate().is_ok());
        let s = UpdaterSection {
            slowdown: Some(0.09),
            ..UpdaterSection::default()
        };
        assert!((s.objects_per_second() - 10.0).abs() < 1e-9);
        let s = UpdaterSection {
            slowdown: Some(0.09),
            objects_per_second: Some(3.0),
            ..UpdaterSection::default()
        };
        assert_eq!(s.objects_per_second(), 3.0);
        let bad = UpdaterSection {
            concurrency: 0,
            ..UpdaterSection::default()
        };
        assert!(bad.validate().is_err());
        let bad = UpdaterSection {
            node_timeout: 0.0,
            ..UpdaterSection::default()
        };
        assert!(bad.validate().is_err());
    }
}
