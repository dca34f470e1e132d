//! The object controller: GET/HEAD (first good replica, X-Newest, large objects), PUT
//! (streamed to all replicas, server-side copy), POST, DELETE and COPY
//! (`PROTOCOLS.md`, "Object").

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};

use cairn_common::config::WriteQuorum;
use cairn_common::constraints::{
    check_delete_headers, check_metadata, check_object_size, MetaTarget,
};
use cairn_common::http::{empty, quote, Body};
use cairn_common::Timestamp;
use cairn_ring::Ring;

use crate::auth::hv;
use crate::backend::{reply_to_client, to_client, GetOutcome, Reply, ServerType};
use crate::cache::ContainerInfo;
use crate::headers::{error_with, get, status_response, truthy};
use crate::nodes::{assign_delete_at, assign_updates, primaries};
use crate::put::PutJob;
use crate::quorum::{policy_quorum, quorum_size};
use crate::server::{Ctx, Proxy};

/// The hidden account of the expirer queue.
pub const EXPIRING_ACCOUNT: &str = ".expiring_objects";
const EXPIRER_DIVISOR: u64 = 86_400;

/// Client request headers never forwarded to a storage node.
fn not_forwarded(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "expect"
            | "content-length"
            | "x-auth-token"
            | "x-storage-token"
            | "proxy-connection"
            | "x-copy-from"
            | "x-copy-from-account"
            | "x-fresh-metadata"
            | "destination"
            | "destination-account"
            | "x-delete-after"
            | "x-detect-content-type"
            | "x-newest"
            | "origin"
            | "access-control-request-method"
            | "access-control-request-headers"
    )
}

/// The client's headers that go on to the object servers.
pub fn forward_headers(ctx: &Ctx) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in &ctx.headers {
        if !not_forwarded(k.as_str()) {
            h.append(k.clone(), v.clone());
        }
    }
    h
}

/// Read-request headers passed to the backend.
pub fn read_headers(ctx: &Ctx) -> HeaderMap {
    let mut h = HeaderMap::new();
    for name in [
        "range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "accept",
    ] {
        for v in ctx.headers.get_all(name) {
            h.append(HeaderName::from_static(name), v.clone());
        }
    }
    h
}

/// Swift's `get_expirer_container`.
pub fn expirer_container(delete_at: u64, hash: &[u8; 16]) -> String {
    let shard = hash
        .iter()
        .fold(0u64, |acc, b| (acc * 256 + u64::from(*b)) % 100);
    let v = (delete_at / EXPIRER_DIVISOR * EXPIRER_DIVISOR).saturating_sub(shard);
    format!("{:010}", v.min(9_999_999_999))
}

/// The guessed content type of an object name.
pub fn guess_content_type(name: &str) -> String {
    mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_string()
}

