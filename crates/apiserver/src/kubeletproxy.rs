//! `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`: the API server
//! finds the pod's node and proxies the request to that node's kubelet over HTTPS
//! (`/containerLogs/…`, `/exec/…`, `/attach/…`, `/portForward/…`), presenting its
//! `kube-apiserver-kubelet-client` certificate. Logs are streamed through; exec,
//! attach and port-forward are upgrades (WebSocket or SPDY/3.1) whose bytes are
//! copied both ways untouched.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::errors::{ApiError, ApiResult};
use crate::handlers::ResourceRoute;
use crate::pki::Pki;
use crate::server::ApiServer;

/// How long dialing a kubelet (TCP + TLS) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Log options forwarded to the kubelet as they are.
const LOG_OPTIONS: [&str; 7] = [
    "follow",
    "previous",
    "timestamps",
    "sinceSeconds",
    "sinceTime",
    "tailLines",
    "limitBytes",
];

/// Accepts any kubelet serving certificate. Upstream does the same when the API
/// server runs without `--kubelet-certificate-authority` (its default): kubelets
/// serve self-signed certificates the API server cannot verify.
#[derive(Debug)]
struct AnyKubeletCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyKubeletCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_tls(pki: &Pki) -> ApiResult<rustls::ClientConfig> {
    let err = |what: &str, e: &dyn std::fmt::Display| {
        ApiError::internal(format!("kubelet client certificate {what}: {e}"))
    };
    let cert_pem = std::fs::read(&pki.kubelet_client_cert).map_err(|e| err("read", &e))?;
    let key_pem = std::fs::read(&pki.kubelet_client_key).map_err(|e| err("read key", &e))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| err("parse", &e))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| err("parse key", &e))?
        .ok_or_else(|| err("parse key", &"no private key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("tls", &e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyKubeletCert(provider)))
        .with_client_auth_cert(certs, key)
        .map_err(|e| err("tls", &e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Where a pod's kubelet listens, and which container a request is for.
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) container: String,
}

async fn target(
    server: &ApiServer,
    r: &ResourceRoute,
    container: Option<&str>,
) -> ApiResult<Target> {
    let pod_name = r.name.clone().unwrap_or_default();
    let pod = crate::handlers::get_object(server, r).await?.value();
    let names = |field: &str| -> Vec<String> {
        pod["spec"][field]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (main, init, ephemeral) = (
        names("containers"),
        names("initContainers"),
        names("ephemeralContainers"),
    );
    let container = match container.filter(|c| !c.is_empty()) {
        Some(c) => {
            if !main.iter().chain(&init).chain(&ephemeral).any(|n| n == c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {pod_name}"
                )));
            }
            c.to_string()
        }
        None if main.len() == 1 => main[0].clone(),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                main.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            return Err(ApiError::bad_request(msg));
        }
    };
    pod_node_target(server, &pod, &pod_name, container).await
}

/// The kubelet of the node `pod` is bound to.
async fn pod_node_target(
    server: &ApiServer,
    pod: &Value,
    pod_name: &str,
    container: String,
) -> ApiResult<Target> {
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {pod_name} does not have a host assigned"
        )));
    }
    let nodes = server
        .resource("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes not served"))?;
    let key = crate::registry::object_key(&nodes, "", node_name);
    let node: Value = server
        .cache
        .get(&key)
        .await
        .ok_or_else(|| ApiError::not_found("nodes", "", node_name))?
        .value();
    let mut t = node_target(&node, node_name)?;
    t.container = container;
    Ok(t)
}

/// Where a node's kubelet listens (its kubelet endpoint port and first address).
pub(crate) fn node_target(node: &Value, node_name: &str) -> ApiResult<Target> {
    // DaemonEndpoint serializes its port as `Port` (capitalised), as upstream does.
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(0);
    if port == 0 {
        return Err(ApiError::new(
            500,
            "InternalError",
            format!(
                "error dialing backend: node {node_name:?} has no kubelet endpoint (status.daemonEndpoints.kubeletEndpoint.port is not set)"
            ),
        ));
    }
    let addresses = node["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let host = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|t| {
            addresses
                .iter()
                .find(|a| a["type"] == *t)
                .and_then(|a| a["address"].as_str())
                .filter(|s| !s.is_empty())
        })
        .ok_or_else(|| {
            ApiError::new(
                500,
                "InternalError",
                format!("error dialing backend: node {node_name:?} reports no address"),
            )
        })?
        .to_string();
    Ok(Target {
        host,
        port,
        container: String::new(),
    })
}

