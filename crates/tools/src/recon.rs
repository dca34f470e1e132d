//! `cairn recon` (Swift's `swift-recon`): ask every storage server of the rings for its
//! recon stats at once and show them side by side.
//!
//! The servers are every distinct `ip:port` of the object rings (all policies), the
//! container ring and the account ring. Each is asked, concurrently and with a timeout,
//! `GET /recon/` `replication/<type>` (per ring it serves), `async` (object servers),
//! `quarantined`, `diskusage`, `load`, `time`, `ringmd5` and `version`.
//!
//! Problems (exit status 1):
//! - a server that answered none of the requests (**unreachable**) or answered some with
//!   an error;
//! - a ring whose MD5 on the server differs from the local file of the same name in the
//!   cluster file's ring directory (only names present on both sides are compared);
//! - replication **stale**: the last completed pass of a ring the server serves ended
//!   more than `--stale` seconds ago (default 86400 = one day: Swift's replicators run a
//!   pass every 30 s and even a large node finishes one in hours, while deleted data is
//!   at risk only after `reclaim_age`, a week; a server that has not completed a pass
//!   yet shows `never` and is not a problem, a fresh node has none).
//!
//! Clock skew beyond `--max-skew` seconds is flagged in the table but is not a problem.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_common::config::ClusterConfig;
use cairn_common::http::authority;
use cairn_ring::Ring;
use futures_util::future::join_all;
use http::Method;
use serde_json::{json, Map, Value};

use crate::client::Http;
use crate::{ToolError, DEFAULT_CLUSTER_CONFIG};

/// `cairn recon`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct ReconArgs {
    /// The cluster file (ring directory: the servers to ask and the local ring MD5s).
    #[arg(long, default_value = DEFAULT_CLUSTER_CONFIG)]
    pub cluster_config: PathBuf,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Seconds to connect to a server, and again to get each answer.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    /// A replication pass that ended more than this many seconds ago is stale.
    #[arg(long, default_value_t = 86400.0)]
    pub stale: f64,
    /// Flag clocks further than this many seconds from the local clock.
    #[arg(long, default_value_t = 1.0)]
    pub max_skew: f64,
}

