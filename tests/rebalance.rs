//! End-to-end capacity growth (issue 8): a fifth storage node joins a running 4-node
//! cluster. Its servers start, the three rings get its device and are rebalanced, the
//! proxy picks the new rings up by itself (no restart), and object replication moves
//! every object to its new primaries while a reader keeps GETting every object: no GET
//! fails at any time, and at the end every object sits on exactly its new primaries.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use support::{header, http, wait_for_port, Client, Cluster, Placement, Proc, CAIRN};

const OBJECTS: usize = 100;
const NEW_NODE: u16 = 5;

fn body(name: &str) -> Vec<u8> {
    format!("{name} moves to a new node ")
        .repeat(20 + name.len())
        .into_bytes()
}

fn etag(body: &[u8]) -> String {
    cairn_ring::hash::to_hex(&Md5::digest(body))
}

/// Run `cairn ARGS…` and return its stdout; panics with its output when it fails.
fn cairn(args: &[&str]) -> String {
    let out = Command::new(CAIRN).args(args).output().expect("run cairn");
    assert!(
        out.status.success(),
        "cairn {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `cairn <daemon> --config <node's file> --once` for any node (also the new one).
fn run_once(cluster: &Cluster, node: u16, daemon: &str) {
    let role = daemon.split('-').next().expect("role");
    let config = cluster.server_config(node, role);
    cairn(&[
        daemon,
        "--config",
        config.to_str().expect("utf-8 path"),
        "--once",
    ]);
}

/// The port of a node's server. Nodes 1–4 follow aio's `BASE + 10N + offset`; node 5
/// gets free ports of its own (aio only checked its four nodes' ports when it started).
fn port(cluster: &Cluster, node: u16, role: &str) -> u16 {
    let offset = match role {
        "object" => 0,
        "container" => 1,
        _ => 2,
    };
    if node == NEW_NODE {
        static PORTS: OnceLock<[u16; 3]> = OnceLock::new();
        let ports = PORTS.get_or_init(|| {
            let listeners: Vec<TcpListener> = (0..3)
                .map(|_| TcpListener::bind("127.0.0.1:0").expect("free port"))
                .collect();
            let port = |i: usize| listeners[i].local_addr().expect("addr").port();
            [port(0), port(1), port(2)]
        });
        return ports[offset];
    }
    cluster.port_base + 10 * node + offset as u16
}

/// Write node 5's server files from node 4's (ports, device and paths replaced), create
/// its device, and start its three servers as processes of this test.
fn start_new_node(cluster: &Cluster) -> Vec<Proc> {
    let data = cluster.data_dir();
    std::fs::create_dir_all(data.join(format!("node{NEW_NODE}/devices/sdb{NEW_NODE}")))
        .expect("device dir");
    std::fs::create_dir_all(data.join(format!("node{NEW_NODE}/recon"))).expect("recon dir");
    std::fs::create_dir_all(data.join(format!("etc/node{NEW_NODE}"))).expect("etc dir");
    let mut procs = Vec::new();
    for role in ["object", "container", "account"] {
        let template = std::fs::read_to_string(cluster.server_config(4, role)).expect("node4");
        let old_port = format!("bind_port = {}\n", port(cluster, 4, role));
        let new_port = format!("bind_port = {}\n", port(cluster, NEW_NODE, role));
        assert!(template.contains(&old_port), "{template}");
        let text = template
            .replace(&old_port, &new_port)
            .replace("/node4/", &format!("/node{NEW_NODE}/"));
        assert!(text.contains(&format!("/node{NEW_NODE}/devices")), "{text}");
        std::fs::write(cluster.server_config(NEW_NODE, role), text).expect("write config");
        procs.push(cluster.start_server(NEW_NODE, role, port(cluster, NEW_NODE, role)));
    }
    procs
}

fn ring_file(cluster: &Cluster, role: &str) -> PathBuf {
    cluster.data_dir().join(format!("etc/rings/{role}.builder"))
}

/// Add node 5's device to the three rings and rebalance them.
fn grow_rings(cluster: &Cluster) {
    for role in ["object", "container", "account"] {
        let builder = ring_file(cluster, role);
        let builder = builder.to_str().expect("utf-8 path");
        let dev = format!(
            "r1z{NEW_NODE}-127.0.0.1:{}/sdb{NEW_NODE}",
            port(cluster, NEW_NODE, role)
        );
        cairn(&["ring", builder, "add", &dev, "100"]);
        cairn(&["ring", builder, "pretend-min-part-hours-passed"]);
        cairn(&["ring", builder, "rebalance", "--seed", "7"]);
    }
}

/// Every `.data`/`.ts`/`.meta` file under a directory.
fn object_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(object_files(&p));
        } else if p
            .extension()
            .is_some_and(|x| x == "data" || x == "ts" || x == "meta")
        {
            out.push(p);
        }
    }
    out
}

