//! The SSYNC receiver (`PROTOCOLS.md`, "SSYNC"): one long request per (node, partition)
//! whose body is a line protocol — a missing check (which objects the sender should send)
//! and updates (PUT/POST/DELETE subrequests applied locally with replication semantics:
//! every header stored verbatim, no container or expirer updates).
//!
//! The response is `200` at once, then a streamed line protocol; any failure is reported
//! as `:ERROR: <code> '<message>'` and ends the body.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use cairn_common::http::{
    self as chttp, parse_device_partition, policy_index, BodySender, RequestBody,
};
use cairn_common::Timestamp;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::{mpsc, Semaphore};

use super::{blocking, Body, HttpError, ObjectServer, ObjectServerSettings};
use crate::diskfile::{DiskFile, DiskFileState};
use crate::error::DiskError;
use crate::layout::split_object_name;
use crate::metadata::Metadata;

/// Longest protocol line accepted.
const MAX_LINE: usize = 64 * 1024;
/// Bytes per read of a PUT body.
const CHUNK: usize = 64 * 1024;

/// Concurrency limits of SSYNC receivers.
pub(super) struct Limits {
    global: Option<Arc<Semaphore>>,
    per_device: usize,
    devices: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Limits {
    pub(super) fn new(s: &ObjectServerSettings) -> Self {
        Limits {
            global: (s.replication_concurrency > 0)
                .then(|| Arc::new(Semaphore::new(s.replication_concurrency))),
            per_device: s.replication_concurrency_per_device,
            devices: Mutex::new(HashMap::new()),
        }
    }

    fn device(&self, dev: &str) -> Option<Arc<Semaphore>> {
        if self.per_device == 0 {
            return None;
        }
        let mut map = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        Some(
            map.entry(dev.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_device)))
                .clone(),
        )
    }
}

/// Why a session ends early: sent as `:ERROR: <code> '<msg>'`.
#[derive(Debug)]
struct Abort {
    code: u16,
    msg: String,
}

impl Abort {
    fn new(code: u16, msg: impl Into<String>) -> Self {
        Abort {
            code,
            msg: msg.into(),
        }
    }
}

impl From<io::Error> for Abort {
    fn from(e: io::Error) -> Self {
        let code = if e.kind() == io::ErrorKind::TimedOut {
            408
        } else {
            0
        };
        Abort::new(code, e.to_string())
    }
}

/// Lines and raw bytes out of the request body.
struct Lines {
    body: RequestBody,
    buf: BytesMut,
}

impl Lines {
    async fn fill(&mut self) -> io::Result<bool> {
        loop {
            match self.body.frame().await {
                None => return Ok(false),
                Some(Err(e)) => return Err(e),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            self.buf.extend_from_slice(&data);
                            return Ok(true);
                        }
                    }
                }
            }
        }
    }

    /// The next line without its `\r\n`; `None` at EOF.
    async fn line(&mut self) -> Result<Option<String>, Abort> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let raw = self.buf.split_to(i + 1);
                let text = String::from_utf8_lossy(&raw);
                return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
            }
            if self.buf.len() > MAX_LINE {
                return Err(Abort::new(0, "line too long"));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    async fn expect_line(&mut self, what: &str) -> Result<String, Abort> {
        self.line()
            .await?
            .ok_or_else(|| Abort::new(0, format!("Early termination for {what}")))
    }

    /// Up to `max` raw bytes; `None` at EOF.
    async fn take(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        if self.buf.is_empty() && !self.fill().await? {
            return Ok(None);
        }
        let n = self.buf.len().min(max);
        Ok(Some(self.buf.split_to(n).freeze()))
    }
}

async fn send_line(out: &BodySender, line: &str) -> Result<(), Abort> {
    out.send(Bytes::from(format!("{line}\r\n")))
        .await
        .map_err(|_| Abort::new(0, "sender went away"))
}

/// One line of the sender's missing check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Remote {
    ts_data: Timestamp,
    ts_meta: Timestamp,
    ts_ctype: Timestamp,
}

/// What this node holds for a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Local {
    ts_data: Timestamp,
    /// Newest of data and meta (objects only, not tombstones).
    ts_meta: Option<Timestamp>,
    ts_ctype: Option<Timestamp>,
}

fn shift(t: Timestamp, delta: i128, offset: u64) -> Option<Timestamp> {
    let raw = i128::from(t.raw) + delta;
    u64::try_from(raw)
        .ok()
        .map(|r| Timestamp { raw: r, offset })
}

