//! The container controller (`PROTOCOLS.md`, "Container"): HEAD/GET (listings passed
//! through, read ACLs), PUT (policy mapping, account existence/autocreate, account-update
//! assignment), POST and DELETE.

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use cairn_common::constraints::{check_container_name, check_metadata, MetaTarget};
use cairn_common::http::{full, Body};
use cairn_common::Timestamp;

use crate::account::meta_headers;
use crate::auth::{clean_acl, hv};
use crate::backend::{reply_to_client, to_client, GetOutcome, Reply, ServerType};
use crate::cache::ContainerInfo;
use crate::headers::{error_with, status_response};
use crate::nodes::primaries;
use crate::quorum::quorum_size;
use crate::server::{Ctx, Proxy};

/// Headers only account owners see or set.
const OWNER_HEADERS: [&str; 6] = [
    "x-container-read",
    "x-container-write",
    "x-container-sync-key",
    "x-container-sync-to",
    "x-container-meta-temp-url-key",
    "x-container-meta-temp-url-key-2",
];

pub(crate) async fn handle(p: &Proxy, ctx: &mut Ctx) -> Response<Body> {
    match ctx.method.as_str() {
        "GET" | "HEAD" => get_or_head(p, ctx).await,
        "PUT" => put(p, ctx).await,
        "POST" => post(p, ctx).await,
        "DELETE" => delete(p, ctx).await,
        _ => {
            let mut r = status_response(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut().insert(
                "allow",
                HeaderValue::from_static("HEAD, GET, PUT, POST, OPTIONS, DELETE"),
            );
            r
        }
    }
}

/// Non-owners may not set owner-only headers: Swift drops them silently (and Cairn also
/// drops their `X-Remove-` forms, which would otherwise clear an ACL or a temp-URL key).
fn strip_owner_headers(ctx: &mut Ctx) {
    for h in OWNER_HEADERS {
        ctx.headers.remove(h);
        if let Some(rest) = h.strip_prefix("x-") {
            ctx.headers.remove(format!("x-remove-{rest}"));
        }
    }
}

fn names(ctx: &Ctx) -> (String, String) {
    (
        ctx.account.clone(),
        ctx.container.clone().unwrap_or_default(),
    )
}

async fn get_or_head(p: &Proxy, ctx: &mut Ctx) -> Response<Body> {
    let (a, c) = names(ctx);
    if let Some(limit) = ctx.param("limit") {
        if limit
            .trim()
            .parse::<u64>()
            .is_ok_and(|l| l > p.constraints.container_listing_limit)
        {
            return error_with(
                StatusCode::PRECONDITION_FAILED,
                format!("Maximum limit is {}", p.constraints.container_listing_limit),
            );
        }
    }
    let ring = p.rings.container();
    let part = ring.get_part(&p.secret, &a, Some(&c), None);
    let mut headers = crate::object::read_headers(ctx);
    headers.extend(p.backend_headers(ctx));
    let newest = crate::headers::truthy(ctx.header("x-newest"));
    let out = if newest {
        p.get_newest(
            &ring,
            part,
            ctx.method.clone(),
            ServerType::Container,
            &a,
            Some(&c),
            None,
            ctx.query.as_deref(),
            headers,
        )
        .await
    } else {
        p.get_first(
            &ring,
            part,
            ctx.method.clone(),
            ServerType::Container,
            &a,
            Some(&c),
            None,
            ctx.query.as_deref(),
            headers,
        )
        .await
    };
    match out {
        GetOutcome::Found(r, _) => {
            let info = ContainerInfo::from_headers(r.status.as_u16(), &r.headers);
            if info.exists() {
                p.cache.set_container(&a, &c, info.clone());
            }
            let owner = match p.authorize(ctx, info.read_acl.as_deref()).await {
                Ok(o) => o,
                Err(resp) => return resp,
            };
            let mut resp = to_client(r.status.as_u16(), &r.headers, r.body);
            if let Some(pol) = p.policy_by_index(info.policy_index) {
                resp.headers_mut().insert("x-storage-policy", hv(&pol.name));
            }
            if !owner {
                for h in OWNER_HEADERS {
                    resp.headers_mut().remove(h);
                }
            }
            resp
        }
        GetOutcome::Failed(replies) => {
            if let Err(resp) = p.authorize(ctx, None).await {
                return resp;
            }
            let best = p.read_failure(&replies);
            p.cache.forget_container(&a, &c);
            reply_to_client(&best)
        }
    }
}

/// Validate metadata and ACLs; returns the backend headers (metadata, ACLs, versioning).
fn write_headers(p: &Proxy, ctx: &Ctx) -> Result<HeaderMap, Response<Body>> {
    check_metadata(
        ctx.headers
            .iter()
            .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes())),
        MetaTarget::Container,
        &p.constraints,
    )
    .map_err(|e| {
        error_with(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            e.message,
        )
    })?;
    for (k, what) in [
        ("x-container-meta-quota-bytes", "bytes"),
        ("x-container-meta-quota-count", "count"),
    ] {
        if let Some(v) = ctx.header(k) {
            if !v.is_empty() && v.trim().parse::<u64>().is_err() {
                return Err(error_with(
                    StatusCode::BAD_REQUEST,
                    format!("Invalid {what} quota."),
                ));
            }
        }
    }
    let mut h = meta_headers(ctx, "container");
    for name in ["x-container-read", "x-container-write"] {
        if let Some(v) = ctx.headers.get(name) {
            let Ok(v) = v.to_str() else {
                return Err(error_with(StatusCode::BAD_REQUEST, "Invalid ACL"));
            };
            let cleaned = clean_acl(name, v).map_err(|m| error_with(StatusCode::BAD_REQUEST, m))?;
            h.insert(http::HeaderName::from_static(name), hv(&cleaned));
        }
    }
    for name in ["x-container-sync-to", "x-container-sync-key"] {
        if let Some(v) = ctx.headers.get(name) {
            h.insert(http::HeaderName::from_static(name), v.clone());
        }
    }
    for (remove, name) in [
        ("x-remove-container-read", "x-container-read"),
        ("x-remove-container-write", "x-container-write"),
    ] {
        if ctx.headers.contains_key(remove) {
            h.insert(
                http::HeaderName::from_static(name),
                HeaderValue::from_static(""),
            );
        }
    }
    // Versioning: one location at a time; setting one clears the other, removing
    // either clears both (Swift keeps one location and a mode).
    let versions = ctx.header("x-versions-location").filter(|v| !v.is_empty());
    let history = ctx.header("x-history-location").filter(|v| !v.is_empty());
    if versions.is_some() && history.is_some() {
        return Err(error_with(
            StatusCode::BAD_REQUEST,
            "Only one of X-Versions-Location or X-History-Location may be specified",
        ));
    }
    let removing = ctx.headers.contains_key("x-remove-versions-location")
        || ctx.headers.contains_key("x-remove-history-location")
        || ctx.header("x-versions-location") == Some("")
        || ctx.header("x-history-location") == Some("");
    if let Some(loc) = versions.or(history) {
        let decoded = percent_encoding::percent_decode_str(loc).decode_utf8_lossy();
        if let Err(e) = check_container_name(&decoded, &p.constraints) {
            return Err(error_with(
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                e.message,
            ));
        }
        let (set, clear) = if versions.is_some() {
            ("x-versions-location", "x-history-location")
        } else {
            ("x-history-location", "x-versions-location")
        };
        h.insert(http::HeaderName::from_static(set), hv(&decoded));
        h.insert(
            http::HeaderName::from_static(clear),
            HeaderValue::from_static(""),
        );
    } else if removing {
        h.insert("x-versions-location", HeaderValue::from_static(""));
        h.insert("x-history-location", HeaderValue::from_static(""));
    }
    Ok(h)
}

