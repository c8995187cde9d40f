//! A watch-fed cache of one kind with add/update/delete notifications (client-go's
//! shared informer, reduced to what the workload controllers need), and the worker
//! loop that drains a [`WorkQueue`] of `namespace/name` keys.
//!
//! kube-runtime's reflector store does not hand the previous version of an object to
//! the event handler, while the ReplicaSet and Deployment handlers compare old and new
//! (labels, controller reference, readiness) exactly as upstream's update handlers do;
//! hence this small cache. After a re-list (`Init … InitDone`) objects that vanished
//! while the watch was down are reported as deleted, like client-go's
//! `DeletedFinalStateUnknown`, so expectations are lowered for them too.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::informers::{Informers, Kind};
use crate::queue::WorkQueue;

/// Objects by namespace (empty for cluster-scoped kinds), then name.
pub struct Cache<K> {
    objects: RwLock<HashMap<String, HashMap<String, Arc<K>>>>,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Cache {
            objects: RwLock::new(HashMap::new()),
        }
    }
}

impl<K: Resource> Cache<K> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, HashMap<String, Arc<K>>>> {
        // A panic while holding the lock leaves a consistent map (every write is one
        // insert or remove), so a poisoned lock is taken over.
        self.objects.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, HashMap<String, Arc<K>>>> {
        self.objects.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached object `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.read()
            .get(namespace)
            .and_then(|m| m.get(name))
            .cloned()
    }

    /// Every cached object of `namespace`.
    pub fn list(&self, namespace: &str) -> Vec<Arc<K>> {
        self.read()
            .get(namespace)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every cached object.
    pub fn list_all(&self) -> Vec<Arc<K>> {
        self.read()
            .values()
            .flat_map(|m| m.values().cloned())
            .collect()
    }

    /// Number of cached objects.
    pub fn len(&self) -> usize {
        self.read().values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Store `obj`, returning the version it replaces.
    pub fn insert(&self, obj: Arc<K>) -> Option<Arc<K>> {
        let ns = obj.meta().namespace.clone().unwrap_or_default();
        let name = obj.meta().name.clone().unwrap_or_default();
        self.write().entry(ns).or_default().insert(name, obj)
    }

    /// Drop `namespace/name`, returning the removed object.
    pub fn remove(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let mut w = self.write();
        let m = w.get_mut(namespace)?;
        let old = m.remove(name);
        if m.is_empty() {
            w.remove(namespace);
        }
        old
    }
}

/// What happened to an object, as the watch reported it.
pub enum Change<K> {
    Added(Arc<K>),
    Updated { old: Arc<K>, new: Arc<K> },
    Deleted(Arc<K>),
}

/// `namespace/name` of an object (upstream `MetaNamespaceKeyFunc`).
pub fn key_of<K: Resource>(obj: &K) -> String {
    match obj.meta().namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", obj.name_any()),
        _ => obj.name_any(),
    }
}

/// Split a `namespace/name` key.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// Apply one watch event to `cache` and report the resulting changes. `store` is the
/// shared informer's cache after the event: `cache` holds the same objects (`Arc`s),
/// so it costs an index, not a copy. A list (`Init` … `InitDone`) is taken from
/// `store` when it completes; objects that vanished meanwhile are reported deleted.
pub fn apply_event<K: Kind>(
    cache: &Cache<K>,
    event: &watcher::Event<K>,
    store: &Store<K>,
) -> Vec<Change<K>> {
    let ident = |o: &K| {
        (
            o.meta().namespace.clone().unwrap_or_default(),
            o.meta().name.clone().unwrap_or_default(),
        )
    };
    match event {
        watcher::Event::Apply(o) => {
            let new = store
                .get(&ObjectRef::from_obj(o))
                .unwrap_or_else(|| Arc::new(o.clone()));
            match cache.insert(Arc::clone(&new)) {
                Some(old) => vec![Change::Updated { old, new }],
                None => vec![Change::Added(new)],
            }
        }
        watcher::Event::Delete(o) => {
            let (ns, name) = ident(o);
            cache.remove(&ns, &name);
            vec![Change::Deleted(Arc::new(o.clone()))]
        }
        watcher::Event::Init | watcher::Event::InitApply(_) => Vec::new(),
        watcher::Event::InitDone => {
            let listed: HashMap<(String, String), Arc<K>> =
                store.state().into_iter().map(|o| (ident(&o), o)).collect();
            let mut changes = Vec::new();
            for old in cache.list_all() {
                let id = ident(&old);
                if !listed.contains_key(&id) {
                    cache.remove(&id.0, &id.1);
                    changes.push(Change::Deleted(old));
                }
            }
            for (_, new) in listed {
                match cache.insert(Arc::clone(&new)) {
                    Some(old) => changes.push(Change::Updated { old, new }),
                    None => changes.push(Change::Added(new)),
                }
            }
            changes
        }
    }
}

/// Follow the shared informer of `K` into `cache` until `shutdown`, calling `handler`
/// after each change is stored. `synced` turns true after the first complete list.
pub async fn run<K, F>(
    informers: Informers,
    client: Client,
    cache: Arc<Cache<K>>,
    synced: watch::Sender<bool>,
    handler: F,
    shutdown: CancellationToken,
) where
    K: Kind,
    F: Fn(Change<K>) + Send + 'static,
{
    informers
        .get::<K>(&client)
        .subscribe(shutdown.clone(), move |event, _, store| {
            for change in apply_event(&cache, event, store) {
                handler(change);
            }
            if matches!(event, watcher::Event::InitDone) {
                synced.send_replace(true);
            }
        });
    shutdown.cancelled().await;
}

/// Wait until every receiver reports a complete list; false on shutdown.
pub async fn wait_synced(
    receivers: &mut [watch::Receiver<bool>],
    shutdown: &CancellationToken,
) -> bool {
    for rx in receivers {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            r = rx.wait_for(|s| *s) => if r.is_err() { return false },
        }
    }
    true
}

/// Run `workers` loops taking keys from `queue` and handing them to `sync`: success
/// forgets the key's failures, an error re-queues it with backoff (after `max_retries`
/// failures the key is dropped until the next event, as upstream's `handleErr`).
pub async fn run_workers<K, S, Fut, E>(
    queue: Arc<WorkQueue<K>>,
    workers: usize,
    max_retries: Option<u32>,
    sync: S,
) where
    K: Clone + Eq + Hash + Send + Sync + std::fmt::Display + 'static,
    S: Fn(K) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let queue = Arc::clone(&queue);
        let sync = sync.clone();
        set.spawn(async move {
            while let Some(key) = queue.get().await {
                match sync(key.clone()).await {
                    Ok(()) => queue.forget(&key),
                    Err(e) => {
                        if max_retries.is_some_and(|m| queue.failures(&key) >= m) {
                            warn!(%key, "dropping key out of the queue: {e}");
                            queue.forget(&key);
                        } else {
                            debug!(%key, "sync failed, retrying: {e}");
                            queue.add_rate_limited(key.clone());
                        }
                    }
                }
                queue.done(&key);
            }
        });
    }
    while set.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn cm(name: &str, rv: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn describe(changes: &[Change<ConfigMap>]) -> Vec<String> {
        let mut v: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Added(o) => format!("add {}", o.name_any()),
                Change::Updated { old, new } => format!(
                    "update {} {}->{}",
                    new.name_any(),
                    old.resource_version().unwrap_or_default(),
                    new.resource_version().unwrap_or_default()
                ),
                Change::Deleted(o) => format!("delete {}", o.name_any()),
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn events_update_cache_and_report_changes() {
        let cache = Cache::default();
        let (store, mut writer) = kube::runtime::reflector::store();
        let steps: Vec<(watcher::Event<ConfigMap>, Vec<&str>)> = vec![
            (watcher::Event::Init, vec![]),
            (watcher::Event::InitApply(cm("a", "1")), vec![]),
            (watcher::Event::InitApply(cm("b", "1")), vec![]),
            (watcher::Event::InitDone, vec!["add a", "add b"]),
            (watcher::Event::Apply(cm("a", "2")), vec!["update a 1->2"]),
            (watcher::Event::Apply(cm("c", "3")), vec!["add c"]),
            (watcher::Event::Delete(cm("c", "4")), vec!["delete c"]),
            // A re-list that misses `b`: it was deleted while the watch was down.
            (watcher::Event::Init, vec![]),
            (watcher::Event::InitApply(cm("a", "5")), vec![]),
            (watcher::Event::InitDone, vec!["delete b", "update a 2->5"]),
        ];
        for (ev, want) in steps {
            writer.apply_watcher_event(&ev);
            let got = describe(&apply_event(&cache, &ev, &store));
            assert_eq!(got, want);
        }
        assert_eq!(cache.len(), 1);
        let a = cache.get("ns", "a").expect("a cached");
        assert_eq!(a.resource_version(), Some("5".into()));
        let shared = store
            .get(&ObjectRef::new("a").within("ns"))
            .expect("a stored");
        assert!(
            Arc::ptr_eq(&a, &shared),
            "the cache shares the store's object"
        );
        assert!(cache.list("other").is_empty());
    }

    #[test]
    fn keys() {
        assert_eq!(key_of(&cm("a", "1")), "ns/a");
        assert_eq!(split_key("ns/a"), ("ns", "a"));
        assert_eq!(split_key("a"), ("", "a"));
    }
}
