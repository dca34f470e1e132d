//! The disk layer's error type and its HTTP status hints (mapped in one place by the
//! object server).

use std::io;
use std::path::PathBuf;

/// Errors of the object disk layer.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The device is not mounted / not a directory, or its file system lacks xattrs (507).
    #[error("device unavailable: {0}")]
    DiskUnavailable(String),
    /// No space left (ENOSPC on write/xattr, or free space below `fallocate_reserve`) (507).
    #[error("no space left on device: {0}")]
    DiskFull(String),
    /// The object's metadata was unreadable or invalid, or its data did not match it: the
    /// hash directory has been moved to `quarantined/` (the object now reads as 404).
    #[error("quarantined to {to}: {reason}")]
    Quarantined { reason: String, to: PathBuf },
    /// The stored name hashes to this directory but differs from the requested one (403).
    #[error("hash collision: stored object is {stored}")]
    Collision { stored: String },
    /// Stored metadata (xattr, cache or async pending) is corrupt. The caller (or the layer
    /// itself, for object files) quarantines what it came from.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// A caller-supplied value is not acceptable (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A lock stayed busy (503).
    #[error("lock timeout: {0}")]
    LockTimeout(String),
    /// The object is not there.
    #[error("not found")]
    NotFound,
    /// Any other I/O failure (500).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl DiskError {
    /// The HTTP status the object server answers with for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            DiskError::DiskUnavailable(_) | DiskError::DiskFull(_) => 507,
            DiskError::Quarantined { .. } | DiskError::NotFound => 404,
            DiskError::Collision { .. } => 403,
            DiskError::BadRequest(_) => 400,
            DiskError::LockTimeout(_) => 503,
            DiskError::Corrupt(_) | DiskError::Io(_) => 500,
        }
    }

    /// Map an I/O error of a write path: ENOSPC/EDQUOT → `DiskFull`, EROFS → unavailable.
    pub fn from_write(e: io::Error, what: &str) -> DiskError {
        if cairn_common::fs::is_no_space(&e) {
            DiskError::DiskFull(format!("{what}: {e}"))
        } else if e.raw_os_error() == Some(libc::EROFS) {
            DiskError::DiskUnavailable(format!("{what}: {e}"))
        } else if e.kind() == io::ErrorKind::TimedOut {
            DiskError::LockTimeout(format!("{what}: {e}"))
        } else {
            DiskError::Io(e)
        }
    }
}

pub type Result<T, E = DiskError> = std::result::Result<T, E>;
