//! The object server's backend HTTP API (`PROTOCOLS.md`, "Backend HTTP API" → "Object
//! server"): PUT, GET, HEAD, POST, DELETE and REPLICATE on top of the disk layer.
//!
//! [`ObjectServer`] implements [`cairn_common::http::Handler`]; run it with
//! [`cairn_common::http::serve`]. Disk work runs on tokio's blocking pool; bodies stream in
//! both directions (a PUT's chunks go to a writer task through a bounded channel,
//! a GET's chunks come back through [`cairn_common::http::channel`]). Errors are mapped to
//! statuses in one place ([`disk_error`]).
//!
//! After a write the server sends the container update (and expirer-queue updates) to the
//! hosts named by the proxy, waits at most `container_update_timeout`, and saves every
//! failed update as an async pending for the object-updater.
//!
//! Blocking disk work runs through a per-device pool ([`device_pool`]): at most
//! `device_concurrency` operations per device at once (503 after `device_wait_timeout`
//! without a slot), so that one stuck disk cannot exhaust the blocking pool for the
//! others; bodies are read and written in batches of chunks, one pool operation each (no
//! blocking thread waits for the network). A device that returns EIO-class errors is marked
//! failed and answers 507 for `device_error_backoff` (logged once).
//!
//! SSYNC (the receiving side of replication) lives in `server/ssync.rs`. Not implemented:
//! `X-Backend-Replication-Headers` on client-facing PUTs (SSYNC writes store every header).

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cairn_common::constraints::{self, Constraints, MetaTarget};
use cairn_common::http::{
    self as chttp, header_str, parse_object_path, parse_replicate_path, policy_index, x_timestamp,
    BackendClient, Body, Handler, HttpError, RequestBody, Timeouts,
};
use cairn_common::{HashPathSecret, Timestamp};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;

use crate::async_pending::{self, AsyncOp, AsyncPending};
use crate::diskfile::{
    DiskConfig, DiskFile, DiskFileManager, DiskFileState, DiskFileWriter, ObjectInfo, OpenObject,
};
use crate::error::DiskError;
use crate::layout::PolicyPaths;
use crate::metadata::Metadata;

pub mod device_pool;
mod ssync;

use device_pool::{Device, DeviceError, DevicePoolConfig, DevicePools};

/// A GET reads (and a PUT writes) up to this many bytes per device-pool operation.
const IO_BATCH_BYTES: usize = 1 << 20;

/// Swift's default `allowed_headers` of the object server.
pub const DEFAULT_ALLOWED_HEADERS: [&str; 9] = [
    "content-disposition",
    "content-encoding",
    "x-delete-at",
    "x-object-manifest",
    "x-static-large-object",
    "cache-control",
    "content-language",
    "expires",
    "x-robots-tag",
];

/// The account holding the expirer queue.
pub const EXPIRER_ACCOUNT: &str = ".expiring_objects";
const EXPIRER_DIVISOR: u64 = 86_400;
const EMPTY_ETAG: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// Settings of the object server.
#[derive(Debug, Clone)]
pub struct ObjectServerSettings {
    pub disk: DiskConfig,
    pub constraints: Constraints,
    /// Lowercase header names stored with the object besides metadata.
    pub allowed_headers: Vec<String>,
    /// How long a write waits for its container updates before answering.
    pub container_update_timeout: Duration,
    /// Connect/node timeouts of container updates.
    pub update_timeouts: Timeouts,
    /// `Some(true)`: only REPLICATE (and SSYNC); `Some(false)`: everything else; `None`: all.
    pub replication_server: Option<bool>,
    /// Configured storage policy indexes; empty accepts any index.
    pub policies: Vec<u32>,
    /// Bytes per read of a GET.
    pub disk_chunk_size: usize,
    /// SSYNC receivers running at once (0: unlimited); busy → `:ERROR: 503`.
    pub replication_concurrency: usize,
    /// SSYNC receivers per device (0: unlimited); waited for up to the lock timeout.
    pub replication_concurrency_per_device: usize,
    /// How long an SSYNC waits for its device slot (`:ERROR: 0` after).
    pub replication_lock_timeout: Duration,
    /// SSYNC aborts after this many failed updates …
    pub replication_failure_threshold: usize,
    /// … when failures / successes is above this ratio.
    pub replication_failure_ratio: f64,
    /// Per-device bounds on blocking disk work and the failed-device backoff.
    pub device_pool: DevicePoolConfig,
}

impl Default for ObjectServerSettings {
    fn default() -> Self {
        ObjectServerSettings {
            disk: DiskConfig::default(),
            constraints: Constraints::default(),
            allowed_headers: DEFAULT_ALLOWED_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            container_update_timeout: Duration::from_secs(1),
            update_timeouts: Timeouts::default(),
            replication_server: None,
            policies: Vec::new(),
            disk_chunk_size: 65_536,
            replication_concurrency: 4,
            replication_concurrency_per_device: 1,
            replication_lock_timeout: Duration::from_secs(15),
            replication_failure_threshold: 100,
            replication_failure_ratio: 1.0,
            device_pool: DevicePoolConfig::default(),
        }
    }
}

struct Inner {
    mgr: DiskFileManager,
    settings: ObjectServerSettings,
    client: BackendClient,
    ssync: ssync::Limits,
    devices: DevicePools,
}

/// The object server request handler. Cheap to clone.
#[derive(Clone)]
pub struct ObjectServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ObjectServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectServer")
            .field("settings", &self.inner.settings)
            .finish()
    }
}

impl Handler for ObjectServer {
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

/// Map a disk-layer error to the response status and body (the one place that does it).
pub fn disk_error(e: DiskError) -> HttpError {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match &e {
        DiskError::Quarantined { .. } | DiskError::NotFound => String::new(),
        DiskError::Collision { .. } => "Forbidden".to_string(),
        DiskError::DiskUnavailable(_) | DiskError::DiskFull(_) => String::new(),
        DiskError::BadRequest(m) => m.clone(),
        DiskError::LockTimeout(_) => String::new(),
        DiskError::Corrupt(_) | DiskError::Io(_) => {
            tracing::error!(error = %e, "object server disk error");
            String::new()
        }
    };
    HttpError::new(status, message)
}

/// Map a device-pool error (busy → 503, failed → 507, then [`disk_error`]).
pub fn device_error(e: DeviceError) -> HttpError {
    match e {
        DeviceError::Busy { .. } => HttpError::new(StatusCode::SERVICE_UNAVAILABLE, ""),
        DeviceError::Failed { .. } => HttpError::new(StatusCode::INSUFFICIENT_STORAGE, ""),
        // The pool has marked the device failed (and logged it once).
        DeviceError::Disk(e) if device_pool::is_device_failure(&e) => {
            HttpError::new(StatusCode::INSUFFICIENT_STORAGE, "")
        }
        DeviceError::Disk(e) => disk_error(e),
        DeviceError::Panicked(m) => HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("task failed: {m}"),
        ),
    }
}

async fn blocking<T, F>(f: F) -> Result<T, HttpError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, DiskError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(disk_error),
        Err(e) => Err(HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("task failed: {e}"),
        )),
    }
}

fn status_only(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(chttp::empty());
    *r.status_mut() = status;
    r
}

fn set(h: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_bytes(value.as_bytes()),
    ) {
        h.insert(n, v);
    }
}

fn with_backend_ts(status: StatusCode, ts: Option<Timestamp>) -> Response<Body> {
    let mut r = status_only(status);
    if let Some(ts) = ts {
        set(r.headers_mut(), "X-Backend-Timestamp", &ts.internal());
    }
    r
}

