//! Recording core/v1 Events (what `kubectl describe` shows), the way upstream
//! client-go's `record` package (EventBroadcaster, EventCorrelator) does it.
//!
//! * **Asynchronous.** [`Recorder::record`] builds the Event (its timestamps are the
//!   time of the call), puts it on a bounded queue ([`MAX_QUEUED_EVENTS`], 1000) and
//!   returns; it never waits for the API server. A background task, started on the
//!   current tokio runtime at the first `record`, writes the queued events one at a
//!   time. When the queue is full the event is dropped and a warning logged. All
//!   clones of a recorder share one queue and task; the task ends when the last clone
//!   is dropped and the queue is empty. [`Recorder::flush`] waits until everything
//!   recorded so far was written or given up on.
//! * **Correlated** ([`correlator`], upstream's defaults): identical events patch
//!   `count`, `lastTimestamp` and `message` of one Event; from the 10th distinct
//!   message of similar events (same source, object, type and reason) within 10
//!   minutes on, new messages are folded into one `(combined from similar events): …`
//!   Event whose count grows; a token
//!   bucket per source and object (burst 25, one more every 5 minutes) drops event
//!   spam. Its caches are LRU-bounded (4096 entries each).
//! * **Retried.** A write that fails for a transient reason (no connection, 429, 5xx)
//!   is tried again, up to [`MAX_TRIES_PER_EVENT`] (12) times in all with
//!   [`RETRY_SLEEP`] (10 s; the first sleep a random part of it) in between, as
//!   upstream. Other errors (invalid event, already exists, namespace terminating)
//!   are logged and the event abandoned. A patch of an Event that no longer exists
//!   (404) creates it anew.
//!
//! Events are best effort: nothing here returns an error or panics.

pub mod correlator;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::{Notify, mpsc};

use correlator::{Correlated, Correlator, CorrelatorOptions};

/// "Normal" or "Warning".
pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// Upstream `maxQueuedEvents`: events waiting to be written per recorder.
pub const MAX_QUEUED_EVENTS: usize = 1000;
/// Upstream `maxTriesPerEvent`.
pub const MAX_TRIES_PER_EVENT: u32 = 12;
/// Upstream `defaultSleepDuration` between tries.
pub const RETRY_SLEEP: Duration = Duration::from_secs(10);

/// How queued events are delivered.
#[derive(Clone, Debug)]
struct Delivery {
    queue: usize,
    max_tries: u32,
    sleep: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            queue: MAX_QUEUED_EVENTS,
            max_tries: MAX_TRIES_PER_EVENT,
            sleep: RETRY_SLEEP,
        }
    }
}

/// Emits Events on behalf of one component (e.g. `replicaset-controller`). Cheap to
/// clone; clones share the queue, the correlator and the writing task.
#[derive(Clone)]
pub struct Recorder {
    component: Arc<str>,
    host: Option<Arc<str>>,
    shared: Arc<Shared>,
}

/// What all clones of a recorder share. The writing task holds none of it but the
/// backlog, so dropping the last recorder closes the queue and ends the task.
struct Shared {
    tx: mpsc::Sender<Event>,
    /// The writing task until it is started.
    idle_worker: Mutex<Option<Worker>>,
    backlog: Arc<Backlog>,
}

/// Events queued or being written.
#[derive(Default)]
struct Backlog {
    count: AtomicUsize,
    drained: Notify,
}

impl Backlog {
    fn done(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drained.notify_waiters();
        }
    }
}

impl Recorder {
    pub fn new(client: kube::Client, component: &str) -> Self {
        Self::with_options(
            client,
            component,
            Delivery::default(),
            CorrelatorOptions::default(),
        )
    }

    fn with_options(
        client: kube::Client,
        component: &str,
        delivery: Delivery,
        correlator: CorrelatorOptions,
    ) -> Self {
        let (tx, rx) = mpsc::channel(delivery.queue.max(1));
        let backlog = Arc::new(Backlog::default());
        let worker = Worker {
            client,
            rx,
            correlator,
            delivery,
            backlog: backlog.clone(),
        };
        Recorder {
            component: component.into(),
            host: None,
            shared: Arc::new(Shared {
                tx,
                idle_worker: Mutex::new(Some(worker)),
                backlog,
            }),
        }
    }

