//! Load generators against the API server: pod creates, GETs, LISTs and watches.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::BenchError;
use crate::client::ApiClient;
use crate::report::{CreateFigures, GetFigures, ListFigures, WatchFigures};
use crate::stats::{rate, summarize};

/// The namespace all benchmark pods live in.
pub const NAMESPACE: &str = "bench";

/// A phase gives up after this many failed requests.
const MAX_ERRORS: usize = 100;

/// A realistic ~1.5 KB pod, as a Deployment's ReplicaSet would create it.
pub fn pod_json(name: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"{NAMESPACE}","labels":{{"app.kubernetes.io/name":"web-frontend","app.kubernetes.io/instance":"web-frontend-prod","app.kubernetes.io/component":"frontend","pod-template-hash":"5d8c7f9b6d","tier":"frontend"}},"annotations":{{"prometheus.io/scrape":"true","prometheus.io/port":"9102","kubectl.kubernetes.io/default-container":"web"}}}},"spec":{{"containers":[{{"name":"web","image":"registry.example.com/team/web-frontend:v1.27.3","imagePullPolicy":"IfNotPresent","args":["--listen=:8080","--metrics-listen=:9102","--log-level=info","--config=/etc/web/config.yaml"],"ports":[{{"name":"http","containerPort":8080,"protocol":"TCP"}},{{"name":"metrics","containerPort":9102,"protocol":"TCP"}}],"env":[{{"name":"POD_NAME","valueFrom":{{"fieldRef":{{"fieldPath":"metadata.name"}}}}}},{{"name":"POD_NAMESPACE","valueFrom":{{"fieldRef":{{"fieldPath":"metadata.namespace"}}}}}},{{"name":"GOMAXPROCS","value":"2"}}],"resources":{{"requests":{{"cpu":"100m","memory":"128Mi"}},"limits":{{"cpu":"500m","memory":"256Mi"}}}},"readinessProbe":{{"httpGet":{{"path":"/healthz","port":8080}},"periodSeconds":10}},"livenessProbe":{{"httpGet":{{"path":"/livez","port":8080}},"initialDelaySeconds":15,"periodSeconds":20}},"volumeMounts":[{{"name":"config","mountPath":"/etc/web","readOnly":true}}]}}],"volumes":[{{"name":"config","configMap":{{"name":"web-frontend-config"}}}}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","securityContext":{{"runAsNonRoot":true,"runAsUser":1000,"fsGroup":2000}},"tolerations":[{{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}},{{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}}]}}}}"#
    ))
}

/// `spec.schedulerName` of the API benchmark's pods: no such scheduler runs, so they
/// stay pending and untouched (scheduling is measured by `bench control-plane`).
pub const UNSCHEDULED: &str = "flotilla-bench-unscheduled";

/// [`pod_json`] for a scheduler that does not run ([`UNSCHEDULED`]).
pub fn unscheduled_pod_json(name: &str) -> Bytes {
    let pod = String::from_utf8_lossy(&pod_json(name)).replacen(
        "\"spec\":{",
        &format!("\"spec\":{{\"schedulerName\":\"{UNSCHEDULED}\","),
        1,
    );
    Bytes::from(pod)
}

/// The collection path of the benchmark namespace's pods.
pub fn pods_path() -> String {
    format!("/api/v1/namespaces/{NAMESPACE}/pods")
}

