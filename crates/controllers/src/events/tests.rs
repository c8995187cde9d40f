//! The recorder against an in-memory fake of the API server's core/v1 Events
//! endpoints, which can hold requests (a slow server) and fail them on demand.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use tokio::sync::watch;

use super::*;

/// (method, path, content type) of a request the fake received.
type Seen = (Method, String, String);

struct FakeApi {
    state: Mutex<State>,
    /// Requests wait while this is false.
    open: watch::Sender<bool>,
    /// Requests received so far (counted before they wait).
    arrived: watch::Sender<usize>,
}

#[derive(Default)]
struct State {
    events: BTreeMap<(String, String), Event>,
    requests: Vec<Seen>,
    /// Status codes to answer the next requests with, instead of serving them.
    fail: VecDeque<u16>,
    rv: u64,
}

impl FakeApi {
    fn new() -> Arc<Self> {
        Arc::new(FakeApi {
            state: Mutex::new(State::default()),
            open: watch::channel(true).0,
            arrived: watch::channel(0).0,
        })
    }

    fn client(self: &Arc<Self>) -> kube::Client {
        let api = self.clone();
        let svc = tower::service_fn(move |req: Request<Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.handle(req).await) }
        });
        kube::Client::new(svc, "default")
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake state")
    }

    fn hold(&self) {
        self.open.send_replace(false);
    }

    fn release(&self) {
        self.open.send_replace(true);
    }

    /// Waits until `n` requests have reached the server.
    async fn arrived(&self, n: usize) {
        let mut rx = self.arrived.subscribe();
        rx.wait_for(|c| *c >= n).await.expect("fake server alive");
    }

    fn fail_next(&self, codes: &[u16]) {
        self.state().fail.extend(codes);
    }

    fn events(&self) -> Vec<Event> {
        self.state().events.values().cloned().collect()
    }

    fn requests(&self) -> Vec<Seen> {
        self.state().requests.clone()
    }

    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        self.arrived.send_modify(|n| *n += 1);
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|o| *o).await;
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return status(400, "BadRequest"),
        };
        let mut st = self.state();
        st.requests
            .push((method.clone(), path.clone(), content_type));
        if let Some(code) = st.fail.pop_front() {
            return status(code, "Injected");
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            (Method::POST, ["api", "v1", "namespaces", ns, "events"]) => {
                let Ok(mut ev) = serde_json::from_slice::<Event>(&body) else {
                    return status(400, "BadRequest");
                };
                let key = (ns.to_string(), ev.metadata.name.clone().unwrap_or_default());
                if st.events.contains_key(&key) {
                    return status(409, "AlreadyExists");
                }
                st.rv += 1;
                ev.metadata.resource_version = Some(st.rv.to_string());
                st.events.insert(key, ev.clone());
                json(StatusCode::CREATED, &ev)
            }
            (Method::PATCH, ["api", "v1", "namespaces", ns, "events", name]) => {
                let key = (ns.to_string(), name.to_string());
                st.rv += 1;
                let rv = st.rv.to_string();
                let Some(ev) = st.events.get_mut(&key) else {
                    return status(404, "NotFound");
                };
                let Ok(serde_json::Value::Object(patch)) = serde_json::from_slice(&body) else {
                    return status(400, "BadRequest");
                };
                let mut v = serde_json::to_value(&*ev).expect("event json");
                for (k, val) in patch {
                    v[k] = val;
                }
                let mut patched: Event = serde_json::from_value(v).expect("patched event");
                patched.metadata.resource_version = Some(rv);
                *ev = patched.clone();
                json(StatusCode::OK, &patched)
            }
            _ => status(404, "NotFound"),
        }
    }
}

fn json(code: StatusCode, ev: &Event) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(ev).expect("json")))
        .expect("response")
}

fn status(code: u16, reason: &str) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": reason, "reason": reason, "code": code,
    });
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string().into_bytes()))
        .expect("response")
}

/// A pod reference (also the correlator's tests' fixture).
pub(super) fn pod(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some("default".into()),
        name: Some(name.into()),
        uid: Some(format!("uid-{name}")),
        ..Default::default()
    }
}

/// No sleeps between tries, so retries need no waiting.
fn quick(queue: usize) -> Delivery {
    Delivery {
        queue,
        max_tries: 3,
        sleep: Duration::ZERO,
    }
}

fn recorder(api: &Arc<FakeApi>, delivery: Delivery) -> Recorder {
    Recorder::with_options(
        api.client(),
        "test-controller",
        delivery,
        CorrelatorOptions::default(),
    )
}

