//! The container server's request handler. SQLite work runs on tokio's blocking pool;
//! broker errors are mapped to statuses in one place ([`db_error`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_common::constraints::{self, Constraints, MetaTarget};
use cairn_common::fs::FallocateReserve;
use cairn_common::http::{
    self as chttp, check_device_async, header_str, parse_container_path, trans_id, x_timestamp,
    BackendClient, Body, Handler, HttpError, RequestBody, Timeouts,
};
use cairn_common::{HashPathSecret, Timestamp};
use cairn_db::format;
use cairn_db::http::{
    blocking, db_error, listing_content_type, listing_params, query_params, set, status_only,
    writable_device,
};
use cairn_db::{ContainerBroker, DbError, Metadata, ObjectRecord};
use http::{HeaderMap, Method, Request, Response, StatusCode};

/// Headers saved as container metadata besides `X-Container-Meta-*`/`-Sysmeta-*`.
pub const SAVE_HEADERS: [&str; 6] = [
    "x-container-read",
    "x-container-write",
    "x-container-sync-key",
    "x-container-sync-to",
    "x-versions-location",
    "x-history-location",
];

/// Settings of the container server.
#[derive(Debug, Clone)]
pub struct ContainerServerSettings {
    /// Root of the devices (`/srv/node`).
    pub devices: PathBuf,
    pub mount_check: bool,
    /// PUT, POST and REPLICATE answer 507 when a device has less free space than this.
    pub fallocate_reserve: FallocateReserve,
    pub constraints: Constraints,
    /// Accounts starting with this prefix get their containers created on first use.
    pub auto_create_account_prefix: String,
    /// Configured storage policy indexes (empty: any index is accepted).
    pub policies: Vec<u32>,
    /// Policy of new containers when the request names none.
    pub default_policy: u32,
    /// Connect/node timeouts of account updates.
    pub account_update_timeouts: Timeouts,
    /// `Some(true)`: only REPLICATE; `Some(false)`: everything else; `None`: all.
    pub replication_server: Option<bool>,
}

impl ContainerServerSettings {
    /// Defaults for a devices root.
    pub fn new(devices: impl Into<PathBuf>) -> Self {
        ContainerServerSettings {
            devices: devices.into(),
            mount_check: false,
            fallocate_reserve: FallocateReserve::default(),
            constraints: Constraints::default(),
            auto_create_account_prefix: ".".into(),
            policies: Vec::new(),
            default_policy: 0,
            account_update_timeouts: Timeouts::default(),
            replication_server: None,
        }
    }
}

struct Inner {
    settings: ContainerServerSettings,
    secret: HashPathSecret,
    client: BackendClient,
}

/// The container server request handler. Cheap to clone.
#[derive(Clone)]
pub struct ContainerServer {
    inner: Arc<Inner>,
}

impl Handler for ContainerServer {
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

enum PutOutcome {
    Done {
        created: bool,
        policy: i64,
    },
    /// 409, with the existing container's policy when that was the reason.
    Conflict(Option<i64>),
}

struct ContPath {
    device: String,
    partition: u32,
    account: String,
    container: String,
    obj: Option<String>,
}

/// `x-container-meta-color` → `X-Container-Meta-Color`.
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
    SAVE_HEADERS.contains(&lower)
        || lower.starts_with("x-container-meta-")
        || lower.starts_with("x-container-sysmeta-")
}

/// Metadata updates carried by a PUT/POST (`X-Remove-Container-Meta-K` clears `K`).
fn request_metadata(headers: &HeaderMap, ts: Timestamp) -> Result<Metadata, HttpError> {
    let mut md = Metadata::new();
    for (name, value) in headers {
        let lower = name.as_str();
        let value = std::str::from_utf8(value.as_bytes())
            .map_err(|_| HttpError::bad_request("Metadata must be valid UTF-8"))?;
        if let Some(rest) = lower.strip_prefix("x-remove-container-meta-") {
            md.insert(
                title_case(&format!("x-container-meta-{rest}")),
                (String::new(), ts.internal()),
            );
        } else if is_saved_header(lower) {
            md.insert(title_case(lower), (value.to_string(), ts.internal()));
        }
    }
    Ok(md)
}

