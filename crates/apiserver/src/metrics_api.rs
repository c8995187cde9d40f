//! `metrics.k8s.io/v1beta1`: NodeMetrics and PodMetrics, the resource metrics
//! `kubectl top` reads. Upstream serves them from metrics-server through API
//! aggregation; Flotilla's API server serves them itself, reading each node's
//! kubelet `/stats/summary` (with its kubelet client certificate) on request.
//!
//! Usage is reported as metrics-server does: CPU in nanocores (`"1234n"`), memory as
//! the working set in KiB (`"1024Ki"`), a `window` of the kubelet's sampling period.
//! Nodes without a reachable kubelet (hollow nodes) are left out, as metrics-server
//! leaves out nodes it cannot scrape.

use std::sync::Arc;
use std::time::Duration;

use api::catalog::ResourceInfo;
use axum::body::Body;
use axum::response::Response;
use http::{Request, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::errors::{ApiError, ApiResult};
use crate::handlers::ResourceRoute;
use crate::server::{ApiServer, json_response};

/// The group and version served.
pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
/// How long one kubelet may take to answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// The sampling window reported (the kubelet's CPU sampling period).
const WINDOW: &str = "10s";

/// The catalogue entries of the group (discovery, routing, RBAC).
pub fn resources() -> Vec<ResourceInfo> {
    let entry = |kind: &str, plural: &str, namespaced: bool| ResourceInfo {
        group: GROUP.into(),
        version: VERSION.into(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        plural: plural.into(),
        singular: String::new(),
        namespaced,
        short_names: Vec::new(),
        categories: Vec::new(),
        subresources: Vec::new(),
        verbs: vec!["get".into(), "list".into()],
        custom: false,
    };
    vec![
        entry("NodeMetrics", "nodes", false),
        entry("PodMetrics", "pods", true),
    ]
}

/// Whether a route belongs to this group.
pub fn serves(r: &ResourceRoute) -> bool {
    r.info.group == GROUP
}

fn cpu_quantity(nano_cores: u64) -> String {
    format!("{nano_cores}n")
}

fn memory_quantity(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

async fn objects(server: &ApiServer, plural: &str, namespace: &str) -> Vec<Value> {
    let Some(info) = server.resource("", "v1", plural) else {
        return Vec::new();
    };
    let prefix = crate::registry::list_prefix(&info, namespace);
    let (list, _, _, _) = server.cache.list(&prefix, None, 0, &|_| true).await;
    list.iter().map(|o| o.value()).collect()
}

/// Reads one node's `/stats/summary`.
async fn scrape(server: &ApiServer, node: &Value) -> ApiResult<Value> {
    let name = node["metadata"]["name"].as_str().unwrap_or_default();
    let target = crate::kubeletproxy::node_target(node, name)?;
    let fetch = async {
        let mut send = crate::kubeletproxy::dial(server, &target).await?;
        let req = Request::get("/stats/summary")
            .header(header::HOST, format!("{}:{}", target.host, target.port))
            .body(Body::empty())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| ApiError::internal(format!("scraping kubelet {name}: {e}")))?;
        if !resp.status().is_success() {
            return Err(ApiError::internal(format!(
                "scraping kubelet {name}: {}",
                resp.status()
            )));
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ApiError::internal(format!("scraping kubelet {name}: {e}")))?
            .to_bytes();
        serde_json::from_slice::<Value>(&body)
            .map_err(|e| ApiError::internal(format!("kubelet {name} summary: {e}")))
    };
    tokio::time::timeout(SCRAPE_TIMEOUT, fetch)
        .await
        .map_err(|_| ApiError::internal(format!("scraping kubelet {name}: timed out")))?
}

/// Summaries of every node with a kubelet that answers, with the Node objects.
async fn summaries(server: &Arc<ApiServer>, only: Option<&str>) -> Vec<(Value, Value)> {
    let nodes: Vec<Value> = objects(server, "nodes", "")
        .await
        .into_iter()
        .filter(|n| only.is_none_or(|o| n["metadata"]["name"] == o))
        .collect();
    let scrapes = nodes.into_iter().map(|n| {
        let server = server.clone();
        async move {
            match scrape(&server, &n).await {
                Ok(s) => Some((n, s)),
                Err(e) => {
                    tracing::debug!(node = %n["metadata"]["name"], "metrics: {}", e.message);
                    None
                }
            }
        }
    });
    futures::future::join_all(scrapes)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn meta_of(obj: &Value, namespaced: bool) -> Value {
    let m = &obj["metadata"];
    let mut out = json!({
        "name": m["name"],
        "creationTimestamp": m["creationTimestamp"],
    });
    if namespaced {
        out["namespace"] = m["namespace"].clone();
    }
    if m["labels"].is_object() {
        out["labels"] = m["labels"].clone();
    }
    out
}

fn node_metrics(node: &Value, summary: &Value) -> Option<Value> {
    let n = &summary["node"];
    let cpu = n["cpu"]["usageNanoCores"].as_u64()?;
    let memory = n["memory"]["workingSetBytes"].as_u64()?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": meta_of(node, false),
        "timestamp": n["cpu"]["time"],
        "window": WINDOW,
        "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(memory)},
    }))
}

