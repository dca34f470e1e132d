//! In-process tests of proxy logic against tiny fake storage nodes (one fake serves the
//! account, container and object roles): token exchange, autocreate, streaming PUT
//! with `100-continue`, handoffs, quorum failures, reads with failover, edge filtering.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use md5::{Digest, Md5};

use cairn_common::config::ClusterConfig;
use cairn_common::http::{
    channel, empty, full, handler_fn, parse_backend_path, spawn_server, text, BackendClient,
    BackendResponse, Body, RequestBody, ServeOptions, ServerHandle, Timeouts,
};
use cairn_ring::{Device, Ring, RingData};

use crate::{Proxy, ProxyConfig, ProxyServer, RingSource, Rings};

mod slo;
mod temp_urls;

const NORMAL: u8 = 0;
const FULL: u8 = 1; // 507
const BROKEN: u8 = 2; // 503
const TRUNCATE: u8 = 3; // object GETs without Range break after half the body
const DROP: u8 = 4; // object PUTs fail after the first chunk of the body
const SLOW: u8 = 5; // every request waits 3 s before it is looked at

#[derive(Default)]
struct FakeNode {
    data: Mutex<HashMap<String, (HeaderMap, Bytes)>>,
    mode: AtomicU8,
    log: Mutex<Vec<(Method, String, HeaderMap)>>,
}

impl FakeNode {
    fn has(&self, key: &str) -> bool {
        self.data.lock().unwrap().contains_key(key)
    }
    fn requests(&self, method: &str, key: &str) -> Vec<HeaderMap> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, k, _)| m == method && k == key)
            .map(|(_, _, h)| h.clone())
            .collect()
    }
}

fn status(s: u16) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::from_u16(s).unwrap();
    r
}

async fn fake(node: Arc<FakeNode>, req: Request<RequestBody>) -> Response<Body> {
    if node.mode.load(Ordering::SeqCst) == SLOW {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    }
    match node.mode.load(Ordering::SeqCst) {
        FULL => return text(StatusCode::INSUFFICIENT_STORAGE, "full"),
        BROKEN => return text(StatusCode::SERVICE_UNAVAILABLE, "broken"),
        _ => {}
    }
    let Ok(bp) = parse_backend_path(req.uri().path(), 3, 5) else {
        return status(400);
    };
    let key = match (&bp.container, &bp.object) {
        (Some(c), Some(o)) => format!("{}/{c}/{o}", bp.account),
        (Some(c), None) => format!("{}/{c}", bp.account),
        _ => bp.account.clone(),
    };
    let method = req.method().clone();
    node.log
        .lock()
        .unwrap()
        .push((method.clone(), key.clone(), req.headers().clone()));
    let is_object = bp.object.is_some();
    let existing = node.data.lock().unwrap().get(&key).cloned();
    match method.as_str() {
        "PUT" if is_object && node.mode.load(Ordering::SeqCst) == DROP => {
            use http_body_util::BodyExt;
            let mut body = req.into_body();
            let _ = body.frame().await;
            text(StatusCode::SERVICE_UNAVAILABLE, "dropped")
        }
        "PUT" => {
            let headers = req.headers().clone();
            let body = match req.into_body().collect_limited(1 << 20).await {
                Ok(b) => b,
                Err(_) => return status(499),
            };
            let etag = hex::encode(Md5::digest(&body));
            node.data.lock().unwrap().insert(key, (headers, body));
            let mut r = status(if existing.is_some() && !is_object {
                202
            } else {
                201
            });
            if is_object {
                r.headers_mut().insert("etag", etag.parse().unwrap());
            }
            r
        }
        "GET" | "HEAD" => match existing {
            None => status(404),
            Some((h, body)) => {
                let range = req
                    .headers()
                    .get("range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes="))
                    .and_then(|v| v.split_once('-'))
                    .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
                let ranged = range.filter(|_| is_object && method == Method::GET);
                let mut r = if let Some((a, b)) = ranged {
                    if a >= body.len() {
                        return status(416);
                    }
                    let b = b.min(body.len() - 1);
                    if let Some(m) = req.headers().get("if-match") {
                        if m.as_bytes() != hex::encode(Md5::digest(&body)).as_bytes() {
                            return status(412);
                        }
                    }
                    let mut r = Response::new(full(body.slice(a..=b)));
                    *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                    r.headers_mut().insert(
                        "content-range",
                        format!("bytes {a}-{b}/{}", body.len()).parse().unwrap(),
                    );
                    r.headers_mut()
                        .insert("etag", hex::encode(Md5::digest(&body)).parse().unwrap());
                    r
                } else if is_object {
                    let truncate = node.mode.load(Ordering::SeqCst) == TRUNCATE;
                    let mut r = Response::new(if method == Method::GET && truncate {
                        let half = body.slice(..body.len() / 2);
                        let (tx, b) = channel(2);
                        tokio::spawn(async move {
                            tx.send(half).await.ok();
                            tx.abort(std::io::Error::other("disk died")).await;
                        });
                        b
                    } else if method == Method::GET {
                        full(body.clone())
                    } else {
                        empty()
                    });
                    r.headers_mut()
                        .insert("content-length", HeaderValue::from(body.len()));
                    r.headers_mut()
                        .insert("etag", hex::encode(Md5::digest(&body)).parse().unwrap());
                    r
                } else if method == Method::GET && bp.object.is_none() && bp.container.is_some() {
                    let q = req.uri().query();
                    let prefix = crate::server::query_param(q, "prefix").unwrap_or_default();
                    let marker = crate::server::query_param(q, "marker").unwrap_or_default();
                    let base = format!("{key}/");
                    let data = node.data.lock().unwrap();
                    let mut rows: Vec<serde_json::Value> = data
                        .iter()
                        .filter_map(|(k, (_, b))| {
                            let name = k.strip_prefix(&base)?;
                            (name.starts_with(&prefix) && name > marker.as_str()).then(|| {
                                serde_json::json!({"name": name, "bytes": b.len(),
                                    "hash": hex::encode(Md5::digest(b))})
                            })
                        })
                        .collect();
                    rows.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
                    let mut r = Response::new(full(serde_json::Value::Array(rows).to_string()));
                    *r.status_mut() = StatusCode::OK;
                    r
                } else {
                    status(204)
                };
                for (k, v) in &h {
                    let n = k.as_str();
                    if n == "content-type"
                        || n.starts_with("x-object-meta-")
                        || n.starts_with("x-object-sysmeta-")
                        || n == "x-timestamp"
                        || n == "x-static-large-object"
                        || n == "x-object-manifest"
                        || n.starts_with("x-container-")
                        || n.starts_with("x-account-")
                    {
                        r.headers_mut().insert(k.clone(), v.clone());
                    }
                }
                r.headers_mut().insert(
                    "x-backend-storage-policy-index",
                    HeaderValue::from_static("0"),
                );
                r.headers_mut()
                    .insert("x-backend-timestamp", HeaderValue::from_static("1"));
                r
            }
        },
        "POST" if !is_object && existing.is_some() => {
            let mut data = node.data.lock().unwrap();
            if let Some((h, _)) = data.get_mut(&key) {
                for (k, v) in req.headers() {
                    if k.as_str().starts_with("x-account-")
                        || k.as_str().starts_with("x-container-")
                    {
                        h.insert(k.clone(), v.clone());
                    }
                }
            }
            status(204)
        }
        "POST" => status(if existing.is_some() {
            if is_object {
                202
            } else {
                204
            }
        } else {
            404
        }),
        "DELETE" => {
            if node.data.lock().unwrap().remove(&key).is_some() {
                status(204)
            } else {
                status(404)
            }
        }
        _ => status(405),
    }
}

