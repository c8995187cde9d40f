//! The `RollingUpdate` strategy (upstream `rolling.go`): each sync either scales the new
//! ReplicaSet up within `maxSurge`, or scales old ReplicaSets down within
//! `maxUnavailable` (unavailable old replicas first), then writes the rollout status.
//!
//! Availability used to scale down is each ReplicaSet's `availableReplicas` capped at
//! its `spec.replicas` ([`rs_safe_available`]): replicas above the spec are about to be
//! deleted and must not be counted on.

use k8s_openapi::api::apps::v1::ReplicaSet;

use super::DeploymentError;
use super::sync::{Syncer, remember};
use super::util::*;

impl Syncer<'_> {
    /// One step of a rolling update (upstream `rolloutRolling`).
    pub async fn rollout_rolling(
        &mut self,
        rs_list: &mut Vec<ReplicaSet>,
    ) -> Result<(), DeploymentError> {
        let (new, mut old) = self.all_replica_sets(rs_list, true).await?;
        let Some(mut new) = new else {
            return Ok(());
        };
        if self.reconcile_new(&old, &mut new).await? {
            let all: Vec<&ReplicaSet> = old.iter().chain([&new]).collect();
            return self.sync_rollout_status(&all, Some(&new)).await;
        }
        if self.reconcile_old(&mut old, &new).await? {
            let all: Vec<&ReplicaSet> = old.iter().chain([&new]).collect();
            return self.sync_rollout_status(&all, Some(&new)).await;
        }
        let status = self.d.status.clone().unwrap_or_default();
        if deployment_complete(&self.d, &status) {
            self.cleanup(&old).await?;
        }
        let all: Vec<&ReplicaSet> = old.iter().chain([&new]).collect();
        self.sync_rollout_status(&all, Some(&new)).await
    }

    /// Scale the new ReplicaSet towards `spec.replicas` (upstream
    /// `reconcileNewReplicaSet`).
    async fn reconcile_new(
        &mut self,
        old: &[ReplicaSet],
        new: &mut ReplicaSet,
    ) -> Result<bool, DeploymentError> {
        let want = replicas(&self.d);
        let have = rs_replicas(new);
        if have == want {
            return Ok(false);
        }
        let target = if have > want {
            want
        } else {
            let all: Vec<&ReplicaSet> = old.iter().chain([&*new]).collect();
            new_rs_new_replicas(&self.d, &all, new)?
        };
        let (scaled, updated) = self.scale_and_record(new, target).await?;
        *new = updated;
        Ok(scaled)
    }

    /// Scale old ReplicaSets down as far as availability allows (upstream
    /// `reconcileOldReplicaSets`).
    async fn reconcile_old(
        &mut self,
        old: &mut [ReplicaSet],
        new: &ReplicaSet,
    ) -> Result<bool, DeploymentError> {
        let old_pods = spec_replicas(old.iter().filter(|r| is_active(r)));
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods = spec_replicas(old.iter().filter(|r| is_active(r)).chain([new]));
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let new_unavailable = rs_replicas(new) - rs_safe_available(new);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let cleaned = self.cleanup_unhealthy(old, max_scaled_down).await?;
        let scaled = self.scale_down_old(old, new).await?;
        Ok(cleaned + scaled > 0)
    }

    /// Scale down old ReplicaSets' unavailable replicas first: removing them cannot
    /// lower availability (upstream `cleanupUnhealthyReplicas`).
    async fn cleanup_unhealthy(
        &mut self,
        old: &mut [ReplicaSet],
        max_cleanup: i32,
    ) -> Result<i32, DeploymentError> {
        old.sort_by(by_creation);
        let mut total = 0;
        for slot in old.iter_mut() {
            if total >= max_cleanup {
                break;
            }
            let target = &*slot;
            let spec = rs_replicas(target);
            let unhealthy = spec - rs_safe_available(target);
            if spec == 0 || unhealthy == 0 {
                continue;
            }
            let down = (max_cleanup - total).min(unhealthy);
            let target = target.clone();
            let (_, updated) = self.scale_and_record(&target, spec - down).await?;
            *slot = updated;
            total += down;
        }
        Ok(total)
    }

    /// Scale old ReplicaSets down (oldest first) while availability stays at least
    /// `spec.replicas - maxUnavailable` (upstream `scaleDownOldReplicaSetsForRollingUpdate`).
    async fn scale_down_old(
        &mut self,
        old: &mut [ReplicaSet],
        new: &ReplicaSet,
    ) -> Result<i32, DeploymentError> {
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let available: i32 = old.iter().chain([new]).map(rs_safe_available).sum();
        if available <= min_available {
            return Ok(0);
        }
        old.sort_by(by_creation);
        let budget = available - min_available;
        let mut total = 0;
        let mut none = None;
        for i in 0..old.len() {
            if total >= budget {
                break;
            }
            let spec = rs_replicas(&old[i]);
            if spec == 0 {
                continue;
            }
            let down = spec.min(budget - total);
            let target = old[i].clone();
            let (_, updated) = self.scale_and_record(&target, spec - down).await?;
            remember(&mut none, old, updated);
            total += down;
        }
        Ok(total)
    }
}
