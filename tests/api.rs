//! End-to-end negative and edge cases of the public API (issue 6), each with the status
//! code OpenStack Swift answers: tokens, foreign accounts, ACLs, metadata and name limits,
//! ranges, conditional requests.

mod support;

use support::{header, http, Client, Cluster};

#[test]
fn auth_acl_constraints_and_ranges_answer_like_swift() {
    let cluster = Cluster::start(4);
    let addr = cluster.proxy_addr();
    let tester = Client::login(&cluster, "test:tester", "testing");

    // Auth: wrong key → 401; no/garbage token → 401.
    let (status, headers, _) = http(
        addr,
        "GET",
        "/auth/v1.0",
        &[("X-Auth-User", "test:tester"), ("X-Auth-Key", "wrong")],
        b"",
    );
    assert_eq!(status, 401);
    assert!(header(&headers, "www-authenticate").is_some());
    let (status, _, _) = http(addr, "GET", &tester.account_path, &[], b"");
    assert_eq!(status, 401, "no token");
    let (status, _, _) = http(
        addr,
        "GET",
        &tester.account_path,
        &[("X-Auth-Token", "AUTH_tkbogus")],
        b"",
    );
    assert_eq!(status, 401, "garbage token");
    let mut forged = tester.token.clone();
    let last = forged.pop().expect("token");
    forged.push(if last == '0' { '1' } else { '0' });
    let (status, _, _) = http(
        addr,
        "GET",
        &tester.account_path,
        &[("X-Auth-Token", forged.as_str())],
        b"",
    );
    assert_eq!(status, 401, "tampered token");

    // Every response carries a transaction id.
    let (status, headers, _) = tester.req("HEAD", "", &[], b"");
    assert_eq!(status, 204);
    assert!(header(&headers, "x-trans-id").is_some_and(|t| t.starts_with("tx")));
    assert_eq!(
        header(&headers, "x-trans-id"),
        header(&headers, "x-openstack-request-id")
    );

    // A foreign account: test2's user may not read AUTH_test → 403.
    let other = Client::login(&cluster, "test2:tester2", "testing2");
    let (status, _, _) = http(
        addr,
        "GET",
        &tester.account_path,
        &[("X-Auth-Token", other.token.as_str())],
        b"",
    );
    assert_eq!(status, 403, "foreign account listing");

    // Container and object for ACL checks.
    assert_eq!(tester.req("PUT", "/acl", &[], b"").0, 201);
    assert_eq!(tester.req("PUT", "/acl/obj", &[], b"secret").0, 201);
    let (status, _, _) = http(
        addr,
        "GET",
        &format!("{}/acl/obj", tester.account_path),
        &[("X-Auth-Token", other.token.as_str())],
        b"",
    );
    assert_eq!(status, 403, "no ACL yet");
    let (status, _, _) = http(
        addr,
        "GET",
        &format!("{}/acl/obj", tester.account_path),
        &[],
        b"",
    );
    assert_eq!(status, 401, "anonymous without ACL");
    // tester3 (no .admin) of the same account cannot create containers.
    let tester3 = Client::login(&cluster, "test:tester3", "testing3");
    assert_eq!(tester3.req("PUT", "/notmine", &[], b"").0, 403);
    // Grant read to test2:tester2 and anonymous referrer reads.
    assert_eq!(
        tester
            .req(
                "POST",
                "/acl",
                &[("X-Container-Read", "test2:tester2,.r:*")],
                b""
            )
            .0,
        204
    );
    let (status, _, body) = http(
        addr,
        "GET",
        &format!("{}/acl/obj", tester.account_path),
        &[("X-Auth-Token", other.token.as_str())],
        b"",
    );
    assert_eq!((status, body.as_slice()), (200, b"secret".as_slice()));
    let (status, _, _) = http(
        addr,
        "GET",
        &format!("{}/acl/obj", tester.account_path),
        &[],
        b"",
    );
    assert_eq!(status, 200, ".r:* allows anonymous object reads");
    let (status, _, _) = http(
        addr,
        "GET",
        &format!("{}/acl", tester.account_path),
        &[],
        b"",
    );
    assert_eq!(status, 401, "listing needs .rlistings");
    // Read ACL does not grant writes.
    let (status, _, _) = http(
        addr,
        "PUT",
        &format!("{}/acl/other", tester.account_path),
        &[("X-Auth-Token", other.token.as_str())],
        b"x",
    );
    assert_eq!(status, 403);
    assert_eq!(
        tester
            .req("POST", "/acl", &[("X-Container-Write", ".r:*")], b"")
            .0,
        400,
        "referrer in write ACL"
    );

    // Metadata limits.
    let long_name = format!("X-Object-Meta-{}", "n".repeat(129));
    assert_eq!(
        tester
            .req("PUT", "/acl/m", &[(long_name.as_str(), "v")], b"")
            .0,
        400
    );
    let long_value = "v".repeat(257);
    assert_eq!(
        tester
            .req(
                "PUT",
                "/acl/m",
                &[("X-Object-Meta-Big", long_value.as_str())],
                b""
            )
            .0,
        400
    );
    assert_eq!(
        tester
            .req("PUT", "/acl/m", &[("X-Object-Meta-Ok", "v")], b"")
            .0,
        201
    );

    // Names at and over the limits.
    let max_obj = "o".repeat(1024);
    assert_eq!(
        tester.req("PUT", &format!("/acl/{max_obj}"), &[], b"x").0,
        201
    );
    assert_eq!(
        tester.req("PUT", &format!("/acl/{max_obj}o"), &[], b"x").0,
        400
    );
    let max_cont = "c".repeat(256);
    assert_eq!(tester.req("PUT", &format!("/{max_cont}"), &[], b"").0, 201);
    assert_eq!(tester.req("PUT", &format!("/{max_cont}c"), &[], b"").0, 400);
    assert_eq!(tester.req("PUT", "/acl/bad%00name", &[], b"x").0, 412);

    // Missing container → 404 on object PUT; ETag mismatch → 422; listing limit → 412.
    assert_eq!(tester.req("PUT", "/nocontainer/o", &[], b"x").0, 404);
    assert_eq!(
        tester
            .req(
                "PUT",
                "/acl/e",
                &[("ETag", "0123456789abcdef0123456789abcdef")],
                b"x"
            )
            .0,
        422
    );
    assert_eq!(tester.req("GET", "/acl?limit=10001", &[], b"").0, 412);

    // Ranges: satisfiable → 206 with Content-Range; unsatisfiable → 416; garbage → 200.
    assert_eq!(tester.req("PUT", "/acl/r", &[], b"0123456789").0, 201);
    let (status, headers, body) = tester.req("GET", "/acl/r", &[("Range", "bytes=2-4")], b"");
    assert_eq!((status, body.as_slice()), (206, b"234".as_slice()));
    assert_eq!(header(&headers, "content-range"), Some("bytes 2-4/10"));
    let (status, headers, _) = tester.req("GET", "/acl/r", &[("Range", "bytes=20-30")], b"");
    assert_eq!(status, 416);
    assert_eq!(header(&headers, "content-range"), Some("bytes */10"));
    let (status, _, body) = tester.req("GET", "/acl/r", &[("Range", "bytes=banana")], b"");
    assert_eq!((status, body.len()), (200, 10));

    // Conditional requests.
    let (_, headers, _) = tester.req("HEAD", "/acl/r", &[], b"");
    let etag = header(&headers, "etag").expect("etag").to_string();
    assert_eq!(
        tester
            .req("GET", "/acl/r", &[("If-None-Match", etag.as_str())], b"")
            .0,
        304
    );
    assert_eq!(
        tester
            .req("GET", "/acl/r", &[("If-Match", "\"nope\"")], b"")
            .0,
        412
    );
    assert_eq!(
        tester
            .req("PUT", "/acl/r", &[("If-None-Match", "*")], b"again")
            .0,
        412
    );

    // Container not empty → 409; unknown policy → 400.
    assert_eq!(tester.req("DELETE", "/acl", &[], b"").0, 409);
    assert_eq!(
        tester
            .req("PUT", "/pol", &[("X-Storage-Policy", "nope")], b"")
            .0,
        400
    );

    // /info without auth.
    let (status, _, body) = http(addr, "GET", "/info", &[], b"");
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_slice(&body).expect("info json");
    assert_eq!(info["swift"]["max_file_size"], 5368709122u64);
    assert_eq!(info["swift"]["policies"][0]["name"], "gold");
}
