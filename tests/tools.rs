//! End-to-end test of the online operator tools (issue 11) against a real 4-node aio
//! cluster: `cairn dispersion populate|report` and `cairn recon`.
//!
//! Populate, then the report finds every copy and recon finds every server well. One
//! object server is stopped and its object data wiped: the report counts the missing
//! copies (exit 1) and recon flags the server unreachable (exit 1). The server returns,
//! one object-replicator pass runs on every node, and the report is back to 100%. Last,
//! recon run against a copy of the cluster file whose ring directory holds a different
//! object ring flags every object server's ring as mismatched.
//!
//! The tools are called through the `cairn-tools` library for their figures, and through
//! the binary for their exit statuses.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_ring::file::{write_file, RING_MAGIC};
use cairn_tools::{
    dispersion_populate, dispersion_report, recon_report, CommonArgs, DispersionReport,
    PopulateArgs, ReconArgs, ReportArgs,
};
use support::{Cluster, CAIRN};

fn cluster_file(cluster: &Cluster) -> PathBuf {
    cluster.data_dir().join("etc").join("cairn.toml")
}

fn common(cluster: &Cluster) -> CommonArgs {
    let mut c = CommonArgs::new(&cluster.auth_url(), cluster_file(cluster));
    c.retries = 1;
    c.timeout = 5.0;
    c
}

fn report(cluster: &Cluster) -> DispersionReport {
    dispersion_report(&ReportArgs {
        common: common(cluster),
        threshold: 100.0,
        partitions: false,
    })
    .expect("dispersion report")
}

/// `cairn dispersion report` through the binary: its exit code.
fn report_exit(cluster: &Cluster) -> Option<i32> {
    let out = Command::new(CAIRN)
        .args(["dispersion", "report", "--json", "--retries", "1", "--auth"])
        .arg(cluster.auth_url())
        .arg("--cluster-config")
        .arg(cluster_file(cluster))
        .output()
        .expect("run cairn dispersion report");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(v["object"]["pct_found"].is_number(), "{v}");
    out.status.code()
}

/// `cairn recon` through the binary: its exit code.
fn recon_exit(config: &Path) -> Option<i32> {
    let out = Command::new(CAIRN)
        .args(["recon", "--timeout", "3", "--cluster-config"])
        .arg(config)
        .output()
        .expect("run cairn recon");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("SERVER"), "{text}");
    out.status.code()
}

