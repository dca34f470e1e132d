//! The DB replicator against a loopback server that runs the receiving side
//! (`cairn_db::rpc::replicate` and whole-DB uploads), with four devices on one node.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_common::daemon::Stop;
use cairn_common::http::{self as chttp, RequestBody};
use cairn_common::{HashPathSecret, Timestamp};
use cairn_db::replicator::{DbReplicator, ReplicatorSettings};
use cairn_db::{ContainerBroker, ContainerKind, ObjectRecord};
use cairn_ring::types::{Device, RingData};
use cairn_ring::Ring;
use common::ts;
use http::{Request, Response, StatusCode};

fn ring(port: u16) -> Ring {
    let devs = (0..4)
        .map(|i| {
            Some(Device {
                id: i,
                region: 1,
                zone: i + 1,
                ip: "127.0.0.1".into(),
                port,
                replication_ip: "127.0.0.1".into(),
                replication_port: port,
                device: format!("sd{}", (b'a' + i as u8) as char),
                weight: 1.0,
                meta: String::new(),
            })
        })
        .collect();
    // one partition, primaries sda, sdb, sdc; sdd holds nothing (a handoff location)
    Ring::from_data(RingData {
        part_power: 0,
        replica2part2dev: vec![vec![0], vec![1], vec![2]],
        devs,
        version: 1,
    })
    .unwrap()
}

fn status(s: u16, body: String) -> Response<chttp::Body> {
    let mut r = Response::new(chttp::full(body));
    *r.status_mut() = StatusCode::from_u16(s).unwrap();
    r
}