fn sc(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

fn constraint_resp(e: cairn_common::constraints::ConstraintError) -> Response<Body> {
    error_with(sc(e.status), e.message)
}

pub(crate) async fn handle(p: &Proxy, ctx: &mut Ctx) -> Response<Body> {
    match ctx.method.as_str() {
        "GET" | "HEAD" => get_or_head(p, ctx).await,
        "PUT" => put(p, ctx).await,
        "POST" => post(p, ctx).await,
        "DELETE" => delete(p, ctx).await,
        "COPY" => copy(p, ctx).await,
        _ => {
            let mut r = status_response(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut().insert(
                "allow",
                HeaderValue::from_static("HEAD, GET, PUT, POST, OPTIONS, DELETE, COPY"),
            );
            r
        }
    }
}

/// The object ring and the container's info, or the error response.
pub(crate) struct Target {
    pub info: ContainerInfo,
    pub ring: Arc<Ring>,
    pub part: u32,
}

pub(crate) async fn target(
    p: &Proxy,
    ctx: &Ctx,
    a: &str,
    c: &str,
    o: &str,
) -> Result<Target, Response<Body>> {
    let info = p.container_info(ctx, a, c).await;
    let Some(ring) = p.rings.object(info.policy_index) else {
        tracing::error!(policy = info.policy_index, "no object ring for policy");
        return Err(error_with(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("No policy with index {}", info.policy_index),
        ));
    };
    let part = ring.get_part(&p.secret, a, Some(c), Some(o));
    Ok(Target { info, ring, part })
}

/// GET or HEAD of `/a/c/o` with `headers` (policy header added); the raw outcome.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn fetch(
    p: &Proxy,
    ctx: &Ctx,
    method: Method,
    t: &Target,
    (a, c, o): (&str, &str, &str),
    mut headers: HeaderMap,
    newest: bool,
    query: Option<&str>,
) -> GetOutcome {
    headers.extend(p.backend_headers(ctx));
    headers.insert(
        "x-backend-storage-policy-index",
        HeaderValue::from(t.info.policy_index),
    );
    if newest {
        p.get_newest(
            &t.ring,
            t.part,
            method,
            ServerType::Object,
            a,
            Some(c),
            Some(o),
            query,
            headers,
        )
        .await
    } else {
        p.get_first(
            &t.ring,
            t.part,
            method,
            ServerType::Object,
            a,
            Some(c),
            Some(o),
            query,
            headers,
        )
        .await
    }
}

async fn get_or_head(p: &Proxy, ctx: &mut Ctx) -> Response<Body> {
    let (a, c, o) = names(ctx);
    let t = match target(p, ctx, &a, &c, &o).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    if let Err(r) = p.authorize(ctx, t.info.read_acl.as_deref()).await {
        return r;
    }
    let mm = ctx.param("multipart-manifest");
    let newest = truthy(ctx.header("x-newest"));
    let out = if !newest && ctx.method == Method::GET && p.repair.enabled() {
        let mut headers = read_headers(ctx);
        headers.extend(p.backend_headers(ctx));
        headers.insert(
            "x-backend-storage-policy-index",
            HeaderValue::from(t.info.policy_index),
        );
        let (out, misses) = p
            .get_first_with_misses(
                &t.ring,
                t.part,
                Method::GET,
                (&a, Some(&c), Some(&o)),
                None,
                headers,
            )
            .await;
        if let GetOutcome::Found(r, node) = &out {
            if r.status == StatusCode::OK && !misses.is_empty() {
                p.repair.enqueue(crate::repair::RepairJob {
                    part: t.part,
                    account: a.clone(),
                    container: c.clone(),
                    object: o.clone(),
                    policy_index: t.info.policy_index,
                    source: node.clone(),
                    targets: misses,
                    trans_id: ctx.trans_id.clone(),
                });
            }
        }
        out
    } else {
        fetch(
            p,
            ctx,
            ctx.method.clone(),
            &t,
            (&a, &c, &o),
            read_headers(ctx),
            newest,
            None,
        )
        .await
    };
    let conditional = [
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
    ]
    .iter()
    .any(|h| ctx.headers.contains_key(*h));
    let (mut resp, node) = match out {
        GetOutcome::Found(r, node) => (r, Some(node)),
        GetOutcome::Failed(replies) => {
            let best = p.read_failure(&replies);
            if !(best.status == 412 && conditional && mm.as_deref() != Some("get")) {
                return reply_to_client(&best);
            }
            // The precondition may be meant for a large object: look at the manifest.
            match whole_manifest(p, ctx, &t, (&a, &c, &o), newest).await {
                Some(m) => (m, None),
                None => return reply_to_client(&best),
            }
        }
    };
    let retry = resp.status == StatusCode::RANGE_NOT_SATISFIABLE
        || (conditional && resp.status == StatusCode::NOT_MODIFIED);
    if retry && mm.as_deref() != Some("get") {
        // The range or condition may be meant for a large object (a 416 or 304 carries
        // no manifest headers): look at the whole manifest.
        if let Some(m) = whole_manifest(p, ctx, &t, (&a, &c, &o), newest).await {
            resp = m;
        }
    }
    let is_slo = truthy(get(&resp.headers, "x-static-large-object"));
    let dlo = get(&resp.headers, "x-object-manifest").map(str::to_string);
    if mm.as_deref() != Some("get") {
        if is_slo {
            return crate::largeobj::slo_get(p, ctx, &t, (&a, &c, &o), resp).await;
        }
        if let Some(manifest) = dlo {
            return crate::largeobj::dlo_get(p, ctx, &a, resp, &manifest).await;
        }
    } else if is_slo && ctx.method == Method::GET {
        return crate::largeobj::slo_manifest_get(ctx, resp).await;
    }
    let status = resp.status.as_u16();
    let range = match status {
        200 => get(&resp.headers, "content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|n| *n > 0)
            .map(|n| (0, n - 1)),
        206 => get(&resp.headers, "content-range").and_then(crate::resume::parse_content_range),
        _ => None,
    };
    let body = match (range, node) {
        (Some((first, last)), Some(node)) if ctx.method == Method::GET => crate::resume::resumable(
            ctx.proxy.clone(),
            ctx.sub(),
            crate::resume::ResumeTarget {
                ring: t.ring.clone(),
                part: t.part,
                policy_index: t.info.policy_index,
                account: a.clone(),
                container: c.clone(),
                object: o.clone(),
            },
            resp.body,
            get(&resp.headers, "etag").unwrap_or("").to_string(),
            first,
            last,
            node,
        ),
        _ => resp.body,
    };
    let mut out = to_client(status, &resp.headers, body);
    if !out.headers().contains_key("accept-ranges") {
        out.headers_mut()
            .insert("accept-ranges", HeaderValue::from_static("bytes"));
    }
    out
}

/// The object without range or conditions, if it is a large-object manifest.
async fn whole_manifest(
    p: &Proxy,
    ctx: &Ctx,
    t: &Target,
    (a, c, o): (&str, &str, &str),
    newest: bool,
) -> Option<cairn_common::http::BackendResponse> {
    match fetch(
        p,
        ctx,
        ctx.method.clone(),
        t,
        (a, c, o),
        HeaderMap::new(),
        newest,
        None,
    )
    .await
    {
        GetOutcome::Found(m, _)
            if m.status == StatusCode::OK
                && (m.headers.contains_key("x-object-manifest")
                    || truthy(get(&m.headers, "x-static-large-object"))) =>
        {
            Some(m)
        }
        _ => None,
    }
}

/// Save the current version first when the container keeps versions.
pub(crate) async fn version_before_write(
    p: &Proxy,
    ctx: &Ctx,
    t: &Target,
    names: (&str, &str, &str),
) -> Result<(), Response<Body>> {
    match &t.info.versions {
        Some((_, vc)) => crate::versioning::copy_current(p, ctx, names, vc).await,
        None => Ok(()),
    }
}

fn names(ctx: &Ctx) -> (String, String, String) {
    (
        ctx.account.clone(),
        ctx.container.clone().unwrap_or_default(),
        ctx.object.clone().unwrap_or_default(),
    )
}

/// Container-update and expirer-queue headers for each of `n` object requests.
pub(crate) fn update_headers(
    p: &Proxy,
    (a, c, o): (&str, &str, &str),
    n: usize,
    quorum: usize,
    delete_at: Option<u64>,
) -> Vec<HeaderMap> {
    let mut out = vec![HeaderMap::new(); n];
    let cring = p.rings.container();
    let cpart = cring.get_part(&p.secret, a, Some(c), None);
    let cnodes = primaries(&cring, cpart);
    fill_targets(
        &mut out,
        &assign_updates(n, quorum, cnodes.len(), quorum_size(cnodes.len())),
        &cnodes,
        cpart,
        "x-container",
    );
    if let Some(at) = delete_at {
        let hash = p.secret.digest(a, Some(c), Some(o));
        let qc = expirer_container(at, &hash);
        let qpart = cring.get_part(&p.secret, EXPIRING_ACCOUNT, Some(&qc), None);
        let qnodes = primaries(&cring, qpart);
        fill_targets(
            &mut out,
            &assign_delete_at(n, quorum, qnodes.len(), quorum_size(qnodes.len())),
            &qnodes,
            qpart,
            "x-delete-at",
        );
        for h in out.iter_mut() {
            if h.contains_key("x-delete-at-host") {
                h.insert("x-delete-at-container", hv(&qc));
            }
        }
    }
    out
}

fn fill_targets(
    out: &mut [HeaderMap],
    assign: &[Vec<usize>],
    nodes: &[crate::nodes::Node],
    part: u32,
    prefix: &str,
) {
    for (h, targets) in out.iter_mut().zip(assign) {
        if targets.is_empty() {
            continue;
        }
        let hosts: Vec<String> = targets.iter().map(|i| nodes[*i].authority()).collect();
        let devs: Vec<String> = targets.iter().map(|i| nodes[*i].device.clone()).collect();
        let name = |s: &str| HeaderName::try_from(format!("{prefix}-{s}")).ok();
        if let (Some(hn), Some(pn), Some(dn)) = (name("host"), name("partition"), name("device")) {
            h.insert(hn, hv(&hosts.join(",")));
            h.insert(pn, HeaderValue::from(part));
            h.insert(dn, hv(&devs.join(",")));
        }
    }
}

/// The validated `X-Delete-At` of a PUT/POST (and the header rewritten), or a 400.
fn delete_at(ctx: &mut Ctx) -> Result<Option<u64>, Response<Body>> {
    let now = Timestamp::now().as_f64();
    let at = check_delete_headers(
        ctx.header("x-delete-at"),
        ctx.header("x-delete-after"),
        now,
        false,
    )
    .map_err(constraint_resp)?;
    ctx.headers.remove("x-delete-after");
    if let Some(at) = at {
        ctx.headers.insert("x-delete-at", hv(&format!("{at:010}")));
    }
    Ok(at)
}

fn check_meta(p: &Proxy, ctx: &Ctx) -> Result<(), Response<Body>> {
    check_metadata(
        ctx.headers
            .iter()
            .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes())),
        MetaTarget::Object,
        &p.constraints,
    )
    .map_err(constraint_resp)
}

