//! The TTL-after-finished controller (upstream `ttl-after-finished`): a Job with
//! `spec.ttlSecondsAfterFinished` is deleted (foreground propagation, so its pods go
//! first, with a uid precondition) that many seconds after its `Complete` or
//! `Failed` condition became true. The expiry is checked again on a fresh read
//! before deleting, as a user may have changed the TTL meanwhile.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::accounting::finished_condition;
use crate::queue::WorkQueue;
use crate::workload::{self, Change, key_of, split_key};
use crate::{ControllerOptions, Error, is_not_found};

/// When a finished Job with a TTL expires: `Ok(None)` if it needs no clean-up.
pub fn expire_time(job: &Job) -> Result<Option<Timestamp>, Error> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(None);
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let Some(cond) = finished_condition(job) else {
        return Ok(None);
    };
    let Some(finished) = cond.last_transition_time.as_ref().map(|t| t.0) else {
        return Err(Error::Several(format!(
            "unable to find the time when the Job {}/{} finished",
            job.namespace().unwrap_or_default(),
            job.name_any()
        )));
    };
    finished
        .checked_add(SignedDuration::from_secs(i64::from(ttl)))
        .map(Some)
        .map_err(|e| Error::Several(format!("invalid expiry time: {e}")))
}

/// How long until `expire`, zero once it has passed.
pub fn time_left(expire: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(expire.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// Run the controller until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let queue = WorkQueue::<String>::new(opts.backoff);
    let q = Arc::clone(&queue);
    let (jobs, task) = workload::spawn_cache::<Job, _>(
        &opts.informers,
        &client,
        shutdown.clone(),
        move |c: Change<'_, Job>| {
            if let Change::Applied { new, .. } = c
                && matches!(expire_time(new), Ok(Some(_)) | Err(_))
            {
                q.add(key_of(&new.metadata));
            }
        },
    );
    if workload::wait_ready(&shutdown, async {
        let _ = jobs.wait_until_ready().await;
    })
    .await
    {
        info!("ttl-after-finished controller: started");
        let q = Arc::clone(&queue);
        let stop = shutdown.clone();
        let stopper = tokio::spawn(async move {
            stop.cancelled().await;
            q.shut_down();
        });
        workload::run_workers(queue, opts.workload_workers, move |key: String| {
            let (client, jobs) = (client.clone(), jobs.clone());
            async move { process(&client, &jobs, &key).await }
        })
        .await;
        let _ = stopper.await;
    }
    let _ = task.await;
    info!("ttl-after-finished controller: stopped");
    Ok(())
}

async fn process(client: &Client, jobs: &Store<Job>, key: &str) -> Result<Option<Duration>, Error> {
    let (ns, name) = split_key(key);
    let Some(job) = jobs.get(&ObjectRef::new(name).within(ns)) else {
        return Ok(None);
    };
    let Some(expire) = expire_time(&job)? else {
        return Ok(None);
    };
    let left = time_left(expire, Timestamp::now());
    if !left.is_zero() {
        return Ok(Some(left));
    }
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let Some(fresh) = api.get_opt(name).await? else {
        return Ok(None);
    };
    let Some(expire) = expire_time(&fresh)? else {
        return Ok(None);
    };
    let left = time_left(expire, Timestamp::now());
    if !left.is_zero() {
        return Ok(Some(left));
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: fresh.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    info!(job = %key, "ttl-after-finished: deleting expired job");
    match api.delete(name, &params).await {
        Ok(_) => Ok(None),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expiry_table() {
        let job = |ttl: Option<i32>, cond: Option<(&str, &str)>, deleting: bool| -> Job {
            let mut v =
                json!({"metadata": {"name": "j", "namespace": "ns"}, "spec": {"template": {}}});
            if let Some(t) = ttl {
                v["spec"]["ttlSecondsAfterFinished"] = json!(t);
            }
            if let Some((t, s)) = cond {
                v["status"] = json!({"conditions": [{"type": t, "status": s, "lastTransitionTime": "2024-01-01T00:00:00Z"}]});
            }
            if deleting {
                v["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
            }
            serde_json::from_value(v).expect("job")
        };
        let at = |s: &str| s.parse::<Timestamp>().expect("ts");
        let cases = [
            (
                job(Some(100), Some(("Complete", "True")), false),
                Some(at("2024-01-01T00:01:40Z")),
            ),
            (
                job(Some(0), Some(("Failed", "True")), false),
                Some(at("2024-01-01T00:00:00Z")),
            ),
            (job(None, Some(("Complete", "True")), false), None),
            (job(Some(100), None, false), None),
            (job(Some(100), Some(("Complete", "False")), false), None),
            (
                job(Some(100), Some(("SuccessCriteriaMet", "True")), false),
                None,
            ),
            (job(Some(100), Some(("Complete", "True")), true), None),
        ];
        for (j, want) in cases {
            assert_eq!(expire_time(&j).ok().flatten(), want, "{:?}", j.status);
        }
        let t = at("2024-01-01T00:00:00Z");
        assert_eq!(
            time_left(at("2024-01-01T00:00:30Z"), t),
            Duration::from_secs(30)
        );
        assert_eq!(time_left(t, at("2024-01-01T00:00:30Z")), Duration::ZERO);
    }
}
