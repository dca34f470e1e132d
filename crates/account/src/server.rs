//! The account server's request handler (`PROTOCOLS.md`, "Backend HTTP API" → "Account
//! server"; behaviour of Swift's `swift/account/server.py`). SQLite work runs on tokio's
//! blocking pool; broker errors are mapped to statuses in one place ([`db_error`]).
//!
//! * `PUT /D/P/A` → 201 created / 202 existed (metadata updated); 403 `Recently deleted`
//!   while the account's status is `DELETED` (until the DB is reclaimed, as in Swift);
//!   409 if the account is still deleted after the put timestamp update.
//! * `PUT /D/P/A/C` (a container report) → 201, or 204 when the report is a delete
//!   (`X-Delete-Timestamp > X-Put-Timestamp`); 404 when the account DB is missing (an
//!   account under the auto-create prefix is created first) or deleted (unless
//!   `X-Account-Override-Deleted: yes`).
//! * `DELETE /D/P/A` → 204 / 404; `POST /D/P/A` → 204 / 404.
//! * `HEAD`/`GET /D/P/A` → 204 / 200 (204 for an empty plain listing) with the counts,
//!   per-policy `X-Account-Storage-Policy-<Name>-…` headers and metadata; 404 when missing
//!   or deleted. 404s and 204s of deleted accounts carry `X-Account-Status: Deleted`.
//! * `REPLICATE /D/P/HASH` and `PUT /D/tmp/NAME` go to [`cairn_db::http`].

use std::path::PathBuf;
use std::sync::Arc;

use cairn_common::constraints::{self, Constraints, MetaTarget};
use cairn_common::fs::FallocateReserve;
use cairn_common::http::{
    self as chttp, check_device_async, header_str, parse_account_path, x_timestamp,
    x_timestamp_opt, Body, Handler, HttpError, RequestBody,
};
use cairn_common::{HashPathSecret, Timestamp};
use cairn_db::format;
use cairn_db::http::{
    blocking, db_error, listing_content_type, listing_params, query_params, set, status_only,
    writable_device,
};
use cairn_db::{AccountBroker, AccountInfo, ContainerRecord, DbError, Metadata, PolicyStat};
use http::{HeaderMap, Request, Response, StatusCode};

/// Settings of the account server.
#[derive(Debug, Clone)]
pub struct AccountServerSettings {
    /// Root of the devices (`/srv/node`).
    pub devices: PathBuf,
    pub mount_check: bool,
    /// PUT, POST and REPLICATE answer 507 when a device has less free space than this.
    pub fallocate_reserve: FallocateReserve,
    pub constraints: Constraints,
    /// Accounts starting with this prefix are created by their first container report.
    pub auto_create_account_prefix: String,
    /// `(index, name)` of the configured storage policies: the names of the per-policy
    /// HEAD/GET headers (stats of an unknown index are not shown, as in Swift).
    pub policies: Vec<(u32, String)>,
    /// `Some(true)`: only REPLICATE; `Some(false)`: everything else; `None`: all.
    pub replication_server: Option<bool>,
}

impl AccountServerSettings {
    /// Defaults for a devices root (policy 0 named `Policy-0`).
    pub fn new(devices: impl Into<PathBuf>) -> Self {
        AccountServerSettings {
            devices: devices.into(),
            mount_check: false,
            fallocate_reserve: FallocateReserve::default(),
            constraints: Constraints::default(),
            auto_create_account_prefix: ".".into(),
            policies: vec![(0, "Policy-0".into())],
            replication_server: None,
        }
    }
}

struct Inner {
    settings: AccountServerSettings,
    secret: HashPathSecret,
}

/// The account server request handler. Cheap to clone.
#[derive(Clone)]
pub struct AccountServer {
    inner: Arc<Inner>,
}

impl Handler for AccountServer {
    fn handle(
        &self,
        req: Request<RequestBody>,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        let this = self.clone();
        async move {
            this.dispatch(req)
                .await
                .unwrap_or_else(HttpError::into_response)
        }
    }
}

/// A response for a deleted (or missing) account: `X-Account-Status: Deleted` when the
/// account's status is `DELETED` (Swift's `_deleted_response`; the proxy does not
/// auto-create such an account).
fn deleted_response(status: StatusCode, status_deleted: bool) -> Response<Body> {
    let mut r = status_only(status);
    if status_deleted {
        set(r.headers_mut(), "X-Account-Status", "Deleted");
    }
    r
}

