//! End-to-end Static Large Objects on a real cluster: a `heartbeat=on` manifest PUT read
//! as a client sees it (202, chunked spaces, then the result document) and inline data
//! segments served in place, also across a range.

mod support;

use md5::{Digest, Md5};

use support::{header, Client, Cluster};

fn md5_hex(data: &[u8]) -> String {
    format!("{:x}", Md5::digest(data))
}

/// Undo `Transfer-Encoding: chunked` (the test client reads raw bytes).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..eol]).to_string();
        let size = usize::from_str_radix(size_text.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
    out
}

#[test]
fn heartbeat_put_and_inline_data() {
    let cluster = Cluster::start(4);
    let c = Client::login(&cluster, "test:tester", "testing");
    assert_eq!(c.req("PUT", "/c", &[], b"").0, 201);
    assert_eq!(c.req("PUT", "/c/seg", &[], b"0123456789").0, 201);
    // `PDw=` is base64 of `<<`, `Pj4` of `>>` (unpadded, which Swift accepts too).
    let manifest = serde_json::json!([
        {"data": "PDw="},
        {"path": "/c/seg", "size_bytes": 10},
        {"data": "Pj4"},
    ]);
    let (status, headers, raw) = c.req(
        "PUT",
        "/c/big?multipart-manifest=put&heartbeat=on",
        &[("Accept", "application/json")],
        manifest.to_string().as_bytes(),
    );
    assert_eq!(status, 202);
    assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
    let body = String::from_utf8(dechunk(&raw)).expect("utf-8");
    let (spaces, doc) = body.split_once("\r\n\r\n").expect("separator");
    assert!(
        spaces.starts_with(' ') && spaces.trim().is_empty(),
        "{body:?}"
    );
    let v: serde_json::Value = serde_json::from_str(doc).expect("json document");
    let parts = [md5_hex(b"<<"), md5_hex(b"0123456789"), md5_hex(b">>")].concat();
    let etag = format!("\"{}\"", md5_hex(parts.as_bytes()));
    assert_eq!(v["Response Status"], "201 Created", "{v}");
    assert_eq!(v["Etag"], etag.as_str(), "{v}");
    assert_eq!(v["Errors"], serde_json::json!([]), "{v}");

    let (status, headers, body) = c.req("GET", "/c/big", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "etag"), Some(etag.as_str()));
    assert_eq!(body, b"<<0123456789>>");
    let (status, _, body) = c.req("GET", "/c/big", &[("Range", "bytes=1-3")], b"");
    assert_eq!(status, 206);
    assert_eq!(body, b"<01");
    let (_, _, body) = c.req("GET", "/c/big", &[("Range", "bytes=-3")], b"");
    assert_eq!(body, b"9>>");
}
