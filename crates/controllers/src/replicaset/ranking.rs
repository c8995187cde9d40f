//! Which pods a ReplicaSet deletes first when it has too many (upstream
//! `ActivePodsWithRanks` with the `PodDeletionCost` and `LogarithmicScaleDown` features
//! on, as in v1.33). Earlier in the order means deleted sooner:
//!
//! 1. unscheduled before scheduled;
//! 2. `Pending` before `Unknown` before `Running`;
//! 3. not ready before ready;
//! 4. lower `controller.kubernetes.io/pod-deletion-cost` first;
//! 5. pods sharing their node with more related pods (of the same owner) first;
//! 6. ready for a shorter time first (compared on a log2 scale of the age, ties by uid);
//! 7. more container restarts first (regular containers, then sidecars);
//! 8. newer first (log2 scale of the age, ties by uid).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::status::{is_pod_active, is_pod_ready, max_container_restarts, pod_ready_time};

/// Annotation with a pod's deletion cost (lower is deleted first).
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

fn node(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn phase_ordinal(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

/// The pod's deletion cost; a missing or invalid annotation counts as 0.
pub fn deletion_cost(p: &Pod) -> i32 {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
}

/// `floor(log2(now - t))` in nanoseconds, -1 for a time not in the past.
fn log_rank(t: Timestamp, now: Timestamp) -> i64 {
    let d = now.duration_since(t).as_nanos();
    if d <= 0 { -1 } else { i64::from(d.ilog2()) }
}

/// Compare two optional times where "later or missing" sorts first (upstream
/// `afterOrZero`, extended by the logarithmic ranking with uid tie-break).
fn newer_first(
    a: Option<Timestamp>,
    b: Option<Timestamp>,
    uids: (&str, &str),
    now: Timestamp,
) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => match log_rank(x, now).cmp(&log_rank(y, now)) {
            Ordering::Equal => uids.0.cmp(uids.1),
            o => o,
        },
    }
}

/// Deletion order of two pods (see the module documentation); `rank_*` is the number of
/// related active pods on each pod's node.
pub fn compare(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize, now: Timestamp) -> Ordering {
    let (na, nb) = (node(a), node(b));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    let o = phase_ordinal(a).cmp(&phase_ordinal(b));
    if o != Ordering::Equal {
        return o;
    }
    let (ra, rb) = (is_pod_ready(a), is_pod_ready(b));
    if ra != rb {
        return if ra {
            Ordering::Greater
        } else {
            Ordering::Less
        };
    }
    let o = deletion_cost(a).cmp(&deletion_cost(b));
    if o != Ordering::Equal {
        return o;
    }
    let o = rank_b.cmp(&rank_a);
    if o != Ordering::Equal {
        return o;
    }
    let uids = (
        a.metadata.uid.as_deref().unwrap_or(""),
        b.metadata.uid.as_deref().unwrap_or(""),
    );
    if ra && rb {
        let (ta, tb) = (pod_ready_time(a), pod_ready_time(b));
        if ta != tb {
            return newer_first(ta, tb, uids, now);
        }
    }
    let (ra, sa) = max_container_restarts(a);
    let (rb, sb) = max_container_restarts(b);
    let o = rb.cmp(&ra).then(sb.cmp(&sa));
    if o != Ordering::Equal {
        return o;
    }
    let ca = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let cb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if ca != cb {
        return newer_first(ca, cb, uids, now);
    }
    Ordering::Equal
}