/// HTTP title case as Swift stores header names (`x-object-meta-color` →
/// `X-Object-Meta-Color`): upper after any non-letter, lower otherwise.
pub fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut prev_alpha = false;
    for c in name.chars() {
        if c.is_alphabetic() {
            if prev_alpha {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            prev_alpha = true;
        } else {
            out.push(c);
            prev_alpha = false;
        }
    }
    out
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Where one update goes: `(host:port, device)` pairs and the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Targets {
    pairs: Vec<(String, String)>,
    partition: String,
}

fn split_list(v: Option<&str>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

/// Parse `X-{prefix}-Host`, `-Device`, `-Partition` (parallel comma lists).
fn targets(headers: &HeaderMap, prefix: &str) -> Result<Targets, HttpError> {
    let hosts = split_list(header_str(headers, &format!("{prefix}-host")));
    let devices = split_list(header_str(headers, &format!("{prefix}-device")));
    let partition = header_str(headers, &format!("{prefix}-partition"))
        .unwrap_or("")
        .trim()
        .to_string();
    if hosts.len() != devices.len() {
        return Err(HttpError::bad_request(format!(
            "{prefix}-Host and {prefix}-Device do not match"
        )));
    }
    Ok(Targets {
        pairs: hosts.into_iter().zip(devices).collect(),
        partition,
    })
}

/// The expirer queue container of `delete_at` for an object (`PROTOCOLS.md`,
/// "X-Delete-At queue"): `delete_at // 86400 * 86400 − shard`, `shard = hash % 100`.
pub fn expirer_container(delete_at: u64, hash_hex: &str) -> String {
    let shard = u128::from_str_radix(hash_hex, 16)
        .map(|h| (h % 100) as u64)
        .unwrap_or(0);
    let day = delete_at / EXPIRER_DIVISOR * EXPIRER_DIVISOR;
    format!("{:010}", day.saturating_sub(shard))
}

/// The expirer queue object name: `%010d-ACCT/CONT/OBJ`.
pub fn expirer_object(delete_at: u64, account: &str, container: &str, obj: &str) -> String {
    format!("{delete_at:010}-{account}/{container}/{obj}")
}

#[derive(Clone)]
struct ObjPath {
    device: String,
    partition: u32,
    account: String,
    container: String,
    obj: String,
    policy: u32,
}

impl ObjectServer {
    pub fn new(settings: ObjectServerSettings, secret: HashPathSecret) -> Self {
        let mgr = DiskFileManager::new(settings.disk.clone(), secret);
        let client = BackendClient::new(settings.update_timeouts);
        let ssync = ssync::Limits::new(&settings);
        let devices = DevicePools::new(settings.device_pool);
        ObjectServer {
            inner: Arc::new(Inner {
                mgr,
                settings,
                client,
                ssync,
                devices,
            }),
        }
    }

    pub fn manager(&self) -> &DiskFileManager {
        &self.inner.mgr
    }

    /// The per-device pools (permits, failed state).
    pub fn devices(&self) -> &DevicePools {
        &self.inner.devices
    }

    fn device(&self, name: &str) -> Arc<Device> {
        self.inner.devices.device(name)
    }

    /// Run disk work for `device` through its pool.
    async fn on_device<T, F>(&self, device: &str, f: F) -> Result<T, HttpError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, DiskError> + Send + 'static,
    {
        self.device(device).run(f).await.map_err(device_error)
    }

    fn settings(&self) -> &ObjectServerSettings {
        &self.inner.settings
    }

    async fn dispatch(&self, req: Request<RequestBody>) -> Result<Response<Body>, HttpError> {
        let method = req.method().clone();
        let is_replication = method.as_str() == "REPLICATE" || method.as_str() == "SSYNC";
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
            "PUT" => self.put(req).await,
            "GET" => self.get_or_head(req, false).await,
            "HEAD" => self.get_or_head(req, true).await,
            "POST" => self.post(req).await,
            "DELETE" => self.delete(req).await,
            "REPLICATE" => self.replicate(req).await,
            "SSYNC" => self.ssync(req).await,
            _ => Ok(status_only(StatusCode::METHOD_NOT_ALLOWED)),
        }
    }

    fn object_path<B>(&self, req: &Request<B>) -> Result<ObjPath, HttpError> {
        let raw = req.uri().path();
        let p = parse_object_path(raw)?;
        let policy = policy_index(req.headers())?;
        let s = self.settings();
        if !s.policies.is_empty() && !s.policies.contains(&policy) {
            return Err(HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("No policy with index {policy}"),
            ));
        }
        let (Some(container), Some(obj)) = (p.container, p.object) else {
            return Err(HttpError::bad_request("Invalid path"));
        };
        constraints::check_object_name(&obj, &s.constraints)?;
        Ok(ObjPath {
            device: p.device,
            partition: p.partition,
            account: p.account,
            container,
            obj,
            policy,
        })
    }

    /// Resolve the device (507 when unavailable) and open the object, in one device-pool
    /// operation; quarantine counts as missing (the object now reads as 404).
    async fn open_path(&self, p: &ObjPath) -> Result<(DiskFile, DiskFileState), HttpError> {
        let mgr = self.inner.mgr.clone();
        let path = p.clone();
        self.on_device(&p.device, move || open_object(&mgr, &path))
            .await
    }

    /// Open the object; quarantine counts as missing (the object now reads as 404).
    async fn open(&self, df: &DiskFile) -> Result<DiskFileState, HttpError> {
        let df = df.clone();
        let device = device_name(&df);
        self.on_device(&device, move || match df.open() {
            Err(DiskError::Quarantined { .. }) => Ok(DiskFileState::Missing),
            other => other,
        })
        .await
    }

    fn is_stored_header(&self, lower: &str) -> bool {
        self.settings().allowed_headers.iter().any(|h| h == lower)
    }

    /// User metadata, transient sysmeta, allowed headers (and sysmeta when `sysmeta`).
    fn request_metadata(&self, headers: &HeaderMap, sysmeta: bool) -> Metadata {
        let mut md = Metadata::new();
        for (name, value) in headers {
            let n = name.as_str();
            let keep = n.starts_with("x-object-meta-")
                || n.starts_with("x-object-transient-sysmeta-")
                || (sysmeta && n.starts_with("x-object-sysmeta-"))
                || (n != "x-delete-at" && self.is_stored_header(n));
            if keep {
                md.set(
                    title_case(n),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                );
            }
        }
        md
    }

    fn check_request_metadata(&self, headers: &HeaderMap) -> Result<(), HttpError> {
        constraints::check_metadata(
            headers
                .iter()
                .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes())),
            MetaTarget::Object,
            &self.settings().constraints,
        )?;
        Ok(())
    }

    /// `X-Delete-At` of a write: integer, not in the past (400 otherwise).
    fn delete_at(&self, headers: &HeaderMap) -> Result<Option<u64>, HttpError> {
        let replication = header_str(headers, "x-backend-replication")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Ok(constraints::check_delete_headers(
            header_str(headers, "x-delete-at").filter(|v| !v.trim().is_empty()),
            None,
            unix_now(),
            replication,
        )?)
    }

    // ----- PUT -----

    async fn put(&self, req: Request<RequestBody>) -> Result<Response<Body>, HttpError> {
        let p = self.object_path(&req)?;
        let headers = req.headers().clone();
        let ts = x_timestamp(&headers)?;
        let c = &self.settings().constraints;
        let content_length = match headers.get(http::header::CONTENT_LENGTH) {
            None => None,
            Some(v) => Some(
                std::str::from_utf8(v.as_bytes())
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| HttpError::bad_request("Invalid Content-Length"))?,
            ),
        };
        let chunked = header_str(&headers, "transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if let Some(len) = content_length {
            constraints::check_object_size(len, c)?;
        } else if !chunked {
            return Err(HttpError::new(
                StatusCode::LENGTH_REQUIRED,
                "Missing Content-Length header.",
            ));
        }
        let Some(ctype) = headers.get(http::header::CONTENT_TYPE) else {
            return Err(HttpError::bad_request("No content type"));
        };
        constraints::check_content_type(ctype.as_bytes())?;
        let ctype = String::from_utf8_lossy(ctype.as_bytes()).into_owned();
        let new_delete_at = self.delete_at(&headers)?;
        self.check_request_metadata(&headers)?;
        let container_targets = targets(&headers, "x-container")?;
        let inm = header_str(&headers, "if-none-match").map(str::to_string);
        let mut md = self.request_metadata(&headers, true);
        md.set("Content-Type", ctype.clone());
        if let Some(at) = new_delete_at {
            md.set("X-Delete-At", format!("{at:010}"));
        }
        let client_etag = header_str(&headers, "etag").map(str::to_string);
        // A sender that asked for `100 Continue` wants a 409/412 before it sends the body,
        // so the state is checked first (its own device-pool operation). A small body sent
        // without `Expect` (the proxy's small-PUT path) is already on its way: read it, then
        // check the state and write in ONE operation (a pool hop is a thread hand-off both
        // ways; at most SMALL_PUT_BYTES of a conflicting body are read for nothing).
        let expects_continue = header_str(&headers, "expect")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
        let (df, size, etag, orig_delete_at) = match content_length {
            Some(len) if len <= SMALL_PUT_BYTES && !expects_continue => {
                let buf = read_small_body(req.into_body(), len).await?;
                let mgr = self.inner.mgr.clone();
                let path = p.clone();
                let outcome = self
                    .on_device(&p.device, move || {
                        let (df, state) = open_object(&mgr, &path)?;
                        let orig_delete_at = match check_put_state(&state, ts, inm.as_deref()) {
                            Ok(at) => at,
                            Err(refusal) => return Ok(SmallPut::Refused(refusal)),
                        };
                        drop(state);
                        Ok(match write_small(&df, buf, client_etag, ts, md)? {
                            Some(etag) => SmallPut::Done {
                                df,
                                etag,
                                orig_delete_at,
                            },
                            None => SmallPut::EtagMismatch,
                        })
                    })
                    .await?;
                match outcome {
                    SmallPut::Done {
                        df,
                        etag,
                        orig_delete_at,
                    } => (df, len, etag, orig_delete_at),
                    SmallPut::Refused(r) => return Ok(r.response()),
                    SmallPut::EtagMismatch => return Err(etag_mismatch()),
                }
            }
            _ => {
                // Current state: 409 if we already have this or a newer write.
                let (df, state) = self.open_path(&p).await?;
                let orig_delete_at = match check_put_state(&state, ts, inm.as_deref()) {
                    Ok(at) => at,
                    Err(refusal) => return Ok(refusal.response()),
                };
                drop(state);
                let (size, etag) = match content_length {
                    Some(len) if len <= SMALL_PUT_BYTES => {
                        let buf = read_small_body(req.into_body(), len).await?;
                        self.put_small(&p.device, df.clone(), buf, client_etag, ts, md)
                            .await?
                    }
                    _ => {
                        self.put_streaming(
                            &p.device,
                            df.clone(),
                            req,
                            content_length,
                            client_etag,
                            ts,
                            md,
                        )
                        .await?
                    }
                };
                (df, size, etag, orig_delete_at)
            }
        };

        // Expirer queue and container updates.
        let mut updates = Vec::new();
        if new_delete_at != orig_delete_at {
            if let Some(at) = new_delete_at {
                updates.push(self.delete_at_update(
                    &p,
                    &df,
                    &headers,
                    Method::PUT,
                    at,
                    ts,
                    Some(size),
                ));
            }
            if let Some(old) = orig_delete_at {
                updates.push(self.delete_at_update(
                    &p,
                    &df,
                    &headers,
                    Method::DELETE,
                    old,
                    ts,
                    None,
                ));
            }
        }
        let mut upd = self.base_update_headers(&headers, "PUT", &p, ts);
        upd.push(("X-Size".into(), size.to_string()));
        upd.push(("X-Content-Type".into(), ctype));
        upd.push(("X-Etag".into(), etag.clone()));
        apply_overrides(&headers, &mut upd);
        updates.push(self.container_update(&p, &df, Method::PUT, container_targets, upd));
        self.wait_updates(updates).await;

        let mut resp = status_only(StatusCode::CREATED);
        set(resp.headers_mut(), "ETag", &etag);
        set(resp.headers_mut(), "Last-Modified", &ts.http_date());
        Ok(resp)
    }

    /// PUT of a body of unknown or large size: streamed to the writer in batches, one
    /// device-pool operation per batch (no blocking thread waits for the client).
    #[allow(clippy::too_many_arguments)]
    async fn put_streaming(
        &self,
        device_name: &str,
        df: DiskFile,
        req: Request<RequestBody>,
        content_length: Option<u64>,
        client_etag: Option<String>,
        ts: Timestamp,
        md: Metadata,
    ) -> Result<(u64, String), HttpError> {
        // Stream the body to the writer: a task that writes what has arrived in batches,
        // one device-pool operation per batch (no blocking thread waits for the client).
        let c = &self.settings().constraints;
        let device = self.device(device_name);
        let writer = {
            let df = df.clone();
            let w = device
                .run(move || df.create(content_length))
                .await
                .map_err(device_error)?;
            WriterGuard::new(w, device.clone())
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let write_task = tokio::spawn(async move {
            let mut writer = writer;
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                let mut bytes = batch[0].len();
                while bytes < IO_BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(c) => {
                            bytes += c.len();
                            batch.push(c);
                        }
                        Err(_) => break,
                    }
                }
                let w = device
                    .run(move || {
                        let mut w = writer.into_inner();
                        for c in &batch {
                            w.write(c)?;
                        }
                        Ok(w)
                    })
                    .await?;
                writer = WriterGuard::new(w, device.clone());
            }
            Ok::<_, DeviceError>(writer)
        });
        let mut body = req.into_body();
        let mut received: u64 = 0;
        let mut client_error: Option<io::Error> = None;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        received += data.len() as u64;
                        if received > c.max_file_size {
                            drop(tx);
                            let _ = write_task.await;
                            return Err(HttpError::new(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "Your request is too large.",
                            ));
                        }
                        if tx.send(data).await.is_err() {
                            break; // the writer failed; its error is reported below
                        }
                    }
                }
                Err(e) => {
                    client_error = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let writer = match write_task.await {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => return Err(device_error(e)),
            Err(e) => {
                return Err(HttpError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("task failed: {e}"),
                ))
            }
        };
        if let Some(e) = client_error {
            // The writer is dropped: its temp file goes away, nothing is renamed.
            return Err(client_read_error(&e));
        }
        if content_length.is_some_and(|l| l != writer.get().bytes_written()) {
            return Err(client_disconnect());
        }
        let etag = writer.get().etag();
        check_client_etag(client_etag.as_deref(), &etag)?;
        let size = writer.get().bytes_written();
        self.on_device(device_name, move || writer.into_inner().commit(ts, md))
            .await?;
        Ok((size, etag))
    }

    /// PUT of a small body already read whole (at most [`SMALL_PUT_BYTES`]): create,
    /// write, check and commit in ONE device-pool operation. Small objects dominate
    /// request rates, and each pool hop is a thread hand-off both ways.
    async fn put_small(
        &self,
        device_name: &str,
        df: DiskFile,
        buf: Vec<u8>,
        client_etag: Option<String>,
        ts: Timestamp,
        md: Metadata,
    ) -> Result<(u64, String), HttpError> {
        let len = buf.len() as u64;
        let outcome = self
            .on_device(device_name, move || {
                write_small(&df, buf, client_etag, ts, md)
            })
            .await?;
        match outcome {
            Some(etag) => Ok((len, etag)),
            None => Err(etag_mismatch()),
        }
    }

    // ----- GET / HEAD -----

    async fn get_or_head(
        &self,
        req: Request<RequestBody>,
        head: bool,
    ) -> Result<Response<Body>, HttpError> {
        let p = self.object_path(&req)?;
        let obj = match self.open_path(&p).await?.1 {
            DiskFileState::Exists(o) => o,
            DiskFileState::Missing => return Ok(status_only(StatusCode::NOT_FOUND)),
            DiskFileState::Deleted { ts } => {
                return Ok(with_backend_ts(StatusCode::NOT_FOUND, Some(ts)))
            }
            DiskFileState::Expired(o) => {
                return Ok(with_backend_ts(
                    StatusCode::NOT_FOUND,
                    Some(o.info.timestamp()),
                ))
            }
        };
        let headers = req.headers();
        let mut resp_headers = HeaderMap::new();
        self.object_headers(&obj.info, &mut resp_headers);
        if let Some(status) = conditional_status(headers, &obj.info) {
            let mut r = status_only(status);
            if status == StatusCode::NOT_MODIFIED {
                for name in [
                    "etag",
                    "last-modified",
                    "x-timestamp",
                    "x-backend-timestamp",
                ] {
                    if let Some(v) = resp_headers.get(name) {
                        r.headers_mut()
                            .insert(HeaderName::from_static(name), v.clone());
                    }
                }
            }
            return Ok(r);
        }
        let len = obj.info.content_length;
        let ranges = header_str(headers, "range").and_then(|r| parse_ranges(r, len));
        let (status, parts, body_len, verify) = match ranges.as_deref() {
            None => (StatusCode::OK, vec![BodyPart::Range(0, len)], len, true),
            Some([]) => {
                let mut r = status_only(StatusCode::RANGE_NOT_SATISFIABLE);
                set(r.headers_mut(), "Content-Range", &format!("bytes */{len}"));
                return Ok(r);
            }
            Some([(a, b)]) => {
                let range = format!("bytes {a}-{}/{len}", b - 1);
                set(&mut resp_headers, "Content-Range", &range);
                let parts = vec![BodyPart::Range(*a, *b)];
                (StatusCode::PARTIAL_CONTENT, parts, b - a, false)
            }
            Some(many) => {
                let boundary = uuid::Uuid::new_v4().simple().to_string();
                let ctype = obj
                    .info
                    .metadata
                    .get("Content-Type")
                    .unwrap_or("application/octet-stream");
                let (parts, total) = multipart_parts(many, len, ctype, &boundary);
                let mp = format!("multipart/byteranges;boundary={boundary}");
                set(&mut resp_headers, "Content-Type", &mp);
                (StatusCode::PARTIAL_CONTENT, parts, total, false)
            }
        };
        set(&mut resp_headers, "Content-Length", &body_len.to_string());
        let body = if head {
            chttp::empty()
        } else {
            self.stream_body(self.device(&p.device), obj, parts, verify)
        };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        *r.headers_mut() = resp_headers;
        Ok(r)
    }

    fn object_headers(&self, info: &ObjectInfo, h: &mut HeaderMap) {
        for (k, v) in info.metadata.iter() {
            let lower = k.to_ascii_lowercase();
            if lower.starts_with("x-object-meta-")
                || lower.starts_with("x-object-sysmeta-")
                || lower.starts_with("x-object-transient-sysmeta-")
                || self.is_stored_header(&lower)
            {
                set(h, k, v);
            }
        }
        set(
            h,
            "Content-Type",
            info.metadata
                .get("Content-Type")
                .unwrap_or("application/octet-stream"),
        );
        set(h, "ETag", &info.etag);
        set(h, "Content-Length", &info.content_length.to_string());
        let ts = info.timestamp();
        set(h, "Last-Modified", &ts.http_date());
        set(h, "X-Timestamp", &ts.normal());
        set(h, "X-Backend-Timestamp", &ts.internal());
        set(h, "X-Backend-Data-Timestamp", &info.data_ts.internal());
        set(h, "Accept-Ranges", "bytes");
    }

    /// Stream `parts` of the object: literal bytes (multipart framing) and byte ranges.
    /// `verify`: one part covering the whole body, checked against the ETag at EOF.
    ///
    /// An async task drives the reader through the device pool, one batch of chunks per
    /// operation (growing from one chunk to [`IO_BATCH_BYTES`]), so a slow client holds no
    /// blocking thread and no device slot while it reads.
    fn stream_body(
        &self,
        device: Arc<Device>,
        obj: OpenObject,
        parts: Vec<BodyPart>,
        verify: bool,
    ) -> Body {
        let chunk = self.settings().disk_chunk_size.max(4096);
        let (tx, body) = chttp::channel(4);
        tokio::spawn(async move {
            let mut reader = Some(obj.reader());
            for part in parts {
                let (start, end) = match part {
                    BodyPart::Bytes(b) => {
                        if tx.send(b).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    BodyPart::Range(a, b) => (a, b),
                };
                let mut seek = (!verify).then_some((start, end));
                let mut batch = chunk;
                // When verifying, one chunk is held back until the next read succeeds:
                // the reader checks the MD5 at EOF, so the last bytes of a damaged object
                // are never sent and the client sees a cut stream, not a clean wrong body.
                let mut held: Option<Bytes> = None;
                loop {
                    let Some(mut r) = reader.take() else { return };
                    let seek_to = seek.take();
                    let res = device
                        .run(move || {
                            if let Some((a, b)) = seek_to {
                                r.seek_range(a, b)?;
                            }
                            let chunks = read_batch(&mut r, batch, chunk)?;
                            Ok((r, chunks))
                        })
                        .await;
                    batch = (batch * 4).min(IO_BATCH_BYTES.max(chunk));
                    let (r, chunks) = match res {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::warn!(error = %e, "object read failed; aborting response");
                            tx.abort(io::Error::other(e.to_string())).await;
                            return;
                        }
                    };
                    let eof = r.remaining() == 0;
                    reader = Some(r);
                    for c in chunks {
                        let ready = if verify { held.replace(c) } else { Some(c) };
                        if let Some(ready) = ready {
                            if tx.send(ready).await.is_err() {
                                return; // the client went away
                            }
                        }
                    }
                    if eof {
                        break;
                    }
                }
                if let Some(last) = held {
                    if tx.send(last).await.is_err() {
                        return;
                    }
                }
            }
        });
        body
    }

    // ----- POST -----

    async fn post(&self, req: Request<RequestBody>) -> Result<Response<Body>, HttpError> {
        let p = self.object_path(&req)?;
        let headers = req.headers().clone();
        let ts = x_timestamp(&headers)?;
        let new_delete_at = self.delete_at(&headers)?;
        self.check_request_metadata(&headers)?;
        let container_targets = targets(&headers, "x-container")?;
        if let Some(ct) = headers.get(http::header::CONTENT_TYPE) {
            constraints::check_content_type(ct.as_bytes())?;
        }
        let (df, state) = self.open_path(&p).await?;
        let info = match state {
            DiskFileState::Exists(o) => o.info,
            DiskFileState::Missing => return Ok(status_only(StatusCode::NOT_FOUND)),
            DiskFileState::Deleted { ts } => {
                return Ok(with_backend_ts(StatusCode::NOT_FOUND, Some(ts)))
            }
            DiskFileState::Expired(o) => {
                return Ok(with_backend_ts(
                    StatusCode::NOT_FOUND,
                    Some(o.info.timestamp()),
                ))
            }
        };
        let newest = info.timestamp();
        if newest >= ts {
            return Ok(with_backend_ts(StatusCode::CONFLICT, Some(newest)));
        }
        let mut md = self.request_metadata(&headers, false);
        let ctype = header_str(&headers, "content-type").map(str::to_string);
        let ctype_ts = ctype.as_ref().map(|_| ts);
        if let Some(ct) = &ctype {
            md.set("Content-Type", ct.clone());
        }
        if let Some(at) = new_delete_at {
            md.set("X-Delete-At", format!("{at:010}"));
        }
        {
            let df = df.clone();
            self.on_device(&p.device, move || df.write_meta(ts, md, ctype_ts))
                .await?;
        }
        let mut updates = Vec::new();
        if new_delete_at != info.delete_at {
            if let Some(at) = new_delete_at {
                updates.push(self.delete_at_update(
                    &p,
                    &df,
                    &headers,
                    Method::PUT,
                    at,
                    ts,
                    Some(info.content_length),
                ));
            }
            if let Some(old) = info.delete_at {
                updates.push(self.delete_at_update(
                    &p,
                    &df,
                    &headers,
                    Method::DELETE,
                    old,
                    ts,
                    None,
                ));
            }
        }
        let effective_ctype = ctype
            .clone()
            .or_else(|| info.metadata.get("Content-Type").map(str::to_string))
            .unwrap_or_default();
        let ctype_stamp = ctype_ts.or(info.ctype_ts).unwrap_or(info.data_ts);
        let mut upd = self.base_update_headers(&headers, "POST", &p, info.data_ts);
        upd.push(("X-Size".into(), info.content_length.to_string()));
        upd.push(("X-Content-Type".into(), effective_ctype));
        upd.push(("X-Etag".into(), info.etag.clone()));
        upd.push(("X-Content-Type-Timestamp".into(), ctype_stamp.internal()));
        upd.push(("X-Meta-Timestamp".into(), ts.internal()));
        apply_overrides(&headers, &mut upd);
        updates.push(self.container_update(&p, &df, Method::PUT, container_targets, upd));
        self.wait_updates(updates).await;
        Ok(status_only(StatusCode::ACCEPTED))
    }

    // ----- DELETE -----

    async fn delete(&self, req: Request<RequestBody>) -> Result<Response<Body>, HttpError> {
        let p = self.object_path(&req)?;
        let headers = req.headers().clone();
        let ts = x_timestamp(&headers)?;
        let container_targets = targets(&headers, "x-container")?;
        let if_delete_at = match header_str(&headers, "x-if-delete-at") {
            None => None,
            Some(v) => Some(
                constraints::parse_delete_at(v)
                    .ok_or_else(|| HttpError::bad_request("Bad X-If-Delete-At header value"))?,
            ),
        };
        let (df, state) = self.open_path(&p).await?;
        let (orig_ts, orig_delete_at, mut status) = match &state {
            DiskFileState::Missing => (None, None, StatusCode::NOT_FOUND),
            DiskFileState::Deleted { ts } => (Some(*ts), None, StatusCode::NOT_FOUND),
            DiskFileState::Expired(o) => (
                Some(o.info.data_ts),
                o.info.delete_at,
                StatusCode::NOT_FOUND,
            ),
            DiskFileState::Exists(o) => {
                let s = if o.info.data_ts < ts {
                    StatusCode::NO_CONTENT
                } else {
                    StatusCode::CONFLICT
                };
                (Some(o.info.data_ts), o.info.delete_at, s)
            }
        };
        drop(state);
        if let Some(want) = if_delete_at {
            let Some(orig) = orig_ts else {
                return Ok(status_only(StatusCode::NOT_FOUND));
            };
            if orig >= ts {
                return Ok(status_only(StatusCode::CONFLICT));
            }
            if orig_delete_at.unwrap_or(0) != want {
                return Err(HttpError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "X-If-Delete-At and X-Delete-At do not match",
                ));
            }
            status = StatusCode::NO_CONTENT;
        }
        let mut updates = Vec::new();
        // The expirer pops its queue row itself and says so (Swift: config_true_value of
        // the header, default true).
        let clean_queue =
            header_str(&headers, "x-backend-clean-expiring-object-queue").is_none_or(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "true" | "1" | "yes" | "on" | "t" | "y"
                )
            });
        if let Some(old) = orig_delete_at.filter(|_| clean_queue) {
            updates.push(self.delete_at_update(&p, &df, &headers, Method::DELETE, old, ts, None));
        }
        if orig_ts.is_none_or(|o| o < ts) {
            {
                let df = df.clone();
                self.on_device(&p.device, move || df.write_tombstone(ts, Metadata::new()))
                    .await?;
            }
            let upd = self.base_update_headers(&headers, "DELETE", &p, ts);
            updates.push(self.container_update(&p, &df, Method::DELETE, container_targets, upd));
        }
        self.wait_updates(updates).await;
        let response_ts = orig_ts.map_or(ts, |o| o.max(ts));
        Ok(with_backend_ts(status, Some(response_ts)))
    }

    // ----- REPLICATE -----

    async fn replicate(&self, req: Request<RequestBody>) -> Result<Response<Body>, HttpError> {
        let (device, part, suffixes) = parse_replicate_path(req.uri().path())?;
        let policy = policy_index(req.headers())?;
        let mgr = self.inner.mgr.clone();
        let pool = self.device(&device);
        if suffixes.is_empty() {
            let h = pool
                .run(move || mgr.get_hashes(&device, policy, part, &[], false))
                .await
                .map_err(device_error)?;
            let map: serde_json::Map<String, serde_json::Value> =
                crate::hashes::hashes_to_hex(&h.hashes)
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k,
                            v.map_or(serde_json::Value::Null, serde_json::Value::String),
                        )
                    })
                    .collect();
            Ok(chttp::json(StatusCode::OK, &serde_json::Value::Object(map)))
        } else {
            pool.run(move || {
                let refs: Vec<&str> = suffixes.iter().map(String::as_str).collect();
                mgr.invalidate_suffixes(&device, policy, part, &refs)
            })
            .await
            .map_err(device_error)?;
            Ok(chttp::json(StatusCode::OK, &serde_json::Value::Null))
        }
    }

    // ----- container and expirer-queue updates -----

    fn base_update_headers(
        &self,
        headers: &HeaderMap,
        method: &str,
        p: &ObjPath,
        ts: Timestamp,
    ) -> Vec<(String, String)> {
        let mut h = vec![
            ("X-Timestamp".to_string(), ts.internal()),
            (
                "X-Backend-Storage-Policy-Index".to_string(),
                p.policy.to_string(),
            ),
            (
                "Referer".to_string(),
                format!(
                    "{method} {}",
                    chttp::backend_path(
                        &p.device,
                        p.partition,
                        &p.account,
                        Some(&p.container),
                        Some(&p.obj)
                    )
                ),
            ),
        ];
        if let Some(txn) = header_str(headers, "x-trans-id") {
            h.push(("X-Trans-Id".to_string(), txn.to_string()));
        }
        h
    }

    /// A queue row update of the expirer for `delete_at` (PUT goes to the queue hosts named by
    /// the proxy; DELETE is always saved as an async pending).
    #[allow(clippy::too_many_arguments)]
    fn delete_at_update(
        &self,
        p: &ObjPath,
        df: &DiskFile,
        headers: &HeaderMap,
        method: Method,
        delete_at: u64,
        ts: Timestamp,
        size: Option<u64>,
    ) -> tokio::task::JoinHandle<()> {
        let container = match (
            method == Method::PUT,
            header_str(headers, "x-delete-at-container"),
        ) {
            (true, Some(c)) if !c.trim().is_empty() => c.trim().to_string(),
            _ => expirer_container(delete_at, df.hash()),
        };
        let obj = expirer_object(delete_at, &p.account, &p.container, &p.obj);
        let mut upd = vec![
            ("X-Timestamp".to_string(), ts.internal()),
            (
                "X-Backend-Storage-Policy-Index".to_string(),
                "0".to_string(),
            ),
        ];
        if let Some(txn) = header_str(headers, "x-trans-id") {
            upd.push(("X-Trans-Id".to_string(), txn.to_string()));
        }
        let targets = if method == Method::PUT {
            upd.push(("X-Size".to_string(), "0".to_string()));
            upd.push(("X-Etag".to_string(), EMPTY_ETAG.to_string()));
            upd.push((
                "X-Content-Type".to_string(),
                format!("text/plain;swift_expirer_bytes={}", size.unwrap_or(0)),
            ));
            targets(headers, "x-delete-at").unwrap_or(Targets {
                pairs: Vec::new(),
                partition: String::new(),
            })
        } else {
            Targets {
                pairs: Vec::new(),
                partition: String::new(),
            }
        };
        let secret = self.inner.mgr.secret();
        let queue_hash = secret.hash_path(EXPIRER_ACCOUNT, Some(&container), Some(&obj));
        let paths = PolicyPaths::new(df.paths().device.clone(), 0);
        self.send_updates(
            method,
            EXPIRER_ACCOUNT.to_string(),
            container,
            obj,
            targets,
            upd,
            paths,
            queue_hash,
        )
    }

    fn container_update(
        &self,
        p: &ObjPath,
        df: &DiskFile,
        method: Method,
        targets: Targets,
        headers: Vec<(String, String)>,
    ) -> tokio::task::JoinHandle<()> {
        self.send_updates(
            method,
            p.account.clone(),
            p.container.clone(),
            p.obj.clone(),
            targets,
            headers,
            df.paths().clone(),
            df.hash().to_string(),
        )
    }

    /// Send `method` to every target; save an async pending if any fails (or there are
    /// none). Runs in its own task so it can outlive the response.
    #[allow(clippy::too_many_arguments)]
    fn send_updates(
        &self,
        method: Method,
        account: String,
        container: String,
        obj: String,
        targets: Targets,
        headers: Vec<(String, String)>,
        paths: PolicyPaths,
        hash: String,
    ) -> tokio::task::JoinHandle<()> {
        let client = self.inner.client.clone();
        let timeouts = self.settings().update_timeouts;
        let device = self.device(&device_of(&paths));
        tokio::spawn(async move {
            let mut all_ok = !targets.pairs.is_empty();
            let part: Option<u32> = targets.partition.parse().ok();
            if part.is_none() {
                all_ok = false;
            }
            if let Some(part) = part {
                for (host, device) in &targets.pairs {
                    let mut hm = HeaderMap::new();
                    for (k, v) in &headers {
                        set(&mut hm, k, v);
                    }
                    set(
                        &mut hm,
                        "User-Agent",
                        &format!("object-server {}", std::process::id()),
                    );
                    let path =
                        chttp::backend_path(device, part, &account, Some(&container), Some(&obj));
                    let ok = match client
                        .request_with_timeouts(
                            method.clone(),
                            host,
                            &path,
                            hm,
                            chttp::empty(),
                            timeouts,
                        )
                        .await
                    {
                        Ok(resp) => resp.status.is_success(),
                        Err(e) => {
                            tracing::warn!(host, device, error = %e, "container update failed");
                            false
                        }
                    };
                    if !ok {
                        all_ok = false;
                    }
                }
            }
            if all_ok {
                return;
            }
            let op = if method == Method::DELETE {
                AsyncOp::Delete
            } else {
                AsyncOp::Put
            };
            let ts = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("X-Meta-Timestamp"))
                .or_else(|| {
                    headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("X-Timestamp"))
                })
                .and_then(|(_, v)| Timestamp::parse(v).ok())
                .unwrap_or_else(Timestamp::now);
            let pending = AsyncPending {
                op,
                account,
                container,
                obj,
                headers: headers
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect(),
                successes: Vec::new(),
            };
            let res = device
                .run_unbounded(move || async_pending::write_pending(&paths, &hash, ts, &pending))
                .await;
            match res {
                Ok(path) => tracing::info!(file = %path.display(), "saved async pending"),
                Err(e) => tracing::error!(error = %e, "could not save async pending"),
            }
        })
    }

    /// Wait at most `container_update_timeout` for the updates; they go on in the background.
    async fn wait_updates(&self, updates: Vec<tokio::task::JoinHandle<()>>) {
        let wait = async {
            for u in updates {
                let _ = u.await;
            }
        };
        let _ = tokio::time::timeout(self.settings().container_update_timeout, wait).await;
    }
}

