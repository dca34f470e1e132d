//! Swift's TempURL middleware (`tempurl.py`): an object request carrying `temp_url_sig`
//! and `temp_url_expires` is allowed without a token when the signature is an HMAC, by a
//! temp-URL key of the account or the container, of `METHOD\nexpires\npath` (optionally
//! prefixed by `ip=<range>\n`; `path` is `prefix:/v1/a/c/<prefix>` for prefix-wide URLs).
//!
//! A valid temp URL reaches the object controller with an [`Auth::TempUrl`] identity, so
//! the request, and every sub-request it makes (copy sources, large-object segments),
//! may touch only the key's account (or container). Swift's default header rules apply:
//! incoming `X-Timestamp`/`X-Open-Expired` are dropped, `X-Object-Manifest` and
//! `X-Symlink-Target` are refused on writes, and responses lose `X-Object-Meta-*` except
//! `X-Object-Meta-Public-*`. Successful GET/HEAD answers get `Content-Disposition`
//! (`filename`, `inline`) and an `Expires` of the URL's expiry.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, Method, Response, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use cairn_common::http::{quote, Body};

use crate::auth::{hv, Auth};
use crate::headers::{empty_response, error_with, title_case};
use crate::server::{query_param, Ctx, Proxy};
use crate::signature::{temp_url_keys, KeyScope, Signature, DEPRECATED_DIGESTS};

/// Methods a temp URL may be signed for (the default and the most `[tempurl] methods`
/// may name).
pub const METHODS: [&str; 5] = ["GET", "HEAD", "PUT", "POST", "DELETE"];
/// Defaults of the `[tempurl]` header settings, Swift's. Request headers dropped from
/// temp-URL requests (`*` ends a prefix).
pub const INCOMING_REMOVE_HEADERS: [&str; 2] = ["x-timestamp", "x-open-expired"];
/// Exceptions to [`INCOMING_REMOVE_HEADERS`].
pub const INCOMING_ALLOW_HEADERS: [&str; 0] = [];
/// Response headers dropped from temp-URL answers: metadata is private by default.
pub const OUTGOING_REMOVE_HEADERS: [&str; 1] = ["x-object-meta-*"];
/// Exceptions to [`OUTGOING_REMOVE_HEADERS`].
pub const OUTGOING_ALLOW_HEADERS: [&str; 1] = ["x-object-meta-public-*"];
/// Headers refused on temp-URL writes: they would point at data the URL does not grant.
const DISALLOWED_INCOMING_HEADERS: [&str; 2] = ["x-object-manifest", "x-symlink-target"];

/// Python's `quote(s, safe=' /')`, for the quoted `filename="…"` form.
const FILENAME_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~')
    .remove(b'/')
    .remove(b' ');

/// The `/info` entry (Swift's `register_swift_info('tempurl', …)`), from the
/// `[tempurl]` settings.
pub fn info(p: &Proxy) -> Value {
    let t = &p.cfg.tempurl;
    json!({
        "methods": t.methods,
        "incoming_remove_headers": t.incoming_remove_headers,
        "incoming_allow_headers": t.incoming_allow_headers,
        "outgoing_remove_headers": t.outgoing_remove_headers,
        "outgoing_allow_headers": t.outgoing_allow_headers,
        "allowed_digests": t.allowed_digests,
        "deprecated_digests": deprecated_digests(p),
    })
}

/// The allowed digests that are deprecated (as `/info` lists them).
pub fn deprecated_digests(p: &Proxy) -> Vec<&'static str> {
    DEPRECATED_DIGESTS
        .into_iter()
        .filter(|d| digest_allowed(p, d))
        .collect()
}

/// May a signature use digest `name` (`[tempurl] allowed_digests`, also for FormPost)?
pub fn digest_allowed(p: &Proxy, name: &str) -> bool {
    p.cfg.tempurl.allowed_digests.iter().any(|d| d == name)
}

/// Borrowed views of a list of header patterns.
fn patterns(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

/// The temp-URL query parameters of a request (first value of each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pub sig: Option<String>,
    pub expires: Option<String>,
    pub prefix: Option<String>,
    pub filename: Option<String>,
    pub inline: bool,
    pub ip_range: Option<String>,
}

