//! The kubelet's HTTPS server (the API server's entry to the node): `/healthz`,
//! `/pods`, `/containerLogs/{ns}/{pod}/{container}`, `/exec/{ns}/{pod}/{container}`
//! and `/attach/{ns}/{pod}[/{uid}]/{container}` (WebSocket `v5.channel.k8s.io` /
//! `v4.channel.k8s.io`, or SPDY/3.1 with `v4`…`v1` of the channel protocol, see
//! [`crate::remotecommand`]) and
//! `/portForward/{ns}/{pod}` (SPDY/3.1 `portforward.k8s.io`, plain or tunnelled in a
//! WebSocket as `SPDY/3.1+portforward.k8s.io`, see [`crate::portforward`]), with
//! client-certificate authentication against `authentication.x509.clientCAFile`;
//! plus the plain-HTTP healthz endpoint.
//!
//! Authorization: any client presenting a certificate signed by the client CA is
//! allowed everything (upstream would ask the API server with SubjectAccessReviews
//! when `authorization.mode: Webhook`; not implemented).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path as UrlPath, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::logs::LogOptions;
use crate::portforward::{
    PORT_FORWARD_PROTOCOL, Target, WEBSOCKET_CHANNEL_PROTOCOL, serve_port_forward,
    serve_websocket_channels,
};
use crate::remotecommand::{ExecOptions, SPDY_EXEC_PROTOCOLS, StreamAction, serve_exec};
use crate::runtime::PodRuntime;
use crate::runtime::{
    ContainerInfo, ContainerState, ExecInput, ExecOutput, ExecStreams, TerminalSize,
};
use crate::worker::StatusStore;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("kubelet serving certificate: {0}")]
    Cert(String),
    #[error("client CA {path}: {message}")]
    ClientCa { path: PathBuf, message: String },
}

/// What the server needs from the kubelet.
#[derive(Clone)]
pub struct ServerContext {
    pub runtime: Arc<dyn PodRuntime>,
    /// The pods this kubelet runs, with their latest status (by uid).
    pub pods: StatusStore,
    /// Resource usage for `/stats/summary` (None: not collected).
    pub stats: Option<Arc<crate::stats::StatsCollector>>,
}

/// TLS settings of the HTTPS server.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// Where the self-signed serving certificate and key are written.
    pub cert_dir: PathBuf,
    /// Subject alternative names (node name, node IP…).
    pub hosts: Vec<String>,
    /// `authentication.x509.clientCAFile` (empty: no client certificates accepted).
    pub client_ca_file: String,
    /// `authentication.anonymous.enabled`.
    pub anonymous: bool,
}

/// Generate (or reuse) the self-signed serving certificate under `dir`.
fn serving_cert(dir: &Path, hosts: &[String]) -> Result<(String, String), ServerError> {
    let cert_path = dir.join("kubelet.crt");
    let key_path = dir.join("kubelet.key");
    if let (Ok(c), Ok(k)) = (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
    ) {
        return Ok((c, k));
    }
    let err = |e: &dyn std::fmt::Display| ServerError::Cert(e.to_string());
    let mut names = hosts.to_vec();
    names.extend(["localhost".to_string(), "127.0.0.1".to_string()]);
    names.sort();
    names.dedup();
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| err(&e))?;
    let (c, k) = (ck.cert.pem(), ck.signing_key.serialize_pem());
    std::fs::create_dir_all(dir).map_err(|e| err(&format!("{}: {e}", dir.display())))?;
    write_private(&key_path, &k).map_err(|e| err(&format!("{}: {e}", key_path.display())))?;
    std::fs::write(&cert_path, &c).map_err(|e| err(&format!("{}: {e}", cert_path.display())))?;
    Ok((c, k))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

