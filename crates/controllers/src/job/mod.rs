//! The Job controller (upstream kube-controller-manager's `job`), with pod tracking
//! through finalizers as upstream has done since 1.26.
//!
//! Pods are made from the template (`<job>-<5 chars>`, or `<job>-<index>-<5 chars>`
//! with the `batch.kubernetes.io/job-completion-index` annotation and label, hostname
//! `<job>-<index>` and `JOB_COMPLETION_INDEX` for Indexed Jobs), carry the Job as
//! controller owner and the `batch.kubernetes.io/job-tracking` finalizer. The
//! selector and the `controller-uid`/`job-name` labels come from the API server's
//! defaulting. Up to `parallelism` pods run until `completions` have succeeded.
//!
//! Each finished pod is first recorded in `status.uncountedTerminatedPods`, then its
//! finalizer is removed, then it moves into `succeeded`/`failed`, so no pod is ever
//! counted twice or lost. Failed pods are replaced after an exponential back-off;
//! more failures than `backoffLimit`, or running longer than
//! `activeDeadlineSeconds`, fail the Job: `FailureTarget` is added, active pods are
//! deleted, and `Failed` follows once none is left terminating. Success adds
//! `SuccessCriteriaMet` and then `Complete` with `completionTime`. `suspend` deletes
//! active pods and keeps the `Suspended` condition. Events: SuccessfulCreate,
//! SuccessfulDelete, Completed, BackoffLimitExceeded, DeadlineExceeded, Suspended,
//! Resumed.
//!
//! [`ttl_after_finished`] is the separate `ttl-after-finished` controller.

pub mod accounting;
pub mod ttl_after_finished;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::events::{self, Recorder};
use crate::queue::WorkQueue;
use crate::workload::{
    self, Change, Claim, Expectations, UidExpectations, claim_pods, controller_of, controller_ref,
    is_active, is_pod_ready, key_of, selector_of, split_key,
};
use crate::{ControllerOptions, Error, is_conflict, is_not_found};
use accounting::{
    BackoffRecord, COMPLETION_INDEX, COMPLETION_INDEX_ENV, MAX_PER_SYNC, TRACKING_FINALIZER,
    completion_index, has_tracking_finalizer, is_indexed, is_pod_failed, is_suspended,
};

/// The component name on Events.
pub const COMPONENT: &str = "job-controller";
/// `spec.managedBy` value of Jobs this controller handles.
pub const MANAGED_BY: &str = "kubernetes.io/job-controller";
/// Reason and message of `SuccessCriteriaMet`/`Complete` when completions are reached.
pub const REASON_COMPLETIONS_REACHED: &str = "CompletionsReached";
pub const MESSAGE_COMPLETIONS_REACHED: &str = "Reached expected number of succeeded pods";

/// What the work queue holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum JobKey {
    /// A Job (`namespace/name`).
    Job(String),
    /// A pod whose tracking finalizer may need removing (`namespace/name`).
    Orphan(String),
}

struct Ctx {
    client: Client,
    recorder: Recorder,
    expectations: Arc<Expectations>,
    finalizers: Arc<UidExpectations>,
    jobs: crate::informers::SharedStore<Job>,
    pods: crate::informers::SharedStore<Pod>,
    backoff: Mutex<HashMap<String, BackoffRecord>>,
}

fn managed_here(job: &Job) -> bool {
    job.spec
        .as_ref()
        .and_then(|s| s.managed_by.as_deref())
        .is_none_or(|m| m == MANAGED_BY)
}

fn job_of(store: &Store<Job>, ns: &str, name: &str, uid: &str) -> Option<Arc<Job>> {
    store
        .get(&ObjectRef::new(name).within(ns))
        .filter(|j| j.metadata.uid.as_deref() == Some(uid))
}

/// The live, unfinished Job controlling this pod.
fn owner_job(store: &Store<Job>, pod: &Pod) -> Option<Arc<Job>> {
    let r =
        controller_of(&pod.metadata).filter(|r| r.kind == "Job" && r.api_version == "batch/v1")?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    job_of(store, ns, &r.name, &r.uid)
}

/// Upstream's orphan rule: a pod with the tracking finalizer whose controller is no
/// Job, or a Job that is gone or finished.
fn is_orphan(store: &Store<Job>, pod: &Pod) -> bool {
    if !has_tracking_finalizer(pod) {
        return false;
    }
    match controller_of(&pod.metadata) {
        None => true,
        Some(r) if r.kind == "Job" && r.api_version == "batch/v1" => match owner_job(store, pod) {
            None => true,
            Some(j) => managed_here(&j) && accounting::finished_condition(&j).is_some(),
        },
        Some(_) => false,
    }
}

