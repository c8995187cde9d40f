//! The kubelet's streaming endpoints against the fake runtime, driven by a small
//! SPDY client written here: port-forward (plain SPDY, tunnelled in a WebSocket,
//! and the WebSocket channel form) to a loopback server, a refused port, exec with
//! the v4 and v2 channel protocols (exit codes, terminal resizes), and protocol
//! negotiation.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kubelet::runtime::{ContainerConfig, FakeBehavior, FakeRuntime, PodRuntime};
use kubelet::server::{ServerContext, TlsSettings};
use kubelet::spdy::{self, Frame, Headers};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

struct Node {
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    runtime: FakeRuntime,
    pki: apiserver::pki::Pki,
    shutdown: CancellationToken,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = apiserver::pki::Pki::at(dir.path());
    pki.ensure(&[]).expect("pki");
    let runtime = FakeRuntime::new();
    runtime.set_behavior(
        "busybox",
        FakeBehavior {
            exec_exit_code: 3,
            ..Default::default()
        },
    );
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-web"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }))
    .expect("pod");
    let sandbox = runtime.ensure_sandbox(&pod).await.expect("sandbox");
    let image = runtime.pull_image("busybox", &[]).await.expect("pull");
    let spec = pod.spec.as_ref().expect("spec").containers[0].clone();
    let id = runtime
        .create_container(
            &pod,
            &sandbox,
            &ContainerConfig {
                spec,
                image,
                env: Vec::new(),
                attempt: 0,
                init: false,
                volume_files: Default::default(),
            },
        )
        .await
        .expect("create");
    runtime.start_container(&id).await.expect("start");
    let pods = Arc::new(Mutex::new(HashMap::from([(
        "uid-web".to_string(),
        (pod, PodStatus::default()),
    )])));
    let shutdown = CancellationToken::new();
    let rt: Arc<dyn PodRuntime> = Arc::new(runtime.clone());
    let addr = kubelet::server::serve_https(
        "127.0.0.1:0".parse().expect("addr"),
        TlsSettings {
            cert_dir: dir.path().join("kubelet-pki"),
            hosts: vec!["node-a".into()],
            client_ca_file: pki.ca_cert.display().to_string(),
            anonymous: false,
        },
        ServerContext {
            runtime: rt,
            pods,
            stats: None,
        },
        shutdown.clone(),
    )
    .await
    .expect("serve");
    Node {
        _dir: dir,
        addr,
        runtime,
        pki,
        shutdown,
    }
}

impl Node {
    fn client(&self) -> Arc<rustls::ClientConfig> {
        common::tls(Some((&self.pki.admin_cert, &self.pki.admin_key)))
    }

    /// Send an upgrade request; returns the response head and the connection.
    async fn upgrade(
        &self,
        method: &str,
        path: &str,
        protocols: &[&str],
    ) -> (
        String,
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    ) {
        let mut io = common::connect(self.addr, self.client()).await;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n"
        );
        for p in protocols {
            req.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
        }
        req.push_str("\r\n");
        io.write_all(req.as_bytes()).await.expect("write request");
        // Read the head byte by byte so that no SPDY byte is consumed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let b = tokio::time::timeout(common::WAIT, io.read_u8())
                .await
                .expect("head in time")
                .expect("head");
            head.push(b);
        }
        (String::from_utf8_lossy(&head).into_owned(), io)
    }
}

/// A SPDY client on any byte stream.
struct Client<IO> {
    io: IO,
    enc: spdy::Encoder,
    dec: spdy::Decoder,
    buf: BytesMut,
    next_id: u32,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Client<IO> {
    fn new(io: IO) -> Self {
        Self {
            io,
            enc: spdy::Encoder::new(),
            dec: spdy::Decoder::new(),
            buf: BytesMut::new(),
            next_id: 1,
        }
    }

    async fn send(&mut self, f: Frame) {
        let mut out = BytesMut::new();
        self.enc.encode(&f, &mut out).expect("encode");
        self.io.write_all(&out).await.expect("write");
        self.io.flush().await.expect("flush");
    }

    async fn open(&mut self, pairs: &[(&str, &str)]) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        self.send(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: Headers(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        })
        .await;
        id
    }

    async fn data(&mut self, id: u32, data: &[u8], fin: bool) {
        self.send(Frame::Data {
            stream_id: id,
            flags: if fin { spdy::FLAG_FIN } else { 0 },
            data: Bytes::copy_from_slice(data),
        })
        .await;
    }

