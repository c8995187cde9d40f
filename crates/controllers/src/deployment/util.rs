//! Pure helpers of the Deployment controller (upstream `pkg/controller/deployment/util`):
//! the template hash and its label, revision and replica annotations, `maxSurge` /
//! `maxUnavailable` arithmetic, ReplicaSet orderings, proportional scaling, and the
//! status with its `Available` / `Progressing` conditions.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetCondition,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::replicaset::status::non_zero;

/// Label with the template hash on a Deployment's ReplicaSets and pods.
pub const UNIQUE_LABEL_KEY: &str = "pod-template-hash";
/// The revision of a ReplicaSet (and the Deployment's current one).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions of a ReplicaSet whose template was rolled back to.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// `spec.replicas` of the Deployment when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` of the Deployment when the ReplicaSet was last scaled.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
/// The extensions/v1beta1 rollback request; never copied to ReplicaSets.
pub const ROLLBACK_TO_ANNOTATION: &str = "deprecated.deployment.rollback.to";
/// kubectl's client-side apply record; never copied to ReplicaSets.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Longest `revision-history` annotation kept (upstream `maxRevHistoryLengthInChars`).
pub const MAX_REV_HISTORY_LENGTH_IN_CHARS: usize = 2000;

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

pub const NEW_RS_REASON: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
pub const RS_UPDATED_REASON: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
pub const PAUSED_REASON: &str = "DeploymentPaused";
pub const RESUMED_REASON: &str = "DeploymentResumed";
pub const FAILED_RS_CREATE_REASON: &str = "ReplicaSetCreateError";
pub const MIN_AVAILABLE_REASON: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE_REASON: &str = "MinimumReplicasUnavailable";

pub const ROLLING_UPDATE: &str = "RollingUpdate";
pub const RECREATE: &str = "Recreate";

/// A bad `maxSurge` / `maxUnavailable` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntOrPercentError {
    #[error("invalid type: string is not a percentage")]
    NotPercent,
    #[error("invalid value {0:?}: not an integer percentage")]
    BadPercent(String),
}

/// `spec.replicas` of a Deployment (defaulted to 1 by the API server).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.replicas` of a ReplicaSet.
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_status(rs: &ReplicaSet) -> (i32, i32, i32) {
    rs.status.as_ref().map_or((0, 0, 0), |s| {
        (
            s.replicas,
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0),
        )
    })
}

/// `status.availableReplicas` of a ReplicaSet.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs_status(rs).2
}

/// Available replicas a ReplicaSet can be relied on to keep: never more than its
/// `spec.replicas`, because pods above it are about to be deleted (its status may not
/// have caught up with a scale-down yet).
pub fn rs_safe_available(rs: &ReplicaSet) -> i32 {
    rs_available(rs).min(rs_replicas(rs))
}

/// The strategy type (`RollingUpdate` unless set).
pub fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or(ROLLING_UPDATE)
}

pub fn is_rolling_update(d: &Deployment) -> bool {
    strategy_type(d) == ROLLING_UPDATE
}

pub fn is_paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

pub fn min_ready_seconds(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// `progressDeadlineSeconds`, unless unset or "no deadline" (`MaxInt32`).
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|v| *v != i32::MAX)
}

/// `revisionHistoryLimit`, unless unset or unlimited (`MaxInt32`).
pub fn revision_history_limit(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .filter(|v| *v != i32::MAX)
}

/// The template's pod template hash with the collision count (upstream
/// `controller.ComputeHash`, shared with the DaemonSet controller).
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    crate::history::hash_template(template, collision_count)
}

/// `value` without nulls and empty lists, and without empty label, annotation and node
/// selector maps: the differences Go's semantic equality ignores (nil and empty slices
/// and maps are equal there).
fn semantic(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| match v {
                    Value::Null => false,
                    Value::Array(a) => !a.is_empty(),
                    Value::Object(o) => {
                        !(o.is_empty()
                            && matches!(
                                k.as_str(),
                                "labels" | "annotations" | "nodeSelector" | "limits" | "requests"
                            ))
                    }
                    _ => true,
                })
                .map(|(k, v)| (k.clone(), semantic(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(semantic).collect()),
        other => other.clone(),
    }
}

/// Whether two pod templates are equal apart from the `pod-template-hash` label
/// (upstream `EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            l.remove(UNIQUE_LABEL_KEY);
        }
        semantic(&serde_json::to_value(&t).unwrap_or(Value::Null))
    };
    strip(a) == strip(b)
}