/// `x-account-meta-color` → `X-Account-Meta-Color`.
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn is_saved_header(lower: &str) -> bool {
    lower.starts_with("x-account-meta-") || lower.starts_with("x-account-sysmeta-")
}

/// Metadata updates carried by a PUT/POST (`X-Remove-Account-Meta-K` clears `K`), after
/// Swift's `check_metadata` limits (400).
fn request_metadata(
    headers: &HeaderMap,
    ts: Timestamp,
    c: &Constraints,
) -> Result<Metadata, HttpError> {
    constraints::check_metadata(
        headers
            .iter()
            .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes())),
        MetaTarget::Account,
        c,
    )?;
    let mut md = Metadata::new();
    for (name, value) in headers {
        let lower = name.as_str();
        if let Some(rest) = lower.strip_prefix("x-remove-account-meta-") {
            md.insert(
                title_case(&format!("x-account-meta-{rest}")),
                (String::new(), ts.internal()),
            );
        } else if is_saved_header(lower) {
            let value = std::str::from_utf8(value.as_bytes())
                .map_err(|_| HttpError::bad_request("Metadata must be valid UTF-8"))?;
            md.insert(title_case(lower), (value.to_string(), ts.internal()));
        }
    }
    Ok(md)
}

/// A required integer header (400 when missing or not an integer).
fn int_header(headers: &HeaderMap, name: &str) -> Result<i64, HttpError> {
    header_str(headers, name)
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| HttpError::bad_request(format!("Missing or invalid {name} header")))
}

/// A required timestamp header (400 when missing or invalid).
fn ts_header(headers: &HeaderMap, name: &str) -> Result<Timestamp, HttpError> {
    header_str(headers, name)
        .and_then(|v| Timestamp::parse(v.trim()).ok())
        .ok_or_else(|| HttpError::bad_request(format!("Missing or invalid {name} header")))
}

/// Outcome of an account PUT.
enum AccountPut {
    Created,
    Accepted,
    RecentlyDeleted,
    Conflict,
}

/// What HEAD/GET read from the DB in one blocking call.
struct Snapshot {
    info: AccountInfo,
    policy_stats: Vec<PolicyStat>,
    metadata: Metadata,
    body: Option<String>,
}

enum Read {
    Found(Box<Snapshot>),
    /// Missing or deleted; `true` when the status is `DELETED`.
    Gone(bool),
}

impl AccountServer {
    pub fn new(settings: AccountServerSettings, secret: HashPathSecret) -> Self {
        AccountServer {
            inner: Arc::new(Inner { settings, secret }),
        }
    }

    pub fn settings(&self) -> &AccountServerSettings {
        &self.inner.settings
    }

    async fn dispatch(&self, req: Request<RequestBody>) -> Result<Response<Body>, HttpError> {
        let method = req.method().clone();
        let is_replication = method.as_str() == "REPLICATE";
        match self.settings().replication_server {
            Some(true) if !is_replication => {
                return Ok(status_only(StatusCode::METHOD_NOT_ALLOWED))
            }
            Some(false) if is_replication => {
                return Ok(status_only(StatusCode::METHOD_NOT_ALLOWED))
            }
            _ => {}
        }
        match method.as_str() {
            "PUT" if chttp::parse_tmp_path(req.uri().path()).is_some() => {
                let s = self.settings();
                cairn_db::http::upload_request(&s.devices, s.mount_check, s.fallocate_reserve, req)
                    .await
            }
            "REPLICATE" => {
                let s = self.settings();
                cairn_db::http::replicate_request::<cairn_db::AccountKind>(
                    &s.devices,
                    s.mount_check,
                    s.fallocate_reserve,
                    req,
                )
                .await
            }
            "PUT" => self.put(req).await,
            "DELETE" => self.delete(req).await,
            "POST" => self.post(req).await,
            "HEAD" => self.get_or_head(req, true).await,
            "GET" => self.get_or_head(req, false).await,
            _ => Ok(status_only(StatusCode::METHOD_NOT_ALLOWED)),
        }
    }

