//! End-to-end account reaper over a real `cairn aio`: a reseller admin (admin:admin)
//! deletes the account AUTH_test2 through the proxy (aio sets `allow_account_management`),
//! `cairn account-reaper --once` runs on every node, and then no object and no container
//! of that account is left on any node, while the account AUTH_test is untouched.
//!
//! The cluster's own reaper daemons are stopped first (SIGTERM, which they must obey
//! gracefully), so that the counts in the recon cache come from the `--once` runs alone.

mod support;

use std::net::SocketAddr;

use support::{header, http, Client, Cluster, Placement};

const GONE: &str = "AUTH_test2";
const KEPT: &str = "AUTH_test";
/// AUTH_test2's containers and objects (names need no URL quoting).
const DOOMED: &[(&str, &[&str])] = &[
    ("reap-a", &["a1", "a2", "dir/a3"]),
    ("reap-b", &["b1", "b2"]),
];
const KEPT_OBJECTS: &[&str] = &["k1", "k2"];

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn put(c: &Client, suffix: &str, body: &[u8]) {
    let (status, _, _) = c.req("PUT", suffix, &[], body);
    assert_eq!(status, 201, "PUT {suffix}");
}

/// The node (1-based) whose `role` port is `port`.
fn node_of(cluster: &Cluster, port: u16) -> u16 {
    (1..=cluster.nodes)
        .find(|&n| (0..3).any(|k| cluster.port_base + 10 * n + k == port))
        .expect("a node's port")
}

/// Backend HEAD of `/account/container[/object]` on every node with that node's own
/// device: (node, status, X-Backend-Timestamp present).
fn head_everywhere(
    cluster: &Cluster,
    placement: &Placement,
    offset: u16,
    names: (&str, &str, Option<&str>),
) -> Vec<(u16, u16, bool)> {
    let (a, c, o) = names;
    let part = placement.ring.get_part(&placement.secret, a, Some(c), o);
    let path = match o {
        Some(o) => format!("/{a}/{c}/{o}"),
        None => format!("/{a}/{c}"),
    };
    (1..=cluster.nodes)
        .map(|n| {
            let port = cluster.port_base + 10 * n + offset;
            let (status, headers, _) = http(
                addr(port),
                "HEAD",
                &format!("/sdb{n}/{part}{path}"),
                &[],
                b"",
            );
            (n, status, header(&headers, "x-backend-timestamp").is_some())
        })
        .collect()
}

/// The primaries' nodes of a name on a ring.
fn primary_nodes(
    cluster: &Cluster,
    placement: &Placement,
    names: (&str, &str, Option<&str>),
) -> Vec<u16> {
    let (a, c, o) = names;
    let part = placement.ring.get_part(&placement.secret, a, Some(c), o);
    placement
        .ring
        .get_part_nodes(part)
        .map(|n| node_of(cluster, n.dev.port))
        .collect()
}

/// Sum of one `reaper_stats` counter over every node, as each account server serves its
/// `account.recon` at `/recon/reaper/account`.
fn recon_sum(cluster: &Cluster, key: &str) -> u64 {
    (1..=cluster.nodes)
        .map(|n| {
            let port = cluster.object_port(n) + 2;
            let (status, _, body) = http(addr(port), "GET", "/recon/reaper/account", &[], b"");
            assert_eq!(status, 200, "node{n} /recon/reaper/account");
            let v: serde_json::Value = serde_json::from_slice(&body).expect("recon json");
            v["reaper_stats"][key].as_u64().unwrap_or(0)
        })
        .sum()
}

fn reap_everywhere(cluster: &Cluster) {
    for n in 1..=cluster.nodes {
        cluster.run_once(n, "account-reaper");
    }
}

