//! The HTTPS server: TLS with client-certificate authentication, request routing
//! (upstream's RequestInfo rules), authentication and authorization, and the shared
//! [`ApiServer`] state every handler works on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use api::catalog::ResourceInfo;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use store::Backend;
use tokio_util::sync::CancellationToken;

use crate::auth::{AllowAuthenticated, Attributes, Authorizer, Decision, TokenFile, UserInfo};
use crate::cache::Cache;
use crate::errors::ApiError;
use crate::metrics::Metrics;
use crate::pki::Pki;

/// Settings of the API server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub bind_address: String,
    pub secure_port: u16,
    pub token_auth_file: Option<PathBuf>,
    /// Extra names/IPs for the serving certificate.
    pub tls_san: Vec<String>,
    /// The Service cluster IP range (`--service-cluster-ip-range`).
    pub service_cidr: String,
    /// `--default-not-ready-toleration-seconds` (DefaultTolerationSeconds admission).
    pub default_not_ready_toleration_seconds: i64,
    /// `--default-unreachable-toleration-seconds`.
    pub default_unreachable_toleration_seconds: i64,
    /// The ServiceAccount admission plugin on pod creation (upstream default on;
    /// `--disable-admission-plugins ServiceAccount` turns it off).
    pub service_account_admission: bool,
    /// The node join secret (`--token`: a bare secret or a full `K10…` token of this
    /// cluster). [`crate::start`] replaces it with the secret of `<data-dir>/token`
    /// (generated on first start); the API server authenticates it as the bootstrap
    /// identity ([`crate::join`]).
    pub token: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("/var/lib/flotilla"),
            bind_address: "127.0.0.1".into(),
            secure_port: 6443,
            token_auth_file: None,
            tls_san: Vec::new(),
            service_cidr: "10.96.0.0/12".into(),
            default_not_ready_toleration_seconds: 300,
            default_unreachable_toleration_seconds: 300,
            service_account_admission: true,
            token: None,
        }
    }
}

/// The resources currently served: built-ins plus established custom resources.
#[derive(Default)]
pub struct Resources {
    /// (group, version, plural) → resource.
    pub by_path: HashMap<(String, String, String), Arc<ResourceInfo>>,
    /// Discovery order: (group, versions in preference order).
    pub groups: Vec<(String, Vec<String>)>,
}

impl Resources {
    pub fn new(list: Vec<ResourceInfo>) -> Self {
        let mut r = Resources::default();
        for info in list {
            r.insert(info);
        }
        r
    }

    pub fn insert(&mut self, info: ResourceInfo) {
        let g = info.group.clone();
        let v = info.version.clone();
        match self.groups.iter_mut().find(|(name, _)| *name == g) {
            Some((_, versions)) => {
                if !versions.contains(&v) {
                    versions.push(v.clone());
                }
            }
            None => self.groups.push((g.clone(), vec![v.clone()])),
        }
        self.by_path
            .insert((g, v, info.plural.clone()), Arc::new(info));
    }

    pub fn remove_group_resource(&mut self, group: &str, plural: &str) {
        self.by_path
            .retain(|(g, _, p), _| !(g == group && p == plural));
        let still: Vec<(String, String)> = self
            .by_path
            .keys()
            .map(|(g, v, _)| (g.clone(), v.clone()))
            .collect();
        for (g, versions) in self.groups.iter_mut() {
            versions.retain(|v| still.iter().any(|(sg, sv)| sg == g && sv == v));
        }
        self.groups.retain(|(_, v)| !v.is_empty());
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.by_path
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Resources of one group/version, sorted by plural.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceInfo>> {
        let mut v: Vec<_> = self
            .by_path
            .iter()
            .filter(|((g, ver, _), _)| g == group && ver == version)
            .map(|(_, i)| i.clone())
            .collect();
        v.sort_by(|a, b| a.plural.cmp(&b.plural));
        v
    }

    /// Find the resource of a kind in a group/version.
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        self.by_path
            .values()
            .find(|i| i.group == group && i.version == version && i.kind == kind)
            .cloned()
    }
}

/// The shared state of a running API server.
pub struct ApiServer {
    pub config: ServerConfig,
    pub store: Arc<dyn Backend>,
    pub cache: Arc<Cache>,
    pub resources: RwLock<Resources>,
    pub tokens: TokenFile,
    /// Signs and verifies service-account tokens (`None` without `<pki>/sa.key`).
    pub sa_tokens: Option<crate::serviceaccount::TokenIssuer>,
    pub authorizer: Box<dyn Authorizer>,
    pub metrics: Metrics,
    pub openapi: RwLock<crate::openapi::OpenApi>,
    pub crds: RwLock<crate::custom::Crds>,
    pub started: std::time::Instant,
}

/// Per-connection facts handed to the request handlers.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub user: Option<UserInfo>,
    pub remote: SocketAddr,
}

