//! The simulation loop: one task owns all node and pod state. It reads one node watch
//! and one pod watch (pods with `spec.nodeName` set, dispatched by node name), fires
//! timers from one timing wheel (`DelayQueue`), and hands API writes to three bounded
//! lanes whose results come back to it as [`Outcome`]s. No lock guards the state:
//! only this task touches it.
//!
//! Per-node chains (Lease renewals, status posts) carry a generation number; stopping,
//! restarting or losing a node bumps it, so stale timers of an old chain do nothing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use controllers::events::{NORMAL, Recorder};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use rand::Rng;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::ipam::{self, Pool};
use crate::objects::{self, PodInfo};

/// Most events waiting to be recorded; more are dropped (events are best effort).
const MAX_QUEUED_EVENTS: usize = 10_000;
/// Retry delay of a failed write.
const RETRY: Duration = Duration::from_secs(1);
/// How long shutdown waits for in-flight writes.
const DRAIN: Duration = Duration::from_secs(5);

/// Counters shared with [`crate::Control`].
#[derive(Default)]
pub(crate) struct Counters {
    pub registered: AtomicU64,
    pub failed: AtomicU64,
    pub running: AtomicU64,
    pub started: AtomicU64,
    pub deleted: AtomicU64,
    pub errors: AtomicU64,
    pub events_dropped: AtomicU64,
}

fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

fn dec(a: &AtomicU64) {
    // Saturating: a counter never wraps below zero.
    let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
}

/// Requests from [`crate::Control`].
pub(crate) enum Command {
    /// Stop one node (or all).
    Fail(Option<usize>),
    /// Bring one node (or all) back.
    Recover(Option<usize>),
    /// Stop the healthy node with the lowest index.
    FailNext,
}

/// Timers.
enum Job {
    Register(usize),
    Lease(usize, u32),
    Status(usize, u32),
    CidrDeadline(usize),
    Start(String),
    Terminate(String),
    Complete(String),
    Fail(Option<usize>),
}

/// The lanes writes wait in; each has its own concurrency budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    Node = 0,
    Pod = 1,
    Event = 2,
}

/// How a pod write ended.
enum Res {
    Ok,
    /// The pod (or node) is gone, or was replaced by another with the same name.
    Gone,
    Err(String),
}

fn res<T>(r: Result<T, kube::Error>) -> Res {
    match r {
        Ok(_) => Res::Ok,
        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => Res::Gone,
        Err(e) => Res::Err(e.to_string()),
    }
}

/// Results of writes, handled by the loop.
enum Outcome {
    Registered {
        idx: usize,
        uid: String,
        cidrs: Vec<String>,
    },
    RegisterFailed {
        idx: usize,
        error: String,
    },
    Lease {
        idx: usize,
        generation: u32,
        ok: bool,
    },
    Status {
        idx: usize,
        generation: u32,
        result: Res,
    },
    Started {
        uid: String,
        started: Timestamp,
        result: Res,
    },
    Terminated {
        uid: String,
        result: Res,
    },
    Completed {
        uid: String,
        result: Res,
    },
    Recorded,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Registration {
    Unregistered,
    Registering,
    Registered,
}

struct NodeState {
    name: String,
    /// Index over all sim processes (`--first-index` + position), for the fallback range.
    global_index: u64,
    ip: Ipv4Addr,
    boot_id: String,
    reg: Registration,
    uid: Option<String>,
    attempts: u32,
    failed: bool,
    lease_gen: u32,
    status_gen: u32,
    ready_since: Timestamp,
    /// The CIDRs the pools were made from (`spec.podCIDRs`, or the fallback).
    cidrs: Vec<String>,
    pools: Vec<Pool>,
    /// When a pod first needed an address while the node had no podCIDR.
    cidr_wait_since: Option<Instant>,
    deadline_armed: bool,
    /// Pods waiting for a podCIDR.
    waiting: Vec<String>,
    /// Uids of the pods bound to this node.
    pods: HashSet<String>,
}

impl NodeState {
    fn bump(&mut self) {
        self.lease_gen = self.lease_gen.wrapping_add(1);
        self.status_gen = self.status_gen.wrapping_add(1);
    }

    fn release(&mut self, ips: &[IpAddr]) {
        for ip in ips {
            for p in &mut self.pools {
                p.release(*ip);
            }
        }
    }

    fn reserve(&mut self, ips: &[IpAddr]) {
        for ip in ips {
            for p in &mut self.pools {
                if p.reserve(*ip) {
                    break;
                }
            }
        }
    }