/// Bodies up to this size are read whole and written in one device-pool operation.
const SMALL_PUT_BYTES: u64 = 64 * 1024;

/// Blocking: the disk file of `p` and its current state; quarantine counts as missing
/// (the object now reads as 404).
fn open_object(mgr: &DiskFileManager, p: &ObjPath) -> Result<(DiskFile, DiskFileState), DiskError> {
    let df = mgr.diskfile(
        &p.device,
        p.policy,
        p.partition,
        &p.account,
        &p.container,
        &p.obj,
    )?;
    let state = match df.open() {
        Ok(state) => state,
        Err(DiskError::Quarantined { .. }) => DiskFileState::Missing,
        Err(e) => return Err(e),
    };
    Ok((df, state))
}

/// Why the current state refuses a PUT.
#[derive(Debug)]
enum PutRefusal {
    /// We already have this or a newer write (its timestamp).
    Conflict(Timestamp),
    /// `If-None-Match` matched.
    PreconditionFailed,
}

impl PutRefusal {
    fn response(self) -> Response<Body> {
        match self {
            PutRefusal::Conflict(ts) => with_backend_ts(StatusCode::CONFLICT, Some(ts)),
            PutRefusal::PreconditionFailed => status_only(StatusCode::PRECONDITION_FAILED),
        }
    }
}

