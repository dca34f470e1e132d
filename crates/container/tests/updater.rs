//! The container-updater against a loopback fake account server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use cairn_common::daemon::Stop;
use cairn_common::http::{self as chttp, RequestBody};
use cairn_common::{HashPathSecret, Timestamp};
use cairn_container::{ContainerUpdater, UpdaterSettings};
use cairn_db::{ContainerBroker, ObjectRecord};
use cairn_ring::types::{Device, RingData};
use cairn_ring::Ring;
use http::{HeaderMap, Request, StatusCode};

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

#[tokio::test]
async fn reports_changed_containers_once() {
    let seen: Arc<Mutex<Vec<(String, HeaderMap)>>> = Arc::default();
    let status = Arc::new(Mutex::new(StatusCode::CREATED));
    let (seen2, status2) = (seen.clone(), status.clone());
    let listener = chttp::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap())
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let handler = chttp::handler_fn(move |req: Request<RequestBody>| {
        let (seen, status) = (seen2.clone(), status2.clone());
        async move {
            seen.lock()
                .unwrap()
                .push((req.uri().path().to_string(), req.headers().clone()));
            let mut r = http::Response::new(chttp::empty());
            *r.status_mut() = *status.lock().unwrap();
            r
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let srv = tokio::spawn(chttp::serve(
        listener,
        Arc::new(handler),
        async {
            let _ = stop_rx.await;
        },
        chttp::ServeOptions::new("fake-account"),
    ));

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sda")).unwrap();
    let secret = HashPathSecret::new("", "changeme");
    let hash = secret.hash_path("AUTH_a", Some("c"), None);
    let db = cairn_db::db_path(dir.path(), "sda", "containers", 3, &hash);
    let (b, _) =
        ContainerBroker::create(&db, "AUTH_a", "c", Timestamp::from_secs(1_700_000_000), 0)
            .unwrap();
    b.put_object(&ObjectRecord::put(
        "o",
        Timestamp::from_secs(1_700_000_001),
        42,
        "t",
        "e",
    ))
    .unwrap();

    let mut settings = UpdaterSettings::new(dir.path());
    settings.containers_per_second = 0.0;
    let up = ContainerUpdater::new(settings, Arc::new(ring(port)), secret.clone());
    let stop = Stop::new();

    // account replicas fail: no report recorded
    *status.lock().unwrap() = StatusCode::INTERNAL_SERVER_ERROR;
    let s = up.run_once(&stop).await;
    assert_eq!((s.successes, s.failures, s.no_changes), (0, 1, 0));
    assert_eq!(b.get_info().unwrap().reported_object_count, 0);
    assert_eq!(seen.lock().unwrap().len(), 3);

    // a fresh updater (no suppression) with healthy replicas
    *status.lock().unwrap() = StatusCode::CREATED;
    let mut settings = UpdaterSettings::new(dir.path());
    settings.containers_per_second = 0.0;
    let up = ContainerUpdater::new(settings, Arc::new(ring(port)), secret.clone());
    seen.lock().unwrap().clear();
    let s = up.run_once(&stop).await;
    assert_eq!((s.successes, s.failures, s.no_changes), (1, 0, 0));
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        let part = ring(port).get_part(&secret, "AUTH_a", None, None);
        let mut paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            (0..3)
                .map(|i| format!("/sdx{i}/{part}/AUTH_a/c"))
                .collect::<Vec<_>>()
        );
        let h = &seen[0].1;
        let g = |k: &str| h.get(k).unwrap().to_str().unwrap().to_string();
        assert_eq!(g("x-put-timestamp"), "1700000000.00000");
        assert_eq!(g("x-delete-timestamp"), "0000000000.00000");
        assert_eq!(g("x-object-count"), "1");
        assert_eq!(g("x-bytes-used"), "42");
        assert_eq!(g("x-account-override-deleted"), "yes");
        assert_eq!(g("x-backend-storage-policy-index"), "0");
    }
    let info = b.get_info().unwrap();
    assert_eq!(
        (info.reported_object_count, info.reported_bytes_used),
        (1, 42)
    );
    assert_eq!(info.reported_put_timestamp, info.put_timestamp);

    // nothing changed: nothing sent
    seen.lock().unwrap().clear();
    let s = up.run_once(&stop).await;
    assert_eq!((s.successes, s.failures, s.no_changes), (0, 0, 1));
    assert!(seen.lock().unwrap().is_empty());

    // a delete is reported again
    b.delete_object("o", Timestamp::from_secs(1_700_000_002), 0)
        .unwrap();
    b.delete_db(Timestamp::from_secs(1_700_000_003)).unwrap();
    let s = up.run_once(&stop).await;
    assert_eq!(s.successes, 1);
    let info = b.get_info().unwrap();
    assert_eq!(
        info.reported_delete_timestamp,
        Timestamp::from_secs(1_700_000_003)
    );
    assert_eq!(info.reported_object_count, 0);

    let _ = stop_tx.send(());
    let _ = srv.await;
}
