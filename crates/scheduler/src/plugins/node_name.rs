//! NodeName: a pod that names its node (`spec.nodeName`) fits only there.

use crate::cache::NodeInfo;
use crate::framework::{Ctx, CycleState, Events, Plugin, PluginId, Status};
use crate::model::NodeView;

/// Upstream's reason.
pub const REASON: &str = "node(s) didn't match the requested node name";

/// The NodeName filter.
pub struct NodeName;

impl Plugin for NodeName {
    fn id(&self) -> PluginId {
        PluginId::NodeName
    }

    fn events(&self) -> Events {
        Events::NODE_ADD
    }

    fn filter(&self, ctx: &Ctx, _: &CycleState, _: &NodeInfo, view: &NodeView) -> Status {
        if ctx.pod.node_name.is_empty() || ctx.pod.node_name == view.name {
            Status::success()
        } else {
            Status::unresolvable(REASON)
        }
    }
}
