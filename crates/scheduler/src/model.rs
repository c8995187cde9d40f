//! The scheduler's pre-digested views of API objects.
//!
//! Pods and nodes arrive from watches as `k8s-openapi` objects; every scheduling
//! decision reads them many times over (a pod is checked against hundreds of nodes,
//! a node against thousands of pods). So each object is parsed once, off the
//! scheduling loop, into a [`PodInfo`] or [`NodeView`]: requests summed, selectors
//! and affinity terms compiled, host ports and taints extracted.

use std::collections::BTreeMap;
use std::sync::Arc;

use api::selector::{Labels, Operator, Requirement, Selector};
use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm as KNodeSelectorTerm, Pod, PodAffinityTerm,
    Taint, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::jiff::Timestamp;

use crate::resources::{PodRequests, Resource, pod_requests};

/// `kubernetes.io/hostname`.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// `topology.kubernetes.io/zone`.
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
/// `topology.kubernetes.io/region`.
pub const LABEL_REGION: &str = "topology.kubernetes.io/region";
const LABEL_ZONE_BETA: &str = "failure-domain.beta.kubernetes.io/zone";
const LABEL_REGION_BETA: &str = "failure-domain.beta.kubernetes.io/region";
/// The taint the node controller puts on cordoned nodes.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// One `hostPort` a pod occupies on its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// `0.0.0.0` when the pod did not name an address.
    pub ip: String,
    /// `TCP` when the pod did not name a protocol.
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports cannot both be bound on one node.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A requirement on a node field (only `metadata.name` exists).
#[derive(Clone, Debug)]
struct FieldRequirement {
    not_in: bool,
    value: String,
}

/// A compiled `NodeSelectorTerm`: its label requirements and field requirements are
/// ANDed. A term that is empty or does not parse matches no node, as upstream.
#[derive(Clone, Debug)]
pub struct NodeSelectorTerm {
    labels: Vec<Requirement>,
    fields: Vec<FieldRequirement>,
    valid: bool,
}

fn node_requirement(r: &NodeSelectorRequirement) -> Option<Requirement> {
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

impl NodeSelectorTerm {
    /// Compiles one term.
    pub fn parse(term: &KNodeSelectorTerm) -> NodeSelectorTerm {
        let mut valid = true;
        let mut labels = Vec::new();
        for r in term.match_expressions.iter().flatten() {
            match node_requirement(r) {
                Some(req) => labels.push(req),
                None => valid = false,
            }
        }
        let mut fields = Vec::new();
        for r in term.match_fields.iter().flatten() {
            let values = r.values.as_deref().unwrap_or_default();
            match (r.key.as_str(), r.operator.as_str(), values) {
                ("metadata.name", "In", [v]) => fields.push(FieldRequirement {
                    not_in: false,
                    value: v.clone(),
                }),
                ("metadata.name", "NotIn", [v]) => fields.push(FieldRequirement {
                    not_in: true,
                    value: v.clone(),
                }),
                _ => valid = false,
            }
        }
        NodeSelectorTerm {
            valid: valid && !(labels.is_empty() && fields.is_empty()),
            labels,
            fields,
        }
    }

    /// Whether the node satisfies the term.
    pub fn matches(&self, node: &NodeView) -> bool {
        self.valid
            && self.labels.iter().all(|r| r.matches(&node.labels))
            && self
                .fields
                .iter()
                .all(|f| (f.value == node.name) != f.not_in)
    }

    /// The node names a term admits through `metadata.name In` requirements (ANDed,
    /// so their intersection), or `None` when the term pins no name.
    pub fn pinned_node_names(&self) -> Option<Vec<&str>> {
        let mut pinned = self
            .fields
            .iter()
            .filter(|f| !f.not_in)
            .map(|f| f.value.as_str());
        let first = pinned.next()?;
        if pinned.all(|v| v == first) {
            Some(vec![first])
        } else {
            Some(Vec::new())
        }
    }
}

/// `spec.nodeSelector` together with the required node affinity.
#[derive(Clone, Debug, Default)]
pub struct RequiredNodeAffinity {
    pub node_selector: BTreeMap<String, String>,
    /// `None` when the pod has no required node affinity.
    pub terms: Option<Vec<NodeSelectorTerm>>,
}

impl RequiredNodeAffinity {
    /// True when neither a node selector nor required affinity is set.
    pub fn is_empty(&self) -> bool {
        self.node_selector.is_empty() && self.terms.is_none()
    }

    /// Whether the node satisfies both.
    pub fn matches(&self, node: &NodeView) -> bool {
        self.node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v))
            && self
                .terms
                .as_ref()
                .is_none_or(|terms| terms.iter().any(|t| t.matches(node)))
    }
}