struct Cluster {
    nodes: Vec<Arc<FakeNode>>,
    _servers: Vec<ServerHandle>,
    fake_ring: Arc<Ring>,
    proxy: ServerHandle,
    client: BackendClient,
}

fn proxy_server_with(rings: Rings, extra_proxy: &str) -> ProxyServer {
    // The fakes do not replicate (each container fake lists only the updates it got):
    // reads go in ring order unless a test asks otherwise.
    let sorting = if extra_proxy.contains("sorting_method") {
        ""
    } else {
        "sorting_method = \"affinity\"\n"
    };
    let cfg = ProxyConfig::parse(
        &format!("[proxy]\nrecheck_existence = 0\npost_quorum_timeout = 0.2\n{sorting}{extra_proxy}\
         [tempauth]\ntoken_secret = \"test-secret\"\n\
         [[tempauth.user]]\naccount = \"test\"\nuser = \"tester\"\nkey = \"testing\"\ngroups = [\".admin\"]\n\
         [[tempauth.user]]\naccount = \"test\"\nuser = \"tester2\"\nkey = \"testing2\"\n\
         [[tempauth.user]]\naccount = \"admin\"\nuser = \"admin\"\nkey = \"admin\"\ngroups = [\".reseller_admin\"]\n"),
        "proxy-server.toml",
        Path::new("/"),
    )
    .unwrap();
    let cluster = ClusterConfig::parse(
        "[cluster]\nhash_path_suffix = \"s\"\n",
        "cairn.toml",
        "/".into(),
    )
    .unwrap();
    ProxyServer::new(Proxy::new(cfg, cluster, rings).unwrap())
}

impl Cluster {
    fn proxy_rings_source(&self) -> Arc<Ring> {
        self.fake_ring.clone()
    }

    /// 4 fake nodes; a 3-replica ring with 4 partitions (each name has 3 primaries and
    /// one handoff; every device holds a partition other than 0, so that Swift's
    /// handoff scan finds it on this toy ring).
    async fn start() -> Cluster {
        Cluster::start_with("").await
    }

    /// [`Cluster::start`] with extra `[proxy]` settings.
    async fn start_with(extra_proxy: &str) -> Cluster {
        let mut nodes = Vec::new();
        let mut servers = Vec::new();
        let mut devs = Vec::new();
        for i in 0..4u32 {
            let node = Arc::new(FakeNode::default());
            let n = node.clone();
            let h = handler_fn(move |req| fake(n.clone(), req));
            let srv = spawn_server(
                "127.0.0.1:0".parse().unwrap(),
                Arc::new(h),
                ServeOptions::new("fake"),
            )
            .await
            .unwrap();
            let addr = srv.addr();
            devs.push(Some(Device {
                id: i,
                region: 1,
                zone: i,
                ip: addr.ip().to_string(),
                port: addr.port(),
                replication_ip: addr.ip().to_string(),
                replication_port: addr.port(),
                device: format!("sd{i}"),
                weight: 1.0,
                meta: String::new(),
            }));
            nodes.push(node);
            servers.push(srv);
        }
        let ring = Arc::new(
            Ring::from_data(RingData {
                part_power: 2,
                replica2part2dev: vec![vec![0, 1, 2, 3], vec![1, 2, 3, 0], vec![2, 3, 0, 1]],
                devs,
                version: 1,
            })
            .unwrap(),
        );
        let rings = Rings {
            account: RingSource::Fixed(ring.clone()),
            container: RingSource::Fixed(ring.clone()),
            objects: [(0, RingSource::Fixed(ring.clone()))].into_iter().collect(),
        };
        let proxy = spawn_server(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(proxy_server_with(rings, extra_proxy)),
            ServeOptions::new("proxy"),
        )
        .await
        .unwrap();
        Cluster {
            nodes,
            _servers: servers,
            fake_ring: ring,
            proxy,
            client: BackendClient::new(Timeouts::default()),
        }
    }

    /// Like [`Cluster::start`], but the object ring points at 4 real object servers
    /// and, with `real_containers`, the container ring at 4 real container servers
    /// (the fakes still serve accounts and receive the remaining updates).
    async fn start_with_real_objects(real_containers: bool) -> (Cluster, Vec<tempfile::TempDir>) {
        Cluster::start_with_real_objects_and(real_containers, "").await
    }

    /// [`Cluster::start_with_real_objects`] with `extra_proxy` config (as
    /// [`proxy_server_with`] takes it).
    async fn start_with_real_objects_and(
        real_containers: bool,
        extra_proxy: &str,
    ) -> (Cluster, Vec<tempfile::TempDir>) {
        let mut c = Cluster::start().await;
        let mut dirs = Vec::new();
        let mut devs = Vec::new();
        let mut cdevs = Vec::new();
        for i in 0..4u32 {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join(format!("sd{i}"))).unwrap();
            let csrv = spawn_server(
                "127.0.0.1:0".parse().unwrap(),
                Arc::new(cairn_container::server::ContainerServer::new(
                    cairn_container::server::ContainerServerSettings::new(dir.path()),
                    cairn_common::HashPathSecret::new("", "s"),
                )),
                ServeOptions::new("container-server"),
            )
            .await
            .unwrap();
            let caddr = csrv.addr();
            cdevs.push(Some(Device {
                id: i,
                region: 1,
                zone: i,
                ip: caddr.ip().to_string(),
                port: caddr.port(),
                replication_ip: caddr.ip().to_string(),
                replication_port: caddr.port(),
                device: format!("sd{i}"),
                weight: 1.0,
                meta: String::new(),
            }));
            c._servers.push(csrv);
            let settings = cairn_object::server::ObjectServerSettings {
                disk: cairn_object::DiskConfig {
                    devices: dir.path().to_path_buf(),
                    mount_check: false,
                    fallocate_reserve: cairn_common::fs::FallocateReserve::NONE,
                    ..Default::default()
                },
                ..Default::default()
            };
            let server = cairn_object::server::ObjectServer::new(
                settings,
                cairn_common::HashPathSecret::new("", "s"),
            );
            let srv = spawn_server(
                "127.0.0.1:0".parse().unwrap(),
                Arc::new(server),
                ServeOptions::new("object-server"),
            )
            .await
            .unwrap();
            let addr = srv.addr();
            devs.push(Some(Device {
                id: i,
                region: 1,
                zone: i,
                ip: addr.ip().to_string(),
                port: addr.port(),
                replication_ip: addr.ip().to_string(),
                replication_port: addr.port(),
                device: format!("sd{i}"),
                weight: 1.0,
                meta: String::new(),
            }));
            c._servers.push(srv);
            dirs.push(dir);
        }
        let object_ring = Arc::new(
            Ring::from_data(RingData {
                part_power: 2,
                replica2part2dev: vec![vec![0, 1, 2, 3], vec![1, 2, 3, 0], vec![2, 3, 0, 1]],
                devs,
                version: 1,
            })
            .unwrap(),
        );
        let container_ring = if real_containers {
            Arc::new(
                Ring::from_data(RingData {
                    part_power: 2,
                    replica2part2dev: vec![vec![0, 1, 2, 3], vec![1, 2, 3, 0], vec![2, 3, 0, 1]],
                    devs: cdevs,
                    version: 1,
                })
                .unwrap(),
            )
        } else {
            c.proxy_rings_source()
        };
        // Rebuild the proxy with the new rings.
        let old = c.proxy_rings_source();
        let rings = Rings {
            account: RingSource::Fixed(old),
            container: RingSource::Fixed(container_ring),
            objects: [(0, RingSource::Fixed(object_ring))].into_iter().collect(),
        };
        c.proxy = spawn_server(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(proxy_server_with(rings, extra_proxy)),
            ServeOptions::new("proxy"),
        )
        .await
        .unwrap();
        (c, dirs)
    }

    fn addr(&self) -> SocketAddr {
        self.proxy.addr()
    }

    async fn req(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> BackendResponse {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::try_from(*k).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        self.client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                &self.addr().to_string(),
                path,
                h,
                body,
            )
            .await
            .unwrap()
    }

    async fn token(&self, user: &str, key: &str) -> String {
        let r = self
            .req(
                "GET",
                "/auth/v1.0",
                &[("x-auth-user", user), ("x-auth-key", key)],
                empty(),
            )
            .await;
        assert_eq!(r.status, 200);
        let url = r.header("x-storage-url").unwrap();
        assert_eq!(url, format!("http://{}/v1/AUTH_test", self.addr()));
        r.header("x-auth-token").unwrap().to_string()
    }

    fn holders(&self, key: &str) -> usize {
        self.nodes.iter().filter(|n| n.has(key)).count()
    }
}

