//! A minimal HTTPS client for the API server under test.
//!
//! Each [`Conn`] is one keep-alive HTTP/1.1 connection over TLS, authenticated
//! with the admin client certificate of a kubeconfig. The load generators give
//! every worker its own connection, so a request costs exactly one round trip
//! and no pool bookkeeping; connection set-up (TCP + TLS) happens before the
//! clock starts. kube-rs would add its own per-request layers (tower stack,
//! typed (de)serialization) that measure the client rather than the server.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::BenchError;

/// The subset of a kubeconfig this client needs. Parsed with serde directly:
/// kube-rs' `Kubeconfig` wraps the key in `secrecy` types for no gain here.
#[derive(Deserialize)]
struct Kubeconfig {
    clusters: Vec<NamedCluster>,
    users: Vec<NamedUser>,
}

#[derive(Deserialize)]
struct NamedCluster {
    cluster: Cluster,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    certificate_authority_data: String,
}

#[derive(Deserialize)]
struct NamedUser {
    user: User,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    client_certificate_data: String,
    client_key_data: String,
}

/// Connection parameters of an API server on the loopback interface.
#[derive(Clone)]
pub struct ApiClient {
    tls: TlsConnector,
    addr: SocketAddr,
    server_name: ServerName<'static>,
    authority: String,
}

impl ApiClient {
    /// Read the first cluster and user of the kubeconfig at `path`. Only loopback
    /// servers are accepted: the benchmark never sends traffic elsewhere.
    pub fn from_kubeconfig(path: &Path) -> Result<ApiClient, BenchError> {
        let bad = |reason: String| BenchError::Kubeconfig {
            path: PathBuf::from(path),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let kc: Kubeconfig = serde_yaml_ng::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let cluster = &kc
            .clusters
            .first()
            .ok_or_else(|| bad("no cluster".into()))?
            .cluster;
        let user = &kc.users.first().ok_or_else(|| bad("no user".into()))?.user;
        let b64 = |what: &str, s: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|e| bad(format!("{what}: {e}")))
        };
        let ca_pem = b64(
            "certificate-authority-data",
            &cluster.certificate_authority_data,
        )?;
        let cert_pem = b64("client-certificate-data", &user.client_certificate_data)?;
        let key_pem = b64("client-key-data", &user.client_key_data)?;

        let uri: http::Uri = cluster
            .server
            .parse()
            .map_err(|e| bad(format!("server {:?}: {e}", cluster.server)))?;
        let authority = uri
            .authority()
            .ok_or_else(|| bad(format!("server {:?} has no host", cluster.server)))?
            .to_string();
        let host = uri.host().unwrap_or_default();
        let ip: IpAddr = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| BenchError::NotLoopback(cluster.server.clone()))?;
        if !ip.is_loopback() {
            return Err(BenchError::NotLoopback(cluster.server.clone()));
        }
        let addr = SocketAddr::new(ip, uri.port_u16().unwrap_or(443));

        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca_pem.as_slice()) {
            roots.add(cert.map_err(|e| bad(format!("CA: {e}")))?)?;
        }
        let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("client certificate: {e}")))?;
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .map_err(|e| bad(format!("client key: {e}")))?
            .ok_or_else(|| bad("no client key".into()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        Ok(ApiClient {
            tls: TlsConnector::from(Arc::new(config)),
            addr,
            server_name: ServerName::IpAddress(ip.into()),
            authority,
        })
    }

    /// Open one keep-alive HTTP/1.1 connection.
    pub async fn connect(&self) -> Result<Conn, BenchError> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = self.tls.connect(self.server_name.clone(), tcp).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            // Ends when the connection closes; its error is the request's error.
            let _ = conn.await;
        });
        Ok(Conn {
            sender,
            authority: self.authority.clone(),
        })
    }
}

/// One HTTP/1.1 connection to the API server.
pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    authority: String,
}

impl Conn {
    /// Send a request and return the response with its body still streaming.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<http::Response<Incoming>, BenchError> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, "flotilla-bench");
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default()))?;
        self.sender.ready().await?;
        Ok(self.sender.send_request(req).await?)
    }

    /// Send a request and read the whole response; statuses other than `expect`
    /// are errors.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        expect: &[StatusCode],
    ) -> Result<(StatusCode, Bytes), BenchError> {
        let resp = self.send(method.clone(), path, body).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !expect.contains(&status) {
            return Err(BenchError::Status {
                method,
                path: path.to_string(),
                status,
                body: String::from_utf8_lossy(&body[..body.len().min(400)]).into_owned(),
            });
        }
        Ok((status, body))
    }
}
