//! Talking to storage nodes: parallel writes with handoff replacement and quorum
//! (`make_requests`), reads from the first good node (`get_first`), X-Newest, and the
//! response plumbing between backend and client.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::header::HeaderName;
use http::{HeaderMap, Method, Response, StatusCode};

use cairn_common::http::{backend_path, empty, full, BackendResponse, Body};
use cairn_common::Timestamp;
use cairn_ring::Ring;

use crate::headers::{filter_response, status_response};
use crate::nodes::{iter_nodes, primaries, Node, NodePool};
use crate::quorum::{best_index, have_quorum, quorum_size};
use crate::server::{Ctx, Proxy};

/// A finished backend answer (small body read whole).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn unavailable() -> Self {
        Reply {
            status: 503,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }
}

/// Which server a request goes to (reads treat 416 as a good object answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerType {
    Account,
    Container,
    Object,
}

/// Backend path plus query.
pub fn node_path(
    node: &Node,
    part: u32,
    a: &str,
    c: Option<&str>,
    o: Option<&str>,
    query: Option<&str>,
) -> String {
    let mut p = backend_path(&node.device, part, a, c, o);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        p.push('?');
        p.push_str(q);
    }
    p
}

/// Hop-by-hop headers never copied between connections.
fn is_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-connection"
    )
}

/// A client response from a backend's status, headers and body.
pub fn to_client(status: u16, headers: &HeaderMap, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    for (k, v) in headers {
        if !is_hop(k) {
            resp.headers_mut().append(k.clone(), v.clone());
        }
    }
    filter_response(resp.headers_mut());
    resp
}

/// A client response from a small finished reply (error answers get Swift's body when
/// the backend sent none).
pub fn reply_to_client(r: &Reply) -> Response<Body> {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    if r.status >= 400 && r.body.is_empty() {
        let mut resp = status_response(status);
        for (k, v) in &r.headers {
            if !is_hop(k) && k != "content-length" && k != "content-type" {
                resp.headers_mut().append(k.clone(), v.clone());
            }
        }
        filter_response(resp.headers_mut());
        return resp;
    }
    let mut h = r.headers.clone();
    h.remove("content-length");
    to_client(r.status, &h, full(r.body.clone()))
}

/// Outcome of a read.
pub enum GetOutcome {
    /// A good source: its response, with a streaming body.
    Found(BackendResponse, Node),
    /// No good source: every answer collected (errors as 503).
    Failed(Vec<Reply>),
}

