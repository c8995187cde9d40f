//! The CronJob controller (upstream kube-controller-manager's `cronjob`, the v2
//! controller).
//!
//! For each CronJob the most recent unmet activation of its [`schedule`] (in
//! `spec.timeZone`, default the controller's zone) becomes a Job named
//! `<cronjob>-<scheduled time in minutes since the epoch>` (the name is the lock
//! against creating it twice) from `spec.jobTemplate`, owned by the CronJob and
//! annotated with `batch.kubernetes.io/cronjob-scheduled-timestamp`. An activation
//! later than `startingDeadlineSeconds` is skipped (`MissSchedule`); `Forbid` skips
//! while a Job is active (`JobAlreadyActive`); `Replace` deletes the active ones
//! first; `suspend` stops new Jobs. Finished Jobs leave `status.active`
//! (`SawCompletedJob`), successful ones move `lastSuccessfulTime`, and the oldest
//! finished Jobs beyond `successfulJobsHistoryLimit`/`failedJobsHistoryLimit` are
//! deleted. The key is queued again for the next activation (+100 ms).
//!
//! The clock is injectable ([`run_with_clock`]) so tests can stand at any time.

pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::events::{self, Recorder};
use crate::queue::WorkQueue;
use crate::workload::{self, Change, controller_of, controller_ref, key_of, split_key};
use crate::{ControllerOptions, Error, is_not_found};
use schedule::{Missed, Schedule, Times};

/// The component name on Events.
pub const COMPONENT: &str = "cronjob-controller";
/// Annotation with the activation time a Job was made for.
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// The controller's clock.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

struct Ctx {
    client: Client,
    recorder: Recorder,
    cronjobs: crate::informers::SharedStore<CronJob>,
    jobs: crate::informers::SharedStore<Job>,
    now: Clock,
}

/// `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// Go's `time.RFC3339` text of `t` in `tz` (`Z` for a zero offset).
pub fn rfc3339_in(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    if z.offset().seconds() == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// The finished condition type of a Job (`Complete` or `Failed`).
pub fn finished_status(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

/// Upstream `getJobFromTemplate2`.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.into(),
        rfc3339_in(scheduled, tz),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels.filter(|l| !l.is_empty()),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Upstream `byJobStartTime`: started before not started, then by start, then name.
fn by_start_time(a: &Job, b: &Job) -> std::cmp::Ordering {
    let start = |j: &Job| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
    };
    match (start(a), start(b)) {
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (x, y) if x == y => a.metadata.name.cmp(&b.metadata.name),
        (x, y) => x.cmp(&y),
    }
}

/// Jobs to delete to keep at most `limit` of `jobs`, oldest first.
pub fn oldest_beyond(mut jobs: Vec<Arc<Job>>, limit: i32) -> Vec<Arc<Job>> {
    let excess = jobs
        .len()
        .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
    jobs.sort_by(|a, b| by_start_time(a, b));
    jobs.truncate(excess);
    jobs
}

fn cronjob_of(store: &Store<CronJob>, meta: &ObjectMeta) -> Option<Arc<CronJob>> {
    let r = controller_of(meta).filter(|r| r.kind == "CronJob")?;
    let ns = meta.namespace.as_deref().unwrap_or_default();
    store
        .get(&ObjectRef::new(&r.name).within(ns))
        .filter(|c| c.metadata.uid.as_deref() == Some(r.uid.as_str()))
}

/// Run the CronJob controller until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    run_with_clock(client, opts, shutdown, Arc::new(Timestamp::now)).await
}

