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
