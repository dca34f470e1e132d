mod common;

use cairn_db::{ContainerBroker, ContainerRecord, ListParams, Listed, ObjectRecord};
use common::*;

const ETAG: &str = "d41d8cd98f00b204e9800998ecf8427e";

fn names<T>(l: &[Listed<T>], f: impl Fn(&T) -> &str) -> Vec<String> {
    l.iter()
        .map(|e| match e {
            Listed::Item(o) => f(o).to_string(),
            Listed::Subdir(s) => s.clone(),
        })
        .collect()
}

struct Q<'a> {
    b: &'a ContainerBroker,
}

impl Q<'_> {
    #[allow(clippy::too_many_arguments)]
    fn list(
        &self,
        limit: usize,
        marker: &str,
        end_marker: &str,
        prefix: Option<&str>,
        delimiter: Option<&str>,
        path: Option<&str>,
        reverse: bool,
    ) -> Vec<String> {
        let p = ListParams {
            limit,
            marker: marker.into(),
            end_marker: end_marker.into(),
            prefix: prefix.map(Into::into),
            delimiter: delimiter.map(Into::into),
            path: path.map(Into::into),
            reverse,
        };
        names(&self.b.list_objects_iter(&p, None).unwrap(), |o| &o.name)
    }
}

fn put_all(b: &ContainerBroker, names: &[String]) {
    let recs: Vec<ObjectRecord> = names
        .iter()
        .map(|n| ObjectRecord::put(n, ts(2.0), 0, "text/plain", ETAG))
        .collect();
    b.merge_items(&recs, None).unwrap();
}

/// Swift's `test_list_objects` (test/unit/container/test_backend.py), case by case.
#[test]
fn swift_list_objects_cases() {
    let dir = tempfile::tempdir().unwrap();
    let b = new_container(dir.path(), "0000000000000000000000000000000a");
    let mut all = Vec::new();
    for o1 in 0..4 {
        for o2 in 0..125 {
            all.push(format!("{o1}/{o2:04}"));
        }
    }
    for o in 0..125 {
        all.push(format!("2/0051/{o:04}"));
    }
    for o in 0..125 {
        all.push(format!("3/{o:04}/0049"));
    }
    put_all(&b, &all);
    let q = Q { b: &b };

    let l = q.list(100, "", "", None, None, None, false);
    assert_eq!(
        (l.len(), l[0].as_str(), l[99].as_str()),
        (100, "0/0000", "0/0099")
    );
    let l = q.list(100, "", "0/0050", None, None, None, false);
    assert_eq!(
        (l.len(), l[0].as_str(), l[49].as_str()),
        (50, "0/0000", "0/0049")
    );
    let l = q.list(100, "0/0099", "", None, None, None, false);
    assert_eq!(
        (l.len(), l[0].as_str(), l[99].as_str()),
        (100, "0/0100", "1/0074")
    );
    let l = q.list(55, "1/0074", "", None, None, None, false);
    assert_eq!(
        (l.len(), l[0].as_str(), l[54].as_str()),
        (55, "1/0075", "2/0004")
    );
    let l = q.list(55, "2/0005", "", None, None, None, true);
    assert_eq!(
        (l.len(), l[0].as_str(), l[54].as_str()),
        (55, "2/0004", "1/0075")
    );
    let l = q.list(10, "", "", Some("0/01"), None, None, false);
    assert_eq!(
        (l.len(), l[0].as_str(), l[9].as_str()),
        (10, "0/0100", "0/0109")
    );
    let l = q.list(10, "", "", Some("0/"), Some("/"), None, false);
    assert_eq!(
        (l.len(), l[0].as_str(), l[9].as_str()),
        (10, "0/0000", "0/0009")
    );
    let l = q.list(10, "", "", Some("0/"), Some("/"), None, true);
    assert_eq!(
        (l.len(), l[0].as_str(), l[9].as_str()),
        (10, "0/0124", "0/0115")
    );
    let l = q.list(10, "", "", None, None, Some("0"), false);
    assert_eq!(
        (l.len(), l[0].as_str(), l[9].as_str()),
        (10, "0/0000", "0/0009")
    );
    let l = q.list(10, "", "", None, None, Some("0"), true);
    assert_eq!(
        (l.len(), l[0].as_str(), l[9].as_str()),
        (10, "0/0124", "0/0115")
    );
    assert_eq!(
        q.list(10, "", "", Some(""), Some("/"), None, false),
        ["0/", "1/", "2/", "3/"]
    );
    assert_eq!(
        q.list(10, "", "", Some(""), Some("/"), None, true),
        ["3/", "2/", "1/", "0/"]
    );
    assert_eq!(
        q.list(10, "2", "", None, Some("/"), None, false),
        ["2/", "3/"]
    );
    assert_eq!(q.list(10, "2/", "", None, Some("/"), None, false), ["3/"]);
    assert_eq!(
        q.list(10, "2/", "", None, Some("/"), None, true),
        ["1/", "0/"]
    );
    assert_eq!(
        q.list(10, "20", "", None, Some("/"), None, true),
        ["2/", "1/", "0/"]
    );
    let l = q.list(10, "2/0050", "", Some("2/"), Some("/"), None, false);
    assert_eq!(l.len(), 10);
    assert_eq!(&l[..3], ["2/0051", "2/0051/", "2/0052"]);
    assert_eq!(l[9], "2/0059");
    assert_eq!(
        q.list(10, "3/0045", "", Some("3/"), Some("/"), None, false),
        [
            "3/0045/", "3/0046", "3/0046/", "3/0047", "3/0047/", "3/0048", "3/0048/", "3/0049",
            "3/0049/", "3/0050"
        ]
    );
    put_all(&b, &["3/0049/".to_string()]);
    assert_eq!(
        q.list(10, "3/0048", "", None, None, None, false),
        [
            "3/0048/0049",
            "3/0049",
            "3/0049/",
            "3/0049/0049",
            "3/0050",
            "3/0050/0049",
            "3/0051",
            "3/0051/0049",
            "3/0052",
            "3/0052/0049"
        ]
    );
    assert_eq!(
        q.list(10, "3/0048", "", Some("3/"), Some("/"), None, false),
        [
            "3/0048/", "3/0049", "3/0049/", "3/0050", "3/0050/", "3/0051", "3/0051/", "3/0052",
            "3/0052/", "3/0053"
        ]
    );
    assert_eq!(
        q.list(10, "", "", Some("3/0049/"), Some("/"), None, false),
        ["3/0049/", "3/0049/0049"]
    );
    assert_eq!(
        q.list(10, "", "", None, None, Some("3/0049"), false),
        ["3/0049/0049"]
    );
    assert_eq!(
        q.list(2, "", "", Some("3/"), Some("/"), None, false),
        ["3/0000", "3/0000/"]
    );
    assert_eq!(
        q.list(2, "", "", None, None, Some("3"), false),
        ["3/0000", "3/0001"]
    );
}

