//! The HTTP/1.1 server runner every Cairn server uses.
//!
//! [`serve`] accepts connections on a listener and drives each with hyper (keep-alive on;
//! `Expect: 100-continue` is answered by hyper when the handler first polls the body;
//! chunked request bodies are decoded transparently; extension methods such as
//! `REPLICATE`, `SSYNC` or `COPY` reach the handler like any other). For every request it:
//!
//! * takes the transaction id from `X-Trans-Id` or makes one ([`new_trans_id`]) and puts a
//!   [`RequestInfo`] into the request's extensions;
//! * answers `/healthcheck`, `/metrics` and `/recon/*` itself when [`ServeOptions::ops`]
//!   is set, and otherwise calls the [`Handler`] (a panic becomes a 500);
//! * opens one tracing span `request` (method, path, txn, remote, then status, bytes_in,
//!   bytes_out, duration_ms) and logs one line when the response body is finished;
//! * counts the request in the metrics registry (by method and status) and its latency.
//!
//! When the `shutdown` future completes the runner stops accepting, lets in-flight
//! requests finish (idle keep-alive connections are closed at once) and aborts whatever is
//! still running after [`ServeOptions::drain_timeout`].

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{field, Instrument, Span};

use super::body::{text, Body, RequestBody};
use super::headers::{new_trans_id, valid_trans_id, X_TRANS_ID};
use crate::metrics::{self, CounterVec, Gauge, HistogramVec, Registry};
use crate::recon::Ops;

/// What a server does with a request. Implement it with an `async fn`:
///
/// ```text
/// impl Handler for ObjectServer {
///     async fn handle(&self, req: Request<RequestBody>) -> Response<Body> { … }
/// }
/// ```
///
/// The returned future must be `Send` (it runs on the multi-threaded runtime).
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request<RequestBody>) -> impl Future<Output = Response<Body>> + Send;
}

/// A [`Handler`] from an async closure (tests, small servers): see [`handler_fn`].
pub struct FnHandler<F>(F);

/// Wrap `f(req) -> impl Future<Output = Response<Body>>` as a [`Handler`].
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(Request<RequestBody>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    FnHandler(f)
}

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Request<RequestBody>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    fn handle(&self, req: Request<RequestBody>) -> impl Future<Output = Response<Body>> + Send {
        (self.0)(req)
    }
}

/// Per-request facts the runner puts into `Request::extensions()`.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// From `X-Trans-Id`, or generated; propagate it on backend requests.
    pub trans_id: String,
    pub remote: SocketAddr,
    pub start: Instant,
}

/// The transaction id of a request served by [`serve`] (empty for hand-built requests).
pub fn trans_id<B>(req: &Request<B>) -> &str {
    req.extensions()
        .get::<RequestInfo>()
        .map_or("", |i| i.trans_id.as_str())
}

/// How [`serve`] behaves.
#[derive(Clone)]
pub struct ServeOptions {
    /// The server's name (`object-server`, …): the `server` label of its metrics.
    pub name: String,
    /// Longest wait for request headers and for each chunk of a request body (Swift's
    /// `client_timeout`); a body read past it fails with `ErrorKind::TimedOut`.
    pub client_timeout: Duration,
    /// After shutdown is asked, how long in-flight requests may take before they are cut.
    pub drain_timeout: Duration,
    /// Where the request metrics go (and what `/metrics` renders).
    pub registry: Arc<Registry>,
    /// `/healthcheck`, `/metrics`, `/recon/*`; `None` leaves every path to the handler.
    pub ops: Option<Arc<Ops>>,
    /// Add `X-Trans-Id` to responses that lack it.
    pub echo_trans_id: bool,
    /// Most request headers accepted (more: hyper answers 431).
    pub max_headers: usize,
}

impl ServeOptions {
    /// Defaults: client_timeout 60 s, drain_timeout 30 s, the global registry, no ops,
    /// 256 headers at most.
    pub fn new(name: impl Into<String>) -> Self {
        ServeOptions {
            name: name.into(),
            client_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            registry: metrics::global(),
            ops: None,
            echo_trans_id: true,
            max_headers: 256,
        }
    }
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("name", &self.name)
            .field("client_timeout", &self.client_timeout)
            .field("drain_timeout", &self.drain_timeout)
            .field("ops", &self.ops.is_some())
            .field("echo_trans_id", &self.echo_trans_id)
            .finish()
    }
}

