//! Node lifecycle, taint eviction, pod GC, node IPAM, EndpointSlice/Endpoints and
//! service account controllers against the real API server in-process. Pods don't run
//! here: the tests play the kubelet by writing node/pod status and Leases themselves.

use std::future::Future;
use std::time::Duration;

use controllers::{Backoff, ControllerOptions};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Event, Namespace, Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(12);

struct Env {
    client: Client,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn server() -> Env {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let running = apiserver::start(
        apiserver::ServerConfig {
            data_dir: dir.path().to_path_buf(),
            secure_port: 0,
            bind_address: "127.0.0.1".into(),
            // No service account controller runs here (pods need no token volume).
            service_account_admission: false,
            ..Default::default()
        },
        shutdown.clone(),
    )
    .await
    .expect("start API server");
    let kubeconfig = Kubeconfig::read_from(&running.kubeconfig).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    let client = Client::try_from(config).expect("kube client");
    Env {
        client,
        shutdown,
        _dir: dir,
    }
}

/// Test options: only `names` run, no leader election, short node periods.
fn options(names: &[&str]) -> ControllerOptions {
    ControllerOptions {
        controllers: names.iter().map(|s| s.to_string()).collect(),
        leader_elect: false,
        node_monitor_period: Duration::from_millis(300),
        node_monitor_grace_period: Duration::from_secs(3),
        node_startup_grace_period: Duration::from_secs(3),
        workload_workers: 2,
        backoff: Backoff {
            base: Duration::from_millis(20),
            max: Duration::from_millis(500),
        },
        ..Default::default()
    }
}

fn start_controllers(env: &Env, opts: ControllerOptions) {
    let (c, s) = (env.client.clone(), env.shutdown.clone());
    tokio::spawn(async move {
        if let Err(e) = controllers::run_all(c, opts, s).await {
            panic!("controllers failed: {e:#}");
        }
    });
}

/// Poll `check` until it returns `Some`, failing the test after `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn conditions(ready: &str) -> serde_json::Value {
    let t = now();
    json!([
        {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "lastHeartbeatTime": t, "lastTransitionTime": t},
        {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "lastHeartbeatTime": t, "lastTransitionTime": t},
        {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "lastHeartbeatTime": t, "lastTransitionTime": t},
        {"type": "Ready", "status": ready, "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": t, "lastTransitionTime": t},
    ])
}

/// A node reporting Ready, with its Lease, as a kubelet would register it.
async fn register_node(client: &Client, name: &str) -> Node {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            }))
            .expect("node"),
        )
        .await
        .expect("create node");
    let node = nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": conditions("True")}})),
        )
        .await
        .expect("node status");
    renew_lease(client, name).await;
    node
}

async fn renew_lease(client: &Client, name: &str) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": MicroTime(Timestamp::now())},
    });
    leases
        .patch(
            name,
            &PatchParams::apply("test-kubelet").force(),
            &Patch::Apply(&lease),
        )
        .await
        .expect("renew lease");
}

/// A pod bound to `node`; `extra` is merged into its spec.
async fn create_pod(
    client: &Client,
    ns: &str,
    name: &str,
    node: &str,
    labels: serde_json::Value,
    extra: serde_json::Value,
) -> Pod {
    let mut spec = json!({
        "nodeName": node,
        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                        "ports": [{"name": "http", "containerPort": 8080}]}],
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": spec,
        }))
        .expect("pod"),
    )
    .await
    .expect("create pod")
}

/// Fake kubelet: the pod runs with `ip`, Ready as given.
async fn set_running(client: &Client, ns: &str, name: &str, ip: &str, ready: bool) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let t = now();
    let status = if ready { "True" } else { "False" };
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
                {"type": "Initialized", "status": "True", "lastTransitionTime": t},
                {"type": "ContainersReady", "status": status, "lastTransitionTime": t},
                {"type": "Ready", "status": status, "lastTransitionTime": t},
            ],
        }})),
    )
    .await
    .expect("pod status");
}

fn condition(node: &Node, type_: &str) -> Option<(String, Option<String>)> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn pod_ready(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

fn taints(node: &Node) -> Vec<(String, String, bool)> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.effect, t.time_added.is_some()))
        .collect()
}

async fn events_for(client: &Client, ns: &str, name: &str, reason: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(name) && e.reason.as_deref() == Some(reason)
        })
        .collect()
}

