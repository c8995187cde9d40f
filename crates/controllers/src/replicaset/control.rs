//! The ReplicaSet controller's writes, behind [`ReplicaSetClient`] so the replica
//! management can be tested against a fake, and the pure pieces of pod creation: pods
//! from the template ([`pod_from_template`]) and the slow-start batching
//! ([`slow_start_batch`]).

use std::future::Future;

use api::selector::Selector;
use async_trait::async_trait;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::Value;

use super::claim::ClaimClient;
use crate::events::{self, Recorder};

/// Everything the ReplicaSet controller writes or re-reads.
#[async_trait]
pub trait ReplicaSetClient: Send + Sync {
    async fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<Pod, kube::Error>;
    async fn delete_pod(&self, namespace: &str, name: &str) -> Result<(), kube::Error>;
    /// Strategic-merge patch of a pod (adoption and release).
    async fn patch_pod(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), kube::Error>;
    /// The ReplicaSet as the API server has it now.
    async fn get_replica_set(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ReplicaSet>, kube::Error>;
    /// PUT the status subresource.
    async fn update_status(&self, rs: &ReplicaSet) -> Result<ReplicaSet, kube::Error>;
    /// Record a core/v1 Event about `rs` (best effort).
    async fn event(&self, rs: &ReplicaSet, type_: &str, reason: &str, message: &str);
}

/// [`ReplicaSetClient`] over the API server.
pub struct ApiClient {
    client: Client,
    recorder: Recorder,
}

impl ApiClient {
    pub fn new(client: Client, recorder: Recorder) -> Self {
        ApiClient { client, recorder }
    }
}

#[async_trait]
impl ReplicaSetClient for ApiClient {
    async fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<Pod, kube::Error> {
        Api::<Pod>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), pod)
            .await
    }

    async fn delete_pod(&self, namespace: &str, name: &str) -> Result<(), kube::Error> {
        Api::<Pod>::namespaced(self.client.clone(), namespace)
            .delete(name, &DeleteParams::default())
            .await
            .map(|_| ())
    }

    async fn patch_pod(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), kube::Error> {
        Api::<Pod>::namespaced(self.client.clone(), namespace)
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map(|_| ())
    }

    async fn get_replica_set(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ReplicaSet>, kube::Error> {
        Api::<ReplicaSet>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
    }

    async fn update_status(&self, rs: &ReplicaSet) -> Result<ReplicaSet, kube::Error> {
        Api::<ReplicaSet>::namespaced(self.client.clone(), &rs.namespace().unwrap_or_default())
            .replace_status(&rs.name_any(), &PostParams::default(), rs)
            .await
    }

    async fn event(&self, rs: &ReplicaSet, type_: &str, reason: &str, message: &str) {
        self.recorder
            .record(&events::object_ref(rs), type_, reason, message)
            .await;
    }
}

/// Claiming pods for one ReplicaSet through a [`ReplicaSetClient`].
pub struct PodClaims<'a> {
    pub client: &'a dyn ReplicaSetClient,
    pub rs: &'a ReplicaSet,
}

#[async_trait]
impl ClaimClient for PodClaims<'_> {
    async fn patch_candidate(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), kube::Error> {
        self.client.patch_pod(namespace, name, patch).await
    }

    async fn current_owner(&self) -> Result<Option<ObjectMeta>, kube::Error> {
        let ns = self.rs.namespace().unwrap_or_default();
        Ok(self
            .client
            .get_replica_set(&ns, &self.rs.name_any())
            .await?
            .map(|r| r.metadata))
    }
}

/// The message of an API error as upstream prints it (the Status message), or the
/// error itself for transport failures.
pub fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

/// Whether the API refused a create because the namespace is being deleted.
pub fn namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.details.as_ref().is_some_and(|d| {
        d.causes.iter().any(|c| c.reason == "NamespaceTerminating")
    }))
}

