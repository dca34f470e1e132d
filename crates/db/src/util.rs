//! Small shared helpers: the rolling hash, directory locks, durable renames, paths.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use crate::error::{DbError, Result};

/// The 32-zero starting value of the rolling hash.
pub const EMPTY_HASH: &str = "00000000000000000000000000000000";

/// `chexor(old, name, ts)`: XOR of `old` with MD5(`name-ts`) (`PROTOCOLS.md`, "chexor").
pub fn chexor(old_hex: &str, name: &str, ts: &str) -> Result<String, String> {
    let old = u128::from_str_radix(old_hex, 16).map_err(|_| format!("bad hash {old_hex:?}"))?;
    let mut h = Md5::new();
    h.update(name.as_bytes());
    h.update(b"-");
    h.update(ts.as_bytes());
    let d: [u8; 16] = h.finalize().into();
    Ok(format!("{:032x}", old ^ u128::from_be_bytes(d)))
}

/// `fsync` a directory (after a rename or a file creation in it).
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// An exclusive `flock` on a lock file, released on drop.
pub struct DirLock {
    file: File,
}

impl DirLock {
    /// Lock `dir/.lock` (creating it), waiting up to `timeout`.
    pub fn lock_dir(dir: &Path, timeout: Duration) -> Result<DirLock> {
        let path = dir.join(".lock");
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Self::lock_file(file, &path, timeout)
    }

    /// Lock an already open lock file.
    pub fn lock_file(file: File, path: &Path, timeout: Duration) -> Result<DirLock> {
        flock_timeout(&file, path, timeout)?;
        Ok(DirLock { file })
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // SAFETY: plain syscall on a valid fd owned by self.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Take an exclusive flock on `file`, polling up to `timeout`.
pub(crate) fn flock_timeout(file: &File, path: &Path, timeout: Duration) -> Result<()> {
    let fd = file.as_raw_fd();
    let start = Instant::now();
    let mut sleep = Duration::from_micros(100);
    loop {
        // SAFETY: plain syscall on a valid fd.
        let rc = unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => {}
            _ => return Err(err.into()),
        }
        if start.elapsed() >= timeout {
            return Err(DbError::LockTimeout(path.to_path_buf()));
        }
        std::thread::sleep(sleep);
        sleep = (sleep * 2).min(Duration::from_millis(10));
    }
}

/// Release a flock taken with [`flock_timeout`].
pub(crate) fn funlock(file: &File) {
    // SAFETY: plain syscall on a valid fd.
    unsafe {
        libc::flock(file.as_raw_fd(), libc::LOCK_UN);
    }
}

/// Seconds since the epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `DEVICES/DEV/<datadir>/PART/SUFFIX/HASH/HASH.db`; `datadir` is `containers` or `accounts`.
pub fn db_path(devices: &Path, device: &str, datadir: &str, part: u32, hash: &str) -> PathBuf {
    let suffix = hash.get(hash.len().saturating_sub(3)..).unwrap_or(hash);
    devices
        .join(device)
        .join(datadir)
        .join(part.to_string())
        .join(suffix)
        .join(hash)
        .join(format!("{hash}.db"))
}

/// The device name a DB file lives on, derived from its path
/// (`DEV/containers/PART/SUF/HASH/HASH.db` or `DEV/tmp/NAME`); empty if unknown.
pub(crate) fn device_of(db_file: &Path) -> String {
    let name = |p: Option<&Path>| {
        p.and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string()
    };
    let anc: Vec<&Path> = db_file.ancestors().collect();
    // anc[0] = file, anc[1] = HASH dir, anc[2] = SUFFIX, anc[3] = PART, anc[4] = datadir
    if anc.len() > 5
        && matches!(
            name(anc.get(4).copied()).as_str(),
            "containers" | "accounts"
        )
    {
        return name(anc.get(5).copied());
    }
    if anc.len() > 2 && name(anc.get(1).copied()) == "tmp" {
        return name(anc.get(2).copied());
    }
    String::new()
}

/// Split `text/plain;charset=utf-8;swift_bytes=12` into the content type without the
/// `swift_bytes` parameter (parameters re-joined as `;k=v`, like Swift's
/// `extract_swift_bytes`) and the `swift_bytes` value.
pub fn extract_swift_bytes(content_type: &str) -> (String, Option<String>) {
    let Some((base, params)) = content_type.split_once(';') else {
        return (content_type.to_string(), None);
    };
    let mut out = base.to_string();
    let mut swift_bytes = None;
    for param in split_params(params) {
        let (k, v) = match param.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (param.trim(), ""),
        };
        if k.is_empty() {
            continue;
        }
        if k == "swift_bytes" {
            swift_bytes = Some(v.to_string());
        } else {
            out.push(';');
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
    }
    (out, swift_bytes)
}

/// Split parameters at `;` outside double quotes.
fn split_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ';' if !in_quotes => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The smallest string greater than every string starting with `s` minus its last char:
/// `s[..-1] + chr(ord(s[-1]) + 1)` (Swift's marker bump). `None` if `s` is empty or its
/// last char is `char::MAX`.
pub(crate) fn bump_last_char(s: &str) -> Option<String> {
    let mut chars = s.chars();
    let last = chars.next_back()?;
    let mut next = last as u32 + 1;
    if (0xD800..0xE000).contains(&next) {
        next = 0xE000;
    }
    let c = char::from_u32(next)?;
    let mut out = chars.as_str().to_string();
    out.push(c);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chexor_is_xor() {
        let a = chexor(EMPTY_HASH, "o", "1700000000.00000").unwrap();
        assert_ne!(a, EMPTY_HASH);
        assert_eq!(chexor(&a, "o", "1700000000.00000").unwrap(), EMPTY_HASH);
        // md5("o-1700000000.00000")
        let mut h = Md5::new();
        h.update(b"o-1700000000.00000");
        let d: [u8; 16] = h.finalize().into();
        assert_eq!(a, format!("{:032x}", u128::from_be_bytes(d)));
    }

    #[test]
    fn swift_bytes() {
        assert_eq!(
            extract_swift_bytes("text/plain"),
            ("text/plain".into(), None)
        );
        assert_eq!(
            extract_swift_bytes("text/plain; charset=utf-8;swift_bytes=12"),
            ("text/plain;charset=utf-8".into(), Some("12".into()))
        );
        assert_eq!(
            extract_swift_bytes("a/b;swift_bytes=3"),
            ("a/b".into(), Some("3".into()))
        );
    }

    #[test]
    fn bump() {
        assert_eq!(bump_last_char("a/").as_deref(), Some("a0"));
        assert_eq!(bump_last_char("\u{d7ff}").as_deref(), Some("\u{e000}"));
        assert_eq!(bump_last_char(""), None);
    }

    #[test]
    fn device_from_path() {
        let p = Path::new("/srv/node/sdb1/containers/12/abc/HHHabc/HHHabc.db");
        assert_eq!(device_of(p), "sdb1");
        assert_eq!(device_of(Path::new("/srv/node/sdc/tmp/xyz")), "sdc");
        assert_eq!(device_of(Path::new("x.db")), "");
    }
}