/// A compiled pod (anti-)affinity term.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    pub namespaces: Vec<String>,
    pub namespace_selector: Selector,
    pub selector: Selector,
    pub topology_key: String,
}

impl AffinityTerm {
    fn parse(owner_namespace: &str, t: &PodAffinityTerm) -> Result<AffinityTerm, String> {
        let selector = Selector::from_optional_label_selector(t.label_selector.as_ref())
            .map_err(|e| format!("invalid label selector: {e}"))?;
        let namespace_selector =
            Selector::from_optional_label_selector(t.namespace_selector.as_ref())
                .map_err(|e| format!("invalid namespace selector: {e}"))?;
        let listed = t.namespaces.clone().unwrap_or_default();
        let namespaces = if listed.is_empty() && t.namespace_selector.is_none() {
            vec![owner_namespace.to_string()]
        } else {
            listed
        };
        Ok(AffinityTerm {
            namespaces,
            namespace_selector,
            selector,
            topology_key: t.topology_key.clone(),
        })
    }

    /// Whether `pod` is selected by the term (namespace and labels). `ns_labels` are
    /// the labels of the pod's namespace, when known.
    pub fn matches(&self, pod: &PodInfo, ns_labels: Option<&BTreeMap<String, String>>) -> bool {
        (self.namespaces.contains(&pod.namespace) || self.namespace_selector.matches(&ns_labels))
            && self.selector.matches(pod.labels())
    }
}

/// A weighted (preferred) affinity term.
#[derive(Clone, Debug)]
pub struct WeightedAffinityTerm {
    pub weight: i32,
    pub term: AffinityTerm,
}

/// A compiled topology spread constraint.
#[derive(Clone, Debug)]
pub struct SpreadConstraint {
    pub max_skew: i32,
    pub topology_key: String,
    /// `whenUnsatisfiable: DoNotSchedule` (a filter) rather than `ScheduleAnyway`.
    pub hard: bool,
    pub selector: Selector,
    pub min_domains: i32,
    /// `nodeAffinityPolicy: Honor` (the default).
    pub honor_node_affinity: bool,
    /// `nodeTaintsPolicy: Honor` (default `Ignore`).
    pub honor_node_taints: bool,
    /// One of upstream's system default constraints (see [`system_default_spread`]):
    /// nodes lacking its topology key are not ignored, the constraint just does not
    /// count there.
    pub system_default: bool,
}

/// Labels that differ between the pods of one controller (a StatefulSet's pod name
/// and index, a revision hash of a DaemonSet/StatefulSet), left out of the default
/// spreading selector.
const PER_POD_LABELS: [&str; 3] = [
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "controller-revision-hash",
];

/// Upstream's PodTopologySpread "system default" constraints (`ScheduleAnyway`,
/// hostname max skew 3, zone max skew 5) for a pod that sets no constraints of its
/// own and is controlled by a ReplicaSet, StatefulSet or ReplicationController.
///
/// Upstream's selector is the controller's selector merged with those of the
/// Services selecting the pod; this scheduler does not watch those objects, so the
/// selector is the pod's own labels (less [`PER_POD_LABELS`]), which the pods of one
/// controller share: in practice the same set of pods.
pub fn system_default_spread(pod: &Pod) -> Vec<SpreadConstraint> {
    let meta = &pod.metadata;
    let controlled = meta.owner_references.iter().flatten().any(|o| {
        o.controller == Some(true)
            && matches!(
                (o.api_version.as_str(), o.kind.as_str()),
                ("apps/v1", "ReplicaSet")
                    | ("apps/v1", "StatefulSet")
                    | ("v1", "ReplicationController")
            )
    });
    let Some(labels) = meta.labels.as_ref().filter(|_| controlled) else {
        return Vec::new();
    };
    let requirements: Vec<Requirement> = labels
        .iter()
        .filter(|(k, _)| !PER_POD_LABELS.contains(&k.as_str()))
        .filter_map(|(k, v)| Requirement::new(k, Operator::In, vec![v.clone()]).ok())
        .collect();
    if requirements.is_empty() {
        return Vec::new();
    }
    let selector = Selector::everything().with_requirements(requirements);
    [(LABEL_HOSTNAME, 3), (LABEL_ZONE, 5)]
        .into_iter()
        .map(|(key, max_skew)| SpreadConstraint {
            max_skew,
            topology_key: key.to_string(),
            hard: false,
            selector: selector.clone(),
            min_domains: 1,
            honor_node_affinity: true,
            honor_node_taints: false,
            system_default: true,
        })
        .collect()
}

