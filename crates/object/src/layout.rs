//! On-disk layout and file names (`PROTOCOLS.md`, "Layout", "Files in a hash directory").
//!
//! ```text
//! DEVICES/DEV/objects[-N]/PART/SUFFIX/HASH/TIMESTAMP.{data,ts,meta}
//! DEVICES/DEV/objects[-N]/PART/{hashes.cache,hashes.invalid,.lock}
//! DEVICES/DEV/tmp[-N]/, async_pending[-N]/SUFFIX/HASH-TIMESTAMP, quarantined/objects[-N]/HASH
//! ```

use std::path::{Path, PathBuf};

use cairn_common::timestamp::{decode_triple, encode_triple};
use cairn_common::Timestamp;

pub const HASHES_CACHE: &str = "hashes.cache";
pub const HASHES_INVALID: &str = "hashes.invalid";
pub const PART_LOCK: &str = ".lock";

/// `base` for policy 0, `base-N` for N > 0 (`objects-1`, `tmp-1`, `async_pending-1`).
pub fn policy_dir_name(base: &str, policy: u32) -> String {
    if policy == 0 {
        base.to_string()
    } else {
        format!("{base}-{policy}")
    }
}

/// Parse `objects`, `objects-3`, … back into a policy index for the given base.
pub fn parse_policy_dir_name(base: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(base)?;
    if rest.is_empty() {
        return Some(0);
    }
    let n = rest.strip_prefix('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0'))
    {
        return None;
    }
    n.parse().ok().filter(|&p| p > 0)
}

/// Is `s` a 32-lowercase-hex-digit hash?
pub fn is_valid_hash(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Is `s` a 3-lowercase-hex-digit suffix?
pub fn is_valid_suffix(s: &str) -> bool {
    s.len() == 3
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The directories of one storage policy on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPaths {
    /// `DEVICES/DEV`.
    pub device: PathBuf,
    pub policy: u32,
}

impl PolicyPaths {
    pub fn new(device: impl Into<PathBuf>, policy: u32) -> Self {
        PolicyPaths {
            device: device.into(),
            policy,
        }
    }

    pub fn objects_dir(&self) -> PathBuf {
        self.device.join(policy_dir_name("objects", self.policy))
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.device.join(policy_dir_name("tmp", self.policy))
    }
    pub fn async_dir(&self) -> PathBuf {
        self.device
            .join(policy_dir_name("async_pending", self.policy))
    }
    pub fn quarantine_dir(&self) -> PathBuf {
        self.device
            .join("quarantined")
            .join(policy_dir_name("objects", self.policy))
    }
    pub fn partition_dir(&self, part: u32) -> PathBuf {
        self.objects_dir().join(part.to_string())
    }
    pub fn suffix_dir(&self, part: u32, suffix: &str) -> PathBuf {
        self.partition_dir(part).join(suffix)
    }
    /// `objects[-N]/PART/SUFFIX/HASH` (`hash` must be a valid hash).
    pub fn hash_dir(&self, part: u32, hash: &str) -> PathBuf {
        self.suffix_dir(part, cairn_common::suffix_of(hash))
            .join(hash)
    }
}

/// The three kinds of files of a hash directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    Data,
    Ts,
    Meta,
}

impl FileKind {
    pub fn ext(self) -> &'static str {
        match self {
            FileKind::Data => ".data",
            FileKind::Ts => ".ts",
            FileKind::Meta => ".meta",
        }
    }
}

/// A parsed hash-directory file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDiskName {
    pub name: String,
    pub kind: FileKind,
    /// The file's own timestamp (for `.meta`: the POST time).
    pub ts: Timestamp,
    /// `.meta` only: the content-type timestamp when the name carries `±D`.
    pub ctype_ts: Option<Timestamp>,
}

/// Parse `T.data`, `T.ts`, `T.meta` or `T±D.meta`; `None` for any other name.
pub fn parse_file_name(name: &str) -> Option<OnDiskName> {
    let (stem, kind) = if let Some(s) = name.strip_suffix(".data") {
        (s, FileKind::Data)
    } else if let Some(s) = name.strip_suffix(".ts") {
        (s, FileKind::Ts)
    } else if let Some(s) = name.strip_suffix(".meta") {
        (s, FileKind::Meta)
    } else {
        return None;
    };
    if stem.is_empty() {
        return None;
    }
    let (ts, ctype_ts) = if kind == FileKind::Meta && stem.contains(['+', '-']) {
        let (t1, t2, _) = decode_triple(stem).ok()?;
        (t1, Some(t2))
    } else {
        (Timestamp::parse(stem).ok()?, None)
    };
    Some(OnDiskName {
        name: name.to_string(),
        kind,
        ts,
        ctype_ts,
    })
}

