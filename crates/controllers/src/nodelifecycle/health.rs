//! Pure decisions of the node lifecycle controller: when a node's health signals
//! (Ready heartbeat, Lease renewal) were last seen to change, which conditions a silent
//! node gets, zone disruption states, which taints a node's conditions call for, and the
//! token-bucket rate limit of NoExecute tainting.
//!
//! Like upstream, "last seen to change" is this controller's own clock at the moment it
//! observed a new heartbeat or renewTime, never the timestamps written by the kubelet,
//! so clock skew between machines does not matter.

use std::collections::{HashSet, VecDeque};

use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::taints::{
    self, DISK_PRESSURE, MEMORY_PRESSURE, NETWORK_UNAVAILABLE, NO_SCHEDULE, NOT_READY,
    PID_PRESSURE, UNREACHABLE, UNSCHEDULABLE,
};

pub const READY: &str = "Ready";
pub const TRUE: &str = "True";
pub const FALSE: &str = "False";
pub const UNKNOWN: &str = "Unknown";

/// Conditions set to Unknown when a node goes silent (NetworkUnavailable is left alone,
/// it belongs to the network plugin).
pub const SILENT_CONDITIONS: [&str; 4] = [READY, "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Label that keeps a node out of zone disruption accounting.
pub const EXCLUDE_DISRUPTION_LABEL: &str = "node.kubernetes.io/exclude-disruption";

/// What the controller last saw of a node's health signals.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeHealth {
    /// When (controller clock) a heartbeat or lease renewal was last seen to change.
    pub probe: Timestamp,
    /// When (controller clock) the Ready condition was last seen to transition.
    pub ready_transition: Timestamp,
    /// The Ready condition as last seen.
    pub ready: Option<NodeCondition>,
    /// The Lease `renewTime` as last seen.
    pub lease_renew: Option<Timestamp>,
}

/// The `type` condition of `conditions`.
pub fn condition<'a>(conditions: &'a [NodeCondition], type_: &str) -> Option<&'a NodeCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The node's conditions (empty when unset).
pub fn node_conditions(node: &Node) -> &[NodeCondition] {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
}

fn heartbeat(c: &NodeCondition) -> Option<Timestamp> {
    c.last_heartbeat_time.as_ref().map(|t| t.0)
}

fn transition(c: &NodeCondition) -> Option<Timestamp> {
    c.last_transition_time.as_ref().map(|t| t.0)
}

/// Fold one observation of a node into its health record (upstream
/// `tryUpdateNodeHealth`'s bookkeeping): `ready` is the node's current Ready condition,
/// `created` its creationTimestamp, `lease_renew` its Lease's renewTime.
pub fn observe(
    saved: Option<&NodeHealth>,
    ready: Option<&NodeCondition>,
    created: Timestamp,
    lease_renew: Option<Timestamp>,
    now: Timestamp,
) -> NodeHealth {
    let fresh = |ready: Option<&NodeCondition>| NodeHealth {
        probe: now,
        ready_transition: now,
        ready: ready.cloned(),
        lease_renew: None,
    };
    let mut h = match (saved, ready) {
        // Never reported: count from the node's creation.
        (None, None) => NodeHealth {
            probe: created,
            ready_transition: created,
            ready: None,
            lease_renew: None,
        },
        (Some(s), None) if s.ready.is_none() => s.clone(),
        // The Ready condition disappeared: treat as newly observed.
        (Some(_), None) => fresh(None),
        (None, Some(r)) => fresh(Some(r)),
        (Some(s), Some(r)) => match &s.ready {
            None => fresh(Some(r)),
            Some(old) if heartbeat(old) != heartbeat(r) => NodeHealth {
                probe: now,
                ready_transition: if transition(old) != transition(r) {
                    now
                } else {
                    s.ready_transition
                },
                ready: Some(r.clone()),
                lease_renew: s.lease_renew,
            },
            Some(_) => s.clone(),
        },
    };
    if h.lease_renew.is_none()
        && let Some(s) = saved
    {
        h.lease_renew = s.lease_renew;
    }
    if let Some(renew) = lease_renew
        && h.lease_renew.is_none_or(|old| old < renew)
    {
        h.lease_renew = Some(renew);
        h.probe = now;
    }
    h
}

