//! Object server handler tests: every method and status of `PROTOCOLS.md` "Object server",
//! driven through `Handler::handle` (no sockets), plus container updates against a real
//! loopback server and async pendings when updates fail.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cairn_common::http::{self as chttp, Handler, RequestBody};
use cairn_common::{HashPathSecret, Timestamp};
use cairn_object::async_pending;
use cairn_object::layout::PolicyPaths;
use cairn_object::server::{ObjectServer, ObjectServerSettings};
use cairn_object::DiskConfig;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use md5::{Digest, Md5};
use tempfile::TempDir;

const OBJ: &str = "/sda/0/AUTH_test/c/o";

fn server_with(f: impl FnOnce(&mut ObjectServerSettings)) -> (TempDir, ObjectServer) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sda")).unwrap();
    let mut s = ObjectServerSettings {
        disk: DiskConfig {
            devices: dir.path().to_path_buf(),
            mount_check: false,
            fallocate_reserve: cairn_common::fs::FallocateReserve::NONE,
            ..DiskConfig::default()
        },
        ..ObjectServerSettings::default()
    };
    f(&mut s);
    (
        dir,
        ObjectServer::new(s, HashPathSecret::new("", "changeme")),
    )
}

fn server() -> (TempDir, ObjectServer) {
    server_with(|_| {})
}

/// Timestamps a little in the past (never reclaimable, never in the future).
fn ts(s: u64) -> Timestamp {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    Timestamp::from_secs(*BASE.get_or_init(|| Timestamp::now().secs() - 10_000) + s)
}

fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<RequestBody> {
    let mut b = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(RequestBody::from(body.into())).unwrap()
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Result<Bytes, std::io::Error>,
}

impl Resp {
    fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn body(&self) -> &[u8] {
        self.body.as_ref().expect("body")
    }
}

async fn call(s: &ObjectServer, req: Request<RequestBody>) -> Resp {
    let resp = s.handle(req).await;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes());
    Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

async fn put(
    s: &ObjectServer,
    path: &str,
    t: Timestamp,
    body: &'static [u8],
    extra: &[(&str, &str)],
) -> Resp {
    let its = t.internal();
    let len = body.len().to_string();
    let mut h = vec![
        ("X-Timestamp", its.as_str()),
        ("Content-Type", "text/plain"),
        ("Content-Length", len.as_str()),
    ];
    h.extend_from_slice(extra);
    call(s, request("PUT", path, &h, Bytes::from_static(body))).await
}

async fn get(s: &ObjectServer, path: &str, extra: &[(&str, &str)]) -> Resp {
    call(s, request("GET", path, extra, Bytes::new())).await
}

fn md5_hex(b: &[u8]) -> String {
    cairn_common::to_hex(&Md5::digest(b))
}

