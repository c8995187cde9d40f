//! The event correlator: what upstream client-go's `EventCorrelator` does between an
//! event being recorded and it being written, so a component stuck in a loop cannot
//! flood the API server with Events.
//!
//! Every event passes three stages, in upstream's order:
//!
//! 1. **Aggregation.** Events with the same source, involved object (kind, namespace,
//!    name, uid, apiVersion; not the field path), type, reason and reporting
//!    controller/instance are *similar*. The correlator remembers the distinct messages
//!    of each similar group (forgotten after [`CorrelatorOptions::max_interval`], 10
//!    min, without a similar event). The first nine are written as they are; the
//!    [`CorrelatorOptions::max_events`]th (10th) and every further new message are
//!    folded into a single Event of the group whose message is
//!    `(combined from similar events): <latest message>` and whose count grows.
//! 2. **De-duplication.** An event identical to one already written (same source,
//!    involved object including field path, type, reason and message; or the same
//!    combined event of a group) becomes a patch of the existing Event: `count` + 1,
//!    `lastTimestamp` and `message`, keeping its name and `firstTimestamp`.
//! 3. **Spam filter.** A token bucket per (source, involved object) lets
//!    [`CorrelatorOptions::spam_burst`] (25) events through at once and refills one
//!    token every [`CorrelatorOptions::spam_refill_period`] (5 min); events beyond it are
//!    dropped. As upstream, a dropped event has already been counted, so the next one
//!    that gets through carries the full count.
//!
//! Each stage remembers at most [`CorrelatorOptions::lru_cache_size`] (4096) keys,
//! least recently used first out.
//!
//! The correlator is plain data driven by the caller's clock (`now` arguments), so
//! its behaviour is tested without waiting.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use lru::LruCache;

/// Upstream `maxLruCacheEntries`.
pub const LRU_CACHE_SIZE: usize = 4096;
/// Upstream `defaultAggregateMaxEvents`.
pub const AGGREGATE_MAX_EVENTS: usize = 10;
/// Upstream `defaultAggregateIntervalInSeconds`.
pub const AGGREGATE_MAX_INTERVAL: Duration = Duration::from_secs(600);
/// Upstream `defaultSpamBurst`.
pub const SPAM_BURST: u32 = 25;
/// Upstream `defaultSpamQPS` is 1/300: one token every 300 s.
pub const SPAM_REFILL_PERIOD: Duration = Duration::from_secs(300);
/// What the message of a combined event starts with (upstream's default message func).
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// Tunables of a [`Correlator`]; `Default` is upstream's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorrelatorOptions {
    /// Entries kept by each of the three caches.
    pub lru_cache_size: NonZeroUsize,
    /// Distinct messages of similar events before they are combined.
    pub max_events: usize,
    /// A similar group older than this (since its last event) starts over.
    pub max_interval: Duration,
    /// Events a source may emit about one object at once.
    pub spam_burst: u32,
    /// Time to earn back one event of the burst.
    pub spam_refill_period: Duration,
}

impl Default for CorrelatorOptions {
    fn default() -> Self {
        CorrelatorOptions {
            lru_cache_size: NonZeroUsize::new(LRU_CACHE_SIZE).expect("non-zero"),
            max_events: AGGREGATE_MAX_EVENTS,
            max_interval: AGGREGATE_MAX_INTERVAL,
            spam_burst: SPAM_BURST,
            spam_refill_period: SPAM_REFILL_PERIOD,
        }
    }
}

/// Source and involved object: the spam filter's key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ObjectKey {
    component: String,
    host: String,
    kind: String,
    namespace: String,
    name: String,
    uid: String,
    api_version: String,
}

/// What makes events similar: the aggregation key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct GroupKey {
    object: ObjectKey,
    type_: String,
    reason: String,
    reporting_controller: String,
    reporting_instance: String,
}

/// Which Event on the server an event folds into (opaque).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey(Key);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// An event of its own: its group, field path and message.
    Single(Box<(GroupKey, String, String)>),
    /// The combined event of a similar group.
    Combined(Box<GroupKey>),
}

fn s(o: &Option<String>) -> String {
    o.clone().unwrap_or_default()
}

