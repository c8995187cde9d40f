//! Leader election on a `coordination.k8s.io/v1` Lease, as upstream's client-go
//! leaderelection does: a candidate takes the Lease when it is absent or expired,
//! renews it every retry period while leading, and steps down (cancelling the work it
//! runs) when it cannot renew within the renew deadline. So two copies of a component
//! can run side by side and exactly one acts.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

/// Settings of one election (upstream defaults: 15 s / 10 s / 2 s).
#[derive(Clone, Debug)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    pub fn new(name: &str, identity: &str) -> Self {
        LeaderElectionConfig {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// A unique identity for this process: `<hostname>_<random>` like upstream.
pub fn default_identity() -> String {
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into());
    format!("{}_{}", host.trim(), uuid_like())
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", nanos, std::process::id())
}

/// What one attempt to take or keep the Lease found.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the Lease (acquired or renewed).
    Leading,
    /// Someone else holds a Lease that has not expired.
    Following(String),
}

/// Whether a Lease held by someone else may be taken over at `now`.
pub fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renew) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration = spec.lease_duration_seconds.unwrap_or(15) as i64;
    renew.0 + SignedDuration::from_secs(duration) < now
}

/// One try to acquire or renew the Lease.
pub async fn try_acquire_or_renew(
    api: &Api<Lease>,
    cfg: &LeaderElectionConfig,
) -> Result<Attempt, kube::Error> {
    let now = Timestamp::now();
    let micro = MicroTime(now);
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(cfg.lease_duration.as_secs() as i32),
                    acquire_time: Some(micro.clone()),
                    renew_time: Some(micro),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await?;
            Ok(Attempt::Leading)
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            let holder = spec.holder_identity.clone().unwrap_or_default();
            if holder == cfg.identity {
                spec.renew_time = Some(micro);
                spec.lease_duration_seconds = Some(cfg.lease_duration.as_secs() as i32);
            } else if holder.is_empty() || expired(spec, now) {
                spec.holder_identity = Some(cfg.identity.clone());
                spec.acquire_time = Some(micro.clone());
                spec.renew_time = Some(micro);
                spec.lease_duration_seconds = Some(cfg.lease_duration.as_secs() as i32);
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            } else {
                return Ok(Attempt::Following(holder));
            }
            // replace carries metadata.resourceVersion: a concurrent change makes it fail (409).
            api.replace(&cfg.name, &PostParams::default(), &lease)
                .await?;
            Ok(Attempt::Leading)
        }
    }
}

/// Campaign for leadership; while leading run `work(token)`; when leadership is lost,
/// cancel `token`, wait for `work` to return, and campaign again. Returns when
/// `shutdown` fires.
pub async fn run_elected<F, Fut>(
    client: kube::Client,
    cfg: LeaderElectionConfig,
    shutdown: CancellationToken,
    work: F,
) where
    F: Fn(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_holder = String::new();
    while !shutdown.is_cancelled() {
        match try_acquire_or_renew(&api, &cfg).await {
            Ok(Attempt::Leading) => {
                tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
                let token = shutdown.child_token();
                let handle = tokio::spawn(work(token.clone()));
                let mut last_renew = tokio::time::Instant::now();
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(cfg.retry_period) => {}
                    }
                    match try_acquire_or_renew(&api, &cfg).await {
                        Ok(Attempt::Leading) => last_renew = tokio::time::Instant::now(),
                        Ok(Attempt::Following(h)) => {
                            tracing::warn!(lease = %cfg.name, holder = %h, "leadership taken over");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(lease = %cfg.name, "renewing lease failed: {e}");
                            if last_renew.elapsed() > cfg.renew_deadline {
                                tracing::error!(lease = %cfg.name, "failed to renew within the renew deadline; stepping down");
                                break;
                            }
                        }
                    }
                }
                token.cancel();
                let _ = handle.await;
            }
            Ok(Attempt::Following(h)) => {
                if h != last_holder {
                    tracing::info!(lease = %cfg.name, holder = %h, "waiting for leadership");
                    last_holder = h;
                }
            }
            Err(e) => tracing::debug!(lease = %cfg.name, "leader election attempt failed: {e}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(cfg.retry_period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_follows_renew_time_and_duration() {
        let now = Timestamp::now();
        let spec = |ago: i64| LeaseSpec {
            renew_time: Some(MicroTime(now - SignedDuration::from_secs(ago))),
            lease_duration_seconds: Some(15),
            ..Default::default()
        };
        assert!(!expired(&spec(5), now));
        assert!(expired(&spec(16), now));
        assert!(expired(&LeaseSpec::default(), now));
    }
}
