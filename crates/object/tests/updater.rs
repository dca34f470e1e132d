//! The object-updater against a loopback fake container server.

use std::collections::HashSet;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cairn_common::daemon::Stop;
use cairn_common::http::{self as chttp, RequestBody, ServerHandle};
use cairn_common::recon::ReconCache;
use cairn_common::{suffix_of, HashPathSecret, Timestamp};
use cairn_object::async_pending::{self, AsyncOp, AsyncPending};
use cairn_object::layout::PolicyPaths;
use cairn_object::updater::{ObjectUpdater, UpdaterSettings, UpdaterStats};
use cairn_ring::types::{Device, RingData};
use cairn_ring::Ring;
use http::{HeaderMap, Method, Request, StatusCode};
use tempfile::TempDir;

/// What the fake container server saw: method, path, headers.
type Seen = Arc<Mutex<Vec<(Method, String, HeaderMap)>>>;

struct Fake {
    seen: Seen,
    /// Devices that answer 503.
    failing: Arc<Mutex<HashSet<String>>>,
    server: ServerHandle,
}

impl Fake {
    async fn start() -> Fake {
        let seen: Seen = Arc::default();
        let failing: Arc<Mutex<HashSet<String>>> = Arc::default();
        let (s2, f2) = (seen.clone(), failing.clone());
        let handler = chttp::handler_fn(move |req: Request<RequestBody>| {
            let (seen, failing) = (s2.clone(), f2.clone());
            async move {
                let path = req.uri().path().to_string();
                let dev = path.split('/').nth(1).unwrap_or("").to_string();
                seen.lock()
                    .unwrap()
                    .push((req.method().clone(), path, req.headers().clone()));
                let mut r = http::Response::new(chttp::empty());
                *r.status_mut() = if failing.lock().unwrap().contains(&dev) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else if req.method() == Method::DELETE {
                    StatusCode::NO_CONTENT
                } else {
                    StatusCode::CREATED
                };
                r
            }
        });
        let server = chttp::spawn_server(
            "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
            Arc::new(handler),
            chttp::ServeOptions::new("fake-container"),
        )
        .await
        .unwrap();
        Fake {
            seen,
            failing,
            server,
        }
    }

    fn port(&self) -> u16 {
        self.server.addr().port()
    }

    fn take(&self) -> Vec<(Method, String, HeaderMap)> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// Three container devices sdx0..2 on one loopback port, every partition on all three.
fn ring(port: u16) -> Ring {
    let devs = (0..3)
        .map(|i| {
            Some(Device {
                id: i,
                region: 1,
                zone: i + 1,
                ip: "127.0.0.1".into(),
                port,
                replication_ip: "127.0.0.1".into(),
                replication_port: port,
                device: format!("sdx{i}"),
                weight: 1.0,
                meta: String::new(),
            })
        })
        .collect();
    Ring::from_data(RingData {
        part_power: 2,
        replica2part2dev: vec![vec![0, 1, 2, 0], vec![1, 2, 0, 1], vec![2, 0, 1, 2]],
        devs,
        version: 1,
    })
    .unwrap()
}

fn secret() -> HashPathSecret {
    HashPathSecret::new("", "changeme")
}

fn setup(port: u16) -> (TempDir, ObjectUpdater) {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("sda")).unwrap();
    let mut s = UpdaterSettings::new(dir.path());
    s.objects_per_second = 0.0;
    s.recon_cache_path = Some(dir.path().join("recon"));
    let up = ObjectUpdater::new(s, Arc::new(ring(port)), secret());
    (dir, up)
}

fn pending(op: AsyncOp, obj: &str, ts: Timestamp) -> AsyncPending {
    let mut headers = vec![("x-timestamp".to_string(), ts.internal())];
    if op == AsyncOp::Put {
        headers.extend([
            ("x-size".to_string(), "3".to_string()),
            ("x-content-type".to_string(), "text/plain".to_string()),
            (
                "x-etag".to_string(),
                "900150983cd24fb0d6963f7d28e17f72".to_string(),
            ),
            ("x-trans-id".to_string(), "tx123".to_string()),
        ]);
    }
    AsyncPending {
        op,
        account: "AUTH_a".into(),
        container: "c".into(),
        obj: obj.into(),
        headers,
        successes: Vec::new(),
    }
}

fn write(dev: &Path, policy: u32, p: &AsyncPending, ts: Timestamp) -> std::path::PathBuf {
    let hash = secret().hash_path(&p.account, Some(&p.container), Some(&p.obj));
    async_pending::write_pending(&PolicyPaths::new(dev, policy), &hash, ts, p).unwrap()
}

