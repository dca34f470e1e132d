//! Large objects (`PROTOCOLS.md`, "Large objects"): dynamic (DLO, `X-Object-Manifest`)
//! and static (SLO, `?multipart-manifest=put|get|delete`) manifests.
//!
//! A GET of a manifest answers with the manifest's metadata, the summed length and the
//! large-object ETag, then streams the segments one after the other from a spawned task
//! (nested SLOs are expanded as they are met). A single `Range` is honoured (206 with
//! `Content-Range`); several ranges are answered with the whole object (200).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use cairn_common::http::{channel, full, quote, BackendResponse, Body, BodySender};

use crate::auth::{hv, AuthzRequest};
use crate::backend::{to_client, GetOutcome, ServerType};
use crate::headers::{error_with, get, status_response, truthy};
use crate::object::{fetch, target, Target};
use crate::server::{Ctx, Proxy};

/// The manifest PUT lives in its own module; callers find it here with the rest of SLO.
pub(crate) use crate::slo_put::slo_put;

pub const MAX_MANIFEST_SEGMENTS: usize = 1000;
pub const MAX_MANIFEST_SIZE: usize = 8 * 1024 * 1024;
const MAX_NESTING: usize = 10;

/// One entry of a stored SLO manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloEntry {
    pub name: String,
    pub hash: String,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sub_slo: bool,
}

/// One entry of a stored SLO manifest as written since inline data segments (Swift
/// 2.17): an object-backed segment, or `{"data": "<base64>"}` whose bytes live in the
/// manifest itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ManifestItem {
    /// Inline bytes, base64 with normalised padding (as the PUT stored them).
    Data {
        data: String,
    },
    Object(SloEntry),
}

impl ManifestItem {
    /// The object-backed entry, if this is one (deletes and sub-manifests skip data).
    pub fn into_object(self) -> Option<SloEntry> {
        match self {
            ManifestItem::Object(e) => Some(e),
            ManifestItem::Data { .. } => None,
        }
    }
}

/// Decode inline segment data as Swift's `strict_b64decode` does: the standard
/// alphabet only, padding optional (at most two `=`), leftover bits ignored.
pub fn decode_inline(text: &str) -> Option<Bytes> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let body = text.trim_end_matches('=');
    let ok_chars = body
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/');
    if !ok_chars || text.len() - body.len() > 2 || body.len() % 4 == 1 {
        return None;
    }
    LENIENT.decode(body).ok().map(Bytes::from)
}

/// Inline data as stored: standard base64 with padding (Swift re-encodes to normalise).
pub fn encode_inline(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A client's byte selection over an object of known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSel {
    Full,
    /// Inclusive first and last byte.
    Range(u64, u64),
    Unsatisfiable,
}

/// Parse a `Range` header against `total` bytes. Invalid syntax or several ranges →
/// `Full` (the whole object, as Swift does for invalid ranges).
pub fn parse_range(header: Option<&str>, total: u64) -> RangeSel {
    let Some(h) = header else {
        return RangeSel::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeSel::Full;
    };
    if spec.contains(',') {
        return RangeSel::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSel::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse().ok())?
    };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeSel::Full,
        (true, false) => match num(b) {
            None => RangeSel::Full,
            Some(0) => RangeSel::Unsatisfiable,
            Some(_) if total == 0 => RangeSel::Unsatisfiable,
            Some(n) => RangeSel::Range(total.saturating_sub(n), total - 1),
        },
        (false, _) => {
            let Some(start) = num(a) else {
                return RangeSel::Full;
            };
            let end = if b.is_empty() { None } else { num(b) };
            if !b.is_empty() && end.is_none() {
                return RangeSel::Full;
            }
            if end.is_some_and(|e| e < start) {
                return RangeSel::Full;
            }
            if start >= total {
                return RangeSel::Unsatisfiable;
            }
            RangeSel::Range(start, end.unwrap_or(u64::MAX).min(total - 1))
        }
    }
}

/// A segment of a large object: an object (maybe a nested SLO, maybe a range of it) or
/// inline data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Segment {
    /// `/container/object` (decoded); empty for inline data.
    pub path: String,
    /// Expected ETag (empty: don't check).
    pub etag: String,
    pub size: u64,
    /// Inclusive byte range within the segment.
    pub range: Option<(u64, u64)>,
    pub sub_slo: bool,
    /// Inline bytes (`size` is their length).
    pub data: Option<Bytes>,
}