/// Wait until the server answers `/readyz` with 200.
pub async fn wait_ready(client: &ApiClient, timeout: Duration) -> Result<(), BenchError> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = async {
            let mut conn = client.connect().await?;
            conn.call(Method::GET, "/readyz", None, &[StatusCode::OK])
                .await
        };
        match attempt.await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(BenchError::Server(format!(
                    "not ready after {timeout:?}: {e}"
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Create the benchmark namespace (or accept that it exists).
pub async fn create_namespace(client: &ApiClient) -> Result<(), BenchError> {
    let body =
        format!(r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{NAMESPACE}"}}}}"#);
    client
        .connect()
        .await?
        .call(
            Method::POST,
            "/api/v1/namespaces",
            Some(body.into()),
            &[StatusCode::CREATED, StatusCode::CONFLICT],
        )
        .await?;
    Ok(())
}

/// Create `total` pods named `{prefix}-{i:07}` from `concurrency` workers, each on
/// its own keep-alive connection; stops early at `deadline`.
pub async fn create_pods(
    client: &ApiClient,
    prefix: &str,
    concurrency: usize,
    total: usize,
    deadline: Instant,
) -> Result<CreateFigures, BenchError> {
    let prefix = prefix.to_string();
    let (figures, _) = create_objects(
        &pods_path(),
        client,
        concurrency,
        total,
        deadline,
        move |i| unscheduled_pod_json(&format!("{prefix}-{i:07}")),
    )
    .await?;
    Ok(figures)
}

/// POST `total` objects (`body(i)` for i in 0..total) to `path` from `concurrency`
/// workers, each on its own keep-alive connection (opened before the clock
/// starts); stops early at `deadline` or after too many failures. Also returns
/// when the first request was about to be sent.
pub async fn create_objects<F>(
    path: &str,
    client: &ApiClient,
    concurrency: usize,
    total: usize,
    deadline: Instant,
    body: F,
) -> Result<(CreateFigures, Instant), BenchError>
where
    F: Fn(usize) -> Bytes + Send + Sync + 'static,
{
    let mut conns = Vec::new();
    for _ in 0..concurrency.max(1) {
        conns.push(client.connect().await?);
    }
    let issued = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let path = Arc::new(path.to_string());
    let body = Arc::new(body);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (issued, errors, first_error, path, body) = (
            issued.clone(),
            errors.clone(),
            first_error.clone(),
            path.clone(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = issued.fetch_add(1, Ordering::Relaxed);
                if i >= total
                    || Instant::now() > deadline
                    || errors.load(Ordering::Relaxed) > MAX_ERRORS
                {
                    return Ok::<_, BenchError>(latencies);
                }
                let t = Instant::now();
                match conn
                    .call(Method::POST, &path, Some(body(i)), &[StatusCode::CREATED])
                    .await
                {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(e @ BenchError::Status { .. }) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().await.get_or_insert(e.to_string());
                    }
                    // A broken connection ends the phase.
                    Err(e) => return Err(e),
                }
            }
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    let first_error = first_error.lock().await.take();
    let figures = CreateFigures {
        concurrency,
        created: latencies.len(),
        errors: errors.load(Ordering::Relaxed),
        first_error,
        seconds: elapsed.as_secs_f64(),
        per_sec: rate(latencies.len(), elapsed),
        latency: summarize(&mut latencies),
    };
    Ok((figures, started))
}

/// `samples` GETs of single pods (cycling through `names`) on one connection.
pub async fn get_pods(
    client: &ApiClient,
    names: &[String],
    samples: usize,
    deadline: Instant,
) -> Result<GetFigures, BenchError> {
    if names.is_empty() {
        return Err(BenchError::Server("no pods to GET".into()));
    }
    let mut conn = client.connect().await?;
    let base = pods_path();
    let mut latencies = Vec::with_capacity(samples);
    let started = Instant::now();
    for i in 0..samples {
        if Instant::now() > deadline {
            break;
        }
        let path = format!("{base}/{}", names[i % names.len()]);
        let t = Instant::now();
        conn.call(Method::GET, &path, None, &[StatusCode::OK])
            .await?;
        latencies.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    Ok(GetFigures {
        per_sec: rate(latencies.len(), elapsed),
        latency: summarize(&mut latencies),
    })
}

#[derive(Deserialize)]
struct ListCount {
    items: Vec<serde::de::IgnoredAny>,
}

/// Time `samples` full LISTs of the namespace's pods (no `limit`), each to the
/// last byte of the response. The first response is also parsed to check it
/// holds `expect` pods.
pub async fn list_pods(
    client: &ApiClient,
    expect: usize,
    samples: usize,
) -> Result<ListFigures, BenchError> {
    let mut conn = client.connect().await?;
    let path = pods_path();
    let mut latencies = Vec::new();
    let mut bytes = 0;
    for sample in 0..samples.max(1) {
        let t = Instant::now();
        let resp = conn.send(Method::GET, &path, None).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut kept = Vec::new();
        let mut len = 0;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                len += data.len();
                if sample == 0 || status != StatusCode::OK {
                    kept.extend_from_slice(&data);
                }
            }
        }
        latencies.push(t.elapsed());
        if status != StatusCode::OK {
            return Err(BenchError::Status {
                method: Method::GET,
                path,
                status,
                body: String::from_utf8_lossy(&kept[..kept.len().min(400)]).into_owned(),
            });
        }
        if sample == 0 {
            let items = serde_json::from_slice::<ListCount>(&kept)
                .map_err(|e| BenchError::Server(format!("LIST response: {e}")))?
                .items
                .len();
            if items != expect {
                return Err(BenchError::Server(format!(
                    "LIST returned {items} pods, expected {expect}"
                )));
            }
        }
        bytes = len;
    }
    Ok(ListFigures {
        pods: expect,
        bytes,
        latency: summarize(&mut latencies),
    })
}

/// The part of a watch event the watchers look at.
#[derive(Deserialize)]
struct WatchLine<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    object: WatchObject<'a>,
}

#[derive(Deserialize)]
struct WatchObject<'a> {
    #[serde(borrow)]
    metadata: WatchMeta<'a>,
}

#[derive(Deserialize)]
struct WatchMeta<'a> {
    #[serde(borrow, default)]
    name: &'a str,
}

