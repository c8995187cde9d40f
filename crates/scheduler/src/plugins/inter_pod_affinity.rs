//! InterPodAffinity: `podAffinity` and `podAntiAffinity`.
//!
//! Filter: a node must be in a topology domain holding pods that match every
//! required affinity term of the pod (or, for the first pod of a self-affine group,
//! no such pod may exist anywhere); it must not share a domain with pods matching
//! the pod's required anti-affinity terms; and no pod already running may have a
//! required anti-affinity term that matches the new pod in the node's domain.
//! PreFilter counts matches per topology pair once, so the per-node check is a few
//! map lookups. Score: preferred terms in both directions (and existing pods'
//! required affinity with weight 1) add or subtract their weights per domain,
//! normalised between the lowest and highest node.

use std::collections::HashMap;

use crate::cache::NodeInfo;
use crate::framework::{
    Ctx, CycleState, Events, MAX_NODE_SCORE, Plugin, PluginId, PreFilterResult, Status,
};
use crate::model::{AffinityTerm, NodeView, PodInfo};

/// Upstream's reasons.
pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Weight of existing pods' required affinity terms when scoring (upstream's
/// `hardPodAffinityWeight` default).
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Counts per topology key and value.
#[derive(Clone, Debug, Default)]
pub struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|m| m.get(value))
            .copied()
            .unwrap_or(0)
    }

    fn add(&mut self, key: &str, value: &str, delta: i64) {
        let m = self.0.entry(key.to_string()).or_default();
        let v = m.entry(value.to_string()).or_insert(0);
        *v += delta;
        if *v == 0 {
            m.remove(value);
            if m.is_empty() {
                self.0.remove(key);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `delta` for each term's domain on `view` when `matches(term)`.
    fn add_terms<'t>(
        &mut self,
        terms: impl IntoIterator<Item = &'t AffinityTerm>,
        view: &NodeView,
        delta: i64,
        mut matches: impl FnMut(&AffinityTerm) -> bool,
    ) {
        for t in terms {
            if matches(t)
                && let Some(value) = view.labels.get(&t.topology_key)
            {
                self.add(&t.topology_key, value, delta);
            }
        }
    }
}

/// PreFilter state.
#[derive(Clone, Debug, Default)]
pub struct FilterState {
    /// Domains where running pods' anti-affinity terms match the incoming pod.
    existing_anti: TopologyCounts,
    /// Domains with pods matching all of the incoming pod's affinity terms.
    affinity: TopologyCounts,
    /// Domains with pods matching the incoming pod's anti-affinity terms.
    anti: TopologyCounts,
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo, ctx: &Ctx) -> bool {
    !terms.is_empty()
        && terms
            .iter()
            .all(|t| t.matches(pod, ctx.namespace_labels(&pod.namespace)))
}

impl FilterState {
    /// Accounts `pod` (on `view`) for or against the incoming pod.
    fn update(&mut self, ctx: &Ctx, pod: &PodInfo, view: &NodeView, delta: i64) {
        let incoming = ctx.pod;
        let incoming_ns = ctx.namespace_labels(&incoming.namespace);
        self.existing_anti
            .add_terms(&pod.required_anti_affinity, view, delta, |t| {
                t.matches(incoming, incoming_ns)
            });
        if matches_all(&incoming.required_affinity, pod, ctx) {
            self.affinity
                .add_terms(&incoming.required_affinity, view, delta, |_| true);
        }
        let pod_ns = ctx.namespace_labels(&pod.namespace);
        self.anti
            .add_terms(&incoming.required_anti_affinity, view, delta, |t| {
                t.matches(pod, pod_ns)
            });
    }
}

/// PreScore state: score per topology key and value.
#[derive(Clone, Debug, Default)]
pub struct ScoreState {
    scores: TopologyCounts,
}

/// The InterPodAffinity filter and scorer.
pub struct InterPodAffinity;

impl Plugin for InterPodAffinity {
    fn id(&self) -> PluginId {
        PluginId::InterPodAffinity
    }

    fn events(&self) -> Events {
        Events::POD_ADD
            .union(Events::POD_DELETE)
            .union(Events::POD_LABEL)
            .union(Events::NODE_ADD)
            .union(Events::NODE_LABEL)
            .union(Events::NAMESPACE)
    }

    fn pre_filter(&self, ctx: &Ctx, state: &mut CycleState) -> PreFilterResult {
        let pod = ctx.pod;
        if let Some(e) = &pod.parse_error {
            return PreFilterResult::Reject(Status::unresolvable(e.clone()));
        }
        let own_terms = !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        let existing = ctx.cache.any_pod_with_required_anti_affinity();
        if !own_terms && !existing {
            return PreFilterResult::Skip;
        }
        let mut s = FilterState::default();
        let incoming_ns = ctx.namespace_labels(&pod.namespace);
        for (node, view) in ctx.all_nodes() {
            if existing && node.pods_with_required_anti_affinity > 0 {
                for p in node.pods.iter().filter(|p| p.has_required_anti_affinity()) {
                    s.existing_anti
                        .add_terms(&p.required_anti_affinity, view, 1, |t| {
                            t.matches(pod, incoming_ns)
                        });
                }
            }
            if own_terms {
                for p in &node.pods {
                    if matches_all(&pod.required_affinity, p, ctx) {
                        s.affinity
                            .add_terms(&pod.required_affinity, view, 1, |_| true);
                    }
                    let ns = ctx.namespace_labels(&p.namespace);
                    s.anti
                        .add_terms(&pod.required_anti_affinity, view, 1, |t| t.matches(p, ns));
                }
            }
        }
        state.affinity_filter = Some(s);
        PreFilterResult::Proceed
    }

    fn filter(&self, ctx: &Ctx, state: &CycleState, _: &NodeInfo, view: &NodeView) -> Status {
        let Some(s) = &state.affinity_filter else {
            return Status::success();
        };
        let pod = ctx.pod;
        // Required affinity.
        let mut pods_exist = true;
        for t in &pod.required_affinity {
            let Some(value) = view.labels.get(&t.topology_key) else {
                return Status::unresolvable(REASON_AFFINITY);
            };
            if s.affinity.get(&t.topology_key, value) <= 0 {
                pods_exist = false;
            }
        }
        if !(pods_exist || s.affinity.is_empty() && matches_all(&pod.required_affinity, pod, ctx)) {
            return Status::unresolvable(REASON_AFFINITY);
        }
        // Required anti-affinity.
        for t in &pod.required_anti_affinity {
            if let Some(value) = view.labels.get(&t.topology_key)
                && s.anti.get(&t.topology_key, value) > 0
            {
                return Status::unschedulable(REASON_ANTI_AFFINITY);
            }
        }
        // Running pods' anti-affinity.
        if !s.existing_anti.is_empty()
            && view
                .labels
                .iter()
                .any(|(k, v)| s.existing_anti.get(k, v) > 0)
        {
            return Status::unschedulable(REASON_EXISTING_ANTI_AFFINITY);
        }
        Status::success()
    }

    fn add_pod(&self, ctx: &Ctx, state: &mut CycleState, pod: &PodInfo, node: &NodeInfo) {
        if let (Some(s), Some(view)) = (state.affinity_filter.as_mut(), node.view()) {
            s.update(ctx, pod, view, 1);
        }
    }

    fn remove_pod(&self, ctx: &Ctx, state: &mut CycleState, pod: &PodInfo, node: &NodeInfo) {
        if let (Some(s), Some(view)) = (state.affinity_filter.as_mut(), node.view()) {
            s.update(ctx, pod, view, -1);
        }
    }

    fn pre_score(&self, ctx: &Ctx, state: &mut CycleState, _: &[&NodeInfo]) -> bool {
        let pod = ctx.pod;
        let own = !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        if !own && !ctx.cache.any_pod_with_affinity() {
            return false;
        }
        let incoming_ns = ctx.namespace_labels(&pod.namespace);
        let mut scores = TopologyCounts::default();
        for (node, view) in ctx.all_nodes() {
            if !own && node.pods_with_affinity == 0 {
                continue;
            }
            for existing in &node.pods {
                if !own && !existing.has_affinity() {
                    continue;
                }
                let existing_ns = ctx.namespace_labels(&existing.namespace);
                for w in &pod.preferred_affinity {
                    if w.term.matches(existing, existing_ns) {
                        add_weighted(&mut scores, &w.term, view, i64::from(w.weight));
                    }
                }
                for w in &pod.preferred_anti_affinity {
                    if w.term.matches(existing, existing_ns) {
                        add_weighted(&mut scores, &w.term, view, -i64::from(w.weight));
                    }
                }
                for t in &existing.required_affinity {
                    if t.matches(pod, incoming_ns) {
                        add_weighted(&mut scores, t, view, HARD_POD_AFFINITY_WEIGHT);
                    }
                }
                for w in &existing.preferred_affinity {
                    if w.term.matches(pod, incoming_ns) {
                        add_weighted(&mut scores, &w.term, view, i64::from(w.weight));
                    }
                }
                for w in &existing.preferred_anti_affinity {
                    if w.term.matches(pod, incoming_ns) {
                        add_weighted(&mut scores, &w.term, view, -i64::from(w.weight));
                    }
                }
            }
        }
        if scores.is_empty() {
            return false;
        }
        state.affinity_score = Some(ScoreState { scores });
        true
    }

    fn score(&self, _: &Ctx, state: &CycleState, _: &NodeInfo, view: &NodeView) -> i64 {
        let Some(s) = &state.affinity_score else {
            return 0;
        };
        s.scores
            .0
            .iter()
            .filter_map(|(key, values)| view.labels.get(key).and_then(|v| values.get(v)).copied())
            .sum()
    }

    fn normalize(&self, _: &CycleState, _: &[&NodeInfo], scores: &mut [i64]) {
        let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
            return;
        };
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
    }
}

