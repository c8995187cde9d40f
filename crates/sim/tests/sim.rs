//! End to end: the real API server in-process, hollow nodes against it through a kube
//! client built from the admin kubeconfig the server writes. No controller manager
//! runs, so tests set node podCIDRs themselves where node IPAM would.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use serde_json::json;
use sim::{Control, FailAfter, Sim, SimArgs};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

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
    Env {
        client: Client::try_from(config).expect("kube client"),
        shutdown,
        _dir: dir,
    }
}

/// Fast heartbeats so tests see several renewals in a few seconds.
fn args(nodes: u32) -> SimArgs {
    SimArgs {
        nodes,
        startup_delay: Duration::from_millis(100),
        termination_delay: Duration::from_millis(200),
        heartbeat_interval: Duration::from_millis(300),
        status_interval: Duration::from_secs(1),
        ..SimArgs::default()
    }
}

fn start_sim(env: &Env, args: SimArgs) -> Control {
    let sim = Sim::new(env.client.clone(), &args).expect("valid sim args");
    let control = sim.control();
    let token = env.shutdown.child_token();
    tokio::spawn(async move { sim.run(token).await });
    control
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
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

async fn ready_nodes(client: &Client, n: usize) -> Vec<Node> {
    let api: Api<Node> = Api::all(client.clone());
    eventually(WAIT, "simulated nodes Ready", || async {
        let list = api
            .list(&ListParams::default().labels("type=hollow"))
            .await
            .ok()?;
        let ready: Vec<Node> = list
            .items
            .into_iter()
            .filter(|n| condition(n, "Ready") == Some("True"))
            .collect();
        (ready.len() == n).then_some(ready)
    })
    .await
}

async fn renew_time(client: &Client, node: &str) -> Option<k8s_openapi::jiff::Timestamp> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = api.get_opt(node).await.ok()??;
    lease.spec?.renew_time.map(|t| t.0)
}

async fn set_pod_cidr(client: &Client, node: &str, cidr: &str) {
    let api: Api<Node> = Api::all(client.clone());
    api.patch(
        node,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})),
    )
    .await
    .expect("set podCIDR");
}

async fn create_pod(client: &Client, name: &str, node: &str, extra: serde_json::Value) -> Pod {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}],
        },
    });
    merge(&mut pod, extra);
    let pod: Pod = serde_json::from_value(pod).expect("pod");
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

async fn running_pod(client: &Client, name: &str) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually(WAIT, &format!("pod {name} Running"), || async {
        let p = api.get(name).await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
    })
    .await
}

fn internal_ip(node: &Node) -> String {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn nodes_register_ready_with_leases() {
    let env = server().await;
    let control = start_sim(&env, args(3));
    let nodes = ready_nodes(&env.client, 3).await;
    let mut names: Vec<String> = nodes.iter().map(|n| n.name_any()).collect();
    names.sort();
    assert_eq!(names, ["sim-0", "sim-1", "sim-2"]);
    for n in &nodes {
        let labels = n.labels();
        assert_eq!(labels.get("kubernetes.io/hostname"), Some(&n.name_any()));
        assert_eq!(
            labels.get("kubernetes.io/os").map(String::as_str),
            Some("linux")
        );
        assert_eq!(
            labels.get("kubernetes.io/arch").map(String::as_str),
            Some("amd64")
        );
        for t in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            assert_eq!(condition(n, t), Some("False"), "{t} of {}", n.name_any());
        }
        let st = n.status.as_ref().expect("status");
        let cap = st.capacity.as_ref().expect("capacity");
        assert_eq!(cap["cpu"].0, "4");
        assert_eq!(cap["memory"].0, "16Gi");
        assert_eq!(cap["pods"].0, "110");
        let info = st.node_info.as_ref().expect("nodeInfo");
        assert_eq!(info.os_image, "Flotilla hollow node");
        assert_eq!(info.kubelet_version, "v1.33.0");
        assert!(internal_ip(n).starts_with("10.64."));
    }
    let mut ips: Vec<String> = nodes.iter().map(internal_ip).collect();
    ips.dedup();
    assert_eq!(ips.len(), 3, "every node has its own address");

    // Every node holds its Lease and keeps renewing it.
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "kube-node-lease");
    let first = eventually(WAIT, "leases created", || async {
        let mut times = Vec::new();
        for name in ["sim-0", "sim-1", "sim-2"] {
            let l = leases.get_opt(name).await.ok()??;
            let spec = l.spec.as_ref()?;
            assert_eq!(spec.holder_identity.as_deref(), Some(name));
            assert_eq!(spec.lease_duration_seconds, Some(40));
            let owner = l.owner_references().first().cloned()?;
            assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", name));
            times.push(spec.renew_time.clone()?.0);
        }
        Some(times)
    })
    .await;
    eventually(WAIT, "leases renewed", || async {
        for (i, name) in ["sim-0", "sim-1", "sim-2"].iter().enumerate() {
            if renew_time(&env.client, name).await? <= first[i] {
                return None;
            }
        }
        Some(())
    })
    .await;
    let stats = control.stats();
    assert_eq!((stats.nodes_registered, stats.nodes_failed), (3, 0));
}