/// Whether nothing was heard from the node for longer than `grace`.
pub fn is_silent(h: &NodeHealth, grace: std::time::Duration, now: Timestamp) -> bool {
    let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
    match h.probe.checked_add(grace) {
        Ok(limit) => now > limit,
        Err(_) => false,
    }
}

/// The conditions of a silent node: each of [`SILENT_CONDITIONS`] becomes Unknown
/// (missing ones are added with reason NodeStatusNeverUpdated). `None` when the Ready
/// condition would not change (upstream writes only then).
pub fn silent_conditions(
    conditions: &[NodeCondition],
    created: Timestamp,
    now: Timestamp,
) -> Option<Vec<NodeCondition>> {
    let mut out = conditions.to_vec();
    for t in SILENT_CONDITIONS {
        match out.iter_mut().find(|c| c.type_ == t) {
            None => out.push(NodeCondition {
                type_: t.into(),
                status: UNKNOWN.into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_heartbeat_time: Some(Time(created)),
                last_transition_time: Some(Time(now)),
            }),
            Some(c) if c.status != UNKNOWN => {
                c.status = UNKNOWN.into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
            }
            Some(_) => {}
        }
    }
    (condition(&out, READY) != condition(conditions, READY)).then_some(out)
}

/// Zone health (upstream `ZoneState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Initial,
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// Upstream `ComputeZoneState` over the Ready statuses of a zone's nodes (`None`: no
/// Ready condition). Returns the number of not-ready nodes and the state.
pub fn zone_state(ready: &[Option<&str>], unhealthy_threshold: f32) -> (usize, ZoneState) {
    let ready_n = ready.iter().filter(|s| **s == Some(TRUE)).count();
    let not_ready = ready.len() - ready_n;
    let state = if ready_n == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && (not_ready as f32) / (ready.len() as f32) >= unhealthy_threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    };
    (not_ready, state)
}

/// Tainting rate (nodes per second) for a zone in `state` with `size` nodes.
pub fn zone_rate(
    state: ZoneState,
    size: usize,
    eviction_rate: f32,
    secondary_rate: f32,
    large_cluster_threshold: u32,
) -> f32 {
    match state {
        ZoneState::Normal | ZoneState::FullDisruption | ZoneState::Initial => eviction_rate,
        ZoneState::PartialDisruption => {
            if size > large_cluster_threshold as usize {
                secondary_rate
            } else {
                0.0
            }
        }
    }
}

/// Upstream `GetZoneKey`: `region:\0:zone` from the topology labels ("" when neither).
pub fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).cloned();
    let zone = get("topology.kubernetes.io/zone")
        .or_else(|| get("failure-domain.beta.kubernetes.io/zone"))
        .unwrap_or_default();
    let region = get("topology.kubernetes.io/region")
        .or_else(|| get("failure-domain.beta.kubernetes.io/region"))
        .unwrap_or_default();
    if zone.is_empty() && region.is_empty() {
        String::new()
    } else {
        format!("{region}:\0:{zone}")
    }
}

/// Whether the node takes part in zone disruption accounting.
pub fn counts_for_disruption(node: &Node) -> bool {
    !node
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(EXCLUDE_DISRUPTION_LABEL))
}

/// Condition-driven NoSchedule taint keys (upstream `nodeConditionToTaintKeyStatusMap`).
fn condition_taint(type_: &str, status: &str) -> Option<&'static str> {
    match (type_, status) {
        (READY, FALSE) => Some(NOT_READY),
        (READY, UNKNOWN) => Some(UNREACHABLE),
        ("MemoryPressure", TRUE) => Some(MEMORY_PRESSURE),
        ("DiskPressure", TRUE) => Some(DISK_PRESSURE),
        ("NetworkUnavailable", TRUE) => Some(NETWORK_UNAVAILABLE),
        ("PIDPressure", TRUE) => Some(PID_PRESSURE),
        _ => None,
    }
}

