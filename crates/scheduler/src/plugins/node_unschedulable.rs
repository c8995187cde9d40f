//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take no new pods unless
//! the pod tolerates the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use crate::cache::NodeInfo;
use crate::framework::{Ctx, CycleState, Events, Plugin, PluginId, Status};
use crate::model::{NodeView, TAINT_UNSCHEDULABLE, tolerated};

/// Upstream's reason.
pub const REASON: &str = "node(s) were unschedulable";

/// The NodeUnschedulable filter.
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn id(&self) -> PluginId {
        PluginId::NodeUnschedulable
    }

    fn events(&self) -> Events {
        Events::NODE_ADD
            .union(Events::NODE_UNSCHEDULABLE)
            .union(Events::NODE_TAINT)
    }

    fn filter(&self, ctx: &Ctx, _: &CycleState, _: &NodeInfo, view: &NodeView) -> Status {
        if !view.unschedulable {
            return Status::success();
        }
        let taint = Taint {
            key: TAINT_UNSCHEDULABLE.into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        };
        if tolerated(ctx.pod.tolerations(), &taint) {
            Status::success()
        } else {
            Status::unresolvable(REASON)
        }
    }
}
