//! Request constraints (`PROTOCOLS.md`, "Constraints"): Swift's `constraints.py` limits with
//! their defaults, and the checks that enforce them with Swift's exact status codes and
//! messages. Operators may override the values in the cluster file; `/info` reports them.

use serde::{Deserialize, Serialize};

/// The effective constraint values. Every field defaults to Swift's value; the cluster
/// file's `[constraints]` table overrides them ([`Constraints::validate`] checks it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Constraints {
    pub max_file_size: u64,
    pub max_meta_name_length: usize,
    pub max_meta_value_length: usize,
    pub max_meta_count: usize,
    pub max_meta_overall_size: usize,
    pub max_header_size: usize,
    pub extra_header_count: i64,
    pub max_object_name_length: usize,
    pub container_listing_limit: u64,
    pub account_listing_limit: u64,
    pub max_account_name_length: usize,
    pub max_container_name_length: usize,
    pub valid_api_versions: Vec<String>,
    /// Reported in `/info` but not configurable here: the account and container servers
    /// take it from their own files, and two sources could disagree.
    #[serde(skip_deserializing)]
    pub auto_create_account_prefix: String,
}

impl Default for Constraints {
    fn default() -> Self {
        Constraints {
            max_file_size: 5_368_709_122,
            max_meta_name_length: 128,
            max_meta_value_length: 256,
            max_meta_count: 90,
            max_meta_overall_size: 4096,
            max_header_size: 8192,
            extra_header_count: 0,
            max_object_name_length: 1024,
            container_listing_limit: 10_000,
            account_listing_limit: 10_000,
            max_account_name_length: 256,
            max_container_name_length: 256,
            valid_api_versions: vec!["v1".to_string(), "v1.0".to_string()],
            auto_create_account_prefix: ".".to_string(),
        }
    }
}

/// Most request headers any configuration may allow: the HTTP servers reserve room for
/// `max_header_count` headers on every request, so a huge value would cost memory per
/// connection.
pub const MAX_HEADER_COUNT_CEILING: usize = 10_000;
/// Largest `max_header_size`: the HTTP servers read at most ~400 KiB of request head, so a
/// larger header value could never arrive to be checked.
pub const MAX_HEADER_SIZE_CEILING: usize = 65_536;

impl Constraints {
    /// `max_meta_count + 36 + max(extra_header_count, 0)` (126 by default), as Swift's
    /// `MAX_HEADER_COUNT`.
    pub fn max_header_count(&self) -> usize {
        let extra = usize::try_from(self.extra_header_count.max(0)).unwrap_or(usize::MAX);
        self.max_meta_count.saturating_add(36).saturating_add(extra)
    }

    /// Checks on operator overrides; the message names the key (`constraints.<key>`).
    /// Zero lengths and limits are refused because they would reject every request of
    /// that kind; metadata count and size may be 0 (no user metadata at all).
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("max_file_size", self.max_file_size),
            ("max_meta_name_length", self.max_meta_name_length as u64),
            ("max_meta_value_length", self.max_meta_value_length as u64),
            ("max_header_size", self.max_header_size as u64),
            ("max_object_name_length", self.max_object_name_length as u64),
            ("container_listing_limit", self.container_listing_limit),
            ("account_listing_limit", self.account_listing_limit),
            (
                "max_account_name_length",
                self.max_account_name_length as u64,
            ),
            (
                "max_container_name_length",
                self.max_container_name_length as u64,
            ),
        ] {
            if v == 0 {
                return Err(format!("constraints.{key} must be at least 1"));
            }
        }
        if self.max_header_size > MAX_HEADER_SIZE_CEILING {
            return Err(format!(
                "constraints.max_header_size must be at most {MAX_HEADER_SIZE_CEILING}, not {}",
                self.max_header_size
            ));
        }
        if self.extra_header_count < 0 {
            return Err(format!(
                "constraints.extra_header_count must be >= 0, not {}",
                self.extra_header_count
            ));
        }
        if self.max_header_count() > MAX_HEADER_COUNT_CEILING {
            return Err(format!(
                "constraints.max_meta_count + 36 + constraints.extra_header_count \
                 (max_header_count) must be at most {MAX_HEADER_COUNT_CEILING}, not {}",
                self.max_header_count()
            ));
        }
        self.validate_api_versions()
    }

    /// At least one version, each a single non-empty path segment (`v1`).
    fn validate_api_versions(&self) -> Result<(), String> {
        if self.valid_api_versions.is_empty() {
            return Err("constraints.valid_api_versions must not be empty".to_string());
        }
        match self
            .valid_api_versions
            .iter()
            .find(|v| v.is_empty() || v.contains(['/', '\0']))
        {
            Some(bad) => Err(format!(
                "constraints.valid_api_versions: {bad:?} is not a path segment"
            )),
            None => Ok(()),
        }
    }
}

