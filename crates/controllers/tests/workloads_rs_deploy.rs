//! ReplicaSet and Deployment controllers end to end: the real API server in-process, the
//! controllers against it, and a fake kubelet (this file) that marks new pods
//! Running and Ready through the status subresource shortly after they appear and
//! removes terminating pods with a zero grace period.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use controllers::deployment::util::{
    REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION, UNIQUE_LABEL_KEY,
};
use controllers::{Backoff, ControllerOptions};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(12);
const NS: &str = "default";
/// How long the fake kubelet takes to make a new pod Ready.
const START_DELAY: Duration = Duration::from_millis(60);

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

async fn start(kubelet: bool) -> Env {
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
    let opts = ControllerOptions {
        controllers: vec![
            "replicaset".into(),
            "deployment".into(),
            "garbagecollector".into(),
        ],
        leader_elect: false,
        discovery_period: Duration::from_secs(1),
        backoff: Backoff {
            base: Duration::from_millis(5),
            max: Duration::from_millis(500),
        },
        ..Default::default()
    };
    let (c, s) = (client.clone(), shutdown.clone());
    tokio::spawn(async move {
        if let Err(e) = controllers::run(c, opts, s).await {
            panic!("controllers failed: {e:#}");
        }
    });
    if kubelet {
        tokio::spawn(fake_kubelet(client.clone(), shutdown.clone()));
    }
    Env {
        client,
        shutdown,
        _dir: dir,
    }
}

/// Marks pods Running and Ready shortly after they appear; deletes terminating pods.
async fn fake_kubelet(client: Client, shutdown: CancellationToken) {
    let api: Api<Pod> = Api::namespaced(client, NS);
    let stream = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects();
    tokio::pin!(stream);
    loop {
        let pod = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = stream.next() => match p {
                Some(Ok(p)) => p,
                Some(Err(_)) => continue,
                None => return,
            },
        };
        let name = pod.name_any();
        let api = api.clone();
        if pod.metadata.deletion_timestamp.is_some() {
            tokio::spawn(async move {
                let _ = api
                    .delete(&name, &DeleteParams::default().grace_period(0))
                    .await;
            });
            continue;
        }
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending") {
            tokio::spawn(async move {
                tokio::time::sleep(START_DELAY).await;
                let _ = api
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(ready_status()),
                    )
                    .await;
            });
        }
    }
}

fn ready_status() -> serde_json::Value {
    let now = k8s_openapi::jiff::Timestamp::now();
    let t = k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", now).expect("time");
    json!({"status": {
        "phase": "Running",
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": t},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": t},
            {"type": "Ready", "status": "True", "lastTransitionTime": t},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
        ],
    }})
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

fn deployment(name: &str, replicas: i32, image: &str, strategy: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    }))
    .expect("deployment")
}

fn rolling() -> serde_json::Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
}

async fn create(client: &Client, d: &Deployment) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), d)
        .await
        .expect("create deployment")
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn image_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

async fn pods_of(client: &Client, app: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

async fn replica_sets_of(client: &Client, app: &str) -> Vec<ReplicaSet> {
    Api::<ReplicaSet>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list replicasets")
        .items
}

fn controller(meta: &kube::api::ObjectMeta) -> Option<OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .cloned()
}

fn revision(rs: &ReplicaSet) -> Option<String> {
    rs.annotations().get(REVISION_ANNOTATION).cloned()
}

/// Wait until the Deployment reports a finished rollout the way `kubectl rollout
/// status` checks it.
async fn rolled_out(client: &Client, name: &str) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    eventually(WAIT, &format!("deployment {name} rolled out"), || async {
        let d = api.get(name).await.ok()?;
        let st = d.status.clone()?;
        let want = d.spec.as_ref()?.replicas?;
        (st.observed_generation? >= d.metadata.generation?
            && st.updated_replicas.unwrap_or(0) == want
            && st.replicas.unwrap_or(0) == want
            && st.available_replicas.unwrap_or(0) == want)
            .then_some(d)
    })
    .await
}

