//! Streaming object PUT to every replica at once (`PROTOCOLS.md`, "Proxy behaviour
//! clients rely on"; Swift `ReplicatedObjectController._store_object`).
//!
//! 1. Connect to one node per primary slot with `Expect: 100-continue` (hyper's
//!    `on_informational` tells us the `100 Continue`); a node that is error-limited,
//!    unreachable, slow or answers 507/5xx is replaced by the next node of the pool
//!    (handoffs). An early final answer (2xx, 409, 412, 422) is kept as that slot's reply.
//! 2. Fewer connected nodes than the quorum → 503 before reading the client's body.
//! 3. Each chunk of the client's body is sent to every connected node (bounded channels,
//!    `node_timeout` per chunk); a node that fails is dropped; below quorum → 503 and
//!    every upload is aborted so no replica commits a partial object.
//! 4. The final answers are gathered (quorum, then `post_quorum_timeout`) and the best
//!    status by quorum is returned; 2xx answers must agree on the ETag.
//!
//! This module has its own hyper client: the shared `BackendClient` cannot wait for
//! `100 Continue` before streaming a body.
//!
//! **Departure from PROTOCOLS.md for small bodies.** A body with a known length of at most
//! `SMALL_PUT_BYTES` (64 KiB) is read whole first and sent to each node as one complete request,
//! *without* `Expect: 100-continue`: for small objects the extra round trip and wake-ups
//! were a large share of the PUT's cost. Nothing a client sees changes: a slot whose node
//! fails still moves on to a handoff (it has the whole body), 409/412 arrive as final
//! answers, and the answer comes after the quorum plus `post_quorum_timeout`, while slots
//! still working go on as detached tasks.

use std::collections::BTreeSet;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use cairn_common::http::{empty, full, Body, Timeouts};
use cairn_ring::Ring;

use crate::backend::{node_path, Reply};
use crate::nodes::{ErrorLimiter, Node, NodePool};
use crate::quorum::{best_index, have_quorum};
use crate::server::Proxy;

type RespResult = Result<http::Response<Incoming>, hyper_util::client::legacy::Error>;

/// The hyper client for object PUTs (100-continue aware).
#[derive(Clone, Debug)]
pub struct PutClient {
    client: Client<HttpConnector, Body>,
    timeouts: Timeouts,
}

impl PutClient {
    pub fn new(timeouts: Timeouts) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeouts.conn));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        PutClient { client, timeouts }
    }
}

/// The sending half of an upload to one node. Only [`PutSender::finish`] ends the body
/// cleanly; dropping the sender otherwise (client gone, node too slow, quorum lost)
/// makes the body fail, so hyper aborts the connection instead of sending the final
/// chunk of a truncated upload. Never blocks on a full channel to do so.
struct PutSender {
    tx: mpsc::Sender<Bytes>,
    done: Arc<AtomicBool>,
}

impl PutSender {
    async fn send(&self, chunk: Bytes) -> Result<(), ()> {
        self.tx.send(chunk).await.map_err(|_| ())
    }

    fn finish(self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

struct PutBody {
    rx: mpsc::Receiver<Bytes>,
    done: Arc<AtomicBool>,
}

impl hyper::body::Body for PutBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(None) if self.done.load(Ordering::SeqCst) => Poll::Ready(None),
            Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::other("upload abandoned")))),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn put_channel(buffer: usize) -> (PutSender, Body) {
    let (tx, rx) = mpsc::channel(buffer.max(1));
    let done = Arc::new(AtomicBool::new(false));
    (
        PutSender {
            tx,
            done: done.clone(),
        },
        PutBody { rx, done }.boxed_unsync(),
    )
}

/// A node receiving the body.
struct Putter {
    node: Node,
    tx: Option<PutSender>,
    resp: JoinHandle<RespResult>,
}

/// What connecting one slot gave.
enum Connected {
    Streaming(Putter),
    /// A final answer before any body was sent.
    Early(Reply),
}

/// The request of one object PUT.
pub struct PutJob<'a> {
    pub ring: &'a Ring,
    pub part: u32,
    pub account: &'a str,
    pub container: &'a str,
    pub object: &'a str,
    /// One header set per primary slot (container-update assignment differs).
    pub headers: Vec<HeaderMap>,
    pub quorum: usize,
    /// `Some(n)`: `Content-Length: n`; `None`: chunked.
    pub content_length: Option<u64>,
    pub max_size: u64,
    pub if_none_match_star: bool,
    /// May handoffs stand in for failed primaries? Not when the policy's
    /// `write_quorum` is `all`: every primary must take the write.
    pub handoffs: bool,
}

