//! Container probes: exec (through the runtime), httpGet and tcpSocket, with
//! upstream's timing fields (initialDelaySeconds, periodSeconds, timeoutSeconds,
//! successThreshold, failureThreshold).

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::runtime::PodRuntime;

/// Errors running a probe (a failed probe, with its reason).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Failed(String),
}

/// Consecutive results of one probe of one container instance.
#[derive(Clone, Debug)]
pub struct ProbeState {
    pub container_id: String,
    pub successes: i32,
    pub failures: i32,
    pub last_run: Option<Instant>,
    /// Current verdict (after thresholds).
    pub ok: bool,
}

impl ProbeState {
    /// A fresh state for a container instance; `initial` is the verdict before the
    /// first run (readiness: false, liveness: true).
    pub fn new(container_id: &str, initial: bool) -> Self {
        ProbeState {
            container_id: container_id.into(),
            successes: 0,
            failures: 0,
            last_run: None,
            ok: initial,
        }
    }

    /// Whether the probe is due now for a container started at `started`.
    pub fn due(&self, p: &Probe, started: Instant, now: Instant) -> bool {
        let delay = Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        let period = Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
        now >= started + delay && self.last_run.is_none_or(|l| now >= l + period)
    }

    /// Record a result, applying the thresholds; returns the verdict.
    pub fn record(&mut self, p: &Probe, success: bool, now: Instant) -> bool {
        self.last_run = Some(now);
        if success {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= p.success_threshold.unwrap_or(1).max(1) {
                self.ok = true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= p.failure_threshold.unwrap_or(3).max(1) {
                self.ok = false;
            }
        }
        self.ok
    }
}

fn port_of(c: &Container, port: &IntOrString) -> Result<u16, ProbeError> {
    match port {
        IntOrString::Int(n) => {
            u16::try_from(*n).map_err(|_| ProbeError::Failed(format!("invalid port {n}")))
        }
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| ProbeError::Failed(format!("port {name:?} not found"))),
    }
}

/// Run one probe against a container.
pub async fn run(
    p: &Probe,
    c: &Container,
    container_id: &str,
    pod_ip: &str,
    runtime: &dyn PodRuntime,
) -> Result<(), ProbeError> {
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(e) = &p.exec {
        let cmd = e.command.clone().unwrap_or_default();
        let r = runtime
            .exec_sync(container_id, &cmd, timeout)
            .await
            .map_err(|e| ProbeError::Failed(e.to_string()))?;
        if r.exit_code == 0 {
            return Ok(());
        }
        return Err(ProbeError::Failed(format!(
            "command {cmd:?} exited with {}: {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stdout)
        )));
    }
    if let Some(t) = &p.tcp_socket {
        let host = t.host.clone().unwrap_or_else(|| pod_ip.to_string());
        let port = port_of(c, &t.port)?;
        let addr = (
            host.parse::<IpAddr>()
                .map_err(|_| ProbeError::Failed(format!("bad host {host}")))?,
            port,
        );
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ProbeError::Failed(format!("dial tcp {host}:{port}: {e}"))),
            Err(_) => Err(ProbeError::Failed(format!(
                "dial tcp {host}:{port}: timeout"
            ))),
        };
    }
    if let Some(h) = &p.http_get {
        let host = h.host.clone().unwrap_or_else(|| pod_ip.to_string());
        let port = port_of(c, &h.port)?;
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let ip = host
            .parse::<IpAddr>()
            .map_err(|_| ProbeError::Failed(format!("bad host {host}")))?;
        let get = http_status(
            ip,
            port,
            &host,
            &path,
            h.http_headers.as_deref().unwrap_or_default(),
        );
        return match tokio::time::timeout(timeout, get).await {
            Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
            Ok(Ok(code)) => Err(ProbeError::Failed(format!(
                "HTTP probe failed with statuscode: {code}"
            ))),
            Ok(Err(e)) => Err(ProbeError::Failed(format!(
                "Get \"http://{host}:{port}{path}\": {e}"
            ))),
            Err(_) => Err(ProbeError::Failed(format!(
                "Get \"http://{host}:{port}{path}\": context deadline exceeded"
            ))),
        };
    }
    Err(ProbeError::Failed("probe has no handler".into()))
}

/// One plain-HTTP GET returning the status code. Written by hand: a probe needs only
/// the status line, and this avoids pulling an HTTP client stack into the kubelet.
async fn http_status(
    ip: IpAddr,
    port: u16,
    host: &str,
    path: &str,
    headers: &[k8s_openapi::api::core::v1::HTTPHeader],
) -> std::io::Result<u16> {
    let mut s = tokio::net::TcpStream::connect((ip, port)).await?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for h in headers {
        req.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; 256];
    let mut n = 0;
    while n < 12 {
        let r = s.read(&mut buf[n..]).await?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed HTTP response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(success: i32, failure: i32) -> Probe {
        Probe {
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            period_seconds: Some(1),
            initial_delay_seconds: Some(2),
            ..Default::default()
        }
    }

    #[test]
    fn thresholds_and_timing() {
        let p = probe(2, 3);
        let t0 = Instant::now();
        let mut s = ProbeState::new("c1", false);
        assert!(!s.due(&p, t0, t0 + Duration::from_secs(1)), "initial delay");
        assert!(s.due(&p, t0, t0 + Duration::from_secs(2)));
        assert!(
            !s.record(&p, true, t0 + Duration::from_secs(2)),
            "one success of two"
        );
        assert!(!s.due(&p, t0, t0 + Duration::from_millis(2500)), "period");
        assert!(s.record(&p, true, t0 + Duration::from_secs(3)));
        assert!(s.record(&p, false, t0 + Duration::from_secs(4)));
        assert!(s.record(&p, false, t0 + Duration::from_secs(5)));
        assert!(
            !s.record(&p, false, t0 + Duration::from_secs(6)),
            "third failure"
        );
    }

    #[tokio::test]
    async fn tcp_and_http_probes() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut b = [0u8; 512];
                let n = s.read(&mut b).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&b[..n]).to_string();
                let code = if req.starts_with("GET /healthz ") {
                    "200 OK"
                } else {
                    "500 Oops"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let rt = crate::runtime::FakeRuntime::new();
        let c = Container {
            name: "c".into(),
            ..Default::default()
        };
        let tcp: Probe = serde_json::from_value(serde_json::json!({"tcpSocket": {"port": port}}))
            .expect("probe");
        assert!(run(&tcp, &c, "x", "127.0.0.1", &rt).await.is_ok());
        let closed: Probe =
            serde_json::from_value(serde_json::json!({"tcpSocket": {"port": 1}})).expect("probe");
        assert!(run(&closed, &c, "x", "127.0.0.1", &rt).await.is_err());
        let ok: Probe = serde_json::from_value(
            serde_json::json!({"httpGet": {"path": "/healthz", "port": port}}),
        )
        .expect("probe");
        assert!(run(&ok, &c, "x", "127.0.0.1", &rt).await.is_ok());
        let bad: Probe = serde_json::from_value(
            serde_json::json!({"httpGet": {"path": "/other", "port": port}}),
        )
        .expect("probe");
        let e = run(&bad, &c, "x", "127.0.0.1", &rt).await.expect_err("500");
        assert!(e.to_string().contains("statuscode: 500"), "{e}");
    }
}
