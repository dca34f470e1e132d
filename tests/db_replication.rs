//! End-to-end DB replication (issue #9) over a real `cairn aio`: a lost container DB
//! replica comes back as a whole copy with its own id, and a container deleted while
//! one of its servers was down stays deleted once that server is back and the
//! replicators ran.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use support::{header, http, Client, Cluster, Placement, CAIRN};

/// A container's partition, hash and primaries as (node, port, device).
struct Replicas {
    part: u32,
    hash: String,
    nodes: Vec<(u16, u16, String)>,
}

fn replicas(cluster: &Cluster, container: &str) -> Replicas {
    let placement = Placement::load(cluster, "container.ring");
    let part = placement
        .ring
        .get_part(&placement.secret, "AUTH_test", Some(container), None);
    let hash = placement
        .secret
        .hash_path("AUTH_test", Some(container), None);
    let nodes = placement
        .ring
        .get_part_nodes(part)
        .map(|n| {
            let node = (1..=cluster.nodes)
                .find(|&k| cluster.port_base + 10 * k + 1 == n.dev.port)
                .expect("node of a container port");
            (node, n.dev.port, n.dev.device.clone())
        })
        .collect();
    Replicas { part, hash, nodes }
}

/// `DIR/nodeN/devices/DEV/containers/PART/SUFFIX/HASH/HASH.db`.
fn db_file(cluster: &Cluster, r: &Replicas, node: u16, device: &str) -> PathBuf {
    cluster
        .data_dir()
        .join(format!("node{node}/devices/{device}/containers"))
        .join(r.part.to_string())
        .join(&r.hash[r.hash.len() - 3..])
        .join(&r.hash)
        .join(format!("{}.db", r.hash))
}

/// The DB's `id`, as `cairn info` prints it.
fn db_id(cluster: &Cluster, db: &std::path::Path) -> String {
    let out = Command::new(CAIRN)
        .arg("info")
        .arg(db)
        .arg("--cluster-config")
        .arg(cluster.data_dir().join("etc/cairn.toml"))
        .output()
        .expect("run cairn info");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "cairn info {}: {}",
        db.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find_map(|l| l.trim().strip_prefix("id: "))
        .unwrap_or_else(|| panic!("no id in:\n{text}"))
        .to_string()
}

/// Backend request to one container replica: (status, headers, body).
fn backend(
    port: u16,
    method: &str,
    device: &str,
    part: u32,
    suffix: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    http(
        addr,
        method,
        &format!("/{device}/{part}/AUTH_test{suffix}"),
        &[],
        b"",
    )
}

