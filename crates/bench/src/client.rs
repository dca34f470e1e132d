//! The HTTP side: a pooled hyper client, TempAuth v1, a generated request body that
//! streams slices of one shared buffer, and one function per request kind that reads the
//! response fully and says how it went.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, ETAG};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use md5::{Digest, Md5};

/// Largest buffer the generated bodies are sliced from; bigger objects repeat it.
pub const MAX_CHUNK: usize = 1 << 20;

/// `X-Auth-Token`.
pub static X_AUTH_TOKEN: HeaderName = HeaderName::from_static("x-auth-token");
static X_AUTH_USER: HeaderName = HeaderName::from_static("x-auth-user");
static X_AUTH_KEY: HeaderName = HeaderName::from_static("x-auth-key");
static X_STORAGE_URL: HeaderName = HeaderName::from_static("x-storage-url");
static X_STORAGE_TOKEN: HeaderName = HeaderName::from_static("x-storage-token");

/// The client type: plain HTTP/1.1 with a keep-alive pool.
pub type HttpClient = Client<HttpConnector, GenBody>;

/// A client whose pool keeps up to `pool` idle connections per host.
pub fn new_client(pool: usize, timeout: Duration) -> HttpClient {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    conn.set_connect_timeout(Some(timeout));
    conn.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(pool)
        .pool_idle_timeout(Duration::from_secs(90))
        .build(conn)
}

/// A request body of `remaining` bytes made of slices of one shared buffer: no copy and
/// no allocation per request, whatever the object size.
pub struct GenBody {
    buf: Bytes,
    remaining: u64,
}

impl GenBody {
    /// An empty body.
    pub fn empty() -> GenBody {
        GenBody {
            buf: Bytes::new(),
            remaining: 0,
        }
    }

    /// `len` bytes cycled from `buf` (which must not be empty unless `len` is 0).
    pub fn new(buf: Bytes, len: u64) -> GenBody {
        let remaining = if buf.is_empty() { 0 } else { len };
        GenBody { buf, remaining }
    }
}

