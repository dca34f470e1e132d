//! Server and client round trips over real sockets on 127.0.0.1.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::metrics::Registry;
use crate::recon::{Ops, OpsConfig};

struct Running {
    addr: SocketAddr,
    authority: String,
    handle: ServerHandle,
    registry: Arc<Registry>,
}

impl Running {
    async fn shutdown(self) -> Duration {
        let t = Instant::now();
        tokio::time::timeout(Duration::from_secs(10), self.handle.shutdown())
            .await
            .expect("server did not stop")
            .unwrap();
        t.elapsed()
    }
}

async fn start<H: Handler>(handler: H, tweak: impl FnOnce(&mut ServeOptions)) -> Running {
    let registry = Arc::new(Registry::default());
    let mut opts = ServeOptions::new("test-server");
    opts.registry = registry.clone();
    opts.drain_timeout = Duration::from_secs(5);
    tweak(&mut opts);
    let handle = spawn_server("127.0.0.1:0".parse().unwrap(), Arc::new(handler), opts)
        .await
        .unwrap();
    Running {
        addr: handle.addr(),
        authority: handle.addr().to_string(),
        handle,
        registry,
    }
}

/// Echoes: method, path, trans id, remote port, body length; streams the body back in
/// three chunks through a channel for `GET /stream`.
async fn echo(req: Request<RequestBody>) -> Response<Body> {
    if req.uri().path() == "/stream" {
        let (tx, body) = channel(1);
        tokio::spawn(async move {
            for i in 0..3 {
                if tx.send(Bytes::from(format!("chunk{i}\n"))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        return Response::new(body);
    }
    if req.uri().path() == "/panic" {
        panic!("handler bug");
    }
    if let Some(ms) = req.uri().path().strip_prefix("/sleep/") {
        let ms: u64 = ms.parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return text(StatusCode::OK, "slept");
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let txn = trans_id(&req).to_string();
    let port = req
        .extensions()
        .get::<RequestInfo>()
        .map_or(0, |i| i.remote.port());
    let chunked = req
        .headers()
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked");
    let body = match req.into_body().collect_limited(1 << 20).await {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            return text(StatusCode::REQUEST_TIMEOUT, "timeout")
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let status = if method == Method::PUT {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = text(
        status,
        format!(
            "{method} {path} {} chunked={chunked} port={port} sum={}",
            body.len(),
            body.iter().map(|b| *b as u64).sum::<u64>()
        ),
    );
    resp.headers_mut()
        .insert("x-seen-txn", HeaderValue::from_str(&txn).unwrap());
    resp
}

fn client() -> BackendClient {
    BackendClient::new(Timeouts {
        conn: Duration::from_millis(500),
        node: Duration::from_secs(5),
    })
}

async fn body_string(resp: BackendResponse) -> String {
    String::from_utf8(resp.bytes(1 << 20).await.unwrap().to_vec()).unwrap()
}

#[tokio::test]
async fn round_trip_chunked_upload_streamed_response_and_keep_alive() {
    let srv = start(handler_fn(echo), |_| {}).await;
    let c = client();

    // A chunked upload: a channel body has no known size.
    let (tx, body) = channel(2);
    tokio::spawn(async move {
        for _ in 0..4 {
            tx.send(Bytes::from(vec![1u8; 1000])).await.unwrap();
        }
    });
    let mut headers = HeaderMap::new();
    headers.insert("x-trans-id", HeaderValue::from_static("tx-given-1"));
    let resp = c
        .request(
            Method::PUT,
            &srv.authority,
            "/sda/1/a/c/o%20x",
            headers,
            body,
        )
        .await
        .unwrap();
    assert_eq!(resp.status, StatusCode::CREATED);
    assert_eq!(resp.header("x-trans-id"), Some("tx-given-1"));
    assert_eq!(resp.header("x-seen-txn"), Some("tx-given-1"));
    let text1 = body_string(resp).await;
    assert!(
        text1.starts_with("PUT /sda/1/a/c/o%20x 4000 chunked=true"),
        "{text1}"
    );
    assert!(text1.contains("sum=4000"), "{text1}");

    // A sized upload on the same pooled connection (same client port), fresh trans id.
    let resp = c
        .request(
            Method::POST,
            &srv.authority,
            "/x",
            HeaderMap::new(),
            full("abc"),
        )
        .await
        .unwrap();
    let generated = resp.header("x-trans-id").unwrap().to_string();
    assert!(
        generated.starts_with("tx") && generated.len() == 34,
        "{generated}"
    );
    let text2 = body_string(resp).await;
    assert!(text2.starts_with("POST /x 3 chunked=false"), "{text2}");
    let port = |s: &str| {
        s.split("port=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        port(&text1),
        port(&text2),
        "keep-alive reuses the connection"
    );

    // A streamed response arrives whole.
    let resp = c
        .request(
            Method::GET,
            &srv.authority,
            "/stream",
            HeaderMap::new(),
            empty(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(body_string(resp).await, "chunk0\nchunk1\nchunk2\n");

    let registry = srv.registry.clone();
    srv.shutdown().await;
    let m = registry.render();
    assert!(
        m.contains(
            "cairn_http_requests_total{server=\"test-server\",method=\"PUT\",status=\"201\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "cairn_http_request_duration_seconds_count{server=\"test-server\",method=\"GET\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains("cairn_http_bytes_total{server=\"test-server\",direction=\"in\"} 4003"),
        "{m}"
    );
    assert!(
        m.contains("cairn_http_in_flight_requests{server=\"test-server\"} 0"),
        "{m}"
    );
}

#[tokio::test]
async fn custom_methods_reach_the_handler() {
    let srv = start(handler_fn(echo), |_| {}).await;
    let c = client();
    for m in ["REPLICATE", "SSYNC", "COPY"] {
        let method = Method::from_bytes(m.as_bytes()).unwrap();
        let resp = c
            .request(
                method,
                &srv.authority,
                "/sda/7/abc",
                HeaderMap::new(),
                full("x"),
            )
            .await
            .unwrap();
        assert_eq!(resp.status, StatusCode::OK);
        assert!(body_string(resp)
            .await
            .starts_with(&format!("{m} /sda/7/abc 1")));
    }
    let registry = srv.registry.clone();
    srv.shutdown().await;
    assert!(registry
        .render()
        .contains("method=\"REPLICATE\",status=\"200\"} 1"));
}

#[tokio::test]
async fn expect_100_continue_and_raw_chunked() {
    let srv = start(handler_fn(echo), |_| {}).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let got = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(got.starts_with("HTTP/1.1 100 Continue"), "{got}");
    s.write_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .await
        .unwrap();
    let mut all = Vec::new();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        all.extend_from_slice(&buf[..n]);
        if n == 0 || String::from_utf8_lossy(&all).contains("chunked=true") {
            break;
        }
    }
    let got = String::from_utf8_lossy(&all);
    assert!(got.starts_with("HTTP/1.1 201"), "{got}");
    assert!(got.contains("PUT /up 11 chunked=true"), "{got}");
    srv.shutdown().await;
}

#[tokio::test]
async fn slow_request_body_hits_client_timeout() {
    let srv = start(handler_fn(echo), |o| {
        o.client_timeout = Duration::from_millis(200)
    })
    .await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let got = String::from_utf8_lossy(&buf[..n]);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    srv.shutdown().await;
}

#[tokio::test]
async fn panics_become_500_and_ops_endpoints_answer() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = OpsConfig {
        devices: dir.path().to_path_buf(),
        mount_check: false,
        disable_file: None,
        recon_cache_path: dir.path().to_path_buf(),
        ring_dir: None,
        version: "1.2.3".into(),
        recon: true,
    };
    let srv = start(handler_fn(echo), |o| o.ops = Some(Arc::new(Ops::new(cfg)))).await;
    let c = client();
    let get =
        |p: &'static str| c.request(Method::GET, &srv.authority, p, HeaderMap::new(), empty());
    let resp = get("/panic").await.unwrap();
    assert_eq!(resp.status, StatusCode::INTERNAL_SERVER_ERROR);
    let resp = get("/healthcheck").await.unwrap();
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(body_string(resp).await, "OK");
    let resp = get("/recon/version").await.unwrap();
    assert_eq!(body_string(resp).await, "{\"version\":\"1.2.3\"}");
    let resp = get("/metrics").await.unwrap();
    let m = body_string(resp).await;
    assert!(m.contains("status=\"500\"} 1"), "{m}");
    // The server still works after the panic.
    assert_eq!(get("/x").await.unwrap().status, StatusCode::OK);
    srv.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests() {
    let srv = start(handler_fn(echo), |_| {}).await;
    let authority = srv.authority.clone();
    let c = client();
    let inflight = tokio::spawn({
        let c = c.clone();
        let a = authority.clone();
        async move {
            let r = c
                .request(Method::GET, &a, "/sleep/300", HeaderMap::new(), empty())
                .await?;
            let status = r.status;
            Ok::<_, ClientError>((status, body_string(r).await))
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let took = srv.shutdown().await;
    let (status, body) = inflight.await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "slept"));
    assert!(
        took >= Duration::from_millis(100),
        "waited for the request: {took:?}"
    );
    // No longer accepting.
    assert!(TcpStream::connect(&authority).await.is_err());
}

#[tokio::test]
async fn drain_deadline_cuts_stuck_requests() {
    let srv = start(handler_fn(echo), |o| {
        o.drain_timeout = Duration::from_millis(200)
    })
    .await;
    let c = client();
    let a = srv.authority.clone();
    let stuck = tokio::spawn(async move {
        c.request(Method::GET, &a, "/sleep/60000", HeaderMap::new(), empty())
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let took = srv.shutdown().await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(stuck.await.unwrap().is_err());
}

#[tokio::test]
async fn client_times_out_on_a_silent_node() {
    // Accepts connections and reads, but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let c = BackendClient::new(Timeouts {
        conn: Duration::from_millis(100),
        node: Duration::from_millis(200),
    });
    let t = Instant::now();
    let err = c
        .request(
            Method::GET,
            &addr.to_string(),
            "/d/1/a",
            HeaderMap::new(),
            empty(),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    silent.abort();

    // Nobody listening: a connect error, fast.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let err = c
        .request(Method::GET, &closed_addr, "/", HeaderMap::new(), empty())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn client_body_read_times_out_on_a_stalled_body() {
    // Sends headers and part of the body, then stalls.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stalled = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await;
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let c = BackendClient::new(Timeouts {
        conn: Duration::from_millis(100),
        node: Duration::from_millis(200),
    });
    let resp = c
        .request(
            Method::GET,
            &addr.to_string(),
            "/",
            HeaderMap::new(),
            empty(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, StatusCode::OK);
    let t = Instant::now();
    let err = resp.bytes(1000).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(t.elapsed() < Duration::from_secs(2));
    stalled.abort();
}

#[tokio::test]
async fn handler_trait_with_async_fn_and_hand_built_requests() {
    struct Counter(std::sync::atomic::AtomicU64);
    impl Handler for Counter {
        async fn handle(&self, req: Request<RequestBody>) -> Response<Body> {
            let n = req
                .into_body()
                .collect_limited(100)
                .await
                .map(|b| b.len())
                .unwrap_or(0);
            self.0
                .fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
            text(StatusCode::OK, n.to_string())
        }
    }
    let h = Counter(Default::default());
    // Unit-test style: no socket.
    let resp = h.handle(Request::new(RequestBody::from("abcd"))).await;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"4");
    // And served.
    let srv = start(h, |_| {}).await;
    let r = client()
        .request(
            Method::PUT,
            &srv.authority,
            "/",
            HeaderMap::new(),
            full("xy"),
        )
        .await
        .unwrap();
    assert_eq!(body_string(r).await, "2");
    srv.shutdown().await;
}

#[tokio::test]
async fn client_gone_before_the_response_is_logged_as_499() {
    let srv = start(handler_fn(echo), |_| {}).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /sleep/2000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
    let registry = srv.registry.clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = registry.render();
        if m.contains("method=\"GET\",status=\"499\"} 1") {
            assert!(
                m.contains("cairn_http_in_flight_requests{server=\"test-server\"} 0"),
                "{m}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    srv.shutdown().await;
}
