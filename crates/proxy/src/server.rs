//! The proxy application: shared state ([`Proxy`]), the [`ProxyServer`] handler,
//! routing of `/info`, `/healthcheck`, `/auth/…` and `/v1/…`, and the response edge
//! (filtering, transaction ids, CORS) every answer passes through.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

use cairn_common::config::{ClusterConfig, PolicyConfig};
use cairn_common::constraints::{
    check_account_name, check_container_name, check_object_name, Constraints,
};
use cairn_common::http::{
    decode_path, new_trans_id, split_path, BackendClient, Body, Handler, RequestBody, RequestInfo,
    Timeouts,
};
use cairn_common::HashPathSecret;
use cairn_ring::{Ring, RingWatcher};

use crate::auth::{Auth, AuthzRequest, TempAuth};
use crate::cache::InfoCache;
use crate::config::ProxyConfig;
use crate::headers::{
    error_with, filter_request, filter_response, stamp_response, status_response,
};
use crate::nodes::ErrorLimiter;
use crate::put::PutClient;

/// Where a ring comes from: a file watched for changes, or a fixed ring (tests).
#[derive(Debug)]
pub enum RingSource {
    Watch(RingWatcher),
    Fixed(Arc<Ring>),
}

impl RingSource {
    pub fn current(&self) -> Arc<Ring> {
        match self {
            RingSource::Watch(w) => {
                if let Err(e) = w.check_reload() {
                    tracing::warn!(path = %w.path().display(), error = %e, "ring reload failed");
                }
                w.current()
            }
            RingSource::Fixed(r) => r.clone(),
        }
    }
}

/// The account, container and object rings (one per policy index).
#[derive(Debug)]
pub struct Rings {
    pub account: RingSource,
    pub container: RingSource,
    pub objects: HashMap<u32, RingSource>,
}

impl Rings {
    /// Load `account.ring`, `container.ring` and every policy's object ring from the
    /// cluster's ring directory; each is checked for a new version every `check_interval`.
    pub fn load(cluster: &ClusterConfig, check_interval: Duration) -> io::Result<Rings> {
        let dir = cluster.ring_dir();
        let load = |name: &str| {
            RingWatcher::with_interval(dir.join(name), check_interval)
                .map(RingSource::Watch)
                .map_err(|e| io::Error::other(format!("{}: {e}", dir.join(name).display())))
        };
        let mut objects = HashMap::new();
        for p in &cluster.policies {
            match load(&p.ring_name()) {
                Ok(r) => {
                    objects.insert(p.index, r);
                }
                Err(e) if p.index == 0 => return Err(e),
                Err(e) => tracing::warn!(policy = p.index, error = %e, "object ring missing"),
            }
        }
        Ok(Rings {
            account: load("account.ring")?,
            container: load("container.ring")?,
            objects,
        })
    }

    pub fn account(&self) -> Arc<Ring> {
        self.account.current()
    }
    pub fn container(&self) -> Arc<Ring> {
        self.container.current()
    }
    pub fn object(&self, policy: u32) -> Option<Arc<Ring>> {
        self.objects.get(&policy).map(RingSource::current)
    }
}

/// The proxy's shared state.
pub struct Proxy {
    pub(crate) cfg: ProxyConfig,
    pub(crate) cluster: ClusterConfig,
    pub(crate) secret: HashPathSecret,
    pub(crate) rings: Rings,
    pub(crate) client: BackendClient,
    pub(crate) put_client: PutClient,
    /// Shared with the tasks of small PUTs that outlive their request.
    pub(crate) limiter: Arc<ErrorLimiter>,
    pub(crate) auth: TempAuth,
    pub(crate) cache: InfoCache,
    pub(crate) constraints: Constraints,
    pub(crate) affinity: crate::affinity::Affinity,
    pub(crate) repair: crate::repair::ReadRepair,
}

/// One client request as the controllers see it.
pub struct Ctx {
    pub trans_id: String,
    pub method: Method,
    /// The client's headers, internal ones removed.
    pub headers: HeaderMap,
    pub query: Option<String>,
    /// The path as sent (for `Referer` on backend requests).
    pub raw_path: String,
    pub version: String,
    pub account: String,
    pub container: Option<String>,
    pub object: Option<String>,
    pub auth: Auth,
    /// `scheme://host[:port]` of this request.
    pub host_url: String,
    /// The client's address (TempURL's `temp_url_ip_range`); `None` for hand-built
    /// requests.
    pub remote: Option<std::net::IpAddr>,
    /// The client's body (in a mutex so that `&Ctx` is `Sync` across awaits).
    pub body: std::sync::Mutex<Option<RequestBody>>,
    /// The proxy itself, for work that outlives the handler (streaming large objects).
    pub proxy: Arc<Proxy>,
}

