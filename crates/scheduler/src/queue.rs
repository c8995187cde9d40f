//! The scheduling queue, as upstream's `PriorityQueue`.
//!
//! * **activeQ**: pods ready to be tried, highest priority first, then the one
//!   queued longest.
//! * **backoffQ**: pods waiting out their backoff (1 s doubling per attempt up to
//!   10 s by default) after a cluster event made them worth retrying. When
//!   activeQ is empty the earliest backoff pod is tried anyway (v1.33's
//!   `SchedulerPopFromBackoffQ`).
//! * **errorBackoffQ**: pods whose attempt or binding failed with an error (API
//!   error, conflict). Like upstream's `podErrorBackoffQ` they are never popped
//!   early, so a binding that keeps failing is retried at the backoff pace, not
//!   in a hot loop.
//! * **unschedulablePods**: pods that fit nowhere. A cluster event that one of the
//!   plugins that rejected the pod cares about moves it back (to backoffQ while
//!   its backoff lasts, else to activeQ); after 5 minutes it moves back regardless.
//! * **gated**: pods with `spec.schedulingGates`, until the gates are removed.
//!
//! A pod being scheduled is "in flight"; if a move request arrives meanwhile, a
//! failure sends it to backoffQ instead of unschedulablePods, so no event is lost.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::framework::PluginSet;
use crate::model::PodRef;

/// Queue timing (upstream defaults in [`Default`]).
#[derive(Clone, Copy, Debug)]
pub struct QueueConfig {
    /// `podInitialBackoffSeconds` (1 s).
    pub initial_backoff: Duration,
    /// `podMaxBackoffSeconds` (10 s).
    pub max_backoff: Duration,
    /// `podMaxInUnschedulablePodsDuration` (5 min).
    pub max_in_unschedulable: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_in_unschedulable: Duration::from_secs(300),
        }
    }
}

/// A pod in the queue with its scheduling history.
#[derive(Clone, Debug)]
pub struct QueuedPod {
    pub pod: PodRef,
    pub priority: i32,
    /// Scheduling attempts so far.
    pub attempts: u32,
    /// When the pod was last (re)queued.
    pub timestamp: Instant,
    pub initial_attempt: Option<Instant>,
    /// Plugins that rejected it last time.
    pub unschedulable_plugins: PluginSet,
    /// The scheduling cycle it was last popped in.
    pub cycle: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Active((Reverse<i32>, Instant, u64)),
    Backoff((Instant, u64)),
    ErrorBackoff((Instant, u64)),
    Unschedulable(Instant),
    Gated,
    InFlight,
}

#[derive(Debug)]
struct Entry {
    qp: QueuedPod,
    place: Place,
    /// Updated (or a move request seen) while in flight.
    dirty: bool,
}

/// Where a pod currently is, for tests and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    Active,
    Backoff,
    ErrorBackoff,
    Unschedulable,
    Gated,
    InFlight,
}

/// The scheduling queue.
#[derive(Debug)]
pub struct SchedulingQueue {
    cfg: QueueConfig,
    entries: HashMap<String, Entry>,
    active: BTreeMap<(Reverse<i32>, Instant, u64), String>,
    backoff: BTreeMap<(Instant, u64), String>,
    /// Upstream's `podErrorBackoffQ`: waits out its backoff in full.
    error_backoff: BTreeMap<(Instant, u64), String>,
    unschedulable: HashSet<String>,
    /// Pods PreEnqueue keeps out of activeQ (their preemption is still running).
    blocked: HashSet<String>,
    seq: u64,
    cycle: u64,
    move_request_cycle: u64,
}

impl SchedulingQueue {
    pub fn new(cfg: QueueConfig) -> SchedulingQueue {
        SchedulingQueue {
            cfg,
            entries: HashMap::new(),
            active: BTreeMap::new(),
            backoff: BTreeMap::new(),
            error_backoff: BTreeMap::new(),
            unschedulable: HashSet::new(),
            blocked: HashSet::new(),
            seq: 0,
            cycle: 0,
            move_request_cycle: 0,
        }
    }