impl Segment {
    pub fn object(path: String, etag: String, size: u64) -> Segment {
        Segment {
            path,
            etag,
            size,
            ..Segment::default()
        }
    }

    pub fn inline(data: Bytes) -> Segment {
        Segment {
            size: data.len() as u64,
            data: Some(data),
            ..Segment::default()
        }
    }

    /// Bytes this segment contributes to the large object.
    pub fn length(&self) -> u64 {
        match self.range {
            Some((a, b)) => b - a + 1,
            None => self.size,
        }
    }
}

/// Conditional request headers evaluated against a large object's ETag and
/// `Last-Modified` (the object servers only saw the manifest): 412, 304 or `None`.
pub fn precondition(h: &HeaderMap, etag: &str, last_modified: Option<&str>) -> Option<StatusCode> {
    let list = |name: &str| -> Option<Vec<String>> {
        let v = h.get(name)?.to_str().ok()?;
        Some(
            v.split(',')
                .map(|t| {
                    t.trim()
                        .trim_start_matches("W/")
                        .trim_matches('"')
                        .to_string()
                })
                .collect(),
        )
    };
    let date = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
    };
    let lm = last_modified.and_then(|v| httpdate::parse_http_date(v).ok());
    let if_match = list("if-match");
    if let Some(tags) = &if_match {
        if !tags.iter().any(|t| t == "*" || t == etag) {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
    }
    let if_none_match = list("if-none-match");
    if let Some(tags) = &if_none_match {
        if tags.iter().any(|t| t == "*" || t == etag) {
            return Some(StatusCode::NOT_MODIFIED);
        }
    }
    if if_match.is_none() {
        if let (Some(since), Some(lm)) = (date("if-unmodified-since"), lm) {
            if lm > since {
                return Some(StatusCode::PRECONDITION_FAILED);
            }
        }
    }
    if if_none_match.is_none() {
        if let (Some(since), Some(lm)) = (date("if-modified-since"), lm) {
            if lm <= since {
                return Some(StatusCode::NOT_MODIFIED);
            }
        }
    }
    None
}

/// A part of a segment to stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// `/container/object` (decoded).
    pub path: String,
    /// Expected ETag of the segment (empty: don't check).
    pub etag: String,
    /// Inclusive byte range within the segment; `None` for the whole segment.
    pub range: Option<(u64, u64)>,
    pub sub_slo: bool,
    pub depth: usize,
    /// Inline bytes, already cut to the wanted range (no request needed).
    pub data: Option<Bytes>,
}

/// Segments as `(path, etag, size, range-within-segment)`: the pieces covering
/// `[first, last]` of their concatenation.
pub fn select_pieces(segments: &[Segment], sel: Option<(u64, u64)>, depth: usize) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut off = 0u64;
    for seg in segments {
        let size = seg.size;
        let (rs, _) = seg.range.unwrap_or((0, 0));
        let len = seg.length();
        let seg_first = off;
        off += len;
        if len == 0 {
            continue;
        }
        let seg_last = off - 1;
        let (want_first, want_last) = sel.unwrap_or((0, u64::MAX));
        if want_last < seg_first || want_first > seg_last {
            continue;
        }
        let a = want_first.max(seg_first) - seg_first + rs;
        let b = want_last.min(seg_last) - seg_first + rs;
        let whole = a == 0 && b + 1 == size;
        out.push(Piece {
            path: seg.path.clone(),
            etag: seg.etag.clone(),
            range: (!whole).then_some((a, b)),
            sub_slo: seg.sub_slo,
            depth,
            data: seg.data.as_ref().map(|d| d.slice(a as usize..=b as usize)),
        });
    }
    out
}

/// Parse a segment range `a-b`, `a-`, `-n` against its size: inclusive bounds.
pub fn segment_range(spec: &str, size: u64) -> Option<(u64, u64)> {
    match parse_range(Some(&format!("bytes={spec}")), size) {
        RangeSel::Range(a, b) => Some((a, b)),
        _ => None,
    }
}

