//! The HTTP side of DB replication shared by the container and account servers:
//! `REPLICATE /DEV/PART/HASH` ([`replicate_request`], the JSON RPC of [`crate::rpc`]) and
//! whole-DB uploads `PUT /DEV/tmp/NAME` ([`upload_request`]); and the listing request
//! helpers both servers use ([`listing_content_type`], [`query_params`], [`listing_params`]).

use std::path::Path;

use cairn_common::fs::FallocateReserve;
use cairn_common::http::{
    self as chttp, check_device_async, check_free_space_async, header_str, Body, HttpError,
    RequestBody,
};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};

use crate::broker::Kind;
use crate::error::DbError;
use crate::list::ListParams;

/// Largest REPLICATE body accepted (a `merge_items` batch of 1000 rows is far smaller).
pub const MAX_RPC_BODY: usize = 64 << 20;

fn io_error(e: std::io::Error) -> HttpError {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        return HttpError::new(StatusCode::INSUFFICIENT_STORAGE, "");
    }
    tracing::error!(error = %e, "DB replication I/O error");
    HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "")
}

/// Run blocking DB work off the async threads; a panicked task becomes a 500.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HttpError> + Send + 'static,
) -> Result<T, HttpError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ))
    })
}

/// A response with only a status (empty body).
pub fn status_only(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(chttp::empty());
    *r.status_mut() = status;
    r
}

/// Set a header, skipping values that are not valid header text.
pub fn set(headers: &mut HeaderMap, name: &str, value: impl ToString) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(&value.to_string()),
    ) {
        headers.insert(n, v);
    }
}

/// Map a broker error to a response: the one place the container and account servers
/// turn [`DbError`] into a status and a short reason.
pub fn db_error(e: DbError) -> HttpError {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match &e {
        DbError::BadInput(m) => m.clone(),
        DbError::Conflict(_) => {
            "There was a conflict when trying to complete your request.".to_string()
        }
        DbError::NotFound(_) | DbError::Deleted | DbError::Quarantined(_) => String::new(),
        DbError::LockTimeout(_) => String::new(),
        DbError::Corrupt(_) | DbError::Io(_) | DbError::Sqlite(_) => {
            tracing::error!(error = %e, "DB error");
            String::new()
        }
    };
    HttpError::new(status, message)
}

/// The path of a device about to be written: usable (507 otherwise, as for any request)
/// and with more free space than `reserve` (507 otherwise, Swift's `check_free_space`).
pub async fn writable_device(
    devices: &Path,
    device: &str,
    mount_check: bool,
    reserve: FallocateReserve,
) -> Result<std::path::PathBuf, HttpError> {
    let dev = check_device_async(devices, device, mount_check).await?;
    check_free_space_async(&dev, reserve).await?;
    Ok(dev)
}