    /// Use the node's own range from `--fallback-pod-cidr`.
    fn use_fallback(&mut self, cfg: &Config) -> bool {
        let prefix = match cfg.fallback_pod_cidr {
            ipnet::IpNet::V4(_) => 24,
            ipnet::IpNet::V6(_) => 64,
        };
        match ipam::nth_subnet(cfg.fallback_pod_cidr, prefix, self.global_index) {
            Some(net) => {
                warn!(
                    node = %self.name,
                    "node has no spec.podCIDR after {:?}; using {net} from --fallback-pod-cidr",
                    cfg.pod_cidr_wait
                );
                self.cidrs = vec![net.to_string()];
                self.pools = vec![Pool::new(net)];
                true
            }
            None => {
                warn!(node = %self.name, "--fallback-pod-cidr {} has no /{prefix} for this node", cfg.fallback_pod_cidr);
                false
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PodState {
    /// Nothing under way (new, or work was dropped while the node was stopped).
    New,
    /// Waiting to be reported Running.
    Starting,
    Running,
    /// Being terminated by the node.
    Terminating,
    /// The node deleted it (or found it gone); waiting for the watch to drop it.
    Gone,
    /// Succeeded or Failed.
    Done,
}

struct PodEntry {
    node: usize,
    info: PodInfo,
    state: PodState,
    /// Addresses held for the pod (from the node's pools, or the node's own for
    /// host-network pods).
    ips: Vec<IpAddr>,
    started_at: Option<Timestamp>,
}

/// Moves `e` to `next`, keeping the running counter right.
fn transition(counters: &Counters, e: &mut PodEntry, next: PodState) {
    if e.state == PodState::Running && next != PodState::Running {
        dec(&counters.running);
    }
    if e.state != PodState::Running && next == PodState::Running {
        inc(&counters.running);
    }
    e.state = next;
}

fn jitter(d: Duration) -> Duration {
    // Like client-go's JitterUntil with factor 0.04: up to 4% later, never earlier.
    d.mul_f64(1.0 + rand::rng().random_range(0.0..0.04))
}

fn elapsed_since(t: Timestamp) -> Duration {
    let d: SignedDuration = Timestamp::now().duration_since(t);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

struct Engine {
    client: kube::Client,
    cfg: Arc<Config>,
    by_name: Arc<HashMap<String, usize>>,
    counters: Arc<Counters>,
    nodes: Vec<NodeState>,
    pods: HashMap<String, PodEntry>,
    timers: DelayQueue<Job>,
    queues: [VecDeque<BoxFuture<'static, Outcome>>; 3],
    in_flight: [usize; 3],
    tasks: JoinSet<(Lane, Outcome)>,
    /// Objects listed since the last watch (re)start, to find what went away meanwhile.
    pods_seen: Option<HashSet<String>>,
    nodes_seen: Option<HashSet<usize>>,
}

pub(crate) async fn run(
    client: kube::Client,
    cfg: Arc<Config>,
    by_name: Arc<HashMap<String, usize>>,
    counters: Arc<Counters>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    shutdown: CancellationToken,
) {
    let run_id = format!("{:x}", Timestamp::now().as_nanosecond());
    let now = Timestamp::now();
    let nodes = cfg
        .names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let global_index = cfg.first_index + i as u64;
            NodeState {
                name: name.clone(),
                global_index,
                // Config checked that every index has an address.
                ip: ipam::node_ip(global_index).unwrap_or(ipam::NODE_IP_BASE),
                boot_id: objects::boot_id(name, &run_id),
                reg: Registration::Unregistered,
                uid: None,
                attempts: 0,
                failed: false,
                lease_gen: 0,
                status_gen: 0,
                ready_since: now,
                cidrs: Vec::new(),
                pools: Vec::new(),
                cidr_wait_since: None,
                deadline_armed: false,
                waiting: Vec::new(),
                pods: HashSet::new(),
            }
        })
        .collect();
    let mut e = Engine {
        client: client.clone(),
        cfg: cfg.clone(),
        by_name,
        counters,
        nodes,
        pods: HashMap::new(),
        timers: DelayQueue::new(),
        queues: Default::default(),
        in_flight: [0; 3],
        tasks: JoinSet::new(),
        pods_seen: None,
        nodes_seen: None,
    };
    for i in 0..e.nodes.len() {
        e.timers.insert(Job::Register(i), Duration::ZERO);
    }
    for (idx, after) in &cfg.fail_after {
        e.timers.insert(Job::Fail(*idx), *after);
    }
    let mut pod_events = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().fields("spec.nodeName!="),
    )
    .default_backoff()
    .boxed();
    let mut node_events = watcher(Api::<Node>::all(client), watcher::Config::default())
        .default_backoff()
        .boxed();
    loop {
        e.pump();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(done) = e.tasks.join_next(), if !e.tasks.is_empty() => match done {
                Ok((lane, outcome)) => {
                    e.in_flight[lane as usize] -= 1;
                    e.outcome(outcome);
                }
                Err(err) => warn!("simulation write task failed: {err}"),
            },
            Some(expired) = e.timers.next(), if !e.timers.is_empty() => e.fire(expired.into_inner()),
            Some(ev) = node_events.next() => e.node_event(ev),
            Some(ev) = pod_events.next() => e.pod_event(ev),
            Some(cmd) = commands.recv() => e.command(cmd),
        }
    }
    e.finish().await;
}

impl Engine {
    fn limit(&self, lane: Lane) -> usize {
        let n = self.cfg.max_in_flight;
        match lane {
            Lane::Node | Lane::Pod => n,
            Lane::Event => (n / 4).max(1),
        }
    }

    fn push(&mut self, lane: Lane, fut: BoxFuture<'static, Outcome>) {
        let q = &mut self.queues[lane as usize];
        if lane == Lane::Event && q.len() >= MAX_QUEUED_EVENTS {
            inc(&self.counters.events_dropped);
            return;
        }
        q.push_back(fut);
    }

    /// Start queued writes while their lane has room.
    fn pump(&mut self) {
        for lane in [Lane::Node, Lane::Pod, Lane::Event] {
            let i = lane as usize;
            while self.in_flight[i] < self.limit(lane) {
                let Some(fut) = self.queues[i].pop_front() else {
                    break;
                };
                self.in_flight[i] += 1;
                self.tasks.spawn(async move { (lane, fut.await) });
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Fail(idx) => self.fail(idx),
            Command::Recover(Some(i)) => self.recover(i),
            Command::Recover(None) => {
                for i in 0..self.nodes.len() {
                    self.recover(i);
                }
            }
            Command::FailNext => {
                if let Some(i) = self.nodes.iter().position(|n| !n.failed) {
                    self.fail(Some(i));
                }
            }
        }
    }

    fn fail(&mut self, idx: Option<usize>) {
        let range = match idx {
            Some(i) => i..i + 1,
            None => 0..self.nodes.len(),
        };
        for i in range {
            let Some(n) = self.nodes.get_mut(i) else {
                continue;
            };
            if n.failed {
                continue;
            }
            n.failed = true;
            n.bump();
            inc(&self.counters.failed);
            warn!(node = %n.name, "node stopped: no more Lease renewals, status updates or pod handling");
        }
    }

    fn recover(&mut self, i: usize) {
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        if !n.failed {
            return;
        }
        n.failed = false;
        n.bump();
        n.ready_since = Timestamp::now();
        dec(&self.counters.failed);
        info!(node = %n.name, "node recovered");
        match n.reg {
            Registration::Registered => {
                let message = format!("Node {} status is now: NodeReady", n.name);
                self.timers
                    .insert(Job::Lease(i, n.lease_gen), Duration::ZERO);
                self.timers
                    .insert(Job::Status(i, n.status_gen), Duration::ZERO);
                self.node_event_record(i, "NodeReady", message);
            }
            Registration::Unregistered => {
                self.timers.insert(Job::Register(i), Duration::ZERO);
            }
            Registration::Registering => {}
        }
        let uids: Vec<String> = self.nodes[i].pods.iter().cloned().collect();
        for uid in uids {
            self.reconcile_pod(&uid);
        }
    }

    fn fire(&mut self, job: Job) {
        match job {
            Job::Register(i) => self.register(i),
            Job::Lease(i, g) => self.renew_lease(i, g),
            Job::Status(i, g) => self.post_status(i, g),
            Job::CidrDeadline(i) => self.cidr_deadline(i),
            Job::Start(uid) => self.start_pod(uid),
            Job::Terminate(uid) => self.terminate_pod(uid),
            Job::Complete(uid) => self.complete_pod(uid),
            Job::Fail(idx) => self.fail(idx),
        }
    }

    fn node_status(&self, i: usize) -> k8s_openapi::api::core::v1::NodeStatus {
        let n = &self.nodes[i];
        objects::node_status(
            &self.cfg,
            &n.name,
            IpAddr::V4(n.ip),
            &n.boot_id,
            n.ready_since,
            Timestamp::now(),
        )
    }

    fn register(&mut self, i: usize) {
        let status = self.node_status(i);
        let n = &mut self.nodes[i];
        if n.failed || n.reg != Registration::Unregistered {
            return;
        }
        n.reg = Registration::Registering;
        let node = objects::node(&self.cfg, &n.name, status.clone());
        let name = n.name.clone();
        let api: Api<Node> = Api::all(self.client.clone());
        let meta = json!({"metadata": {
            "labels": objects::node_labels(&self.cfg, &name),
            "annotations": objects::node_annotations(),
        }});
        self.push(
            Lane::Node,
            async move {
                let created = match api.create(&PostParams::default(), &node).await {
                    Err(kube::Error::Api(s)) if s.is_already_exists() => {
                        // Adopt the existing Node: our labels, then our status.
                        match api
                            .patch(&name, &PatchParams::default(), &Patch::Merge(&meta))
                            .await
                        {
                            Ok(_) => {
                                let st = json!({"status": status});
                                api.patch_status(
                                    &name,
                                    &PatchParams::default(),
                                    &Patch::Strategic(&st),
                                )
                                .await
                            }
                            Err(e) => Err(e),
                        }
                    }
                    other => other,
                };
                match created {
                    Ok(n) => Outcome::Registered {
                        idx: i,
                        uid: n.metadata.uid.clone().unwrap_or_default(),
                        cidrs: objects::pod_cidrs(&n),
                    },
                    Err(e) => Outcome::RegisterFailed {
                        idx: i,
                        error: e.to_string(),
                    },
                }
            }
            .boxed(),
        );
    }

    fn renew_lease(&mut self, i: usize, generation: u32) {
        let n = &self.nodes[i];
        if n.failed || n.reg != Registration::Registered || n.lease_gen != generation {
            return;
        }
        let api: Api<Lease> = Api::namespaced(self.client.clone(), objects::LEASE_NAMESPACE);
        let name = n.name.clone();
        let uid = n.uid.clone();
        let secs = self.cfg.lease_duration_seconds;
        self.push(
            Lane::Node,
            async move {
                let now = Timestamp::now();
                let patch = objects::lease_renewal(&name, secs, now);
                let ok = match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => true,
                    Err(kube::Error::Api(s)) if s.is_not_found() => {
                        let lease = objects::lease(&name, uid.as_deref(), secs, now);
                        match api.create(&PostParams::default(), &lease).await {
                            Ok(_) => true,
                            Err(e) => {
                                debug!(node = %name, "creating lease failed: {e}");
                                false
                            }
                        }
                    }
                    Err(e) => {
                        debug!(node = %name, "renewing lease failed: {e}");
                        false
                    }
                };
                Outcome::Lease {
                    idx: i,
                    generation,
                    ok,
                }
            }
            .boxed(),
        );
    }

    fn post_status(&mut self, i: usize, generation: u32) {
        let n = &self.nodes[i];
        if n.failed || n.reg != Registration::Registered || n.status_gen != generation {
            return;
        }
        let api: Api<Node> = Api::all(self.client.clone());
        let name = n.name.clone();
        let patch = json!({"status": self.node_status(i)});
        self.push(
            Lane::Node,
            async move {
                let r = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await;
                Outcome::Status {
                    idx: i,
                    generation,
                    result: res(r),
                }
            }
            .boxed(),
        );
    }

    fn outcome(&mut self, o: Outcome) {
        match o {
            Outcome::Registered { idx, uid, cidrs } => {
                let n = &mut self.nodes[idx];
                if n.reg != Registration::Registering {
                    return;
                }
                n.reg = Registration::Registered;
                n.uid = Some(uid);
                n.attempts = 0;
                n.bump();
                inc(&self.counters.registered);
                debug!(node = %n.name, "node registered");
                if !n.failed {
                    self.timers
                        .insert(Job::Lease(idx, n.lease_gen), Duration::ZERO);
                    self.timers.insert(
                        Job::Status(idx, n.status_gen),
                        jitter(self.cfg.status_interval),
                    );
                }
                let name = n.name.clone();
                self.set_cidrs(idx, cidrs);
                self.node_event_record(idx, "Starting", "Starting kubelet.".into());
                self.node_event_record(
                    idx,
                    "NodeReady",
                    format!("Node {name} status is now: NodeReady"),
                );
            }
            Outcome::RegisterFailed { idx, error } => {
                let n = &mut self.nodes[idx];
                n.reg = Registration::Unregistered;
                n.attempts = n.attempts.saturating_add(1);
                inc(&self.counters.errors);
                let delay = Duration::from_millis(200)
                    .saturating_mul(1 << n.attempts.min(6))
                    .min(Duration::from_secs(10));
                warn!(node = %n.name, "registering node failed (retrying in {delay:?}): {error}");
                self.timers.insert(Job::Register(idx), jitter(delay));
            }
            Outcome::Lease {
                idx,
                generation,
                ok,
            } => {
                let n = &self.nodes[idx];
                if !ok {
                    inc(&self.counters.errors);
                }
                if n.lease_gen == generation && !n.failed && n.reg == Registration::Registered {
                    let next = if ok {
                        jitter(self.cfg.heartbeat_interval)
                    } else {
                        RETRY
                    };
                    self.timers.insert(Job::Lease(idx, generation), next);
                }
            }
            Outcome::Status {
                idx,
                generation,
                result,
            } => {
                let n = &self.nodes[idx];
                let next = match result {
                    Res::Ok => Some(jitter(self.cfg.status_interval)),
                    // The Node is gone: the node watch re-registers it.
                    Res::Gone => None,
                    Res::Err(e) => {
                        inc(&self.counters.errors);
                        debug!(node = %n.name, "posting node status failed: {e}");
                        Some(RETRY)
                    }
                };
                if let Some(next) = next
                    && n.status_gen == generation
                    && !n.failed
                    && n.reg == Registration::Registered
                {
                    self.timers.insert(Job::Status(idx, generation), next);
                }
            }
            Outcome::Started {
                uid,
                started,
                result,
            } => self.started(uid, started, result),
            Outcome::Terminated { uid, result } => {
                let Some(e) = self.pods.get_mut(&uid) else {
                    return;
                };
                if e.state != PodState::Terminating {
                    return;
                }
                match result {
                    Res::Ok | Res::Gone => {
                        inc(&self.counters.deleted);
                        transition(&self.counters, e, PodState::Gone);
                    }
                    Res::Err(err) => {
                        inc(&self.counters.errors);
                        debug!(pod = %e.info.name, "deleting pod failed: {err}");
                        self.timers.insert(Job::Terminate(uid), RETRY);
                    }
                }
            }
            Outcome::Completed { uid, result } => {
                let Some(e) = self.pods.get_mut(&uid) else {
                    return;
                };
                if e.state != PodState::Running {
                    return;
                }
                match result {
                    Res::Ok => {
                        transition(&self.counters, e, PodState::Done);
                        let ips = std::mem::take(&mut e.ips);
                        let idx = e.node;
                        self.nodes[idx].release(&ips);
                    }
                    Res::Gone => transition(&self.counters, e, PodState::Gone),
                    Res::Err(err) => {
                        inc(&self.counters.errors);
                        debug!(pod = %e.info.name, "completing pod failed: {err}");
                        self.timers.insert(Job::Complete(uid), RETRY);
                    }
                }
            }
            Outcome::Recorded => {}
        }
    }

    // ----- nodes seen by the watch -----

    fn node_event(&mut self, ev: Result<watcher::Event<Node>, watcher::Error>) {
        match ev {
            Err(e) => warn!("node watch: {e}"),
            Ok(watcher::Event::Init) => self.nodes_seen = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(n)) => self.apply_node(&n, true),
            Ok(watcher::Event::InitDone) => {
                let Some(seen) = self.nodes_seen.take() else {
                    return;
                };
                let missing: Vec<usize> = (0..self.nodes.len())
                    .filter(|i| self.nodes[*i].reg == Registration::Registered && !seen.contains(i))
                    .collect();
                for i in missing {
                    self.node_gone(i, None);
                }
            }
            Ok(watcher::Event::Apply(n)) => self.apply_node(&n, false),
            Ok(watcher::Event::Delete(n)) => {
                if let Some(&i) = n.metadata.name.as_ref().and_then(|nm| self.by_name.get(nm)) {
                    self.node_gone(i, n.metadata.uid.clone());
                }
            }
        }
    }

    fn apply_node(&mut self, node: &Node, listing: bool) {
        let Some(&i) = node
            .metadata
            .name
            .as_ref()
            .and_then(|nm| self.by_name.get(nm))
        else {
            return;
        };
        if listing && let Some(seen) = &mut self.nodes_seen {
            seen.insert(i);
        }
        self.set_cidrs(i, objects::pod_cidrs(node));
        let n = &mut self.nodes[i];
        if n.reg != Registration::Registered || n.failed {
            return;
        }
        if node.metadata.uid.is_some() {
            n.uid = node.metadata.uid.clone();
        }
        if objects::status_needs_update(node) {
            // Someone (the node lifecycle controller) changed our conditions: a kubelet
            // notices on its next status check and posts at once.
            n.status_gen = n.status_gen.wrapping_add(1);
            self.timers
                .insert(Job::Status(i, n.status_gen), Duration::ZERO);
        }
    }

    fn node_gone(&mut self, i: usize, uid: Option<String>) {
        let n = &mut self.nodes[i];
        if n.reg != Registration::Registered || (uid.is_some() && n.uid.is_some() && uid != n.uid) {
            return;
        }
        n.reg = Registration::Unregistered;
        n.uid = None;
        n.bump();
        // A new Node gets a new podCIDR; pods keep the addresses they have.
        n.pools.clear();
        n.cidrs.clear();
        dec(&self.counters.registered);
        if self.cfg.reregister && !n.failed {
            info!(node = %n.name, "Node deleted; registering it again");
            self.timers.insert(Job::Register(i), RETRY);
        } else {
            info!(node = %n.name, "Node deleted");
        }
    }

    /// The node's podCIDRs are `cidrs`: make pools, keep the addresses pods hold, and
    /// start the pods that waited for them.
    fn set_cidrs(&mut self, i: usize, cidrs: Vec<String>) {
        let n = &mut self.nodes[i];
        if cidrs.is_empty() || cidrs == n.cidrs {
            return;
        }
        let mut pools = Vec::new();
        for c in &cidrs {
            match c.parse::<ipnet::IpNet>() {
                Ok(net) => pools.push(Pool::new(net)),
                Err(e) => {
                    warn!(node = %n.name, "ignoring podCIDR {c:?}: {e}");
                    return;
                }
            }
        }
        n.cidrs = cidrs;
        n.pools = pools;
        let held: Vec<IpAddr> = n
            .pods
            .iter()
            .filter_map(|u| self.pods.get(u))
            .flat_map(|e| e.ips.iter().copied())
            .collect();
        n.reserve(&held);
        for uid in std::mem::take(&mut n.waiting) {
            self.timers.insert(Job::Start(uid), Duration::ZERO);
        }
    }

    fn cidr_deadline(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.deadline_armed = false;
        if n.pools.is_empty() && !n.use_fallback(&self.cfg) {
            return;
        }
        for uid in std::mem::take(&mut n.waiting) {
            self.timers.insert(Job::Start(uid), Duration::ZERO);
        }
    }

    // ----- pods seen by the watch -----

    fn pod_event(&mut self, ev: Result<watcher::Event<Pod>, watcher::Error>) {
        match ev {
            Err(e) => warn!("pod watch: {e}"),
            Ok(watcher::Event::Init) => self.pods_seen = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(p)) => {
                if let (Some(seen), Some(uid)) = (&mut self.pods_seen, &p.metadata.uid) {
                    seen.insert(uid.clone());
                }
                self.apply_pod(&p);
            }
            Ok(watcher::Event::InitDone) => {
                let Some(seen) = self.pods_seen.take() else {
                    return;
                };
                let gone: Vec<String> = self
                    .pods
                    .keys()
                    .filter(|u| !seen.contains(*u))
                    .cloned()
                    .collect();
                for uid in gone {
                    self.forget_pod(&uid);
                }
            }
            Ok(watcher::Event::Apply(p)) => self.apply_pod(&p),
            Ok(watcher::Event::Delete(p)) => {
                if let Some(uid) = &p.metadata.uid {
                    self.forget_pod(uid);
                }
            }
        }
    }

