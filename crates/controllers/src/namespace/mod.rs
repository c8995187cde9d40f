//! The namespace controller (upstream kube-controller-manager's `namespace` controller).
//!
//! A namespace with a `deletionTimestamp` is emptied: every namespaced resource that is
//! served with `delete` (fresh discovery on each pass, custom resources included) is
//! deleted with `deletecollection` when served, else object by object, both with the
//! background propagation policy; then every such resource is listed again. The
//! findings become the namespace's deletion status conditions (see [`conditions`]).
//! When nothing is left, `kubernetes` is removed from `spec.finalizers` through
//! `PUT /api/v1/namespaces/<name>/finalize` and the API server deletes the namespace.
//!
//! Objects that remain with finalizers (or pods still within their grace period) make the
//! pass requeue after `estimate / 2 + 1` seconds like upstream; other failures requeue
//! with per-namespace exponential backoff.
//!
//! Runs on kube-runtime's [`Controller`] over namespaces: the watch only triggers
//! reconciles; each reconcile re-reads the namespace and is idempotent.

pub mod conditions;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::core::DynamicObject;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::discovery::{ServedResource, discover};
use crate::queue::Backoff;
use crate::{ControllerOptions, Error, is_conflict, is_not_found};
use conditions::Findings;

/// The finalizer this controller owns in `spec.finalizers`.
pub const FINALIZER: &str = "kubernetes";
/// Assumed time for objects with finalizers to go (upstream's `finalizerEstimateSeconds`).
pub const FINALIZER_ESTIMATE_SECONDS: u64 = 15;
/// Attempts of a namespace write before giving the key back to the queue.
const WRITE_ATTEMPTS: usize = 5;

/// Outcome of one pass over a terminating namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not terminating, already gone, or finalized now.
    Done,
    /// Content is still going away; look again in about this many seconds.
    Remaining { estimate_seconds: u64 },
}

/// What deleting one resource's content in a namespace left behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceOutcome {
    pub estimate_seconds: u64,
    pub remaining: usize,
    pub finalizers: BTreeMap<String, usize>,
    pub error: Option<String>,
}

/// Judge the objects still listed after deleting: `finalizers` holds each remaining
/// object's finalizers, `estimate` the grace estimate for the resource.
pub fn judge_remaining(
    namespace: &str,
    resource: &str,
    finalizers: &[Vec<String>],
    estimate: u64,
) -> ResourceOutcome {
    let mut out = ResourceOutcome {
        estimate_seconds: estimate,
        remaining: finalizers.len(),
        ..Default::default()
    };
    if finalizers.is_empty() {
        return out;
    }
    for f in finalizers.iter().flatten() {
        *out.finalizers.entry(f.clone()).or_default() += 1;
    }
    if estimate == 0 {
        if out.finalizers.is_empty() {
            out.error = Some(format!(
                "unexpected items still remain in namespace: {namespace} for gvr: {resource}"
            ));
        } else {
            out.estimate_seconds = FINALIZER_ESTIMATE_SECONDS;
        }
    }
    out
}

/// Longest termination grace period of the non-terminal pods (`None` = default 30 s),
/// or 0 once that long has passed since the namespace's deletion.
pub fn pod_estimate(
    pods: &[(Option<&str>, Option<i64>)],
    namespace_deleted: Timestamp,
    now: Timestamp,
) -> u64 {
    let estimate = pods
        .iter()
        .filter(|(phase, _)| !matches!(phase, Some("Succeeded") | Some("Failed")))
        .map(|(_, grace)| grace.unwrap_or(30).max(0) as u64)
        .max()
        .unwrap_or(0);
    let elapsed = now.duration_since(namespace_deleted).as_secs().max(0) as u64;
    if elapsed >= estimate { 0 } else { estimate }
}

