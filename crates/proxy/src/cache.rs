//! Account and container existence/info, fetched with a backend HEAD and cached briefly
//! (`recheck_existence`), as Swift's `account_info` / `container_info`. **Cairn:** the
//! cache is per process (no memcache), so only existing accounts/containers are cached:
//! a "missing" answer is always re-checked, since another proxy may have just created it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method};

use crate::backend::{GetOutcome, ServerType};
use crate::headers::get;
use crate::server::{Ctx, Proxy};

/// Where an account's ACL is stored.
pub const ACCOUNT_ACL_SYSMETA: &str = "x-account-sysmeta-core-access-control";

/// What the proxy needs to know about a container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerInfo {
    /// The backend's answer: 204 (exists), 404, 503…
    pub status: u16,
    pub policy_index: u32,
    pub read_acl: Option<String>,
    pub write_acl: Option<String>,
    pub object_count: u64,
    pub bytes_used: u64,
    /// `X-Container-Meta-*` (lowercase names without the prefix).
    pub meta: HashMap<String, String>,
    /// Object versioning: `(history mode?, versions container)` from
    /// `X-History-Location` / `X-Versions-Location`.
    pub versions: Option<(bool, String)>,
}

impl ContainerInfo {
    pub fn exists(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn from_headers(status: u16, h: &HeaderMap) -> Self {
        let num = |n: &str| get(h, n).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        let meta = h
            .iter()
            .filter_map(|(k, v)| {
                let name = k.as_str().strip_prefix("x-container-meta-")?;
                Some((
                    name.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                ))
            })
            .collect();
        ContainerInfo {
            status,
            policy_index: get(h, "x-backend-storage-policy-index")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
            read_acl: get(h, "x-container-read").map(str::to_string),
            write_acl: get(h, "x-container-write").map(str::to_string),
            object_count: num("x-container-object-count"),
            bytes_used: num("x-container-bytes-used"),
            meta,
            versions: {
                let loc = |n: &str| get(h, n).map(str::trim).filter(|v| !v.is_empty());
                loc("x-history-location")
                    .map(|v| (true, v.to_string()))
                    .or_else(|| loc("x-versions-location").map(|v| (false, v.to_string())))
            },
        }
    }
}

/// What the proxy needs to know about an account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountInfo {
    /// The backend's answer: 204 (exists), 404, 503…
    pub status: u16,
    /// The stored account ACL (`X-Account-Sysmeta-Core-Access-Control`).
    pub acl: Option<String>,
    pub bytes_used: u64,
    /// `X-Account-Meta-Quota-Bytes`.
    pub quota_bytes: Option<u64>,
    /// `X-Account-Meta-Temp-URL-Key` and `-Key-2`, as set (TempURL and FormPost).
    pub temp_url_keys: Vec<String>,
}

impl AccountInfo {
    pub fn from_headers(status: u16, h: &HeaderMap) -> Self {
        AccountInfo {
            status,
            acl: get(h, ACCOUNT_ACL_SYSMETA).map(str::to_string),
            bytes_used: get(h, "x-account-bytes-used")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
            quota_bytes: get(h, "x-account-meta-quota-bytes").and_then(|v| v.trim().parse().ok()),
            temp_url_keys: [
                "x-account-meta-temp-url-key",
                "x-account-meta-temp-url-key-2",
            ]
            .iter()
            .filter_map(|n| get(h, n).map(str::to_string))
            .collect(),
        }
    }
}

/// A cached account and when it was fetched.
type AccountEntry = (AccountInfo, Instant);

/// A small time-bounded cache of info by path.
#[derive(Debug)]
pub struct InfoCache {
    ttl: Duration,
    accounts: Mutex<HashMap<String, AccountEntry>>,
    containers: Mutex<HashMap<String, (ContainerInfo, Instant)>>,
}

impl InfoCache {
    pub fn new(ttl: Duration) -> Self {
        InfoCache {
            ttl,
            accounts: Mutex::new(HashMap::new()),
            containers: Mutex::new(HashMap::new()),
        }
    }

    fn key(a: &str, c: &str) -> String {
        format!("{a}/{c}")
    }

    /// The cached info of an account.
    pub fn account(&self, a: &str) -> Option<AccountInfo> {
        let m = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        m.get(a)
            .filter(|(_, t)| t.elapsed() < self.ttl)
            .map(|(i, _)| i.clone())
    }

