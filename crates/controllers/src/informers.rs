//! Shared informers, as client-go's `SharedInformerFactory`: one watch and one local
//! cache per kind for every controller of the process, with each controller's event
//! handler called on every change.
//!
//! Without this, each controller watched pods (and nodes) itself: nine pod watches, nine
//! decodes of every pod event and nine copies of every pod in memory. With 10,000
//! pending pods that was about 4.5 GB of controller-manager memory and most of the
//! server's CPU per pod write.
//!
//! kube-runtime has reflectors (a watch feeding a [`Store`]) but no shared informer
//! with handler fan-out and replay for late subscribers, hence this module. Handlers
//! run on the informer's task, in order, after the store has applied the event, and
//! must only do quick work (enqueue keys); they see the previous version of the object
//! (for `Apply` and `Delete`) and the store.
//!
//! A handler that subscribes after the informer has listed gets a replay of the store
//! as `Init`, `InitApply`… `InitDone`, so it sees what it would have seen had it been
//! there from the start; one that subscribes during a list gets that replay when the
//! list completes instead of the rest of the list.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// What a shared informer's kind must be.
pub trait Kind:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

impl<K> Kind for K where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

/// An event handler: the event, the object's previous version in the store (for
/// `Apply`, `InitApply` and `Delete`) and the store after the event.
pub type Handler<K> = Box<dyn FnMut(&watcher::Event<K>, Option<Arc<K>>, &Store<K>) + Send>;

/// The shared informers of one controller manager (one leadership term): one per kind,
/// created and started on first use, watching every namespace with no selector. Clones
/// share the informers.
#[derive(Clone, Default)]
pub struct Informers {
    inner: Arc<Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>>,
    token: CancellationToken,
}

impl Debug for Informers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informers")
            .field("kinds", &lock(&self.inner).len())
            .finish()
    }
}

/// Options compare equal whatever informers they carry.
impl PartialEq for Informers {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Informers {}

impl Informers {
    /// Informers whose watches stop when `token` is cancelled.
    pub fn new(token: CancellationToken) -> Self {
        Informers {
            inner: Arc::default(),
            token,
        }
    }

