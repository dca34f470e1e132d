//! Device specifications on the command line, in `swift-ring-builder`'s compact syntax.
//!
//! Operators already know these strings from Swift, so `cairn ring` accepts the same ones:
//!
//! - **add value** (`add`): `r<region>z<zone>-<ip>:<port>[R<ip>:<port>]/<device>[_<meta>]`,
//!   e.g. `r1z1-127.0.0.1:6200R127.0.0.1:6300/sdb1_ssd` or `r1z1-[::1]:6200/sdb1`. A value
//!   starting with `z` (no region) means region 1, Swift's legacy default.
//! - **search value** (`search`, `remove`, `set_weight`, `set_info`, …):
//!   `d<id>r<region>z<zone>-<ip>:<port>R<r_ip>:<r_port>/<device>_<meta>`, every part
//!   optional but at least one required (`d3`, `r1z2`, `127.0.0.1:6200/sdb1`, `/sdb1`,
//!   `_ssd`, `[::1]`, `R:6300`). The `-` is only needed when an ip follows `d`/`r`/`z`.
//! - **change value** (`set_info`): `<ip>:<port>R<ip>:<port>/<device>_<meta>`, every part
//!   optional but at least one required.
//!
//! The grammar follows Swift's `swift/common/ring/utils.py` (`parse_add_value`,
//! `parse_search_value`) and `swift/cli/ringbuilder.py` (set_info). IP addresses are
//! validated and normalised as Swift does: lowercase, IPv6 in its canonical (RFC 5952) text
//! form, so that `[::1]` and `[0:0::1]` find the same device. Addresses in these compact
//! strings must be IP literals (as in Swift); [`normalize_address`] additionally accepts
//! host names for `--ip`-style options.
//!
//! Cairn is slightly stricter than Swift where Swift would accept something harmful:
//! numbers must fit their type (ports ≤ 65535) and device names may not contain `/` or NUL
//! nor be `.`/`..` (they become directory names under the devices root).
//!
//! Every parser is total: bad input yields a [`DevSpecError`] naming the input, never a
//! panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::types::Device;

/// A device to add, parsed from an add value.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSpec {
    pub region: u32,
    pub zone: u32,
    pub ip: String,
    pub port: u16,
    /// `None` when the value had no `R…` part: replication uses `ip`.
    pub replication_ip: Option<String>,
    /// `None` when the value had no `R…` part: replication uses `port`.
    pub replication_port: Option<u16>,
    pub device: String,
    pub meta: String,
}

impl DeviceSpec {
    /// The ring device this spec describes, with replication address defaults filled in.
    pub fn to_device(&self, id: u32, weight: f64) -> Device {
        Device {
            id,
            region: self.region,
            zone: self.zone,
            ip: self.ip.clone(),
            port: self.port,
            replication_ip: self
                .replication_ip
                .clone()
                .unwrap_or_else(|| self.ip.clone()),
            replication_port: self.replication_port.unwrap_or(self.port),
            device: self.device.clone(),
            weight,
            meta: self.meta.clone(),
        }
    }
}

/// Criteria selecting devices; `None` fields match anything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchValue {
    pub id: Option<u32>,
    pub region: Option<u32>,
    pub zone: Option<u32>,
    /// Normalised (see the module docs); compared with the device's normalised ip.
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub replication_ip: Option<String>,
    pub replication_port: Option<u16>,
    /// Exact device name.
    pub device: Option<String>,
    /// Substring of the device's meta (Swift semantics: `_ssd` matches meta `fast ssd`).
    pub meta: Option<String>,
    /// Exact weight. Never set by [`parse_search_value`] (Swift's syntax has no weight);
    /// set it from a `--weight` option.
    pub weight: Option<f64>,
}

impl SearchValue {
    /// True when no criterion is set (would match every device).
    pub fn is_empty(&self) -> bool {
        *self == SearchValue::default()
    }