/// The file name for a write of `kind` at `ts`. A `.meta` that carries a content type
/// gets its content-type timestamp encoded as `T±D` (`T+0` when equal, so that the name
/// alone says the `.meta` carries a content type).
pub fn make_file_name(kind: FileKind, ts: Timestamp, ctype_ts: Option<Timestamp>) -> String {
    match (kind, ctype_ts) {
        (FileKind::Meta, Some(c)) => {
            let mut stem = encode_triple(ts, c, c, false);
            if c.raw == ts.raw {
                stem.push_str("+0");
            }
            format!("{stem}.meta")
        }
        _ => format!("{}{}", ts.internal(), kind.ext()),
    }
}

/// Split a stored `name` (`/ACCT/CONT/OBJ`) into its parts.
pub fn split_object_name(name: &str) -> Option<(&str, &str, &str)> {
    let rest = name.strip_prefix('/')?;
    let (a, rest) = rest.split_once('/')?;
    let (c, o) = rest.split_once('/')?;
    if a.is_empty() || c.is_empty() || o.is_empty() {
        return None;
    }
    Some((a, c, o))
}

/// `DEVICES/DEV` for a device name (the name must be one path component).
pub fn device_path(devices: &Path, dev: &str) -> Option<PathBuf> {
    if dev.is_empty() || dev == "." || dev == ".." || dev.contains('/') || dev.contains('\0') {
        return None;
    }
    Some(devices.join(dev))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn policy_dirs() {
        assert_eq!(policy_dir_name("objects", 0), "objects");
        assert_eq!(policy_dir_name("tmp", 2), "tmp-2");
        assert_eq!(parse_policy_dir_name("objects", "objects"), Some(0));
        assert_eq!(parse_policy_dir_name("objects", "objects-12"), Some(12));
        for bad in [
            "objects-",
            "objects-0",
            "objects-01",
            "objectsx",
            "objects-a",
            "tmp",
        ] {
            assert_eq!(parse_policy_dir_name("objects", bad), None, "{bad}");
        }
        let p = PolicyPaths::new("/srv/node/sdb1", 1);
        assert_eq!(
            p.hash_dir(7, "0123456789abcdef0123456789abcfed"),
            Path::new("/srv/node/sdb1/objects-1/7/fed/0123456789abcdef0123456789abcfed")
        );
        assert_eq!(
            p.quarantine_dir(),
            Path::new("/srv/node/sdb1/quarantined/objects-1")
        );
        assert_eq!(p.async_dir(), Path::new("/srv/node/sdb1/async_pending-1"));
    }

    #[test]
    fn file_names() {
        let t = ts("1700000000.00000");
        let n = parse_file_name("1700000000.00000.data").unwrap();
        assert_eq!((n.kind, n.ts, n.ctype_ts), (FileKind::Data, t, None));
        let n = parse_file_name("1700000000.00000_0000000000000002.ts").unwrap();
        assert_eq!((n.kind, n.ts), (FileKind::Ts, t.with_offset(2)));
        let n = parse_file_name("1700000001.00000-186a0.meta").unwrap();
        assert_eq!((n.ts, n.ctype_ts), (ts("1700000001"), Some(t)));
        let n = parse_file_name("1700000001.00000+0.meta").unwrap();
        assert_eq!(n.ctype_ts, Some(ts("1700000001")));
        let n = parse_file_name("1700000001.00000.meta").unwrap();
        assert_eq!(n.ctype_ts, None);
        for bad in [
            "x.data",
            ".data",
            "1700000000.00000.dat",
            "1700000000.00000-zz.meta",
            "1-1.data",
            "hashes.cache",
        ] {
            assert!(parse_file_name(bad).is_none(), "{bad}");
        }
        assert_eq!(
            make_file_name(FileKind::Data, t, None),
            "1700000000.00000.data"
        );
        assert_eq!(
            make_file_name(FileKind::Meta, ts("1700000001"), Some(t)),
            "1700000001.00000-186a0.meta"
        );
        assert_eq!(
            make_file_name(FileKind::Meta, t, Some(t)),
            "1700000000.00000+0.meta"
        );
        assert_eq!(
            make_file_name(FileKind::Meta, t, None),
            "1700000000.00000.meta"
        );
        for name in ["1700000001.00000-186a0.meta", "1700000000.00000+0.meta"] {
            let n = parse_file_name(name).unwrap();
            assert_eq!(make_file_name(n.kind, n.ts, n.ctype_ts), name);
        }
    }

    #[test]
    fn names() {
        assert_eq!(split_object_name("/a/c/o/x"), Some(("a", "c", "o/x")));
        assert_eq!(split_object_name("/a/c/"), None);
        assert_eq!(split_object_name("a/c/o"), None);
        assert!(device_path(Path::new("/srv"), "..").is_none());
        assert!(is_valid_hash("0123456789abcdef0123456789abcdef"));
        assert!(!is_valid_hash("0123456789ABCDEF0123456789abcdef"));
        assert!(is_valid_suffix("a1f") && !is_valid_suffix("a1"));
    }
}
