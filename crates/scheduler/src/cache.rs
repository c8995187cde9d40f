//! The node-info cache: for every node, the pods on it and what they request.
//!
//! It is fed by the pod and node watches and by the scheduler itself: when a pod has
//! been placed, it is *assumed* onto its node at once so the next pod sees the
//! capacity taken, long before the binding round-trip and the watch event confirm it.
//! A failed binding *forgets* the assumed pod again. The cache is owned by the
//! scheduling loop, which is the only writer, so it needs no locks: scheduling
//! cycles read it directly instead of copying a snapshot.
//!
//! Nodes are kept in a list interleaved by zone (upstream's node tree), so sampling a
//! fraction of the nodes still covers every zone.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{HostPort, NodeView, PodRef};
use crate::resources::Resource;

/// One node and the pods assigned (or assumed) to it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    /// `None` while pods reference a node the watch has not delivered (or deleted).
    pub node: Option<Arc<NodeView>>,
    pub pods: Vec<PodRef>,
    /// Sum of the exact requests of the pods.
    pub requested: Resource,
    /// Sum of the non-zero CPU requests (see [`crate::resources`]).
    pub non_zero_cpu: i64,
    /// Sum of the non-zero memory requests.
    pub non_zero_memory: i64,
    pub used_ports: Vec<HostPort>,
    /// Pods with any pod (anti-)affinity term.
    pub pods_with_affinity: usize,
    /// Pods with required anti-affinity terms.
    pub pods_with_required_anti_affinity: usize,
}

impl NodeInfo {
    /// An empty node info.
    pub fn new(name: &str, node: Option<Arc<NodeView>>) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            node,
            pods: Vec::new(),
            requested: Resource::default(),
            non_zero_cpu: 0,
            non_zero_memory: 0,
            used_ports: Vec::new(),
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
        }
    }

    /// Accounts a pod to the node.
    pub fn add_pod(&mut self, pod: PodRef) {
        self.requested.add(&pod.requests.requests);
        self.non_zero_cpu += pod.requests.non_zero_cpu;
        self.non_zero_memory += pod.requests.non_zero_memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if pod.has_affinity() {
            self.pods_with_affinity += 1;
        }
        if pod.has_required_anti_affinity() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.push(pod);
    }

    /// Removes a pod by UID; returns it if it was there.
    pub fn remove_pod(&mut self, uid: &str) -> Option<PodRef> {
        let i = self.pods.iter().position(|p| p.uid == uid)?;
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests.requests);
        self.non_zero_cpu -= pod.requests.non_zero_cpu;
        self.non_zero_memory -= pod.requests.non_zero_memory;
        for hp in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        if pod.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        if pod.has_required_anti_affinity() {
            self.pods_with_required_anti_affinity -= 1;
        }
        Some(pod)
    }

    /// The node's view; only nodes that exist are ever scheduled onto.
    pub fn view(&self) -> Option<&NodeView> {
        self.node.as_deref()
    }
}

#[derive(Debug)]
struct PodState {
    pod: PodRef,
    node: String,
    assumed: bool,
}

/// How a cached pod changed, for requeueing unschedulable pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodChange {
    Added,
    /// Labels changed.
    Relabelled,
    /// Requests went down.
    ScaledDown,
    /// Nothing the scheduler cares about changed.
    Other,
}

