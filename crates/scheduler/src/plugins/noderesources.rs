//! NodeResourcesFit and NodeResourcesBalancedAllocation.
//!
//! Fit filters nodes whose free allocatable resources (CPU, memory,
//! ephemeral-storage, pod slots and every extended resource the pod asks for) cannot
//! hold the pod, and scores the rest with the `LeastAllocated` strategy (CPU and
//! memory, weight 1 each): the emptier the node after placing the pod, the higher.
//! BalancedAllocation prefers nodes whose CPU and memory would end up equally used.

use std::borrow::Cow;

use crate::cache::NodeInfo;
use crate::framework::{Ctx, CycleState, Events, MAX_NODE_SCORE, Plugin, PluginId, Status};
use crate::model::{NodeView, PodInfo};

/// Upstream's reason for a full node.
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";

/// Why a pod does not fit a node, resource by resource, in upstream's order.
/// Returns `(reasons, unresolvable)`: unresolvable when some request exceeds the
/// node's whole allocatable, so no preemption can help.
pub fn insufficient(
    pod: &PodInfo,
    node: &NodeInfo,
    view: &NodeView,
) -> (Vec<Cow<'static, str>>, bool) {
    let mut reasons = Vec::new();
    let mut unresolvable = false;
    let alloc = &view.allocatable;
    let used = &node.requested;
    if node.pods.len() as i64 + 1 > alloc.allowed_pods {
        reasons.push(Cow::Borrowed(REASON_TOO_MANY_PODS));
    }
    let req = &pod.requests.requests;
    if req.is_zero() {
        return (reasons, unresolvable);
    }
    let mut check = |want: i64, have: i64, in_use: i64, reason: Cow<'static, str>| {
        if want > 0 && want > have - in_use {
            reasons.push(reason);
            unresolvable |= want > have;
        }
    };
    check(
        req.milli_cpu,
        alloc.milli_cpu,
        used.milli_cpu,
        "Insufficient cpu".into(),
    );
    check(
        req.memory,
        alloc.memory,
        used.memory,
        "Insufficient memory".into(),
    );
    check(
        req.ephemeral_storage,
        alloc.ephemeral_storage,
        used.ephemeral_storage,
        "Insufficient ephemeral-storage".into(),
    );
    for (name, want) in &req.scalar {
        check(
            *want,
            alloc.scalar(name),
            used.scalar(name),
            Cow::Owned(format!("Insufficient {name}")),
        );
    }
    (reasons, unresolvable)
}

/// The NodeResourcesFit filter and LeastAllocated scorer.
pub struct Fit;

impl Plugin for Fit {
    fn id(&self) -> PluginId {
        PluginId::NodeResourcesFit
    }

    fn events(&self) -> Events {
        Events::NODE_ADD
            .union(Events::NODE_ALLOCATABLE)
            .union(Events::POD_DELETE)
            .union(Events::POD_SCALE_DOWN)
    }

    fn filter(&self, ctx: &Ctx, _: &CycleState, node: &NodeInfo, view: &NodeView) -> Status {
        let (reasons, unresolvable) = insufficient(ctx.pod, node, view);
        if reasons.is_empty() {
            return Status::success();
        }
        let mut s = Status::unschedulable("");
        s.reasons = reasons;
        if unresolvable {
            s.code = crate::framework::Code::UnschedulableAndUnresolvable;
        }
        s
    }

    fn score(&self, ctx: &Ctx, _: &CycleState, node: &NodeInfo, view: &NodeView) -> i64 {
        let pod = &ctx.pod.requests;
        let alloc = &view.allocatable;
        let pairs = [
            (node.non_zero_cpu + pod.non_zero_cpu, alloc.milli_cpu),
            (node.non_zero_memory + pod.non_zero_memory, alloc.memory),
        ];
        let (mut total, mut weights) = (0, 0);
        for (requested, capacity) in pairs {
            if capacity == 0 {
                continue;
            }
            total += least_requested_score(requested, capacity);
            weights += 1;
        }
        if weights == 0 { 0 } else { total / weights }
    }
}

