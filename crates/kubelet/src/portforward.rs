//! `kubectl port-forward` over SPDY/3.1 (`portforward.k8s.io`), plain or tunnelled
//! in a WebSocket: for every local connection the client opens an `error` and a
//! `data` stream carrying the same `port` and `requestID` headers; once both are
//! there the kubelet connects to that port on the pod's loopback and copies bytes
//! both ways on the data stream. A failure is reported as text on the error stream,
//! which then closes; the session stays up for further connections.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::httpstream::{Session, Stream, StreamReader, StreamWriter};
use crate::runtime::PodRuntime;

/// The port-forward protocol (over SPDY, and after the `SPDY/3.1+` prefix over
/// WebSocket).
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// How long the second stream of a pair may take to arrive.
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The pod a session forwards to.
#[derive(Clone, Debug)]
pub struct Target {
    /// Upstream's "pod full name" (`name_namespace`), used in error messages.
    pub pod: String,
    pub uid: String,
}

#[derive(Default)]
struct Pair {
    error: Option<(StreamReader, StreamWriter)>,
    data: Option<(StreamReader, StreamWriter)>,
    port: u16,
}

/// Validate a new stream's headers as upstream does; `Err` rejects the stream.
fn check_stream(s: &Stream) -> Result<(u16, bool), String> {
    let port = s
        .headers()
        .get("port")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| "\"port\" header is required".to_string())?;
    let port: u16 = port
        .parse()
        .map_err(|e| format!("unable to parse {port:?} as a port: {e}"))?;
    if port < 1 {
        return Err(format!("port \"{port}\" must be > 0"));
    }
    match s.headers().get("streamtype").unwrap_or("") {
        "error" => Ok((port, true)),
        "data" => Ok((port, false)),
        "" => Err("\"streamType\" header is required".into()),
        other => Err(format!("invalid stream type {other:?}")),
    }
}

/// The pair a stream belongs to: its `requestID` header, or for old clients
/// without one, a guess from the stream id (error stream n, data stream n+2).
fn request_id(s: &Stream, is_error: bool) -> String {
    match s.headers().get("requestid").filter(|r| !r.is_empty()) {
        Some(r) => r.to_string(),
        None if is_error => s.id().to_string(),
        None => (i64::from(s.id()) - 2).to_string(),
    }
}

/// Serve port-forward streams until the session ends.
pub async fn serve_port_forward(mut session: Session, runtime: Arc<dyn PodRuntime>, t: Target) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let (expired_tx, mut expired_rx) = mpsc::unbounded_channel::<String>();
    loop {
        let stream = tokio::select! {
            s = session.next_stream() => match s {
                Some(s) => s,
                None => break,
            },
            Some(id) = expired_rx.recv() => {
                if let Some(p) = pairs.remove(&id) {
                    let msg = format!("(request={id}) timed out waiting for streams");
                    tracing::warn!("port-forward to {}: {msg}", t.pod);
                    if let Some((_, w)) = p.error {
                        let _ = w.send(Bytes::from(msg)).await;
                        w.finish().await;
                    }
                    if let Some((_, w)) = p.data {
                        w.reset(crate::spdy::rst::CANCEL);
                    }
                }
                continue;
            }
        };
        let (port, is_error) = match check_stream(&stream) {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("port-forward: rejecting stream {}: {e}", stream.id());
                stream.reject();
                continue;
            }
        };
        let id = request_id(&stream, is_error);
        let halves = stream.accept();
        let pair = pairs.entry(id.clone()).or_insert_with(|| {
            let (tx, id) = (expired_tx.clone(), id.clone());
            tokio::spawn(async move {
                tokio::time::sleep(STREAM_CREATION_TIMEOUT).await;
                let _ = tx.send(id);
            });
            Pair::default()
        });
        let slot = if is_error {
            &mut pair.error
        } else {
            pair.port = port;
            &mut pair.data
        };
        if slot.is_some() {
            let what = if is_error { "error" } else { "data" };
            let msg =
                format!("error processing stream for request {id}: {what} stream already assigned");
            if let Some((_, w)) = &pair.error {
                let _ = w.send(Bytes::from(msg)).await;
            }
            halves.1.reset(crate::spdy::rst::PROTOCOL_ERROR);
            continue;
        }
        *slot = Some(halves);
        if pair.error.is_some() && pair.data.is_some() {
            let Some(p) = pairs.remove(&id) else { continue };
            let (Some(error), Some(data)) = (p.error, p.data) else {
                continue;
            };
            tokio::spawn(forward(runtime.clone(), t.clone(), p.port, error, data));
        }
    }
}

