//! What a no-change object replication pass costs locally (issue 9 evidence).
//!
//! Builds N objects in 2^12 = 4,096 partitions of one device through the disk layer's
//! own writer ([`DiskFileManager::diskfile`] → `create` → `write` → `commit`: temp file,
//! xattr metadata, fsync, suffix invalidation, rename, directory fsync; 0-byte bodies, so
//! that the figure is about the namespace, not about data blocks), primes the suffix
//! hashes (`get_hashes` with a listdir, as the first replicator pass does), then times
//! passes that change nothing:
//!
//! - `cache`: list the partitions, then `get_hashes` of every partition with no listdir
//!   (one `hashes.cache` read, plus the `hashes.invalid` check, per partition);
//! - `replicator`: the same with the replicator's listdir rule (`should_listdir(part,
//!   cycle)`: a full listdir of a partition every 10th pass) for ten consecutive cycles,
//!   which is exactly the local work of the update jobs of a pass.
//!
//! The REPLICATE round trips to peers are not included: each peer runs the same
//! `get_hashes` for the partition (measured here), plus one HTTP request per peer.
//!
//! ```text
//! cargo run --release -p cairn-object --example replication_pass -- \
//!     [--objects 1000000] [--threads 4] [--max-create-secs 600] [--dir DIR] [--keep]
//! ```
//!
//! With `--dir DIR` an existing tree (from an earlier `--keep` run) is reused as it is:
//! creation is skipped. Without `--keep` the tree is removed at the end.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn_common::{HashPathSecret, Timestamp};
use cairn_object::hashes::should_listdir;
use cairn_object::{DiskConfig, DiskFileManager, Metadata};

const PART_POWER: u8 = 12;
const DEVICE: &str = "sda";

struct Args {
    objects: u64,
    threads: usize,
    max_create: Duration,
    dir: Option<PathBuf>,
    keep: bool,
}

fn args() -> Args {
    let mut a = Args {
        objects: 1_000_000,
        threads: 4,
        max_create: Duration::from_secs(600),
        dir: None,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--objects" => a.objects = value().parse().expect("--objects N"),
            "--threads" => a.threads = value().parse().expect("--threads N"),
            "--max-create-secs" => {
                a.max_create = Duration::from_secs(value().parse().expect("--max-create-secs S"))
            }
            "--dir" => a.dir = Some(PathBuf::from(value())),
            "--keep" => a.keep = true,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn partition(secret: &HashPathSecret, name: &str) -> u32 {
    let digest = secret.digest("AUTH_bench", Some("c"), Some(name));
    cairn_common::partition_of(&digest, PART_POWER)
}

/// Create up to `n` objects with `threads` writers; stops early at `budget`. Returns the
/// number created.
fn create(mgr: &DiskFileManager, n: u64, threads: usize, budget: Duration) -> u64 {
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let out_of_time = AtomicBool::new(false);
    let begin = Instant::now();
    let exited = AtomicU64::new(0);
    let threads = threads.max(1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !out_of_time.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let name = format!("o{i:08}");
                    let part = partition(mgr.secret(), &name);
                    let df = mgr
                        .diskfile(DEVICE, 0, part, "AUTH_bench", "c", &name)
                        .expect("diskfile");
                    let w = df.create(Some(0)).expect("create");
                    let md: Metadata = [("Content-Type", "application/octet-stream")]
                        .into_iter()
                        .collect();
                    w.commit(Timestamp::now(), md).expect("commit");
                    done.fetch_add(1, Ordering::Relaxed);
                }
                exited.fetch_add(1, Ordering::Relaxed);
            });
        }
        // Progress and the time budget.
        let mut last = Instant::now();
        while exited.load(Ordering::Relaxed) < threads as u64 {
            std::thread::sleep(Duration::from_millis(200));
            if begin.elapsed() >= budget {
                out_of_time.store(true, Ordering::Relaxed);
            }
            if last.elapsed() >= Duration::from_secs(15) {
                last = Instant::now();
                let d = done.load(Ordering::Relaxed);
                eprintln!(
                    "  created {d} objects in {:.0} s ({:.0}/s)",
                    begin.elapsed().as_secs_f64(),
                    d as f64 / begin.elapsed().as_secs_f64()
                );
            }
        }
    });
    done.load(Ordering::Relaxed)
}

