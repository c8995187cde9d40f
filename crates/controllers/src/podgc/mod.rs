//! The pod garbage collector (upstream kube-controller-manager's `podgc`).
//!
//! Every 20 s (and, for the Flotilla rule below, also when a terminating pod's deadline
//! comes), it force-deletes (grace period 0, after moving a non-terminal pod to phase
//! `Failed`, as upstream):
//! * **terminated** pods (phase not Pending/Running/Unknown) beyond
//!   `--terminated-pod-gc-threshold` (12500), evicted ones first, then oldest first;
//! * **terminating pods on out-of-service nodes**: not Ready and tainted
//!   `node.kubernetes.io/out-of-service` (upstream `gcTerminating`);
//! * **terminating pods on unreachable nodes** (Flotilla choice): pods whose
//!   `deletionTimestamp` (the moment their grace period ends) has passed while their node
//!   is not Ready (Ready False or Unknown). Upstream leaves them until an operator adds
//!   the out-of-service taint, so a node failure never finishes on its own; Flotilla
//!   finishes it so that taint-based eviction actually frees the pods' names and lets
//!   their controllers replace them;
//! * **orphaned** pods bound to a node that does not exist, once the node has been
//!   missing for 40 s and a direct GET confirms it (with a `DisruptionTarget` condition,
//!   reason `DeletionByPodGC`);
//! * **unscheduled terminating** pods (deletionTimestamp set, no node).
//!
//! Deletes carry a uid precondition, so a new pod with the same name (a StatefulSet's) is
//! never hit.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::nodelifecycle::health;
use crate::nodelifecycle::informer::{self, Key};
use crate::nodelifecycle::taints::{self, OUT_OF_SERVICE};
use crate::{ControllerOptions, Error, is_not_found};

/// Concurrent force deletions.
const DELETE_CONCURRENCY: usize = 16;
/// Coalescing delay after a wake-up event.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Settings of the pod garbage collector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodGcConfig {
    /// `--terminated-pod-gc-threshold` (12500; 0 disables that part).
    pub terminated_pod_gc_threshold: usize,
    /// Period of the full pass (upstream `gcCheckPeriod`, 20 s).
    pub gc_check_period: Duration,
    /// How long a node must be missing before its pods are orphans (40 s).
    pub quarantine_time: Duration,
    /// The shared informers to watch nodes and pods through.
    pub informers: crate::informers::Informers,
}

impl PodGcConfig {
    pub fn from_options(opts: &ControllerOptions) -> Self {
        PodGcConfig {
            terminated_pod_gc_threshold: opts.terminated_pod_gc_threshold,
            gc_check_period: Duration::from_secs(20),
            quarantine_time: Duration::from_secs(40),
            informers: opts.informers.clone(),
        }
    }
}

/// Why a pod is force-deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Terminated,
    TerminatingOutOfService,
    TerminatingUnreachable,
    Orphaned,
    UnscheduledTerminating,
}

/// What the collector needs to know of a pod.
#[derive(Clone, Debug)]
pub struct PodFacts {
    pub key: Key,
    pub node: Option<String>,
    pub phase: Option<String>,
    pub deletion: Option<Timestamp>,
    pub created: Option<Timestamp>,
    /// `status.reason == "Evicted"`.
    pub evicted: bool,
}

impl PodFacts {
    pub fn of(p: &Pod) -> Self {
        let status = p.status.as_ref();
        PodFacts {
            key: Key::of(p),
            node: p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            phase: status.and_then(|s| s.phase.clone()),
            deletion: p.metadata.deletion_timestamp.as_ref().map(|t| t.0),
            created: p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            evicted: status.and_then(|s| s.reason.as_deref()) == Some("Evicted"),
        }
    }

    /// Upstream `isPodTerminated`.
    pub fn terminated(&self) -> bool {
        !matches!(
            self.phase.as_deref(),
            Some("Pending" | "Running" | "Unknown")
        )
    }
}

/// What the collector needs to know of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    /// Ready condition is True.
    pub ready: bool,
    /// Has the `node.kubernetes.io/out-of-service` taint.
    pub out_of_service: bool,
}

impl NodeFacts {
    pub fn of(n: &Node) -> Self {
        NodeFacts {
            ready: health::condition(health::node_conditions(n), health::READY)
                .is_some_and(|c| c.status == health::TRUE),
            out_of_service: taints::node_taints(n)
                .iter()
                .any(|t| t.key == OUT_OF_SERVICE),
        }
    }
}

