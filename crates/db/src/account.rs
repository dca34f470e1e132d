//! Account databases: container rows, the account merge rule, info and listings.

use std::collections::HashMap;
use std::path::Path;

use cairn_common::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use crate::broker::{parse_ts, Broker, Kind};
use crate::error::Result;
use crate::list::{list_rows, ListParams, Listed};

/// Marker type of account DBs.
pub struct AccountKind;

/// An account database.
pub type AccountBroker = Broker<AccountKind>;

/// A container row of an account DB (pending record, merge input, replication row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    #[serde(rename = "ROWID", default, skip_serializing_if = "Option::is_none")]
    pub rowid: Option<i64>,
    pub name: String,
    pub put_timestamp: String,
    pub delete_timestamp: String,
    pub object_count: i64,
    pub bytes_used: i64,
    #[serde(with = "crate::bool_int")]
    pub deleted: bool,
    #[serde(default)]
    pub storage_policy_index: i64,
}

impl ContainerRecord {
    /// A container report; `deleted` follows the rule `delete > put && object_count == 0`.
    pub fn new(
        name: &str,
        put: Timestamp,
        delete: Timestamp,
        object_count: i64,
        bytes_used: i64,
        policy: i64,
    ) -> Self {
        ContainerRecord {
            rowid: None,
            name: name.to_string(),
            put_timestamp: put.internal(),
            delete_timestamp: delete.internal(),
            object_count,
            bytes_used,
            deleted: delete > put && object_count == 0,
            storage_policy_index: policy,
        }
    }
}

type PendingTuple = (String, String, String, i64, i64, bool, i64);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    put: Timestamp,
    delete: Timestamp,
    object_count: i64,
    bytes_used: i64,
    policy: i64,
}

impl Row {
    fn from_record(r: &ContainerRecord) -> std::result::Result<Row, String> {
        Ok(Row {
            put: Timestamp::parse(&r.put_timestamp).map_err(|e| e.to_string())?,
            delete: Timestamp::parse(&r.delete_timestamp).map_err(|e| e.to_string())?,
            object_count: r.object_count,
            bytes_used: r.bytes_used,
            policy: r.storage_policy_index,
        })
    }

    /// Newer put and delete timestamps separately; counts (and policy) from the incoming
    /// report unless it is strictly older than what we have (its newest timestamp is older
    /// than ours), so a stale replica's row cannot roll counts back.
    fn merge(&self, incoming: &Row) -> Row {
        let counts = if incoming.put.max(incoming.delete) >= self.put.max(self.delete) {
            incoming
        } else {
            self
        };
        Row {
            put: self.put.max(incoming.put),
            delete: self.delete.max(incoming.delete),
            object_count: counts.object_count,
            bytes_used: counts.bytes_used,
            policy: counts.policy,
        }
    }

    fn deleted(&self) -> bool {
        self.delete > self.put && self.object_count == 0
    }
}

impl Kind for AccountKind {
    const DATADIR: &'static str = "accounts";
    const ITEMS_TABLE: &'static str = "container";
    const INFO_TABLE: &'static str = "account_stat";
    const STAT_VIEW: &'static str = "account_stat";
    const COUNT_COLUMN: &'static str = "container_count";
    const SCHEMA: &'static str = crate::schema::ACCOUNT;
    const RECLAIM_SQL: &'static str =
        "DELETE FROM container WHERE deleted = 1 AND delete_timestamp < ?";
    type Record = ContainerRecord;
    type PendingTuple = PendingTuple;

    fn to_pending(r: &ContainerRecord) -> PendingTuple {
        (
            r.name.clone(),
            r.put_timestamp.clone(),
            r.delete_timestamp.clone(),
            r.object_count,
            r.bytes_used,
            r.deleted,
            r.storage_policy_index,
        )
    }

    fn from_pending(t: PendingTuple) -> ContainerRecord {
        ContainerRecord {
            rowid: None,
            name: t.0,
            put_timestamp: t.1,
            delete_timestamp: t.2,
            object_count: t.3,
            bytes_used: t.4,
            deleted: t.5,
            storage_policy_index: t.6,
        }
    }

    fn is_reclaimable(b: &Broker<Self>, now: Timestamp, reclaim_age: u64) -> Result<bool> {
        b.is_reclaimable(now, reclaim_age)
    }

    fn rowid(r: &ContainerRecord) -> Option<i64> {
        r.rowid
    }

