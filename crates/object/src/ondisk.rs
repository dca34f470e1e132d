//! Choosing the current state of a hash directory and cleaning it up
//! (`PROTOCOLS.md`, "Choosing the current state and cleanup (`cleanup_ondisk_files`)").
//!
//! [`gather`] is the pure decision over file names; [`cleanup_hash_dir`] applies it.

use std::fs;
use std::io;
use std::path::Path;

use cairn_common::timestamp::UNITS_PER_SEC;
use cairn_common::Timestamp;

use crate::layout::{parse_file_name, FileKind, OnDiskName};

/// What a hash directory holds once cleanup rules are applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnDiskInfo {
    /// The newest `.data`, if it is the current state.
    pub data: Option<OnDiskName>,
    /// The tombstone that is the current state (no newer `.data`; not reclaimed).
    pub ts: Option<OnDiskName>,
    /// The newest surviving `.meta`.
    pub meta: Option<OnDiskName>,
    /// The `.meta` whose Content-Type overlays the `.data` (its ctype timestamp is newer
    /// than the `.data`); may be the same file as `meta`.
    pub ctype: Option<OnDiskName>,
    /// Files to remove.
    pub obsolete: Vec<String>,
    /// Names that are not object files; left alone.
    pub unknown: Vec<String>,
    /// Object files kept on disk that are not part of the state (an older ctype `.meta`
    /// waiting for its `.data` or for reclaim).
    pub kept_other: Vec<String>,
}

impl OnDiskInfo {
    /// Files that survive cleanup (recognised ones and unknown ones).
    pub fn survivors(&self) -> usize {
        let mut n = self.unknown.len() + self.kept_other.len();
        n += usize::from(self.data.is_some())
            + usize::from(self.ts.is_some())
            + usize::from(self.meta.is_some());
        if let (Some(c), Some(m)) = (&self.ctype, &self.meta) {
            n += usize::from(c.name != m.name);
        }
        n
    }

    /// The ctype timestamp of the content-type overlay, if one applies.
    pub fn ctype_ts(&self) -> Option<Timestamp> {
        self.ctype.as_ref().and_then(|c| c.ctype_ts)
    }

    /// The strings fed to the suffix hash for this directory, in order
    /// (`PROTOCOLS.md`, "Suffix hashes").
    pub fn hash_inputs(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(4);
        if let Some(m) = &self.meta {
            out.push(format!("{}.meta", m.ts.internal()));
        }
        if let Some(t) = &self.ts {
            out.push(format!("{}.ts", t.ts.internal()));
        }
        if let Some(d) = &self.data {
            out.push(format!("{}.data", d.ts.internal()));
        }
        if let Some(c) = self.ctype_ts() {
            out.push(format!("{}_ctype", c.internal()));
        }
        out
    }
}

/// `now - t > reclaim_age` (seconds; offsets ignored, as Swift compares floats).
pub fn is_reclaimable(t: Timestamp, now: Timestamp, reclaim_age: u64) -> bool {
    now.raw.saturating_sub(t.raw) > reclaim_age.saturating_mul(UNITS_PER_SEC)
}

fn newest_first(v: &mut [OnDiskName]) {
    v.sort_by(|a, b| (b.ts, &b.name).cmp(&(a.ts, &a.name)));
}