impl Proxy {
    /// Headers every backend request carries.
    pub(crate) fn backend_headers(&self, ctx: &Ctx) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-trans-id", crate::auth::hv(&ctx.trans_id));
        h.insert(
            "user-agent",
            crate::auth::hv(&format!("proxy-server {}", std::process::id())),
        );
        h.insert(
            "referer",
            crate::auth::hv(&format!("{} {}", ctx.method, ctx.raw_path)),
        );
        h
    }

    fn request_node_count(&self, replicas: usize) -> usize {
        self.cfg
            .proxy
            .request_node_count
            .unwrap_or(2 * replicas)
            .max(1)
    }

    /// Send one request; 507 and 5xx/errors count against the node. `Ok` only for an
    /// answer that is not a server error.
    pub(crate) async fn one_request(
        &self,
        node: &Node,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Body,
    ) -> Option<BackendResponse> {
        match self
            .client
            .request(method, &node.authority(), path, headers, body)
            .await
        {
            Ok(r) if r.status == StatusCode::INSUFFICIENT_STORAGE => {
                self.limiter.error_limit(node, "ERROR Insufficient Storage");
                None
            }
            Ok(r) if r.status.is_server_error() => {
                self.limiter
                    .error_occurred(node, &format!("ERROR {} from backend", r.status.as_u16()));
                None
            }
            Ok(r) => Some(r),
            Err(e) => {
                self.limiter
                    .error_occurred(node, &format!("ERROR with backend: {e}"));
                None
            }
        }
    }

    /// Swift's `make_requests`: one request per primary, each moving on to the next
    /// node of the shared pool when its node fails; waits for a quorum of answers, then
    /// at most `post_quorum_timeout` for the rest. Missing answers count as 503.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn make_requests(
        &self,
        ring: &Ring,
        part: u32,
        method: Method,
        a: &str,
        c: Option<&str>,
        o: Option<&str>,
        query: Option<&str>,
        headers: Vec<HeaderMap>,
    ) -> Vec<Reply> {
        self.make_requests_with(ring, part, method, (a, c, o), query, headers, true)
            .await
    }

    /// [`Proxy::make_requests`]; without `handoffs` only the primaries are asked (a
    /// policy with `write_quorum = "all"`: a handoff's copy does not count).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn make_requests_with(
        &self,
        ring: &Ring,
        part: u32,
        method: Method,
        (a, c, o): (&str, Option<&str>, Option<&str>),
        query: Option<&str>,
        headers: Vec<HeaderMap>,
        handoffs: bool,
    ) -> Vec<Reply> {
        let n = headers.len();
        let pool = NodePool::new(self.write_nodes(ring, part, n, handoffs));
        let quorum = quorum_size(n);
        let pool = &pool;
        let mut futs: FuturesUnordered<_> = headers
            .into_iter()
            .map(|h| {
                let method = method.clone();
                async move {
                    while let Some(node) = pool.next_node() {
                        let path = node_path(&node, part, a, c, o, query);
                        if let Some(r) = self
                            .one_request(&node, method.clone(), &path, h.clone(), empty())
                            .await
                        {
                            let status = r.status.as_u16();
                            let headers = r.headers.clone();
                            let body = r.bytes(1 << 20).await.unwrap_or_default();
                            return Reply {
                                status,
                                headers,
                                body,
                            };
                        }
                    }
                    Reply::unavailable()
                }
            })
            .collect();
        let mut replies = Vec::with_capacity(n);
        while let Some(r) = futs.next().await {
            replies.push(r);
            let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
            if have_quorum(&statuses, quorum) {
                break;
            }
        }
        if !futs.is_empty() {
            let rest = async {
                while let Some(r) = futs.next().await {
                    replies.push(r);
                }
            };
            let _ = tokio::time::timeout(self.post_quorum_timeout(), rest).await;
        }
        while replies.len() < n {
            replies.push(Reply::unavailable());
        }
        replies
    }

    /// The nodes a write may use: primaries (not error-limited), then handoffs up to
    /// `request_node_count` unless `handoffs` is false.
    pub(crate) fn write_nodes(
        &self,
        ring: &Ring,
        part: u32,
        n: usize,
        handoffs: bool,
    ) -> Vec<Node> {
        if handoffs {
            iter_nodes(ring, part, &self.limiter, self.request_node_count(n).max(n))
        } else {
            primaries(ring, part)
                .into_iter()
                .filter(|node| !self.limiter.is_limited(node))
                .collect()
        }
    }

    pub(crate) fn post_quorum_timeout(&self) -> Duration {
        self.cfg.post_quorum_timeout()
    }

    /// Swift's `best_response` for writes: the reply a quorum agrees on, else 503.
    pub(crate) fn best_reply(&self, replies: &[Reply], quorum: usize) -> Reply {
        let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
        match best_index(&statuses, quorum) {
            Some(i) => replies[i].clone(),
            None => {
                tracing::error!(?statuses, "returning 503: no quorum");
                Reply::unavailable()
            }
        }
    }

    /// Send a read; `Ok` for any non-5xx answer, `Err(Some(reply))` for a server error
    /// (counted against the node), `Err(None)` when the node did not answer.
    async fn read_request(
        &self,
        node: &Node,
        method: Method,
        path: &str,
        headers: HeaderMap,
    ) -> Result<BackendResponse, Option<Reply>> {
        let started = std::time::Instant::now();
        let answer = self
            .client
            .request(method, &node.authority(), path, headers, empty())
            .await;
        match &answer {
            Ok(r) if !r.status.is_server_error() => {
                self.affinity.record_timing(node, started.elapsed())
            }
            _ => self.affinity.record_failure(node),
        }
        match answer {
            Ok(r) if r.status.is_server_error() => {
                if r.status == StatusCode::INSUFFICIENT_STORAGE {
                    self.limiter.error_limit(node, "ERROR Insufficient Storage");
                } else {
                    self.limiter
                        .error_occurred(node, &format!("ERROR {} from backend", r.status.as_u16()));
                }
                Err(Some(Reply {
                    status: r.status.as_u16(),
                    headers: r.headers,
                    body: Bytes::new(),
                }))
            }
            Ok(r) => Ok(r),
            Err(e) => {
                self.limiter
                    .error_occurred(node, &format!("ERROR with backend: {e}"));
                Err(None)
            }
        }
    }

    /// Read from the first good node: primaries, then handoffs, up to
    /// `request_node_count` (Swift's `GetOrHeadHandler`). 2xx/3xx (and 416 for objects)
    /// is good; anything else moves on. 404s and errors of handoffs that hold no
    /// tombstone are not counted; an object copy older than a tombstone seen on another
    /// node is ignored.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn get_first(
        &self,
        ring: &Ring,
        part: u32,
        method: Method,
        server: ServerType,
        a: &str,
        c: Option<&str>,
        o: Option<&str>,
        query: Option<&str>,
        headers: HeaderMap,
    ) -> GetOutcome {
        self.read_nodes(ring, part, method, server, (a, c, o), query, headers, false)
            .await
    }

    /// X-Newest: ask every node (primaries and handoffs up to `request_node_count`) at
    /// once and keep the good answer with the newest timestamp.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn get_newest(
        &self,
        ring: &Ring,
        part: u32,
        method: Method,
        server: ServerType,
        a: &str,
        c: Option<&str>,
        o: Option<&str>,
        query: Option<&str>,
        headers: HeaderMap,
    ) -> GetOutcome {
        self.read_nodes(ring, part, method, server, (a, c, o), query, headers, true)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn read_nodes(
        &self,
        ring: &Ring,
        part: u32,
        method: Method,
        server: ServerType,
        (a, c, o): (&str, Option<&str>, Option<&str>),
        query: Option<&str>,
        headers: HeaderMap,
        newest: bool,
    ) -> GetOutcome {
        self.read_nodes_full(
            ring,
            part,
            method,
            server,
            (a, c, o),
            query,
            headers,
            newest,
        )
        .await
        .0
    }

    /// A first-good-node object read that also names the primaries that missed the
    /// copy it found (404 without a tombstone at least as new, or an error): the
    /// targets of a read repair.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn get_first_with_misses(
        &self,
        ring: &Ring,
        part: u32,
        method: Method,
        (a, c, o): (&str, Option<&str>, Option<&str>),
        query: Option<&str>,
        headers: HeaderMap,
    ) -> (GetOutcome, Vec<Node>) {
        self.read_nodes_full(
            ring,
            part,
            method,
            ServerType::Object,
            (a, c, o),
            query,
            headers,
            false,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn read_nodes_full(
        &self,
        ring: &Ring,
        part: u32,
        method: Method,
        server: ServerType,
        (a, c, o): (&str, Option<&str>, Option<&str>),
        query: Option<&str>,
        headers: HeaderMap,
        newest: bool,
    ) -> (GetOutcome, Vec<Node>) {
        let n = primaries(ring, part).len();
        let mut nodes = iter_nodes(ring, part, &self.limiter, self.request_node_count(n));
        let n_primaries = nodes.iter().take_while(|x| x.index.is_some()).count();
        self.affinity.sort_primaries(&mut nodes[..n_primaries]);
        let mut state = ReadState {
            server,
            failed: Vec::new(),
            latest_404: Timestamp::from_raw(0),
            sources: Vec::new(),
            misses: Vec::new(),
        };
        if newest {
            let futs = nodes.into_iter().map(|node| {
                let path = node_path(&node, part, a, c, o, query);
                let (headers, method) = (headers.clone(), method.clone());
                async move {
                    let r = self.read_request(&node, method, &path, headers).await;
                    (r, node)
                }
            });
            for (r, node) in futures_util::future::join_all(futs).await {
                state.take(r, node).await;
            }
        } else {
            for node in nodes {
                let path = node_path(&node, part, a, c, o, query);
                let r = self
                    .read_request(&node, method.clone(), &path, headers.clone())
                    .await;
                state.take(r, node).await;
                if !state.sources.is_empty() {
                    break;
                }
            }
        }
        let latest_404 = state.latest_404;
        let mut sources: Vec<_> = state
            .sources
            .into_iter()
            .filter(|(ts, _, _)| *ts >= latest_404)
            .collect();
        sources.sort_by_key(|(ts, _, _)| *ts);
        match sources.pop() {
            Some((ts, r, node)) => {
                if self.affinity.is_read_local(&node) {
                    self.affinity.hits.inc();
                }
                let misses = state
                    .misses
                    .into_iter()
                    .filter(|(_, miss_ts)| *miss_ts < ts)
                    .map(|(n, _)| n)
                    .collect();
                (GetOutcome::Found(r, node), misses)
            }
            None => (GetOutcome::Failed(state.failed), Vec::new()),
        }
    }

    /// The client answer when no node had a good copy: Swift's `best_response` over
    /// every answer (quorum `(n + 1) // 2` of them in one class), else 503.
    pub(crate) fn read_failure(&self, replies: &[Reply]) -> Reply {
        let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
        if let Some(i) = best_index(&statuses, quorum_size(statuses.len())) {
            return replies[i].clone();
        }
        Reply::unavailable()
    }
}

/// What a read has collected so far.
struct ReadState {
    server: ServerType,
    failed: Vec<Reply>,
    latest_404: Timestamp,
    sources: Vec<(Timestamp, BackendResponse, Node)>,
    /// Primaries without a good copy: 5xx answers but 507 (timestamp 0) and 404s
    /// (their `X-Backend-Timestamp`, a tombstone's time).
    misses: Vec<(Node, Timestamp)>,
}

fn header_ts(h: &HeaderMap, names: &[&str]) -> Timestamp {
    names
        .iter()
        .find_map(|n| {
            h.get(*n)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| Timestamp::parse(v.trim()).ok())
        })
        .unwrap_or(Timestamp::from_raw(0))
}