#[test]
fn deleted_account_is_reaped_on_every_node_and_others_stay() {
    let cluster = Cluster::start(4);
    for n in 1..=cluster.nodes {
        cluster.stop_daemon(&format!("account-reaper-node{n}"));
    }
    let log = std::fs::read_to_string(cluster.data_dir().join("log/account-reaper-node1.log"))
        .unwrap_or_default();
    assert!(log.contains("daemon stopped"), "no graceful stop:\n{log}");

    let owner = Client::login(&cluster, "test2:tester2", "testing2");
    assert_eq!(owner.account_path, format!("/v1/{GONE}"));
    let kept = Client::login(&cluster, "test:tester", "testing");
    for (c, objects) in DOOMED {
        put(&owner, &format!("/{c}"), b"");
        for o in *objects {
            put(
                &owner,
                &format!("/{c}/{o}"),
                format!("body of {o}").as_bytes(),
            );
        }
    }
    put(&kept, "/keep", b"");
    for o in KEPT_OBJECTS {
        put(&kept, &format!("/keep/{o}"), b"kept");
    }

    // aio's proxy allows account management (as Swift's all-in-one does), to reseller
    // admins only.
    let admin = Client::login(&cluster, "admin:admin", "admin");
    let delete_as = |token: &str, path: &str| {
        let (s, _, _) = http(
            cluster.proxy_addr(),
            "DELETE",
            path,
            &[("X-Auth-Token", token)],
            b"",
        );
        s
    };
    let account = format!("/v1/{GONE}");
    assert_eq!(
        delete_as(&owner.token, &account),
        403,
        "the owner is no reseller"
    );
    assert_eq!(delete_as(&admin.token, &format!("{account}?x=1")), 400);
    assert_eq!(delete_as(&admin.token, &account), 204);

    // The account is marked deleted: 410 through the proxy, 404 + status on the backend.
    let (status, _, _) = http(
        cluster.proxy_addr(),
        "HEAD",
        &account,
        &[("X-Auth-Token", &admin.token)],
        b"",
    );
    assert_eq!(status, 410);
    let accounts = Placement::load(&cluster, "account.ring");
    let apart = accounts.ring.get_part(&accounts.secret, GONE, None, None);
    for n in accounts.ring.get_part_nodes(apart) {
        let (status, headers, _) = http(
            addr(n.dev.port),
            "HEAD",
            &format!("/{}/{apart}/{GONE}", n.dev.device),
            &[],
            b"",
        );
        assert_eq!(status, 404);
        assert_eq!(header(&headers, "x-account-status"), Some("Deleted"));
    }

    let objects = Placement::load(&cluster, "object.ring");
    let containers = Placement::load(&cluster, "container.ring");
    // Before reaping, every object and container is on its primaries.
    for (c, objs) in DOOMED {
        let prim = primary_nodes(&cluster, &containers, (GONE, c, None));
        for (n, status, _) in head_everywhere(&cluster, &containers, 1, (GONE, c, None)) {
            if prim.contains(&n) {
                assert_eq!(status, 204, "container {c} on node {n}");
            }
        }
        for o in *objs {
            let prim = primary_nodes(&cluster, &objects, (GONE, c, Some(o)));
            for (n, status, _) in head_everywhere(&cluster, &objects, 0, (GONE, c, Some(o))) {
                if prim.contains(&n) {
                    assert_eq!(status, 200, "object {c}/{o} on node {n}");
                }
            }
        }
    }

    reap_everywhere(&cluster);

    let total: usize = DOOMED.iter().map(|(_, objs)| objs.len()).sum();
    // Each account primary reaps its share; once the containers of the others' shares
    // are gone from its DB, a primary run later has nothing left to do.
    let reaped = recon_sum(&cluster, "accounts_reaped");
    assert!((1..=3).contains(&reaped), "{reaped} account passes");
    assert_eq!(recon_sum(&cluster, "objects_deleted"), total as u64);
    assert_eq!(
        recon_sum(&cluster, "containers_deleted"),
        DOOMED.len() as u64
    );
    for key in ["objects_failures", "containers_failures", "errors"] {
        assert_eq!(recon_sum(&cluster, key), 0, "{key}\n{}", cluster.logs());
    }

    // Nothing of AUTH_test2 on any node; tombstones on the primaries.
    for (c, objs) in DOOMED {
        let prim = primary_nodes(&cluster, &containers, (GONE, c, None));
        for (n, status, ts) in head_everywhere(&cluster, &containers, 1, (GONE, c, None)) {
            assert_eq!(status, 404, "container {c} on node {n}");
            assert_eq!(ts, prim.contains(&n), "container {c} deleted on node {n}");
        }
        for o in *objs {
            let prim = primary_nodes(&cluster, &objects, (GONE, c, Some(o)));
            for (n, status, ts) in head_everywhere(&cluster, &objects, 0, (GONE, c, Some(o))) {
                assert_eq!(status, 404, "object {c}/{o} on node {n}");
                assert_eq!(ts, prim.contains(&n), "tombstone of {c}/{o} on node {n}");
            }
        }
    }

    // The account DBs list no container any more: a second pass finds nothing to reap.
    reap_everywhere(&cluster);
    assert_eq!(recon_sum(&cluster, "accounts_reaped"), 0);
    assert_eq!(recon_sum(&cluster, "objects_deleted"), 0);

    // AUTH_test is untouched.
    for o in KEPT_OBJECTS {
        let prim = primary_nodes(&cluster, &objects, (KEPT, "keep", Some(o)));
        for (n, status, _) in head_everywhere(&cluster, &objects, 0, (KEPT, "keep", Some(o))) {
            if prim.contains(&n) {
                assert_eq!(status, 200, "kept object {o} on node {n}");
            }
        }
    }
    let (status, _, body) = kept.req("GET", "/keep", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8_lossy(&body), "k1\nk2\n");
    let (status, headers, _) = kept.req("HEAD", "", &[], b"");
    assert_eq!(status, 204);
    assert_eq!(header(&headers, "x-account-container-count"), Some("1"));
}
