//! Disk-layer benchmarks: a 4 KiB durable PUT (temp, xattr, fsync, invalidate, rename,
//! fsync dir, cleanup), a 4 KiB GET (open + verified read) and MD5 throughput.
//!
//! Run: `cargo bench -p cairn-object --bench disk`. The PUT figures depend on the device's
//! fsync latency; set `CAIRN_BENCH_DIR` to benchmark a particular file system.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_common::{HashPathSecret, Timestamp};
use cairn_object::{DiskConfig, DiskFileManager, DiskFileState, Metadata};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use md5::{Digest, Md5};

fn manager() -> (tempfile::TempDir, DiskFileManager) {
    let root: PathBuf = std::env::var_os("CAIRN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(root).expect("bench dir");
    std::fs::create_dir(dir.path().join("sda")).expect("device dir");
    let cfg = DiskConfig {
        devices: dir.path().to_path_buf(),
        mount_check: false,
        fallocate_reserve: cairn_common::fs::FallocateReserve::NONE,
        ..DiskConfig::default()
    };
    (
        dir,
        DiskFileManager::new(cfg, HashPathSecret::new("", "bench")),
    )
}

fn put_4k(c: &mut Criterion) {
    let (_dir, mgr) = manager();
    let body = vec![7u8; 4096];
    let n = AtomicU64::new(0);
    let mut g = c.benchmark_group("disk");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30);
    g.bench_function("put_4KiB_durable_new_object", |b| {
        b.iter(|| {
            let i = n.fetch_add(1, Ordering::Relaxed);
            let d = mgr
                .diskfile(
                    "sda",
                    0,
                    (i % 64) as u32,
                    "AUTH_bench",
                    "c",
                    &format!("o{i}"),
                )
                .expect("diskfile");
            let mut w = d.create(Some(body.len() as u64)).expect("create");
            w.write(&body).expect("write");
            let md: Metadata = [("Content-Type", "application/octet-stream")]
                .into_iter()
                .collect();
            w.commit(Timestamp::now(), md).expect("commit");
        })
    });
    let d = mgr
        .diskfile("sda", 0, 1, "AUTH_bench", "c", "hot")
        .expect("diskfile");
    g.bench_function("put_4KiB_durable_overwrite", |b| {
        b.iter(|| {
            let mut w = d.create(Some(body.len() as u64)).expect("create");
            w.write(&body).expect("write");
            w.commit(Timestamp::now(), Metadata::new()).expect("commit");
        })
    });
    g.bench_function("get_4KiB_open_and_verified_read", |b| {
        let mut buf = Vec::with_capacity(8192);
        b.iter(|| {
            let DiskFileState::Exists(o) = d.open().expect("open") else {
                panic!("object missing")
            };
            buf.clear();
            o.reader().read_to_end(&mut buf).expect("read");
        })
    });
    g.finish();
}

fn md5_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("md5");
    for size in [64 * 1024usize, 1024 * 1024] {
        let data = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, data| {
            b.iter(|| Md5::digest(data))
        });
    }
    g.finish();
}

criterion_group!(benches, put_4k, md5_throughput);
criterion_main!(benches);
