//! `PUT ?multipart-manifest=put` (`PROTOCOLS.md`, "Large objects"): check the manifest
//! body, HEAD its object-backed segments, store the manifest.
//!
//! Entries are `{"path": …, "etag"?, "size_bytes"?, "range"?}` or inline data
//! `{"data": "<base64>"}` (Swift 2.17). With `heartbeat=on` the client gets a 202 at
//! once and a body of single spaces (one at once, then one every yield frequency)
//! while the segments are checked and the manifest written, then `\r\n\r\n` and the
//! result document (`Response Status`, `Response Body`, `Errors`, and `Etag` and
//! `Last Modified` on success), so that proxies and load balancers between the client
//! and Cairn do not time out a long manifest check.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Map, Value};

use cairn_common::http::{channel, full, quote, Body, BodySender};
use cairn_common::Timestamp;

use crate::auth::hv;
use crate::backend::GetOutcome;
use crate::headers::{error_with, get, status_response, truthy};
use crate::largeobj::{
    decode_inline, encode_inline, may_read, md5_hex, segment_range, slo_etag_of, slo_size_of,
    split_cont_obj, ManifestItem, SloEntry, MAX_MANIFEST_SEGMENTS, MAX_MANIFEST_SIZE,
};
use crate::object::{fetch, store_raw, target, Target};
use crate::server::{Ctx, Proxy};

/// An object-backed entry of the PUT body, as sent.
#[derive(Debug, Clone, PartialEq)]
struct PutEntry {
    path: String,
    etag: Option<String>,
    size_bytes: Option<u64>,
    range: Option<String>,
}

/// A checked entry of the PUT body.
#[derive(Debug, Clone, PartialEq)]
enum Planned {
    Data(Bytes),
    Object(PutEntry),
}

/// Why a manifest was not stored (the 400 and 422 of Swift's slo).
#[derive(Debug)]
enum Refusal {
    /// `(quoted path, problem)` for every bad segment.
    Segments(Vec<(String, String)>),
    /// The client's `ETag` is not the large object's.
    EtagMismatch,
}

/// `PUT ?multipart-manifest=put`.
pub(crate) async fn slo_put(
    p: &Proxy,
    ctx: &mut Ctx,
    t: Target,
    names: (&str, &str, &str),
) -> Response<Body> {
    // Body and syntax errors are answered plainly even with a heartbeat, as Swift does:
    // they are known before anything slow starts.
    let planned = match read_manifest(ctx).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let format = crate::bulk::result_format(ctx.header("accept"));
    if truthy(ctx.param("heartbeat").as_deref()) {
        return heartbeat_put(ctx, t, names, planned, format);
    }
    match check_and_store(p, ctx, &t, names, planned).await {
        Ok(r) => r,
        Err(Refusal::EtagMismatch) => status_response(StatusCode::UNPROCESSABLE_ENTITY),
        Err(Refusal::Segments(errors)) => {
            let doc = ResultDoc {
                fields: Vec::new(),
                errors,
            };
            document_response(StatusCode::BAD_REQUEST, &doc, format)
        }
    }
}

/// Read and check the body: 413 when too big or too many segments, 400 otherwise.
async fn read_manifest(ctx: &mut Ctx) -> Result<Vec<Planned>, Response<Body>> {
    let body = ctx.take_body();
    let data = match body.collect_limited(MAX_MANIFEST_SIZE).await {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(error_with(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Manifest File > {MAX_MANIFEST_SIZE} bytes"),
            ))
        }
        Err(_) => {
            return Err(status_response(
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            ))
        }
    };
    let own = format!(
        "/{}/{}",
        ctx.container.as_deref().unwrap_or(""),
        ctx.object.as_deref().unwrap_or("")
    );
    let planned =
        parse_manifest(&data, &own).map_err(|m| error_with(StatusCode::BAD_REQUEST, m))?;
    // Only object-backed segments count against the limit (inline data is bounded by
    // the manifest size).
    let objects = planned
        .iter()
        .filter(|e| matches!(e, Planned::Object(_)))
        .count();
    if objects > MAX_MANIFEST_SEGMENTS {
        return Err(error_with(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Number of object-backed segments must be <= {MAX_MANIFEST_SEGMENTS}"),
        ));
    }
    Ok(planned)
}

