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

use cairn_common::http::{empty, Body, Timeouts};
use cairn_ring::Ring;

use crate::backend::{node_path, Reply};
use crate::nodes::{Node, NodePool};
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
            let path = node_path(
                &node,
                job.part,
                job.account,
                Some(job.container),
                Some(job.object),
                None,
            );
            let zero = job.content_length == Some(0);
            let (tx, body) = if zero {
                (None, empty())
            } else {
                let (tx, body) = put_channel(4);
                (Some(tx), body)
            };
            let mut req = Request::new(body);
            *req.method_mut() = Method::PUT;
            let Ok(uri) = format!("http://{}{path}", node.authority()).parse() else {
                continue;
            };
            *req.uri_mut() = uri;
            *req.headers_mut() = headers.clone();
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
                    if status == StatusCode::INSUFFICIENT_STORAGE {
                        self.limiter
                            .error_limit(&node, "ERROR Insufficient Storage");
                    } else if status.is_server_error() {
                        self.limiter.error_occurred(
                            &node,
                            &format!("ERROR {} Expect: 100-continue", status.as_u16()),
                        );
                    } else if zero
                        || status.is_success()
                        || status == StatusCode::CONFLICT
                        || status == StatusCode::UNPROCESSABLE_ENTITY
                        || (job.if_none_match_star && status == StatusCode::PRECONDITION_FAILED)
                    {
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

    /// Store an object: see the module doc. `body` is the client's (or a copy source's).
    pub(crate) async fn put_object<B>(&self, job: PutJob<'_>, body: B) -> PutOutcome
    where
        B: hyper::body::Body<Data = Bytes, Error = io::Error> + Unpin,
    {
        let n = job.headers.len();
        let nodes = self.write_nodes(job.ring, job.part, n, job.handoffs);
        let nodes = if job.handoffs {
            self.affinity.order_writes(nodes, n)
        } else {
            nodes
        };
        let pool = NodePool::new(nodes);
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
                        return if e.kind() == io::ErrorKind::TimedOut {
                            PutOutcome::status(StatusCode::REQUEST_TIMEOUT)
                        } else {
                            PutOutcome::status(
                                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                            )
                        };
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
        while replies.len() < n {
            replies.push(Reply::unavailable());
        }
        let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
        let Some(i) = best_index(&statuses, job.quorum) else {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unfinished_uploads_fail() {
        let (tx, body) = put_channel(2);
        tx.send(Bytes::from_static(b"part")).await.unwrap();
        tx.finish();
        let got = cairn_common::http::collect_limited(body, 100)
            .await
            .unwrap();
        assert_eq!(&got[..], b"part");

        let (tx, body) = put_channel(2);
        tx.send(Bytes::from_static(b"part")).await.unwrap();
        drop(tx);
        assert!(cairn_common::http::collect_limited(body, 100)
            .await
            .is_err());
    }
}
