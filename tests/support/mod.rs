//! Test support: a real `cairn aio` cluster on loopback in a temp dir.
//!
//! Every cluster gets its own free ports and directory and is stopped (SIGTERM to the
//! supervisor, which stops its children) when the handle is dropped.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

/// A running `cairn aio`.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub proxy_port: u16,
    pub port_base: u16,
    pub nodes: u16,
    child: Option<Child>,
}

impl Cluster {
    /// Start a cluster of `nodes` nodes and wait until the proxy answers.
    pub fn start(nodes: u16) -> Cluster {
        Self::start_with(nodes, &[])
    }

    pub fn start_with(nodes: u16, extra: &[&str]) -> Cluster {
        let mut cluster = Self::new(nodes);
        cluster.spawn(extra);
        cluster
    }

    /// Like [`Cluster::start`], but `edit` may change the files of [`Cluster::etc`]
    /// (cluster file, proxy file, rings) between `cairn aio init` and the start.
    pub fn start_edited(nodes: u16, edit: impl FnOnce(&Cluster)) -> Cluster {
        let mut cluster = Self::new(nodes);
        cluster.init();
        edit(&cluster);
        cluster.spawn(&[]);
        cluster
    }

    /// A cluster with its directory and free ports, not yet initialised or started.
    fn new(nodes: u16) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("cairn-e2e-")
            .tempdir()
            .expect("temp dir");
        let (proxy_port, port_base) = free_ports(nodes);
        Cluster {
            dir,
            proxy_port,
            port_base,
            nodes,
            child: None,
        }
    }

    /// `cairn aio [sub…]` with this cluster's directory, ports and node count.
    fn aio(&self, sub: &[&str]) -> Command {
        let mut cmd = Command::new(CAIRN);
        cmd.arg("aio")
            .args(sub)
            .arg("--dir")
            .arg(self.data_dir())
            .arg("--proxy-port")
            .arg(self.proxy_port.to_string())
            .arg("--port-base")
            .arg(self.port_base.to_string())
            .arg("--nodes")
            .arg(self.nodes.to_string());
        cmd
    }

    /// `cairn aio init` with this cluster's shape (the start then reuses the directory).
    fn init(&self) {
        let out = self.aio(&["init"]).output().expect("run cairn aio init");
        assert!(
            out.status.success(),
            "cairn aio init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn spawn(&mut self, extra: &[&str]) {
        let log = std::fs::File::create(self.dir.path().join("aio.out")).expect("log file");
        let child = self
            .aio(&[])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("start cairn aio");
        self.child = Some(child);
        self.wait_ready();
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `DIR/etc`: the cluster file, the proxy file, the rings.
    pub fn etc(&self) -> PathBuf {
        self.data_dir().join("etc")
    }

    pub fn auth_url(&self) -> String {
        format!("http://127.0.0.1:{}/auth/v1.0", self.proxy_port)
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.proxy_port))
    }

    /// Wait (bounded) until the supervisor printed its banner.
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

    /// Every child's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(self.data_dir().join("log")) {
            for entry in entries.flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                all.push_str(&format!("--- {}\n", entry.path().display()));
                for line in tail.iter().rev() {
                    all.push_str(line);
                    all.push('\n');
                }
            }
        }
        all
    }

    /// Stop the supervisor (and with it every child), waiting for it to exit.
    pub fn stop(&mut self) {
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

    /// Run the `swift` CLI (python-swiftclient) against the cluster as test:tester.
    pub fn swift(&self, args: &[&str]) -> Output {
        self.swift_in(args, self.dir.path())
    }

    pub fn swift_in(&self, args: &[&str], cwd: &Path) -> Output {
        let out = Command::new("swift")
            .args(["-A", &self.auth_url(), "-U", "test:tester", "-K", "testing"])
            .args(args)
            .current_dir(cwd)
            .output();
        match out {
            Ok(out) => out,
            Err(e) => panic!("cannot run `swift` ({e}): install python-swiftclient (see .ci/run)"),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A proxy port and a storage port base whose ports are all free right now.
fn free_ports(nodes: u16) -> (u16, u16) {
    let seed = std::process::id() as u64 * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
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
            .all(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            return (proxy, base);
        }
    }
    panic!("no free ports found");
}

/// A tiny HTTP/1.1 client for raw requests (one request per connection).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("write");
    stream.write_all(body).expect("write body");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

/// An authenticated client of the cluster's proxy (raw HTTP, one connection a request).
pub struct Client {
    pub addr: SocketAddr,
    /// `/v1/AUTH_test`
    pub account_path: String,
    pub token: String,
}

impl Client {
    /// TempAuth v1 login.
    pub fn login(cluster: &Cluster, user: &str, key: &str) -> Client {
        let addr = cluster.proxy_addr();
        let (status, headers, _) = http(
            addr,
            "GET",
            "/auth/v1.0",
            &[("X-Auth-User", user), ("X-Auth-Key", key)],
            b"",
        );
        assert_eq!(status, 200, "login as {user}");
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {name} in auth response"))
        };
        let url = get("x-storage-url");
        let account_path = url[url.find("/v1/").expect("storage url path")..].to_string();
        Client {
            addr,
            account_path,
            token: get("x-auth-token"),
        }
    }

    /// A request to `account_path + suffix` (suffix starts with `/` or is empty).
    pub fn req(
        &self,
        method: &str,
        suffix: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut all = vec![("X-Auth-Token", self.token.as_str())];
        all.extend_from_slice(headers);
        http(
            self.addr,
            method,
            &format!("{}{}", self.account_path, suffix),
            &all,
            body,
        )
    }
}

/// Assert that a client command (`swift`, `rclone`, `curl`) succeeded, with its output
/// and the cluster's logs on failure; its stdout.
pub fn ok(out: &Output, what: &str, cluster: &Cluster) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    stdout
}