pub(crate) fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// `X-Object-Manifest` on a PUT must be `container/prefix`.
pub(crate) fn check_dlo_manifest_header(ctx: &Ctx) -> Option<Response<Body>> {
    // Swift's dlo: `container/prefix`, both non-empty, no `?` or `&`, the prefix not
    // starting with `/`.
    let v = ctx.header("x-object-manifest")?;
    let ok = !v.contains(['?', '&'])
        && v.split_once('/')
            .is_some_and(|(c, p)| !c.is_empty() && !p.is_empty() && !p.starts_with('/'));
    (!ok).then(|| {
        error_with(
            StatusCode::BAD_REQUEST,
            "X-Object-Manifest must be in the format container/prefix",
        )
    })
}

pub(crate) fn split_cont_obj(path: &str) -> Option<(String, String)> {
    let s = path.strip_prefix('/').unwrap_or(path);
    let (c, o) = s.split_once('/')?;
    (!c.is_empty() && !o.is_empty()).then(|| (c.to_string(), o.to_string()))
}

/// Read access to a segment's container for the caller (object GET semantics).
pub(crate) async fn may_read(
    p: &Proxy,
    ctx: &Ctx,
    a: &str,
    c: &str,
    o: &str,
) -> Result<(), StatusCode> {
    let info = p.container_info(ctx, a, c).await;
    p.authorize_req(
        ctx,
        &AuthzRequest {
            method: &Method::GET,
            account: a,
            container: Some(c),
            object: Some(o),
            referer: ctx.header("referer"),
            acl: info.read_acl.as_deref(),
        },
    )
    .await
    .map(|_| ())
}

/// The response for a large object: manifest headers, LO length/ETag, range, streamed
/// pieces.
fn lo_response(
    p: &Proxy,
    ctx: &Ctx,
    manifest: &BackendResponse,
    segments: Vec<Segment>,
    etag: String,
    total: u64,
) -> Response<Body> {
    if let Some(status) = precondition(&ctx.headers, &etag, get(&manifest.headers, "last-modified"))
    {
        let mut r = if status == StatusCode::NOT_MODIFIED {
            let mut r = Response::new(cairn_common::http::empty());
            *r.status_mut() = status;
            r
        } else {
            status_response(status)
        };
        r.headers_mut().insert("etag", hv(&format!("\"{etag}\"")));
        if let Some(lm) = manifest.headers.get("last-modified") {
            r.headers_mut().insert("last-modified", lm.clone());
        }
        return r;
    }
    let sel = if ctx.method == Method::GET {
        parse_range(ctx.header("range"), total)
    } else {
        RangeSel::Full
    };
    let mut headers = manifest.headers.clone();
    for h in ["content-length", "etag", "content-range", "accept-ranges"] {
        headers.remove(h);
    }
    let (status, sel_range) = match sel {
        RangeSel::Unsatisfiable => {
            let mut r = status_response(StatusCode::RANGE_NOT_SATISFIABLE);
            r.headers_mut()
                .insert("content-range", hv(&format!("bytes */{total}")));
            return r;
        }
        RangeSel::Full => (200, None),
        RangeSel::Range(a, b) => (206, Some((a, b))),
    };
    let len = sel_range.map_or(total, |(a, b)| b - a + 1);
    let body = if ctx.method == Method::HEAD {
        cairn_common::http::empty()
    } else {
        let pieces = select_pieces(&segments, sel_range, 0);
        stream_pieces(ctx.proxy.clone(), ctx.sub(), pieces)
    };
    let mut resp = to_client(status, &headers, body);
    let h = resp.headers_mut();
    h.insert("content-length", HeaderValue::from(len));
    h.insert("etag", hv(&format!("\"{etag}\"")));
    h.insert("accept-ranges", HeaderValue::from_static("bytes"));
    if let Some((a, b)) = sel_range {
        h.insert("content-range", hv(&format!("bytes {a}-{b}/{total}")));
    }
    let _ = p;
    resp
}

