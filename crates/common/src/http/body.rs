//! Body types shared by every server and the backend client.
//!
//! * [`Body`] is the one response (and backend request) body type: a boxed, streaming body
//!   of [`Bytes`] whose errors are [`io::Error`]. An error in the middle of a response makes
//!   hyper abort the connection, so a truncated body is never mistaken for a complete one.
//! * [`RequestBody`] is what a [`crate::http::Handler`] receives: the client's body (plain
//!   or `Transfer-Encoding: chunked`, decoded by hyper) with the server's `client_timeout`
//!   applied to every read and a byte counter for the access log. Tests build one from
//!   bytes with `RequestBody::from(..)`, so handlers can be unit-tested without sockets.
//! * [`TimeoutBody`] bounds the wait for each frame of any body (`client_timeout` on
//!   requests, `node_timeout` on backend responses), failing with `ErrorKind::TimedOut`.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tokio::sync::mpsc;
use tokio::time::Sleep;

/// The boxed, streaming body of every response and backend request.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// A body holding `data` in one frame (exact size hint: `Content-Length` is set for you).
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body with no data (`Content-Length: 0`).
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A `text/plain; charset=utf-8` response with `msg` as its whole body.
pub fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(full(msg.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// An `application/json; charset=utf-8` response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// A streaming body fed from a [`futures_util::Stream`] of chunks (chunked encoding on
/// the wire unless the response carries a `Content-Length`).
pub fn from_stream<S>(stream: S) -> Body
where
    S: Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
{
    StreamBody::new(stream.map(|r| r.map(Frame::data))).boxed_unsync()
}

/// A streaming body fed through a bounded channel: the producer (often a blocking disk
/// reader on `spawn_blocking`, using [`BodySender::blocking_send`]) pushes chunks; when
/// the sender is dropped the body ends. [`BodySender::abort`] ends the body with an error
/// so that the peer sees a broken transfer instead of a short, seemingly complete one.
pub fn channel(buffer: usize) -> (BodySender, Body) {
    let (tx, rx) = mpsc::channel(buffer.max(1));
    (BodySender { tx }, ChannelBody { rx }.boxed_unsync())
}

/// The producing half of [`channel`].
#[derive(Debug, Clone)]
pub struct BodySender {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
}

/// The consumer of a [`channel`] body went away (client disconnected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the body's receiver is gone")]
pub struct BodyClosed;

impl BodySender {
    /// Send one chunk, waiting for room in the channel.
    pub async fn send(&self, chunk: Bytes) -> Result<(), BodyClosed> {
        self.tx.send(Ok(chunk)).await.map_err(|_| BodyClosed)
    }

    /// Send one chunk from a blocking thread (never call on an async worker thread).
    pub fn blocking_send(&self, chunk: Bytes) -> Result<(), BodyClosed> {
        self.tx.blocking_send(Ok(chunk)).map_err(|_| BodyClosed)
    }

    /// End the body with an error (the connection is aborted).
    pub async fn abort(self, err: io::Error) {
        let _ = self.tx.send(Err(err)).await;
    }

    /// [`BodySender::abort`] from a blocking thread.
    pub fn blocking_abort(self, err: io::Error) {
        let _ = self.tx.blocking_send(Err(err));
    }

    /// Has the receiving side gone away?
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

/// Convert any boxed body error to an `io::Error`, keeping an inner `io::Error` as is.
pub fn to_io_error(err: Box<dyn StdError + Send + Sync>) -> io::Error {
    match err.downcast::<io::Error>() {
        Ok(e) => *e,
        Err(e) => io::Error::other(e),
    }
}

/// Wraps a body so that waiting longer than `timeout` for any one frame fails the body
/// with `ErrorKind::TimedOut`, and so that its errors are `io::Error`s.
pub struct TimeoutBody<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> TimeoutBody<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        TimeoutBody {
            inner,
            timeout,
            sleep: None,
        }
    }
}

impl<B> HttpBody for TimeoutBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.sleep = None;
                Poll::Ready(r.map(|r| r.map_err(|e| to_io_error(e.into()))))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.sleep = None;
                        Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "no data for {:.1}s while reading a body",
                                timeout.as_secs_f64()
                            ),
                        ))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body of a request as a [`crate::http::Handler`] sees it. Implements