/// Account-update headers for each of `n` container requests (account node `i` goes
/// to request `i mod n`).
fn account_update_headers(p: &Proxy, a: &str, n: usize) -> Vec<HeaderMap> {
    let ring = p.rings.account();
    let apart = ring.get_part(&p.secret, a, None, None);
    let anodes = primaries(&ring, apart);
    let mut out = vec![HeaderMap::new(); n];
    if n == 0 {
        return out;
    }
    let mut hosts = vec![Vec::new(); n];
    let mut devs = vec![Vec::new(); n];
    for (i, node) in anodes.iter().enumerate() {
        hosts[i % n].push(node.authority());
        devs[i % n].push(node.device.clone());
    }
    for (i, h) in out.iter_mut().enumerate() {
        if hosts[i].is_empty() {
            continue;
        }
        h.insert("x-account-host", hv(&hosts[i].join(",")));
        h.insert("x-account-partition", HeaderValue::from(apart));
        h.insert("x-account-device", hv(&devs[i].join(",")));
    }
    out
}

async fn send(
    p: &Proxy,
    ctx: &Ctx,
    (a, c): (&str, &str),
    method: Method,
    extra: HeaderMap,
    account_updates: bool,
) -> Reply {
    let ring = p.rings.container();
    let part = ring.get_part(&p.secret, a, Some(c), None);
    let n = ring.get_part_nodes(part).count();
    let ts = Timestamp::now();
    let mut headers = if account_updates {
        account_update_headers(p, a, n)
    } else {
        vec![HeaderMap::new(); n]
    };
    let common = p.backend_headers(ctx);
    for h in headers.iter_mut() {
        h.extend(common.clone());
        h.extend(extra.clone());
        h.insert("x-timestamp", hv(&ts.internal()));
    }
    let replies = p
        .make_requests(&ring, part, method, a, Some(c), None, None, headers)
        .await;
    p.cache.forget_container(a, c);
    p.best_reply(&replies, quorum_size(n))
}

