//! The garbage collector (upstream kube-controller-manager's `garbagecollector`).
//!
//! * **Monitors**: every resource served with `list`, `watch` and `delete` (preferred
//!   versions, custom resources included) is watched metadata-only; discovery is re-run
//!   every [`ControllerOptions::discovery_period`] to start monitors for new resources
//!   (new CRDs) and stop those of vanished ones. The events feed the [`graph::Graph`],
//!   which only decides which object uids to queue.
//! * **Workers** take uids from the queue and reconcile them against the live objects:
//!   - an object being deleted with the `orphan` finalizer: its reference is removed from
//!     every dependent, then the finalizer from the object;
//!   - an object being deleted with the `foregroundDeletion` finalizer: its dependents are
//!     deleted; once none with `blockOwnerDeletion: true` remains the finalizer is removed;
//!   - any other object with owner references: every owner is looked up live (by kind,
//!     name and uid); with no live owner the object is deleted (background, unless its
//!     own finalizers say otherwise, or foreground when an owner waits for it and it has
//!     dependents), with some live owner only the references to the others are removed.
//!
//! Writes are merge patches carrying `uid` and `resourceVersion`, deletes carry uid and
//! resourceVersion preconditions, so a concurrent change makes them fail (409) and the
//! uid is retried with backoff after re-reading. 404 means the work is already done.

pub mod decide;
pub mod graph;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::core::{DynamicObject, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::discovery::{Discovered, ServedResource, discover};
use crate::queue::WorkQueue;
use crate::{ControllerOptions, Error, is_conflict, is_not_found};
use decide::{Decision, DeletingAction, OwnerState};
use graph::{FOREGROUND_FINALIZER, Graph, Node, ORPHAN_FINALIZER, Uid};

/// Verbs a resource needs for the collector to monitor it.
const MONITOR_VERBS: [&str; 3] = ["list", "watch", "delete"];
/// Attempts of one read-modify-patch before giving the key back to the queue.
const PATCH_ATTEMPTS: usize = 5;
/// Dependents patched concurrently while orphaning.
const PATCH_CONCURRENCY: usize = 8;
/// How soon to look again at work that waits for the graph to sync.
const UNSYNCED_RETRY: Duration = Duration::from_millis(500);
/// Safety re-check of an owner waiting for its blocking dependents.
const WAITING_RECHECK: Duration = Duration::from_secs(30);

struct Monitor {
    resource: Arc<ServedResource>,
    stop: CancellationToken,
}

/// Shared state of a running collector.
struct GarbageCollector {
    client: Client,
    graph: Mutex<Graph>,
    discovered: RwLock<Arc<Discovered>>,
    monitors: Mutex<HashMap<String, Monitor>>,
    queue: Arc<WorkQueue<Uid>>,
    shutdown: CancellationToken,
    cache_sync_timeout: Duration,
}

/// Run the garbage collector until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let gc = Arc::new(GarbageCollector {
        client,
        graph: Mutex::new(Graph::new()),
        discovered: RwLock::new(Arc::new(Discovered::default())),
        monitors: Mutex::new(HashMap::new()),
        queue: WorkQueue::new(opts.backoff),
        shutdown: shutdown.clone(),
        cache_sync_timeout: opts.cache_sync_timeout,
    });
    let mut tasks = JoinSet::new();

    // Initial discovery: retried until it works, the monitors need it.
    let mut failures = 0u32;
    loop {
        match gc.sync_monitors(&mut tasks).await {
            Ok(()) => break,
            Err(e) => {
                let delay = opts.backoff.delay(failures).max(Duration::from_millis(200));
                failures += 1;
                warn!(error = %e, "garbage collector: initial discovery failed, retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }

    // Wait for the monitors' first lists before acting (bounded, as upstream).
    let synced = tokio::time::timeout(opts.cache_sync_timeout, async {
        while !gc.graph().all_synced() && !shutdown.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if synced.is_err() {
        warn!(
            "garbage collector: not all monitors synced in time, starting anyway (orphaning waits for them)"
        );
    }
    info!(objects = gc.graph().len(), "garbage collector: started");

    for _ in 0..opts.gc_workers.max(1) {
        let gc = gc.clone();
        tasks.spawn(async move { gc.worker().await });
    }

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(opts.discovery_period) => {
                if let Err(e) = gc.sync_monitors(&mut tasks).await {
                    warn!(error = %e, "garbage collector: discovery failed, keeping current monitors");
                }
            }
            Some(res) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = res {
                    warn!(error = %e, "garbage collector: task ended abnormally");
                }
            }
        }
    }
    gc.queue.shut_down();
    for m in gc.lock_monitors().values() {
        m.stop.cancel();
    }
    while tasks.join_next().await.is_some() {}
    info!("garbage collector: stopped");
    Ok(())
}

fn dynamic_api(client: &Client, r: &ServedResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) if r.namespaced => Api::namespaced_with(client.clone(), ns, &r.api),
        _ => Api::all_with(client.clone(), &r.api),
    }
}

