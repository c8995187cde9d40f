//! The scheduling framework: extension points, plugin statuses, per-cycle state and
//! the profile that lists which plugins run with which weights.
//!
//! It mirrors upstream's framework: PreFilter plugins look at the pod once and may
//! narrow the candidate nodes or reject it outright; Filter plugins decide per node;
//! PreScore/Score/NormalizeScore rank the feasible nodes; the AddPod/RemovePod
//! extensions let preemption and nominated pods evaluate "what if" node states
//! without redoing PreFilter. Plugins are trait objects so a profile can be built
//! without one of them — which is how the tests show that each plugin matters.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::cache::{Cache, NodeInfo};
use crate::model::{NodeView, PodInfo};
use crate::plugins;

/// Highest score a plugin gives a node after normalisation.
pub const MAX_NODE_SCORE: i64 = 100;

/// The outcome class of a plugin call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Success,
    /// The node does not fit now; preempting pods might help.
    Unschedulable,
    /// The node does not fit and preemption cannot change that.
    UnschedulableAndUnresolvable,
    /// Something went wrong; the pod is retried with backoff.
    Error,
}

/// A plugin's verdict, with upstream's reason strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<Cow<'static, str>>,
    /// The plugin that failed, if any.
    pub plugin: Option<PluginId>,
}

impl Status {
    pub fn success() -> Status {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: None,
        }
    }

    pub fn new(code: Code, reason: impl Into<Cow<'static, str>>) -> Status {
        Status {
            code,
            reasons: vec![reason.into()],
            plugin: None,
        }
    }

    pub fn unschedulable(reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::Unschedulable, reason)
    }

    pub fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::UnschedulableAndUnresolvable, reason)
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// The reasons joined as upstream's `Status.Message()` does.
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }

    fn with_plugin(mut self, id: PluginId) -> Status {
        self.plugin = Some(id);
        self
    }
}

/// The plugins this scheduler knows, by upstream name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginId {
    SchedulingGates,
    NodeUnschedulable,
    NodeName,
    TaintToleration,
    NodeAffinity,
    NodePorts,
    NodeResourcesFit,
    PodTopologySpread,
    InterPodAffinity,
    NodeResourcesBalancedAllocation,
    DefaultPreemption,
}

