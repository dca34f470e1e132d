//! Unit tests of the account reaper: the config table, the pure rules (shares, outcome,
//! node pairing, local device), and whole passes against fake storage servers that
//! record every request.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, Mutex};

use cairn_common::http::{full, handler_fn, spawn_server, Body, RequestBody, ServeOptions};
use cairn_common::server_config::parse_role_config;
use cairn_db::ContainerRecord;
use cairn_ring::{Device, RingData};
use http::{Request, Response, StatusCode};

use super::delete::{account_node_for, container_node_for};
use super::*;
use crate::config::AccountServerFile;

#[test]
fn section_defaults_validation_and_unknown_keys() {
    let f: AccountServerFile = parse_role_config("", "t", Path::new("/")).unwrap();
    assert_eq!(f.reaper, ReaperSection::default());
    let s = f.reaper.settings(&f.server);
    assert_eq!(s.interval, Duration::from_secs(3600));
    assert_eq!((s.concurrency, s.width()), (25, 5));
    assert_eq!((s.delay_reaping, s.reap_warn_after), (0.0, 2_592_000.0));
    assert_eq!(s.bind_port, DEFAULT_ACCOUNT_PORT);

    let f: AccountServerFile = parse_role_config(
        "[server]\nbind_port = 6212\n[account-reaper]\ninterval = 2.5\nconcurrency = 8\n\
         delay_reaping = 60\n",
        "t",
        Path::new("/"),
    )
    .unwrap();
    let s = f.reaper.settings(&f.server);
    assert_eq!((s.bind_port, s.width()), (6212, 2));
    assert_eq!(s.interval, Duration::from_millis(2500));
    assert_eq!(s.delay_reaping, 60.0);

    for (text, needle) in [
        ("[account-reaper]\nbogus = 1\n", "bogus"),
        (
            "[account-reaper]\nconcurrency = 0\n",
            "account-reaper.concurrency",
        ),
        (
            "[account-reaper]\ninterval = 0\n",
            "account-reaper.interval",
        ),
        (
            "[account-reaper]\ndelay_reaping = -1\n",
            "account-reaper.delay_reaping",
        ),
        (
            "[account-reaper]\nreap_warn_after = nan\n",
            "account-reaper.reap_warn_after",
        ),
    ] {
        let e = parse_role_config::<AccountServerFile>(text, "t", Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{text}: {e}");
    }
}

#[test]
fn outcome_follows_swift() {
    assert_eq!(Outcome::of(3, 0), Outcome::Deleted);
    assert_eq!(Outcome::of(2, 1), Outcome::Deleted);
    assert_eq!(Outcome::of(1, 2), Outcome::PossiblyRemaining);
    assert_eq!(Outcome::of(1, 1), Outcome::PossiblyRemaining);
    assert_eq!(Outcome::of(0, 3), Outcome::Remaining);
    assert_eq!(Outcome::of(0, 0), Outcome::Remaining);
}

#[test]
fn container_shares_match_swift() {
    // Values of Python's int(md5(name).hexdigest(), 16) % n for n = 1..4.
    for (name, want) in [
        ("c", [0, 1, 1, 3]),
        ("photos", [0, 0, 0, 0]),
        ("container-7", [0, 0, 1, 0]),
        ("été", [0, 0, 0, 2]),
    ] {
        let got: Vec<usize> = (1..=4).map(|n| container_shard(name, n)).collect();
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(container_shard("c", 0), 0);
}

#[test]
fn update_headers_pair_nodes_like_swift() {
    // Container DELETE i carries account node (from the end) R-1-i, cycling.
    let picks: Vec<_> = (0..4).map(|i| account_node_for(i, 3)).collect();
    assert_eq!(picks, [Some(2), Some(1), Some(0), Some(2)]);
    assert_eq!(account_node_for(0, 0), None);
    // Object DELETE i carries container node i mod R.
    let picks: Vec<_> = (0..4).map(|i| container_node_for(i, 3)).collect();
    assert_eq!(picks, [Some(0), Some(1), Some(2), Some(0)]);
    assert_eq!(container_node_for(1, 0), None);
}

fn device(id: u32, ip: &str, port: u16, name: &str) -> Option<Device> {
    Some(Device {
        id,
        region: 1,
        zone: id + 1,
        ip: ip.into(),
        port,
        replication_ip: ip.into(),
        replication_port: port,
        device: name.into(),
        weight: 1.0,
        meta: String::new(),
    })
}

/// A ring of part power 1 whose every partition has `devs` as primaries, in order.
fn ring_of(devs: Vec<Option<Device>>) -> Arc<Ring> {
    let rows = (0..devs.len() as u16).map(|d| vec![d, d]).collect();
    Arc::new(
        Ring::from_data(RingData {
            part_power: 1,
            replica2part2dev: rows,
            devs,
            version: 1,
        })
        .unwrap(),
    )
}

#[test]
fn local_device_is_ip_port_and_device() {
    let ring = ring_of(vec![
        device(0, "127.0.0.1", 6212, "sdb1"),
        device(1, "127.0.0.1", 6222, "sdb2"),
        device(2, "10.0.0.3", 6222, "sdb2"),
    ]);
    let nodes = ring.get_part_nodes_vec(0);
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert_eq!(local_index(&nodes, lo, 6222, "sdb2"), Some(1));
    assert_eq!(local_index(&nodes, lo, 6212, "sdb1"), Some(0));
    assert_eq!(local_index(&nodes, lo, 6212, "sdb2"), None);
    assert_eq!(local_index(&nodes, lo, 6232, "sdb1"), None);
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    assert_eq!(local_index(&nodes, any, 6222, "sdb2"), Some(1));
    let other = "10.0.0.3".parse().unwrap();
    assert_eq!(local_index(&nodes, other, 6222, "sdb2"), Some(2));
}

/// One request a fake storage server saw.
#[derive(Debug, Clone)]
struct Seen {
    node: usize,
    method: String,
    path: String,
    headers: http::HeaderMap,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        cairn_common::http::header_str(&self.headers, name).unwrap_or("")
    }
    /// Path segments after `/DEV/PART/`: account, container[, object].
    fn names(&self) -> Vec<&str> {
        self.path.split('/').skip(3).collect()
    }
}

/// Fake storage nodes (container and object server at once): listings of the
/// configured containers and 204 to every DELETE, every request recorded.
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    _servers: Vec<cairn_common::http::ServerHandle>,
    ring: Arc<Ring>,
}

