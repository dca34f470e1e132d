//! The generic broker: one SQLite file plus its pending file, shared by container and
//! account databases. Kind-specific parts (schema, row type, merge rule, listing) live in
//! [`crate::container`] and [`crate::account`] behind the [`Kind`] trait.
//!
//! SQLite runs in WAL mode with `synchronous=FULL` (PROTOCOLS "Databases" allows WAL;
//! whole-file copies go through [`Broker::backup_to`], which uses SQLite's backup API and
//! therefore sees a consistent snapshot including the WAL).

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cairn_common::constraints::Constraints;
use cairn_common::Timestamp;
use rusqlite::functions::FunctionFlags;
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{DbError, Result};
use crate::pending::{decode_records, encode_record, PendingShared, LOCK_TIMEOUT};
use crate::util::{chexor, fsync_dir, unix_now, DirLock};

/// SQLite busy timeout.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(25);

/// Metadata map: key → (value, internal timestamp). Serialised as Swift's JSON
/// `{"X-Container-Meta-Color": ["blue", "1700000000.00000"]}`.
pub type Metadata = BTreeMap<String, (String, String)>;

/// What differs between container and account DBs.
pub trait Kind: Send + Sync + Sized + 'static {
    /// `containers` / `accounts` (directory under the device, and under `quarantined/`).
    const DATADIR: &'static str;
    /// Item table: `object` / `container`.
    const ITEMS_TABLE: &'static str;
    /// Writable info table: `container_info` / `account_stat`.
    const INFO_TABLE: &'static str;
    /// Readable stat relation: `container_stat` (view) / `account_stat`.
    const STAT_VIEW: &'static str;
    /// Column counted for replication info: `object_count` / `container_count`.
    const COUNT_COLUMN: &'static str;
    /// Full schema (without the sync tables).
    const SCHEMA: &'static str;
    /// The item row (pending record, merge input, replication row).
    type Record: Serialize + DeserializeOwned + Clone + Send + std::fmt::Debug;
    /// The pending-file tuple.
    type PendingTuple: Serialize + DeserializeOwned;

    fn to_pending(rec: &Self::Record) -> Self::PendingTuple;
    fn from_pending(t: Self::PendingTuple) -> Self::Record;
    /// Merge rows in an open IMMEDIATE transaction (PROTOCOLS "merge_items").
    fn merge(tx: &Transaction<'_>, records: &[Self::Record]) -> Result<()>;
    fn rowid(rec: &Self::Record) -> Option<i64>;
    /// `SELECT ROWID, … FROM items WHERE ROWID > ? ORDER BY ROWID LIMIT ?`.
    fn items_since(conn: &Connection, start: i64, count: usize) -> Result<Vec<Self::Record>>;
    /// SQL deleting reclaimable tombstone rows; one parameter, the age timestamp.
    const RECLAIM_SQL: &'static str;
    /// Whether the whole DB may be removed (PROTOCOLS "DB reclaim").
    fn is_reclaimable(b: &Broker<Self>, now: Timestamp, reclaim_age: u64) -> Result<bool>;
}

/// Replication summary (`PROTOCOLS.md`, "DB replication protocol").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationInfo {
    pub max_row: i64,
    pub hash: String,
    pub id: String,
    pub created_at: String,
    pub put_timestamp: String,
    pub delete_timestamp: String,
    pub status_changed_at: String,
    pub metadata: String,
    pub count: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub storage_policy_index: Option<i64>,
}

/// One sync-table row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPoint {
    pub remote_id: String,
    pub sync_point: i64,
}

/// A container or account database.
pub struct Broker<K: Kind> {
    db_file: PathBuf,
    device: String,
    conn: Mutex<Connection>,
    pending: Arc<PendingShared>,
    _kind: PhantomData<K>,
}

fn register_functions(conn: &Connection) -> Result<()> {
    conn.create_scalar_function(
        "chexor",
        3,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let old: String = ctx.get(0)?;
            let name: String = ctx.get(1)?;
            let ts: String = ctx.get(2)?;
            chexor(&old, &name, &ts).map_err(|e| rusqlite::Error::UserFunctionError(e.into()))
        },
    )?;
    Ok(())
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    register_functions(conn)?;
    Ok(())
}