async fn put(p: &Proxy, ctx: &mut Ctx) -> Response<Body> {
    if let Some(v) = ctx.header("if-none-match") {
        if !v.split(',').any(|t| t.trim() == "*") {
            return error_with(StatusCode::BAD_REQUEST, "If-None-Match only supports *");
        }
    }
    let (a, c, o) = names(ctx);
    let t = match target(p, ctx, &a, &c, &o).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    if let Err(r) = p.authorize(ctx, t.info.write_acl.as_deref()).await {
        return r;
    }
    if !t.info.exists() {
        return status_response(StatusCode::NOT_FOUND);
    }
    if ctx.param("multipart-manifest").as_deref() == Some("put") {
        return crate::largeobj::slo_put(p, ctx, t, (&a, &c, &o)).await;
    }
    // Length rules (Swift `check_object_creation`).
    let chunked = ctx
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let content_length = match ctx.header("content-length") {
        None => None,
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return error_with(
                    StatusCode::BAD_REQUEST,
                    "Invalid Content-Length header value",
                )
            }
        },
    };
    if let Some(n) = content_length {
        if let Err(e) = check_object_size(n, &p.constraints) {
            return constraint_resp(e);
        }
    }
    if let Some(r) = check_quota(&t.info, content_length.unwrap_or(0)) {
        return r;
    }
    let account = p.account_info(ctx, &a).await;
    if account
        .quota_bytes
        .is_some_and(|q| account.bytes_used + content_length.unwrap_or(0) > q)
    {
        return error_with(StatusCode::PAYLOAD_TOO_LARGE, "Upload exceeds quota.");
    }
    let copy_from = ctx.header("x-copy-from").map(str::to_string);
    if copy_from.is_some() {
        if content_length.is_some_and(|n| n != 0) || chunked {
            return error_with(
                StatusCode::BAD_REQUEST,
                "Copy requests require a zero byte body",
            );
        }
    } else if content_length.is_none() && !chunked {
        return error_with(
            StatusCode::LENGTH_REQUIRED,
            "Missing Content-Length header.",
        );
    }
    if let Some(ct) = ctx.headers.get("content-type") {
        if let Err(e) = cairn_common::constraints::check_content_type(ct.as_bytes()) {
            return constraint_resp(e);
        }
    }
    let detect = truthy(ctx.header("x-detect-content-type"));
    if let Some(src) = copy_from {
        if let Err(r) = version_before_write(p, ctx, &t, (&a, &c, &o)).await {
            return r;
        }
        return copy_into(p, ctx, t, (&a, &c, &o), &src).await;
    }
    if detect || !ctx.headers.contains_key("content-type") {
        ctx.headers
            .insert("content-type", hv(&guess_content_type(&o)));
    }
    if let Err(r) = check_meta(p, ctx) {
        return r;
    }
    let delete_at = match delete_at(ctx) {
        Ok(d) => d,
        Err(r) => return r,
    };
    if let Some(r) = crate::largeobj::check_dlo_manifest_header(ctx) {
        return r;
    }
    if let Err(r) = version_before_write(p, ctx, &t, (&a, &c, &o)).await {
        return r;
    }
    let body = ctx.take_body();
    let base = forward_headers(ctx);
    store(
        p,
        ctx,
        &t,
        (&a, &c, &o),
        base,
        content_length,
        delete_at,
        body,
    )
    .await
}