/// Parse the JSON body of the manifest `own` (`/container/object`) into entries; the
/// error is Swift's message (one line per bad entry, `Index N: …`).
fn parse_manifest(data: &[u8], own: &str) -> Result<Vec<Planned>, String> {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return Err("Manifest must be valid JSON.\n".into());
    };
    let Value::Array(list) = v else {
        return Err("Manifest must be a list.\n".into());
    };
    if list.is_empty() {
        return Err("Manifest must have at least one segment.\n".into());
    }
    let last = list.len() - 1;
    let mut out = Vec::with_capacity(list.len());
    let mut errors = String::new();
    for (i, item) in list.iter().enumerate() {
        match plan_entry(item, i == last, own) {
            Ok(e) => out.push(e),
            Err(why) => errors.push_str(&format!("Index {i}: {why}\n")),
        }
    }
    if errors.is_empty() && out.iter().all(|e| matches!(e, Planned::Data(_))) {
        errors.push_str("Inline data segments require at least one object-backed segment.\n");
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// One entry: a data or a path segment, with no keys beyond its kind's.
fn plan_entry(item: &Value, last: bool, own: &str) -> Result<Planned, String> {
    let Value::Object(m) = item else {
        return Err("not a JSON object".into());
    };
    let (kind, allowed): (&str, &[&str]) = if m.contains_key("data") {
        ("data", &["data"])
    } else if m.contains_key("path") {
        ("path", &["path", "range", "etag", "size_bytes"])
    } else {
        return Err("expected keys to include one of 'data' or 'path'".into());
    };
    let mut extra: Vec<&String> = m
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .collect();
    if !extra.is_empty() {
        extra.sort();
        let list: Vec<String> = extra
            .iter()
            .map(|k| Value::from(k.as_str()).to_string())
            .collect();
        return Err(format!("extraneous keys {}", list.join(", ")));
    }
    if kind == "data" {
        plan_data(&m["data"])
    } else {
        plan_path(m, last, own)
    }
}

fn plan_data(v: &Value) -> Result<Planned, String> {
    let data = v
        .as_str()
        .and_then(decode_inline)
        .ok_or("data must be valid base64")?;
    if data.is_empty() {
        return Err("too small; each segment must be at least 1 byte.".into());
    }
    Ok(Planned::Data(data))
}

fn plan_path(m: &Map<String, Value>, last: bool, own: &str) -> Result<Planned, String> {
    let Some(path) = m["path"].as_str() else {
        return Err("\"path\" must be a string".into());
    };
    let etag = match m.get("etag") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("\"etag\" must be a string or null (if provided)".into()),
    };
    if !path.trim_matches('/').contains('/') {
        return Err(
            "path does not refer to an object. Path must be of the form \
                    /container/object."
                .into(),
        );
    }
    // Swift takes sizes as numbers or numeric strings.
    let size_bytes = match m.get("size_bytes") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_u64().ok_or("invalid size_bytes")?),
        Some(Value::String(s)) => Some(s.trim().parse::<u64>().map_err(|_| "invalid size_bytes")?),
        Some(_) => return Err("invalid size_bytes".into()),
    };
    if size_bytes == Some(0) && !last {
        return Err("too small; each segment must be at least 1 byte.".into());
    }
    // A manifest naming itself would be overwritten by the PUT and loop on GET.
    if format!("/{}", path.trim_start_matches('/')) == own {
        return Err("manifest must not include itself as a segment".into());
    }
    let range = match m.get("range") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("invalid range".into()),
    };
    Ok(Planned::Object(PutEntry {
        path: path.to_string(),
        etag,
        size_bytes,
        range,
    }))
}

/// HEAD the object-backed segments, then store the manifest (the part a heartbeat
/// covers). `Ok` is the store's own answer (201, or a backend failure).
async fn check_and_store(
    p: &Proxy,
    ctx: &Ctx,
    t: &Target,
    (a, c, o): (&str, &str, &str),
    planned: Vec<Planned>,
) -> Result<Response<Body>, Refusal> {
    let items = check_segments(p, ctx, a, planned).await?;
    let slo_etag = slo_etag_of(&items);
    if let Some(client) = ctx.header("etag").map(|e| e.trim().trim_matches('"')) {
        if !client.is_empty() && client != slo_etag {
            return Err(Refusal::EtagMismatch);
        }
    }
    Ok(store_manifest(p, ctx, t, (a, c, o), &items, &slo_etag).await)
}