fn listed_names(body: &[u8]) -> Vec<String> {
    let rows: serde_json::Value = serde_json::from_slice(body).expect("json listing");
    rows.as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_lost_container_db_is_copied_back_with_a_new_id() {
    let cluster = Cluster::start(4);
    let client = Client::login(&cluster, "test:tester", "testing");
    assert_eq!(client.req("PUT", "/lost", &[], b"").0, 201);
    let mut bytes = 0;
    for i in 0..7 {
        let body = vec![b'y'; 10 + i];
        bytes += body.len();
        assert_eq!(client.req("PUT", &format!("/lost/o{i}"), &[], &body).0, 201);
    }
    let want: Vec<String> = (0..7).map(|i| format!("o{i}")).collect();
    let r = replicas(&cluster, "lost");
    assert_eq!(r.nodes.len(), 3);
    for (_, port, dev) in &r.nodes {
        let (status, _, body) = backend(*port, "GET", dev, r.part, "/lost?format=json");
        assert_eq!(status, 200);
        assert_eq!(listed_names(&body), want, "replica on {port}");
    }
    let ids: Vec<String> = r
        .nodes
        .iter()
        .map(|(node, _, dev)| db_id(&cluster, &db_file(&cluster, &r, *node, dev)))
        .collect();

    // lose the first primary's DB: its whole hash directory
    let (victim, vport, vdev) = r.nodes[0].clone();
    let victim_db = db_file(&cluster, &r, victim, &vdev);
    std::fs::remove_dir_all(victim_db.parent().expect("hash dir")).expect("remove hash dir");
    assert_eq!(backend(vport, "HEAD", &vdev, r.part, "/lost").0, 404);

    for node in 1..=cluster.nodes {
        cluster.run_once(node, "container-replicator");
    }

    assert!(
        victim_db.is_file(),
        "{} not recreated\n{}",
        victim_db.display(),
        cluster.logs()
    );
    let (status, headers, body) = backend(vport, "GET", &vdev, r.part, "/lost?format=json");
    assert_eq!(status, 200);
    assert_eq!(listed_names(&body), want);
    assert_eq!(header(&headers, "x-container-object-count"), Some("7"));
    assert_eq!(
        header(&headers, "x-container-bytes-used"),
        Some(bytes.to_string().as_str())
    );
    // the copy has its own id; the other replicas keep theirs
    let new_id = db_id(&cluster, &victim_db);
    assert!(!ids.contains(&new_id), "{new_id} reused from {ids:?}");
    assert!(new_id.ends_with(&format!("-{vdev}")), "{new_id}");
    for (k, (node, _, dev)) in r.nodes.iter().enumerate().skip(1) {
        assert_eq!(db_id(&cluster, &db_file(&cluster, &r, *node, dev)), ids[k]);
    }
    // and it is in sync with them: a new object shows up everywhere after a pass
    assert_eq!(client.req("PUT", "/lost/late", &[], b"z").0, 201);
    for node in 1..=cluster.nodes {
        cluster.run_once(node, "container-replicator");
    }
    for (_, port, dev) in &r.nodes {
        let (status, headers, _) = backend(*port, "HEAD", dev, r.part, "/lost");
        assert_eq!(status, 204, "{port}");
        assert_eq!(header(&headers, "x-container-object-count"), Some("8"));
    }
    // the proxy's view
    let (status, _, body) = client.req("GET", "/lost?format=json", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(listed_names(&body).len(), 8);
}

#[test]
fn a_container_deleted_while_a_server_was_down_stays_deleted() {
    let cluster = Cluster::start(4);
    let client = Client::login(&cluster, "test:tester", "testing");
    assert_eq!(client.req("PUT", "/gone", &[], b"").0, 201);
    assert_eq!(client.req("PUT", "/kept", &[], b"").0, 201);
    let r = replicas(&cluster, "gone");
    let (down, dport, _) = r.nodes[0].clone();
    cluster.stop_daemon(&format!("container-server-node{down}"));

    assert_eq!(client.req("DELETE", "/gone", &[], b"").0, 204);

    let _back = cluster.start_server(down, "container", dport);
    // the replica that missed the DELETE still thinks the container exists
    assert!(matches!(
        backend(dport, "HEAD", &r.nodes[0].2, r.part, "/gone").0,
        200 | 204
    ));
    for node in 1..=cluster.nodes {
        cluster.run_once(node, "container-replicator");
    }
    for node in 1..=cluster.nodes {
        cluster.run_once(node, "container-updater");
    }
    for node in 1..=cluster.nodes {
        cluster.run_once(node, "account-replicator");
    }

    for (_, port, dev) in &r.nodes {
        assert_eq!(
            backend(*port, "HEAD", dev, r.part, "/gone").0,
            404,
            "replica on {port}\n{}",
            cluster.logs()
        );
    }
    assert_eq!(client.req("HEAD", "/gone", &[], b"").0, 404);
    let (status, headers, body) = client.req("GET", "?format=json", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(listed_names(&body), vec!["kept".to_string()]);
    assert_eq!(header(&headers, "x-account-container-count"), Some("1"));
    // an object PUT into it is refused (the container is gone, not resurrected)
    assert_eq!(client.req("PUT", "/gone/o", &[], b"x").0, 404);
}