    /// Upstream's backoff: initial × 2^(attempts−1), capped.
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        let mut d = self.cfg.initial_backoff;
        for _ in 1..attempts {
            if d > self.cfg.max_backoff.saturating_sub(d) {
                return self.cfg.max_backoff;
            }
            d += d;
        }
        d.min(self.cfg.max_backoff)
    }

    fn backoff_expiry(&self, qp: &QueuedPod) -> Instant {
        qp.timestamp + self.backoff_duration(qp.attempts.max(1))
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Takes a pod out of whichever structure holds it (the entry stays).
    fn detach(&mut self, uid: &str) {
        let Some(e) = self.entries.get(uid) else {
            return;
        };
        match e.place {
            Place::Active(k) => {
                self.active.remove(&k);
            }
            Place::Backoff(k) => {
                self.backoff.remove(&k);
            }
            Place::ErrorBackoff(k) => {
                self.error_backoff.remove(&k);
            }
            Place::Unschedulable(_) => {
                self.unschedulable.remove(uid);
            }
            Place::Gated | Place::InFlight => {}
        }
    }

    fn put_active(&mut self, uid: &str) {
        if self.blocked.contains(uid) {
            let now = Instant::now();
            self.put(uid, Place::Unschedulable(now));
            return;
        }
        let seq = self.next_seq();
        let Some(e) = self.entries.get(uid) else {
            return;
        };
        let key = (Reverse(e.qp.priority), e.qp.timestamp, seq);
        self.put(uid, Place::Active(key));
    }

    fn put(&mut self, uid: &str, place: Place) {
        self.detach(uid);
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        e.place = place;
        match place {
            Place::Active(k) => {
                self.active.insert(k, uid.to_string());
            }
            Place::Backoff(k) => {
                self.backoff.insert(k, uid.to_string());
            }
            Place::ErrorBackoff(k) => {
                self.error_backoff.insert(k, uid.to_string());
            }
            Place::Unschedulable(_) => {
                self.unschedulable.insert(uid.to_string());
            }
            Place::Gated | Place::InFlight => {}
        }
    }

    /// To backoffQ if the backoff has not expired, else to activeQ.
    ///
    /// As upstream, a pod that no plugin rejected (e.g. "no nodes available") goes to
    /// errorBackoffQ, which is never popped before its backoff expires: otherwise an
    /// idle scheduler would retry it in a hot loop.
    fn put_active_or_backoff(&mut self, uid: &str, now: Instant) {
        let error = self
            .entries
            .get(uid)
            .is_some_and(|e| e.qp.unschedulable_plugins.is_empty());
        self.put_active_or_backoff_of(uid, now, error);
    }

    /// As [`Self::put_active_or_backoff`]; `error` picks errorBackoffQ.
    fn put_active_or_backoff_of(&mut self, uid: &str, now: Instant, error: bool) {
        let Some(e) = self.entries.get(uid) else {
            return;
        };
        let expiry = self.backoff_expiry(&e.qp);
        if e.qp.attempts > 0 && expiry > now {
            let seq = self.next_seq();
            let place = if error {
                Place::ErrorBackoff((expiry, seq))
            } else {
                Place::Backoff((expiry, seq))
            };
            self.put(uid, place);
        } else {
            self.put_active(uid);
        }
    }

    /// Adds a new pending pod, or updates one already queued.
    pub fn add(&mut self, pod: PodRef, priority: i32, now: Instant) {
        if self.entries.contains_key(&pod.uid) {
            self.update(pod, priority, now);
            return;
        }
        let uid = pod.uid.clone();
        let gated = pod.scheduling_gated;
        self.entries.insert(
            uid.clone(),
            Entry {
                qp: QueuedPod {
                    pod,
                    priority,
                    attempts: 0,
                    timestamp: now,
                    initial_attempt: None,
                    unschedulable_plugins: PluginSet::default(),
                    cycle: 0,
                },
                place: Place::Gated,
                dirty: false,
            },
        );
        if gated {
            self.put(&uid, Place::Gated);
        } else {
            self.put_active(&uid);
        }
    }

    /// A queued pod changed.
    pub fn update(&mut self, pod: PodRef, priority: i32, now: Instant) {
        let uid = pod.uid.clone();
        let Some(e) = self.entries.get_mut(&uid) else {
            self.add(pod, priority, now);
            return;
        };
        let relevant = {
            let old = &e.qp.pod;
            old.pod.spec != pod.pod.spec || old.labels() != pod.labels()
        };
        let old_priority = e.qp.priority;
        e.qp.pod = pod;
        e.qp.priority = priority;
        match e.place {
            Place::InFlight => e.dirty |= relevant,
            Place::Active(_) => {
                if old_priority != priority {
                    self.put_active(&uid);
                }
            }
            Place::Backoff(_) | Place::ErrorBackoff(_) => {}
            Place::Gated => {
                if !e.qp.pod.scheduling_gated {
                    self.put_active(&uid);
                }
            }
            Place::Unschedulable(_) => {
                if e.qp.pod.scheduling_gated {
                    self.put(&uid, Place::Gated);
                } else if relevant {
                    self.put_active_or_backoff(&uid, now);
                }
            }
        }
    }

    /// Removes a pod (deleted, or bound by someone else).
    pub fn delete(&mut self, uid: &str) {
        self.detach(uid);
        self.entries.remove(uid);
        self.blocked.remove(uid);
    }

    /// Whether the queue holds the pod (in any state).
    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    /// Where a pod is.
    pub fn location(&self, uid: &str) -> Option<Location> {
        self.entries.get(uid).map(|e| match e.place {
            Place::Active(_) => Location::Active,
            Place::Backoff(_) => Location::Backoff,
            Place::ErrorBackoff(_) => Location::ErrorBackoff,
            Place::Unschedulable(_) => Location::Unschedulable,
            Place::Gated => Location::Gated,
            Place::InFlight => Location::InFlight,
        })
    }

    /// The current version of a queued pod.
    pub fn get(&self, uid: &str) -> Option<&QueuedPod> {
        self.entries.get(uid).map(|e| &e.qp)
    }

    /// Takes the next pod to schedule: activeQ first, else the earliest of backoffQ.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        let uid = match self.active.first_key_value() {
            Some((_, uid)) => uid.clone(),
            None => self.backoff.first_key_value()?.1.clone(),
        };
        self.put(&uid, Place::InFlight);
        self.cycle += 1;
        let cycle = self.cycle;
        let e = self.entries.get_mut(&uid)?;
        e.dirty = false;
        e.qp.attempts += 1;
        e.qp.cycle = cycle;
        e.qp.initial_attempt.get_or_insert(now);
        Some(e.qp.clone())
    }

    /// The pod was scheduled (or dropped): forget it.
    pub fn done(&mut self, uid: &str) {
        if matches!(self.entries.get(uid), Some(e) if e.place == Place::InFlight) {
            self.entries.remove(uid);
        }
    }

    /// The pod fits nowhere: park it in unschedulablePods, or in backoffQ if a move
    /// request came while it was in flight (or no plugin is to blame).
    pub fn requeue_unschedulable(&mut self, uid: &str, plugins: PluginSet, now: Instant) {
        let move_cycle = self.move_request_cycle;
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        if e.place != Place::InFlight {
            return;
        }
        e.qp.timestamp = now;
        e.qp.unschedulable_plugins = plugins;
        if e.dirty || plugins.is_empty() || move_cycle >= e.qp.cycle {
            self.put_active_or_backoff(uid, now);
        } else {
            self.put(uid, Place::Unschedulable(now));
        }
    }

    /// The attempt failed with an error: retry after backoff.
    pub fn requeue_backoff(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        if e.place != Place::InFlight {
            return;
        }
        e.qp.timestamp = now;
        e.qp.unschedulable_plugins = PluginSet::default();
        self.put_active_or_backoff_of(uid, now, true);
    }

    /// Puts a pod that left the queue (its binding failed) back, with its history.
    pub fn readd_after_error(&mut self, qp: QueuedPod, now: Instant) {
        let uid = qp.pod.uid.clone();
        self.detach(&uid);
        self.entries.insert(
            uid.clone(),
            Entry {
                qp: QueuedPod {
                    timestamp: now,
                    unschedulable_plugins: PluginSet::default(),
                    ..qp
                },
                place: Place::InFlight,
                dirty: false,
            },
        );
        self.put_active_or_backoff_of(&uid, now, true);
    }

    /// A cluster event that the plugins in `interested` care about: move the
    /// unschedulable pods they rejected (and pods rejected for no plugin).
    pub fn move_all(&mut self, interested: PluginSet, now: Instant) {
        self.move_request_cycle = self.cycle;
        for e in self.entries.values_mut() {
            if e.place == Place::InFlight {
                e.dirty = true;
            }
        }
        let to_move: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|uid| {
                self.entries.get(*uid).is_some_and(|e| {
                    e.qp.unschedulable_plugins.is_empty()
                        || e.qp.unschedulable_plugins.intersects(interested)
                })
            })
            .cloned()
            .collect();
        for uid in to_move {
            self.put_active_or_backoff(&uid, now);
        }
    }

    /// Moves backoff pods whose backoff has expired to activeQ.
    pub fn flush_backoff(&mut self, now: Instant) {
        while let Some((&(expiry, _), uid)) = self.backoff.first_key_value() {
            if expiry > now {
                break;
            }
            let uid = uid.clone();
            self.put_active(&uid);
        }
        while let Some((&(expiry, _), uid)) = self.error_backoff.first_key_value() {
            if expiry > now {
                break;
            }
            let uid = uid.clone();
            self.put_active(&uid);
        }
    }

    /// [`SchedulingQueue::flush_backoff`], and moves pods that sat in
    /// unschedulablePods too long back to activeQ/backoffQ.
    pub fn flush(&mut self, now: Instant) {
        self.flush_backoff(now);
        let max = self.cfg.max_in_unschedulable;
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|uid| {
                matches!(self.entries.get(*uid), Some(Entry { place: Place::Unschedulable(since), .. }) if *since + max <= now)
            })
            .cloned()
            .collect();
        for uid in stale {
            self.put_active_or_backoff(&uid, now);
        }
    }

    /// When the next backoff expires.
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        let plain = self.backoff.first_key_value().map(|(&(t, _), _)| t);
        let error = self.error_backoff.first_key_value().map(|(&(t, _), _)| t);
        match (plain, error) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Keeps a pod out of activeQ (its preemption is in progress).
    pub fn block(&mut self, uid: &str) {
        self.blocked.insert(uid.to_string());
    }

    /// Lets a blocked pod back in: it moves to activeQ/backoffQ if it waits.
    pub fn unblock(&mut self, uid: &str, now: Instant) {
        if self.blocked.remove(uid)
            && matches!(self.entries.get(uid), Some(e) if matches!(e.place, Place::Unschedulable(_)))
        {
            self.put_active_or_backoff(uid, now);
        }
    }

    /// Whether activeQ has a pod (or backoffQ, which is popped when activeQ is empty).
    pub fn has_ready(&self) -> bool {
        !self.active.is_empty() || !self.backoff.is_empty()
    }

    /// (active, backoff, unschedulable, gated) sizes.
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        let gated = self
            .entries
            .values()
            .filter(|e| e.place == Place::Gated)
            .count();
        (
            self.active.len(),
            self.backoff.len() + self.error_backoff.len(),
            self.unschedulable.len(),
            gated,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::PluginId;
    use crate::testutil::pod;

    fn q() -> SchedulingQueue {
        SchedulingQueue::new(QueueConfig::default())
    }

    fn set(ids: &[PluginId]) -> PluginSet {
        let mut s = PluginSet::default();
        for id in ids {
            s.insert(*id);
        }
        s
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let q = q();
        for (attempts, secs) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (9, 10)] {
            assert_eq!(
                q.backoff_duration(attempts),
                Duration::from_secs(secs),
                "{attempts}"
            );
        }
    }

    #[test]
    fn priority_then_age_order() {
        let mut q = q();
        let t0 = Instant::now();
        q.add(pod("low-old").build(), 1, t0);
        q.add(pod("high").build(), 100, t0 + Duration::from_millis(2));
        q.add(pod("low-new").build(), 1, t0 + Duration::from_millis(1));
        q.add(pod("mid").build(), 50, t0 + Duration::from_millis(3));
        let order: Vec<String> =
            std::iter::from_fn(|| q.pop(t0).map(|p| p.pod.name.clone())).collect();
        assert_eq!(order, vec!["high", "mid", "low-old", "low-new"]);
    }

    #[test]
    fn unschedulable_pods_move_on_relevant_events_only() {
        let mut q = q();
        let t0 = Instant::now();
        let p = pod("p").build();
        q.add(p.clone(), 0, t0);
        let popped = q.pop(t0).expect("pod");
        assert_eq!(popped.attempts, 1);
        q.requeue_unschedulable(&p.uid, set(&[PluginId::NodeResourcesFit]), t0);
        assert_eq!(q.location(&p.uid), Some(Location::Unschedulable));
        assert!(q.pop(t0).is_none());

        // A taint change does not help a pod that lacked CPU.
        q.move_all(set(&[PluginId::TaintToleration]), t0);
        assert_eq!(q.location(&p.uid), Some(Location::Unschedulable));

        // A pod deletion does; within the backoff the pod waits in backoffQ.
        q.move_all(
            set(&[PluginId::NodeResourcesFit]),
            t0 + Duration::from_millis(100),
        );
        assert_eq!(q.location(&p.uid), Some(Location::Backoff));
        q.flush(t0 + Duration::from_millis(500));
        assert_eq!(q.location(&p.uid), Some(Location::Backoff));
        q.flush(t0 + Duration::from_millis(1000));
        assert_eq!(q.location(&p.uid), Some(Location::Active));
    }

    #[test]
    fn leftover_unschedulable_pods_return_after_five_minutes() {
        let mut q = q();
        let t0 = Instant::now();
        let p = pod("p").build();
        q.add(p.clone(), 0, t0);
        q.pop(t0);
        q.requeue_unschedulable(&p.uid, set(&[PluginId::NodeAffinity]), t0);
        q.flush(t0 + Duration::from_secs(299));
        assert_eq!(q.location(&p.uid), Some(Location::Unschedulable));
        q.flush(t0 + Duration::from_secs(300));
        assert_eq!(q.location(&p.uid), Some(Location::Active));
    }

    #[test]
    fn move_request_while_in_flight_goes_to_backoff() {
        let mut q = q();
        let t0 = Instant::now();
        let p = pod("p").build();
        q.add(p.clone(), 0, t0);
        q.pop(t0);
        q.move_all(set(&[PluginId::InterPodAffinity]), t0);
        q.requeue_unschedulable(&p.uid, set(&[PluginId::NodeResourcesFit]), t0);
        assert_eq!(q.location(&p.uid), Some(Location::Backoff));
    }

    #[test]
    fn backoff_is_popped_when_active_is_empty() {
        let mut q = q();
        let t0 = Instant::now();
        let p = pod("p").build();
        q.add(p.clone(), 0, t0);
        q.pop(t0);
        // A move request while in flight: the failure goes to (plain) backoffQ.
        q.move_all(set(&[PluginId::NodeResourcesFit]), t0);
        q.requeue_unschedulable(&p.uid, set(&[PluginId::NodeResourcesFit]), t0);
        assert_eq!(q.location(&p.uid), Some(Location::Backoff));
        q.add(pod("other").build(), 0, t0);
        assert_eq!(
            q.pop(t0).map(|x| x.pod.name.clone()).as_deref(),
            Some("other")
        );
        let again = q.pop(t0).expect("backoff pod");
        assert_eq!(again.pod.name, "p");
        assert_eq!(again.attempts, 2);
    }

    #[test]
    fn errors_wait_out_their_backoff_even_when_idle() {
        // A binding/API error must not be retried at once (no hot loop): the
        // pod waits in errorBackoffQ for the full backoff, even with activeQ empty.
        let mut q = q();
        let t0 = Instant::now();
        let p = pod("p").build();
        q.add(p.clone(), 0, t0);
        let qp = q.pop(t0).expect("pod");
        q.done(&p.uid);
        q.readd_after_error(qp, t0);
        assert_eq!(q.location(&p.uid), Some(Location::ErrorBackoff));
        assert!(
            q.pop(t0).is_none(),
            "error backoff must not be popped early"
        );
        assert_eq!(q.next_backoff_expiry(), Some(t0 + Duration::from_secs(1)));
        q.flush_backoff(t0 + Duration::from_millis(999));
        assert!(q.pop(t0 + Duration::from_millis(999)).is_none());
        let t1 = t0 + Duration::from_secs(1);
        q.flush_backoff(t1);
        let again = q.pop(t1).expect("after backoff");
        assert_eq!(again.attempts, 2);
        // The second error doubles the wait.
        q.requeue_backoff(&p.uid, t1);
        assert_eq!(q.location(&p.uid), Some(Location::ErrorBackoff));
        assert_eq!(q.next_backoff_expiry(), Some(t1 + Duration::from_secs(2)));
        assert!(!q.has_ready());
    }

    #[test]
    fn a_failure_no_plugin_explains_waits_out_its_backoff() {
        // "no nodes available": no plugin rejected the pod, so no event can be known
        // to help; it is retried after its backoff, never at once (no hot loop).
        let mut q = q();
        let t0 = Instant::now();
        let p = pod("p").build();
        q.add(p.clone(), 0, t0);
        q.pop(t0).expect("pod");
        q.requeue_unschedulable(&p.uid, PluginSet::default(), t0);
        assert_eq!(q.location(&p.uid), Some(Location::ErrorBackoff));
        assert!(q.pop(t0).is_none(), "not popped early");
        let t1 = t0 + Duration::from_secs(1);
        q.flush_backoff(t1);
        assert_eq!(q.pop(t1).expect("after backoff").attempts, 2);
        q.requeue_unschedulable(&p.uid, PluginSet::default(), t1);
        assert_eq!(q.next_backoff_expiry(), Some(t1 + Duration::from_secs(2)));
        // A cluster event while it backs off keeps it in errorBackoffQ.
        q.move_all(set(&[PluginId::NodeResourcesFit]), t1);
        assert_eq!(q.location(&p.uid), Some(Location::ErrorBackoff));
        assert!(q.pop(t1).is_none());
    }

    #[test]
    fn gates_and_updates() {
        let mut q = q();
        let t0 = Instant::now();
        let gated = pod("g").gated().build();
        q.add(gated.clone(), 0, t0);
        assert_eq!(q.location(&gated.uid), Some(Location::Gated));
        assert!(q.pop(t0).is_none());
        q.update(pod("g").build(), 0, t0);
        assert_eq!(q.location(&gated.uid), Some(Location::Active));

        // An unschedulable pod whose spec changes is retried.
        let p = pod("p").build();
        q.add(p.clone(), 0, t0);
        while q.pop(t0).is_some() {}
        q.requeue_unschedulable(&p.uid, set(&[PluginId::NodeAffinity]), t0);
        q.update(
            pod("p").label("x", "y").build(),
            0,
            t0 + Duration::from_secs(5),
        );
        assert_eq!(q.location(&p.uid), Some(Location::Active));

        q.delete(&p.uid);
        assert!(!q.contains(&p.uid));
    }

    #[test]
    fn blocked_pods_wait_for_unblock() {
        let mut q = q();
        let t0 = Instant::now();
        let p = pod("p").build();
        q.add(p.clone(), 0, t0);
        q.pop(t0);
        q.block(&p.uid);
        q.requeue_unschedulable(&p.uid, set(&[PluginId::NodeResourcesFit]), t0);
        q.move_all(
            set(&[PluginId::NodeResourcesFit]),
            t0 + Duration::from_secs(20),
        );
        assert_eq!(q.location(&p.uid), Some(Location::Unschedulable));
        q.unblock(&p.uid, t0 + Duration::from_secs(20));
        assert_eq!(q.location(&p.uid), Some(Location::Active));
    }
}
