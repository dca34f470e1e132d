//! In-process TempURL and FormPost flows against real object and container servers
//! (the fakes serve the account): signatures, scopes, header rules, streamed form files.

use super::*;
use crate::signature::Digest;

const AKEY: &str = "account-secret";
const CKEY: &str = "container-secret";

fn in_secs(n: u64) -> u64 {
    crate::auth::now_secs() + n
}

fn sig(key: &str, method: &str, expires: u64, path: &str) -> String {
    hex::encode(Digest::Sha256.hmac(
        key.as_bytes(),
        format!("{method}\n{expires}\n{path}").as_bytes(),
    ))
}

async fn body_of(r: BackendResponse) -> String {
    String::from_utf8_lossy(&r.bytes(1 << 20).await.unwrap()).into_owned()
}

/// A container `c` holding `o` (private and public metadata), signed-for by an account
/// key and (on `keyed`) a container key.
async fn setup(c: &Cluster, auth: &[(&str, &str)]) {
    let r = c.req("PUT", "/v1/AUTH_test/c", auth, empty()).await;
    assert_eq!(r.status, 201);
    let r = c
        .req(
            "PUT",
            "/v1/AUTH_test/keyed",
            &[auth[0], ("x-container-meta-temp-url-key", CKEY)],
            empty(),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = c
        .req(
            "POST",
            "/v1/AUTH_test",
            &[auth[0], ("x-account-meta-temp-url-key", AKEY)],
            empty(),
        )
        .await;
    assert_eq!(r.status, 204);
    for (path, data) in [
        ("/v1/AUTH_test/c/o", "hello"),
        ("/v1/AUTH_test/keyed/k", "k"),
    ] {
        let r = c
            .req(
                "PUT",
                path,
                &[
                    auth[0],
                    ("x-object-meta-color", "red"),
                    ("x-object-meta-public-size", "5"),
                ],
                full(data),
            )
            .await;
        assert_eq!(r.status, 201);
    }
}

/// `[tempurl]` settings bound what a temp URL may do: a digest or a method left out is
/// refused like a bad signature, and `/info` (tempurl and formpost) lists what is allowed.
#[tokio::test]
async fn temp_url_settings_limit_digests_and_methods() {
    let settings = "[tempurl]\nmethods = [\"GET\", \"HEAD\"]\nallowed_digests = [\"sha256\"]\n";
    let (c, _dirs) = Cluster::start_with_real_objects_and(true, settings).await;
    let tok = c.token("test:tester", "testing").await;
    let auth = [("x-auth-token", tok.as_str())];
    setup(&c, &auth).await;
    let exp = in_secs(300);
    let path = "/v1/AUTH_test/c/o";
    let url = |sig: String| format!("{path}?temp_url_sig={sig}&temp_url_expires={exp}");
    let r = c
        .req("GET", &url(sig(AKEY, "GET", exp, path)), &[], empty())
        .await;
    assert_eq!(r.status, 200, "sha256 is allowed");
    let sha512 =
        hex::encode(Digest::Sha512.hmac(AKEY.as_bytes(), format!("GET\n{exp}\n{path}").as_bytes()));
    let r = c.req("GET", &url(sha512), &[], empty()).await;
    assert_eq!(r.status, 401, "sha512 is not allowed");
    let r = c
        .req("PUT", &url(sig(AKEY, "PUT", exp, path)), &[], full("x"))
        .await;
    assert_eq!(r.status, 401, "PUT is not an allowed method");
    let r = c.req("GET", "/info", &[], empty()).await;
    let info: serde_json::Value = serde_json::from_str(&body_of(r).await).unwrap();
    assert_eq!(
        info["tempurl"]["methods"],
        serde_json::json!(["GET", "HEAD"])
    );
    assert_eq!(
        info["tempurl"]["allowed_digests"],
        serde_json::json!(["sha256"])
    );
    assert_eq!(info["tempurl"]["deprecated_digests"], serde_json::json!([]));
    assert_eq!(
        info["formpost"]["allowed_digests"],
        serde_json::json!(["sha256"])
    );
}

#[tokio::test]
async fn temp_urls() {
    let (c, _dirs) = Cluster::start_with_real_objects(true).await;
    let tok = c.token("test:tester", "testing").await;
    let auth = [("x-auth-token", tok.as_str())];
    setup(&c, &auth).await;
    let exp = in_secs(300);
    let path = "/v1/AUTH_test/c/o";
    let get_url = format!(
        "{path}?temp_url_sig={}&temp_url_expires={exp}",
        sig(AKEY, "GET", exp, path)
    );

    // GET without a token; private metadata hidden, public kept, download headers added.
    let r = c.req("GET", &get_url, &[], empty()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-object-meta-color"), None);
    assert_eq!(r.header("x-object-meta-public-size"), Some("5"));
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"o\"; filename*=UTF-8''o")
    );
    assert!(r.header("expires").is_some_and(|e| e.ends_with("GMT")));
    assert_eq!(body_of(r).await, "hello");
    let r = c
        .req(
            "GET",
            &format!("{get_url}&inline&filename=a+b.txt"),
            &[],
            empty(),
        )
        .await;
    assert_eq!(
        r.header("content-disposition"),
        Some("inline; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt")
    );
    // HEAD is allowed by a GET signature; PUT is not.
    let head_url = get_url.clone();
    let r = c.req("HEAD", &head_url, &[], empty()).await;
    assert_eq!(r.status, 200);
    let r = c.req("PUT", &get_url, &[], full("x")).await;
    assert_eq!(r.status, 401);
    assert_eq!(body_of(r).await, "401 Unauthorized: Temp URL invalid\n");
    // The signature covers the path: another object, or the container, is refused.
    for other in ["/v1/AUTH_test/c/o2", "/v1/AUTH_test/c", "/v1/AUTH_test"] {
        let url = get_url.replacen(path, other, 1);
        let r = c.req("GET", &url, &[], empty()).await;
        assert_eq!(r.status, 401, "{other}");
    }
    // Expired, tampered, and v1.0 URLs.
    let past = in_secs(0) - 10;
    let url = format!(
        "{path}?temp_url_sig={}&temp_url_expires={past}",
        sig(AKEY, "GET", past, path)
    );
    assert_eq!(c.req("GET", &url, &[], empty()).await.status, 401);
    let url = get_url.replace(&exp.to_string(), &(exp + 1).to_string());
    assert_eq!(c.req("GET", &url, &[], empty()).await.status, 401);
    let url = get_url.replacen("/v1/", "/v1.0/", 1);
    assert_eq!(c.req("GET", &url, &[], empty()).await.status, 401);
    // Query parameters other than Swift's temp-URL ones are dropped.
    let r = c
        .req(
            "GET",
            &format!("{get_url}&multipart-manifest=get"),
            &[],
            empty(),
        )
        .await;
    assert_eq!(r.status, 200);

    // PUT through a temp URL; a manifest pointer is refused.
    let new = "/v1/AUTH_test/c/new";
    let put_url = format!(
        "{new}?temp_url_sig={}&temp_url_expires={exp}",
        sig(AKEY, "PUT", exp, new)
    );
    let r = c
        .req("PUT", &put_url, &[("x-timestamp", "1")], full("put body"))
        .await;
    assert_eq!(r.status, 201);
    let r = c
        .req("PUT", &put_url, &[("x-object-manifest", "c/o")], full(""))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        body_of(r).await,
        "The header 'X-Object-Manifest' is not allowed in this tempurl"
    );
    // HEAD with a PUT signature works too.
    assert_eq!(c.req("HEAD", &put_url, &[], empty()).await.status, 200);

    // Prefix-wide signatures cover objects under the prefix only.
    let pre = "prefix:/v1/AUTH_test/c/ne";
    let s = sig(AKEY, "GET", exp, pre);
    let url = |o: &str| {
        format!("/v1/AUTH_test/c/{o}?temp_url_sig={s}&temp_url_expires={exp}&temp_url_prefix=ne")
    };
    let r = c.req("GET", &url("new"), &[], empty()).await;
    assert_eq!(r.status, 200);
    assert_eq!(body_of(r).await, "put body");
    assert_eq!(c.req("GET", &url("o"), &[], empty()).await.status, 401);

    // A container key grants that container only: a copy from another is refused.
    let k = "/v1/AUTH_test/keyed/k";
    let url = format!(
        "{k}?temp_url_sig={}&temp_url_expires={exp}",
        sig(CKEY, "GET", exp, k)
    );
    assert_eq!(c.req("GET", &url, &[], empty()).await.status, 200);
    let dst = "/v1/AUTH_test/keyed/copy";
    let url = format!(
        "{dst}?temp_url_sig={}&temp_url_expires={exp}",
        sig(CKEY, "PUT", exp, dst)
    );
    let r = c
        .req("PUT", &url, &[("x-copy-from", "/c/o")], empty())
        .await;
    assert_eq!(r.status, 401);
    let r = c
        .req("PUT", &url, &[("x-copy-from", "/keyed/k")], empty())
        .await;
    assert_eq!(r.status, 201);
    // The container key does not sign for other containers.
    let url = format!(
        "{path}?temp_url_sig={}&temp_url_expires={exp}",
        sig(CKEY, "GET", exp, path)
    );
    assert_eq!(c.req("GET", &url, &[], empty()).await.status, 401);

    // IP-restricted: the signature includes the range; this client is 127.0.0.1.
    for (range, want) in [("127.0.0.0/8", 200), ("10.0.0.0/8", 401)] {
        let msg = format!("ip={range}\nGET\n{exp}\n{path}");
        let s = hex::encode(Digest::Sha256.hmac(AKEY.as_bytes(), msg.as_bytes()));
        let url =
            format!("{path}?temp_url_sig={s}&temp_url_expires={exp}&temp_url_ip_range={range}");
        assert_eq!(
            c.req("GET", &url, &[], empty()).await.status,
            want,
            "{range}"
        );
    }

    // Keys are owner-only: a read-write account-ACL user cannot see or set them.
    let r = c
        .req(
            "POST",
            "/v1/AUTH_test",
            &[
                auth[0],
                (
                    "x-account-access-control",
                    r#"{"read-write":["test:tester2"]}"#,
                ),
            ],
            empty(),
        )
        .await;
    assert_eq!(r.status, 204);
    let tok2 = c.token("test:tester2", "testing2").await;
    let auth2 = [("x-auth-token", tok2.as_str())];
    let r = c.req("HEAD", "/v1/AUTH_test/keyed", &auth2, empty()).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("x-container-meta-temp-url-key"), None);
    let r = c
        .req(
            "POST",
            "/v1/AUTH_test/keyed",
            &[
                auth2[0],
                ("x-container-meta-temp-url-key", "mine"),
                ("x-container-meta-x", "1"),
            ],
            empty(),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = c.req("HEAD", "/v1/AUTH_test/keyed", &auth, empty()).await;
    assert_eq!(r.header("x-container-meta-temp-url-key"), Some(CKEY));
    assert_eq!(r.header("x-container-meta-x"), Some("1"));
    let r = c.req("HEAD", "/v1/AUTH_test", &auth2, empty()).await;
    assert_eq!(r.header("x-account-meta-temp-url-key"), None);
    let r = c.req("HEAD", "/v1/AUTH_test", &auth, empty()).await;
    assert_eq!(r.header("x-account-meta-temp-url-key"), Some(AKEY));
}

