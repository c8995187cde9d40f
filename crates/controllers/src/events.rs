//! Recording core/v1 Events (what `kubectl describe` shows), with upstream's
//! de-duplication: the same reason and message for the same object bump `count` and
//! `lastTimestamp` of one Event instead of creating another.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::Mutex;

/// "Normal" or "Warning".
pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// (object uid or key, type, reason, message).
type SeenKey = (String, String, String, String);
/// (event namespace, event name, count).
type SeenEvent = (String, String, i32);

/// Emits Events on behalf of one component (e.g. `replicaset-controller`).
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: String,
    host: Option<String>,
    /// (object uid or key, type, reason, message) → (event namespace, name, count).
    seen: Arc<Mutex<HashMap<SeenKey, SeenEvent>>>,
}

impl Recorder {
    pub fn new(client: kube::Client, component: &str) -> Self {
        Recorder {
            client,
            component: component.into(),
            host: None,
            seen: Default::default(),
        }
    }

    /// Events from a node-local component carry the node name as `source.host`.
    pub fn with_host(mut self, host: &str) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Record an event about `obj`. Failures are logged, never returned: events are
    /// best-effort, as upstream's recorder.
    pub async fn record(&self, obj: &ObjectReference, type_: &str, reason: &str, message: &str) {
        if let Err(e) = self.try_record(obj, type_, reason, message).await {
            tracing::debug!(reason, "recording event failed: {e}");
        }
    }

    async fn try_record(
        &self,
        obj: &ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let ns = obj
            .namespace
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let key = (
            obj.uid
                .clone()
                .unwrap_or_else(|| format!("{:?}/{:?}/{:?}", obj.kind, obj.namespace, obj.name)),
            type_.to_string(),
            reason.to_string(),
            message.to_string(),
        );
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let now = k8s_openapi::jiff::Timestamp::now();
        let existing = self.seen.lock().await.get(&key).cloned();
        if let Some((ens, name, count)) = existing {
            let patch = serde_json::json!({"count": count + 1, "lastTimestamp": Time(now)});
            let api_ns: Api<Event> = Api::namespaced(self.client.clone(), &ens);
            if api_ns
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                self.seen.lock().await.insert(key, (ens, name, count + 1));
                return Ok(());
            }
        }
        let name = format!(
            "{}.{:x}",
            obj.name.clone().unwrap_or_default(),
            now.as_nanosecond()
        );
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: obj.clone(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(type_.into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            ..Default::default()
        };
        api.create(&PostParams::default(), &ev).await?;
        let mut seen = self.seen.lock().await;
        if seen.len() > 4096 {
            seen.clear();
        }
        seen.insert(key, (ns, name, 1));
        Ok(())
    }
}

/// An ObjectReference to a Kubernetes object.
pub fn object_ref<K: kube::Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    obj.object_ref(&())
}
