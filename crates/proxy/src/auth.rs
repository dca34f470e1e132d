//! TempAuth (`PROTOCOLS.md`, "Authentication (TempAuth)"): users from the config, the
//! `GET /auth/v1.0` token exchange, stateless HMAC-SHA256-signed tokens (**Cairn:** no
//! memcache), and Swift's `tempauth.authorize` decision over container ACLs.
//!
//! Token: `AUTH_tk` + hex(payload) + hex(HMAC-SHA256(secret, payload)), payload =
//! `expires|account:user|group,group…`. Opaque to clients, URL-safe, verifiable by any
//! proxy sharing the secret.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use sha2::{Digest, Sha256};

use crate::config::{ProxyConfig, UserEntry};

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const B: usize = 64;
    let mut k = [0u8; B];
    if key.len() > B {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut ipad = [0x36u8; B];
    let mut opad = [0x5cu8; B];
    for i in 0..B {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// Equal byte strings, compared in constant time (signatures, keys).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Who a valid token says the caller is (Swift's `remote_user` groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `account:user`, `account`, then the configured groups (`.admin` replaced by the
    /// account id, e.g. `AUTH_test`, as tempauth does).
    pub groups: Vec<String>,
    pub expires: u64,
}

impl Identity {
    pub fn has(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }
}

/// The outcome of looking at a request's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No token: anonymous (referrer ACLs may still allow it).
    Anonymous,
    /// A token that is not ours, expired, or tampered: always 401.
    Invalid,
    User(Identity),
    /// A request signed with a temp-URL key (a TempURL, or the uploads of a FormPost
    /// form): it may touch only this account, or only this container of it when a
    /// container's key signed it (Swift's `authorize_same_account` and
    /// `authorize_same_container`); never as an owner.
    TempUrl {
        account: String,
        container: Option<String>,
    },
}

struct User {
    key: String,
    groups: Vec<String>,
    url: String,
}

/// TempAuth state: users, the signing key, recently issued tokens.
pub struct TempAuth {
    /// `AUTH_`.
    prefix: String,
    token_life: u64,
    secret: Vec<u8>,
    users: HashMap<String, User>,
    storage_url_scheme: String,
    issued: Mutex<HashMap<String, (String, u64)>>,
}

impl std::fmt::Debug for TempAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempAuth")
            .field("prefix", &self.prefix)
            .field("users", &self.users.len())
            .finish()
    }
}

/// The response of the token exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAnswer {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
}

