//! The object-auditor on real files: good objects stay, damaged ones are quarantined.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use cairn_common::daemon::Stop;
use cairn_common::recon::ReconCache;
use cairn_common::{suffix_of, HashPathSecret, Timestamp};
use cairn_object::auditor::{AuditMode, AuditStats, AuditorSettings, ObjectAuditor};
use cairn_object::layout::HASHES_INVALID;
use cairn_object::metadata::XATTR_NAME;
use cairn_object::{DiskConfig, DiskFile, DiskFileManager, DiskFileState, Metadata};
use tempfile::TempDir;

const DEV: &str = "sda";

fn secret() -> HashPathSecret {
    HashPathSecret::new("", "changeme")
}

struct Env {
    dir: TempDir,
    mgr: DiskFileManager,
    auditor: ObjectAuditor,
}

fn setup() -> Env {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join(DEV)).unwrap();
    let mgr = DiskFileManager::new(
        DiskConfig {
            devices: dir.path().to_path_buf(),
            mount_check: false,
            fallocate_reserve: cairn_common::fs::FallocateReserve::NONE,
            ..DiskConfig::default()
        },
        secret(),
    );
    let mut s = AuditorSettings::new(dir.path());
    // Pacing is exercised by the rate limiter's own tests, not by timing here.
    s.files_per_second = 0.0;
    s.bytes_per_second = 0.0;
    s.zero_byte_files_per_second = 0.0;
    s.disk_chunk_size = 4096;
    s.recon_cache_path = Some(dir.path().join("recon"));
    let auditor = ObjectAuditor::new(s, secret());
    Env { dir, mgr, auditor }
}

fn ts(n: u64) -> Timestamp {
    Timestamp::from_secs(Timestamp::now().secs() - 1000 + n)
}

impl Env {
    fn df(&self, policy: u32, part: u32, obj: &str) -> DiskFile {
        self.mgr
            .diskfile(DEV, policy, part, "AUTH_a", "c", obj)
            .unwrap()
    }

    fn put(&self, policy: u32, part: u32, obj: &str, body: &[u8]) -> (DiskFile, PathBuf) {
        let df = self.df(policy, part, obj);
        let mut w = df.create(Some(body.len() as u64)).unwrap();
        w.write(body).unwrap();
        let mut md = Metadata::new();
        md.set("Content-Type", "application/octet-stream");
        let path = w.commit(ts(1), md).unwrap();
        (df, path)
    }

    fn dev(&self) -> PathBuf {
        self.dir.path().join(DEV)
    }
}

fn exists(df: &DiskFile) -> bool {
    matches!(df.open().unwrap(), DiskFileState::Exists(_))
}

fn flip_byte(path: &Path, at: u64) {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    std::io::Read::read_exact(&mut f, &mut b).unwrap();
    b[0] ^= 0x20;
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&b).unwrap();
    f.sync_all().unwrap();
}

fn invalidated(part_dir: &Path) -> String {
    fs::read_to_string(part_dir.join(HASHES_INVALID)).unwrap_or_default()
}

#[tokio::test]
async fn good_objects_are_untouched() {
    let env = setup();
    let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let (a, pa) = env.put(0, 0, "a", &big);
    let (b, pb) = env.put(0, 1, "b", b"hello");
    let (c, pc) = env.put(1, 2, "c", b"policy one");
    let (z, pz) = env.put(0, 3, "empty", b"");
    let t = env.df(0, 3, "gone");
    t.write_tombstone(ts(2), Metadata::new()).unwrap();

    let stats = env.auditor.run_once(AuditMode::All, &Stop::new()).await;
    assert_eq!(
        stats,
        AuditStats {
            files: 5,
            bytes: (big.len() + 5 + 10) as u64,
            quarantined: 0,
            errors: 0,
        }
    );
    for (df, p) in [(&a, &pa), (&b, &pb), (&c, &pc), (&z, &pz)] {
        assert!(p.exists());
        assert!(exists(df));
    }
    assert!(!env.dev().join("quarantined").exists());

    let cache = ReconCache::new(&env.dir.path().join("recon"), "object");
    let aud = cache.get("auditor").unwrap();
    assert_eq!(aud["object_auditor_stats_ALL"]["passes"], 5);
    assert_eq!(aud["object_auditor_stats_ALL"]["quarantined"], 0);
    assert_eq!(aud["object_auditor_last_pass_ALL"]["files"], 5);
    assert!(aud["object_auditor_last_pass_ALL"]["pass_time"]
        .as_f64()
        .is_some());
}