async fn receiver(root: PathBuf) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = chttp::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = chttp::handler_fn(move |req: Request<RequestBody>| {
        let root = root.clone();
        async move {
            let path = req.uri().path().to_string();
            let method = req.method().as_str().to_string();
            let body = req.into_body().collect_limited(256 << 20).await.unwrap();
            tokio::task::spawn_blocking(move || {
                if method == "REPLICATE" {
                    let (dev, part, hash) = chttp::parse_db_replicate_path(&path).unwrap();
                    let r =
                        cairn_db::rpc::replicate::<ContainerKind>(&root, &dev, part, &hash, &body);
                    status(r.status, r.body.unwrap_or_default())
                } else if let Some(Ok((dev, name))) = chttp::parse_tmp_path(&path) {
                    let dir = root.join(dev).join("tmp");
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(dir.join(name), &body).unwrap();
                    status(201, String::new())
                } else {
                    status(405, String::new())
                }
            })
            .await
            .unwrap()
        }
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(chttp::serve(
        listener,
        Arc::new(handler),
        async {
            let _ = rx.await;
        },
        chttp::ServeOptions::new("fake-container-replication"),
    ));
    (addr, tx)
}

fn db_on(root: &Path, dev: &str, hash: &str) -> PathBuf {
    cairn_db::db_path(root, dev, "containers", 0, hash)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_copies_diffs_handoffs_and_reclaims() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    for d in ["sda", "sdb", "sdc", "sdd"] {
        std::fs::create_dir(root.join(d)).unwrap();
    }
    let (addr, stop_srv) = receiver(root.clone()).await;
    let settings = ReplicatorSettings::new(&root, vec!["127.0.0.1".into()], addr.port());
    let repl = DbReplicator::<ContainerKind>::new(settings, Arc::new(ring(addr.port())));
    let stop = Stop::new();
    let secret = HashPathSecret::new("", "changeme");

    // 1. a new DB on sda is copied whole to sdb and sdc
    let hash = secret.hash_path("AUTH_a", Some("c"), None);
    let (a, _) =
        ContainerBroker::create(db_on(&root, "sda", &hash), "AUTH_a", "c", ts(1.0), 0).unwrap();
    for i in 0..5 {
        a.put_object(&ObjectRecord::put(&format!("o{i}"), ts(2.0), i, "t", "e"))
            .unwrap();
    }
    let s = repl.run_once(&stop).await;
    assert_eq!(s.rsync, 2, "{s:?}");
    assert_eq!(s.failure, 0, "{s:?}");
    let ia = a.get_replication_info().unwrap();
    let mut ids = vec![ia.id.clone()];
    for d in ["sdb", "sdc"] {
        let b = ContainerBroker::open(db_on(&root, d, &hash)).unwrap();
        let ib = b.get_replication_info().unwrap();
        assert_eq!((ib.hash.as_str(), ib.count), (ia.hash.as_str(), 5), "{d}");
        ids.push(ib.id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "copies get their own ids");

    // 2. new rows travel as diffs (merge_items) to both others
    for i in 5..8 {
        a.put_object(&ObjectRecord::put(&format!("o{i}"), ts(3.0), i, "t", "e"))
            .unwrap();
    }
    let s = repl.run_once(&stop).await;
    assert!(s.diff >= 2, "{s:?}");
    assert_eq!(s.failure, 0, "{s:?}");
    let ia = a.get_replication_info().unwrap();
    for d in ["sdb", "sdc"] {
        let b = ContainerBroker::open(db_on(&root, d, &hash)).unwrap();
        assert_eq!(b.get_replication_info().unwrap().hash, ia.hash, "{d}");
        assert_eq!(b.get_info().unwrap().object_count, 8);
    }
    // 3. nothing new: in sync
    let s = repl.run_once(&stop).await;
    assert_eq!((s.diff, s.rsync, s.failure), (0, 0, 0), "{s:?}");
    assert_eq!(s.no_change + s.hashmatch, 6, "{s:?}");

    // 4. a DB on a handoff device goes to the primaries and is then removed
    let hash2 = secret.hash_path("AUTH_a", Some("handoff"), None);
    let (h, _) =
        ContainerBroker::create(db_on(&root, "sdd", &hash2), "AUTH_a", "handoff", ts(1.0), 0)
            .unwrap();
    h.put_object(&ObjectRecord::put("x", ts(2.0), 1, "t", "e"))
        .unwrap();
    drop(h);
    let s = repl.run_once(&stop).await;
    assert!(s.remove >= 1, "{s:?}");
    assert!(!db_on(&root, "sdd", &hash2).exists());
    for d in ["sda", "sdb", "sdc"] {
        let b = ContainerBroker::open(db_on(&root, d, &hash2)).unwrap();
        assert_eq!(b.get_info().unwrap().object_count, 1, "{d}");
    }

    // 5. a long-deleted, reported container is reclaimed everywhere
    for d in ["sda", "sdb", "sdc"] {
        let b = ContainerBroker::open(db_on(&root, d, &hash2)).unwrap();
        b.delete_object("x", ts(3.0), 0).unwrap();
        b.delete_db(ts(4.0)).unwrap();
        b.reported(ts(1.0), ts(4.0), 0, 0).unwrap();
    }
    let s = repl.run_once(&stop).await;
    assert_eq!(s.remove, 3, "{s:?}");
    for d in ["sda", "sdb", "sdc"] {
        assert!(!db_on(&root, d, &hash2).exists(), "{d}");
    }
    // the live container is untouched
    assert!(db_on(&root, "sda", &hash).exists());
    // stale temporaries are cleaned (fresh ones are kept)
    let hash_dir = db_on(&root, "sda", &hash).parent().unwrap().to_path_buf();
    let stale = hash_dir.join("dead.tmp");
    std::fs::write(&stale, b"x").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(700_000);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    std::fs::write(hash_dir.join("fresh.tmp"), b"x").unwrap();
    let _ = repl.run_once(&stop).await;
    assert!(!stale.exists());
    assert!(hash_dir.join("fresh.tmp").exists());
    std::fs::remove_file(hash_dir.join("fresh.tmp")).unwrap();
    // no snapshots or uploads left behind
    for d in ["sda", "sdb", "sdc", "sdd"] {
        let left: Vec<_> = std::fs::read_dir(root.join(d).join("tmp"))
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{d}: {left:?}");
    }
    let _ = stop_srv.send(());
    let _ = Timestamp::ZERO;
}
