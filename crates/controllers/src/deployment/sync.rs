//! The steps shared by every Deployment sync (upstream `sync.go` and `progress.go`):
//! finding or creating the new ReplicaSet and keeping revisions in order, scaling
//! (proportionally while a rollout is in flight), cleaning up old ReplicaSets beyond
//! `revisionHistoryLimit`, and writing the status with its conditions.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::ObjectMeta;

use super::DeploymentError;
use super::control::DeploymentClient;
use super::util::*;
use crate::events::{NORMAL, WARNING};
use crate::replicaset::claim::{controller_of, controller_ref};
use crate::replicaset::control::{error_message, namespace_terminating};

/// One sync of one Deployment: the working copy of the Deployment (updated after each
/// write) and what the sync decided about requeueing.
pub struct Syncer<'a> {
    pub client: &'a dyn DeploymentClient,
    pub d: Deployment,
    pub now: Timestamp,
    /// Look at the Deployment again after this long (progress deadline checks).
    pub requeue_after: Option<Duration>,
}

fn rs_name(rs: &ReplicaSet) -> String {
    rs.name_any()
}

impl<'a> Syncer<'a> {
    pub fn new(client: &'a dyn DeploymentClient, d: Deployment, now: Timestamp) -> Self {
        Syncer {
            client,
            d,
            now,
            requeue_after: None,
        }
    }

    fn status_mut(&mut self) -> &mut k8s_openapi::api::apps::v1::DeploymentStatus {
        self.d.status.get_or_insert_with(Default::default)
    }

    fn template(&self) -> PodTemplateSpec {
        self.d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default()
    }

    /// Write the working copy's status (and revision annotation) and continue with what
    /// the server returned.
    pub async fn write_status(&mut self) -> Result<(), DeploymentError> {
        self.d = self.client.update_deployment_status(&self.d).await?;
        Ok(())
    }

    async fn event(&self, type_: &str, reason: &str, message: &str) {
        self.client.event(&self.d, type_, reason, message).await;
    }