    /// Whether `dev` satisfies every criterion that is set.
    pub fn matches(&self, dev: &Device) -> bool {
        fn eq<T: PartialEq>(want: &Option<T>, have: &T) -> bool {
            want.as_ref().is_none_or(|w| w == have)
        }
        fn ip_eq(want: &Option<String>, have: &str) -> bool {
            match want {
                None => true,
                // Devices written by older tools may hold a non-canonical spelling.
                Some(w) => *w == normalize_address(have).unwrap_or_default(),
            }
        }
        eq(&self.id, &dev.id)
            && eq(&self.region, &dev.region)
            && eq(&self.zone, &dev.zone)
            && ip_eq(&self.ip, &dev.ip)
            && eq(&self.port, &dev.port)
            && ip_eq(&self.replication_ip, &dev.replication_ip)
            && eq(&self.replication_port, &dev.replication_port)
            && eq(&self.device, &dev.device)
            && self
                .meta
                .as_ref()
                .is_none_or(|m| dev.meta.contains(m.as_str()))
            && eq(&self.weight, &dev.weight)
    }
}

/// New values for a device's addressing (`set_info`); `None` fields stay unchanged.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InfoChange {
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub replication_ip: Option<String>,
    pub replication_port: Option<u16>,
    pub device: Option<String>,
    pub meta: Option<String>,
}

impl InfoChange {
    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        *self == InfoChange::default()
    }

    /// Apply the change to `dev` in place.
    pub fn apply(&self, dev: &mut Device) {
        if let Some(ip) = &self.ip {
            dev.ip.clone_from(ip);
        }
        if let Some(port) = self.port {
            dev.port = port;
        }
        if let Some(ip) = &self.replication_ip {
            dev.replication_ip.clone_from(ip);
        }
        if let Some(port) = self.replication_port {
            dev.replication_port = port;
        }
        if let Some(device) = &self.device {
            dev.device.clone_from(device);
        }
        if let Some(meta) = &self.meta {
            dev.meta.clone_from(meta);
        }
    }
}

/// Why a device specification string was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DevSpecError {
    #[error("invalid add value {value:?}: {reason}")]
    Add { value: String, reason: String },
    #[error("invalid search value {value:?}: {reason}")]
    Search { value: String, reason: String },
    #[error("invalid change value {value:?}: {reason}")]
    Change { value: String, reason: String },
    #[error("invalid address {0:?}: not an IP address or host name")]
    Address(String),
}

type Reason = String;

/// Parse an add value such as `r1z1-127.0.0.1:6200R127.0.0.1:6300/sdb1_meta`.
pub fn parse_add_value(s: &str) -> Result<DeviceSpec, DevSpecError> {
    parse_add_inner(s).map_err(|reason| DevSpecError::Add {
        value: s.to_string(),
        reason,
    })
}

fn parse_add_inner(s: &str) -> Result<DeviceSpec, Reason> {
    let mut rest = s;
    let region = match rest.strip_prefix('r') {
        Some(tail) => {
            let (digits, tail) = split_digits(tail);
            rest = tail;
            parse_num(digits, "region")?
        }
        None => 1,
    };
    let Some(tail) = rest.strip_prefix('z') else {
        return Err("expected z<zone> (after the optional r<region>)".into());
    };
    let (digits, tail) = split_digits(tail);
    let zone = parse_num(digits, "zone")?;
    let Some(tail) = tail.strip_prefix('-') else {
        return Err("expected '-' and <ip>:<port> after the zone".into());
    };
    let (ip, port, mut rest) = parse_ip_port(tail)?;
    let (mut replication_ip, mut replication_port) = (None, None);
    if let Some(tail) = rest.strip_prefix('R') {
        let (rip, rport, tail) = parse_ip_port(tail)?;
        replication_ip = Some(rip);
        replication_port = Some(rport);
        rest = tail;
    }
    let Some(tail) = rest.strip_prefix('/') else {
        return Err("expected /<device> after the address".into());
    };
    let (device, meta) = match tail.find('_') {
        Some(i) => (&tail[..i], &tail[i + 1..]),
        None => (tail, ""),
    };
    validate_device_name(device)?;
    Ok(DeviceSpec {
        region,
        zone,
        ip,
        port,
        replication_ip,
        replication_port,
        device: device.to_string(),
        meta: meta.to_string(),
    })
}

