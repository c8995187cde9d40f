//! Watches that feed the scheduling loop.
//!
//! Each watch runs on its own task (kube-runtime's `watcher`, which lists, watches,
//! and relists after errors with backoff) and turns objects into [`Input`]s: pods
//! are parsed into [`PodInfo`] right here, off the scheduling loop, so the loop only
//! does bookkeeping. After a relist, objects that vanished meanwhile are reported as
//! deleted, and the first complete list of each kind is reported as synced.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::model::{NodeView, PodInfo, PodRef};
use crate::preemption::Pdb;

/// A PriorityClass as the scheduler needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorityClassInfo {
    pub value: i32,
    pub global_default: bool,
    pub preemption_never: bool,
}

/// The kinds of object watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Pods,
    Nodes,
    PriorityClasses,
    Namespaces,
    Pdbs,
}

/// What reaches the scheduling loop.
#[derive(Debug)]
pub enum Input {
    PodApply(PodRef),
    /// By UID.
    PodDelete(String),
    NodeApply(NodeView),
    NodeDelete(String),
    PriorityClassApply(String, PriorityClassInfo),
    PriorityClassDelete(String),
    NamespaceApply(String, BTreeMap<String, String>),
    NamespaceDelete(String),
    /// By `namespace/name`.
    PdbApply(String, Pdb),
    PdbDelete(String),
    /// The first full list of a kind has been delivered.
    Synced(Kind),
    /// A binding finished (see the scheduler loop).
    BindDone {
        uid: String,
        error: Option<String>,
    },
    /// The evictions of a preemption finished.
    PreemptionDone(String),
}

fn pdb_view(p: &PodDisruptionBudget) -> Pdb {
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    Pdb {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        // A missing or invalid selector selects nothing, as upstream.
        selector: spec
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| api::selector::Selector::from_label_selector(s).ok())
            .unwrap_or_else(api::selector::Selector::nothing),
        disruptions_allowed: status.map(|s| s.disruptions_allowed).unwrap_or(0),
        disrupted_pods: status
            .and_then(|s| s.disrupted_pods.as_ref())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
    }
}

/// How one kind maps onto inputs.
struct Mapping<K> {
    kind: Kind,
    key: fn(&K) -> String,
    apply: fn(K) -> Input,
    delete: fn(String) -> Input,
}

fn name_of<K: Resource>(o: &K) -> String {
    o.meta().name.clone().unwrap_or_default()
}

fn ns_name_of<K: Resource>(o: &K) -> String {
    format!(
        "{}/{}",
        o.meta().namespace.clone().unwrap_or_default(),
        o.meta().name.clone().unwrap_or_default()
    )
}

async fn forward<K>(
    api: Api<K>,
    map: Mapping<K>,
    tx: UnboundedSender<Input>,
    shutdown: CancellationToken,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    // As upstream's scheduler, objects are kept without `managedFields`.
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|o: &mut K| o.meta_mut().managed_fields = None)
        .boxed();
    let mut known: HashSet<String> = HashSet::new();
    let mut listing: Option<HashSet<String>> = None;
    let mut synced = false;
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = stream.next() => n,
        };
        let Some(event) = next else { return };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(kind = ?map.kind, "watch failed: {e}");
                continue;
            }
        };
        let mut out = Vec::new();
        match event {
            watcher::Event::Init => listing = Some(HashSet::new()),
            watcher::Event::InitApply(o) => {
                let key = (map.key)(&o);
                if let Some(l) = listing.as_mut() {
                    l.insert(key.clone());
                }
                known.insert(key);
                out.push((map.apply)(o));
            }
            watcher::Event::InitDone => {
                if let Some(seen) = listing.take() {
                    for gone in known.difference(&seen) {
                        out.push((map.delete)(gone.clone()));
                    }
                    known = seen;
                }
                if !synced {
                    synced = true;
                    out.push(Input::Synced(map.kind));
                }
            }
            watcher::Event::Apply(o) => {
                known.insert((map.key)(&o));
                out.push((map.apply)(o));
            }
            watcher::Event::Delete(o) => {
                let key = (map.key)(&o);
                known.remove(&key);
                out.push((map.delete)(key));
            }
        }
        for input in out {
            if tx.send(input).is_err() {
                return;
            }
        }
    }
}

/// Starts every watch; they stop when `shutdown` fires or the loop goes away.
pub fn spawn_all(
    client: &Client,
    tx: &UnboundedSender<Input>,
    shutdown: &CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) {
    let pods = Mapping::<Pod> {
        kind: Kind::Pods,
        key: |p| p.metadata.uid.clone().unwrap_or_default(),
        apply: |p| Input::PodApply(Arc::new(PodInfo::new(p))),
        delete: Input::PodDelete,
    };
    tracker.spawn(forward(
        Api::all(client.clone()),
        pods,
        tx.clone(),
        shutdown.clone(),
    ));
    let nodes = Mapping::<Node> {
        kind: Kind::Nodes,
        key: name_of,
        apply: |n| Input::NodeApply(NodeView::new(&n)),
        delete: Input::NodeDelete,
    };
    tracker.spawn(forward(
        Api::all(client.clone()),
        nodes,
        tx.clone(),
        shutdown.clone(),
    ));
    let classes = Mapping::<PriorityClass> {
        kind: Kind::PriorityClasses,
        key: name_of,
        apply: |pc| {
            let info = PriorityClassInfo {
                value: pc.value,
                global_default: pc.global_default.unwrap_or(false),
                preemption_never: pc.preemption_policy.as_deref() == Some("Never"),
            };
            Input::PriorityClassApply(name_of(&pc), info)
        },
        delete: Input::PriorityClassDelete,
    };
    tracker.spawn(forward(
        Api::all(client.clone()),
        classes,
        tx.clone(),
        shutdown.clone(),
    ));
    let namespaces = Mapping::<Namespace> {
        kind: Kind::Namespaces,
        key: name_of,
        apply: |ns| Input::NamespaceApply(name_of(&ns), ns.metadata.labels.unwrap_or_default()),
        delete: Input::NamespaceDelete,
    };
    tracker.spawn(forward(
        Api::all(client.clone()),
        namespaces,
        tx.clone(),
        shutdown.clone(),
    ));
    let pdbs = Mapping::<PodDisruptionBudget> {
        kind: Kind::Pdbs,
        key: ns_name_of,
        apply: |p| Input::PdbApply(ns_name_of(&p), pdb_view(&p)),
        delete: Input::PdbDelete,
    };
    tracker.spawn(forward(
        Api::all(client.clone()),
        pdbs,
        tx.clone(),
        shutdown.clone(),
    ));
}