/// Open an HTTP/1.1 connection to the kubelet (TLS with the client certificate).
pub(crate) async fn dial(
    server: &ApiServer,
    t: &Target,
) -> ApiResult<hyper::client::conn::http1::SendRequest<Body>> {
    let dial_err = |e: &dyn std::fmt::Display| {
        ApiError::new(
            500,
            "InternalError",
            format!("error dialing backend: {}:{}: {e}", t.host, t.port),
        )
    };
    let tls = client_tls(&Pki::at(&server.config.data_dir))?;
    let addr = match t.host.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, t.port).to_string(),
        Err(_) => format!("{}:{}", t.host, t.port),
    };
    let name = rustls::pki_types::ServerName::try_from(t.host.clone()).map_err(|e| dial_err(&e))?;
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(&addr).await?;
        let _ = tcp.set_nodelay(true);
        tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
    };
    let stream = tokio::time::timeout(DIAL_TIMEOUT, connect)
        .await
        .map_err(|_| dial_err(&"timed out"))?
        .map_err(|e| dial_err(&e))?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| dial_err(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("kubelet connection: {e}");
        }
    });
    Ok(send)
}

fn query_pairs(req: &Request<Body>) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn encode(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Pass a kubelet response through (status, content type, streamed body).
fn relay(resp: http::Response<hyper::body::Incoming>) -> Response {
    let (parts, body) = resp.into_parts();
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = parts.status;
    for h in [header::CONTENT_TYPE] {
        if let Some(v) = parts.headers.get(&h) {
            out.headers_mut().insert(h, v.clone());
        }
    }
    out
}

/// `GET pods/{name}/log`.
pub async fn pod_log(
    server: &ApiServer,
    r: &ResourceRoute,
    req: Request<Body>,
) -> ApiResult<Response> {
    let q = query_pairs(&req);
    let container = q
        .iter()
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.as_str());
    let t = target(server, r, container).await?;
    let forwarded: Vec<(String, String)> = q
        .iter()
        .filter(|(k, _)| LOG_OPTIONS.contains(&k.as_str()))
        .cloned()
        .collect();
    let mut uri = format!(
        "/containerLogs/{}/{}/{}",
        r.namespace,
        r.name.as_deref().unwrap_or(""),
        t.container
    );
    if !forwarded.is_empty() {
        uri.push('?');
        uri.push_str(&encode(&forwarded));
    }
    let mut send = dial(server, &t).await?;
    let kreq = Request::get(uri)
        .header(header::HOST, format!("{}:{}", t.host, t.port))
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = send
        .send_request(kreq)
        .await
        .map_err(|e| ApiError::internal(format!("proxying to kubelet: {e}")))?;
    Ok(relay(resp))
}

/// The upgrade a streaming request asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    WebSocket,
    Spdy,
}

fn upgrade_of(req: &Request<Body>, what: &str) -> ApiResult<Upgrade> {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    match upgrade.as_str() {
        "websocket" => Ok(Upgrade::WebSocket),
        "spdy/3.1" => Ok(Upgrade::Spdy),
        other => Err(ApiError::bad_request(format!(
            "{what} needs an upgrade to WebSocket or SPDY/3.1; {} is not supported",
            if other.is_empty() {
                "a request without upgrade"
            } else {
                other
            }
        ))),
    }
}

