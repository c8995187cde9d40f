//! The Job controller's bookkeeping, as pure functions: which pods count as failed,
//! completion indexes and their interval strings (`"0-2,5"`), how many pods should
//! be active, the exponential back-off before failed pods are replaced (10 s
//! doubling, capped at 10 minutes as in upstream's code), the backoff-limit and
//! deadline checks, and the conditions list.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::workload::{deletion_order, is_terminating, phase};

/// The finalizer that keeps finished pods until the Job has counted them.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation and label with an Indexed Job pod's index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Environment variable with the completion index.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// First delay before replacing a failed pod.
pub const POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// Longest delay before replacing a failed pod.
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10 * 60);
/// Most pods created or deleted, and most uncounted pods recorded, per sync.
pub const MAX_PER_SYNC: usize = 500;

/// The condition that finished the Job (`Complete` or `Failed`, status True).
pub fn finished_condition(job: &Job) -> Option<&JobCondition> {
    conditions(job)
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// The Job's conditions.
pub fn conditions(job: &Job) -> &[JobCondition] {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
}

/// A True condition of this type.
pub fn true_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    conditions(job)
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// `spec.suspend`.
pub fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

/// `completionMode: Indexed`.
pub fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

/// `spec.completions` (`None`: any success completes the Job).
pub fn completions(job: &Job) -> Option<i32> {
    job.spec.as_ref().and_then(|s| s.completions)
}

/// `podReplacementPolicy: Failed`: wait for terminating pods before replacing them.
pub fn only_replace_failed(job: &Job) -> bool {
    job.spec
        .as_ref()
        .and_then(|s| s.pod_replacement_policy.as_deref())
        == Some("Failed")
}

/// Upstream `isPodFailed`: Failed, or (without a pod failure policy) being deleted
/// before it succeeded.
pub fn is_pod_failed(pod: &Pod, job: &Job) -> bool {
    if only_replace_failed(job) {
        return phase(pod) == "Failed";
    }
    if phase(pod) == "Failed" {
        return true;
    }
    if job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref())
        .is_some()
    {
        return false;
    }
    is_terminating(pod) && phase(pod) != "Succeeded"
}

/// Being deleted but not finished (counted in `status.terminating`).
pub fn is_pod_terminating(pod: &Pod) -> bool {
    is_terminating(pod) && !matches!(phase(pod), "Succeeded" | "Failed")
}

/// Carries the tracking finalizer.
pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING_FINALIZER))
}

/// The pod's completion index, if it has a valid one.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    let v = pod.metadata.annotations.as_ref()?.get(COMPLETION_INDEX)?;
    let i: i32 = v.parse().ok()?;
    (i >= 0 && i.to_string() == *v).then_some(i)
}

/// Parse `"0-2,5"` into indexes below `completions`; bad parts are skipped.
pub fn parse_indexes(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse(), part.parse()),
        };
        if let (Ok(lo), Ok(hi)) = (lo, hi) {
            out.extend((lo.max(0)..=hi.min(completions - 1)).filter(|i| *i < completions));
        }
    }
    out
}

/// Format indexes as upstream's interval string (`"0-2,5"`).
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// The first `count` indexes below `completions` that are neither succeeded nor
/// held by a pod in `busy`.
pub fn first_pending_indexes(
    succeeded: &BTreeSet<i32>,
    busy: &HashSet<i32>,
    count: usize,
    completions: i32,
) -> Vec<i32> {
    (0..completions.max(0))
        .filter(|i| !succeeded.contains(i) && !busy.contains(i))
        .take(count)
        .collect()
}

/// How many pods should be active (upstream `manageJob`'s `wantActive`).
pub fn want_active(job: &Job, succeeded: i32, active: i32) -> i32 {
    let parallelism = job
        .spec
        .as_ref()
        .and_then(|s| s.parallelism)
        .unwrap_or(1)
        .max(0);
    match completions(job) {
        None if succeeded > 0 => active,
        None => parallelism,
        Some(c) => (c - succeeded).min(parallelism).max(0),
    }
}

