//! One scheduling decision: PreFilter, Filter over (a sample of) the nodes, Score,
//! pick the best node — and, when nothing fits, the diagnosis that becomes the
//! `FailedScheduling` message.
//!
//! As upstream, filtering starts where the previous pod stopped (round-robin over the
//! zone-interleaved node list) and stops once enough feasible nodes are found:
//! `percentageOfNodesToScore` of the cluster, adaptive by default (50% minus 1% per
//! 125 nodes, at least 5% and at least 100 nodes). A pod nominated to a node by
//! preemption tries that node first.

use std::collections::{HashMap, HashSet};

use rand::Rng;

use crate::cache::{Cache, NodeInfo};
use crate::framework::{
    Code, Ctx, CycleState, Namespaces, NominatedPod, PluginId, PluginSet, Profile, Status,
};
use crate::model::{PodInfo, PodRef};

/// Upstream: at least this many nodes are checked for feasibility per pod.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Upstream: at least this percentage of nodes is checked per pod.
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// How many feasible nodes to look for before scoring.
pub fn num_feasible_nodes_to_find(percentage: u32, all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES_TO_FIND {
        return all;
    }
    let pct = if percentage == 0 {
        (50usize.saturating_sub(all / 125)).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    } else {
        percentage as usize
    };
    if pct >= 100 {
        return all;
    }
    (all * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Pods nominated to nodes by preemption.
#[derive(Debug, Default)]
pub struct Nominator {
    by_node: HashMap<String, Vec<NominatedPod>>,
    node_of: HashMap<String, String>,
    /// Pods this scheduler has evicted as preemption victims and not yet seen deleted:
    /// they count as terminating victims even before the informer reports their
    /// `deletionTimestamp` (a retry of the preemptor can come first).
    victims: HashSet<String>,
}

impl Nominator {
    /// Records (or moves) a nomination.
    pub fn add(&mut self, pod: PodRef, priority: i32, node: &str) {
        self.remove(&pod.uid);
        if node.is_empty() {
            return;
        }
        self.node_of.insert(pod.uid.clone(), node.to_string());
        self.by_node
            .entry(node.to_string())
            .or_default()
            .push(NominatedPod { pod, priority });
    }

    /// Drops a pod's nomination.
    pub fn remove(&mut self, uid: &str) {
        let Some(node) = self.node_of.remove(uid) else {
            return;
        };
        if let Some(list) = self.by_node.get_mut(&node) {
            list.retain(|n| n.pod.uid != uid);
            if list.is_empty() {
                self.by_node.remove(&node);
            }
        }
    }

    /// Pods nominated to a node.
    pub fn for_node(&self, node: &str) -> &[NominatedPod] {
        self.by_node
            .get(node)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The node a pod is nominated to.
    pub fn node_of(&self, uid: &str) -> Option<&str> {
        self.node_of.get(uid).map(String::as_str)
    }

    /// Records pods being evicted for a preemptor.
    pub fn mark_victims<'a>(&mut self, uids: impl IntoIterator<Item = &'a str>) {
        self.victims.extend(uids.into_iter().map(str::to_string));
    }

    /// Whether a pod is a preemption victim this scheduler is evicting.
    pub fn is_victim(&self, uid: &str) -> bool {
        self.victims.contains(uid)
    }

    /// Forgets a pod (deleted): its nomination and its victim mark.
    pub fn forget(&mut self, uid: &str) {
        self.remove(uid);
        self.victims.remove(uid);
    }
}

/// Why a pod fits no node.
#[derive(Clone, Debug, Default)]
pub struct Diagnosis {
    /// Per node slot, the first failing filter's status.
    pub statuses: Vec<(usize, Status)>,
    /// Status of the nodes absent from `statuses` (PreFilter narrowed or rejected).
    pub absent: Option<Status>,
    /// A PreFilter rejection's message.
    pub pre_filter_msg: Option<String>,
    pub unschedulable_plugins: PluginSet,
    /// The PostFilter (preemption) message.
    pub post_filter_msg: Option<String>,
}

/// A pod fits no node.
#[derive(Clone, Debug, Default)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub diagnosis: Diagnosis,
}

/// Upstream's `FitError.Error()`: `0/N nodes are available: <counted reasons>.`
pub fn fit_message<'a>(
    num_all_nodes: usize,
    pre_filter_msg: Option<&str>,
    statuses: impl Iterator<Item = &'a Status>,
    absent: Option<&Status>,
    post_filter_msg: Option<&str>,
) -> String {
    let mut msg = format!("0/{num_all_nodes} nodes are available:");
    if let Some(pre) = pre_filter_msg {
        msg.push_str(&format!(" {pre}."));
    } else {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut seen = 0;
        for s in statuses {
            seen += 1;
            for r in &s.reasons {
                *counts.entry(r.as_ref()).or_insert(0) += 1;
            }
        }
        if let Some(absent) = absent
            && seen < num_all_nodes
        {
            for r in &absent.reasons {
                *counts.entry(r.as_ref()).or_insert(0) += num_all_nodes - seen;
            }
        }
        let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        if !parts.is_empty() {
            msg.push_str(&format!(" {}.", parts.join(", ")));
        }
    }
    if let Some(post) = post_filter_msg {
        msg.push(' ');
        msg.push_str(post);
    }
    msg
}