impl Ctx {
    /// A copy without the body (sub-requests).
    pub fn sub(&self) -> Ctx {
        Ctx {
            trans_id: self.trans_id.clone(),
            method: self.method.clone(),
            headers: self.headers.clone(),
            query: self.query.clone(),
            raw_path: self.raw_path.clone(),
            version: self.version.clone(),
            account: self.account.clone(),
            container: self.container.clone(),
            object: self.object.clone(),
            auth: self.auth.clone(),
            host_url: self.host_url.clone(),
            remote: self.remote,
            body: std::sync::Mutex::new(None),
            proxy: self.proxy.clone(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        crate::headers::get(&self.headers, name)
    }

    /// A query parameter, percent-decoded (`+` is a space).
    pub fn param(&self, name: &str) -> Option<String> {
        query_param(self.query.as_deref(), name)
    }

    pub fn take_body(&mut self) -> RequestBody {
        self.body
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default()
    }
}

/// A query parameter of `q`, percent-decoded.
pub fn query_param(q: Option<&str>, name: &str) -> Option<String> {
    let q = q?;
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if decode_q(k) == name {
            return Some(decode_q(v));
        }
    }
    None
}

fn decode_q(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

impl Proxy {
    /// Build the proxy from its config, the cluster config and loaded rings.
    pub fn new(cfg: ProxyConfig, cluster: ClusterConfig, rings: Rings) -> io::Result<Proxy> {
        let secret = cfg
            .token_secret()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let timeouts = Timeouts {
            conn: cfg.conn_timeout(),
            node: cfg.node_timeout(),
        };
        let client = BackendClient::new(timeouts);
        Ok(Proxy {
            auth: TempAuth::new(&cfg, secret),
            secret: cluster.hash_path_secret(),
            affinity: crate::affinity::Affinity::new(&cfg.proxy),
            repair: crate::repair::ReadRepair::new(&cfg.proxy, client.clone()),
            client,
            put_client: PutClient::new(timeouts),
            limiter: Arc::new(ErrorLimiter::new(
                cfg.proxy.error_suppression_limit,
                Duration::try_from_secs_f64(cfg.proxy.error_suppression_interval)
                    .unwrap_or(Duration::from_secs(60)),
            )),
            cache: InfoCache::new(
                Duration::try_from_secs_f64(cfg.proxy.recheck_existence).unwrap_or_default(),
            ),
            constraints: cluster.constraints.clone(),
            rings,
            cluster,
            cfg,
        })
    }

    pub fn constraints(&self) -> &Constraints {
        &self.constraints
    }

    pub(crate) fn policy_by_index(&self, i: u32) -> Option<&PolicyConfig> {
        self.cluster.policy_by_index(i)
    }

    /// Check authorization; `Ok(owner)`, or the 401/403 response.
    pub(crate) async fn authorize(
        &self,
        ctx: &Ctx,
        acl: Option<&str>,
    ) -> Result<bool, Response<Body>> {
        let req = AuthzRequest {
            method: &ctx.method,
            account: &ctx.account,
            container: ctx.container.as_deref(),
            object: ctx.object.as_deref(),
            referer: ctx.header("referer"),
            acl,
        };
        self.authorize_req(ctx, &req).await.map_err(|status| {
            let mut r = status_response(status);
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    "www-authenticate",
                    crate::auth::hv(&format!("Swift realm=\"{}\"", ctx.account)),
                );
            }
            r
        })
    }

    /// TempAuth's decision, then (for an authenticated caller it would deny) the
    /// account's `X-Account-Access-Control` ACL.
    pub(crate) async fn authorize_req(
        &self,
        ctx: &Ctx,
        req: &AuthzRequest<'_>,
    ) -> Result<bool, StatusCode> {
        let denied = match self.auth.authorize(&ctx.auth, req) {
            Ok(owner) => return Ok(owner),
            Err(s) => s,
        };
        let Auth::User(ident) = &ctx.auth else {
            return Err(denied);
        };
        if !req.account.starts_with(self.auth.reseller_prefix()) {
            return Err(denied);
        }
        let info = self.account_info(ctx, req.account).await;
        let Some(acl) = info.acl.as_deref().and_then(crate::auth::AccountAcl::parse) else {
            return Err(denied);
        };
        match acl.decide(ident, req) {
            Some(owner) => Ok(owner),
            None => Err(denied),
        }
    }

