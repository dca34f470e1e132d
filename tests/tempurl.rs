//! End-to-end TempURL and FormPost against a fresh `cairn aio`: URLs made by
//! python-swiftclient's `swift tempurl` and fetched with a plain HTTP client and no
//! token; a form posted by curl with a signature computed by Python's `hmac`
//! (so nothing here trusts Cairn's own signing code).

mod support;

use std::path::Path;
use std::process::Command;

use support::{header, http, ok, Client, Cluster};

const KEY: &str = "e2e-temp-url-key";

/// `swift tempurl <args>`: the URL path it prints.
fn tempurl(cluster: &Cluster, args: &[&str]) -> String {
    let mut all = vec!["tempurl"];
    all.extend_from_slice(args);
    ok(&cluster.swift(&all), "swift tempurl", cluster)
        .trim()
        .to_string()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// HMAC-SHA256 hex of `msg` under [`KEY`], by Python's standard library.
fn python_hmac(msg: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hmac, hashlib, sys; \
             print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())",
            KEY,
            msg,
        ])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// POST a form with curl (`-F` fields in order, files as `@path`): `(status, location)`.
fn curl_form(url: &str, fields: &[String], cwd: &Path) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.current_dir(cwd)
        .args(["-sS", "--max-time", "60", "-o", "/dev/null"])
        .args(["-w", "%{http_code} %{redirect_url}"]);
    for f in fields {
        cmd.arg("-F").arg(f);
    }
    let out = cmd.arg(url).output().expect("run curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (status, location) = text.split_once(' ').unwrap_or((&text, ""));
    (status.parse().expect("status"), location.to_string())
}

