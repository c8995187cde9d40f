//! The garbage collector's dependency graph: every observed object (by uid) with its
//! owner references, and the reverse index owner uid → dependent uids.
//!
//! It is fed by the metadata watches of all monitored resources and is a cache only:
//! every destructive decision re-reads the objects involved from the API server. Its
//! second job is deciding, for each watch event, which uids must be (re)examined by the
//! workers ([`Graph::apply_event`] returns them) — the handlers never act themselves.
//!
//! Written instead of using kube-runtime reflector stores because those index objects by
//! resource and name only, while the collector needs uid lookup across all resources and
//! the reverse owner index, updated atomically with the relist semantics of the watcher.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::{DynamicObject, PartialObjectMeta};
use kube::runtime::watcher::Event;

use crate::discovery::ServedResource;

/// Finalizer that makes the collector orphan an object's dependents.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// Finalizer that makes the collector delete an object's dependents first.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

pub type Uid = String;

/// One observed object.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub resource: Arc<ServedResource>,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Uid,
    pub owners: Vec<OwnerReference>,
    pub finalizers: Vec<String>,
    pub being_deleted: bool,
}

impl Node {
    /// The node for an object's metadata; `None` when name or uid is missing.
    pub fn from_meta(resource: &Arc<ServedResource>, meta: &ObjectMeta) -> Option<Node> {
        let name = meta.name.clone().filter(|n| !n.is_empty())?;
        let uid = meta.uid.clone().filter(|u| !u.is_empty())?;
        Some(Node {
            resource: resource.clone(),
            namespace: meta.namespace.clone().filter(|n| !n.is_empty()),
            name,
            uid,
            owners: meta.owner_references.clone().unwrap_or_default(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            being_deleted: meta.deletion_timestamp.is_some(),
        })
    }

    pub fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Deleted in the foreground: waiting for its blocking dependents to go.
    pub fn deleting_dependents(&self) -> bool {
        self.being_deleted && self.has_finalizer(FOREGROUND_FINALIZER)
    }

    /// Deleted with the orphan policy: waiting for its dependents to be released.
    pub fn orphaning(&self) -> bool {
        self.being_deleted && self.has_finalizer(ORPHAN_FINALIZER)
    }

    /// The reference from this node to `owner`, if any.
    pub fn reference_to(&self, owner: &str) -> Option<&OwnerReference> {
        self.owners.iter().find(|r| r.uid == owner)
    }

    /// Whether this node blocks the foreground deletion of `owner`.
    pub fn blocks(&self, owner: &str) -> bool {
        self.reference_to(owner)
            .is_some_and(|r| r.block_owner_deletion == Some(true))
    }
}

#[derive(Default)]
struct ResourceState {
    synced: bool,
    /// When tracking started (for giving up on a resource that never lists).
    added: Option<Instant>,
    uids: HashSet<Uid>,
    /// Objects of a relist in progress (between `Init` and `InitDone`).
    buffer: Option<Vec<Node>>,
}

/// See the module documentation.
#[derive(Default)]
pub struct Graph {
    nodes: HashMap<Uid, Node>,
    dependents: HashMap<Uid, HashSet<Uid>>,
    resources: HashMap<String, ResourceState>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Start tracking a resource (not synced until its first list completes).
    pub fn add_resource(&mut self, key: &str, now: Instant) {
        self.resources
            .entry(key.to_string())
            .or_default()
            .added
            .get_or_insert(now);
    }

    /// Stop tracking a resource: its objects leave the graph. Returns uids to examine.
    pub fn remove_resource(&mut self, key: &str) -> Vec<Uid> {
        let Some(state) = self.resources.remove(key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for uid in state.uids {
            out.extend(self.remove_node(key, &uid));
        }
        dedup(out)
    }

    /// Whether every tracked resource completed its initial list.
    pub fn all_synced(&self) -> bool {
        self.resources.values().all(|s| s.synced)
    }

    /// Resources still waiting for their first list, with when tracking started.
    pub fn unsynced(&self) -> Vec<(String, Option<Instant>)> {
        let mut v: Vec<(String, Option<Instant>)> = self
            .resources
            .iter()
            .filter(|(_, s)| !s.synced)
            .map(|(k, s)| (k.clone(), s.added))
            .collect();
        v.sort();
        v
    }

    pub fn is_synced(&self, key: &str) -> bool {
        self.resources.get(key).is_some_and(|s| s.synced)
    }

    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Observed objects whose owner references name `owner`.
    pub fn dependents(&self, owner: &str) -> Vec<Node> {
        let mut v: Vec<Node> = self
            .dependents
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|u| self.nodes.get(u).cloned())
            .collect();
        v.sort_by(|a, b| a.uid.cmp(&b.uid));
        v
    }

