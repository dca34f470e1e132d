//! Swift's FormPost middleware (`formpost.py`): a browser form `POST`ed as
//! `multipart/form-data` to `/v1/a/c[/prefix]` becomes one object PUT per file field,
//! named `prefix + filename`, when the form's `signature` is an HMAC, by a temp-URL key
//! of the account or the container, of `path\nredirect\nmax_file_size\nmax_file_count\n
//! expires`.
//!
//! The body is parsed as it arrives (multer) and each file streams straight into its PUT:
//! nothing buffers a whole file. Attributes must come before the files they apply to
//! (as in Swift); each value is read up to [`MAX_VALUE_LENGTH`] bytes. The answer is a
//! `303 See Other` to `redirect?status=…&message=…` when the form has a redirect, else
//! the last upload's status as a short text body.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyDataStream;
use serde_json::{json, Value};

use cairn_common::constraints::check_object_name;
use cairn_common::http::{collect_limited, decode_path, from_stream, full, quote, Body};

use crate::auth::{hv, Auth};
use crate::headers::error_with;
use crate::server::{Ctx, Proxy};
use crate::signature::{temp_url_keys, Signature};

/// The longest attribute value kept; the rest of a longer value is read and dropped.
pub const MAX_VALUE_LENGTH: usize = 4096;
/// The most of an upload's error body passed back to the client.
const MAX_SUB_BODY: usize = 64 * 1024;

/// The `/info` entry (Swift's `register_swift_info('formpost', …)`): the digests of
/// `[tempurl] allowed_digests`.
pub fn info(p: &Proxy) -> Value {
    json!({
        "allowed_digests": p.cfg.tempurl.allowed_digests,
        "deprecated_digests": crate::tempurl::deprecated_digests(p),
    })
}

/// Why a form was refused before (or instead of) an upload answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FormError {
    /// The body does not start with the boundary: 400.
    BadStart,
    /// A bad attribute or an oversized file: 400 `FormPost: <message>`.
    Invalid(String),
    /// Bad signature or expired form: 401 `FormPost: <Message In Title Case>`.
    Unauthorized(&'static str),
    /// The client stopped sending for `client_timeout`.
    Timeout,
}

impl FormError {
    fn into_response(self, ctx: &Ctx) -> Response<Body> {
        match self {
            FormError::BadStart => error_with(
                StatusCode::BAD_REQUEST,
                "FormPost: invalid starting boundary",
            ),
            FormError::Invalid(m) => error_with(StatusCode::BAD_REQUEST, format!("FormPost: {m}")),
            FormError::Unauthorized(m) => {
                let mut r = error_with(
                    StatusCode::UNAUTHORIZED,
                    format!("FormPost: {}", py_title(m)),
                );
                r.headers_mut().insert(
                    "www-authenticate",
                    hv(&format!("Swift realm=\"{}\"", ctx.account)),
                );
                r
            }
            FormError::Timeout => crate::headers::status_response(StatusCode::REQUEST_TIMEOUT),
        }
    }
}

/// Python's `str.title()`: upper-case the first letter of every run of letters.
fn py_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_word = false;
    for c in s.chars() {
        if c.is_alphabetic() {
            if in_word {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            in_word = true;
        } else {
            out.push(c);
            in_word = false;
        }
    }
    out
}

/// Swift's status line (`201 Created`), with swob's reason phrases where they differ.
fn status_line(s: StatusCode) -> String {
    let reason = match s.as_u16() {
        413 => "Request Entity Too Large",
        416 => "Requested Range Not Satisfiable",
        499 => "Client Disconnect",
        _ => s.canonical_reason().unwrap_or("Unknown"),
    };
    format!("{} {reason}", s.as_u16())
}

/// The boundary of a `multipart/form-data` POST: only such requests are forms.
pub fn form_boundary(method: &Method, content_type: Option<&str>) -> Option<String> {
    if method != Method::POST {
        return None;
    }
    let ct = content_type?;
    let kind = ct.split(';').next().unwrap_or("").trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    multer::parse_boundary(ct).ok()
}