/// `<ip>:<port>` up to the next `R` or `/`; the ip may be bracketed (`[::1]:6200`) or, like
/// Swift, a bare IPv6 whose last `:` starts the port.
fn parse_ip_port(s: &str) -> Result<(String, u16, &str), Reason> {
    let (ip_text, port_and_rest) = if let Some(tail) = s.strip_prefix('[') {
        let Some(close) = tail.find(']') else {
            return Err("unterminated '[' in address".into());
        };
        let after = &tail[close + 1..];
        let Some(port_and_rest) = after.strip_prefix(':') else {
            return Err("expected :<port> after the address".into());
        };
        (&tail[..close], port_and_rest)
    } else {
        let end = s.find(['R', '/']).unwrap_or(s.len());
        let Some(colon) = s[..end].rfind(':') else {
            return Err("expected <ip>:<port>".into());
        };
        (&s[..colon], &s[colon + 1..])
    };
    let ip = normalize_ip(ip_text)?;
    let end = port_and_rest
        .find(['R', '/'])
        .unwrap_or(port_and_rest.len());
    let port = parse_num(&port_and_rest[..end], "port")?;
    Ok((ip, port, &port_and_rest[end..]))
}

/// Parse a search value such as `d3`, `r1z2`, `127.0.0.1:6200/sdb1` or `/sdb1`.
///
/// An empty string is an error: it would select every device.
pub fn parse_search_value(s: &str) -> Result<SearchValue, DevSpecError> {
    parse_search_inner(s).map_err(|reason| DevSpecError::Search {
        value: s.to_string(),
        reason,
    })
}

fn parse_search_inner(s: &str) -> Result<SearchValue, Reason> {
    if s.is_empty() {
        return Err("empty (give at least one of d<id>, r<region>, z<zone>, <ip>, :<port>, R<ip>, /<device>, _<meta>)".into());
    }
    let mut v = SearchValue::default();
    let mut rest = s;
    if let Some(tail) = rest.strip_prefix('d') {
        let (digits, tail) = split_digits(tail);
        v.id = Some(parse_num(digits, "device id")?);
        rest = tail;
    }
    if let Some(tail) = rest.strip_prefix('r') {
        let (digits, tail) = split_digits(tail);
        v.region = Some(parse_num(digits, "region")?);
        rest = tail;
    }
    if let Some(tail) = rest.strip_prefix('z') {
        let (digits, tail) = split_digits(tail);
        v.zone = Some(parse_num(digits, "zone")?);
        rest = tail;
    }
    if let Some(tail) = rest.strip_prefix('-') {
        rest = tail;
    }
    let (ip, port, tail) = parse_optional_ip_port(rest)?;
    v.ip = ip;
    v.port = port;
    rest = tail;
    if let Some(tail) = rest.strip_prefix('R') {
        let (ip, port, tail) = parse_optional_ip_port(tail)?;
        v.replication_ip = ip;
        v.replication_port = port;
        rest = tail;
    }
    if let Some(tail) = rest.strip_prefix('/') {
        let end = tail.find('_').unwrap_or(tail.len());
        v.device = Some(tail[..end].to_string());
        rest = &tail[end..];
    }
    if let Some(tail) = rest.strip_prefix('_') {
        v.meta = Some(tail.to_string());
        rest = "";
    }
    if !rest.is_empty() {
        return Err(format!("unexpected {rest:?}"));
    }
    Ok(v)
}

/// Parse a `set_info` change value such as `127.0.0.2:6201R127.0.0.2:6301/sdc1_new`.
///
/// An empty change (nothing to set) is an error, as in Swift.
pub fn parse_change_value(s: &str) -> Result<InfoChange, DevSpecError> {
    parse_change_inner(s).map_err(|reason| DevSpecError::Change {
        value: s.to_string(),
        reason,
    })
}

fn parse_change_inner(s: &str) -> Result<InfoChange, Reason> {
    let mut c = InfoChange::default();
    let (ip, port, mut rest) = parse_optional_ip_port(s)?;
    c.ip = ip;
    c.port = port;
    if let Some(tail) = rest.strip_prefix('R') {
        let (ip, port, tail) = parse_optional_ip_port(tail)?;
        c.replication_ip = ip;
        c.replication_port = port;
        rest = tail;
    }
    if let Some(tail) = rest.strip_prefix('/') {
        let end = tail.find('_').unwrap_or(tail.len());
        let device = &tail[..end];
        validate_device_name(device)?;
        c.device = Some(device.to_string());
        rest = &tail[end..];
    }
    if let Some(tail) = rest.strip_prefix('_') {
        c.meta = Some(tail.to_string());
        rest = "";
    }
    if !rest.is_empty() {
        return Err(format!("unexpected {rest:?}"));
    }
    if c.is_empty() {
        return Err("nothing to change".into());
    }
    Ok(c)
}

