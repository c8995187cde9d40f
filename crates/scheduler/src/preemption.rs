//! DefaultPreemption, the PostFilter plugin: when a pod fits nowhere, find a node
//! where evicting lower-priority pods makes it fit, evicting as few and as
//! unimportant pods as possible.
//!
//! As upstream: only nodes that failed with `Unschedulable` (not
//! `UnschedulableAndUnresolvable`) are tried, from a random offset, until enough
//! candidates are found (10% of them, at least 100). On each, all lower-priority
//! pods are removed; if the pod then fits, victims are reprieved one by one from the
//! most important down (first those whose eviction would violate a
//! PodDisruptionBudget). The best candidate has the fewest PDB violations, then the
//! lowest highest victim priority, the smallest priority sum, the fewest victims,
//! and the most recently started victims. The caller evicts the victims, nominates
//! the pod to the node and clears lower-priority nominations there.

use std::collections::HashSet;

use rand::Rng;

use crate::algorithm::{FitError, Scheduling, fit_message};
use crate::cache::NodeInfo;
use crate::framework::{Code, Ctx, CycleState, Status};
use crate::model::{PodInfo, PodRef};

/// Upstream: the share of potential nodes to dry-run (10%)...
pub const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
/// ... but at least this many.
pub const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

/// Upstream's reasons.
pub const REASON_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const REASON_NO_VICTIMS: &str = "No preemption victims found for incoming pod";
pub const MSG_NEVER: &str = "not eligible due to preemptionPolicy=Never.";
pub const MSG_TERMINATING: &str = "not eligible due to a terminating pod on the nominated node.";

/// A PodDisruptionBudget as preemption reads it.
#[derive(Clone, Debug)]
pub struct Pdb {
    pub namespace: String,
    pub selector: api::selector::Selector,
    pub disruptions_allowed: i32,
    pub disrupted_pods: HashSet<String>,
}

/// What preemption decided.
#[derive(Clone, Debug, Default)]
pub struct PreemptionOutcome {
    /// `Some(node)` nominates the pod there; `Some("")` clears its nomination;
    /// `None` leaves it unchanged.
    pub nominated_node: Option<String>,
    pub victims: Vec<PodRef>,
    /// Lower-priority pods nominated to the chosen node: their nomination is cleared.
    pub clear_nominations: Vec<PodRef>,
    /// The PostFilter message for the failure event (`None` on success).
    pub message: Option<String>,
}

/// `pod1` is more important than `pod2`: higher priority, then started earlier.
fn more_important(a: &PodInfo, pa: i32, b: &PodInfo, pb: i32) -> bool {
    if pa != pb {
        return pa > pb;
    }
    match (a.start_time, b.start_time) {
        (Some(x), Some(y)) => x < y,
        (Some(_), None) => true,
        _ => false,
    }
}

struct Candidate {
    node: String,
    /// Victims, most important first.
    victims: Vec<(PodRef, i32)>,
    pdb_violations: usize,
}

