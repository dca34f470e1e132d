//! Integration tests of the object disk layer: write sequence, state, overlay rules,
//! crash safety, quarantine, suffix hashes (also under concurrency) and temp cleanup.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_common::{suffix_of, HashPathSecret, Timestamp};
use cairn_object::hashes::{self, get_hashes, invalidate_hash, read_hashes};
use cairn_object::layout::{make_file_name, FileKind, PolicyPaths, HASHES_CACHE, HASHES_INVALID};
use cairn_object::metadata::{write_metadata, XATTR_NAME};
use cairn_object::{
    cleanup_object_tmp_files, cleanup_tmp_dirs, DiskConfig, DiskError, DiskFile, DiskFileManager,
    DiskFileState, Metadata,
};
use md5::{Digest, Md5};
use tempfile::TempDir;

const DEV: &str = "sda";
/// Test times start a little in the past, so that nothing is reclaimable by accident.
fn base() -> u64 {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| Timestamp::now().secs() - 10_000)
}

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(base() + s)
}

fn name_at(s: u64, ext: &str) -> String {
    format!("{}{ext}", t(s).internal())
}

fn setup() -> (TempDir, DiskFileManager) {
    setup_policy(0)
}

fn setup_policy(_policy: u32) -> (TempDir, DiskFileManager) {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join(DEV)).unwrap();
    let cfg = DiskConfig {
        devices: dir.path().to_path_buf(),
        mount_check: false,
        fallocate_reserve: cairn_common::fs::FallocateReserve::NONE,
        ..DiskConfig::default()
    };
    (
        dir,
        DiskFileManager::new(cfg, HashPathSecret::new("", "changeme")),
    )
}

fn df(mgr: &DiskFileManager, policy: u32, obj: &str) -> DiskFile {
    mgr.diskfile(DEV, policy, 0, "AUTH_test", "c", obj).unwrap()
}

fn md(pairs: &[(&str, &str)]) -> Metadata {
    pairs.iter().copied().collect()
}

fn put(d: &DiskFile, ts: Timestamp, body: &[u8], extra: &[(&str, &str)]) -> PathBuf {
    let mut w = d.create(Some(body.len() as u64)).unwrap();
    for chunk in body.chunks(7) {
        w.write(chunk).unwrap();
    }
    let mut m = md(&[("Content-Type", "application/octet-stream")]);
    for (k, v) in extra {
        m.set(*k, *v);
    }
    w.commit(ts, m).unwrap()
}

fn open_exists(d: &DiskFile) -> cairn_object::OpenObject {
    match d.open_at(t(100)).unwrap() {
        DiskFileState::Exists(o) => o,
        other => panic!("expected an object, got {other:?}"),
    }
}

fn read_all(o: cairn_object::OpenObject) -> Vec<u8> {
    let mut out = Vec::new();
    o.reader().read_to_end(&mut out).unwrap();
    out
}

fn md5_hex(b: &[u8]) -> String {
    cairn_common::to_hex(&Md5::digest(b))
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => vec![],
    };
    v.sort();
    v
}

#[test]
fn put_open_read_and_ranges() {
    let (_tmp, mgr) = setup();
    let d = df(&mgr, 0, "photos/cat.jpg");
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let path = put(&d, t(1), &body, &[("X-Object-Meta-Color", "red")]);
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        name_at(1, ".data")
    );
    assert!(path.starts_with(
        mgr.config()
            .devices
            .join("sda/objects/0")
            .join(suffix_of(d.hash()))
    ));
    let o = open_exists(&d);
    assert_eq!(o.info.content_length, 10_000);
    assert_eq!(o.info.etag, md5_hex(&body));
    assert_eq!(o.info.data_ts, t(1));
    assert_eq!(o.info.name, "/AUTH_test/c/photos/cat.jpg");
    assert_eq!(o.info.metadata.get("x-object-meta-color"), Some("red"));
    assert_eq!(
        o.info.metadata.get("X-Timestamp"),
        Some(t(1).internal().as_str())
    );
    assert_eq!(read_all(o), body);
    let mut part = Vec::new();
    open_exists(&d)
        .range_reader(100, 200)
        .unwrap()
        .read_to_end(&mut part)
        .unwrap();
    assert_eq!(part, &body[100..200]);
    // nothing left in tmp
    assert!(names_in(&mgr.config().devices.join("sda/tmp")).is_empty());
    // a newer PUT replaces the older .data
    put(&d, t(2), b"new", &[]);
    let o = open_exists(&d);
    assert_eq!(read_all(o), b"new");
    assert_eq!(names_in(&d.hash_dir()), vec![name_at(2, ".data")]);
}