/// [`run`] with the given clock.
pub async fn run_with_clock(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
    now: Clock,
) -> Result<(), Error> {
    let queue = WorkQueue::<String>::new(opts.backoff);
    let q = Arc::clone(&queue);
    let (cronjobs, cj_task) = workload::spawn_cache::<CronJob, _>(
        &opts.informers,
        &client,
        shutdown.clone(),
        move |c: Change<'_, CronJob>| {
            if let Change::Applied { new, .. } = c {
                q.add(key_of(&new.metadata));
            }
        },
    );
    let (q, c) = (Arc::clone(&queue), cronjobs.clone());
    let (jobs, job_task) = workload::spawn_cache::<Job, _>(
        &opts.informers,
        &client,
        shutdown.clone(),
        move |change: Change<'_, Job>| match change {
            Change::Applied { old, new } => {
                if let Some(o) = old.as_ref().and_then(|o| cronjob_of(&c, &o.metadata)) {
                    q.add(key_of(&o.metadata));
                }
                if let Some(cj) = cronjob_of(&c, &new.metadata) {
                    q.add(key_of(&cj.metadata));
                }
            }
            Change::Deleted(j) => {
                if let Some(cj) = cronjob_of(&c, &j.metadata) {
                    q.add(key_of(&cj.metadata));
                }
            }
            Change::Resynced => {
                for cj in c.state() {
                    q.add(key_of(&cj.metadata));
                }
            }
        },
    );
    let ready = async {
        let _ = tokio::join!(cronjobs.wait_until_ready(), jobs.wait_until_ready());
    };
    if workload::wait_ready(&shutdown, ready).await {
        info!("cronjob controller: started");
        let ctx = Arc::new(Ctx {
            recorder: Recorder::new(client.clone(), COMPONENT),
            client,
            cronjobs,
            jobs,
            now,
        });
        let q = Arc::clone(&queue);
        let stop = shutdown.clone();
        let stopper = tokio::spawn(async move {
            stop.cancelled().await;
            q.shut_down();
        });
        workload::run_workers(queue, opts.workload_workers, move |key: String| {
            let ctx = Arc::clone(&ctx);
            async move { ctx.sync(&key).await }
        })
        .await;
        let _ = stopper.await;
    }
    for t in [cj_task, job_task] {
        let _ = t.await;
    }
    info!("cronjob controller: stopped");
    Ok(())
}

fn in_active(cj: &CronJob, uid: &str) -> bool {
    cj.status
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .is_some_and(|a| a.iter().any(|r| r.uid.as_deref() == Some(uid)))
}

fn remove_active(cj: &mut CronJob, uid: &str) {
    if let Some(a) = cj.status.as_mut().and_then(|s| s.active.as_mut()) {
        a.retain(|r| r.uid.as_deref() != Some(uid));
    }
}

