//! Object versioning (Swift's legacy `versioned_writes`): a container with
//! `X-Versions-Location: VC` (stack mode) or `X-History-Location: VC` (history mode).
//!
//! * Before an object is overwritten, its current version is copied to
//!   `VC/<len(name) as %03x><name>/<its X-Timestamp>` (both modes).
//! * DELETE in stack mode restores the newest saved version in place of the object and
//!   deletes that saved copy; with no saved version it is an ordinary DELETE.
//! * DELETE in history mode saves the current version, writes a zero-byte delete marker
//!   (`application/x-deleted;swift_versions_deleted=1`) and deletes the object.
//!
//! The copies are internal writes: they are not authorized again (the client request
//! was), like Swift's pre-authed sub-requests. Simplification: stack-mode DELETE does
//! not interpret delete markers left by a former history mode (it restores the newest
//! non-marker version, or deletes normally when the newest entry is a marker).

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use cairn_common::http::{full, Body};
use cairn_common::Timestamp;

use crate::auth::hv;
use crate::backend::{reply_to_client, GetOutcome, ServerType};
use crate::headers::{get, status_response};
use crate::object::{fetch, source_headers, store_raw, target, write_all};
use crate::server::{Ctx, Proxy};

pub const DELETE_MARKER_CONTENT_TYPE: &str = "application/x-deleted;swift_versions_deleted=1";

/// `%03x<name>/`: the listing prefix of an object's versions.
pub fn versions_prefix(object: &str) -> String {
    format!("{:03x}{object}/", object.len())
}

/// The name of a saved version.
pub fn version_name(object: &str, ts: &Timestamp) -> String {
    format!("{}{}", versions_prefix(object), ts.internal())
}

/// A failed internal step: client errors become 412, others 503 (Swift's
/// `_check_response_error`).
fn step_error(status: u16) -> Response<Body> {
    status_response(if (400..500).contains(&status) {
        StatusCode::PRECONDITION_FAILED
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    })
}