/// Fails instead of hanging should `fut` (a `record`) wait for the held server.
async fn promptly<F: Future<Output = ()>>(what: &str, fut: F) {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} waited for the API server"));
}

fn messages(events: &[Event]) -> Vec<String> {
    let mut m: Vec<String> = events.iter().filter_map(|e| e.message.clone()).collect();
    m.sort();
    m
}

#[tokio::test]
async fn record_does_not_wait_for_a_slow_server_and_keeps_its_own_time() {
    let api = FakeApi::new();
    api.hold();
    let rec = recorder(&api, quick(10));
    let node_rec = rec.clone().with_host("node-1");
    let before = Timestamp::now();
    promptly(
        "record",
        rec.record(&pod("web"), NORMAL, "Pulling", "pulling"),
    )
    .await;
    let after = Timestamp::now();
    // The writer is now inside the server, which does not answer.
    api.arrived(1).await;
    promptly(
        "record",
        node_rec.record(&pod("web"), WARNING, "Failed", "failed"),
    )
    .await;
    assert!(api.events().is_empty());
    api.release();
    // One flush covers the clones' events: they share one queue.
    rec.flush().await;
    let events = api.events();
    assert_eq!(messages(&events), ["failed", "pulling"]);
    let pulling = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("Pulling"))
        .expect("Pulling");
    // Stamped when recorded, not when written: the name carries the nanoseconds, the
    // timestamps (second precision on the wire) the same instant.
    let nanos = pulling
        .metadata
        .name
        .as_deref()
        .and_then(|n| n.strip_prefix("web."))
        .and_then(|hex| i128::from_str_radix(hex, 16).ok())
        .expect("name is <object>.<hex nanoseconds>");
    assert!(before.as_nanosecond() <= nanos && nanos <= after.as_nanosecond());
    let ts = pulling.first_timestamp.as_ref().expect("firstTimestamp").0;
    assert_eq!(ts.as_second(), nanos.div_euclid(1_000_000_000) as i64);
    assert_eq!(pulling.last_timestamp.as_ref().map(|t| t.0), Some(ts));
    assert_eq!(pulling.count, Some(1));
    assert_eq!(
        pulling.source.as_ref().and_then(|s| s.component.as_deref()),
        Some("test-controller")
    );
    let failed = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("Failed"))
        .expect("Failed");
    assert_eq!(
        failed.source.as_ref().and_then(|s| s.host.as_deref()),
        Some("node-1")
    );
    assert_eq!(failed.reporting_instance.as_deref(), Some("node-1"));
    assert_eq!(failed.type_.as_deref(), Some(WARNING));
    // Nothing left: flush returns at once.
    rec.flush().await;
}

#[tokio::test]
async fn a_full_queue_drops_events_without_blocking() {
    let api = FakeApi::new();
    api.hold();
    let rec = recorder(&api, quick(2));
    rec.record(&pod("a"), NORMAL, "R0", "m").await;
    api.arrived(1).await;
    // One event is being written, two fit in the queue, the rest are dropped.
    for i in 1..=5 {
        promptly(
            "record",
            rec.record(&pod("a"), NORMAL, &format!("R{i}"), "m"),
        )
        .await;
    }
    api.release();
    rec.flush().await;
    let mut reasons: Vec<String> = api.events().into_iter().filter_map(|e| e.reason).collect();
    reasons.sort();
    assert_eq!(reasons, ["R0", "R1", "R2"]);
    assert_eq!(api.requests().len(), 3);
    // With room again, events are queued again.
    rec.record(&pod("a"), NORMAL, "R6", "m").await;
    rec.flush().await;
    assert_eq!(api.events().len(), 4);
}

