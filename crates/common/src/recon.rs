//! Health and recon (`PROTOCOLS.md`, "Health and recon"): the operator endpoints every
//! server answers before its own routes, and the recon cache files through which daemons
//! publish their stats to the server on the same node.
//!
//! * [`Ops`] answers `/healthcheck` (200 `OK`, or 503 `DISABLED BY FILE` while the
//!   configured disable file exists), `/metrics` (Prometheus text) and `GET /recon/<what>`
//!   (JSON): `load`, `time`, `version`, `diskusage`, `unmounted`, `ringmd5`, `quarantined`,
//!   `async`, `replication[/object|container|account]`, `updater/object|container`,
//!   `auditor/object|container|account`, `expirer/object`. File-system work runs on the
//!   blocking pool.
//! * [`ReconCache`] is one JSON object per file, `RECON_CACHE_PATH/<kind>.recon` with kind
//!   `object`, `container` or `account`. A daemon replaces one top-level *section* of it
//!   ([`ReconCache::update`], atomically under a lock: tmp file, fsync, rename), a server
//!   reads it back for the endpoints. Sections (their contents are the daemon's choice;
//!   Swift's key names are recommended so operators' tools keep working):
//!
//!   | endpoint | file | section | written by |
//!   |---|---|---|---|
//!   | `replication/object` | object.recon | `replication` | object-replicator |
//!   | `replication/container` | container.recon | `replication` | container-replicator |
//!   | `replication/account` | account.recon | `replication` | account-replicator |
//!   | `async` | object.recon | `async_pending` (a number) | object-updater |
//!   | `updater/object` | object.recon | `updater` | object-updater |
//!   | `updater/container` | container.recon | `updater` | container-updater |
//!   | `auditor/<kind>` | `<kind>`.recon | `auditor` | object-auditor, … |
//!   | `expirer/object` | object.recon | `expirer` | object-expirer |
//!
//!   `replication` alone is `replication/object`. A missing file or section reads as `{}`
//!   (`null` for `async_pending`).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::http::{full, json as json_response, text, Body};
use crate::metrics::{Registry, CONTENT_TYPE};

/// What the operator endpoints need to know about the server.
#[derive(Debug, Clone)]
pub struct OpsConfig {
    /// The devices root (`[server] devices`).
    pub devices: PathBuf,
    pub mount_check: bool,
    /// While this file exists, `/healthcheck` answers 503 `DISABLED BY FILE`.
    pub disable_file: Option<PathBuf>,
    /// Where the `<kind>.recon` files live.
    pub recon_cache_path: PathBuf,
    /// The ring directory for `/recon/ringmd5` (`None`: an empty answer).
    pub ring_dir: Option<PathBuf>,
    /// Reported by `/recon/version`.
    pub version: String,
    /// Serve `/recon/*` (storage servers); `false` leaves those paths to the handler.
    pub recon: bool,
}

impl OpsConfig {
    /// Health and metrics only (e.g. a proxy); recon off.
    pub fn health_only(disable_file: Option<PathBuf>) -> Self {
        OpsConfig {
            devices: PathBuf::new(),
            mount_check: false,
            disable_file,
            recon_cache_path: PathBuf::new(),
            ring_dir: None,
            version: env!("CARGO_PKG_VERSION").to_string(),
            recon: false,
        }
    }
}

/// The operator endpoints; plug into [`crate::http::ServeOptions::ops`].
#[derive(Debug)]
pub struct Ops {
    cfg: OpsConfig,
}

impl Ops {
    pub fn new(cfg: OpsConfig) -> Self {
        Ops { cfg }
    }

    pub fn config(&self) -> &OpsConfig {
        &self.cfg
    }

