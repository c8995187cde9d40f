//! The DaemonSet controller's decisions, as pure functions of nodes, pods and time:
//! which nodes need a pod and which pods must go (upstream `podsShouldBeOnNode`),
//! which old pods a rolling update replaces now (upstream `rollingUpdate`, with and
//! without surge), and the status counters (upstream `updateDaemonSetStatus`).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::eligibility::Eligibility;
use crate::history::POD_REVISION_LABEL;
use crate::workload::{is_pod_available, is_pod_ready, is_terminating, phase};

/// Label with the DaemonSet's template generation (deprecated upstream, still set).
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// Pods of one DaemonSet grouped by the node they target.
pub type NodePods = BTreeMap<String, Vec<Arc<Pod>>>;

/// Errors of the DaemonSet decisions.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("invalid value for IntOrString: invalid value {0:?}: {1}")]
    IntOrPercent(String, String),
}

/// Upstream `GetScaledValueFromIntOrPercent`.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, PlanError> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(n) = s.strip_suffix('%') else {
                return Err(PlanError::IntOrPercent(
                    s.clone(),
                    "must be an integer or percentage (e.g '5%')".into(),
                ));
            };
            let n: i64 = n.parse().map_err(|e: std::num::ParseIntError| {
                PlanError::IntOrPercent(s.clone(), e.to_string())
            })?;
            let product = n * i64::from(total);
            let v = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            Ok(i32::try_from(v).unwrap_or(i32::MAX))
        }
    }
}

/// Whether a pod was made from the current template: its revision hash label or its
/// template generation label matches (upstream `IsPodUpdated`).
pub fn is_pod_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let hash_matches = !hash.is_empty() && get(POD_REVISION_LABEL) == Some(hash);
    let generation_matches =
        generation.is_some_and(|g| get(TEMPLATE_GENERATION_LABEL) == Some(g.to_string().as_str()));
    hash_matches || generation_matches
}

/// Upstream `podByCreationTimestampAndPhase`: scheduled pods first, then oldest.
pub fn oldest_first(a: &Arc<Pod>, b: &Arc<Pod>) -> std::cmp::Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(b)
        .cmp(&scheduled(a))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// What the manage loop does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ManagePlan {
    /// Nodes that need a daemon pod.
    pub create_on: Vec<String>,
    /// Names of pods to delete.
    pub delete: Vec<String>,
    /// Failed pods found, as (node, pod name), whether or not they are deleted now.
    pub failed_seen: Vec<(String, String)>,
}