/// The `count` pods of `pods` to delete first; `related` are all pods of the
/// ReplicaSets with the same owner (for the same-node ranking).
pub fn pods_to_delete(
    pods: &[Arc<Pod>],
    related: &[Arc<Pod>],
    count: usize,
    now: Timestamp,
) -> Vec<Arc<Pod>> {
    if count >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in related.iter().filter(|p| is_pod_active(p)) {
        *on_node.entry(node(p)).or_default() += 1;
    }
    let mut ranked: Vec<(usize, &Arc<Pod>)> = pods
        .iter()
        .map(|p| (on_node.get(node(p)).copied().unwrap_or(0), p))
        .collect();
    ranked.sort_by(|(ra, a), (rb, b)| compare(a, *ra, b, *rb, now));
    ranked
        .into_iter()
        .take(count)
        .map(|(_, p)| Arc::clone(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;

    const NOW: i64 = 1_000_000;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("timestamp")
    }

    #[derive(Clone, Default)]
    struct P {
        name: &'static str,
        node: &'static str,
        phase: &'static str,
        ready_ago: Option<i64>,
        cost: Option<&'static str>,
        restarts: i32,
        created_ago: i64,
    }

    fn build(p: &P) -> Arc<Pod> {
        let conditions = p.ready_ago.map(|ago| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(ts(NOW - ago))),
                ..Default::default()
            }]
        });
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(p.name.into()),
                uid: Some(p.name.into()),
                creation_timestamp: Some(Time(ts(NOW - p.created_ago))),
                annotations: p
                    .cost
                    .map(|c| [(POD_DELETION_COST.to_string(), c.to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!p.node.is_empty()).then(|| p.node.to_string()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(
                    if p.phase.is_empty() {
                        "Running"
                    } else {
                        p.phase
                    }
                    .into(),
                ),
                conditions,
                container_statuses: Some(vec![ContainerStatus {
                    restart_count: p.restarts,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn ready(name: &'static str, node: &'static str) -> P {
        P {
            name,
            node,
            ready_ago: Some(1000),
            created_ago: 2000,
            ..Default::default()
        }
    }

    #[test]
    fn first_to_delete() {
        let cases: Vec<(&str, Vec<P>, &str)> = vec![
            (
                "unscheduled before scheduled",
                vec![
                    ready("a", "n1"),
                    P {
                        name: "b",
                        ..ready("b", "")
                    },
                ],
                "b",
            ),
            (
                "pending before running",
                vec![
                    ready("a", "n1"),
                    P {
                        phase: "Pending",
                        ready_ago: None,
                        ..ready("b", "n1")
                    },
                ],
                "b",
            ),
            (
                "unknown before running",
                vec![
                    ready("a", "n1"),
                    P {
                        phase: "Unknown",
                        ..ready("b", "n1")
                    },
                ],
                "b",
            ),
            (
                "not ready before ready",
                vec![
                    ready("a", "n1"),
                    P {
                        ready_ago: None,
                        ..ready("b", "n1")
                    },
                ],
                "b",
            ),
            (
                "lower deletion cost first",
                vec![
                    P {
                        cost: Some("10"),
                        ..ready("a", "n1")
                    },
                    P {
                        cost: Some("-5"),
                        ..ready("b", "n1")
                    },
                ],
                "b",
            ),
            (
                "invalid cost counts as zero",
                vec![
                    P {
                        cost: Some("x"),
                        ..ready("a", "n1")
                    },
                    P {
                        cost: Some("1"),
                        ..ready("b", "n1")
                    },
                ],
                "a",
            ),
            (
                "doubled up on a node first",
                vec![ready("a", "n1"), ready("b", "n2"), ready("c", "n2")],
                "b",
            ),
            (
                "ready for less time first",
                vec![
                    ready("a", "n1"),
                    P {
                        ready_ago: Some(10),
                        ..ready("b", "n2")
                    },
                ],
                "b",
            ),
            (
                "more restarts first",
                vec![
                    ready("a", "n1"),
                    P {
                        restarts: 3,
                        ..ready("b", "n2")
                    },
                ],
                "b",
            ),
            (
                "newer first",
                vec![
                    ready("a", "n1"),
                    P {
                        created_ago: 100,
                        ..ready("b", "n2")
                    },
                ],
                "b",
            ),
            (
                "same log2 age bucket: uid decides",
                vec![
                    P {
                        created_ago: 1100,
                        ..ready("b", "n1")
                    },
                    P {
                        created_ago: 1200,
                        ..ready("a", "n2")
                    },
                ],
                "a",
            ),
        ];
        for (name, pods, want) in cases {
            let pods: Vec<Arc<Pod>> = pods.iter().map(build).collect();
            let got = pods_to_delete(&pods, &pods, 1, ts(NOW));
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].metadata.name.as_deref(), Some(want), "{name}");
        }
    }

    #[test]
    fn counts() {
        let pods: Vec<Arc<Pod>> = [ready("a", "n1"), ready("b", "n1"), ready("c", "n2")]
            .iter()
            .map(build)
            .collect();
        assert_eq!(pods_to_delete(&pods, &[], 0, ts(NOW)).len(), 0);
        assert_eq!(pods_to_delete(&pods, &[], 2, ts(NOW)).len(), 2);
        assert_eq!(pods_to_delete(&pods, &[], 5, ts(NOW)).len(), 3);
    }

    #[test]
    fn log_ranks() {
        let now = ts(NOW);
        assert_eq!(log_rank(now, now), -1);
        assert_eq!(log_rank(ts(NOW + 5), now), -1);
        // 1 s = 1e9 ns: floor(log2(1e9)) = 29; 2 s → 30.
        assert_eq!(log_rank(ts(NOW - 1), now), 29);
        assert_eq!(log_rank(ts(NOW - 2), now), 30);
    }
}