/// Stream pieces from a spawned task into the response body.
fn stream_pieces(p: Arc<Proxy>, ctx: Ctx, pieces: Vec<Piece>) -> Body {
    let (tx, body) = channel(4);
    tokio::spawn(async move {
        if let Err(e) = stream_task(&p, &ctx, pieces, &tx).await {
            tracing::warn!(error = %e, "large object segment failed; aborting response");
            tx.abort(std::io::Error::other(e)).await;
        }
    });
    body
}

async fn stream_task(
    p: &Proxy,
    ctx: &Ctx,
    pieces: Vec<Piece>,
    tx: &BodySender,
) -> Result<(), String> {
    let mut queue: VecDeque<Piece> = pieces.into();
    let a = ctx.account.clone();
    while let Some(piece) = queue.pop_front() {
        if let Some(data) = piece.data {
            // Inline data: already in hand and already cut to the range.
            if tx.send(data).await.is_err() {
                return Ok(()); // client gone
            }
            continue;
        }
        let (c, o) = split_cont_obj(&piece.path).ok_or(format!("bad segment {}", piece.path))?;
        may_read(p, ctx, &a, &c, &o)
            .await
            .map_err(|s| format!("segment {} not readable: {s}", piece.path))?;
        let t = target(p, ctx, &a, &c, &o)
            .await
            .map_err(|_| format!("no ring for {}", piece.path))?;
        let mut h = HeaderMap::new();
        if let (Some((x, y)), false) = (piece.range, piece.sub_slo) {
            h.insert("range", hv(&format!("bytes={x}-{y}")));
        }
        let resp = match fetch(p, ctx, Method::GET, &t, (&a, &c, &o), h, false, None).await {
            GetOutcome::Found(r, _) if r.status.is_success() => r,
            _ => return Err(format!("segment {} unavailable", piece.path)),
        };
        if truthy(get(&resp.headers, "x-static-large-object")) {
            if piece.depth >= MAX_NESTING {
                return Err("too deeply nested SLO".into());
            }
            let data = resp
                .bytes(MAX_MANIFEST_SIZE * 2)
                .await
                .map_err(|e| e.to_string())?;
            let entries: Vec<ManifestItem> =
                serde_json::from_slice(&data).map_err(|e| format!("bad manifest: {e}"))?;
            let segs = slo_segments(&entries)?;
            let sub = select_pieces(&segs, piece.range, piece.depth + 1);
            for s in sub.into_iter().rev() {
                queue.push_front(s);
            }
            continue;
        }
        if !piece.etag.is_empty() {
            let got = get(&resp.headers, "etag").unwrap_or("").trim_matches('"');
            if got != piece.etag {
                return Err(format!(
                    "segment {} etag {got} does not match manifest {}",
                    piece.path, piece.etag
                ));
            }
        }
        // A node that ignored the Range (200 instead of 206): cut the range out here.
        let (mut skip, mut left) = match piece.range {
            Some((x, y)) if resp.status == StatusCode::OK => (x, y - x + 1),
            _ => (0, u64::MAX),
        };
        let mut body = resp.body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            if skip > 0 {
                let n = skip.min(data.len() as u64);
                data = data.slice(n as usize..);
                skip -= n;
            }
            if (data.len() as u64) > left {
                data.truncate(left as usize);
            }
            left -= data.len() as u64;
            if !data.is_empty() && tx.send(data).await.is_err() {
                return Ok(()); // client gone
            }
            if left == 0 {
                break;
            }
        }
    }
    Ok(())
}

/// Stored manifest entries as segments for [`select_pieces`].
fn slo_segments(entries: &[ManifestItem]) -> Result<Vec<Segment>, String> {
    entries
        .iter()
        .map(|item| match item {
            ManifestItem::Data { data } => decode_inline(data)
                .map(Segment::inline)
                .ok_or_else(|| "bad inline data in manifest".to_string()),
            ManifestItem::Object(e) => Ok(Segment {
                path: e.name.clone(),
                // A nested manifest's own ETag is not the one recorded (that is its
                // large-object ETag), so it is not checked.
                etag: if e.sub_slo {
                    String::new()
                } else {
                    e.hash.clone()
                },
                size: e.bytes,
                range: e.range.as_deref().and_then(|r| segment_range(r, e.bytes)),
                sub_slo: e.sub_slo,
                data: None,
            }),
        })
        .collect()
}

