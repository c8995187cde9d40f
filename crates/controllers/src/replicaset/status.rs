//! Pod state as the workload controllers read it (active, ready, available) and the
//! ReplicaSet status computed from the pods a ReplicaSet owns (upstream
//! `replica_set_utils.go`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The ReplicaSet condition type set when pods cannot be created or deleted.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
/// Reason of [`REPLICA_FAILURE`] when creating pods failed.
pub const FAILED_CREATE: &str = "FailedCreate";
/// Reason of [`REPLICA_FAILURE`] when deleting pods failed.
pub const FAILED_DELETE: &str = "FailedDelete";

/// The current time truncated to whole seconds, the precision the API keeps.
pub fn now() -> Timestamp {
    let t = Timestamp::now();
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// `Some(v)` unless `v` is zero: how Go's `omitempty` integers appear in our types.
pub fn non_zero<T: Default + PartialEq>(v: T) -> Option<T> {
    (v != T::default()).then_some(v)
}

/// Neither finished (Succeeded/Failed) nor being deleted (upstream `IsPodActive`).
pub fn is_pod_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed"))
        && pod.metadata.deletion_timestamp.is_none()
}

/// The pod's `Ready` condition.
pub fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When a ready pod became ready (`None` when not ready or unknown).
pub fn pod_ready_time(pod: &Pod) -> Option<Timestamp> {
    let c = ready_condition(pod)?;
    if c.status != "True" {
        return None;
    }
    c.last_transition_time.as_ref().map(|t| t.0)
}

/// Ready for at least `min_ready_seconds` (upstream `IsPodAvailable`).
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_pod_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match pod_ready_time(pod) {
        Some(t) => t
            .checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
            .is_ok_and(|avail| avail < now),
        None => false,
    }
}

/// Highest restart count of the pod's regular containers and of its restartable
/// (sidecar) init containers.
pub fn max_container_restarts(pod: &Pod) -> (i32, i32) {
    let Some(status) = pod.status.as_ref() else {
        return (0, 0);
    };
    let regular = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    let sidecars: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| sidecars.contains(&c.name.as_str()))
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    (regular, sidecar)
}

/// Whether `labels` carries every template label with the same value.
fn fully_labeled(
    template: Option<&BTreeMap<String, String>>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    template
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The ReplicaSet status for the (active, owned) `pods`, given the error of the last
/// attempt to create or delete pods (upstream `calculateStatus`). `observedGeneration`
/// is left as it was; it is set when the status is written.
pub fn calculate_status(
    rs: &ReplicaSet,
    pods: &[&Pod],
    manage_error: Option<&str>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let mut status = rs.status.clone().unwrap_or_default();
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    let min_ready = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let (mut labeled, mut ready, mut available) = (0, 0, 0);
    for pod in pods {
        if fully_labeled(template_labels, pod.metadata.labels.as_ref()) {
            labeled += 1;
        }
        if is_pod_ready(pod) {
            ready += 1;
            if is_pod_available(pod, min_ready, now) {
                available += 1;
            }
        }
    }
    let has_failure = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == REPLICA_FAILURE);
    match manage_error {
        Some(message) if !has_failure => {
            let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let diff = i64::try_from(pods.len()).unwrap_or(i64::MAX) - i64::from(replicas);
            let reason = match diff.signum() {
                -1 => FAILED_CREATE,
                1 => FAILED_DELETE,
                _ => "",
            };
            status
                .conditions
                .get_or_insert_with(Vec::new)
                .push(ReplicaSetCondition {
                    type_: REPLICA_FAILURE.into(),
                    status: "True".into(),
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                    last_transition_time: Some(Time(now)),
                });
        }
        None if has_failure => {
            if let Some(c) = status.conditions.as_mut() {
                c.retain(|c| c.type_ != REPLICA_FAILURE);
            }
        }
        _ => {}
    }
    if status.conditions.as_ref().is_some_and(Vec::is_empty) {
        status.conditions = None;
    }
    status.replicas = i32::try_from(pods.len()).unwrap_or(i32::MAX);
    status.fully_labeled_replicas = non_zero(labeled);
    status.ready_replicas = non_zero(ready);
    status.available_replicas = non_zero(available);
    status
}