impl ContainerServer {
    pub fn new(settings: ContainerServerSettings, secret: HashPathSecret) -> Self {
        let client = BackendClient::new(settings.account_update_timeouts);
        ContainerServer {
            inner: Arc::new(Inner {
                settings,
                secret,
                client,
            }),
        }
    }

    fn settings(&self) -> &ContainerServerSettings {
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
            "PUT" if chttp::parse_tmp_path(req.uri().path()).is_some() => self.upload_db(req).await,
            "REPLICATE" => self.replicate(req).await,
            "PUT" => self.put(req).await,
            "DELETE" => self.delete(req).await,
            "POST" => self.post(req).await,
            "HEAD" => self.get_or_head(req, true).await,
            "GET" => self.get_or_head(req, false).await,
            _ => Ok(status_only(StatusCode::METHOD_NOT_ALLOWED)),
        }
    }

    fn path<B>(&self, req: &Request<B>) -> Result<ContPath, HttpError> {
        let p = parse_container_path(req.uri().path())?;
        let Some(container) = p.container else {
            return Err(HttpError::bad_request("Invalid path"));
        };
        Ok(ContPath {
            device: p.device,
            partition: p.partition,
            account: p.account,
            container,
            obj: p.object,
        })
    }

    /// The requested policy index, if any (503 for an unknown one, like the object server).
    fn requested_policy(&self, headers: &HeaderMap, name: &str) -> Result<Option<u32>, HttpError> {
        let Some(v) = header_str(headers, name) else {
            return Ok(None);
        };
        let p: u32 = v.trim().parse().map_err(|_| {
            HttpError::new(StatusCode::BAD_REQUEST, format!("Invalid {name} {v:?}"))
        })?;
        let s = self.settings();
        if !s.policies.is_empty() && !s.policies.contains(&p) {
            return Err(HttpError::new(
                StatusCode::BAD_REQUEST,
                format!("Invalid {name} {p:?}"),
            ));
        }
        Ok(Some(p))
    }

    async fn db_file(&self, p: &ContPath) -> Result<PathBuf, HttpError> {
        let s = self.settings();
        check_device_async(&s.devices, &p.device, s.mount_check).await?;
        Ok(self.db_path(p))
    }

    /// [`Self::db_file`] for a PUT or POST: also 507 below `fallocate_reserve`, as Swift.
    /// DELETEs are not refused (Swift does not either): they are how space comes back.
    async fn db_file_for_write(&self, p: &ContPath) -> Result<PathBuf, HttpError> {
        let s = self.settings();
        writable_device(&s.devices, &p.device, s.mount_check, s.fallocate_reserve).await?;
        Ok(self.db_path(p))
    }

    fn db_path(&self, p: &ContPath) -> PathBuf {
        let s = self.settings();
        let hash = self
            .inner
            .secret
            .hash_path(&p.account, Some(&p.container), None);
        cairn_db::db_path(&s.devices, &p.device, "containers", p.partition, &hash)
    }

    fn autocreate(&self, account: &str) -> bool {
        let prefix = &self.settings().auto_create_account_prefix;
        !prefix.is_empty() && account.starts_with(prefix.as_str())
    }

    async fn put(&self, req: Request<RequestBody>) -> Result<Response<Body>, HttpError> {
        let p = self.path(&req)?;
        let ts = x_timestamp(req.headers())?;
        let headers = req.headers().clone();
        let (referer, txn) = (referer(&req), trans_id(&req).to_string());
        drop(req);
        let requested = self.requested_policy(&headers, "x-backend-storage-policy-index")?;
        let db_file = self.db_file_for_write(&p).await?;
        if let Some(obj) = p.obj.clone() {
            constraints::check_object_name(&obj, &self.settings().constraints)?;
            let policy = i64::from(requested.unwrap_or(0));
            let size: u64 = header_str(&headers, "x-size")
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| HttpError::bad_request("Missing or invalid X-Size header"))?;
            let ctype = header_str(&headers, "x-content-type")
                .ok_or_else(|| HttpError::bad_request("Missing X-Content-Type header"))?
                .to_string();
            let etag = header_str(&headers, "x-etag")
                .ok_or_else(|| HttpError::bad_request("Missing X-Etag header"))?
                .to_string();
            let mut rec = ObjectRecord::put(&obj, ts, size, &ctype, &etag).with_policy(policy);
            for (h, set_ts) in [("x-content-type-timestamp", 0), ("x-meta-timestamp", 1)] {
                if let Some(v) = header_str(&headers, h) {
                    let t = Timestamp::parse(v.trim())
                        .map_err(|_| HttpError::bad_request(format!("Invalid {h}")))?;
                    rec = if set_ts == 0 {
                        rec.with_ctype_timestamp(t)
                    } else {
                        rec.with_meta_timestamp(t)
                    };
                }
            }
            let auto = self.autocreate(&p.account);
            let (a, c) = (p.account.clone(), p.container.clone());
            blocking(move || {
                if db_file.is_file() {
                    // The hot path: a durable append, no SQLite open.
                    return ContainerBroker::append_pending(&db_file, std::slice::from_ref(&rec))
                        .map_err(db_error);
                }
                let broker = open_or_autocreate(&db_file, auto, &a, &c, ts, policy)?;
                broker.put_object(&rec).map_err(db_error)
            })
            .await?;
            return Ok(status_only(StatusCode::CREATED));
        }
        // container PUT
        constraints::check_metadata(
            headers
                .iter()
                .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes())),
            MetaTarget::Container,
            &self.settings().constraints,
        )?;
        let md = request_metadata(&headers, ts)?;
        let new_policy = match requested {
            Some(p) => p,
            None => self
                .requested_policy(&headers, "x-backend-storage-policy-default")?
                .unwrap_or(self.settings().default_policy),
        };
        let (a, c) = (p.account.clone(), p.container.clone());
        let db = db_file.clone();
        let limits = self.settings().constraints.clone();
        let outcome = blocking(move || {
            let (broker, created) = ContainerBroker::create(&db, &a, &c, ts, i64::from(new_policy))
                .map_err(db_error)?;
            let created = if created {
                true
            } else {
                let recreated = broker.is_deleted().map_err(db_error)?;
                let current = broker.storage_policy_index().map_err(db_error)?;
                if recreated {
                    broker
                        .set_storage_policy_index(i64::from(new_policy), ts)
                        .map_err(db_error)?;
                } else if let Some(r) = requested {
                    if i64::from(r) != current {
                        return Ok(PutOutcome::Conflict(Some(current)));
                    }
                }
                broker.update_put_timestamp(ts).map_err(db_error)?;
                if broker.is_deleted().map_err(db_error)? {
                    return Ok(PutOutcome::Conflict(None));
                }
                if recreated {
                    broker.update_status_changed_at(ts).map_err(db_error)?;
                }
                recreated
            };
            if !md.is_empty() {
                broker
                    .update_metadata(&md, Some(&limits))
                    .map_err(db_error)?;
            }
            Ok(PutOutcome::Done {
                created,
                policy: broker.storage_policy_index().map_err(db_error)?,
            })
        })
        .await?;
        let (created, policy) = match outcome {
            PutOutcome::Done { created, policy } => (created, policy),
            PutOutcome::Conflict(policy) => {
                let mut resp = status_only(StatusCode::CONFLICT);
                if let Some(p) = policy {
                    set(resp.headers_mut(), "x-backend-storage-policy-index", p);
                }
                return Ok(resp);
            }
        };
        if let Some(resp) = self
            .account_update(&headers, referer, txn, &p, &db_file)
            .await?
        {
            return Ok(resp);
        }
        let mut resp = status_only(if created {
            StatusCode::CREATED
        } else {
            StatusCode::ACCEPTED
        });
        set(resp.headers_mut(), "x-backend-storage-policy-index", policy);
        Ok(resp)
    }

    async fn delete(&self, req: Request<RequestBody>) -> Result<Response<Body>, HttpError> {
        let p = self.path(&req)?;
        let ts = x_timestamp(req.headers())?;
        let headers = req.headers().clone();
        let (referer, txn) = (referer(&req), trans_id(&req).to_string());
        drop(req);
        let policy = i64::from(
            self.requested_policy(&headers, "x-backend-storage-policy-index")?
                .unwrap_or(0),
        );
        let db_file = self.db_file(&p).await?;
        if let Some(obj) = p.obj.clone() {
            let auto = self.autocreate(&p.account);
            let (a, c) = (p.account.clone(), p.container.clone());
            blocking(move || {
                if db_file.is_file() {
                    let rec = ObjectRecord::delete(&obj, ts).with_policy(policy);
                    return ContainerBroker::append_pending(&db_file, std::slice::from_ref(&rec))
                        .map_err(db_error);
                }
                let broker = open_or_autocreate(&db_file, auto, &a, &c, ts, policy)?;
                broker.delete_object(&obj, ts, policy).map_err(db_error)
            })
            .await?;
            return Ok(status_only(StatusCode::NO_CONTENT));
        }
        let db = db_file.clone();
        let existed = blocking(move || {
            let broker = ContainerBroker::open(&db).map_err(db_error)?;
            if !broker.empty().map_err(db_error)? {
                return Err(db_error(DbError::Conflict("not empty".into())));
            }
            let info = broker.get_info().map_err(db_error)?;
            let existed = info.put_timestamp > Timestamp::ZERO && !info.is_deleted();
            broker.delete_db(ts).map_err(db_error)?;
            if !broker.is_deleted().map_err(db_error)? {
                return Err(db_error(DbError::Conflict("not deleted".into())));
            }
            Ok(existed)
        })
        .await?;
        if let Some(resp) = self
            .account_update(&headers, referer, txn, &p, &db_file)
            .await?
        {
            return Ok(resp);
        }
        Ok(status_only(if existed {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::NOT_FOUND
        }))
    }

    async fn post(&self, req: Request<RequestBody>) -> Result<Response<Body>, HttpError> {
        let p = self.path(&req)?;
        if p.obj.is_some() {
            return Err(HttpError::bad_request("Invalid path"));
        }
        let ts = x_timestamp(req.headers())?;
        let headers = req.headers().clone();
        constraints::check_metadata(
            headers
                .iter()
                .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes())),
            MetaTarget::Container,
            &self.settings().constraints,
        )?;
        let md = request_metadata(&headers, ts)?;
        let db_file = self.db_file_for_write(&p).await?;
        let limits = self.settings().constraints.clone();
        blocking(move || {
            let broker = ContainerBroker::open(&db_file).map_err(db_error)?;
            if broker.is_deleted().map_err(db_error)? {
                return Err(HttpError::new(StatusCode::NOT_FOUND, ""));
            }
            if !md.is_empty() {
                broker
                    .update_metadata(&md, Some(&limits))
                    .map_err(db_error)?;
            }
            Ok(())
        })
        .await?;
        Ok(status_only(StatusCode::NO_CONTENT))
    }

    async fn get_or_head(
        &self,
        req: Request<RequestBody>,
        head: bool,
    ) -> Result<Response<Body>, HttpError> {
        let p = self.path(&req)?;
        if p.obj.is_some() {
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
            Some(listing_params(
                &params,
                self.settings().constraints.container_listing_limit as usize,
            )?)
        };
        let db_file = self.db_file(&p).await?;
        let container = p.container.clone();
        let (info, md, body) = blocking(move || {
            let broker = match ContainerBroker::open(&db_file) {
                Ok(b) => b,
                Err(DbError::NotFound(_)) | Err(DbError::Quarantined(_)) => {
                    return Err(HttpError::new(StatusCode::NOT_FOUND, ""))
                }
                Err(e) => return Err(db_error(e)),
            };
            let info = broker.get_info().map_err(db_error)?;
            if info.is_deleted() {
                return Ok((info, Metadata::new(), None));
            }
            let md = broker.metadata().map_err(db_error)?;
            let body = match lp {
                None => None,
                Some(lp) => {
                    let list = broker
                        .list_objects_iter(&lp, Some(info.storage_policy_index))
                        .map_err(db_error)?;
                    Some(match out_type {
                        "application/json" => format::container_json(&list),
                        "application/xml" | "text/xml" => format::container_xml(&container, &list),
                        _ => format::container_plain(&list),
                    })
                }
            };
            Ok((info, md, body))
        })
        .await?;
        let mut h = HeaderMap::new();
        set(&mut h, "X-Backend-Timestamp", info.created_at.internal());
        set(
            &mut h,
            "X-Backend-PUT-Timestamp",
            info.put_timestamp.internal(),
        );
        set(
            &mut h,
            "X-Backend-DELETE-Timestamp",
            info.delete_timestamp.internal(),
        );
        set(
            &mut h,
            "X-Backend-Status-Changed-At",
            info.status_changed_at.internal(),
        );
        set(
            &mut h,
            "X-Backend-Storage-Policy-Index",
            info.storage_policy_index,
        );
        if info.is_deleted() {
            let mut resp = status_only(StatusCode::NOT_FOUND);
            resp.headers_mut().extend(h);
            return Ok(resp);
        }
        set(&mut h, "X-Container-Object-Count", info.object_count);
        set(&mut h, "X-Container-Bytes-Used", info.bytes_used);
        set(&mut h, "X-Timestamp", info.created_at.normal());
        set(&mut h, "X-PUT-Timestamp", info.put_timestamp.normal());
        for (k, (v, _)) in &md {
            if !v.is_empty() && is_saved_header(&k.to_ascii_lowercase()) {
                set(&mut h, k, v);
            }
        }
        set(&mut h, "Content-Type", format!("{out_type}; charset=utf-8"));
        set(&mut h, "Last-Modified", info.put_timestamp.http_date());
        let body = body.unwrap_or_default();
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

    /// `REPLICATE /DEV/PART/HASH` (the DB replication RPC, [`cairn_db::http`]).
    async fn replicate(&self, req: Request<RequestBody>) -> Result<Response<Body>, HttpError> {
        let s = self.settings();
        cairn_db::http::replicate_request::<cairn_db::ContainerKind>(
            &s.devices,
            s.mount_check,
            s.fallocate_reserve,
            req,
        )
        .await
    }

    /// `PUT /DEV/tmp/NAME`: a whole-DB upload ([`cairn_db::http`]).
    async fn upload_db(&self, req: Request<RequestBody>) -> Result<Response<Body>, HttpError> {
        let s = self.settings();
        cairn_db::http::upload_request(&s.devices, s.mount_check, s.fallocate_reserve, req).await
    }

    /// Tell the account servers named by the request about this container; `Some(404)`
    /// when every one of them answered 404 (the account does not exist).
    async fn account_update(
        &self,
        h: &HeaderMap,
        referer: String,
        txn: String,
        p: &ContPath,
        db_file: &Path,
    ) -> Result<Option<Response<Body>>, HttpError> {
        let hosts: Vec<String> = header_str(h, "x-account-host")
            .unwrap_or("")
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        let devices: Vec<String> = header_str(h, "x-account-device")
            .unwrap_or("")
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        let partition = header_str(h, "x-account-partition")
            .unwrap_or("")
            .trim()
            .to_string();
        if hosts.len() != devices.len() {
            tracing::error!("ERROR Account update failed: different numbers of hosts and devices");
            return Err(HttpError::bad_request(""));
        }
        if partition.is_empty() || hosts.iter().all(|x| x.is_empty()) {
            return Ok(None);
        }
        let db = db_file.to_path_buf();
        let info = blocking(move || {
            ContainerBroker::open(&db)
                .and_then(|b| b.get_info())
                .map_err(db_error)
        })
        .await?;
        let override_deleted = header_str(h, "x-account-override-deleted")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes"));
        let partition: u32 = partition
            .parse()
            .map_err(|_| HttpError::bad_request("Invalid X-Account-Partition"))?;
        let mut futures = Vec::new();
        for (host, device) in hosts.iter().zip(devices.iter()) {
            let mut headers = HeaderMap::new();
            set(
                &mut headers,
                "x-put-timestamp",
                info.put_timestamp.internal(),
            );
            set(
                &mut headers,
                "x-delete-timestamp",
                info.delete_timestamp.internal(),
            );
            set(&mut headers, "x-object-count", info.object_count);
            set(&mut headers, "x-bytes-used", info.bytes_used);
            set(&mut headers, "x-trans-id", &txn);
            set(
                &mut headers,
                "x-backend-storage-policy-index",
                info.storage_policy_index,
            );
            set(
                &mut headers,
                "user-agent",
                format!("container-server {}", std::process::id()),
            );
            set(&mut headers, "referer", &referer);
            if override_deleted {
                set(&mut headers, "x-account-override-deleted", "yes");
            }
            let dev_path =
                chttp::backend_path(device, partition, &p.account, Some(&p.container), None);
            let client = self.inner.client.clone();
            let host = host.clone();
            futures.push(tokio::spawn(async move {
                match client
                    .request(Method::PUT, &host, &dev_path, headers, chttp::empty())
                    .await
                {
                    Ok(resp) => {
                        let status = resp.status;
                        let _ = resp.bytes(65_536).await;
                        if !status.is_success() && status != StatusCode::NOT_FOUND {
                            tracing::error!(%host, %status, "account update failed");
                        }
                        Some(status)
                    }
                    Err(e) => {
                        tracing::error!(%host, error = %e, "account update failed");
                        None
                    }
                }
            }));
        }
        let n = futures.len();
        let mut not_found = 0;
        for f in futures {
            if let Ok(Some(StatusCode::NOT_FOUND)) = f.await {
                not_found += 1;
            }
        }
        if n > 0 && not_found == n {
            return Ok(Some(status_only(StatusCode::NOT_FOUND)));
        }
        Ok(None)
    }
}

