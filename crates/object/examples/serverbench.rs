//! Object server figures over real HTTP: starts an [`ObjectServer`] in-process on
//! `127.0.0.1:0` over a temporary devices dir (on disk: `$SERVERBENCH_DIR`, else
//! `$TMPDIR`), plus a fake container server answering 201 (so PUTs do their container
//! update and save no async pendings), and drives it with the pooled hyper client:
//!
//! - `N` (5,000) 4 KiB PUTs and then GETs at concurrency 16 → requests/s and latencies;
//! - one 256 MiB PUT (body generated and streamed) and GET (read as it streams) → MB/s.
//!
//! `cargo run --release -p cairn-object --example serverbench [-- N [BIG_MIB]]`;
//! `SERVERBENCH_DROP_CACHES=1` drops the page cache before the GETs (root only).
//! `cargo run --release -p cairn-object --example serverbench -- md5 FILE` hashes FILE
//! with the md-5 crate (1 MiB reads) and prints MB/s (compare with `md5sum FILE`).

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_common::http::{self as chttp, BackendClient, Timeouts};
use cairn_common::{HashPathSecret, Timestamp};
use cairn_object::server::{ObjectServer, ObjectServerSettings};
use cairn_object::DiskConfig;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use md5::{Digest, Md5};

const CONCURRENCY: usize = 16;
const SMALL: usize = 4096;

fn headers(pairs: &[(&str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn md5_file(path: &str) {
    let mut f = std::fs::File::open(path).expect("open");
    let mut buf = vec![0u8; 1 << 20];
    let mut h = Md5::new();
    let mut total = 0u64;
    let t = Instant::now();
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "md-5 crate: {} {path}: {total} bytes in {secs:.3} s = {:.0} MB/s",
        cairn_common::to_hex(&h.finalize()),
        total as f64 / secs / 1e6
    );
}

struct Lat(Vec<Duration>);

impl Lat {
    fn pct(&mut self, p: f64) -> f64 {
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i].as_secs_f64() * 1e3
    }
}

/// Run `n` requests at concurrency 16; `f(i)` sends request `i` and checks it.
async fn drive<F, Fut>(n: usize, f: F) -> (f64, Lat)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (f, next) = (f.clone(), next.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return lat;
                    }
                    let t = Instant::now();
                    f(i).await;
                    lat.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for w in workers {
        all.extend(w.await.unwrap());
    }
    (n as f64 / t.elapsed().as_secs_f64(), Lat(all))
}