/// The request metrics the runner keeps.
struct HttpMetrics {
    requests: Arc<CounterVec>,
    latency: Arc<HistogramVec>,
    bytes: Arc<CounterVec>,
    in_flight: Arc<Gauge>,
    server: String,
}

impl HttpMetrics {
    fn new(r: &Registry, server: &str) -> Self {
        HttpMetrics {
            requests: r.counter_vec(
                "cairn_http_requests_total",
                "HTTP requests served, by server, method and status.",
                &["server", "method", "status"],
            ),
            latency: r.histogram_vec(
                "cairn_http_request_duration_seconds",
                "Time from request headers to the end of the response body.",
                &["server", "method"],
                metrics::DEFAULT_BUCKETS,
            ),
            bytes: r.counter_vec(
                "cairn_http_bytes_total",
                "Body bytes received (in) and sent (out).",
                &["server", "direction"],
            ),
            in_flight: r
                .gauge_vec(
                    "cairn_http_in_flight_requests",
                    "Requests being served.",
                    &["server"],
                )
                .with(&[server]),
            server: server.to_string(),
        }
    }
}

/// A bounded label for a method (clients may send anything).
fn method_label(m: &Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "POST" => "POST",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "COPY" => "COPY",
        "REPLICATE" => "REPLICATE",
        "SSYNC" => "SSYNC",
        "UPDATE" => "UPDATE",
        _ => "OTHER",
    }
}

/// Bind a listener (`SO_REUSEADDR` is set by tokio on Unix).
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

struct Shared<H> {
    handler: Arc<H>,
    opts: ServeOptions,
    metrics: HttpMetrics,
}

/// Serve `handler` on `listener` until `shutdown` completes, then drain (see module doc).
/// Returns once every connection is closed or the drain deadline has passed.
pub async fn serve<H, S>(
    listener: TcpListener,
    handler: Arc<H>,
    shutdown: S,
    opts: ServeOptions,
) -> io::Result<()>
where
    H: Handler,
    S: Future<Output = ()>,
{
    let metrics = HttpMetrics::new(&opts.registry, &opts.name);
    let shared = Arc::new(Shared {
        handler,
        opts,
        metrics,
    });
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(shared.opts.client_timeout)
        .max_headers(shared.opts.max_headers);
    let graceful = GracefulShutdown::new();
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(dispatch(shared, req, remote).await) }
                    });
                    let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
                    tasks.spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(%remote, error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(server = %shared.opts.name, open_connections = open, "shutting down: draining");
    let drain = async {
        graceful.shutdown().await;
        while tasks.join_next().await.is_some() {}
    };
    if tokio::time::timeout(shared.opts.drain_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(server = %shared.opts.name, "drain deadline passed: aborting remaining requests");
    }
    Ok(())
}

/// A server running on a background task (tests, in-process fakes of backend nodes).
/// Dropping the handle asks the server to stop; [`ServerHandle::shutdown`] also waits.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl ServerHandle {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting, drain (see [`serve`]) and wait for the server task to end.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.map_err(io::Error::other)?
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Bind `addr` (port 0 picks a free port) and [`serve`] on a spawned task.
pub async fn spawn_server<H: Handler>(
    addr: SocketAddr,
    handler: Arc<H>,
    opts: ServeOptions,
) -> io::Result<ServerHandle> {
    let listener = bind(addr).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = rx.await;
    };
    let task = tokio::spawn(serve(listener, handler, shutdown, opts));
    Ok(ServerHandle {
        addr,
        stop: Some(tx),
        task,
    })
}

