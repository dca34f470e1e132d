mod common;

use cairn_common::constraints::Constraints;
use cairn_common::Timestamp;
use cairn_db::{chexor, AccountBroker, ContainerRecord, ListParams, Listed, Metadata};
use common::*;

fn rows(b: &AccountBroker) -> Vec<ContainerRecord> {
    let mut v: Vec<ContainerRecord> = b
        .get_items_since(-1, 1_000_000)
        .unwrap()
        .into_iter()
        .map(|mut r| {
            r.rowid = None;
            r
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

#[test]
fn create_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let b = new_account(dir.path(), "a0000000000000000000000000000000");
    let info = b.get_info().unwrap();
    assert_eq!((info.account.as_str(), info.container_count), ("a", 0));
    assert!(info.id.ends_with("-sdb1"));
    b.put_container(&ContainerRecord::new(
        "c1",
        ts(2.0),
        Timestamp::ZERO,
        3,
        30,
        0,
    ))
    .unwrap();
    b.put_container(&ContainerRecord::new(
        "c2",
        ts(2.0),
        Timestamp::ZERO,
        4,
        40,
        1,
    ))
    .unwrap();
    let info = b.get_info().unwrap();
    assert_eq!(
        (info.container_count, info.object_count, info.bytes_used),
        (2, 7, 70)
    );
    let mut h = "00000000000000000000000000000000".to_string();
    h = chexor(&h, "c1", "0000000002.00000-0000000000.00000-3-30").unwrap();
    h = chexor(&h, "c2", "0000000002.00000-0000000000.00000-4-40").unwrap();
    assert_eq!(info.hash, h);
    let ps = b.get_policy_stats().unwrap();
    assert_eq!(ps.len(), 2);
    assert_eq!(
        (
            ps[1].storage_policy_index,
            ps[1].container_count,
            ps[1].object_count
        ),
        (1, 1, 4)
    );
    // updated stats with the same timestamps replace the counts
    b.put_container(&ContainerRecord::new(
        "c1",
        ts(2.0),
        Timestamp::ZERO,
        1,
        10,
        0,
    ))
    .unwrap();
    let info = b.get_info().unwrap();
    assert_eq!(
        (info.container_count, info.object_count, info.bytes_used),
        (2, 5, 50)
    );
}

#[test]
fn merge_rule_timestamps_separately() {
    let dir = tempfile::tempdir().unwrap();
    let b = new_account(dir.path(), "a1000000000000000000000000000000");
    b.put_container(&ContainerRecord::new(
        "c",
        ts(5.0),
        Timestamp::ZERO,
        2,
        20,
        0,
    ))
    .unwrap();
    // delete reported at 6 (with an old put): deleted since delete > put and count 0
    b.put_container(&ContainerRecord::new("c", ts(1.0), ts(6.0), 0, 0, 0))
        .unwrap();
    let r = rows(&b);
    assert_eq!(r[0].put_timestamp, ts(5.0).internal());
    assert_eq!(r[0].delete_timestamp, ts(6.0).internal());
    assert!(r[0].deleted);
    assert_eq!(b.get_info().unwrap().container_count, 0);
    // a stale report (older than what we have) cannot roll counts back
    b.put_container(&ContainerRecord::new(
        "c",
        ts(4.0),
        Timestamp::ZERO,
        9,
        90,
        0,
    ))
    .unwrap();
    let r = rows(&b);
    assert_eq!((r[0].object_count, r[0].deleted), (0, true));
    // re-created at 7
    b.put_container(&ContainerRecord::new("c", ts(7.0), ts(6.0), 1, 1, 0))
        .unwrap();
    let r = rows(&b);
    assert!(!r[0].deleted);
    assert_eq!(b.get_info().unwrap().container_count, 1);
    let p = ListParams::with_limit(10);
    assert!(matches!(&b.list_containers_iter(&p).unwrap()[0], Listed::Item(c) if c.name == "c"));
}

#[test]
fn delete_status_and_reclaim() {
    let dir = tempfile::tempdir().unwrap();
    let b = new_account(dir.path(), "a2000000000000000000000000000000");
    let md: Metadata = [(
        "X-Account-Meta-K".to_string(),
        ("v".to_string(), ts(1.5).internal()),
    )]
    .into_iter()
    .collect();
    b.update_metadata(&md, Some(&Constraints::default()))
        .unwrap();
    b.put_container(&ContainerRecord::new(
        "c",
        ts(2.0),
        Timestamp::ZERO,
        0,
        0,
        0,
    ))
    .unwrap();
    assert!(!b.is_deleted().unwrap());
    b.delete_db(ts(3.0)).unwrap();
    assert!(b.is_status_deleted().unwrap());
    assert!(
        b.is_deleted().unwrap(),
        "status DELETED means deleted even with containers"
    );
    assert_eq!(b.metadata().unwrap()["X-Account-Meta-K"].0, "");
    assert!(
        !b.is_reclaimable(ts(1000.0), 100).unwrap(),
        "still has a container"
    );
    b.put_container(&ContainerRecord::new("c", ts(2.0), ts(2.5), 0, 0, 0))
        .unwrap();
    assert!(b.is_reclaimable(ts(1000.0), 100).unwrap());
    assert!(!b.is_reclaimable(ts(50.0), 100).unwrap());
    let hash = b.get_info().unwrap().hash;
    b.reclaim(ts(1000.0), 100).unwrap();
    assert!(rows(&b).is_empty());
    assert_eq!(b.get_info().unwrap().hash, hash);
}

#[test]
fn replication_rows_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let a = new_account(dir.path(), "a3000000000000000000000000000000");
    let b = new_account(dir.path(), "a4000000000000000000000000000000");
    for i in 0..20 {
        a.put_container(&ContainerRecord::new(
            &format!("c{i}"),
            ts(2.0),
            Timestamp::ZERO,
            i,
            i * 2,
            0,
        ))
        .unwrap();
    }
    let items = a.get_items_since(-1, 1000).unwrap();
    let json = serde_json::to_string(&items).unwrap();
    let back: Vec<ContainerRecord> = serde_json::from_str(&json).unwrap();
    let ia = a.get_replication_info().unwrap();
    b.merge_items(&back, Some(&ia.id)).unwrap();
    let ib = b.get_replication_info().unwrap();
    assert_eq!((ib.hash, ib.count), (ia.hash, 20));
    assert_eq!(ib.storage_policy_index, None);
    assert_eq!(b.get_sync(&ia.id, true).unwrap(), ia.max_row);
}
