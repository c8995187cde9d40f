//! End to end: the real API server in-process, the controllers against it through a
//! kube client built from the admin kubeconfig the server writes.

use std::future::Future;
use std::time::Duration;

use controllers::{Backoff, ControllerOptions};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::json;
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

async fn start() -> Env {
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
        discovery_period: Duration::from_secs(1),
        gc_workers: 4,
        namespace_workers: 2,
        backoff: Backoff {
            base: Duration::from_millis(5),
            max: Duration::from_secs(1),
        },
        ..Default::default()
    };
    let (c, s) = (client.clone(), shutdown.clone());
    tokio::spawn(async move {
        if let Err(e) = controllers::run(c, opts, s).await {
            panic!("controllers failed: {e:#}");
        }
    });
    Env {
        client,
        shutdown,
        _dir: dir,
    }
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

fn owner_ref(api_version: &str, kind: &str, name: &str, uid: &str, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        block_owner_deletion: Some(block),
        controller: None,
    }
}

async fn create_cm(api: &Api<ConfigMap>, name: &str, owners: Vec<OwnerReference>) -> ConfigMap {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: (!owners.is_empty()).then_some(owners),
            ..Default::default()
        },
        data: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    };
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create configmap")
}

/// An owner ConfigMap and two dependents (the first blocks owner deletion).
async fn family(api: &Api<ConfigMap>, prefix: &str) -> String {
    let owner = create_cm(api, &format!("{prefix}-owner"), vec![]).await;
    let uid = owner.uid().expect("owner uid");
    let on = owner.name_any();
    create_cm(
        api,
        &format!("{prefix}-d1"),
        vec![owner_ref("v1", "ConfigMap", &on, &uid, true)],
    )
    .await;
    create_cm(
        api,
        &format!("{prefix}-d2"),
        vec![owner_ref("v1", "ConfigMap", &on, &uid, false)],
    )
    .await;
    uid
}

