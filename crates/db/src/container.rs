//! Container databases: object rows, the container merge rule, info and listings.

use std::collections::HashMap;
use std::path::Path;

use cairn_common::timestamp::{decode_triple, encode_triple};
use cairn_common::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use crate::broker::{parse_ts, Broker, Kind};
use crate::error::Result;
use crate::list::{list_rows, ListParams, Listed};
use crate::util::extract_swift_bytes;

/// Marker type of container DBs.
pub struct ContainerKind;

/// A container database.
pub type ContainerBroker = Broker<ContainerKind>;

/// Content type of a deleted row.
pub const DELETED_CONTENT_TYPE: &str = "application/deleted";
/// Etag of a deleted row.
pub const DELETED_ETAG: &str = "noetag";

/// An object row: pending record, `merge_items` input and replication row (JSON with all
/// columns including `ROWID`; `deleted` as 0/1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    #[serde(rename = "ROWID", default, skip_serializing_if = "Option::is_none")]
    pub rowid: Option<i64>,
    pub name: String,
    /// Data timestamp, or an encoded triple (data, ctype, meta).
    pub created_at: String,
    pub size: u64,
    pub content_type: String,
    pub etag: String,
    #[serde(with = "crate::bool_int")]
    pub deleted: bool,
    #[serde(default)]
    pub storage_policy_index: i64,
    /// Content-type timestamp (sets the meta timestamp too unless that is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctype_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_timestamp: Option<String>,
}

impl ObjectRecord {
    /// A PUT row at `ts`.
    pub fn put(name: &str, ts: Timestamp, size: u64, content_type: &str, etag: &str) -> Self {
        ObjectRecord {
            rowid: None,
            name: name.to_string(),
            created_at: ts.internal(),
            size,
            content_type: content_type.to_string(),
            etag: etag.to_string(),
            deleted: false,
            storage_policy_index: 0,
            ctype_timestamp: None,
            meta_timestamp: None,
        }
    }

    /// A DELETE row (tombstone) at `ts`.
    pub fn delete(name: &str, ts: Timestamp) -> Self {
        ObjectRecord {
            deleted: true,
            ..ObjectRecord::put(name, ts, 0, DELETED_CONTENT_TYPE, DELETED_ETAG)
        }
    }

    pub fn with_policy(mut self, policy: i64) -> Self {
        self.storage_policy_index = policy;
        self
    }

    pub fn with_ctype_timestamp(mut self, ts: Timestamp) -> Self {
        self.ctype_timestamp = Some(ts.internal());
        self
    }

    pub fn with_meta_timestamp(mut self, ts: Timestamp) -> Self {
        self.meta_timestamp = Some(ts.internal());
        self
    }
}

type PendingTuple = (
    String,
    String,
    u64,
    String,
    String,
    bool,
    i64,
    Option<String>,
    Option<String>,
);

/// A row split into its three independently merged parts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    data: Timestamp,
    size: u64,
    etag: String,
    deleted: bool,
    swift_bytes: Option<String>,
    ctype: Timestamp,
    content_type: String,
    meta: Timestamp,
}

impl Item {
    fn from_record(r: &ObjectRecord) -> std::result::Result<Item, String> {
        let (data, mut ctype, mut meta) =
            decode_triple(&r.created_at).map_err(|e| e.to_string())?;
        if let Some(c) = r.ctype_timestamp.as_deref().filter(|s| !s.is_empty()) {
            ctype = Timestamp::parse(c).map_err(|e| e.to_string())?;
            meta = ctype;
        }
        if let Some(m) = r.meta_timestamp.as_deref().filter(|s| !s.is_empty()) {
            meta = Timestamp::parse(m).map_err(|e| e.to_string())?;
        }
        let (content_type, swift_bytes) = split_swift_bytes(&r.content_type);
        Ok(Item {
            data,
            size: r.size,
            etag: r.etag.clone(),
            deleted: r.deleted,
            swift_bytes,
            ctype,
            content_type,
            meta,
        })
    }