/// Upstream defaults: --node-monitor-period 5s, --node-monitor-grace-period 40s,
/// --node-startup-grace-period 60s, DefaultTolerationSeconds 300 s for not-ready and
/// unreachable, --terminated-pod-gc-threshold 12500, --max-endpoints-per-slice 100.
#[test]
fn defaults_match_upstream() {
    let o = ControllerOptions::default();
    assert_eq!(o.node_monitor_period, Duration::from_secs(5));
    assert_eq!(o.node_monitor_grace_period, Duration::from_secs(40));
    assert_eq!(o.node_startup_grace_period, Duration::from_secs(60));
    assert_eq!(o.terminated_pod_gc_threshold, 12500);
    assert_eq!(o.max_endpoints_per_slice, 100);
    assert_eq!(o.node_cidr_mask_size, 24);
    let s = apiserver::ServerConfig::default();
    assert_eq!(s.default_not_ready_toleration_seconds, 300);
    assert_eq!(s.default_unreachable_toleration_seconds, 300);
    for name in [
        "nodelifecycle",
        "taint-eviction-controller",
        "nodeipam",
        "podgc",
        "endpointslice",
        "endpoint",
        "serviceaccount",
    ] {
        assert!(
            controllers::CONTROLLERS.iter().any(|(n, _)| *n == name),
            "{name} registered"
        );
        assert!(o.enabled(name), "{name} on by default");
    }
}

/// A node whose kubelet goes silent becomes Unknown and tainted; a pod tolerating the
/// taint for 2 s is evicted and, its node being unreachable, force-removed; a pod
/// tolerating it forever stays (marked not ready); the healthy node is untouched; the
/// taints go once the node reports again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_is_tainted_and_its_pods_evicted() {
    let env = server().await;
    let c = env.client.clone();
    register_node(&c, "alive").await;
    register_node(&c, "dead").await;
    // The live node's kubelet keeps renewing its lease.
    {
        let (c, stop) = (c.clone(), env.shutdown.clone());
        tokio::spawn(async move {
            loop {
                renew_lease(&c, "alive").await;
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                }
            }
        });
    }
    let unreachable_for = |secs: Option<i64>| {
        let mut t = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"});
        if let Some(s) = secs {
            t["tolerationSeconds"] = json!(s);
        }
        json!({"tolerations": [t], "terminationGracePeriodSeconds": 1})
    };
    create_pod(
        &c,
        "default",
        "victim",
        "dead",
        json!({"app": "v"}),
        unreachable_for(Some(2)),
    )
    .await;
    create_pod(
        &c,
        "default",
        "stayer",
        "dead",
        json!({"app": "s"}),
        unreachable_for(None),
    )
    .await;
    create_pod(
        &c,
        "default",
        "bystander",
        "alive",
        json!({"app": "b"}),
        json!({}),
    )
    .await;
    set_running(&c, "default", "victim", "10.42.1.5", true).await;
    set_running(&c, "default", "stayer", "10.42.1.6", true).await;
    set_running(&c, "default", "bystander", "10.42.0.5", true).await;

    start_controllers(
        &env,
        options(&["nodelifecycle", "taint-eviction-controller", "podgc"]),
    );

    let nodes: Api<Node> = Api::all(c.clone());
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let dead = eventually(WAIT, "dead node Ready=Unknown", || async {
        let n = nodes.get("dead").await.ok()?;
        (condition(&n, "Ready")?.0 == "Unknown").then_some(n)
    })
    .await;
    for t in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert_eq!(
            condition(&dead, t),
            Some(("Unknown".into(), Some("NodeStatusUnknown".into()))),
            "{t}"
        );
    }
    let ready = dead
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .cloned()
        .expect("ready");
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );

    let t = eventually(WAIT, "unreachable taints", || async {
        let n = nodes.get("dead").await.ok()?;
        let t = taints(&n);
        (t.iter()
            .any(|x| x.0 == "node.kubernetes.io/unreachable" && x.1 == "NoExecute")
            && t.iter()
                .any(|x| x.0 == "node.kubernetes.io/unreachable" && x.1 == "NoSchedule"))
        .then_some(t)
    })
    .await;
    assert!(
        t.iter()
            .any(|x| x.0 == "node.kubernetes.io/unreachable" && x.1 == "NoExecute" && x.2),
        "NoExecute taint has timeAdded: {t:?}"
    );

    // Pods on the silent node are marked not ready.
    eventually(WAIT, "stayer marked not ready", || async {
        let p = pods.get("stayer").await.ok()?;
        (pod_ready(&p).as_deref() == Some("False")).then_some(())
    })
    .await;

    // The victim is evicted after its 2 s and, nobody finishing it on the dead node,
    // force-removed once its 1 s grace period is over.
    eventually(WAIT, "victim removed", || async {
        pods.get_opt("victim").await.ok()?.is_none().then_some(())
    })
    .await;
    // Events are written in the background: wait for them.
    eventually(WAIT, "eviction event", || async {
        events_for(&c, "default", "victim", "TaintManagerEviction")
            .await
            .iter()
            .any(|e| e.message.as_deref() == Some("Marking for deletion Pod default/victim"))
            .then_some(())
    })
    .await;
    eventually(WAIT, "node event", || async {
        (!events_for(&c, "default", "dead", "NodeNotReady")
            .await
            .is_empty())
        .then_some(())
    })
    .await;
    eventually(WAIT, "pod event", || async {
        (!events_for(&c, "default", "stayer", "NodeNotReady")
            .await
            .is_empty())
        .then_some(())
    })
    .await;

    // The forever-tolerating pod stays, the healthy node and its pod are untouched.
    let stayer = pods.get("stayer").await.expect("stayer");
    assert!(stayer.metadata.deletion_timestamp.is_none());
    let alive = nodes.get("alive").await.expect("alive");
    assert_eq!(
        condition(&alive, "Ready").map(|c| c.0).as_deref(),
        Some("True")
    );
    assert!(taints(&alive).is_empty(), "{:?}", taints(&alive));
    let by = pods.get("bystander").await.expect("bystander");
    assert_eq!(pod_ready(&by).as_deref(), Some("True"));
    assert!(by.metadata.deletion_timestamp.is_none());

    // The kubelet comes back: taints are removed.
    renew_lease(&c, "dead").await;
    nodes
        .patch_status(
            "dead",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": conditions("True")}})),
        )
        .await
        .expect("node reports again");
    eventually(WAIT, "taints removed", || async {
        let n = nodes.get("dead").await.ok()?;
        taints(&n).is_empty().then_some(())
    })
    .await;
}

