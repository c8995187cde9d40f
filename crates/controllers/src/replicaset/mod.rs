//! The ReplicaSet controller (upstream kube-controller-manager's `replicaset`).
//!
//! It watches ReplicaSets and pods into local caches ([`informer`]); the watch handlers
//! only queue ReplicaSet keys and lower [`expectations`]. A worker's sync of one
//! ReplicaSet:
//!
//! 1. takes the active pods (not finished, not being deleted) of the namespace and
//!    claims them ([`claim`]): orphans matching the selector are adopted, owned pods that
//!    no longer match are released — so a pod relabeled out of the selector is replaced
//!    and keeps running on its own;
//! 2. unless creations or deletions are still outstanding, creates missing pods from the
//!    template (`generateName: <rs>-`, controller reference, at most [`BURST_REPLICAS`]
//!    per sync in slow-start batches 1, 2, 4, …) or deletes surplus pods in upstream's
//!    order ([`ranking`]), with `SuccessfulCreate`/`SuccessfulDelete` and
//!    `FailedCreate`/`FailedDelete` events;
//! 3. writes `status` (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas
//!    after `minReadySeconds` of readiness, observedGeneration, the `ReplicaFailure`
//!    condition) when it changed ([`status`]).
//!
//! One deliberate difference: pods this sync deleted are no longer counted in the
//! status it writes (upstream counts them until the next sync). The Deployment controller
//! scales on these numbers, and counting pods that are already gone could let it take
//! availability below `maxUnavailable`.
//!
//! [`informer`] and [`claim`] are shared with the Deployment controller.

pub mod claim;
pub mod control;
pub mod expectations;
pub mod informer;
pub mod ranking;
pub mod status;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use api::selector::Selector;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::events::{NORMAL, Recorder, WARNING};
use crate::queue::WorkQueue;
use crate::{ControllerOptions, is_conflict, is_not_found};
use claim::{ClaimError, claim, controller_of};
use control::{ApiClient, PodClaims, ReplicaSetClient, error_message, namespace_terminating};
use expectations::Expectations;
use informer::{Cache, Change, key_of, split_key};

/// Most pods created or deleted by one sync (upstream `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;
/// First batch of the slow-start creation (upstream `SlowStartInitialBatchSize`).
pub const SLOW_START_INITIAL_BATCH_SIZE: usize = 1;
/// The component name on this controller's Events.
pub const COMPONENT: &str = "replicaset-controller";
/// API version and kind of the controller references this controller writes.
pub const API_VERSION: &str = "apps/v1";
pub const KIND: &str = "ReplicaSet";
/// Status writes retried after a conflict (upstream `statusUpdateRetries`).
const STATUS_UPDATE_RETRIES: usize = 1;

/// Why a sync failed (the key is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error("{0}")]
    Manage(String),
}

/// The controller's shared state.
pub struct ReplicaSetController {
    client: Arc<dyn ReplicaSetClient>,
    replica_sets: Arc<Cache<ReplicaSet>>,
    pods: Arc<Cache<Pod>>,
    queue: Arc<WorkQueue<String>>,
    expectations: Expectations,
}

/// What one round of creating or deleting pods did.
#[derive(Debug, Default)]
pub struct Managed {
    /// Keys (`namespace/name`) of the pods deleted.
    pub deleted: HashSet<String>,
    /// The first failure, if any.
    pub error: Option<String>,
}

/// Run the ReplicaSet controller until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), crate::Error> {
    let recorder = Recorder::new(client.clone(), COMPONENT);
    let ctl = Arc::new(ReplicaSetController::new(
        Arc::new(ApiClient::new(client.clone(), recorder)),
        opts,
    ));
    let (rs_tx, rs_rx) = watch::channel(false);
    let (pod_tx, pod_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    {
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
    }
    info!("replicaset controller: started");
    if informer::wait_synced(&mut [rs_rx, pod_rx], &shutdown).await {
        let c = Arc::clone(&ctl);
        tasks.spawn(informer::run_workers(
            Arc::clone(&ctl.queue),
            opts.workload_workers,
            None,
            move |key: String| {
                let c = Arc::clone(&c);
                async move { c.sync(&key).await }
            },
        ));
    }
    shutdown.cancelled().await;
    ctl.queue.shut_down();
    while tasks.join_next().await.is_some() {}
    info!("replicaset controller: stopped");
    Ok(())
}

impl ReplicaSetController {
    /// A controller writing through `client`; its caches are filled by [`run`] (or by
    /// tests through [`ReplicaSetController::caches`]).
    pub fn new(client: Arc<dyn ReplicaSetClient>, opts: &ControllerOptions) -> Self {
        ReplicaSetController {
            client,
            replica_sets: Arc::default(),
            pods: Arc::default(),
            queue: WorkQueue::new(opts.backoff),
            expectations: Expectations::default(),
        }
    }