/// Active pods to delete: for Indexed Jobs, pods with an invalid or repeated index
/// first; then by upstream's active-pod order until `at_least` are chosen.
pub fn pods_to_remove<'a>(job: &Job, active: &[&'a Pod], at_least: usize) -> Vec<&'a Pod> {
    let mut rm: Vec<&Pod> = Vec::new();
    let mut left: Vec<&Pod> = Vec::new();
    if is_indexed(job) {
        let c = completions(job).unwrap_or(0);
        let mut by_index: std::collections::BTreeMap<i32, Vec<&Pod>> = Default::default();
        for p in active {
            match completion_index(p).filter(|i| *i < c) {
                Some(i) => by_index.entry(i).or_default().push(p),
                None => rm.push(p),
            }
        }
        for mut group in by_index.into_values() {
            group.sort_by(|a, b| deletion_order(a, b));
            if let Some(keep) = group.pop() {
                rm.extend(group);
                left.push(keep);
            }
        }
    } else {
        left = active.to_vec();
    }
    if rm.len() < at_least {
        left.sort_by(|a, b| deletion_order(a, b));
        let more = at_least - rm.len();
        rm.extend(left.into_iter().take(more));
    }
    rm
}

/// Upstream `getFinishedTime`: the last container finish, else the Ready=False
/// transition, else deletion time minus grace, else creation time.
pub fn finished_time(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref();
    let statuses = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    if !statuses.is_empty() {
        let mut latest: Option<Timestamp> = None;
        let mut all = true;
        for c in statuses {
            match c
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.finished_at.as_ref())
            {
                Some(t) => latest = Some(latest.map_or(t.0, |l| l.max(t.0))),
                None => all = false,
            }
        }
        if all && latest.is_some() {
            return latest;
        }
    }
    if let Some(t) = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "Ready" && c.status == "False")
        })
        .and_then(|c| c.last_transition_time.as_ref())
    {
        return Some(t.0);
    }
    if let Some(d) = &pod.metadata.deletion_timestamp {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        return d.0.checked_sub(SignedDuration::from_secs(grace)).ok();
    }
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// Consecutive failures since the last success (upstream `backoffRecord`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackoffRecord {
    pub failures_after_last_success: u32,
    pub last_failure: Option<Timestamp>,
}

/// Upstream `newBackoffRecord`: fold the newly finished pods' finish times in.
pub fn next_backoff(
    old: BackoffRecord,
    mut succeeded: Vec<Timestamp>,
    mut failed: Vec<Timestamp>,
) -> BackoffRecord {
    succeeded.sort();
    failed.sort();
    let Some(last_success) = succeeded.last() else {
        let Some(last) = failed.last() else {
            return old;
        };
        return BackoffRecord {
            failures_after_last_success: old.failures_after_last_success
                + u32::try_from(failed.len()).unwrap_or(u32::MAX),
            last_failure: Some(*last),
        };
    };
    let after: Vec<&Timestamp> = failed.iter().filter(|t| *t > last_success).collect();
    BackoffRecord {
        failures_after_last_success: u32::try_from(after.len()).unwrap_or(u32::MAX),
        last_failure: after.last().map(|t| **t),
    }
}

/// How long to wait before creating replacement pods.
pub fn backoff_remaining(record: &BackoffRecord, now: Timestamp) -> Duration {
    let Some(last) = record.last_failure else {
        return Duration::ZERO;
    };
    if record.failures_after_last_success == 0 {
        return Duration::ZERO;
    }
    let mut backoff = POD_FAILURE_BACKOFF;
    for _ in 1..record.failures_after_last_success {
        backoff *= 2;
        if backoff >= MAX_POD_FAILURE_BACKOFF {
            backoff = MAX_POD_FAILURE_BACKOFF;
            break;
        }
    }
    let elapsed = now.duration_since(last);
    let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
    backoff.saturating_sub(elapsed)
}

/// Upstream `pastBackoffLimitOnFailure`: for `restartPolicy: OnFailure`, the
/// container restarts of running or pending pods reach the backoff limit.
pub fn past_backoff_limit_on_failure(job: &Job, pods: &[&Pod]) -> bool {
    let spec = job.spec.as_ref();
    let restart = spec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref());
    if restart != Some("OnFailure") {
        return false;
    }
    let limit = spec.and_then(|s| s.backoff_limit).unwrap_or(6);
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .map(|c| c.restart_count)
                .sum::<i32>()
                + s.container_statuses
                    .iter()
                    .flatten()
                    .map(|c| c.restart_count)
                    .sum::<i32>()
        })
        .sum();
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// Time left before `activeDeadlineSeconds` runs out (`None` without a deadline, a
/// start time, or while suspended; zero once past it).
pub fn deadline_remaining(job: &Job, now: Timestamp) -> Option<Duration> {
    let secs = job.spec.as_ref()?.active_deadline_seconds?;
    let start = job.status.as_ref()?.start_time.as_ref()?.0;
    if is_suspended(job) {
        return None;
    }
    let elapsed = Duration::try_from(now.duration_since(start)).unwrap_or(Duration::ZERO);
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)).saturating_sub(elapsed))
}