/// `container -> (policy, objects)`.
type Contents = HashMap<String, (u32, Vec<String>)>;

fn answer(req: &Request<RequestBody>, contents: &Contents) -> Response<Body> {
    let mut resp = Response::new(full(""));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.split('/').collect();
    if req.method() == http::Method::GET && segs.len() == 5 {
        let Some((policy, objs)) = contents.get(segs[4]) else {
            *resp.status_mut() = StatusCode::NOT_FOUND;
            return resp;
        };
        let first_page = req.uri().query().unwrap_or("").ends_with("marker=");
        let rows: Vec<_> = objs
            .iter()
            .filter(|_| first_page)
            .map(|o| json!({"name": o, "bytes": 1}))
            .collect();
        *resp.body_mut() = full(serde_json::to_vec(&rows).unwrap());
        *resp.status_mut() = StatusCode::OK;
        resp.headers_mut().insert(
            "x-backend-storage-policy-index",
            policy.to_string().parse().unwrap(),
        );
    }
    resp
}

async fn fake_nodes(n: usize, contents: Contents) -> Fake {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let contents = Arc::new(contents);
    let (mut servers, mut devs) = (Vec::new(), Vec::new());
    for node in 0..n {
        let (seen, contents) = (seen.clone(), contents.clone());
        let h = handler_fn(move |req: Request<RequestBody>| {
            let (seen, contents) = (seen.clone(), contents.clone());
            async move {
                seen.lock().unwrap().push(Seen {
                    node,
                    method: req.method().to_string(),
                    path: req.uri().path().to_string(),
                    headers: req.headers().clone(),
                });
                answer(&req, &contents)
            }
        });
        let srv = spawn_server(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(h),
            ServeOptions::new("fake"),
        )
        .await
        .unwrap();
        devs.push(device(
            node as u32,
            "127.0.0.1",
            srv.addr().port(),
            &format!("d{node}"),
        ));
        servers.push(srv);
    }
    Fake {
        seen,
        _servers: servers,
        ring: ring_of(devs),
    }
}

const ACCOUNT: &str = "AUTH_gone";
/// The reaper's own account server port (nothing listens there: the reaper only names
/// it in update headers).
const MY_PORT: u16 = 1;

fn secret() -> HashPathSecret {
    HashPathSecret::new("", "s")
}