fn tls_config(s: &TlsSettings) -> Result<rustls::ServerConfig, ServerError> {
    let (cert, key) = serving_cert(&s.cert_dir, &s.hosts)?;
    let err = |e: &dyn std::fmt::Display| ServerError::Cert(e.to_string());
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| err(&e))?;
    let key = rustls_pemfile::private_key(&mut key.as_bytes())
        .map_err(|e| err(&e))?
        .ok_or_else(|| err(&"no private key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&e))?;
    let builder = if s.client_ca_file.is_empty() {
        builder.with_no_client_auth()
    } else {
        let ca_err = |message: String| ServerError::ClientCa {
            path: PathBuf::from(&s.client_ca_file),
            message,
        };
        let pem = std::fs::read(&s.client_ca_file).map_err(|e| ca_err(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots
                .add(c.map_err(|e| ca_err(e.to_string()))?)
                .map_err(|e| ca_err(e.to_string()))?;
        }
        // Optional at the TLS level so that a request without a certificate gets a
        // proper 401 instead of a handshake failure.
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| ca_err(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut cfg = builder.with_single_cert(certs, key).map_err(|e| err(&e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The router of the HTTPS server (also usable without TLS in tests).
pub fn router(ctx: ServerContext) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route("/stats/summary", get(stats_summary))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", get(exec).post(exec))
        .route(
            "/attach/{namespace}/{pod}/{container}",
            get(attach).post(attach),
        )
        .route(
            "/attach/{namespace}/{pod}/{uid}/{container}",
            get(attach_uid).post(attach_uid),
        )
        .route(
            "/portForward/{namespace}/{pod}",
            get(port_forward).post(port_forward),
        )
        .route(
            "/portForward/{namespace}/{pod}/{uid}",
            get(port_forward_uid).post(port_forward_uid),
        )
        .with_state(ctx)
}

/// Bind the HTTPS listener (`addr` may have port 0) and serve until `shutdown`.
/// Returns the bound address.
pub async fn serve_https(
    addr: SocketAddr,
    tls: TlsSettings,
    ctx: ServerContext,
    shutdown: CancellationToken,
) -> Result<SocketAddr, ServerError> {
    let cfg = tls_config(&tls)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let app = router(ctx);
    let anonymous = tls.anonymous;
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => { tracing::warn!("kubelet server accept: {e}"); continue; }
                },
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
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
                        tracing::debug!(%remote, "kubelet TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => return,
                };
                let authenticated = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty());
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    async move {
                        if !authenticated && !anonymous {
                            return Ok::<_, std::convert::Infallible>(
                                (StatusCode::UNAUTHORIZED, "Unauthorized").into_response(),
                            );
                        }
                        Ok(app
                            .oneshot(req.map(Body::new))
                            .await
                            .unwrap_or_else(|e| match e {}))
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let fut = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                tokio::select! {
                    r = fut => if let Err(e) = r { tracing::debug!(%remote, "kubelet connection: {e}"); },
                    _ = shutdown.cancelled() => {}
                }
            });
        }
    });
    Ok(bound)
}

/// Serve plain-HTTP `/healthz` on `addr` until `shutdown`; returns the bound address.
pub async fn serve_healthz(
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> Result<SocketAddr, ServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let app = Router::new().route("/healthz", get(|| async { "ok" }));
    tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = r {
            tracing::warn!("kubelet healthz server: {e}");
        }
    });
    Ok(bound)
}

/// An error answered as a `metav1.Status` with HTTP code `code`.
struct Failure {
    code: u16,
    reason: &'static str,
    message: String,
}

fn status_error(code: u16, reason: &'static str, message: &str) -> Failure {
    Failure {
        code,
        reason,
        message: message.to_string(),
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        failure_response(self.code, self.reason, &self.message)
    }
}