/// `labels` plus `key=value`.
pub fn clone_and_add_label(
    labels: Option<&BTreeMap<String, String>>,
    key: &str,
    value: &str,
) -> BTreeMap<String, String> {
    let mut l = labels.cloned().unwrap_or_default();
    l.insert(key.into(), value.into());
    l
}

/// `selector` with `key=value` added to `matchLabels`.
pub fn clone_selector_and_add_label(
    selector: &LabelSelector,
    key: &str,
    value: &str,
) -> LabelSelector {
    let mut s = selector.clone();
    s.match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(key.into(), value.into());
    s
}

/// Resolve an int or a percentage of `total`, rounding percentages up or down
/// (upstream `GetScaledValueFromIntOrPercent`).
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, IntOrPercentError> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(num) = s.strip_suffix('%') else {
                return Err(IntOrPercentError::NotPercent);
            };
            let pct: i64 = num
                .parse()
                .map_err(|_| IntOrPercentError::BadPercent(s.clone()))?;
            let scaled = pct as f64 * f64::from(total) / 100.0;
            let r = if round_up {
                scaled.ceil()
            } else {
                scaled.floor()
            };
            Ok(r as i32)
        }
    }
}

/// `(maxSurge, maxUnavailable)` for `desired` replicas: surge rounds up, unavailability
/// down, and when both come out zero one pod may be unavailable (upstream
/// `ResolveFenceposts`).
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), IntOrPercentError> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

fn fenceposts(d: &Deployment) -> Result<(i32, i32), IntOrPercentError> {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    resolve_fenceposts(
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas(d),
    )
}

/// Pods a rolling update may run above `spec.replicas` (0 for Recreate or bad values).
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    fenceposts(d).map_or(0, |(s, _)| s)
}

/// Pods a rolling update may have unavailable, at most `spec.replicas`.
pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling_update(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).map_or(0, |(_, u)| u).min(replicas(d))
}

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The revision of a ReplicaSet: 0 without the annotation, `None` when unparsable.
pub fn revision(rs: &ReplicaSet) -> Option<i64> {
    match annotation(rs, REVISION_ANNOTATION) {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

/// The highest revision among `rss` (unparsable ones skipped).
pub fn max_revision<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    rss.into_iter()
        .filter_map(revision)
        .max()
        .unwrap_or(0)
        .max(0)
}

fn annotations_mut(rs: &mut ReplicaSet) -> &mut BTreeMap<String, String> {
    rs.metadata.annotations.get_or_insert_with(BTreeMap::new)
}

fn skip_copy(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED_ANNOTATION
            | REVISION_ANNOTATION
            | REVISION_HISTORY_ANNOTATION
            | DESIRED_REPLICAS_ANNOTATION
            | MAX_REPLICAS_ANNOTATION
            | ROLLBACK_TO_ANNOTATION
    )
}

/// Copy the Deployment's own annotations to the ReplicaSet; true if any changed.
fn copy_deployment_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy(k) {
            continue;
        }
        let a = annotations_mut(rs);
        if a.get(k) != Some(v) {
            a.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    changed
}

/// Set the desired and max replica annotations; true if they changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = annotations_mut(rs);
    let mut changed = false;
    for (k, v) in [
        (DESIRED_REPLICAS_ANNOTATION, desired.to_string()),
        (MAX_REPLICAS_ANNOTATION, max.to_string()),
    ] {
        if a.get(k) != Some(&v) {
            a.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

/// Whether the desired/max replica annotations differ from these values.
pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    annotation(rs, DESIRED_REPLICAS_ANNOTATION) != Some(desired.to_string().as_str())
        || annotation(rs, MAX_REPLICAS_ANNOTATION) != Some(max.to_string().as_str())
}

/// The desired-replicas annotation of a ReplicaSet.
pub fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(rs, DESIRED_REPLICAS_ANNOTATION).and_then(|v| v.parse().ok())
}

fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(rs, MAX_REPLICAS_ANNOTATION).and_then(|v| v.parse().ok())
}

