//! Per-device bounds on blocking disk work, and device health (`DESIGN.md`, "Disk writes
//! are crash-safe": "a dedicated pool per device, so that one slow disk does not stall the
//! others").
//!
//! Every blocking operation of the object server that touches a device runs through
//! [`Device::run`]: it takes one of the device's `concurrency` permits (waiting at most
//! `wait_timeout`, then [`DeviceError::Busy`] → 503), runs the closure on tokio's blocking
//! pool with the permit held until the closure returns (even if the request is dropped
//! meanwhile), and classifies the result. A stuck disk therefore holds at most
//! `concurrency` blocking threads; requests for other devices never wait behind it.
//!
//! An I/O error that means the device itself is failing (EIO, ENODEV, ENXIO, EROFS,
//! EUCLEAN, ENOTCONN; see [`is_device_failure`]) marks the device failed for `error_backoff`:
//! requests for it get [`DeviceError::Failed`] (507) without touching the disk. One ERROR
//! is logged when the device enters the failed state and one INFO when an operation
//! succeeds on it again after the backoff (a failure after the backoff re-arms it with a
//! WARN). ENOSPC stays a per-request 507 (`DiskError::DiskFull`): a full device still
//! serves reads, and deletes make room.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::DiskError;

/// Beyond this many distinct device names, further names (bogus requests: real nodes have
/// far fewer devices) get an untracked [`Device`] instead of growing the map.
const MAX_TRACKED_DEVICES: usize = 4096;

/// Settings of the per-device pools (`[object-server] device_concurrency`,
/// `device_wait_timeout`, `device_error_backoff`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DevicePoolConfig {
    /// Blocking operations running at once per device (0: unlimited).
    pub concurrency: usize,
    /// How long an operation waits for a permit before the request gets 503.
    pub wait_timeout: Duration,
    /// How long a device that returned a device-class I/O error answers 507.
    pub error_backoff: Duration,
}

impl Default for DevicePoolConfig {
    fn default() -> Self {
        DevicePoolConfig {
            concurrency: 16,
            wait_timeout: Duration::from_secs(10),
            error_backoff: Duration::from_secs(60),
        }
    }
}

/// Why [`Device::run`] did not return the closure's value.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Every permit of the device stayed taken for `wait_timeout` (503).
    #[error("device {device} busy: no I/O slot within {waited:?}")]
    Busy { device: String, waited: Duration },
    /// The device is marked failed after an I/O error (507).
    #[error("device {device} failed: {reason}")]
    Failed { device: String, reason: String },
    /// The operation's own error (after classification).
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The blocking task panicked (500).
    #[error("blocking task failed: {0}")]
    Panicked(String),
}

/// Does `e` mean the device (not one object) is failing?
pub fn is_device_failure(e: &DiskError) -> bool {
    const ERRNOS: [i32; 6] = [
        libc::EIO,
        libc::ENODEV,
        libc::ENXIO,
        libc::EROFS,
        libc::EUCLEAN,
        libc::ENOTCONN,
    ];
    match e {
        DiskError::Io(io) => io.raw_os_error().is_some_and(|n| ERRNOS.contains(&n)),
        // `DiskError::from_write` maps EROFS to `DiskUnavailable` with the io::Error's text
        // (a missing / unmounted device is also `DiskUnavailable`, but it is checked on
        // every request anyway and must recover as soon as it is mounted).
        DiskError::DiskUnavailable(m) => m.contains(&format!("(os error {})", libc::EROFS)),
        _ => false,
    }
}

#[derive(Debug, Default)]
struct Health {
    /// Set while the device is (or was, until an operation succeeds) marked failed.
    failed: Option<Failure>,
}

#[derive(Debug, Clone)]
struct Failure {
    until: Instant,
    reason: String,
}

/// One device's permits and health. Obtain with [`DevicePools::device`].
#[derive(Debug)]
pub struct Device {
    name: String,
    sem: Option<Arc<Semaphore>>,
    cfg: DevicePoolConfig,
    health: Mutex<Health>,
    #[cfg(test)]
    fault: Mutex<Option<i32>>,
}

