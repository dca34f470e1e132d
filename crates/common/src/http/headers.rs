//! Request header helpers for the backend API (`PROTOCOLS.md`, "Backend HTTP API"):
//! header values as `&str`, the required `X-Timestamp`, the storage policy index and the
//! transaction id.

use http::{HeaderMap, StatusCode};

use super::error::HttpError;
use crate::timestamp::Timestamp;

pub const X_TIMESTAMP: &str = "x-timestamp";
pub const X_TRANS_ID: &str = "x-trans-id";
pub const X_BACKEND_STORAGE_POLICY_INDEX: &str = "x-backend-storage-policy-index";

/// A header's value as `&str` (any valid UTF-8, not only visible ASCII), or `None` when
/// it is missing or not UTF-8. With several values, the first.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
}

/// A header parsed with `FromStr`; `None` when missing, `Err` (400 naming the header)
/// when present but unparseable.
pub fn header_parse<T: std::str::FromStr>(
    headers: &HeaderMap,
    name: &str,
) -> Result<Option<T>, HttpError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| HttpError::bad_request(format!("Invalid {name} header"))),
    }
}

/// The required `X-Timestamp`: 400 `Missing X-Timestamp header` or
/// `Invalid X-Timestamp header` (Swift's `valid_timestamp`).
pub fn x_timestamp(headers: &HeaderMap) -> Result<Timestamp, HttpError> {
    let Some(v) = headers.get(X_TIMESTAMP) else {
        return Err(HttpError::bad_request("Missing X-Timestamp header"));
    };
    std::str::from_utf8(v.as_bytes())
        .ok()
        .and_then(|s| Timestamp::parse(s.trim()).ok())
        .ok_or_else(|| HttpError::bad_request("Invalid X-Timestamp header"))
}

/// `X-Timestamp` when present (and valid), for requests where it is optional.
pub fn x_timestamp_opt(headers: &HeaderMap) -> Result<Option<Timestamp>, HttpError> {
    if headers.contains_key(X_TIMESTAMP) {
        x_timestamp(headers).map(Some)
    } else {
        Ok(None)
    }
}

/// `X-Backend-Storage-Policy-Index`, 0 when missing. A value that is not a non-negative
/// integer is 503 `No policy with index X`, as in Swift (whether the index names a
/// configured policy is the caller's check, against the cluster config).
pub fn policy_index(headers: &HeaderMap) -> Result<u32, HttpError> {
    match headers.get(X_BACKEND_STORAGE_POLICY_INDEX) {
        None => Ok(0),
        Some(v) => {
            let s = String::from_utf8_lossy(v.as_bytes());
            s.trim().parse().map_err(|_| {
                HttpError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("No policy with index {}", s.trim()),
                )
            })
        }
    }
}

/// Is this an acceptable incoming transaction id (to log and propagate)?
pub fn valid_trans_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 256 && v.bytes().all(|b| b.is_ascii_graphic())
}

/// A new transaction id in Swift's form: `tx` + 21 hex digits + `-` + 10 hex digits of
/// the current time in seconds.
pub fn new_trans_id() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let hi: u64 = rng.gen::<u64>() & 0x1f_ffff_ffff_ffff; // 53 bits
    let lo: u32 = rng.gen::<u32>() & 0x0fff_ffff; // 28 bits
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // 53 + 28 bits = 81 bits = 21 hex digits: 14 from `hi`, 7 from `lo`.
    format!("tx{hi:014x}{lo:07x}-{now:010x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn timestamps() {
        let mut h = HeaderMap::new();
        assert_eq!(
            x_timestamp(&h).unwrap_err().message,
            "Missing X-Timestamp header"
        );
        assert_eq!(x_timestamp_opt(&h), Ok(None));
        h.insert(X_TIMESTAMP, HeaderValue::from_static("nope"));
        let e = x_timestamp(&h).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (StatusCode::BAD_REQUEST, "Invalid X-Timestamp header")
        );
        h.insert(X_TIMESTAMP, HeaderValue::from_static("1700000000.12345"));
        assert_eq!(x_timestamp(&h).unwrap().normal(), "1700000000.12345");
    }

    #[test]
    fn policy_and_strings() {
        let mut h = HeaderMap::new();
        assert_eq!(policy_index(&h), Ok(0));
        h.insert(
            X_BACKEND_STORAGE_POLICY_INDEX,
            HeaderValue::from_static("2"),
        );
        assert_eq!(policy_index(&h), Ok(2));
        h.insert(
            X_BACKEND_STORAGE_POLICY_INDEX,
            HeaderValue::from_static("x"),
        );
        assert_eq!(
            policy_index(&h).unwrap_err().status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        h.insert(
            "x-object-meta-a",
            HeaderValue::from_bytes("é".as_bytes()).unwrap(),
        );
        assert_eq!(header_str(&h, "X-Object-Meta-A"), Some("é"));
        h.insert("content-length", HeaderValue::from_static("12"));
        assert_eq!(header_parse::<u64>(&h, "content-length"), Ok(Some(12)));
        assert!(header_parse::<u64>(&h, "x-object-meta-a").is_err());
    }

    #[test]
    fn trans_ids() {
        let t = new_trans_id();
        assert_eq!(t.len(), 2 + 21 + 1 + 10, "{t}");
        assert!(t.starts_with("tx") && t.as_bytes()[23] == b'-', "{t}");
        assert!(valid_trans_id(&t));
        assert!(!valid_trans_id("a b"));
        assert_ne!(new_trans_id(), t);
    }
}