/// A multipart body: attributes, then files.
fn form_body(attrs: &[(&str, &str)], files: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in attrs {
        b.extend_from_slice(
            format!("--XB\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    for (field, name, data) in files {
        b.extend_from_slice(
            format!(
                "--XB\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n\
                 Content-Type: text/plain\r\n\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b"--XB--\r\n");
    b
}

fn form_sig(key: &str, path: &str, redirect: &str, size: &str, count: &str, exp: &str) -> String {
    let msg = format!("{path}\n{redirect}\n{size}\n{count}\n{exp}");
    format!(
        "sha512:{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            Digest::Sha512.hmac(key.as_bytes(), msg.as_bytes())
        )
    )
}

/// POST a form (boundary `XB`) to `path`.
async fn post_form(
    c: &Cluster,
    path: &str,
    attrs: &[(&str, &str)],
    files: &[(&str, &str, &[u8])],
) -> BackendResponse {
    let ct = [("content-type", "multipart/form-data; boundary=XB")];
    c.req("POST", path, &ct, full(form_body(attrs, files)))
        .await
}

/// A form's status and body.
async fn answer_of(
    c: &Cluster,
    path: &str,
    attrs: &[(&str, &str)],
    files: &[(&str, &str, &[u8])],
) -> (u16, String) {
    let r = post_form(c, path, attrs, files).await;
    (r.status.as_u16(), body_of(r).await)
}

/// The status of an authenticated HEAD.
async fn head_status(c: &Cluster, auth: &[(&str, &str)], path: &str) -> u16 {
    c.req("HEAD", path, auth, empty()).await.status.as_u16()
}

#[tokio::test]
async fn form_posts() {
    let (c, _dirs) = Cluster::start_with_real_objects(true).await;
    let tok = c.token("test:tester", "testing").await;
    let auth = [("x-auth-token", tok.as_str())];
    setup(&c, &auth).await;
    let path = "/v1/AUTH_test/c/up/";
    let exp = in_secs(300).to_string();
    let redirect = "https://example.com/done";
    let s = form_sig(AKEY, path, redirect, "1024", "2", &exp);
    let attrs = [
        ("redirect", redirect),
        ("max_file_size", "1024"),
        ("max_file_count", "2"),
        ("expires", exp.as_str()),
        ("signature", s.as_str()),
    ];
    let big = vec![b'z'; 1000];
    let files: [(&str, &str, &[u8]); 2] = [("f1", "a.txt", b"first"), ("f2", "b.bin", &big)];
    let r = post_form(&c, path, &attrs, &files).await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some("https://example.com/done?status=201&message=")
    );
    let r = c
        .req("GET", "/v1/AUTH_test/c/up/a.txt", &auth, empty())
        .await;
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(body_of(r).await, "first");
    let r = c
        .req("GET", "/v1/AUTH_test/c/up/b.bin", &auth, empty())
        .await;
    assert_eq!(body_of(r).await.len(), 1000);

    // Too many files: the first two are stored, then the redirect says why.
    let three: [(&str, &str, &[u8]); 3] = [("f", "1", b"1"), ("f", "2", b"2"), ("f", "3", b"3")];
    let r = post_form(&c, path, &attrs, &three).await;
    assert_eq!(
        r.header("location"),
        Some("https://example.com/done?status=400&message=max%20file%20count%20exceeded")
    );
    assert_eq!(head_status(&c, &auth, "/v1/AUTH_test/c/up/2").await, 200);
    assert_eq!(head_status(&c, &auth, "/v1/AUTH_test/c/up/3").await, 404);

    // Without a redirect: plain answers. Container path, container key.
    let cpath = "/v1/AUTH_test/keyed";
    let s = form_sig(CKEY, cpath, "", "10", "1", &exp);
    let attrs = [
        ("max_file_size", "10"),
        ("max_file_count", "1"),
        ("expires", exp.as_str()),
        ("signature", s.as_str()),
    ];
    let ok = (201, "201 Created".to_string());
    let x: &[u8] = b"0123456789";
    assert_eq!(answer_of(&c, cpath, &attrs, &[("f", "x.txt", x)]).await, ok);
    assert_eq!(
        head_status(&c, &auth, "/v1/AUTH_test/keyed/x.txt").await,
        200
    );
    // One byte too many: refused, nothing stored.
    let too_big = (400, "FormPost: max_file_size exceeded".to_string());
    let y: &[u8] = b"0123456789A";
    assert_eq!(
        answer_of(&c, cpath, &attrs, &[("f", "y.txt", y)]).await,
        too_big
    );
    assert_eq!(
        head_status(&c, &auth, "/v1/AUTH_test/keyed/y.txt").await,
        404
    );
    let no_files = (
        400,
        "400 Bad Request\r\nFormPost: No Files To Process".to_string(),
    );
    assert_eq!(answer_of(&c, cpath, &attrs, &[]).await, no_files);

    // Bad signature, expired form, bad attribute.
    let z: &[(&str, &str, &[u8])] = &[("f", "z", b"z")];
    let mut bad = attrs;
    bad[3].1 = "deadbeef";
    let unauthorized = (401, "FormPost: Invalid Signature".to_string());
    assert_eq!(answer_of(&c, cpath, &bad, z).await, unauthorized);
    let old = (in_secs(0) - 5).to_string();
    let old_sig = form_sig(CKEY, cpath, "", "10", "1", &old);
    let mut expired = attrs;
    expired[2].1 = &old;
    expired[3].1 = &old_sig;
    let gone = (401, "FormPost: Form Expired".to_string());
    assert_eq!(answer_of(&c, cpath, &expired, z).await, gone);
    let mut nan = attrs;
    nan[0].1 = "ten";
    let nan_answer = (400, "FormPost: max_file_size not an integer".to_string());
    assert_eq!(answer_of(&c, cpath, &nan, z).await, nan_answer);
    // A body that is not this form.
    let ct = [("content-type", "multipart/form-data; boundary=XB")];
    let r = c.req("POST", cpath, &ct, full("not a form at all")).await;
    assert_eq!(r.status, 400);
    assert_eq!(body_of(r).await, "FormPost: invalid starting boundary");
    // A signature for another path does not sign this one.
    let r = post_form(&c, "/v1/AUTH_test/keyed/sub", &attrs, z).await;
    assert_eq!(r.status, 401);
    // Not a form: an ordinary (authenticated) container POST.
    let r = c.req("POST", cpath, &auth, empty()).await;
    assert_eq!(r.status, 204);
}
