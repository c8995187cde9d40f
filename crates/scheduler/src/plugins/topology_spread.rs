//! PodTopologySpread: `topologySpreadConstraints`.
//!
//! `DoNotSchedule` constraints filter: placing the pod in a domain (the nodes sharing
//! a `topologyKey` value) must keep that domain's count of matching pods within
//! `maxSkew` of the emptiest domain (which counts as 0 while there are fewer domains
//! than `minDomains`). `ScheduleAnyway` constraints score: nodes in domains with
//! fewer matching pods score higher. Only nodes that pass the pod's node affinity
//! (`nodeAffinityPolicy: Honor`, the default) and, with `nodeTaintsPolicy: Honor`,
//! whose taints it tolerates, form the domains; nodes lacking a constraint's key are
//! ignored for counting and fail the filter.
//!
//! Pods without constraints of their own that a ReplicaSet, StatefulSet or
//! ReplicationController controls get upstream's "system default" soft constraints
//! ([`crate::model::system_default_spread`]); a node lacking such a constraint's key
//! (say, no zone label) is still scored, that constraint just adds nothing there.

use std::collections::{HashMap, HashSet};

use crate::cache::NodeInfo;
use crate::framework::{
    Ctx, CycleState, Events, MAX_NODE_SCORE, Plugin, PluginId, PreFilterResult, Status,
};
use crate::model::{LABEL_HOSTNAME, NodeView, PodInfo, SpreadConstraint, tolerated};

/// Upstream's reason when the skew would be exceeded.
pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
/// Upstream's reason when the node lacks a topology key.
pub const REASON_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

fn has_all_keys(view: &NodeView, constraints: &[SpreadConstraint]) -> bool {
    constraints
        .iter()
        .all(|c| c.system_default || view.labels.contains_key(&c.topology_key))
}

/// Whether the node takes part in the constraint's domains for this pod.
fn included(c: &SpreadConstraint, pod: &PodInfo, view: &NodeView) -> bool {
    if c.honor_node_affinity && !pod.required_node_affinity.matches(view) {
        return false;
    }
    if c.honor_node_taints {
        let tolerations = pod.tolerations();
        let untolerated = view.taints.iter().any(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(tolerations, t)
        });
        if untolerated {
            return false;
        }
    }
    true
}

fn count_matching(node: &NodeInfo, c: &SpreadConstraint, namespace: &str) -> i64 {
    node.pods
        .iter()
        .filter(|p| p.counts_for(namespace, &c.selector))
        .count() as i64
}

/// PreFilter state: per hard constraint, matching pods per domain.
#[derive(Clone, Debug)]
pub struct FilterState {
    constraints: Vec<SpreadConstraint>,
    counts: Vec<HashMap<String, i64>>,
    min: Vec<i64>,
}

impl FilterState {
    fn refresh_min(&mut self, i: usize) {
        self.min[i] = if (self.counts[i].len() as i64) < i64::from(self.constraints[i].min_domains)
        {
            0
        } else {
            self.counts[i].values().copied().min().unwrap_or(0)
        };
    }

    fn update(&mut self, pod: &PodInfo, incoming: &PodInfo, node: &NodeInfo, delta: i64) {
        let Some(view) = node.view() else { return };
        if pod.namespace != incoming.namespace || !has_all_keys(view, &self.constraints) {
            return;
        }
        for i in 0..self.constraints.len() {
            let c = &self.constraints[i];
            if !c.selector.matches(pod.labels()) || !included(c, incoming, view) {
                continue;
            }
            let value = view.labels[&c.topology_key].clone();
            *self.counts[i].entry(value).or_insert(0) += delta;
            self.refresh_min(i);
        }
    }
}

/// PreScore state for `ScheduleAnyway` constraints.
#[derive(Clone, Debug)]
pub struct ScoreState {
    constraints: Vec<SpreadConstraint>,
    /// Feasible nodes lacking a topology key (scored 0).
    ignored: HashSet<String>,
    /// Per constraint, matching pods per domain (hostname constraints count per node
    /// at Score time instead).
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
}

/// The PodTopologySpread filter and scorer.
pub struct PodTopologySpread;

impl Plugin for PodTopologySpread {
    fn id(&self) -> PluginId {
        PluginId::PodTopologySpread
    }