/// Nodes get distinct podCIDRs from the cluster CIDR; a CIDR already on a node at start
/// is never handed out again; a deleted node's CIDR is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_pod_cidrs() {
    let env = server().await;
    let c = env.client.clone();
    let nodes: Api<Node> = Api::all(c.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "pre"},
                "spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"]},
            }))
            .expect("node"),
        )
        .await
        .expect("create pre");
    start_controllers(&env, options(&["nodeipam"]));
    for n in ["n1", "n2", "n3"] {
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(
                    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}}),
                )
                .expect("node"),
            )
            .await
            .expect("create node");
    }
    let cidr = |n: Node| {
        let spec = n.spec.unwrap_or_default();
        let cidrs = spec.pod_cidrs.unwrap_or_default();
        (spec.pod_cidr, cidrs)
    };
    let mut seen = vec!["10.42.0.0/24".to_string()];
    for n in ["n1", "n2", "n3"] {
        let (one, all) = eventually(WAIT, "podCIDR assigned", || async {
            let (one, all) = cidr(nodes.get(n).await.ok()?);
            one.is_some().then_some((one, all))
        })
        .await;
        let one = one.expect("podCIDR");
        assert_eq!(all, vec![one.clone()], "{n}: podCIDRs mirrors podCIDR");
        assert!(
            one.starts_with("10.42.") && one.ends_with(".0/24"),
            "{n}: {one}"
        );
        assert!(
            !seen.contains(&one),
            "{n}: {one} handed out twice ({seen:?})"
        );
        seen.push(one);
    }
    nodes
        .delete("n1", &DeleteParams::default())
        .await
        .expect("delete n1");
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n4"}}),
            )
            .expect("node"),
        )
        .await
        .expect("create n4");
    let (one, _) = eventually(WAIT, "n4 podCIDR", || async {
        let (one, all) = cidr(nodes.get("n4").await.ok()?);
        one.is_some().then_some((one, all))
    })
    .await;
    let one = one.expect("podCIDR");
    assert!(
        !seen[2..].contains(&one) && one != seen[0],
        "n4 got a free CIDR: {one} ({seen:?})"
    );
    let pre = cidr(nodes.get("pre").await.expect("pre"));
    assert_eq!(
        pre.0.as_deref(),
        Some("10.42.0.0/24"),
        "existing allocation kept"
    );
}

