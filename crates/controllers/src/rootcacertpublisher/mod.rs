//! The root CA publisher (upstream `root-ca-cert-publisher`): every active namespace has
//! the ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA bundle (PEM), so
//! pods can verify the API server (the ServiceAccount admission projects it into the
//! token volume). The ConfigMap is created when a namespace appears and restored when it
//! is deleted or its data edited.
//!
//! The controller manager is an ordinary API client: the CA it publishes is the one its
//! kubeconfig trusts for the API server ([`ControllerOptions::root_ca`]), which in
//! Flotilla is the cluster CA. Without one the controller does not run.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::queue::Backoff;
use crate::serviceaccount::is_active;
use crate::{ControllerOptions, Error};

/// The ConfigMap's name and key (upstream).
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
pub const KEY: &str = "ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

struct Context {
    client: Client,
    ca: String,
    backoff: Backoff,
}

/// The ConfigMap as it should be in `ns`.
pub fn desired(ns: &str, ca: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIG_MAP.into()),
            namespace: Some(ns.into()),
            annotations: Some(BTreeMap::from([(
                "kubernetes.io/description".to_string(),
                DESCRIPTION.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(KEY.to_string(), ca.to_string())])),
        ..Default::default()
    }
}

/// Whether an existing ConfigMap needs its data restored (upstream compares `data`
/// only and drops `binaryData`).
pub fn needs_update(cm: &ConfigMap, ca: &str) -> bool {
    let want = BTreeMap::from([(KEY.to_string(), ca.to_string())]);
    cm.data.as_ref() != Some(&want) || cm.binary_data.as_ref().is_some_and(|b| !b.is_empty())
}

/// Run the root CA publisher until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let Some(ca) = opts.root_ca.clone().filter(|c| !c.trim().is_empty()) else {
        warn!(
            "root-ca-cert-publisher: no root CA configured (the kubeconfig has no certificate authority); not running"
        );
        return Ok(());
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        ca,
        backoff: opts.backoff,
    });
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let config_maps: Api<ConfigMap> = Api::all(client);
    info!("root-ca-cert-publisher: started");
    Controller::new(namespaces, watcher::Config::default())
        .watches(
            config_maps,
            watcher::Config::default().fields(&format!("metadata.name={CONFIG_MAP}")),
            |cm: ConfigMap| {
                cm.metadata
                    .namespace
                    .map(|ns| ObjectRef::<Namespace>::new(&ns))
            },
        )
        .with_config(
            Config::default()
                .concurrency(u16::try_from(opts.workload_workers.max(1)).unwrap_or(u16::MAX)),
        )
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                debug!(error = %e, "root-ca-cert-publisher: reconcile error");
            }
        })
        .await;
    info!("root-ca-cert-publisher: stopped");
    Ok(())
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !is_active(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    match api.get_opt(CONFIG_MAP).await? {
        None => match api
            .create(&PostParams::default(), &desired(&name, &ctx.ca))
            .await
        {
            Ok(_) => info!(namespace = %name, "root-ca-cert-publisher: created {CONFIG_MAP}"),
            // Created meanwhile (the watch brings us back), or the namespace is terminating.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
            Err(e) => return Err(e.into()),
        },
        Some(mut cm) if needs_update(&cm, &ctx.ca) => {
            cm.data = Some(BTreeMap::from([(KEY.to_string(), ctx.ca.clone())]));
            cm.binary_data = None;
            cm.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .entry("kubernetes.io/description".into())
                .or_insert_with(|| DESCRIPTION.into());
            match api.replace(CONFIG_MAP, &PostParams::default(), &cm).await {
                Ok(_) => info!(namespace = %name, "root-ca-cert-publisher: restored {CONFIG_MAP}"),
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                    return Ok(Action::requeue(ctx.backoff.delay(1)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Some(_) => {}
    }
    Ok(Action::await_change())
}

fn error_policy(ns: Arc<Namespace>, err: &Error, ctx: Arc<Context>) -> Action {
    debug!(namespace = %ns.name_any(), error = %err, "root-ca-cert-publisher: retrying");
    Action::requeue(ctx.backoff.delay(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_and_drift() {
        let cm = desired("ns", "PEM");
        assert_eq!(cm.metadata.name.as_deref(), Some(CONFIG_MAP));
        assert!(!needs_update(&cm, "PEM"));
        assert!(needs_update(&cm, "OTHER"));
        let mut edited = cm.clone();
        edited
            .data
            .as_mut()
            .unwrap()
            .insert("extra".into(), "x".into());
        assert!(needs_update(&edited, "PEM"));
        let mut emptied = cm;
        emptied.data = None;
        assert!(needs_update(&emptied, "PEM"));
    }
}