    /// Handle one request (the [`Handler`] entry point).
    pub async fn handle_request(self: &Arc<Self>, req: Request<RequestBody>) -> Response<Body> {
        let trans_id = req
            .extensions()
            .get::<RequestInfo>()
            .map(|i| i.trans_id.clone())
            .unwrap_or_else(new_trans_id);
        let origin = req.headers().get("origin").cloned();
        let is_options = req.method() == Method::OPTIONS;
        let cors_target = origin.as_ref().and_then(|_| {
            let path = decode_path(req.uri().path()).ok()?;
            let segs = split_path(&path, 3, 4, true).ok()?;
            Some((segs[1]?.to_string(), segs[2]?.to_string()))
        });
        let mut resp = self.route(req, &trans_id).await;
        filter_response(resp.headers_mut());
        stamp_response(resp.headers_mut(), &trans_id);
        if let (Some(origin), false) = (origin, is_options) {
            let info = cors_target
                .as_ref()
                .and_then(|(a, c)| self.cache.container(a, c));
            crate::cors::add_actual_headers(self, &mut resp, info.as_ref(), &origin);
        }
        resp
    }

    async fn route(self: &Arc<Self>, req: Request<RequestBody>, trans_id: &str) -> Response<Body> {
        let raw_path = req.uri().path().to_string();
        let method = req.method().clone();
        if raw_path == "/info" {
            return crate::info::handle(self, &method);
        }
        if raw_path == "/healthcheck" {
            return cairn_common::http::text(StatusCode::OK, "OK");
        }
        let host_url = self.host_url(req.headers());
        if raw_path == "/auth" || raw_path.starts_with("/auth/") {
            return self.handle_auth(&raw_path, &method, req.headers(), &host_url);
        }
        let path = match decode_path(&raw_path) {
            Ok(p) => p,
            Err(e) => return error_with(e.status(), e.to_string()),
        };
        let Ok(segs) = split_path(&path, 1, 4, true) else {
            return status_response(StatusCode::NOT_FOUND);
        };
        let version = segs[0].unwrap_or_default().to_string();
        if !self.constraints.valid_api_versions.contains(&version) {
            return error_with(StatusCode::BAD_REQUEST, "Invalid path");
        }
        // An object under an empty container name (`/v1/a//o`) is no controller's.
        if segs[2] == Some("") && segs[3].is_some_and(|o| !o.is_empty()) {
            return error_with(StatusCode::PRECONDITION_FAILED, "Bad URL");
        }
        let nonempty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
        let account = nonempty(segs[1]);
        let container = nonempty(segs[2]);
        let object = if container.is_some() {
            nonempty(segs[3])
        } else {
            None
        };
        let Some(account) = account else {
            let h = req.headers();
            if method == Method::GET
                && (h.contains_key("x-auth-user") || h.contains_key("x-storage-user"))
            {
                return self.handle_auth("/auth/v1.0", &method, h, &host_url);
            }
            return error_with(StatusCode::PRECONDITION_FAILED, "Bad URL");
        };
        if let Err(e) = check_account_name(&account, &self.constraints) {
            return error_with(
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                e.message,
            );
        }
        if let Some(c) = &container {
            if let Err(e) = check_container_name(c, &self.constraints) {
                return error_with(
                    StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                    e.message,
                );
            }
        }
        if let Some(o) = &object {
            if let Err(e) = check_object_name(o, &self.constraints) {
                return error_with(StatusCode::BAD_REQUEST, e.message);
            }
        }
        let remote = req
            .extensions()
            .get::<RequestInfo>()
            .map(|i| i.remote.ip().to_canonical());
        let (parts, body) = req.into_parts();
        if parts.headers.len() > self.constraints.max_header_count() {
            return error_with(
                StatusCode::BAD_REQUEST,
                format!(
                    "Too many headers; max {}",
                    self.constraints.max_header_count()
                ),
            );
        }
        let mut headers = parts.headers;
        filter_request(&mut headers);
        let auth = self.auth.authenticate(&headers);
        let mut ctx = Ctx {
            trans_id: trans_id.to_string(),
            method: method.clone(),
            headers,
            query: parts.uri.query().map(str::to_string),
            raw_path,
            version,
            account,
            container,
            object,
            auth,
            host_url,
            remote,
            body: std::sync::Mutex::new(Some(body)),
            proxy: self.clone(),
        };
        if method == Method::OPTIONS {
            return crate::cors::options(self, &ctx).await;
        }
        // TempURL sits before FormPost, as in Swift's pipeline.
        if let Some(resp) = crate::tempurl::handle(self, &mut ctx).await {
            return resp;
        }
        if let Some(resp) = crate::formpost::handle(self, &mut ctx).await {
            return resp;
        }
        match (&ctx.container, &ctx.object) {
            (Some(_), Some(_)) => crate::object::handle(self, &mut ctx).await,
            (Some(_), None) => crate::container::handle(self, &mut ctx).await,
            _ => crate::account::handle(self, &mut ctx).await,
        }
    }