impl ReadState {
    async fn take(&mut self, r: Result<BackendResponse, Option<Reply>>, node: Node) {
        let handoff = node.index.is_none();
        let has_backend_ts = |h: &HeaderMap| header_ts(h, &["x-backend-timestamp"]).raw > 0;
        match &r {
            // A node that answered with an error (not 507: no room there) may take a
            // repair; one that did not answer at all is left to the replicator.
            Err(Some(e)) if !handoff && e.status != 507 => {
                self.misses.push((node.clone(), Timestamp::from_raw(0)))
            }
            Ok(r) if !handoff && r.status.as_u16() == 404 => self.misses.push((
                node.clone(),
                header_ts(&r.headers, &["x-backend-timestamp"]),
            )),
            _ => {}
        }
        match r {
            Err(None) => {}
            Err(Some(reply)) => {
                if !handoff || has_backend_ts(&reply.headers) {
                    self.failed.push(reply);
                }
            }
            Ok(r) if is_good(r.status.as_u16(), self.server) => {
                let put_ts = r.header("x-put-timestamp").map(str::trim);
                if self.server != ServerType::Object
                    && put_ts.is_some_and(|t| t.parse::<f64>().is_ok_and(|v| v == 0.0))
                {
                    self.failed.push(Reply {
                        status: 404,
                        headers: HeaderMap::new(),
                        body: Bytes::new(),
                    });
                    return;
                }
                let ts = header_ts(
                    &r.headers,
                    &[
                        "x-backend-data-timestamp",
                        "x-backend-timestamp",
                        "x-put-timestamp",
                        "x-timestamp",
                    ],
                );
                if ts >= self.latest_404 {
                    self.sources.push((ts, r, node));
                }
            }
            Ok(r) => {
                let status = r.status.as_u16();
                if handoff && status == 404 && !has_backend_ts(&r.headers) {
                    return;
                }
                if self.server == ServerType::Object && status == 404 {
                    let ts = header_ts(&r.headers, &["x-backend-timestamp"]);
                    if ts > self.latest_404 {
                        self.latest_404 = ts;
                    }
                }
                let headers = r.headers.clone();
                let body = r.bytes(64 << 10).await.unwrap_or_default();
                self.failed.push(Reply {
                    status,
                    headers,
                    body,
                });
            }
        }
    }
}

fn is_good(status: u16, server: ServerType) -> bool {
    (200..400).contains(&status) || (server == ServerType::Object && status == 416)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_sources() {
        assert!(is_good(200, ServerType::Object));
        assert!(is_good(304, ServerType::Container));
        assert!(is_good(416, ServerType::Object));
        assert!(!is_good(416, ServerType::Container));
        assert!(!is_good(404, ServerType::Object));
    }

    #[test]
    fn client_copies() {
        let mut h = HeaderMap::new();
        h.insert("x-backend-timestamp", "1".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("x-object-meta-a", "b".parse().unwrap());
        let r = to_client(200, &h, empty());
        assert_eq!(r.headers().len(), 1);
        let r = reply_to_client(&Reply {
            status: 409,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        });
        assert_eq!(r.status(), 409);
    }
}