    fn merge(tx: &Transaction<'_>, records: &[ContainerRecord]) -> Result<()> {
        let mut order: Vec<String> = Vec::new();
        let mut batch: HashMap<String, Row> = HashMap::new();
        for r in records {
            let row = match Row::from_record(r) {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(name = %r.name, "skipping container row with bad timestamps: {e}");
                    continue;
                }
            };
            match batch.get_mut(&r.name) {
                Some(existing) => *existing = existing.merge(&row),
                None => {
                    order.push(r.name.clone());
                    batch.insert(r.name.clone(), row);
                }
            }
        }
        let mut select = tx.prepare_cached(
            "SELECT put_timestamp, delete_timestamp, object_count, bytes_used, deleted, \
             storage_policy_index FROM container WHERE name = ? AND deleted IN (0, 1)",
        )?;
        let mut delete =
            tx.prepare_cached("DELETE FROM container WHERE name = ? AND deleted IN (0, 1)")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO container (name, put_timestamp, delete_timestamp, object_count, \
             bytes_used, deleted, storage_policy_index) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )?;
        for name in order {
            let Some(row) = batch.remove(&name) else {
                continue;
            };
            let existing = select
                .query_row(params![name], |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?.unwrap_or_else(|| "0".into()),
                        r.get::<_, Option<String>>(1)?.unwrap_or_else(|| "0".into()),
                        r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                        r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                        r.get::<_, i64>(4)? != 0,
                        r.get::<_, i64>(5)?,
                    ))
                })
                .optional()?;
            let merged = match &existing {
                Some((p, d, oc, bu, _, pol)) => match (Timestamp::parse(p), Timestamp::parse(d)) {
                    (Ok(put), Ok(delete)) => Row {
                        put,
                        delete,
                        object_count: *oc,
                        bytes_used: *bu,
                        policy: *pol,
                    }
                    .merge(&row),
                    _ => row,
                },
                None => row,
            };
            let (put, del) = (merged.put.internal(), merged.delete.internal());
            let deleted = merged.deleted();
            if let Some((p, d, oc, bu, dl, pol)) = &existing {
                if *p == put
                    && *d == del
                    && *oc == merged.object_count
                    && *bu == merged.bytes_used
                    && *dl == deleted
                    && *pol == merged.policy
                {
                    continue;
                }
                delete.execute(params![name])?;
            }
            insert.execute(params![
                name,
                put,
                del,
                merged.object_count,
                merged.bytes_used,
                i64::from(deleted),
                merged.policy
            ])?;
        }
        Ok(())
    }

    fn items_since(conn: &Connection, start: i64, count: usize) -> Result<Vec<ContainerRecord>> {
        let mut st = conn.prepare_cached(
            "SELECT ROWID, name, put_timestamp, delete_timestamp, object_count, bytes_used, \
             deleted, storage_policy_index FROM container WHERE ROWID > ? ORDER BY ROWID ASC \
             LIMIT ?",
        )?;
        let rows = st.query_map(params![start, count as i64], |r| {
            Ok(ContainerRecord {
                rowid: Some(r.get(0)?),
                name: r.get(1)?,
                put_timestamp: r.get::<_, Option<String>>(2)?.unwrap_or_else(|| "0".into()),
                delete_timestamp: r.get::<_, Option<String>>(3)?.unwrap_or_else(|| "0".into()),
                object_count: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                bytes_used: r.get::<_, Option<i64>>(5)?.unwrap_or(0),
                deleted: r.get::<_, i64>(6)? != 0,
                storage_policy_index: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }
}

/// `account_stat` as a struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    pub account: String,
    pub created_at: Timestamp,
    pub put_timestamp: Timestamp,
    pub delete_timestamp: Timestamp,
    pub status_changed_at: Timestamp,
    pub container_count: i64,
    pub object_count: i64,
    pub bytes_used: i64,
    pub hash: String,
    pub id: String,
    pub status: String,
}

impl AccountInfo {
    /// Deleted: `status == 'DELETED'`, or no containers and `delete > put`.
    pub fn is_deleted(&self) -> bool {
        self.status == "DELETED"
            || (self.container_count == 0 && self.delete_timestamp > self.put_timestamp)
    }
}

/// Per-policy account stats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyStat {
    pub storage_policy_index: i64,
    pub container_count: i64,
    pub object_count: i64,
    pub bytes_used: i64,
}

/// One container of an account listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEntry {
    pub name: String,
    pub count: i64,
    pub bytes: i64,
    /// The container's put timestamp (listing `last_modified`).
    pub last_modified: Timestamp,
}