/// Annotate the new ReplicaSet (upstream `SetNewReplicaSetAnnotations`): the
/// Deployment's annotations, the revision `new_revision` when higher than its own (a
/// template rolled back to keeps its earlier revisions in `revision-history`), and for a
/// ReplicaSet about to be created the replica annotations. True if anything changed.
pub fn set_new_replica_set_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: &str,
    exists: bool,
    history_limit_chars: usize,
) -> bool {
    let mut changed = copy_deployment_annotations(d, rs);
    let old_revision = annotation(rs, REVISION_ANNOTATION).map(str::to_string);
    let old_int = match old_revision.as_deref() {
        None | Some("") => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(i) => i,
            Err(_) => return false,
        },
    };
    let Ok(new_int) = new_revision.parse::<i64>() else {
        return false;
    };
    if old_int < new_int {
        annotations_mut(rs).insert(REVISION_ANNOTATION.into(), new_revision.into());
        changed = true;
    }
    if let Some(old) = old_revision.filter(|_| old_int < new_int) {
        let history = annotation(rs, REVISION_HISTORY_ANNOTATION)
            .unwrap_or("")
            .to_string();
        if history.is_empty() {
            annotations_mut(rs).insert(REVISION_HISTORY_ANNOTATION.into(), old);
        } else {
            let entries: Vec<&str> = history.split(',').collect();
            let mut total = history.len() + old.len() + 1;
            let mut start = 0;
            while total > history_limit_chars && start < entries.len() {
                total -= entries[start].len() + 1;
                start += 1;
            }
            if total <= history_limit_chars {
                let mut kept: Vec<&str> = entries[start..].to_vec();
                kept.push(&old);
                let joined = kept.join(",");
                annotations_mut(rs).insert(REVISION_HISTORY_ANNOTATION.into(), joined);
            }
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

/// Set the Deployment's revision annotation; true if it changed.
pub fn set_deployment_revision(d: &mut Deployment, revision: &str) -> bool {
    let a = d.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if a.get(REVISION_ANNOTATION).map(String::as_str) == Some(revision) {
        return false;
    }
    a.insert(REVISION_ANNOTATION.into(), revision.into());
    true
}

/// Index of the ReplicaSet whose template is the Deployment's (the oldest if several;
/// upstream `FindNewReplicaSet`).
pub fn find_new_replica_set(d: &Deployment, rss: &[ReplicaSet]) -> Option<usize> {
    let template = &d.spec.as_ref()?.template;
    let mut idx: Vec<usize> = (0..rss.len()).collect();
    idx.sort_by(|a, b| by_creation(&rss[*a], &rss[*b]));
    idx.into_iter().find(|i| {
        rss[*i]
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(t, template))
    })
}

/// Older first, then by name (upstream `ReplicaSetsByCreationTimestamp`).
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let t = |r: &ReplicaSet| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
    match t(a).cmp(&t(b)) {
        Ordering::Equal => a.metadata.name.cmp(&b.metadata.name),
        o => o,
    }
}

/// Larger first; equal sizes newer first (upstream `ReplicaSetsBySizeNewer`).
pub fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(b, a))
}

/// Larger first; equal sizes older first (upstream `ReplicaSetsBySizeOlder`).
pub fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(a, b))
}

/// Lower revision first, ties and unparsable ones by age (upstream
/// `ReplicaSetsByRevision`).
pub fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    match (revision(a), revision(b)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        _ => by_creation(a, b),
    }
}

/// ReplicaSets with at least one replica wanted.
pub fn is_active(rs: &ReplicaSet) -> bool {
    rs_replicas(rs) > 0
}

/// Sum of `spec.replicas`.
pub fn spec_replicas<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(rs_replicas).sum()
}

/// Sum of `status.replicas`.
pub fn actual_replicas<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(|r| rs_status(r).0).sum()
}

/// Sum of `status.readyReplicas`.
pub fn ready_replicas<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(|r| rs_status(r).1).sum()
}

/// Sum of `status.availableReplicas`.
pub fn available_replicas<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(rs_available).sum()
}

/// Pods that exist or are about to: per ReplicaSet the larger of `spec.replicas` and
/// `status.replicas`. Upstream counts `spec.replicas` only; a ReplicaSet whose
/// scale-down has not been carried out yet still runs its pods, and counting them keeps
/// a rolling update within `maxSurge` at every instant.
pub fn pods_upper_bound<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter()
        .map(|r| rs_replicas(r).max(rs_status(r).0))
        .sum()
}

/// Replicas of the new ReplicaSet after this step of a rollout (upstream
/// `NewRSNewReplicas`).
pub fn new_rs_new_replicas(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: &ReplicaSet,
) -> Result<i32, IntOrPercentError> {
    if strategy_type(d) == RECREATE {
        return Ok(replicas(d));
    }
    let (surge, _) = fenceposts(d)?;
    let current = pods_upper_bound(all.iter().copied());
    let max_total = replicas(d) + surge;
    if current >= max_total {
        return Ok(rs_replicas(new_rs));
    }
    let up = (max_total - current).min(replicas(d) - rs_replicas(new_rs));
    Ok(rs_replicas(new_rs) + up)
}