#[tokio::test]
async fn bound_pod_runs_in_node_cidr_and_deletion_completes() {
    let env = server().await;
    let control = start_sim(&env, args(3));
    ready_nodes(&env.client, 3).await;
    set_pod_cidr(&env.client, "sim-1", "10.42.1.0/24").await;
    create_pod(&env.client, "web", "sim-1", json!({})).await;
    let pod = running_pod(&env.client, "web").await;
    let status = pod.status.clone().expect("status");
    let ip: IpAddr = status
        .pod_ip
        .as_deref()
        .expect("podIP")
        .parse()
        .expect("an IP");
    let net: ipnet::IpNet = "10.42.1.0/24".parse().expect("cidr");
    assert!(net.contains(&ip), "{ip} inside the node's podCIDR");
    assert_eq!(
        status.pod_ips.as_ref().map(|v| v.len()),
        Some(1),
        "podIPs lists the address"
    );
    let node: Node = Api::<Node>::all(env.client.clone())
        .get("sim-1")
        .await
        .expect("node");
    assert_eq!(status.host_ip.as_deref(), Some(internal_ip(&node).as_str()));
    assert!(status.start_time.is_some());
    let conds: Vec<(String, String)> = status
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect();
    for t in [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ] {
        assert!(
            conds.contains(&(t.to_string(), "True".to_string())),
            "{t}=True in {conds:?}"
        );
    }
    let cs = status.container_statuses.expect("containerStatuses");
    assert_eq!(cs.len(), 2);
    for c in &cs {
        assert!(
            c.ready && c.started == Some(true),
            "{} ready and started",
            c.name
        );
        assert_eq!(c.restart_count, 0);
        assert!(
            c.container_id
                .as_deref()
                .is_some_and(|s| s.starts_with("sim://"))
        );
        assert!(c.state.as_ref().and_then(|s| s.running.as_ref()).is_some());
    }

    // The kubelet's events, from the node.
    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    eventually(WAIT, "Created and Started events", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let mine: Vec<&Event> = list
            .items
            .iter()
            .filter(|e| e.involved_object.name.as_deref() == Some("web"))
            .collect();
        let has = |reason: &str, msg: &str| {
            mine.iter().any(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.message.as_deref() == Some(msg)
                    && e.source.as_ref().and_then(|s| s.host.as_deref()) == Some("sim-1")
                    && e.involved_object.field_path.as_deref() == Some("spec.containers{web}")
            })
        };
        (has("Created", "Created container: web") && has("Started", "Started container web"))
            .then_some(())
    })
    .await;

    // A second pod gets another address from the same range.
    create_pod(&env.client, "web2", "sim-1", json!({})).await;
    let ip2 = running_pod(&env.client, "web2")
        .await
        .status
        .and_then(|s| s.pod_ip);
    assert_ne!(ip2.as_deref(), Some(ip.to_string().as_str()));

    // Graceful deletion: the node finishes it quickly, well before the 30 s grace.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    pods.delete("web", &DeleteParams::default())
        .await
        .expect("delete pod");
    let deleted_at = std::time::Instant::now();
    eventually(WAIT, "deleted pod gone", || async {
        pods.get_opt("web").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(deleted_at.elapsed() < Duration::from_secs(5));
    eventually(WAIT, "counters follow", || async {
        let s = control.stats();
        (s.pods_deleted == 1 && s.pods_running == 1 && s.pods_started == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn stopped_node_stops_renewing_and_handling_pods() {
    let env = server().await;
    let mut a = args(3);
    a.pod_cidr_wait = Duration::from_millis(300);
    a.fail_after = vec![FailAfter {
        node: Some("sim-0".into()),
        after: Duration::from_secs(2),
    }];
    let control = start_sim(&env, a);
    ready_nodes(&env.client, 3).await;

    // --fail-after sim-0=2s: its lease freezes, the others keep going.
    eventually(WAIT, "sim-0 stopped", || async {
        (control.stats().nodes_failed == 1).then_some(())
    })
    .await;
    control.fail("sim-2").expect("fail sim-2");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let frozen0 = renew_time(&env.client, "sim-0")
        .await
        .expect("lease of sim-0");
    let frozen2 = renew_time(&env.client, "sim-2")
        .await
        .expect("lease of sim-2");
    let live = renew_time(&env.client, "sim-1")
        .await
        .expect("lease of sim-1");
    // A pod bound to a stopped node is not started.
    create_pod(&env.client, "stuck", "sim-2", json!({})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(renew_time(&env.client, "sim-0").await, Some(frozen0));
    assert_eq!(renew_time(&env.client, "sim-2").await, Some(frozen2));
    assert!(renew_time(&env.client, "sim-1").await.expect("lease") > live);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let stuck = pods.get("stuck").await.expect("pod");
    assert_eq!(
        stuck.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );

    // Recovered, the node renews again and starts the pod (fallback range: no IPAM).
    control.recover("sim-2").expect("recover");
    eventually(WAIT, "sim-2 renewing again", || async {
        (renew_time(&env.client, "sim-2").await? > frozen2).then_some(())
    })
    .await;
    running_pod(&env.client, "stuck").await;
    assert!(matches!(
        control.fail("sim-9"),
        Err(sim::Error::UnknownNode(_))
    ));
}

#[tokio::test]
async fn node_without_cidr_falls_back_to_its_own_range() {
    let env = server().await;
    let mut a = args(2);
    a.pod_cidr_wait = Duration::from_millis(300);
    start_sim(&env, a);
    ready_nodes(&env.client, 2).await;
    create_pod(&env.client, "p", "sim-1", json!({})).await;
    let pod = running_pod(&env.client, "p").await;
    let ip: IpAddr = pod
        .status
        .and_then(|s| s.pod_ip)
        .expect("podIP")
        .parse()
        .expect("ip");
    let net: ipnet::IpNet = "10.128.1.0/24".parse().expect("cidr");
    assert!(net.contains(&ip), "{ip} in sim-1's fallback range");
}

#[tokio::test]
async fn host_network_pods_use_the_node_address() {
    let env = server().await;
    start_sim(&env, args(1));
    let nodes = ready_nodes(&env.client, 1).await;
    create_pod(
        &env.client,
        "hn",
        "sim-0",
        json!({"spec": {"hostNetwork": true}}),
    )
    .await;
    let pod = running_pod(&env.client, "hn").await;
    assert_eq!(
        pod.status.and_then(|s| s.pod_ip),
        Some(internal_ip(&nodes[0]))
    );
}

#[tokio::test]
async fn run_for_annotation_completes_job_pods() {
    let env = server().await;
    start_sim(&env, args(1));
    ready_nodes(&env.client, 1).await;
    set_pod_cidr(&env.client, "sim-0", "10.42.0.0/24").await;
    let cases = [("ok", "0", "Succeeded", 0), ("bad", "3", "Failed", 3)];
    for (name, code, _, _) in cases {
        create_pod(
            &env.client,
            name,
            "sim-0",
            json!({
                "metadata": {"annotations": {sim::RUN_FOR_ANNOTATION: "500ms", sim::EXIT_CODE_ANNOTATION: code}},
                "spec": {"restartPolicy": "Never"},
            }),
        )
        .await;
    }
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    for (name, _, phase, code) in cases {
        let p = eventually(WAIT, &format!("{name} {phase}"), || async {
            let p = pods.get(name).await.ok()?;
            (p.status.as_ref()?.phase.as_deref() == Some(phase)).then_some(p)
        })
        .await;
        let cs = p
            .status
            .and_then(|s| s.container_statuses)
            .expect("statuses");
        let t = cs[0]
            .state
            .as_ref()
            .and_then(|s| s.terminated.clone())
            .expect("terminated");
        assert_eq!(t.exit_code, code, "{name}");
    }
}

#[tokio::test]
async fn deleted_node_registers_again_and_existing_node_is_adopted() {
    let env = server().await;
    let api: Api<Node> = Api::all(env.client.clone());
    // A Node that exists before the sim starts is adopted, not duplicated.
    let pre: Node = serde_json::from_value(json!({
        "metadata": {"name": "sim-1", "labels": {"keep": "me"}},
    }))
    .expect("node");
    api.create(&PostParams::default(), &pre)
        .await
        .expect("create node");
    start_sim(&env, args(2));
    let nodes = ready_nodes(&env.client, 2).await;
    let adopted = nodes
        .iter()
        .find(|n| n.name_any() == "sim-1")
        .expect("sim-1");
    assert_eq!(adopted.labels().get("keep").map(String::as_str), Some("me"));
    assert_eq!(
        adopted.labels().get("type").map(String::as_str),
        Some("hollow")
    );

    let old = api.get("sim-0").await.expect("node").uid();
    api.delete("sim-0", &DeleteParams::default())
        .await
        .expect("delete node");
    eventually(WAIT, "sim-0 registered again", || async {
        let n = api.get_opt("sim-0").await.ok()??;
        (n.uid() != old && condition(&n, "Ready") == Some("True")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn status_changed_by_others_is_reported_again() {
    let env = server().await;
    let mut a = args(1);
    a.status_interval = Duration::from_secs(600);
    start_sim(&env, a);
    ready_nodes(&env.client, 1).await;
    // What the node lifecycle controller does to a silent node.
    let api: Api<Node> = Api::all(env.client.clone());
    api.patch_status(
        "sim-0",
        &PatchParams::default(),
        &Patch::Strategic(json!({"status": {"conditions": [
            {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}
        ]}})),
    )
    .await
    .expect("mark Unknown");
    ready_nodes(&env.client, 1).await;
}