/// The result of the single device-pool operation of a small PUT.
enum SmallPut {
    Done {
        df: DiskFile,
        etag: String,
        orig_delete_at: Option<u64>,
    },
    Refused(PutRefusal),
    EtagMismatch,
}

/// May a PUT at `ts` replace `state`? `Ok` carries the replaced object's `X-Delete-At`
/// (its expirer-queue entry must go); 409 if we already have this or a newer write, 412
/// if `If-None-Match` (`inm`) matches.
fn check_put_state(
    state: &DiskFileState,
    ts: Timestamp,
    inm: Option<&str>,
) -> Result<Option<u64>, PutRefusal> {
    let (orig_ts, orig_delete_at, exists) = match state {
        DiskFileState::Missing => (None, None, false),
        DiskFileState::Deleted { ts } => (Some(*ts), None, false),
        DiskFileState::Exists(o) => (Some(o.info.data_ts), o.info.delete_at, true),
        DiskFileState::Expired(o) => (Some(o.info.data_ts), o.info.delete_at, false),
    };
    if let Some(o) = orig_ts {
        if o >= ts {
            return Err(PutRefusal::Conflict(o));
        }
    }
    if let Some(inm) = inm {
        if inm.trim() == "*" && exists {
            return Err(PutRefusal::PreconditionFailed);
        }
        if let DiskFileState::Exists(o) = state {
            if etag_list_matches(inm, &o.info.etag) {
                return Err(PutRefusal::PreconditionFailed);
            }
        }
    }
    Ok(orig_delete_at)
}