fn suffix_ok(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|s| {
        s.len() == 5 && s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_makes_replica_set_and_pods_with_owners_and_labels() {
    let env = start(true).await;
    create(&env.client, &deployment("hello", 2, "nginx:1", rolling())).await;
    let d = rolled_out(&env.client, "hello").await;
    assert_eq!(
        d.annotations().get(REVISION_ANNOTATION).map(String::as_str),
        Some("1")
    );
    let conds: BTreeMap<String, (String, String)> = d
        .status
        .clone()
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, (c.status, c.reason.unwrap_or_default())))
        .collect();
    assert_eq!(
        conds["Available"],
        ("True".into(), "MinimumReplicasAvailable".into())
    );
    let progressing = eventually(WAIT, "Progressing NewReplicaSetAvailable", || async {
        let d = Api::<Deployment>::namespaced(env.client.clone(), NS)
            .get("hello")
            .await
            .ok()?;
        let c = d
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Progressing")?;
        (c.reason.as_deref() == Some("NewReplicaSetAvailable")).then_some(c)
    })
    .await;
    assert_eq!(progressing.status, "True");

    let rss = replica_sets_of(&env.client, "hello").await;
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    let hash = rs
        .labels()
        .get(UNIQUE_LABEL_KEY)
        .cloned()
        .expect("hash label");
    assert_eq!(rs.name_any(), format!("hello-{hash}"));
    assert!(
        hash.len() <= 10
            && hash
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
    );
    let sel = rs
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    assert_eq!(sel.get(UNIQUE_LABEL_KEY), Some(&hash));
    assert_eq!(revision(rs).as_deref(), Some("1"));
    let owner = controller(&rs.metadata).expect("rs owner");
    assert_eq!(
        (
            owner.api_version.as_str(),
            owner.kind.as_str(),
            owner.name.as_str()
        ),
        ("apps/v1", "Deployment", "hello")
    );
    assert_eq!(Some(owner.uid.as_str()), d.metadata.uid.as_deref());
    assert_eq!(owner.block_owner_deletion, Some(true));

    let pods = pods_of(&env.client, "hello").await;
    assert_eq!(pods.len(), 2);
    for p in &pods {
        assert!(
            suffix_ok(&p.name_any(), &format!("{}-", rs.name_any())),
            "{}",
            p.name_any()
        );
        assert_eq!(p.labels().get(UNIQUE_LABEL_KEY), Some(&hash));
        let o = controller(&p.metadata).expect("pod owner");
        assert_eq!(
            (
                o.api_version.as_str(),
                o.kind.as_str(),
                o.name.clone(),
                o.uid.clone()
            ),
            (
                "apps/v1",
                "ReplicaSet",
                rs.name_any(),
                rs.metadata.uid.clone().unwrap_or_default()
            )
        );
        assert_eq!(o.block_owner_deletion, Some(true));
    }
    let rs_status = Api::<ReplicaSet>::namespaced(env.client.clone(), NS)
        .get(&rs.name_any())
        .await
        .expect("rs")
        .status
        .expect("status");
    assert_eq!(rs_status.replicas, 2);
    assert_eq!(rs_status.ready_replicas, Some(2));
    assert_eq!(rs_status.available_replicas, Some(2));
    assert_eq!(rs_status.fully_labeled_replicas, Some(2));

    // Events as `kubectl describe` shows them.
    let events = eventually(WAIT, "events", || async {
        let ev: Vec<(String, String)> = Api::<Event>::namespaced(env.client.clone(), NS)
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect();
        (ev.iter().filter(|(r, _)| r == "SuccessfulCreate").count() == 2).then_some(ev)
    })
    .await;
    let scaled = format!("Scaled up replica set {} from 0 to 2", rs.name_any());
    assert!(
        events.contains(&("ScalingReplicaSet".into(), scaled)),
        "{events:?}"
    );
    for p in &pods {
        let created = (
            "SuccessfulCreate".to_string(),
            format!("Created pod: {}", p.name_any()),
        );
        assert!(events.contains(&created), "{events:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_pod_is_replaced_and_relabeled_pod_is_released() {
    let env = start(true).await;
    create(&env.client, &deployment("web", 2, "nginx:1", rolling())).await;
    rolled_out(&env.client, "web").await;
    let api: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    let before = pods_of(&env.client, "web").await;
    let victim = before[0].name_any();
    api.delete(&victim, &DeleteParams::default())
        .await
        .expect("delete pod");
    let after = eventually(WAIT, "replacement pod", || async {
        let pods = pods_of(&env.client, "web").await;
        (pods.len() == 2 && pods.iter().all(|p| p.name_any() != victim)).then_some(pods)
    })
    .await;
    let fresh: Vec<String> = after
        .iter()
        .map(|p| p.name_any())
        .filter(|n| !before.iter().any(|b| b.name_any() == *n))
        .collect();
    assert_eq!(fresh.len(), 1, "one new pod with a new suffix");

    // Take the `app` label off a pod: it is released and replaced.
    let relabeled = after[0].name_any();
    api.patch(
        &relabeled,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": null}}})),
    )
    .await
    .expect("relabel");
    eventually(WAIT, "replacement for the relabeled pod", || async {
        let pods = pods_of(&env.client, "web").await;
        (pods.len() == 2 && pods.iter().all(|p| p.name_any() != relabeled)).then_some(())
    })
    .await;
    let released = eventually(WAIT, "released pod", || async {
        let p = api.get(&relabeled).await.ok()?;
        controller(&p.metadata).is_none().then_some(p)
    })
    .await;
    assert!(
        released.metadata.deletion_timestamp.is_none(),
        "the released pod keeps running"
    );
    assert!(released.owner_references().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_and_down() {
    let env = start(true).await;
    create(&env.client, &deployment("scaled", 1, "nginx:1", rolling())).await;
    rolled_out(&env.client, "scaled").await;
    let api: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    for n in [3, 1] {
        api.patch_scale(
            "scaled",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": n}})),
        )
        .await
        .expect("scale");
        rolled_out(&env.client, "scaled").await;
        let pods = eventually(WAIT, &format!("{n} pods"), || async {
            let pods = pods_of(&env.client, "scaled").await;
            (pods.len() == n).then_some(pods)
        })
        .await;
        assert_eq!(pods.len(), n);
    }
    let rss = replica_sets_of(&env.client, "scaled").await;
    assert_eq!(rss.len(), 1, "scaling never makes a new ReplicaSet");
}

/// Pod counts seen by a watch during a rollout.
#[derive(Default)]
struct Watched {
    pods: HashMap<String, Pod>,
    max_pods: usize,
    min_available: usize,
    /// The initial list has been delivered completely (counts before that are partial).
    synced: bool,
    /// At some instant pods of both images existed (not terminating).
    mixed: bool,
}

fn observe(client: &Client, app: &str, shutdown: CancellationToken) -> Arc<Mutex<Watched>> {
    let seen = Arc::new(Mutex::new(Watched {
        min_available: usize::MAX,
        ..Default::default()
    }));
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let cfg = watcher::Config::default().labels(&format!("app={app}"));
    let s = Arc::clone(&seen);
    tokio::spawn(async move {
        let stream = watcher(api, cfg).default_backoff();
        tokio::pin!(stream);
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = stream.next() => match e { Some(Ok(e)) => e, Some(Err(_)) => continue, None => return },
            };
            let mut w = s.lock().expect("lock");
            match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    w.pods.insert(p.name_any(), p);
                }
                watcher::Event::Delete(p) => {
                    w.pods.remove(&p.name_any());
                }
                watcher::Event::Init => w.synced = false,
                watcher::Event::InitDone => w.synced = true,
            }
            if !w.synced {
                continue;
            }
            let live: Vec<&Pod> = w
                .pods
                .values()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let count = live.len();
            let available = live.iter().filter(|p| is_ready(p)).count();
            let images: std::collections::HashSet<String> =
                live.iter().map(|p| image_of(p)).collect();
            w.max_pods = w.max_pods.max(count);
            w.min_available = w.min_available.min(available);
            w.mixed |= images.len() > 1;
        }
    });
    seen
}