fn on_pod(
    change: Change<'_, Pod>,
    jobs: &Store<Job>,
    queue: &Arc<WorkQueue<JobKey>>,
    exp: &Expectations,
    fin: &UidExpectations,
) {
    let (old, pod, gone) = match change {
        Change::Applied { old, new } => {
            if old
                .as_ref()
                .is_some_and(|o| o.metadata.resource_version == new.metadata.resource_version)
            {
                return;
            }
            (old, new, false)
        }
        Change::Deleted(p) => (None, p, true),
        Change::Resynced => {
            for j in jobs.state() {
                queue.add(JobKey::Job(key_of(&j.metadata)));
            }
            return;
        }
    };
    if is_orphan(jobs, pod) && !gone {
        queue.add(JobKey::Orphan(key_of(&pod.metadata)));
    }
    if let Some(o) = &old
        && controller_of(&o.metadata) != controller_of(&pod.metadata)
        && let Some(j) = owner_job(jobs, o)
    {
        queue.add(JobKey::Job(key_of(&j.metadata)));
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if let Some(job) = owner_job(jobs, pod) {
        let key = key_of(&job.metadata);
        let was_terminating = old
            .as_ref()
            .is_some_and(|o| o.metadata.deletion_timestamp.is_some());
        if gone {
            if pod.metadata.deletion_timestamp.is_none() {
                exp.deletion_observed(&key);
            }
            fin.observed(&key, &uid);
        } else if pod.metadata.deletion_timestamp.is_some() && !was_terminating {
            exp.deletion_observed(&key);
        } else if old.is_none() {
            exp.creation_observed(&key);
        }
        if !has_tracking_finalizer(pod) {
            fin.observed(&key, &uid);
        }
        queue.add(JobKey::Job(key));
        return;
    }
    if controller_of(&pod.metadata).is_some() || gone {
        return;
    }
    // An orphan that a Job may adopt.
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let labels = workload::labels_of(&pod.metadata);
    for j in jobs.state() {
        if j.metadata.namespace.as_deref() == Some(ns)
            && j.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .and_then(|s| selector_of(s).ok())
                .is_some_and(|s| !s.is_empty() && s.matches(&labels))
        {
            queue.add(JobKey::Job(key_of(&j.metadata)));
        }
    }
}

/// Run the Job controller until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let queue = WorkQueue::<JobKey>::new(opts.backoff);
    let expectations = Arc::new(Expectations::default());
    let finalizers = Arc::new(UidExpectations::default());
    let q = Arc::clone(&queue);
    let (jobs, job_task) = workload::spawn_cache::<Job, _>(
        &opts.informers,
        &client,
        shutdown.clone(),
        move |c: Change<'_, Job>| match c {
            Change::Applied { new, .. } => q.add(JobKey::Job(key_of(&new.metadata))),
            Change::Deleted(j) => q.add(JobKey::Job(key_of(&j.metadata))),
            Change::Resynced => {}
        },
    );
    let (q, j, e, f) = (
        Arc::clone(&queue),
        jobs.clone(),
        Arc::clone(&expectations),
        Arc::clone(&finalizers),
    );
    let (pods, pod_task) =
        workload::spawn_cache::<Pod, _>(&opts.informers, &client, shutdown.clone(), move |c| {
            on_pod(c, &j, &q, &e, &f)
        });
    let ready = async {
        let _ = tokio::join!(jobs.wait_until_ready(), pods.wait_until_ready());
    };
    if workload::wait_ready(&shutdown, ready).await {
        info!("job controller: started");
        let ctx = Arc::new(Ctx {
            recorder: Recorder::new(client.clone(), COMPONENT),
            client,
            expectations,
            finalizers,
            jobs,
            pods,
            backoff: Mutex::new(HashMap::new()),
        });
        let q = Arc::clone(&queue);
        let stop = shutdown.clone();
        let stopper = tokio::spawn(async move {
            stop.cancelled().await;
            q.shut_down();
        });
        workload::run_workers(queue, opts.workload_workers, move |key: JobKey| {
            let ctx = Arc::clone(&ctx);
            async move {
                match key {
                    JobKey::Job(k) => ctx.sync_job(&k).await,
                    JobKey::Orphan(k) => ctx.sync_orphan(&k).await.map(|()| None),
                }
            }
        })
        .await;
        let _ = stopper.await;
    }
    for t in [job_task, pod_task] {
        let _ = t.await;
    }
    info!("job controller: stopped");
    Ok(())
}

/// The strategic-merge patch removing the tracking finalizer.
fn remove_finalizer_patch(pod: &Pod) -> serde_json::Value {
    json!({"metadata": {
        "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER],
        "uid": pod.metadata.uid,
    }})
}

/// Everything one sync of a Job works with (upstream `syncJobCtx`).
struct SyncCtx {
    job: Job,
    pods: Vec<Arc<Pod>>,
    finished: Option<k8s_openapi::api::batch::v1::JobCondition>,
    succeeded_indexes: BTreeSet<i32>,
    prev_succeeded_indexes: BTreeSet<i32>,
    uncounted_succeeded: HashSet<String>,
    uncounted_failed: HashSet<String>,
    expected_rm: HashSet<String>,
    new_backoff: BackoffRecord,
    terminating: i32,
    ready: i32,
}

impl Ctx {
    fn backoff_record(&self, key: &str) -> BackoffRecord {
        self.backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
            .unwrap_or_default()
    }

    fn set_backoff(&self, key: &str, record: Option<BackoffRecord>) {
        let mut m = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        match record {
            Some(r) => m.insert(key.into(), r),
            None => m.remove(key),
        };
    }

