//! The EndpointSlice controller (upstream `endpointslice`) and, in [`endpoints`], the
//! legacy Endpoints controller (upstream `endpoint`).
//!
//! For every Service with a selector (not ExternalName) the pods it selects are
//! published as `discovery.k8s.io/v1` EndpointSlices named `<service>-<5 chars>`
//! (generateName), labelled `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`, owned by
//! the Service (controller reference, so the garbage collector removes them with it).
//! One slice family per address type (the service's `ipFamilies`), at most
//! `--max-endpoints-per-slice` (100) endpoints per slice, one slice group per distinct
//! port list (named `targetPort`s resolve per pod). Each endpoint has the pod's address,
//! `ready`/`serving`/`terminating` conditions, `nodeName`, the node's zone and a
//! `targetRef` to the pod. Terminating pods stay listed with `ready: false`. Pods whose
//! node is unknown are left out (and the service retried), unless the service publishes
//! not-ready addresses, as upstream. A service without endpoints keeps one empty
//! placeholder slice. Changed slices carry `endpoints.kubernetes.io/last-change-trigger-time`.
//!
//! Services without a selector (like `default/kubernetes`, whose endpoints the API server
//! owns) are left alone. The decisions are in [`build`]; this module only watches and
//! writes. Slices are read live (label-selected list) at each sync, so a sync never acts
//! on a cache that has not yet seen the controller's own previous writes.

pub mod build;
pub mod endpoints;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::nodelifecycle::informer::{self, Key};
use crate::queue::WorkQueue;
use crate::{ControllerOptions, Error, is_not_found};
use build::{LABEL_MANAGED_BY, LABEL_SERVICE_NAME, MANAGED_BY, TRIGGER_TIME, TriggerTracker};

/// Zone label of nodes.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Services and pods in local caches; pod changes queue the services selecting the pod
/// before and after the change.
pub(crate) struct ServicePods {
    pub services: crate::informers::SharedStore<Service>,
    pub pods: crate::informers::SharedStore<Pod>,
}

fn services_for(
    services: &Store<Service>,
    ns: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Vec<Key> {
    services
        .state()
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
        .filter(|s| build::managed_selector(s).is_some_and(|sel| build::selects(sel, labels)))
        .map(|s| Key::of(s.as_ref()))
        .collect()
}

pub(crate) fn watch_service_pods(
    informers: &crate::informers::Informers,
    client: &Client,
    token: &CancellationToken,
    queue: &Arc<WorkQueue<Key>>,
) -> ServicePods {
    let services = {
        let q = queue.clone();
        informer::spawn_shared::<Service, _>(informers, client, token.clone(), move |ev, _| {
            if let watcher::Event::Apply(s)
            | watcher::Event::InitApply(s)
            | watcher::Event::Delete(s) = ev
            {
                q.add(Key::of(s));
            }
        })
    };
    let pods =
        {
            let (q, svcs) = (queue.clone(), services.clone());
            let mut labels: HashMap<Key, Option<BTreeMap<String, String>>> = HashMap::new();
            informer::spawn_shared::<Pod, _>(informers, client, token.clone(), move |ev, store| {
                match ev {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        let key = Key::of(p);
                        let new = p.metadata.labels.clone();
                        let old = labels.insert(key.clone(), new.clone());
                        let mut targets = services_for(&svcs, &key.namespace, new.as_ref());
                        if let Some(old) = old
                            && old != new
                        {
                            targets.extend(services_for(&svcs, &key.namespace, old.as_ref()));
                        }
                        for s in targets {
                            q.add(s);
                        }
                    }
                    watcher::Event::Delete(p) => {
                        let key = Key::of(p);
                        let old = labels
                            .remove(&key)
                            .unwrap_or_else(|| p.metadata.labels.clone());
                        for s in services_for(&svcs, &key.namespace, old.as_ref()) {
                            q.add(s);
                        }
                    }
                    watcher::Event::InitDone => {
                        labels.retain(|k, _| store.get(&k.object_ref()).is_some());
                    }
                    watcher::Event::Init => {}
                }
            })
        };
    ServicePods { services, pods }
}

impl ServicePods {
    /// The pods `svc` selects, sorted by name; `None` if the service is not managed.
    pub fn selected(&self, svc: &Service) -> Option<Vec<Arc<Pod>>> {
        let sel = build::managed_selector(svc)?;
        let ns = svc.metadata.namespace.as_deref();
        let mut pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| {
                p.metadata.namespace.as_deref() == ns
                    && build::selects(sel, p.metadata.labels.as_ref())
            })
            .collect();
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Some(pods)
    }

    pub async fn ready(&self, token: &CancellationToken) -> bool {
        informer::wait_ready(&self.services, token).await
            && informer::wait_ready(&self.pods, token).await
    }
}

