//! Controller expectations (upstream `UIDTrackingControllerExpectations`): what a
//! controller has asked the API server to do and not yet seen through its watch.
//!
//! Before creating `n` pods a ReplicaSet records `n` expected creations; each pod add
//! seen by the watch lowers the count. While any creation or deletion is outstanding the
//! ReplicaSet is not synced again, so a lagging watch cannot make it create the same pods
//! twice. Deletions are tracked by pod key, so a pod seen first as terminating and then
//! as deleted is only counted once. Expectations expire after [`EXPECTATIONS_TTL`]
//! (upstream's 5 minutes) in case an event was lost.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long an unfulfilled expectation blocks syncs (upstream `ExpectationsTimeout`).
pub const EXPECTATIONS_TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Entry {
    add: i64,
    del: i64,
    set_at: Instant,
    /// Keys of the pods whose deletion is awaited.
    deleting: HashSet<String>,
}

/// Outstanding creations and deletions per controller key.
#[derive(Debug)]
pub struct Expectations {
    entries: Mutex<HashMap<String, Entry>>,
    ttl: Duration,
}

impl Default for Expectations {
    fn default() -> Self {
        Self::with_ttl(EXPECTATIONS_TTL)
    }
}

impl Expectations {
    /// Expectations that expire after `ttl`.
    pub fn with_ttl(ttl: Duration) -> Self {
        Expectations {
            entries: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Every update is a single field change, so a poisoned lock is consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `key` may be synced: nothing outstanding, never recorded, or expired.
    pub fn satisfied(&self, key: &str) -> bool {
        match self.lock().get(key) {
            None => true,
            Some(e) => (e.add <= 0 && e.del <= 0) || e.set_at.elapsed() > self.ttl,
        }
    }

    /// Expect `n` creations (replacing whatever was expected before).
    pub fn expect_creations(&self, key: &str, n: usize) {
        self.lock().insert(
            key.to_string(),
            Entry {
                add: i64::try_from(n).unwrap_or(i64::MAX),
                del: 0,
                set_at: Instant::now(),
                deleting: HashSet::new(),
            },
        );
    }

    /// Expect the deletion of the pods with these keys (replacing earlier expectations).
    pub fn expect_deletions(&self, key: &str, pod_keys: Vec<String>) {
        let deleting: HashSet<String> = pod_keys.into_iter().collect();
        self.lock().insert(
            key.to_string(),
            Entry {
                add: 0,
                del: i64::try_from(deleting.len()).unwrap_or(i64::MAX),
                set_at: Instant::now(),
                deleting,
            },
        );
    }

    /// One expected creation was seen (or will never happen).
    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.add -= 1;
        }
    }

    /// The pod `pod_key` was seen deleted (or its deletion failed). Counts once per pod
    /// and only for pods whose deletion was expected.
    pub fn deletion_observed(&self, key: &str, pod_key: &str) {
        if let Some(e) = self.lock().get_mut(key)
            && e.deleting.remove(pod_key)
        {
            e.del -= 1;
        }
    }

    /// Forget `key` (its controller was deleted).
    pub fn delete(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Outstanding (creations, deletions) of `key`, for tests and logs.
    pub fn pending(&self, key: &str) -> Option<(i64, i64)> {
        self.lock().get(key).map(|e| (e.add, e.del))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Op {
        Create(usize),
        Delete(&'static [&'static str]),
        Created,
        Deleted(&'static str),
        Forget,
    }

    #[test]
    fn table() {
        use Op::*;
        let cases: Vec<(&str, Vec<Op>, bool)> = vec![
            ("never recorded", vec![], true),
            ("creations outstanding", vec![Create(2), Created], false),
            (
                "creations all seen",
                vec![Create(2), Created, Created],
                true,
            ),
            (
                "over-observed creations",
                vec![Create(1), Created, Created],
                true,
            ),
            (
                "deletions outstanding",
                vec![Delete(&["a", "b"]), Deleted("a")],
                false,
            ),
            (
                "same pod seen twice counts once",
                vec![Delete(&["a", "b"]), Deleted("a"), Deleted("a")],
                false,
            ),
            (
                "unexpected pod does not count",
                vec![Delete(&["a"]), Deleted("x")],
                false,
            ),
            (
                "deletions all seen",
                vec![Delete(&["a", "b"]), Deleted("b"), Deleted("a")],
                true,
            ),
            (
                "new expectations replace old",
                vec![Create(3), Delete(&["a"]), Deleted("a")],
                true,
            ),
            ("forgotten", vec![Create(3), Forget], true),
        ];
        for (name, ops, want) in cases {
            let e = Expectations::default();
            for op in ops {
                match op {
                    Create(n) => e.expect_creations("k", n),
                    Delete(keys) => {
                        e.expect_deletions("k", keys.iter().map(|s| s.to_string()).collect())
                    }
                    Created => e.creation_observed("k"),
                    Deleted(p) => e.deletion_observed("k", p),
                    Forget => e.delete("k"),
                }
            }
            assert_eq!(e.satisfied("k"), want, "{name}");
            assert!(e.satisfied("other"), "{name}: other keys unaffected");
        }
    }

    #[test]
    fn expired_expectations_are_satisfied() {
        let e = Expectations::with_ttl(Duration::ZERO);
        e.expect_creations("k", 5);
        std::thread::sleep(Duration::from_millis(2));
        assert!(e.satisfied("k"));
        assert_eq!(e.pending("k"), Some((5, 0)));
    }
}