impl FitError {
    /// The message of the `FailedScheduling` event and the PodScheduled condition.
    pub fn message(&self) -> String {
        let d = &self.diagnosis;
        fit_message(
            self.num_all_nodes,
            d.pre_filter_msg.as_deref(),
            d.statuses.iter().map(|(_, s)| s),
            d.absent.as_ref(),
            d.post_filter_msg.as_deref(),
        )
    }

    /// The status a node had (for preemption: only `Unschedulable` nodes can help).
    pub fn code_of(&self, slot: usize) -> Code {
        self.diagnosis
            .statuses
            .iter()
            .find(|(s, _)| *s == slot)
            .map(|(_, st)| st.code)
            .or(self.diagnosis.absent.as_ref().map(|s| s.code))
            .unwrap_or(Code::UnschedulableAndUnresolvable)
    }
}

/// Why scheduling a pod failed.
#[derive(Clone, Debug)]
pub enum ScheduleError {
    /// The cluster has no nodes.
    NoNodes,
    Fit(FitError),
}

impl ScheduleError {
    pub fn message(&self) -> String {
        match self {
            ScheduleError::NoNodes => "no nodes available to schedule pods".into(),
            ScheduleError::Fit(f) => f.message(),
        }
    }
}

/// A successful decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleOutcome {
    pub node: String,
    pub evaluated: usize,
    pub feasible: usize,
}

/// Everything one decision reads.
pub struct Scheduling<'a> {
    pub profile: &'a Profile,
    pub cache: &'a Cache,
    pub namespaces: &'a Namespaces,
    pub nominator: &'a Nominator,
}