fn failure_response(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    let mut r = (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body.to_string(),
    )
        .into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// `GET /stats/summary`: the node's and its pods' resource usage.
async fn stats_summary(State(ctx): State<ServerContext>) -> Response {
    let Some(stats) = &ctx.stats else {
        return failure_response(404, "NotFound", "stats are not collected on this node");
    };
    let mut r = stats.summary().await.to_string().into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn pods(State(ctx): State<ServerContext>) -> Response {
    let items: Vec<serde_json::Value> = ctx
        .pods
        .lock()
        .map(|m| {
            m.values()
                .map(|(pod, status)| {
                    let mut p = pod.clone();
                    p.status = Some(status.clone());
                    let mut v = serde_json::to_value(&p).unwrap_or_default();
                    v["apiVersion"] = json!("v1");
                    v["kind"] = json!("Pod");
                    v
                })
                .collect()
        })
        .unwrap_or_default();
    let body = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items});
    let mut r = body.to_string().into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// Find the container instance: latest attempt, or the one before with `previous`.
async fn find_container(
    ctx: &ServerContext,
    namespace: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<ContainerInfo, Failure> {
    find_container_of(ctx, namespace, pod, None, container, previous).await
}

/// [`find_container`] in the pod with uid `want_uid` when given.
async fn find_container_of(
    ctx: &ServerContext,
    namespace: &str,
    pod: &str,
    want_uid: Option<&str>,
    container: &str,
    previous: bool,
) -> Result<ContainerInfo, Failure> {
    let uid = ctx.pods.lock().ok().and_then(|m| {
        m.values()
            .find(|(p, _)| {
                p.metadata.namespace.as_deref().unwrap_or("default") == namespace
                    && p.metadata.name.as_deref() == Some(pod)
                    && want_uid.is_none_or(|u| p.metadata.uid.as_deref() == Some(u))
            })
            .and_then(|(p, _)| p.metadata.uid.clone())
    });
    let Some(uid) = uid else {
        return Err(status_error(
            404,
            "NotFound",
            &format!("pod {namespace}/{pod} not found on this node"),
        ));
    };
    let mut list: Vec<ContainerInfo> = ctx
        .runtime
        .list_containers(Some(&uid))
        .await
        .map_err(|e| status_error(500, "InternalError", &e.to_string()))?
        .into_iter()
        .filter(|c| c.name == container)
        .collect();
    list.sort_by_key(|c| std::cmp::Reverse(c.attempt));
    let idx = usize::from(previous);
    list.into_iter().nth(idx).ok_or_else(|| {
        let msg = if previous {
            format!("previous terminated container {container:?} in pod {pod:?} not found")
        } else {
            format!("container {container:?} in pod {pod:?} is waiting to start")
        };
        status_error(400, "BadRequest", &msg)
    })
}

fn query_pairs(q: &Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn flag(q: &[(String, String)], k: &str) -> bool {
    q.iter().any(|(key, v)| {
        key == k && matches!(v.as_str(), "1" | "true" | "True" | "TRUE" | "t" | "T" | "")
    })
}

fn number(q: &[(String, String)], k: &str) -> Result<Option<u64>, Failure> {
    match q.iter().find(|(key, _)| key == k) {
        None => Ok(None),
        Some((_, v)) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| Some(n as u64))
            .ok_or_else(|| {
                status_error(
                    400,
                    "BadRequest",
                    &format!("{k}: {v:?} is not a non-negative integer"),
                )
            }),
    }
}

async fn container_logs(
    State(ctx): State<ServerContext>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    match container_logs_inner(ctx, namespace, pod, container, query).await {
        Ok(r) => r,
        Err(f) => f.into_response(),
    }
}

async fn container_logs_inner(
    ctx: ServerContext,
    namespace: String,
    pod: String,
    container: String,
    query: Option<String>,
) -> Result<Response, Failure> {
    let q = query_pairs(&query);
    let opts = LogOptions {
        follow: flag(&q, "follow"),
        tail_lines: number(&q, "tailLines")?,
        timestamps: flag(&q, "timestamps"),
        since_seconds: number(&q, "sinceSeconds")?,
        since_time: match q.iter().find(|(k, _)| k == "sinceTime") {
            None => None,
            Some((_, v)) => Some(v.parse().map_err(|_| {
                status_error(
                    400,
                    "BadRequest",
                    &format!("sinceTime: {v:?} is not an RFC 3339 time"),
                )
            })?),
        },
        limit_bytes: number(&q, "limitBytes")?,
    };
    let c = find_container(&ctx, &namespace, &pod, &container, flag(&q, "previous")).await?;
    let path = ctx
        .runtime
        .log_path(&c.id)
        .map_err(|e| status_error(500, "InternalError", &e.to_string()))?;
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let runtime = ctx.runtime.clone();
    let (id, uid) = (c.id.clone(), c.pod_uid.clone());
    tokio::spawn(async move {
        let still_running = || {
            let runtime = runtime.clone();
            let (id, uid) = (id.clone(), uid.clone());
            async move {
                runtime.list_containers(Some(&uid)).await.is_ok_and(|l| {
                    l.iter()
                        .any(|c| c.id == id && c.state == ContainerState::Running)
                })
            }
        };
        if let Err(e) = crate::logs::stream_log(path, opts, tx, still_running).await {
            tracing::warn!("container log: {e}");
        }
    });
    let body = Body::from_stream(tokio_stream_from(rx).map(Ok::<Bytes, std::convert::Infallible>));
    let mut r = Response::new(body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    Ok(r)
}

fn tokio_stream_from(mut rx: mpsc::Receiver<Bytes>) -> impl futures::Stream<Item = Bytes> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Subprotocols of the exec stream, preferred first.
pub const EXEC_PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Whether the request asks to upgrade to SPDY/3.1.
fn is_spdy_upgrade(h: &http::HeaderMap) -> bool {
    let has = |name: http::header::HeaderName, want: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.to_ascii_lowercase().contains(want))
        })
    };
    has(http::header::CONNECTION, "upgrade") && has(http::header::UPGRADE, "spdy/3.1")
}