impl PutJob<'_> {
    /// The PUT of this object to `node` with one slot's `headers` (no length header yet);
    /// `None` if the node's address makes no URI.
    fn request(&self, node: &Node, headers: &HeaderMap, body: Body) -> Option<Request<Body>> {
        let target = [self.account, self.container, self.object];
        object_put_request(node, self.part, target, headers, body)
    }
}

/// The PUT of `/account/container/object` of partition `part` to `node`; `None` if the
/// node's address makes no URI.
fn object_put_request(
    node: &Node,
    part: u32,
    [account, container, object]: [&str; 3],
    headers: &HeaderMap,
    body: Body,
) -> Option<Request<Body>> {
    let path = node_path(node, part, account, Some(container), Some(object), None);
    let uri = format!("http://{}{path}", node.authority()).parse().ok()?;
    let mut req = Request::new(body);
    *req.method_mut() = Method::PUT;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers.clone();
    Some(req)
}

/// The outcome of a PUT: the reply to base the client answer on.
#[derive(Debug)]
pub struct PutOutcome {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub message: Option<String>,
}

impl PutOutcome {
    fn status(s: StatusCode) -> Self {
        PutOutcome {
            status: s,
            etag: None,
            message: None,
        }
    }
    fn msg(s: StatusCode, m: impl Into<String>) -> Self {
        PutOutcome {
            status: s,
            etag: None,
            message: Some(m.into()),
        }
    }
}

fn reply_of(status: u16, headers: &HeaderMap) -> Reply {
    Reply {
        status,
        headers: headers.clone(),
        body: Bytes::new(),
    }
}