fn assert_edge(r: &BackendResponse) {
    assert!(r.headers.contains_key("x-trans-id"));
    assert_eq!(
        r.headers.get("x-trans-id"),
        r.headers.get("x-openstack-request-id")
    );
    assert!(r.headers.contains_key("date"));
    for k in r.headers.keys() {
        assert!(!k.as_str().starts_with("x-backend-"), "{k} leaked");
    }
}

#[tokio::test]
async fn end_to_end_with_fake_nodes() {
    let c = Cluster::start().await;
    let tok = c.token("test:tester", "testing").await;
    let auth = [("x-auth-token", tok.as_str())];
    let tok2 = c.token("test:tester2", "testing2").await;

    // Bad credentials and missing/invalid tokens.
    let r = c
        .req(
            "GET",
            "/auth/v1.0",
            &[("x-auth-user", "test:tester"), ("x-auth-key", "x")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Swift realm=\"test\""));
    let r = c.req("HEAD", "/v1/AUTH_test", &[], empty()).await;
    assert_eq!(r.status, 401);
    let r = c
        .req(
            "HEAD",
            "/v1/AUTH_test",
            &[("x-auth-token", "AUTH_tkbogus")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 401);

    // A missing account looks empty (autocreate).
    let r = c.req("HEAD", "/v1/AUTH_test", &auth, empty()).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("x-account-container-count"), Some("0"));
    assert_edge(&r);

    // Container PUT creates the account first.
    let r = c.req("PUT", "/v1/AUTH_test/c", &auth, empty()).await;
    assert_eq!(r.status, 201);
    assert_eq!(c.holders("AUTH_test"), 3);
    assert_eq!(c.holders("AUTH_test/c"), 3);
    // Every account primary is named in exactly one container request.
    let mut account_hosts = 0;
    for n in &c.nodes {
        for h in n.requests("PUT", "AUTH_test/c") {
            assert!(h.contains_key("x-timestamp"));
            if let Some(v) = h.get("x-account-host") {
                account_hosts += v.to_str().unwrap().split(',').count();
            }
        }
    }
    assert_eq!(account_hosts, 3);

    // Object PUT (Content-Length) with a client X-Timestamp that must be ignored.
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/hello.txt",
            &[
                auth[0],
                ("x-timestamp", "0000000001.00000"),
                ("x-object-meta-color", "blue"),
                ("x-backend-storage-policy-index", "7"),
            ],
            full("hello world"),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.headers);
    assert_eq!(r.header("etag"), Some("5eb63bbbe01eeed093cb22bb8f5acdc3"));
    assert!(r.header("last-modified").is_some());
    assert_edge(&r);
    assert_eq!(c.holders("AUTH_test/c/hello.txt"), 3);
    let mut container_targets = 0;
    for n in &c.nodes {
        for h in n.requests("PUT", "AUTH_test/c/hello.txt") {
            assert_ne!(h["x-timestamp"], "0000000001.00000");
            assert_eq!(h["x-backend-storage-policy-index"], "0");
            assert_eq!(h["content-type"], "text/plain");
            // A small body with a known length is sent whole, without 100-continue.
            assert!(!h.contains_key("expect"));
            if let Some(v) = h.get("x-container-host") {
                container_targets += v.to_str().unwrap().split(',').count();
                assert!(h.contains_key("x-container-partition"));
                assert!(h.contains_key("x-container-device"));
            }
        }
    }
    assert_eq!(container_targets, 3);

    // GET and HEAD.
    let r = c
        .req("GET", "/v1/AUTH_test/c/hello.txt", &auth, empty())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-object-meta-color"), Some("blue"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_edge(&r);
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"hello world");

    let r = c
        .req("HEAD", "/v1/AUTH_test/c/hello.txt", &auth, empty())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("11"));
    let r = c.req("HEAD", "/v1/AUTH_test/c", &auth, empty()).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("x-storage-policy"), Some("Policy-0"));

    // X-Delete-After becomes X-Delete-At with expirer-queue targets.
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/expiring",
            &[auth[0], ("x-delete-after", "100")],
            full("x"),
        )
        .await;
    assert_eq!(r.status, 201);
    let mut queue_targets = 0;
    for n in &c.nodes {
        for h in n.requests("PUT", "AUTH_test/c/expiring") {
            let at: u64 = h["x-delete-at"].to_str().unwrap().parse().unwrap();
            assert!(at > crate::auth::now_secs() + 90);
            assert!(!h.contains_key("x-delete-after"));
            if let Some(v) = h.get("x-delete-at-host") {
                queue_targets += v.to_str().unwrap().split(',').count();
                assert!(h.contains_key("x-delete-at-container"));
            }
        }
    }
    assert_eq!(queue_targets, 3);
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/expired",
            &[auth[0], ("x-delete-at", "1")],
            full("x"),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"X-Delete-At in past");

    // Anonymous reads are refused without an ACL; another user of the account too.
    let r = c
        .req("GET", "/v1/AUTH_test/c/hello.txt", &[], empty())
        .await;
    assert_eq!(r.status, 401);
    let r = c
        .req(
            "GET",
            "/v1/AUTH_test/c/hello.txt",
            &[("x-auth-token", &tok2)],
            empty(),
        )
        .await;
    assert_eq!(r.status, 403);

    // An account ACL grants tester2 read access; the owner sees it, tester2 does not.
    let r = c
        .req(
            "POST",
            "/v1/AUTH_test",
            &[
                auth[0],
                (
                    "x-account-access-control",
                    "{\"read-only\":[\"test:tester2\"]}",
                ),
            ],
            empty(),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = c
        .req(
            "GET",
            "/v1/AUTH_test/c/hello.txt",
            &[("x-auth-token", &tok2)],
            empty(),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/x",
            &[("x-auth-token", &tok2)],
            full("x"),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = c.req("HEAD", "/v1/AUTH_test", &auth, empty()).await;
    assert_eq!(
        r.header("x-account-access-control"),
        Some("{\"read-only\":[\"test:tester2\"]}")
    );
    let r = c
        .req("HEAD", "/v1/AUTH_test", &[("x-auth-token", &tok2)], empty())
        .await;
    assert_eq!(r.status, 204);
    assert!(r.header("x-account-access-control").is_none());
    let r = c
        .req(
            "POST",
            "/v1/AUTH_test",
            &[auth[0], ("x-account-access-control", "{\"bogus\":[]}")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .req(
            "POST",
            "/v1/AUTH_test",
            &[auth[0], ("x-account-access-control", "{}")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 204);

    // Account quotas: only a reseller admin sets them.
    let r = c
        .req(
            "POST",
            "/v1/AUTH_test",
            &[auth[0], ("x-account-meta-quota-bytes", "5")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 403);
    let admin = c
        .req(
            "GET",
            "/auth/v1.0",
            &[("x-auth-user", "admin:admin"), ("x-auth-key", "admin")],
            empty(),
        )
        .await;
    let admin_tok = admin.header("x-auth-token").unwrap().to_string();
    let r = c
        .req(
            "POST",
            "/v1/AUTH_test",
            &[
                ("x-auth-token", &admin_tok),
                ("x-account-meta-quota-bytes", "5"),
            ],
            empty(),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = c
        .req("PUT", "/v1/AUTH_test/c/q", &auth, full("too large"))
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"Upload exceeds quota.");
    let r = c.req("PUT", "/v1/AUTH_test/c/q", &auth, full("ok")).await;
    assert_eq!(r.status, 201);
    let r = c
        .req(
            "POST",
            "/v1/AUTH_test",
            &[
                ("x-auth-token", &admin_tok),
                ("x-account-meta-quota-bytes", ""),
            ],
            empty(),
        )
        .await;
    assert_eq!(r.status, 204);

    // Chunked upload.
    let (tx, body) = channel(2);
    tokio::spawn(async move {
        for part in ["chunk-1;", "chunk-2;", "chunk-3"] {
            tx.send(Bytes::from_static(part.as_bytes())).await.unwrap();
        }
    });
    let r = c.req("PUT", "/v1/AUTH_test/c/chunked", &auth, body).await;
    assert_eq!(r.status, 201);
    let r = c
        .req("GET", "/v1/AUTH_test/c/chunked", &auth, empty())
        .await;
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"chunk-1;chunk-2;chunk-3");

    // 411 without a length; 404 for a missing container; 400 bad If-None-Match.
    let (_tx, body) = channel(1);
    drop(_tx);
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/nope/o",
            &[auth[0], ("content-length", "1")],
            full("x"),
        )
        .await;
    assert_eq!(r.status, 404);
    drop(body);

    // One primary full (507): the handoff takes its place.
    let primaries: Vec<usize> = (0..4)
        .filter(|i| c.nodes[*i].has("AUTH_test/c/hello.txt"))
        .collect();
    let handoff = (0..4).find(|i| !primaries.contains(i)).unwrap();
    c.nodes[primaries[0]].mode.store(FULL, Ordering::SeqCst);
    let r = c
        .req("PUT", "/v1/AUTH_test/c/hello.txt", &auth, full("v2"))
        .await;
    assert_eq!(r.status, 201);
    assert!(c.nodes[handoff].has("AUTH_test/c/hello.txt"));
    // Reads fail over too.
    let r = c
        .req("GET", "/v1/AUTH_test/c/hello.txt", &auth, empty())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"v2");

    // A read that breaks mid-stream resumes from another node.
    for n in &c.nodes {
        n.mode.store(TRUNCATE, Ordering::SeqCst);
    }
    let big = "0123456789".repeat(1000);
    let r = c
        .req("PUT", "/v1/AUTH_test/c/big", &auth, full(big.clone()))
        .await;
    assert_eq!(r.status, 201);
    let r = c.req("GET", "/v1/AUTH_test/c/big", &auth, empty()).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.bytes(1 << 20).await.unwrap()[..], big.as_bytes());
    for n in &c.nodes {
        n.mode.store(NORMAL, Ordering::SeqCst);
    }
    c.nodes[primaries[0]].mode.store(FULL, Ordering::SeqCst);

    // A node failing in the middle of the upload: the others still make a quorum.
    for n in &c.nodes {
        n.mode.store(NORMAL, Ordering::SeqCst);
    }
    c.nodes[primaries[1]].mode.store(DROP, Ordering::SeqCst);
    let (tx, body) = channel(1);
    tokio::spawn(async move {
        for _ in 0..50 {
            tx.send(Bytes::from(vec![b'x'; 16 << 10])).await.unwrap();
        }
    });
    let r = c.req("PUT", "/v1/AUTH_test/c/dropped", &auth, body).await;
    assert_eq!(r.status, 201);
    assert_eq!(c.holders("AUTH_test/c/dropped"), 2);
    // Two nodes failing mid-upload: 503, and nobody stored a partial object.
    c.nodes[primaries[2]].mode.store(DROP, Ordering::SeqCst);
    let (tx, body) = channel(1);
    tokio::spawn(async move {
        for _ in 0..50 {
            if tx.send(Bytes::from(vec![b'y'; 16 << 10])).await.is_err() {
                break;
            }
        }
    });
    let r = c.req("PUT", "/v1/AUTH_test/c/dropped2", &auth, body).await;
    assert_eq!(r.status, 503);
    assert_eq!(c.holders("AUTH_test/c/dropped2"), 0);
    for n in &c.nodes {
        n.mode.store(NORMAL, Ordering::SeqCst);
    }
    c.nodes[primaries[0]].mode.store(FULL, Ordering::SeqCst);

    // Two primaries and the handoff down: no quorum → 503.
    c.nodes[primaries[1]].mode.store(BROKEN, Ordering::SeqCst);
    c.nodes[handoff].mode.store(BROKEN, Ordering::SeqCst);
    let r = c
        .req("PUT", "/v1/AUTH_test/c/hello.txt", &auth, full("v3"))
        .await;
    assert_eq!(r.status, 503);
    for i in 0..4 {
        c.nodes[i].mode.store(NORMAL, Ordering::SeqCst);
    }

    // POST, DELETE, then 404.
    let r = c
        .req(
            "POST",
            "/v1/AUTH_test/c/hello.txt",
            &[auth[0], ("x-object-meta-a", "b")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 202);
    let r = c
        .req("DELETE", "/v1/AUTH_test/c/chunked", &auth, empty())
        .await;
    assert_eq!(r.status, 204);
    let r = c
        .req("GET", "/v1/AUTH_test/c/chunked", &auth, empty())
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));

    // Server-side copy.
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/copy",
            &[
                auth[0],
                ("x-copy-from", "/c/hello.txt"),
                ("content-length", "0"),
            ],
            empty(),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.headers);
    assert_eq!(r.header("x-copied-from"), Some("c/hello.txt"));
    let r = c.req("GET", "/v1/AUTH_test/c/copy", &auth, empty()).await;
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"v2");

    // COPY with a Destination.
    let r = c
        .req(
            "COPY",
            "/v1/AUTH_test/c/hello.txt",
            &[auth[0], ("destination", "/c/copy2")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(c.holders("AUTH_test/c/copy2"), 3);

    // A public container: anonymous object reads, listings only with .rlistings.
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/pub",
            &[auth[0], ("x-container-read", ".r:*")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 201);
    for n in &c.nodes {
        for h in n.requests("PUT", "AUTH_test/pub") {
            assert_eq!(h["x-container-read"], ".r:*");
        }
    }
    let r = c
        .req("PUT", "/v1/AUTH_test/pub/o", &auth, full("public"))
        .await;
    assert_eq!(r.status, 201);
    let r = c.req("GET", "/v1/AUTH_test/pub/o", &[], empty()).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"public");
    let r = c.req("GET", "/v1/AUTH_test/pub", &[], empty()).await;
    assert_eq!(r.status, 401);
    let r = c.req("PUT", "/v1/AUTH_test/pub/o", &[], full("x")).await;
    assert_eq!(r.status, 401);
    // The owner sees the ACL, others (via ACL) do not.
    let r = c.req("HEAD", "/v1/AUTH_test/pub", &auth, empty()).await;
    assert_eq!(r.header("x-container-read"), Some(".r:*"));
    // Non-owners may not create containers; referrers are not valid in write ACLs.
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/other",
            &[("x-auth-token", &tok2)],
            empty(),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/other",
            &[auth[0], ("x-container-write", ".r:*")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/other",
            &[auth[0], ("x-storage-policy", "nope")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 400);

    // CORS preflight against the proxy-wide and container allow lists.
    let r = c
        .req(
            "OPTIONS",
            "/v1/AUTH_test/pub/o",
            &[
                ("origin", "http://example.com"),
                ("access-control-request-method", "GET"),
            ],
            empty(),
        )
        .await;
    assert_eq!(r.status, 401);
    let r = c.req("OPTIONS", "/v1/AUTH_test/pub/o", &[], empty()).await;
    assert_eq!(r.status, 200);
    assert!(r.header("allow").unwrap().contains("COPY"));

    // X-Newest reads.
    let r = c
        .req(
            "GET",
            "/v1/AUTH_test/c/hello.txt",
            &[auth[0], ("x-newest", "true")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 200);

    // /info, paths, methods.
    let r = c.req("GET", "/info", &[], empty()).await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes(1 << 16).await.unwrap()).unwrap();
    assert_eq!(v["swift"]["max_file_size"], 5368709122u64);
    assert_eq!(v["swift"]["policies"][0]["name"], "Policy-0");
    let r = c.req("GET", "/v1", &auth, empty()).await;
    assert_eq!(r.status, 412);
    let r = c.req("GET", "/v1/AUTH_test//o", &auth, empty()).await;
    assert_eq!(r.status, 412);
    let r = c.req("GET", "/", &auth, empty()).await;
    assert_eq!(r.status, 404);
    let long = format!("/v1/AUTH_test/c/{}", "o".repeat(1025));
    let r = c.req("PUT", &long, &auth, full("x")).await;
    assert_eq!(r.status, 400);
    let r = c.req("GET", "/v1/AUTH_test/c%00/o", &auth, empty()).await;
    assert_eq!(r.status, 412);
    let r = c.req("GET", "/v2/AUTH_test", &auth, empty()).await;
    assert_eq!(r.status, 400);
    let r = c.req("PUT", "/v1/AUTH_test", &auth, empty()).await;
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn dlo_and_slo() {
    let c = Cluster::start().await;
    let tok = c.token("test:tester", "testing").await;
    let auth = [("x-auth-token", tok.as_str())];
    assert_eq!(
        c.req("PUT", "/v1/AUTH_test/c", &auth, empty()).await.status,
        201
    );
    for (name, data) in [("seg/1", "aaaa"), ("seg/2", "bbbb")] {
        let r = c
            .req("PUT", &format!("/v1/AUTH_test/c/{name}"), &auth, full(data))
            .await;
        assert_eq!(r.status, 201);
    }
    // DLO manifest: zero bytes naming a prefix.
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/dlo",
            &[
                auth[0],
                ("x-object-manifest", "c/seg/"),
                ("content-length", "0"),
            ],
            empty(),
        )
        .await;
    assert_eq!(r.status, 201);
    let dlo_etag = {
        let mut h = Md5::new();
        h.update(hex::encode(Md5::digest(b"aaaa")).as_bytes());
        h.update(hex::encode(Md5::digest(b"bbbb")).as_bytes());
        format!("\"{}\"", hex::encode(h.finalize()))
    };
    let r = c.req("GET", "/v1/AUTH_test/c/dlo", &auth, empty()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some(dlo_etag.as_str()));
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"aaaabbbb");
    let r = c
        .req(
            "GET",
            "/v1/AUTH_test/c/dlo",
            &[auth[0], ("range", "bytes=3-4")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 206);
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"ab");
    let r = c
        .req(
            "GET",
            "/v1/AUTH_test/c/dlo?multipart-manifest=get",
            &auth,
            empty(),
        )
        .await;
    assert_eq!(r.header("content-length"), Some("0"));
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/dlo2",
            &[
                auth[0],
                ("x-object-manifest", "/bad"),
                ("content-length", "0"),
            ],
            empty(),
        )
        .await;
    assert_eq!(r.status, 400);

    // SLO manifest.
    let manifest = serde_json::json!([
        {"path": "/c/seg/1", "etag": hex::encode(Md5::digest(b"aaaa")), "size_bytes": 4},
        {"path": "/c/seg/2", "etag": null, "size_bytes": null, "range": "1-2"},
    ]);
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/big?multipart-manifest=put",
            &auth,
            full(manifest.to_string()),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.headers);
    let expected = {
        let mut h = Md5::new();
        h.update(hex::encode(Md5::digest(b"aaaa")).as_bytes());
        h.update(format!("{}:1-2;", hex::encode(Md5::digest(b"bbbb"))).as_bytes());
        hex::encode(h.finalize())
    };
    assert_eq!(r.header("etag"), Some(format!("\"{expected}\"").as_str()));
    let r = c.req("HEAD", "/v1/AUTH_test/c/big", &auth, empty()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("6"));
    assert_eq!(r.header("etag"), Some(format!("\"{expected}\"").as_str()));
    assert!(r.header("x-object-sysmeta-slo-etag").is_none());
    let r = c.req("GET", "/v1/AUTH_test/c/big", &auth, empty()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("6"));
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"aaaabb");
    let r = c
        .req(
            "GET",
            "/v1/AUTH_test/c/big",
            &[auth[0], ("range", "bytes=2-4")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 2-4/6"));
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"aab");
    let r = c
        .req(
            "GET",
            "/v1/AUTH_test/c/big?multipart-manifest=get",
            &auth,
            empty(),
        )
        .await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes(1 << 16).await.unwrap()).unwrap();
    assert_eq!(v[0]["name"], "/c/seg/1");
    assert_eq!(v[1]["range"], "1-2");
    // A bad segment is refused with the list of errors.
    let bad = serde_json::json!([{"path": "/c/missing", "etag": null, "size_bytes": null}]);
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/bad?multipart-manifest=put",
            &auth,
            full(bad.to_string()),
        )
        .await;
    assert_eq!(r.status, 400);
    let body = r.bytes(1000).await.unwrap();
    assert!(
        String::from_utf8_lossy(&body).contains("/c/missing, 404"),
        "{body:?}"
    );

    // Deleting the SLO with its segments.
    let r = c
        .req(
            "DELETE",
            "/v1/AUTH_test/c/big?multipart-manifest=delete",
            &[auth[0], ("accept", "application/json")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes(1 << 16).await.unwrap()).unwrap();
    assert_eq!(v["Number Deleted"], 3, "{v}");
    assert_eq!(v["Response Status"], "200 OK");
    assert_eq!(c.holders("AUTH_test/c/seg/1"), 0);
    assert_eq!(c.holders("AUTH_test/c/big"), 0);

    // Bulk delete: one object, one missing, then the container (objects go first).
    let body = "/c/dlo\n/c/nothing\n/c\n";
    let r = c
        .req(
            "POST",
            "/v1/AUTH_test?bulk-delete",
            &[
                auth[0],
                ("content-type", "text/plain"),
                ("content-length", "21"),
            ],
            full(body),
        )
        .await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.bytes(1 << 16).await.unwrap().to_vec()).unwrap();
    assert!(
        text.starts_with("Number Deleted: 2\nNumber Not Found: 1\n"),
        "{text}"
    );
    assert!(text.contains("Response Status: 200 OK"), "{text}");
    assert_eq!(c.holders("AUTH_test/c"), 0);
}