/// One pass's decisions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Pods to force-delete, each once, with the first reason that applied.
    pub delete: Vec<(Key, Reason)>,
    /// Nodes that pods are bound to but that are not known.
    pub missing_nodes: BTreeSet<String>,
    /// The next moment a terminating pod on an unready node becomes due.
    pub next_due: Option<Timestamp>,
}

/// Decide a pass. `gone`: missing nodes confirmed deleted after quarantine.
pub fn plan(
    pods: &[PodFacts],
    nodes: &HashMap<String, NodeFacts>,
    gone: &HashSet<String>,
    terminated_threshold: usize,
    now: Timestamp,
) -> Plan {
    let mut delete: Vec<(Key, Reason)> = Vec::new();
    let mut taken: HashSet<Key> = HashSet::new();
    let mut push = |p: &PodFacts, r: Reason| {
        if taken.insert(p.key.clone()) {
            delete.push((p.key.clone(), r));
        }
    };
    let mut missing_nodes = BTreeSet::new();
    let mut next_due: Option<Timestamp> = None;

    if terminated_threshold > 0 {
        let mut terminated: Vec<&PodFacts> = pods.iter().filter(|p| p.terminated()).collect();
        if terminated.len() > terminated_threshold {
            terminated.sort_by(|a, b| {
                b.evicted
                    .cmp(&a.evicted)
                    .then(a.created.cmp(&b.created))
                    .then(a.key.name.cmp(&b.key.name))
            });
            let n = terminated.len() - terminated_threshold;
            for p in terminated.into_iter().take(n) {
                push(p, Reason::Terminated);
            }
        }
    }
    for p in pods {
        let (Some(del), Some(node)) = (p.deletion, p.node.as_deref()) else {
            continue;
        };
        let Some(n) = nodes.get(node) else { continue };
        if n.ready {
            continue;
        }
        if n.out_of_service {
            push(p, Reason::TerminatingOutOfService);
        } else if del <= now {
            push(p, Reason::TerminatingUnreachable);
        } else {
            next_due = Some(next_due.map_or(del, |d| d.min(del)));
        }
    }
    for p in pods {
        if let Some(node) = p.node.as_deref()
            && !nodes.contains_key(node)
        {
            missing_nodes.insert(node.to_string());
            if gone.contains(node) {
                push(p, Reason::Orphaned);
            }
        }
    }
    for p in pods {
        if p.deletion.is_some() && p.node.is_none() {
            push(p, Reason::UnscheduledTerminating);
        }
    }
    Plan {
        delete,
        missing_nodes,
        next_due,
    }
}

struct Controller {
    client: Client,
    cfg: PodGcConfig,
    pods: crate::informers::SharedStore<Pod>,
    nodes: crate::informers::SharedStore<Node>,
    missing_since: Mutex<HashMap<String, tokio::time::Instant>>,
}

/// Run the pod garbage collector with `opts` until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    run_with_config(client, PodGcConfig::from_options(opts), shutdown).await
}

/// Run the pod garbage collector with `cfg` until `shutdown` is cancelled.
pub async fn run_with_config(
    client: Client,
    cfg: PodGcConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let token = shutdown.child_token();
    let wake = Arc::new(Notify::new());
    let pods = {
        let wake = wake.clone();
        informer::spawn_shared::<Pod, _>(&cfg.informers, &client, token.clone(), move |ev, _| {
            if let watcher::Event::Apply(p) = ev
                && p.metadata.deletion_timestamp.is_some()
            {
                wake.notify_one();
            }
        })
    };
    let nodes = {
        let wake = wake.clone();
        let mut last: HashMap<String, NodeFacts> = HashMap::new();
        informer::spawn_shared::<Node, _>(&cfg.informers, &client, token.clone(), move |ev, _| {
            match ev {
                watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                    let f = NodeFacts::of(n);
                    if last.insert(informer::name_of(n), f) != Some(f) {
                        wake.notify_one();
                    }
                }
                watcher::Event::Delete(n) => {
                    last.remove(&informer::name_of(n));
                    wake.notify_one();
                }
                _ => {}
            }
        })
    };
    if !informer::wait_ready(&pods, &token).await || !informer::wait_ready(&nodes, &token).await {
        return Ok(());
    }
    info!("pod garbage collector: started");
    let ctl = Controller {
        client,
        cfg,
        pods,
        nodes,
        missing_since: Mutex::new(HashMap::new()),
    };
    loop {
        let next_due = ctl.pass().await;
        let mut wait = ctl.cfg.gc_check_period;
        if let Some(due) = next_due {
            let until = due.duration_since(Timestamp::now());
            let until = Duration::try_from(until).unwrap_or_default() + Duration::from_millis(10);
            wait = wait.min(until);
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {
                if !informer::sleep(DEBOUNCE, &token).await {
                    break;
                }
            }
        }
    }
    info!("pod garbage collector: stopped");
    Ok(())
}