impl TempAuth {
    pub fn new(cfg: &ProxyConfig, secret: Vec<u8>) -> Self {
        let prefix = format!("{}_", cfg.tempauth.reseller_prefix);
        let users = cfg
            .tempauth
            .users
            .iter()
            .map(|u: &UserEntry| {
                let url = u
                    .url
                    .clone()
                    .unwrap_or_else(|| format!("$HOST/v1/{prefix}{}", u.account));
                let account_id = url.rsplit('/').next().unwrap_or_default().to_string();
                // Swift's `_get_user_groups`: account, account:user, the groups, and
                // for `.admin` the account id instead of `.admin`.
                let mut groups = vec![u.account.clone(), format!("{}:{}", u.account, u.user)];
                groups.extend(u.groups.iter().filter(|g| *g != ".admin").cloned());
                if u.groups.iter().any(|g| g == ".admin") {
                    let own = format!("{prefix}{}", u.account);
                    groups.push(own.clone());
                    if account_id != own {
                        groups.push(account_id.clone());
                    }
                }
                (
                    format!("{}:{}", u.account, u.user),
                    User {
                        key: u.key.clone(),
                        groups,
                        url,
                    },
                )
            })
            .collect();
        TempAuth {
            prefix,
            token_life: cfg.tempauth.token_life,
            secret,
            users,
            storage_url_scheme: cfg.proxy.storage_url_scheme.clone(),
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// `AUTH_`: the prefix of the accounts this auth system owns.
    pub fn reseller_prefix(&self) -> &str {
        &self.prefix
    }

    /// A signed token for `groups` valid until `expires`.
    pub fn make_token(&self, user: &str, groups: &[String], expires: u64) -> String {
        let payload = format!("{expires}|{user}|{}", groups.join(","));
        let mac = hmac_sha256(&self.secret, payload.as_bytes());
        format!(
            "{}tk{}{}",
            self.prefix,
            hex::encode(payload.as_bytes()),
            hex::encode(mac)
        )
    }

    /// Check a token at time `now`.
    pub fn validate_at(&self, token: &str, now: u64) -> Auth {
        let Some(rest) = token
            .strip_prefix(&self.prefix)
            .and_then(|t| t.strip_prefix("tk"))
        else {
            return Auth::Invalid;
        };
        if rest.len() <= 64 || !rest.is_ascii() {
            return Auth::Invalid;
        }
        let (p, m) = rest.split_at(rest.len() - 64);
        let (Ok(payload), Ok(mac)) = (hex::decode(p), hex::decode(m)) else {
            return Auth::Invalid;
        };
        if !ct_eq(&hmac_sha256(&self.secret, &payload), &mac) {
            return Auth::Invalid;
        }
        let Ok(payload) = String::from_utf8(payload) else {
            return Auth::Invalid;
        };
        let mut it = payload.splitn(3, '|');
        let (Some(exp), Some(_user), Some(groups)) = (it.next(), it.next(), it.next()) else {
            return Auth::Invalid;
        };
        let Ok(expires) = exp.parse::<u64>() else {
            return Auth::Invalid;
        };
        if expires <= now {
            return Auth::Invalid;
        }
        Auth::User(Identity {
            groups: groups.split(',').map(str::to_string).collect(),
            expires,
        })
    }

    /// The identity of a request from `X-Auth-Token` / `X-Storage-Token`.
    pub fn authenticate(&self, headers: &HeaderMap) -> Auth {
        let token = headers
            .get("x-auth-token")
            .or_else(|| headers.get("x-storage-token"))
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty());
        match token {
            // A token of another auth system: anonymous as far as TempAuth goes.
            Some(t) if t.starts_with(&self.prefix) => self.validate_at(t, now_secs()),
            _ => Auth::Anonymous,
        }
    }

    /// `GET /auth/v1.0`: the token exchange. `host_url` is `scheme://host[:port]`.
    pub fn get_token(&self, headers: &HeaderMap, host_url: &str) -> TokenAnswer {
        self.get_token_at(headers, host_url, now_secs())
    }

    pub fn get_token_at(&self, headers: &HeaderMap, host_url: &str, now: u64) -> TokenAnswer {
        self.get_token_for(headers, None, host_url, now)
    }

    /// The token exchange; `path_account` is the `<act>` of `/auth/v1/<act>/auth`
    /// (then `X-Storage-User` may name the user alone).
    pub fn get_token_for(
        &self,
        headers: &HeaderMap,
        path_account: Option<&str>,
        host_url: &str,
        now: u64,
    ) -> TokenAnswer {
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
        };
        let unauthorized = |realm: &str| TokenAnswer {
            status: StatusCode::UNAUTHORIZED,
            headers: vec![("www-authenticate", format!("Swift realm=\"{realm}\""))],
        };
        let (account, user, key) = match path_account {
            Some(act) => {
                let realm = self.quote_realm(act);
                let user = match h("x-storage-user") {
                    Some(u) => u.to_string(),
                    None => match h("x-auth-user").and_then(|u| u.split_once(':')) {
                        Some((a, u)) if a == act => u.to_string(),
                        _ => return unauthorized(&realm),
                    },
                };
                let key = h("x-storage-pass").or_else(|| h("x-auth-key"));
                (act.to_string(), user, key)
            }
            None => {
                let Some((a, u)) = h("x-auth-user")
                    .or_else(|| h("x-storage-user"))
                    .and_then(|u| u.split_once(':'))
                else {
                    return unauthorized("unknown");
                };
                let key = h("x-auth-key").or_else(|| h("x-storage-pass"));
                (a.to_string(), u.to_string(), key)
            }
        };
        let realm = self.quote_realm(if account.is_empty() {
            "unknown"
        } else {
            &account
        });
        let Some(key) = key.filter(|_| !account.is_empty() && !user.is_empty()) else {
            return unauthorized(&realm);
        };
        let user = format!("{account}:{user}");
        let user = user.as_str();
        let Some(entry) = self.users.get(user) else {
            return unauthorized(&realm);
        };
        if !ct_eq(entry.key.as_bytes(), key.as_bytes()) {
            return unauthorized(&realm);
        }
        let token = {
            let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
            match issued.get(user) {
                Some((t, exp)) if *exp > now => (t.clone(), *exp),
                _ => {
                    let exp = now + self.token_life;
                    let t = self.make_token(user, &entry.groups, exp);
                    issued.insert(user.to_string(), (t.clone(), exp));
                    (t, exp)
                }
            }
        };
        let mut url = entry.url.replace("$HOST", host_url);
        if self.storage_url_scheme != "default" {
            if let Some((_, rest)) = url.split_once(':') {
                url = format!("{}:{rest}", self.storage_url_scheme);
            }
        }
        TokenAnswer {
            status: StatusCode::OK,
            headers: vec![
                ("x-auth-token", token.0.clone()),
                ("x-storage-token", token.0),
                ("x-auth-token-expires", (token.1 - now).to_string()),
                ("x-storage-url", url),
            ],
        }
    }

