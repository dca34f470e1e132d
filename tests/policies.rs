//! End-to-end storage policies (issue 12): a cluster initialised with `cairn aio init`,
//! then given a second policy `silver` (`write_quorum = "all"`) with its own object ring
//! built by the ring CLI, then started.
//!
//! * a container created with `X-Storage-Policy: silver` keeps its objects under
//!   `objects-1` on the primaries of `object-1.ring`, and says so on HEAD;
//! * changing a container's policy is refused (409); `/info` lists both policies;
//! * with one object server stopped, a silver PUT (every primary required) is 503 while a
//!   default-policy PUT (majority, handoffs allowed) is 201;
//! * read repair: an object removed from one primary is pushed back by the proxy after a
//!   single GET, without any replicator run.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{edit_toml, header, http, toml_table, Client, Cluster, CAIRN};

fn cairn(args: &[&str]) {
    let out = Command::new(CAIRN).args(args).output().expect("run cairn");
    assert!(
        out.status.success(),
        "cairn {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Between `aio init` and the start: the second policy, its ring, reads in ring order.
fn add_silver(cluster: &Cluster) {
    let etc = cluster.etc();
    // The second policy, every primary required.
    edit_toml(&etc.join("cairn.toml"), |file| {
        let silver: toml::Table =
            toml::from_str("index = 1\nname = \"silver\"\nwrite_quorum = \"all\"\n")
                .expect("policy table");
        let policies = file
            .entry("policy")
            .or_insert_with(|| toml::Value::Array(Vec::new()));
        policies
            .as_array_mut()
            .expect("[[policy]] array")
            .push(silver.into());
    });
    // Reads in ring order (deterministic for the read-repair check), in the `[proxy]`
    // table aio already writes.
    edit_toml(&etc.join("proxy-server.toml"), |file| {
        toml_table(file, "proxy").insert("sorting_method".into(), "affinity".into());
    });
    // Its ring: the same devices as object.ring, another seed.
    let builder = etc.join("rings").join("object-1.builder");
    let b = builder.to_str().expect("utf-8");
    cairn(&["ring", b, "create", "10", "3", "1"]);
    let mut add = vec!["ring".to_string(), b.to_string(), "add".to_string()];
    for n in 1..=cluster.nodes {
        add.push(format!(
            "r1z{n}-127.0.0.1:{}/sdb{n}",
            cluster.object_port(n)
        ));
        add.push("100".into());
    }
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    cairn(&add);
    cairn(&["ring", b, "rebalance", "--seed", "7"]);
    assert!(etc.join("rings").join("object-1.ring").exists());
}

/// Partition, hash and primaries' node numbers of an object in a policy's ring.
fn placement(c: &Cluster, ring: &str, a: &str, cont: &str, o: &str) -> (u32, String, Vec<u16>) {
    let config =
        cairn_common::config::ClusterConfig::load(&c.etc().join("cairn.toml")).expect("cairn.toml");
    let ring = cairn_ring::Ring::load(&config.ring_dir().join(ring)).expect("ring");
    let secret = config.hash_path_secret();
    let part = ring.get_part(&secret, a, Some(cont), Some(o));
    let nodes = ring
        .get_part_nodes(part)
        .map(|n| (n.dev.port - c.port_base) / 10)
        .collect();
    (part, secret.hash_path(a, Some(cont), Some(o)), nodes)
}

/// The hash directory of an object on node `n` under `objects_dir`.
fn hash_dir(c: &Cluster, n: u16, objects_dir: &str, part: u32, hash: &str) -> PathBuf {
    c.data_dir()
        .join(format!("node{n}"))
        .join("devices")
        .join(format!("sdb{n}"))
        .join(objects_dir)
        .join(part.to_string())
        .join(&hash[hash.len() - 3..])
        .join(hash)
}

fn has_data(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".data"))
        })
        .unwrap_or(false)
}

/// The first object name whose primaries in `ring` include node `n`.
fn name_on(c: &Cluster, ring: &str, cont: &str, n: u16, prefix: &str) -> String {
    (0..1000)
        .map(|i| format!("{prefix}-{i}"))
        .find(|o| placement(c, ring, "AUTH_test", cont, o).2.contains(&n))
        .expect("an object placed on the node")
}