fn add_weighted(scores: &mut TopologyCounts, term: &AffinityTerm, view: &NodeView, weight: i64) {
    if let Some(value) = view.labels.get(&term.topology_key) {
        scores.add(&term.topology_key, value, weight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{Code, Profile};
    use crate::model::LABEL_HOSTNAME;
    use crate::testutil::{World, node, pod};

    fn world() -> World {
        let mut w = World::new();
        for (n, z) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
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
        // (existing pods: (name, labels, node, anti-affinity to app=X on key), incoming
        //  pod spec, node -> code)
        struct Case {
            existing: Vec<(
                &'static str,
                &'static str,
                &'static str,
                Option<(&'static str, &'static str)>,
            )>,
            affinity: Option<(&'static str, &'static str)>,
            anti: Option<(&'static str, &'static str)>,
            labels: &'static str,
            expect: Vec<(&'static str, Code)>,
        }
        let cases = vec![
            // Anti-affinity to app=db by zone: zone a is excluded.
            Case {
                existing: vec![("db", "db", "a1", None)],
                affinity: None,
                anti: Some(("db", "zone")),
                labels: "web",
                expect: vec![
                    ("a1", Code::Unschedulable),
                    ("a2", Code::Unschedulable),
                    ("b1", Code::Success),
                ],
            },
            // Same by hostname: only a1 is excluded.
            Case {
                existing: vec![("db", "db", "a1", None)],
                affinity: None,
                anti: Some(("db", LABEL_HOSTNAME)),
                labels: "web",
                expect: vec![("a1", Code::Unschedulable), ("a2", Code::Success)],
            },
            // Affinity to app=db by zone: only zone a.
            Case {
                existing: vec![("db", "db", "a1", None)],
                affinity: Some(("db", "zone")),
                anti: None,
                labels: "web",
                expect: vec![
                    ("a2", Code::Success),
                    ("b1", Code::UnschedulableAndUnresolvable),
                ],
            },
            // Affinity to itself with no matching pod anywhere: allowed (first pod).
            Case {
                existing: vec![],
                affinity: Some(("web", "zone")),
                anti: None,
                labels: "web",
                expect: vec![("a1", Code::Success), ("b1", Code::Success)],
            },
            // Affinity to a missing app: nowhere.
            Case {
                existing: vec![],
                affinity: Some(("cache", "zone")),
                anti: None,
                labels: "web",
                expect: vec![("a1", Code::UnschedulableAndUnresolvable)],
            },
            // An existing pod's anti-affinity repels the incoming pod from its zone.
            Case {
                existing: vec![("db", "db", "b1", Some(("web", "zone")))],
                affinity: None,
                anti: None,
                labels: "web",
                expect: vec![("b1", Code::Unschedulable), ("a1", Code::Success)],
            },
        ];
        for (i, c) in cases.into_iter().enumerate() {
            let mut w = world();
            for (name, app, n, anti) in c.existing {
                let mut b = pod(name).label("app", app).node(n);
                if let Some((target, key)) = anti {
                    b = b.anti_affinity(key, &[("app", target)]);
                }
                w.pod(b);
            }
            let mut p = pod("p").label("app", c.labels);
            if let Some((target, key)) = c.affinity {
                p = p.affinity(key, &[("app", target)]);
            }
            if let Some((target, key)) = c.anti {
                p = p.anti_affinity(key, &[("app", target)]);
            }
            let p = p.build();
            for (n, code) in c.expect {
                let s = w.filter_one(&Profile::new("default-scheduler"), &p, n);
                assert_eq!(s.code, code, "case {i} node {n}: {s:?}");
            }
        }
    }

    /// Without InterPodAffinity, replicas with hostname anti-affinity pile up on the
    /// emptiest node instead of one per node.
    #[test]
    fn anti_affinity_decides_placement() {
        let mut w = World::new();
        w.node(
            node("n1")
                .cpu("8")
                .memory("16Gi")
                .label(LABEL_HOSTNAME, "n1"),
        );
        w.node(
            node("n2")
                .cpu("8")
                .memory("16Gi")
                .label(LABEL_HOSTNAME, "n2"),
        );
        // n1 already runs a replica; n2 is busier with something else.
        w.pod(
            pod("web-0")
                .label("app", "web")
                .anti_affinity(LABEL_HOSTNAME, &[("app", "web")])
                .node("n1"),
        );
        w.pod(pod("batch").cpu("6").memory("12Gi").node("n2"));
        let p = pod("web-1")
            .cpu("100m")
            .label("app", "web")
            .anti_affinity(LABEL_HOSTNAME, &[("app", "web")])
            .build();
        for _ in 0..10 {
            assert_eq!(
                w.schedule(&Profile::new("default-scheduler"), &p)
                    .as_deref(),
                Ok("n2")
            );
        }
        let without = Profile::new("default-scheduler").without(PluginId::InterPodAffinity);
        assert_eq!(w.schedule(&without, &p).as_deref(), Ok("n1"));
    }

    #[test]
    fn preferred_affinity_scores() {
        let mut w = world();
        w.pod(pod("cache").label("app", "cache").node("b1"));
        let p = pod("p")
            .label("app", "web")
            .prefer_affinity(100, "zone", &[("app", "cache")])
            .build();
        for _ in 0..10 {
            assert_eq!(
                w.schedule(&Profile::new("default-scheduler"), &p)
                    .as_deref(),
                Ok("b1")
            );
        }
    }
}
