//! The StatefulSet controller's decisions, as pure functions (upstream
//! `stateful_set_utils.go` and the ordering logic of `updateStatefulSet`):
//! pod identity (`<set>-<ordinal>`, hostname, subdomain, the `pod-name` and
//! `pod-index` labels, claim volumes `<claim>-<set>-<ordinal>`), which ordinal to
//! act on next under `OrderedReady` or `Parallel`, rolling updates from the highest
//! ordinal down to the partition, and the status counters.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;

use crate::history::POD_REVISION_LABEL;
use crate::workload::{is_pod_available, is_pod_ready, is_terminating, phase, pod_from_template};

/// Label with the pod's own name (upstream `StatefulSetPodNameLabel`).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label with the pod's ordinal (upstream `PodIndexLabel`).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// `(parent, ordinal)` from a pod name `<parent>-<digits>` (upstream
/// `getParentNameAndOrdinal`).
pub fn parent_and_ordinal(pod_name: &str) -> Option<(&str, i32)> {
    let (parent, digits) = pod_name.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, digits.parse().ok()?))
}

/// Whether the pod's name makes it a member of `set_name`.
pub fn is_member(set_name: &str, pod: &Pod) -> bool {
    pod.metadata
        .name
        .as_deref()
        .and_then(parent_and_ordinal)
        .is_some_and(|(p, _)| p == set_name)
}

/// `<set>-<ordinal>`.
pub fn pod_name(set_name: &str, ordinal: i32) -> String {
    format!("{set_name}-{ordinal}")
}

/// `<claim>-<set>-<ordinal>`.
pub fn claim_name(claim: &str, set_name: &str, ordinal: i32) -> String {
    format!("{claim}-{set_name}-{ordinal}")
}

/// The revision a pod was made from.
pub fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(POD_REVISION_LABEL))
        .map_or("", String::as_str)
}

/// The set's first ordinal (`spec.ordinals.start`, default 0).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

/// `spec.replicas` (default 1).
pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

/// The claims a set's pod uses: its templates, renamed for the ordinal, labelled
/// with the set's `matchLabels` (upstream `getPersistentVolumeClaims`).
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let set_name = set.metadata.name.as_deref().unwrap_or_default();
    let match_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let mut c = t.clone();
            let template_name = t.metadata.name.clone().unwrap_or_default();
            c.metadata.name = Some(claim_name(&template_name, set_name, ordinal));
            c.metadata.namespace = set.metadata.namespace.clone();
            let labels = c.metadata.labels.get_or_insert_with(BTreeMap::new);
            labels.extend(match_labels.clone());
            c.status = None;
            c
        })
        .collect()
}

/// Upstream `updateIdentity`: the name-derived labels.
pub fn identity_labels(set_name: &str, ordinal: i32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (POD_NAME_LABEL.to_string(), pod_name(set_name, ordinal)),
        (POD_INDEX_LABEL.to_string(), ordinal.to_string()),
    ])
}

/// Upstream `identityMatches` (name, namespace and identity labels).
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let set_name = set.metadata.name.as_deref().unwrap_or_default();
    let Some((parent, ordinal)) = pod.metadata.name.as_deref().and_then(parent_and_ordinal) else {
        return false;
    };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    parent == set_name
        && pod.metadata.namespace == set.metadata.namespace
        && identity_labels(set_name, ordinal)
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
}