    /// The new ReplicaSet (created when `create` and missing) and the old ones, with
    /// revisions synced (upstream `getAllReplicaSetsAndSyncRevision`). `rs_list` is
    /// kept up to date with what was written.
    pub async fn all_replica_sets(
        &mut self,
        rs_list: &mut Vec<ReplicaSet>,
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), DeploymentError> {
        let new_idx = find_new_replica_set(&self.d, rs_list);
        let old: Vec<ReplicaSet> = rs_list
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new_idx)
            .map(|(_, r)| r.clone())
            .collect();
        let new = self.new_replica_set(rs_list, new_idx, &old, create).await?;
        Ok((new, old))
    }

    async fn new_replica_set(
        &mut self,
        rs_list: &mut Vec<ReplicaSet>,
        existing: Option<usize>,
        old: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>, DeploymentError> {
        let new_revision = (max_revision(old) + 1).to_string();
        if let Some(i) = existing {
            let mut rs = rs_list[i].clone();
            let annotations_updated = set_new_replica_set_annotations(
                &self.d,
                &mut rs,
                &new_revision,
                true,
                MAX_REV_HISTORY_LENGTH_IN_CHARS,
            );
            let min_ready = min_ready_seconds(&self.d);
            let spec = rs.spec.get_or_insert_with(Default::default);
            let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready;
            if annotations_updated || min_ready_changed {
                spec.min_ready_seconds = Some(min_ready);
                let updated = self.client.update_replica_set(&rs).await?;
                rs_list[i] = updated.clone();
                return Ok(Some(updated));
            }
            let rev = rs
                .annotations()
                .get(REVISION_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            let mut needs_update = set_deployment_revision(&mut self.d, &rev);
            if progress_deadline(&self.d).is_some()
                && get_condition(self.status_mut(), PROGRESSING).is_none()
            {
                let c = new_condition(
                    PROGRESSING,
                    "True",
                    FOUND_NEW_RS_REASON,
                    &format!("Found new replica set {:?}", rs_name(&rs)),
                    self.now,
                );
                set_condition(self.status_mut(), c);
                needs_update = true;
            }
            if needs_update {
                self.write_status().await?;
            }
            return Ok(Some(rs));
        }
        if !create {
            return Ok(None);
        }

        let template = self.template();
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = compute_hash(&template, collision_count);
        let mut new_template = template.clone();
        let labels = clone_and_add_label(
            template.metadata.as_ref().and_then(|m| m.labels.as_ref()),
            UNIQUE_LABEL_KEY,
            &hash,
        );
        new_template
            .metadata
            .get_or_insert_with(Default::default)
            .labels = Some(labels.clone());
        let selector = self
            .d
            .spec
            .as_ref()
            .map(|s| clone_selector_and_add_label(&s.selector, UNIQUE_LABEL_KEY, &hash))
            .unwrap_or_default();
        let name = format!("{}-{hash}", self.d.name_any());
        let mut new_rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.namespace(),
                owner_references: Some(vec![controller_ref(
                    super::API_VERSION,
                    super::KIND,
                    &self.d.metadata,
                )]),
                labels: Some(labels),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: Some(min_ready_seconds(&self.d)),
                selector,
                template: Some(new_template),
            }),
            status: None,
        };
        let all: Vec<&ReplicaSet> = old.iter().chain(std::iter::once(&new_rs)).collect();
        let count = new_rs_new_replicas(&self.d, &all, &new_rs)?;
        if let Some(s) = new_rs.spec.as_mut() {
            s.replicas = Some(count);
        }
        set_new_replica_set_annotations(
            &self.d,
            &mut new_rs,
            &new_revision,
            false,
            MAX_REV_HISTORY_LENGTH_IN_CHARS,
        );

        let (created, already_existed) = match self.client.create_replica_set(&new_rs).await {
            Ok(rs) => (rs, false),
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                let ns = self.d.namespace().unwrap_or_default();
                let found = self.client.get_replica_set(&ns, &name).await?;
                let ours = found.as_ref().is_some_and(|rs| {
                    controller_of(&rs.metadata).map(|r| r.uid.as_str())
                        == self.d.metadata.uid.as_deref()
                        && rs
                            .spec
                            .as_ref()
                            .and_then(|s| s.template.as_ref())
                            .is_some_and(|t| equal_ignore_hash(t, &template))
                });
                match found {
                    Some(rs) if ours => (rs, true),
                    _ => {
                        // A hash collision: another template has this name. Bump the
                        // collision count so the next sync computes another hash.
                        let status = self.status_mut();
                        status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                        self.write_status().await?;
                        return Err(DeploymentError::HashCollision(name));
                    }
                }
            }
            Err(e) if namespace_terminating(&e) => return Err(e.into()),
            Err(e) => {
                let msg = format!(
                    "Failed to create new replica set {name:?}: {}",
                    error_message(&e)
                );
                if progress_deadline(&self.d).is_some() {
                    let c = new_condition(
                        PROGRESSING,
                        "False",
                        FAILED_RS_CREATE_REASON,
                        &msg,
                        self.now,
                    );
                    set_condition(self.status_mut(), c);
                    // The creation error is the one to report.
                    let _ = self.write_status().await;
                }
                self.event(WARNING, FAILED_RS_CREATE_REASON, &msg).await;
                return Err(e.into());
            }
        };
        if !already_existed && count > 0 {
            let msg = format!(
                "Scaled up replica set {} from 0 to {count}",
                rs_name(&created)
            );
            self.event(NORMAL, "ScalingReplicaSet", &msg).await;
        }
        let mut needs_update = set_deployment_revision(&mut self.d, &new_revision);
        if !already_existed && progress_deadline(&self.d).is_some() {
            let msg = format!("Created new replica set {:?}", rs_name(&created));
            let c = new_condition(PROGRESSING, "True", NEW_RS_REASON, &msg, self.now);
            set_condition(self.status_mut(), c);
            needs_update = true;
        }
        if needs_update {
            self.write_status().await?;
        }
        if !rs_list
            .iter()
            .any(|r| r.metadata.name == created.metadata.name)
        {
            rs_list.push(created.clone());
        }
        Ok(Some(created))
    }

    /// Scale `rs` to `new_scale` with a `ScalingReplicaSet` event; returns whether it was
    /// scaled and the ReplicaSet as written.
    pub async fn scale_and_record(
        &mut self,
        rs: &ReplicaSet,
        new_scale: i32,
    ) -> Result<(bool, ReplicaSet), DeploymentError> {
        if rs_replicas(rs) == new_scale {
            return Ok((false, rs.clone()));
        }
        let op = if rs_replicas(rs) < new_scale {
            "up"
        } else {
            "down"
        };
        self.scale_replica_set(rs, new_scale, op).await
    }

    /// Set `spec.replicas` and the replica annotations of `rs` (upstream
    /// `scaleReplicaSet`).
    pub async fn scale_replica_set(
        &mut self,
        rs: &ReplicaSet,
        new_scale: i32,
        op: &str,
    ) -> Result<(bool, ReplicaSet), DeploymentError> {
        let old = rs_replicas(rs);
        let size_changed = old != new_scale;
        let desired = replicas(&self.d);
        let max = desired + max_surge(&self.d);
        if !size_changed && !replicas_annotations_need_update(rs, desired, max) {
            return Ok((false, rs.clone()));
        }
        let mut copy = rs.clone();
        copy.spec.get_or_insert_with(Default::default).replicas = Some(new_scale);
        set_replicas_annotations(&mut copy, desired, max);
        let updated = self.client.update_replica_set(&copy).await?;
        if size_changed {
            let msg = format!(
                "Scaled {op} replica set {} from {old} to {new_scale}",
                rs_name(&updated)
            );
            self.event(NORMAL, "ScalingReplicaSet", &msg).await;
        }
        Ok((size_changed, updated))
    }

    /// Whether `spec.replicas` changed since the active ReplicaSets were last scaled
    /// (upstream `isScalingEvent`).
    pub async fn is_scaling_event(
        &mut self,
        rs_list: &mut Vec<ReplicaSet>,
    ) -> Result<bool, DeploymentError> {
        let (new, old) = self.all_replica_sets(rs_list, false).await?;
        let want = replicas(&self.d);
        Ok(old
            .iter()
            .chain(new.as_ref())
            .filter(|r| is_active(r))
            .filter_map(desired_replicas_annotation)
            .any(|d| d != want))
    }

    /// Scale only: for paused Deployments and `spec.replicas` changes (upstream `sync`).
    pub async fn sync(&mut self, rs_list: &mut Vec<ReplicaSet>) -> Result<(), DeploymentError> {
        let (mut new, mut old) = self.all_replica_sets(rs_list, false).await?;
        self.scale(&mut new, &mut old).await?;
        if is_paused(&self.d) {
            self.cleanup(&old).await?;
        }
        let all: Vec<&ReplicaSet> = old.iter().chain(new.as_ref()).collect();
        self.sync_status(&all, new.as_ref()).await
    }

    /// Only the status (a Deployment being deleted).
    pub async fn sync_status_only(
        &mut self,
        rs_list: &mut Vec<ReplicaSet>,
    ) -> Result<(), DeploymentError> {
        let (new, old) = self.all_replica_sets(rs_list, false).await?;
        let all: Vec<&ReplicaSet> = old.iter().chain(new.as_ref()).collect();
        self.sync_status(&all, new.as_ref()).await
    }

    /// Scale the ReplicaSets to a changed `spec.replicas` (upstream `scale`): a single
    /// active ReplicaSet takes it all, a saturated new one makes the old ones go to
    /// zero, otherwise the difference is spread proportionally (largest first).
    async fn scale(
        &mut self,
        new: &mut Option<ReplicaSet>,
        old: &mut [ReplicaSet],
    ) -> Result<(), DeploymentError> {
        let want = replicas(&self.d);
        if let Some(target) = find_active_or_latest(new.as_ref(), old) {
            if rs_replicas(&target) != want {
                let (_, updated) = self.scale_and_record(&target, want).await?;
                remember(new, old, updated);
            }
            return Ok(());
        }
        if is_saturated(&self.d, new.as_ref()) {
            let active: Vec<ReplicaSet> = old.iter().filter(|r| is_active(r)).cloned().collect();
            for o in &active {
                let (_, updated) = self.scale_and_record(o, 0).await?;
                remember(new, old, updated);
            }
            return Ok(());
        }
        if !is_rolling_update(&self.d) {
            return Ok(());
        }
        let mut all: Vec<ReplicaSet> = old
            .iter()
            .chain(new.as_ref())
            .filter(|r| is_active(r))
            .cloned()
            .collect();
        let current = spec_replicas(&all);
        let allowed = if want > 0 {
            want + max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - current;
        let op = match to_add.signum() {
            1 => {
                all.sort_by(by_size_newer);
                "up"
            }
            -1 => {
                all.sort_by(by_size_older);
                "down"
            }
            _ => "",
        };
        let mut added = 0;
        let mut sizes = Vec::with_capacity(all.len());
        for rs in &all {
            if to_add != 0 {
                let p = replica_set_proportion(rs, &self.d, to_add, added);
                sizes.push(rs_replicas(rs) + p);
                added += p;
            } else {
                sizes.push(rs_replicas(rs));
            }
        }
        for (i, rs) in all.iter().enumerate() {
            if i == 0 && to_add != 0 {
                // Leftovers go to (or come from) the largest ReplicaSet.
                sizes[0] = (sizes[0] + to_add - added).max(0);
            }
            let (_, updated) = self.scale_replica_set(rs, sizes[i], op).await?;
            remember(new, old, updated);
        }
        Ok(())
    }

    /// Delete the oldest zero-replica ReplicaSets beyond `revisionHistoryLimit`
    /// (upstream `cleanupDeployment`).
    pub async fn cleanup(&mut self, old: &[ReplicaSet]) -> Result<(), DeploymentError> {
        let Some(limit) = revision_history_limit(&self.d) else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = old
            .iter()
            .filter(|r| r.metadata.deletion_timestamp.is_none())
            .collect();
        let diff = i64::try_from(cleanable.len()).unwrap_or(i64::MAX) - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| by_revision(a, b));
        for rs in cleanable
            .into_iter()
            .take(usize::try_from(diff).unwrap_or(0))
        {
            let st = rs.status.clone().unwrap_or_default();
            if st.replicas != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > st.observed_generation.unwrap_or(0)
            {
                continue;
            }
            let ns = rs.namespace().unwrap_or_default();
            match self.client.delete_replica_set(&ns, &rs.name_any()).await {
                Ok(()) => {}
                Err(e) if crate::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Write the calculated status when it changed (upstream `syncDeploymentStatus`).
    pub async fn sync_status(
        &mut self,
        all: &[&ReplicaSet],
        new: Option<&ReplicaSet>,
    ) -> Result<(), DeploymentError> {
        let status = calculate_status(all, new, &self.d, self.now);
        if normalize_status(self.d.status.as_ref()) == status {
            return Ok(());
        }
        self.d.status = Some(status);
        self.write_status().await
    }

    /// The status with the `Progressing` condition of a rollout in flight (upstream
    /// `syncRolloutStatus`), and when to check the progress deadline again.
    pub async fn sync_rollout_status(
        &mut self,
        all: &[&ReplicaSet],
        new: Option<&ReplicaSet>,
    ) -> Result<(), DeploymentError> {
        let mut status = calculate_status(all, new, &self.d, self.now);
        let has_deadline = progress_deadline(&self.d).is_some();
        if !has_deadline {
            remove_condition(&mut status, PROGRESSING);
        }
        let current = self
            .d
            .status
            .as_ref()
            .and_then(|s| get_condition(s, PROGRESSING))
            .cloned();
        let complete_already = status.replicas == status.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE_REASON);
        let name = self.d.name_any();
        let subject = |what: &str| match new {
            Some(rs) => format!("ReplicaSet {:?} {what}", rs_name(rs)),
            None => format!("Deployment {name:?} {what}"),
        };
        if has_deadline && !complete_already {
            if deployment_complete(&self.d, &status) {
                let c = new_condition(
                    PROGRESSING,
                    "True",
                    NEW_RS_AVAILABLE_REASON,
                    &subject("has successfully progressed."),
                    self.now,
                );
                set_condition(&mut status, c);
            } else if deployment_progressing(&self.d, &status) {
                let mut c = new_condition(
                    PROGRESSING,
                    "True",
                    RS_UPDATED_REASON,
                    &subject("is progressing."),
                    self.now,
                );
                if let Some(cur) = &current {
                    if cur.status == "True" {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    remove_condition(&mut status, PROGRESSING);
                }
                set_condition(&mut status, c);
            } else if deployment_timed_out(&self.d, &status, self.now) {
                let c = new_condition(
                    PROGRESSING,
                    "False",
                    TIMED_OUT_REASON,
                    &subject("has timed out progressing."),
                    self.now,
                );
                set_condition(&mut status, c);
            }
        }
        match replica_failure(all, new) {
            Some(c) => set_condition(&mut status, c),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        if normalize_status(self.d.status.as_ref()) == status {
            self.requeue_stuck(&status);
            return Ok(());
        }
        self.d.status = Some(status);
        self.write_status().await
    }

    /// Schedule a progress-deadline check for a rollout that made no progress
    /// (upstream `requeueStuckDeployment`).
    fn requeue_stuck(&mut self, new: &k8s_openapi::api::apps::v1::DeploymentStatus) {
        let Some(deadline) = progress_deadline(&self.d) else {
            return;
        };
        let Some(cur) = self
            .d
            .status
            .as_ref()
            .and_then(|s| get_condition(s, PROGRESSING))
        else {
            return;
        };
        if deployment_complete(&self.d, new) || cur.reason.as_deref() == Some(TIMED_OUT_REASON) {
            return;
        }
        let Some(updated) = cur.last_update_time.as_ref().map(|t| t.0) else {
            return;
        };
        let due = updated
            .checked_add(SignedDuration::from_secs(i64::from(deadline)))
            .unwrap_or(updated);
        let after = due.duration_since(self.now);
        let secs = after.as_secs().max(0);
        // A second more against clock skew, as upstream.
        self.requeue_after = Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0) + 1));
    }

    /// Mark pausing and resuming in the `Progressing` condition so a resumed rollout
    /// gets its full deadline (upstream `checkPausedConditions`).
    pub async fn check_paused_conditions(&mut self) -> Result<(), DeploymentError> {
        if progress_deadline(&self.d).is_none() {
            return Ok(());
        }
        let cond = self
            .d
            .status
            .as_ref()
            .and_then(|s| get_condition(s, PROGRESSING))
            .cloned();
        let reason = cond.as_ref().and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT_REASON) {
            return Ok(());
        }
        let paused_recorded = reason.as_deref() == Some(PAUSED_REASON);
        let paused = is_paused(&self.d);
        let c = if paused && !paused_recorded {
            new_condition(
                PROGRESSING,
                "Unknown",
                PAUSED_REASON,
                "Deployment is paused",
                self.now,
            )
        } else if !paused && paused_recorded {
            new_condition(
                PROGRESSING,
                "Unknown",
                RESUMED_REASON,
                "Deployment is resumed",
                self.now,
            )
        } else {
            return Ok(());
        };
        set_condition(self.status_mut(), c);
        self.write_status().await
    }
}