    fn quote_realm(&self, account: &str) -> String {
        account.replace(['"', '\\'], "")
    }

    /// Swift's `tempauth.authorize` for `/v1/account[/container[/object]]`: `Ok(owner)`
    /// or `Err(401 | 403)`. `acl` is the container's read or write ACL when the
    /// controller has fetched it (object requests, container GET/HEAD).
    pub fn authorize(&self, auth: &Auth, req: &AuthzRequest<'_>) -> Result<bool, StatusCode> {
        let ident = match auth {
            Auth::Invalid => return Err(StatusCode::UNAUTHORIZED),
            Auth::TempUrl { account, container } => {
                let same = req.account == account
                    && container
                        .as_deref()
                        .is_none_or(|c| req.container == Some(c));
                return if same {
                    Ok(false)
                } else {
                    Err(StatusCode::UNAUTHORIZED)
                };
            }
            Auth::Anonymous => None,
            Auth::User(i) => Some(i),
        };
        let denied = || {
            Err(if ident.is_some() {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::UNAUTHORIZED
            })
        };
        if !req.account.starts_with(&self.prefix) {
            return denied();
        }
        if let Some(id) = ident {
            let reseller_ok = req.account != self.prefix && !req.account.starts_with('.');
            if id.has(".reseller_admin") && reseller_ok {
                return Ok(true);
            }
            if id.has(".reseller_reader")
                && reseller_ok
                && (req.method == Method::GET || req.method == Method::HEAD)
            {
                return Ok(false);
            }
            if id.has(req.account)
                && (!(req.method == Method::PUT || req.method == Method::DELETE)
                    || req.container.is_some())
            {
                return Ok(true);
            }
        }
        if req.method == Method::OPTIONS {
            return Ok(false);
        }
        let (referrers, groups) = parse_acl(req.acl.unwrap_or(""));
        if referrer_allowed(req.referer, &referrers)
            && (req.object.is_some() || groups.iter().any(|g| g == ".rlistings"))
        {
            return Ok(false);
        }
        let Some(id) = ident else {
            return denied();
        };
        if id.groups.iter().any(|g| groups.contains(g)) {
            return Ok(false);
        }
        denied()
    }

    /// Is the identity a reseller admin?
    pub fn is_reseller_admin(auth: &Auth) -> bool {
        matches!(auth, Auth::User(i) if i.has(".reseller_admin"))
    }
}