    async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).expect("decode") {
                return Some(f);
            }
            let n = tokio::time::timeout(common::WAIT, self.io.read_buf(&mut self.buf))
                .await
                .expect("frame in time")
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Collect data per stream until every stream in `ids` got FIN; replies are
    /// counted, pings and window updates skipped.
    async fn collect(&mut self, ids: &[u32]) -> (HashMap<u32, Vec<u8>>, usize) {
        let mut data: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut open: Vec<u32> = ids.to_vec();
        let mut replies = 0;
        while !open.is_empty() {
            match self.recv().await.expect("frame before the end") {
                Frame::SynReply { .. } => replies += 1,
                Frame::Data {
                    stream_id,
                    flags,
                    data: d,
                } => {
                    data.entry(stream_id).or_default().extend_from_slice(&d);
                    if flags & spdy::FLAG_FIN != 0 {
                        open.retain(|i| *i != stream_id);
                    }
                }
                Frame::RstStream { stream_id, status } => {
                    panic!("stream {stream_id} reset with {status}")
                }
                _ => {}
            }
        }
        (data, replies)
    }

    /// One forwarded connection: send `request`, return the error stream's text and
    /// the data received.
    async fn forward(&mut self, port: u16, request_id: u32, request: &[u8]) -> (String, Vec<u8>) {
        let port = port.to_string();
        let rid = request_id.to_string();
        let e = self
            .open(&[
                ("streamType", "error"),
                ("port", &port),
                ("requestID", &rid),
            ])
            .await;
        // Like kubectl: the client writes nothing on the error stream.
        self.data(e, b"", true).await;
        let d = self
            .open(&[("streamType", "data"), ("port", &port), ("requestID", &rid)])
            .await;
        self.data(d, request, true).await;
        let (mut got, replies) = self.collect(&[e, d]).await;
        assert_eq!(replies, 2, "one SYN_REPLY per stream");
        (
            String::from_utf8_lossy(&got.remove(&e).unwrap_or_default()).into_owned(),
            got.remove(&d).unwrap_or_default(),
        )
    }
}

/// A loopback server standing for the pod's port: reads one request line and
/// answers with `size` bytes, then closes.
async fn backend(size: usize) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut line = Vec::new();
                let mut b = [0u8; 1];
                while c.read_exact(&mut b).await.is_ok() && b[0] != b'\n' {
                    line.push(b[0]);
                }
                let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                let mut out = format!("{}:", String::from_utf8_lossy(&line)).into_bytes();
                out.extend_from_slice(&body);
                let _ = c.write_all(&out).await;
                let _ = c.shutdown().await;
            });
        }
    });
    addr
}

fn expected(line: &str, size: usize) -> Vec<u8> {
    let mut out = format!("{line}:").into_bytes();
    out.extend((0..size).map(|i| (i % 251) as u8));
    out
}

#[tokio::test]
async fn port_forward_over_spdy_copies_both_ways_and_reports_refused_ports() {
    let n = start().await;
    let size = 1 << 20;
    n.runtime.set_forward_target(80, backend(size).await);
    let (head, io) = n
        .upgrade("POST", "/portForward/default/web", &["portforward.k8s.io"])
        .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: spdy/3.1"),
        "{head}"
    );
    assert!(head.contains("portforward.k8s.io"), "{head}");
    let mut c = Client::new(io);
    // Two sequential connections, each moving 1 MiB back without the client
    // sending a single WINDOW_UPDATE (as spdystream behaves).
    for i in 0..2 {
        let (err, data) = c.forward(80, i, b"GET /big\n").await;
        assert_eq!(err, "");
        assert_eq!(data.len(), expected("GET /big", size).len());
        assert!(data == expected("GET /big", size), "payload differs");
    }
    // A port nobody listens on: the message on the error stream, as upstream.
    let (err, data) = c.forward(81, 2, b"x\n").await;
    assert!(
        err.starts_with("error forwarding port 81 to pod web_default, uid uid-web:"),
        "{err}"
    );
    assert!(data.is_empty());
    // The session survives: another connection works.
    let (err, data) = c.forward(80, 3, b"again\n").await;
    assert_eq!(err, "");
    assert_eq!(data, expected("again", size));
    // Pings are answered.
    c.send(Frame::Ping { id: 7 }).await;
    loop {
        match c.recv().await.expect("pong") {
            Frame::Ping { id } => {
                assert_eq!(id, 7);
                break;
            }
            Frame::WindowUpdate { .. } => {}
            f => panic!("unexpected {f:?}"),
        }
    }
}