    /// The response when `path` is an operator endpoint, `None` otherwise.
    pub async fn handle(
        &self,
        method: &Method,
        path: &str,
        registry: &Registry,
    ) -> Option<Response<Body>> {
        let get = method == Method::GET || method == Method::HEAD;
        if path == "/healthcheck" {
            return Some(self.healthcheck().await);
        }
        if path == "/metrics" && get {
            let mut text = registry.render();
            if self.cfg.recon {
                // The daemons of this node (replicators, auditors, updaters, expirer) run in
                // their own processes and leave their progress in the recon cache: export
                // its numbers here so one scrape of the server shows the whole node.
                let cfg = self.cfg.clone();
                if let Ok(extra) =
                    tokio::task::spawn_blocking(move || daemon_progress_metrics(&cfg)).await
                {
                    text.push_str(&extra);
                }
            }
            let mut resp = Response::new(full(text));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(CONTENT_TYPE),
            );
            return Some(resp);
        }
        let what = path.strip_prefix("/recon/")?;
        if !self.cfg.recon || !get {
            return None;
        }
        let cfg = self.cfg.clone();
        let what = what.to_string();
        let answer = tokio::task::spawn_blocking(move || recon_answer(&cfg, &what)).await;
        Some(match answer {
            Ok(Some(Ok(value))) => json_response(StatusCode::OK, &value),
            Ok(None) => text(StatusCode::NOT_FOUND, format!("Invalid path: {path}")),
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, path, "recon failed");
                text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
            Err(e) => {
                tracing::warn!(error = %e, path, "recon task failed");
                text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        })
    }

    async fn healthcheck(&self) -> Response<Body> {
        if let Some(f) = &self.cfg.disable_file {
            if tokio::fs::try_exists(f).await.unwrap_or(false) {
                return text(StatusCode::SERVICE_UNAVAILABLE, "DISABLED BY FILE");
            }
        }
        text(StatusCode::OK, "OK")
    }
}

/// One recon answer; `None` for an unknown endpoint. Blocking.
pub fn recon_answer(cfg: &OpsConfig, what: &str) -> Option<io::Result<Value>> {
    let cache = |kind: &str| ReconCache::new(&cfg.recon_cache_path, kind);
    let section = |kind: &str, name: &str| Ok(cache(kind).get(name).unwrap_or_else(|| json!({})));
    Some(match what {
        "load" => load(),
        "time" => Ok(json!(unix_now())),
        "version" => Ok(json!({ "version": cfg.version })),
        "diskusage" => disk_usage(&cfg.devices, cfg.mount_check),
        "unmounted" => unmounted(&cfg.devices, cfg.mount_check),
        "ringmd5" => ring_md5(cfg.ring_dir.as_deref()),
        "quarantined" => quarantined(&cfg.devices),
        "async" => Ok(json!({ "async_pending": cache("object").get("async_pending") })),
        "replication" | "replication/object" => section("object", "replication"),
        "replication/container" => section("container", "replication"),
        "replication/account" => section("account", "replication"),
        "updater/object" => section("object", "updater"),
        "updater/container" => section("container", "updater"),
        "auditor/object" => section("object", "auditor"),
        "auditor/container" => section("container", "auditor"),
        "auditor/account" => section("account", "auditor"),
        "expirer/object" => section("object", "expirer"),
        // Not in Swift (its reaper writes no recon); Cairn's reaper does, in the same
        // `<daemon>/<type>` shape as the others.
        "reaper/account" => section("account", "reaper"),
        _ => return None,
    })
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `/proc/loadavg` as Swift reports it: 1m, 5m, 15m, tasks (`running/total`), processes.
fn load() -> io::Result<Value> {
    let s = std::fs::read_to_string("/proc/loadavg")?;
    let f: Vec<&str> = s.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    Ok(json!({
        "1m": num(0), "5m": num(1), "15m": num(2),
        "tasks": f.get(3),
        "processes": f.get(4).and_then(|v| v.parse::<u64>().ok()),
    }))
}

/// Directories under the devices root, sorted (a missing root has none).
fn device_dirs(devices: &Path) -> io::Result<Vec<String>> {
    let rd = match std::fs::read_dir(devices) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry?;
        if entry.path().is_dir() {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

fn mounted(devices: &Path, dev: &str, mount_check: bool) -> bool {
    !mount_check || crate::fs::is_mount(&devices.join(dev)).unwrap_or(false)
}

/// Per device: device, mounted, size, used, avail (bytes; empty strings when unmounted).
fn disk_usage(devices: &Path, mount_check: bool) -> io::Result<Value> {
    let mut out = Vec::new();
    for dev in device_dirs(devices)? {
        let space = if mounted(devices, &dev, mount_check) {
            crate::fs::fs_space(&devices.join(&dev)).ok()
        } else {
            None
        };
        out.push(match space {
            Some((avail, size)) => json!({
                "device": dev, "mounted": true,
                "size": size, "used": size.saturating_sub(avail), "avail": avail,
            }),
            None => json!({ "device": dev, "mounted": false, "size": "", "used": "", "avail": "" }),
        });
    }
    Ok(Value::Array(out))
}

/// Devices that are not mount points. Only meaningful with `mount_check` (without it a
/// plain directory is a usable device, so none is reported).
fn unmounted(devices: &Path, mount_check: bool) -> io::Result<Value> {
    let out: Vec<Value> = device_dirs(devices)?
        .into_iter()
        .filter(|d| !mounted(devices, d, mount_check))
        .map(|d| json!({ "device": d, "mounted": false }))
        .collect();
    Ok(Value::Array(out))
}

/// `{path: md5}` of every `*.ring` file in the ring directory.
pub fn ring_md5(ring_dir: Option<&Path>) -> io::Result<Value> {
    use md5::{Digest, Md5};
    let mut out = Map::new();
    let Some(dir) = ring_dir else {
        return Ok(Value::Object(out));
    };
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Value::Object(out)),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "ring") && path.is_file() {
            let mut f = std::fs::File::open(&path)?;
            let mut h = Md5::new();
            io::copy(&mut f, &mut h)?;
            out.insert(
                path.display().to_string(),
                json!(crate::to_hex(&h.finalize())),
            );
        }
    }
    Ok(Value::Object(out))
}