fn referer<B>(req: &Request<B>) -> String {
    format!("{} {}", req.method(), req.uri().path())
}

/// Open the container DB; for auto-create accounts create it first.
fn open_or_autocreate(
    db_file: &Path,
    auto: bool,
    account: &str,
    container: &str,
    ts: Timestamp,
    policy: i64,
) -> Result<ContainerBroker, HttpError> {
    if auto && !db_file.exists() {
        return ContainerBroker::create(db_file, account, container, ts, policy)
            .map(|(b, _)| b)
            .map_err(db_error);
    }
    ContainerBroker::open(db_file).map_err(db_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert_eq!(listing_content_type(None, None).unwrap(), "text/plain");
        assert_eq!(
            listing_content_type(Some("json"), None).unwrap(),
            "application/json"
        );
        assert_eq!(
            listing_content_type(Some("XML"), None).unwrap(),
            "application/xml"
        );
        assert_eq!(
            listing_content_type(Some("bogus"), None).unwrap(),
            "text/plain"
        );
        assert_eq!(
            listing_content_type(None, Some("application/json")).unwrap(),
            "application/json"
        );
        assert_eq!(
            listing_content_type(None, Some("*/*")).unwrap(),
            "text/plain"
        );
        assert_eq!(
            listing_content_type(None, Some("text/xml")).unwrap(),
            "text/xml"
        );
        assert_eq!(
            listing_content_type(None, Some("text/plain;q=0.5, application/json")).unwrap(),
            "application/json"
        );
        assert_eq!(
            listing_content_type(None, Some("image/png"))
                .unwrap_err()
                .status,
            StatusCode::NOT_ACCEPTABLE
        );
    }

    #[test]
    fn params() {
        let q = query_params(Some(
            "limit=5&prefix=a%2Fb&delimiter=%2F&reverse=on&marker=x+y",
        ))
        .unwrap();
        let lp = listing_params(&q, 10_000).unwrap();
        assert_eq!(lp.limit, 5);
        assert_eq!(lp.prefix.as_deref(), Some("a/b"));
        assert_eq!(lp.delimiter.as_deref(), Some("/"));
        assert_eq!(lp.marker, "x y");
        assert!(lp.reverse);
        let q = query_params(Some("limit=10001")).unwrap();
        assert_eq!(
            listing_params(&q, 10_000).unwrap_err().status,
            StatusCode::PRECONDITION_FAILED
        );
        let q = query_params(Some("limit=abc")).unwrap();
        assert_eq!(listing_params(&q, 10_000).unwrap().limit, 10_000);
        let q = query_params(Some("delimiter=ab")).unwrap();
        assert!(listing_params(&q, 10_000).is_err());
        assert!(query_params(Some("prefix=%ff")).is_err());
        assert_eq!(
            title_case("x-container-meta-color"),
            "X-Container-Meta-Color"
        );
    }
}
