//! The StatefulSet controller (upstream kube-controller-manager's `statefulset`).
//!
//! Pods `<set>-<ordinal>` with exact names, `hostname` = pod name and `subdomain` =
//! `spec.serviceName`, the `statefulset.kubernetes.io/pod-name` and
//! `apps.kubernetes.io/pod-index` labels, and one PersistentVolumeClaim
//! `<claim>-<set>-<ordinal>` per `volumeClaimTemplates` entry, created before the pod
//! (binding is the volume controllers' job). `OrderedReady` creates the next ordinal
//! only once all lower ones are Running and Ready (and available for
//! `minReadySeconds`) and removes the highest first; `Parallel` acts on all at once
//! ([`plan`]). Each template is a ControllerRevision `<set>-<hash>`; pods carry their
//! revision's name in `controller-revision-hash`, and a `RollingUpdate` deletes the
//! highest-ordinal pod of an old revision at or above the partition so it is made
//! again from the update revision. Status: `replicas`, `readyReplicas`,
//! `availableReplicas`, `currentReplicas`, `updatedReplicas`, `currentRevision`,
//! `updateRevision`, `collisionCount`, `observedGeneration`.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::events::{self, Recorder};
use crate::history;
use crate::queue::WorkQueue;
use crate::workload::{
    self, Change, Claim, claim_pods, controller_of, controller_ref, key_of, selector_of, split_key,
};
use crate::{ControllerOptions, Error, is_not_found};
use plan::{Action, SetView, Slot};

/// The component name on Events.
pub const COMPONENT: &str = "statefulset-controller";

struct Ctx {
    client: Client,
    recorder: Recorder,
    sets: crate::informers::SharedStore<StatefulSet>,
    pods: crate::informers::SharedStore<Pod>,
    revisions: crate::informers::SharedStore<ControllerRevision>,
}

fn set_of(store: &Store<StatefulSet>, ns: &str, name: &str, uid: &str) -> Option<Arc<StatefulSet>> {
    store
        .get(&ObjectRef::new(name).within(ns))
        .filter(|s| s.metadata.uid.as_deref() == Some(uid))
}

fn owner_key(store: &Store<StatefulSet>, meta: &kube::api::ObjectMeta) -> Option<String> {
    let r = controller_of(meta).filter(|r| r.kind == "StatefulSet")?;
    let ns = meta.namespace.as_deref().unwrap_or_default();
    set_of(store, ns, &r.name, &r.uid).map(|s| key_of(&s.metadata))
}

fn on_pod(change: Change<'_, Pod>, sets: &Store<StatefulSet>, queue: &Arc<WorkQueue<String>>) {
    let pod = match change {
        Change::Applied { old, new } => {
            if let Some(o) = &old {
                if o.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                if controller_of(&o.metadata) != controller_of(&new.metadata)
                    && let Some(k) = owner_key(sets, &o.metadata)
                {
                    queue.add(k);
                }
            }
            new
        }
        Change::Deleted(p) => p,
        Change::Resynced => {
            for s in sets.state() {
                queue.add(key_of(&s.metadata));
            }
            return;
        }
    };
    if let Some(k) = owner_key(sets, &pod.metadata) {
        queue.add(k);
        return;
    }
    if controller_of(&pod.metadata).is_some() || pod.metadata.deletion_timestamp.is_some() {
        return;
    }
    // An orphan: the sets that would adopt it.
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let labels = workload::labels_of(&pod.metadata);
    for s in sets.state() {
        let name = s.metadata.name.as_deref().unwrap_or_default();
        if s.metadata.namespace.as_deref() == Some(ns)
            && plan::is_member(name, pod)
            && s.spec
                .as_ref()
                .and_then(|sp| selector_of(&sp.selector).ok())
                .is_some_and(|sel| !sel.is_empty() && sel.matches(&labels))
        {
            queue.add(key_of(&s.metadata));
        }
    }
}