#[test]
fn policy_dirs_are_suffixed() {
    let (_tmp, mgr) = setup_policy(2);
    let d = df(&mgr, 2, "o");
    put(&d, t(1), b"x", &[]);
    assert!(d
        .hash_dir()
        .starts_with(mgr.config().devices.join("sda/objects-2/0")));
    assert!(mgr.config().devices.join("sda/tmp-2").is_dir());
    assert!(matches!(
        df(&mgr, 0, "o").open_at(t(2)).unwrap(),
        DiskFileState::Missing
    ));
}

#[test]
fn unavailable_device_is_507() {
    let (_tmp, mgr) = setup();
    let e = mgr.diskfile("nope", 0, 0, "a", "c", "o").unwrap_err();
    assert_eq!(e.http_status(), 507);
    let e = mgr.diskfile("..", 0, 0, "a", "c", "o").unwrap_err();
    assert_eq!(e.http_status(), 507);
    let cfg = DiskConfig {
        mount_check: true,
        ..mgr.config().clone()
    };
    let strict = DiskFileManager::new(cfg, HashPathSecret::default());
    assert_eq!(strict.device_root(DEV).unwrap_err().http_status(), 507);
}

#[test]
fn post_overlays_metadata_and_content_type() {
    let (_tmp, mgr) = setup();
    let d = df(&mgr, 0, "o");
    put(
        &d,
        t(1),
        b"body",
        &[
            ("Content-Type", "text/plain"),
            ("X-Object-Meta-A", "1"),
            ("X-Object-Sysmeta-S", "s"),
            ("X-Static-Large-Object", "True"),
            ("Content-Disposition", "inline"),
        ],
    );
    d.write_meta(t(2), md(&[("X-Object-Meta-B", "2")]), None)
        .unwrap();
    let o = open_exists(&d);
    let m = &o.info.metadata;
    assert_eq!(m.get("X-Object-Meta-B"), Some("2"));
    assert_eq!(
        m.get("X-Object-Meta-A"),
        None,
        "POST replaces user metadata"
    );
    assert_eq!(
        m.get("Content-Disposition"),
        None,
        "POST replaces allowed headers"
    );
    assert_eq!(m.get("X-Object-Sysmeta-S"), Some("s"));
    assert_eq!(m.get("X-Static-Large-Object"), Some("True"));
    assert_eq!(m.get("Content-Type"), Some("text/plain"));
    assert_eq!(m.get("Content-Length"), Some("4"));
    assert_eq!(m.get("X-Timestamp"), Some(t(2).internal().as_str()));
    assert_eq!(
        (o.info.data_ts, o.info.meta_ts, o.info.ctype_ts),
        (t(1), Some(t(2)), None)
    );
    assert_eq!(o.info.timestamp(), t(2));

    // a POST that changes the content type
    d.write_meta(
        t(3),
        md(&[("Content-Type", "image/png"), ("X-Object-Meta-C", "3")]),
        Some(t(3)),
    )
    .unwrap();
    let o = open_exists(&d);
    assert_eq!(o.info.metadata.get("Content-Type"), Some("image/png"));
    assert_eq!(o.info.ctype_ts, Some(t(3)));
    assert_eq!(o.info.metadata.get("X-Object-Meta-B"), None);

    // a later POST without content type keeps the earlier one (two .meta files kept)
    d.write_meta(t(4), md(&[("X-Object-Meta-D", "4")]), None)
        .unwrap();
    let o = open_exists(&d);
    assert_eq!(o.info.metadata.get("Content-Type"), Some("image/png"));
    assert_eq!(o.info.metadata.get("X-Object-Meta-D"), Some("4"));
    assert_eq!(o.info.metadata.get("X-Object-Meta-C"), None);
    assert_eq!((o.info.meta_ts, o.info.ctype_ts), (Some(t(4)), Some(t(3))));
    // the raw pieces SSYNC sends: the .data's metadata, the .meta's (+ ctype) metadata
    assert_eq!(o.info.data_metadata.get("Content-Type"), Some("text/plain"));
    assert_eq!(o.info.data_metadata.get("X-Object-Meta-A"), Some("1"));
    let mm = o.info.meta_metadata.as_ref().unwrap();
    assert_eq!(mm.get("X-Object-Meta-D"), Some("4"));
    assert_eq!(mm.get("Content-Type"), Some("image/png"));
    assert_eq!(
        mm.get("Content-Type-Timestamp"),
        Some(t(3).internal().as_str())
    );
    assert_eq!(
        names_in(&d.hash_dir()),
        vec![
            name_at(1, ".data"),
            name_at(3, "+0.meta"),
            name_at(4, ".meta")
        ]
    );

    // a new PUT makes every .meta obsolete
    put(&d, t(5), b"v2", &[("Content-Type", "text/html")]);
    let o = open_exists(&d);
    assert_eq!(o.info.metadata.get("Content-Type"), Some("text/html"));
    assert_eq!(names_in(&d.hash_dir()), vec![name_at(5, ".data")]);
}

