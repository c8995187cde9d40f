//! Builders for pods and nodes and a small in-memory "world" (cache, namespaces,
//! nominations) for the unit tests of the plugins, the algorithm and preemption.

// Builders are shared by many test modules; not every one uses every builder.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, Node, NodeAffinity, NodeSelectorRequirement,
    NodeSelectorTerm, NodeSpec, NodeStatus, Pod, PodAffinity, PodAffinityTerm, PodAntiAffinity,
    PodSpec, PodStatus, PreferredSchedulingTerm, ResourceRequirements, Taint, Toleration,
    TopologySpreadConstraint, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use crate::algorithm::{Nominator, Scheduling};
use crate::cache::Cache;
use crate::framework::{Ctx, CycleState, Namespaces, Profile, Status};
use crate::model::{NodeView, PodInfo, PodRef};

fn selector(labels: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        match_expressions: None,
    }
}

fn term(key: &str, labels: &[(&str, &str)]) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(selector(labels)),
        topology_key: key.into(),
        ..Default::default()
    }
}

/// A pod under construction.
#[derive(Clone)]
pub struct PodBuilder {
    pod: Pod,
}

/// Starts a pod named `name` in `default`.
pub fn pod(name: &str) -> PodBuilder {
    PodBuilder {
        pod: Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-default-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus::default()),
        },
    }
}

impl PodBuilder {
    fn spec(&mut self) -> &mut PodSpec {
        self.pod.spec.get_or_insert_with(Default::default)
    }

    fn affinity_mut(&mut self) -> &mut Affinity {
        self.spec().affinity.get_or_insert_with(Default::default)
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        self.pod.metadata.namespace = Some(ns.into());
        self.pod.metadata.uid = Some(format!("uid-{ns}-{name}"));
        self
    }

    pub fn request(mut self, resource: &str, qty: &str) -> Self {
        if qty.is_empty() || qty == "0" {
            return self;
        }
        let c = &mut self.spec().containers[0];
        c.resources
            .get_or_insert_with(ResourceRequirements::default)
            .requests
            .get_or_insert_with(BTreeMap::new)
            .insert(resource.into(), Quantity(qty.into()));
        self
    }

    pub fn cpu(self, qty: &str) -> Self {
        self.request("cpu", qty)
    }

    pub fn memory(self, qty: &str) -> Self {
        self.request("memory", qty)
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.pod
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(k.into(), v.into());
        self
    }

    pub fn node(mut self, n: &str) -> Self {
        self.spec().node_name = Some(n.into());
        self
    }

    pub fn node_selector(mut self, k: &str, v: &str) -> Self {
        self.spec()
            .node_selector
            .get_or_insert_with(BTreeMap::new)
            .insert(k.into(), v.into());
        self
    }

    pub fn toleration(mut self, key: &str, op: &str, value: &str, effect: &str) -> Self {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        self.spec()
            .tolerations
            .get_or_insert_with(Vec::new)
            .push(Toleration {
                key: opt(key),
                operator: opt(op),
                value: opt(value),
                effect: opt(effect),
                toleration_seconds: None,
            });
        self
    }

    pub fn host_port(mut self, port: i32) -> Self {
        self.spec().containers[0]
            .ports
            .get_or_insert_with(Vec::new)
            .push(ContainerPort {
                container_port: port,
                host_port: Some(port),
                ..Default::default()
            });
        self
    }

    pub fn priority(mut self, p: i32) -> Self {
        self.spec().priority = Some(p);
        self
    }

    pub fn priority_class(mut self, name: &str) -> Self {
        self.spec().priority_class_name = Some(name.into());
        self
    }

    pub fn never_preempt(mut self) -> Self {
        self.spec().preemption_policy = Some("Never".into());
        self
    }

    pub fn scheduler(mut self, name: &str) -> Self {
        self.spec().scheduler_name = Some(name.into());
        self
    }

    pub fn gated(mut self) -> Self {
        self.spec().scheduling_gates = Some(vec![k8s_openapi::api::core::v1::PodSchedulingGate {
            name: "example.com/gate".into(),
        }]);
        self
    }