    /// Remove the tracking finalizer from a pod no unfinished Job owns.
    async fn sync_orphan(&self, key: &str) -> Result<(), Error> {
        let (ns, name) = split_key(key);
        let Some(pod) = self.pods.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(());
        };
        if !is_orphan(&self.jobs, &pod) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Strategic(remove_finalizer_patch(&pod)),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn sync_job(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(shared) = self.jobs.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.delete(key);
            self.finalizers.delete(key);
            self.set_backoff(key, None);
            return Ok(None);
        };
        if !managed_here(&shared) {
            return Ok(None);
        }
        if accounting::finished_condition(&shared).is_some() {
            self.set_backoff(key, None);
            return Ok(None);
        }
        let mut job = (*shared).clone();
        let Some(spec) = job.spec.clone() else {
            return Ok(None);
        };
        if let Some(mode) = spec.completion_mode.as_deref()
            && mode != "NonIndexed"
            && mode != "Indexed"
        {
            self.recorder
                .record(
                    &events::object_ref(&job),
                    events::WARNING,
                    "UnknownCompletionMode",
                    "Skipped Job sync because completion mode is unknown",
                )
                .await;
            return Ok(None);
        }
        let now = Timestamp::now();
        let status = job.status.get_or_insert_with(JobStatus::default);
        let uncounted = status
            .uncounted_terminated_pods
            .get_or_insert_with(UncountedTerminatedPods::default)
            .clone();
        let satisfied = self.expectations.satisfied(key);
        let pods = self.claimed_pods(&job).await?;
        let active_pods: Vec<Arc<Pod>> = pods.iter().filter(|p| is_active(p)).cloned().collect();
        let mut ctx = SyncCtx {
            ready: i32::try_from(active_pods.iter().filter(|p| is_pod_ready(p)).count())
                .unwrap_or(i32::MAX),
            terminating: i32::try_from(
                pods.iter()
                    .filter(|p| accounting::is_pod_terminating(p))
                    .count(),
            )
            .unwrap_or(i32::MAX),
            uncounted_succeeded: uncounted
                .succeeded
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            uncounted_failed: uncounted
                .failed
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            expected_rm: self.finalizers.get(key),
            pods,
            job: job.clone(),
            finished: None,
            succeeded_indexes: BTreeSet::new(),
            prev_succeeded_indexes: BTreeSet::new(),
            new_backoff: BackoffRecord::default(),
        };
        let mut active = i32::try_from(active_pods.len()).unwrap_or(i32::MAX);
        let completions = spec.completions.unwrap_or(0);
        let valid = |ctx: &SyncCtx, p: &Pod, uncounted: &HashSet<String>| {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            has_tracking_finalizer(p)
                && !uncounted.contains(&uid)
                && !ctx.expected_rm.contains(&uid)
                && (!is_indexed(&ctx.job) || completion_index(p).is_some_and(|i| i < completions))
        };
        let new_succeeded: Vec<Arc<Pod>> = ctx
            .pods
            .iter()
            .filter(|p| {
                valid(&ctx, p, &ctx.uncounted_succeeded) && workload::phase(p) == "Succeeded"
            })
            .cloned()
            .collect();
        let new_failed: Vec<Arc<Pod>> = ctx
            .pods
            .iter()
            .filter(|p| valid(&ctx, p, &ctx.uncounted_failed) && is_pod_failed(p, &ctx.job))
            .cloned()
            .collect();
        let count = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
        let st = ctx.job.status.clone().unwrap_or_default();
        let mut succeeded = st.succeeded.unwrap_or(0)
            + count(new_succeeded.len())
            + count(ctx.uncounted_succeeded.len());
        let failed =
            st.failed.unwrap_or(0) + count(new_failed.len()) + count(ctx.uncounted_failed.len());
        if st.start_time.is_none() && !is_suspended(&ctx.job) {
            ctx.job
                .status
                .get_or_insert_with(Default::default)
                .start_time = Some(Time(now));
        }
        ctx.new_backoff = accounting::next_backoff(
            self.backoff_record(key),
            new_succeeded
                .iter()
                .filter_map(|p| accounting::finished_time(p))
                .collect(),
            new_failed
                .iter()
                .filter_map(|p| accounting::finished_time(p))
                .collect(),
        );

        let mut requeue: Option<Duration> = None;
        ctx.finished = accounting::true_condition(&ctx.job, "SuccessCriteriaMet").cloned();
        if ctx.finished.is_none()
            && let Some(target) = accounting::true_condition(&ctx.job, "FailureTarget")
        {
            let mut c = accounting::new_condition(
                "Failed",
                target.reason.as_deref().unwrap_or_default(),
                target.message.as_deref().unwrap_or_default(),
                now,
            );
            c.status = "True".into();
            ctx.finished = Some(c);
        }
        if ctx.finished.is_none() {
            let pod_refs: Vec<&Pod> = ctx.pods.iter().map(|p| p.as_ref()).collect();
            let limit = spec.backoff_limit.unwrap_or(6);
            let deadline = accounting::deadline_remaining(&ctx.job, now);
            if failed > limit || accounting::past_backoff_limit_on_failure(&ctx.job, &pod_refs) {
                ctx.finished = Some(accounting::new_condition(
                    "FailureTarget",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    now,
                ));
            } else if deadline == Some(Duration::ZERO) {
                ctx.finished = Some(accounting::new_condition(
                    "FailureTarget",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                    now,
                ));
            } else if let Some(d) = deadline {
                requeue = Some(d);
            }
        }
        if is_indexed(&ctx.job) {
            ctx.prev_succeeded_indexes = accounting::parse_indexes(
                st.completed_indexes.as_deref().unwrap_or_default(),
                completions,
            );
            ctx.succeeded_indexes = ctx.prev_succeeded_indexes.clone();
            ctx.succeeded_indexes.extend(
                ctx.pods
                    .iter()
                    .filter(|p| workload::phase(p) == "Succeeded" && has_tracking_finalizer(p))
                    .filter_map(|p| completion_index(p))
                    .filter(|i| *i < completions),
            );
            succeeded = count(ctx.succeeded_indexes.len());
        }