    /// Apply one watch event of `resource`; returns the uids the workers must examine.
    pub fn apply_event(
        &mut self,
        resource: &Arc<ServedResource>,
        event: &Event<PartialObjectMeta<DynamicObject>>,
    ) -> Vec<Uid> {
        let key = resource.key();
        match event {
            Event::Apply(o) => Node::from_meta(resource, &o.metadata)
                .map(|n| self.upsert(n))
                .unwrap_or_default(),
            Event::Delete(o) => o
                .metadata
                .uid
                .as_deref()
                .map(|u| dedup(self.remove_node(&key, u)))
                .unwrap_or_default(),
            Event::Init => {
                self.resources.entry(key).or_default().buffer = Some(Vec::new());
                Vec::new()
            }
            Event::InitApply(o) => {
                if let Some(n) = Node::from_meta(resource, &o.metadata) {
                    self.resources
                        .entry(key)
                        .or_default()
                        .buffer
                        .get_or_insert_with(Vec::new)
                        .push(n);
                }
                Vec::new()
            }
            Event::InitDone => {
                let state = self.resources.entry(key.clone()).or_default();
                let listed = state.buffer.take().unwrap_or_default();
                state.synced = true;
                let keep: HashSet<Uid> = listed.iter().map(|n| n.uid.clone()).collect();
                let gone: Vec<Uid> = state
                    .uids
                    .iter()
                    .filter(|u| !keep.contains(*u))
                    .cloned()
                    .collect();
                let mut out = Vec::new();
                for uid in gone {
                    out.extend(self.remove_node(&key, &uid));
                }
                for n in listed {
                    out.extend(self.upsert(n));
                }
                dedup(out)
            }
        }
    }

    /// Insert or update a node; returns the uids to examine.
    pub fn upsert(&mut self, node: Node) -> Vec<Uid> {
        let uid = node.uid.clone();
        self.resources
            .entry(node.resource.key())
            .or_default()
            .uids
            .insert(uid.clone());
        let old = self.nodes.insert(uid.clone(), node.clone());
        let old_owners: HashSet<&str> = old
            .iter()
            .flat_map(|o| o.owners.iter().map(|r| r.uid.as_str()))
            .collect();
        let new_owners: HashSet<&str> = node.owners.iter().map(|r| r.uid.as_str()).collect();
        for gone in old_owners.difference(&new_owners) {
            self.unlink(gone, &uid);
        }
        for added in new_owners.difference(&old_owners) {
            self.dependents
                .entry(added.to_string())
                .or_default()
                .insert(uid.clone());
        }

        let mut out = Vec::new();
        // The object itself is being deleted with orphan/foreground semantics.
        if node.orphaning() || node.deleting_dependents() {
            out.push(uid.clone());
        }
        // Foreground deletion: every dependent must be looked at.
        if node.deleting_dependents() {
            out.extend(self.dependents.get(&uid).into_iter().flatten().cloned());
        }
        // An owner we have not seen (maybe absent) or one waiting for its dependents.
        let needs_look = node
            .owners
            .iter()
            .any(|r| self.nodes.get(&r.uid).is_none_or(Node::deleting_dependents));
        if needs_look {
            out.push(uid.clone());
        }
        // A reference that no longer blocks an owner waiting for its dependents.
        if let Some(old) = &old {
            for r in &old.owners {
                let still_blocks = node.blocks(&r.uid);
                let blocked = r.block_owner_deletion == Some(true);
                let removed = node.reference_to(&r.uid).is_none();
                if (removed || (blocked && !still_blocks))
                    && self
                        .nodes
                        .get(&r.uid)
                        .is_some_and(Node::deleting_dependents)
                {
                    out.push(r.uid.clone());
                }
            }
        }
        dedup(out)
    }

