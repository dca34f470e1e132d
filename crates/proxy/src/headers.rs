//! The public edge (`PROTOCOLS.md`, "Timestamps / Rules", "Request conventions"):
//! which headers clients may not send or see, the headers every response carries, and
//! Swift's plain-text error bodies.

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use cairn_common::http::{full, text, Body};

/// Headers only the cluster itself may set (and clients never see), lowercase names.
pub fn is_internal_header(name: &str) -> bool {
    const EXACT: [&str; 11] = [
        "x-account-host",
        "x-account-device",
        "x-account-partition",
        "x-container-host",
        "x-container-device",
        "x-container-partition",
        "x-container-root-db-state",
        "x-delete-at-host",
        "x-delete-at-device",
        "x-delete-at-partition",
        "x-delete-at-container",
    ];
    name.starts_with("x-backend-")
        || name.starts_with("x-object-transient-sysmeta-")
        || is_sysmeta(name)
        || EXACT.contains(&name)
}

/// `x-(account|container|object)-sysmeta-*`.
pub fn is_sysmeta(name: &str) -> bool {
    [
        "x-account-sysmeta-",
        "x-container-sysmeta-",
        "x-object-sysmeta-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// Remove what a client may not send: internal headers and `X-Timestamp`.
pub fn filter_request(headers: &mut HeaderMap) {
    let drop: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str() == "x-timestamp" || is_internal_header(k.as_str()))
        .cloned()
        .collect();
    for k in drop {
        headers.remove(k);
    }
}

/// Remove internal headers from a response on its way to the client.
pub fn filter_response(headers: &mut HeaderMap) {
    let drop: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_internal_header(k.as_str()))
        .cloned()
        .collect();
    for k in drop {
        headers.remove(k);
    }
}

/// Add `X-Trans-Id`, `X-Openstack-Request-Id` and `Date`.
pub fn stamp_response(headers: &mut HeaderMap, trans_id: &str) {
    if let Ok(v) = HeaderValue::from_str(trans_id) {
        headers.insert("x-trans-id", v.clone());
        headers.insert("x-openstack-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now())) {
        headers.insert(header::DATE, v);
    }
}

/// Swift's (swob) default explanation for a status, without the HTML.
pub fn explanation(status: StatusCode) -> &'static str {
    match status.as_u16() {
        202 => "The request is accepted for processing.",
        400 => "The server could not comply with the request since it is either malformed or otherwise incorrect.",
        401 => "This server could not verify that you are authorized to access the document you requested.",
        403 => "Access was denied to this resource.",
        404 => "The resource could not be found.",
        405 => "The method is not allowed for this resource.",
        408 => "The server has waited too long for the request to be sent by the client.",
        409 => "There was a conflict when trying to complete your request.",
        411 => "Content-Length header required.",
        412 => "A precondition for this request was not met.",
        413 => "The body of your request was too large for this server.",
        416 => "The Range requested is not available.",
        422 => "Unable to process the contained instructions",
        499 => "Client Disconnect",
        500 => "The server has either erred or is incapable of performing the requested operation.",
        501 => "The requested method is not implemented by this server.",
        503 => "The server is currently unavailable. Please try again at a later time.",
        _ => "",
    }
}

/// A plain-text error (or 202) response with Swift's explanation as its body.
pub fn status_response(status: StatusCode) -> Response<Body> {
    let msg = explanation(status);
    if msg.is_empty() {
        let mut r = Response::new(full(""));
        *r.status_mut() = status;
        r
    } else {
        text(status, msg)
    }
}

/// A plain-text response with a specific body.
pub fn error_with(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    text(status, msg)
}

/// A response with no body at all (`Content-Length: 0`).
pub fn empty_response(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(full(""));
    *r.status_mut() = status;
    r
}

/// Title-case a header name the way Swift stores metadata (`X-Object-Meta-Color`).
pub fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut up = true;
    for c in name.chars() {
        if up {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        up = c == '-';
    }
    out
}

/// `name` starts with `prefix` (ASCII case-insensitively).
pub fn starts_with_ci(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// A header as `&str`.
pub fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
}

/// A truthy header value (Swift's `config_true_value`).
pub fn truthy(v: Option<&str>) -> bool {
    matches!(
        v.map(|s| s.trim().to_ascii_lowercase()).as_deref(),
        Some("true" | "1" | "yes" | "on" | "t" | "y")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filtering() {
        let mut h = HeaderMap::new();
        for n in [
            "x-timestamp",
            "x-backend-storage-policy-index",
            "x-object-sysmeta-slo-etag",
            "x-container-sysmeta-x",
            "x-account-sysmeta-y",
            "x-object-transient-sysmeta-crypto",
            "x-container-host",
            "x-container-partition",
            "x-container-device",
            "x-account-host",
            "x-delete-at-container",
            "x-container-root-db-state",
            "x-object-meta-color",
            "content-type",
            "x-delete-at",
        ] {
            h.insert(HeaderName::from_static(n), HeaderValue::from_static("v"));
        }
        let mut resp = h.clone();
        filter_request(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(
            left,
            vec!["content-type", "x-delete-at", "x-object-meta-color"]
        );
        filter_response(&mut resp);
        assert!(resp.contains_key("x-timestamp"));
        assert_eq!(resp.len(), 4);
    }

    #[test]
    fn stamps_and_bodies() {
        let mut h = HeaderMap::new();
        stamp_response(&mut h, "txabc-0000000001");
        assert_eq!(h["x-trans-id"], "txabc-0000000001");
        assert_eq!(h["x-openstack-request-id"], "txabc-0000000001");
        assert!(h.contains_key("date"));
        let r = status_response(StatusCode::CONFLICT);
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(title_case("x-object-meta-COLOR"), "X-Object-Meta-Color");
        assert!(truthy(Some("True")) && !truthy(Some("no")) && !truthy(None));
    }
}