/// Taint keys this controller owns with the NoSchedule effect.
fn is_controller_no_schedule_key(key: &str) -> bool {
    matches!(
        key,
        NOT_READY
            | UNREACHABLE
            | MEMORY_PRESSURE
            | DISK_PRESSURE
            | NETWORK_UNAVAILABLE
            | PID_PRESSURE
            | UNSCHEDULABLE
    )
}

/// NoSchedule taints to add and remove for the node's conditions and
/// `spec.unschedulable` (upstream `doNoScheduleTaintingPass`).
pub fn no_schedule_diff(node: &Node) -> (Vec<Taint>, Vec<Taint>) {
    let mut want: Vec<Taint> = Vec::new();
    for c in node_conditions(node) {
        if let Some(k) = condition_taint(&c.type_, &c.status)
            && !taints::has_taint(&want, k, NO_SCHEDULE)
        {
            want.push(taints::taint(k, NO_SCHEDULE));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        want.push(taints::taint(UNSCHEDULABLE, NO_SCHEDULE));
    }
    let have: Vec<&Taint> = taints::node_taints(node)
        .iter()
        .filter(|t| t.effect == NO_SCHEDULE && is_controller_no_schedule_key(&t.key))
        .collect();
    let add = want
        .iter()
        .filter(|w| !have.iter().any(|h| taints::same_taint(h, w)))
        .cloned()
        .collect();
    let remove = have
        .into_iter()
        .filter(|h| !want.iter().any(|w| taints::same_taint(h, w)))
        .cloned()
        .collect();
    (add, remove)
}

/// What the Ready condition observed at the start of a pass means for the NoExecute
/// taints (upstream `processTaintBaseEviction`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoExecuteAction {
    /// Replace the opposite taint by `add` right away.
    Swap {
        add: &'static str,
        remove: &'static str,
    },
    /// Queue the node for `add` (rate-limited per zone).
    Queue { add: &'static str },
    /// Node is Ready: remove both taints, forget queued tainting.
    MarkReachable,
}

/// See [`NoExecuteAction`]. `ready_status` is the observed Ready status ("Unknown" when
/// the node never reported).
pub fn no_execute_action(ready_status: &str, taints_now: &[Taint]) -> NoExecuteAction {
    use super::taints::{NO_EXECUTE, has_taint};
    match ready_status {
        FALSE if has_taint(taints_now, UNREACHABLE, NO_EXECUTE) => NoExecuteAction::Swap {
            add: NOT_READY,
            remove: UNREACHABLE,
        },
        FALSE => NoExecuteAction::Queue { add: NOT_READY },
        TRUE => NoExecuteAction::MarkReachable,
        _ if has_taint(taints_now, NOT_READY, NO_EXECUTE) => NoExecuteAction::Swap {
            add: UNREACHABLE,
            remove: NOT_READY,
        },
        _ => NoExecuteAction::Queue { add: UNREACHABLE },
    }
}

/// A token bucket (client-go `flowcontrol` token bucket semantics with burst 1 as
/// upstream's eviction limiter). Hand-written: the rate is swapped at run time by zone
/// state, including to zero ("never"), which off-the-shelf limiters don't model simply.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    qps: f32,
    burst: f64,
    tokens: f64,
    last: Timestamp,
}

impl TokenBucket {
    pub fn new(qps: f32, burst: u32, now: Timestamp) -> Self {
        TokenBucket {
            qps,
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: now,
        }
    }

    pub fn qps(&self) -> f32 {
        self.qps
    }

    fn refill(&mut self, now: Timestamp) {
        if self.qps <= 0.0 {
            return;
        }
        let elapsed = now.duration_since(self.last).as_secs_f64().max(0.0);
        self.tokens = (self.tokens + elapsed * f64::from(self.qps)).min(self.burst);
        self.last = now;
    }