/// Upstream `manage`: for each node, create a missing pod where one should run,
/// delete failed pods (if `delete_failed(node, pod)` allows it now), delete surplus
/// pods, and delete pods where none may stay. Unscheduled pods aimed at nodes that no
/// longer exist are deleted too. `surge` is whether the update strategy may surge.
pub fn plan_manage(
    nodes: &[(String, Eligibility)],
    node_pods: &NodePods,
    surge: bool,
    hash: &str,
    min_ready_seconds: i32,
    now: Timestamp,
    delete_failed: &mut dyn FnMut(&str, &Pod) -> bool,
) -> ManagePlan {
    let mut plan = ManagePlan::default();
    let empty = Vec::new();
    for (node, e) in nodes {
        let pods = node_pods.get(node).unwrap_or(&empty);
        let exists = !pods.is_empty();
        if e.should_run && !exists {
            plan.create_on.push(node.clone());
        } else if e.should_continue_running {
            let mut running: Vec<Arc<Pod>> = Vec::new();
            for pod in pods {
                if is_terminating(pod) {
                    continue;
                }
                let name = pod.metadata.name.clone().unwrap_or_default();
                match phase(pod) {
                    "Failed" => {
                        plan.failed_seen.push((node.clone(), name.clone()));
                        if delete_failed(node, pod) {
                            plan.delete.push(name);
                        }
                    }
                    "Succeeded" => plan.delete.push(name),
                    _ => running.push(Arc::clone(pod)),
                }
            }
            running.sort_by(oldest_first);
            if !surge {
                plan.delete.extend(
                    running
                        .iter()
                        .skip(1)
                        .map(|p| p.metadata.name.clone().unwrap_or_default()),
                );
                continue;
            }
            if running.len() <= 1 {
                if running.is_empty() && e.should_run {
                    plan.create_on.push(node.clone());
                }
                continue;
            }
            // Surging: keep the oldest new and the oldest old pod; the old one goes
            // once it is not ready or the new one is available.
            let mut oldest_new: Option<&Arc<Pod>> = None;
            let mut oldest_old: Option<&Arc<Pod>> = None;
            for pod in &running {
                let is_new = pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(POD_REVISION_LABEL))
                    .is_some_and(|h| h == hash);
                let slot = if is_new {
                    &mut oldest_new
                } else {
                    &mut oldest_old
                };
                if slot.is_none() {
                    *slot = Some(pod);
                } else {
                    plan.delete
                        .push(pod.metadata.name.clone().unwrap_or_default());
                }
            }
            if let (Some(new), Some(old)) = (oldest_new, oldest_old)
                && (!is_pod_ready(old) || is_pod_available(new, min_ready_seconds, now))
            {
                plan.delete
                    .push(old.metadata.name.clone().unwrap_or_default());
            }
        } else if exists {
            plan.delete.extend(
                pods.iter()
                    .filter(|p| !is_terminating(p))
                    .map(|p| p.metadata.name.clone().unwrap_or_default()),
            );
        }
    }
    // Unscheduled pods aimed at nodes that are gone.
    for (node, pods) in node_pods {
        if nodes.iter().any(|(n, _)| n == node) {
            continue;
        }
        for pod in pods {
            let bound = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty());
            if !bound && !is_terminating(pod) {
                plan.delete
                    .push(pod.metadata.name.clone().unwrap_or_default());
            }
        }
    }
    plan
}

/// The new and old pod on a node; `None` if there is more than one of either (the
/// manage loop cleans that up first). Terminating pods are ignored.
pub fn updated_pods_on_node<'a>(
    pods: &'a [Arc<Pod>],
    hash: &str,
    generation: Option<i64>,
) -> Option<(Option<&'a Arc<Pod>>, Option<&'a Arc<Pod>>)> {
    let mut new = None;
    let mut old = None;
    for pod in pods.iter().filter(|p| !is_terminating(p)) {
        let slot = if is_pod_updated(pod, hash, generation) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod);
    }
    Some((new, old))
}

/// The rolling update's limits for this many nodes that should run a pod
/// (upstream `updatedDesiredNodeCounts`): both rounded up, and one unavailable pod
/// allowed when both come out as zero.
pub fn update_limits(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), PlanError> {
    let surge = match max_surge {
        Some(v) => scaled_value(v, desired, true)?,
        None => 0,
    };
    let unavailable = match max_unavailable {
        Some(v) => scaled_value(v, desired, true)?,
        None => 1,
    };
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

/// What a rolling update step does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UpdatePlan {
    /// Names of old pods to delete.
    pub delete: Vec<String>,
    /// Nodes to create a new pod on next to the old one (surge only).
    pub create_on: Vec<String>,
}

