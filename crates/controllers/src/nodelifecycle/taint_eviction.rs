//! The taint eviction controller (upstream `taint-eviction-controller`, formerly the
//! NoExecuteTaintManager): pods bound to a node with `NoExecute` taints are deleted when
//! a taint is not tolerated (at once) or when the shortest `tolerationSeconds` of the
//! tolerations in use has passed; a scheduled deletion is cancelled when the taint goes
//! away or the tolerations start to tolerate it forever.
//!
//! Deletion is upstream's: a `DisruptionTarget` condition (reason
//! `DeletionByTaintManager`) on the pod status, then an ordinary graceful delete, and a
//! `TaintManagerEviction` event ("Marking for deletion Pod ns/name"; "Cancelling
//! deletion of Pod ns/name" when cancelled).
//!
//! Deliberate difference: the toleration period counts from the taint's `timeAdded`
//! (when present) instead of from when this controller first noticed it, so a
//! controller-manager restart or leader change does not restart the clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::informer::{self, Key, PodsByNode};
use super::taints::{self, no_execute};
use crate::events::{NORMAL, Recorder};
use crate::queue::WorkQueue;
use crate::{ControllerOptions, Error, is_not_found};

/// The controller's name (event source component).
pub const NAME: &str = "taint-eviction-controller";
/// Attempts of condition + delete per eviction (upstream `retries`).
const DELETE_ATTEMPTS: usize = 5;
/// Concurrent pod workers (upstream `UpdateWorkerSize`).
const WORKERS: usize = 8;

/// When a pod must leave its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// No NoExecute taint, or every one is tolerated forever.
    Never,
    /// An untolerated taint, or a toleration period that is already over.
    Now,
    /// When the first toleration period ends.
    At(Timestamp),
}

/// Upstream `GetMatchingTolerations`: the first toleration tolerating each taint, or
/// `None` if some taint is not tolerated.
pub fn matching_tolerations<'a>(
    taints: &[Taint],
    tolerations: &'a [Toleration],
) -> Option<Vec<&'a Toleration>> {
    taints
        .iter()
        .map(|t| tolerations.iter().find(|tol| taints::tolerates(tol, t)))
        .collect()
}

/// Decide the eviction of a pod with `tolerations` from a node with `taints` (its
/// NoExecute taints). A taint's period starts at its `timeAdded` (not after `now`), or
/// at `noticed` for taints without one.
pub fn eviction(
    taints: &[Taint],
    tolerations: &[Toleration],
    noticed: Timestamp,
    now: Timestamp,
) -> Eviction {
    if taints.is_empty() {
        return Eviction::Never;
    }
    let Some(used) = matching_tolerations(taints, tolerations) else {
        return Eviction::Now;
    };
    let mut deadline: Option<Timestamp> = None;
    for (taint, tol) in taints.iter().zip(used) {
        let Some(secs) = tol.toleration_seconds else {
            continue;
        };
        let start = taint.time_added.as_ref().map_or(noticed, |t| t.0).min(now);
        let end = start
            .checked_add(SignedDuration::from_secs(secs.max(0)))
            .unwrap_or(Timestamp::MAX);
        deadline = Some(deadline.map_or(end, |d| d.min(end)));
    }
    match deadline {
        None => Eviction::Never,
        Some(d) if d <= now => Eviction::Now,
        Some(d) => Eviction::At(d),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheduled {
    /// Deletion planned; `noticed` is when the taints were first seen on the pod's node.
    Pending { noticed: Timestamp, at: Timestamp },
    /// Deleted by us; nothing more until the pod goes or the taints change.
    Fired,
}

struct Controller {
    client: Client,
    recorder: Recorder,
    nodes: crate::informers::SharedStore<Node>,
    pods: crate::informers::SharedStore<Pod>,
    queue: Arc<WorkQueue<Key>>,
    scheduled: Mutex<HashMap<Key, Scheduled>>,
}

/// Run the taint eviction controller until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let token = shutdown.child_token();
    let queue = WorkQueue::new(opts.backoff);
    let by_node = PodsByNode::default();

    let node_taints: Arc<Mutex<HashMap<String, Vec<Taint>>>> = Default::default();
    let nodes = {
        let (queue, by_node, node_taints) = (queue.clone(), by_node.clone(), node_taints.clone());
        informer::spawn_shared::<Node, _>(&opts.informers, &client, token.clone(), move |ev, _| {
            let mut seen = node_taints.lock().unwrap_or_else(|p| p.into_inner());
            let mut changed = |n: &Node, now: Vec<Taint>| {
                let name = informer::name_of(n);
                if seen.get(&name) != Some(&now) {
                    for k in by_node.on_node(&name) {
                        queue.add(k);
                    }
                    if now.is_empty() {
                        seen.remove(&name);
                    } else {
                        seen.insert(name, now);
                    }
                }
            };
            match ev {
                watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                    changed(n, no_execute(taints::node_taints(n)))
                }
                watcher::Event::Delete(n) => changed(n, Vec::new()),
                _ => {}
            }
        })
    };
    let pods = {
        let (queue, by_node) = (queue.clone(), by_node.clone());
        informer::spawn_shared::<Pod, _>(
            &opts.informers,
            &client,
            token.clone(),
            move |ev, store| {
                for (key, _) in by_node.apply(ev, store) {
                    queue.add(key);
                }
            },
        )
    };

    if !informer::wait_ready(&nodes, &token).await || !informer::wait_ready(&pods, &token).await {
        return Ok(());
    }
    info!("taint eviction controller: started");
    let ctl = Arc::new(Controller {
        recorder: Recorder::new(client.clone(), NAME),
        client,
        nodes,
        pods,
        queue: queue.clone(),
        scheduled: Mutex::new(HashMap::new()),
    });
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let ctl = ctl.clone();
        workers.push(tokio::spawn(async move { ctl.worker().await }));
    }
    token.cancelled().await;
    queue.shut_down();
    for w in workers {
        let _ = w.await;
    }
    info!("taint eviction controller: stopped");
    Ok(())
}

