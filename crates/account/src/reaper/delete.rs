//! The reaper's backend work for one container of a deleted account (Swift's
//! `reap_container` and `reap_object`): list its objects from a container primary, delete
//! each object on every primary of its policy's object ring, then delete the container
//! on every container primary. Requests go straight to the storage servers (no proxy);
//! the update headers they carry make the object servers drop the listing rows and the
//! container servers drop the account's row, exactly as for a client's delete.

use bytes::Bytes;
use cairn_common::http as chttp;
use cairn_common::http::headers::X_BACKEND_STORAGE_POLICY_INDEX;
use cairn_common::Timestamp;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;

use super::{AccountPass, AccountReaper, Node, Outcome};

/// Largest object listing page read from a container server.
const LISTING_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// One row of a container's JSON listing (only the name matters here).
#[derive(Deserialize)]
struct Row {
    name: String,
}

/// A page of a container's objects and the container's storage policy.
struct Page {
    names: Vec<String>,
    policy: u32,
}

fn set(h: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        h.insert(n, v);
    }
}

/// The account primary whose update rides on the DELETE to container primary `i`:
/// taken from the end of the list, as Swift pops them (cycling when there are more
/// container than account replicas, where Swift would run out).
pub(crate) fn account_node_for(i: usize, account_replicas: usize) -> Option<usize> {
    (account_replicas > 0).then(|| account_replicas - 1 - (i % account_replicas))
}

/// The container primary whose update rides on the DELETE to object primary `i` (Swift
/// cycles through them).
pub(crate) fn container_node_for(i: usize, container_replicas: usize) -> Option<usize> {
    (container_replicas > 0).then(|| i % container_replicas)
}

impl AccountReaper {
    /// Headers of every request; writes carry their `X-Timestamp`.
    fn headers(&self, pass: &AccountPass<'_>, ts: Option<Timestamp>) -> HeaderMap {
        let mut h = HeaderMap::new();
        set(
            &mut h,
            "User-Agent",
            &format!("account-reaper {}", std::process::id()),
        );
        set(&mut h, "X-Trans-Id", &pass.trans_id);
        if let Some(ts) = ts {
            set(&mut h, "X-Timestamp", &ts.internal());
        }
        h
    }