/// Handle a form POST, or `None` when the request is not one.
pub(crate) async fn handle(p: &Proxy, ctx: &mut Ctx) -> Option<Response<Body>> {
    let boundary = form_boundary(&ctx.method, ctx.header("content-type"))?;
    Some(match translate(p, ctx, &boundary).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(ctx),
    })
}

/// The answer of the last upload.
struct Upload {
    status: StatusCode,
    body: Bytes,
}

/// Parse the form and upload its files, then answer like Swift's `_translate_form`.
async fn translate(p: &Proxy, ctx: &mut Ctx, boundary: &str) -> Result<Response<Body>, FormError> {
    let keys = form_keys(p, ctx).await;
    let input = FormInput::new(BodyDataStream::new(ctx.take_body()), boundary);
    let mut form = multer::Multipart::new(input, boundary);
    let mut attrs: HashMap<String, String> = HashMap::new();
    let mut last: Option<Upload> = None;
    let mut message = "";
    let mut file_count: i64 = 0;
    let mut started = false;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(parse_error(&e, started)),
        };
        started = true;
        let Some(filename) = field
            .file_name()
            .filter(|f| !f.is_empty())
            .map(str::to_string)
        else {
            let name = field.name().map(str::to_ascii_lowercase);
            let value = read_value(field).await?;
            if let Some(name) = name {
                attrs.insert(name, value);
            }
            continue;
        };
        file_count += 1;
        if file_count > int_attr(&attrs, "max_file_count", "max_file_count not an integer")? {
            last = Some(Upload {
                status: StatusCode::BAD_REQUEST,
                body: last.map(|u| u.body).unwrap_or_default(),
            });
            message = "max file count exceeded";
            break;
        }
        let file = file_attributes(&attrs, field.headers(), filename);
        let upload = upload(p, ctx, &keys, &file, field).await?;
        let ok = upload.status.is_success();
        last = Some(upload);
        if !ok {
            break;
        }
    }
    let last = last.unwrap_or_else(|| {
        message = "no files to process";
        Upload {
            status: StatusCode::BAD_REQUEST,
            body: Bytes::new(),
        }
    });
    Ok(answer(
        &last,
        message,
        attrs.get("redirect").map(String::as_str),
    ))
}

/// A multer error: before the first part it means the body is not this form.
fn parse_error(e: &multer::Error, started: bool) -> FormError {
    if let multer::Error::StreamReadFailed(inner) = e {
        if let Some(io) = inner.downcast_ref::<io::Error>() {
            if io.get_ref().is_some_and(|x| x.is::<BadStartingBoundary>()) {
                return FormError::BadStart;
            }
            if io.kind() == io::ErrorKind::TimedOut {
                return FormError::Timeout;
            }
        }
    }
    if started {
        FormError::Invalid(format!("invalid form data ({e})"))
    } else {
        FormError::BadStart
    }
}

/// The temp-URL keys that may sign a form to this path (none unless it names a
/// container, as Swift's `_get_keys`).
async fn form_keys(p: &Proxy, ctx: &Ctx) -> Vec<String> {
    let Some(c) = ctx.container.as_deref() else {
        return Vec::new();
    };
    let account = p.account_info(ctx, &ctx.account).await;
    let container = p.container_info(ctx, &ctx.account, c).await;
    temp_url_keys(&account, &container)
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// An attribute's value: at most [`MAX_VALUE_LENGTH`] bytes kept, the rest drained.
async fn read_value(mut field: multer::Field<'static>) -> Result<String, FormError> {
    let mut data = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| parse_error(&e, true))?;
        let room = MAX_VALUE_LENGTH.saturating_sub(data.len());
        data.extend_from_slice(&chunk[..room.min(chunk.len())]);
    }
    // Swift strips trailing CR, LF and '-' (its parser may leave them); signatures are
    // computed over the stripped value, so do the same.
    Ok(String::from_utf8_lossy(&data)
        .trim_end_matches(['\r', '\n', '-'])
        .to_string())
}