#[tokio::test]
async fn port_forward_without_request_ids_pairs_by_stream_id() {
    let n = start().await;
    n.runtime.set_forward_target(80, backend(10).await);
    let (head, io) = n
        .upgrade("POST", "/portForward/default/web", &["portforward.k8s.io"])
        .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut c = Client::new(io);
    let e = c.open(&[("streamType", "error"), ("port", "80")]).await;
    let d = c.open(&[("streamType", "data"), ("port", "80")]).await;
    c.data(d, b"old\n", true).await;
    let (got, _) = c.collect(&[e, d]).await;
    assert_eq!(
        got.get(&d).cloned().unwrap_or_default(),
        expected("old", 10)
    );
    // A stream without a port is refused.
    let bad = c.open(&[("streamType", "data")]).await;
    loop {
        match c.recv().await.expect("frame") {
            Frame::SynReply {
                stream_id, flags, ..
            } if stream_id == bad => {
                assert_ne!(flags & spdy::FLAG_FIN, 0);
                break;
            }
            _ => {}
        }
    }
}

/// A WebSocket's binary messages as a byte stream (client side).
fn ws_bytes<S>(ws: tokio_tungstenite::WebSocketStream<S>) -> tokio::io::DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let (mut rd, mut wr) = tokio::io::split(theirs);
        let up = async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = rd.read(&mut buf).await {
                if n == 0
                    || sink
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                {
                    break;
                }
            }
        };
        let down = async move {
            while let Some(Ok(m)) = stream.next().await {
                if let Message::Binary(b) = m
                    && wr.write_all(&b).await.is_err()
                {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        };
        tokio::join!(up, down);
    });
    ours
}

#[tokio::test]
async fn port_forward_tunnelled_in_a_websocket() {
    let n = start().await;
    n.runtime.set_forward_target(80, backend(300_000).await);
    let io = common::connect(n.addr, n.client()).await;
    let mut req = "wss://localhost/portForward/default/web"
        .into_client_request()
        .expect("ws request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        http::HeaderValue::from_static("SPDY/3.1+portforward.k8s.io"),
    );
    let (ws, resp) = tokio::time::timeout(common::WAIT, tokio_tungstenite::client_async(req, io))
        .await
        .expect("upgrade in time")
        .expect("upgrade");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("SPDY/3.1+portforward.k8s.io")
    );
    let mut c = Client::new(ws_bytes(ws));
    let (err, data) = c.forward(80, 0, b"tunnel\n").await;
    assert_eq!(err, "");
    assert_eq!(data, expected("tunnel", 300_000));
}

#[tokio::test]
async fn exec_over_spdy_v4_streams_and_reports_the_exit_code() {
    let n = start().await;
    let (head, io) = n
        .upgrade(
            "POST",
            "/exec/default/web/app?command=sh&command=-c&command=echo+hi&stdin=1&stdout=1&stderr=1",
            &[
                "v4.channel.k8s.io",
                "v3.channel.k8s.io",
                "v2.channel.k8s.io",
                "channel.k8s.io",
            ],
        )
        .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("v4.channel.k8s.io"), "{head}");
    let mut c = Client::new(io);
    let e = c.open(&[("streamType", "error")]).await;
    let i = c.open(&[("streamType", "stdin")]).await;
    let o = c.open(&[("streamType", "stdout")]).await;
    let r = c.open(&[("streamType", "stderr")]).await;
    c.data(i, b"typed input\n", true).await;
    let (got, replies) = c.collect(&[e, o, r]).await;
    assert_eq!(replies, 4);
    let text =
        |id| String::from_utf8_lossy(got.get(&id).map(Vec::as_slice).unwrap_or(b"")).into_owned();
    assert_eq!(text(o), "sh -c echo hi\ntyped input\n");
    assert_eq!(text(r), "stderr: sh -c echo hi\n");
    let status: serde_json::Value = serde_json::from_str(&text(e)).expect("status json");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
}

#[tokio::test]
async fn attach_over_spdy_v4_streams_stdin_and_reports_success() {
    let n = start().await;
    let (head, io) = n
        .upgrade(
            "POST",
            "/attach/default/web/app?stdin=1&stdout=1&stderr=1",
            &["v4.channel.k8s.io"],
        )
        .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut c = Client::new(io);
    let e = c.open(&[("streamType", "error")]).await;
    let i = c.open(&[("streamType", "stdin")]).await;
    let o = c.open(&[("streamType", "stdout")]).await;
    let r = c.open(&[("streamType", "stderr")]).await;
    c.data(i, b"typed input\n", true).await;
    let (got, _) = c.collect(&[e, o, r]).await;
    let text =
        |id| String::from_utf8_lossy(got.get(&id).map(Vec::as_slice).unwrap_or(b"")).into_owned();
    assert_eq!(text(o), "attached\ntyped input\n");
    let status: serde_json::Value = serde_json::from_str(&text(e)).expect("status json");
    assert_eq!(status["status"], "Success");
}