/// Upstream `rollingUpdate`. `should_run(node)` tells whether a pod should run there.
#[allow(clippy::too_many_arguments)]
pub fn plan_rolling_update(
    node_pods: &NodePods,
    should_run: &dyn Fn(&str) -> bool,
    desired: i32,
    max_surge: i32,
    max_unavailable: i32,
    hash: &str,
    generation: Option<i64>,
    min_ready_seconds: i32,
    now: Timestamp,
) -> UpdatePlan {
    let available = |p: &Pod| is_pod_available(p, min_ready_seconds, now);
    let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    let mut plan = UpdatePlan::default();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace_now = Vec::new();
        let mut candidates = Vec::new();
        for pods in node_pods.values() {
            let Some((new, old)) = updated_pods_on_node(pods, hash, generation) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(old) {
                        replace_now.push(name(old));
                    } else if unavailable < max_unavailable {
                        candidates.push(name(old));
                    }
                }
            }
        }
        let remaining = usize::try_from((max_unavailable - unavailable).max(0))
            .unwrap_or(0)
            .min(candidates.len());
        plan.delete = replace_now;
        plan.delete.extend(candidates.into_iter().take(remaining));
        return plan;
    }

    let mut surged = 0;
    let mut available_count = 0;
    let mut allowed_new = Vec::new();
    let mut candidate_new = Vec::new();
    let mut not_run_to_delete = Vec::new();
    for (node, pods) in node_pods {
        let Some((new, old)) = updated_pods_on_node(pods, hash, generation) else {
            surged += 1;
            continue;
        };
        if let Some(p) = old.or(new)
            && available(p)
        {
            available_count += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !available(old) {
                    if should_run(node) {
                        allowed_new.push(node.clone());
                    } else {
                        plan.delete.push(name(old));
                    }
                } else if !should_run(node) {
                    not_run_to_delete.push(name(old));
                } else if surged < max_surge {
                    candidate_new.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if available(new) {
                    plan.delete.push(name(old));
                } else {
                    surged += 1;
                }
            }
        }
    }
    // Pods on nodes that should no longer run one go only while enough are available.
    let deletable = usize::try_from((available_count - desired).max(0)).unwrap_or(0);
    plan.delete
        .extend(not_run_to_delete.into_iter().take(deletable));
    let remaining = usize::try_from((max_surge - surged).max(0))
        .unwrap_or(0)
        .min(candidate_new.len());
    plan.create_on = allowed_new;
    plan.create_on
        .extend(candidate_new.into_iter().take(remaining));
    plan
}

/// The DaemonSet status counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub desired: i32,
    pub current: i32,
    pub misscheduled: i32,
    pub ready: i32,
    pub available: i32,
    pub updated: i32,
}