    /// Per part, the newer timestamp wins; equal timestamps with different values are
    /// broken by comparing the values, so the merge is commutative and associative.
    fn merge(&self, other: &Item) -> Item {
        let a_data = (
            self.data,
            self.size,
            &self.etag,
            self.deleted,
            &self.swift_bytes,
        );
        let b_data = (
            other.data,
            other.size,
            &other.etag,
            other.deleted,
            &other.swift_bytes,
        );
        let d = if b_data > a_data { other } else { self };
        let c = if (other.ctype, &other.content_type) > (self.ctype, &self.content_type) {
            other
        } else {
            self
        };
        Item {
            data: d.data,
            size: d.size,
            etag: d.etag.clone(),
            deleted: d.deleted,
            swift_bytes: d.swift_bytes.clone(),
            ctype: c.ctype,
            content_type: c.content_type.clone(),
            meta: self.meta.max(other.meta),
        }
    }

    fn created_at(&self) -> String {
        encode_triple(self.data, self.ctype, self.meta, false)
    }

    fn stored_content_type(&self) -> String {
        match &self.swift_bytes {
            Some(b) => format!("{};swift_bytes={b}", self.content_type),
            None => self.content_type.clone(),
        }
    }
}

fn split_swift_bytes(ct: &str) -> (String, Option<String>) {
    if ct.contains("swift_bytes") {
        extract_swift_bytes(ct)
    } else {
        (ct.to_string(), None)
    }
}

impl Kind for ContainerKind {
    const DATADIR: &'static str = "containers";
    const ITEMS_TABLE: &'static str = "object";
    const INFO_TABLE: &'static str = "container_info";
    const STAT_VIEW: &'static str = "container_stat";
    const COUNT_COLUMN: &'static str = "object_count";
    const SCHEMA: &'static str = crate::schema::CONTAINER;
    const RECLAIM_SQL: &'static str = "DELETE FROM object WHERE deleted = 1 AND created_at < ?";
    type Record = ObjectRecord;
    type PendingTuple = PendingTuple;

    fn to_pending(r: &ObjectRecord) -> PendingTuple {
        (
            r.name.clone(),
            r.created_at.clone(),
            r.size,
            r.content_type.clone(),
            r.etag.clone(),
            r.deleted,
            r.storage_policy_index,
            r.ctype_timestamp.clone(),
            r.meta_timestamp.clone(),
        )
    }

    fn from_pending(t: PendingTuple) -> ObjectRecord {
        ObjectRecord {
            rowid: None,
            name: t.0,
            created_at: t.1,
            size: t.2,
            content_type: t.3,
            etag: t.4,
            deleted: t.5,
            storage_policy_index: t.6,
            ctype_timestamp: t.7,
            meta_timestamp: t.8,
        }
    }

    fn is_reclaimable(b: &Broker<Self>, now: Timestamp, reclaim_age: u64) -> Result<bool> {
        b.is_reclaimable(now, reclaim_age)
    }

    fn rowid(r: &ObjectRecord) -> Option<i64> {
        r.rowid
    }

