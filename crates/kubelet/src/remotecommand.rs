//! `kubectl exec` over SPDY/3.1 (the transport of clients before WebSocket, e.g.
//! kubectl 1.20): the client opens one stream per channel, told apart by their
//! `streamType` header (`error`, `stdin`, `stdout`, `stderr`, `resize`); the
//! process runs once all expected streams are there. The result goes to the error
//! stream: a `metav1.Status` as JSON with `v4.channel.k8s.io` (the exit code as an
//! `ExitCode` cause of reason `NonZeroExitCode`), the bare message on failure with
//! the older protocols.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::httpstream::{Session, StreamReader, StreamWriter};
use crate::runtime::{ExecInput, ExecOutput, ExecStreams, PodRuntime, RuntimeError, TerminalSize};

/// Exec protocols over SPDY, preferred first (upstream's order).
pub const SPDY_EXEC_PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// How long the client has to open all its streams.
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server waits, after the last byte, for the client to hang up.
pub const LINGER: Duration = Duration::from_secs(10);

/// The streams an exec asks for.
#[derive(Clone, Copy, Debug)]
pub struct ExecOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// The final status of an exec as upstream's kubelet reports it.
pub fn exec_status(cmd: &[String], result: &Result<i32, RuntimeError>) -> serde_json::Value {
    match result {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(e) => json!({
            "metadata": {}, "status": "Failure",
            "message": format!("Internal error occurred: error executing command in container: {e}"),
            "reason": "InternalError",
            "details": {"causes": [{"message": format!("error executing command in container: {e}")}]},
            "code": 500,
        }),
    }
}

/// What a streaming session runs: a command (`exec`) or an attach to the container's
/// own process (`attach`).
#[derive(Clone, Debug)]
pub enum StreamAction {
    Exec(Vec<String>),
    Attach,
}

impl StreamAction {
    /// Run it; an attach has no exit code of its own (0).
    pub async fn run(
        &self,
        runtime: &dyn PodRuntime,
        container_id: &str,
        streams: ExecStreams,
    ) -> Result<i32, RuntimeError> {
        match self {
            StreamAction::Exec(cmd) => runtime.exec_stream(container_id, cmd, streams).await,
            StreamAction::Attach => runtime.attach(container_id, streams).await.map(|()| 0),
        }
    }

    /// The final status, as upstream's kubelet writes it to the error stream.
    pub fn status(&self, result: &Result<i32, RuntimeError>) -> serde_json::Value {
        match (self, result) {
            (StreamAction::Exec(cmd), r) => exec_status(cmd, r),
            (StreamAction::Attach, Ok(_)) => json!({"metadata": {}, "status": "Success"}),
            (StreamAction::Attach, Err(e)) => json!({
                "metadata": {}, "status": "Failure",
                "message": format!("Internal error occurred: error attaching to container: {e}"),
                "reason": "InternalError",
                "details": {"causes": [{"message": format!("error attaching to container: {e}")}]},
                "code": 500,
            }),
        }
    }
}

#[derive(Default)]
struct Streams {
    error: Option<StreamWriter>,
    stdin: Option<StreamReader>,
    stdin_w: Option<StreamWriter>,
    stdout: Option<StreamWriter>,
    stderr: Option<StreamWriter>,
    resize: Option<StreamReader>,
    resize_w: Option<StreamWriter>,
    /// Readers of streams nobody reads (kept so that they stay open).
    others: Vec<(StreamReader, StreamWriter)>,
}