/// An account DB on `devices/sda` listing `containers`, deleted `age` seconds ago
/// (`None`: not deleted).
fn account_db(devices: &Path, ring: &Ring, containers: &[(&str, u32)], age: Option<u64>) {
    let part = ring.get_part(&secret(), ACCOUNT, None, None);
    let hash = secret().hash_path(ACCOUNT, None, None);
    let db = cairn_db::db_path(devices, "sda", "accounts", part, &hash);
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let created = Timestamp::from_secs(1_700_000_000);
    let (broker, _) = AccountBroker::create(&db, ACCOUNT, created).unwrap();
    for (name, policy) in containers {
        let rec = ContainerRecord::new(name, created, Timestamp::ZERO, 1, 1, i64::from(*policy));
        broker.put_container(&rec).unwrap();
    }
    if let Some(age) = age {
        let now = Timestamp::now();
        let ts = Timestamp::from_raw(now.raw - age * cairn_common::timestamp::UNITS_PER_SEC);
        broker.delete_db(ts).unwrap();
    }
}

fn settings(devices: &Path) -> ReaperSettings {
    let mut s = ReaperSection::default().settings(&ServerSection::default());
    s.devices = devices.to_path_buf();
    s.bind_port = MY_PORT;
    s
}

fn pass_rings(account: Arc<Ring>, fake: &Fake) -> PassRings {
    PassRings {
        account,
        container: fake.ring.clone(),
        objects: [(0, fake.ring.clone()), (1, fake.ring.clone())].into(),
    }
}

fn contents(rows: &[(&str, u32, &[&str])]) -> Contents {
    rows.iter()
        .map(|(c, p, objs)| {
            let objs = objs.iter().map(|o| o.to_string()).collect();
            (c.to_string(), (*p, objs))
        })
        .collect()
}

#[tokio::test]
async fn reaps_objects_then_containers_with_update_headers() {
    let fake = fake_nodes(3, contents(&[("c1", 0, &["a", "b"]), ("c2", 1, &["x"])])).await;
    let devices = tempfile::tempdir().unwrap();
    let account_ring = ring_of(vec![device(0, "127.0.0.1", MY_PORT, "sda")]);
    account_db(
        devices.path(),
        &account_ring,
        &[("c1", 0), ("c2", 1)],
        Some(5),
    );
    let reaper = AccountReaper::new(settings(devices.path()), secret());
    let stats = reaper
        .run_once(&pass_rings(account_ring.clone(), &fake), &Stop::new())
        .await;
    assert_eq!(stats.accounts_reaped, 1);
    assert_eq!((stats.objects_deleted, stats.objects_failures), (3, 0));
    assert_eq!(
        (stats.containers_deleted, stats.containers_failures),
        (2, 0)
    );
    assert_eq!(stats.objects_remaining + stats.containers_remaining, 0);
    assert_eq!(stats.return_codes.get("2"), Some(&(9 + 6 + 4)));

    let seen = fake.seen.lock().unwrap().clone();
    let account_part = account_ring.get_part(&secret(), ACCOUNT, None, None);
    for c in ["c1", "c2"] {
        let (cpart, cnodes) = fake.ring.get_nodes(&secret(), ACCOUNT, Some(c), None);
        let authorities: Vec<String> = cnodes.iter().map(|n| authority(&n.ip, n.port)).collect();
        let of = |m: &str, n: usize| -> Vec<(usize, &Seen)> {
            seen.iter()
                .enumerate()
                .filter(|(_, s)| s.method == m && s.names().len() == n && s.names()[1] == c)
                .collect()
        };
        let (objects, containers) = (of("DELETE", 3), of("DELETE", 2));
        assert_eq!(objects.len(), if c == "c1" { 6 } else { 3 }, "{c}");
        assert_eq!(containers.len(), 3, "{c}");
        // Objects go before their container, each to all three primaries.
        assert!(objects.iter().all(|(i, _)| *i < containers[0].0));
        let mut by_object: HashMap<&str, Vec<usize>> = HashMap::new();
        for (_, s) in &objects {
            by_object.entry(s.names()[2]).or_default().push(s.node);
        }
        for nodes in by_object.values_mut() {
            nodes.sort();
            assert_eq!(nodes, &[0, 1, 2]);
        }
        for (_, s) in &objects {
            assert!(!s.header("x-timestamp").is_empty());
            assert!(authorities.contains(&s.header("x-container-host").to_string()));
            assert_eq!(s.header("x-container-partition"), cpart.to_string());
            let policy = if c == "c2" { "1" } else { "0" };
            assert_eq!(s.header("x-backend-storage-policy-index"), policy);
        }
        for (_, s) in &containers {
            assert_eq!(s.header("x-account-override-deleted"), "yes");
            assert_eq!(s.header("x-account-host"), format!("127.0.0.1:{MY_PORT}"));
            assert_eq!(s.header("x-account-device"), "sda");
            assert_eq!(s.header("x-account-partition"), account_part.to_string());
        }
    }
}

