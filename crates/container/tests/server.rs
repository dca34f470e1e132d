//! Container server handler tests (`PROTOCOLS.md`, "Container server"), driven through
//! `Handler::handle`, plus the account update against a loopback fake account server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cairn_common::http::{self as chttp, Handler, RequestBody};
use cairn_common::{HashPathSecret, Timestamp};
use cairn_container::{ContainerServer, ContainerServerSettings};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tempfile::TempDir;

const CONT: &str = "/sda/0/AUTH_test/c";

fn server() -> (TempDir, ContainerServer) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sda")).unwrap();
    let mut s = ContainerServerSettings::new(dir.path());
    s.policies = vec![0, 1];
    (
        dir,
        ContainerServer::new(s, HashPathSecret::new("", "changeme")),
    )
}

fn ts(s: u64) -> String {
    Timestamp::from_secs(1_700_000_000 + s).internal()
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<RequestBody> {
    let mut b = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(RequestBody::from(Bytes::new())).unwrap()
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn call(s: &ContainerServer, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let resp = s.handle(request(method, path, headers)).await;
    let (parts, body) = resp.into_parts();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body: body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default(),
    }
}

async fn put_obj(s: &ContainerServer, name: &str, t: u64, size: u64) -> Resp {
    let t = ts(t);
    let size = size.to_string();
    call(
        s,
        "PUT",
        &format!("{CONT}/{name}"),
        &[
            ("X-Timestamp", &t),
            ("X-Size", &size),
            ("X-Content-Type", "text/plain"),
            ("X-Etag", "d41d8cd98f00b204e9800998ecf8427e"),
        ],
    )
    .await
}

#[tokio::test]
async fn container_lifecycle() {
    let (_d, s) = server();
    // nothing yet
    assert_eq!(
        call(&s, "HEAD", CONT, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&s, "GET", CONT, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(put_obj(&s, "o", 1, 3).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        call(&s, "PUT", CONT, &[]).await.status,
        StatusCode::BAD_REQUEST,
        "no X-Timestamp"
    );
    // create
    let r = call(
        &s,
        "PUT",
        CONT,
        &[
            ("X-Timestamp", &ts(1)),
            ("X-Container-Meta-Color", "blue"),
            ("X-Container-Read", ".r:*"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.h("x-backend-storage-policy-index"), Some("0"));
    let r = call(&s, "PUT", CONT, &[("X-Timestamp", &ts(2))]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // policy conflict
    let r = call(
        &s,
        "PUT",
        CONT,
        &[
            ("X-Timestamp", &ts(3)),
            ("X-Backend-Storage-Policy-Index", "1"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.h("x-backend-storage-policy-index"), Some("0"));
    // unknown policy
    let r = call(
        &s,
        "PUT",
        CONT,
        &[
            ("X-Timestamp", &ts(3)),
            ("X-Backend-Storage-Policy-Index", "7"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // object rows
    assert_eq!(put_obj(&s, "a", 4, 10).await.status, StatusCode::CREATED);
    assert_eq!(put_obj(&s, "b/c", 4, 20).await.status, StatusCode::CREATED);
    let r = call(&s, "HEAD", CONT, &[]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.h("x-container-object-count"), Some("2"));
    assert_eq!(r.h("x-container-bytes-used"), Some("30"));
    assert_eq!(r.h("x-put-timestamp"), Some(ts(2).as_str()));
    assert_eq!(r.h("x-backend-put-timestamp"), Some(ts(2).as_str()));
    assert_eq!(r.h("x-container-meta-color"), Some("blue"));
    assert_eq!(r.h("x-container-read"), Some(".r:*"));
    assert_eq!(r.h("last-modified"), Some("Tue, 14 Nov 2023 22:13:22 GMT"));
    assert_eq!(r.h("content-type"), Some("text/plain; charset=utf-8"));

    // listings
    let r = call(&s, "GET", CONT, &[]).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "a\nb/c\n"));
    let r = call(&s, "GET", &format!("{CONT}?delimiter=/&format=json"), &[]).await;
    assert_eq!(r.h("content-type"), Some("application/json; charset=utf-8"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v[0]["name"], "a");
    assert_eq!(v[0]["bytes"], 10);
    assert_eq!(v[0]["last_modified"], "2023-11-14T22:13:24.000000");
    assert_eq!(v[1]["subdir"], "b/");
    let r = call(&s, "GET", CONT, &[("Accept", "application/xml")]).await;
    assert!(r.text().starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<container name=\"c\"><object><name>a</name>"), "{}", r.text());
    let r = call(&s, "GET", &format!("{CONT}?prefix=zzz"), &[]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = call(&s, "GET", &format!("{CONT}?limit=10001"), &[]).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = call(&s, "GET", &format!("{CONT}?reverse=true&limit=1"), &[]).await;
    assert_eq!(r.text(), "b/c\n");

    // POST metadata; remove via X-Remove
    let r = call(
        &s,
        "POST",
        CONT,
        &[
            ("X-Timestamp", &ts(5)),
            ("X-Remove-Container-Meta-Color", "x"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        call(&s, "HEAD", CONT, &[])
            .await
            .h("x-container-meta-color"),
        None
    );

    // DELETE: not empty → 409
    let r = call(&s, "DELETE", CONT, &[("X-Timestamp", &ts(6))]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    for n in ["a", "b/c"] {
        let r = call(
            &s,
            "DELETE",
            &format!("{CONT}/{n}"),
            &[("X-Timestamp", &ts(6))],
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    let r = call(&s, "DELETE", CONT, &[("X-Timestamp", &ts(7))]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = call(&s, "HEAD", CONT, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.h("x-backend-delete-timestamp"), Some(ts(7).as_str()));
    assert_eq!(r.h("x-container-object-count"), None);
    assert_eq!(
        call(&s, "POST", CONT, &[("X-Timestamp", &ts(8))])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = call(&s, "DELETE", CONT, &[("X-Timestamp", &ts(8))]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // an older PUT does not revive it; a newer one does (201, new policy allowed)
    let r = call(&s, "PUT", CONT, &[("X-Timestamp", &ts(6))]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = call(
        &s,
        "PUT",
        CONT,
        &[
            ("X-Timestamp", &ts(9)),
            ("X-Backend-Storage-Policy-Index", "1"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.h("x-backend-storage-policy-index"), Some("1"));
    let r = call(&s, "HEAD", CONT, &[]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.h("x-container-object-count"), Some("0"));
}

#[tokio::test]
async fn post_meta_updates_and_limits() {
    let (_d, s) = server();
    call(&s, "PUT", CONT, &[("X-Timestamp", &ts(1))]).await;
    let r = call(
        &s,
        "POST",
        CONT,
        &[("X-Timestamp", &ts(2)), ("X-Container-Meta-A", "1")],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // an older POST does not win per key
    call(
        &s,
        "POST",
        CONT,
        &[("X-Timestamp", &ts(1)), ("X-Container-Meta-A", "old")],
    )
    .await;
    assert_eq!(
        call(&s, "HEAD", CONT, &[]).await.h("x-container-meta-a"),
        Some("1")
    );
    let long = "v".repeat(257);
    let r = call(
        &s,
        "POST",
        CONT,
        &[("X-Timestamp", &ts(3)), ("X-Container-Meta-B", &long)],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // overall size is checked over the merged metadata
    for i in 0..16 {
        let k = format!("X-Container-Meta-K{i:02}");
        let v = "x".repeat(256);
        let r = call(&s, "POST", CONT, &[("X-Timestamp", &ts(4 + i)), (&k, &v)]).await;
        if i < 15 {
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{i}");
        } else {
            assert_eq!(r.status, StatusCode::BAD_REQUEST);
            assert_eq!(r.text(), "Total metadata too large; max 4096");
        }
    }
}

#[tokio::test]
async fn autocreate_for_dot_accounts_and_post_timestamps() {
    let (_d, s) = server();
    let t = ts(1);
    let r = call(
        &s,
        "PUT",
        "/sda/0/.expiring_objects/1700000000/1700006400-a/c/o",
        &[
            ("X-Timestamp", &t),
            ("X-Size", "0"),
            ("X-Content-Type", "text/plain;swift_expirer_bytes=3"),
            ("X-Etag", "d41d8cd98f00b204e9800998ecf8427e"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = call(
        &s,
        "GET",
        "/sda/0/.expiring_objects/1700000000?format=json",
        &[],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v[0]["name"], "1700006400-a/c/o");

    // object POST → content-type and meta timestamps
    call(&s, "PUT", CONT, &[("X-Timestamp", &ts(1))]).await;
    put_obj(&s, "o", 2, 5).await;
    let r = call(
        &s,
        "PUT",
        &format!("{CONT}/o"),
        &[
            ("X-Timestamp", &ts(2)),
            ("X-Size", "5"),
            ("X-Content-Type", "image/png"),
            ("X-Etag", "d41d8cd98f00b204e9800998ecf8427e"),
            ("X-Content-Type-Timestamp", &ts(3)),
            ("X-Meta-Timestamp", &ts(4)),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = call(&s, "GET", &format!("{CONT}?format=json"), &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v[0]["content_type"], "image/png");
    assert_eq!(v[0]["last_modified"], "2023-11-14T22:13:24.000000");
}

#[tokio::test]
async fn bad_requests() {
    let (_d, s) = server();
    assert_eq!(
        call(&s, "PUT", "/sda/x/a/c", &[("X-Timestamp", &ts(1))])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(&s, "PUT", "/sdz/0/a/c", &[("X-Timestamp", &ts(1))])
            .await
            .status,
        StatusCode::INSUFFICIENT_STORAGE
    );
    assert_eq!(
        call(&s, "PUT", "/sda/0/a", &[("X-Timestamp", &ts(1))])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(&s, "PATCH", CONT, &[]).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    call(&s, "PUT", CONT, &[("X-Timestamp", &ts(1))]).await;
    let r = call(&s, "PUT", &format!("{CONT}/o"), &[("X-Timestamp", &ts(1))]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "missing X-Size");
    let r = call(&s, "GET", CONT, &[("Accept", "image/png")]).await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn account_update_is_sent_and_404_propagates() {
    let seen: Arc<Mutex<Vec<(String, HeaderMap)>>> = Arc::default();
    let status = Arc::new(Mutex::new(StatusCode::CREATED));
    let (seen2, status2) = (seen.clone(), status.clone());
    let listener = chttp::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = chttp::handler_fn(move |req: Request<RequestBody>| {
        let (seen, status) = (seen2.clone(), status2.clone());
        async move {
            seen.lock().unwrap().push((
                format!("{} {}", req.method(), req.uri().path()),
                req.headers().clone(),
            ));
            let mut r = http::Response::new(chttp::empty());
            *r.status_mut() = *status.lock().unwrap();
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
        chttp::ServeOptions::new("fake-account"),
    ));
    let (_d, s) = server();
    let host = addr.to_string();
    let acct = [
        ("X-Account-Host", host.as_str()),
        ("X-Account-Partition", "5"),
        ("X-Account-Device", "sdx"),
    ];
    let t1 = ts(1);
    let mut h = vec![("X-Timestamp", t1.as_str())];
    h.extend_from_slice(&acct);
    let r = call(&s, "PUT", CONT, &h).await;
    assert_eq!(r.status, StatusCode::CREATED);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, "PUT /sdx/5/AUTH_test/c");
        let g = |k: &str| seen[0].1.get(k).unwrap().to_str().unwrap().to_string();
        assert_eq!(g("x-put-timestamp"), ts(1));
        assert_eq!(g("x-delete-timestamp"), "0000000000.00000");
        assert_eq!(g("x-object-count"), "0");
        assert_eq!(g("x-backend-storage-policy-index"), "0");
    }
    *status.lock().unwrap() = StatusCode::NOT_FOUND;
    let t2 = ts(2);
    let mut h = vec![("X-Timestamp", t2.as_str())];
    h.extend_from_slice(&acct);
    assert_eq!(
        call(&s, "PUT", CONT, &h).await.status,
        StatusCode::NOT_FOUND
    );
    // mismatched host/device lists
    let t3 = ts(3);
    let bad = [
        ("X-Timestamp", t3.as_str()),
        ("X-Account-Host", "1.2.3.4:1,5.6.7.8:2"),
        ("X-Account-Partition", "5"),
        ("X-Account-Device", "sdx"),
    ];
    assert_eq!(
        call(&s, "PUT", CONT, &bad).await.status,
        StatusCode::BAD_REQUEST
    );
    let _ = stop_tx.send(());
    let _ = srv.await;
}

async fn call_body(
    s: &ContainerServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Resp {
    let mut b = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = s.handle(b.body(RequestBody::from(body)).unwrap()).await;
    let (parts, body) = resp.into_parts();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body: body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default(),
    }
}

#[tokio::test]
async fn replicate_rpc_and_db_upload() {
    use sha2::{Digest, Sha256};
    let (d, s) = server();
    std::fs::create_dir(d.path().join("sdb")).unwrap();
    call(&s, "PUT", CONT, &[("X-Timestamp", &ts(1))]).await;
    put_obj(&s, "o1", 2, 5).await;
    let hash = HashPathSecret::new("", "changeme").hash_path("AUTH_test", Some("c"), None);
    let db = cairn_db::db_path(d.path(), "sda", "containers", 0, &hash);
    let broker = cairn_db::ContainerBroker::open(&db).unwrap();
    let info = broker.get_replication_info().unwrap();

    // sync against a device without the DB → 404
    let sync = serde_json::json!([
        "sync",
        info.max_row,
        info.hash,
        info.id,
        info.created_at,
        info.put_timestamp,
        info.delete_timestamp,
        info.metadata
    ]);
    let r = call_body(
        &s,
        "REPLICATE",
        &format!("/sdb/0/{hash}"),
        &[],
        sync.to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call_body(
        &s,
        "REPLICATE",
        &format!("/sda/0/{hash}"),
        &[],
        sync.to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.h("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["hash"], info.hash.as_str());
    let r = call_body(
        &s,
        "REPLICATE",
        &format!("/sda/0/{hash}"),
        &[],
        b"not json".to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call_body(&s, "REPLICATE", "/sda/0/xyz", &[], b"[]".to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // whole-DB upload to sdb, then complete_rsync
    let snap = d.path().join("snap.db");
    broker.backup_to(&snap).unwrap();
    let bytes = std::fs::read(&snap).unwrap();
    let sum: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let r = call_body(
        &s,
        "PUT",
        &format!("/sdb/tmp/{}", info.id),
        &[("X-Backend-Db-Checksum", "00")],
        bytes.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = call_body(
        &s,
        "PUT",
        "/sdb/tmp/garbage",
        &[],
        b"not a database".to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!d.path().join("sdb/tmp/garbage").exists());
    let r = call_body(
        &s,
        "PUT",
        &format!("/sdb/tmp/{}", info.id),
        &[("X-Backend-Db-Checksum", &sum)],
        bytes,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let rpc = serde_json::json!(["complete_rsync", info.id]);
    let r = call_body(
        &s,
        "REPLICATE",
        &format!("/sdb/0/{hash}"),
        &[],
        rpc.to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // the copy serves listings now
    let r = call(&s, "GET", "/sdb/0/AUTH_test/c", &[]).await;
    assert_eq!(r.text(), "o1\n");
}

/// `fallocate_reserve = "100%"`: every write is refused with 507 and leaves the device
/// untouched; reads and DELETEs still work (Swift refuses PUT, POST and REPLICATE only).
#[tokio::test]
async fn writes_below_fallocate_reserve_are_refused() {
    use cairn_common::fs::FallocateReserve;
    let (d, open) = server();
    let mut settings = ContainerServerSettings::new(d.path());
    settings.fallocate_reserve = FallocateReserve::Percent(100.0);
    let s = ContainerServer::new(settings, HashPathSecret::new("", "changeme"));
    let refused = StatusCode::INSUFFICIENT_STORAGE;
    let r = call(&s, "PUT", CONT, &[("X-Timestamp", &ts(1))]).await;
    assert_eq!(r.status, refused);
    assert!(r.text().contains("Drive: sda"), "{}", r.text());
    let auto = [
        ("X-Timestamp", ts(2)),
        ("X-Size", "1".into()),
        ("X-Content-Type", "text/plain".into()),
        ("X-Etag", "d41d8cd98f00b204e9800998ecf8427e".into()),
        ("X-Backend-Storage-Policy-Index", "0".into()),
    ];
    let auto: Vec<(&str, &str)> = auto.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = call(&s, "PUT", "/sda/0/.expiring/c/o", &auto).await;
    assert_eq!(r.status, refused);
    let meta = [
        ("X-Timestamp", ts(3)),
        ("X-Container-Meta-Color", "blue".into()),
    ];
    let meta: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(call(&s, "POST", CONT, &meta).await.status, refused);
    let hash = HashPathSecret::new("", "changeme").hash_path("AUTH_test", Some("c"), None);
    let sync = serde_json::json!(["sync", -1, "h", "remote", ts(1), ts(1), "0", ""]);
    let path = format!("/sda/0/{hash}");
    let r = call_body(&s, "REPLICATE", &path, &[], sync.to_string().into_bytes()).await;
    assert_eq!(r.status, refused);
    let r = call_body(&s, "PUT", "/sda/tmp/up.db", &[], b"x".to_vec()).await;
    assert_eq!(r.status, refused);
    let sda = d.path().join("sda");
    assert_eq!(
        std::fs::read_dir(&sda).unwrap().count(),
        0,
        "nothing written"
    );
    assert_eq!(
        call(&s, "HEAD", CONT, &[]).await.status,
        StatusCode::NOT_FOUND
    );

    // An existing container keeps its rows and metadata when writes are refused; a
    // DELETE (which frees space) is not refused.
    assert_eq!(
        call(&open, "PUT", CONT, &[("X-Timestamp", &ts(1))])
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(call(&s, "POST", CONT, &meta).await.status, refused);
    assert_eq!(put_obj(&s, "o", 4, 3).await.status, refused);
    let r = call(&s, "HEAD", CONT, &[]).await;
    assert_eq!(r.h("x-container-meta-color"), None);
    assert_eq!(r.h("x-container-object-count"), Some("0"));
    let r = call(&s, "DELETE", CONT, &[("X-Timestamp", &ts(5))]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}
