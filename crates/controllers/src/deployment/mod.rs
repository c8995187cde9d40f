//! The Deployment controller (upstream kube-controller-manager's `deployment`).
//!
//! A Deployment runs its pods through ReplicaSets named `<deployment>-<hash>`, where the
//! hash ([`util::compute_hash`]) covers the pod template and `status.collisionCount` and
//! is added as the `pod-template-hash` label to the ReplicaSet's selector, template and
//! labels. The ReplicaSet whose template equals the Deployment's (ignoring that label)
//! is the *new* one; all others are *old*. Each sync of a Deployment:
//!
//! 1. claims the ReplicaSets of its namespace (adopting matching orphans, releasing
//!    non-matching ones; see [`crate::replicaset::claim`]);
//! 2. for a paused Deployment or a changed `spec.replicas`, only scales (proportionally
//!    across ReplicaSets while a rollout is in flight) — a paused Deployment never
//!    creates a new ReplicaSet, so template changes wait for `resume`;
//! 3. otherwise takes one step of its strategy: [`rolling`] (`maxSurge` / `maxUnavailable`,
//!    integers or percentages, surge rounded up and unavailability down) or
//!    [`recreate`];
//! 4. keeps the `deployment.kubernetes.io/revision` annotations (a template rolled back
//!    to gets the next revision, its earlier ones in `revision-history`), the
//!    `desired-replicas` / `max-replicas` annotations, deletes zero-replica old
//!    ReplicaSets beyond `revisionHistoryLimit`, and writes the status with the
//!    `Available` and `Progressing` conditions (upstream reasons, including
//!    `ProgressDeadlineExceeded` after `progressDeadlineSeconds` without progress).
//!
//! `ScalingReplicaSet` events read as upstream's ("Scaled up replica set hello-7cb44d9bdd
//! from 0 to 1"). Rollbacks are done by kubectl (it patches the template back), which
//! this controller sees as an ordinary template change that matches an old ReplicaSet.

pub mod control;
pub mod recreate;
pub mod rolling;
pub mod sync;
pub mod util;

use std::collections::HashSet;
use std::sync::Arc;

use api::selector::Selector;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::ControllerOptions;
use crate::events::{Recorder, WARNING};
use crate::queue::WorkQueue;
use crate::replicaset::claim::{self, ClaimError, controller_of};
use crate::replicaset::informer::{self, Cache, Change, key_of, split_key};
use control::{ApiClient, DeploymentClient, ReplicaSetClaims};
use recreate::PodMap;
use sync::Syncer;

/// The component name on this controller's Events.
pub const COMPONENT: &str = "deployment-controller";
/// API version and kind of the controller references this controller writes.
pub const API_VERSION: &str = "apps/v1";
pub const KIND: &str = "Deployment";
/// Failures of one key before it is dropped until the next event (upstream
/// `maxRetries`).
pub const MAX_RETRIES: u32 = 15;

/// Why a sync failed (the key is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error("kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error("invalid rolling update parameters: {0}")]
    IntOrPercent(#[from] util::IntOrPercentError),
    #[error("hash collision: replica set {0} exists with another template")]
    HashCollision(String),
    #[error("unexpected deployment strategy type: {0}")]
    UnknownStrategy(String),
}

/// The controller's shared state.
pub struct DeploymentController {
    client: Arc<dyn DeploymentClient>,
    deployments: Arc<Cache<Deployment>>,
    replica_sets: Arc<Cache<ReplicaSet>>,
    pods: Arc<Cache<Pod>>,
    queue: Arc<WorkQueue<String>>,
}

/// Run the Deployment controller until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), crate::Error> {
    let recorder = Recorder::new(client.clone(), COMPONENT);
    let ctl = Arc::new(DeploymentController::new(
        Arc::new(ApiClient::new(client.clone(), recorder)),
        opts,
    ));
    let (d_tx, d_rx) = watch::channel(false);
    let (rs_tx, rs_rx) = watch::channel(false);
    let (pod_tx, pod_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let c = Arc::clone(&ctl);
    tasks.spawn(informer::run::<Deployment, _>(
        opts.informers.clone(),
        client.clone(),
        Arc::clone(&ctl.deployments),
        d_tx,
        move |ch| c.on_deployment(ch),
        shutdown.clone(),
    ));
    let c = Arc::clone(&ctl);
    tasks.spawn(informer::run::<ReplicaSet, _>(
        opts.informers.clone(),
        client.clone(),
        Arc::clone(&ctl.replica_sets),
        rs_tx,
        move |ch| c.on_replica_set(ch),
        shutdown.clone(),
    ));
    let c = Arc::clone(&ctl);
    tasks.spawn(informer::run::<Pod, _>(
        opts.informers.clone(),
        client.clone(),
        Arc::clone(&ctl.pods),
        pod_tx,
        move |ch| c.on_pod(ch),
        shutdown.clone(),
    ));
    info!("deployment controller: started");
    if informer::wait_synced(&mut [d_rx, rs_rx, pod_rx], &shutdown).await {
        let c = Arc::clone(&ctl);
        tasks.spawn(informer::run_workers(
            Arc::clone(&ctl.queue),
            opts.workload_workers,
            Some(MAX_RETRIES),
            move |key: String| {
                let c = Arc::clone(&c);
                async move { c.sync(&key).await }
            },
        ));
    }
    shutdown.cancelled().await;
    ctl.queue.shut_down();
    while tasks.join_next().await.is_some() {}
    info!("deployment controller: stopped");
    Ok(())
}

