//! In-sync DB checks per second (issue 9 evidence): how many container DBs a DB
//! replicator pass checks per second when every DB is already in sync.
//!
//! Two "nodes" on loopback, each with its own devices root: node A (device `sda`) runs
//! the [`DbReplicator`]; node B (device `sdb`) runs the receiving side
//! ([`cairn_db::rpc::replicate`] and whole-DB uploads) behind a real HTTP server, as the
//! container server does. The ring has 2 replicas over 2^8 partitions, A and B are the
//! primaries of every partition. N container DBs (a few object rows each) are created on
//! A; replication passes run until nothing is copied or merged any more (the first pass
//! copies every DB to B); then the timed passes are pure in-sync checks: per DB, commit
//! pending rows, reclaim, read the replication info, one `sync` RPC to B (B opens its
//! DB and answers its info) and the hash comparison.
//!
//! ```text
//! cargo run --release -p cairn-db --example db_replication_pass -- \
//!     [--dbs 2000] [--rows 10] [--concurrency 8] [--rate 0]
//! ```
//!
//! `--rate` is `databases_per_second` (0: unlimited, the default here, to measure the
//! capacity; the daemon's default of 50/s caps a pass at 50 DBs/s by design).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use cairn_common::daemon::Stop;
use cairn_common::http::{self as chttp, RequestBody};
use cairn_common::{HashPathSecret, Timestamp};
use cairn_db::replicator::{DbReplicator, ReplicatorSettings};
use cairn_db::{ContainerBroker, ContainerKind, ObjectRecord};
use cairn_ring::types::{Device, RingData};
use cairn_ring::Ring;
use http::{Request, Response, StatusCode};

const PART_POWER: u8 = 8;

struct Args {
    dbs: usize,
    rows: usize,
    concurrency: usize,
    rate: f64,
}