#[test]
fn markers_prefix_end_marker_combinations() {
    let dir = tempfile::tempdir().unwrap();
    let b = new_container(dir.path(), "0000000000000000000000000000000b");
    let all: Vec<String> = ["a", "a/b", "a/c/d", "a/c/e", "ab", "b", "b/x", "c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    put_all(&b, &all);
    b.delete_object("c", ts(3.0), 0).unwrap();
    let q = Q { b: &b };
    assert_eq!(
        q.list(100, "", "", None, None, None, false),
        ["a", "a/b", "a/c/d", "a/c/e", "ab", "b", "b/x"]
    );
    assert_eq!(
        q.list(100, "a/b", "b", None, None, None, false),
        ["a/c/d", "a/c/e", "ab"]
    );
    // reverse: marker is the (exclusive) upper bound, end_marker the lower one
    assert_eq!(
        q.list(100, "b", "a/b", None, None, None, true),
        ["ab", "a/c/e", "a/c/d"]
    );
    assert_eq!(q.list(100, "a/b", "", None, None, None, true), ["a"]);
    assert_eq!(
        q.list(100, "", "", Some("a/"), None, None, false),
        ["a/b", "a/c/d", "a/c/e"]
    );
    assert_eq!(
        q.list(100, "", "", Some("a/"), Some("/"), None, false),
        ["a/b", "a/c/"]
    );
    assert_eq!(
        q.list(100, "", "", Some("a/"), Some("/"), None, true),
        ["a/c/", "a/b"]
    );
    assert_eq!(
        q.list(100, "", "", None, Some("/"), None, false),
        ["a", "a/", "ab", "b", "b/"]
    );
    assert_eq!(
        q.list(100, "", "", None, Some("/"), None, true),
        ["b/", "b", "ab", "a/", "a"]
    );
    assert_eq!(
        q.list(100, "a/", "", None, Some("/"), None, false),
        ["ab", "b", "b/"]
    );
    assert_eq!(
        q.list(100, "", "a/c/e", Some("a/"), None, None, false),
        ["a/b", "a/c/d"]
    );
    assert_eq!(
        q.list(100, "", "zzz", Some("a/"), None, None, false),
        ["a/b", "a/c/d", "a/c/e"]
    );
    assert_eq!(
        q.list(100, "", "", Some("a/c/"), Some("/"), None, false),
        ["a/c/d", "a/c/e"]
    );
    assert_eq!(q.list(100, "", "", None, None, Some("a"), false), ["a/b"]);
    assert_eq!(q.list(100, "", "", None, None, Some("a/"), false), ["a/b"]);
    assert_eq!(
        q.list(100, "", "", None, None, Some(""), false),
        ["a", "ab", "b", "c"]
            .iter()
            .filter(|n| **n != "c")
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        q.list(100, "", "", Some("zz"), Some("/"), None, false),
        Vec::<String>::new()
    );
    assert_eq!(
        q.list(0, "", "", None, None, None, false),
        Vec::<String>::new()
    );
    // multi-character delimiter
    assert_eq!(
        q.list(100, "", "", None, Some("/c"), None, false),
        ["a", "a/b", "a/c", "ab", "b", "b/x"]
    );
}

#[test]
fn unicode_byte_order_and_slashes() {
    let dir = tempfile::tempdir().unwrap();
    let b = new_container(dir.path(), "0000000000000000000000000000000c");
    let all: Vec<String> = [
        "z",
        "é",
        "\u{10000}",
        "\u{ffff}",
        "e\u{301}",
        "日本/語",
        "日本/x/y",
        "a//b",
        "/lead",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    put_all(&b, &all);
    let q = Q { b: &b };
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(q.list(100, "", "", None, None, None, false), sorted);
    assert_eq!(
        q.list(100, "", "", None, Some("/"), None, false),
        [
            "/",
            "a/",
            "e\u{301}",
            "z",
            "é",
            "日本/",
            "\u{ffff}",
            "\u{10000}"
        ]
    );
    assert_eq!(
        q.list(100, "", "", Some("日本/"), Some("/"), None, false),
        ["日本/x/", "日本/語"]
    );
    assert_eq!(
        q.list(100, "é", "", None, None, None, false),
        ["日本/x/y", "日本/語", "\u{ffff}", "\u{10000}"]
    );
    assert_eq!(
        q.list(100, "", "", Some("a/"), Some("/"), None, false),
        ["a//"]
    );
    let l = b
        .list_objects_iter(&ListParams::with_limit(1), None)
        .unwrap();
    match &l[0] {
        Listed::Item(o) => {
            assert_eq!(
                (
                    o.name.as_str(),
                    o.hash.as_str(),
                    o.bytes,
                    o.content_type.as_str()
                ),
                ("/lead", ETAG, 0, "text/plain")
            );
            assert_eq!(o.last_modified.iso_listing(), "1970-01-01T00:00:02.000000");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn account_listing() {
    let dir = tempfile::tempdir().unwrap();
    let a = new_account(dir.path(), "0000000000000000000000000000000d");
    for (n, oc) in [("c1", 3), ("c2", 0), ("pre/x", 1), ("pre/y", 2), ("q", 5)] {
        a.put_container(&ContainerRecord::new(
            n,
            ts(5.0),
            cairn_common::Timestamp::ZERO,
            oc,
            oc * 10,
            0,
        ))
        .unwrap();
    }
    a.put_container(&ContainerRecord::new("q", ts(5.0), ts(6.0), 0, 0, 0))
        .unwrap();
    let p = ListParams {
        limit: 100,
        delimiter: Some("/".into()),
        ..Default::default()
    };
    let l = a.list_containers_iter(&p).unwrap();
    assert_eq!(names(&l, |c| &c.name), ["c1", "c2", "pre/"]);
    match &l[0] {
        Listed::Item(c) => {
            assert_eq!((c.count, c.bytes), (3, 30));
            assert_eq!(c.last_modified, ts(5.0));
        }
        other => panic!("{other:?}"),
    }
    let p = ListParams {
        limit: 1,
        marker: "c1".into(),
        ..Default::default()
    };
    assert_eq!(
        names(&a.list_containers_iter(&p).unwrap(), |c| &c.name),
        ["c2"]
    );
    let p = ListParams {
        limit: 10,
        reverse: true,
        prefix: Some("pre/".into()),
        ..Default::default()
    };
    assert_eq!(
        names(&a.list_containers_iter(&p).unwrap(), |c| &c.name),
        ["pre/y", "pre/x"]
    );
    let json = cairn_db::format::account_json(
        &a.list_containers_iter(&ListParams::with_limit(1)).unwrap(),
    );
    assert_eq!(json, "[{\"name\": \"c1\", \"count\": 3, \"bytes\": 30, \"last_modified\": \"1970-01-01T00:00:05.000000\"}]");
}

/// Swift's listing semantics as a plain model over a sorted name list.
fn model(names: &[String], p: &ListParams) -> Vec<String> {
    let (mut marker, mut end_marker) = (p.marker.clone(), p.end_marker.clone());
    if p.reverse {
        std::mem::swap(&mut marker, &mut end_marker);
    }
    let (prefix, delim, path) = match &p.path {
        Some(pa) => {
            let pp = if pa.is_empty() {
                String::new()
            } else {
                format!("{}/", pa.trim_end_matches('/'))
            };
            (pp.clone(), Some("/".to_string()), Some(pp))
        }
        None => (
            p.prefix.clone().unwrap_or_default(),
            p.delimiter.clone().filter(|d| !d.is_empty()),
            None,
        ),
    };
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    sorted.dedup();
    if p.reverse {
        sorted.reverse();
    }
    let visible = |n: &str| {
        n.starts_with(&prefix)
            && (marker.is_empty() || n > marker.as_str())
            && (end_marker.is_empty() || n < end_marker.as_str())
    };
    let sorted: Vec<&String> = sorted.into_iter().filter(|n| visible(n)).collect();
    let mut out: Vec<String> = Vec::new();
    for n in sorted.iter().copied() {
        // Swift quirk (reverse path listings): skipping a deeper name sets
        // end_marker = its directory, which also hides the object named exactly that.
        if path.is_some()
            && p.reverse
            && n.ends_with('/')
            && n.len() > prefix.len()
            && n[prefix.len()..].find('/') == Some(n.len() - prefix.len() - 1)
            && sorted
                .iter()
                .any(|m| m.len() > n.len() && m.starts_with(n.as_str()))
        {
            continue;
        }
        let key = match &delim {
            None => n.clone(),
            Some(d) => match n[prefix.len()..].find(d.as_str()) {
                None => n.clone(),
                Some(i) => {
                    let dir = n[..prefix.len() + i + d.len()].to_string();
                    if path.is_some() {
                        if n.len() > dir.len() {
                            continue; // deeper than a direct child
                        }
                        n.clone()
                    } else {
                        if dir == marker {
                            continue;
                        }
                        dir
                    }
                }
            },
        };
        if path.as_deref() == Some(n.as_str()) {
            continue;
        }
        if out.last() == Some(&key) {
            continue;
        }
        out.push(key);
        if out.len() == p.limit {
            break;
        }
    }
    out
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, .. Default::default() })]

    #[test]
    fn listing_matches_model(
        raw in proptest::collection::vec(proptest::string::string_regex("[ab/é-]{1,5}").unwrap(), 0..40),
        limit in 1usize..12,
        marker in proptest::option::of(proptest::string::string_regex("[ab/é-]{0,3}").unwrap()),
        end_marker in proptest::option::of(proptest::string::string_regex("[ab/é-]{0,3}").unwrap()),
        prefix in proptest::option::of(proptest::string::string_regex("[ab/]{0,2}").unwrap()),
        delimiter in proptest::option::of(proptest::sample::select(vec!["/", "-", "é", "b/"])),
        path in proptest::option::of(proptest::string::string_regex("[ab]{0,2}").unwrap()),
        reverse: bool,
    ) {
        use std::sync::OnceLock;
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let b = new_container(dir.path(), &format!("{n:032x}"));
        put_all(&b, &raw);
        let p = ListParams {
            limit,
            marker: marker.unwrap_or_default(),
            end_marker: end_marker.unwrap_or_default(),
            prefix,
            delimiter: delimiter.map(str::to_string),
            path,
            reverse,
        };
        let got = names(&b.list_objects_iter(&p, None).unwrap(), |o| &o.name);
        proptest::prop_assert_eq!(got, model(&raw, &p), "params {:?}", p);
    }
}
