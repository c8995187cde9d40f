//! NodeAffinity: `spec.nodeSelector` and required node affinity filter nodes;
//! preferred node affinity terms add their weights to a node's score.
//!
//! When every required term pins node names with `metadata.name In`, PreFilter
//! narrows the candidates to those nodes (how DaemonSet pods are placed) so the
//! other nodes are not even filtered.

use std::collections::HashSet;

use crate::cache::NodeInfo;
use crate::framework::{
    Ctx, CycleState, Events, Plugin, PluginId, PreFilterResult, Status, default_normalize,
};
use crate::model::NodeView;

/// Upstream's reason for a node that does not match.
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";
/// Upstream's reason when the pinned node names of the terms cannot all hold.
pub const REASON_CONFLICT: &str = "pod affinity terms conflict";

/// The NodeAffinity filter and scorer.
pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn id(&self) -> PluginId {
        PluginId::NodeAffinity
    }

    fn events(&self) -> Events {
        Events::NODE_ADD.union(Events::NODE_LABEL)
    }

    fn pre_filter(&self, ctx: &Ctx, _: &mut CycleState) -> PreFilterResult {
        let req = &ctx.pod.required_node_affinity;
        if req.is_empty() {
            return PreFilterResult::Skip;
        }
        let Some(terms) = req.terms.as_ref().filter(|t| !t.is_empty()) else {
            return PreFilterResult::Proceed;
        };
        let mut names = HashSet::new();
        for term in terms {
            // A term without a pinned name admits every node (terms are ORed).
            let Some(pinned) = term.pinned_node_names() else {
                return PreFilterResult::Proceed;
            };
            names.extend(pinned.into_iter().map(str::to_string));
        }
        if names.is_empty() {
            return PreFilterResult::Reject(Status::unresolvable(REASON_CONFLICT));
        }
        PreFilterResult::Nodes(names)
    }

    fn filter(&self, ctx: &Ctx, _: &CycleState, _: &NodeInfo, view: &NodeView) -> Status {
        if ctx.pod.required_node_affinity.matches(view) {
            Status::success()
        } else {
            Status::unresolvable(REASON)
        }
    }

    fn pre_score(&self, ctx: &Ctx, _: &mut CycleState, _: &[&NodeInfo]) -> bool {
        !ctx.pod.preferred_node_terms.is_empty()
    }

    fn score(&self, ctx: &Ctx, _: &CycleState, _: &NodeInfo, view: &NodeView) -> i64 {
        ctx.pod
            .preferred_node_terms
            .iter()
            .filter(|(_, t)| t.matches(view))
            .map(|(w, _)| i64::from(*w))
            .sum()
    }

    fn normalize(&self, _: &CycleState, _: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use crate::framework::{PluginId, Profile};
    use crate::testutil::{World, node, pod};

    /// The selected node is the busier one: scoring alone would pick the other,
    /// so only NodeAffinity's filter puts the pod where its nodeSelector says.
    #[test]
    fn node_selector_decides_placement() {
        let mut w = World::new();
        w.node(node("ssd").cpu("4").memory("8Gi").label("disk", "ssd"));
        w.node(node("hdd").cpu("4").memory("8Gi").label("disk", "hdd"));
        w.pod(pod("busy").cpu("3").memory("6Gi").node("ssd"));
        let p = pod("p")
            .cpu("500m")
            .memory("512Mi")
            .node_selector("disk", "ssd")
            .build();
        let full = Profile::new("default-scheduler");
        for _ in 0..10 {
            assert_eq!(w.schedule(&full, &p).as_deref(), Ok("ssd"));
        }
        let without = Profile::new("default-scheduler").without(PluginId::NodeAffinity);
        assert_eq!(w.schedule(&without, &p).as_deref(), Ok("hdd"));
        let nowhere = pod("q").node_selector("disk", "nvme").build();
        assert_eq!(
            w.schedule(&full, &nowhere),
            Err(format!("0/2 nodes are available: 2 {}.", super::REASON))
        );
    }
}