/// GET/HEAD of a DLO manifest.
pub(crate) async fn dlo_get(
    p: &Proxy,
    ctx: &mut Ctx,
    a: &str,
    manifest: BackendResponse,
    value: &str,
) -> Response<Body> {
    let decoded = percent_encoding::percent_decode_str(value)
        .decode_utf8_lossy()
        .into_owned();
    let Some((c, prefix)) = decoded.split_once('/') else {
        return to_client(manifest.status.as_u16(), &manifest.headers, manifest.body);
    };
    if let Err(s) = may_read(p, ctx, a, c, prefix).await {
        return status_response(s);
    }
    // List the segments (paged).
    let ring = p.rings.container();
    let part = ring.get_part(&p.secret, a, Some(c), None);
    let mut segments = Vec::new();
    let mut marker = String::new();
    loop {
        let q = format!(
            "format=json&prefix={}&marker={}",
            quote(prefix),
            quote(&marker)
        );
        let mut h = p.backend_headers(ctx);
        h.insert("accept", HeaderValue::from_static("application/json"));
        let out = p
            .get_first(
                &ring,
                part,
                Method::GET,
                ServerType::Container,
                a,
                Some(c),
                None,
                Some(&q),
                h,
            )
            .await;
        let rows: Vec<Value> = match out {
            GetOutcome::Found(r, _) if r.status == StatusCode::NO_CONTENT => Vec::new(),
            GetOutcome::Found(r, _) => {
                let data = r.bytes(64 << 20).await.unwrap_or_default();
                serde_json::from_slice(&data).unwrap_or_default()
            }
            GetOutcome::Failed(replies) => {
                let best = p.read_failure(&replies);
                if best.status == 404 {
                    Vec::new()
                } else {
                    return status_response(StatusCode::SERVICE_UNAVAILABLE);
                }
            }
        };
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let (Some(name), Some(hash), Some(bytes)) = (
                row["name"].as_str(),
                row["hash"].as_str(),
                row["bytes"].as_u64(),
            ) else {
                continue;
            };
            marker = name.to_string();
            segments.push(Segment::object(
                format!("/{c}/{name}"),
                hash.to_string(),
                bytes,
            ));
        }
        if segments.len() > p.cfg.proxy.max_large_object_segments {
            return error_with(StatusCode::CONFLICT, "Too many segments in DLO");
        }
        // A short page is the last; container servers cap pages at the effective limit.
        if (rows.len() as u64) < p.constraints().container_listing_limit {
            break;
        }
    }
    let mut etag_src = String::new();
    let mut total = 0u64;
    for seg in &segments {
        etag_src.push_str(&seg.etag);
        total += seg.size;
    }
    let etag = md5_hex(etag_src.as_bytes());
    lo_response(p, ctx, &manifest, segments, etag, total)
}

