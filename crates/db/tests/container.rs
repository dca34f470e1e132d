mod common;

use cairn_common::constraints::Constraints;
use std::collections::BTreeMap;

use cairn_common::Timestamp;
use cairn_db::{
    chexor, ContainerBroker, DbError, ListParams, Listed, Metadata, ObjectRecord, SyncPoint,
    PENDING_CAP,
};
use common::*;

const ETAG: &str = "d41d8cd98f00b204e9800998ecf8427e";

fn names(l: &[Listed<cairn_db::ObjectEntry>]) -> Vec<String> {
    l.iter()
        .map(|e| match e {
            Listed::Item(o) => o.name.clone(),
            Listed::Subdir(s) => s.clone(),
        })
        .collect()
}

fn rows(b: &ContainerBroker) -> Vec<ObjectRecord> {
    let mut v: Vec<ObjectRecord> = b
        .get_items_since(-1, 1_000_000)
        .unwrap()
        .into_iter()
        .map(|mut r| {
            r.rowid = None;
            r
        })
        .collect();
    v.sort_by(|a, b| (&a.name, a.storage_policy_index).cmp(&(&b.name, b.storage_policy_index)));
    v
}

#[test]
fn create_open_and_existing_wins() {
    let dir = tempfile::tempdir().unwrap();
    let p = cpath(dir.path(), "0123456789abcdef0123456789abcdef");
    let (b, created) = ContainerBroker::create(&p, "a", "c", ts(5.0), 1).unwrap();
    assert!(created);
    let info = b.get_info().unwrap();
    assert_eq!(info.account, "a");
    assert_eq!(info.container, "c");
    assert_eq!(info.put_timestamp, ts(5.0));
    assert_eq!(info.status_changed_at, ts(5.0));
    assert_eq!(info.storage_policy_index, 1);
    assert_eq!(info.hash, "00000000000000000000000000000000");
    assert!(info.id.ends_with("-sdb1"), "{}", info.id);
    assert_eq!(info.id.len(), 36 + 5);
    let (b2, created) = ContainerBroker::create(&p, "x", "y", ts(9.0), 0).unwrap();
    assert!(!created);
    assert_eq!(b2.get_info().unwrap().put_timestamp, ts(5.0));
    assert!(matches!(
        ContainerBroker::open(dir.path().join("nope.db")),
        Err(DbError::NotFound(_))
    ));
    // no tmp files left behind
    let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn put_delete_counts_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let b = new_container(dir.path(), "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    b.put_object(&ObjectRecord::put("o1", ts(2.0), 10, "text/plain", ETAG))
        .unwrap();
    b.put_object(&ObjectRecord::put("o2", ts(2.0), 20, "text/plain", ETAG))
        .unwrap();
    // pending file holds them until a read
    assert!(std::fs::metadata(b.pending_file()).unwrap().len() > 0);
    let info = b.get_info().unwrap();
    assert_eq!(std::fs::metadata(b.pending_file()).unwrap().len(), 0);
    assert_eq!((info.object_count, info.bytes_used), (2, 30));
    let mut h = "00000000000000000000000000000000".to_string();
    h = chexor(&h, "o1", "0000000002.00000").unwrap();
    h = chexor(&h, "o2", "0000000002.00000").unwrap();
    assert_eq!(info.hash, h);

    b.delete_object("o1", ts(3.0), 0).unwrap();
    let info = b.get_info().unwrap();
    assert_eq!((info.object_count, info.bytes_used), (1, 20));
    let r = rows(&b);
    assert_eq!(r[0].name, "o1");
    assert!(r[0].deleted);
    assert_eq!(
        (r[0].size, r[0].content_type.as_str(), r[0].etag.as_str()),
        (0, "application/deleted", "noetag")
    );
    // older put does not resurrect
    b.put_object(&ObjectRecord::put("o1", ts(2.5), 10, "text/plain", ETAG))
        .unwrap();
    assert_eq!(b.get_info().unwrap().object_count, 1);
    // newer one does
    b.put_object(&ObjectRecord::put("o1", ts(4.0), 7, "text/plain", ETAG))
        .unwrap();
    let info = b.get_info().unwrap();
    assert_eq!((info.object_count, info.bytes_used), (2, 27));
    // rows are replaced (DELETE+INSERT): the update trigger forbids UPDATE
    let conn = rusqlite::Connection::open(b.db_file()).unwrap();
    let err = conn.execute("UPDATE object SET size = 1", []).unwrap_err();
    assert!(err.to_string().contains("UPDATE not allowed"), "{err}");
}

#[test]
fn merge_parts_data_ctype_meta() {
    let dir = tempfile::tempdir().unwrap();
    let b = new_container(dir.path(), "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    b.put_object(&ObjectRecord::put("o", ts(10.0), 5, "text/plain", "e1"))
        .unwrap();
    // POST at 12 changing content-type
    b.put_object(
        &ObjectRecord::put("o", ts(10.0), 5, "image/png", "e1").with_ctype_timestamp(ts(12.0)),
    )
    .unwrap();
    let r = rows(&b);
    assert_eq!(r[0].created_at, "0000000010.00000+30d40");
    assert_eq!(r[0].content_type, "image/png");
    // POST at 13 only metadata
    b.put_object(
        &ObjectRecord::put("o", ts(10.0), 5, "text/plain", "e1").with_meta_timestamp(ts(13.0)),
    )
    .unwrap();
    let r = rows(&b);
    assert_eq!(r[0].created_at, "0000000010.00000+30d40+186a0");
    assert_eq!(r[0].content_type, "image/png");
    // late PUT at 11: data newer, ctype older than 12, meta older
    b.put_object(&ObjectRecord::put("o", ts(11.0), 9, "text/html", "e2"))
        .unwrap();
    let r = rows(&b);
    assert_eq!((r[0].size, r[0].etag.as_str()), (9, "e2"));
    assert_eq!(r[0].content_type, "image/png");
    assert_eq!(r[0].created_at, "0000000011.00000+186a0+186a0");
    let l = b
        .list_objects_iter(&ListParams::with_limit(10), None)
        .unwrap();
    match &l[0] {
        Listed::Item(o) => {
            assert_eq!(o.last_modified, ts(13.0));
            assert_eq!(o.bytes, 9);
        }
        other => panic!("{other:?}"),
    }
    // PUT at 20 wins everything
    b.put_object(&ObjectRecord::put("o", ts(20.0), 1, "a/b", "e3"))
        .unwrap();
    let r = rows(&b);
    assert_eq!(r[0].created_at, "0000000020.00000");
    assert_eq!((r[0].content_type.as_str(), r[0].size), ("a/b", 1));
    // same update again: no new row
    let max = b.max_row().unwrap();
    b.put_object(&ObjectRecord::put("o", ts(20.0), 1, "a/b", "e3"))
        .unwrap();
    b.commit_puts().unwrap();
    assert_eq!(b.max_row().unwrap(), max);
}

#[test]
fn swift_bytes_follow_data_and_listing_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let b = new_container(dir.path(), "cccccccccccccccccccccccccccccccc");
    b.put_object(&ObjectRecord::put(
        "slo",
        ts(10.0),
        100,
        "text/plain;swift_bytes=5000",
        "e",
    ))
    .unwrap();
    b.put_object(
        &ObjectRecord::put("slo", ts(10.0), 100, "image/jpeg", "e").with_ctype_timestamp(ts(11.0)),
    )
    .unwrap();
    let r = rows(&b);
    assert_eq!(r[0].content_type, "image/jpeg;swift_bytes=5000");
    let l = b
        .list_objects_iter(&ListParams::with_limit(10), None)
        .unwrap();
    match &l[0] {
        Listed::Item(o) => {
            assert_eq!(o.content_type, "image/jpeg");
            assert_eq!(o.bytes, 5000);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn policies_are_separate_rows() {
    let dir = tempfile::tempdir().unwrap();
    let b = new_container(dir.path(), "dddddddddddddddddddddddddddddddd");
    b.put_object(&ObjectRecord::put("o", ts(2.0), 1, "t", "e").with_policy(0))
        .unwrap();
    b.put_object(&ObjectRecord::put("o", ts(3.0), 2, "t", "e").with_policy(1))
        .unwrap();
    assert_eq!(rows(&b).len(), 2);
    assert_eq!(b.get_info().unwrap().object_count, 1);
    let l = b
        .list_objects_iter(&ListParams::with_limit(10), Some(1))
        .unwrap();
    assert_eq!(names(&l), vec!["o"]);
}

#[test]
fn metadata_merge_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let b = new_container(dir.path(), "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee");
    let md = |pairs: &[(&str, &str, f64)]| -> Metadata {
        pairs
            .iter()
            .map(|(k, v, t)| (k.to_string(), (v.to_string(), ts(*t).internal())))
            .collect()
    };
    b.update_metadata(
        &md(&[("X-Container-Meta-Color", "blue", 2.0)]),
        Some(&Constraints::default()),
    )
    .unwrap();
    b.update_metadata(
        &md(&[("X-Container-Meta-Color", "red", 1.0)]),
        Some(&Constraints::default()),
    )
    .unwrap();
    assert_eq!(b.metadata().unwrap()["X-Container-Meta-Color"].0, "blue");
    // equal timestamp does not replace
    b.update_metadata(
        &md(&[("X-Container-Meta-Color", "green", 2.0)]),
        Some(&Constraints::default()),
    )
    .unwrap();
    assert_eq!(b.metadata().unwrap()["X-Container-Meta-Color"].0, "blue");
    b.update_metadata(
        &md(&[("X-Container-Meta-Color", "", 3.0)]),
        Some(&Constraints::default()),
    )
    .unwrap();
    assert_eq!(b.metadata().unwrap()["X-Container-Meta-Color"].0, "");
    // JSON format in the column
    let info = b.get_replication_info().unwrap();
    assert_eq!(
        info.metadata,
        r#"{"X-Container-Meta-Color":["","0000000003.00000"]}"#
    );

    let many: Metadata = (0..91)
        .map(|i| {
            (
                format!("X-Container-Meta-K{i}"),
                ("v".to_string(), ts(5.0).internal()),
            )
        })
        .collect();
    let err = b
        .update_metadata(&many, Some(&Constraints::default()))
        .unwrap_err();
    assert_eq!(err.http_status(), 400);
    assert_eq!(err.to_string(), "Too many metadata items; max 90");
    let big: Metadata = (0..5)
        .map(|i| {
            (
                format!("X-Container-Meta-K{i}"),
                ("v".repeat(1000), ts(5.0).internal()),
            )
        })
        .collect();
    let err = b
        .update_metadata(&big, Some(&Constraints::default()))
        .unwrap_err();
    assert_eq!(err.to_string(), "Total metadata too large; max 4096");
    // exactly at the limit is fine: 4 * (2 + 1022) = 4096
    let ok: Metadata = (0..4)
        .map(|i| {
            (
                format!("X-Container-Meta-K{i}"),
                ("v".repeat(1022), ts(5.0).internal()),
            )
        })
        .collect();
    b.update_metadata(&ok, Some(&Constraints::default()))
        .unwrap();
    // non-meta keys (sysmeta, ACLs) do not count
    let sys: Metadata = (0..100)
        .map(|i| {
            (
                format!("X-Container-Sysmeta-K{i}"),
                ("v".to_string(), ts(5.0).internal()),
            )
        })
        .collect();
    b.update_metadata(&sys, Some(&Constraints::default()))
        .unwrap();
}

#[test]
fn delete_revive_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let b = new_container(dir.path(), "ffffffffffffffffffffffffffffffff");
    let md: Metadata = BTreeMap::from([(
        "X-Container-Meta-A".to_string(),
        ("1".to_string(), ts(1.5).internal()),
    )]);
    b.update_metadata(&md, None).unwrap();
    b.put_object(&ObjectRecord::put("o", ts(2.0), 1, "t", "e"))
        .unwrap();
    b.delete_db(ts(3.0)).unwrap();
    // not deleted while it has objects
    assert!(!b.is_deleted().unwrap());
    assert!(!b.empty().unwrap());
    b.delete_object("o", ts(2.5), 0).unwrap();
    assert!(b.empty().unwrap());
    assert!(b.is_deleted().unwrap());
    let info = b.get_info().unwrap();
    assert_eq!(info.status, "DELETED");
    assert_eq!(info.delete_timestamp, ts(3.0));
    assert_eq!(info.status_changed_at, ts(3.0));
    assert_eq!(b.metadata().unwrap()["X-Container-Meta-A"].0, "");
    // older delete does not move it back
    b.delete_db(ts(2.8)).unwrap();
    assert_eq!(b.get_info().unwrap().delete_timestamp, ts(3.0));
    // older put: still deleted; newer put revives
    b.update_put_timestamp(ts(2.9)).unwrap();
    assert!(b.is_deleted().unwrap());
    b.update_put_timestamp(ts(4.0)).unwrap();
    b.update_status_changed_at(ts(4.0)).unwrap();
    assert!(!b.is_deleted().unwrap());
    assert_eq!(b.get_info().unwrap().status_changed_at, ts(4.0));
}

#[test]
fn reclaim_rows_syncs_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let b = new_container(dir.path(), "11111111111111111111111111111111");
    b.put_object(&ObjectRecord::put("live", ts(100.0), 1, "t", "e"))
        .unwrap();
    b.delete_object("old", ts(100.0), 0).unwrap();
    b.delete_object("new", ts(900.0), 0).unwrap();
    let md: Metadata = BTreeMap::from([
        (
            "X-Container-Meta-Gone".to_string(),
            (String::new(), ts(100.0).internal()),
        ),
        (
            "X-Container-Meta-Recent".to_string(),
            (String::new(), ts(900.0).internal()),
        ),
        (
            "X-Container-Meta-Kept".to_string(),
            ("v".to_string(), ts(100.0).internal()),
        ),
    ]);
    b.update_metadata(&md, None).unwrap();
    b.merge_syncs(
        &[
            SyncPoint {
                remote_id: "old".into(),
                sync_point: 5,
            },
            SyncPoint {
                remote_id: "fresh".into(),
                sync_point: 6,
            },
        ],
        true,
    )
    .unwrap();
    {
        let conn = rusqlite::Connection::open(b.db_file()).unwrap();
        // (the update trigger would stamp "now"; this test needs an old row)
        conn.execute_batch(
            "DROP TRIGGER incoming_sync_update; \
             UPDATE incoming_sync SET updated_at = '100' WHERE remote_id = 'old'",
        )
        .unwrap();
    }
    let hash = b.get_info().unwrap().hash;
    // now = 1000 s, reclaim_age = 400 s: row cut at 600
    b.reclaim(ts(1000.0), 400).unwrap(); // sync cut: 1000 - 800 = 200
    let names: Vec<String> = rows(&b).into_iter().map(|r| r.name).collect();
    assert_eq!(names, vec!["live", "new"]);
    assert_eq!(
        b.get_info().unwrap().hash,
        hash,
        "reclaim leaves the hash alone"
    );
    let md = b.metadata().unwrap();
    assert!(!md.contains_key("X-Container-Meta-Gone"));
    assert!(md.contains_key("X-Container-Meta-Recent"));
    assert!(md.contains_key("X-Container-Meta-Kept"));
    let syncs: Vec<String> = b
        .get_syncs(true)
        .unwrap()
        .into_iter()
        .map(|s| s.remote_id)
        .collect();
    assert_eq!(syncs, vec!["fresh"]);
}

#[test]
fn db_reclaimable() {
    let dir = tempfile::tempdir().unwrap();
    let b = new_container(dir.path(), "22222222222222222222222222222222");
    b.delete_db(ts(10.0)).unwrap();
    assert!(
        !b.is_reclaimable(ts(1000.0), 100).unwrap(),
        "account not told yet"
    );
    b.reported(ts(1.0), ts(10.0), 0, 0).unwrap();
    assert!(b.is_reclaimable(ts(1000.0), 100).unwrap());
    assert!(!b.is_reclaimable(ts(50.0), 100).unwrap());
    b.update_put_timestamp(ts(20.0)).unwrap();
    assert!(!b.is_reclaimable(ts(1000.0), 100).unwrap());
}

#[test]
fn pending_file_garbage_and_torn_records_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let b = new_container(dir.path(), "33333333333333333333333333333333");
    b.put_object(&ObjectRecord::put("a", ts(2.0), 1, "t", "e"))
        .unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(b.pending_file())
            .unwrap();
        f.write_all(b":not-base64!!:AQID:").unwrap();
    }
    b.put_object(&ObjectRecord::put("b", ts(2.0), 1, "t", "e"))
        .unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(b.pending_file())
            .unwrap();
        f.write_all(b":AWFiY2RlZmdoaWprbG1ub3Bx").unwrap(); // torn tail
    }
    let names: Vec<String> = rows(&b).into_iter().map(|r| r.name).collect();
    assert_eq!(names, vec!["a", "b"]);
    assert_eq!(std::fs::metadata(b.pending_file()).unwrap().len(), 0);
    // a fresh broker (e.g. after a crash) picks up records left in the pending file
    b.put_object(&ObjectRecord::put("c", ts(2.0), 1, "t", "e"))
        .unwrap();
    let path = b.db_file().to_path_buf();
    drop(b);
    let b = ContainerBroker::open(&path).unwrap();
    assert_eq!(b.get_info().unwrap().object_count, 3);
}

