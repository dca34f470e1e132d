//! Account server handler tests (`PROTOCOLS.md`, "Account server"; Swift's
//! `swift/account/server.py`), driven through `Handler::handle`.

use bytes::Bytes;
use cairn_account::{AccountServer, AccountServerSettings};
use cairn_common::http::{Handler, RequestBody};
use cairn_common::{HashPathSecret, Timestamp};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tempfile::TempDir;

const ACCT: &str = "/sda/0/AUTH_test";

fn server_with(f: impl FnOnce(&mut AccountServerSettings)) -> (TempDir, AccountServer) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sda")).unwrap();
    let mut s = AccountServerSettings::new(dir.path());
    s.policies = vec![(0, "gold".into()), (1, "silver".into())];
    f(&mut s);
    (
        dir,
        AccountServer::new(s, HashPathSecret::new("", "changeme")),
    )
}

fn server() -> (TempDir, AccountServer) {
    server_with(|_| {})
}

fn ts(s: u64) -> String {
    Timestamp::from_secs(1_700_000_000 + s).internal()
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
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

async fn call_body(
    s: &AccountServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
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

async fn call(s: &AccountServer, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    call_body(s, method, path, headers, Bytes::new()).await
}

async fn put_account(s: &AccountServer, t: u64) -> Resp {
    call(s, "PUT", ACCT, &[("X-Timestamp", &ts(t))]).await
}

/// A container report as the container server/updater sends it.
#[allow(clippy::too_many_arguments)]
async fn report(
    s: &AccountServer,
    path: &str,
    put: u64,
    delete: Option<u64>,
    objects: i64,
    bytes: i64,
    policy: u32,
    extra: &[(&str, &str)],
) -> Resp {
    let put = ts(put);
    let delete = delete.map(ts).unwrap_or_else(|| "0".into());
    let (o, b, p) = (objects.to_string(), bytes.to_string(), policy.to_string());
    let mut h = vec![
        ("X-Put-Timestamp", put.as_str()),
        ("X-Delete-Timestamp", delete.as_str()),
        ("X-Object-Count", o.as_str()),
        ("X-Bytes-Used", b.as_str()),
        ("X-Backend-Storage-Policy-Index", p.as_str()),
    ];
    h.extend_from_slice(extra);
    call(s, "PUT", path, &h).await
}

#[tokio::test]
async fn account_put_created_accepted_and_metadata() {
    let (_d, s) = server();
    let r = call(
        &s,
        "PUT",
        ACCT,
        &[("X-Timestamp", &ts(1)), ("X-Account-Meta-Color", "blue")],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = call(
        &s,
        "PUT",
        ACCT,
        &[("X-Timestamp", &ts(2)), ("X-Account-Meta-Shape", "round")],
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = call(&s, "HEAD", ACCT, &[]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.h("x-account-meta-color"), Some("blue"));
    assert_eq!(r.h("x-account-meta-shape"), Some("round"));
    assert_eq!(
        r.h("x-put-timestamp"),
        Some(Timestamp::from_secs(1_700_000_002).normal().as_str())
    );
    assert_eq!(r.h("x-account-container-count"), Some("0"));
    // missing/bad timestamp
    assert_eq!(
        call(&s, "PUT", ACCT, &[]).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(&s, "PUT", ACCT, &[("X-Timestamp", "soon")])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    // too much metadata
    let long = "x".repeat(300);
    let r = call(
        &s,
        "PUT",
        ACCT,
        &[("X-Timestamp", &ts(3)), ("X-Account-Meta-Big", &long)],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn delete_then_put_is_forbidden() {
    let (_d, s) = server();
    // missing account
    assert_eq!(
        call(&s, "DELETE", ACCT, &[("X-Timestamp", &ts(1))])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(put_account(&s, 1).await.status, StatusCode::CREATED);
    assert_eq!(
        call(&s, "DELETE", ACCT, &[]).await.status,
        StatusCode::BAD_REQUEST
    );
    let r = call(&s, "DELETE", ACCT, &[("X-Timestamp", &ts(2))]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.h("x-account-status"), Some("Deleted"));
    let r = call(&s, "DELETE", ACCT, &[("X-Timestamp", &ts(3))]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.h("x-account-status"), Some("Deleted"));
    let r = put_account(&s, 4).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.text(), "Recently deleted");
    assert_eq!(r.h("x-account-status"), Some("Deleted"));
    for m in ["HEAD", "GET"] {
        let r = call(&s, m, ACCT, &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{m}");
        assert_eq!(r.h("x-account-status"), Some("Deleted"), "{m}");
    }
    let r = call(&s, "POST", ACCT, &[("X-Timestamp", &ts(5))]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // container reports are refused unless the updater overrides
    let r = report(&s, &format!("{ACCT}/c"), 6, None, 1, 1, 0, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = report(
        &s,
        &format!("{ACCT}/c"),
        6,
        None,
        1,
        1,
        0,
        &[("X-Account-Override-Deleted", "yes")],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn put_conflict_when_still_deleted() {
    // A replica learned a newer delete timestamp through replication (no DELETED
    // status): a PUT older than that delete leaves the account deleted → 409.
    let (_d, s) = server();
    assert_eq!(put_account(&s, 1).await.status, StatusCode::CREATED);
    let hash = HashPathSecret::new("", "changeme").hash_path("AUTH_test", None, None);
    let body = serde_json::json!(["sync", -1, "x", "remote-id", ts(1), ts(1), ts(10), ""]);
    let r = call_body(
        &s,
        "REPLICATE",
        &format!("/sda/0/{hash}"),
        &[("Content-Type", "application/json")],
        Bytes::from(body.to_string()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["delete_timestamp"], ts(10));
    assert_eq!(
        call(&s, "HEAD", ACCT, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(put_account(&s, 5).await.status, StatusCode::CONFLICT);
    // a newer PUT revives it: 201 (it was deleted)
    assert_eq!(put_account(&s, 11).await.status, StatusCode::CREATED);
    assert_eq!(
        call(&s, "HEAD", ACCT, &[]).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn container_reports_and_policy_headers() {
    let (_d, s) = server();
    // no account DB yet
    let r = report(&s, &format!("{ACCT}/c1"), 1, None, 1, 10, 0, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(put_account(&s, 1).await.status, StatusCode::CREATED);
    for (c, objects, bytes, policy) in [("c1", 2, 20, 0), ("c2", 3, 30, 1), ("c3", 4, 40, 1)] {
        let r = report(
            &s,
            &format!("{ACCT}/{c}"),
            2,
            None,
            objects,
            bytes,
            policy,
            &[],
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{c}");
    }
    let r = call(&s, "HEAD", ACCT, &[]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.h("x-account-container-count"), Some("3"));
    assert_eq!(r.h("x-account-object-count"), Some("9"));
    assert_eq!(r.h("x-account-bytes-used"), Some("90"));
    assert_eq!(
        r.h("x-account-storage-policy-gold-container-count"),
        Some("1")
    );
    assert_eq!(r.h("x-account-storage-policy-gold-object-count"), Some("2"));
    assert_eq!(r.h("x-account-storage-policy-gold-bytes-used"), Some("20"));
    assert_eq!(
        r.h("x-account-storage-policy-silver-container-count"),
        Some("2")
    );
    assert_eq!(
        r.h("x-account-storage-policy-silver-object-count"),
        Some("7")
    );
    assert_eq!(
        r.h("x-account-storage-policy-silver-bytes-used"),
        Some("70")
    );
    assert_eq!(
        r.h("x-timestamp"),
        Some(
            Timestamp::parse(r.h("x-timestamp").unwrap())
                .unwrap()
                .normal()
                .as_str()
        )
    );
    assert_eq!(r.h("content-type"), Some("text/plain; charset=utf-8"));
    // a delete report: 204, the container leaves the listing and the counts
    let r = report(&s, &format!("{ACCT}/c3"), 2, Some(3), 0, 0, 1, &[]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = call(&s, "HEAD", ACCT, &[]).await;
    assert_eq!(r.h("x-account-container-count"), Some("2"));
    assert_eq!(r.h("x-account-object-count"), Some("5"));
    assert_eq!(
        r.h("x-account-storage-policy-silver-container-count"),
        Some("1")
    );
    let r = call(&s, "GET", ACCT, &[]).await;
    assert_eq!(r.text(), "c1\nc2\n");
    // bad reports
    for (name, value) in [
        ("X-Put-Timestamp", "bogus"),
        ("X-Object-Count", "many"),
        ("X-Backend-Storage-Policy-Index", "x"),
    ] {
        let put = ts(4);
        let mut h = vec![
            ("X-Put-Timestamp", put.as_str()),
            ("X-Delete-Timestamp", "0"),
            ("X-Object-Count", "0"),
            ("X-Bytes-Used", "0"),
        ];
        h.retain(|(k, _)| *k != name);
        h.push((name, value));
        let r = call(&s, "PUT", &format!("{ACCT}/c9"), &h).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name}");
    }
    let r = call(
        &s,
        "PUT",
        &format!("{ACCT}/c9"),
        &[("X-Put-Timestamp", &ts(4))],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn auto_create_accounts() {
    let (_d, s) = server();
    let r = report(&s, "/sda/0/.expiring_objects/c1", 1, None, 1, 5, 0, &[]).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = call(&s, "GET", "/sda/0/.expiring_objects?format=json", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()[0]["name"], "c1");
    assert_eq!(r.json()[0]["count"], 1);
    // another prefix: no auto-create
    let (_d, s) = server_with(|s| s.auto_create_account_prefix = "_".into());
    let r = report(&s, "/sda/0/.expiring_objects/c1", 1, None, 1, 5, 0, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = report(&s, "/sda/0/_x/c1", 1, None, 1, 5, 0, &[]).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn post_updates_metadata() {
    let (_d, s) = server();
    let r = call(&s, "POST", ACCT, &[("X-Timestamp", &ts(1))]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.h("x-account-status").is_none());
    put_account(&s, 1).await;
    let r = call(
        &s,
        "POST",
        ACCT,
        &[
            ("X-Timestamp", &ts(2)),
            ("X-Account-Meta-A", "1"),
            ("X-Account-Sysmeta-B", "2"),
            ("X-Account-Meta-Temp-URL-Key", "secret"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = call(
        &s,
        "POST",
        ACCT,
        &[("X-Timestamp", &ts(3)), ("X-Remove-Account-Meta-A", "x")],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // an older POST does not win
    let r = call(
        &s,
        "POST",
        ACCT,
        &[("X-Timestamp", &ts(2)), ("X-Account-Sysmeta-B", "old")],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = call(&s, "HEAD", ACCT, &[]).await;
    assert!(r.h("x-account-meta-a").is_none());
    assert_eq!(r.h("x-account-sysmeta-b"), Some("2"));
    assert_eq!(r.h("x-account-meta-temp-url-key"), Some("secret"));
    assert_eq!(
        call(&s, "POST", ACCT, &[]).await.status,
        StatusCode::BAD_REQUEST
    );
    let r = call(
        &s,
        "POST",
        ACCT,
        &[("X-Timestamp", &ts(4)), ("X-Account-Meta-", "v")],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(&s, "POST", &format!("{ACCT}/c"), &[("X-Timestamp", &ts(4))]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

async fn listing_fixture() -> (TempDir, AccountServer) {
    let (d, s) = server();
    put_account(&s, 1).await;
    for (i, c) in ["a", "b", "c-1", "c-2", "d", "é"].iter().enumerate() {
        let r = report(
            &s,
            &format!("{ACCT}/{}", cairn_common::http::quote(c)),
            10 + i as u64,
            None,
            i as i64,
            100 * i as i64,
            0,
            &[],
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{c}");
    }
    (d, s)
}

#[tokio::test]
async fn listings_in_every_format() {
    let (_d, s) = listing_fixture().await;
    let r = call(&s, "GET", ACCT, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "a\nb\nc-1\nc-2\nd\né\n");
    assert_eq!(r.h("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.h("x-account-container-count"), Some("6"));

    let r = call(&s, "GET", &format!("{ACCT}?format=json"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.h("content-type"), Some("application/json; charset=utf-8"));
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 6);
    assert_eq!(v[1]["name"], "b");
    assert_eq!(v[1]["count"], 1);
    assert_eq!(v[1]["bytes"], 100);
    assert_eq!(
        v[1]["last_modified"],
        Timestamp::from_secs(1_700_000_011).iso_listing()
    );
    assert_eq!(v[5]["name"], "é");

    let r = call(&s, "GET", &format!("{ACCT}?format=xml&limit=1"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.h("content-type"), Some("application/xml; charset=utf-8"));
    assert_eq!(
        r.text(),
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<account name=\"AUTH_test\">\n\
             <container><name>a</name><count>0</count><bytes>0</bytes>\
             <last_modified>{}</last_modified></container>\n</account>",
            Timestamp::from_secs(1_700_000_010).iso_listing()
        )
    );

    // Accept negotiation
    let r = call(&s, "GET", ACCT, &[("Accept", "application/json")]).await;
    assert_eq!(r.h("content-type"), Some("application/json; charset=utf-8"));
    let r = call(&s, "GET", ACCT, &[("Accept", "text/xml")]).await;
    assert_eq!(r.h("content-type"), Some("text/xml; charset=utf-8"));
    assert!(r.text().starts_with("<?xml"));
    let r = call(&s, "GET", ACCT, &[("Accept", "image/png")]).await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
    let r = call(&s, "HEAD", ACCT, &[("Accept", "application/json")]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.h("content-type"), Some("application/json; charset=utf-8"));
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn listing_parameters() {
    let (_d, s) = listing_fixture().await;
    let get = |q: &'static str| {
        let s = s.clone();
        async move { call(&s, "GET", &format!("{ACCT}?{q}"), &[]).await }
    };
    assert_eq!(get("limit=2").await.text(), "a\nb\n");
    assert_eq!(get("marker=b").await.text(), "c-1\nc-2\nd\né\n");
    assert_eq!(get("marker=b&end_marker=d").await.text(), "c-1\nc-2\n");
    assert_eq!(get("prefix=c-").await.text(), "c-1\nc-2\n");
    assert_eq!(get("delimiter=-").await.text(), "a\nb\nc-\nd\né\n");
    assert_eq!(get("reverse=on&limit=2").await.text(), "é\nd\n");
    assert_eq!(get("reverse=true&marker=c-1").await.text(), "b\na\n");
    assert_eq!(get("prefix=%C3%A9").await.text(), "é\n");
    let v = get("delimiter=-&format=json&prefix=c").await.json();
    assert_eq!(v, serde_json::json!([{"subdir": "c-"}]));
    // limit too large, bad delimiter, bad UTF-8 in a parameter
    let r = get("limit=10001").await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.text(), "Maximum limit is 10000");
    assert_eq!(get("limit=x").await.text().lines().count(), 6);
    assert_eq!(
        get("delimiter=ab").await.status,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        get("prefix=%FF").await.status,
        StatusCode::PRECONDITION_FAILED
    );
    // empty listings: 204 in plain text, 200 with a body otherwise
    let r = get("prefix=zzz").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    let r = get("prefix=zzz&format=json").await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "[]"));
    let r = get("prefix=zzz&format=xml").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("<account name=\"AUTH_test\">"));
}

#[tokio::test]
async fn missing_account_and_bad_requests() {
    let (_d, s) = server();
    for m in ["HEAD", "GET"] {
        let r = call(&s, m, ACCT, &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{m}");
        assert!(r.h("x-account-status").is_none(), "{m}");
    }
    // 507: unknown device
    for (m, h) in [
        ("HEAD", vec![]),
        ("GET", vec![]),
        ("PUT", vec![("X-Timestamp", ts(1))]),
        ("POST", vec![("X-Timestamp", ts(1))]),
        ("DELETE", vec![("X-Timestamp", ts(1))]),
    ] {
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = call(&s, m, "/sdx/0/AUTH_test", &h).await;
        assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE, "{m}");
    }
    let r = report(&s, "/sdx/0/AUTH_test/c", 1, None, 0, 0, 0, &[]).await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE);
    // 400: bad paths
    for p in ["/sda/x/AUTH_test", "/sda/0", "/sda/0/a/c/o"] {
        let r = call(&s, "HEAD", p, &[]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{p}");
    }
    let r = call(&s, "GET", &format!("{ACCT}/c"), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(
        &s,
        "DELETE",
        &format!("{ACCT}/c"),
        &[("X-Timestamp", &ts(1))],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // 412: not UTF-8
    let r = call(&s, "HEAD", "/sda/0/AUTH_%FF", &[]).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.text(), "Invalid UTF8 or contains NULL");
    // 405
    let r = call(&s, "PATCH", ACCT, &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn replication_server_modes() {
    let (_d, s) = server_with(|s| s.replication_server = Some(true));
    assert_eq!(
        put_account(&s, 1).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let hash = HashPathSecret::new("", "changeme").hash_path("AUTH_test", None, None);
    let body =
        Bytes::from(serde_json::json!(["sync", -1, "h", "id", "0", "0", "0", ""]).to_string());
    let r = call_body(
        &s,
        "REPLICATE",
        &format!("/sda/0/{hash}"),
        &[],
        body.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND); // no DB
    let (_d, s) = server_with(|s| s.replication_server = Some(false));
    assert_eq!(put_account(&s, 1).await.status, StatusCode::CREATED);
    let r = call_body(&s, "REPLICATE", &format!("/sda/0/{hash}"), &[], body).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn replicate_rpc_and_upload() {
    let (dir, s) = server();
    put_account(&s, 1).await;
    report(&s, &format!("{ACCT}/c"), 2, None, 1, 1, 0, &[]).await;
    let hash = HashPathSecret::new("", "changeme").hash_path("AUTH_test", None, None);
    let path = format!("/sda/0/{hash}");
    let sync = serde_json::json!(["sync", -1, "h", "remote", ts(1), ts(1), "0", ""]);
    let r = call_body(&s, "REPLICATE", &path, &[], Bytes::from(sync.to_string())).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.h("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["point"], -1);
    assert_eq!(v["count"], 1);
    let rows = serde_json::json!(["merge_items", [{
        "name": "c2", "put_timestamp": ts(3), "delete_timestamp": "0",
        "object_count": 4, "bytes_used": 5, "deleted": 0, "storage_policy_index": 0,
        "ROWID": 7,
    }], "remote"]);
    let r = call_body(&s, "REPLICATE", &path, &[], Bytes::from(rows.to_string())).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = call(&s, "HEAD", ACCT, &[]).await;
    assert_eq!(r.h("x-account-container-count"), Some("2"));
    assert_eq!(r.h("x-account-object-count"), Some("5"));
    // bad RPC bodies and paths
    let r = call_body(&s, "REPLICATE", &path, &[], Bytes::from("{}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call_body(&s, "REPLICATE", "/sda/0/nothex", &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call_body(
        &s,
        "REPLICATE",
        &format!("/sdx/0/{hash}"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE);

    // whole-DB upload: a copy of our own DB (backup API snapshot)
    let db = cairn_db::db_path(dir.path(), "sda", "accounts", 0, &hash);
    let snap = dir.path().join("snap.db");
    cairn_db::AccountBroker::open(&db)
        .unwrap()
        .backup_to(&snap)
        .unwrap();
    let bytes = Bytes::from(std::fs::read(&snap).unwrap());
    let sum = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let r = call_body(
        &s,
        "PUT",
        "/sda/tmp/upload1",
        &[("X-Backend-Db-Checksum", &sum)],
        bytes.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(dir.path().join("sda/tmp/upload1").is_file());
    let r = call_body(
        &s,
        "PUT",
        "/sda/tmp/upload2",
        &[("X-Backend-Db-Checksum", &"0".repeat(64))],
        bytes,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // complete_rsync into a new place (another account's hash on this device)
    let other = HashPathSecret::new("", "changeme").hash_path("AUTH_other", None, None);
    let rpc = serde_json::json!(["complete_rsync", "upload1"]);
    let r = call_body(
        &s,
        "REPLICATE",
        &format!("/sda/0/{other}"),
        &[],
        Bytes::from(rpc.to_string()),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(cairn_db::db_path(dir.path(), "sda", "accounts", 0, &other).is_file());
}

/// `fallocate_reserve = "100%"`: every write is refused with 507 and leaves the device
/// untouched; reads and DELETEs still work (Swift refuses PUT, POST and REPLICATE only).
#[tokio::test]
async fn writes_below_fallocate_reserve_are_refused() {
    use cairn_common::fs::FallocateReserve;
    let full =
        |s: &mut AccountServerSettings| s.fallocate_reserve = FallocateReserve::Percent(100.0);
    let (dir, s) = server_with(full);
    let sda = dir.path().join("sda");
    let refused = StatusCode::INSUFFICIENT_STORAGE;
    let r = put_account(&s, 1).await;
    assert_eq!(r.status, refused);
    assert!(r.text().contains("Drive: sda"), "{}", r.text());
    assert_eq!(
        report(&s, "/sda/0/.auto/c", 2, None, 1, 1, 0, &[])
            .await
            .status,
        refused
    );
    let meta = [
        ("X-Timestamp", ts(3)),
        ("X-Account-Meta-Color", "blue".into()),
    ];
    let meta: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(call(&s, "POST", ACCT, &meta).await.status, refused);
    let hash = HashPathSecret::new("", "changeme").hash_path("AUTH_test", None, None);
    let sync = serde_json::json!(["sync", -1, "h", "remote", ts(1), ts(1), "0", ""]);
    let path = format!("/sda/0/{hash}");
    let r = call_body(&s, "REPLICATE", &path, &[], Bytes::from(sync.to_string())).await;
    assert_eq!(r.status, refused);
    let r = call_body(&s, "PUT", "/sda/tmp/up.db", &[], Bytes::from("x")).await;
    assert_eq!(r.status, refused);
    assert_eq!(
        std::fs::read_dir(&sda).unwrap().count(),
        0,
        "nothing written"
    );
    assert_eq!(
        call(&s, "HEAD", ACCT, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let del = [("X-Timestamp", ts(4).to_string())];
    let r = call(&s, "DELETE", ACCT, &[("X-Timestamp", del[0].1.as_str())]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // An existing account keeps its metadata when a POST is refused.
    let mut settings = AccountServerSettings::new(dir.path());
    settings.fallocate_reserve = FallocateReserve::NONE;
    let open = AccountServer::new(settings.clone(), HashPathSecret::new("", "changeme"));
    assert_eq!(put_account(&open, 1).await.status, StatusCode::CREATED);
    assert_eq!(call(&s, "POST", ACCT, &meta).await.status, refused);
    let r = call(&s, "HEAD", ACCT, &[]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.h("x-account-meta-color"), None);
}