/// Read a body of known length `len` (at most [`SMALL_PUT_BYTES`]) whole: 499 when the
/// client sends less or more.
async fn read_small_body(mut body: RequestBody, len: u64) -> Result<Vec<u8>, HttpError> {
    let mut buf = Vec::with_capacity(len as usize);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    if (buf.len() + data.len()) as u64 > len {
                        return Err(client_disconnect());
                    }
                    buf.extend_from_slice(&data);
                }
            }
            Err(e) => return Err(client_read_error(&e)),
        }
    }
    if buf.len() as u64 != len {
        return Err(client_disconnect());
    }
    Ok(buf)
}

/// Blocking: create, write and commit a small body; `None` (nothing renamed, the temp file
/// removed on this thread) when the client's ETag does not match.
fn write_small(
    df: &DiskFile,
    buf: Vec<u8>,
    client_etag: Option<String>,
    ts: Timestamp,
    md: Metadata,
) -> Result<Option<String>, DiskError> {
    let mut w = df.create(Some(buf.len() as u64))?;
    w.write(&buf)?;
    let etag = w.etag();
    if check_client_etag(client_etag.as_deref(), &etag).is_err() {
        return Ok(None);
    }
    w.commit(ts, md)?;
    Ok(Some(etag))
}

/// 422 when the client sent an `ETag` (quotes allowed) that differs from the body's MD5.
fn check_client_etag(client: Option<&str>, etag: &str) -> Result<(), HttpError> {
    match client {
        Some(c) if !c.trim().trim_matches('"').eq_ignore_ascii_case(etag) => Err(etag_mismatch()),
        _ => Ok(()),
    }
}