fn slice_ips(s: &EndpointSlice) -> Vec<(String, bool, bool, bool)> {
    let mut v: Vec<(String, bool, bool, bool)> = s
        .endpoints
        .iter()
        .map(|e| {
            let c = e.conditions.clone().unwrap_or_default();
            (
                e.addresses.first().cloned().unwrap_or_default(),
                c.ready.unwrap_or_default(),
                c.serving.unwrap_or_default(),
                c.terminating.unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

fn subset_ips(e: &Endpoints) -> (Vec<String>, Vec<String>) {
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for s in e.subsets.iter().flatten() {
        ready.extend(s.addresses.iter().flatten().map(|a| a.ip.clone()));
        not_ready.extend(s.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()));
    }
    ready.sort();
    not_ready.sort();
    (ready, not_ready)
}

/// A Service with a selector gets an EndpointSlice and an Endpoints object listing its
/// pods (named targetPort resolved), following readiness and termination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_gets_endpoint_slices_and_endpoints() {
    let env = server().await;
    let c = env.client.clone();
    register_node(&c, "n1").await;
    let services: Api<Service> = Api::namespaced(c.clone(), "default");
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "labels": {"tier": "front"}},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
            }))
            .expect("service"),
        )
        .await
        .expect("create service");
    create_pod(&c, "default", "p1", "n1", json!({"app": "web"}), json!({})).await;
    create_pod(&c, "default", "p2", "n1", json!({"app": "web"}), json!({})).await;
    create_pod(&c, "default", "db", "n1", json!({"app": "db"}), json!({})).await;
    set_running(&c, "default", "p1", "10.42.0.11", true).await;
    set_running(&c, "default", "p2", "10.42.0.12", false).await;
    set_running(&c, "default", "db", "10.42.0.13", true).await;

    start_controllers(&env, options(&["endpointslice", "endpoint"]));

    let slices: Api<EndpointSlice> = Api::namespaced(c.clone(), "default");
    let eps: Api<Endpoints> = Api::namespaced(c.clone(), "default");
    let lp = ListParams::default().labels("kubernetes.io/service-name=web");
    let slice = eventually(WAIT, "slice with both pods", || async {
        let l = slices.list(&lp).await.ok()?.items;
        (l.len() == 1 && l[0].endpoints.len() == 2).then(|| l[0].clone())
    })
    .await;
    let name = slice.name_any();
    assert!(
        name.starts_with("web-") && name.len() == "web-".len() + 5,
        "{name}"
    );
    assert_eq!(slice.address_type, "IPv4");
    let labels = slice.metadata.labels.clone().expect("labels");
    assert_eq!(
        labels
            .get("endpointslice.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    assert_eq!(labels.get("tier").map(String::as_str), Some("front"));
    assert_eq!(
        slice_ips(&slice),
        [
            ("10.42.0.11".to_string(), true, true, false),
            ("10.42.0.12".to_string(), false, false, false)
        ]
    );
    let ports = slice.ports.clone().expect("ports");
    assert_eq!(
        (
            ports[0].name.as_deref(),
            ports[0].port,
            ports[0].protocol.as_deref()
        ),
        (Some("http"), Some(8080), Some("TCP"))
    );
    let e = slice
        .endpoints
        .iter()
        .find(|e| e.addresses[0] == "10.42.0.11")
        .expect("p1");
    assert_eq!(e.node_name.as_deref(), Some("n1"));
    assert_eq!(
        e.target_ref.as_ref().and_then(|t| t.name.as_deref()),
        Some("p1")
    );
    let owner = slice.owner_references().first().cloned().expect("owner");
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Service", "web", Some(true))
    );

    let ep = eventually(WAIT, "endpoints", || async {
        eps.get_opt("web").await.ok()?
    })
    .await;
    assert_eq!(
        subset_ips(&ep),
        (
            vec!["10.42.0.11".to_string()],
            vec!["10.42.0.12".to_string()]
        )
    );
    let port = &ep.subsets.as_ref().expect("subsets")[0]
        .ports
        .as_ref()
        .expect("ports")[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
    assert!(
        ep.annotations()
            .contains_key("endpoints.kubernetes.io/last-change-trigger-time"),
        "{:?}",
        ep.annotations()
    );

    // p2 becomes ready.
    set_running(&c, "default", "p2", "10.42.0.12", true).await;
    eventually(WAIT, "p2 ready everywhere", || async {
        let e = eps.get("web").await.ok()?;
        let s = slices.list(&lp).await.ok()?.items;
        (subset_ips(&e).0.len() == 2 && s.len() == 1 && slice_ips(&s[0]).iter().all(|x| x.1))
            .then_some(())
    })
    .await;

    // p1 starts terminating (graceful delete on its node): the slice keeps it as
    // terminating and not ready, the Endpoints drop it.
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    pods.delete("p1", &DeleteParams::default())
        .await
        .expect("delete p1");
    eventually(WAIT, "p1 terminating", || async {
        let e = eps.get("web").await.ok()?;
        let s = slices.list(&lp).await.ok()?.items;
        let terminating =
            s.first()
                .map(slice_ips)?
                .contains(&("10.42.0.11".to_string(), false, true, true));
        (subset_ips(&e) == (vec!["10.42.0.12".to_string()], vec![]) && terminating).then_some(())
    })
    .await;

    // Gone for good: only p2 is left.
    pods.delete(
        "p1",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .expect("force delete p1");
    eventually(WAIT, "p1 gone from the slice", || async {
        let s = slices.list(&lp).await.ok()?.items;
        (s.len() == 1 && slice_ips(&s[0]) == [("10.42.0.12".to_string(), true, true, false)])
            .then_some(())
    })
    .await;
    // The selector-less `kubernetes` service is left alone.
    let k = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=kubernetes,endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io"))
        .await
        .expect("list");
    assert!(k.items.is_empty());
}

/// Every namespace gets a `default` ServiceAccount, recreated when deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_get_default_service_account() {
    let env = server().await;
    let c = env.client.clone();
    start_controllers(&env, options(&["serviceaccount"]));
    let namespaces: Api<Namespace> = Api::all(c.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some("team-a".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("create namespace");
    for ns in ["default", "kube-system", "team-a"] {
        let sas: Api<ServiceAccount> = Api::namespaced(c.clone(), ns);
        eventually(WAIT, "default service account", || async {
            sas.get_opt("default").await.ok()?
        })
        .await;
    }
    let sas: Api<ServiceAccount> = Api::namespaced(c.clone(), "team-a");
    let first = sas.get("default").await.expect("sa");
    sas.delete("default", &DeleteParams::default())
        .await
        .expect("delete sa");
    let again = eventually(WAIT, "recreated", || async {
        let sa = sas.get_opt("default").await.ok()??;
        (sa.uid() != first.uid()).then_some(sa)
    })
    .await;
    assert_eq!(again.name_any(), "default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_get_the_root_ca_config_map_back() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let env = server().await;
    let c = env.client.clone();
    let ca = "-----BEGIN CERTIFICATE-----\nTEST\n-----END CERTIFICATE-----\n";
    let mut opts = options(&["root-ca-cert-publisher"]);
    opts.root_ca = Some(ca.into());
    start_controllers(&env, opts);
    let namespaces: Api<Namespace> = Api::all(c.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team-b"}})).expect("ns"),
        )
        .await
        .expect("create namespace");
    let has_ca = |cm: &ConfigMap| {
        cm.data
            .as_ref()
            .and_then(|d| d.get("ca.crt"))
            .map(String::as_str)
            == Some(ca)
            && cm.data.as_ref().is_some_and(|d| d.len() == 1)
    };
    for ns in ["default", "kube-system", "team-b"] {
        let cms: Api<ConfigMap> = Api::namespaced(c.clone(), ns);
        eventually(WAIT, "kube-root-ca.crt", || async {
            let cm = cms.get_opt("kube-root-ca.crt").await.ok()??;
            has_ca(&cm).then_some(())
        })
        .await;
    }
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "team-b");
    // Edited: restored.
    cms.patch(
        "kube-root-ca.crt",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"ca.crt": "forged", "extra": "x"}})),
    )
    .await
    .expect("edit");
    eventually(WAIT, "restored after an edit", || async {
        let cm = cms.get_opt("kube-root-ca.crt").await.ok()??;
        has_ca(&cm).then_some(())
    })
    .await;
    // Deleted: recreated.
    let first = cms.get("kube-root-ca.crt").await.expect("cm");
    cms.delete("kube-root-ca.crt", &DeleteParams::default())
        .await
        .expect("delete");
    eventually(WAIT, "recreated after deletion", || async {
        let cm = cms.get_opt("kube-root-ca.crt").await.ok()??;
        (cm.uid() != first.uid() && has_ca(&cm)).then_some(())
    })
    .await;
}

#[test]
fn root_ca_comes_from_the_kubeconfig() {
    use base64::Engine;
    let pem = "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n";
    let data = base64::engine::general_purpose::STANDARD.encode(pem);
    let kc = Kubeconfig::from_yaml(&format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://x\n    certificate-authority-data: {data}\ncontexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\ncurrent-context: ctx\nusers:\n- name: u\n  user: {{}}\n"
    ))
    .expect("kubeconfig");
    assert_eq!(
        controllers::root_ca_from_kubeconfig(&kc).as_deref(),
        Some(pem)
    );
    let mut none = kc.clone();
    none.current_context = None;
    assert_eq!(controllers::root_ca_from_kubeconfig(&none), None);
}
