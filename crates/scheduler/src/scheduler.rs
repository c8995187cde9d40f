//! The scheduling loop: one task that owns the cache and the queue, applies watch
//! inputs, and schedules one pod at a time; bindings, status patches, events and
//! evictions run on their own tasks (with bounded concurrency) so the loop never
//! waits on the API server.
//!
//! A pod placed on a node is *assumed* there at once; its binding (`POST
//! pods/<name>/binding`) follows asynchronously, as upstream's binding cycle. A
//! failed binding forgets the pod from its node and puts it back with backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use controllers::events::{NORMAL, Recorder, WARNING};

use crate::algorithm::{Nominator, ScheduleError, Scheduling};
use crate::cache::{Cache, PodChange};
use crate::framework::{Events, Namespaces, PluginId, PluginSet, Profile};
use crate::informers::{self, Input, Kind, PriorityClassInfo};
use crate::model::{NodeView, PodInfo, PodRef};
use crate::preemption::{self, Pdb};
use crate::queue::{QueueConfig, QueuedPod, SchedulingQueue};

/// Longest event message upstream keeps (`NoteLengthLimit`).
const NOTE_LENGTH_LIMIT: usize = 1024;
/// How often pods stuck in unschedulablePods are checked (upstream: 30 s).
const LEFTOVER_FLUSH_PERIOD: Duration = Duration::from_secs(30);
/// Events waiting to be written; more are dropped, as upstream's broadcaster does.
const EVENT_QUEUE: usize = 4096;

/// How a scheduler instance runs.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// The `spec.schedulerName` this instance serves.
    pub scheduler_name: String,
    /// `percentageOfNodesToScore` (0: adaptive).
    pub percentage_of_nodes_to_score: u32,
    pub queue: QueueConfig,
    /// Bindings in flight at once.
    pub binding_concurrency: usize,
    /// Other writes (events, status patches, evictions) in flight at once.
    pub write_concurrency: usize,
    /// Plugins left out of the default profile.
    pub disabled_plugins: Vec<PluginId>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: "default-scheduler".into(),
            percentage_of_nodes_to_score: 0,
            queue: QueueConfig::default(),
            binding_concurrency: 64,
            write_concurrency: 32,
            disabled_plugins: Vec::new(),
        }
    }
}

impl SchedulerConfig {
    /// The profile this configuration schedules with.
    pub fn profile(&self) -> Profile {
        let mut p = Profile::new(&self.scheduler_name);
        p.percentage_of_nodes_to_score = self.percentage_of_nodes_to_score;
        for id in &self.disabled_plugins {
            p = p.without(*id);
        }
        p
    }
}

/// Truncates a message as upstream does for events and conditions.
fn truncate(msg: &str) -> String {
    if msg.len() <= NOTE_LENGTH_LIMIT {
        return msg.to_string();
    }
    let mut cut = NOTE_LENGTH_LIMIT - 4;
    while !msg.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{} ...", &msg[..cut])
}

fn pod_ref(p: &PodInfo) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(p.name.clone()),
        namespace: Some(p.namespace.clone()),
        uid: Some(p.uid.clone()),
        resource_version: (!p.resource_version.is_empty()).then(|| p.resource_version.clone()),
        ..Default::default()
    }
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Writes core/v1 Events in the background, dropping them when the queue is full.
#[derive(Clone)]
struct EventSink {
    tx: mpsc::Sender<(ObjectReference, &'static str, &'static str, String)>,
}

