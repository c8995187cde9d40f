//! The DaemonSet controller (upstream kube-controller-manager's `daemonset`).
//!
//! One pod per eligible node ([`eligibility`]): pods are created unbound, named
//! `<ds>-<5 chars>` through `generateName`, with the DaemonSet as controller owner,
//! the daemon tolerations, the `controller-revision-hash` (and, when the DaemonSet
//! carries `deprecated.daemonset.template.generation`, `pod-template-generation`)
//! labels, and required node affinity `metadata.name In [<node>]` so that the
//! scheduler binds each to its node. Pods on nodes that are no longer eligible are
//! deleted, failed pods are replaced with a per-node backoff, and each template
//! change becomes a ControllerRevision `<ds>-<hash>` with a growing revision number.
//! `RollingUpdate` replaces old pods within `maxUnavailable` (or surges within
//! `maxSurge`); `OnDelete` waits for users to delete them ([`plan`]).
//!
//! Caches of DaemonSets, pods, nodes and ControllerRevisions feed a work queue of
//! DaemonSet keys; creations and deletions wait for the caches to show them
//! (expectations) before the DaemonSet is managed again.

pub mod eligibility;
pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::events::{self, Recorder};
use crate::history::{self, POD_REVISION_LABEL};
use crate::queue::WorkQueue;
use crate::workload::{
    self, Change, Claim, Expectations, claim_pods, controller_of, controller_ref, key_of,
    selector_of, split_key,
};
use crate::{ControllerOptions, Error, is_not_found};
use eligibility::{Eligibility, add_daemon_tolerations, node_should_run, pin_to_node, target_node};
use plan::{NodePods, TEMPLATE_GENERATION_LABEL, count_status, plan_manage, plan_rolling_update};

/// The component name on Events.
pub const COMPONENT: &str = "daemonset-controller";
/// The annotation with the template generation (set by the API server upstream).
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// Upstream `BurstReplicas`: most creations or deletions in one sync.
const BURST_REPLICAS: usize = 250;
/// Backoff of replacing failed pods on a node (upstream 1 s doubling to 15 min).
const FAILED_BACKOFF_START: Duration = Duration::from_secs(1);
const FAILED_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// Per-node backoff of deleting failed daemon pods (upstream `flowcontrol.Backoff`).
#[derive(Debug, Default)]
struct FailedBackoff {
    entries: HashMap<String, (Duration, Instant)>,
}

impl FailedBackoff {
    /// `Some(delay)` while the key is backing off.
    fn in_backoff(&self, key: &str, now: Instant) -> Option<Duration> {
        let (d, at) = self.entries.get(key)?;
        (now.duration_since(*at) < *d).then_some(*d)
    }

    fn next(&mut self, key: &str, now: Instant) {
        if self.entries.len() > 10_000 {
            self.entries
                .retain(|_, (_, at)| now.duration_since(*at) < 2 * FAILED_BACKOFF_MAX);
        }
        let e = self
            .entries
            .entry(key.into())
            .or_insert((Duration::ZERO, now));
        let expired = now.duration_since(e.1) > 2 * FAILED_BACKOFF_MAX;
        e.0 = if e.0.is_zero() || expired {
            FAILED_BACKOFF_START
        } else {
            (e.0 * 2).min(FAILED_BACKOFF_MAX)
        };
        e.1 = now;
    }
}

struct Ctx {
    client: Client,
    recorder: Recorder,
    expectations: Arc<Expectations>,
    daemonsets: crate::informers::SharedStore<DaemonSet>,
    pods: crate::informers::SharedStore<Pod>,
    nodes: crate::informers::SharedStore<Node>,
    revisions: crate::informers::SharedStore<ControllerRevision>,
    failed: Mutex<FailedBackoff>,
}

/// The pod spec a DaemonSet creates: its template's with the daemon tolerations.
pub fn daemon_pod_spec(ds: &DaemonSet) -> PodSpec {
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    spec
}

fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.annotations()
        .get(TEMPLATE_GENERATION_ANNOTATION)
        .and_then(|g| g.parse().ok())
}