    fn merge(tx: &Transaction<'_>, records: &[ObjectRecord]) -> Result<()> {
        // Fold duplicates within the batch first.
        let mut order: Vec<(String, i64)> = Vec::new();
        let mut batch: HashMap<(String, i64), Item> = HashMap::new();
        for r in records {
            let item = match Item::from_record(r) {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!(name = %r.name, "skipping object row with bad timestamps: {e}");
                    continue;
                }
            };
            let key = (r.name.clone(), r.storage_policy_index);
            match batch.get_mut(&key) {
                Some(existing) => *existing = existing.merge(&item),
                None => {
                    order.push(key.clone());
                    batch.insert(key, item);
                }
            }
        }
        let mut select = tx.prepare_cached(
            "SELECT created_at, size, content_type, etag, deleted FROM object \
             WHERE deleted IN (0, 1) AND name = ? AND storage_policy_index = ?",
        )?;
        let mut delete = tx.prepare_cached(
            "DELETE FROM object WHERE deleted IN (0, 1) AND name = ? AND storage_policy_index = ?",
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO object (name, created_at, size, content_type, etag, deleted, \
             storage_policy_index) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )?;
        for key in order {
            let Some(item) = batch.remove(&key) else {
                continue;
            };
            let (name, policy) = key;
            let existing = select
                .query_row(params![name, policy], |r| {
                    Ok(ObjectRecord {
                        rowid: None,
                        name: name.clone(),
                        created_at: r.get(0)?,
                        size: r.get::<_, i64>(1)?.max(0) as u64,
                        content_type: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        etag: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                        deleted: r.get::<_, i64>(4)? != 0,
                        storage_policy_index: policy,
                        ctype_timestamp: None,
                        meta_timestamp: None,
                    })
                })
                .optional()?;
            let merged = match &existing {
                Some(ex) => match Item::from_record(ex) {
                    Ok(old) => old.merge(&item),
                    Err(e) => {
                        tracing::warn!(name = %name, "replacing stored row with bad timestamps: {e}");
                        item
                    }
                },
                None => item,
            };
            let created_at = merged.created_at();
            let content_type = merged.stored_content_type();
            if let Some(ex) = &existing {
                if ex.created_at == created_at
                    && ex.size == merged.size
                    && ex.content_type == content_type
                    && ex.etag == merged.etag
                    && ex.deleted == merged.deleted
                {
                    continue;
                }
                delete.execute(params![name, policy])?;
            }
            insert.execute(params![
                name,
                created_at,
                merged.size as i64,
                content_type,
                merged.etag,
                i64::from(merged.deleted),
                policy
            ])?;
        }
        Ok(())
    }

    fn items_since(conn: &Connection, start: i64, count: usize) -> Result<Vec<ObjectRecord>> {
        let mut st = conn.prepare_cached(
            "SELECT ROWID, name, created_at, size, content_type, etag, deleted, \
             storage_policy_index FROM object WHERE ROWID > ? ORDER BY ROWID ASC LIMIT ?",
        )?;
        let rows = st.query_map(params![start, count as i64], |r| {
            Ok(ObjectRecord {
                rowid: Some(r.get(0)?),
                name: r.get(1)?,
                created_at: r.get(2)?,
                size: r.get::<_, i64>(3)?.max(0) as u64,
                content_type: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                etag: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                deleted: r.get::<_, i64>(6)? != 0,
                storage_policy_index: r.get(7)?,
                ctype_timestamp: None,
                meta_timestamp: None,
            })
        })?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }
}

/// `container_stat` as a struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub account: String,
    pub container: String,
    pub created_at: Timestamp,
    pub put_timestamp: Timestamp,
    pub delete_timestamp: Timestamp,
    pub status_changed_at: Timestamp,
    pub object_count: i64,
    pub bytes_used: i64,
    pub reported_put_timestamp: Timestamp,
    pub reported_delete_timestamp: Timestamp,
    pub reported_object_count: i64,
    pub reported_bytes_used: i64,
    pub hash: String,
    pub id: String,
    pub status: String,
    pub storage_policy_index: i64,
    pub x_container_sync_point1: i64,
    pub x_container_sync_point2: i64,
}

impl ContainerInfo {
    /// Deleted: no objects (current policy) and `delete_timestamp > put_timestamp`.
    pub fn is_deleted(&self) -> bool {
        self.object_count == 0 && self.delete_timestamp > self.put_timestamp
    }
}

/// One object of a listing, ready for rendering (`swift_bytes` already applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    pub name: String,
    /// The etag column.
    pub hash: String,
    pub bytes: u64,
    pub content_type: String,
    /// The row's meta timestamp (last-modified).
    pub last_modified: Timestamp,
}