    pub fn set_account(&self, a: &str, info: AccountInfo) {
        if self.ttl.is_zero() {
            return;
        }
        let mut m = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 10_000 {
            m.clear();
        }
        m.insert(a.to_string(), (info, Instant::now()));
    }

    pub fn forget_account(&self, a: &str) {
        self.accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(a);
    }

    pub fn container(&self, a: &str, c: &str) -> Option<ContainerInfo> {
        let m = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&Self::key(a, c))
            .filter(|(_, t)| t.elapsed() < self.ttl)
            .map(|(i, _)| i.clone())
    }

    pub fn set_container(&self, a: &str, c: &str, info: ContainerInfo) {
        if self.ttl.is_zero() {
            return;
        }
        let mut m = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 10_000 {
            m.clear();
        }
        m.insert(Self::key(a, c), (info, Instant::now()));
    }

    pub fn forget_container(&self, a: &str, c: &str) {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&Self::key(a, c));
    }
}

impl Proxy {
    /// The account's status (2xx exists, 404 missing, 503 unknown), cached.
    pub(crate) async fn account_status(&self, ctx: &Ctx, a: &str) -> u16 {
        self.account_info(ctx, a).await.status
    }

    /// The account's info (HEAD), cached when it exists.
    pub(crate) async fn account_info(&self, ctx: &Ctx, a: &str) -> AccountInfo {
        if let Some(i) = self.cache.account(a) {
            return i;
        }
        let ring = self.rings.account();
        let part = ring.get_part(&self.secret, a, None, None);
        let out = self
            .get_first(
                &ring,
                part,
                Method::HEAD,
                ServerType::Account,
                a,
                None,
                None,
                None,
                self.backend_headers(ctx),
            )
            .await;
        let info = match out {
            GetOutcome::Found(r, _) => AccountInfo::from_headers(r.status.as_u16(), &r.headers),
            GetOutcome::Failed(replies) => AccountInfo {
                status: self.read_failure(&replies).status,
                ..Default::default()
            },
        };
        // Only positive answers are cached: another proxy may create the account at
        // any moment, and there is no shared cache to tell us.
        if (200..300).contains(&info.status) {
            self.cache.set_account(a, info.clone());
        }
        info
    }

    /// The container's info (HEAD), cached.
    pub(crate) async fn container_info(&self, ctx: &Ctx, a: &str, c: &str) -> ContainerInfo {
        if let Some(i) = self.cache.container(a, c) {
            return i;
        }
        let ring = self.rings.container();
        let part = ring.get_part(&self.secret, a, Some(c), None);
        let out = self
            .get_first(
                &ring,
                part,
                Method::HEAD,
                ServerType::Container,
                a,
                Some(c),
                None,
                None,
                self.backend_headers(ctx),
            )
            .await;
        let info = match out {
            GetOutcome::Found(r, _) => ContainerInfo::from_headers(r.status.as_u16(), &r.headers),
            GetOutcome::Failed(replies) => ContainerInfo {
                status: self.read_failure(&replies).status,
                ..Default::default()
            },
        };
        if info.exists() {
            self.cache.set_container(a, c, info.clone());
        }
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_from_headers_and_cache() {
        let mut h = HeaderMap::new();
        h.insert("x-backend-storage-policy-index", "2".parse().unwrap());
        h.insert("x-container-read", ".r:*".parse().unwrap());
        h.insert("x-container-object-count", "7".parse().unwrap());
        h.insert("x-container-meta-quota-bytes", "100".parse().unwrap());
        let i = ContainerInfo::from_headers(204, &h);
        assert!(i.exists());
        assert_eq!(i.policy_index, 2);
        assert_eq!(i.read_acl.as_deref(), Some(".r:*"));
        assert_eq!(i.object_count, 7);
        assert_eq!(i.meta["quota-bytes"], "100");
        let c = InfoCache::new(Duration::from_secs(10));
        c.set_container("a", "c", i.clone());
        assert_eq!(c.container("a", "c"), Some(i));
        c.forget_container("a", "c");
        assert_eq!(c.container("a", "c"), None);
        let ai = AccountInfo {
            status: 204,
            ..Default::default()
        };
        c.set_account("a", ai.clone());
        assert_eq!(c.account("a"), Some(ai.clone()));
        let off = InfoCache::new(Duration::ZERO);
        off.set_account("a", ai);
        assert_eq!(off.account("a"), None);
    }
}