    fn host_url(&self, h: &HeaderMap) -> String {
        let host = h
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        let scheme = match self.cfg.proxy.storage_url_scheme.as_str() {
            "https" => "https",
            _ => "http",
        };
        format!("{scheme}://{host}")
    }

    fn handle_auth(
        &self,
        path: &str,
        method: &Method,
        headers: &HeaderMap,
        host_url: &str,
    ) -> Response<Body> {
        let mut segs = path.trim_start_matches('/').split('/');
        let _auth = segs.next();
        let version = segs.next().unwrap_or("");
        let rest: Vec<&str> = segs.filter(|s| !s.is_empty()).collect();
        // `/auth/v1.0`, `/auth/v1`, `/auth/auth` (trailing `/` allowed) and the old
        // `/auth/v1/<account>/auth`.
        let path_account = match (version, rest.as_slice()) {
            ("v1" | "v1.0" | "auth", []) => None,
            ("v1", [act, "auth"]) => Some(*act),
            _ => return status_response(StatusCode::BAD_REQUEST),
        };
        if method != Method::GET && method != Method::HEAD {
            return status_response(StatusCode::BAD_REQUEST);
        }
        let ans = self
            .auth
            .get_token_for(headers, path_account, host_url, crate::auth::now_secs());
        let mut resp = if ans.status == StatusCode::OK {
            let mut r = Response::new(cairn_common::http::empty());
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/html; charset=UTF-8"),
            );
            r
        } else {
            status_response(ans.status)
        };
        *resp.status_mut() = ans.status;
        for (k, v) in ans.headers {
            resp.headers_mut().insert(k, crate::auth::hv(&v));
        }
        resp
    }
}

/// The [`Handler`] the `cairn proxy-server` binary serves.
#[derive(Clone)]
pub struct ProxyServer(pub Arc<Proxy>);

impl ProxyServer {
    pub fn new(proxy: Proxy) -> Self {
        ProxyServer(Arc::new(proxy))
    }

    /// Load everything from a `proxy-server.toml` (and the cluster file it names).
    pub fn from_config_file(path: &Path) -> io::Result<Self> {
        let cfg = ProxyConfig::load(path)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let cluster = cfg
            .server
            .load_cluster()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let rings = Rings::load(&cluster, cfg.ring_check_interval())?;
        Ok(ProxyServer::new(Proxy::new(cfg, cluster, rings)?))
    }
}

impl Handler for ProxyServer {
    fn handle(
        &self,
        req: Request<RequestBody>,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        let proxy = self.0.clone();
        async move { proxy.handle_request(req).await }
    }
}

/// Run the proxy from `proxy-server.toml` until SIGTERM/SIGINT (inside a runtime).
pub async fn run(config_path: &Path) -> io::Result<()> {
    let server = ProxyServer::from_config_file(config_path)?;
    let section = server.0.cfg.server.clone();
    cairn_common::logging::init_logging_with("proxy-server", Some(&section.log_level));
    let mut opts = section.serve_options("proxy-server");
    opts.client_timeout = server.0.cfg.client_timeout();
    opts.max_headers = opts
        .max_headers
        .max(server.0.constraints.max_header_count() + 16);
    opts.ops = Some(Arc::new(cairn_common::recon::Ops::new(
        cairn_common::recon::OpsConfig::health_only(section.disable_file.clone()),
    )));
    let addr = section.bind_addr(cairn_common::server_config::DEFAULT_PROXY_PORT);
    cairn_common::daemon::run_server(addr, Arc::new(server), opts).await
}

/// Build a runtime with the configured workers and [`run`] the proxy on it.
pub fn run_blocking(config_path: &Path) -> io::Result<()> {
    let cfg = ProxyConfig::load(config_path)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let rt = cairn_common::daemon::build_runtime(cfg.server.workers)?;
    rt.block_on(run(config_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        let q = Some("format=json&prefix=a%20b&x=1+2&multipart-manifest=get");
        assert_eq!(query_param(q, "format").as_deref(), Some("json"));
        assert_eq!(query_param(q, "prefix").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "x").as_deref(), Some("1 2"));
        assert_eq!(query_param(q, "multipart-manifest").as_deref(), Some("get"));
        assert_eq!(query_param(q, "nope"), None);
        assert_eq!(query_param(None, "a"), None);
    }
}