    /// The ReplicaSet and pod caches.
    pub fn caches(&self) -> (&Cache<ReplicaSet>, &Cache<Pod>) {
        (&self.replica_sets, &self.pods)
    }

    /// The outstanding expectations.
    pub fn expectations(&self) -> &Expectations {
        &self.expectations
    }

    /// The ReplicaSet a controller reference names, if it is in the cache with that uid.
    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<Arc<ReplicaSet>> {
        if r.kind != KIND || !r.api_version.starts_with("apps/") {
            return None;
        }
        self.replica_sets
            .get(namespace, &r.name)
            .filter(|rs| rs.metadata.uid.as_deref() == Some(r.uid.as_str()))
    }

    /// ReplicaSets of the pod's namespace whose selector matches it (for orphans).
    fn matching_replica_sets(&self, pod: &Pod) -> Vec<Arc<ReplicaSet>> {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        self.replica_sets
            .list(&pod.namespace().unwrap_or_default())
            .into_iter()
            .filter(|rs| {
                rs.spec
                    .as_ref()
                    .and_then(|s| Selector::from_label_selector(&s.selector).ok())
                    .is_some_and(|sel| control::selects_something(&sel) && sel.matches(&labels))
            })
            .collect()
    }

    fn enqueue(&self, rs: &ReplicaSet) {
        self.queue.add(key_of(rs));
    }

    /// Watch handler for ReplicaSets.
    pub fn on_replica_set(&self, change: Change<ReplicaSet>) {
        match change {
            Change::Added(rs) => self.enqueue(&rs),
            Change::Updated { old, new } => {
                if old.metadata.uid != new.metadata.uid {
                    self.expectations.delete(&key_of(&*old));
                }
                self.enqueue(&new);
            }
            Change::Deleted(rs) => {
                let key = key_of(&*rs);
                self.expectations.delete(&key);
                self.queue.add(key);
            }
        }
    }

    /// Watch handler for pods (upstream `addPod`, `updatePod`, `deletePod`).
    pub fn on_pod(&self, change: Change<Pod>) {
        match change {
            Change::Added(pod) => self.pod_added(&pod),
            Change::Updated { old, new } => self.pod_updated(&old, &new),
            Change::Deleted(pod) => self.pod_deleted(&pod),
        }
    }

    fn pod_added(&self, pod: &Pod) {
        if pod.metadata.deletion_timestamp.is_some() {
            // Seen for the first time already terminating (e.g. after a re-list).
            self.pod_deleted(pod);
            return;
        }
        let ns = pod.namespace().unwrap_or_default();
        if let Some(r) = controller_of(&pod.metadata) {
            if let Some(rs) = self.resolve(&ns, r) {
                let key = key_of(&*rs);
                self.expectations.creation_observed(&key);
                self.queue.add(key);
            }
            return;
        }
        for rs in self.matching_replica_sets(pod) {
            self.enqueue(&rs);
        }
    }

    fn pod_updated(&self, old: &Pod, new: &Pod) {
        if old.metadata.resource_version == new.metadata.resource_version {
            return;
        }
        let labels_changed = old.metadata.labels != new.metadata.labels;
        if new.metadata.deletion_timestamp.is_some() {
            // A graceful deletion: replace the pod now rather than when it is gone.
            self.pod_deleted(new);
            if labels_changed {
                self.pod_deleted(old);
            }
            return;
        }
        let ns = new.namespace().unwrap_or_default();
        let (old_ref, new_ref) = (controller_of(&old.metadata), controller_of(&new.metadata));
        let ref_changed = old_ref != new_ref;
        if ref_changed && let Some(rs) = old_ref.and_then(|r| self.resolve(&ns, r)) {
            self.enqueue(&rs);
        }
        if let Some(r) = new_ref {
            if let Some(rs) = self.resolve(&ns, r) {
                self.enqueue(&rs);
                let min_ready = rs
                    .spec
                    .as_ref()
                    .and_then(|s| s.min_ready_seconds)
                    .unwrap_or(0);
                if min_ready > 0 && !status::is_pod_ready(old) && status::is_pod_ready(new) {
                    // Look again once the pod has been ready long enough to count as
                    // available (plus a second against clock skew, as upstream).
                    let delay = Duration::from_secs(u64::try_from(min_ready).unwrap_or(0) + 1);
                    self.queue.add_after(key_of(&*rs), delay);
                }
            }
            return;
        }
        if labels_changed || ref_changed {
            for rs in self.matching_replica_sets(new) {
                self.enqueue(&rs);
            }
        }
    }

