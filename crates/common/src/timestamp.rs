//! Timestamps (`PROTOCOLS.md`, "Timestamps"): a count of 10 µs units since the epoch plus
//! an ordering offset. Only the proxy creates write timestamps; everything else parses,
//! compares and renders them.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Units of 10 µs per second.
pub const UNITS_PER_SEC: u64 = 100_000;
/// Exclusive upper bound on seconds (year 2286).
pub const MAX_SECONDS: u64 = 10_000_000_000;

/// A write's identity: `(raw, offset)`, ordered on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// 10 µs units since the Unix epoch.
    pub raw: u64,
    /// Internal ordering offset; 0 for every client write.
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("invalid timestamp {0:?}")]
    Invalid(String),
    #[error("timestamp {0:?} out of range")]
    OutOfRange(String),
}

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp { raw: 0, offset: 0 };

    pub fn from_raw(raw: u64) -> Self {
        Timestamp { raw, offset: 0 }
    }

    /// Whole seconds plus 10 µs units.
    pub fn from_secs(secs: u64) -> Self {
        Timestamp::from_raw(secs * UNITS_PER_SEC)
    }

    /// The current wall-clock time (10 µs resolution).
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_raw(d.as_secs() * UNITS_PER_SEC + u64::from(d.subsec_micros() / 10))
    }

    pub fn with_offset(self, offset: u64) -> Self {
        Timestamp { offset, ..self }
    }

    pub fn secs(&self) -> u64 {
        self.raw / UNITS_PER_SEC
    }

    /// Fractional units (0..100000).
    pub fn frac_units(&self) -> u64 {
        self.raw % UNITS_PER_SEC
    }

    /// Seconds as a float (for ages and metrics only, never for ordering).
    pub fn as_f64(&self) -> f64 {
        self.raw as f64 / UNITS_PER_SEC as f64
    }

    /// `%016.05f`: `1700000000.00000`.
    pub fn normal(&self) -> String {
        format!("{:010}.{:05}", self.secs(), self.frac_units())
    }

    /// Normal form plus `_%016x` of the offset when it is not zero.
    pub fn internal(&self) -> String {
        if self.offset == 0 {
            self.normal()
        } else {
            format!("{}_{:016x}", self.normal(), self.offset)
        }
    }

    /// Normal form plus `_%x` of the offset when it is not zero.
    pub fn short(&self) -> String {
        if self.offset == 0 {
            self.normal()
        } else {
            format!("{}_{:x}", self.normal(), self.offset)
        }
    }

    /// Parse any accepted form (`1700000000`, `1700000000.1`, `…_00000000000000ff`).
    pub fn parse(s: &str) -> Result<Self, TimestampError> {
        let invalid = || TimestampError::Invalid(s.to_string());
        let (left, right) = match s.split_once('_') {
            Some((l, r)) => (l, Some(r)),
            None => (s, None),
        };
        let offset = match right {
            None => 0,
            Some(hex) => {
                if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid());
                }
                u64::from_str_radix(hex, 16).map_err(|_| invalid())?
            }
        };
        let raw = parse_decimal_seconds(left).ok_or_else(invalid)?;
        if raw >= MAX_SECONDS * UNITS_PER_SEC {
            return Err(TimestampError::OutOfRange(s.to_string()));
        }
        Ok(Timestamp { raw, offset })
    }

    /// Parse a client-facing value: like [`Timestamp::parse`] but no offset allowed.
    pub fn parse_normal(s: &str) -> Result<Self, TimestampError> {
        if s.contains('_') {
            return Err(TimestampError::Invalid(s.to_string()));
        }
        Timestamp::parse(s)
    }

    /// `Last-Modified`: the ceiling of the seconds as an IMF-fixdate.
    pub fn http_date(&self) -> String {
        let secs = self.secs() + u64::from(self.frac_units() > 0);
        httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(secs))
    }

    /// Seconds used for conditional requests (ceiling, matching `Last-Modified`).
    pub fn ceil_secs(&self) -> u64 {
        self.secs() + u64::from(self.frac_units() > 0)
    }

    /// Listing `last_modified`: ISO 8601 without zone and with 6 fractional digits,
    /// `2023-11-14T22:13:20.000010`. Microseconds are the normal form's fraction × 10⁶
    /// rounded half-to-even with carry into the seconds; with 10 µs units that product is
    /// always exact, so no rounding (and no carry) ever happens in practice.
    pub fn iso_listing(&self) -> String {
        let micros = self.frac_units() * 10;
        let (secs, micros) = if micros >= 1_000_000 {
            (self.secs() + 1, micros - 1_000_000)
        } else {
            (self.secs(), micros)
        };
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days as i64);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
            y,
            m,
            d,
            rem / 3600,
            (rem / 60) % 60,
            rem % 60,
            micros
        )
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Encode the (data, content-type, meta) timestamps of a container row or `.meta` file
/// name (`PROTOCOLS.md`, "Encoded triple"): `T1[±D2[±D3]]`, `T1` in short form, deltas
/// of `raw` as signed lowercase hex. A zero delta is omitted unless a later delta is
/// non-zero or `explicit` is set (then `+0` appears).
pub fn encode_triple(data: Timestamp, ctype: Timestamp, meta: Timestamp, explicit: bool) -> String {
    let d2 = i128::from(ctype.raw) - i128::from(data.raw);
    let d3 = i128::from(meta.raw) - i128::from(ctype.raw);
    let mut out = data.short();
    let fmt_delta = |out: &mut String, d: i128| {
        use std::fmt::Write;
        if d < 0 {
            let _ = write!(out, "-{:x}", -d);
        } else {
            let _ = write!(out, "+{d:x}");
        }
    };
    if explicit || d3 != 0 {
        fmt_delta(&mut out, d2);
        fmt_delta(&mut out, d3);
    } else if d2 != 0 {
        fmt_delta(&mut out, d2);
    }
    out
}