/// Container quotas (`X-Container-Meta-Quota-Bytes`/`-Count`): 413 when this upload
/// would exceed them (Swift's `container_quotas`).
pub(crate) fn check_quota(info: &ContainerInfo, len: u64) -> Option<Response<Body>> {
    let quota = |k: &str| info.meta.get(k).and_then(|v| v.trim().parse::<u64>().ok());
    let over_bytes = quota("quota-bytes").is_some_and(|q| info.bytes_used + len > q);
    let over_count = quota("quota-count").is_some_and(|q| info.object_count + 1 > q);
    (over_bytes || over_count)
        .then(|| error_with(StatusCode::PAYLOAD_TOO_LARGE, "Upload exceeds quota."))
}

/// Send a PUT with `base` headers and `body` to the replicas and answer the client.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn store<B>(
    p: &Proxy,
    ctx: &Ctx,
    t: &Target,
    (a, c, o): (&str, &str, &str),
    base: HeaderMap,
    content_length: Option<u64>,
    delete_at: Option<u64>,
    body: B,
) -> Response<Body>
where
    B: hyper::body::Body<Data = bytes::Bytes, Error = std::io::Error> + Unpin,
{
    let outcome = store_raw(p, ctx, t, (a, c, o), base, content_length, delete_at, body).await;
    put_response(outcome.0, outcome.1)
}

