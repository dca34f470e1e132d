//! Backend request paths (`PROTOCOLS.md`, "Backend HTTP API"): `/DEV/PART/ACCT[/CONT[/OBJ]]`,
//! `/DEV/PART[/SUFFIXES]` (object REPLICATE, SSYNC), `/DEV/PART/HASH` (DB REPLICATE) and
//! `/DEV/tmp/NAME` (whole-DB upload), plus [`quote`] to build them.
//!
//! Parsing follows Swift: the raw path is percent-decoded first and must be UTF-8 without
//! NUL (else 412 `Invalid UTF8 or contains NULL`), then split with Swift's `split_path`
//! rules (400 `Invalid path: …`), then the device and partition are validated (400
//! `Invalid device: …` / `Invalid partition: …`; a partition must be a decimal `u32`).
//! Optional segments that are empty (`/d/1/a/`) count as absent.

use http::StatusCode;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::error::HttpError;
use crate::constraints::{check_utf8, INVALID_UTF8};

/// Why a backend path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Malformed path, device or partition: 400 with this message.
    #[error("{0}")]
    Invalid(String),
    /// Not UTF-8 or contains NUL after percent-decoding: 412.
    #[error("Invalid UTF8 or contains NULL")]
    InvalidUtf8,
}

impl PathError {
    pub fn status(&self) -> StatusCode {
        match self {
            PathError::Invalid(_) => StatusCode::BAD_REQUEST,
            PathError::InvalidUtf8 => StatusCode::PRECONDITION_FAILED,
        }
    }
}

impl From<PathError> for HttpError {
    fn from(e: PathError) -> Self {
        match e {
            PathError::Invalid(m) => HttpError::new(StatusCode::BAD_REQUEST, m),
            PathError::InvalidUtf8 => HttpError::new(StatusCode::PRECONDITION_FAILED, INVALID_UTF8),
        }
    }
}

/// Characters Swift's `quote(s, safe='/')` leaves alone: letters, digits, `_.-~` and `/`.
const QUOTE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~')
    .remove(b'/');

/// Percent-encode like Python's `urllib.parse.quote(s, safe='/')` (UTF-8 bytes).
pub fn quote(s: &str) -> String {
    utf8_percent_encode(s, QUOTE_SET).to_string()
}

/// The quoted backend path `/DEV/PART/ACCT[/CONT[/OBJ]]` for a request to a storage node.
pub fn backend_path(
    device: &str,
    partition: u32,
    account: &str,
    container: Option<&str>,
    object: Option<&str>,
) -> String {
    let mut p = format!("/{}/{partition}/{}", quote(device), quote(account));
    if let Some(c) = container {
        p.push('/');
        p.push_str(&quote(c));
        if let Some(o) = object {
            p.push('/');
            p.push_str(&quote(o));
        }
    }
    p
}

/// Percent-decode a raw request path and check it is UTF-8 without NUL (412 otherwise).
pub fn decode_path(raw: &str) -> Result<String, PathError> {
    let bytes: Vec<u8> = percent_decode_str(raw).collect();
    if !check_utf8(&bytes) {
        return Err(PathError::InvalidUtf8);
    }
    String::from_utf8(bytes).map_err(|_| PathError::InvalidUtf8)
}

/// Swift's `split_path`: `minsegs..=maxsegs` segments after the leading `/`; with
/// `rest_with_last` the last segment keeps any further `/`. Missing trailing segments are
/// `None`; required segments must be non-empty.
pub fn split_path(
    path: &str,
    minsegs: usize,
    maxsegs: usize,
    rest_with_last: bool,
) -> Result<Vec<Option<&str>>, PathError> {
    let invalid = || PathError::Invalid(format!("Invalid path: {}", quote(path)));
    if minsegs > maxsegs || maxsegs == 0 {
        return Err(invalid());
    }
    let segs: Vec<&str> = if rest_with_last {
        path.splitn(maxsegs + 1, '/').collect()
    } else {
        path.splitn(maxsegs + 2, '/').collect()
    };
    let count = segs.len();
    let (min, max) = (minsegs + 1, maxsegs + 1);
    let bad = !segs[0].is_empty()
        || count < min
        || segs[1..min.min(count)].iter().any(|s| s.is_empty())
        || if rest_with_last {
            count > max
        } else {
            count > max + 1 || (count == max + 1 && !segs[max].is_empty())
        };
    if bad {
        return Err(invalid());
    }
    let mut out: Vec<Option<&str>> = segs[1..count.min(max)].iter().map(|s| Some(*s)).collect();
    out.resize(maxsegs, None);
    Ok(out)
}