    /// Remove the node `uid` observed through resource `key`; returns uids to examine.
    fn remove_node(&mut self, key: &str, uid: &str) -> Vec<Uid> {
        if let Some(state) = self.resources.get_mut(key) {
            state.uids.remove(uid);
        }
        // The same object can be served by two resources (e.g. events in two groups):
        // only the resource the node was last seen through removes it.
        if self.nodes.get(uid).is_none_or(|n| n.resource.key() != key) {
            return Vec::new();
        }
        let Some(node) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for r in &node.owners {
            self.unlink(&r.uid, uid);
            if self
                .nodes
                .get(&r.uid)
                .is_some_and(Node::deleting_dependents)
            {
                out.push(r.uid.clone());
            }
        }
        out.extend(self.dependents.get(uid).into_iter().flatten().cloned());
        out
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(set) = self.dependents.get_mut(owner) {
            set.remove(dependent);
            if set.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }
}

fn dedup(mut v: Vec<Uid>) -> Vec<Uid> {
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::discovery::ApiResource;

    fn resource(plural: &str) -> Arc<ServedResource> {
        Arc::new(ServedResource {
            api: ApiResource {
                group: String::new(),
                version: "v1".into(),
                api_version: "v1".into(),
                kind: plural.to_string(),
                plural: plural.to_string(),
            },
            namespaced: true,
            verbs: vec!["list".into(), "watch".into(), "delete".into()],
        })
    }

    /// owners: (uid, blockOwnerDeletion)
    fn meta(
        uid: &str,
        owners: &[(&str, bool)],
        finalizers: &[&str],
        deleting: bool,
    ) -> PartialObjectMeta<DynamicObject> {
        PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some(format!("n-{uid}")),
                namespace: Some("ns".into()),
                uid: Some(uid.into()),
                owner_references: (!owners.is_empty()).then(|| {
                    owners
                        .iter()
                        .map(|(u, b)| OwnerReference {
                            api_version: "v1".into(),
                            kind: "ConfigMap".into(),
                            name: format!("n-{u}"),
                            uid: u.to_string(),
                            block_owner_deletion: b.then_some(true),
                            controller: None,
                        })
                        .collect()
                }),
                finalizers: (!finalizers.is_empty())
                    .then(|| finalizers.iter().map(|s| s.to_string()).collect()),
                deletion_timestamp: deleting
                    .then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            _phantom: Default::default(),
        }
    }