    fn events(&self) -> Events {
        Events::POD_ADD
            .union(Events::POD_DELETE)
            .union(Events::POD_LABEL)
            .union(Events::NODE_ADD)
            .union(Events::NODE_LABEL)
            .union(Events::NODE_TAINT)
    }

    fn pre_filter(&self, ctx: &Ctx, state: &mut CycleState) -> PreFilterResult {
        let pod = ctx.pod;
        if let Some(e) = &pod.parse_error {
            return PreFilterResult::Reject(Status::unresolvable(e.clone()));
        }
        let constraints: Vec<SpreadConstraint> = pod
            .spread_constraints
            .iter()
            .filter(|c| c.hard)
            .cloned()
            .collect();
        if constraints.is_empty() {
            return PreFilterResult::Skip;
        }
        let mut counts = vec![HashMap::new(); constraints.len()];
        for (node, view) in ctx.all_nodes() {
            if !has_all_keys(view, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if !included(c, pod, view) {
                    continue;
                }
                let n = count_matching(node, c, &pod.namespace);
                *counts[i]
                    .entry(view.labels[&c.topology_key].clone())
                    .or_insert(0) += n;
            }
        }
        let mut s = FilterState {
            min: vec![0; constraints.len()],
            constraints,
            counts,
        };
        for i in 0..s.constraints.len() {
            s.refresh_min(i);
        }
        state.spread_filter = Some(s);
        PreFilterResult::Proceed
    }