/// Count the objects of an existing tree (hash dirs), for `--dir` reuse.
fn count_hash_dirs(root: &std::path::Path) -> u64 {
    let objects = root.join(DEVICE).join("objects");
    let mut n = 0;
    for part in std::fs::read_dir(&objects).into_iter().flatten().flatten() {
        for suffix in std::fs::read_dir(part.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if suffix.path().is_dir() {
                n += std::fs::read_dir(suffix.path())
                    .map(|d| d.count())
                    .unwrap_or(0) as u64;
            }
        }
    }
    n
}

/// One pass over every partition; returns (seconds, suffixes seen, suffixes hashed).
fn pass(mgr: &DiskFileManager, listdir: impl Fn(u32) -> bool) -> (f64, u64, u64) {
    let begin = Instant::now();
    let parts = mgr.list_partitions(DEVICE, 0).expect("list partitions");
    let (mut suffixes, mut hashed) = (0u64, 0u64);
    for part in parts {
        let h = mgr
            .get_hashes(DEVICE, 0, part, &[], listdir(part))
            .expect("get_hashes");
        suffixes += h.hashes.len() as u64;
        hashed += h.hashed as u64;
    }
    (begin.elapsed().as_secs_f64(), suffixes, hashed)
}

fn main() {
    let a = args();
    let (tmp, root) = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d.join(DEVICE)).expect("device dir");
            (None, d.clone())
        }
        None => {
            let base = std::env::var_os("CAIRN_BENCH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            let t = tempfile::tempdir_in(base).expect("temp dir");
            std::fs::create_dir(t.path().join(DEVICE)).expect("device dir");
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let cfg = DiskConfig {
        devices: root.clone(),
        mount_check: false,
        fallocate_reserve: cairn_common::fs::FallocateReserve::NONE,
        ..DiskConfig::default()
    };
    let mgr = DiskFileManager::new(cfg, HashPathSecret::new("", "replication-pass"));
    println!("tree: {}", root.display());

    let existing = count_hash_dirs(&root);
    let objects = if existing > 0 {
        println!("reusing {existing} existing objects (creation skipped)");
        existing
    } else {
        let begin = Instant::now();
        let n = create(&mgr, a.objects, a.threads, a.max_create);
        let secs = begin.elapsed().as_secs_f64();
        println!(
            "create: {n} objects (0-byte bodies, durable writer API, {} threads) in {secs:.1} s \
             = {:.0} objects/s{}",
            a.threads,
            n as f64 / secs,
            if n < a.objects {
                format!(" (stopped by the {} s budget)", a.max_create.as_secs())
            } else {
                String::new()
            }
        );
        n
    };
    let partitions = mgr.list_partitions(DEVICE, 0).expect("partitions").len();
    println!("objects: {objects}, partitions: {partitions} (part power {PART_POWER})");

    let (secs, suffixes, hashed) = pass(&mgr, |_| true);
    println!(
        "prime (get_hashes with listdir, hashes every suffix): {secs:.2} s, \
         {suffixes} suffixes, {hashed} hashed"
    );
    for round in 1..=2 {
        let (secs, suffixes, hashed) = pass(&mgr, |_| false);
        println!(
            "no-change pass, cache only (round {round}): {secs:.3} s for {partitions} partitions \
             = {:.1} µs/partition; {suffixes} suffixes, {hashed} rehashed",
            secs * 1e6 / partitions.max(1) as f64
        );
    }
    let mut total = 0.0;
    for cycle in 0..10u64 {
        let (secs, _, hashed) = pass(&mgr, |part| should_listdir(part, cycle));
        assert_eq!(hashed, 0, "a no-change pass rehashed suffixes");
        total += secs;
    }
    println!(
        "no-change pass, replicator listdir rule (mean of 10 cycles): {:.3} s \
         = {:.1} µs/partition, {:.2} µs/object",
        total / 10.0,
        total / 10.0 * 1e6 / partitions.max(1) as f64,
        total / 10.0 * 1e6 / objects.max(1) as f64
    );
    if a.keep {
        std::mem::forget(tmp);
        println!("kept {}", root.display());
    } else if let Some(t) = tmp {
        let begin = Instant::now();
        drop(t);
        println!("removed the tree in {:.1} s", begin.elapsed().as_secs_f64());
    }
}
