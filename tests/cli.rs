//! The `cairn` binary's offline commands: sample configs validate, bad configs and bad
//! ring input exit 2 with one line and leave files untouched, a ring can be built.

use std::path::Path;
use std::process::{Command, Output};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

fn cairn(args: &[&str]) -> Output {
    Command::new(CAIRN).args(args).output().expect("run cairn")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn every_sample_config_in_etc_validates() {
    let etc = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc");
    let mut checked = 0;
    for entry in std::fs::read_dir(&etc).expect("etc dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = cairn(&["check-config", path.to_str().expect("utf-8 path")]);
            assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} sample files");
}

#[test]
fn check_config_names_the_bad_key_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("cairn.toml"),
        "[cluster]\nhash_path_suffix = \"x\"\n",
    )
    .expect("write");
    let file = dir.path().join("object-server.toml");
    std::fs::write(&file, "[object-replicator]\nintervall = 3\n").expect("write");
    let out = cairn(&["check-config", file.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("intervall"), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

#[test]
fn check_config_reports_and_checks_constraints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cairn.toml");
    let path = file.to_str().expect("utf-8");
    let base = "[cluster]\nhash_path_suffix = \"x\"\n[constraints]\n";
    std::fs::write(&file, format!("{base}max_meta_count = 3\n")).expect("write");
    let out = cairn(&["check-config", path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("constraints: max_meta_count = 3"),
        "{stdout}"
    );
    for (bad, key) in [
        (
            "max_object_name_length = 0",
            "constraints.max_object_name_length",
        ),
        ("max_file_size = -5", "max_file_size"),
        ("max_meta_cnt = 3", "max_meta_cnt"),
    ] {
        std::fs::write(&file, format!("{base}{bad}\n")).expect("write");
        let out = cairn(&["check-config", path]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(stderr(&out).contains(key), "{bad}: {}", stderr(&out));
    }
}

#[test]
fn ring_cli_builds_a_ring_and_refuses_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let builder = dir.path().join("object.builder");
    let b = builder.to_str().expect("utf-8");
    assert!(cairn(&["ring", b, "create", "8", "3", "1"])
        .status
        .success());
    let out = cairn(&[
        "ring",
        b,
        "add",
        "r1z1-127.0.0.1:6210/sdb1",
        "100",
        "r1z2-127.0.0.1:6220/sdb2",
        "100",
        "r1z3-127.0.0.1:6230/sdb3",
        "100",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = std::fs::read(&builder).expect("builder");
    // A duplicate device and a negative weight: exit 2, builder untouched.
    for bad in [
        vec!["ring", b, "add", "r1z1-127.0.0.1:6210/sdb1", "100"],
        vec!["ring", b, "set-weight", "d0", "-5"],
        vec!["ring", b, "add", "r1z1-not-an-ip/sdb9", "100"],
    ] {
        let out = cairn(&bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert_eq!(std::fs::read(&builder).expect("builder"), before);
    }
    let out = cairn(&["ring", b, "rebalance", "--seed", "7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("object.ring").exists());
    let out = cairn(&["ring", b, "export", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["assignment"].as_array().map(Vec::len), Some(256));
    // A truncated builder is refused with exit 2.
    std::fs::write(&builder, &before[..before.len() / 2]).expect("truncate");
    let out = cairn(&["ring", b, "list"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