#[tokio::test]
async fn real_object_servers() {
    let (c, _dirs) = Cluster::start_with_real_objects(false).await;
    let tok = c.token("test:tester", "testing").await;
    let auth = [("x-auth-token", tok.as_str())];
    assert_eq!(
        c.req("PUT", "/v1/AUTH_test/c", &auth, empty()).await.status,
        201
    );

    // PUT with Content-Length, metadata and an ETag check.
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/dir/o.txt",
            &[
                auth[0],
                ("x-object-meta-color", "blue"),
                ("etag", "5eb63bbbe01eeed093cb22bb8f5acdc3"),
            ],
            full("hello world"),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.headers);
    assert_eq!(r.header("etag"), Some("5eb63bbbe01eeed093cb22bb8f5acdc3"));
    // Container updates reached the (fake) container replicas.
    let updates: usize = c
        .nodes
        .iter()
        .map(|n| n.requests("PUT", "AUTH_test/c/dir/o.txt").len())
        .sum();
    assert!(updates >= 2, "{updates}");
    // A wrong ETag is 422.
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/bad",
            &[auth[0], ("etag", "00000000000000000000000000000000")],
            full("x"),
        )
        .await;
    assert_eq!(r.status, 422);

    let r = c
        .req("GET", "/v1/AUTH_test/c/dir/o.txt", &auth, empty())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("x-object-meta-color"), Some("blue"));
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"hello world");
    let r = c
        .req(
            "GET",
            "/v1/AUTH_test/c/dir/o.txt",
            &[auth[0], ("range", "bytes=-5")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 206);
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"world");
    let r = c
        .req(
            "GET",
            "/v1/AUTH_test/c/dir/o.txt",
            &[auth[0], ("range", "bytes=50-")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 416);
    let r = c
        .req("HEAD", "/v1/AUTH_test/c/dir/o.txt", &auth, empty())
        .await;
    assert_eq!(r.header("content-length"), Some("11"));
    let etag = r.header("etag").unwrap().to_string();
    let r = c
        .req(
            "GET",
            "/v1/AUTH_test/c/dir/o.txt",
            &[auth[0], ("if-none-match", &etag)],
            empty(),
        )
        .await;
    assert_eq!(r.status, 304);

    // Create-only PUT of an existing object.
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/dir/o.txt",
            &[auth[0], ("if-none-match", "*")],
            full("again"),
        )
        .await;
    assert_eq!(r.status, 412);

    // Chunked and zero-byte PUTs.
    let (tx, body) = channel(2);
    tokio::spawn(async move {
        for _ in 0..10 {
            tx.send(Bytes::from(vec![b'z'; 100_000])).await.unwrap();
        }
    });
    let r = c.req("PUT", "/v1/AUTH_test/c/chunked", &auth, body).await;
    assert_eq!(r.status, 201);
    let r = c
        .req("GET", "/v1/AUTH_test/c/chunked", &auth, empty())
        .await;
    assert_eq!(r.header("content-length"), Some("1000000"));
    assert_eq!(r.bytes(2_000_000).await.unwrap().len(), 1_000_000);
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/empty",
            &[auth[0], ("content-length", "0")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("etag"), Some("d41d8cd98f00b204e9800998ecf8427e"));

    // POST replaces metadata; DELETE; then 404.
    let r = c
        .req(
            "POST",
            "/v1/AUTH_test/c/dir/o.txt",
            &[auth[0], ("x-object-meta-size", "big")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 202);
    let r = c
        .req("HEAD", "/v1/AUTH_test/c/dir/o.txt", &auth, empty())
        .await;
    assert_eq!(r.header("x-object-meta-size"), Some("big"));
    assert_eq!(r.header("x-object-meta-color"), None);
    let r = c
        .req("DELETE", "/v1/AUTH_test/c/dir/o.txt", &auth, empty())
        .await;
    assert_eq!(r.status, 204);
    let r = c
        .req("GET", "/v1/AUTH_test/c/dir/o.txt", &auth, empty())
        .await;
    assert_eq!(r.status, 404);
    let r = c
        .req("DELETE", "/v1/AUTH_test/c/dir/o.txt", &auth, empty())
        .await;
    assert_eq!(r.status, 404);

    // SLO over real object servers (sysmeta round trip).
    for (name, data) in [("s/1", "aaaa"), ("s/2", "bbbb")] {
        let r = c
            .req("PUT", &format!("/v1/AUTH_test/c/{name}"), &auth, full(data))
            .await;
        assert_eq!(r.status, 201);
    }
    let manifest = serde_json::json!([
        {"path": "/c/s/1", "etag": null, "size_bytes": null},
        {"path": "/c/s/2", "etag": null, "size_bytes": 4},
    ]);
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/slo?multipart-manifest=put",
            &auth,
            full(manifest.to_string()),
        )
        .await;
    assert_eq!(r.status, 201);
    let slo_etag = r.header("etag").unwrap().to_string();
    let r = c.req("HEAD", "/v1/AUTH_test/c/slo", &auth, empty()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("8"));
    assert_eq!(r.header("etag"), Some(slo_etag.as_str()));
    // Conditions apply to the large object, not to the manifest.
    for (h, v, want) in [
        ("if-none-match", slo_etag.as_str(), 304),
        ("if-match", slo_etag.as_str(), 200),
        ("if-match", "\"nope\"", 412),
    ] {
        let r = c
            .req("GET", "/v1/AUTH_test/c/slo", &[auth[0], (h, v)], empty())
            .await;
        assert_eq!(r.status, want, "{h}: {v}");
    }
    assert_eq!(r.header("x-static-large-object"), Some("True"));
    let r = c
        .req(
            "GET",
            "/v1/AUTH_test/c/slo",
            &[auth[0], ("range", "bytes=3-4")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 206);
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"ab");
    let r = c.req("GET", "/v1/AUTH_test/c/slo", &auth, empty()).await;
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"aaaabbbb");

    // Copying a large object copies its content (a plain object).
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/flat",
            &[auth[0], ("x-copy-from", "c/slo"), ("content-length", "0")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = c.req("GET", "/v1/AUTH_test/c/flat", &auth, empty()).await;
    assert!(r.header("x-static-large-object").is_none());
    assert_eq!(
        r.header("etag"),
        Some(format!("{:x}", Md5::digest(b"aaaabbbb")).as_str())
    );
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"aaaabbbb");
    // ?multipart-manifest=get copies the manifest itself.
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/slo2?multipart-manifest=get",
            &[auth[0], ("x-copy-from", "c/slo"), ("content-length", "0")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = c.req("HEAD", "/v1/AUTH_test/c/slo2", &auth, empty()).await;
    assert_eq!(r.header("x-static-large-object"), Some("True"));
    assert_eq!(r.header("content-length"), Some("8"));

    // Server-side copy keeps metadata.
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/copy",
            &[auth[0], ("x-copy-from", "c/s/1"), ("content-length", "0")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = c.req("GET", "/v1/AUTH_test/c/copy", &auth, empty()).await;
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"aaaa");

    // A nested SLO: read through, then delete with every segment.
    assert_eq!(
        c.req("PUT", "/v1/AUTH_test/c/s/3", &auth, full("cc"))
            .await
            .status,
        201
    );
    let outer = serde_json::json!([{"path": "/c/slo"}, {"path": "/c/s/3"}]);
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/outer?multipart-manifest=put",
            &auth,
            full(outer.to_string()),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = c.req("GET", "/v1/AUTH_test/c/outer", &auth, empty()).await;
    assert_eq!(r.header("content-length"), Some("10"));
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"aaaabbbbcc");
    let r = c
        .req(
            "DELETE",
            "/v1/AUTH_test/c/outer?multipart-manifest=delete",
            &[auth[0], ("accept", "application/json")],
            empty(),
        )
        .await;
    let v: serde_json::Value = serde_json::from_slice(&r.bytes(1 << 16).await.unwrap()).unwrap();
    assert_eq!(v["Number Deleted"], 5, "{v}");
    for gone in ["s/1", "s/2", "s/3", "slo", "outer"] {
        let r = c
            .req("HEAD", &format!("/v1/AUTH_test/c/{gone}"), &auth, empty())
            .await;
        assert_eq!(r.status, 404, "{gone}");
    }
}