/// Entries in `DEV/quarantined/{objects[-N],containers,accounts}` over all devices.
fn quarantined(devices: &Path) -> io::Result<Value> {
    let (mut objects, mut containers, mut accounts) = (0u64, 0u64, 0u64);
    let mut policies: BTreeMap<String, u64> = BTreeMap::new();
    for dev in device_dirs(devices)? {
        let qdir = devices.join(&dev).join("quarantined");
        let Ok(rd) = std::fs::read_dir(&qdir) else {
            continue;
        };
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let count = std::fs::read_dir(entry.path())
                .map(|r| r.count() as u64)
                .unwrap_or(0);
            match name.as_str() {
                "containers" => containers += count,
                "accounts" => accounts += count,
                "objects" => {
                    objects += count;
                    *policies.entry("0".into()).or_default() += count;
                }
                other => {
                    if let Some(idx) = other
                        .strip_prefix("objects-")
                        .filter(|i| i.parse::<u32>().is_ok())
                    {
                        objects += count;
                        *policies.entry(idx.to_string()).or_default() += count;
                    }
                }
            }
        }
    }
    let policies: Map<String, Value> = policies
        .into_iter()
        .map(|(k, v)| (k, json!({ "objects": v })))
        .collect();
    Ok(json!({
        "objects": objects, "containers": containers, "accounts": accounts,
        "policies": policies,
    }))
}

/// One recon cache file (`<dir>/<kind>.recon`), shared by the daemons that write it and
/// the server that reads it. Reads and writes are blocking: use `spawn_blocking` (or the
/// `_async` variants).
#[derive(Debug, Clone)]
pub struct ReconCache {
    path: PathBuf,
    lock: PathBuf,
}

/// How long a writer waits for another writer of the same file.
const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

