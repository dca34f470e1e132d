//! The SSYNC sender (`PROTOCOLS.md`, "SSYNC"; Swift's `ssync_sender.py`): one long
//! `SSYNC /DEV/PART` request per (node, partition) that offers the objects of some suffixes
//! (missing check) and then sends what the receiver asked for (updates).
//!
//! The request body is a channel fed line by line (each line its own HTTP chunk); the
//! response is read by a separate task that turns it into lines, so that an `:ERROR:` the
//! receiver sends while we are still writing is noticed before the next subrequest. Every
//! send is bounded by `node_timeout`, every reply line by `http_timeout`.
//!
//! The result of a successful sync is the set of objects the remote now holds at least as
//! new as ours ([`SsyncOutcome::in_sync`]): what a revert job may delete locally.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cairn_common::http::{
    authority, quote, BackendClient, Body, BodySender, ClientError, Timeouts,
};
use cairn_common::Timestamp;
use cairn_ring::Device;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use crate::diskfile::{DiskFileManager, DiskFileState, HashEntry};
use crate::error::DiskError;

/// Bytes per body chunk of a PUT.
const BODY_CHUNK: usize = 64 * 1024;
/// Longest reply line accepted.
const MAX_LINE: usize = 64 * 1024;

/// Timeouts of one SSYNC session.
#[derive(Debug, Clone, Copy)]
pub struct SsyncConfig {
    /// TCP connect.
    pub conn_timeout: Duration,
    /// Each send (and the wait for the response headers).
    pub node_timeout: Duration,
    /// Each reply line.
    pub http_timeout: Duration,
}

impl Default for SsyncConfig {
    fn default() -> Self {
        SsyncConfig {
            conn_timeout: Duration::from_millis(500),
            node_timeout: Duration::from_secs(10),
            http_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a sync with one node failed (the partition stays; the next pass retries).
#[derive(Debug, thiserror::Error)]
pub enum SsyncError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("SSYNC answered {0}")]
    Status(StatusCode),
    #[error("remote error: {0}")]
    Remote(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("timeout: {0}")]
    Timeout(&'static str),
    #[error("early disconnect")]
    EarlyDisconnect,
    #[error("local disk: {0}")]
    Disk(#[from] DiskError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What a successful sync did.
#[derive(Debug, Default, Clone)]
pub struct SsyncOutcome {
    /// Objects offered in the missing check, by hash: after success the remote holds each
    /// at least as new as this.
    pub in_sync: HashMap<String, HashEntry>,
    /// Hashes the receiver asked for.
    pub wanted: usize,
    /// PUT/POST/DELETE subrequests sent.
    pub subrequests: u64,
    /// Body bytes sent with PUTs.
    pub bytes: u64,
}

/// A simple pacing limiter (objects and body bytes per second) shared by all syncs.
#[derive(Debug)]
pub struct RateLimiter {
    objects_per_second: f64,
    bytes_per_second: u64,
    next: Mutex<(Instant, Instant)>,
}

impl RateLimiter {
    /// `None` when both limits are 0 (unlimited).
    pub fn new(objects_per_second: f64, bytes_per_second: u64) -> Option<RateLimiter> {
        (objects_per_second > 0.0 || bytes_per_second > 0).then(|| RateLimiter {
            objects_per_second,
            bytes_per_second,
            next: Mutex::new((Instant::now(), Instant::now())),
        })
    }

    fn reserve(&self, objects: bool, cost: Duration) -> Instant {
        let now = Instant::now();
        let mut g = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let slot = if objects { &mut g.0 } else { &mut g.1 };
        let at = (*slot).max(now);
        *slot = at + cost;
        at
    }

    /// Wait for the right to send one more object.
    pub async fn object(&self) {
        if self.objects_per_second > 0.0 {
            let cost = Duration::from_secs_f64(1.0 / self.objects_per_second);
            tokio::time::sleep_until(self.reserve(true, cost).into()).await;
        }
    }

    /// Wait for the right to send `n` more body bytes.
    pub async fn bytes(&self, n: usize) {
        if self.bytes_per_second > 0 {
            let cost = Duration::from_secs_f64(n as f64 / self.bytes_per_second as f64);
            tokio::time::sleep_until(self.reserve(false, cost).into()).await;
        }
    }
}

/// `<hash> <ts_data>[ m:<hex>[__<hex>][,t:<hex>]]` (Swift's `encode_missing`).
pub fn encode_missing(e: &HashEntry) -> String {
    let mut msg = format!("{} {}", quote(&e.hash), quote(&e.ts_data.internal()));
    let mut extra = Vec::new();
    if let Some(m) = e.ts_meta.filter(|m| *m != e.ts_data) {
        let mut s = format!(
            "m:{}",
            hex_delta(i128::from(m.raw) - i128::from(e.ts_data.raw))
        );
        if m.offset != 0 {
            s.push_str(&format!("__{:x}", m.offset));
        }
        extra.push(s);
    }
    if let Some(t) = e.ts_ctype.filter(|t| *t != e.ts_data) {
        extra.push(format!(
            "t:{}",
            hex_delta(i128::from(t.raw) - i128::from(e.ts_data.raw))
        ));
    }
    if !extra.is_empty() {
        msg.push(' ');
        msg.push_str(&extra.join(","));
    }
    msg
}

fn hex_delta(d: i128) -> String {
    if d < 0 {
        format!("-{:x}", -d)
    } else {
        format!("{d:x}")
    }
}

/// What the receiver wants of an object: data (or tombstone) and/or metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wanted {
    pub data: bool,
    pub meta: bool,
}

/// Swift's `decode_wanted`: no parts means data.
pub fn decode_wanted(parts: Option<&str>) -> Wanted {
    match parts {
        None | Some("") => Wanted {
            data: true,
            meta: false,
        },
        Some(p) => Wanted {
            data: p.contains('d'),
            meta: p.contains('m'),
        },
    }
}

/// The reply lines of the receiver, read by a background task.
struct ReplyLines {
    rx: mpsc::Receiver<io::Result<String>>,
    timeout: Duration,
}

impl ReplyLines {
    fn spawn(body: Body, timeout: Duration) -> ReplyLines {
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let mut body = body;
            let mut buf = BytesMut::new();
            loop {
                while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                    let raw = buf.split_to(i + 1);
                    let text = String::from_utf8_lossy(&raw)
                        .trim_end_matches(['\r', '\n'])
                        .to_string();
                    if tx.send(Ok(text)).await.is_err() {
                        return;
                    }
                }
                if buf.len() > MAX_LINE {
                    let _ = tx.send(Err(io::Error::other("reply line too long"))).await;
                    return;
                }
                match body.frame().await {
                    None => return,
                    Some(Err(e)) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    Some(Ok(f)) => {
                        if let Ok(d) = f.into_data() {
                            buf.extend_from_slice(&d);
                        }
                    }
                }
            }
        });
        ReplyLines { rx, timeout }
    }