fn hex_delta(v: &str) -> Option<i128> {
    let (neg, digits) = match v.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, v),
    };
    let n = i128::from(u64::from_str_radix(digits, 16).ok()?);
    Some(if neg { -n } else { n })
}

/// Parse `<hash> <ts_data>[ m:<hex>[__<hex>],t:<hex>]`.
fn parse_missing(line: &str) -> Option<(String, Remote)> {
    let mut parts = line.split_whitespace();
    let hash = chttp::decode_path(parts.next()?).ok()?;
    let ts_data = Timestamp::parse(&chttp::decode_path(parts.next()?).ok()?).ok()?;
    let mut r = Remote {
        ts_data,
        ts_meta: ts_data,
        ts_ctype: ts_data,
    };
    if let Some(extras) = parts.next() {
        for item in extras.split(',') {
            let (k, v) = item.split_once(':')?;
            match k {
                "m" => {
                    let (d, off) = match v.split_once("__") {
                        Some((d, o)) => (d, u64::from_str_radix(o, 16).ok()?),
                        None => (v, 0),
                    };
                    r.ts_meta = shift(ts_data, hex_delta(d)?, off)?;
                }
                "t" => r.ts_ctype = shift(ts_data, hex_delta(v)?, 0)?,
                _ => {}
            }
        }
    }
    Some((hash, r))
}

/// Swift's `encode_wanted`: `d` (data or tombstone) and/or `m` (metadata), or nothing.
fn wanted(remote: &Remote, local: Option<&Local>) -> &'static str {
    let Some(local) = local else {
        return "dm";
    };
    let d = remote.ts_data > local.ts_data;
    let m = local.ts_meta.is_some_and(|lm| remote.ts_meta > lm)
        || local
            .ts_ctype
            .is_some_and(|lc| remote.ts_ctype > lc && remote.ts_ctype > remote.ts_data);
    match (d, m) {
        (true, true) => "dm",
        (true, false) => "d",
        (false, true) => "m",
        (false, false) => "",
    }
}

/// A parsed update subrequest.
struct Sub {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Sub {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn timestamp(&self) -> Option<Timestamp> {
        self.header("X-Timestamp")
            .and_then(|v| Timestamp::parse(v.trim()).ok())
    }

    /// Everything but the headers the disk layer sets itself.
    fn metadata(&self) -> Metadata {
        self.headers
            .iter()
            .filter(|(k, _)| {
                !["content-length", "etag", "x-timestamp", "name"]
                    .iter()
                    .any(|s| k.eq_ignore_ascii_case(s))
            })
            .cloned()
            .collect()
    }
}

/// The outcome of one subrequest: success (2xx or 404) or failure.
type Outcome = bool;

impl ObjectServer {
    pub(super) async fn ssync(
        &self,
        req: Request<RequestBody>,
    ) -> Result<Response<Body>, HttpError> {
        let p = parse_device_partition(req.uri().path(), false)?;
        let policy = policy_index(req.headers())?;
        let s = self.settings();
        if !s.policies.is_empty() && !s.policies.contains(&policy) {
            return Err(HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("No policy with index {policy}"),
            ));
        }
        let mgr = self.inner.mgr.clone();
        let dev = p.device.clone();
        blocking(move || mgr.policy_paths(&dev, policy)).await?;
        let (tx, body) = chttp::channel(16);
        let this = self.clone();
        let lines = Lines {
            body: req.into_body(),
            buf: BytesMut::new(),
        };
        tokio::spawn(async move {
            this.ssync_session(p.device, p.partition, policy, lines, tx)
                .await;
        });
        Ok(Response::new(body))
    }

    async fn ssync_session(
        &self,
        device: String,
        part: u32,
        policy: u32,
        mut lines: Lines,
        out: BodySender,
    ) {
        if send_line(&out, "").await.is_err() {
            return;
        }
        let result = async {
            let _global =
                match &self.inner.ssync.global {
                    Some(sem) => Some(sem.clone().try_acquire_owned().map_err(|_| {
                        Abort::new(503, "Too many concurrent replication requests")
                    })?),
                    None => None,
                };
            let _device = match self.inner.ssync.device(&device) {
                Some(sem) => {
                    let wait = self.settings().replication_lock_timeout;
                    match tokio::time::timeout(wait, sem.acquire_owned()).await {
                        Ok(Ok(permit)) => Some(permit),
                        _ => {
                            return Err(Abort::new(
                                0,
                                format!("{wait:?} seconds: replication lock on {device}"),
                            ))
                        }
                    }
                }
                None => None,
            };
            self.missing_check(&device, part, policy, &mut lines, &out)
                .await?;
            self.updates(&device, part, policy, &mut lines, &out).await
        }
        .await;
        if let Err(a) = result {
            tracing::warn!(device, part, code = a.code, error = %a.msg, "SSYNC receiver aborted");
            let msg = a.msg.replace('\\', "\\\\").replace('\'', "\\'");
            let _ = send_line(&out, &format!(":ERROR: {} '{msg}'", a.code)).await;
        }
    }

