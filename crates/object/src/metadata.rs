//! Object metadata and its xattr codec (`PROTOCOLS.md`, "Metadata").
//!
//! One xattr `user.cairn.metadata` (continued in `user.cairn.metadata.1`, `.2`, … when the
//! value is over 64 KiB) holding
//! `b"CMD" | version u8 (=1) | CRC32C(body) u32 LE | body = postcard Vec<(String, String)>`.
//!
//! Note: ext4 without the `ea_inode` feature keeps all xattrs of an inode in one block
//! (≈ 4 KiB); a larger metadata set fails with ENOSPC there and maps to 507, as in Swift.

use std::fs::File;
use std::io;

use serde::{Deserialize, Serialize};
use xattr::FileExt;

use crate::error::{DiskError, Result};

/// The xattr holding the (first piece of the) metadata.
pub const XATTR_NAME: &str = "user.cairn.metadata";
/// Maximum bytes per xattr piece.
pub const XATTR_CHUNK: usize = 64 * 1024;
const MAGIC: &[u8; 3] = b"CMD";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 3 + 1 + 4;

/// An ordered list of `(key, value)` pairs; keys keep their HTTP capitalisation and are
/// looked up case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata(pub Vec<(String, String)>);

impl Metadata {
    pub fn new() -> Self {
        Metadata(Vec::new())
    }

    /// The value of `key` (case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Set `key` to `value`, replacing any existing entry with the same key in any case.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        if let Some(slot) = self
            .0
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(&key))
        {
            *slot = (key, value);
        } else {
            self.0.push((key, value));
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let idx = self
            .0
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(key))?;
        Some(self.0.remove(idx).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut md = Metadata::new();
        for (k, v) in iter {
            md.set(k, v);
        }
        md
    }
}

/// Encode metadata into the xattr value (before splitting).
pub fn encode(md: &Metadata) -> Vec<u8> {
    // postcard cannot fail on a Vec of Strings except for allocation.
    let body = postcard::to_allocvec(&md.0).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decode an xattr value; any defect is `DiskError::Corrupt`.
pub fn decode(bytes: &[u8]) -> Result<Metadata> {
    if bytes.len() < HEADER_LEN || &bytes[..3] != MAGIC {
        return Err(DiskError::Corrupt("metadata: bad magic".into()));
    }
    if bytes[3] != VERSION {
        return Err(DiskError::Corrupt(format!(
            "metadata: unknown version {}",
            bytes[3]
        )));
    }
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let body = &bytes[HEADER_LEN..];
    if crc32c::crc32c(body) != crc {
        return Err(DiskError::Corrupt("metadata: CRC mismatch".into()));
    }
    let (pairs, rest): (Vec<(String, String)>, &[u8]) = postcard::take_from_bytes(body)
        .map_err(|e| DiskError::Corrupt(format!("metadata: undecodable body: {e}")))?;
    if !rest.is_empty() {
        return Err(DiskError::Corrupt("metadata: trailing bytes".into()));
    }
    Ok(Metadata(pairs))
}

fn piece_name(i: usize) -> String {
    if i == 0 {
        XATTR_NAME.to_string()
    } else {
        format!("{XATTR_NAME}.{i}")
    }
}

fn is_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENOSYS))
}

/// Map an xattr error of a read: no support → 507; EIO/ENODATA → corrupt (quarantine).
fn read_err(e: io::Error) -> DiskError {
    if is_unsupported(&e) {
        DiskError::DiskUnavailable(format!("no xattr support: {e}"))
    } else if matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::ENODATA)) {
        DiskError::Corrupt(format!("metadata: read error: {e}"))
    } else {
        DiskError::Io(e)
    }
}

/// Write metadata to an open file's xattrs.
pub fn write_metadata(file: &File, md: &Metadata) -> Result<()> {
    let value = encode(md);
    for (i, piece) in value.chunks(XATTR_CHUNK).enumerate() {
        file.set_xattr(piece_name(i), piece).map_err(|e| {
            if is_unsupported(&e) {
                DiskError::DiskUnavailable(format!("no xattr support: {e}"))
            } else if matches!(
                e.raw_os_error(),
                Some(libc::ENOSPC) | Some(libc::E2BIG) | Some(libc::EDQUOT)
            ) {
                DiskError::DiskFull(format!("metadata xattr of {} bytes: {e}", value.len()))
            } else {
                DiskError::Io(e)
            }
        })?;
    }
    Ok(())
}

/// Read metadata from an open file's xattrs. A missing or damaged value is
/// `DiskError::Corrupt`.
pub fn read_metadata(file: &File) -> Result<Metadata> {
    let mut value = file
        .get_xattr(XATTR_NAME)
        .map_err(read_err)?
        .ok_or_else(|| DiskError::Corrupt("metadata: xattr missing".into()))?;
    let mut i = 1;
    while value.len() == XATTR_CHUNK * i {
        match file.get_xattr(piece_name(i)).map_err(read_err)? {
            Some(piece) => value.extend_from_slice(&piece),
            None => break,
        }
        i += 1;
    }
    decode(&value)
}

/// Probe whether the file system under `dir` supports user xattrs (creates and removes a
/// small file). `Ok(false)` means "no support" (→ 507).
pub fn probe_xattr_support(dir: &std::path::Path) -> io::Result<bool> {
    let (f, path) = cairn_common::fs::create_tmp_file(dir, "xattr-probe")?;
    let res = match f.set_xattr(XATTR_NAME, b"probe") {
        Ok(()) => Ok(true),
        Err(e) if is_unsupported(&e) => Ok(false),
        Err(e) => Err(e),
    };
    drop(f);
    let _ = std::fs::remove_file(&path);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_lookup() {
        let md: Metadata = [
            ("name", "/a/c/o"),
            ("X-Timestamp", "1700000000.00000"),
            ("Content-Length", "3"),
        ]
        .into_iter()
        .collect();
        assert_eq!(md.get("x-timestamp"), Some("1700000000.00000"));
        let enc = encode(&md);
        assert_eq!(&enc[..4], b"CMD\x01");
        assert_eq!(decode(&enc).unwrap(), md);
    }

    #[test]
    fn corrupt_values_are_detected() {
        let md: Metadata = [("name", "/a/c/o")].into_iter().collect();
        let enc = encode(&md);
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 0x40;
            assert!(
                matches!(decode(&bad), Err(DiskError::Corrupt(_))),
                "byte {i}"
            );
        }
        assert!(decode(&enc[..enc.len() - 1]).is_err());
        assert!(decode(b"").is_err());
        let mut long = enc.clone();
        long.push(0);
        assert!(decode(&long).is_err());
    }

    #[test]
    fn xattr_roundtrip_on_this_fs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(probe_xattr_support(dir.path()).unwrap());
        let (f, _p) = cairn_common::fs::create_tmp_file(dir.path(), "t").unwrap();
        assert!(matches!(read_metadata(&f), Err(DiskError::Corrupt(_))));
        let md: Metadata = [
            ("name", "/a/c/o"),
            ("X-Object-Meta-K", "v".repeat(1000).as_str()),
        ]
        .into_iter()
        .collect();
        write_metadata(&f, &md).unwrap();
        assert_eq!(read_metadata(&f).unwrap(), md);
        f.set_xattr(XATTR_NAME, b"CMD\x01garbage").unwrap();
        assert!(matches!(read_metadata(&f), Err(DiskError::Corrupt(_))));
    }
}