/// Decide the state and the obsolete files of a hash directory from its file names.
pub fn gather<'a, I>(names: I, now: Timestamp, reclaim_age: u64) -> OnDiskInfo
where
    I: IntoIterator<Item = &'a str>,
{
    let mut info = OnDiskInfo::default();
    let (mut datas, mut tss, mut metas) = (Vec::new(), Vec::new(), Vec::new());
    for name in names {
        match parse_file_name(name) {
            Some(n) => match n.kind {
                FileKind::Data => datas.push(n),
                FileKind::Ts => tss.push(n),
                FileKind::Meta => metas.push(n),
            },
            None => info.unknown.push(name.to_string()),
        }
    }
    newest_first(&mut datas);
    newest_first(&mut tss);
    newest_first(&mut metas);
    let mut obsolete: Vec<String> = Vec::new();
    let retire =
        |v: &mut Vec<OnDiskName>, keep: &dyn Fn(&OnDiskName) -> bool, out: &mut Vec<String>| {
            v.retain(|n| {
                let k = keep(n);
                if !k {
                    out.push(n.name.clone());
                }
                k
            });
        };

    // 1. The newest .ts obsoletes every older-or-equal file and every other .ts.
    let mut ts_state = None;
    if !tss.is_empty() {
        let newest = tss.remove(0);
        obsolete.extend(tss.drain(..).map(|n| n.name));
        let t = newest.ts;
        retire(&mut datas, &|n| n.ts > t, &mut obsolete);
        retire(&mut metas, &|n| n.ts > t, &mut obsolete);
        ts_state = Some(newest);
    }
    // 3. The newest .data obsoletes older .data and older-or-equal .meta/.ts.
    let mut data_state = None;
    if !datas.is_empty() {
        let newest = datas.remove(0);
        obsolete.extend(datas.drain(..).map(|n| n.name));
        let t = newest.ts;
        retire(&mut metas, &|n| n.ts > t, &mut obsolete);
        if let Some(ts) = ts_state.take() {
            // Only reachable when the .data is newer than the tombstone.
            obsolete.push(ts.name);
        }
        data_state = Some(newest);
    }
    // 2. Keep the newest .meta, plus the newest-ctype one if its ctype is newer.
    let mut meta_state = None;
    let mut ctype_state = None;
    if !metas.is_empty() {
        let newest = metas.remove(0);
        let best_ctype = metas
            .iter()
            .enumerate()
            .filter(|(_, n)| n.ctype_ts.is_some())
            .max_by(|(_, a), (_, b)| (a.ctype_ts, a.ts).cmp(&(b.ctype_ts, b.ts)))
            .map(|(i, _)| i);
        let mut extra = None;
        if let Some(i) = best_ctype {
            if metas[i].ctype_ts > newest.ctype_ts && metas[i].ts != newest.ts {
                extra = Some(metas.remove(i));
            }
        }
        obsolete.extend(metas.drain(..).map(|n| n.name));
        let ctype_src = match extra {
            Some(e) => Some(e),
            None if newest.ctype_ts.is_some() => Some(newest.clone()),
            None => None,
        };
        match &data_state {
            Some(d) => {
                // The ctype overlay applies only if newer than the .data.
                match ctype_src {
                    Some(c) if c.ctype_ts.is_some_and(|ct| ct > d.ts) => ctype_state = Some(c),
                    Some(c) if c.name != newest.name => obsolete.push(c.name),
                    _ => {}
                }
                meta_state = Some(newest);
            }
            None => {
                // 4. .meta without .data: kept until older than reclaim_age.
                let extra = ctype_src.filter(|c| c.name != newest.name);
                let mut kept = Vec::new();
                for m in std::iter::once(newest).chain(extra) {
                    if is_reclaimable(m.ts, now, reclaim_age) {
                        obsolete.push(m.name);
                    } else {
                        kept.push(m);
                    }
                }
                let mut it = kept.into_iter();
                meta_state = it.next();
                // A surviving extra ctype .meta is kept on disk but overlays nothing.
                info.kept_other.extend(it.map(|n| n.name));
            }
        }
    }
    // 5. Tombstone reclaim.
    if let Some(ts) = ts_state.take() {
        if is_reclaimable(ts.ts, now, reclaim_age) {
            obsolete.push(ts.name);
        } else {
            ts_state = Some(ts);
        }
    }
    info.data = data_state;
    info.ts = ts_state;
    info.meta = meta_state;
    info.ctype = ctype_state;
    info.obsolete = obsolete;
    info
}