impl Params {
    pub fn from_query(q: Option<&str>) -> Params {
        Params {
            sig: query_param(q, "temp_url_sig"),
            expires: query_param(q, "temp_url_expires"),
            prefix: query_param(q, "temp_url_prefix"),
            filename: query_param(q, "filename"),
            inline: query_param(q, "inline").is_some(),
            ip_range: query_param(q, "temp_url_ip_range"),
        }
    }

    /// Is this a temp-URL request at all? (Either parameter makes it one.)
    pub fn is_temp_url(&self) -> bool {
        self.sig.is_some() || self.expires.is_some()
    }
}

/// Swift's `normalize_temp_url_expires`: a Unix time or `%Y-%m-%dT%H:%M:%SZ`, as a Unix
/// time; 0 when unreadable or already past `now`.
pub fn normalize_expires(value: &str, now: f64) -> u64 {
    let t = value
        .trim()
        .parse::<i64>()
        .ok()
        .or_else(|| parse_iso8601(value))
        .unwrap_or(0);
    if (t as f64) < now {
        0
    } else {
        u64::try_from(t).unwrap_or(0)
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC) as Unix seconds.
fn parse_iso8601(v: &str) -> Option<i64> {
    let (date, time) = v.strip_suffix('Z')?.split_once('T')?;
    let num = |s: &str, max_len: usize| -> Option<i64> {
        (!s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    let ([y, mo, da], [h, mi, s]) = (d.as_slice(), t.as_slice()) else {
        return None;
    };
    let (y, mo, da) = (num(y, 4)?, num(mo, 2)?, num(da, 2)?);
    let (h, mi, s) = (num(h, 2)?, num(mi, 2)?, num(s, 2)?);
    if y.to_string().len() != 4 || !(1..=12).contains(&mo) || h > 23 || mi > 59 || s > 61 {
        return None;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if da < 1 || da > month_days[(mo - 1) as usize] {
        return None;
    }
    Some(days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Python's `ip_address(ip) in ip_network(range)` (strict: host bits must be zero).
pub fn ip_in_range(range: &str, ip: IpAddr) -> bool {
    let (addr, len) = match range.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (range, None),
    };
    let Ok(net) = addr.parse::<IpAddr>() else {
        return false;
    };
    let (net, ip, bits) = match (net, ip.to_canonical()) {
        (IpAddr::V4(n), IpAddr::V4(i)) => (u128::from(u32::from(n)), u128::from(u32::from(i)), 32),
        (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
        _ => return false,
    };
    let len = match len {
        None => bits,
        Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => match l.parse() {
            Ok(n) if n <= bits => n,
            _ => return false,
        },
        Some(_) => return false,
    };
    let host_bits = bits - len;
    let host_mask = if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    net & host_mask == 0 && ip & !host_mask == net
}

/// Swift's `get_hmac` message: `[ip=<range>\n]METHOD\nexpires\npath`.
pub fn hmac_body(ip_range: Option<&str>, method: &str, expires: u64, path: &str) -> String {
    match ip_range {
        Some(r) => format!("ip={r}\n{method}\n{expires}\n{path}"),
        None => format!("{method}\n{expires}\n{path}"),
    }
}

/// Does `name` match a rule list entry (exact, or a prefix ending in `*`)?
fn matches_any(patterns: &[&str], name: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *p,
    })
}

/// Remove the headers `remove` names unless `allow` names them too.
pub fn remove_headers(h: &mut HeaderMap, remove: &[&str], allow: &[&str]) {
    let drop: Vec<HeaderName> = h
        .keys()
        .filter(|k| !matches_any(allow, k.as_str()) && matches_any(remove, k.as_str()))
        .cloned()
        .collect();
    for k in drop {
        h.remove(k);
    }
}

/// `type; filename="…"; filename*=UTF-8''…` (RFC 6266, as Swift's `disposition_format`).
fn disposition_format(kind: &str, filename: &str) -> String {
    format!(
        "{kind}; filename=\"{}\"; filename*=UTF-8''{}",
        utf8_percent_encode(filename, FILENAME_SET),
        quote(filename)
    )
}

/// The `Content-Disposition` of a successful temp-URL GET/HEAD: the query's
/// `inline`/`filename`, else the object's own, else an attachment named like the object.
pub fn content_disposition(params: &Params, existing: Option<&str>, object: &str) -> String {
    let filename = params.filename.as_deref().filter(|f| !f.is_empty());
    let value = match (params.inline, filename, existing) {
        (true, Some(f), _) => disposition_format("inline", f),
        (true, None, _) => "inline".to_string(),
        (false, Some(f), _) => disposition_format("attachment", f),
        (false, None, Some(e)) => e.to_string(),
        (false, None, None) => {
            let base = object
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("");
            disposition_format("attachment", base)
        }
    };
    value.replace('\n', "%0A")
}

/// Swift's 401 for every invalid temp URL (no body on HEAD).
fn invalid(ctx: &Ctx) -> Response<Body> {
    let mut r = if ctx.method == Method::HEAD {
        empty_response(StatusCode::UNAUTHORIZED)
    } else {
        error_with(
            StatusCode::UNAUTHORIZED,
            "401 Unauthorized: Temp URL invalid\n",
        )
    };
    r.headers_mut().insert(
        "www-authenticate",
        hv(&format!("Swift realm=\"{}\"", ctx.account)),
    );
    r
}

fn now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What a valid signature grants.
struct Grant {
    expires: u64,
    scope: KeyScope,
}

/// Serve a temp-URL request, or `None` when the request has no temp-URL parameters
/// (or is an `OPTIONS`, which CORS answers before this is asked).
pub(crate) async fn handle(p: &Proxy, ctx: &mut Ctx) -> Option<Response<Body>> {
    let params = Params::from_query(ctx.query.as_deref());
    if !params.is_temp_url() || ctx.method == Method::OPTIONS {
        return None;
    }
    Some(match check(p, ctx, &params).await {
        Some(grant) => serve(p, ctx, &params, grant).await,
        None => invalid(ctx),
    })
}

/// The object path a temp URL may name: `/v1/a/c/o` with a method it may be signed for.
fn object_path(p: &Proxy, ctx: &Ctx) -> Option<(String, String, String)> {
    let o = ctx.object.as_deref()?;
    let ok = p
        .cfg
        .tempurl
        .methods
        .iter()
        .any(|m| m == ctx.method.as_str())
        && ctx.version == "v1"
        && !o.trim_matches('/').is_empty();
    ok.then(|| {
        (
            ctx.account.clone(),
            ctx.container.clone().unwrap_or_default(),
            o.to_string(),
        )
    })
}

/// Validate expiry, path, IP range and signature (Swift's order); `None` means 401.
async fn check(p: &Proxy, ctx: &Ctx, params: &Params) -> Option<Grant> {
    let expires = normalize_expires(params.expires.as_deref()?, now_f64());
    let sig = params.sig.as_deref().filter(|s| !s.is_empty())?;
    if expires == 0 {
        return None;
    }
    let sig = Signature::parse(sig).filter(|s| digest_allowed(p, s.digest.name()))?;
    let (a, c, o) = object_path(p, ctx)?;
    let ip_range = params.ip_range.as_deref().filter(|r| !r.is_empty());
    if let Some(range) = ip_range {
        if !ctx.remote.is_some_and(|ip| ip_in_range(range, ip)) {
            return None;
        }
    }
    let account = p.account_info(ctx, &a).await;
    let container = p.container_info(ctx, &a, &c).await;
    let keys = temp_url_keys(&account, &container);
    let path = match params.prefix.as_deref() {
        None => format!("/v1/{a}/{c}/{o}"),
        Some(prefix) if o.starts_with(prefix) => format!("prefix:/v1/{a}/{c}/{prefix}"),
        Some(_) => return None,
    };
    // HEAD is allowed by a GET, POST or PUT signature too.
    let methods: &[&str] = if ctx.method == Method::HEAD {
        &["HEAD", "GET", "POST", "PUT"]
    } else {
        &[ctx.method.as_str()]
    };
    methods.iter().find_map(|m| {
        let msg = hmac_body(ip_range, m, expires, &path);
        keys.iter()
            .find(|(key, _)| sig.verifies(key.as_bytes(), msg.as_bytes()))
            .map(|(_, scope)| Grant {
                expires,
                scope: *scope,
            })
    })
}

/// Run the granted request through the object controller with Swift's header rules.
async fn serve(p: &Proxy, ctx: &mut Ctx, params: &Params, grant: Grant) -> Response<Body> {
    let read = ctx.method == Method::GET || ctx.method == Method::HEAD;
    if !read {
        if let Some(h) = DISALLOWED_INCOMING_HEADERS
            .iter()
            .find(|h| ctx.headers.contains_key(**h))
        {
            return error_with(
                StatusCode::BAD_REQUEST,
                format!(
                    "The header '{}' is not allowed in this tempurl",
                    title_case(h)
                ),
            );
        }
    }
    let t = &p.cfg.tempurl;
    remove_headers(
        &mut ctx.headers,
        &patterns(&t.incoming_remove_headers),
        &patterns(&t.incoming_allow_headers),
    );
    ctx.auth = Auth::TempUrl {
        account: ctx.account.clone(),
        container: (grant.scope == KeyScope::Container)
            .then(|| ctx.container.clone())
            .flatten(),
    };
    // Swift passes on only the temp-URL parameters: no `multipart-manifest`, `format`…
    ctx.query = None;
    let mut resp = crate::object::handle(p, ctx).await;
    let h = resp.headers_mut();
    remove_headers(
        h,
        &patterns(&t.outgoing_remove_headers),
        &patterns(&t.outgoing_allow_headers),
    );
    if read && resp.status().is_success() {
        let object = ctx.object.as_deref().unwrap_or_default();
        let h = resp.headers_mut();
        let existing = crate::headers::get(h, "content-disposition").map(str::to_string);
        let value = content_disposition(params, existing.as_deref(), object);
        h.insert("content-disposition", hv(&value));
        let expires = UNIX_EPOCH + Duration::from_secs(grant.expires);
        h.insert("expires", hv(&httpdate::fmt_http_date(expires)));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn params_from_query() {
        let p = Params::from_query(Some(
            "temp_url_sig=abc&temp_url_expires=2026-12-07T12%3A00%3A00Z&filename=My+File.pdf&inline&temp_url_prefix=pre",
        ));
        assert_eq!(p.sig.as_deref(), Some("abc"));
        assert_eq!(p.expires.as_deref(), Some("2026-12-07T12:00:00Z"));
        assert_eq!(p.filename.as_deref(), Some("My File.pdf"));
        assert_eq!(p.prefix.as_deref(), Some("pre"));
        assert!(p.inline && p.is_temp_url());
        assert!(!Params::from_query(Some("format=json")).is_temp_url());
        assert!(Params::from_query(Some("temp_url_expires=1")).is_temp_url());
        assert!(!Params::from_query(None).is_temp_url());
    }

    #[test]
    fn expiry_forms() {
        let now = 1_700_000_000.5;
        assert_eq!(normalize_expires("1700000100", now), 1_700_000_100);
        assert_eq!(normalize_expires(" 1700000100 ", now), 1_700_000_100);
        assert_eq!(normalize_expires("1700000000", now), 0, "past");
        assert_eq!(normalize_expires("-5", now), 0);
        assert_eq!(normalize_expires("soon", now), 0);
        assert_eq!(normalize_expires("", now), 0);
        assert_eq!(
            normalize_expires("2026-12-07T12:00:00Z", now),
            1_796_644_800
        );
        assert_eq!(
            normalize_expires("2024-02-29T00:00:00Z", now),
            1_709_164_800
        );
        for bad in [
            "2026-12-07T12:00:00",
            "2026-12-07 12:00:00Z",
            "2026-13-07T12:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-12-07T24:00:00Z",
            "26-12-07T12:00:00Z",
        ] {
            assert_eq!(normalize_expires(bad, now), 0, "{bad}");
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn ip_ranges() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(ip_in_range("127.0.0.1", ip("127.0.0.1")));
        assert!(!ip_in_range("127.0.0.1", ip("127.0.0.2")));
        assert!(ip_in_range("1.2.3.0/24", ip("1.2.3.200")));
        assert!(!ip_in_range("1.2.3.0/24", ip("1.2.4.1")));
        assert!(ip_in_range("0.0.0.0/0", ip("9.9.9.9")));
        assert!(ip_in_range("::/0", ip("::1")));
        assert!(ip_in_range("fe80::/64", ip("fe80::1")));
        assert!(!ip_in_range("fe80::/64", ip("fe81::1")));
        // IPv4-mapped IPv6 clients match IPv4 ranges.
        assert!(ip_in_range("127.0.0.0/8", ip("::ffff:127.0.0.1")));
        // Strict networks, bad syntax, family mismatches.
        for bad in ["1.2.3.4/24", "1.2.3.0/33", "1.2.3.0/", "nope", "1.2.3.0/x"] {
            assert!(!ip_in_range(bad, ip("1.2.3.4")), "{bad}");
        }
        assert!(!ip_in_range("::1", ip("127.0.0.1")));
    }

    #[test]
    fn hmac_bodies() {
        assert_eq!(hmac_body(None, "GET", 5, "/v1/a/c/o"), "GET\n5\n/v1/a/c/o");
        assert_eq!(
            hmac_body(Some("1.2.3.0/24"), "PUT", 5, "prefix:/v1/a/c/p"),
            "ip=1.2.3.0/24\nPUT\n5\nprefix:/v1/a/c/p"
        );
    }

    #[test]
    fn header_rules() {
        let mut h = HeaderMap::new();
        for n in [
            "x-object-meta-color",
            "x-object-meta-public-size",
            "content-type",
            "x-timestamp",
            "x-open-expired",
            "etag",
        ] {
            h.insert(HeaderName::from_static(n), HeaderValue::from_static("v"));
        }
        let mut out = h.clone();
        remove_headers(&mut out, &OUTGOING_REMOVE_HEADERS, &OUTGOING_ALLOW_HEADERS);
        assert!(!out.contains_key("x-object-meta-color"));
        assert!(out.contains_key("x-object-meta-public-size"));
        assert_eq!(out.len(), 5);
        remove_headers(&mut h, &INCOMING_REMOVE_HEADERS, &INCOMING_ALLOW_HEADERS);
        assert!(!h.contains_key("x-timestamp") && !h.contains_key("x-open-expired"));
        assert_eq!(h.len(), 4);
        // An allow rule beats a remove rule.
        let mut h = HeaderMap::new();
        h.insert("x-a-b", HeaderValue::from_static("1"));
        h.insert("x-a-c", HeaderValue::from_static("1"));
        remove_headers(&mut h, &["x-a-*"], &["x-a-b"]);
        assert!(h.contains_key("x-a-b") && !h.contains_key("x-a-c"));
    }

    #[test]
    fn dispositions() {
        let none = Params::default();
        assert_eq!(
            content_disposition(&none, None, "dir/my file.txt"),
            "attachment; filename=\"my file.txt\"; filename*=UTF-8''my%20file.txt"
        );
        assert_eq!(
            content_disposition(&none, Some("inline; x"), "o"),
            "inline; x"
        );
        let named = Params {
            filename: Some("ünï \"q\".pdf".into()),
            ..Default::default()
        };
        assert_eq!(
            content_disposition(&named, Some("ignored"), "o"),
            "attachment; filename=\"%C3%BCn%C3%AF %22q%22.pdf\"; \
             filename*=UTF-8''%C3%BCn%C3%AF%20%22q%22.pdf"
        );
        let inline = Params {
            inline: true,
            ..Default::default()
        };
        assert_eq!(content_disposition(&inline, Some("x"), "o"), "inline");
        let both = Params {
            inline: true,
            filename: Some("a.txt".into()),
            ..Default::default()
        };
        assert_eq!(
            content_disposition(&both, None, "o"),
            "inline; filename=\"a.txt\"; filename*=UTF-8''a.txt"
        );
        assert_eq!(
            content_disposition(&none, Some("a\nb"), "o"),
            "a%0Ab",
            "no header splitting"
        );
    }
}