impl Controller {
    fn scheduled(&self) -> MutexGuard<'_, HashMap<Key, Scheduled>> {
        self.scheduled.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn worker(&self) {
        while let Some(key) = self.queue.get().await {
            match self.reconcile(&key).await {
                Ok(()) => self.queue.forget(&key),
                Err(e) => {
                    debug!(pod = %key, error = %e, "taint eviction: retrying");
                    self.queue.add_rate_limited(key.clone());
                }
            }
            self.queue.done(&key);
        }
    }

    async fn cancel(&self, key: &Key) {
        let was = self.scheduled().remove(key);
        if matches!(was, Some(Scheduled::Pending { .. })) {
            self.event(key, &format!("Cancelling deletion of Pod {key}"))
                .await;
        }
    }

    async fn event(&self, key: &Key, message: &str) {
        let r = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(key.name.clone()),
            namespace: Some(key.namespace.clone()),
            ..Default::default()
        };
        self.recorder
            .record(&r, NORMAL, "TaintManagerEviction", message)
            .await;
    }

    async fn reconcile(&self, key: &Key) -> Result<(), Error> {
        let Some(pod) = self.pods.get(&key.object_ref()) else {
            self.cancel(key).await;
            return Ok(());
        };
        let Some(node_name) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
        else {
            self.cancel(key).await;
            return Ok(());
        };
        if pod.metadata.deletion_timestamp.is_some() {
            // Already on its way out; nothing to add.
            return Ok(());
        }
        let now = Timestamp::now();
        let current = self.scheduled().get(key).copied();
        let Some(node) = self.nodes.get(&ObjectRef::new(&node_name)) else {
            // Node gone from the cache: keep what was planned (the pod GC handles pods of
            // deleted nodes).
            if let Some(Scheduled::Pending { at, .. }) = current {
                return self.due(key, &pod, at, now).await;
            }
            return Ok(());
        };
        let taints = no_execute(taints::node_taints(&node));
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        let noticed = match current {
            Some(Scheduled::Pending { noticed, .. }) => noticed,
            _ => now,
        };
        match eviction(&taints, &tolerations, noticed, now) {
            Eviction::Never => {
                self.cancel(key).await;
                Ok(())
            }
            _ if current == Some(Scheduled::Fired) => Ok(()),
            Eviction::Now => self.fire(key, &pod).await,
            Eviction::At(at) => {
                self.scheduled()
                    .insert(key.clone(), Scheduled::Pending { noticed, at });
                self.due(key, &pod, at, now).await
            }
        }
    }

    /// Fire if `at` has come, else look again then.
    async fn due(&self, key: &Key, pod: &Pod, at: Timestamp, now: Timestamp) -> Result<(), Error> {
        if at <= now {
            return self.fire(key, pod).await;
        }
        let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
        self.queue
            .add_after(key.clone(), wait + Duration::from_millis(5));
        Ok(())
    }

    async fn fire(&self, key: &Key, pod: &Pod) -> Result<(), Error> {
        info!(pod = %key, "taint eviction: deleting pod");
        self.event(key, &format!("Marking for deletion Pod {key}"))
            .await;
        self.scheduled().insert(key.clone(), Scheduled::Fired);
        let mut last = None;
        for _ in 0..DELETE_ATTEMPTS {
            match self.condition_and_delete(key, pod).await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.scheduled().remove(key);
        Err(last.unwrap_or_else(|| Error::Conflict(format!("deleting pod {key}"))))
    }

    async fn condition_and_delete(&self, key: &Key, cached: &Pod) -> Result<(), Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let Some(pod) = api.get_opt(&key.name).await? else {
            return Ok(());
        };
        if pod.metadata.uid != cached.metadata.uid {
            return Ok(()); // a new pod of the same name: not the one we judged
        }
        let has = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_ == "DisruptionTarget"
                        && c.status == "True"
                        && c.reason.as_deref() == Some("DeletionByTaintManager")
                })
            });
        if !has {
            let patch = json!({
                "metadata": {"uid": pod.metadata.uid},
                "status": {"conditions": [{
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "DeletionByTaintManager",
                    "message": "Taint manager: deleting due to NoExecute taint",
                    "lastTransitionTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
                }]},
            });
            match api
                .patch_status(
                    &key.name,
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        let dp = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&key.name, &dp).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("ts")
    }

    fn taint(key: &str, added: Option<i64>) -> Taint {
        Taint {
            key: key.into(),
            value: None,
            effect: taints::NO_EXECUTE.into(),
            time_added: added.map(|s| Time(ts(s))),
        }
    }

    fn tol(key: Option<&str>, secs: Option<i64>) -> Toleration {
        Toleration {
            key: key.map(Into::into),
            operator: Some("Exists".into()),
            effect: Some(taints::NO_EXECUTE.into()),
            value: None,
            toleration_seconds: secs,
        }
    }

    #[test]
    fn eviction_table() {
        let un = taints::UNREACHABLE;
        let nr = taints::NOT_READY;
        let noticed = ts(1000);
        let now = ts(1010);
        let cases: Vec<(&str, Vec<Taint>, Vec<Toleration>, Eviction)> = vec![
            ("no taints", vec![], vec![], Eviction::Never),
            (
                "untolerated",
                vec![taint(un, Some(1000))],
                vec![],
                Eviction::Now,
            ),
            (
                "one of two untolerated",
                vec![taint(un, Some(1000)), taint("x", Some(1000))],
                vec![tol(Some(un), None)],
                Eviction::Now,
            ),
            (
                "tolerated forever",
                vec![taint(un, Some(1000))],
                vec![tol(Some(un), None)],
                Eviction::Never,
            ),
            (
                "wildcard forever",
                vec![taint(un, None), taint(nr, None)],
                vec![tol(None, None)],
                Eviction::Never,
            ),
            (
                "300 s from timeAdded",
                vec![taint(un, Some(1000))],
                vec![tol(Some(un), Some(300))],
                Eviction::At(ts(1300)),
            ),
            (
                "timeAdded long ago: due now",
                vec![taint(un, Some(500))],
                vec![tol(Some(un), Some(300))],
                Eviction::Now,
            ),
            (
                "no timeAdded: from when noticed",
                vec![taint(un, None)],
                vec![tol(Some(un), Some(20))],
                Eviction::At(ts(1020)),
            ),
            (
                "timeAdded in the future counts from now",
                vec![taint(un, Some(5000))],
                vec![tol(Some(un), Some(2))],
                Eviction::At(ts(1012)),
            ),
            (
                "zero seconds",
                vec![taint(un, Some(1009))],
                vec![tol(Some(un), Some(0))],
                Eviction::Now,
            ),
            (
                "negative seconds",
                vec![taint(un, Some(1009))],
                vec![tol(Some(un), Some(-3))],
                Eviction::Now,
            ),
            (
                "shortest period wins",
                vec![taint(un, Some(1005)), taint(nr, Some(1000))],
                vec![tol(Some(un), Some(100)), tol(Some(nr), Some(20))],
                Eviction::At(ts(1020)),
            ),
            (
                "first matching toleration is the one used",
                vec![taint(un, Some(1000))],
                vec![tol(Some(un), Some(60)), tol(None, None)],
                Eviction::At(ts(1060)),
            ),
            (
                "forever and finite: finite decides",
                vec![taint(un, Some(1000)), taint(nr, Some(1000))],
                vec![tol(Some(un), None), tol(Some(nr), Some(30))],
                Eviction::At(ts(1030)),
            ),
        ];
        for (name, t, tols, want) in cases {
            assert_eq!(eviction(&t, &tols, noticed, now), want, "{name}");
        }
    }
}
