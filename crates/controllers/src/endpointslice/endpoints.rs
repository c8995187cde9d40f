//! The legacy Endpoints controller (upstream `endpoint`): for every Service with a
//! selector, a core/v1 Endpoints object of the same name whose subsets list the ready
//! pods' addresses (`addresses`) and the others (`notReadyAddresses`, terminating pods
//! excluded unless the service publishes not-ready addresses), grouped by resolved port
//! list, at most 1000 addresses (then annotated
//! `endpoints.kubernetes.io/over-capacity: truncated`). Labelled like the service plus
//! `endpointslice.kubernetes.io/skip-mirror: "true"` (and
//! `service.kubernetes.io/headless` for headless services), annotated with
//! `endpoints.kubernetes.io/last-change-trigger-time` when written. An Endpoints object
//! is written only when its subsets, labels or capacity annotation differ; it is
//! deleted when its Service is deleted (like upstream, whatever the service's kind).

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::build::{self, OVER_CAPACITY, TRIGGER_TIME, TriggerTracker};
use super::{ServicePods, run_workers, watch_service_pods};
use crate::nodelifecycle::informer::{self, Key};
use crate::queue::WorkQueue;
use crate::{ControllerOptions, Error, is_not_found};

struct Controller {
    client: Client,
    watched: ServicePods,
    triggers: Mutex<TriggerTracker>,
}

/// The Endpoints object `svc` should have, given the `current` one.
pub fn desired_endpoints(
    svc: &Service,
    pods: &[&k8s_openapi::api::core::v1::Pod],
    current: Option<&Endpoints>,
    trigger: Option<k8s_openapi::jiff::Timestamp>,
) -> Option<Endpoints> {
    let (subsets, truncated) = build::legacy_subsets(svc, pods);
    let labels = build::legacy_labels(svc);
    if let Some(cur) = current {
        let same_subsets = build::subsets_sig(cur.subsets.as_deref().unwrap_or_default())
            == build::subsets_sig(&subsets);
        let same_labels = cur.metadata.labels.clone().unwrap_or_default() == labels;
        let cap = cur
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OVER_CAPACITY))
            .map(String::as_str);
        let same_cap = if truncated {
            cap == Some("truncated")
        } else {
            cap.is_none()
        };
        if same_subsets && same_labels && same_cap {
            return None;
        }
    }
    let mut annotations = current
        .and_then(|c| c.metadata.annotations.clone())
        .unwrap_or_default();
    match trigger {
        Some(t) => {
            annotations.insert(TRIGGER_TIME.into(), t.to_string());
        }
        None => {
            annotations.remove(TRIGGER_TIME);
        }
    }
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    Some(Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            resource_version: current.and_then(|c| c.metadata.resource_version.clone()),
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    })
}

/// Run the Endpoints controller until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let token = shutdown.child_token();
    let queue: Arc<WorkQueue<Key>> = WorkQueue::new(opts.backoff);
    let watched = watch_service_pods(&opts.informers, &client, &token, &queue);
    let eps = {
        let q = queue.clone();
        informer::spawn_shared::<Endpoints, _>(
            &opts.informers,
            &client,
            token.clone(),
            move |ev, _| {
                if let watcher::Event::Delete(e) = ev {
                    q.add(Key::of(e));
                }
            },
        )
    };
    if !watched.ready(&token).await || !informer::wait_ready(&eps, &token).await {
        return Ok(());
    }
    info!("endpoints controller: started");
    let ctl = Arc::new(Controller {
        client,
        watched,
        triggers: Mutex::new(TriggerTracker::default()),
    });
    run_workers(
        queue,
        opts.workload_workers,
        token,
        "endpoint",
        move |key| {
            let c = ctl.clone();
            async move { c.sync(&key).await }
        },
    )
    .await;
    info!("endpoints controller: stopped");
    Ok(())
}