/// Upstream's `httpstream.Handshake`: the first of the client's
/// `X-Stream-Protocol-Version`s the server supports.
fn negotiate(h: &http::HeaderMap, server: &[&'static str]) -> Result<&'static str, Box<Response>> {
    let client: Vec<String> = h
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if client.is_empty() {
        return Err(Box::new(failure_response(
            400,
            "BadRequest",
            "unable to upgrade: X-Stream-Protocol-Version is required",
        )));
    }
    if let Some(p) = client
        .iter()
        .find_map(|c| server.iter().find(|s| **s == c.as_str()))
    {
        return Ok(p);
    }
    let mut r = failure_response(
        403,
        "Forbidden",
        &format!(
            "unable to upgrade: unable to negotiate protocol: client supports {client:?}, server accepts {server:?}"
        ),
    );
    for p in server {
        r.headers_mut().append(
            "X-Accepted-Stream-Protocol-Versions",
            http::HeaderValue::from_static(p),
        );
    }
    Err(Box::new(r))
}

/// Answer 101 to a SPDY/3.1 upgrade and run `serve` on the session.
fn spdy_upgrade<F, Fut>(
    parts: &mut http::request::Parts,
    protocol: &'static str,
    serve: F,
) -> Response
where
    F: FnOnce(crate::httpstream::Session) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return failure_response(
            500,
            "InternalError",
            "unable to upgrade: this connection cannot be upgraded",
        );
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => serve(crate::httpstream::Session::start(TokioIo::new(up))).await,
            Err(e) => tracing::debug!("spdy upgrade failed: {e}"),
        }
    });
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("SPDY/3.1"),
    );
    h.insert(
        "X-Stream-Protocol-Version",
        http::HeaderValue::from_static(protocol),
    );
    r
}

async fn exec(
    State(ctx): State<ServerContext>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    req: Request<Body>,
) -> Response {
    let q = query_pairs(&query);
    let cmd: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if cmd.is_empty() {
        return failure_response(
            400,
            "BadRequest",
            "you must specify at least one command for the container",
        );
    }
    let target = (namespace, pod, None, container);
    streaming(ctx, target, q, StreamAction::Exec(cmd), req).await
}

async fn attach(
    State(ctx): State<ServerContext>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    req: Request<Body>,
) -> Response {
    let target = (namespace, pod, None, container);
    streaming(ctx, target, query_pairs(&query), StreamAction::Attach, req).await
}

async fn attach_uid(
    State(ctx): State<ServerContext>,
    UrlPath((namespace, pod, uid, container)): UrlPath<(String, String, String, String)>,
    RawQuery(query): RawQuery,
    req: Request<Body>,
) -> Response {
    let target = (namespace, pod, Some(uid), container);
    streaming(ctx, target, query_pairs(&query), StreamAction::Attach, req).await
}