/// Python's `int(attributes.get(name) or 0)`, or the form's 400.
fn int_attr(attrs: &HashMap<String, String>, name: &str, err: &str) -> Result<i64, FormError> {
    match attrs.get(name).map(String::as_str) {
        None | Some("") => Ok(0),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| FormError::Invalid(err.to_string())),
    }
}

/// One file's attributes: the form's, its name, and its part's content type and
/// encoding unless the form set them.
fn file_attributes(
    attrs: &HashMap<String, String>,
    part: &HeaderMap,
    filename: String,
) -> HashMap<String, String> {
    let mut file = attrs.clone();
    file.insert("filename".into(), filename);
    let part_header = |n: &str| {
        part.get(n)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    if !attrs.contains_key("content-type") {
        if let Some(ct) = part_header("content-type") {
            let ct = if ct.is_empty() {
                "application/octet-stream".to_string()
            } else {
                ct
            };
            file.insert("content-type".into(), ct);
        }
    }
    if !attrs.contains_key("content-encoding") {
        if let Some(ce) = part_header("content-encoding") {
            file.insert("content-encoding".into(), ce);
        }
    }
    file
}

/// The headers of one file's PUT (Swift's `_perform_subrequest`), or the form's 400.
fn upload_headers(ctx: &Ctx, file: &HashMap<String, String>) -> Result<HeaderMap, FormError> {
    let mut h = HeaderMap::new();
    // A fresh request, as Swift's pre-authed sub-request: only these client headers.
    for name in ["host", "user-agent", "referer", "origin"] {
        if let Some(v) = ctx.headers.get(name) {
            h.insert(name, v.clone());
        }
    }
    h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    for (attr, header, err) in [
        (
            "x_delete_at",
            "x-delete-at",
            "x_delete_at not an integer: Unix timestamp required.",
        ),
        (
            "x_delete_after",
            "x-delete-after",
            "x_delete_after not an integer: Number of seconds required.",
        ),
    ] {
        if let Some(v) = file.get(attr) {
            let n: i64 = v
                .trim()
                .parse()
                .map_err(|_| FormError::Invalid(err.to_string()))?;
            h.insert(header, HeaderValue::from(n));
        }
    }
    if let Some(ct) = file.get("content-type") {
        let ct = if ct.is_empty() {
            "application/octet-stream"
        } else {
            ct
        };
        h.insert("content-type", hv(ct));
    }
    if let Some(ce) = file.get("content-encoding") {
        h.insert("content-encoding", hv(ce));
    }
    Ok(h)
}

/// Check the form's expiry and signature (Swift checks them at each file).
fn check_signature(
    p: &Proxy,
    ctx: &Ctx,
    keys: &[String],
    file: &HashMap<String, String>,
) -> Result<(), FormError> {
    let attr = |n: &str| file.get(n).map(String::as_str).filter(|v| !v.is_empty());
    let expires = int_attr(file, "expires", "expired not an integer")?;
    if (expires as f64) < now_f64() {
        return Err(FormError::Unauthorized("form expired"));
    }
    let invalid = FormError::Unauthorized("invalid signature");
    // The signed path is the request's path as the client wrote it, percent-decoded.
    let path = decode_path(&ctx.raw_path).map_err(|_| invalid.clone())?;
    let msg = format!(
        "{path}\n{}\n{}\n{}\n{}",
        attr("redirect").unwrap_or(""),
        attr("max_file_size").unwrap_or("0"),
        attr("max_file_count").unwrap_or("0"),
        attr("expires").unwrap_or("0"),
    );
    let sig = Signature::parse(file.get("signature").map(String::as_str).unwrap_or(""))
        .filter(|s| crate::tempurl::digest_allowed(p, s.digest.name()))
        .ok_or_else(|| invalid.clone())?;
    if keys
        .iter()
        .any(|k| sig.verifies(k.as_bytes(), msg.as_bytes()))
    {
        Ok(())
    } else {
        Err(invalid)
    }
}

fn now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The object a file is stored as: the form's path (a `/` added after a bare container)
/// plus the file name.
fn object_name(ctx: &Ctx, filename: &str) -> String {
    format!("{}{filename}", ctx.object.as_deref().unwrap_or(""))
}

/// PUT one file, its body streamed from the form and cut at `max_file_size`.
async fn upload(
    p: &Proxy,
    ctx: &Ctx,
    keys: &[String],
    file: &HashMap<String, String>,
    field: multer::Field<'static>,
) -> Result<Upload, FormError> {
    if keys.is_empty() {
        return Err(FormError::Unauthorized("invalid signature"));
    }
    let max_size = int_attr(file, "max_file_size", "max_file_size not an integer")?;
    let headers = upload_headers(ctx, file)?;
    check_signature(p, ctx, keys, file)?;
    let filename = file
        .get("filename")
        .map(String::as_str)
        .unwrap_or("filename");
    let object = object_name(ctx, filename);
    if let Err(e) = check_object_name(&object, p.constraints()) {
        return Ok(Upload {
            status: StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            body: Bytes::from(e.message),
        });
    }
    let exceeded = Arc::new(AtomicBool::new(false));
    let body = capped_body(field, max_size, exceeded.clone());
    let mut sub = ctx.sub();
    sub.method = Method::PUT;
    sub.query = None;
    sub.headers = headers;
    sub.raw_path = format!(
        "/{}/{}/{}/{}",
        sub.version,
        quote(&sub.account),
        quote(sub.container.as_deref().unwrap_or("")),
        quote(&object)
    );
    sub.object = Some(object);
    sub.auth = Auth::TempUrl {
        account: ctx.account.clone(),
        container: ctx.container.clone(),
    };
    *sub.body.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(body.into());
    let resp = crate::object::handle(p, &mut sub).await;
    // The sub-request holds the file's part: let go of it before the next part is read.
    drop(sub);
    if exceeded.load(Ordering::SeqCst) {
        return Err(FormError::Invalid("max_file_size exceeded".into()));
    }
    let status = resp.status();
    let body = collect_limited(resp.into_body(), MAX_SUB_BODY)
        .await
        .unwrap_or_default();
    Ok(Upload { status, body })
}

/// A file part as a PUT body that fails (and raises `exceeded`) past `max` bytes.
fn capped_body(field: multer::Field<'static>, max: i64, exceeded: Arc<AtomicBool>) -> Body {
    let mut seen: u64 = 0;
    from_stream(field.map(move |chunk| {
        let chunk = chunk.map_err(field_io_error)?;
        seen += chunk.len() as u64;
        if i128::from(seen) > i128::from(max) {
            exceeded.store(true, Ordering::SeqCst);
            return Err(io::Error::other("max_file_size exceeded"));
        }
        Ok(chunk)
    }))
}

/// A multer error as the `io::Error` a PUT body reports (timeouts stay timeouts, so the
/// PUT answers 408 rather than 499).
fn field_io_error(e: multer::Error) -> io::Error {
    if let multer::Error::StreamReadFailed(inner) = &e {
        if let Some(io) = inner.downcast_ref::<io::Error>() {
            return io::Error::new(io.kind(), io.to_string());
        }
    }
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// The client's answer: a 303 to the form's redirect, or the last status as text.
fn answer(last: &Upload, message: &str, redirect: Option<&str>) -> Response<Body> {
    let Some(redirect) = redirect.filter(|r| !r.is_empty()) else {
        let mut body = Bytes::from(status_line(last.status));
        if !message.is_empty() {
            body = Bytes::from(format!(
                "{}\r\nFormPost: {}",
                status_line(last.status),
                py_title(message)
            ));
        }
        if !last.status.is_success() && !last.body.is_empty() {
            body = last.body.clone();
        }
        let mut r = error_with(last.status, "");
        *r.body_mut() = full(body);
        return r;
    };
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let location = format!(
        "{redirect}{sep}status={}&message={}",
        last.status.as_u16(),
        quote(message)
    );
    let body =
        format!("<html><body><p><a href=\"{location}\">Click to continue...</a></p></body></html>");
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut().insert("location", hv(&location));
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    r
}

/// The body does not start with its boundary (Swift's `MimeInvalid`).
#[derive(Debug)]
struct BadStartingBoundary;

impl std::fmt::Display for BadStartingBoundary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid starting boundary")
    }
}

