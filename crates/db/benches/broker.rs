//! Criterion benches of the container broker.
//!
//! * `updates/*`: durable object-row updates into one container through the pending file
//!   (each `put_object` returns only after its record is fsynced or merged), from 1 thread
//!   and from 16/64 concurrent threads sharing fsyncs (group commit).
//! * `listing_1m/*`: a 10,000-entry page from a 1,000,000-row container: plain (marker),
//!   prefix, delimiter (10,000 subdirs, one index re-seek each) and prefix+delimiter. The DB
//!   is built once with batched `merge_items` and cached in `$TMPDIR/cairn-db-bench-1m`.
//!
//! Run: `cargo bench -p cairn-db --bench broker`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_common::Timestamp;
use cairn_db::{ContainerBroker, ListParams, Listed, ObjectRecord};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const ETAG: &str = "d41d8cd98f00b204e9800998ecf8427e";
static SEQ: AtomicU64 = AtomicU64::new(0);

fn updates(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).expect("tempdir");
    let path = cairn_db::db_path(
        dir.path(),
        "sdb1",
        "containers",
        0,
        "0123456789abcdef0123456789abcdef",
    );
    let (broker, _) =
        ContainerBroker::create(&path, "AUTH_bench", "c", Timestamp::now(), 0).expect("create");
    let broker = Arc::new(broker);
    let mut g = c.benchmark_group("updates");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    for threads in [1usize, 16, 64] {
        g.bench_with_input(
            BenchmarkId::new("put_object_durable", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    let per = iters.div_ceil(threads as u64);
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for _ in 0..threads {
                            let br = broker.clone();
                            s.spawn(move || {
                                for _ in 0..per {
                                    let n = SEQ.fetch_add(1, Ordering::Relaxed);
                                    let rec = ObjectRecord::put(
                                        &format!("photos/2024/img-{n:09}.jpg"),
                                        Timestamp::now(),
                                        123_456,
                                        "image/jpeg",
                                        ETAG,
                                    );
                                    br.put_object(&rec).expect("put_object");
                                }
                            });
                        }
                    });
                    start
                        .elapsed()
                        .mul_f64(iters as f64 / (per * threads as u64) as f64)
                })
            },
        );
    }
    g.finish();
    let info = broker.get_info().expect("info");
    eprintln!(
        "updates bench: container now has {} rows",
        info.object_count
    );
}

const ROWS: u64 = 1_000_000;

fn name_of(i: u64) -> String {
    // 10,000 directories of 100 objects each
    format!("dir{:05}/obj{:02}", i / 100, i % 100)
}

fn million_row_db() -> ContainerBroker {
    let root = std::env::temp_dir().join("cairn-db-bench-1m");
    let path: PathBuf = cairn_db::db_path(
        &root,
        "sdb1",
        "containers",
        0,
        "fedcba9876543210fedcba9876543210",
    );
    if path.exists() {
        if let Ok(b) = ContainerBroker::open(&path) {
            if b.get_info()
                .map(|i| i.object_count as u64 == ROWS)
                .unwrap_or(false)
            {
                return b;
            }
        }
        let _ = std::fs::remove_dir_all(&root);
    }
    let start = Instant::now();
    let (b, _) = ContainerBroker::create(&path, "AUTH_bench", "big", Timestamp::from_secs(1), 0)
        .expect("create");
    let ts = Timestamp::from_secs(1_700_000_000);
    let mut i = 0;
    while i < ROWS {
        let batch: Vec<ObjectRecord> = (i..(i + 20_000).min(ROWS))
            .map(|k| ObjectRecord::put(&name_of(k), ts, k, "application/octet-stream", ETAG))
            .collect();
        b.merge_items(&batch, None).expect("merge");
        i += 20_000;
    }
    eprintln!("built 1M-row container in {:?}", start.elapsed());
    b
}

fn listing(c: &mut Criterion) {
    let b = million_row_db();
    let mut g = c.benchmark_group("listing_1m");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(6));
    let cases: Vec<(&str, ListParams, usize)> = vec![
        (
            "plain_marker",
            ListParams {
                limit: 10_000,
                marker: "dir05000/".into(),
                ..Default::default()
            },
            10_000,
        ),
        (
            "prefix",
            ListParams {
                limit: 10_000,
                prefix: Some("dir050".into()),
                ..Default::default()
            },
            10_000,
        ),
        (
            "delimiter",
            ListParams {
                limit: 10_000,
                delimiter: Some("/".into()),
                ..Default::default()
            },
            10_000,
        ),
        (
            "prefix_delimiter",
            ListParams {
                limit: 10_000,
                prefix: Some("dir0".into()),
                delimiter: Some("/".into()),
                ..Default::default()
            },
            10_000,
        ),
        (
            "reverse_delimiter",
            ListParams {
                limit: 10_000,
                delimiter: Some("/".into()),
                reverse: true,
                ..Default::default()
            },
            10_000,
        ),
    ];
    for (name, p, expect) in cases {
        let got = b.list_objects_iter(&p, None).expect("list");
        assert_eq!(got.len(), expect, "{name}");
        if name.contains("delimiter") {
            assert!(matches!(got[0], Listed::Subdir(_)));
        }
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let l = b.list_objects_iter(&p, None).expect("list");
                criterion::black_box(l.len())
            })
        });
    }
    // and the JSON rendering of a page
    let page = b
        .list_objects_iter(
            &ListParams {
                limit: 10_000,
                ..Default::default()
            },
            None,
        )
        .expect("list");
    g.bench_function("render_json_10k", |bench| {
        bench.iter(|| criterion::black_box(cairn_db::format::container_json(&page).len()))
    });
    g.finish();
}

criterion_group!(benches, updates, listing);
criterion_main!(benches);