impl Broker<ContainerKind> {
    /// Create a container DB (or open the existing one; `created` tells which).
    pub fn create(
        db_file: impl AsRef<Path>,
        account: &str,
        container: &str,
        put_timestamp: Timestamp,
        storage_policy_index: i64,
    ) -> Result<(Self, bool)> {
        let put = put_timestamp.internal();
        Self::create_with(db_file.as_ref(), |conn, id| {
            conn.execute(
                "INSERT INTO container_info (account, container, created_at, id, put_timestamp, \
                 status_changed_at, storage_policy_index) VALUES (?, ?, ?, ?, ?, ?, ?)",
                params![
                    account,
                    container,
                    Timestamp::now().internal(),
                    id,
                    put,
                    put,
                    storage_policy_index
                ],
            )?;
            conn.execute(
                "INSERT INTO policy_stat (storage_policy_index) VALUES (?)",
                params![storage_policy_index],
            )?;
            Ok(())
        })
    }

    /// Record an object row (via the pending file; durable on return).
    pub fn put_object(&self, rec: &ObjectRecord) -> Result<()> {
        self.put_record(rec)
    }

    /// Record an object tombstone at `ts`.
    pub fn delete_object(&self, name: &str, ts: Timestamp, policy: i64) -> Result<()> {
        self.put_record(&ObjectRecord::delete(name, ts).with_policy(policy))
    }

    /// Info (after committing pending rows).
    pub fn get_info(&self) -> Result<ContainerInfo> {
        self.commit_puts_stale_ok()?;
        let conn = self.conn();
        let raw = conn.query_row(
            "SELECT account, container, created_at, put_timestamp, delete_timestamp, \
             status_changed_at, object_count, bytes_used, reported_put_timestamp, \
             reported_delete_timestamp, reported_object_count, reported_bytes_used, hash, id, \
             status, storage_policy_index, x_container_sync_point1, x_container_sync_point2 \
             FROM container_stat",
            [],
            |r| {
                Ok((
                    [
                        r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                        r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                        r.get::<_, Option<String>>(2)?.unwrap_or_else(|| "0".into()),
                        r.get::<_, Option<String>>(3)?.unwrap_or_else(|| "0".into()),
                        r.get::<_, Option<String>>(4)?.unwrap_or_else(|| "0".into()),
                        r.get::<_, Option<String>>(5)?.unwrap_or_else(|| "0".into()),
                        r.get::<_, Option<String>>(8)?.unwrap_or_else(|| "0".into()),
                        r.get::<_, Option<String>>(9)?.unwrap_or_else(|| "0".into()),
                        r.get::<_, Option<String>>(12)?.unwrap_or_default(),
                        r.get::<_, Option<String>>(13)?.unwrap_or_default(),
                        r.get::<_, Option<String>>(14)?.unwrap_or_default(),
                    ],
                    [
                        r.get::<_, Option<i64>>(6)?.unwrap_or(0),
                        r.get::<_, Option<i64>>(7)?.unwrap_or(0),
                        r.get::<_, Option<i64>>(10)?.unwrap_or(0),
                        r.get::<_, Option<i64>>(11)?.unwrap_or(0),
                        r.get::<_, Option<i64>>(15)?.unwrap_or(0),
                        r.get::<_, Option<i64>>(16)?.unwrap_or(-1),
                        r.get::<_, Option<i64>>(17)?.unwrap_or(-1),
                    ],
                ))
            },
        )?;
        let ([account, container, created, put, del, sca, rput, rdel, hash, id, status], ints) =
            raw;
        Ok(ContainerInfo {
            account,
            container,
            created_at: parse_ts(&created)?,
            put_timestamp: parse_ts(&put)?,
            delete_timestamp: parse_ts(&del)?,
            status_changed_at: parse_ts(&sca)?,
            object_count: ints[0],
            bytes_used: ints[1],
            reported_put_timestamp: parse_ts(&rput)?,
            reported_delete_timestamp: parse_ts(&rdel)?,
            reported_object_count: ints[2],
            reported_bytes_used: ints[3],
            hash,
            id,
            status,
            storage_policy_index: ints[4],
            x_container_sync_point1: ints[5],
            x_container_sync_point2: ints[6],
        })
    }

