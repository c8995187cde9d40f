//! A small informer: a kube-runtime reflector (watch + local cache) whose events are
//! also handed to a callback, plus an index of pods by node. Shared by the node and
//! service controllers of this crate (node lifecycle, taint eviction, pod GC, node IPAM,
//! EndpointSlice/Endpoints).
//!
//! The callback runs after the cache has applied the event, so it can read the cache.
//! Watch failures are retried with kube-runtime's default backoff.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// `namespace/name` of a namespaced object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(namespace: &str, name: &str) -> Self {
        Key {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub fn of<K: Resource>(obj: &K) -> Self {
        Key {
            namespace: obj.meta().namespace.clone().unwrap_or_default(),
            name: obj.meta().name.clone().unwrap_or_default(),
        }
    }

    /// The reflector store key of this object.
    pub fn object_ref<K: Resource<DynamicType = ()>>(&self) -> ObjectRef<K> {
        ObjectRef::new(&self.name).within(&self.namespace)
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Start watching `api` into a local cache; `on_event` sees every event (and the cache)
/// after the cache applied it. Runs until `token` is cancelled.
pub fn spawn<K, F>(
    api: Api<K>,
    config: watcher::Config,
    token: CancellationToken,
    mut on_event: F,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: FnMut(&watcher::Event<K>, &Store<K>) + Send + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    let store = reader.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                ev = stream.next() => match ev {
                    Some(Ok(ev)) => on_event(&ev, &store),
                    Some(Err(e)) => debug!(kind = %K::kind(&()), error = %e, "watch failed, retrying"),
                    None => break,
                },
            }
        }
    });
    reader
}

/// Like [`spawn`] for an all-namespace watch with no selector, through the shared
/// informer of `K` (one watch and cache per kind for every controller).
pub fn spawn_shared<K, F>(
    informers: &crate::informers::Informers,
    client: &kube::Client,
    token: CancellationToken,
    mut on_event: F,
) -> crate::informers::SharedStore<K>
where
    K: crate::informers::Kind,
    F: FnMut(&watcher::Event<K>, &Store<K>) + Send + 'static,
{
    let informer = informers.get::<K>(client);
    informer.subscribe(token, move |ev, _, store| on_event(ev, store));
    informer.store()
}

/// Wait until `store` has seen its first full list. `false` if `token` was cancelled
/// first (or the watch task ended).
pub async fn wait_ready<S: crate::informers::WaitReady>(
    store: &S,
    token: &CancellationToken,
) -> bool {
    tokio::select! {
        _ = token.cancelled() => false,
        r = store.wait_ready() => r,
    }
}