impl SpreadConstraint {
    fn parse(
        c: &TopologySpreadConstraint,
        pod_labels: &BTreeMap<String, String>,
    ) -> Result<SpreadConstraint, String> {
        let mut selector = Selector::from_optional_label_selector(c.label_selector.as_ref())
            .map_err(|e| format!("invalid topology spread selector: {e}"))?;
        // matchLabelKeys: the pod's own values for those keys narrow the selector.
        let mut extra = Vec::new();
        for key in c.match_label_keys.iter().flatten() {
            if let Some(v) = pod_labels.get(key) {
                extra.push(
                    Requirement::new(key, Operator::In, vec![v.clone()])
                        .map_err(|e| format!("invalid matchLabelKeys: {e}"))?,
                );
            }
        }
        if !extra.is_empty() {
            selector = selector.with_requirements(extra);
        }
        Ok(SpreadConstraint {
            max_skew: c.max_skew,
            topology_key: c.topology_key.clone(),
            hard: c.when_unsatisfiable != "ScheduleAnyway",
            selector,
            min_domains: c.min_domains.unwrap_or(1).max(1),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            system_default: false,
        })
    }
}

/// Whether a toleration tolerates a taint (upstream's `ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = t.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// Whether any of the tolerations tolerates the taint.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// A pod as the scheduler uses it. Cheap to share (`Arc<PodInfo>`).
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Pod,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub node_name: String,
    pub scheduler_name: String,
    pub resource_version: String,
    pub requests: PodRequests,
    pub host_ports: Vec<HostPort>,
    pub required_node_affinity: RequiredNodeAffinity,
    pub preferred_node_terms: Vec<(i32, NodeSelectorTerm)>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<WeightedAffinityTerm>,
    pub preferred_anti_affinity: Vec<WeightedAffinityTerm>,
    pub spread_constraints: Vec<SpreadConstraint>,
    /// Why the affinity or spread terms could not be compiled, if they could not.
    pub parse_error: Option<String>,
    /// `spec.priority` as written (admission normally fills it).
    pub spec_priority: Option<i32>,
    pub priority_class_name: String,
    /// `spec.preemptionPolicy` when set.
    pub preemption_policy: Option<String>,
    pub scheduling_gated: bool,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// Phase Succeeded or Failed: the pod holds no resources any more.
    pub terminal: bool,
    pub start_time: Option<Timestamp>,
    pub nominated_node_name: String,
    /// The pod carries `DisruptionTarget=True` with reason `PreemptionByScheduler`.
    pub preempted_by_scheduler: bool,
}

impl PodInfo {
    /// Parses a pod.
    pub fn new(pod: Pod) -> PodInfo {
        let meta = &pod.metadata;
        let spec = pod.spec.clone().unwrap_or_default();
        let status = pod.status.as_ref();
        let namespace = meta.namespace.clone().unwrap_or_default();
        let labels = meta.labels.as_ref().unwrap_or(&NO_LABELS);
        let mut parse_error = None;

        let mut host_ports = Vec::new();
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        for c in spec.containers.iter().chain(sidecars) {
            for p in c.ports.iter().flatten() {
                let port = p.host_port.unwrap_or(0);
                if port <= 0 {
                    continue;
                }
                host_ports.push(HostPort {
                    ip: p
                        .host_ip
                        .clone()
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                    protocol: p
                        .protocol
                        .clone()
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "TCP".into()),
                    port,
                });
            }
        }