/// `(capacity - requested) * 100 / capacity`, 0 when over capacity.
pub fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// Upstream's balanced-allocation score: 100 × (1 − standard deviation of the
/// requested/allocatable fractions).
pub fn balanced_score(pairs: &[(i64, i64)]) -> i64 {
    let fractions: Vec<f64> = pairs
        .iter()
        .filter(|(_, alloc)| *alloc != 0)
        .map(|&(req, alloc)| (req as f64 / alloc as f64).min(1.0))
        .collect();
    let std = match fractions.len() {
        0 | 1 => 0.0,
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            (fractions
                .iter()
                .map(|f| (f - mean) * (f - mean))
                .sum::<f64>()
                / n as f64)
                .sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// The NodeResourcesBalancedAllocation scorer.
pub struct BalancedAllocation;

impl Plugin for BalancedAllocation {
    fn id(&self) -> PluginId {
        PluginId::NodeResourcesBalancedAllocation
    }

    fn events(&self) -> Events {
        Events::NONE
    }

    fn pre_score(&self, ctx: &Ctx, _: &mut CycleState, _: &[&NodeInfo]) -> bool {
        // Best-effort pods are not scored, so they do not all pile onto one node.
        let r = &ctx.pod.requests.requests;
        r.milli_cpu != 0 || r.memory != 0
    }

    fn score(&self, ctx: &Ctx, _: &CycleState, node: &NodeInfo, view: &NodeView) -> i64 {
        let pod = &ctx.pod.requests.requests;
        let alloc = &view.allocatable;
        balanced_score(&[
            (node.requested.milli_cpu + pod.milli_cpu, alloc.milli_cpu),
            (node.requested.memory + pod.memory, alloc.memory),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{Code, Profile};
    use crate::testutil::{World, node, pod};

    #[test]
    fn fit_table() {
        // (node allocatable cpu, memory, pods, existing pod cpu, pod request cpu, memory,
        //  gpu on node, gpu asked, want reasons, want code)
        type Case = (
            &'static str,
            &'static str,
            &'static str,
            &'static str,
            &'static str,
            &'static str,
            i64,
            i64,
            Vec<&'static str>,
            Code,
        );
        let cases: Vec<Case> = vec![
            (
                "2",
                "4Gi",
                "110",
                "1",
                "500m",
                "1Gi",
                0,
                0,
                vec![],
                Code::Success,
            ),
            (
                "2",
                "4Gi",
                "110",
                "1500m",
                "1",
                "1Gi",
                0,
                0,
                vec!["Insufficient cpu"],
                Code::Unschedulable,
            ),
            (
                "2",
                "4Gi",
                "110",
                "1",
                "3",
                "5Gi",
                0,
                0,
                vec!["Insufficient cpu", "Insufficient memory"],
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "2",
                "4Gi",
                "1",
                "1",
                "100m",
                "1Mi",
                0,
                0,
                vec!["Too many pods"],
                Code::Unschedulable,
            ),
            (
                "2",
                "4Gi",
                "110",
                "0",
                "100m",
                "1Mi",
                1,
                2,
                vec!["Insufficient example.com/gpu"],
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "2",
                "4Gi",
                "110",
                "0",
                "100m",
                "1Mi",
                2,
                2,
                vec![],
                Code::Success,
            ),
            (
                "2",
                "4Gi",
                "110",
                "0",
                "100m",
                "1Mi",
                0,
                1,
                vec!["Insufficient example.com/gpu"],
                Code::UnschedulableAndUnresolvable,
            ),
            // Best effort pods only need a pod slot.
            ("0", "0", "110", "0", "0", "0", 0, 0, vec![], Code::Success),
        ];
        for (i, (cpu, mem, pods, used, want_cpu, want_mem, gpus, want_gpu, reasons, code)) in
            cases.into_iter().enumerate()
        {
            let mut w = World::new();
            w.node(
                node("n")
                    .cpu(cpu)
                    .memory(mem)
                    .pods(pods)
                    .scalar("example.com/gpu", gpus),
            );
            if used != "0" {
                w.pod(pod("existing").cpu(used).node("n"));
            }
            let mut p = pod("p").cpu(want_cpu).memory(want_mem);
            if want_gpu > 0 {
                p = p.request("example.com/gpu", &want_gpu.to_string());
            }
            let status = w.filter_one(&Profile::new("default-scheduler"), &p.build(), "n");
            assert_eq!(status.code, code, "case {i}: {status:?}");
            assert_eq!(status.reasons, reasons, "case {i}");
        }
    }

    #[test]
    fn scoring_functions() {
        for (req, cap, want) in [
            (0, 100, 100),
            (50, 100, 50),
            (100, 100, 0),
            (150, 100, 0),
            (1, 0, 0),
        ] {
            assert_eq!(least_requested_score(req, cap), want, "{req}/{cap}");
        }
        for (pairs, want) in [
            (vec![(50, 100), (50, 100)], 100),
            (vec![(100, 100), (0, 100)], 50),
            (vec![(20, 100), (60, 100)], 80),
            (vec![(200, 100), (100, 100)], 100),
            (vec![(10, 0), (50, 100)], 100),
        ] {
            assert_eq!(balanced_score(&pairs), want, "{pairs:?}");
        }
    }

    /// Without NodeResourcesFit the pod lands on a node that cannot hold it.
    #[test]
    fn resource_fit_decides_placement() {
        let mut w = World::new();
        w.node(node("small").cpu("1").memory("4Gi").label("size", "small"));
        w.node(node("big").cpu("8").memory("4Gi").label("size", "big"));
        // The pod would rather be on `small`, which has too little CPU for it.
        let p = pod("p")
            .cpu("2")
            .prefer_node_label(100, "size", "small")
            .build();
        let full = Profile::new("default-scheduler");
        for _ in 0..10 {
            assert_eq!(w.schedule(&full, &p).as_deref(), Ok("big"));
        }
        let without = Profile::new("default-scheduler").without(PluginId::NodeResourcesFit);
        assert_eq!(w.schedule(&without, &p).as_deref(), Ok("small"));
    }

    #[test]
    fn least_allocated_prefers_emptier_nodes() {
        let mut w = World::new();
        w.node(node("busy").cpu("4").memory("8Gi"));
        w.node(node("idle").cpu("4").memory("8Gi"));
        w.pod(pod("a").cpu("3").memory("6Gi").node("busy"));
        let p = pod("p").cpu("500m").memory("512Mi").build();
        for _ in 0..10 {
            assert_eq!(
                w.schedule(&Profile::new("default-scheduler"), &p)
                    .as_deref(),
                Ok("idle")
            );
        }
    }
}
