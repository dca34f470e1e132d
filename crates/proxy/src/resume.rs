//! Resuming object GETs (`PROTOCOLS.md`, "Proxy behaviour clients rely on": "If a read
//! fails mid-stream the proxy resumes from the next node with a Range"). The client's
//! body is a stream over the first node's body; when that fails, the next node (not yet
//! used) is asked for the remaining bytes with `Range` and `If-Match: <etag>`, so that a
//! different version is never spliced in.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;

use cairn_common::http::{empty, from_stream, Body};
use cairn_ring::Ring;

use crate::auth::hv;
use crate::backend::node_path;
use crate::nodes::{iter_nodes, Node};
use crate::server::{Ctx, Proxy};

/// Where a resumed read goes.
pub(crate) struct ResumeTarget {
    pub ring: Arc<Ring>,
    pub part: u32,
    pub policy_index: u32,
    pub account: String,
    pub container: String,
    pub object: String,
}

/// `Content-Range: bytes a-b/total` → `(a, b)`.
pub fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, _total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

struct State {
    proxy: Arc<Proxy>,
    ctx: Ctx,
    target: ResumeTarget,
    body: Body,
    etag: String,
    /// The next byte wanted, and the last one (inclusive).
    next: u64,
    last: u64,
    used: Vec<Node>,
    done: bool,
}

/// Wrap `body` (the first node's answer covering bytes `first..=last`) so that it
/// resumes from other nodes on failure. Nothing is wrapped for empty ranges.
#[allow(clippy::too_many_arguments)]
pub(crate) fn resumable(
    proxy: Arc<Proxy>,
    ctx: Ctx,
    target: ResumeTarget,
    body: Body,
    etag: String,
    first: u64,
    last: u64,
    used: Node,
) -> Body {
    let state = State {
        proxy,
        ctx,
        target,
        body,
        etag,
        next: first,
        last,
        used: vec![used],
        done: false,
    };
    from_stream(futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            match st.body.frame().await {
                None => return None,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if data.is_empty() {
                            continue;
                        }
                        st.next += data.len() as u64;
                        return Some((Ok::<Bytes, io::Error>(data), st));
                    }
                }
                Some(Err(e)) => {
                    if st.next > st.last {
                        return None;
                    }
                    tracing::warn!(error = %e, next = st.next, "object read failed; resuming");
                    match next_source(&mut st).await {
                        Some(b) => st.body = b,
                        None => {
                            st.done = true;
                            return Some((Err(e), st));
                        }
                    }
                }
            }
        }
    }))
}

async fn next_source(st: &mut State) -> Option<Body> {
    let t = &st.target;
    let p = &st.proxy;
    let n = t.ring.get_part_nodes(t.part).count();
    let nodes = iter_nodes(
        &t.ring,
        t.part,
        &p.limiter,
        p.cfg.proxy.request_node_count.unwrap_or(2 * n).max(1),
    );
    for node in nodes {
        if st.used.contains(&node) {
            continue;
        }
        st.used.push(node.clone());
        let mut h: HeaderMap = p.backend_headers(&st.ctx);
        h.insert(
            "x-backend-storage-policy-index",
            HeaderValue::from(t.policy_index),
        );
        h.insert("range", hv(&format!("bytes={}-{}", st.next, st.last)));
        if !st.etag.is_empty() {
            h.insert("if-match", hv(&st.etag));
        }
        let path = node_path(
            &node,
            t.part,
            &t.account,
            Some(&t.container),
            Some(&t.object),
            None,
        );
        match p
            .client
            .request(Method::GET, &node.authority(), &path, h, empty())
            .await
        {
            Ok(r) if r.status == StatusCode::PARTIAL_CONTENT => return Some(r.body),
            Ok(r) if r.status.is_server_error() => {
                p.limiter
                    .error_occurred(&node, &format!("ERROR {} resuming read", r.status));
            }
            Ok(_) => {}
            Err(e) => p
                .limiter
                .error_occurred(&node, &format!("ERROR resuming read: {e}")),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 0-9/10"), Some((0, 9)));
        assert_eq!(parse_content_range("bytes 5-5/*"), Some((5, 5)));
        assert_eq!(parse_content_range("bytes */10"), None);
    }
}