    /// Take a token if one is available.
    pub fn try_accept(&mut self, now: Timestamp) -> bool {
        if self.qps <= 0.0 {
            return false;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Upstream `SwapLimiter`: a new bucket at `qps`; if this one has no token left, the
    /// new one starts drained too.
    pub fn swap(&mut self, qps: f32, now: Timestamp) {
        if self.qps == qps {
            return;
        }
        let exhausted = !self.try_accept(now);
        let mut next = TokenBucket::new(qps, 1, now);
        if exhausted && qps > 0.0 {
            next.try_accept(now);
        }
        *self = next;
    }
}

/// Rate-limited queue of nodes waiting for a NoExecute taint (upstream
/// `RateLimitedTimedQueue`): a node stays a member after it was processed, so it is not
/// tainted twice until [`Tainter::remove`] (the node became reachable again or lost its
/// taint).
#[derive(Debug)]
pub struct Tainter {
    pub limiter: TokenBucket,
    queue: VecDeque<(String, Timestamp)>,
    members: HashSet<String>,
}

impl Tainter {
    pub fn new(qps: f32, now: Timestamp) -> Self {
        Tainter {
            limiter: TokenBucket::new(qps, 1, now),
            queue: VecDeque::new(),
            members: HashSet::new(),
        }
    }

    /// Queue `node` unless it is already a member. Returns whether it was added.
    pub fn add(&mut self, node: &str, now: Timestamp) -> bool {
        if !self.members.insert(node.to_string()) {
            return false;
        }
        self.queue.push_back((node.to_string(), now));
        true
    }

    /// Forget `node` entirely. Returns whether it was a member.
    pub fn remove(&mut self, node: &str) -> bool {
        self.queue.retain(|(n, _)| n != node);
        self.members.remove(node)
    }

    /// Put a node whose processing failed back, to be retried at `at`.
    pub fn retry(&mut self, node: &str, at: Timestamp) {
        if self.members.contains(node) && !self.queue.iter().any(|(n, _)| n == node) {
            self.queue.push_back((node.to_string(), at));
        }
    }

    /// Take the nodes that are due and allowed by the rate limit (they stay members).
    pub fn take_due(&mut self, now: Timestamp) -> Vec<String> {
        let mut out = Vec::new();
        while let Some((_, at)) = self.queue.front() {
            if *at > now || !self.limiter.try_accept(now) {
                break;
            }
            if let Some((n, _)) = self.queue.pop_front() {
                out.push(n);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};
    use kube::api::ObjectMeta;
    use std::time::Duration;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("ts")
    }

    fn cond(type_: &str, status: &str, hb: i64, tr: i64) -> NodeCondition {
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            last_heartbeat_time: Some(Time(ts(hb))),
            last_transition_time: Some(Time(ts(tr))),
            ..Default::default()
        }
    }

    /// Heartbeat ages against the grace period: the probe time moves only when the
    /// heartbeat or the lease renewTime changes, and silence is judged on our clock.
    #[test]
    fn observe_and_silence_table() {
        let grace = Duration::from_secs(40);
        let startup = Duration::from_secs(60);
        let created = ts(1000);
        // steps: (ready (hb, transition) or None, lease renew, now, grace, silent?, probe)
        type Step = (Option<(i64, i64)>, Option<i64>, i64, Duration, bool, i64);
        let scenarios: Vec<(&str, Vec<Step>)> = vec![
            (
                "never reported: startup grace from creation",
                vec![
                    (None, None, 1030, startup, false, 1000),
                    (None, None, 1060, startup, false, 1000),
                    (None, None, 1061, startup, true, 1000),
                ],
            ),
            (
                "heartbeats keep it alive, silence after grace",
                vec![
                    (Some((1000, 1000)), None, 1010, grace, false, 1010),
                    (Some((1020, 1000)), None, 1020, grace, false, 1020),
                    (Some((1020, 1000)), None, 1060, grace, false, 1020),
                    (Some((1020, 1000)), None, 1061, grace, true, 1020),
                ],
            ),
            (
                "lease renewals alone keep it alive",
                vec![
                    (Some((1000, 1000)), Some(1000), 1010, grace, false, 1010),
                    (Some((1000, 1000)), Some(1040), 1045, grace, false, 1045),
                    (Some((1000, 1000)), Some(1080), 1085, grace, false, 1085),
                    (Some((1000, 1000)), Some(1080), 1126, grace, true, 1085),
                ],
            ),
            (
                "an old renewTime seen again is no news",
                vec![
                    (Some((1000, 1000)), Some(1050), 1010, grace, false, 1010),
                    (Some((1000, 1000)), Some(1040), 1051, grace, true, 1010),
                ],
            ),
            (
                "kubelet clock far in the past does not matter",
                vec![
                    (Some((10, 10)), None, 1010, grace, false, 1010),
                    (Some((20, 10)), None, 1045, grace, false, 1045),
                ],
            ),
        ];
        for (name, steps) in scenarios {
            let mut saved: Option<NodeHealth> = None;
            for (i, (ready, lease, now, g, silent, probe)) in steps.into_iter().enumerate() {
                let r = ready.map(|(hb, tr)| cond(READY, TRUE, hb, tr));
                let h = observe(saved.as_ref(), r.as_ref(), created, lease.map(ts), ts(now));
                assert_eq!(h.probe, ts(probe), "{name}: step {i} probe");
                assert_eq!(is_silent(&h, g, ts(now)), silent, "{name}: step {i} silent");
                saved = Some(h);
            }
        }
    }

    #[test]
    fn ready_transition_is_tracked() {
        let a = observe(None, Some(&cond(READY, TRUE, 10, 10)), ts(0), None, ts(100));
        assert_eq!(a.ready_transition, ts(100));
        let b = observe(
            Some(&a),
            Some(&cond(READY, TRUE, 20, 10)),
            ts(0),
            None,
            ts(110),
        );
        assert_eq!(b.ready_transition, ts(100), "same transition time");
        let c = observe(
            Some(&b),
            Some(&cond(READY, FALSE, 30, 30)),
            ts(0),
            None,
            ts(120),
        );
        assert_eq!(c.ready_transition, ts(120), "transitioned");
    }

    #[test]
    fn silent_conditions_table() {
        let created = ts(5);
        let now = ts(500);
        // (input conditions, expected (type, status, reason) or None for "no write")
        type Case = (
            Vec<NodeCondition>,
            Option<Vec<(&'static str, &'static str, &'static str)>>,
        );
        let cases: Vec<Case> = vec![
            (
                vec![
                    cond(READY, TRUE, 100, 50),
                    cond("MemoryPressure", FALSE, 100, 50),
                    cond("DiskPressure", FALSE, 100, 50),
                    cond("PIDPressure", FALSE, 100, 50),
                    cond("NetworkUnavailable", FALSE, 100, 50),
                ],
                Some(vec![
                    (READY, UNKNOWN, "NodeStatusUnknown"),
                    ("MemoryPressure", UNKNOWN, "NodeStatusUnknown"),
                    ("DiskPressure", UNKNOWN, "NodeStatusUnknown"),
                    ("PIDPressure", UNKNOWN, "NodeStatusUnknown"),
                    ("NetworkUnavailable", FALSE, ""),
                ]),
            ),
            (
                vec![],
                Some(vec![
                    (READY, UNKNOWN, "NodeStatusNeverUpdated"),
                    ("MemoryPressure", UNKNOWN, "NodeStatusNeverUpdated"),
                    ("DiskPressure", UNKNOWN, "NodeStatusNeverUpdated"),
                    ("PIDPressure", UNKNOWN, "NodeStatusNeverUpdated"),
                ]),
            ),
            (
                vec![cond(READY, FALSE, 100, 50)],
                Some(vec![
                    (READY, UNKNOWN, "NodeStatusUnknown"),
                    ("MemoryPressure", UNKNOWN, "NodeStatusNeverUpdated"),
                    ("DiskPressure", UNKNOWN, "NodeStatusNeverUpdated"),
                    ("PIDPressure", UNKNOWN, "NodeStatusNeverUpdated"),
                ]),
            ),
            // Already Unknown: nothing to write.
            (vec![cond(READY, UNKNOWN, 100, 50)], None),
        ];
        for (i, (input, want)) in cases.into_iter().enumerate() {
            let got = silent_conditions(&input, created, now).map(|v| {
                v.iter()
                    .map(|c| {
                        (
                            c.type_.clone(),
                            c.status.clone(),
                            c.reason.clone().unwrap_or_default(),
                        )
                    })
                    .collect::<Vec<_>>()
            });
            let want = want.map(|v| {
                v.into_iter()
                    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want, "case {i}");
        }
        let out = silent_conditions(&[cond(READY, TRUE, 100, 50)], created, now).expect("write");
        let r = condition(&out, READY).expect("ready");
        assert_eq!(
            r.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(r.last_transition_time, Some(Time(now)));
        assert_eq!(r.last_heartbeat_time, Some(Time(ts(100))), "heartbeat kept");
        let m = condition(
            &silent_conditions(&[], created, now).expect("w"),
            "MemoryPressure",
        )
        .cloned()
        .expect("added");
        assert_eq!(m.last_heartbeat_time, Some(Time(created)));
        assert_eq!(
            m.message.as_deref(),
            Some("Kubelet never posted node status.")
        );
    }

    #[test]
    fn zone_state_table() {
        let t = Some(TRUE);
        let f = Some(FALSE);
        let u = Some(UNKNOWN);
        let cases: Vec<(Vec<Option<&str>>, (usize, ZoneState))> = vec![
            (vec![], (0, ZoneState::Normal)),
            (vec![t, t, t], (0, ZoneState::Normal)),
            (vec![u], (1, ZoneState::FullDisruption)),
            (vec![None, f], (2, ZoneState::FullDisruption)),
            (vec![t, u], (1, ZoneState::Normal)),
            (vec![t, u, u], (2, ZoneState::Normal)),
            (vec![t, u, u, f], (3, ZoneState::PartialDisruption)),
            (vec![t, t, t, u, u, u], (3, ZoneState::Normal)),
            (vec![t, t, u, u, u], (3, ZoneState::PartialDisruption)),
        ];
        for (input, want) in cases {
            assert_eq!(zone_state(&input, 0.55), want, "{input:?}");
        }
    }

    #[test]
    fn zone_rate_table() {
        let cases = [
            (ZoneState::Normal, 3, 0.1),
            (ZoneState::FullDisruption, 3, 0.1),
            (ZoneState::PartialDisruption, 3, 0.0),
            (ZoneState::PartialDisruption, 50, 0.0),
            (ZoneState::PartialDisruption, 51, 0.01),
        ];
        for (state, size, want) in cases {
            assert_eq!(
                zone_rate(state, size, 0.1, 0.01, 50),
                want,
                "{state:?} {size}"
            );
        }
    }

    fn node(
        labels: &[(&str, &str)],
        conds: Vec<NodeCondition>,
        unschedulable: bool,
        taints: Vec<Taint>,
    ) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                unschedulable: Some(unschedulable),
                taints: Some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(conds),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn zone_key_table() {
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![], ""),
            (vec![("topology.kubernetes.io/zone", "a")], ":\0:a"),
            (
                vec![
                    ("topology.kubernetes.io/zone", "a"),
                    ("topology.kubernetes.io/region", "r"),
                ],
                "r:\0:a",
            ),
            (
                vec![("failure-domain.beta.kubernetes.io/zone", "b")],
                ":\0:b",
            ),
        ];
        for (labels, want) in cases {
            assert_eq!(zone_key(&node(&labels, vec![], false, vec![])), want);
        }
        assert!(!counts_for_disruption(&node(
            &[(EXCLUDE_DISRUPTION_LABEL, "")],
            vec![],
            false,
            vec![]
        )));
    }

    #[test]
    fn no_schedule_diff_table() {
        use super::super::taints::NO_EXECUTE;
        let keys = |v: Vec<Taint>| v.into_iter().map(|t| t.key).collect::<Vec<_>>();
        // (conditions, unschedulable, current taints, to add, to remove)
        type Case = (
            Vec<NodeCondition>,
            bool,
            Vec<Taint>,
            Vec<&'static str>,
            Vec<&'static str>,
        );
        let ns = |k: &str| taints::taint(k, NO_SCHEDULE);
        let cases: Vec<Case> = vec![
            (vec![cond(READY, TRUE, 0, 0)], false, vec![], vec![], vec![]),
            (
                vec![cond(READY, FALSE, 0, 0)],
                false,
                vec![],
                vec![NOT_READY],
                vec![],
            ),
            (
                vec![cond(READY, UNKNOWN, 0, 0)],
                false,
                vec![ns(NOT_READY)],
                vec![UNREACHABLE],
                vec![NOT_READY],
            ),
            (
                vec![cond(READY, TRUE, 0, 0)],
                false,
                vec![ns(NOT_READY)],
                vec![],
                vec![NOT_READY],
            ),
            (
                vec![
                    cond(READY, TRUE, 0, 0),
                    cond("MemoryPressure", TRUE, 0, 0),
                    cond("PIDPressure", TRUE, 0, 0),
                ],
                true,
                vec![],
                vec![MEMORY_PRESSURE, PID_PRESSURE, UNSCHEDULABLE],
                vec![],
            ),
            // Others' taints and NoExecute ones are not this pass's business.
            (
                vec![cond(READY, TRUE, 0, 0)],
                false,
                vec![ns("example.com/x"), taints::taint(UNREACHABLE, NO_EXECUTE)],
                vec![],
                vec![],
            ),
            (
                vec![cond(READY, TRUE, 0, 0)],
                false,
                vec![ns(UNSCHEDULABLE)],
                vec![],
                vec![UNSCHEDULABLE],
            ),
        ];
        for (i, (conds, unsched, cur, add, rm)) in cases.into_iter().enumerate() {
            let (a, r) = no_schedule_diff(&node(&[], conds, unsched, cur));
            assert_eq!(keys(a), add, "case {i} add");
            assert_eq!(keys(r), rm, "case {i} remove");
        }
    }

    #[test]
    fn no_execute_action_table() {
        use super::super::taints::NO_EXECUTE;
        let ne = |k: &str| taints::taint(k, NO_EXECUTE);
        let cases: Vec<(&str, Vec<Taint>, NoExecuteAction)> = vec![
            (FALSE, vec![], NoExecuteAction::Queue { add: NOT_READY }),
            (
                FALSE,
                vec![ne(UNREACHABLE)],
                NoExecuteAction::Swap {
                    add: NOT_READY,
                    remove: UNREACHABLE,
                },
            ),
            (UNKNOWN, vec![], NoExecuteAction::Queue { add: UNREACHABLE }),
            (
                UNKNOWN,
                vec![ne(NOT_READY)],
                NoExecuteAction::Swap {
                    add: UNREACHABLE,
                    remove: NOT_READY,
                },
            ),
            (
                UNKNOWN,
                vec![ne(UNREACHABLE)],
                NoExecuteAction::Queue { add: UNREACHABLE },
            ),
            (TRUE, vec![ne(UNREACHABLE)], NoExecuteAction::MarkReachable),
        ];
        for (status, t, want) in cases {
            assert_eq!(no_execute_action(status, &t), want, "{status} {t:?}");
        }
    }

    #[test]
    fn token_bucket_and_tainter() {
        let t0 = ts(0);
        let mut q = Tainter::new(0.1, t0);
        assert!(q.add("a", t0));
        assert!(q.add("b", t0));
        assert!(!q.add("a", t0), "dedup");
        assert_eq!(q.take_due(t0), vec!["a"], "burst of one");
        assert!(q.take_due(ts(5)).is_empty(), "0.1/s: next token after 10 s");
        assert_eq!(q.take_due(ts(10)), vec!["b"]);
        assert!(!q.add("a", ts(11)), "processed nodes stay members");
        assert!(q.remove("a"));
        assert!(q.add("a", ts(11)));
        q.limiter.swap(0.0, ts(11));
        assert!(q.take_due(ts(1000)).is_empty(), "rate 0 never admits");
        q.limiter.swap(1.0, ts(1000));
        assert!(
            q.take_due(ts(1000)).is_empty(),
            "swapped from an exhausted limiter: starts drained"
        );
        assert_eq!(q.take_due(ts(1001)), vec!["a"]);
        q.retry("a", ts(1005));
        assert!(q.take_due(ts(1004)).is_empty(), "retry waits for its time");
        assert_eq!(q.take_due(ts(1005)), vec!["a"]);
    }
}