    /// The next line; EOF and read errors are failures.
    async fn next(&mut self, what: &'static str) -> Result<String, SsyncError> {
        match tokio::time::timeout(self.timeout, self.rx.recv()).await {
            Err(_) => Err(SsyncError::Timeout(what)),
            Ok(None) => Err(SsyncError::EarlyDisconnect),
            Ok(Some(Err(e))) if e.kind() == io::ErrorKind::TimedOut => {
                Err(SsyncError::Timeout(what))
            }
            Ok(Some(Err(e))) => Err(SsyncError::Io(e)),
            Ok(Some(Ok(l))) => Ok(l),
        }
    }

    /// Skip blank lines up to `marker`; `:ERROR:` or anything else fails.
    async fn expect(&mut self, marker: &str, what: &'static str) -> Result<(), SsyncError> {
        loop {
            let line = self.next(what).await?;
            let line = line.trim();
            if line == marker {
                return Ok(());
            }
            check_line(line)?;
        }
    }

    /// An `:ERROR:` line the receiver sent before ending, if one comes within `wait`.
    async fn remote_error(&mut self, wait: Duration) -> Option<SsyncError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Ok(line))) if line.trim().starts_with(":ERROR:") => {
                    return Some(SsyncError::Remote(line.trim().chars().take(1024).collect()))
                }
                Ok(Some(Ok(_))) => {}
                _ => return None,
            }
        }
    }

    /// Did the receiver already say something (an error) while we are sending?
    fn poll_early(&mut self) -> Result<(), SsyncError> {
        loop {
            match self.rx.try_recv() {
                Ok(Ok(line)) => check_line(line.trim())?,
                Ok(Err(e)) => return Err(SsyncError::Io(e)),
                Err(mpsc::error::TryRecvError::Empty) => return Ok(()),
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Err(SsyncError::EarlyDisconnect)
                }
            }
        }
    }
}

/// A blank line is fine, `:ERROR:` is the remote's failure, anything else a protocol error.
fn check_line(line: &str) -> Result<(), SsyncError> {
    if line.is_empty() {
        Ok(())
    } else if line.starts_with(":ERROR:") {
        Err(SsyncError::Remote(line.chars().take(1024).collect()))
    } else {
        Err(SsyncError::Protocol(format!(
            "unexpected response: {:?}",
            line.chars().take(1024).collect::<String>()
        )))
    }
}

