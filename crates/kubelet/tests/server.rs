//! The kubelet's HTTPS server against the fake runtime and real CRI log files:
//! logs (plain, timestamps, tail, partial lines, rotation, follow), exec over
//! WebSocket, `/pods`, client-certificate authentication and the healthz port.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kubelet::runtime::{ContainerConfig, FakeBehavior, FakeRuntime, PodRuntime};
use kubelet::server::{ServerContext, TlsSettings};
use tokio_util::sync::CancellationToken;

struct Node {
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    runtime: FakeRuntime,
    id: String,
    log: PathBuf,
    pki: apiserver::pki::Pki,
    shutdown: CancellationToken,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Node {
    fn client(&self) -> Arc<rustls::ClientConfig> {
        common::tls(Some((&self.pki.admin_cert, &self.pki.admin_key)))
    }
}

async fn start() -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = apiserver::pki::Pki::at(dir.path());
    pki.ensure(&[]).expect("pki");
    let runtime = FakeRuntime::new();
    std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
    runtime.set_log_dir(dir.path().join("logs"));
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
    let log = runtime.log_path(&id).expect("log path");
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
        id,
        log,
        pki,
        shutdown,
    }
}

const OLD: &str = "2024-05-01T10:00:00.000000001Z stdout F one\n\
2024-05-01T10:00:01.000000001Z stderr F two\n";
const CURRENT: &str = "2024-05-01T10:00:02.5Z stdout P thr\n\
2024-05-01T10:00:02.6Z stdout F ee\n\
2024-05-01T10:00:03Z stdout F four\n";

#[tokio::test]
async fn container_logs_plain_timestamps_tail_partial_and_rotated() {
    let n = start().await;
    let rotated = PathBuf::from(format!("{}.1", n.log.display()));
    std::fs::write(&rotated, OLD).expect("write rotated");
    std::fs::write(&n.log, CURRENT).expect("write log");
    let (code, body) = common::get(n.addr, n.client(), "/containerLogs/default/web/app").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, "one\ntwo\nthree\nfour\n");
    let (_, body) = common::get(
        n.addr,
        n.client(),
        "/containerLogs/default/web/app?timestamps=true&tailLines=2",
    )
    .await;
    assert_eq!(
        body,
        "2024-05-01T10:00:02.5Z three\n2024-05-01T10:00:03Z four\n"
    );
    let (_, body) = common::get(
        n.addr,
        n.client(),
        "/containerLogs/default/web/app?limitBytes=6",
    )
    .await;
    assert_eq!(body, "one\ntw");
    let (_, body) = common::get(
        n.addr,
        n.client(),
        "/containerLogs/default/web/app?sinceTime=2024-05-01T10:00:02Z",
    )
    .await;
    assert_eq!(body, "three\nfour\n");
    let (code, body) = common::get(n.addr, n.client(), "/containerLogs/default/web/nope").await;
    assert_eq!(code, 400, "{body}");
    let (code, _) = common::get(n.addr, n.client(), "/containerLogs/default/ghost/app").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn container_logs_follow_gets_appended_lines_and_ends_with_the_container() {
    use std::io::Write;
    let n = start().await;
    std::fs::write(&n.log, "2024-05-01T10:00:00Z stdout F first\n").expect("write log");
    let (code, mut body) = common::get_stream(
        n.addr,
        n.client(),
        "/containerLogs/default/web/app?follow=true",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        common::next_chunk(&mut body).await.as_deref(),
        Some("first\n")
    );
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&n.log)
        .expect("open log");
    f.write_all(b"2024-05-01T10:00:01Z stderr F second\n")
        .expect("append");
    assert_eq!(
        common::next_chunk(&mut body).await.as_deref(),
        Some("second\n")
    );
    n.runtime
        .stop_container(&n.id, std::time::Duration::ZERO)
        .await
        .expect("stop");
    assert_eq!(
        common::next_chunk(&mut body).await,
        None,
        "stream ends with the container"
    );
}

#[tokio::test]
async fn anonymous_requests_get_401_and_pods_lists_the_node_pods() {
    let n = start().await;
    let (code, _) = common::get(n.addr, common::tls(None), "/pods").await;
    assert_eq!(code, 401);
    let (code, _) = common::get(n.addr, common::tls(None), "/containerLogs/default/web/app").await;
    assert_eq!(code, 401);
    let (code, body) = common::get(n.addr, n.client(), "/pods").await;
    assert_eq!(code, 200);
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["items"][0]["metadata"]["name"], "web");
    let (code, body) = common::get(n.addr, n.client(), "/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok"));
}

#[tokio::test]
async fn plain_healthz_port_answers_ok() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let shutdown = CancellationToken::new();
    let _guard = shutdown.clone().drop_guard();
    let addr =
        kubelet::server::serve_healthz("127.0.0.1:0".parse().expect("addr"), shutdown.clone())
            .await
            .expect("healthz");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut resp = String::new();
    tokio::time::timeout(common::WAIT, s.read_to_string(&mut resp))
        .await
        .expect("in time")
        .expect("read");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("ok"), "{resp}");
}