/// The pod a controller creates from its template (upstream `GetPodFromTemplate`): the
/// template's labels, annotations, finalizers and spec, `generateName` `<parent>-` (the
/// API server appends five random characters) and the controller reference. A template
/// without labels is refused, as upstream.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    parent_name: &str,
    controller: OwnerReference,
) -> Result<Pod, String> {
    let tmeta = template.metadata.clone().unwrap_or_default();
    if tmeta.labels.as_ref().is_none_or(|l| l.is_empty()) {
        return Err("unable to create pods, no labels".into());
    }
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(pods_prefix(parent_name)),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

/// `<name>-`, or `<name>` when the dash would make an invalid prefix (upstream
/// `getPodsPrefix`).
fn pods_prefix(name: &str) -> String {
    let prefix = format!("{name}-");
    if api::names::is_dns1123_subdomain(prefix.trim_end_matches('-')).is_empty() {
        prefix
    } else {
        name.to_string()
    }
}

/// Whether `selector` is usable to pick an object's pods: upstream skips controllers
/// whose selector selects everything when looking for an orphan's owners.
pub fn selects_something(selector: &Selector) -> bool {
    !selector.is_empty() && !selector.is_nothing()
}

/// Run `count` calls of `f` in batches of 1, 2, 4, … (starting at `initial`), each batch
/// concurrently, stopping after the first batch with a failure (upstream
/// `slowStartBatch`): a request that fails for everyone (quota, admission) fails once
/// instead of `count` times. Returns the number of successes and the first error.
pub async fn slow_start_batch<F, Fut, E>(count: usize, initial: usize, f: F) -> (usize, Option<E>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut remaining = count;
    let mut successes = 0;
    let mut batch = remaining.min(initial.max(1));
    while batch > 0 {
        let results = futures::future::join_all((0..batch).map(|_| f())).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(()) => successes += 1,
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
        if first_err.is_some() {
            return (successes, first_err);
        }
        remaining -= batch;
        batch = remaining.min(2 * batch);
    }
    (successes, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn slow_start_batches() {
        // (count, calls from number n on fail, expected successes, expected batch ends)
        let cases: [(usize, Option<usize>, usize, &[usize]); 5] = [
            (0, None, 0, &[]),
            (1, None, 1, &[1]),
            (10, None, 10, &[1, 3, 7, 10]),
            (10, Some(4), 4, &[1, 3, 7]),
            (10, Some(0), 0, &[1]),
        ];
        for (count, fail_from, want_ok, want_ends) in cases {
            let calls = AtomicUsize::new(0);
            // All calls of a batch are made before any of them runs, so the call count
            // seen when one runs is where its batch ends.
            let ends = Mutex::new(Vec::<usize>::new());
            let (ok, err) = slow_start_batch(count, 1, || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let (calls, ends) = (&calls, &ends);
                async move {
                    let end = calls.load(Ordering::SeqCst);
                    let mut e = ends.lock().expect("lock");
                    if e.last() != Some(&end) {
                        e.push(end);
                    }
                    if fail_from.is_some_and(|f| n >= f) {
                        Err("boom")
                    } else {
                        Ok(())
                    }
                }
            })
            .await;
            assert_eq!(ok, want_ok, "count={count}");
            assert_eq!(err.is_some(), fail_from.is_some_and(|f| f < count));
            assert_eq!(
                ends.lock().expect("lock").as_slice(),
                want_ends,
                "count={count}"
            );
        }
    }

    #[test]
    fn pods_from_template() {
        let owner = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web-abc".into(),
            uid: "u1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                annotations: Some([("a".to_string(), "b".to_string())].into()),
                name: Some("ignored".into()),
                ..Default::default()
            }),
            spec: Some(Default::default()),
        };
        let pod = pod_from_template(&template, "web-abc", owner.clone()).expect("pod");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(pod.metadata.name, None);
        assert_eq!(
            pod.metadata.labels,
            template.metadata.as_ref().and_then(|m| m.labels.clone())
        );
        assert_eq!(pod.metadata.annotations.as_ref().map(|a| a.len()), Some(1));
        assert_eq!(pod.metadata.owner_references, Some(vec![owner.clone()]));
        assert!(pod.spec.is_some());

        let unlabeled = PodTemplateSpec::default();
        assert_eq!(
            pod_from_template(&unlabeled, "web", owner).expect_err("no labels"),
            "unable to create pods, no labels"
        );
    }

    #[test]
    fn prefixes() {
        assert_eq!(pods_prefix("web-7cb44d9bdd"), "web-7cb44d9bdd-");
        assert_eq!(pods_prefix("Bad_Name"), "Bad_Name");
    }
}