    pub fn nominated(mut self, node: &str) -> Self {
        self.pod
            .status
            .get_or_insert_with(Default::default)
            .nominated_node_name = Some(node.into());
        self
    }

    pub fn started(mut self, secs: i64) -> Self {
        let t = Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH);
        self.pod
            .status
            .get_or_insert_with(Default::default)
            .start_time = Some(Time(t));
        self
    }

    pub fn anti_affinity(mut self, key: &str, labels: &[(&str, &str)]) -> Self {
        self.affinity_mut()
            .pod_anti_affinity
            .get_or_insert_with(PodAntiAffinity::default)
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term(key, labels));
        self
    }

    pub fn affinity(mut self, key: &str, labels: &[(&str, &str)]) -> Self {
        self.affinity_mut()
            .pod_affinity
            .get_or_insert_with(PodAffinity::default)
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term(key, labels));
        self
    }

    pub fn prefer_affinity(mut self, weight: i32, key: &str, labels: &[(&str, &str)]) -> Self {
        self.affinity_mut()
            .pod_affinity
            .get_or_insert_with(PodAffinity::default)
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                weight,
                pod_affinity_term: term(key, labels),
            });
        self
    }

    pub fn require_node_label(mut self, key: &str, values: &[&str]) -> Self {
        let na = self
            .affinity_mut()
            .node_affinity
            .get_or_insert_with(NodeAffinity::default);
        na.required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Default::default)
            .node_selector_terms
            .push(NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: key.into(),
                    operator: "In".into(),
                    values: Some(values.iter().map(|s| s.to_string()).collect()),
                }]),
                match_fields: None,
            });
        self
    }

    pub fn pin_node_name(mut self, name: &str) -> Self {
        let na = self
            .affinity_mut()
            .node_affinity
            .get_or_insert_with(NodeAffinity::default);
        na.required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Default::default)
            .node_selector_terms
            .push(NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![NodeSelectorRequirement {
                    key: "metadata.name".into(),
                    operator: "In".into(),
                    values: Some(vec![name.into()]),
                }]),
            });
        self
    }

    pub fn prefer_node_label(mut self, weight: i32, key: &str, value: &str) -> Self {
        let na = self
            .affinity_mut()
            .node_affinity
            .get_or_insert_with(NodeAffinity::default);
        na.preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(PreferredSchedulingTerm {
                weight,
                preference: NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: key.into(),
                        operator: "In".into(),
                        values: Some(vec![value.into()]),
                    }]),
                    match_fields: None,
                },
            });
        self
    }

    pub fn spread(mut self, max_skew: i32, key: &str, hard: bool, labels: &[(&str, &str)]) -> Self {
        self.spec()
            .topology_spread_constraints
            .get_or_insert_with(Vec::new)
            .push(TopologySpreadConstraint {
                max_skew,
                topology_key: key.into(),
                when_unsatisfiable: if hard {
                    "DoNotSchedule"
                } else {
                    "ScheduleAnyway"
                }
                .into(),
                label_selector: Some(selector(labels)),
                ..Default::default()
            });
        self
    }

    /// Sets `minDomains` of the last spread constraint.
    pub fn min_domains(mut self, n: i32) -> Self {
        if let Some(c) = self
            .spec()
            .topology_spread_constraints
            .as_mut()
            .and_then(|v| v.last_mut())
        {
            c.min_domains = Some(n);
        }
        self
    }

    /// A controller owner reference (`apiVersion`, `kind`, name).
    pub fn controlled_by(mut self, api_version: &str, kind: &str, name: &str) -> Self {
        self.pod
            .metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    api_version: api_version.into(),
                    kind: kind.into(),
                    name: name.into(),
                    uid: format!("uid-{name}"),
                    controller: Some(true),
                    ..Default::default()
                },
            );
        self
    }

    pub fn terminating(mut self) -> Self {
        self.pod.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        self
    }

    pub fn pod(self) -> Pod {
        self.pod
    }

    pub fn build(self) -> PodRef {
        Arc::new(PodInfo::new(self.pod))
    }
}

/// A node under construction (allocatable 110 pods unless set).
#[derive(Clone)]
pub struct NodeBuilder {
    node: Node,
}

