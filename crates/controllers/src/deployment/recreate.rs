//! The `Recreate` strategy (upstream `recreate.go`): old ReplicaSets are scaled to zero,
//! and only once none of their pods is left running is the new ReplicaSet created (or
//! found) and scaled to `spec.replicas`.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

use super::DeploymentError;
use super::sync::{Syncer, remember};
use super::util::*;

/// Pods of the Deployment by the uid of the ReplicaSet controlling them.
pub type PodMap = HashMap<String, Vec<Arc<Pod>>>;

/// Whether any pod of an old ReplicaSet may still be running (upstream
/// `oldPodsRunning`): old ReplicaSets report replicas, or a pod of theirs is not in a
/// terminal phase (terminating pods count until they are gone).
pub fn old_pods_running(new: Option<&ReplicaSet>, old: &[ReplicaSet], pods: &PodMap) -> bool {
    if actual_replicas(old) > 0 {
        return true;
    }
    let new_uid = new.and_then(|n| n.metadata.uid.as_deref());
    pods.iter()
        .filter(|(uid, _)| Some(uid.as_str()) != new_uid)
        .flat_map(|(_, pods)| pods)
        .any(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded") | Some("Failed")
            )
        })
}

impl Syncer<'_> {
    /// One step of a Recreate rollout (upstream `rolloutRecreate`).
    pub async fn rollout_recreate(
        &mut self,
        rs_list: &mut Vec<ReplicaSet>,
        pods: &PodMap,
    ) -> Result<(), DeploymentError> {
        // No new ReplicaSet yet: nothing may start before the old pods are gone.
        let (mut new, mut old) = self.all_replica_sets(rs_list, false).await?;
        let mut scaled_down = false;
        let active: Vec<ReplicaSet> = old.iter().filter(|r| is_active(r)).cloned().collect();
        for rs in &active {
            let (scaled, updated) = self.scale_and_record(rs, 0).await?;
            scaled_down |= scaled;
            remember(&mut new, &mut old, updated);
        }
        if scaled_down || old_pods_running(new.as_ref(), &old, pods) {
            let all: Vec<&ReplicaSet> = old.iter().chain(new.as_ref()).collect();
            return self.sync_rollout_status(&all, new.as_ref()).await;
        }
        if new.is_none() {
            (new, old) = self.all_replica_sets(rs_list, true).await?;
        }
        if let Some(n) = new.clone() {
            let (_, updated) = self.scale_and_record(&n, replicas(&self.d)).await?;
            new = Some(updated);
        }
        let status = self.d.status.clone().unwrap_or_default();
        if deployment_complete(&self.d, &status) {
            self.cleanup(&old).await?;
        }
        let all: Vec<&ReplicaSet> = old.iter().chain(new.as_ref()).collect();
        self.sync_rollout_status(&all, new.as_ref()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetStatus;
    use k8s_openapi::api::core::v1::PodStatus;
    use kube::api::ObjectMeta;

    fn rs(uid: &str, status_replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                ..Default::default()
            },
            spec: None,
            status: Some(ReplicaSetStatus {
                replicas: status_replicas,
                ..Default::default()
            }),
        }
    }

    fn pod(phase: &str) -> Arc<Pod> {
        Arc::new(Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn old_pods() {
        let new = rs("new", 3);
        let cases = [
            ("old replicas reported", vec![rs("old", 1)], vec![], true),
            (
                "no old pods",
                vec![rs("old", 0)],
                vec![("new", "Running")],
                false,
            ),
            (
                "old pod running",
                vec![rs("old", 0)],
                vec![("old", "Running")],
                true,
            ),
            (
                "old pod unknown",
                vec![rs("old", 0)],
                vec![("old", "Unknown")],
                true,
            ),
            (
                "old pod finished",
                vec![rs("old", 0)],
                vec![("old", "Succeeded"), ("old", "Failed")],
                false,
            ),
        ];
        for (name, old, pods, want) in cases {
            let mut map = PodMap::new();
            for (uid, phase) in pods {
                map.entry(uid.to_string()).or_default().push(pod(phase));
            }
            assert_eq!(old_pods_running(Some(&new), &old, &map), want, "{name}");
        }
    }
}