/// One forwarded connection.
async fn forward(
    runtime: Arc<dyn PodRuntime>,
    t: Target,
    port: u16,
    (_error_r, error_w): (StreamReader, StreamWriter),
    (mut data_r, data_w): (StreamReader, StreamWriter),
) {
    let conn = match runtime.port_forward(&t.uid, port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "error forwarding port {port} to pod {}, uid {}: {e}",
                t.pod, t.uid
            );
            tracing::info!("{msg}");
            let _ = error_w.send(Bytes::from(msg)).await;
            error_w.finish().await;
            data_w.finish().await;
            return;
        }
    };
    let _ = conn.set_nodelay(true);
    let (mut rd, mut wr) = conn.into_split();
    // Client → pod: until the client's FIN (then half-close towards the pod) or a
    // reset.
    let to_pod = tokio::spawn(async move {
        loop {
            match data_r.recv().await {
                Ok(Some(b)) => {
                    if wr.write_all(&b).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    let _ = wr.shutdown().await;
                    // Keep the write half (and so the connection) open.
                    std::future::pending::<()>().await;
                }
                Err(_) => return,
            }
        }
    });
    // Pod → client: until the pod closes its side.
    let data_w2 = data_w.clone();
    let from_pod = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => data_w2.send(Bytes::copy_from_slice(&buf[..n])).await?,
                Err(e) => return Err(e),
            }
        }
    };
    tokio::pin!(from_pod);
    let mut to_pod = to_pod;
    let err = tokio::select! {
        r = &mut from_pod => r.err(),
        // The client reset the stream or the session ended.
        _ = &mut to_pod => None,
    };
    to_pod.abort();
    if let Some(e) = err {
        tracing::debug!("port-forward {port}: {e}");
    }
    data_w.finish().await;
    error_w.finish().await;
}

/// WebSocket subprotocol of the channel form of port-forward (kube-rs, older
/// clients): no subprotocol or this one, binary messages.
pub const WEBSOCKET_CHANNEL_PROTOCOL: &str = "v4.channel.k8s.io";

/// Port-forward in the channel form over a WebSocket: one connection per port of
/// the `port` query parameters, port `i` on channels `2i` (data) and `2i+1`
/// (error); each message is the channel byte then the payload, and the first
/// message on each channel is the port as two little-endian bytes. The socket closes
/// once every port's connection is over.
pub async fn serve_websocket_channels(
    socket: axum::extract::ws::WebSocket,
    runtime: Arc<dyn PodRuntime>,
    t: Target,
    ports: Vec<u16>,
) {
    use axum::extract::ws::{CloseFrame, Message, close_code};
    use futures::{SinkExt, StreamExt};
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: "".into(),
            })))
            .await;
    });
    let frame = |channel: usize, data: &[u8]| {
        let mut b = Vec::with_capacity(1 + data.len());
        b.push(channel as u8);
        b.extend_from_slice(data);
        Message::Binary(Bytes::from(b))
    };
    let mut inputs = Vec::new();
    let mut tasks = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        for ch in [2 * i, 2 * i + 1] {
            let _ = out_tx.send(frame(ch, &port.to_le_bytes())).await;
        }
        let (in_tx, mut in_rx) = mpsc::channel::<Bytes>(64);
        inputs.push(in_tx);
        let (runtime, t, out) = (runtime.clone(), t.clone(), out_tx.clone());
        tasks.push(tokio::spawn(async move {
            let conn = match runtime.port_forward(&t.uid, port).await {
                Ok(c) => c,
                Err(e) => {
                    let msg = format!(
                        "error forwarding port {port} to pod {}, uid {}: {e}",
                        t.pod, t.uid
                    );
                    let _ = out.send(frame(2 * i + 1, msg.as_bytes())).await;
                    return;
                }
            };
            let _ = conn.set_nodelay(true);
            let (mut rd, mut wr) = conn.into_split();
            let to_pod = async move {
                while let Some(b) = in_rx.recv().await {
                    if wr.write_all(&b).await.is_err() {
                        return;
                    }
                }
                let _ = wr.shutdown().await;
                std::future::pending::<()>().await;
            };
            let from_pod = async {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if out.send(frame(2 * i, &buf[..n])).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            };
            tokio::select! {
                _ = to_pod => {}
                _ = from_pod => {}
            }
        }));
    }
    drop(out_tx);
    let all_done = futures::future::join_all(tasks);
    tokio::pin!(all_done);
    loop {
        tokio::select! {
            _ = &mut all_done => break,
            m = stream.next() => match m {
                Some(Ok(Message::Binary(b))) => {
                    let Some((&ch, data)) = b.split_first() else { continue };
                    let ch = ch as usize;
                    // Data channels only; the client writes nothing on error channels.
                    if ch.is_multiple_of(2)
                        && let Some(tx) = inputs.get(ch / 2)
                        && !data.is_empty()
                    {
                        let _ = tx.send(Bytes::copy_from_slice(data)).await;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    inputs.clear();
                    // The client is gone: end the forwarding at once.
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    drop(inputs);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}
