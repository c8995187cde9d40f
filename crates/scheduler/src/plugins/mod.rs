//! The filter and score plugins of the default profile, one module each, named and
//! behaving as upstream's in-tree plugins.

pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_unschedulable;
pub mod noderesources;
pub mod taint_toleration;
pub mod topology_spread;