fn check_device(device: &str) -> Result<(), PathError> {
    if device.is_empty() || device.contains('/') || device == "." || device == ".." {
        return Err(PathError::Invalid(format!(
            "Invalid device: {}",
            quote(device)
        )));
    }
    Ok(())
}

fn parse_partition(part: &str) -> Result<u32, PathError> {
    if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(p) = part.parse() {
            return Ok(p);
        }
    }
    Err(PathError::Invalid(format!(
        "Invalid partition: {}",
        quote(part)
    )))
}

fn nonempty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}

/// A parsed `/DEV/PART/ACCT[/CONT[/OBJ]]` path (names decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendPath {
    pub device: String,
    pub partition: u32,
    pub account: String,
    pub container: Option<String>,
    pub object: Option<String>,
}

/// Parse a raw (still percent-encoded) backend path with `minsegs..=maxsegs` segments
/// (3 ≤ min ≤ max ≤ 5, counting device and partition); with 5 the object keeps its `/`.
pub fn parse_backend_path(
    raw: &str,
    minsegs: usize,
    maxsegs: usize,
) -> Result<BackendPath, PathError> {
    let path = decode_path(raw)?;
    if !(3..=5).contains(&minsegs) || !(minsegs..=5).contains(&maxsegs) {
        return Err(PathError::Invalid(format!(
            "Invalid path: {}",
            quote(&path)
        )));
    }
    let segs = split_path(&path, minsegs, maxsegs, maxsegs == 5)?;
    let device = segs[0].unwrap_or_default();
    check_device(device)?;
    let partition = parse_partition(segs[1].unwrap_or_default())?;
    let account = segs[2].unwrap_or_default().to_string();
    let container = nonempty(segs.get(3).copied().flatten());
    let object = if container.is_some() {
        nonempty(segs.get(4).copied().flatten())
    } else {
        None
    };
    Ok(BackendPath {
        device: device.to_string(),
        partition,
        account,
        container,
        object,
    })
}

/// Object server paths: exactly `/DEV/PART/A/C/O` (`container` and `object` are `Some`).
pub fn parse_object_path(raw: &str) -> Result<BackendPath, PathError> {
    parse_backend_path(raw, 5, 5)
}

/// Container server paths: `/DEV/PART/A/C[/O]` (with an object: a listing update).
pub fn parse_container_path(raw: &str) -> Result<BackendPath, PathError> {
    parse_backend_path(raw, 4, 5)
}

/// Account server paths: `/DEV/PART/A[/C]` (with a container: a container report).
pub fn parse_account_path(raw: &str) -> Result<BackendPath, PathError> {
    parse_backend_path(raw, 3, 4)
}

/// A parsed `/DEV/PART[/REST]` path (REPLICATE and SSYNC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePartitionPath {
    pub device: String,
    pub partition: u32,
    /// The third segment when present and non-empty (suffixes, a DB hash).
    pub rest: Option<String>,
}