async fn dispatch<H: Handler>(
    shared: Arc<Shared<H>>,
    req: Request<Incoming>,
    remote: SocketAddr,
) -> Response<LoggedBody> {
    let start = Instant::now();
    let trans_id = req
        .headers()
        .get(X_TRANS_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_trans_id(v))
        .map_or_else(new_trans_id, str::to_string);
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        method = %method,
        path = %req.uri().path(),
        txn = %trans_id,
        %remote,
        status = field::Empty,
        bytes_in = field::Empty,
        bytes_out = field::Empty,
        duration_ms = field::Empty,
    );
    let m = &shared.metrics;
    m.in_flight.inc();
    let received = Arc::new(AtomicU64::new(0));
    // Logs and counts the request even if the client goes away before the handler
    // answers (hyper then drops this future): status 499, as Swift logs it.
    let mut pending = PendingLog(Some(LogState {
        span: span.clone(),
        start,
        bytes_out: 0,
        received: received.clone(),
        status: 499,
        method: method_label(&method),
        shared: shared.clone() as Arc<dyn MetricsSink>,
    }));
    let (parts, incoming) = req.into_parts();
    let body = RequestBody::incoming(incoming, shared.opts.client_timeout, received.clone());
    let mut req = Request::from_parts(parts, body);
    req.extensions_mut().insert(RequestInfo {
        trans_id: trans_id.clone(),
        remote,
        start,
    });
    let handled = async {
        if let Some(ops) = &shared.opts.ops {
            if let Some(resp) = ops
                .handle(req.method(), req.uri().path(), &shared.opts.registry)
                .await
            {
                return resp;
            }
        }
        match AssertUnwindSafe(shared.handler.handle(req))
            .catch_unwind()
            .await
        {
            Ok(resp) => resp,
            Err(_) => {
                tracing::error!("handler panicked");
                text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        }
    }
    .instrument(span.clone())
    .await;
    let (mut parts, body) = handled.into_parts();
    if shared.opts.echo_trans_id && !parts.headers.contains_key(X_TRANS_ID) {
        if let Ok(v) = HeaderValue::from_str(&trans_id) {
            parts.headers.insert(X_TRANS_ID, v);
        }
    }
    let log = pending.0.take().map(|mut log| {
        log.status = parts.status.as_u16();
        log
    });
    Response::from_parts(parts, LoggedBody { inner: body, log })
}

/// The log record of a request whose response is not built yet.
struct PendingLog(Option<LogState>);

impl Drop for PendingLog {
    fn drop(&mut self) {
        if let Some(log) = self.0.take() {
            log.finish("disconnected");
        }
    }
}

/// Lets the logged body reach the metrics without knowing the handler type.
trait MetricsSink: Send + Sync {
    fn metrics(&self) -> &HttpMetrics;
}

impl<H: Handler> MetricsSink for Shared<H> {
    fn metrics(&self) -> &HttpMetrics {
        &self.metrics
    }
}

struct LogState {
    span: Span,
    start: Instant,
    bytes_out: u64,
    received: Arc<AtomicU64>,
    status: u16,
    method: &'static str,
    shared: Arc<dyn MetricsSink>,
}

impl LogState {
    /// Called once: at the end of the body, on a body error, or when hyper drops the body
    /// (client gone).
    fn finish(self, outcome: &str) {
        let elapsed = self.start.elapsed();
        let bytes_in = self.received.load(Ordering::Relaxed);
        let ms = elapsed.as_secs_f64() * 1000.0;
        self.span.record("status", self.status);
        self.span.record("bytes_in", bytes_in);
        self.span.record("bytes_out", self.bytes_out);
        self.span
            .record("duration_ms", (ms * 1000.0).round() / 1000.0);
        tracing::info!(parent: &self.span, outcome, "served");
        let m = self.shared.metrics();
        let status = self.status.to_string();
        m.requests.with(&[&m.server, self.method, &status]).inc();
        m.latency
            .with(&[&m.server, self.method])
            .observe(elapsed.as_secs_f64());
        m.bytes.with(&[&m.server, "in"]).inc_by(bytes_in);
        m.bytes.with(&[&m.server, "out"]).inc_by(self.bytes_out);
        m.in_flight.dec();
    }
}

/// The response body as sent: counts bytes and logs when finished.
struct LoggedBody {
    inner: Body,
    log: Option<LogState>,
}

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(log)) = (frame.data_ref(), this.log.as_mut()) {
                    log.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(log) = this.log.take() {
                    let _g = log.span.enter();
                    tracing::warn!(error = %e, "response body failed");
                    drop(_g);
                    log.finish("body-error");
                }
            }
            Poll::Ready(None) => {
                if let Some(log) = this.log.take() {
                    log.finish("ok");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            // HEAD responses and empty bodies may never be polled to the end.
            let done = self.inner.is_end_stream() || log.method == "HEAD";
            let outcome = if done { "ok" } else { "disconnected" };
            log.finish(outcome);
        }
    }
}
