//! A de-duplicating, rate-limited work queue of keys (the client-go `workqueue` model).
//!
//! Semantics: a key is queued at most once; a key being processed is never handed to a
//! second worker at the same time; a key added while it is being processed is queued
//! again when the worker calls [`WorkQueue::done`]. Failures requeue with per-key
//! exponential backoff ([`WorkQueue::add_rate_limited`]) until [`WorkQueue::forget`].
//!
//! Written by hand because kube-runtime's `Controller` binds its queue to one watched
//! resource type and a reflector store keyed by name, while the garbage collector queues
//! object uids that span every discovered (dynamic) resource and fans out along the
//! owner graph.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Per-key exponential backoff: `base * 2^failures`, capped at `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(5),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// Delay before the next attempt after `failures` earlier failures.
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }
}

struct State<K> {
    queue: VecDeque<K>,
    dirty: HashSet<K>,
    processing: HashSet<K>,
    failures: HashMap<K, u32>,
    shut_down: bool,
}

/// See the module documentation.
pub struct WorkQueue<K> {
    state: Mutex<State<K>>,
    notify: Notify,
    backoff: Backoff,
    stop: CancellationToken,
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    pub fn new(backoff: Backoff) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
                shut_down: false,
            }),
            notify: Notify::new(),
            backoff,
            stop: CancellationToken::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // A panic while holding the lock cannot leave the queue inconsistent in a way
        // that matters more than stopping, so a poisoned lock is simply taken over.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `key` now (no-op if it is already queued or the queue is shut down).
    pub fn add(&self, key: K) {
        let mut s = self.lock();
        if s.shut_down || s.dirty.contains(&key) {
            return;
        }
        s.dirty.insert(key.clone());
        if s.processing.contains(&key) {
            return; // re-queued by `done`
        }
        s.queue.push_back(key);
        drop(s);
        self.notify.notify_one();
    }

    /// Queue `key` after `delay`.
    pub fn add_after(self: &Arc<Self>, key: K, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let q = Arc::clone(self);
        tokio::spawn(async move {
            tokio::select! {
                _ = q.stop.cancelled() => {}
                _ = tokio::time::sleep(delay) => q.add(key),
            }
        });
    }

    /// Queue `key` after its backoff delay and count one more failure for it.
    pub fn add_rate_limited(self: &Arc<Self>, key: K) {
        let delay = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            let d = self.backoff.delay(*n);
            *n = n.saturating_add(1);
            d
        };
        self.add_after(key, delay);
    }

    /// Reset the failure count of `key`.
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// Number of failures recorded for `key`.
    pub fn failures(&self, key: &K) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Wait for the next key; `None` once the queue is shut down.
    pub async fn get(&self) -> Option<K> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if s.shut_down {
                    return None;
                }
                if let Some(k) = s.queue.pop_front() {
                    s.dirty.remove(&k);
                    s.processing.insert(k.clone());
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        // Pass the wake-up on, another worker may be idle.
                        self.notify.notify_one();
                    }
                    return Some(k);
                }
            }
            notified.await;
        }
    }

    /// Mark `key` as processed; it is queued again if it was added meanwhile.
    pub fn done(&self, key: &K) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) && !s.shut_down {
            s.queue.push_back(key.clone());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Stop handing out keys and drop pending delayed adds.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.stop.cancel();
        self.notify.notify_waiters();
    }

    /// Number of keys waiting to be handed out.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_table() {
        let b = Backoff {
            base: Duration::from_millis(5),
            max: Duration::from_secs(1),
        };
        let cases = [
            (0, 5),
            (1, 10),
            (2, 20),
            (5, 160),
            (8, 1000),
            (31, 1000),
            (1000, 1000),
        ];
        for (failures, ms) in cases {
            assert_eq!(
                b.delay(failures),
                Duration::from_millis(ms),
                "failures={failures}"
            );
        }
    }

    #[tokio::test]
    async fn dedups_and_orders() {
        let q = WorkQueue::new(Backoff::default());
        for k in ["a", "b", "a", "c", "b"] {
            q.add(k.to_string());
        }
        assert_eq!(q.len(), 3);
        let mut got = Vec::new();
        for _ in 0..3 {
            let k = q.get().await.expect("key");
            q.done(&k);
            got.push(k);
        }
        assert_eq!(got, ["a", "b", "c"]);
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn key_added_while_processing_is_requeued_on_done() {
        let q = WorkQueue::new(Backoff::default());
        q.add(1u32);
        let k = q.get().await.expect("key");
        q.add(1);
        assert!(q.is_empty(), "must not be handed out twice concurrently");
        q.done(&k);
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, Some(1));
    }

    #[tokio::test]
    async fn rate_limited_counts_and_forget_resets() {
        let q = WorkQueue::new(Backoff {
            base: Duration::from_millis(1),
            max: Duration::from_millis(4),
        });
        q.add_rate_limited(7u32);
        q.add_rate_limited(7u32);
        assert_eq!(q.failures(&7), 2);
        let k = tokio::time::timeout(Duration::from_secs(2), q.get())
            .await
            .expect("delayed add arrives");
        assert_eq!(k, Some(7));
        q.forget(&7);
        assert_eq!(q.failures(&7), 0);
    }

    #[tokio::test]
    async fn shut_down_wakes_waiters() {
        let q = WorkQueue::<u32>::new(Backoff::default());
        let q2 = Arc::clone(&q);
        let waiter = tokio::spawn(async move { q2.get().await });
        tokio::task::yield_now().await;
        q.shut_down();
        let r = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("woken")
            .expect("join");
        assert_eq!(r, None);
        q.add(1);
        assert!(q.is_empty());
    }
}