/// A failed check: the HTTP status and Swift's plain-text body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {message}")]
pub struct ConstraintError {
    pub status: u16,
    pub message: String,
}

impl ConstraintError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ConstraintError {
            status,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        ConstraintError::new(400, message)
    }
}

/// The 412 body for a path segment that is not valid UTF-8 or contains NUL.
pub const INVALID_UTF8: &str = "Invalid UTF8 or contains NULL";

/// Swift's `check_utf8`: valid UTF-8 (which excludes surrogates) without NUL.
pub fn check_utf8(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|s| !s.contains('\0'))
}

/// Check a path segment's bytes: 412 `Invalid UTF8 or contains NULL`.
pub fn check_path_segment(bytes: &[u8]) -> Result<&str, ConstraintError> {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.contains('\0') => Ok(s),
        _ => Err(ConstraintError::new(412, INVALID_UTF8)),
    }
}

/// Which kind of resource metadata is checked for (`X-<type>-Meta-`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaTarget {
    Account,
    Container,
    Object,
}

impl MetaTarget {
    /// The lowercase header prefix, `x-object-meta-`.
    pub fn prefix(self) -> &'static str {
        match self {
            MetaTarget::Account => "x-account-meta-",
            MetaTarget::Container => "x-container-meta-",
            MetaTarget::Object => "x-object-meta-",
        }
    }
}

/// Swift's `check_metadata` over request headers `(name, value)` as raw bytes (values may
/// be any bytes on the wire). The first violation wins, in Swift's order.
pub fn check_metadata<'a, I>(
    headers: I,
    target: MetaTarget,
    c: &Constraints,
) -> Result<(), ConstraintError>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let prefix = target.prefix();
    let mut count = 0usize;
    let mut size = 0usize;
    for (key, value) in headers {
        if value.len() > c.max_header_size {
            let shown = &key[..key.len().min(c.max_meta_name_length)];
            return Err(ConstraintError::bad_request(format!(
                "Header value too long: {}",
                String::from_utf8_lossy(shown)
            )));
        }
        if key.len() < prefix.len() || !key[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        {
            continue;
        }
        let name = &key[prefix.len()..];
        if name.is_empty() {
            return Err(ConstraintError::bad_request(
                "Metadata name cannot be empty",
            ));
        }
        let bad = !check_utf8(name) || (!value.is_empty() && !check_utf8(value));
        if target != MetaTarget::Object && bad {
            return Err(ConstraintError::bad_request("Metadata must be valid UTF-8"));
        }
        count += 1;
        size += name.len() + value.len();
        if name.len() > c.max_meta_name_length {
            return Err(ConstraintError::bad_request(format!(
                "Metadata name too long: {prefix}{}",
                String::from_utf8_lossy(name)
            )));
        }
        if value.len() > c.max_meta_value_length {
            return Err(ConstraintError::bad_request(format!(
                "Metadata value longer than {}: {prefix}{}",
                c.max_meta_value_length,
                String::from_utf8_lossy(name)
            )));
        }
        if count > c.max_meta_count {
            return Err(ConstraintError::bad_request(format!(
                "Too many metadata items; max {}",
                c.max_meta_count
            )));
        }
        if size > c.max_meta_overall_size {
            return Err(ConstraintError::bad_request(format!(
                "Total metadata too large; max {}",
                c.max_meta_overall_size
            )));
        }
    }
    Ok(())
}