/// Whether the ReplicaSet runs the whole Deployment (upstream `IsSaturated`).
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else { return false };
    rs_replicas(rs) == replicas(d)
        && desired_replicas_annotation(rs) == Some(replicas(d))
        && rs_available(rs) == replicas(d)
}

/// This ReplicaSet's share of a proportional scaling step (upstream
/// `GetReplicaSetProportion`).
pub fn replica_set_proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if replicas(d) == 0 {
        return -rs_replicas(rs);
    }
    let max_now = replicas(d) + max_surge(d);
    let before = match max_replicas_annotation(rs) {
        Some(v) if v != 0 => v,
        _ => d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0),
    };
    if before == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(max_now) / f64::from(before);
    size.round() as i32 - rs_replicas(rs)
}

/// A new condition stamped `now`.
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The condition of this type.
pub fn get_condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.iter().flatten().find(|c| c.type_ == type_)
}

/// Set a condition (upstream `SetDeploymentCondition`): no change when status and
/// reason are the same; the transition time is kept when only the reason changes.
pub fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = get_condition(s, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    let conds = s.conditions.get_or_insert_with(Vec::new);
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

/// Remove the condition of this type.
pub fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = s.conditions.as_mut() {
        c.retain(|x| x.type_ != type_);
        if c.is_empty() {
            s.conditions = None;
        }
    }
}

/// A ReplicaSet condition as a Deployment condition.
pub fn rs_condition_to_deployment(c: &ReplicaSetCondition) -> DeploymentCondition {
    DeploymentCondition {
        type_: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_update_time: c.last_transition_time.clone(),
        last_transition_time: c.last_transition_time.clone(),
    }
}

/// A status as the API returns it: zero counters omitted, no empty condition list.
pub fn normalize_status(s: Option<&DeploymentStatus>) -> DeploymentStatus {
    let mut s = s.cloned().unwrap_or_default();
    for f in [
        &mut s.replicas,
        &mut s.updated_replicas,
        &mut s.ready_replicas,
        &mut s.available_replicas,
        &mut s.unavailable_replicas,
    ] {
        *f = f.filter(|v| *v != 0);
    }
    s.observed_generation = s.observed_generation.filter(|v| *v != 0);
    if s.conditions.as_ref().is_some_and(Vec::is_empty) {
        s.conditions = None;
    }
    s
}

/// The Deployment status for its ReplicaSets (upstream `calculateStatus`).
pub fn calculate_status(
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let available = available_replicas(all.iter().copied());
    let total = spec_replicas(all.iter().copied());
    let current = normalize_status(d.status.as_ref());
    let mut s = DeploymentStatus {
        observed_generation: non_zero(d.metadata.generation.unwrap_or(0)),
        replicas: non_zero(actual_replicas(all.iter().copied())),
        updated_replicas: non_zero(actual_replicas(new_rs)),
        ready_replicas: non_zero(ready_replicas(all.iter().copied())),
        available_replicas: non_zero(available),
        unavailable_replicas: non_zero((total - available).max(0)),
        collision_count: current.collision_count,
        conditions: current.conditions.clone(),
        terminating_replicas: None,
    };
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut s,
            new_condition(
                AVAILABLE,
                "True",
                MIN_AVAILABLE_REASON,
                "Deployment has minimum availability.",
                now,
            ),
        );
    } else {
        set_condition(
            &mut s,
            new_condition(
                AVAILABLE,
                "False",
                MIN_UNAVAILABLE_REASON,
                "Deployment does not have minimum availability.",
                now,
            ),
        );
    }
    s
}

fn n(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// All replicas updated and available, and the current generation observed (upstream
/// `DeploymentComplete`).
pub fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = replicas(d);
    n(s.updated_replicas) == r
        && n(s.replicas) == r
        && n(s.available_replicas) == r
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Whether `new` shows progress over the recorded status (upstream
/// `DeploymentProgressing`).
pub fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = normalize_status(d.status.as_ref());
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// Whether the rollout made no progress for `progressDeadlineSeconds` (upstream
/// `DeploymentTimedOut`).
pub fn deployment_timed_out(d: &Deployment, new: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = get_condition(new, PROGRESSING) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE_REASON) => return false,
        Some(TIMED_OUT_REASON) => return true,
        _ => {}
    }
    let Some(from) = c.last_update_time.as_ref().map(|t| t.0) else {
        return false;
    };
    from.checked_add(SignedDuration::from_secs(i64::from(deadline)))
        .is_ok_and(|until| until < now)
}

#[cfg(test)]
mod tests;