    /// `(device, account, container)` of `/D/P/A[/C]` and the account DB file (after
    /// the device check: 507). `for_write` (PUT, POST) also refuses, 507, a device below
    /// `fallocate_reserve`, as Swift; DELETEs are not refused: they are how space comes back.
    async fn db_file(
        &self,
        raw_path: &str,
        allow_container: bool,
        for_write: bool,
    ) -> Result<(String, Option<String>, PathBuf), HttpError> {
        let p = parse_account_path(raw_path)?;
        if p.container.is_some() && !allow_container {
            return Err(HttpError::bad_request("Invalid path"));
        }
        let s = self.settings();
        if for_write {
            writable_device(&s.devices, &p.device, s.mount_check, s.fallocate_reserve).await?;
        } else {
            check_device_async(&s.devices, &p.device, s.mount_check).await?;
        }
        let hash = self.inner.secret.hash_path(&p.account, None, None);
        let file = cairn_db::db_path(&s.devices, &p.device, "accounts", p.partition, &hash);
        Ok((p.account, p.container, file))
    }

    fn autocreate(&self, account: &str) -> bool {
        let prefix = &self.settings().auto_create_account_prefix;
        !prefix.is_empty() && account.starts_with(prefix.as_str())
    }

    async fn put(&self, req: Request<RequestBody>) -> Result<Response<Body>, HttpError> {
        let headers = req.headers().clone();
        let (account, container, db_file) = self.db_file(req.uri().path(), true, true).await?;
        drop(req);
        match container {
            Some(container) => {
                self.put_container(&headers, account, container, db_file)
                    .await
            }
            None => self.put_account(&headers, account, db_file).await,
        }
    }

