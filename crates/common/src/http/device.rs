//! Device checks (`PROTOCOLS.md`, 507 "device unavailable"): before touching a device a
//! storage server checks that `DEVICES/DEV` is a directory and, with `mount_check`, that
//! it is a mount point (a different `st_dev` than its parent), so that a failed disk whose
//! mount point is empty never fills the root file system.

use std::io;
use std::path::{Path, PathBuf};

use http::StatusCode;

use super::error::HttpError;

/// The device cannot be used: answer 507 Insufficient Storage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device {device} unavailable: {reason}")]
pub struct Unavailable {
    pub device: String,
    pub reason: String,
}

impl From<Unavailable> for HttpError {
    fn from(e: Unavailable) -> Self {
        // Swift answers a bare 507 with the device name in its body.
        HttpError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("{} is not mounted", e.device),
        )
    }
}

/// Check `devices_root/dev` and return its path. Blocking (it `stat`s): call it from
/// `spawn_blocking` or use [`check_device_async`].
pub fn check_device(
    devices_root: &Path,
    dev: &str,
    mount_check: bool,
) -> Result<PathBuf, Unavailable> {
    let fail = |reason: String| Unavailable {
        device: dev.to_string(),
        reason,
    };
    if dev.is_empty() || dev == "." || dev == ".." || dev.contains('/') || dev.contains('\0') {
        return Err(fail("invalid device name".into()));
    }
    let path = devices_root.join(dev);
    if mount_check {
        match crate::fs::is_mount(&path) {
            Ok(true) => Ok(path),
            Ok(false) => Err(fail("not a mount point".into())),
            Err(e) => Err(fail(e.to_string())),
        }
    } else {
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => Ok(path),
            Ok(_) => Err(fail("not a directory".into())),
            Err(e) => Err(fail(e.to_string())),
        }
    }
}

/// [`check_device`] on the blocking pool.
pub async fn check_device_async(
    devices_root: &Path,
    dev: &str,
    mount_check: bool,
) -> Result<PathBuf, Unavailable> {
    let (root, d) = (devices_root.to_path_buf(), dev.to_string());
    tokio::task::spawn_blocking(move || check_device(&root, &d, mount_check))
        .await
        .unwrap_or_else(|e| {
            Err(Unavailable {
                device: dev.to_string(),
                reason: io::Error::other(e).to_string(),
            })
        })
}

/// Refuse a write with 507 when the device at `dev_path` has less free space than
/// `reserve` (Swift's `check_free_space` of its DB servers, before PUT, POST and
/// REPLICATE). `statvfs` runs on the blocking pool; a device it cannot read is unusable,
/// so that is a 507 as well.
pub async fn check_free_space_async(
    dev_path: &Path,
    reserve: crate::fs::FallocateReserve,
) -> Result<(), HttpError> {
    let path = dev_path.to_path_buf();
    let short = tokio::task::spawn_blocking(move || reserve.shortfall(&path, 0))
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)));
    let device = dev_path
        .file_name()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    let reason = match short {
        Ok(None) => return Ok(()),
        Ok(Some(reason)) => reason,
        Err(e) => e.to_string(),
    };
    tracing::warn!(%device, %reason, "refusing a write below fallocate_reserve");
    Err(HttpError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        format!("There was not enough space to save the resource. Drive: {device}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn devices() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("sda")).unwrap();
        std::fs::write(root.path().join("file"), b"x").unwrap();
        assert_eq!(
            check_device(root.path(), "sda", false),
            Ok(root.path().join("sda"))
        );
        assert!(check_device(root.path(), "sdb", false).is_err());
        assert!(check_device(root.path(), "file", false).is_err());
        assert!(check_device(root.path(), "..", false).is_err());
        // A plain directory on the same file system is not a mount point.
        let e = check_device_async(root.path(), "sda", true)
            .await
            .unwrap_err();
        assert_eq!(HttpError::from(e).status, StatusCode::INSUFFICIENT_STORAGE);
    }

    #[tokio::test]
    async fn free_space() {
        use crate::fs::FallocateReserve;
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("sda");
        std::fs::create_dir(&dev).unwrap();
        assert!(check_free_space_async(&dev, FallocateReserve::NONE)
            .await
            .is_ok());
        let e = check_free_space_async(&dev, FallocateReserve::Percent(100.0))
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::INSUFFICIENT_STORAGE);
        assert!(e.message.contains("Drive: sda"), "{}", e.message);
    }
}