impl ReconCache {
    /// The cache `dir/<kind>.recon` (kind: `object`, `container`, `account`).
    pub fn new(dir: &Path, kind: &str) -> Self {
        ReconCache {
            path: dir.join(format!("{kind}.recon")),
            lock: dir.join(format!(".{kind}.recon.lock")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file as a JSON object (`{}` when missing or unreadable).
    pub fn read_all(&self) -> Map<String, Value> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// One section, if present.
    pub fn get(&self, section: &str) -> Option<Value> {
        self.read_all().remove(section)
    }

    /// Replace `section` with `value` (`null` removes it), atomically: other sections
    /// are kept, readers see the old or the new file, never a partial one.
    pub fn update(&self, section: &str, value: Value) -> io::Result<()> {
        self.modify(|all| {
            if value.is_null() {
                all.remove(section);
            } else {
                all.insert(section.to_string(), value);
            }
        })
    }

    /// Deep-merge `value` into `section` (objects merge key by key, anything else
    /// replaces; a `null` inside `value` removes that key) — for per-device stats.
    pub fn merge(&self, section: &str, value: Value) -> io::Result<()> {
        self.modify(|all| {
            let slot = all.entry(section.to_string()).or_insert(Value::Null);
            deep_merge(slot, value);
            if slot.is_null() {
                all.remove(section);
            }
        })
    }

    fn modify(&self, f: impl FnOnce(&mut Map<String, Value>)) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _lock = crate::fs::FileLock::acquire(&self.lock, LOCK_TIMEOUT)?;
        let mut all = self.read_all();
        f(&mut all);
        let data = serde_json::to_vec(&Value::Object(all)).map_err(io::Error::other)?;
        crate::fs::write_file_durable(&self.path, None, &data)
    }

    /// [`ReconCache::update`] on the blocking pool.
    pub async fn update_async(&self, section: &str, value: Value) -> io::Result<()> {
        let (me, section) = (self.clone(), section.to_string());
        tokio::task::spawn_blocking(move || me.update(&section, value))
            .await
            .map_err(io::Error::other)?
    }

    /// [`ReconCache::get`] on the blocking pool.
    pub async fn get_async(&self, section: &str) -> Option<Value> {
        let (me, section) = (self.clone(), section.to_string());
        tokio::task::spawn_blocking(move || me.get(&section))
            .await
            .ok()
            .flatten()
    }
}

fn deep_merge(slot: &mut Value, value: Value) {
    match (slot, value) {
        (Value::Object(dst), Value::Object(src)) => {
            for (k, v) in src {
                if v.is_null() {
                    dst.remove(&k);
                } else {
                    deep_merge(dst.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// Every numeric value of the node's recon cache files as a Prometheus gauge:
/// `cairn_daemon_progress{file="object",key="replication.object_replication_time"} 1.2`.
fn daemon_progress_metrics(cfg: &OpsConfig) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(&cfg.recon_cache_path) else {
        return out;
    };
    let mut rows = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let (Some(stem), Some("recon")) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        let all = ReconCache::new(&cfg.recon_cache_path, stem).read_all();
        for (key, value) in all {
            flatten_numbers(stem, &key, &value, &mut rows);
        }
    }
    if rows.is_empty() {
        return out;
    }
    rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out.push_str(
        "# HELP cairn_daemon_progress Numbers the node's daemons left in the recon cache\n",
    );
    out.push_str("# TYPE cairn_daemon_progress gauge\n");
    for (file, key, value) in rows {
        out.push_str(&format!(
            "cairn_daemon_progress{{file=\"{}\",key=\"{}\"}} {}\n",
            escape_label(&file),
            escape_label(&key),
            value
        ));
    }
    out
}

fn flatten_numbers(file: &str, key: &str, value: &Value, rows: &mut Vec<(String, String, f64)>) {
    match value {
        Value::Number(n) => {
            if let Some(v) = n.as_f64() {
                rows.push((file.to_string(), key.to_string(), v));
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                flatten_numbers(file, &format!("{key}.{k}"), v, rows);
            }
        }
        _ => {}
    }
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_update_get_merge() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ReconCache::new(&dir.path().join("cache"), "object");
        assert_eq!(cache.get("replication"), None);
        cache
            .update("replication", json!({"replication_time": 1.5}))
            .unwrap();
        cache.update("async_pending", json!(3)).unwrap();
        assert_eq!(
            cache.get("replication"),
            Some(json!({"replication_time": 1.5}))
        );
        assert_eq!(cache.get("async_pending"), Some(json!(3)));
        cache
            .merge(
                "auditor",
                json!({"sda": {"passes": 1}, "sdb": {"passes": 2}}),
            )
            .unwrap();
        cache
            .merge("auditor", json!({"sda": {"errors": 0}, "sdb": null}))
            .unwrap();
        assert_eq!(
            cache.get("auditor"),
            Some(json!({"sda": {"passes": 1, "errors": 0}}))
        );
        cache.update("async_pending", Value::Null).unwrap();
        assert_eq!(cache.get("async_pending"), None);
        // Only the cache and its lock are left: no temporary files.
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec![".object.recon.lock", "object.recon"]);
    }

    #[test]
    fn reaper_section_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = OpsConfig {
            recon_cache_path: dir.path().to_path_buf(),
            ..OpsConfig::health_only(None)
        };
        let answer = |what| recon_answer(&cfg, what).unwrap().unwrap();
        assert_eq!(answer("reaper/account"), json!({}), "before any pass");
        let pass = json!({"reaper_time": 0.5, "reaper_stats": {"accounts_reaped": 1}});
        ReconCache::new(dir.path(), "account")
            .update("reaper", pass.clone())
            .unwrap();
        assert_eq!(answer("reaper/account"), pass);
        assert!(recon_answer(&cfg, "reaper/object").is_none());
    }

    #[test]
    fn concurrent_writers_keep_every_section() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let cache = ReconCache::new(dir.path(), "object");
                std::thread::spawn(move || {
                    for j in 0..5 {
                        cache.update(&format!("s{i}"), json!(j)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let all = ReconCache::new(dir.path(), "object").read_all();
        assert_eq!(all.len(), 8);
        assert!(all.values().all(|v| v == &json!(4)));
    }

    #[tokio::test]
    async fn endpoints() {
        let dir = tempfile::tempdir().unwrap();
        let devices = dir.path().join("srv");
        std::fs::create_dir_all(devices.join("sda/quarantined/objects/h1")).unwrap();
        std::fs::create_dir_all(devices.join("sda/quarantined/objects-1/h2")).unwrap();
        std::fs::create_dir_all(devices.join("sdb/quarantined/containers/c1")).unwrap();
        let rings = dir.path().join("rings");
        std::fs::create_dir_all(&rings).unwrap();
        std::fs::write(rings.join("object.ring"), b"").unwrap();
        std::fs::write(rings.join("notes.txt"), b"x").unwrap();
        let cfg = OpsConfig {
            devices: devices.clone(),
            mount_check: false,
            disable_file: Some(dir.path().join("disabled")),
            recon_cache_path: dir.path().join("cache"),
            ring_dir: Some(rings.clone()),
            version: "9.9".into(),
            recon: true,
        };
        ReconCache::new(&cfg.recon_cache_path, "object")
            .update_async("replication", json!({"replication_last": 5}))
            .await
            .unwrap();
        let ans = |w: &str| recon_answer(&cfg, w).unwrap().unwrap();
        assert_eq!(ans("version"), json!({"version": "9.9"}));
        assert!(ans("time").as_f64().unwrap() > 1.6e9);
        assert!(ans("load")["1m"].is_number());
        let du = ans("diskusage");
        assert_eq!(du.as_array().unwrap().len(), 2);
        assert_eq!(du[0]["device"], "sda");
        assert!(du[0]["size"].as_u64().unwrap() > 0);
        assert_eq!(ans("unmounted"), json!([]));
        let md5 = ans("ringmd5");
        let key = rings.join("object.ring").display().to_string();
        assert_eq!(md5, json!({ key: "d41d8cd98f00b204e9800998ecf8427e" }));
        assert_eq!(
            ans("quarantined"),
            json!({"objects": 2, "containers": 1, "accounts": 0,
                   "policies": {"0": {"objects": 1}, "1": {"objects": 1}}})
        );
        assert_eq!(ans("replication/object"), json!({"replication_last": 5}));
        assert_eq!(ans("replication/account"), json!({}));
        assert_eq!(ans("async"), json!({"async_pending": null}));
        assert!(recon_answer(&cfg, "nope").is_none());

        let ops = Ops::new(cfg.clone());
        let reg = Registry::default();
        let st = |r: Option<Response<Body>>| r.map(|r| r.status().as_u16());
        assert_eq!(
            st(ops.handle(&Method::GET, "/healthcheck", &reg).await),
            Some(200)
        );
        std::fs::write(dir.path().join("disabled"), b"").unwrap();
        assert_eq!(
            st(ops.handle(&Method::GET, "/healthcheck", &reg).await),
            Some(503)
        );
        assert_eq!(
            st(ops.handle(&Method::GET, "/recon/nope", &reg).await),
            Some(404)
        );
        assert_eq!(
            st(ops.handle(&Method::GET, "/recon/load", &reg).await),
            Some(200)
        );
        assert_eq!(
            st(ops.handle(&Method::PUT, "/recon/load", &reg).await),
            None
        );
        assert_eq!(st(ops.handle(&Method::GET, "/sda/1/a", &reg).await), None);
        let off = Ops::new(OpsConfig::health_only(None));
        assert_eq!(
            st(off.handle(&Method::GET, "/recon/load", &reg).await),
            None
        );
        assert_eq!(
            st(off.handle(&Method::GET, "/metrics", &reg).await),
            Some(200)
        );
    }
}
