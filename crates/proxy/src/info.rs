//! `GET /info` (`PROTOCOLS.md`, "/info and health"): Swift's capabilities document.

use http::{HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Value};

use cairn_common::http::{json as json_response, Body};

use crate::headers::status_response;
use crate::server::Proxy;

/// The capabilities document.
pub fn capabilities(p: &Proxy) -> Value {
    let mut swift = serde_json::to_value(&p.constraints).unwrap_or_else(|_| json!({}));
    let policies: Vec<Value> = p
        .cluster
        .policies
        .iter()
        .filter(|pol| !pol.deprecated)
        .map(|pol| {
            let mut aliases = vec![pol.name.clone()];
            aliases.extend(pol.aliases.iter().cloned());
            let mut v = json!({"name": pol.name, "aliases": aliases.join(", ")});
            if pol.default {
                v["default"] = json!(true);
            }
            v
        })
        .collect();
    if let Value::Object(m) = &mut swift {
        m.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        m.insert("policies".into(), json!(policies));
        m.insert(
            "account_autocreate".into(),
            json!(p.cfg.proxy.account_autocreate),
        );
        m.insert(
            "allow_account_management".into(),
            json!(p.cfg.proxy.allow_account_management),
        );
        m.insert("strict_cors_mode".into(), json!(true));
        m.insert(
            "max_header_count".into(),
            json!(p.constraints.max_header_count()),
        );
    }
    json!({
        "swift": swift,
        "tempauth": {"account_acls": true},
        "slo": {
            "max_manifest_segments": crate::largeobj::MAX_MANIFEST_SEGMENTS,
            "max_manifest_size": crate::largeobj::MAX_MANIFEST_SIZE,
            "min_segment_size": 1,
            "yield_frequency": p.cfg.slo.yield_frequency,
        },
        "dlo": {"max_segments": 10000},
        "bulk_delete": {
            "max_deletes_per_request": crate::bulk::MAX_DELETES_PER_REQUEST,
            "max_failed_deletes": crate::bulk::MAX_FAILED_DELETES,
        },
        "container_quotas": {},
        "account_quotas": {},
        "versioned_writes": {"allowed_flags": ["x-versions-location", "x-history-location"]},
        "tempurl": crate::tempurl::info(p),
        "formpost": crate::formpost::info(p),
    })
}

pub(crate) fn handle(p: &Proxy, method: &Method) -> Response<Body> {
    match method.as_str() {
        "GET" | "HEAD" => {
            let mut r = json_response(StatusCode::OK, &capabilities(p));
            if method == Method::HEAD {
                *r.body_mut() = cairn_common::http::empty();
            }
            r
        }
        "OPTIONS" => {
            let mut r = Response::new(cairn_common::http::empty());
            r.headers_mut()
                .insert("allow", HeaderValue::from_static("HEAD, GET, OPTIONS"));
            r
        }
        _ => {
            let mut r = status_response(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut()
                .insert("allow", HeaderValue::from_static("HEAD, GET, OPTIONS"));
            r
        }
    }
}