impl Broker<AccountKind> {
    /// Create an account DB (or open the existing one; `created` tells which).
    pub fn create(
        db_file: impl AsRef<Path>,
        account: &str,
        put_timestamp: Timestamp,
    ) -> Result<(Self, bool)> {
        let put = put_timestamp.internal();
        Self::create_with(db_file.as_ref(), |conn, id| {
            conn.execute(
                "INSERT INTO account_stat (account, created_at, id, put_timestamp, \
                 status_changed_at, container_count) VALUES (?, ?, ?, ?, ?, 0)",
                params![account, Timestamp::now().internal(), id, put, put],
            )?;
            Ok(())
        })
    }

    /// Record a container report (via the pending file; durable on return).
    pub fn put_container(&self, rec: &ContainerRecord) -> Result<()> {
        self.put_record(rec)
    }

    /// Info (after committing pending rows).
    pub fn get_info(&self) -> Result<AccountInfo> {
        self.commit_puts_stale_ok()?;
        let conn = self.conn();
        let (s, n) = conn.query_row(
            "SELECT account, created_at, put_timestamp, delete_timestamp, status_changed_at, \
             hash, id, status, container_count, object_count, bytes_used FROM account_stat",
            [],
            |r| {
                let mut s = Vec::with_capacity(8);
                for i in 0..8 {
                    s.push(r.get::<_, Option<String>>(i)?.unwrap_or_else(|| {
                        if (1..=4).contains(&i) {
                            "0".into()
                        } else {
                            String::new()
                        }
                    }));
                }
                let mut n = [0i64; 3];
                for (j, v) in n.iter_mut().enumerate() {
                    *v = r.get::<_, Option<i64>>(8 + j)?.unwrap_or(0);
                }
                Ok((s, n))
            },
        )?;
        Ok(AccountInfo {
            account: s[0].clone(),
            created_at: parse_ts(&s[1])?,
            put_timestamp: parse_ts(&s[2])?,
            delete_timestamp: parse_ts(&s[3])?,
            status_changed_at: parse_ts(&s[4])?,
            hash: s[5].clone(),
            id: s[6].clone(),
            status: s[7].clone(),
            container_count: n[0],
            object_count: n[1],
            bytes_used: n[2],
        })
    }

    /// See [`AccountInfo::is_deleted`].
    pub fn is_deleted(&self) -> Result<bool> {
        Ok(self.get_info()?.is_deleted())
    }

    /// `status == 'DELETED'` (a PUT must not revive it: 403 "Recently deleted").
    pub fn is_status_deleted(&self) -> Result<bool> {
        let s: Option<String> =
            self.conn()
                .query_row("SELECT status FROM account_stat", [], |r| r.get(0))?;
        Ok(s.as_deref() == Some("DELETED"))
    }

    /// No live containers.
    pub fn empty(&self) -> Result<bool> {
        Ok(self.get_info()?.container_count <= 0)
    }

    /// Per-policy stats (policies with at least one row).
    pub fn get_policy_stats(&self) -> Result<Vec<PolicyStat>> {
        self.commit_puts_stale_ok()?;
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT storage_policy_index, container_count, object_count, bytes_used \
             FROM policy_stat ORDER BY storage_policy_index",
        )?;
        let rows = st.query_map([], |r| {
            Ok(PolicyStat {
                storage_policy_index: r.get(0)?,
                container_count: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                object_count: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                bytes_used: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// DB reclaim: no live containers and `now − reclaim_age > delete_timestamp > put`.
    pub fn is_reclaimable(&self, now: Timestamp, reclaim_age: u64) -> Result<bool> {
        let info = self.get_info()?;
        let cut = Timestamp::from_raw(
            now.raw
                .saturating_sub(reclaim_age.saturating_mul(cairn_common::timestamp::UNITS_PER_SEC)),
        );
        Ok(info.container_count == 0
            && cut > info.delete_timestamp
            && info.delete_timestamp > info.put_timestamp)
    }

    /// List containers.
    pub fn list_containers_iter(&self, params: &ListParams) -> Result<Vec<Listed<ContainerEntry>>> {
        self.commit_puts_stale_ok()?;
        let conn = self.conn();
        list_rows(
            &conn,
            "container",
            "name, object_count, bytes_used, put_timestamp",
            None,
            params,
            |r| {
                let ts: Option<String> = r.get(3)?;
                Ok(ContainerEntry {
                    name: r.get(0)?,
                    count: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                    bytes: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                    last_modified: ts
                        .and_then(|t| Timestamp::parse(&t).ok())
                        .unwrap_or_default(),
                })
            },
        )
    }
}
