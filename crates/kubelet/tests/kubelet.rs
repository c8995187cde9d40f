//! End to end: the real API server in-process, the kubelet with the fake runtime
//! against it (fast timings), through the admin kubeconfig the server writes.

mod common;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use kubelet::config::{KubeletConfiguration, MergedConfig};
use kubelet::runtime::{FakeBehavior, FakeRuntime};
use kubelet::{BackoffConfig, KubeletRunConfig};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);
static COUNTER: AtomicU32 = AtomicU32::new(0);

struct Env {
    client: Client,
    api_addr: std::net::SocketAddr,
    kubeconfig: std::path::PathBuf,
    pki: apiserver::pki::Pki,
    shutdown: CancellationToken,
    dir: tempfile::TempDir,
    node: String,
    runtime: FakeRuntime,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Env {
    fn manifests(&self) -> std::path::PathBuf {
        self.dir.path().join("manifests")
    }
}

async fn start() -> Env {
    start_with(false).await
}

/// With `service_accounts`, the API server runs the ServiceAccount admission and the
/// service account and root CA publisher controllers run, as in a real cluster, and
/// the kubelet rewrites volumes every 300 ms.
async fn start_with(service_accounts: bool) -> Env {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let running = apiserver::start(
        apiserver::ServerConfig {
            data_dir: dir.path().join("server"),
            secure_port: 0,
            bind_address: "127.0.0.1".into(),
            // No service account controller runs here (pods need no token volume).
            service_account_admission: service_accounts,
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
    if service_accounts {
        let kc = Kubeconfig::read_from(&running.kubeconfig).expect("read kubeconfig");
        let opts = controllers::ControllerOptions {
            controllers: vec!["serviceaccount".into(), "root-ca-cert-publisher".into()],
            root_ca: controllers::root_ca_from_kubeconfig(&kc),
            leader_elect: false,
            ..Default::default()
        };
        let (c, s) = (client.clone(), shutdown.child_token());
        tokio::spawn(async move {
            let _ = controllers::run_all(c, opts, s).await;
        });
    }
    let node = format!(
        "node-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).expect("manifests dir");
    let mut kc = KubeletConfiguration::parse(&format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
         staticPodPath: {}\nfileCheckFrequency: 1s\nnodeStatusUpdateFrequency: 500ms\n\
         nodeLeaseDurationSeconds: 2\n",
        manifests.display()
    ))
    .expect("config");
    kc.register_with_taints = Vec::new();
    let pki = apiserver::pki::Pki::at(&dir.path().join("server"));
    kc.authentication.x509.client_ca_file = pki.ca_cert.display().to_string();
    let merged = MergedConfig {
        kubelet: kc,
        node_name: node.clone(),
        kubeconfig: Some(running.kubeconfig.clone()),
        root_dir: dir.path().join("kubelet"),
        node_labels: [("zone".to_string(), "a".to_string())].into(),
        node_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    };
    let mut cfg = KubeletRunConfig::new(merged);
    cfg.backoff = BackoffConfig {
        initial: Duration::from_millis(300),
        max: Duration::from_secs(2),
        reset_after: Duration::from_secs(60),
    };
    cfg.pod_resync = Duration::from_millis(100);
    cfg.api_sync = Duration::from_millis(100);
    if service_accounts {
        cfg.volume_resync = Some(Duration::from_millis(300));
    }
    cfg.listen = kubelet::Listen::Ephemeral;
    let runtime = FakeRuntime::new();
    std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
    runtime.set_log_dir(dir.path().join("logs"));
    let rt: Arc<dyn kubelet::PodRuntime> = Arc::new(runtime.clone());
    let token = shutdown.child_token();
    tokio::spawn(async move {
        if let Err(e) = kubelet::run(cfg, rt, token).await {
            panic!("kubelet: {e}");
        }
    });
    Env {
        client,
        api_addr: running.addr,
        kubeconfig: running.kubeconfig.clone(),
        pki,
        shutdown,
        dir,
        node,
        runtime,
    }
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
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

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-hidden");
    std::fs::write(&tmp, text).expect("write manifest");
    std::fs::rename(&tmp, path).expect("rename manifest");
}

const STATIC: &str = "apiVersion: v1
kind: Pod
metadata:
  name: myapp-pod
  labels:
    app: myapp
spec:
  containers:
    - name: nginx-container
      image: nginx
";

fn phase(p: &Pod) -> Option<String> {
    p.status.as_ref()?.phase.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registers_becomes_ready_and_renews_lease() {
    let env = start().await;
    let nodes: Api<Node> = Api::all(env.client.clone());
    let node = eventually("node Ready", || async {
        let n = nodes.get_opt(&env.node).await.ok()??;
        let ready = n
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(n)
    })
    .await;
    let labels = node.labels();
    assert_eq!(labels.get("kubernetes.io/hostname"), Some(&env.node));
    assert_eq!(
        labels.get("kubernetes.io/os").map(String::as_str),
        Some("linux")
    );
    assert_eq!(labels.get("zone").map(String::as_str), Some("a"));
    let status = node.status.expect("status");
    let cap = status.capacity.expect("capacity");
    assert_eq!(cap["pods"].0, "110");
    assert!(cap.contains_key("cpu") && cap.contains_key("memory"));
    let info = status.node_info.expect("nodeInfo");
    assert!(info.container_runtime_version.starts_with("flotilla://"));
    assert!(info.kubelet_version.starts_with("v1.33"));
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "kube-node-lease");
    let first = eventually("lease", || async {
        leases.get_opt(&env.node).await.ok()??.spec?.renew_time
    })
    .await;
    eventually("lease renewed", || async {
        let t = leases.get_opt(&env.node).await.ok()??.spec?.renew_time?;
        (t != first).then_some(())
    })
    .await;
    // Deleting the Node: the kubelet registers it again.
    let old_uid = nodes.get(&env.node).await.expect("node").uid();
    nodes
        .delete(&env.node, &DeleteParams::default())
        .await
        .expect("delete node");
    eventually("node re-registered", || async {
        let n = nodes.get_opt(&env.node).await.ok()??;
        (n.uid() != old_uid).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pod_gets_a_mirror_that_comes_back_and_follows_the_file() {
    let env = start().await;
    let file = env.manifests().join("static.yaml");
    write(&file, STATIC);
    let name = format!("myapp-pod-{}", env.node);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let mirror = eventually("mirror pod Running", || async {
        let p = pods.get_opt(&name).await.ok()??;
        (phase(&p).as_deref() == Some("Running")).then_some(p)
    })
    .await;
    let ann = mirror.annotations();
    let hash = ann
        .get("kubernetes.io/config.mirror")
        .expect("mirror annotation")
        .clone();
    assert_eq!(ann.get("kubernetes.io/config.hash"), Some(&hash));
    assert_eq!(
        ann.get("kubernetes.io/config.source").map(String::as_str),
        Some("file")
    );
    let owner = &mirror.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Node", env.node.as_str())
    );
    assert_eq!(owner.controller, Some(true));
    let st = mirror.status.clone().expect("status");
    assert_eq!(
        st.pod_ip.as_deref().map(|s| s.starts_with("10.88.")),
        Some(true)
    );
    let cs = &st.container_statuses.expect("container statuses")[0];
    assert!(cs.ready);
    assert!(
        cs.container_id
            .as_deref()
            .is_some_and(|i| i.starts_with("flotilla://"))
    );
    assert_eq!(env.runtime.starts(&hash, "nginx-container"), 1);

    // kubectl delete of the mirror: it comes back, the container is untouched.
    pods.delete(&name, &DeleteParams::default())
        .await
        .expect("delete mirror");
    let old_uid = mirror.uid();
    eventually("mirror re-created and Running", || async {
        let p = pods.get_opt(&name).await.ok()??;
        (p.uid() != old_uid && phase(&p).as_deref() == Some("Running")).then_some(())
    })
    .await;
    assert_eq!(
        env.runtime.starts(&hash, "nginx-container"),
        1,
        "no restart"
    );

    // Editing the file: a new pod (new hash) replaces the old one.
    write(
        &file,
        &STATIC.replace("image: nginx\n", "image: nginx:1.25\n"),
    );
    let new_hash = eventually("mirror with new hash", || async {
        let p = pods.get_opt(&name).await.ok()??;
        let h = p.annotations().get("kubernetes.io/config.mirror")?.clone();
        (h != hash && phase(&p).as_deref() == Some("Running")).then_some(h)
    })
    .await;
    assert_eq!(env.runtime.starts(&new_hash, "nginx-container"), 1);
    eventually("old containers gone", || async {
        (!env.runtime.sandboxes().contains(&hash)).then_some(())
    })
    .await;

    // Deleting the file removes the mirror and the containers.
    std::fs::remove_file(&file).expect("remove manifest");
    eventually("mirror deleted", || async {
        pods.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    eventually("containers removed", || async {
        env.runtime.running().is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_are_skipped_with_an_event() {
    let env = start().await;
    write(
        &env.manifests().join("deploy.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
    );
    write(&env.manifests().join("ok.yaml"), STATIC);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let name = format!("myapp-pod-{}", env.node);
    eventually("good static pod mirrored", || async {
        pods.get_opt(&name).await.ok()?.map(|_| ())
    })
    .await;
    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    eventually("skip event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("StaticPodSkipped")
                    && e.message
                        .as_deref()
                        .is_some_and(|m| m.contains("Deployment"))
            })
            .then_some(())
    })
    .await;
}

async fn create_pod(env: &Env, name: &str, image: &str, policy: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": env.node, "restartPolicy": policy,
                 "terminationGracePeriodSeconds": 3,
                 "containers": [{"name": "main", "image": image,
                    "env": [{"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_pod_runs_reports_status_and_is_deleted_gracefully() {
    let env = start().await;
    let pod = create_pod(&env, "web", "busybox:1.36", "Always").await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let running = eventually("pod Running and Ready", || async {
        let p = pods.get_opt("web").await.ok()??;
        let st = p.status.clone()?;
        let ready = st
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        (st.phase.as_deref() == Some("Running") && ready).then_some(p)
    })
    .await;
    let st = running.status.expect("status");
    assert_eq!(st.host_ip.as_deref(), Some("127.0.0.1"));
    assert!(st.pod_ip.is_some() && st.start_time.is_some());
    let types: Vec<String> = st
        .conditions
        .expect("conds")
        .into_iter()
        .map(|c| c.type_)
        .collect();
    for t in [
        "PodScheduled",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodReadyToStartContainers",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} missing: {types:?}");
    }
    let cs = &st.container_statuses.expect("cs")[0];
    assert!(cs.image_id.contains("busybox"));
    assert_eq!(cs.started, Some(true));
    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    eventually("Pulling/Pulled/Created/Started events", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let reasons: Vec<String> = list
            .items
            .iter()
            .filter(|e| e.involved_object.uid == pod.metadata.uid)
            .filter_map(|e| e.reason.clone())
            .collect();
        ["Pulling", "Pulled", "Created", "Started"]
            .iter()
            .all(|r| reasons.iter().any(|x| x == r))
            .then_some(())
    })
    .await;
    // Graceful delete: the kubelet stops the container with the pod's grace period
    // and then removes the API object.
    pods.delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("pod object gone", || async {
        pods.get_opt("web").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        env.runtime
            .stops()
            .iter()
            .any(|(n, g)| n == "main" && *g == Duration::from_secs(3)),
        "{:?}",
        env.runtime.stops()
    );
    eventually("sandbox removed", || async {
        env.runtime.sandboxes().is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_container_goes_into_crash_loop_back_off() {
    let env = start().await;
    env.runtime.set_behavior(
        "crasher:1",
        FakeBehavior {
            exit_after: Some(Duration::from_millis(100)),
            exit_code: 2,
            ..Default::default()
        },
    );
    create_pod(&env, "crasher", "crasher:1", "Always").await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let msg = eventually("CrashLoopBackOff with restarts", || async {
        let p = pods.get_opt("crasher").await.ok()??;
        let cs = p.status?.container_statuses?.into_iter().next()?;
        let w = cs.state?.waiting?;
        let term = cs.last_state?.terminated?;
        (w.reason.as_deref() == Some("CrashLoopBackOff")
            && cs.restart_count >= 2
            && term.exit_code == 2)
            .then_some(w.message.unwrap_or_default())
    })
    .await;
    assert!(msg.starts_with("back-off "), "{msg}");
    assert!(
        msg.contains("restarting failed container=main pod=crasher_default("),
        "{msg}"
    );
    let later = eventually("restart count grows", || async {
        let p = pods.get_opt("crasher").await.ok()??;
        let cs = p.status?.container_statuses?.into_iter().next()?;
        (cs.restart_count >= 4).then_some(cs.restart_count)
    })
    .await;
    assert!(later >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_failure_shows_err_image_pull_then_back_off() {
    let env = start().await;
    env.runtime.set_behavior(
        "missing:1",
        FakeBehavior {
            pull_error: Some("manifest unknown".into()),
            ..Default::default()
        },
    );
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    // Every version of the pod, from a watch opened before the pod exists: ErrImagePull
    // lasts only until the next sync, so polling GETs on a loaded machine can miss it.
    let config = kube::runtime::watcher::Config::default().fields("metadata.name=nopull");
    let mut versions = Box::pin(kube::runtime::WatchStreamExt::applied_objects(
        kube::runtime::watcher(pods.clone(), config),
    ));
    create_pod(&env, "nopull", "missing:1", "Always").await;
    let mut seen = std::collections::HashSet::new();
    let both = tokio::time::timeout(WAIT * 3, async {
        use futures::StreamExt;
        while let Some(p) = versions.next().await {
            let Ok(p) = p else { continue };
            let reason = p
                .status
                .and_then(|s| s.container_statuses)
                .and_then(|c| c.into_iter().next())
                .and_then(|cs| cs.state)
                .and_then(|st| st.waiting)
                .and_then(|w| w.reason);
            if let Some(r) = reason {
                seen.insert(r);
            }
            if seen.contains("ErrImagePull") && seen.contains("ImagePullBackOff") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        both,
        Ok(true),
        "ErrImagePull and ImagePullBackOff, saw {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_drive_readiness_and_liveness_restarts() {
    let env = start().await;
    // exec probes in containers of this image fail.
    env.runtime.set_behavior(
        "sick:1",
        FakeBehavior {
            exec_exit_code: 1,
            ..Default::default()
        },
    );
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let mk = |name: &str, probe: &str| -> Pod {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": env.node, "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": "sick:1",
                    probe: {"exec": {"command": ["true"]}, "periodSeconds": 1, "failureThreshold": 1}}]}
        }))
        .expect("pod")
    };
    pods.create(&PostParams::default(), &mk("unready", "readinessProbe"))
        .await
        .expect("create");
    pods.create(&PostParams::default(), &mk("unlive", "livenessProbe"))
        .await
        .expect("create");
    eventually("running but not Ready", || async {
        let p = pods.get_opt("unready").await.ok()??;
        let st = p.status?;
        let ready = st
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "ContainersReady")?;
        (st.phase.as_deref() == Some("Running")
            && ready.status == "False"
            && ready.reason.as_deref() == Some("ContainersNotReady"))
        .then_some(())
    })
    .await;
    eventually("liveness restarts", || async {
        let p = pods.get_opt("unlive").await.ok()??;
        let cs = p.status?.container_statuses?.into_iter().next()?;
        (cs.restart_count >= 1).then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    eventually("Unhealthy event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("Unhealthy")
                    && e.message
                        .as_deref()
                        .is_some_and(|m| m.starts_with("Liveness probe failed"))
            })
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_kubelet_runs_static_pods_without_api_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    write(&manifests.join("static.yaml"), STATIC);
    let flags = kubelet::KubeletFlags {
        pod_manifest_path: Some(manifests.clone()),
        node_name: Some("lonely".into()),
        root_dir: dir.path().join("kubelet"),
        node_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ..Default::default()
    };
    let mut cfg = KubeletRunConfig::from_flags(&flags).expect("config");
    cfg.listen = kubelet::Listen::Disabled;
    cfg.pod_resync = Duration::from_millis(100);
    let runtime = FakeRuntime::new();
    let rt: Arc<dyn kubelet::PodRuntime> = Arc::new(runtime.clone());
    let shutdown = CancellationToken::new();
    let _guard = shutdown.clone().drop_guard();
    tokio::spawn(kubelet::run(cfg, rt, shutdown.clone()));
    eventually("static container running", || async {
        runtime
            .running()
            .iter()
            .any(|c| c.name == "nginx-container")
            .then_some(())
    })
    .await;
    std::fs::remove_file(manifests.join("static.yaml")).expect("rm");
    eventually("static container removed", || async {
        runtime.running().is_empty().then_some(())
    })
    .await;
}

/// Upstream runs one instance of a static pod's full name at a time: after an edit,
/// the new version starts only once the old one has stopped (a hostNetwork
/// control-plane pod would otherwise find its port taken by its predecessor).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_static_pod_starts_after_its_old_version_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    write(&manifests.join("static.yaml"), STATIC);
    let flags = kubelet::KubeletFlags {
        pod_manifest_path: Some(manifests.clone()),
        node_name: Some("lonely".into()),
        root_dir: dir.path().join("kubelet"),
        node_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ..Default::default()
    };
    let mut cfg = KubeletRunConfig::from_flags(&flags).expect("config");
    cfg.listen = kubelet::Listen::Disabled;
    cfg.pod_resync = Duration::from_millis(100);
    let runtime = FakeRuntime::new();
    runtime.set_stop_delay(Duration::from_millis(1500));
    let rt: Arc<dyn kubelet::PodRuntime> = Arc::new(runtime.clone());
    let shutdown = CancellationToken::new();
    let _guard = shutdown.clone().drop_guard();
    tokio::spawn(kubelet::run(cfg, rt, shutdown.clone()));
    let images = || -> Vec<String> {
        runtime
            .running()
            .iter()
            .filter(|c| c.name == "nginx-container")
            .map(|c| c.image.clone())
            .collect()
    };
    eventually("static container running", || async {
        (images() == ["nginx"]).then_some(())
    })
    .await;
    write(
        &manifests.join("static.yaml"),
        &STATIC.replace("image: nginx", "image: nginx:2"),
    );
    // Until the new version runs, never two instances at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = images();
        assert!(
            now.len() <= 1,
            "two versions of the static pod ran at once: {now:?}"
        );
        if now == ["nginx:2"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "new version never ran: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_from_downward_api_config_maps_and_secrets() {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    let env = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "settings"}, "data": {"COLOR": "blue", "SIZE": "9"}}))
    .expect("cm");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create cm");
    let sec: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "creds"}, "stringData": {"password": "hunter2"}}))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &sec)
        .await
        .expect("create secret");
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let mk = |name: &str, cm_name: &str| -> Pod {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"tier": "web"}},
            "spec": {"nodeName": env.node, "containers": [{"name": "main", "image": "app:1",
                "resources": {"limits": {"memory": "64Mi"}},
                "envFrom": [{"configMapRef": {"name": cm_name}, "prefix": "CFG_"}],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                    {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "COLOR"}}}
                ]}]}
        }))
        .expect("pod")
    };
    let created = pods
        .create(&PostParams::default(), &mk("envy", "settings"))
        .await
        .expect("create");
    let uid = created.uid().expect("uid");
    let got = eventually("container env", || async { env.runtime.env(&uid, "main") }).await;
    let get = |k: &str| got.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("POD_NAME"), Some("envy"));
    assert_eq!(get("TIER"), Some("web"));
    assert_eq!(get("NODE"), Some(env.node.as_str()));
    assert_eq!(get("MEM"), Some("64"));
    assert_eq!(get("PASSWORD"), Some("hunter2"));
    assert_eq!(get("COLOR"), Some("blue"));
    assert_eq!(get("CFG_SIZE"), Some("9"));
    // A missing config map blocks the container with CreateContainerConfigError.
    pods.create(&PostParams::default(), &mk("lost", "nope"))
        .await
        .expect("create");
    eventually("CreateContainerConfigError", || async {
        let p = pods.get_opt("lost").await.ok()??;
        let w = p
            .status?
            .container_statuses?
            .into_iter()
            .next()?
            .state?
            .waiting?;
        (w.reason.as_deref() == Some("CreateContainerConfigError")
            && w.message.as_deref() == Some("configmap \"nope\" not found"))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pods_run_before_the_api_server_and_mirror_once_it_is_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let cfg_for = |port: u16| apiserver::ServerConfig {
        data_dir: data.clone(),
        secure_port: port,
        bind_address: "127.0.0.1".into(),
        ..Default::default()
    };
    // A first server only produces the PKI and an admin kubeconfig, then stops.
    let first = CancellationToken::new();
    let store = store::MemoryStore::new().expect("memory store");
    let running = apiserver::start_with_store(cfg_for(0), store, first.clone())
        .await
        .expect("first server");
    let old_url = format!("https://127.0.0.1:{}", running.addr.port());
    first.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), running.task).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let text = std::fs::read_to_string(data.join("admin.kubeconfig")).expect("kubeconfig");
    let kubeconfig = dir.path().join("kubelet.kubeconfig");
    std::fs::write(
        &kubeconfig,
        text.replace(&old_url, &format!("https://127.0.0.1:{port}")),
    )
    .expect("write kubeconfig");

    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    write(&manifests.join("static.yaml"), STATIC);
    let flags = kubelet::KubeletFlags {
        pod_manifest_path: Some(manifests.clone()),
        node_name: Some("early".into()),
        kubeconfig: Some(kubeconfig),
        root_dir: dir.path().join("kubelet"),
        node_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ..Default::default()
    };
    let mut cfg = KubeletRunConfig::from_flags(&flags).expect("config");
    cfg.listen = kubelet::Listen::Disabled;
    cfg.pod_resync = Duration::from_millis(100);
    cfg.api_sync = Duration::from_millis(100);
    let runtime = FakeRuntime::new();
    let rt: Arc<dyn kubelet::PodRuntime> = Arc::new(runtime.clone());
    let shutdown = CancellationToken::new();
    let _guard = shutdown.clone().drop_guard();
    tokio::spawn(kubelet::run(cfg, rt, shutdown.clone()));
    eventually("static container running with the API down", || async {
        runtime
            .running()
            .iter()
            .any(|c| c.name == "nginx-container")
            .then_some(())
    })
    .await;

    // The API server comes up: node and mirror pod appear, no restart.
    let store = store::MemoryStore::new().expect("memory store");
    let running = apiserver::start_with_store(cfg_for(port), store, shutdown.clone())
        .await
        .expect("second server");
    let kc = Kubeconfig::read_from(&running.kubeconfig).expect("kubeconfig");
    let client = Client::try_from(
        Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("config"),
    )
    .expect("client");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually("mirror pod Running", || async {
        let p = pods.get_opt("myapp-pod-early").await.ok()??;
        (phase(&p).as_deref() == Some("Running")).then_some(())
    })
    .await;
    assert_eq!(runtime.total_starts("nginx-container"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_and_never_policy_completes() {
    let env = start().await;
    for image in ["init:1", "job:1"] {
        env.runtime.set_behavior(
            image,
            FakeBehavior {
                exit_after: Some(Duration::from_millis(200)),
                exit_code: 0,
                ..Default::default()
            },
        );
    }
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "job"},
        "spec": {"nodeName": env.node, "restartPolicy": "Never",
            "initContainers": [{"name": "first", "image": "init:1"}, {"name": "second", "image": "init:1"}],
            "containers": [{"name": "work", "image": "job:1"}]}
    }))
    .expect("pod");
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let uid = created.uid().expect("uid");
    // While the first init container runs, the second has not started.
    eventually("first init started", || async {
        (env.runtime.starts(&uid, "first") == 1).then_some(())
    })
    .await;
    assert_eq!(env.runtime.starts(&uid, "second"), 0);
    assert_eq!(env.runtime.starts(&uid, "work"), 0);
    let done = eventually("pod Succeeded", || async {
        let p = pods.get_opt("job").await.ok()??;
        (phase(&p).as_deref() == Some("Succeeded")).then_some(p)
    })
    .await;
    let st = done.status.expect("status");
    for s in st.init_container_statuses.expect("init statuses") {
        let t = s.state.and_then(|s| s.terminated).expect("terminated");
        assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    }
    let work = &st.container_statuses.expect("statuses")[0];
    assert!(
        work.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some()
    );
    assert_eq!(work.restart_count, 0);
    // Never restarted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.runtime.starts(&uid, "work"), 1);
    assert_eq!(env.runtime.starts(&uid, "first"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_exec_go_through_the_api_server_to_the_kubelet() {
    use kube::api::LogParams;
    use kubelet::PodRuntime;
    let env = start().await;
    create_pod(&env, "talker", "busybox:1.36", "Always").await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let nodes: Api<Node> = Api::all(env.client.clone());
    let port = eventually("node reports its kubelet port", || async {
        let n = nodes.get_opt(&env.node).await.ok()??;
        let p = n.status?.daemon_endpoints?.kubelet_endpoint?.port;
        (p != 0).then_some(p)
    })
    .await;
    assert_ne!(port, 10250, "the test kubelet listens on an ephemeral port");
    let id = eventually("container running", || async {
        env.runtime
            .running()
            .iter()
            .find(|c| c.name == "main")
            .map(|c| c.id.clone())
    })
    .await;
    let log = env.runtime.log_path(&id).expect("log path");
    std::fs::write(
        &log,
        "2024-05-01T10:00:00Z stdout F hello\n2024-05-01T10:00:01Z stderr P wor\n2024-05-01T10:00:02Z stderr F ld\n",
    )
    .expect("write log");
    let text = pods
        .logs("talker", &LogParams::default())
        .await
        .expect("logs through the API server");
    assert_eq!(text, "hello\nworld\n");
    let text = pods
        .logs(
            "talker",
            &LogParams {
                container: Some("main".into()),
                tail_lines: Some(1),
                timestamps: true,
                ..Default::default()
            },
        )
        .await
        .expect("tailed logs");
    assert_eq!(text, "2024-05-01T10:00:01Z world\n");
    // `kubectl logs -f`: new lines arrive through the API server as they are written.
    {
        use futures::{AsyncBufReadExt, StreamExt};
        use std::io::Write;
        let stream = pods
            .log_stream(
                "talker",
                &LogParams {
                    follow: true,
                    ..Default::default()
                },
            )
            .await
            .expect("follow logs");
        let mut lines = stream.lines();
        let mut next = async || {
            tokio::time::timeout(WAIT, lines.next())
                .await
                .expect("line in time")
                .expect("a line")
                .expect("read line")
        };
        assert_eq!(next().await, "hello");
        assert_eq!(next().await, "world");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open log")
            .write_all(b"2024-05-01T10:00:03Z stdout F later\n")
            .expect("append");
        assert_eq!(next().await, "later");
    }

    let admin = common::tls(Some((&env.pki.admin_cert, &env.pki.admin_key)));
    let out = common::exec_ws(
        env.api_addr,
        admin.clone(),
        "/api/v1/namespaces/default/pods/talker/exec?command=echo&command=hi&stdin=true&stdout=true&stderr=true",
        b"typed\n",
    )
    .await;
    assert_eq!(out.protocol, "v5.channel.k8s.io");
    assert_eq!(out.stdout, "echo hi\ntyped\n");
    assert_eq!(out.stderr, "stderr: echo hi\n");
    assert_eq!(out.status.expect("status")["status"], "Success");

    // A node that never ran a kubelet (like `flotilla sim`'s hollow nodes).
    let hollow = format!("{}-hollow", env.node);
    let node: Node =
        serde_json::from_value(serde_json::json!({"metadata": {"name": hollow}})).expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create hollow node");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ghost"},
        "spec": {"nodeName": hollow, "containers": [
            {"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create ghost");
    let err = pods
        .logs("ghost", &LogParams::default())
        .await
        .expect_err("no container named");
    assert!(
        err.to_string()
            .contains("a container name must be specified for pod ghost, choose one of: [a b]"),
        "{err}"
    );
    let err = tokio::time::timeout(
        WAIT,
        pods.logs(
            "ghost",
            &LogParams {
                container: Some("a".into()),
                ..Default::default()
            },
        ),
    )
    .await
    .expect("answers, never hangs")
    .expect_err("no kubelet endpoint");
    assert!(err.to_string().contains("no kubelet endpoint"), "{err}");
    let err = pods
        .logs("nonexistent", &LogParams::default())
        .await
        .expect_err("404");
    assert!(err.to_string().contains("not found"), "{err}");
}

/// The real client: `kubectl logs` and `kubectl exec` (WebSocket v5) against the
/// in-process API server and kubelet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_and_exec_work() {
    if std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED (kubectl not installed): kubectl_logs_and_exec_work");
        return;
    }
    use kubelet::PodRuntime;
    let env = start().await;
    env.runtime.set_behavior(
        "busybox:1.36",
        FakeBehavior {
            exec_exit_code: 7,
            ..Default::default()
        },
    );
    create_pod(&env, "cli", "busybox:1.36", "Always").await;
    let id = eventually("container running", || async {
        env.runtime
            .running()
            .iter()
            .find(|c| c.name == "main")
            .map(|c| c.id.clone())
    })
    .await;
    let nodes: Api<Node> = Api::all(env.client.clone());
    eventually("node reports its kubelet port", || async {
        let n = nodes.get_opt(&env.node).await.ok()??;
        (n.status?.daemon_endpoints?.kubelet_endpoint?.port != 0).then_some(())
    })
    .await;
    let log = env.runtime.log_path(&id).expect("log path");
    std::fs::write(&log, "2024-05-01T10:00:00Z stdout F from kubectl\n").expect("write log");
    let kubectl = |args: &[&str], stdin: &'static [u8]| {
        let kc = env.kubeconfig.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            let mut child = tokio::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(kc)
                .args(&args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn kubectl");
            if let Some(mut i) = child.stdin.take() {
                use tokio::io::AsyncWriteExt;
                i.write_all(stdin).await.expect("stdin");
            }
            tokio::time::timeout(WAIT, child.wait_with_output())
                .await
                .expect("kubectl in time")
                .expect("kubectl output")
        }
    };
    let out = kubectl(&["logs", "cli"], b"").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from kubectl\n");
    let out = kubectl(&["exec", "-i", "cli", "--", "echo", "hi"], b"piped\n").await;
    // The fake exec exits 7: kubectl passes the exit code on.
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "echo hi\npiped\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("stderr: echo hi\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pod the node still runs but no source knows (deleted while the kubelet was
/// down) is torn down: its containers stopped and removed, its sandbox removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_pods_are_cleaned_up() {
    use kubelet::PodRuntime;
    let env = start().await;
    // A pod the kubelet knows keeps running alongside.
    create_pod(&env, "kept", "busybox:1.36", "Always").await;
    let orphan: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "gone", "namespace": "default", "uid": "orphan-uid"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}
    }))
    .expect("pod");
    let rt = &env.runtime;
    let sandbox = rt.ensure_sandbox(&orphan).await.expect("sandbox");
    let image = rt.pull_image("busybox:1.36", &[]).await.expect("image");
    let config = kubelet::runtime::ContainerConfig {
        spec: orphan.spec.as_ref().expect("spec").containers[0].clone(),
        image,
        env: Vec::new(),
        attempt: 0,
        init: false,
        volume_files: Default::default(),
    };
    let id = rt
        .create_container(&orphan, &sandbox, &config)
        .await
        .expect("create");
    rt.start_container(&id).await.expect("start");
    eventually("orphan sandbox and containers removed", || async {
        let left = rt.list_containers(Some("orphan-uid")).await.ok()?;
        (left.is_empty() && !rt.sandboxes().iter().any(|s| s == "orphan-uid")).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let kept = pods.get("kept").await.expect("kept pod");
    let uid = kept.metadata.uid.expect("uid");
    assert!(rt.sandboxes().contains(&uid), "{:?}", rt.sandboxes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_token_volume_and_live_config_map_updates() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let env = start_with(true).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({
            "metadata": {"name": "live"}, "data": {"k": "v1"}
        }))
        .expect("cm"),
    )
    .await
    .expect("create cm");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sa-pod"},
        "spec": {"nodeName": env.node, "containers": [{"name": "c", "image": "busybox",
            "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}],
            "volumes": [{"name": "cfg", "configMap": {"name": "live"}}]}
    }))
    .expect("pod");
    // The default service account appears right after the server starts: the
    // admission waits for it.
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let uid = created.uid().expect("uid");
    let spec = created.spec.expect("spec");
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    let token_volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name.starts_with("kube-api-access-"))
        .expect("token volume")
        .name
        .clone();
    // The kubelet writes the token (from TokenRequest, bound to the pod), the CA and
    // the namespace.
    let files = eventually("token volume written", || async {
        env.runtime.volume_files(&uid, &token_volume)
    })
    .await;
    let by_path = |p: &str| {
        files
            .iter()
            .find(|f| f.path == p)
            .unwrap_or_else(|| panic!("{p} in {files:?}"))
            .clone()
    };
    let token = String::from_utf8(by_path("token").data).expect("utf8");
    assert_eq!(by_path("token").mode, 0o644);
    assert_eq!(by_path("namespace").data, b"default");
    let ca = std::fs::read(&env.pki.ca_cert).expect("ca");
    assert_eq!(by_path("ca.crt").data, ca);
    // The token authenticates as the pod's service account.
    let mut cfg = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&env.kubeconfig).expect("kubeconfig"),
        &KubeConfigOptions::default(),
    )
    .await
    .expect("config");
    cfg.auth_info = kube::config::AuthInfo {
        token: Some(token.clone().into()),
        ..Default::default()
    };
    let as_sa: Api<Pod> = Api::namespaced(Client::try_from(cfg).expect("client"), "default");
    assert!(as_sa.get("sa-pod").await.is_ok());
    // Editing the config map reaches the running pod without a restart.
    eventually("config map volume written", || async {
        env.runtime
            .volume_files(&uid, "cfg")
            .filter(|f| f.iter().any(|f| f.data == b"v1"))
    })
    .await;
    cms.patch(
        "live",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"data": {"k": "v2"}})),
    )
    .await
    .expect("patch cm");
    eventually("config map edit in the volume", || async {
        env.runtime
            .volume_files(&uid, "cfg")
            .filter(|f| f.iter().any(|f| f.path == "k" && f.data == b"v2"))
    })
    .await;
    assert_eq!(env.runtime.starts(&uid, "c"), 1);
    // The cached token is reused, not requested on every rewrite.
    let again = env
        .runtime
        .volume_files(&uid, &token_volume)
        .expect("files");
    assert!(
        again
            .iter()
            .any(|f| f.path == "token" && f.data == token.as_bytes())
    );
    // Once the pod is gone, its token no longer authenticates.
    pods.delete("sa-pod", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete");
    eventually("pod gone", || async {
        pods.get_opt("sa-pod").await.ok()?.is_none().then_some(())
    })
    .await;
    let err = as_sa.list(&ListParams::default()).await.expect_err("401");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 401),
        "{err:?}"
    );
}
