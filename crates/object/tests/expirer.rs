//! Object-expirer tests on loopback: three storage nodes, each running a real object,
//! container and account server (one devices root `sda` per node), rings where every
//! partition lives on all three nodes, objects written with `X-Delete-At` through the
//! object servers' backend API (which PUT the queue rows to the container servers), the
//! real container-updater to report the queue containers to the account, then one
//! expirer pass.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_account::{AccountServer, AccountServerSettings};
use cairn_common::daemon::Stop;
use cairn_common::http::{self as chttp, BackendClient, ServeOptions, ServerHandle, Timeouts};
use cairn_common::recon::ReconCache;
use cairn_common::{HashPathSecret, Timestamp};
use cairn_container::{ContainerServer, ContainerServerSettings, ContainerUpdater};
use cairn_object::expirer::{ExpirerRings, ExpirerSettings, ExpirerStats, ObjectExpirer};
use cairn_object::server::{
    expirer_container, expirer_object, ObjectServer, ObjectServerSettings, EXPIRER_ACCOUNT,
};
use cairn_object::DiskConfig;
use cairn_ring::{Device, Ring, RingData};
use http::{HeaderMap, Method, StatusCode};
use tempfile::TempDir;

const ACCT: &str = "AUTH_test";
const CONT: &str = "c";
const OBJ: &str = "dir/o";

fn secret() -> HashPathSecret {
    HashPathSecret::new("", "changeme")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Node {
    dir: TempDir,
    object: ServerHandle,
    container: ServerHandle,
    account: ServerHandle,
}

struct Cluster {
    nodes: Vec<Node>,
    object_ring: Arc<Ring>,
    container_ring: Arc<Ring>,
    account_ring: Arc<Ring>,
    client: BackendClient,
    recon: TempDir,
}

fn ring(ports: &[u16]) -> Arc<Ring> {
    let devs = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| {
            Some(Device {
                id: i as u32,
                region: 1,
                zone: i as u32 + 1,
                ip: "127.0.0.1".into(),
                port,
                replication_ip: "127.0.0.1".into(),
                replication_port: port,
                device: "sda".into(),
                weight: 1.0,
                meta: String::new(),
            })
        })
        .collect();
    let rows = (0..3u16)
        .map(|r| (0..4u16).map(|p| (p + r) % 3).collect())
        .collect();
    Arc::new(
        Ring::from_data(RingData {
            part_power: 2,
            replica2part2dev: rows,
            devs,
            version: 1,
        })
        .unwrap(),
    )
}

async fn cluster() -> Cluster {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sda")).unwrap();
        let osettings = ObjectServerSettings {
            disk: DiskConfig {
                devices: dir.path().to_path_buf(),
                mount_check: false,
                fallocate_reserve: cairn_common::fs::FallocateReserve::NONE,
                ..DiskConfig::default()
            },
            ..ObjectServerSettings::default()
        };
        let object = chttp::spawn_server(
            addr,
            Arc::new(ObjectServer::new(osettings, secret())),
            ServeOptions::new("object-server"),
        )
        .await
        .unwrap();
        let container = chttp::spawn_server(
            addr,
            Arc::new(ContainerServer::new(
                ContainerServerSettings::new(dir.path()),
                secret(),
            )),
            ServeOptions::new("container-server"),
        )
        .await
        .unwrap();
        let account = chttp::spawn_server(
            addr,
            Arc::new(AccountServer::new(
                AccountServerSettings::new(dir.path()),
                secret(),
            )),
            ServeOptions::new("account-server"),
        )
        .await
        .unwrap();
        nodes.push(Node {
            dir,
            object,
            container,
            account,
        });
    }
    let ports = |f: fn(&Node) -> u16| nodes.iter().map(f).collect::<Vec<u16>>();
    let object_ring = ring(&ports(|n| n.object.addr().port()));
    let container_ring = ring(&ports(|n| n.container.addr().port()));
    let account_ring = ring(&ports(|n| n.account.addr().port()));
    Cluster {
        nodes,
        object_ring,
        container_ring,
        account_ring,
        client: BackendClient::new(Timeouts::default()),
        recon: tempfile::tempdir().unwrap(),
    }
}