#[tokio::test]
async fn identical_events_patch_one_event_and_a_deleted_one_is_created_again() {
    let api = FakeApi::new();
    let rec = recorder(&api, quick(10));
    let mut stamps = Vec::new();
    for _ in 0..3 {
        rec.record(&pod("web"), WARNING, "BackOff", "back-off restarting")
            .await;
        stamps.push(Timestamp::now());
    }
    rec.flush().await;
    let events = api.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let ev = &events[0];
    assert_eq!(ev.count, Some(3));
    let (first, last) = (
        ev.first_timestamp.as_ref().expect("first").0,
        ev.last_timestamp.as_ref().expect("last").0,
    );
    // The wire carries seconds.
    let secs = |t: Timestamp| t.as_second();
    assert!(secs(first) <= secs(stamps[0]));
    assert!(secs(stamps[1]) <= secs(last) && secs(last) <= secs(stamps[2]));
    assert!(secs(first) <= secs(last));
    let kinds: Vec<(Method, String)> = api
        .requests()
        .into_iter()
        .map(|(m, _, ct)| (m, ct))
        .collect();
    assert_eq!(kinds[0].0, Method::POST);
    for (m, ct) in &kinds[1..] {
        assert_eq!(m, Method::PATCH);
        assert_eq!(ct, "application/strategic-merge-patch+json");
    }
    assert_eq!(kinds.len(), 3);

    // The Event expires (or is deleted): the next occurrence creates it again, with
    // its name and count.
    let name = ev.metadata.name.clone();
    api.state().events.clear();
    rec.record(&pod("web"), WARNING, "BackOff", "back-off restarting")
        .await;
    rec.flush().await;
    let events = api.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].metadata.name, name);
    assert_eq!(events[0].count, Some(4));
    let methods: Vec<Method> = api.requests().into_iter().map(|r| r.0).collect();
    assert_eq!(methods[3..], [Method::PATCH, Method::POST]);
}

#[tokio::test]
async fn similar_events_are_combined_from_the_tenth_message_on() {
    let api = FakeApi::new();
    let rec = recorder(&api, quick(100));
    for i in 0..12 {
        rec.record(
            &pod("web"),
            WARNING,
            "Unhealthy",
            &format!("Liveness probe failed: attempt {i:02}"),
        )
        .await;
    }
    rec.flush().await;
    let events = api.events();
    let mut expected: Vec<String> = (0..9)
        .map(|i| format!("Liveness probe failed: attempt {i:02}"))
        .collect();
    expected.push("(combined from similar events): Liveness probe failed: attempt 11".into());
    expected.sort();
    assert_eq!(messages(&events), expected);
    let combined = events
        .iter()
        .find(|e| {
            e.message
                .as_deref()
                .is_some_and(|m| m.starts_with("(combined"))
        })
        .expect("combined");
    assert_eq!(combined.count, Some(3));
    assert_eq!(combined.reason.as_deref(), Some("Unhealthy"));
    assert_eq!(combined.involved_object, pod("web"));
}

#[tokio::test]
async fn events_beyond_the_spam_burst_are_dropped() {
    let api = FakeApi::new();
    let rec = recorder(&api, quick(100));
    for i in 0..30 {
        rec.record(&pod("noisy"), NORMAL, &format!("Reason{i}"), "m")
            .await;
    }
    rec.record(&pod("quiet"), NORMAL, "Reason0", "m").await;
    rec.flush().await;
    let events = api.events();
    let noisy = events
        .iter()
        .filter(|e| e.involved_object.name.as_deref() == Some("noisy"))
        .count();
    assert_eq!(noisy, 25);
    assert!(
        events
            .iter()
            .any(|e| e.involved_object.name.as_deref() == Some("quiet"))
    );
    // Dropped events never reach the server.
    assert_eq!(api.requests().len(), 26);
}

#[tokio::test]
async fn transient_failures_are_retried_and_others_are_not() {
    let api = FakeApi::new();
    let rec = recorder(&api, quick(10));
    // Two failures, then success within three tries.
    api.fail_next(&[503, 429]);
    rec.record(&pod("a"), NORMAL, "Retried", "m").await;
    rec.flush().await;
    assert_eq!(api.requests().len(), 3);
    assert_eq!(api.events().len(), 1);
    // Three failures: given up after the third try.
    api.fail_next(&[500, 500, 500]);
    rec.record(&pod("b"), NORMAL, "GivenUp", "m").await;
    rec.flush().await;
    assert_eq!(api.requests().len(), 6);
    // Rejected as invalid: not retried.
    api.fail_next(&[422]);
    rec.record(&pod("c"), NORMAL, "Invalid", "m").await;
    rec.flush().await;
    assert_eq!(api.requests().len(), 7);
    let mut reasons: Vec<String> = api.events().into_iter().filter_map(|e| e.reason).collect();
    reasons.sort();
    assert_eq!(reasons, ["Retried"]);
    // The writer is still there.
    rec.record(&pod("d"), NORMAL, "After", "m").await;
    rec.flush().await;
    assert_eq!(api.events().len(), 2);
}

#[test]
fn delivery_defaults_match_upstream() {
    let d = Delivery::default();
    assert_eq!(d.queue, 1000);
    assert_eq!(d.max_tries, 12);
    assert_eq!(d.sleep, Duration::from_secs(10));
}