fn cpart(port: u16) -> u32 {
    ring(port).get_part(&secret(), "AUTH_a", Some("c"), None)
}

#[tokio::test]
async fn delivers_to_every_primary_and_unlinks() {
    let fake = Fake::start().await;
    let (dir, up) = setup(fake.port());
    let dev = dir.path().join("sda");
    let ts = Timestamp::from_secs(1_700_000_000);
    let f0 = write(&dev, 0, &pending(AsyncOp::Put, "o", ts), ts);
    // a policy-1 pending that carries no policy header gets its directory's
    let f1 = write(&dev, 1, &pending(AsyncOp::Delete, "p/q", ts), ts);

    let stats = up.run_once(&Stop::new()).await;
    assert_eq!(
        stats,
        UpdaterStats {
            successes: 2,
            unlinks: 2,
            ..UpdaterStats::default()
        }
    );
    assert!(!f0.exists() && !f1.exists());
    assert!(!f0.parent().unwrap().exists(), "empty suffix dir removed");
    assert!(!f1.parent().unwrap().exists(), "empty suffix dir removed");

    let part = cpart(fake.port());
    let mut seen = fake.take();
    seen.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(seen.len(), 6);
    let puts: Vec<_> = seen.iter().filter(|s| s.0 == Method::PUT).collect();
    let dels: Vec<_> = seen.iter().filter(|s| s.0 == Method::DELETE).collect();
    assert_eq!(
        puts.iter().map(|s| s.1.clone()).collect::<Vec<_>>(),
        (0..3)
            .map(|i| format!("/sdx{i}/{part}/AUTH_a/c/o"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        dels.iter().map(|s| s.1.clone()).collect::<Vec<_>>(),
        (0..3)
            .map(|i| format!("/sdx{i}/{part}/AUTH_a/c/p/q"))
            .collect::<Vec<_>>()
    );
    for (_, _, h) in &puts {
        let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
        // the saved timestamp is sent unchanged
        assert_eq!(get("x-timestamp"), ts.internal());
        assert_eq!(get("x-size"), "3");
        assert_eq!(get("x-etag"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(get("x-trans-id"), "tx123");
        assert_eq!(get("x-backend-storage-policy-index"), "0");
        assert_eq!(
            get("user-agent"),
            format!("object-updater {}", std::process::id())
        );
    }
    for (_, _, h) in &dels {
        assert_eq!(h.get("x-backend-storage-policy-index").unwrap(), "1");
        assert_eq!(h.get("x-timestamp").unwrap(), ts.internal().as_str());
    }

    // recon: sweep time and nothing left
    let cache = ReconCache::new(&dir.path().join("recon"), "object");
    let upd = cache.get("updater").unwrap();
    assert!(upd["object_updater_sweep"].as_f64().is_some());
    assert_eq!(upd["object_updater_stats"]["successes"], 2);
    assert_eq!(cache.get("async_pending").unwrap(), 0);

    // nothing to do on the next pass
    let stats = up.run_once(&Stop::new()).await;
    assert_eq!(stats, UpdaterStats::default());
    assert!(fake.take().is_empty());
}

#[tokio::test]
async fn failing_node_keeps_the_file_with_successes() {
    let fake = Fake::start().await;
    let (dir, up) = setup(fake.port());
    let dev = dir.path().join("sda");
    let ts = Timestamp::from_secs(1_700_000_100);
    let f = write(&dev, 0, &pending(AsyncOp::Put, "o", ts), ts);
    fake.failing.lock().unwrap().insert("sdx1".into());

    let stats = up.run_once(&Stop::new()).await;
    assert_eq!((stats.successes, stats.failures, stats.unlinks), (0, 1, 0));
    assert_eq!(stats.remaining, 1);
    assert_eq!(fake.take().len(), 3);
    let kept = async_pending::read_pending(&f).unwrap();
    assert_eq!(kept.successes, vec![0, 2]);
    assert_eq!(kept.headers, pending(AsyncOp::Put, "o", ts).headers);
    let cache = ReconCache::new(&dir.path().join("recon"), "object");
    assert_eq!(cache.get("async_pending").unwrap(), 1);

    // still failing: only the missing node is retried, the file stays
    let stats = up.run_once(&Stop::new()).await;
    assert_eq!((stats.successes, stats.failures), (0, 1));
    let seen = fake.take();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].1.starts_with("/sdx1/"));
    assert_eq!(
        async_pending::read_pending(&f).unwrap().successes,
        vec![0, 2]
    );

    // the node recovers: delivered and unlinked
    fake.failing.lock().unwrap().clear();
    let stats = up.run_once(&Stop::new()).await;
    assert_eq!((stats.successes, stats.failures, stats.unlinks), (1, 0, 1));
    let seen = fake.take();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].1.starts_with("/sdx1/"));
    assert!(!f.exists());
}

