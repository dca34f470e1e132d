//! End-to-end read affinity (issue 12): a two-region `cairn aio --regions 2` serves reads
//! from the proxy's own region (region 1) first, counted in the proxy's metrics.

mod support;

use support::{http, Client, Cluster};

fn affinity_hits(cluster: &Cluster) -> u64 {
    let (status, _, body) = http(cluster.proxy_addr(), "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body).to_string();
    text.lines()
        .filter(|l| l.starts_with("cairn_proxy_read_affinity_hits_total"))
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[test]
fn two_region_cluster_reads_from_the_local_region() {
    let cluster = Cluster::start_with(4, &["--regions", "2"]);
    let client = Client::login(&cluster, "test:tester", "testing");
    assert_eq!(client.req("PUT", "/near", &[], b"").0, 201);
    for i in 0..20 {
        assert_eq!(
            client.req("PUT", &format!("/near/o{i}"), &[], b"payload").0,
            201
        );
    }
    let before = affinity_hits(&cluster);
    for i in 0..20 {
        let (status, _, body) = client.req("GET", &format!("/near/o{i}"), &[], b"");
        assert_eq!((status, body.as_slice()), (200, b"payload".as_slice()));
    }
    // With 3 replicas over 2 regions every object has a copy in region 1, and every
    // read is served from there.
    assert_eq!(affinity_hits(&cluster) - before, 20, "\n{}", cluster.logs());

    // Stop region 2's object servers: reads keep working from region 1.
    cluster.stop_daemon("object-server-node3");
    cluster.stop_daemon("object-server-node4");
    for i in 0..20 {
        assert_eq!(client.req("GET", &format!("/near/o{i}"), &[], b"").0, 200);
    }
}
