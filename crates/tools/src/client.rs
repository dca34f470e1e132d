//! The HTTP side of the online tools: a TempAuth v1 session against a proxy, backend HEADs
//! and recon GETs against storage servers. Everything goes through `cairn-common`'s
//! pooled [`BackendClient`] (hyper), so every request is bounded by a connect timeout and
//! a response timeout. Plain `http://` only.

use std::time::Duration;

use bytes::Bytes;
use cairn_common::http::{empty, full, quote, BackendClient, Timeouts};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use percent_encoding::percent_decode_str;

use crate::ToolError;

/// Largest response body the tools read (listings pages, recon answers).
const BODY_LIMIT: usize = 16 << 20;

/// A response read whole.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A client with one timeout for connect and one for the whole answer.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: BackendClient,
}

impl Http {
    /// `timeout`: seconds to connect, and again to get the answer.
    pub fn new(timeout: f64) -> Http {
        let t = Duration::from_secs_f64(timeout.clamp(0.05, 3600.0));
        Http {
            client: BackendClient::new(Timeouts { conn: t, node: t }),
        }
    }

    /// One request, body read whole; `Err` when no answer arrived (connect, timeout, I/O).
    pub async fn request(
        &self,
        method: Method,
        authority: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Bytes>,
    ) -> Result<Answer, String> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?;
            let value = HeaderValue::from_str(v).map_err(|e| e.to_string())?;
            map.insert(name, value);
        }
        let body = match body {
            Some(b) => {
                map.insert(http::header::CONTENT_LENGTH, HeaderValue::from(b.len()));
                full(b)
            }
            None if method == Method::PUT || method == Method::POST => {
                map.insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
                empty()
            }
            None => empty(),
        };
        let resp = self
            .client
            .request(method.clone(), authority, path, map, body)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status;
        let headers = resp.headers.clone();
        let body = if method == Method::HEAD {
            Bytes::new()
        } else {
            resp.bytes(BODY_LIMIT).await.map_err(|e| e.to_string())?
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// `http://HOST[:PORT]/PATH` → (`HOST:PORT`, `/PATH`).
pub(crate) fn split_url(url: &str) -> Result<(String, String), ToolError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        ToolError(format!(
            "{url}: only http:// URLs are supported (put the tool next to the proxy)"
        ))
    })?;
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if auth.is_empty() {
        return Err(ToolError(format!("{url}: no host")));
    }
    let auth = if auth.contains(':') && !auth.ends_with(']') {
        auth.to_string()
    } else {
        format!("{auth}:80")
    };
    Ok((auth, path.to_string()))
}

/// A logged-in TempAuth v1 session: the storage URL's authority and path, the token.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub http: Http,
    pub authority: String,
    /// `/v1/AUTH_test` (as the storage URL spells it).
    pub base_path: String,
    /// The account name (the storage URL's last segment, decoded).
    pub account: String,
    pub token: String,
    pub retries: u32,
}

/// Pause before retry `attempt` (1, 2, …): 0.1 s doubling, at most 2 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(5).saturating_sub(1)).min(2000))
}

impl Session {
    /// `GET AUTH_URL` with `X-Auth-User`/`X-Auth-Key` → storage URL and token.
    pub async fn login(
        http: Http,
        auth_url: &str,
        user: &str,
        key: &str,
        retries: u32,
    ) -> Result<Session, ToolError> {
        let (authority, path) = split_url(auth_url)?;
        let headers = [
            ("X-Auth-User", user.to_string()),
            ("X-Auth-Key", key.to_string()),
        ];
        let mut attempt = 0;
        let ans = loop {
            match http
                .request(Method::GET, &authority, &path, &headers, None)
                .await
            {
                Ok(a) if a.status.is_server_error() && attempt < retries => {}
                Ok(a) => break a,
                Err(e) if attempt >= retries => {
                    return Err(ToolError(format!("auth {auth_url}: {e}")));
                }
                Err(_) => {}
            }
            attempt += 1;
            tokio::time::sleep(backoff(attempt)).await;
        };
        if !ans.status.is_success() {
            return Err(ToolError(format!(
                "auth {auth_url} as {user}: {}",
                ans.status
            )));
        }
        let url = ans
            .header("x-storage-url")
            .ok_or_else(|| ToolError(format!("auth {auth_url}: no X-Storage-Url")))?
            .to_string();
        let token = ans
            .header("x-auth-token")
            .or_else(|| ans.header("x-storage-token"))
            .ok_or_else(|| ToolError(format!("auth {auth_url}: no X-Auth-Token")))?
            .to_string();
        let (authority, base_path) = split_url(&url)?;
        let base_path = base_path.trim_end_matches('/').to_string();
        let last = base_path.rsplit('/').next().unwrap_or("");
        let account = percent_decode_str(last).decode_utf8_lossy().into_owned();
        if account.is_empty() {
            return Err(ToolError(format!("storage URL {url} names no account")));
        }
        Ok(Session {
            http,
            authority,
            base_path,
            account,
            token,
            retries,
        })
    }