impl ObjectKey {
    fn of(ev: &Event) -> Self {
        let src = ev.source.clone().unwrap_or_default();
        let o: &ObjectReference = &ev.involved_object;
        ObjectKey {
            component: s(&src.component),
            host: s(&src.host),
            kind: s(&o.kind),
            namespace: s(&o.namespace),
            name: s(&o.name),
            uid: s(&o.uid),
            api_version: s(&o.api_version),
        }
    }
}

impl GroupKey {
    fn of(ev: &Event) -> Self {
        GroupKey {
            object: ObjectKey::of(ev),
            type_: s(&ev.type_),
            reason: s(&ev.reason),
            reporting_controller: s(&ev.reporting_component),
            reporting_instance: s(&ev.reporting_instance),
        }
    }
}

/// Distinct messages seen lately in one similar group.
struct Group {
    messages: HashSet<String>,
    last: Timestamp,
}

/// What was last written for a [`CacheKey`].
#[derive(Clone, Debug)]
struct Observation {
    count: i32,
    name: String,
    first_timestamp: Option<Time>,
}

impl Observation {
    fn of(ev: &Event) -> Self {
        Observation {
            count: ev.count.unwrap_or(1),
            name: s(&ev.metadata.name),
            first_timestamp: ev.first_timestamp.clone(),
        }
    }
}

/// A token bucket. Hand-written: the spam filter keeps one per key inside its LRU
/// cache and refills it from the events' own timestamps; rate-limiter crates bring
/// their own clock and unbounded key maps. Credit is kept in nanoseconds of refill
/// time (one token is one refill period), so refills are exact.
#[derive(Clone, Debug)]
struct Bucket {
    credit: u128,
    last: Timestamp,
}

impl Bucket {
    fn full(burst: u32, period: Duration, now: Timestamp) -> Self {
        Bucket {
            credit: u128::from(burst) * period.as_nanos(),
            last: now,
        }
    }

    fn try_take(&mut self, now: Timestamp, burst: u32, period: Duration) -> bool {
        let token = period.as_nanos();
        let max = u128::from(burst) * token;
        if now > self.last {
            self.credit = (self.credit + elapsed(self.last, now).as_nanos()).min(max);
            self.last = now;
        }
        if self.credit >= token && burst > 0 {
            self.credit -= token;
            true
        } else {
            false
        }
    }
}

/// Time from `from` to `to`; zero if the clock went backwards.
fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

/// What to write for an event that passed the correlator.
#[derive(Clone, Debug)]
pub struct Correlated {
    /// The Event to create (when `patch` is `None`, or the patch finds no Event).
    pub event: Event,
    /// A strategic-merge patch of `count`, `lastTimestamp` and `message` for the
    /// existing Event named `event.metadata.name`.
    pub patch: Option<serde_json::Value>,
    /// Where to remember what the server returns ([`Correlator::update_state`]).
    pub key: CacheKey,
}

/// Upstream's `EventCorrelator`: aggregation, de-duplication and spam filtering. See
/// the module docs.
pub struct Correlator {
    opts: CorrelatorOptions,
    groups: LruCache<GroupKey, Group>,
    observed: LruCache<CacheKey, Observation>,
    spam: LruCache<ObjectKey, Bucket>,
}

impl Default for Correlator {
    fn default() -> Self {
        Correlator::new(CorrelatorOptions::default())
    }
}

impl Correlator {
    pub fn new(opts: CorrelatorOptions) -> Self {
        // `sparse`: the caches grow on use (a component may record only a few events).
        Correlator {
            groups: LruCache::sparse(opts.lru_cache_size),
            observed: LruCache::sparse(opts.lru_cache_size),
            spam: LruCache::sparse(opts.lru_cache_size),
            opts,
        }
    }

    /// Correlates a new event (count 1, first and last timestamp `now`) observed at
    /// `now`. `None`: the spam filter dropped it.
    pub fn correlate(&mut self, event: Event, now: Timestamp) -> Option<Correlated> {
        let (event, key) = self.aggregate(event, now);
        let (event, patch) = self.observe(event, &key);
        if !self.allowed(&event, now) {
            return None;
        }
        Some(Correlated { event, patch, key })
    }

