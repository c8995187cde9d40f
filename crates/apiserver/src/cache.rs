//! The watch cache: an in-memory mirror of every object in the store, fed by one store
//! watch, from which the API server serves GET, LIST and WATCH (upstream's cacher).
//!
//! Objects are kept as ready-to-send JSON bytes (with `metadata.resourceVersion`
//! filled in) plus their labels and selectable fields, so a LIST of 100k pods is a
//! byte concatenation and a watch event is encoded once for every watcher.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use store::{Backend, EventType, RangeRequest, Revision, WatchRequest};
use tokio::sync::{RwLock, broadcast, watch};

/// How many events the cache remembers for watches resuming from an older revision.
/// Older starts get 410 Expired (clients re-list), as with upstream's watch cache.
pub const HISTORY_LIMIT: usize = 50_000;

/// One object as the cache holds it.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    /// The object's JSON with `metadata.resourceVersion` set.
    pub json: Bytes,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub fields: BTreeMap<String, String>,
    pub mod_revision: Revision,
}

impl CachedObject {
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// The raw JSON of the object's `metadata`, found without building the rest of
    /// the object (metadata-only watches, such as the garbage collector's, receive
    /// every write of their kind).
    fn metadata_json(&self) -> Option<&serde_json::value::RawValue> {
        #[derive(serde::Deserialize)]
        struct MetadataOnly<'a> {
            #[serde(borrow)]
            metadata: Option<&'a serde_json::value::RawValue>,
        }
        serde_json::from_slice::<MetadataOnly>(&self.json)
            .ok()
            .and_then(|o| o.metadata)
    }

    /// The object's PartialObjectMetadata form, encoded.
    pub fn partial_metadata_json(&self) -> Vec<u8> {
        let metadata = self.metadata_json().map_or("null", |m| m.get());
        let mut out = Vec::with_capacity(metadata.len() + 72);
        out.extend_from_slice(
            br#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":"#,
        );
        out.extend_from_slice(metadata.as_bytes());
        out.push(b'}');
        out
    }

    /// The object's PartialObjectMetadata form.
    pub fn partial_metadata(&self) -> Value {
        let metadata = self
            .metadata_json()
            .and_then(|m| serde_json::from_str(m.get()).ok())
            .unwrap_or(Value::Null);
        serde_json::json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata})
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One change as watchers see it. For a deletion `obj` is the last state with the
/// resourceVersion of the deletion.
#[derive(Debug)]
pub struct CacheEvent {
    pub revision: Revision,
    pub kind: EventKind,
    pub obj: Arc<CachedObject>,
    pub prev: Option<Arc<CachedObject>>,
}

struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    history: VecDeque<Arc<CacheEvent>>,
    /// The history holds every event with a revision greater than this.
    history_start: Revision,
    revision: Revision,
}

/// The cache. Its `RwLock` guards the object map, the history ring and the revision
/// together, so a watcher can take a consistent snapshot and subscribe atomically.
pub struct Cache {
    state: RwLock<State>,
    events: broadcast::Sender<Arc<CacheEvent>>,
    revision_tx: watch::Sender<Revision>,
    /// Derives the selectable fields of an object from its JSON.
    fields_of: FieldsFn,
}

pub type FieldsFn = Arc<dyn Fn(&Value) -> BTreeMap<String, String> + Send + Sync>;

/// Keys the cache mirrors: everything under this prefix.
pub const REGISTRY_PREFIX: &str = "/registry/";