/// Copy the current version of `/a/c/o` (if any) into `versions`.
pub(crate) async fn copy_current(
    p: &Proxy,
    ctx: &Ctx,
    (a, c, o): (&str, &str, &str),
    versions: &str,
) -> Result<(), Response<Body>> {
    let t = target(p, ctx, a, c, o).await?;
    let mut h = HeaderMap::new();
    h.insert("x-newest", HeaderValue::from_static("true"));
    let src = match fetch(p, ctx, Method::GET, &t, (a, c, o), h, true, None).await {
        GetOutcome::Found(r, _) if r.status == StatusCode::OK => r,
        GetOutcome::Found(r, _) => return Err(step_error(r.status.as_u16())),
        GetOutcome::Failed(replies) => {
            let best = p.read_failure(&replies);
            if best.status == 404 {
                return Ok(());
            }
            return Err(step_error(best.status));
        }
    };
    let ts = get(&src.headers, "x-timestamp")
        .and_then(|v| Timestamp::parse(v).ok())
        .unwrap_or_else(Timestamp::now);
    let name = version_name(o, &ts);
    let vt = target(p, ctx, a, versions, &name).await?;
    if !vt.info.exists() {
        return Err(step_error(404));
    }
    let mut base = source_headers(&src.headers, false);
    if let Some(size) = get(&src.headers, "x-object-sysmeta-slo-size") {
        if let Some(ct) = get(&base, "content-type").map(str::to_string) {
            base.insert("content-type", hv(&format!("{ct};swift_bytes={size}")));
        }
    }
    let len = get(&src.headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    let delete_at = get(&base, "x-delete-at").and_then(|v| v.trim().parse::<u64>().ok());
    let (outcome, _) = store_raw(
        p,
        ctx,
        &vt,
        (a, versions, &name),
        base,
        len,
        delete_at,
        src.body,
    )
    .await;
    if outcome.status.is_success() {
        Ok(())
    } else {
        Err(step_error(outcome.status.as_u16()))
    }
}

/// History-mode DELETE: save the current version and write a delete marker. The caller
/// then deletes the object as usual.
pub(crate) async fn delete_push(
    p: &Proxy,
    ctx: &Ctx,
    (a, c, o): (&str, &str, &str),
    versions: &str,
) -> Result<(), Response<Body>> {
    copy_current(p, ctx, (a, c, o), versions).await?;
    let name = version_name(o, &Timestamp::now());
    let vt = target(p, ctx, a, versions, &name).await?;
    let mut base = HeaderMap::new();
    base.insert(
        "content-type",
        HeaderValue::from_static(DELETE_MARKER_CONTENT_TYPE),
    );
    let (outcome, _) = store_raw(
        p,
        ctx,
        &vt,
        (a, versions, &name),
        base,
        Some(0),
        None,
        full(""),
    )
    .await;
    if outcome.status.is_success() {
        Ok(())
    } else {
        Err(step_error(outcome.status.as_u16()))
    }
}

/// Stack-mode DELETE: restore the newest saved version. `None` when there is nothing
/// to restore (the caller deletes normally).
pub(crate) async fn delete_pop(
    p: &Proxy,
    ctx: &Ctx,
    (a, c, o): (&str, &str, &str),
    versions: &str,
) -> Option<Response<Body>> {
    let ring = p.rings.container();
    let part = ring.get_part(&p.secret, a, Some(versions), None);
    let q = format!(
        "format=json&reverse=on&limit=100&prefix={}",
        cairn_common::http::quote(&versions_prefix(o))
    );
    let out = p
        .get_first(
            &ring,
            part,
            Method::GET,
            ServerType::Container,
            a,
            Some(versions),
            None,
            Some(&q),
            p.backend_headers(ctx),
        )
        .await;
    let GetOutcome::Found(r, _) = out else {
        return None;
    };
    let data = r.bytes(16 << 20).await.ok()?;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&data).unwrap_or_default();
    for row in rows {
        let name = row["name"].as_str()?.to_string();
        if row["content_type"].as_str() == Some(DELETE_MARKER_CONTENT_TYPE) {
            return None;
        }
        // Restore: GET the saved version, PUT it in place, delete the saved copy.
        let vt = match target(p, ctx, a, versions, &name).await {
            Ok(t) => t,
            Err(r) => return Some(r),
        };
        let mut h = HeaderMap::new();
        h.insert("x-newest", HeaderValue::from_static("true"));
        let src = match fetch(
            p,
            ctx,
            Method::GET,
            &vt,
            (a, versions, &name),
            h,
            true,
            None,
        )
        .await
        {
            GetOutcome::Found(r, _) if r.status == StatusCode::OK => r,
            GetOutcome::Found(r, _) => return Some(step_error(r.status.as_u16())),
            GetOutcome::Failed(replies) => {
                let best = p.read_failure(&replies);
                if best.status == 404 {
                    continue;
                }
                return Some(step_error(best.status));
            }
        };
        let t = match target(p, ctx, a, c, o).await {
            Ok(t) => t,
            Err(r) => return Some(r),
        };
        let base = source_headers(&src.headers, false);
        let len = get(&src.headers, "content-length").and_then(|v| v.parse::<u64>().ok());
        let delete_at = get(&base, "x-delete-at").and_then(|v| v.trim().parse::<u64>().ok());
        let (outcome, _) = store_raw(p, ctx, &t, (a, c, o), base, len, delete_at, src.body).await;
        if !outcome.status.is_success() {
            return Some(step_error(outcome.status.as_u16()));
        }
        let mut sub = ctx.sub();
        sub.headers = HeaderMap::new();
        let replies = write_all(p, &sub, &vt, (a, versions, &name), Method::DELETE, None).await;
        let quorum = crate::quorum::quorum_size(replies.len());
        let best = p.best_reply(&replies, quorum);
        if (200..300).contains(&best.status) {
            let mut r = Response::new(full(""));
            *r.status_mut() = StatusCode::NO_CONTENT;
            return Some(r);
        }
        return Some(reply_to_client(&best));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(versions_prefix("photo.jpg"), "009photo.jpg/");
        let ts = Timestamp::parse("1700000000.12345").unwrap();
        assert_eq!(version_name("a/b", &ts), "003a/b/1700000000.12345");
        assert_eq!(versions_prefix("☃"), "003☃/");
    }
}