/// Run `workers` workers calling `sync` for queued keys until `token` is cancelled.
pub(crate) async fn run_workers<F, Fut>(
    queue: Arc<WorkQueue<Key>>,
    workers: usize,
    token: CancellationToken,
    name: &'static str,
    sync: F,
) where
    F: Fn(Key) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), Error>> + Send,
{
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let (q, f) = (queue.clone(), sync.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(key) = q.get().await {
                match f(key.clone()).await {
                    Ok(()) => q.forget(&key),
                    Err(e) => {
                        debug!(controller = name, service = %key, error = %e, "sync failed, retrying");
                        q.add_rate_limited(key.clone());
                    }
                }
                q.done(&key);
            }
        }));
    }
    token.cancelled().await;
    queue.shut_down();
    for t in tasks {
        let _ = t.await;
    }
}

struct Controller {
    client: Client,
    watched: ServicePods,
    nodes: crate::informers::SharedStore<Node>,
    max_per_slice: usize,
    triggers: Mutex<TriggerTracker>,
}

/// Run the EndpointSlice controller until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let token = shutdown.child_token();
    let queue: Arc<WorkQueue<Key>> = WorkQueue::new(opts.backoff);
    let watched = watch_service_pods(&opts.informers, &client, &token, &queue);
    let nodes =
        informer::spawn_shared::<Node, _>(&opts.informers, &client, token.clone(), |_, _| {});
    let slices = {
        let q = queue.clone();
        informer::spawn(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}")),
            token.clone(),
            move |ev, _| {
                if let watcher::Event::Apply(s) | watcher::Event::Delete(s) = ev
                    && let Some(svc) = s
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(LABEL_SERVICE_NAME))
                {
                    q.add(Key::new(
                        s.metadata.namespace.as_deref().unwrap_or_default(),
                        svc,
                    ));
                }
            },
        )
    };
    if !watched.ready(&token).await
        || !informer::wait_ready(&nodes, &token).await
        || !informer::wait_ready(&slices, &token).await
    {
        return Ok(());
    }
    info!("endpointslice controller: started");
    let ctl = Arc::new(Controller {
        client,
        watched,
        nodes,
        max_per_slice: opts.max_endpoints_per_slice,
        triggers: Mutex::new(TriggerTracker::default()),
    });
    run_workers(
        queue,
        opts.workload_workers,
        token,
        "endpointslice",
        move |key| {
            let c = ctl.clone();
            async move { c.sync(&key).await }
        },
    )
    .await;
    info!("endpointslice controller: stopped");
    Ok(())
}

impl Controller {
    fn triggers(&self) -> std::sync::MutexGuard<'_, TriggerTracker> {
        self.triggers.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn sync(&self, key: &Key) -> Result<(), Error> {
        let Some(svc) = self.watched.services.get(&key.object_ref()) else {
            // Deleted: the garbage collector removes the slices it owns.
            self.triggers().forget(key);
            return Ok(());
        };
        let Some(pods) = self.watched.selected(&svc) else {
            return Ok(());
        };
        let refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let zone_of = |node: &str| -> Option<Option<String>> {
            let n = self.nodes.get(&ObjectRef::new(node))?;
            Some(
                n.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(ZONE_LABEL).cloned()),
            )
        };
        let (desired, skipped) = build::desired_slices(&svc, &refs, &zone_of);
        let pod_times: Vec<(Key, k8s_openapi::jiff::Timestamp)> = refs
            .iter()
            .filter_map(|p| Some((Key::of(*p), build::pod_trigger_time(p)?)))
            .collect();
        let trigger = self.triggers().compute(
            key,
            svc.metadata.creation_timestamp.as_ref().map(|t| t.0),
            &pod_times,
        );

        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &key.namespace);
        let lp = ListParams::default().labels(&format!(
            "{LABEL_SERVICE_NAME}={},{LABEL_MANAGED_BY}={MANAGED_BY}",
            key.name
        ));
        let existing = api.list(&lp).await?.items;
        let plan = build::plan_slices(&svc, &existing, &desired, self.max_per_slice);
        let stamp = |s: &mut EndpointSlice| {
            if let Some(t) = trigger {
                s.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(TRIGGER_TIME.into(), t.to_string());
            }
        };
        let writes = plan.create.len() + plan.update.len() + plan.delete.len();
        for mut s in plan.create {
            stamp(&mut s);
            api.create(&PostParams::default(), &s).await?;
        }
        for mut s in plan.update {
            stamp(&mut s);
            let name = s.metadata.name.clone().unwrap_or_default();
            api.replace(&name, &PostParams::default(), &s).await?;
        }
        for name in plan.delete {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if writes > 0 {
            debug!(service = %key, writes, "endpointslice controller: slices updated");
        }
        if skipped {
            return Err(Error::Several(format!(
                "service {key}: some pods are on nodes not (yet) known, retrying"
            )));
        }
        Ok(())
    }
}
