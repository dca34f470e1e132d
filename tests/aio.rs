//! End-to-end: `cairn aio` on a fresh directory serves python-swiftclient.

mod support;

use support::Cluster;

#[test]
fn aio_starts_and_swift_stat_works() {
    let cluster = Cluster::start(4);
    let out = cluster.swift(&["stat"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "swift stat failed: {}\n{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    assert!(stdout.contains("Account: AUTH_test"), "{stdout}");
    assert!(stdout.contains("Containers: 0"), "{stdout}");
}