/// Decode an encoded triple (see [`encode_triple`]). Missing components default to the
/// previous one (keeping its offset); a component given by a non-zero delta has offset 0.
pub fn decode_triple(s: &str) -> Result<(Timestamp, Timestamp, Timestamp), TimestampError> {
    let invalid = || TimestampError::Invalid(s.to_string());
    let bytes = s.as_bytes();
    // Split into the leading timestamp and up to two signed deltas.
    let mut cuts: Vec<usize> = Vec::with_capacity(2);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'+' || b == b'-' {
            cuts.push(i);
        }
    }
    if cuts.len() > 2 {
        return Err(invalid());
    }
    let first_end = cuts.first().copied().unwrap_or(s.len());
    let t1 = Timestamp::parse(&s[..first_end])?;
    let mut deltas: Vec<i128> = Vec::with_capacity(2);
    for (k, &start) in cuts.iter().enumerate() {
        let end = cuts.get(k + 1).copied().unwrap_or(s.len());
        let digits = &s[start + 1..end];
        if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(invalid());
        }
        let v = i128::from(u64::from_str_radix(digits, 16).map_err(|_| invalid())?);
        deltas.push(if bytes[start] == b'-' { -v } else { v });
    }
    let apply = |base: Timestamp, delta: Option<&i128>| -> Result<Timestamp, TimestampError> {
        match delta {
            None | Some(0) => Ok(base),
            Some(&d) => {
                let raw = i128::from(base.raw) + d;
                if raw < 0 || raw >= i128::from(MAX_SECONDS * UNITS_PER_SEC) {
                    return Err(TimestampError::OutOfRange(s.to_string()));
                }
                Ok(Timestamp::from_raw(raw as u64))
            }
        }
    };
    let t2 = apply(t1, deltas.first())?;
    let t3 = apply(t2, deltas.get(1))?;
    Ok((t1, t2, t3))
}

/// Decimal seconds to 10 µs units, exact, rounding half-to-even at the sixth decimal.
fn parse_decimal_seconds(s: &str) -> Option<u64> {
    let (int_part, frac_part) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let int_digits = int_part.trim_start_matches('0');
    if int_digits.len() > 11 {
        return None;
    }
    let secs: u64 = if int_digits.is_empty() {
        0
    } else {
        int_digits.parse().ok()?
    };
    let frac = frac_part.as_bytes();
    let mut units: u64 = 0;
    for i in 0..5 {
        units = units * 10 + frac.get(i).map_or(0, |d| u64::from(d - b'0'));
    }
    // Rounding: look at the remaining digits beyond the fifth.
    let rest = if frac.len() > 5 { &frac[5..] } else { &[][..] };
    if let Some(&first) = rest.first() {
        let tail_nonzero = rest[1..].iter().any(|&d| d != b'0');
        let round_up = match first {
            b'6'..=b'9' => true,
            b'5' => tail_nonzero || units % 2 == 1,
            _ => false,
        };
        if round_up {
            units += 1;
        }
    }
    secs.checked_mul(UNITS_PER_SEC)?.checked_add(units)
}