    fn apply_pod(&mut self, pod: &Pod) {
        let Some(info) = PodInfo::from_pod(pod) else {
            return;
        };
        let Some(&idx) = self.by_name.get(&info.node) else {
            return;
        };
        let uid = info.uid.clone();
        match self.pods.get_mut(&uid) {
            Some(e) => e.info = info,
            None => {
                self.nodes[idx].pods.insert(uid.clone());
                self.pods.insert(
                    uid.clone(),
                    PodEntry {
                        node: idx,
                        info,
                        state: PodState::New,
                        ips: Vec::new(),
                        started_at: None,
                    },
                );
            }
        }
        self.reconcile_pod(&uid);
    }

    fn forget_pod(&mut self, uid: &str) {
        let Some(mut e) = self.pods.remove(uid) else {
            return;
        };
        // The watch may report the deletion before our own DELETE's answer arrives:
        // a pod we were terminating counts as deleted either way (exactly once, since
        // the answer finds no entry any more).
        if e.state == PodState::Terminating {
            inc(&self.counters.deleted);
        }
        transition(&self.counters, &mut e, PodState::Gone);
        let n = &mut self.nodes[e.node];
        n.pods.remove(uid);
        if !e.info.host_network {
            n.release(&e.ips);
        }
    }

    /// Decide what the node does next for pod `uid` (level-triggered: from its latest
    /// state only).
    fn reconcile_pod(&mut self, uid: &str) {
        let Some(e) = self.pods.get_mut(uid) else {
            return;
        };
        let n = &mut self.nodes[e.node];
        if n.failed {
            return;
        }
        if let Some(grace) = e.info.deleting {
            if !matches!(e.state, PodState::Terminating | PodState::Gone) {
                transition(&self.counters, e, PodState::Terminating);
                let delay = grace.min(self.cfg.termination_delay);
                self.timers.insert(Job::Terminate(uid.to_string()), delay);
            }
            return;
        }
        if e.info.is_terminal() {
            if e.state != PodState::Done {
                transition(&self.counters, e, PodState::Done);
                if !e.info.host_network {
                    n.release(&e.ips);
                }
                e.ips.clear();
            }
            return;
        }
        if e.state != PodState::New {
            return;
        }
        let adopt = e.info.phase == "Running" && !e.info.pod_ips.is_empty();
        if adopt {
            // Running already (a previous run of the sim): keep its addresses.
            e.ips = e.info.pod_ips.clone();
            if !e.info.host_network {
                n.reserve(&e.ips);
            }
            let started = e.info.start_time.unwrap_or_else(Timestamp::now);
            e.started_at = Some(started);
            transition(&self.counters, e, PodState::Running);
            if let Some(run_for) = e.info.run_for {
                let left = run_for.saturating_sub(elapsed_since(started));
                self.timers.insert(Job::Complete(uid.to_string()), left);
            }
        } else {
            transition(&self.counters, e, PodState::Starting);
            self.timers
                .insert(Job::Start(uid.to_string()), self.cfg.startup_delay);
        }
    }