    /// Send one request; `None` when the node did not answer (counted and logged).
    async fn send(
        &self,
        pass: &AccountPass<'_>,
        method: Method,
        node: &Node,
        path: &str,
        headers: HeaderMap,
    ) -> Option<(http::StatusCode, HeaderMap, Bytes)> {
        let answer = self
            .client
            .request(method, &node.authority, path, headers, chttp::empty())
            .await;
        let resp = match answer {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(node = %node.authority, device = %node.device, error = %e, "no answer");
                pass.count(|s| s.answer(None));
                return None;
            }
        };
        let (status, headers) = (resp.status, resp.headers.clone());
        pass.count(|s| s.answer(Some(status.as_u16())));
        match resp.bytes(LISTING_LIMIT_BYTES).await {
            Ok(body) => Some((status, headers, body)),
            Err(e) => {
                tracing::warn!(node = %node.authority, error = %e, "cannot read the answer");
                None
            }
        }
    }

    /// Delete every object of `container`, then the container itself.
    pub(super) async fn reap_container(&self, pass: &AccountPass<'_>, container: &str) {
        let (cpart, cnodes) = {
            let (p, n) =
                pass.rings
                    .container
                    .get_nodes(&self.secret, &pass.account, Some(container), None);
            (p, n.iter().map(Node::from).collect::<Vec<_>>())
        };
        let mut marker = String::new();
        loop {
            if pass.stop.is_stopped() {
                return;
            }
            let Some(page) = self
                .list_objects(pass, &cnodes, cpart, container, &marker)
                .await
            else {
                break;
            };
            let Some(last) = page.names.last().cloned() else {
                break;
            };
            futures_util::stream::iter(&page.names)
                .map(|o| self.reap_object(pass, container, cpart, &cnodes, o, page.policy))
                .buffer_unordered(self.settings.width())
                .collect::<Vec<()>>()
                .await;
            // Listings are sorted: a page that does not move the marker would loop.
            if last <= marker {
                break;
            }
            marker = last;
        }
        if !pass.stop.is_stopped() {
            self.delete_container(pass, container, cpart, &cnodes).await;
        }
    }

    /// One page of the container's objects after `marker`, from the first container
    /// primary that answers 2xx, trying the last primary first (Swift asks only the last
    /// one; falling back keeps one slow node from holding a reap up). `None` when none
    /// could list it (a container gone everywhere answers 404: nothing to delete).
    async fn list_objects(
        &self,
        pass: &AccountPass<'_>,
        nodes: &[Node],
        part: u32,
        container: &str,
        marker: &str,
    ) -> Option<Page> {
        for node in nodes.iter().rev() {
            let path = format!(
                "{}?format=json&marker={}",
                chttp::backend_path(&node.device, part, &pass.account, Some(container), None),
                chttp::quote(marker)
            );
            let h = self.headers(pass, None);
            let Some((status, headers, body)) = self.send(pass, Method::GET, node, &path, h).await
            else {
                continue;
            };
            if status == http::StatusCode::NO_CONTENT {
                return Some(Page {
                    names: Vec::new(),
                    policy: 0,
                });
            }
            if !status.is_success() {
                continue;
            }
            let policy = chttp::header_str(&headers, X_BACKEND_STORAGE_POLICY_INDEX)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            match serde_json::from_slice::<Vec<Row>>(&body) {
                Ok(rows) => {
                    return Some(Page {
                        names: rows.into_iter().map(|r| r.name).collect(),
                        policy,
                    })
                }
                Err(e) => tracing::warn!(node = %node.authority, error = %e, "bad listing"),
            }
        }
        None
    }

    /// DELETE the object on every primary of its policy's ring, each request carrying
    /// one container primary's update headers.
    async fn reap_object(
        &self,
        pass: &AccountPass<'_>,
        container: &str,
        cpart: u32,
        cnodes: &[Node],
        obj: &str,
        policy: u32,
    ) {
        // A page holds up to 10,000 objects: after a stop, let the rest of it drain
        // without requests so that the pass ends promptly.
        if pass.stop.is_stopped() {
            return;
        }
        let Some(ring) = pass.rings.objects.get(&policy) else {
            tracing::error!(policy, "no object ring for the container's storage policy");
            pass.count(|s| s.objects_remaining += 1);
            return;
        };
        let (part, nodes) = {
            let (p, n) = ring.get_nodes(&self.secret, &pass.account, Some(container), Some(obj));
            (p, n.iter().map(Node::from).collect::<Vec<_>>())
        };
        let ts = Timestamp::now();
        let (mut ok, mut failed) = (0, 0);
        for (i, node) in nodes.iter().enumerate() {
            let mut h = self.headers(pass, Some(ts));
            set(&mut h, X_BACKEND_STORAGE_POLICY_INDEX, &policy.to_string());
            if let Some(c) = container_node_for(i, cnodes.len()).map(|k| &cnodes[k]) {
                set(&mut h, "X-Container-Host", &c.authority);
                set(&mut h, "X-Container-Partition", &cpart.to_string());
                set(&mut h, "X-Container-Device", &c.device);
            }
            let path = chttp::backend_path(
                &node.device,
                part,
                &pass.account,
                Some(container),
                Some(obj),
            );
            match self.send(pass, Method::DELETE, node, &path, h).await {
                Some((s, _, _)) if s.is_success() => ok += 1,
                _ => failed += 1,
            }
        }
        pass.count(|s| {
            s.objects_failures += failed as u64;
            match Outcome::of(ok, failed) {
                Outcome::Deleted => s.objects_deleted += 1,
                Outcome::PossiblyRemaining => s.objects_possibly_remaining += 1,
                Outcome::Remaining => s.objects_remaining += 1,
            }
        });
    }

    /// DELETE the container on every primary, each request carrying one account
    /// primary's update headers (with `X-Account-Override-Deleted`, since the account
    /// refuses reports otherwise). A container that still lists objects answers 409 and
    /// stays for the next pass.
    async fn delete_container(
        &self,
        pass: &AccountPass<'_>,
        container: &str,
        cpart: u32,
        cnodes: &[Node],
    ) {
        let ts = Timestamp::now();
        let (mut ok, mut failed) = (0, 0);
        for (i, node) in cnodes.iter().enumerate() {
            let mut h = self.headers(pass, Some(ts));
            if let Some(a) = account_node_for(i, pass.nodes.len()).map(|k| &pass.nodes[k]) {
                set(&mut h, "X-Account-Host", &a.authority);
                set(&mut h, "X-Account-Partition", &pass.part.to_string());
                set(&mut h, "X-Account-Device", &a.device);
                set(&mut h, "X-Account-Override-Deleted", "yes");
            }
            let path =
                chttp::backend_path(&node.device, cpart, &pass.account, Some(container), None);
            match self.send(pass, Method::DELETE, node, &path, h).await {
                Some((s, _, _)) if s.is_success() => ok += 1,
                _ => failed += 1,
            }
        }
        let outcome = Outcome::of(ok, failed);
        if outcome != Outcome::Deleted {
            tracing::info!(account = %pass.account, container, ok, failed, "container not deleted everywhere");
        }
        pass.count(|s| {
            s.containers_failures += failed as u64;
            match outcome {
                Outcome::Deleted => s.containers_deleted += 1,
                Outcome::PossiblyRemaining => s.containers_possibly_remaining += 1,
                Outcome::Remaining => s.containers_remaining += 1,
            }
        });
    }
}