/// `REPLICATE /DEV/PART/HASH` with a JSON `[op, args…]` body (the DB replication RPC).
/// Refused below `reserve`: most of its ops write (merges, syncs, rsync-then-merge).
pub async fn replicate_request<K: Kind>(
    devices: &Path,
    mount_check: bool,
    reserve: FallocateReserve,
    req: Request<RequestBody>,
) -> Result<Response<Body>, HttpError> {
    let (device, partition, hash) = chttp::parse_db_replicate_path(req.uri().path())?;
    writable_device(devices, &device, mount_check, reserve).await?;
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
/// quick_check, then renames it to `DEV/tmp/NAME` (fsynced) → 201. Refused below
/// `reserve`, like every other write.
pub async fn upload_request(
    devices: &Path,
    mount_check: bool,
    reserve: FallocateReserve,
    req: Request<RequestBody>,
) -> Result<Response<Body>, HttpError> {
    use http_body_util::BodyExt;
    use sha2::{Digest, Sha256};
    use tokio::io::AsyncWriteExt;
    let (device, name) = chttp::parse_tmp_path(req.uri().path())
        .unwrap_or_else(|| Err(chttp::PathError::Invalid("Invalid path".into())))?;
    let dev = writable_device(devices, &device, mount_check, reserve).await?;
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

// ---- listing requests (shared by the container and account servers) ----

/// Listing content type from `format=` or `Accept` (Swift's `get_listing_content_type`).
pub fn listing_content_type(
    format_param: Option<&str>,
    accept: Option<&str>,
) -> Result<&'static str, HttpError> {
    const OFFERS: [&str; 4] = [
        "text/plain",
        "application/json",
        "application/xml",
        "text/xml",
    ];
    if let Some(f) = format_param {
        return Ok(match f.to_ascii_lowercase().as_str() {
            "json" => "application/json",
            "xml" => "application/xml",
            _ => "text/plain",
        });
    }
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok("text/plain");
    };
    let mut best: Option<(f32, usize, usize)> = None; // (q, specificity, offer index)
    for part in accept.split(',') {
        let mut it = part.split(';');
        let range = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for p in it {
            if let Some(v) = p.trim().strip_prefix("q=") {
                q = v
                    .trim()
                    .parse()
                    .map_err(|_| HttpError::bad_request("Invalid Accept header"))?;
            }
        }
        let Some((rt, rs)) = range.split_once('/') else {
            return Err(HttpError::bad_request("Invalid Accept header"));
        };
        for (i, offer) in OFFERS.iter().enumerate() {
            let (ot, os) = offer.split_once('/').unwrap_or((offer, ""));
            let spec = match (rt, rs) {
                ("*", "*") => 0,
                (t, "*") if t == ot => 1,
                (t, s) if t == ot && s == os => 2,
                _ => continue,
            };
            if q <= 0.0 {
                continue;
            }
            let better = match best {
                None => true,
                Some((bq, _, bi)) => q > bq || (q == bq && i < bi),
            };
            if better {
                best = Some((q, spec, i));
            }
        }
    }
    match best {
        Some((_, _, i)) => Ok(OFFERS[i]),
        None => Err(HttpError::new(StatusCode::NOT_ACCEPTABLE, "")),
    }
}

/// Decode one `application/x-www-form-urlencoded` query component (412 if the result is
/// not UTF-8 or contains NUL).
pub fn decode_query_component(s: &str) -> Result<String, HttpError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .ok()
        .filter(|s| !s.contains('\0'))
        .ok_or_else(|| {
            HttpError::new(
                StatusCode::PRECONDITION_FAILED,
                "Invalid UTF8 or contains NULL",
            )
        })
}

/// The decoded `(name, value)` pairs of a query string.
pub fn query_params(query: Option<&str>) -> Result<Vec<(String, String)>, HttpError> {
    let mut out = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((decode_query_component(k)?, decode_query_component(v)?));
    }
    Ok(out)
}

/// Swift's `config_true_value`.
pub fn truthy(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on" | "t" | "y"
    )
}

/// Listing parameters of a GET (Swift's `validate_container_params`).
pub fn listing_params(
    params: &[(String, String)],
    max_limit: usize,
) -> Result<ListParams, HttpError> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let mut limit = max_limit;
    if let Some(l) = get("limit") {
        if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) {
            let n: usize = l.parse().unwrap_or(usize::MAX);
            if n > max_limit {
                return Err(HttpError::new(
                    StatusCode::PRECONDITION_FAILED,
                    format!("Maximum limit is {max_limit}"),
                ));
            }
            limit = n;
        }
    }
    let delimiter = get("delimiter")
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    if let Some(d) = &delimiter {
        if d.chars().count() > 1 || d.chars().next().is_some_and(|c| c as u32 > 254) {
            return Err(HttpError::new(
                StatusCode::PRECONDITION_FAILED,
                "Bad delimiter",
            ));
        }
    }
    Ok(ListParams {
        limit,
        marker: get("marker").unwrap_or("").to_string(),
        end_marker: get("end_marker").unwrap_or("").to_string(),
        prefix: get("prefix").map(str::to_string),
        delimiter,
        path: get("path").map(str::to_string),
        reverse: get("reverse").is_some_and(truthy),
    })
}
