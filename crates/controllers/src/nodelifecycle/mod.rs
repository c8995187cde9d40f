//! The node lifecycle controller (upstream kube-controller-manager's `nodelifecycle`),
//! with taint-based eviction.
//!
//! Every `--node-monitor-period` each Node's health signals are checked: the Ready
//! condition's `lastHeartbeatTime` and the renewTime of its Lease in `kube-node-lease`.
//! If neither changed for `--node-monitor-grace-period` (`--node-startup-grace-period`
//! for a node that never posted a Ready condition), its Ready, MemoryPressure,
//! DiskPressure and PIDPressure conditions become Unknown (reason `NodeStatusUnknown`,
//! "Kubelet stopped posting node status.") through the status subresource. See
//! [`health`] for the decisions.
//!
//! The Ready condition then drives the taints:
//! * NoSchedule (on every node change): Ready=False → `node.kubernetes.io/not-ready`,
//!   Ready=Unknown → `node.kubernetes.io/unreachable`, the pressure conditions and
//!   NetworkUnavailable → their taints, `spec.unschedulable` →
//!   `node.kubernetes.io/unschedulable`; removed again when the condition clears.
//! * NoExecute (monitor pass): Ready=False → `not-ready`, Unknown → `unreachable`, each
//!   with `timeAdded`; added through a per-zone rate limit (`--node-eviction-rate` 0.1
//!   nodes/s, `--secondary-node-eviction-rate` 0.01 when a zone of more than
//!   `--large-cluster-size-threshold` nodes is partially disrupted, else 0 in a partial
//!   disruption); swapped at once between the two; removed when the node is Ready.
//!   When every zone is fully disrupted (no Ready node at all) tainting stops and the
//!   taints are removed, as upstream ("master disruption mode").
//!
//! The taints' effect on pods is the [`taint_eviction`] controller's job. When a node
//! stops being Ready the controller records `NodeNotReady` on the node and marks its pods
//! `Ready=False` (upstream `MarkPodsNotReady`, with a `NodeNotReady` Warning event on
//! each pod). New and removed nodes get `RegisteredNode` / `RemovingNode` events.

pub mod health;
pub mod informer;
pub mod taint_eviction;
pub mod taints;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::events::{NORMAL, Recorder, WARNING};
use crate::queue::WorkQueue;
use crate::{ControllerOptions, Error, is_not_found};
use health::{NoExecuteAction, NodeHealth, Tainter, ZoneState};
use informer::{Key, PodsByNode};
use taints::{NO_EXECUTE, NOT_READY, UNREACHABLE};

/// Event source component (upstream's node lifecycle controller records as this).
pub const COMPONENT: &str = "node-controller";
/// Namespace of the node heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How often rate-limited NoExecute tainting is attempted (upstream `NodeEvictionPeriod`).
const TAINTING_PERIOD: Duration = Duration::from_millis(100);
/// Attempts to update one node's health, re-reading it in between.
const HEALTH_UPDATE_ATTEMPTS: usize = 5;
/// Nodes checked concurrently in a monitor pass (upstream `nodeUpdateWorkerSize`).
const NODE_WORKERS: usize = 8;
/// Concurrent pod workers (upstream `podUpdateWorkerSize`).
const POD_WORKERS: usize = 4;

