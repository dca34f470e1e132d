//! Property tests: any order and any batching of the same updates gives the same rows,
//! counts and hash (containers, accounts) and the same metadata.

mod common;

use cairn_common::constraints::Constraints;
use cairn_common::Timestamp;
use cairn_db::{AccountBroker, ContainerBroker, ContainerRecord, Metadata, ObjectRecord};
use common::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put {
        name: u8,
        policy: i64,
        ts: u64,
        size: u64,
        ctype: u8,
        etag: u8,
        swift_bytes: Option<u8>,
    },
    Delete {
        name: u8,
        policy: i64,
        ts: u64,
    },
    Post {
        name: u8,
        policy: i64,
        data_ts: u64,
        ctype_ts: Option<u64>,
        meta_ts: u64,
        ctype: u8,
    },
}

fn t(units: u64) -> Timestamp {
    Timestamp::from_raw(100_000 + units * 1000)
}

fn record(op: &Op) -> ObjectRecord {
    match *op {
        Op::Put {
            name,
            policy,
            ts,
            size,
            ctype,
            etag,
            swift_bytes,
        } => {
            let mut ct = format!("type/{ctype}");
            if let Some(sb) = swift_bytes {
                ct.push_str(&format!(";swift_bytes={sb}"));
            }
            ObjectRecord::put(
                &format!("obj-{name}"),
                t(ts),
                size,
                &ct,
                &format!("etag{etag}"),
            )
            .with_policy(policy)
        }
        Op::Delete { name, policy, ts } => {
            ObjectRecord::delete(&format!("obj-{name}"), t(ts)).with_policy(policy)
        }
        Op::Post {
            name,
            policy,
            data_ts,
            ctype_ts,
            meta_ts,
            ctype,
        } => {
            let mut r = ObjectRecord::put(
                &format!("obj-{name}"),
                t(data_ts),
                1,
                &format!("type/{ctype}"),
                "etagp",
            )
            .with_policy(policy)
            .with_meta_timestamp(t(meta_ts));
            if let Some(c) = ctype_ts {
                r = r.with_ctype_timestamp(t(c));
            }
            r
        }
    }
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let name = 0u8..5;
    let policy = 0i64..2;
    let ts = 0u64..12;
    prop_oneof![
        4 => (name.clone(), policy.clone(), ts.clone(), 0u64..1000, 0u8..3, 0u8..3, proptest::option::of(0u8..3))
            .prop_map(|(name, policy, ts, size, ctype, etag, swift_bytes)| Op::Put { name, policy, ts, size, ctype, etag, swift_bytes }),
        2 => (name.clone(), policy.clone(), ts.clone()).prop_map(|(name, policy, ts)| Op::Delete { name, policy, ts }),
        2 => (name, policy, ts.clone(), proptest::option::of(ts.clone()), ts, 0u8..3)
            .prop_map(|(name, policy, data_ts, ctype_ts, meta_ts, ctype)| Op::Post { name, policy, data_ts, ctype_ts, meta_ts, ctype }),
    ]
}

/// Apply records in batches given by `cuts`; even batches via the pending file, odd ones
/// via merge_items directly; sometimes commit in between.
fn apply_container(b: &ContainerBroker, recs: &[ObjectRecord], cuts: &[usize]) {
    let mut i = 0;
    let mut k = 0;
    while i < recs.len() {
        let n = cuts.get(k).copied().unwrap_or(3).max(1).min(recs.len() - i);
        let batch = &recs[i..i + n];
        match k % 3 {
            0 => b.put_records(batch).unwrap(),
            1 => b.merge_items(batch, None).unwrap(),
            _ => {
                for r in batch {
                    b.put_object(r).unwrap();
                }
                b.commit_puts().unwrap();
            }
        }
        i += n;
        k += 1;
    }
}

type Snapshot = (Vec<ObjectRecord>, i64, i64, String, Vec<(i64, i64)>);