#[test]
fn temp_urls_and_form_posts_with_real_clients() {
    let cluster = Cluster::start(4);
    let work = cluster.dir.path().join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    std::fs::write(work.join("hello.txt"), "hello, temp url\n").expect("write");
    let run = |args: &[&str]| cluster.swift_in(args, &work);
    ok(
        &run(&["upload", "shared", "hello.txt"]),
        "swift upload",
        &cluster,
    );
    ok(
        &run(&["post", "-m", &format!("Temp-URL-Key:{KEY}")]),
        "swift post key",
        &cluster,
    );
    let addr = cluster.proxy_addr();
    let object = "/v1/AUTH_test/shared/hello.txt";

    // /info advertises both middlewares.
    let (status, _, body) = http(addr, "GET", "/info", &[], b"");
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_slice(&body).expect("info json");
    assert_eq!(
        info["tempurl"]["methods"],
        serde_json::json!(["GET", "HEAD", "PUT", "POST", "DELETE"])
    );
    assert_eq!(
        info["formpost"]["allowed_digests"],
        serde_json::json!(["sha1", "sha256", "sha512"])
    );

    // GET with URLs from `swift tempurl` (default sha256, sha512, sha1, ISO 8601 expiry),
    // no token at all.
    for extra in [
        &[][..],
        &["--digest", "sha512"][..],
        &["--digest", "sha1"][..],
        &["--iso8601"][..],
        &["--ip-range", "127.0.0.1"][..],
    ] {
        let mut args = extra.to_vec();
        args.extend_from_slice(&["GET", "300", object, KEY]);
        let url = tempurl(&cluster, &args);
        let (status, headers, body) = http(addr, "GET", &url, &[], b"");
        assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
        assert_eq!(body, b"hello, temp url\n", "{url}");
        assert_eq!(
            header(&headers, "content-disposition"),
            Some("attachment; filename=\"hello.txt\"; filename*=UTF-8''hello.txt")
        );
    }
    let get_url = tempurl(&cluster, &["GET", "300", object, KEY]);
    // HEAD rides on a GET signature; the URL grants nothing else.
    let (status, _, _) = http(addr, "HEAD", &get_url, &[], b"");
    assert_eq!(status, 200);
    let (status, _, body) = http(addr, "DELETE", &get_url, &[], b"");
    assert_eq!(status, 401);
    assert_eq!(body, b"401 Unauthorized: Temp URL invalid\n");
    for wrong in [
        get_url.replacen("hello.txt", "other.txt", 1),
        get_url.replacen("/shared/hello.txt", "/shared", 1),
        get_url.replacen("/shared/", "/elsewhere/", 1),
    ] {
        let (status, _, body) = http(addr, "GET", &wrong, &[], b"");
        assert_eq!(status, 401, "{wrong}");
        assert_eq!(body, b"401 Unauthorized: Temp URL invalid\n");
    }
    // Expired (an absolute time in the past) and IP-restricted elsewhere.
    let past = (unix_now() - 60).to_string();
    let expired = tempurl(&cluster, &["--absolute", "GET", &past, object, KEY]);
    let (status, _, body) = http(addr, "GET", &expired, &[], b"");
    assert_eq!(status, 401);
    assert_eq!(body, b"401 Unauthorized: Temp URL invalid\n");
    let foreign = tempurl(
        &cluster,
        &["--ip-range", "192.0.2.0/24", "GET", "300", object, KEY],
    );
    assert_eq!(http(addr, "GET", &foreign, &[], b"").0, 401);

    // PUT through a temp URL, then read it back with a token.
    let put_path = "/v1/AUTH_test/shared/uploaded.bin";
    let put_url = tempurl(&cluster, &["PUT", "300", put_path, KEY]);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (status, _, body) = http(addr, "PUT", &put_url, &[], &data);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let client = Client::login(&cluster, "test:tester", "testing");
    let (status, _, got) = client.req("GET", "/shared/uploaded.bin", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(got, data);

    // Prefix-based: one signature for everything under `up/`.
    let pre_url = tempurl(
        &cluster,
        &[
            "--prefix-based",
            "GET",
            "300",
            "/v1/AUTH_test/shared/up",
            KEY,
        ],
    );

    // FormPost: two files and a redirect, signed with Python's hmac.
    let form_path = "/v1/AUTH_test/shared/up/";
    let redirect = "https://example.com/uploaded";
    let expires = (unix_now() + 300).to_string();
    let sig = python_hmac(&format!("{form_path}\n{redirect}\n1048576\n2\n{expires}"));
    let big: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(work.join("first.txt"), "first file\n").expect("write");
    std::fs::write(work.join("second.bin"), &big).expect("write");
    let url = format!("http://{addr}{form_path}");
    let fields = vec![
        format!("redirect={redirect}"),
        "max_file_size=1048576".to_string(),
        "max_file_count=2".to_string(),
        format!("expires={expires}"),
        format!("signature={sig}"),
        "file1=@first.txt".to_string(),
        "file2=@second.bin".to_string(),
    ];
    let (status, location) = curl_form(&url, &fields, &work);
    assert_eq!(status, 303, "{}", cluster.logs());
    assert_eq!(location, format!("{redirect}?status=201&message="));
    let (status, _, got) = client.req("GET", "/shared/up/first.txt", &[], b"");
    assert_eq!((status, got), (200, b"first file\n".to_vec()));
    let (status, _, got) = client.req("GET", "/shared/up/second.bin", &[], b"");
    assert_eq!(status, 200);
    assert!(got == big, "second.bin differs ({} bytes)", got.len());
    // The prefix URL made before the upload reads the uploaded files.
    let (status, _, body) = http(
        addr,
        "GET",
        &pre_url.replacen("/shared/up?", "/shared/up/first.txt?", 1),
        &[],
        b"",
    );
    assert_eq!((status, body), (200, b"first file\n".to_vec()));

    // A form with a wrong signature stores nothing.
    let mut bad = fields.clone();
    bad[4] = format!("signature={}", "0".repeat(64));
    bad[5] = "file1=@hello.txt".to_string();
    bad.truncate(6);
    let (status, _) = curl_form(&url, &bad, &work);
    assert_eq!(status, 401);
    let (status, _, _) = client.req("HEAD", "/shared/up/hello.txt", &[], b"");
    assert_eq!(status, 404);
}