impl ApiServer {
    pub async fn new(
        config: ServerConfig,
        store: Arc<dyn Backend>,
    ) -> anyhow::Result<Arc<ApiServer>> {
        let cache = Cache::start(
            store.clone(),
            Arc::new(|v: &Value| crate::handlers::fields_of(v)),
        )
        .await?;
        let mut tokens = match &config.token_auth_file {
            Some(p) => TokenFile::load(p)?,
            None => TokenFile::default(),
        };
        let sa_tokens = match crate::serviceaccount::TokenIssuer::load(&Pki::at(&config.data_dir)) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("service-account tokens disabled: {e}");
                None
            }
        };
        if let Some(t) = &config.token {
            let secret = crate::join::JoinToken::parse(t)
                .map_err(|e| anyhow::anyhow!("--token: {e}"))?
                .secret;
            tokens.insert(secret, crate::join::bootstrap_user());
        }
        let builtin = api::catalog::builtin();
        let openapi = crate::openapi::OpenApi::new(&builtin);
        let server = Arc::new(ApiServer {
            config,
            store,
            cache,
            resources: RwLock::new(Resources::new(
                builtin
                    .into_iter()
                    .chain(crate::metrics_api::resources())
                    .collect(),
            )),
            tokens,
            sa_tokens,
            authorizer: Box::new(AllowAuthenticated),
            metrics: Metrics::default(),
            openapi: RwLock::new(openapi),
            crds: RwLock::new(crate::custom::Crds::default()),
            started: std::time::Instant::now(),
        });
        // Serve nothing until the cache has replayed the store up to now.
        let current = server.store.current_revision();
        server.cache.wait_for(current).await;
        crate::bootstrap::bootstrap(&server).await?;
        Ok(server)
    }

    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.resources.read().ok()?.get(group, version, plural)
    }
}

/// Build the rustls configuration: our serving certificate, and client certificates
/// verified against the cluster CA but optional (so anonymous requests get a 401).
fn tls_config(pki: &Pki) -> anyhow::Result<rustls::ServerConfig> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut std::fs::read(&pki.serving_cert)?.as_slice())
        .collect::<Result<_, _>>()?;
    let key = rustls_pemfile::private_key(&mut std::fs::read(&pki.serving_key)?.as_slice())?
        .ok_or_else(|| anyhow::anyhow!("no private key in {}", pki.serving_key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut std::fs::read(&pki.ca_cert)?.as_slice()) {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Run the HTTPS server until `shutdown` fires. Returns the bound address through `bound`.
pub async fn serve(
    server: Arc<ApiServer>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pki = Pki::at(&server.config.data_dir);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&pki)?));
    loop {
        let (tcp, remote) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!("accept failed: {e}"); continue; }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let server = server.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::auth::user_from_cert(c.as_ref()));
            let conn = ConnInfo { user, remote };
            let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(conn.clone());
                let server = server.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(dispatch(server, req.map(Body::new)).await)
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let fut = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            tokio::select! {
                r = fut => { if let Err(e) = r { tracing::debug!(%remote, "connection ended: {e}"); } }
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

/// Authenticate, route, authorize and handle one request.
pub async fn dispatch(server: Arc<ApiServer>, req: Request<Body>) -> Response {
    let start = std::time::Instant::now();
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let bearer = bearer_token(&req);
    let user = authenticate(&server, bearer, conn.as_ref()).await;
    let route = crate::handlers::route(&server, &method, req.uri());
    let (verb, resource_label) = route.metrics_labels(&method);
    let resp = match (&user, &route) {
        (None, crate::handlers::Route::Health(_) | crate::handlers::Route::CaCerts) => {
            crate::handlers::handle(server.clone(), route, UserInfo::anonymous(), req).await
        }
        (None, _) => ApiError::unauthorized().into_response(),
        (Some(u), _) => {
            let decision = {
                let attrs = route.attributes(u, &method);
                server.authorizer.authorize(&attrs)
            };
            match decision {
                Decision::Allow => {
                    crate::handlers::handle(server.clone(), route, u.clone(), req).await
                }
                Decision::Deny(why) => ApiError::forbidden(why).into_response(),
            }
        }
    };
    server.metrics.observe(
        &verb,
        &resource_label,
        resp.status().as_u16(),
        start.elapsed(),
    );
    tracing::debug!(%method, %path, code = resp.status().as_u16(), "request");
    resp
}

/// The bearer token of a request, if any.
fn bearer_token(req: &Request<Body>) -> Option<String> {
    req.headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|auth| {
            auth.strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string())
}

async fn authenticate(
    server: &ApiServer,
    bearer: Option<String>,
    conn: Option<&ConnInfo>,
) -> Option<UserInfo> {
    if let Some(token) = bearer {
        let token = token.as_str();
        if let Some(u) = server.tokens.authenticate(token) {
            return Some(u);
        }
        if crate::serviceaccount::looks_like_jwt(token) {
            match crate::serviceaccount::authenticate(server, token).await {
                Ok(u) => return Some(u),
                Err(e) => tracing::debug!("service-account token rejected: {e}"),
            }
        }
        return None;
    }
    conn.and_then(|c| c.user.clone())
}

/// A JSON response with the given code.
pub fn json_response(code: u16, body: &Value) -> Response {
    bytes_response(
        code,
        serde_json::to_vec(body).unwrap_or_default().into(),
        "application/json",
    )
}

pub fn bytes_response(code: u16, body: bytes::Bytes, content_type: &'static str) -> Response {
    let mut resp = (StatusCode::from_u16(code).unwrap_or(StatusCode::OK), body).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    resp
}

/// Method helper for routes.
pub fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

pub(crate) fn attributes_for<'a>(
    user: &'a UserInfo,
    verb: &'a str,
    path: &'a str,
) -> Attributes<'a> {
    Attributes {
        user,
        verb,
        namespace: "",
        group: "",
        resource: "",
        subresource: "",
        name: "",
        path,
        resource_request: false,
    }
}