#[test]
fn delete_writes_tombstone_and_wins() {
    let (_tmp, mgr) = setup();
    let d = df(&mgr, 0, "o");
    put(&d, t(1), b"x", &[]);
    d.write_tombstone(t(2), Metadata::new()).unwrap();
    match d.open_at(t(3)).unwrap() {
        DiskFileState::Deleted { ts } => assert_eq!(ts, t(2)),
        other => panic!("{other:?}"),
    }
    assert_eq!(names_in(&d.hash_dir()), vec![name_at(2, ".ts")]);
    // an older PUT arriving late is cleaned up at once
    put(&d, t(1), b"late", &[]);
    assert!(matches!(
        d.open_at(t(3)).unwrap(),
        DiskFileState::Deleted { .. }
    ));
    assert_eq!(names_in(&d.hash_dir()), vec![name_at(2, ".ts")]);
    // the tombstone is reclaimed after reclaim_age and the dir removed
    let later = Timestamp::from_secs(base() + 2 + mgr.config().reclaim_age + 1);
    assert!(matches!(d.open_at(later).unwrap(), DiskFileState::Missing));
    assert!(!d.hash_dir().exists());
}

#[test]
fn expired_objects_are_distinguishable() {
    let (_tmp, mgr) = setup();
    let d = df(&mgr, 0, "o");
    put(
        &d,
        t(1),
        b"x",
        &[("X-Delete-At", &(base() + 50).to_string())],
    );
    assert!(matches!(
        d.open_at(t(49)).unwrap(),
        DiskFileState::Exists(_)
    ));
    match d.open_at(t(50)).unwrap() {
        DiskFileState::Expired(o) => assert_eq!(o.info.delete_at, Some(base() + 50)),
        other => panic!("{other:?}"),
    }
    // a POST removes X-Delete-At
    d.write_meta(t(2), Metadata::new(), None).unwrap();
    assert!(matches!(
        d.open_at(t(60)).unwrap(),
        DiskFileState::Exists(_)
    ));
}