        let mut suspend_changed = false;
        let mut manage_err = None;
        if ctx.finished.is_some() {
            let (deleted_ready, deleted, err) =
                self.delete_active(&ctx.job, &active_pods, false, key).await;
            if deleted != active || !satisfied {
                ctx.finished = None;
            }
            active -= deleted;
            ctx.terminating += deleted;
            ctx.ready -= deleted_ready;
            manage_err = err;
        } else {
            let mut managed = false;
            if satisfied && ctx.job.metadata.deletion_timestamp.is_none() {
                match self
                    .manage(&mut ctx, &active_pods, succeeded, key, now)
                    .await
                {
                    Ok((a, again)) => {
                        active = a;
                        if let Some(d) = again {
                            requeue = Some(requeue.map_or(d, |r| r.min(d)));
                        }
                    }
                    Err((a, e)) => {
                        active = a;
                        manage_err = Some(e);
                    }
                }
                managed = true;
            }
            let complete = match spec.completions {
                None => succeeded > 0 && active == 0,
                Some(c) => succeeded >= c && active == 0,
            };
            if complete {
                ctx.finished = Some(accounting::new_condition(
                    "SuccessCriteriaMet",
                    REASON_COMPLETIONS_REACHED,
                    MESSAGE_COMPLETIONS_REACHED,
                    now,
                ));
            } else if managed {
                let job_ref = events::object_ref(&ctx.job);
                let suspended = is_suspended(&ctx.job);
                let conds = ctx
                    .job
                    .status
                    .get_or_insert_with(Default::default)
                    .conditions
                    .get_or_insert_with(Vec::new);
                if suspended {
                    if accounting::ensure_condition(
                        conds,
                        "Suspended",
                        "True",
                        "JobSuspended",
                        "Job suspended",
                        now,
                    ) {
                        suspend_changed = true;
                        self.recorder
                            .record(&job_ref, events::NORMAL, "Suspended", "Job suspended")
                            .await;
                    }
                } else if accounting::ensure_condition(
                    conds,
                    "Suspended",
                    "False",
                    "JobResumed",
                    "Job resumed",
                    now,
                ) {
                    suspend_changed = true;
                    self.recorder
                        .record(&job_ref, events::NORMAL, "Resumed", "Job resumed")
                        .await;
                    ctx.job
                        .status
                        .get_or_insert_with(Default::default)
                        .start_time = Some(Time(now));
                }
            }
        }