impl Scheduling<'_> {
    fn ctx<'p>(&'p self, pod: &'p PodInfo) -> Ctx<'p> {
        Ctx {
            pod,
            cache: self.cache,
            namespaces: self.namespaces,
        }
    }

    fn filter_node(&self, ctx: &Ctx, state: &CycleState, node: &NodeInfo, priority: i32) -> Status {
        self.profile.run_filters_with_nominated(
            ctx,
            state,
            node,
            self.nominator.for_node(&node.name),
            priority,
        )
    }

    /// Finds the best node for `pod`. `next_start` is the round-robin position kept
    /// between pods. Returns the cycle state too (preemption reuses it). The cache's
    /// node order must be fresh.
    pub fn schedule(
        &self,
        pod: &PodInfo,
        priority: i32,
        next_start: &mut usize,
        rng: &mut impl Rng,
    ) -> (CycleState, Result<ScheduleOutcome, ScheduleError>) {
        let mut state = CycleState::default();
        let all = self.cache.order();
        if all.is_empty() {
            return (state, Err(ScheduleError::NoNodes));
        }
        let ctx = self.ctx(pod);
        let mut diagnosis = Diagnosis::default();
        let restricted = match self.profile.run_pre_filter(&ctx, &mut state) {
            Ok(r) => r,
            Err(status) => {
                if let Some(p) = status.plugin {
                    diagnosis.unschedulable_plugins.insert(p);
                }
                diagnosis.pre_filter_msg = Some(status.message());
                diagnosis.absent = Some(status);
                let err = FitError {
                    num_all_nodes: all.len(),
                    diagnosis,
                };
                return (state, Err(ScheduleError::Fit(err)));
            }
        };

        if !pod.nominated_node_name.is_empty()
            && let Some(slot) = self.cache.slot_of(&pod.nominated_node_name)
        {
            let node = self.cache.node_at(slot);
            if self.filter_node(&ctx, &state, node, priority).is_success() {
                let outcome = ScheduleOutcome {
                    node: node.name.clone(),
                    evaluated: 1,
                    feasible: 1,
                };
                return (state, Ok(outcome));
            }
        }

        let restricted_slots: Vec<usize>;
        let nodes: &[usize] = match &restricted {
            None => all,
            Some(names) => {
                restricted_slots = all
                    .iter()
                    .copied()
                    .filter(|&s| names.contains(&self.cache.node_at(s).name))
                    .collect();
                let mut absent = Status::unresolvable(format!(
                    "node(s) didn't satisfy plugin(s) [{}]",
                    PluginId::NodeAffinity.name()
                ));
                absent.plugin = Some(PluginId::NodeAffinity);
                diagnosis.absent = Some(absent);
                diagnosis
                    .unschedulable_plugins
                    .insert(PluginId::NodeAffinity);
                &restricted_slots
            }
        };

        let mut want =
            num_feasible_nodes_to_find(self.profile.percentage_of_nodes_to_score, nodes.len());
        if self.profile.scorers.is_empty() {
            want = want.min(1);
        }
        let mut feasible: Vec<usize> = Vec::with_capacity(want);
        if !nodes.is_empty() {
            let n = nodes.len();
            let start = *next_start % n;
            for i in 0..n {
                if feasible.len() >= want {
                    break;
                }
                let slot = nodes[(start + i) % n];
                let node = self.cache.node_at(slot);
                let status = self.filter_node(&ctx, &state, node, priority);
                if status.is_success() {
                    feasible.push(slot);
                } else {
                    if let Some(p) = status.plugin {
                        diagnosis.unschedulable_plugins.insert(p);
                    }
                    diagnosis.statuses.push((slot, status));
                }
            }
        }
        let processed = feasible.len() + diagnosis.statuses.len();
        *next_start = (*next_start + processed) % all.len();

        if feasible.is_empty() {
            let err = FitError {
                num_all_nodes: all.len(),
                diagnosis,
            };
            return (state, Err(ScheduleError::Fit(err)));
        }
        let evaluated = processed;
        if feasible.len() == 1 {
            let outcome = ScheduleOutcome {
                node: self.cache.node_at(feasible[0]).name.clone(),
                evaluated,
                feasible: 1,
            };
            return (state, Ok(outcome));
        }
        let infos: Vec<&NodeInfo> = feasible.iter().map(|&s| self.cache.node_at(s)).collect();
        let totals = self.profile.run_scores(&ctx, &mut state, &infos);
        let best = select_host(&totals, rng);
        let outcome = ScheduleOutcome {
            node: infos[best].name.clone(),
            evaluated,
            feasible: feasible.len(),
        };
        (state, Ok(outcome))
    }
}