/// [`hyper::body::Body`] (so `BodyExt::frame`, `collect`, … work) with `io::Error`
/// errors: `ErrorKind::TimedOut` when the client sent nothing for `client_timeout`
/// (answer 408), other kinds when the client went away (499 in logs).
pub struct RequestBody {
    inner: RequestInner,
    received: Arc<AtomicU64>,
}

enum RequestInner {
    Incoming(TimeoutBody<Incoming>),
    Boxed(Body),
}

impl RequestBody {
    /// The client's body as hyper hands it over, bounded by `client_timeout` per read.
    pub(crate) fn incoming(
        body: Incoming,
        client_timeout: Duration,
        received: Arc<AtomicU64>,
    ) -> Self {
        RequestBody {
            inner: RequestInner::Incoming(TimeoutBody::new(body, client_timeout)),
            received,
        }
    }

    /// An empty request body.
    pub fn empty() -> Self {
        Self::from(empty())
    }

    /// Bytes read from this body so far.
    pub fn bytes_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Turn into a [`Body`], e.g. to stream a client's upload on to a backend server.
    pub fn into_body(self) -> Body {
        self.boxed_unsync()
    }

    /// Read the whole body, refusing more than `limit` bytes (`ErrorKind::InvalidData`,
    /// answer 413). For small bodies only (REPLICATE, JSON RPCs); objects must stream.
    pub async fn collect_limited(self, limit: usize) -> io::Result<Bytes> {
        collect_limited(self, limit).await
    }
}

impl Default for RequestBody {
    fn default() -> Self {
        Self::empty()
    }
}

impl From<Body> for RequestBody {
    fn from(body: Body) -> Self {
        RequestBody {
            inner: RequestInner::Boxed(body),
            received: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl From<Bytes> for RequestBody {
    fn from(data: Bytes) -> Self {
        Self::from(full(data))
    }
}

impl From<&'static str> for RequestBody {
    fn from(data: &'static str) -> Self {
        Self::from(Bytes::from_static(data.as_bytes()))
    }
}

impl From<Vec<u8>> for RequestBody {
    fn from(data: Vec<u8>) -> Self {
        Self::from(Bytes::from(data))
    }
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            RequestInner::Incoming(b) => Pin::new(b).poll_frame(cx),
            RequestInner::Boxed(b) => Pin::new(b).poll_frame(cx),
        };
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.received
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            RequestInner::Incoming(b) => b.is_end_stream(),
            RequestInner::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            RequestInner::Incoming(b) => b.size_hint(),
            RequestInner::Boxed(b) => b.size_hint(),
        }
    }
}

/// Read a whole body into memory, failing with `ErrorKind::InvalidData` past `limit` bytes.
pub async fn collect_limited<B>(body: B, limit: usize) -> io::Result<Bytes>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| to_io_error(e.into()))?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("body larger than {limit} bytes"),
                ));
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn channel_body_streams_and_ends() {
        let (tx, body) = channel(2);
        tokio::spawn(async move {
            for i in 0..3 {
                tx.send(Bytes::from(format!("part{i};"))).await.unwrap();
            }
        });
        let got = collect_limited(body, 100).await.unwrap();
        assert_eq!(&got[..], b"part0;part1;part2;");
    }

    #[tokio::test]
    async fn channel_abort_is_an_error() {
        let (tx, body) = channel(1);
        tokio::spawn(async move {
            tx.send(Bytes::from_static(b"x")).await.unwrap();
            tx.abort(io::Error::other("disk died")).await;
        });
        assert!(collect_limited(body, 100).await.is_err());
    }

    #[tokio::test]
    async fn limit_and_request_body_counting() {
        let body = RequestBody::from("hello world");
        assert!(body.collect_limited(5).await.is_err());
        let mut body = RequestBody::from("hello");
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.data_ref().map(|d| d.len()), Some(5));
        assert_eq!(body.bytes_received(), 5);
    }

    #[tokio::test]
    async fn stream_body() {
        let s = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"a")),
            Ok(Bytes::from_static(b"b")),
        ]);
        assert_eq!(
            &collect_limited(from_stream(s), 10).await.unwrap()[..],
            b"ab"
        );
    }

    #[tokio::test]
    async fn timeout_body_times_out() {
        let (_tx, body) = channel(1);
        let body = TimeoutBody::new(body, Duration::from_millis(50));
        let err = collect_limited(body, 10).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