/// `/exec` and `/attach`: check the request, find the running container, upgrade
/// (SPDY/3.1 or WebSocket) and run `action` on the streams.
async fn streaming(
    ctx: ServerContext,
    (namespace, pod, want_uid, container): (String, String, Option<String>, String),
    q: Vec<(String, String)>,
    action: StreamAction,
    req: Request<Body>,
) -> Response {
    let what = match action {
        StreamAction::Exec(_) => "exec",
        StreamAction::Attach => "attach",
    };
    let (stdin, stdout, stderr, tty) = (
        flag(&q, "stdin"),
        flag(&q, "stdout"),
        flag(&q, "stderr"),
        flag(&q, "tty"),
    );
    if !(stdin || stdout || stderr) {
        return failure_response(
            400,
            "BadRequest",
            "you must specify at least 1 of stdin, stdout, stderr",
        );
    }
    let uid = want_uid.as_deref();
    let c = match find_container_of(&ctx, &namespace, &pod, uid, &container, false).await {
        Ok(c) => c,
        Err(f) => return f.into_response(),
    };
    if c.state != ContainerState::Running {
        return failure_response(
            400,
            "BadRequest",
            &format!("container {container:?} in pod {pod:?} is not running"),
        );
    }
    let (mut parts, _body) = req.into_parts();
    let spdy = is_spdy_upgrade(&parts.headers);
    let ws = if spdy {
        None
    } else {
        match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => Some(ws),
            Err(_) => {
                return failure_response(
                    400,
                    "BadRequest",
                    &format!(
                        "{what} needs an upgrade: WebSocket with subprotocol v5.channel.k8s.io or v4.channel.k8s.io, or SPDY/3.1"
                    ),
                );
            }
        }
    };
    let Some(ws) = ws else {
        let protocol = match negotiate(&parts.headers, &SPDY_EXEC_PROTOCOLS) {
            Ok(p) => p,
            Err(r) => return *r,
        };
        let opts = ExecOptions {
            stdin,
            stdout,
            stderr: stderr && !tty,
            tty,
        };
        return spdy_upgrade(&mut parts, protocol, move |session| {
            serve_exec(session, protocol, ctx.runtime, c.id, action, opts)
        });
    };
    let ws = ws.protocols(EXEC_PROTOCOLS);
    ws.on_upgrade(move |socket| async move {
        run_exec(
            ctx.runtime,
            c.id,
            action,
            (stdin, stdout, stderr && !tty, tty),
            socket,
        )
        .await;
    })
}

/// Copy one output pipe to the socket writer as frames of `channel`.
fn forward_output(
    channel: u8,
    mut pipe: tokio::io::DuplexStream,
    out: mpsc::Sender<Message>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match pipe.read(&mut buf[1..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf[0] = channel;
            if out
                .send(Message::Binary(Bytes::copy_from_slice(&buf[..=n])))
                .await
                .is_err()
            {
                return;
            }
        }
    })
}

async fn run_exec(
    runtime: Arc<dyn PodRuntime>,
    id: String,
    action: StreamAction,
    (want_in, want_out, want_err, tty): (bool, bool, bool, bool),
    socket: WebSocket,
) {
    let v5 = socket.protocol().and_then(|p| p.to_str().ok()) == Some(EXEC_PROTOCOLS[0]);
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(32);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut forwarders = Vec::new();
    let mut pipe = |want: bool, channel: u8| -> Option<ExecOutput> {
        if !want {
            return None;
        }
        let (w, r) = tokio::io::duplex(64 * 1024);
        forwarders.push(forward_output(channel, r, out_tx.clone()));
        Some(Box::new(w))
    };
    let stdout = pipe(want_out, STDOUT);
    let stderr = pipe(want_err, STDERR);
    let (stdin, mut stdin_w) = if want_in {
        let (w, r) = tokio::io::duplex(64 * 1024);
        (Some(Box::new(r) as ExecInput), Some(w))
    } else {
        (None, None)
    };
    let (resize_tx, resize) = if tty {
        let (tx, rx) = mpsc::channel::<TerminalSize>(8);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    // Reader of client frames: stdin data, stdin close (v5), terminal resize.
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Some(Ok(msg)) = stream.next().await {
            let data = match msg {
                Message::Binary(b) => b,
                Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&ch, rest)) = data.split_first() else {
                continue;
            };
            match ch {
                STDIN => {
                    if let Some(w) = stdin_w.as_mut()
                        && w.write_all(rest).await.is_err()
                    {
                        stdin_w = None;
                    }
                }
                CLOSE if v5 && rest.first() == Some(&STDIN) => stdin_w = None,
                RESIZE => match (serde_json::from_slice::<TerminalSize>(rest), &resize_tx) {
                    // A runtime that does not read resizes must not stall stdin.
                    (Ok(size), Some(tx)) => {
                        let _ = tx.try_send(size);
                    }
                    (Err(e), _) => tracing::debug!("exec: bad resize frame: {e}"),
                    _ => {}
                },
                _ => {}
            }
        }
    });
    let streams = ExecStreams {
        stdin,
        stdout,
        stderr,
        tty,
        resize,
    };
    let result = action.run(runtime.as_ref(), &id, streams).await;
    for f in forwarders {
        let _ = f.await;
    }
    reader.abort();
    let status = action.status(&result);
    let mut frame = vec![ERROR];
    frame.extend_from_slice(status.to_string().as_bytes());
    let _ = out_tx.send(Message::Binary(frame.into())).await;
    // A normal closure (1000): clients treat it as the end of every stream, while a
    // close without a code (1005) is an error to them.
    let _ = out_tx
        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "".into(),
        })))
        .await;
    drop(out_tx);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
}