/// GET/HEAD of an SLO manifest (assembled).
pub(crate) async fn slo_get(
    p: &Proxy,
    ctx: &mut Ctx,
    _t: &Target,
    _names: (&str, &str, &str),
    manifest: BackendResponse,
) -> Response<Body> {
    let headers = manifest.headers.clone();
    let slo_etag = get(&headers, "x-object-sysmeta-slo-etag").map(str::to_string);
    let slo_size = get(&headers, "x-object-sysmeta-slo-size").and_then(|v| v.parse::<u64>().ok());
    let head_resp = BackendResponse {
        status: manifest.status,
        headers: headers.clone(),
        body: cairn_common::http::empty(),
    };
    let fix_ct = |mut r: Response<Body>| {
        if let Some(ct) = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
        {
            let clean = strip_swift_bytes(ct);
            r.headers_mut().insert("content-type", hv(&clean));
        }
        r
    };
    if ctx.method == Method::HEAD {
        if let (Some(e), Some(s)) = (slo_etag.clone(), slo_size) {
            return fix_ct(lo_response(p, ctx, &head_resp, Vec::new(), e, s));
        }
    }
    // A ranged first request returned part of the manifest: refetch it whole.
    let data = if manifest.status == StatusCode::OK {
        manifest.bytes(MAX_MANIFEST_SIZE * 2).await
    } else {
        let (a, c, o) = (
            ctx.account.clone(),
            ctx.container.clone().unwrap_or_default(),
            ctx.object.clone().unwrap_or_default(),
        );
        let t = match target(p, ctx, &a, &c, &o).await {
            Ok(t) => t,
            Err(r) => return r,
        };
        match fetch(
            p,
            ctx,
            Method::GET,
            &t,
            (&a, &c, &o),
            HeaderMap::new(),
            false,
            None,
        )
        .await
        {
            GetOutcome::Found(r, _) => r.bytes(MAX_MANIFEST_SIZE * 2).await,
            GetOutcome::Failed(_) => return status_response(StatusCode::SERVICE_UNAVAILABLE),
        }
    };
    let Ok(data) = data else {
        return status_response(StatusCode::SERVICE_UNAVAILABLE);
    };
    let Ok(entries) = serde_json::from_slice::<Vec<ManifestItem>>(&data) else {
        return status_response(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let Ok(segs) = slo_segments(&entries) else {
        return status_response(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let total: u64 = slo_size.unwrap_or_else(|| segs.iter().map(Segment::length).sum());
    let etag = slo_etag.unwrap_or_else(|| slo_etag_of(&entries));
    fix_ct(lo_response(p, ctx, &head_resp, segs, etag, total))
}

/// `text/plain;swift_bytes=10` → `text/plain`.
pub fn strip_swift_bytes(ct: &str) -> String {
    ct.split(';')
        .filter(|p| !p.trim().starts_with("swift_bytes="))
        .collect::<Vec<_>>()
        .join(";")
}

/// md5 over the segment etags (ranged ones as `etag:range;`, inline data as the md5 of
/// its bytes), as Swift computes it.
pub fn slo_etag_of(entries: &[ManifestItem]) -> String {
    let mut h = Md5::new();
    for item in entries {
        match item {
            ManifestItem::Data { data } => {
                h.update(md5_hex(&decode_inline(data).unwrap_or_default()).as_bytes())
            }
            ManifestItem::Object(e) => match &e.range {
                Some(r) => h.update(format!("{}:{};", e.hash, r).as_bytes()),
                None => h.update(e.hash.as_bytes()),
            },
        }
    }
    hex::encode(h.finalize())
}

/// The large object's length: every segment's (range) length plus the inline bytes.
pub fn slo_size_of(entries: &[ManifestItem]) -> u64 {
    entries
        .iter()
        .map(|item| match item {
            ManifestItem::Data { data } => decode_inline(data).map_or(0, |d| d.len() as u64),
            ManifestItem::Object(e) => e
                .range
                .as_deref()
                .and_then(|r| segment_range(r, e.bytes))
                .map_or(e.bytes, |(x, y)| y - x + 1),
        })
        .sum()
}

/// `?multipart-manifest=get`: the stored manifest (or the PUT format with `format=raw`).
pub(crate) async fn slo_manifest_get(ctx: &Ctx, resp: BackendResponse) -> Response<Body> {
    let headers = resp.headers.clone();
    let Ok(data) = resp.bytes(MAX_MANIFEST_SIZE * 2).await else {
        return status_response(StatusCode::SERVICE_UNAVAILABLE);
    };
    let body = if ctx.param("format").as_deref() == Some("raw") {
        let entries: Vec<ManifestItem> = serde_json::from_slice(&data).unwrap_or_default();
        let raw: Vec<Value> = entries
            .iter()
            .map(|item| match item {
                // Inline data is already in the PUT format.
                ManifestItem::Data { data } => json!({ "data": data }),
                ManifestItem::Object(e) => {
                    let mut v = json!({"path": e.name, "etag": e.hash, "size_bytes": e.bytes});
                    if let Some(r) = &e.range {
                        v["range"] = json!(r);
                    }
                    v
                }
            })
            .collect();
        Bytes::from(Value::Array(raw).to_string())
    } else {
        data
    };
    let mut h = headers;
    h.remove("content-length");
    h.remove("etag");
    let etag = md5_hex(&body);
    let mut r = to_client(200, &h, full(body));
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r.headers_mut().insert("etag", hv(&etag));
    r
}

/// `DELETE ?multipart-manifest=delete`: delete every segment, then the manifest;
/// answer like bulk delete.
pub(crate) async fn slo_delete(
    p: &Proxy,
    ctx: &mut Ctx,
    t: &Target,
    (a, c, o): (&str, &str, &str),
) -> Response<Body> {
    let out = fetch(
        p,
        ctx,
        Method::GET,
        t,
        (a, c, o),
        HeaderMap::new(),
        false,
        None,
    )
    .await;
    // Failures are reported in the bulk-delete document of a 200 (Swift's
    // `handle_multipart_delete` runs inside bulk's delete iterator).
    let failed = |status: StatusCode, body: &str| {
        let report = crate::bulk::DeleteReport {
            status: format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
            body: body.to_string(),
            ..Default::default()
        };
        crate::bulk::report_response(&report, ctx.header("accept"))
    };
    let resp = match out {
        GetOutcome::Found(r, _) => r,
        GetOutcome::Failed(replies) => {
            let s = p.read_failure(&replies).status;
            let s = StatusCode::from_u16(s).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return failed(s, "");
        }
    };
    let mut paths: Vec<String> = Vec::new();
    if truthy(get(&resp.headers, "x-static-large-object")) {
        let data = resp.bytes(MAX_MANIFEST_SIZE * 2).await.unwrap_or_default();
        let entries: Vec<ManifestItem> = serde_json::from_slice(&data).unwrap_or_default();
        // Inline data segments have nothing to delete.
        let entries = entries.into_iter().filter_map(ManifestItem::into_object);
        // Nested manifests go with their own segments (each segment before its manifest).
        let mut stack: Vec<(SloEntry, usize)> = entries.rev().map(|e| (e, 0)).collect();
        while let Some((e, depth)) = stack.pop() {
            if e.sub_slo && depth < MAX_NESTING {
                if let Some(sub) = sub_manifest(p, ctx, a, &e.name).await {
                    stack.push((
                        SloEntry {
                            sub_slo: false,
                            ..e
                        },
                        MAX_NESTING,
                    ));
                    stack.extend(sub.into_iter().rev().map(|s| (s, depth + 1)));
                    continue;
                }
            }
            paths.push(e.name);
        }
    } else {
        return failed(StatusCode::BAD_REQUEST, "Not an SLO manifest");
    }
    paths.push(format!("/{c}/{o}"));
    let mut report = crate::bulk::DeleteReport::default();
    crate::bulk::delete_names(p, ctx, &paths, &mut report).await;
    crate::bulk::report_response(&report, ctx.header("accept"))
}

/// The entries of a nested manifest `/container/object` of account `a`.
async fn sub_manifest(p: &Proxy, ctx: &Ctx, a: &str, path: &str) -> Option<Vec<SloEntry>> {
    let (c, o) = split_cont_obj(path)?;
    let t = target(p, ctx, a, &c, &o).await.ok()?;
    match fetch(
        p,
        ctx,
        Method::GET,
        &t,
        (a, &c, &o),
        HeaderMap::new(),
        false,
        None,
    )
    .await
    {
        GetOutcome::Found(r, _) if truthy(get(&r.headers, "x-static-large-object")) => {
            let data = r.bytes(MAX_MANIFEST_SIZE * 2).await.ok()?;
            let items: Vec<ManifestItem> = serde_json::from_slice(&data).ok()?;
            Some(
                items
                    .into_iter()
                    .filter_map(ManifestItem::into_object)
                    .collect(),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), RangeSel::Full);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), RangeSel::Range(0, 4));
        assert_eq!(parse_range(Some("bytes=5-"), 10), RangeSel::Range(5, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), RangeSel::Range(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), RangeSel::Range(0, 9));
        assert_eq!(parse_range(Some("bytes=2-100"), 10), RangeSel::Range(2, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), RangeSel::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), RangeSel::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), RangeSel::Full);
        assert_eq!(parse_range(Some("bytes=x-2"), 10), RangeSel::Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeSel::Full);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), RangeSel::Full);
    }

    #[test]
    fn preconditions() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        let lm = Some("Tue, 14 Nov 2023 22:13:21 GMT");
        assert_eq!(precondition(&h(&[]), "abc", lm), None);
        assert_eq!(
            precondition(&h(&[("if-match", "\"abc\"")]), "abc", lm),
            None
        );
        assert_eq!(
            precondition(&h(&[("if-match", "\"x\", \"y\"")]), "abc", lm),
            Some(StatusCode::PRECONDITION_FAILED)
        );
        assert_eq!(
            precondition(&h(&[("if-none-match", "\"abc\"")]), "abc", lm),
            Some(StatusCode::NOT_MODIFIED)
        );
        assert_eq!(
            precondition(
                &h(&[("if-modified-since", "Tue, 14 Nov 2023 22:13:21 GMT")]),
                "abc",
                lm
            ),
            Some(StatusCode::NOT_MODIFIED)
        );
        assert_eq!(
            precondition(
                &h(&[("if-unmodified-since", "Tue, 14 Nov 2023 22:13:20 GMT")]),
                "abc",
                lm
            ),
            Some(StatusCode::PRECONDITION_FAILED)
        );
    }

    #[test]
    fn pieces() {
        let seg = |p: &str, e: &str, size| Segment::object(p.into(), e.into(), size);
        let segs = vec![
            seg("/c/a", "ea", 5),
            seg("/c/b", "eb", 5),
            Segment {
                range: Some((2, 4)),
                ..seg("/c/c", "ec", 10)
            },
        ];
        let all = select_pieces(&segs, None, 0);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].range, None);
        assert_eq!(all[2].range, Some((2, 4)));
        let mid = select_pieces(&segs, Some((3, 11)), 0);
        assert_eq!(
            mid.iter()
                .map(|p| (p.path.as_str(), p.range))
                .collect::<Vec<_>>(),
            vec![
                ("/c/a", Some((3, 4))),
                ("/c/b", None),
                ("/c/c", Some((2, 3)))
            ]
        );
        assert!(select_pieces(&segs, Some((100, 200)), 0).is_empty());
    }

    #[test]
    fn inline_pieces_are_cut_to_the_range() {
        let segs = vec![
            Segment::inline(Bytes::from_static(b"head")),
            Segment::object("/c/a".into(), "ea".into(), 5),
            Segment::inline(Bytes::from_static(b"tail")),
        ];
        let got = select_pieces(&segs, Some((2, 10)), 0);
        let data: Vec<_> = got.iter().map(|p| p.data.clone()).collect();
        assert_eq!(
            data,
            vec![
                Some(Bytes::from_static(b"ad")),
                None,
                Some(Bytes::from_static(b"ta"))
            ]
        );
        assert_eq!(got[1].range, None);
        assert_eq!(got[2].range, Some((0, 1)));
    }

    #[test]
    fn slo_etags_and_types() {
        let e = |h: &str, r: Option<&str>| {
            ManifestItem::Object(SloEntry {
                name: "/c/o".into(),
                hash: h.into(),
                bytes: 10,
                content_type: None,
                last_modified: None,
                range: r.map(str::to_string),
                sub_slo: false,
            })
        };
        assert_eq!(
            slo_etag_of(&[e("aa", None), e("bb", None)]),
            md5_hex(b"aabb")
        );
        assert_eq!(slo_etag_of(&[e("aa", Some("0-1"))]), md5_hex(b"aa:0-1;"));
        // Inline data counts as the md5 of its bytes, and its length.
        let data = ManifestItem::Data {
            data: encode_inline(b"xyz"),
        };
        let mixed = [e("aa", None), data.clone(), e("bb", Some("0-1"))];
        let want = format!("aa{}bb:0-1;", md5_hex(b"xyz"));
        assert_eq!(slo_etag_of(&mixed), md5_hex(want.as_bytes()));
        assert_eq!(slo_size_of(&mixed), 10 + 3 + 2);
        // Stored entries of both kinds read back as written.
        let text = serde_json::to_string(&mixed).unwrap();
        let back: Vec<ManifestItem> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, mixed);
        assert!(text.contains(r#"{"data":"eHl6"}"#), "{text}");
        assert_eq!(strip_swift_bytes("text/plain;swift_bytes=10"), "text/plain");
        assert_eq!(segment_range("0-1", 10), Some((0, 1)));
        assert_eq!(segment_range("20-", 10), None);
    }
}