/// How a patch helper ended.
enum Patched {
    Done,
    Gone,
}

impl GarbageCollector {
    fn graph(&self) -> MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_monitors(&self) -> MutexGuard<'_, HashMap<String, Monitor>> {
        self.monitors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn discovered(&self) -> Arc<Discovered> {
        self.discovered
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the graph can be trusted to list all dependents: every monitor listed
    /// once, or the ones that did not have been trying longer than the sync timeout
    /// (then, like upstream, the collector proceeds rather than stalling forever).
    fn graph_ready(&self) -> bool {
        let unsynced = self.graph().unsynced();
        if unsynced.is_empty() {
            return true;
        }
        let stale = unsynced
            .iter()
            .all(|(_, since)| since.is_some_and(|t| t.elapsed() >= self.cache_sync_timeout));
        if stale {
            let keys: Vec<&str> = unsynced.iter().map(|(k, _)| k.as_str()).collect();
            warn!(resources = ?keys, "garbage collector: proceeding although these monitors never synced");
        }
        stale
    }

    fn enqueue(&self, uids: impl IntoIterator<Item = Uid>) {
        for u in uids {
            self.queue.add(u);
        }
    }

    /// Re-run discovery and start/stop monitors to match it.
    async fn sync_monitors(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Result<(), Error> {
        let d = discover(&self.client).await?;
        for (gv, e) in &d.failed {
            warn!(group_version = %gv, error = %e, "garbage collector: discovery failed for group version");
        }
        let wanted: HashMap<String, Arc<ServedResource>> = d
            .preferred
            .iter()
            .filter(|r| r.supports(&MONITOR_VERBS))
            .map(|r| (r.key(), r.clone()))
            .collect();
        *self.discovered.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(d.clone());

        let mut monitors = self.lock_monitors();
        let stale: Vec<String> = monitors
            .iter()
            .filter(|(k, m)| {
                // Keep monitors of group versions that failed discovery this round.
                !wanted.contains_key(*k) && !d.failed.contains_key(&m.resource.api.api_version)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            if let Some(m) = monitors.remove(&k) {
                info!(resource = %k, "garbage collector: stopping monitor");
                m.stop.cancel();
                let uids = self.graph().remove_resource(&k);
                self.enqueue(uids);
            }
        }
        for (k, r) in wanted {
            if monitors.contains_key(&k) {
                continue;
            }
            debug!(resource = %k, "garbage collector: starting monitor");
            self.graph().add_resource(&k, Instant::now());
            let stop = self.shutdown.child_token();
            monitors.insert(
                k,
                Monitor {
                    resource: r.clone(),
                    stop: stop.clone(),
                },
            );
            let gc = self.clone();
            tasks.spawn(async move { gc.monitor(r, stop).await });
        }
        Ok(())
    }

    /// Metadata watch of one resource feeding the graph.
    async fn monitor(self: Arc<Self>, r: Arc<ServedResource>, stop: CancellationToken) {
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(self.client.clone(), &r.api);
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        loop {
            let ev = tokio::select! {
                _ = stop.cancelled() => break,
                ev = stream.next() => ev,
            };
            match ev {
                Some(Ok(ev)) => {
                    let uids = self.graph().apply_event(&r, &ev);
                    self.enqueue(uids);
                }
                Some(Err(e)) => {
                    if self.graph().is_synced(&r.key()) {
                        debug!(resource = %r.key(), error = %e, "garbage collector: watch error");
                    } else {
                        warn!(resource = %r.key(), error = %e, "garbage collector: cannot list resource");
                    }
                }
                None => break,
            }
        }
    }

    async fn worker(self: Arc<Self>) {
        while let Some(uid) = self.queue.get().await {
            match self.reconcile(&uid).await {
                Ok(None) => self.queue.forget(&uid),
                Ok(Some(after)) => {
                    self.queue.forget(&uid);
                    self.queue.add_after(uid.clone(), after);
                }
                Err(e) => {
                    let failures = self.queue.failures(&uid);
                    if failures > 5 {
                        warn!(uid = %uid, error = %e, failures, "garbage collector: sync failed");
                    } else {
                        debug!(uid = %uid, error = %e, "garbage collector: sync failed, retrying");
                    }
                    self.queue.add_rate_limited(uid.clone());
                }
            }
            self.queue.done(&uid);
        }
    }

    /// Examine one object; `Ok(Some(d))` asks to look again after `d`.
    async fn reconcile(&self, uid: &str) -> Result<Option<Duration>, Error> {
        let Some(node) = self.graph().node(uid).cloned() else {
            return Ok(None); // gone from the graph: its removal already queued what matters
        };
        let api = dynamic_api(&self.client, &node.resource, node.namespace.as_deref());
        let live = api.get_metadata_opt(&node.name).await?;
        let Some(live) = live.filter(|l| l.metadata.uid.as_deref() == Some(uid)) else {
            // Deleted (or replaced) and the watch has not told us yet.
            let deps = self.graph().dependents(uid);
            self.enqueue(deps.into_iter().map(|n| n.uid));
            return Ok(None);
        };
        let meta = live.metadata;
        match decide::deleting_action(&meta) {
            Some(DeletingAction::OrphanDependents) => {
                return self.orphan_dependents(&node, &api).await;
            }
            Some(DeletingAction::DeleteDependents) => {
                return self.delete_dependents(&node, &api).await;
            }
            Some(DeletingAction::Wait) => return Ok(None),
            None => {}
        }
        let refs = meta.owner_references.clone().unwrap_or_default();
        if refs.is_empty() {
            return Ok(None);
        }
        let mut classified = Vec::with_capacity(refs.len());
        for r in refs {
            let Some(state) = self.classify(&node, &r).await? else {
                return Ok(None);
            };
            classified.push((r, state));
        }
        let deps = self.graph().dependents(uid);
        let dep_fg = deps.iter().any(Node::deleting_dependents);
        let decision = decide::decide(
            &classified,
            meta.finalizers.as_deref().unwrap_or_default(),
            !deps.is_empty(),
            dep_fg,
        );
        debug!(uid, name = %node.name, resource = %node.resource.key(), ?decision, "garbage collector: decided");
        match decision {
            Decision::Keep => Ok(None),
            Decision::RemoveReferences(uids) => {
                self.patch_live(&api, &node, |m| decide::remove_owner_refs_patch(m, &uids))
                    .await?;
                Ok(None)
            }
            Decision::DeleteForeground { unblock } => {
                if unblock {
                    self.patch_live(&api, &node, decide::unblock_owner_refs_patch)
                        .await?;
                }
                self.delete(&api, &node, &meta, PropagationPolicy::Foreground)
                    .await
            }
            Decision::Delete(policy) => self.delete(&api, &node, &meta, policy).await,
        }
    }

    /// Look the owner of `r` up live. `None`: the reference can never resolve (a
    /// cluster-scoped object naming a namespaced owner), which upstream ignores.
    async fn classify(&self, node: &Node, r: &OwnerReference) -> Result<Option<OwnerState>, Error> {
        let Some(owner) = self.discovered().resolve(&r.api_version, &r.kind) else {
            return Err(Error::UnknownKind {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
            });
        };
        if owner.namespaced && node.namespace.is_none() {
            warn!(name = %node.name, owner = %r.name, kind = %r.kind, "garbage collector: cluster-scoped object refers to a namespaced owner, ignored");
            return Ok(None);
        }
        let api = dynamic_api(&self.client, &owner, node.namespace.as_deref());
        let found = api.get_metadata_opt(&r.name).await?;
        Ok(Some(match found {
            Some(o) if o.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
                if decide::deleting_action(&o.metadata) == Some(DeletingAction::DeleteDependents) {
                    OwnerState::WaitingForDependents
                } else {
                    OwnerState::Solid
                }
            }
            _ => OwnerState::Dangling,
        }))
    }

    async fn delete(
        &self,
        api: &Api<DynamicObject>,
        node: &Node,
        meta: &ObjectMeta,
        policy: PropagationPolicy,
    ) -> Result<Option<Duration>, Error> {
        info!(name = %node.name, namespace = ?node.namespace, resource = %node.resource.key(), ?policy, "garbage collector: deleting object");
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            ..DeleteParams::default()
        }
        .preconditions(Preconditions {
            uid: Some(node.uid.clone()),
            resource_version: meta.resource_version.clone(),
        });
        match api.delete(&node.name, &dp).await {
            Ok(_) => Ok(None),
            Err(e) if is_not_found(&e) => {
                let deps = self.graph().dependents(&node.uid);
                self.enqueue(deps.into_iter().map(|n| n.uid));
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Read-modify-patch of a node's live metadata, retried on conflicts.
    async fn patch_live(
        &self,
        api: &Api<DynamicObject>,
        node: &Node,
        make: impl Fn(&ObjectMeta) -> Option<Value>,
    ) -> Result<Patched, Error> {
        for _ in 0..PATCH_ATTEMPTS {
            let Some(live) = api.get_metadata_opt(&node.name).await? else {
                return Ok(Patched::Gone);
            };
            if live.metadata.uid.as_deref() != Some(node.uid.as_str()) {
                return Ok(Patched::Gone);
            }
            let Some(patch) = make(&live.metadata) else {
                return Ok(Patched::Done);
            };
            match api
                .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(Patched::Done),
                Err(e) if is_not_found(&e) => return Ok(Patched::Gone),
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Conflict(format!(
            "{} {}",
            node.resource.key(),
            node.name
        )))
    }

    /// Orphan policy: release every dependent, then drop the `orphan` finalizer.
    async fn orphan_dependents(
        &self,
        owner: &Node,
        owner_api: &Api<DynamicObject>,
    ) -> Result<Option<Duration>, Error> {
        if !self.graph_ready() {
            // An unsynced monitor may hide dependents that would be deleted as dangling.
            return Ok(Some(UNSYNCED_RETRY));
        }
        let deps = self.graph().dependents(&owner.uid);
        let owner_uid = vec![owner.uid.clone()];
        let errors: Vec<String> = futures::stream::iter(deps)
            .map(|d| {
                let owner_uid = &owner_uid;
                async move {
                    let api = dynamic_api(&self.client, &d.resource, d.namespace.as_deref());
                    self.patch_live(&api, &d, |m| decide::remove_owner_refs_patch(m, owner_uid))
                        .await
                        .map_err(|e| format!("orphaning {} {}: {e}", d.resource.key(), d.name))
                }
            })
            .buffer_unordered(PATCH_CONCURRENCY)
            .filter_map(|r| async move { r.err() })
            .collect()
            .await;
        if !errors.is_empty() {
            return Err(Error::Several(errors.join("; ")));
        }
        info!(name = %owner.name, namespace = ?owner.namespace, resource = %owner.resource.key(), "garbage collector: dependents orphaned");
        self.patch_live(owner_api, owner, |m| {
            decide::remove_finalizer_patch(m, ORPHAN_FINALIZER)
        })
        .await?;
        Ok(None)
    }

    /// Foreground policy: wait until no blocking dependent remains, then drop the
    /// `foregroundDeletion` finalizer. Dependents are queued to be deleted.
    async fn delete_dependents(
        &self,
        owner: &Node,
        owner_api: &Api<DynamicObject>,
    ) -> Result<Option<Duration>, Error> {
        let deps = self.graph().dependents(&owner.uid);
        let blocking = deps.iter().filter(|d| d.blocks(&owner.uid)).count();
        if blocking == 0 {
            if !self.graph_ready() {
                return Ok(Some(UNSYNCED_RETRY));
            }
            info!(name = %owner.name, namespace = ?owner.namespace, resource = %owner.resource.key(), "garbage collector: no blocking dependents left, finishing foreground deletion");
            self.patch_live(owner_api, owner, |m| {
                decide::remove_finalizer_patch(m, FOREGROUND_FINALIZER)
            })
            .await?;
            return Ok(None);
        }
        debug!(name = %owner.name, blocking, "garbage collector: waiting for blocking dependents");
        self.enqueue(
            deps.into_iter()
                .filter(|d| !d.deleting_dependents())
                .map(|d| d.uid),
        );
        Ok(Some(WAITING_RECHECK))
    }
}