/// The request body writer: every send bounded by `node_timeout`.
struct Writer {
    tx: Option<BodySender>,
    timeout: Duration,
}

impl Writer {
    async fn send(&mut self, data: Bytes) -> Result<(), SsyncError> {
        let Some(tx) = &self.tx else {
            return Err(SsyncError::EarlyDisconnect);
        };
        match tokio::time::timeout(self.timeout, tx.send(data)).await {
            Err(_) => Err(SsyncError::Timeout("send")),
            Ok(Err(_)) => Err(SsyncError::EarlyDisconnect),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn line(&mut self, line: &str) -> Result<(), SsyncError> {
        self.send(Bytes::from(format!("{line}\r\n"))).await
    }

    /// A subrequest head: the request line, headers, blank line (each its own chunk).
    async fn head(&mut self, lines: &[String]) -> Result<(), SsyncError> {
        for l in lines {
            self.line(l).await?;
        }
        self.line("").await
    }

    /// Break the body so that the receiver sees an incomplete transfer. Bounded: if the
    /// connection no longer takes data the body is just dropped (the receiver then sees
    /// its protocol end early, which is as good).
    async fn abort(&mut self, why: &str) {
        if let Some(tx) = self.tx.take() {
            let _ = tokio::time::timeout(
                Duration::from_millis(100),
                tx.abort(io::Error::other(why.to_string())),
            )
            .await;
        }
    }

    /// End the body (the zero chunk).
    fn finish(&mut self) {
        self.tx = None;
    }
}

/// Sends partitions' suffixes to nodes with SSYNC.
#[derive(Debug, Clone)]
pub struct SsyncSender {
    client: BackendClient,
    mgr: DiskFileManager,
    cfg: SsyncConfig,
    limiter: Option<std::sync::Arc<RateLimiter>>,
}

impl SsyncSender {
    pub fn new(
        client: BackendClient,
        mgr: DiskFileManager,
        cfg: SsyncConfig,
        limiter: Option<std::sync::Arc<RateLimiter>>,
    ) -> Self {
        SsyncSender {
            client,
            mgr,
            cfg,
            limiter,
        }
    }

    /// Sync `suffixes` of partition `part` of local device `device` (policy `policy`) to
    /// `node` (its replication address). `remote_check` limits the offer to these hashes
    /// (none: everything in the suffixes).
    pub async fn sync(
        &self,
        device: &str,
        policy: u32,
        part: u32,
        suffixes: &[String],
        node: &Device,
        remote_check: Option<&HashSet<String>>,
    ) -> Result<SsyncOutcome, SsyncError> {
        let mgr = self.mgr.clone();
        let (dev, sfx) = (device.to_string(), suffixes.to_vec());
        let mut entries =
            tokio::task::spawn_blocking(move || mgr.yield_hashes(&dev, policy, part, Some(&sfx)))
                .await
                .map_err(io::Error::other)??;
        if let Some(only) = remote_check {
            entries.retain(|e| only.contains(&e.hash));
        }

        let mut headers = HeaderMap::new();
        headers.insert("X-Backend-Storage-Policy-Index", HeaderValue::from(policy));
        if let Ok(v) = HeaderValue::from_str(&format!("object-replicator {}", std::process::id())) {
            headers.insert(http::header::USER_AGENT, v);
        }
        let (tx, body) = cairn_common::http::channel(8);
        let auth = authority(&node.replication_ip, node.replication_port);
        let path = format!("/{}/{part}", quote(&node.device));
        let method =
            Method::from_bytes(b"SSYNC").map_err(|e| SsyncError::Protocol(e.to_string()))?;
        let timeouts = Timeouts {
            conn: self.cfg.conn_timeout,
            node: self.cfg.http_timeout,
        };
        let resp = tokio::time::timeout(
            self.cfg.conn_timeout + self.cfg.node_timeout,
            self.client
                .request_with_timeouts(method, &auth, &path, headers, body, timeouts),
        )
        .await
        .map_err(|_| SsyncError::Timeout("connect receive"))??;
        if resp.status != StatusCode::OK {
            return Err(SsyncError::Status(resp.status));
        }
        let mut reply = ReplyLines::spawn(resp.body, self.cfg.http_timeout);
        let mut w = Writer {
            tx: Some(tx),
            timeout: self.cfg.node_timeout,
        };
        let res = self
            .session(device, policy, part, &entries, &mut w, &mut reply)
            .await;
        match res {
            Ok(out) => Ok(out),
            Err(e) => {
                w.abort("ssync sender failed").await;
                // A send that failed because the receiver gave up: report its reason.
                if matches!(e, SsyncError::EarlyDisconnect | SsyncError::Timeout("send")) {
                    if let Some(remote) = reply.remote_error(Duration::from_secs(1)).await {
                        return Err(remote);
                    }
                }
                Err(e)
            }
        }
    }

    async fn session(
        &self,
        device: &str,
        policy: u32,
        part: u32,
        entries: &[HashEntry],
        w: &mut Writer,
        reply: &mut ReplyLines,
    ) -> Result<SsyncOutcome, SsyncError> {
        // Phase 1: missing check.
        w.line(":MISSING_CHECK: START").await?;
        for e in entries {
            w.line(&encode_missing(e)).await?;
        }
        w.line(":MISSING_CHECK: END").await?;
        reply
            .expect(":MISSING_CHECK: START", "missing_check start")
            .await?;
        let mut send: Vec<(String, Wanted)> = Vec::new();
        loop {
            let line = reply.next("missing_check line").await?;
            let line = line.trim();
            if line == ":MISSING_CHECK: END" {
                break;
            }
            if line.starts_with(":ERROR:") {
                return Err(SsyncError::Remote(line.chars().take(1024).collect()));
            }
            let mut parts = line.split_whitespace();
            if let Some(h) = parts.next() {
                let hash = cairn_common::http::decode_path(h)
                    .map_err(|e| SsyncError::Protocol(format!("bad hash {h:?}: {e}")))?;
                send.push((hash, decode_wanted(parts.next())));
            }
        }

        // Phase 2: updates.
        let mut out = SsyncOutcome {
            wanted: send.len(),
            ..SsyncOutcome::default()
        };
        w.line(":UPDATES: START").await?;
        for (hash, want) in &send {
            reply.poll_early()?;
            if let Some(l) = &self.limiter {
                l.object().await;
            }
            out.subrequests += self
                .send_object(device, policy, part, hash, *want, w, &mut out.bytes)
                .await?;
        }
        w.line(":UPDATES: END").await?;
        w.finish();
        reply.expect(":UPDATES: START", "updates start").await?;
        reply.expect(":UPDATES: END", "updates end").await?;
        out.in_sync = entries
            .iter()
            .map(|e| (e.hash.clone(), e.clone()))
            .collect();
        Ok(out)
    }

    /// Send what is wanted of one object; returns the number of subrequests sent.
    #[allow(clippy::too_many_arguments)]
    async fn send_object(
        &self,
        device: &str,
        policy: u32,
        part: u32,
        hash: &str,
        want: Wanted,
        w: &mut Writer,
        bytes: &mut u64,
    ) -> Result<u64, SsyncError> {
        let mgr = self.mgr.clone();
        let (dev, h) = (device.to_string(), hash.to_string());
        let state = tokio::task::spawn_blocking(move || {
            mgr.diskfile_by_hash(&dev, policy, part, &h)
                .and_then(|df| df.open())
        })
        .await
        .map_err(io::Error::other)?;
        let obj = match state {
            // Errors opening (quarantined, unreadable): nothing partial was sent, skip it.
            Err(e) => {
                tracing::warn!(device, part, hash, error = %e, "ssync: cannot open object; skipped");
                return Ok(0);
            }
            Ok(DiskFileState::Missing) => return Ok(0),
            Ok(DiskFileState::Deleted { ts }) => {
                if !want.data {
                    return Ok(0);
                }
                // The tombstone's name is not known from the hash; the receiver needs a
                // path, which the `.ts` metadata carries.
                let name = self.tombstone_name(device, policy, part, hash).await?;
                let Some(name) = name else {
                    tracing::warn!(
                        device,
                        part,
                        hash,
                        "ssync: tombstone without a name; skipped"
                    );
                    return Ok(0);
                };
                w.head(&[
                    format!("DELETE {}", quote(&name)),
                    format!("X-Timestamp: {}", ts.internal()),
                ])
                .await?;
                return Ok(1);
            }
            Ok(DiskFileState::Exists(o)) | Ok(DiskFileState::Expired(o)) => o,
        };
        let path = quote(&obj.info.name);
        let mut sent = 0;
        let has_meta = obj.info.meta_metadata.is_some();
        let meta_md = obj.info.meta_metadata.clone();
        if want.data {
            let info = &obj.info;
            let mut head = vec![
                format!("PUT {path}"),
                format!("Content-Length: {}", info.content_length),
            ];
            let mut md: Vec<(&str, &str)> = info
                .data_metadata
                .iter()
                .filter(|(k, _)| {
                    !k.eq_ignore_ascii_case("name") && !k.eq_ignore_ascii_case("Content-Length")
                })
                .collect();
            md.sort();
            head.extend(md.into_iter().map(|(k, v)| format!("{k}: {v}")));
            w.head(&head).await?;
            let len = info.content_length;
            *bytes += self.send_body(obj, len, w).await?;
            sent += 1;
        }
        if want.meta && has_meta {
            if let Some(meta) = meta_md {
                let mut head = vec![format!("POST {path}")];
                let mut md: Vec<(&str, &str)> = meta
                    .iter()
                    .filter(|(k, _)| !k.eq_ignore_ascii_case("name"))
                    .collect();
                md.sort();
                head.extend(md.into_iter().map(|(k, v)| format!("{k}: {v}")));
                w.head(&head).await?;
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// The stored name of a tombstoned object (from the newest `.ts`'s metadata).
    async fn tombstone_name(
        &self,
        device: &str,
        policy: u32,
        part: u32,
        hash: &str,
    ) -> Result<Option<String>, SsyncError> {
        let mgr = self.mgr.clone();
        let (dev, h) = (device.to_string(), hash.to_string());
        let r = tokio::task::spawn_blocking(move || -> crate::error::Result<Option<String>> {
            let df = mgr.diskfile_by_hash(&dev, policy, part, &h)?;
            let info = df.ondisk_info(Timestamp::now())?;
            let Some(ts) = info.ts else { return Ok(None) };
            let f = std::fs::File::open(df.hash_dir().join(&ts.name))?;
            let md = crate::metadata::read_metadata(&f)?;
            Ok(md.get("name").map(str::to_string))
        })
        .await
        .map_err(io::Error::other)?;
        match r {
            Ok(n) => Ok(n),
            Err(e) => {
                tracing::warn!(device, part, hash, error = %e, "ssync: unreadable tombstone");
                Ok(None)
            }
        }
    }

    /// Stream exactly `len` body bytes from disk; a short or failed read breaks the session.
    async fn send_body(
        &self,
        obj: crate::diskfile::OpenObject,
        len: u64,
        w: &mut Writer,
    ) -> Result<u64, SsyncError> {
        let (tx, mut rx) = mpsc::channel::<Result<Bytes, String>>(2);
        let reader = tokio::task::spawn_blocking(move || {
            let mut r = obj.reader();
            loop {
                let mut buf = vec![0u8; BODY_CHUNK];
                match r.read_chunk(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        let mut sent = 0u64;
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk.map_err(|e| SsyncError::Io(io::Error::other(e)))?;
            if let Some(l) = &self.limiter {
                l.bytes(chunk.len()).await;
            }
            sent += chunk.len() as u64;
            if sent > len {
                return Err(SsyncError::Protocol(
                    "object longer than its Content-Length".to_string(),
                ));
            }
            w.send(chunk).await?;
        }
        let _ = reader.await;
        if sent != len {
            return Err(SsyncError::Protocol(format!(
                "sent {sent} bytes, Content-Length {len}"
            )));
        }
        Ok(sent)
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
        let mut e = HashEntry {
            hash: "9d41d8cd98f00b204e9800998ecf8427".into(),
            ts_data: t(0),
            deleted: false,
            ts_meta: None,
            ts_ctype: None,
        };
        assert_eq!(
            encode_missing(&e),
            "9d41d8cd98f00b204e9800998ecf8427 1700000000.00000"
        );
        e.ts_meta = Some(t(1));
        e.ts_ctype = Some(t(1));
        assert_eq!(
            encode_missing(&e),
            "9d41d8cd98f00b204e9800998ecf8427 1700000000.00000 m:186a0,t:186a0"
        );
        e.ts_meta = Some(t(1).with_offset(2));
        e.ts_ctype = None;
        assert_eq!(
            encode_missing(&e),
            "9d41d8cd98f00b204e9800998ecf8427 1700000000.00000 m:186a0__2"
        );
    }

    #[test]
    fn wanted() {
        assert_eq!(
            decode_wanted(None),
            Wanted {
                data: true,
                meta: false
            }
        );
        assert_eq!(
            decode_wanted(Some("dm")),
            Wanted {
                data: true,
                meta: true
            }
        );
        assert_eq!(
            decode_wanted(Some("m")),
            Wanted {
                data: false,
                meta: true
            }
        );
    }
}