impl EventSink {
    fn start(
        client: Client,
        component: &str,
        concurrency: usize,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> EventSink {
        let (tx, mut rx) =
            mpsc::channel::<(ObjectReference, &'static str, &'static str, String)>(EVENT_QUEUE);
        let recorder = Recorder::new(client, component);
        let sem = Arc::new(Semaphore::new(concurrency.max(1)));
        let inner = tracker.clone();
        tracker.spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = rx.recv() => n,
                };
                let Some((obj, type_, reason, message)) = next else {
                    return;
                };
                let Ok(permit) = sem.clone().acquire_owned().await else {
                    return;
                };
                let r = recorder.clone();
                inner.spawn(async move {
                    r.record(&obj, type_, reason, &message).await;
                    drop(permit);
                });
            }
        });
        EventSink { tx }
    }

    fn send(&self, pod: &PodInfo, type_: &'static str, reason: &'static str, message: String) {
        if self
            .tx
            .try_send((pod_ref(pod), type_, reason, message))
            .is_err()
        {
            tracing::debug!(pod = %pod.key(), reason, "event queue full; event dropped");
        }
    }
}

/// A binding in flight: what to put back if it fails.
struct PendingBinding {
    qp: QueuedPod,
    /// False once the watch shows the pod bound or deleted.
    live: bool,
}

/// The scheduler's state, owned by the loop.
pub struct Scheduler {
    cfg: SchedulerConfig,
    profile: Profile,
    client: Client,
    cache: Cache,
    queue: SchedulingQueue,
    nominator: Nominator,
    namespaces: Namespaces,
    priority_classes: HashMap<String, PriorityClassInfo>,
    pdbs: HashMap<String, Pdb>,
    bindings: HashMap<String, PendingBinding>,
    pending_events: Events,
    next_start: usize,
    rng: SmallRng,
    tx: mpsc::UnboundedSender<Input>,
    bind_sem: Arc<Semaphore>,
    write_sem: Arc<Semaphore>,
    events: EventSink,
    tracker: TaskTracker,
    synced: Vec<Kind>,
}

impl Scheduler {
    fn new(
        client: Client,
        cfg: SchedulerConfig,
        profile: Profile,
        tx: mpsc::UnboundedSender<Input>,
        tracker: TaskTracker,
        shutdown: &CancellationToken,
    ) -> Scheduler {
        let events = EventSink::start(
            client.clone(),
            &cfg.scheduler_name,
            cfg.write_concurrency,
            &tracker,
            shutdown.clone(),
        );
        Scheduler {
            queue: SchedulingQueue::new(cfg.queue),
            bind_sem: Arc::new(Semaphore::new(cfg.binding_concurrency.max(1))),
            write_sem: Arc::new(Semaphore::new(cfg.write_concurrency.max(1))),
            cfg,
            profile,
            client,
            cache: Cache::new(),
            nominator: Nominator::default(),
            namespaces: Namespaces::new(),
            priority_classes: HashMap::new(),
            pdbs: HashMap::new(),
            bindings: HashMap::new(),
            pending_events: Events::NONE,
            next_start: 0,
            rng: SmallRng::from_os_rng(),
            tx,
            events,
            tracker,
            synced: Vec::new(),
        }
    }

    /// The pod's priority and whether it may preempt, resolving the PriorityClass
    /// when admission did not fill `spec.priority`.
    fn effective_priority(&self, pod: &PodInfo) -> (i32, bool) {
        let spec_never = pod.preemption_policy.as_deref() == Some("Never");
        if pod.spec_priority.is_some() {
            return (resolve_priority(pod, &self.priority_classes), spec_never);
        }
        let class = if pod.priority_class_name.is_empty() {
            self.priority_classes.values().find(|c| c.global_default)
        } else {
            self.priority_classes.get(&pod.priority_class_name)
        };
        let class_never =
            class.is_some_and(|c| c.preemption_never) && pod.preemption_policy.is_none();
        (
            resolve_priority(pod, &self.priority_classes),
            spec_never || class_never,
        )
    }

    fn all_synced(&self) -> bool {
        [
            Kind::Pods,
            Kind::Nodes,
            Kind::PriorityClasses,
            Kind::Namespaces,
            Kind::Pdbs,
        ]
        .iter()
        .all(|k| self.synced.contains(k))
    }