/// Parse `/DEV/PART` (`with_rest = false`, SSYNC) or `/DEV/PART[/REST]` (`true`).
pub fn parse_device_partition(
    raw: &str,
    with_rest: bool,
) -> Result<DevicePartitionPath, PathError> {
    let path = decode_path(raw)?;
    let segs = split_path(&path, 2, if with_rest { 3 } else { 2 }, false)?;
    let device = segs[0].unwrap_or_default();
    check_device(device)?;
    let partition = parse_partition(segs[1].unwrap_or_default())?;
    Ok(DevicePartitionPath {
        device: device.to_string(),
        partition,
        rest: nonempty(segs.get(2).copied().flatten()),
    })
}

/// Object REPLICATE: `/DEV/PART[/SUF1-SUF2-…]` → device, partition and the suffixes to
/// rehash (each three lowercase hex digits; 400 otherwise).
pub fn parse_replicate_path(raw: &str) -> Result<(String, u32, Vec<String>), PathError> {
    let p = parse_device_partition(raw, true)?;
    let suffixes: Vec<String> = match &p.rest {
        None => Vec::new(),
        Some(rest) => rest.split('-').map(str::to_string).collect(),
    };
    for s in &suffixes {
        if s.len() != 3
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(PathError::Invalid(format!("Invalid suffix: {}", quote(s))));
        }
    }
    Ok((p.device, p.partition, suffixes))
}

/// DB REPLICATE: exactly `/DEV/PART/HASH` → device, partition, hash (32 hex digits).
pub fn parse_db_replicate_path(raw: &str) -> Result<(String, u32, String), PathError> {
    let p = parse_device_partition(raw, true)?;
    match p.rest {
        Some(h) if h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok((p.device, p.partition, h))
        }
        other => Err(PathError::Invalid(format!(
            "Invalid hash: {}",
            quote(other.as_deref().unwrap_or_default())
        ))),
    }
}