fn headers(pairs: &[(&str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

impl Cluster {
    async fn req(
        &self,
        method: Method,
        port: u16,
        path: &str,
        h: HeaderMap,
        body: &'static [u8],
    ) -> (StatusCode, HeaderMap, Bytes) {
        let resp = self
            .client
            .request(
                method,
                &format!("127.0.0.1:{port}"),
                path,
                h,
                chttp::full(Bytes::from_static(body)),
            )
            .await
            .unwrap();
        let (s, h) = (resp.status, resp.headers.clone());
        (s, h, resp.bytes(1 << 20).await.unwrap())
    }

    fn cpart(&self, a: &str, c: &str) -> u32 {
        self.container_ring.get_part(&secret(), a, Some(c), None)
    }

    fn opart(&self) -> u32 {
        self.object_ring
            .get_part(&secret(), ACCT, Some(CONT), Some(OBJ))
    }

    async fn put_container(&self, policy: u32) {
        let part = self.cpart(ACCT, CONT);
        let ts = Timestamp::now().internal();
        for n in &self.nodes {
            let (s, _, _) = self
                .req(
                    Method::PUT,
                    n.container.addr().port(),
                    &chttp::backend_path("sda", part, ACCT, Some(CONT), None),
                    headers(&[
                        ("X-Timestamp", ts.clone()),
                        ("X-Backend-Storage-Policy-Index", policy.to_string()),
                    ]),
                    b"",
                )
                .await;
            assert!(s.is_success(), "container PUT: {s}");
        }
    }

    /// PUT the object on its three primaries the way the proxy does: one container node
    /// and one queue node per request.
    async fn put_object(&self, policy: u32, delete_at: u64, body: &'static [u8]) {
        let ts = Timestamp::now().internal();
        let hash = secret().hash_path(ACCT, Some(CONT), Some(OBJ));
        let qc = expirer_container(delete_at, &hash);
        let qpart = self.cpart(EXPIRER_ACCOUNT, &qc);
        let cpart = self.cpart(ACCT, CONT);
        for (i, n) in self.nodes.iter().enumerate() {
            let peer = &self.nodes[(i + 1) % 3];
            let (s, _, _) = self
                .req(
                    Method::PUT,
                    n.object.addr().port(),
                    &chttp::backend_path("sda", self.opart(), ACCT, Some(CONT), Some(OBJ)),
                    headers(&[
                        ("X-Timestamp", ts.clone()),
                        ("Content-Type", "text/plain".into()),
                        ("Content-Length", body.len().to_string()),
                        ("X-Backend-Storage-Policy-Index", policy.to_string()),
                        ("X-Delete-At", delete_at.to_string()),
                        (
                            "X-Container-Host",
                            format!("127.0.0.1:{}", n.container.addr().port()),
                        ),
                        ("X-Container-Partition", cpart.to_string()),
                        ("X-Container-Device", "sda".into()),
                        ("X-Delete-At-Container", qc.clone()),
                        (
                            "X-Delete-At-Host",
                            format!("127.0.0.1:{}", peer.container.addr().port()),
                        ),
                        ("X-Delete-At-Partition", qpart.to_string()),
                        ("X-Delete-At-Device", "sda".into()),
                    ]),
                    body,
                )
                .await;
            assert_eq!(s, StatusCode::CREATED);
        }
    }

    /// Object names of a container listing on node `i`; `None` on 404.
    async fn listing(&self, i: usize, a: &str, c: &str) -> Option<Vec<String>> {
        let path = format!(
            "{}?format=json",
            chttp::backend_path("sda", self.cpart(a, c), a, Some(c), None)
        );
        let (s, _, body) = self
            .req(
                Method::GET,
                self.nodes[i].container.addr().port(),
                &path,
                HeaderMap::new(),
                b"",
            )
            .await;
        match s {
            StatusCode::NOT_FOUND => None,
            StatusCode::NO_CONTENT => Some(Vec::new()),
            StatusCode::OK => {
                let rows: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
                Some(
                    rows.iter()
                        .map(|r| r["name"].as_str().unwrap().to_string())
                        .collect(),
                )
            }
            s => panic!("listing {a}/{c}: {s}"),
        }
    }

    /// Container names the account server of node `i` lists for `.expiring_objects`.
    async fn queue_containers(&self, i: usize) -> Vec<String> {
        let part = self
            .account_ring
            .get_part(&secret(), EXPIRER_ACCOUNT, None, None);
        let path = format!(
            "{}?format=json",
            chttp::backend_path("sda", part, EXPIRER_ACCOUNT, None, None)
        );
        let (s, _, body) = self
            .req(
                Method::GET,
                self.nodes[i].account.addr().port(),
                &path,
                HeaderMap::new(),
                b"",
            )
            .await;
        match s {
            StatusCode::NOT_FOUND | StatusCode::NO_CONTENT => Vec::new(),
            StatusCode::OK => serde_json::from_slice::<Vec<serde_json::Value>>(&body)
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_string())
                .collect(),
            s => panic!("account listing: {s}"),
        }
    }

    /// Run the real container-updater on every node so the queue containers reach the
    /// account.
    async fn report_containers(&self) {
        for n in &self.nodes {
            let mut s = cairn_container::UpdaterSettings::new(n.dir.path());
            s.containers_per_second = 0.0;
            ContainerUpdater::new(s, self.account_ring.clone(), secret())
                .run_once(&Stop::new())
                .await;
        }
    }

    fn expirer(&self, processes: u32, process: u32) -> ObjectExpirer {
        self.expirer_with(processes, process, self.object_ring.clone())
    }

    fn expirer_with(&self, processes: u32, process: u32, object_ring: Arc<Ring>) -> ObjectExpirer {
        let settings = ExpirerSettings {
            concurrency: 2,
            tasks_per_second: 0.0,
            processes,
            process,
            recon_cache_path: Some(self.recon.path().to_path_buf()),
            ..ExpirerSettings::default()
        };
        let rings = ExpirerRings {
            account: self.account_ring.clone().into(),
            container: self.container_ring.clone().into(),
            objects: vec![(0, object_ring.clone().into()), (1, object_ring.into())],
        };
        ObjectExpirer::new(settings, rings, secret())
    }

    async fn head_object(&self, i: usize, policy: u32) -> (StatusCode, HeaderMap) {
        let (s, h, _) = self
            .req(
                Method::HEAD,
                self.nodes[i].object.addr().port(),
                &chttp::backend_path("sda", self.opart(), ACCT, Some(CONT), Some(OBJ)),
                headers(&[("X-Backend-Storage-Policy-Index", policy.to_string())]),
                b"",
            )
            .await;
        (s, h)
    }
}

async fn wait_past(t: u64) {
    while unix_now() <= t {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn count_files(dir: &Path) -> usize {
    walk(dir).len()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn expired_object_is_deleted_everywhere_and_dequeued() {
    let c = cluster().await;
    let policy = 1;
    c.put_container(policy).await;
    let delete_at = unix_now() + 2;
    c.put_object(policy, delete_at, b"hello").await;
    let hash = secret().hash_path(ACCT, Some(CONT), Some(OBJ));
    let qc = expirer_container(delete_at, &hash);
    let row = expirer_object(delete_at, ACCT, CONT, OBJ);
    for i in 0..3 {
        assert_eq!(
            c.listing(i, ACCT, CONT).await,
            Some(vec![OBJ.to_string()]),
            "node {i}"
        );
        assert_eq!(
            c.listing(i, EXPIRER_ACCOUNT, &qc).await,
            Some(vec![row.clone()])
        );
    }
    c.report_containers().await;
    for i in 0..3 {
        assert_eq!(c.queue_containers(i).await, vec![qc.clone()], "node {i}");
    }

    // Not due yet: nothing happens.
    let early = c.expirer(0, 0).run_once(&Stop::new()).await;
    assert_eq!(early.tasks, 0);
    assert_eq!(c.head_object(0, policy).await.0, StatusCode::OK);

    wait_past(delete_at).await;
    let stats = c.expirer(0, 0).run_once(&Stop::new()).await;
    assert_eq!(
        stats,
        ExpirerStats {
            tasks: 1,
            expired: 1,
            deleted: 1,
            failures: 0,
            errors: 0,
            containers_deleted: 1,
        }
    );
    let tomb = Timestamp::from_secs(delete_at).internal();
    for i in 0..3 {
        // A tombstone at delete_at, not merely an expired object.
        let (s, h) = c.head_object(i, policy).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "node {i}");
        assert_eq!(
            h.get("x-backend-timestamp").unwrap().to_str().unwrap(),
            tomb,
            "node {i}"
        );
        assert_eq!(c.listing(i, ACCT, CONT).await, Some(Vec::new()), "node {i}");
        // The queue row is gone and so is the (now empty) queue container.
        assert_eq!(c.listing(i, EXPIRER_ACCOUNT, &qc).await, None, "node {i}");
        assert!(c.queue_containers(i).await.is_empty(), "node {i}");
        // The expirer popped the row itself: no async pending for a queue-row delete.
        let dev = c.nodes[i].dir.path().join("sda");
        assert_eq!(count_files(&dev.join("async_pending")), 0);
        assert_eq!(count_files(&dev.join("async_pending-1")), 0);
    }
    let recon = ReconCache::new(c.recon.path(), "object")
        .get("expirer")
        .unwrap();
    assert_eq!(recon["expired_last_pass"], 1);
    assert!(recon["object_expiration_pass"].as_f64().unwrap() >= 0.0);

    // A second pass finds nothing to do.
    let again = c.expirer(0, 0).run_once(&Stop::new()).await;
    assert_eq!(again, ExpirerStats::default());
}

#[tokio::test]
async fn task_of_an_overwritten_object_is_dropped_without_deleting_it() {
    let c = cluster().await;
    let policy = 0;
    c.put_container(policy).await;
    let t1 = unix_now() + 2;
    c.put_object(policy, t1, b"hello").await;
    // Overwrite with a later X-Delete-At: the old queue row stays (its delete is only an
    // async pending, not replayed here).
    let t2 = unix_now() + 7200;
    c.put_object(policy, t2, b"world").await;
    let hash = secret().hash_path(ACCT, Some(CONT), Some(OBJ));
    let (qc1, qc2) = (expirer_container(t1, &hash), expirer_container(t2, &hash));
    let (row1, row2) = (
        expirer_object(t1, ACCT, CONT, OBJ),
        expirer_object(t2, ACCT, CONT, OBJ),
    );
    assert!(c
        .listing(0, EXPIRER_ACCOUNT, &qc1)
        .await
        .unwrap()
        .contains(&row1));
    c.report_containers().await;
    wait_past(t1).await;

    // The task belongs to exactly one of two shares; the other share leaves it alone.
    let mine = (0..2)
        .find(|&p| cairn_object::expirer::task_is_mine(&qc1, &row1, 2, p))
        .unwrap();
    let other = c.expirer(2, 1 - mine).run_once(&Stop::new()).await;
    assert_eq!(other.tasks, 0);
    assert!(c
        .listing(0, EXPIRER_ACCOUNT, &qc1)
        .await
        .unwrap()
        .contains(&row1));

    let stats = c.expirer(2, mine).run_once(&Stop::new()).await;
    assert_eq!(
        (stats.tasks, stats.expired, stats.deleted, stats.failures),
        (1, 1, 0, 0)
    );
    for i in 0..3 {
        let (s, h) = c.head_object(i, policy).await;
        assert_eq!(s, StatusCode::OK, "node {i}");
        assert_eq!(
            h.get("x-delete-at").unwrap().to_str().unwrap(),
            format!("{t2:010}")
        );
        assert_eq!(c.listing(i, ACCT, CONT).await, Some(vec![OBJ.to_string()]));
        let q1 = c
            .listing(i, EXPIRER_ACCOUNT, &qc1)
            .await
            .unwrap_or_default();
        assert!(!q1.contains(&row1), "node {i}: {q1:?}");
        let q2 = c
            .listing(i, EXPIRER_ACCOUNT, &qc2)
            .await
            .unwrap_or_default();
        assert!(q2.contains(&row2), "node {i}: {q2:?}");
    }
}

/// `run_object_expirer(config, once)` reads `object-server.toml`, its cluster file and the
/// rings of `ring_dir` (account, container, and `object-1.ring` for policy 1), and does
/// one pass.
#[tokio::test]
async fn entry_point_runs_one_pass_from_the_config_file() {
    use cairn_ring::file::{write_file, RING_MAGIC};
    let c = cluster().await;
    let etc = tempfile::tempdir().unwrap();
    let rings = etc.path().join("rings");
    std::fs::create_dir(&rings).unwrap();
    for (name, ring) in [
        ("account.ring", &c.account_ring),
        ("container.ring", &c.container_ring),
        ("object.ring", &c.object_ring),
        ("object-1.ring", &c.object_ring),
    ] {
        write_file(RING_MAGIC, &rings.join(name), ring.data(), true).unwrap();
    }
    std::fs::write(
        etc.path().join("cairn.toml"),
        "[cluster]\nhash_path_suffix = \"changeme\"\n\n\
         [[policy]]\nindex = 0\nname = \"gold\"\n\n[[policy]]\nindex = 1\nname = \"silver\"\n",
    )
    .unwrap();
    std::fs::write(
        etc.path().join("object-server.toml"),
        "[server]\ndevices = \"devs\"\nrecon_cache_path = \"recon\"\n\
         cluster_config = \"cairn.toml\"\n\n[object-expirer]\ntasks_per_second = 0\n",
    )
    .unwrap();
    c.put_container(1).await;
    let delete_at = unix_now() + 2;
    c.put_object(1, delete_at, b"bye").await;
    c.report_containers().await;
    wait_past(delete_at).await;
    cairn_object::expirer::run_object_expirer(&etc.path().join("object-server.toml"), true)
        .await
        .unwrap();
    for i in 0..3 {
        let (s, h) = c.head_object(i, 1).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(
            h.get("x-backend-timestamp").unwrap().to_str().unwrap(),
            Timestamp::from_secs(delete_at).internal()
        );
    }
    let recon = ReconCache::new(&etc.path().join("recon"), "object")
        .get("expirer")
        .unwrap();
    assert_eq!(recon["expired_last_pass"], 1);
}

/// Without a quorum of object primaries the task stays queued; the next pass with the
/// nodes back completes it.
#[tokio::test]
async fn task_without_quorum_is_retried_next_pass() {
    let c = cluster().await;
    c.put_container(0).await;
    let delete_at = unix_now() + 2;
    c.put_object(0, delete_at, b"hello").await;
    c.report_containers().await;
    let hash = secret().hash_path(ACCT, Some(CONT), Some(OBJ));
    let qc = expirer_container(delete_at, &hash);
    let row = expirer_object(delete_at, ACCT, CONT, OBJ);
    wait_past(delete_at).await;

    // Two of the three object primaries are unreachable (ports nobody listens on).
    let dead = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let broken = ring(&[c.nodes[0].object.addr().port(), dead(), dead()]);
    let stats = c.expirer_with(0, 0, broken).run_once(&Stop::new()).await;
    assert_eq!(
        (
            stats.tasks,
            stats.expired,
            stats.failures,
            stats.containers_deleted
        ),
        (1, 0, 1, 0)
    );
    for i in 0..3 {
        assert_eq!(
            c.listing(i, EXPIRER_ACCOUNT, &qc).await,
            Some(vec![row.clone()]),
            "node {i}"
        );
    }
    let stats = c.expirer(0, 0).run_once(&Stop::new()).await;
    assert_eq!((stats.tasks, stats.expired, stats.deleted), (1, 1, 1));
    for i in 0..3 {
        assert_eq!(c.head_object(i, 0).await.0, StatusCode::NOT_FOUND);
        assert_eq!(c.listing(i, EXPIRER_ACCOUNT, &qc).await, None, "node {i}");
    }
}