    /// See [`ContainerInfo::is_deleted`].
    pub fn is_deleted(&self) -> Result<bool> {
        Ok(self.get_info()?.is_deleted())
    }

    /// No live objects in any policy.
    pub fn empty(&self) -> Result<bool> {
        self.commit_puts_stale_ok()?;
        let n: Option<i64> =
            self.conn()
                .query_row("SELECT max(object_count) FROM policy_stat", [], |r| {
                    r.get(0)
                })?;
        Ok(n.unwrap_or(0) <= 0)
    }

    /// The container's storage policy index.
    pub fn storage_policy_index(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("SELECT storage_policy_index FROM container_info", [], |r| {
                r.get::<_, Option<i64>>(0)
            })?
            .unwrap_or(0))
    }

    /// Change the container's policy (only for a deleted/re-created container):
    /// `status_changed_at = max(status_changed_at, ts)` when it really changes.
    pub fn set_storage_policy_index(&self, policy: i64, ts: Timestamp) -> Result<()> {
        self.with_tx(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO policy_stat (storage_policy_index) VALUES (?)",
                params![policy],
            )?;
            tx.execute(
                "UPDATE container_info SET storage_policy_index = ?1, \
                 status_changed_at = MAX(?2, status_changed_at) \
                 WHERE storage_policy_index <> ?1",
                params![policy, ts.internal()],
            )?;
            Ok(())
        })
    }

    /// Record what the container-updater reported to the account.
    pub fn reported(
        &self,
        put: Timestamp,
        delete: Timestamp,
        object_count: i64,
        bytes_used: i64,
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE container_info SET reported_put_timestamp = ?, reported_delete_timestamp = ?, \
             reported_object_count = ?, reported_bytes_used = ?",
            params![put.internal(), delete.internal(), object_count, bytes_used],
        )?;
        Ok(())
    }

    /// DB reclaim: no live rows, `now − reclaim_age > delete_timestamp > put_timestamp`,
    /// and the account has been told (`reported_delete_timestamp ≥ delete_timestamp`).
    pub fn is_reclaimable(&self, now: Timestamp, reclaim_age: u64) -> Result<bool> {
        let info = self.get_info()?;
        let cut = Timestamp::from_raw(
            now.raw
                .saturating_sub(reclaim_age.saturating_mul(cairn_common::timestamp::UNITS_PER_SEC)),
        );
        Ok(self.empty()?
            && cut > info.delete_timestamp
            && info.delete_timestamp > info.put_timestamp
            && info.reported_delete_timestamp >= info.delete_timestamp)
    }

    /// List objects (`policy` `None` = the container's own policy).
    pub fn list_objects_iter(
        &self,
        params: &ListParams,
        policy: Option<i64>,
    ) -> Result<Vec<Listed<ObjectEntry>>> {
        self.commit_puts_stale_ok()?;
        let policy = match policy {
            Some(p) => p,
            None => self.storage_policy_index()?,
        };
        let conn = self.conn();
        list_rows(
            &conn,
            "object",
            "name, created_at, size, content_type, etag",
            Some(policy),
            params,
            |r| {
                let name: String = r.get(0)?;
                let created_ref = r.get_ref(1)?;
                let created = created_ref.as_str()?;
                let last_modified = decode_triple(created)
                    .map(|(_, _, m)| m)
                    .unwrap_or_default();
                let mut bytes = r.get::<_, i64>(2)?.max(0) as u64;
                let ct: String = r.get::<_, Option<String>>(3)?.unwrap_or_default();
                let content_type = if ct.contains(';') {
                    let (ct2, sb) = extract_swift_bytes(&ct);
                    if let Some(n) = sb.and_then(|s| s.parse::<u64>().ok()) {
                        bytes = n;
                    }
                    ct2
                } else {
                    ct
                };
                Ok(ObjectEntry {
                    name,
                    hash: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    bytes,
                    content_type,
                    last_modified,
                })
            },
        )
    }
}