/// Replace the copy of `updated` (by name) in `new` or `old` with what was written.
pub fn remember(new: &mut Option<ReplicaSet>, old: &mut [ReplicaSet], updated: ReplicaSet) {
    if let Some(n) = new
        .as_mut()
        .filter(|n| n.metadata.name == updated.metadata.name)
    {
        *n = updated;
    } else if let Some(o) = old
        .iter_mut()
        .find(|o| o.metadata.name == updated.metadata.name)
    {
        *o = updated;
    }
}

/// The single active ReplicaSet, or the newest when none is active; `None` when several
/// are active (upstream `FindActiveOrLatest`).
pub fn find_active_or_latest(new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Option<ReplicaSet> {
    if new.is_none() && old.is_empty() {
        return None;
    }
    let mut olds: Vec<&ReplicaSet> = old.iter().collect();
    olds.sort_by(|a, b| by_creation(b, a));
    let active: Vec<&ReplicaSet> = olds
        .iter()
        .copied()
        .chain(new)
        .filter(|r| is_active(r))
        .collect();
    match active.len() {
        0 => new.or(olds.first().copied()).cloned(),
        1 => Some(active[0].clone()),
        _ => None,
    }
}

/// The `ReplicaFailure` condition to report: the new ReplicaSet's first, else any old
/// one's (upstream `getReplicaFailures`).
fn replica_failure(
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
) -> Option<k8s_openapi::api::apps::v1::DeploymentCondition> {
    let failure = |rs: &ReplicaSet| {
        rs.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == REPLICA_FAILURE))
            .map(rs_condition_to_deployment)
    };
    new.and_then(failure)
        .or_else(|| all.iter().find_map(|rs| failure(rs)))
}
