//! Which nodes a DaemonSet's pod belongs on (upstream `NodeShouldRunDaemonPod`):
//! `spec.nodeName`, `nodeSelector` and required node affinity must match the node,
//! and its NoSchedule/NoExecute taints must be tolerated by the template's tolerations
//! plus the ones every daemon pod gets ([`add_daemon_tolerations`]). A pod that only
//! fails on NoSchedule taints may keep running where it already is.
//!
//! Also: the node affinity that pins a daemon pod to its node, and reading the target
//! node back from a pod (upstream `ReplaceDaemonSetPodNodeNameNodeAffinity`,
//! `GetTargetNodeName`).

use std::collections::BTreeMap;

use api::selector::{Operator, Requirement};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
    Taint, Toleration,
};

/// Node taint keys (upstream `v1.TaintNode*`).
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
/// The only field node affinity can select on.
pub const NAME_FIELD: &str = "metadata.name";

/// The verdict for one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Eligibility {
    /// A daemon pod should be created here.
    pub should_run: bool,
    /// A daemon pod already here may stay.
    pub should_continue_running: bool,
}

/// Upstream `ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// The first taint passing `filter` that no toleration tolerates.
pub fn untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| filter(t))
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

/// Upstream `AddOrUpdateTolerationInPodSpec`: replace a toleration for the same
/// key/operator/value/effect, else append.
fn add_or_update_toleration(spec: &mut PodSpec, toleration: Toleration) {
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    let same = |t: &Toleration| {
        t.key == toleration.key
            && t.effect == toleration.effect
            && t.operator == toleration.operator
            && t.value == toleration.value
    };
    match list.iter_mut().find(|t| same(t)) {
        Some(existing) => *existing = toleration,
        None => list.push(toleration),
    }
}

/// The tolerations every daemon pod gets (upstream `AddOrUpdateDaemonPodTolerations`):
/// not-ready and unreachable (NoExecute, forever), disk/memory/pid pressure and
/// unschedulable (NoSchedule), and network-unavailable for host-network pods.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let exists = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    for key in [TAINT_NOT_READY, TAINT_UNREACHABLE] {
        add_or_update_toleration(spec, exists(key, "NoExecute"));
    }
    for key in [
        TAINT_DISK_PRESSURE,
        TAINT_MEMORY_PRESSURE,
        TAINT_PID_PRESSURE,
        TAINT_UNSCHEDULABLE,
    ] {
        add_or_update_toleration(spec, exists(key, "NoSchedule"));
    }
    if spec.host_network == Some(true) {
        add_or_update_toleration(spec, exists(TAINT_NETWORK_UNAVAILABLE, "NoSchedule"));
    }
}

fn label_requirement(r: &NodeSelectorRequirement) -> Option<Requirement> {
    let op = match r.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::GreaterThan,
        "Lt" => Operator::LessThan,
        _ => return None,
    };
    Requirement::new(&r.key, op, r.values.clone().unwrap_or_default()).ok()
}

fn field_matches(r: &NodeSelectorRequirement, node_name: &str) -> bool {
    if r.key != NAME_FIELD {
        return false;
    }
    let [value] = r.values.as_deref().unwrap_or_default() else {
        return false;
    };
    match r.operator.as_str() {
        "In" => value == node_name,
        "NotIn" => value != node_name,
        _ => false,
    }
}

/// Upstream `nodeSelectorTerm.match`: all label expressions and all field
/// expressions hold; an empty term matches nothing; an invalid one matches nothing.
pub fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    name: &str,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    for e in exprs {
        match label_requirement(e) {
            Some(r) if r.matches(labels) => {}
            _ => return false,
        }
    }
    fields.iter().all(|f| field_matches(f, name))
}

/// Whether a node selector (ORed terms) matches the node.
pub fn node_selector_matches(
    sel: &NodeSelector,
    labels: &BTreeMap<String, String>,
    name: &str,
) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| term_matches(t, labels, name))
}

/// Upstream `GetRequiredNodeAffinity(pod).Match(node)`: `nodeSelector` and required
/// node affinity.
pub fn required_affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    match spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        }) {
        Some(required) => node_selector_matches(required, &labels, name),
        None => true,
    }
}