/// List the names in a directory (non-UTF-8 names are skipped).
pub fn list_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        } else {
            tracing::warn!(dir = %dir.display(), "non-UTF-8 file name left alone");
            names.push(String::new());
        }
    }
    Ok(names)
}

/// Apply [`gather`] to a hash directory: remove obsolete files, `rmdir` it if empty.
/// A missing directory yields an empty info; a non-directory yields `ENOTDIR`.
pub fn cleanup_hash_dir(dir: &Path, now: Timestamp, reclaim_age: u64) -> io::Result<OnDiskInfo> {
    let names = match list_names(dir) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(OnDiskInfo::default()),
        Err(e) => return Err(e),
    };
    let info = gather(names.iter().map(String::as_str), now, reclaim_age);
    for name in &info.unknown {
        if !name.is_empty() {
            tracing::warn!(dir = %dir.display(), name, "unknown file in hash dir left alone");
        }
    }
    for name in &info.obsolete {
        match fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if info.survivors() == 0 {
        remove_dir_if_empty(dir);
    }
    Ok(info)
}

/// `rmdir`, ignoring "not empty" and "not found".
pub fn remove_dir_if_empty(dir: &Path) {
    if let Err(e) = fs::remove_dir(dir) {
        if e.kind() != io::ErrorKind::NotFound && e.raw_os_error() != Some(libc::ENOTEMPTY) {
            tracing::debug!(dir = %dir.display(), error = %e, "rmdir failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::make_file_name;

    const BASE: u64 = 1_700_000_000;

    fn t(s: u64) -> Timestamp {
        Timestamp::from_secs(BASE + s)
    }
    fn d(s: u64) -> String {
        make_file_name(FileKind::Data, t(s), None)
    }
    fn ts(s: u64) -> String {
        make_file_name(FileKind::Ts, t(s), None)
    }
    fn m(s: u64) -> String {
        make_file_name(FileKind::Meta, t(s), None)
    }
    /// A `.meta` at `s` carrying a content type of time `c`.
    fn mc(s: u64, c: u64) -> String {
        make_file_name(FileKind::Meta, t(s), Some(t(c)))
    }

    struct Case {
        files: Vec<String>,
        now: u64,
        reclaim: u64,
        data: Option<String>,
        ts: Option<String>,
        meta: Option<String>,
        ctype: Option<String>,
        obsolete: Vec<String>,
    }

    fn case(files: Vec<String>) -> Case {
        Case {
            files,
            now: 100,
            reclaim: 1000,
            data: None,
            ts: None,
            meta: None,
            ctype: None,
            obsolete: vec![],
        }
    }

    #[test]
    fn table() {
        let cases = vec![
            Case {
                data: Some(d(1)),
                ..case(vec![d(1)])
            },
            Case {
                data: Some(d(2)),
                obsolete: vec![d(1)],
                ..case(vec![d(1), d(2)])
            },
            Case {
                ts: Some(ts(2)),
                obsolete: vec![d(1)],
                ..case(vec![d(1), ts(2)])
            },
            Case {
                data: Some(d(2)),
                obsolete: vec![ts(1)],
                ..case(vec![ts(1), d(2)])
            },
            // a tombstone wins a tie
            Case {
                ts: Some(ts(1)),
                obsolete: vec![d(1)],
                ..case(vec![d(1), ts(1)])
            },
            Case {
                data: Some(d(1)),
                meta: Some(m(2)),
                ..case(vec![d(1), m(2)])
            },
            Case {
                data: Some(d(2)),
                obsolete: vec![m(1)],
                ..case(vec![d(2), m(1)])
            },
            Case {
                data: Some(d(2)),
                obsolete: vec![m(2)],
                ..case(vec![d(2), m(2)])
            },
            Case {
                data: Some(d(1)),
                meta: Some(m(3)),
                obsolete: vec![m(2)],
                ..case(vec![d(1), m(2), m(3)])
            },
            // the newest .meta carries the content type
            Case {
                data: Some(d(1)),
                meta: Some(mc(3, 3)),
                ctype: Some(mc(3, 3)),
                obsolete: vec![m(2)],
                ..case(vec![d(1), m(2), mc(3, 3)])
            },
            // an older .meta changed the content type, a newer one did not: keep both
            Case {
                data: Some(d(1)),
                meta: Some(m(3)),
                ctype: Some(mc(2, 2)),
                ..case(vec![d(1), mc(2, 2), m(3)])
            },
            // ... unless the .data is newer than that content type
            Case {
                data: Some(d(3)),
                meta: Some(m(5)),
                obsolete: vec![mc(4, 2)],
                ..case(vec![d(3), mc(4, 2), m(5)])
            },
            Case {
                data: Some(d(3)),
                meta: Some(mc(4, 2)),
                ..case(vec![d(3), mc(4, 2)])
            },
            // newest .meta repeats the older ctype: the older file is obsolete
            Case {
                data: Some(d(1)),
                meta: Some(mc(3, 2)),
                ctype: Some(mc(3, 2)),
                obsolete: vec![mc(2, 2)],
                ..case(vec![d(1), mc(2, 2), mc(3, 2)])
            },
            // .meta newer than a tombstone and no .data: both kept
            Case {
                ts: Some(ts(2)),
                meta: Some(m(3)),
                obsolete: vec![m(1)],
                ..case(vec![m(1), ts(2), m(3)])
            },
            Case {
                ts: Some(ts(2)),
                obsolete: vec![ts(1)],
                ..case(vec![ts(1), ts(2)])
            },
            Case {
                data: Some(d(4)),
                obsolete: vec![d(1), ts(2), m(3)],
                ..case(vec![d(1), ts(2), m(3), d(4)])
            },
            // reclaim: an old tombstone and a stray old .meta go, a young .meta stays
            Case {
                now: 2000,
                obsolete: vec![ts(1)],
                ..case(vec![ts(1)])
            },
            Case {
                now: 1001,
                ts: Some(ts(1)),
                ..case(vec![ts(1)])
            },
            Case {
                now: 2000,
                obsolete: vec![m(1)],
                ..case(vec![m(1)])
            },
            Case {
                now: 1500,
                meta: Some(m(900)),
                ..case(vec![m(900)])
            },
            // data is never reclaimed
            Case {
                now: 99999,
                data: Some(d(1)),
                meta: Some(m(2)),
                ..case(vec![d(1), m(2)])
            },
            Case {
                now: 99999,
                obsolete: vec![d(1), ts(2)],
                ..case(vec![d(1), ts(2)])
            },
            Case { ..case(vec![]) },
        ];
        for (i, c) in cases.into_iter().enumerate() {
            let info = gather(c.files.iter().map(String::as_str), t(c.now), c.reclaim);
            let name = |o: &Option<OnDiskName>| o.as_ref().map(|n| n.name.clone());
            assert_eq!(name(&info.data), c.data, "case {i} data {:?}", c.files);
            assert_eq!(name(&info.ts), c.ts, "case {i} ts {:?}", c.files);
            assert_eq!(name(&info.meta), c.meta, "case {i} meta {:?}", c.files);
            assert_eq!(name(&info.ctype), c.ctype, "case {i} ctype {:?}", c.files);
            let mut got = info.obsolete.clone();
            got.sort();
            let mut want = c.obsolete.clone();
            want.sort();
            assert_eq!(got, want, "case {i} obsolete {:?}", c.files);
        }
    }

    fn arb_name() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        (0u8..4, 0u64..30, 0u64..30).prop_map(|(k, s, c)| match k {
            0 => d(s),
            1 => ts(s),
            2 => m(s),
            _ => mc(s.max(c), c.min(s)),
        })
    }

    proptest::proptest! {
        /// Cleanup is idempotent, never invents files, and the newest write wins.
        #[test]
        fn gather_properties(
            names in proptest::collection::vec(arb_name(), 0..12),
            now in 0u64..3000,
        ) {
            let mut names = names;
            names.sort();
            names.dedup();
            let info = gather(names.iter().map(String::as_str), t(now), 1000);
            for o in &info.obsolete {
                proptest::prop_assert!(names.contains(o));
            }
            let mut uniq = info.obsolete.clone();
            uniq.sort();
            uniq.dedup();
            proptest::prop_assert_eq!(uniq.len(), info.obsolete.len());
            let survivors: Vec<&str> = names
                .iter()
                .map(String::as_str)
                .filter(|n| !info.obsolete.iter().any(|o| o == n))
                .collect();
            proptest::prop_assert_eq!(survivors.len(), info.survivors());
            let again = gather(survivors.iter().copied(), t(now), 1000);
            proptest::prop_assert!(again.obsolete.is_empty(), "{:?}", again.obsolete);
            proptest::prop_assert_eq!(&again.data, &info.data);
            proptest::prop_assert_eq!(&again.ts, &info.ts);
            proptest::prop_assert_eq!(&again.meta, &info.meta);
            proptest::prop_assert_eq!(&again.ctype, &info.ctype);
            let parsed: Vec<OnDiskName> = names.iter().filter_map(|n| parse_file_name(n)).collect();
            let newest = |k: FileKind| parsed.iter().filter(|n| n.kind == k).map(|n| n.ts).max();
            let (nd, nt) = (newest(FileKind::Data), newest(FileKind::Ts));
            if let Some(data) = &info.data {
                proptest::prop_assert_eq!(Some(data.ts), nd);
                proptest::prop_assert!(nt.is_none_or(|t| t < data.ts));
            }
            if let Some(tomb) = &info.ts {
                proptest::prop_assert_eq!(Some(tomb.ts), nt);
                proptest::prop_assert!(nd.is_none_or(|d| d <= tomb.ts));
            }
            if let (Some(meta), Some(data)) = (&info.meta, &info.data) {
                proptest::prop_assert!(meta.ts > data.ts);
            }
        }
    }

    #[test]
    fn unknown_files_are_left_alone() {
        let info = gather(["junk", d(1).as_str()], t(0), 10);
        assert_eq!(info.unknown, vec!["junk".to_string()]);
        assert_eq!(info.survivors(), 2);
    }

    #[test]
    fn hash_inputs_order() {
        let names = [d(1), mc(2, 2), m(3)];
        let info = gather(names.iter().map(String::as_str), t(0), 1000);
        assert_eq!(
            info.hash_inputs(),
            vec![
                format!("{}.meta", t(3).internal()),
                format!("{}.data", t(1).internal()),
                format!("{}_ctype", t(2).internal()),
            ]
        );
        let info = gather([ts(5).as_str()], t(0), 1000);
        assert_eq!(info.hash_inputs(), vec![format!("{}.ts", t(5).internal())]);
    }

    #[test]
    fn cleanup_removes_obsolete_and_empty_dir() {
        let dir = tempfile::tempdir().unwrap();
        let h = dir.path().join("h");
        fs::create_dir(&h).unwrap();
        for n in [d(1), ts(2), m(3)] {
            fs::write(h.join(n), b"").unwrap();
        }
        let info = cleanup_hash_dir(&h, t(10), 1000).unwrap();
        assert_eq!(info.ts.as_ref().map(|n| n.name.clone()), Some(ts(2)));
        let mut left = list_names(&h).unwrap();
        left.sort();
        assert_eq!(left, vec![ts(2), m(3)]);
        // everything reclaimed: the directory goes too
        let info = cleanup_hash_dir(&h, t(100_000), 1000).unwrap();
        assert_eq!(info.survivors(), 0);
        assert!(!h.exists());
        assert_eq!(
            cleanup_hash_dir(&h, t(0), 1).unwrap(),
            OnDiskInfo::default()
        );
    }
}