#[tokio::test]
async fn real_container_and_object_servers() {
    let (c, _dirs) = Cluster::start_with_real_objects(true).await;
    let tok = c.token("test:tester", "testing").await;
    let auth = [("x-auth-token", tok.as_str())];
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/photos",
            &[
                auth[0],
                ("x-container-meta-color", "red"),
                ("x-container-read", ".r:*,.rlistings"),
            ],
            empty(),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = c.req("PUT", "/v1/AUTH_test/photos", &auth, empty()).await;
    assert_eq!(r.status, 202);
    // The container server sent its account updates to the (fake) account replicas.
    let acct_updates: usize = c
        .nodes
        .iter()
        .map(|n| n.requests("PUT", "AUTH_test/photos").len())
        .sum();
    assert!(acct_updates >= 2, "{acct_updates}");
    for name in ["a.jpg", "b/c.png", "b/d.txt"] {
        let r = c
            .req(
                "PUT",
                &format!("/v1/AUTH_test/photos/{name}"),
                &auth,
                full("data"),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let r = c.req("HEAD", "/v1/AUTH_test/photos", &auth, empty()).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("x-container-object-count"), Some("3"));
    assert_eq!(r.header("x-container-meta-color"), Some("red"));
    assert_eq!(r.header("x-storage-policy"), Some("Policy-0"));
    assert_eq!(r.header("x-container-read"), Some(".r:*,.rlistings"));
    let r = c
        .req(
            "GET",
            "/v1/AUTH_test/photos?format=json&delimiter=/",
            &auth,
            empty(),
        )
        .await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes(1 << 16).await.unwrap()).unwrap();
    assert_eq!(v[0]["name"], "a.jpg");
    assert_eq!(v[0]["content_type"], "image/jpeg");
    assert_eq!(v[1]["subdir"], "b/");
    let r = c
        .req("GET", "/v1/AUTH_test/photos?prefix=b/", &auth, empty())
        .await;
    assert_eq!(&r.bytes(1 << 16).await.unwrap()[..], b"b/c.png\nb/d.txt\n");
    let r = c
        .req("GET", "/v1/AUTH_test/photos?limit=10001", &auth, empty())
        .await;
    assert_eq!(r.status, 412);
    // Public listing (.rlistings) without the owner-only headers.
    let r = c.req("GET", "/v1/AUTH_test/photos", &[], empty()).await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-container-read").is_none());
    // Not empty: 409; then empty it and delete.
    let r = c
        .req("DELETE", "/v1/AUTH_test/photos", &auth, empty())
        .await;
    assert_eq!(r.status, 409);
    for name in ["a.jpg", "b/c.png", "b/d.txt"] {
        let r = c
            .req(
                "DELETE",
                &format!("/v1/AUTH_test/photos/{name}"),
                &auth,
                empty(),
            )
            .await;
        assert_eq!(r.status, 204);
    }
    let r = c
        .req("DELETE", "/v1/AUTH_test/photos", &auth, empty())
        .await;
    assert_eq!(r.status, 204);
    let r = c.req("HEAD", "/v1/AUTH_test/photos", &auth, empty()).await;
    assert_eq!(r.status, 404);
    let r = c
        .req("PUT", "/v1/AUTH_test/photos/x", &auth, full("x"))
        .await;
    assert_eq!(r.status, 404);
    // Versioning, stack mode.
    assert_eq!(
        c.req("PUT", "/v1/AUTH_test/vers", &auth, empty())
            .await
            .status,
        201
    );
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/docs",
            &[auth[0], ("x-versions-location", "vers")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/bad",
            &[
                auth[0],
                ("x-versions-location", "a"),
                ("x-history-location", "b"),
            ],
            empty(),
        )
        .await;
    assert_eq!(r.status, 400);
    for v in ["v1", "v2", "v3"] {
        let r = c.req("PUT", "/v1/AUTH_test/docs/o", &auth, full(v)).await;
        assert_eq!(r.status, 201);
    }
    let r = c
        .req("GET", "/v1/AUTH_test/vers?format=json", &auth, empty())
        .await;
    let v: serde_json::Value = serde_json::from_slice(&r.bytes(1 << 16).await.unwrap()).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    assert!(v[0]["name"].as_str().unwrap().starts_with("001o/"));
    let r = c
        .req("DELETE", "/v1/AUTH_test/docs/o", &auth, empty())
        .await;
    assert_eq!(r.status, 204);
    let r = c.req("GET", "/v1/AUTH_test/docs/o", &auth, empty()).await;
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"v2");
    let r = c
        .req("DELETE", "/v1/AUTH_test/docs/o", &auth, empty())
        .await;
    assert_eq!(r.status, 204);
    let r = c.req("GET", "/v1/AUTH_test/docs/o", &auth, empty()).await;
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"v1");
    let r = c
        .req("DELETE", "/v1/AUTH_test/docs/o", &auth, empty())
        .await;
    assert_eq!(r.status, 204);
    let r = c.req("GET", "/v1/AUTH_test/docs/o", &auth, empty()).await;
    assert_eq!(r.status, 404);

    // History mode: every overwrite and the delete are kept, with a marker.
    assert_eq!(
        c.req("PUT", "/v1/AUTH_test/hist", &auth, empty())
            .await
            .status,
        201
    );
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/h",
            &[auth[0], ("x-history-location", "hist")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 201);
    for v in ["a", "b"] {
        assert_eq!(
            c.req("PUT", "/v1/AUTH_test/h/o", &auth, full(v))
                .await
                .status,
            201
        );
    }
    assert_eq!(
        c.req("DELETE", "/v1/AUTH_test/h/o", &auth, empty())
            .await
            .status,
        204
    );
    assert_eq!(
        c.req("GET", "/v1/AUTH_test/h/o", &auth, empty())
            .await
            .status,
        404
    );
    let r = c
        .req("GET", "/v1/AUTH_test/hist?format=json", &auth, empty())
        .await;
    let v: serde_json::Value = serde_json::from_slice(&r.bytes(1 << 16).await.unwrap()).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{v}");
    assert_eq!(
        rows[2]["content_type"],
        crate::versioning::DELETE_MARKER_CONTENT_TYPE
    );

    // Container POST.
    assert_eq!(
        c.req("PUT", "/v1/AUTH_test/c2", &auth, empty())
            .await
            .status,
        201
    );
    let r = c
        .req(
            "POST",
            "/v1/AUTH_test/c2",
            &[auth[0], ("x-container-meta-k", "v")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = c
        .req(
            "POST",
            "/v1/AUTH_test/c2",
            &[auth[0], ("x-remove-container-meta-k", "x")],
            empty(),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = c.req("HEAD", "/v1/AUTH_test/c2", &auth, empty()).await;
    assert!(r.header("x-container-meta-k").is_none());
}

/// A cluster with `extra_proxy` settings, a token of test:tester, and the object
/// `/AUTH_test/c/o` stored; returns the indexes of its primaries.
async fn cluster_with_object(extra_proxy: &str) -> (Cluster, String, Vec<usize>) {
    let c = Cluster::start_with(extra_proxy).await;
    let tok = c.token("test:tester", "testing").await;
    let auth = [("x-auth-token", tok.as_str())];
    assert_eq!(
        c.req("PUT", "/v1/AUTH_test/c", &auth, empty()).await.status,
        201
    );
    let r = c.req("PUT", "/v1/AUTH_test/c/o", &auth, full("data")).await;
    assert_eq!(r.status, 201);
    let primaries: Vec<usize> = (0..4)
        .filter(|i| c.nodes[*i].has("AUTH_test/c/o"))
        .collect();
    (c, tok, primaries)
}

#[tokio::test]
async fn slow_nodes_time_out() {
    let (c, tok, primaries) = cluster_with_object("conn_timeout = 0.5\nnode_timeout = 0.5\n").await;
    let auth = [("x-auth-token", tok.as_str())];
    let handoff = (0..4).find(|i| !primaries.contains(i)).unwrap();
    // A primary that does not answer: the PUT goes to the handoff instead, without
    // waiting for it. The slow node only logs a request once it looks at it (3 s later),
    // so an unchanged log when the client has its answer shows the proxy did not wait
    // for that node (an ordering check, not a timing one).
    c.nodes[primaries[0]].mode.store(SLOW, Ordering::SeqCst);
    let seen_before = c.nodes[primaries[0]].requests("PUT", "AUTH_test/c/o").len();
    let r = c
        .req("PUT", "/v1/AUTH_test/c/o", &auth, full("data2"))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        c.nodes[primaries[0]].requests("PUT", "AUTH_test/c/o").len(),
        seen_before,
        "the PUT waited for the slow primary"
    );
    // The handoff takes the copy once the slow primary's attempt timed out; for a small
    // body that slot goes on after the client has its answer.
    let mut handed_off = false;
    for _ in 0..200 {
        handed_off = c.nodes[handoff].has("AUTH_test/c/o");
        if handed_off {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(handed_off, "the handoff never got the copy");
    // Reads move on from a node that does not answer in time.
    let r = c.req("GET", "/v1/AUTH_test/c/o", &auth, empty()).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"data2");
    c.nodes[primaries[0]].mode.store(NORMAL, Ordering::SeqCst);
}

/// A small PUT answers once a quorum agreed (plus `post_quorum_timeout`), not when a slow
/// primary finally answers; that primary's request goes on after the answer, so it still
/// gets its copy. Ordering checks only: the slow node logs a request when it looks at it.
#[tokio::test]
async fn small_put_does_not_wait_for_a_slow_primary_which_still_gets_its_copy() {
    let (c, tok, primaries) = cluster_with_object("").await;
    let auth = [("x-auth-token", tok.as_str())];
    let slow = primaries[0];
    c.nodes[slow].mode.store(SLOW, Ordering::SeqCst);
    let seen_before = c.nodes[slow].requests("PUT", "AUTH_test/c/o").len();
    let r = c
        .req("PUT", "/v1/AUTH_test/c/o", &auth, full("data3"))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        c.nodes[slow].requests("PUT", "AUTH_test/c/o").len(),
        seen_before,
        "the PUT waited for the slow primary"
    );
    let stored = |c: &Cluster| {
        c.nodes[slow]
            .data
            .lock()
            .unwrap()
            .get("AUTH_test/c/o")
            .is_some_and(|(_, body)| &body[..] == b"data3")
    };
    let mut copied = false;
    for _ in 0..400 {
        copied = stored(&c);
        if copied {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    c.nodes[slow].mode.store(NORMAL, Ordering::SeqCst);
    assert!(copied, "the slow primary never got its copy");
}

/// Every `.data` file under `dir` (recursively).
fn data_files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(data_files_under(&p));
        } else if p.extension().is_some_and(|x| x == "data") {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn read_repair_restores_a_missing_primary_copy() {
    let (c, dirs) = Cluster::start_with_real_objects(false).await;
    let tok = c.token("test:tester", "testing").await;
    let auth = [("x-auth-token", tok.as_str())];
    assert_eq!(
        c.req("PUT", "/v1/AUTH_test/c", &auth, empty()).await.status,
        201
    );
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/c/rr",
            &[auth[0], ("x-object-meta-color", "blue")],
            full("repair me"),
        )
        .await;
    assert_eq!(r.status, 201);
    let hash =
        cairn_common::HashPathSecret::new("", "s").hash_path("AUTH_test", Some("c"), Some("rr"));
    let holders = |dirs: &[tempfile::TempDir]| -> Vec<usize> {
        (0..dirs.len())
            .filter(|&i| {
                data_files_under(&dirs[i].path().join(format!("sd{i}")).join("objects"))
                    .iter()
                    .any(|p| p.to_string_lossy().contains(&hash))
            })
            .collect()
    };
    assert_eq!(holders(&dirs).len(), 3);
    // The primaries in ring order (the object ring has the fakes' layout; device id =
    // index in `dirs`); reads go in ring order here.
    let secret = cairn_common::HashPathSecret::new("", "s");
    let part = c
        .fake_ring
        .get_part(&secret, "AUTH_test", Some("c"), Some("rr"));
    let before: Vec<usize> = c
        .fake_ring
        .get_part_nodes(part)
        .map(|n| n.dev.id as usize)
        .collect();
    let mut sorted = before.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, holders(&dirs));
    // Remove the copies of the first two primaries: the last one remains.
    let mut ts_name = None;
    for &i in &before[..2] {
        for f in data_files_under(&dirs[i].path().join(format!("sd{i}")).join("objects")) {
            if f.to_string_lossy().contains(&hash) {
                ts_name = f.file_name().map(|n| n.to_os_string());
                std::fs::remove_dir_all(f.parent().unwrap()).unwrap();
            }
        }
    }
    assert_eq!(holders(&dirs).len(), 1);
    // One GET (served by the third primary) repairs both; the client never waits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let r = c.req("GET", "/v1/AUTH_test/c/rr", &auth, empty()).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"repair me");
    while holders(&dirs).len() < 3 {
        assert!(std::time::Instant::now() < deadline, "{:?}", holders(&dirs));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The repaired copies keep the original timestamp and metadata.
    for &i in &before[..2] {
        let f: Vec<_> = data_files_under(&dirs[i].path().join(format!("sd{i}")).join("objects"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(&hash))
            .collect();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].file_name().map(|n| n.to_os_string()), ts_name);
    }
    let r = c.req("HEAD", "/v1/AUTH_test/c/rr", &auth, empty()).await;
    assert_eq!(r.header("x-object-meta-color"), Some("blue"));
    let m = cairn_common::metrics::global().render();
    assert!(m.contains("cairn_proxy_read_repair_done_total"), "{m}");
}