/// The search/change-value address part: an optional ip (dotted digits, or bracketed) and
/// an optional `:<port>`.
fn parse_optional_ip_port(s: &str) -> Result<(Option<String>, Option<u16>, &str), Reason> {
    let mut rest = s;
    let mut ip = None;
    if rest.starts_with(|c: char| c.is_ascii_digit()) {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        ip = Some(normalize_ip(&rest[..end])?);
        rest = &rest[end..];
    } else if let Some(tail) = rest.strip_prefix('[') {
        let Some(close) = tail.find(']') else {
            return Err("unterminated '[' in address".into());
        };
        ip = Some(normalize_ip(&tail[..close])?);
        rest = &tail[close + 1..];
    }
    let mut port = None;
    if let Some(tail) = rest.strip_prefix(':') {
        let (digits, tail) = split_digits(tail);
        port = Some(parse_num(digits, "port")?);
        rest = tail;
    }
    Ok((ip, port, rest))
}

/// Validate an IP literal and return Swift's normal form: IPv4 as is, IPv6 lowercase and
/// canonical (`::1`, `fe80::1`).
fn normalize_ip(s: &str) -> Result<String, Reason> {
    if let Ok(v4) = s.parse::<Ipv4Addr>() {
        return Ok(v4.to_string());
    }
    if let Ok(v6) = s.parse::<Ipv6Addr>() {
        return Ok(v6.to_string());
    }
    Err(format!("{s:?} is not an IP address"))
}

/// Validate and normalise an address given as an option (`--ip`): an IP literal (IPv6 may be
/// bracketed) or a host name (lowercased). Mirrors Swift's `validate_and_normalize_address`.
pub fn normalize_address(s: &str) -> Result<String, DevSpecError> {
    let bracketed = s.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
    if let Some(inner) = bracketed {
        return normalize_ip(inner).map_err(|_| DevSpecError::Address(s.to_string()));
    }
    let lower = s.to_ascii_lowercase();
    if let Ok(ip) = normalize_ip(&lower) {
        return Ok(ip);
    }
    if is_valid_hostname(&lower) {
        return Ok(lower);
    }
    Err(DevSpecError::Address(s.to_string()))
}