#[test]
fn dispersion_and_recon_see_a_node_fail_and_heal() {
    let cluster = Cluster::start(4);
    let config = cluster_file(&cluster);

    // Populate: 1% of 1024 partitions on each ring.
    let summary = dispersion_populate(&PopulateArgs {
        common: common(&cluster),
        coverage: 1.0,
    })
    .expect("populate");
    let containers = summary.containers.as_ref().expect("containers");
    let objects = summary.objects.as_ref().expect("objects");
    assert_eq!(containers.names.len(), 10, "{summary:?}");
    assert_eq!(objects.names.len(), 10, "{summary:?}");
    assert!(summary.text().contains("Created 10 objects"));

    // Every copy is where the ring says.
    let r = report(&cluster);
    assert!(r.healthy(), "{}\n{}", r.text(), cluster.logs());
    let (c, o) = (r.container.as_ref().unwrap(), r.object.as_ref().unwrap());
    assert_eq!(
        (c.partitions, c.copies_found, c.copies_expected),
        (10, 30, 30)
    );
    assert_eq!(
        (o.partitions, o.copies_found, o.copies_expected),
        (10, 30, 30)
    );
    assert!(r
        .text()
        .contains("100.00% of object copies found (30 of 30)"));
    assert_eq!(report_exit(&cluster), Some(0));

    // Recon: 12 servers (4 nodes × object, container, account), all well.
    let rec = recon_report(&ReconArgs::new(config.clone())).expect("recon");
    assert_eq!(rec.servers.len(), 12, "{}", rec.text());
    assert!(rec.problems().is_empty(), "{}", rec.text());
    assert!(rec
        .text()
        .contains("12 servers, 12 reachable, 0 unreachable"));
    assert_eq!(recon_exit(&config), Some(0));

    // Node 2's object server goes down and its object data is lost.
    cluster.stop_daemon("object-server-node2");
    let node2 = format!("127.0.0.1:{}", cluster.object_port(2));
    let lost = cluster.data_dir().join("node2/devices/sdb2/objects");
    if lost.exists() {
        std::fs::remove_dir_all(&lost).expect("wipe node 2's objects");
    }

    let r = report(&cluster);
    let o = r.object.as_ref().unwrap();
    assert!(!r.healthy(), "{}", r.text());
    assert!(o.copies_found < 30, "{}", r.text());
    assert_eq!(o.copies_expected, 30);
    assert!(o.missing.get(&1).copied().unwrap_or(0) > 0, "{}", r.text());
    assert!(!o.missing.contains_key(&3), "{}", r.text());
    assert_eq!(
        o.copies_found + o.missing_partitions.iter().map(|p| p.1 as u64).sum::<u64>(),
        30
    );
    assert!(!o.errors.is_empty(), "connection failures are reported");
    assert!(r.text().contains("missing 1 copy"), "{}", r.text());
    // The container servers are all up.
    assert_eq!(r.container.as_ref().unwrap().pct_found(), 100.0);
    assert_eq!(report_exit(&cluster), Some(1));

    let rec = recon_report(&ReconArgs::new(config.clone())).expect("recon");
    let down: Vec<&str> = rec
        .servers
        .iter()
        .filter(|s| !s.reachable())
        .map(|s| s.address.as_str())
        .collect();
    assert_eq!(down, vec![node2.as_str()], "{}", rec.text());
    let problems = rec.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(&format!("{node2} unreachable"))),
        "{problems:?}"
    );
    assert!(rec.text().contains("UNREACHABLE"));
    assert!(rec
        .text()
        .contains("12 servers, 11 reachable, 1 unreachable"));
    assert_eq!(recon_exit(&config), Some(1));

    // Node 2 returns (empty); one replication pass on every node restores its copies.
    let _node2 = cluster.start_server(2, "object", cluster.object_port(2));
    for node in 1..=4 {
        cluster.run_once(node, "object-replicator");
    }
    let r = report(&cluster);
    assert!(r.healthy(), "{}\n{}", r.text(), cluster.logs());
    assert_eq!(r.object.as_ref().unwrap().copies_found, 30);
    assert_eq!(report_exit(&cluster), Some(0));
    let rec = recon_report(&ReconArgs::new(config.clone())).expect("recon");
    assert!(rec.problems().is_empty(), "{}", rec.text());
    // The passes just run are reported.
    let repl = rec
        .servers
        .iter()
        .find(|s| s.address == node2)
        .unwrap()
        .replication("object", rec.now);
    assert!(repl.age.is_some_and(|a| a < 600.0), "{repl:?}");

    // A cluster file whose ring directory holds another object ring: every object
    // server's ring differs from it, the others match.
    let other = tempfile::tempdir().expect("temp dir");
    let rings = other.path().join("rings");
    std::fs::create_dir(&rings).unwrap();
    std::fs::copy(&config, other.path().join("cairn.toml")).unwrap();
    let src = cluster.data_dir().join("etc").join("rings");
    for name in ["container.ring", "account.ring"] {
        std::fs::copy(src.join(name), rings.join(name)).unwrap();
    }
    let ring = cairn_ring::Ring::load(&src.join("object.ring")).expect("object ring");
    let mut data = ring.data().clone();
    data.version += 1;
    write_file(RING_MAGIC, &rings.join("object.ring"), &data, true).expect("write ring");
    let other_config = other.path().join("cairn.toml");
    let rec = recon_report(&ReconArgs::new(other_config.clone())).expect("recon");
    let mismatched: Vec<&str> = rec
        .servers
        .iter()
        .filter(|s| !s.ring_mismatches(&rec.local_rings).is_empty())
        .map(|s| s.address.as_str())
        .collect();
    // Every server reads the same ring directory: all 12 report the object ring.
    assert_eq!(mismatched.len(), 12, "{}", rec.text());
    for s in &rec.servers {
        assert_eq!(
            s.ring_mismatches(&rec.local_rings),
            vec!["object.ring".to_string()],
            "{}",
            s.address
        );
    }
    assert!(
        rec.text().contains("MISMATCH object.ring"),
        "{}",
        rec.text()
    );
    assert_eq!(
        rec.problems()
            .iter()
            .filter(|p| p.contains("ring MD5 differs"))
            .count(),
        12
    );
    assert_eq!(recon_exit(&other_config), Some(1));
}