/// Run the StatefulSet controller until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let queue = WorkQueue::<String>::new(opts.backoff);
    let q = Arc::clone(&queue);
    let (sets, set_task) = workload::spawn_cache::<StatefulSet, _>(
        &opts.informers,
        &client,
        shutdown.clone(),
        move |c: Change<'_, StatefulSet>| match c {
            Change::Applied { new, .. } => q.add(key_of(&new.metadata)),
            Change::Deleted(s) => q.add(key_of(&s.metadata)),
            Change::Resynced => {}
        },
    );
    let (q, s) = (Arc::clone(&queue), sets.clone());
    let (pods, pod_task) =
        workload::spawn_cache::<Pod, _>(&opts.informers, &client, shutdown.clone(), move |c| {
            on_pod(c, &s, &q)
        });
    let (q, s) = (Arc::clone(&queue), sets.clone());
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
            if let Some(k) = owner_key(&s, meta) {
                q.add(k);
            }
        },
    );
    let ready = async {
        let _ = tokio::join!(
            sets.wait_until_ready(),
            pods.wait_until_ready(),
            revisions.wait_until_ready()
        );
    };
    if workload::wait_ready(&shutdown, ready).await {
        info!("statefulset controller: started");
        let ctx = Arc::new(Ctx {
            recorder: Recorder::new(client.clone(), COMPONENT),
            client,
            sets,
            pods,
            revisions,
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
    for t in [set_task, pod_task, rev_task] {
        let _ = t.await;
    }
    info!("statefulset controller: stopped");
    Ok(())
}

impl Ctx {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(set) = self.sets.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        let Some(spec) = set.spec.as_ref() else {
            return Ok(None);
        };
        let selector = selector_of(&spec.selector)?;
        if selector.is_empty() {
            // Upstream refuses to act on a set that selects everything.
            return Ok(None);
        }
        let pods = self.claimed_pods(&set, &selector).await?;
        let (current, update, collision) = self.revisions_for(&set).await?;
        let now = Timestamp::now();
        let (current_name, update_name) = (current.name_any(), update.name_any());
        let view = SetView {
            set: &set,
            current_revision: &current_name,
            update_revision: &update_name,
            now,
        };
        let (slots, condemned) = plan::arrange(&view, &pods);
        let plan = plan::plan(&view, &slots, &condemned);
        let (mut counts, result) = {
            let existing: Vec<&Pod> = slots
                .iter()
                .filter_map(|s| match s {
                    Slot::Pod(p) => Some(p.as_ref()),
                    Slot::Missing { .. } => None,
                })
                .chain(condemned.iter().map(|p| p.as_ref()))
                .collect();
            let min_ready = spec.min_ready_seconds.unwrap_or(0);
            let counts = plan::count_status(&existing, min_ready, &current_name, &update_name, now);
            (
                counts,
                self.execute(&set, &current, &update, &pods, &plan).await,
            )
        };
        if result.as_ref().is_ok_and(|updated| *updated) {
            counts.current -= 1;
        }
        let history_result = self.truncate_history(&set, &pods, &current, &update).await;
        self.update_status(&set, counts, &current, &update, collision)
            .await?;
        result?;
        history_result?;
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        if min_ready > 0 && counts.available != plan::replicas(&set) {
            return Ok(Some(Duration::from_secs(
                u64::try_from(min_ready).unwrap_or(0),
            )));
        }
        Ok(None)
    }

    async fn claimed_pods(
        &self,
        set: &StatefulSet,
        selector: &api::selector::Selector,
    ) -> Result<Vec<Arc<Pod>>, Error> {
        let ns = set.namespace().unwrap_or_default();
        let name = set.name_any();
        let candidates: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
            .collect();
        let claim = Claim {
            owner: controller_ref(set),
            owner_deleting: set.metadata.deletion_timestamp.is_some(),
            selector,
            finalizers: &[],
        };
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &ns);
        let uid = set.metadata.uid.clone();
        let member_name = name.clone();
        claim_pods(
            &self.client,
            &claim,
            candidates,
            &move |p| plan::is_member(&member_name, p),
            || async move {
                let fresh = api.get(&name).await?;
                Ok(fresh.metadata.uid == uid && fresh.metadata.deletion_timestamp.is_none())
            },
        )
        .await
    }

    /// Upstream `getStatefulSetRevisions`: the current and update revisions (the
    /// latter created, or an equal older one renumbered) and the collision count.
    async fn revisions_for(
        &self,
        set: &StatefulSet,
    ) -> Result<(ControllerRevision, ControllerRevision, i32), Error> {
        let ns = set.namespace().unwrap_or_default();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &ns);
        let mut revisions: Vec<ControllerRevision> = self
            .revisions
            .state()
            .into_iter()
            .filter(|r| r.metadata.namespace.as_deref() == Some(ns.as_str()))
            .filter(|r| controller_of(&r.metadata).is_some_and(|o| o.uid == uid))
            .map(|r| (*r).clone())
            .collect();
        history::sort_revisions(&mut revisions);
        let mut collision = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let template = set
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let data = history::template_patch(&template);
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let candidate = history::new_revision(
            controller_ref(set),
            &ns,
            labels,
            set.metadata.annotations.clone(),
            data,
            history::next_revision(&revisions),
        );
        let equal: Vec<&ControllerRevision> = revisions
            .iter()
            .filter(|r| history::data_equal(r.data.as_ref(), candidate.data.as_ref()))
            .collect();
        let update = match (equal.last(), revisions.last()) {
            (Some(eq), Some(last)) if eq.metadata.name == last.metadata.name => (*eq).clone(),
            (Some(eq), _) => history::update_revision_number(&api, eq, candidate.revision).await?,
            (None, _) => {
                history::create_revision(&api, &set.name_any(), candidate, &mut collision).await?
            }
        };
        let current_name = set.status.as_ref().and_then(|s| s.current_revision.clone());
        let current = revisions
            .iter()
            .find(|r| r.metadata.name.is_some() && r.metadata.name == current_name)
            .cloned()
            .unwrap_or_else(|| update.clone());
        Ok((current, update, collision))
    }

    /// Carry out a plan. Returns whether a pod was deleted for a rolling update.
    async fn execute(
        &self,
        set: &StatefulSet,
        current: &ControllerRevision,
        update: &ControllerRevision,
        pods: &[Arc<Pod>],
        plan: &plan::Plan,
    ) -> Result<bool, Error> {
        let mut updated = false;
        if plan.burst {
            let (_, errors) = workload::slow_start_batch(plan.actions.len(), |i| {
                self.run_action(set, current, update, pods, &plan.actions[i])
            })
            .await;
            if !errors.is_empty() {
                let msgs: Vec<String> = errors.iter().map(ToString::to_string).collect();
                return Err(Error::Several(msgs.join("; ")));
            }
            updated = plan.actions.iter().any(|a| matches!(a, Action::Update(_)));
        } else {
            for a in &plan.actions {
                self.run_action(set, current, update, pods, a).await?;
                updated |= matches!(a, Action::Update(_));
            }
        }
        Ok(updated)
    }

    async fn run_action(
        &self,
        set: &StatefulSet,
        current: &ControllerRevision,
        update: &ControllerRevision,
        pods: &[Arc<Pod>],
        action: &Action,
    ) -> Result<(), Error> {
        let find = |name: &str| {
            pods.iter()
                .find(|p| p.metadata.name.as_deref() == Some(name))
        };
        match action {
            Action::Create { ordinal, revision } => {
                let rev = if *revision == current.name_any() {
                    current
                } else {
                    update
                };
                self.create_pod(set, rev, *ordinal).await
            }
            Action::Claims(n) => match find(n) {
                Some(pod) => self.create_claims(set, pod).await,
                None => Ok(()),
            },
            Action::FixIdentity(n) => match find(n) {
                Some(pod) => self.fix_identity(set, pod).await,
                None => Ok(()),
            },
            Action::Recreate(n) | Action::ScaleDown(n) | Action::Update(n) => match find(n) {
                Some(pod) => self.delete_pod(set, pod).await,
                None => Ok(()),
            },
        }
    }

    async fn create_claims(&self, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        let Some((_, ordinal)) = pod
            .metadata
            .name
            .as_deref()
            .and_then(plan::parent_and_ordinal)
        else {
            return Ok(());
        };
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &set.namespace().unwrap_or_default());
        let set_ref = events::object_ref(set);
        let pod_name = pod.name_any();
        let mut errors = Vec::new();
        for claim in plan::claims_for(set, ordinal) {
            let claim_name = claim.name_any();
            match api.get_opt(&claim_name).await {
                Ok(Some(existing)) => {
                    if existing.metadata.deletion_timestamp.is_some() {
                        errors.push(format!("pvc {claim_name} is being deleted"));
                    }
                }
                Ok(None) => match api.create(&PostParams::default(), &claim).await {
                    Ok(_) => {
                        let msg = format!(
                            "create Claim {claim_name} Pod {pod_name} in StatefulSet {} success",
                            set.name_any()
                        );
                        self.recorder
                            .record(&set_ref, events::NORMAL, "SuccessfulCreate", &msg)
                            .await;
                    }
                    Err(e) if history::is_already_exists(&e) => {}
                    Err(e) => {
                        let msg = format!(
                            "create Claim {claim_name} for Pod {pod_name} in StatefulSet {} failed error: {e}",
                            set.name_any()
                        );
                        self.recorder
                            .record(&set_ref, events::WARNING, "FailedCreate", &msg)
                            .await;
                        errors.push(format!("failed to create PVC {claim_name}: {e}"));
                    }
                },
                Err(e) => errors.push(e.to_string()),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Several(errors.join("; ")))
        }
    }

    async fn create_pod(
        &self,
        set: &StatefulSet,
        rev: &ControllerRevision,
        ordinal: i32,
    ) -> Result<(), Error> {
        let template = revision_template(set, rev);
        let pod = plan::new_pod(
            set,
            &template,
            controller_ref(set),
            ordinal,
            &rev.name_any(),
        );
        self.create_claims(set, &pod).await?;
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &set.namespace().unwrap_or_default());
        let name = pod.name_any();
        let set_ref = events::object_ref(set);
        match api.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                let msg = format!(
                    "create Pod {name} in StatefulSet {} successful",
                    set.name_any()
                );
                self.recorder
                    .record(&set_ref, events::NORMAL, "SuccessfulCreate", &msg)
                    .await;
                Ok(())
            }
            // The cache is behind; the next sync sees the pod.
            Err(e) if history::is_already_exists(&e) => Err(e.into()),
            Err(e) if workload::is_namespace_terminating(&e) => Ok(()),
            Err(e) => {
                let msg = format!(
                    "create Pod {name} in StatefulSet {} failed error: {e}",
                    set.name_any()
                );
                self.recorder
                    .record(&set_ref, events::WARNING, "FailedCreate", &msg)
                    .await;
                Err(e.into())
            }
        }
    }

    async fn delete_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &set.namespace().unwrap_or_default());
        let name = pod.name_any();
        let set_ref = events::object_ref(set);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                let msg = format!(
                    "delete Pod {name} in StatefulSet {} successful",
                    set.name_any()
                );
                self.recorder
                    .record(&set_ref, events::NORMAL, "SuccessfulDelete", &msg)
                    .await;
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => {
                let msg = format!(
                    "delete Pod {name} in StatefulSet {} failed error: {e}",
                    set.name_any()
                );
                self.recorder
                    .record(&set_ref, events::WARNING, "FailedDelete", &msg)
                    .await;
                Err(e.into())
            }
        }
    }

    async fn fix_identity(&self, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        let Some((_, ordinal)) = pod
            .metadata
            .name
            .as_deref()
            .and_then(plan::parent_and_ordinal)
        else {
            return Ok(());
        };
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &set.namespace().unwrap_or_default());
        let labels = plan::identity_labels(&set.name_any(), ordinal);
        let patch = json!({"metadata": {"labels": labels}});
        let name = pod.name_any();
        let set_ref = events::object_ref(set);
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => {
                let msg = format!(
                    "update Pod {name} in StatefulSet {} failed error: {e}",
                    set.name_any()
                );
                self.recorder
                    .record(&set_ref, events::WARNING, "FailedUpdate", &msg)
                    .await;
                Err(e.into())
            }
        }
    }

    /// Upstream `truncateHistory`: keep live revisions (current, update, used by a
    /// pod) and at most `revisionHistoryLimit` others.
    async fn truncate_history(
        &self,
        set: &StatefulSet,
        pods: &[Arc<Pod>],
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> Result<(), Error> {
        let ns = set.namespace().unwrap_or_default();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let mut revisions: Vec<ControllerRevision> = self
            .revisions
            .state()
            .into_iter()
            .filter(|r| r.metadata.namespace.as_deref() == Some(ns.as_str()))
            .filter(|r| controller_of(&r.metadata).is_some_and(|o| o.uid == uid))
            .map(|r| (*r).clone())
            .collect();
        history::sort_revisions(&mut revisions);
        let mut live: std::collections::HashSet<String> = pods
            .iter()
            .map(|p| plan::pod_revision(p).to_string())
            .collect();
        live.insert(current.name_any());
        live.insert(update.name_any());
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        let is_live = |r: &ControllerRevision| live.contains(&r.name_any());
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &ns);
        for r in history::revisions_to_delete(&revisions, &is_live, limit, false) {
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
        set: &StatefulSet,
        counts: plan::Counts,
        current: &ControllerRevision,
        update: &ControllerRevision,
        collision: i32,
    ) -> Result<(), Error> {
        let mut current_replicas = counts.current;
        let mut current_revision = current.name_any();
        let rolling = set
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|s| s.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate";
        // Upstream `completeRollingUpdate`.
        if rolling && counts.updated == counts.replicas && counts.ready == counts.replicas {
            current_replicas = counts.updated;
            current_revision = update.name_any();
        }
        let st = set.status.clone().unwrap_or_default();
        let opt = |v: i32| (v != 0).then_some(v);
        let unchanged = st.observed_generation == set.metadata.generation
            && st.replicas == counts.replicas
            && st.ready_replicas == opt(counts.ready)
            && st.available_replicas == Some(counts.available)
            && st.current_replicas == opt(current_replicas)
            && st.updated_replicas == opt(counts.updated)
            && st.current_revision.as_deref() == Some(current_revision.as_str())
            && st.update_revision.as_deref() == Some(update.name_any().as_str())
            && st.collision_count == Some(collision);
        if unchanged {
            return Ok(());
        }
        let zero_as_null = |v: i32| if v == 0 { Value::Null } else { json!(v) };
        let status = json!({"status": {
            "observedGeneration": set.metadata.generation,
            "replicas": counts.replicas,
            "readyReplicas": zero_as_null(counts.ready),
            "availableReplicas": counts.available,
            "currentReplicas": zero_as_null(current_replicas),
            "updatedReplicas": zero_as_null(counts.updated),
            "currentRevision": current_revision,
            "updateRevision": update.name_any(),
            "collisionCount": collision,
        }});
        let api: Api<StatefulSet> =
            Api::namespaced(self.client.clone(), &set.namespace().unwrap_or_default());
        match api
            .patch_status(
                &set.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The template a revision holds, falling back to the set's own.
pub fn revision_template(
    set: &StatefulSet,
    rev: &ControllerRevision,
) -> k8s_openapi::api::core::v1::PodTemplateSpec {
    history::template_of(rev).unwrap_or_else(|| {
        set.spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_template_prefers_revision_data() {
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {}, "serviceName": "s",
                "template": {"metadata": {"labels": {"v": "set"}}, "spec": {"containers": []}}}
        }))
        .expect("set");
        let old: k8s_openapi::api::core::v1::PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"v": "old"}}, "spec": {"containers": []}
        }))
        .expect("template");
        let rev = ControllerRevision {
            data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
                history::template_patch(&old),
            )),
            ..Default::default()
        };
        assert_eq!(revision_template(&set, &rev), old);
        assert_eq!(
            revision_template(&set, &ControllerRevision::default()),
            set.spec
                .as_ref()
                .map(|s| s.template.clone())
                .unwrap_or_default()
        );
    }
}
