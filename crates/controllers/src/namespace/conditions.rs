//! Status conditions of a terminating namespace, as upstream's namespace deleter sets
//! them: five condition types, each `True` with a failure reason while something is
//! wrong and `False` with a fixed "ok" reason otherwise. Existing conditions keep their
//! position and `lastTransitionTime` unless their status flips.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::NamespaceCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
pub const GV_PARSING_FAILURE: &str = "NamespaceDeletionGroupVersionParsingFailure";
pub const CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
pub const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
pub const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

/// The condition types the controller maintains, in upstream's order.
pub const CONDITION_TYPES: [&str; 5] = [
    DISCOVERY_FAILURE,
    GV_PARSING_FAILURE,
    CONTENT_FAILURE,
    CONTENT_REMAINING,
    FINALIZERS_REMAINING,
];

fn ok_reason_message(t: &str) -> (&'static str, &'static str) {
    match t {
        DISCOVERY_FAILURE => (
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        GV_PARSING_FAILURE => (
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        CONTENT_FAILURE => (
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        _ => ("ContentRemoved", "All content successfully removed"),
    }
}

/// What one pass over a namespace's content found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Discovery failure message (whole or partial).
    pub discovery_failure: Option<String>,
    /// Errors deleting content, one per resource.
    pub content_errors: Vec<String>,
    /// `resource.group` → objects still present.
    pub remaining: BTreeMap<String, usize>,
    /// finalizer → objects still carrying it.
    pub finalizers: BTreeMap<String, usize>,
}

/// (type, status, reason, message) of one desired condition.
pub type Desired = (&'static str, &'static str, String, String);

/// The five conditions the findings call for.
pub fn desired(f: &Findings) -> Vec<Desired> {
    CONDITION_TYPES
        .iter()
        .map(|&t| {
            let failure = match t {
                DISCOVERY_FAILURE => f
                    .discovery_failure
                    .clone()
                    .map(|m| ("DiscoveryFailed".to_string(), m)),
                CONTENT_FAILURE if !f.content_errors.is_empty() => {
                    let mut msgs = f.content_errors.clone();
                    msgs.sort();
                    Some((
                        "ContentDeletionFailed".to_string(),
                        format!(
                            "Failed to delete all resource types, {} remaining: {}",
                            msgs.len(),
                            msgs.join(", ")
                        ),
                    ))
                }
                CONTENT_REMAINING if f.remaining.values().any(|n| *n > 0) => {
                    let mut items: Vec<String> = f
                        .remaining
                        .iter()
                        .filter(|(_, n)| **n > 0)
                        .map(|(gr, n)| format!("{gr} has {n} resource instances"))
                        .collect();
                    items.sort();
                    Some((
                        "SomeResourcesRemain".to_string(),
                        format!("Some resources are remaining: {}", items.join(", ")),
                    ))
                }
                FINALIZERS_REMAINING if f.finalizers.values().any(|n| *n > 0) => {
                    let mut items: Vec<String> = f
                        .finalizers
                        .iter()
                        .filter(|(_, n)| **n > 0)
                        .map(|(fin, n)| format!("{fin} in {n} resource instances"))
                        .collect();
                    items.sort();
                    Some((
                        "SomeFinalizerRemain".to_string(),
                        format!("Some finalizers are remaining: {}", items.join(", ")),
                    ))
                }
                _ => None,
            };
            match failure {
                Some((reason, message)) => (t, "True", reason, message),
                None => {
                    let (r, m) = ok_reason_message(t);
                    (t, "False", r.to_string(), m.to_string())
                }
            }
        })
        .collect()
}

/// Merge the desired conditions into `existing`; `None` when nothing changes.
pub fn merge(
    existing: &[NamespaceCondition],
    desired: &[Desired],
    now: &Time,
) -> Option<Vec<NamespaceCondition>> {
    let mut out = existing.to_vec();
    let mut changed = false;
    for (t, status, reason, message) in desired {
        match out.iter_mut().find(|c| c.type_ == *t) {
            None => {
                out.push(NamespaceCondition {
                    type_: t.to_string(),
                    status: status.to_string(),
                    reason: Some(reason.clone()),
                    message: Some(message.clone()),
                    last_transition_time: Some(now.clone()),
                });
                changed = true;
            }
            Some(c) => {
                if c.status != *status
                    || c.reason.as_deref() != Some(reason)
                    || c.message.as_deref() != Some(message)
                {
                    if c.status != *status {
                        c.last_transition_time = Some(now.clone());
                    }
                    c.status = status.to_string();
                    c.reason = Some(reason.clone());
                    c.message = Some(message.clone());
                    changed = true;
                }
            }
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("valid timestamp"))
    }

    fn status_of(d: &[Desired], ty: &str) -> (String, String, String) {
        let (_, s, r, m) = d.iter().find(|c| c.0 == ty).expect("condition present");
        (s.to_string(), r.clone(), m.clone())
    }

    #[test]
    fn desired_table() {
        let all_ok = Findings::default();
        let failing = Findings {
            discovery_failure: Some("Discovery failed for some groups, 1 failing: x".into()),
            content_errors: vec!["zeta failed".into(), "alpha failed".into()],
            remaining: BTreeMap::from([
                ("pods.".to_string(), 2),
                ("widgets.example.com".to_string(), 1),
                ("empty.".to_string(), 0),
            ]),
            finalizers: BTreeMap::from([("example.com/x".to_string(), 3)]),
        };
        let cases: Vec<(&Findings, &str, (&str, &str, &str))> = vec![
            (
                &all_ok,
                DISCOVERY_FAILURE,
                (
                    "False",
                    "ResourcesDiscovered",
                    "All resources successfully discovered",
                ),
            ),
            (
                &all_ok,
                GV_PARSING_FAILURE,
                (
                    "False",
                    "ParsedGroupVersions",
                    "All legacy kube types successfully parsed",
                ),
            ),
            (
                &all_ok,
                CONTENT_FAILURE,
                (
                    "False",
                    "ContentDeleted",
                    "All content successfully deleted, may be waiting on finalization",
                ),
            ),
            (
                &all_ok,
                CONTENT_REMAINING,
                (
                    "False",
                    "ContentRemoved",
                    "All content successfully removed",
                ),
            ),
            (
                &all_ok,
                FINALIZERS_REMAINING,
                (
                    "False",
                    "ContentRemoved",
                    "All content successfully removed",
                ),
            ),
            (
                &failing,
                DISCOVERY_FAILURE,
                (
                    "True",
                    "DiscoveryFailed",
                    "Discovery failed for some groups, 1 failing: x",
                ),
            ),
            (
                &failing,
                CONTENT_FAILURE,
                (
                    "True",
                    "ContentDeletionFailed",
                    "Failed to delete all resource types, 2 remaining: alpha failed, zeta failed",
                ),
            ),
            (
                &failing,
                CONTENT_REMAINING,
                (
                    "True",
                    "SomeResourcesRemain",
                    "Some resources are remaining: pods. has 2 resource instances, widgets.example.com has 1 resource instances",
                ),
            ),
            (
                &failing,
                FINALIZERS_REMAINING,
                (
                    "True",
                    "SomeFinalizerRemain",
                    "Some finalizers are remaining: example.com/x in 3 resource instances",
                ),
            ),
        ];
        for (f, ty, (s, r, m)) in cases {
            assert_eq!(
                status_of(&desired(f), ty),
                (s.to_string(), r.to_string(), m.to_string()),
                "{ty}"
            );
        }
        assert_eq!(
            desired(&all_ok).iter().map(|d| d.0).collect::<Vec<_>>(),
            CONDITION_TYPES
        );
    }

    #[test]
    fn merge_keeps_order_and_transition_times() {
        let first = merge(&[], &desired(&Findings::default()), &t(100)).expect("added");
        assert_eq!(first.len(), 5);
        assert!(first.iter().all(|c| c.last_transition_time == Some(t(100))));
        // same findings later: no change
        assert_eq!(merge(&first, &desired(&Findings::default()), &t(200)), None);
        // content appears: only that condition flips, with a new transition time
        let f = Findings {
            remaining: BTreeMap::from([("configmaps.".to_string(), 1)]),
            ..Default::default()
        };
        let second = merge(&first, &desired(&f), &t(300)).expect("changed");
        let c = second
            .iter()
            .find(|c| c.type_ == CONTENT_REMAINING)
            .expect("present");
        assert_eq!(
            (c.status.as_str(), c.last_transition_time.clone()),
            ("True", Some(t(300)))
        );
        let d = second
            .iter()
            .find(|c| c.type_ == DISCOVERY_FAILURE)
            .expect("present");
        assert_eq!(d.last_transition_time, Some(t(100)));
        // message change without status flip keeps the transition time
        let f2 = Findings {
            remaining: BTreeMap::from([("configmaps.".to_string(), 2)]),
            ..Default::default()
        };
        let third = merge(&second, &desired(&f2), &t(400)).expect("message changed");
        let c = third
            .iter()
            .find(|c| c.type_ == CONTENT_REMAINING)
            .expect("present");
        assert_eq!(c.last_transition_time, Some(t(300)));
        assert_eq!(
            c.message.as_deref(),
            Some("Some resources are remaining: configmaps. has 2 resource instances")
        );
    }

    #[test]
    fn merge_preserves_foreign_conditions() {
        let foreign = NamespaceCondition {
            type_: "Other".into(),
            status: "True".into(),
            ..Default::default()
        };
        let out = merge(
            std::slice::from_ref(&foreign),
            &desired(&Findings::default()),
            &t(1),
        )
        .expect("added");
        assert_eq!(out[0], foreign);
        assert_eq!(out.len(), 6);
    }
}