impl Proxy {
    async fn connect_put_node(
        &self,
        pool: &NodePool,
        job: &PutJob<'_>,
        headers: &HeaderMap,
    ) -> Option<Connected> {
        let timeouts = self.put_client.timeouts;
        while let Some(node) = pool.next_node() {
            let zero = job.content_length == Some(0);
            let (tx, body) = if zero {
                (None, empty())
            } else {
                let (tx, body) = put_channel(4);
                (Some(tx), body)
            };
            let Some(mut req) = job.request(&node, headers, body) else {
                continue;
            };
            match job.content_length {
                Some(n) => {
                    req.headers_mut()
                        .insert("content-length", HeaderValue::from(n));
                }
                None => {
                    req.headers_mut()
                        .insert("transfer-encoding", HeaderValue::from_static("chunked"));
                }
            }
            let (cont_tx, cont_rx) = tokio::sync::oneshot::channel::<()>();
            if !zero {
                req.headers_mut()
                    .insert("expect", HeaderValue::from_static("100-continue"));
                let cont_tx = Arc::new(Mutex::new(Some(cont_tx)));
                hyper::ext::on_informational(&mut req, move |res| {
                    if res.status() == StatusCode::CONTINUE {
                        if let Some(t) = cont_tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
                            let _ = t.send(());
                        }
                    }
                });
            }
            let fut = self.put_client.client.request(req);
            let mut handle = tokio::spawn(fut);
            let waited = tokio::time::timeout(timeouts.conn + timeouts.node, async {
                tokio::select! {
                    r = cont_rx, if !zero => match r {
                        Ok(()) => None,
                        // The sender went away: the request finished; look at it.
                        Err(_) => Some((&mut handle).await),
                    },
                    r = &mut handle => Some(r),
                }
            })
            .await;
            let finished = match waited {
                Err(_) => {
                    handle.abort();
                    self.limiter
                        .error_occurred(&node, "ERROR Expect: 100-continue timed out");
                    continue;
                }
                Ok(None) => {
                    return Some(Connected::Streaming(Putter {
                        node,
                        tx,
                        resp: handle,
                    }))
                }
                Ok(Some(r)) => r,
            };
            match finished {
                Ok(Ok(resp)) => {
                    let status = resp.status();
                    let early = zero
                        || status.is_success()
                        || status == StatusCode::CONFLICT
                        || status == StatusCode::UNPROCESSABLE_ENTITY
                        || (job.if_none_match_star && status == StatusCode::PRECONDITION_FAILED);
                    if !self.server_failed(&node, status, "Expect: 100-continue") && early {
                        return Some(Connected::Early(reply_of(status.as_u16(), resp.headers())));
                    }
                }
                Ok(Err(e)) => self
                    .limiter
                    .error_occurred(&node, &format!("ERROR connecting for PUT: {e}")),
                Err(e) => self
                    .limiter
                    .error_occurred(&node, &format!("ERROR PUT task failed: {e}")),
            }
        }
        None
    }

    /// Record a 507 (error-limits the node) or another 5xx of `node`; true if it was one
    /// (the slot moves on to the next node).
    fn server_failed(&self, node: &Node, status: StatusCode, when: &str) -> bool {
        server_failed(&self.limiter, node, status, when)
    }

    /// Store an object: see the module doc. `body` is the client's (or a copy source's).
    pub(crate) async fn put_object<B>(&self, job: PutJob<'_>, body: B) -> PutOutcome
    where
        B: hyper::body::Body<Data = Bytes, Error = io::Error> + Unpin,
    {
        if let Some(len) = job.content_length {
            if len > 0 && len <= SMALL_PUT_BYTES {
                return self.put_object_small(job, body, len).await;
            }
        }
        let n = job.headers.len();
        let pool = self.put_pool(&job);
        let connects = job
            .headers
            .iter()
            .map(|h| self.connect_put_node(&pool, &job, h));
        let mut putters = Vec::new();
        let mut early = Vec::new();
        for c in futures_util::future::join_all(connects)
            .await
            .into_iter()
            .flatten()
        {
            match c {
                Connected::Streaming(p) => putters.push(p),
                Connected::Early(r) => early.push(r),
            }
        }
        let abort_all = |putters: Vec<Putter>| {
            for p in putters {
                // Dropping an unfinished sender fails the body: the node never
                // commits a partial object.
                drop(p.tx);
                p.resp.abort();
            }
        };
        if job.if_none_match_star && early.iter().any(|r| r.status == 412) {
            abort_all(putters);
            return PutOutcome::status(StatusCode::PRECONDITION_FAILED);
        }
        if early.iter().any(|r| r.status == 409) {
            abort_all(putters);
            return PutOutcome::status(StatusCode::ACCEPTED);
        }
        let early_ok = early
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .count();
        if putters.len() + early_ok < job.quorum {
            tracing::error!(
                connected = putters.len(),
                required = job.quorum,
                "Object PUT returning 503: too few connections"
            );
            abort_all(putters);
            return PutOutcome::status(StatusCode::SERVICE_UNAVAILABLE);
        }
        // Stream the body.
        let node_timeout = self.put_client.timeouts.node;
        let mut body = body;
        let mut total: u64 = 0;
        if job.content_length != Some(0) {
            loop {
                let frame = match body.frame().await {
                    None => break,
                    Some(Ok(f)) => f,
                    Some(Err(e)) => {
                        abort_all(putters);
                        return client_body_error(&e);
                    }
                };
                let Ok(chunk) = frame.into_data() else {
                    continue;
                };
                if chunk.is_empty() {
                    continue;
                }
                total += chunk.len() as u64;
                if total > job.max_size {
                    abort_all(putters);
                    return PutOutcome::msg(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "Your request is too large.",
                    );
                }
                if job.content_length.is_some_and(|cl| total > cl) {
                    abort_all(putters);
                    return PutOutcome::status(StatusCode::BAD_REQUEST);
                }
                let sends = putters.iter().map(|p| {
                    let chunk = chunk.clone();
                    async move {
                        match &p.tx {
                            Some(tx) => matches!(
                                tokio::time::timeout(node_timeout, tx.send(chunk)).await,
                                Ok(Ok(()))
                            ),
                            None => false,
                        }
                    }
                });
                let ok = futures_util::future::join_all(sends).await;
                let mut kept = Vec::with_capacity(putters.len());
                for (p, ok) in putters.into_iter().zip(ok) {
                    if ok {
                        kept.push(p);
                    } else {
                        self.limiter.error_occurred(
                            &p.node,
                            "ERROR sending object data (node gone or slow)",
                        );
                        p.resp.abort();
                    }
                }
                putters = kept;
                if putters.len() + early_ok < job.quorum {
                    tracing::error!(
                        connected = putters.len(),
                        required = job.quorum,
                        "Object PUT exceptions during send"
                    );
                    abort_all(putters);
                    return PutOutcome::status(StatusCode::SERVICE_UNAVAILABLE);
                }
            }
            if job.content_length.is_some_and(|cl| total < cl) {
                abort_all(putters);
                return PutOutcome::status(
                    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                );
            }
        }
        // End the bodies and collect the answers.
        let mut futs: FuturesUnordered<_> = putters
            .into_iter()
            .map(|mut p| async move {
                if let Some(tx) = p.tx.take() {
                    tx.finish();
                }
                let got = tokio::time::timeout(node_timeout, &mut p.resp).await;
                match got {
                    Ok(Ok(Ok(resp))) => {
                        let status = resp.status().as_u16();
                        if status == 507 {
                            self.limiter
                                .error_limit(&p.node, "ERROR Insufficient Storage");
                        } else if status >= 500 {
                            self.limiter
                                .error_occurred(&p.node, &format!("ERROR {status} after PUT"));
                        }
                        reply_of(status, resp.headers())
                    }
                    Ok(Ok(Err(e))) => {
                        self.limiter
                            .error_occurred(&p.node, &format!("ERROR during PUT: {e}"));
                        Reply::unavailable()
                    }
                    Ok(Err(_)) => Reply::unavailable(),
                    Err(_) => {
                        p.resp.abort();
                        self.limiter
                            .error_occurred(&p.node, "ERROR PUT response timed out");
                        Reply::unavailable()
                    }
                }
            })
            .collect();
        let mut replies = early;
        while let Some(r) = futs.next().await {
            replies.push(r);
            let st: Vec<u16> = replies.iter().map(|r| r.status).collect();
            if have_quorum(&st, job.quorum) {
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
        self.conclude(replies, n, job.quorum)
    }

    /// The write nodes of `job` (primaries, then handoffs if allowed, in affinity order).
    fn put_pool(&self, job: &PutJob<'_>) -> NodePool {
        let n = job.headers.len();
        let nodes = self.write_nodes(job.ring, job.part, n, job.handoffs);
        let nodes = if job.handoffs {
            self.affinity.order_writes(nodes, n)
        } else {
            nodes
        };
        NodePool::new(nodes)
    }

    /// The best reply by quorum of `replies` (padded to `n` with 503s); 2xx answers must
    /// agree on the ETag.
    fn conclude(&self, mut replies: Vec<Reply>, n: usize, quorum: usize) -> PutOutcome {
        while replies.len() < n {
            replies.push(Reply::unavailable());
        }
        let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
        let Some(i) = best_index(&statuses, quorum) else {
            tracing::error!(?statuses, "Object PUT returning 503");
            return PutOutcome::status(StatusCode::SERVICE_UNAVAILABLE);
        };
        let best = &replies[i];
        let status = StatusCode::from_u16(best.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let etags: BTreeSet<String> = replies
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .filter_map(|r| crate::headers::get(&r.headers, "etag"))
            .map(|e| e.trim_matches('"').to_string())
            .collect();
        if status.is_success() && etags.len() > 1 {
            return PutOutcome::msg(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Object servers returned {} mismatched etags", etags.len()),
            );
        }
        PutOutcome {
            status,
            etag: etags.into_iter().next(),
            message: None,
        }
    }

    /// PUT of a small body with a known length (at most [`SMALL_PUT_BYTES`]): read the
    /// client's body whole first, then send each node one complete request without
    /// `Expect: 100-continue`. Waiting for three `100 Continue`s costs a round trip (and
    /// wake-ups on both sides) per PUT, which for small objects is a large share of the
    /// whole request; having the body in hand also lets a slot whose node fails (5xx, 507,
    /// unreachable, timed out) move on to a handoff with the full request. The object
    /// server checks for a newer write (409) after reading such a body, so a 409 or 412
    /// arrives as a final answer and is judged here like an early one in the streaming path.
    async fn put_object_small<B>(&self, job: PutJob<'_>, body: B, len: u64) -> PutOutcome
    where
        B: hyper::body::Body<Data = Bytes, Error = io::Error> + Unpin,
    {
        let mut body = body;
        let mut buf = bytes::BytesMut::with_capacity(len as usize);
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => return client_body_error(&e),
            };
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            let total = (buf.len() + chunk.len()) as u64;
            if total > job.max_size {
                return PutOutcome::msg(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Your request is too large.",
                );
            }
            if total > len {
                return PutOutcome::status(StatusCode::BAD_REQUEST);
            }
            buf.extend_from_slice(&chunk);
        }
        if (buf.len() as u64) < len {
            return PutOutcome::status(
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            );
        }
        let data = buf.freeze();
        let n = job.headers.len();
        let pool = Arc::new(self.put_pool(&job));
        let mut pending: FuturesUnordered<JoinHandle<Reply>> = job
            .headers
            .iter()
            .map(|headers| {
                let slot = SmallSlot {
                    client: self.put_client.clone(),
                    limiter: Arc::clone(&self.limiter),
                    pool: Arc::clone(&pool),
                    part: job.part,
                    target: [job.account, job.container, job.object].map(str::to_owned),
                    headers: headers.clone(),
                    data: data.clone(),
                };
                tokio::spawn(slot.run())
            })
            .collect();
        let replies = self.gather_small_replies(&mut pending, job.quorum).await;
        // Slots still working go on in their own tasks (dropping a JoinHandle detaches
        // it): a slow node may yet answer, or its slot move on to a handoff, so the copy
        // count holds without the client waiting for it.
        drop(pending);
        if job.if_none_match_star && replies.iter().any(|r| r.status == 412) {
            return PutOutcome::status(StatusCode::PRECONDITION_FAILED);
        }
        if replies.iter().any(|r| r.status == 409) {
            return PutOutcome::status(StatusCode::ACCEPTED);
        }
        self.conclude(replies, n, job.quorum)
    }

    /// Replies of the small PUT's slots as they finish, until a quorum of them agrees,
    /// then at most `post_quorum_timeout` more for the others (as the streaming path
    /// waits after the body). A slot whose task failed counts as unavailable.
    async fn gather_small_replies(
        &self,
        pending: &mut FuturesUnordered<JoinHandle<Reply>>,
        quorum: usize,
    ) -> Vec<Reply> {
        let mut replies: Vec<Reply> = Vec::new();
        let reply = |joined: Result<Reply, tokio::task::JoinError>| {
            joined.unwrap_or_else(|_| Reply::unavailable())
        };
        while let Some(joined) = pending.next().await {
            replies.push(reply(joined));
            let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
            if have_quorum(&statuses, quorum) {
                break;
            }
        }
        let rest = async {
            while let Some(joined) = pending.next().await {
                replies.push(reply(joined));
            }
        };
        let _ = tokio::time::timeout(self.post_quorum_timeout(), rest).await;
        replies
    }
}

/// Record a 507 (error-limits the node) or another 5xx of `node` in `limiter`; true if it
/// was one (the slot moves on to the next node).
fn server_failed(limiter: &ErrorLimiter, node: &Node, status: StatusCode, when: &str) -> bool {
    if status == StatusCode::INSUFFICIENT_STORAGE {
        limiter.error_limit(node, "ERROR Insufficient Storage");
        true
    } else if status.is_server_error() {
        limiter.error_occurred(node, &format!("ERROR {} {when}", status.as_u16()));
        true
    } else {
        false
    }
}

/// One slot of a small PUT, owned so that it can run on as a task of its own after the
/// client has its answer.
struct SmallSlot {
    client: PutClient,
    limiter: Arc<ErrorLimiter>,
    pool: Arc<NodePool>,
    part: u32,
    /// Account, container, object.
    target: [String; 3],
    headers: HeaderMap,
    data: Bytes,
}

impl SmallSlot {
    /// The whole request to the next node of the pool until one gives a final answer that
    /// is not a server error. Each attempt is bounded by conn_timeout + node_timeout (the
    /// streaming path's bound on waiting for `100 Continue`).
    async fn run(self) -> Reply {
        let timeouts = self.client.timeouts;
        let target = [&self.target[0], &self.target[1], &self.target[2]].map(String::as_str);
        while let Some(node) = self.pool.next_node() {
            let body = full(self.data.clone());
            let Some(mut req) = object_put_request(&node, self.part, target, &self.headers, body)
            else {
                continue;
            };
            req.headers_mut()
                .insert("content-length", HeaderValue::from(self.data.len()));
            let got = tokio::time::timeout(
                timeouts.conn + timeouts.node,
                self.client.client.request(req),
            )
            .await;
            match got {
                Ok(Ok(resp)) => {
                    let status = resp.status();
                    if !server_failed(&self.limiter, &node, status, "after PUT") {
                        return reply_of(status.as_u16(), resp.headers());
                    }
                }
                Ok(Err(e)) => self
                    .limiter
                    .error_occurred(&node, &format!("ERROR during PUT: {e}")),
                Err(_) => self
                    .limiter
                    .error_occurred(&node, "ERROR PUT response timed out"),
            }
        }
        Reply::unavailable()
    }
}

/// The answer when reading the client's body failed: 408 on a timeout, else 499.
fn client_body_error(e: &io::Error) -> PutOutcome {
    if e.kind() == io::ErrorKind::TimedOut {
        PutOutcome::status(StatusCode::REQUEST_TIMEOUT)
    } else {
        PutOutcome::status(StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST))
    }
}

/// Bodies up to this size with a known length take [`Proxy::put_object_small`] (the
/// object server reads such bodies whole too).
const SMALL_PUT_BYTES: u64 = 64 * 1024;