impl PluginId {
    /// Upstream's plugin name.
    pub fn name(self) -> &'static str {
        match self {
            PluginId::SchedulingGates => "SchedulingGates",
            PluginId::NodeUnschedulable => "NodeUnschedulable",
            PluginId::NodeName => "NodeName",
            PluginId::TaintToleration => "TaintToleration",
            PluginId::NodeAffinity => "NodeAffinity",
            PluginId::NodePorts => "NodePorts",
            PluginId::NodeResourcesFit => "NodeResourcesFit",
            PluginId::PodTopologySpread => "PodTopologySpread",
            PluginId::InterPodAffinity => "InterPodAffinity",
            PluginId::NodeResourcesBalancedAllocation => "NodeResourcesBalancedAllocation",
            PluginId::DefaultPreemption => "DefaultPreemption",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A set of plugins (which plugins rejected a pod, which care about an event).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PluginSet(u32);

impl PluginSet {
    pub fn insert(&mut self, id: PluginId) {
        self.0 |= id.bit();
    }

    pub fn contains(self, id: PluginId) -> bool {
        self.0 & id.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn intersects(self, other: PluginSet) -> bool {
        self.0 & other.0 != 0
    }

    pub fn union(self, other: PluginSet) -> PluginSet {
        PluginSet(self.0 | other.0)
    }
}

/// Kinds of cluster changes that can make an unschedulable pod schedulable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events(u32);

impl Events {
    pub const NONE: Events = Events(0);
    pub const NODE_ADD: Events = Events(1);
    pub const NODE_ALLOCATABLE: Events = Events(1 << 1);
    pub const NODE_LABEL: Events = Events(1 << 2);
    pub const NODE_TAINT: Events = Events(1 << 3);
    pub const NODE_CONDITION: Events = Events(1 << 4);
    pub const NODE_UNSCHEDULABLE: Events = Events(1 << 5);
    /// An assigned pod appeared (or was bound).
    pub const POD_ADD: Events = Events(1 << 6);
    /// An assigned pod went away (deleted, terminal, or its binding failed).
    pub const POD_DELETE: Events = Events(1 << 7);
    /// An assigned pod's labels changed.
    pub const POD_LABEL: Events = Events(1 << 8);
    /// An assigned pod requests less than before.
    pub const POD_SCALE_DOWN: Events = Events(1 << 9);
    /// A namespace's labels changed.
    pub const NAMESPACE: Events = Events(1 << 10);

    pub const fn union(self, other: Events) -> Events {
        Events(self.0 | other.0)
    }

    pub fn intersects(self, other: Events) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Labels of namespaces by name (for `namespaceSelector` in affinity terms).
pub type Namespaces = HashMap<String, BTreeMap<String, String>>;

/// What plugins may read during a cycle.
pub struct Ctx<'a> {
    pub pod: &'a PodInfo,
    pub cache: &'a Cache,
    pub namespaces: &'a Namespaces,
}

impl Ctx<'_> {
    /// The labels of a namespace, when known.
    pub fn namespace_labels(&self, ns: &str) -> Option<&BTreeMap<String, String>> {
        self.namespaces.get(ns)
    }

    /// Every existing node, zone-interleaved.
    pub fn all_nodes(&self) -> impl Iterator<Item = (&NodeInfo, &NodeView)> {
        self.cache.order().iter().filter_map(|&i| {
            let n = self.cache.node_at(i);
            n.view().map(|v| (n, v))
        })
    }
}

/// What a PreFilter plugin concluded.
#[derive(Debug)]
pub enum PreFilterResult {
    /// Run this plugin's Filter on every candidate node.
    Proceed,
    /// Nothing to check: skip this plugin's Filter for this pod.
    Skip,
    /// Only these nodes can fit.
    Nodes(HashSet<String>),
    /// The pod cannot be scheduled at all.
    Reject(Status),
}

/// Per-cycle state the plugins compute in PreFilter/PreScore and read per node.
#[derive(Clone, Debug, Default)]
pub struct CycleState {
    pub skip_filter: PluginSet,
    pub skip_score: PluginSet,
    pub spread_filter: Option<plugins::topology_spread::FilterState>,
    pub spread_score: Option<plugins::topology_spread::ScoreState>,
    pub affinity_filter: Option<plugins::inter_pod_affinity::FilterState>,
    pub affinity_score: Option<plugins::inter_pod_affinity::ScoreState>,
}

/// One scheduling plugin. Every extension point has a neutral default, so a plugin
/// implements only the points it takes part in.
pub trait Plugin: Send + Sync {
    fn id(&self) -> PluginId;

    /// Cluster events after which pods this plugin rejected may fit.
    fn events(&self) -> Events;

    fn pre_filter(&self, _ctx: &Ctx, _state: &mut CycleState) -> PreFilterResult {
        PreFilterResult::Proceed
    }

    fn filter(
        &self,
        _ctx: &Ctx,
        _state: &CycleState,
        _node: &NodeInfo,
        _view: &NodeView,
    ) -> Status {
        Status::success()
    }

    /// `pod` is now (hypothetically) on `node`: update the PreFilter state.
    fn add_pod(&self, _ctx: &Ctx, _state: &mut CycleState, _pod: &PodInfo, _node: &NodeInfo) {}

    /// `pod` is (hypothetically) gone from `node`: update the PreFilter state.
    fn remove_pod(&self, _ctx: &Ctx, _state: &mut CycleState, _pod: &PodInfo, _node: &NodeInfo) {}

    /// Prepares scoring of the feasible `nodes`; `false` skips Score for this pod.
    fn pre_score(&self, _ctx: &Ctx, _state: &mut CycleState, _nodes: &[&NodeInfo]) -> bool {
        true
    }

    fn score(&self, _ctx: &Ctx, _state: &CycleState, _node: &NodeInfo, _view: &NodeView) -> i64 {
        0
    }

    /// Brings the raw scores (one per node of `nodes`) into `0..=MAX_NODE_SCORE`.
    fn normalize(&self, _state: &CycleState, _nodes: &[&NodeInfo], _scores: &mut [i64]) {}
}

/// Upstream's `DefaultNormalizeScore`: scale to the maximum, optionally reversed.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}

/// A scheduling profile: the plugins of one `schedulerName`.
pub struct Profile {
    pub scheduler_name: String,
    /// Filter plugins in upstream's order (the first failure names the reason).
    pub filters: Vec<Box<dyn Plugin>>,
    /// Score plugins with their weights.
    pub scorers: Vec<(Box<dyn Plugin>, i64)>,
    /// `percentageOfNodesToScore`; 0 means upstream's adaptive default.
    pub percentage_of_nodes_to_score: u32,
    /// DefaultPreemption runs as the PostFilter plugin.
    pub preemption: bool,
}

impl Profile {
    /// Upstream v1.33's default profile (plugins this scheduler implements).
    pub fn new(scheduler_name: &str) -> Profile {
        use plugins::*;
        Profile {
            scheduler_name: scheduler_name.to_string(),
            filters: vec![
                Box::new(node_unschedulable::NodeUnschedulable),
                Box::new(node_name::NodeName),
                Box::new(taint_toleration::TaintToleration),
                Box::new(node_affinity::NodeAffinity),
                Box::new(node_ports::NodePorts),
                Box::new(noderesources::Fit),
                Box::new(topology_spread::PodTopologySpread),
                Box::new(inter_pod_affinity::InterPodAffinity),
            ],
            scorers: vec![
                (Box::new(taint_toleration::TaintToleration), 3),
                (Box::new(node_affinity::NodeAffinity), 2),
                (Box::new(noderesources::Fit), 1),
                (Box::new(topology_spread::PodTopologySpread), 2),
                (Box::new(inter_pod_affinity::InterPodAffinity), 2),
                (Box::new(noderesources::BalancedAllocation), 1),
            ],
            percentage_of_nodes_to_score: 0,
            preemption: true,
        }
    }

    /// The profile without one plugin (at every extension point).
    pub fn without(mut self, id: PluginId) -> Profile {
        self.filters.retain(|p| p.id() != id);
        self.scorers.retain(|(p, _)| p.id() != id);
        if id == PluginId::DefaultPreemption {
            self.preemption = false;
        }
        self
    }

    /// Plugins interested in any of `events`.
    pub fn interested(&self, events: Events) -> PluginSet {
        let mut set = PluginSet::default();
        for p in &self.filters {
            if p.events().intersects(events) {
                set.insert(p.id());
            }
        }
        set
    }

    /// Runs every PreFilter plugin. `Ok(Some(nodes))` narrows the candidates.
    pub fn run_pre_filter(
        &self,
        ctx: &Ctx,
        state: &mut CycleState,
    ) -> Result<Option<HashSet<String>>, Status> {
        let mut nodes: Option<HashSet<String>> = None;
        for p in &self.filters {
            match p.pre_filter(ctx, state) {
                PreFilterResult::Proceed => {}
                PreFilterResult::Skip => state.skip_filter.insert(p.id()),
                PreFilterResult::Nodes(set) => {
                    nodes = Some(match nodes {
                        None => set,
                        Some(prev) => prev.intersection(&set).cloned().collect(),
                    });
                }
                PreFilterResult::Reject(status) => return Err(status.with_plugin(p.id())),
            }
        }
        Ok(nodes)
    }

    /// Runs the Filter plugins on one node, stopping at the first failure.
    pub fn run_filters(&self, ctx: &Ctx, state: &CycleState, node: &NodeInfo) -> Status {
        let Some(view) = node.view() else {
            return Status::unresolvable("node not found");
        };
        for p in &self.filters {
            if state.skip_filter.contains(p.id()) {
                continue;
            }
            let s = p.filter(ctx, state, node, view);
            if !s.is_success() {
                return s.with_plugin(p.id());
            }
        }
        Status::success()
    }

    /// Runs the Filter plugins as upstream's `RunFilterPluginsWithNominatedPods`:
    /// when pods of equal or higher priority are nominated to the node, the node
    /// must fit with them added and without them.
    pub fn run_filters_with_nominated(
        &self,
        ctx: &Ctx,
        state: &CycleState,
        node: &NodeInfo,
        nominated: &[NominatedPod],
        priority: i32,
    ) -> Status {
        let relevant: Vec<&NominatedPod> = nominated
            .iter()
            .filter(|n| n.priority >= priority && n.pod.uid != ctx.pod.uid)
            .collect();
        if !relevant.is_empty() {
            let mut with = node.clone();
            let mut state_with = state.clone();
            for n in relevant {
                with.add_pod(n.pod.clone());
                for p in &self.filters {
                    p.add_pod(ctx, &mut state_with, &n.pod, &with);
                }
            }
            let s = self.run_filters(ctx, &state_with, &with);
            if !s.is_success() {
                return s;
            }
        }
        self.run_filters(ctx, state, node)
    }

    /// Calls every filter plugin's AddPod extension.
    pub fn add_pod(&self, ctx: &Ctx, state: &mut CycleState, pod: &PodInfo, node: &NodeInfo) {
        for p in &self.filters {
            p.add_pod(ctx, state, pod, node);
        }
    }

    /// Calls every filter plugin's RemovePod extension.
    pub fn remove_pod(&self, ctx: &Ctx, state: &mut CycleState, pod: &PodInfo, node: &NodeInfo) {
        for p in &self.filters {
            p.remove_pod(ctx, state, pod, node);
        }
    }

    /// PreScore, Score, NormalizeScore and weighting: the total per node.
    pub fn run_scores(&self, ctx: &Ctx, state: &mut CycleState, nodes: &[&NodeInfo]) -> Vec<i64> {
        let mut totals = vec![0i64; nodes.len()];
        let mut scores = vec![0i64; nodes.len()];
        for (p, weight) in &self.scorers {
            if !p.pre_score(ctx, state, nodes) {
                state.skip_score.insert(p.id());
                continue;
            }
            for (s, n) in scores.iter_mut().zip(nodes) {
                *s = match n.view() {
                    Some(v) => p.score(ctx, state, n, v),
                    None => 0,
                };
            }
            p.normalize(state, nodes, &mut scores);
            for (t, s) in totals.iter_mut().zip(&scores) {
                *t += s * weight;
            }
        }
        totals
    }
}

/// A pod nominated to a node by preemption, holding its place there.
#[derive(Clone, Debug)]
pub struct NominatedPod {
    pub pod: crate::model::PodRef,
    pub priority: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_normalize_table() {
        for (input, reverse, want) in [
            (vec![0, 0, 0], false, vec![0, 0, 0]),
            (vec![0, 0, 0], true, vec![100, 100, 100]),
            (vec![1, 2, 4], false, vec![25, 50, 100]),
            (vec![1, 2, 4], true, vec![75, 50, 0]),
            (vec![3, 0], true, vec![0, 100]),
        ] {
            let mut s = input.clone();
            default_normalize(&mut s, reverse);
            assert_eq!(s, want, "{input:?} reverse={reverse}");
        }
    }

    #[test]
    fn plugin_sets_and_events() {
        let mut s = PluginSet::default();
        assert!(s.is_empty());
        s.insert(PluginId::NodePorts);
        assert!(s.contains(PluginId::NodePorts));
        assert!(!s.contains(PluginId::NodeName));
        let mut t = PluginSet::default();
        t.insert(PluginId::NodeName);
        assert!(!s.intersects(t));
        assert!(s.union(t).contains(PluginId::NodeName));
        let profile = Profile::new("default-scheduler");
        let fit = profile.interested(Events::POD_DELETE);
        assert!(fit.contains(PluginId::NodeResourcesFit));
        assert!(!fit.contains(PluginId::TaintToleration));
        let taints = profile.interested(Events::NODE_TAINT);
        assert!(taints.contains(PluginId::TaintToleration));
        assert!(!taints.contains(PluginId::NodeResourcesFit));
    }
}