/// A new condition with both times set to `now`.
pub fn new_condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: (!reason.is_empty()).then(|| reason.into()),
        message: (!message.is_empty()).then(|| message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream `ensureJobConditionStatus`: update the condition of this type (the
/// transition time moves only when the status does) or append it unless it would be
/// False. Returns whether the list changed.
pub fn ensure_condition(
    list: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let reason_opt = (!reason.is_empty()).then(|| reason.to_string());
    let message_opt = (!message.is_empty()).then(|| message.to_string());
    if let Some(c) = list.iter_mut().find(|c| c.type_ == type_) {
        if c.status == status && c.reason == reason_opt && c.message == message_opt {
            return false;
        }
        if c.status != status {
            c.last_transition_time = Some(Time(now));
        }
        c.status = status.into();
        c.reason = reason_opt;
        c.message = message_opt;
        c.last_probe_time = Some(Time(now));
        return true;
    }
    if status == "False" {
        return false;
    }
    let mut c = new_condition(type_, reason, message, now);
    c.status = status.into();
    list.push(c);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(v: serde_json::Value) -> Job {
        serde_json::from_value(json!({"metadata": {"name": "j"}, "spec": v})).expect("job")
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("ts")
    }

    #[test]
    fn pod_failed_table() {
        let plain = job(json!({"template": {}}));
        let failed_only = job(json!({"template": {}, "podReplacementPolicy": "Failed"}));
        let with_policy = job(json!({"template": {}, "podFailurePolicy": {"rules": []}}));
        let deleting = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Running"}});
        let cases = [
            (&plain, json!({"status": {"phase": "Failed"}}), true),
            (&plain, json!({"status": {"phase": "Running"}}), false),
            (&plain, deleting.clone(), true),
            (
                &plain,
                json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Succeeded"}}),
                false,
            ),
            (&failed_only, deleting.clone(), false),
            (&failed_only, json!({"status": {"phase": "Failed"}}), true),
            (&with_policy, deleting, false),
        ];
        for (j, p, want) in cases {
            assert_eq!(is_pod_failed(&pod(p.clone()), j), want, "{p}");
        }
    }

    #[test]
    fn indexes_round_trip() {
        let cases = [
            ("", 5, vec![], ""),
            ("0", 5, vec![0], "0"),
            ("0-2,4", 5, vec![0, 1, 2, 4], "0-2,4"),
            ("1,2,3", 5, vec![1, 2, 3], "1-3"),
            ("3-9", 5, vec![3, 4], "3-4"),
            ("x,1", 5, vec![1], "1"),
        ];
        for (s, c, want, formatted) in cases {
            let got = parse_indexes(s, c);
            assert_eq!(got.iter().copied().collect::<Vec<_>>(), want, "{s}");
            assert_eq!(format_indexes(&got), formatted, "{s}");
        }
        let succeeded = BTreeSet::from([0, 2]);
        let busy = HashSet::from([1]);
        assert_eq!(first_pending_indexes(&succeeded, &busy, 2, 6), vec![3, 4]);
        assert_eq!(first_pending_indexes(&succeeded, &busy, 9, 4), vec![3]);
    }

    #[test]
    fn completion_index_table() {
        let p = |v: &str| pod(json!({"metadata": {"annotations": {COMPLETION_INDEX: v}}}));
        assert_eq!(completion_index(&p("3")), Some(3));
        assert_eq!(completion_index(&p("-1")), None);
        assert_eq!(completion_index(&p("03")), None);
        assert_eq!(completion_index(&p("x")), None);
        assert_eq!(completion_index(&pod(json!({}))), None);
    }

    #[test]
    fn want_active_table() {
        // (completions, parallelism, succeeded, active, want)
        let cases = [
            (None, 2, 0, 0, 2),
            (None, 2, 1, 1, 1),
            (Some(5), 2, 0, 0, 2),
            (Some(5), 2, 4, 1, 1),
            (Some(5), 2, 5, 0, 0),
            (Some(5), 2, 7, 0, 0),
            (Some(1), 0, 0, 0, 0),
        ];
        for (c, p, s, a, want) in cases {
            let j = job(json!({"template": {}, "completions": c, "parallelism": p}));
            assert_eq!(want_active(&j, s, a), want, "{c:?} {p} {s} {a}");
        }
    }

    #[test]
    fn backoff_table() {
        let none = BackoffRecord::default();
        // (old, succeeded times, failed times, expected)
        let cases = [
            (none, vec![], vec![], none),
            (
                none,
                vec![],
                vec![ts(5), ts(3)],
                BackoffRecord {
                    failures_after_last_success: 2,
                    last_failure: Some(ts(5)),
                },
            ),
            (
                BackoffRecord {
                    failures_after_last_success: 2,
                    last_failure: Some(ts(5)),
                },
                vec![],
                vec![ts(9)],
                BackoffRecord {
                    failures_after_last_success: 3,
                    last_failure: Some(ts(9)),
                },
            ),
            (
                BackoffRecord {
                    failures_after_last_success: 2,
                    last_failure: Some(ts(5)),
                },
                vec![ts(10)],
                vec![],
                none,
            ),
            (
                none,
                vec![ts(10)],
                vec![ts(8), ts(12), ts(11)],
                BackoffRecord {
                    failures_after_last_success: 2,
                    last_failure: Some(ts(12)),
                },
            ),
        ];
        for (old, s, f, want) in cases {
            assert_eq!(
                next_backoff(old, s.clone(), f.clone()),
                want,
                "{old:?} {s:?} {f:?}"
            );
        }
        // (failures, seconds since last failure, remaining seconds)
        let waits = [
            (0, 0, 0),
            (1, 0, 10),
            (1, 4, 6),
            (1, 30, 0),
            (2, 0, 20),
            (3, 5, 35),
            (7, 0, 600),
            (40, 0, 600),
        ];
        for (failures, since, want) in waits {
            let r = BackoffRecord {
                failures_after_last_success: failures,
                last_failure: Some(ts(100)),
            };
            assert_eq!(
                backoff_remaining(&r, ts(100 + since)),
                Duration::from_secs(want),
                "{failures} {since}"
            );
        }
    }

    #[test]
    fn deadline_and_restarts() {
        let mut j = job(
            json!({"template": {"spec": {"restartPolicy": "OnFailure", "containers": []}}, "activeDeadlineSeconds": 30, "backoffLimit": 2}),
        );
        assert_eq!(deadline_remaining(&j, ts(100)), None, "no start time yet");
        j.status = Some(k8s_openapi::api::batch::v1::JobStatus {
            start_time: Some(Time(ts(100))),
            ..Default::default()
        });
        assert_eq!(
            deadline_remaining(&j, ts(110)),
            Some(Duration::from_secs(20))
        );
        assert_eq!(deadline_remaining(&j, ts(140)), Some(Duration::ZERO));
        let restarting = pod(json!({"status": {"phase": "Running", "containerStatuses": [
            {"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 2}]}}));
        assert!(past_backoff_limit_on_failure(&j, &[&restarting]));
        let once = pod(json!({"status": {"phase": "Running", "containerStatuses": [
            {"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 1}]}}));
        assert!(!past_backoff_limit_on_failure(&j, &[&once]));
    }

    #[test]
    fn remove_duplicate_and_invalid_indexes_first() {
        let j = job(json!({"template": {}, "completionMode": "Indexed", "completions": 3}));
        let p = |name: &str, ix: &str| {
            pod(json!({"metadata": {"name": name, "annotations": {COMPLETION_INDEX: ix}}}))
        };
        let pods = [p("a", "0"), p("b", "0"), p("c", "7"), p("d", "1")];
        let refs: Vec<&Pod> = pods.iter().collect();
        let names = |v: Vec<&Pod>| -> Vec<String> {
            let mut n: Vec<String> = v
                .iter()
                .map(|p| p.metadata.name.clone().unwrap_or_default())
                .collect();
            n.sort();
            n
        };
        let got = names(pods_to_remove(&j, &refs, 0));
        assert_eq!(got.len(), 2);
        assert!(got.contains(&"c".to_string()));
        assert_eq!(pods_to_remove(&j, &refs, 3).len(), 3);
    }

    #[test]
    fn condition_updates() {
        let mut list = Vec::new();
        assert!(!ensure_condition(
            &mut list,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            ts(1)
        ));
        assert!(ensure_condition(
            &mut list,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            ts(1)
        ));
        assert!(!ensure_condition(
            &mut list,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            ts(2)
        ));
        assert!(ensure_condition(
            &mut list,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            ts(3)
        ));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].status, "False");
        assert_eq!(list[0].last_transition_time, Some(Time(ts(3))));
    }
}