    /// A request to the storage URL + `/CONT[/OBJ]` (names quoted here) + `query`,
    /// retried on no answer or a 5xx. Returns the answer and how many retries it took.
    pub async fn call(
        &self,
        method: Method,
        container: Option<&str>,
        object: Option<&str>,
        query: &str,
        headers: &[(&str, String)],
        body: Option<Bytes>,
    ) -> Result<(Answer, u32), String> {
        let mut path = self.base_path.clone();
        for name in [container, object].into_iter().flatten() {
            path.push('/');
            path.push_str(&quote(name));
        }
        path.push_str(query);
        let mut all: Vec<(&str, String)> = vec![("X-Auth-Token", self.token.clone())];
        all.extend(headers.iter().cloned());
        let mut attempt = 0;
        loop {
            let res = self
                .http
                .request(method.clone(), &self.authority, &path, &all, body.clone())
                .await;
            match res {
                Ok(a) if !a.status.is_server_error() => return Ok((a, attempt)),
                Ok(a) if attempt >= self.retries => {
                    return Err(format!("{method} {path}: {}", a.status));
                }
                Err(e) if attempt >= self.retries => return Err(format!("{method} {path}: {e}")),
                _ => {}
            }
            attempt += 1;
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// Every name of a JSON listing (account: containers; container: objects) with
    /// `prefix`, page by page. `Ok(None)` when the container does not exist.
    pub async fn list(
        &self,
        container: Option<&str>,
        prefix: &str,
    ) -> Result<Option<Vec<String>>, String> {
        let mut names = Vec::new();
        let mut marker = String::new();
        loop {
            let query = format!(
                "?format=json&prefix={}&marker={}",
                quote(prefix),
                quote(&marker)
            );
            let (ans, _) = self
                .call(Method::GET, container, None, &query, &[], None)
                .await?;
            if ans.status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !ans.status.is_success() {
                return Err(format!(
                    "listing {}: {}",
                    container.unwrap_or(""),
                    ans.status
                ));
            }
            if ans.status == StatusCode::NO_CONTENT || ans.body.is_empty() {
                return Ok(Some(names));
            }
            let rows: Vec<serde_json::Value> =
                serde_json::from_slice(&ans.body).map_err(|e| format!("listing: {e}"))?;
            let page: Vec<String> = rows
                .iter()
                .filter_map(|r| r.get("name").and_then(|n| n.as_str()).map(str::to_string))
                .collect();
            match page.last() {
                None => return Ok(Some(names)),
                Some(last) => marker = last.clone(),
            }
            names.extend(page);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/auth/v1.0").unwrap(),
            ("127.0.0.1:8080".to_string(), "/auth/v1.0".to_string())
        );
        assert_eq!(
            split_url("http://proxy/v1/AUTH_test").unwrap(),
            ("proxy:80".to_string(), "/v1/AUTH_test".to_string())
        );
        assert_eq!(
            split_url("http://[::1]:8080").unwrap(),
            ("[::1]:8080".to_string(), "/".to_string())
        );
        assert!(split_url("https://x/").is_err());
        assert!(split_url("http:///x").is_err());
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(9), Duration::from_millis(1600));
    }
}