    fn pod_deleted(&self, pod: &Pod) {
        let ns = pod.namespace().unwrap_or_default();
        let Some(rs) = controller_of(&pod.metadata).and_then(|r| self.resolve(&ns, r)) else {
            return;
        };
        let key = key_of(&*rs);
        self.expectations.deletion_observed(&key, &key_of(pod));
        self.queue.add(key);
    }

    /// Pods of all ReplicaSets controlled by the same owner as `rs` (for the same-node
    /// ranking of deletions; upstream `getIndirectlyRelatedPods`).
    fn related_pods(&self, rs: &ReplicaSet) -> Vec<Arc<Pod>> {
        let Some(owner) = controller_of(&rs.metadata) else {
            return Vec::new();
        };
        let ns = rs.namespace().unwrap_or_default();
        let pods = self.pods.list(&ns);
        let mut seen = HashSet::new();
        let mut related = Vec::new();
        for sibling in self.replica_sets.list(&ns) {
            if controller_of(&sibling.metadata).map(|r| &r.uid) != Some(&owner.uid) {
                continue;
            }
            let Some(sel) = sibling
                .spec
                .as_ref()
                .and_then(|s| Selector::from_label_selector(&s.selector).ok())
            else {
                continue;
            };
            for p in &pods {
                if sel.matches(&p.metadata.labels.clone().unwrap_or_default())
                    && seen.insert(p.metadata.uid.clone())
                {
                    related.push(Arc::clone(p));
                }
            }
        }
        related
    }

    /// Reconcile the ReplicaSet `key` (`namespace/name`); see the module documentation.
    pub async fn sync(&self, key: &str) -> Result<(), SyncError> {
        let (ns, name) = split_key(key);
        let Some(rs) = self.replica_sets.get(ns, name) else {
            debug!(%key, "replicaset deleted");
            self.expectations.delete(key);
            return Ok(());
        };
        let needs_sync = self.expectations.satisfied(key);
        let Some(spec) = rs.spec.as_ref() else {
            return Ok(());
        };
        let selector = match Selector::from_label_selector(&spec.selector) {
            Ok(s) => s,
            Err(e) => {
                debug!(%key, "invalid selector: {e}");
                return Ok(());
            }
        };
        let active: Vec<Arc<Pod>> = self
            .pods
            .list(ns)
            .into_iter()
            .filter(|p| status::is_pod_active(p))
            .collect();
        let controller = claim::controller_ref(API_VERSION, KIND, &rs.metadata);
        let claims = PodClaims {
            client: self.client.as_ref(),
            rs: &rs,
        };
        let owned = claim(&claims, &rs.metadata, &controller, &selector, active).await?;

        let mut managed = Managed::default();
        if needs_sync && rs.metadata.deletion_timestamp.is_none() {
            let related = self.related_pods(&rs);
            managed = manage_replicas(
                self.client.as_ref(),
                &self.expectations,
                key,
                &rs,
                &owned,
                &related,
                status::now(),
            )
            .await;
        }
        let counted: Vec<&Pod> = owned
            .iter()
            .filter(|p| !managed.deleted.contains(&key_of(&***p)))
            .map(|p| &**p)
            .collect();
        let new_status =
            status::calculate_status(&rs, &counted, managed.error.as_deref(), status::now());
        let updated = update_status(self.client.as_ref(), &rs, new_status).await?;

        let replicas = spec.replicas.unwrap_or(1);
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let st = updated.status.unwrap_or_default();
        if managed.error.is_none()
            && min_ready > 0
            && st.ready_replicas.unwrap_or(0) == replicas
            && st.available_replicas.unwrap_or(0) != replicas
        {
            let delay = Duration::from_secs(u64::try_from(min_ready).unwrap_or(0));
            self.queue.add_after(key.to_string(), delay);
        }
        managed.error.map_or(Ok(()), |e| Err(SyncError::Manage(e)))
    }
}

