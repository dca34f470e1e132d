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
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{header, http, CAIRN};

/// A `cairn aio` cluster set up by hand: init, edit, start.
struct PolicyCluster {
    dir: tempfile::TempDir,
    proxy_port: u16,
    port_base: u16,
    child: Option<Child>,
}

fn cairn(args: &[&str]) {
    let out = Command::new(CAIRN).args(args).output().expect("run cairn");
    assert!(
        out.status.success(),
        "cairn {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A proxy port and a storage port base whose ports are all free right now.
fn free_ports(nodes: u16) -> (u16, u16) {
    let seed = u64::from(std::process::id()) * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos()))
            .unwrap_or(0);
    for attempt in 0..200u64 {
        let base = 20_000 + ((seed + attempt * 613) % 3_000) as u16 * 10;
        let proxy = base + 5;
        let mut ports = vec![proxy];
        for n in 1..=nodes {
            for k in 0..3 {
                ports.push(base + 10 * n + k);
            }
        }
        if ports
            .iter()
            .all(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            return (proxy, base);
        }
    }
    panic!("no free ports found");
}

impl PolicyCluster {
    fn start() -> PolicyCluster {
        let dir = tempfile::Builder::new()
            .prefix("cairn-policies-")
            .tempdir()
            .expect("temp dir");
        let (proxy_port, port_base) = free_ports(4);
        let mut c = PolicyCluster {
            dir,
            proxy_port,
            port_base,
            child: None,
        };
        let data = c.data_dir();
        let data_s = data.to_str().expect("utf-8").to_string();
        let (pp, pb) = (proxy_port.to_string(), port_base.to_string());
        cairn(&[
            "aio",
            "init",
            "--dir",
            &data_s,
            "--proxy-port",
            &pp,
            "--port-base",
            &pb,
            "--nodes",
            "4",
        ]);
        let etc = data.join("etc");
        // The second policy, every primary required.
        append(
            &etc.join("cairn.toml"),
            "\n[[policy]]\nindex = 1\nname = \"silver\"\nwrite_quorum = \"all\"\n",
        );
        // Reads in ring order (deterministic for the read-repair check).
        append(
            &etc.join("proxy-server.toml"),
            "\n[proxy]\nsorting_method = \"affinity\"\n",
        );
        // Its ring: the same devices as object.ring, another seed.
        let builder = etc.join("rings").join("object-1.builder");
        let b = builder.to_str().expect("utf-8");
        cairn(&["ring", b, "create", "10", "3", "1"]);
        let mut add = vec!["ring".to_string(), b.to_string(), "add".to_string()];
        for n in 1..=4u16 {
            add.push(format!("r1z{n}-127.0.0.1:{}/sdb{n}", port_base + 10 * n));
            add.push("100".into());
        }
        let add: Vec<&str> = add.iter().map(String::as_str).collect();
        cairn(&add);
        cairn(&["ring", b, "rebalance", "--seed", "7"]);
        assert!(etc.join("rings").join("object-1.ring").exists());

        let log = std::fs::File::create(c.dir.path().join("aio.out")).expect("log file");
        let child = Command::new(CAIRN)
            .args([
                "aio",
                "--dir",
                &data_s,
                "--proxy-port",
                &pp,
                "--port-base",
                &pb,
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("start cairn aio");
        c.child = Some(child);
        c.wait_ready();
        c
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn proxy_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.proxy_port))
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(self.data_dir().join("log")) {
            for entry in entries.flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                all.push_str(&format!("--- {}\n", entry.path().display()));
                for line in tail.iter().rev() {
                    all.push_str(line);
                    all.push('\n');
                }
            }
        }
        all
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let out = std::fs::read_to_string(self.dir.path().join("aio.out")).unwrap_or_default();
            if out.contains("Cairn aio is ready") {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("cairn aio exited early ({status}):\n{out}\n{}", self.logs());
                }
            }
            assert!(
                Instant::now() < deadline,
                "cairn aio not ready in time:\n{out}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop_daemon(&self, name: &str) {
        let path = self.data_dir().join("run").join(format!("{name}.pid"));
        let pid: i32 = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse()
            .expect("pid");
        // SAFETY: signalling a process of this test's cluster.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        // SAFETY: signal 0 only checks that the process exists.
        while unsafe { libc::kill(pid, 0) } == 0 {
            assert!(Instant::now() < deadline, "{name} did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Partition, hash and primaries' node numbers of an object in a policy's ring.
    fn placement(&self, ring: &str, a: &str, c: &str, o: &str) -> (u32, String, Vec<u16>) {
        let etc = self.data_dir().join("etc");
        let config =
            cairn_common::config::ClusterConfig::load(&etc.join("cairn.toml")).expect("cairn.toml");
        let ring = cairn_ring::Ring::load(&config.ring_dir().join(ring)).expect("ring");
        let secret = config.hash_path_secret();
        let part = ring.get_part(&secret, a, Some(c), Some(o));
        let nodes = ring
            .get_part_nodes(part)
            .map(|n| (n.dev.port - self.port_base) / 10)
            .collect();
        (part, secret.hash_path(a, Some(c), Some(o)), nodes)
    }

    /// The hash directory of an object on node `n` under `objects_dir`.
    fn hash_dir(&self, n: u16, objects_dir: &str, part: u32, hash: &str) -> PathBuf {
        self.data_dir()
            .join(format!("node{n}"))
            .join("devices")
            .join(format!("sdb{n}"))
            .join(objects_dir)
            .join(part.to_string())
            .join(&hash[hash.len() - 3..])
            .join(hash)
    }
}

impl Drop for PolicyCluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn append(path: &Path, text: &str) {
    let mut old = std::fs::read_to_string(path).expect("read config");
    old.push_str(text);
    std::fs::write(path, old).expect("write config");
}

fn has_data(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".data"))
        })
        .unwrap_or(false)
}