#[tokio::test]
async fn leaves_live_and_recently_deleted_accounts_alone() {
    let fake = fake_nodes(1, contents(&[("c1", 0, &["a"])])).await;
    let account_ring = ring_of(vec![device(0, "127.0.0.1", MY_PORT, "sda")]);
    for (age, delayed) in [(None, 0), (Some(5), 1)] {
        let devices = tempfile::tempdir().unwrap();
        account_db(devices.path(), &account_ring, &[("c1", 0)], age);
        let mut s = settings(devices.path());
        s.delay_reaping = 3600.0;
        let stats = AccountReaper::new(s, secret())
            .run_once(&pass_rings(account_ring.clone(), &fake), &Stop::new())
            .await;
        assert_eq!(
            (stats.accounts_reaped, stats.accounts_delayed),
            (0, delayed)
        );
    }
    assert!(fake.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn each_primary_reaps_its_share_and_others_none() {
    let names: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
    let rows: Vec<(&str, u32, &[&str])> = names.iter().map(|n| (n.as_str(), 0, &[][..])).collect();
    let fake = fake_nodes(2, contents(&rows)).await;
    let listed: Vec<(&str, u32)> = names.iter().map(|n| (n.as_str(), 0)).collect();
    // This node (port MY_PORT, sda) is the second of two account primaries.
    let account_ring = ring_of(vec![
        device(0, "127.0.0.2", MY_PORT, "sda"),
        device(1, "127.0.0.1", MY_PORT, "sda"),
    ]);
    let devices = tempfile::tempdir().unwrap();
    account_db(devices.path(), &account_ring, &listed, Some(5));
    let reaper = AccountReaper::new(settings(devices.path()), secret());
    let rings = pass_rings(account_ring.clone(), &fake);
    let stats = reaper.run_once(&rings, &Stop::new()).await;
    let mine: Vec<&String> = names
        .iter()
        .filter(|n| container_shard(n, 2) == 1)
        .collect();
    assert!(!mine.is_empty() && mine.len() < names.len());
    assert_eq!(stats.containers_deleted, mine.len() as u64);
    let deleted: std::collections::BTreeSet<String> = fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == "DELETE")
        .map(|s| s.names()[1].to_string())
        .collect();
    assert_eq!(deleted, mine.into_iter().cloned().collect());

    // A node that is no primary of the partition does nothing.
    let elsewhere = ring_of(vec![device(0, "127.0.0.2", MY_PORT, "sda")]);
    let before = fake.seen.lock().unwrap().len();
    let stats = reaper
        .run_once(&pass_rings(elsewhere, &fake), &Stop::new())
        .await;
    assert_eq!(stats, ReapStats::default());
    assert_eq!(fake.seen.lock().unwrap().len(), before);
}

#[tokio::test]
async fn a_raised_stop_ends_the_pass_before_any_request() {
    let fake = fake_nodes(1, contents(&[("c1", 0, &["a"])])).await;
    let account_ring = ring_of(vec![device(0, "127.0.0.1", MY_PORT, "sda")]);
    let devices = tempfile::tempdir().unwrap();
    account_db(devices.path(), &account_ring, &[("c1", 0)], Some(5));
    let stop = Stop::new();
    stop.stop();
    let stats = AccountReaper::new(settings(devices.path()), secret())
        .run_once(&pass_rings(account_ring, &fake), &stop)
        .await;
    assert_eq!(stats.containers_deleted, 0);
    assert!(fake.seen.lock().unwrap().is_empty());
}

#[test]
fn recon_value_carries_the_stats() {
    let stats = ReapStats {
        objects_deleted: 7,
        ..Default::default()
    };
    let v = recon_value(&stats, 1.5);
    assert_eq!(v["reaper_time"], 1.5);
    assert_eq!(v["reaper_stats"]["objects_deleted"], 7);
    assert!(v["reaper_last"].as_f64().unwrap() > 1.7e9);
}