impl Controller {
    async fn sync(&self, key: &Key) -> Result<(), Error> {
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &key.namespace);
        let Some(svc) = self.watched.services.get(&key.object_ref()) else {
            self.triggers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .forget(key);
            return match api.delete(&key.name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(e.into()),
            };
        };
        let Some(pods) = self.watched.selected(&svc) else {
            return Ok(());
        };
        let refs: Vec<&k8s_openapi::api::core::v1::Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let pod_times: Vec<(Key, k8s_openapi::jiff::Timestamp)> = refs
            .iter()
            .filter_map(|p| Some((Key::of(*p), build::pod_trigger_time(p)?)))
            .collect();
        let trigger = self
            .triggers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .compute(
                key,
                svc.metadata.creation_timestamp.as_ref().map(|t| t.0),
                &pod_times,
            );
        let current = api.get_opt(&key.name).await?;
        let Some(want) = desired_endpoints(&svc, &refs, current.as_ref(), trigger) else {
            return Ok(());
        };
        if current.is_some() {
            api.replace(&key.name, &PostParams::default(), &want)
                .await?;
        } else {
            api.create(&PostParams::default(), &want).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Pod, PodCondition, PodIP, PodSpec, PodStatus, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn svc(headless: bool) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                labels: Some([("tier".to_string(), "front".to_string())].into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                cluster_ip: Some(if headless { "None" } else { "10.43.0.10" }.into()),
                ports: Some(vec![ServicePort {
                    port: 80,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(ip: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("p-{ip}")),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ips: Some(vec![PodIP { ip: ip.into() }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn desired_endpoints_writes_only_on_change() {
        let s = svc(false);
        let pods = [pod("10.0.0.1", true), pod("10.0.0.2", false)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let t = Timestamp::from_second(100).expect("ts");
        let first = desired_endpoints(&s, &refs, None, Some(t)).expect("create");
        assert_eq!(first.metadata.name.as_deref(), Some("web"));
        let labels = first.metadata.labels.clone().expect("labels");
        assert_eq!(labels.get("tier").map(String::as_str), Some("front"));
        assert_eq!(
            labels.get(build::LABEL_SKIP_MIRROR).map(String::as_str),
            Some("true")
        );
        assert!(!labels.contains_key(build::LABEL_HEADLESS));
        assert_eq!(
            first
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(TRIGGER_TIME))
                .map(String::as_str),
            Some("1970-01-01T00:01:40Z")
        );
        let subsets = first.subsets.clone().expect("subsets");
        assert_eq!(subsets.len(), 1);
        assert_eq!(
            subsets[0].addresses.as_ref().map(|a| a[0].ip.as_str()),
            Some("10.0.0.1")
        );
        assert_eq!(
            subsets[0]
                .not_ready_addresses
                .as_ref()
                .map(|a| a[0].ip.as_str()),
            Some("10.0.0.2")
        );
        assert_eq!(subsets[0].ports.as_ref().map(|p| p[0].port), Some(80));
        // Same content, even with a new trigger time: nothing to write.
        assert!(
            desired_endpoints(
                &s,
                &refs,
                Some(&first),
                Some(Timestamp::from_second(200).expect("ts"))
            )
            .is_none()
        );
        // A readiness change is written, keeping other annotations.
        let mut cur = first.clone();
        cur.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("keep".into(), "me".into());
        let pods2 = [pod("10.0.0.1", true), pod("10.0.0.2", true)];
        let refs2: Vec<&Pod> = pods2.iter().collect();
        let next = desired_endpoints(&s, &refs2, Some(&cur), None).expect("update");
        let ann = next.metadata.annotations.clone().expect("annotations");
        assert_eq!(ann.get("keep").map(String::as_str), Some("me"));
        assert!(
            !ann.contains_key(TRIGGER_TIME),
            "no trigger time: annotation removed"
        );
        assert_eq!(
            next.subsets
                .as_ref()
                .and_then(|s| s[0].addresses.as_ref())
                .map(Vec::len),
            Some(2)
        );
        // No pods: an Endpoints without subsets.
        let empty = desired_endpoints(&svc(true), &[], None, None).expect("create");
        assert!(empty.subsets.is_none());
        assert!(
            empty
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(build::LABEL_HEADLESS))
        );
        let _ = Time(Timestamp::UNIX_EPOCH);
    }
}