fn make_object(
    key: &[u8],
    value: &[u8],
    mod_revision: Revision,
    fields_of: &FieldsFn,
) -> Option<CachedObject> {
    let key = String::from_utf8(key.to_vec()).ok()?;
    let mut v: Value = serde_json::from_slice(value).ok()?;
    let meta = v.get_mut("metadata")?.as_object_mut()?;
    meta.insert(
        "resourceVersion".into(),
        Value::String(mod_revision.to_string()),
    );
    let namespace = meta
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let labels = meta
        .get("labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let fields = fields_of(&v);
    let json = Bytes::from(serde_json::to_vec(&v).ok()?);
    Some(CachedObject {
        key,
        json,
        namespace,
        name,
        labels,
        fields,
        mod_revision,
    })
}

/// Set `metadata.resourceVersion` in already-encoded JSON of a deleted object.
fn with_revision(obj: &CachedObject, revision: Revision, fields_of: &FieldsFn) -> CachedObject {
    let mut v = obj.value();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    CachedObject {
        key: obj.key.clone(),
        json: Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
        namespace: obj.namespace.clone(),
        name: obj.name.clone(),
        labels: obj.labels.clone(),
        fields: fields_of(&v),
        mod_revision: revision,
    }
}

/// What a watcher gets when it subscribes: the replayed events, then a live receiver.
pub struct Subscription {
    pub replay: Vec<Arc<CacheEvent>>,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
    /// The cache revision at subscription time.
    pub revision: Revision,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld {
        requested: Revision,
        oldest: Revision,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

impl Cache {
    /// Load the current state and start following the store.
    pub async fn start(
        store: Arc<dyn Backend>,
        fields_of: FieldsFn,
    ) -> Result<Arc<Cache>, store::StoreError> {
        let prefix = REGISTRY_PREFIX.as_bytes();
        // Start from an older revision the store still has, and replay the events since,
        // so watches can resume from revisions seen before a restart.
        let current = store.current_revision();
        let oldest = store
            .compacted_revision()
            .max(current - HISTORY_LIMIT as i64)
            .max(1);
        let read_at = if oldest < current { oldest } else { 0 };
        let resp = store
            .range(RangeRequest {
                key: Bytes::from_static(prefix),
                range_end: Some(store::prefix_end(prefix)),
                revision: read_at,
                ..Default::default()
            })
            .await?;
        let mut objects = BTreeMap::new();
        for kv in resp.kvs {
            if let Some(o) = make_object(&kv.key, &kv.value, kv.mod_revision, &fields_of) {
                objects.insert(o.key.clone(), Arc::new(o));
            }
        }
        let rev = resp.revision;
        let (events, _) = broadcast::channel(16_384);
        let (revision_tx, _) = watch::channel(rev);
        let cache = Arc::new(Cache {
            state: RwLock::new(State {
                objects,
                history: VecDeque::new(),
                history_start: rev,
                revision: rev,
            }),
            events,
            revision_tx,
            fields_of,
        });
        // Follow every key under "/" (objects and the allocation keys written in the same
        // transactions), so the cache revision tracks the store's.
        let mut stream = store
            .watch(WatchRequest {
                key: Bytes::from_static(b"/"),
                range_end: Some(store::prefix_end(b"/")),
                start_revision: rev + 1,
                prev_kv: false,
            })
            .await?;
        let c = cache.clone();
        tokio::spawn(async move {
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(ev) => c.apply(ev).await,
                    Err(e) => {
                        tracing::error!("watch cache lost its store watch: {e}");
                        break;
                    }
                }
            }
        });
        Ok(cache)
    }

    async fn apply(&self, ev: store::Event) {
        let rev = ev.kv.mod_revision;
        let key = String::from_utf8_lossy(&ev.kv.key).to_string();
        if !key.starts_with(REGISTRY_PREFIX) {
            let mut st = self.state.write().await;
            st.revision = st.revision.max(rev);
            drop(st);
            self.revision_tx.send_replace(rev);
            return;
        }
        // Decode and re-encode a put before taking the lock, so readers (GET, LIST,
        // watch subscriptions) are not held up by the JSON work.
        let made = match ev.kind {
            EventType::Put => Some(make_object(&ev.kv.key, &ev.kv.value, rev, &self.fields_of)),
            EventType::Delete => None,
        };
        let mut st = self.state.write().await;
        let prev = st.objects.get(&key).cloned();
        let event = match made {
            Some(made) => {
                let Some(obj) = made else {
                    tracing::warn!(
                        key,
                        "store holds a value that is not a JSON object; skipped"
                    );
                    st.revision = st.revision.max(rev);
                    drop(st);
                    self.revision_tx.send_replace(rev);
                    return;
                };
                let obj = Arc::new(obj);
                st.objects.insert(key, obj.clone());
                let kind = if prev.is_some() {
                    EventKind::Modified
                } else {
                    EventKind::Added
                };
                CacheEvent {
                    revision: rev,
                    kind,
                    obj,
                    prev,
                }
            }
            None => {
                st.objects.remove(&key);
                let Some(prev) = prev else {
                    st.revision = st.revision.max(rev);
                    drop(st);
                    self.revision_tx.send_replace(rev);
                    return;
                };
                let obj = Arc::new(with_revision(&prev, rev, &self.fields_of));
                CacheEvent {
                    revision: rev,
                    kind: EventKind::Deleted,
                    obj,
                    prev: Some(prev),
                }
            }
        };
        let event = Arc::new(event);
        st.history.push_back(event.clone());
        while st.history.len() > HISTORY_LIMIT {
            if let Some(old) = st.history.pop_front() {
                st.history_start = st.history_start.max(old.revision);
            }
        }
        st.revision = rev;
        let _ = self.events.send(event);
        drop(st);
        self.revision_tx.send_replace(rev);
    }

    /// Wait until the cache has applied `revision` (read-your-writes after a write).
    pub async fn wait_for(&self, revision: Revision) {
        let mut rx = self.revision_tx.subscribe();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            rx.wait_for(|r| *r >= revision),
        )
        .await;
    }

    pub async fn revision(&self) -> Revision {
        self.state.read().await.revision
    }

    pub async fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.state.read().await.objects.get(key).cloned()
    }

    /// Objects whose key starts with `prefix`, beginning at `start` (inclusive), that
    /// pass `filter`; at most `limit` (0 = all). Returns the objects, the cache revision,
    /// the key to continue from and how many matching keys remain (when limited).
    pub async fn list(
        &self,
        prefix: &str,
        start: Option<&str>,
        limit: usize,
        filter: &(dyn Fn(&CachedObject) -> bool + Sync),
    ) -> (Vec<Arc<CachedObject>>, Revision, Option<String>, usize) {
        let st = self.state.read().await;
        let from = match start {
            Some(s) if s > prefix => s.to_string(),
            _ => prefix.to_string(),
        };
        let mut out = Vec::new();
        let mut next = None;
        let mut remaining = 0;
        for (k, o) in st.objects.range(from..) {
            if !k.starts_with(prefix) {
                break;
            }
            if !filter(o) {
                continue;
            }
            if limit > 0 && out.len() >= limit {
                if next.is_none() {
                    next = Some(k.clone());
                }
                remaining += 1;
                continue;
            }
            out.push(o.clone());
        }
        (out, st.revision, next, remaining)
    }

    /// Count objects under a prefix (for metrics).
    pub async fn count(&self, prefix: &str) -> usize {
        let st = self.state.read().await;
        st.objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .count()
    }

    /// Subscribe to events after `from` (a revision), replaying retained history.
    /// `from = None` means "from now on".
    pub async fn subscribe(&self, from: Option<Revision>) -> Result<Subscription, CacheError> {
        let st = self.state.read().await;
        let live = self.events.subscribe();
        let replay = match from {
            None => Vec::new(),
            Some(r) if r >= st.revision => Vec::new(),
            Some(r) if r < st.history_start => {
                return Err(CacheError::TooOld {
                    requested: r,
                    oldest: st.history_start,
                });
            }
            Some(r) => st
                .history
                .iter()
                .filter(|e| e.revision > r)
                .cloned()
                .collect(),
        };
        Ok(Subscription {
            replay,
            live,
            revision: st.revision,
        })
    }

    /// A consistent snapshot of the objects under `prefix` plus a live subscription
    /// starting right after it (for watches that begin with the current state).
    pub async fn snapshot_and_subscribe(
        &self,
        prefix: &str,
    ) -> (Vec<Arc<CachedObject>>, Subscription) {
        let st = self.state.read().await;
        let live = self.events.subscribe();
        let objs = st
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, o)| o.clone())
            .collect();
        (
            objs,
            Subscription {
                replay: Vec::new(),
                live,
                revision: st.revision,
            },
        )
    }

    /// Total number of cached objects.
    pub async fn len(&self) -> usize {
        self.state.read().await.objects.len()
    }

    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}