/// Create `dir` and any missing parents, fsyncing each parent whose entries changed.
pub(crate) fn create_dirs_durable(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.exists() {
            break;
        }
        missing.push(d);
        cur = d.parent();
    }
    std::fs::create_dir_all(dir)?;
    for d in missing.iter().rev() {
        if let Some(p) = d.parent() {
            fsync_dir(p)?;
        }
    }
    Ok(())
}

/// Move the DB's hash directory to `DEV/quarantined/<datadir>/HASH` (with `-uuid` if taken).
pub fn quarantine_db(db_file: &Path, datadir: &str) -> Result<PathBuf> {
    let hash_dir = db_file
        .parent()
        .ok_or_else(|| DbError::Corrupt(format!("no hash dir for {}", db_file.display())))?;
    let dev_dir = hash_dir
        .ancestors()
        .nth(4)
        .ok_or_else(|| DbError::Corrupt(format!("no device dir for {}", db_file.display())))?;
    let hash = hash_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("unknown");
    let qdir = dev_dir.join("quarantined").join(datadir);
    create_dirs_durable(&qdir)?;
    let mut target = qdir.join(hash);
    if target.exists() {
        target = qdir.join(format!("{hash}-{}", uuid::Uuid::new_v4().simple()));
    }
    std::fs::rename(hash_dir, &target)?;
    fsync_dir(&qdir)?;
    if let Some(p) = hash_dir.parent() {
        fsync_dir(p)?;
    }
    tracing::error!(db = %db_file.display(), to = %target.display(), "quarantined database");
    Ok(target)
}

/// `PRAGMA quick_check` of a DB file that is not (yet) a broker, e.g. an upload in
/// `DEV/tmp`; opened read-only, nothing is created.
pub fn quick_check_file(path: &Path) -> Result<()> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut st = conn.prepare("PRAGMA quick_check")?;
    let msgs: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    if msgs.len() == 1 && msgs[0] == "ok" {
        Ok(())
    } else {
        Err(DbError::Corrupt(msgs.join("; ")))
    }
}

pub(crate) fn parse_ts(s: &str) -> Result<Timestamp> {
    Timestamp::parse(s).map_err(|e| DbError::Corrupt(format!("bad timestamp in DB: {e}")))
}

impl<K: Kind> Broker<K> {
    /// Open an existing DB. A file SQLite reports as damaged is quarantined
    /// ([`DbError::Quarantined`]).
    pub fn open(db_file: impl AsRef<Path>) -> Result<Self> {
        let db_file = db_file.as_ref().to_path_buf();
        if !db_file.is_file() {
            return Err(DbError::NotFound(db_file));
        }
        match Self::open_inner(&db_file) {
            Ok(b) => Ok(b),
            Err(e) if e.is_corruption() => {
                tracing::error!(db = %db_file.display(), "corrupt database on open: {e}");
                let to = quarantine_db(&db_file, K::DATADIR)?;
                Err(DbError::Quarantined(to))
            }
            Err(e) => Err(e),
        }
    }