/// Starts a node.
pub fn node(name: &str) -> NodeBuilder {
    let mut n = NodeBuilder {
        node: Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus::default()),
        },
    };
    n = n.alloc("pods", "110");
    n
}

impl NodeBuilder {
    fn alloc(mut self, r: &str, q: &str) -> Self {
        self.node
            .status
            .get_or_insert_with(Default::default)
            .allocatable
            .get_or_insert_with(BTreeMap::new)
            .insert(r.into(), Quantity(q.into()));
        self
    }

    pub fn cpu(self, q: &str) -> Self {
        self.alloc("cpu", q)
    }

    pub fn memory(self, q: &str) -> Self {
        self.alloc("memory", q)
    }

    pub fn pods(self, q: &str) -> Self {
        self.alloc("pods", q)
    }

    pub fn scalar(self, name: &str, n: i64) -> Self {
        if n == 0 {
            return self;
        }
        self.alloc(name, &n.to_string())
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.node
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(k.into(), v.into());
        self
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.node
            .spec
            .get_or_insert_with(Default::default)
            .taints
            .get_or_insert_with(Vec::new)
            .push(Taint {
                key: key.into(),
                value: (!value.is_empty()).then(|| value.into()),
                effect: effect.into(),
                time_added: None,
            });
        self
    }

    pub fn unschedulable(mut self) -> Self {
        self.node
            .spec
            .get_or_insert_with(Default::default)
            .unschedulable = Some(true);
        self
    }

    pub fn node(self) -> Node {
        self.node
    }

    pub fn build(self) -> NodeView {
        NodeView::new(&self.node)
    }
}

/// A cache with nodes and pods, for deciding placements in tests.
#[derive(Default)]
pub struct World {
    pub cache: Cache,
    pub namespaces: Namespaces,
    pub nominator: Nominator,
}

impl World {
    pub fn new() -> World {
        World::default()
    }

    pub fn node(&mut self, b: NodeBuilder) {
        self.cache.set_node(b.build());
        self.cache.refresh_order();
    }

    /// Adds an assigned pod (the builder must name a node).
    pub fn pod(&mut self, b: PodBuilder) -> PodRef {
        let p = b.build();
        self.cache.set_pod(p.clone());
        self.cache.refresh_order();
        p
    }

    pub fn scheduling<'a>(&'a self, profile: &'a Profile) -> Scheduling<'a> {
        Scheduling {
            profile,
            cache: &self.cache,
            namespaces: &self.namespaces,
            nominator: &self.nominator,
        }
    }

    pub fn ctx<'a>(&'a self, pod: &'a PodInfo) -> Ctx<'a> {
        Ctx {
            pod,
            cache: &self.cache,
            namespaces: &self.namespaces,
        }
    }

    /// Where the pod would go, or the failure message.
    pub fn schedule(&self, profile: &Profile, pod: &PodInfo) -> Result<String, String> {
        let mut start = 0;
        let mut rng = rand::rng();
        let (_, r) = self.scheduling(profile).schedule(
            pod,
            pod.spec_priority.unwrap_or(0),
            &mut start,
            &mut rng,
        );
        r.map(|o| o.node).map_err(|e| e.message())
    }

    pub fn pre_filter(
        &self,
        profile: &Profile,
        pod: &PodInfo,
    ) -> (CycleState, Result<Option<HashSet<String>>, Status>) {
        let mut state = CycleState::default();
        let r = profile.run_pre_filter(&self.ctx(pod), &mut state);
        (state, r)
    }

    /// The verdict of PreFilter and Filter for one node.
    pub fn filter_one(&self, profile: &Profile, pod: &PodInfo, node: &str) -> Status {
        let (state, r) = self.pre_filter(profile, pod);
        match r {
            Err(s) => s,
            Ok(Some(names)) if !names.contains(node) => {
                Status::unresolvable("node(s) didn't satisfy plugin(s) [NodeAffinity]")
            }
            Ok(_) => {
                let Some(info) = self.cache.node(node) else {
                    return Status::unresolvable("node not found");
                };
                profile.run_filters_with_nominated(
                    &self.ctx(pod),
                    &state,
                    info,
                    self.nominator.for_node(node),
                    pod.spec_priority.unwrap_or(0),
                )
            }
        }
    }
}