async fn set_image(client: &Client, name: &str, image: &str) {
    Api::<Deployment>::namespaced(client.clone(), NS)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})),
        )
        .await
        .expect("set image");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_stays_within_surge_and_availability_then_undo_reuses_old_revision() {
    let env = start(true).await;
    create(&env.client, &deployment("roll", 4, "nginx:1", rolling())).await;
    rolled_out(&env.client, "roll").await;
    eventually(WAIT, "4 ready pods", || async {
        let pods = pods_of(&env.client, "roll").await;
        (pods.len() == 4 && pods.iter().all(is_ready)).then_some(())
    })
    .await;

    let stop = env.shutdown.child_token();
    let seen = observe(&env.client, "roll", stop.clone());
    eventually(WAIT, "watch synced", || async {
        let w = seen.lock().expect("lock");
        (w.pods.len() == 4 && w.min_available == 4).then_some(())
    })
    .await;
    set_image(&env.client, "roll", "nginx:2").await;
    rolled_out(&env.client, "roll").await;
    eventually(WAIT, "only new pods", || async {
        let pods = pods_of(&env.client, "roll").await;
        (pods.len() == 4 && pods.iter().all(|p| image_of(p) == "nginx:2" && is_ready(p)))
            .then_some(())
    })
    .await;
    stop.cancel();
    {
        let w = seen.lock().expect("lock");
        assert!(
            w.max_pods <= 5,
            "surge exceeded: {} pods (max 4 + 1)",
            w.max_pods
        );
        assert!(
            w.min_available >= 3,
            "availability fell to {} (min 4 - 1)",
            w.min_available
        );
        assert!(
            w.mixed,
            "a rolling update runs old and new pods side by side"
        );
    }

    // `kubectl rollout history`: revisions 1 and 2.
    let rss = replica_sets_of(&env.client, "roll").await;
    let mut revs: Vec<(String, String)> = rss
        .iter()
        .map(|r| {
            let img = r
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            (revision(r).unwrap_or_default(), img)
        })
        .collect();
    revs.sort();
    assert_eq!(
        revs,
        [
            ("1".into(), "nginx:1".into()),
            ("2".into(), "nginx:2".into())
        ]
    );
    let old = rss
        .iter()
        .find(|r| revision(r).as_deref() == Some("1"))
        .expect("revision 1");

    // `kubectl rollout undo` (1.33 does it client side): the template of revision 1
    // without its hash label goes back into the Deployment.
    let mut template =
        serde_json::to_value(old.spec.as_ref().and_then(|s| s.template.clone())).expect("template");
    if let Some(l) = template
        .pointer_mut("/metadata/labels")
        .and_then(|l| l.as_object_mut())
    {
        l.remove(UNIQUE_LABEL_KEY);
    }
    Api::<Deployment>::namespaced(env.client.clone(), NS)
        .patch(
            "roll",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "replace", "path": "/spec/template", "value": template}
                ]))
                .expect("json patch"),
            ),
        )
        .await
        .expect("undo");
    rolled_out(&env.client, "roll").await;
    let d = eventually(WAIT, "deployment revision 3", || async {
        let d = Api::<Deployment>::namespaced(env.client.clone(), NS)
            .get("roll")
            .await
            .ok()?;
        (d.annotations().get(REVISION_ANNOTATION).map(String::as_str) == Some("3")).then_some(d)
    })
    .await;
    assert!(d.status.is_some());
    let rss = replica_sets_of(&env.client, "roll").await;
    assert_eq!(rss.len(), 2, "the old ReplicaSet is reused");
    let reused = rss
        .iter()
        .find(|r| r.name_any() == old.name_any())
        .expect("old rs");
    assert_eq!(revision(reused).as_deref(), Some("3"));
    assert_eq!(
        reused
            .annotations()
            .get(REVISION_HISTORY_ANNOTATION)
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(reused.spec.as_ref().and_then(|s| s.replicas), Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_deployment_does_not_roll_until_resumed() {
    let env = start(true).await;
    create(&env.client, &deployment("paused", 2, "nginx:1", rolling())).await;
    rolled_out(&env.client, "paused").await;
    let api: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    api.patch(
        "paused",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": true}})),
    )
    .await
    .expect("pause");
    set_image(&env.client, "paused", "nginx:2").await;
    eventually(WAIT, "Progressing DeploymentPaused", || async {
        let d = api.get("paused").await.ok()?;
        let c = d
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Progressing")?;
        (c.reason.as_deref() == Some("DeploymentPaused") && c.status == "Unknown").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        replica_sets_of(&env.client, "paused").await.len(),
        1,
        "no rollout while paused"
    );
    assert!(
        pods_of(&env.client, "paused")
            .await
            .iter()
            .all(|p| image_of(p) == "nginx:1")
    );

    api.patch(
        "paused",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": false}})),
    )
    .await
    .expect("resume");
    rolled_out(&env.client, "paused").await;
    eventually(WAIT, "new pods after resume", || async {
        let pods = pods_of(&env.client, "paused").await;
        (pods.len() == 2 && pods.iter().all(|p| image_of(p) == "nginx:2")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_removes_old_pods_before_starting_new_ones() {
    let env = start(true).await;
    create(
        &env.client,
        &deployment("rec", 3, "nginx:1", json!({"type": "Recreate"})),
    )
    .await;
    rolled_out(&env.client, "rec").await;
    eventually(WAIT, "3 ready pods", || async {
        let pods = pods_of(&env.client, "rec").await;
        (pods.len() == 3 && pods.iter().all(is_ready)).then_some(())
    })
    .await;
    let stop = env.shutdown.child_token();
    let seen = observe(&env.client, "rec", stop.clone());
    eventually(WAIT, "watch synced", || async {
        (seen.lock().expect("lock").pods.len() == 3).then_some(())
    })
    .await;
    set_image(&env.client, "rec", "nginx:2").await;
    rolled_out(&env.client, "rec").await;
    eventually(WAIT, "only new pods", || async {
        let pods = pods_of(&env.client, "rec").await;
        (pods.len() == 3 && pods.iter().all(|p| image_of(p) == "nginx:2")).then_some(())
    })
    .await;
    stop.cancel();
    let w = seen.lock().expect("lock");
    assert!(!w.mixed, "old and new pods never run together");
    assert!(w.max_pods <= 3);
    assert_eq!(w.min_available, 0, "Recreate goes through zero");
}
