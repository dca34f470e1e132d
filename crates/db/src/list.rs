//! Listing queries with Swift's exact semantics (`list_objects_iter` /
//! `list_containers_iter`): marker/end_marker exclusive, `reverse` swaps them, `prefix`,
//! single- or multi-char `delimiter` producing subdir entries, legacy `path`, only
//! `deleted = 0` rows, UTF-8 byte order (SQLite's BINARY collation).
//!
//! A delimiter listing never walks through a subdirectory's rows: on the first name that
//! has the delimiter after the prefix, it emits the subdir and re-seeks the index at
//! `name >= subdir-with-delimiter-bumped` (Swift's `delim_force_gte`).

use rusqlite::types::Value;
use rusqlite::{Connection, Row};

use crate::error::Result;
use crate::util::bump_last_char;

/// Listing parameters (backend and public are the same).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    pub limit: usize,
    pub marker: String,
    pub end_marker: String,
    pub prefix: Option<String>,
    pub delimiter: Option<String>,
    /// Legacy `path`: prefix `path/` with delimiter `/`, direct children only.
    pub path: Option<String>,
    pub reverse: bool,
}

impl ListParams {
    /// `limit` rows, everything else default.
    pub fn with_limit(limit: usize) -> Self {
        ListParams {
            limit,
            ..Default::default()
        }
    }
}

/// One listing entry: an item row or a `subdir` (common prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed<T> {
    Item(T),
    Subdir(String),
}

impl<T> Listed<T> {
    /// The entry's name (item name or subdir prefix).
    pub fn name<'a>(&'a self, item_name: impl Fn(&'a T) -> &'a str) -> &'a str {
        match self {
            Listed::Item(t) => item_name(t),
            Listed::Subdir(s) => s,
        }
    }
}

/// Run a listing over `table` selecting `columns` (the first must be `name`); `policy`
/// adds `storage_policy_index = ?`.
pub(crate) fn list_rows<T>(
    conn: &Connection,
    table: &str,
    columns: &str,
    policy: Option<i64>,
    p: &ListParams,
    map: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<Listed<T>>> {
    let limit = p.limit;
    let mut results: Vec<Listed<T>> = Vec::new();
    if limit == 0 {
        return Ok(results);
    }
    let (mut marker, mut end_marker) = (p.marker.clone(), p.end_marker.clone());
    if p.reverse {
        std::mem::swap(&mut marker, &mut end_marker);
    }
    let mut prefix = p.prefix.clone();
    let mut delimiter = p.delimiter.clone().filter(|d| !d.is_empty());
    let mut path = None;
    if let Some(pa) = &p.path {
        let pp = if pa.is_empty() {
            String::new()
        } else {
            format!("{}/", pa.trim_end_matches('/'))
        };
        prefix = Some(pp.clone());
        path = Some(pp);
        delimiter = Some("/".to_string());
    } else if delimiter.is_some() && prefix.as_deref().is_none_or(str::is_empty) {
        prefix = Some(String::new());
    }
    let prefix_str = prefix.clone().unwrap_or_default();
    let end_prefix = if prefix_str.is_empty() {
        None
    } else {
        bump_last_char(&prefix_str)
    };
    let orig_marker = marker.clone();
    let mut delim_force_gte = false;
    let order = if p.reverse { "DESC" } else { "ASC" };
    // One read transaction for the whole page: a consistent snapshot, and the file locks
    // are taken once instead of once per re-seek.
    let _snapshot = conn.unchecked_transaction()?;

    while results.len() < limit {
        let mut conds: Vec<&str> = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        let end_ok = match &end_prefix {
            None => true,
            Some(ep) => end_marker < *ep,
        };
        if !end_marker.is_empty() && (prefix_str.is_empty() || end_ok) {
            conds.push("name < ?");
            args.push(Value::Text(end_marker.clone()));
        } else if let Some(ep) = &end_prefix {
            conds.push("name < ?");
            args.push(Value::Text(ep.clone()));
        }
        if delim_force_gte {
            conds.push("name >= ?");
            args.push(Value::Text(marker.clone()));
            delim_force_gte = false;
        } else if !marker.is_empty() && marker >= prefix_str {
            conds.push("name > ?");
            args.push(Value::Text(marker.clone()));
        } else if !prefix_str.is_empty() {
            conds.push("name >= ?");
            args.push(Value::Text(prefix_str.clone()));
        }
        conds.push("deleted = 0");
        if let Some(pi) = policy {
            conds.push("storage_policy_index = ?");
            args.push(Value::Integer(pi));
        }
        args.push(Value::Integer((limit - results.len()) as i64));
        let sql = format!(
            "SELECT {columns} FROM {table} WHERE {} ORDER BY name {order} LIMIT ?",
            conds.join(" AND ")
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;

        let Some(delim) = delimiter.as_deref() else {
            while let Some(row) = rows.next()? {
                results.push(Listed::Item(map(row)?));
            }
            return Ok(results);
        };

        let mut rowcount = 0usize;
        while let Some(row) = rows.next()? {
            rowcount += 1;
            if results.len() >= limit {
                return Ok(results);
            }
            let name_ref = row.get_ref(0)?;
            let name = name_ref
                .as_str()
                .map_err(|e| crate::error::DbError::Corrupt(e.to_string()))?;
            let end = name
                .get(prefix_str.len()..)
                .and_then(|rest| rest.find(delim))
                .map(|i| i + prefix_str.len());
            if let Some(pa) = &path {
                if name == pa {
                    if p.reverse {
                        end_marker = name.to_string();
                    } else {
                        marker = name.to_string();
                    }
                    continue;
                }
                if let Some(end) = end {
                    if name.len() > end + delim.len() {
                        if p.reverse {
                            end_marker = name[..end + delim.len()].to_string();
                        } else {
                            marker = bumped_marker(name, end, delim);
                        }
                        break;
                    }
                }
            } else if let Some(end) = end {
                let dir_name = name[..end + delim.len()].to_string();
                if p.reverse {
                    end_marker = dir_name.clone();
                } else {
                    marker = bumped_marker(name, end, delim);
                    delim_force_gte = true;
                }
                if dir_name != orig_marker {
                    results.push(Listed::Subdir(dir_name));
                }
                break;
            }
            if p.reverse {
                end_marker = name.to_string();
            } else {
                marker = name.to_string();
            }
            results.push(Listed::Item(map(row)?));
        }
        if rowcount == 0 {
            break;
        }
    }
    Ok(results)
}

/// `name[:end] + delimiter[:-1] + chr(ord(delimiter[-1]) + 1)`.
fn bumped_marker(name: &str, end: usize, delim: &str) -> String {
    match bump_last_char(delim) {
        Some(b) => format!("{}{}", &name[..end], b),
        None => format!("{}{}", &name[..end], delim),
    }
}