#[test]
fn silver_policy_placement_conflicts_quorum_and_read_repair() {
    let cluster = Cluster::start_edited(4, add_silver);
    let client = Client::login(&cluster, "test:tester", "testing");

    // /info lists both policies, gold the default.
    let (status, _, body) = http(cluster.proxy_addr(), "GET", "/info", &[], b"");
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_slice(&body).expect("info json");
    let policies = info["swift"]["policies"].as_array().expect("policies");
    let names: Vec<&str> = policies.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["gold", "silver"], "{info}");
    assert_eq!(policies[0]["default"], serde_json::json!(true));

    // Containers: silver by name, gold by default.
    let (status, _, _) = client.req("PUT", "/sc", &[("X-Storage-Policy", "silver")], b"");
    assert_eq!(status, 201);
    let (status, _, _) = client.req("PUT", "/gc", &[], b"");
    assert_eq!(status, 201);
    let (status, h, _) = client.req("HEAD", "/sc", &[], b"");
    assert_eq!(status, 204);
    assert_eq!(header(&h, "x-storage-policy"), Some("silver"));
    let (_, h, _) = client.req("HEAD", "/gc", &[], b"");
    assert_eq!(header(&h, "x-storage-policy"), Some("gold"));
    // Changing the policy is a conflict; the same policy again is fine.
    let (status, _, _) = client.req("PUT", "/sc", &[("X-Storage-Policy", "gold")], b"");
    assert_eq!(status, 409);
    let (status, _, _) = client.req("PUT", "/gc", &[("X-Storage-Policy", "silver")], b"");
    assert_eq!(status, 409);
    let (status, _, _) = client.req("PUT", "/sc", &[("X-Storage-Policy", "silver")], b"");
    assert_eq!(status, 202);
    let (status, _, _) = client.req("PUT", "/sc", &[("X-Storage-Policy", "bronze")], b"");
    assert_eq!(status, 400);
    let (_, h, _) = client.req("HEAD", "/sc", &[], b"");
    assert_eq!(header(&h, "x-storage-policy"), Some("silver"));

    // A silver object lives under objects-1 on the primaries of object-1.ring only.
    let body = b"silver bytes ".repeat(100);
    let (status, _, _) = client.req("PUT", "/sc/obj", &[], &body);
    assert_eq!(status, 201);
    let (part, hash, prim) = placement(&cluster, "object-1.ring", "AUTH_test", "sc", "obj");
    assert_eq!(prim.len(), 3);
    for n in 1..=4u16 {
        let silver = hash_dir(&cluster, n, "objects-1", part, &hash);
        assert_eq!(
            has_data(&silver),
            prim.contains(&n),
            "node{n} {} (primaries {prim:?})",
            silver.display()
        );
        let (gpart, _, _) = placement(&cluster, "object.ring", "AUTH_test", "sc", "obj");
        assert!(!hash_dir(&cluster, n, "objects", gpart, &hash).exists());
    }
    let (status, _, got) = client.req("GET", "/sc/obj", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(got, body);

    // Read repair: remove the object from its first primary; one GET (served by the
    // second) makes the proxy push it back, with no replicator involved.
    let first = hash_dir(&cluster, prim[0], "objects-1", part, &hash);
    std::fs::remove_dir_all(&first).expect("remove object");
    assert!(!has_data(&first));
    let (status, _, got) = client.req("GET", "/sc/obj", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(got, body);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !has_data(&first) {
        assert!(
            Instant::now() < deadline,
            "read repair did not restore {}\n{}",
            first.display(),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _, metrics) = http(cluster.proxy_addr(), "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("cairn_proxy_read_repair_done_total 1"),
        "{metrics}"
    );

    // Node 2's object server stops: silver needs every primary, gold a majority.
    cluster.stop_daemon("object-server-node2");
    let silver_name = name_on(&cluster, "object-1.ring", "sc", 2, "s");
    let (status, _, _) = client.req("PUT", &format!("/sc/{silver_name}"), &[], &body);
    assert_eq!(status, 503, "silver PUT with a primary down");
    let gold_name = name_on(&cluster, "object.ring", "gc", 2, "g");
    let (status, _, _) = client.req("PUT", &format!("/gc/{gold_name}"), &[], &body);
    assert_eq!(status, 201, "gold PUT with a primary down");
    let (status, _, got) = client.req("GET", &format!("/gc/{gold_name}"), &[], b"");
    assert_eq!(status, 200);
    assert_eq!(got, body);
    // A silver object whose primaries are all up still takes writes.
    let up_name = (0..1000)
        .map(|i| format!("up-{i}"))
        .find(|o| {
            !placement(&cluster, "object-1.ring", "AUTH_test", "sc", o)
                .2
                .contains(&2)
        })
        .expect("an object away from node 2");
    let (status, _, _) = client.req("PUT", &format!("/sc/{up_name}"), &[], &body);
    assert_eq!(status, 201, "silver PUT with its primaries up");
}