fn etag_mismatch() -> HttpError {
    HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable Entity")
}

fn client_disconnect() -> HttpError {
    HttpError::new(
        StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        "Client Disconnect",
    )
}

/// A failed read of the client's body: 408 after `client_timeout`, else 499.
fn client_read_error(e: &io::Error) -> HttpError {
    if e.kind() == io::ErrorKind::TimedOut {
        HttpError::new(StatusCode::REQUEST_TIMEOUT, "Request Timeout")
    } else {
        client_disconnect()
    }
}

/// A [`DiskFileWriter`] between its device-pool operations. Dropped unfinished (an error
/// path, a refused slot, a cancelled request), its temp file is removed on the device's
/// pool, never on an async thread (a stuck disk must not block the runtime).
struct WriterGuard {
    w: Option<DiskFileWriter>,
    device: Arc<Device>,
}

impl WriterGuard {
    fn new(w: DiskFileWriter, device: Arc<Device>) -> Self {
        WriterGuard { w: Some(w), device }
    }

    fn get(&self) -> &DiskFileWriter {
        self.w.as_ref().expect("writer present until into_inner")
    }

    /// Take the writer (inside a blocking operation).
    fn into_inner(mut self) -> DiskFileWriter {
        self.w.take().expect("writer present until into_inner")
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        let Some(w) = self.w.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                let device = self.device.clone();
                h.spawn(async move { device.run_cleanup(move || drop(w)).await });
            }
            Err(_) => drop(w),
        }
    }
}