#[test]
fn crash_before_rename_leaves_nothing_visible() {
    let (_tmp, mgr) = setup();
    let d = df(&mgr, 0, "o");
    let mut w = d.create(Some(10)).unwrap();
    w.write(b"0123456789").unwrap();
    let tmp_path = w.tmp_path().to_path_buf();
    // simulate the process dying: the writer never commits and never cleans up
    std::mem::forget(w);
    assert!(tmp_path.exists());
    assert!(matches!(d.open_at(t(1)).unwrap(), DiskFileState::Missing));
    assert!(!d.hash_dir().exists());
    // an old object stays intact under an interrupted overwrite
    put(&d, t(1), b"old", &[]);
    let mut w = d.create(None).unwrap();
    w.write(b"partial").unwrap();
    std::mem::forget(w);
    assert_eq!(read_all(open_exists(&d)), b"old");
    // startup cleanup removes the leftovers; young files survive an age threshold
    let device = mgr.device_root(DEV).unwrap();
    assert_eq!(
        cleanup_tmp_dirs(&device, Duration::from_secs(3600)).unwrap(),
        0
    );
    let foreign = device.join("tmp/db-copy.tmp");
    fs::write(&foreign, b"not ours").unwrap();
    assert_eq!(cleanup_object_tmp_files(&device).unwrap(), 2);
    assert!(foreign.exists(), "other servers' temp files are left alone");
    assert_eq!(cleanup_tmp_dirs(&device, Duration::ZERO).unwrap(), 1);
    assert!(!tmp_path.exists());
    // a writer dropped without commit (client disconnect) removes its temp itself
    let mut w = d.create(None).unwrap();
    w.write(b"x").unwrap();
    let p = w.tmp_path().to_path_buf();
    drop(w);
    assert!(!p.exists());
}

fn assert_quarantined(mgr: &DiskFileManager, d: &DiskFile, r: Result<DiskFileState, DiskError>) {
    match r {
        Err(DiskError::Quarantined { to, .. }) => {
            assert!(to.starts_with(mgr.config().devices.join("sda/quarantined/objects")));
            assert!(to
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(d.hash()));
            assert!(to.is_dir() || to.is_file());
        }
        other => panic!("expected quarantine, got {other:?}"),
    }
    assert!(!d.hash_dir().exists());
    assert!(matches!(d.open_at(t(100)).unwrap(), DiskFileState::Missing));
    let inv = fs::read_to_string(d.paths().partition_dir(0).join(HASHES_INVALID)).unwrap();
    assert!(
        inv.lines().any(|l| l == suffix_of(d.hash())),
        "suffix invalidated"
    );
}

#[test]
fn quarantine_on_corrupt_xattr() {
    let (_tmp, mgr) = setup();
    let d = df(&mgr, 0, "o");
    let p = put(&d, t(1), b"x", &[]);
    xattr::set(&p, XATTR_NAME, b"CMD\x01\0\0\0\0garbage").unwrap();
    assert_quarantined(&mgr, &d, d.open_at(t(2)));
}

#[test]
fn quarantine_on_missing_xattr_and_missing_fields() {
    let (_tmp, mgr) = setup();
    let d = df(&mgr, 0, "o");
    let p = put(&d, t(1), b"x", &[]);
    xattr::remove(&p, XATTR_NAME).unwrap();
    assert_quarantined(&mgr, &d, d.open_at(t(2)));

    let p = put(&d, t(3), b"x", &[]);
    let f = fs::File::open(&p).unwrap();
    write_metadata(&f, &md(&[("name", "/AUTH_test/c/o"), ("X-Timestamp", "1")])).unwrap();
    assert_quarantined(&mgr, &d, d.open_at(t(4)));
}

#[test]
fn quarantine_on_size_mismatch() {
    let (_tmp, mgr) = setup();
    let d = df(&mgr, 0, "o");
    let p = put(&d, t(1), b"hello", &[]);
    let f = fs::OpenOptions::new().append(true).open(&p).unwrap();
    f.set_len(3).unwrap();
    assert_quarantined(&mgr, &d, d.open_at(t(2)));
}