        let status = ctx.job.status.get_or_insert_with(Default::default);
        let needs_update = suspend_changed
            || active != status.active.unwrap_or(0)
            || Some(ctx.ready) != status.ready
            || Some(ctx.terminating) != status.terminating;
        status.active = (active != 0).then_some(active);
        status.ready = Some(ctx.ready);
        status.terminating = Some(ctx.terminating);
        self.track_status(&mut ctx, key, needs_update).await?;
        if let Some(e) = manage_err {
            return Err(e);
        }
        Ok(requeue)
    }

    async fn claimed_pods(&self, job: &Job) -> Result<Vec<Arc<Pod>>, Error> {
        let ns = job.namespace().unwrap_or_default();
        let Some(selector) = job.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            return Ok(Vec::new());
        };
        let selector = selector_of(selector)?;
        let candidates: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
            .collect();
        let claim = Claim {
            owner: controller_ref(job),
            owner_deleting: job.metadata.deletion_timestamp.is_some(),
            selector: &selector,
            finalizers: &[TRACKING_FINALIZER],
        };
        let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let (name, uid) = (job.name_any(), job.metadata.uid.clone());
        claim_pods(&self.client, &claim, candidates, &|_| true, || async move {
            let fresh = api.get(&name).await?;
            Ok(fresh.metadata.uid == uid && fresh.metadata.deletion_timestamp.is_none())
        })
        .await
    }

    /// Delete active pods: with `drop_finalizer` (upstream `deleteJobPods`) the
    /// tracking finalizer goes first, else it stays so the pods are counted
    /// (upstream `deleteActivePods`). Returns (ready deleted, deleted, error).
    async fn delete_active(
        &self,
        job: &Job,
        pods: &[Arc<Pod>],
        drop_finalizer: bool,
        key: &str,
    ) -> (i32, i32, Option<Error>) {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
        let job_ref = events::object_ref(job);
        let results = futures::future::join_all(pods.iter().map(|pod| {
            let (api, job_ref) = (&api, &job_ref);
            async move {
                let name = pod.name_any();
                if drop_finalizer
                    && has_tracking_finalizer(pod)
                    && let Err(e) = api
                        .patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Strategic(remove_finalizer_patch(pod)),
                        )
                        .await
                {
                    self.expectations.deletion_observed(key);
                    return if is_not_found(&e) { Ok(false) } else { Err(e) };
                }
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {
                        self.recorder
                            .record(
                                job_ref,
                                events::NORMAL,
                                "SuccessfulDelete",
                                &format!("Deleted pod: {name}"),
                            )
                            .await;
                        Ok(is_pod_ready(pod))
                    }
                    Err(e) => {
                        if drop_finalizer {
                            self.expectations.deletion_observed(key);
                        }
                        if is_not_found(&e) {
                            return Ok(is_pod_ready(pod));
                        }
                        self.recorder
                            .record(
                                job_ref,
                                events::WARNING,
                                "FailedDelete",
                                &format!("Error deleting: {e}"),
                            )
                            .await;
                        Err(e)
                    }
                }
            }
        }))
        .await;
        let mut ready = 0;
        let mut deleted = 0;
        let mut errors = Vec::new();
        for r in results {
            match r {
                Ok(was_ready) => {
                    deleted += 1;
                    if was_ready {
                        ready += 1;
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        let err = (!errors.is_empty()).then(|| Error::Several(errors.join("; ")));
        (ready, deleted, err)
    }

    /// Upstream `manageJob`: delete surplus pods or create missing ones (after the
    /// failure back-off). Returns the new active count and when to look again; on
    /// error the active count so far with the error.
    async fn manage(
        &self,
        ctx: &mut SyncCtx,
        active_pods: &[Arc<Pod>],
        succeeded: i32,
        key: &str,
        now: Timestamp,
    ) -> Result<(i32, Option<Duration>), (i32, Error)> {
        let job = ctx.job.clone();
        let mut active = i32::try_from(active_pods.len()).unwrap_or(i32::MAX);
        let refs: Vec<&Pod> = active_pods.iter().map(|p| p.as_ref()).collect();
        if is_suspended(&job) {
            let victims: Vec<Arc<Pod>> = active_pods.to_vec();
            self.expectations.set(key, 0, victims.len());
            let (ready, deleted, err) = self.delete_active(&job, &victims, true, key).await;
            active -= deleted;
            ctx.terminating += deleted;
            ctx.ready -= ready;
            return match err {
                Some(e) => Err((active, e)),
                None => Ok((active, None)),
            };
        }
        let want = accounting::want_active(&job, succeeded, active);
        let remove_at_least = usize::try_from((active - want).max(0)).unwrap_or(0);
        let mut victims = accounting::pods_to_remove(&job, &refs, remove_at_least);
        victims.truncate(MAX_PER_SYNC);
        if !victims.is_empty() {
            let victims: Vec<Arc<Pod>> = active_pods
                .iter()
                .filter(|p| victims.iter().any(|v| v.metadata.uid == p.metadata.uid))
                .cloned()
                .collect();
            self.expectations.set(key, 0, victims.len());
            let (ready, deleted, err) = self.delete_active(&job, &victims, true, key).await;
            active -= deleted;
            ctx.terminating += deleted;
            ctx.ready -= ready;
            return match err {
                Some(e) => Err((active, e)),
                None => Ok((active, None)),
            };
        }
        let waiting = if accounting::only_replace_failed(&job) {
            ctx.terminating
        } else {
            0
        };
        let diff = want - waiting - active;
        if diff <= 0 {
            return Ok((active, None));
        }
        let remaining = accounting::backoff_remaining(&ctx.new_backoff, now);
        if !remaining.is_zero() {
            return Ok((active, Some(remaining)));
        }
        let mut diff = usize::try_from(diff).unwrap_or(0).min(MAX_PER_SYNC);
        let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
        let indexes: Vec<i32> = if is_indexed(&job) {
            let busy: HashSet<i32> = active_pods
                .iter()
                .filter_map(|p| completion_index(p))
                .collect();
            let v =
                accounting::first_pending_indexes(&ctx.succeeded_indexes, &busy, diff, completions);
            diff = v.len();
            v
        } else {
            Vec::new()
        };
        self.expectations.set(key, diff, 0);
        let template = pod_template(&job);
        let name = job.name_any();
        let owner = controller_ref(&job);
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &job.namespace().unwrap_or_default());
        let job_ref = events::object_ref(&job);
        let (ok, errors) = workload::slow_start_batch(diff, |i| {
            let mut pod = workload::pod_from_template(&template, &name, owner.clone());
            if let Some(ix) = indexes.get(i) {
                index_pod(&mut pod, &name, *ix);
            }
            let (api, job_ref) = (&api, &job_ref);
            async move {
                match api.create(&PostParams::default(), &pod).await {
                    Ok(p) => {
                        self.recorder
                            .record(
                                job_ref,
                                events::NORMAL,
                                "SuccessfulCreate",
                                &format!("Created pod: {}", p.name_any()),
                            )
                            .await;
                        Ok(())
                    }
                    Err(e) => {
                        self.expectations.creation_observed(key);
                        if workload::is_namespace_terminating(&e) {
                            return Ok(());
                        }
                        self.recorder
                            .record(
                                job_ref,
                                events::WARNING,
                                "FailedCreate",
                                &format!("Error creating: {e}"),
                            )
                            .await;
                        Err(e)
                    }
                }
            }
        })
        .await;
        for _ in (ok + errors.len())..diff {
            self.expectations.creation_observed(key);
        }
        active += i32::try_from(ok).unwrap_or(i32::MAX);
        if errors.is_empty() {
            Ok((active, None))
        } else {
            let msgs: Vec<String> = errors.iter().map(ToString::to_string).collect();
            Err((active, Error::Several(msgs.join("; "))))
        }
    }

    /// Upstream `trackJobStatusAndRemoveFinalizers`.
    async fn track_status(
        &self,
        ctx: &mut SyncCtx,
        key: &str,
        mut needs_flush: bool,
    ) -> Result<(), Error> {
        let now = Timestamp::now();
        let indexed = is_indexed(&ctx.job);
        let completions = ctx
            .job
            .spec
            .as_ref()
            .and_then(|s| s.completions)
            .unwrap_or(0);
        let mut with_finalizer: HashSet<String> = ctx
            .pods
            .iter()
            .filter(|p| has_tracking_finalizer(p))
            .filter_map(|p| p.metadata.uid.clone())
            .filter(|u| !ctx.expected_rm.contains(u))
            .collect();
        if clean_uncounted(&mut ctx.job, &with_finalizer) {
            needs_flush = true;
        }
        let mut to_remove: Vec<Arc<Pod>> = Vec::new();
        let mut new_indexes: Vec<i32> = Vec::new();
        let mut reached_max = false;
        let finished_failing = ctx
            .finished
            .as_ref()
            .is_some_and(|c| c.type_ != "SuccessCriteriaMet");
        let job_deleting = ctx.job.metadata.deletion_timestamp.is_some();
        for pod in &ctx.pods {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if !has_tracking_finalizer(pod) || ctx.expected_rm.contains(&uid) {
                continue;
            }
            let failed = is_pod_failed(pod, &ctx.job);
            let can_remove = job_deleting
                || ctx.finished.is_some()
                || workload::phase(pod) == "Succeeded"
                || failed;
            if !can_remove {
                continue;
            }
            to_remove.push(Arc::clone(pod));
            let uncounted = ctx
                .job
                .status
                .get_or_insert_with(Default::default)
                .uncounted_terminated_pods
                .get_or_insert_with(Default::default);
            if workload::phase(pod) == "Succeeded" && !ctx.uncounted_failed.contains(&uid) {
                if indexed {
                    if let Some(ix) = completion_index(pod).filter(|i| *i < completions)
                        && !ctx.prev_succeeded_indexes.contains(&ix)
                    {
                        new_indexes.push(ix);
                        needs_flush = true;
                    }
                } else if !ctx.uncounted_succeeded.contains(&uid) {
                    needs_flush = true;
                    uncounted
                        .succeeded
                        .get_or_insert_with(Vec::new)
                        .push(uid.clone());
                    ctx.uncounted_succeeded.insert(uid.clone());
                }
            } else if (failed || finished_failing)
                && !ctx.uncounted_failed.contains(&uid)
                && (!indexed || completion_index(pod).is_some_and(|i| i < completions))
            {
                needs_flush = true;
                uncounted
                    .failed
                    .get_or_insert_with(Vec::new)
                    .push(uid.clone());
                ctx.uncounted_failed.insert(uid.clone());
            }
            let pending = new_indexes.len()
                + uncounted.succeeded.as_ref().map_or(0, Vec::len)
                + uncounted.failed.as_ref().map_or(0, Vec::len);
            if pending >= MAX_PER_SYNC {
                reached_max = true;
                break;
            }
        }
        if indexed {
            let mut all = ctx.prev_succeeded_indexes.clone();
            all.extend(new_indexes);
            ctx.succeeded_indexes = all;
            let text = accounting::format_indexes(&ctx.succeeded_indexes);
            let status = ctx.job.status.get_or_insert_with(Default::default);
            let current = status.completed_indexes.clone().unwrap_or_default();
            if text != current {
                needs_flush = true;
            }
            status.succeeded = Some(i32::try_from(ctx.succeeded_indexes.len()).unwrap_or(i32::MAX))
                .filter(|v| *v != 0);
            status.completed_indexes = Some(text);
        }
        if let Some(c) = ctx.finished.clone() {
            let conds = ctx
                .job
                .status
                .get_or_insert_with(Default::default)
                .conditions
                .get_or_insert_with(Vec::new);
            let reason = c.reason.clone().unwrap_or_default();
            let message = c.message.clone().unwrap_or_default();
            if c.type_ == "FailureTarget" {
                conds.push(c);
                needs_flush = true;
                ctx.finished = Some(accounting::new_condition("Failed", &reason, &message, now));
            } else if c.type_ == "SuccessCriteriaMet" {
                if !conds
                    .iter()
                    .any(|x| x.type_ == "SuccessCriteriaMet" && x.status == "True")
                {
                    conds.push(c);
                    needs_flush = true;
                }
                ctx.finished = Some(accounting::new_condition(
                    "Complete", &reason, &message, now,
                ));
            }
        }
        let api: Api<Job> = Api::namespaced(
            self.client.clone(),
            &ctx.job.namespace().unwrap_or_default(),
        );
        // Record the uncounted pods before touching their finalizers.
        if needs_flush {
            ctx.job = self.write_status(&api, &ctx.job).await?;
            self.set_backoff(key, Some(ctx.new_backoff));
            needs_flush = false;
        }
        let mut rm_errors = Vec::new();
        if !to_remove.is_empty() {
            self.finalizers
                .expect(key, to_remove.iter().filter_map(|p| p.metadata.uid.clone()));
            let pods_api: Api<Pod> = Api::namespaced(
                self.client.clone(),
                &ctx.job.namespace().unwrap_or_default(),
            );
            let results = futures::future::join_all(to_remove.iter().map(|p| {
                let pods_api = &pods_api;
                async move {
                    let r = pods_api
                        .patch(
                            &p.name_any(),
                            &PatchParams::default(),
                            &Patch::Strategic(remove_finalizer_patch(p)),
                        )
                        .await;
                    (p, r)
                }
            }))
            .await;
            for (p, r) in results {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                match r {
                    Ok(_) => {
                        with_finalizer.remove(&uid);
                    }
                    Err(e) => {
                        self.finalizers.observed(key, &uid);
                        if is_not_found(&e) {
                            with_finalizer.remove(&uid);
                        } else {
                            rm_errors.push(e.to_string());
                        }
                    }
                }
            }
        }
        if clean_uncounted(&mut ctx.job, &with_finalizer) {
            needs_flush = true;
        }
        if !rm_errors.is_empty() {
            if needs_flush {
                ctx.job = self.write_status(&api, &ctx.job).await?;
            }
            return Err(Error::Several(rm_errors.join("; ")));
        }
        let finished = !reached_max && self.enact_finished(ctx, now);
        if finished {
            needs_flush = true;
        }
        if needs_flush {
            ctx.job = self.write_status(&api, &ctx.job).await?;
            if finished {
                self.record_finished(ctx).await;
            }
        }
        Ok(())
    }

    /// Upstream `enactJobFinished`: add the final condition once every pod is counted
    /// and none is terminating.
    fn enact_finished(&self, ctx: &mut SyncCtx, now: Timestamp) -> bool {
        let Some(cond) = ctx.finished.clone() else {
            return false;
        };
        let status = ctx.job.status.get_or_insert_with(Default::default);
        if let Some(u) = &status.uncounted_terminated_pods
            && (u.succeeded.as_ref().is_some_and(|v| !v.is_empty())
                || u.failed.as_ref().is_some_and(|v| !v.is_empty()))
        {
            return false;
        }
        if ctx.terminating > 0 {
            return false;
        }
        let conds = status.conditions.get_or_insert_with(Vec::new);
        accounting::ensure_condition(
            conds,
            &cond.type_,
            "True",
            cond.reason.as_deref().unwrap_or_default(),
            cond.message.as_deref().unwrap_or_default(),
            now,
        );
        if cond.type_ == "Complete" {
            status.completion_time = conds
                .iter()
                .find(|c| c.type_ == "Complete")
                .and_then(|c| c.last_transition_time.clone());
        }
        true
    }

    async fn record_finished(&self, ctx: &SyncCtx) {
        let Some(cond) = &ctx.finished else {
            return;
        };
        let job_ref = events::object_ref(&ctx.job);
        if cond.type_ == "Complete" {
            let succeeded = ctx
                .job
                .status
                .as_ref()
                .and_then(|s| s.succeeded)
                .unwrap_or(0);
            if ctx
                .job
                .spec
                .as_ref()
                .and_then(|s| s.completions)
                .is_some_and(|c| succeeded > c)
            {
                self.recorder
                    .record(
                        &job_ref,
                        events::WARNING,
                        "TooManySucceededPods",
                        "Too many succeeded pods running after completion count reached",
                    )
                    .await;
            }
            self.recorder
                .record(&job_ref, events::NORMAL, "Completed", "Job completed")
                .await;
        } else {
            self.recorder
                .record(
                    &job_ref,
                    events::WARNING,
                    cond.reason.as_deref().unwrap_or_default(),
                    cond.message.as_deref().unwrap_or_default(),
                )
                .await;
        }
    }

    /// PUT the status (upstream `UpdateStatus`), normalised as upstream's JSON
    /// omits zero counters.
    async fn write_status(&self, api: &Api<Job>, job: &Job) -> Result<Job, Error> {
        let mut job = job.clone();
        if let Some(s) = job.status.as_mut() {
            for v in [&mut s.active, &mut s.succeeded, &mut s.failed] {
                if *v == Some(0) {
                    *v = None;
                }
            }
            if let Some(u) = s.uncounted_terminated_pods.as_mut() {
                if u.succeeded.as_ref().is_some_and(Vec::is_empty) {
                    u.succeeded = None;
                }
                if u.failed.as_ref().is_some_and(Vec::is_empty) {
                    u.failed = None;
                }
            }
        }
        match api
            .replace_status(&job.name_any(), &PostParams::default(), &job)
            .await
        {
            Ok(j) => Ok(j),
            Err(e) => {
                if is_conflict(&e) {
                    debug!(job = %job.name_any(), "job status conflict, will retry");
                }
                Err(e.into())
            }
        }
    }
}

/// Move uncounted uids whose finalizer is gone into the counters. Returns whether
/// anything changed (upstream `cleanUncountedPodsWithoutFinalizers`).
fn clean_uncounted(job: &mut Job, with_finalizer: &HashSet<String>) -> bool {
    let status = job.status.get_or_insert_with(Default::default);
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    let mut changed = false;
    let mut moved = |list: &mut Option<Vec<String>>, counter: &mut Option<i32>| {
        let before = list.as_ref().map_or(0, Vec::len);
        let kept: Vec<String> = list
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|u| with_finalizer.contains(u))
            .collect();
        let gone = before - kept.len();
        if gone > 0 {
            changed = true;
            *counter = Some(counter.unwrap_or(0) + i32::try_from(gone).unwrap_or(i32::MAX));
        }
        *list = (!kept.is_empty()).then_some(kept);
    };
    moved(&mut uncounted.succeeded, &mut status.succeeded);
    moved(&mut uncounted.failed, &mut status.failed);
    changed
}