    enum Ev {
        Apply(
            &'static str,
            &'static [(&'static str, bool)],
            &'static [&'static str],
            bool,
        ),
        Delete(&'static str),
    }

    fn run(graph: &mut Graph, r: &Arc<ServedResource>, evs: &[Ev]) -> Vec<Uid> {
        let mut last = Vec::new();
        for e in evs {
            last = match e {
                Ev::Apply(u, o, f, d) => graph.apply_event(r, &Event::Apply(meta(u, o, f, *d))),
                Ev::Delete(u) => graph.apply_event(r, &Event::Delete(meta(u, &[], &[], false))),
            };
        }
        last
    }

    #[test]
    fn enqueue_rules_table() {
        use Ev::*;
        // (name, events, uids to examine after the last event)
        let cases: Vec<(&str, Vec<Ev>, Vec<&str>)> = vec![
            ("plain object", vec![Apply("a", &[], &[], false)], vec![]),
            (
                "owner never seen",
                vec![Apply("d", &[("o", false)], &[], false)],
                vec!["d"],
            ),
            (
                "owner present",
                vec![
                    Apply("o", &[], &[], false),
                    Apply("d", &[("o", false)], &[], false),
                ],
                vec![],
            ),
            (
                "owner deleted: dependents examined",
                vec![
                    Apply("o", &[], &[], false),
                    Apply("d1", &[("o", false)], &[], false),
                    Apply("d2", &[("o", true)], &[], false),
                    Delete("o"),
                ],
                vec!["d1", "d2"],
            ),
            (
                "orphan finalizer on deleted object",
                vec![Apply("o", &[], &["orphan"], true)],
                vec!["o"],
            ),
            (
                "orphan finalizer without deletion",
                vec![Apply("o", &[], &["orphan"], false)],
                vec![],
            ),
            (
                "other finalizer being deleted",
                vec![Apply("o", &[], &["example.com/x"], true)],
                vec![],
            ),
            (
                "foreground: owner and all dependents",
                vec![
                    Apply("o", &[], &[], false),
                    Apply("d1", &[("o", true)], &[], false),
                    Apply("d2", &[("o", false)], &[], false),
                    Apply("o", &[], &["foregroundDeletion"], true),
                ],
                vec!["d1", "d2", "o"],
            ),
            (
                "new dependent of a foreground-deleting owner",
                vec![
                    Apply("o", &[], &["foregroundDeletion"], true),
                    Apply("d", &[("o", true)], &[], false),
                ],
                vec!["d"],
            ),
            (
                "blocking dependent deleted: waiting owner examined",
                vec![
                    Apply("o", &[], &["foregroundDeletion"], true),
                    Apply("d", &[("o", true)], &[], false),
                    Delete("d"),
                ],
                vec!["o"],
            ),
            (
                "blocking reference dropped: waiting owner examined",
                vec![
                    Apply("o", &[], &["foregroundDeletion"], true),
                    Apply("p", &[], &[], false),
                    Apply("d", &[("o", true), ("p", false)], &[], false),
                    Apply("d", &[("p", false)], &[], false),
                ],
                vec!["o"],
            ),
            (
                "block flag cleared: waiting owner examined",
                vec![
                    Apply("o", &[], &["foregroundDeletion"], true),
                    Apply("d", &[("o", true)], &[], false),
                    Apply("d", &[("o", false)], &[], false),
                ],
                vec!["d", "o"],
            ),
            (
                "owner deleted in background by its other finalizer: not waiting",
                vec![
                    Apply("o", &[], &[], false),
                    Apply("d", &[("o", true)], &[], false),
                    Delete("d"),
                ],
                vec![],
            ),
        ];
        for (name, evs, want) in cases {
            let r = resource("configmaps");
            let mut g = Graph::new();
            let got = run(&mut g, &r, &evs);
            assert_eq!(
                got,
                want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{name}"
            );
        }
    }

    #[test]
    fn reverse_index_follows_reference_changes() {
        use Ev::*;
        let r = resource("configmaps");
        let mut g = Graph::new();
        run(
            &mut g,
            &r,
            &[
                Apply("o", &[], &[], false),
                Apply("p", &[], &[], false),
                Apply("d", &[("o", true)], &[], false),
            ],
        );
        assert_eq!(g.dependents("o").len(), 1);
        assert!(g.dependents("o")[0].blocks("o"));
        run(&mut g, &r, &[Apply("d", &[("p", false)], &[], false)]);
        assert!(g.dependents("o").is_empty());
        assert_eq!(
            g.dependents("p")
                .iter()
                .map(|n| n.uid.as_str())
                .collect::<Vec<_>>(),
            ["d"]
        );
        run(&mut g, &r, &[Delete("d")]);
        assert!(g.dependents("p").is_empty());
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn relist_replaces_resource_contents() {
        let r = resource("configmaps");
        let mut g = Graph::new();
        let t0 = Instant::now();
        g.add_resource(&r.key(), t0);
        assert!(!g.all_synced());
        assert_eq!(g.unsynced(), [(r.key(), Some(t0))]);
        g.apply_event(&r, &Event::Init);
        g.apply_event(&r, &Event::InitApply(meta("o", &[], &[], false)));
        g.apply_event(
            &r,
            &Event::InitApply(meta("d", &[("o", false)], &[], false)),
        );
        assert!(g.is_empty(), "buffered until InitDone");
        let out = g.apply_event(&r, &Event::InitDone);
        assert!(out.is_empty(), "{out:?}");
        assert!(g.all_synced());
        assert!(g.unsynced().is_empty());
        assert_eq!(g.len(), 2);
        // relist without the owner: it is gone, its dependent must be examined
        g.apply_event(&r, &Event::Init);
        g.apply_event(
            &r,
            &Event::InitApply(meta("d", &[("o", false)], &[], false)),
        );
        let out = g.apply_event(&r, &Event::InitDone);
        assert_eq!(out, ["d"]);
        assert!(g.node("o").is_none());
    }

    #[test]
    fn removing_a_resource_drops_its_nodes() {
        let owners = resource("widgets");
        let deps = resource("configmaps");
        let mut g = Graph::new();
        g.add_resource(&owners.key(), Instant::now());
        g.add_resource(&deps.key(), Instant::now());
        g.apply_event(&owners, &Event::Apply(meta("w", &[], &[], false)));
        g.apply_event(&deps, &Event::Apply(meta("d", &[("w", false)], &[], false)));
        assert_eq!(g.remove_resource(&owners.key()), ["d"]);
        assert!(g.node("w").is_none());
        assert!(g.node("d").is_some());
        // the object is only removed by the resource it was seen through
        let other = resource("others");
        assert!(
            g.apply_event(&other, &Event::Delete(meta("d", &[], &[], false)))
                .is_empty()
        );
        assert!(g.node("d").is_some());
    }
}
