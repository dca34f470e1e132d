//! Container DB replication end to end: the `cairn_db` replicator pushing through a real
//! container server (REPLICATE and `/DEV/tmp` uploads over loopback HTTP).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use cairn_common::daemon::Stop;
use cairn_common::http::{self as chttp, Handler, RequestBody};
use cairn_common::{HashPathSecret, Timestamp};
use cairn_container::{ContainerServer, ContainerServerSettings};
use cairn_db::replicator::{DbReplicator, ReplicatorSettings};
use cairn_db::ContainerKind;
use cairn_ring::types::{Device, RingData};
use cairn_ring::Ring;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;

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
                device: format!("sd{}", (b'a' + i as u8) as char),
                weight: 1.0,
                meta: String::new(),
            })
        })
        .collect();
    Ring::from_data(RingData {
        part_power: 0,
        replica2part2dev: vec![vec![0], vec![1], vec![2]],
        devs,
        version: 1,
    })
    .unwrap()
}

async fn call(
    s: &ContainerServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Bytes) {
    let mut b = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = s
        .handle(b.body(RequestBody::from(Bytes::new())).unwrap())
        .await;
    let status = resp.status();
    (
        status,
        resp.into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicator_through_container_server() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["sda", "sdb", "sdc"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    let server = ContainerServer::new(
        ContainerServerSettings::new(dir.path()),
        HashPathSecret::new("", "changeme"),
    );
    let handle = chttp::spawn_server(
        "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
        Arc::new(server.clone()),
        chttp::ServeOptions::new("container-server"),
    )
    .await
    .unwrap();
    let port = handle.addr().port();

    // recent timestamps: tombstones older than reclaim_age would be reclaimed (and the
    // old rows legitimately come back from the other replicas)
    let base = Timestamp::now().secs() - 100;
    let t = |s: u64| Timestamp::from_secs(base + s).internal();
    let (st, _) = call(
        &server,
        "PUT",
        "/sda/0/AUTH_a/c",
        &[("X-Timestamp", &t(1)), ("X-Container-Meta-Color", "blue")],
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    for i in 0..20 {
        let (st, _) = call(
            &server,
            "PUT",
            &format!("/sda/0/AUTH_a/c/obj{i:02}"),
            &[
                ("X-Timestamp", &t(2)),
                ("X-Size", "7"),
                ("X-Content-Type", "text/plain"),
                ("X-Etag", "e"),
            ],
        )
        .await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let repl = DbReplicator::<ContainerKind>::new(
        ReplicatorSettings::new(dir.path(), vec!["127.0.0.1".into()], port),
        Arc::new(ring(port)),
    );
    let stop = Stop::new();
    let s = repl.run_once(&stop).await;
    assert_eq!((s.rsync, s.failure), (2, 0), "{s:?}");
    // more rows on sdb travel back to sda and on to sdc as diffs
    let (st, _) = call(
        &server,
        "DELETE",
        "/sdb/0/AUTH_a/c/obj00",
        &[("X-Timestamp", &t(3))],
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let s = repl.run_once(&stop).await;
    assert_eq!(s.failure, 0, "{s:?}");
    assert!(s.diff >= 2, "{s:?}");
    for d in ["sda", "sdb", "sdc"] {
        let (st, body) = call(
            &server,
            "GET",
            &format!("/{d}/0/AUTH_a/c?format=json&limit=2"),
            &[],
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{d}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v[0]["name"], "obj01", "{d}");
        let resp = server
            .handle(
                Request::builder()
                    .method("HEAD")
                    .uri(format!("/{d}/0/AUTH_a/c"))
                    .body(RequestBody::from(Bytes::new()))
                    .unwrap(),
            )
            .await;
        let h = resp.headers();
        assert_eq!(h["x-container-object-count"], "19", "{d}");
        assert_eq!(h["x-container-meta-color"], "blue", "{d}");
    }
    drop(handle);
}