/// The index of the highest total, ties broken uniformly at random (reservoir
/// sampling, as upstream).
pub fn select_host(totals: &[i64], rng: &mut impl Rng) -> usize {
    let mut best = 0;
    let mut best_score = i64::MIN;
    let mut ties = 0u32;
    for (i, &t) in totals.iter().enumerate() {
        if t > best_score {
            best_score = t;
            best = i;
            ties = 1;
        } else if t == best_score {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{World, node, pod};
    use rand::SeedableRng;

    #[test]
    fn feasible_node_counts() {
        for (pct, all, want) in [
            (0, 50, 50),
            (0, 99, 99),
            (0, 100, 100),
            (0, 1000, 420),
            (0, 5000, 500),
            (0, 6000, 300),
            (0, 20000, 1000),
            (10, 5000, 500),
            (1, 5000, 100),
            (100, 5000, 5000),
        ] {
            assert_eq!(
                num_feasible_nodes_to_find(pct, all),
                want,
                "{pct}% of {all}"
            );
        }
    }

    #[test]
    fn fit_messages() {
        let taint = Status::unresolvable(
            "node(s) had untolerated taint {node.kubernetes.io/unreachable: }",
        );
        let cpu = Status::unschedulable("Insufficient cpu");
        let mut both = Status::unschedulable("Insufficient cpu");
        both.reasons.push("Insufficient memory".into());
        let statuses = [taint.clone(), cpu.clone(), cpu.clone()];
        assert_eq!(
            fit_message(
                3,
                None,
                statuses.iter(),
                None,
                Some(
                    "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
                )
            ),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        assert_eq!(
            fit_message(2, None, [both, cpu].iter(), None, None),
            "0/2 nodes are available: 1 Insufficient memory, 2 Insufficient cpu."
        );
        let absent = Status::unresolvable("Preemption is not helpful for scheduling");
        assert_eq!(
            fit_message(5, None, [taint].iter(), Some(&absent), None),
            "0/5 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 4 Preemption is not helpful for scheduling."
        );
        assert_eq!(
            fit_message(
                4,
                Some("pod affinity terms conflict"),
                std::iter::empty(),
                None,
                None
            ),
            "0/4 nodes are available: pod affinity terms conflict."
        );
    }

    #[test]
    fn tie_break_is_random_among_the_best() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut seen = [0; 4];
        for _ in 0..400 {
            seen[select_host(&[5, 9, 9, 1], &mut rng)] += 1;
        }
        assert_eq!(seen[0] + seen[3], 0);
        assert!(seen[1] > 100 && seen[2] > 100, "{seen:?}");
    }

    #[test]
    fn sampling_rotates_through_nodes() {
        let mut w = World::new();
        for i in 0..300 {
            w.node(node(&format!("n{i:03}")).cpu("4").memory("8Gi"));
        }
        let p = pod("p").cpu("100m").build();
        let profile = Profile::new("default-scheduler");
        let s = w.scheduling(&profile);
        let mut start = 0;
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let (_, r) = s.schedule(&p, 0, &mut start, &mut rng);
        let r = r.expect("fits");
        // 300 nodes: 50 - 2 = 48% → 144 feasible nodes looked at.
        assert_eq!(r.feasible, 144);
        assert_eq!(start, 144);
        let (_, r) = s.schedule(&p, 0, &mut start, &mut rng);
        assert_eq!(r.expect("fits").evaluated, 144);
        assert_eq!(start, 288);
    }

    #[test]
    fn failure_diagnosis_counts_every_node() {
        let mut w = World::new();
        w.node(node("tainted").cpu("4").memory("8Gi").taint(
            "node.kubernetes.io/unreachable",
            "",
            "NoExecute",
        ));
        w.node(node("small1").cpu("1").memory("8Gi"));
        w.node(node("small2").cpu("1").memory("8Gi"));
        w.pod(pod("x").cpu("500m").node("small1"));
        w.pod(pod("y").cpu("500m").node("small2"));
        // The pod tolerates nothing (no default tolerations in this unit test).
        let p = pod("p").cpu("2").build();
        let err = w
            .schedule(&Profile::new("default-scheduler"), &p)
            .expect_err("no fit");
        assert_eq!(
            err,
            "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 2 Insufficient cpu."
        );
    }

    #[test]
    fn nominated_pods_hold_their_place() {
        let mut w = World::new();
        w.node(node("n1").cpu("2").memory("8Gi"));
        let holder = pod("holder").cpu("1500m").priority(100).build();
        w.nominator.add(holder, 100, "n1");
        // A lower-priority pod must leave room for the nominated one.
        let low = pod("low").cpu("1").priority(10).build();
        assert!(
            w.schedule(&Profile::new("default-scheduler"), &low)
                .is_err()
        );
        // A higher-priority pod does not.
        let high = pod("high").cpu("1").priority(1000).build();
        assert_eq!(
            w.schedule(&Profile::new("default-scheduler"), &high)
                .as_deref(),
            Ok("n1")
        );
    }
}
