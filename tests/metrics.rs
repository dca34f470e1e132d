//! End-to-end metrics (issue 11): servers' `/metrics` cover requests by method and status,
//! latency histograms, bytes in and out, backend errors by node (proxy), and the progress
//! of the node's replicator and auditor.

mod support;

use std::net::SocketAddr;

use support::{http, Client, Cluster};

fn metrics(addr: SocketAddr) -> String {
    let (status, _, body) = http(addr, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    String::from_utf8_lossy(&body).to_string()
}

#[test]
fn metrics_cover_requests_latency_bytes_errors_and_daemons() {
    let cluster = Cluster::start(4);
    let client = Client::login(&cluster, "test:tester", "testing");
    assert_eq!(client.req("PUT", "/m", &[], b"").0, 201);
    for i in 0..5 {
        assert_eq!(
            client.req("PUT", &format!("/m/o{i}"), &[], b"some bytes").0,
            201
        );
        assert_eq!(client.req("GET", &format!("/m/o{i}"), &[], b"").0, 200);
    }
    cluster.run_once(1, "object-replicator");
    cluster.run_once(1, "object-auditor");

    let node1 = SocketAddr::from(([127, 0, 0, 1], cluster.object_port(1)));
    let text = metrics(node1);
    for needle in [
        "cairn_http_requests_total{server=\"object-server\",method=\"PUT\",status=\"201\"}",
        "cairn_http_request_duration_seconds_bucket{server=\"object-server\",method=\"PUT\"",
        "cairn_http_bytes_total{server=\"object-server\",direction=\"in\"}",
        "cairn_daemon_progress{file=\"object\",key=\"replication.object_replication_time\"}",
        "cairn_daemon_progress{file=\"object\",key=\"auditor.object_auditor_last_pass_ALL",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from object server metrics:\n{text}"
        );
    }

    // A stopped node shows up in the proxy's backend errors by node.
    cluster.stop_daemon("object-server-node2");
    for i in 0..10 {
        assert_eq!(client.req("PUT", &format!("/m/p{i}"), &[], b"x").0, 201);
    }
    let text = metrics(cluster.proxy_addr());
    let node2 = format!("127.0.0.1:{}", cluster.object_port(2));
    assert!(
        text.lines()
            .any(|l| l.starts_with("cairn_proxy_backend_errors_total") && l.contains(&node2)),
        "no backend errors for {node2}:\n{text}"
    );
    assert!(text.contains(
        "cairn_http_requests_total{server=\"proxy-server\",method=\"GET\",status=\"200\"}"
    ));
}