fn args() -> Args {
    let mut a = Args {
        dbs: 2000,
        rows: 10,
        concurrency: 8,
        rate: 0.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--dbs" => a.dbs = value().parse().expect("--dbs N"),
            "--rows" => a.rows = value().parse().expect("--rows N"),
            "--concurrency" => a.concurrency = value().parse().expect("--concurrency N"),
            "--rate" => a.rate = value().parse().expect("--rate R"),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn device(id: u32, port: u16, name: &str) -> Option<Device> {
    Some(Device {
        id,
        region: 1,
        zone: id + 1,
        ip: "127.0.0.1".into(),
        port,
        replication_ip: "127.0.0.1".into(),
        replication_port: port,
        device: name.into(),
        weight: 1.0,
        meta: String::new(),
    })
}

fn status(s: u16, body: String) -> Response<chttp::Body> {
    let mut r = Response::new(chttp::full(body));
    *r.status_mut() = StatusCode::from_u16(s).expect("status");
    r
}

/// A node's receiving side of DB replication (what the container server runs).
async fn receiver(root: PathBuf) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = chttp::bind("127.0.0.1:0".parse::<SocketAddr>().expect("addr"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let handler = chttp::handler_fn(move |req: Request<RequestBody>| {
        let root = root.clone();
        async move {
            let path = req.uri().path().to_string();
            let method = req.method().as_str().to_string();
            let body = req
                .into_body()
                .collect_limited(256 << 20)
                .await
                .expect("body");
            tokio::task::spawn_blocking(move || {
                if method == "REPLICATE" {
                    let (dev, part, hash) =
                        chttp::parse_db_replicate_path(&path).expect("replicate path");
                    let r =
                        cairn_db::rpc::replicate::<ContainerKind>(&root, &dev, part, &hash, &body);
                    status(r.status, r.body.unwrap_or_default())
                } else if let Some(Ok((dev, name))) = chttp::parse_tmp_path(&path) {
                    let dir = root.join(dev).join("tmp");
                    std::fs::create_dir_all(&dir).expect("tmp dir");
                    std::fs::write(dir.join(name), &body).expect("upload");
                    status(201, String::new())
                } else {
                    status(405, String::new())
                }
            })
            .await
            .expect("handler")
        }
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(chttp::serve(
        listener,
        Arc::new(handler),
        async {
            let _ = rx.await;
        },
        chttp::ServeOptions::new("db-replication-bench"),
    ));
    (addr, tx)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let (root_a, root_b) = (dir.path().join("nodeA"), dir.path().join("nodeB"));
    std::fs::create_dir_all(root_a.join("sda")).expect("sda");
    std::fs::create_dir_all(root_b.join("sdb")).expect("sdb");
    let (addr_a, stop_a) = receiver(root_a.clone()).await;
    let (addr_b, stop_b) = receiver(root_b.clone()).await;
    let parts = 1usize << PART_POWER;
    let ring = Ring::from_data(RingData {
        part_power: PART_POWER,
        replica2part2dev: vec![vec![0; parts], vec![1; parts]],
        devs: vec![
            device(0, addr_a.port(), "sda"),
            device(1, addr_b.port(), "sdb"),
        ],
        version: 1,
    })
    .expect("ring");
    let mut settings = ReplicatorSettings::new(&root_a, vec!["127.0.0.1".into()], addr_a.port());
    settings.concurrency = a.concurrency;
    settings.databases_per_second = a.rate;
    let repl = DbReplicator::<ContainerKind>::new(settings, Arc::new(ring));
    let stop = Stop::new();
    let secret = HashPathSecret::new("", "db-bench");

    let begin = Instant::now();
    let root = root_a.clone();
    let (dbs, rows) = (a.dbs, a.rows);
    tokio::task::spawn_blocking(move || {
        let now = Timestamp::now();
        for i in 0..dbs {
            let container = format!("c{i:06}");
            let digest = secret.digest("AUTH_bench", Some(&container), None);
            let part = cairn_common::partition_of(&digest, PART_POWER);
            let hash = cairn_common::to_hex(&digest);
            let path = cairn_db::db_path(&root, "sda", "containers", part, &hash);
            let (b, _) =
                ContainerBroker::create(path, "AUTH_bench", &container, now, 0).expect("create");
            for r in 0..rows {
                b.put_object(&ObjectRecord::put(
                    &format!("o{r}"),
                    now,
                    r as u64,
                    "text/plain",
                    "d41d8cd98f00b204e9800998ecf8427e",
                ))
                .expect("row");
            }
        }
    })
    .await
    .expect("create DBs");
    println!(
        "created {} container DBs ({} rows each) on node A in {:.1} s",
        a.dbs,
        a.rows,
        begin.elapsed().as_secs_f64()
    );

    // Bring B in sync: the first pass copies every DB whole; repeat until quiet.
    for round in 1..=5 {
        let t = Instant::now();
        let s = repl.run_once(&stop).await;
        println!(
            "sync pass {round}: {:.2} s, {s:?}",
            t.elapsed().as_secs_f64()
        );
        assert_eq!(s.failure, 0, "replication failures: {s:?}");
        if s.rsync == 0 && s.diff == 0 && s.remote_merge == 0 {
            break;
        }
    }

    let mut best = f64::MAX;
    let mut total = 0.0;
    let passes = 3;
    for p in 1..=passes {
        let t = Instant::now();
        let s = repl.run_once(&stop).await;
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(
            (s.failure, s.rsync, s.diff),
            (0, 0, 0),
            "not in sync: {s:?}"
        );
        assert_eq!(s.attempted, a.dbs as u64, "{s:?}");
        println!(
            "in-sync pass {p}: {} DBs in {secs:.2} s = {:.0} DBs/s ({} no_change, {} hashmatch)",
            s.attempted,
            s.attempted as f64 / secs,
            s.no_change,
            s.hashmatch
        );
        best = best.min(secs);
        total += secs;
    }
    println!(
        "in-sync DB checks: {:.0} DBs/s (mean of {passes} passes), best {:.0} DBs/s; \
         concurrency {}, databases_per_second {} (0 = unlimited)",
        a.dbs as f64 * passes as f64 / total,
        a.dbs as f64 / best,
        a.concurrency,
        a.rate
    );
    let _ = stop_a.send(());
    let _ = stop_b.send(());
}