#[test]
fn quarantine_on_md5_mismatch_at_eof() {
    let (_tmp, mgr) = setup();
    let d = df(&mgr, 0, "o");
    for round in 0..2 {
        let p = put(&d, t(1 + round), b"hello world", &[]);
        let mut bytes = fs::read(&p).unwrap();
        bytes[0] ^= 1;
        // rewrite in place: same size, xattr kept
        fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
            .unwrap();
        let o = open_exists(&d);
        // a range read does not verify
        let mut part = Vec::new();
        open_exists(&d)
            .range_reader(0, 5)
            .unwrap()
            .read_to_end(&mut part)
            .unwrap();
        let mut r = o.reader();
        let mut buf = [0u8; 4];
        let mut err = None;
        loop {
            match r.read_chunk(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert!(
            matches!(err, Some(DiskError::Quarantined { .. })),
            "{err:?}"
        );
        assert!(!d.hash_dir().exists());
    }
    // the second quarantine of the same hash got a unique name
    let q = names_in(&mgr.config().devices.join("sda/quarantined/objects"));
    assert_eq!(q.len(), 2);
    assert!(q.iter().any(|n| n.len() > 33 && n.starts_with(d.hash())));
}

#[test]
fn quarantine_on_wrong_name_and_file_as_hash_dir() {
    let (_tmp, mgr) = setup();
    let d = df(&mgr, 0, "o");
    let p = put(&d, t(1), b"x", &[]);
    let f = fs::File::open(&p).unwrap();
    let mut m = md(&[
        ("name", "/AUTH_test/c/other"),
        ("X-Timestamp", "1"),
        ("Content-Length", "1"),
    ]);
    m.set("ETag", md5_hex(b"x"));
    write_metadata(&f, &m).unwrap();
    assert_quarantined(&mgr, &d, d.open_at(t(2)));

    // a file where the hash directory should be
    fs::create_dir_all(d.hash_dir().parent().unwrap()).unwrap();
    fs::write(d.hash_dir(), b"oops").unwrap();
    assert_quarantined(&mgr, &d, d.open_at(t(2)));
}

#[test]
fn quarantine_on_corrupt_meta_file() {
    let (_tmp, mgr) = setup();
    let d = df(&mgr, 0, "o");
    put(&d, t(1), b"x", &[]);
    let m = d.write_meta(t(2), Metadata::new(), None).unwrap();
    xattr::set(&m, XATTR_NAME, b"nonsense").unwrap();
    assert_quarantined(&mgr, &d, d.open_at(t(3)));
}

/// The suffix hash computed by hand from the spec.
fn expected_suffix_hash(suffix_dir: &Path) -> [u8; 16] {
    let mut m = Md5::new();
    for h in names_in(suffix_dir) {
        let mut files: Vec<_> = names_in(&suffix_dir.join(&h))
            .iter()
            .map(|f| cairn_object::layout::parse_file_name(f).unwrap())
            .collect();
        // spec order: .meta, .ts, .data
        files.sort_by_key(|n| match n.kind {
            FileKind::Meta => 0,
            FileKind::Ts => 1,
            FileKind::Data => 2,
        });
        for n in files {
            m.update(format!("{}{}", n.ts.internal(), n.kind.ext()).as_bytes());
        }
    }
    m.finalize().into()
}

fn gh(paths: &PolicyPaths, recalc: &[String], listdir: bool) -> hashes::GetHashes {
    get_hashes(paths, 0, recalc, listdir, 604_800, Duration::from_secs(10)).unwrap()
}

#[test]
fn suffix_hashes_invalidate_and_recalculate() {
    let (_tmp, mgr) = setup();
    let paths = mgr.policy_paths(DEV, 0).unwrap();
    assert!(
        gh(&paths, &[], false).hashes.is_empty(),
        "missing partition → {{}}"
    );
    assert!(!paths.partition_dir(0).exists());

    let objs: Vec<DiskFile> = (0..20).map(|i| df(&mgr, 0, &format!("o{i}"))).collect();
    for d in &objs {
        put(d, t(1), b"x", &[]);
    }
    let first = gh(&paths, &[], false);
    assert_eq!(first.hashed, first.hashes.len());
    for (suffix, h) in &first.hashes {
        assert_eq!(
            h.unwrap(),
            expected_suffix_hash(&paths.suffix_dir(0, suffix)),
            "{suffix}"
        );
    }
    // cached: nothing recomputed
    assert_eq!(gh(&paths, &[], false).hashed, 0);
    assert!(paths.partition_dir(0).join(HASHES_CACHE).is_file());

    // a POST changes exactly one suffix
    let d = &objs[3];
    let sfx = suffix_of(d.hash()).to_string();
    d.write_meta(t(2), Metadata::new(), None).unwrap();
    let inv = fs::read_to_string(paths.partition_dir(0).join(HASHES_INVALID)).unwrap();
    assert!(inv.contains(&sfx));
    let second = gh(&paths, &[], false);
    assert_eq!(second.hashed, 1);
    assert_ne!(second.hashes[&sfx], first.hashes[&sfx]);
    assert_eq!(
        second.hashes[&sfx].unwrap(),
        expected_suffix_hash(&paths.suffix_dir(0, &sfx))
    );
    assert_eq!(
        fs::read(paths.partition_dir(0).join(HASHES_INVALID))
            .unwrap()
            .len(),
        0
    );

    // obsolete files do not matter: a replica with an extra old .data agrees
    let extra = d
        .hash_dir()
        .join(make_file_name(FileKind::Data, t(0), None));
    fs::write(&extra, b"").unwrap();
    let again = gh(&paths, std::slice::from_ref(&sfx), false);
    assert_eq!(again.hashes[&sfx], second.hashes[&sfx]);
    assert!(!extra.exists(), "cleanup ran while hashing");

    // explicit invalidation (REPLICATE /DEV/PART/SUF) then recalculation
    invalidate_hash(&paths.partition_dir(0), &sfx, false, Duration::from_secs(1)).unwrap();
    assert_eq!(gh(&paths, &[], false).hashed, 1);

    // deleting and reclaiming everything in a suffix drops it and removes the dir
    for o in objs.iter().filter(|o| suffix_of(o.hash()) == sfx) {
        o.write_tombstone(t(3), Metadata::new()).unwrap();
    }
    let with_ts = gh(&paths, &[], false);
    assert!(with_ts.hashes[&sfx].is_some());
    let reclaimed = get_hashes(
        &paths,
        0,
        std::slice::from_ref(&sfx),
        false,
        0,
        Duration::from_secs(1),
    )
    .unwrap();
    assert!(!reclaimed.hashes.contains_key(&sfx));
    assert!(!paths.suffix_dir(0, &sfx).exists());
    // invalidating a missing partition does not create it
    invalidate_hash(
        &paths.partition_dir(9),
        "abc",
        false,
        Duration::from_secs(1),
    )
    .unwrap();
    assert!(!paths.partition_dir(9).exists());
}

#[test]
fn corrupt_or_missing_cache_means_full_rehash() {
    let (_tmp, mgr) = setup();
    let paths = mgr.policy_paths(DEV, 0).unwrap();
    for i in 0..10 {
        put(&df(&mgr, 0, &format!("o{i}")), t(1), b"x", &[]);
    }
    let good = gh(&paths, &[], false).hashes;
    let cache = paths.partition_dir(0).join(HASHES_CACHE);
    // a stale-looking cache that claims one suffix with a bogus hash but is corrupt
    let mut bytes = fs::read(&cache).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&cache, &bytes).unwrap();
    assert!(!read_hashes(&paths.partition_dir(0)).valid);
    let r = gh(&paths, &[], false);
    assert_eq!(r.hashes, good);
    assert_eq!(r.hashed, good.len());
    fs::remove_file(&cache).unwrap();
    assert_eq!(gh(&paths, &[], false).hashes, good);
    fs::write(&cache, b"").unwrap();
    assert_eq!(gh(&paths, &[], false).hashes, good);
    assert!(read_hashes(&paths.partition_dir(0)).valid);
}

#[test]
fn concurrent_writers_and_get_hashes_stay_consistent() {
    let (_tmp, mgr) = setup();
    let paths = mgr.policy_paths(DEV, 0).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut hashers = Vec::new();
    for _ in 0..2 {
        let paths = paths.clone();
        let stop = stop.clone();
        hashers.push(std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) {
                gh(&paths, &[], false);
                runs += 1;
            }
            runs
        }));
    }
    let mut writers = Vec::new();
    for w in 0..4 {
        let mgr = mgr.clone();
        writers.push(std::thread::spawn(move || {
            for i in 0..40 {
                let d = df(&mgr, 0, &format!("w{w}-o{}", i % 25));
                let ts = t(1 + i);
                match i % 3 {
                    0 | 1 => {
                        put(&d, ts, format!("{w}-{i}").as_bytes(), &[]);
                    }
                    _ => {
                        d.write_tombstone(ts, Metadata::new()).unwrap();
                    }
                }
            }
        }));
    }
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let runs: usize = hashers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(runs > 0);
    // the incrementally maintained cache must equal a from-scratch computation
    let incremental = gh(&paths, &[], false).hashes;
    fs::remove_file(paths.partition_dir(0).join(HASHES_CACHE)).unwrap();
    let full = gh(&paths, &[], true).hashes;
    assert_eq!(incremental, full);
    for (suffix, h) in &full {
        assert_eq!(
            h.unwrap(),
            expected_suffix_hash(&paths.suffix_dir(0, suffix))
        );
    }
}