        let affinity = spec.affinity.as_ref();
        let node_affinity = affinity.and_then(|a| a.node_affinity.as_ref());
        let required_node_affinity = RequiredNodeAffinity {
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            terms: node_affinity
                .and_then(|na| {
                    na.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .map(|ns| {
                    ns.node_selector_terms
                        .iter()
                        .map(NodeSelectorTerm::parse)
                        .collect()
                }),
        };
        let preferred_node_terms = node_affinity
            .and_then(|na| {
                na.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|terms| {
                terms
                    .iter()
                    .map(|t| (t.weight, NodeSelectorTerm::parse(&t.preference)))
                    .collect()
            })
            .unwrap_or_default();

        let mut compile = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            let mut out = Vec::new();
            for t in terms.into_iter().flatten() {
                match AffinityTerm::parse(&namespace, t) {
                    Ok(term) => out.push(term),
                    Err(e) => parse_error = Some(e),
                }
            }
            out
        };
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let pod_anti_affinity = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required_affinity = compile(pod_affinity.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let required_anti_affinity = compile(pod_anti_affinity.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let mut weighted =
            |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                let mut out = Vec::new();
                for t in terms.into_iter().flatten() {
                    match AffinityTerm::parse(&namespace, &t.pod_affinity_term) {
                        Ok(term) => out.push(WeightedAffinityTerm {
                            weight: t.weight,
                            term,
                        }),
                        Err(e) => parse_error = Some(e),
                    }
                }
                out
            };
        let preferred_affinity = weighted(pod_affinity.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let preferred_anti_affinity = weighted(pod_anti_affinity.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));

        let mut spread_constraints = Vec::new();
        for c in spec.topology_spread_constraints.iter().flatten() {
            match SpreadConstraint::parse(c, labels) {
                Ok(sc) => spread_constraints.push(sc),
                Err(e) => parse_error = Some(e),
            }
        }
        if spec
            .topology_spread_constraints
            .as_ref()
            .is_none_or(|c| c.is_empty())
        {
            spread_constraints = system_default_spread(&pod);
        }

        let preempted_by_scheduler = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| {
                c.type_ == "DisruptionTarget"
                    && c.status == "True"
                    && c.reason.as_deref() == Some("PreemptionByScheduler")
            });
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");

        PodInfo {
            uid: meta.uid.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            node_name: spec.node_name.clone().unwrap_or_default(),
            scheduler_name: spec
                .scheduler_name
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default-scheduler".into()),
            requests: pod_requests(&spec),
            host_ports,
            required_node_affinity,
            preferred_node_terms,
            required_affinity,
            required_anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
            spread_constraints,
            parse_error,
            spec_priority: spec.priority,
            priority_class_name: spec.priority_class_name.clone().unwrap_or_default(),
            preemption_policy: spec.preemption_policy.clone(),
            scheduling_gated: spec
                .scheduling_gates
                .as_ref()
                .is_some_and(|g| !g.is_empty()),
            terminating: meta.deletion_timestamp.is_some(),
            terminal: phase == "Succeeded" || phase == "Failed",
            start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
            nominated_node_name: status
                .and_then(|s| s.nominated_node_name.clone())
                .unwrap_or_default(),
            preempted_by_scheduler,
            namespace,
            pod,
        }
    }

    /// The pod's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    /// The pod's tolerations.
    pub fn tolerations(&self) -> &[Toleration] {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default()
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The pod has any pod affinity or anti-affinity term.
    pub fn has_affinity(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }

    /// The pod has required anti-affinity terms.
    pub fn has_required_anti_affinity(&self) -> bool {
        !self.required_anti_affinity.is_empty()
    }

    /// Whether a spread selector counts this pod: same namespace, not terminating,
    /// labels match.
    pub fn counts_for(&self, namespace: &str, selector: &Selector) -> bool {
        !self.terminating && self.namespace == namespace && selector.matches(self.labels())
    }
}

/// Labels of an optional map, for selector matching.
pub fn labels_of(map: Option<&BTreeMap<String, String>>) -> &BTreeMap<String, String> {
    map.unwrap_or(&NO_LABELS)
}

impl Labels for NodeView {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// A node as the scheduler uses it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resource,
    /// (type, status) of each condition, for telling real changes from heartbeats.
    pub conditions: Vec<(String, String)>,
    /// Region and zone, used to interleave nodes of different zones.
    pub zone_key: String,
}

impl NodeView {
    /// Parses a node.
    pub fn new(node: &Node) -> NodeView {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        let get = |a: &str, b: &str| {
            labels
                .get(a)
                .or_else(|| labels.get(b))
                .cloned()
                .unwrap_or_default()
        };
        let region = get(LABEL_REGION, LABEL_REGION_BETA);
        let zone = get(LABEL_ZONE, LABEL_ZONE_BETA);
        let zone_key = if region.is_empty() && zone.is_empty() {
            String::new()
        } else {
            format!("{region}:\x00:{zone}")
        };
        NodeView {
            name: node.metadata.name.clone().unwrap_or_default(),
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            allocatable: Resource::from_list(status.and_then(|s| s.allocatable.as_ref())),
            conditions: status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .map(|c| (c.type_.clone(), c.status.clone()))
                .collect(),
            zone_key,
            labels,
        }
    }
}

/// Shared pod handle.
pub type PodRef = Arc<PodInfo>;

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: (!op.is_empty()).then(|| op.into()),
            value: (!value.is_empty()).then(|| value.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            toleration_seconds: None,
        }
    }

