//! The etcd side of the store comparison: a throwaway etcd process on loopback
//! and a put loop over its v3 gRPC API.
//!
//! The `etcd-client` crate generates its code with `protoc` at build time, which
//! this workspace does not require. A unary gRPC call is small enough to frame by
//! hand: the request is a prost message (the two fields of `PutRequest` we use,
//! declared with prost's derive), sent over one HTTP/2 cleartext connection as
//! etcd's own Go client does, and the call succeeds when `grpc-status` is 0. So
//! the peer is measured on its native protocol, without the JSON gateway.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::process::{Child, Command};

use crate::BenchError;
use crate::report::PutFigures;
use crate::stats::{rate, summarize};

/// `etcdserverpb.PutRequest`, fields 1 (key) and 2 (value).
#[derive(Clone, PartialEq, prost::Message)]
struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// gRPC's length-prefixed message framing: flag byte 0 (uncompressed), u32 length.
fn grpc_frame(msg: &impl Message) -> Bytes {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    // Cannot fail: the buffer has the capacity encode() checks for.
    let _ = msg.encode(&mut buf);
    buf.freeze()
}

/// A running etcd with its data under a directory of ours.
pub struct Etcd {
    child: Child,
    pub client: SocketAddr,
    pub version: String,
}

fn free_port() -> Result<u16, BenchError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Etcd {
    /// Start `bin` with its data in `dir` (a fresh directory) on two free loopback ports.
    pub async fn start(bin: &Path, dir: &Path) -> Result<Etcd, BenchError> {
        let version = std::process::Command::new(bin)
            .arg("--version")
            .output()
            .map_err(|e| BenchError::Etcd(format!("cannot run {}: {e}", bin.display())))?;
        let version = String::from_utf8_lossy(&version.stdout)
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("etcd Version: "))
            .unwrap_or("unknown")
            .trim()
            .to_string();
        let client = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let peer = format!("http://127.0.0.1:{}", free_port()?);
        let client_url = format!("http://{client}");
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.with_extension("log"))?;
        let child = Command::new(bin)
            .arg("--name=bench")
            .arg(format!("--data-dir={}", dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=bench={peer}"))
            .arg("--initial-cluster-state=new")
            // 8 GiB: the default 2 GiB quota would not matter for these sizes,
            // but a large one keeps the alarm out of the picture entirely.
            .arg("--quota-backend-bytes=8589934592")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::Etcd(format!("cannot run {}: {e}", bin.display())))?;
        let mut etcd = Etcd {
            child,
            client,
            version,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = async {
                let mut kv = GrpcKv::connect(etcd.client).await?;
                kv.put(b"/bench-ready".to_vec(), b"1".to_vec()).await
            };
            match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(())) => return Ok(etcd),
                _ if Instant::now() > deadline => {
                    etcd.stop().await;
                    return Err(BenchError::Etcd(format!(
                        "etcd did not accept a put within 30 s (log: {})",
                        dir.with_extension("log").display()
                    )));
                }
                _ => {
                    if let Ok(Some(status)) = etcd.child.try_wait() {
                        return Err(BenchError::Etcd(format!(
                            "etcd exited with {status} (log: {})",
                            dir.with_extension("log").display()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Kill etcd and wait for it.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// One HTTP/2 connection speaking etcd's KV gRPC service.
#[derive(Clone)]
pub struct GrpcKv {
    sender: http2::SendRequest<Full<Bytes>>,
    uri: http::Uri,
}

impl GrpcKv {
    pub async fn connect(addr: SocketAddr) -> Result<GrpcKv, BenchError> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let uri = format!("http://{addr}/etcdserverpb.KV/Put")
            .parse()
            .map_err(|e| BenchError::Etcd(format!("bad URI: {e}")))?;
        Ok(GrpcKv { sender, uri })
    }

    /// `KV.Put(key, value)`; Ok once etcd acknowledged it (committed and applied).
    pub async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), BenchError> {
        let req = Request::post(self.uri.clone())
            .header(header::CONTENT_TYPE, "application/grpc")
            .header(header::TE, "trailers")
            .body(Full::new(grpc_frame(&PutRequest { key, value })))?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await?;
        // A failing call may answer "trailers-only": grpc-status in the headers.
        let status = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| parts.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("missing")
            .to_string();
        if parts.status != http::StatusCode::OK || status != "0" {
            let message = collected
                .trailers()
                .and_then(|t| t.get("grpc-message"))
                .or_else(|| parts.headers.get("grpc-message"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            return Err(BenchError::Etcd(format!(
                "put: HTTP {}, grpc-status {status} {message}",
                parts.status
            )));
        }
        Ok(())
    }
}

/// `total` puts of `value_size`-byte values to distinct keys from `concurrency`
/// tasks multiplexed on one connection, each waiting for its acknowledgement;
/// stops early at `deadline`.
pub async fn put_throughput(
    addr: SocketAddr,
    concurrency: usize,
    total: usize,
    value_size: usize,
    deadline: Instant,
) -> Result<PutFigures, BenchError> {
    let kv = GrpcKv::connect(addr).await?;
    let value = vec![b'x'; value_size];
    let issued = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let mut kv = kv.clone();
        let value = value.clone();
        let issued = issued.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = issued.fetch_add(1, Ordering::Relaxed);
                if i >= total || Instant::now() > deadline {
                    return Ok::<_, BenchError>(latencies);
                }
                let t = Instant::now();
                kv.put(format!("/bench/{i:010}").into_bytes(), value.clone())
                    .await?;
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    Ok(PutFigures {
        system: String::new(),
        concurrency,
        puts: latencies.len(),
        value_size,
        puts_per_sec: rate(latencies.len(), elapsed),
        latency: summarize(&mut latencies),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_put_requests_like_protoc_generated_code() {
        // Key "/k" (tag 1, wire type 2 = 0x0a), value "v" (tag 2 = 0x12).
        let frame = grpc_frame(&PutRequest {
            key: b"/k".to_vec(),
            value: b"v".to_vec(),
        });
        assert_eq!(
            frame.as_ref(),
            &[0, 0, 0, 0, 7, 0x0a, 2, b'/', b'k', 0x12, 1, b'v']
        );
    }
}