    fn start_pod(&mut self, uid: String) {
        let Some(e) = self.pods.get_mut(&uid) else {
            return;
        };
        if e.state != PodState::Starting {
            return;
        }
        let idx = e.node;
        let n = &mut self.nodes[idx];
        if n.failed {
            e.state = PodState::New;
            return;
        }
        if e.info.host_network {
            e.ips = vec![IpAddr::V4(n.ip)];
        } else if e.ips.is_empty() {
            if n.pools.is_empty() {
                let since = *n.cidr_wait_since.get_or_insert_with(Instant::now);
                let waited = since.elapsed();
                if waited < self.cfg.pod_cidr_wait || !n.use_fallback(&self.cfg) {
                    n.waiting.push(uid);
                    if !n.deadline_armed && waited < self.cfg.pod_cidr_wait {
                        n.deadline_armed = true;
                        self.timers
                            .insert(Job::CidrDeadline(idx), self.cfg.pod_cidr_wait - waited);
                    }
                    return;
                }
            }
            let mut ips = Vec::new();
            for p in &mut n.pools {
                match p.allocate() {
                    Some(ip) => ips.push(ip),
                    None => {
                        warn!(node = %n.name, pod = %e.info.name, "pod CIDR {} is exhausted; retrying", p.net());
                        n.release(&ips);
                        self.timers.insert(Job::Start(uid), Duration::from_secs(5));
                        return;
                    }
                }
            }
            e.ips = ips;
        }
        let started = Timestamp::now();
        let patch = objects::running_status(&e.info, IpAddr::V4(n.ip), &e.ips, started);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &e.info.namespace);
        let name = e.info.name.clone();
        self.push(
            Lane::Pod,
            async move {
                let r = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await;
                Outcome::Started {
                    uid,
                    started,
                    result: res(r),
                }
            }
            .boxed(),
        );
    }

