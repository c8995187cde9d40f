//! The service account controller (upstream `serviceaccount`): every active namespace
//! has the `default` ServiceAccount; it is created when a namespace appears and again
//! whenever it is deleted. Terminating namespaces are left alone.
//!
//! Runs on kube-runtime's [`Controller`] over namespaces, with ServiceAccount events
//! mapped to their namespace.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::queue::Backoff;
use crate::{ControllerOptions, Error};

/// The service accounts every namespace gets (upstream `--service-account-names`
/// default is just `default`).
pub const SERVICE_ACCOUNTS: &[&str] = &["default"];

struct Context {
    client: Client,
    backoff: Backoff,
}

/// Whether the controller should ensure service accounts in `ns`.
pub fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

/// Run the service account controller until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    opts: &ControllerOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let ctx = Arc::new(Context {
        client: client.clone(),
        backoff: opts.backoff,
    });
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::all(client);
    info!("service account controller: started");
    Controller::new(namespaces, watcher::Config::default())
        .watches(
            accounts,
            watcher::Config::default(),
            |sa: ServiceAccount| {
                sa.metadata
                    .namespace
                    .filter(|_| {
                        SERVICE_ACCOUNTS.contains(&sa.metadata.name.as_deref().unwrap_or_default())
                    })
                    .map(|ns| ObjectRef::<Namespace>::new(&ns))
            },
        )
        .with_config(
            Config::default()
                .concurrency(u16::try_from(opts.workload_workers.max(1)).unwrap_or(u16::MAX)),
        )
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                debug!(error = %e, "service account controller: reconcile error");
            }
        })
        .await;
    info!("service account controller: stopped");
    Ok(())
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !is_active(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    for sa in SERVICE_ACCOUNTS {
        if api.get_opt(sa).await?.is_some() {
            continue;
        }
        let obj = ServiceAccount {
            metadata: ObjectMeta {
                name: Some((*sa).into()),
                namespace: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {
                info!(namespace = %name, service_account = sa, "service account controller: created")
            }
            // Already there, or the namespace started terminating meanwhile.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}

fn error_policy(ns: Arc<Namespace>, err: &Error, ctx: Arc<Context>) -> Action {
    debug!(namespace = %ns.name_any(), error = %err, "service account controller: retrying");
    Action::requeue(ctx.backoff.delay(8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn active_table() {
        let ns = |deleting: bool, phase: Option<&str>| Namespace {
            metadata: ObjectMeta {
                name: Some("x".into()),
                deletion_timestamp: deleting
                    .then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            status: Some(NamespaceStatus {
                phase: phase.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        };
        let cases = [
            (false, Some("Active"), true),
            (false, None, true),
            (true, Some("Active"), false),
            (false, Some("Terminating"), false),
            (true, Some("Terminating"), false),
        ];
        for (deleting, phase, want) in cases {
            assert_eq!(
                is_active(&ns(deleting, phase)),
                want,
                "{deleting} {phase:?}"
            );
        }
    }
}