    /// The shared informer of `K`, started with `client` if this is its first use.
    pub fn get<K: Kind>(&self, client: &Client) -> SharedInformer<K> {
        let mut map = lock(&self.inner);
        if let Some(inf) = map
            .get(&TypeId::of::<K>())
            .and_then(|b| b.downcast_ref::<SharedInformer<K>>())
        {
            return inf.clone();
        }
        let inf = SharedInformer::start(Api::all(client.clone()), self.token.child_token());
        map.insert(TypeId::of::<K>(), Box::new(inf.clone()));
        inf
    }
}

/// One kind's watch, cache and handlers.
pub struct SharedInformer<K: Kind> {
    shared: Arc<Shared<K>>,
}

impl<K: Kind> Clone for SharedInformer<K> {
    fn clone(&self) -> Self {
        SharedInformer {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<K: Kind> {
    store: Store<K>,
    /// True from the first complete list on.
    ready: watch::Sender<bool>,
    dispatch: Mutex<Dispatch<K>>,
}

/// A shared informer's cache: a kube-runtime [`Store`] (through `Deref`) whose
/// [`wait_until_ready`](SharedStore::wait_until_ready) may be awaited by any number of
/// tasks at once. The store's own wait keeps a single waker (a `oneshot` receiver
/// polled from several tasks wakes only the last one), so a second controller waiting
/// on the same store would hang.
pub struct SharedStore<K: Kind> {
    store: Store<K>,
    ready: watch::Receiver<bool>,
}

impl<K: Kind> Clone for SharedStore<K> {
    fn clone(&self) -> Self {
        SharedStore {
            store: self.store.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<K: Kind> Deref for SharedStore<K> {
    type Target = Store<K>;

    fn deref(&self) -> &Store<K> {
        &self.store
    }
}

impl<K: Kind> SharedStore<K> {
    /// Wait for the first complete list; an error if the informer stopped first.
    pub async fn wait_until_ready(&self) -> Result<(), watch::error::RecvError> {
        let mut rx = self.ready.clone();
        rx.wait_for(|r| *r).await.map(|_| ())
    }

    /// Whether the first complete list has been seen.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }
}

/// Something whose first complete list can be awaited: a [`SharedStore`] or a
/// reflector [`Store`] that has a single waiter.
pub trait WaitReady {
    /// Resolves once listed; `false` if that can no longer happen.
    fn wait_ready(&self) -> impl std::future::Future<Output = bool> + Send;
}

impl<K: Kind> WaitReady for SharedStore<K> {
    async fn wait_ready(&self) -> bool {
        self.wait_until_ready().await.is_ok()
    }
}

impl<K: Kind> WaitReady for Store<K> {
    async fn wait_ready(&self) -> bool {
        self.wait_until_ready().await.is_ok()
    }
}

struct Dispatch<K: Kind> {
    writer: Writer<K>,
    handlers: Vec<Subscriber<K>>,
    phase: Phase,
}

struct Subscriber<K: Kind> {
    handler: Handler<K>,
    /// The subscriber's lifetime: once cancelled, it is dropped and never called.
    token: CancellationToken,
    /// Subscribed during a list: waits for its end and gets a replay then.
    pending: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Nothing received yet.
    Starting,
    /// Between `Init` and `InitDone`.
    Listing,
    /// Listed; following the watch.
    Watching,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Handlers run under this lock; one that panicked left the store consistent (the
    // writer applied the event before any handler ran), so the lock is taken over.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K: Kind> SharedInformer<K> {
    fn new() -> Self {
        let (store, writer) = reflector::store();
        SharedInformer {
            shared: Arc::new(Shared {
                store,
                ready: watch::Sender::new(false),
                dispatch: Mutex::new(Dispatch {
                    writer,
                    handlers: Vec::new(),
                    phase: Phase::Starting,
                }),
            }),
        }
    }

    fn start(api: Api<K>, token: CancellationToken) -> Self {
        let inf = Self::new();
        let shared = Arc::clone(&inf.shared);
        tokio::spawn(async move {
            // As upstream's controller manager, the cache drops `managedFields`: no
            // controller reads them and they are a large part of every object.
            let stream = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(|o: &mut K| o.meta_mut().managed_fields = None);
            let mut stream = std::pin::pin!(stream);
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    ev = stream.next() => match ev {
                        Some(Ok(ev)) => shared.dispatch(ev),
                        Some(Err(e)) => debug!(kind = %K::kind(&()), error = %e, "shared watch failed, retrying"),
                        None => break,
                    },
                }
            }
        });
        inf
    }

    /// The cache (ready after the first complete list).
    pub fn store(&self) -> SharedStore<K> {
        SharedStore {
            store: self.shared.store.clone(),
            ready: self.shared.ready.subscribe(),
        }
    }

    /// Call `handler` on every event from now on (after a replay of what the cache
    /// holds, if it has listed already) until `token` is cancelled.
    pub fn subscribe<F>(&self, token: CancellationToken, handler: F)
    where
        F: FnMut(&watcher::Event<K>, Option<Arc<K>>, &Store<K>) + Send + 'static,
    {
        let mut handler: Handler<K> = Box::new(handler);
        let mut d = lock(&self.shared.dispatch);
        let pending = match d.phase {
            Phase::Starting => false,
            Phase::Listing => true,
            Phase::Watching => {
                self.shared.replay(&mut handler);
                false
            }
        };
        d.handlers.push(Subscriber {
            handler,
            token,
            pending,
        });
    }
}

impl<K: Kind> Shared<K> {
    /// Apply one watch event to the store, then hand it to every handler.
    fn dispatch(&self, ev: watcher::Event<K>) {
        let mut d = lock(&self.dispatch);
        let old = match &ev {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => {
                self.store.get(&ObjectRef::from_obj(o))
            }
            _ => None,
        };
        d.writer.apply_watcher_event(&ev);
        let done = matches!(ev, watcher::Event::InitDone);
        d.phase = match ev {
            watcher::Event::Init | watcher::Event::InitApply(_) => Phase::Listing,
            _ => Phase::Watching,
        };
        if done {
            self.ready.send_replace(true);
        }
        d.handlers.retain(|sub| !sub.token.is_cancelled());
        for sub in d.handlers.iter_mut() {
            if sub.pending {
                if done {
                    self.replay(&mut sub.handler);
                    sub.pending = false;
                }
                continue;
            }
            (sub.handler)(&ev, old.clone(), &self.store);
        }
    }

    /// What a handler would have seen of the current store as a fresh list.
    fn replay(&self, handler: &mut Handler<K>) {
        handler(&watcher::Event::Init, None, &self.store);
        for obj in self.store.state() {
            handler(
                &watcher::Event::InitApply(obj.as_ref().clone()),
                None,
                &self.store,
            );
        }
        handler(&watcher::Event::InitDone, None, &self.store);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn cm(name: &str, v: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            data: Some([("v".to_string(), v.to_string())].into()),
            ..Default::default()
        }
    }

    /// Records what a handler saw: `event name/value (old value)`.
    fn recorder(inf: &SharedInformer<ConfigMap>) -> Arc<Mutex<Vec<String>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        inf.subscribe(CancellationToken::new(), move |ev, old, store| {
            let val = |c: &ConfigMap| {
                format!(
                    "{}={}",
                    c.metadata.name.as_deref().unwrap_or(""),
                    c.data.as_ref().and_then(|d| d.get("v")).map_or("", |v| v)
                )
            };
            let old = old
                .map(|o| format!(" (was {})", val(&o)))
                .unwrap_or_default();
            let line = match ev {
                watcher::Event::Init => "init".to_string(),
                watcher::Event::InitApply(o) => format!("initapply {}{old}", val(o)),
                watcher::Event::InitDone => format!("initdone ({} cached)", store.state().len()),
                watcher::Event::Apply(o) => format!("apply {}{old}", val(o)),
                watcher::Event::Delete(o) => format!("delete {}{old}", val(o)),
            };
            lock(&s).push(line);
        });
        seen
    }

    fn take(seen: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
        std::mem::take(&mut *lock(seen))
    }

    #[test]
    fn handlers_see_events_after_the_store_with_the_old_version() {
        let inf = SharedInformer::<ConfigMap>::new();
        let a = recorder(&inf);
        let b = recorder(&inf);
        let s = &inf.shared;
        s.dispatch(watcher::Event::Init);
        s.dispatch(watcher::Event::InitApply(cm("x", "1")));
        s.dispatch(watcher::Event::InitDone);
        s.dispatch(watcher::Event::Apply(cm("x", "2")));
        s.dispatch(watcher::Event::Delete(cm("x", "2")));
        let want = [
            "init",
            "initapply x=1",
            "initdone (1 cached)",
            "apply x=2 (was x=1)",
            "delete x=2 (was x=2)",
        ];
        assert_eq!(take(&a), want);
        assert_eq!(take(&b), want);
        assert!(inf.store().state().is_empty());
    }

    #[test]
    fn a_cancelled_subscriber_is_dropped() {
        let inf = SharedInformer::<ConfigMap>::new();
        let token = CancellationToken::new();
        let calls = Arc::new(Mutex::new(0));
        let c = Arc::clone(&calls);
        inf.subscribe(token.clone(), move |_, _, _| *lock(&c) += 1);
        inf.shared.dispatch(watcher::Event::Apply(cm("x", "1")));
        token.cancel();
        inf.shared.dispatch(watcher::Event::Apply(cm("x", "2")));
        assert_eq!(*lock(&calls), 1);
        assert!(lock(&inf.shared.dispatch).handlers.is_empty());
    }

    #[test]
    fn late_subscribers_get_a_replay_of_the_store() {
        let inf = SharedInformer::<ConfigMap>::new();
        let s = &inf.shared;
        s.dispatch(watcher::Event::Init);
        s.dispatch(watcher::Event::InitApply(cm("x", "1")));
        s.dispatch(watcher::Event::InitDone);
        s.dispatch(watcher::Event::Apply(cm("y", "1")));
        let late = recorder(&inf);
        let mut got = take(&late);
        got[1..3].sort();
        assert_eq!(
            got,
            [
                "init",
                "initapply x=1",
                "initapply y=1",
                "initdone (2 cached)"
            ]
        );
        s.dispatch(watcher::Event::Apply(cm("y", "2")));
        assert_eq!(take(&late), ["apply y=2 (was y=1)"]);
    }

    #[test]
    fn a_subscriber_during_a_list_waits_for_its_end() {
        let inf = SharedInformer::<ConfigMap>::new();
        let early = recorder(&inf);
        let s = &inf.shared;
        s.dispatch(watcher::Event::Init);
        s.dispatch(watcher::Event::InitApply(cm("x", "1")));
        let late = recorder(&inf);
        s.dispatch(watcher::Event::InitApply(cm("y", "1")));
        assert!(take(&late).is_empty(), "no partial list");
        s.dispatch(watcher::Event::InitDone);
        let mut got = take(&late);
        got[1..3].sort();
        assert_eq!(
            got,
            [
                "init",
                "initapply x=1",
                "initapply y=1",
                "initdone (2 cached)"
            ]
        );
        assert_eq!(
            take(&early),
            [
                "init",
                "initapply x=1",
                "initapply y=1",
                "initdone (2 cached)"
            ]
        );
        // A relist later goes to both as it comes.
        s.dispatch(watcher::Event::Init);
        s.dispatch(watcher::Event::InitApply(cm("x", "3")));
        s.dispatch(watcher::Event::InitDone);
        let relist = ["init", "initapply x=3 (was x=1)", "initdone (1 cached)"];
        assert_eq!(take(&early), relist);
        assert_eq!(take(&late), relist);
    }
}
