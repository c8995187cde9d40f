//! Mirror pods: the read-only API copy of each static pod (same name, annotation
//! `kubernetes.io/config.mirror: <hash>`, owned by the Node). Re-created when deleted,
//! replaced when the static pod's hash changes, removed when the static pod goes.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};

use crate::sources::{CONFIG_HASH, CONFIG_MIRROR, annotation, is_mirror};

/// `namespace/name` of a pod.
pub fn key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or_default(),
        p.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The mirror pod for a static pod.
pub fn mirror_pod(static_pod: &Pod, node: &str, node_uid: &str) -> Pod {
    let hash = annotation(static_pod, CONFIG_HASH)
        .unwrap_or_default()
        .to_string();
    let mut annotations = static_pod.metadata.annotations.clone().unwrap_or_default();
    annotations.insert(CONFIG_MIRROR.into(), hash);
    Pod {
        metadata: ObjectMeta {
            name: static_pod.metadata.name.clone(),
            namespace: static_pod.metadata.namespace.clone(),
            labels: static_pod.metadata.labels.clone(),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.into(),
                uid: node_uid.into(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        spec: static_pod.spec.clone(),
        status: None,
    }
}

async fn delete(client: &kube::Client, p: &Pod) {
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        p.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: p.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    if let Err(e) = api
        .delete(p.metadata.name.as_deref().unwrap_or_default(), &dp)
        .await
    {
        tracing::debug!(pod = %key(p), "deleting mirror pod: {e}");
    }
}

/// Bring the API's mirror pods in line with the static pods. `api_pods` is the API
/// source's latest snapshot keyed by `namespace/name`.
pub async fn reconcile(
    client: &kube::Client,
    node: &str,
    node_uid: &str,
    static_pods: &[Pod],
    api_pods: &HashMap<String, Pod>,
) {
    let mut wanted = std::collections::HashSet::new();
    for sp in static_pods {
        let k = key(sp);
        wanted.insert(k.clone());
        let hash = annotation(sp, CONFIG_HASH).unwrap_or_default();
        match api_pods.get(&k) {
            None => {
                let api: Api<Pod> = Api::namespaced(
                    client.clone(),
                    sp.metadata.namespace.as_deref().unwrap_or("default"),
                );
                match api
                    .create(&PostParams::default(), &mirror_pod(sp, node, node_uid))
                    .await
                {
                    Ok(_) => tracing::info!(pod = %k, "mirror pod created"),
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => tracing::warn!(pod = %k, "creating mirror pod: {e}"),
                }
            }
            Some(m) if !is_mirror(m) => {
                tracing::warn!(pod = %k, "a pod that is not a mirror has the static pod's name");
            }
            Some(m) => {
                if annotation(m, CONFIG_MIRROR) != Some(hash)
                    || m.metadata.deletion_timestamp.is_some()
                {
                    delete(client, m).await;
                }
            }
        }
    }
    for (k, p) in api_pods {
        if is_mirror(p) && !wanted.contains(k) {
            delete(client, p).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_carries_hash_and_node_owner() {
        let sp = crate::sources::static_pod(
            std::path::Path::new("/m/a.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: i}]}\n",
            "n1",
        )
        .expect("static pod");
        let m = mirror_pod(&sp, "n1", "node-uid");
        assert_eq!(m.metadata.name.as_deref(), Some("a-n1"));
        assert_eq!(m.metadata.uid, None);
        assert_eq!(annotation(&m, CONFIG_MIRROR), sp.metadata.uid.as_deref());
        let o = &m.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (o.kind.as_str(), o.uid.as_str(), o.controller),
            ("Node", "node-uid", Some(true))
        );
        assert!(is_mirror(&m));
    }
}