fn drop_caches() {
    if std::env::var_os("SERVERBENCH_DROP_CACHES").is_some() {
        // SAFETY-free best effort: needs root and a writable /proc/sys.
        let ok = std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok();
        println!(
            "(drop_caches before GETs: {})",
            if ok { "done" } else { "not permitted" }
        );
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("md5") {
        md5_file(args.get(1).expect("md5 FILE"));
        return;
    }
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let big_mib: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(256);

    let base = std::env::var_os("SERVERBENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&base).expect("temp dir");
    std::fs::create_dir(dir.path().join("sda")).unwrap();
    let settings = ObjectServerSettings {
        disk: DiskConfig {
            devices: dir.path().to_path_buf(),
            mount_check: false,
            fallocate_reserve: cairn_common::fs::FallocateReserve::NONE,
            ..DiskConfig::default()
        },
        ..ObjectServerSettings::default()
    };
    println!(
        "devices dir {} (device_concurrency {}), {} cores",
        dir.path().display(),
        settings.device_pool.concurrency,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let server = ObjectServer::new(settings, HashPathSecret::new("", "bench"));
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let srv = chttp::spawn_server(
        any,
        Arc::new(server),
        chttp::ServeOptions::new("object-server"),
    )
    .await
    .unwrap();
    let container = chttp::spawn_server(
        any,
        Arc::new(chttp::handler_fn(|_req| async {
            let mut r = Response::new(chttp::empty());
            *r.status_mut() = StatusCode::CREATED;
            r
        })),
        chttp::ServeOptions::new("container-server"),
    )
    .await
    .unwrap();
    let addr = srv.addr().to_string();
    let caddr = container.addr().to_string();
    let client = BackendClient::new(Timeouts {
        conn: Duration::from_secs(2),
        node: Duration::from_secs(120),
    });
    let t0 = Timestamp::now().secs() - 1000;

    // ----- 4 KiB PUTs -----
    let small = Bytes::from((0..SMALL).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let (put_rate, mut put_lat) = {
        let (client, addr, caddr, small) =
            (client.clone(), addr.clone(), caddr.clone(), small.clone());
        drive(n, move |i| {
            let (client, addr, small) = (client.clone(), addr.clone(), small.clone());
            let h = headers(&[
                ("x-timestamp", Timestamp::from_secs(t0).internal()),
                ("content-type", "application/octet-stream".into()),
                ("content-length", SMALL.to_string()),
                ("x-container-host", caddr.clone()),
                ("x-container-device", "sdc".into()),
                ("x-container-partition", "0".into()),
            ]);
            async move {
                let r = client
                    .request(
                        Method::PUT,
                        &addr,
                        &format!("/sda/0/a/c/o{i}"),
                        h,
                        chttp::full(small),
                    )
                    .await
                    .unwrap();
                assert_eq!(r.status, StatusCode::CREATED);
            }
        })
        .await
    };
    drop_caches();
    // ----- 4 KiB GETs -----
    let (get_rate, mut get_lat) = {
        let (client, addr) = (client.clone(), addr.clone());
        drive(n, move |i| {
            let (client, addr) = (client.clone(), addr.clone());
            async move {
                let r = client
                    .request(
                        Method::GET,
                        &addr,
                        &format!("/sda/0/a/c/o{i}"),
                        HeaderMap::new(),
                        chttp::empty(),
                    )
                    .await
                    .unwrap();
                assert_eq!(r.status, StatusCode::OK);
                assert_eq!(r.bytes(1 << 20).await.unwrap().len(), SMALL);
            }
        })
        .await
    };

    // ----- big PUT -----
    let big = big_mib << 20;
    let piece = Bytes::from((0..(1 << 20)).map(|i| (i % 241) as u8).collect::<Vec<u8>>());
    let (tx, body) = chttp::channel(8);
    let feeder = {
        let piece = piece.clone();
        tokio::spawn(async move {
            for _ in 0..big_mib {
                if tx.send(piece.clone()).await.is_err() {
                    return;
                }
            }
        })
    };
    let t = Instant::now();
    let r = client
        .request(
            Method::PUT,
            &addr,
            "/sda/0/a/c/big",
            headers(&[
                ("x-timestamp", Timestamp::from_secs(t0).internal()),
                ("content-type", "application/octet-stream".into()),
                ("content-length", big.to_string()),
                ("x-container-host", caddr.clone()),
                ("x-container-device", "sdc".into()),
                ("x-container-partition", "0".into()),
            ]),
            body,
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::CREATED, "big PUT");
    let put_secs = t.elapsed().as_secs_f64();
    feeder.await.unwrap();
    drop_caches();
    // ----- big GET -----
    let t = Instant::now();
    let r = client
        .request(
            Method::GET,
            &addr,
            "/sda/0/a/c/big",
            HeaderMap::new(),
            chttp::empty(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let mut body = r.body;
    let mut got = 0usize;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.expect("GET body").into_data() {
            got += d.len();
        }
    }
    assert_eq!(got, big, "big GET length");
    let get_secs = t.elapsed().as_secs_f64();

    println!();
    println!("| operation (concurrency {CONCURRENCY}) | result | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    println!(
        "| {n} × 4 KiB PUT | {put_rate:.0} req/s | {:.2} | {:.2} |",
        put_lat.pct(0.5),
        put_lat.pct(0.99)
    );
    println!(
        "| {n} × 4 KiB GET | {get_rate:.0} req/s | {:.2} | {:.2} |",
        get_lat.pct(0.5),
        get_lat.pct(0.99)
    );
    println!(
        "| 1 × {big_mib} MiB PUT (streamed, fsync) | {:.0} MB/s | {:.0} total | |",
        big as f64 / put_secs / 1e6,
        put_secs * 1e3
    );
    println!(
        "| 1 × {big_mib} MiB GET (streamed, MD5-verified) | {:.0} MB/s | {:.0} total | |",
        big as f64 / get_secs / 1e6,
        get_secs * 1e3
    );
    let _ = srv.shutdown().await;
    let _ = container.shutdown().await;
}