    fn handle(&mut self, input: Input, now: Instant) {
        match input {
            Input::PodApply(pod) => self.pod_apply(pod, now),
            Input::PodDelete(uid) => self.pod_delete(&uid),
            Input::NodeApply(view) => self.node_apply(view),
            Input::NodeDelete(name) => {
                self.cache.remove_node(&name);
            }
            Input::PriorityClassApply(name, info) => {
                self.priority_classes.insert(name, info);
            }
            Input::PriorityClassDelete(name) => {
                self.priority_classes.remove(&name);
            }
            Input::NamespaceApply(name, labels) => {
                if self.namespaces.get(&name) != Some(&labels) {
                    self.namespaces.insert(name, labels);
                    self.pending_events = self.pending_events.union(Events::NAMESPACE);
                }
            }
            Input::NamespaceDelete(name) => {
                self.namespaces.remove(&name);
            }
            Input::PdbApply(key, pdb) => {
                self.pdbs.insert(key, pdb);
            }
            Input::PdbDelete(key) => {
                self.pdbs.remove(&key);
            }
            Input::Synced(kind) => {
                tracing::debug!(?kind, "initial list done");
                self.synced.push(kind);
            }
            Input::BindDone { uid, error } => self.bind_done(&uid, error, now),
            Input::PreemptionDone(uid) => self.queue.unblock(&uid, now),
        }
    }

    fn pod_apply(&mut self, pod: PodRef, now: Instant) {
        if pod.terminal {
            self.pod_delete(&pod.uid);
            return;
        }
        if !pod.node_name.is_empty() {
            self.queue.delete(&pod.uid);
            self.nominator.remove(&pod.uid);
            if let Some(b) = self.bindings.get_mut(&pod.uid) {
                b.live = false;
            }
            let ev = match self.cache.set_pod(pod) {
                PodChange::Added => Events::POD_ADD,
                PodChange::Relabelled => Events::POD_LABEL,
                PodChange::ScaledDown => Events::POD_SCALE_DOWN,
                PodChange::Other => Events::NONE,
            };
            self.pending_events = self.pending_events.union(ev);
            return;
        }
        if self.cache.contains_pod(&pod.uid) || pod.scheduler_name != self.cfg.scheduler_name {
            // Our binding is in flight (a stale unassigned update), or not ours.
            return;
        }
        if pod.terminating {
            self.queue.delete(&pod.uid);
            self.nominator.remove(&pod.uid);
            return;
        }
        let (priority, _) = self.effective_priority(&pod);
        // An update without `nominatedNodeName` can arrive right after this scheduler
        // nominated the pod (the status patch still in flight): keep the in-memory
        // nomination then, as upstream does; outcomes and deletion clear it.
        let node = if pod.nominated_node_name.is_empty() {
            self.nominator.node_of(&pod.uid).map(str::to_string)
        } else {
            Some(pod.nominated_node_name.clone())
        };
        if let Some(node) = node {
            self.nominator.add(pod.clone(), priority, &node);
        }
        self.queue.add(pod, priority, now);
    }

    fn pod_delete(&mut self, uid: &str) {
        if self.cache.remove_pod(uid).is_some() {
            self.pending_events = self.pending_events.union(Events::POD_DELETE);
        }
        if let Some(b) = self.bindings.get_mut(uid) {
            b.live = false;
        }
        self.queue.delete(uid);
        self.nominator.forget(uid);
    }

    fn node_apply(&mut self, view: NodeView) {
        let new = view.clone();
        let ev = match self.cache.set_node(view) {
            None => Events::NODE_ADD,
            Some(old) => {
                let mut ev = Events::NONE;
                if old.allocatable != new.allocatable {
                    ev = ev.union(Events::NODE_ALLOCATABLE);
                }
                if old.labels != new.labels {
                    ev = ev.union(Events::NODE_LABEL);
                }
                if old.taints != new.taints {
                    ev = ev.union(Events::NODE_TAINT);
                }
                if old.conditions != new.conditions {
                    ev = ev.union(Events::NODE_CONDITION);
                }
                if old.unschedulable != new.unschedulable {
                    ev = ev.union(Events::NODE_UNSCHEDULABLE);
                }
                ev
            }
        };
        self.pending_events = self.pending_events.union(ev);
    }