    fn started(&mut self, uid: String, started: Timestamp, result: Res) {
        let Some(e) = self.pods.get_mut(&uid) else {
            return;
        };
        if e.state != PodState::Starting {
            return;
        }
        match result {
            Res::Ok => {
                inc(&self.counters.started);
                e.started_at = Some(started);
                transition(&self.counters, e, PodState::Running);
                if let Some(run_for) = e.info.run_for {
                    self.timers.insert(Job::Complete(uid.clone()), run_for);
                }
                let (info, node) = (e.info.clone(), self.nodes[e.node].name.clone());
                self.pod_events(&info, &node);
            }
            Res::Gone => transition(&self.counters, e, PodState::Gone),
            Res::Err(err) => {
                inc(&self.counters.errors);
                debug!(pod = %e.info.name, "reporting pod running failed: {err}");
                self.timers.insert(Job::Start(uid), RETRY);
            }
        }
    }

    fn terminate_pod(&mut self, uid: String) {
        let Some(e) = self.pods.get_mut(&uid) else {
            return;
        };
        if e.state != PodState::Terminating {
            return;
        }
        if self.nodes[e.node].failed {
            e.state = PodState::New;
            return;
        }
        // A pod that stays after deletion (finalizers) must be left terminal, so its
        // controller can finish with it; otherwise deleting is all the API needs.
        let terminal = (e.info.has_finalizers && !e.info.is_terminal()).then(|| {
            let now = Timestamp::now();
            objects::terminated_status(&e.info, 0, e.started_at.unwrap_or(now), now)
        });
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &e.info.namespace);
        let name = e.info.name.clone();
        self.push(
            Lane::Pod,
            async move {
                if let Some(patch) = terminal
                    && let Res::Err(err) = res(api
                        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                        .await)
                {
                    return Outcome::Terminated {
                        uid,
                        result: Res::Err(err),
                    };
                }
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                let r = api.delete(&name, &dp).await;
                Outcome::Terminated {
                    uid,
                    result: res(r),
                }
            }
            .boxed(),
        );
    }

    fn complete_pod(&mut self, uid: String) {
        let Some(e) = self.pods.get_mut(&uid) else {
            return;
        };
        if e.state != PodState::Running || e.info.deleting.is_some() {
            return;
        }
        if self.nodes[e.node].failed {
            e.state = PodState::New;
            dec(&self.counters.running);
            return;
        }
        let now = Timestamp::now();
        let patch =
            objects::terminated_status(&e.info, e.info.exit_code, e.started_at.unwrap_or(now), now);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &e.info.namespace);
        let name = e.info.name.clone();
        self.push(
            Lane::Pod,
            async move {
                let r = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await;
                Outcome::Completed {
                    uid,
                    result: res(r),
                }
            }
            .boxed(),
        );
    }

    // ----- events -----

    fn record(&mut self, host: &str, obj: ObjectReference, reason: &'static str, message: String) {
        if !self.cfg.events {
            return;
        }
        let rec = Recorder::new(self.client.clone(), "kubelet").with_host(host);
        self.push(
            Lane::Event,
            async move {
                rec.record(&obj, NORMAL, reason, &message).await;
                // Recording only queues; the lane bounds writes in flight.
                rec.flush().await;
                Outcome::Recorded
            }
            .boxed(),
        );
    }

    fn node_event_record(&mut self, i: usize, reason: &'static str, message: String) {
        let name = self.nodes[i].name.clone();
        // The kubelet refers to its node with the node name as uid.
        let obj = ObjectReference {
            kind: Some("Node".into()),
            name: Some(name.clone()),
            uid: Some(name.clone()),
            ..Default::default()
        };
        self.record(&name, obj, reason, message);
    }

    /// The kubelet's events for a started pod: per container Pulled, Created, Started.
    fn pod_events(&mut self, info: &PodInfo, node: &str) {
        let containers = info
            .init_containers
            .iter()
            .map(|c| (c, "initContainers"))
            .chain(info.containers.iter().map(|c| (c, "containers")));
        let mut out = Vec::new();
        for (c, field) in containers {
            let obj = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(info.namespace.clone()),
                name: Some(info.name.clone()),
                uid: Some(info.uid.clone()),
                field_path: Some(format!("spec.{field}{{{}}}", c.name)),
                ..Default::default()
            };
            out.push((
                obj.clone(),
                "Pulled",
                format!("Container image {:?} already present on machine", c.image),
            ));
            out.push((
                obj.clone(),
                "Created",
                format!("Created container: {}", c.name),
            ));
            out.push((obj, "Started", format!("Started container {}", c.name)));
        }
        for (obj, reason, message) in out {
            self.record(node, obj, reason, message);
        }
    }

    // ----- shutdown -----

    async fn finish(mut self) {
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN, drain).await.is_err() {
            warn!("shutting down with writes still in flight");
            self.tasks.abort_all();
        }
        if self.cfg.delete_nodes_on_exit {
            let api: Api<Node> = Api::all(self.client.clone());
            let deletes = futures::stream::iter(self.cfg.names.clone())
                .map(|name| {
                    let api = api.clone();
                    async move {
                        if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
                            debug!(node = %name, "deleting node on exit failed: {e}");
                        }
                    }
                })
                .buffer_unordered(self.cfg.max_in_flight)
                .collect::<Vec<()>>();
            if tokio::time::timeout(Duration::from_secs(30), deletes)
                .await
                .is_err()
            {
                warn!("deleting nodes on exit timed out");
            }
        }
        info!("hollow nodes stopped");
    }
}
