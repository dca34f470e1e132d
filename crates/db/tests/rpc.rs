//! The DB replication RPC receiver (`cairn_db::rpc::replicate`).

mod common;

use cairn_db::rpc::replicate;
use cairn_db::{ContainerBroker, ContainerKind, ObjectRecord};
use common::*;
use serde_json::{json, Value};

const HASH: &str = "abcdefabcdefabcdefabcdefabcdef01";

fn rpc(root: &std::path::Path, dev: &str, body: Value) -> (u16, Option<Value>) {
    let r = replicate::<ContainerKind>(root, dev, 7, HASH, body.to_string().as_bytes());
    (
        r.status,
        r.body
            .map(|b| serde_json::from_str(&b).unwrap_or(Value::String(b))),
    )
}

fn container_on(root: &std::path::Path, dev: &str) -> ContainerBroker {
    let p = cairn_db::db_path(root, dev, "containers", 7, HASH);
    ContainerBroker::create(p, "a", "c", ts(1.0), 0).unwrap().0
}

#[test]
fn sync_merge_items_merge_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let a = container_on(root, "sda");
    for i in 0..5 {
        a.put_object(&ObjectRecord::put(&format!("o{i}"), ts(2.0), i, "t", "e"))
            .unwrap();
    }
    let ia = a.get_replication_info().unwrap();
    let sync_args = |i: &cairn_db::ReplicationInfo| {
        json!([
            "sync",
            i.max_row,
            i.hash,
            i.id,
            i.created_at,
            i.put_timestamp,
            i.delete_timestamp,
            i.metadata
        ])
    };
    // no DB on sdb yet
    assert_eq!(rpc(root, "sdb", sync_args(&ia)).0, 404);
    assert!(
        root.join("sdb/tmp").is_dir(),
        "tmp dir prepared for an upload"
    );
    assert_eq!(rpc(root, "sda", json!("nope")).0, 400);
    assert_eq!(rpc(root, "sda", json!(["bogus"])).0, 400);

    let b = container_on(root, "sdb");
    a.update_metadata(
        &[(
            "X-Container-Meta-K".to_string(),
            ("v".to_string(), ts(3.0).internal()),
        )]
        .into_iter()
        .collect(),
        None,
    )
    .unwrap();
    let ia = a.get_replication_info().unwrap();
    let (st, reply) = rpc(root, "sdb", sync_args(&ia));
    assert_eq!(st, 200);
    let reply = reply.unwrap();
    assert_eq!(reply["point"], -1);
    assert_eq!(reply["max_row"], -1);
    assert_eq!(reply["id"], b.id().unwrap());
    assert_eq!(
        b.metadata().unwrap()["X-Container-Meta-K"].0,
        "v",
        "sync merges metadata"
    );

    let rows = a.get_items_since(-1, 1000).unwrap();
    let (st, _) = rpc(root, "sdb", json!(["merge_items", rows, ia.id]));
    assert_eq!(st, 202);
    assert_eq!(b.get_sync(&ia.id, true).unwrap(), ia.max_row);
    let (st, reply) = rpc(root, "sdb", sync_args(&ia));
    assert_eq!(st, 200);
    let reply = reply.unwrap();
    assert_eq!(reply["hash"], ia.hash);
    assert_eq!(reply["point"], ia.max_row);
    assert_eq!(reply["count"], 5);

    let (st, _) = rpc(
        root,
        "sdb",
        json!(["merge_syncs", [{"remote_id": "x", "sync_point": 9}]]),
    );
    assert_eq!(st, 202);
    assert_eq!(b.get_sync("x", true).unwrap(), 9);
    assert_eq!(rpc(root, "sdb", json!(["merge_items", "garbage"])).0, 400);
}