    /// Moves unschedulable pods for the cluster events seen since the last call.
    fn apply_moves(&mut self, now: Instant) {
        if self.pending_events.is_empty() {
            return;
        }
        let interested = self.profile.interested(self.pending_events);
        self.pending_events = Events::NONE;
        if !interested.is_empty() {
            self.queue.move_all(interested, now);
        }
    }

    /// One scheduling cycle.
    fn schedule_one(&mut self, qp: QueuedPod, now: Instant) {
        let pod = qp.pod.clone();
        if pod.terminating {
            self.events.send(
                &pod,
                WARNING,
                "FailedScheduling",
                format!("skip schedule deleting pod: {}", pod.key()),
            );
            self.queue.done(&pod.uid);
            return;
        }
        if self.cache.contains_pod(&pod.uid) {
            self.queue.done(&pod.uid);
            return;
        }
        self.cache.refresh_order();
        let (priority, never) = self.effective_priority(&pod);
        let sched = Scheduling {
            profile: &self.profile,
            cache: &self.cache,
            namespaces: &self.namespaces,
            nominator: &self.nominator,
        };
        let (state, result) = sched.schedule(&pod, priority, &mut self.next_start, &mut self.rng);
        match result {
            Ok(outcome) => {
                self.cache.assume(pod.clone(), &outcome.node);
                self.nominator.remove(&pod.uid);
                self.queue.done(&pod.uid);
                self.start_binding(qp, outcome.node);
            }
            Err(ScheduleError::NoNodes) => {
                let msg = ScheduleError::NoNodes.message();
                self.queue
                    .requeue_unschedulable(&pod.uid, PluginSet::default(), now);
                self.report_failure(&pod, "Unschedulable", &msg, Some(String::new()));
            }
            Err(ScheduleError::Fit(mut fit)) => {
                let mut nominated = Some(String::new());
                if self.profile.preemption {
                    let pdbs: Vec<Pdb> = self.pdbs.values().cloned().collect();
                    let classes = &self.priority_classes;
                    let priority_of = |p: &PodInfo| resolve_priority(p, classes);
                    let outcome = preemption::preempt(
                        &sched,
                        &pod,
                        priority,
                        never,
                        &state,
                        &fit,
                        &pdbs,
                        &priority_of,
                        &mut self.rng,
                    );
                    fit.diagnosis.post_filter_msg = outcome.message.clone();
                    nominated = outcome.nominated_node.clone();
                    if let Some(node) = outcome.nominated_node.as_deref().filter(|n| !n.is_empty())
                    {
                        self.nominator.add(pod.clone(), priority, node);
                        for other in &outcome.clear_nominations {
                            self.nominator.remove(&other.uid);
                            self.patch_status(other.clone(), None, Some(String::new()));
                        }
                        if !outcome.victims.is_empty() {
                            self.nominator
                                .mark_victims(outcome.victims.iter().map(|v| v.uid.as_str()));
                            self.queue.block(&pod.uid);
                            self.evict(pod.clone(), node.to_string(), outcome.victims);
                        }
                    } else if outcome.nominated_node.as_deref() == Some("") {
                        self.nominator.remove(&pod.uid);
                    }
                }
                let msg = fit.message();
                self.queue.requeue_unschedulable(
                    &pod.uid,
                    fit.diagnosis.unschedulable_plugins,
                    now,
                );
                self.report_failure(&pod, "Unschedulable", &msg, nominated);
            }
        }
    }

    /// FailedScheduling event plus the PodScheduled=False condition.
    fn report_failure(
        &self,
        pod: &PodRef,
        reason: &'static str,
        msg: &str,
        nominated: Option<String>,
    ) {
        let msg = truncate(msg);
        tracing::debug!(pod = %pod.key(), "unable to schedule: {msg}");
        self.events
            .send(pod, WARNING, "FailedScheduling", msg.clone());
        self.patch_status(pod.clone(), Some((reason, msg)), nominated);
    }