/// Create or delete pods so that `pods` (the active pods `rs` owns) reach
/// `spec.replicas` (upstream `manageReplicas`).
pub async fn manage_replicas(
    client: &dyn ReplicaSetClient,
    expectations: &Expectations,
    key: &str,
    rs: &ReplicaSet,
    pods: &[Arc<Pod>],
    related: &[Arc<Pod>],
    now: Timestamp,
) -> Managed {
    let mut out = Managed::default();
    let Some(spec) = rs.spec.as_ref() else {
        return out;
    };
    let want = usize::try_from(spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);
    let ns = rs.namespace().unwrap_or_default();
    if pods.len() < want {
        let diff = (want - pods.len()).min(BURST_REPLICAS);
        // Expect the creations before making them: the watch may report a pod before
        // the create call returns.
        expectations.expect_creations(key, diff);
        let Some(template) = spec.template.as_ref() else {
            for _ in 0..diff {
                expectations.creation_observed(key);
            }
            out.error = Some("unable to create pods, no template".into());
            return out;
        };
        let controller = claim::controller_ref(API_VERSION, KIND, &rs.metadata);
        debug!(%key, need = want, creating = diff, "too few replicas");
        let (ok, err) = control::slow_start_batch(diff, SLOW_START_INITIAL_BATCH_SIZE, || {
            let controller = controller.clone();
            let ns = ns.clone();
            async move {
                let pod = match control::pod_from_template(template, &rs.name_any(), controller) {
                    Ok(p) => p,
                    Err(e) => {
                        client
                            .event(rs, WARNING, "FailedCreate", &format!("Error creating: {e}"))
                            .await;
                        return Err(e);
                    }
                };
                match client.create_pod(&ns, &pod).await {
                    Ok(created) => {
                        client
                            .event(
                                rs,
                                NORMAL,
                                "SuccessfulCreate",
                                &format!("Created pod: {}", created.name_any()),
                            )
                            .await;
                        Ok(())
                    }
                    Err(e) => {
                        let msg = error_message(&e);
                        client
                            .event(
                                rs,
                                WARNING,
                                "FailedCreate",
                                &format!("Error creating: {msg}"),
                            )
                            .await;
                        if namespace_terminating(&e) {
                            // Nothing more can be created here; not an error to retry.
                            expectations.creation_observed(key);
                            return Ok(());
                        }
                        Err(msg)
                    }
                }
            }
        })
        .await;
        // Failed and never attempted creations will not be observed.
        for _ in ok..diff {
            expectations.creation_observed(key);
        }
        out.error = err;
        return out;
    }
    if pods.len() > want {
        let diff = (pods.len() - want).min(BURST_REPLICAS);
        let victims = ranking::pods_to_delete(pods, related, diff, now);
        let keys: Vec<String> = victims.iter().map(|p| key_of(&**p)).collect();
        expectations.expect_deletions(key, keys.clone());
        debug!(%key, need = want, deleting = diff, "too many replicas");
        let ns = ns.as_str();
        let results = futures::future::join_all(victims.iter().map(|p| async move {
            let name = p.name_any();
            match client.delete_pod(ns, &name).await {
                Ok(()) => {
                    client
                        .event(
                            rs,
                            NORMAL,
                            "SuccessfulDelete",
                            &format!("Deleted pod: {name}"),
                        )
                        .await;
                    Ok(())
                }
                Err(e) => {
                    // The watch will not report this deletion.
                    expectations.deletion_observed(key, &key_of(&**p));
                    if is_not_found(&e) {
                        return Ok(());
                    }
                    let msg = error_message(&e);
                    client
                        .event(
                            rs,
                            WARNING,
                            "FailedDelete",
                            &format!("Error deleting: {msg}"),
                        )
                        .await;
                    Err(msg)
                }
            }
        }))
        .await;
        for (k, r) in keys.into_iter().zip(results) {
            match r {
                Ok(()) => {
                    out.deleted.insert(k);
                }
                Err(e) => {
                    if out.error.is_none() {
                        out.error = Some(e);
                    }
                }
            }
        }
    }
    out
}

/// Write `new` as the status of `rs` unless nothing changed (upstream
/// `updateReplicaSetStatus`): one retry after re-reading on failure.
pub async fn update_status(
    client: &dyn ReplicaSetClient,
    rs: &ReplicaSet,
    mut new: k8s_openapi::api::apps::v1::ReplicaSetStatus,
) -> Result<ReplicaSet, kube::Error> {
    if !status::status_changed(rs, &new) {
        return Ok(rs.clone());
    }
    new.observed_generation = rs.metadata.generation;
    let mut current = rs.clone();
    let mut attempt = 0;
    loop {
        current.status = Some(new.clone());
        match client.update_status(&current).await {
            Ok(updated) => return Ok(updated),
            Err(e) if attempt >= STATUS_UPDATE_RETRIES => return Err(e),
            Err(e) => {
                if !is_conflict(&e) {
                    debug!(rs = %rs.name_any(), "status update failed: {e}");
                }
                attempt += 1;
                match client
                    .get_replica_set(&rs.namespace().unwrap_or_default(), &rs.name_any())
                    .await?
                {
                    Some(fresh) => current = fresh,
                    None => return Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
