//! Object replicator tests: four real object servers on 127.0.0.1 (port 0), a real ring
//! file (part power 2, 3 replicas: partition `p` lives on nodes `p, p+1, p+2` mod 4, and
//! node `p+3` is its handoff), and replicator passes run in-process for one node at a time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_common::daemon::Stop;
use cairn_common::http::{self as chttp, Handler, RequestBody, ServeOptions, ServerHandle};
use cairn_common::{HashPathSecret, Timestamp};
use cairn_object::config::{HandoffDelete, ReplicatorSection};
use cairn_object::replicator::{ObjectReplicator, PassStats, ReplicatorSettings};
use cairn_object::server::{ObjectServer, ObjectServerSettings};
use cairn_object::DiskConfig;
use cairn_ring::file::{write_file, RING_MAGIC};
use cairn_ring::{Device, RingData, RingWatcher};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tempfile::TempDir;

const PART: u32 = 1;
const SECRET: &str = "changeme";

fn secret() -> HashPathSecret {
    HashPathSecret::new("", SECRET)
}

/// Timestamps a little in the past (never reclaimable, never in the future).
fn ts(s: u64) -> Timestamp {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    Timestamp::from_secs(*BASE.get_or_init(|| Timestamp::now().secs() - 10_000) + s)
}

struct Node {
    dir: TempDir,
    server: Arc<ObjectServer>,
    handle: Option<ServerHandle>,
    port: u16,
}

impl Node {
    fn disk(&self) -> DiskConfig {
        DiskConfig {
            devices: self.dir.path().to_path_buf(),
            mount_check: false,
            fallocate_reserve: cairn_common::fs::FallocateReserve::NONE,
            ..DiskConfig::default()
        }
    }

    fn part_dir(&self, part: u32) -> PathBuf {
        self.dir.path().join("sda/objects").join(part.to_string())
    }
}

struct Cluster {
    nodes: Vec<Node>,
    _ring_dir: TempDir,
    ring: Arc<RingWatcher>,
    recon: TempDir,
}

async fn cluster() -> Cluster {
    cluster_with(2).await
}

/// Four nodes; partition `p` of `2^part_power` lives on nodes `p, p+1, p+2` mod 4.
async fn cluster_with(part_power: u8) -> Cluster {
    let mut nodes = Vec::new();
    for _ in 0..4 {
        let dir = tempfile::tempdir().unwrap();
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
        let server = Arc::new(ObjectServer::new(settings, secret()));
        let handle = chttp::spawn_server(
            "127.0.0.1:0".parse().unwrap(),
            server.clone(),
            ServeOptions::new("object-server"),
        )
        .await
        .unwrap();
        let port = handle.addr().port();
        nodes.push(Node {
            dir,
            server,
            handle: Some(handle),
            port,
        });
    }
    let devs = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            Some(Device {
                id: i as u32,
                region: 1,
                zone: i as u32 + 1,
                ip: "127.0.0.1".into(),
                port: n.port,
                replication_ip: "127.0.0.1".into(),
                replication_port: n.port,
                device: "sda".into(),
                weight: 1.0,
                meta: String::new(),
            })
        })
        .collect();
    let parts = 1u32 << part_power;
    let rows = (0..3u32)
        .map(|r| (0..parts).map(|p| ((p + r) % 4) as u16).collect())
        .collect();
    let data = RingData {
        part_power,
        replica2part2dev: rows,
        devs,
        version: 1,
    };
    let ring_dir = tempfile::tempdir().unwrap();
    let path = ring_dir.path().join("object.ring");
    write_file(RING_MAGIC, &path, &data, true).unwrap();
    let ring = Arc::new(RingWatcher::new(&path).unwrap());
    Cluster {
        nodes,
        _ring_dir: ring_dir,
        ring,
        recon: tempfile::tempdir().unwrap(),
    }
}

impl Cluster {
    fn replicator_with(
        &self,
        i: usize,
        f: impl FnOnce(&mut ReplicatorSection),
    ) -> Arc<ObjectReplicator> {
        let mut conf = ReplicatorSection {
            node_timeout: 2.0,
            http_timeout: 5.0,
            concurrency: 2,
            ..ReplicatorSection::default()
        };
        f(&mut conf);
        let settings = ReplicatorSettings {
            disk: self.nodes[i].disk(),
            bind_ip: "127.0.0.1".parse().unwrap(),
            bind_port: self.nodes[i].port,
            conf,
            recon_cache_path: Some(self.recon.path().join(i.to_string())),
            only_devices: None,
            only_partitions: None,
        };
        ObjectReplicator::new(settings, secret(), vec![(0, self.ring.clone())])
    }