impl Device {
    fn new(name: &str, cfg: DevicePoolConfig) -> Self {
        Device {
            name: name.to_string(),
            sem: (cfg.concurrency > 0).then(|| Arc::new(Semaphore::new(cfg.concurrency))),
            cfg,
            health: Mutex::new(Health::default()),
            #[cfg(test)]
            fault: Mutex::new(None),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Permits free right now (`None`: unlimited).
    pub fn available_permits(&self) -> Option<usize> {
        self.sem.as_ref().map(|s| s.available_permits())
    }

    /// Is the device marked failed (and its backoff not yet over)?
    pub fn is_failed(&self) -> bool {
        self.failed_reason().is_some()
    }

    fn failed_reason(&self) -> Option<String> {
        let h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        h.failed
            .as_ref()
            .filter(|f| Instant::now() < f.until)
            .map(|f| f.reason.clone())
    }

    /// 507 while the device is marked failed.
    pub fn check(&self) -> Result<(), DeviceError> {
        match self.failed_reason() {
            Some(reason) => Err(DeviceError::Failed {
                device: self.name.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    async fn permit(
        &self,
        wait: Option<Duration>,
    ) -> Result<Option<OwnedSemaphorePermit>, DeviceError> {
        let Some(sem) = &self.sem else {
            return Ok(None);
        };
        if let Ok(p) = sem.clone().try_acquire_owned() {
            return Ok(Some(p));
        }
        let acquire = sem.clone().acquire_owned();
        let res = match wait {
            Some(w) => tokio::time::timeout(w, acquire).await.ok(),
            None => Some(acquire.await),
        };
        match res {
            Some(Ok(p)) => Ok(Some(p)),
            // The semaphore is never closed; a timeout is the only way here.
            _ => Err(DeviceError::Busy {
                device: self.name.clone(),
                waited: wait.unwrap_or_default(),
            }),
        }
    }

    /// Run `f` on the blocking pool under one of the device's permits (waiting at most
    /// `wait_timeout`), 507 at once while the device is marked failed.
    pub async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, DeviceError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, DiskError> + Send + 'static,
    {
        self.run_inner(Some(self.cfg.wait_timeout), f).await
    }

    /// [`Device::run`] that waits for a permit as long as it takes (background work that
    /// must not be dropped, such as saving an async pending).
    pub async fn run_unbounded<T, F>(self: &Arc<Self>, f: F) -> Result<T, DeviceError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, DiskError> + Send + 'static,
    {
        self.run_inner(None, f).await
    }

    /// Run cleanup work (dropping an unfinished writer) under a permit, however long it
    /// takes to get one, whether or not the device is marked failed; health is not
    /// recorded.
    pub async fn run_cleanup<F>(self: &Arc<Self>, f: F)
    where
        F: FnOnce() + Send + 'static,
    {
        let permit = self.permit(None).await.ok().flatten();
        let _ = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await;
    }

    async fn run_inner<T, F>(
        self: &Arc<Self>,
        wait: Option<Duration>,
        f: F,
    ) -> Result<T, DeviceError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, DiskError> + Send + 'static,
    {
        self.check()?;
        let permit = self.permit(wait).await?;
        #[cfg(test)]
        let fault = *self.fault.lock().unwrap_or_else(|p| p.into_inner());
        let res = tokio::task::spawn_blocking(move || {
            let _permit = permit; // released when the disk work is really over
            #[cfg(test)]
            if let Some(errno) = fault {
                return Err(DiskError::Io(std::io::Error::from_raw_os_error(errno)));
            }
            f()
        })
        .await;
        match res {
            Ok(Ok(v)) => {
                self.record_success();
                Ok(v)
            }
            Ok(Err(e)) => {
                if is_device_failure(&e) {
                    self.record_failure(&e);
                }
                Err(DeviceError::Disk(e))
            }
            Err(e) => Err(DeviceError::Panicked(e.to_string())),
        }
    }

    fn record_success(&self) {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        // Only after the backoff: an operation that started before the failure was
        // recorded does not count as a recovery.
        if h.failed.as_ref().is_some_and(|f| Instant::now() >= f.until) {
            h.failed = None;
            tracing::info!(device = %self.name, "device recovered: serving requests again");
        }
    }

    fn record_failure(&self, e: &DiskError) {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let until = Instant::now() + self.cfg.error_backoff;
        let reason = e.to_string();
        match &mut h.failed {
            None => {
                tracing::error!(
                    device = %self.name,
                    error = %e,
                    backoff_secs = self.cfg.error_backoff.as_secs_f64(),
                    "device I/O error: marking device failed (507 until the backoff passes)"
                );
                h.failed = Some(Failure { until, reason });
            }
            Some(f) if Instant::now() >= f.until => {
                tracing::warn!(device = %self.name, error = %e, "device still failing");
                *f = Failure { until, reason };
            }
            // Already failed (operations that were running when it was marked): quiet.
            Some(_) => {}
        }
    }

    /// Test hook: make every following operation fail with `errno` (`None`: stop).
    #[cfg(test)]
    pub(crate) fn inject_fault(&self, errno: Option<i32>) {
        *self.fault.lock().unwrap() = errno;
    }
}

/// The devices of one server, created on first use.
#[derive(Debug)]
pub struct DevicePools {
    cfg: DevicePoolConfig,
    devices: Mutex<HashMap<String, Arc<Device>>>,
}

impl DevicePools {
    pub fn new(cfg: DevicePoolConfig) -> Self {
        DevicePools {
            cfg,
            devices: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &DevicePoolConfig {
        &self.cfg
    }

    /// The device named `name` (the same `Arc` for the same name).
    pub fn device(&self, name: &str) -> Arc<Device> {
        let mut map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = map.get(name) {
            return d.clone();
        }
        let d = Arc::new(Device::new(name, self.cfg));
        if map.len() < MAX_TRACKED_DEVICES {
            map.insert(name.to_string(), d.clone());
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn cfg(n: usize) -> DevicePoolConfig {
        DevicePoolConfig {
            concurrency: n,
            wait_timeout: Duration::from_millis(100),
            error_backoff: Duration::from_millis(200),
        }
    }

    #[test]
    fn classification() {
        let io = |n| DiskError::Io(io::Error::from_raw_os_error(n));
        assert!(is_device_failure(&io(libc::EIO)));
        assert!(is_device_failure(&io(libc::EROFS)));
        assert!(is_device_failure(&io(libc::ENODEV)));
        assert!(!is_device_failure(&io(libc::ENOENT)));
        assert!(!is_device_failure(&io(libc::ENOSPC)));
        assert!(!is_device_failure(&DiskError::NotFound));
        let erofs = DiskError::from_write(io::Error::from_raw_os_error(libc::EROFS), "mkdir");
        assert!(is_device_failure(&erofs));
        assert!(!is_device_failure(&DiskError::DiskUnavailable(
            "/srv/node/sda is not available".into()
        )));
    }

    #[tokio::test]
    async fn busy_after_wait_and_other_devices_unaffected() {
        let pools = DevicePools::new(cfg(1));
        let sda = pools.device("sda");
        assert!(Arc::ptr_eq(&sda, &pools.device("sda")));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let stuck = {
            let sda = sda.clone();
            tokio::spawn(async move {
                sda.run(move || {
                    let _ = rx.recv();
                    Ok(())
                })
                .await
            })
        };
        while sda.available_permits() != Some(0) {
            tokio::task::yield_now().await;
        }
        let t = Instant::now();
        let r = sda.run(|| Ok(())).await;
        assert!(matches!(r, Err(DeviceError::Busy { .. })), "{r:?}");
        assert!(t.elapsed() >= Duration::from_millis(100));
        // Another device is not held up.
        pools.device("sdb").run(|| Ok(())).await.unwrap();
        tx.send(()).unwrap();
        stuck.await.unwrap().unwrap();
        sda.run(|| Ok(())).await.unwrap();
    }

    #[tokio::test]
    async fn failure_marks_then_recovers() {
        let pools = DevicePools::new(cfg(4));
        let d = pools.device("sda");
        let r = d
            .run(|| Err::<(), _>(DiskError::Io(io::Error::from_raw_os_error(libc::EIO))))
            .await;
        assert!(matches!(r, Err(DeviceError::Disk(_))));
        assert!(d.is_failed());
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r2 = {
            let ran = ran.clone();
            d.run(move || {
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
            .await
        };
        assert!(matches!(r2, Err(DeviceError::Failed { .. })));
        assert!(
            !ran.load(std::sync::atomic::Ordering::SeqCst),
            "must not touch the disk"
        );
        // ENOENT is not a device failure.
        let d2 = pools.device("sdb");
        let _ = d2
            .run(|| Err::<(), _>(DiskError::Io(io::Error::from_raw_os_error(libc::ENOENT))))
            .await;
        assert!(!d2.is_failed());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!d.is_failed());
        d.run(|| Ok(())).await.unwrap();
        assert!(d.health.lock().unwrap().failed.is_none());
    }
}