/// The cache of nodes and assigned pods.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<String, PodState>,
    order: Vec<usize>,
    order_dirty: bool,
    pods_with_affinity: usize,
    pods_with_required_anti_affinity: usize,
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    fn slot(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.nodes.push(NodeInfo::new(name, None));
        let i = self.nodes.len() - 1;
        self.index.insert(name.to_string(), i);
        i
    }

    /// Drops a node slot that has neither a node nor pods.
    fn gc_slot(&mut self, i: usize) {
        if self.nodes[i].node.is_some() || !self.nodes[i].pods.is_empty() {
            return;
        }
        let removed = self.nodes.swap_remove(i);
        self.index.remove(&removed.name);
        if i < self.nodes.len() {
            let moved = self.nodes[i].name.clone();
            self.index.insert(moved, i);
        }
        self.order_dirty = true;
    }

    /// Adds or replaces a node; returns the previous view.
    pub fn set_node(&mut self, view: NodeView) -> Option<Arc<NodeView>> {
        let i = self.slot(&view.name.clone());
        let old = self.nodes[i].node.replace(Arc::new(view));
        let zone_changed = match (&old, &self.nodes[i].node) {
            (Some(o), Some(n)) => o.zone_key != n.zone_key,
            _ => true,
        };
        if zone_changed {
            self.order_dirty = true;
        }
        old
    }

    /// Removes a node. Its pods stay accounted until their own deletion arrives.
    pub fn remove_node(&mut self, name: &str) -> Option<Arc<NodeView>> {
        let &i = self.index.get(name)?;
        let old = self.nodes[i].node.take();
        self.order_dirty = true;
        self.gc_slot(i);
        old
    }

    fn account(&mut self, pod: &PodRef, sign: isize) {
        if pod.has_affinity() {
            self.pods_with_affinity = self.pods_with_affinity.saturating_add_signed(sign);
        }
        if pod.has_required_anti_affinity() {
            self.pods_with_required_anti_affinity = self
                .pods_with_required_anti_affinity
                .saturating_add_signed(sign);
        }
    }

    fn place(&mut self, pod: PodRef, node: &str) {
        self.account(&pod, 1);
        let i = self.slot(node);
        self.nodes[i].add_pod(pod);
    }

    fn unplace(&mut self, uid: &str, node: &str) -> Option<PodRef> {
        let &i = self.index.get(node)?;
        let pod = self.nodes[i].remove_pod(uid)?;
        self.account(&pod, -1);
        self.gc_slot(i);
        Some(pod)
    }

    /// Assumes a pod onto a node before its binding is confirmed.
    pub fn assume(&mut self, pod: PodRef, node: &str) {
        if let Some(old) = self.pods.remove(&pod.uid) {
            self.unplace(&old.pod.uid, &old.node);
        }
        self.place(pod.clone(), node);
        self.pods.insert(
            pod.uid.clone(),
            PodState {
                pod,
                node: node.to_string(),
                assumed: true,
            },
        );
    }

    /// Forgets an assumed pod (its binding failed). Confirmed pods are left alone.
    pub fn forget(&mut self, uid: &str) -> bool {
        match self.pods.get(uid) {
            Some(state) if state.assumed => {
                let node = state.node.clone();
                self.pods.remove(uid);
                self.unplace(uid, &node);
                true
            }
            _ => false,
        }
    }

    /// Whether the pod is assumed (placed by us, not yet seen bound by the watch).
    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|s| s.assumed)
    }

    /// Whether the cache holds the pod at all (assigned or assumed).
    pub fn contains_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// The node a cached pod is on.
    pub fn pod_node(&self, uid: &str) -> Option<&str> {
        self.pods.get(uid).map(|s| s.node.as_str())
    }

    /// Adds or updates an assigned pod from the watch (confirming an assumed one).
    pub fn set_pod(&mut self, pod: PodRef) -> PodChange {
        let node = pod.node_name.clone();
        let change = match self.pods.remove(&pod.uid) {
            None => PodChange::Added,
            Some(old) => {
                self.unplace(&old.pod.uid, &old.node);
                if old.assumed {
                    PodChange::Added
                } else if old.pod.labels() != pod.labels() {
                    PodChange::Relabelled
                } else if pod.requests.requests.milli_cpu < old.pod.requests.requests.milli_cpu
                    || pod.requests.requests.memory < old.pod.requests.requests.memory
                {
                    PodChange::ScaledDown
                } else {
                    PodChange::Other
                }
            }
        };
        self.place(pod.clone(), &node);
        self.pods.insert(
            pod.uid.clone(),
            PodState {
                pod,
                node,
                assumed: false,
            },
        );
        change
    }

    /// Removes a pod; returns it if it was cached.
    pub fn remove_pod(&mut self, uid: &str) -> Option<PodRef> {
        let state = self.pods.remove(uid)?;
        self.unplace(uid, &state.node)
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// A node by slot.
    pub fn node_at(&self, slot: usize) -> &NodeInfo {
        &self.nodes[slot]
    }

    /// The slot of an existing node.
    pub fn slot_of(&self, name: &str) -> Option<usize> {
        self.index
            .get(name)
            .copied()
            .filter(|&i| self.nodes[i].node.is_some())
    }

    /// Rebuilds the zone-interleaved node order if nodes came or went.
    pub fn refresh_order(&mut self) {
        if !self.order_dirty {
            return;
        }
        self.order_dirty = false;
        let mut zones: Vec<(String, Vec<usize>)> = Vec::new();
        let mut zone_index: HashMap<String, usize> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(view) = &n.node else { continue };
            let z = *zone_index.entry(view.zone_key.clone()).or_insert_with(|| {
                zones.push((view.zone_key.clone(), Vec::new()));
                zones.len() - 1
            });
            zones[z].1.push(i);
        }
        self.order.clear();
        let longest = zones.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
        for k in 0..longest {
            for (_, members) in &zones {
                if let Some(&i) = members.get(k) {
                    self.order.push(i);
                }
            }
        }
    }

    /// Slots of the existing nodes, zone-interleaved. Call [`Cache::refresh_order`]
    /// first.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Number of existing nodes.
    pub fn num_nodes(&self) -> usize {
        self.order.len()
    }

    /// Number of cached pods.
    pub fn num_pods(&self) -> usize {
        self.pods.len()
    }

    /// Whether any cached pod has pod (anti-)affinity terms.
    pub fn any_pod_with_affinity(&self) -> bool {
        self.pods_with_affinity > 0
    }

    /// Whether any cached pod has required anti-affinity terms.
    pub fn any_pod_with_required_anti_affinity(&self) -> bool {
        self.pods_with_required_anti_affinity > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{node, pod};

    #[test]
    fn assume_confirm_forget() {
        let mut cache = Cache::new();
        cache.set_node(node("n1").cpu("2").build());
        cache.refresh_order();
        let p = pod("p").cpu("500m").build();
        cache.assume(p.clone(), "n1");
        assert!(cache.is_assumed(&p.uid));
        assert_eq!(cache.node("n1").map(|n| n.requested.milli_cpu), Some(500));

        // The watch confirms the binding: still accounted once.
        let bound = pod("p").cpu("500m").node("n1").build();
        assert_eq!(cache.set_pod(bound), PodChange::Added);
        assert!(!cache.is_assumed(&p.uid));
        assert_eq!(cache.node("n1").map(|n| n.requested.milli_cpu), Some(500));
        assert!(!cache.forget(&p.uid), "confirmed pods are not forgotten");

        let q = pod("q").cpu("1").build();
        cache.assume(q.clone(), "n1");
        assert_eq!(cache.node("n1").map(|n| n.requested.milli_cpu), Some(1500));
        assert!(cache.forget(&q.uid));
        assert_eq!(cache.node("n1").map(|n| n.requested.milli_cpu), Some(500));
        assert_eq!(cache.num_pods(), 1);
    }

    #[test]
    fn pods_before_their_node_and_node_removal() {
        let mut cache = Cache::new();
        cache.set_pod(pod("p").cpu("1").node("late").build());
        cache.refresh_order();
        assert_eq!(
            cache.num_nodes(),
            0,
            "a node only known from pods is not schedulable"
        );
        cache.set_node(node("late").cpu("4").build());
        cache.refresh_order();
        assert_eq!(cache.num_nodes(), 1);
        assert_eq!(
            cache.node("late").map(|n| n.requested.milli_cpu),
            Some(1000)
        );
        cache.remove_node("late");
        cache.refresh_order();
        assert_eq!(cache.num_nodes(), 0);
        assert!(cache.node("late").is_some(), "pods keep the slot");
        cache.remove_pod(&pod("p").build().uid);
        assert!(cache.node("late").is_none());
    }

    #[test]
    fn order_interleaves_zones() {
        let mut cache = Cache::new();
        for (n, z) in [
            ("a1", "a"),
            ("a2", "a"),
            ("a3", "a"),
            ("b1", "b"),
            ("c1", "c"),
        ] {
            cache.set_node(node(n).label("topology.kubernetes.io/zone", z).build());
        }
        cache.refresh_order();
        let names: Vec<&str> = cache
            .order()
            .iter()
            .map(|&i| cache.node_at(i).name.as_str())
            .collect();
        assert_eq!(names, vec!["a1", "b1", "c1", "a2", "a3"]);
    }

    #[test]
    fn pod_changes_are_classified() {
        let mut cache = Cache::new();
        assert_eq!(
            cache.set_pod(pod("p").cpu("1").node("n").build()),
            PodChange::Added
        );
        assert_eq!(
            cache.set_pod(pod("p").cpu("1").node("n").label("a", "b").build()),
            PodChange::Relabelled
        );
        assert_eq!(
            cache.set_pod(pod("p").cpu("500m").node("n").label("a", "b").build()),
            PodChange::ScaledDown
        );
        assert_eq!(
            cache.set_pod(pod("p").cpu("500m").node("n").label("a", "b").build()),
            PodChange::Other
        );
        assert_eq!(cache.node("n").map(|n| n.pods.len()), Some(1));
    }
}
