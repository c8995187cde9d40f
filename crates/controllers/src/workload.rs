//! Pieces shared by the workload controllers (DaemonSet, StatefulSet, Job, CronJob):
//! watch-fed caches that call a handler on every change, the worker pool over a
//! [`WorkQueue`], upstream's creation/deletion expectations, pod helpers
//! (`GetPodFromTemplate`, readiness and availability, the active-pod order used when
//! choosing pods to delete), adoption and release of pods by selector
//! (`PodControllerRefManager.ClaimPods`), and slow-start batches.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::selector::Selector;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::Event;
use kube::{Client, Resource};
use serde_json::json;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::informers::{Informers, Kind, SharedStore};
use crate::queue::WorkQueue;
use crate::{Error, is_not_found};

/// Upstream `ExpectationsTimeout`: unmet expectations stop blocking after this long.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Upstream `SlowStartInitialBatchSize`.
pub const SLOW_START_INITIAL_BATCH: usize = 1;

/// A change seen by a cache, handed to its handler after the cache has applied it.
pub enum Change<'a, K> {
    /// Added or updated; `old` is what the cache held before.
    Applied { old: Option<Arc<K>>, new: &'a K },
    /// Deleted (last known state).
    Deleted(&'a K),
    /// A full list replaced the cache (deletions during a watch gap are not reported
    /// one by one, so handlers should re-queue everything they own).
    Resynced,
}

/// The shared cache of `K` (see [`crate::informers`]); `handler` runs for every
/// change until `shutdown`. The returned task ends with `shutdown`.
pub fn spawn_cache<K, H>(
    informers: &Informers,
    client: &Client,
    shutdown: CancellationToken,
    handler: H,
) -> (SharedStore<K>, JoinHandle<()>)
where
    K: Kind,
    H: Fn(Change<'_, K>) + Send + Sync + 'static,
{
    let informer = informers.get::<K>(client);
    informer.subscribe(shutdown.clone(), move |event, old, _| match event {
        Event::Apply(o) | Event::InitApply(o) => handler(Change::Applied { old, new: o }),
        Event::Delete(o) => handler(Change::Deleted(o)),
        Event::InitDone => handler(Change::Resynced),
        Event::Init => {}
    });
    let task = tokio::spawn(async move { shutdown.cancelled().await });
    (informer.store(), task)
}

/// Wait until every store has its first full list; `false` if `shutdown` came first.
pub async fn wait_ready<F>(shutdown: &CancellationToken, ready: F) -> bool
where
    F: Future<Output = ()>,
{
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = ready => true,
    }
}

/// Run `workers` workers over `queue` until it is shut down. `sync` returns when to
/// look at the key again; errors requeue it with backoff.
pub async fn run_workers<Key, F, Fut>(queue: Arc<WorkQueue<Key>>, workers: usize, sync: F)
where
    Key: Clone + Eq + Hash + Debug + Send + Sync + 'static,
    F: Fn(Key) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Duration>, Error>> + Send + 'static,
{
    let mut set = JoinSet::new();
    for _ in 0..workers.max(1) {
        let q = Arc::clone(&queue);
        let f = sync.clone();
        set.spawn(async move {
            while let Some(key) = q.get().await {
                match f(key.clone()).await {
                    Ok(again) => {
                        q.forget(&key);
                        if let Some(d) = again {
                            q.add_after(key.clone(), d);
                        }
                    }
                    Err(e) => {
                        debug!(?key, "sync failed, retrying: {e}");
                        q.add_rate_limited(key.clone());
                    }
                }
                q.done(&key);
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// `namespace/name` of an object.
pub fn key_of(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Split a `namespace/name` key.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

#[derive(Debug)]
struct Expectation {
    add: i64,
    del: i64,
    at: Instant,
}

/// Upstream `ControllerExpectations`: how many creations and deletions a controller
/// still waits to see in its cache before it acts on a key again.
#[derive(Debug, Default)]
pub struct Expectations {
    map: Mutex<HashMap<String, Expectation>>,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expectation>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether nothing is pending for `key` (or what is pending has timed out).
    pub fn satisfied(&self, key: &str) -> bool {
        self.lock()
            .get(key)
            .is_none_or(|e| (e.add <= 0 && e.del <= 0) || e.at.elapsed() > EXPECTATIONS_TIMEOUT)
    }

    /// Expect `add` creations and `del` deletions for `key`.
    pub fn set(&self, key: &str, add: usize, del: usize) {
        self.lock().insert(
            key.into(),
            Expectation {
                add: i64::try_from(add).unwrap_or(i64::MAX),
                del: i64::try_from(del).unwrap_or(i64::MAX),
                at: Instant::now(),
            },
        );
    }

    /// One creation was seen (or will never happen).
    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.add -= 1;
        }
    }

    /// One deletion was seen (or will never happen).
    pub fn deletion_observed(&self, key: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.del -= 1;
        }
    }

    /// Forget `key` (its owner is gone).
    pub fn delete(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// The controller reference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to `owner` (controller and blockOwnerDeletion set).
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Upstream `GetPodFromTemplate`: labels, annotations and finalizers of the template,
/// `generateName` `<owner>-`, the controller reference, the template's spec.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    owner_name: &str,
    owner: OwnerReference,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{owner_name}-")),
            labels: meta.labels.filter(|l| !l.is_empty()),
            annotations: meta.annotations.filter(|a| !a.is_empty()),
            finalizers: meta.finalizers.filter(|f| !f.is_empty()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The pod's phase (empty when it has none yet).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// Whether the pod's Ready condition is True.
pub fn is_pod_ready(pod: &Pod) -> bool {
    condition(pod, "Ready").is_some_and(|c| c.status == "True")
}

/// Upstream `IsPodAvailable`: ready, and ready for longer than `min_ready_seconds`.
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    let Some(c) = condition(pod, "Ready").filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    c.last_transition_time.as_ref().is_some_and(|t| {
        t.0.checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
            .is_ok_and(|ready_at| ready_at < now)
    })
}

/// When the pod became ready, if it is.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    condition(pod, "Ready")
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Being deleted.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Upstream `IsPodActive`: not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !is_terminating(pod)
}

/// Upstream `ActivePods` order: the pods to delete first come first (unscheduled,
/// pending, not ready, ready for less time, more restarts, newer).
pub fn deletion_order(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let assigned = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let phase_rank = |p: &Pod| match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let restarts = |p: &Pod| -> i32 {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |cs| {
                cs.iter().map(|c| c.restart_count).max().unwrap_or(0)
            })
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    assigned(a)
        .cmp(&assigned(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_pod_ready(a).cmp(&is_pod_ready(b)))
        .then_with(|| match (ready_since(a), ready_since(b)) {
            // Ready for less time first.
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| match (created(a), created(b)) {
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (x, y) => y.cmp(&x),
        })
}

/// A selector from a workload's `spec.selector`; invalid selectors select nothing.
pub fn selector_of(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Result<Selector, Error> {
    Selector::from_label_selector(selector)
        .map_err(|e| Error::Several(format!("invalid selector: {e}")))
}

/// Labels of an object (empty map if none).
pub fn labels_of(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// What [`claim_pods`] adopts for and how.
pub struct Claim<'a> {
    /// The controller reference that claimed pods carry.
    pub owner: OwnerReference,
    /// The owner is being deleted: nothing is adopted or released.
    pub owner_deleting: bool,
    pub selector: &'a Selector,
    /// Finalizers added on adoption and removed on release.
    pub finalizers: &'a [&'a str],
}

/// Upstream `ClaimPods`: keep pods controlled by the owner that still match, release
/// the ones that no longer match, adopt matching orphans (after `can_adopt` confirms
/// the owner is still there and not being deleted). `also` is an extra match test.
pub async fn claim_pods<F, Fut>(
    client: &Client,
    claim: &Claim<'_>,
    pods: Vec<Arc<Pod>>,
    also: &(dyn Fn(&Pod) -> bool + Sync),
    can_adopt: F,
) -> Result<Vec<Arc<Pod>>, Error>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<bool, Error>>,
{
    let matches = |p: &Pod| claim.selector.matches(&labels_of(&p.metadata)) && also(p);
    let mut claimed = Vec::new();
    let mut adopt = Vec::new();
    let mut errors = Vec::new();
    for pod in pods {
        match controller_of(&pod.metadata) {
            Some(r) if r.uid == claim.owner.uid => {
                if matches(&pod) {
                    claimed.push(pod);
                } else if !claim.owner_deleting
                    && let Err(e) = release(client, claim, &pod).await
                {
                    errors.push(e.to_string());
                }
            }
            Some(_) => {}
            None => {
                if claim.owner_deleting || !matches(&pod) || is_terminating(&pod) {
                    continue;
                }
                adopt.push(pod);
            }
        }
    }
    if !adopt.is_empty() && can_adopt().await? {
        for pod in adopt {
            match adopt_pod(client, claim, &pod).await {
                Ok(Some(p)) => claimed.push(Arc::new(p)),
                Ok(None) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    if errors.is_empty() {
        Ok(claimed)
    } else {
        Err(Error::Several(errors.join("; ")))
    }
}

fn pods_api(client: &Client, pod: &Pod) -> Api<Pod> {
    Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    )
}

async fn adopt_pod(client: &Client, claim: &Claim<'_>, pod: &Pod) -> Result<Option<Pod>, Error> {
    let mut meta = json!({
        "ownerReferences": [claim.owner],
        "uid": pod.metadata.uid,
    });
    if !claim.finalizers.is_empty() {
        meta["finalizers"] = json!(claim.finalizers);
    }
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    match pods_api(client, pod)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Strategic(json!({ "metadata": meta })),
        )
        .await
    {
        Ok(p) => Ok(Some(p)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn release(client: &Client, claim: &Claim<'_>, pod: &Pod) -> Result<(), Error> {
    let mut meta = json!({
        "ownerReferences": [{"$patch": "delete", "uid": claim.owner.uid}],
        "uid": pod.metadata.uid,
    });
    if !claim.finalizers.is_empty() {
        meta["$deleteFromPrimitiveList/finalizers"] = json!(claim.finalizers);
    }
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    match pods_api(client, pod)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Strategic(json!({ "metadata": meta })),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Gone, or no longer the pod we looked at: nothing to release.
        Err(e) if is_not_found(&e) || is_invalid(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn is_invalid(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 422)
}

/// Whether a create failed because the namespace is being deleted.
pub fn is_namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && s.message.contains("is being terminated"))
}

/// Upstream `slowStartBatch`: run `count` calls in batches of 1, 2, 4, … (each batch
/// concurrently) and stop after the first batch with a failure. Returns the number
/// of successes and the errors.
pub async fn slow_start_batch<F, Fut, E>(count: usize, call: F) -> (usize, Vec<E>)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut done = 0;
    let mut ok = 0;
    let mut errors = Vec::new();
    let mut batch = SLOW_START_INITIAL_BATCH.min(count);
    while batch > 0 {
        let results = futures::future::join_all((done..done + batch).map(&call)).await;
        for r in results {
            match r {
                Ok(()) => ok += 1,
                Err(e) => errors.push(e),
            }
        }
        done += batch;
        if !errors.is_empty() {
            break;
        }
        batch = (2 * batch).min(count - done);
    }
    (ok, errors)
}

/// Set of uids per key (upstream `uidTrackingExpectations`, for the Job controller's
/// finalizer removals).
#[derive(Debug, Default)]
pub struct UidExpectations {
    map: Mutex<HashMap<String, HashSet<String>>>,
}

impl UidExpectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn expect(&self, key: &str, uids: impl IntoIterator<Item = String>) {
        self.lock().entry(key.into()).or_default().extend(uids);
    }

    pub fn observed(&self, key: &str, uid: &str) {
        let mut m = self.lock();
        if let Some(s) = m.get_mut(key) {
            s.remove(uid);
            if s.is_empty() {
                m.remove(key);
            }
        }
    }

    pub fn get(&self, key: &str) -> HashSet<String> {
        self.lock().get(key).cloned().unwrap_or_default()
    }

    pub fn delete(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("pod")
    }

    #[test]
    fn expectations_lifecycle() {
        let e = Expectations::default();
        assert!(e.satisfied("a"));
        e.set("a", 2, 1);
        assert!(!e.satisfied("a"));
        e.creation_observed("a");
        e.creation_observed("a");
        assert!(!e.satisfied("a"));
        e.deletion_observed("a");
        assert!(e.satisfied("a"));
        e.set("a", 1, 0);
        e.delete("a");
        assert!(e.satisfied("a"));
        e.creation_observed("b");
        assert!(e.satisfied("b"), "observing without expecting is harmless");
    }

    #[test]
    fn availability_table() {
        let now = Timestamp::from_second(1_000).expect("ts");
        let ready_at = |s: i64| {
            pod(
                json!({"status": {"conditions": [{"type": "Ready", "status": "True",
                "lastTransitionTime": Time(Timestamp::from_second(s).expect("ts"))}]}}),
            )
        };
        let not_ready =
            pod(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        // (pod, minReadySeconds, ready, available)
        let cases = [
            (ready_at(990), 0, true, true),
            (ready_at(990), 5, true, true),
            (ready_at(990), 10, true, false),
            (ready_at(990), 20, true, false),
            (not_ready.clone(), 0, false, false),
            (pod(json!({})), 0, false, false),
        ];
        for (p, min, ready, available) in cases {
            assert_eq!(is_pod_ready(&p), ready, "{p:?}");
            assert_eq!(is_pod_available(&p, min, now), available, "{p:?} min {min}");
        }
    }

    #[test]
    fn active_table() {
        let cases = [
            (json!({"status": {"phase": "Running"}}), true),
            (json!({"status": {"phase": "Pending"}}), true),
            (json!({}), true),
            (json!({"status": {"phase": "Succeeded"}}), false),
            (json!({"status": {"phase": "Failed"}}), false),
            (
                json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Running"}}),
                false,
            ),
        ];
        for (p, want) in cases {
            assert_eq!(is_active(&pod(p.clone())), want, "{p}");
        }
    }

    #[test]
    fn deletion_order_prefers_early_stages() {
        let mut pods = [
            pod(
                json!({"metadata": {"name": "running-ready"}, "spec": {"nodeName": "n", "containers": []},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
            ),
            pod(json!({"metadata": {"name": "unscheduled"}, "status": {"phase": "Pending"}})),
            pod(
                json!({"metadata": {"name": "running"}, "spec": {"nodeName": "n", "containers": []},
                "status": {"phase": "Running"}}),
            ),
            pod(
                json!({"metadata": {"name": "pending"}, "spec": {"nodeName": "n", "containers": []},
                "status": {"phase": "Pending"}}),
            ),
        ];
        pods.sort_by(deletion_order);
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            ["unscheduled", "pending", "running", "running-ready"]
        );
    }

    #[test]
    fn pod_from_template_copies_metadata() {
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "x"}, "annotations": {"a": "b"}, "finalizers": ["f"]},
            "spec": {"containers": [{"name": "c", "image": "i"}]}
        }))
        .expect("template");
        let owner = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "DaemonSet".into(),
            name: "ds".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let p = pod_from_template(&t, "ds", owner.clone());
        assert_eq!(p.metadata.generate_name.as_deref(), Some("ds-"));
        assert_eq!(
            p.metadata.labels,
            t.metadata.as_ref().and_then(|m| m.labels.clone())
        );
        assert_eq!(p.metadata.finalizers, Some(vec!["f".to_string()]));
        assert_eq!(p.metadata.owner_references, Some(vec![owner]));
        assert_eq!(p.spec, t.spec);
        assert_eq!(
            controller_of(&p.metadata).map(|r| r.name.as_str()),
            Some("ds")
        );
    }

    #[tokio::test]
    async fn slow_start_stops_after_failing_batch() {
        // (count, index that fails, calls made, successes)
        let cases: &[(usize, Option<usize>, usize, usize)] = &[
            (0, None, 0, 0),
            (1, None, 1, 1),
            (10, None, 10, 10),
            (10, Some(0), 1, 0),
            (10, Some(2), 3, 2),
            (10, Some(5), 7, 6),
        ];
        for &(count, fail, calls, successes) in cases {
            let seen = Mutex::new(0usize);
            let (ok, errs) = slow_start_batch(count, |i| {
                *seen.lock().expect("lock") += 1;
                async move { if Some(i) == fail { Err(()) } else { Ok(()) } }
            })
            .await;
            assert_eq!(
                *seen.lock().expect("lock"),
                calls,
                "count {count} fail {fail:?}"
            );
            assert_eq!(ok, successes);
            assert_eq!(errs.len(), usize::from(fail.is_some_and(|f| f < count)));
        }
    }

    #[test]
    fn uid_expectations() {
        let u = UidExpectations::default();
        u.expect("k", ["a".to_string(), "b".to_string()]);
        u.observed("k", "a");
        assert_eq!(u.get("k"), HashSet::from(["b".to_string()]));
        u.observed("k", "b");
        assert!(u.get("k").is_empty());
    }
}