/// Upstream `NodeShouldRunDaemonPod` for a pod spec that already carries the daemon
/// tolerations.
pub fn node_should_run(spec: &PodSpec, node: &Node) -> Eligibility {
    let no = Eligibility {
        should_run: false,
        should_continue_running: false,
    };
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if let Some(n) = spec.node_name.as_deref()
        && !n.is_empty()
        && n != name
    {
        return no;
    }
    if !required_affinity_matches(spec, node) {
        return no;
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let fits = untolerated_taint(taints, tolerations, |t| {
        t.effect == "NoSchedule" || t.effect == "NoExecute"
    })
    .is_none();
    if fits {
        return Eligibility {
            should_run: true,
            should_continue_running: true,
        };
    }
    Eligibility {
        should_run: false,
        should_continue_running: untolerated_taint(taints, tolerations, |t| {
            t.effect == "NoExecute"
        })
        .is_none(),
    }
}

/// Pin a pod to `node` through required node affinity, replacing any required terms
/// (upstream `ReplaceDaemonSetPodNodeNameNodeAffinity`).
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: NAME_FIELD.into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
            match_expressions: None,
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(selector);
    affinity
}

/// The node a daemon pod is meant for: `spec.nodeName`, else the single
/// `metadata.name In [node]` field requirement of its required affinity.
pub fn target_node(spec: &PodSpec) -> Option<String> {
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_ref()?.iter().find_map(|f| {
            match (f.key.as_str(), f.operator.as_str(), f.values.as_deref()) {
                (NAME_FIELD, "In", Some([v])) => Some(v.clone()),
                _ => None,
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).expect("node")
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut s: PodSpec = serde_json::from_value(v).expect("spec");
        add_daemon_tolerations(&mut s);
        s
    }

    #[test]
    fn toleration_table() {
        let taint = |k: &str, v: Option<&str>, e: &str| Taint {
            key: k.into(),
            value: v.map(Into::into),
            effect: e.into(),
            time_added: None,
        };
        let tol =
            |k: Option<&str>, op: Option<&str>, v: Option<&str>, e: Option<&str>| Toleration {
                key: k.map(Into::into),
                operator: op.map(Into::into),
                value: v.map(Into::into),
                effect: e.map(Into::into),
                toleration_seconds: None,
            };
        let cases = [
            (
                tol(Some("a"), Some("Equal"), Some("1"), Some("NoSchedule")),
                taint("a", Some("1"), "NoSchedule"),
                true,
            ),
            (
                tol(Some("a"), None, Some("1"), None),
                taint("a", Some("1"), "NoExecute"),
                true,
            ),
            (
                tol(Some("a"), Some("Equal"), Some("2"), None),
                taint("a", Some("1"), "NoSchedule"),
                false,
            ),
            (
                tol(Some("a"), Some("Exists"), None, None),
                taint("a", Some("1"), "NoSchedule"),
                true,
            ),
            (
                tol(Some("a"), Some("Exists"), None, Some("NoExecute")),
                taint("a", None, "NoSchedule"),
                false,
            ),
            (
                tol(Some("b"), Some("Exists"), None, None),
                taint("a", None, "NoSchedule"),
                false,
            ),
            (
                tol(None, Some("Exists"), None, None),
                taint("anything", Some("x"), "NoExecute"),
                true,
            ),
            (
                tol(Some("a"), Some("Gt"), Some("1"), None),
                taint("a", Some("1"), "NoSchedule"),
                false,
            ),
        ];
        for (t, taint, want) in cases {
            assert_eq!(tolerates(&t, &taint), want, "{t:?} vs {taint:?}");
        }
    }

    #[test]
    fn daemon_tolerations_added_and_updated() {
        let mut s: PodSpec = serde_json::from_value(json!({
            "containers": [],
            "hostNetwork": true,
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "custom", "operator": "Exists"}
            ]
        }))
        .expect("spec");
        add_daemon_tolerations(&mut s);
        let got: Vec<(String, String, Option<i64>)> = s
            .tolerations
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                (
                    t.key.unwrap_or_default(),
                    t.effect.unwrap_or_default(),
                    t.toleration_seconds,
                )
            })
            .collect();
        let want: Vec<(String, String, Option<i64>)> = [
            (TAINT_NOT_READY, "NoExecute"),
            ("custom", ""),
            (TAINT_UNREACHABLE, "NoExecute"),
            (TAINT_DISK_PRESSURE, "NoSchedule"),
            (TAINT_MEMORY_PRESSURE, "NoSchedule"),
            (TAINT_PID_PRESSURE, "NoSchedule"),
            (TAINT_UNSCHEDULABLE, "NoSchedule"),
            (TAINT_NETWORK_UNAVAILABLE, "NoSchedule"),
        ]
        .into_iter()
        .map(|(k, e)| (k.to_string(), e.to_string(), None))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn eligibility_table() {
        let n = |labels: serde_json::Value, taints: serde_json::Value| {
            node(json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints}}))
        };
        let yes = Eligibility {
            should_run: true,
            should_continue_running: true,
        };
        let no = Eligibility {
            should_run: false,
            should_continue_running: false,
        };
        let stay = Eligibility {
            should_run: false,
            should_continue_running: true,
        };
        let cases = [
            (
                "plain",
                spec(json!({"containers": []})),
                n(json!({}), json!([])),
                yes,
            ),
            (
                "selector match",
                spec(json!({"containers": [], "nodeSelector": {"role": "edge"}})),
                n(json!({"role": "edge"}), json!([])),
                yes,
            ),
            (
                "selector miss",
                spec(json!({"containers": [], "nodeSelector": {"role": "edge"}})),
                n(json!({"role": "core"}), json!([])),
                no,
            ),
            (
                "nodeName other",
                spec(json!({"containers": [], "nodeName": "n2"})),
                n(json!({}), json!([])),
                no,
            ),
            (
                "nodeName same",
                spec(json!({"containers": [], "nodeName": "n1"})),
                n(json!({}), json!([])),
                yes,
            ),
            (
                "NoSchedule taint",
                spec(json!({"containers": []})),
                n(
                    json!({}),
                    json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]),
                ),
                stay,
            ),
            (
                "NoExecute taint",
                spec(json!({"containers": []})),
                n(
                    json!({}),
                    json!([{"key": "dedicated", "effect": "NoExecute"}]),
                ),
                no,
            ),
            (
                "PreferNoSchedule ignored",
                spec(json!({"containers": []})),
                n(
                    json!({}),
                    json!([{"key": "dedicated", "effect": "PreferNoSchedule"}]),
                ),
                yes,
            ),
            (
                "tolerated",
                spec(
                    json!({"containers": [], "tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
                ),
                n(
                    json!({}),
                    json!([{"key": "dedicated", "effect": "NoExecute"}]),
                ),
                yes,
            ),
            (
                "cordoned",
                spec(json!({"containers": []})),
                n(
                    json!({}),
                    json!([{"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}]),
                ),
                yes,
            ),
            (
                "not ready",
                spec(json!({"containers": []})),
                n(
                    json!({}),
                    json!([{"key": TAINT_NOT_READY, "effect": "NoExecute"}]),
                ),
                yes,
            ),
            (
                "network unavailable",
                spec(json!({"containers": []})),
                n(
                    json!({}),
                    json!([{"key": TAINT_NETWORK_UNAVAILABLE, "effect": "NoSchedule"}]),
                ),
                stay,
            ),
            (
                "network unavailable, hostNetwork",
                spec(json!({"containers": [], "hostNetwork": true})),
                n(
                    json!({}),
                    json!([{"key": TAINT_NETWORK_UNAVAILABLE, "effect": "NoSchedule"}]),
                ),
                yes,
            ),
            (
                "affinity In",
                spec(
                    json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}}}),
                ),
                n(json!({"zone": "b"}), json!([])),
                yes,
            ),
            (
                "affinity NotIn",
                spec(
                    json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["b"]}]}]}}}}),
                ),
                n(json!({"zone": "b"}), json!([])),
                no,
            ),
            (
                "affinity ORed terms",
                spec(
                    json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [{"key": "x", "operator": "Exists"}]},
                                       {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}),
                ),
                n(json!({}), json!([])),
                yes,
            ),
            (
                "affinity Gt",
                spec(
                    json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}]}}}}),
                ),
                n(json!({"cores": "8"}), json!([])),
                yes,
            ),
            (
                "affinity empty term",
                spec(
                    json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{}]}}}}),
                ),
                n(json!({}), json!([])),
                no,
            ),
        ];
        for (what, s, node, want) in cases {
            assert_eq!(node_should_run(&s, &node), want, "{what}");
        }
    }

    #[test]
    fn pinning_round_trips() {
        let preferred: Affinity = serde_json::from_value(json!({"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "x", "operator": "Exists"}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {"matchExpressions": [{"key": "y", "operator": "Exists"}]}}]
        }}))
        .expect("affinity");
        for start in [None, Some(Affinity::default()), Some(preferred)] {
            let kept_preferred = start
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|n| {
                    n.preferred_during_scheduling_ignored_during_execution
                        .clone()
                });
            let a = pin_to_node(start, "node-7");
            let spec = PodSpec {
                affinity: Some(a.clone()),
                ..Default::default()
            };
            assert_eq!(target_node(&spec).as_deref(), Some("node-7"));
            let na = a.node_affinity.expect("node affinity");
            assert_eq!(
                na.preferred_during_scheduling_ignored_during_execution,
                kept_preferred
            );
            let terms = na
                .required_during_scheduling_ignored_during_execution
                .expect("required")
                .node_selector_terms;
            assert_eq!(terms.len(), 1);
        }
        let bound = PodSpec {
            node_name: Some("n9".into()),
            ..Default::default()
        };
        assert_eq!(target_node(&bound).as_deref(), Some("n9"));
        assert_eq!(target_node(&PodSpec::default()), None);
    }
}