/// The template Job pods are made from: the Job's, with the tracking finalizer and,
/// for Indexed Jobs, `JOB_COMPLETION_INDEX` in every container.
pub fn pod_template(job: &Job) -> PodTemplateSpec {
    let mut t = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = t.metadata.get_or_insert_with(Default::default);
    let fins = meta.finalizers.get_or_insert_with(Vec::new);
    if !fins.iter().any(|f| f == TRACKING_FINALIZER) {
        fins.push(TRACKING_FINALIZER.into());
    }
    if is_indexed(job)
        && let Some(spec) = t.spec.as_mut()
    {
        let env = EnvVar {
            name: COMPLETION_INDEX_ENV.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.labels['{COMPLETION_INDEX}']"),
                }),
                ..Default::default()
            }),
        };
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            let list = c.env.get_or_insert_with(Vec::new);
            if !list.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
                list.push(env.clone());
            }
        }
    }
    t
}

/// Give an Indexed Job pod its index: annotation, label, hostname and
/// `generateName` `<job>-<index>-` (cut to fit upstream's 58 characters).
pub fn index_pod(pod: &mut Pod, job_name: &str, index: i32) {
    let ix = index.to_string();
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(COMPLETION_INDEX.into(), ix.clone());
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(COMPLETION_INDEX.into(), ix.clone());
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = Some(format!("{job_name}-{ix}"));
    }
    let suffix = format!("-{ix}-");
    let mut prefix = format!("{job_name}{suffix}");
    const MAX_GENERATED_NAME: usize = 58;
    if prefix.len() > MAX_GENERATED_NAME {
        let keep = MAX_GENERATED_NAME.saturating_sub(suffix.len());
        let cut = job_name
            .char_indices()
            .nth(keep)
            .map_or(job_name, |(i, _)| &job_name[..i]);
        prefix = format!("{cut}{suffix}");
    }
    pod.metadata.generate_name = Some(prefix);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_template_and_pod() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "work"},
            "spec": {"completionMode": "Indexed", "completions": 3, "template": {
                "spec": {"containers": [{"name": "c", "image": "i"}], "initContainers": [{"name": "init", "image": "i",
                    "env": [{"name": COMPLETION_INDEX_ENV, "value": "mine"}]}]}}}
        }))
        .expect("job");
        let t = pod_template(&job);
        assert_eq!(
            t.metadata.as_ref().and_then(|m| m.finalizers.clone()),
            Some(vec![TRACKING_FINALIZER.to_string()])
        );
        let spec = t.spec.clone().expect("spec");
        let env = spec.containers[0].env.clone().unwrap_or_default();
        assert_eq!(env.len(), 1);
        assert_eq!(
            env[0]
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("metadata.labels['batch.kubernetes.io/job-completion-index']")
        );
        let init_env = spec.init_containers.expect("init")[0]
            .env
            .clone()
            .unwrap_or_default();
        assert_eq!(init_env.len(), 1, "an existing variable is kept");

        let mut pod = workload::pod_from_template(
            &t,
            "work",
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference::default(),
        );
        index_pod(&mut pod, "work", 2);
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("work-2-"));
        assert_eq!(
            pod.spec.as_ref().and_then(|s| s.hostname.as_deref()),
            Some("work-2")
        );
        assert_eq!(completion_index(&pod), Some(2));
        let long = "x".repeat(70);
        index_pod(&mut pod, &long, 12);
        let g = pod.metadata.generate_name.clone().unwrap_or_default();
        assert_eq!(g.len(), 58);
        assert!(g.ends_with("-12-"));
    }

    #[test]
    fn uncounted_pods_move_to_counters() {
        let mut job: Job = serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "status": {"succeeded": 1, "uncountedTerminatedPods": {"succeeded": ["a", "b"], "failed": ["c"]}}
        }))
        .expect("job");
        let keep: HashSet<String> = HashSet::from(["b".to_string()]);
        assert!(clean_uncounted(&mut job, &keep));
        let s = job.status.clone().expect("status");
        assert_eq!(s.succeeded, Some(2));
        assert_eq!(s.failed, Some(1));
        let u = s.uncounted_terminated_pods.expect("uncounted");
        assert_eq!(u.succeeded, Some(vec!["b".to_string()]));
        assert_eq!(u.failed, None);
        assert!(!clean_uncounted(&mut job, &keep));
    }
}