fn pendings(dir: &Path, policy: u32) -> Vec<async_pending::AsyncPending> {
    let paths = PolicyPaths::new(dir.join("sda"), policy);
    let mut out = Vec::new();
    for s in async_pending::list_suffixes(&paths).unwrap() {
        for e in async_pending::list_suffix(&paths, &s).unwrap() {
            out.push(async_pending::read_pending(&e.path).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn put_get_head_ranges_and_conditionals() {
    let (_d, s) = server();
    let r = put(
        &s,
        OBJ,
        ts(1),
        b"hello world",
        &[
            ("X-Object-Meta-Color", "red"),
            ("Content-Disposition", "inline"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.h("etag"), Some(md5_hex(b"hello world").as_str()));

    let r = get(&s, OBJ, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body(), b"hello world");
    assert_eq!(r.h("content-type"), Some("text/plain"));
    assert_eq!(r.h("content-length"), Some("11"));
    assert_eq!(r.h("x-object-meta-color"), Some("red"));
    assert_eq!(r.h("content-disposition"), Some("inline"));
    assert_eq!(r.h("x-timestamp"), Some(ts(1).normal().as_str()));
    assert_eq!(r.h("x-backend-timestamp"), Some(ts(1).internal().as_str()));
    assert_eq!(
        r.h("x-backend-data-timestamp"),
        Some(ts(1).internal().as_str())
    );
    assert_eq!(r.h("last-modified"), Some(ts(1).http_date().as_str()));
    assert!(r.h("name").is_none());

    let r = call(&s, request("HEAD", OBJ, &[], Bytes::new())).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.h("content-length"), Some("11"));
    assert!(r.body().is_empty());

    let r = get(&s, OBJ, &[("Range", "bytes=6-")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body(), b"world");
    assert_eq!(r.h("content-range"), Some("bytes 6-10/11"));
    let r = get(&s, OBJ, &[("Range", "bytes=-3")]).await;
    assert_eq!(r.body(), b"rld");
    let r = get(&s, OBJ, &[("Range", "bytes=20-")]).await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.h("content-range"), Some("bytes */11"));

    let r = get(&s, OBJ, &[("Range", "bytes=0-1,6-7")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    let ct = r.h("content-type").unwrap().to_string();
    let boundary = ct.strip_prefix("multipart/byteranges;boundary=").unwrap();
    let want = format!(
        "--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/11\r\n\r\nhe\r\n\
         --{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 6-7/11\r\n\r\nwo\r\n--{boundary}--"
    );
    assert_eq!(r.body(), want.as_bytes());
    assert_eq!(r.h("content-length"), Some(want.len().to_string().as_str()));
    // a satisfiable and an unsatisfiable range: a plain 206
    let r = get(&s, OBJ, &[("Range", "bytes=0-1,60-70")]).await;
    assert_eq!(
        (r.status, r.body()),
        (StatusCode::PARTIAL_CONTENT, &b"he"[..])
    );
    // syntactically bad: ignored
    assert_eq!(
        get(&s, OBJ, &[("Range", "bytes=0-1,zz")]).await.body(),
        b"hello world"
    );

    let etag = md5_hex(b"hello world");
    let quoted = format!("\"{etag}\"");
    assert_eq!(
        get(&s, OBJ, &[("If-None-Match", &quoted)]).await.status,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        get(&s, OBJ, &[("If-Match", "nope")]).await.status,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        get(&s, OBJ, &[("If-Match", &etag)]).await.status,
        StatusCode::OK
    );
    let later = httpdate::fmt_http_date(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(ts(100).secs()),
    );
    let earlier = httpdate::fmt_http_date(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(ts(0).secs() - 100),
    );
    assert_eq!(
        get(&s, OBJ, &[("If-Modified-Since", &later)]).await.status,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        get(&s, OBJ, &[("If-Unmodified-Since", &earlier)])
            .await
            .status,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        get(&s, OBJ, &[("If-Modified-Since", &earlier)])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn put_errors() {
    let (_d, s) = server();
    let t = ts(5).internal();
    // missing / invalid X-Timestamp
    let r = call(
        &s,
        request(
            "PUT",
            OBJ,
            &[("Content-Type", "a/b"), ("Content-Length", "1")],
            "x",
        ),
    )
    .await;
    assert_eq!(
        (r.status, r.body()),
        (StatusCode::BAD_REQUEST, &b"Missing X-Timestamp header"[..])
    );
    // missing Content-Type
    let r = call(
        &s,
        request(
            "PUT",
            OBJ,
            &[("X-Timestamp", &t), ("Content-Length", "1")],
            "x",
        ),
    )
    .await;
    assert_eq!(
        (r.status, r.body()),
        (StatusCode::BAD_REQUEST, &b"No content type"[..])
    );
    // no length
    let r = call(
        &s,
        request(
            "PUT",
            OBJ,
            &[("X-Timestamp", &t), ("Content-Type", "a/b")],
            "x",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::LENGTH_REQUIRED);
    // too large
    let r = call(
        &s,
        request(
            "PUT",
            OBJ,
            &[
                ("X-Timestamp", &t),
                ("Content-Type", "a/b"),
                ("Content-Length", "5368709123"),
            ],
            "",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // bad metadata
    let long = "v".repeat(257);
    let r = put(&s, OBJ, ts(5), b"x", &[("X-Object-Meta-K", &long)]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // X-Delete-At in the past / not an integer
    let r = put(&s, OBJ, ts(5), b"x", &[("X-Delete-At", "1")]).await;
    assert_eq!(
        (r.status, r.body()),
        (StatusCode::BAD_REQUEST, &b"X-Delete-At in past"[..])
    );
    let r = put(&s, OBJ, ts(5), b"x", &[("X-Delete-At", "soon")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // ETag mismatch: 422 and nothing stored
    let r = put(
        &s,
        OBJ,
        ts(5),
        b"x",
        &[("ETag", "00000000000000000000000000000000")],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(get(&s, OBJ, &[]).await.status, StatusCode::NOT_FOUND);
    // a matching (quoted) ETag is fine
    let quoted = format!("\"{}\"", md5_hex(b"x"));
    assert_eq!(
        put(&s, OBJ, ts(5), b"x", &[("ETag", &quoted)]).await.status,
        StatusCode::CREATED
    );
    // same or older timestamp: 409 with the existing timestamp
    let r = put(&s, OBJ, ts(5), b"y", &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.h("x-backend-timestamp"), Some(ts(5).internal().as_str()));
    assert_eq!(
        put(&s, OBJ, ts(4), b"y", &[]).await.status,
        StatusCode::CONFLICT
    );
    // If-None-Match: * on an existing object
    assert_eq!(
        put(&s, OBJ, ts(6), b"y", &[("If-None-Match", "*")])
            .await
            .status,
        StatusCode::PRECONDITION_FAILED
    );
    // bad paths
    assert_eq!(
        put(&s, "/sda/0/AUTH_test/c", ts(7), b"y", &[]).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        put(&s, "/sda/x/AUTH_test/c/o", ts(7), b"y", &[])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        put(&s, "/sda/0/AUTH_test/c/%00", ts(7), b"y", &[])
            .await
            .status,
        StatusCode::PRECONDITION_FAILED
    );
    // unknown device
    assert_eq!(
        put(&s, "/sdz/0/AUTH_test/c/o", ts(7), b"y", &[])
            .await
            .status,
        StatusCode::INSUFFICIENT_STORAGE
    );
    // short body: nothing renamed
    let r = call(
        &s,
        request(
            "PUT",
            "/sda/0/AUTH_test/c/short",
            &[
                ("X-Timestamp", &ts(8).internal()),
                ("Content-Type", "a/b"),
                ("Content-Length", "10"),
            ],
            "12345",
        ),
    )
    .await;
    assert_eq!(r.status.as_u16(), 499);
    assert_eq!(
        get(&s, "/sda/0/AUTH_test/c/short", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    // chunked upload (no Content-Length)
    let r = call(
        &s,
        request(
            "PUT",
            "/sda/0/AUTH_test/c/chunked",
            &[
                ("X-Timestamp", &ts(8).internal()),
                ("Content-Type", "a/b"),
                ("Transfer-Encoding", "chunked"),
            ],
            "abc",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        get(&s, "/sda/0/AUTH_test/c/chunked", &[]).await.body(),
        b"abc"
    );
}

#[tokio::test]
async fn post_replaces_metadata() {
    let (_d, s) = server();
    assert_eq!(
        call(
            &s,
            request("POST", OBJ, &[("X-Timestamp", &ts(2).internal())], "")
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    put(
        &s,
        OBJ,
        ts(1),
        b"data",
        &[("X-Object-Meta-A", "1"), ("X-Object-Sysmeta-S", "s")],
    )
    .await;
    let r = call(
        &s,
        request(
            "POST",
            OBJ,
            &[("X-Timestamp", &ts(2).internal()), ("X-Object-Meta-B", "2")],
            "",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = get(&s, OBJ, &[]).await;
    assert_eq!(r.h("x-object-meta-b"), Some("2"));
    assert_eq!(r.h("x-object-meta-a"), None);
    assert_eq!(r.h("x-object-sysmeta-s"), Some("s"));
    assert_eq!(r.h("content-type"), Some("text/plain"));
    assert_eq!(r.h("x-timestamp"), Some(ts(2).normal().as_str()));
    assert_eq!(
        r.h("x-backend-data-timestamp"),
        Some(ts(1).internal().as_str())
    );
    assert_eq!(r.body(), b"data");
    // content type change
    let r = call(
        &s,
        request(
            "POST",
            OBJ,
            &[
                ("X-Timestamp", &ts(3).internal()),
                ("Content-Type", "image/png"),
            ],
            "",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(get(&s, OBJ, &[]).await.h("content-type"), Some("image/png"));
    // older or equal POST: 409
    let r = call(
        &s,
        request("POST", OBJ, &[("X-Timestamp", &ts(3).internal())], ""),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.h("x-backend-timestamp"), Some(ts(3).internal().as_str()));
    // missing X-Timestamp
    assert_eq!(
        call(&s, request("POST", OBJ, &[], "")).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn delete_and_tombstones() {
    let (_d, s) = server();
    // DELETE of nothing: 404, tombstone written anyway
    let r = call(
        &s,
        request("DELETE", OBJ, &[("X-Timestamp", &ts(1).internal())], ""),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.h("x-backend-timestamp"), Some(ts(1).internal().as_str()));
    let r = get(&s, OBJ, &[]).await;
    assert_eq!(
        (r.status, r.h("x-backend-timestamp")),
        (StatusCode::NOT_FOUND, Some(ts(1).internal().as_str()))
    );
    // a PUT older than the tombstone: 409
    assert_eq!(
        put(&s, OBJ, ts(1), b"x", &[]).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        put(&s, OBJ, ts(2), b"x", &[]).await.status,
        StatusCode::CREATED
    );
    // DELETE older than the object: 409
    let r = call(
        &s,
        request("DELETE", OBJ, &[("X-Timestamp", &ts(1).internal())], ""),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.h("x-backend-timestamp"), Some(ts(2).internal().as_str()));
    let r = call(
        &s,
        request("DELETE", OBJ, &[("X-Timestamp", &ts(3).internal())], ""),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.h("x-backend-timestamp"), Some(ts(3).internal().as_str()));
    assert_eq!(get(&s, OBJ, &[]).await.status, StatusCode::NOT_FOUND);
    let r = call(
        &s,
        request("DELETE", OBJ, &[("X-Timestamp", &ts(3).internal())], ""),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn expiry_and_if_delete_at() {
    let (_d, s) = server();
    let now = Timestamp::now().secs();
    let soon = (now + 2).to_string();
    let later = (now + 1000).to_string();
    put(&s, OBJ, ts(1), b"x", &[("X-Delete-At", &later)]).await;
    assert_eq!(
        get(&s, OBJ, &[]).await.h("x-delete-at"),
        Some(later.as_str())
    );
    // expirer DELETE with the wrong X-If-Delete-At: 412
    let r = call(
        &s,
        request(
            "DELETE",
            OBJ,
            &[
                ("X-Timestamp", &ts(2).internal()),
                ("X-If-Delete-At", &soon),
            ],
            "",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = call(
        &s,
        request(
            "DELETE",
            OBJ,
            &[
                ("X-Timestamp", &ts(2).internal()),
                ("X-If-Delete-At", &later),
            ],
            "",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = call(
        &s,
        request(
            "DELETE",
            "/sda/0/AUTH_test/c/none",
            &[
                ("X-Timestamp", &ts(2).internal()),
                ("X-If-Delete-At", &later),
            ],
            "",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // an object that expires reads as 404
    put(
        &s,
        "/sda/0/AUTH_test/c/e",
        ts(1),
        b"x",
        &[("X-Delete-At", &soon)],
    )
    .await;
    assert_eq!(
        get(&s, "/sda/0/AUTH_test/c/e", &[]).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        get(&s, "/sda/0/AUTH_test/c/e", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let r = call(
        &s,
        request(
            "POST",
            "/sda/0/AUTH_test/c/e",
            &[("X-Timestamp", &ts(3).internal())],
            "",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn replicate_and_methods() {
    let (_d, s) = server();
    let r = call(&s, request("REPLICATE", "/sda/0", &[], "")).await;
    assert_eq!((r.status, r.body()), (StatusCode::OK, &b"{}"[..]));
    put(&s, OBJ, ts(1), b"x", &[]).await;
    let r = call(&s, request("REPLICATE", "/sda/0", &[], "")).await;
    assert_eq!(r.status, StatusCode::OK);
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(r.body()).unwrap();
    let hash = HashPathSecret::new("", "changeme").hash_path("AUTH_test", Some("c"), Some("o"));
    let suffix = &hash[29..];
    assert_eq!(map.len(), 1);
    assert_eq!(map[suffix].as_str().unwrap().len(), 32);
    let r = call(
        &s,
        request("REPLICATE", &format!("/sda/0/{suffix}-abc"), &[], ""),
    )
    .await;
    assert_eq!((r.status, r.body()), (StatusCode::OK, &b"null"[..]));
    assert_eq!(
        call(&s, request("REPLICATE", "/sda/0/xyz1", &[], ""))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(&s, request("REPLICATE", "/sdz/0", &[], ""))
            .await
            .status,
        StatusCode::INSUFFICIENT_STORAGE
    );
    assert_eq!(
        call(&s, request("PATCH", OBJ, &[], "")).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );

    let (_d2, repl) = server_with(|s| s.replication_server = Some(true));
    assert_eq!(
        get(&repl, OBJ, &[]).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call(&repl, request("REPLICATE", "/sda/0", &[], ""))
            .await
            .status,
        StatusCode::OK
    );
    let (_d3, no_repl) = server_with(|s| s.replication_server = Some(false));
    assert_eq!(
        call(&no_repl, request("REPLICATE", "/sda/0", &[], ""))
            .await
            .status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let (_d4, pol) = server_with(|s| s.policies = vec![0]);
    let r = call(
        &pol,
        request("GET", OBJ, &[("X-Backend-Storage-Policy-Index", "3")], ""),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn corrupt_object_is_quarantined_by_get() {
    let (d, s) = server();
    put(&s, OBJ, ts(1), b"hello world", &[]).await;
    let hash = HashPathSecret::new("", "changeme").hash_path("AUTH_test", Some("c"), Some("o"));
    let data = d
        .path()
        .join("sda/objects/0")
        .join(&hash[29..])
        .join(&hash)
        .join(format!("{}.data", ts(1).internal()));
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[0] ^= 1;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
        .unwrap();
    let r = get(&s, OBJ, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_err(), "the body must be aborted, not completed");
    assert_eq!(get(&s, OBJ, &[]).await.status, StatusCode::NOT_FOUND);
    assert!(d
        .path()
        .join("sda/quarantined/objects")
        .join(&hash)
        .is_dir());
}

#[tokio::test]
async fn container_updates_and_async_pendings() {
    // A fake container server that records what it gets.
    let seen: Arc<Mutex<Vec<(String, String, HeaderMap)>>> = Arc::default();
    let seen2 = seen.clone();
    let listener = chttp::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = chttp::handler_fn(move |req: Request<RequestBody>| {
        let seen = seen2.clone();
        async move {
            seen.lock().unwrap().push((
                req.method().to_string(),
                req.uri().path().to_string(),
                req.headers().clone(),
            ));
            let mut r = http::Response::new(chttp::empty());
            *r.status_mut() = StatusCode::CREATED;
            r
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let srv = tokio::spawn(chttp::serve(
        listener,
        Arc::new(handler),
        async {
            let _ = stop_rx.await;
        },
        chttp::ServeOptions::new("fake-container"),
    ));

    let (d, s) = server();
    let host = addr.to_string();
    let r = put(
        &s,
        OBJ,
        ts(1),
        b"abc",
        &[
            ("X-Container-Host", &host),
            ("X-Container-Device", "sdc"),
            ("X-Container-Partition", "7"),
            ("X-Trans-Id", "tx123"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let (m, path, h) = &seen[0];
        assert_eq!((m.as_str(), path.as_str()), ("PUT", "/sdc/7/AUTH_test/c/o"));
        assert_eq!(h.get("x-size").unwrap(), "3");
        assert_eq!(h.get("x-etag").unwrap().to_str().unwrap(), md5_hex(b"abc"));
        assert_eq!(h.get("x-content-type").unwrap(), "text/plain");
        assert_eq!(
            h.get("x-timestamp").unwrap().to_str().unwrap(),
            ts(1).internal()
        );
        assert_eq!(h.get("x-trans-id").unwrap(), "tx123");
        assert_eq!(h.get("x-backend-storage-policy-index").unwrap(), "0");
    }
    assert!(pendings(d.path(), 0).is_empty());

    // POST sends the data timestamp plus meta/ctype timestamps
    let r = call(
        &s,
        request(
            "POST",
            OBJ,
            &[
                ("X-Timestamp", &ts(2).internal()),
                ("Content-Type", "image/gif"),
                ("X-Container-Host", &host),
                ("X-Container-Device", "sdc"),
                ("X-Container-Partition", "7"),
            ],
            "",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    {
        let seen = seen.lock().unwrap();
        let h = &seen[1].2;
        assert_eq!(
            h.get("x-timestamp").unwrap().to_str().unwrap(),
            ts(1).internal()
        );
        assert_eq!(
            h.get("x-meta-timestamp").unwrap().to_str().unwrap(),
            ts(2).internal()
        );
        assert_eq!(
            h.get("x-content-type-timestamp").unwrap().to_str().unwrap(),
            ts(2).internal()
        );
        assert_eq!(h.get("x-content-type").unwrap(), "image/gif");
    }

    // No container target at all: an async pending is saved.
    let r = call(
        &s,
        request("DELETE", OBJ, &[("X-Timestamp", &ts(3).internal())], ""),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let p = pendings(d.path(), 0);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].op, async_pending::AsyncOp::Delete);
    assert_eq!(
        (
            p[0].account.as_str(),
            p[0].container.as_str(),
            p[0].obj.as_str()
        ),
        ("AUTH_test", "c", "o")
    );
    assert!(p[0]
        .headers
        .iter()
        .any(|(k, v)| k == "x-timestamp" && *v == ts(3).internal()));

    // An unreachable container server: an async pending (policy 1 dir for a policy-1 object).
    let r = put(
        &s,
        "/sda/0/AUTH_test/c/p1",
        ts(4),
        b"x",
        &[
            ("X-Backend-Storage-Policy-Index", "1"),
            ("X-Container-Host", "127.0.0.1:1"),
            ("X-Container-Device", "sdc"),
            ("X-Container-Partition", "7"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let p = pendings(d.path(), 1);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].op, async_pending::AsyncOp::Put);
    assert!(p[0].headers.iter().any(|(k, v)| k == "x-size" && v == "1"));

    // X-Delete-At: the queue row goes to the queue host, the old one is deleted via async.
    let at = (Timestamp::now().secs() + 5000).to_string();
    let at2 = (Timestamp::now().secs() + 9000).to_string();
    put(
        &s,
        "/sda/0/AUTH_test/c/x",
        ts(5),
        b"x",
        &[
            ("X-Delete-At", &at),
            ("X-Delete-At-Host", &host),
            ("X-Delete-At-Device", "sdq"),
            ("X-Delete-At-Partition", "3"),
            ("X-Delete-At-Container", "1700000000"),
            ("X-Container-Host", &host),
            ("X-Container-Device", "sdc"),
            ("X-Container-Partition", "7"),
        ],
    )
    .await;
    {
        let seen = seen.lock().unwrap();
        let q = seen
            .iter()
            .find(|(_, p, _)| p.starts_with("/sdq/3/.expiring_objects/1700000000/"))
            .expect("queue PUT");
        assert_eq!(
            q.2.get("x-content-type").unwrap(),
            "text/plain;swift_expirer_bytes=1"
        );
        assert!(q.1.ends_with(&format!("{at}-AUTH_test/c/x")));
    }
    let before = pendings(d.path(), 0).len();
    call(
        &s,
        request(
            "POST",
            "/sda/0/AUTH_test/c/x",
            &[
                ("X-Timestamp", &ts(6).internal()),
                ("X-Delete-At", &at2),
                ("X-Container-Host", &host),
                ("X-Container-Device", "sdc"),
                ("X-Container-Partition", "7"),
                ("X-Delete-At-Host", &host),
                ("X-Delete-At-Device", "sdq"),
                ("X-Delete-At-Partition", "3"),
                ("X-Delete-At-Container", "1700000000"),
            ],
            "",
        ),
    )
    .await;
    let after = pendings(d.path(), 0);
    assert_eq!(after.len(), before + 1);
    assert!(after.iter().any(|p| p.account == ".expiring_objects"
        && p.op == async_pending::AsyncOp::Delete
        && p.obj.starts_with(&at)));

    let _ = stop_tx.send(());
    let _ = srv.await;
}

#[tokio::test]
async fn over_real_http() {
    let (_d, s) = server();
    let listener = chttp::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let srv = tokio::spawn(chttp::serve(
        listener,
        Arc::new(s),
        async {
            let _ = stop_rx.await;
        },
        chttp::ServeOptions::new("object-server"),
    ));
    let client = chttp::BackendClient::new(chttp::Timeouts::default());
    let send = |method: &str, headers: &[(&str, String)], body: Bytes| {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (client, addr) = (client.clone(), addr.clone());
        async move {
            client
                .request(
                    method,
                    &addr,
                    "/sda/0/AUTH_test/c/big%20obj",
                    h,
                    chttp::full(body),
                )
                .await
                .unwrap()
        }
    };
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let r = send(
        "PUT",
        &[
            ("x-timestamp", ts(1).internal()),
            ("content-type", "application/x-test".to_string()),
        ],
        Bytes::from(data.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("etag"), Some(md5_hex(&data).as_str()));
    let r = send("HEAD", &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), Some("300000"));
    let r = send("GET", &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.bytes(1 << 20).await.unwrap();
    assert_eq!(&body[..], &data[..]);
    let r = send(
        "GET",
        &[("range", "bytes=299990-".to_string())],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.bytes(1 << 20).await.unwrap()[..], &data[299_990..]);
    // SSYNC over the wire: a streamed (chunked) request, answered while it is read.
    let (tx, body) = chttp::channel(4);
    let h = obj_hash("big obj");
    let client2 = client.clone();
    let addr2 = addr.clone();
    let resp = tokio::spawn(async move {
        let mut hm = HeaderMap::new();
        hm.insert("x-backend-storage-policy-index", "0".parse().unwrap());
        let r = client2
            .request(
                Method::from_bytes(b"SSYNC").unwrap(),
                &addr2,
                "/sda/0",
                hm,
                body,
            )
            .await
            .unwrap();
        (r.status, r.bytes(1 << 20).await.unwrap())
    });
    for line in [
        ":MISSING_CHECK: START\r\n".to_string(),
        format!("{h} {}\r\n", ts(1).internal()),
        ":MISSING_CHECK: END\r\n".to_string(),
        ":UPDATES: START\r\n".to_string(),
        ":UPDATES: END\r\n".to_string(),
    ] {
        tx.send(Bytes::from(line)).await.unwrap();
    }
    drop(tx);
    let (status, body) = resp.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        &body[..],
        b"\r\n:MISSING_CHECK: START\r\n:MISSING_CHECK: END\r\n:UPDATES: START\r\n:UPDATES: END\r\n"
    );
    let _ = stop_tx.send(());
    let _ = srv.await;
}

fn obj_hash(o: &str) -> String {
    HashPathSecret::new("", "changeme").hash_path("AUTH_test", Some("c"), Some(o))
}

async fn ssync(s: &ObjectServer, body: String) -> String {
    let r = call(
        s,
        request(
            "SSYNC",
            "/sda/0",
            &[("X-Backend-Storage-Policy-Index", "0")],
            Bytes::from(body),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    String::from_utf8(r.body().to_vec()).unwrap()
}

#[tokio::test]
async fn ssync_receiver() {
    let (d, s) = server();
    put(&s, OBJ, ts(1), b"old", &[]).await;
    put(&s, "/sda/0/AUTH_test/c/same", ts(1), b"same", &[]).await;
    let (ha, hb, hs) = (obj_hash("o"), obj_hash("b"), obj_hash("same"));
    // (the client PUTs above had no container target: they left async pendings)
    let pending_before = pendings(d.path(), 0).len();
    let body = format!(
        ":MISSING_CHECK: START\r\n\
         {ha} {}\r\n\
         {hb} {} m:{:x}\r\n\
         {hs} {}\r\n\
         :MISSING_CHECK: END\r\n\
         :UPDATES: START\r\n\
         PUT /AUTH_test/c/b\r\n\
         Content-Length: 5\r\n\
         ETag: {}\r\n\
         X-Timestamp: {}\r\n\
         Content-Type: text/x-replicated\r\n\
         X-Object-Sysmeta-Foo: bar\r\n\
         X-Object-Meta-Color: blue\r\n\
         \r\n\
         hello\
         POST /AUTH_test/c/b\r\n\
         X-Timestamp: {}\r\n\
         X-Object-Meta-Color: red\r\n\
         \r\n\
         DELETE /AUTH_test/c/o\r\n\
         X-Timestamp: {}\r\n\
         \r\n\
         :UPDATES: END\r\n",
        ts(2).internal(),
        ts(1).internal(),
        ts(3).raw - ts(1).raw,
        ts(1).internal(),
        md5_hex(b"hello"),
        ts(1).internal(),
        ts(3).internal(),
        ts(4).internal(),
    );
    let got = ssync(&s, body).await;
    assert_eq!(
        got,
        format!(
            "\r\n:MISSING_CHECK: START\r\n{ha} dm\r\n{hb} dm\r\n:MISSING_CHECK: END\r\n\
             :UPDATES: START\r\n:UPDATES: END\r\n"
        )
    );
    let r = get(&s, "/sda/0/AUTH_test/c/b", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body(), b"hello");
    assert_eq!(r.h("x-object-meta-color"), Some("red"));
    assert_eq!(r.h("x-object-sysmeta-foo"), Some("bar"));
    assert_eq!(r.h("content-type"), Some("text/x-replicated"));
    assert_eq!(
        r.h("x-backend-data-timestamp"),
        Some(ts(1).internal().as_str())
    );
    let r = get(&s, OBJ, &[]).await;
    assert_eq!(
        (r.status, r.h("x-backend-timestamp")),
        (StatusCode::NOT_FOUND, Some(ts(4).internal().as_str()))
    );
    // replication writes make no container updates
    assert_eq!(pendings(d.path(), 0).len(), pending_before);

    // a failed update (bad ETag) is reported after END
    let body = format!(
        ":MISSING_CHECK: START\r\n:MISSING_CHECK: END\r\n:UPDATES: START\r\n\
         PUT /AUTH_test/c/bad\r\nContent-Length: 3\r\nETag: nope\r\nX-Timestamp: {}\r\n\r\nabc\
         :UPDATES: END\r\n",
        ts(1).internal()
    );
    let got = ssync(&s, body).await;
    assert!(
        got.ends_with(":ERROR: 500 'ERROR: With :UPDATES: 1 failures to 0 successes'\r\n"),
        "{got}"
    );
    assert_eq!(
        get(&s, "/sda/0/AUTH_test/c/bad", &[]).await.status,
        StatusCode::NOT_FOUND
    );

    // protocol errors
    let got = ssync(&s, ":BOGUS\r\n".to_string()).await;
    assert!(
        got.starts_with("\r\n:ERROR: 0 'Looking for :MISSING_CHECK: START"),
        "{got}"
    );
    let got = ssync(
        &s,
        ":MISSING_CHECK: START\r\n:MISSING_CHECK: END\r\n:UPDATES: START\r\nPUT /AUTH_test/c/x\r\n\r\n".to_string(),
    )
    .await;
    assert!(
        got.contains(":ERROR: 0 'No content-length sent for PUT"),
        "{got}"
    );
    let got = ssync(&s, ":MISSING_CHECK: START\r\n".to_string()).await;
    assert!(
        got.contains(":ERROR: 0 'Early termination for MISSING_CHECK'"),
        "{got}"
    );
    // unknown device: 507 before anything is streamed
    let r = call(&s, request("SSYNC", "/sdz/0", &[], Bytes::new())).await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE);
}

/// The expirer pops its own queue row and says so with
/// `X-Backend-Clean-Expiring-Object-Queue: no`: no queue-row delete is saved then.
#[tokio::test]
async fn expirer_delete_leaves_the_queue_to_the_expirer() {
    let (d, s) = server();
    let later = (Timestamp::now().secs() + 1000).to_string();
    let queue_deletes = || {
        pendings(d.path(), 0)
            .into_iter()
            .filter(|p| p.account == ".expiring_objects" && p.op == async_pending::AsyncOp::Delete)
            .count()
    };
    for (obj, clean, expected) in [
        ("/sda/0/AUTH_test/c/a", Some("no"), 0),
        ("/sda/0/AUTH_test/c/b", Some("yes"), 1),
        ("/sda/0/AUTH_test/c/c", None, 1),
    ] {
        put(&s, obj, ts(1), b"x", &[("X-Delete-At", &later)]).await;
        let base = queue_deletes();
        let mut h = vec![
            ("X-Timestamp", ts(2).internal()),
            ("X-If-Delete-At", later.clone()),
        ];
        if let Some(v) = clean {
            h.push(("X-Backend-Clean-Expiring-Object-Queue", v.to_string()));
        }
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = call(&s, request("DELETE", obj, &h, "")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(queue_deletes() - base, expected, "{obj}");
    }
}

/// A disk that hangs holds at most `device_concurrency` blocking threads: further requests
/// for it get 503 after `device_wait_timeout`, requests for other devices are not held up.
/// The hang is real: the object's `.data` is a FIFO, whose `open` blocks until a writer
/// comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_device_answers_503_and_spares_the_others() {
    use cairn_object::server::device_pool::DevicePoolConfig;
    use std::time::{Duration, Instant};
    let (d, s) = server_with(|s| {
        s.device_pool = DevicePoolConfig {
            concurrency: 2,
            wait_timeout: Duration::from_millis(300),
            error_backoff: Duration::from_secs(60),
        };
    });
    std::fs::create_dir(d.path().join("sdb")).unwrap();
    const OBJ_B: &str = "/sdb/0/AUTH_test/c/o";
    assert_eq!(
        put(&s, OBJ, ts(1), b"on a", &[]).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        put(&s, OBJ_B, ts(1), b"on b", &[]).await.status,
        StatusCode::CREATED
    );
    let hdir = PolicyPaths::new(d.path().join("sda"), 0).hash_dir(0, &obj_hash("stuck"));
    std::fs::create_dir_all(&hdir).unwrap();
    let fifo = hdir.join(format!("{}.data", ts(1).internal()));
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(ok.success());
    let stuck: Vec<_> = (0..2)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { get(&s, "/sda/0/AUTH_test/c/stuck", &[]).await.status })
        })
        .collect();
    let sda = s.devices().device("sda");
    let t = Instant::now();
    while sda.available_permits() != Some(0) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "GETs never got stuck"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // sda is out of slots: 503 after the wait, for reads and writes.
    let t = Instant::now();
    assert_eq!(
        get(&s, OBJ, &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        put(&s, OBJ, ts(2), b"new", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // sdb answers at once.
    let t = Instant::now();
    let r = get(&s, OBJ_B, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body(), b"on b");
    assert!(t.elapsed() < Duration::from_millis(300));
    // Unstick the disk: the stuck GETs finish (with some error) and sda serves again.
    drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
    for h in stuck {
        let status = h.await.unwrap();
        assert_ne!(status, StatusCode::OK);
    }
    let r = get(&s, OBJ, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body(), b"on a");
    assert!(!sda.is_failed());
}

/// A client that does not read a GET body holds no device slot (and no blocking thread):
/// the body is read in pool operations between which the reader waits asynchronously.
#[tokio::test]
async fn slow_reader_holds_no_device_slot() {
    use cairn_object::server::device_pool::DevicePoolConfig;
    use std::time::Duration;
    let (_d, s) = server_with(|s| {
        s.device_pool = DevicePoolConfig {
            concurrency: 2,
            ..DevicePoolConfig::default()
        };
    });
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let its = ts(1).internal();
    let len = data.len().to_string();
    let r = call(
        &s,
        request(
            "PUT",
            OBJ,
            &[
                ("X-Timestamp", its.as_str()),
                ("Content-Type", "text/plain"),
                ("Content-Length", len.as_str()),
            ],
            data.clone(),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Three GETs whose bodies nobody reads yet (more than the device's slots).
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let resp = s.handle(request("GET", OBJ, &[], Bytes::new())).await;
        assert_eq!(resp.status(), StatusCode::OK);
        bodies.push(resp.into_body());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sda = s.devices().device("sda");
    assert_eq!(sda.available_permits(), Some(2));
    assert_eq!(
        get(&s, OBJ, &[("Range", "bytes=0-9")]).await.body(),
        &data[..10]
    );
    for b in bodies {
        assert_eq!(&b.collect().await.unwrap().to_bytes()[..], &data[..]);
    }
}
