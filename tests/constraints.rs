//! End-to-end `[constraints]` overrides: a cluster whose `cairn.toml` lowers the limits
//! reports them in `/info` and every server enforces them with Swift's status codes —
//! the proxy (names, sizes, request metadata, listing `limit`, API versions), the
//! container and account servers (metadata merged with what is stored, page size).

mod support;

use serde_json::Value;
use support::{edit_toml, http, toml_table, Client, Cluster};

/// The overrides under test, as the operator writes them.
fn lower_limits(cluster: &Cluster) {
    edit_toml(&cluster.etc().join("cairn.toml"), |file| {
        let c = toml_table(file, "constraints");
        c.insert("max_meta_count".into(), 3.into());
        c.insert("max_object_name_length".into(), 20.into());
        c.insert("max_file_size".into(), 100.into());
        c.insert("container_listing_limit".into(), 5.into());
        c.insert("extra_header_count".into(), 4.into());
        c.insert("valid_api_versions".into(), vec!["v1"].into());
    });
}

fn body(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn meta(n: usize, kind: &str) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("X-{kind}-Meta-K{i}"), "v".to_string()))
        .collect()
}

fn refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn lowered_constraints_are_reported_and_enforced() {
    let cluster = Cluster::start_edited(3, lower_limits);
    let (st, _, info) = http(cluster.proxy_addr(), "GET", "/info", &[], b"");
    assert_eq!(st, 200);
    let info: Value = serde_json::from_slice(&info).expect("info json");
    let swift = &info["swift"];
    assert_eq!(swift["max_meta_count"], 3);
    assert_eq!(swift["max_object_name_length"], 20);
    assert_eq!(swift["max_file_size"], 100);
    assert_eq!(swift["container_listing_limit"], 5);
    assert_eq!(swift["max_header_count"], 3 + 36 + 4);
    assert_eq!(swift["valid_api_versions"], serde_json::json!(["v1"]));
    assert_eq!(
        swift["max_meta_value_length"], 256,
        "untouched keys keep defaults"
    );

    let c = Client::login(&cluster, "test:tester", "testing");
    assert_eq!(c.req("PUT", "/c", &[], b"").0, 201);
    objects(&c);
    merged_metadata(&c);
    listings(&c);
    let v10 = c.account_path.replacen("/v1/", "/v1.0/", 1);
    let (st, _, _) = http(c.addr, "GET", &v10, &[("X-Auth-Token", &c.token)], b"");
    assert_eq!(st, 400, "v1.0 is no longer a valid API version");
}

/// Names, sizes and request metadata, checked by the proxy.
fn objects(c: &Client) {
    let (st, _, b) = c.req("PUT", &format!("/c/{}", "o".repeat(21)), &[], b"x");
    assert_eq!(
        (st, body(&b).as_str()),
        (400, "Object name length of 21 longer than 20")
    );
    assert_eq!(
        c.req("PUT", &format!("/c/{}", "o".repeat(20)), &[], b"x").0,
        201
    );

    let (st, _, b) = c.req("PUT", "/c/big", &[], &[b'x'; 101]);
    assert_eq!((st, body(&b).as_str()), (413, "Your request is too large."));
    assert_eq!(c.req("PUT", "/c/big", &[], &[b'x'; 100]).0, 201);

    let four = meta(4, "Object");
    let (st, _, b) = c.req("PUT", "/c/m", &refs(&four), b"x");
    assert_eq!(
        (st, body(&b).as_str()),
        (400, "Too many metadata items; max 3")
    );
    assert_eq!(c.req("PUT", "/c/m", &refs(&four[..3]), b"x").0, 201);
}

/// Two POSTs of two keys each: each request is within the limit, the merged set is not —
/// only the container and account servers, which hold the stored keys, can refuse it.
fn merged_metadata(c: &Client) {
    for (path, kind) in [("/c", "Container"), ("", "Account")] {
        let all = meta(4, kind);
        assert_eq!(c.req("POST", path, &refs(&all[..2]), b"").0, 204, "{kind}");
        let (st, _, b) = c.req("POST", path, &refs(&all[2..]), b"");
        assert_eq!(st, 400, "{kind}: {}", body(&b));
        assert!(
            body(&b).contains("Too many metadata items; max 3"),
            "{kind}: {}",
            body(&b)
        );
    }
}

/// `limit` above the effective maximum is 412; without one a page holds at most 5 names,
/// and a DLO whose segments span pages is still read whole.
fn listings(c: &Client) {
    assert_eq!(c.req("GET", "/c?limit=6", &[], b"").0, 412);
    for i in 0..7 {
        let seg = format!("/c/seg/{i:02}");
        assert_eq!(c.req("PUT", &seg, &[], format!("{i}").as_bytes()).0, 201);
    }
    let (st, _, b) = c.req("GET", "/c?prefix=seg/", &[], b"");
    assert_eq!(st, 200);
    assert_eq!(body(&b).lines().count(), 5, "{}", body(&b));
    let manifest = [("X-Object-Manifest", "c/seg/")];
    assert_eq!(c.req("PUT", "/c/dlo", &manifest, b"").0, 201);
    let (st, _, b) = c.req("GET", "/c/dlo", &[], b"");
    assert_eq!((st, body(&b).as_str()), (200, "0123456"));
}