impl Body for GenBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = this
            .buf
            .len()
            .min(usize::try_from(this.remaining).unwrap_or(usize::MAX));
        this.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(this.buf.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// The shared body buffer: `min(size, MAX_CHUNK)` pseudo-random bytes (incompressible, so
/// that no layer can cheat), and the MD5 of a whole `size`-byte object built from it.
pub fn body_buffer(size: u64) -> (Bytes, String) {
    use rand::RngCore;
    let n = usize::try_from(size).unwrap_or(MAX_CHUNK).min(MAX_CHUNK);
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    let mut md5 = Md5::new();
    let mut left = size;
    while left > 0 {
        let k = (n as u64).min(left) as usize;
        md5.update(&v[..k]);
        left -= k as u64;
    }
    (Bytes::from(v), hex(&md5.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Where and as whom requests go: the storage URL (`http://host:port/v1/AUTH_x`, no
/// trailing slash) and the token header.
#[derive(Clone)]
pub struct Endpoint {
    /// Storage URL without a trailing slash.
    pub storage_url: String,
    /// `X-Auth-Token` value, if any.
    pub token: Option<HeaderValue>,
}

/// Check that `url` is an absolute `http://` URL; return it without trailing slashes.
pub fn check_url(what: &str, url: &str) -> Result<String, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("invalid {what} {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "invalid {what} {url:?}: https is not supported by cairn bench (use http)"
            ))
        }
        _ => {
            return Err(format!(
                "invalid {what} {url:?}: expected http://HOST[:PORT]/…"
            ))
        }
    }
    if uri.authority().is_none() {
        return Err(format!("invalid {what} {url:?}: no host"));
    }
    if uri.query().is_some() {
        return Err(format!("invalid {what} {url:?}: unexpected query string"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// TempAuth v1: `GET auth_url` with `X-Auth-User`/`X-Auth-Key`; returns the endpoint from
/// `X-Storage-Url` and `X-Auth-Token` (or `X-Storage-Token`).
pub async fn tempauth(
    client: &HttpClient,
    auth_url: &str,
    user: &str,
    key: &str,
    timeout: Duration,
) -> Result<Endpoint, String> {
    let header = |name: &str, v: &str| {
        HeaderValue::from_str(v).map_err(|_| format!("{name} contains characters not allowed"))
    };
    let req = Request::get(auth_url)
        .header(&X_AUTH_USER, header("user", user)?)
        .header(&X_AUTH_KEY, header("key", key)?)
        .body(GenBody::empty())
        .map_err(|e| format!("invalid auth URL {auth_url:?}: {e}"))?;
    let resp = tokio::time::timeout(timeout, client.request(req))
        .await
        .map_err(|_| format!("auth request to {auth_url} timed out"))?
        .map_err(|e| format!("auth request to {auth_url} failed: {}", error_chain(&e)))?;
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    // Drain the body so the connection can be reused; its content does not matter.
    let _ = tokio::time::timeout(timeout, body.collect()).await;
    if !status.is_success() {
        return Err(format!("auth failed: {auth_url} answered {status}"));
    }
    let storage_url = parts
        .headers
        .get(&X_STORAGE_URL)
        .and_then(|v| v.to_str().ok())
        .ok_or("auth failed: no X-Storage-Url in the response")?;
    let token = parts
        .headers
        .get(&X_AUTH_TOKEN)
        .or_else(|| parts.headers.get(&X_STORAGE_TOKEN))
        .ok_or("auth failed: no X-Auth-Token in the response")?;
    let storage_url = check_url("X-Storage-Url from auth", storage_url)
        .map_err(|e| format!("auth failed: {e}"))?;
    Ok(Endpoint {
        storage_url,
        token: Some(token.clone()),
    })
}

/// The text of an error and its sources, on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// How one request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx, body read: the status and the body bytes moved.
    Ok(StatusCode, u64),
    /// A non-2xx status (body drained).
    Status(StatusCode),
    /// A client-side failure.
    Failed(Failure),
}

/// Client-side failures, named in the error table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Could not connect.
    Connect,
    /// The whole request (head and body) took longer than `--timeout`.
    Timeout,
    /// The request failed after connecting (reset, bad response).
    Request,
    /// The response body broke off.
    Body,
    /// `--verify`: the ETag did not match the data.
    Etag,
    /// The request could not be built (a name that is not a valid URI).
    Build,
}

impl Failure {
    /// The name used in the error table.
    pub fn name(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Request => "request",
            Failure::Body => "body",
            Failure::Etag => "etag",
            Failure::Build => "bad-uri",
        }
    }

    /// A few words for people.
    pub fn describe(self) -> &'static str {
        match self {
            Failure::Connect => "cannot connect",
            Failure::Timeout => "timed out",
            Failure::Request => "the request failed",
            Failure::Body => "the response body broke off",
            Failure::Etag => "ETag mismatch",
            Failure::Build => "not a valid URI",
        }
    }
}

/// One request of a workload, ready to send.
pub struct Call<'a> {
    /// Method.
    pub method: Method,
    /// Absolute URI.
    pub uri: String,
    /// Body to send (PUT) or empty.
    pub body: GenBody,
    /// `Content-Length` to send, for PUT.
    pub content_length: Option<&'a HeaderValue>,
    /// `ETag` to send (a PUT with `--verify`: the server checks the body against it).
    pub send_etag: Option<&'a HeaderValue>,
    /// `--verify`: the expected ETag of a PUT response or a GET body, or `Some("")` to
    /// check a GET body against the ETag the server returned.
    pub verify: Option<&'a str>,
}

/// Send one request and read its response fully, counting body bytes (and checking the
/// MD5 when asked). Never panics on what the network returns.
pub async fn send(
    client: &HttpClient,
    ep: &Endpoint,
    call: Call<'_>,
    timeout: Duration,
) -> Outcome {
    match tokio::time::timeout(timeout, send_inner(client, ep, call)).await {
        Ok(o) => o,
        Err(_) => Outcome::Failed(Failure::Timeout),
    }
}