#[derive(Deserialize)]
struct ListMeta {
    metadata: ListMetaInner,
}

#[derive(Deserialize)]
struct ListMetaInner {
    #[serde(rename = "resourceVersion")]
    resource_version: String,
}

/// The index `i` of a pod named `{prefix}-{i}`.
pub fn index_of(name: &str, prefix: &str) -> Option<usize> {
    name.strip_prefix(prefix)?.strip_prefix('-')?.parse().ok()
}

/// Watch fan-out: `watchers` concurrent pod watches from the current revision,
/// while one writer creates `events` pods at `rate` per second. Every watcher
/// records when each pod's ADDED event reached it; the delay is measured from the
/// start of the write and from its acknowledgement.
pub async fn watch_latency(
    client: &ApiClient,
    watchers: usize,
    events: usize,
    rate_per_sec: f64,
    deadline: Instant,
) -> Result<WatchFigures, BenchError> {
    const PREFIX: &str = "watch";
    let base = pods_path();
    let mut conn = client.connect().await?;
    let (_, body) = conn
        .call(
            Method::GET,
            &format!("{base}?limit=1"),
            None,
            &[StatusCode::OK],
        )
        .await?;
    let rv = serde_json::from_slice::<ListMeta>(&body)
        .map_err(|e| BenchError::Server(format!("LIST response: {e}")))?
        .metadata
        .resource_version;

    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut ready = Vec::new();
    for _ in 0..watchers {
        let mut wconn = client.connect().await?;
        let path = format!("{base}?watch=1&resourceVersion={rv}&timeoutSeconds=900");
        let resp = wconn.send(Method::GET, &path, None).await?;
        if resp.status() != StatusCode::OK {
            return Err(BenchError::Status {
                method: Method::GET,
                path,
                status: resp.status(),
                body: String::new(),
            });
        }
        let stop = stop.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        ready.push(rx);
        tasks.push(tokio::spawn(async move {
            let _conn = wconn;
            let _ = tx.send(());
            let mut seen: Vec<Option<Instant>> = vec![None; events];
            let mut received = 0;
            let mut pending: Vec<u8> = Vec::new();
            let mut body = resp.into_body();
            while received < events {
                let frame = tokio::select! {
                    _ = stop.cancelled() => break,
                    f = body.frame() => f,
                };
                let Some(frame) = frame else { break };
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                let now = Instant::now();
                pending.extend_from_slice(&data);
                let mut start = 0;
                while let Some(nl) = pending[start..].iter().position(|&b| b == b'\n') {
                    let line = &pending[start..start + nl];
                    start += nl + 1;
                    let ev: WatchLine = serde_json::from_slice(line)
                        .map_err(|e| BenchError::Server(format!("watch event: {e}")))?;
                    if ev.kind == "ERROR" {
                        return Err(BenchError::Server(format!(
                            "watch ended with an ERROR event: {}",
                            String::from_utf8_lossy(line)
                        )));
                    }
                    if ev.kind == "ADDED"
                        && let Some(i) = index_of(ev.object.metadata.name, PREFIX)
                        && i < events
                        && seen[i].is_none()
                    {
                        seen[i] = Some(now);
                        received += 1;
                    }
                }
                pending.drain(..start);
            }
            Ok::<_, BenchError>(seen)
        }));
    }
    for rx in ready {
        let _ = rx.await;
    }

    // The writer: sequential creates, paced at `rate_per_sec`.
    let mut starts = Vec::with_capacity(events);
    let mut acks = Vec::with_capacity(events);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate_per_sec.max(0.1)));
    let write_started = Instant::now();
    for i in 0..events {
        if Instant::now() > deadline {
            break;
        }
        tick.tick().await;
        let body = unscheduled_pod_json(&format!("{PREFIX}-{i:07}"));
        let t = Instant::now();
        conn.call(Method::POST, &base, Some(body), &[StatusCode::CREATED])
            .await?;
        starts.push(t);
        acks.push(Instant::now());
    }
    let write_elapsed = write_started.elapsed();
    // Let the last events arrive, then stop the watchers that are still waiting.
    let grace = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        grace.cancel();
    });
    let mut from_start = Vec::new();
    let mut from_ack = Vec::new();
    let mut missed = 0;
    for task in tasks {
        let seen = task.await??;
        for (i, at) in seen.into_iter().enumerate().take(starts.len()) {
            match at {
                Some(at) => {
                    from_start.push(at.saturating_duration_since(starts[i]));
                    from_ack.push(at.saturating_duration_since(acks[i]));
                }
                None => missed += 1,
            }
        }
    }
    stop.cancel();
    let mut writes: Vec<Duration> = starts
        .iter()
        .zip(&acks)
        .map(|(s, a)| a.duration_since(*s))
        .collect();
    Ok(WatchFigures {
        watchers,
        events: starts.len(),
        write_rate: rate(starts.len(), write_elapsed),
        deliveries: from_start.len(),
        missed,
        from_write_start: summarize(&mut from_start),
        from_write_ack: summarize(&mut from_ack),
        write_latency: summarize(&mut writes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_is_valid_json_of_realistic_size() {
        let body = pod_json("web-0000001");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("pod JSON");
        assert_eq!(v["metadata"]["name"], "web-0000001");
        assert_eq!(v["metadata"]["namespace"], NAMESPACE);
        assert!((1300..=1800).contains(&body.len()), "{} bytes", body.len());
    }

    #[test]
    fn unscheduled_pods_name_a_scheduler_that_does_not_run() {
        let body = unscheduled_pod_json("web-0000001");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("pod JSON");
        assert_eq!(v["spec"]["schedulerName"], UNSCHEDULED);
        assert_eq!(v["spec"]["containers"][0]["name"], "web");
    }

    #[test]
    fn indexes_of_names() {
        let cases: &[(&str, &str, Option<usize>)] = &[
            ("watch-0000042", "watch", Some(42)),
            ("watch-7", "watch", Some(7)),
            ("watch-x", "watch", None),
            ("watchx-1", "watch", None),
            ("c64-0000001", "watch", None),
            ("watch", "watch", None),
        ];
        for &(name, prefix, want) in cases {
            assert_eq!(index_of(name, prefix), want, "{name}");
        }
    }

    #[test]
    fn watch_lines_parse_without_copying() {
        let bookmark =
            br#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"9"}}}"#;
        let ev: WatchLine = serde_json::from_slice(bookmark).expect("bookmark");
        assert_eq!((ev.kind, ev.object.metadata.name), ("BOOKMARK", ""));
        let line = br#"{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"watch-0000003","resourceVersion":"17","labels":{"a":"b"}},"spec":{}}}"#;
        let ev: WatchLine = serde_json::from_slice(line).expect("event");
        assert_eq!(ev.kind, "ADDED");
        assert_eq!(ev.object.metadata.name, "watch-0000003");
    }
}