struct Client {
    addr: std::net::SocketAddr,
    path: String,
    token: String,
}

type Answer = (u16, Vec<(String, String)>, Vec<u8>);

impl Client {
    fn login(c: &PolicyCluster) -> Client {
        let addr = c.proxy_addr();
        let (status, headers, _) = http(
            addr,
            "GET",
            "/auth/v1.0",
            &[("X-Auth-User", "test:tester"), ("X-Auth-Key", "testing")],
            b"",
        );
        assert_eq!(status, 200, "login");
        let url = header(&headers, "x-storage-url").expect("storage url");
        Client {
            addr,
            path: url[url.find("/v1/").expect("path")..].to_string(),
            token: header(&headers, "x-auth-token").expect("token").to_string(),
        }
    }

    fn req(&self, method: &str, suffix: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        let mut all = vec![("X-Auth-Token", self.token.as_str())];
        all.extend_from_slice(headers);
        http(
            self.addr,
            method,
            &format!("{}{suffix}", self.path),
            &all,
            body,
        )
    }
}

/// The first object name whose primaries in `ring` include node `n`.
fn name_on(c: &PolicyCluster, ring: &str, cont: &str, n: u16, prefix: &str) -> String {
    (0..1000)
        .map(|i| format!("{prefix}-{i}"))
        .find(|o| c.placement(ring, "AUTH_test", cont, o).2.contains(&n))
        .expect("an object placed on the node")
}

#[test]
fn silver_policy_placement_conflicts_quorum_and_read_repair() {
    let cluster = PolicyCluster::start();
    let client = Client::login(&cluster);

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
    let (part, hash, prim) = cluster.placement("object-1.ring", "AUTH_test", "sc", "obj");
    assert_eq!(prim.len(), 3);
    for n in 1..=4u16 {
        let silver = cluster.hash_dir(n, "objects-1", part, &hash);
        assert_eq!(
            has_data(&silver),
            prim.contains(&n),
            "node{n} {} (primaries {prim:?})",
            silver.display()
        );
        let (gpart, _, _) = cluster.placement("object.ring", "AUTH_test", "sc", "obj");
        assert!(!cluster.hash_dir(n, "objects", gpart, &hash).exists());
    }
    let (status, _, got) = client.req("GET", "/sc/obj", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(got, body);

    // Read repair: remove the object from its first primary; one GET (served by the
    // second) makes the proxy push it back, with no replicator involved.
    let first = cluster.hash_dir(prim[0], "objects-1", part, &hash);
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
            !cluster
                .placement("object-1.ring", "AUTH_test", "sc", o)
                .2
                .contains(&2)
        })
        .expect("an object away from node 2");
    let (status, _, _) = client.req("PUT", &format!("/sc/{up_name}"), &[], &body);
    assert_eq!(status, 201, "silver PUT with its primaries up");
}