/// [`store`] without building the client response: `(outcome, timestamp)`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn store_raw<B>(
    p: &Proxy,
    ctx: &Ctx,
    t: &Target,
    (a, c, o): (&str, &str, &str),
    base: HeaderMap,
    content_length: Option<u64>,
    delete_at: Option<u64>,
    body: B,
) -> (crate::put::PutOutcome, Timestamp)
where
    B: hyper::body::Body<Data = bytes::Bytes, Error = std::io::Error> + Unpin,
{
    let policy = p.policy_by_index(t.info.policy_index);
    let n = primaries(&t.ring, t.part).len();
    let quorum = policy_quorum(n, policy.map(|p| p.write_quorum).unwrap_or_default());
    let ts = Timestamp::now();
    let mut headers = update_headers(p, (a, c, o), n, quorum, delete_at);
    let common = p.backend_headers(ctx);
    for h in headers.iter_mut() {
        h.extend(base.clone());
        h.extend(common.clone());
        h.insert("x-timestamp", hv(&ts.internal()));
        h.insert(
            "x-backend-storage-policy-index",
            HeaderValue::from(t.info.policy_index),
        );
    }
    let if_none_match_star = base
        .get("if-none-match")
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"*");
    let job = PutJob {
        ring: &t.ring,
        part: t.part,
        account: a,
        container: c,
        object: o,
        headers,
        quorum,
        content_length,
        max_size: p.constraints.max_file_size,
        if_none_match_star,
        handoffs: !policy.is_some_and(|p| p.write_quorum == WriteQuorum::All),
    };
    (p.put_object(job, body).await, ts)
}

