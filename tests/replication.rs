//! End-to-end fault test (issues 6 and 8): one storage node's object server is stopped
//! while objects are written, overwritten and deleted through the proxy. Writes keep
//! succeeding through handoffs, reads keep succeeding; after the node returns and one
//! replicator pass runs on every node, every primary holds the newest version of every
//! object, no deleted object comes back, and handoff partitions are gone.

mod support;

use md5::{Digest, Md5};
use support::{header, Client, Cluster, Placement};

fn etag(body: &[u8]) -> String {
    cairn_ring::hash::to_hex(&Md5::digest(body))
}

fn body(name: &str, version: u32) -> Vec<u8> {
    format!("{name} version {version} ")
        .repeat(50 + version as usize)
        .into_bytes()
}

#[test]
fn stopped_node_writes_go_to_handoffs_and_replication_heals() {
    let cluster = Cluster::start(4);
    let client = Client::login(&cluster, "test:tester", "testing");
    let (status, _, _) = client.req("PUT", "/photos", &[], b"");
    assert_eq!(status, 201);

    // 30 objects while every node is up.
    let names: Vec<String> = (0..30).map(|i| format!("obj-{i:02}")).collect();
    for name in &names {
        let (status, _, _) = client.req("PUT", &format!("/photos/{name}"), &[], &body(name, 1));
        assert_eq!(status, 201, "PUT {name}");
    }

    cluster.stop_daemon("object-server-node2");

    // While node 2 is down: overwrite 10, delete 10, add 10 new; all acknowledged.
    let mut expected: Vec<(String, Option<String>)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match i % 3 {
            0 => {
                let (status, _, _) =
                    client.req("PUT", &format!("/photos/{name}"), &[], &body(name, 2));
                assert_eq!(status, 201, "overwrite {name} with a node down");
                expected.push((name.clone(), Some(etag(&body(name, 2)))));
            }
            1 => {
                let (status, _, _) = client.req("DELETE", &format!("/photos/{name}"), &[], b"");
                assert_eq!(status, 204, "delete {name} with a node down");
                expected.push((name.clone(), None));
            }
            _ => expected.push((name.clone(), Some(etag(&body(name, 1))))),
        }
    }
    for i in 0..10 {
        let name = format!("new-{i:02}");
        let (status, _, _) = client.req("PUT", &format!("/photos/{name}"), &[], &body(&name, 1));
        assert_eq!(status, 201, "PUT {name} with a node down");
        expected.push((name.clone(), Some(etag(&body(&name, 1)))));
    }
    // Reads succeed with the node down.
    for (name, want) in &expected {
        let (status, headers, _) = client.req("GET", &format!("/photos/{name}"), &[], b"");
        match want {
            Some(tag) => {
                assert_eq!(status, 200, "GET {name} with a node down");
                assert_eq!(header(&headers, "etag"), Some(tag.as_str()), "{name}");
            }
            None => assert_eq!(status, 404, "GET deleted {name}"),
        }
    }

    // Node 2 returns; one replication pass on every node.
    let _node2 = cluster.start_server(2, "object", cluster.object_port(2));
    for node in 1..=4 {
        cluster.run_once(node, "object-replicator");
    }

    let placement = Placement::load(&cluster, "object.ring");
    for (name, want) in &expected {
        let (part, primaries) = placement.primaries("AUTH_test", "photos", name);
        for (port, device) in &primaries {
            let (status, tag) =
                placement.head(*port, device, part, &format!("/AUTH_test/photos/{name}"));
            match want {
                Some(want) => {
                    assert_eq!(
                        status,
                        200,
                        "{name} missing on {port}/{device}\n{}",
                        cluster.logs()
                    );
                    assert_eq!(
                        tag.as_deref(),
                        Some(want.as_str()),
                        "{name} stale on {port}/{device}"
                    );
                }
                None => assert_eq!(status, 404, "deleted {name} came back on {port}/{device}"),
            }
        }
    }

    // No data left on handoffs: every object file sits in a partition the node is primary for.
    for node in 1..=4u16 {
        let objects = cluster
            .data_dir()
            .join(format!("node{node}/devices/sdb{node}/objects"));
        let Ok(parts) = std::fs::read_dir(&objects) else {
            continue;
        };
        for part in parts.flatten() {
            let Ok(part_no) = part.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let is_primary = placement
                .ring
                .get_part_nodes(part_no)
                .any(|n| n.dev.port == cluster.object_port(node));
            if !is_primary {
                let files = walk_files(&part.path());
                assert!(
                    files.is_empty(),
                    "node{node} still holds handoff partition {part_no}: {files:?}"
                );
            }
        }
    }
}

fn walk_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk_files(&p));
            } else {
                let name = e.file_name().to_string_lossy().to_string();
                if name.ends_with(".data") || name.ends_with(".ts") || name.ends_with(".meta") {
                    out.push(p.display().to_string());
                }
            }
        }
    }
    out
}

#[test]
fn node_stopped_mid_workload_loses_nothing_acknowledged() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let cluster = Cluster::start(4);
    let client = Client::login(&cluster, "test:tester", "testing");
    assert_eq!(client.req("PUT", "/busy", &[], b"").0, 201);

    // A writer PUTs 80 objects while the main thread stops a node after the 20th.
    let done = Arc::new(AtomicUsize::new(0));
    let writer = {
        let done = done.clone();
        let (addr, path, token) = (
            client.addr,
            client.account_path.clone(),
            client.token.clone(),
        );
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            for i in 0..80 {
                let name = format!("w-{i:03}");
                let body = body(&name, 1);
                let (status, _, _) = support::http(
                    addr,
                    "PUT",
                    &format!("{path}/busy/{name}"),
                    &[("X-Auth-Token", token.as_str())],
                    &body,
                );
                assert_eq!(status, 201, "PUT {name} during the node stop");
                acked.push((name, etag(&body)));
                done.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            acked
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while done.load(Ordering::SeqCst) < 20 {
        assert!(std::time::Instant::now() < deadline, "writer stalled");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    cluster.stop_daemon("object-server-node3");
    let acked = writer.join().expect("writer thread");
    assert_eq!(acked.len(), 80);

    // Every acknowledged object reads back while the node is still down.
    for (name, tag) in &acked {
        let (status, headers, _) = client.req("GET", &format!("/busy/{name}"), &[], b"");
        assert_eq!(status, 200, "GET {name}");
        assert_eq!(header(&headers, "etag"), Some(tag.as_str()));
    }
    // The listing holds all of them.
    let (status, _, listing) = client.req("GET", "/busy", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8_lossy(&listing).lines().count(), 80);

    // The node returns; after one replication pass every primary has every object.
    let _node3 = cluster.start_server(3, "object", cluster.object_port(3));
    for node in 1..=4 {
        cluster.run_once(node, "object-replicator");
    }
    let placement = Placement::load(&cluster, "object.ring");
    for (name, tag) in &acked {
        let (part, primaries) = placement.primaries("AUTH_test", "busy", name);
        for (port, device) in &primaries {
            let (status, got) =
                placement.head(*port, device, part, &format!("/AUTH_test/busy/{name}"));
            assert_eq!(status, 200, "{name} missing on {port}");
            assert_eq!(got.as_deref(), Some(tag.as_str()));
        }
    }
}