#[test]
fn pending_cap_merges_directly() {
    let dir = tempfile::tempdir().unwrap();
    let b = new_container(dir.path(), "44444444444444444444444444444444");
    for i in 0..3000 {
        b.put_object(&ObjectRecord::put(
            &format!("obj-{i:05}"),
            ts(2.0),
            1,
            "text/plain",
            ETAG,
        ))
        .unwrap();
        assert!(std::fs::metadata(b.pending_file()).unwrap().len() <= PENDING_CAP);
    }
    assert_eq!(b.get_info().unwrap().object_count, 3000);
}

#[test]
fn concurrent_writers_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let b = std::sync::Arc::new(new_container(
        dir.path(),
        "55555555555555555555555555555555",
    ));
    let path = b.db_file().to_path_buf();
    let mut hs = Vec::new();
    for t in 0..8 {
        let b = b.clone();
        let path = path.clone();
        hs.push(std::thread::spawn(move || {
            // half the threads use their own broker handle
            let own = if t % 2 == 0 {
                Some(ContainerBroker::open(&path).unwrap())
            } else {
                None
            };
            let br: &ContainerBroker = own.as_ref().unwrap_or(&b);
            for i in 0..300 {
                br.put_object(&ObjectRecord::put(
                    &format!("t{t}-{i}"),
                    ts(2.0),
                    1,
                    "t",
                    "e",
                ))
                .unwrap();
            }
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(b.get_info().unwrap().object_count, 2400);
}

#[test]
fn corrupt_db_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let hash = "66666666666666666666666666666666";
    let b = new_container(dir.path(), hash);
    b.put_object(&ObjectRecord::put("a", ts(2.0), 1, "t", "e"))
        .unwrap();
    b.quick_check().unwrap();
    let path = b.db_file().to_path_buf();
    b.checkpoint().unwrap();
    drop(b);
    let _ = std::fs::remove_file(path.with_extension("db-wal"));
    let _ = std::fs::remove_file(path.with_extension("db-shm"));
    std::fs::write(
        &path,
        b"this is not a sqlite database at all, just garbage bytes....",
    )
    .unwrap();
    match ContainerBroker::open(&path) {
        Err(DbError::Quarantined(to)) => {
            assert_eq!(
                to,
                dir.path().join("sdb1/quarantined/containers").join(hash)
            );
            assert!(to.join(format!("{hash}.db")).exists());
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened a garbage file"),
    }
    assert!(!path.parent().unwrap().exists());
    // a second casualty with the same hash gets a suffixed name
    let b = new_container(dir.path(), hash);
    let to = b.quarantine().unwrap();
    assert!(to
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with(&format!("{hash}-")));
}

#[test]
fn corrupt_pages_fail_quick_check() {
    let dir = tempfile::tempdir().unwrap();
    let b = new_container(dir.path(), "77777777777777777777777777777777");
    let recs: Vec<ObjectRecord> = (0..2000)
        .map(|i| ObjectRecord::put(&format!("object-name-{i:06}"), ts(2.0), 1, "t", ETAG))
        .collect();
    b.merge_items(&recs, None).unwrap();
    b.checkpoint().unwrap();
    let path = b.db_file().to_path_buf();
    drop(b);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let len = f.metadata().unwrap().len();
        f.seek(SeekFrom::Start(len / 2)).unwrap();
        f.write_all(&[0xA5; 8192]).unwrap();
    }
    let res = ContainerBroker::open(&path).and_then(|b| b.quick_check().map(|_| b));
    assert!(res.is_err(), "corruption must be detected");
}

#[test]
fn replication_apis() {
    let dir = tempfile::tempdir().unwrap();
    let a = new_container(dir.path(), "88888888888888888888888888888888");
    let b = new_container(dir.path(), "99999999999999999999999999999999");
    assert_eq!(a.get_replication_info().unwrap().max_row, -1);
    for i in 0..10 {
        a.put_object(&ObjectRecord::put(
            &format!("o{i}"),
            ts(2.0 + i as f64),
            i,
            "t",
            "e",
        ))
        .unwrap();
    }
    a.commit_puts().unwrap();
    a.delete_object("o3", ts(50.0), 0).unwrap();
    let ia = a.get_replication_info().unwrap();
    assert_eq!(ia.max_row, 11);
    assert_eq!(ia.count, 9);
    assert_eq!(ia.storage_policy_index, Some(0));
    let items = a.get_items_since(-1, 1000).unwrap();
    assert_eq!(items.len(), 10);
    // JSON round trip with ROWID and deleted as 0/1
    let json = serde_json::to_string(&items).unwrap();
    assert!(json.contains("\"ROWID\":"), "{json}");
    assert!(json.contains("\"deleted\":1"), "{json}");
    let back: Vec<ObjectRecord> = serde_json::from_str(&json).unwrap();
    for chunk in back.chunks(3) {
        b.merge_items(chunk, Some(&ia.id)).unwrap();
    }
    let ib = b.get_replication_info().unwrap();
    assert_eq!(ib.hash, ia.hash);
    assert_eq!(ib.count, ia.count);
    assert_eq!(b.get_sync(&ia.id, true).unwrap(), 11);
    assert_eq!(b.get_sync("unknown", true).unwrap(), -1);
    b.merge_syncs(
        &[SyncPoint {
            remote_id: ia.id.clone(),
            sync_point: 5,
        }],
        true,
    )
    .unwrap();
    assert_eq!(b.get_sync(&ia.id, true).unwrap(), 11, "max wins");
    b.merge_syncs(
        &[SyncPoint {
            remote_id: "r".into(),
            sync_point: 7,
        }],
        false,
    )
    .unwrap();
    assert_eq!(b.get_sync("r", false).unwrap(), 7);

    // whole-file copy
    let copy = dir.path().join("sdb1/tmp/copy.db");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    a.put_object(&ObjectRecord::put("pending-only", ts(60.0), 1, "t", "e"))
        .unwrap();
    a.backup_to(&copy).unwrap();
    let c = ContainerBroker::open(&copy).unwrap();
    c.quick_check().unwrap();
    let ic = c.get_replication_info().unwrap();
    let ia = a.get_replication_info().unwrap();
    assert_eq!(
        (ic.hash.as_str(), ic.count, ic.max_row),
        (ia.hash.as_str(), 10, ia.max_row)
    );
    c.newid(&ia.id).unwrap();
    let ic2 = c.get_replication_info().unwrap();
    assert_ne!(ic2.id, ia.id);
    assert!(ic2.id.ends_with("-sdb1"));
    assert_eq!(c.get_sync(&ia.id, true).unwrap(), ia.max_row);

    // merge_timestamps
    c.merge_timestamps("0000000000.50000", "0000000099.00000", "0000000001.00000")
        .unwrap();
    let ic3 = c.get_replication_info().unwrap();
    assert_eq!(ic3.created_at, "0000000000.50000");
    assert_eq!(ic3.put_timestamp, "0000000099.00000");
    assert_eq!(ic3.delete_timestamp, "0000000001.00000");
}

#[test]
fn ts_helpers_are_exact() {
    assert_eq!(ts(2.5), Timestamp::parse("2.5").unwrap());
}

#[test]
fn recreated_db_does_not_write_to_unlinked_pending_file() {
    let dir = tempfile::tempdir().unwrap();
    let hash = "12121212121212121212121212121212";
    let old = new_container(dir.path(), hash);
    old.put_object(&ObjectRecord::put("a", ts(2.0), 1, "t", "e"))
        .unwrap();
    // the replicator (another process) reclaims the whole hash dir...
    std::fs::remove_dir_all(old.db_file().parent().unwrap()).unwrap();
    assert!(matches!(
        old.put_object(&ObjectRecord::put("x", ts(2.0), 1, "t", "e")),
        Err(DbError::NotFound(_))
    ));
    // ...and a new container is created at the same path while `old` is still alive
    let new = new_container(dir.path(), hash);
    new.put_object(&ObjectRecord::put("b", ts(3.0), 1, "t", "e"))
        .unwrap();
    drop(new);
    let reopened = ContainerBroker::open(cpath(dir.path(), hash)).unwrap();
    let names: Vec<String> = rows(&reopened).into_iter().map(|r| r.name).collect();
    assert_eq!(names, vec!["b"]);
    drop(old);
}

#[test]
fn append_pending_without_an_open_broker_is_durable_and_merges_when_full() {
    let dir = tempfile::tempdir().unwrap();
    let hash = "00112233445566778899aabbccddeeff";
    let p = cpath(dir.path(), hash);
    drop(new_container(dir.path(), hash));
    // Appends through the fast path land in the pending file, not yet in SQLite.
    for i in 0..10 {
        let rec = ObjectRecord::put(&format!("o{i}"), ts(2.0), 4, "text/plain", ETAG);
        ContainerBroker::append_pending(&p, std::slice::from_ref(&rec)).unwrap();
    }
    let pending = p.with_extension("db.pending");
    assert!(std::fs::metadata(&pending).unwrap().len() > 0);
    let b = ContainerBroker::open(&p).unwrap();
    assert_eq!(b.get_info().unwrap().object_count, 10);
    // Enough appends to pass PENDING_CAP: the writer merges into SQLite itself.
    let big_name = "n".repeat(900);
    let per_record = 1000;
    let count = PENDING_CAP as usize / per_record + 20;
    for i in 0..count {
        let rec = ObjectRecord::put(&format!("{big_name}{i}"), ts(3.0), 1, "text/plain", ETAG);
        ContainerBroker::append_pending(&p, std::slice::from_ref(&rec)).unwrap();
    }
    assert!(std::fs::metadata(&pending).unwrap().len() < PENDING_CAP);
    assert_eq!(b.get_info().unwrap().object_count, 10 + count as i64);
    // A missing DB is NotFound, and nothing is written for it.
    let missing = cpath(dir.path(), "ffeeddccbbaa99887766554433221100");
    let rec = ObjectRecord::put("x", ts(2.0), 1, "text/plain", ETAG);
    assert!(matches!(
        ContainerBroker::append_pending(&missing, std::slice::from_ref(&rec)),
        Err(DbError::NotFound(_))
    ));
    assert!(!missing.with_extension("db.pending").exists());
}