#[test]
fn yield_hashes_and_partitions() {
    let (_tmp, mgr) = setup();
    let a = df(&mgr, 0, "a");
    let b = df(&mgr, 0, "b");
    let c = df(&mgr, 0, "c");
    put(&a, t(1), b"x", &[]);
    a.write_meta(t(2), md(&[("Content-Type", "x/y")]), Some(t(2)))
        .unwrap();
    put(&b, t(1), b"x", &[]);
    b.write_tombstone(t(3), Metadata::new()).unwrap();
    // a stray .meta without data is not offered
    c.write_meta(t(4), Metadata::new(), None).unwrap();
    assert_eq!(mgr.list_partitions(DEV, 0).unwrap(), vec![0]);
    assert!(mgr.list_partitions(DEV, 1).unwrap().is_empty());
    let mut got = mgr.yield_hashes(DEV, 0, 0, None).unwrap();
    got.sort_by_key(|x| x.ts_data);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].hash, a.hash());
    assert_eq!(
        (
            got[0].ts_data,
            got[0].ts_meta,
            got[0].ts_ctype,
            got[0].deleted
        ),
        (t(1), Some(t(2)), Some(t(2)), false)
    );
    assert_eq!(got[1].hash, b.hash());
    assert_eq!(
        (got[1].ts_data, got[1].ts_meta, got[1].deleted),
        (t(3), None, true)
    );
    let only_a = mgr
        .yield_hashes(DEV, 0, 0, Some(&[suffix_of(a.hash()).to_string()]))
        .unwrap();
    assert!(only_a.iter().any(|e| e.hash == a.hash()));
    // invalidation through the manager
    mgr.invalidate_suffixes(DEV, 0, 0, &[suffix_of(a.hash())])
        .unwrap();
    assert!(mgr.invalidate_suffixes(DEV, 0, 0, &["zzz"]).is_err());
    let h = mgr.get_hashes(DEV, 0, 0, &[], false).unwrap();
    assert!(h.hashes.contains_key(suffix_of(a.hash())));
    assert!(hashes::should_listdir(7, 3) && !hashes::should_listdir(7, 4));
}

#[test]
fn corrupt_old_file_does_not_quarantine_its_replacement() {
    let (_tmp, mgr) = setup();
    let d = df(&mgr, 0, "o");
    let p = put(&d, t(1), b"hello world", &[]);
    let o = open_exists(&d);
    // corrupt the open (old) file in place, then replace it with a newer PUT
    let mut bytes = fs::read(&p).unwrap();
    bytes[0] ^= 1;
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
        .unwrap();
    put(&d, t(2), b"new", &[]);
    let mut out = Vec::new();
    let err = o.reader().read_to_end(&mut out).unwrap_err();
    assert!(err.to_string().contains("already replaced"), "{err}");
    assert_eq!(read_all(open_exists(&d)), b"new");
}