impl std::error::Error for BadStartingBoundary {}

/// The form body as multer reads it, with two guards:
/// - the first line (after blank lines) must be the boundary, so a body that is not
///   this form is refused after a few bytes instead of being searched (and buffered)
///   to its end;
/// - one chunk per poll: multer's buffer takes every chunk that is ready whenever it is
///   polled, so a fast client could otherwise pile up data in memory while a file's PUT
///   waits on the storage nodes.
struct FormInput<S> {
    inner: S,
    /// The previous poll gave a chunk: give way once before reading another.
    gave: bool,
    /// Until the starting boundary is confirmed: `--boundary` and what came so far.
    start: Option<(Vec<u8>, BytesMut)>,
}

/// What the head of the body says so far.
enum Start {
    NeedMore,
    Good(Bytes),
    Bad,
}

impl<S> FormInput<S> {
    fn new(inner: S, boundary: &str) -> Self {
        FormInput {
            inner,
            gave: false,
            start: Some((format!("--{boundary}").into_bytes(), BytesMut::new())),
        }
    }
}

/// Look at the head of the body (Swift reads `len(--boundary) + 2` bytes or one line).
fn check_start(boundary: &[u8], head: &mut BytesMut) -> Start {
    while head.starts_with(b"\r\n") {
        head.advance(2);
    }
    let limit = boundary.len() + 2;
    let window = &head[..head.len().min(limit)];
    let line = match window.iter().position(|b| *b == b'\n') {
        Some(i) => &window[..=i],
        None if head.len() >= limit => window,
        None => return Start::NeedMore,
    };
    if line.trim_ascii() == boundary {
        Start::Good(head.split().freeze())
    } else {
        Start::Bad
    }
}