fn objects_dir(cluster: &Cluster, node: u16) -> PathBuf {
    cluster
        .data_dir()
        .join(format!("node{node}/devices/sdb{node}/objects"))
}

#[test]
fn a_new_node_takes_its_share_while_every_object_stays_readable() {
    let cluster = Cluster::start(4);
    let client = Client::login(&cluster, "test:tester", "testing");
    assert_eq!(client.req("PUT", "/grow", &[], b"").0, 201);
    let mut expected: Vec<(String, String)> = Vec::new();
    for i in 0..OBJECTS {
        let name = format!("obj-{i:03}");
        let b = body(&name);
        let (status, _, _) = client.req("PUT", &format!("/grow/{name}"), &[], &b);
        assert_eq!(status, 201, "PUT {name}");
        expected.push((name, etag(&b)));
    }
    // A reader GETs every object in a loop from now on: while the node joins, the rings
    // change, the proxy switches rings and replication moves data around.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let reader_client = Client::login(&cluster, "test:tester", "testing");
        let (stop, rounds, failures) = (stop.clone(), rounds.clone(), failures.clone());
        let objects = expected.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for (name, want) in &objects {
                    let (status, headers, got) =
                        reader_client.req("GET", &format!("/grow/{name}"), &[], b"");
                    let tag = header(&headers, "etag").unwrap_or("").to_string();
                    if status != 200 || tag != *want || etag(&got) != *want {
                        failures
                            .lock()
                            .expect("lock")
                            .push(format!("GET {name}: {status} etag {tag:?}"));
                    }
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let old = Placement::load(&cluster, "object.ring");
    assert_eq!(old.ring.iter_devs().count(), 4);

    let _new_node = start_new_node(&cluster);
    grow_rings(&cluster);
    let new = Placement::load(&cluster, "object.ring");
    assert_eq!(new.ring.iter_devs().count(), 5);
    let moved = expected
        .iter()
        .filter(|(name, _)| {
            let (_, primaries) = new.primaries("AUTH_test", "grow", name);
            primaries
                .iter()
                .any(|(p, _)| *p == port(&cluster, NEW_NODE, "object"))
        })
        .count();
    assert!(
        moved > 0,
        "no object has node {NEW_NODE} among its new primaries"
    );

    // The proxy reloads its rings by itself (file stamp checked every 15 s on the request
    // path): a probe object whose new primaries include node 5 lands there once it did.
    let probe = (0..1000)
        .map(|i| format!("probe-{i}"))
        .find(|name| {
            let (_, primaries) = new.primaries("AUTH_test", "grow", name);
            primaries
                .iter()
                .any(|(p, _)| *p == port(&cluster, NEW_NODE, "object"))
        })
        .expect("a probe name placed on node 5");
    let probe_body = body(&probe);
    let (probe_part, _) = new.primaries("AUTH_test", "grow", &probe);
    let started = Instant::now();
    loop {
        let (status, _, _) = client.req("PUT", &format!("/grow/{probe}"), &[], &probe_body);
        assert_eq!(status, 201, "PUT {probe}");
        let (status, _) = new.head(
            port(&cluster, NEW_NODE, "object"),
            &format!("sdb{NEW_NODE}"),
            probe_part,
            &format!("/AUTH_test/grow/{probe}"),
        );
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the proxy did not pick up the new object ring within 60 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "proxy used the new object ring after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    expected.push((probe.clone(), etag(&probe_body)));

    // Replication: a few rounds on all five nodes, until every object is on exactly its
    // new primaries (bounded).
    let reads_before = rounds.load(Ordering::Relaxed);
    let replication = Instant::now();
    let mut round = 0;
    let misplaced = loop {
        round += 1;
        for node in 1..=NEW_NODE {
            run_once(&cluster, node, "object-replicator");
        }
        let misplaced = misplaced_objects(&cluster, &new, &expected);
        if misplaced.is_empty() || round == 4 {
            break misplaced;
        }
    };
    let replication = replication.elapsed();
    // Let the reader finish at least one more full round after the last move.
    let seen = rounds.load(Ordering::Relaxed);
    let reads_during = seen - reads_before;
    let deadline = Instant::now() + Duration::from_secs(60);
    while rounds.load(Ordering::Relaxed) < seen + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader thread");
    let failures = failures.lock().expect("lock").clone();
    let reads = rounds.load(Ordering::Relaxed);
    eprintln!(
        "{moved} of {OBJECTS} objects have node {NEW_NODE} among their new primaries; \
         {round} replication round(s) on 5 nodes took {:.1} s; the reader read all {OBJECTS} \
         objects {reads} times ({reads_during} rounds completed during replication)",
        replication.as_secs_f64()
    );
    assert!(reads >= 2, "the reader did not get through the objects");
    assert!(
        failures.is_empty(),
        "{} failed GETs during the move, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(
        misplaced.is_empty(),
        "after {round} rounds: {misplaced:#?}\n{}",
        cluster.logs()
    );

    // Node 5 holds its share: every object whose new primaries include it.
    let on_new = object_files(&objects_dir(&cluster, NEW_NODE));
    assert!(
        on_new.len() > moved,
        "node {NEW_NODE} holds {} files for {moved} moved objects (+probe)",
        on_new.len(),
    );

    // No object file is left in a partition its node is not a primary of.
    for node in 1..=NEW_NODE {
        let Ok(parts) = std::fs::read_dir(objects_dir(&cluster, node)) else {
            continue;
        };
        for part in parts.flatten() {
            let Ok(part_no) = part.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let primary = new
                .ring
                .get_part_nodes(part_no)
                .any(|n| n.dev.port == port(&cluster, node, "object"));
            if !primary {
                let files = object_files(&part.path());
                assert!(
                    files.is_empty(),
                    "node{node} still holds partition {part_no} it is no primary of: {files:?}"
                );
            }
        }
    }

    // Containers and accounts follow their rings too: after (bounded) rounds of updaters
    // and DB replicators on all five nodes, every new container primary lists every
    // object, and so does the proxy.
    let containers = Placement::load(&cluster, "container.ring");
    let part = containers
        .ring
        .get_part(&containers.secret, "AUTH_test", Some("grow"), None);
    let want = expected.len().to_string();
    let mut db_round = 0;
    let stale = loop {
        db_round += 1;
        for node in 1..=NEW_NODE {
            run_once(&cluster, node, "object-updater");
        }
        for node in 1..=NEW_NODE {
            run_once(&cluster, node, "container-replicator");
            run_once(&cluster, node, "account-replicator");
        }
        let mut stale = Vec::new();
        for n in containers.ring.get_part_nodes(part) {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], n.dev.port));
            let path = format!("/{}/{part}/AUTH_test/grow", n.dev.device);
            let (status, headers, _) = http(addr, "HEAD", &path, &[], b"");
            let count = header(&headers, "x-container-object-count").map(str::to_string);
            if status != 204 || count.as_deref() != Some(want.as_str()) {
                stale.push(format!("{}: {status} count {count:?}", n.dev.port));
            }
        }
        if stale.is_empty() || db_round == 3 {
            break stale;
        }
    };
    assert!(
        stale.is_empty(),
        "container replicas after {db_round} rounds: {stale:?}"
    );
    let (status, _, listing) = client.req("GET", "/grow", &[], b"");
    assert_eq!(status, 200);
    let listed = String::from_utf8_lossy(&listing).lines().count();
    assert_eq!(listed, expected.len(), "container listing after the move");
    // The new node's servers still answer (they were started by this test).
    wait_for_port(port(&cluster, NEW_NODE, "object"));
}

/// Objects not on exactly their new primaries: missing or stale on a primary, or still
/// stored on a node that is not one.
fn misplaced_objects(
    cluster: &Cluster,
    ring: &Placement,
    expected: &[(String, String)],
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, want) in expected {
        let (part, primaries) = ring.primaries("AUTH_test", "grow", name);
        let path = format!("/AUTH_test/grow/{name}");
        for (port, device) in &primaries {
            let (status, tag) = ring.head(*port, device, part, &path);
            if status != 200 || tag.as_deref() != Some(want.as_str()) {
                out.push(format!(
                    "{name}: {status} {tag:?} on primary {port}/{device}"
                ));
            }
        }
        for node in 1..=NEW_NODE {
            let node_port = port(cluster, node, "object");
            if primaries.iter().any(|(p, _)| *p == node_port) {
                continue;
            }
            let (status, _) = ring.head(node_port, &format!("sdb{node}"), part, &path);
            if status != 404 {
                out.push(format!("{name}: {status} on non-primary node{node}"));
            }
        }
    }
    out
}