/// Every entry as stored: inline data re-encoded, objects checked (a few at a time).
async fn check_segments(
    p: &Proxy,
    ctx: &Ctx,
    a: &str,
    planned: Vec<Planned>,
) -> Result<Vec<ManifestItem>, Refusal> {
    let n = planned.len();
    let checks = planned.into_iter().enumerate().map(|(i, e)| {
        let sub = ctx.sub();
        async move {
            match e {
                Planned::Data(d) => Ok(ManifestItem::Data {
                    data: encode_inline(&d),
                }),
                Planned::Object(e) => check_segment(p, &sub, a, &e, i + 1 == n)
                    .await
                    .map(ManifestItem::Object),
            }
        }
    });
    let results: Vec<Result<ManifestItem, (String, String)>> = futures_util::stream::iter(checks)
        .buffered(8)
        .collect()
        .await;
    let mut errors = Vec::new();
    let mut items = Vec::with_capacity(n);
    for r in results {
        match r {
            Ok(item) => items.push(item),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(items)
    } else {
        Err(Refusal::Segments(errors))
    }
}

/// Write the manifest with the large object's size and ETag in sysmeta.
async fn store_manifest(
    p: &Proxy,
    ctx: &Ctx,
    t: &Target,
    (a, c, o): (&str, &str, &str),
    items: &[ManifestItem],
    slo_etag: &str,
) -> Response<Body> {
    let total = slo_size_of(items);
    let manifest = serde_json::to_vec(items).unwrap_or_default();
    let mut base = crate::object::forward_headers(ctx);
    base.insert("etag", hv(&md5_hex(&manifest)));
    let ctype = match ctx.header("content-type") {
        Some(ct) if !truthy(ctx.header("x-detect-content-type")) => ct.to_string(),
        _ => crate::object::guess_content_type(o),
    };
    base.insert("content-type", hv(&format!("{ctype};swift_bytes={total}")));
    base.insert("x-static-large-object", HeaderValue::from_static("True"));
    base.insert("x-object-sysmeta-slo-etag", hv(slo_etag));
    base.insert("x-object-sysmeta-slo-size", HeaderValue::from(total));
    base.insert(
        "x-backend-container-update-override-etag",
        hv(&format!("{}; slo_etag={slo_etag}", md5_hex(&manifest))),
    );
    let delete_at = get(&base, "x-delete-at").and_then(|v| v.trim().parse::<u64>().ok());
    let len = manifest.len() as u64;
    let body = full(manifest);
    if let Err(r) = crate::object::version_before_write(p, ctx, t, (a, c, o)).await {
        return r;
    }
    let (outcome, ts) = store_raw(p, ctx, t, (a, c, o), base, Some(len), delete_at, body).await;
    let ok = outcome.status.is_success() && outcome.status != StatusCode::ACCEPTED;
    let mut r = crate::object::put_response(outcome, ts);
    if ok {
        r.headers_mut()
            .insert("etag", hv(&format!("\"{slo_etag}\"")));
    }
    r
}

/// HEAD one object-backed segment and check it against the entry.
async fn check_segment(
    p: &Proxy,
    ctx: &Ctx,
    a: &str,
    e: &PutEntry,
    last: bool,
) -> Result<SloEntry, (String, String)> {
    let path = &e.path;
    let err = |why: &str| (quote(path), why.to_string());
    let Some((c, o)) = split_cont_obj(path) else {
        return Err(err("Invalid segment path"));
    };
    if may_read(p, ctx, a, &c, &o).await.is_err() {
        return Err(err("403 Forbidden"));
    }
    let t = target(p, ctx, a, &c, &o)
        .await
        .map_err(|_| err("503 Service Unavailable"))?;
    let no_headers = HeaderMap::new();
    let resp = match fetch(
        p,
        ctx,
        Method::HEAD,
        &t,
        (a, &c, &o),
        no_headers,
        false,
        None,
    )
    .await
    {
        GetOutcome::Found(r, _) if r.status.is_success() => r,
        GetOutcome::Found(r, _) => return Err(err(&r.status.to_string())),
        GetOutcome::Failed(replies) => {
            let best = p.read_failure(&replies);
            let s = StatusCode::from_u16(best.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return Err(err(&s.to_string()));
        }
    };
    let sub_slo = truthy(get(&resp.headers, "x-static-large-object"));
    // A nested SLO is described by its large object's size and ETag.
    let (size_h, etag_h) = if sub_slo {
        ("x-object-sysmeta-slo-size", "x-object-sysmeta-slo-etag")
    } else {
        ("content-length", "etag")
    };
    let size = get(&resp.headers, size_h)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let etag = get(&resp.headers, etag_h)
        .unwrap_or("")
        .trim_matches('"')
        .to_string();
    let want_etag = e.etag.as_deref().map(|s| s.trim_matches('"'));
    if want_etag.is_some_and(|w| !w.is_empty() && w != etag) {
        return Err(err("Etag Mismatch"));
    }
    if e.size_bytes.is_some_and(|w| w != size) {
        return Err(err("Size Mismatch"));
    }
    let (range, length) = normalise_range(e.range.as_deref(), size).map_err(&err)?;
    if length < 1 && !last {
        return Err(err("Too small; each segment must be at least 1 byte."));
    }
    Ok(SloEntry {
        name: format!("/{c}/{o}"),
        hash: etag,
        bytes: size,
        content_type: get(&resp.headers, "content-type").map(str::to_string),
        last_modified: get(&resp.headers, "x-timestamp")
            .and_then(|v| Timestamp::parse(v).ok())
            .map(|t| t.iso_listing()),
        range,
        sub_slo,
    })
}

/// A segment range as stored (`a-b`, dropped when it is the whole segment) and the
/// length it selects.
fn normalise_range(spec: Option<&str>, size: u64) -> Result<(Option<String>, u64), &'static str> {
    let Some(spec) = spec else {
        return Ok((None, size));
    };
    match segment_range(spec, size) {
        None => Err("Unsatisfiable Range"),
        Some((a, b)) if a == 0 && b + 1 == size => Ok((None, size)),
        Some((a, b)) => Ok((Some(format!("{a}-{b}")), b - a + 1)),
    }
}

/// The heartbeat answer: 202 now, the work in a task writing spaces and then the
/// result document into the body.
fn heartbeat_put(
    ctx: &Ctx,
    t: Target,
    (a, c, o): (&str, &str, &str),
    planned: Vec<Planned>,
    format: &'static str,
) -> Response<Body> {
    let (tx, body) = channel(16);
    let sub = ctx.sub();
    let names = (a.to_string(), c.to_string(), o.to_string());
    tokio::spawn(async move {
        let p = sub.proxy.clone();
        let names = (names.0.as_str(), names.1.as_str(), names.2.as_str());
        let work = check_and_store(&p, &sub, &t, names, planned);
        let period = Duration::from_secs(p.cfg.slo.yield_frequency);
        let doc = match with_heartbeat(work, period, &tx).await {
            Ok(resp) => store_doc(resp).await,
            Err(refusal) => refusal_doc(refusal),
        };
        // Swift separates the spaces from the document with a blank line.
        let text = format!("\r\n\r\n{}", render(&doc, format));
        // A client gone by now just misses the document; the manifest is written.
        let _ = tx.send(Bytes::from(text)).await;
    });
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::ACCEPTED;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(format));
    r
}