/// Settings of the node lifecycle controller (upstream flag names).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeLifecycleConfig {
    /// `--node-monitor-period` (5 s).
    pub node_monitor_period: Duration,
    /// `--node-monitor-grace-period` (40 s).
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period` (60 s).
    pub node_startup_grace_period: Duration,
    /// `--node-eviction-rate` (0.1 nodes/s per zone).
    pub node_eviction_rate: f32,
    /// `--secondary-node-eviction-rate` (0.01).
    pub secondary_node_eviction_rate: f32,
    /// `--large-cluster-size-threshold` (50).
    pub large_cluster_size_threshold: u32,
    /// `--unhealthy-zone-threshold` (0.55).
    pub unhealthy_zone_threshold: f32,
    /// Retry backoff of failed pod updates.
    pub backoff: crate::Backoff,
    /// The shared informers to watch nodes and pods through.
    pub informers: crate::informers::Informers,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        Self::from_options(&ControllerOptions::default())
    }
}

impl NodeLifecycleConfig {
    /// The periods from `opts`, upstream defaults for the rest.
    pub fn from_options(opts: &ControllerOptions) -> Self {
        NodeLifecycleConfig {
            node_monitor_period: opts.node_monitor_period,
            node_monitor_grace_period: opts.node_monitor_grace_period,
            node_startup_grace_period: opts.node_startup_grace_period,
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            large_cluster_size_threshold: 50,
            unhealthy_zone_threshold: 0.55,
            backoff: opts.backoff,
            informers: opts.informers.clone(),
        }
    }
}

#[derive(Default)]
struct Zones {
    states: HashMap<String, ZoneState>,
    tainters: HashMap<String, Tainter>,
}

struct Controller {
    client: Client,
    cfg: NodeLifecycleConfig,
    recorder: Recorder,
    nodes: crate::informers::SharedStore<Node>,
    leases: Store<Lease>,
    pods: crate::informers::SharedStore<Pod>,
    by_node: PodsByNode,
    health: Mutex<HashMap<String, NodeHealth>>,
    zones: Mutex<Zones>,
    known: Mutex<HashMap<String, Option<String>>>,
    retry_pods: Mutex<HashSet<String>>,
    node_queue: Arc<WorkQueue<String>>,
    pod_queue: Arc<WorkQueue<Key>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run the node lifecycle controller with `opts` until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    run_with_config(client, NodeLifecycleConfig::from_options(opts), shutdown).await
}

/// Run the node lifecycle controller with `cfg` until `shutdown` is cancelled.
pub async fn run_with_config(
    client: Client,
    cfg: NodeLifecycleConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let token = shutdown.child_token();
    let node_queue = WorkQueue::new(cfg.backoff);
    let pod_queue = WorkQueue::new(cfg.backoff);
    let by_node = PodsByNode::default();

    let nodes = {
        let q = node_queue.clone();
        informer::spawn_shared::<Node, _>(&cfg.informers, &client, token.clone(), move |ev, _| {
            if let watcher::Event::Apply(n) | watcher::Event::InitApply(n) = ev {
                q.add(informer::name_of(n));
            }
        })
    };
    let leases = informer::spawn(
        Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE),
        watcher::Config::default(),
        token.clone(),
        |_, _| {},
    );
    let pods = {
        let (q, idx) = (pod_queue.clone(), by_node.clone());
        informer::spawn_shared::<Pod, _>(
            &cfg.informers,
            &client,
            token.clone(),
            move |ev, store| {
                for (key, placement) in idx.apply(ev, store) {
                    if placement == informer::Placement::Moved {
                        q.add(key);
                    }
                }
            },
        )
    };
    for ready in [
        informer::wait_ready(&nodes, &token).await,
        informer::wait_ready(&leases, &token).await,
        informer::wait_ready(&pods, &token).await,
    ] {
        if !ready {
            return Ok(());
        }
    }
    info!("node lifecycle controller: started");
    let ctl = Arc::new(Controller {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        cfg,
        nodes,
        leases,
        pods,
        by_node,
        health: Mutex::new(HashMap::new()),
        zones: Mutex::new(Zones::default()),
        known: Mutex::new(HashMap::new()),
        retry_pods: Mutex::new(HashSet::new()),
        node_queue: node_queue.clone(),
        pod_queue: pod_queue.clone(),
    });

    let mut tasks = Vec::new();
    for _ in 0..NODE_WORKERS {
        let c = ctl.clone();
        tasks.push(tokio::spawn(async move { c.node_worker().await }));
    }
    for _ in 0..POD_WORKERS {
        let c = ctl.clone();
        tasks.push(tokio::spawn(async move { c.pod_worker().await }));
    }
    {
        let (c, t) = (ctl.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            while informer::sleep(TAINTING_PERIOD, &t).await {
                c.tainting_pass().await;
            }
        }));
    }
    {
        let (c, t) = (ctl.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                c.monitor_node_health().await;
                if !informer::sleep(c.cfg.node_monitor_period, &t).await {
                    break;
                }
            }
        }));
    }
    token.cancelled().await;
    node_queue.shut_down();
    pod_queue.shut_down();
    for t in tasks {
        let _ = t.await;
    }
    info!("node lifecycle controller: stopped");
    Ok(())
}

fn node_ref(name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.into()),
        uid,
        ..Default::default()
    }
}

impl Controller {
    async fn node_worker(&self) {
        while let Some(name) = self.node_queue.get().await {
            if let Err(e) = self.no_schedule_pass(&name).await {
                debug!(node = %name, error = %e, "node lifecycle: NoSchedule tainting failed");
                self.node_queue.add_rate_limited(name.clone());
            } else {
                self.node_queue.forget(&name);
            }
            self.node_queue.done(&name);
        }
    }

    async fn no_schedule_pass(&self, name: &str) -> Result<(), Error> {
        let Some(node) = self.nodes.get(&ObjectRef::new(name)) else {
            return Ok(());
        };
        let (add, remove) = health::no_schedule_diff(&node);
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let api: Api<Node> = Api::all(self.client.clone());
        // Re-judge on the live object inside the write (the cache may lag).
        taints::swap_taints(&api, name, &add, &remove).await?;
        Ok(())
    }

    async fn pod_worker(&self) {
        while let Some(key) = self.pod_queue.get().await {
            match self.process_pod(&key).await {
                Ok(()) => self.pod_queue.forget(&key),
                Err(e) => {
                    debug!(pod = %key, error = %e, "node lifecycle: marking pod not ready failed");
                    self.pod_queue.add_rate_limited(key.clone());
                }
            }
            self.pod_queue.done(&key);
        }
    }

    /// A pod newly bound to a node that is not Ready is marked not ready (upstream
    /// `processPod`).
    async fn process_pod(&self, key: &Key) -> Result<(), Error> {
        let Some(pod) = self.pods.get(&key.object_ref()) else {
            return Ok(());
        };
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return Ok(());
        };
        let ready = {
            let h = lock(&self.health);
            match h.get(&node).and_then(|h| h.ready.clone()) {
                Some(r) => r.status,
                None => return Ok(()),
            }
        };
        if ready != health::TRUE {
            mark_pod_not_ready(&self.client, &self.recorder, &pod).await?;
        }
        Ok(())
    }

    /// One pass over all nodes (upstream `monitorNodeHealth`).
    async fn monitor_node_health(self: &Arc<Self>) {
        let nodes = self.nodes.state();
        let now = Timestamp::now();
        self.classify(&nodes, now).await;

        let results: Vec<(String, bool, Option<String>)> = futures::stream::iter(
            nodes.iter().cloned(),
        )
        .map(|node| {
            let c = self.clone();
            async move {
                let name = informer::name_of(node.as_ref());
                let zone = health::zone_key(&node);
                let counts = health::counts_for_disruption(&node);
                match c.check_node(node).await {
                    Some(current) => (zone, counts, Some(current)),
                    None => (zone, false, {
                        debug!(node = %name, "node lifecycle: health update failed, skipping");
                        None
                    }),
                }
            }
        })
        .buffer_unordered(NODE_WORKERS)
        .collect()
        .await;
        let mut by_zone: HashMap<String, Vec<Option<String>>> = HashMap::new();
        for (zone, counts, current) in results {
            if counts {
                by_zone
                    .entry(zone)
                    .or_default()
                    .push(current.filter(|s| !s.is_empty()));
            }
        }
        self.handle_disruption(&by_zone, &nodes, now).await;
    }

    /// Record added and removed nodes; new ones get a zone tainter and lose stale
    /// NoExecute taints (upstream does the same on start).
    async fn classify(&self, nodes: &[Arc<Node>], now: Timestamp) {
        let current: HashMap<String, Option<String>> = nodes
            .iter()
            .map(|n| (informer::name_of(n.as_ref()), n.metadata.uid.clone()))
            .collect();
        let (added, removed) = {
            let mut known = lock(&self.known);
            let added: Vec<(String, Option<String>)> = current
                .iter()
                .filter(|(n, _)| !known.contains_key(*n))
                .map(|(n, u)| (n.clone(), u.clone()))
                .collect();
            let removed: Vec<(String, Option<String>)> = known
                .iter()
                .filter(|(n, _)| !current.contains_key(*n))
                .map(|(n, u)| (n.clone(), u.clone()))
                .collect();
            for (n, u) in &added {
                known.insert(n.clone(), u.clone());
            }
            for (n, _) in &removed {
                known.remove(n);
            }
            (added, removed)
        };
        for n in nodes {
            let zone = health::zone_key(n);
            let mut z = lock(&self.zones);
            if !z.states.contains_key(&zone) {
                z.states.insert(zone.clone(), ZoneState::Initial);
                z.tainters
                    .insert(zone, Tainter::new(self.cfg.node_eviction_rate, now));
            }
        }
        for (name, uid) in added {
            info!(node = %name, "node lifecycle: observed a new node");
            self.recorder
                .record(
                    &node_ref(&name, uid),
                    NORMAL,
                    "RegisteredNode",
                    &format!("Node {name} event: Registered Node {name} in Controller"),
                )
                .await;
            if let Some(n) = nodes
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(name.as_str()))
            {
                self.mark_reachable(n).await;
            }
        }
        for (name, uid) in removed {
            info!(node = %name, "node lifecycle: observed a node deletion");
            self.recorder
                .record(
                    &node_ref(&name, uid),
                    NORMAL,
                    "RemovingNode",
                    &format!("Node {name} event: Removing Node {name} from Controller"),
                )
                .await;
            lock(&self.health).remove(&name);
            lock(&self.retry_pods).remove(&name);
            let mut z = lock(&self.zones);
            for t in z.tainters.values_mut() {
                t.remove(&name);
            }
        }
    }

    /// Update one node's health and act on its Ready condition. Returns the Ready status
    /// after the update ("" when the node has no Ready condition), `None` on failure.
    async fn check_node(&self, node: Arc<Node>) -> Option<String> {
        let name = informer::name_of(node.as_ref());
        let api: Api<Node> = Api::all(self.client.clone());
        let mut node = node.as_ref().clone();
        let mut outcome = None;
        for attempt in 0..HEALTH_UPDATE_ATTEMPTS {
            match self.update_health(&api, &mut node).await {
                Ok(o) => {
                    outcome = Some(o);
                    break;
                }
                Err(e) => {
                    debug!(node = %name, attempt, error = %e, "node lifecycle: updating node health failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    match api.get_opt(&name).await {
                        Ok(Some(n)) => node = n,
                        Ok(None) => return None,
                        Err(e) => {
                            debug!(node = %name, error = %e, "node lifecycle: re-reading node failed");
                            return None;
                        }
                    }
                }
            }
        }
        let (observed, current) = outcome?;
        let Some(current) = current else {
            return Some(String::new());
        };
        self.taint_based_eviction(&node, &observed).await;
        let needs_retry = lock(&self.retry_pods).contains(&name);
        let became_not_ready = current.status != health::TRUE && observed == health::TRUE;
        if became_not_ready {
            info!(node = %name, "node lifecycle: node is not ready");
            self.recorder
                .record(
                    &node_ref(&name, node.metadata.uid.clone()),
                    NORMAL,
                    "NodeNotReady",
                    &format!("Node {name} status is now: NodeNotReady"),
                )
                .await;
        }
        if became_not_ready || (needs_retry && observed != health::TRUE) {
            let mut failed = false;
            for pod in self.by_node.pods_on(&name, &self.pods) {
                if let Err(e) = mark_pod_not_ready(&self.client, &self.recorder, &pod).await {
                    debug!(node = %name, error = %e, "node lifecycle: marking pods not ready failed");
                    failed = true;
                }
            }
            if failed {
                lock(&self.retry_pods).insert(name.clone());
                return Some(current.status);
            }
        }
        lock(&self.retry_pods).remove(&name);
        Some(current.status)
    }

    /// Upstream `tryUpdateNodeHealth`: returns the Ready status observed at the start
    /// ("Unknown" if none) and the Ready condition after the update.
    async fn update_health(
        &self,
        api: &Api<Node>,
        node: &mut Node,
    ) -> Result<(String, Option<NodeCondition>), Error> {
        let name = informer::name_of(node);
        let now = Timestamp::now();
        let created = node
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, |t| t.0);
        let conditions = health::node_conditions(node).to_vec();
        let ready = health::condition(&conditions, health::READY).cloned();
        let observed = ready
            .as_ref()
            .map_or(health::UNKNOWN.to_string(), |r| r.status.clone());
        let grace = if ready.is_some() {
            self.cfg.node_monitor_grace_period
        } else {
            self.cfg.node_startup_grace_period
        };
        let lease_renew = self
            .leases
            .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE))
            .and_then(|l| {
                l.spec
                    .as_ref()
                    .and_then(|s| s.renew_time.as_ref().map(|t| t.0))
            });
        let saved = lock(&self.health).get(&name).cloned();
        let mut h = health::observe(saved.as_ref(), ready.as_ref(), created, lease_renew, now);
        let mut current = ready.clone();
        if health::is_silent(&h, grace, now)
            && let Some(new) = health::silent_conditions(&conditions, created, now)
        {
            let mut updated = node.clone();
            updated
                .status
                .get_or_insert_with(Default::default)
                .conditions = Some(new);
            let written = match api
                .replace_status(&name, &PostParams::default(), &updated)
                .await
            {
                Ok(n) => n,
                Err(e) => {
                    lock(&self.health).insert(name.clone(), h);
                    return Err(e.into());
                }
            };
            info!(node = %name, "node lifecycle: node stopped posting status, Ready is Unknown");
            current = health::condition(health::node_conditions(&written), health::READY).cloned();
            h.ready = current.clone();
            h.ready_transition = now;
            *node = written;
        }
        lock(&self.health).insert(name, h);
        Ok((observed, current))
    }

    /// Upstream `processTaintBaseEviction`, on the Ready status observed at the start.
    async fn taint_based_eviction(&self, node: &Node, observed: &str) {
        let name = informer::name_of(node);
        let api: Api<Node> = Api::all(self.client.clone());
        match health::no_execute_action(observed, taints::node_taints(node)) {
            NoExecuteAction::Swap { add, remove } => {
                if let Err(e) = taints::swap_taints(
                    &api,
                    &name,
                    &[taints::taint(add, NO_EXECUTE)],
                    &[taints::taint(remove, NO_EXECUTE)],
                )
                .await
                {
                    warn!(node = %name, error = %e, "node lifecycle: swapping NoExecute taints failed, retrying next pass");
                }
            }
            NoExecuteAction::Queue { add } => {
                let zone = health::zone_key(node);
                let now = Timestamp::now();
                let mut z = lock(&self.zones);
                let Some(t) = z.tainters.get_mut(&zone) else {
                    return;
                };
                if !taints::has_taint(taints::node_taints(node), add, NO_EXECUTE) {
                    t.remove(&name);
                }
                if t.add(&name, now) {
                    debug!(node = %name, taint = add, "node lifecycle: queued for NoExecute taint");
                }
            }
            NoExecuteAction::MarkReachable => self.mark_reachable(node).await,
        }
    }

    /// Remove both NoExecute taints and forget queued tainting.
    async fn mark_reachable(&self, node: &Node) {
        let name = informer::name_of(node);
        let t = taints::node_taints(node);
        if taints::has_taint(t, UNREACHABLE, NO_EXECUTE)
            || taints::has_taint(t, NOT_READY, NO_EXECUTE)
        {
            let api: Api<Node> = Api::all(self.client.clone());
            let remove = [
                taints::taint(UNREACHABLE, NO_EXECUTE),
                taints::taint(NOT_READY, NO_EXECUTE),
            ];
            match taints::swap_taints(&api, &name, &[], &remove).await {
                Ok(true) => {
                    info!(node = %name, "node lifecycle: node is healthy again, removed NoExecute taints")
                }
                Ok(false) => {}
                Err(e) => warn!(node = %name, error = %e, "node lifecycle: removing taints failed"),
            }
        }
        let zone = health::zone_key(node);
        if let Some(t) = lock(&self.zones).tainters.get_mut(&zone) {
            t.remove(&name);
        }
    }

    /// Rate-limited NoExecute tainting (upstream `doNoExecuteTaintingPass`).
    async fn tainting_pass(&self) {
        let now = Timestamp::now();
        let due: Vec<(String, String)> = {
            let mut z = lock(&self.zones);
            z.tainters
                .iter_mut()
                .flat_map(|(zone, t)| t.take_due(now).into_iter().map(move |n| (zone.clone(), n)))
                .collect()
        };
        for (zone, name) in due {
            let ok = self.taint_now(&name).await;
            if !ok && let Some(t) = lock(&self.zones).tainters.get_mut(&zone) {
                let at = now
                    .checked_add(k8s_openapi::jiff::SignedDuration::from_millis(50))
                    .unwrap_or(now);
                t.retry(&name, at);
            }
        }
    }

    async fn taint_now(&self, name: &str) -> bool {
        let Some(node) = self.nodes.get(&ObjectRef::new(name)) else {
            return true; // gone
        };
        let Some(ready) = health::condition(health::node_conditions(&node), health::READY) else {
            return false;
        };
        let (add, opposite) = match ready.status.as_str() {
            health::FALSE => (NOT_READY, UNREACHABLE),
            health::UNKNOWN => (UNREACHABLE, NOT_READY),
            _ => return true, // Ready again: no taint
        };
        let api: Api<Node> = Api::all(self.client.clone());
        match taints::swap_taints(
            &api,
            name,
            &[taints::taint(add, NO_EXECUTE)],
            &[taints::taint(opposite, NO_EXECUTE)],
        )
        .await
        {
            Ok(changed) => {
                if changed {
                    info!(node = %name, taint = add, "node lifecycle: added NoExecute taint");
                }
                true
            }
            Err(e) => {
                warn!(node = %name, error = %e, "node lifecycle: NoExecute tainting failed");
                false
            }
        }
    }

    /// Upstream `handleDisruption`: zone states decide the tainting rates; when no zone
    /// has a Ready node, stop tainting and untaint everything.
    async fn handle_disruption(
        &self,
        by_zone: &HashMap<String, Vec<Option<String>>>,
        nodes: &[Arc<Node>],
        now: Timestamp,
    ) {
        let new_states: HashMap<String, (ZoneState, usize)> = by_zone
            .iter()
            .map(|(z, v)| {
                let statuses: Vec<Option<&str>> = v.iter().map(|s| s.as_deref()).collect();
                let (_, st) = health::zone_state(&statuses, self.cfg.unhealthy_zone_threshold);
                (z.clone(), (st, v.len()))
            })
            .collect();
        let all_are_full = new_states
            .values()
            .all(|(s, _)| *s == ZoneState::FullDisruption);
        let (entering, exiting) = {
            let mut z = lock(&self.zones);
            for k in new_states.keys() {
                z.states.entry(k.clone()).or_insert(ZoneState::Initial);
            }
            let stale: Vec<String> = z
                .states
                .keys()
                .filter(|k| !new_states.contains_key(*k))
                .cloned()
                .collect();
            for k in stale {
                z.states.remove(&k);
            }
            let all_were_full = z.states.values().all(|s| *s == ZoneState::FullDisruption);
            let mut entering = false;
            let mut exiting = false;
            if !all_are_full || !all_were_full {
                if all_are_full {
                    entering = true;
                    for t in z.tainters.values_mut() {
                        t.limiter.swap(0.0, now);
                    }
                    for s in z.states.values_mut() {
                        *s = ZoneState::FullDisruption;
                    }
                } else {
                    exiting = all_were_full;
                    let keys: Vec<String> = z.states.keys().cloned().collect();
                    for k in keys {
                        let (new, size) = new_states
                            .get(&k)
                            .copied()
                            .unwrap_or((ZoneState::Normal, 0));
                        if !exiting && z.states.get(&k) == Some(&new) {
                            continue;
                        }
                        let rate = health::zone_rate(
                            new,
                            size,
                            self.cfg.node_eviction_rate,
                            self.cfg.secondary_node_eviction_rate,
                            self.cfg.large_cluster_size_threshold,
                        );
                        if let Some(t) = z.tainters.get_mut(&k) {
                            t.limiter.swap(rate, now);
                        }
                        info!(zone = %k.replace('\0', ""), state = ?new, "node lifecycle: zone state changed");
                        z.states.insert(k, new);
                    }
                }
            }
            (entering, exiting)
        };
        if entering {
            warn!(
                "node lifecycle: no node is Ready, entering master disruption mode (no evictions)"
            );
            for n in nodes {
                self.mark_reachable(n).await;
            }
        }
        if exiting {
            info!("node lifecycle: some nodes are Ready again, exiting master disruption mode");
            let mut h = lock(&self.health);
            for v in h.values_mut() {
                v.probe = now;
                v.ready_transition = now;
            }
        }
    }
}

/// Set the pod's Ready condition to False (upstream `MarkPodsNotReady`, one pod) and
/// record a `NodeNotReady` Warning on it.
async fn mark_pod_not_ready(client: &Client, recorder: &Recorder, pod: &Pod) -> Result<(), Error> {
    let Some(ready) = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
    else {
        return Ok(());
    };
    if ready.status == "False" {
        return Ok(());
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut cond = ready.clone();
    cond.status = "False".into();
    cond.last_transition_time = Some(Time(Timestamp::now()));
    let patch = json!({
        "metadata": {"uid": pod.metadata.uid},
        "status": {"conditions": [cond]},
    });
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    debug!(pod = %format!("{ns}/{name}"), "node lifecycle: marked pod not ready");
    recorder
        .record(
            &crate::events::object_ref(pod),
            WARNING,
            "NodeNotReady",
            "Node is not ready",
        )
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented defaults: 5 s monitor period, 40 s grace, 60 s startup grace,
    /// 0.1 nodes/s eviction rate.
    #[test]
    fn defaults_match_upstream() {
        let c = NodeLifecycleConfig::default();
        assert_eq!(c.node_monitor_period, Duration::from_secs(5));
        assert_eq!(c.node_monitor_grace_period, Duration::from_secs(40));
        assert_eq!(c.node_startup_grace_period, Duration::from_secs(60));
        assert_eq!(c.node_eviction_rate, 0.1);
        assert_eq!(c.secondary_node_eviction_rate, 0.01);
        assert_eq!(c.large_cluster_size_threshold, 50);
        assert_eq!(c.unhealthy_zone_threshold, 0.55);
    }
}
