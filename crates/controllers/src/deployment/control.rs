//! The Deployment controller's writes, behind [`DeploymentClient`] so rollouts can be
//! stepped against a fake in unit tests.

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::util::REVISION_ANNOTATION;
use crate::events::{self, Recorder};
use crate::replicaset::claim::ClaimClient;

/// Everything the Deployment controller writes or re-reads.
#[async_trait]
pub trait DeploymentClient: Send + Sync {
    async fn create_replica_set(&self, rs: &ReplicaSet) -> Result<ReplicaSet, kube::Error>;
    /// PUT a ReplicaSet (fails on a stale `resourceVersion`).
    async fn update_replica_set(&self, rs: &ReplicaSet) -> Result<ReplicaSet, kube::Error>;
    async fn delete_replica_set(&self, namespace: &str, name: &str) -> Result<(), kube::Error>;
    /// Strategic-merge patch of a ReplicaSet (adoption and release).
    async fn patch_replica_set(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), kube::Error>;
    async fn get_replica_set(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ReplicaSet>, kube::Error>;
    async fn get_deployment(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Deployment>, kube::Error>;
    /// Write the status of `d` and its revision annotation.
    async fn update_deployment_status(&self, d: &Deployment) -> Result<Deployment, kube::Error>;
    /// Record a core/v1 Event about `d` (best effort).
    async fn event(&self, d: &Deployment, type_: &str, reason: &str, message: &str);
}

/// [`DeploymentClient`] over the API server.
pub struct ApiClient {
    client: Client,
    recorder: Recorder,
}

impl ApiClient {
    pub fn new(client: Client, recorder: Recorder) -> Self {
        ApiClient { client, recorder }
    }

    fn replica_sets(&self, namespace: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn deployments(&self, namespace: &str) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), namespace)
    }
}

#[async_trait]
impl DeploymentClient for ApiClient {
    async fn create_replica_set(&self, rs: &ReplicaSet) -> Result<ReplicaSet, kube::Error> {
        self.replica_sets(&rs.namespace().unwrap_or_default())
            .create(&PostParams::default(), rs)
            .await
    }

    async fn update_replica_set(&self, rs: &ReplicaSet) -> Result<ReplicaSet, kube::Error> {
        self.replica_sets(&rs.namespace().unwrap_or_default())
            .replace(&rs.name_any(), &PostParams::default(), rs)
            .await
    }

    async fn delete_replica_set(&self, namespace: &str, name: &str) -> Result<(), kube::Error> {
        self.replica_sets(namespace)
            .delete(name, &DeleteParams::default())
            .await
            .map(|_| ())
    }

    async fn patch_replica_set(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), kube::Error> {
        self.replica_sets(namespace)
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map(|_| ())
    }

    async fn get_replica_set(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ReplicaSet>, kube::Error> {
        self.replica_sets(namespace).get_opt(name).await
    }

    async fn get_deployment(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Deployment>, kube::Error> {
        self.deployments(namespace).get_opt(name).await
    }

    /// Upstream writes the revision annotation in the same status update (the
    /// Deployment status strategy keeps annotation changes). When the server drops
    /// metadata changes on `/status`, the annotation is merge-patched afterwards.
    async fn update_deployment_status(&self, d: &Deployment) -> Result<Deployment, kube::Error> {
        let api = self.deployments(&d.namespace().unwrap_or_default());
        let name = d.name_any();
        let updated = api.replace_status(&name, &PostParams::default(), d).await?;
        let want = d.annotations().get(REVISION_ANNOTATION);
        if want.is_none() || updated.annotations().get(REVISION_ANNOTATION) == want {
            return Ok(updated);
        }
        let patch = json!({"metadata": {"annotations": {REVISION_ANNOTATION: want}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
    }

    async fn event(&self, d: &Deployment, type_: &str, reason: &str, message: &str) {
        self.recorder
            .record(&events::object_ref(d), type_, reason, message)
            .await;
    }
}

/// Claiming ReplicaSets for one Deployment through a [`DeploymentClient`].
pub struct ReplicaSetClaims<'a> {
    pub client: &'a dyn DeploymentClient,
    pub deployment: &'a Deployment,
}

#[async_trait]
impl ClaimClient for ReplicaSetClaims<'_> {
    async fn patch_candidate(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), kube::Error> {
        self.client.patch_replica_set(namespace, name, patch).await
    }

    async fn current_owner(&self) -> Result<Option<ObjectMeta>, kube::Error> {
        let d = self.deployment;
        Ok(self
            .client
            .get_deployment(&d.namespace().unwrap_or_default(), &d.name_any())
            .await?
            .map(|d| d.metadata))
    }
}