/// Object name length (bytes after decoding): 400 `Object name length of N longer than M`.
pub fn check_object_name(name: &str, c: &Constraints) -> Result<(), ConstraintError> {
    if name.len() > c.max_object_name_length {
        return Err(ConstraintError::bad_request(format!(
            "Object name length of {} longer than {}",
            name.len(),
            c.max_object_name_length
        )));
    }
    Ok(())
}

/// Container name: non-empty, no `/` (412), at most `max_container_name_length` (400).
pub fn check_container_name(name: &str, c: &Constraints) -> Result<(), ConstraintError> {
    if name.is_empty() {
        return Err(ConstraintError::new(412, "Container name cannot be empty"));
    }
    if name.contains('/') {
        return Err(ConstraintError::new(
            412,
            "Container name cannot contain slashes",
        ));
    }
    if name.len() > c.max_container_name_length {
        return Err(ConstraintError::bad_request(format!(
            "Container name length of {} longer than {}",
            name.len(),
            c.max_container_name_length
        )));
    }
    Ok(())
}

/// Account name: non-empty, no `/`, at most `max_account_name_length` (all 400).
pub fn check_account_name(name: &str, c: &Constraints) -> Result<(), ConstraintError> {
    if name.is_empty() || name.contains('/') {
        return Err(ConstraintError::bad_request("Invalid account name"));
    }
    if name.len() > c.max_account_name_length {
        return Err(ConstraintError::bad_request(format!(
            "Account name length of {} longer than {}",
            name.len(),
            c.max_account_name_length
        )));
    }
    Ok(())
}

/// Object PUT body size: 413 `Your request is too large.` above `max_file_size`.
pub fn check_object_size(len: u64, c: &Constraints) -> Result<(), ConstraintError> {
    if len > c.max_file_size {
        return Err(ConstraintError::new(413, "Your request is too large."));
    }
    Ok(())
}

/// `Content-Type` must be valid UTF-8: 400 `Invalid Content-Type`.
pub fn check_content_type(value: &[u8]) -> Result<(), ConstraintError> {
    if !check_utf8(value) {
        return Err(ConstraintError::bad_request("Invalid Content-Type"));
    }
    Ok(())
}

/// Parse an `X-Delete-At` value like Swift's `normalize_delete_at_timestamp` (a decimal
/// number of seconds, truncated, clamped to `[0, 9999999999]`). `None` if not a number.
pub fn parse_delete_at(value: &str) -> Option<u64> {
    let v = value.trim();
    let (int_part, frac) = v.split_once('.').unwrap_or((v, ""));
    let (neg, digits) = match int_part.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, int_part.strip_prefix('+').unwrap_or(int_part)),
    };
    if (digits.is_empty() && frac.is_empty())
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if neg {
        return Some(0);
    }
    let trimmed = digits.trim_start_matches('0');
    if trimmed.len() > 10 {
        return Some(9_999_999_999);
    }
    let n: u64 = if trimmed.is_empty() {
        0
    } else {
        trimmed.parse().ok()?
    };
    Some(n.min(9_999_999_999))
}