pub(crate) fn put_response(outcome: crate::put::PutOutcome, ts: Timestamp) -> Response<Body> {
    if let Some(m) = outcome.message {
        return error_with(outcome.status, m);
    }
    if outcome.status == StatusCode::CONFLICT {
        // An existing newer (or same-time) write: Swift answers 202.
        return status_response(StatusCode::ACCEPTED);
    }
    if !outcome.status.is_success() || outcome.status == StatusCode::ACCEPTED {
        return status_response(outcome.status);
    }
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::CREATED;
    let h = r.headers_mut();
    if let Some(e) = outcome.etag {
        h.insert("etag", hv(&e));
    }
    h.insert("last-modified", hv(&ts.http_date()));
    h.insert("content-length", HeaderValue::from_static("0"));
    h.insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    r
}

/// The headers of a stored object that a copy of it keeps: content type, large-object
/// markers and sysmeta, and (unless `fresh`) user metadata and allowed headers.
pub(crate) fn source_headers(src: &HeaderMap, fresh: bool) -> HeaderMap {
    let mut base = HeaderMap::new();
    for (k, v) in src {
        let n = k.as_str();
        let keep = n == "content-type"
            || n == "x-static-large-object"
            || n == "x-object-manifest"
            || n.starts_with("x-object-sysmeta-")
            || (!fresh
                && (n.starts_with("x-object-meta-")
                    || matches!(
                        n,
                        "content-disposition"
                            | "content-encoding"
                            | "content-language"
                            | "cache-control"
                            | "expires"
                            | "x-robots-tag"
                            | "x-delete-at"
                    )));
        if keep {
            base.append(k.clone(), v.clone());
        }
    }
    base
}

/// Parse `/container/object` (of X-Copy-From or Destination): `(container, object)`.
pub fn parse_copy_path(v: &str) -> Option<(String, String)> {
    let decoded = percent_encoding::percent_decode_str(v.trim())
        .decode_utf8()
        .ok()?
        .into_owned();
    let s = decoded.strip_prefix('/').unwrap_or(&decoded);
    let (c, o) = s.split_once('/')?;
    if c.is_empty() || o.is_empty() {
        return None;
    }
    Some((c.to_string(), o.to_string()))
}