    fn filter(&self, ctx: &Ctx, state: &CycleState, _: &NodeInfo, view: &NodeView) -> Status {
        let Some(s) = &state.spread_filter else {
            return Status::success();
        };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = view.labels.get(&c.topology_key) else {
                return Status::unresolvable(REASON_LABEL);
            };
            let self_match = i64::from(c.selector.matches(ctx.pod.labels()));
            let have = s.counts[i].get(value).copied().unwrap_or(0);
            if have + self_match - s.min[i] > i64::from(c.max_skew) {
                return Status::unschedulable(REASON);
            }
        }
        Status::success()
    }

    fn add_pod(&self, ctx: &Ctx, state: &mut CycleState, pod: &PodInfo, node: &NodeInfo) {
        if let Some(s) = state.spread_filter.as_mut() {
            s.update(pod, ctx.pod, node, 1);
        }
    }

    fn remove_pod(&self, ctx: &Ctx, state: &mut CycleState, pod: &PodInfo, node: &NodeInfo) {
        if let Some(s) = state.spread_filter.as_mut() {
            s.update(pod, ctx.pod, node, -1);
        }
    }

    fn pre_score(&self, ctx: &Ctx, state: &mut CycleState, nodes: &[&NodeInfo]) -> bool {
        let pod = ctx.pod;
        let constraints: Vec<SpreadConstraint> = pod
            .spread_constraints
            .iter()
            .filter(|c| !c.hard)
            .cloned()
            .collect();
        if constraints.is_empty() {
            return false;
        }
        let mut ignored = HashSet::new();
        let mut counts = vec![HashMap::new(); constraints.len()];
        for node in nodes {
            let Some(view) = node.view() else { continue };
            if !has_all_keys(view, &constraints) {
                ignored.insert(node.name.clone());
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key != LABEL_HOSTNAME
                    && let Some(value) = view.labels.get(&c.topology_key)
                {
                    counts[i].entry(value.clone()).or_insert(0i64);
                }
            }
        }
        let weights = constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.topology_key == LABEL_HOSTNAME {
                    nodes.len() - ignored.len()
                } else {
                    counts[i].len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        for (node, view) in ctx.all_nodes() {
            if !has_all_keys(view, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == LABEL_HOSTNAME || !included(c, pod, view) {
                    continue;
                }
                if let Some(n) = view
                    .labels
                    .get(&c.topology_key)
                    .and_then(|v| counts[i].get_mut(v))
                {
                    *n += count_matching(node, c, &pod.namespace);
                }
            }
        }
        state.spread_score = Some(ScoreState {
            constraints,
            ignored,
            counts,
            weights,
        });
        true
    }

    fn score(&self, ctx: &Ctx, state: &CycleState, node: &NodeInfo, view: &NodeView) -> i64 {
        let Some(s) = &state.spread_score else {
            return 0;
        };
        if s.ignored.contains(&node.name) {
            return 0;
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = view.labels.get(&c.topology_key) else {
                continue;
            };
            let count = if c.topology_key == LABEL_HOSTNAME {
                count_matching(node, c, &ctx.pod.namespace)
            } else {
                s.counts[i].get(value).copied().unwrap_or(0)
            };
            score += count as f64 * s.weights[i] + f64::from(c.max_skew - 1);
        }
        score.round() as i64
    }

    fn normalize(&self, state: &CycleState, nodes: &[&NodeInfo], scores: &mut [i64]) {
        let Some(s) = &state.spread_score else { return };
        let mut min = i64::MAX;
        let mut max = 0;
        for (n, &score) in nodes.iter().zip(scores.iter()) {
            if s.ignored.contains(&n.name) {
                continue;
            }
            min = min.min(score);
            max = max.max(score);
        }
        for (n, score) in nodes.iter().zip(scores.iter_mut()) {
            *score = if s.ignored.contains(&n.name) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *score) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{Code, Profile};
    use crate::testutil::{World, node, pod};

    fn zoned_world() -> World {
        let mut w = World::new();
        for (n, z) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("c1", "c")] {
            w.node(
                node(n)
                    .cpu("8")
                    .memory("16Gi")
                    .label("zone", z)
                    .label(LABEL_HOSTNAME, n),
            );
        }
        w
    }

    #[test]
    fn filter_table() {
        // (existing app=web pods per node, maxSkew, key, minDomains, node -> expected code)
        type Case = (
            Vec<(&'static str, usize)>,
            i32,
            &'static str,
            i32,
            Vec<(&'static str, Code)>,
        );
        let cases: Vec<Case> = vec![
            // zone a has 2, b 1, c 0 → only c keeps skew ≤ 1.
            (
                vec![("a1", 1), ("a2", 1), ("b1", 1)],
                1,
                "zone",
                1,
                vec![
                    ("a1", Code::Unschedulable),
                    ("b1", Code::Unschedulable),
                    ("c1", Code::Success),
                ],
            ),
            // maxSkew 2: b (1+1-0=2) also fits.
            (
                vec![("a1", 1), ("a2", 1), ("b1", 1)],
                2,
                "zone",
                1,
                vec![
                    ("a1", Code::Unschedulable),
                    ("b1", Code::Success),
                    ("c1", Code::Success),
                ],
            ),
            // Balanced zones: everyone fits.
            (
                vec![("a1", 1), ("b1", 1), ("c1", 1)],
                1,
                "zone",
                1,
                vec![("a2", Code::Success), ("b1", Code::Success)],
            ),
            // minDomains 4 with 3 zones: the global minimum counts as 0.
            (
                vec![("a1", 1), ("b1", 1), ("c1", 1)],
                1,
                "zone",
                4,
                vec![("a2", Code::Unschedulable), ("c1", Code::Unschedulable)],
            ),
            // Nodes without the key fail as unresolvable.
            (
                vec![],
                1,
                "rack",
                1,
                vec![("a1", Code::UnschedulableAndUnresolvable)],
            ),
        ];
        for (i, (existing, skew, key, min_domains, expect)) in cases.into_iter().enumerate() {
            let mut w = zoned_world();
            for (n, count) in existing {
                for k in 0..count {
                    w.pod(pod(&format!("e-{n}-{k}")).label("app", "web").node(n));
                }
            }
            let p = pod("p")
                .label("app", "web")
                .spread(skew, key, true, &[("app", "web")])
                .min_domains(min_domains)
                .build();
            for (n, code) in expect {
                let s = w.filter_one(&Profile::new("default-scheduler"), &p, n);
                assert_eq!(s.code, code, "case {i} node {n}: {s:?}");
            }
        }
    }

    /// A ReplicaSet's pod without constraints of its own gets upstream's system
    /// default spreading: the node holding none of its siblings wins over a node that
    /// is emptier otherwise but holds them; nodes without a zone label still count.
    /// A pod without a controller keeps plain resource scoring.
    #[test]
    fn system_default_spread_for_controlled_pods() {
        let mut w = World::new();
        for n in ["n0", "n1", "n2"] {
            w.node(node(n).cpu("2").memory("8Gi").label(LABEL_HOSTNAME, n));
        }
        // n2 is the busiest node by requests; n0 and n1 hold two siblings each.
        w.pod(pod("other").cpu("600m").node("n2"));
        for (i, n) in ["n0", "n0", "n1", "n1"].into_iter().enumerate() {
            w.pod(
                pod(&format!("s{i}"))
                    .cpu("10m")
                    .label("app", "evict")
                    .controlled_by("apps/v1", "ReplicaSet", "evict-1")
                    .node(n),
            );
        }
        let sibling = pod("p")
            .cpu("10m")
            .label("app", "evict")
            .controlled_by("apps/v1", "ReplicaSet", "evict-1")
            .build();
        assert_eq!(sibling.spread_constraints.len(), 2);
        assert!(
            sibling
                .spread_constraints
                .iter()
                .all(|c| c.system_default && !c.hard)
        );
        let profile = Profile::new("default-scheduler");
        assert_eq!(w.schedule(&profile, &sibling).as_deref(), Ok("n2"));
        // Explicit constraints replace the defaults.
        let explicit = pod("q")
            .label("app", "evict")
            .controlled_by("apps/v1", "ReplicaSet", "evict-1")
            .spread(1, "zone", false, &[("app", "evict")])
            .build();
        assert_eq!(explicit.spread_constraints.len(), 1);
        assert!(!explicit.spread_constraints[0].system_default);
        // No controller: no default constraints, the emptier nodes win.
        let bare = pod("r").cpu("10m").label("app", "evict").build();
        assert!(bare.spread_constraints.is_empty());
        assert_ne!(w.schedule(&profile, &bare).as_deref(), Ok("n2"));
    }

    /// Without PodTopologySpread the pod goes to the zone that already has the most.
    #[test]
    fn topology_spread_decides_placement() {
        let mut w = World::new();
        for (n, z) in [("a1", "a"), ("b1", "b")] {
            w.node(node(n).cpu("8").memory("16Gi").label("zone", z));
        }
        // Zone a holds two matching pods but is otherwise emptier: a big unrelated
        // pod sits in zone b, so resource scoring prefers a1.
        w.pod(pod("w1").label("app", "web").node("a1"));
        w.pod(pod("w2").label("app", "web").node("a1"));
        w.pod(pod("big").cpu("6").memory("12Gi").node("b1"));
        let p = pod("p")
            .cpu("100m")
            .label("app", "web")
            .spread(1, "zone", true, &[("app", "web")])
            .build();
        for _ in 0..10 {
            assert_eq!(
                w.schedule(&Profile::new("default-scheduler"), &p)
                    .as_deref(),
                Ok("b1")
            );
        }
        let without = Profile::new("default-scheduler").without(PluginId::PodTopologySpread);
        assert_eq!(w.schedule(&without, &p).as_deref(), Ok("a1"));
    }

    #[test]
    fn soft_constraints_prefer_emptier_domains() {
        let mut w = zoned_world();
        w.pod(pod("w1").label("app", "web").node("a1"));
        w.pod(pod("w2").label("app", "web").node("b1"));
        let p = pod("p")
            .label("app", "web")
            .spread(1, "zone", false, &[("app", "web")])
            .build();
        for _ in 0..10 {
            assert_eq!(
                w.schedule(&Profile::new("default-scheduler"), &p)
                    .as_deref(),
                Ok("c1")
            );
        }
    }

    #[test]
    fn add_and_remove_pod_update_counts() {
        let mut w = zoned_world();
        w.pod(pod("w1").label("app", "web").node("a1"));
        let p = pod("p")
            .label("app", "web")
            .spread(1, "zone", true, &[("app", "web")])
            .build();
        let profile = Profile::new("default-scheduler");
        let (ctx_state, _) = w.pre_filter(&profile, &p);
        let mut state = ctx_state;
        let s = state.spread_filter.clone().expect("state");
        assert_eq!(s.counts[0].get("a"), Some(&1));
        let victim = w.cache.node("a1").expect("a1").pods[0].clone();
        let node_a1 = w.cache.node("a1").expect("a1").clone();
        let ctx = w.ctx(&p);
        PodTopologySpread.remove_pod(&ctx, &mut state, &victim, &node_a1);
        let s = state.spread_filter.clone().expect("state");
        assert_eq!(s.counts[0].get("a"), Some(&0));
        PodTopologySpread.add_pod(&ctx, &mut state, &victim, &node_a1);
        assert_eq!(
            state.spread_filter.expect("state").counts[0].get("a"),
            Some(&1)
        );
    }
}
