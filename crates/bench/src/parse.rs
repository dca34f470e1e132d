//! Parsing of the command line's small languages: sizes (`4K`, `64MiB`), durations
//! (`30s`, `2m`) and operation mixes (`put=20,get=70,head=5,delete=5`).
//!
//! Every parser returns a one-line reason on bad input; `clap` prints it and exits 2.

use std::time::Duration;

use crate::Op;

/// Parse a byte size: a number (integer or decimal) and an optional unit.
///
/// Units follow `dd`: `K`, `M`, `G`, `T` and `KiB`, `MiB`, `GiB`, `TiB` are powers of
/// 1024; `KB`, `MB`, `GB`, `TB` are powers of 1000; `B` or nothing is bytes. Letters are
/// case-insensitive, so `4k` is 4096.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    if num.is_empty() {
        return Err(format!(
            "invalid size {s:?}: expected a number like 4K or 64MiB"
        ));
    }
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {unit:?} (use B, K, KiB, KB, M, MiB, MB, G, …)"
            ))
        }
    };
    if let Ok(n) = num.parse::<u64>() {
        return n
            .checked_mul(mult)
            .ok_or_else(|| format!("invalid size {s:?}: too large"));
    }
    let f: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: {num:?} is not a number"))?;
    let bytes = f * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("invalid size {s:?}: too large"));
    }
    if bytes.fract() != 0.0 {
        return Err(format!("invalid size {s:?}: not a whole number of bytes"));
    }
    Ok(bytes as u64)
}

/// Parse a duration: a number and an optional unit `ms`, `s` (the default), `m` or `h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 30s, 500ms, 2m"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" | "sec" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => {
            return Err(format!(
                "invalid duration {s:?}: unknown unit {u:?} (ms, s, m, h)"
            ))
        }
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 365.0 * 86400.0 {
        return Err(format!("invalid duration {s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// An operation mix: a weight per operation (`put=20,get=70,head=5,delete=5`).
///
/// Weights are non-negative integers; their sum must be positive. Operations left out
/// weigh 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    /// Weight per operation, indexed by [`Op::index`].
    pub weights: [u32; Op::COUNT],
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            weights: [20, 70, 5, 5, 0],
        }
    }
}

impl Mix {
    /// The weight of one operation.
    pub fn weight(&self, op: Op) -> u32 {
        self.weights[op.index()]
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for op in Op::ALL {
            let w = self.weight(op);
            if w > 0 {
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                write!(f, "{}={w}", op.name())?;
            }
        }
        Ok(())
    }
}

/// Parse a mix such as `put=20,get=70,head=5,delete=5` (also `list=N`).
pub fn parse_mix(s: &str) -> Result<Mix, String> {
    let mut weights = [0u32; Op::COUNT];
    let mut seen = [false; Op::COUNT];
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (name, w) = part
            .split_once(['=', ':'])
            .ok_or_else(|| format!("invalid mix {s:?}: {part:?} is not OP=WEIGHT"))?;
        let op = Op::from_name(name.trim()).ok_or_else(|| {
            format!("invalid mix {s:?}: unknown operation {name:?} (put, get, head, delete, list)")
        })?;
        let w: u32 = w
            .trim()
            .parse()
            .map_err(|_| format!("invalid mix {s:?}: weight {w:?} is not a whole number"))?;
        if seen[op.index()] {
            return Err(format!("invalid mix {s:?}: {} given twice", op.name()));
        }
        seen[op.index()] = true;
        weights[op.index()] = w;
    }
    if weights.iter().map(|&w| u64::from(w)).sum::<u64>() == 0 {
        return Err(format!("invalid mix {s:?}: the weights sum to 0"));
    }
    Ok(Mix { weights })
}

/// Format a byte count for people: `4.0 KiB`, `64.0 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("12B"), Ok(12));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("4KB"), Ok(4000));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("1.5K"), Ok(1536));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size(" 1 GiB "), Ok(1 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
    }

    #[test]
    fn bad_sizes() {
        for bad in [
            "",
            "K",
            "abc",
            "4X",
            "1.2.3K",
            "-4K",
            "0.5",
            "99999999999999999999T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_size("18446744073709551615T").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "0", "-1s", "3d", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn mixes() {
        let m = parse_mix("put=20,get=70,head=5,delete=5").unwrap();
        assert_eq!(m.weight(Op::Put), 20);
        assert_eq!(m.weight(Op::Get), 70);
        assert_eq!(m.weight(Op::Head), 5);
        assert_eq!(m.weight(Op::Delete), 5);
        assert_eq!(m.weight(Op::List), 0);
        assert_eq!(m, Mix::default());
        assert_eq!(m.to_string(), "put=20,get=70,head=5,delete=5");

        let m = parse_mix(" GET = 1 , list:3,").unwrap();
        assert_eq!(m.weight(Op::Get), 1);
        assert_eq!(m.weight(Op::List), 3);
        assert_eq!(m.weight(Op::Put), 0);
        assert_eq!(m.to_string(), "get=1,list=3");
    }

    #[test]
    fn bad_mixes() {
        for bad in [
            "",
            "put",
            "put=",
            "put=x",
            "put=-1",
            "post=3",
            "put=0,get=0",
            "put=1,put=2",
        ] {
            assert!(parse_mix(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(4096), "4.0 KiB");
        assert_eq!(human_bytes(64 << 20), "64.0 MiB");
    }
}