/// Whether `new` differs from what `rs` records (upstream compares the counters, the
/// conditions and whether the current generation was observed).
pub fn status_changed(rs: &ReplicaSet, new: &ReplicaSetStatus) -> bool {
    let old = rs.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let conditions = |s: &ReplicaSetStatus| s.conditions.clone().unwrap_or_default();
    old.replicas != new.replicas
        || n(old.fully_labeled_replicas) != n(new.fully_labeled_replicas)
        || n(old.ready_replicas) != n(new.ready_replicas)
        || n(old.available_replicas) != n(new.available_replicas)
        || rs.metadata.generation.unwrap_or(0) != old.observed_generation.unwrap_or(0)
        || conditions(&old) != conditions(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus, PodTemplateSpec};
    use kube::api::ObjectMeta;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("timestamp")
    }

    /// A pod: phase, ready since (seconds), labels.
    fn pod(phase: &str, ready_since: Option<i64>, labels: &[(&str, &str)]) -> Pod {
        let conditions = ready_since.map(|t| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(ts(t))),
                ..Default::default()
            }]
        });
        Pod {
            metadata: ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions,
                container_statuses: Some(vec![ContainerStatus {
                    restart_count: 0,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_predicates() {
        let now = ts(1000);
        let mut deleting = pod("Running", Some(10), &[]);
        deleting.metadata.deletion_timestamp = Some(Time(now));
        // (pod, active, ready, available with minReadySeconds 0, with 30)
        let cases = [
            (
                "pending",
                pod("Pending", None, &[]),
                true,
                false,
                false,
                false,
            ),
            (
                "running ready long ago",
                pod("Running", Some(10), &[]),
                true,
                true,
                true,
                true,
            ),
            (
                "ready just now",
                pod("Running", Some(990), &[]),
                true,
                true,
                true,
                false,
            ),
            (
                "ready exactly 30s",
                pod("Running", Some(970), &[]),
                true,
                true,
                true,
                false,
            ),
            (
                "succeeded",
                pod("Succeeded", None, &[]),
                false,
                false,
                false,
                false,
            ),
            (
                "failed",
                pod("Failed", None, &[]),
                false,
                false,
                false,
                false,
            ),
            ("deleting", deleting, false, true, true, true),
        ];
        for (name, p, active, ready, avail0, avail30) in cases {
            assert_eq!(is_pod_active(&p), active, "{name}: active");
            assert_eq!(is_pod_ready(&p), ready, "{name}: ready");
            assert_eq!(is_pod_available(&p, 0, now), avail0, "{name}: available/0");
            assert_eq!(
                is_pod_available(&p, 30, now),
                avail30,
                "{name}: available/30"
            );
        }
    }

    fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: Some(min_ready),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "x".to_string())].into()),
                        ..Default::default()
                    }),
                    spec: None,
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn status_counts() {
        let now = ts(1000);
        let pods = [
            pod("Running", Some(10), &[("app", "x")]),
            pod("Running", Some(995), &[("app", "x")]),
            pod("Pending", None, &[("app", "x")]),
            pod("Running", Some(10), &[("app", "y")]),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        // (minReadySeconds, labeled, ready, available)
        for (min_ready, labeled, ready, available) in [(0, 3, 3, 3), (10, 3, 3, 2)] {
            let s = calculate_status(&rs(4, min_ready), &refs, None, now);
            assert_eq!(s.replicas, 4);
            assert_eq!(s.fully_labeled_replicas, Some(labeled));
            assert_eq!(s.ready_replicas, Some(ready));
            assert_eq!(
                s.available_replicas,
                Some(available),
                "minReady={min_ready}"
            );
            assert!(s.conditions.is_none());
        }
        let empty = calculate_status(&rs(0, 0), &[], None, now);
        assert_eq!(empty.replicas, 0);
        assert_eq!(empty.ready_replicas, None, "zero counters are omitted");
    }

    #[test]
    fn failure_condition_set_kept_and_cleared() {
        let now = ts(1000);
        let p = pod("Running", Some(10), &[("app", "x")]);
        // Too few pods: FailedCreate; too many: FailedDelete.
        let mut set = rs(3, 0);
        let s = calculate_status(&set, &[&p], Some("quota exceeded"), now);
        let c = &s.conditions.clone().expect("condition")[0];
        assert_eq!(
            (c.type_.as_str(), c.reason.as_deref()),
            (REPLICA_FAILURE, Some(FAILED_CREATE))
        );
        assert_eq!(c.message.as_deref(), Some("quota exceeded"));
        let del = calculate_status(&rs(0, 0), &[&p], Some("boom"), now);
        assert_eq!(
            del.conditions.expect("condition")[0].reason.as_deref(),
            Some(FAILED_DELETE)
        );
        // An existing failure is kept as is while errors continue, removed after.
        set.status = Some(s.clone());
        let again = calculate_status(&set, &[&p], Some("other"), ts(2000));
        assert_eq!(again.conditions, s.conditions);
        let cleared = calculate_status(&set, &[&p], None, now);
        assert!(cleared.conditions.is_none());
    }

    #[test]
    fn change_detection() {
        let mut set = rs(1, 0);
        let p = pod("Running", Some(10), &[("app", "x")]);
        let s = calculate_status(&set, &[&p], None, ts(1000));
        assert!(status_changed(&set, &s), "nothing recorded yet");
        set.status = Some(ReplicaSetStatus {
            observed_generation: Some(2),
            ..s.clone()
        });
        assert!(!status_changed(&set, &s));
        set.metadata.generation = Some(3);
        assert!(status_changed(&set, &s), "new generation not observed");
    }

    #[test]
    fn restarts_split_regular_and_sidecars() {
        use k8s_openapi::api::core::v1::{Container, PodSpec};
        let mut p = pod("Running", None, &[]);
        p.spec = Some(PodSpec {
            init_containers: Some(vec![
                Container {
                    name: "side".into(),
                    restart_policy: Some("Always".into()),
                    ..Default::default()
                },
                Container {
                    name: "init".into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        });
        let st = p.status.as_mut().expect("status");
        st.container_statuses = Some(vec![
            ContainerStatus {
                restart_count: 2,
                ..Default::default()
            },
            ContainerStatus {
                restart_count: 5,
                ..Default::default()
            },
        ]);
        st.init_container_statuses = Some(vec![
            ContainerStatus {
                name: "side".into(),
                restart_count: 3,
                ..Default::default()
            },
            ContainerStatus {
                name: "init".into(),
                restart_count: 9,
                ..Default::default()
            },
        ]);
        assert_eq!(max_container_restarts(&p), (5, 3));
        assert_eq!(max_container_restarts(&Pod::default()), (0, 0));
    }
}