fn container_snapshot(b: &ContainerBroker) -> Snapshot {
    let mut rows: Vec<ObjectRecord> = b
        .get_items_since(-1, 100_000)
        .unwrap()
        .into_iter()
        .map(|mut r| {
            r.rowid = None;
            r
        })
        .collect();
    rows.sort_by(|a, b| (&a.name, a.storage_policy_index).cmp(&(&b.name, b.storage_policy_index)));
    let info = b.get_info().unwrap();
    // per-policy counts straight from the rows
    let mut per = vec![(0i64, 0i64); 2];
    for r in &rows {
        if !r.deleted {
            per[r.storage_policy_index as usize].0 += 1;
        }
        per[r.storage_policy_index as usize].1 += r.size as i64;
    }
    (rows, info.object_count, info.bytes_used, info.hash, per)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, .. ProptestConfig::default() })]

    #[test]
    fn container_merge_is_order_and_batch_independent(
        ops in proptest::collection::vec(op_strategy(), 1..40),
        perm in any::<u64>(),
        cuts1 in proptest::collection::vec(1usize..8, 0..20),
        cuts2 in proptest::collection::vec(1usize..8, 0..20),
    ) {
        let recs: Vec<ObjectRecord> = ops.iter().map(record).collect();
        let mut shuffled = recs.clone();
        // deterministic shuffle from `perm`
        let mut state = perm | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let dir = tempfile::tempdir().unwrap();
        let a = new_container(dir.path(), "b0000000000000000000000000000000");
        let b = new_container(dir.path(), "b1000000000000000000000000000000");
        let c = new_container(dir.path(), "b2000000000000000000000000000000");
        apply_container(&a, &recs, &cuts1);
        apply_container(&b, &shuffled, &cuts2);
        // one item at a time, reversed
        for r in recs.iter().rev() {
            c.merge_items(std::slice::from_ref(r), None).unwrap();
        }
        let sa = container_snapshot(&a);
        let sb = container_snapshot(&b);
        let sc = container_snapshot(&c);
        prop_assert_eq!(&sa, &sb);
        prop_assert_eq!(&sa, &sc);
        // the container's policy is 0: counts match the rows of policy 0
        prop_assert_eq!(sa.1, sa.4[0].0);
        // re-applying everything changes nothing
        let max = a.max_row().unwrap();
        a.merge_items(&recs, None).unwrap();
        prop_assert_eq!(a.max_row().unwrap(), max);
        // replication: rows of a merged into an empty DB give the same hash
        let d = new_container(dir.path(), "b3000000000000000000000000000000");
        d.merge_items(&a.get_items_since(-1, 100_000).unwrap(), Some("src")).unwrap();
        prop_assert_eq!(container_snapshot(&d), sa);
    }

    #[test]
    fn account_merge_is_order_and_batch_independent(
        ops in proptest::collection::vec((0u8..5, 0u64..10, 0u64..10), 1..30),
        seed in any::<u64>(),
        cuts in proptest::collection::vec(1usize..6, 0..20),
    ) {
        // counts and policy are a function of (name, newest timestamp): a report is a
        // snapshot of the container at that time (two different reports with the same
        // newest timestamp cannot be ordered by the schema's columns)
        let recs: Vec<ContainerRecord> = ops.iter().map(|&(n, p, d)| {
            let newest = p.max(d);
            let oc = (u64::from(n) * 7 + newest) as i64 % 5;
            ContainerRecord::new(&format!("c{n}"), t(p), t(d), oc, oc * 100 + newest as i64, (u64::from(n) + newest) as i64 % 2)
        }).collect();
        let mut shuffled = recs.clone();
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let dir = tempfile::tempdir().unwrap();
        let a = new_account(dir.path(), "c0000000000000000000000000000000");
        let b = new_account(dir.path(), "c1000000000000000000000000000000");
        for r in &recs {
            a.put_container(r).unwrap();
        }
        let mut i = 0;
        let mut k = 0;
        while i < shuffled.len() {
            let n = cuts.get(k).copied().unwrap_or(2).min(shuffled.len() - i);
            if k % 2 == 0 { b.put_records(&shuffled[i..i + n]).unwrap() } else { b.merge_items(&shuffled[i..i + n], None).unwrap() }
            i += n;
            k += 1;
        }
        let snap = |x: &AccountBroker| {
            let mut rows: Vec<ContainerRecord> = x.get_items_since(-1, 100_000).unwrap().into_iter().map(|mut r| { r.rowid = None; r }).collect();
            rows.sort_by(|a, b| a.name.cmp(&b.name));
            let info = x.get_info().unwrap();
            let stats: Vec<_> = x.get_policy_stats().unwrap().into_iter()
                .filter(|p| (p.container_count, p.object_count, p.bytes_used) != (0, 0, 0)).collect();
            (rows, info.container_count, info.object_count, info.bytes_used, info.hash, stats)
        };
        let sa = snap(&a);
        prop_assert_eq!(&sa, &snap(&b));
        let live = sa.0.iter().filter(|r| !r.deleted).count() as i64;
        prop_assert_eq!(sa.1, live);
        for r in &sa.0 {
            let p = Timestamp::parse(&r.put_timestamp).unwrap();
            let d = Timestamp::parse(&r.delete_timestamp).unwrap();
            prop_assert_eq!(r.deleted, d > p && r.object_count == 0);
        }
    }

    #[test]
    fn metadata_merge_is_order_independent(
        ups in proptest::collection::vec((0u8..6, 0u64..8), 1..30),
        seed in any::<u64>(),
    ) {
        // the value (or deletion) is a function of (key, ts): one write per key and time
        let items: Vec<Metadata> = ups.iter().map(|&(k, ts)| {
            let v = if (u64::from(k) + ts) % 3 == 0 { String::new() } else { format!("v{k}-{ts}") };
            [(format!("X-Container-Meta-K{k}"), (v, t(ts).internal()))].into_iter().collect()
        }).collect();
        let dir = tempfile::tempdir().unwrap();
        let a = new_container(dir.path(), "d0000000000000000000000000000000");
        let b = new_container(dir.path(), "d1000000000000000000000000000000");
        for m in &items {
            a.update_metadata(m, Some(&Constraints::default())).unwrap();
        }
        let mut shuffled = items.clone();
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        // batch them two by two in b
        for pair in shuffled.chunks(2) {
            let mut m = Metadata::new();
            for x in pair {
                cairn_db::merge_metadata(&mut m, x).unwrap();
            }
            b.update_metadata(&m, Some(&Constraints::default())).unwrap();
        }
        prop_assert_eq!(a.metadata().unwrap(), b.metadata().unwrap());
    }
}