#[test]
fn complete_rsync_and_rsync_then_merge() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let a = container_on(root, "sda");
    for i in 0..5 {
        a.put_object(&ObjectRecord::put(&format!("o{i}"), ts(2.0), i, "t", "e"))
            .unwrap();
    }
    let ia = a.get_replication_info().unwrap();
    std::fs::create_dir_all(root.join("sdb/tmp")).unwrap();
    a.backup_to(&root.join("sdb/tmp").join(&ia.id)).unwrap();
    assert_eq!(
        rpc(root, "sdb", json!(["complete_rsync", "missing"])).0,
        404
    );
    assert_eq!(rpc(root, "sdb", json!(["complete_rsync", "../x"])).0, 400);
    assert_eq!(rpc(root, "sdb", json!(["complete_rsync", ia.id])).0, 204);
    let b = ContainerBroker::open(cairn_db::db_path(root, "sdb", "containers", 7, HASH)).unwrap();
    let ib = b.get_replication_info().unwrap();
    assert_eq!((ib.hash.as_str(), ib.count), (ia.hash.as_str(), 5));
    assert_ne!(ib.id, ia.id);
    assert!(ib.id.ends_with("-sdb"), "{}", ib.id);
    assert_eq!(b.get_sync(&ia.id, true).unwrap(), ia.max_row);
    // the DB exists now: a second complete_rsync is refused
    a.backup_to(&root.join("sdb/tmp").join(&ia.id)).unwrap();
    assert_eq!(rpc(root, "sdb", json!(["complete_rsync", ia.id])).0, 404);

    // rsync_then_merge: b has rows a lacks; a has newer rows too
    b.put_object(&ObjectRecord::put("only-b", ts(3.0), 1, "t", "e"))
        .unwrap();
    a.put_object(&ObjectRecord::put("only-a", ts(3.0), 1, "t", "e"))
        .unwrap();
    a.delete_object("o0", ts(4.0), 0).unwrap();
    b.merge_syncs(
        &[cairn_db::SyncPoint {
            remote_id: "peer".into(),
            sync_point: 42,
        }],
        true,
    )
    .unwrap();
    let tmp = root.join("sdb/tmp").join(&ia.id);
    a.backup_to(&tmp).unwrap();
    assert_eq!(
        rpc(
            root,
            "sdb",
            json!(["rsync_then_merge", ia.id, format!("{HASH}.db")])
        )
        .0,
        204
    );
    assert!(!tmp.exists());
    // the live broker `b` sees the new content
    let names: Vec<(String, bool)> = b
        .get_items_since(-1, 100)
        .unwrap()
        .into_iter()
        .map(|r| (r.name, r.deleted))
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        vec![
            ("o0".to_string(), true),
            ("o1".to_string(), false),
            ("o2".to_string(), false),
            ("o3".to_string(), false),
            ("o4".to_string(), false),
            ("only-a".to_string(), false),
            ("only-b".to_string(), false)
        ]
    );
    assert_eq!(b.get_info().unwrap().object_count, 6);
    assert_eq!(b.get_sync("peer", true).unwrap(), 42);
    assert_ne!(b.id().unwrap(), ia.id);
    b.quick_check().unwrap();
    drop(b);
    let b2 = ContainerBroker::open(cairn_db::db_path(root, "sdb", "containers", 7, HASH)).unwrap();
    assert_eq!(b2.get_info().unwrap().object_count, 6);
    assert_eq!(
        rpc(root, "sdb", json!(["rsync_then_merge", "gone", "x.db"])).0,
        404
    );
}

#[test]
fn account_rows_over_rpc() {
    use cairn_db::{AccountBroker, AccountKind, ContainerRecord};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ap = |dev: &str| cairn_db::db_path(root, dev, "accounts", 7, HASH);
    let (a, _) = AccountBroker::create(ap("sda"), "AUTH_a", ts(1.0)).unwrap();
    let (b, _) = AccountBroker::create(ap("sdb"), "AUTH_a", ts(1.0)).unwrap();
    for i in 0..4 {
        a.put_container(&ContainerRecord::new(
            &format!("c{i}"),
            ts(2.0),
            cairn_common::Timestamp::ZERO,
            i,
            i * 10,
            0,
        ))
        .unwrap();
    }
    let ia = a.get_replication_info().unwrap();
    assert_eq!(ia.storage_policy_index, None);
    let rows = a.get_items_since(-1, 100).unwrap();
    let body = json!(["merge_items", rows, ia.id]).to_string();
    let r = replicate::<AccountKind>(root, "sdb", 7, HASH, body.as_bytes());
    assert_eq!(r.status, 202);
    let ib = b.get_replication_info().unwrap();
    assert_eq!(
        (ib.hash, ib.count),
        (ia.hash.clone(), 4),
        "c0 has no objects but is live"
    );
    assert_eq!(b.get_info().unwrap().bytes_used, 60);
    let sync = json!([
        "sync",
        ia.max_row,
        ia.hash,
        ia.id,
        ia.created_at,
        ia.put_timestamp,
        ia.delete_timestamp,
        ia.metadata
    ]);
    let r = replicate::<AccountKind>(root, "sdb", 7, HASH, sync.to_string().as_bytes());
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_str(&r.body.unwrap()).unwrap();
    assert_eq!(v["point"], ia.max_row);
    assert!(v.get("storage_policy_index").is_none());
}