/// Change a TOML file through its parsed form, so that a test setting a key of a table
/// `cairn aio init` already wrote replaces it instead of adding a second table.
pub fn edit_toml(path: &Path, edit: impl FnOnce(&mut toml::Table)) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut table: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    edit(&mut table);
    let text = toml::to_string(&table).expect("serialise toml");
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// `table[name]`, created empty if missing (a `[name]` table of a TOML file).
pub fn toml_table<'a>(table: &'a mut toml::Table, name: &str) -> &'a mut toml::Table {
    let entry = table
        .entry(name.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match entry {
        toml::Value::Table(t) => t,
        other => panic!("{name} is not a table: {other}"),
    }
}

/// The value of a response header (names are lower-cased by [`http`]).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A process started by a test (a restarted server), killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Cluster {
    /// The pid aio recorded for one of its children (`object-server-node2`).
    pub fn pid_of(&self, name: &str) -> i32 {
        let path = self.data_dir().join("run").join(format!("{name}.pid"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.trim().parse().expect("pid")
    }

    /// Stop one daemon of the cluster (SIGTERM, wait until it is gone).
    pub fn stop_daemon(&self, name: &str) {
        let pid = self.pid_of(name);
        // SAFETY: signalling a process of this test's cluster.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        // SAFETY: signal 0 only checks that the process exists.
        while unsafe { libc::kill(pid, 0) } == 0 {
            assert!(Instant::now() < deadline, "{name} did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The role file of a node's server (`object`, `container`, `account`).
    pub fn server_config(&self, node: u16, role: &str) -> PathBuf {
        self.data_dir()
            .join("etc")
            .join(format!("node{node}"))
            .join(format!("{role}-server.toml"))
    }

    /// Start `cairn <subcommand> --config <node's role file>` and wait for its port.
    pub fn start_server(&self, node: u16, role: &str, port: u16) -> Proc {
        let log = std::fs::File::create(
            self.dir
                .path()
                .join(format!("{role}-node{node}-restarted.log")),
        )
        .expect("log");
        let child = Command::new(CAIRN)
            .arg(format!("{role}-server"))
            .arg("--config")
            .arg(self.server_config(node, role))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start server");
        let proc = Proc(child);
        wait_for_port(port);
        proc
    }

    /// Run a daemon once for a node (`object-replicator`, …) and check it succeeded.
    pub fn run_once(&self, node: u16, daemon: &str) {
        let role = daemon.split('-').next().expect("role");
        let out = Command::new(CAIRN)
            .arg(daemon)
            .arg("--config")
            .arg(self.server_config(node, role))
            .arg("--once")
            .output()
            .expect("run daemon");
        assert!(
            out.status.success(),
            "{daemon} node{node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn object_port(&self, node: u16) -> u16 {
        self.port_base + 10 * node
    }
}

/// Wait (bounded) until something listens on 127.0.0.1:port.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where the ring puts an object: its partition and primaries' (port, device).
pub struct Placement {
    pub ring: cairn_ring::Ring,
    pub secret: cairn_ring::HashPathSecret,
}

impl Placement {
    pub fn load(cluster: &Cluster, ring: &str) -> Placement {
        let etc = cluster.data_dir().join("etc");
        let config =
            cairn_common::config::ClusterConfig::load(&etc.join("cairn.toml")).expect("cairn.toml");
        let ring = cairn_ring::Ring::load(&config.ring_dir().join(ring)).expect("ring");
        Placement {
            ring,
            secret: config.hash_path_secret(),
        }
    }

    /// (partition, [(port, device)] of the primaries).
    pub fn primaries(
        &self,
        account: &str,
        container: &str,
        object: &str,
    ) -> (u32, Vec<(u16, String)>) {
        let part = self
            .ring
            .get_part(&self.secret, account, Some(container), Some(object));
        let nodes = self
            .ring
            .get_part_nodes(part)
            .map(|n| (n.dev.port, n.dev.device.clone()))
            .collect();
        (part, nodes)
    }

    /// Backend HEAD of an object on one node: (status, etag).
    pub fn head(&self, port: u16, device: &str, part: u32, path: &str) -> (u16, Option<String>) {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let (status, headers, _) = http(addr, "HEAD", &format!("/{device}/{part}{path}"), &[], b"");
        (status, header(&headers, "etag").map(str::to_string))
    }
}
