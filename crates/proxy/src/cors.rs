//! CORS basics (`PROTOCOLS.md`, "CORS (basics)"): preflight `OPTIONS` against the
//! container's `X-Container-Meta-Access-Control-Allow-Origin` and the proxy's
//! `cors_allow_origin`, and the headers added to actual requests from allowed origins.

use http::{HeaderValue, Response, StatusCode};

use cairn_common::http::{empty, Body};

use crate::cache::ContainerInfo;
use crate::headers::status_response;
use crate::server::{Ctx, Proxy};

const EXPOSE: &str = "cache-control, content-language, content-type, expires, last-modified, \
                      pragma, etag, x-timestamp, x-trans-id, x-openstack-request-id";

/// Is `origin` allowed by the container or the proxy config?
pub fn origin_allowed(p: &Proxy, info: Option<&ContainerInfo>, origin: &str) -> bool {
    let from_container = info
        .and_then(|i| i.meta.get("access-control-allow-origin"))
        .map(|v| v.split_whitespace().any(|o| o == "*" || o == origin))
        .unwrap_or(false);
    from_container
        || p.cfg
            .proxy
            .cors_allow_origin
            .iter()
            .any(|o| o == "*" || o == origin)
}

/// `OPTIONS` on an account, container or object.
pub(crate) async fn options(p: &Proxy, ctx: &Ctx) -> Response<Body> {
    let allow = match (&ctx.container, &ctx.object) {
        (Some(_), Some(_)) => "HEAD, GET, PUT, POST, OPTIONS, DELETE, COPY",
        (Some(_), None) => "HEAD, GET, PUT, POST, OPTIONS, DELETE",
        _ => "HEAD, GET, POST, OPTIONS",
    };
    let origin = ctx.header("origin").map(str::to_string);
    let req_method = ctx
        .header("access-control-request-method")
        .map(str::to_string);
    let (Some(origin), Some(req_method)) = (origin, req_method) else {
        let mut r = Response::new(empty());
        r.headers_mut()
            .insert("allow", HeaderValue::from_static(allow));
        return r;
    };
    let info = match &ctx.container {
        Some(c) => Some(p.container_info(ctx, &ctx.account, c).await),
        None => None,
    };
    let method_ok = allow.split(", ").any(|m| m == req_method);
    if !method_ok || !origin_allowed(p, info.as_ref(), &origin) {
        return status_response(StatusCode::UNAUTHORIZED);
    }
    let mut r = Response::new(empty());
    let h = r.headers_mut();
    h.insert("allow", HeaderValue::from_static(allow));
    h.insert("access-control-allow-origin", crate::auth::hv(&origin));
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static(allow),
    );
    if let Some(rh) = ctx.header("access-control-request-headers") {
        h.insert("access-control-allow-headers", crate::auth::hv(rh));
    }
    let max_age = info
        .as_ref()
        .and_then(|i| i.meta.get("access-control-max-age"))
        .cloned();
    if let Some(m) = max_age {
        h.insert("access-control-max-age", crate::auth::hv(&m));
    }
    r
}

/// Headers for an actual (non-preflight) request from an allowed origin.
pub(crate) fn add_actual_headers(
    p: &Proxy,
    resp: &mut Response<Body>,
    info: Option<&ContainerInfo>,
    origin: &HeaderValue,
) {
    let Ok(o) = origin.to_str() else { return };
    if !origin_allowed(p, info, o) {
        return;
    }
    let mut expose: Vec<String> = EXPOSE.split(", ").map(str::to_string).collect();
    for k in resp.headers().keys() {
        let n = k.as_str();
        if n.starts_with("x-object-meta-") || n.starts_with("x-container-meta-") {
            expose.push(n.to_string());
        }
    }
    if let Some(extra) = info.and_then(|i| i.meta.get("access-control-expose-headers")) {
        expose.extend(
            extra
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    let h = resp.headers_mut();
    h.insert("access-control-allow-origin", origin.clone());
    h.insert(
        "access-control-expose-headers",
        crate::auth::hv(&expose.join(", ")),
    );
}