fn ds_of(
    store: &Store<DaemonSet>,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Option<Arc<DaemonSet>> {
    store
        .get(&ObjectRef::new(name).within(namespace))
        .filter(|d| d.metadata.uid.as_deref() == Some(uid))
}

fn owner_key(store: &Store<DaemonSet>, pod_meta: &kube::api::ObjectMeta) -> Option<String> {
    let r = controller_of(pod_meta)?;
    if r.kind != "DaemonSet" {
        return None;
    }
    let ns = pod_meta.namespace.as_deref().unwrap_or_default();
    ds_of(store, ns, &r.name, &r.uid).map(|d| key_of(&d.metadata))
}

/// DaemonSets in the pod's namespace whose selector matches it (orphan adoption).
fn matching_daemonsets(store: &Store<DaemonSet>, pod: &Pod) -> Vec<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let labels = workload::labels_of(&pod.metadata);
    store
        .state()
        .into_iter()
        .filter(|d| d.metadata.namespace.as_deref() == Some(ns))
        .filter(|d| {
            d.spec
                .as_ref()
                .and_then(|s| selector_of(&s.selector).ok())
                .is_some_and(|sel| !sel.is_empty() && sel.matches(&labels))
        })
        .map(|d| key_of(&d.metadata))
        .collect()
}

fn on_pod(
    change: Change<'_, Pod>,
    dss: &Store<DaemonSet>,
    queue: &Arc<WorkQueue<String>>,
    exp: &Expectations,
) {
    match change {
        Change::Applied { old, new } => {
            let was_terminating = old
                .as_ref()
                .is_some_and(|o| o.metadata.deletion_timestamp.is_some());
            if let Some(o) = &old
                && o.metadata.resource_version == new.metadata.resource_version
            {
                return;
            }
            let cur_key = owner_key(dss, &new.metadata);
            if let Some(o) = &old
                && controller_of(&o.metadata) != controller_of(&new.metadata)
                && let Some(k) = owner_key(dss, &o.metadata)
            {
                queue.add(k);
            }
            if let Some(k) = cur_key {
                if new.metadata.deletion_timestamp.is_some() {
                    if !was_terminating {
                        exp.deletion_observed(&k);
                    }
                } else if old.is_none() {
                    exp.creation_observed(&k);
                }
                if let Some(ds) = dss.get(&ObjectRef::new(split_key(&k).1).within(split_key(&k).0))
                {
                    let min_ready = ds
                        .spec
                        .as_ref()
                        .and_then(|s| s.min_ready_seconds)
                        .unwrap_or(0);
                    let became_ready = workload::is_pod_ready(new)
                        && !old.as_ref().is_some_and(|o| workload::is_pod_ready(o));
                    if min_ready > 0 && became_ready {
                        queue.add_after(
                            k.clone(),
                            Duration::from_secs(u64::try_from(min_ready).unwrap_or(0) + 1),
                        );
                    }
                }
                queue.add(k);
                return;
            }
            if new.metadata.deletion_timestamp.is_some() {
                return;
            }
            let labels_changed = old.as_ref().is_none_or(|o| {
                o.metadata.labels != new.metadata.labels || controller_of(&o.metadata).is_some()
            });
            if labels_changed {
                for k in matching_daemonsets(dss, new) {
                    queue.add(k);
                }
            }
        }
        Change::Deleted(pod) => {
            if let Some(k) = owner_key(dss, &pod.metadata) {
                if pod.metadata.deletion_timestamp.is_none() {
                    exp.deletion_observed(&k);
                }
                queue.add(k);
            }
        }
        Change::Resynced => enqueue_all(dss, queue),
    }
}

fn enqueue_all(dss: &Store<DaemonSet>, queue: &WorkQueue<String>) {
    for d in dss.state() {
        queue.add(key_of(&d.metadata));
    }
}