/// Run `work`, sending a space at once and then every `period` until it is done. A
/// client that stops reading never stalls the work: a pending space races the work.
async fn with_heartbeat<F: Future>(work: F, period: Duration, tx: &BodySender) -> F::Output {
    let space = || Bytes::from_static(b" ");
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => return out,
        _ = tx.send(space()) => {}
    }
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                tokio::select! {
                    out = &mut work => return out,
                    _ = tx.send(space()) => {}
                }
            }
        }
    }
}

/// A result document: fields, then the `Errors` list.
#[derive(Debug, Default, PartialEq)]
struct ResultDoc {
    fields: Vec<(&'static str, String)>,
    errors: Vec<(String, String)>,
}

fn status_line(s: StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
}

/// Swift's stock body for an error without one: the reason and its explanation.
fn reason_text(s: StatusCode) -> String {
    let why = match s.as_u16() {
        400 => {
            "The server could not comply with the request since it is either \
                malformed or otherwise incorrect."
        }
        422 => "Unable to process the contained instructions",
        _ => "",
    };
    let title = s.canonical_reason().unwrap_or("");
    if why.is_empty() {
        title.to_string()
    } else {
        format!("{title}\n{why}")
    }
}

fn refusal_doc(refusal: Refusal) -> ResultDoc {
    let (status, errors) = match refusal {
        Refusal::Segments(errors) => (StatusCode::BAD_REQUEST, errors),
        Refusal::EtagMismatch => (StatusCode::UNPROCESSABLE_ENTITY, Vec::new()),
    };
    ResultDoc {
        fields: vec![
            ("Response Status", status_line(status)),
            ("Response Body", reason_text(status)),
        ],
        errors,
    }
}

/// The document for the manifest write's own answer (`Etag` and `Last Modified` on
/// success, as the response headers would have had them).
async fn store_doc(resp: Response<Body>) -> ResultDoc {
    let (parts, body) = resp.into_parts();
    let header = |name: &str| get(&parts.headers, name).unwrap_or("").to_string();
    let mut fields = vec![("Response Status", status_line(parts.status))];
    if parts.status.is_success() {
        fields.push(("Etag", header("etag")));
        fields.push(("Last Modified", header("last-modified")));
    }
    // Error bodies from the store are short messages; cap what is read all the same.
    let body = match http_body_util::Limited::new(body, 64 * 1024)
        .collect()
        .await
    {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    fields.push(("Response Body", body));
    ResultDoc {
        fields,
        errors: Vec::new(),
    }
}

/// Render as Swift's bulk-style documents: JSON object, XML `<upload>`, or text lines
/// (keys sorted) followed by `Errors:`.
fn render(doc: &ResultDoc, format: &str) -> String {
    if format == "application/json" {
        let mut m = Map::new();
        for (k, v) in &doc.fields {
            m.insert((*k).to_string(), Value::from(v.as_str()));
        }
        let errors = doc.errors.iter().map(|(p, s)| serde_json::json!([p, s]));
        m.insert("Errors".into(), Value::Array(errors.collect()));
        return Value::Object(m).to_string();
    }
    if format.ends_with("/xml") {
        return render_xml(doc);
    }
    let mut fields: Vec<_> = doc.fields.iter().collect();
    fields.sort();
    let mut out = String::new();
    for (k, v) in fields {
        out.push_str(&format!("{k}: {v}\n"));
    }
    out.push_str("Errors:\n");
    for (p, s) in &doc.errors {
        out.push_str(&format!("{p}, {s}\n"));
    }
    out
}

fn render_xml(doc: &ResultDoc) -> String {
    let esc = crate::account::xml_escape;
    let mut out = String::from("<upload>\n");
    for (k, v) in &doc.fields {
        let key = k.replace(' ', "_").to_lowercase();
        out.push_str(&format!("<{key}>{}</{key}>\n", esc(v)));
    }
    out.push_str("<errors>\n");
    for (p, s) in &doc.errors {
        let (p, s) = (esc(p), esc(s));
        out.push_str(&format!(
            "<object><name>{p}</name><status>{s}</status></object>\n"
        ));
    }
    out.push_str("</errors>\n</upload>\n");
    out
}

fn document_response(status: StatusCode, doc: &ResultDoc, format: &'static str) -> Response<Body> {
    let mut r = Response::new(full(render(doc, format)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(format));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(v: Value) -> Result<Vec<Planned>, String> {
        parse_manifest(v.to_string().as_bytes(), "/c/slo")
    }

    #[test]
    fn inline_data_entries_parse_and_normalise() {
        let got = plan(json!([{"data": "YWJj"}, {"path": "/c/o"}, {"data": "ZA"}])).unwrap();
        assert_eq!(got[0], Planned::Data(Bytes::from_static(b"abc")));
        assert_eq!(got[2], Planned::Data(Bytes::from_static(b"d")));
        assert!(matches!(&got[1], Planned::Object(e) if e.path == "/c/o"));
        // Stored with the padding put back.
        assert_eq!(encode_inline(b"d"), "ZA==");
    }

    #[test]
    fn bad_entries_are_listed_by_index() {
        let err = plan(json!([
            {"data": "not base64!"},
            {"data": ""},
            {"data": "YQ==", "etag": "x"},
            {"path": "nocontainer"},
            {"path": "/c/o", "size_bytes": 0},
            {"name": "/c/o"},
            7,
            {"path": "c/slo"},
        ]))
        .unwrap_err();
        let want = "Index 0: data must be valid base64\n\
                    Index 1: too small; each segment must be at least 1 byte.\n\
                    Index 2: extraneous keys \"etag\"\n\
                    Index 3: path does not refer to an object. Path must be of the form \
                    /container/object.\n\
                    Index 4: too small; each segment must be at least 1 byte.\n\
                    Index 5: expected keys to include one of 'data' or 'path'\n\
                    Index 6: not a JSON object\n\
                    Index 7: manifest must not include itself as a segment\n";
        assert_eq!(err, want);
        assert_eq!(
            plan(json!([{"data": "YQ=="}])).unwrap_err(),
            "Inline data segments require at least one object-backed segment.\n"
        );
        assert_eq!(
            plan(json!({"a": 1})).unwrap_err(),
            "Manifest must be a list.\n"
        );
        let sized = plan(json!([{"path": "/c/o", "size_bytes": "12"}])).unwrap();
        assert!(matches!(&sized[0], Planned::Object(e) if e.size_bytes == Some(12)));
    }

    #[test]
    fn strict_base64() {
        assert_eq!(decode_inline("YWJj").as_deref(), Some(&b"abc"[..]));
        assert_eq!(decode_inline("YWI").as_deref(), Some(&b"ab"[..]));
        assert_eq!(decode_inline("YWI=").as_deref(), Some(&b"ab"[..]));
        assert!(decode_inline("YWI===").is_none());
        assert!(decode_inline("Y").is_none());
        assert!(decode_inline("YW-_").is_none());
        assert!(decode_inline("YW Jj").is_none());
    }

    #[test]
    fn documents() {
        let doc = ResultDoc {
            fields: vec![
                ("Response Status", "400 Bad Request".into()),
                ("Response Body", "Bad Request".into()),
            ],
            errors: vec![("/c/x".into(), "404 Not Found".into())],
        };
        assert_eq!(
            render(&doc, "text/plain"),
            "Response Body: Bad Request\nResponse Status: 400 Bad Request\n\
             Errors:\n/c/x, 404 Not Found\n"
        );
        let v: Value = serde_json::from_str(&render(&doc, "application/json")).unwrap();
        assert_eq!(v["Errors"], json!([["/c/x", "404 Not Found"]]));
        assert_eq!(v["Response Status"], "400 Bad Request");
        assert!(render(&doc, "application/xml").contains("<response_status>400"));
        let d = refusal_doc(Refusal::EtagMismatch);
        assert_eq!(d.fields[0].1, "422 Unprocessable Entity");
        assert!(d.fields[1].1.starts_with("Unprocessable Entity\n"));
    }

    #[test]
    fn ranges_are_normalised() {
        assert_eq!(normalise_range(None, 10), Ok((None, 10)));
        assert_eq!(normalise_range(Some("0-9"), 10), Ok((None, 10)));
        assert_eq!(normalise_range(Some("-3"), 10), Ok((Some("7-9".into()), 3)));
        assert_eq!(normalise_range(Some("20-"), 10), Err("Unsatisfiable Range"));
    }

    /// Spaces flow while the work waits (the work only ends once the test has seen a
    /// tick's space, so nothing depends on timing), and the work's result comes back.
    #[tokio::test]
    async fn heartbeat_spaces_until_done() {
        let (tx, mut body) = channel(16);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<u32>();
        let task = tokio::spawn(async move {
            let work = async move { done_rx.await.unwrap_or(0) };
            with_heartbeat(work, Duration::from_millis(1), &tx).await
        });
        for _ in 0..3 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b" "));
        }
        done_tx.send(42).unwrap();
        assert_eq!(task.await.unwrap(), 42);
    }
}