/// A pod's metrics; None until every container has a CPU rate (metrics-server
/// leaves such pods out too).
fn pod_metrics(pod: &Value, stats: &Value) -> Option<Value> {
    let containers: Vec<Value> = stats["containers"]
        .as_array()?
        .iter()
        .map(|c| {
            Some(json!({
                "name": c["name"],
                "usage": {
                    "cpu": cpu_quantity(c["cpu"]["usageNanoCores"].as_u64()?),
                    "memory": memory_quantity(c["memory"]["workingSetBytes"].as_u64().unwrap_or(0)),
                },
            }))
        })
        .collect::<Option<_>>()?;
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": meta_of(pod, true),
        "timestamp": stats["cpu"]["time"],
        "window": WINDOW,
        "containers": containers,
    }))
}

fn list_of(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{kind}List"),
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {},
        "items": items,
    })
}

/// `GET` of NodeMetrics and PodMetrics (one or a list, with a label selector).
pub async fn handle(
    server: Arc<ApiServer>,
    r: &ResourceRoute,
    req: Request<Body>,
) -> ApiResult<Response> {
    if req.method() != http::Method::GET || r.watch || r.query.flag("watch") {
        return Err(ApiError::method_not_allowed(format!(
            "only get and list are supported on {}.{GROUP}",
            r.info.plural
        )));
    }
    let selector = match r.query.get("labelSelector").filter(|s| !s.is_empty()) {
        Some(s) => api::selector::Selector::parse(s)
            .map_err(|e| ApiError::bad_request(format!("invalid labelSelector {s:?}: {e}")))?,
        None => api::selector::Selector::default(),
    };
    let name = r.name.as_deref();
    if r.info.plural == "nodes" {
        let mut items = Vec::new();
        for (node, summary) in summaries(&server, name).await {
            if selector.matches_object(&node)
                && let Some(m) = node_metrics(&node, &summary)
            {
                items.push(m);
            }
        }
        items.sort_by(|a, b| {
            a["metadata"]["name"]
                .as_str()
                .cmp(&b["metadata"]["name"].as_str())
        });
        return match name {
            Some(n) => items
                .pop()
                .map(|m| json_response(200, &m))
                .ok_or_else(|| ApiError::not_found("nodes.metrics.k8s.io", "", n)),
            None => Ok(json_response(200, &list_of("NodeMetrics", items))),
        };
    }
    // Pods: the pods the API knows, with the usage their node's kubelet reports.
    let pods = objects(&server, "pods", &r.namespace).await;
    let mut usage: std::collections::HashMap<String, Value> = std::collections::HashMap::new();
    for (_, summary) in summaries(&server, None).await {
        for p in summary["pods"].as_array().into_iter().flatten() {
            if let Some(uid) = p["podRef"]["uid"].as_str() {
                usage.insert(uid.to_string(), p.clone());
            }
        }
    }
    let mut items: Vec<Value> = pods
        .iter()
        .filter(|p| name.is_none_or(|n| p["metadata"]["name"] == n))
        .filter(|p| selector.matches_object(p))
        .filter_map(|p| {
            let uid = p["metadata"]["uid"].as_str()?;
            usage.get(uid).and_then(|s| pod_metrics(p, s))
        })
        .collect();
    items.sort_by(|a, b| {
        (
            a["metadata"]["namespace"].as_str(),
            a["metadata"]["name"].as_str(),
        )
            .cmp(&(
                b["metadata"]["namespace"].as_str(),
                b["metadata"]["name"].as_str(),
            ))
    });
    match name {
        Some(n) => items
            .pop()
            .map(|m| json_response(200, &m))
            .ok_or_else(|| ApiError::not_found("pods.metrics.k8s.io", &r.namespace, n)),
        None => Ok(json_response(200, &list_of("PodMetrics", items))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_objects_look_like_metrics_server() {
        assert_eq!(cpu_quantity(1_500_000), "1500000n");
        assert_eq!(memory_quantity(10 * 1024 * 1024 + 100), "10240Ki");
        let node =
            json!({"metadata": {"name": "n1", "creationTimestamp": "t", "labels": {"a": "b"}}});
        let summary = json!({"node": {"cpu": {"time": "now", "usageNanoCores": 250_000_000u64},
                                        "memory": {"workingSetBytes": 2048u64}}});
        let m = node_metrics(&node, &summary).expect("metrics");
        assert_eq!(m["usage"], json!({"cpu": "250000000n", "memory": "2Ki"}));
        assert_eq!(m["metadata"]["labels"], json!({"a": "b"}));
        // No CPU rate yet: the node is left out, as metrics-server does.
        assert!(
            node_metrics(
                &node,
                &json!({"node": {"cpu": {}, "memory": {"workingSetBytes": 1}}})
            )
            .is_none()
        );
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u"}});
        let stats = json!({"cpu": {"time": "now"}, "containers": [
            {"name": "c", "cpu": {"usageNanoCores": 5u64}, "memory": {"workingSetBytes": 4096u64}}]});
        let pm = pod_metrics(&pod, &stats).expect("pod metrics");
        assert_eq!(
            pm["containers"][0]["usage"],
            json!({"cpu": "5n", "memory": "4Ki"})
        );
        assert_eq!(pm["metadata"]["namespace"], "ns");
        let no_rate = json!({"containers": [{"name": "c", "cpu": {}, "memory": {}}]});
        assert!(pod_metrics(&pod, &no_rate).is_none());
    }
}