fn selector_of(d: &Deployment) -> Option<Selector> {
    d.spec
        .as_ref()
        .and_then(|s| Selector::from_label_selector(&s.selector).ok())
}

impl DeploymentController {
    /// A controller writing through `client`; its caches are filled by [`run`] (or by
    /// tests through [`DeploymentController::caches`]).
    pub fn new(client: Arc<dyn DeploymentClient>, opts: &ControllerOptions) -> Self {
        DeploymentController {
            client,
            deployments: Arc::default(),
            replica_sets: Arc::default(),
            pods: Arc::default(),
            queue: WorkQueue::new(opts.backoff),
        }
    }

    /// The Deployment, ReplicaSet and pod caches.
    pub fn caches(&self) -> (&Cache<Deployment>, &Cache<ReplicaSet>, &Cache<Pod>) {
        (&self.deployments, &self.replica_sets, &self.pods)
    }

    /// Keys waiting in the work queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<Arc<Deployment>> {
        if r.kind != KIND || !r.api_version.starts_with("apps/") {
            return None;
        }
        self.deployments
            .get(namespace, &r.name)
            .filter(|d| d.metadata.uid.as_deref() == Some(r.uid.as_str()))
    }

    /// Deployments whose selector matches an orphan ReplicaSet's labels.
    fn matching_deployments(&self, rs: &ReplicaSet) -> Vec<Arc<Deployment>> {
        let labels = rs.metadata.labels.clone().unwrap_or_default();
        self.deployments
            .list(&rs.namespace().unwrap_or_default())
            .into_iter()
            .filter(|d| {
                selector_of(d).is_some_and(|s| {
                    crate::replicaset::control::selects_something(&s) && s.matches(&labels)
                })
            })
            .collect()
    }

    fn enqueue(&self, d: &Deployment) {
        self.queue.add(key_of(d));
    }

    /// Watch handler for Deployments.
    pub fn on_deployment(&self, change: Change<Deployment>) {
        match change {
            Change::Added(d) | Change::Updated { new: d, .. } | Change::Deleted(d) => {
                self.enqueue(&d)
            }
        }
    }

    /// Watch handler for ReplicaSets (upstream `addReplicaSet`, `updateReplicaSet`,
    /// `deleteReplicaSet`).
    pub fn on_replica_set(&self, change: Change<ReplicaSet>) {
        match change {
            Change::Added(rs) => {
                let ns = rs.namespace().unwrap_or_default();
                if let Some(r) = controller_of(&rs.metadata) {
                    if let Some(d) = self.resolve(&ns, r) {
                        self.enqueue(&d);
                    }
                    return;
                }
                for d in self.matching_deployments(&rs) {
                    self.enqueue(&d);
                }
            }
            Change::Updated { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                let ns = new.namespace().unwrap_or_default();
                let (old_ref, new_ref) =
                    (controller_of(&old.metadata), controller_of(&new.metadata));
                if old_ref != new_ref
                    && let Some(d) = old_ref.and_then(|r| self.resolve(&ns, r))
                {
                    self.enqueue(&d);
                }
                if let Some(r) = new_ref {
                    if let Some(d) = self.resolve(&ns, r) {
                        self.enqueue(&d);
                    }
                    return;
                }
                if old.metadata.labels != new.metadata.labels || old_ref != new_ref {
                    for d in self.matching_deployments(&new) {
                        self.enqueue(&d);
                    }
                }
            }
            Change::Deleted(rs) => {
                let ns = rs.namespace().unwrap_or_default();
                if let Some(d) = controller_of(&rs.metadata).and_then(|r| self.resolve(&ns, r)) {
                    self.enqueue(&d);
                }
            }
        }
    }

    /// Watch handler for pods: a Recreate Deployment waits for its old pods to be gone.
    pub fn on_pod(&self, change: Change<Pod>) {
        let Change::Deleted(pod) = change else {
            return;
        };
        let ns = pod.namespace().unwrap_or_default();
        let Some(rs) = controller_of(&pod.metadata).and_then(|r| {
            self.replica_sets
                .get(&ns, &r.name)
                .filter(|rs| rs.metadata.uid.as_deref() == Some(r.uid.as_str()))
        }) else {
            return;
        };
        if let Some(d) = controller_of(&rs.metadata).and_then(|r| self.resolve(&ns, r))
            && util::strategy_type(&d) == util::RECREATE
        {
            self.enqueue(&d);
        }
    }

    /// The ReplicaSets this Deployment controls after adoption and release.
    async fn claim_replica_sets(
        &self,
        d: &Deployment,
        selector: &Selector,
    ) -> Result<Vec<ReplicaSet>, DeploymentError> {
        let ns = d.namespace().unwrap_or_default();
        let controller = claim::controller_ref(API_VERSION, KIND, &d.metadata);
        let claims = ReplicaSetClaims {
            client: self.client.as_ref(),
            deployment: d,
        };
        let candidates = self.replica_sets.list(&ns);
        let owned = claim::claim(&claims, &d.metadata, &controller, selector, candidates).await?;
        Ok(owned.iter().map(|rs| (**rs).clone()).collect())
    }

    /// Pods matching the Deployment's selector, by the uid of their controlling
    /// ReplicaSet among `rs_list`.
    fn pod_map(&self, d: &Deployment, selector: &Selector, rs_list: &[ReplicaSet]) -> PodMap {
        let uids: HashSet<&str> = rs_list
            .iter()
            .filter_map(|r| r.metadata.uid.as_deref())
            .collect();
        let mut map = PodMap::new();
        for p in self.pods.list(&d.namespace().unwrap_or_default()) {
            if !selector.matches(&p.metadata.labels.clone().unwrap_or_default()) {
                continue;
            }
            if let Some(r) = controller_of(&p.metadata)
                && uids.contains(r.uid.as_str())
            {
                map.entry(r.uid.clone()).or_default().push(Arc::clone(&p));
            }
        }
        map
    }

    /// Reconcile the Deployment `key` (`namespace/name`); see the module documentation.
    pub async fn sync(&self, key: &str) -> Result<(), DeploymentError> {
        let (ns, name) = split_key(key);
        let Some(cached) = self.deployments.get(ns, name) else {
            debug!(%key, "deployment deleted");
            return Ok(());
        };
        let d = (*cached).clone();
        let mut s = Syncer::new(self.client.as_ref(), d, crate::replicaset::status::now());
        let everything = s.d.spec.as_ref().is_none_or(|sp| {
            sp.selector
                .match_labels
                .as_ref()
                .is_none_or(|m| m.is_empty())
                && sp
                    .selector
                    .match_expressions
                    .as_ref()
                    .is_none_or(|e| e.is_empty())
        });
        if everything {
            self.client
                .event(
                    &s.d,
                    WARNING,
                    "SelectingAll",
                    "This deployment is selecting all pods. A non-empty selector is required.",
                )
                .await;
            let observed = s.d.status.as_ref().and_then(|st| st.observed_generation);
            if observed.unwrap_or(0) < s.d.metadata.generation.unwrap_or(0) {
                let generation = s.d.metadata.generation;
                s.d.status
                    .get_or_insert_with(Default::default)
                    .observed_generation = generation;
                s.write_status().await?;
            }
            return Ok(());
        }
        let Some(selector) = selector_of(&s.d) else {
            debug!(%key, "invalid selector");
            return Ok(());
        };
        let mut rs_list = self.claim_replica_sets(&s.d, &selector).await?;
        let pods = self.pod_map(&s.d, &selector, &rs_list);

        if s.d.metadata.deletion_timestamp.is_some() {
            return s.sync_status_only(&mut rs_list).await;
        }
        s.check_paused_conditions().await?;
        let result = if util::is_paused(&s.d) || s.is_scaling_event(&mut rs_list).await? {
            s.sync(&mut rs_list).await
        } else {
            match util::strategy_type(&s.d) {
                util::RECREATE => s.rollout_recreate(&mut rs_list, &pods).await,
                util::ROLLING_UPDATE => s.rollout_rolling(&mut rs_list).await,
                other => Err(DeploymentError::UnknownStrategy(other.to_string())),
            }
        };
        if let Some(after) = s.requeue_after {
            self.queue.add_after(key.to_string(), after);
        }
        result
    }
}

#[cfg(test)]
mod tests;
