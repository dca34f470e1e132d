//! `cairn bench` against an in-process fake Swift endpoint on 127.0.0.1: counts and error
//! tables, never timings.

mod support;

use clap::Parser;
use support::fake_swift;

use cairn_bench::{BenchArgs, BenchError};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn args(argv: &[&str]) -> BenchArgs {
    Cli::try_parse_from(std::iter::once("bench").chain(argv.iter().copied()))
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
        .args
}

fn auth<'a>(url: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--auth",
        url,
        "-U",
        "test:tester",
        "-K",
        "testing",
        "--threads",
        "1",
    ];
    v.extend_from_slice(rest);
    v
}

#[test]
fn put_then_get_head_list_delete() {
    let fake = fake_swift::start_in_background();
    let url = fake.auth_url();

    let put = cairn_bench::run_summary(args(&auth(
        &url,
        &[
            "put",
            "--size",
            "3K",
            "-c",
            "4",
            "-n",
            "40",
            "--containers",
            "3",
            "--verify",
        ],
    )))
    .unwrap();
    assert_eq!(put.workload, "put");
    assert_eq!(put.requests, 40);
    assert_eq!(put.ok, 40, "{:?}", put.errors_by_status);
    assert_eq!(put.errors, 0);
    assert_eq!(put.bytes, 40 * 3072);
    assert_eq!(put.latency_ms.samples, 40);
    assert!(put.latency_ms.max >= put.latency_ms.p50);
    assert_eq!(fake.object_count(), 40);
    assert_eq!(fake.container_count(), 3);
    assert_eq!(fake.counts().container_put, 3);
    assert_eq!(fake.counts().auth, 1);

    let get = cairn_bench::run_summary(args(&auth(
        &url,
        &[
            "get",
            "-c",
            "4",
            "-n",
            "40",
            "--containers",
            "3",
            "--verify",
        ],
    )))
    .unwrap();
    assert_eq!(get.requests, 40);
    assert_eq!(get.ok, 40, "{:?}", get.errors_by_status);
    assert_eq!(get.errors, 0);
    assert_eq!(get.bytes, 40 * 3072);
    assert_eq!(fake.counts().get, 40);
    // get does not PUT containers.
    assert_eq!(fake.counts().container_put, 3);

    // More requests than objects: round robin over --objects.
    let head = cairn_bench::run_summary(args(&auth(
        &url,
        &[
            "--op",
            "head",
            "-n",
            "100",
            "--objects",
            "40",
            "--containers",
            "3",
        ],
    )))
    .unwrap();
    assert_eq!((head.ok, head.errors, head.bytes), (100, 0, 0));

    let list =
        cairn_bench::run_summary(args(&auth(&url, &["list", "-n", "6", "--containers", "3"])))
            .unwrap();
    assert_eq!((list.ok, list.errors), (6, 0));
    assert!(list.bytes > 0);

    // Objects 40..50 do not exist: 10 × 404 in the error table.
    let del = cairn_bench::run_summary(args(&auth(
        &url,
        &[
            "delete",
            "-n",
            "50",
            "--objects",
            "50",
            "--containers",
            "3",
            "--json",
        ],
    )))
    .unwrap();
    assert_eq!(del.ok, 40);
    assert_eq!(del.errors, 10);
    assert_eq!(del.errors_by_status.get("404"), Some(&10));
    assert_eq!(fake.object_count(), 0);

    let json = serde_json::to_value(&del).unwrap();
    assert_eq!(json["per_op"]["delete"]["errors_by_status"]["404"], 10);
    assert!(json["cpu"]["us_per_request"].as_f64().unwrap() >= 0.0);
}

#[test]
fn mixed_with_cleanup_leaves_nothing() {
    let fake = fake_swift::start_in_background();
    let url = fake.auth_url();
    let s = cairn_bench::run_summary(args(&auth(
        &url,
        &[
            "mixed",
            "--mix",
            "put=30,get=40,head=10,delete=15,list=5",
            "-n",
            "300",
            "-c",
            "8",
            "--containers",
            "4",
            "--size",
            "1K",
            "--prefix",
            "mix run",
            "--verify",
            "--cleanup",
        ],
    )))
    .unwrap();
    assert_eq!(s.requests, 300);
    assert_eq!(s.errors, 0, "{:?}", s.errors_by_status);
    assert_eq!(
        s.mix.as_deref(),
        Some("put=30,get=40,head=10,delete=15,list=5")
    );
    let per_op: u64 = s.per_op.values().map(|o| o.ok).sum();
    assert_eq!(per_op, 300);
    assert!(s.per_op["put"].ok > 0);
    let cleanup = s.cleanup.unwrap();
    assert_eq!(cleanup.errors, 0);
    assert_eq!(cleanup.containers_deleted, 4);
    assert_eq!(fake.object_count(), 0);
    assert_eq!(fake.container_count(), 0);
}

#[test]
fn duration_mode_and_direct_token() {
    let fake = fake_swift::start_in_background();
    let storage = format!("http://{}/v1/AUTH_test", fake.addr);
    let s = cairn_bench::run_summary(args(&[
        "put",
        "--storage-url",
        &storage,
        "--token",
        fake_swift::TOKEN,
        "-d",
        "300ms",
        "-c",
        "2",
        "--size",
        "0",
        "--cleanup",
    ]))
    .unwrap();
    assert!(s.ok > 0);
    assert_eq!(s.errors, 0);
    assert_eq!(s.bytes, 0);
    assert_eq!(s.cleanup.unwrap().objects_deleted, s.ok);
    assert_eq!(fake.object_count(), 0);

    // A wrong token: container PUT answers 401 → an auth failure (exit 2).
    let e = cairn_bench::run_summary(args(&[
        "put",
        "--storage-url",
        &storage,
        "--token",
        "AUTH_tkwrong",
        "-n",
        "1",
    ]))
    .unwrap_err();
    assert!(matches!(e, BenchError::Auth(_)), "{e}");
    assert_eq!(e.exit_code(), 2);

    // A wrong key: TempAuth answers 401.
    let e = cairn_bench::run_summary(args(&[
        "get",
        "--auth",
        &fake.auth_url(),
        "-U",
        "test:tester",
        "-K",
        "wrong",
        "-n",
        "1",
    ]))
    .unwrap_err();
    assert!(matches!(e, BenchError::Auth(_)), "{e}");
    assert!(e.to_string().contains("401"), "{e}");
}

#[test]
fn missing_objects_are_counted_not_fatal() {
    let fake = fake_swift::start_in_background();
    let s = cairn_bench::run_summary(args(&auth(
        &fake.auth_url(),
        &["get", "-n", "5", "--prefix", "nothing-here"],
    )))
    .unwrap();
    assert_eq!(s.ok, 0);
    assert_eq!(s.errors, 5);
    assert_eq!(s.errors_by_status.get("404"), Some(&5));
}