    /// A container report from a container server or the container-updater.
    async fn put_container(
        &self,
        headers: &HeaderMap,
        account: String,
        container: String,
        db_file: PathBuf,
    ) -> Result<Response<Body>, HttpError> {
        let ts = x_timestamp_opt(headers)?.unwrap_or_else(Timestamp::now);
        let put = ts_header(headers, "x-put-timestamp")?;
        let delete = ts_header(headers, "x-delete-timestamp")?;
        let object_count = int_header(headers, "x-object-count")?;
        let bytes_used = int_header(headers, "x-bytes-used")?;
        let policy = match header_str(headers, "x-backend-storage-policy-index") {
            None => 0,
            Some(v) => v.trim().parse::<u32>().map_err(|_| {
                HttpError::bad_request(format!("Invalid X-Backend-Storage-Policy-Index {v:?}"))
            })?,
        };
        let override_deleted = header_str(headers, "x-account-override-deleted")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("yes"));
        let auto = self.autocreate(&account);
        let rec = ContainerRecord::new(
            &container,
            put,
            delete,
            object_count,
            bytes_used,
            i64::from(policy),
        );
        let found = blocking(move || {
            let broker = if auto && !db_file.exists() {
                AccountBroker::create(&db_file, &account, ts)
                    .map(|(b, _)| b)
                    .map_err(db_error)?
            } else {
                match AccountBroker::open(&db_file) {
                    Ok(b) => b,
                    Err(DbError::NotFound(_)) | Err(DbError::Quarantined(_)) => return Ok(false),
                    Err(e) => return Err(db_error(e)),
                }
            };
            if !override_deleted && broker.is_deleted().map_err(db_error)? {
                return Ok(false);
            }
            broker.put_container(&rec).map_err(db_error)?;
            Ok(true)
        })
        .await?;
        Ok(status_only(if !found {
            StatusCode::NOT_FOUND
        } else if delete > put {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::CREATED
        }))
    }

    async fn put_account(
        &self,
        headers: &HeaderMap,
        account: String,
        db_file: PathBuf,
    ) -> Result<Response<Body>, HttpError> {
        let ts = x_timestamp(headers)?;
        let md = request_metadata(headers, ts, &self.settings().constraints)?;
        let limits = self.settings().constraints.clone();
        let outcome = blocking(move || {
            let (broker, created) =
                AccountBroker::create(&db_file, &account, ts).map_err(db_error)?;
            let created = if created {
                true
            } else {
                if broker.is_status_deleted().map_err(db_error)? {
                    return Ok(AccountPut::RecentlyDeleted);
                }
                let was_deleted = broker.is_deleted().map_err(db_error)?;
                broker.update_put_timestamp(ts).map_err(db_error)?;
                if broker.is_deleted().map_err(db_error)? {
                    return Ok(AccountPut::Conflict);
                }
                was_deleted
            };
            if !md.is_empty() {
                broker
                    .update_metadata(&md, Some(&limits))
                    .map_err(db_error)?;
            }
            Ok(if created {
                AccountPut::Created
            } else {
                AccountPut::Accepted
            })
        })
        .await?;
        Ok(match outcome {
            AccountPut::Created => status_only(StatusCode::CREATED),
            AccountPut::Accepted => status_only(StatusCode::ACCEPTED),
            AccountPut::Conflict => status_only(StatusCode::CONFLICT),
            AccountPut::RecentlyDeleted => {
                let mut r = chttp::text(StatusCode::FORBIDDEN, "Recently deleted");
                set(r.headers_mut(), "X-Account-Status", "Deleted");
                r
            }
        })
    }

    async fn delete(&self, req: Request<RequestBody>) -> Result<Response<Body>, HttpError> {
        // Swift's order: path (400), device (507), timestamp (400)
        let (_, _, db_file) = self.db_file(req.uri().path(), false, false).await?;
        let ts = x_timestamp(req.headers())?;
        drop(req);
        let deleted_now = blocking(move || {
            let broker = match AccountBroker::open(&db_file) {
                Ok(b) => b,
                Err(DbError::NotFound(_)) | Err(DbError::Quarantined(_)) => return Ok(None),
                Err(e) => return Err(db_error(e)),
            };
            if broker.is_deleted().map_err(db_error)? {
                return Ok(Some((false, broker.is_status_deleted().map_err(db_error)?)));
            }
            broker.delete_db(ts).map_err(db_error)?;
            Ok(Some((true, broker.is_status_deleted().map_err(db_error)?)))
        })
        .await?;
        Ok(match deleted_now {
            None => status_only(StatusCode::NOT_FOUND),
            Some((false, st)) => deleted_response(StatusCode::NOT_FOUND, st),
            Some((true, st)) => deleted_response(StatusCode::NO_CONTENT, st),
        })
    }

    async fn post(&self, req: Request<RequestBody>) -> Result<Response<Body>, HttpError> {
        // Swift's order: path (400), timestamp (400), device (507)
        parse_account_path(req.uri().path())?;
        let ts = x_timestamp(req.headers())?;
        let md = request_metadata(req.headers(), ts, &self.settings().constraints)?;
        let (_, _, db_file) = self.db_file(req.uri().path(), false, true).await?;
        drop(req);
        let limits = self.settings().constraints.clone();
        let gone = blocking(move || {
            let broker = match AccountBroker::open(&db_file) {
                Ok(b) => b,
                Err(DbError::NotFound(_)) | Err(DbError::Quarantined(_)) => return Ok(Some(false)),
                Err(e) => return Err(db_error(e)),
            };
            if broker.is_deleted().map_err(db_error)? {
                return Ok(Some(broker.is_status_deleted().map_err(db_error)?));
            }
            if !md.is_empty() {
                broker
                    .update_metadata(&md, Some(&limits))
                    .map_err(db_error)?;
            }
            Ok(None)
        })
        .await?;
        Ok(match gone {
            Some(st) => deleted_response(StatusCode::NOT_FOUND, st),
            None => status_only(StatusCode::NO_CONTENT),
        })
    }

    async fn get_or_head(
        &self,
        req: Request<RequestBody>,
        head: bool,
    ) -> Result<Response<Body>, HttpError> {
        let p = parse_account_path(req.uri().path())?;
        if p.container.is_some() {
            return Err(HttpError::bad_request("Invalid path"));
        }
        let params = query_params(req.uri().query())?;
        let fmt = params
            .iter()
            .find(|(k, _)| k == "format")
            .map(|(_, v)| v.as_str());
        let out_type = listing_content_type(fmt, header_str(req.headers(), "accept"))?;
        let lp = if head {
            None
        } else {
            let mut lp = listing_params(
                &params,
                self.settings().constraints.account_listing_limit as usize,
            )?;
            lp.path = None; // account listings have no `path`
            Some(lp)
        };
        let (account, _, db_file) = self.db_file(req.uri().path(), false, false).await?;
        drop(req);
        let acct = account.clone();
        let read = blocking(move || {
            let broker = match AccountBroker::open(&db_file) {
                Ok(b) => b,
                Err(DbError::NotFound(_)) | Err(DbError::Quarantined(_)) => {
                    return Ok(Read::Gone(false))
                }
                Err(e) => return Err(db_error(e)),
            };
            let info = broker.get_info().map_err(db_error)?;
            if info.is_deleted() {
                return Ok(Read::Gone(info.status == "DELETED"));
            }
            let policy_stats = broker.get_policy_stats().map_err(db_error)?;
            let metadata = broker.metadata().map_err(db_error)?;
            let body = match lp {
                None => None,
                Some(lp) => {
                    let list = broker.list_containers_iter(&lp).map_err(db_error)?;
                    Some(match out_type {
                        "application/json" => format::account_json(&list),
                        "application/xml" | "text/xml" => format::account_xml(&acct, &list),
                        _ => format::account_plain(&list),
                    })
                }
            };
            Ok(Read::Found(Box::new(Snapshot {
                info,
                policy_stats,
                metadata,
                body,
            })))
        })
        .await?;
        let snap = match read {
            Read::Gone(st) => return Ok(deleted_response(StatusCode::NOT_FOUND, st)),
            Read::Found(s) => s,
        };
        let mut h = self.response_headers(&snap);
        set(&mut h, "Content-Type", format!("{out_type}; charset=utf-8"));
        let body = snap.body.unwrap_or_default();
        let status = if head || body.is_empty() {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::OK
        };
        let mut resp = Response::new(if head {
            chttp::empty()
        } else {
            chttp::full(body)
        });
        *resp.status_mut() = status;
        resp.headers_mut().extend(h);
        Ok(resp)
    }

    /// Swift's `get_response_headers`: counts, timestamps, per-policy stats, metadata.
    fn response_headers(&self, snap: &Snapshot) -> HeaderMap {
        let info = &snap.info;
        let mut h = HeaderMap::new();
        set(&mut h, "X-Account-Container-Count", info.container_count);
        set(&mut h, "X-Account-Object-Count", info.object_count);
        set(&mut h, "X-Account-Bytes-Used", info.bytes_used);
        set(&mut h, "X-Timestamp", info.created_at.normal());
        set(&mut h, "X-PUT-Timestamp", info.put_timestamp.normal());
        for ps in &snap.policy_stats {
            let Some((_, name)) = self
                .settings()
                .policies
                .iter()
                .find(|(i, _)| i64::from(*i) == ps.storage_policy_index)
            else {
                continue;
            };
            let prefix = format!("X-Account-Storage-Policy-{name}");
            set(&mut h, &format!("{prefix}-Object-Count"), ps.object_count);
            set(&mut h, &format!("{prefix}-Bytes-Used"), ps.bytes_used);
            set(
                &mut h,
                &format!("{prefix}-Container-Count"),
                ps.container_count,
            );
        }
        for (k, (v, _)) in &snap.metadata {
            if !v.is_empty() {
                set(&mut h, k, v);
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn metadata_from_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-account-meta-color", HeaderValue::from_static("blue"));
        h.insert("x-account-sysmeta-x", HeaderValue::from_static("1"));
        h.insert("x-remove-account-meta-old", HeaderValue::from_static("x"));
        h.insert("x-container-meta-no", HeaderValue::from_static("1"));
        let ts = Timestamp::from_secs(1_700_000_000);
        let md = request_metadata(&h, ts, &Constraints::default()).unwrap();
        assert_eq!(md.len(), 3);
        assert_eq!(md["X-Account-Meta-Color"].0, "blue");
        assert_eq!(md["X-Account-Sysmeta-X"].0, "1");
        assert_eq!(md["X-Account-Meta-Old"].0, "");
        let mut h = HeaderMap::new();
        h.insert("x-account-meta-", HeaderValue::from_static("v"));
        assert_eq!(
            request_metadata(&h, ts, &Constraints::default())
                .unwrap_err()
                .status,
            StatusCode::BAD_REQUEST
        );
    }
}
