//! NodePorts: a pod's `hostPort`s must be free on the node.

use crate::cache::NodeInfo;
use crate::framework::{Ctx, CycleState, Events, Plugin, PluginId, PreFilterResult, Status};
use crate::model::NodeView;

/// Upstream's reason.
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// The NodePorts filter.
pub struct NodePorts;

impl Plugin for NodePorts {
    fn id(&self) -> PluginId {
        PluginId::NodePorts
    }

    fn events(&self) -> Events {
        Events::POD_DELETE.union(Events::NODE_ADD)
    }

    fn pre_filter(&self, ctx: &Ctx, _: &mut CycleState) -> PreFilterResult {
        if ctx.pod.host_ports.is_empty() {
            PreFilterResult::Skip
        } else {
            PreFilterResult::Proceed
        }
    }

    fn filter(&self, ctx: &Ctx, _: &CycleState, node: &NodeInfo, _: &NodeView) -> Status {
        let conflict = ctx
            .pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
        if conflict {
            Status::unschedulable(REASON)
        } else {
            Status::success()
        }
    }
}
