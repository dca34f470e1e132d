//! The account controller (`PROTOCOLS.md`, "Account"): HEAD/GET with
//! `account_autocreate`, POST, and PUT/DELETE for reseller admins when
//! `allow_account_management` is on.

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use cairn_common::constraints::{check_metadata, MetaTarget};
use cairn_common::http::{full, Body};
use cairn_common::Timestamp;

use crate::auth::{hv, AccountAcl, TempAuth};
use crate::backend::{reply_to_client, to_client, GetOutcome, ServerType};
use crate::cache::ACCOUNT_ACL_SYSMETA;

use crate::headers::{error_with, status_response};
use crate::server::{Ctx, Proxy};

const ALLOW: &str = "HEAD, GET, POST, OPTIONS";

pub(crate) async fn handle(p: &Proxy, ctx: &mut Ctx) -> Response<Body> {
    if (ctx.method == Method::POST || ctx.method == Method::DELETE)
        && ctx.param("bulk-delete").is_some()
    {
        return crate::bulk::bulk_delete(p, ctx).await;
    }
    match ctx.method.as_str() {
        "GET" | "HEAD" => get_or_head(p, ctx).await,
        "POST" => post(p, ctx).await,
        "PUT" | "DELETE" => {
            // Swift: a typo'd query on an account DELETE (meant for some middleware)
            // must not delete the account.
            if ctx.method == Method::DELETE && ctx.query.as_deref().is_some_and(|q| !q.is_empty()) {
                return status_response(StatusCode::BAD_REQUEST);
            }
            if !p.cfg.proxy.allow_account_management {
                let mut r = status_response(StatusCode::METHOD_NOT_ALLOWED);
                r.headers_mut()
                    .insert("allow", HeaderValue::from_static(ALLOW));
                return r;
            }
            if let Err(r) = p.authorize(ctx, None).await {
                return r;
            }
            if !TempAuth::is_reseller_admin(&ctx.auth) {
                return status_response(StatusCode::FORBIDDEN);
            }
            write(p, ctx, ctx.method.clone()).await
        }
        _ => {
            let mut r = status_response(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut()
                .insert("allow", HeaderValue::from_static(ALLOW));
            r
        }
    }
}

/// `X-<kind>-Meta-*` and `X-Remove-<kind>-Meta-*` (as an empty value) of a request.
pub(crate) fn meta_headers(ctx: &Ctx, kind: &str) -> HeaderMap {
    let set = format!("x-{kind}-meta-");
    let remove = format!("x-remove-{kind}-meta-");
    let mut h = HeaderMap::new();
    for (k, v) in &ctx.headers {
        let n = k.as_str();
        if n.starts_with(&set) {
            h.insert(k.clone(), v.clone());
        } else if let Some(rest) = n.strip_prefix(&remove) {
            if let Ok(name) = http::HeaderName::try_from(format!("{set}{rest}")) {
                if !h.contains_key(&name) {
                    h.insert(name, HeaderValue::from_static(""));
                }
            }
        }
    }
    h
}

/// The empty listing Swift returns for a missing account under `account_autocreate`.
fn autocreated_listing(ctx: &Ctx) -> Response<Body> {
    let ts = Timestamp::now().normal();
    let format = listing_format(ctx);
    let (status, body, ctype) = match format {
        "json" => (
            StatusCode::OK,
            "[]".to_string(),
            "application/json; charset=utf-8",
        ),
        "xml" => (
            StatusCode::OK,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<account name=\"{}\"></account>",
                xml_escape(&ctx.account)
            ),
            "application/xml; charset=utf-8",
        ),
        _ => (
            StatusCode::NO_CONTENT,
            String::new(),
            "text/plain; charset=utf-8",
        ),
    };
    let mut r = Response::new(full(if ctx.method == Method::HEAD {
        String::new()
    } else {
        body
    }));
    *r.status_mut() = if ctx.method == Method::HEAD {
        StatusCode::NO_CONTENT
    } else {
        status
    };
    let h = r.headers_mut();
    for k in [
        "x-account-container-count",
        "x-account-object-count",
        "x-account-bytes-used",
    ] {
        h.insert(k, HeaderValue::from_static("0"));
    }
    h.insert("x-timestamp", hv(&ts));
    h.insert("x-put-timestamp", hv(&ts));
    h.insert("content-type", HeaderValue::from_static(ctype));
    r
}

/// The listing format of a request: `format=` or the `Accept` header (Swift's
/// `get_listing_content_type`).
pub(crate) fn listing_format(ctx: &Ctx) -> &'static str {
    if let Some(f) = ctx.param("format") {
        return match f.to_ascii_lowercase().as_str() {
            "json" => "json",
            "xml" => "xml",
            _ => "plain",
        };
    }
    let accept = ctx.header("accept").unwrap_or("").to_ascii_lowercase();
    if accept.contains("application/json") {
        "json"
    } else if accept.contains("application/xml") || accept.contains("text/xml") {
        "xml"
    } else {
        "plain"
    }
}

pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn get_or_head(p: &Proxy, ctx: &mut Ctx) -> Response<Body> {
    let owner = match p.authorize(ctx, None).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    if let Some(limit) = ctx.param("limit") {
        if limit
            .trim()
            .parse::<u64>()
            .is_ok_and(|l| l > p.constraints.account_listing_limit)
        {
            return error_with(
                StatusCode::PRECONDITION_FAILED,
                format!("Maximum limit is {}", p.constraints.account_listing_limit),
            );
        }
    }
    let a = ctx.account.clone();
    let ring = p.rings.account();
    let part = ring.get_part(&p.secret, &a, None, None);
    let mut headers = crate::object::read_headers(ctx);
    headers.extend(p.backend_headers(ctx));
    let out = p
        .get_first(
            &ring,
            part,
            ctx.method.clone(),
            ServerType::Account,
            &a,
            None,
            None,
            ctx.query.as_deref(),
            headers,
        )
        .await;
    match out {
        GetOutcome::Found(r, _) => {
            let info = crate::cache::AccountInfo::from_headers(r.status.as_u16(), &r.headers);
            let acl = info.acl.clone();
            if r.status.is_success() {
                p.cache.set_account(&a, info);
            }
            let mut resp = to_client(r.status.as_u16(), &r.headers, r.body);
            owner_headers(resp.headers_mut(), owner, acl.as_deref());
            resp
        }
        GetOutcome::Failed(replies) => {
            let mut best = p.read_failure(&replies);
            let marked_deleted = cairn_common::http::header_str(&best.headers, "x-account-status")
                .is_some_and(|v| v.eq_ignore_ascii_case("deleted"));
            if best.status == 404 && marked_deleted {
                // Swift answers 410 for an account being reaped, and never autocreates it.
                best.status = 410;
            } else if best.status == 404 && p.cfg.proxy.account_autocreate {
                return autocreated_listing(ctx);
            }
            reply_to_client(&best)
        }
    }
}

/// Owners see the account ACL as `X-Account-Access-Control`; others never see the
/// owner-only headers (Swift's `swift_owner_headers`).
fn owner_headers(h: &mut HeaderMap, owner: bool, acl: Option<&str>) {
    if owner {
        if let Some(acl) = acl.and_then(AccountAcl::parse).filter(|a| !a.is_empty()) {
            h.insert("x-account-access-control", hv(&acl.format()));
        }
    } else {
        for k in [
            "x-account-meta-temp-url-key",
            "x-account-meta-temp-url-key-2",
            "x-account-access-control",
        ] {
            h.remove(k);
        }
    }
}

async fn post(p: &Proxy, ctx: &mut Ctx) -> Response<Body> {
    if let Err(r) = p.authorize(ctx, None).await {
        return r;
    }
    write(p, ctx, Method::POST).await
}

/// POST/PUT/DELETE of the account to every account replica.
async fn write(p: &Proxy, ctx: &mut Ctx, method: Method) -> Response<Body> {
    if method != Method::DELETE {
        if let Err(e) = check_metadata(
            ctx.headers
                .iter()
                .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes())),
            MetaTarget::Account,
            &p.constraints,
        ) {
            return error_with(
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                e.message,
            );
        }
    }
    // Account quotas (Swift's `account_quotas`): only reseller admins set them.
    let quota_set = ctx.headers.get("x-account-meta-quota-bytes").cloned();
    let quota_removed = ctx
        .headers
        .contains_key("x-remove-account-meta-quota-bytes");
    if quota_set.is_some() || quota_removed {
        if !TempAuth::is_reseller_admin(&ctx.auth) {
            return status_response(StatusCode::FORBIDDEN);
        }
        if let Some(v) = &quota_set {
            let v = String::from_utf8_lossy(v.as_bytes());
            if !v.is_empty() && v.trim().parse::<i64>().is_err() {
                return status_response(StatusCode::BAD_REQUEST);
            }
        }
    }
    let a = ctx.account.clone();
    let mut meta = meta_headers(ctx, "account");
    if let Some(v) = ctx.headers.get("x-account-access-control") {
        let data = String::from_utf8_lossy(v.as_bytes()).into_owned();
        if let Err(e) = AccountAcl::validate(&data) {
            return error_with(
                StatusCode::BAD_REQUEST,
                format!("X-Account-Access-Control invalid: {e}\n\nInput: {data}\n"),
            );
        }
        meta.insert(ACCOUNT_ACL_SYSMETA, hv(&data));
    }
    let mut best = send(p, ctx, &a, method.clone(), &meta).await;
    if method == Method::POST
        && best.status == 404
        && p.cfg.proxy.account_autocreate
        && autocreate(p, ctx, &a).await
    {
        best = send(p, ctx, &a, method, &meta).await;
    }
    p.cache.forget_account(&a);
    if (200..300).contains(&best.status) {
        let status = if best.status == 201 || best.status == 202 {
            StatusCode::from_u16(best.status).unwrap_or(StatusCode::NO_CONTENT)
        } else {
            StatusCode::NO_CONTENT
        };
        let mut r = Response::new(full(""));
        *r.status_mut() = status;
        return r;
    }
    reply_to_client(&best)
}

async fn send(
    p: &Proxy,
    ctx: &Ctx,
    a: &str,
    method: Method,
    meta: &HeaderMap,
) -> crate::backend::Reply {
    let ring = p.rings.account();
    let part = ring.get_part(&p.secret, a, None, None);
    let n = ring.get_part_nodes(part).count();
    let ts = Timestamp::now();
    let mut h = p.backend_headers(ctx);
    h.extend(meta.clone());
    h.insert("x-timestamp", hv(&ts.internal()));
    let replies = p
        .make_requests(&ring, part, method, a, None, None, None, vec![h; n])
        .await;
    p.best_reply(&replies, crate::quorum::quorum_size(n))
}

/// Create a missing account (`account_autocreate`): `true` when a quorum stored it.
pub(crate) async fn autocreate(p: &Proxy, ctx: &Ctx, a: &str) -> bool {
    let best = send(p, ctx, a, Method::PUT, &HeaderMap::new()).await;
    p.cache.forget_account(a);
    let ok = (200..300).contains(&best.status);
    if ok {
        tracing::info!(account = a, "autocreated account");
    } else {
        tracing::warn!(
            account = a,
            status = best.status,
            "account autocreate failed"
        );
    }
    ok
}
