//! The run functions end to end, in process: `run_container_server` and
//! `cairn_account::run_account_server` on loopback ports from real config files and
//! rings, then `run_container_replicator`, `run_container_updater` (reporting to the
//! account server) and `run_container_auditor`, each `once`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_common::http::{self as chttp, BackendClient, Timeouts};
use cairn_common::recon::ReconCache;
use cairn_common::Timestamp;
use cairn_ring::file::{write_file, RING_MAGIC};
use cairn_ring::types::{Device, RingData};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_ring(path: &Path, port: u16) {
    let devs = (0..3u32)
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
    let data = RingData {
        part_power: 0,
        replica2part2dev: vec![vec![0], vec![1], vec![2]],
        devs,
        version: 1,
    };
    write_file(RING_MAGIC, path, &data, false).unwrap();
}

/// Config files for a container server on `cport` and an account server on `aport`
/// sharing three devices.
fn node(dir: &Path, cport: u16, aport: u16) -> (PathBuf, PathBuf) {
    std::fs::write(
        dir.join("cairn.toml"),
        "[cluster]\nhash_path_suffix = \"changeme\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("rings")).unwrap();
    write_ring(&dir.join("rings/container.ring"), cport);
    write_ring(&dir.join("rings/account.ring"), aport);
    for d in ["sda", "sdb", "sdc"] {
        std::fs::create_dir_all(dir.join("srv").join(d)).unwrap();
    }
    let common = "devices = \"srv\"\nrecon_cache_path = \"recon\"\n";
    let cconf = dir.join("container-server.toml");
    std::fs::write(
        &cconf,
        format!(
            "[server]\nbind_port = {cport}\n{common}\n[container-updater]\ncontainers_per_second = 0\n\
             [container-auditor]\ncontainers_per_second = 0\n"
        ),
    )
    .unwrap();
    let aconf = dir.join("account-server.toml");
    std::fs::write(&aconf, format!("[server]\nbind_port = {aport}\n{common}")).unwrap();
    (cconf, aconf)
}

async fn request(
    client: &BackendClient,
    port: u16,
    method: Method,
    path: &str,
    headers: &[(&'static str, String)],
) -> (StatusCode, HeaderMap) {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    let r = client
        .request(
            method,
            &format!("127.0.0.1:{port}"),
            path,
            h,
            chttp::empty(),
        )
        .await
        .unwrap();
    let (status, headers) = (r.status, r.headers.clone());
    let _ = r.bytes(1 << 20).await;
    (status, headers)
}

async fn wait_up(client: &BackendClient, port: u16) {
    for _ in 0..100 {
        if let Ok(r) = client
            .request(
                Method::GET,
                &format!("127.0.0.1:{port}"),
                "/healthcheck",
                HeaderMap::new(),
                chttp::empty(),
            )
            .await
        {
            if r.status == StatusCode::OK {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server on {port} did not come up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_replicator_updater_auditor_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let (cport, aport) = (free_port(), free_port());
    let (cconf, aconf) = node(dir.path(), cport, aport);
    let c = cconf.clone();
    let cserver = tokio::spawn(async move { cairn_container::run_container_server(&c).await });
    let a = aconf.clone();
    let aserver = tokio::spawn(async move { cairn_account::run_account_server(&a).await });
    let client = BackendClient::new(Timeouts::default());
    wait_up(&client, cport).await;
    wait_up(&client, aport).await;

    let t = Timestamp::now();
    for d in ["sda", "sdb", "sdc"] {
        let (st, _) = request(
            &client,
            aport,
            Method::PUT,
            &format!("/{d}/0/AUTH_a"),
            &[("x-timestamp", t.internal())],
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{d}");
    }
    let (st, _) = request(
        &client,
        cport,
        Method::PUT,
        "/sda/0/AUTH_a/c",
        &[("x-timestamp", t.internal())],
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    for o in ["o1", "o2"] {
        let (st, _) = request(
            &client,
            cport,
            Method::PUT,
            &format!("/sda/0/AUTH_a/c/{o}"),
            &[
                ("x-timestamp", t.internal()),
                ("x-size", "5".into()),
                ("x-content-type", "text/plain".into()),
                ("x-etag", "e".into()),
            ],
        )
        .await;
        assert_eq!(st, StatusCode::CREATED);
    }

    cairn_container::run_container_replicator(&cconf, true)
        .await
        .unwrap();
    for d in ["sda", "sdb", "sdc"] {
        let (st, h) = request(
            &client,
            cport,
            Method::HEAD,
            &format!("/{d}/0/AUTH_a/c"),
            &[],
        )
        .await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{d}");
        assert_eq!(h["x-container-object-count"], "2", "{d}");
    }
    let recon = ReconCache::new(&dir.path().join("recon"), "container");
    let rep = recon.get("replication").expect("replication recon");
    assert_eq!(rep["replication_stats"]["failure"], 0, "{rep}");
    assert!(
        rep["replication_stats"]["rsync"].as_u64().unwrap() >= 2,
        "{rep}"
    );

    cairn_container::run_container_updater(&cconf, true)
        .await
        .unwrap();
    for d in ["sda", "sdb", "sdc"] {
        let (st, h) = request(&client, aport, Method::HEAD, &format!("/{d}/0/AUTH_a"), &[]).await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{d}");
        assert_eq!(h["x-account-container-count"], "1", "{d}");
        assert_eq!(h["x-account-object-count"], "2", "{d}");
        assert_eq!(h["x-account-bytes-used"], "10", "{d}");
        assert_eq!(
            h["x-account-storage-policy-policy-0-object-count"], "2",
            "{d}"
        );
    }
    let upd = recon.get("updater").expect("updater recon");
    assert_eq!(upd["successes"], 3, "{upd}");
    assert_eq!(upd["failures"], 0, "{upd}");
    // nothing changed: a second pass reports nothing
    cairn_container::run_container_updater(&cconf, true)
        .await
        .unwrap();
    assert_eq!(recon.get("updater").unwrap()["no_changes"], 3);

    cairn_container::run_container_auditor(&cconf, true)
        .await
        .unwrap();
    let aud = recon.get("auditor").expect("auditor recon");
    assert_eq!(aud["container_audits_passed"], 3, "{aud}");

    cserver.abort();
    aserver.abort();
    std::fs::write(&cconf, "[container-updater]\nbogus = 1\n").unwrap();
    let e = cairn_container::run_container_updater(&cconf, true)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("bogus"), "{e}");
}
