//! The run functions end to end, in process: `run_account_server` on a loopback port
//! from a real `account-server.toml` + `cairn.toml` + `rings/account.ring`, then
//! `run_account_replicator(.., once)` copying an account DB to the other two ring devices
//! and writing `account.recon`, and `run_account_auditor(.., once)`.

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

/// A node directory: config files, a 3-device ring on `port`, devices, recon dir.
fn node(dir: &Path, port: u16) -> PathBuf {
    std::fs::write(
        dir.join("cairn.toml"),
        "[cluster]\nhash_path_suffix = \"changeme\"\n\n[[policy]]\nindex = 0\nname = \"gold\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("rings")).unwrap();
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
    write_file(RING_MAGIC, &dir.join("rings/account.ring"), &data, false).unwrap();
    for d in ["sda", "sdb", "sdc"] {
        std::fs::create_dir_all(dir.join("srv").join(d)).unwrap();
    }
    let config = dir.join("account-server.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind_port = {port}\ndevices = \"srv\"\nrecon_cache_path = \"recon\"\n\n\
             [account-replicator]\ninterval = 1\n\n[account-auditor]\naccounts_per_second = 0\n"
        ),
    )
    .unwrap();
    config
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_replicator_and_auditor_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = node(dir.path(), port);
    let cfg = config.clone();
    let server = tokio::spawn(async move { cairn_account::run_account_server(&cfg).await });
    let client = BackendClient::new(Timeouts::default());
    let mut up = false;
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
            up = r.status == StatusCode::OK;
            if up {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "account server did not come up");

    let t = Timestamp::now();
    let (st, _) = request(
        &client,
        port,
        Method::PUT,
        "/sda/0/AUTH_a",
        &[
            ("x-timestamp", t.internal()),
            ("x-account-meta-color", "blue".into()),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = request(
        &client,
        port,
        Method::PUT,
        "/sda/0/AUTH_a/c1",
        &[
            ("x-put-timestamp", t.internal()),
            ("x-delete-timestamp", "0".into()),
            ("x-object-count", "3".into()),
            ("x-bytes-used", "30".into()),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    for d in ["sdb", "sdc"] {
        let (st, _) = request(&client, port, Method::HEAD, &format!("/{d}/0/AUTH_a"), &[]).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{d}");
    }

    cairn_account::run_account_replicator(&config, true)
        .await
        .unwrap();
    for d in ["sda", "sdb", "sdc"] {
        let (st, h) = request(&client, port, Method::HEAD, &format!("/{d}/0/AUTH_a"), &[]).await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{d}");
        assert_eq!(h["x-account-object-count"], "3", "{d}");
        assert_eq!(h["x-account-meta-color"], "blue", "{d}");
        assert_eq!(h["x-account-storage-policy-gold-bytes-used"], "30", "{d}");
    }
    let recon = ReconCache::new(&dir.path().join("recon"), "account");
    let rep = recon.get("replication").expect("replication recon");
    assert!(
        rep["replication_stats"]["attempted"].as_u64().unwrap() >= 1,
        "{rep}"
    );
    assert_eq!(rep["replication_stats"]["failure"], 0, "{rep}");
    assert!(rep["replication_last"].as_f64().unwrap() > 0.0);
    // served by the account server's recon endpoint
    let r = client
        .request(
            Method::GET,
            &format!("127.0.0.1:{port}"),
            "/recon/replication/account",
            HeaderMap::new(),
            chttp::empty(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes(1 << 20).await.unwrap()).unwrap();
    assert_eq!(v["replication_stats"], rep["replication_stats"]);

    cairn_account::run_account_auditor(&config, true)
        .await
        .unwrap();
    let aud = recon.get("auditor").expect("auditor recon");
    assert_eq!(aud["account_audits_passed"], 3, "{aud}");
    assert_eq!(aud["account_audits_failed"], 0, "{aud}");

    server.abort();
    // a broken config is refused with the key named
    std::fs::write(&config, "[account-replicator]\nbogus = 1\n").unwrap();
    let e = cairn_account::run_account_replicator(&config, true)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("bogus"), "{e}");
}

#[tokio::test]
async fn auditor_quarantines_a_damaged_db() {
    let dir = tempfile::tempdir().unwrap();
    let config = node(dir.path(), free_port());
    let hash_dir = dir
        .path()
        .join("srv/sda/accounts/0/abc/0123456789abcdef0123456789abcabc");
    std::fs::create_dir_all(&hash_dir).unwrap();
    std::fs::write(
        hash_dir.join("0123456789abcdef0123456789abcabc.db"),
        b"this is not a database, not even close; sqlite will refuse it".repeat(100),
    )
    .unwrap();
    cairn_account::run_account_auditor(&config, true)
        .await
        .unwrap();
    assert!(!hash_dir.exists());
    assert!(dir
        .path()
        .join("srv/sda/quarantined/accounts/0123456789abcdef0123456789abcabc")
        .is_dir());
    let aud = ReconCache::new(&dir.path().join("recon"), "account")
        .get("auditor")
        .unwrap();
    assert_eq!(aud["account_audits_failed"], 1, "{aud}");
}
