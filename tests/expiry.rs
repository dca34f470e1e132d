//! End-to-end expiry (issue 10): an object uploaded with `X-Delete-After: 2` answers 404
//! once it has expired, before any expirer runs, and leaves the listing after the expirer.

mod support;

use std::time::{Duration, Instant};

use support::{Client, Cluster};

#[test]
fn expired_object_disappears_then_leaves_the_listing() {
    let cluster = Cluster::start(4);
    let client = Client::login(&cluster, "test:tester", "testing");
    assert_eq!(client.req("PUT", "/exp", &[], b"").0, 201);
    assert_eq!(client.req("PUT", "/exp/keep", &[], b"stays").0, 201);
    assert_eq!(
        client
            .req(
                "PUT",
                "/exp/gone",
                &[("X-Delete-After", "2")],
                b"short-lived"
            )
            .0,
        201
    );
    assert_eq!(client.req("GET", "/exp/gone", &[], b"").0, 200);

    // GET hides the object as soon as its time has passed (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.req("GET", "/exp/gone", &[], b"").0 != 404 {
        assert!(Instant::now() < deadline, "expired object still served");
        std::thread::sleep(Duration::from_millis(250));
    }
    let listing = |c: &Client| {
        let (status, _, body) = c.req("GET", "/exp?format=json", &[], b"");
        assert_eq!(status, 200);
        let rows: serde_json::Value = serde_json::from_slice(&body).expect("json");
        rows.as_array()
            .expect("array")
            .iter()
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listing(&client),
        vec!["gone", "keep"],
        "still listed before the expirer"
    );

    // The queue container reaches the account, then every node's expirer takes its share.
    for node in 1..=cluster.nodes {
        cluster.run_once(node, "container-updater");
    }
    for node in 1..=cluster.nodes {
        cluster.run_once(node, "object-expirer");
    }
    assert_eq!(listing(&client), vec!["keep"], "\n{}", cluster.logs());
    assert_eq!(client.req("GET", "/exp/keep", &[], b"").0, 200);
}