impl Ctx {
    async fn event(&self, cj: &CronJob, type_: &str, reason: &str, message: &str) {
        self.recorder
            .record(&events::object_ref(cj), type_, reason, message)
            .await;
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(shared) = self.cronjobs.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        let jobs: Vec<Arc<Job>> = self
            .jobs
            .state()
            .into_iter()
            .filter(|j| j.metadata.namespace.as_deref() == Some(ns))
            .filter(|j| {
                controller_of(&j.metadata).is_some_and(|r| r.kind == "CronJob" && r.name == name)
            })
            .collect();
        let mut cj = (*shared).clone();
        let cleaned = self.cleanup_finished(&mut cj, &jobs).await;
        let (requeue, synced, result) = self.sync_cronjob(&mut cj, &jobs).await;
        if cleaned || synced {
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), ns);
            match api.replace_status(name, &PostParams::default(), &cj).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        result.map(|()| requeue)
    }

    /// Upstream `cleanupFinishedJobs`. Returns whether the status changed.
    async fn cleanup_finished(&self, cj: &mut CronJob, jobs: &[Arc<Job>]) -> bool {
        let spec = cj.spec.clone().unwrap_or_default();
        if spec.successful_jobs_history_limit.is_none() && spec.failed_jobs_history_limit.is_none()
        {
            return false;
        }
        let pick = |t: &str| -> Vec<Arc<Job>> {
            jobs.iter()
                .filter(|j| finished_status(j) == Some(t))
                .cloned()
                .collect()
        };
        let mut changed = false;
        for (list, limit) in [
            (pick("Complete"), spec.successful_jobs_history_limit),
            (pick("Failed"), spec.failed_jobs_history_limit),
        ] {
            let Some(limit) = limit else { continue };
            for job in oldest_beyond(list, limit) {
                if self.delete_job(cj, &job).await {
                    changed = true;
                }
            }
        }
        changed
    }

    /// Upstream `deleteJob`: delete it (background) and drop it from `active`.
    async fn delete_job(&self, cj: &mut CronJob, job: &Job) -> bool {
        let api: Api<Job> =
            Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
        match api
            .delete(&job.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                self.event(
                    cj,
                    events::WARNING,
                    "FailedDelete",
                    &format!("Deleted job: {e}"),
                )
                .await;
                return false;
            }
        }
        remove_active(cj, job.metadata.uid.as_deref().unwrap_or_default());
        self.event(
            cj,
            events::NORMAL,
            "SuccessfulDelete",
            &format!("Deleted job {}", job.name_any()),
        )
        .await;
        true
    }

    /// Upstream `syncCronJob`: returns (requeue after, status changed, result).
    async fn sync_cronjob(
        &self,
        cj: &mut CronJob,
        jobs: &[Arc<Job>],
    ) -> (Option<Duration>, bool, Result<(), Error>) {
        let now = (self.now)();
        let mut changed = false;
        let ns = cj.namespace().unwrap_or_default();
        let job_api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        for j in jobs {
            let uid = j.metadata.uid.clone().unwrap_or_default();
            let found = in_active(cj, &uid);
            let finished = finished_status(j);
            if !found && finished.is_none() {
                let api: Api<CronJob> = Api::namespaced(self.client.clone(), &ns);
                match api.get(&cj.name_any()).await {
                    Ok(fresh) if in_active(&fresh, &uid) => {
                        *cj = fresh;
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => return (None, changed, Err(e.into())),
                }
                self.event(
                    cj,
                    events::WARNING,
                    "UnexpectedJob",
                    &format!(
                        "Saw a job that the controller did not create or forgot: {}",
                        j.name_any()
                    ),
                )
                .await;
            } else if let (true, Some(status)) = (found, finished) {
                remove_active(cj, &uid);
                self.event(
                    cj,
                    events::NORMAL,
                    "SawCompletedJob",
                    &format!("Saw completed job: {}, status: {status}", j.name_any()),
                )
                .await;
                changed = true;
            } else if finished == Some("Complete") {
                let completed = j.status.as_ref().and_then(|s| s.completion_time.clone());
                let status = cj.status.get_or_insert_with(Default::default);
                if let Some(t) = completed
                    && status
                        .last_successful_time
                        .as_ref()
                        .is_none_or(|l| t.0 > l.0)
                {
                    status.last_successful_time = Some(t);
                    changed = true;
                }
            }
        }
        // Drop active entries whose Job is gone.
        let active: Vec<ObjectReference> = cj
            .status
            .as_ref()
            .and_then(|s| s.active.clone())
            .unwrap_or_default();
        for r in active {
            let uid = r.uid.clone().unwrap_or_default();
            if jobs
                .iter()
                .any(|j| j.metadata.uid.as_deref() == Some(uid.as_str()))
            {
                continue;
            }
            let job_name = r.name.clone().unwrap_or_default();
            match job_api.get_opt(&job_name).await {
                Ok(None) => {
                    self.event(
                        cj,
                        events::NORMAL,
                        "MissingJob",
                        &format!("Active job went missing: {job_name}"),
                    )
                    .await;
                    remove_active(cj, &uid);
                    changed = true;
                }
                Ok(Some(_)) => {}
                Err(e) => return (None, changed, Err(e.into())),
            }
        }
        if cj.metadata.deletion_timestamp.is_some() {
            return (None, changed, Ok(()));
        }
        let spec = cj.spec.clone().unwrap_or_default();
        let zone = match spec.time_zone.as_deref() {
            Some(name) => match TimeZone::get(name) {
                Ok(z) => Some(z),
                Err(e) => {
                    self.event(
                        cj,
                        events::WARNING,
                        "UnknownTimeZone",
                        &format!("invalid timeZone: {name:?}: {e}"),
                    )
                    .await;
                    return (None, changed, Ok(()));
                }
            },
            None => None,
        };
        if spec.suspend == Some(true) {
            return (None, changed, Ok(()));
        }
        if spec.schedule.contains("TZ") {
            self.event(
                cj,
                events::WARNING,
                "UnsupportedSchedule",
                &format!(
                    "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                    spec.schedule
                ),
            )
            .await;
        }
        // A `TZ=` in the schedule wins over `timeZone`, as upstream's formatSchedule.
        let default_zone = zone.clone().unwrap_or_else(TimeZone::system);
        let sched = match Schedule::parse(&spec.schedule, default_zone) {
            Ok(s) => s,
            Err(e) => {
                self.event(
                    cj,
                    events::WARNING,
                    "UnparseableSchedule",
                    &format!("unparseable schedule: {:?} : {e}", spec.schedule),
                )
                .await;
                return (None, changed, Ok(()));
            }
        };
        let times = Times {
            created: cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0),
            last_schedule: cj
                .status
                .as_ref()
                .and_then(|s| s.last_schedule_time.as_ref())
                .map(|t| t.0),
            starting_deadline_seconds: spec.starting_deadline_seconds,
            now,
        };
        let scheduled = match schedule::most_recent(&sched, times, true) {
            Err(e) => {
                self.event(
                    cj,
                    events::WARNING,
                    "InvalidSchedule",
                    &format!("invalid schedule: {} : {e}", spec.schedule),
                )
                .await;
                return (None, changed, Ok(()));
            }
            Ok((_, None, _)) => {
                return (Some(schedule::next_delay(&sched, times)), changed, Ok(()));
            }
            Ok((_, Some(t), missed)) => {
                if missed == Missed::Many {
                    self.event(
                        cj,
                        events::WARNING,
                        "TooManyMissedTimes",
                        "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                    )
                    .await;
                }
                t
            }
        };
        if let Some(d) = spec.starting_deadline_seconds
            && scheduled
                .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(d))
                .is_ok_and(|limit| limit < now)
        {
            let text = scheduled
                .strftime("%a, %d %b %Y %H:%M:%S +0000")
                .to_string();
            self.event(
                cj,
                events::WARNING,
                "MissSchedule",
                &format!("Missed scheduled time to start a job: {text}"),
            )
            .await;
            return (Some(schedule::next_delay(&sched, times)), changed, Ok(()));
        }
        let name = job_name(&cj.name_any(), scheduled);
        let already = cj
            .status
            .as_ref()
            .and_then(|s| s.active.as_ref())
            .is_some_and(|a| a.iter().any(|r| r.name.as_deref() == Some(name.as_str())))
            || times.last_schedule == Some(scheduled);
        if already {
            return (Some(schedule::next_delay(&sched, times)), changed, Ok(()));
        }
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        let active_count = cj
            .status
            .as_ref()
            .and_then(|s| s.active.as_ref())
            .map_or(0, Vec::len);
        if policy == "Forbid" && active_count > 0 {
            self.event(
                cj,
                events::NORMAL,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            )
            .await;
            return (Some(schedule::next_delay(&sched, times)), changed, Ok(()));
        }
        if policy == "Replace" {
            let active: Vec<ObjectReference> = cj
                .status
                .as_ref()
                .and_then(|s| s.active.clone())
                .unwrap_or_default();
            for r in active {
                let job = match job_api.get(r.name.as_deref().unwrap_or_default()).await {
                    Ok(j) => j,
                    Err(e) => {
                        self.event(cj, events::WARNING, "FailedGet", &format!("Get job: {e}"))
                            .await;
                        return (None, changed, Err(e.into()));
                    }
                };
                if !self.delete_job(cj, &job).await {
                    return (
                        None,
                        changed,
                        Err(Error::Several(format!(
                            "could not replace job {}/{}",
                            ns,
                            job.name_any()
                        ))),
                    );
                }
                changed = true;
            }
        }
        let annotation_zone = zone.unwrap_or(TimeZone::UTC);
        let request = job_from_template(cj, scheduled, &annotation_zone);
        let created = match job_api.create(&PostParams::default(), &request).await {
            Ok(j) => {
                self.event(
                    cj,
                    events::NORMAL,
                    "SuccessfulCreate",
                    &format!("Created job {}", j.name_any()),
                )
                .await;
                j
            }
            Err(e) if workload::is_namespace_terminating(&e) => {
                return (None, changed, Err(e.into()));
            }
            Err(e) if crate::history::is_already_exists(&e) => {
                let existing = match job_api.get(&name).await {
                    Ok(j) => j,
                    Err(e) => return (None, changed, Err(e.into())),
                };
                let ours = controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref());
                if !ours || in_active(cj, existing.metadata.uid.as_deref().unwrap_or_default()) {
                    return (None, changed, Ok(()));
                }
                info!(cronjob = %cj.name_any(), job = %name, "job already exists");
                existing
            }
            Err(e) => {
                self.event(
                    cj,
                    events::WARNING,
                    "FailedCreate",
                    &format!("Error creating job: {e}"),
                )
                .await;
                return (None, changed, Err(e.into()));
            }
        };
        let status = cj.status.get_or_insert_with(Default::default);
        status
            .active
            .get_or_insert_with(Vec::new)
            .push(events::object_ref(&created));
        status.last_schedule_time = Some(Time(scheduled));
        let times = Times {
            last_schedule: Some(scheduled),
            ..times
        };
        (Some(schedule::next_delay(&sched, times)), true, Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_timestamps() {
        let t: Timestamp = "2024-01-01T10:05:00Z".parse().expect("ts");
        assert_eq!(
            job_name("hello", t),
            format!("hello-{}", t.as_second() / 60)
        );
        assert_eq!(job_name("hello", t), "hello-28401725");
        assert_eq!(rfc3339_in(t, &TimeZone::UTC), "2024-01-01T10:05:00Z");
        let tokyo = TimeZone::get("Asia/Tokyo").expect("zone");
        assert_eq!(rfc3339_in(t, &tokyo), "2024-01-01T19:05:00+09:00");
    }

    #[test]
    fn job_template_copied() {
        let cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "hello", "namespace": "ns", "uid": "u1"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {
                "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}}}}
        }))
        .expect("cronjob");
        let t: Timestamp = "2024-01-01T10:05:00Z".parse().expect("ts");
        let job = job_from_template(&cj, t, &TimeZone::UTC);
        assert_eq!(job.metadata.name.as_deref(), Some("hello-28401725"));
        assert_eq!(
            job.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("team"))
                .map(String::as_str),
            Some("a")
        );
        let ann = job.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get("note").map(String::as_str), Some("x"));
        assert_eq!(
            ann.get(SCHEDULED_TIMESTAMP_ANNOTATION).map(String::as_str),
            Some("2024-01-01T10:05:00Z")
        );
        let owner = controller_of(&job.metadata).expect("owner");
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("CronJob", "u1"));
        assert_eq!(job.spec, cj.spec.and_then(|s| s.job_template.spec));
    }

    #[test]
    fn history_cleanup_order() {
        let job = |name: &str, start: Option<&str>| -> Arc<Job> {
            let mut v = json!({"metadata": {"name": name}});
            if let Some(s) = start {
                v["status"] = json!({"startTime": s});
            }
            Arc::new(serde_json::from_value(v).expect("job"))
        };
        let jobs = vec![
            job("c", Some("2024-01-01T10:03:00Z")),
            job("never", None),
            job("a", Some("2024-01-01T10:01:00Z")),
            job("b", Some("2024-01-01T10:02:00Z")),
        ];
        let names = |v: Vec<Arc<Job>>| -> Vec<String> { v.iter().map(|j| j.name_any()).collect() };
        assert_eq!(names(oldest_beyond(jobs.clone(), 3)), ["a"]);
        assert_eq!(names(oldest_beyond(jobs.clone(), 1)), ["a", "b", "c"]);
        assert_eq!(
            names(oldest_beyond(jobs.clone(), 0)),
            ["a", "b", "c", "never"]
        );
        assert!(oldest_beyond(jobs, 10).is_empty());
    }
}
