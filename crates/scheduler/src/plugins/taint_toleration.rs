//! TaintToleration: a node's `NoSchedule`/`NoExecute` taints must be tolerated
//! (filter); untolerated `PreferNoSchedule` taints make a node less attractive
//! (score, normalised in reverse: fewer such taints score higher).

use std::borrow::Cow;

use crate::cache::NodeInfo;
use crate::framework::{Ctx, CycleState, Events, Plugin, PluginId, Status, default_normalize};
use k8s_openapi::api::core::v1::Toleration;

use crate::model::{NodeView, tolerated, tolerates};

/// The TaintToleration filter and scorer.
pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn id(&self) -> PluginId {
        PluginId::TaintToleration
    }

    fn events(&self) -> Events {
        Events::NODE_ADD.union(Events::NODE_TAINT)
    }

    fn filter(&self, ctx: &Ctx, _: &CycleState, _: &NodeInfo, view: &NodeView) -> Status {
        let tolerations = ctx.pod.tolerations();
        let untolerated = view.taints.iter().find(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(tolerations, t)
        });
        match untolerated {
            None => Status::success(),
            Some(t) => Status::unresolvable(Cow::Owned(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            ))),
        }
    }

    fn score(&self, ctx: &Ctx, _: &CycleState, _: &NodeInfo, view: &NodeView) -> i64 {
        // Only tolerations that apply to PreferNoSchedule count here.
        let prefer = |t: &&Toleration| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        };
        let tolerations = ctx.pod.tolerations();
        view.taints
            .iter()
            .filter(|taint| {
                taint.effect == "PreferNoSchedule"
                    && !tolerations
                        .iter()
                        .filter(prefer)
                        .any(|t| tolerates(t, taint))
            })
            .count() as i64
    }

    fn normalize(&self, _: &CycleState, _: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use crate::framework::{PluginId, Profile};
    use crate::testutil::{World, node, pod};

    fn world() -> World {
        let mut w = World::new();
        w.node(
            node("tainted")
                .cpu("8")
                .memory("16Gi")
                .label("pick", "me")
                .taint("dedicated", "gpu", "NoSchedule"),
        );
        w.node(node("plain").cpu("8").memory("16Gi"));
        w
    }

    /// The pod prefers the tainted node; only TaintToleration keeps it off.
    #[test]
    fn untolerated_taints_decide_placement() {
        let w = world();
        let p = pod("p")
            .cpu("1")
            .prefer_node_label(100, "pick", "me")
            .build();
        let full = Profile::new("default-scheduler");
        for _ in 0..10 {
            assert_eq!(w.schedule(&full, &p).as_deref(), Ok("plain"));
        }
        let without = Profile::new("default-scheduler").without(PluginId::TaintToleration);
        assert_eq!(w.schedule(&without, &p).as_deref(), Ok("tainted"));
    }

    /// A toleration lets the pod onto the tainted node; the failure message
    /// names the taint in upstream's words.
    #[test]
    fn tolerations_and_messages() {
        let w = world();
        let p = pod("p")
            .cpu("1")
            .prefer_node_label(100, "pick", "me")
            .toleration("dedicated", "Equal", "gpu", "NoSchedule")
            .build();
        let full = Profile::new("default-scheduler");
        assert_eq!(w.schedule(&full, &p).as_deref(), Ok("tainted"));
        let big = pod("big").cpu("10").build();
        let msg = w.schedule(&full, &big).unwrap_err();
        assert!(
            msg.starts_with("0/2 nodes are available: ")
                && msg.contains("1 Insufficient cpu")
                && msg.contains("1 node(s) had untolerated taint {dedicated: gpu}"),
            "{msg}"
        );
    }
}
