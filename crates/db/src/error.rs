//! The broker error type, mapped to an HTTP status in one place ([`DbError::http_status`]).

use std::path::PathBuf;

/// Everything a broker operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The DB file does not exist (404).
    #[error("database not found: {0}")]
    NotFound(PathBuf),
    /// The DB exists but is deleted (404 with the backend timestamps).
    #[error("database is deleted")]
    Deleted,
    /// A state conflict (409), e.g. a different storage policy.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Bad client input (400), e.g. too much metadata; the message is Swift's.
    #[error("{0}")]
    BadInput(String),
    /// The DB was found corrupt and moved aside (404 to the client; replication heals).
    #[error("database quarantined to {0}")]
    Quarantined(PathBuf),
    /// Corrupt data found that could not be quarantined automatically (500).
    #[error("corrupt database: {0}")]
    Corrupt(String),
    /// Could not take the DB directory lock in time (503).
    #[error("timed out waiting for lock on {0}")]
    LockTimeout(PathBuf),
    /// Filesystem error (500).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// SQLite error (500).
    #[error("SQLite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl DbError {
    /// The HTTP status a server answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            DbError::NotFound(_) | DbError::Deleted | DbError::Quarantined(_) => 404,
            DbError::Conflict(_) => 409,
            DbError::BadInput(_) => 400,
            DbError::LockTimeout(_) => 503,
            DbError::Corrupt(_) | DbError::Io(_) | DbError::Sqlite(_) => 500,
        }
    }

    /// Whether this SQLite error means the file is damaged (quarantine candidate).
    pub(crate) fn is_corruption(&self) -> bool {
        match self {
            DbError::Corrupt(_) => true,
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, msg)) => {
                matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
                ) || msg.as_deref().is_some_and(|m| m.contains("no such table"))
            }
            _ => false,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = DbError> = std::result::Result<T, E>;
