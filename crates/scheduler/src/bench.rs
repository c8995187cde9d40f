//! A scheduling throughput measurement against a live API server, shaped like
//! upstream's scheduler_perf "SchedulingBasic" case: N fake nodes (created directly,
//! Ready, with allocatable CPU/memory/pods), some pods placed first, then a batch of
//! new pods whose binding rate is measured.
//!
//! The nodes are plain Node objects, so nothing runs the pods; the real benchmark
//! with hollow nodes (`flotilla sim`) reuses [`measure`] once those exist.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{
    Container, Node, NodeCondition, NodeStatus, Pod, PodSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use tokio::time::Instant;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub nodes: usize,
    /// Pods scheduled before the measurement starts.
    pub placed: usize,
    /// Pods whose scheduling is measured.
    pub pods: usize,
    /// Concurrent create requests.
    pub create_concurrency: usize,
    /// Namespace for the pods (must exist).
    pub namespace: String,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            nodes: 5000,
            placed: 1000,
            pods: 10_000,
            create_concurrency: 64,
            namespace: "default".into(),
            timeout: Duration::from_secs(600),
        }
    }
}

/// The figures.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub nodes: usize,
    pub pods: usize,
    /// From the first create of the measured batch to its last pod bound.
    pub elapsed: Duration,
    /// Measured pods bound per second over `elapsed`.
    pub pods_per_second: f64,
    /// Time to create the batch (the API server's share).
    pub create_elapsed: Duration,
}

fn node_object(name: &str) -> Node {
    let alloc: BTreeMap<String, Quantity> = [("cpu", "4"), ("memory", "32Gi"), ("pods", "110")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.into())))
        .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                [
                    ("kubernetes.io/hostname".to_string(), name.to_string()),
                    ("type".into(), "fake".into()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            capacity: Some(alloc.clone()),
            allocatable: Some(alloc),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn pod_object(name: &str) -> Pod {
    let requests: BTreeMap<String, Quantity> = [("cpu", "10m"), ("memory", "16Mi")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.into())))
        .collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("bench".to_string(), "scheduler".to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "pause".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(requests),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

/// Creates `n` fake nodes named `<prefix>-<i>` with Ready status and allocatable
/// resources (the status is written through `/status` if create dropped it).
pub async fn create_nodes(
    client: &Client,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let name = format!("{prefix}-{i}");
            async move {
                let node = node_object(&name);
                let created = api.create(&PostParams::default(), &node).await?;
                let has_alloc = created
                    .status
                    .as_ref()
                    .and_then(|s| s.allocatable.as_ref())
                    .is_some_and(|a| !a.is_empty());
                if !has_alloc {
                    let patch = serde_json::json!({ "status": node.status });
                    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                }
                Ok::<_, kube::Error>(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(())
}

/// Creates pods named `<prefix>-<i>` with small requests.
pub async fn create_pods(
    client: &Client,
    namespace: &str,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let name = format!("{prefix}-{i}");
            async move {
                api.create(&PostParams::default(), &pod_object(&name))
                    .await?;
                Ok::<_, kube::Error>(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(())
}

/// Waits until `want` pods whose names start with `prefix` are bound.
async fn wait_bound(
    client: &Client,
    namespace: &str,
    prefix: &str,
    want: usize,
    deadline: Instant,
) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut bound: HashSet<String> = HashSet::new();
    let stream = watcher(api, watcher::Config::default());
    futures::pin_mut!(stream);
    while bound.len() < want {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let event = match next {
            Err(_) => anyhow::bail!("timed out with {}/{want} pods bound", bound.len()),
            Ok(None) => anyhow::bail!("pod watch ended"),
            Ok(Some(Err(e))) => {
                tracing::debug!("bench watch error: {e}");
                continue;
            }
            Ok(Some(Ok(e))) => e,
        };
        if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) = event {
            let name = p.metadata.name.clone().unwrap_or_default();
            let on_node = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
            if on_node && name.starts_with(prefix) {
                bound.insert(name);
            }
        }
    }
    Ok(())
}

/// Creates the nodes and the pre-placed pods, then measures how fast a batch of new
/// pods gets bound. A scheduler must be running against the same API server.
pub async fn measure(client: &Client, cfg: &BenchConfig) -> anyhow::Result<BenchReport> {
    let deadline = Instant::now() + cfg.timeout;
    create_nodes(client, "bench-node", cfg.nodes, cfg.create_concurrency).await?;
    if cfg.placed > 0 {
        create_pods(
            client,
            &cfg.namespace,
            "bench-init",
            cfg.placed,
            cfg.create_concurrency,
        )
        .await?;
        wait_bound(client, &cfg.namespace, "bench-init-", cfg.placed, deadline).await?;
    }
    let client2 = client.clone();
    let ns = cfg.namespace.clone();
    let want = cfg.pods;
    let waiter =
        tokio::spawn(async move { wait_bound(&client2, &ns, "bench-pod-", want, deadline).await });
    // Let the watch list before the batch starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    create_pods(
        client,
        &cfg.namespace,
        "bench-pod",
        cfg.pods,
        cfg.create_concurrency,
    )
    .await?;
    let create_elapsed = start.elapsed();
    waiter.await??;
    let elapsed = start.elapsed();
    Ok(BenchReport {
        nodes: cfg.nodes,
        pods: cfg.pods,
        elapsed,
        pods_per_second: cfg.pods as f64 / elapsed.as_secs_f64().max(1e-9),
        create_elapsed,
    })
}