/// Upstream `newStatefulSetPod`: a pod for `ordinal` from `template` with the set's
/// identity, claim volumes and `revision` label.
pub fn new_pod(
    set: &StatefulSet,
    template: &PodTemplateSpec,
    owner: OwnerReference,
    ordinal: i32,
    revision: &str,
) -> Pod {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let mut pod = pod_from_template(template, &set_name, owner);
    let name = pod_name(&set_name, ordinal);
    pod.metadata.name = Some(name.clone());
    pod.metadata.namespace = set.metadata.namespace.clone();
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.extend(identity_labels(&set_name, ordinal));
    labels.insert(POD_REVISION_LABEL.into(), revision.into());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name);
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    let claims = claims_for(set, ordinal);
    let templates: Vec<String> = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .map(|ts| {
            ts.iter()
                .map(|t| t.metadata.name.clone().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    let mut volumes: Vec<Volume> = templates
        .iter()
        .zip(&claims)
        .map(|(vol, claim)| Volume {
            name: vol.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.metadata.name.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    volumes.extend(
        spec.volumes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !templates.contains(&v.name)),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    pod
}

/// Running and Ready (upstream `isRunningAndReady`).
pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_pod_ready(pod)
}

/// Running and available for `min_ready_seconds`.
pub fn is_running_and_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    phase(pod) == "Running" && is_pod_available(pod, min_ready_seconds, now)
}

/// Upstream `isHealthy`: running, ready, not terminating.
pub fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

/// One slot of the ordinal sequence.
#[derive(Clone, Debug)]
pub enum Slot {
    /// A pod of the set that exists.
    Pod(Arc<Pod>),
    /// No pod yet; one at this revision is to be created.
    Missing { ordinal: i32, revision: String },
}

impl Slot {
    fn pod(&self) -> Option<&Pod> {
        match self {
            Slot::Pod(p) => Some(p),
            Slot::Missing { .. } => None,
        }
    }

    fn healthy(&self) -> bool {
        self.pod().is_some_and(is_healthy)
    }
}

/// One step of a sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the pod for this ordinal at this revision (claims first).
    Create { ordinal: i32, revision: String },
    /// Delete a pod that finished (Succeeded or Failed) so it is made again.
    Recreate(String),
    /// Create the missing claims of a pending pod.
    Claims(String),
    /// Restore the identity labels of a pod.
    FixIdentity(String),
    /// Delete a pod beyond the replica count.
    ScaleDown(String),
    /// Delete a pod of an old revision for a rolling update.
    Update(String),
}

/// Everything one sync decides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The actions may run concurrently (`Parallel`): creations and scale-downs.
    pub burst: bool,
}

/// What [`plan`] needs to know about the set.
pub struct SetView<'a> {
    pub set: &'a StatefulSet,
    pub current_revision: &'a str,
    pub update_revision: &'a str,
    pub now: Timestamp,
}

fn min_ready(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// Arrange the pods into the ordinal slots `[start, start+replicas)` (missing ones
/// to be created at the revision upstream's `newVersionedStatefulSetPod` picks) and
/// the condemned pods beyond, highest ordinal first.
pub fn arrange(view: &SetView<'_>, pods: &[Arc<Pod>]) -> (Vec<Slot>, Vec<Arc<Pod>>) {
    let set = view.set;
    let start = start_ordinal(set);
    let n = replicas(set);
    let mut slots: Vec<Option<Arc<Pod>>> = vec![None; usize::try_from(n).unwrap_or(0)];
    let mut condemned = Vec::new();
    for p in pods {
        let Some((_, ord)) = p.metadata.name.as_deref().and_then(parent_and_ordinal) else {
            continue;
        };
        if ord >= start && ord < start.saturating_add(n) {
            if let Some(slot) = slots.get_mut(usize::try_from(ord - start).unwrap_or(usize::MAX)) {
                *slot = Some(Arc::clone(p));
            }
        } else {
            condemned.push(Arc::clone(p));
        }
    }
    let strategy = set.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    let rolling = strategy
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let partition = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .map(|r| r.partition.unwrap_or(0));
    let current_replicas = set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let slots = slots
        .into_iter()
        .enumerate()
        .map(|(i, p)| match p {
            Some(p) => Slot::Pod(p),
            None => {
                let ordinal = start + i32::try_from(i).unwrap_or(i32::MAX);
                let at_current = rolling
                    && match partition {
                        None => ordinal < start + current_replicas,
                        Some(part) => ordinal < start + part,
                    };
                let revision = if at_current {
                    view.current_revision
                } else {
                    view.update_revision
                };
                Slot::Missing {
                    ordinal,
                    revision: revision.to_string(),
                }
            }
        })
        .collect();
    condemned.sort_by_key(|p| {
        std::cmp::Reverse(
            p.metadata
                .name
                .as_deref()
                .and_then(parent_and_ordinal)
                .map_or(-1, |(_, o)| o),
        )
    });
    (slots, condemned)
}

/// Upstream `updateStatefulSet`: the actions of one sync, in order. Under
/// `OrderedReady` the list stops where upstream's loop would return (after a
/// creation or deletion, or before a pod that is not yet running and available);
/// under `Parallel` every replica and condemned pod is handled at once.
pub fn plan(view: &SetView<'_>, slots: &[Slot], condemned: &[Arc<Pod>]) -> Plan {
    let set = view.set;
    let spec = set.spec.as_ref();
    let burst = spec.and_then(|s| s.pod_management_policy.as_deref()) == Some("Parallel");
    let monotonic = !burst;
    let min_ready = min_ready(set);
    let mut actions = Vec::new();
    let done = |actions: Vec<Action>| Plan { actions, burst };
    if set.metadata.deletion_timestamp.is_some() {
        return done(actions);
    }

    // The first unhealthy pod, in ordinal order.
    let first_unhealthy: Option<String> = slots
        .iter()
        .find(|s| !s.healthy())
        .map(|s| match s {
            Slot::Pod(p) => p.metadata.name.clone().unwrap_or_default(),
            Slot::Missing { ordinal, .. } => {
                pod_name(set.metadata.name.as_deref().unwrap_or_default(), *ordinal)
            }
        })
        .or_else(|| {
            condemned
                .iter()
                .rev()
                .find(|p| !is_healthy(p))
                .map(|p| p.metadata.name.clone().unwrap_or_default())
        });

    for slot in slots {
        let pod = match slot {
            Slot::Missing { ordinal, revision } => {
                actions.push(Action::Create {
                    ordinal: *ordinal,
                    revision: revision.clone(),
                });
                if monotonic {
                    return done(actions);
                }
                continue;
            }
            Slot::Pod(p) => p,
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        if matches!(phase(pod), "Succeeded" | "Failed") {
            if !is_terminating(pod) {
                actions.push(Action::Recreate(name));
            }
            if monotonic {
                return done(actions);
            }
            continue;
        }
        if phase(pod) == "Pending" {
            actions.push(Action::Claims(name.clone()));
        }
        if monotonic && (is_terminating(pod) || !is_running_and_available(pod, min_ready, view.now))
        {
            return done(actions);
        }
        if !identity_matches(set, pod) {
            actions.push(Action::FixIdentity(name));
        }
    }

    for pod in condemned {
        let name = pod.metadata.name.clone().unwrap_or_default();
        if is_terminating(pod) {
            if monotonic {
                return done(actions);
            }
            continue;
        }
        if monotonic
            && !is_running_and_ready(pod)
            && first_unhealthy.as_deref() != Some(name.as_str())
        {
            return done(actions);
        }
        actions.push(Action::ScaleDown(name));
        if monotonic {
            return done(actions);
        }
    }

    let strategy = spec.and_then(|s| s.update_strategy.as_ref());
    if strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
        return done(actions);
    }
    let partition = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0);
    let lowest = usize::try_from(partition).unwrap_or(0);
    for i in (lowest..slots.len()).rev() {
        let Some(pod) = slots[i].pod() else {
            return done(actions);
        };
        if pod_revision(pod) != view.update_revision && !is_terminating(pod) {
            actions.push(Action::Update(
                pod.metadata.name.clone().unwrap_or_default(),
            ));
            return done(actions);
        }
        if !is_healthy(pod) {
            return done(actions);
        }
    }
    done(actions)
}