/// RFC 1123 host name: dot-separated labels of 1–63 letters, digits and inner hyphens.
fn is_valid_hostname(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

fn validate_device_name(name: &str) -> Result<(), Reason> {
    if name.is_empty() {
        return Err("empty device name".into());
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(format!("device name {name:?} starts or ends with a space"));
    }
    if name.contains(['/', '\0']) || name == "." || name == ".." {
        return Err(format!(
            "device name {name:?} is not a plain directory name"
        ));
    }
    Ok(())
}

/// Split a leading run of ASCII digits off `s`.
fn split_digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

fn parse_num<T: std::str::FromStr>(digits: &str, what: &str) -> Result<T, Reason> {
    if digits.is_empty() {
        return Err(format!("missing {what} number"));
    }
    digits
        .parse()
        .map_err(|_| format!("{what} {digits} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dev() -> Device {
        Device {
            id: 3,
            region: 1,
            zone: 2,
            ip: "127.0.0.1".into(),
            port: 6200,
            replication_ip: "10.0.0.1".into(),
            replication_port: 6300,
            device: "sdb1".into(),
            weight: 100.0,
            meta: "fast ssd".into(),
        }
    }

    #[test]
    fn add_value_full() {
        let s = parse_add_value("r2z3-127.0.0.1:6200R10.0.0.1:6300/sdb1_some meta").unwrap();
        assert_eq!(
            s,
            DeviceSpec {
                region: 2,
                zone: 3,
                ip: "127.0.0.1".into(),
                port: 6200,
                replication_ip: Some("10.0.0.1".into()),
                replication_port: Some(6300),
                device: "sdb1".into(),
                meta: "some meta".into(),
            }
        );
        let d = s.to_device(7, 50.0);
        assert_eq!((d.id, d.weight, d.replication_port), (7, 50.0, 6300));
    }

    #[test]
    fn add_value_minimal_and_legacy_zone_only() {
        let s = parse_add_value("z1-127.0.0.1:6200/sdb1").unwrap();
        assert_eq!((s.region, s.zone, s.port), (1, 1, 6200));
        assert_eq!(s.replication_ip, None);
        assert_eq!(s.replication_port, None);
        assert_eq!(s.meta, "");
        let d = s.to_device(0, 1.0);
        assert_eq!(
            (d.replication_ip.as_str(), d.replication_port),
            ("127.0.0.1", 6200)
        );
        // meta may itself contain underscores: only the first one separates
        let s = parse_add_value("r1z1-1.2.3.4:1/sdb_a_b").unwrap();
        assert_eq!((s.device.as_str(), s.meta.as_str()), ("sdb", "a_b"));
    }

    #[test]
    fn add_value_ipv6() {
        let s = parse_add_value("r1z1-[::1]:6200/sdb1").unwrap();
        assert_eq!((s.ip.as_str(), s.port), ("::1", 6200));
        let s = parse_add_value("r1z1-[FE80:0:0::1]:6200R[::2]:6300/d").unwrap();
        assert_eq!(s.ip, "fe80::1");
        assert_eq!(s.replication_ip.as_deref(), Some("::2"));
        assert_eq!(s.replication_port, Some(6300));
        // Swift also accepts an unbracketed IPv6: the last ':' starts the port
        let s = parse_add_value("r1z1-::1:6200/sdb1").unwrap();
        assert_eq!((s.ip.as_str(), s.port), ("::1", 6200));
    }

    #[test]
    fn add_value_rejects_bad_input() {
        for bad in [
            "",
            "r1",
            "r1z",
            "rz1-1.2.3.4:1/d",
            "r1z1",
            "r1z1-",
            "r1z1-1.2.3.4/d",
            "r1z1-1.2.3.4:/d",
            "r1z1-1.2.3.4:65536/d",
            "r1z1-1.2.3.4:1",
            "r1z1-1.2.3.4:1/",
            "r1z1-1.2.3.4:1/_meta",
            "r1z1-1.2.3.4:1/ sdb",
            "r1z1-1.2.3.4:1/..",
            "r1z1-1.2.3.4:1/a/b",
            "r1z1-host.example:1/d",
            "r1z1-1.2.3:1/d",
            "r1z1-[::1:1/d",
            "r1z1-[::1]/d",
            "r1z1-1.2.3.4:1R/d",
            "r99999999999z1-1.2.3.4:1/d",
            "x1z1-1.2.3.4:1/d",
        ] {
            let err = parse_add_value(bad).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            assert!(!msg.contains('\n'));
        }
    }

    #[test]
    fn search_value_forms() {
        assert_eq!(
            parse_search_value("d3").unwrap(),
            SearchValue {
                id: Some(3),
                ..Default::default()
            }
        );
        let v = parse_search_value("r1z2").unwrap();
        assert_eq!(
            (v.region, v.zone, v.ip.as_deref()),
            (Some(1), Some(2), None)
        );
        let v = parse_search_value("127.0.0.1:6200/sdb1").unwrap();
        assert_eq!(v.ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(v.port, Some(6200));
        assert_eq!(v.device.as_deref(), Some("sdb1"));
        let v = parse_search_value("r1z1-127.0.0.1:6200/sdb1").unwrap();
        assert_eq!((v.region, v.zone, v.port), (Some(1), Some(1), Some(6200)));
        let v = parse_search_value("/sdb1").unwrap();
        assert_eq!(
            v,
            SearchValue {
                device: Some("sdb1".into()),
                ..Default::default()
            }
        );
        let v =
            parse_search_value("d74r4z1-1.2.3.4:5678R5.6.7.8:9/sdb1_\"snet: 5.6.7.8\"").unwrap();
        assert_eq!(v.id, Some(74));
        assert_eq!(v.replication_ip.as_deref(), Some("5.6.7.8"));
        assert_eq!(v.replication_port, Some(9));
        assert_eq!(v.meta.as_deref(), Some("\"snet: 5.6.7.8\""));
        let v = parse_search_value("z1-[::1]:5678").unwrap();
        assert_eq!((v.ip.as_deref(), v.port), (Some("::1"), Some(5678)));
        let v = parse_search_value("R:6300").unwrap();
        assert_eq!(v.replication_port, Some(6300));
        assert_eq!(v.replication_ip, None);
        let v = parse_search_value(":6200").unwrap();
        assert_eq!(v.port, Some(6200));
        let v = parse_search_value("_ssd").unwrap();
        assert_eq!(v.meta.as_deref(), Some("ssd"));
        assert!(!v.is_empty());
    }

    #[test]
    fn search_value_rejects_bad_input() {
        for bad in [
            "",
            "d",
            "dx",
            "r",
            "z",
            "1.2.3",
            "[::1",
            "[zz]",
            ":",
            ":70000",
            "z1-x",
            "sdb1",
            "d1 ",
            "Rx",
            "R1.2.3.4:",
        ] {
            let msg = parse_search_value(bad).unwrap_err().to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
        }
    }

    #[test]
    fn search_value_matching() {
        let d = dev();
        for (s, want) in [
            ("d3", true),
            ("d4", false),
            ("r1z2", true),
            ("r1z1", false),
            ("127.0.0.1:6200/sdb1", true),
            ("127.0.0.1:6201", false),
            ("R10.0.0.1:6300", true),
            ("R10.0.0.2", false),
            ("/sdb1", true),
            ("/sdb", false),
            ("_ssd", true),
            ("_hdd", false),
        ] {
            assert_eq!(parse_search_value(s).unwrap().matches(&d), want, "{s}");
        }
        let mut v6 = dev();
        v6.ip = "0:0::1".into();
        assert!(parse_search_value("[::1]").unwrap().matches(&v6));
        let w = SearchValue {
            weight: Some(100.0),
            ..Default::default()
        };
        assert!(w.matches(&d));
        assert!(!SearchValue {
            weight: Some(1.0),
            ..Default::default()
        }
        .matches(&d));
    }

    #[test]
    fn change_value_forms() {
        let c = parse_change_value("127.0.0.2:6201R127.0.0.3:6301/sdc1_new meta").unwrap();
        assert_eq!(
            c,
            InfoChange {
                ip: Some("127.0.0.2".into()),
                port: Some(6201),
                replication_ip: Some("127.0.0.3".into()),
                replication_port: Some(6301),
                device: Some("sdc1".into()),
                meta: Some("new meta".into()),
            }
        );
        let c = parse_change_value(":6202").unwrap();
        assert_eq!(
            c,
            InfoChange {
                port: Some(6202),
                ..Default::default()
            }
        );
        let c = parse_change_value("[::1]").unwrap();
        assert_eq!(c.ip.as_deref(), Some("::1"));
        let c = parse_change_value("_").unwrap();
        assert_eq!(c.meta.as_deref(), Some(""));
        let mut d = dev();
        parse_change_value("R:7000/sdz").unwrap().apply(&mut d);
        assert_eq!(
            (d.replication_port, d.device.as_str(), d.port),
            (7000, "sdz", 6200)
        );
    }

    #[test]
    fn change_value_rejects_bad_input() {
        for bad in [
            "",
            "R",
            "x",
            "1.2.3.4:",
            "/",
            "/a/b",
            "1.2.3.4:99999",
            "[::1",
            "1.2.3.4 ",
        ] {
            let msg = parse_change_value(bad).unwrap_err().to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
        }
    }

    #[test]
    fn address_normalisation() {
        assert_eq!(
            normalize_address("Storage-1.Example").unwrap(),
            "storage-1.example"
        );
        assert_eq!(normalize_address("[::1]").unwrap(), "::1");
        assert_eq!(normalize_address("FE80::0:1").unwrap(), "fe80::1");
        assert_eq!(normalize_address("10.0.0.1").unwrap(), "10.0.0.1");
        for bad in ["", "-x", "a..b", "[host]", "under_score"] {
            assert!(normalize_address(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = parse_add_value(&s);
            let _ = parse_search_value(&s);
            let _ = parse_change_value(&s);
            let _ = normalize_address(&s);
        }

        #[test]
        fn parsers_never_panic_on_spec_like_input(s in "[drzR0-9.:\\-\\[\\]/_ a-f]{0,40}") {
            let _ = parse_add_value(&s);
            let _ = parse_search_value(&s);
            let _ = parse_change_value(&s);
        }

        #[test]
        fn add_value_round_trips(region in 0u32..10, zone in 0u32..10, a in 0u8..=255,
                                 port in 1u16.., dev in "[a-z][a-z0-9]{0,8}",
                                 meta in "[ -~]{0,12}") {
            let s = format!("r{region}z{zone}-10.0.0.{a}:{port}/{dev}_{meta}");
            let spec = parse_add_value(&s).unwrap();
            prop_assert_eq!(spec.region, region);
            prop_assert_eq!(spec.zone, zone);
            prop_assert_eq!(spec.ip, format!("10.0.0.{a}"));
            prop_assert_eq!(spec.port, port);
            prop_assert_eq!(spec.device, dev);
            prop_assert_eq!(spec.meta, meta);
        }
    }
}