/// Swift's `check_delete_headers`: returns the effective `X-Delete-At` (from
/// `X-Delete-After` + `now` or `X-Delete-At`), or a 400 with Swift's message.
/// `replication` skips the "in past" check (`X-Backend-Replication: true`).
pub fn check_delete_headers(
    delete_at: Option<&str>,
    delete_after: Option<&str>,
    now_secs: f64,
    replication: bool,
) -> Result<Option<u64>, ConstraintError> {
    let mut result = None;
    if let Some(after) = delete_after {
        let secs: i64 = after
            .trim()
            .parse()
            .map_err(|_| ConstraintError::bad_request("Non-integer X-Delete-After"))?;
        if secs < 0 {
            return Err(ConstraintError::bad_request("X-Delete-After in past"));
        }
        let at = (now_secs + secs as f64).floor().max(0.0) as u64;
        result = Some(at.min(9_999_999_999));
    }
    if result.is_none() {
        if let Some(at) = delete_at {
            let at = parse_delete_at(at)
                .ok_or_else(|| ConstraintError::bad_request("Non-integer X-Delete-At"))?;
            if (at as f64) <= now_secs && !replication {
                return Err(ConstraintError::bad_request("X-Delete-At in past"));
            }
            result = Some(at);
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(h: &[(&str, &str)], t: MetaTarget) -> Result<(), ConstraintError> {
        check_metadata(
            h.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
            t,
            &Constraints::default(),
        )
    }

    #[test]
    fn defaults_and_serde() {
        let c = Constraints::default();
        assert_eq!(c.max_header_count(), 126);
        let parsed: Constraints = toml::from_str("max_meta_count = 10").unwrap();
        assert_eq!(parsed.max_meta_count, 10);
        assert_eq!(parsed.max_file_size, 5_368_709_122);
        assert!(toml::from_str::<Constraints>("bogus = 1").is_err());
    }

    #[test]
    fn metadata_messages() {
        assert!(check(
            &[("X-Object-Meta-Color", "red"), ("Content-Type", "x")],
            MetaTarget::Object
        )
        .is_ok());
        assert_eq!(
            check(&[("X-Object-Meta-", "v")], MetaTarget::Object)
                .unwrap_err()
                .message,
            "Metadata name cannot be empty"
        );
        let long = "a".repeat(129);
        let e = check(
            &[(&format!("X-Object-Meta-{long}"), "v")],
            MetaTarget::Object,
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            format!("Metadata name too long: x-object-meta-{long}")
        );
        let e = check(
            &[("X-Container-Meta-K", &"v".repeat(257))],
            MetaTarget::Container,
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "Metadata value longer than 256: x-container-meta-K"
        );
        let many: Vec<(String, String)> = (0..91)
            .map(|i| (format!("x-object-meta-k{i}"), "v".into()))
            .collect();
        let e = check_metadata(
            many.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
            MetaTarget::Object,
            &Constraints::default(),
        )
        .unwrap_err();
        assert_eq!(e.message, "Too many metadata items; max 90");
        let big: Vec<(String, String)> = (0..20)
            .map(|i| (format!("x-object-meta-k{i:03}"), "v".repeat(250)))
            .collect();
        let e = check_metadata(
            big.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
            MetaTarget::Object,
            &Constraints::default(),
        )
        .unwrap_err();
        assert_eq!(e.message, "Total metadata too large; max 4096");
        let e = check(&[("X-Foo", &"v".repeat(8193))], MetaTarget::Object).unwrap_err();
        assert_eq!(e.message, "Header value too long: X-Foo");
        let e = check_metadata(
            [(&b"x-account-meta-k"[..], &b"\xff"[..])],
            MetaTarget::Account,
            &Constraints::default(),
        )
        .unwrap_err();
        assert_eq!(e.message, "Metadata must be valid UTF-8");
    }

    #[test]
    fn names_and_delete_headers() {
        let c = Constraints::default();
        let e = check_object_name(&"o".repeat(1025), &c).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (400, "Object name length of 1025 longer than 1024")
        );
        assert_eq!(check_container_name("a/b", &c).unwrap_err().status, 412);
        assert_eq!(
            check_path_segment(b"a\0b").unwrap_err().message,
            INVALID_UTF8
        );
        assert_eq!(
            check_object_size(5_368_709_123, &c).unwrap_err().status,
            413
        );
        assert_eq!(parse_delete_at("1700000000.7"), Some(1_700_000_000));
        assert_eq!(parse_delete_at("abc"), None);
        assert_eq!(parse_delete_at("99999999999"), Some(9_999_999_999));
        let now = 1_700_000_000.0;
        assert_eq!(
            check_delete_headers(Some("1700000100"), None, now, false),
            Ok(Some(1_700_000_100))
        );
        assert_eq!(
            check_delete_headers(None, Some("10"), now, false),
            Ok(Some(1_700_000_010))
        );
        assert_eq!(
            check_delete_headers(Some("1"), None, now, false)
                .unwrap_err()
                .message,
            "X-Delete-At in past"
        );
        assert_eq!(
            check_delete_headers(Some("x"), None, now, false)
                .unwrap_err()
                .message,
            "Non-integer X-Delete-At"
        );
        assert_eq!(
            check_delete_headers(None, Some("-1"), now, false)
                .unwrap_err()
                .message,
            "X-Delete-After in past"
        );
        assert_eq!(
            check_delete_headers(None, Some("x"), now, false)
                .unwrap_err()
                .message,
            "Non-integer X-Delete-After"
        );
    }
}