impl Controller {
    /// One pass; returns when the next terminating pod becomes due.
    async fn pass(&self) -> Option<Timestamp> {
        let pods: Vec<Arc<Pod>> = self.pods.state();
        let facts: Vec<PodFacts> = pods.iter().map(|p| PodFacts::of(p)).collect();
        let nodes: HashMap<String, NodeFacts> = self
            .nodes
            .state()
            .iter()
            .map(|n| (informer::name_of(n.as_ref()), NodeFacts::of(n)))
            .collect();
        let now = Timestamp::now();
        let gone = self.confirm_gone(&facts, &nodes).await;
        let plan = plan(
            &facts,
            &nodes,
            &gone,
            self.cfg.terminated_pod_gc_threshold,
            now,
        );
        if !plan.delete.is_empty() {
            info!(
                pods = plan.delete.len(),
                "pod garbage collector: force-deleting pods"
            );
        }
        let by_key: HashMap<Key, Arc<Pod>> =
            pods.into_iter().map(|p| (Key::of(p.as_ref()), p)).collect();
        futures::stream::iter(plan.delete.iter())
            .for_each_concurrent(DELETE_CONCURRENCY, |(key, reason)| {
                let pod = by_key.get(key).cloned();
                async move {
                    let Some(pod) = pod else { return };
                    if let Err(e) = force_delete(&self.client, &pod, *reason).await {
                        warn!(pod = %key, ?reason, error = %e, "pod garbage collector: deletion failed");
                    } else {
                        info!(pod = %key, ?reason, "pod garbage collector: force-deleted pod");
                    }
                }
            })
            .await;
        plan.next_due
    }

    /// Track nodes that pods reference but that are missing; after the quarantine ask
    /// the API server whether they are really gone.
    async fn confirm_gone(
        &self,
        pods: &[PodFacts],
        nodes: &HashMap<String, NodeFacts>,
    ) -> HashSet<String> {
        let missing: HashSet<&str> = pods
            .iter()
            .filter_map(|p| p.node.as_deref())
            .filter(|n| !nodes.contains_key(*n))
            .collect();
        let now = tokio::time::Instant::now();
        let due: Vec<String> = {
            let mut since = self.missing_since.lock().unwrap_or_else(|p| p.into_inner());
            since.retain(|n, _| missing.contains(n.as_str()));
            for n in &missing {
                since.entry(n.to_string()).or_insert(now);
            }
            since
                .iter()
                .filter(|(_, t)| now.duration_since(**t) >= self.cfg.quarantine_time)
                .map(|(n, _)| n.clone())
                .collect()
        };
        let api: Api<Node> = Api::all(self.client.clone());
        let mut gone = HashSet::new();
        for n in due {
            match api.get_opt(&n).await {
                Ok(None) => {
                    gone.insert(n);
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    debug!(node = %n, error = %e, "pod garbage collector: node lookup failed")
                }
            }
        }
        gone
    }
}