#[tokio::test]
async fn unreachable_node_is_a_failure() {
    // A ring whose devices point at a port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let (dir, up) = setup(port);
    let dev = dir.path().join("sda");
    let ts = Timestamp::from_secs(1_700_000_150);
    let f = write(&dev, 0, &pending(AsyncOp::Put, "o", ts), ts);
    let stats = up.run_once(&Stop::new()).await;
    assert_eq!((stats.successes, stats.failures), (0, 1));
    assert!(f.exists());
    assert!(async_pending::read_pending(&f)
        .unwrap()
        .successes
        .is_empty());
}

#[tokio::test]
async fn superseded_older_pendings_are_unlinked() {
    let fake = Fake::start().await;
    let (dir, up) = setup(fake.port());
    let dev = dir.path().join("sda");
    let t1 = Timestamp::from_secs(1_700_000_200);
    let t2 = Timestamp::from_secs(1_700_000_201);
    let t3 = Timestamp::from_secs(1_700_000_202);
    let old1 = write(&dev, 0, &pending(AsyncOp::Put, "o", t1), t1);
    let old2 = write(&dev, 0, &pending(AsyncOp::Put, "o", t2), t2);
    let newest = write(&dev, 0, &pending(AsyncOp::Delete, "o", t3), t3);
    assert_eq!(old1.parent(), newest.parent());

    let stats = up.run_once(&Stop::new()).await;
    assert_eq!((stats.successes, stats.unlinks, stats.failures), (1, 3, 0));
    assert!(!old1.exists() && !old2.exists() && !newest.exists());
    let seen = fake.take();
    assert_eq!(seen.len(), 3);
    for (m, _, h) in &seen {
        assert_eq!(*m, Method::DELETE);
        assert_eq!(h.get("x-timestamp").unwrap(), t3.internal().as_str());
    }
}

#[tokio::test]
async fn corrupt_pending_is_quarantined() {
    let fake = Fake::start().await;
    let (dir, up) = setup(fake.port());
    let dev = dir.path().join("sda");
    let ts = Timestamp::from_secs(1_700_000_300);
    let f = write(&dev, 0, &pending(AsyncOp::Put, "o", ts), ts);
    let mut bytes = fs::read(&f).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&f, &bytes).unwrap();
    let name = f.file_name().unwrap().to_owned();

    let stats = up.run_once(&Stop::new()).await;
    assert_eq!(
        stats,
        UpdaterStats {
            quarantines: 1,
            ..UpdaterStats::default()
        }
    );
    assert!(!f.exists());
    assert!(dev.join("quarantined/objects").join(&name).exists());
    assert!(fake.take().is_empty());
    let hash = secret().hash_path("AUTH_a", Some("c"), Some("o"));
    assert!(!dev.join("async_pending").join(suffix_of(&hash)).exists());
}

#[tokio::test]
async fn stopped_pass_does_nothing() {
    let fake = Fake::start().await;
    let (dir, up) = setup(fake.port());
    let dev = dir.path().join("sda");
    let ts = Timestamp::from_secs(1_700_000_400);
    let f = write(&dev, 0, &pending(AsyncOp::Put, "o", ts), ts);
    let stop = Stop::new();
    stop.stop();
    let stats = up.run_once(&stop).await;
    assert_eq!(stats, UpdaterStats::default());
    assert!(f.exists());
    assert!(fake.take().is_empty());
}