    /// Events from a node-local component carry the node name as `source.host`.
    pub fn with_host(mut self, host: &str) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Record an event about `obj`: queue it for the background writer and return at
    /// once. Failures are logged, never returned: events are best-effort, as upstream's
    /// recorder.
    pub async fn record(&self, obj: &ObjectReference, type_: &str, reason: &str, message: &str) {
        let event = self.make_event(obj, type_, reason, message, Timestamp::now());
        let backlog = &self.shared.backlog;
        backlog.count.fetch_add(1, Ordering::AcqRel);
        match self.shared.tx.try_send(event) {
            Ok(()) => self.start_worker(),
            Err(mpsc::error::TrySendError::Full(ev)) => {
                backlog.done();
                tracing::warn!(
                    reason = ev.reason.as_deref(),
                    object = ev.involved_object.name.as_deref(),
                    "too many queued events, dropped event"
                );
            }
            Err(mpsc::error::TrySendError::Closed(ev)) => {
                // The writing task is gone (its runtime shut down).
                backlog.done();
                tracing::debug!(
                    reason = ev.reason.as_deref(),
                    "event writer stopped, dropped event"
                );
            }
        }
    }

    /// Waits until every event recorded so far (by this recorder or its clones) was
    /// written, dropped by the spam filter or given up on.
    pub async fn flush(&self) {
        let backlog = &self.shared.backlog;
        loop {
            let drained = backlog.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if backlog.count.load(Ordering::Acquire) == 0 || self.shared.tx.is_closed() {
                return;
            }
            self.start_worker();
            drained.await;
        }
    }

    /// Starts the writing task on the current runtime if it is not running yet.
    fn start_worker(&self) {
        let mut idle = self
            .shared
            .idle_worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.is_none() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                if let Some(worker) = idle.take() {
                    rt.spawn(worker.run());
                }
            }
            Err(_) => tracing::debug!("no tokio runtime: events stay queued"),
        }
    }

    fn make_event(
        &self,
        obj: &ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
        now: Timestamp,
    ) -> Event {
        let ns = obj
            .namespace
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let host = self.host.as_deref().map(str::to_string);
        Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    obj.name.clone().unwrap_or_default(),
                    now.as_nanosecond()
                )),
                namespace: Some(ns),
                ..Default::default()
            },
            involved_object: obj.clone(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(type_.into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            source: Some(EventSource {
                component: Some(self.component.to_string()),
                host: host.clone(),
            }),
            reporting_component: Some(self.component.to_string()),
            reporting_instance: Some(host.unwrap_or_else(|| self.component.to_string())),
            ..Default::default()
        }
    }
}

/// The background writer: correlates and writes queued events, one at a time.
struct Worker {
    client: kube::Client,
    rx: mpsc::Receiver<Event>,
    correlator: CorrelatorOptions,
    delivery: Delivery,
    backlog: Arc<Backlog>,
}

impl Worker {
    async fn run(mut self) {
        let mut correlator = Correlator::new(self.correlator.clone());
        while let Some(event) = self.rx.recv().await {
            self.deliver(&mut correlator, event).await;
            self.backlog.done();
        }
    }

    async fn deliver(&self, correlator: &mut Correlator, event: Event) {
        // Correlate at the time the event was recorded, not when it is dequeued.
        let now = event
            .last_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or_else(Timestamp::now);
        let reason = event.reason.clone().unwrap_or_default();
        let Some(c) = correlator.correlate(event, now) else {
            tracing::debug!(reason, "event dropped by the spam filter");
            return;
        };
        let mut tries = 0;
        loop {
            tries += 1;
            let err = match self.write(&c).await {
                Ok(stored) => {
                    correlator.update_state(&c.key, &stored);
                    return;
                }
                Err(e) => e,
            };
            if !transient(&err) {
                tracing::debug!(reason, "server rejected event (will not retry): {err}");
                return;
            }
            if tries >= self.delivery.max_tries {
                tracing::warn!(
                    reason,
                    "unable to write event (retry limit exceeded): {err}"
                );
                return;
            }
            tracing::debug!(reason, "unable to write event (will retry): {err}");
            // A random first sleep, so that many clients do not retry in step after
            // the API server comes back.
            let sleep = if tries == 1 {
                self.delivery.sleep.mul_f64(rand::random::<f64>())
            } else {
                self.delivery.sleep
            };
            tokio::time::sleep(sleep).await;
        }
    }

    /// Patches the existing Event or creates a new one; returns what the server stored.
    async fn write(&self, c: &Correlated) -> Result<Event, kube::Error> {
        let ns = c.event.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        if let Some(patch) = &c.patch {
            let name = c.event.metadata.name.as_deref().unwrap_or_default();
            match api
                .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                // Deleted or expired meanwhile: create it again (with its count).
                Err(e) if crate::is_not_found(&e) => {}
                other => return other,
            }
        }
        let mut event = c.event.clone();
        event.metadata.resource_version = None;
        api.create(&PostParams::default(), &event).await
    }
}

/// Whether trying the same write again may succeed.
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        // The same request would be built the same way again.
        kube::Error::BuildRequest(_) | kube::Error::HttpError(_) => false,
        // Connection and transport errors, unexpected responses.
        _ => true,
    }
}

/// An ObjectReference to a Kubernetes object.
pub fn object_ref<K: kube::Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    obj.object_ref(&())
}

#[cfg(test)]
mod tests;