async fn put(p: &Proxy, ctx: &mut Ctx) -> Response<Body> {
    let (a, c) = names(ctx);
    match p.authorize(ctx, None).await {
        Ok(true) => {}
        Ok(false) => strip_owner_headers(ctx),
        Err(r) => return r,
    }
    let mut extra = match write_headers(p, ctx) {
        Ok(h) => h,
        Err(r) => return r,
    };
    match ctx.header("x-storage-policy").map(str::to_string) {
        Some(name) => {
            let Some(pol) = p.cluster.policy_by_name(name.trim()) else {
                return error_with(
                    StatusCode::BAD_REQUEST,
                    format!("Invalid X-Storage-Policy '{name}'"),
                );
            };
            if pol.deprecated {
                return error_with(
                    StatusCode::BAD_REQUEST,
                    format!("Storage Policy '{}' is deprecated", pol.name),
                );
            }
            if p.rings.object(pol.index).is_none() {
                return error_with(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("No object ring for policy '{}'", pol.name),
                );
            }
            extra.insert(
                "x-backend-storage-policy-index",
                HeaderValue::from(pol.index),
            );
        }
        None => {
            extra.insert(
                "x-backend-storage-policy-default",
                HeaderValue::from(p.cluster.default_policy().index),
            );
        }
    }
    // The account must exist (or be created), as Swift's `account_info` decides.
    let status = p.account_status(ctx, &a).await;
    if !(200..300).contains(&status) {
        if !p.cfg.proxy.account_autocreate {
            return status_response(StatusCode::NOT_FOUND);
        }
        if !crate::account::autocreate(p, ctx, &a).await {
            return status_response(StatusCode::SERVICE_UNAVAILABLE);
        }
    }
    let mut best = send(p, ctx, (&a, &c), Method::PUT, extra.clone(), true).await;
    if best.status == 404 && p.cfg.proxy.account_autocreate {
        // The account vanished under us (or the cache was stale): create and retry.
        p.cache.forget_account(&a);
        if crate::account::autocreate(p, ctx, &a).await {
            best = send(p, ctx, (&a, &c), Method::PUT, extra, true).await;
        }
    }
    p.cache.forget_account(&a);
    if best.status == 201 || best.status == 202 {
        let mut r = Response::new(full(""));
        *r.status_mut() = StatusCode::from_u16(best.status).unwrap_or(StatusCode::CREATED);
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/html; charset=UTF-8"),
        );
        return r;
    }
    reply_to_client(&best)
}

async fn post(p: &Proxy, ctx: &mut Ctx) -> Response<Body> {
    let (a, c) = names(ctx);
    match p.authorize(ctx, None).await {
        Ok(true) => {}
        Ok(false) => strip_owner_headers(ctx),
        Err(r) => return r,
    }
    let extra = match write_headers(p, ctx) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let best = send(p, ctx, (&a, &c), Method::POST, extra, false).await;
    if (200..300).contains(&best.status) {
        let mut r = Response::new(full(""));
        *r.status_mut() = StatusCode::NO_CONTENT;
        return r;
    }
    reply_to_client(&best)
}

async fn delete(p: &Proxy, ctx: &mut Ctx) -> Response<Body> {
    let (a, c) = names(ctx);
    if let Err(r) = p.authorize(ctx, None).await {
        return r;
    }
    let best = send(p, ctx, (&a, &c), Method::DELETE, HeaderMap::new(), true).await;
    p.cache.forget_account(&a);
    match best.status {
        202 => status_response(StatusCode::SERVICE_UNAVAILABLE),
        s if (200..300).contains(&s) => {
            let mut r = Response::new(full(""));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        409 => status_response(StatusCode::CONFLICT),
        _ => reply_to_client(&best),
    }
}