/// Server-side copy: GET the source, stream it into a PUT of `/a/c/o`.
async fn copy_into(
    p: &Proxy,
    ctx: &mut Ctx,
    t: Target,
    (a, c, o): (&str, &str, &str),
    src: &str,
) -> Response<Body> {
    let Some((sc_name, so_name)) = parse_copy_path(src) else {
        return error_with(
            StatusCode::PRECONDITION_FAILED,
            "X-Copy-From header must be of the form <container name>/<object name>",
        );
    };
    let sa = ctx
        .header("x-copy-from-account")
        .map(str::to_string)
        .unwrap_or_else(|| a.to_string());
    let st = match target(p, ctx, &sa, &sc_name, &so_name).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    // The source read is authorized like a GET of the source.
    let src_ctx_ok = {
        let req = crate::auth::AuthzRequest {
            method: &Method::GET,
            account: &sa,
            container: Some(&sc_name),
            object: Some(&so_name),
            referer: ctx.header("referer"),
            acl: st.info.read_acl.as_deref(),
        };
        p.authorize_req(ctx, &req).await
    };
    if let Err(s) = src_ctx_ok {
        return status_response(s);
    }
    let out = fetch(
        p,
        ctx,
        Method::GET,
        &st,
        (&sa, &sc_name, &so_name),
        HeaderMap::new(),
        false,
        None,
    )
    .await;
    let src = match out {
        GetOutcome::Found(r, _) => r,
        GetOutcome::Failed(replies) => return reply_to_client(&p.read_failure(&replies)),
    };
    if src.status != StatusCode::OK {
        return reply_to_client(&Reply {
            status: src.status.as_u16(),
            headers: src.headers.clone(),
            body: Default::default(),
        });
    }
    // A large object is copied as its assembled content (a plain object), unless the
    // client asks for the manifest itself with `?multipart-manifest=get`.
    let is_lo = src.headers.contains_key("x-object-manifest")
        || truthy(get(&src.headers, "x-static-large-object"));
    let (src_headers, src_body) =
        if is_lo && ctx.param("multipart-manifest").as_deref() != Some("get") {
            drop(src);
            let mut sub = ctx.sub();
            sub.method = Method::GET;
            sub.account = sa.clone();
            sub.container = Some(sc_name.clone());
            sub.object = Some(so_name.clone());
            sub.query = None;
            sub.headers = HeaderMap::new();
            let resp = Box::pin(get_or_head(p, &mut sub)).await;
            if resp.status() != StatusCode::OK {
                return resp;
            }
            let (parts, body) = resp.into_parts();
            let mut h = parts.headers;
            h.remove("x-static-large-object");
            h.remove("x-object-manifest");
            (h, body)
        } else {
            (src.headers, src.body)
        };
    let fresh = truthy(ctx.header("x-fresh-metadata"));
    // Source metadata and allowed headers first, then the client's on top.
    let mut base = source_headers(&src_headers, fresh);
    for (k, v) in &forward_headers(ctx) {
        base.insert(k.clone(), v.clone());
    }
    base.remove("etag");
    if truthy(ctx.header("x-detect-content-type")) {
        base.insert("content-type", hv(&guess_content_type(o)));
    }
    let delete_at = base
        .get("x-delete-at")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let len = get(&src_headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    let last_modified = get(&src_headers, "last-modified").map(str::to_string);
    let (outcome, ts) = store_raw(p, ctx, &t, (a, c, o), base, len, delete_at, src_body).await;
    let mut r = put_response(outcome, ts);
    if r.status().is_success() {
        r.headers_mut().insert(
            "x-copied-from",
            hv(&format!("{}/{}", quote(&sc_name), quote(&so_name))),
        );
        if sa != a {
            r.headers_mut()
                .insert("x-copied-from-account", hv(&quote(&sa)));
        }
        if let Some(lm) = last_modified {
            r.headers_mut()
                .insert("x-copied-from-last-modified", hv(&lm));
        }
    }
    r
}

async fn copy(p: &Proxy, ctx: &mut Ctx) -> Response<Body> {
    let Some(dest) = ctx.header("destination").map(str::to_string) else {
        return error_with(
            StatusCode::PRECONDITION_FAILED,
            "Destination header required",
        );
    };
    let Some((dc, dobj)) = parse_copy_path(&dest) else {
        return error_with(
            StatusCode::PRECONDITION_FAILED,
            "Destination header must be of the form <container name>/<object name>",
        );
    };
    let src = format!(
        "/{}/{}",
        quote(ctx.container.as_deref().unwrap_or_default()),
        quote(ctx.object.as_deref().unwrap_or_default())
    );
    let src_account = ctx.account.clone();
    if let Some(da) = ctx.header("destination-account").map(str::to_string) {
        ctx.account = da;
    }
    ctx.headers.insert("x-copy-from", hv(&src));
    ctx.headers.insert("x-copy-from-account", hv(&src_account));
    ctx.headers
        .insert("content-length", HeaderValue::from_static("0"));
    ctx.container = Some(dc);
    ctx.object = Some(dobj);
    ctx.method = Method::PUT;
    put(p, ctx).await
}

async fn post(p: &Proxy, ctx: &mut Ctx) -> Response<Body> {
    let (a, c, o) = names(ctx);
    let t = match target(p, ctx, &a, &c, &o).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    if let Err(r) = p.authorize(ctx, t.info.write_acl.as_deref()).await {
        return r;
    }
    if !t.info.exists() {
        return status_response(StatusCode::NOT_FOUND);
    }
    if let Err(r) = check_meta(p, ctx) {
        return r;
    }
    if let Some(ct) = ctx.headers.get("content-type") {
        if let Err(e) = cairn_common::constraints::check_content_type(ct.as_bytes()) {
            return constraint_resp(e);
        }
    }
    let delete_at = match delete_at(ctx) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let replies = write_all(p, ctx, &t, (&a, &c, &o), Method::POST, delete_at).await;
    let n = replies.len();
    let quorum = policy_quorum(
        n,
        p.policy_by_index(t.info.policy_index)
            .map(|p| p.write_quorum)
            .unwrap_or_default(),
    );
    let best = p.best_reply(&replies, quorum);
    if best.status == 202 {
        return status_response(StatusCode::ACCEPTED);
    }
    reply_to_client(&best)
}

/// POST or DELETE to every replica (with handoffs), with container-update headers.
pub(crate) async fn write_all(
    p: &Proxy,
    ctx: &Ctx,
    t: &Target,
    (a, c, o): (&str, &str, &str),
    method: Method,
    delete_at: Option<u64>,
) -> Vec<Reply> {
    let n = primaries(&t.ring, t.part).len();
    let quorum = policy_quorum(
        n,
        p.policy_by_index(t.info.policy_index)
            .map(|p| p.write_quorum)
            .unwrap_or_default(),
    );
    let ts = Timestamp::now();
    let base = forward_headers(ctx);
    let common = p.backend_headers(ctx);
    let mut headers = update_headers(p, (a, c, o), n, quorum, delete_at);
    for h in headers.iter_mut() {
        h.extend(base.clone());
        h.extend(common.clone());
        h.insert("x-timestamp", hv(&ts.internal()));
        h.insert(
            "x-backend-storage-policy-index",
            HeaderValue::from(t.info.policy_index),
        );
    }
    let all = p
        .policy_by_index(t.info.policy_index)
        .is_some_and(|p| p.write_quorum == WriteQuorum::All);
    p.make_requests_with(
        &t.ring,
        t.part,
        method,
        (a, Some(c), Some(o)),
        None,
        headers,
        !all,
    )
    .await
}

async fn delete(p: &Proxy, ctx: &mut Ctx) -> Response<Body> {
    let (a, c, o) = names(ctx);
    let t = match target(p, ctx, &a, &c, &o).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    if let Err(r) = p.authorize(ctx, t.info.write_acl.as_deref()).await {
        return r;
    }
    if !t.info.exists() {
        return status_response(StatusCode::NOT_FOUND);
    }
    if ctx.param("multipart-manifest").as_deref() == Some("delete") {
        return crate::largeobj::slo_delete(p, ctx, &t, (&a, &c, &o)).await;
    }
    match &t.info.versions {
        Some((true, vc)) => {
            if let Err(r) = crate::versioning::delete_push(p, ctx, (&a, &c, &o), vc).await {
                return r;
            }
        }
        Some((false, vc)) => {
            if let Some(r) = crate::versioning::delete_pop(p, ctx, (&a, &c, &o), vc).await {
                return r;
            }
        }
        None => {}
    }
    let replies = write_all(p, ctx, &t, (&a, &c, &o), Method::DELETE, None).await;
    let quorum = policy_quorum(
        replies.len(),
        p.policy_by_index(t.info.policy_index)
            .map(|p| p.write_quorum)
            .unwrap_or_default(),
    );
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    let best = match crate::quorum::best_index_with_overrides(&statuses, quorum, &[(404, 204)]) {
        Some(i) => replies[i].clone(),
        None => Reply::unavailable(),
    };
    if (200..300).contains(&best.status) {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/html; charset=UTF-8"),
        );
        return r;
    }
    reply_to_client(&best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(guess_content_type("a/b/photo.jpg"), "image/jpeg");
        assert_eq!(guess_content_type("notes.txt"), "text/plain");
        assert_eq!(guess_content_type("blob"), "application/octet-stream");
    }

    #[test]
    fn expirer_names() {
        // shard = int(hash, 16) % 100 over the whole 128-bit value.
        let mut h = [0u8; 16];
        h[15] = 142;
        assert_eq!(
            expirer_container(1_700_006_400, &h),
            format!("{:010}", 1_700_006_400 - 42)
        );
        let h = [0xff; 16];
        // 2^128 - 1 mod 100 = 55
        assert_eq!(
            expirer_container(86_400 * 3, &h),
            format!("{:010}", 86_400 * 3 - 55)
        );
    }

    #[test]
    fn copy_paths() {
        assert_eq!(parse_copy_path("/c/o/p"), Some(("c".into(), "o/p".into())));
        assert_eq!(
            parse_copy_path("c/%E2%98%83"),
            Some(("c".into(), "☃".into()))
        );
        assert_eq!(parse_copy_path("/c"), None);
        assert_eq!(parse_copy_path("/c/"), None);
    }
}