/// Headers of an upgrade request passed to the kubelet, and of its 101 answer
/// passed back.
const UPGRADE_REQUEST_HEADERS: [&str; 4] = [
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];
const UPGRADE_RESPONSE_HEADERS: [&str; 5] = [
    "connection",
    "upgrade",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// Send the upgrade request `uri` to the kubelet and, on 101, splice the client's
/// and the kubelet's upgraded connections; otherwise relay the kubelet's answer.
async fn proxy_upgrade(
    server: &ApiServer,
    t: &Target,
    kind: Upgrade,
    uri: String,
    mut req: Request<Body>,
    what: &'static str,
) -> ApiResult<Response> {
    let mut kreq = Request::get(uri)
        .header(header::HOST, format!("{}:{}", t.host, t.port))
        .header(header::CONNECTION, "Upgrade")
        .header(
            header::UPGRADE,
            match kind {
                Upgrade::WebSocket => "websocket",
                Upgrade::Spdy => "SPDY/3.1",
            },
        )
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if kind == Upgrade::Spdy {
        // Keep the client's method: SPDY clients POST.
        *kreq.method_mut() = req.method().clone();
    }
    for h in UPGRADE_REQUEST_HEADERS {
        for v in req.headers().get_all(h) {
            kreq.headers_mut().append(h, v.clone());
        }
    }
    let mut send = dial(server, t).await?;
    let mut resp = send
        .send_request(kreq)
        .await
        .map_err(|e| ApiError::internal(format!("proxying to kubelet: {e}")))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let accepted: Vec<HeaderValue> = resp
            .headers()
            .get_all("x-accepted-stream-protocol-versions")
            .iter()
            .cloned()
            .collect();
        let mut out = relay(resp);
        for v in accepted {
            out.headers_mut()
                .append("x-accepted-stream-protocol-versions", v);
        }
        return Ok(out);
    }
    let mut out = Response::new(Body::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for h in UPGRADE_RESPONSE_HEADERS {
        if let Some(v) = resp.headers().get(h) {
            out.headers_mut().insert(h, v.clone());
        }
    }
    if !out.headers().contains_key(header::CONNECTION) {
        out.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    }
    let client_side = hyper::upgrade::on(&mut req);
    let kubelet_side = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, kubelet) = match tokio::join!(client_side, kubelet_side) {
            (Ok(c), Ok(k)) => (c, k),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!("{what} upgrade failed: {e}");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut kubelet = TokioIo::new(kubelet);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
            tracing::debug!("{what} stream ended: {e}");
        }
    });
    Ok(out)
}

/// `GET|POST pods/{name}/exec` with a WebSocket or SPDY/3.1 upgrade.
pub async fn pod_exec(
    server: &ApiServer,
    r: &ResourceRoute,
    req: Request<Body>,
) -> ApiResult<Response> {
    pod_stream(
        server,
        r,
        req,
        "exec",
        &["command", "stdin", "stdout", "stderr", "tty"],
    )
    .await
}

/// `GET|POST pods/{name}/attach` with a WebSocket or SPDY/3.1 upgrade.
pub async fn pod_attach(
    server: &ApiServer,
    r: &ResourceRoute,
    req: Request<Body>,
) -> ApiResult<Response> {
    pod_stream(
        server,
        r,
        req,
        "attach",
        &["stdin", "stdout", "stderr", "tty"],
    )
    .await
}

/// Proxies an upgraded `pods/{name}/<verb>` stream to the kubelet's
/// `/<verb>/{namespace}/{pod}/{container}`, forwarding the query parameters `params`.
async fn pod_stream(
    server: &ApiServer,
    r: &ResourceRoute,
    req: Request<Body>,
    verb: &'static str,
    params: &[&str],
) -> ApiResult<Response> {
    let q = query_pairs(&req);
    let container = q
        .iter()
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.as_str());
    let t = target(server, r, container).await?;
    let kind = upgrade_of(&req, verb)?;
    let forwarded: Vec<(String, String)> = q
        .iter()
        .filter(|(k, _)| params.contains(&k.as_str()))
        .cloned()
        .collect();
    let uri = format!(
        "/{verb}/{}/{}/{}?{}",
        r.namespace,
        r.name.as_deref().unwrap_or(""),
        t.container,
        encode(&forwarded)
    );
    proxy_upgrade(server, &t, kind, uri, req, verb).await
}

/// `GET|POST pods/{name}/portforward` with a SPDY/3.1 upgrade (or a WebSocket
/// tunnelling SPDY, subprotocol `SPDY/3.1+portforward.k8s.io`).
pub async fn pod_portforward(
    server: &ApiServer,
    r: &ResourceRoute,
    req: Request<Body>,
) -> ApiResult<Response> {
    let pod_name = r.name.clone().unwrap_or_default();
    let pod = crate::handlers::get_object(server, r).await?.value();
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    if matches!(phase, "Succeeded" | "Failed") {
        return Err(ApiError::bad_request(format!(
            "pod {pod_name} is not running (phase {phase}): cannot forward ports to it"
        )));
    }
    let t = pod_node_target(server, &pod, &pod_name, String::new()).await?;
    let kind = upgrade_of(&req, "port-forward")?;
    // PodPortForwardOptions.ports (the WebSocket channel form) reach the kubelet as
    // `port` parameters, as upstream passes them.
    let ports: Vec<(String, String)> = query_pairs(&req)
        .into_iter()
        .filter(|(k, _)| k == "ports")
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|p| ("port".to_string(), p.trim().to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut uri = format!("/portForward/{}/{}", r.namespace, pod_name);
    if !ports.is_empty() {
        uri.push('?');
        uri.push_str(&encode(&ports));
    }
    proxy_upgrade(server, &t, kind, uri, req, "port-forward").await
}