/// Read up to `batch` bytes (at least one read, so that the end of the object is
/// verified) as chunks of at most `chunk` bytes sharing one buffer. Empty at EOF.
fn read_batch(
    r: &mut crate::diskfile::ObjectReader,
    batch: usize,
    chunk: usize,
) -> Result<Vec<Bytes>, DiskError> {
    let want = usize::try_from(r.remaining())
        .unwrap_or(usize::MAX)
        .min(batch);
    let mut buf = vec![0u8; want];
    let mut filled = 0;
    loop {
        let n = r.read_chunk(&mut buf[filled..want.min(filled + chunk)])?;
        filled += n;
        if n == 0 || filled >= want {
            break;
        }
    }
    buf.truncate(filled);
    let buf = Bytes::from(buf);
    Ok((0..filled)
        .step_by(chunk)
        .map(|at| buf.slice(at..filled.min(at + chunk)))
        .collect())
}

/// The device name of a policy's paths (`DEVICES/DEV` → `DEV`).
fn device_of(paths: &PolicyPaths) -> String {
    paths
        .device
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn device_name(df: &DiskFile) -> String {
    device_of(df.paths())
}

fn apply_overrides(headers: &HeaderMap, upd: &mut [(String, String)]) {
    for (key, name) in [
        ("x-backend-container-update-override-etag", "X-Etag"),
        ("x-backend-container-update-override-size", "X-Size"),
        (
            "x-backend-container-update-override-content-type",
            "X-Content-Type",
        ),
    ] {
        if let Some(v) = header_str(headers, key) {
            for (k, val) in upd.iter_mut() {
                if k == name {
                    *val = v.to_string();
                }
            }
        }
    }
}

/// Does a comma list of (possibly quoted) ETags, or `*`, match `etag`?
fn etag_list_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(|e| e.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|e| e == "*" || e.eq_ignore_ascii_case(etag))
}

