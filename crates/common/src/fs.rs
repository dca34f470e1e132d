//! Durable file-system helpers shared by the object and DB layers (`shared/DESIGN.md`,
//! "Disk writes are crash-safe"): write to a temporary file on the same device, `fsync`
//! it, `rename` it into place and `fsync` the directory, so that a crash never leaves a
//! partial file visible.
//!
//! Everything here is blocking: call it from `spawn_blocking` or a per-device pool.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `fsync` a directory so that entries created, renamed or removed in it are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    let f = File::open(dir)?;
    f.sync_all()
}

/// `fdatasync` an open file.
pub fn fdatasync(file: &File) -> io::Result<()> {
    file.sync_data()
}

/// A name for a temporary file that no other process or thread of this host picks:
/// `.{prefix}{pid}.{nanos}.{counter}.tmp`.
pub fn unique_tmp_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(".{prefix}{}.{nanos:x}.{n}.tmp", std::process::id())
}

/// Create a new, unique temporary file in `dir` (which must exist), opened for writing.
pub fn create_tmp_file(dir: &Path, prefix: &str) -> io::Result<(File, PathBuf)> {
    loop {
        let path = dir.join(unique_tmp_name(prefix));
        match OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
        {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `mkdir -p` that makes the new directories durable: returns the directories it
/// created (outermost first) after `fsync`ing each created directory's parent.
pub fn create_dir_all_durable(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cur = dir;
    loop {
        match fs::metadata(cur) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a directory", cur.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(cur.to_path_buf());
                match cur.parent() {
                    Some(p) => cur = p,
                    None => break,
                }
            }
            Err(e) => return Err(e),
        }
    }
    missing.reverse();
    let mut created = Vec::new();
    for d in &missing {
        match fs::create_dir(d) {
            Ok(()) => created.push(d.clone()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    for d in &created {
        if let Some(parent) = d.parent() {
            fsync_dir(parent)?;
        }
    }
    Ok(created)
}

/// `rename(from, to)` then `fsync` the destination directory (and the source directory
/// when it differs, so the old entry's removal is durable too).
pub fn rename_durable(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    let to_dir = to.parent().unwrap_or(Path::new("."));
    fsync_dir(to_dir)?;
    if let Some(from_dir) = from.parent() {
        if from_dir != to_dir {
            fsync_dir(from_dir)?;
        }
    }
    Ok(())
}

/// Write `data` to `path` durably: a temp file in `tmp_dir` (default: `path`'s directory;
/// must be on the same file system), `fsync`, `rename`, `fsync` of the directory.
pub fn write_file_durable(path: &Path, tmp_dir: Option<&Path>, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp_dir = tmp_dir.unwrap_or(dir);
    let (mut f, tmp) = create_tmp_file(tmp_dir, "w")?;
    let res = (|| {
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        rename_durable(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Remove a file and `fsync` its directory. A missing file is not an error.
pub fn remove_file_durable(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// Preallocate `len` bytes without changing the file size (`FALLOC_FL_KEEP_SIZE`).
/// File systems that cannot preallocate are silently accepted; `ENOSPC` is returned.
pub fn fallocate_keep_size(file: &File, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let Ok(len) = libc::off_t::try_from(len) else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    // SAFETY: plain syscall on a valid, owned file descriptor.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) => Ok(()),
        _ => Err(err),
    }
}

/// Free and total bytes of the file system holding `path` (`statvfs`, as seen by an
/// unprivileged user).
pub fn fs_space(path: &Path) -> io::Result<(u64, u64)> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

/// `fallocate_reserve` (Swift's `config_fallocate_value`): the free space a device keeps
/// for itself, as bytes (`"1073741824"`) or a percentage of its size (`"1%"`). Writes that
/// would leave less answer 507, so a full disk still has room for deletes, replication
/// out of it and SQLite's own journal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FallocateReserve {
    Bytes(u64),
    /// 0 to 100 (100 refuses every write: draining a device).
    Percent(f64),
}

impl Default for FallocateReserve {
    /// Swift's default, `"1%"`.
    fn default() -> Self {
        FallocateReserve::Percent(1.0)
    }
}

impl FallocateReserve {
    /// No reserve: never refuse.
    pub const NONE: FallocateReserve = FallocateReserve::Bytes(0);

    /// Parse a config value; `key` names it in the error (`"object-server.fallocate_reserve"`).
    pub fn parse(key: &str, value: &str) -> Result<Self, String> {
        let v = value.trim();
        let parsed = match v.strip_suffix('%') {
            Some(n) => n
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| p.is_finite() && (0.0..=100.0).contains(p))
                .map(FallocateReserve::Percent),
            None => v.parse::<u64>().ok().map(FallocateReserve::Bytes),
        };
        parsed.ok_or_else(|| {
            format!(
                "{key} must be a number of bytes like \"1073741824\" or a percentage from 0 to \
                 100 like \"1%\", not {value:?}"
            )
        })
    }

    /// The bytes to keep free on a file system of `total` bytes.
    pub fn reserved_bytes(self, total: u64) -> u64 {
        match self {
            FallocateReserve::Bytes(b) => b,
            FallocateReserve::Percent(p) => (total as f64 * p / 100.0).ceil() as u64,
        }
    }

    /// Would writing `needed` more bytes on the file system of `path` go below the
    /// reserve? `Ok(Some(reason))` when it would. Blocking (`statvfs`).
    pub fn shortfall(self, path: &Path, needed: u64) -> io::Result<Option<String>> {
        if self.reserved_bytes(u64::MAX) == 0 {
            return Ok(None); // no statvfs when there is nothing to keep
        }
        let (free, total) = fs_space(path)?;
        let reserve = self.reserved_bytes(total);
        Ok((free.saturating_sub(needed) < reserve)
            .then(|| format!("{free} bytes free, {needed} requested, reserve {reserve}")))
    }
}

/// Is `path` a mount point (a directory on a different device than its parent, or `/`)?
pub fn is_mount(path: &Path) -> io::Result<bool> {
    let m = fs::symlink_metadata(path)?;
    if !m.is_dir() {
        return Ok(false);
    }
    let parent = path.join("..");
    let p = fs::metadata(&parent)?;
    Ok(m.dev() != p.dev() || m.ino() == p.ino())
}

/// Is this error "no space left" (`ENOSPC`, `EDQUOT`)?
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Is this error "not a directory" / "not found"? (a vanished or replaced directory)
pub fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// An exclusive `flock` held until drop.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Lock `path` (created if missing) exclusively, polling for at most `timeout`.
    /// Returns `ErrorKind::TimedOut` when the lock stays busy.
    pub fn acquire(path: &Path, timeout: Duration) -> io::Result<FileLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)?;
        let deadline = Instant::now() + timeout;
        let mut sleep = Duration::from_micros(100);
        loop {
            // SAFETY: flock on a valid, owned descriptor.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(FileLock { file });
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK)
                && err.kind() != io::ErrorKind::Interrupted
            {
                return Err(err);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("timed out locking {}", path.display()),
                ));
            }
            std::thread::sleep(sleep);
            sleep = (sleep * 2).min(Duration::from_millis(10));
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: unlock our own descriptor; closing it would release the lock anyway.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Age of a file from its modification time (zero if in the future).
pub fn file_age(meta: &fs::Metadata) -> Duration {
    meta.modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_write_and_mkdirs() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        let created = create_dir_all_durable(&deep).unwrap();
        assert_eq!(created.len(), 3);
        assert!(create_dir_all_durable(&deep).unwrap().is_empty());
        let p = deep.join("f");
        write_file_durable(&p, None, b"hello").unwrap();
        write_file_durable(&p, Some(dir.path()), b"world").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"world");
        // no temp files left behind
        assert_eq!(fs::read_dir(&deep).unwrap().count(), 1);
        remove_file_durable(&p).unwrap();
        remove_file_durable(&p).unwrap();
    }

    #[test]
    fn lock_excludes_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".lock");
        let l = FileLock::acquire(&p, Duration::from_millis(10)).unwrap();
        let e = FileLock::acquire(&p, Duration::from_millis(20)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(l);
        FileLock::acquire(&p, Duration::from_millis(10)).unwrap();
    }

    #[test]
    fn space_and_fallocate() {
        let dir = tempfile::tempdir().unwrap();
        let (free, total) = fs_space(dir.path()).unwrap();
        assert!(total >= free && total > 0);
        let (f, _p) = create_tmp_file(dir.path(), "x").unwrap();
        fallocate_keep_size(&f, 1 << 20).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 0);
        assert!(is_mount(Path::new("/")).unwrap());
    }

    #[test]
    fn fallocate_reserve_parses_bytes_and_percent() {
        let parse = |v| FallocateReserve::parse("t.fallocate_reserve", v);
        assert_eq!(parse("1%"), Ok(FallocateReserve::Percent(1.0)));
        assert_eq!(parse(" 2.5 % "), Ok(FallocateReserve::Percent(2.5)));
        assert_eq!(parse("100%"), Ok(FallocateReserve::Percent(100.0)));
        assert_eq!(parse("1048576"), Ok(FallocateReserve::Bytes(1 << 20)));
        assert_eq!(parse("0"), Ok(FallocateReserve::NONE));
        for bad in ["", "%", "-1%", "101%", "nan%", "1.5", "-3", "1 GB", "10x"] {
            let e = parse(bad).unwrap_err();
            assert!(e.starts_with("t.fallocate_reserve must be"), "{bad:?}: {e}");
        }
        assert_eq!(FallocateReserve::default(), FallocateReserve::Percent(1.0));
        assert_eq!(FallocateReserve::Percent(10.0).reserved_bytes(1000), 100);
        assert_eq!(FallocateReserve::Bytes(7).reserved_bytes(1000), 7);
    }

    #[test]
    fn fallocate_reserve_shortfall() {
        let dir = tempfile::tempdir().unwrap();
        let none = FallocateReserve::NONE;
        assert_eq!(
            none.shortfall(Path::new("/nonexistent"), u64::MAX).unwrap(),
            None
        );
        assert!(FallocateReserve::Percent(0.0)
            .shortfall(dir.path(), 1)
            .unwrap()
            .is_none());
        let all = FallocateReserve::Percent(100.0)
            .shortfall(dir.path(), 1)
            .unwrap();
        assert!(all.is_some_and(|r| r.contains("reserve")));
        let huge = FallocateReserve::Bytes(u64::MAX)
            .shortfall(dir.path(), 0)
            .unwrap();
        assert!(huge.is_some());
        assert!(FallocateReserve::Bytes(1)
            .shortfall(dir.path(), 0)
            .unwrap()
            .is_none());
    }
}