    #[test]
    fn toleration_matching() {
        let t = taint("k", "v", "NoSchedule");
        for (toleration, want) in [
            (tol("k", "Equal", "v", "NoSchedule"), true),
            (tol("k", "", "v", ""), true),
            (tol("k", "Equal", "w", "NoSchedule"), false),
            (tol("k", "Exists", "", ""), true),
            (tol("", "Exists", "", ""), true),
            (tol("", "Exists", "", "NoExecute"), false),
            (tol("other", "Exists", "", ""), false),
            (tol("k", "Bogus", "v", ""), false),
        ] {
            assert_eq!(tolerates(&toleration, &t), want, "{toleration:?}");
        }
    }

    #[test]
    fn host_port_conflicts() {
        let hp = |ip: &str, proto: &str, port| HostPort {
            ip: ip.into(),
            protocol: proto.into(),
            port,
        };
        for (a, b, want) in [
            (hp("0.0.0.0", "TCP", 80), hp("10.0.0.1", "TCP", 80), true),
            (hp("10.0.0.2", "TCP", 80), hp("10.0.0.1", "TCP", 80), false),
            (hp("10.0.0.1", "TCP", 80), hp("10.0.0.1", "TCP", 80), true),
            (hp("0.0.0.0", "UDP", 80), hp("0.0.0.0", "TCP", 80), false),
            (hp("0.0.0.0", "TCP", 81), hp("0.0.0.0", "TCP", 80), false),
        ] {
            assert_eq!(a.conflicts(&b), want, "{a:?} {b:?}");
            assert_eq!(b.conflicts(&a), want, "{b:?} {a:?}");
        }
    }

    #[test]
    fn node_selector_terms() {
        let node = NodeView {
            name: "n1".into(),
            labels: [
                ("zone".to_string(), "a".to_string()),
                ("cores".into(), "8".into()),
            ]
            .into(),
            taints: vec![],
            unschedulable: false,
            allocatable: Resource::default(),
            conditions: vec![],
            zone_key: String::new(),
        };
        let req = |key: &str, op: &str, values: &[&str]| NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|s| s.to_string()).collect()),
        };
        let term = |exprs: Vec<NodeSelectorRequirement>, fields: Vec<NodeSelectorRequirement>| {
            NodeSelectorTerm::parse(&KNodeSelectorTerm {
                match_expressions: (!exprs.is_empty()).then_some(exprs),
                match_fields: (!fields.is_empty()).then_some(fields),
            })
        };
        for (t, want) in [
            (term(vec![req("zone", "In", &["a", "b"])], vec![]), true),
            (term(vec![req("zone", "NotIn", &["a"])], vec![]), false),
            (term(vec![req("missing", "NotIn", &["a"])], vec![]), true),
            (term(vec![req("zone", "Exists", &[])], vec![]), true),
            (term(vec![req("zone", "DoesNotExist", &[])], vec![]), false),
            (term(vec![req("cores", "Gt", &["4"])], vec![]), true),
            (term(vec![req("cores", "Lt", &["4"])], vec![]), false),
            (term(vec![req("zone", "Bogus", &["a"])], vec![]), false),
            (term(vec![], vec![]), false),
            (
                term(vec![], vec![req("metadata.name", "In", &["n1"])]),
                true,
            ),
            (
                term(vec![], vec![req("metadata.name", "NotIn", &["n1"])]),
                false,
            ),
            (
                term(vec![], vec![req("metadata.uid", "In", &["n1"])]),
                false,
            ),
            (
                term(
                    vec![req("zone", "In", &["a"])],
                    vec![req("metadata.name", "In", &["n2"])],
                ),
                false,
            ),
        ] {
            assert_eq!(t.matches(&node), want, "{t:?}");
        }
    }
}