/// What `authorize` looks at.
#[derive(Debug, Clone)]
pub struct AuthzRequest<'a> {
    pub method: &'a Method,
    pub account: &'a str,
    pub container: Option<&'a str>,
    pub object: Option<&'a str>,
    pub referer: Option<&'a str>,
    pub acl: Option<&'a str>,
}

/// An account ACL (`X-Account-Access-Control`, stored as the account sysmeta
/// `Core-Access-Control`): JSON `{"admin": [...], "read-write": [...], "read-only": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountAcl {
    pub admin: Vec<String>,
    pub read_write: Vec<String>,
    pub read_only: Vec<String>,
}

impl AccountAcl {
    /// Parse a stored ACL (`None` when not valid JSON of the right shape).
    pub fn parse(data: &str) -> Option<AccountAcl> {
        Self::validate(data).ok()
    }

    /// TempAuth's `extract_acl_and_report_errors`: the ACL or the error message.
    pub fn validate(data: &str) -> Result<AccountAcl, String> {
        let v: serde_json::Value = if data.trim().is_empty() {
            serde_json::json!({})
        } else {
            serde_json::from_str(data).map_err(|_| format!("Syntax error in input ({data:?})"))?
        };
        let obj = v
            .as_object()
            .ok_or_else(|| format!("Syntax error in input ({data:?})"))?;
        let mut acl = AccountAcl::default();
        for (k, val) in obj {
            let list = match k.as_str() {
                "admin" => &mut acl.admin,
                "read-write" => &mut acl.read_write,
                "read-only" => &mut acl.read_only,
                _ => return Err(format!("Key {} not recognized", serde_json::json!(k))),
            };
            let arr = val
                .as_array()
                .ok_or_else(|| format!("Value for key {} must be a list", serde_json::json!(k)))?;
            for g in arr {
                let g = g.as_str().ok_or_else(|| {
                    format!("Elements of {} list must be strings", serde_json::json!(k))
                })?;
                list.push(g.to_string());
            }
        }
        Ok(acl)
    }

    /// `Some(owner)` when the ACL grants the request to `ident`.
    pub fn decide(&self, ident: &Identity, req: &AuthzRequest<'_>) -> Option<bool> {
        let hit = |list: &[String]| ident.groups.iter().any(|g| list.contains(g));
        let read = req.method == Method::GET || req.method == Method::HEAD;
        if hit(&self.admin) {
            Some(true)
        } else if (hit(&self.read_write) && (req.container.is_some() || read))
            || (hit(&self.read_only) && read)
        {
            Some(false)
        } else {
            None
        }
    }

    /// Swift's `format_acl(version=2)`: compact JSON with sorted keys, empty lists
    /// omitted.
    pub fn format(&self) -> String {
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("admin", &self.admin),
            ("read-only", &self.read_only),
            ("read-write", &self.read_write),
        ] {
            if !v.is_empty() {
                m.insert(k.to_string(), serde_json::json!(v));
            }
        }
        serde_json::Value::Object(m).to_string()
    }

    pub fn is_empty(&self) -> bool {
        self.admin.is_empty() && self.read_write.is_empty() && self.read_only.is_empty()
    }
}

/// Swift's `parse_acl` (v1): `(referrers, groups)`.
pub fn parse_acl(acl: &str) -> (Vec<String>, Vec<String>) {
    let mut referrers = Vec::new();
    let mut groups = Vec::new();
    for v in acl.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        if let Some(r) = v.strip_prefix(".r:") {
            referrers.push(r.to_string());
        } else {
            groups.push(v.to_string());
        }
    }
    (referrers, groups)
}

/// Swift's `referrer_allowed`: the last matching rule wins; `-host` denies.
pub fn referrer_allowed(referer: Option<&str>, acl: &[String]) -> bool {
    if acl.is_empty() {
        return false;
    }
    let rhost = referer
        .and_then(referer_host)
        .unwrap_or_else(|| "unknown".to_string());
    let mut allow = false;
    for m in acl {
        if let Some(m) = m.strip_prefix('-') {
            if m == rhost || (m.starts_with('.') && rhost.ends_with(m)) {
                allow = false;
            }
        } else if m == "*" || *m == rhost || (m.starts_with('.') && rhost.ends_with(m.as_str())) {
            allow = true;
        }
    }
    allow
}