#[tokio::test]
async fn exec_over_spdy_v2_reports_only_failures_as_text() {
    let n = start().await;
    let (head, io) = n
        .upgrade(
            "POST",
            "/exec/default/web/app?command=true&stdout=1",
            &["v2.channel.k8s.io"],
        )
        .await;
    assert!(head.contains("v2.channel.k8s.io"), "{head}");
    let mut c = Client::new(io);
    let e = c.open(&[("streamType", "error")]).await;
    let o = c.open(&[("streamType", "stdout")]).await;
    let (got, _) = c.collect(&[e, o]).await;
    assert_eq!(got.get(&o).cloned().unwrap_or_default(), b"true\n");
    let err = String::from_utf8_lossy(&got.get(&e).cloned().unwrap_or_default()).into_owned();
    assert!(
        err.starts_with("command terminated with non-zero exit code"),
        "{err}"
    );
}

#[tokio::test]
async fn spdy_negotiation_failures_answer_with_status() {
    let n = start().await;
    let (head, _) = n
        .upgrade(
            "POST",
            "/exec/default/web/app?command=sh&stdout=1",
            &["v9.channel.k8s.io"],
        )
        .await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-accepted-stream-protocol-versions: v4.channel.k8s.io"),
        "{head}"
    );
    let (head, _) = n.upgrade("POST", "/portForward/default/web", &[]).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let (head, _) = n
        .upgrade("POST", "/portForward/default/nope", &["portforward.k8s.io"])
        .await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (status, body) = common::get(n.addr, n.client(), "/portForward/default/web").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("needs an upgrade"), "{body}");
}

#[tokio::test]
async fn port_forward_channel_form_over_websocket() {
    let n = start().await;
    n.runtime.set_forward_target(80, backend(100_000).await);
    let io = common::connect(n.addr, n.client()).await;
    let mut req = "wss://localhost/portForward/default/web?port=80&port=81"
        .into_client_request()
        .expect("ws request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        http::HeaderValue::from_static("v4.channel.k8s.io"),
    );
    let (mut ws, _) = tokio::time::timeout(common::WAIT, tokio_tungstenite::client_async(req, io))
        .await
        .expect("upgrade in time")
        .expect("upgrade");
    ws.send(Message::Binary(b"\x00hello\n".to_vec().into()))
        .await
        .expect("send");
    let mut per_channel: HashMap<u8, Vec<Vec<u8>>> = HashMap::new();
    while let Some(Ok(m)) = tokio::time::timeout(common::WAIT, ws.next())
        .await
        .expect("message in time")
    {
        if let Message::Binary(b) = m {
            per_channel.entry(b[0]).or_default().push(b[1..].to_vec());
        }
    }
    // The first message of every channel is its port, little-endian.
    for (ch, port) in [(0u8, 80u16), (1, 80), (2, 81), (3, 81)] {
        assert_eq!(per_channel[&ch][0], port.to_le_bytes(), "channel {ch}");
    }
    let data: Vec<u8> = per_channel[&0][1..].concat();
    assert_eq!(data, expected("hello", 100_000));
    let err = String::from_utf8_lossy(&per_channel[&3][1]).into_owned();
    assert!(
        err.starts_with("error forwarding port 81 to pod web_default"),
        "{err}"
    );
    assert_eq!(per_channel[&1].len(), 1, "no error for port 80");
}

#[tokio::test]
async fn exec_over_spdy_with_a_terminal_passes_resizes() {
    let n = start().await;
    let (head, io) = n
        .upgrade(
            "POST",
            "/exec/default/web/app?command=sh&stdin=true&stdout=true&stderr=true&tty=true",
            &["v4.channel.k8s.io"],
        )
        .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut c = Client::new(io);
    // With a terminal there is no stderr stream, and a resize stream instead.
    let e = c.open(&[("streamType", "error")]).await;
    let i = c.open(&[("streamType", "stdin")]).await;
    let o = c.open(&[("streamType", "stdout")]).await;
    let r = c.open(&[("streamType", "resize")]).await;
    // Two sizes in one write, then one split across two.
    c.data(r, br#"{"Width":100,"Height":30}{"Width":120,"#, false)
        .await;
    c.data(r, br#""Height":40}"#, false).await;
    // Let the sizes arrive before stdin ends the fake process.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    c.data(i, b"ls\n", true).await;
    let (got, _) = c.collect(&[e, o]).await;
    assert_eq!(got.get(&o).cloned().unwrap_or_default(), b"sh\nls\n");
    let sizes = n.runtime.resizes();
    assert_eq!(
        sizes,
        vec![
            kubelet::runtime::TerminalSize {
                width: 100,
                height: 30
            },
            kubelet::runtime::TerminalSize {
                width: 120,
                height: 40
            }
        ]
    );
}
