//! The pod lifecycle event generator (upstream's PLEG) and the runtime cache it
//! keeps: one node-wide container list, shared by every pod worker.
//!
//! Without it each pod worker listed every container of the node (from the
//! runtime's state on disk) several times per resync, so the kubelet's idle work grew
//! with the square of the pod count. Now [`ContainerCache`] holds the latest list;
//! [`run`] relists once per period and wakes only the workers whose pods' containers
//! changed; a worker that changed a container itself asks for a list taken after its
//! change ([`ContainerCache::newer_than`], upstream's `GetNewerThan`), and concurrent
//! requests share one relist.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::runtime::{ContainerInfo, ContainerState, PodRuntime, RuntimeError};

/// How often the node's containers are relisted (upstream: 1 s).
pub const RELIST_PERIOD: Duration = Duration::from_secs(1);

struct Snapshot {
    /// When the list was started: every change made before is in it.
    taken: Instant,
    containers: Arc<Vec<ContainerInfo>>,
}

/// The latest node-wide container list.
pub struct ContainerCache {
    runtime: Arc<dyn PodRuntime>,
    snapshot: Mutex<Option<Snapshot>>,
    /// Held while relisting, so concurrent callers share one list.
    relisting: tokio::sync::Mutex<()>,
}

impl ContainerCache {
    pub fn new(runtime: Arc<dyn PodRuntime>) -> Self {
        ContainerCache {
            runtime,
            snapshot: Mutex::new(None),
            relisting: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self, after: Option<Instant>) -> Option<Arc<Vec<ContainerInfo>>> {
        let s = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        s.as_ref()
            .filter(|s| after.is_none_or(|t| s.taken >= t))
            .map(|s| s.containers.clone())
    }

    /// Every container of the node, listed no earlier than `after` (`None`: any
    /// list will do, the latest one is returned).
    pub async fn newer_than(
        &self,
        after: Option<Instant>,
    ) -> Result<Arc<Vec<ContainerInfo>>, RuntimeError> {
        if let Some(c) = self.current(after) {
            return Ok(c);
        }
        let _relist = self.relisting.lock().await;
        // Someone else may have relisted while this caller waited.
        if let Some(c) = self.current(after) {
            return Ok(c);
        }
        let taken = Instant::now();
        let list = Arc::new(self.runtime.list_containers(None).await?);
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Snapshot {
            taken,
            containers: list.clone(),
        });
        Ok(list)
    }

    /// The containers of one pod, listed no earlier than `after`.
    pub async fn pod(
        &self,
        pod_uid: &str,
        after: Option<Instant>,
    ) -> Result<Vec<ContainerInfo>, RuntimeError> {
        Ok(self
            .newer_than(after)
            .await?
            .iter()
            .filter(|c| c.pod_uid == pod_uid)
            .cloned()
            .collect())
    }
}

/// Per-pod wake-ups: pod workers register here and are notified when their pod's
/// containers change.
#[derive(Default)]
pub struct Wakers(Mutex<HashMap<String, Arc<Notify>>>);

impl Wakers {
    /// The notifier of pod `uid` (registered on first use).
    pub fn register(&self, uid: &str) -> Arc<Notify> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(uid.to_string())
            .or_default()
            .clone()
    }

    pub fn unregister(&self, uid: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }

    fn wake(&self, uid: &str) {
        if let Some(n) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(uid) {
            n.notify_one();
        }
    }
}

/// What a relist compares per container.
type Fingerprint = Vec<(String, ContainerState, Option<i32>)>;

fn fingerprints(list: &[ContainerInfo]) -> HashMap<&str, Fingerprint> {
    let mut out: HashMap<&str, Fingerprint> = HashMap::new();
    for c in list {
        out.entry(c.pod_uid.as_str())
            .or_default()
            .push((c.id.clone(), c.state, c.exit_code));
    }
    for v in out.values_mut() {
        v.sort_by(|a, b| a.0.cmp(&b.0));
    }
    out
}

/// The pods whose containers differ between two lists.
fn changed_pods(old: &[ContainerInfo], new: &[ContainerInfo]) -> Vec<String> {
    let (a, b) = (fingerprints(old), fingerprints(new));
    let mut out: Vec<String> = a
        .iter()
        .filter(|(uid, f)| b.get(*uid) != Some(*f))
        .map(|(uid, _)| uid.to_string())
        .collect();
    out.extend(
        b.keys()
            .filter(|uid| !a.contains_key(*uid))
            .map(|uid| uid.to_string()),
    );
    out
}

/// Relist every `period` until `shutdown`, waking the workers of changed pods.
pub async fn run(
    cache: Arc<ContainerCache>,
    wakers: Arc<Wakers>,
    period: Duration,
    shutdown: CancellationToken,
) {
    let mut previous: Arc<Vec<ContainerInfo>> = Arc::new(Vec::new());
    loop {
        match cache.newer_than(Some(Instant::now())).await {
            Ok(list) => {
                for uid in changed_pods(&previous, &list) {
                    wakers.wake(&uid);
                }
                previous = list;
            }
            Err(e) => tracing::warn!("relisting containers: {e}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn info(pod: &str, id: &str, state: ContainerState, exit: Option<i32>) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            pod_uid: pod.into(),
            name: "c".into(),
            attempt: 0,
            image: "i".into(),
            image_id: String::new(),
            state,
            exit_code: exit,
            reason: None,
            message: None,
            created_at: Timestamp::UNIX_EPOCH,
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn changed_pods_sees_new_gone_and_changed_containers() {
        use ContainerState::*;
        let old = vec![
            info("a", "1", Running, None),
            info("b", "2", Running, None),
            info("c", "3", Running, None),
        ];
        let new = vec![
            info("a", "1", Running, None),
            info("b", "2", Exited, Some(1)),
            info("d", "4", Created, None),
        ];
        let mut got = changed_pods(&old, &new);
        got.sort();
        assert_eq!(got, vec!["b", "c", "d"]);
        assert!(changed_pods(&new, &new).is_empty());
        // A restarted container (new id) is a change even with the same state.
        let restarted = vec![
            info("a", "9", Running, None),
            info("b", "2", Exited, Some(1)),
            info("d", "4", Created, None),
        ];
        assert_eq!(changed_pods(&new, &restarted), vec!["a"]);
    }

    #[tokio::test]
    async fn newer_than_reuses_a_fresh_list_and_relists_after_a_change() {
        let rt = Arc::new(crate::runtime::FakeRuntime::new());
        let cache = ContainerCache::new(rt.clone());
        let first = cache.newer_than(None).await.unwrap();
        // Any list will do: the same one is returned without relisting.
        let again = cache.newer_than(None).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let before = Instant::now();
        let fresh = cache.newer_than(Some(before)).await.unwrap();
        assert!(
            !Arc::ptr_eq(&first, &fresh),
            "a list older than asked for was reused"
        );
        let reused = cache.newer_than(Some(before)).await.unwrap();
        assert!(Arc::ptr_eq(&fresh, &reused));
    }
}
