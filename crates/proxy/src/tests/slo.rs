//! In-process SLO flows against real object servers: inline data segments (GET, ranges,
//! ETag, manifest views, nested, delete) and `heartbeat=on` manifest PUTs.

use super::*;
use crate::largeobj::encode_inline;

fn md5_of(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

async fn text_of(r: BackendResponse) -> String {
    String::from_utf8_lossy(&r.bytes(1 << 20).await.unwrap()).into_owned()
}

/// Container `c` with segments `s/1` = `aaaa` and `s/2` = `bbbb`.
async fn setup(c: &Cluster, auth: &[(&str, &str)]) {
    let r = c.req("PUT", "/v1/AUTH_test/c", auth, empty()).await;
    assert_eq!(r.status, 201);
    for (name, data) in [("s/1", "aaaa"), ("s/2", "bbbb")] {
        let path = format!("/v1/AUTH_test/c/{name}");
        assert_eq!(c.req("PUT", &path, auth, full(data)).await.status, 201);
    }
}

async fn put_manifest(
    c: &Cluster,
    path: &str,
    headers: &[(&str, &str)],
    manifest: serde_json::Value,
) -> BackendResponse {
    c.req("PUT", path, headers, full(manifest.to_string()))
        .await
}

async fn get_range(c: &Cluster, tok: &str, range: &str) -> (u16, String) {
    let h = [("x-auth-token", tok), ("range", range)];
    let r = c.req("GET", "/v1/AUTH_test/c/slo", &h, empty()).await;
    (r.status.as_u16(), text_of(r).await)
}

#[tokio::test]
async fn inline_data_segments() {
    let (c, _dirs) = Cluster::start_with_real_objects(false).await;
    let tok = c.token("test:tester", "testing").await;
    let auth = [("x-auth-token", tok.as_str())];
    setup(&c, &auth).await;
    let manifest = serde_json::json!([
        {"data": encode_inline(b"head-")},
        {"path": "/c/s/1"},
        // Unpadded base64 is accepted and stored normalised.
        {"data": "LW1pZC0"},
        {"path": "/c/s/2", "range": "1-2"},
        {"data": encode_inline(b"!")},
    ]);
    let put = "/v1/AUTH_test/c/slo?multipart-manifest=put";
    let r = put_manifest(&c, put, &auth, manifest).await;
    assert_eq!(r.status, 201, "{:?}", r.headers);
    let etag = {
        let parts = [
            md5_of(b"head-"),
            md5_of(b"aaaa"),
            md5_of(b"-mid-"),
            format!("{}:1-2;", md5_of(b"bbbb")),
            md5_of(b"!"),
        ];
        format!("\"{}\"", md5_of(parts.concat().as_bytes()))
    };
    assert_eq!(r.header("etag"), Some(etag.as_str()));

    let r = c.req("HEAD", "/v1/AUTH_test/c/slo", &auth, empty()).await;
    assert_eq!(r.header("content-length"), Some("17"));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = c.req("GET", "/v1/AUTH_test/c/slo", &auth, empty()).await;
    assert_eq!(text_of(r).await, "head-aaaa-mid-bb!");
    // Ranges start, end and cross inline data.
    assert_eq!(
        get_range(&c, &tok, "bytes=3-11").await,
        (206, "d-aaaa-mi".into())
    );
    assert_eq!(get_range(&c, &tok, "bytes=-2").await, (206, "b!".into()));
    assert_eq!(get_range(&c, &tok, "bytes=0-1").await, (206, "he".into()));

    // The stored manifest shows the data entries; format=raw keeps them as sent.
    let q = "/v1/AUTH_test/c/slo?multipart-manifest=get";
    let v: serde_json::Value =
        serde_json::from_str(&text_of(c.req("GET", q, &auth, empty()).await).await).unwrap();
    assert_eq!(v[0], serde_json::json!({"data": encode_inline(b"head-")}));
    assert_eq!(v[2], serde_json::json!({"data": "LW1pZC0="}));
    assert_eq!(v[1]["name"], "/c/s/1");
    let raw = format!("{q}&format=raw");
    let v: serde_json::Value =
        serde_json::from_str(&text_of(c.req("GET", &raw, &auth, empty()).await).await).unwrap();
    assert_eq!(v[4], serde_json::json!({"data": "IQ=="}));
    assert_eq!(v[3]["path"], "/c/s/2");

    // Nested under an outer manifest that has data of its own.
    let outer = serde_json::json!([{"data": encode_inline(b">>")}, {"path": "/c/slo"}]);
    let put = "/v1/AUTH_test/c/outer?multipart-manifest=put";
    assert_eq!(put_manifest(&c, put, &auth, outer).await.status, 201);
    let r = c.req("GET", "/v1/AUTH_test/c/outer", &auth, empty()).await;
    assert_eq!(r.header("content-length"), Some("19"));
    assert_eq!(text_of(r).await, ">>head-aaaa-mid-bb!");

    // Data alone is refused, by index errors.
    let only_data = serde_json::json!([{"data": "YQ=="}]);
    let put = "/v1/AUTH_test/c/bad?multipart-manifest=put";
    let r = put_manifest(&c, put, &auth, only_data).await;
    assert_eq!(r.status, 400);
    assert!(text_of(r)
        .await
        .contains("require at least one object-backed"));

    // Deleting with segments skips the inline data.
    let del = "/v1/AUTH_test/c/outer?multipart-manifest=delete";
    let h = [auth[0], ("accept", "application/json")];
    let v: serde_json::Value =
        serde_json::from_str(&text_of(c.req("DELETE", del, &h, empty()).await).await).unwrap();
    assert_eq!(v["Number Deleted"], 4, "{v}");
    assert_eq!(v["Errors"], serde_json::json!([]), "{v}");
}

/// Split a heartbeat body into its leading whitespace and the document.
fn split_heartbeat(body: &str) -> (&str, &str) {
    let (spaces, doc) = body.split_once("\r\n\r\n").unwrap_or(("", body));
    assert!(spaces.starts_with(' '), "{body:?}");
    assert!(spaces.bytes().all(|b| b == b' '), "{body:?}");
    (spaces, doc)
}

#[tokio::test]
async fn heartbeat_manifest_put() {
    let (c, _dirs) = Cluster::start_with_real_objects(false).await;
    let tok = c.token("test:tester", "testing").await;
    let auth = [("x-auth-token", tok.as_str())];
    setup(&c, &auth).await;
    let manifest = serde_json::json!([{"path": "/c/s/1"}, {"data": "Kg=="}]);
    let put = "/v1/AUTH_test/c/hb?multipart-manifest=put&heartbeat=on";
    let json_h = [auth[0], ("accept", "application/json")];
    let r = put_manifest(&c, put, &json_h, manifest.clone()).await;
    // 202 at once; the real outcome is in the document.
    assert_eq!(r.status, 202);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = text_of(r).await;
    let (_, doc) = split_heartbeat(&body);
    let v: serde_json::Value = serde_json::from_str(doc).unwrap();
    let etag = md5_of(format!("{}{}", md5_of(b"aaaa"), md5_of(b"*")).as_bytes());
    assert_eq!(v["Response Status"], "201 Created", "{v}");
    assert_eq!(v["Etag"], format!("\"{etag}\""), "{v}");
    assert!(v["Last Modified"]
        .as_str()
        .is_some_and(|s| s.ends_with("GMT")));
    assert_eq!(v["Errors"], serde_json::json!([]));
    let r = c.req("GET", "/v1/AUTH_test/c/hb", &auth, empty()).await;
    assert_eq!(text_of(r).await, "aaaa*");

    // A missing segment: still 202, the document says 400 and lists it (text format).
    let bad = serde_json::json!([{"path": "/c/missing"}, {"path": "/c/s/2"}]);
    let r = put_manifest(&c, put, &auth, bad).await;
    assert_eq!(r.status, 202);
    let body = text_of(r).await;
    let (_, doc) = split_heartbeat(&body);
    assert!(doc.contains("Response Status: 400 Bad Request\n"), "{doc}");
    assert!(
        doc.ends_with("Errors:\n/c/missing, 404 Not Found\n"),
        "{doc}"
    );
    let r = c.req("HEAD", "/v1/AUTH_test/c/hb", &auth, empty()).await;
    assert_eq!(
        r.header("content-length"),
        Some("5"),
        "the old manifest stays"
    );

    // A wrong ETag from the client: 422 in the document.
    let h = [auth[0], ("accept", "application/json"), ("etag", "nope")];
    let body = text_of(put_manifest(&c, put, &h, manifest).await).await;
    let v: serde_json::Value = serde_json::from_str(split_heartbeat(&body).1).unwrap();
    assert_eq!(v["Response Status"], "422 Unprocessable Entity", "{v}");

    // Syntax errors are found before the heartbeat starts: a plain 400.
    let r = c.req("PUT", put, &auth, full("not json")).await;
    assert_eq!(r.status, 400);
}