#[tokio::test]
async fn flipped_byte_is_quarantined_and_suffix_invalidated() {
    let env = setup();
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 199) as u8).collect();
    let (bad, path) = env.put(0, 5, "bad", &body);
    let (good, _) = env.put(0, 5, "good", b"fine");
    flip_byte(&path, 7_000);
    let hash = bad.hash().to_string();
    let part_dir = bad.paths().partition_dir(5);
    let before = invalidated(&part_dir);

    // the zero-byte pass does not read bodies: it leaves this one alone
    let stats = env
        .auditor
        .run_once(AuditMode::ZeroByteFiles, &Stop::new())
        .await;
    assert_eq!((stats.files, stats.quarantined, stats.bytes), (2, 0, 0));
    assert!(path.exists());

    let stats = env.auditor.run_once(AuditMode::All, &Stop::new()).await;
    assert_eq!((stats.files, stats.quarantined, stats.errors), (2, 1, 0));
    assert!(!bad.hash_dir().exists(), "gone from the objects dir");
    let q = env.dev().join("quarantined/objects").join(&hash);
    assert!(q.is_dir(), "present under quarantined/objects");
    assert!(q.join(path.file_name().unwrap()).exists());
    assert!(matches!(bad.open().unwrap(), DiskFileState::Missing));
    assert!(exists(&good));
    let after = invalidated(&part_dir);
    assert!(
        after.len() > before.len() && after.lines().any(|l| l == suffix_of(&hash)),
        "suffix invalidated: {after:?}"
    );

    let cache = ReconCache::new(&env.dir.path().join("recon"), "object");
    let aud = cache.get("auditor").unwrap();
    assert_eq!(aud["object_auditor_stats_ALL"]["quarantined"], 1);
    assert_eq!(aud["object_auditor_last_pass_ZBF"]["files"], 2);

    // a second pass finds nothing more
    let stats = env.auditor.run_once(AuditMode::All, &Stop::new()).await;
    assert_eq!((stats.files, stats.quarantined), (1, 0));
}

#[tokio::test]
async fn zero_byte_pass_catches_truncated_files() {
    let env = setup();
    let (df, path) = env.put(0, 7, "trunc", b"some content here");
    let (ok, _) = env.put(0, 7, "ok", b"other");
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    let stats = env
        .auditor
        .run_once(AuditMode::ZeroByteFiles, &Stop::new())
        .await;
    assert_eq!(
        stats,
        AuditStats {
            files: 2,
            bytes: 0,
            quarantined: 1,
            errors: 0
        }
    );
    assert!(!df.hash_dir().exists());
    assert!(env
        .dev()
        .join("quarantined/objects")
        .join(df.hash())
        .is_dir());
    assert!(exists(&ok));
}

#[tokio::test]
async fn corrupt_xattr_is_quarantined() {
    let env = setup();
    let (df, path) = env.put(0, 9, "x", b"xattr victim");
    let mut raw = xattr::get(&path, XATTR_NAME).unwrap().unwrap();
    let n = raw.len();
    raw[n - 1] ^= 0xff;
    xattr::set(&path, XATTR_NAME, &raw).unwrap();
    let stats = env.auditor.run_once(AuditMode::All, &Stop::new()).await;
    assert_eq!((stats.files, stats.quarantined, stats.errors), (1, 1, 0));
    assert!(!df.hash_dir().exists());
    assert!(env
        .dev()
        .join("quarantined/objects")
        .join(df.hash())
        .is_dir());
}

