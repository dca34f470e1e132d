//! The pending file (`HASH.db.pending`) with group commit.
//!
//! Writers append one record `:` + base64(version byte + postcard tuple) under the DB
//! directory lock (`HASH/.lock`, `flock`, shared with other processes) and then wait until
//! the record is on stable storage before they return. Durability is shared: the first
//! waiter becomes the *sync leader* and `fdatasync`s the file once for every record appended
//! so far, while the next writers keep appending; everyone whose record was covered by that
//! sync returns together (group commit). A merge of the pending file into SQLite (by a
//! reader's `commit_puts`, or a writer that finds the file above [`PENDING_CAP`]) makes all
//! records appended so far durable through the SQLite commit, so it also releases waiters.
//!
//! State is shared by every broker of the same DB file in this process (a registry keyed by
//! path), so concurrent requests really do share one fsync.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{DbError, Result};
use crate::util::{flock_timeout, fsync_dir, funlock};

/// Whether the open `file` is still the file at `path`.
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// Above this size (bytes) a writer merges the pending file into SQLite instead of
/// appending (Swift's `PENDING_CAP`).
pub const PENDING_CAP: u64 = 131_072;
/// Version byte of Cairn pending records.
pub const RECORD_VERSION: u8 = 1;
/// How long to wait for the directory lock (Swift's `pending_timeout` is 10 s).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Encode one record: `:` + base64(version + postcard(rec)).
pub fn encode_record<T: Serialize>(rec: &T) -> Result<Vec<u8>> {
    let mut raw = vec![RECORD_VERSION];
    let body = postcard::to_allocvec(rec)
        .map_err(|e| DbError::BadInput(format!("cannot encode pending record: {e}")))?;
    raw.extend_from_slice(&body);
    let mut out = Vec::with_capacity(raw.len() * 4 / 3 + 8);
    out.push(b':');
    out.extend_from_slice(STANDARD.encode(&raw).as_bytes());
    Ok(out)
}

/// Decode every record of a pending file's contents; bad records are logged and skipped.
pub fn decode_records<T: DeserializeOwned>(data: &[u8], path: &Path) -> Vec<T> {
    let mut out = Vec::new();
    for chunk in data.split(|&b| b == b':') {
        let chunk = chunk.trim_ascii();
        if chunk.is_empty() {
            continue;
        }
        let decoded = match STANDARD.decode(chunk) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(path = %path.display(), "skipping undecodable pending record: {e}");
                continue;
            }
        };
        match decoded.split_first() {
            Some((&RECORD_VERSION, body)) => match postcard::from_bytes::<T>(body) {
                Ok(rec) => out.push(rec),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "skipping bad pending record: {e}")
                }
            },
            _ => {
                tracing::warn!(path = %path.display(), "skipping pending record with unknown version")
            }
        }
    }
    out
}

struct State {
    file: Option<Arc<File>>,
    lock: Option<File>,
    /// Records appended by this process (sequence numbers).
    written: u64,
    /// Records known durable (fsynced or merged).
    synced: u64,
    syncing: bool,
    /// Records up to this sequence number were covered by a failed fsync: their writers
    /// get an error (a retried fsync may report success without the data being durable).
    failed_upto: u64,
}

