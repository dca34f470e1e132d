//! A tiny in-memory Swift endpoint for testing `cairn bench`: TempAuth v1 and container
//! PUT/GET/DELETE, object PUT/GET/HEAD/DELETE. One account (`AUTH_test`), one user
//! (`test:tester`, key `testing`), one token. Not a model of Swift beyond what the
//! bench needs.

#![allow(dead_code)]

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};

/// The token the fake hands out and accepts.
pub const TOKEN: &str = "AUTH_tk0123456789abcdef0123456789abcdef";

#[derive(Default)]
struct Store {
    /// container → object → (body, etag)
    containers: HashMap<String, BTreeMap<String, (Bytes, String)>>,
}

/// Counters the tests look at.
#[derive(Default, Debug, Clone)]
pub struct Counts {
    pub auth: u64,
    pub container_put: u64,
    pub container_get: u64,
    pub container_delete: u64,
    pub put: u64,
    pub get: u64,
    pub head: u64,
    pub delete: u64,
}

/// A running fake.
#[derive(Clone)]
pub struct Fake {
    pub addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    counts: Arc<Mutex<Counts>>,
}

impl Fake {
    /// Objects stored now, over all containers.
    pub fn object_count(&self) -> usize {
        let s = self.store.lock().unwrap();
        s.containers.values().map(|c| c.len()).sum()
    }

    /// Containers that exist now.
    pub fn container_count(&self) -> usize {
        self.store.lock().unwrap().containers.len()
    }

    /// Requests served so far.
    pub fn counts(&self) -> Counts {
        self.counts.lock().unwrap().clone()
    }

    /// `http://ADDR/auth/v1.0`.
    pub fn auth_url(&self) -> String {
        format!("http://{}/auth/v1.0", self.addr)
    }
}