/// Runs DefaultPreemption for `pod` after `fit` found no node. `never` is the
/// pod's effective `preemptionPolicy: Never`.
#[allow(clippy::too_many_arguments)]
pub fn preempt(
    s: &Scheduling,
    pod: &PodInfo,
    priority: i32,
    never: bool,
    state: &CycleState,
    fit: &FitError,
    pdbs: &[Pdb],
    priority_of: &dyn Fn(&PodInfo) -> i32,
    rng: &mut impl Rng,
) -> PreemptionOutcome {
    let msg = |m: &str| PreemptionOutcome {
        message: Some(format!("preemption: {m}")),
        ..Default::default()
    };
    if !s.profile.preemption {
        // No PostFilter plugin in the profile: nothing to say or do.
        return PreemptionOutcome::default();
    }
    if never {
        return msg(MSG_NEVER);
    }
    let ctx = Ctx {
        pod,
        cache: s.cache,
        namespaces: s.namespaces,
    };
    // The nomination this scheduler holds in memory wins over the pod object's, which
    // may not yet show the status patch that recorded it.
    let nominated = s
        .nominator
        .node_of(&pod.uid)
        .unwrap_or(&pod.nominated_node_name);
    if !nominated.is_empty()
        && let Some(slot) = s.cache.slot_of(nominated)
        && fit.code_of(slot) != Code::UnschedulableAndUnresolvable
    {
        let node = s.cache.node_at(slot);
        let terminating_victim = node.pods.iter().any(|p| {
            priority_of(p) < priority
                && ((p.terminating && p.preempted_by_scheduler) || s.nominator.is_victim(&p.uid))
        });
        if terminating_victim {
            return msg(MSG_TERMINATING);
        }
    }

    let all = s.cache.order();
    let potential: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&slot| fit.code_of(slot) == Code::Unschedulable)
        .collect();
    let not_helpful = Status::unresolvable(REASON_NOT_HELPFUL);
    if potential.is_empty() {
        let m = fit_message(
            all.len(),
            None,
            std::iter::empty(),
            Some(&not_helpful),
            None,
        );
        return PreemptionOutcome {
            nominated_node: Some(String::new()),
            message: Some(format!("preemption: {m}")),
            ..Default::default()
        };
    }

    let n = potential.len();
    let offset = rng.random_range(0..n);
    let wanted = (n * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
        .max(MIN_CANDIDATE_NODES_ABSOLUTE)
        .min(n);
    let mut non_violating = Vec::new();
    let mut violating = Vec::new();
    let mut statuses = Vec::new();
    for i in 0..n {
        let node = s.cache.node_at(potential[(offset + i) % n]);
        match select_victims(s, &ctx, state, node, priority, pdbs, priority_of) {
            Ok(c) if c.pdb_violations == 0 => non_violating.push(c),
            Ok(c) => violating.push(c),
            Err(st) => statuses.push(st),
        }
        if !non_violating.is_empty() && non_violating.len() + violating.len() >= wanted {
            break;
        }
    }
    let mut candidates = non_violating;
    candidates.extend(violating);
    if candidates.is_empty() {
        let m = fit_message(all.len(), None, statuses.iter(), Some(&not_helpful), None);
        return PreemptionOutcome {
            nominated_node: Some(String::new()),
            message: Some(format!("preemption: {m}")),
            ..Default::default()
        };
    }
    let best = pick_candidate(candidates);
    let clear_nominations = s
        .nominator
        .for_node(&best.node)
        .iter()
        .filter(|n| n.priority < priority && n.pod.uid != pod.uid)
        .map(|n| n.pod.clone())
        .collect();
    PreemptionOutcome {
        nominated_node: Some(best.node),
        victims: best.victims.into_iter().map(|(p, _)| p).collect(),
        clear_nominations,
        message: None,
    }
}