impl fmt::Display for Timestamp {
    /// The internal form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.internal())
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let t = Timestamp::parse("1700000000").unwrap();
        assert_eq!(t.normal(), "1700000000.00000");
        assert_eq!(t.internal(), "1700000000.00000");
        let t = Timestamp::parse("1.5").unwrap();
        assert_eq!(t.normal(), "0000000001.50000");
        let t = t.with_offset(2);
        assert_eq!(t.internal(), "0000000001.50000_0000000000000002");
        assert_eq!(t.short(), "0000000001.50000_2");
        assert_eq!(Timestamp::parse(&t.internal()).unwrap(), t);
    }

    #[test]
    fn rounds_half_to_even_at_sixth_decimal() {
        assert_eq!(Timestamp::parse("1.000005").unwrap().raw, 100_000);
        assert_eq!(Timestamp::parse("1.000015").unwrap().raw, 100_002);
        assert_eq!(Timestamp::parse("1.0000051").unwrap().raw, 100_001);
        assert_eq!(Timestamp::parse("1.000016").unwrap().raw, 100_002);
        assert_eq!(Timestamp::parse("1.123456").unwrap().raw, 112_346);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "abc",
            "-1",
            "1_2_3",
            "1_",
            "1_xyz",
            "1_00000000000000001",
            "1e5",
            "10000000000",
            ".",
            "1.2.3",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
        assert!(Timestamp::parse_normal("1_1").is_err());
    }

    #[test]
    fn orders_on_raw_then_offset() {
        let a = Timestamp::parse("1.00001").unwrap();
        let b = a.with_offset(1);
        let c = Timestamp::parse("1.00002").unwrap();
        assert!(a < b && b < c);
        assert!(a.internal() < b.internal() && b.internal() < c.internal());
    }

    #[test]
    fn last_modified_is_ceiling() {
        let t = Timestamp::parse("1700000000.00001").unwrap();
        assert_eq!(t.http_date(), "Tue, 14 Nov 2023 22:13:21 GMT");
        let t = Timestamp::parse("1700000000").unwrap();
        assert_eq!(t.http_date(), "Tue, 14 Nov 2023 22:13:20 GMT");
    }

    #[test]
    fn iso_listing_form() {
        let t = Timestamp::parse("1700000000.00001").unwrap();
        assert_eq!(t.iso_listing(), "2023-11-14T22:13:20.000010");
        assert_eq!(
            Timestamp::parse("1700000000.12345").unwrap().iso_listing(),
            "2023-11-14T22:13:20.123450"
        );
        assert_eq!(Timestamp::ZERO.iso_listing(), "1970-01-01T00:00:00.000000");
        assert_eq!(
            Timestamp::parse("951782400").unwrap().iso_listing(),
            "2000-02-29T00:00:00.000000"
        );
        assert_eq!(
            Timestamp::parse("9999999999.99999").unwrap().iso_listing(),
            "2286-11-20T17:46:39.999990"
        );
        // offsets do not show
        assert_eq!(t.with_offset(5).iso_listing(), "2023-11-14T22:13:20.000010");
        // Rounded on parse (half-to-even at the 6th decimal), rendered exactly.
        assert_eq!(
            Timestamp::parse("1.999995").unwrap().iso_listing(),
            "1970-01-01T00:00:02.000000"
        );
    }

    #[test]
    fn triple_encoding() {
        let t = |s: &str| Timestamp::parse(s).unwrap();
        let d = t("1700000000");
        let c = t("1700000001");
        assert_eq!(encode_triple(d, c, c, false), "1700000000.00000+186a0");
        assert_eq!(encode_triple(d, d, d, false), "1700000000.00000");
        assert_eq!(encode_triple(d, d, d, true), "1700000000.00000+0+0");
        assert_eq!(encode_triple(d, d, c, false), "1700000000.00000+0+186a0");
        assert_eq!(
            encode_triple(c, d, c, false),
            "1700000001.00000-186a0+186a0"
        );
        assert_eq!(
            encode_triple(d, t("1700000000.00031"), d, false),
            "1700000000.00000+1f-1f"
        );
        let o = d.with_offset(0x2a);
        assert_eq!(encode_triple(o, o, o, false), "1700000000.00000_2a");
        assert_eq!(decode_triple("1700000000.00000_2a").unwrap(), (o, o, o));
        assert_eq!(decode_triple("1700000000.00000+186a0").unwrap(), (d, c, c));
        assert_eq!(
            decode_triple("1700000000.00000+0+186a0").unwrap(),
            (d, d, c)
        );
        assert_eq!(
            decode_triple("1700000001.00000-186a0+186a0").unwrap(),
            (c, d, c)
        );
        // zero deltas keep the first offset; non-zero deltas drop it
        assert_eq!(decode_triple("1700000000.00000_2a+0").unwrap(), (o, o, o));
        assert_eq!(
            decode_triple("1700000000.00000_2a+1").unwrap(),
            (o, t("1700000000.00001"), t("1700000000.00001"))
        );
        for bad in [
            "",
            "+1",
            "1700000000.00000+",
            "1700000000.00000+1+2+3",
            "1700000000.00000+xyz",
            "1-99999999999999999",
            "1700000000.00000--1",
        ] {
            assert!(decode_triple(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn triple_roundtrip(a in 0u64..MAX_SECONDS * UNITS_PER_SEC, b in 0u64..MAX_SECONDS * UNITS_PER_SEC,
                            c in 0u64..MAX_SECONDS * UNITS_PER_SEC, off in 0u64..4, explicit: bool) {
            let (a, b, c) = (Timestamp { raw: a, offset: off }, Timestamp::from_raw(b), Timestamp::from_raw(c));
            let enc = encode_triple(a, b, c, explicit);
            let (x, y, z) = decode_triple(&enc).unwrap();
            proptest::prop_assert_eq!(x, a);
            proptest::prop_assert_eq!(y.raw, b.raw);
            proptest::prop_assert_eq!(z.raw, c.raw);
        }
    }
}