    async fn pass(&self, i: usize) -> PassStats {
        let r = self.replicator_with(i, |_| {});
        tokio::time::timeout(Duration::from_secs(60), r.run_pass(&Stop::new()))
            .await
            .expect("pass finished in time")
    }
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
}

impl Resp {
    fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn call(
    node: &Node,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> (Resp, Bytes) {
    let mut b = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(RequestBody::from(Bytes::from_static(body))).unwrap();
    let resp = node.server.handle(req).await;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    (
        Resp {
            status: parts.status,
            headers: parts.headers,
        },
        body,
    )
}

fn obj(name: &str) -> String {
    format!("/sda/{PART}/AUTH_test/c/{name}")
}

async fn put(node: &Node, name: &str, t: Timestamp, body: &'static [u8], extra: &[(&str, &str)]) {
    let its = t.internal();
    let len = body.len().to_string();
    let mut h = vec![
        ("X-Timestamp", its.as_str()),
        ("Content-Type", "text/plain"),
        ("Content-Length", len.as_str()),
    ];
    h.extend_from_slice(extra);
    let (r, _) = call(node, "PUT", &obj(name), &h, body).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

async fn head(node: &Node, name: &str) -> Resp {
    call(node, "HEAD", &obj(name), &[], b"").await.0
}

async fn get_body(node: &Node, name: &str) -> Bytes {
    let (r, b) = call(node, "GET", &obj(name), &[], b"").await;
    assert_eq!(r.status, StatusCode::OK);
    b
}

/// Primaries of PART are nodes 1, 2, 3; node 0 is its handoff.
const PRIMARIES: [usize; 3] = [1, 2, 3];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_on_one_primary_reaches_all() {
    let c = cluster().await;
    put(
        &c.nodes[1],
        "o1",
        ts(1),
        b"hello world",
        &[("X-Object-Meta-Color", "blue")],
    )
    .await;
    put(&c.nodes[1], "o2", ts(2), b"", &[]).await;
    assert_eq!(head(&c.nodes[2], "o1").await.status, StatusCode::NOT_FOUND);

    let st = c.pass(1).await;
    assert_eq!(st.update_jobs, 1);
    assert_eq!(st.totals.ssync, 2, "{st:?}");
    assert_eq!(st.totals.objects_pushed, 4, "{st:?}");
    assert_eq!(st.totals.failure, 0, "{st:?}");
    for i in PRIMARIES {
        let r = head(&c.nodes[i], "o1").await;
        assert_eq!(r.status, StatusCode::OK, "node {i}");
        assert_eq!(r.h("X-Object-Meta-Color"), Some("blue"));
        assert_eq!(r.h("X-Timestamp"), Some(ts(1).normal().as_str()));
        assert_eq!(
            get_body(&c.nodes[i], "o1").await,
            Bytes::from_static(b"hello world")
        );
        assert_eq!(head(&c.nodes[i], "o2").await.status, StatusCode::OK);
    }
    // The handoff got nothing.
    assert!(!c.nodes[0].part_dir(PART).exists());
    // Recon was written.
    let recon = cairn_common::recon::ReconCache::new(&c.recon.path().join("1"), "object");
    let sec = recon.get("replication").unwrap();
    assert!(sec["object_replication_last"].as_f64().unwrap() > 0.0);
    assert_eq!(sec["replication_stats"]["ssync"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstone_propagates_and_removes_older_data() {
    let c = cluster().await;
    for i in PRIMARIES {
        put(&c.nodes[i], "o", ts(1), b"data", &[]).await;
    }
    let t2 = ts(2).internal();
    let (r, _) = call(
        &c.nodes[2],
        "DELETE",
        &obj("o"),
        &[("X-Timestamp", &t2)],
        b"",
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    let st = c.pass(2).await;
    assert_eq!(st.totals.failure, 0, "{st:?}");
    assert_eq!(st.totals.objects_pushed, 2, "{st:?}");
    for i in PRIMARIES {
        let r = head(&c.nodes[i], "o").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "node {i}");
        assert_eq!(r.h("X-Backend-Timestamp"), Some(t2.as_str()), "node {i}");
        // Only the tombstone is left in the hash dir.
        let part = c.nodes[i].part_dir(PART);
        let mut files = Vec::new();
        for s in std::fs::read_dir(&part).unwrap().flatten() {
            if s.path().is_dir() {
                for h in std::fs::read_dir(s.path()).unwrap().flatten() {
                    for f in std::fs::read_dir(h.path()).unwrap().flatten() {
                        files.push(f.file_name().into_string().unwrap());
                    }
                }
            }
        }
        assert_eq!(files, vec![format!("{t2}.ts")], "node {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_meta_propagates() {
    let c = cluster().await;
    for i in PRIMARIES {
        put(
            &c.nodes[i],
            "o",
            ts(1),
            b"data",
            &[("X-Object-Meta-Color", "blue")],
        )
        .await;
    }
    let t2 = ts(2).internal();
    let (r, _) = call(
        &c.nodes[3],
        "POST",
        &obj("o"),
        &[("X-Timestamp", &t2), ("X-Object-Meta-Color", "red")],
        b"",
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);

    let st = c.pass(3).await;
    assert_eq!(st.totals.failure, 0, "{st:?}");
    // Only POSTs: the data was already there.
    assert_eq!(st.totals.objects_pushed, 2, "{st:?}");
    assert_eq!(st.totals.bytes_pushed, 0, "{st:?}");
    for i in PRIMARIES {
        let r = head(&c.nodes[i], "o").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.h("X-Object-Meta-Color"), Some("red"), "node {i}");
        assert_eq!(r.h("X-Backend-Timestamp"), Some(t2.as_str()), "node {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_reverts_and_is_deleted_only_when_all_primaries_took_it() {
    let mut c = cluster().await;
    put(&c.nodes[0], "o1", ts(1), b"on a handoff", &[]).await;
    put(&c.nodes[0], "o2", ts(2), b"me too", &[]).await;
    // One primary is down: the revert keeps the partition.
    let h = c.nodes[3].handle.take().unwrap();
    h.shutdown().await.unwrap();
    let st = c.pass(0).await;
    assert_eq!(st.revert_jobs, 1);
    assert_eq!(st.totals.failure, 1, "{st:?}");
    assert_eq!(st.totals.handoffs_remaining, 1, "{st:?}");
    assert_eq!(st.totals.handoffs_removed, 0);
    assert!(c.nodes[0].part_dir(PART).exists());
    for i in [1, 2] {
        assert_eq!(head(&c.nodes[i], "o1").await.status, StatusCode::OK);
        assert_eq!(head(&c.nodes[i], "o2").await.status, StatusCode::OK);
    }

    // Bring the primary back on the same port.
    let handle = chttp::spawn_server(
        format!("127.0.0.1:{}", c.nodes[3].port).parse().unwrap(),
        c.nodes[3].server.clone(),
        ServeOptions::new("object-server"),
    )
    .await
    .unwrap();
    c.nodes[3].handle = Some(handle);
    let st = c.pass(0).await;
    assert_eq!(st.totals.failure, 0, "{st:?}");
    assert_eq!(st.totals.handoffs_removed, 1, "{st:?}");
    assert_eq!(st.totals.objects_removed, 2, "{st:?}");
    assert!(!c.nodes[0].part_dir(PART).exists());
    for i in PRIMARIES {
        assert_eq!(
            get_body(&c.nodes[i], "o1").await,
            Bytes::from_static(b"on a handoff")
        );
        assert_eq!(head(&c.nodes[i], "o2").await.status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_delete_after_n_successes() {
    let mut c = cluster().await;
    put(&c.nodes[0], "o", ts(1), b"x", &[]).await;
    c.nodes[3].handle.take().unwrap().shutdown().await.unwrap();
    let r = c.replicator_with(0, |s| s.handoff_delete = HandoffDelete::After(2));
    let st = r.run_pass(&Stop::new()).await;
    assert_eq!(st.totals.failure, 1, "{st:?}");
    assert_eq!(st.totals.handoffs_removed, 1, "{st:?}");
    assert!(!c.nodes[0].part_dir(PART).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_handoff_partition_is_removed() {
    let c = cluster().await;
    std::fs::create_dir_all(c.nodes[0].part_dir(PART)).unwrap();
    let st = c.pass(0).await;
    assert_eq!(st.totals.handoffs_removed, 1, "{st:?}");
    assert_eq!(st.totals.ssync, 0);
    assert!(!c.nodes[0].part_dir(PART).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmounted_peer_is_replaced_by_a_handoff() {
    let c = cluster().await;
    put(&c.nodes[1], "o", ts(1), b"data", &[]).await;
    // Node 2's device disappears: it answers 507.
    std::fs::remove_dir_all(c.nodes[2].dir.path().join("sda")).unwrap();
    let st = c.pass(1).await;
    assert_eq!(st.totals.failure, 1, "{st:?}");
    assert_eq!(st.totals.ssync, 2, "{st:?}");
    assert_eq!(head(&c.nodes[3], "o").await.status, StatusCode::OK);
    // The handoff (node 0) holds it now, in the same partition.
    assert_eq!(head(&c.nodes[0], "o").await.status, StatusCode::OK);
    assert!(c.nodes[0].part_dir(PART).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_change_pass_does_no_ssync() {
    let c = cluster().await;
    for n in 0..20 {
        let name = format!("o{n}");
        put(&c.nodes[1], &name, ts(n), b"abc", &[]).await;
    }
    let st = c.pass(1).await;
    assert_eq!(st.totals.ssync, 2, "{st:?}");
    assert_eq!(st.totals.objects_pushed, 40, "{st:?}");
    // Every primary now agrees: passes on each do no SSYNC.
    for i in PRIMARIES {
        let st = c.pass(i).await;
        assert_eq!(st.totals.ssync, 0, "node {i}: {st:?}");
        assert_eq!(st.totals.hashmatch, 2, "node {i}: {st:?}");
        assert_eq!(st.totals.objects_pushed, 0);
        assert_eq!(st.totals.failure, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_body_and_content_type_post_propagate() {
    let c = cluster().await;
    // ~1 MiB + a bit: many body chunks.
    let body: &'static [u8] = Box::leak(
        (0..1_100_003u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into_boxed_slice(),
    );
    put(
        &c.nodes[1],
        "big",
        ts(1),
        body,
        &[("X-Object-Sysmeta-Foo", "bar")],
    )
    .await;
    let t2 = ts(2).internal();
    let (r, _) = call(
        &c.nodes[1],
        "POST",
        &obj("big"),
        &[
            ("X-Timestamp", &t2),
            ("Content-Type", "image/png"),
            ("X-Object-Meta-A", "b"),
        ],
        b"",
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let st = c.pass(1).await;
    assert_eq!(st.totals.failure, 0, "{st:?}");
    assert_eq!(st.totals.bytes_pushed, 2 * body.len() as u64);
    let want = head(&c.nodes[1], "big").await;
    for i in [2, 3] {
        let r = head(&c.nodes[i], "big").await;
        assert_eq!(r.status, StatusCode::OK);
        for h in [
            "Content-Type",
            "ETag",
            "X-Object-Meta-A",
            "X-Object-Sysmeta-Foo",
            "X-Backend-Timestamp",
            "Content-Length",
        ] {
            assert_eq!(r.h(h), want.h(h), "node {i} header {h}");
        }
        assert_eq!(r.h("Content-Type"), Some("image/png"));
        assert_eq!(get_body(&c.nodes[i], "big").await.as_ref(), body);
    }
    // And the suffix hashes now agree everywhere.
    for i in PRIMARIES {
        let st = c.pass(i).await;
        assert_eq!((st.totals.ssync, st.totals.hashmatch), (0, 2), "node {i}");
    }
}

/// A fake SSYNC receiver: answers 200 with `reply` and then either ends the body or
/// (with `stall`) keeps it open without a word.
async fn fake_receiver(reply: &'static str, stall: bool) -> ServerHandle {
    let h = chttp::handler_fn(move |_req| async move {
        let (tx, body) = chttp::channel(4);
        tokio::spawn(async move {
            let _ = tx.send(Bytes::from_static(reply.as_bytes())).await;
            if stall {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            drop(tx);
        });
        http::Response::new(body)
    });
    chttp::spawn_server(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(h),
        ServeOptions::new("fake"),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssync_errors_early_eof_and_timeouts_fail_the_sync() {
    use cairn_object::ssync_sender::{SsyncConfig, SsyncError, SsyncSender};
    use cairn_object::DiskFileManager;

    let c = cluster().await;
    put(&c.nodes[1], "o", ts(1), b"data", &[]).await;
    let mgr = DiskFileManager::new(c.nodes[1].disk(), secret());
    let sender = SsyncSender::new(
        chttp::BackendClient::new(chttp::Timeouts::default()),
        mgr.clone(),
        SsyncConfig {
            http_timeout: Duration::from_millis(700),
            node_timeout: Duration::from_secs(1),
            ..SsyncConfig::default()
        },
        None,
    );
    let suffixes: Vec<String> = mgr
        .get_hashes("sda", 0, PART, &[], true)
        .unwrap()
        .hashes
        .into_keys()
        .collect();
    assert_eq!(suffixes.len(), 1);
    let node = |port: u16| Device {
        id: 9,
        region: 1,
        zone: 9,
        ip: "127.0.0.1".into(),
        port,
        replication_ip: "127.0.0.1".into(),
        replication_port: port,
        device: "sda".into(),
        weight: 1.0,
        meta: String::new(),
    };

    let busy = fake_receiver(
        "\r\n:ERROR: 503 'Too many concurrent replication requests'\r\n",
        false,
    )
    .await;
    let e = sender
        .sync("sda", 0, PART, &suffixes, &node(busy.addr().port()), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SsyncError::Remote(m) if m.contains("503")),
        "{e:?}"
    );

    let eof = fake_receiver("\r\n", false).await;
    let e = sender
        .sync("sda", 0, PART, &suffixes, &node(eof.addr().port()), None)
        .await
        .unwrap_err();
    // The body ends (or, racing the unread request body, the connection drops).
    assert!(
        matches!(e, SsyncError::EarlyDisconnect | SsyncError::Io(_)),
        "{e:?}"
    );

    let stalled = fake_receiver("\r\n", true).await;
    let begin = std::time::Instant::now();
    let e = sender
        .sync(
            "sda",
            0,
            PART,
            &suffixes,
            &node(stalled.addr().port()),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, SsyncError::Timeout(_)), "{e:?}");
    assert!(begin.elapsed() < Duration::from_secs(10));

    // The real receiver works with the same sender, and reports what it confirmed.
    let out = sender
        .sync("sda", 0, PART, &suffixes, &node(c.nodes[2].port), None)
        .await
        .unwrap();
    assert_eq!((out.wanted, out.subrequests, out.bytes), (1, 1, 4));
    assert_eq!(out.in_sync.len(), 1);
    // A second sync finds it in sync.
    let out = sender
        .sync("sda", 0, PART, &suffixes, &node(c.nodes[2].port), None)
        .await
        .unwrap();
    assert_eq!((out.wanted, out.subrequests), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_keeps_partition_when_a_receiver_errors() {
    let c = cluster().await;
    put(&c.nodes[0], "o", ts(1), b"data", &[]).await;
    // Node 2's receiver refuses every session (concurrency limit reached).
    let busy = fake_receiver("\r\n:ERROR: 503 'busy'\r\n", false).await;
    let mut data = RingData {
        part_power: 2,
        replica2part2dev: (0..3u16)
            .map(|r| (0..4u16).map(|p| (p + r) % 4).collect())
            .collect(),
        devs: c.ring.current().devs().to_vec(),
        version: 2,
    };
    if let Some(Some(d)) = data.devs.get_mut(2) {
        d.port = busy.addr().port();
        d.replication_port = busy.addr().port();
    }
    let ring_dir = tempfile::tempdir().unwrap();
    let path = ring_dir.path().join("object.ring");
    write_file(RING_MAGIC, &path, &data, true).unwrap();
    let settings = ReplicatorSettings {
        disk: c.nodes[0].disk(),
        bind_ip: "127.0.0.1".parse().unwrap(),
        bind_port: c.nodes[0].port,
        conf: ReplicatorSection::default(),
        recon_cache_path: None,
        only_devices: None,
        only_partitions: None,
    };
    let r = ObjectReplicator::new(
        settings,
        secret(),
        vec![(0, Arc::new(RingWatcher::new(&path).unwrap()))],
    );
    let st = r.run_pass(&Stop::new()).await;
    assert_eq!(st.totals.failure, 1, "{st:?}");
    assert_eq!(st.totals.handoffs_remaining, 1);
    assert_eq!(st.failure_nodes.len(), 1, "{st:?}");
    assert!(c.nodes[0].part_dir(PART).exists());
    assert_eq!(head(&c.nodes[0], "o").await.status, StatusCode::OK);
    assert_eq!(head(&c.nodes[1], "o").await.status, StatusCode::OK);
    assert_eq!(head(&c.nodes[3], "o").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_object_replicator_once_from_config_files() {
    let c = cluster().await;
    put(&c.nodes[1], "o", ts(1), b"via config", &[]).await;
    let etc = tempfile::tempdir().unwrap();
    let rings = etc.path().join("rings");
    std::fs::create_dir(&rings).unwrap();
    std::fs::copy(c.ring.path(), rings.join("object.ring")).unwrap();
    std::fs::write(
        etc.path().join("cairn.toml"),
        format!("[cluster]\nhash_path_suffix = \"{SECRET}\"\nring_dir = \"rings\"\n"),
    )
    .unwrap();
    let recon = etc.path().join("recon");
    std::fs::write(
        etc.path().join("object-server.toml"),
        format!(
            "[server]\nbind_ip = \"127.0.0.1\"\nbind_port = {}\ndevices = \"{}\"\n\
             recon_cache_path = \"{}\"\n\n[object-replicator]\nconcurrency = 2\n\
             handoff_delete = \"auto\"\nnode_timeout = 3\n",
            c.nodes[1].port,
            c.nodes[1].dir.path().display(),
            recon.display()
        ),
    )
    .unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        cairn_object::replicator::run_object_replicator(
            &etc.path().join("object-server.toml"),
            true,
            Some(vec!["sda".into()]),
            Some(vec![PART]),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    for i in PRIMARIES {
        assert_eq!(
            get_body(&c.nodes[i], "o").await,
            Bytes::from_static(b"via config")
        );
    }
    let sec = cairn_common::recon::ReconCache::new(&recon, "object")
        .get("replication")
        .unwrap();
    assert_eq!(sec["replication_stats"]["objects_pushed"], 2);
    assert!(sec["device_last_success"]["sda"].as_f64().is_some());
}

/// Figures, not an assertion: `cargo test -p cairn-object --test replicator -- --ignored
/// --nocapture no_change_pass_cost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn no_change_pass_cost() {
    let c = cluster_with(8).await;
    // Every partition, a few objects each, on every primary.
    let n_per_part = 4u64;
    for part in 0..256u32 {
        for k in 0..n_per_part {
            let path = format!("/sda/{part}/AUTH_test/c/o{k}");
            let t = ts(k).internal();
            for r in 0..3u32 {
                let node = &c.nodes[((part + r) % 4) as usize];
                let (resp, _) = call(
                    node,
                    "PUT",
                    &path,
                    &[
                        ("X-Timestamp", &t),
                        ("Content-Type", "x/y"),
                        ("Content-Length", "1"),
                    ],
                    b"x",
                )
                .await;
                assert_eq!(resp.status, StatusCode::CREATED);
            }
        }
    }
    let r = c.replicator_with(1, |_| {});
    // First pass builds the hash caches.
    let first = std::time::Instant::now();
    let st = r.run_pass(&Stop::new()).await;
    let first = first.elapsed();
    assert_eq!(st.totals.ssync, 0, "{st:?}");
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let st = r.run_pass(&Stop::new()).await;
        times.push(t.elapsed());
        assert_eq!(st.totals.ssync, 0);
    }
    println!(
        "node 1: {} partitions x {n_per_part} objects; first pass {first:?}; no-change passes {times:?}",
        st.update_jobs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_tombstones_are_reclaimed_when_hashing_and_old_temp_files_removed() {
    let c = cluster().await;
    // A tombstone written 1000 s ago; the replicator's reclaim_age is 100 s.
    let old = Timestamp::from_secs(Timestamp::now().secs() - 1000).internal();
    let (r, _) = call(
        &c.nodes[1],
        "DELETE",
        &obj("gone"),
        &[("X-Timestamp", &old)],
        b"",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Temp files: one old, one fresh.
    let tmp = c.nodes[1].dir.path().join("sda/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let stale = tmp.join("stale");
    let f = std::fs::File::create(&stale).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(1000))
        .unwrap();
    drop(f);
    std::fs::write(tmp.join("fresh"), b"x").unwrap();

    let settings = ReplicatorSettings {
        disk: DiskConfig {
            reclaim_age: 100,
            ..c.nodes[1].disk()
        },
        bind_ip: "127.0.0.1".parse().unwrap(),
        bind_port: c.nodes[1].port,
        conf: ReplicatorSection::default(),
        recon_cache_path: None,
        only_devices: None,
        only_partitions: None,
    };
    let r = ObjectReplicator::new(settings, secret(), vec![(0, c.ring.clone())]);
    let st = r.run_pass(&Stop::new()).await;
    assert_eq!(st.totals.ssync, 0, "reclaimed, nothing to send: {st:?}");
    assert_eq!(st.totals.hashmatch, 2, "{st:?}");
    assert_eq!(st.tmp_removed, 1);
    assert!(!stale.exists());
    assert!(tmp.join("fresh").exists());
    // The suffix dir went with the tombstone.
    let left: Vec<_> = std::fs::read_dir(c.nodes[1].part_dir(PART))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!c.nodes[2].part_dir(PART).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_policies_use_their_own_dirs() {
    let c = cluster().await;
    let t = ts(1).internal();
    let (r, _) = call(
        &c.nodes[1],
        "PUT",
        &obj("p1"),
        &[
            ("X-Timestamp", &t),
            ("Content-Type", "a/b"),
            ("Content-Length", "2"),
            ("X-Backend-Storage-Policy-Index", "1"),
        ],
        b"p1",
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let settings = ReplicatorSettings {
        disk: c.nodes[1].disk(),
        bind_ip: "127.0.0.1".parse().unwrap(),
        bind_port: c.nodes[1].port,
        conf: ReplicatorSection::default(),
        recon_cache_path: None,
        only_devices: None,
        only_partitions: None,
    };
    // The same ring file serves as policy 1's ring here.
    let r = ObjectReplicator::new(settings, secret(), vec![(1, c.ring.clone())]);
    let st = r.run_pass(&Stop::new()).await;
    assert_eq!((st.totals.ssync, st.totals.failure), (2, 0), "{st:?}");
    for i in [2, 3] {
        let (resp, _) = call(
            &c.nodes[i],
            "HEAD",
            &obj("p1"),
            &[("X-Backend-Storage-Policy-Index", "1")],
            b"",
        )
        .await;
        assert_eq!(resp.status, StatusCode::OK, "node {i}");
        assert!(c.nodes[i].dir.path().join("sda/objects-1/1").is_dir());
        assert!(!c.nodes[i].part_dir(PART).exists());
    }
}

#[test]
fn replicator_table_parses_with_defaults_and_rejects_typos() {
    use cairn_common::server_config::parse_role_config;
    use cairn_object::config::ObjectServerFile;
    let base = std::path::Path::new("/etc/cairn");
    let f: ObjectServerFile = parse_role_config("", "t", base).unwrap();
    assert_eq!(f.replicator, ReplicatorSection::default());
    assert_eq!(f.replicator.interval, 30.0);
    assert_eq!(f.replicator.http_timeout, 60.0);
    assert_eq!(f.replicator.ring_check_interval, 15.0);
    assert_eq!(f.replicator.handoff_delete, HandoffDelete::Auto);
    assert!(!f.replicator.handoffs_first);
    for (text, want) in [
        ("handoff_delete = \"auto\"", HandoffDelete::Auto),
        ("handoff_delete = 2", HandoffDelete::After(2)),
        ("handoff_delete = \"3\"", HandoffDelete::After(3)),
    ] {
        let f: ObjectServerFile =
            parse_role_config(&format!("[object-replicator]\n{text}\n"), "t", base).unwrap();
        assert_eq!(f.replicator.handoff_delete, want, "{text}");
    }
    for bad in [
        "handoff_delete = \"sometimes\"",
        "handoff_delete = 0",
        "bogus = 1",
        "concurrency = 0",
        "interval = -1",
    ] {
        assert!(
            parse_role_config::<ObjectServerFile>(
                &format!("[object-replicator]\n{bad}\n"),
                "t",
                base
            )
            .is_err(),
            "{bad}"
        );
    }
    let f: ObjectServerFile = parse_role_config(
        "[object-replicator]\ninterval = 5\nconcurrency = 8\nhandoffs_first = true\n\
         objects_per_second = 50\nmax_bytes_per_second = 1000000\nstats_interval = 60\n",
        "t",
        base,
    )
    .unwrap();
    assert_eq!(f.replicator.concurrency, 8);
    assert!(f.replicator.handoffs_first);
}

#[test]
fn delete_reverted_removes_only_confirmed_states_and_respects_the_lock() {
    use cairn_object::hashes::lock_partition;
    use cairn_object::layout::PolicyPaths;
    use cairn_object::replicator::delete_reverted;
    use cairn_object::{DiskFileManager, Metadata};

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sda")).unwrap();
    let disk = DiskConfig {
        devices: dir.path().to_path_buf(),
        mount_check: false,
        fallocate_reserve: cairn_common::fs::FallocateReserve::NONE,
        ..DiskConfig::default()
    };
    let mgr = DiskFileManager::new(disk, secret());
    for (name, t) in [("a", 1), ("b", 2)] {
        let df = mgr
            .diskfile("sda", 0, PART, "AUTH_test", "c", name)
            .unwrap();
        let mut w = df.create(None).unwrap();
        w.write(b"x").unwrap();
        w.commit(ts(t), Metadata::new()).unwrap();
    }
    let entries = mgr.yield_hashes("sda", 0, PART, None).unwrap();
    assert_eq!(entries.len(), 2);
    let mut confirmed: std::collections::HashMap<_, _> = entries
        .iter()
        .map(|e| (e.hash.clone(), e.clone()))
        .collect();
    // "b" changed after the sync (a newer write): its confirmed state is older.
    let b_hash = mgr
        .diskfile("sda", 0, PART, "AUTH_test", "c", "b")
        .unwrap()
        .hash()
        .to_string();
    confirmed.get_mut(&b_hash).unwrap().ts_data = ts(0);
    let paths = PolicyPaths::new(dir.path().join("sda"), 0);
    let part_dir = paths.partition_dir(PART);

    // Someone holds the partition lock: nothing is deleted.
    let held = lock_partition(&part_dir, false, Duration::from_secs(1))
        .unwrap()
        .unwrap();
    assert!(delete_reverted(
        &paths,
        PART,
        &confirmed,
        604_800,
        Duration::from_millis(100)
    )
    .is_err());
    drop(held);
    assert_eq!(mgr.yield_hashes("sda", 0, PART, None).unwrap().len(), 2);

    let (removed, part_gone) = delete_reverted(
        &paths,
        PART,
        &confirmed,
        604_800,
        Duration::from_millis(100),
    )
    .unwrap();
    assert_eq!((removed, part_gone), (1, false));
    let left = mgr.yield_hashes("sda", 0, PART, None).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].hash, b_hash);

    // Once everything left is confirmed, the partition directory goes.
    let confirmed = left.iter().map(|e| (e.hash.clone(), e.clone())).collect();
    let (removed, part_gone) = delete_reverted(
        &paths,
        PART,
        &confirmed,
        604_800,
        Duration::from_millis(100),
    )
    .unwrap();
    assert_eq!((removed, part_gone), (1, true));
    assert!(!part_dir.exists());
}

/// A copy of the cluster's ring with device `dev` moved to `port`.
fn ring_with_port(c: &Cluster, dev: usize, port: u16) -> (TempDir, Arc<RingWatcher>) {
    let mut data = c.ring.current().data().clone();
    if let Some(Some(d)) = data.devs.get_mut(dev) {
        d.port = port;
        d.replication_port = port;
    }
    data.version += 1;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("object.ring");
    write_file(RING_MAGIC, &path, &data, true).unwrap();
    (dir, Arc::new(RingWatcher::new(&path).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_or_unreachable_peer_is_replaced_by_a_handoff() {
    let mut c = cluster().await;
    put(&c.nodes[1], "o", ts(1), b"data", &[]).await;
    // Node 2 accepts connections but never answers a REPLICATE.
    let stalled = chttp::spawn_server(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(chttp::handler_fn(|_req| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            http::Response::new(chttp::empty())
        })),
        ServeOptions::new("stalled"),
    )
    .await
    .unwrap();
    let (_dir, ring) = ring_with_port(&c, 2, stalled.addr().port());
    let settings = |c: &Cluster| ReplicatorSettings {
        disk: c.nodes[1].disk(),
        bind_ip: "127.0.0.1".parse().unwrap(),
        bind_port: c.nodes[1].port,
        conf: ReplicatorSection {
            http_timeout: 1.0,
            node_timeout: 1.0,
            ..ReplicatorSection::default()
        },
        recon_cache_path: None,
        only_devices: None,
        only_partitions: None,
    };
    let r = ObjectReplicator::new(settings(&c), secret(), vec![(0, ring)]);
    let begin = std::time::Instant::now();
    let st = r.run_pass(&Stop::new()).await;
    assert!(begin.elapsed() < Duration::from_secs(10));
    assert_eq!((st.totals.failure, st.totals.ssync), (1, 2), "{st:?}");
    assert_eq!(head(&c.nodes[0], "o").await.status, StatusCode::OK);
    assert_eq!(head(&c.nodes[3], "o").await.status, StatusCode::OK);
    assert!(st.failed_devices.is_empty(), "peers were reached: {st:?}");

    // Unreachable (connection refused) works the same; the handoff already has it.
    put(&c.nodes[1], "o2", ts(2), b"data", &[]).await;
    c.nodes[2].handle.take().unwrap().shutdown().await.unwrap();
    let r = ObjectReplicator::new(settings(&c), secret(), vec![(0, c.ring.clone())]);
    let st = r.run_pass(&Stop::new()).await;
    assert_eq!((st.totals.failure, st.totals.ssync), (1, 2), "{st:?}");
    assert_eq!(head(&c.nodes[0], "o2").await.status, StatusCode::OK);
    assert_eq!(head(&c.nodes[3], "o2").await.status, StatusCode::OK);
}