/// Upstream's `SelectVictimsOnNode`.
fn select_victims(
    s: &Scheduling,
    ctx: &Ctx,
    state: &CycleState,
    node: &NodeInfo,
    priority: i32,
    pdbs: &[Pdb],
    priority_of: &dyn Fn(&PodInfo) -> i32,
) -> Result<Candidate, Status> {
    let mut info = node.clone();
    let mut st = state.clone();
    let mut potential: Vec<(PodRef, i32)> = info
        .pods
        .iter()
        .map(|p| (p.clone(), priority_of(p)))
        .filter(|(_, prio)| *prio < priority)
        .collect();
    if potential.is_empty() {
        return Err(Status::unresolvable(REASON_NO_VICTIMS));
    }
    for (p, _) in &potential {
        info.remove_pod(&p.uid);
        s.profile.remove_pod(ctx, &mut st, p, &info);
    }
    let nominated = s.nominator.for_node(&node.name);
    let fits = |st: &CycleState, info: &NodeInfo| {
        s.profile
            .run_filters_with_nominated(ctx, st, info, nominated, priority)
    };
    let status = fits(&st, &info);
    if !status.is_success() {
        return Err(status);
    }
    potential.sort_by(|(a, pa), (b, pb)| {
        if more_important(a, *pa, b, *pb) {
            std::cmp::Ordering::Less
        } else if more_important(b, *pb, a, *pa) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    let (violating, non_violating) = split_by_pdb(potential, pdbs);
    let had_both = !violating.is_empty() && !non_violating.is_empty();
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (group, counts) in [(violating, true), (non_violating, false)] {
        for (p, prio) in group {
            info.add_pod(p.clone());
            s.profile.add_pod(ctx, &mut st, &p, &info);
            if !fits(&st, &info).is_success() {
                info.remove_pod(&p.uid);
                s.profile.remove_pod(ctx, &mut st, &p, &info);
                victims.push((p, prio));
                if counts {
                    pdb_violations += 1;
                }
            }
        }
    }
    if had_both {
        victims.sort_by(|(a, pa), (b, pb)| {
            if more_important(a, *pa, b, *pb) {
                std::cmp::Ordering::Less
            } else if more_important(b, *pb, a, *pa) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
    }
    if victims.is_empty() {
        return Err(Status::new(
            Code::Error,
            format!("expected at least one victim pod on node {:?}", node.name),
        ));
    }
    Ok(Candidate {
        node: node.name.clone(),
        victims,
        pdb_violations,
    })
}

type Victims = Vec<(PodRef, i32)>;

/// Splits pods (in order) into those whose eviction would violate a PDB and the rest.
fn split_by_pdb(pods: Victims, pdbs: &[Pdb]) -> (Victims, Victims) {
    let mut allowed: Vec<i32> = pdbs.iter().map(|p| p.disruptions_allowed).collect();
    let mut violating = Vec::new();
    let mut fine = Vec::new();
    for (p, prio) in pods {
        let mut violated = false;
        if !p.labels().is_empty() {
            for (i, pdb) in pdbs.iter().enumerate() {
                if pdb.namespace != p.namespace
                    || pdb.selector.is_empty()
                    || !pdb.selector.matches(p.labels())
                    || pdb.disrupted_pods.contains(&p.name)
                {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violated = true;
                }
            }
        }
        if violated {
            violating.push((p, prio));
        } else {
            fine.push((p, prio));
        }
    }
    (violating, fine)
}

/// Upstream's `pickOneNodeForPreemption`.
fn pick_candidate(mut candidates: Vec<Candidate>) -> Candidate {
    let now = k8s_openapi::jiff::Timestamp::now();
    let criteria: [&dyn Fn(&Candidate) -> i128; 5] = [
        &|c| -(c.pdb_violations as i128),
        &|c| -i128::from(c.victims.first().map(|(_, p)| *p).unwrap_or(i32::MIN)),
        &|c| {
            -c.victims
                .iter()
                .map(|(_, p)| i128::from(*p) + i128::from(i32::MAX) + 1)
                .sum::<i128>()
        },
        &|c| -(c.victims.len() as i128),
        &|c| {
            // The earliest start among the highest-priority victims; later wins.
            let top = c.victims.first().map(|(_, p)| *p).unwrap_or(i32::MIN);
            c.victims
                .iter()
                .filter(|(_, p)| *p == top)
                .map(|(v, _)| v.start_time.unwrap_or(now).as_nanosecond())
                .min()
                .unwrap_or(i128::MIN)
        },
    ];
    for f in criteria {
        if candidates.len() == 1 {
            break;
        }
        let best = candidates.iter().map(f).max().unwrap_or(0);
        candidates.retain(|c| f(c) == best);
    }
    candidates.swap_remove(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::ScheduleError;
    use crate::framework::{PluginId, Profile};
    use crate::testutil::{World, node, pod};

    fn run(w: &World, profile: &Profile, p: &PodInfo, pdbs: &[Pdb]) -> PreemptionOutcome {
        let prio = p.spec_priority.unwrap_or(0);
        let s = w.scheduling(profile);
        let mut start = 0;
        let mut rng = rand::rng();
        let (state, r) = s.schedule(p, prio, &mut start, &mut rng);
        let Err(ScheduleError::Fit(fit)) = r else {
            panic!("expected the pod not to fit: {r:?}");
        };
        let never = p.preemption_policy.as_deref() == Some("Never");
        preempt(
            &s,
            p,
            prio,
            never,
            &state,
            &fit,
            pdbs,
            &|q: &PodInfo| q.spec_priority.unwrap_or(0),
            &mut rng,
        )
    }

    fn names(v: &[PodRef]) -> Vec<&str> {
        let mut n: Vec<&str> = v.iter().map(|p| p.name.as_str()).collect();
        n.sort();
        n
    }

    #[test]
    fn picks_the_node_with_the_least_important_victims() {
        let mut w = World::new();
        w.node(node("n1").cpu("2").memory("4Gi"));
        w.node(node("n2").cpu("2").memory("4Gi"));
        w.pod(pod("mid").cpu("2").priority(50).node("n1"));
        w.pod(pod("low").cpu("2").priority(10).node("n2"));
        let p = pod("p").cpu("1").priority(100).build();
        let out = run(&w, &Profile::new("default-scheduler"), &p, &[]);
        assert_eq!(out.nominated_node.as_deref(), Some("n2"));
        assert_eq!(names(&out.victims), vec!["low"]);
        assert_eq!(out.message, None);
    }

    /// Without DefaultPreemption in the profile nothing is evicted or nominated.
    #[test]
    fn preemption_depends_on_the_plugin() {
        let mut w = World::new();
        w.node(node("n1").cpu("2").memory("4Gi"));
        w.pod(pod("low").cpu("2").priority(10).node("n1"));
        let p = pod("p").cpu("1").priority(100).build();
        let full = run(&w, &Profile::new("default-scheduler"), &p, &[]);
        assert_eq!(full.nominated_node.as_deref(), Some("n1"));
        assert_eq!(names(&full.victims), vec!["low"]);
        let without = Profile::new("default-scheduler").without(PluginId::DefaultPreemption);
        let out = run(&w, &without, &p, &[]);
        assert_eq!(out.nominated_node, None);
        assert!(out.victims.is_empty());
        assert_eq!(out.message, None);
    }

    #[test]
    fn evicts_as_few_pods_as_needed() {
        let mut w = World::new();
        w.node(node("n1").cpu("3").memory("4Gi"));
        w.pod(pod("a").cpu("1").priority(1).started(100).node("n1"));
        w.pod(pod("b").cpu("1").priority(2).started(100).node("n1"));
        w.pod(pod("c").cpu("1").priority(3).started(100).node("n1"));
        let p = pod("p").cpu("2").priority(100).build();
        let out = run(&w, &Profile::new("default-scheduler"), &p, &[]);
        assert_eq!(out.nominated_node.as_deref(), Some("n1"));
        // The two least important go; `c` is reprieved.
        assert_eq!(names(&out.victims), vec!["a", "b"]);
    }

    #[test]
    fn respects_pod_disruption_budgets_when_it_can() {
        let mut w = World::new();
        w.node(node("n1").cpu("1").memory("4Gi"));
        w.node(node("n2").cpu("1").memory("4Gi"));
        w.pod(
            pod("guarded")
                .cpu("1")
                .priority(1)
                .label("app", "db")
                .node("n1"),
        );
        w.pod(
            pod("free")
                .cpu("1")
                .priority(5)
                .label("app", "web")
                .node("n2"),
        );
        let pdb = Pdb {
            namespace: "default".into(),
            selector: api::selector::Selector::parse("app=db").expect("selector"),
            disruptions_allowed: 0,
            disrupted_pods: HashSet::new(),
        };
        let p = pod("p").cpu("1").priority(100).build();
        for _ in 0..5 {
            let out = run(
                &w,
                &Profile::new("default-scheduler"),
                &p,
                std::slice::from_ref(&pdb),
            );
            assert_eq!(out.nominated_node.as_deref(), Some("n2"));
        }
    }

    #[test]
    fn messages_when_preemption_cannot_help() {
        let mut w = World::new();
        w.node(node("n1").cpu("1").memory("4Gi"));
        w.node(
            node("n2")
                .cpu("1")
                .memory("4Gi")
                .taint("dedicated", "x", "NoSchedule"),
        );
        w.pod(pod("same").cpu("1").priority(100).node("n1"));
        let p = pod("p").cpu("1").priority(100).build();
        let out = run(&w, &Profile::new("default-scheduler"), &p, &[]);
        assert_eq!(out.nominated_node.as_deref(), Some(""));
        assert_eq!(
            out.message.as_deref(),
            Some(
                "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
            )
        );

        let never = pod("never").cpu("1").priority(1000).never_preempt().build();
        let out = run(&w, &Profile::new("default-scheduler"), &never, &[]);
        assert_eq!(
            out.message.as_deref(),
            Some("preemption: not eligible due to preemptionPolicy=Never.")
        );
        assert!(out.victims.is_empty());

        let mut w = World::new();
        w.node(node("n1").cpu("1").memory("4Gi").label("zone", "a"));
        let big = pod("big").cpu("2").priority(1000).build();
        let out = run(&w, &Profile::new("default-scheduler"), &big, &[]);
        assert_eq!(
            out.message.as_deref(),
            Some(
                "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
            )
        );
    }

    #[test]
    fn terminating_victims_on_the_nominated_node_block_another_round() {
        let mut w = World::new();
        w.node(node("n1").cpu("1").memory("4Gi"));
        let mut victim = pod("victim")
            .cpu("1")
            .priority(1)
            .node("n1")
            .terminating()
            .pod();
        victim
            .status
            .get_or_insert_with(Default::default)
            .conditions = Some(vec![k8s_openapi::api::core::v1::PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("PreemptionByScheduler".into()),
            ..Default::default()
        }]);
        w.cache.set_pod(std::sync::Arc::new(PodInfo::new(victim)));
        let p = pod("p").cpu("1").priority(100).nominated("n1").build();
        let out = run(&w, &Profile::new("default-scheduler"), &p, &[]);
        assert_eq!(
            out.message.as_deref(),
            Some("preemption: not eligible due to a terminating pod on the nominated node.")
        );
    }
    /// A retry that comes before the informer shows the victim terminating, or the
    /// preemptor's `nominatedNodeName`, is still held back by the in-memory records.
    #[test]
    fn victims_being_evicted_block_another_round_before_the_informer_catches_up() {
        let mut w = World::new();
        w.node(node("n1").cpu("1").memory("4Gi"));
        w.node(node("n2").cpu("1").memory("4Gi"));
        let v1 = w.pod(pod("v1").cpu("1").priority(1).node("n1"));
        w.pod(pod("v2").cpu("1").priority(1).node("n2"));
        let p = pod("p").cpu("1").priority(100).build();
        w.nominator.add(p.clone(), 100, "n1");
        w.nominator.mark_victims([v1.uid.as_str()]);
        let out = run(&w, &Profile::new("default-scheduler"), &p, &[]);
        assert_eq!(
            out.message.as_deref(),
            Some("preemption: not eligible due to a terminating pod on the nominated node.")
        );
        assert!(out.victims.is_empty());
        // Once the victim is gone, its mark goes with it: preemption may run again.
        w.nominator.forget(&v1.uid);
        let out = run(&w, &Profile::new("default-scheduler"), &p, &[]);
        assert_eq!(out.victims.len(), 1, "{:?}", out.message);
    }
}