impl ReconArgs {
    pub fn new(cluster_config: PathBuf) -> ReconArgs {
        ReconArgs {
            cluster_config,
            json: false,
            timeout: 5.0,
            stale: 86400.0,
            max_skew: 1.0,
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What one server answered.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerRecon {
    /// `ip:port`.
    pub address: String,
    /// `object`, `container`, `account` (the rings it is in).
    pub types: BTreeSet<String>,
    /// Its devices in the rings.
    pub devices: BTreeSet<String>,
    /// Endpoint (`load`, `replication/object`, …) → answer.
    pub answers: BTreeMap<String, Value>,
    /// Endpoint → why there is no answer.
    pub errors: BTreeMap<String, String>,
    /// Local clock just before and just after the `time` request.
    pub time_window: Option<(f64, f64)>,
}

/// Replication of one ring on one server.
#[derive(Debug, Clone, PartialEq)]
pub struct Replication {
    /// Seconds since the last pass ended (`None`: no pass reported).
    pub age: Option<f64>,
    pub duration: Option<f64>,
    pub failures: Option<u64>,
}

impl ServerRecon {
    /// Answered at least one request.
    pub fn reachable(&self) -> bool {
        !self.answers.is_empty()
    }

    pub fn replication(&self, kind: &str, now: f64) -> Replication {
        let v = self.answers.get(&format!("replication/{kind}"));
        let num = |k: &str| v.and_then(|v| v.get(k)).and_then(Value::as_f64);
        Replication {
            age: num("replication_last").map(|t| (now - t).max(0.0)),
            duration: num("replication_time"),
            failures: v
                .and_then(|v| v.get("replication_stats"))
                .and_then(|s| s.get("failure"))
                .and_then(Value::as_u64),
        }
    }

    /// Skew of the server's clock: 0 when its time fell inside the request's window.
    pub fn skew(&self) -> Option<f64> {
        let remote = self.answers.get("time")?.as_f64()?;
        let (t0, t1) = self.time_window?;
        Some(if remote < t0 {
            remote - t0
        } else if remote > t1 {
            remote - t1
        } else {
            0.0
        })
    }

    pub fn async_pending(&self) -> Option<u64> {
        self.answers.get("async")?.get("async_pending")?.as_u64()
    }

    /// Objects + containers + accounts quarantined.
    pub fn quarantined(&self) -> Option<u64> {
        let q = self.answers.get("quarantined")?;
        let n = |k: &str| q.get(k).and_then(Value::as_u64).unwrap_or(0);
        Some(n("objects") + n("containers") + n("accounts"))
    }

    /// (used, size) over mounted devices, and how many are unmounted.
    pub fn disk(&self) -> Option<(u64, u64, usize)> {
        let list = self.answers.get("diskusage")?.as_array()?;
        let (mut used, mut size, mut unmounted) = (0, 0, 0);
        for d in list {
            if d.get("mounted").and_then(Value::as_bool) == Some(true) {
                used += d.get("used").and_then(Value::as_u64).unwrap_or(0);
                size += d.get("size").and_then(Value::as_u64).unwrap_or(0);
            } else {
                unmounted += 1;
            }
        }
        Some((used, size, unmounted))
    }

    pub fn load1(&self) -> Option<f64> {
        self.answers.get("load")?.get("1m")?.as_f64()
    }

    pub fn version(&self) -> Option<&str> {
        self.answers.get("version")?.get("version")?.as_str()
    }

    /// Ring file names whose MD5 differs from `local` (file name → md5).
    pub fn ring_mismatches(&self, local: &BTreeMap<String, String>) -> Vec<String> {
        let Some(Value::Object(remote)) = self.answers.get("ringmd5") else {
            return Vec::new();
        };
        let mut out: Vec<String> = remote
            .iter()
            .filter_map(|(path, sum)| {
                let name = Path::new(path).file_name()?.to_string_lossy().into_owned();
                let mine = local.get(&name)?;
                (Some(mine.as_str()) != sum.as_str()).then_some(name)
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Everything `cairn recon` learned.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconReport {
    pub ring_dir: PathBuf,
    /// Local ring file name → MD5.
    pub local_rings: BTreeMap<String, String>,
    pub servers: Vec<ServerRecon>,
    /// When the answers were judged (Unix time).
    pub now: f64,
    pub stale: f64,
    pub max_skew: f64,
}

fn ago(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 120.0 {
        format!("{s:.0}s")
    } else if s < 7200.0 {
        format!("{:.0}m", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.0}h", s / 3600.0)
    } else {
        format!("{:.0}d", s / 86400.0)
    }
}

impl ReconReport {
    /// Every problem, one line each (empty: all well).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.servers {
            if !s.reachable() {
                let why = s.errors.values().next().cloned().unwrap_or_default();
                out.push(format!("{} unreachable: {why}", s.address));
                continue;
            }
            for (what, e) in &s.errors {
                out.push(format!("{} /recon/{what}: {e}", s.address));
            }
            let bad = s.ring_mismatches(&self.local_rings);
            if !bad.is_empty() {
                out.push(format!(
                    "{} ring MD5 differs from the local ring: {}",
                    s.address,
                    bad.join(", ")
                ));
            }
            for kind in &s.types {
                if let Some(age) = s.replication(kind, self.now).age {
                    if age > self.stale {
                        out.push(format!(
                            "{} {kind} replication stale: last pass ended {} ago",
                            s.address,
                            ago(age)
                        ));
                    }
                }
            }
        }
        out
    }

    /// The oldest replication pass of a server's rings (`None`: none reported).
    fn oldest(&self, s: &ServerRecon) -> (Option<f64>, Option<f64>, Option<u64>, bool) {
        let (mut age, mut dur, mut fail, mut never) =
            (None::<f64>, None::<f64>, None::<u64>, false);
        for kind in &s.types {
            let r = s.replication(kind, self.now);
            match r.age {
                Some(a) => age = Some(age.map_or(a, |x| x.max(a))),
                None => never = true,
            }
            if let Some(d) = r.duration {
                dur = Some(dur.map_or(d, |x| x.max(d)));
            }
            if let Some(f) = r.failures {
                fail = Some(fail.unwrap_or(0) + f);
            }
        }
        (age, dur, fail, never)
    }

    /// The table and a summary.
    pub fn text(&self) -> String {
        let header = [
            "SERVER",
            "TYPE",
            "STATUS",
            "REPL AGE",
            "REPL TIME",
            "FAILED",
            "ASYNC",
            "QUAR",
            "DISK",
            "LOAD",
            "SKEW",
            "RINGS",
        ];
        let mut rows: Vec<Vec<String>> = Vec::new();
        for s in &self.servers {
            let types = s.types.iter().cloned().collect::<Vec<_>>().join(",");
            if !s.reachable() {
                let mut row = vec![s.address.clone(), types, "UNREACHABLE".into()];
                row.extend(std::iter::repeat_n("-".to_string(), header.len() - 3));
                rows.push(row);
                continue;
            }
            let (age, dur, fail, never) = self.oldest(s);
            let age_s = match (age, never) {
                (_, true) => "never".to_string(),
                (Some(a), _) if a > self.stale => format!("{} !", ago(a)),
                (Some(a), _) => ago(a),
                (None, _) => "-".into(),
            };
            let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
            let disk = match s.disk() {
                Some((used, size, unmounted)) => {
                    let pct = if size > 0 {
                        format!("{:.1}%", 100.0 * used as f64 / size as f64)
                    } else {
                        "-".into()
                    };
                    if unmounted > 0 {
                        format!("{pct} ({unmounted} unmounted)")
                    } else {
                        pct
                    }
                }
                None => "?".into(),
            };
            let skew = match s.skew() {
                Some(k) if k.abs() > self.max_skew => format!("{k:+.2}s !"),
                Some(k) => format!("{k:+.2}s"),
                None => "?".into(),
            };
            let rings = if s.answers.contains_key("ringmd5") {
                let bad = s.ring_mismatches(&self.local_rings);
                if bad.is_empty() {
                    "ok".to_string()
                } else {
                    format!("MISMATCH {}", bad.join(","))
                }
            } else {
                "?".into()
            };
            let status = if s.errors.is_empty() { "ok" } else { "ERRORS" };
            rows.push(vec![
                s.address.clone(),
                types,
                status.into(),
                age_s,
                dur.map_or("-".into(), |d| format!("{d:.1}s")),
                fail.map_or("-".into(), |f| f.to_string()),
                if s.types.contains("object") {
                    s.async_pending().map_or("0".into(), |v| v.to_string())
                } else {
                    "-".into()
                },
                opt(s.quarantined()),
                disk,
                s.load1().map_or("?".into(), |l| format!("{l:.2}")),
                skew,
                rings,
            ]);
        }
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut o = String::new();
        let line = |o: &mut String, cells: &[String]| {
            let mut l = String::new();
            for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(c);
                } else {
                    let _ = write!(l, "{c:<w$}  ");
                }
            }
            let _ = writeln!(o, "{}", l.trim_end());
        };
        line(
            &mut o,
            &header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        );
        for r in &rows {
            line(&mut o, r);
        }
        let _ = writeln!(o);
        let reachable = self.servers.iter().filter(|s| s.reachable()).count();
        let _ = writeln!(
            o,
            "{} servers, {} reachable, {} unreachable",
            self.servers.len(),
            reachable,
            self.servers.len() - reachable
        );
        let matched = self
            .servers
            .iter()
            .filter(|s| {
                s.answers.contains_key("ringmd5") && s.ring_mismatches(&self.local_rings).is_empty()
            })
            .count();
        let _ = writeln!(
            o,
            "Ring MD5s: {matched}/{reachable} reachable servers match the local rings in {} ({})",
            self.ring_dir.display(),
            self.local_rings
                .iter()
                .map(|(n, m)| format!("{n} {m}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let never: Vec<&str> = self
            .servers
            .iter()
            .filter(|s| s.reachable() && self.oldest(s).3)
            .map(|s| s.address.as_str())
            .collect();
        let oldest = self
            .servers
            .iter()
            .filter_map(|s| self.oldest(s).0.map(|a| (a, s.address.as_str())))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match oldest {
            Some((a, who)) => {
                let _ = writeln!(
                    o,
                    "Replication: oldest completed pass ended {} ago ({who}); stale after {}",
                    ago(a),
                    ago(self.stale)
                );
            }
            None => {
                let _ = writeln!(o, "Replication: no server reported a completed pass");
            }
        }
        if !never.is_empty() {
            let _ = writeln!(
                o,
                "Replication: no completed pass yet on {}",
                never.join(", ")
            );
        }
        let total = |f: &dyn Fn(&ServerRecon) -> Option<u64>| -> u64 {
            self.servers.iter().filter_map(f).sum()
        };
        let _ = writeln!(
            o,
            "Async pendings: {}; quarantined: {}",
            total(&|s| s.async_pending()),
            total(&|s| s.quarantined())
        );
        let versions: BTreeSet<&str> = self.servers.iter().filter_map(|s| s.version()).collect();
        let _ = writeln!(
            o,
            "Versions: {}",
            versions.into_iter().collect::<Vec<_>>().join(", ")
        );
        let problems = self.problems();
        if problems.is_empty() {
            let _ = writeln!(o, "No problems found.");
        } else {
            let _ = writeln!(o, "{} problem(s):", problems.len());
            for p in &problems {
                let _ = writeln!(o, "  {p}");
            }
        }
        o
    }

    pub fn json(&self) -> Value {
        let servers: Vec<Value> = self
            .servers
            .iter()
            .map(|s| {
                let repl: Map<String, Value> = s
                    .types
                    .iter()
                    .map(|k| {
                        let r = s.replication(k, self.now);
                        (
                            k.clone(),
                            json!({
                                "age": r.age, "duration": r.duration, "failures": r.failures,
                                "stale": r.age.is_some_and(|a| a > self.stale),
                            }),
                        )
                    })
                    .collect();
                json!({
                    "address": s.address,
                    "types": s.types,
                    "devices": s.devices,
                    "reachable": s.reachable(),
                    "errors": s.errors,
                    "replication": repl,
                    "async_pending": s.async_pending(),
                    "quarantined": s.quarantined(),
                    "disk": s.disk().map(|(used, size, unmounted)| json!({
                        "used": used, "size": size, "unmounted": unmounted,
                    })),
                    "load": s.answers.get("load"),
                    "skew": s.skew(),
                    "ring_mismatches": s.ring_mismatches(&self.local_rings),
                    "version": s.version(),
                    "answers": s.answers,
                })
            })
            .collect();
        json!({
            "ring_dir": self.ring_dir.display().to_string(),
            "local_rings": self.local_rings,
            "stale": self.stale,
            "max_skew": self.max_skew,
            "servers": servers,
            "problems": self.problems(),
            "healthy": self.problems().is_empty(),
        })
    }
}

/// The servers of every ring in `ring_dir` that the cluster file names.
fn servers(config: &ClusterConfig) -> Result<Vec<ServerRecon>, ToolError> {
    let dir = config.ring_dir();
    let mut rings: Vec<(String, &str)> = config
        .policies
        .iter()
        .map(|p| (p.ring_name(), "object"))
        .collect();
    rings.push(("container.ring".into(), "container"));
    rings.push(("account.ring".into(), "account"));
    let mut by_addr: BTreeMap<String, ServerRecon> = BTreeMap::new();
    let mut loaded = 0;
    for (name, kind) in rings {
        let path = dir.join(&name);
        if !path.exists() {
            continue;
        }
        let ring = Ring::load(&path).map_err(|e| ToolError(format!("{}: {e}", path.display())))?;
        loaded += 1;
        for d in ring.iter_devs() {
            let addr = authority(&d.ip, d.port);
            let s = by_addr.entry(addr.clone()).or_insert_with(|| ServerRecon {
                address: addr,
                ..ServerRecon::default()
            });
            s.types.insert(kind.to_string());
            s.devices.insert(d.device.clone());
        }
    }
    if loaded == 0 {
        return Err(ToolError(format!("no ring files in {}", dir.display())));
    }
    Ok(by_addr.into_values().collect())
}

/// Local `*.ring` file name → MD5 (what servers report for theirs).
fn local_rings(dir: &Path) -> Result<BTreeMap<String, String>, ToolError> {
    let v = cairn_common::recon::ring_md5(Some(dir))
        .map_err(|e| ToolError(format!("{}: {e}", dir.display())))?;
    Ok(v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(path, sum)| {
            let name = Path::new(path).file_name()?.to_string_lossy().into_owned();
            Some((name, sum.as_str()?.to_string()))
        })
        .collect())
}

async fn ask(http: &Http, mut s: ServerRecon) -> ServerRecon {
    let mut what: Vec<String> = s.types.iter().map(|t| format!("replication/{t}")).collect();
    if s.types.contains("object") {
        what.push("async".into());
    }
    for w in [
        "quarantined",
        "diskusage",
        "load",
        "time",
        "ringmd5",
        "version",
    ] {
        what.push(w.into());
    }
    let addr = s.address.clone();
    let answers = join_all(what.iter().map(|w| {
        let addr = addr.clone();
        async move {
            let t0 = unix_now();
            let res = http
                .request(Method::GET, &addr, &format!("/recon/{w}"), &[], None)
                .await;
            let t1 = unix_now();
            let res = match res {
                Ok(a) if a.status.is_success() => {
                    serde_json::from_slice::<Value>(&a.body).map_err(|e| format!("bad JSON: {e}"))
                }
                Ok(a) => Err(format!("HTTP {}", a.status)),
                Err(e) => Err(e),
            };
            (w.clone(), res, (t0, t1))
        }
    }))
    .await;
    for (w, res, window) in answers {
        match res {
            Ok(v) => {
                if w == "time" {
                    s.time_window = Some(window);
                }
                s.answers.insert(w, v);
            }
            Err(e) => {
                s.errors.insert(w, e);
            }
        }
    }
    s
}

/// `cairn recon`, without printing.
pub fn recon_report(args: &ReconArgs) -> Result<ReconReport, ToolError> {
    let config = ClusterConfig::load(&args.cluster_config).map_err(|e| ToolError(e.to_string()))?;
    let ring_dir = config.ring_dir();
    let local = local_rings(&ring_dir)?;
    let servers = servers(&config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ToolError(format!("cannot start the runtime: {e}")))?;
    let http = Http::new(args.timeout);
    let servers = rt.block_on(join_all(servers.into_iter().map(|s| ask(&http, s))));
    Ok(ReconReport {
        ring_dir,
        local_rings: local,
        servers,
        now: unix_now(),
        stale: args.stale,
        max_skew: args.max_skew,
    })
}

/// `cairn recon`: print the table (or JSON); exit 1 on any problem, 2 on bad input.
pub fn recon(args: ReconArgs) -> ExitCode {
    match recon_report(&args) {
        Ok(r) => {
            if args.json {
                println!("{}", r.json());
            } else {
                print!("{}", r.text());
            }
            if r.problems().is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("cairn recon: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(addr: &str, kind: &str, last: f64, ring_md5: &str) -> ServerRecon {
        let mut s = ServerRecon {
            address: addr.into(),
            types: BTreeSet::from([kind.to_string()]),
            devices: BTreeSet::from(["sdb1".to_string()]),
            time_window: Some((1000.0, 1000.5)),
            ..ServerRecon::default()
        };
        let a = &mut s.answers;
        a.insert(
            format!("replication/{kind}"),
            json!({"replication_last": last, "replication_time": 2.5,
                   "replication_stats": {"failure": 1}}),
        );
        a.insert("async".into(), json!({"async_pending": 4}));
        a.insert(
            "quarantined".into(),
            json!({"objects": 1, "containers": 2, "accounts": 0}),
        );
        a.insert(
            "diskusage".into(),
            json!([{"device": "sdb1", "mounted": true, "size": 200, "used": 50, "avail": 150},
                   {"device": "sdc1", "mounted": false, "size": "", "used": "", "avail": ""}]),
        );
        a.insert("load".into(), json!({"1m": 0.25, "5m": 0.5, "15m": 1.0}));
        a.insert("time".into(), json!(1003.5));
        a.insert(
            "ringmd5".into(),
            json!({"/srv/etc/rings/object.ring": ring_md5, "/srv/etc/rings/extra.ring": "x"}),
        );
        a.insert("version".into(), json!({"version": "0.1.0"}));
        s
    }

    fn report(servers: Vec<ServerRecon>) -> ReconReport {
        ReconReport {
            ring_dir: PathBuf::from("/etc/cairn/rings"),
            local_rings: BTreeMap::from([("object.ring".to_string(), "aaa".to_string())]),
            servers,
            now: 1100.0,
            stale: 60.0,
            max_skew: 1.0,
        }
    }

    #[test]
    fn derived_values() {
        let s = server("10.0.0.1:6200", "object", 1090.0, "aaa");
        let r = s.replication("object", 1100.0);
        assert_eq!(r.age, Some(10.0));
        assert_eq!(r.duration, Some(2.5));
        assert_eq!(r.failures, Some(1));
        assert_eq!(s.skew(), Some(3.0));
        assert_eq!(s.async_pending(), Some(4));
        assert_eq!(s.quarantined(), Some(3));
        assert_eq!(s.disk(), Some((50, 200, 1)));
        assert_eq!(s.load1(), Some(0.25));
        assert_eq!(s.version(), Some("0.1.0"));
        let local = BTreeMap::from([("object.ring".to_string(), "aaa".to_string())]);
        assert!(s.ring_mismatches(&local).is_empty());
        let other = server("10.0.0.1:6200", "object", 1090.0, "bbb");
        assert_eq!(other.ring_mismatches(&local), vec!["object.ring"]);
        assert_eq!(s.replication("container", 1100.0).age, None);
    }

    #[test]
    fn healthy_cluster_has_no_problems() {
        let r = report(vec![
            server("10.0.0.1:6200", "object", 1090.0, "aaa"),
            server("10.0.0.1:6201", "container", 1080.0, "aaa"),
        ]);
        assert!(r.problems().is_empty(), "{:?}", r.problems());
        let text = r.text();
        assert!(text.starts_with("SERVER"), "{text}");
        assert!(text.contains("10.0.0.1:6200  object"), "{text}");
        assert!(text.contains("25.0% (1 unmounted)"), "{text}");
        assert!(text.contains("+3.00s !"), "{text}");
        assert!(
            text.contains("2 servers, 2 reachable, 0 unreachable"),
            "{text}"
        );
        assert!(text.contains("Ring MD5s: 2/2"), "{text}");
        assert!(text.contains("oldest completed pass ended 20s ago (10.0.0.1:6201)"));
        assert!(text.contains("No problems found."), "{text}");
        let j = r.json();
        assert_eq!(j["healthy"], true);
        assert_eq!(j["servers"][0]["replication"]["object"]["age"], 10.0);
        assert_eq!(j["servers"][0]["disk"]["used"], 50);
    }

    #[test]
    fn problems_are_found_and_flagged() {
        let down = ServerRecon {
            address: "10.0.0.2:6200".into(),
            types: BTreeSet::from(["object".to_string()]),
            errors: BTreeMap::from([("load".to_string(), "connect refused".to_string())]),
            ..ServerRecon::default()
        };
        let mut never = server("10.0.0.4:6200", "object", 0.0, "aaa");
        never.answers.insert("replication/object".into(), json!({}));
        let r = report(vec![
            server("10.0.0.1:6200", "object", 1000.0, "aaa"),
            down,
            server("10.0.0.3:6200", "object", 1095.0, "bbb"),
            never,
        ]);
        let p = r.problems();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].contains("10.0.0.1:6200 object replication stale"),
            "{p:?}"
        );
        assert!(p[1].contains("10.0.0.2:6200 unreachable: connect refused"));
        assert!(p[2].contains("10.0.0.3:6200 ring MD5 differs"));
        let text = r.text();
        assert!(text.contains("UNREACHABLE"), "{text}");
        assert!(text.contains("MISMATCH object.ring"), "{text}");
        assert!(text.contains("100s !"), "{text}");
        assert!(text.contains("never"), "{text}");
        assert!(text.contains("3 problem(s):"), "{text}");
        assert!(
            text.contains("4 servers, 3 reachable, 1 unreachable"),
            "{text}"
        );
        let j = r.json();
        assert_eq!(j["healthy"], false);
        assert_eq!(j["servers"][1]["reachable"], false);
        assert_eq!(j["servers"][2]["ring_mismatches"], json!(["object.ring"]));
        assert_eq!(j["servers"][0]["replication"]["object"]["stale"], true);
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(ago(5.2), "5s");
        assert_eq!(ago(600.0), "10m");
        assert_eq!(ago(3.0 * 3600.0), "3h");
        assert_eq!(ago(86400.0 * 3.0), "3d");
    }
}