    /// Remembers what the server stored for `key` (name, count, first timestamp).
    pub fn update_state(&mut self, key: &CacheKey, stored: &Event) {
        self.observed.put(key.clone(), Observation::of(stored));
    }

    fn aggregate(&mut self, event: Event, now: Timestamp) -> (Event, CacheKey) {
        let group = GroupKey::of(&event);
        let message = s(&event.message);
        let max_interval = self.opts.max_interval;
        let g = self.groups.get_or_insert_mut(group.clone(), || Group {
            messages: HashSet::new(),
            last: now,
        });
        if elapsed(g.last, now) > max_interval {
            g.messages.clear();
        }
        g.messages.insert(message.clone());
        g.last = now;
        if g.messages.len() < self.opts.max_events {
            let field_path = s(&event.involved_object.field_path);
            let key = CacheKey(Key::Single(Box::new((group, field_path, message))));
            return (event, key);
        }
        // Keep the set below the threshold so that every further new message is
        // combined too. Upstream drops an arbitrary member; dropping the one just
        // added is deterministic and keeps the messages that still have Events of
        // their own.
        g.messages.remove(&message);
        let involved = event.involved_object.clone();
        let combined = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", s(&involved.name), now.as_nanosecond())),
                namespace: event.metadata.namespace.clone(),
                ..Default::default()
            },
            involved_object: involved,
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            message: Some(format!("{COMBINED_PREFIX}{message}")),
            type_: event.type_,
            reason: event.reason,
            source: event.source,
            reporting_component: event.reporting_component,
            reporting_instance: event.reporting_instance,
            ..Default::default()
        };
        (combined, CacheKey(Key::Combined(Box::new(group))))
    }

    fn observe(&mut self, mut event: Event, key: &CacheKey) -> (Event, Option<serde_json::Value>) {
        let mut patch = None;
        if let Some(last) = self.observed.get(key).filter(|o| o.count > 0) {
            event.metadata.name = Some(last.name.clone());
            event.first_timestamp = last.first_timestamp.clone();
            event.count = Some(last.count.saturating_add(1));
            patch = Some(serde_json::json!({
                "count": event.count,
                "lastTimestamp": event.last_timestamp,
                "message": event.message,
            }));
        }
        self.observed.put(key.clone(), Observation::of(&event));
        (event, patch)
    }

    fn allowed(&mut self, event: &Event, now: Timestamp) -> bool {
        let (burst, period) = (self.opts.spam_burst, self.opts.spam_refill_period);
        self.spam
            .get_or_insert_mut(ObjectKey::of(event), || Bucket::full(burst, period, now))
            .try_take(now, burst, period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::tests::pod;
    use k8s_openapi::api::core::v1::EventSource;

    fn t0() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().expect("timestamp")
    }

    fn at(secs: u64) -> Timestamp {
        t0() + Duration::from_secs(secs)
    }

    fn event(
        obj: &ObjectReference,
        host: &str,
        reason: &str,
        message: &str,
        now: Timestamp,
    ) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", s(&obj.name), now.as_nanosecond())),
                namespace: obj.namespace.clone(),
                ..Default::default()
            },
            involved_object: obj.clone(),
            type_: Some("Warning".into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(host.into()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(host.into()),
            ..Default::default()
        }
    }

    /// Correlates and, as the sink would on success, stores the result.
    fn pass(c: &mut Correlator, ev: Event, now: Timestamp) -> Option<Correlated> {
        let r = c.correlate(ev, now)?;
        c.update_state(&r.key, &r.event);
        Some(r)
    }

    #[test]
    fn defaults_match_upstream() {
        let o = CorrelatorOptions::default();
        assert_eq!(o.lru_cache_size.get(), 4096);
        assert_eq!(o.max_events, 10);
        assert_eq!(o.max_interval, Duration::from_secs(600));
        assert_eq!(o.spam_burst, 25);
        assert_eq!(o.spam_refill_period, Duration::from_secs(300));
    }

    #[test]
    fn identical_events_patch_count_and_last_timestamp() {
        let mut c = Correlator::default();
        let p = pod("web");
        let first =
            pass(&mut c, event(&p, "n1", "BackOff", "back-off", at(0)), at(0)).expect("first");
        assert!(first.patch.is_none());
        let name = first.event.metadata.name.clone();
        for (i, secs) in [(2, 5), (3, 9)] {
            let r = pass(
                &mut c,
                event(&p, "n1", "BackOff", "back-off", at(secs)),
                at(secs),
            )
            .expect("passes");
            assert_eq!(r.event.metadata.name, name, "same Event");
            assert_eq!(r.event.count, Some(i));
            assert_eq!(r.event.first_timestamp, Some(Time(at(0))));
            let patch = r.patch.expect("a patch");
            assert_eq!(patch["count"], i);
            assert_eq!(patch["lastTimestamp"], serde_json::json!(Time(at(secs))));
            assert_eq!(patch["message"], "back-off");
        }
        // Another host, field path or message is another Event.
        let other_host = pass(
            &mut c,
            event(&p, "n2", "BackOff", "back-off", at(10)),
            at(10),
        );
        assert!(other_host.expect("passes").patch.is_none());
        let mut ev = event(&p, "n1", "BackOff", "back-off", at(11));
        ev.involved_object.field_path = Some("spec.containers{a}".into());
        assert!(pass(&mut c, ev, at(11)).expect("passes").patch.is_none());
        let other_msg = pass(&mut c, event(&p, "n1", "BackOff", "other", at(12)), at(12));
        assert!(other_msg.expect("passes").patch.is_none());
    }

    #[test]
    fn server_state_is_what_later_patches_build_on() {
        let mut c = Correlator::default();
        let p = pod("web");
        let r = c
            .correlate(event(&p, "n1", "R", "m", at(0)), at(0))
            .expect("passes");
        let mut stored = r.event.clone();
        stored.count = Some(7);
        c.update_state(&r.key, &stored);
        let r = c
            .correlate(event(&p, "n1", "R", "m", at(1)), at(1))
            .expect("passes");
        assert_eq!(r.event.count, Some(8));
    }

    #[test]
    fn many_similar_events_are_combined() {
        let mut c = Correlator::default();
        let p = pod("web");
        for i in 0..9 {
            let r = pass(
                &mut c,
                event(&p, "n1", "Failed", &format!("m{i}"), at(i)),
                at(i),
            )
            .expect("passes");
            assert_eq!(r.event.message.as_deref(), Some(format!("m{i}").as_str()));
            assert!(r.patch.is_none());
            assert!(matches!(r.key, CacheKey(Key::Single(_))));
        }
        // The 10th distinct message within 10 minutes starts the combined event.
        let r = pass(&mut c, event(&p, "n1", "Failed", "m9", at(9)), at(9)).expect("passes");
        assert_eq!(
            r.event.message.as_deref(),
            Some("(combined from similar events): m9")
        );
        assert_eq!(r.event.count, Some(1));
        assert!(r.patch.is_none());
        assert_eq!(r.event.reason.as_deref(), Some("Failed"));
        assert_eq!(r.event.involved_object, p);
        assert_eq!(r.event.first_timestamp, Some(Time(at(9))));
        let combined_name = r.event.metadata.name.clone();
        // Further new messages patch it, with the latest message.
        let r = pass(&mut c, event(&p, "n1", "Failed", "m10", at(20)), at(20)).expect("passes");
        assert_eq!(r.event.metadata.name, combined_name);
        assert_eq!(r.event.count, Some(2));
        let patch = r.patch.expect("patch");
        assert_eq!(patch["message"], "(combined from similar events): m10");
        assert_eq!(patch["count"], 2);
        // A message that still has its own Event keeps counting there.
        let r = pass(&mut c, event(&p, "n1", "Failed", "m3", at(21)), at(21)).expect("passes");
        assert_eq!(r.event.message.as_deref(), Some("m3"));
        assert_eq!(r.event.count, Some(2));
        // Another reason is another group.
        let r = pass(&mut c, event(&p, "n1", "Other", "x", at(22)), at(22)).expect("passes");
        assert_eq!(r.event.message.as_deref(), Some("x"));
    }

    #[test]
    fn similar_events_more_than_the_interval_apart_start_over() {
        let mut c = Correlator::default();
        let p = pod("web");
        for i in 0..9 {
            pass(
                &mut c,
                event(&p, "n1", "Failed", &format!("m{i}"), at(i)),
                at(i),
            );
        }
        // The group's last event was at 8 s; 10 minutes later it is forgotten.
        let later = at(8 + 601);
        let r = pass(&mut c, event(&p, "n1", "Failed", "m9", later), later).expect("passes");
        assert_eq!(r.event.message.as_deref(), Some("m9"));
        // Exactly 10 minutes is still within the interval.
        let mut c = Correlator::default();
        for i in 0..9 {
            pass(
                &mut c,
                event(&p, "n1", "Failed", &format!("m{i}"), at(i)),
                at(i),
            );
        }
        let edge = at(8 + 600);
        let r = pass(&mut c, event(&p, "n1", "Failed", "m9", edge), edge).expect("passes");
        assert!(
            r.event
                .message
                .expect("message")
                .starts_with(COMBINED_PREFIX)
        );
    }

    #[test]
    fn spam_filter_allows_a_burst_then_one_event_per_refill_period() {
        let mut c = Correlator::default();
        let p = pod("web");
        // Distinct reasons: no aggregation, all spam-counted against (kubelet/n1, web).
        for i in 0..25 {
            assert!(
                pass(&mut c, event(&p, "n1", &format!("R{i}"), "m", at(0)), at(0)).is_some(),
                "event {i} within the burst"
            );
        }
        assert!(pass(&mut c, event(&p, "n1", "R25", "m", at(0)), at(0)).is_none());
        assert!(pass(&mut c, event(&p, "n1", "R0", "m", at(299)), at(299)).is_none());
        // Other objects and other sources have their own buckets.
        assert!(pass(&mut c, event(&pod("db"), "n1", "R0", "m", at(299)), at(299)).is_some());
        assert!(pass(&mut c, event(&p, "n2", "R0", "m", at(299)), at(299)).is_some());
        // One token every 300 s.
        let r = pass(&mut c, event(&p, "n1", "R0", "m", at(300)), at(300)).expect("refilled");
        // Dropped duplicates were counted: R0 was recorded at 0, 299 and 300.
        assert_eq!(r.event.count, Some(3));
        assert!(pass(&mut c, event(&p, "n1", "R1", "m", at(301)), at(301)).is_none());
        // The bucket holds at most the burst.
        let much_later = at(300 + 300 * 100);
        for i in 0..25 {
            let r = pass(
                &mut c,
                event(&p, "n1", &format!("S{i}"), "m", much_later),
                much_later,
            );
            assert!(r.is_some(), "event {i} of a refilled burst");
        }
        assert!(pass(&mut c, event(&p, "n1", "S25", "m", much_later), much_later).is_none());
    }

    #[test]
    fn caches_are_bounded_least_recently_used_first_out() {
        let opts = CorrelatorOptions {
            lru_cache_size: NonZeroUsize::new(2).expect("2"),
            ..Default::default()
        };
        let mut c = Correlator::new(opts);
        let p = pod("web");
        pass(&mut c, event(&p, "n1", "A", "m", at(0)), at(0));
        pass(&mut c, event(&p, "n1", "B", "m", at(1)), at(1));
        // A is the most recently used now; C pushes B out.
        assert!(
            pass(&mut c, event(&p, "n1", "A", "m", at(2)), at(2))
                .expect("A")
                .patch
                .is_some()
        );
        pass(&mut c, event(&p, "n1", "C", "m", at(3)), at(3));
        assert!(
            pass(&mut c, event(&p, "n1", "A", "m", at(4)), at(4))
                .expect("A")
                .patch
                .is_some()
        );
        assert!(
            pass(&mut c, event(&p, "n1", "B", "m", at(5)), at(5))
                .expect("B")
                .patch
                .is_none()
        );
        assert!(c.observed.len() <= 2 && c.groups.len() <= 2 && c.spam.len() <= 2);
    }
}