/// Sleep for `d` unless `token` is cancelled first (then `false`).
pub async fn sleep(d: Duration, token: &CancellationToken) -> bool {
    tokio::select! {
        _ = token.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Pods by `spec.nodeName`, kept up to date from pod watch events.
#[derive(Clone, Default)]
pub struct PodsByNode {
    inner: Arc<Mutex<PodIndex>>,
}

#[derive(Default)]
struct PodIndex {
    by_node: HashMap<String, HashSet<Key>>,
    node_of: HashMap<Key, String>,
}

/// What a pod event changed in the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The pod is new to the index or moved to another node.
    Moved,
    /// Same node as before.
    Same,
    /// The pod is gone or has no node.
    Unbound,
}

impl PodsByNode {
    fn lock(&self) -> MutexGuard<'_, PodIndex> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Apply a pod watch event (`InitDone` rebuilds from `store`).
    pub fn apply(&self, ev: &watcher::Event<Pod>, store: &Store<Pod>) -> Vec<(Key, Placement)> {
        match ev {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                let key = Key::of(p);
                let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
                vec![(key.clone(), self.set(key, node))]
            }
            watcher::Event::Delete(p) => {
                let key = Key::of(p);
                self.set(key.clone(), None);
                vec![(key, Placement::Unbound)]
            }
            watcher::Event::Init => Vec::new(),
            watcher::Event::InitDone => {
                let mut idx = self.lock();
                let mut fresh = PodIndex::default();
                for p in store.state() {
                    if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone())
                        && !n.is_empty()
                    {
                        let key = Key::of(p.as_ref());
                        fresh
                            .by_node
                            .entry(n.clone())
                            .or_default()
                            .insert(key.clone());
                        fresh.node_of.insert(key, n);
                    }
                }
                let gone: Vec<Key> = idx
                    .node_of
                    .keys()
                    .filter(|k| !fresh.node_of.contains_key(*k))
                    .cloned()
                    .collect();
                *idx = fresh;
                gone.into_iter().map(|k| (k, Placement::Unbound)).collect()
            }
        }
    }

    fn set(&self, key: Key, node: Option<String>) -> Placement {
        let node = node.filter(|n| !n.is_empty());
        let mut idx = self.lock();
        let old = idx.node_of.get(&key).cloned();
        if old == node {
            return if node.is_some() {
                Placement::Same
            } else {
                Placement::Unbound
            };
        }
        if let Some(o) = old
            && let Some(set) = idx.by_node.get_mut(&o)
        {
            set.remove(&key);
            if set.is_empty() {
                idx.by_node.remove(&o);
            }
        }
        match node {
            Some(n) => {
                idx.by_node
                    .entry(n.clone())
                    .or_default()
                    .insert(key.clone());
                idx.node_of.insert(key, n);
                Placement::Moved
            }
            None => {
                idx.node_of.remove(&key);
                Placement::Unbound
            }
        }
    }

    /// Keys of the pods bound to `node`.
    pub fn on_node(&self, node: &str) -> Vec<Key> {
        self.lock()
            .by_node
            .get(node)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The pods bound to `node`, from `store`.
    pub fn pods_on(&self, node: &str, store: &Store<Pod>) -> Vec<Arc<Pod>> {
        self.on_node(node)
            .into_iter()
            .filter_map(|k| store.get(&k.object_ref()))
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .collect()
    }
}

/// Name of a cluster-scoped object.
pub fn name_of<K: Resource>(obj: &K) -> String {
    obj.meta().name.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use kube::api::ObjectMeta;

    fn pod(name: &str, node: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn index_tracks_moves_and_deletes() {
        let (store, _w) = reflector::store::<Pod>();
        let idx = PodsByNode::default();
        let cases: Vec<(watcher::Event<Pod>, Placement, Vec<(&str, Vec<&str>)>)> = vec![
            (
                watcher::Event::Apply(pod("a", None)),
                Placement::Unbound,
                vec![("n1", vec![])],
            ),
            (
                watcher::Event::Apply(pod("a", Some("n1"))),
                Placement::Moved,
                vec![("n1", vec!["a"])],
            ),
            (
                watcher::Event::Apply(pod("a", Some("n1"))),
                Placement::Same,
                vec![("n1", vec!["a"])],
            ),
            (
                watcher::Event::Apply(pod("b", Some("n1"))),
                Placement::Moved,
                vec![("n1", vec!["a", "b"])],
            ),
            (
                watcher::Event::Apply(pod("a", Some("n2"))),
                Placement::Moved,
                vec![("n1", vec!["b"]), ("n2", vec!["a"])],
            ),
            (
                watcher::Event::Delete(pod("a", Some("n2"))),
                Placement::Unbound,
                vec![("n1", vec!["b"]), ("n2", vec![])],
            ),
        ];
        for (ev, want, nodes) in cases {
            let got = idx.apply(&ev, &store);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].1, want, "{ev:?}");
            for (n, pods) in nodes {
                let mut have: Vec<String> = idx.on_node(n).into_iter().map(|k| k.name).collect();
                have.sort();
                assert_eq!(have, pods, "node {n} after {ev:?}");
            }
        }
    }
}
