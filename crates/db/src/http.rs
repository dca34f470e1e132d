//! The HTTP side of DB replication shared by the container and account servers:
//! `REPLICATE /DEV/PART/HASH` ([`replicate_request`], the JSON RPC of [`crate::rpc`]) and
//! whole-DB uploads `PUT /DEV/tmp/NAME` ([`upload_request`]).

use std::path::Path;

use cairn_common::http::{
    self as chttp, check_device_async, header_str, Body, HttpError, RequestBody,
};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};

use crate::broker::Kind;

/// Largest REPLICATE body accepted (a `merge_items` batch of 1000 rows is far smaller).
pub const MAX_RPC_BODY: usize = 64 << 20;

fn io_error(e: std::io::Error) -> HttpError {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        return HttpError::new(StatusCode::INSUFFICIENT_STORAGE, "");
    }
    tracing::error!(error = %e, "DB replication I/O error");
    HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "")
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HttpError> + Send + 'static,
) -> Result<T, HttpError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ))
    })
}

fn status_only(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(chttp::empty());
    *r.status_mut() = status;
    r
}

fn set(headers: &mut HeaderMap, name: &str, value: impl ToString) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(&value.to_string()),
    ) {
        headers.insert(n, v);
    }
}

/// `REPLICATE /DEV/PART/HASH` with a JSON `[op, args…]` body (the DB replication RPC).
pub async fn replicate_request<K: Kind>(
    devices: &Path,
    mount_check: bool,
    req: Request<RequestBody>,
) -> Result<Response<Body>, HttpError> {
    let (device, partition, hash) = chttp::parse_db_replicate_path(req.uri().path())?;
    check_device_async(devices, &device, mount_check).await?;
    let body = req
        .into_body()
        .collect_limited(MAX_RPC_BODY)
        .await
        .map_err(|e| HttpError::bad_request(e.to_string()))?;
    let devices = devices.to_path_buf();
    let reply = blocking(move || {
        Ok(crate::rpc::replicate::<K>(
            &devices, &device, partition, &hash, &body,
        ))
    })
    .await?;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok(match reply.body {
        Some(b) if status.is_success() => {
            let mut r = Response::new(chttp::full(b));
            *r.status_mut() = status;
            set(r.headers_mut(), "content-type", "application/json");
            r
        }
        Some(b) => chttp::text(status, b),
        None => status_only(status),
    })
}

/// `PUT /DEV/tmp/NAME`: a whole-DB upload (replication). Streams into a temp file,
/// checks `X-Backend-Db-Checksum` (SHA-256 hex, 422 on mismatch) and SQLite's
/// quick_check, then renames it to `DEV/tmp/NAME` (fsynced) → 201.
pub async fn upload_request(
    devices: &Path,
    mount_check: bool,
    req: Request<RequestBody>,
) -> Result<Response<Body>, HttpError> {
    use http_body_util::BodyExt;
    use sha2::{Digest, Sha256};
    use tokio::io::AsyncWriteExt;
    let (device, name) = chttp::parse_tmp_path(req.uri().path())
        .unwrap_or_else(|| Err(chttp::PathError::Invalid("Invalid path".into())))?;
    let dev = check_device_async(devices, &device, mount_check).await?;
    let expected =
        header_str(req.headers(), "x-backend-db-checksum").map(|v| v.trim().to_ascii_lowercase());
    let tmp_dir = dev.join("tmp");
    tokio::fs::create_dir_all(&tmp_dir)
        .await
        .map_err(io_error)?;
    let part = tmp_dir.join(format!(".{name}.{}.part", uuid::Uuid::new_v4().simple()));
    let fin = tmp_dir.join(&name);
    let result = async {
        let mut file = tokio::fs::File::create(&part).await.map_err(io_error)?;
        let mut hasher = Sha256::new();
        let mut body = req.into_body();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| HttpError::new(StatusCode::REQUEST_TIMEOUT, e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                hasher.update(&data);
                file.write_all(&data).await.map_err(io_error)?;
            }
        }
        file.sync_all().await.map_err(io_error)?;
        drop(file);
        let got: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if let Some(exp) = expected {
            if exp != got {
                return Err(HttpError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "checksum mismatch",
                ));
            }
        }
        let (p, f, d) = (part.clone(), fin.clone(), tmp_dir.clone());
        blocking(move || {
            let conn = crate::broker::quick_check_file(&p)
                .map_err(|e| HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()));
            conn?;
            std::fs::rename(&p, &f).map_err(io_error)?;
            std::fs::File::open(&d)
                .and_then(|d| d.sync_all())
                .map_err(io_error)
        })
        .await
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&part).await;
    }
    result?;
    Ok(status_only(StatusCode::CREATED))
}
