//! HTTPS and WebSocket client helpers shared by the kubelet server tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const WAIT: Duration = Duration::from_secs(20);

/// Accepts any server certificate (the kubelet's is self-signed).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client config presenting `cert`/`key` (PEM files) when given.
pub fn tls(identity: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)));
    let mut cfg = match identity {
        Some((c, k)) => {
            let certs = rustls_pemfile::certs(&mut std::fs::read(c).expect("cert").as_slice())
                .collect::<Result<Vec<_>, _>>()
                .expect("certs");
            let key = rustls_pemfile::private_key(&mut std::fs::read(k).expect("key").as_slice())
                .expect("key")
                .expect("key present");
            b.with_client_auth_cert(certs, key).expect("client cert")
        }
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

pub async fn connect(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .expect("tls")
}

/// GET `path`; returns the status and the streamed body.
pub async fn get_stream(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    path: &str,
) -> (u16, hyper::body::Incoming) {
    let io = connect(addr, tls).await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "localhost")
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .expect("response in time")
        .expect("response");
    let status = resp.status().as_u16();
    (status, resp.into_body())
}

/// GET `path`; returns the status and the whole body.
pub async fn get(addr: SocketAddr, tls: Arc<rustls::ClientConfig>, path: &str) -> (u16, String) {
    let (status, body) = get_stream(addr, tls, path).await;
    let bytes = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Next data chunk of a streamed body (None at its end).
pub async fn next_chunk(body: &mut hyper::body::Incoming) -> Option<String> {
    loop {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("chunk in time")?
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            return Some(String::from_utf8_lossy(&data).into_owned());
        }
    }
}

/// What an exec returned: stdout, stderr, the status JSON and the subprotocol.
#[derive(Debug, Default)]
pub struct ExecOutcome {
    pub stdout: String,
    pub stderr: String,
    pub status: Option<serde_json::Value>,
    pub protocol: String,
}

/// Run an exec over WebSocket (subprotocol v5.channel.k8s.io), sending `stdin`
/// then closing it, and collect everything until the server closes.
pub async fn exec_ws(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    path: &str,
    stdin: &[u8],
) -> ExecOutcome {
    exec_ws_frames(addr, tls, path, &[], stdin).await
}

/// [`exec_ws`] sending the raw `frames` (channel byte first) before stdin.
pub async fn exec_ws_frames(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    path: &str,
    frames: &[&[u8]],
    stdin: &[u8],
) -> ExecOutcome {
    let io = connect(addr, tls).await;
    let mut req = format!("wss://localhost{path}")
        .into_client_request()
        .expect("ws request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        http::HeaderValue::from_static("v5.channel.k8s.io, v4.channel.k8s.io"),
    );
    let (mut ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, io))
        .await
        .expect("upgrade in time")
        .expect("upgrade");
    let mut out = ExecOutcome {
        protocol: resp
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        ..Default::default()
    };
    for f in frames {
        ws.send(Message::Binary(f.to_vec().into()))
            .await
            .expect("send frame");
    }
    if !stdin.is_empty() {
        let mut frame = vec![0u8];
        frame.extend_from_slice(stdin);
        ws.send(Message::Binary(frame.into()))
            .await
            .expect("send stdin");
    }
    ws.send(Message::Binary(vec![255u8, 0].into()))
        .await
        .expect("close stdin");
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("message in time");
        let Some(Ok(msg)) = msg else { break };
        let data = match msg {
            Message::Binary(b) => b,
            Message::Close(_) => break,
            _ => continue,
        };
        let Some((&ch, rest)) = data.split_first() else {
            continue;
        };
        let text = String::from_utf8_lossy(rest).into_owned();
        match ch {
            1 => out.stdout.push_str(&text),
            2 => out.stderr.push_str(&text),
            3 => out.status = Some(serde_json::from_str(&text).expect("status json")),
            _ => {}
        }
    }
    out
}
