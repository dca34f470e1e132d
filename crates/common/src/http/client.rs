//! The pooled backend client: how proxies, replicators and updaters talk to storage
//! servers (`DESIGN.md`, "Every backend request has a connect timeout and a node timeout").
//!
//! One [`BackendClient`] per process (it is cheap to clone) keeps idle HTTP/1.1
//! connections per `ip:port`. Each request is bounded by `conn_timeout` for the TCP
//! connect (set on the connector) and `conn_timeout + node_timeout` until the response
//! headers arrive; every read of the response body is then bounded by `node_timeout`
//! (a stalled node fails with `ErrorKind::TimedOut` instead of hanging). Request bodies
//! stream (`Content-Length` is sent when the body's size is known, chunked otherwise).
//!
//! Not handled: waiting for `100 Continue` before sending the body (hyper's client sends
//! the body at once); a caller that needs it must open its own connection.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::{collect_limited, Body, TimeoutBody};

/// Connect and node timeouts of backend requests (`conn_timeout`, `node_timeout`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub conn: Duration,
    pub node: Duration,
}

impl Default for Timeouts {
    /// Swift's defaults: 0.5 s to connect, 10 s per node response.
    fn default() -> Self {
        Timeouts {
            conn: Duration::from_millis(500),
            node: Duration::from_secs(10),
        }
    }
}

/// Why a backend request failed (no response: count it as an error for the node).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {authority} timed out")]
    ConnectTimeout { authority: String },
    #[error("connect to {authority} failed: {message}")]
    Connect { authority: String, message: String },
    #[error("{authority} sent no response headers within {secs:.1}s")]
    Timeout { authority: String, secs: f64 },
    #[error("request to {authority} failed: {message}")]
    Http { authority: String, message: String },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl ClientError {
    /// Did the node fail to answer in time (connect or headers)?
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            ClientError::ConnectTimeout { .. } | ClientError::Timeout { .. }
        )
    }
}

/// A response from a backend server; `body` reads are bounded by the node timeout.
#[derive(Debug)]
pub struct BackendResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
}

impl BackendResponse {
    /// Read the whole body (at most `limit` bytes): small JSON answers, error bodies.
    pub async fn bytes(self, limit: usize) -> io::Result<Bytes> {
        collect_limited(self.body, limit).await
    }

    /// A header's value as `&str` (see [`super::header_str`]).
    pub fn header(&self, name: &str) -> Option<&str> {
        super::headers::header_str(&self.headers, name)
    }
}

/// `ip:port` as a URI authority (IPv6 addresses get brackets).
pub fn authority(ip: &str, port: u16) -> String {
    if ip.contains(':') && !ip.starts_with('[') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// A pooled HTTP/1.1 client for backend requests. Clones share the pool.
#[derive(Clone, Debug)]
pub struct BackendClient {
    client: Client<HttpConnector, Body>,
    timeouts: Timeouts,
}

impl BackendClient {
    /// A client whose requests use `timeouts` unless told otherwise.
    pub fn new(timeouts: Timeouts) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeouts.conn));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(32)
            .build(connector);
        BackendClient { client, timeouts }
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Send `method authority path` (path already quoted, e.g. by
    /// [`super::backend_path`], query included) with `headers` and a streaming `body`.
    pub async fn request(
        &self,
        method: Method,
        authority: &str,
        path: &str,
        headers: HeaderMap,
        body: Body,
    ) -> Result<BackendResponse, ClientError> {
        self.request_with_timeouts(method, authority, path, headers, body, self.timeouts)
            .await
    }

    /// [`BackendClient::request`] with other timeouts for this request (the TCP connect
    /// itself stays bounded by the client's `conn_timeout`).
    pub async fn request_with_timeouts(
        &self,
        method: Method,
        authority: &str,
        path: &str,
        headers: HeaderMap,
        body: Body,
        timeouts: Timeouts,
    ) -> Result<BackendResponse, ClientError> {
        let uri: Uri = format!("http://{authority}{path}")
            .parse()
            .map_err(|e| ClientError::InvalidRequest(format!("{authority}{path}: {e}")))?;
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        let deadline = timeouts.conn + timeouts.node;
        let resp = match tokio::time::timeout(deadline, self.client.request(req)).await {
            Err(_) => {
                return Err(ClientError::Timeout {
                    authority: authority.to_string(),
                    secs: deadline.as_secs_f64(),
                })
            }
            Ok(Err(e)) => return Err(classify(authority, e)),
            Ok(Ok(resp)) => resp,
        };
        let (parts, incoming) = resp.into_parts();
        Ok(BackendResponse {
            status: parts.status,
            headers: parts.headers,
            body: TimeoutBody::new(incoming, timeouts.node).boxed_unsync(),
        })
    }
}

fn classify(authority: &str, e: hyper_util::client::legacy::Error) -> ClientError {
    let authority = authority.to_string();
    let message = error_chain(&e);
    if e.is_connect() {
        if has_timed_out(&e) {
            ClientError::ConnectTimeout { authority }
        } else {
            ClientError::Connect { authority, message }
        }
    } else {
        ClientError::Http { authority, message }
    }
}

fn has_timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(err) = cur {
        parts.push(err.to_string());
        cur = err.source();
    }
    parts.join(": ")
}