/// Whole-DB upload `/DEV/tmp/NAME` → `Some(device, name)`; `None` when the second
/// segment is not `tmp` (so callers can try the other forms); `Some(Err)` when malformed.
pub fn parse_tmp_path(raw: &str) -> Option<Result<(String, String), PathError>> {
    let path = match decode_path(raw) {
        Ok(p) => p,
        Err(e) => return Some(Err(e)),
    };
    let segs = split_path(&path, 3, 3, false).ok()?;
    if segs[1] != Some("tmp") {
        return None;
    }
    let device = segs[0].unwrap_or_default();
    let name = segs[2].unwrap_or_default();
    if let Err(e) = check_device(device) {
        return Some(Err(e));
    }
    if name == "." || name == ".." || name.starts_with('.') {
        return Some(Err(PathError::Invalid(format!(
            "Invalid name: {}",
            quote(name)
        ))));
    }
    Some(Ok((device.to_string(), name.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bp(d: &str, p: u32, a: &str, c: Option<&str>, o: Option<&str>) -> BackendPath {
        BackendPath {
            device: d.into(),
            partition: p,
            account: a.into(),
            container: c.map(Into::into),
            object: o.map(Into::into),
        }
    }

    #[test]
    fn object_paths() {
        let ok = [
            (
                "/sda1/12/AUTH_t/c/o",
                bp("sda1", 12, "AUTH_t", Some("c"), Some("o")),
            ),
            (
                "/sda1/0/a/c/o/with/slashes/",
                bp("sda1", 0, "a", Some("c"), Some("o/with/slashes/")),
            ),
            (
                "/sda1/3/a/c%20x/%E2%9C%93%2Fz",
                bp("sda1", 3, "a", Some("c x"), Some("✓/z")),
            ),
        ];
        for (raw, want) in ok {
            assert_eq!(parse_object_path(raw).as_ref(), Ok(&want), "{raw}");
        }
        for raw in [
            "",
            "sda1/1/a/c/o",
            "/sda1/1/a/c",
            "/sda1/1/a/c/",
            "/sda1/1/a//o",
            "/sda1//a/c/o",
            "/sda1/x/a/c/o",
            "/sda1/-1/a/c/o",
            "/sda1/99999999999/a/c/o",
            "/../1/a/c/o",
            "/sda1/1//c/o",
        ] {
            let e = parse_object_path(raw).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{raw}: {e}");
        }
        for raw in [
            "/sda1/1/a/c/%FF",
            "/sda1/1/a/c/o%00",
            "/sda1/1/%ED%A0%80/c/o",
        ] {
            assert_eq!(parse_object_path(raw), Err(PathError::InvalidUtf8), "{raw}");
        }
        let e: HttpError = parse_object_path("/sda1/1/a/c/%FF").unwrap_err().into();
        assert_eq!((e.status.as_u16(), e.message.as_str()), (412, INVALID_UTF8));
        let e: HttpError = parse_object_path("/sda1/p/a/c/o").unwrap_err().into();
        assert_eq!(
            (e.status.as_u16(), e.message.as_str()),
            (400, "Invalid partition: p")
        );
    }

    #[test]
    fn container_and_account_paths() {
        assert_eq!(
            parse_container_path("/d/1/a/c"),
            Ok(bp("d", 1, "a", Some("c"), None))
        );
        assert_eq!(
            parse_container_path("/d/1/a/c/o/x"),
            Ok(bp("d", 1, "a", Some("c"), Some("o/x")))
        );
        assert!(parse_container_path("/d/1/a").is_err());
        assert_eq!(
            parse_account_path("/d/1/a"),
            Ok(bp("d", 1, "a", None, None))
        );
        assert_eq!(
            parse_account_path("/d/1/a/"),
            Ok(bp("d", 1, "a", None, None))
        );
        assert_eq!(
            parse_account_path("/d/1/a/c"),
            Ok(bp("d", 1, "a", Some("c"), None))
        );
        assert_eq!(
            parse_account_path("/d/1/a/c/"),
            Ok(bp("d", 1, "a", Some("c"), None))
        );
        assert!(parse_account_path("/d/1/a/c/o").is_err());
        assert!(parse_account_path("/d/1").is_err());
    }

    #[test]
    fn replication_paths() {
        assert_eq!(parse_replicate_path("/d/7"), Ok(("d".into(), 7, vec![])));
        assert_eq!(
            parse_replicate_path("/d/7/abc-0f1"),
            Ok(("d".into(), 7, vec!["abc".into(), "0f1".into()]))
        );
        assert!(parse_replicate_path("/d/7/abcd").is_err());
        assert!(parse_replicate_path("/d/7/abc/def").is_err());
        let ssync = parse_device_partition("/d/7", false).unwrap();
        assert_eq!(
            (ssync.device.as_str(), ssync.partition, ssync.rest),
            ("d", 7, None)
        );
        assert!(parse_device_partition("/d/7/x", false).is_err());
        let h = "0123456789abcdef0123456789ABCDEF";
        assert_eq!(
            parse_db_replicate_path(&format!("/d/3/{h}")),
            Ok(("d".into(), 3, h.into()))
        );
        assert!(parse_db_replicate_path("/d/3").is_err());
        assert!(parse_db_replicate_path("/d/3/xyz").is_err());
        assert_eq!(
            parse_tmp_path("/d/tmp/abc.db"),
            Some(Ok(("d".into(), "abc.db".into())))
        );
        assert_eq!(parse_tmp_path("/d/1/abc"), None);
        assert!(matches!(parse_tmp_path("/d/tmp/.."), Some(Err(_))));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a b/c~d_e.f-g"), "a%20b/c~d_e.f-g");
        assert_eq!(quote("✓?#%"), "%E2%9C%93%3F%23%25");
        let p = backend_path("sdb1", 5, "AUTH_t", Some("c 1"), Some("o/x?"));
        assert_eq!(p, "/sdb1/5/AUTH_t/c%201/o/x%3F");
        assert_eq!(
            parse_object_path(&p),
            Ok(bp("sdb1", 5, "AUTH_t", Some("c 1"), Some("o/x?")))
        );
        assert_eq!(backend_path("d", 1, "a", None, Some("ignored")), "/d/1/a");
    }
}