/// Whether a node update can change any DaemonSet's decision: labels, taints,
/// `spec.unschedulable`, or the type/status of its conditions.
fn node_changed(old: &Node, new: &Node) -> bool {
    let conds = |n: &Node| -> Vec<(String, String)> {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|c| {
                c.iter()
                    .map(|c| (c.type_.clone(), c.status.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let taints = |n: &Node| n.spec.as_ref().and_then(|s| s.taints.clone());
    let unsched = |n: &Node| n.spec.as_ref().and_then(|s| s.unschedulable);
    old.metadata.labels != new.metadata.labels
        || taints(old) != taints(new)
        || unsched(old) != unsched(new)
        || conds(old) != conds(new)
}

fn on_node(change: Change<'_, Node>, dss: &Store<DaemonSet>, queue: &Arc<WorkQueue<String>>) {
    match change {
        Change::Applied {
            old: Some(old),
            new,
        } => {
            if !node_changed(&old, new) {
                return;
            }
            for ds in dss.state() {
                let spec = daemon_pod_spec(&ds);
                if node_should_run(&spec, &old) != node_should_run(&spec, new) {
                    queue.add(key_of(&ds.metadata));
                }
            }
        }
        Change::Applied { old: None, new } => {
            for ds in dss.state() {
                if node_should_run(&daemon_pod_spec(&ds), new).should_run {
                    queue.add(key_of(&ds.metadata));
                }
            }
        }
        Change::Deleted(_) | Change::Resynced => enqueue_all(dss, queue),
    }
}

/// Run the DaemonSet controller until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let queue = WorkQueue::<String>::new(opts.backoff);
    let expectations = Arc::new(Expectations::default());
    let q = Arc::clone(&queue);
    let (daemonsets, ds_task) = workload::spawn_cache::<DaemonSet, _>(
        &opts.informers,
        &client,
        shutdown.clone(),
        move |c: Change<'_, DaemonSet>| match c {
            Change::Applied { new, .. } => q.add(key_of(&new.metadata)),
            Change::Deleted(d) => q.add(key_of(&d.metadata)),
            Change::Resynced => {}
        },
    );
    let (q, d, e) = (
        Arc::clone(&queue),
        daemonsets.clone(),
        Arc::clone(&expectations),
    );
    let (pods, pod_task) =
        workload::spawn_cache::<Pod, _>(&opts.informers, &client, shutdown.clone(), move |c| {
            on_pod(c, &d, &q, &e)
        });
    let (q, d) = (Arc::clone(&queue), daemonsets.clone());
    let (nodes, node_task) =
        workload::spawn_cache::<Node, _>(&opts.informers, &client, shutdown.clone(), move |c| {
            on_node(c, &d, &q)
        });
    let (q, d) = (Arc::clone(&queue), daemonsets.clone());
    let (revisions, rev_task) = workload::spawn_cache::<ControllerRevision, _>(
        &opts.informers,
        &client,
        shutdown.clone(),
        move |c: Change<'_, ControllerRevision>| {
            let meta = match &c {
                Change::Applied { new, .. } => &new.metadata,
                Change::Deleted(r) => &r.metadata,
                Change::Resynced => return,
            };
            if let Some(r) = controller_of(meta).filter(|r| r.kind == "DaemonSet") {
                let ns = meta.namespace.as_deref().unwrap_or_default();
                if ds_of(&d, ns, &r.name, &r.uid).is_some() {
                    q.add(format!("{ns}/{}", r.name));
                }
            }
        },
    );
    let ready = async {
        let _ = tokio::join!(
            daemonsets.wait_until_ready(),
            pods.wait_until_ready(),
            nodes.wait_until_ready(),
            revisions.wait_until_ready()
        );
    };
    if workload::wait_ready(&shutdown, ready).await {
        info!("daemonset controller: started");
        let ctx = Arc::new(Ctx {
            recorder: Recorder::new(client.clone(), COMPONENT),
            client,
            expectations,
            daemonsets,
            pods,
            nodes,
            revisions,
            failed: Mutex::new(FailedBackoff::default()),
        });
        let q = Arc::clone(&queue);
        let stop = shutdown.clone();
        let stopper = tokio::spawn(async move {
            stop.cancelled().await;
            q.shut_down();
        });
        workload::run_workers(queue, opts.workload_workers, move |key: String| {
            let ctx = Arc::clone(&ctx);
            async move { ctx.sync(&key).await }
        })
        .await;
        let _ = stopper.await;
    }
    for t in [ds_task, pod_task, node_task, rev_task] {
        let _ = t.await;
    }
    info!("daemonset controller: stopped");
    Ok(())
}

impl Ctx {
    fn failed_backoff(&self) -> std::sync::MutexGuard<'_, FailedBackoff> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(ds) = self.daemonsets.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.delete(key);
            return Ok(None);
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let Some(spec) = ds.spec.as_ref() else {
            return Ok(None);
        };
        let selector = selector_of(&spec.selector)?;
        if selector.is_empty() {
            self.recorder
                .record(
                    &events::object_ref(ds.as_ref()),
                    events::WARNING,
                    "SelectingAll",
                    "This daemon set is selecting all pods. A non-empty selector is required.",
                )
                .await;
            return Ok(None);
        }
        let (cur, old) = self.construct_history(&ds).await?;
        let hash = cur
            .labels()
            .get(POD_REVISION_LABEL)
            .cloned()
            .unwrap_or_default();
        let generation = template_generation(&ds);
        let pod_spec = daemon_pod_spec(&ds);
        let mut nodes: Vec<Arc<Node>> = self.nodes.state();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let elig: Vec<(String, Eligibility)> = nodes
            .iter()
            .map(|n| (n.name_any(), node_should_run(&pod_spec, n)))
            .collect();
        let node_pods = self.node_pods(&ds, &selector).await?;
        let min_ready = spec.min_ready_seconds.unwrap_or(0);

        if !self.expectations.satisfied(key) {
            self.update_status(&ds, &elig, &node_pods, &hash, generation, false)
                .await?;
            return Ok(None);
        }

        let now = Timestamp::now();
        let strategy = spec.update_strategy.as_ref();
        let rolling = strategy
            .and_then(|s| s.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate";
        let ru = strategy.and_then(|s| s.rolling_update.as_ref());
        let desired =
            i32::try_from(elig.iter().filter(|(_, e)| e.should_run).count()).unwrap_or(i32::MAX);
        let (max_surge, max_unavailable) = if rolling {
            plan::update_limits(
                ru.and_then(|r| r.max_surge.as_ref()),
                ru.and_then(|r| r.max_unavailable.as_ref()),
                desired,
            )
            .map_err(|e| Error::Several(e.to_string()))?
        } else {
            (0, 1)
        };
        // Upstream `AllowsSurge` scales maxSurge against one node.
        let surge = rolling
            && ru
                .and_then(|r| r.max_surge.as_ref())
                .and_then(|v| plan::scaled_value(v, 1, true).ok())
                .is_some_and(|v| v > 0);

        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let ds_generation = ds.metadata.generation.unwrap_or(0);
        let mut retry_after: Option<Duration> = None;
        let mut failed_events = Vec::new();
        let manage = {
            let mut backoff = self.failed_backoff();
            let instant = Instant::now();
            plan_manage(
                &elig,
                &node_pods,
                surge,
                &hash,
                min_ready,
                now,
                &mut |node, pod| {
                    let bkey = format!("{uid}/{ds_generation}/{node}");
                    if let Some(d) = backoff.in_backoff(&bkey, instant) {
                        retry_after = Some(retry_after.map_or(d, |r: Duration| r.min(d)));
                        return false;
                    }
                    backoff.next(&bkey, instant);
                    failed_events.push(format!(
                        "Found failed daemon pod {}/{} on node {node}, will try to kill it",
                        pod.metadata.namespace.as_deref().unwrap_or_default(),
                        pod.metadata.name.as_deref().unwrap_or_default()
                    ));
                    true
                },
            )
        };
        let ds_ref = events::object_ref(ds.as_ref());
        for msg in failed_events {
            self.recorder
                .record(&ds_ref, events::WARNING, "FailedDaemonPod", &msg)
                .await;
        }
        let mut errors = Vec::new();
        if let Err(e) = self
            .sync_nodes(
                &ds,
                key,
                &manage.delete,
                &manage.create_on,
                &hash,
                generation,
            )
            .await
        {
            errors.push(e.to_string());
        }
        if rolling && errors.is_empty() && self.expectations.satisfied(key) {
            let should_run = |n: &str| elig.iter().any(|(name, e)| name == n && e.should_run);
            let update = plan_rolling_update(
                &node_pods,
                &should_run,
                desired,
                max_surge,
                max_unavailable,
                &hash,
                generation,
                min_ready,
                now,
            );
            if let Err(e) = self
                .sync_nodes(
                    &ds,
                    key,
                    &update.delete,
                    &update.create_on,
                    &hash,
                    generation,
                )
                .await
            {
                errors.push(e.to_string());
            }
        }
        if let Err(e) = self.cleanup_history(&ds, old, &node_pods).await {
            errors.push(e.to_string());
        }
        let counts = self
            .update_status(&ds, &elig, &node_pods, &hash, generation, true)
            .await?;
        if !errors.is_empty() {
            return Err(Error::Several(errors.join("; ")));
        }
        if min_ready > 0 && counts.ready != counts.available {
            let d = Duration::from_secs(u64::try_from(min_ready).unwrap_or(0));
            retry_after = Some(retry_after.map_or(d, |r| r.min(d)));
        }
        Ok(retry_after)
    }

    /// Claimed pods grouped by target node; terminal pods being deleted are left out.
    async fn node_pods(
        &self,
        ds: &DaemonSet,
        selector: &api::selector::Selector,
    ) -> Result<NodePods, Error> {
        let ns = ds.namespace().unwrap_or_default();
        let candidates: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
            .collect();
        let claim = Claim {
            owner: controller_ref(ds),
            owner_deleting: ds.metadata.deletion_timestamp.is_some(),
            selector,
            finalizers: &[],
        };
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &ns);
        let name = ds.name_any();
        let uid = ds.metadata.uid.clone();
        let pods = claim_pods(&self.client, &claim, candidates, &|_| true, || async move {
            let fresh = api.get(&name).await?;
            Ok(fresh.metadata.uid == uid && fresh.metadata.deletion_timestamp.is_none())
        })
        .await?;
        let mut by_node = NodePods::new();
        for pod in pods {
            if matches!(workload::phase(&pod), "Succeeded" | "Failed")
                && workload::is_terminating(&pod)
            {
                continue;
            }
            let Some(node) = pod.spec.as_ref().and_then(target_node) else {
                debug!(pod = %pod.name_any(), "daemon pod without a target node");
                continue;
            };
            by_node.entry(node).or_default().push(pod);
        }
        Ok(by_node)
    }

    /// Create pods on `create_on` and delete `delete`, with expectations, slow-start
    /// batches and events (upstream `syncNodes`).
    async fn sync_nodes(
        &self,
        ds: &DaemonSet,
        key: &str,
        delete: &[String],
        create_on: &[String],
        hash: &str,
        generation: Option<i64>,
    ) -> Result<(), Error> {
        let creates = create_on.len().min(BURST_REPLICAS);
        let deletes = delete.len().min(BURST_REPLICAS);
        self.expectations.set(key, creates, deletes);
        if creates == 0 && deletes == 0 {
            return Ok(());
        }
        let ns = ds.namespace().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let ds_ref = events::object_ref(ds);
        let template = pod_template(ds, hash, generation);
        let owner = controller_ref(ds);
        let name = ds.name_any();
        let (ok, errors) = workload::slow_start_batch(creates, |i| {
            let mut pod = workload::pod_from_template(&template, &name, owner.clone());
            if let Some(spec) = pod.spec.as_mut() {
                spec.affinity = Some(pin_to_node(spec.affinity.take(), &create_on[i]));
            }
            let (pods, ds_ref) = (&pods, &ds_ref);
            async move {
                match pods.create(&PostParams::default(), &pod).await {
                    Ok(p) => {
                        self.recorder
                            .record(
                                ds_ref,
                                events::NORMAL,
                                "SuccessfulCreate",
                                &format!("Created pod: {}", p.name_any()),
                            )
                            .await;
                        Ok(())
                    }
                    Err(e) => {
                        self.expectations.creation_observed(key);
                        if workload::is_namespace_terminating(&e) {
                            return Ok(());
                        }
                        self.recorder
                            .record(
                                ds_ref,
                                events::WARNING,
                                "FailedCreate",
                                &format!("Error creating: {e}"),
                            )
                            .await;
                        Err(e)
                    }
                }
            }
        })
        .await;
        // Creations never attempted are not expected.
        for _ in (ok + errors.len())..creates {
            self.expectations.creation_observed(key);
        }
        let mut messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let deleted = futures::future::join_all(delete.iter().take(deletes).map(|pod_name| {
            let (pods, ds_ref) = (&pods, &ds_ref);
            async move {
                match pods.delete(pod_name, &DeleteParams::default()).await {
                    Ok(_) => {
                        self.recorder
                            .record(
                                ds_ref,
                                events::NORMAL,
                                "SuccessfulDelete",
                                &format!("Deleted pod: {pod_name}"),
                            )
                            .await;
                        Ok(())
                    }
                    Err(e) => {
                        self.expectations.deletion_observed(key);
                        if is_not_found(&e) {
                            return Ok(());
                        }
                        self.recorder
                            .record(
                                ds_ref,
                                events::WARNING,
                                "FailedDelete",
                                &format!("Error deleting: {e}"),
                            )
                            .await;
                        Err(e)
                    }
                }
            }
        }))
        .await;
        messages.extend(
            deleted
                .into_iter()
                .filter_map(Result::err)
                .map(|e| e.to_string()),
        );
        if messages.is_empty() {
            Ok(())
        } else {
            Err(Error::Several(messages.join("; ")))
        }
    }

    /// Upstream `constructHistory`: the revision of the current template (created or
    /// renumbered as needed) and the old ones.
    async fn construct_history(
        &self,
        ds: &DaemonSet,
    ) -> Result<(ControllerRevision, Vec<ControllerRevision>), Error> {
        let ns = ds.namespace().unwrap_or_default();
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &ns);
        let template = ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let data = history::template_patch(&template);
        let mut owned: Vec<ControllerRevision> = self
            .revisions
            .state()
            .into_iter()
            .filter(|r| r.metadata.namespace.as_deref() == Some(ns.as_str()))
            .filter(|r| controller_of(&r.metadata).is_some_and(|o| o.uid == uid))
            .map(|r| (*r).clone())
            .collect();
        for r in &mut owned {
            if !r.labels().contains_key(POD_REVISION_LABEL) {
                let name = r.name_any();
                let patch = json!({"metadata": {"labels": {POD_REVISION_LABEL: name}}});
                *r = api
                    .patch(
                        &r.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
            }
        }
        let wanted = Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
            data.clone(),
        ));
        let (mut current, old): (Vec<_>, Vec<_>) = owned
            .into_iter()
            .partition(|r| history::data_equal(r.data.as_ref(), wanted.as_ref()));
        let next = history::next_revision(&old);
        let cur = if current.is_empty() {
            self.snapshot(ds, &api, data, next).await?
        } else {
            current.sort_by_key(|r| r.revision);
            let keep = current.pop().unwrap_or_default();
            for dup in current {
                self.dedup(ds, &api, &dup, &keep).await?;
            }
            if keep.revision < next {
                history::update_revision_number(&api, &keep, next).await?
            } else {
                keep
            }
        };
        Ok((cur, old))
    }

    /// Create the revision of the current template (upstream `snapshot`).
    async fn snapshot(
        &self,
        ds: &DaemonSet,
        api: &Api<ControllerRevision>,
        data: Value,
        number: i64,
    ) -> Result<ControllerRevision, Error> {
        let spec = ds.spec.as_ref();
        let template = spec.map(|s| s.template.clone()).unwrap_or_default();
        let collision = ds.status.as_ref().and_then(|s| s.collision_count);
        let hash = history::hash_template(&template, collision);
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(POD_REVISION_LABEL.into(), hash.clone());
        let mut rev = history::new_revision(
            controller_ref(ds),
            &ds.namespace().unwrap_or_default(),
            labels,
            ds.metadata.annotations.clone(),
            data,
            number,
        );
        let name = history::revision_name(&ds.name_any(), &hash);
        rev.metadata.name = Some(name.clone());
        match api.create(&PostParams::default(), &rev).await {
            Ok(r) => Ok(r),
            Err(e) if history::is_already_exists(&e) => {
                let existing = api.get(&name).await?;
                let ours = controller_of(&existing.metadata)
                    .is_some_and(|o| Some(&o.uid) == ds.metadata.uid.as_ref());
                if ours && history::data_equal(existing.data.as_ref(), rev.data.as_ref()) {
                    return Ok(existing);
                }
                // A hash collision: count it so the next name differs.
                let count = collision.unwrap_or(0).saturating_add(1);
                let dss: Api<DaemonSet> =
                    Api::namespaced(self.client.clone(), &ds.namespace().unwrap_or_default());
                dss.patch_status(
                    &ds.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": {"collisionCount": count}})),
                )
                .await?;
                Err(Error::Conflict(format!(
                    "found a stale DaemonSet revision {name}: hash collision, collisionCount is now {count}"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Move pods of a duplicate current revision to the kept one, then delete it.
    async fn dedup(
        &self,
        ds: &DaemonSet,
        api: &Api<ControllerRevision>,
        dup: &ControllerRevision,
        keep: &ControllerRevision,
    ) -> Result<(), Error> {
        let ns = ds.namespace().unwrap_or_default();
        let dup_hash = dup
            .labels()
            .get(POD_REVISION_LABEL)
            .cloned()
            .unwrap_or_default();
        let keep_hash = keep
            .labels()
            .get(POD_REVISION_LABEL)
            .cloned()
            .unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        for pod in self.pods.state() {
            if pod.metadata.namespace.as_deref() == Some(ns.as_str())
                && pod.labels().get(POD_REVISION_LABEL) == Some(&dup_hash)
                && controller_of(&pod.metadata)
                    .is_some_and(|o| Some(&o.uid) == ds.metadata.uid.as_ref())
            {
                let patch = json!({"metadata": {"labels": {POD_REVISION_LABEL: keep_hash}}});
                match pods
                    .patch(
                        &pod.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        match api.delete(&dup.name_any(), &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Delete old revisions beyond `revisionHistoryLimit` that no pod uses.
    async fn cleanup_history(
        &self,
        ds: &DaemonSet,
        mut old: Vec<ControllerRevision>,
        node_pods: &NodePods,
    ) -> Result<(), Error> {
        let limit = ds
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        let live: std::collections::HashSet<String> = node_pods
            .values()
            .flatten()
            .filter_map(|p| p.labels().get(POD_REVISION_LABEL).cloned())
            .collect();
        history::sort_revisions(&mut old);
        let is_live = |r: &ControllerRevision| {
            r.labels()
                .get(POD_REVISION_LABEL)
                .is_some_and(|h| live.contains(h))
        };
        let api: Api<ControllerRevision> =
            Api::namespaced(self.client.clone(), &ds.namespace().unwrap_or_default());
        for r in history::revisions_to_delete(&old, &is_live, limit, true) {
            match api.delete(&r.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn update_status(
        &self,
        ds: &DaemonSet,
        elig: &[(String, Eligibility)],
        node_pods: &NodePods,
        hash: &str,
        generation: Option<i64>,
        observed: bool,
    ) -> Result<plan::Counts, Error> {
        let min_ready = ds
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let c = count_status(
            elig,
            node_pods,
            hash,
            generation,
            min_ready,
            Timestamp::now(),
        );
        let st = ds.status.clone().unwrap_or_default();
        let opt = |v: i32| (v != 0).then_some(v);
        let gen_now = ds.metadata.generation;
        let observed_generation = if observed {
            gen_now
        } else {
            st.observed_generation
        };
        let unchanged = st.desired_number_scheduled == c.desired
            && st.current_number_scheduled == c.current
            && st.number_misscheduled == c.misscheduled
            && st.number_ready == c.ready
            && st.number_available == opt(c.available)
            && st.number_unavailable == opt(c.desired - c.available)
            && st.updated_number_scheduled == opt(c.updated)
            && st.observed_generation == observed_generation;
        if unchanged {
            return Ok(c);
        }
        let zero_as_null = |v: i32| if v == 0 { Value::Null } else { json!(v) };
        let mut status = json!({
            "desiredNumberScheduled": c.desired,
            "currentNumberScheduled": c.current,
            "numberMisscheduled": c.misscheduled,
            "numberReady": c.ready,
            "numberAvailable": zero_as_null(c.available),
            "numberUnavailable": zero_as_null(c.desired - c.available),
            "updatedNumberScheduled": zero_as_null(c.updated),
        });
        if let Some(g) = observed_generation {
            status["observedGeneration"] = json!(g);
        }
        let api: Api<DaemonSet> =
            Api::namespaced(self.client.clone(), &ds.namespace().unwrap_or_default());
        match api
            .patch_status(
                &ds.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": status })),
            )
            .await
        {
            Ok(_) => Ok(c),
            Err(e) if is_not_found(&e) => Ok(c),
            Err(e) => Err(e.into()),
        }
    }
}

/// The pod template a DaemonSet creates from: its template plus the daemon
/// tolerations and the revision labels (upstream `CreatePodTemplate`).
pub fn pod_template(ds: &DaemonSet, hash: &str, generation: Option<i64>) -> PodTemplateSpec {
    let mut t = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    t.spec = Some(daemon_pod_spec(ds));
    let labels: &mut BTreeMap<String, String> = t
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    if let Some(g) = generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    if !hash.is_empty() {
        labels.insert(POD_REVISION_LABEL.into(), hash.into());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_backoff_doubles_and_caps() {
        let mut b = FailedBackoff::default();
        let t0 = Instant::now();
        assert_eq!(b.in_backoff("k", t0), None);
        b.next("k", t0);
        assert_eq!(b.in_backoff("k", t0), Some(Duration::from_secs(1)));
        assert_eq!(b.in_backoff("k", t0 + Duration::from_secs(2)), None);
        b.next("k", t0 + Duration::from_secs(2));
        assert_eq!(
            b.in_backoff("k", t0 + Duration::from_secs(3)),
            Some(Duration::from_secs(2))
        );
        for i in 0..20 {
            b.next("k", t0 + Duration::from_secs(10 + i));
        }
        assert_eq!(b.entries.get("k").map(|e| e.0), Some(FAILED_BACKOFF_MAX));
    }

    #[test]
    fn node_change_filter() {
        let n = |v: serde_json::Value| -> Node { serde_json::from_value(v).expect("node") };
        let base = n(
            serde_json::json!({"metadata": {"name": "a", "labels": {"x": "1"}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-01-01T00:00:00Z"}]}}),
        );
        let heartbeat = n(
            serde_json::json!({"metadata": {"name": "a", "labels": {"x": "1"}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-01-01T00:01:00Z"}]}}),
        );
        let relabeled = n(serde_json::json!({"metadata": {"name": "a", "labels": {"x": "2"}}}));
        let tainted = n(
            serde_json::json!({"metadata": {"name": "a", "labels": {"x": "1"}},
            "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        assert!(!node_changed(&base, &heartbeat));
        assert!(node_changed(&base, &relabeled));
        assert!(node_changed(&base, &tainted));
    }

    #[test]
    fn template_gets_labels_and_tolerations() {
        let ds: DaemonSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "d", "annotations": {TEMPLATE_GENERATION_ANNOTATION: "4"}},
            "spec": {"selector": {"matchLabels": {"app": "d"}},
                "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
        }))
        .expect("ds");
        let t = pod_template(&ds, "abc", template_generation(&ds));
        let labels = t.metadata.and_then(|m| m.labels).unwrap_or_default();
        assert_eq!(
            labels.get(POD_REVISION_LABEL).map(String::as_str),
            Some("abc")
        );
        assert_eq!(
            labels.get(TEMPLATE_GENERATION_LABEL).map(String::as_str),
            Some("4")
        );
        assert_eq!(labels.get("app").map(String::as_str), Some("d"));
        assert_eq!(t.spec.and_then(|s| s.tolerations).map(|t| t.len()), Some(6));
    }
}