/// Bind 127.0.0.1:0 and serve on the current tokio runtime until it stops.
pub async fn start() -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = Fake {
        addr: listener.local_addr().unwrap(),
        store: Arc::default(),
        counts: Arc::default(),
    };
    let f = fake.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let f = f.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let f = f.clone();
                    async move { Ok::<_, Infallible>(handle(&f, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    fake
}

/// Start the fake on a runtime of its own, in a background thread (for callers that are
/// not async, such as `cairn_bench::run_summary`).
pub fn start_in_background() -> Fake {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tx.send(start().await).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

fn reply(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn handle(f: &Fake, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if path.starts_with("/auth/") {
        f.counts.lock().unwrap().auth += 1;
        let h = req.headers();
        let ok = h.get("x-auth-user").map(|v| v.as_bytes()) == Some(&b"test:tester"[..])
            && h.get("x-auth-key").map(|v| v.as_bytes()) == Some(&b"testing"[..]);
        if !ok {
            let mut r = reply(StatusCode::UNAUTHORIZED);
            r.headers_mut()
                .insert("www-authenticate", "Swift realm=\"test\"".parse().unwrap());
            return r;
        }
        let mut r = reply(StatusCode::OK);
        let url = format!("http://{}/v1/AUTH_test", f.addr);
        r.headers_mut()
            .insert("x-storage-url", url.parse().unwrap());
        r.headers_mut()
            .insert("x-auth-token", TOKEN.parse().unwrap());
        r.headers_mut()
            .insert("x-storage-token", TOKEN.parse().unwrap());
        return r;
    }
    if req.headers().get("x-auth-token").map(|v| v.as_bytes()) != Some(TOKEN.as_bytes()) {
        return reply(StatusCode::UNAUTHORIZED);
    }
    let Some(rest) = path.strip_prefix("/v1/AUTH_test/") else {
        return reply(StatusCode::NOT_FOUND);
    };
    let (container, object) = match rest.split_once('/') {
        Some((c, o)) if !o.is_empty() => (c.to_string(), Some(o.to_string())),
        Some((c, _)) => (c.to_string(), None),
        None => (rest.to_string(), None),
    };
    let method = req.method().clone();
    match (method, object) {
        (Method::PUT, None) => {
            f.counts.lock().unwrap().container_put += 1;
            let mut s = f.store.lock().unwrap();
            match s.containers.entry(container) {
                Entry::Occupied(_) => reply(StatusCode::ACCEPTED),
                Entry::Vacant(e) => {
                    e.insert(BTreeMap::new());
                    reply(StatusCode::CREATED)
                }
            }
        }
        (Method::GET, None) => {
            f.counts.lock().unwrap().container_get += 1;
            let s = f.store.lock().unwrap();
            let Some(c) = s.containers.get(&container) else {
                return reply(StatusCode::NOT_FOUND);
            };
            let entries: Vec<String> = c
                .iter()
                .map(|(name, (body, etag))| {
                    format!(
                        "{{\"name\":\"{name}\",\"hash\":\"{etag}\",\"bytes\":{}}}",
                        body.len()
                    )
                })
                .collect();
            let mut r = Response::new(Full::new(Bytes::from(format!("[{}]", entries.join(",")))));
            r.headers_mut().insert(
                "content-type",
                "application/json; charset=utf-8".parse().unwrap(),
            );
            r
        }
        (Method::DELETE, None) => {
            f.counts.lock().unwrap().container_delete += 1;
            let mut s = f.store.lock().unwrap();
            match s.containers.get(&container) {
                None => reply(StatusCode::NOT_FOUND),
                Some(c) if !c.is_empty() => reply(StatusCode::CONFLICT),
                Some(_) => {
                    s.containers.remove(&container);
                    reply(StatusCode::NO_CONTENT)
                }
            }
        }
        (Method::PUT, Some(object)) => {
            f.counts.lock().unwrap().put += 1;
            if !f.store.lock().unwrap().containers.contains_key(&container) {
                return reply(StatusCode::NOT_FOUND);
            }
            let sent_etag = req
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim_matches('"').to_string());
            let Ok(body) = req.into_body().collect().await else {
                return reply(StatusCode::BAD_REQUEST);
            };
            let body = body.to_bytes();
            let etag = hex(&Md5::digest(&body));
            if sent_etag.is_some_and(|e| e != etag) {
                return reply(StatusCode::UNPROCESSABLE_ENTITY);
            }
            let mut s = f.store.lock().unwrap();
            let Some(c) = s.containers.get_mut(&container) else {
                return reply(StatusCode::NOT_FOUND);
            };
            c.insert(object, (body, etag.clone()));
            let mut r = reply(StatusCode::CREATED);
            r.headers_mut().insert("etag", etag.parse().unwrap());
            r
        }
        (m @ (Method::GET | Method::HEAD), Some(object)) => {
            {
                let mut c = f.counts.lock().unwrap();
                if m == Method::GET {
                    c.get += 1
                } else {
                    c.head += 1
                }
            }
            let s = f.store.lock().unwrap();
            let Some((body, etag)) = s.containers.get(&container).and_then(|c| c.get(&object))
            else {
                return reply(StatusCode::NOT_FOUND);
            };
            // hyper sends the Content-Length of the body, and none for HEAD: set it.
            let mut r = Response::new(Full::new(if m == Method::GET {
                body.clone()
            } else {
                Bytes::new()
            }));
            r.headers_mut().insert("etag", etag.parse().unwrap());
            r.headers_mut()
                .insert("content-length", body.len().to_string().parse().unwrap());
            r
        }
        (Method::DELETE, Some(object)) => {
            f.counts.lock().unwrap().delete += 1;
            let mut s = f.store.lock().unwrap();
            match s
                .containers
                .get_mut(&container)
                .and_then(|c| c.remove(&object))
            {
                Some(_) => reply(StatusCode::NO_CONTENT),
                None => reply(StatusCode::NOT_FOUND),
            }
        }
        _ => reply(StatusCode::METHOD_NOT_ALLOWED),
    }
}