    /// Patches the PodScheduled condition and/or `nominatedNodeName`, unless both
    /// already say so.
    fn patch_status(
        &self,
        pod: PodRef,
        condition: Option<(&'static str, String)>,
        nominated: Option<String>,
    ) {
        let status = pod.pod.status.as_ref();
        let current = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        let mut body = serde_json::Map::new();
        if let Some((reason, message)) = condition {
            let same = current.is_some_and(|c| {
                c.status == "False"
                    && c.reason.as_deref() == Some(reason)
                    && c.message.as_deref() == Some(message.as_str())
            });
            if !same {
                let transition = match current {
                    Some(c) if c.status == "False" => c.last_transition_time.clone(),
                    _ => None,
                }
                .unwrap_or(Time(Timestamp::now()));
                body.insert(
                    "conditions".into(),
                    json!([{
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": reason,
                        "message": message,
                        "lastProbeTime": null,
                        "lastTransitionTime": transition,
                    }]),
                );
            }
        }
        if let Some(node) = nominated
            && node != pod.nominated_node_name
        {
            body.insert(
                "nominatedNodeName".into(),
                if node.is_empty() {
                    serde_json::Value::Null
                } else {
                    json!(node)
                },
            );
        }
        if body.is_empty() {
            return;
        }
        let patch = json!({ "status": body });
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let sem = self.write_sem.clone();
        self.tracker.spawn(async move {
            let Ok(_permit) = sem.acquire_owned().await else {
                return;
            };
            if let Err(e) = api
                .patch_status(
                    &pod.name,
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await
                && !is_not_found(&e)
            {
                tracing::warn!(pod = %pod.key(), "updating pod status failed: {e}");
            }
        });
    }

    fn start_binding(&mut self, qp: QueuedPod, node: String) {
        let pod = qp.pod.clone();
        self.bindings
            .insert(pod.uid.clone(), PendingBinding { qp, live: true });
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let sem = self.bind_sem.clone();
        let tx = self.tx.clone();
        let events = self.events.clone();
        self.tracker.spawn(async move {
            let Ok(_permit) = sem.acquire_owned().await else {
                return;
            };
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(pod.name.clone()),
                    namespace: Some(pod.namespace.clone()),
                    uid: Some(pod.uid.clone()),
                    ..Default::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node.clone()),
                    ..Default::default()
                },
            };
            let r = api
                .create_subresource::<_, serde::de::IgnoredAny>(
                    "binding",
                    &pod.name,
                    &PostParams::default(),
                    &binding,
                )
                .await;
            let error = match r {
                Ok(_) => {
                    events.send(
                        &pod,
                        NORMAL,
                        "Scheduled",
                        format!("Successfully assigned {} to {node}", pod.key()),
                    );
                    None
                }
                Err(e) => Some(api_message(&e)),
            };
            let _ = tx.send(Input::BindDone {
                uid: pod.uid.clone(),
                error,
            });
        });
    }

    fn bind_done(&mut self, uid: &str, error: Option<String>, now: Instant) {
        let Some(b) = self.bindings.remove(uid) else {
            return;
        };
        let Some(err) = error else { return };
        tracing::info!(pod = %b.qp.pod.key(), "binding failed: {err}");
        if self.cache.forget(uid) {
            self.pending_events = self.pending_events.union(Events::POD_DELETE);
        }
        if !b.live {
            // The watch already shows the pod bound elsewhere or gone.
            return;
        }
        let pod = b.qp.pod.clone();
        self.queue.readd_after_error(b.qp, now);
        self.report_failure(&pod, "SchedulerError", &err, Some(String::new()));
    }

    /// Evicts preemption victims: DisruptionTarget condition, graceful delete and a
    /// `Preempted` event each; then lets the preemptor back into the queue.
    fn evict(&self, preemptor: PodRef, node: String, victims: Vec<PodRef>) {
        let client = self.client.clone();
        let tx = self.tx.clone();
        let events = self.events.clone();
        let sem = self.write_sem.clone();
        let scheduler = self.cfg.scheduler_name.clone();
        self.tracker.spawn(async move {
            for v in victims {
                if v.terminating {
                    continue;
                }
                let Ok(permit) = sem.clone().acquire_owned().await else { break };
                let api: Api<Pod> = Api::namespaced(client.clone(), &v.namespace);
                let condition = json!({"status": {"conditions": [{
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "PreemptionByScheduler",
                    "message": format!("{scheduler}: preempting to accommodate a higher priority pod"),
                    "lastTransitionTime": Time(Timestamp::now()),
                }]}});
                let r = api.patch_status(&v.name, &PatchParams::default(), &Patch::Strategic(&condition)).await;
                let deleted = match r {
                    Err(e) if is_not_found(&e) => false,
                    Err(e) => {
                        tracing::warn!(pod = %v.key(), "marking preemption victim failed: {e}");
                        false
                    }
                    Ok(_) => match api.delete(&v.name, &DeleteParams::default()).await {
                        Ok(_) => true,
                        Err(e) => {
                            if !is_not_found(&e) {
                                tracing::warn!(pod = %v.key(), "deleting preemption victim failed: {e}");
                            }
                            false
                        }
                    },
                };
                drop(permit);
                if deleted {
                    events.send(&v, NORMAL, "Preempted", format!("Preempted by pod {} on node {node}", preemptor.uid));
                }
            }
            let _ = tx.send(Input::PreemptionDone(preemptor.uid.clone()));
        });
    }

    /// Runs the loop until `shutdown`.
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>, shutdown: CancellationToken) {
        let mut next_leftover = Instant::now() + LEFTOVER_FLUSH_PERIOD;
        let mut since_yield = 0u32;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let now = Instant::now();
            loop {
                match rx.try_recv() {
                    Ok(input) => self.handle(input, now),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            self.apply_moves(now);
            if self.all_synced() {
                if now >= next_leftover {
                    self.queue.flush(now);
                    next_leftover = now + LEFTOVER_FLUSH_PERIOD;
                } else {
                    self.queue.flush_backoff(now);
                }
                if let Some(qp) = self.queue.pop(now) {
                    self.schedule_one(qp, now);
                    since_yield += 1;
                    if since_yield >= 16 {
                        since_yield = 0;
                        tokio::task::yield_now().await;
                    }
                    continue;
                }
            }
            let wake = self
                .queue
                .next_backoff_expiry()
                .map_or(next_leftover, |t| t.min(next_leftover));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                input = rx.recv() => match input {
                    Some(i) => self.handle(i, Instant::now()),
                    None => return,
                },
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// A pod's priority from `spec.priority`, else its PriorityClass (or the global
/// default class), else 0.
pub fn resolve_priority(pod: &PodInfo, classes: &HashMap<String, PriorityClassInfo>) -> i32 {
    if let Some(p) = pod.spec_priority {
        return p;
    }
    let class = if pod.priority_class_name.is_empty() {
        classes.values().find(|c| c.global_default)
    } else {
        classes.get(&pod.priority_class_name)
    };
    class.map_or(0, |c| c.value)
}

/// Runs one scheduler (no leader election) until `shutdown`.
pub async fn run_scheduler(client: Client, cfg: SchedulerConfig, shutdown: CancellationToken) {
    let token = shutdown.child_token();
    let tracker = TaskTracker::new();
    let (tx, rx) = mpsc::unbounded_channel();
    informers::spawn_all(&client, &tx, &token, &tracker);
    let profile = cfg.profile();
    tracing::info!(scheduler = %cfg.scheduler_name, "scheduler starting");
    let scheduler = Scheduler::new(client, cfg, profile, tx, tracker.clone(), &token);
    scheduler.run(rx, token.clone()).await;
    token.cancel();
    tracker.close();
    // Writes already started finish (or fail) quickly; don't hang on a dead server.
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    tracing::info!("scheduler stopped");
}