    fn open_inner(db_file: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(
            db_file,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&conn)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(db = %db_file.display(), "journal mode is {mode}, not WAL");
        }
        conn.execute_batch("PRAGMA synchronous=FULL")?;
        // Touch the schema so that a damaged file is detected now.
        conn.query_row(
            &format!("SELECT count(*) FROM {}", K::INFO_TABLE),
            [],
            |r| r.get::<_, i64>(0),
        )?;
        Ok(Broker {
            device: crate::util::device_of(db_file),
            db_file: db_file.to_path_buf(),
            conn: Mutex::new(conn),
            pending: PendingShared::for_db(db_file),
            _kind: PhantomData,
        })
    }

    /// Create a DB through `*.tmp` + fsync + rename under the directory lock. `init` fills
    /// the info row (the schema is already in place). Returns `(broker, created)`; an
    /// existing DB wins (`created == false`, `init` unused).
    pub(crate) fn create_with(
        db_file: &Path,
        init: impl FnOnce(&Connection, &str) -> Result<()>,
    ) -> Result<(Self, bool)> {
        if db_file.is_file() {
            return Ok((Self::open(db_file)?, false));
        }
        let dir = db_file
            .parent()
            .ok_or_else(|| DbError::BadInput(format!("bad DB path {}", db_file.display())))?;
        create_dirs_durable(dir)?;
        let tmp = dir.join(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
        let build = || -> Result<()> {
            let conn = Connection::open(&tmp)?;
            configure(&conn)?;
            conn.execute_batch("BEGIN")?;
            conn.execute_batch(K::SCHEMA)?;
            conn.execute_batch(crate::schema::SYNC_TABLES)?;
            let id = format!(
                "{}-{}",
                uuid::Uuid::new_v4(),
                crate::util::device_of(db_file)
            );
            init(&conn, &id)?;
            conn.execute_batch("COMMIT")?;
            drop(conn);
            std::fs::File::open(&tmp)?.sync_all()?;
            Ok(())
        };
        if let Err(e) = build() {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let lock = DirLock::lock_dir(dir, LOCK_TIMEOUT)?;
        if db_file.exists() {
            drop(lock);
            let _ = std::fs::remove_file(&tmp);
            return Ok((Self::open(db_file)?, false));
        }
        std::fs::rename(&tmp, db_file)?;
        fsync_dir(dir)?;
        drop(lock);
        Ok((Self::open(db_file)?, true))
    }

    pub fn db_file(&self) -> &Path {
        &self.db_file
    }

    /// `HASH.db.pending`.
    pub fn pending_file(&self) -> &Path {
        self.pending.path()
    }

    /// Device name derived from the path (used in new ids).
    pub fn device(&self) -> &str {
        &self.device
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` in an IMMEDIATE transaction and commit.
    pub(crate) fn with_tx<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    fn merge_raw_pending(&self, data: &[u8]) -> Result<()> {
        let recs: Vec<K::Record> = decode_records::<K::PendingTuple>(data, self.pending.path())
            .into_iter()
            .map(K::from_pending)
            .collect();
        if recs.is_empty() {
            return Ok(());
        }
        self.merge_items(&recs, None)
    }

    /// Append rows to an existing DB's pending file without opening SQLite: the hot path
    /// of the object servers' row updates. Opening (and closing) a WAL database costs far
    /// more than the append itself, so SQLite is opened only when the pending file is full
    /// and must be merged. Durability is the same as [`Broker::put_records`]: the append is
    /// fsynced (group commit) before this returns.
    pub fn append_pending(db_file: impl AsRef<Path>, recs: &[K::Record]) -> Result<()> {
        let db_file = db_file.as_ref();
        if recs.is_empty() {
            return Ok(());
        }
        if !db_file.is_file() {
            return Err(DbError::NotFound(db_file.to_path_buf()));
        }
        let mut bytes = Vec::new();
        for r in recs {
            bytes.extend_from_slice(&encode_record(&K::to_pending(r))?);
        }
        PendingShared::for_db(db_file)
            .append(&bytes, |data| Self::open(db_file)?.merge_raw_pending(data))
    }

    /// Append one row to the pending file and return once it is durable.
    pub fn put_record(&self, rec: &K::Record) -> Result<()> {
        self.put_records(std::slice::from_ref(rec))
    }

    /// Append several rows (one durable append).
    pub fn put_records(&self, recs: &[K::Record]) -> Result<()> {
        if recs.is_empty() {
            return Ok(());
        }
        if !self.db_file.exists() {
            return Err(DbError::NotFound(self.db_file.clone()));
        }
        let mut bytes = Vec::new();
        for r in recs {
            bytes.extend_from_slice(&encode_record(&K::to_pending(r))?);
        }
        self.pending
            .append(&bytes, |data| self.merge_raw_pending(data))
    }

    /// Merge the pending file into the DB (exact reads call this first).
    pub fn commit_puts(&self) -> Result<()> {
        self.pending.commit(|data| self.merge_raw_pending(data))
    }

    /// [`Broker::commit_puts`], but a lock timeout only logs (reads may be stale).
    pub fn commit_puts_stale_ok(&self) -> Result<()> {
        match self.commit_puts() {
            Err(DbError::LockTimeout(p)) => {
                tracing::warn!(path = %p.display(), "pending lock timeout; reading stale data");
                Ok(())
            }
            other => other,
        }
    }

    /// Merge rows into the DB in one transaction; `source` (a remote DB id) gets
    /// `incoming_sync[source] = max(current, last row's ROWID)`.
    pub fn merge_items(&self, recs: &[K::Record], source: Option<&str>) -> Result<()> {
        self.with_tx(|tx| {
            K::merge(tx, recs)?;
            if let Some(src) = source {
                if let Some(point) = recs.last().and_then(K::rowid) {
                    merge_sync_point(tx, "incoming_sync", src, point)?;
                }
            }
            Ok(())
        })
    }

    /// Rows with ROWID > `start`, in ROWID order, at most `count`.
    pub fn get_items_since(&self, start: i64, count: usize) -> Result<Vec<K::Record>> {
        self.commit_puts_stale_ok()?;
        K::items_since(&self.conn(), start, count)
    }

    /// Highest ROWID ever used (`sqlite_sequence`), −1 if none.
    pub fn max_row(&self) -> Result<i64> {
        max_row(&self.conn(), K::ITEMS_TABLE)
    }

    /// `get_replication_info` (after committing pending rows).
    pub fn get_replication_info(&self) -> Result<ReplicationInfo> {
        self.commit_puts_stale_ok()?;
        let conn = self.conn();
        let max_row = max_row(&conn, K::ITEMS_TABLE)?;
        let is_container = K::STAT_VIEW == "container_stat";
        let sql = format!(
            "SELECT hash, id, created_at, put_timestamp, delete_timestamp, status_changed_at, \
             metadata, {}, {} FROM {}",
            K::COUNT_COLUMN,
            if is_container {
                "storage_policy_index"
            } else {
                "NULL"
            },
            K::STAT_VIEW
        );
        Ok(conn.query_row(&sql, [], |r| {
            Ok(ReplicationInfo {
                max_row,
                hash: r.get(0)?,
                id: r.get(1)?,
                created_at: r.get(2)?,
                put_timestamp: r.get(3)?,
                delete_timestamp: r.get(4)?,
                status_changed_at: r.get(5)?,
                metadata: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                count: r.get::<_, Option<i64>>(7)?.unwrap_or(0),
                storage_policy_index: r.get(8)?,
            })
        })?)
    }

    /// The current rolling hash.
    pub fn hash(&self) -> Result<String> {
        self.commit_puts_stale_ok()?;
        Ok(self
            .conn()
            .query_row(&format!("SELECT hash FROM {}", K::INFO_TABLE), [], |r| {
                r.get(0)
            })?)
    }

    /// The DB's id.
    pub fn id(&self) -> Result<String> {
        Ok(self
            .conn()
            .query_row(&format!("SELECT id FROM {}", K::INFO_TABLE), [], |r| {
                r.get(0)
            })?)
    }

    // ---- metadata -------------------------------------------------------------------

    /// The stored metadata (including deleted keys with empty values).
    pub fn metadata(&self) -> Result<Metadata> {
        read_metadata(&self.conn(), K::INFO_TABLE)
    }

    /// Merge `updates` per key (strictly newer timestamp wins; `""` deletes). With
    /// `limits` (client requests; replication passes `None`), the merged map must satisfy
    /// their metadata limits ([`DbError::BadInput`]).
    pub fn update_metadata(&self, updates: &Metadata, limits: Option<&Constraints>) -> Result<()> {
        self.with_tx(|tx| {
            let mut md = read_metadata(tx, K::INFO_TABLE)?;
            if !merge_metadata(&mut md, updates)? {
                return Ok(());
            }
            if let Some(limits) = limits {
                validate_metadata(&md, limits)?;
            }
            write_metadata(tx, K::INFO_TABLE, &md)
        })
    }

    // ---- timestamps, deletion -------------------------------------------------------

    /// `put_timestamp = max(put_timestamp, ts)`.
    pub fn update_put_timestamp(&self, ts: Timestamp) -> Result<()> {
        let t = ts.internal();
        self.conn().execute(
            &format!(
                "UPDATE {} SET put_timestamp = ?1 WHERE put_timestamp < ?1",
                K::INFO_TABLE
            ),
            params![t],
        )?;
        Ok(())
    }

    /// `status_changed_at = max(status_changed_at, ts)`.
    pub fn update_status_changed_at(&self, ts: Timestamp) -> Result<()> {
        let t = ts.internal();
        self.conn().execute(
            &format!(
                "UPDATE {} SET status_changed_at = ?1 WHERE status_changed_at < ?1",
                K::INFO_TABLE
            ),
            params![t],
        )?;
        Ok(())
    }

    /// Mark the DB deleted at `ts`: every metadata key is cleared (`""` at `ts`), and if
    /// `ts` is newer than the current delete timestamp, `delete_timestamp = ts`,
    /// `status = 'DELETED'`, `status_changed_at = ts`.
    pub fn delete_db(&self, ts: Timestamp) -> Result<()> {
        let t = ts.internal();
        self.with_tx(|tx| {
            let mut md = read_metadata(tx, K::INFO_TABLE)?;
            let cleared: Metadata = md
                .keys()
                .map(|k| (k.clone(), (String::new(), t.clone())))
                .collect();
            if merge_metadata(&mut md, &cleared)? {
                write_metadata(tx, K::INFO_TABLE, &md)?;
            }
            tx.execute(
                &format!(
                    "UPDATE {} SET delete_timestamp = ?1, status = 'DELETED', \
                     status_changed_at = ?1 WHERE delete_timestamp < ?1",
                    K::INFO_TABLE
                ),
                params![t],
            )?;
            Ok(())
        })
    }

    /// Replication `sync`: `created_at = min`, `put/delete = max` (string order of internal
    /// forms, like Swift).
    pub fn merge_timestamps(&self, created_at: &str, put: &str, delete: &str) -> Result<()> {
        self.conn().execute(
            &format!(
                "UPDATE {} SET created_at = MIN(?1, created_at), \
                 put_timestamp = MAX(?2, put_timestamp), \
                 delete_timestamp = MAX(?3, delete_timestamp)",
                K::INFO_TABLE
            ),
            params![created_at, put, delete],
        )?;
        Ok(())
    }

    // ---- reclaim --------------------------------------------------------------------

    /// Reclaim (PROTOCOLS "Deletion and reclaim"): tombstone rows older than
    /// `now − reclaim_age` (the rolling hash is left unchanged), sync rows not updated for
    /// `2 × reclaim_age`, and empty metadata values older than `now − reclaim_age`.
    pub fn reclaim(&self, now: Timestamp, reclaim_age: u64) -> Result<()> {
        self.commit_puts()?;
        let age = Timestamp::from_raw(
            now.raw
                .saturating_sub(reclaim_age.saturating_mul(cairn_common::timestamp::UNITS_PER_SEC)),
        );
        let sync_cut = now.secs().saturating_sub(reclaim_age.saturating_mul(2));
        self.with_tx(|tx| {
            let hash: String =
                tx.query_row(&format!("SELECT hash FROM {}", K::INFO_TABLE), [], |r| {
                    r.get(0)
                })?;
            let n = tx.execute(K::RECLAIM_SQL, params![age.internal()])?;
            if n > 0 {
                tx.execute(
                    &format!("UPDATE {} SET hash = ?", K::INFO_TABLE),
                    params![hash],
                )?;
            }
            for table in ["incoming_sync", "outgoing_sync"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE CAST(updated_at AS INTEGER) < ?"),
                    params![sync_cut as i64],
                )?;
            }
            let mut md = read_metadata(tx, K::INFO_TABLE)?;
            let before = md.len();
            md.retain(|_, (v, ts)| {
                !(v.is_empty() && Timestamp::parse(ts).map(|t| t < age).unwrap_or(false))
            });
            if md.len() != before {
                write_metadata(tx, K::INFO_TABLE, &md)?;
            }
            Ok(())
        })
    }

    // ---- sync tables ----------------------------------------------------------------

    /// `incoming_sync[id]` / `outgoing_sync[id]`, −1 if absent.
    pub fn get_sync(&self, remote_id: &str, incoming: bool) -> Result<i64> {
        let table = if incoming {
            "incoming_sync"
        } else {
            "outgoing_sync"
        };
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT sync_point FROM {table} WHERE remote_id = ?"),
                params![remote_id],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .unwrap_or(-1))
    }

    /// The whole incoming or outgoing sync table.
    pub fn get_syncs(&self, incoming: bool) -> Result<Vec<SyncPoint>> {
        let table = if incoming {
            "incoming_sync"
        } else {
            "outgoing_sync"
        };
        let conn = self.conn();
        let mut st = conn.prepare(&format!("SELECT remote_id, sync_point FROM {table}"))?;
        let rows = st.query_map([], |r| {
            Ok(SyncPoint {
                remote_id: r.get(0)?,
                sync_point: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Merge sync points with `max`.
    pub fn merge_syncs(&self, points: &[SyncPoint], incoming: bool) -> Result<()> {
        let table = if incoming {
            "incoming_sync"
        } else {
            "outgoing_sync"
        };
        self.with_tx(|tx| {
            for p in points {
                merge_sync_point(tx, table, &p.remote_id, p.sync_point)?;
            }
            Ok(())
        })
    }

    /// Give the DB a fresh id after a whole-file copy: `incoming_sync[remote_id] = max
    /// ROWID`, new UUID id (containers also reset `reported_*`).
    pub fn newid(&self, remote_id: &str) -> Result<()> {
        let id = format!("{}-{}", uuid::Uuid::new_v4(), self.device);
        self.with_tx(|tx| {
            let point: i64 = tx
                .query_row(
                    &format!(
                        "SELECT ROWID FROM {} ORDER BY ROWID DESC LIMIT 1",
                        K::ITEMS_TABLE
                    ),
                    [],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(-1);
            tx.execute(
                "INSERT OR REPLACE INTO incoming_sync (sync_point, remote_id) VALUES (?, ?)",
                params![point, remote_id],
            )?;
            tx.execute(&format!("UPDATE {} SET id = ?", K::INFO_TABLE), params![id])?;
            if K::INFO_TABLE == "container_info" {
                tx.execute(
                    "UPDATE container_info SET reported_put_timestamp = '0', \
                     reported_delete_timestamp = '0', reported_object_count = 0, \
                     reported_bytes_used = 0",
                    [],
                )?;
            }
            Ok(())
        })
    }

    // ---- whole-file copies, integrity, quarantine -----------------------------------

    /// Write a consistent snapshot of the DB (pending rows committed first) to `dest`
    /// (a new file, rollback-journal mode, fsynced) using SQLite's backup API.
    pub fn backup_to(&self, dest: &Path) -> Result<()> {
        self.commit_puts()?;
        {
            let conn = self.conn();
            let mut dst = Connection::open(dest)?;
            {
                let b = rusqlite::backup::Backup::new(&conn, &mut dst)?;
                b.run_to_completion(4096, Duration::ZERO, None)?;
            }
            let _: String = dst.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))?;
        }
        std::fs::File::open(dest)?.sync_all()?;
        Ok(())
    }

    /// Replace this DB's whole content with the DB file `src` through SQLite's backup API
    /// (transactional and WAL-safe, unlike renaming over a live WAL-mode file).
    pub fn restore_from(&self, src: &Path) -> Result<()> {
        let src_conn = Connection::open_with_flags(
            src,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let mut conn = self.conn();
        {
            let b = rusqlite::backup::Backup::new(&src_conn, &mut conn)?;
            b.run_to_completion(4096, Duration::ZERO, None)?;
        }
        Ok(())
    }

    /// Checkpoint the WAL into the main file (before a raw file copy).
    pub fn checkpoint(&self) -> Result<()> {
        self.conn()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// `PRAGMA quick_check`; `Err(Corrupt)` with SQLite's findings unless "ok".
    pub fn quick_check(&self) -> Result<()> {
        let conn = self.conn();
        let mut st = conn.prepare("PRAGMA quick_check")?;
        let msgs: Vec<String> = st
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        if msgs.len() == 1 && msgs[0] == "ok" {
            Ok(())
        } else {
            Err(DbError::Corrupt(msgs.join("; ")))
        }
    }

    /// Move this DB's hash directory to `DEV/quarantined/<datadir>/HASH`.
    pub fn quarantine(self) -> Result<PathBuf> {
        let Broker { db_file, conn, .. } = self;
        drop(conn);
        quarantine_db(&db_file, K::DATADIR)
    }
}

pub(crate) fn max_row(conn: &Connection, table: &str) -> Result<i64> {
    Ok(conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = ?",
            params![table],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .unwrap_or(-1))
}

fn merge_sync_point(conn: &Connection, table: &str, remote_id: &str, point: i64) -> Result<()> {
    let n = conn.execute(
        &format!("UPDATE {table} SET sync_point = max(?1, sync_point) WHERE remote_id = ?2"),
        params![point, remote_id],
    )?;
    if n == 0 {
        conn.execute(
            &format!("INSERT INTO {table} (sync_point, remote_id) VALUES (?, ?)"),
            params![point, remote_id],
        )?;
    }
    Ok(())
}

pub(crate) fn read_metadata(conn: &Connection, table: &str) -> Result<Metadata> {
    let raw: Option<String> =
        conn.query_row(&format!("SELECT metadata FROM {table}"), [], |r| r.get(0))?;
    match raw.as_deref() {
        None | Some("") => Ok(Metadata::new()),
        Some(s) => {
            serde_json::from_str(s).map_err(|e| DbError::Corrupt(format!("bad metadata JSON: {e}")))
        }
    }
}

fn write_metadata(conn: &Connection, table: &str, md: &Metadata) -> Result<()> {
    let s = serde_json::to_string(md).map_err(|e| DbError::Corrupt(e.to_string()))?;
    conn.execute(&format!("UPDATE {table} SET metadata = ?"), params![s])?;
    Ok(())
}

/// Per-key merge: take an update if the key is absent or its timestamp is strictly newer.
/// Returns whether anything changed. Update timestamps must parse ([`DbError::BadInput`]).
pub fn merge_metadata(md: &mut Metadata, updates: &Metadata) -> Result<bool> {
    let mut changed = false;
    for (k, (v, ts)) in updates {
        let new_ts = Timestamp::parse(ts)
            .map_err(|_| DbError::BadInput(format!("bad metadata timestamp {ts:?}")))?;
        let take = match md.get(k) {
            None => true,
            Some((_, old)) => Timestamp::parse(old).map(|o| new_ts > o).unwrap_or(true),
        };
        if take {
            md.insert(k.clone(), (v.clone(), new_ts.internal()));
            changed = true;
        }
    }
    Ok(changed)
}

/// Swift's `validate_metadata` over a merged map: at most `max_meta_count` non-empty
/// `X-(Account|Container)-Meta-*` keys and Σ(name after prefix + value) ≤
/// `max_meta_overall_size` bytes.
pub fn validate_metadata(md: &Metadata, limits: &Constraints) -> Result<()> {
    let mut count = 0;
    let mut size = 0;
    for (k, (v, _)) in md {
        let lower = k.to_ascii_lowercase();
        if v.is_empty() {
            continue;
        }
        for prefix in ["x-account-meta-", "x-container-meta-"] {
            if let Some(rest) = lower.strip_prefix(prefix) {
                count += 1;
                size += rest.len() + v.len();
            }
        }
    }
    if count > limits.max_meta_count {
        return Err(DbError::BadInput(format!(
            "Too many metadata items; max {}",
            limits.max_meta_count
        )));
    }
    if size > limits.max_meta_overall_size {
        return Err(DbError::BadInput(format!(
            "Total metadata too large; max {}",
            limits.max_meta_overall_size
        )));
    }
    Ok(())
}

/// Current Unix seconds (for sync-table tests and reclaim callers).
pub fn now_secs() -> u64 {
    unix_now()
}