    async fn local_state(
        &self,
        device: &str,
        part: u32,
        policy: u32,
        hash: &str,
    ) -> Result<Option<Local>, Abort> {
        let mgr = self.inner.mgr.clone();
        let (dev, hash) = (device.to_string(), hash.to_string());
        let res = tokio::task::spawn_blocking(move || {
            mgr.diskfile_by_hash(&dev, policy, part, &hash)
                .and_then(|df| df.open())
        })
        .await
        .map_err(|e| Abort::new(0, e.to_string()))?;
        match res {
            Ok(DiskFileState::Missing) | Err(DiskError::Quarantined { .. }) => Ok(None),
            Ok(DiskFileState::Deleted { ts }) => Ok(Some(Local {
                ts_data: ts,
                ts_meta: None,
                ts_ctype: None,
            })),
            Ok(DiskFileState::Exists(o)) | Ok(DiskFileState::Expired(o)) => Ok(Some(Local {
                ts_data: o.info.data_ts,
                ts_meta: Some(o.info.timestamp()),
                ts_ctype: Some(o.info.ctype_ts.unwrap_or(o.info.data_ts)),
            })),
            Err(e) => Err(Abort::new(e.http_status(), e.to_string())),
        }
    }

    async fn missing_check(
        &self,
        device: &str,
        part: u32,
        policy: u32,
        lines: &mut Lines,
        out: &BodySender,
    ) -> Result<(), Abort> {
        let first = lines.expect_line("MISSING_CHECK").await?;
        if first != ":MISSING_CHECK: START" {
            return Err(Abort::new(
                0,
                format!("Looking for :MISSING_CHECK: START got {first:?}"),
            ));
        }
        let mut want = Vec::new();
        loop {
            let line = lines.expect_line("MISSING_CHECK").await?;
            if line == ":MISSING_CHECK: END" {
                break;
            }
            if line.trim().is_empty() {
                continue;
            }
            let (hash, remote) = parse_missing(&line)
                .ok_or_else(|| Abort::new(0, format!("bad missing check line {line:?}")))?;
            if !crate::layout::is_valid_hash(&hash) {
                return Err(Abort::new(0, format!("bad hash {hash:?}")));
            }
            let local = self.local_state(device, part, policy, &hash).await?;
            let w = wanted(&remote, local.as_ref());
            if !w.is_empty() {
                want.push(format!("{hash} {w}"));
            }
        }
        send_line(out, ":MISSING_CHECK: START").await?;
        for w in &want {
            send_line(out, w).await?;
        }
        send_line(out, ":MISSING_CHECK: END").await
    }