#[tokio::test]
async fn exec_over_websocket_streams_output_and_exit_code() {
    let n = start().await;
    let out = common::exec_ws(
        n.addr,
        n.client(),
        "/exec/default/web/app?command=sh&command=-c&command=echo+hi&stdin=1&stdout=1&stderr=1",
        b"typed input\n",
    )
    .await;
    assert_eq!(out.protocol, "v5.channel.k8s.io");
    assert_eq!(out.stdout, "sh -c echo hi\ntyped input\n");
    assert_eq!(out.stderr, "stderr: sh -c echo hi\n");
    let status = out.status.expect("status frame");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
}

#[tokio::test]
async fn attach_over_websocket_streams_stdin_and_resizes() {
    let n = start().await;
    let out = common::exec_ws_frames(
        n.addr,
        n.client(),
        "/attach/default/web/app?stdin=1&stdout=1&stderr=1&tty=1",
        &[b"\x04{\"Width\":100,\"Height\":30}"],
        b"typed\n",
    )
    .await;
    assert_eq!(out.protocol, "v5.channel.k8s.io");
    assert_eq!(out.stdout, "attached\ntyped\n");
    assert_eq!(out.status.expect("status frame")["status"], "Success");
    assert_eq!(
        n.runtime.resizes(),
        vec![kubelet::runtime::TerminalSize {
            width: 100,
            height: 30
        }]
    );
    // The uid form, with the pod's uid and with another.
    let out = common::exec_ws(
        n.addr,
        n.client(),
        "/attach/default/web/uid-web/app?stdin=1&stdout=1",
        b"x\n",
    )
    .await;
    assert_eq!(out.stdout, "attached\nx\n");
    let (code, body) = common::get(
        n.addr,
        n.client(),
        "/attach/default/web/other-uid/app?stdout=1",
    )
    .await;
    assert_eq!(code, 404, "{body}");
}

#[tokio::test]
async fn attach_refuses_missing_containers_and_plain_requests() {
    let n = start().await;
    let (code, body) = common::get(n.addr, n.client(), "/attach/default/web/app?stdout=1").await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("needs an upgrade"), "{body}");
    let (code, body) = common::get(n.addr, n.client(), "/attach/default/nope/app?stdout=1").await;
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("pod default/nope not found"), "{body}");
    let (code, body) = common::get(n.addr, n.client(), "/attach/default/web/app").await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("at least 1 of stdin, stdout, stderr"),
        "{body}"
    );
}

#[tokio::test]
async fn exec_with_tty_passes_resizes_and_merges_stderr_away() {
    let n = start().await;
    let out = common::exec_ws_frames(
        n.addr,
        n.client(),
        "/exec/default/web/app?command=sh&stdin=1&stdout=1&stderr=1&tty=1",
        &[b"\x04{\"Width\":120,\"Height\":40}"],
        b"ls\n",
    )
    .await;
    assert_eq!(out.stdout, "sh\nls\n");
    assert_eq!(out.stderr, "", "a terminal has no separate stderr");
    assert_eq!(
        n.runtime.resizes(),
        vec![kubelet::runtime::TerminalSize {
            width: 120,
            height: 40
        }]
    );
}

#[tokio::test]
async fn previous_reads_the_attempt_before_the_latest() {
    let n = start().await;
    n.runtime
        .stop_container(&n.id, std::time::Duration::ZERO)
        .await
        .expect("stop");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-web"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }))
    .expect("pod");
    let sandbox = n.runtime.ensure_sandbox(&pod).await.expect("sandbox");
    let image = n.runtime.pull_image("busybox", &[]).await.expect("pull");
    let spec = pod.spec.as_ref().expect("spec").containers[0].clone();
    let id = n
        .runtime
        .create_container(
            &pod,
            &sandbox,
            &ContainerConfig {
                spec,
                image,
                env: Vec::new(),
                attempt: 1,
                init: false,
                volume_files: Default::default(),
            },
        )
        .await
        .expect("create");
    n.runtime.start_container(&id).await.expect("start");
    std::fs::write(&n.log, "2024-05-01T10:00:00Z stdout F crashed\n").expect("old log");
    let new_log = n.runtime.log_path(&id).expect("path");
    std::fs::write(&new_log, "2024-05-01T10:01:00Z stdout F restarted\n").expect("new log");
    let (_, body) = common::get(n.addr, n.client(), "/containerLogs/default/web/app").await;
    assert_eq!(body, "restarted\n");
    let (_, body) = common::get(
        n.addr,
        n.client(),
        "/containerLogs/default/web/app?previous=true",
    )
    .await;
    assert_eq!(body, "crashed\n");
}