/// Upstream `updateDaemonSetStatus`: per node, the oldest daemon pod counts.
pub fn count_status(
    nodes: &[(String, Eligibility)],
    node_pods: &NodePods,
    hash: &str,
    generation: Option<i64>,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Counts {
    let mut c = Counts::default();
    for (node, e) in nodes {
        let mut pods: Vec<Arc<Pod>> = node_pods.get(node).cloned().unwrap_or_default();
        let scheduled = !pods.is_empty();
        if !e.should_run {
            if scheduled {
                c.misscheduled += 1;
            }
            continue;
        }
        c.desired += 1;
        if !scheduled {
            continue;
        }
        c.current += 1;
        pods.sort_by(oldest_first);
        let pod = &pods[0];
        if is_pod_ready(pod) {
            c.ready += 1;
            if is_pod_available(pod, min_ready_seconds, now) {
                c.available += 1;
            }
        }
        if is_pod_updated(pod, hash, generation) {
            c.updated += 1;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const H: &str = "newhash";
    const YES: Eligibility = Eligibility {
        should_run: true,
        should_continue_running: true,
    };
    const NO: Eligibility = Eligibility {
        should_run: false,
        should_continue_running: false,
    };
    const STAY: Eligibility = Eligibility {
        should_run: false,
        should_continue_running: true,
    };

    fn now() -> Timestamp {
        Timestamp::from_second(10_000).expect("ts")
    }

    /// A pod: name, revision hash, created at (seconds), phase, ready since (seconds).
    fn pod(name: &str, hash: &str, created: i64, phase: &str, ready: Option<i64>) -> Arc<Pod> {
        let mut conditions = vec![];
        if let Some(r) = ready {
            conditions.push(json!({"type": "Ready", "status": "True",
                "lastTransitionTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::from_second(r).expect("ts"))}));
        }
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {POD_REVISION_LABEL: hash},
                    "creationTimestamp": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::from_second(created).expect("ts"))},
                "status": {"phase": phase, "conditions": conditions}
            }))
            .expect("pod"),
        )
    }

    fn terminating(p: Arc<Pod>) -> Arc<Pod> {
        let mut p = (*p).clone();
        p.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        Arc::new(p)
    }

    fn nodes(list: &[(&str, Eligibility)]) -> Vec<(String, Eligibility)> {
        list.iter().map(|(n, e)| (n.to_string(), *e)).collect()
    }

    fn by_node(list: Vec<(&str, Vec<Arc<Pod>>)>) -> NodePods {
        list.into_iter().map(|(n, p)| (n.to_string(), p)).collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn scaled_value_table() {
        let cases = [
            (IntOrString::Int(3), 10, true, Ok(3)),
            (IntOrString::String("25%".into()), 10, true, Ok(3)),
            (IntOrString::String("25%".into()), 10, false, Ok(2)),
            (IntOrString::String("0%".into()), 10, true, Ok(0)),
            (IntOrString::String("100%".into()), 3, true, Ok(3)),
            (IntOrString::String("1%".into()), 0, true, Ok(0)),
        ];
        for (v, total, up, want) in cases {
            assert_eq!(scaled_value(&v, total, up), want, "{v:?} of {total}");
        }
        assert!(scaled_value(&IntOrString::String("x".into()), 1, true).is_err());
        assert!(scaled_value(&IntOrString::String("a%".into()), 1, true).is_err());
    }

    #[test]
    fn update_limits_table() {
        let i = IntOrString::Int;
        let p = |s: &str| IntOrString::String(s.into());
        let cases = [
            (None, None, 3, (0, 1)),
            (Some(i(0)), Some(i(0)), 3, (0, 1)),
            (Some(i(0)), Some(i(2)), 3, (0, 2)),
            (Some(p("50%")), Some(i(0)), 3, (2, 0)),
            (None, Some(p("10%")), 3, (0, 1)),
        ];
        for (surge, unavail, desired, want) in cases {
            assert_eq!(
                update_limits(surge.as_ref(), unavail.as_ref(), desired),
                Ok(want)
            );
        }
    }

    #[test]
    fn manage_table() {
        let old_ready = pod("a-old", "oldhash", 1, "Running", Some(2));
        let new_ready = pod("a-new", H, 5, "Running", Some(6));
        let new_unready = pod("a-new", H, 5, "Running", None);
        // (what, nodes, pods, surge, create_on, delete)
        let cases: Vec<(
            &str,
            Vec<(String, Eligibility)>,
            NodePods,
            bool,
            Vec<String>,
            Vec<String>,
        )> = vec![
            (
                "create where missing",
                nodes(&[("n1", YES), ("n2", YES), ("n3", NO)]),
                by_node(vec![("n1", vec![pod("p1", H, 1, "Running", None)])]),
                false,
                s(&["n2"]),
                s(&[]),
            ),
            (
                "delete where not allowed",
                nodes(&[("n1", NO)]),
                by_node(vec![(
                    "n1",
                    vec![
                        pod("p1", H, 1, "Running", None),
                        terminating(pod("p2", H, 1, "Running", None)),
                    ],
                )]),
                false,
                s(&[]),
                s(&["p1"]),
            ),
            (
                "stay where tolerated",
                nodes(&[("n1", STAY)]),
                by_node(vec![("n1", vec![pod("p1", H, 1, "Running", None)])]),
                false,
                s(&[]),
                s(&[]),
            ),
            (
                "keep oldest of several",
                nodes(&[("n1", YES)]),
                by_node(vec![(
                    "n1",
                    vec![
                        pod("young", H, 9, "Running", None),
                        pod("old", H, 1, "Running", None),
                    ],
                )]),
                false,
                s(&[]),
                s(&["young"]),
            ),
            (
                "terminating pod blocks creation",
                nodes(&[("n1", YES)]),
                by_node(vec![(
                    "n1",
                    vec![terminating(pod("p1", H, 1, "Running", None))],
                )]),
                false,
                s(&[]),
                s(&[]),
            ),
            (
                "failed pod deleted",
                nodes(&[("n1", YES)]),
                by_node(vec![("n1", vec![pod("p1", H, 1, "Failed", None)])]),
                false,
                s(&[]),
                s(&["p1"]),
            ),
            (
                "surge: replace only when new available",
                nodes(&[("n1", YES)]),
                by_node(vec![("n1", vec![old_ready.clone(), new_unready.clone()])]),
                true,
                s(&[]),
                s(&[]),
            ),
            (
                "surge: new available, old goes",
                nodes(&[("n1", YES)]),
                by_node(vec![("n1", vec![old_ready.clone(), new_ready.clone()])]),
                true,
                s(&[]),
                s(&["a-old"]),
            ),
            (
                "surge: recreate after failure",
                nodes(&[("n1", YES)]),
                by_node(vec![("n1", vec![pod("p1", H, 1, "Failed", None)])]),
                true,
                s(&["n1"]),
                s(&["p1"]),
            ),
            (
                "unscheduled pod for a gone node",
                nodes(&[("n1", YES)]),
                by_node(vec![
                    ("n1", vec![pod("p1", H, 1, "Running", None)]),
                    ("gone", vec![pod("p2", H, 1, "Pending", None)]),
                ]),
                false,
                s(&[]),
                s(&["p2"]),
            ),
        ];
        for (what, nodes, pods, surge, create, delete) in cases {
            let plan = plan_manage(&nodes, &pods, surge, H, 0, now(), &mut |_, _| true);
            assert_eq!(plan.create_on, create, "{what}");
            assert_eq!(plan.delete, delete, "{what}");
        }
        // A failed pod held back by backoff is seen but not deleted.
        let pods = by_node(vec![("n1", vec![pod("p1", H, 1, "Failed", None)])]);
        let plan = plan_manage(
            &nodes(&[("n1", YES)]),
            &pods,
            false,
            H,
            0,
            now(),
            &mut |_, _| false,
        );
        assert!(plan.delete.is_empty());
        assert_eq!(plan.failed_seen, vec![("n1".to_string(), "p1".to_string())]);
    }

    #[test]
    fn rolling_update_without_surge() {
        let old = |n: &str| pod(n, "oldhash", 1, "Running", Some(2));
        let old_unready = |n: &str| pod(n, "oldhash", 1, "Running", None);
        let new = |n: &str| pod(n, H, 5, "Running", Some(6));
        let new_unready = |n: &str| pod(n, H, 5, "Pending", None);
        let all = |_: &str| true;
        // (what, pods, maxUnavailable, deletions)
        let cases: Vec<(&str, NodePods, i32, Vec<String>)> = vec![
            (
                "one at a time",
                by_node(vec![
                    ("n1", vec![old("o1")]),
                    ("n2", vec![old("o2")]),
                    ("n3", vec![old("o3")]),
                ]),
                1,
                s(&["o1"]),
            ),
            (
                "two at a time",
                by_node(vec![
                    ("n1", vec![old("o1")]),
                    ("n2", vec![old("o2")]),
                    ("n3", vec![old("o3")]),
                ]),
                2,
                s(&["o1", "o2"]),
            ),
            (
                "wait for unavailable new pod",
                by_node(vec![
                    ("n1", vec![new_unready("x1")]),
                    ("n2", vec![old("o2")]),
                ]),
                1,
                s(&[]),
            ),
            (
                "next once new is available",
                by_node(vec![("n1", vec![new("x1")]), ("n2", vec![old("o2")])]),
                1,
                s(&["o2"]),
            ),
            (
                "unavailable old pods always replaced",
                by_node(vec![
                    ("n1", vec![new_unready("x1")]),
                    ("n2", vec![old_unready("o2")]),
                    ("n3", vec![old("o3")]),
                ]),
                1,
                s(&["o2"]),
            ),
            (
                "node without pod counts as unavailable",
                by_node(vec![("n1", vec![]), ("n2", vec![old("o2")])]),
                1,
                s(&[]),
            ),
            (
                "done",
                by_node(vec![("n1", vec![new("x1")]), ("n2", vec![new("x2")])]),
                1,
                s(&[]),
            ),
        ];
        for (what, pods, max_unavailable, delete) in cases {
            let plan = plan_rolling_update(&pods, &all, 3, 0, max_unavailable, H, None, 0, now());
            assert_eq!(plan.delete, delete, "{what}");
            assert!(plan.create_on.is_empty(), "{what}");
        }
    }

    #[test]
    fn rolling_update_with_surge() {
        let old = |n: &str| pod(n, "oldhash", 1, "Running", Some(2));
        let new = |n: &str| pod(n, H, 5, "Running", Some(6));
        let new_unready = |n: &str| pod(n, H, 5, "Pending", None);
        let all = |_: &str| true;
        // (what, pods, maxSurge, creations, deletions)
        let cases: Vec<(&str, NodePods, i32, Vec<String>, Vec<String>)> = vec![
            (
                "surge one",
                by_node(vec![("n1", vec![old("o1")]), ("n2", vec![old("o2")])]),
                1,
                s(&["n1"]),
                s(&[]),
            ),
            (
                "surge two",
                by_node(vec![("n1", vec![old("o1")]), ("n2", vec![old("o2")])]),
                2,
                s(&["n1", "n2"]),
                s(&[]),
            ),
            (
                "wait for surge pod",
                by_node(vec![
                    ("n1", vec![old("o1"), new_unready("x1")]),
                    ("n2", vec![old("o2")]),
                ]),
                1,
                s(&[]),
                s(&[]),
            ),
            (
                "surge pod ready: old goes, next surges",
                by_node(vec![
                    ("n1", vec![old("o1"), new("x1")]),
                    ("n2", vec![old("o2")]),
                ]),
                1,
                s(&["n2"]),
                s(&["o1"]),
            ),
        ];
        for (what, pods, surge, create, delete) in cases {
            let plan = plan_rolling_update(&pods, &all, 2, surge, 0, H, None, 0, now());
            assert_eq!(plan.create_on, create, "{what}");
            assert_eq!(plan.delete, delete, "{what}");
        }
    }

    #[test]
    fn status_counts() {
        let ns = nodes(&[("n1", YES), ("n2", YES), ("n3", YES), ("n4", NO)]);
        let pods = by_node(vec![
            ("n1", vec![pod("a", H, 1, "Running", Some(9_000))]),
            ("n2", vec![pod("b", "oldhash", 1, "Running", Some(9_995))]),
            ("n4", vec![pod("c", H, 1, "Running", None)]),
        ]);
        let c = count_status(&ns, &pods, H, None, 10, now());
        assert_eq!(
            c,
            Counts {
                desired: 3,
                current: 2,
                misscheduled: 1,
                ready: 2,
                available: 1,
                updated: 1
            }
        );
    }

    #[test]
    fn updated_by_hash_or_generation() {
        let mut p = (*pod("a", "h1", 1, "Running", None)).clone();
        assert!(is_pod_updated(&p, "h1", None));
        assert!(!is_pod_updated(&p, "h2", Some(3)));
        p.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(TEMPLATE_GENERATION_LABEL.into(), "3".into());
        assert!(is_pod_updated(&p, "h2", Some(3)));
        assert!(!is_pod_updated(&p, "", None));
    }
}