/// StatefulSet status counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
    pub current: i32,
    pub updated: i32,
}

/// Upstream `computeReplicaStatus` over the existing pods.
pub fn count_status(
    pods: &[&Pod],
    min_ready_seconds: i32,
    current: &str,
    update: &str,
    now: Timestamp,
) -> Counts {
    let mut c = Counts::default();
    for pod in pods {
        let created = !phase(pod).is_empty();
        if created {
            c.replicas += 1;
        }
        if is_running_and_ready(pod) {
            c.ready += 1;
            if is_running_and_available(pod, min_ready_seconds, now) {
                c.available += 1;
            }
        }
        if created && !is_terminating(pod) {
            if pod_revision(pod) == current {
                c.current += 1;
            }
            if pod_revision(pod) == update {
                c.updated += 1;
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn set(replicas: i32, policy: &str, extra: serde_json::Value) -> StatefulSet {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {
                "replicas": replicas,
                "podManagementPolicy": policy,
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
            }
        });
        if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
            for (k, val) in extra {
                spec.insert(k.clone(), val.clone());
            }
        }
        serde_json::from_value(v).expect("set")
    }

    /// A member pod: ordinal, revision, phase ("" = not created yet), ready.
    fn pod(ord: i32, rev: &str, phase: &str, ready: bool) -> Arc<Pod> {
        let mut v = json!({
            "metadata": {"name": format!("web-{ord}"), "namespace": "ns",
                "labels": {"app": "web", POD_REVISION_LABEL: rev, POD_NAME_LABEL: format!("web-{ord}"), POD_INDEX_LABEL: ord.to_string()}},
            "status": {"phase": phase}
        });
        if ready {
            v["status"]["conditions"] = json!([{"type": "Ready", "status": "True",
                "lastTransitionTime": Time(Timestamp::from_second(1).expect("ts"))}]);
        }
        Arc::new(serde_json::from_value(v).expect("pod"))
    }

    fn terminating(p: Arc<Pod>) -> Arc<Pod> {
        let mut p = (*p).clone();
        p.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(5).expect("ts")));
        Arc::new(p)
    }

    fn run(set: &StatefulSet, pods: &[Arc<Pod>]) -> Plan {
        let view = SetView {
            set,
            current_revision: "web-old",
            update_revision: "web-new",
            now: Timestamp::from_second(100).expect("ts"),
        };
        let (slots, condemned) = arrange(&view, pods);
        plan(&view, &slots, &condemned)
    }

    fn create(o: i32) -> Action {
        Action::Create {
            ordinal: o,
            revision: "web-new".into(),
        }
    }

    #[test]
    fn names_and_ordinals() {
        let cases = [
            ("web-0", Some(("web", 0))),
            ("my-web-12", Some(("my-web", 12))),
            ("web", None),
            ("web-", None),
            ("web-x1", None),
        ];
        for (name, want) in cases {
            assert_eq!(parent_and_ordinal(name), want, "{name}");
        }
        assert_eq!(claim_name("www", "web", 3), "www-web-3");
    }

    #[test]
    fn ordered_ready_table() {
        let s = set(3, "OrderedReady", json!({}));
        let cases: Vec<(&str, Vec<Arc<Pod>>, Vec<Action>)> = vec![
            ("first pod", vec![], vec![create(0)]),
            (
                "wait for web-0 running",
                vec![pod(0, "web-new", "Pending", false)],
                vec![Action::Claims("web-0".into())],
            ),
            (
                "wait for web-0 ready",
                vec![pod(0, "web-new", "Running", false)],
                vec![],
            ),
            (
                "next after ready",
                vec![pod(0, "web-new", "Running", true)],
                vec![create(1)],
            ),
            (
                "gap filled first",
                vec![
                    pod(0, "web-new", "Running", true),
                    pod(2, "web-new", "Running", true),
                ],
                vec![create(1)],
            ),
            (
                "failed pod recreated",
                vec![pod(0, "web-new", "Failed", false)],
                vec![Action::Recreate("web-0".into())],
            ),
            (
                "all ready: nothing",
                vec![
                    pod(0, "web-new", "Running", true),
                    pod(1, "web-new", "Running", true),
                    pod(2, "web-new", "Running", true),
                ],
                vec![],
            ),
            (
                "scale down highest first",
                vec![
                    pod(0, "web-new", "Running", true),
                    pod(1, "web-new", "Running", true),
                    pod(2, "web-new", "Running", true),
                    pod(3, "web-new", "Running", true),
                    pod(4, "web-new", "Running", true),
                ],
                vec![Action::ScaleDown("web-4".into())],
            ),
            (
                "scale down waits for termination",
                vec![
                    pod(0, "web-new", "Running", true),
                    pod(1, "web-new", "Running", true),
                    pod(2, "web-new", "Running", true),
                    pod(3, "web-new", "Running", true),
                    terminating(pod(4, "web-new", "Running", true)),
                ],
                vec![],
            ),
            (
                "identity restored",
                vec![Arc::new({
                    let mut p = (*pod(0, "web-new", "Running", true)).clone();
                    p.metadata
                        .labels
                        .get_or_insert_with(Default::default)
                        .remove(POD_NAME_LABEL);
                    p
                })],
                vec![Action::FixIdentity("web-0".into()), create(1)],
            ),
        ];
        for (what, pods, want) in cases {
            let p = run(&s, &pods);
            assert!(!p.burst);
            assert_eq!(p.actions, want, "{what}");
        }
    }

    #[test]
    fn parallel_table() {
        let s = set(3, "Parallel", json!({}));
        let cases: Vec<(&str, Vec<Arc<Pod>>, Vec<Action>)> = vec![
            ("all at once", vec![], vec![create(0), create(1), create(2)]),
            (
                "no waiting on readiness",
                vec![pod(0, "web-new", "Running", false)],
                vec![create(1), create(2)],
            ),
            (
                "scale down all at once",
                vec![
                    pod(0, "web-new", "Running", true),
                    pod(1, "web-new", "Running", true),
                    pod(2, "web-new", "Running", true),
                    pod(3, "web-new", "Running", false),
                    pod(4, "web-new", "Running", true),
                ],
                vec![
                    Action::ScaleDown("web-4".into()),
                    Action::ScaleDown("web-3".into()),
                ],
            ),
        ];
        for (what, pods, want) in cases {
            let p = run(&s, &pods);
            assert!(p.burst);
            assert_eq!(p.actions, want, "{what}");
        }
    }

    #[test]
    fn rolling_update_table() {
        let all_old = || {
            vec![
                pod(0, "web-old", "Running", true),
                pod(1, "web-old", "Running", true),
                pod(2, "web-old", "Running", true),
            ]
        };
        let cases: Vec<(&str, serde_json::Value, Vec<Arc<Pod>>, Vec<Action>)> = vec![
            (
                "highest first",
                json!({}),
                all_old(),
                vec![Action::Update("web-2".into())],
            ),
            (
                "wait while updating",
                json!({}),
                vec![
                    pod(0, "web-old", "Running", true),
                    pod(1, "web-old", "Running", true),
                    terminating(pod(2, "web-old", "Running", true)),
                ],
                vec![],
            ),
            (
                "wait for updated pod health (ordered)",
                json!({}),
                vec![
                    pod(0, "web-old", "Running", true),
                    pod(1, "web-old", "Running", true),
                    pod(2, "web-new", "Running", false),
                ],
                vec![],
            ),
            (
                "next ordinal",
                json!({}),
                vec![
                    pod(0, "web-old", "Running", true),
                    pod(1, "web-old", "Running", true),
                    pod(2, "web-new", "Running", true),
                ],
                vec![Action::Update("web-1".into())],
            ),
            (
                "partition stops",
                json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
                vec![
                    pod(0, "web-old", "Running", true),
                    pod(1, "web-old", "Running", true),
                    pod(2, "web-new", "Running", true),
                ],
                vec![],
            ),
            (
                "OnDelete waits",
                json!({"updateStrategy": {"type": "OnDelete"}}),
                all_old(),
                vec![],
            ),
        ];
        for (what, extra, pods, want) in cases {
            let s = set(3, "OrderedReady", extra);
            assert_eq!(run(&s, &pods).actions, want, "{what}");
        }
        // Below the partition, a recreated pod keeps the current revision.
        let s = set(
            3,
            "OrderedReady",
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
        );
        assert_eq!(
            run(&s, &[]).actions,
            vec![Action::Create {
                ordinal: 0,
                revision: "web-old".into()
            }]
        );
    }

    #[test]
    fn start_ordinal_and_claims() {
        let s = set(
            2,
            "OrderedReady",
            json!({
                "ordinals": {"start": 5},
                "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}],
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}],
                    "volumes": [{"name": "cfg", "emptyDir": {}}]}}
            }),
        );
        assert_eq!(run(&s, &[]).actions, vec![create(5)]);
        let owner = OwnerReference {
            name: "web".into(),
            ..Default::default()
        };
        let p = new_pod(
            &s,
            &s.spec.as_ref().expect("spec").template,
            owner,
            5,
            "web-new",
        );
        assert_eq!(p.metadata.name.as_deref(), Some("web-5"));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        let spec = p.spec.expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some("web-5"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let vols: Vec<(String, Option<String>)> = spec
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.name, v.persistent_volume_claim.map(|c| c.claim_name)))
            .collect();
        assert_eq!(
            vols,
            vec![
                ("www".into(), Some("www-web-5".into())),
                ("cfg".into(), None)
            ]
        );
        let labels = p.metadata.labels.unwrap_or_default();
        assert_eq!(
            labels.get(POD_NAME_LABEL).map(String::as_str),
            Some("web-5")
        );
        assert_eq!(labels.get(POD_INDEX_LABEL).map(String::as_str), Some("5"));
        assert_eq!(
            labels.get(POD_REVISION_LABEL).map(String::as_str),
            Some("web-new")
        );
        let claims = claims_for(&s, 5);
        assert_eq!(claims[0].metadata.name.as_deref(), Some("www-web-5"));
        assert_eq!(
            claims[0]
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map(String::as_str),
            Some("web")
        );
    }

    #[test]
    fn status_counting() {
        let pods = [
            pod(0, "web-old", "Running", true),
            pod(1, "web-new", "Running", true),
            pod(2, "web-new", "Pending", false),
            terminating(pod(3, "web-new", "Running", true)),
            pod(4, "web-new", "", false),
        ];
        let refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let now = Timestamp::from_second(100).expect("ts");
        assert_eq!(
            count_status(&refs, 0, "web-old", "web-new", now),
            Counts {
                replicas: 4,
                ready: 3,
                available: 3,
                current: 1,
                updated: 2
            }
        );
        assert_eq!(
            count_status(&refs, 200, "web-old", "web-new", now).available,
            0
        );
    }
}