impl<S, E> Stream for FormInput<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.gave {
            this.gave = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        loop {
            let chunk = match this.inner.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(c))) => c,
                Poll::Ready(Some(Err(e))) => {
                    let e = e.into();
                    let e = match e.downcast::<io::Error>() {
                        Ok(io) => *io,
                        Err(other) => io::Error::other(other),
                    };
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            let chunk = match this.start.as_mut() {
                None => chunk,
                Some((boundary, head)) => {
                    head.extend_from_slice(&chunk);
                    match check_start(boundary, head) {
                        Start::NeedMore => continue,
                        Start::Bad => {
                            return Poll::Ready(Some(Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                BadStartingBoundary,
                            ))))
                        }
                        Start::Good(head) => {
                            this.start = None;
                            head
                        }
                    }
                }
            };
            this.gave = true;
            return Poll::Ready(Some(Ok(chunk)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A form body arriving in `parts`.
    fn input_of(
        parts: Vec<&'static [u8]>,
        boundary: &str,
    ) -> FormInput<impl Stream<Item = Result<Bytes, io::Error>> + Unpin> {
        FormInput::new(
            futures_util::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p)))),
            boundary,
        )
    }

    async fn collect(
        mut s: impl Stream<Item = Result<Bytes, io::Error>> + Unpin,
    ) -> Result<Vec<u8>, io::Error> {
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    #[test]
    fn boundaries_of_forms_only() {
        let post = Method::POST;
        assert_eq!(
            form_boundary(&post, Some("multipart/form-data; boundary=XyZ")).as_deref(),
            Some("XyZ")
        );
        assert_eq!(
            form_boundary(&post, Some("Multipart/Form-Data; boundary=\"a b\"")).as_deref(),
            Some("a b")
        );
        assert_eq!(form_boundary(&post, Some("multipart/form-data")), None);
        assert_eq!(
            form_boundary(&post, Some("multipart/mixed; boundary=x")),
            None
        );
        assert_eq!(form_boundary(&post, Some("text/plain")), None);
        assert_eq!(form_boundary(&post, None), None);
        assert_eq!(
            form_boundary(&Method::PUT, Some("multipart/form-data; boundary=x")),
            None
        );
    }

    #[tokio::test]
    async fn starting_boundary_is_checked_early() {
        // Split anywhere, blank lines first: fine.
        let ok = input_of(vec![b"\r\n\r", b"\n--b", b"nd\r\nrest"], "bnd");
        assert_eq!(collect(ok).await.unwrap(), b"--bnd\r\nrest");
        // Not the boundary: refused without reading further.
        let bad = input_of(vec![b"garbage garbage garbage", b"--bnd\r\n"], "bnd");
        let e = collect(bad).await.unwrap_err();
        assert!(e.get_ref().is_some_and(|x| x.is::<BadStartingBoundary>()));
        // A longer line that starts like the boundary is not it.
        let bad = input_of(vec![b"--bndX\r\n"], "bnd");
        assert!(collect(bad).await.is_err());
        // Too short a body just ends (multer then reports an incomplete stream).
        let short = input_of(vec![b"--b"], "bnd");
        assert_eq!(collect(short).await.unwrap(), b"");
    }

    #[tokio::test]
    async fn one_chunk_per_poll() {
        use std::future::poll_fn;
        let mut input = input_of(vec![b"--b\r\n", b"one", b"two"], "b");
        let mut pendings = 0;
        let mut chunks = Vec::new();
        loop {
            let got = poll_fn(|cx| match Pin::new(&mut input).poll_next(cx) {
                Poll::Pending => Poll::Ready(None),
                Poll::Ready(x) => Poll::Ready(Some(x)),
            })
            .await;
            match got {
                None => pendings += 1,
                Some(Some(c)) => chunks.push(c.unwrap()),
                Some(None) => break,
            }
        }
        assert_eq!(chunks, vec!["--b\r\n", "one", "two"]);
        assert_eq!(pendings, 3, "gives way after every chunk");
    }

    fn form(parts: &[(&str, Option<&str>, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, filename, value) in parts {
            body.extend_from_slice(b"--BOUND\r\n");
            match filename {
                Some(f) => body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                         Content-Type: text/plain\r\n\r\n"
                    )
                    .as_bytes(),
                ),
                None => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            body.extend_from_slice(value.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--BOUND--\r\n");
        body
    }

    #[tokio::test]
    async fn fields_and_long_values() {
        let long = "v".repeat(MAX_VALUE_LENGTH + 100);
        let body = form(&[
            ("Redirect", None, "http://x/done-\r\n"),
            ("big", None, &long),
            ("file1", Some("a.txt"), "hello"),
            ("empty", Some(""), ""),
        ]);
        let stream = futures_util::stream::iter(
            body.chunks(7)
                .map(|c| Ok::<_, io::Error>(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        let mut mp = multer::Multipart::new(FormInput::new(stream, "BOUND"), "BOUND");
        let f = mp.next_field().await.unwrap().unwrap();
        assert_eq!(f.name(), Some("Redirect"));
        assert_eq!(read_value(f).await.unwrap(), "http://x/done");
        let f = mp.next_field().await.unwrap().unwrap();
        assert_eq!(read_value(f).await.unwrap().len(), MAX_VALUE_LENGTH);
        let f = mp.next_field().await.unwrap().unwrap();
        assert_eq!(f.file_name(), Some("a.txt"));
        assert_eq!(f.headers()["content-type"], "text/plain");
        // An unread part is skipped by the next `next_field`.
        drop(f);
        let f = mp.next_field().await.unwrap().unwrap();
        assert_eq!(
            f.file_name(),
            Some(""),
            "an empty file input is an attribute"
        );
        drop(f);
        assert!(mp.next_field().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn capped_bodies() {
        let body = form(&[("file", Some("f"), "0123456789")]);
        for (max, ok) in [(10, true), (9, false), (-1, false)] {
            let stream =
                futures_util::stream::iter(vec![Ok::<_, io::Error>(Bytes::from(body.clone()))]);
            let mut mp = multer::Multipart::new(FormInput::new(stream, "BOUND"), "BOUND");
            let f = mp.next_field().await.unwrap().unwrap();
            let flag = Arc::new(AtomicBool::new(false));
            let got = capped_body(f, max, flag.clone()).collect().await;
            assert_eq!(got.is_ok(), ok, "max {max}");
            assert_eq!(flag.load(Ordering::SeqCst), !ok);
            if let Ok(c) = got {
                assert_eq!(c.to_bytes(), "0123456789");
            }
        }
    }

    #[test]
    fn attributes_and_headers() {
        let mut attrs = HashMap::new();
        attrs.insert("max_file_count".to_string(), " 3 ".to_string());
        attrs.insert("x_delete_after".to_string(), "60".to_string());
        assert_eq!(int_attr(&attrs, "max_file_count", "e"), Ok(3));
        assert_eq!(int_attr(&attrs, "missing", "e"), Ok(0));
        attrs.insert("bad".to_string(), "x".to_string());
        assert_eq!(
            int_attr(&attrs, "bad", "bad not an integer"),
            Err(FormError::Invalid("bad not an integer".into()))
        );
        let mut part = HeaderMap::new();
        part.insert("content-type", HeaderValue::from_static("image/png"));
        part.insert("content-encoding", HeaderValue::from_static("gzip"));
        let file = file_attributes(&attrs, &part, "p.png".into());
        assert_eq!(file["filename"], "p.png");
        assert_eq!(file["content-type"], "image/png");
        assert_eq!(file["content-encoding"], "gzip");
        attrs.insert("content-type".to_string(), "".to_string());
        let file = file_attributes(&attrs, &part, "p.png".into());
        assert_eq!(file["content-type"], "", "the form's value wins");
    }

    #[test]
    fn answers() {
        let created = Upload {
            status: StatusCode::CREATED,
            body: Bytes::new(),
        };
        let r = answer(&created, "", Some("http://x/after?a=1"));
        assert_eq!(r.status(), 303);
        assert_eq!(
            r.headers()["location"],
            "http://x/after?a=1&status=201&message="
        );
        let r = answer(&created, "", None);
        assert_eq!(r.status(), 201);
        let none = Upload {
            status: StatusCode::BAD_REQUEST,
            body: Bytes::new(),
        };
        let r = answer(&none, "no files to process", Some("http://x/"));
        assert_eq!(
            r.headers()["location"],
            "http://x/?status=400&message=no%20files%20to%20process"
        );
        assert_eq!(py_title("max_file_size exceeded"), "Max_File_Size Exceeded");
        assert_eq!(
            status_line(StatusCode::PAYLOAD_TOO_LARGE),
            "413 Request Entity Too Large"
        );
        assert_eq!(status_line(StatusCode::CREATED), "201 Created");
    }

    #[tokio::test]
    async fn answer_bodies() {
        let body = |r: Response<Body>| async move {
            String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
        };
        let none = Upload {
            status: StatusCode::BAD_REQUEST,
            body: Bytes::new(),
        };
        assert_eq!(
            body(answer(&none, "no files to process", None)).await,
            "400 Bad Request\r\nFormPost: No Files To Process"
        );
        let missing = Upload {
            status: StatusCode::NOT_FOUND,
            body: Bytes::from_static(b"The resource could not be found."),
        };
        assert_eq!(
            body(answer(&missing, "", None)).await,
            "The resource could not be found."
        );
        let created = Upload {
            status: StatusCode::CREATED,
            body: Bytes::new(),
        };
        assert_eq!(body(answer(&created, "", None)).await, "201 Created");
    }
}