async fn exists(api: &Api<ConfigMap>, name: &str) -> bool {
    api.get_opt(name).await.expect("get configmap").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_keeps_dependents_and_removes_owner() {
    let env = start().await;
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let uid = family(&api, "orph").await;
    api.delete("orph-owner", &DeleteParams::orphan())
        .await
        .expect("delete owner");
    eventually(WAIT, "owner gone and dependents released", || async {
        if exists(&api, "orph-owner").await {
            return None;
        }
        for d in ["orph-d1", "orph-d2"] {
            let cm = api.get_opt(d).await.expect("get")?;
            if cm.owner_references().iter().any(|r| r.uid == uid) {
                return None;
            }
        }
        Some(())
    })
    .await;
    // Released dependents are not collected later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(exists(&api, "orph-d1").await && exists(&api, "orph-d2").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletes_dependents_before_owner() {
    let env = start().await;
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    family(&api, "fg").await;
    api.delete("fg-owner", &DeleteParams::foreground())
        .await
        .expect("delete owner");
    eventually(
        WAIT,
        "owner and dependents gone, blocking dependent first",
        || async {
            // Read the owner first: once it is gone the blocking dependent must be gone too.
            let owner_gone = !exists(&api, "fg-owner").await;
            let d1_gone = !exists(&api, "fg-d1").await;
            let d2_gone = !exists(&api, "fg-d2").await;
            assert!(
                !owner_gone || d1_gone,
                "owner removed while its blocking dependent exists"
            );
            (owner_gone && d1_gone && d2_gone).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_removes_owner_then_dependents() {
    let env = start().await;
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    family(&api, "bg").await;
    api.delete("bg-owner", &DeleteParams::background())
        .await
        .expect("delete owner");
    assert!(!exists(&api, "bg-owner").await, "owner is removed at once");
    eventually(WAIT, "dependents collected", || async {
        (!exists(&api, "bg-d1").await && !exists(&api, "bg-d2").await).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dangling_reference_removed_when_another_owner_remains() {
    let env = start().await;
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let a = create_cm(&api, "two-a", vec![]).await;
    let b = create_cm(&api, "two-b", vec![]).await;
    let (ua, ub) = (a.uid().expect("uid"), b.uid().expect("uid"));
    create_cm(
        &api,
        "two-dep",
        vec![
            owner_ref("v1", "ConfigMap", "two-a", &ua, false),
            owner_ref("v1", "ConfigMap", "two-b", &ub, false),
        ],
    )
    .await;
    api.delete("two-a", &DeleteParams::background())
        .await
        .expect("delete a");
    eventually(WAIT, "reference to the deleted owner removed", || async {
        let dep = api.get_opt("two-dep").await.expect("get")?;
        let uids: Vec<String> = dep
            .owner_references()
            .iter()
            .map(|r| r.uid.clone())
            .collect();
        (uids == [ub.clone()]).then_some(())
    })
    .await;
    assert!(exists(&api, "two-dep").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resource_owner_is_followed() {
    let env = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))
    .expect("crd");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("create crd");
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), "default", &ar);
    let w = eventually(WAIT, "custom resource served", || async {
        let obj = DynamicObject::new("w1", &ar).data(json!({"spec": {"size": 1}}));
        widgets.create(&PostParams::default(), &obj).await.ok()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    create_cm(
        &api,
        "w-dep",
        vec![owner_ref(
            "example.com/v1",
            "Widget",
            "w1",
            &w.uid().expect("uid"),
            false,
        )],
    )
    .await;
    // Give the collector a discovery round to start watching widgets.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        exists(&api, "w-dep").await,
        "dependent of a live custom resource stays"
    );
    widgets
        .delete("w1", &DeleteParams::background())
        .await
        .expect("delete widget");
    eventually(
        WAIT,
        "dependent of the deleted widget collected",
        || async { (!exists(&api, "w-dep").await).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_removes_content_then_namespace() {
    let env = start().await;
    let nss: Api<Namespace> = Api::all(env.client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("doomed".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    nss.create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), "doomed");
    for n in ["a", "b", "c"] {
        create_cm(&api, n, vec![]).await;
    }
    nss.delete("doomed", &DeleteParams::default())
        .await
        .expect("delete namespace");
    eventually(
        WAIT,
        "namespace content removed and namespace deleted",
        || async {
            let gone = nss
                .get_opt("doomed")
                .await
                .expect("get namespace")
                .is_none();
            if gone {
                // Nothing may be left behind once the namespace is gone.
                let left = api.list(&Default::default()).await.expect("list").items;
                let names: Vec<String> = left.iter().map(|c| c.name_any()).collect();
                assert!(names.is_empty(), "left behind: {names:?}");
            }
            gone.then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_waits_for_finalizers_and_reports_them() {
    let env = start().await;
    let nss: Api<Namespace> = Api::all(env.client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("held".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    nss.create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), "held");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("sticky".into()),
            finalizers: Some(vec!["example.com/hold".into()]),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create configmap");
    nss.delete("held", &DeleteParams::default())
        .await
        .expect("delete namespace");
    let conds = eventually(WAIT, "finalizer reported in conditions", || async {
        let n = nss.get_opt("held").await.expect("get")?;
        let conds = n.status?.conditions?;
        let fin = conds
            .iter()
            .find(|c| c.type_ == "NamespaceFinalizersRemaining")?;
        (fin.status == "True").then_some(conds)
    })
    .await;
    let get = |t: &str| {
        conds.iter().find(|c| c.type_ == t).map(|c| {
            (
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
    };
    assert_eq!(
        get("NamespaceFinalizersRemaining"),
        Some((
            "True".into(),
            "SomeFinalizerRemain".into(),
            "Some finalizers are remaining: example.com/hold in 1 resource instances".into()
        ))
    );
    assert_eq!(
        get("NamespaceContentRemaining"),
        Some((
            "True".into(),
            "SomeResourcesRemain".into(),
            "Some resources are remaining: configmaps. has 1 resource instances".into()
        ))
    );
    assert_eq!(
        get("NamespaceDeletionDiscoveryFailure").map(|c| c.0),
        Some("False".into())
    );
    assert!(
        nss.get_opt("held").await.expect("get").is_some(),
        "namespace kept while content remains"
    );
    // Release the object; the namespace follows (requeue after 15/2+1 s as upstream).
    api.patch(
        "sticky",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    eventually(
        Duration::from_secs(20),
        "namespace deleted after its content",
        || async {
            nss.get_opt("held")
                .await
                .expect("get")
                .is_none()
                .then_some(())
        },
    )
    .await;
}