/// `spec.finalizers` after this controller is done: without [`FINALIZER`], sorted, unique.
pub fn finalized_spec(finalizers: &[String]) -> Vec<String> {
    let mut v: Vec<String> = finalizers
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Requeue delay for content still going away (upstream: `estimate / 2 + 1` seconds).
pub fn requeue_after(estimate_seconds: u64) -> Duration {
    Duration::from_secs(estimate_seconds / 2 + 1)
}

struct Context {
    client: Client,
    backoff: Backoff,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Run the namespace controller until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let ctx = Arc::new(Context {
        client: client.clone(),
        backoff: opts.backoff,
        failures: Mutex::new(HashMap::new()),
    });
    let api: Api<Namespace> = Api::all(client);
    info!("namespace controller: started");
    Controller::new(api, watcher::Config::default())
        .with_config(
            Config::default()
                .concurrency(u16::try_from(opts.namespace_workers.max(1)).unwrap_or(u16::MAX)),
        )
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                debug!(error = %e, "namespace controller: reconcile error");
            }
        })
        .await;
    info!("namespace controller: stopped");
    Ok(())
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = ns.name_any();
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let outcome = sync_namespace(&ctx.client, &name).await?;
    ctx.failures().remove(&name);
    Ok(match outcome {
        Outcome::Done => Action::await_change(),
        Outcome::Remaining { estimate_seconds } => {
            debug!(namespace = %name, estimate_seconds, "namespace controller: content remaining");
            Action::requeue(requeue_after(estimate_seconds))
        }
    })
}

fn error_policy(ns: Arc<Namespace>, err: &Error, ctx: Arc<Context>) -> Action {
    let name = ns.name_any();
    let n = {
        let mut f = ctx.failures();
        let n = f.entry(name.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n - 1
    };
    if n > 5 {
        warn!(namespace = %name, error = %err, "namespace controller: deletion failed");
    } else {
        debug!(namespace = %name, error = %err, "namespace controller: deletion failed, retrying");
    }
    Action::requeue(ctx.backoff.delay(n))
}

/// One pass over namespace `name` (see the module documentation).
pub async fn sync_namespace(client: &Client, name: &str) -> Result<Outcome, Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let Some(mut ns) = api.get_opt(name).await? else {
        return Ok(Outcome::Done);
    };
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Outcome::Done);
    }
    // Make sure the phase says Terminating.
    if ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating") {
        ns = match write_namespace(
            &api,
            ns,
            |n| {
                n.status.get_or_insert_with(NamespaceStatus::default).phase =
                    Some("Terminating".into());
                true
            },
            |api, n| async move {
                api.replace_status(&n.name_any(), &PostParams::default(), &n)
                    .await
            },
        )
        .await?
        {
            Some(n) => n,
            None => return Ok(Outcome::Done),
        };
    }
    let has_ours = |n: &Namespace| {
        n.spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
    };
    if !has_ours(&ns) {
        return Ok(Outcome::Done);
    }

    let estimate = delete_all_content(client, &api, &mut ns).await?;
    if estimate > 0 {
        return Ok(Outcome::Remaining {
            estimate_seconds: estimate,
        });
    }

    info!(namespace = %name, "namespace controller: content removed, finalizing");
    write_namespace(
        &api,
        ns,
        |n| {
            if !has_ours(n) {
                return false;
            }
            let spec = n.spec.get_or_insert_with(Default::default);
            spec.finalizers = Some(finalized_spec(
                spec.finalizers.as_deref().unwrap_or_default(),
            ));
            true
        },
        |api, n| async move {
            api.replace_subresource("finalize", &n.name_any(), &PostParams::default(), &n)
                .await
        },
    )
    .await?;
    Ok(Outcome::Done)
}