    async fn updates(
        &self,
        device: &str,
        part: u32,
        policy: u32,
        lines: &mut Lines,
        out: &BodySender,
    ) -> Result<(), Abort> {
        let first = lines.expect_line("UPDATES").await?;
        if first != ":UPDATES: START" {
            return Err(Abort::new(
                0,
                format!("Looking for :UPDATES: START got {first:?}"),
            ));
        }
        let s = self.settings();
        let (mut successes, mut failures) = (0usize, 0usize);
        loop {
            let line = lines.expect_line("UPDATES").await?;
            if line == ":UPDATES: END" {
                break;
            }
            if line.trim().is_empty() {
                continue;
            }
            let (method, path) = line
                .split_once(' ')
                .ok_or_else(|| Abort::new(0, format!("bad subrequest line {line:?}")))?;
            let mut headers = Vec::new();
            loop {
                let h = lines.expect_line("UPDATES").await?;
                if h.is_empty() {
                    break;
                }
                let (k, v) = h
                    .split_once(':')
                    .ok_or_else(|| Abort::new(0, format!("bad header line {h:?}")))?;
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            let sub = Sub {
                method: method.to_string(),
                path: path.trim().to_string(),
                headers,
            };
            let length = match sub.header("Content-Length") {
                None => None,
                Some(v) => Some(
                    v.parse::<u64>()
                        .map_err(|_| Abort::new(0, format!("bad Content-Length {v:?}")))?,
                ),
            };
            let ok = match sub.method.as_str() {
                "PUT" => {
                    let len = length.ok_or_else(|| {
                        Abort::new(0, format!("No content-length sent for PUT {}", sub.path))
                    })?;
                    self.ssync_put(device, part, policy, &sub, len, lines)
                        .await?
                }
                "POST" | "DELETE" => {
                    if length.is_some_and(|l| l > 0) {
                        return Err(Abort::new(
                            0,
                            format!("{} subrequest with content-length {}", sub.method, sub.path),
                        ));
                    }
                    self.ssync_meta_or_delete(device, part, policy, &sub)
                        .await?
                }
                other => return Err(Abort::new(0, format!("Invalid subrequest method {other}"))),
            };
            if ok {
                successes += 1;
            } else {
                failures += 1;
            }
            if s.replication_failure_threshold > 0
                && failures >= s.replication_failure_threshold
                && (successes == 0
                    || failures as f64 / successes as f64 > s.replication_failure_ratio)
            {
                return Err(Abort::new(
                    0,
                    format!("Too many {failures} failures to {successes} successes"),
                ));
            }
        }
        if failures > 0 {
            return Err(Abort::new(
                500,
                format!("ERROR: With :UPDATES: {failures} failures to {successes} successes"),
            ));
        }
        send_line(out, ":UPDATES: START").await?;
        send_line(out, ":UPDATES: END").await
    }

    /// The disk file of a subrequest path `/A/C/O`; `None` (a failed subrequest) if bad.
    async fn sub_diskfile(
        &self,
        device: &str,
        part: u32,
        policy: u32,
        path: &str,
    ) -> Option<DiskFile> {
        let name = chttp::decode_path(path).ok()?;
        let (a, c, o) = split_object_name(&name)?;
        let (a, c, o) = (a.to_string(), c.to_string(), o.to_string());
        let mgr = self.inner.mgr.clone();
        let dev = device.to_string();
        blocking(move || mgr.diskfile(&dev, policy, part, &a, &c, &o))
            .await
            .ok()
    }

    /// Apply a replicated PUT, always consuming exactly `len` body bytes.
    async fn ssync_put(
        &self,
        device: &str,
        part: u32,
        policy: u32,
        sub: &Sub,
        len: u64,
        lines: &mut Lines,
    ) -> Result<Outcome, Abort> {
        // Decide whether to write, then stream the body either to a writer or away.
        let mut writer = None;
        if let (Some(df), Some(ts)) = (
            self.sub_diskfile(device, part, policy, &sub.path).await,
            sub.timestamp(),
        ) {
            let newer_exists = match self.open_for_replication(&df).await {
                Ok(DiskFileState::Exists(o)) | Ok(DiskFileState::Expired(o)) => {
                    o.info.data_ts >= ts
                }
                Ok(DiskFileState::Deleted { ts: t }) => t >= ts,
                Ok(DiskFileState::Missing) => false,
                Err(_) => true,
            };
            if !newer_exists {
                let d = df.clone();
                if let Ok(w) = blocking(move || d.create(Some(len))).await {
                    writer = Some((w, ts));
                }
            }
        }
        let (tx, mut rx) = mpsc::channel::<Bytes>(4);
        let task = writer.map(|(w, ts)| {
            tokio::task::spawn_blocking(move || {
                let mut w = w;
                let mut ok = true;
                while let Some(chunk) = rx.blocking_recv() {
                    if ok && w.write(&chunk).is_err() {
                        ok = false;
                    }
                }
                (ok, w, ts)
            })
        });
        let mut remaining = len;
        while remaining > 0 {
            let want = usize::try_from(remaining.min(CHUNK as u64)).unwrap_or(CHUNK);
            let Some(chunk) = lines.take(want).await? else {
                return Err(Abort::new(
                    0,
                    format!("Early termination for PUT {}", sub.path),
                ));
            };
            remaining -= chunk.len() as u64;
            if task.is_some() {
                let _ = tx.send(chunk).await;
            }
        }
        drop(tx);
        let Some(task) = task else {
            return Ok(false);
        };
        let (ok, w, ts) = task.await.map_err(|e| Abort::new(0, e.to_string()))?;
        if !ok || w.bytes_written() != len {
            return Ok(false);
        }
        if let Some(etag) = sub.header("ETag") {
            if !etag.trim_matches('"').eq_ignore_ascii_case(&w.etag()) {
                return Ok(false);
            }
        }
        let md = sub.metadata();
        Ok(blocking(move || w.commit(ts, md)).await.is_ok())
    }

    /// Apply a replicated POST or DELETE (no container updates).
    async fn ssync_meta_or_delete(
        &self,
        device: &str,
        part: u32,
        policy: u32,
        sub: &Sub,
    ) -> Result<Outcome, Abort> {
        let (Some(df), Some(ts)) = (
            self.sub_diskfile(device, part, policy, &sub.path).await,
            sub.timestamp(),
        ) else {
            return Ok(false);
        };
        let state = match self.open_for_replication(&df).await {
            Ok(s) => s,
            Err(_) => return Ok(false),
        };
        if sub.method == "POST" {
            let info = match state {
                DiskFileState::Exists(o) | DiskFileState::Expired(o) => o.info,
                // 404 counts as success.
                DiskFileState::Missing | DiskFileState::Deleted { .. } => return Ok(true),
            };
            if info.timestamp() >= ts {
                return Ok(false);
            }
            let ctype_ts = sub
                .header("Content-Type-Timestamp")
                .and_then(|v| Timestamp::parse(v.trim()).ok())
                .or_else(|| sub.header("Content-Type").map(|_| ts));
            let md = sub.metadata();
            return Ok(blocking(move || df.write_meta(ts, md, ctype_ts))
                .await
                .is_ok());
        }
        let orig = match &state {
            DiskFileState::Exists(o) | DiskFileState::Expired(o) => Some(o.info.data_ts),
            DiskFileState::Deleted { ts } => Some(*ts),
            DiskFileState::Missing => None,
        };
        let exists = matches!(state, DiskFileState::Exists(_));
        drop(state);
        if orig.is_none_or(|o| o < ts) {
            return Ok(blocking(move || df.write_tombstone(ts, Metadata::new()))
                .await
                .is_ok());
        }
        // An existing newer object is a conflict (409); a newer tombstone a 404 (success).
        Ok(!exists)
    }

    async fn open_for_replication(&self, df: &DiskFile) -> Result<DiskFileState, HttpError> {
        self.open(df).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> Timestamp {
        Timestamp::from_secs(1_700_000_000 + s)
    }

    #[test]
    fn missing_lines() {
        let (h, r) =
            parse_missing("9d41d8cd98f00b204e9800998ecf8427 1700000000.00000 m:186a0,t:186a0")
                .unwrap();
        assert_eq!(h, "9d41d8cd98f00b204e9800998ecf8427");
        assert_eq!((r.ts_data, r.ts_meta, r.ts_ctype), (t(0), t(1), t(1)));
        let (_, r) =
            parse_missing("9d41d8cd98f00b204e9800998ecf8427 1700000000.00000 m:186a0__2").unwrap();
        assert_eq!(r.ts_meta, t(1).with_offset(2));
        assert_eq!(r.ts_ctype, t(0));
        let (_, r) = parse_missing("9d41d8cd98f00b204e9800998ecf8427 1700000000.00000").unwrap();
        assert_eq!((r.ts_meta, r.ts_ctype), (t(0), t(0)));
        assert!(parse_missing("x").is_none());
        assert!(parse_missing("9d41d8cd98f00b204e9800998ecf8427 bogus").is_none());
    }

    #[test]
    fn wanted_rules() {
        let remote = |d, m, c| Remote {
            ts_data: t(d),
            ts_meta: t(m),
            ts_ctype: t(c),
        };
        let obj = |d, m, c| Local {
            ts_data: t(d),
            ts_meta: Some(t(m)),
            ts_ctype: Some(t(c)),
        };
        let tomb = |d| Local {
            ts_data: t(d),
            ts_meta: None,
            ts_ctype: None,
        };
        assert_eq!(wanted(&remote(1, 1, 1), None), "dm");
        // as in Swift: newer remote data also has a newer "meta" time
        assert_eq!(wanted(&remote(2, 2, 2), Some(&obj(1, 1, 1))), "dm");
        assert_eq!(wanted(&remote(2, 2, 2), Some(&obj(1, 3, 1))), "d");
        assert_eq!(wanted(&remote(1, 1, 1), Some(&obj(1, 1, 1))), "");
        assert_eq!(wanted(&remote(1, 3, 1), Some(&obj(1, 2, 1))), "m");
        assert_eq!(wanted(&remote(2, 3, 2), Some(&obj(1, 1, 1))), "dm");
        assert_eq!(wanted(&remote(1, 1, 3), Some(&obj(1, 3, 2))), "m");
        // a ctype not newer than the remote's data is not wanted
        assert_eq!(wanted(&remote(3, 3, 3), Some(&obj(3, 4, 3))), "");
        assert_eq!(wanted(&remote(2, 5, 2), Some(&tomb(1))), "d");
        assert_eq!(wanted(&remote(1, 5, 1), Some(&tomb(2))), "");
    }
}
