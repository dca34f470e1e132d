//! End-to-end healing (issues 8 and 10): a removed partition directory and a bit-flipped
//! object come back from other replicas; listings become true again after a container
//! server was down during uploads.

mod support;

use md5::{Digest, Md5};
use support::{header, Client, Cluster, Placement};

fn object_dir(cluster: &Cluster, node: u16, part: u32) -> std::path::PathBuf {
    cluster
        .data_dir()
        .join(format!("node{node}/devices/sdb{node}/objects/{part}"))
}

fn node_of_port(cluster: &Cluster, port: u16) -> u16 {
    (1..=cluster.nodes)
        .find(|&n| cluster.object_port(n) == port)
        .expect("node of port")
}

fn data_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(data_files(&p));
        } else if p.extension().is_some_and(|x| x == "data") {
            out.push(p);
        }
    }
    out
}

#[test]
fn removed_partition_and_flipped_bytes_are_restored() {
    let cluster = Cluster::start(4);
    let client = Client::login(&cluster, "test:tester", "testing");
    assert_eq!(client.req("PUT", "/heal", &[], b"").0, 201);
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let etag = cairn_ring::hash::to_hex(&Md5::digest(&body));
    for name in ["a", "b"] {
        assert_eq!(
            client.req("PUT", &format!("/heal/{name}"), &[], &body).0,
            201
        );
    }
    let placement = Placement::load(&cluster, "object.ring");

    // 1. Remove the whole partition directory of "a" on its first primary.
    let (part_a, primaries_a) = placement.primaries("AUTH_test", "heal", "a");
    let victim = node_of_port(&cluster, primaries_a[0].0);
    std::fs::remove_dir_all(object_dir(&cluster, victim, part_a)).expect("remove partition");
    assert_eq!(
        placement
            .head(
                primaries_a[0].0,
                &primaries_a[0].1,
                part_a,
                "/AUTH_test/heal/a"
            )
            .0,
        404
    );

    // 2. Flip bytes inside "b" on its first primary.
    let (part_b, primaries_b) = placement.primaries("AUTH_test", "heal", "b");
    let flipped_node = node_of_port(&cluster, primaries_b[0].0);
    let files = data_files(&object_dir(&cluster, flipped_node, part_b));
    assert_eq!(files.len(), 1, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).expect("read .data");
    bytes[5000] ^= 0xff;
    bytes[5001] ^= 0xff;
    std::fs::write(&files[0], &bytes).expect("corrupt .data");

    // GET never returns the corrupt bytes: either another replica serves it, or the
    // corrupt replica's stream is cut (a client error), never a clean wrong body.
    for _ in 0..6 {
        let (status, _, got) = client.req("GET", "/heal/b", &[], b"");
        if status == 200 && got.len() == body.len() {
            assert!(got == body, "corrupt bytes served as a good body");
        }
    }

    // The auditor quarantines the flipped file within one pass.
    cluster.run_once(flipped_node, "object-auditor");
    let quarantined = cluster.data_dir().join(format!(
        "node{flipped_node}/devices/sdb{flipped_node}/quarantined/objects"
    ));
    assert!(
        std::fs::read_dir(&quarantined)
            .map(|d| d.count())
            .unwrap_or(0)
            >= 1,
        "nothing quarantined under {}",
        quarantined.display()
    );

    // One replication pass on every node restores both.
    for node in 1..=cluster.nodes {
        cluster.run_once(node, "object-replicator");
    }
    for (name, part, primaries) in [("a", part_a, &primaries_a), ("b", part_b, &primaries_b)] {
        for (port, device) in primaries.iter() {
            let (status, tag) =
                placement.head(*port, device, part, &format!("/AUTH_test/heal/{name}"));
            assert_eq!(
                status,
                200,
                "{name} not restored on {port}\n{}",
                cluster.logs()
            );
            assert_eq!(tag.as_deref(), Some(etag.as_str()));
        }
    }
    let (status, headers, got) = client.req("GET", "/heal/b", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "etag"), Some(etag.as_str()));
    assert!(got == body);
}

#[test]
fn listing_is_true_after_a_container_server_was_down() {
    let cluster = Cluster::start(4);
    let client = Client::login(&cluster, "test:tester", "testing");
    assert_eq!(client.req("PUT", "/lst", &[], b"").0, 201);
    let placement = Placement::load(&cluster, "container.ring");
    let part = placement
        .ring
        .get_part(&placement.secret, "AUTH_test", Some("lst"), None);
    let first = placement.ring.get_part_nodes(part).next().expect("primary");
    let down = (1..=cluster.nodes)
        .find(|&n| cluster.port_base + 10 * n + 1 == first.dev.port)
        .expect("node");
    cluster.stop_daemon(&format!("container-server-node{down}"));

    let mut bytes = 0;
    for i in 0..20 {
        let body = vec![b'x'; 100 + i];
        bytes += body.len();
        assert_eq!(
            client.req("PUT", &format!("/lst/o{i:02}"), &[], &body).0,
            201
        );
    }
    assert_eq!(client.req("DELETE", "/lst/o00", &[], b"").0, 204);
    bytes -= 100;

    let _back = cluster.start_server(down, "container", first.dev.port);
    for node in 1..=cluster.nodes {
        cluster.run_once(node, "object-updater");
    }
    for node in 1..=cluster.nodes {
        cluster.run_once(node, "container-replicator");
        cluster.run_once(node, "container-updater");
    }

    // Every container replica lists the same 19 objects with the same counts and bytes.
    for n in placement.ring.get_part_nodes(part) {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], n.dev.port));
        let path = format!("/{}/{part}/AUTH_test/lst?format=json", n.dev.device);
        let (status, headers, body) = support::http(addr, "GET", &path, &[], b"");
        assert_eq!(status, 200, "{}", n.dev.port);
        let rows: serde_json::Value = serde_json::from_slice(&body).expect("json listing");
        let names: Vec<&str> = rows
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        let want: Vec<String> = (1..20).map(|i| format!("o{i:02}")).collect();
        assert_eq!(names, want, "replica on port {}", n.dev.port);
        assert_eq!(header(&headers, "x-container-object-count"), Some("19"));
        assert_eq!(
            header(&headers, "x-container-bytes-used"),
            Some(bytes.to_string().as_str())
        );
    }
    // The account agrees (through the proxy).
    let (_, headers, _) = client.req("HEAD", "", &[], b"");
    assert_eq!(header(&headers, "x-account-object-count"), Some("19"));
    assert_eq!(
        header(&headers, "x-account-bytes-used"),
        Some(bytes.to_string().as_str())
    );
}
