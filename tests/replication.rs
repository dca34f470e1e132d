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