/// Serve one exec or attach over an upgraded SPDY session with the negotiated
/// `protocol`.
pub async fn serve_exec(
    mut session: Session,
    protocol: &str,
    runtime: Arc<dyn PodRuntime>,
    container_id: String,
    action: StreamAction,
    opts: ExecOptions,
) {
    let v4 = protocol == SPDY_EXEC_PROTOCOLS[0];
    let resizing = matches!(protocol, "v4.channel.k8s.io" | "v3.channel.k8s.io");
    let expected = 1
        + usize::from(opts.stdin)
        + usize::from(opts.stdout)
        + usize::from(opts.stderr)
        + usize::from(opts.tty && resizing);
    let mut s = Streams::default();
    let mut received = 0;
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while received < expected {
        let next = tokio::time::timeout_at(deadline, session.next_stream()).await;
        let stream = match next {
            Ok(Some(st)) => st,
            Ok(None) => return,
            Err(_) => {
                tracing::warn!("exec: timed out waiting for client to create streams");
                session.shutdown(Duration::ZERO).await;
                return;
            }
        };
        let kind = stream.headers().get("streamtype").unwrap_or("").to_string();
        let (r, w) = stream.accept();
        match kind.as_str() {
            "error" => {
                s.others.push((r, w.clone()));
                s.error = Some(w);
            }
            "stdin" => {
                s.stdin = Some(r);
                s.stdin_w = Some(w);
            }
            "stdout" => {
                s.others.push((r, w.clone()));
                s.stdout = Some(w);
            }
            "stderr" => {
                s.others.push((r, w.clone()));
                s.stderr = Some(w);
            }
            "resize" => {
                s.resize = Some(r);
                s.resize_w = Some(w);
            }
            other => {
                tracing::debug!("exec: unexpected stream type {other:?}");
                s.others.push((r, w));
                continue;
            }
        }
        received += 1;
    }
    // Version 1 closed the server's side of stdin right away.
    if protocol == SPDY_EXEC_PROTOCOLS[3]
        && let Some(w) = &s.stdin_w
    {
        w.finish().await;
    }

    let mut forwarders = Vec::new();
    let mut output = |w: Option<StreamWriter>| -> Option<ExecOutput> {
        let w = w?;
        let (pipe_w, mut pipe_r) = tokio::io::duplex(64 * 1024);
        forwarders.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match pipe_r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if w.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                            break;
                        }
                    }
                }
            }
            w.finish().await;
        }));
        Some(Box::new(pipe_w))
    };
    let stdout = output(s.stdout.take());
    let stderr = output(if opts.tty { None } else { s.stderr.take() });
    let stdin_task;
    let stdin: Option<ExecInput> = match s.stdin.take() {
        Some(mut r) => {
            let (mut pipe_w, pipe_r) = tokio::io::duplex(64 * 1024);
            stdin_task = Some(tokio::spawn(async move {
                while let Ok(Some(b)) = r.recv().await {
                    if pipe_w.write_all(&b).await.is_err() {
                        break;
                    }
                }
                let _ = pipe_w.shutdown().await;
            }));
            Some(Box::new(pipe_r))
        }
        None => {
            stdin_task = None;
            None
        }
    };
    let (resize_tx, resize) = if opts.tty {
        let (tx, rx) = mpsc::channel::<TerminalSize>(8);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let resize_task = match (s.resize.take(), resize_tx) {
        (Some(r), Some(tx)) => Some(tokio::spawn(read_resizes(r, tx))),
        _ => None,
    };
    let streams = ExecStreams {
        stdin,
        stdout,
        stderr,
        tty: opts.tty,
        resize,
    };
    let result = action.run(runtime.as_ref(), &container_id, streams).await;
    for f in forwarders {
        let _ = f.await;
    }
    for t in [stdin_task, resize_task].into_iter().flatten() {
        t.abort();
    }
    let status = action.status(&result);
    if let Some(w) = &s.error {
        let body = if v4 {
            Some(status.to_string())
        } else if status["status"] != "Success" {
            status["message"].as_str().map(str::to_string)
        } else {
            None
        };
        if let Some(body) = body {
            let _ = w.send(Bytes::from(body)).await;
        }
        w.finish().await;
    }
    for w in [s.stdin_w, s.resize_w, s.stderr].into_iter().flatten() {
        w.finish().await;
    }
    for (_, w) in &s.others {
        w.finish().await;
    }
    session.shutdown(LINGER).await;
}

/// Terminal sizes: a sequence of JSON objects `{"Width":…,"Height":…}`.
async fn read_resizes(mut r: StreamReader, tx: mpsc::Sender<TerminalSize>) {
    let mut buf: Vec<u8> = Vec::new();
    while let Ok(Some(b)) = r.recv().await {
        buf.extend_from_slice(&b);
        let mut consumed = 0;
        {
            let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<TerminalSize>();
            loop {
                match it.next() {
                    Some(Ok(size)) => {
                        consumed = it.byte_offset();
                        // A runtime that does not read resizes must not stall.
                        let _ = tx.try_send(size);
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => {
                        tracing::debug!("exec: bad resize message: {e}");
                        return;
                    }
                    None => break,
                }
            }
        }
        buf.drain(..consumed);
        if buf.len() > 64 * 1024 {
            return;
        }
    }
}
