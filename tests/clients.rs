//! End-to-end with real clients (issue 6): python-swiftclient's CLI and its `Connection`
//! library, and rclone's swift backend, against a fresh `cairn aio`.
//! `.ci/run` installs both (pip `python-swiftclient`, Debian `rclone`).

mod support;

use std::path::Path;
use std::process::Command;

use support::{ok, Cluster};

fn write_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    std::fs::write(root.join("hello.txt"), "hello, cairn\n").expect("write");
    std::fs::write(
        root.join("sub/data.bin"),
        (0..200_000u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .expect("write");
    std::fs::write(root.join("sub/deeper/ünïcode name.txt"), "unicode\n").expect("write");
    std::fs::write(root.join("empty"), "").expect("write");
}

fn same_tree(a: &Path, b: &Path) {
    for rel in [
        "hello.txt",
        "sub/data.bin",
        "sub/deeper/ünïcode name.txt",
        "empty",
    ] {
        let x =
            std::fs::read(a.join(rel)).unwrap_or_else(|e| panic!("{}: {e}", a.join(rel).display()));
        let y =
            std::fs::read(b.join(rel)).unwrap_or_else(|e| panic!("{}: {e}", b.join(rel).display()));
        assert_eq!(x, y, "{rel} differs");
    }
}

#[test]
fn swift_cli_upload_list_download_copy_segments_delete() {
    let cluster = Cluster::start(4);
    let work = cluster.dir.path().join("swift-work");
    let src = work.join("src");
    write_tree(&src);
    let run = |args: &[&str]| cluster.swift_in(args, &work);

    ok(&run(&["upload", "docs", "src"]), "swift upload", &cluster);
    let listing = ok(&run(&["list", "docs"]), "swift list", &cluster);
    for name in [
        "src/hello.txt",
        "src/sub/data.bin",
        "src/sub/deeper/ünïcode name.txt",
        "src/empty",
    ] {
        assert!(
            listing.lines().any(|l| l == name),
            "{name} not listed:\n{listing}"
        );
    }
    let stat = ok(&run(&["stat", "docs"]), "swift stat docs", &cluster);
    assert!(stat.contains("Objects: 4"), "{stat}");

    ok(
        &run(&["post", "-m", "color:blue", "docs", "src/hello.txt"]),
        "swift post",
        &cluster,
    );
    let stat = ok(
        &run(&["stat", "docs", "src/hello.txt"]),
        "swift stat object",
        &cluster,
    );
    assert!(stat.contains("Meta Color: blue"), "{stat}");

    // Segmented upload (SLO by default in swiftclient; DLO with --use-dlo-style… not needed).
    ok(
        &run(&["upload", "-S", "65536", "big", "src/sub/data.bin"]),
        "swift upload -S",
        &cluster,
    );
    let segs = ok(&run(&["list", "big_segments"]), "list segments", &cluster);
    assert!(segs.lines().count() >= 4, "{segs}");

    let down = work.join("down");
    std::fs::create_dir_all(&down).expect("mkdir");
    ok(
        &cluster.swift_in(&["download", "docs"], &down),
        "swift download",
        &cluster,
    );
    same_tree(&src, &down.join("src"));
    ok(
        &cluster.swift_in(
            &["download", "big", "src/sub/data.bin", "-o", "big.bin"],
            &down,
        ),
        "download SLO",
        &cluster,
    );
    assert_eq!(
        std::fs::read(down.join("big.bin")).expect("big.bin"),
        std::fs::read(src.join("sub/data.bin")).expect("data.bin")
    );

    ok(
        &run(&["copy", "-d", "/docs/copy.txt", "docs", "src/hello.txt"]),
        "swift copy",
        &cluster,
    );
    let listing = ok(&run(&["list", "docs"]), "list after copy", &cluster);
    assert!(listing.lines().any(|l| l == "copy.txt"), "{listing}");

    ok(
        &run(&["delete", "docs"]),
        "swift delete container",
        &cluster,
    );
    ok(
        &run(&["delete", "big"]),
        "swift delete SLO container",
        &cluster,
    );
    let containers = ok(&run(&["list"]), "swift list account", &cluster);
    assert!(
        !containers.lines().any(|l| l == "docs" || l == "big"),
        "{containers}"
    );
}

const CONNECTION_SCRIPT: &str = r#"
import sys, swiftclient
auth, user, key = sys.argv[1:4]
c = swiftclient.Connection(authurl=auth, user=user, key=key, retries=0)
c.put_container("lib", headers={"X-Container-Meta-Owner": "tests"})
etag = c.put_object("lib", "a/b.txt", contents=b"library body", content_type="text/plain",
                    headers={"X-Object-Meta-Kind": "test"})
hdrs, body = c.get_object("lib", "a/b.txt")
assert body == b"library body", body
assert hdrs["etag"] == etag, (hdrs, etag)
assert hdrs["x-object-meta-kind"] == "test", hdrs
hdrs, body = c.get_object("lib", "a/b.txt", headers={"Range": "bytes=0-6"})
assert body == b"library", body
h = c.head_container("lib")
assert h["x-container-object-count"] == "1", h
assert h["x-container-meta-owner"] == "tests", h
_, listing = c.get_container("lib", prefix="a/", delimiter="/")
assert [o["name"] for o in listing] == ["a/b.txt"], listing
_, listing = c.get_container("lib", delimiter="/")
assert listing == [{"subdir": "a/"}], listing
try:
    c.get_object("lib", "missing")
    raise SystemExit("missing object did not raise")
except swiftclient.ClientException as e:
    assert e.http_status == 404, e
c.delete_object("lib", "a/b.txt")
c.delete_container("lib")
_, containers = c.get_account()
assert all(x["name"] != "lib" for x in containers), containers
print("connection api ok")
"#;

#[test]
fn swiftclient_connection_api() {
    let cluster = Cluster::start(4);
    let out = Command::new("python3")
        .arg("-c")
        .arg(CONNECTION_SCRIPT)
        .arg(cluster.auth_url())
        .arg("test:tester")
        .arg("testing")
        .output()
        .expect("python3");
    let stdout = ok(&out, "swiftclient Connection script", &cluster);
    assert!(stdout.contains("connection api ok"), "{stdout}");
}

#[test]
fn rclone_copy_sync_check_lsjson() {
    let cluster = Cluster::start(4);
    let work = cluster.dir.path().join("rclone-work");
    let src = work.join("src");
    write_tree(&src);
    let rclone = |args: &[&str]| {
        Command::new("rclone")
            .args(args)
            .env("RCLONE_CONFIG", work.join("rclone.conf"))
            .env("RCLONE_CONFIG_CAIRN_TYPE", "swift")
            .env("RCLONE_CONFIG_CAIRN_AUTH", cluster.auth_url())
            .env("RCLONE_CONFIG_CAIRN_USER", "test:tester")
            .env("RCLONE_CONFIG_CAIRN_KEY", "testing")
            .output()
            .unwrap_or_else(|e| panic!("cannot run rclone ({e}): install rclone (see .ci/run)"))
    };
    let s = src.to_str().expect("utf-8");
    ok(&rclone(&["copy", s, "cairn:rc"]), "rclone copy", &cluster);
    ok(&rclone(&["check", s, "cairn:rc"]), "rclone check", &cluster);
    let json = ok(
        &rclone(&["lsjson", "-R", "cairn:rc"]),
        "rclone lsjson",
        &cluster,
    );
    let entries: serde_json::Value = serde_json::from_str(&json).expect("lsjson output");
    let files: Vec<&str> = entries
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| e["IsDir"] == false)
        .filter_map(|e| e["Path"].as_str())
        .collect();
    assert_eq!(files.len(), 4, "{json}");

    // Change the source, sync it up, then sync back down into an empty folder.
    std::fs::remove_file(src.join("empty")).expect("rm");
    std::fs::write(src.join("hello.txt"), "changed\n").expect("write");
    ok(
        &rclone(&["sync", s, "cairn:rc"]),
        "rclone sync up",
        &cluster,
    );
    ok(
        &rclone(&["check", s, "cairn:rc"]),
        "rclone check after sync",
        &cluster,
    );
    let back = work.join("back");
    ok(
        &rclone(&["sync", "cairn:rc", back.to_str().expect("utf-8")]),
        "rclone sync down",
        &cluster,
    );
    assert_eq!(
        std::fs::read_to_string(back.join("hello.txt")).expect("hello"),
        "changed\n"
    );
    assert!(!back.join("empty").exists());
    assert_eq!(
        std::fs::read(back.join("sub/data.bin")).expect("data"),
        std::fs::read(src.join("sub/data.bin")).expect("data")
    );
}