/// Move a non-terminal pod to Failed (with the orphan condition when `reason` says so),
/// then delete it with grace period 0 (upstream `markFailedAndDeletePodWithCondition`).
pub async fn force_delete(client: &Client, pod: &Pod, reason: Reason) -> Result<(), Error> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if !matches!(phase, Some("Succeeded" | "Failed")) {
        let mut status = json!({"phase": "Failed"});
        if reason == Reason::Orphaned {
            status["conditions"] = json!([{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByPodGC",
                "message": "PodGC: node no longer exists",
                "lastTransitionTime": Time(Timestamp::now()),
            }]);
        }
        let patch = json!({"metadata": {"uid": pod.metadata.uid}, "status": status});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("ts")
    }

    fn pod(
        name: &str,
        node: Option<&str>,
        phase: &str,
        deletion: Option<i64>,
        created: i64,
    ) -> PodFacts {
        PodFacts {
            key: Key::new("ns", name),
            node: node.map(Into::into),
            phase: Some(phase.into()),
            deletion: deletion.map(ts),
            created: Some(ts(created)),
            evicted: false,
        }
    }

    fn names(p: &Plan) -> Vec<(String, Reason)> {
        p.delete.iter().map(|(k, r)| (k.name.clone(), *r)).collect()
    }

    #[test]
    fn plan_table() {
        let now = ts(1000);
        let nodes: HashMap<String, NodeFacts> = [
            (
                "ready".to_string(),
                NodeFacts {
                    ready: true,
                    out_of_service: false,
                },
            ),
            (
                "down".to_string(),
                NodeFacts {
                    ready: false,
                    out_of_service: false,
                },
            ),
            (
                "oos".to_string(),
                NodeFacts {
                    ready: false,
                    out_of_service: true,
                },
            ),
            (
                "oos-ready".to_string(),
                NodeFacts {
                    ready: true,
                    out_of_service: true,
                },
            ),
        ]
        .into();
        let gone: HashSet<String> = ["deleted".to_string()].into();
        // (pods, threshold, expected deletions, expected next_due)
        type Case = (
            &'static str,
            Vec<PodFacts>,
            usize,
            Vec<(&'static str, Reason)>,
            Option<i64>,
        );
        let cases: Vec<Case> = vec![
            (
                "running pods stay",
                vec![pod("a", Some("ready"), "Running", None, 1)],
                10,
                vec![],
                None,
            ),
            (
                "terminating on a ready node: the kubelet's job",
                vec![pod("a", Some("ready"), "Running", Some(900), 1)],
                10,
                vec![],
                None,
            ),
            (
                "terminating on an unready node: force-deleted once overdue",
                vec![
                    pod("due", Some("down"), "Running", Some(1000), 1),
                    pod("later", Some("down"), "Running", Some(1030), 1),
                    pod("later2", Some("down"), "Running", Some(1020), 1),
                ],
                10,
                vec![("due", Reason::TerminatingUnreachable)],
                Some(1020),
            ),
            (
                "out-of-service: at once",
                vec![
                    pod("a", Some("oos"), "Running", Some(5000), 1),
                    pod("b", Some("oos-ready"), "Running", Some(10), 1),
                    pod("c", Some("oos"), "Running", None, 1),
                ],
                10,
                vec![("a", Reason::TerminatingOutOfService)],
                None,
            ),
            (
                "orphans only once confirmed gone",
                vec![
                    pod("a", Some("deleted"), "Running", None, 1),
                    pod("b", Some("vanished"), "Running", None, 1),
                ],
                10,
                vec![("a", Reason::Orphaned)],
                None,
            ),
            (
                "unscheduled terminating",
                vec![
                    pod("a", None, "Pending", Some(2000), 1),
                    pod("b", None, "Pending", None, 1),
                ],
                10,
                vec![("a", Reason::UnscheduledTerminating)],
                None,
            ),
            (
                "terminated beyond threshold: evicted first, then oldest",
                vec![
                    pod("new", Some("ready"), "Succeeded", None, 30),
                    pod("old", Some("ready"), "Failed", None, 10),
                    pod("mid", Some("ready"), "Succeeded", None, 20),
                    PodFacts {
                        evicted: true,
                        ..pod("ev", Some("ready"), "Failed", None, 40)
                    },
                    pod("run", Some("ready"), "Running", None, 1),
                ],
                2,
                vec![("ev", Reason::Terminated), ("old", Reason::Terminated)],
                None,
            ),
            (
                "threshold 0 disables",
                vec![pod("a", Some("ready"), "Succeeded", None, 1)],
                0,
                vec![],
                None,
            ),
            (
                "each pod once, first reason wins",
                vec![pod("a", Some("deleted"), "Failed", Some(1), 1)],
                0,
                vec![("a", Reason::Orphaned)],
                None,
            ),
        ];
        for (name, pods, threshold, want, due) in cases {
            let p = plan(&pods, &nodes, &gone, threshold, now);
            let want: Vec<(String, Reason)> =
                want.into_iter().map(|(n, r)| (n.to_string(), r)).collect();
            assert_eq!(names(&p), want, "{name}");
            assert_eq!(p.next_due, due.map(ts), "{name}: next due");
        }
        let p = plan(
            &[
                pod("a", Some("vanished"), "Running", None, 1),
                pod("b", Some("deleted"), "Running", None, 1),
            ],
            &nodes,
            &gone,
            0,
            now,
        );
        assert_eq!(
            p.missing_nodes.into_iter().collect::<Vec<_>>(),
            vec!["deleted".to_string(), "vanished".to_string()]
        );
    }

    #[test]
    fn terminated_table() {
        for (phase, want) in [
            (Some("Pending"), false),
            (Some("Running"), false),
            (Some("Unknown"), false),
            (Some("Succeeded"), true),
            (Some("Failed"), true),
            (None, true),
        ] {
            let p = PodFacts {
                phase: phase.map(Into::into),
                ..pod("a", None, "x", None, 0)
            };
            assert_eq!(p.terminated(), want, "{phase:?}");
        }
    }
}