/// The per-DB shared append/sync state.
pub(crate) struct PendingShared {
    db_file: PathBuf,
    pending_path: PathBuf,
    lock_path: PathBuf,
    state: Mutex<State>,
    cv: Condvar,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<PendingShared>>> {
    static REG: OnceLock<Mutex<HashMap<PathBuf, Weak<PendingShared>>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PendingShared {
    /// The shared state of `db_file` (created on first use).
    pub(crate) fn for_db(db_file: &Path) -> Arc<PendingShared> {
        let mut reg = lock(registry());
        if let Some(s) = reg.get(db_file).and_then(Weak::upgrade) {
            return s;
        }
        if reg.len() > 1024 {
            reg.retain(|_, w| w.strong_count() > 0);
        }
        let mut pending = db_file.as_os_str().to_owned();
        pending.push(".pending");
        let lock_path = db_file
            .parent()
            .map(|p| p.join(".lock"))
            .unwrap_or_else(|| PathBuf::from(".lock"));
        let s = Arc::new(PendingShared {
            db_file: db_file.to_path_buf(),
            pending_path: PathBuf::from(pending),
            lock_path,
            state: Mutex::new(State {
                file: None,
                lock: None,
                written: 0,
                synced: 0,
                syncing: false,
                failed_upto: 0,
            }),
            cv: Condvar::new(),
        });
        reg.insert(db_file.to_path_buf(), Arc::downgrade(&s));
        s
    }

    pub(crate) fn path(&self) -> &Path {
        &self.pending_path
    }

    /// Open (or re-open) the lock and pending files. A cached descriptor whose path now
    /// names another file (the DB dir was removed and re-created, or quarantined) is
    /// dropped, so appends never go to an unlinked file.
    fn ensure_open(&self, st: &mut State) -> Result<()> {
        let not_found = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::NotFound {
                DbError::NotFound(self.db_file.clone())
            } else {
                DbError::Io(e)
            }
        };
        if st
            .lock
            .as_ref()
            .is_some_and(|f| !same_file(f, &self.lock_path))
        {
            st.lock = None;
        }
        if st
            .file
            .as_deref()
            .is_some_and(|f| !same_file(f, &self.pending_path))
        {
            st.file = None;
        }
        if st.lock.is_none() {
            st.lock = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.lock_path)
                    .map_err(not_found)?,
            );
        }
        if st.file.is_none() {
            let existed = self.pending_path.exists();
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.pending_path)
                .map_err(not_found)?;
            if !existed {
                // The new directory entry must survive a crash too.
                if let Some(dir) = self.pending_path.parent() {
                    fsync_dir(dir)?;
                }
            }
            st.file = Some(Arc::new(f));
        }
        Ok(())
    }

    /// Append encoded records durably. `merge` is called (under the locks) with the whole
    /// pending contents plus the new records when the file would exceed the cap; it must
    /// commit them to SQLite.
    pub(crate) fn append(
        &self,
        records: &[u8],
        merge: impl FnOnce(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut st = lock(&self.state);
        self.ensure_open(&mut st)?;
        let (Some(file), Some(lockf)) = (st.file.clone(), st.lock.as_ref()) else {
            return Err(DbError::Corrupt("pending file not open".into()));
        };
        flock_timeout(lockf, &self.lock_path, LOCK_TIMEOUT)?;
        let res = (|| -> Result<bool> {
            let size = file.metadata()?.len();
            if size + records.len() as u64 > PENDING_CAP {
                let mut data = std::fs::read(&self.pending_path)?;
                data.extend_from_slice(records);
                merge(&data)?;
                file.set_len(0)?;
                Ok(true)
            } else {
                (&*file).write_all(records)?;
                Ok(false)
            }
        })();
        if let Some(l) = st.lock.as_ref() {
            funlock(l);
        }
        if res? {
            st.synced = st.written;
            self.cv.notify_all();
            return Ok(());
        }
        st.written += 1;
        let mine = st.written;
        loop {
            if st.synced >= mine {
                return Ok(());
            }
            if st.failed_upto >= mine {
                return Err(DbError::Io(std::io::Error::other(
                    "fsync of the pending file failed",
                )));
            }
            if !st.syncing {
                st.syncing = true;
                let target = st.written;
                drop(st);
                let r = file.sync_data();
                st = lock(&self.state);
                st.syncing = false;
                match &r {
                    Ok(()) => st.synced = st.synced.max(target),
                    Err(_) => {
                        st.failed_upto = st.failed_upto.max(target);
                        // reopen before the next append
                        st.file = None;
                    }
                }
                self.cv.notify_all();
                r?;
            } else {
                st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    /// Merge the pending file into SQLite (`merge` commits the records) and truncate it.
    pub(crate) fn commit(&self, merge: impl FnOnce(&[u8]) -> Result<()>) -> Result<()> {
        let mut st = lock(&self.state);
        match std::fs::metadata(&self.pending_path) {
            Ok(m) if m.len() > 0 => {}
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        self.ensure_open(&mut st)?;
        let (Some(file), Some(lockf)) = (st.file.clone(), st.lock.as_ref()) else {
            return Err(DbError::Corrupt("pending file not open".into()));
        };
        flock_timeout(lockf, &self.lock_path, LOCK_TIMEOUT)?;
        let res = (|| -> Result<()> {
            let data = std::fs::read(&self.pending_path)?;
            if data.is_empty() {
                return Ok(());
            }
            merge(&data)?;
            file.set_len(0)?;
            Ok(())
        })();
        if let Some(l) = st.lock.as_ref() {
            funlock(l);
        }
        res?;
        st.synced = st.written;
        self.cv.notify_all();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_roundtrip_and_garbage() {
        let a = encode_record(&("o".to_string(), 5u64)).unwrap();
        let b = encode_record(&("p".to_string(), 6u64)).unwrap();
        let mut data = a.clone();
        data.extend_from_slice(b":!!notbase64");
        data.extend_from_slice(b":AAAA"); // wrong version
        data.extend_from_slice(&b);
        data.extend_from_slice(&a[..a.len() - 3]); // torn write
        let recs: Vec<(String, u64)> = decode_records(&data, Path::new("x"));
        assert_eq!(recs, vec![("o".into(), 5), ("p".into(), 6)]);
    }
}