/// The lowercase hostname of a URL (`urlparse(u).hostname`).
fn referer_host(u: &str) -> Option<String> {
    let rest = u.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit('@').next()?;
    let host = if let Some(h) = hostport.strip_prefix('[') {
        h.split(']').next()?
    } else {
        hostport.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Swift's `clean_acl`: normalise `X-Container-Read` / `X-Container-Write` values; `Err`
/// is the 400 body.
pub fn clean_acl(name: &str, value: &str) -> Result<String, String> {
    let write = name.eq_ignore_ascii_case("x-container-write");
    let mut out = Vec::new();
    for raw in value.split(',') {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        if !raw.starts_with('.') {
            out.push(raw.to_string());
            continue;
        }
        let (first, second) = match raw.split_once(':') {
            Some((f, s)) => (f.trim(), Some(s.trim())),
            None => (raw, None),
        };
        let first = match first {
            ".r" | ".ref" | ".referer" | ".referrer" => ".r",
            ".rlistings" if second.is_none() => {
                out.push(".rlistings".into());
                continue;
            }
            _ => return Err(format!("Unknown designator {first:?} in ACL {value:?}")),
        };
        if write {
            return Err(format!("Referrers not allowed in write ACL: {value:?}"));
        }
        let Some(mut second) = second.map(str::to_string) else {
            return Err(format!("No value after referrer designation in {value:?}"));
        };
        let negate = second.starts_with('-');
        if negate {
            second.remove(0);
        }
        if let Some(s) = second
            .strip_prefix("http://")
            .or_else(|| second.strip_prefix("https://"))
        {
            second = s.split('/').next().unwrap_or("").to_string();
        }
        if second.starts_with('*') && second.len() > 1 {
            second.remove(0);
            if !second.starts_with('.') {
                second.insert(0, '.');
            }
        }
        if second.is_empty() || second == "-" {
            return Err(format!(
                "No host/domain value after referrer designation in ACL: {value:?}"
            ));
        }
        out.push(format!("{first}:{}{second}", if negate { "-" } else { "" }));
    }
    Ok(out.join(","))
}

/// A header value from a string (invalid characters dropped rather than panicking).
pub fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| {
        HeaderValue::from_bytes(
            &s.bytes()
                .filter(|b| *b >= 0x20 && *b != 0x7f)
                .collect::<Vec<_>>(),
        )
        .unwrap_or(HeaderValue::from_static(""))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn auth() -> TempAuth {
        let cfg = ProxyConfig::parse(
            "[tempauth]\ntoken_secret = \"sekrit-sekrit\"\n\
             [[tempauth.user]]\naccount = \"test\"\nuser = \"tester\"\nkey = \"testing\"\ngroups = [\".admin\"]\n\
             [[tempauth.user]]\naccount = \"test\"\nuser = \"tester2\"\nkey = \"testing2\"\n\
             [[tempauth.user]]\naccount = \"test2\"\nuser = \"tester3\"\nkey = \"testing3\"\n\
             [[tempauth.user]]\naccount = \"admin\"\nuser = \"admin\"\nkey = \"admin\"\ngroups = [\".admin\", \".reseller_admin\"]\n",
            "p",
            Path::new("/"),
        )
        .unwrap();
        TempAuth::new(&cfg, b"sekrit-sekrit".to_vec())
    }

    fn hdrs(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hmac_rfc4231() {
        let mac = hmac_sha256(&[0x0b; 20], b"Hi There");
        assert_eq!(
            hex::encode(mac),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn token_exchange_and_validation() {
        let a = auth();
        let ans = a.get_token_at(
            &hdrs(&[("x-auth-user", "test:tester"), ("x-auth-key", "testing")]),
            "http://127.0.0.1:8080",
            1000,
        );
        assert_eq!(ans.status, StatusCode::OK);
        let get = |n: &str| ans.headers.iter().find(|(k, _)| *k == n).unwrap().1.clone();
        let token = get("x-auth-token");
        assert!(token.starts_with("AUTH_tk"));
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        assert_eq!(get("x-storage-token"), token);
        assert_eq!(get("x-auth-token-expires"), "86400");
        assert_eq!(get("x-storage-url"), "http://127.0.0.1:8080/v1/AUTH_test");
        // Same token again while valid.
        let again = a.get_token_at(
            &hdrs(&[
                ("x-storage-user", "test:tester"),
                ("x-storage-pass", "testing"),
            ]),
            "http://h",
            1100,
        );
        assert!(again.headers.contains(&("x-auth-token", token.clone())));
        assert!(again
            .headers
            .contains(&("x-auth-token-expires", "86300".into())));
        match a.validate_at(&token, 2000) {
            Auth::User(i) => {
                assert_eq!(i.groups, vec!["test", "test:tester", "AUTH_test"]);
                assert_eq!(i.expires, 1000 + 86400);
            }
            other => panic!("{other:?}"),
        }
        // Expired.
        assert_eq!(a.validate_at(&token, 1000 + 86400), Auth::Invalid);
        // Tampered: change one payload digit.
        let mut t = token.clone().into_bytes();
        t[8] = if t[8] == b'1' { b'2' } else { b'1' };
        assert_eq!(
            a.validate_at(std::str::from_utf8(&t).unwrap(), 2000),
            Auth::Invalid
        );
        // Other secret.
        let mut other = auth();
        other.secret = b"another".to_vec();
        assert_eq!(other.validate_at(&token, 2000), Auth::Invalid);
        assert_eq!(a.validate_at("AUTH_tkdeadbeef", 2000), Auth::Invalid);
        assert_eq!(a.validate_at("garbage", 2000), Auth::Invalid);
        let mut h = HeaderMap::new();
        h.insert("x-auth-token", HeaderValue::from_static("garbage"));
        assert_eq!(a.authenticate(&h), Auth::Anonymous);
        h.insert("x-auth-token", HeaderValue::from_static("AUTH_tkgarbage"));
        assert_eq!(a.authenticate(&h), Auth::Invalid);
        // The /auth/v1/<act>/auth form.
        let ans = a.get_token_for(
            &hdrs(&[("x-storage-user", "tester"), ("x-storage-pass", "testing")]),
            Some("test"),
            "http://h",
            1000,
        );
        assert_eq!(ans.status, StatusCode::OK);
        let ans = a.get_token_for(
            &hdrs(&[("x-auth-user", "other:tester"), ("x-auth-key", "testing")]),
            Some("test"),
            "http://h",
            1000,
        );
        assert_eq!(ans.status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn bad_credentials() {
        let a = auth();
        for h in [
            hdrs(&[("x-auth-user", "test:tester"), ("x-auth-key", "nope")]),
            hdrs(&[("x-auth-user", "test:nobody"), ("x-auth-key", "testing")]),
            hdrs(&[("x-auth-user", "test:tester")]),
        ] {
            let ans = a.get_token_at(&h, "http://h", 1);
            assert_eq!(ans.status, StatusCode::UNAUTHORIZED);
            assert_eq!(
                ans.headers,
                vec![("www-authenticate", "Swift realm=\"test\"".to_string())]
            );
        }
        let ans = a.get_token_at(&HeaderMap::new(), "http://h", 1);
        assert_eq!(
            ans.headers,
            vec![("www-authenticate", "Swift realm=\"unknown\"".to_string())]
        );
    }

    fn user(a: &TempAuth, u: &str, k: &str) -> Auth {
        let h: HeaderMap = [
            ("x-auth-user".parse().unwrap(), hv(u)),
            ("x-auth-key".parse().unwrap(), hv(k)),
        ]
        .into_iter()
        .collect();
        let ans = a.get_token_at(&h, "http://h", now_secs());
        let t = &ans.headers[0].1;
        a.validate_at(t, now_secs())
    }

    #[test]
    fn acl_decision_table() {
        let a = auth();
        let admin = user(&a, "test:tester", "testing");
        let plain = user(&a, "test:tester2", "testing2");
        let other = user(&a, "test2:tester3", "testing3");
        let reseller = user(&a, "admin:admin", "admin");
        let anon = Auth::Anonymous;
        let r = |auth: &Auth,
                 m: Method,
                 c: Option<&str>,
                 o: Option<&str>,
                 acl: Option<&str>,
                 referer: Option<&str>| {
            a.authorize(
                auth,
                &AuthzRequest {
                    method: &m,
                    account: "AUTH_test",
                    container: c,
                    object: o,
                    referer,
                    acl,
                },
            )
        };
        let (c, o) = (Some("c"), Some("o"));
        // Owner.
        assert_eq!(r(&admin, Method::GET, None, None, None, None), Ok(true));
        assert_eq!(r(&admin, Method::PUT, c, None, None, None), Ok(true));
        assert_eq!(
            r(&admin, Method::PUT, None, None, None, None),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(r(&reseller, Method::PUT, None, None, None, None), Ok(true));
        // Non-owner of the same account.
        assert_eq!(
            r(&plain, Method::GET, None, None, None, None),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            r(&plain, Method::GET, c, o, Some("test:tester2"), None),
            Ok(false)
        );
        assert_eq!(r(&plain, Method::GET, c, o, Some("test"), None), Ok(false));
        assert_eq!(
            r(&plain, Method::GET, c, o, Some("test2"), None),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            r(&other, Method::PUT, c, o, Some("test2:tester3"), None),
            Ok(false)
        );
        assert_eq!(
            r(&other, Method::PUT, c, o, Some("test2:other"), None),
            Err(StatusCode::FORBIDDEN)
        );
        // Anonymous and referrers.
        assert_eq!(
            r(&anon, Method::GET, c, o, None, None),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(r(&anon, Method::GET, c, o, Some(".r:*"), None), Ok(false));
        assert_eq!(
            r(&anon, Method::GET, c, None, Some(".r:*"), None),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            r(&anon, Method::GET, c, None, Some(".r:*,.rlistings"), None),
            Ok(false)
        );
        assert_eq!(
            r(&plain, Method::GET, c, None, Some(".r:*"), None),
            Err(StatusCode::FORBIDDEN)
        );
        let ex = Some("http://www.example.com/page");
        assert_eq!(
            r(&anon, Method::GET, c, o, Some(".r:www.example.com"), ex),
            Ok(false)
        );
        assert_eq!(
            r(&anon, Method::GET, c, o, Some(".r:.example.com"), ex),
            Ok(false)
        );
        assert_eq!(
            r(&anon, Method::GET, c, o, Some(".r:.example.com"), None),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            r(
                &anon,
                Method::GET,
                c,
                o,
                Some(".r:*,.r:-www.example.com"),
                ex
            ),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            r(&anon, Method::GET, c, o, Some(".r:*,.r:-.bad.com"), ex),
            Ok(false)
        );
        // OPTIONS passes; invalid tokens never do.
        assert_eq!(r(&anon, Method::OPTIONS, c, o, None, None), Ok(false));
        assert_eq!(
            r(&Auth::Invalid, Method::GET, c, o, Some(".r:*"), None),
            Err(StatusCode::UNAUTHORIZED)
        );
        // Accounts of another reseller prefix.
        let req = AuthzRequest {
            method: &Method::GET,
            account: "OTHER_test",
            container: None,
            object: None,
            referer: None,
            acl: None,
        };
        assert_eq!(a.authorize(&admin, &req), Err(StatusCode::FORBIDDEN));
    }

    #[test]
    fn temp_url_scopes() {
        let a = auth();
        let req = |account: &'static str, container: Option<&'static str>| AuthzRequest {
            method: &Method::GET,
            account,
            container,
            object: container.map(|_| "o"),
            referer: None,
            acl: None,
        };
        let acct = Auth::TempUrl {
            account: "AUTH_test".into(),
            container: None,
        };
        let cont = Auth::TempUrl {
            account: "AUTH_test".into(),
            container: Some("c".into()),
        };
        assert_eq!(
            a.authorize(&acct, &req("AUTH_test", Some("other"))),
            Ok(false)
        );
        assert_eq!(a.authorize(&acct, &req("AUTH_test", None)), Ok(false));
        assert_eq!(
            a.authorize(&acct, &req("AUTH_other", Some("c"))),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(a.authorize(&cont, &req("AUTH_test", Some("c"))), Ok(false));
        for (acc, c) in [("AUTH_test", Some("other")), ("AUTH_test", None)] {
            assert_eq!(
                a.authorize(&cont, &req(acc, c)),
                Err(StatusCode::UNAUTHORIZED)
            );
        }
    }

    #[test]
    fn account_acls() {
        let acl = AccountAcl::validate(
            r#"{"admin":["test:tester3"],"read-write":["test2"],"read-only":["test:ro"]}"#,
        )
        .unwrap();
        assert_eq!(
            acl.format(),
            r#"{"admin":["test:tester3"],"read-only":["test:ro"],"read-write":["test2"]}"#
        );
        assert!(AccountAcl::validate("{nope")
            .unwrap_err()
            .starts_with("Syntax error"));
        assert_eq!(
            AccountAcl::validate(r#"{"bogus":[]}"#).unwrap_err(),
            r#"Key "bogus" not recognized"#
        );
        assert_eq!(
            AccountAcl::validate(r#"{"admin":"x"}"#).unwrap_err(),
            r#"Value for key "admin" must be a list"#
        );
        assert_eq!(
            AccountAcl::validate(r#"{"admin":[1]}"#).unwrap_err(),
            r#"Elements of "admin" list must be strings"#
        );
        assert!(AccountAcl::validate("").unwrap().is_empty());
        let id = |g: &[&str]| Identity {
            groups: g.iter().map(|s| s.to_string()).collect(),
            expires: u64::MAX,
        };
        let req = |m: &'static Method, c: Option<&'static str>| AuthzRequest {
            method: m,
            account: "AUTH_test",
            container: c,
            object: None,
            referer: None,
            acl: None,
        };
        let admin = id(&["test", "test:tester3"]);
        let rw = id(&["test2", "test2:x"]);
        let ro = id(&["test", "test:ro"]);
        assert_eq!(acl.decide(&admin, &req(&Method::POST, None)), Some(true));
        assert_eq!(acl.decide(&rw, &req(&Method::PUT, Some("c"))), Some(false));
        assert_eq!(acl.decide(&rw, &req(&Method::POST, None)), None);
        assert_eq!(acl.decide(&ro, &req(&Method::GET, Some("c"))), Some(false));
        assert_eq!(acl.decide(&ro, &req(&Method::PUT, Some("c"))), None);
        assert_eq!(acl.decide(&id(&["x"]), &req(&Method::GET, None)), None);
    }

    #[test]
    fn acl_cleaning() {
        assert_eq!(
            clean_acl("X-Container-Read", " .r:*, .rlistings ,bob").unwrap(),
            ".r:*,.rlistings,bob"
        );
        assert_eq!(
            clean_acl(
                "x-container-read",
                ".ref:http://www.example.com/x,.r:-*.bad.com"
            )
            .unwrap(),
            ".r:www.example.com,.r:-.bad.com"
        );
        assert!(clean_acl("x-container-write", ".r:*").is_err());
        assert!(clean_acl("x-container-read", ".r:").is_err());
        assert!(clean_acl("x-container-read", ".bogus:x").is_err());
        assert_eq!(clean_acl("x-container-write", "a:b,c").unwrap(), "a:b,c");
    }
}