#[tokio::test]
async fn wrong_etag_metadata_is_quarantined_in_policy_dir() {
    let env = setup();
    // A body whose stored ETag does not match it (written with a bogus ETag).
    let df = env.df(2, 4, "lying");
    let mut w = df.create(Some(3)).unwrap();
    w.write(b"abc").unwrap();
    let path = w.commit(ts(1), Metadata::new()).unwrap();
    let mut md = cairn_object::metadata::read_metadata(&fs::File::open(&path).unwrap()).unwrap();
    md.set("ETag", "00000000000000000000000000000000");
    cairn_object::metadata::write_metadata(&fs::File::open(&path).unwrap(), &md).unwrap();
    let stats = env.auditor.run_once(AuditMode::All, &Stop::new()).await;
    assert_eq!((stats.files, stats.quarantined), (1, 1));
    assert!(env
        .dev()
        .join("quarantined/objects-2")
        .join(df.hash())
        .is_dir());
}

#[tokio::test]
async fn stopped_pass_audits_nothing() {
    let env = setup();
    let (_df, path) = env.put(0, 1, "a", b"abc");
    flip_byte(&path, 1);
    let stop = Stop::new();
    stop.stop();
    let stats = env.auditor.run_once(AuditMode::All, &stop).await;
    assert_eq!(stats, AuditStats::default());
    assert!(path.exists());
}

#[tokio::test]
async fn reclaimed_tombstone_invalidates_its_suffix() {
    let env = setup();
    let df = env.df(0, 6, "deleted");
    df.write_tombstone(ts(1), Metadata::new()).unwrap();
    let part_dir = df.paths().partition_dir(6);
    let suffix = suffix_of(df.hash()).to_string();
    fs::write(part_dir.join(HASHES_INVALID), "").unwrap();

    // with the default reclaim age the tombstone stays and nothing is invalidated
    let stats = env.auditor.run_once(AuditMode::All, &Stop::new()).await;
    assert_eq!((stats.files, stats.quarantined), (1, 0));
    assert!(df.hash_dir().exists());
    assert_eq!(invalidated(&part_dir), "");

    // an auditor whose reclaim age has passed removes it and invalidates the suffix
    let mut s = env.auditor.settings().clone();
    s.reclaim_age = 10;
    let auditor = ObjectAuditor::new(s, secret());
    let stats = auditor.run_once(AuditMode::All, &Stop::new()).await;
    assert_eq!((stats.files, stats.quarantined, stats.errors), (1, 0, 0));
    assert!(!df.hash_dir().exists());
    assert_eq!(invalidated(&part_dir), format!("{suffix}\n"));
}

/// `run_object_auditor(config, once, All)` reads `object-server.toml` and its cluster
/// file and does one ALL pass (and one ZBF pass beside it).
#[tokio::test]
async fn entry_point_runs_one_pass_from_the_config_file() {
    let env = setup();
    let root = env.dir.path();
    fs::write(
        root.join("cairn.toml"),
        "[cluster]\nhash_path_suffix = \"changeme\"\n",
    )
    .unwrap();
    fs::write(
        root.join("object-server.toml"),
        format!(
            "[server]\ndevices = \"{}\"\nrecon_cache_path = \"recon\"\n\
             cluster_config = \"cairn.toml\"\n\n[object-auditor]\nfiles_per_second = 0\n\
             bytes_per_second = 0\nzero_byte_files_per_second = 0\n",
            root.display()
        ),
    )
    .unwrap();
    let (bad, path) = env.put(0, 2, "bad", b"0123456789");
    let (good, _) = env.put(0, 2, "good", b"fine");
    flip_byte(&path, 3);
    cairn_object::auditor::run_object_auditor(
        &root.join("object-server.toml"),
        true,
        AuditMode::All,
    )
    .await
    .unwrap();
    assert!(!bad.hash_dir().exists());
    assert!(exists(&good));
    let aud = ReconCache::new(&root.join("recon"), "object")
        .get("auditor")
        .unwrap();
    assert_eq!(aud["object_auditor_last_pass_ALL"]["quarantined"], 1);
    assert_eq!(aud["object_auditor_last_pass_ALL"]["files"], 2);
}