async fn send_inner(client: &HttpClient, ep: &Endpoint, call: Call<'_>) -> Outcome {
    let sent = call.body.remaining;
    let is_head = call.method == Method::HEAD;
    let mut b = Request::builder().method(call.method).uri(call.uri);
    if let Some(t) = &ep.token {
        b = b.header(&X_AUTH_TOKEN, t.clone());
    }
    if let Some(cl) = call.content_length {
        b = b.header(CONTENT_LENGTH, cl.clone());
    }
    if let Some(etag) = call.send_etag {
        b = b.header(ETAG, etag.clone());
    }
    let req = match b.body(call.body) {
        Ok(r) => r,
        Err(_) => return Outcome::Failed(Failure::Build),
    };
    let resp = match client.request(req).await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Outcome::Failed(Failure::Connect),
        Err(_) => return Outcome::Failed(Failure::Request),
    };
    let status = resp.status();
    let (parts, mut body) = resp.into_parts();
    let mut md5 = match (call.verify, status.is_success(), is_head, sent) {
        (Some(_), true, false, 0) => Some(Md5::new()),
        _ => None,
    };
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    received += d.len() as u64;
                    if let Some(m) = md5.as_mut() {
                        m.update(d);
                    }
                }
            }
            Err(_) => return Outcome::Failed(Failure::Body),
        }
    }
    if !status.is_success() {
        return Outcome::Status(status);
    }
    if let Some(expected) = call.verify {
        let got = parts
            .headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim_matches('"'));
        let good = match md5 {
            // GET: the body's MD5 must match the ETag header, and the expected one.
            Some(m) => {
                let actual = hex(&m.finalize());
                got == Some(actual.as_str()) && (expected.is_empty() || expected == actual)
            }
            // PUT: the returned ETag must be ours. HEAD, DELETE: nothing to check.
            None if sent > 0 => got == Some(expected),
            None => true,
        };
        if !good {
            return Outcome::Failed(Failure::Etag);
        }
    }
    Outcome::Ok(status, if sent > 0 { sent } else { received })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_body_is_exact_and_cycles() {
        let buf = Bytes::from_static(b"abc");
        let mut body = GenBody::new(buf, 7);
        assert_eq!(body.size_hint().exact(), Some(7));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        while let Poll::Ready(Some(Ok(f))) = Pin::new(&mut body).poll_frame(&mut cx) {
            out.extend_from_slice(f.data_ref().unwrap());
        }
        assert_eq!(out, b"abcabca");
        assert!(body.is_end_stream());
    }

    #[test]
    fn buffer_md5_covers_the_whole_object() {
        let (buf, md5) = body_buffer(10);
        assert_eq!(buf.len(), 10);
        assert_eq!(md5, hex(&Md5::digest(&buf)));
        let (buf, md5) = body_buffer(MAX_CHUNK as u64 + 5);
        assert_eq!(buf.len(), MAX_CHUNK);
        let mut whole = buf.to_vec();
        whole.extend_from_slice(&buf[..5]);
        assert_eq!(md5, hex(&Md5::digest(&whole)));
        let (buf, md5) = body_buffer(0);
        assert!(buf.is_empty());
        assert_eq!(md5, "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn urls() {
        assert_eq!(
            check_url("URL", "http://127.0.0.1:8080/v1/AUTH_test/").unwrap(),
            "http://127.0.0.1:8080/v1/AUTH_test"
        );
        assert!(check_url("URL", "https://x/v1/AUTH_a").is_err());
        assert!(check_url("URL", "ftp://x/").is_err());
        assert!(check_url("URL", "/v1/AUTH_a").is_err());
        assert!(check_url("URL", "http://x/v1?x=1").is_err());
        assert!(check_url("URL", "not a url").is_err());
    }
}