fn parse_http_secs(v: &str) -> Option<u64> {
    httpdate::parse_http_date(v.trim())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// The status of a conditional GET/HEAD that does not send the body, if any.
fn conditional_status(h: &HeaderMap, info: &ObjectInfo) -> Option<StatusCode> {
    let last_modified = info.timestamp().ceil_secs();
    if let Some(im) = header_str(h, "if-match") {
        if !etag_list_matches(im, &info.etag) {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
    } else if let Some(ius) = header_str(h, "if-unmodified-since").and_then(parse_http_secs) {
        if last_modified > ius {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
    }
    if let Some(inm) = header_str(h, "if-none-match") {
        if etag_list_matches(inm, &info.etag) {
            return Some(StatusCode::NOT_MODIFIED);
        }
    } else if let Some(ims) = header_str(h, "if-modified-since").and_then(parse_http_secs) {
        if last_modified <= ims {
            return Some(StatusCode::NOT_MODIFIED);
        }
    }
    None
}

/// A single byte range resolved against the length (`end` exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeSpec {
    Range(u64, u64),
    Unsatisfiable,
}

/// A piece of a GET body.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BodyPart {
    Bytes(Bytes),
    /// Object bytes `start..end`.
    Range(u64, u64),
}

/// At most this many ranges in one `Range` header (Swift's `MAX_RANGES`); more → ignored.
const MAX_RANGES: usize = 50;

/// Parse a `Range` header like Swift: `None` → ignore it (200, whole body); otherwise the
/// satisfiable ranges (`start..end`, end exclusive), empty → 416. Any syntactically bad
/// range, or more than 50, makes the whole header ignored.
fn parse_ranges(v: &str, len: u64) -> Option<Vec<(u64, u64)>> {
    let specs = v.trim().strip_prefix("bytes=")?;
    let specs: Vec<&str> = specs.split(',').map(str::trim).collect();
    if specs.len() > MAX_RANGES {
        return None;
    }
    let mut out = Vec::new();
    for spec in specs {
        match parse_range(&format!("bytes={spec}"), len)? {
            RangeSpec::Range(a, b) => out.push((a, b)),
            RangeSpec::Unsatisfiable => {}
        }
    }
    Some(out)
}

/// The parts and total length of a `multipart/byteranges` body (Swift's framing).
fn multipart_parts(
    ranges: &[(u64, u64)],
    len: u64,
    ctype: &str,
    boundary: &str,
) -> (Vec<BodyPart>, u64) {
    let mut parts = Vec::with_capacity(ranges.len() * 3 + 1);
    let mut total = 0u64;
    for (i, (a, b)) in ranges.iter().enumerate() {
        let lead = if i == 0 { "" } else { "\r\n" };
        let head = format!(
            "{lead}--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes {a}-{}/{len}\r\n\r\n",
            b - 1
        );
        total += head.len() as u64 + (b - a);
        parts.push(BodyPart::Bytes(Bytes::from(head)));
        parts.push(BodyPart::Range(*a, *b));
    }
    let tail = format!("\r\n--{boundary}--");
    total += tail.len() as u64;
    parts.push(BodyPart::Bytes(Bytes::from(tail)));
    (parts, total)
}

/// Parse `bytes=a-b`, `bytes=a-`, `bytes=-n`. Invalid syntax and multiple ranges are
/// ignored (`None` → 200 with the whole body).
fn parse_range(v: &str, len: u64) -> Option<RangeSpec> {
    let spec = v.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    if a.is_empty() {
        let n = num(b)?;
        if n == 0 || len == 0 {
            return Some(RangeSpec::Unsatisfiable);
        }
        return Some(RangeSpec::Range(len - n.min(len), len));
    }
    let start = num(a)?;
    let end = if b.is_empty() { None } else { Some(num(b)?) };
    if end.is_some_and(|e| e < start) {
        return None;
    }
    if start >= len {
        return Some(RangeSpec::Unsatisfiable);
    }
    Some(RangeSpec::Range(
        start,
        end.map_or(len, |e| e.saturating_add(1).min(len)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_ranges() {
        assert_eq!(
            parse_ranges("bytes=0-1,5-6", 10),
            Some(vec![(0, 2), (5, 7)])
        );
        assert_eq!(parse_ranges("bytes=0-1, 50-60", 10), Some(vec![(0, 2)]));
        assert_eq!(parse_ranges("bytes=20-30,50-", 10), Some(vec![]));
        assert_eq!(parse_ranges("bytes=0-1,x", 10), None);
        let many = (0..51)
            .map(|i| format!("{i}-{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(parse_ranges(&format!("bytes={many}"), 100), None);
        let (parts, total) = multipart_parts(&[(0, 2), (5, 7)], 10, "text/plain", "BB");
        let mut text = Vec::new();
        for p in &parts {
            match p {
                BodyPart::Bytes(b) => text.extend_from_slice(b),
                BodyPart::Range(a, b) => text.extend(std::iter::repeat_n(b'x', (b - a) as usize)),
            }
        }
        assert_eq!(text.len() as u64, total);
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "--BB\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\nxx\r\n\
             --BB\r\nContent-Type: text/plain\r\nContent-Range: bytes 5-6/10\r\n\r\nxx\r\n--BB--"
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(RangeSpec::Range(0, 10)));
        assert_eq!(
            parse_range("bytes=90-", 100),
            Some(RangeSpec::Range(90, 100))
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            Some(RangeSpec::Range(90, 100))
        );
        assert_eq!(
            parse_range("bytes=-1000", 100),
            Some(RangeSpec::Range(0, 100))
        );
        assert_eq!(
            parse_range("bytes=50-1000", 100),
            Some(RangeSpec::Range(50, 100))
        );
        assert_eq!(
            parse_range("bytes=100-", 100),
            Some(RangeSpec::Unsatisfiable)
        );
        assert_eq!(
            parse_range("bytes=120-", 100),
            Some(RangeSpec::Unsatisfiable)
        );
        assert_eq!(
            parse_range("bytes=120-130", 100),
            Some(RangeSpec::Unsatisfiable)
        );
        assert_eq!(parse_range("bytes=-0", 100), Some(RangeSpec::Unsatisfiable));
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=x-1", 100), None);
    }

    fn req(
        method: &str,
        path: &str,
        ts: Option<Timestamp>,
        body: &'static [u8],
    ) -> Request<RequestBody> {
        let mut b = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path)
            .header("Content-Type", "text/plain")
            .header("Content-Length", body.len().to_string());
        if let Some(ts) = ts {
            b = b.header("X-Timestamp", ts.internal());
        }
        b.body(RequestBody::from(Bytes::from_static(body))).unwrap()
    }

    #[tokio::test]
    async fn device_io_errors_answer_507_until_the_backoff_passes() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["sda", "sdb"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let s = ObjectServer::new(
            ObjectServerSettings {
                disk: DiskConfig {
                    devices: dir.path().to_path_buf(),
                    mount_check: false,
                    fallocate_reserve: cairn_common::fs::FallocateReserve::NONE,
                    ..DiskConfig::default()
                },
                device_pool: DevicePoolConfig {
                    concurrency: 4,
                    wait_timeout: Duration::from_secs(5),
                    error_backoff: Duration::from_millis(400),
                },
                ..ObjectServerSettings::default()
            },
            HashPathSecret::new("", "changeme"),
        );
        let base = Timestamp::now().secs() - 100;
        let ts = |n: u64| Timestamp::from_secs(base + n);
        let status = |r: Response<Body>| r.status();
        for dev in ["sda", "sdb"] {
            let r = s
                .handle(req("PUT", &format!("/{dev}/0/a/c/o"), Some(ts(1)), b"hi"))
                .await;
            assert_eq!(status(r), StatusCode::CREATED);
        }
        // The disk starts failing: the request that hits it gets 507 and marks the device.
        s.device("sda").inject_fault(Some(libc::EIO));
        let r = s.handle(req("GET", "/sda/0/a/c/o", None, b"")).await;
        assert_eq!(status(r), StatusCode::INSUFFICIENT_STORAGE);
        assert!(s.device("sda").is_failed());
        // While marked, every request is 507 without touching the disk (even once the
        // fault is gone), writes included; the other device serves as usual.
        s.device("sda").inject_fault(None);
        for (m, t) in [
            ("GET", None),
            ("HEAD", None),
            ("PUT", Some(ts(2))),
            ("DELETE", Some(ts(3))),
        ] {
            let r = s.handle(req(m, "/sda/0/a/c/o", t, b"hi")).await;
            assert_eq!(status(r), StatusCode::INSUFFICIENT_STORAGE, "{m}");
        }
        let r = s.handle(req("GET", "/sdb/0/a/c/o", None, b"")).await;
        assert_eq!(status(r), StatusCode::OK);
        // After the backoff the device is tried again and recovers.
        tokio::time::sleep(Duration::from_millis(450)).await;
        let r = s.handle(req("GET", "/sda/0/a/c/o", None, b"")).await;
        assert_eq!(status(r), StatusCode::OK);
        assert!(!s.device("sda").is_failed());
        // ENOENT-class errors (not the device) do not mark it.
        s.device("sda").inject_fault(Some(libc::ENOENT));
        let r = s.handle(req("GET", "/sda/0/a/c/o", None, b"")).await;
        assert_eq!(status(r), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!s.device("sda").is_failed());
    }

    #[test]
    fn names_and_queue() {
        assert_eq!(title_case("x-object-meta-color"), "X-Object-Meta-Color");
        assert_eq!(title_case("content-TYPE"), "Content-Type");
        assert_eq!(title_case("x-object-meta-a1b"), "X-Object-Meta-A1B");
        assert_eq!(
            expirer_object(1_700_006_400, "AUTH_test", "photos", "cat.jpg"),
            "1700006400-AUTH_test/photos/cat.jpg"
        );
        // 0x...64 % 100 == 0 → day boundary itself
        assert_eq!(
            expirer_container(1_700_006_400, "00000000000000000000000000000064"),
            "1700006400"
        );
        assert_eq!(
            expirer_container(1_700_006_401, "00000000000000000000000000000001"),
            "1700006399"
        );
        assert!(etag_list_matches("\"abc\", def", "ABC"));
        assert!(etag_list_matches("*", "x"));
        assert!(!etag_list_matches("abc", "abd"));
    }
}