/// The WebSocket subprotocol of port-forward tunnelled in a WebSocket.
pub const PORT_FORWARD_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

async fn port_forward(
    State(ctx): State<ServerContext>,
    UrlPath((namespace, pod)): UrlPath<(String, String)>,
    req: Request<Body>,
) -> Response {
    port_forward_inner(ctx, namespace, pod, None, req).await
}

async fn port_forward_uid(
    State(ctx): State<ServerContext>,
    UrlPath((namespace, pod, uid)): UrlPath<(String, String, String)>,
    req: Request<Body>,
) -> Response {
    port_forward_inner(ctx, namespace, pod, Some(uid), req).await
}

async fn port_forward_inner(
    ctx: ServerContext,
    namespace: String,
    pod: String,
    want_uid: Option<String>,
    req: Request<Body>,
) -> Response {
    let uid = ctx.pods.lock().ok().and_then(|m| {
        m.values()
            .find(|(p, _)| {
                p.metadata.namespace.as_deref().unwrap_or("default") == namespace
                    && p.metadata.name.as_deref() == Some(pod.as_str())
            })
            .and_then(|(p, _)| p.metadata.uid.clone())
    });
    let Some(uid) = uid.filter(|u| want_uid.as_ref().is_none_or(|w| w == u)) else {
        return failure_response(
            404,
            "NotFound",
            &format!("pod {namespace}/{pod} not found on this node"),
        );
    };
    let target = Target {
        pod: format!("{pod}_{namespace}"),
        uid,
    };
    let runtime = ctx.runtime.clone();
    let (mut parts, _body) = req.into_parts();
    if is_spdy_upgrade(&parts.headers) {
        let protocol = match negotiate(&parts.headers, &[PORT_FORWARD_PROTOCOL]) {
            Ok(p) => p,
            Err(r) => return *r,
        };
        return spdy_upgrade(&mut parts, protocol, move |session| {
            serve_port_forward(session, runtime, target)
        });
    }
    let offered = parts
        .headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == PORT_FORWARD_TUNNEL_PROTOCOL);
    match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) if offered => {
            ws.protocols([PORT_FORWARD_TUNNEL_PROTOCOL])
                .on_upgrade(move |socket| async move {
                    let io = crate::httpstream::websocket_bytes(socket);
                    serve_port_forward(crate::httpstream::Session::start(io), runtime, target)
                        .await;
                })
        }
        Ok(ws) => {
            // The channel form: ports from the `port` query parameters.
            let q = query_pairs(&parts.uri.query().map(str::to_string));
            let mut ports = Vec::new();
            for (_, v) in q.iter().filter(|(k, _)| k == "port") {
                for p in v.split(',') {
                    match p.parse::<u16>() {
                        Ok(n) if n > 0 => ports.push(n),
                        _ => {
                            return failure_response(
                                400,
                                "BadRequest",
                                &format!("unable to parse {v:?} as a port"),
                            );
                        }
                    }
                }
            }
            if ports.is_empty() {
                return failure_response(400, "BadRequest", "query parameter \"port\" is required");
            }
            ws.protocols([WEBSOCKET_CHANNEL_PROTOCOL])
                .on_upgrade(move |socket| serve_websocket_channels(socket, runtime, target, ports))
        }
        Err(_) => failure_response(
            400,
            "BadRequest",
            "port-forward needs an upgrade: SPDY/3.1 (portforward.k8s.io) or WebSocket (SPDY/3.1+portforward.k8s.io)",
        ),
    }
}
