//! The envelope shared by ring files (`NAME.ring`) and builder files (`NAME.builder`).
//!
//! Layout (little-endian, `PROTOCOLS.md`, "Cairn ring files"):
//!
//! ```text
//! offset  size  field
//! 0       8     magic  b"CAIRNRNG" (ring) / b"CAIRNBLD" (builder)
//! 8       2     format version (u16, currently 1)
//! 10      2     flags (bit0: body zstd-compressed)
//! 12      8     body length (u64)
//! 20      32    SHA-256 of the body as stored
//! 52      n     body: postcard-serialised struct, optionally zstd
//! ```
//!
//! Writes are crash-safe: temp file in the same directory, fsync, rename, fsync the directory.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub const RING_MAGIC: &[u8; 8] = b"CAIRNRNG";
pub const BUILDER_MAGIC: &[u8; 8] = b"CAIRNBLD";
pub const FORMAT_VERSION: u16 = 1;
const FLAG_ZSTD: u16 = 1;
const HEADER_LEN: usize = 52;
const ZSTD_LEVEL: i32 = 3;

/// Why a ring or builder file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: not a Cairn {1} file (bad magic)")]
    BadMagic(String, &'static str),
    #[error(
        "{0}: format version {1} is newer than this binary understands (max {FORMAT_VERSION})"
    )]
    UnsupportedVersion(String, u16),
    #[error("{0}: truncated file")]
    Truncated(String),
    #[error("{0}: checksum mismatch (file is corrupt)")]
    Checksum(String),
    #[error("{0}: undecodable body: {1}")]
    Decode(String, String),
    #[error("encoding failed: {0}")]
    Encode(String),
}

fn kind_of(magic: &[u8; 8]) -> &'static str {
    if magic == RING_MAGIC {
        "ring"
    } else {
        "builder"
    }
}

/// Serialise `value` into the envelope bytes.
pub fn encode<T: Serialize>(
    magic: &[u8; 8],
    value: &T,
    compress: bool,
) -> Result<Vec<u8>, FileError> {
    let plain = postcard::to_stdvec(value).map_err(|e| FileError::Encode(e.to_string()))?;
    let (body, flags) = if compress {
        let packed = zstd::bulk::compress(&plain, ZSTD_LEVEL)
            .map_err(|e| FileError::Encode(e.to_string()))?;
        (packed, FLAG_ZSTD)
    } else {
        (plain, 0)
    };
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&body));
    out.extend_from_slice(&body);
    Ok(out)
}

/// Check and decode envelope bytes; `name` is only used in error messages.
pub fn decode<T: DeserializeOwned>(
    magic: &[u8; 8],
    bytes: &[u8],
    name: &str,
) -> Result<T, FileError> {
    if bytes.len() < HEADER_LEN {
        if bytes.len() >= 8 && &bytes[..8] != magic {
            return Err(FileError::BadMagic(name.to_string(), kind_of(magic)));
        }
        return Err(FileError::Truncated(name.to_string()));
    }
    if &bytes[..8] != magic {
        return Err(FileError::BadMagic(name.to_string(), kind_of(magic)));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != FORMAT_VERSION {
        return Err(FileError::UnsupportedVersion(name.to_string(), version));
    }
    let flags = u16::from_le_bytes([bytes[10], bytes[11]]);
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[12..20]);
    let body_len = u64::from_le_bytes(len_bytes);
    let body = &bytes[HEADER_LEN..];
    if (body.len() as u64) < body_len {
        return Err(FileError::Truncated(name.to_string()));
    }
    if body.len() as u64 != body_len {
        return Err(FileError::Checksum(name.to_string()));
    }
    if Sha256::digest(body).as_slice() != &bytes[20..52] {
        return Err(FileError::Checksum(name.to_string()));
    }
    let plain;
    let body = if flags & FLAG_ZSTD != 0 {
        plain = zstd::stream::decode_all(body)
            .map_err(|e| FileError::Decode(name.to_string(), e.to_string()))?;
        &plain[..]
    } else {
        body
    };
    postcard::from_bytes(body).map_err(|e| FileError::Decode(name.to_string(), e.to_string()))
}

/// Read and decode a file.
pub fn read_file<T: DeserializeOwned>(magic: &[u8; 8], path: &Path) -> Result<T, FileError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| FileError::Io {
        path: name.clone(),
        source,
    })?;
    decode(magic, &bytes, &name)
}

/// Encode and write a file crash-safely (temp, fsync, rename, fsync dir).
pub fn write_file<T: Serialize>(
    magic: &[u8; 8],
    path: &Path,
    value: &T,
    compress: bool,
) -> Result<(), FileError> {
    let bytes = encode(magic, value, compress)?;
    write_atomic(path, &bytes)
}

/// Write `bytes` to `path` so that a crash leaves either the old or the new file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let io = |source| FileError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io)?;
    // Temp files are created 0600; rings and builders are read by every server's user.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        a: u32,
        b: Vec<u16>,
    }

    fn sample() -> Sample {
        Sample {
            a: 7,
            b: (0..1000).collect(),
        }
    }

    #[test]
    fn round_trips_with_and_without_compression() {
        for compress in [false, true] {
            let bytes = encode(RING_MAGIC, &sample(), compress).unwrap();
            let back: Sample = decode(RING_MAGIC, &bytes, "x").unwrap();
            assert_eq!(back, sample());
        }
    }

    #[test]
    fn rejects_wrong_magic_version_truncation_and_corruption() {
        let bytes = encode(RING_MAGIC, &sample(), true).unwrap();
        assert!(matches!(
            decode::<Sample>(BUILDER_MAGIC, &bytes, "x"),
            Err(FileError::BadMagic(..))
        ));
        let mut newer = bytes.clone();
        newer[8] = 9;
        assert!(matches!(
            decode::<Sample>(RING_MAGIC, &newer, "x"),
            Err(FileError::UnsupportedVersion(..))
        ));
        for cut in [0, 10, 51, bytes.len() - 1] {
            assert!(matches!(
                decode::<Sample>(RING_MAGIC, &bytes[..cut], "x"),
                Err(FileError::Truncated(..))
            ));
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            decode::<Sample>(RING_MAGIC, &flipped, "x"),
            Err(FileError::Checksum(..))
        ));
    }

    #[test]
    fn atomic_write_replaces_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.ring");
        write_file(RING_MAGIC, &path, &sample(), true).unwrap();
        let back: Sample = read_file(RING_MAGIC, &path).unwrap();
        assert_eq!(back, sample());
    }
}