/// What the object server saves is what the updater replays: a PUT and a later DELETE
/// of one object without container targets leave two pendings; only the DELETE (the
/// newest) is sent, with the object server's headers.
#[tokio::test]
async fn replays_what_the_object_server_saved() {
    use cairn_common::http::Handler;
    use cairn_object::server::{ObjectServer, ObjectServerSettings};
    use cairn_object::DiskConfig;

    let fake = Fake::start().await;
    let (dir, up) = setup(fake.port());
    let server = ObjectServer::new(
        ObjectServerSettings {
            disk: DiskConfig {
                devices: dir.path().to_path_buf(),
                mount_check: false,
                fallocate_reserve: cairn_common::fs::FallocateReserve::NONE,
                ..DiskConfig::default()
            },
            ..ObjectServerSettings::default()
        },
        secret(),
    );
    let t1 = Timestamp::from_secs(Timestamp::now().secs() - 100);
    let t2 = Timestamp::from_secs(t1.secs() + 1);
    for (method, t, status) in [
        ("PUT", t1, StatusCode::CREATED),
        ("DELETE", t2, StatusCode::NO_CONTENT),
    ] {
        let req = Request::builder()
            .method(method)
            .uri("/sda/3/AUTH_a/c/o")
            .header("X-Timestamp", t.internal())
            .header("Content-Type", "text/plain")
            .header("Content-Length", "3")
            .header("X-Backend-Storage-Policy-Index", "1")
            .header("X-Trans-Id", "tx-e2e")
            .body(RequestBody::from(bytes::Bytes::from_static(
                if method == "PUT" { b"abc" } else { b"" },
            )))
            .unwrap();
        let resp = server.handle(req).await;
        assert_eq!(resp.status(), status);
    }
    let paths = PolicyPaths::new(dir.path().join("sda"), 1);
    let hash = secret().hash_path("AUTH_a", Some("c"), Some("o"));
    // the saves run beside the responses: wait (bounded) for both files
    let mut files = Vec::new();
    for _ in 0..200 {
        files = async_pending::list_suffix(&paths, suffix_of(&hash)).unwrap();
        if files.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(files.len(), 2, "two async pendings saved");

    let stats = up.run_once(&Stop::new()).await;
    assert_eq!((stats.successes, stats.unlinks, stats.failures), (1, 2, 0));
    assert!(async_pending::list_suffix(&paths, suffix_of(&hash))
        .unwrap()
        .is_empty());
    let seen = fake.take();
    assert_eq!(seen.len(), 3);
    let part = cpart(fake.port());
    for (m, path, h) in &seen {
        assert_eq!(*m, Method::DELETE);
        assert!(path.ends_with(&format!("/{part}/AUTH_a/c/o")), "{path}");
        assert_eq!(h.get("x-timestamp").unwrap(), t2.internal().as_str());
        assert_eq!(h.get("x-backend-storage-policy-index").unwrap(), "1");
        assert_eq!(h.get("x-trans-id").unwrap(), "tx-e2e");
        assert_eq!(h.get("referer").unwrap(), "DELETE /sda/3/AUTH_a/c/o");
    }
}

/// `run_object_updater(config, once)` reads `object-server.toml`, its cluster file and
/// `RING_DIR/container.ring`, and does one pass.
#[tokio::test]
async fn entry_point_runs_one_pass_from_the_config_file() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("node/sda")).unwrap();
    fs::create_dir_all(root.join("rings")).unwrap();
    let data = RingData {
        part_power: 2,
        replica2part2dev: vec![vec![0, 1, 2, 0], vec![1, 2, 0, 1], vec![2, 0, 1, 2]],
        devs: ring(fake.port()).devs().to_vec(),
        version: 1,
    };
    cairn_ring::file::write_file(
        cairn_ring::file::RING_MAGIC,
        &root.join("rings/container.ring"),
        &data,
        true,
    )
    .unwrap();
    fs::write(
        root.join("cairn.toml"),
        "[cluster]\nhash_path_suffix = \"changeme\"\nring_dir = \"rings\"\n",
    )
    .unwrap();
    fs::write(
        root.join("object-server.toml"),
        "[server]\ndevices = \"node\"\nrecon_cache_path = \"recon\"\n\
         cluster_config = \"cairn.toml\"\n\n[object-updater]\nobjects_per_second = 0\n",
    )
    .unwrap();
    let ts = Timestamp::from_secs(1_700_000_500);
    let f = write(
        &root.join("node/sda"),
        0,
        &pending(AsyncOp::Put, "o", ts),
        ts,
    );

    cairn_object::updater::run_object_updater(&root.join("object-server.toml"), true)
        .await
        .unwrap();
    assert!(!f.exists());
    assert_eq!(fake.take().len(), 3);
    let cache = ReconCache::new(&root.join("recon"), "object");
    assert_eq!(cache.get("async_pending").unwrap(), 0);
    assert!(cache.get("updater").unwrap()["object_updater_sweep"].is_number());

    // a missing ring is a start-up error
    fs::remove_file(root.join("rings/container.ring")).unwrap();
    assert!(
        cairn_object::updater::run_object_updater(&root.join("object-server.toml"), true)
            .await
            .is_err()
    );
}