/// Apply `edit` and write with `put`, re-reading on conflicts. `Ok(None)`: namespace gone.
async fn write_namespace<E, P, F>(
    api: &Api<Namespace>,
    mut ns: Namespace,
    edit: E,
    put: P,
) -> Result<Option<Namespace>, Error>
where
    E: Fn(&mut Namespace) -> bool,
    P: Fn(Api<Namespace>, Namespace) -> F,
    F: std::future::Future<Output = kube::Result<Namespace>>,
{
    let uid = ns.metadata.uid.clone();
    for _ in 0..WRITE_ATTEMPTS {
        if !edit(&mut ns) {
            return Ok(Some(ns));
        }
        match put(api.clone(), ns.clone()).await {
            Ok(n) => return Ok(Some(n)),
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) if is_conflict(&e) => {
                let name = ns.name_any();
                ns = match api.get_opt(&name).await? {
                    Some(n) if n.metadata.uid == uid => n,
                    _ => return Ok(None),
                };
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Conflict(format!("namespace {}", ns.name_any())))
}

/// Delete everything in the namespace, record the conditions, return the estimate.
async fn delete_all_content(
    client: &Client,
    api: &Api<Namespace>,
    ns: &mut Namespace,
) -> Result<u64, Error> {
    let name = ns.name_any();
    let deleted_at = ns
        .metadata
        .deletion_timestamp
        .as_ref()
        .map_or(Timestamp::now(), |t| t.0);
    let mut findings = Findings::default();
    let resources: Vec<Arc<ServedResource>> = match discover(client).await {
        Ok(d) => {
            if !d.failed.is_empty() {
                let groups: Vec<String> = d
                    .failed
                    .iter()
                    .map(|(gv, e)| format!("{gv}: {e}"))
                    .collect();
                findings.discovery_failure = Some(format!(
                    "Discovery failed for some groups, {} failing: unable to retrieve the complete list of server APIs: {}",
                    d.failed.len(),
                    groups.join(", ")
                ));
            }
            d.preferred
                .into_iter()
                .filter(|r| r.namespaced && r.supports(&["delete"]))
                .collect()
        }
        Err(e) => {
            findings.discovery_failure = Some(e.to_string());
            Vec::new()
        }
    };

    let mut estimate = 0;
    let outcomes: Vec<(Arc<ServedResource>, ResourceOutcome)> = futures::stream::iter(resources)
        .map(|r| {
            let name = &name;
            async move {
                let o = delete_resource_content(client, &r, name, deleted_at).await;
                (r, o)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    for (r, o) in outcomes {
        estimate = estimate.max(o.estimate_seconds);
        if o.remaining > 0 {
            *findings.remaining.entry(r.group_resource()).or_default() += o.remaining;
            for (f, n) in o.finalizers {
                *findings.finalizers.entry(f).or_default() += n;
            }
        }
        if let Some(e) = o.error {
            findings.content_errors.push(e);
        }
    }

    let existing = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if let Some(new) = conditions::merge(
        &existing,
        &conditions::desired(&findings),
        &Time(Timestamp::now()),
    ) {
        let mut updated = ns.clone();
        updated
            .status
            .get_or_insert_with(NamespaceStatus::default)
            .conditions = Some(new);
        match api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(n) => *ns = n,
            // Like upstream: a failed condition update does not stop the deletion.
            Err(e) => {
                debug!(namespace = %name, error = %e, "namespace controller: status update failed")
            }
        }
    }

    let mut errors: Vec<String> = findings.discovery_failure.into_iter().collect();
    errors.extend(findings.content_errors);
    if !errors.is_empty() {
        return Err(Error::Several(errors.join("; ")));
    }
    Ok(estimate)
}

/// Delete one resource's objects in the namespace and look at what is left.
async fn delete_resource_content(
    client: &Client,
    r: &ServedResource,
    namespace: &str,
    deleted_at: Timestamp,
) -> ResourceOutcome {
    let gvr = format!(
        "{}/{}, Resource={}",
        r.api.group, r.api.version, r.api.plural
    );
    let fail = |e: String| ResourceOutcome {
        error: Some(e),
        ..Default::default()
    };
    let mut estimate = 0;
    if r.api.group.is_empty() && r.api.plural == "pods" {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        match pods.list(&ListParams::default()).await {
            Ok(list) => {
                let facts: Vec<(Option<&str>, Option<i64>)> = list
                    .items
                    .iter()
                    .map(|p| {
                        (
                            p.status.as_ref().and_then(|s| s.phase.as_deref()),
                            p.spec
                                .as_ref()
                                .and_then(|s| s.termination_grace_period_seconds),
                        )
                    })
                    .collect();
                estimate = pod_estimate(&facts, deleted_at, Timestamp::now());
            }
            Err(e) => {
                return fail(format!(
                    "failed to estimate pod termination in {namespace}: {e}"
                ));
            }
        }
    }
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &r.api);
    let mut each = !r.supports(&["deletecollection"]);
    if !each {
        match api
            .delete_collection(&DeleteParams::background(), &ListParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) || is_method_not_supported(&e) => each = true,
            Err(e) => return fail(format!("failed to delete {gvr} in {namespace}: {e}")),
        }
    }
    if !r.supports(&["list"]) {
        return ResourceOutcome {
            estimate_seconds: estimate,
            ..Default::default()
        };
    }
    if each {
        match api.list_metadata(&ListParams::default()).await {
            Ok(list) => {
                for o in list.items {
                    let n = o.metadata.name.unwrap_or_default();
                    match api.delete(&n, &DeleteParams::background()).await {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) || is_method_not_supported(&e) => {}
                        Err(e) => {
                            return fail(format!("failed to delete {gvr} {n} in {namespace}: {e}"));
                        }
                    }
                }
            }
            Err(e) if is_not_found(&e) || is_method_not_supported(&e) => {
                return ResourceOutcome {
                    estimate_seconds: estimate,
                    ..Default::default()
                };
            }
            Err(e) => return fail(format!("failed to list {gvr} in {namespace}: {e}")),
        }
    }
    match api.list_metadata(&ListParams::default()).await {
        Ok(list) => {
            let fins: Vec<Vec<String>> = list
                .items
                .into_iter()
                .map(|o| o.metadata.finalizers.unwrap_or_default())
                .collect();
            judge_remaining(namespace, &gvr, &fins, estimate)
        }
        Err(e) if is_not_found(&e) || is_method_not_supported(&e) => ResourceOutcome {
            estimate_seconds: estimate,
            ..Default::default()
        },
        Err(e) => fail(format!("failed to list {gvr} in {namespace}: {e}")),
    }
}

fn is_method_not_supported(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 405)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// (finalizers of remaining objects, estimate, (estimate, remaining, finalizer counts, error))
    type JudgeCase = (
        Vec<Vec<&'static str>>,
        u64,
        (u64, usize, Vec<(&'static str, usize)>, bool),
    );
    /// (phase, terminationGracePeriodSeconds) of each pod
    type PodFacts = Vec<(Option<&'static str>, Option<i64>)>;

    #[test]
    fn judge_remaining_table() {
        let cases: Vec<JudgeCase> = vec![
            (vec![], 0, (0, 0, vec![], false)),
            (vec![], 20, (20, 0, vec![], false)),
            (vec![vec![]], 0, (0, 1, vec![], true)),
            (vec![vec![]], 12, (12, 1, vec![], false)),
            (
                vec![vec!["a"], vec!["a", "b"], vec![]],
                0,
                (15, 3, vec![("a", 2), ("b", 1)], false),
            ),
            (vec![vec!["a"]], 40, (40, 1, vec![("a", 1)], false)),
        ];
        for (fins, est, (want_est, want_rem, want_fins, want_err)) in cases {
            let fins: Vec<Vec<String>> = fins.iter().map(|f| s(f)).collect();
            let o = judge_remaining("ns", "/v1, Resource=configmaps", &fins, est);
            assert_eq!(o.estimate_seconds, want_est, "{fins:?} {est}");
            assert_eq!(o.remaining, want_rem);
            assert_eq!(
                o.finalizers,
                want_fins
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<BTreeMap<_, _>>()
            );
            assert_eq!(o.error.is_some(), want_err, "{fins:?} {est}");
        }
        assert_eq!(
            judge_remaining("ns", "/v1, Resource=configmaps", &[vec![]], 0)
                .error
                .as_deref(),
            Some(
                "unexpected items still remain in namespace: ns for gvr: /v1, Resource=configmaps"
            )
        );
    }

    #[test]
    fn pod_estimate_table() {
        let t0 = Timestamp::from_second(1_000).expect("ts");
        let at = |s: i64| Timestamp::from_second(1_000 + s).expect("ts");
        let cases: Vec<(PodFacts, i64, u64)> = vec![
            (vec![], 0, 0),
            (vec![(Some("Running"), Some(10))], 0, 10),
            (vec![(Some("Running"), Some(10))], 10, 0),
            (vec![(Some("Running"), Some(10)), (None, None)], 5, 30),
            (
                vec![(Some("Succeeded"), Some(90)), (Some("Failed"), None)],
                0,
                0,
            ),
            (vec![(Some("Pending"), Some(-5))], 0, 0),
        ];
        for (pods, elapsed, want) in cases {
            assert_eq!(
                pod_estimate(&pods, t0, at(elapsed)),
                want,
                "{pods:?} after {elapsed}s"
            );
        }
    }

    #[test]
    fn finalized_spec_table() {
        let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
            (vec!["kubernetes"], vec![]),
            (vec![], vec![]),
            (
                vec!["z.io/x", "kubernetes", "a.io/y", "a.io/y"],
                vec!["a.io/y", "z.io/x"],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(finalized_spec(&s(&input)), s(&want), "{input:?}");
        }
    }

    #[test]
    fn requeue_table() {
        for (est, secs) in [(0, 1), (1, 1), (15, 8), (30, 16)] {
            assert_eq!(requeue_after(est), Duration::from_secs(secs));
        }
    }
}
